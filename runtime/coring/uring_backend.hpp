#pragma once
// uring_backend: ops as io_uring SQEs, completions as CQEs. The only files that include
// <liburing.h> are this pair.
//
// Who owns what: an SQE's user_data is the op's address (cancel SQEs: the address | 1). From
// start() to the CQE, the kernel may read or write the op's buffer, sockaddr and socklen_t, so
// the op is pinned (it lives in a suspended frame). A cancelled op finishes only when both its
// own CQE and its cancel's CQE are in (op::pending). In-flight ops never exceed what the CQ can
// hold; beyond that they wait in a local FIFO (parked) and are submitted as CQEs are reaped.
#include <coring/backend.hpp>

#include <liburing.h>

namespace coring {

class uring_backend final : public backend {
public:
    // Throws std::system_error naming the call and entry count when no ring can be set up.
    uring_backend(const backend_config& cfg, detail::completion_sink& sink);
    ~uring_backend() override;

    backend_kind kind() const noexcept override { return backend_kind::uring; }
    std::string describe() const override;
    int open_socket(int domain, int type, int protocol) noexcept override;
    void adopt(int fd) noexcept override;
    void start(op& o) noexcept override;
    void cancel(op& o) noexcept override;
    void close_detached(int fd) noexcept override;
    void poll(std::int64_t timeout_ns) noexcept override;
    std::size_t in_flight() const noexcept override { return in_flight_ + parked_count_; }
    int ring_fd() const noexcept override { return has_msg_ring_ ? ring_.ring_fd : -1; }
    bool post_wake(int target_ring_fd) noexcept override;

private:
    io_uring_sqe* get_sqe() noexcept;
    void submit(op& o) noexcept;
    void reap() noexcept;
    void unpark() noexcept;

    io_uring ring_{};
    detail::completion_sink& sink_;
    unsigned setup_flags_ = 0;
    bool has_msg_ring_ = false;     // IORING_OP_MSG_RING (5.18+), probed at setup
    unsigned in_flight_ = 0;        // CQEs the kernel owes us
    unsigned in_flight_limit_ = 0;  // CQ size minus room for cancels and detached closes
    op* parked_head_ = nullptr;     // FIFO of ops waiting for CQ room
    op* parked_tail_ = nullptr;
    std::size_t parked_count_ = 0;
};

}  // namespace coring
