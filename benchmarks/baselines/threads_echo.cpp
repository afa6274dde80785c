// baseline-threads: the classic thread-per-connection echo server with blocking I/O.
//
// The main thread blocks in accept(); every accepted connection gets its own detached thread
// that loops recv() / send-all until EOF or an error, then closes the socket. This is the
// design io_uring and epoll runtimes are usually measured against: no event loop at all, the
// kernel scheduler does the multiplexing. Threads are created with pthread_create directly
// (std::thread cannot set a stack size) with a 64 KiB stack, so ~10,000 connections cost
// ~640 MiB of mostly-untouched virtual memory rather than 80 GiB. SIGINT/SIGTERM are blocked
// in every thread and taken by one sigwait() thread that calls _exit(0).
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace {

constexpr const char* prog = "baseline-threads";
constexpr std::size_t thread_stack = 64 * 1024;
constexpr std::size_t io_buffer = 16 * 1024;  // lives on the 64 KiB thread stack

[[noreturn]] void usage_error(const char* msg, const char* arg) {
    std::fprintf(stderr, "%s: %s%s (try --help)\n", prog, msg, arg);
    std::exit(2);
}

int parse_port(const char* s) {
    char* end = nullptr;
    errno = 0;
    const unsigned long v = std::strtoul(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || v > 65535) usage_error("bad port: ", s);
    return static_cast<int>(v);
}

int parse_args(int argc, char** argv) {
    int port = 7000;
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "--help") {
            std::printf("usage: %s [--port P]\n"
                        "Thread-per-connection blocking echo server on 127.0.0.1.\n"
                        "  --port P   listen port (default 7000; 0 = any free port)\n",
                        prog);
            std::exit(0);
        } else if (a == "--port" && i + 1 < argc) {
            port = parse_port(argv[++i]);
        } else {
            usage_error("unknown or incomplete flag: ", argv[i]);
        }
    }
    return port;
}

void raise_fd_limit() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

[[noreturn]] void die(const char* what) {
    std::fprintf(stderr, "%s: %s: %s\n", prog, what, std::strerror(errno));
    std::exit(1);
}

int listen_loopback(int port) {
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
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

bool send_all(int fd, const char* p, std::size_t n) {
    while (n > 0) {
        const ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

void* serve(void* arg) {
    const int fd = static_cast<int>(reinterpret_cast<std::intptr_t>(arg));
    char buf[io_buffer];
    for (;;) {
        const ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || !send_all(fd, buf, static_cast<std::size_t>(n))) break;
    }
    close(fd);
    return nullptr;
}

void* watch_signals(void* arg) {
    const auto* set = static_cast<const sigset_t*>(arg);
    int sig = 0;
    while (sigwait(set, &sig) != 0) {
    }
    _exit(0);
}

}  // namespace

int main(int argc, char** argv) {
    const int port = parse_args(argc, argv);
    raise_fd_limit();
    signal(SIGPIPE, SIG_IGN);

    // Block the exit signals before any thread exists so every thread inherits the mask.
    static sigset_t exit_signals;
    sigemptyset(&exit_signals);
    sigaddset(&exit_signals, SIGINT);
    sigaddset(&exit_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &exit_signals, nullptr);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, thread_stack);

    pthread_t tid;
    if (int e = pthread_create(&tid, &attr, watch_signals, &exit_signals); e != 0) {
        errno = e;
        die("pthread_create");
    }

    const int listener = listen_loopback(port);
    for (;;) {
        const int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) {
            // Out of descriptors or memory: back off briefly instead of spinning on accept().
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) usleep(10'000);
            continue;  // EINTR, ECONNABORTED, and pending network errors are per-connection
        }
        const int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (pthread_create(&tid, &attr, serve, reinterpret_cast<void*>(static_cast<std::intptr_t>(fd))) != 0) {
            close(fd);  // out of threads: drop this connection, keep serving the others
            usleep(1'000);
        }
    }
}
