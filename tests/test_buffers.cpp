// recv_lease over the provided-buffer pool, multishot feeds, and the runtime under pressure:
// a cancel storm, a tiny ring, an exhausted pool. Real sockets on loopback throughout.
#include "child_process.hpp"
#include "echo_server.hpp"
#include "support.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>
#include <random>
#include <string>
#include <thread>

using namespace coring;
using namespace coring::testing;

namespace {

using clock_type = std::chrono::steady_clock;

std::uint64_t buffers_in_use() { return core::current().io().stats().buffers_in_use; }

// One recv_lease on s, its outcome into *seen: a reader on a task of its own.
task<> lease_into(tcp_stream* s, std::optional<result<buffer_lease>>* seen) { seen->emplace(co_await s->recv_lease()); }

// Byte i of stream k: any loss, duplicate or reordering shows.
std::byte pattern(std::uint64_t i, unsigned k) { return std::byte((i * 131 + k * 7 + (i >> 9)) & 0xff); }

}  // namespace

TEST_CASE("recv_lease receives every byte in order and ends with an empty lease", "[buffers]") {
    const auto setup = GENERATE(LEASE_SETUPS);
    INFO(describe(setup));
    test_core c{config_of(setup, 64, 4096)};
    c.run_for(20s, []() -> task<> {
        auto [client, server] = co_await connected_pair();
        const auto data = random_bytes(3 << 20, 7);  // 3 MiB: many more buffers than the pool has
        task_group group;
        group.spawn([](tcp_stream* client, const std::vector<std::byte>* data) -> task<> {
            CO_REQUIRE(co_await client->write_all(*data));
            CO_REQUIRE(co_await client->shutdown(SHUT_WR));
        }(&client, &data));
        std::uint64_t hash = fnv1a({});
        std::size_t got = 0;
        for (;;) {
            auto lease = co_await server.recv_lease();
            REQUIRE(lease);
            if (lease->empty()) break;
            CHECK(lease->size() <= 4096);
            hash = fnv1a(lease->data(), hash);
            got += lease->size();
        }
        co_await group.join();
        CHECK(got == data.size());
        CHECK(hash == fnv1a(data));
        auto again = co_await server.recv_lease();  // the end stays the end
        REQUIRE(again);
        CHECK(again->empty());
        CHECK(buffers_in_use() == 0);
        co_await client.close();
        co_await server.close();
    }());
}

TEST_CASE("recv_lease: held leases keep their buffers; timeouts, closes and drops lose nothing and leak nothing", "[buffers]") {
    const auto setup = GENERATE(LEASE_SETUPS);
    INFO(describe(setup));
    test_core c{config_of(setup, 64, 4096)};
    c.run_for(20s, []() -> task<> {
        const std::size_t in_flight_before = core::current().io().in_flight();
        auto [client, server] = co_await connected_pair();
        // A held lease is a held buffer, given back when dropped.
        CO_REQUIRE(co_await client.write_all(as_bytes("first")));
        {
            auto lease = co_await server.recv_lease();
            REQUIRE(lease);
            CHECK(std::string_view(reinterpret_cast<const char*>(lease->data().data()), lease->size()) == "first");
            CHECK(buffers_in_use() >= 1);
        }
        CHECK(buffers_in_use() == 0);

        // A timed-out wait ends with ETIMEDOUT; the data that comes later is all there.
        auto waited = co_await with_timeout(30ms, server.recv_lease());
        REQUIRE(!waited);
        CHECK(waited.error() == std::errc::timed_out);
        server.set_idle_timeout(30ms);
        auto idle = co_await server.recv_lease();
        REQUIRE(!idle);
        CHECK(idle.error() == std::errc::timed_out);
        server.set_idle_timeout({});
        CO_REQUIRE(co_await client.write_all(as_bytes("second")));
        auto second = co_await server.recv_lease();
        REQUIRE(second);
        CHECK(std::string_view(reinterpret_cast<const char*>(second->data().data()), second->size()) == "second");
        second->reset();

        // Closed while another task waits in recv_lease: that task gets ECANCELED at once.
        std::optional<result<buffer_lease>> seen;
        task_group group;
        group.spawn(lease_into(&server, &seen));
        CO_REQUIRE(co_await sleep_for(5ms));
        co_await server.close();
        co_await group.join();
        REQUIRE(seen);
        REQUIRE(!*seen);
        CHECK(seen->error() == std::errc::operation_canceled);
        co_await client.close();

        // Dropped with received data still queued: every buffer goes back.
        auto [c2, s2] = co_await connected_pair();
        CO_REQUIRE(co_await c2.write_all(as_bytes("x")));
        auto first = co_await s2.recv_lease();
        REQUIRE(first);
        first->reset();
        for (int i = 0; i < 20; ++i) {
            std::string chunk(3000, char('a' + i));
            CO_REQUIRE(co_await c2.write_all(as_bytes(chunk)));
        }
        CO_REQUIRE(co_await sleep_for(20ms));  // with multishot, they queue in s2's feed now
        { tcp_stream dropped = std::move(s2); }
        CO_REQUIRE(co_await sleep_for(20ms));
        CHECK(buffers_in_use() == 0);
        co_await c2.close();
        CHECK(core::current().io().in_flight() == in_flight_before);  // nothing left in the kernel
    }());
}

TEST_CASE("recv_lease across moves: a stream moved while its receive is armed, or while a reader waits in it, loses no byte",
          "[buffers][move]") {
    // The receive feed lives in the stream: a move carries its op (on io_uring cancelled in the
    // kernel and its last CQEs renamed, core::withdraw), its queue and a waiting reader along.
    const auto setup = GENERATE(LEASE_SETUPS);
    INFO(describe(setup));
    test_core c{config_of(setup, 64, 4096)};
    c.run_for(20s, []() -> task<> {
        const std::size_t in_flight_before = core::current().io().in_flight();
        auto [client, server] = co_await connected_pair();

        // A reader waits in recv_lease while another task moves the stream: it gets what comes.
        std::optional<result<buffer_lease>> seen;
        task_group waiting;
        waiting.spawn(lease_into(&server, &seen));
        CO_REQUIRE(co_await sleep_for(5ms));
        std::optional<tcp_stream> a{std::move(server)};
        CO_REQUIRE(co_await client.write_all(as_bytes("hello")));
        co_await waiting.join();
        REQUIRE(seen);
        REQUIRE(*seen);
        std::string hello(reinterpret_cast<const char*>((*seen)->data().data()), (*seen)->size());
        seen.reset();
        while (hello.size() < 5) {  // (a receive may be short: injected faults)
            auto more = co_await a->recv_lease();
            REQUIRE(more);
            REQUIRE(!more->empty());
            hello.append(reinterpret_cast<const char*>(more->data().data()), more->size());
        }
        CHECK(hello == "hello");

        // Moved after every lease, by construction and by assignment, while a writer keeps
        // sending: every byte arrives, in order.
        const auto data = random_bytes(1 << 20, 11);
        task_group group;
        group.spawn([](tcp_stream* client, const std::vector<std::byte>* data) -> task<> {
            for (std::size_t at = 0; at < data->size(); at += 16384) {
                const std::size_t n = std::min<std::size_t>(16384, data->size() - at);
                CO_REQUIRE(co_await client->write_all(std::span(*data).subspan(at, n)));
                if (at % (16 * 16384) == 0) CO_REQUIRE(co_await sleep_for(1ms));
            }
            CO_REQUIRE(co_await client->shutdown(SHUT_WR));
        }(&client, &data));
        std::optional<tcp_stream> b;
        std::uint64_t hash = fnv1a({});
        std::size_t got = 0;
        for (unsigned round = 0;; ++round) {
            std::optional<tcp_stream>& from = round % 2 == 0 ? a : b;
            std::optional<tcp_stream>& to = round % 2 == 0 ? b : a;
            auto lease = co_await from->recv_lease();
            REQUIRE(lease);
            if (lease->empty()) break;
            hash = fnv1a(lease->data(), hash);
            got += lease->size();
            lease->reset();
            if (round % 4 < 2) {
                to.emplace(std::move(*from));
            } else {
                if (!to) to.emplace();
                *to = std::move(*from);  // over a moved-from stream: nothing to close there
            }
            from.reset();
        }
        co_await group.join();
        CHECK(got == data.size());
        CHECK(hash == fnv1a(data));
        CHECK(buffers_in_use() == 0);
        a.reset();
        b.reset();
        co_await client.close();
        CO_REQUIRE(co_await sleep_for(5ms));
        CHECK(core::current().io().in_flight() == in_flight_before);  // nothing left in the kernel
    }());
}

namespace {

struct client_tally {
    std::atomic<int> verified{0};
    std::atomic<int> failed{0};
    std::string first_error;  // written by the client thread before it ends
};

// An echo server on a core of its own in this thread, and `clients` on a second core (epoll)
// in another thread (or, when clients returns void, plain sockets in that thread); returns the server core's stats once the clients are done and the
// server has seen every connection end. Catch is not thread-safe: the clients only count.
template <class Clients>
core_stats serve_echo_while(const backend_config& server_cfg, Clients clients) {
    test_core server{server_cfg};
    const address where = server.run_for(5s, []() -> task<address> {
        auto a = apps::start_echo_server({.listen = address::ipv4_loopback(0)});
        REQUIRE(a);
        co_return *a;
    }());
    std::atomic<bool> done{false};
    std::thread client_thread{[&] {
        if constexpr (std::is_void_v<std::invoke_result_t<Clients, address>>) {
            clients(where);  // plain sockets, in this thread
        } else {
            test_core c{backend_kind::epoll};
            c.run_for(120s, clients(where));
        }
        done = true;
    }};
    server.run_for(150s, [](std::atomic<bool>* done) -> task<> {
        while (!done->load()) CO_REQUIRE(co_await sleep_for(1ms));
        // Each echo connection ends when its client has gone; then only the accept loop and
        // this task are left.
        for (int i = 0; i < 5000 && core::current().live_tasks() > 2; ++i) CO_REQUIRE(co_await sleep_for(1ms));
    }(&done));
    client_thread.join();
    return server->stats();
}

// Many clients at once, each sending `bytes` (its own random data) and reading it all back.
task<> bulk_clients(address where, int clients, std::size_t bytes, client_tally* tally) {
    task_group group;
    for (int id = 0; id < clients; ++id) {
        group.spawn([](address where, int id, std::size_t bytes, client_tally* tally) -> task<> {
            auto fail = [&](std::string what) {
                if (tally->failed++ == 0) tally->first_error = "client " + std::to_string(id) + ": " + what;
            };
            auto conn = co_await tcp_stream::connect(where);
            if (!conn) {
                fail("connect: " + conn.error().message());
                co_return;
            }
            const auto data = random_bytes(bytes, 1000 + id);
            task_group sender;
            sender.spawn([](tcp_stream* s, const std::vector<std::byte>* d) -> task<> {
                (void)co_await s->write_all(*d);
            }(&*conn, &data));
            std::vector<std::byte> back(bytes);
            std::size_t got = 0;
            while (got < bytes) {
                auto n = co_await conn->recv(std::span(back).subspan(got));
                if (!n || *n == 0) break;
                got += *n;
            }
            co_await sender.join();
            if (got != bytes) fail("got " + std::to_string(got) + " of " + std::to_string(bytes) + " bytes");
            else if (back != data) fail("bytes differ");
            else ++tally->verified;
            co_await conn->close();
        }(where, id, bytes, tally));
    }
    co_await group.join();
}

}  // namespace

TEST_CASE("an exhausted buffer pool: 1,000 connections send at once into 64 buffers, every byte arrives in order",
          "[buffers][pressure]") {
    const auto setup = GENERATE(LEASE_SETUPS);
    INFO(describe(setup));
    constexpr int clients = 1000;
    client_tally tally;
    const core_stats s = serve_echo_while(config_of(setup, 64, 1024), [&](address where) {
        return bulk_clients(where, clients, 16 * 1024, &tally);
    });
    INFO("server: " << to_string(s));
    INFO("first error: " << tally.first_error);
    CHECK(tally.verified == clients);
    CHECK(tally.failed == 0);
    if (!faults_on()) CHECK(s.backend.spare_buffers > 0);  // the pool did run dry, and spares took over
    CHECK(s.backend.buffers_in_use == 0);  // and every buffer came back
}

TEST_CASE("a tiny ring (8 SQ entries, CQ room for fewer ops than wanted) under 1,000 busy connections",
          "[buffers][pressure]") {
    // io_uring only: SQ and CQ limits are io_uring's. The server's 64-entry CQ leaves room for
    // 56 ops in flight besides the armed multishot receives of its 1,000 connections, whose
    // bursts may overflow it (the kernel keeps the overflow, and ends a multishot that meets a
    // full CQ). Every turn fills the 8-entry SQ many times over. Nothing may be lost on the way.
    // (Ops waiting for CQ room, and the stall rule: "[tcp][pressure]".)
    constexpr int clients = 1000;
    client_tally tally;
    backend_config cfg{backend_kind::uring, 8, 64};
    const core_stats s = serve_echo_while(cfg, [&](address where) { return bulk_clients(where, clients, 4096, &tally); });
    INFO("server: " << to_string(s));
    INFO("first error: " << tally.first_error);
    CHECK(tally.verified == clients);
    CHECK(tally.failed == 0);
    CHECK(s.backend.sq_full_waits > 0);   // the SQ-full path ran
}

TEST_CASE("armed receives beyond the CQ's room for ops park no send, while data trickles in", "[buffers][pressure]") {
    // io_uring only. A 64-entry CQ leaves room for 56 ops in flight; 80 idle connections each
    // hold a multishot receive armed. Those do not count against the room (an idle one posts
    // nothing, and the kernel keeps any overflow: NODROP), so no send waits behind them. Counted,
    // every send would park, and with one connection trickling a byte every 2 ms the stall rule
    // (10 ms without a completion) would never let one in: the round trips would time out.
    if (skip_without(backend_kind::uring)) return;
    backend_config cfg{backend_kind::uring, 8, 64};
    std::vector<std::string> problems;
    const core_stats s = serve_echo_while(cfg, [&](address where) {
        std::vector<fd_guard> idle;
        for (int i = 0; i < 80; ++i) {
            idle.emplace_back(connect_blocking(where.port()));
            const std::string said = "idle " + std::to_string(i);
            if (idle.back().fd < 0 || blocking_round_trip(idle.back().fd, said) != said) {
                problems.push_back("idle connection " + std::to_string(i) + " did not echo");
                return;
            }
        }
        fd_guard ticker{connect_blocking(where.port())};
        fd_guard echo{connect_blocking(where.port())};
        const timeval limit{1, 0};
        ::setsockopt(echo.fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
        std::atomic<bool> stop{false};
        std::thread trickle{[&] {
            while (!stop) {
                (void)::send(ticker.fd, "t", 1, MSG_NOSIGNAL);
                std::this_thread::sleep_for(2ms);
            }
        }};
        std::this_thread::sleep_for(50ms);  // the trickle is on
        for (int i = 0; i < 20 && problems.empty(); ++i) {
            const std::string said = "round trip " + std::to_string(i);
            const std::string got = blocking_round_trip(echo.fd, said);
            if (got != said) problems.push_back(said + ": got " + got);
        }
        stop = true;
        trickle.join();
    });
    INFO("server: " << to_string(s));
    INFO("first problem: " << (problems.empty() ? "none" : problems.front()));
    CHECK(problems.empty());
    // Counted, the sends parked and went in only by the stall rule, 10 ms each (98 of them).
    if (!faults_on()) CHECK(s.backend.parked_for_cq == 0);
}

TEST_CASE("cancel storm: 10,000 ops cancelled at random moments while data flows, nothing lost or leaked",
          "[buffers][pressure]") {
    const auto setup = GENERATE(LEASE_SETUPS);
    INFO(describe(setup));
    test_core c{config_of(setup, 256, 4096)};
    struct tally {
        std::uint64_t cancelled = 0;
        std::uint64_t sent[16] = {};
        std::uint64_t received[16] = {};
        bool corrupt = false;
    } t;
    const auto start = clock_type::now();
    c.run_for(90s, [](tally* t, clock_type::time_point start) -> task<> {
        const std::size_t in_flight_before = core::current().io().in_flight();
        std::vector<std::pair<tcp_stream, tcp_stream>> pairs;
        for (int k = 0; k < 16; ++k) {
            auto pair = co_await connected_pair();
            pairs.push_back(std::move(pair));
        }
        bool stop = false;
        task_group group;
        for (unsigned k = 0; k < 16; ++k) {
            // Writer: sends with random deadlines; a timed-out send sent nothing, so it is retried.
            group.spawn([](tcp_stream* s, unsigned k, tally* t, const bool* stop) -> task<> {
                std::mt19937 gen{k};
                std::uniform_int_distribution<int> us{0, 300};
                std::vector<std::byte> chunk(8192);
                while (!*stop) {
                    for (std::size_t i = 0; i < chunk.size(); ++i) chunk[i] = pattern(t->sent[k] + i, k);
                    std::span<const std::byte> left{chunk};
                    while (!left.empty()) {
                        auto n = co_await with_timeout(std::chrono::microseconds{us(gen)}, s->send(left));
                        if (!n && n.error() == std::errc::timed_out) {
                            ++t->cancelled;
                            continue;
                        }
                        REQUIRE(n);
                        left = left.subspan(*n);
                        t->sent[k] += *n;
                    }
                }
                CO_REQUIRE(co_await s->shutdown(SHUT_WR));
            }(&pairs[k].first, k, t, &stop));
            // Reader: recv_lease on even streams, recv into its own buffer on odd ones, with
            // random deadlines too; checks every byte against the pattern.
            group.spawn([](tcp_stream* s, unsigned k, tally* t) -> task<> {
                std::mt19937 gen{100 + k};
                std::uniform_int_distribution<int> us{0, 300};
                std::vector<std::byte> own(5000);
                auto check = [&](std::span<const std::byte> got) {
                    for (std::size_t i = 0; i < got.size(); ++i)
                        if (got[i] != pattern(t->received[k] + i, k)) t->corrupt = true;
                    t->received[k] += got.size();
                };
                for (;;) {
                    const auto limit = std::chrono::microseconds{us(gen)};
                    std::size_t n = 0;
                    if (k % 2 == 0) {
                        auto lease = co_await with_timeout(limit, s->recv_lease());
                        if (!lease && lease.error() == std::errc::timed_out) {
                            ++t->cancelled;
                            continue;
                        }
                        REQUIRE(lease);
                        check(lease->data());
                        n = lease->size();
                    } else {
                        auto r = co_await with_timeout(limit, s->recv(own));
                        if (!r && r.error() == std::errc::timed_out) {
                            ++t->cancelled;
                            continue;
                        }
                        REQUIRE(r);
                        check(std::span(own).first(*r));
                        n = *r;
                    }
                    if (n == 0) break;  // the writer's shutdown: everything has arrived
                }
            }(&pairs[k].second, k, t));
        }
        // Until 10,000 ops were cancelled (or 60 s passed), then let every stream drain.
        while (t->cancelled < 10'000 && clock_type::now() - start < 60s) CO_REQUIRE(co_await sleep_for(5ms));
        stop = true;
        co_await group.join();
        for (auto& [a, b] : pairs) {
            co_await a.close();
            co_await b.close();
        }
        CHECK(core::current().io().in_flight() == in_flight_before);  // nothing left in the kernel
    }(&t, start));
    INFO("stats: " << to_string(c->stats()));
    CHECK(t.cancelled >= 10'000);
    CHECK_FALSE(t.corrupt);
    for (int k = 0; k < 16; ++k) CHECK(t.received[k] == t.sent[k]);
    CHECK(c->io().stats().buffers_in_use == 0);
}

// ---- peers that misbehave ------------------------------------------------------------------------

namespace {

// Plain blocking sockets for the client side of these tests: what a misbehaving peer does is
// easier to say in syscalls.
struct raw_socket {
    int fd = -1;
    explicit raw_socket(const address& where, int rcvbuf = 0) {
        fd = ::socket(where.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return;
        if (rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        const int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        while (::connect(fd, where.data(), where.size()) < 0) {
            if (errno == EINTR) continue;
            ::close(std::exchange(fd, -1));
            return;
        }
    }
    raw_socket(raw_socket&& o) noexcept : fd{std::exchange(o.fd, -1)} {}
    raw_socket(const raw_socket&) = delete;
    ~raw_socket() {
        if (fd >= 0) ::close(fd);
    }
    // Sends all of data, then reads exactly data.size() bytes back and compares; the time it
    // took, or a negative number when anything went wrong or `limit` passed.
    double round_trip_ms(std::span<const std::byte> data, std::chrono::milliseconds limit) const {
        const auto start = clock_type::now();
        if (::send(fd, data.data(), data.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(data.size())) return -1;
        std::vector<std::byte> back(data.size());
        std::size_t got = 0;
        while (got < back.size()) {
            const auto left = limit - std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - start);
            pollfd p{fd, POLLIN, 0};
            if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return -1;
            const ssize_t n = ::recv(fd, back.data() + got, back.size() - got, 0);
            if (n <= 0) return -1;
            got += static_cast<std::size_t>(n);
        }
        if (back != std::vector<std::byte>(data.begin(), data.end())) return -1;
        return std::chrono::duration<double, std::milli>(clock_type::now() - start).count();
    }
};

// Each sends without ever reading until nothing more goes in: everything between it and the
// server (its send buffer, the server's receive buffer and receive queue, the server's send
// buffer, its own tiny receive buffer) is full, and the server's task is stuck in write_all.
void stuff_until_full(std::vector<raw_socket>& peers) {
    std::vector<char> junk(64 * 1024, 'x');
    for (auto& p : peers) ::fcntl(p.fd, F_SETFL, ::fcntl(p.fd, F_GETFL) | O_NONBLOCK);
    int quiet_rounds = 0;
    const auto start = clock_type::now();
    while (quiet_rounds < 20 && clock_type::now() - start < 20s) {
        std::size_t sent = 0;
        for (auto& p : peers) {
            const ssize_t n = ::send(p.fd, junk.data(), junk.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) sent += static_cast<std::size_t>(n);
        }
        quiet_rounds = sent == 0 ? quiet_rounds + 1 : 0;
        std::this_thread::sleep_for(2ms);
    }
}

}  // namespace

TEST_CASE("peers that send and never read cannot starve the others of receive buffers", "[buffers][starvation]") {
    // The story: 80 clients sent a few MB each to coring-echo and never read; each server task
    // sat in write_all while its multishot receive kept filling pool buffers (16 queued per
    // connection), the pool ran dry, and a well-behaved client's 100-byte echo did not come back
    // within 3 s on io_uring. Now a reader that waits always gets a buffer (a spare when the
    // pool is empty), and a connection whose reader is away queues at most 2.
    const auto setup = GENERATE(LEASE_SETUPS);
    const int bad = GENERATE(10, 128);  // up to twice the 64-buffer pool
    INFO(describe(setup) << ", " << bad << " peers that never read, a pool of 64 buffers");
    std::vector<double> probe_ms, busy_ms;
    std::string error;
    const core_stats s = serve_echo_while(config_of(setup, 64, 4096), [&](address where) {
        std::vector<raw_socket> busy;
        for (int i = 0; i < 4; ++i) busy.emplace_back(where);
        std::vector<raw_socket> peers;
        for (int i = 0; i < bad; ++i) peers.emplace_back(where, 4096);
        for (auto& p : peers)
            if (p.fd < 0) error = "a misbehaving peer could not connect";
        stuff_until_full(peers);
        // Busy, well-behaved connections keep flowing: 20 verified round trips each.
        for (int round = 0; round < 20; ++round)
            for (std::size_t i = 0; i < busy.size(); ++i)
                busy_ms.push_back(busy[i].round_trip_ms(random_bytes(1000, round * 10 + i), 3000ms));
        // A newcomer's 100-byte echo, five times.
        for (int i = 0; i < 5; ++i) {
            raw_socket probe{where};
            probe_ms.push_back(probe.round_trip_ms(random_bytes(100, 99 + i), 3000ms));
        }
        // peers close here: the server's stuck writes fail and their tasks end.
    });
    INFO("server: " << to_string(s));
    REQUIRE(error.empty());
    const double worst_probe = *std::max_element(probe_ms.begin(), probe_ms.end());
    const double worst_busy = *std::max_element(busy_ms.begin(), busy_ms.end());
    INFO("newcomer echo, worst of 5: " << worst_probe << " ms; busy round trip, worst of 80: " << worst_busy << " ms");
    CHECK(*std::min_element(probe_ms.begin(), probe_ms.end()) >= 0);  // negative: lost, corrupt or > 3 s
    CHECK(*std::min_element(busy_ms.begin(), busy_ms.end()) >= 0);
    CHECK(worst_probe < 100);
    CHECK(worst_busy < 100);
    CHECK(s.backend.buffers_in_use == 0);
}

TEST_CASE("a starved pool is fair: 200 readers through 2 tiny buffers, nobody waits far longer than the rest", "[buffers][starvation]") {
    // The story: io_uring single-shot with --buffers 2 --buffer-size 64 and 200 clients that do
    // read: ops parked on ENOBUFS went back to the end of the queue whenever they lost the race
    // for a returned buffer, so some replies took 1.7 s while the median took 72 ms. Now a reader
    // never waits for a pool buffer: it receives into a spare of its own.
    const auto setup = GENERATE(LEASE_SETUPS);
    INFO(describe(setup));
    std::vector<double> round_ms;
    bool all_verified = true;
    const core_stats s = serve_echo_while(config_of(setup, 2, 64), [&](address where) -> task<> {
        // 200 clients at once, each 10 rounds of 4 x 1000 bytes in flight, every byte verified.
        task_group group;
        for (int id = 0; id < 200; ++id) {
            group.spawn([](address where, int id, std::vector<double>* rounds, bool* ok) -> task<> {
                auto conn = co_await tcp_stream::connect(where);
                if (!conn) {
                    *ok = false;
                    co_return;
                }
                for (int round = 0; round < 10; ++round) {
                    const auto data = random_bytes(4000, id * 100 + round);
                    const auto start = clock_type::now();
                    std::vector<std::byte> back(data.size());
                    task_group writer;
                    writer.spawn([](tcp_stream* c, const std::vector<std::byte>* d) -> task<> {
                        (void)co_await c->write_all(*d);
                    }(&*conn, &data));
                    std::size_t got = 0;
                    while (got < back.size()) {
                        auto n = co_await with_timeout(10s, conn->recv(std::span(back).subspan(got)));
                        if (!n || *n == 0) break;
                        got += *n;
                    }
                    co_await writer.join();
                    if (got != back.size() || back != data) {
                        *ok = false;
                        co_return;
                    }
                    rounds->push_back(std::chrono::duration<double, std::milli>(clock_type::now() - start).count());
                }
                co_await conn->close();
            }(where, id, &round_ms, &all_verified));
        }
        co_await group.join();
    });
    INFO("server: " << to_string(s));
    REQUIRE(all_verified);
    REQUIRE(round_ms.size() == 2000u);
    std::sort(round_ms.begin(), round_ms.end());
    const double median = round_ms[1000], worst = round_ms.back();
    INFO("round trips of 4 x 1000 B: median " << median << " ms, p99 " << round_ms[1980] << " ms, worst " << worst << " ms");
    CHECK(worst < 5 * median + 100);  // nobody left far behind
    CHECK(s.backend.buffers_in_use == 0);
}

TEST_CASE("a long stream touches a few pool buffers, not the whole pool, and idle pages go back", "[buffers][rss]") {
    // The story: the buffer ring handed buffers out in rotation, so one client moving 16 MiB
    // touched every page of the default 16 MiB pool, and a 1 GiB pool stayed resident after a
    // 1 GiB stream. Now the ring holds a short window refilled with the warmest buffers, and
    // buffers that sit unused for a second give their pages back.
    const auto setup = GENERATE(LEASE_SETUPS);
    INFO(describe(setup));
    test_core c{config_of(setup, 1024, 16384)};  // the default pool: 16 MiB
    auto resident_kib = [&] {
        backend& io = c->io();
        const std::size_t bytes = std::size_t{io.buffer_count()} * io.buffer_size();
        const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
        std::vector<unsigned char> pages(bytes / page);
        REQUIRE(::mincore(io.buffer(0), bytes, pages.data()) == 0);
        std::size_t n = 0;
        for (unsigned char p : pages) n += p & 1;
        return n * page / 1024;
    };
    c.run_for(60s, []() -> task<> {
        auto [client, server] = co_await connected_pair();
        task_group group;
        group.spawn([](tcp_stream* s) -> task<> {  // the echo side
            for (;;) {
                auto lease = co_await s->recv_lease();
                if (!lease || lease->empty()) break;
                CO_REQUIRE(co_await s->write_all(lease->data()));
            }
            CO_REQUIRE(co_await s->shutdown(SHUT_WR));
        }(&server));
        constexpr std::size_t total = 64 << 20;  // four times the pool
        group.spawn([](tcp_stream* s) -> task<> {
            const auto chunk = random_bytes(256 * 1024, 5);
            for (std::size_t sent = 0; sent < total; sent += chunk.size()) CO_REQUIRE(co_await s->write_all(chunk));
            CO_REQUIRE(co_await s->shutdown(SHUT_WR));
        }(&client));
        std::vector<std::byte> sink(65536);
        std::size_t got = 0;
        for (;;) {
            auto n = co_await client.recv(sink);
            REQUIRE(n);
            if (*n == 0) break;
            got += *n;
        }
        co_await group.join();
        CHECK(got == total);
        co_await client.close();
        co_await server.close();
    }());
    const std::size_t after_stream = resident_kib();
    c.run_for(10s, []() -> task<> { CO_REQUIRE(co_await sleep_for(2500ms)); }());
    const std::size_t after_idle = resident_kib();
    INFO("pool resident after 64 MiB: " << after_stream << " KiB; after 2.5 s idle: " << after_idle << " KiB (pool 16384 KiB)");
    CHECK(after_stream <= 4096);  // a quarter of the pool at most
    CHECK(after_idle <= after_stream);
    CHECK(c->io().stats().buffers_in_use == 0);
}
