// The life of an op on its core: started (refused at once for a cancelled task), handed to the
// backend or kept by the core (timers, joins, waits), cancelled, completed, held back for a few
// turns (an EINTR to start again, or on purpose with faults on), delivered to its waiter or its
// feed, and withdrawn when its memory moves or goes. core.cpp has the rest of the core: its
// tasks, its loop and how it stops.
#include <coring/core.hpp>
#include <coring/faults.hpp>
#include <coring/feed.hpp>
#include <coring/task_group.hpp>

#include <cerrno>

namespace coring {

namespace {
// Whether start() fails an op of kind k for task ctx at once (ECANCELED): a cancelled task (or
// one past a with_timeout deadline) may still close fds and wait for its children, and a
// stopping core accepts nothing more.
bool refuses(const detail::task_context* ctx, op_kind k, bool stopping) noexcept {
    const bool task_over = ctx && ctx->refuses_ops() && k != op_kind::close && k != op_kind::join;
    return task_over || (stopping && k == op_kind::accept);
}
}  // namespace

void core::start(op& o) noexcept {
    o.ctx = current_;
    if (current_) current_->waiting_on = &o;
    if (refuses(current_, o.kind, stopping_)) {
        o.res = -ECANCELED;  // completes through the ready queue like any other op
        ++o.pending;
        return complete(o);
    }
    if (o.kind == op_kind::timer) {
        ++o.pending;
        return timers_.push(o);
    }
    if (o.deadline_ns != 0) timers_.push(o);  // an I/O op with a deadline: cancelled when it passes
    if (o.kind == op_kind::join) {  // task_group::join_awaiter registered itself already
        ++o.pending;
        // A task already cancelled (or past its deadline) still waits for its children, but
        // cancels them first, as a cancel that came during the wait would have.
        if (current_ && current_->refuses_ops()) static_cast<task_group*>(o.buf)->cancel();
        return;
    }
    if (o.kind == op_kind::buffer_wait) {
        ++o.pending;
        return backend_->wait_for_buffer(o);
    }
    if (o.kind == op_kind::wait) {
        ++o.pending;
        return static_cast<wait_list*>(o.buf)->park(o);
    }
    submit(o);
}

void core::submit(op& o) noexcept {
    if (faults_) [[unlikely]] {
        if (const int err = faults_->before_start(o, backend_->buffer_size())) {
            ++o.pending;  // answered as if the kernel had, in a later turn (never inline)
            o.res = err;
            held_.push_back({&o, stats_.loop_turns + 1});
            return;
        }
    }
    backend_->start(o);
}

void core::cancel(op& o) noexcept {
    if (o.kind == op_kind::join) {
        // Cancelling a task that waits for its children cancels the children; the join itself
        // still completes only when the last one has ended.
        return static_cast<task_group*>(o.buf)->cancel();
    }
    if (o.kind == op_kind::timer || o.kind == op_kind::buffer_wait || o.kind == op_kind::wait) {
        if (o.pending == 0) return;  // already fired
        if (o.kind == op_kind::timer) timers_.erase(o);
        else if (o.kind == op_kind::wait) static_cast<wait_list*>(o.buf)->unlink(o);
        else backend_->stop_waiting_for_buffer(o);
        o.res = -ECANCELED;
        return complete(o);
    }
    for (held& h : held_) {
        if (h.o != &o) continue;
        // The kernel is done with it: the result stands, unless it was an EINTR waiting to
        // start again, which now ends cancelled instead.
        if (o.res == -EINTR) o.res = -ECANCELED;
        return;
    }
    backend_->cancel(o);
}

namespace {
// Ops a signal may interrupt (EINTR) that mean the same when started again.
bool restartable(op_kind k) noexcept {
    return k == op_kind::recv || k == op_kind::send || k == op_kind::send_msg || k == op_kind::accept ||
           k == op_kind::read || k == op_kind::poll;
}
bool from_backend(op_kind k) noexcept {
    return k != op_kind::timer && k != op_kind::deadline && k != op_kind::join && k != op_kind::buffer_wait &&
           k != op_kind::wait;
}
}  // namespace

void core::complete(op& o) noexcept {
    if (faults_ || o.res == -EINTR) [[unlikely]] {
        if (hold(o)) return;
    }
    finish(o);
}

bool core::hold(op& o) noexcept {
    if (!from_backend(o.kind)) return false;
    if (faults_) faults_->after_completion(o);  // its length back as its owner set it
    // An io-wq worker's op that we cancelled ends with EINTR (the kernel signals the worker):
    // that is the cancel's answer, not a signal to restart through; started again, it would
    // outlive its deadline, or name an fd number that close() has freed since.
    if (o.res == -EINTR && (o.cancel_sent || o.timed_out)) o.res = -ECANCELED;
    const bool again = o.res == -EINTR && restartable(o.kind);
    if (!again && !(faults_ && faults_->hit(fault::delay))) return false;
    held_.push_back({&o, stats_.loop_turns + 1 + (again ? 0 : faults_->below(3))});
    return true;
}

void core::release_held() noexcept {
    const std::uint64_t now = stats_.loop_turns;
    for (;;) {
        std::size_t due = 0;
        for (const held& h : held_) due += h.due <= now;
        if (due == 0) return;
        // With faults on, those due together go in random order: completions of different ops
        // may come in any order from the kernel too.
        std::size_t pick = faults_ ? faults_->below(static_cast<std::uint32_t>(due)) : 0;
        std::size_t i = 0;
        while (held_[i].due > now || pick-- > 0) ++i;
        op& o = *held_[i].o;
        held_[i] = held_.back();
        held_.pop_back();
        if (o.res != -EINTR || !restartable(o.kind)) {
            finish(o);
            continue;
        }
        // EINTR: started again, unless start() would refuse it now (its task was cancelled, or
        // the core stops accepting, meanwhile).
        if (refuses(o.ctx, o.kind, stopping_)) {
            o.res = -ECANCELED;
            finish(o);
            continue;
        }
        --o.pending;  // the backend counts it again
        submit(o);
    }
}

void core::finish(op& o) noexcept {
    --o.pending;
    if (o.sourced) return deliver(o, true);
    settle(o);
    ready_.push({o.waiter, o.ctx});
}

void core::deliver(op& o, bool own) noexcept {
    if (o.pending == 0) settle(o);
    detail::deliver_to_feed(o, own);
}

void core::settle(op& o) noexcept {
    if (o.armed) timers_.erase(o);  // an I/O op that finished before its deadline
    if (o.ctx && o.ctx->waiting_on == &o) o.ctx->waiting_on = nullptr;
}

void core::start_for(op& o, detail::task_context* ctx) noexcept {
    detail::task_context* const saved = std::exchange(current_, ctx);
    start(o);
    current_ = saved;
}

void core::withdraw(op& o, op* heir) noexcept {
    if (o.armed) timers_.erase(o);
    if (heir) heir->armed = false;
    if (o.ctx && o.ctx->waiting_on == &o) o.ctx->waiting_on = heir;
    std::uint16_t held_here = 0;  // completions held in this core (faults, EINTR): heir's, or dropped
    for (std::size_t i = 0; i < held_.size();) {
        if (held_[i].o != &o) {
            ++i;
        } else if (heir) {
            held_[i++].o = heir;
            ++held_here;
        } else {
            // (a pool buffer only: a receive into a spare is its owner's to give back)
            if (o.select_buffer && o.has_buffer()) backend_->give_back_received(o.buffer_id(), o.buffers);
            held_[i] = held_.back();
            held_.pop_back();
            --o.pending;
        }
    }
    if (faults_) faults_->moved(o, heir);
    o.pending = static_cast<std::uint16_t>(o.pending - held_here);
    backend_->withdraw(o, heir);  // what the backend and the kernel still owe o
    if (heir) heir->pending = static_cast<std::uint16_t>(o.pending + held_here);
    o.pending = 0;
}

void core::set_deadline(op& o, std::int64_t deadline_ns) noexcept {
    if (o.armed) timers_.erase(o);
    o.deadline_ns = deadline_ns;
    o.timed_out = false;
    if (deadline_ns != 0 && o.pending != 0) timers_.push(o);
}

}  // namespace coring
