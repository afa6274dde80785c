#pragma once
// link: one hiredis context at a time on the current core, driven through the readiness op,
// reconnecting with backoff until close(). Private to net/redis (the installed header only
// forward-declares it, so a program never needs hiredis's headers).
//
// How hiredis is driven: hiredis says what it wants through its ev hooks. addRead/addWrite make
// a direction active and, if no pump runs for it, spawn one: a task looping on wait_readable
// (wait_writable) then redisAsyncHandleRead (HandleWrite). delRead/delWrite make it inactive
// and cancel the pump's wait. cleanup (hiredis is freeing the context, and will close the fd
// right after) stops both pumps, forgets the fd, and marks the link down: the context may be
// freed inside HandleRead/HandleWrite, so a pump compares the link's context with its own after
// every call and ends when they differ. hiredis 0.14 has no timer hook: the connect timeout is
// with_timeout in the connector, command timeouts are the awaiting op's deadline.
#include "reply.hpp"

#include <coring/readiness.hpp>
#include <coring/redis/redis.hpp>
#include <coring/sync.hpp>
#include <coring/task_group.hpp>

#include <hiredis/async.h>

#include <optional>
#include <string>
#include <utility>

namespace coring::redis::detail {

// One awaited answer (a command's reply, a subscription's confirmation). Two owners, each
// holding a reference: the side that answers (hiredis's privdata until its callback runs,
// which it always does, with no reply when the context is freed; or the subscriber's list)
// and the task that awaits it (pending_ref, in its frame, awaited or not). The awaiting op
// parks here; a cancel or deadline only unlinks it, since a queued command cannot be withdrawn.
class pending final : public coring::wait_list {
public:
    pending() noexcept = default;
    pending(const pending&) = delete;
    pending& operator=(const pending&) = delete;
    // The answer, once: kept for an await that has not started, handed to a parked one.
    void answer(result<reply> r) noexcept;
    bool answered() const noexcept { return answer_.has_value(); }
    bool awaited() const noexcept { return refs_ == 2; }  // the awaiting side is still there
    result<reply> take() noexcept { return std::move(*answer_); }
    void release() noexcept {
        if (--refs_ == 0) delete this;
    }
    // Never handed to hiredis nor to an awaiter: both references go at once. (Two release()
    // calls say the same, but g++ 12 at -O3 takes the second for a use after free.)
    void discard() noexcept { delete this; }

    std::size_t bytes = 0;  // a command's: counted against options::max_pending_bytes until answered

private:
    void park(op& o) noexcept override { waiter_ = &o; }
    void unlink(op&) noexcept override { waiter_ = nullptr; }
    ~pending() = default;

    op* waiter_ = nullptr;
    std::optional<result<reply>> answer_;
    unsigned refs_ = 2;
};

// The awaiting side's reference (a coroutine parameter: released with the frame).
class pending_ref {
public:
    explicit pending_ref(pending* p = nullptr) noexcept : p_{p} {}
    pending_ref(pending_ref&& o) noexcept : p_{std::exchange(o.p_, nullptr)} {}
    pending_ref& operator=(pending_ref&&) = delete;
    ~pending_ref() {
        if (p_) p_->release();
    }
    pending* get() const noexcept { return p_; }

private:
    pending* p_;
};

// Waits for p's answer (none: `failed` at once); past deadline_ns (0: none), ETIMEDOUT.
task<result<reply>> await_answer(pending_ref p, std::error_code failed, std::int64_t deadline_ns);

class link {
public:
    explicit link(options o);
    link(const link&) = delete;
    link& operator=(const link&) = delete;
    virtual ~link();  // aborts if tasks still run (see redis.hpp)

    void start();  // spawns the connector; after construction, so the virtual hooks are in place
    bool connected() const noexcept { return ac_ != nullptr && up_; }
    const client_stats& stats() const noexcept { return stats_; }
    task<result<void>> wait_connected(std::chrono::milliseconds timeout);
    task<> close();

protected:
    // Inside hiredis's connect callback: the new context is up (commands may be queued).
    virtual void on_connected() noexcept {}
    // Inside hiredis's cleanup: the context is going (its pending callbacks have run).
    virtual void on_disconnected() noexcept {}
    // Inside close(), after the context is freed: wake whoever waits on the subclass.
    virtual void on_closing() noexcept {}
    // The reader stops (before its next wait) while this holds; resume_reading() lets it go on.
    virtual bool reading_paused() const noexcept { return false; }
    void resume_reading() noexcept { room_.set(); }
    redisAsyncContext* context() const noexcept { return connected() ? ac_ : nullptr; }
    // When a command queued now times out: command_timeout from now, or 0 (none).
    std::int64_t deadline() const noexcept;

    options opts_;
    client_stats stats_;
    bool closing_ = false;
    task_group tasks_;  // connector, pumps, and the subclasses' helpers

private:
    enum direction : int { reading = 0, writing = 1 };
    task<> connector();
    task<bool> connect_once();
    task<result<void>> settled();  // until the connect callback, or the context's end
    task<> pump(int d, unsigned generation, redisAsyncContext* ac);
    void want(int d, bool on) noexcept;
    void on_cleanup() noexcept;
    static void on_connect(const redisAsyncContext* ac, int status);

    redisAsyncContext* ac_ = nullptr;  // null once hiredis freed it (cleanup) or before a connect
    int fd_ = -1;
    bool up_ = false;              // the connect callback said so, for this context
    bool failing_ = false;         // a failure was logged; the next success says so
    std::size_t attempt_ = 0;      // which of a name's addresses the next connect tries
    std::string last_error_;
    readiness_wish wishes_[2];     // hiredis's, per direction
    event changed_;                // the connector's: connected, failed or dropped
    event up_event_;               // wait_connected's
    event room_{true};             // the reader's, while reading_paused()
};

}  // namespace coring::redis::detail
