#pragma once
// backend: the seam between the core and the kernel. Two implementations: uring_backend
// (io_uring through liburing) and epoll_backend (readiness + non-blocking syscalls). Both take
// the same op descriptions and report completions the same way: by handing the finished op to
// the core's ready queue. Nothing above this seam includes <liburing.h> or <sys/epoll.h>.
#include <coring/op.hpp>
#include <coring/result.hpp>
#include <coring/stats.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace coring {

enum class backend_kind : std::uint8_t { uring, epoll, automatic };

std::string_view to_string(backend_kind k) noexcept;
result<backend_kind> parse_backend_kind(std::string_view text) noexcept;  // uring|epoll|auto

struct backend_config {
    backend_kind kind = backend_kind::automatic;
    unsigned sq_entries = 1024;  // io_uring submission queue
    unsigned cq_entries = 0;     // 0: room for two ops per allowed fd (RLIMIT_NOFILE), at least 4x SQ
};

namespace detail {
// Where a backend delivers finished ops (implemented by the core).
class completion_sink {
public:
    virtual void complete(op& o) noexcept = 0;
    // A cross-core wake sent by post_wake to ring_fd failed (e.g. the target's CQ overflowed):
    // the wake must go another way, or the target may sleep on mail.
    virtual void wake_failed(int ring_fd) noexcept = 0;

protected:
    ~completion_sink() = default;
};
}  // namespace detail

class backend {
public:
    virtual ~backend() = default;
    virtual backend_kind kind() const noexcept = 0;
    // One line for start-up logs: "io_uring (SINGLE_ISSUER|DEFER_TASKRUN, 1024 SQ / 4096 CQ)".
    virtual std::string describe() const = 0;

    // A new socket in the mode this backend needs: blocking on io_uring (the kernel waits
    // internally; O_NONBLOCK would surface EAGAIN), non-blocking and registered on epoll.
    // Always close-on-exec. Returns the fd or -errno.
    virtual int open_socket(int domain, int type, int protocol) noexcept = 0;
    // Takes an fd made elsewhere (an eventfd) into the same mode and registration.
    virtual void adopt(int fd) noexcept = 0;

    // Starts o; its completion reaches the sink, never before this call returns.
    virtual void start(op& o) noexcept = 0;
    // Asks o to finish early. Its completion still arrives through the sink, with -ECANCELED or
    // with the result it had already reached: the op's memory is released only then.
    virtual void cancel(op& o) noexcept = 0;
    // Closes fd without a waiter (the destructor path); no op may be in flight on it.
    virtual void close_detached(int fd) noexcept = 0;

    // Submits what was prepared, waits up to timeout_ns (-1: no limit, 0: do not block) for
    // completions, and delivers every one that is there.
    virtual void poll(std::int64_t timeout_ns) noexcept = 0;
    // Cross-core doorbell without a syscall of its own: io_uring's MSG_RING posts a CQE into
    // another ring from this one's next submit. ring_fd() names this backend as a target (-1:
    // none); post_wake(fd) queues the message and returns false when this backend cannot.
    virtual int ring_fd() const noexcept { return -1; }
    virtual bool post_wake(int /*target_ring_fd*/) noexcept { return false; }

    // Completions still owed by the kernel, including those of cancels and detached closes.
    virtual std::size_t in_flight() const noexcept = 0;

    const backend_stats& stats() const noexcept { return stats_; }

protected:
    backend_stats stats_;
};

// Builds the backend named in cfg. `automatic` tries io_uring and falls back to epoll; `why`
// then holds the one-line reason. An explicit choice that fails throws std::system_error.
std::unique_ptr<backend> make_backend(const backend_config& cfg, detail::completion_sink& sink,
                                      std::string* why = nullptr);

}  // namespace coring
