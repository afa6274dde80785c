#include <coring/log.hpp>
#include <coring/socket.hpp>

#include <cstdlib>
#include <unistd.h>
#include <utility>

namespace coring::detail {

void op_awaiter::await_suspend(std::coroutine_handle<> h) noexcept {
    if (slot_) {
        if (op_awaiter* before = *slot_) {
            if (before->op_.pending != 0) {  // two receives (or two sends) at once would interleave bytes
                log("fd {}: two ops in one direction at once (one reader and one writer at most)", op_.fd);
                std::abort();
            }
            before->slot_ = nullptr;  // over, its task not resumed yet: the slot is free, as it was at completion
        }
        *slot_ = this;
    }
    op_.waiter = h;
    core::current().start(op_);
}

transfer_awaiter::transfer_awaiter(op_kind kind, int fd, op_awaiter** slot, void* buf, std::size_t len, int flags,
                                   std::int64_t timeout_ns) noexcept
    : op_awaiter{kind, fd, slot, flags} {
    op_.deadline_ns = deadline_after(timeout_ns);
    op_.buf = buf;
    op_.len = len > UINT32_MAX ? UINT32_MAX : static_cast<std::uint32_t>(len);  // a partial transfer
}

gather_awaiter::gather_awaiter(int fd, op_awaiter** slot, std::span<const iovec> pieces, std::int64_t timeout_ns) noexcept
    : op_awaiter{pieces.size() == 1 ? op_kind::send : op_kind::send_msg, fd, slot} {
    op_.deadline_ns = deadline_after(timeout_ns);
    if (pieces.size() == 1) {  // a plain send: no msghdr and iovec for the kernel to copy in and check
        op_.buf = pieces[0].iov_base;
        op_.len = pieces[0].iov_len > UINT32_MAX ? UINT32_MAX : static_cast<std::uint32_t>(pieces[0].iov_len);
        return;
    }
    msg_.msg_iov = const_cast<iovec*>(pieces.data());  // sendmsg only reads them
    msg_.msg_iovlen = pieces.size();
}

socket_base::socket_base(socket_base&& other) noexcept
    : fd_{std::exchange(other.fd_, -1)}, idle_timeout_ms_{other.idle_timeout_ms_} {
    take_slots_from(other);
}

socket_base& socket_base::operator=(socket_base&& other) noexcept {
    if (this != &other) {
        this->~socket_base();
        fd_ = std::exchange(other.fd_, -1);
        idle_timeout_ms_ = other.idle_timeout_ms_;
        take_slots_from(other);
    }
    return *this;
}

void socket_base::take_slots_from(socket_base& other) noexcept {
    // Ops in flight follow the socket: their completion clears the slot at its new address.
    for (int d = 0; d < 2; ++d) {
        in_flight_[d] = std::exchange(other.in_flight_[d], nullptr);
        if (in_flight_[d]) in_flight_[d]->slot_ = &in_flight_[d];
    }
}

void socket_base::cancel_in_flight() noexcept {
    for (op_awaiter*& slot : in_flight_) {
        if (!slot) continue;
        op_awaiter& target = *std::exchange(slot, nullptr);
        target.slot_ = nullptr;  // this socket may be gone when it completes
        core::current().cancel(target.op_);  // nothing to do if it is over already
    }
}

int socket_base::fd() const noexcept {
    if (!is_direct_fd(fd_)) return fd_;
    core* c = core::current_or_null();  // none: the ring, and the socket with it, are gone
    return c ? c->io().user_fd(fd_) : -1;
}

void socket_base::close_user_fd() noexcept {
    if (!is_direct_fd(fd_)) return;
    if (core* c = core::current_or_null()) c->io().close_user_fd(fd_);
}

socket_base::~socket_base() {
    if (fd_ < 0) return;
    cancel_in_flight();
    close_user_fd();
    if (core* c = core::current_or_null()) c->io().close_detached(std::exchange(fd_, -1));
    else if (!is_direct_fd(fd_)) ::close(std::exchange(fd_, -1));  // after its core is gone: nothing can be in flight
    // (a direct descriptor went with its core's ring, which closes every slot)
}

task<> close_fd(int fd) {
    if (fd < 0) co_return;
    status_awaiter closing{op_kind::close, fd, nullptr};
    (void)co_await closing;
}

task<> socket_base::close() noexcept {
    // Cancelling here rather than in await_suspend: from this call on the socket is closed
    // to its user, and the ops in flight must not outlive the fd. The close op itself starts
    // when awaited ([[nodiscard]]: dropping the awaitable would leak the fd).
    cancel_in_flight();
    close_user_fd();
    return close_fd(std::exchange(fd_, -1));
}

}  // namespace coring::detail
