// baseline-raw-uring: the floor for io_uring, a minimal liburing echo server (one thread by default).
//
// No runtime around it, but the same kernel features coring uses, so the comparison is fair:
// a SINGLE_ISSUER|DEFER_TASKRUN ring (plain flags if the kernel refuses) with a 64Ki-entry CQ,
// one multishot accept, a provided-buffer ring (4096 x 4 KiB, group 0), one multishot recv per
// connection selecting from that ring, and sends issued straight from the provided buffer; the
// buffer goes back to the ring when its send completes. Each connection keeps at most one send
// in flight and queues later buffers in order, so short sends and back-to-back receives never
// reorder data. A multishot recv that ends (no IORING_CQE_F_MORE) is re-armed; one that ended
// with -ENOBUFS is re-armed once buffers have been returned. A connection's fd is closed only
// after its last CQE, so the fd-indexed table never sees a stale completion. The loop is one
// io_uring_submit_and_wait per iteration followed by reaping every available CQE.
//
// --threads N (default 1) runs N such servers in one process, one per thread, each with its own
// ring, buffers, connection table and SO_REUSEPORT listener on the shared port (thread k pinned
// to the k-th allowed CPU): the shape of coring-echo --cores N, for the multi-core cell. The fd
// table is then shared by the threads, so every fd lookup in the kernel takes a reference.
#include <liburing.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common.hpp"
#include "uring_common.hpp"

namespace {

// Each thread is a whole server: everything below that is mutable is thread_local.

constexpr const char* prog = "baseline-raw-uring";
constexpr unsigned sq_entries = 4096, cq_entries = 65536;
constexpr unsigned nbufs = 4096, buf_size = 4096;  // nbufs must be a power of two
constexpr unsigned short bgid = 0;
enum op : std::uint64_t { op_accept = 1, op_recv = 2, op_send = 3, op_signal = 4 };

struct chunk {
    std::uint16_t bid;
    std::uint32_t off, len;  // bytes [off, len) of buffer bid are still to be sent
};

struct connection {
    std::vector<chunk> queue;  // queue[head] is the one being sent (if sending)
    std::size_t head = 0;
    bool recv_armed = false, sending = false;
    bool starved = false;  // recv ended with -ENOBUFS; listed in `starved`
    bool eof = false;     // peer finished sending: flush the queue, then close
    bool failed = false;  // error: drop the queue, close once the kernel is done with the fd
};

thread_local io_uring ring;
thread_local baseline::uring::buffer_ring bufs;
thread_local std::vector<connection> conns;  // indexed by fd
thread_local std::vector<int> starved;       // connections whose recv ended with -ENOBUFS

std::uint64_t tag(int fd, op o) { return (std::uint64_t(std::uint32_t(fd)) << 8) | o; }

void recycle(std::uint16_t bid) { bufs.recycle(bid); }

void arm_recv(int fd, connection& c) {
    baseline::uring::arm_recv(ring, prog, fd, bgid, tag(fd, op_recv));
    c.recv_armed = true;
}

void send_head(int fd, connection& c) {
    const chunk& k = c.queue[c.head];
    io_uring_sqe* sqe = baseline::uring::get_sqe(ring, prog);
    io_uring_prep_send(sqe, fd, bufs.data(k.bid) + k.off, k.len - k.off, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, tag(fd, op_send));
    c.sending = true;
}

void drop_queue(connection& c) {  // never called with a send in flight
    for (std::size_t i = c.head; i < c.queue.size(); ++i) recycle(c.queue[i].bid);
    c.queue.clear();
    c.head = 0;
}

void fail(int fd, connection& c) {
    c.failed = true;
    if (!c.sending) drop_queue(c);
    if (c.recv_armed) shutdown(fd, SHUT_RDWR);  // ends the multishot recv (and any send)
}

void maybe_close(int fd, connection& c) {
    if (c.recv_armed || c.sending || !(c.failed || (c.eof && c.head == c.queue.size()))) return;
    drop_queue(c);
    c = connection{};
    close(fd);
}

void on_recv(int fd, std::int32_t res, std::uint32_t flags) {
    connection& c = conns[static_cast<std::size_t>(fd)];
    if (!(flags & IORING_CQE_F_MORE)) c.recv_armed = false;
    const int bid = (flags & IORING_CQE_F_BUFFER) ? bufs.claim(flags) : -1;
    if (res > 0) {
        if (c.failed) {
            recycle(static_cast<std::uint16_t>(bid));
        } else {
            c.queue.push_back({static_cast<std::uint16_t>(bid), 0, static_cast<std::uint32_t>(res)});
            if (!c.sending) send_head(fd, c);
            if (!c.recv_armed) arm_recv(fd, c);
        }
    } else {
        if (bid >= 0) recycle(static_cast<std::uint16_t>(bid));
        if (res == -ENOBUFS && !c.recv_armed && !c.failed) {
            c.starved = true;  // re-armed by the main loop once buffers come back
            starved.push_back(fd);
        } else if (res == 0) {
            c.eof = true;
        } else if (res != -ENOBUFS) {
            fail(fd, c);
        }
    }
    maybe_close(fd, c);
}

void on_send(int fd, std::int32_t res) {
    connection& c = conns[static_cast<std::size_t>(fd)];
    c.sending = false;
    if (res <= 0) {
        fail(fd, c);
    } else {
        chunk& k = c.queue[c.head];
        k.off += static_cast<std::uint32_t>(res);
        if (k.off == k.len) {
            recycle(k.bid);
            if (++c.head == c.queue.size()) {
                c.queue.clear();
                c.head = 0;
            }
        }
        if (c.failed) drop_queue(c);
        else if (c.head < c.queue.size()) send_head(fd, c);
    }
    maybe_close(fd, c);
}

void arm_accept(int listener) { baseline::uring::arm_accept(ring, prog, listener, tag(listener, op_accept)); }

void on_accept(int listener, std::int32_t res, std::uint32_t flags) {
    if (!(flags & IORING_CQE_F_MORE)) arm_accept(listener);
    if (res < 0) return;  // e.g. -EMFILE or an aborted connection: keep accepting
    const int fd = res;
    baseline::set_nodelay(fd);
    if (static_cast<std::size_t>(fd) >= conns.size()) conns.resize(static_cast<std::size_t>(fd) * 2 + 1);
    arm_recv(fd, conns[static_cast<std::size_t>(fd)]);
}

// One server thread: its own ring and listener until the exit signal arrives.
void serve(int listener, int sig_fd) {
    baseline::uring::init_ring(ring, prog, sq_entries, cq_entries);
    bufs.init(ring, prog, nbufs, buf_size, bgid);
    conns.resize(1024);
    arm_accept(listener);
    io_uring_sqe* sig_sqe = baseline::uring::get_sqe(ring, prog);
    io_uring_prep_poll_add(sig_sqe, sig_fd, POLLIN);
    io_uring_sqe_set_data64(sig_sqe, tag(sig_fd, op_signal));

    std::vector<baseline::uring::completion> batch;
    batch.reserve(cq_entries);
    for (;;) {
        // Return this iteration's buffers to the kernel, then give starved connections a recv.
        bufs.publish();
        // Re-arm connections whose recv ran out of buffers once the ring holds some again. All
        // of them, not just as many as there are buffers: a re-armed recv may find no data, and
        // then nothing would ever wake the rest.
        if (!starved.empty() && bufs.kernel_has_some()) {
            for (const int fd : starved) {
                connection& c = conns[static_cast<std::size_t>(fd)];
                if (!c.starved) continue;  // closed since (a reused fd starts with starved=false)
                c.starved = false;
                arm_recv(fd, c);
            }
            starved.clear();
        }
        // The CQEs are copied out and the CQ released before any is handled, so handlers may
        // submit (when the SQ fills up) while no CQ slots are still in use.
        baseline::uring::submit_and_collect(ring, prog, batch);
        for (const baseline::uring::completion& e : batch) {
            const int fd = static_cast<int>(e.user_data >> 8);
            switch (e.user_data & 0xff) {
            case op_recv: on_recv(fd, e.res, e.flags); break;
            case op_send: on_send(fd, e.res); break;
            case op_accept: on_accept(fd, e.res, e.flags); break;
            case op_signal: return;  // every thread's ring polls the same signalfd
            }
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    const baseline::settings cfg =
        baseline::parse_args(argc, argv,
                             {.prog = prog,
                              .summary = "liburing echo server (multishot accept/recv, provided buffers), a ring per thread.",
                              .threads = true,
                              .default_threads = 1});
    baseline::prepare_process();
    const int sig_fd = baseline::exit_signal_fd(prog, false);  // before any thread: all inherit the mask
    const std::vector<int> listeners = baseline::listen_loopback_group(prog, cfg.port, false, cfg.threads);
    baseline::run_pinned_threads(cfg.threads, [&](unsigned k) { serve(listeners[k], sig_fd); });
    return 0;
}
