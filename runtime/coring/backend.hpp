#pragma once
// backend: the seam between the core and the kernel. Two implementations: uring_backend
// (io_uring through liburing) and epoll_backend (readiness + non-blocking syscalls). Both take
// the same op descriptions and report completions the same way: by handing the finished op to
// the core's ready queue. Nothing above this seam includes <liburing.h> or <sys/epoll.h>.
#include <coring/faults.hpp>
#include <coring/op.hpp>
#include <coring/result.hpp>
#include <coring/stats.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace coring {

enum class backend_kind : std::uint8_t { uring, epoll, automatic };

std::string_view to_string(backend_kind k) noexcept;
result<backend_kind> parse_backend_kind(std::string_view text) noexcept;  // uring|epoll|auto

// The default of the io_uring fast paths that are on by default (direct descriptors, receive
// bundles, coalesced sends): true, unless the environment says CORING_FAST_PATHS=off (so the
// test suite can run again with them off; an explicit setting or flag still wins).
bool fast_paths_default() noexcept;

struct backend_config {
    backend_kind kind = backend_kind::automatic;
    unsigned sq_entries = 1024;  // io_uring submission queue
    unsigned cq_entries = 0;     // 0: room for two ops per allowed fd (RLIMIT_NOFILE), at least 4x SQ
    unsigned buffer_count = 1024;    // provided-buffer pool (recv_lease): a power of two, <= 32768
    unsigned buffer_size = 16384;    // bytes per buffer
    bool multishot = true;           // use multishot accept/recv where the kernel has them
    bool coalesce = fast_paths_default();     // gather sends: what a connection queued goes out in one sendmsg
    bool recv_bundle = fast_paths_default();  // io_uring: one receive completion may fill several buffers
    // io_uring send paths (docs/ARCHITECTURE.md, "Send paths"); each is used only where probed.
    bool send_zc = false;                // sends of at least zc_threshold bytes go as SEND_ZC (off: measured
                                         // costlier on loopback, docs/ARCHITECTURE.md "Send paths")
    std::uint32_t zc_threshold = 16384;  // bytes
    bool registered_buffers = true;      // zerocopy sends from pool buffers use them registered
    bool sqpoll = false;                 // a kernel thread polls the SQ (IORING_SETUP_SQPOLL)
    // io_uring direct descriptors: accepted sockets live in the ring's registered file table
    // (docs/ARCHITECTURE.md, "Direct descriptors"), where the kernel has everything they need.
    bool fixed_files = fast_paths_default();
    unsigned fixed_file_slots = 0;   // table size; 0: RLIMIT_NOFILE at setup, at most 65536
    fault_config faults = fault_config::from_environment();  // off unless CORING_FAULTS says so (faults.hpp)
};

// What this backend can do, probed once at setup (coring-echo --features prints it).
struct backend_features {
    bool multishot_accept = false;  // IORING_ACCEPT_MULTISHOT (5.19)
    bool multishot_recv = false;    // IORING_RECV_MULTISHOT (6.0)
    bool buffer_ring = false;       // IORING_REGISTER_PBUF_RING (5.19)
    bool send_zc = false;           // IORING_OP_SEND_ZC (6.0): large sends without a copy
    bool msg_ring = false;          // IORING_OP_MSG_RING (5.18): cross-core wakes without eventfd
    bool send_msg = false;          // gather sends: IORING_OP_SENDMSG (5.3); epoll: sendmsg(2)
    bool recv_bundle = false;       // IORING_FEAT_RECVSEND_BUNDLE (6.10): multi-buffer receives
    bool registered_buffers = false;  // SEND_ZC from registered buffers (6.0), slots filled one by one (5.19)
    bool sqpoll = false;            // IORING_SETUP_SQPOLL without privileges (5.11)
    bool file_ops = false;          // IORING_OP_OPENAT2, STATX and READ (5.6): files without a thread of ours
    // What this backend does with them (a feature, and its flag on): --features says both.
    bool send_zc_on = false;
    bool registered_buffers_on = false;
    bool sqpoll_on = false;
    // Direct descriptors in use: a sparse file table registered (5.19) and IORING_OP_FIXED_FD_INSTALL
    // (6.8, which also dates the socket setsockopt command, 6.7), so a user who asks can still get
    // a real fd. False when the kernel lacks them or --fixed-files is off.
    bool fixed_files = false;
    unsigned fixed_file_slots = 0;  // the table's size when fixed_files
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
    // The core's final drain, once no task is left: cancels every op still started (a receive
    // of a stream that belongs to no task). Their completions come as for cancel.
    virtual void cancel_everything() noexcept;
    // o's memory is about to go, or to move to heir (core::withdraw): from now on nothing here
    // refers to o. Parked, it leaves its queue (heir takes its place there); in the kernel
    // (io_uring), it is cancelled and its remaining CQEs are waited for on the spot, then handed
    // to heir, or, with none, their buffers go back to the pool. o.pending counts them.
    // The base handles a wait for a buffer.
    virtual void withdraw(op& o, op* heir) noexcept;
    // Closes fd without a waiter (the destructor path); no op may be in flight on it. A direct
    // descriptor is closed through the ring, after every SQE already queued.
    virtual void close_detached(int fd) noexcept = 0;
    // Drops what the backend keeps about fd, which its owner is about to close (epoll: the
    // registration and readiness; io_uring: per-fd send flags). No op may wait on fd.
    virtual void forget_fd(int fd) noexcept = 0;

    // ---- direct descriptors (io_uring only; see is_direct_fd) --------------------------------
    // A real fd for the socket fd names: fd itself when it is one; for a direct descriptor a new
    // fd (close-on-exec) for the same socket, made through the ring at once
    // (IORING_OP_FIXED_FD_INSTALL). The caller owns it. -errno on failure.
    virtual int install_fd(int fd) noexcept { return fd; }
    // The fd a socket's fd() hands out for direct descriptor `direct`: made by install_fd on the
    // first call and kept here, not in the socket (sockets stay small), until close_user_fd,
    // which the socket calls when it closes; the backend closes any left over when it goes.
    // No op names it (they all use the direct descriptor), so no queued SQE meets its number.
    // -1 when none could be made.
    int user_fd(int direct) noexcept;
    void close_user_fd(int direct) noexcept {
        if (!user_fds_.empty()) drop_user_fd(direct);  // empty nearly always
    }
    // setsockopt(fd, level, name, value) for an int option on a real or direct descriptor (the
    // latter through the ring at once: a socket command). 0 or -errno.
    virtual int set_socket_option(int fd, int level, int name, int value) noexcept;
    // Free slots of the file table (0 without one); tests count them to prove nothing leaks.
    virtual unsigned direct_slots_free() const noexcept { return 0; }
    // Few slots are left: a multishot accept must pause, since one kernel pass may fill the table
    // and a connection accepted into a full table is closed by the kernel (accept_feed).
    virtual bool direct_slots_low() const noexcept { return false; }

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
    // Faults on purpose (faults.hpp): the core that owns this backend hands it its injector.
    void inject(detail::fault_injector* f) noexcept { faults_ = f; }
    const backend_stats& stats() const noexcept { return stats_; }
    // --coalesce: gather what is queued into one send (write_all of several pieces, the echo
    // path). Off, each piece is a send of its own, as before gather sends existed (A/B runs).
    bool coalesce() const noexcept { return coalesce_; }
    // Brings counters that are read rather than counted up to date (the SQ thread's CPU time).
    virtual void refresh_stats() noexcept {}

    // ---- the provided-buffer pool (docs/ARCHITECTURE.md, "Receive buffers") ---------------
    // recv ops with select_buffer take a buffer only when data arrives, so an idle connection
    // holds none. io_uring: a registered buffer ring the kernel picks from, kept short (a
    // window that grows when it runs dry) and refilled with the most recently returned
    // buffers, so a light load keeps touching the same few pages. epoll: the backend takes the
    // most recently returned buffer after readiness. An empty pool is not a reason to wait:
    // the reader gets a spare buffer of its own (take_spare), so no set of peers that hold
    // buffers can stop a reader that waits. Set up on first use; throws std::system_error.
    void ensure_buffers();
    // Ids below buffer_count() name pool buffers; ids above name spares.
    std::byte* buffer(std::uint16_t id) const noexcept {
        return id < buffer_count_ ? pool_ + std::size_t{id} * buffer_size_ : spares_[id - buffer_count_].get();
    }
    std::uint32_t buffer_size() const noexcept { return buffer_size_; }
    unsigned buffer_count() const noexcept { return buffer_count_; }
    // Pool buffers nobody holds (in the kernel's ring or in the free list).
    unsigned buffers_free() const noexcept { return static_cast<unsigned>(free_.size()) + buffers_in_ring_; }
    // Less than half the pool free: receives for readers that are away pause, and new ones take
    // one buffer at a time (see recv_feed).
    bool buffers_scarce() const noexcept { return buffers_free() < buffer_count_ / 2; }
    // A buffer of its own for a reader that found the pool empty: an id, or -1 when the id
    // space or the heap is used up (the reader then waits for any buffer, wait_for_buffer).
    int take_spare() noexcept;
    // A buffer comes back (a buffer_lease was dropped, a queue was dropped): a pool buffer to
    // the ring or the free list, a spare to the heap; then a reader waiting for one goes.
    void give_back(std::uint16_t id) noexcept;
    // The buffers of one received result nobody will read: `first`, and for a bundle of
    // count > 1 the rest of its chain.
    void give_back_received(std::uint16_t first, std::uint16_t count) noexcept {
        for (std::uint16_t k = 0; k < std::max<std::uint16_t>(count, 1); ++k) {
            const std::uint16_t next = links_[first].next;
            give_back(first);
            first = next;
        }
    }
    // Per-buffer bookkeeping for whoever holds the buffer: a length and a link, so received
    // buffers can be queued without storage of their own.
    struct buffer_link {
        std::uint32_t len = 0;
        std::uint16_t next = 0;
    };
    buffer_link& link(std::uint16_t id) noexcept { return links_[id]; }
    // An op of kind buffer_wait, started by the core: it completes (res 0) at the next
    // give_back, longest waiter first. Only when pool and spares are all used up.
    void wait_for_buffer(op& o) noexcept;
    void stop_waiting_for_buffer(op& o) noexcept;
    // Gives the pages of pool buffers that sat unused since the last round back to the kernel
    // (MADV_DONTNEED); the core starts a round about once a second while any are dirty. A call
    // trims at most trim_per_turn buffers and says whether the round has more: then the core
    // calls again on its next turn, so a thousand cold buffers (a burst that has passed) cost
    // the loop many short pauses, never one of several milliseconds.
    bool trim_buffers() noexcept;
    static constexpr unsigned trim_per_turn = 32;
    bool buffers_to_trim() const noexcept { return dirty_ > 0; }

protected:
    backend(const backend_config& cfg, detail::completion_sink& sink) noexcept
        : sink_{sink}, buffer_count_{cfg.buffer_count}, buffer_size_{cfg.buffer_size}, coalesce_{cfg.coalesce} {}
    // The backend-specific half of ensure_buffers: the pool memory and free list exist when it
    // runs; io_uring moves the first window of buffers into its ring.
    virtual void setup_buffers() = 0;
    // Every op waiting in q (never in the kernel) ends now with ECANCELED (cancel_everything).
    void cancel_queued(op_queue& q) noexcept;
    // io_uring: puts buffer id into the kernel's ring if the ring is below its window (true).
    virtual bool to_ring(std::uint16_t /*id*/) noexcept { return false; }
    virtual void on_trim() noexcept {}  // io_uring: a quiet second halves the ring's window
    // Pool buffer id is about to lose its pages (MADV_DONTNEED): io_uring drops its registration,
    // which pins the old pages, so a fixed-buffer send never reads pages the pool no longer maps.
    virtual void before_trim(std::uint16_t /*id*/) noexcept {}
    // The most recently returned free pool buffer, marked as touched; -1 when none is free.
    int take_free() noexcept;
    void drop_user_fd(int direct) noexcept;
    // A touched pool buffer back on top of the free list (the warmest goes out first).
    void put_free(std::uint16_t id) noexcept {
        free_.push_back(id);
        ++dirty_;
    }

    detail::completion_sink& sink_;
    detail::fault_injector* faults_ = nullptr;  // the core's, when faults are on
    backend_stats stats_;
    std::byte* pool_ = nullptr;
    std::vector<buffer_link> links_;
    std::vector<std::uint16_t> free_;  // LIFO: the warmest buffer goes out first
    std::vector<bool> touched_;        // by pool id: its pages may be resident
    std::size_t low_water_ = 0;        // the fewest free_ held since the last trim round
    std::size_t trim_from_ = 0;        // where in free_ the round in progress goes on
    unsigned dirty_ = 0;               // touched buffers now in free_ (candidates for trim)
    unsigned buffers_in_ring_ = 0;     // io_uring: given to the kernel, not yet seen taken
    std::vector<std::unique_ptr<std::byte[]>> spares_;  // by id - buffer_count_
    std::vector<std::uint16_t> free_spare_ids_;
    op_queue buffer_waiters_;
    std::unordered_map<int, int> user_fds_;  // direct descriptor -> the fd user_fd made for it
    unsigned buffer_count_;
    std::uint32_t buffer_size_;
    bool coalesce_;
};

// Builds the backend named in cfg. `automatic` tries io_uring and falls back to epoll; `why`
// then holds the one-line reason. An explicit choice that fails throws std::system_error.
std::unique_ptr<backend> make_backend(const backend_config& cfg, detail::completion_sink& sink,
                                      std::string* why = nullptr);

}  // namespace coring
