#pragma once
// epoll_backend: the same ops as readiness plus non-blocking syscalls. The only files that
// include <sys/epoll.h> are this pair.
//
// Each fd is registered once, edge-triggered, for both directions, when the backend creates or
// adopts it. Per fd we remember whether each direction may be ready and which op (at most one
// per direction) is parked waiting for it. An op first tries its syscall; EAGAIN parks it and
// clears readiness; an edge sets readiness and retries the parked op. EPOLLERR/EPOLLHUP wake
// both directions, so each syscall reports the real errno. A short plain read (no MSG_ flags) on
// a TCP socket also clears readiness: TCP hands back less than asked only when its receive queue
// is empty, and any byte that arrives later raises a new edge. So the next receive parks at once
// instead of paying a recv that can only say EAGAIN: one syscall less per message. Not once an
// edge has reported the peer's FIN, a reset or an error (they stay for the next recv to report,
// and no new edge would announce them), nor urgent data (EPOLLPRI: a read stops at the urgent
// mark with bytes queued behind it). Not for other sockets: AF_UNIX stream stops a read after
// passed fds, SCTP at each message.
//
// Provided buffers: a recv with select_buffer waits for readiness first, then takes the most
// recently returned buffer from the free list and receives into it (EAGAIN gives it back), so
// an idle connection holds none. An empty free list ends the op with ENOBUFS, as on io_uring.
//
// Files (docs/ARCHITECTURE.md, "Files"): a regular file is always "ready", so readiness cannot
// tell a cached read from one that waits for the disk. A file op first tries the call in a form
// that refuses to block (preadv2 RWF_NOWAIT, openat2 RESOLVE_CACHED); what would block goes to
// the process's blocking pool, and comes back through this backend's pool_port.
#include <coring/backend.hpp>
#include <coring/blocking_pool.hpp>

#include <algorithm>
#include <vector>

namespace coring {

class epoll_backend final : public backend {
public:
    epoll_backend(const backend_config& cfg, detail::completion_sink& sink);  // throws std::system_error
    ~epoll_backend() override;

    backend_kind kind() const noexcept override { return backend_kind::epoll; }
    std::string describe() const override;
    int open_socket(int domain, int type, int protocol) noexcept override;
    void adopt(int fd) noexcept override;
    void start(op& o) noexcept override;
    void cancel(op& o) noexcept override;
    void withdraw(op& o, op* heir) noexcept override;
    void cancel_everything() noexcept override;
    void close_detached(int fd) noexcept override;
    // EPOLL_CTL_DEL and a fresh state: the next fd with this number starts unregistered.
    void forget_fd(int fd) noexcept override;
    void poll(std::int64_t timeout_ns) noexcept override;
    std::size_t in_flight() const noexcept override {
        return parked_ + buffer_waiters_.size() + in_pool_ + pool_waiting_.size();
    }
    // sendmsg(2) always; receive bundles are io_uring's alone (a recv here fills one buffer).
    backend_features features() const noexcept override {
        backend_features f;
        f.send_msg = true;
        return f;
    }

private:
    struct fd_state {
        op* waiter[2] = {nullptr, nullptr};  // [0] reader, [1] writer
        bool ready[2] = {true, true};        // unknown counts as ready: try the syscall first
        bool tcp = false;                    // a short read means drained...
        bool sticky_event = false;           // ...until an edge said EPOLLRDHUP, HUP, ERR or PRI
        // In the epoll set. The backend's own fds are from birth; a foreign fd (op_kind::poll)
        // from its first wait until forget_fd.
        bool registered = false;
    };
    fd_state& state_of(int fd);
    int register_fd(int fd, bool tcp) noexcept;  // 0, or -errno when epoll refuses it
    void on_ready(int fd, int dir) noexcept;  // an edge: retry the parked op, if any
    void setup_buffers() override;
    void attempt(op& o) noexcept;  // perform, then finish or park
    int perform(op& o) noexcept;  // the syscall: a result, -EAGAIN or (no pool buffer) -ENOBUFS
    int recv_into_pool(op& o) noexcept;
    // What a pool receive asks for: the op's len, within one buffer (0: the whole buffer).
    std::uint32_t pool_recv_size(const op& o) const noexcept {
        return o.len != 0 ? std::min(o.len, buffer_size()) : buffer_size();
    }
    // A receive that returned r and left the stream's queue empty (see the top of this file).
    bool drained_by(const op& o, int r) const noexcept;
    void finish(op& o, int res) noexcept;
    void start_file_op(op& o) noexcept;
    void to_pool(op& o) noexcept;     // into the blocking pool, or its FIFO while this core's share is full
    void pool_done() noexcept;        // the port rang: complete what came back, let waiting ops in

    int epfd_ = -1;
    std::vector<fd_state> fds_;
    std::size_t parked_ = 0;                  // ops waiting for readiness
    detail::pool_port port_;                  // where the blocking pool hands this core's jobs back
    unsigned in_pool_ = 0;                    // jobs in the pool: at most blocking_pool::per_core_limit
    op_queue pool_waiting_;                   // file ops beyond that limit, in order (in their frames)
    struct respin {
        int fd;
        int dir;
    };
    // Injected EAGAINs (fault::eagain): parked ops the next poll wakes again. At most one per
    // fd and direction, as each is a parked op.
    std::vector<respin> respin_, respinning_;
};

}  // namespace coring
