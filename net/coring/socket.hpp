#pragma once
// socket_base: an owned socket fd on the current core, plus the awaitables every socket type
// shares. It remembers the op in flight in each direction (one at most: asserted), so that
// close() and the destructor can cancel them before the fd goes: a queued SQE resolves the fd
// *number* at submit time, and must never meet a newer socket that reused it. The same holds
// for a slot of io_uring's file table: a direct descriptor is closed through the ring, queued
// behind every SQE that names it.
#include <coring/core.hpp>
#include <coring/feed.hpp>
#include <coring/op.hpp>
#include <coring/result.hpp>
#include <coring/task.hpp>

#include <coroutine>
#include <cstddef>
#include <span>
#include <sys/socket.h>

namespace coring::detail {

enum stream_direction : int { input = 0, output = 1 };

// An idle timeout as ops take it: the deadline that many nanoseconds from now, 0 for none.
inline std::int64_t deadline_after(std::int64_t timeout_ns) noexcept {
    return timeout_ns > 0 ? core::now_ns() + timeout_ns : 0;
}

class socket_base;

// The common awaitable: pins an op in the awaiting frame and starts it in await_suspend.
// Started on a socket, it sits in the socket's in-flight slot for its direction until its task
// resumes (await_resume, or its frame's end): close() and the destructor cancel what is there
// (nothing, if the op is over). Once the op has completed, another op in that direction may
// take the slot even before this task runs again. A socket that moves takes its slots along and
// tells the awaiters (socket_base::take_slots_from); one that goes first clears their
// back-pointers, so neither side ever touches the other dead.
class op_awaiter {
public:
    op_awaiter(op_kind kind, int fd, op_awaiter** slot, int flags = 0) noexcept : op_{kind, fd}, slot_{slot} {
        op_.flags = flags;
        if (fd < 0) op_.res = -EBADF;  // a closed or empty socket: answered without the kernel
    }
    op_awaiter(const op_awaiter&) = delete;  // &op_ is the kernel's cookie
    op_awaiter& operator=(const op_awaiter&) = delete;
    ~op_awaiter() { untrack(); }

    bool await_ready() const noexcept { return op_.fd < 0; }
    void await_suspend(std::coroutine_handle<> h) noexcept;

    // Before co_await only: a steady-clock deadline (core::now_ns) after which the op is
    // cancelled and reports ETIMEDOUT; 0 for none.
    void set_deadline(std::int64_t deadline_ns) noexcept { op_.deadline_ns = deadline_ns; }
    // Before co_await only: the address connect reads.
    void bind_address(const sockaddr* addr, socklen_t len) noexcept {
        op_.addr = const_cast<sockaddr*>(addr);  // connect only reads it
        op_.addr_len = len;
    }

protected:
    // Out of the socket's slot: the op is over (called by await_resume).
    void untrack() const noexcept {
        if (slot_ && op_.waiter && *slot_ == this) *slot_ = nullptr;  // (waiter: it was started)
        slot_ = nullptr;
    }

    op op_;

private:
    friend class socket_base;
    mutable op_awaiter** slot_;  // the socket's in-flight slot for this direction, or null
};

// recv/send: a byte count (0 from recv means the peer closed its side).
class transfer_awaiter : public op_awaiter {
public:
    transfer_awaiter(op_kind kind, int fd, op_awaiter** slot, void* buf, std::size_t len, int flags,
                     std::int64_t timeout_ns = 0) noexcept;
    result<std::size_t> await_resume() const noexcept {
        untrack();
        if (op_.res < 0) return to_error(op_.outcome());
        return static_cast<std::size_t>(op_.res);
    }
};

// sendmsg over several pieces (a plain send for one): a byte count, as transfer_awaiter (a
// short send is a success).
// The msghdr lives here, in the awaiting frame, the iovecs in the caller's: the kernel reads
// both at any time until the completion.
class gather_awaiter : public op_awaiter {
public:
    gather_awaiter(int fd, op_awaiter** slot, std::span<const iovec> pieces, std::int64_t timeout_ns = 0) noexcept;
    void await_suspend(std::coroutine_handle<> h) noexcept {
        // Here, not in the constructor: by now the awaiter has its final address. (One piece
        // goes as a plain send of it: op_.buf is that piece already.)
        if (op_.kind == op_kind::send_msg) op_.buf = &msg_;
        op_awaiter::await_suspend(h);
    }
    result<std::size_t> await_resume() const noexcept {
        untrack();
        if (op_.res < 0) return to_error(op_.outcome());
        return static_cast<std::size_t>(op_.res);
    }

private:
    msghdr msg_{};
};

// shutdown/close/connect: success or an error.
class status_awaiter : public op_awaiter {
public:
    using op_awaiter::op_awaiter;
    result<void> await_resume() const noexcept {
        untrack();
        if (op_.res < 0) return to_error(op_.outcome());
        return {};
    }
};

// Closes fd through the backend (ordered after every op already queued for it). The fd is
// released whatever happens (Linux frees it even when close reports an error), so there is
// nothing for the caller to handle. A task of its own: its op takes room only while closing,
// not in every frame that may close a socket.
task<> close_fd(int fd);

// Waits in a socket's feed (multishot accept or recv): no op of its own, so a reader costs two
// words in its frame (it sits in every idle connection's): the socket is kept in the reader's
// place until the wait begins, and read only until then. A socket without a feed (closed)
// answers EBADF at once. Socket gives open_feed() (null when closed) and idle_timeout_ns().
template <class Socket>
class feed_awaiter {
public:
    explicit feed_awaiter(Socket& s) noexcept { reader_.place = &s; }
    feed_awaiter(const feed_awaiter&) = delete;
    bool await_ready() noexcept {
        if (auto* f = socket().open_feed()) return f->take(reader_);
        reader_.res = -EBADF;
        return true;
    }
    void await_suspend(std::coroutine_handle<> h) noexcept {
        Socket& s = socket();
        s.open_feed()->wait(reader_, h, deadline_after(s.idle_timeout_ns()));  // (reader_.place = h from here)
    }

protected:
    feed_reader reader_;

private:
    Socket& socket() const noexcept { return *static_cast<Socket*>(reader_.place); }
};

class socket_base {
public:
    // The socket's fd for system calls of the caller's own (setsockopt, getpeername...). A socket
    // accepted into io_uring's file table (is_direct) has none until asked: the first call makes
    // one for the same socket (backend::install_fd, through the ring at once) and the socket keeps
    // it until it closes; its own ops still use the direct descriptor. -1 when closed, or when no
    // fd could be made (EMFILE).
    int fd() const noexcept;
    bool is_open() const noexcept { return fd_ >= 0; }
    // Lives in its core's file table (io_uring direct descriptor; docs/ARCHITECTURE.md).
    bool is_direct() const noexcept { return is_direct_fd(fd_); }

    // Cancels whatever is in flight on this socket (those ops finish with ECANCELED) at once,
    // then closes the fd when awaited, ordered after every SQE already queued for it.
    [[nodiscard]] task<> close() noexcept;

protected:
    socket_base() noexcept = default;
    explicit socket_base(int fd) noexcept : fd_{fd} {}
    socket_base(socket_base&& other) noexcept;
    socket_base& operator=(socket_base&& other) noexcept;
    ~socket_base();  // the fallback: cancels, then closes without waiting

    op_awaiter** slot(stream_direction d) noexcept { return &in_flight_[d]; }
    void cancel_in_flight() noexcept;
    void close_user_fd() noexcept;
    void take_slots_from(socket_base& other) noexcept;
    // The idle timeout (tcp_stream::set_idle_timeout) in the form ops take: 0 or nanoseconds.
    std::int64_t idle_timeout_ns() const noexcept { return std::int64_t{idle_timeout_ms_} * 1'000'000; }

    // 24 bytes, part of every idle connection's memory. A direct socket's own fd, when the
    // caller asks for one (fd()), is kept by the backend, not here (backend::user_fd).
    // The name ops use: a process fd, or a direct descriptor (is_direct_fd) on io_uring.
    int fd_ = -1;
    std::int32_t idle_timeout_ms_ = 0;  // tcp_stream's; whole milliseconds (0: none)
    op_awaiter* in_flight_[2] = {nullptr, nullptr};
};

}  // namespace coring::detail
