// What the raw io_uring baselines share: a ring set up with the flags coring uses, a
// provided-buffer ring, SQEs that never run out, multishot accept and recv, and the loop step
// that waits and copies the CQEs out. Header-only, like common.hpp; everything takes the ring
// it works on, so a server may keep one ring per thread.
#pragma once

#include <liburing.h>
#include <poll.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "common.hpp"

namespace baseline::uring {

// One CQE, copied out of the CQ so handlers may submit (and so reap) while handling it.
struct completion {
    std::uint64_t user_data;
    std::int32_t res;
    std::uint32_t flags;
};

// SINGLE_ISSUER|DEFER_TASKRUN (plain flags if the kernel refuses them: before 6.1) with a CQ of
// cq_entries, so a burst of multishot completions does not overflow it. Returns the kernel's
// IORING_FEAT_* bits.
inline unsigned init_ring(io_uring& ring, const char* prog, unsigned sq_entries, unsigned cq_entries) {
    io_uring_params p{};
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    p.cq_entries = cq_entries;
    int r = io_uring_queue_init_params(sq_entries, &ring, &p);
    if (r == -EINVAL) {
        p = io_uring_params{};
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = cq_entries;
        r = io_uring_queue_init_params(sq_entries, &ring, &p);
    }
    if (r < 0) die(prog, "io_uring_queue_init_params", -r);
    return p.features;
}

// A free SQE; when the SQ is full, what is in it is submitted first.
inline io_uring_sqe* get_sqe(io_uring& ring, const char* prog) {
    io_uring_sqe* sqe;
    while ((sqe = io_uring_get_sqe(&ring)) == nullptr) {
        if (int r = io_uring_submit(&ring); r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
            die(prog, "io_uring_submit", -r);
        }
    }
    return sqe;
}

// `count` buffers of `size` bytes (count a power of two) registered as buffer group `group`,
// all of them in the kernel's hands at first. A CQE that carries one (IORING_CQE_F_BUFFER) hands
// it to us: claim() it, and recycle() it when done; recycled buffers reach the kernel together
// at the next publish(), one store to the ring's tail.
class buffer_ring {
public:
    void init(io_uring& ring, const char* prog, unsigned count, unsigned size, unsigned short group) {
        count_ = count;
        size_ = size;
        const std::size_t ring_bytes = sizeof(io_uring_buf) * count;
        void* mem = mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
        void* data = mmap(nullptr, std::size_t{count} * size, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
        if (mem == MAP_FAILED || data == MAP_FAILED) die(prog, "mmap");
        br_ = static_cast<io_uring_buf_ring*>(mem);
        base_ = static_cast<char*>(data);
        io_uring_buf_reg reg{};
        reg.ring_addr = reinterpret_cast<std::uintptr_t>(mem);
        reg.ring_entries = count;
        reg.bgid = group;
        if (int e = io_uring_register_buf_ring(&ring, &reg, 0); e < 0) die(prog, "io_uring_register_buf_ring", -e);
        io_uring_buf_ring_init(br_);
        held_ = count;
        for (unsigned i = 0; i < count; ++i) recycle(static_cast<std::uint16_t>(i));
        publish();
    }

    // The buffer id a CQE carries (its flags must have IORING_CQE_F_BUFFER); ours from now on.
    std::uint16_t claim(std::uint32_t cqe_flags) noexcept {
        ++held_;
        return static_cast<std::uint16_t>(cqe_flags >> IORING_CQE_BUFFER_SHIFT);
    }

    char* data(std::uint16_t bid) const noexcept { return base_ + std::size_t{bid} * size_; }

    void recycle(std::uint16_t bid) noexcept {
        --held_;
        io_uring_buf_ring_add(br_, data(bid), size_, bid, io_uring_buf_ring_mask(count_), static_cast<int>(returned_++));
    }

    void publish() noexcept {
        if (returned_ == 0) return;
        io_uring_buf_ring_advance(br_, static_cast<int>(returned_));
        returned_ = 0;
    }

    // True when the kernel has at least one buffer to receive into (after publish()).
    bool kernel_has_some() const noexcept { return held_ < count_; }

private:
    io_uring_buf_ring* br_ = nullptr;
    char* base_ = nullptr;
    unsigned count_ = 0, size_ = 0;
    unsigned returned_ = 0;  // recycled since the last publish()
    unsigned held_ = 0;      // not in the kernel's hands: claimed, or recycled but not yet published
};

// One multishot accept: a CQE per connection until it ends (no IORING_CQE_F_MORE).
inline void arm_accept(io_uring& ring, const char* prog, int listener, std::uint64_t user_data) {
    io_uring_sqe* sqe = get_sqe(ring, prog);
    io_uring_prep_multishot_accept(sqe, listener, nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, user_data);
}

// One multishot recv into buffers picked from `group`: a CQE per receive until it ends.
inline void arm_recv(io_uring& ring, const char* prog, int fd, unsigned short group, std::uint64_t user_data) {
    io_uring_sqe* sqe = get_sqe(ring, prog);
    io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = group;
    io_uring_sqe_set_data64(sqe, user_data);
}

// A one-shot poll for input on `fd`, e.g. the exit signal's signalfd.
inline void arm_poll_in(io_uring& ring, const char* prog, int fd, std::uint64_t user_data) {
    io_uring_sqe* sqe = get_sqe(ring, prog);
    io_uring_prep_poll_add(sqe, fd, POLLIN);
    io_uring_sqe_set_data64(sqe, user_data);
}

// The connection an accepted fd (or direct descriptor) indexes, `conns` grown to hold it.
template <class Connection>
Connection& connection_at(std::vector<Connection>& conns, int fd) {
    const auto i = static_cast<std::size_t>(fd);
    if (i >= conns.size()) conns.resize(i * 2 + 1);
    return conns[i];
}

// Connections whose multishot recv ended with -ENOBUFS (the buffer ring ran dry); a connection
// type has a `bool starved` for it, cleared when it is closed.
class starved_list {
public:
    template <class Connection>
    void add(int fd, Connection& c) {
        c.starved = true;
        fds_.push_back(fd);
    }

    // Once the kernel has buffers again, arm(fd, connection) for every one still starved. All
    // of them, not just as many as there are buffers: a re-armed recv may find no data, and
    // then nothing would ever wake the rest.
    template <class Connection, class Arm>
    void rearm(std::vector<Connection>& conns, bool kernel_has_buffers, Arm arm) {
        if (fds_.empty() || !kernel_has_buffers) return;
        for (const int fd : fds_) {
            Connection& c = conns[static_cast<std::size_t>(fd)];
            if (!c.starved || c.failed) continue;  // closed since (a reused fd starts with starved=false), or closing
            c.starved = false;
            arm(fd, c);
        }
        fds_.clear();
    }

private:
    std::vector<int> fds_;
};

// A server thread's loop, until handle() returns false: each turn runs before_wait() (give
// buffers back, re-arm what needs it, send what the last batch queued), submits, waits for at
// least one CQE, copies every available CQE out and releases the CQ, then hands each to
// handle(). Copied out first, so handlers may submit (when the SQ fills up) while no CQ slots
// are still in use.
template <class BeforeWait, class Handle>
void run(io_uring& ring, const char* prog, unsigned cq_entries, BeforeWait before_wait, Handle handle) {
    std::vector<completion> batch;
    batch.reserve(cq_entries);
    for (;;) {
        before_wait();
        if (int r = io_uring_submit_and_wait(&ring, 1); r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
            die(prog, "io_uring_submit_and_wait", -r);
        }
        batch.clear();
        unsigned head;
        io_uring_cqe* cqe;
        io_uring_for_each_cqe(&ring, head, cqe) {
            batch.push_back({cqe->user_data, cqe->res, cqe->flags});
        }
        io_uring_cq_advance(&ring, static_cast<unsigned>(batch.size()));
        for (const completion& e : batch) {
            if (!handle(e)) return;
        }
    }
}

// The user_data of every SQE: the fd above, what the op is in the low byte.
enum op : std::uint64_t { op_accept = 1, op_recv = 2, op_send = 3, op_signal = 4, op_shutdown = 5, op_close = 6 };
inline std::uint64_t tag(int fd, op o) noexcept { return (std::uint64_t(std::uint32_t(fd)) << 8) | o; }

// Hands a CQE to the handler its op names; false for the exit signal's, which ends run() (every
// thread's ring polls the same signalfd). Shutdowns and closes need nothing: their connection is
// already gone.
template <class OnRecv, class OnSend, class OnAccept>
bool dispatch(const completion& e, OnRecv on_recv, OnSend on_send, OnAccept on_accept) {
    const int fd = static_cast<int>(e.user_data >> 8);
    switch (e.user_data & 0xff) {
    case op_recv: on_recv(fd, e.res, e.flags); break;
    case op_send: on_send(fd, e.res); break;
    case op_accept: on_accept(fd, e.res, e.flags); break;
    case op_signal: return false;
    }
    return true;
}

// One thread of a server on plain fds: its ring, its provided buffers, its connections indexed
// by fd (a Connection has `recv_armed` and `starved`), and those whose recv ran out of buffers.
template <class Connection>
struct plain_server {
    const char* prog;
    unsigned sq_entries = 4096, cq_entries = 65536;  // a CQ deep enough for a burst of multishot CQEs
    // coring's default pool (1,024 x 16 KiB): a 16 KiB message is one receive and one send here
    // too, as there (4 KiB buffers made the floor split it in four). nbufs: a power of two.
    unsigned nbufs = 1024, buf_size = 16384;
    unsigned short group = 0;
    io_uring ring{};
    buffer_ring bufs{};
    std::vector<Connection> conns{};  // indexed by fd
    starved_list starved{};

    io_uring_sqe* sqe() { return get_sqe(ring, prog); }

    // A recv CQE that brought no data: out of buffers (listed, to be re-armed once there are
    // some, if the recv ended), the peer's end of stream (c.eof), or an error (fail(fd, c)).
    template <class Fail>
    void no_data(int fd, Connection& c, std::int32_t res, Fail fail) {
        if (res == -ENOBUFS && !c.recv_armed && !c.failed) starved.add(fd, c);
        else if (res == 0) c.eof = true;
        else if (res != -ENOBUFS) fail(fd, c);
    }

    void arm_recv(int fd, Connection& c) {
        uring::arm_recv(ring, prog, fd, group, tag(fd, op_recv));
        c.recv_armed = true;
    }

    // A recv CQE for a server that handles each received buffer whole: with data (and the
    // connection not failed), handle(bytes) runs and the recv is armed again if it ended;
    // without, no_data. The buffer goes back to the ring either way: what handle keeps, it copies.
    template <class Handle, class Fail>
    void received(int fd, Connection& c, std::int32_t res, std::uint32_t flags, Handle handle, Fail fail) {
        if (!(flags & IORING_CQE_F_MORE)) c.recv_armed = false;
        const int bid = (flags & IORING_CQE_F_BUFFER) ? bufs.claim(flags) : -1;
        if (res > 0 && !c.failed) {
            handle(std::string_view{bufs.data(static_cast<std::uint16_t>(bid)), static_cast<std::size_t>(res)});
            if (!c.recv_armed && !c.failed) arm_recv(fd, c);
        } else if (res <= 0) {
            no_data(fd, c, res, fail);
        }
        if (bid >= 0) bufs.recycle(static_cast<std::uint16_t>(bid));
    }

    // A connection's output, for a Connection with `out` (the send in flight: the kernel reads
    // it until the CQE), `next` (what queued since), `sent` and `sending`; both vectors, whose
    // data stays put when `conns` grows and moves the connections (a short string's would not).
    // start_send: all of `next` as one send (swapped into `out`: both keep their capacity).
    void start_send(int fd, Connection& c) {
        c.out.swap(c.next);
        c.next.clear();
        c.sent = 0;
        send_rest(fd, c);
    }
    // A send's CQE: false when it failed (the caller fails the connection). A short send's
    // rest goes at once, before anything newer; otherwise c.sending is false again.
    bool sent(int fd, Connection& c, std::int32_t res) {
        c.sending = false;
        if (res <= 0) return false;
        c.sent += static_cast<std::size_t>(res);
        if (c.sent < c.out.size() && !c.failed) send_rest(fd, c);
        return true;
    }
    void send_rest(int fd, Connection& c) {
        io_uring_sqe* s = sqe();
        io_uring_prep_send(s, fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(s, tag(fd, op_send));
        c.sending = true;
    }

    // Sets up the ring and buffers, accepts on `listener` (Nagle off and a multishot recv for
    // each connection), and hands recv and send CQEs to the server's handlers until `sig_fd`
    // is readable. end_turn() runs after each batch of CQEs, before the next wait (a server
    // that sends once per connection per turn sends there).
    template <class OnRecv, class OnSend, class EndTurn = void (*)()>
    void serve(int listener, int sig_fd, OnRecv on_recv, OnSend on_send, EndTurn end_turn = [] {}) {
        init_ring(ring, prog, sq_entries, cq_entries);
        bufs.init(ring, prog, nbufs, buf_size, group);
        conns.resize(1024);
        arm_accept(ring, prog, listener, tag(listener, op_accept));
        arm_poll_in(ring, prog, sig_fd, tag(sig_fd, op_signal));
        const auto on_accept = [this](int fd, std::int32_t res, std::uint32_t flags) {
            if (!(flags & IORING_CQE_F_MORE)) arm_accept(ring, prog, fd, tag(fd, op_accept));
            if (res < 0) return;  // e.g. -EMFILE or an aborted connection: keep accepting
            set_nodelay(res);
            arm_recv(res, connection_at(conns, res));
        };
        const auto before_wait = [this, &end_turn] {
            end_turn();
            bufs.publish();  // this turn's recycled buffers, then a recv for connections that had none
            starved.rearm(conns, bufs.kernel_has_some(), [this](int fd, Connection& c) { arm_recv(fd, c); });
        };
        run(ring, prog, cq_entries, before_wait,
            [&](const completion& e) { return dispatch(e, on_recv, on_send, on_accept); });
    }
};

}  // namespace baseline::uring
