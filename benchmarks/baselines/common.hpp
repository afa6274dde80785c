// What the baseline echo servers share: flag parsing, error exits, process setup, the 127.0.0.1
// listeners and pinned server threads. Header-only, so each baseline stays one standalone program
// that links nothing but libc (and liburing, Asio or pthreads where its design needs them).
//
// Exit codes, relied on by the tests and docs: 2 for a bad flag or a failed bind, 1 for any
// other setup failure, 0 for --help (and, in each server, for SIGINT/SIGTERM).
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
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
#include <thread>
#include <vector>

namespace baseline {

// What one server's command line looks like; the differences are named by designated initializers.
struct cli {
    const char* prog = "";        // program name: the "<prog>: " prefix of every message
    const char* summary = "";     // the --help line under the synopsis
    bool threads = false;         // also accept --threads N (1..1024)
    unsigned default_threads = 4; // what --threads is when not given
    bool refuse_minus = false;    // reject numbers written with a leading '-' (strtoul wraps "-0" to 0)
};

// The parsed flags; `threads` keeps the cli's default unless the cli accepts --threads.
struct settings {
    int port = 7000;
    unsigned threads = 4;
};

// Prints "<prog>: <msg><arg> (try --help)" to stderr and exits 2.
[[noreturn]] inline void usage_error(const char* prog, const char* msg, const char* arg) {
    std::fprintf(stderr, "%s: %s%s (try --help)\n", prog, msg, arg);
    std::exit(2);
}

// Prints "<prog>: <what>: <strerror(err)>" to stderr and exits 1.
[[noreturn]] inline void die(const char* prog, const char* what, int err = errno) {
    std::fprintf(stderr, "%s: %s: %s\n", prog, what, std::strerror(err));
    std::exit(1);
}

// Parses a decimal number in [lo, hi], or exits 2 with "<what><s>".
inline unsigned long parse_uint(const cli& c, const char* s, unsigned long lo, unsigned long hi, const char* what) {
    char* end = nullptr;
    errno = 0;
    const unsigned long v = std::strtoul(s, &end, 10);
    if (*s == '\0' || (c.refuse_minus && *s == '-') || *end != '\0' || errno != 0 || v < lo || v > hi) {
        usage_error(c.prog, what, s);
    }
    return v;
}

// Parses --port P, --help (usage on stdout, exit 0) and, if the cli allows it, --threads N.
inline settings parse_args(int argc, char** argv, const cli& c) {
    settings s;
    s.threads = c.default_threads;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "--help") {
            if (c.threads) {
                std::printf("usage: %s [--port P] [--threads N]\n%s\n"
                            "  --port P      listen port (default 7000; 0 = any free port)\n"
                            "  --threads N   threads (default %u)\n",
                            c.prog, c.summary, c.default_threads);
            } else {
                std::printf("usage: %s [--port P]\n%s\n"
                            "  --port P   listen port (default 7000; 0 = any free port)\n",
                            c.prog, c.summary);
            }
            std::exit(0);
        } else if (a == "--port" && i + 1 < argc) {
            s.port = static_cast<int>(parse_uint(c, argv[++i], 0, 65535, "bad port: "));
        } else if (c.threads && a == "--threads" && i + 1 < argc) {
            s.threads = static_cast<unsigned>(parse_uint(c, argv[++i], 1, 1024, "bad thread count: "));
        } else {
            usage_error(c.prog, "unknown or incomplete flag: ", argv[i]);
        }
    }
    return s;
}

// Raises the soft RLIMIT_NOFILE to the hard limit and ignores SIGPIPE.
inline void prepare_process() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);
}

// Blocks SIGINT and SIGTERM in the calling thread (later threads inherit it) and returns the set.
inline sigset_t block_exit_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    return set;
}

// Blocks SIGINT and SIGTERM and returns a close-on-exec signalfd that reports them (or exits 1).
inline int exit_signal_fd(const char* prog, bool nonblocking) {
    const sigset_t set = block_exit_signals();
    const int fd = signalfd(-1, &set, SFD_CLOEXEC | (nonblocking ? SFD_NONBLOCK : 0));
    if (fd < 0) die(prog, "signalfd");
    return fd;
}

// Binds and listens on 127.0.0.1:port (0 = any) and returns the fd; with reuse_port the port may
// be shared with the process's other listeners. A failed bind exits 2.
inline int bind_loopback(const char* prog, int port, bool nonblocking, bool reuse_port) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0) die(prog, "socket");
    const int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) die(prog, "setsockopt SO_REUSEADDR");
    if (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
        die(prog, "setsockopt SO_REUSEPORT");
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        std::fprintf(stderr, "%s: bind 127.0.0.1:%d: %s\n", prog, port, std::strerror(errno));
        std::exit(2);
    }
    if (listen(fd, 4096) != 0) die(prog, "listen");
    return fd;
}

// The port a listener is bound to.
inline int bound_port(const char* prog, int fd) {
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) die(prog, "getsockname");
    return ntohs(addr.sin_port);
}

// `count` listeners on 127.0.0.1:port (0 = any), one per server thread: with more than one they
// share the port through SO_REUSEPORT and the kernel spreads connections over them, as over
// coring-echo's cores. All are bound before the port is announced on stderr, so no connection
// made after the announcement can miss a thread. A failed bind exits 2.
inline std::vector<int> listen_loopback_group(const char* prog, int port, bool nonblocking, unsigned count) {
    std::vector<int> fds{bind_loopback(prog, port, nonblocking, count > 1)};
    const int bound = bound_port(prog, fds[0]);  // port 0 resolved: the others join that one
    while (fds.size() < count) fds.push_back(bind_loopback(prog, bound, nonblocking, true));
    std::fprintf(stderr, "%s: listening on 127.0.0.1:%d\n", prog, bound);
    return fds;
}

// One listener on 127.0.0.1:port (0 = any), announcing the bound port on stderr; a failed bind exits 2.
inline int listen_loopback(const char* prog, int port, bool nonblocking) {
    return listen_loopback_group(prog, port, nonblocking, 1)[0];
}

// Runs serve(k) for k in [0, n): k = 0 on the calling thread, the others on threads of their own.
// With n > 1, thread k is pinned to the k-th CPU of the process's affinity mask (wrapping), as
// coring-echo --cores pins its cores, so a multi-core comparison is not left to the scheduler; a
// single thread stays wherever taskset put it. Returns when every serve(k) has returned.
template <class Serve>
void run_pinned_threads(unsigned n, Serve serve) {
    cpu_set_t mask;
    std::vector<int> cpus;  // read once, before any thread narrows its own mask
    if (sched_getaffinity(0, sizeof mask, &mask) == 0) {
        for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
            if (CPU_ISSET(cpu, &mask)) cpus.push_back(cpu);
        }
    }
    auto pinned = [&](unsigned k) {
        if (n > 1 && !cpus.empty()) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpus[k % cpus.size()], &one);
            (void)pthread_setaffinity_np(pthread_self(), sizeof one, &one);  // unpinned still works
        }
        serve(k);
    };
    std::vector<std::thread> others;
    for (unsigned k = 1; k < n; ++k) others.emplace_back(pinned, k);
    pinned(0);
    for (std::thread& t : others) t.join();
}

// Turns off Nagle's algorithm on an accepted connection; a failure is ignored.
inline void set_nodelay(int fd) {
    const int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace baseline
