#pragma once
// task<T>: a lazy, move-only coroutine. Nothing runs until it is awaited (or handed to
// core::spawn); on completion it resumes its awaiter by symmetric transfer, so a chain of a
// million tasks that finish synchronously runs in constant stack. An exception thrown inside
// is stored in the promise and rethrown by the awaiter.
#include <coring/frame_allocator.hpp>

#include <cassert>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

namespace coring {

template <class T = void>
class task;
struct op;
class task_group;

namespace detail {

// What the core knows of a running task (a root: spawned, not awaited). It lives in the task's
// own frame, in the promise of task<void>, so a spawned task is one allocation: an idle
// connection's handler costs its frame and nothing beside it.
//
// A live root task is on one list: its group's children, or else the core's live list. A group
// with children has an anchor on the core's list (a task_context of its own that runs nothing),
// so the core reaches every task, and a task pays for one pair of links, not two.
//
// A task<void> that is awaited instead (never a root) uses only its first word and a flag: its
// awaiter's frame and whether an exception escaped it (promise_base), so the promise holds no
// second word for them: 8 bytes less in every frame.
struct task_context {
    union {
        op* waiting_on = nullptr;  // a root's: the op it is suspended on, if any
        void* awaiter_frame;       // an awaited task's: the frame to resume when it ends
    };
    bool cancelled = false;    // sticky: every later op of the task fails with ECANCELED
    bool system = false;       // the core's own tasks: they do not keep run() alive
    bool root = false;         // spawned: its end tells the core, and frees the frame
    bool anchor = false;       // not a task: a group's place on the core's list (group says which)
    bool escaped = false;      // an exception escaped the task (it waits in keep_exception's table)
    std::uint16_t expired = 0; // with_timeout scopes whose deadline passed: ops fail meanwhile
    task_context* prev = nullptr;  // the core's live list, or its group's children
    task_context* next = nullptr;
    task_group* group = nullptr;   // the group this task is a child of (an anchor's own), if any

    // Its ops fail at once (ECANCELED): it was cancelled, or is past a with_timeout deadline.
    bool refuses_ops() const noexcept { return cancelled || expired > 0; }

    // As promise_base asks of its link (continuation_word is the other kind).
    void* frame() const noexcept { return root ? nullptr : awaiter_frame; }
    void set_frame(void* f) noexcept { awaiter_frame = f; }
    bool failed() const noexcept { return escaped; }
    void set_failed(bool f) noexcept { escaped = f; }
};

// A task<T>'s link to its awaiter: the awaiting frame's address (frames are at least
// 8-aligned), and in bit 0 whether an exception escaped the task.
class continuation_word {
public:
    void* frame() const noexcept { return reinterpret_cast<void*>(word_ & ~failed_bit); }
    void set_frame(void* f) noexcept { word_ = reinterpret_cast<std::uintptr_t>(f) | (word_ & failed_bit); }
    bool failed() const noexcept { return (word_ & failed_bit) != 0; }
    void set_failed(bool f) noexcept { word_ = f ? word_ | failed_bit : word_ & ~failed_bit; }

private:
    static constexpr std::uintptr_t failed_bit = 1;
    std::uintptr_t word_ = 0;
};

// A task_context's list (the core's live tasks, or a group's children): doubly linked, with
// the head kept by its owner. One pair of helpers for both.
inline void push_front(task_context*& head, task_context& ctx) noexcept {
    ctx.prev = nullptr;
    ctx.next = head;
    if (head) head->prev = &ctx;
    head = &ctx;
}
inline void unlink(task_context*& head, task_context& ctx) noexcept {
    if (ctx.prev) ctx.prev->next = ctx.next;
    else head = ctx.next;
    if (ctx.next) ctx.next->prev = ctx.prev;
    ctx.prev = ctx.next = nullptr;
}

// A root task ended (defined by the core): it leaves the core's list and its group, and an
// exception that escaped it is logged.
void end_root(task_context& ctx, std::exception_ptr error) noexcept;

template <class T>
class promise;

// An exception that escaped a task waits here, keyed by its promise, until its awaiter (or,
// for a spawned task, the core) takes it. Rare, and so kept out of the frames: a pointer in
// every frame would be 8 bytes of every idle connection. Process-wide, under a lock (a task's
// awaiter may run on another thread).
void keep_exception(const void* promise, std::exception_ptr e) noexcept;
std::exception_ptr take_exception(const void* promise) noexcept;
std::size_t exceptions_waiting() noexcept;  // how many wait there (tests: none may be left)

// Link: where the promise keeps its awaiter's frame and whether an exception escaped
// (task_context for task<void>, continuation_word otherwise).
template <class Link>
class promise_base {
public:
    struct final_awaiter {
        bool await_ready() const noexcept { return false; }
        template <class Promise>
        std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> self) noexcept {
            // Returning the parent makes the switch a tail call, not a nested resume().
            if (auto parent = self.promise().continuation()) return parent;
            if constexpr (std::is_same_v<Promise, promise<void>>) {
                if (self.promise().ctx().root) {  // nobody awaits it: it frees itself
                    end_root(self.promise().ctx(), self.promise().take_failure());
                    self.destroy();
                }
            }
            return std::noop_coroutine();
        }
        void await_resume() const noexcept {}
    };

    std::suspend_always initial_suspend() const noexcept { return {}; }
    final_awaiter final_suspend() const noexcept { return {}; }
    void unhandled_exception() noexcept {
        keep_exception(this, std::current_exception());
        link_.set_failed(true);
    }

    // Frames come from the running core's size-class allocator (frame_allocator.hpp).
    static void* operator new(std::size_t size) { return allocate_frame(size); }
    static void operator delete(void* frame, std::size_t size) noexcept { free_frame(frame, size); }

    void set_continuation(std::coroutine_handle<> parent) noexcept { link_.set_frame(parent.address()); }
    void rethrow_if_failed() {
        if (link_.failed()) std::rethrow_exception(take_failure());
    }
    // The exception that escaped this task, once (null if none).
    std::exception_ptr take_failure() noexcept {
        if (!link_.failed()) return nullptr;
        link_.set_failed(false);
        return take_exception(this);
    }

protected:
    promise_base() noexcept = default;
    ~promise_base() {
        if (link_.failed()) (void)take_exception(this);  // nobody took it
    }
    Link link_;

private:
    std::coroutine_handle<> continuation() const noexcept { return std::coroutine_handle<>::from_address(link_.frame()); }
};

template <class T>
class promise final : public promise_base<continuation_word> {
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
class promise<void> final : public promise_base<task_context> {
public:
    task<void> get_return_object() noexcept;
    void return_void() const noexcept {}
    void take() { rethrow_if_failed(); }

    task_context& ctx() noexcept { return link_; }  // used when the task is spawned (core::spawn)
};

}  // namespace detail

template <class T>
class [[nodiscard]] task {
public:
    using promise_type = detail::promise<T>;
    using handle_type = std::coroutine_handle<promise_type>;
    using value_type = T;

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

    // Awaiting a task starts it and suspends the awaiter until it finishes. The task is its own
    // awaiter: a frame awaiting one holds the task alone (one pointer), not a second object.
    bool await_ready() const noexcept { return !handle_ || handle_.done(); }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<> parent) noexcept {
        handle_.promise().set_continuation(parent);
        return handle_;  // symmetric transfer into the child
    }
    T await_resume() {
        assert(handle_ && "awaiting an empty task");
        return handle_.promise().take();
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

namespace detail {
// g++ (verified on 12.2; clang 14 is clean) destroys a closure twice when it is a temporary
// argument inside a co_await expression: `co_await c.submit_to(1, [s] {...})` frees s's heap
// twice, whatever the callee does with it. A closure named first is fine, and so is one whose
// captures need no destructor (pointers, references, numbers). APIs that take a callable and
// are meant to be awaited check this at compile time (see docs/ARCHITECTURE.md, compiler notes).
template <class Fn>
inline constexpr bool callable_safe_in_co_await =
#if defined(__GNUC__) && !defined(__clang__)
    std::is_lvalue_reference_v<Fn> || std::is_trivially_destructible_v<std::remove_cvref_t<Fn>>;
#else
    true;
#endif
}  // namespace detail

#define CORING_CHECK_CALLABLE(Fn)                                                                        \
    static_assert(::coring::detail::callable_safe_in_co_await<Fn>,                                       \
                  "g++ destroys a temporary lambda with captures twice inside co_await: name it first, " \
                  "then pass it by name (auto f = [s] {...}; co_await x(f);), or capture by pointer")

// make_task(fn): a task that owns the callable fn and runs the task fn() returns. A lambda
// coroutine keeps its captures in the lambda object, not in its frame: `[s]() -> task<> {...}()`
// leaves the frame pointing at a temporary that dies at the end of the statement. Here the
// lambda is moved into make_task's own frame first, so its captures live as long as the task.
template <class Fn>
auto make_task(Fn fn) -> std::invoke_result_t<Fn&> {
    if constexpr (std::is_void_v<typename std::invoke_result_t<Fn&>::value_type>) {
        co_await fn();
    } else {
        co_return co_await fn();
    }
}

}  // namespace coring
