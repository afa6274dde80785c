// Timers, with_timeout, connect and idle timeouts, on both backends. The rule under test: a
// timed-out op reports ETIMEDOUT only after the kernel has let go of it, so its buffer is free.
#include "support.hpp"

#include <algorithm>
#include <array>
#include <netinet/in.h>
#include <random>
#include <sys/socket.h>
#include <unistd.h>

using namespace coring;
using namespace coring::testing;

namespace {

using clock_type = std::chrono::steady_clock;


std::int64_t ms_since(clock_type::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - t).count();
}

}  // namespace

TEST_CASE("sleep_for and sleep_until wake after their deadline, within a generous bound", "[timer]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    test_core c{kind};
    c.run_for(5s, []() -> task<> {
        for (auto d : {1ms, 20ms, 100ms}) {
            const auto start = clock_type::now();
            CO_REQUIRE(co_await sleep_for(d));
            const auto took = clock_type::now() - start;
            CHECK(took >= d);
            CHECK(took < d + 200ms);  // a loaded 2-core CI machine: generous on purpose
        }
        const auto until = clock_type::now() + 30ms;
        CO_REQUIRE(co_await sleep_until(until));
        CHECK(clock_type::now() >= until);
        CO_REQUIRE(co_await sleep_for(-5ms));  // in the past: at once, not never
    }());
}

TEST_CASE("100,000 timers: inserted and cancelled, and inserted and fired in deadline order", "[timer]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    test_core c{kind};
    constexpr int n = 100'000;

    // Cancelled: every sleeper ends with ECANCELED, at once, long before its hour is up.
    int cancelled = 0;
    const auto start = clock_type::now();
    c.run_for(20s, [](int* cancelled) -> task<> {
        task_group group;
        for (int i = 0; i < n; ++i)
            group.spawn([](int* cancelled) -> task<> {
                auto r = co_await sleep_for(1h);
                if (!r && r.error() == std::errc::operation_canceled) ++*cancelled;
            }(cancelled));
        CO_REQUIRE(co_await sleep_for(1ms));  // all of them asleep in the heap
        co_await group.cancel_and_join();
    }(&cancelled));
    CHECK(cancelled == n);
    CHECK(ms_since(start) < 20'000);

    // Fired: random deadlines within 200 ms; each wakes no earlier than its own deadline, and
    // wake-ups come in deadline order.
    std::vector<std::int64_t> woke_deadlines;
    int early = 0;
    c.run_for(30s, [](std::vector<std::int64_t>* order, int* early) -> task<> {
        std::mt19937 gen{42};
        std::uniform_int_distribution<int> us{0, 200'000};
        task_group group;
        for (int i = 0; i < n; ++i) {
            const std::int64_t deadline = core::now_ns() + std::int64_t{us(gen)} * 1000;
            group.spawn([](std::int64_t deadline, std::vector<std::int64_t>* order, int* early) -> task<> {
                const auto at = std::chrono::steady_clock::time_point{std::chrono::nanoseconds{deadline}};
                CO_REQUIRE(co_await sleep_until(at));
                if (core::now_ns() < deadline) ++*early;
                order->push_back(deadline);
            }(deadline, order, early));
        }
        co_await group.join();
    }(&woke_deadlines, &early));
    CHECK(early == 0);
    REQUIRE(woke_deadlines.size() == std::size_t{n});
    CHECK(std::is_sorted(woke_deadlines.begin(), woke_deadlines.end()));
}

TEST_CASE("with_timeout on a recv that gets no data: ETIMEDOUT, and nobody writes its buffer afterwards", "[timer]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    test_core c{kind};
    c.run_for(10s, []() -> task<> {
        auto [client, server] = co_await connected_pair();
        const std::size_t in_flight_before = core::current().io().in_flight();
        constexpr std::byte canary{0xAB};
        std::vector<std::byte> buf(4096, canary);
        const auto start = clock_type::now();
        auto r = co_await with_timeout(50ms, server.recv(buf));
        REQUIRE(!r);
        CHECK(r.error() == std::errc::timed_out);
        CHECK(ms_since(start) >= 50);
        // The recv is over in the kernel too: nothing more is owed for it.
        CHECK(core::current().io().in_flight() == in_flight_before);
        // Now the data comes. Were the old recv still armed, it would land in buf.
        CO_REQUIRE(co_await client.write_all(as_bytes("late data")));
        CO_REQUIRE(co_await sleep_for(50ms));
        CHECK(std::all_of(buf.begin(), buf.end(), [](std::byte b) { return b == canary; }));
        // The bytes wait in the socket for the next recv: none was lost.
        std::array<std::byte, 64> next;
        auto n = co_await server.recv(next);
        REQUIRE(n);
        CHECK(std::string_view(reinterpret_cast<const char*>(next.data()), *n) == "late data");
        co_await client.close();
        co_await server.close();
    }());
}

TEST_CASE("with_timeout passes results through, times out whole tasks, and nests", "[timer]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    test_core c{kind};
    c.run_for(10s, []() -> task<> {
        auto [client, server] = co_await connected_pair();
        CO_REQUIRE(co_await client.write_all(as_bytes("hi")));
        std::array<std::byte, 16> buf;
        auto got = co_await with_timeout(5s, server.recv(buf));  // data in time: the value
        REQUIRE(got);
        CHECK(*got == 2);

        // A task with several steps: the deadline ends the step it is in and refuses the rest.
        int steps = 0;
        auto slow = [](int* steps) -> task<result<void>> {
            for (int i = 0; i < 10; ++i) {
                auto r = co_await sleep_for(20ms);
                if (!r) co_return r;
                ++*steps;
            }
            co_return result<void>{};
        };
        auto whole = co_await with_timeout(50ms, slow(&steps));
        REQUIRE(!whole);
        CHECK(whole.error() == std::errc::timed_out);
        CHECK(steps >= 1);
        CHECK(steps <= 3);

        // After a timed-out scope, the task's ops work again.
        CO_REQUIRE(co_await sleep_for(1ms));

        // Nested: the outer (shorter) deadline wins, and the inner scope reports it as the
        // outer's ETIMEDOUT, not as a cancel of its own.
        auto inner = [](tcp_stream* s, std::span<std::byte> b) -> task<result<std::size_t>> {
            auto r = co_await with_timeout(10s, s->recv(b));
            co_return r;
        };
        const auto start = clock_type::now();
        auto nested = co_await with_timeout(30ms, inner(&server, buf));
        REQUIRE(!nested);
        CHECK(nested.error() == std::errc::timed_out);
        CHECK(ms_since(start) < 5000);

        // A with_timeout that finished in time leaves no deadline behind: a later, longer wait
        // in the same task is not cut short by it.
        auto quick = co_await with_timeout(20ms, sleep_for(1ms));
        CHECK(quick);
        CO_REQUIRE(co_await sleep_for(40ms));

        // "No deadline" spelled as the largest duration saturates, and never times out (it
        // overflowed into the past before, and timed out at once).
        CHECK(co_await with_timeout(std::chrono::nanoseconds::max(), sleep_for(1ms)));
        CHECK(co_await with_timeout(std::chrono::hours::max(), sleep_for(1ms)));
        co_await client.close();
        co_await server.close();
    }());
}

TEST_CASE("connect with a timeout: ETIMEDOUT when the listener's queue is full", "[timer][tcp]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    // A listener that never accepts, with the smallest queue: once it is full, the kernel drops
    // further SYNs and a connect waits for a SYN-ACK that does not come.
    const int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(lfd >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(lfd, 0) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    const auto port = ntohs(a.sin_port);

    test_core c{kind};
    c.run_for(20s, [](std::uint16_t port) -> task<> {
        const auto where = address::parse("127.0.0.1:" + std::to_string(port));
        REQUIRE(where);
        std::vector<tcp_stream> filling;
        bool timed_out = false;
        for (int i = 0; i < 8 && !timed_out; ++i) {
            const auto start = clock_type::now();
            auto conn = co_await tcp_stream::connect(*where, 300ms);
            if (conn) {
                filling.push_back(std::move(*conn));
                continue;
            }
            CHECK(conn.error() == std::errc::timed_out);
            CHECK(ms_since(start) >= 300);
            CHECK(ms_since(start) < 3000);
            timed_out = true;
        }
        CHECK(timed_out);
        for (auto& s : filling) co_await s.close();
    }(port));
    ::close(lfd);
}

TEST_CASE("an idle timeout ends a silent stream's recv with ETIMEDOUT, and not a busy one's", "[timer][tcp]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    test_core c{kind};
    c.run_for(10s, []() -> task<> {
        auto [client, server] = co_await connected_pair();
        server.set_idle_timeout(100ms);
        std::array<std::byte, 64> buf;
        // The peer sends every 30 ms for a while: no recv waits 100 ms, none times out.
        auto talker = [](tcp_stream* client) -> task<> {
            for (int i = 0; i < 8; ++i) {
                CO_REQUIRE(co_await sleep_for(30ms));
                CO_REQUIRE(co_await client->write_all(as_bytes("x")));
            }
        };
        task_group group;
        group.spawn(talker(&client));
        std::size_t received = 0;
        while (received < 8) {
            auto n = co_await server.recv(buf);
            REQUIRE(n);
            REQUIRE(*n > 0);
            received += *n;
        }
        co_await group.join();
        // Then silence: the next recv ends after the idle timeout.
        const auto start = clock_type::now();
        auto n = co_await server.recv(buf);
        REQUIRE(!n);
        CHECK(n.error() == std::errc::timed_out);
        CHECK(ms_since(start) >= 100);
        server.set_idle_timeout({});  // and off again: data still flows
        CO_REQUIRE(co_await client.write_all(as_bytes("y")));
        auto more = co_await server.recv(buf);
        REQUIRE(more);
        CHECK(*more == 1);
        co_await client.close();
        co_await server.close();
    }());
}
