#pragma once
// op: one I/O operation, described once as plain data and interpreted by either backend.
//
// Ownership: an op lives inside the awaitable that started it, and so inside the suspended
// coroutine frame. From start() until the op completes, the kernel (io_uring) or the backend's
// parking slot (epoll) refers to it by address: its buffer, sockaddr and socklen_t must stay put
// until then. `pending` counts the completions still owed; the frame may resume, and later die,
// only when it is 0. ~op() checks that, because no sanitizer can see the kernel write into a
// freed frame.
#include <cerrno>
#include <coroutine>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
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
};

namespace detail {
struct task_context;
}

struct op {
    op_kind kind = op_kind::nop;
    bool parked = false;          // waiting in a backend queue, not (yet) in the kernel
    bool started_once = false;    // epoll connect: the first connect() call has been made
    bool armed = false;           // in the core's timer heap (timers, deadlines, I/O with a deadline)
    bool timed_out = false;       // its deadline passed: cancelled for that reason (ETIMEDOUT)
    std::uint16_t pending = 0;    // completions (CQEs) still owed to this op
    int fd = -1;
    int flags = 0;
    void* buf = nullptr;
    std::uint32_t len = 0;
    socklen_t addr_len = 0;       // in/out for accept, in for connect: the kernel reads it later
    sockaddr* addr = nullptr;
    std::int32_t res = 0;         // >= 0: the result; < 0: -errno
    std::uint32_t cqe_flags = 0;
    std::int64_t deadline_ns = 0;  // steady clock; on an I/O op, 0 or a deadline that cancels it
    std::uint32_t heap_index = 0;  // position in the core's timer heap while armed
    std::coroutine_handle<> waiter;
    detail::task_context* ctx = nullptr;  // the task this op blocks; set by core::start
    op* next = nullptr;            // intrusive link for the backends' parking queues
    op** tracked_by = nullptr;     // a socket's in-flight slot, cleared when the op completes

    op() noexcept = default;
    op(op_kind k, int f) noexcept : kind{k}, fd{f} {}
    op(const op&) = delete;  // the kernel knows this op by its address
    // The result as awaiters report it: a cancel caused by the op's own deadline is ETIMEDOUT.
    std::int32_t outcome() const noexcept { return timed_out && res == -ECANCELED ? -ETIMEDOUT : res; }
    op& operator=(const op&) = delete;
    ~op() {
        if (pending != 0) {  // a frame dying under the kernel: memory corruption would follow
            std::fputs("coring: op destroyed while the kernel still owns it\n", stderr);
            std::abort();
        }
    }
};

}  // namespace coring
