#include <coring/feed.hpp>

#include <cerrno>

namespace coring::detail {

template <class Self>
bool feed<Self>::take(feed_reader& r) noexcept {
    if (self().pop(r.res, r.flags)) return true;
    if (end_ == 1) return false;
    r.res = end_;
    r.flags = 0;
    if (!end_sticky_) end_ = 1;  // said once
    return true;
}

template <class Self>
void feed<Self>::wait(feed_reader& r, std::coroutine_handle<> h, std::int64_t deadline_ns) noexcept {
    core& c = core::current();
    r.place = h.address();
    task_context* const ctx = c.current_task();
    if (ctx && ctx->refuses_ops()) {
        // A task that is cancelled or past a with_timeout deadline waits for nothing, as every
        // op it starts fails at once. A multishot op still armed would otherwise keep handing it
        // whatever arrives: a peer sending a byte now and then would never see the deadline.
        r.res = -ECANCELED;
        r.flags = 0;
        c.resume_later(h, ctx);
        return;
    }
    if (take(r)) {  // it came since await_ready (a reader's await_suspend may give a buffer back,
        c.resume_later(h, ctx);  // and so run completions): waiting now would miss it
        return;
    }
    reader_ = &r;
    if (!in_flight()) {
        shot_.deadline_ns = deadline_ns;
        shot_.timed_out = false;
        return arm(ctx);  // may complete at once (epoll, a refused op): offer() runs then
    }
    // Still armed (multishot), or its cancel is on the way: wait on it, so that cancelling this
    // task (or its with_timeout) cancels the op and ends the wait.
    shot_.ctx = ctx;
    if (ctx) ctx->waiting_on = &shot_;
    if (deadline_ns != 0) c.set_deadline(shot_, deadline_ns);
}

template <class Self>
void feed<Self>::arm(task_context* ctx) noexcept {
    self().prepare();
    core::current().start_for(shot_, ctx);
}

template <class Self>
void feed<Self>::end() noexcept {
    if (ended_) return;
    ended_ = true;
    end_ = -ECANCELED;
    end_sticky_ = true;
    self().drop_all();
    if (in_flight()) core::current().cancel(shot_);  // a reader waiting on it gets ECANCELED
}

template <class Self>
void feed<Self>::dismiss_reader() noexcept {
    // The op blocks no task from now on (a task may end before the op does).
    task_context* const ctx = std::exchange(shot_.ctx, nullptr);
    if (!reader_) return;
    feed_reader& r = *std::exchange(reader_, nullptr);
    r.res = -ECANCELED;
    if (ctx && ctx->waiting_on == &shot_) ctx->waiting_on = nullptr;
    core::current().resume_later(std::coroutine_handle<>::from_address(r.place), ctx);
}

template <class Self>
void feed<Self>::on_completion(op& o, bool own) noexcept {
    if (own && !self().keep(o)) {
        int res = o.outcome();
        // Not news for the reader: the pool ran dry (ENOBUFS), or a buffer came back to one that
        // waited for it. The reader, if it still waits, gets the op armed again below.
        if (res == -ENOBUFS && o.timed_out) res = -ETIMEDOUT;  // its deadline came first
        const bool again = res == -ENOBUFS || (o.kind == op_kind::buffer_wait && res >= 0);
        // A cancel (a with_timeout, a cancelled task) answers the reader that was waiting; one
        // that arrives after that reader got data would only mislead the next, and one of our
        // own (throttled) is nobody's business.
        const bool cancel = res == -ECANCELED || res == -ETIMEDOUT;
        if (!again && !ended_ && (!cancel || (reader_ && !throttled_))) {
            end_ = res;
            end_sticky_ = self().sticky(res);
        }
    }
    if (!in_flight()) throttled_ = false;
    if (released_) {  // nobody reads any more: free everything once the kernel lets go
        if (in_flight()) return;
        self().drop_all();
        self().dispose();
        return;
    }
    if (ended_ && !in_flight()) self().drop_all();  // results that came after the end
    offer();
    if (in_flight()) {
        // A multishot op keeps taking results (and, for receives, pool buffers) while the
        // reader is busy elsewhere: past the limit it is stopped, and armed again when the
        // reader comes back.
        if (shot_.multishot && !throttled_ && self().queued() >= self().queue_limit()) {
            throttled_ = true;
            core::current().cancel(shot_);
        }
    } else if (reader_) {
        arm(shot_.ctx);  // the op is over and nothing was there for the reader: go again (its task)
    }
}

template <class Self>
void feed<Self>::offer() noexcept {
    if (!reader_ || !take(*reader_)) return;
    feed_reader& r = *std::exchange(reader_, nullptr);
    core& c = core::current();
    // A multishot op stays armed; the task it blocked may end before it does.
    task_context* const ctx = std::exchange(shot_.ctx, nullptr);
    if (ctx && ctx->waiting_on == &shot_) ctx->waiting_on = nullptr;
    if (shot_.armed || shot_.deadline_ns != 0) c.set_deadline(shot_, 0);  // the wait is over
    c.resume_later(std::coroutine_handle<>::from_address(r.place), ctx);
}

// ---- accept ---------------------------------------------------------------------------------------

void accept_feed::release() noexcept {
    released_ = true;
    if (!listed()) {  // its core is gone, and drained this feed before it went
        delete this;
        return;
    }
    dismiss_reader();
    if (!in_flight()) {
        drop_all();
        delete this;
        return;
    }
    core::current().cancel(shot_);  // on_completion frees the feed at the op's last completion
}

bool accept_feed::keep(const op& o) noexcept {
    if (o.res < 0) return false;
    fds_.push_back(o.res);
    return true;
}

bool accept_feed::pop(int& res, std::uint32_t& flags) noexcept {
    if (fds_.empty()) return false;
    res = fds_.front();
    flags = 0;
    fds_.pop_front();
    return true;
}

std::size_t accept_feed::queue_limit() const noexcept { return core::current().io().direct_slots_low() ? 0 : 16; }

void accept_feed::drop_all() noexcept {
    backend& io = core::current().io();
    for (int fd : fds_) io.close_detached(fd);  // accepted, never handed out
    fds_.clear();
}

// ---- recv ------------------------------------------------------------------------------------------

namespace {
// Something knows o by its address: the kernel (completions owed), a backend's queue, the timer
// heap. Moving or freeing it then takes core::withdraw.
bool referred(const op& o) noexcept { return o.pending != 0 || o.parked != park_reason::none || o.armed; }
}  // namespace

void recv_feed::open(int fd, bool multishot) noexcept {
    shot_.fd = fd;
    shot_.multishot = multishot;
    may_multishot_ = multishot;
}

void recv_feed::close() noexcept {
    if (!is_open()) return;
    // No core: it went first, and its drain left nothing in flight; its pool went with it.
    if (core* c = core::current_or_null()) {
        if (referred(shot_)) c->withdraw(shot_, nullptr);
        dismiss_reader();
        drop_all();
        if (spare_ != no_spare) c->io().give_back(spare_);  // the kernel is done with it (withdraw)
    }
    reset();
}

void recv_feed::reset() noexcept {
    const recv_feed unused;
    shot_.copy_from(unused.shot_);
    shot_.set_source(static_cast<feed<recv_feed>*>(this));
    reader_ = nullptr;
    end_ = 1;
    end_sticky_ = ended_ = throttled_ = may_multishot_ = false;
    spare_ = no_spare;
    queued_ = 0;
}

void recv_feed::take_from(recv_feed& other) noexcept {
    if (!other.is_open()) return;
    // Everything, the op included, then whatever refers to other's op is told its new address.
    shot_.copy_from(other.shot_);
    shot_.set_source(static_cast<feed<recv_feed>*>(this));
    reader_ = std::exchange(other.reader_, nullptr);
    end_ = other.end_;
    end_sticky_ = other.end_sticky_;
    ended_ = other.ended_;
    throttled_ = other.throttled_;
    may_multishot_ = other.may_multishot_;
    spare_ = std::exchange(other.spare_, no_spare);
    queued_ = std::exchange(other.queued_, 0);
    head_ = other.head_;
    tail_ = other.tail_;
    op& was = other.shot_;
    if (referred(was)) {
        core& c = core::current();
        c.withdraw(was, &shot_);
        // On io_uring the op was cancelled to move it: that cancel is ours, not the reader's
        // news, and a reader still waiting gets the op armed again at its last completion.
        // Unless its deadline had passed already: then the reader is told ETIMEDOUT as before.
        shot_.cancel_sent = shot_.cancel_sent || was.cancel_sent;
        if (!shot_.timed_out) {
            throttled_ = throttled_ || was.cancel_sent;
            if (reader_ && shot_.deadline_ns != 0) c.set_deadline(shot_, shot_.deadline_ns);
        }
    }
    other.reset();
}

void recv_feed::prepare() noexcept {
    backend& io = core::current().io();
    shot_.kind = op_kind::recv;
    if (io.buffers_free() > 0) {  // the kernel (or epoll, after readiness) picks a pool buffer
        shot_.select_buffer = true;
        shot_.buf = nullptr;
        shot_.len = 0;
        shot_.multishot = may_multishot_ && !io.buffers_scarce();
        // A bundle may take a whole ring window at once: only while the pool is plentiful, as
        // multishot. When scarce, one buffer at a time (docs/ARCHITECTURE.md, "Receive buffers").
        shot_.bundle = io.features().recv_bundle && !io.buffers_scarce();
        return;
    }
    shot_.multishot = false;
    shot_.select_buffer = false;
    shot_.bundle = false;
    const int spare = io.take_spare();
    if (spare < 0) {  // pool and spares used up: wait for any buffer to come back
        shot_.kind = op_kind::buffer_wait;
        return;
    }
    spare_ = static_cast<std::uint16_t>(spare);
    shot_.buf = io.buffer(spare_);
    shot_.len = io.buffer_size();
}

std::size_t recv_feed::queue_limit() const noexcept { return core::current().io().buffers_scarce() ? 1 : 2; }

bool recv_feed::keep(const op& o) noexcept {
    backend& io = core::current().io();
    std::uint16_t id;
    if (o.kind == op_kind::buffer_wait) return false;
    if (!o.select_buffer) {  // into the spare taken at arming
        id = std::exchange(spare_, no_spare);
        if (o.res <= 0) {
            io.give_back(id);
            return false;
        }
    } else {
        if (!o.has_buffer()) return false;
        id = o.buffer_id();
    }
    // One buffer holds all res bytes; a bundle's buffers come chained, each with its length.
    std::uint16_t last = id;
    if (o.buffers > 1) {
        for (std::uint16_t i = 1; i < o.buffers; ++i) last = io.link(last).next;
    } else {
        io.link(id).len = static_cast<std::uint32_t>(o.res);
    }
    if (queued_ == 0) head_ = id;
    else io.link(tail_).next = id;
    tail_ = last;
    queued_ = static_cast<std::uint16_t>(queued_ + (o.buffers > 1 ? o.buffers : 1u));
    return true;
}

bool recv_feed::pop(int& res, std::uint32_t& flags) noexcept {
    if (queued_ == 0) return false;
    const backend::buffer_link& l = core::current().io().link(head_);
    res = static_cast<int>(l.len);
    flags = cqe_buffer_flag | (std::uint32_t{head_} << cqe_buffer_shift);
    if (--queued_ != 0) head_ = l.next;
    return true;
}

bool recv_feed::sticky(int res) const noexcept {
    return res != -ECANCELED && res != -ETIMEDOUT;  // end of stream and resets stay
}

void recv_feed::drop_all() noexcept {
    int res;
    std::uint32_t flags;
    backend& io = core::current().io();
    while (pop(res, flags)) io.give_back(static_cast<std::uint16_t>(flags >> cqe_buffer_shift));
}

template class feed<accept_feed>;
template class feed<recv_feed>;

}  // namespace coring::detail
