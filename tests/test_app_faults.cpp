// coring-echo where things go wrong around it: signals at awkward moments, a port or a unix path
// that is not free, a receive pool too big for the machine, a worker whose parent was killed.
#include "child_process.hpp"
#include "redis_support.hpp"
#include "support.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <iterator>
#include <optional>
#include <fstream>
#include <netinet/in.h>
#include <optional>
#include <sstream>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

using namespace coring;
using namespace coring::testing;

namespace {

using clock_type = std::chrono::steady_clock;

std::vector<std::string> echo_args(backend_kind kind, std::vector<std::string> more) {
    std::vector<std::string> args{"--backend", std::string{to_string(kind)}, "--drain-timeout", "200"};
    args.insert(args.end(), more.begin(), more.end());
    return args;
}

// coring-echo on `kind` with `more` flags, started as a shell would start it.
child_process start_echo(backend_kind kind, std::vector<std::string> more) {
    return child_process{CORING_ECHO_BINARY, echo_args(kind, std::move(more))};
}

// One round trip of "ping" to 127.0.0.1:port with 5 s timeouts: whether it came back.
bool echoes(std::uint16_t port) {
    const fd_guard c{connect_blocking(port)};
    return c.fd >= 0 && blocking_round_trip(c.fd, "ping") == "ping";
}

// A path in /tmp unlinked on every way out of the test.
struct temp_path {
    std::string path;
    explicit temp_path(const std::string& name) : path{"/tmp/coring-faults-" + std::to_string(::getpid()) + "-" + name} {
        ::unlink(path.c_str());
    }
    ~temp_path() { ::unlink(path.c_str()); }
};

sockaddr_un unix_address(const std::string& path) {
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::snprintf(un.sun_path, sizeof un.sun_path, "%s", path.c_str());
    return un;
}

std::string file_content(const std::string& path) {
    std::ifstream f{path};
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

}  // namespace

TEST_CASE("a SIGTERM during coring-echo's start-up (before every core is up) still stops it cleanly", "[app][signal]") {
    const auto kind = GENERATE(backend_kind::uring, backend_kind::epoll);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    // Delays after main blocked the signal (its first line): the first ones land while it
    // parses flags and binds, then while cores are still being built (the lost-signal window, a
    // few hundred microseconds on epoll), the last ones once they run. test_shutdown.cpp does
    // the same at random moments, under load and in drain too.
    for (const int delay_us : {0, 0, 0, 0, 0, 200, 500, 1000, 2000, 5000, 10000, 20000}) {
        INFO("SIGTERM " << delay_us << " us after main blocked it");
        child_process p = start_echo(kind, {"--listen", "127.0.0.1:0", "--cores", "2"});
        REQUIRE(wait_stop_signals_blocked(p.pid(), clock_type::now() + 10s));
        std::this_thread::sleep_for(std::chrono::microseconds{delay_us});
        REQUIRE(::kill(p.pid(), SIGTERM) == 0);  // this test's own child, by pid
        CHECK(exited_within(p, 5s) == "exit 0");
    }
}

TEST_CASE("SIGHUP stops coring-echo gracefully like SIGTERM", "[app][signal]") {
    const auto kind = GENERATE(backend_kind::uring, backend_kind::epoll);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    child_process p = start_echo(kind, {"--listen", "127.0.0.1:0", "--cores", "2"});
    const std::uint16_t port = wait_listening(p);
    INFO("stderr:\n" << p.err());
    REQUIRE(port != 0);
    REQUIRE(::kill(p.pid(), SIGHUP) == 0);
    CHECK(exited_within(p, 3s) == "exit 0");
    CHECK_THAT(p.err(), Catch::Contains("Hangup: stopping"));
}

TEST_CASE("SIGUSR1 SIGUSR2 and SIGPIPE leave coring-echo running and echoing", "[app][signal]") {
    const auto kind = GENERATE(backend_kind::uring, backend_kind::epoll);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    child_process p = start_echo(kind, {"--listen", "127.0.0.1:0", "--cores", "2"});
    const std::uint16_t port = wait_listening(p);
    INFO("stderr:\n" << p.err());
    REQUIRE(port != 0);
    for (const int sig : {SIGUSR1, SIGUSR2, SIGPIPE}) REQUIRE(::kill(p.pid(), sig) == 0);
    std::this_thread::sleep_for(200ms);  // a default action would have ended it by now
    CHECK(echoes(port));
    CHECK(!p.wait_exit(clock_type::now()));  // still running
    REQUIRE(::kill(p.pid(), SIGTERM) == 0);
    CHECK(exited_within(p, 3s) == "exit 0");
}

TEST_CASE("coring-echo whose stderr reader went away stops on SIGTERM with status 0 (not killed by SIGPIPE)", "[app][signal]") {
    const auto kind = GENERATE(backend_kind::uring, backend_kind::epoll);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    // child_process reads stderr to the end, so this child gets a pipe of its own whose read end
    // the test closes once the server is up; its "stopping" line then meets a pipe with no reader.
    int err[2];
    REQUIRE(::pipe2(err, O_CLOEXEC) == 0);
    std::vector<std::string> args = echo_args(kind, {"--listen", "127.0.0.1:0", "--cores", "2"});
    args.insert(args.begin(), CORING_ECHO_BINARY);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::dup2(err[1], STDERR_FILENO);
        reset_signals_for_exec();
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    ::close(err[1]);
    fd_guard reader{err[0]};
    REQUIRE(pid > 0);
    int status = 0;
    pid_t reaped = 0;
    struct reap_guard {  // kills and reaps on a failed check: nothing outlives the test
        const pid_t& pid;
        pid_t& reaped;
        ~reap_guard() {
            if (reaped == pid) return;
            ::kill(pid, SIGKILL);
            while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {}
        }
    } guard{pid, reaped};

    const bool blocked = wait_stop_signals_blocked(pid, clock_type::now() + 10s);
    REQUIRE(blocked);
    std::this_thread::sleep_for(100ms);  // the cores are up and have logged
    ::close(std::exchange(reader.fd, -1));
    REQUIRE(::kill(pid, SIGTERM) == 0);
    for (const auto deadline = clock_type::now() + 3s; reaped != pid && clock_type::now() < deadline;) {
        reaped = ::waitpid(pid, &status, WNOHANG);
        if (reaped != pid) std::this_thread::sleep_for(10ms);
    }
    REQUIRE(reaped == pid);
    INFO("killed by signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0));
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("a second coring-echo on a port another one serves exits 2 instead of sharing it", "[app][bind]") {
    const auto kind = GENERATE(backend_kind::uring, backend_kind::epoll);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    child_process first = start_echo(kind, {"--listen", "127.0.0.1:0", "--cores", "2"});
    const std::uint16_t port = wait_listening(first);
    INFO("first server's stderr:\n" << first.err());
    REQUIRE(port != 0);
    const std::string where = "127.0.0.1:" + std::to_string(port);

    child_process second = start_echo(kind, {"--listen", where, "--cores", "2"});
    CHECK(exited_within(second, 5s) == "exit 2");
    CHECK_THAT(second.err(), Catch::Contains("coring-echo: bind " + where + ": Address already in use"));

    CHECK(echoes(port));  // the first one still has the port, all of it
    REQUIRE(::kill(first.pid(), SIGTERM) == 0);
    CHECK(exited_within(first, 3s) == "exit 0");
}

TEST_CASE("coring-echo --listen unix:PATH leaves a regular file or FIFO or symlink at PATH as it was", "[app][unix]") {
    const auto kind = GENERATE(backend_kind::uring, backend_kind::epoll);
    const std::string what = GENERATE(as<std::string>{}, "file", "fifo", "symlink");
    INFO("backend: " << to_string(kind) << ", at PATH: " << what);
    if (skip_without(kind)) return;
    temp_path at{"path"};
    temp_path target{"target"};  // the symlink's
    const std::string data = "precious data\n";
    if (what == "file") {
        std::ofstream{at.path} << data;
    } else if (what == "fifo") {
        REQUIRE(::mkfifo(at.path.c_str(), 0600) == 0);
    } else {
        std::ofstream{target.path} << data;
        REQUIRE(::symlink(target.path.c_str(), at.path.c_str()) == 0);
    }
    struct stat before{};
    REQUIRE(::lstat(at.path.c_str(), &before) == 0);

    child_process p = start_echo(kind, {"--listen", "unix:" + at.path});
    CHECK(exited_within(p, 5s) == "exit 2");
    CHECK_THAT(p.err(), Catch::Contains("bind unix:" + at.path + ": Address already in use"));

    struct stat after{};
    REQUIRE(::lstat(at.path.c_str(), &after) == 0);
    CHECK(after.st_ino == before.st_ino);
    CHECK((after.st_mode & S_IFMT) == (before.st_mode & S_IFMT));
    if (what == "file") CHECK(file_content(at.path) == data);
    if (what == "symlink") {
        char link[PATH_MAX];
        const ssize_t len = ::readlink(at.path.c_str(), link, sizeof link);
        CHECK(std::string(link, static_cast<std::size_t>(std::max<ssize_t>(len, 0))) == target.path);
        CHECK(file_content(target.path) == data);
    }
}

TEST_CASE("coring-echo --listen unix:PATH exits 2 at once when PATH's live listener has a full backlog", "[app][unix]") {
    const auto kind = GENERATE(backend_kind::uring, backend_kind::epoll);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    temp_path at{"sock"};
    fd_guard listener{::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
    const sockaddr_un un = unix_address(at.path);
    REQUIRE(::bind(listener.fd, reinterpret_cast<const sockaddr*>(&un), sizeof un) == 0);
    REQUIRE(::listen(listener.fd, 0) == 0);
    // Connect until the kernel refuses another into the queue: nobody ever accepts.
    std::vector<fd_guard> queued;
    bool full = false;
    for (int i = 0; i < 64 && !full; ++i) {
        fd_guard c{::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)};
        if (::connect(c.fd, reinterpret_cast<const sockaddr*>(&un), sizeof un) == 0) {
            queued.push_back(std::move(c));
        } else {
            INFO("connect: " << std::strerror(errno));
            REQUIRE(errno == EAGAIN);
            full = true;
        }
    }
    REQUIRE(full);

    child_process p = start_echo(kind, {"--listen", "unix:" + at.path});
    CHECK(exited_within(p, 2s) == "exit 2");
    CHECK_THAT(p.err(), Catch::Contains("bind unix:" + at.path + ": Address already in use"));
    struct stat st{};
    CHECK(::lstat(at.path.c_str(), &st) == 0);  // the live listener's socket file is still there
    CHECK(S_ISSOCK(st.st_mode));
}

TEST_CASE("coring-echo refuses at start-up receive buffers larger than this machine's memory", "[app][preflight]") {
    const auto kind = GENERATE(backend_kind::uring, backend_kind::epoll);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    unsigned long long mem_kib = 0;
    {
        std::ifstream f{"/proc/meminfo"};
        std::string key;
        f >> key >> mem_kib;
        if (key != "MemTotal:" || mem_kib == 0) {
            WARN("no MemTotal in /proc/meminfo: skipped");
            return;
        }
    }
    // 32 GiB a core; enough cores (at least 2) to be more than the machine has.
    const unsigned long long cores = std::max(2ull, mem_kib / (32ull << 20) + 1);
    child_process p = start_echo(kind, {"--listen", "127.0.0.1:0", "--cores", std::to_string(cores), "--buffers",
                                        "32768", "--buffer-size", "1048576"});
    CHECK(exited_within(p, 5s) == "exit 2");
    CHECK_THAT(p.err(), Catch::Contains("--buffers 32768 x --buffer-size 1048576 x " + std::to_string(cores) +
                                        " cores = " + std::to_string(cores * 32) + ".0 GiB of receive buffers"));
    CHECK_THAT(p.err(), Catch::Contains("more than this machine's"));
    CHECK(p.err().find("listening") == std::string::npos);
}

namespace {

// A process seen in /proc: its pid and its start time (field 22 of /proc/PID/stat), so a pid
// reused by another process later is not taken for it.
struct seen_process {
    pid_t pid;
    unsigned long long start;
};

// Field 22 (start time) of /proc/PID/stat, or 0 when the process is gone or a zombie.
unsigned long long live_start_time(pid_t pid) {
    std::ifstream f{"/proc/" + std::to_string(pid) + "/stat"};
    std::string stat;
    std::getline(f, stat);
    const auto paren = stat.rfind(')');  // the command name may hold spaces
    if (paren == std::string::npos) return 0;
    std::istringstream rest{stat.substr(paren + 2)};
    std::string field, state;
    rest >> state;  // field 3
    for (int i = 4; i < 22 && rest >> field;) ++i;
    unsigned long long start = 0;
    rest >> start;
    return state == "Z" ? 0 : start;
}

bool alive(const seen_process& p) { return live_start_time(p.pid) == p.start; }

std::vector<seen_process> children_of(pid_t parent) {
    std::vector<seen_process> kids;
    std::ifstream f{"/proc/" + std::to_string(parent) + "/task/" + std::to_string(parent) + "/children"};
    for (pid_t p; f >> p;)
        if (const auto start = live_start_time(p)) kids.push_back({p, start});
    return kids;
}

// A --workers 2 server's port and, into `workers`, its two workers once both are forked
// (worker 0 may announce before the last one is); the test fails without them.
std::uint16_t wait_two_workers(child_process& parent, std::vector<seen_process>& workers) {
    const std::uint16_t port = wait_listening(parent);
    INFO("stderr:\n" << parent.err());
    REQUIRE(port != 0);
    workers = children_of(parent.pid());
    for (int i = 0; i < 500 && workers.size() < 2; ++i) {
        std::this_thread::sleep_for(10ms);
        workers = children_of(parent.pid());
    }
    REQUIRE(workers.size() == 2);
    return port;
}

// The workers are the test's too (grandchildren): a failed check must not leave them holding
// the port, so they are killed by pid, and only while /proc shows them as the same.
struct kill_left {
    const std::vector<seen_process>& workers;
    ~kill_left() {
        for (const auto& w : workers)
            if (alive(w)) ::kill(w.pid, SIGKILL);
    }
};

}  // namespace

TEST_CASE("coring-echo --workers: the workers exit when their parent is SIGKILLed and the port is free", "[app][workers]") {
    const auto kind = GENERATE(backend_kind::uring, backend_kind::epoll);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    child_process p = start_echo(kind, {"--listen", "127.0.0.1:0", "--workers", "2", "--cores", "1"});
    std::vector<seen_process> workers;
    const kill_left cleanup{workers};
    const std::uint16_t port = wait_two_workers(p, workers);
    INFO("stderr:\n" << p.err());
    CHECK(echoes(port));

    REQUIRE(::kill(p.pid(), SIGKILL) == 0);
    const auto status = p.wait_exit_or_kill(5s);
    REQUIRE(status);
    REQUIRE(WIFSIGNALED(*status));
    const auto deadline = clock_type::now() + 5s;
    const auto any_alive = [&] { return std::any_of(workers.begin(), workers.end(), alive); };
    while (any_alive() && clock_type::now() < deadline) std::this_thread::sleep_for(10ms);
    for (const auto& w : workers) {
        INFO("worker pid " << w.pid);
        CHECK(!alive(w));
    }
    CHECK(port_free(port));
}

TEST_CASE("a --workers child killed by SIGKILL: the parent says so, stops the other, exits 137, frees the port", "[app][workers]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    const std::string app = GENERATE(as<std::string>{}, "coring-echo", "coring-pubsub");
    INFO("backend: " << to_string(kind) << ", " << app);
    if (skip_without(kind)) return;
    std::vector<std::string> args = echo_args(kind, {"--listen", "127.0.0.1:0", "--workers", "2", "--cores", "1"});
    std::optional<server> bus;  // coring-pubsub's workers are nodes of one bus: it needs a redis-server
    if (app == "coring-pubsub") {
        const auto redis = server_binary("redis-server");
        if (redis.empty()) return;
        bus = start_redis(redis);
        args.insert(args.end(), {"--bus", "redis://127.0.0.1:" + std::to_string(bus->port)});
    }
    child_process p{app == "coring-echo" ? CORING_ECHO_BINARY : CORING_PUBSUB_BINARY, args};
    std::vector<seen_process> workers;
    const kill_left cleanup{workers};
    const std::uint16_t port = wait_two_workers(p, workers);
    INFO("stderr:\n" << p.err());

    const seen_process& victim = workers[1];
    const seen_process& other = workers[0];
    REQUIRE(::kill(victim.pid, SIGKILL) == 0);  // a grandchild of this test, seen alive just now
    const std::string report = "(pid " + std::to_string(victim.pid) + ") killed by SIGKILL; stopping the others";
    CHECK(p.read_until(clock_type::now() + 1s, [&](const child_process& c) { return c.err().find(report) != std::string::npos; }));
    // The other worker stops as on SIGTERM: within its drain timeout (200 ms) and a margin.
    const auto deadline = clock_type::now() + 3s;
    while (alive(other) && clock_type::now() < deadline) std::this_thread::sleep_for(10ms);
    CHECK(!alive(other));
    CHECK(exited_within(p, 3s) == "exit 137");  // the worst status: 128 + SIGKILL, as a shell says it
    // The whole line: "coring-echo: worker K (pid P) killed by SIGKILL; stopping the others".
    const auto at = p.err().find(report);
    REQUIRE(at != std::string::npos);
    const auto line = p.err().rfind('\n', at) + 1;  // npos + 1 == 0: the first line
    const std::string head = p.err().substr(line, at - line);
    CHECK((head == app + ": worker 0 " || head == app + ": worker 1 "));
    CHECK(port_freed_within(port, std::chrono::milliseconds{3000}));
}

namespace {

// coring-echo with `more` flags under tests/no-uring, which runs it with io_uring_setup answered
// EPERM by a seccomp filter, as a container's default profile answers it: a real refusal, not
// CORING_DISABLE_URING. A missing helper fails here by name: ./dev's ASan build once built only
// a list of targets without it, and the server then seemed to print nothing.
child_process start_refused(std::vector<std::string> more) {
    INFO("the helper " << CORING_NO_URING_BINARY << " (tests/no-uring) must be built: ninja -C <build> tests/no-uring");
    REQUIRE(::access(CORING_NO_URING_BINARY, X_OK) == 0);
    more.insert(more.begin(), CORING_ECHO_BINARY);
    return child_process{CORING_NO_URING_BINARY, std::move(more)};
}

// The "io_uring refused" checks, on servers started while the kernel refuses io_uring (however
// it does): `fallback` was started with --backend auto, `strict` with --backend uring; `reason`
// is what the one line must say about why.
void check_refused(child_process& fallback, child_process& strict, const std::string& reason) {
    {
        const std::uint16_t port = wait_listening(fallback);
        INFO("coring-echo --backend auto said:\n" << fallback.err());
        if (const auto ended = port == 0 ? fallback.wait_exit(clock_type::now() + 100ms) : std::nullopt) {
            const int status = *ended;
            INFO("it exited: " << (WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status)) : "signal " + std::to_string(WTERMSIG(status)))
                               << (WIFEXITED(status) && WEXITSTATUS(status) == 127 ? " (127: a binary could not be run; see the line above)" : ""));
            FAIL("coring-echo --backend auto ended before it listened");
        }
        REQUIRE(port != 0);
        // One line says what happened and what it does instead; every core runs on epoll.
        CHECK_THAT(fallback.err(), Catch::Contains("io_uring unavailable: ") && Catch::Contains(reason + "; using epoll"));
        CHECK_THAT(fallback.err(), Catch::Contains("2 core(s), epoll"));
        CHECK(echoes(port));
        REQUIRE(::kill(fallback.pid(), SIGTERM) == 0);
        CHECK(exited_within(fallback, 3s) == "exit 0");
    }
    CHECK(exited_within(strict, 5s) == "exit 2");  // 127 would mean it never ran: see its stderr
    INFO("coring-echo --backend uring said:\n" << strict.err());
    CHECK_THAT(strict.err(), Catch::Contains("Operation not permitted"));
    CHECK(listening_port(strict.err()) == 0);  // it never served
}

// kernel.io_uring_disabled (Linux 6.6+) set to a value while this object lives, and its old
// value written back on every way out (a failed REQUIRE included): the sysctl is the whole
// machine's, so it is set for a second or two at most.
class io_uring_sysctl {
public:
    static constexpr const char* path = "/proc/sys/kernel/io_uring_disabled";

    // Whether the sysctl exists and this process may write it (root, /proc/sys not read-only).
    static bool writable() { return ::access(path, W_OK) == 0 && read().has_value(); }

    explicit io_uring_sysctl(int value) : old_{read()} {
        REQUIRE(old_);
        set_ = write(value);
        REQUIRE(set_);
    }
    io_uring_sysctl(const io_uring_sysctl&) = delete;
    io_uring_sysctl& operator=(const io_uring_sysctl&) = delete;
    ~io_uring_sysctl() { restore(); }

    void restore() noexcept {
        if (set_ && write(*old_)) set_ = false;
    }

private:
    static std::optional<int> read() {
        std::ifstream f{path};
        int v = 0;
        if (f >> v) return v;
        return std::nullopt;
    }
    static bool write(int value) noexcept {
        const int fd = ::open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0) return false;
        const std::string text = std::to_string(value) + "\n";
        const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
        ::close(fd);
        return ok;
    }

    std::optional<int> old_;
    bool set_ = false;
};

}  // namespace

TEST_CASE("io_uring refused by the kernel (seccomp): --backend auto serves on epoll and says why, uring exits 2", "[app][refused]") {
    child_process fallback = start_refused({"--backend", "auto", "--listen", "127.0.0.1:0", "--cores", "2", "--drain-timeout", "200"});
    child_process strict = start_refused({"--backend", "uring", "--listen", "127.0.0.1:0", "--cores", "2"});
    check_refused(fallback, strict, "Operation not permitted");
}

// Hidden ([.sysctl]): kernel.io_uring_disabled is the whole machine's, so this case is not in any
// default group; ./dev test runs it once, alone, after the normal build's [app] group.
TEST_CASE("io_uring refused by kernel.io_uring_disabled = 2: --backend auto serves on epoll and names the sysctl, uring exits 2", "[.sysctl]") {
    if (!io_uring_sysctl::writable()) {
        WARN(io_uring_sysctl::path << " is missing or read-only here: skipped");
        return;
    }
    std::optional<child_process> fallback, strict;
    {
        io_uring_sysctl disabled{2};
        // Both servers make their rings at start-up: once the first listens (every core is up by
        // then) and the second has exited, the sysctl goes back at once.
        fallback.emplace(CORING_ECHO_BINARY, std::vector<std::string>{"--backend", "auto", "--listen", "127.0.0.1:0", "--cores", "2", "--drain-timeout", "200"});
        strict.emplace(CORING_ECHO_BINARY, std::vector<std::string>{"--backend", "uring", "--listen", "127.0.0.1:0", "--cores", "2"});
        const auto deadline = clock_type::now() + 2s;
        fallback->read_until(deadline, [](const child_process& c) { return listening_port(c.err()) != 0; });
        (void)strict->wait_exit(deadline);
        disabled.restore();
    }
    check_refused(*fallback, *strict, "(kernel.io_uring_disabled = 2)");
}
