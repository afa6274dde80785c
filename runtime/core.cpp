#include <coring/core.hpp>
#include <coring/log.hpp>
#include <coring/task_group.hpp>
#include <coring/timer.hpp>

#include <cassert>
#include <cerrno>
#include <ctime>
#include <sys/eventfd.h>
#include <system_error>
#include <unistd.h>

namespace coring {

namespace {
thread_local core* this_thread_core = nullptr;
}

namespace detail {

void end_root(task_context& ctx, std::exception_ptr error) noexcept {
    core& c = core::current();
    if (error) {
        try {
            std::rethrow_exception(error);
        } catch (const std::exception& e) {
            log("core {}: task ended with an exception: {}", c.id(), e.what());
        } catch (...) {
            log("core {}: task ended with an unknown exception", c.id());
        }
    }
    c.on_root_exit(ctx);
}

armed_source::armed_source() noexcept {
    armed_link& head = core::current().armed_;
    prev = &head;
    next = head.next;
    head.next->prev = this;
    head.next = this;
}

armed_source::~armed_source() {
    if (!listed()) return;  // its core went first, and took it off its list then
    prev->next = next;
    next->prev = prev;
}

}  // namespace detail

template <class Fn>
void core::for_each_armed(Fn fn) noexcept {
    // fn may free its source, and through a nested reap (SQ full) any other one: a cursor
    // node after the current source keeps the walk's place, as a freed source unlinks itself.
    detail::armed_link cursor;
    for (detail::armed_link* l = armed_.next; l != &armed_;) {
        cursor.prev = l;
        cursor.next = l->next;
        l->next->prev = &cursor;
        l->next = &cursor;
        fn(static_cast<detail::armed_source&>(*l));
        l = cursor.next;
        cursor.prev->next = cursor.next;
        cursor.next->prev = cursor.prev;
    }
}

// ---- construction and teardown ---------------------------------------------------------------

core::core(const core_config& cfg) : id_{cfg.id}, drain_timeout_{cfg.drain_timeout} {
    if (this_thread_core) throw std::logic_error("coring: a thread can run only one core");
    backend_ = make_backend(cfg.backend, *this, &fallback_reason_);
    if (cfg.backend.faults.on) {
        faults_ = std::make_unique<detail::fault_injector>(cfg.backend.faults, id_);
        backend_->inject(faults_.get());
    }
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC);
    if (wake_fd_ < 0) throw std::system_error(errno, std::system_category(), "eventfd");
    backend_->adopt(wake_fd_);
    this_thread_core = this;
    peers_ = {this};
    outboxes_.resize(1);
    spawn_root(watch_wakeups(), true);
}

core::~core() {
    drain_everything();
    // What outlives its core (a socket destroyed later) finds itself off the list, nothing to undo.
    for (detail::armed_link* l = armed_.next; l != &armed_;) *std::exchange(l, l->next) = {};
    ::close(wake_fd_);
    this_thread_core = nullptr;
}

core& core::current() noexcept {
    if (!this_thread_core) {
        std::fputs("coring: no core on this thread (I/O must run inside coring::run or a core)\n",
                   stderr);
        std::abort();
    }
    return *this_thread_core;
}

core* core::current_or_null() noexcept { return this_thread_core; }

std::int64_t core::now_ns() noexcept {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// ---- tasks -------------------------------------------------------------------------------------

void core::spawn(task<> t) { spawn_root(std::move(t), false); }

void core::spawn(task<> t, task_group& group, bool inherit_cancel) {
    detail::task_context& ctx = spawn_root(std::move(t), false, false);
    group.child_started(ctx);
    // A cancelled parent, or one past a with_timeout deadline, has no new children: they fail
    // at once like the parent's own ops (the deadline's verdict turns that into ETIMEDOUT).
    if (inherit_cancel && current_ && current_->refuses_ops()) cancel_task(ctx);
}

detail::task_context& core::spawn_root(task<> t, bool system, bool listed) {
    assert(t.valid() && "spawning an empty task");
    auto root = t.release();
    detail::task_context& ctx = root.promise().ctx();
    ctx.root = true;
    ctx.system = system;
    if (listed) link_live(ctx);
    if (!system) ++live_user_tasks_;
    ++stats_.tasks_spawned;
    ready_.push({root, &ctx});
    return ctx;
}

task<> core::watchdog(std::chrono::nanoseconds limit, std::shared_ptr<watchdog_state> state) {
    struct on_exit {
        watchdog_state& state;
        ~on_exit() { state.alive = false; }
    } mark{*state};
    // g++ 12 mis-compiles a co_await inside an if condition: await into a variable first.
    const auto slept = co_await sleep_for(limit);
    if (slept) {
        state->fired = true;
        log("core {}: deadline of {} ms passed: cancelling every task", id_, limit.count() / 1'000'000);
        cancel_user_tasks();
    }
}

void core::link_live(detail::task_context& ctx) noexcept { detail::push_front(live_, ctx); }

void core::unlink_live(detail::task_context& ctx) noexcept { detail::unlink(live_, ctx); }

template <class Fn>
void core::for_each_live(Fn fn) noexcept {
    for (auto* ctx = live_; ctx; ctx = ctx->next) {
        if (!ctx->anchor) {
            fn(*ctx);
            continue;
        }
        for (auto* child = ctx->group->children_; child; child = child->next) fn(*child);
    }
}

void core::on_root_exit(detail::task_context& ctx) noexcept {
    if (!ctx.system) --live_user_tasks_;
    if (ctx.group) ctx.group->child_ended(ctx);
    else unlink_live(ctx);
}

void core::cancel_task(detail::task_context& ctx) noexcept {
    if (ctx.cancelled) return;  // its later ops were refused at start, so nothing is left to do
    ctx.cancelled = true;
    if (ctx.waiting_on) cancel(*ctx.waiting_on);
}

void core::cancel_all() noexcept {
    for_each_live([this](detail::task_context& ctx) { cancel_task(ctx); });
}

// ---- the loop ----------------------------------------------------------------------------------

void core::run_until(const bool& done) {
    while (!done) turn();
}

void core::turn() {
    // Wait for I/O, then run what became ready: the caller checks its condition right after
    // the tasks ran, never after a blocking wait that nothing would end.
    ++stats_.loop_turns;
    send_mail();
    std::int64_t timeout = -1;
    if (!ready_.empty() || !held_.empty()) {
        timeout = 0;  // never block while work is waiting
    } else if (!timers_.empty()) {
        timeout = std::max<std::int64_t>(0, timers_.top().deadline_ns - now_ns());
    }
    if (outbox_pending_ > 0 && (timeout < 0 || timeout > 1'000'000))
        timeout = 1'000'000;  // a full inbox elsewhere: retry within 1 ms (a wait, not a spin)
    if (timeout != 0 && (backend_->buffers_to_trim() || detail::frames_to_trim())) {  // a wait must end in time to trim (within 2 s)
        const std::int64_t until_trim = std::max<std::int64_t>(0, next_trim_ns_ - now_ns());
        if (timeout < 0 || timeout > until_trim) timeout = until_trim;
    }
    if (timeout != 0) {
        // Say we are about to sleep, then look at the inbox once more: a sender either sees the
        // flag (and wakes us) or its mail is already visible here (seq_cst on both sides).
        sleeping_.store(true);
        if (!inbox_.empty()) timeout = 0;
    }
    backend_->poll(timeout);  // other threads reach us through wake_fd_ or MSG_RING
    sleeping_.store(false, std::memory_order_relaxed);
    if (!held_.empty()) release_held();
    receive_mail();
    fire_timers();
    trim_when_due();
    run_ready();
}

void core::trim_when_due() noexcept {
    const bool buffers = backend_->buffers_to_trim();
    if (!buffers && !detail::frames_to_trim()) return;
    const std::int64_t now = now_ns();
    if (now < next_trim_ns_) return;
    // The first call only starts the clock; a round with more buffers to trim goes on next turn.
    if (next_trim_ns_ != 0) {
        if (!trim_round_) detail::trim_frames();  // the empty frame slabs no burst needed since the last round
        trim_round_ = buffers && backend_->trim_buffers();
        if (trim_round_) return;
    }
    next_trim_ns_ = now + 1'000'000'000;
}

void core::run_ready() noexcept {
    // Only what was queued before this turn: tasks that keep re-queueing cannot starve I/O.
    for (std::size_t n = ready_.size(); n > 0; --n) {
        const detail::ready_item item = ready_.pop();
        current_ = item.ctx;
        ++stats_.resumes;
        item.handle.resume();
    }
    current_ = nullptr;
}

void core::fire_timers() noexcept {
    if (timers_.empty()) return;
    const std::int64_t now = now_ns();
    while (!timers_.empty() && timers_.top().deadline_ns <= now) {
        op& o = timers_.top();
        timers_.erase(o);
        ++stats_.timers_fired;
        if (o.kind == op_kind::timer) {  // a sleep: wake its task
            o.res = 0;
            complete(o);
        } else if (o.kind == op_kind::deadline) {  // with_timeout: the task's ops fail from now on
            o.timed_out = true;
            --o.pending;
            ++o.ctx->expired;
            if (o.ctx->waiting_on) cancel(*o.ctx->waiting_on);
        } else {  // an I/O op past its own deadline: it ends as soon as the kernel lets go
            o.timed_out = true;
            cancel(o);
        }
    }
}

void core::arm_deadline(op& o) noexcept {
    if (!current_) {
        log("with_timeout outside a task: nothing to time out");
        std::abort();
    }
    o.ctx = current_;
    ++o.pending;
    timers_.push(o);
}

void core::disarm_deadline(op& o) noexcept {
    if (o.timed_out) {
        --o.ctx->expired;  // this scope is over: the task's ops run again
    } else {
        timers_.erase(o);
        --o.pending;
    }
}

void core::run() {
    while (live_user_tasks_ > 0 || outbox_pending_ > 0) turn();  // a server lives until stopped
    if (group_) {
        // Done here, but a peer may still send work: serve mail until every core is done.
        leave_group();
        while (group_->finished.load() < group_->size || live_user_tasks_ > 0 || outbox_pending_ > 0) turn();
    }
    drain_everything();
}

void core::drain_everything() noexcept {
    // Cancel until nothing is alive and the kernel owes nothing: only then may frames and
    // buffers go. Cancelled tasks fail every later op at once, so this terminates unless a
    // task ignores ECANCELED and loops forever.
    bool swept = false;
    while (live_ || backend_->in_flight() > 0 || !ready_.empty() || !held_.empty()) {
        cancel_all();
        for_each_armed([](detail::armed_source& a) { a.on_drain(); });
        if (!live_ && !swept) {  // what is left belongs to no task (a stream kept by a service)
            backend_->cancel_everything();
            swept = true;
        }
        turn();
    }
}

// ---- stopping ----------------------------------------------------------------------------------

void core::request_stop() noexcept {
    if (stopping_) return cancel_user_tasks();  // the second request: at once
    begin_stop();
}

void core::cancel_user_tasks() noexcept {
    // Not the core's own tasks: the doorbell reader must keep listening until the very end, or
    // a peer's "all cores are done" ring would go unheard.
    for_each_live([this](detail::task_context& ctx) {
        if (!ctx.system) cancel_task(ctx);
    });
}

void core::begin_stop() noexcept {
    stopping_ = true;
    // Listeners first: accepts end now, whether a task waits in one at this instant or not
    // (a multishot accept stays armed between accepts). New accepts are refused in start().
    for_each_armed([](detail::armed_source& a) { a.on_stop(); });
    spawn_root(cancel_after_drain(), true);
}

task<> core::cancel_after_drain() {
    const auto slept = co_await sleep_for(drain_timeout_);  // ECANCELED: the core is going down
    if (slept) {
        if (live_user_tasks_ > 0)
            log("core {}: drain timeout: cancelling {} task(s)", id_, live_user_tasks_);
        cancel_user_tasks();
    }
}

void core::leave_group() noexcept {
    if (!group_ || left_group_) return;
    left_group_ = true;
    group_->finished.fetch_add(1);
    for (core* p : peers_)
        if (p != this) p->ring_doorbell();  // so sleeping peers look at the count
}

void core::request_stop_from_any_thread() noexcept {
    stop_requests_.fetch_add(1);
    ring_doorbell();
}

void core::ring_doorbell() noexcept {
    const std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

task<> core::watch_wakeups() {
    for (;;) {
        op o{op_kind::read, wake_fd_};
        o.buf = &wake_buf_;
        o.len = sizeof wake_buf_;
        struct awaiter {
            op& o;
            bool await_ready() const noexcept { return false; }
            void await_suspend(std::coroutine_handle<> h) noexcept {
                o.waiter = h;
                core::current().start(o);
            }
            int await_resume() const noexcept { return o.res; }
        };
        const int read = co_await awaiter{o};  // awaited first: g++ 12 and co_await in a condition
        if (read < 0) co_return;  // cancelled: the core is shutting down
        // One read takes the whole doorbell counter, so two quick rings may arrive as one read,
        // or a request may be seen a read early: the request count says how many there were.
        for (unsigned n = stop_requests_.exchange(0); n > 0; --n) request_stop();
    }
}

core_stats core::stats() const noexcept {
    core_stats s = stats_;
    backend_->refresh_stats();
    s.backend = backend_->stats();
    if (faults_) s.faults = faults_->counts();
    return s;
}

}  // namespace coring
