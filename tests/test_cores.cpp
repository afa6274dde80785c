// Several cores at once: coring::run's threads and pinning, SO_REUSEPORT spreading connections
// over cores, and a two-core coring-echo stopping on SIGTERM while 500 clients are mid-transfer.
// Every case on both backends; each is bounded in time.
//
// Checks (REQUIRE/CHECK) run on the test's own thread only: Catch is not thread-safe, so the
// core threads record what they saw in atomics or under a mutex and the test checks it after
// run() has returned.
#include "child_process.hpp"
#include "support.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <mutex>
#include <netinet/in.h>
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
    // A reserved port, not port 0: each core binds its own listener, and with port 0 each would get
    // a different random port.
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
    // Port 0: coring-echo resolves it once, before the cores start, so both cores listen on the
    // one port its log line names.
    child_process server{CORING_ECHO_BINARY,
                         {"--cores", "2", "--backend", std::string{to_string(kind)}, "--listen", "127.0.0.1:0",
                          "--drain-timeout", std::to_string(drain.count())}};
    const bool up =
        server.read_until(clock_type::now() + 10s, [](const child_process& e) { return listening_port(e.err()) != 0; });
    INFO("server stderr:\n" << server.err());
    REQUIRE(up);
    const std::uint16_t port = listening_port(server.err());

    test_core c{kind};
    clock_type::time_point signalled = clock_type::now() + 1h;
    const load_tally t = c.run_for(15s, stream_through_shutdown(address::ipv4_loopback(port), server.pid(), &signalled));
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
