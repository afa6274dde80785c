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
#include <utility>

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

// One direction of a library's wish to hear about an fd (hiredis's addRead/delRead hooks,
// c-ares's sock_state_cb), served by a pump task that waits (wait_ready) and calls the library
// back for as long as the wish stands:
//
//   if (unsigned g = wish.set(on)) group.spawn_independent(pump(g));  // from the library's hook
//   task<> pump(unsigned g) {                                   // the pump
//       wish.enter();
//       while (wish.current(g)) { wait_ready(...), then the library's handler }
//       wish.leave(g);
//   }
//
// spawn_independent: the hook runs in whatever task called into the library, perhaps a
// cancelled one, and a pump born cancelled would end at once and let the wish lapse while the
// library waits for it. Switching it off cancels the pump's wait (ECANCELED ends it); a pump
// switched off from inside its own callback sees it when the callback returns. Switching off and on again starts a new
// pump under a new generation, and the old one ends at its next check.
class readiness_wish {
public:
    // The generation a new pump must run under when this turns it on; 0 when none is needed.
    unsigned set(bool on) noexcept {
        if (on == active_) return 0;  // libraries repeat their wishes (hiredis: addRead after every read)
        active_ = on;
        if (on) return ++generation_;
        detail::task_context* t = std::exchange(task_, nullptr);
        core& here = core::current();
        if (t && t != here.current_task()) here.cancel_task(*t);
        return 0;
    }
    bool active() const noexcept { return active_; }
    // Whether the pump of that generation is still the one wanted.
    bool current(unsigned generation) const noexcept { return active_ && generation_ == generation; }
    // The pump starts: its task is the one set(false) cancels.
    void enter() noexcept { task_ = core::current().current_task(); }
    // The pump ends. If it was still the wanted one (its wait failed: the core is stopping),
    // the wish lapses, so that the library's next wish starts a new pump.
    void leave(unsigned generation) noexcept {
        if (generation_ != generation) return;
        task_ = nullptr;
        active_ = false;
    }

private:
    bool active_ = false;
    unsigned generation_ = 0;
    detail::task_context* task_ = nullptr;
};

// Readable (write false) or writable (write true): the pump's one wait for either direction.
[[nodiscard]] inline readiness_awaiter wait_ready(int fd, bool write) noexcept {
    return {fd, static_cast<short>(write ? POLLOUT : POLLIN), 0};
}

// Call before closing a foreign fd that was waited on (see the contract above); on the core
// that waited on it. Aborts on epoll if a wait is still pending on fd.
inline void forget_fd(int fd) noexcept { core::current().io().forget_fd(fd); }

}  // namespace coring
