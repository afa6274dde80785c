#pragma once
// epoll_backend: the same ops as readiness plus non-blocking syscalls. The only files that
// include <sys/epoll.h> are this pair.
//
// Each fd is registered once, edge-triggered, for both directions, when the backend creates or
// adopts it. Per fd we remember whether each direction may be ready and which op (at most one
// per direction) is parked waiting for it. An op first tries its syscall; only EAGAIN parks it
// and clears readiness; an edge sets readiness and retries the parked op. EPOLLERR/EPOLLHUP
// wake both directions, so each syscall reports the real errno.
//
// Provided buffers: a recv with select_buffer waits for readiness first, then takes the most
// recently returned buffer from the free list and receives into it (EAGAIN gives it back), so
// an idle connection holds none. An empty free list ends the op with ENOBUFS, as on io_uring.
#include <coring/backend.hpp>

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
    void close_detached(int fd) noexcept override;
    void poll(std::int64_t timeout_ns) noexcept override;
    std::size_t in_flight() const noexcept override { return parked_ + buffer_waiters_.size(); }
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
    };
    fd_state& state_of(int fd);
    void register_fd(int fd) noexcept;
    void forget_fd(int fd) noexcept;
    void on_ready(int fd, int dir) noexcept;  // an edge: retry the parked op, if any
    void setup_buffers() override;
    void attempt(op& o) noexcept;  // perform, then finish or park
    int perform(op& o) noexcept;  // the syscall: a result, -EAGAIN or (no pool buffer) -ENOBUFS
    int recv_into_pool(op& o) noexcept;
    void finish(op& o, int res) noexcept;

    int epfd_ = -1;
    std::vector<fd_state> fds_;
    std::size_t parked_ = 0;                  // ops waiting for readiness
};

}  // namespace coring
