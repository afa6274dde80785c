#pragma once
// A child process for tests that run a binary as users run it, and the small helpers those tests
// share (test_echo_app.cpp, test_cores.cpp, the coring-pubsub tests).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <thread>
#include <climits>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <limits>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <optional>
#include <poll.h>
#include <sys/time.h>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <utility>
#include <vector>

namespace coring::testing {

// A socket fd closed on every way out.
struct fd_guard {
    int fd = -1;
    fd_guard() = default;
    explicit fd_guard(int f) : fd{f} {}
    fd_guard(fd_guard&& o) noexcept : fd{std::exchange(o.fd, -1)} {}
    fd_guard& operator=(fd_guard&&) = delete;
    ~fd_guard() {
        if (fd >= 0) ::close(fd);
    }
};

// 127.0.0.1:port.
inline sockaddr_in loopback(std::uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

// Holds a free loopback port: a socket bound with SO_REUSEADDR and SO_REUSEPORT but never
// listening, so it takes no connections, yet no other user can take the port while listeners
// with SO_REUSEPORT (coring's, in this process or in a child of the same user) join it.
struct reserved_port {
    fd_guard holder;
    std::uint16_t port = 0;
};

inline reserved_port reserve_loopback_port() {
    reserved_port r;
    r.holder.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(r.holder.fd >= 0);
    const int on = 1;
    REQUIRE(::setsockopt(r.holder.fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) == 0);
    REQUIRE(::setsockopt(r.holder.fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) == 0);
    const sockaddr_in any_port = loopback(0);
    REQUIRE(::bind(r.holder.fd, reinterpret_cast<const sockaddr*>(&any_port), sizeof any_port) == 0);
    sockaddr_in bound{};
    socklen_t len = sizeof bound;
    REQUIRE(::getsockname(r.holder.fd, reinterpret_cast<sockaddr*>(&bound), &len) == 0);
    r.port = ntohs(bound.sin_port);
    REQUIRE(r.port != 0);
    return r;
}

// A loopback port held by a plain listener (no SO_REUSEPORT), so a server's SO_REUSEPORT bind
// to it fails with "Address already in use"; `where` is "127.0.0.1:PORT".
struct taken_port {
    fd_guard listener;
    std::string where;
};

inline taken_port take_loopback_port() {
    taken_port t{fd_guard{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)}, {}};
    REQUIRE(t.listener.fd >= 0);
    sockaddr_in a = loopback(0);
    REQUIRE(::bind(t.listener.fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(t.listener.fd, 8) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(t.listener.fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    t.where = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
    return t;
}

// A plain blocking client to 127.0.0.1:port with 5 s send/receive timeouts, so a silent server
// fails the test instead of hanging it; `rcvbuf`, when not 0, is its SO_RCVBUF (set before the
// SYN, so the window stays small). Returns the fd, or -errno.
inline int connect_blocking(std::uint16_t port, int rcvbuf = 0) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    const timeval limit{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);  // bounds connect too
    const sockaddr_in a = loopback(port);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
        int e = errno;
        if (e == EINTR) {
            // Interrupted, not failed: the handshake goes on (io_uring's teardown of a ring this
            // process had can interrupt a blocking call). Wait for it and ask how it went.
            pollfd p{fd, POLLOUT, 0};
            socklen_t len = sizeof e;
            while (::poll(&p, 1, 5000) < 0 && errno == EINTR) {}
            if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0) e = errno;
            if (e == 0 && !(p.revents & POLLOUT)) e = ETIMEDOUT;
        }
        if (e != 0) {
            ::close(fd);
            return -e;  // the reason, for the test's message
        }
    }
    return fd;
}

// Sends `message`, reads back as many bytes; what came back, or an error description.
inline std::string blocking_round_trip(int fd, const std::string& message) {
    ssize_t sent;
    while ((sent = ::send(fd, message.data(), message.size(), MSG_NOSIGNAL)) < 0 && errno == EINTR) {}
    if (sent != static_cast<ssize_t>(message.size())) return "<send failed: " + std::string{std::strerror(errno)} + ">";
    std::string got;
    char buf[64];
    while (got.size() < message.size()) {
        const ssize_t n = ::recv(fd, buf, std::min(sizeof buf, message.size() - got.size()), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return got + "<recv failed: " + std::strerror(errno) + ">";
        if (n == 0) return got + "<eof>";
        got.append(buf, static_cast<std::size_t>(n));
    }
    return got;
}

// The process's anonymous resident memory (heap, stacks, anonymous maps) in bytes: what user
// space holds. Socket buffers and io_uring's own requests are kernel memory, never in RSS.
inline std::int64_t anon_rss_bytes(pid_t pid) {
    std::ifstream status{"/proc/" + std::to_string(pid) + "/status"};
    std::string key;
    std::int64_t kib = -1;
    while (status >> key) {
        if (key == "RssAnon:") {
            status >> kib;
            break;
        }
        status.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
    }
    return kib * 1024;
}

// Whether Python's websockets module (python3-websockets) is missing: the tests that drive a
// server with it skip then, and say so (WARN).
inline bool skip_without_python_websockets() {
    if (::system("/usr/bin/python3 -c 'import websockets' 2>/dev/null") == 0) return false;
    WARN("python3-websockets is not installed: skipped");
    return true;
}

// In a forked child about to exec a server: the signals it stops on or ignores by itself get
// their default actions and nothing is blocked, as a user's shell would start it. Ignored
// dispositions and the mask survive exec, and this test process may have either (an in-process
// run() ignores SIGPIPE/SIGUSR1/SIGUSR2, and blocks SIGINT/SIGTERM/SIGHUP in its threads).
inline void reset_signals_for_exec() noexcept {
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (const int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGUSR1, SIGUSR2}) ::signal(sig, SIG_DFL);
}

// The port in the server's "listening on 127.0.0.1:PORT" line (which may go on after the
// port: coring-http adds ", files from DIR", coring-pubsub " (RESP)"), 0 until that line is
// complete.
inline std::uint16_t listening_port(const std::string& err) {
    static constexpr std::string_view marker = "listening on 127.0.0.1:";
    const auto at = err.find(marker);
    if (at == std::string::npos) return 0;
    const auto start = at + marker.size();
    const auto end = err.find('\n', start);
    if (end == std::string::npos) return 0;  // the line is not all here yet
    unsigned port = 0;
    auto i = start;
    for (; i < end && err[i] >= '0' && err[i] <= '9'; ++i) {
        port = port * 10 + static_cast<unsigned>(err[i] - '0');
        if (port > 65535) return 0;
    }
    if (i == start || (i < end && err[i] != ',' && err[i] != ' ')) return 0;
    return static_cast<std::uint16_t>(port);
}

// One child process (fork + execv) with stdout and stderr on pipes and stdin on /dev/null. Every
// wait takes a deadline, and the destructor SIGKILLs and reaps the child if a failed check left it
// running. Signals go by pid to this child only, and only while it is unreaped, so the pid cannot
// have been reused by another process.
class child_process {
public:
    using clock = std::chrono::steady_clock;

    // Runs `binary` (a path, not looked up in PATH) with `args`.
    child_process(std::string binary, std::vector<std::string> args) {
        args.insert(args.begin(), std::move(binary));
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);  // built before fork: the child only dups, resets and execs

        int out[2], err[2];
        if (::pipe2(out, O_CLOEXEC) != 0) FAIL("pipe: " << std::strerror(errno));
        if (::pipe2(err, O_CLOEXEC) != 0) {
            ::close(out[0]);
            ::close(out[1]);
            FAIL("pipe: " << std::strerror(errno));
        }
        pid_ = ::fork();
        if (pid_ == 0) {
            // dup2 clears close-on-exec on the copies, so only these two survive the exec.
            ::dup2(out[1], STDOUT_FILENO);
            ::dup2(err[1], STDERR_FILENO);
            const int null = ::open("/dev/null", O_RDONLY);
            if (null > STDIN_FILENO) {
                ::dup2(null, STDIN_FILENO);
                ::close(null);  // not left open across the exec
            }
            reset_signals_for_exec();
            ::execv(argv[0], argv.data());
            // Said on the child's stderr, so a binary that was never built fails the test with
            // its name instead of a server that "printed nothing". write(2): async-signal-safe.
            // strerrordesc_np (glibc 2.32): static text, no locale, unlike strerror.
            const char* why = ::strerrordesc_np(errno);
            if (!why) why = "exec failed";
            for (const char* piece : {"child_process: cannot exec ", static_cast<const char*>(argv[0]), ": ", why, "\n"})
                (void)!::write(STDERR_FILENO, piece, std::strlen(piece));
            ::_exit(127);
        }
        ::close(out[1]);
        ::close(err[1]);
        out_fd_ = out[0];
        err_fd_ = err[0];
        if (pid_ < 0) {
            close_pipes();  // the destructor does not run when the constructor fails
            FAIL("fork: " << std::strerror(errno));
        }
    }

    child_process(const child_process&) = delete;
    child_process& operator=(const child_process&) = delete;

    ~child_process() {
        kill_and_reap();
        close_pipes();
    }

    pid_t pid() const noexcept { return pid_; }
    const std::string& out() const noexcept { return out_; }
    const std::string& err() const noexcept { return err_; }

    // Reads output until `done(*this)` holds, both pipes reach EOF, or the deadline passes.
    template <class Pred>
    bool read_until(clock::time_point deadline, Pred done) {
        while (!done(std::as_const(*this))) {
            if (out_fd_ < 0 && err_fd_ < 0) return false;
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
            if (left.count() <= 0) return false;
            if (!pump(static_cast<int>(std::min<std::chrono::milliseconds::rep>(left.count(), INT_MAX)))) return false;
        }
        return true;
    }

    // Waits for the exit (reading output meanwhile) until the deadline; the wait status, or
    // nothing when the child is still running then.
    std::optional<int> wait_exit(clock::time_point deadline) {
        while (running()) {
            int status = 0;
            const pid_t w = ::waitpid(pid_, &status, WNOHANG);
            if (w == pid_) {
                status_ = status;
                break;
            }
            if (w < 0 && errno != EINTR) {
                lost_ = true;  // reaped elsewhere (ECHILD): no status, and no more signals to that pid
                break;
            }
            if (clock::now() >= deadline) break;
            pump(10);  // 10 ms steps, bounded by the deadline (a plain sleep once both pipes ended)
        }
        if (status_) read_rest(deadline);
        return status_;
    }

    // Waits for the exit until the deadline and then SIGKILLs and reaps, so nothing outlives the
    // test; the wait status, or nothing when it had to be killed.
    std::optional<int> wait_exit_or_kill(clock::time_point deadline) {
        const auto status = wait_exit(deadline);
        if (!status && running()) {
            kill_and_reap();
            read_rest(deadline);  // what it wrote before the kill, for the failure message
        }
        return status;
    }

    std::optional<int> wait_exit_or_kill(std::chrono::milliseconds limit) {
        return wait_exit_or_kill(clock::now() + limit);
    }

private:
    bool running() const noexcept { return pid_ > 0 && !status_ && !lost_; }

    void kill_and_reap() noexcept {
        if (!running()) return;
        ::kill(pid_, SIGKILL);  // only the child this object started
        int status = 0;
        pid_t w;
        while ((w = ::waitpid(pid_, &status, 0)) < 0 && errno == EINTR) {}
        if (w == pid_) {
            status_ = status;
        } else {
            lost_ = true;
        }
    }

    // The output still in the pipes once the child is gone. Its end closed them, so EOF comes at
    // once unless something it started still holds them; the extra second bounds that case even
    // when the deadline has passed already.
    void read_rest(clock::time_point deadline) {
        read_until(std::max(deadline, clock::now() + std::chrono::seconds{1}), [](const child_process&) { return false; });
    }

    // One poll over the open pipes (a plain sleep when both have ended); false when poll itself
    // failed.
    bool pump(int timeout_ms) {
        pollfd fds[2];
        int n = 0;
        if (out_fd_ >= 0) fds[n++] = {out_fd_, POLLIN, 0};
        if (err_fd_ >= 0) fds[n++] = {err_fd_, POLLIN, 0};
        const int ready = ::poll(n > 0 ? fds : nullptr, static_cast<nfds_t>(n), timeout_ms);
        if (ready < 0) return errno == EINTR;
        for (int i = 0; i < n; ++i) {
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            const bool is_out = fds[i].fd == out_fd_;
            drain_once(is_out ? out_fd_ : err_fd_, is_out ? out_ : err_);
        }
        return true;
    }

    static void drain_once(int& fd, std::string& into) {
        char buf[4096];
        const ssize_t got = ::read(fd, buf, sizeof buf);
        if (got > 0) {
            into.append(buf, static_cast<std::size_t>(got));
        } else if (got == 0 || errno != EINTR) {
            ::close(fd);
            fd = -1;
        }
    }

    void close_pipes() noexcept {
        if (out_fd_ >= 0) ::close(out_fd_);
        if (err_fd_ >= 0) ::close(err_fd_);
        out_fd_ = err_fd_ = -1;
    }

    pid_t pid_ = -1;
    int out_fd_ = -1;
    int err_fd_ = -1;
    std::string out_;
    std::string err_;
    std::optional<int> status_;
    bool lost_ = false;  // waitpid failed other than EINTR: the pid is no longer ours to signal
};

// What the tests that run a server binary ask of it.

// Waits for the "listening on 127.0.0.1:PORT" line; the port, or 0 after 10 s.
inline std::uint16_t wait_listening(child_process& p) {
    p.read_until(child_process::clock::now() + std::chrono::seconds{10},
                 [](const child_process& c) { return listening_port(c.err()) != 0; });
    return listening_port(p.err());
}

// Waits until `pid` has SIGTERM blocked (SigBlk in /proc/PID/status): the server's main has
// taken over the stop signals (hold_stop_signals, its first line), so one sent now is the
// server's to handle, not the default action's.
inline bool wait_stop_signals_blocked(pid_t pid, child_process::clock::time_point deadline) {
    const std::string status = "/proc/" + std::to_string(pid) + "/status";
    while (child_process::clock::now() < deadline) {
        std::ifstream f{status};
        for (std::string line; std::getline(f, line);)
            if (line.starts_with("SigBlk:") && (std::stoull(line.substr(7), nullptr, 16) >> (SIGTERM - 1)) & 1) return true;
        ::usleep(100);
    }
    return false;
}

// How p ended by `deadline`, for CHECK(exited_by(p, deadline) == "exit 0"): "exit N", "signal
// N", or "still running" (and then p is killed).
inline std::string exited_by(child_process& p, child_process::clock::time_point deadline) {
    const auto status = p.wait_exit_or_kill(deadline);
    UNSCOPED_INFO("stderr:\n" << p.err());  // shown with the check that uses the result
    if (!status) return "still running";
    return WIFEXITED(*status) ? "exit " + std::to_string(WEXITSTATUS(*status)) : "signal " + std::to_string(WTERMSIG(*status));
}

inline std::string exited_within(child_process& p, std::chrono::milliseconds limit) {
    return exited_by(p, child_process::clock::now() + limit);
}

// Whether `port` on 127.0.0.1 can be listened on by a plain socket (no SO_REUSEPORT): nobody holds it.
inline bool port_free(std::uint16_t port);

// port_free, waited for: a server killed by SIGKILL on io_uring lets go of its listener only when
// the kernel's asynchronous ring teardown has cancelled the accept that holds it, some
// milliseconds after the process is gone (a graceful stop cancels it before exiting).
inline bool port_freed_within(std::uint16_t port, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!port_free(port)) {
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
    return true;
}

inline bool port_free(std::uint16_t port) {
    fd_guard s{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    const int on = 1;
    ::setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    const sockaddr_in a = loopback(port);
    return ::bind(s.fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0 && ::listen(s.fd, 1) == 0;
}

}  // namespace coring::testing
