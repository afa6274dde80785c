// The coring-echo binary as users run it: flags, exit codes, messages, and stopping on signals.
#include "child_process.hpp"
#include "support.hpp"

#include <coring/frame_allocator.hpp>

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <limits>
#include <netinet/in.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <utility>
#include <thread>
#include <vector>

using namespace coring;
using namespace coring::testing;

namespace {

using clock_type = std::chrono::steady_clock;

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

}  // namespace

TEST_CASE("coring-echo --help prints usage and exits 0", "[app]") {
    child_process p{CORING_ECHO_BINARY, {"--help"}};
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
        {"--stats-every 0", "--stats-every"},
    }));
    INFO("coring-echo " << args);
    child_process p{CORING_ECHO_BINARY, split_words(args)};
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
    if (skip_without(kind)) return;
    const taken_port taken = take_loopback_port();
    const std::string& where = taken.where;

    child_process p{CORING_ECHO_BINARY,
                    {"--listen", where, "--backend", std::string{to_string(kind)}, "--drain-timeout", "500"}};
    const auto status = p.wait_exit_or_kill(quick_exit_limit);
    INFO("stderr:\n" << p.err());
    REQUIRE(status);
    REQUIRE(WIFEXITED(*status));  // an error exit, not a crash or a core dump
    CHECK(WEXITSTATUS(*status) == 2);
    CHECK_THAT(p.err(), Catch::Contains("bind " + where));
    CHECK_THAT(p.err(), Catch::Contains("Address already in use"));
}

TEST_CASE("coring-echo --stats-every logs each core's live gauges, and its ticker holds no core up at a stop",
          "[app][signal]") {
    const auto kind = GENERATE(backend_kind::uring, backend_kind::epoll);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    // A drain timeout far longer than the wait below: a ticker that kept the core running would
    // be killed there, not exit.
    child_process p{CORING_ECHO_BINARY, {"--listen", "127.0.0.1:0", "--backend", std::string{to_string(kind)},
                                         "--cores", "1", "--stats-every", "1", "--drain-timeout", "60000"}};
    const bool up = p.read_until(clock_type::now() + 10s, [](const child_process& e) { return listening_port(e.err()) != 0; });
    INFO("stderr:\n" << p.err());
    REQUIRE(up);
    fd_guard client{connect_blocking(listening_port(p.err()))};
    REQUIRE(client.fd >= 0);
    CHECK(blocking_round_trip(client.fd, "ping") == "ping");
    // The accept loop and the connection: two live tasks (the ticker is the runtime's, not counted).
    const std::string with_client = "coring-echo: stats core 0: tasks 2, in_flight ";
    CHECK(p.read_until(clock_type::now() + 10s, [&](const child_process& e) { return e.err().find(with_client) != std::string::npos; }));
    ::close(std::exchange(client.fd, -1));  // the server sees it go
    const auto seen = p.err().size();
    CHECK(p.read_until(clock_type::now() + 10s, [&](const child_process& e) {
        return e.err().find("coring-echo: stats core 0: tasks 1, in_flight ", seen) != std::string::npos;
    }));
    CHECK_THAT(p.err(), Catch::Contains(", buffers_in_use 0, pool_touched_kib "));

    REQUIRE(::kill(p.pid(), SIGTERM) == 0);  // this test's own child, by pid
    const auto status = p.wait_exit_or_kill(10s);
    REQUIRE(status);
    REQUIRE(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
}

TEST_CASE("coring-echo stops cleanly on SIGTERM and SIGINT, cancelling idle connections", "[app][signal]") {
    const auto kind = GENERATE(backend_kind::uring, backend_kind::epoll);
    const int sig = GENERATE(SIGTERM, SIGINT);
    INFO("backend: " << to_string(kind) << ", signal: " << strsignal(sig));
    if (skip_without(kind)) return;
    constexpr auto drain = 500ms;
    child_process p{CORING_ECHO_BINARY,
                    {"--listen", "127.0.0.1:0", "--backend", std::string{to_string(kind)}, "--drain-timeout",
                     std::to_string(drain.count())}};
    // The log line comes after the bind, so once it is here the port accepts connections.
    const bool up = p.read_until(clock_type::now() + 10s, [](const child_process& e) { return listening_port(e.err()) != 0; });
    INFO("stderr:\n" << p.err());
    REQUIRE(up);
    const std::uint16_t port = listening_port(p.err());

    fd_guard active{connect_blocking(port)};
    INFO("connect: " << (active.fd < 0 ? std::strerror(-active.fd) : "ok"));
    REQUIRE(active.fd >= 0);
    CHECK(blocking_round_trip(active.fd, "ping") == "ping");

    // One round trip proves the server accepted it; then it sits idle in recv, which only the
    // drain deadline's cancel can end.
    fd_guard idle{connect_blocking(port)};
    INFO("connect: " << (idle.fd < 0 ? std::strerror(-idle.fd) : "ok"));
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

TEST_CASE("a second SIGINT stops coring-echo at once, without waiting out the drain timeout", "[app][signal]") {
    const auto kind = GENERATE(backend_kind::uring, backend_kind::epoll);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    child_process p{CORING_ECHO_BINARY,
                    {"--listen", "127.0.0.1:0", "--cores", "2", "--backend", std::string{to_string(kind)},
                     "--drain-timeout", "60000"}};
    const bool up = p.read_until(clock_type::now() + 10s, [](const child_process& e) { return listening_port(e.err()) != 0; });
    INFO("stderr:\n" << p.err());
    REQUIRE(up);
    fd_guard idle{connect_blocking(listening_port(p.err()))};
    INFO("connect: " << (idle.fd < 0 ? std::strerror(-idle.fd) : "ok"));
    REQUIRE(idle.fd >= 0);
    CHECK(blocking_round_trip(idle.fd, "idle") == "idle");  // accepted, now idle for 60 s of drain

    REQUIRE(::kill(p.pid(), SIGINT) == 0);
    const bool stopping = p.read_until(clock_type::now() + 5s, [](const child_process& e) {
        return e.err().find("stopping") != std::string::npos;
    });
    REQUIRE(stopping);
    const auto second = clock_type::now();
    REQUIRE(::kill(p.pid(), SIGINT) == 0);
    const auto status = p.wait_exit_or_kill(3s);
    INFO("stderr:\n" << p.err());
    REQUIRE(status);
    REQUIRE(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
    CHECK(clock_type::now() - second < 3s);
    char byte;
    CHECK(::recv(idle.fd, &byte, 1, 0) == 0);
}

TEST_CASE("coring-echo on a unix socket: several cores, a stale file replaced, removed on exit", "[app][unix]") {
    const std::string path = "/tmp/coring-echo-test-" + std::to_string(::getpid()) + ".sock";
    {  // what a crashed server leaves: a socket file nobody accepts on
        fd_guard stale{::socket(AF_UNIX, SOCK_STREAM, 0)};
        sockaddr_un un{};
        un.sun_family = AF_UNIX;
        std::snprintf(un.sun_path, sizeof un.sun_path, "%s", path.c_str());
        REQUIRE(::bind(stale.fd, reinterpret_cast<sockaddr*>(&un), sizeof un) == 0);
    }
    child_process p{CORING_ECHO_BINARY, {"--listen", "unix:" + path, "--cores", "2", "--drain-timeout", "200"}};
    const bool up = p.read_until(clock_type::now() + 10s, [](const child_process& e) {
        return e.err().find("listening on unix:") != std::string::npos;
    });
    INFO("stderr:\n" << p.err());
    REQUIRE(up);
    fd_guard conn{::socket(AF_UNIX, SOCK_STREAM, 0)};
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::snprintf(un.sun_path, sizeof un.sun_path, "%s", path.c_str());
    REQUIRE(::connect(conn.fd, reinterpret_cast<sockaddr*>(&un), sizeof un) == 0);
    const timeval limit{5, 0};
    ::setsockopt(conn.fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    CHECK(blocking_round_trip(conn.fd, "over unix") == "over unix");
    REQUIRE(::kill(p.pid(), SIGTERM) == 0);
    const auto status = p.wait_exit_or_kill(3s);
    REQUIRE(status);
    REQUIRE(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
    CHECK(::access(path.c_str(), F_OK) != 0);  // the server removed its socket file
    ::unlink(path.c_str());
}

TEST_CASE("coring-echo on a unix socket: a server started while the old one drains keeps its file", "[app][unix]") {
    const std::string path = "/tmp/coring-echo-succ-" + std::to_string(::getpid()) + ".sock";
    ::unlink(path.c_str());
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::snprintf(un.sun_path, sizeof un.sun_path, "%s", path.c_str());
    const auto round_trip = [&](const char* text) {
        fd_guard conn{::socket(AF_UNIX, SOCK_STREAM, 0)};
        if (::connect(conn.fd, reinterpret_cast<sockaddr*>(&un), sizeof un) != 0) return std::string{"connect: "} + std::strerror(errno);
        const timeval limit{5, 0};
        ::setsockopt(conn.fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
        return blocking_round_trip(conn.fd, text);
    };
    const auto listening = [](const child_process& e) { return e.err().find("listening on unix:") != std::string::npos; };
    child_process old{CORING_ECHO_BINARY, {"--listen", "unix:" + path, "--cores", "1", "--drain-timeout", "1500"}};
    REQUIRE(old.read_until(clock_type::now() + 10s, listening));
    // A client that stays connected keeps the old server draining after SIGTERM.
    fd_guard held{::socket(AF_UNIX, SOCK_STREAM, 0)};
    REQUIRE(::connect(held.fd, reinterpret_cast<sockaddr*>(&un), sizeof un) == 0);
    REQUIRE(::kill(old.pid(), SIGTERM) == 0);
    bool closed = false;  // the old server's listener is closed (connects refused) once its stop began
    for (int i = 0; i < 500 && !closed; ++i) {
        fd_guard probe{::socket(AF_UNIX, SOCK_STREAM, 0)};
        closed = ::connect(probe.fd, reinterpret_cast<sockaddr*>(&un), sizeof un) != 0 && (errno == ECONNREFUSED || errno == ENOENT);
        if (!closed) std::this_thread::sleep_for(10ms);
    }
    REQUIRE(closed);
    child_process successor{CORING_ECHO_BINARY, {"--listen", "unix:" + path, "--cores", "1"}};
    const bool up = successor.read_until(clock_type::now() + 10s, listening);
    INFO("successor's stderr:\n" << successor.err());
    REQUIRE(up);
    const auto status = old.wait_exit_or_kill(5s);  // the drain ends: the old server's files go
    REQUIRE(status);
    CHECK(round_trip("to the successor") == "to the successor");  // its file is still there
    REQUIRE(::kill(successor.pid(), SIGTERM) == 0);
    CHECK(successor.wait_exit_or_kill(5s));
    CHECK(::access(path.c_str(), F_OK) != 0);  // and it removed its own at the end
    ::unlink(path.c_str());
}

namespace {

// Opens n connections to port, each proven accepted and served by one round trip, then idle.
std::vector<fd_guard> open_idle(std::uint16_t port, int n) {
    std::vector<fd_guard> conns;
    conns.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
        fd_guard c{connect_blocking(port)};
        if (c.fd < 0) FAIL("connection " << i << ": connect: " << std::strerror(-c.fd));
        const std::string msg = "hello " + std::to_string(i);
        const std::string got = blocking_round_trip(c.fd, msg);
        if (got != msg) FAIL("connection " << i << ": " << got);
        conns.push_back(std::move(c));
    }
    return conns;
}

}  // namespace

TEST_CASE("10,000 idle connections on coring-echo: user-space memory per connection", "[app][memory]") {
    const auto kind = GENERATE(backend_kind::uring, backend_kind::epoll);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    child_process p{CORING_ECHO_BINARY,
                    {"--listen", "127.0.0.1:0", "--cores", "1", "--backend", std::string{to_string(kind)},
                     "--drain-timeout", "200"}};
    const bool up = p.read_until(clock_type::now() + 10s, [](const child_process& e) { return listening_port(e.err()) != 0; });
    INFO("stderr:\n" << p.err());
    REQUIRE(up);
    const std::uint16_t port = listening_port(p.err());

    // Warm up first, so that what is measured is the connections and nothing else: enough
    // round trips to touch every buffer of the receive pool (1024 by default), fill the frame
    // caches, grow the fd tables.
    auto warm = open_idle(port, 500);
    for (int round = 0; round < 4; ++round)
        for (auto& c : warm) REQUIRE(blocking_round_trip(c.fd, "warm") == "warm");
    const std::int64_t before = anon_rss_bytes(p.pid());
    REQUIRE(before > 0);

    constexpr int n = 10'000;
    const auto idle = open_idle(port, n);
    const std::int64_t after = anon_rss_bytes(p.pid());
    const double per_connection = static_cast<double>(after - before) / n;
    std::printf("measured: coring-echo %s: %.0f bytes of user memory per idle connection "
                "(RssAnon %lld -> %lld KiB over %d connections)\n",
                std::string{to_string(kind)}.c_str(), per_connection, static_cast<long long>(before / 1024),
                static_cast<long long>(after / 1024), n);
    // The targets (docs/ARCHITECTURE.md, "Memory per idle connection"): one 240-byte block
    // measures 241 B on io_uring, and epoll's per-fd table adds ~55. With injected faults the
    // server also keeps what the injector holds (317 B on epoll under seed 2), so only a loose
    // guard there: a receive buffer per connection would be 16 KiB. Not under ASan: its
    // redzones around every heap block (frames come from the heap there) make the figure
    // ASan's, not ours.
    const double limit = faults_on() ? 2048 : kind == backend_kind::uring ? 256 : 320;
    if (detail::frame_cache_enabled()) CHECK(per_connection <= limit);

    // Still all served: every one of them answers.
    for (std::size_t i = 0; i < idle.size(); i += 997) CHECK(blocking_round_trip(idle[i].fd, "still") == "still");
    REQUIRE(::kill(p.pid(), SIGTERM) == 0);
    const auto status = p.wait_exit_or_kill(10s);
    REQUIRE(status);
    CHECK(WIFEXITED(*status));
}

namespace {

std::vector<pid_t> children_of(pid_t parent) {
    std::vector<pid_t> kids;
    std::ifstream f{"/proc/" + std::to_string(parent) + "/task/" + std::to_string(parent) + "/children"};
    for (pid_t p; f >> p;) kids.push_back(p);
    return kids;
}

// Sockets in an io_uring's file table (direct descriptors: no fd of their own), from the ring's
// fdinfo, which lists each occupied slot as "N: socket:[inode]".
std::size_t direct_sockets(const std::string& fdinfo) {
    std::ifstream f{fdinfo};
    std::size_t n = 0;
    for (std::string line; std::getline(f, line);)
        if (line.find(": socket:") != std::string::npos) ++n;
    return n;
}

// The sockets a process holds: fds that are sockets, plus those in its io_uring file tables.
std::size_t socket_fds(pid_t pid) {
    std::size_t n = 0;
    for (int fd = 0; fd < 65536; ++fd) {
        char target[64];
        const std::string link = "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd);
        const ssize_t len = ::readlink(link.c_str(), target, sizeof target - 1);
        const std::string_view name(target, len > 0 ? static_cast<std::size_t>(len) : 0);
        if (name.starts_with("socket:")) ++n;
        if (name == "anon_inode:[io_uring]") n += direct_sockets("/proc/" + std::to_string(pid) + "/fdinfo/" + std::to_string(fd));
        if (len < 0 && errno == ENOENT && fd > 256) break;  // fds are dense at the low end here
    }
    return n;
}

}  // namespace

TEST_CASE("coring-echo --workers 3: three processes share one port, each serves, all stop on SIGTERM", "[app][workers]") {
    const auto kind = GENERATE(backend_kind::uring, backend_kind::epoll);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    child_process p{CORING_ECHO_BINARY, {"--listen", "127.0.0.1:0", "--workers", "3", "--cores", "1", "--backend",
                                         std::string{to_string(kind)}, "--drain-timeout", "200"}};
    const bool up = p.read_until(clock_type::now() + 10s, [](const child_process& e) { return listening_port(e.err()) != 0; });
    INFO("stderr:\n" << p.err());
    REQUIRE(up);
    CHECK_THAT(p.err(), Catch::Contains("3 workers, each with fd limit"));
    const std::uint16_t port = listening_port(p.err());
    auto workers = children_of(p.pid());  // worker 0 may announce before the last one is forked
    for (int i = 0; i < 500 && workers.size() < 3; ++i) {
        std::this_thread::sleep_for(10ms);
        workers = children_of(p.pid());
    }
    REQUIRE(workers.size() == 3);
    std::vector<std::size_t> before;
    for (pid_t w : workers) before.push_back(socket_fds(w));

    // The kernel spreads connections over the three listeners: each worker gets some.
    const auto conns = open_idle(port, 300);
    std::size_t served = 0;
    for (std::size_t k = 0; k < workers.size(); ++k) {
        const std::size_t now = socket_fds(workers[k]);
        INFO("worker " << k << " (pid " << workers[k] << "): " << before[k] << " -> " << now << " sockets");
        CHECK(now > before[k]);
        served += now - before[k];
    }
    // One listener per worker may have opened after the first count (only worker 0 announces).
    CHECK(served >= conns.size());
    CHECK(served <= conns.size() + workers.size());

    REQUIRE(::kill(p.pid(), SIGTERM) == 0);  // to the parent only: it passes the signal on
    const auto status = p.wait_exit_or_kill(10s);
    REQUIRE(status);
    REQUIRE(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
    for (pid_t w : workers) CHECK(::kill(w, 0) != 0);  // every worker is gone (reaped by the parent)
    char byte;
    CHECK(::recv(conns.front().fd, &byte, 1, 0) == 0);
}

TEST_CASE("coring-load refuses, before it starts, a run this machine or process cannot hold", "[app][preflight]") {
    struct refused {
        std::vector<std::string> args;
        std::string reason;
    };
    const auto c = GENERATE(refused{{"--idle", "5000000"}, "fs.file-max"},
                            refused{{"--idle", "50000", "--procs", "1"}, "use --procs"});
    std::vector<std::string> args = c.args;
    args.insert(args.end(), {"--target", "127.0.0.1:9", "--quiet"});
    child_process p{CORING_LOAD_BINARY, args};
    const auto status = p.wait_exit_or_kill(quick_exit_limit);
    INFO("stderr:\n" << p.err());
    REQUIRE(status);
    REQUIRE(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 2);
    CHECK_THAT(p.err(), Catch::Contains(c.reason));
    CHECK(count_lines(p.err()) == 1);
}

TEST_CASE("coring-load stopped by a signal reports the part of the window it measured, without errors",
          "[app][signal]") {
    struct workload {
        const char* server;
        std::vector<std::string> load_args;
    };
    const auto w = GENERATE(workload{CORING_ECHO_BINARY, {"--conns", "4"}},
                            workload{CORING_PUBSUB_BINARY, {"--protocol", "pubsub", "--subscribers", "20"}});
    // Ctrl-C and a hang-up to one process; a TERM to the parent of two, which passes it on.
    const auto [sig, procs] = GENERATE(std::pair{SIGINT, "1"}, std::pair{SIGHUP, "1"}, std::pair{SIGTERM, "2"});
    INFO(w.server << ", signal: " << strsignal(sig) << ", procs " << procs);
    child_process server{w.server, {"--listen", "127.0.0.1:0", "--cores", "1"}};
    const bool up = server.read_until(clock_type::now() + 10s, [](const child_process& e) { return listening_port(e.err()) != 0; });
    INFO("server stderr:\n" << server.err());
    REQUIRE(up);
    std::vector<std::string> args = w.load_args;
    args.insert(args.end(), {"--target", "127.0.0.1:" + std::to_string(listening_port(server.err())), "--duration", "60",
                             "--warmup", "0", "--procs", procs});
    child_process load{CORING_LOAD_BINARY, args};
    // The progress line of the second second: the window is open and has run a while.
    const bool running = load.read_until(clock_type::now() + 15s, [](const child_process& l) {
        return l.err().find(" 2s ") != std::string::npos;
    });
    INFO("load stderr:\n" << load.err() << "\nload stdout:\n" << load.out());
    REQUIRE(running);
    REQUIRE(::kill(load.pid(), sig) == 0);  // this test's own child, by pid: with --procs 2 it relays
    const auto status = load.wait_exit_or_kill(5s);
    REQUIRE(status);
    REQUIRE(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
    CHECK_THAT(load.out(), Catch::Contains(" s measured (cut short by a stop signal)") && Catch::Contains("errors 0 "));
    if (w.server == std::string_view{CORING_PUBSUB_BINARY}) CHECK_THAT(load.out(), Catch::Contains("lost 0, duplicated 0, reordered 0"));
    // The rates are over the seconds measured (about 2-3 here), not over --duration's 60.
    const auto at = load.out().find(" s measured");
    REQUIRE(at != std::string::npos);
    const auto from = load.out().rfind(' ', at - 1);
    const double measured = std::strtod(load.out().c_str() + from + 1, nullptr);
    CHECK(measured > 1.5);
    CHECK(measured < 10);
}
