#pragma once
// core: one per thread. It owns a backend (io_uring or epoll), a FIFO ready queue, a timer heap
// and the tasks spawned on it. Everything here is touched only by its own thread, except
// request_stop_from_any_thread(), which is an atomic flag plus an eventfd write.
//
// Ownership of tasks: every coroutine runs under a root (core::spawn, block_on). The root's
// frame holds a task_context that knows which op the task is blocked on, so the core can cancel
// any task, and shutdown can cancel all of them and reap every kernel completion before a frame
// is freed.
#include <coring/backend.hpp>
#include <coring/mailbox.hpp>
#include <coring/op.hpp>
#include <coring/stats.hpp>
#include <coring/task.hpp>

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace coring {

class core;
class task_group;

namespace detail {

struct ready_item {
    std::coroutine_handle<> handle;
    task_context* ctx;
};

// FIFO of coroutines to resume; a ring buffer that doubles when full.
class ready_queue {
public:
    bool empty() const noexcept { return head_ == tail_; }
    std::size_t size() const noexcept { return tail_ - head_; }
    void push(ready_item item);
    ready_item pop() noexcept { return items_[head_++ & (items_.size() - 1)]; }

private:
    std::vector<ready_item> items_ = std::vector<ready_item>(256);
    std::size_t head_ = 0;
    std::size_t tail_ = 0;
};

// Binary min-heap of timer ops by deadline; each op knows its index, so cancel is O(log n).
class timer_heap {
public:
    bool empty() const noexcept { return heap_.empty(); }
    std::size_t size() const noexcept { return heap_.size(); }
    op& top() const noexcept { return *heap_.front(); }
    void push(op& o);
    void erase(op& o) noexcept;

private:
    void sift_up(std::size_t i) noexcept;
    void sift_down(std::size_t i) noexcept;
    void place(std::size_t i, op* o) noexcept {
        heap_[i] = o;
        o->heap_index = static_cast<std::uint32_t>(i);
    }
    std::vector<op*> heap_;
};

template <class Fn>
class remote_call;

// A link in a core's circular list of armed sources; the core holds the list's head, so a
// source leaves the list with its own two pointers (no pointer to its core: a receive feed is
// part of every idle connection's memory).
struct armed_link {
    armed_link* prev = nullptr;
    armed_link* next = nullptr;
};

// Something a core has armed outside any task's wait: a multishot accept that keeps running
// while its reader is elsewhere, owned by a listener that may belong to no task at all. The
// core lists them, so that a stop and the final drain reach them directly, not only through
// the op a task happens to wait on at that instant. (Receive feeds live inside their streams,
// unlisted: the final drain cancels whatever is still in the kernel, backend::cancel_everything.)
class armed_source : private armed_link {
public:
    armed_source(const armed_source&) = delete;
    armed_source& operator=(const armed_source&) = delete;
    // A graceful stop began: listeners stop accepting (their readers get ECANCELED).
    virtual void on_stop() noexcept {}
    // The core is going down: cancel the op, give back what is queued, never arm again.
    virtual void on_drain() noexcept = 0;
    // On its core's list; false once that core is gone (everything was drained then).
    bool listed() const noexcept { return prev != nullptr; }

protected:
    armed_source() noexcept;  // on the current core
    ~armed_source();

private:
    friend class coring::core;
};

// The cores of one run(): how many have finished their own tasks. A finished core keeps
// serving mail until all have, because a peer may still be waiting on it.
struct run_group {
    std::atomic<unsigned> finished{0};
    unsigned size = 1;
};

}  // namespace detail

struct core_config {
    unsigned id = 0;
    backend_config backend;
    std::chrono::milliseconds drain_timeout{5000};
};

class core final : private detail::completion_sink {
public:
    explicit core(const core_config& cfg);
    core(const core&) = delete;
    core& operator=(const core&) = delete;
    ~core();  // cancels what is left and reaps every completion before freeing anything

    // The core of the calling thread; a programming error (abort) when there is none.
    static core& current() noexcept;
    static core* current_or_null() noexcept;

    unsigned id() const noexcept { return id_; }
    backend& io() noexcept { return *backend_; }
    backend_kind kind() const noexcept { return backend_->kind(); }
    // Why `auto` did not pick io_uring (empty when it did, or when the choice was explicit).
    const std::string& fallback_reason() const noexcept { return fallback_reason_; }

    // Runs t as a new task owned by this core. An exception that escapes it is logged.
    void spawn(task<> t);
    void spawn(task<> t, task_group& group, bool inherit_cancel = true);  // see task_group::spawn
    // The same for a callable returning task<> (a lambda with captures): the task owns it, so
    // its captures live as long as the task (see make_task).
    template <class Fn>
        requires std::is_invocable_r_v<task<>, Fn&>
    void spawn(Fn fn) {
        spawn(make_task(std::move(fn)));
    }
    template <class Fn>
        requires std::is_invocable_r_v<task<>, Fn&>
    void spawn(Fn fn, task_group& group) {
        spawn(make_task(std::move(fn)), group);
    }

    // A task of the runtime's own, as the doorbell reader is: it never keeps the core running,
    // a graceful stop's drain spares it, and the core's final drain cancels it (--stats-every).
    void spawn_background(task<> t) { spawn_root(std::move(t), true); }

    // Runs the loop until t finishes and returns its value (or rethrows its exception). Other
    // tasks keep running meanwhile and stay alive afterwards.
    template <class T>
    T block_on(task<T> t);
    // The same, but when `limit` passes first every task is cancelled and, once t has ended,
    // std::runtime_error is thrown: for tests that must end in bounded time.
    template <class T>
    T block_on(task<T> t, std::chrono::nanoseconds limit);

    // Runs until every user task has finished (a server: until a stop ends its accept loop),
    // then cancels the core's own tasks and reaps every completion.
    void run();

    // Graceful stop: accepts end at once (ECANCELED), other tasks get drain_timeout, then are
    // cancelled. A second request cancels everything at once.
    void request_stop() noexcept;
    void request_stop_from_any_thread() noexcept;
    bool stopping() const noexcept { return stopping_; }
    // Cancels every task (user and system): their current and future ops fail with ECANCELED.
    void cancel_all() noexcept;
    void cancel_user_tasks() noexcept;  // the same, sparing the core's own tasks
    std::size_t live_tasks() const noexcept { return live_user_tasks_; }

    core_stats stats() const noexcept;

    // ---- across cores --------------------------------------------------------------------
    // The cores of this run (set by run(); a lone core knows only itself).
    unsigned core_count() const noexcept { return static_cast<unsigned>(peers_.size()); }
    core& peer(unsigned k) const noexcept { return *peers_[k]; }
    void join_group(std::vector<core*> peers, detail::run_group* group);
    // Tells the run this core has no work of its own left (run() does it; so must a launcher
    // whose core failed before run()), and rings the peers so they notice.
    void leave_group() noexcept;

    // co_await core::current().submit_to(k, fn): runs fn() on core k and gives its result here
    // (fn may return a task<T>, which then runs on core k). fn is copied (an lvalue) or moved
    // into the awaiting frame and invoked on core k, so it must be safe to run there.
    // Exceptions travel back. With g++, a callable whose captures have destructors must be
    // passed by name (CORING_CHECK_CALLABLE says why).
    template <class Fn>
    [[nodiscard]] detail::remote_call<std::decay_t<Fn>> submit_to(unsigned k, Fn&& fn);
    // Fire and forget: runs fn() on core k (a task<> it returns is spawned there); nothing comes
    // back, an exception is logged there. fn travels in a heap node, freed after it ran.
    template <class Fn>
    void post_to(unsigned k, Fn fn);

    // Sends m to core m.to: into its inbox, or, when that is full, into a local outbox that
    // each loop turn retries (back-pressure without loss). At most one wake per destination
    // per turn, and only when the destination is about to sleep or sleeping.
    void post(detail::mail& m) noexcept;
    void resume_later(std::coroutine_handle<> h, detail::task_context* ctx) { ready_.push({h, ctx}); }

    // For awaitables. start: o.waiter is set; o completes through the ready queue, never
    // inline. cancel: see backend::cancel.
    void start(op& o) noexcept;
    void cancel(op& o) noexcept;
    void cancel_task(detail::task_context& ctx) noexcept;
    void complete_join(op& o) noexcept { complete(o); }  // task_group: the last child ended
    void complete_wait(op& o) noexcept { complete(o); }  // a wait_list lets a parked op go
    // Starts o as if ctx's task had: for a feed that re-arms its op on behalf of its reader.
    void start_for(op& o, detail::task_context* ctx) noexcept;
    // o's memory is about to go (heir null), or o is moving to heir, which already holds a
    // copy of o's fields (op::copy_from): from now on nothing refers to o, nor owes it a
    // completion. Whatever o was still owed is heir's (its pending says how much), or is
    // dropped, a filled buffer going back to the pool. A deadline is not carried over. On
    // io_uring an op in the kernel is cancelled and its last CQEs are waited for here: so a
    // multishot receive can live inside the socket that owns it (feed.hpp).
    void withdraw(op& o, op* heir) noexcept;
    // Sets (or, with 0, clears) the deadline of an op that may already be in flight.
    void set_deadline(op& o, std::int64_t deadline_ns) noexcept;
    // with_timeout's deadline (an op of kind `deadline`) for the current task: when it passes,
    // the op the task waits on is cancelled and its further ops fail, until disarm_deadline.
    void arm_deadline(op& o) noexcept;
    void disarm_deadline(op& o) noexcept;  // task_group: the last child ended
    detail::task_context* current_task() const noexcept { return current_; }

    static std::int64_t now_ns() noexcept;
    // Aborts, naming `what` (submit_to, post_to), unless k is a core of this run.
    void require_core(unsigned k, const char* what) const noexcept;

private:
    friend void detail::end_root(detail::task_context&, std::exception_ptr) noexcept;
    friend class detail::armed_source;

    void complete(op& o) noexcept override;
    void finish(op& o) noexcept;  // complete, past the holds below
    void deliver(op& o, bool own) noexcept override;
    void settle(op& o) noexcept;  // an op's last completion: off the timer heap, its slot and its task
    // Completions not delivered yet: an EINTR to start again, and with faults on, completions
    // held for a few turns. hold() decides; release_held() lets due ones go (in random order
    // with faults on), in turn() after the backend's poll.
    bool hold(op& o) noexcept;
    void release_held() noexcept;
    void submit(op& o) noexcept;  // to the backend, through the fault injector when there is one
    void wake_failed(int ring_fd) noexcept override;
    // listed: on the core's live list (a group's child goes on its group's list instead).
    detail::task_context& spawn_root(task<> t, bool system, bool listed = true);
    friend class coring::task_group;
    void link_live(detail::task_context& ctx) noexcept;
    void unlink_live(detail::task_context& ctx) noexcept;
    // Every live task, a group's children included (not the groups' anchors).
    template <class Fn>
    void for_each_live(Fn fn) noexcept;
    struct watchdog_state {
        bool fired = false;  // the deadline passed and everything was cancelled
        bool alive = true;   // the watchdog task has not ended yet (however it ends)
    };
    // Shares its state with block_on: the watchdog may end after block_on has returned.
    task<> watchdog(std::chrono::nanoseconds limit, std::shared_ptr<watchdog_state> state);
    void on_root_exit(detail::task_context& ctx) noexcept;
    void run_until(const bool& done);
    void turn();
    void run_ready() noexcept;
    void fire_timers() noexcept;
    void send_mail() noexcept;     // outboxes into inboxes, then the wakes this turn owes
    void receive_mail() noexcept;  // everything in the inbox, delivered here
    void ring_doorbell() noexcept;  // eventfd write: reaches this core from any thread
    void begin_stop() noexcept;
    void drain_everything() noexcept;
    void trim_when_due() noexcept;  // idle pool buffers and empty frame slabs, about once a second
    task<> watch_wakeups();
    task<> cancel_after_drain();

    unsigned id_;
    std::chrono::milliseconds drain_timeout_;
    std::string fallback_reason_;
    std::unique_ptr<backend> backend_;
    detail::ready_queue ready_;
    detail::timer_heap timers_;
    detail::task_context* current_ = nullptr;
    detail::task_context* live_ = nullptr;  // intrusive list of every root task
    detail::armed_link armed_{&armed_, &armed_};  // head of the circular list of every feed (armed_source)
    template <class Fn>
    void for_each_armed(Fn fn) noexcept;  // fn may free the source it is given
    std::int64_t next_trim_ns_ = 0;           // when idle pool buffers and frame slabs are next given back
    bool trim_round_ = false;                 // a pool trim round goes on over the next turns
    std::size_t live_user_tasks_ = 0;
    bool stopping_ = false;
    core_stats stats_;
    std::unique_ptr<detail::fault_injector> faults_;  // faults on purpose (faults.hpp); null: off
    struct held {
        op* o;
        std::uint64_t due;  // the loop turn that lets it go
    };
    std::vector<held> held_;  // few: each is an op in flight
    int wake_fd_ = -1;                        // eventfd: other threads' doorbell
    detail::mailbox inbox_{4096};
    std::vector<core*> peers_;                // every core of the run, by id
    detail::run_group* group_ = nullptr;
    bool left_group_ = false;
    struct outbox {
        detail::mail* head = nullptr;         // mail that found the destination's inbox full
        detail::mail* tail = nullptr;
        bool wake = false;                    // mail was sent there this turn
    };
    std::vector<outbox> outboxes_;            // by destination id
    std::vector<unsigned> sent_to_;           // destinations with wake set, this turn
    std::size_t outbox_pending_ = 0;
    std::atomic<bool> sleeping_{false};       // set (seq_cst) just before a blocking wait
    std::uint64_t wake_buf_ = 0;
    std::atomic<unsigned> stop_requests_{0};  // counted: a second request must not merge into the first
};

namespace detail {
template <class T>
task<> capture(task<T> t, std::optional<T>* out, std::exception_ptr* error, bool* done) {
    try {
        out->emplace(co_await std::move(t));
    } catch (...) {
        *error = std::current_exception();
    }
    *done = true;
}
inline task<> capture(task<> t, std::optional<bool>* out, std::exception_ptr* error, bool* done) {
    try {
        co_await std::move(t);
        out->emplace(true);
    } catch (...) {
        *error = std::current_exception();
    }
    *done = true;
}
}  // namespace detail

template <class T>
T core::block_on(task<T> t) {
    using slot_type = std::conditional_t<std::is_void_v<T>, bool, T>;
    std::optional<slot_type> value;
    std::exception_ptr error;
    bool done = false;
    spawn_root(detail::capture(std::move(t), &value, &error, &done), false);
    run_until(done);
    if (error) std::rethrow_exception(error);
    if constexpr (!std::is_void_v<T>) return std::move(*value);
}

template <class T>
T core::block_on(task<T> t, std::chrono::nanoseconds limit) {
    auto state = std::make_shared<watchdog_state>();
    struct stop_watchdog {  // on every way out, exceptions included
        core& self;
        detail::task_context& dog;
        std::shared_ptr<watchdog_state> state;
        ~stop_watchdog() {
            if (state->alive) self.cancel_task(dog);  // still sleeping: its frame and context exist
        }
    } guard{*this, spawn_root(watchdog(limit, state), true), state};
    auto check = [&] {
        if (state->fired) throw std::runtime_error("block_on: the deadline passed; every task was cancelled");
    };
    if constexpr (std::is_void_v<T>) {
        block_on(std::move(t));
        check();
    } else {
        T value = block_on(std::move(t));
        check();
        return value;
    }
}

// co_await yield(): lets every other ready task run once (through the backend, so I/O
// completions that are due are reaped too).
class [[nodiscard]] yield_awaiter {
public:
    yield_awaiter() noexcept : op_{op_kind::nop, -1} {}
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) noexcept {
        op_.waiter = h;
        core::current().start(op_);
    }
    void await_resume() const noexcept {}

private:
    op op_;
};
[[nodiscard]] inline yield_awaiter yield() noexcept { return {}; }

}  // namespace coring

#include <coring/remote_call.hpp>  // submit_to's awaitable, which needs core complete
