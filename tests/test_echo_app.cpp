// The coring-echo binary as users run it: flags, exit codes, messages, and stopping on signals.
#include "support.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <optional>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

using namespace coring;
using namespace coring::testing;

namespace {

using clock_type = std::chrono::steady_clock;

// One coring-echo process with its stdout and stderr on pipes. Every wait takes a deadline, and
// the destructor SIGKILLs and reaps the child if a failed check left it running.
class echo_process {
public:
    explicit echo_process(std::vector<std::string> args) {
        args.insert(args.begin(), CORING_ECHO_BINARY);
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
            if (null >= 0) ::dup2(null, STDIN_FILENO);
            // The signal mask survives exec; the server must see SIGINT/SIGTERM as a user's shell
            // would deliver them, whatever this test process has blocked.
            sigset_t none;
            sigemptyset(&none);
            ::sigprocmask(SIG_SETMASK, &none, nullptr);
            ::signal(SIGINT, SIG_DFL);
            ::signal(SIGTERM, SIG_DFL);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        ::close(out[1]);
        ::close(err[1]);
        out_fd_ = out[0];
        err_fd_ = err[0];
        if (pid_ < 0) {
            close_pipes();
            FAIL("fork: " << std::strerror(errno));
        }
    }

    echo_process(const echo_process&) = delete;
    echo_process& operator=(const echo_process&) = delete;

    ~echo_process() {
        if (pid_ > 0 && !status_) {
            ::kill(pid_, SIGKILL);  // only the child this object started
            int status = 0;
            while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {}
        }
        close_pipes();
    }

    pid_t pid() const noexcept { return pid_; }
    const std::string& out() const noexcept { return out_; }
    const std::string& err() const noexcept { return err_; }

    // Reads output until `done(*this)` holds, both pipes reach EOF, or the deadline passes.
    template <class Pred>
    bool read_until(clock_type::time_point deadline, Pred done) {
        while (!done(*this)) {
            if (out_fd_ < 0 && err_fd_ < 0) return false;
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
            if (left.count() <= 0) return false;
            if (!pump(static_cast<int>(left.count()))) return false;
        }
        return true;
    }

    // Waits for the exit (reading output meanwhile) until the deadline; the wait status, or
    // nothing when the child is still running then.
    std::optional<int> wait_exit(clock_type::time_point deadline) {
        while (!status_) {
            int status = 0;
            const pid_t w = ::waitpid(pid_, &status, WNOHANG);
            if (w == pid_) {
                status_ = status;
                break;
            }
            if (w < 0 && errno != EINTR) break;
            if (clock_type::now() >= deadline) break;
            // Pipes at EOF still leave the pid to poll; 10 ms steps, bounded by the deadline.
            if (out_fd_ < 0 && err_fd_ < 0) {
                ::poll(nullptr, 0, 10);
            } else {
                pump(10);
            }
        }
        if (status_) read_until(deadline, [](const echo_process&) { return false; });  // the rest
        return status_;
    }

    // Waits for the exit and then SIGKILLs if it did not come, so nothing outlives the test.
    std::optional<int> wait_exit_or_kill(std::chrono::milliseconds limit) {
        auto status = wait_exit(clock_type::now() + limit);
        if (!status) {
            ::kill(pid_, SIGKILL);
            int s = 0;
            while (::waitpid(pid_, &s, 0) < 0 && errno == EINTR) {}
            status_ = s;
        }
        return status;
    }

private:
    // One poll over the open pipes; false when poll itself failed.
    bool pump(int timeout_ms) {
        pollfd fds[2];
        int n = 0;
        if (out_fd_ >= 0) fds[n++] = {out_fd_, POLLIN, 0};
        if (err_fd_ >= 0) fds[n++] = {err_fd_, POLLIN, 0};
        if (n == 0) return true;
        const int ready = ::poll(fds, static_cast<nfds_t>(n), timeout_ms);
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
};

// A deadline for a whole run of the binary: flag errors and --help exit at once.
constexpr auto quick_exit_limit = 10s;

std::size_t count_lines(const std::string& s) { return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n')); }

std::vector<std::string> split_words(const std::string& s) {
    std::vector<std::string> words;
    std::size_t pos = 0;
    while (pos < s.size()) {
        const auto end = s.find(' ', pos);
        words.push_back(s.substr(pos, end == std::string::npos ? std::string::npos : end - pos));
        if (end == std::string::npos) break;
        pos = end + 1;
    }
    return words;
}

// Whether io_uring works for this process; a kernel or container may forbid it, and then the
// uring runs of the binary would fail at start-up rather than test what they are about.
bool uring_usable(std::string* why) {
    try {
        test_core probe{backend_kind::uring, 8};
        return true;
    } catch (const std::exception& e) {
        *why = e.what();
        return false;
    }
}

// A socket fd closed on every way out.
struct fd_guard {
    int fd = -1;
    ~fd_guard() {
        if (fd >= 0) ::close(fd);
    }
};

sockaddr_in loopback(std::uint16_t port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

// A plain blocking client with 5 s send/receive timeouts, so a silent server fails the test
// instead of hanging it.
int connect_blocking(std::uint16_t port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    const timeval limit{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);  // bounds connect too
    const sockaddr_in a = loopback(port);
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

// Sends `message`, reads back as many bytes; what came back, or an error description.
std::string blocking_round_trip(int fd, const std::string& message) {
    if (::send(fd, message.data(), message.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(message.size()))
        return "<send failed: " + std::string{std::strerror(errno)} + ">";
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

// The port in the server's "listening on 127.0.0.1:PORT" line, 0 until that line is complete.
std::uint16_t listening_port(const std::string& err) {
    static constexpr std::string_view marker = "listening on 127.0.0.1:";
    const auto at = err.find(marker);
    if (at == std::string::npos) return 0;
    const auto start = at + marker.size();
    const auto end = err.find('\n', start);
    if (end == std::string::npos) return 0;  // the line is not all here yet
    unsigned port = 0;
    for (auto i = start; i < end; ++i) {
        if (err[i] < '0' || err[i] > '9') return 0;
        port = port * 10 + static_cast<unsigned>(err[i] - '0');
    }
    return port > 0 && port < 65536 ? static_cast<std::uint16_t>(port) : 0;
}

}  // namespace

TEST_CASE("coring-echo --help prints usage and exits 0", "[app]") {
    echo_process p{{"--help"}};
    const auto status = p.wait_exit_or_kill(quick_exit_limit);
    INFO("stdout:\n" << p.out() << "\nstderr:\n" << p.err());
    REQUIRE(status);
    REQUIRE(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
    CHECK_THAT(p.out(), Catch::Contains("usage"));
    CHECK_THAT(p.out(), Catch::Contains("--listen"));
    CHECK_THAT(p.out(), Catch::Contains("--backend"));
    CHECK(p.err().empty());
}

TEST_CASE("coring-echo rejects a bad flag with exit code 2 and one line naming it", "[app]") {
    // Arguments (split on spaces) and the word the message must mention.
    const auto [args, word] = GENERATE(table<std::string, std::string>({
        {"--bogus", "--bogus"},
        {"--bogus 1", "--bogus"},
        {"--backend nope", "nope"},
        {"--backend=nope", "nope"},
        {"--listen not-an-address", "not-an-address"},
        {"--drain-timeout soon", "soon"},
    }));
    INFO("coring-echo " << args);
    echo_process p{split_words(args)};
    const auto status = p.wait_exit_or_kill(quick_exit_limit);
    INFO("stdout:\n" << p.out() << "\nstderr:\n" << p.err());
    REQUIRE(status);
    REQUIRE(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 2);
    CHECK(count_lines(p.err()) == 1);
    CHECK(p.err().ends_with('\n'));
    CHECK_THAT(p.err(), Catch::Contains(word));
    CHECK(p.out().empty());
}

TEST_CASE("coring-echo exits 2 naming the address when the port is taken", "[app][bind]") {
    const auto kind = GENERATE(backend_kind::uring, backend_kind::epoll);
    INFO("backend: " << to_string(kind));
    if (std::string why; kind == backend_kind::uring && !uring_usable(&why)) {
        WARN("io_uring unavailable here, uring run skipped: " << why);
        return;
    }
    // A listener without SO_REUSEPORT: the server's SO_REUSEPORT bind cannot share it.
    fd_guard taken{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    REQUIRE(taken.fd >= 0);
    sockaddr_in a = loopback(0);
    REQUIRE(::bind(taken.fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(taken.fd, 8) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(taken.fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    const std::string where = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));

    echo_process p{{"--listen", where, "--backend", std::string{to_string(kind)}, "--drain-timeout", "500"}};
    const auto status = p.wait_exit_or_kill(quick_exit_limit);
    INFO("stderr:\n" << p.err());
    REQUIRE(status);
    REQUIRE(WIFEXITED(*status));  // an error exit, not a crash or a core dump
    CHECK(WEXITSTATUS(*status) == 2);
    CHECK_THAT(p.err(), Catch::Contains("bind " + where));
    CHECK_THAT(p.err(), Catch::Contains("Address already in use"));
}

TEST_CASE("coring-echo stops cleanly on SIGTERM and SIGINT, cancelling idle connections", "[app][signal]") {
    const auto kind = GENERATE(backend_kind::uring, backend_kind::epoll);
    const int sig = GENERATE(SIGTERM, SIGINT);
    INFO("backend: " << to_string(kind) << ", signal: " << strsignal(sig));
    if (std::string why; kind == backend_kind::uring && !uring_usable(&why)) {
        WARN("io_uring unavailable here, uring run skipped: " << why);
        return;
    }
    constexpr auto drain = 500ms;
    echo_process p{{"--listen", "127.0.0.1:0", "--backend", std::string{to_string(kind)}, "--drain-timeout",
                    std::to_string(drain.count())}};
    // The log line comes after the bind, so once it is here the port accepts connections.
    const bool up = p.read_until(clock_type::now() + 10s, [](const echo_process& e) { return listening_port(e.err()) != 0; });
    INFO("stderr:\n" << p.err());
    REQUIRE(up);
    const std::uint16_t port = listening_port(p.err());

    fd_guard active{connect_blocking(port)};
    REQUIRE(active.fd >= 0);
    CHECK(blocking_round_trip(active.fd, "ping") == "ping");

    // One round trip proves the server accepted it; then it sits idle in recv, which only the
    // drain deadline's cancel can end.
    fd_guard idle{connect_blocking(port)};
    REQUIRE(idle.fd >= 0);
    CHECK(blocking_round_trip(idle.fd, "idle") == "idle");

    REQUIRE(::kill(p.pid(), sig) == 0);  // this test's own child, by pid
    const auto signalled = clock_type::now();
    const auto status = p.wait_exit_or_kill(drain + 2s);
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - signalled);
    INFO("stderr after the signal:\n" << p.err() << "\nexit took " << took.count() << " ms");
    REQUIRE(status);
    REQUIRE(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
    CHECK_THAT(p.err(), Catch::Contains("stopping"));

    // The server closed both connections on its way out: each client now reads end-of-file.
    char byte;
    CHECK(::recv(idle.fd, &byte, 1, 0) == 0);
    CHECK(::recv(active.fd, &byte, 1, 0) == 0);
}
