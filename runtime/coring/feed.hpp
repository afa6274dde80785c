#pragma once
// feed: an op that produces results on its own schedule, and the results nobody took yet.
// On io_uring with multishot, one SQE keeps accepting (or receiving) and every CQE lands here;
// elsewhere the op is a plain one, armed again each time the queue runs dry. Either way one
// reader at a time waits in an awaiter, and takes queued results without waiting.
//
// Where they live. A receive feed is part of its stream (tcp_stream), so an idle connection is
// one block: the frame holding the stream. When the stream moves, the feed moves with it, and
// when it closes or dies, the feed goes with it, even with its op in the kernel: core::withdraw
// cancels the op and waits for its last CQEs on the spot, renaming them for the feed's new
// address or giving their buffers back (docs/ARCHITECTURE.md, "Memory per idle connection").
// An accept feed lives on the heap instead, and outlives its listener while its op is in the
// kernel: release() cancels the op and the feed frees itself at its last completion (listeners
// are few; a stop must reach them, so the core lists them: armed_source).
//
// Bounds: a multishot op pauses (is cancelled, and armed again when the reader comes back)
// once queue_limit() results wait while the reader is away. See docs/ARCHITECTURE.md,
// "Receive buffers", for what that means for the pool.
#include <coring/core.hpp>
#include <coring/op.hpp>

#include <coroutine>
#include <cstdint>
#include <deque>

namespace coring::detail {

// A reader waiting in (or about to wait in) a feed, and what it was handed. Its task is the
// feed's op's ctx while it waits (core::start sets it), so a cancel of that task reaches the op.
struct feed_reader {
    // The waiting coroutine (coroutine_handle<>::address()), set by wait(). Until then whoever
    // made the reader may keep a pointer of its own here (feed_awaiter keeps its socket), so a
    // reader in a frame is two words, not three.
    void* place = nullptr;
    int res = 0;              // as op::res: a result, or -errno
    std::uint32_t flags = 0;  // as op::cqe_flags: names the buffer of a receive
};

// The logic both feeds share. Self (accept_feed, recv_feed) supplies what differs, as private
// members this class may call (it is their friend):
//   bool keep(const op&)          a result that carries something (an accepted fd, a filled
//                                 buffer): queue it
//   bool pop(int& res, uint32_t& flags)
//   bool sticky(int res) const    a final word that stays: end of stream, a reset (cancels and
//                                 accept errors do not)
//   void drop_all()               what is still queued goes back
//   size_t queued() const
//   size_t queue_limit() const    how many results may wait while the reader is away before a
//                                 multishot op pauses
//   void prepare()                sets shot_ up for its next arming
//   void dispose()                a released feed's last completion came (accept: delete this)
// Static, not virtual: a receive feed is part of every idle connection, and a vtable pointer
// would be 8 bytes of it. The core hands an op's completions to its feed by the op's kind
// (deliver_to_feed, below).
template <class Self>
class feed {
public:
    feed(const feed&) = delete;
    feed& operator=(const feed&) = delete;

    // A result that is already here, into r: queued data first, then the final word (end of
    // stream, an error). False when the reader has to wait.
    bool take(feed_reader& r) noexcept;
    // Only a queued result (data, an accepted fd), never the final word: that stays for take.
    bool take_queued(feed_reader& r) noexcept { return self().pop(r.res, r.flags); }
    // Suspends r until a result comes (its op armed if it is not in flight). deadline_ns, when
    // not 0, ends the wait with ETIMEDOUT.
    void wait(feed_reader& r, std::coroutine_handle<> h, std::int64_t deadline_ns) noexcept;
    void on_completion(op& o, bool own) noexcept;

protected:
    feed(op_kind kind, int fd, bool multishot) noexcept : shot_{kind, fd}, may_multishot_{multishot} {
        shot_.multishot = multishot;
        shot_.set_source(this);
    }
    ~feed() = default;

    // From now on every reader gets ECANCELED: the op is cancelled, the queue dropped, and the
    // op is never armed again.
    void end() noexcept;
    // The owner is done with the feed: the op blocks no task from now on, and a waiting reader
    // (on another task) gets ECANCELED and must not touch the feed again.
    void dismiss_reader() noexcept;
    bool in_flight() const noexcept { return shot_.pending != 0; }

    op shot_;
    feed_reader* reader_ = nullptr;
    int end_ = 1;  // 1: nothing to say; else the final word for the next reader (0 or -errno)
    bool end_sticky_ : 1 = false;
    bool released_ : 1 = false;
    bool ended_ : 1 = false;      // end(): never armed again
    bool throttled_ : 1 = false;  // we cancelled the op because the queue was full (or moved it)
    bool may_multishot_ : 1 = false;  // the kernel has it and it was not turned off

private:
    Self& self() noexcept { return static_cast<Self&>(*this); }
    void offer() noexcept;  // hands the waiting reader a result, if there is one
    void arm(task_context* ctx) noexcept;
};

// Accepted connections, queued by fd (a direct descriptor on io_uring with fixed files: those
// still queued when the feed ends are closed through the ring like any other, drop_all).
class accept_feed final : public feed<accept_feed>, public armed_source {
public:
    accept_feed(int listener_fd, bool multishot) noexcept : feed{op_kind::accept, listener_fd, multishot} {}
    // The listener is done with this feed: a waiting reader gets ECANCELED, the op is
    // cancelled, and the feed frees itself once the kernel has let go of the op.
    void release() noexcept;
    void on_stop() noexcept override { end(); }  // connections that arrive from now on are refused
    void on_drain() noexcept override { end(); }

    static void* operator new(std::size_t size) { return allocate_frame(size); }
    static void operator delete(void* p, std::size_t size) noexcept { free_frame(p, size); }

private:
    friend class feed<accept_feed>;
    void dispose() noexcept { delete this; }
    bool keep(const op& o) noexcept;
    bool pop(int& res, std::uint32_t& flags) noexcept;
    bool sticky(int) const noexcept { return false; }
    void drop_all() noexcept;
    std::size_t queued() const noexcept { return fds_.size(); }
    // 0 while the file table is nearly full: a multishot accept pauses (is cancelled) at once,
    // and the next arming is one connection at a time, or a plain accept (uring_backend).
    std::size_t queue_limit() const noexcept;
    void prepare() noexcept {}
    std::deque<int> fds_;
};

// Received data, queued as pool buffers, linked through the backend's per-buffer chain: an
// idle stream holds no buffer and no queue storage. A receive bundle (io_uring, 6.10) queues
// the several buffers of one completion at once, as the backend chained them. The pool is a
// fast path, never a reason to stop a reader that waits: when it is empty the next receive goes
// into a spare buffer of its own; when it is scarce (less than half free) receives are
// single-shot and taken only for a reader that waits, and the queue limit drops from 2 to 1.
//
// Part of a tcp_stream: unused (no fd) until the stream's first recv_lease opens it, and moved
// with the stream. Moving or closing it while its op is started costs a synchronous cancel on
// io_uring (core::withdraw); a stream that reaches its end of data has no op left by then.
class recv_feed final : public feed<recv_feed> {
public:
    recv_feed() noexcept : feed{op_kind::recv, -1, false} {}
    recv_feed(recv_feed&& other) noexcept : recv_feed{} { take_from(other); }
    recv_feed& operator=(recv_feed&& other) noexcept {
        if (this != &other) {
            close();
            take_from(other);
        }
        return *this;
    }
    ~recv_feed() { close(); }

    bool is_open() const noexcept { return shot_.fd >= 0; }
    void open(int fd, bool multishot) noexcept;
    // The stream closes (or goes): a waiting reader gets ECANCELED, the op is withdrawn from
    // the kernel, what is queued goes back to the pool, and the feed is unused again.
    void close() noexcept;

private:
    friend class feed<recv_feed>;
    void take_from(recv_feed& other) noexcept;  // other's state and op, at this address
    void reset() noexcept;  // unused, as constructed (nothing in flight)
    bool keep(const op& o) noexcept;
    bool pop(int& res, std::uint32_t& flags) noexcept;
    bool sticky(int res) const noexcept;
    void drop_all() noexcept;
    std::size_t queued() const noexcept { return queued_; }
    std::size_t queue_limit() const noexcept;
    void prepare() noexcept;
    void dispose() noexcept {}  // never released: it closes with its stream
    // 16 bits each (buffer ids and counts fit): the feed is part of every idle connection's
    // memory.
    static constexpr std::uint16_t no_spare = 0xffff;
    std::uint16_t spare_ = no_spare;  // the spare buffer the op in flight receives into, if any
    std::uint16_t queued_ = 0;
    std::uint16_t head_ = 0;
    std::uint16_t tail_ = 0;
};

extern template class feed<accept_feed>;
extern template class feed<recv_feed>;

// A completion of a sourced op, to its feed (core::deliver): `own` says it carries the op's
// result (res, cqe_flags); it is the op's last when o.pending is 0.
inline void deliver_to_feed(op& o, bool own) noexcept {
    // (set_source was given the feed<Self> part: accept_feed's may not be at its start)
    if (o.kind == op_kind::accept) static_cast<feed<accept_feed>*>(o.source)->on_completion(o, own);
    else static_cast<feed<recv_feed>*>(o.source)->on_completion(o, own);  // recv, or its buffer_wait
}

}  // namespace coring::detail
