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
#include <vector>

namespace coring {

enum class backend_kind : std::uint8_t { uring, epoll, automatic };

std::string_view to_string(backend_kind k) noexcept;
result<backend_kind> parse_backend_kind(std::string_view text) noexcept;  // uring|epoll|auto

struct backend_config {
    backend_kind kind = backend_kind::automatic;
    unsigned sq_entries = 1024;  // io_uring submission queue
    unsigned cq_entries = 0;     // 0: room for two ops per allowed fd (RLIMIT_NOFILE), at least 4x SQ
    unsigned buffer_count = 1024;    // provided-buffer pool (recv_lease): a power of two, <= 32768
    unsigned buffer_size = 16384;    // bytes per buffer
    bool multishot = true;           // use multishot accept/recv where the kernel has them
};

// What this backend can do, probed once at setup (coring-echo --features prints it).
struct backend_features {
    bool multishot_accept = false;  // IORING_ACCEPT_MULTISHOT (5.19)
    bool multishot_recv = false;    // IORING_RECV_MULTISHOT (6.0)
    bool buffer_ring = false;       // IORING_REGISTER_PBUF_RING (5.19)
    bool send_zc = false;           // IORING_OP_SEND_ZC (6.0); not used yet
    bool msg_ring = false;          // IORING_OP_MSG_RING (5.18): cross-core wakes without eventfd
};

namespace detail {
// Where a backend delivers finished ops (implemented by the core).
class completion_sink {
public:
    virtual void complete(op& o) noexcept = 0;
    // A multishot op's completion that is not its last, or the last of an op with a source.
    virtual void deliver(op& o, bool own) noexcept = 0;
    // A cross-core wake sent by post_wake to ring_fd failed (e.g. the target's CQ overflowed):
    // the wake must go another way, or the target may sleep on mail.
    virtual void wake_failed(int ring_fd) noexcept = 0;

protected:
    ~completion_sink() = default;
};
}  // namespace detail

class backend {
public:
    virtual ~backend();  // frees the buffer pool
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

    virtual backend_features features() const noexcept { return {}; }
    const backend_stats& stats() const noexcept { return stats_; }

    // ---- the provided-buffer pool (DESIGN.md §4) -------------------------------------------
    // recv ops with select_buffer take a buffer only when data arrives, so an idle connection
    // holds none. io_uring: a registered buffer ring the kernel picks from. epoll: a free list
    // the backend picks from after readiness. Set up on first use; throws std::system_error.
    void ensure_buffers();
    std::byte* buffer(std::uint16_t id) const noexcept { return pool_ + std::size_t{id} * buffer_size_; }
    std::uint32_t buffer_size() const noexcept { return buffer_size_; }
    // A buffer comes back (a buffer_lease was dropped): into the pool, and to an op waiting for one.
    virtual void give_back(std::uint16_t id) noexcept = 0;
    // Per-buffer bookkeeping for whoever holds the buffer: a length and a link, so received
    // buffers can be queued without storage of their own.
    struct buffer_link {
        std::uint32_t len = 0;
        std::uint16_t next = 0;
    };
    buffer_link& link(std::uint16_t id) noexcept { return links_[id]; }

protected:
    explicit backend(const backend_config& cfg) noexcept
        : buffer_count_{cfg.buffer_count}, buffer_size_{cfg.buffer_size} {}
    // The backend-specific half of ensure_buffers: the pool memory exists when it runs.
    virtual void setup_buffers() = 0;

    backend_stats stats_;
    std::byte* pool_ = nullptr;
    std::vector<buffer_link> links_;
    unsigned buffer_count_;
    std::uint32_t buffer_size_;
};

// Builds the backend named in cfg. `automatic` tries io_uring and falls back to epoll; `why`
// then holds the one-line reason. An explicit choice that fails throws std::system_error.
std::unique_ptr<backend> make_backend(const backend_config& cfg, detail::completion_sink& sink,
                                      std::string* why = nullptr);

}  // namespace coring
