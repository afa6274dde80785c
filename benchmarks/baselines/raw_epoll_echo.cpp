// baseline-raw-epoll: the floor for epoll, a minimal single-threaded edge-triggered echo server.
//
// No runtime, no callbacks, no allocation on the hot path: one epoll_wait loop (256 events),
// non-blocking sockets from accept4(SOCK_NONBLOCK), and every connection registered exactly once
// with EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET, so the loop never calls epoll_ctl(MOD). On readable
// we recv into one shared buffer until EAGAIN and send each chunk straight back. If send would
// block, the unsent tail is kept in the connection's pending buffer and the connection stops
// reading (backpressure) until EPOLLOUT drains it; then reading resumes, because under edge
// triggering the unread input will not be announced again. Data is never lost or reordered.
// Per-connection state lives in a table indexed by fd. SIGINT/SIGTERM arrive via a signalfd.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

namespace {

constexpr const char* prog = "baseline-raw-epoll";

[[noreturn]] void usage_error(const char* msg, const char* arg) {
    std::fprintf(stderr, "%s: %s%s (try --help)\n", prog, msg, arg);
    std::exit(2);
}

int parse_args(int argc, char** argv) {
    int port = 7000;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "--help") {
            std::printf("usage: %s [--port P]\n"
                        "Single-threaded edge-triggered epoll echo server on 127.0.0.1.\n"
                        "  --port P   listen port (default 7000; 0 = any free port)\n",
                        prog);
            std::exit(0);
        } else if (a == "--port" && i + 1 < argc) {
            const char* s = argv[++i];
            char* end = nullptr;
            errno = 0;
            const unsigned long v = std::strtoul(s, &end, 10);
            if (*s == '\0' || *end != '\0' || errno != 0 || v > 65535) usage_error("bad port: ", s);
            port = static_cast<int>(v);
        } else {
            usage_error("unknown or incomplete flag: ", argv[i]);
        }
    }
    return port;
}

[[noreturn]] void die(const char* what) {
    std::fprintf(stderr, "%s: %s: %s\n", prog, what, std::strerror(errno));
    std::exit(1);
}

int listen_loopback(int port) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    const int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) die("setsockopt SO_REUSEADDR");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        std::fprintf(stderr, "%s: bind 127.0.0.1:%d: %s\n", prog, port, std::strerror(errno));
        std::exit(2);
    }
    if (listen(fd, 4096) != 0) die("listen");
    socklen_t len = sizeof addr;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) die("getsockname");
    std::fprintf(stderr, "%s: listening on 127.0.0.1:%u\n", prog, unsigned{ntohs(addr.sin_port)});
    return fd;
}

struct connection {
    std::vector<char> pending;  // unsent tail of the last chunk; empty = may read
    std::size_t pending_off = 0;
};

std::vector<connection> conns;  // indexed by fd
char scratch[64 * 1024];        // shared receive buffer (single-threaded)

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
        const int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (static_cast<std::size_t>(fd) >= conns.size()) conns.resize(static_cast<std::size_t>(fd) * 2 + 1);
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
        ev.data.fd = fd;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) close(fd);
    }
}

}  // namespace

int main(int argc, char** argv) {
    const int port = parse_args(argc, argv);
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);

    sigset_t exit_signals;
    sigemptyset(&exit_signals);
    sigaddset(&exit_signals, SIGINT);
    sigaddset(&exit_signals, SIGTERM);
    sigprocmask(SIG_BLOCK, &exit_signals, nullptr);
    const int sfd = signalfd(-1, &exit_signals, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0) die("signalfd");

    const int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    const int listener = listen_loopback(port);
    for (const int fd : {listener, sfd}) {
        epoll_event ev{};
        ev.events = EPOLLIN;  // level-triggered: a listener stalled on EMFILE is retried
        ev.data.fd = fd;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl");
    }
    conns.resize(1024);

    epoll_event events[256];
    for (;;) {
        const int n = epoll_wait(ep, events, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; ++i) {
            const int fd = events[i].data.fd;
            if (fd == listener) {
                accept_all(listener, ep);
            } else if (fd == sfd) {
                return 0;
            } else {
                on_event(fd, events[i].events);
            }
        }
    }
}
