#pragma once
// Timers live in the core's heap, not in the kernel: the loop's wait is bounded by the nearest
// deadline, so one io_uring_enter/epoll_wait serves all timers. Cancelling a sleep (task cancel,
// shutdown) removes it from the heap and resumes the task with ECANCELED.
#include <coring/core.hpp>
#include <coring/result.hpp>

#include <chrono>

namespace coring {

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
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    return sleep_awaiter{core::now_ns() + (ns > 0 ? ns : 0)};
}

// t is a std::chrono::steady_clock time point (CLOCK_MONOTONIC, as core::now_ns).
[[nodiscard]] inline sleep_awaiter sleep_until(std::chrono::steady_clock::time_point t) noexcept {
    return sleep_awaiter{std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count()};
}

}  // namespace coring
