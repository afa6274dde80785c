// baseline-raw-uring-fast: the io_uring floor with the fast paths on, so coring is measured
// against the best io_uring can do, not only against a plain use of it.
//
// It is baseline-raw-uring (the same ring setup, the same 1024 x 16 KiB provided-buffer ring, one
// multishot recv per connection, at most one send in flight per connection with later data
// queued in order, a connection closed only after its last CQE, --threads N as a ring per
// thread) plus three things:
// - Direct descriptors. A sparse registered file table as large as RLIMIT_NOFILE allows; the
//   multishot accept installs each connection in a free slot (IORING_FILE_INDEX_ALLOC), every
//   recv, send and shutdown names the slot with IOSQE_FIXED_FILE, and the close is
//   io_uring_prep_close_direct. The socket never enters the process's fd table, so no op takes
//   a reference on it there: the cost that grows when threads share that table. TCP_NODELAY is
//   set on the listener, because accepted sockets inherit it and setsockopt cannot take a slot.
// - Receive bundles (IORING_RECVSEND_BUNDLE, kernel 6.10). One CQE covers several buffers: the
//   CQE names the first, and the others are the ones that followed it in the ring, each filled
//   to its length except the last. So the ring is mirrored (which bid went into which slot)
//   and the CQE's first bid leads to its slot. A mirrored slot is not rewritten before its CQE
//   is decoded: CQEs are handled in the order the kernel took their buffers, and a slot is
//   written again only once every buffer taken before it has been decoded and given back.
// - Coalesced sends. A connection's received data is queued and, once the whole CQE batch has
//   been handled, everything it has to send goes out as one sendmsg whose iovecs point at the
//   queued buffers (a plain send when there is one). A send that completes during a batch sends
//   the rest after that batch, together with whatever else arrived in it.
#include <liburing.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common.hpp"
#include "uring_common.hpp"

// liburing 2.3 predates both; the values are the kernel's (include/uapi/linux/io_uring.h, 6.10).
#ifndef IORING_RECVSEND_BUNDLE
#define IORING_RECVSEND_BUNDLE (1U << 4)  // sqe->ioprio of a send/recv: take several buffers
#endif
#ifndef IORING_FEAT_RECVSEND_BUNDLE
#define IORING_FEAT_RECVSEND_BUNDLE (1U << 14)
#endif

namespace {

constexpr const char* prog = "baseline-raw-uring-fast";
constexpr unsigned sq_entries = 4096, cq_entries = 65536;
constexpr unsigned nbufs = 1024, buf_size = 16384;  // coring's default pool; nbufs a power of two
constexpr unsigned short bgid = 0;
constexpr std::size_t max_iovecs = 64;  // per sendmsg; the rest goes in the next one
using baseline::uring::tag;  // user_data: the slot above, the op below
using enum baseline::uring::op;

struct chunk {
    std::uint16_t bid;
    std::uint32_t off, len;  // bytes [off, len) of buffer bid are still to be sent
};

struct connection {
    std::vector<chunk> queue;  // queue[head..] still to send; the send in flight covers a prefix
    std::size_t head = 0;
    std::vector<iovec> iov;  // the sendmsg in flight's iovecs: the kernel's until its CQE
    msghdr msg{};
    bool recv_armed = false, sending = false;
    bool starved = false;  // recv ended with -ENOBUFS; listed in `starved`
    bool eof = false;      // peer finished sending: flush the queue, then close
    bool failed = false;   // error: drop the queue, close once the kernel is done with the slot
    bool listed = false;   // in `to_flush`
};

// Each thread is a whole server: everything below that is mutable is thread_local.
thread_local io_uring ring;
thread_local io_uring_buf_ring* br = nullptr;
thread_local char* buf_base = nullptr;
thread_local unsigned returned = 0;              // buffers added to the ring since the last advance
thread_local unsigned held = nbufs;              // buffers not in the ring
thread_local std::vector<std::uint16_t> bid_at;  // the bid last put in each ring slot
thread_local std::vector<std::uint16_t> slot_of; // the ring slot each bid was last put in
thread_local std::vector<connection> conns;      // indexed by direct descriptor (file slot)
thread_local baseline::uring::starved_list starved;
thread_local std::vector<int> to_flush;          // connections with data queued in this batch

io_uring_sqe* get_sqe() { return baseline::uring::get_sqe(ring, prog); }

char* buffer(std::uint16_t bid) { return buf_base + std::size_t{bid} * buf_size; }

void recycle(std::uint16_t bid) {
    --held;
    // The slot io_uring_buf_ring_add writes; a bundle CQE is decoded from it.
    const auto slot = static_cast<std::uint16_t>((br->tail + returned) & io_uring_buf_ring_mask(nbufs));
    bid_at[slot] = bid;
    slot_of[bid] = slot;
    io_uring_buf_ring_add(br, buffer(bid), buf_size, bid, io_uring_buf_ring_mask(nbufs), static_cast<int>(returned++));
}

void arm_recv(int index, connection& c) {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_recv_multishot(sqe, index, nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT | IOSQE_FIXED_FILE;
    sqe->buf_group = bgid;
    sqe->ioprio |= IORING_RECVSEND_BUNDLE;
    io_uring_sqe_set_data64(sqe, tag(index, op_recv));
    c.recv_armed = true;
}

// One send for everything queued (up to max_iovecs buffers).
void send_queued(int index, connection& c) {
    const std::size_t n = std::min(c.queue.size() - c.head, max_iovecs);
    io_uring_sqe* sqe = get_sqe();
    if (n == 1) {
        const chunk& k = c.queue[c.head];
        io_uring_prep_send(sqe, index, buffer(k.bid) + k.off, k.len - k.off, MSG_NOSIGNAL);
    } else {
        c.iov.clear();
        for (std::size_t i = c.head; i < c.head + n; ++i) {
            const chunk& k = c.queue[i];
            c.iov.push_back({buffer(k.bid) + k.off, k.len - k.off});
        }
        c.msg = msghdr{};
        c.msg.msg_iov = c.iov.data();
        c.msg.msg_iovlen = n;
        io_uring_prep_sendmsg(sqe, index, &c.msg, MSG_NOSIGNAL);
    }
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, tag(index, op_send));
    c.sending = true;
}

void list_for_flush(int index, connection& c) {
    if (!c.listed) {
        c.listed = true;
        to_flush.push_back(index);
    }
}

void drop_queue(connection& c) {  // never called with a send in flight
    for (std::size_t i = c.head; i < c.queue.size(); ++i) recycle(c.queue[i].bid);
    c.queue.clear();
    c.head = 0;
}

void fail(int index, connection& c) {
    c.failed = true;
    if (!c.sending) drop_queue(c);
    if (c.recv_armed) {  // ends the multishot recv (and any send); its own CQE is ignored
        io_uring_sqe* sqe = get_sqe();
        io_uring_prep_shutdown(sqe, index, SHUT_RDWR);
        sqe->flags |= IOSQE_FIXED_FILE;
        io_uring_sqe_set_data64(sqe, tag(index, op_shutdown));
    }
}

void maybe_close(int index, connection& c) {
    if (c.recv_armed || c.sending || !(c.failed || (c.eof && c.head == c.queue.size()))) return;
    drop_queue(c);
    const bool listed = c.listed;  // a listed slot stays listed: the flush skips it, being empty
    c = connection{};
    c.listed = listed;
    // After the last CQE that names the slot, so no op can meet the slot's next connection.
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_close_direct(sqe, static_cast<unsigned>(index));
    io_uring_sqe_set_data64(sqe, tag(index, op_close));
}

void on_recv(int index, std::int32_t res, std::uint32_t flags) {
    connection& c = conns[static_cast<std::size_t>(index)];
    if (!(flags & IORING_CQE_F_MORE)) c.recv_armed = false;
    if (res > 0) {
        // A bundle: the buffers that followed the first one in the ring, each full but the last.
        // (A CQE without data carries no buffer: the kernel has put it back itself.)
        unsigned slot = slot_of[flags >> IORING_CQE_BUFFER_SHIFT];
        for (auto left = static_cast<std::uint32_t>(res); left > 0; ++slot) {
            const std::uint16_t bid = bid_at[slot & io_uring_buf_ring_mask(nbufs)];
            const std::uint32_t len = std::min(left, buf_size);
            left -= len;
            ++held;
            if (c.failed) recycle(bid);
            else c.queue.push_back({bid, 0, len});
        }
        if (!c.failed) {
            list_for_flush(index, c);
            if (!c.recv_armed) arm_recv(index, c);
        }
    } else if (res == -ENOBUFS && !c.recv_armed && !c.failed) {
        starved.add(index, c);  // re-armed by the main loop once buffers come back
    } else if (res == 0) {
        c.eof = true;
    } else if (res != -ENOBUFS) {
        fail(index, c);
    }
    maybe_close(index, c);
}

void on_send(int index, std::int32_t res) {
    connection& c = conns[static_cast<std::size_t>(index)];
    c.sending = false;
    if (res <= 0) {
        fail(index, c);
    } else {
        for (auto left = static_cast<std::uint32_t>(res); left > 0;) {  // a send may be short
            chunk& k = c.queue[c.head];
            const std::uint32_t took = std::min(left, k.len - k.off);
            k.off += took;
            left -= took;
            if (k.off == k.len) {
                recycle(k.bid);
                ++c.head;
            }
        }
        if (c.head == c.queue.size()) {
            c.queue.clear();
            c.head = 0;
        }
        if (c.failed) drop_queue(c);
        else if (c.head < c.queue.size()) list_for_flush(index, c);  // with this batch's data
    }
    maybe_close(index, c);
}

void arm_accept(int listener) {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_multishot_accept_direct(sqe, listener, nullptr, nullptr, 0);
    io_uring_sqe_set_data64(sqe, tag(listener, op_accept));
}

void on_accept(int listener, std::int32_t res, std::uint32_t flags) {
    if (!(flags & IORING_CQE_F_MORE)) arm_accept(listener);
    if (res < 0) return;  // e.g. -ENFILE (table full) or an aborted connection: keep accepting
    arm_recv(res, conns[static_cast<std::size_t>(res)]);
}

void setup_ring() {
    const unsigned features = baseline::uring::init_ring(ring, prog, sq_entries, cq_entries);
    if (!(features & IORING_FEAT_RECVSEND_BUNDLE)) baseline::die(prog, "receive bundles (kernel 6.10)", EOPNOTSUPP);

    // The file table: one slot per connection, as many as the process may have fds (the kernel's cap).
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) baseline::die(prog, "getrlimit RLIMIT_NOFILE");
    const auto slots = static_cast<unsigned>(std::min<rlim_t>(rl.rlim_cur, 1U << 20));
    if (int e = io_uring_register_files_sparse(&ring, slots); e < 0) {
        baseline::die(prog, "io_uring_register_files_sparse", -e);
    }
    conns.resize(slots);

    const std::size_t ring_bytes = sizeof(io_uring_buf) * nbufs;
    void* mem = mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    void* data = mmap(nullptr, std::size_t{nbufs} * buf_size, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED || data == MAP_FAILED) baseline::die(prog, "mmap");
    br = static_cast<io_uring_buf_ring*>(mem);
    buf_base = static_cast<char*>(data);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<std::uintptr_t>(mem);
    reg.ring_entries = nbufs;
    reg.bgid = bgid;
    if (int e = io_uring_register_buf_ring(&ring, &reg, 0); e < 0) {
        baseline::die(prog, "io_uring_register_buf_ring", -e);
    }
    io_uring_buf_ring_init(br);
    bid_at.resize(nbufs);
    slot_of.resize(nbufs);
    for (unsigned i = 0; i < nbufs; ++i) recycle(static_cast<std::uint16_t>(i));
    io_uring_buf_ring_advance(br, static_cast<int>(returned));
    returned = 0;
}

// One server thread: its own ring, file table and listener until the exit signal arrives.
void serve(int listener, int sig_fd) {
    setup_ring();
    arm_accept(listener);
    baseline::uring::arm_poll_in(ring, prog, sig_fd, tag(sig_fd, op_signal));
    const auto before_wait = [] {
        // What the last batch queued: one send per connection for all it has to send.
        for (const int index : to_flush) {
            connection& c = conns[static_cast<std::size_t>(index)];
            c.listed = false;
            if (!c.sending && !c.failed && c.head < c.queue.size()) send_queued(index, c);
        }
        to_flush.clear();
        if (returned > 0) {
            io_uring_buf_ring_advance(br, static_cast<int>(returned));
            returned = 0;
        }
        starved.rearm(conns, held < nbufs, arm_recv);
    };
    baseline::uring::run(ring, prog, cq_entries, before_wait, [](const baseline::uring::completion& e) {
        return baseline::uring::dispatch(e, on_recv, on_send, on_accept);
    });
}

}  // namespace

int main(int argc, char** argv) {
    const baseline::settings cfg = baseline::parse_args(
        argc, argv,
        {.prog = prog,
         .summary = "liburing echo server with direct descriptors, receive bundles and coalesced sends, a ring per thread.",
         .threads = true,
         .default_threads = 1});
    baseline::prepare_process();
    const int sig_fd = baseline::exit_signal_fd(prog, false);  // before any thread: all inherit the mask
    const std::vector<int> listeners = baseline::listen_loopback_group(prog, cfg.port, false, cfg.threads);
    for (const int fd : listeners) baseline::set_nodelay(fd);  // inherited by every accepted socket
    baseline::run_pinned_threads(cfg.threads, [&](unsigned k) { serve(listeners[k], sig_fd); });
    return 0;
}
