#pragma once
// task_group: a nursery. Children run concurrently as tasks of the current core; join() waits
// until every child has ended; cancel() cancels them all (their ops end with ECANCELED, and each
// child resumes only after the kernel let go of its op). A child's frame frees itself when it
// ends and then tells the group: the group counts children, it never destroys one.
//
// Cancelling the task that is waiting in join() cancels the children, and join() still waits
// for all of them: no child outlives the scope that owns it. The destructor asserts the group
// is empty, because a destructor cannot wait.
#include <coring/core.hpp>
#include <coring/task.hpp>

#include <cstddef>
#include <type_traits>

namespace coring {

class task_group {
public:
    task_group() noexcept = default;
    task_group(const task_group&) = delete;
    task_group& operator=(const task_group&) = delete;
    ~task_group();

    // Starts t on the current core as a child of this group. An exception escaping it is logged.
    // A child spawned by a task that is cancelled (or past a with_timeout deadline) starts
    // cancelled, as the parent's own ops fail.
    void spawn(task<> t);
    // The same, but the child does not take the spawning task's cancellation: for a helper the
    // group owns that happens to be started from some task's call, e.g. a readiness pump a C
    // library's hook asks for while a cancelled task is calling into the library.
    void spawn_independent(task<> t);
    // The same for a callable returning task<>: the child owns it (captures live as long as it).
    template <class Fn>
        requires std::is_invocable_r_v<task<>, Fn&>
    void spawn(Fn fn) {
        spawn(make_task(std::move(fn)));
    }
    std::size_t size() const noexcept { return count_; }

    // Waits until every child has ended. A task of its own, so the wait's op sits in that small
    // frame while it waits, not in every frame that joins (a task and its awaiter there, 16
    // bytes, instead of 72: a pub/sub session's frame, say, which lives as long as its client).
    // Several tasks may join at once; all resume when the last child has ended. A task that is
    // already cancelled when it joins cancels the children first.
    [[nodiscard]] task<> join();

    void cancel() noexcept;
    // Cancels every child, then waits for all of them.
    task<> cancel_and_join();

private:
    class join_awaiter {
    public:
        explicit join_awaiter(task_group& g) noexcept : group_{g}, op_{op_kind::join, -1} {}
        join_awaiter(const join_awaiter&) = delete;
        bool await_ready() const noexcept { return group_.count_ == 0; }
        void await_suspend(std::coroutine_handle<> h) noexcept;
        void await_resume() const noexcept {}

    private:
        friend class task_group;
        task_group& group_;
        op op_;
        join_awaiter* next_ = nullptr;  // the group's other joiners
    };

    friend class core;
    void child_started(detail::task_context& ctx) noexcept;
    void child_ended(detail::task_context& ctx) noexcept;

    detail::task_context* children_ = nullptr;  // intrusive list through their prev/next
    detail::task_context anchor_{.waiting_on = nullptr, .anchor = true, .group = this};  // on the core's list while there are children
    core* home_ = nullptr;  // the core whose list holds the anchor: every child runs there
    std::size_t count_ = 0;
    join_awaiter* joiners_ = nullptr;  // waiting for count_ to reach 0, through their next_
};

}  // namespace coring
