#pragma once
// task<T>: a lazy, move-only coroutine. Nothing runs until it is awaited (or handed to
// core::spawn); on completion it resumes its awaiter by symmetric transfer, so a chain of a
// million tasks that finish synchronously runs in constant stack. An exception thrown inside
// is stored in the promise and rethrown by the awaiter.
#include <coring/frame_allocator.hpp>

#include <cassert>
#include <coroutine>
#include <exception>
#include <optional>
#include <utility>

namespace coring {

template <class T = void>
class task;

namespace detail {

class promise_base {
public:
    struct final_awaiter {
        bool await_ready() const noexcept { return false; }
        template <class Promise>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> self) noexcept {
            // Returning the parent makes the switch a tail call, not a nested resume().
            if (auto parent = self.promise().continuation_) return parent;
            return std::noop_coroutine();
        }
        void await_resume() const noexcept {}
    };

    std::suspend_always initial_suspend() const noexcept { return {}; }
    final_awaiter final_suspend() const noexcept { return {}; }
    void unhandled_exception() noexcept { exception_ = std::current_exception(); }

    // Frames come from the running core's size-class allocator (frame_allocator.hpp).
    static void* operator new(std::size_t size) { return allocate_frame(size); }
    static void operator delete(void* frame, std::size_t size) noexcept { free_frame(frame, size); }

    void set_continuation(std::coroutine_handle<> parent) noexcept { continuation_ = parent; }
    void rethrow_if_failed() const {
        if (exception_) std::rethrow_exception(exception_);
    }

private:
    std::coroutine_handle<> continuation_;
    std::exception_ptr exception_;
};

template <class T>
class promise final : public promise_base {
public:
    task<T> get_return_object() noexcept;
    template <class U>
    void return_value(U&& value) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
        value_.emplace(std::forward<U>(value));
    }
    T take() {
        rethrow_if_failed();
        assert(value_);
        return std::move(*value_);
    }

private:
    std::optional<T> value_;
};

template <>
class promise<void> final : public promise_base {
public:
    task<void> get_return_object() noexcept;
    void return_void() const noexcept {}
    void take() const { rethrow_if_failed(); }
};

}  // namespace detail

template <class T>
class [[nodiscard]] task {
public:
    using promise_type = detail::promise<T>;
    using handle_type = std::coroutine_handle<promise_type>;

    task() noexcept = default;
    explicit task(handle_type h) noexcept : handle_{h} {}
    task(task&& other) noexcept : handle_{std::exchange(other.handle_, {})} {}
    task& operator=(task&& other) noexcept {
        if (this != &other) {
            reset();
            handle_ = std::exchange(other.handle_, {});
        }
        return *this;
    }
    task(const task&) = delete;
    task& operator=(const task&) = delete;
    ~task() { reset(); }

    bool valid() const noexcept { return static_cast<bool>(handle_); }

    // Awaiting a task starts it and suspends the awaiter until it finishes.
    auto operator co_await() && noexcept {
        struct awaiter {
            handle_type child;
            bool await_ready() const noexcept { return !child || child.done(); }
            std::coroutine_handle<> await_suspend(std::coroutine_handle<> parent) noexcept {
                child.promise().set_continuation(parent);
                return child;  // symmetric transfer into the child
            }
            T await_resume() {
                assert(child && "awaiting an empty task");
                return child.promise().take();
            }
        };
        return awaiter{handle_};
    }

    // For owners that drive a task by hand (core::spawn): the caller now owns the frame.
    handle_type release() noexcept { return std::exchange(handle_, {}); }

private:
    void reset() noexcept {
        if (handle_) handle_.destroy();
        handle_ = {};
    }
    handle_type handle_;
};

namespace detail {
template <class T>
task<T> promise<T>::get_return_object() noexcept {
    return task<T>{std::coroutine_handle<promise<T>>::from_promise(*this)};
}
inline task<void> promise<void>::get_return_object() noexcept {
    return task<void>{std::coroutine_handle<promise<void>>::from_promise(*this)};
}
}  // namespace detail

}  // namespace coring
