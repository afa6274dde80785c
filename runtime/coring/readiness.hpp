#pragma once
// Readiness of an fd the runtime did not make: a C library's socket (hiredis, c-ares), which
// the library reads and writes itself and only needs to be told when it may
// (docs/ARCHITECTURE.md, "Third-party C libraries on a core").
//
//   auto ev = co_await wait_readable(fd);          // result<unsigned>: the poll revents seen
//   auto ev = co_await wait_writable(fd, 2s);      // ETIMEDOUT once 2 s have passed
//
// A wait is an op like any other: cancelling its task ends it with ECANCELED, a deadline (its
// own, or with_timeout's) with ETIMEDOUT, and it resumes through the ready queue. POLLERR and
// POLLHUP are reported whether asked for or not, so a wait for POLLIN also ends when the peer
// closes; the caller's own read then says what happened. At most one wait per direction per fd.
//
// io_uring: a single-shot IORING_OP_POLL_ADD. epoll: the fd is registered (edge-triggered) at
// its first wait; the wait is a poll() check, and "not ready" parks it until the next edge.
//
// The forget contract: before its owner closes such an fd, it must have no wait pending (cancel
// it and let it end) and it must call forget_fd(fd). On epoll, forget_fd drops the fd's
// registration and state; without it, the next fd with the same number (the kernel reuses
// numbers at once) would inherit stale readiness. On io_uring it costs nothing.
#include <coring/core.hpp>
#include <coring/op.hpp>
#include <coring/result.hpp>
#include <coring/timer.hpp>

#include <chrono>
#include <coroutine>
#include <cstdint>
#include <poll.h>

namespace coring {

class [[nodiscard]] readiness_awaiter {
public:
    readiness_awaiter(int fd, short events, std::int64_t deadline_ns) noexcept : op_{op_kind::poll, fd} {
        op_.flags = events;
        op_.deadline_ns = deadline_ns;
    }
    readiness_awaiter(const readiness_awaiter&) = delete;  // &op_ is the kernel's cookie
    readiness_awaiter& operator=(const readiness_awaiter&) = delete;

    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) noexcept {
        op_.waiter = h;
        core::current().start(op_);
    }
    // The revents (POLLIN, POLLOUT, POLLERR, POLLHUP...), or ECANCELED, ETIMEDOUT, EBADF.
    result<unsigned> await_resume() const noexcept {
        if (op_.res < 0) return to_error(op_.outcome());
        return static_cast<unsigned>(op_.res);
    }

private:
    op op_;
};

[[nodiscard]] inline readiness_awaiter wait_readable(int fd) noexcept { return {fd, POLLIN, 0}; }
[[nodiscard]] inline readiness_awaiter wait_writable(int fd) noexcept { return {fd, POLLOUT, 0}; }
template <class Rep, class Period>
[[nodiscard]] readiness_awaiter wait_readable(int fd, std::chrono::duration<Rep, Period> timeout) noexcept {
    return {fd, POLLIN, detail::deadline_after(timeout)};
}
template <class Rep, class Period>
[[nodiscard]] readiness_awaiter wait_writable(int fd, std::chrono::duration<Rep, Period> timeout) noexcept {
    return {fd, POLLOUT, detail::deadline_after(timeout)};
}

// Call before closing a foreign fd that was waited on (see the contract above); on the core
// that waited on it. Aborts on epoll if a wait is still pending on fd.
inline void forget_fd(int fd) noexcept { core::current().io().forget_fd(fd); }

}  // namespace coring
