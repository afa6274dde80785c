// Several cores at once: coring::run's threads and pinning, SO_REUSEPORT spreading connections
// over cores, and a two-core coring-echo stopping on SIGTERM while 500 clients are mid-transfer.
// Every case on both backends; each is bounded in time.
//
// Checks (REQUIRE/CHECK) run on the test's own thread only: Catch is not thread-safe, so the
// core threads record what they saw in atomics or under a mutex and the test checks it after
// run() has returned.
#include "support.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <netinet/in.h>
#include <optional>
#include <poll.h>
#include <sched.h>
#include <set>
#include <string>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

using namespace coring;
using namespace coring::testing;

namespace {

using clock_type = std::chrono::steady_clock;

std::vector<int> allowed_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    std::vector<int> cpus;
    if (::sched_getaffinity(0, sizeof set, &set) == 0)
        for (int c = 0; c < CPU_SETSIZE; ++c)
            if (CPU_ISSET(c, &set)) cpus.push_back(c);
    return cpus;
}

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

// Holds a free loopback port: a socket bound with SO_REUSEADDR and SO_REUSEPORT but never
// listening, so it takes no connections, yet no other user can take the port while listeners
// with SO_REUSEPORT (coring's, in this process or in a child of the same user) join it.
struct reserved_port {
    fd_guard holder;
    std::uint16_t port = 0;
};

reserved_port reserve_loopback_port() {
    reserved_port r;
    r.holder.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(r.holder.fd >= 0);
    const int on = 1;
    REQUIRE(::setsockopt(r.holder.fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) == 0);
    REQUIRE(::setsockopt(r.holder.fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) == 0);
    const address any_port = address::ipv4_loopback(0);
    REQUIRE(::bind(r.holder.fd, any_port.data(), any_port.size()) == 0);
    sockaddr_in bound{};
    socklen_t len = sizeof bound;
    REQUIRE(::getsockname(r.holder.fd, reinterpret_cast<sockaddr*>(&bound), &len) == 0);
    r.port = ntohs(bound.sin_port);
    REQUIRE(r.port != 0);
    return r;
}

}  // namespace

// ---- 1. threads and CPUs -----------------------------------------------------------------------

namespace {

struct placement {
    unsigned core_id;
    unsigned current_id;  // core::current().id(), which must agree
    std::thread::id thread;
    int cpu;
};

struct placement_log {
    std::mutex lock;
    std::vector<placement> seen;
};

task<> record_placement(unsigned id, placement_log* log) {
    const placement p{id, core::current().id(), std::this_thread::get_id(), ::sched_getcpu()};
    std::lock_guard guard{log->lock};
    log->seen.push_back(p);
    co_return;
}

}  // namespace

TEST_CASE("run with 1, 2 and 4 cores: each core's fn runs on its own thread and CPU", "[cores]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    const unsigned cores = GENERATE(1u, 2u, 4u);
    const std::vector<int> cpus = allowed_cpus();
    REQUIRE_FALSE(cpus.empty());
    INFO("backend: " << to_string(kind) << ", cores: " << cores << ", allowed CPUs: " << cpus.size());

    placement_log log;
    const int rc = run({.cores = cores, .backend = kind, .drain_timeout = 1000ms, .quiet = true},
                       [&log](core& c) { return record_placement(c.id(), &log); });
    CHECK(rc == 0);

    REQUIRE(log.seen.size() == cores);
    std::sort(log.seen.begin(), log.seen.end(), [](const placement& a, const placement& b) { return a.core_id < b.core_id; });
    std::set<std::thread::id> threads;
    std::set<int> distinct_cpus;
    for (unsigned k = 0; k < cores; ++k) {
        const placement& p = log.seen[k];
        INFO("core " << k << " ran on CPU " << p.cpu);
        CHECK(p.core_id == k);
        CHECK(p.current_id == k);
        CHECK(p.thread != std::this_thread::get_id());  // never on the caller's thread
        threads.insert(p.thread);
        CHECK(std::find(cpus.begin(), cpus.end(), p.cpu) != cpus.end());  // pinned inside the mask
        // With a CPU each, core k sits on the k-th allowed CPU (ARCHITECTURE.md).
        if (cores <= cpus.size()) CHECK(p.cpu == cpus[k]);
        distinct_cpus.insert(p.cpu);
    }
    CHECK(threads.size() == cores);
    if (cores <= cpus.size()) CHECK(distinct_cpus.size() == cores);
}

// ---- 2. SO_REUSEPORT over two cores ------------------------------------------------------------

namespace {

constexpr int spread_connections = 10'000;
constexpr int spread_batch = 500;  // client and server fds stay far below RLIMIT_NOFILE (20,000)
constexpr auto spread_limit = 60s;

// Shared by both core threads; only atomics are written after the cores start.
struct spread_state {
    address where;
    std::atomic<int> listening{0};
    std::array<std::atomic<int>, 2> accepted{};
    std::atomic<int> accept_errors{0};
    std::atomic<int> connected{0};
    std::atomic<int> connect_failed{0};
    std::atomic<int> first_connect_errno{0};
    std::atomic<bool> done{false};       // the client is finished: every core stops
    std::atomic<bool> timed_out{false};  // the client gave up at spread_limit
};

task<> count_accepts(tcp_listener listener, std::atomic<int>* accepted, std::atomic<int>* errors) {
    for (;;) {
        auto conn = co_await listener.accept();
        if (!conn) {
            if (conn.error() == std::errc::operation_canceled) break;  // the core is stopping
            errors->fetch_add(1);
            const auto paused = co_await sleep_for(1ms);  // EMFILE and friends: do not spin
            if (!paused) break;
            continue;
        }
        accepted->fetch_add(1, std::memory_order_relaxed);
        co_await conn->close();
    }
    co_await listener.close();
}

// Another thread sets `done`: nothing on this core can await that, so poll it every 10 ms.
task<> stop_when_done(spread_state* s) {
    for (;;) {
        if (s->done.load()) break;
        const auto slept = co_await sleep_for(10ms);
        if (!slept) co_return;  // cancelled: the core is stopping already
    }
    core::current().request_stop();  // the accept ends with ECANCELED, so this core's run() returns
}

task<> connect_then_close(address where, spread_state* s) {
    auto conn = co_await tcp_stream::connect(where);
    if (!conn) {
        int none = 0;
        s->first_connect_errno.compare_exchange_strong(none, conn.error().value());
        s->connect_failed.fetch_add(1);
        co_return;
    }
    s->connected.fetch_add(1);
    co_await conn->close();
}

int total_accepted(const spread_state& s) { return s.accepted[0].load() + s.accepted[1].load(); }

// Runs on core 0: waits for both listeners, opens and closes every connection in batches, waits
// until the listeners have accepted them all, then tells every core to stop.
task<> open_connections(spread_state* s) {
    const auto deadline = clock_type::now() + spread_limit;
    while (s->listening.load() < 2 && clock_type::now() < deadline) {
        const auto slept = co_await sleep_for(1ms);  // core 1 binds on its own thread
        if (!slept) break;
    }
    for (int opened = 0; opened < spread_connections && clock_type::now() < deadline; opened += spread_batch) {
        task_group batch;
        for (int i = 0; i < spread_batch; ++i) batch.spawn(connect_then_close(s->where, s));
        co_await batch.join();
    }
    while (total_accepted(*s) < s->connected.load() && clock_type::now() < deadline) {
        const auto slept = co_await sleep_for(1ms);  // the other core's count: poll it
        if (!slept) break;
    }
    if (clock_type::now() >= deadline) s->timed_out = true;
    s->done = true;
}

task<> spread_core_main(spread_state* s) {
    core& here = core::current();
    auto listener = tcp_listener::bind(s->where, {.reuse_port = true});
    if (!listener)  // run() prints this, stops every core and returns 2
        throw std::system_error(listener.error(), "bind " + s->where.to_string());
    here.spawn(count_accepts(std::move(*listener), &s->accepted[here.id()], &s->accept_errors));
    here.spawn(stop_when_done(s));
    s->listening.fetch_add(1);
    if (here.id() == 0) here.spawn(open_connections(s));
    co_return;
}

}  // namespace

TEST_CASE("SO_REUSEPORT spreads 10,000 connections over 2 cores", "[cores][reuseport]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    const reserved_port port = reserve_loopback_port();
    spread_state s;
    s.where = address::ipv4_loopback(port.port);
    const auto started = clock_type::now();
    const int rc = run({.cores = 2, .backend = kind, .drain_timeout = 1000ms, .quiet = true},
                       [&s](core&) { return spread_core_main(&s); });
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - started);
    // run() has joined the core threads: plain loads from here on.
    const int on_core0 = s.accepted[0].load(), on_core1 = s.accepted[1].load();
    const int connected = s.connected.load(), connect_failed = s.connect_failed.load();
    INFO("port " << port.port << "; accepted by core 0: " << on_core0 << ", by core 1: " << on_core1
                 << "; connect failures: " << connect_failed << " (first: " << std::strerror(s.first_connect_errno.load())
                 << "); accept errors: " << s.accept_errors.load() << "; took " << took.count() << " ms");
    CHECK(rc == 0);
    CHECK_FALSE(s.timed_out.load());
    CHECK(connect_failed == 0);
    CHECK(connected == spread_connections);
    CHECK(on_core0 > 0);
    CHECK(on_core1 > 0);
    CHECK(on_core0 + on_core1 == spread_connections);
}

// ---- 3. a two-core coring-echo stops on SIGTERM under load -------------------------------------

namespace {

// A child process with stderr on a pipe; stdin and stdout are /dev/null. Every wait takes a
// deadline, and the destructor SIGKILLs and reaps the child if a failed check left it running.
// (A trimmed copy of test_echo_app.cpp's echo_process; worth sharing through support.hpp.)
class child_process {
public:
    explicit child_process(std::vector<std::string> args) {
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);  // built before fork: the child only dups, resets and execs
        int err[2];
        if (::pipe2(err, O_CLOEXEC) != 0) FAIL("pipe: " << std::strerror(errno));
        pid_ = ::fork();
        if (pid_ == 0) {
            const int null = ::open("/dev/null", O_RDWR);
            if (null >= 0) {
                ::dup2(null, STDIN_FILENO);
                ::dup2(null, STDOUT_FILENO);
            }
            ::dup2(err[1], STDERR_FILENO);  // dup2 clears close-on-exec on the copy
            // The mask survives exec: the server must get SIGTERM as a shell would deliver it.
            sigset_t none;
            sigemptyset(&none);
            ::sigprocmask(SIG_SETMASK, &none, nullptr);
            ::signal(SIGINT, SIG_DFL);
            ::signal(SIGTERM, SIG_DFL);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        ::close(err[1]);
        err_fd_ = err[0];
        if (pid_ < 0) FAIL("fork: " << std::strerror(errno));
    }
    child_process(const child_process&) = delete;
    child_process& operator=(const child_process&) = delete;
    ~child_process() {
        if (pid_ > 0 && !status_) {
            ::kill(pid_, SIGKILL);  // only the child this object started
            int status = 0;
            while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {}
        }
        if (err_fd_ >= 0) ::close(err_fd_);
    }

    pid_t pid() const noexcept { return pid_; }
    const std::string& err() const noexcept { return err_; }

    // Reads stderr until done(err()) holds, the pipe ends, or the deadline passes.
    template <class Pred>
    bool read_until(clock_type::time_point deadline, Pred done) {
        while (!done(err_)) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
            if (err_fd_ < 0 || left.count() <= 0) return false;
            read_some(static_cast<int>(left.count()));
        }
        return true;
    }

    // The wait status once the child exited; past the deadline it is SIGKILLed and reaped, so
    // nothing outlives the test, and the answer is nothing.
    std::optional<int> wait_exit_or_kill(clock_type::time_point deadline) {
        while (!status_) {
            int status = 0;
            const pid_t w = ::waitpid(pid_, &status, WNOHANG);
            if (w == pid_) {
                status_ = status;
                break;
            }
            if ((w < 0 && errno != EINTR) || clock_type::now() >= deadline) {
                ::kill(pid_, SIGKILL);
                while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {}
                status_ = status;
                return std::nullopt;
            }
            read_some(10);  // 10 ms steps (a plain sleep once the pipe has ended)
        }
        while (err_fd_ >= 0) read_some(100);  // the last lines
        return status_;
    }

private:
    void read_some(int timeout_ms) {
        if (err_fd_ < 0) {
            ::poll(nullptr, 0, timeout_ms);
            return;
        }
        pollfd p{err_fd_, POLLIN, 0};
        if (::poll(&p, 1, timeout_ms) <= 0) return;
        char buf[4096];
        const ssize_t got = ::read(err_fd_, buf, sizeof buf);
        if (got > 0) {
            err_.append(buf, static_cast<std::size_t>(got));
        } else if (got == 0 || errno != EINTR) {
            ::close(err_fd_);
            err_fd_ = -1;
        }
    }

    pid_t pid_ = -1;
    int err_fd_ = -1;
    std::string err_;
    std::optional<int> status_;
};

// The port in the server's "listening on 127.0.0.1:PORT" line; 0 until that line is complete.
std::uint16_t listening_port(const std::string& err) {
    static constexpr std::string_view marker = "listening on 127.0.0.1:";
    const auto at = err.find(marker);
    if (at == std::string::npos) return 0;
    const auto end = err.find('\n', at);
    if (end == std::string::npos) return 0;
    unsigned port = 0;
    for (auto i = at + marker.size(); i < end; ++i) {
        if (err[i] < '0' || err[i] > '9') return 0;
        port = port * 10 + static_cast<unsigned>(err[i] - '0');
    }
    return port < 65536 ? static_cast<std::uint16_t>(port) : 0;
}

constexpr int load_clients = 500;
constexpr std::size_t max_message = 4096;  // well inside loopback buffers: write-then-read cannot deadlock
constexpr auto traffic_before_signal = 500ms;
constexpr auto drain = 1000ms;

// Byte i of message m on connection c: every connection and message differs, so bytes echoed on
// the wrong connection, out of order or from a stale buffer show up as a mismatch.
std::byte pattern_byte(int c, int m, std::size_t i) {
    std::uint32_t x = static_cast<std::uint32_t>(c) * 2654435761u ^ static_cast<std::uint32_t>(m) * 40503u ^
                      static_cast<std::uint32_t>(i) * 2246822519u;
    x ^= x >> 15;
    return std::byte(x * 2654435761u >> 24);
}

struct load_tally {
    int connect_failed = 0;
    int verified = 0;           // messages echoed completely and correctly
    int corrupt = 0;            // connections that received a wrong byte
    int closed = 0;             // connections the server ended with EOF
    int reset = 0;              // ... or with ECONNRESET / EPIPE
    int unexpected_errors = 0;  // anything else
    std::string first_unexpected;
    int ended = 0;
};

void end_with(load_tally* t, std::error_code ec) {
    if (ec == std::errc::connection_reset || ec == std::errc::broken_pipe) {
        ++t->reset;
    } else {
        if (t->unexpected_errors++ == 0) t->first_unexpected = ec.message();
    }
}

// Sends a message, reads its echo back and compares every byte, until the server ends the
// connection. An end mid-message is fine; a wrong byte never is.
task<> stream_messages(tcp_stream* conn, int id, load_tally* t) {
    std::vector<std::byte> message;
    std::vector<std::byte> buf(max_message);
    for (int m = 0;; ++m) {
        const std::size_t size = 1 + (static_cast<std::size_t>(id) * 131 + static_cast<std::size_t>(m) * 977) % max_message;
        message.resize(size);
        for (std::size_t i = 0; i < size; ++i) message[i] = pattern_byte(id, m, i);
        const auto sent = co_await conn->write_all(message);
        if (!sent) {
            end_with(t, sent.error());
            co_return;
        }
        std::size_t got = 0;
        while (got < size) {
            const auto n = co_await conn->recv(std::span(buf).first(size - got));
            if (!n) {
                end_with(t, n.error());
                co_return;
            }
            if (*n == 0) {
                ++t->closed;
                co_return;
            }
            if (std::memcmp(buf.data(), message.data() + got, *n) != 0) {
                ++t->corrupt;
                co_return;
            }
            got += *n;
        }
        ++t->verified;
    }
}

task<> client(tcp_stream* conn, int id, load_tally* t) {
    co_await stream_messages(conn, id, t);
    ++t->ended;
}

task<> connect_into(address server, tcp_stream* out, load_tally* t) {
    auto conn = co_await tcp_stream::connect(server);
    if (!conn) {
        ++t->connect_failed;
        co_return;
    }
    *out = std::move(*conn);
}

// Connects every client, lets them stream for a while, sends SIGTERM to the server and waits
// until the server has ended every connection.
task<load_tally> stream_through_shutdown(address server, pid_t server_pid, clock_type::time_point* signalled) {
    load_tally t;
    std::vector<tcp_stream> conns(load_clients);
    {
        task_group connecting;
        for (int i = 0; i < load_clients; ++i) connecting.spawn(connect_into(server, &conns[i], &t));
        co_await connecting.join();
    }
    task_group clients;
    for (int i = 0; i < load_clients; ++i)
        if (conns[i].is_open()) clients.spawn(client(&conns[i], i, &t));
    (void)co_await sleep_for(traffic_before_signal);  // how long the traffic runs, not a wait for an event
    ::kill(server_pid, SIGTERM);                      // this test's own child, by pid
    *signalled = clock_type::now();
    co_await clients.join();
    for (auto& c : conns) co_await c.close();
    co_return t;
}

}  // namespace

TEST_CASE("shutdown while 500 connections are mid-transfer", "[cores][signal]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    // A fixed port, not 127.0.0.1:0: with port 0 each of the two cores binds its own random port
    // and only core 0's is printed, so core 1 would never see a connection.
    const reserved_port port = reserve_loopback_port();
    const std::string listen = "127.0.0.1:" + std::to_string(port.port);
    child_process server{{CORING_ECHO_BINARY, "--cores", "2", "--backend", std::string{to_string(kind)}, "--listen",
                          listen, "--drain-timeout", std::to_string(drain.count())}};
    const bool up = server.read_until(clock_type::now() + 10s, [](const std::string& e) { return listening_port(e) != 0; });
    INFO("server stderr:\n" << server.err());
    REQUIRE(up);
    REQUIRE(listening_port(server.err()) == port.port);

    test_core c{kind};
    clock_type::time_point signalled = clock_type::now() + 1h;
    const load_tally t = c.run_for(15s, stream_through_shutdown(address::ipv4_loopback(port.port), server.pid(), &signalled));
    const auto status = server.wait_exit_or_kill(signalled + drain + 1s);
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - signalled);
    INFO("verified " << t.verified << " messages; connections ended by EOF " << t.closed << ", by reset " << t.reset
                     << ", by other errors " << t.unexpected_errors << " (first: " << t.first_unexpected
                     << "); the server exited " << took.count() << " ms after SIGTERM\nserver stderr:\n"
                     << server.err());
    CHECK(t.connect_failed == 0);
    CHECK(t.ended == load_clients);
    CHECK(t.verified > 0);
    CHECK(t.corrupt == 0);
    CHECK(t.unexpected_errors == 0);
    REQUIRE(status);  // exited within drain-timeout + 1 s
    REQUIRE(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
}
