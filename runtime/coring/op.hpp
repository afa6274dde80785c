#pragma once
// op: one I/O operation, described once as plain data and interpreted by either backend.
//
// Ownership: an op lives inside the awaitable that started it, and so inside the suspended
// coroutine frame. From start() until the op completes, the kernel (io_uring) or the backend's
// parking slot (epoll) refers to it by address: its buffer, sockaddr and socklen_t must stay put
// until then. `pending` counts the completions still owed; the frame may resume, and later die,
// only when it is 0. ~op() checks that, because no sanitizer can see the kernel write into a
// freed frame.
#include <algorithm>
#include <cassert>
#include <cerrno>
#include <coroutine>
#include <cstdint>
#include <cstdio>
#include <cstddef>
#include <cstdlib>
#include <deque>
#include <sys/socket.h>

namespace coring {

enum class op_kind : std::uint8_t {
    nop,       // completes with 0: a yield through the backend
    accept,    // fd = listener; addr/addr_len receive the peer; res = new fd
    connect,   // addr/addr_len name the peer
    recv,      // buf/len, flags = MSG_* flags
    send,      // buf/len, flags = MSG_* flags (MSG_NOSIGNAL is always added)
    read,      // buf/len on a non-socket fd (the core's eventfd)
    shutdown,  // flags = SHUT_RD / SHUT_WR / SHUT_RDWR
    close,     // closes fd; never refused, even in a cancelled task
    timer,     // no fd: the core's timer heap completes it at `deadline_ns`
    deadline,  // no fd, no waiter: at `deadline_ns` the task it was armed in times out (with_timeout)
    join,      // no fd: completes when the task_group in `buf` has no children left
    buffer_wait,  // no fd: completes (res 0) when a receive buffer comes back (backend::give_back)
    wait,      // no fd: parked in a user-space wait list (event, semaphore, channel); `buf` names it
    send_msg,  // buf = a msghdr (iovecs: a gather send); flags = MSG_* flags (MSG_NOSIGNAL is always added)
    // File ops (file.hpp): buf = a file_request (file_request.hpp), which holds what op has no
    // field for (path, open_how, offset, the statx buffer). len = bytes to read.
    open_at,   // openat2 relative to fd (a directory, or AT_FDCWD); res = the new fd
    stat,      // statx of fd itself (AT_EMPTY_PATH)
    read_at,   // pread of fd at the request's offset (-1: at the file position); res = bytes read
    // Readiness of an fd the runtime did not make (a C library's socket: readiness.hpp).
    poll,      // flags = POLLIN or POLLOUT; res = the revents seen (POLLERR/POLLHUP come unasked)
};

constexpr bool is_file_op(op_kind k) noexcept {
    return k == op_kind::open_at || k == op_kind::stat || k == op_kind::read_at;
}

namespace detail {
struct task_context;
}

struct op;

// Where an op of kind `wait` parks: an event, a semaphore, a channel. core::start hands the op
// to park() (unless the task is cancelled: then it fails at once and is never parked); the list
// completes it later with core::complete_wait; core::cancel takes it back out with unlink()
// and completes it with ECANCELED (ETIMEDOUT for a deadline).
class wait_list {
public:
    virtual void park(op& o) noexcept = 0;
    virtual void unlink(op& o) noexcept = 0;

protected:
    ~wait_list() = default;
};

enum class park_reason : std::uint8_t {
    none,
    cq_room,   // io_uring: in-flight ops would exceed the CQ
    ready,     // epoll: waiting for the fd to become ready
    buffers,   // buffer_wait: in the backend's queue of readers waiting for a buffer
    pool_room, // epoll file op: waiting for room in the blocking pool (this core's share is full)
    pool,      // epoll file op: handed to the blocking pool (queued there, or a thread runs it)
};

// Direct descriptors (io_uring's registered file table, docs/ARCHITECTURE.md "Direct
// descriptors"): an fd value with this bit set names slot `fd & ~direct_fd_tag` of its core's
// table, not a process fd. Only the io_uring backend makes them (accept) and reads them; they
// stay >= 0, so "fd >= 0 means open" holds for both kinds. Real fds stay below 2^30 unless
// fs.nr_open is raised past it (its default is 2^20).
inline constexpr int direct_fd_tag = 1 << 30;
constexpr bool is_direct_fd(int fd) noexcept { return fd >= 0 && (fd & direct_fd_tag) != 0; }
constexpr int direct_fd(unsigned slot) noexcept { return direct_fd_tag | static_cast<int>(slot); }
constexpr unsigned direct_slot(int fd) noexcept { return static_cast<unsigned>(fd & ~direct_fd_tag); }

// Provided buffers: a completed op that took one names it like io_uring does, in cqe_flags.
constexpr std::uint32_t cqe_buffer_flag = 1u;  // IORING_CQE_F_BUFFER
constexpr unsigned cqe_buffer_shift = 16;      // IORING_CQE_BUFFER_SHIFT

struct op {
    op_kind kind = op_kind::nop;
    park_reason parked = park_reason::none;  // waiting in a backend queue, not (yet) in the kernel
    bool started_once : 1 = false;  // epoll connect: the first connect() call has been made
    bool armed : 1 = false;         // in the core's timer heap (timers, deadlines, I/O with a deadline)
    bool timed_out : 1 = false;     // its deadline passed: cancelled for that reason (ETIMEDOUT)
    bool multishot : 1 = false;     // io_uring: one SQE, many CQEs (each goes to `source`)
    bool select_buffer : 1 = false; // recv: the backend picks a pool buffer when data arrives
    bool bundle : 1 = false;        // recv with select_buffer: one completion may fill several buffers
    bool sourced : 1 = false;       // completions go to `source`, not to a waiter (set_source)
    bool zerocopy : 1 = false;      // io_uring send: went as SEND_ZC; the kernel's notification
                                    // (a CQE of its own) says when it let go of the buffer
    bool cancel_sent : 1 = false;   // io_uring: a cancel was asked for while it was in the kernel
    bool direct_accept : 1 = false; // io_uring accept into the file table: a result is a slot
    bool slot_reserved : 1 = false; // io_uring single-shot direct accept: holds one free slot
    bool multishot_live : 1 = false; // io_uring: a multishot op the kernel holds (not counted against CQ room)
    std::uint16_t pending = 0;    // completions (CQEs) still owed to this op
    // A bundle's completion: how many pool buffers it filled, from buffer_id() on, chained in
    // ring order through backend::link (each link's len set). 0 or 1: the one buffer, res bytes.
    std::uint16_t buffers = 0;
    int fd = -1;
    int flags = 0;
    // What an op reads or fills: bytes for recv/send/read (a msghdr for send_msg, the awaited
    // object for join/wait), a peer address for accept/connect. Never both, so they share.
    union {
        void* buf = nullptr;
        sockaddr* addr;
    };
    union {
        std::uint32_t len = 0;
        socklen_t addr_len;  // in/out for accept, in for connect: the kernel reads it later
    };
    std::uint32_t heap_index = 0;  // position in the core's timer heap while armed
    std::int32_t res = 0;         // >= 0: the result; < 0: -errno
    std::uint32_t cqe_flags = 0;
    std::int64_t deadline_ns = 0;  // steady clock; on an I/O op, 0 or a deadline that cancels it
    union {
        std::coroutine_handle<> waiter{};  // resumed at completion, unless sourced
        // Sourced: each completion goes to this feed instead (a multishot op may deliver many;
        // the last is the one that leaves pending at 0). Which kind of feed the op's kind says:
        // an accept's is an accept_feed, a receive's a recv_feed (feed.hpp, deliver_to_feed).
        void* source;
    };
    detail::task_context* ctx = nullptr;  // the task this op blocks; set by core::start

    op() noexcept = default;
    op(op_kind k, int f) noexcept : kind{k}, fd{f} {}
    op(const op&) = delete;  // the kernel knows this op by its address
    void set_source(void* s) noexcept {
        source = s;
        sourced = true;
    }
    op& operator=(const op&) = delete;
    // Every field of o, pending included, for an op that takes o's place at a new address
    // (core::withdraw moves what refers to o over). The source is the caller's to set.
    void copy_from(const op& o) noexcept {
        kind = o.kind;
        parked = o.parked;
        started_once = o.started_once;
        armed = o.armed;
        timed_out = o.timed_out;
        multishot = o.multishot;
        select_buffer = o.select_buffer;
        bundle = o.bundle;
        sourced = o.sourced;
        zerocopy = o.zerocopy;
        cancel_sent = o.cancel_sent;
        direct_accept = o.direct_accept;
        slot_reserved = o.slot_reserved;
        multishot_live = o.multishot_live;
        pending = o.pending;
        buffers = o.buffers;
        fd = o.fd;
        flags = o.flags;
        buf = o.buf;
        len = o.len;
        heap_index = o.heap_index;
        res = o.res;
        cqe_flags = o.cqe_flags;
        deadline_ns = o.deadline_ns;
        waiter = o.waiter;
        ctx = o.ctx;
    }
    // The result as awaiters report it: a cancel caused by the op's own deadline is ETIMEDOUT.
    std::int32_t outcome() const noexcept { return timed_out && res == -ECANCELED ? -ETIMEDOUT : res; }
    bool has_buffer() const noexcept { return res > 0 && (cqe_flags & cqe_buffer_flag); }
    std::uint16_t buffer_id() const noexcept { return static_cast<std::uint16_t>(cqe_flags >> cqe_buffer_shift); }
    ~op() {
        if (pending != 0) {  // a frame dying under the kernel: memory corruption would follow
            std::fputs("coring: op destroyed while the kernel still owns it\n", stderr);
            std::abort();
        }
    }
};

// 64 bytes, part of every idle connection (a stream's receive). A field added here goes into
// op::copy_from too.
static_assert(sizeof(op) == 64);

// A FIFO of parked ops (CQ room on io_uring, the blocking pool's room on epoll, a free receive
// buffer). Held by pointer outside the ops, not linked through them: parking is rare, and a
// link in every op would be 8 bytes in every awaiting frame and in every idle connection's
// feed. Bounded by the ops that exist: one per waiting task or feed.
class op_queue {
public:
    bool empty() const noexcept { return ops_.empty(); }
    std::size_t size() const noexcept { return ops_.size(); }
    void push(op& o, park_reason why) noexcept {
        o.parked = why;
        ops_.push_back(&o);  // (out of memory here ends the process: noexcept)
    }
    op& pop() noexcept {
        op& o = *ops_.front();
        ops_.pop_front();
        o.parked = park_reason::none;
        return o;
    }
    void replace(op& o, op* heir) noexcept {  // o must be in this queue; heir takes its place, or none does
        const auto it = std::find(ops_.begin(), ops_.end(), &o);
        assert(it != ops_.end());
        if (heir) *it = heir;
        else ops_.erase(it);
        o.parked = park_reason::none;
    }
    void remove(op& o) noexcept { replace(o, nullptr); }

private:
    std::deque<op*> ops_;
};

}  // namespace coring
