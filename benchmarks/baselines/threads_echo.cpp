// baseline-threads: the classic thread-per-connection echo server with blocking I/O.
//
// The main thread blocks in accept(); every accepted connection gets its own detached thread
// that loops recv() / send-all until EOF or an error, then closes the socket. This is the
// design io_uring and epoll runtimes are usually measured against: no event loop at all, the
// kernel scheduler does the multiplexing. Threads are created with pthread_create directly
// (std::thread cannot set a stack size) with a 64 KiB stack, so ~10,000 connections cost
// ~640 MiB of mostly-untouched virtual memory rather than 80 GiB. SIGINT/SIGTERM are blocked
// in every thread and taken by one sigwait() thread that calls _exit(0).
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

#include "common.hpp"

namespace {

constexpr const char* prog = "baseline-threads";
constexpr std::size_t thread_stack = 64 * 1024;
constexpr std::size_t io_buffer = 16 * 1024;  // lives on the 64 KiB thread stack

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
    const baseline::settings cfg = baseline::parse_args(
        argc, argv, {.prog = prog, .summary = "Thread-per-connection blocking echo server on 127.0.0.1."});
    baseline::prepare_process();

    // Block the exit signals before any thread exists so every thread inherits the mask.
    static sigset_t exit_signals = baseline::block_exit_signals();

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, thread_stack);

    pthread_t tid;
    if (int e = pthread_create(&tid, &attr, watch_signals, &exit_signals); e != 0) {
        baseline::die(prog, "pthread_create", e);
    }

    const int listener = baseline::listen_loopback(prog, cfg.port, false);
    for (;;) {
        const int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) {
            // Out of descriptors or memory: back off briefly instead of spinning on accept().
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) usleep(10'000);
            continue;  // EINTR, ECONNABORTED, and pending network errors are per-connection
        }
        baseline::set_nodelay(fd);
        if (pthread_create(&tid, &attr, serve, reinterpret_cast<void*>(static_cast<std::intptr_t>(fd))) != 0) {
            close(fd);  // out of threads: drop this connection, keep serving the others
            usleep(1'000);
        }
    }
}
