// What the baseline echo servers share: flag parsing, error exits, process setup and the
// 127.0.0.1 listener. Header-only, so each baseline stays one standalone program that links
// nothing but libc (and liburing or pthreads where its design needs them).
//
// Exit codes, relied on by the tests and docs: 2 for a bad flag or a failed bind, 1 for any
// other setup failure, 0 for --help (and, in each server, for SIGINT/SIGTERM).
#pragma once

#include <netinet/in.h>
#include <netinet/tcp.h>
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

namespace baseline {

// What one server's command line looks like; the differences are named by designated initializers.
struct cli {
    const char* prog = "";        // program name: the "<prog>: " prefix of every message
    const char* summary = "";     // the --help line under the synopsis
    bool threads = false;         // also accept --threads N (1..1024, default 4)
    bool refuse_minus = false;    // reject numbers written with a leading '-' (strtoul wraps "-0" to 0)
};

// The parsed flags; `threads` keeps its default unless the cli accepts --threads.
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
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "--help") {
            if (c.threads) {
                std::printf("usage: %s [--port P] [--threads N]\n%s\n"
                            "  --port P      listen port (default 7000; 0 = any free port)\n"
                            "  --threads N   worker threads (default 4)\n",
                            c.prog, c.summary);
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

// Listens on 127.0.0.1:port (0 = any), announcing the bound port on stderr; a failed bind exits 2.
inline int listen_loopback(const char* prog, int port, bool nonblocking) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0) die(prog, "socket");
    const int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) die(prog, "setsockopt SO_REUSEADDR");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        std::fprintf(stderr, "%s: bind 127.0.0.1:%d: %s\n", prog, port, std::strerror(errno));
        std::exit(2);
    }
    if (listen(fd, 4096) != 0) die(prog, "listen");
    socklen_t len = sizeof addr;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) die(prog, "getsockname");
    std::fprintf(stderr, "%s: listening on 127.0.0.1:%u\n", prog, unsigned{ntohs(addr.sin_port)});
    return fd;
}

// Turns off Nagle's algorithm on an accepted connection; a failure is ignored.
inline void set_nodelay(int fd) {
    const int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace baseline
