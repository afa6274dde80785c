// baseline-raw-epoll: the floor for epoll, a minimal edge-triggered echo server (one thread by default).
//
// No runtime, no callbacks, no allocation on the hot path: one epoll_wait loop (256 events),
// non-blocking sockets from accept4(SOCK_NONBLOCK), and every connection registered exactly once
// with EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET, so the loop never calls epoll_ctl(MOD). On readable
// we recv into one shared buffer until a short read (the socket is empty then; later bytes
// raise a new edge) or EAGAIN, and send each chunk straight back. If send would
// block, the unsent tail is kept in the connection's pending buffer and the connection stops
// reading (backpressure) until EPOLLOUT drains it; then reading resumes, because under edge
// triggering the unread input will not be announced again. Data is never lost or reordered.
// Per-connection state lives in a table indexed by fd. SIGINT/SIGTERM arrive via a signalfd.
//
// --threads N (default 1) runs N such loops in one process, one per thread, each with its own
// epoll set, connection table and SO_REUSEPORT listener on the shared port (thread k pinned to
// the k-th allowed CPU): the shape of coring-echo --cores N, for the multi-core cell.
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common.hpp"

namespace {

constexpr const char* prog = "baseline-raw-epoll";

struct connection {
    std::vector<char> pending;  // unsent tail of the last chunk; empty = may read
    std::size_t pending_off = 0;
};

// Each thread is a whole server: its tables are thread_local.
thread_local std::vector<connection> conns;  // indexed by fd
thread_local char scratch[16 * 1024];        // the thread's receive buffer: coring's buffer size, so a receive takes what coring's takes

void close_conn(int fd) {
    connection& c = conns[static_cast<std::size_t>(fd)];
    c.pending.clear();
    c.pending_off = 0;
    close(fd);  // also removes it from the epoll set
}

// Sends as much of [p, p+n) as the socket takes. Returns bytes sent, or -1 on a fatal error.
ssize_t send_some(int fd, const char* p, std::size_t n) {
    std::size_t done = 0;
    while (done < n) {
        const ssize_t w = send(fd, p + done, n - done, MSG_NOSIGNAL);
        if (w >= 0) {
            done += static_cast<std::size_t>(w);
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else if (errno != EINTR) {
            return -1;
        }
    }
    return static_cast<ssize_t>(done);
}

void on_event(int fd, std::uint32_t events) {
    connection& c = conns[static_cast<std::size_t>(fd)];
    bool readable = (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
    if (!c.pending.empty()) {
        const std::size_t left = c.pending.size() - c.pending_off;
        const ssize_t w = send_some(fd, c.pending.data() + c.pending_off, left);
        if (w < 0) return close_conn(fd);
        if (static_cast<std::size_t>(w) < left) {
            c.pending_off += static_cast<std::size_t>(w);
            return;  // still blocked: keep not reading, wait for the next EPOLLOUT
        }
        c.pending.clear();
        c.pending_off = 0;
        readable = true;  // input may have been left unread while we were blocked
    }
    if (!readable) return;
    for (;;) {
        const ssize_t n = recv(fd, scratch, sizeof scratch, 0);
        if (n > 0) {
            const ssize_t w = send_some(fd, scratch, static_cast<std::size_t>(n));
            if (w < 0) return close_conn(fd);
            if (w < n) {
                c.pending.assign(scratch + w, scratch + n);
                return;
            }
            // A short read emptied the socket: bytes that come later raise a new edge, so the
            // recv that would only say EAGAIN is skipped (coring's epoll backend does the same).
            // Not when the peer's FIN came with this edge: the read that sees it must happen now.
            if (static_cast<std::size_t>(n) < sizeof scratch && !(events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) return;
        } else if (n == 0) {
            return close_conn(fd);
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return;
        } else if (errno != EINTR) {
            return close_conn(fd);
        }
    }
}

void accept_all(int listener, int ep) {
    for (;;) {
        const int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return;  // EAGAIN, or out of fds/memory: the level-triggered listener retries later
        }
        baseline::set_nodelay(fd);
        if (static_cast<std::size_t>(fd) >= conns.size()) conns.resize(static_cast<std::size_t>(fd) * 2 + 1);
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
        ev.data.fd = fd;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) close(fd);
    }
}

// One server thread: its own epoll set and listener until the exit signal arrives.
void serve(int listener, int sfd) {
    const int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) baseline::die(prog, "epoll_create1");
    for (const int fd : {listener, sfd}) {
        epoll_event ev{};
        ev.events = EPOLLIN;  // level-triggered: a listener stalled on EMFILE is retried, and
        ev.data.fd = fd;      // every thread sees the pending exit signal
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) baseline::die(prog, "epoll_ctl");
    }
    conns.resize(1024);

    epoll_event events[256];
    for (;;) {
        const int n = epoll_wait(ep, events, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            baseline::die(prog, "epoll_wait");
        }
        for (int i = 0; i < n; ++i) {
            const int fd = events[i].data.fd;
            if (fd == listener) {
                accept_all(listener, ep);
            } else if (fd == sfd) {
                return;
            } else {
                on_event(fd, events[i].events);
            }
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    const baseline::settings cfg = baseline::parse_args(
        argc, argv,
        {.prog = prog, .summary = "Edge-triggered epoll echo server on 127.0.0.1, a loop per thread.",
         .threads = true, .default_threads = 1});
    baseline::prepare_process();
    const int sfd = baseline::exit_signal_fd(prog, true);  // before any thread: all inherit the mask
    const std::vector<int> listeners = baseline::listen_loopback_group(prog, cfg.port, true, cfg.threads);
    baseline::run_pinned_threads(cfg.threads, [&](unsigned k) { serve(listeners[k], sfd); });
    return 0;
}
