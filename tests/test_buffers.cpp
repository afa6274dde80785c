// recv_lease over the provided-buffer pool, multishot feeds, and the runtime under pressure:
// a cancel storm, a tiny ring, an exhausted pool. Real sockets on loopback throughout.
#include "echo_server.hpp"
#include "support.hpp"

#include <atomic>
#include <cstring>
#include <random>
#include <string>
#include <thread>

using namespace coring;
using namespace coring::testing;

namespace {

using clock_type = std::chrono::steady_clock;

// The configurations recv_lease has: io_uring with multishot, io_uring one shot at a time
// (as on kernels before 6.0), epoll.
struct lease_setup {
    backend_kind kind;
    bool multishot;
};
std::string describe(const lease_setup& s) {
    return std::string{to_string(s.kind)} + (s.kind == backend_kind::uring ? (s.multishot ? " multishot" : " single-shot") : "");
}
#define LEASE_SETUPS lease_setup{backend_kind::uring, true}, lease_setup{backend_kind::uring, false}, lease_setup{backend_kind::epoll, false}

backend_config config_of(const lease_setup& s, unsigned buffers = 1024, unsigned size = 16384) {
    backend_config cfg{s.kind};
    cfg.buffer_count = buffers;
    cfg.buffer_size = size;
    cfg.multishot = s.multishot;
    return cfg;
}


std::uint64_t buffers_in_use() { return core::current().io().stats().buffers_in_use; }

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
        group.spawn([](tcp_stream* s, std::optional<result<buffer_lease>>* seen) -> task<> {
            seen->emplace(co_await s->recv_lease());
        }(&server, &seen));
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

namespace {

struct client_tally {
    std::atomic<int> verified{0};
    std::atomic<int> failed{0};
    std::string first_error;  // written by the client thread before it ends
};

// An echo server on a core of its own in this thread, and `clients` on a second core (epoll)
// in another thread; returns the server core's stats once the clients are done and the
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
        test_core c{backend_kind::epoll};
        c.run_for(120s, clients(where));
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
    CHECK(s.backend.buffer_waits > 0);   // the pool did run dry
    CHECK(s.backend.buffers_in_use == 0);  // and every buffer came back
}

TEST_CASE("a tiny ring (8 SQ entries, CQ room for fewer ops than wanted) under 1,000 busy connections",
          "[buffers][pressure]") {
    // io_uring only: SQ and CQ limits are io_uring's. The server's 1,024-entry CQ leaves room
    // for 896 ops in flight, but its 1,000 connections each want a multishot receive armed
    // for good, and sends on top: ops wait for room (parked), sends behind receives that wait
    // for those very sends, which only the stall rule (10 ms without a completion lets the
    // oldest parked op in, into the CQ's reserve) keeps moving. Every turn fills the 8-entry
    // SQ many times over. Nothing may be lost on the way.
    constexpr int clients = 1000;
    client_tally tally;
    backend_config cfg{backend_kind::uring, 8, 1024};
    const core_stats s = serve_echo_while(cfg, [&](address where) { return bulk_clients(where, clients, 4096, &tally); });
    INFO("server: " << to_string(s));
    INFO("first error: " << tally.first_error);
    CHECK(tally.verified == clients);
    CHECK(tally.failed == 0);
    CHECK(s.backend.sq_full_waits > 0);   // the SQ-full path ran
    CHECK(s.backend.parked_for_cq > 0);   // and so did the wait for CQ room
    CHECK(s.backend.cq_overcommits > 0);  // and the stall rule
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
