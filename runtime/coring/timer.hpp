#pragma once
// Timers live in the core's heap, not in the kernel: the loop's wait is bounded by the nearest
// deadline, so one io_uring_enter/epoll_wait serves all timers. Cancelling a sleep (task cancel,
// shutdown) removes it from the heap and resumes the task with ECANCELED.
//
// Timeouts are cancellation with a reason. with_timeout(d, x) arms a deadline for the current
// task; when it passes, the op the task waits on is cancelled (on io_uring: ASYNC_CANCEL, then
// both CQEs), and every further op inside x fails at once. x still runs to its end, so when
// ETIMEDOUT comes back, nothing inside x is in flight and its buffers are free again.
#include <coring/core.hpp>
#include <coring/result.hpp>
#include <coring/task.hpp>

#include <chrono>
#include <cstdint>
#include <type_traits>
#include <utility>

namespace coring {

namespace detail {
// now + d, saturating: with_timeout(nanoseconds::max(), ...) or hours::max() means "never",
// not an overflow into the past.
template <class Rep, class Period>
std::int64_t deadline_after(std::chrono::duration<Rep, Period> d) noexcept {
    constexpr std::int64_t never = INT64_MAX;
    const std::int64_t now = core::now_ns();
    if (std::chrono::duration<double, std::nano>(d).count() >= static_cast<double>(never - now)) return never;
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    return now + (ns > 0 ? ns : 0);
}

}  // namespace detail

class [[nodiscard]] sleep_awaiter {
public:
    explicit sleep_awaiter(std::int64_t deadline_ns) noexcept : op_{op_kind::timer, -1} {
        op_.deadline_ns = deadline_ns;
    }
    sleep_awaiter(const sleep_awaiter&) = delete;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) noexcept {
        op_.waiter = h;
        core::current().start(op_);
    }
    // Success, or ECANCELED when the task was cancelled first.
    result<void> await_resume() const noexcept {
        if (op_.res < 0) return to_error(op_.res);
        return {};
    }

private:
    op op_;
};

template <class Rep, class Period>
[[nodiscard]] sleep_awaiter sleep_for(std::chrono::duration<Rep, Period> d) noexcept {
    return sleep_awaiter{detail::deadline_after(d)};
}

// t is a std::chrono::steady_clock time point (CLOCK_MONOTONIC, as core::now_ns).
[[nodiscard]] inline sleep_awaiter sleep_until(std::chrono::steady_clock::time_point t) noexcept {
    return sleep_awaiter{std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count()};
}

namespace detail {

// A with_timeout deadline, armed for the current task while this object lives.
class deadline_scope {
public:
    explicit deadline_scope(std::int64_t deadline_ns) noexcept : op_{op_kind::deadline, -1} {
        op_.deadline_ns = deadline_ns;
        core::current().arm_deadline(op_);
    }
    deadline_scope(const deadline_scope&) = delete;
    ~deadline_scope() { core::current().disarm_deadline(op_); }

    // ECANCELED because this deadline passed (and not because the task itself was cancelled)
    // becomes ETIMEDOUT; anything else, data included, stands.
    template <class R>
    R verdict(R r) const noexcept {
        if (!r && r.error() == std::errc::operation_canceled && op_.timed_out && !op_.ctx->cancelled)
            return std::errc::timed_out;
        return r;
    }

private:
    op op_;
};

// What co_await x gives (an op's awaiter, or a task: its own awaiter).
template <class A>
struct await_result {
    using type = decltype(std::declval<A&>().await_resume());
};

}  // namespace detail

// co_await with_timeout(d, x): x's result, or ETIMEDOUT once d has passed and x has finished.
// x is any awaitable whose result is a result<T> (an op, or a task<result<T>>). It is taken by
// reference: await it in the same expression, `co_await with_timeout(1s, stream.recv(buf))`.
template <class Rep, class Period, class Awaitable>
[[nodiscard]] task<typename detail::await_result<std::remove_cvref_t<Awaitable>>::type> with_timeout(
    std::chrono::duration<Rep, Period> d, Awaitable&& x) {
    detail::deadline_scope scope{detail::deadline_after(d)};
    auto r = co_await x;  // in place: an op's awaiter is not movable
    co_return scope.verdict(std::move(r));
}

}  // namespace coring
