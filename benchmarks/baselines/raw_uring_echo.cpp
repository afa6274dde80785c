// baseline-raw-uring: the floor for io_uring, a minimal liburing echo server (one thread by default).
//
// No runtime around it, but the same kernel features coring uses, so the comparison is fair:
// a SINGLE_ISSUER|DEFER_TASKRUN ring (plain flags if the kernel refuses) with a 64Ki-entry CQ,
// one multishot accept, a provided-buffer ring (1024 x 16 KiB, coring's default pool, group 0), one multishot recv per
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
using baseline::uring::tag;
using enum baseline::uring::op;

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

// A ring of 4096 SQEs and 65536 CQEs and 1024 x 16 KiB provided buffers (the defaults).
thread_local baseline::uring::plain_server<connection> server{.prog = prog};

void recycle(std::uint16_t bid) { server.bufs.recycle(bid); }

void send_head(int fd, connection& c) {
    const chunk& k = c.queue[c.head];
    io_uring_sqe* sqe = server.sqe();
    io_uring_prep_send(sqe, fd, server.bufs.data(k.bid) + k.off, k.len - k.off, MSG_NOSIGNAL);
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
    connection& c = server.conns[static_cast<std::size_t>(fd)];
    if (!(flags & IORING_CQE_F_MORE)) c.recv_armed = false;
    const int bid = (flags & IORING_CQE_F_BUFFER) ? server.bufs.claim(flags) : -1;
    if (res > 0) {
        if (c.failed) {
            recycle(static_cast<std::uint16_t>(bid));
        } else {
            c.queue.push_back({static_cast<std::uint16_t>(bid), 0, static_cast<std::uint32_t>(res)});
            if (!c.sending) send_head(fd, c);
            if (!c.recv_armed) server.arm_recv(fd, c);
        }
    } else {
        if (bid >= 0) recycle(static_cast<std::uint16_t>(bid));
        server.no_data(fd, c, res, fail);
    }
    maybe_close(fd, c);
}

void on_send(int fd, std::int32_t res) {
    connection& c = server.conns[static_cast<std::size_t>(fd)];
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

// One server thread: its own ring and listener until the exit signal arrives.
void serve(int listener, int sig_fd) { server.serve(listener, sig_fd, on_recv, on_send); }

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
