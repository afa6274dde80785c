#pragma once
// Waiting between tasks: event, semaphore, mutex (per core) and barrier (across cores).
//
// The per-core ones are plain data touched by one core's tasks only: no atomics, no locks.
// A wait is an op of kind `wait` that lives in its awaiter (so in the suspended frame) and is
// linked into the primitive's FIFO while parked. So every wait follows the op contract
// (docs/ARCHITECTURE.md, "Timeouts and cancellation"):
// - a waiter resumes through the ready queue, never inside the call that lets it go;
// - cancelling its task (core::cancel_task, task_group::cancel, shutdown) unlinks it and it
//   resumes with ECANCELED; inside with_timeout, a passed deadline makes that ETIMEDOUT; the
//   primitive is left as if the wait had never started;
// - a wait that was granted before the cancel arrived keeps what it was granted (a permit, the
//   lock, a value): a result that was reached stays a result;
// - in a task that is already cancelled (or past a with_timeout deadline) a wait fails at once
//   with ECANCELED, even when it could complete, like any op. try_* calls are not waits.
// A primitive must outlive its waiters: destroying one while a task waits in it aborts (and so
// does destroying a waiting frame: its op still counts a pending completion).
//
// Each wait is its own wait_list (the op's `buf` names its node, not the primitive), so a
// cancel unlinks it in O(1); the primitive's wait_queue only keeps the FIFO order.
#include <coring/core.hpp>
#include <coring/mailbox.hpp>
#include <coring/op.hpp>
#include <coring/result.hpp>

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>

namespace coring {

namespace detail {

class wait_queue;

// True in a task whose ops are refused (cancelled, or past a with_timeout deadline): its waits
// must go to core::start, which fails them, rather than complete on a fast path.
inline bool refuses_waits() noexcept {
    const task_context* t = core::current().current_task();
    return t && t->refuses_ops();
}

// One wait, inside its awaiter. core::start parks its op here (park: linked into the queue);
// core::cancel takes it out (unlink) and completes it with ECANCELED; the primitive lets it go
// with wait_queue::grant_front. Awaiters derive from it and add what the wait carries.
class wait_node : public wait_list {
public:
    wait_node(const wait_node&) = delete;
    wait_node& operator=(const wait_node&) = delete;

protected:
    explicit wait_node(wait_queue& q) noexcept : queue_{&q} { op_.buf = static_cast<wait_list*>(this); }
    ~wait_node() = default;

    // await_suspend: parks the task (or, in a refused task, fails the op through the ready queue).
    void suspend(std::coroutine_handle<> h) noexcept {
        op_.waiter = h;
        core::current().start(op_);
    }
    // await_ready's way to finish without waiting: res is 0 or -errno.
    bool finish_now(int res) noexcept {
        op_.res = res;
        return true;
    }
    int res() const noexcept { return op_.res; }
    result<void> status() const noexcept {
        if (op_.res < 0) return to_error(op_.res);
        return {};
    }

private:
    friend class wait_queue;
    void park(op& o) noexcept final;
    void unlink(op& o) noexcept final;

    op op_{op_kind::wait, -1};
    wait_queue* queue_;
    wait_node* prev_ = nullptr;
    wait_node* next_ = nullptr;
};

// A FIFO of parked waits (intrusive, doubly linked: a cancel unlinks in O(1)). Its owner
// decides who goes; the queue only keeps the order.
class wait_queue {
public:
    wait_queue() noexcept = default;
    wait_queue(const wait_queue&) = delete;
    wait_queue& operator=(const wait_queue&) = delete;
    ~wait_queue();  // aborts if a task still waits here: its op would point at freed memory

    bool empty() const noexcept { return !head_; }
    std::size_t size() const noexcept { return size_; }
    wait_node& front() const noexcept { return *head_; }
    // The first wait leaves the queue with res (0, or -errno) and resumes through the ready queue.
    void grant_front(int res) noexcept;
    void grant_all(int res) noexcept {
        while (head_) grant_front(res);
    }

private:
    friend class wait_node;
    void push_back(wait_node& n) noexcept;
    void erase(wait_node& n) noexcept;

    wait_node* head_ = nullptr;
    wait_node* tail_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace detail

// event: set() lets every waiter go, and later waits pass until reset().
class event {
public:
    explicit event(bool set = false) noexcept : set_{set} {}
    event(const event&) = delete;
    event& operator=(const event&) = delete;

    void set() noexcept {
        set_ = true;
        waiters_.grant_all(0);
    }
    void reset() noexcept { set_ = false; }
    bool is_set() const noexcept { return set_; }
    std::size_t waiting() const noexcept { return waiters_.size(); }

    class [[nodiscard]] wait_awaiter final : public detail::wait_node {
    public:
        explicit wait_awaiter(event& e) noexcept : wait_node{e.waiters_}, event_{e} {}
        bool await_ready() const noexcept { return !detail::refuses_waits() && event_.set_; }
        void await_suspend(std::coroutine_handle<> h) noexcept { suspend(h); }
        result<void> await_resume() const noexcept { return status(); }

    private:
        event& event_;
    };
    // Success once the event is set; ECANCELED / ETIMEDOUT as above.
    wait_awaiter wait() noexcept { return wait_awaiter{*this}; }

private:
    bool set_;
    detail::wait_queue waiters_;
};

// semaphore: counted permits, handed out first come first served. A waiter keeps its place:
// while anyone waits, try_acquire fails and a release goes to the first waiter.
class semaphore {
public:
    explicit semaphore(std::size_t permits) noexcept : count_{permits} {}
    semaphore(const semaphore&) = delete;
    semaphore& operator=(const semaphore&) = delete;

    // Takes a permit without waiting, if one is free (then nobody waits: they would have it).
    bool try_acquire() noexcept {
        if (count_ == 0) return false;
        --count_;
        return true;
    }
    // Gives k permits back: to the waiters first, in the order they came.
    void release(std::size_t k = 1) noexcept {
        for (; k > 0 && !waiters_.empty(); --k) waiters_.grant_front(0);
        count_ += k;
    }
    std::size_t available() const noexcept { return count_; }
    std::size_t waiting() const noexcept { return waiters_.size(); }

    class [[nodiscard]] acquire_awaiter final : public detail::wait_node {
    public:
        explicit acquire_awaiter(semaphore& s) noexcept : wait_node{s.waiters_}, sem_{s} {}
        bool await_ready() noexcept { return !detail::refuses_waits() && sem_.try_acquire(); }
        void await_suspend(std::coroutine_handle<> h) noexcept { suspend(h); }
        // Success: the caller holds a permit and must release() it.
        result<void> await_resume() const noexcept { return status(); }

    private:
        semaphore& sem_;
    };
    acquire_awaiter acquire() noexcept { return acquire_awaiter{*this}; }

private:
    std::size_t count_;  // free permits; 0 whenever someone waits
    detail::wait_queue waiters_;
};

// mutex: lock() gives a guard that unlocks when dropped. Unlocking hands the lock straight to
// the first waiter (FIFO), so a task that keeps relocking cannot overtake one that waits.
class mutex {
public:
    mutex() noexcept = default;
    mutex(const mutex&) = delete;
    mutex& operator=(const mutex&) = delete;

    // Owns the lock while it holds a mutex; unlocks when destroyed or on unlock().
    class guard {
    public:
        guard() noexcept = default;
        guard(guard&& other) noexcept : mutex_{std::exchange(other.mutex_, nullptr)} {}
        guard& operator=(guard&& other) noexcept {
            if (this != &other) {
                unlock();
                mutex_ = std::exchange(other.mutex_, nullptr);
            }
            return *this;
        }
        guard(const guard&) = delete;
        guard& operator=(const guard&) = delete;
        ~guard() { unlock(); }

        void unlock() noexcept {
            if (mutex_) std::exchange(mutex_, nullptr)->unlock();
        }
        bool owns_lock() const noexcept { return mutex_ != nullptr; }

    private:
        friend class mutex;
        explicit guard(mutex& m) noexcept : mutex_{&m} {}
        mutex* mutex_ = nullptr;
    };

    // The lock at once if it is free (then nobody waits), else nothing.
    std::optional<guard> try_lock() noexcept {
        if (locked_) return std::nullopt;
        locked_ = true;
        return guard{*this};
    }
    bool is_locked() const noexcept { return locked_; }
    std::size_t waiting() const noexcept { return waiters_.size(); }

    class [[nodiscard]] lock_awaiter final : public detail::wait_node {
    public:
        explicit lock_awaiter(mutex& m) noexcept : wait_node{m.waiters_}, mutex_{m} {}
        bool await_ready() noexcept {
            if (detail::refuses_waits() || mutex_.locked_) return false;
            mutex_.locked_ = true;
            return true;
        }
        void await_suspend(std::coroutine_handle<> h) noexcept { suspend(h); }
        result<guard> await_resume() const noexcept {
            if (res() < 0) return to_error(res());
            return guard{mutex_};  // taken in await_ready, or handed over by unlock()
        }

    private:
        mutex& mutex_;
    };
    lock_awaiter lock() noexcept { return lock_awaiter{*this}; }

private:
    void unlock() noexcept {
        if (waiters_.empty()) locked_ = false;
        else waiters_.grant_front(0);  // stays locked: the first waiter owns it now
    }

    bool locked_ = false;
    detail::wait_queue waiters_;
};

// barrier: n tasks, on any cores of one run, meet at arrive_and_wait(); the n-th arrival ends
// the phase and lets all of them go, and the barrier is ready for the next phase.
//
// Each core that waits gets a slot (made on first use, kept until the barrier dies) holding
// that core's waiters; only that core touches them. The phase's last arrival wakes its own
// core's waiters directly and every other slot's with one mail (core::post), so crossing cores
// costs one mail per core per phase, and nothing in a task's frame is ever seen by another core.
//
// Cancellation ends a task's wait, not its arrival: a cancelled waiter resumes with ECANCELED
// (ETIMEDOUT under with_timeout) and the phase still completes when the others arrive. A task
// that is already cancelled does not arrive at all.
//
// Lifetime: the barrier must outlive the run (or the cores) whose tasks use it, not just those
// tasks: the last arrival's wake-up mail may reach a core after the tasks waiting there ended.
// Build it before coring::run and destroy it after run returns; one barrier serves one run
// (or one lone core).
class barrier {
    struct core_slot;

public:
    explicit barrier(unsigned n);  // n >= 1 arrivals per phase (std::invalid_argument otherwise)
    barrier(const barrier&) = delete;
    barrier& operator=(const barrier&) = delete;
    ~barrier();

    class [[nodiscard]] arrive_awaiter final : public detail::wait_node {
    public:
        arrive_awaiter(barrier& b, core_slot& s) noexcept;
        bool await_ready() noexcept;
        void await_suspend(std::coroutine_handle<> h) noexcept { suspend(h); }
        result<void> await_resume() const noexcept { return status(); }

    private:
        friend class barrier;
        barrier& barrier_;
        core_slot& slot_;          // this core's waiters, where it parks
        std::uint32_t phase_ = 0;  // the phase this task arrived in
    };
    // Arrives, then waits until the phase's n-th arrival. On the core where it is awaited.
    arrive_awaiter arrive_and_wait();

    unsigned expected() const noexcept { return n_; }
    std::uint32_t phase() const noexcept;  // phases completed so far

private:
    core_slot& slot_here();
    bool arrive(std::uint32_t& phase) noexcept;  // true for the phase's last arrival
    void release(core_slot& here) noexcept;      // the last arrival: wake every core
    static void wake(core_slot& s) noexcept;     // on s's core: its waiters of completed phases
    static void on_mail(detail::mail& m) noexcept;

    const unsigned n_;
    std::atomic<std::uint64_t> state_{0};        // completed phases << 32 | arrivals this phase
    std::atomic<core_slot*> slots_{nullptr};     // push-only list, freed by ~barrier
};

}  // namespace coring
