// coring-load's two promises: its percentiles are within the histogram's stated error of the
// exact ones, and no corrupted, lost or refused reply goes uncounted.
#include "load.hpp"
#include "support.hpp"

#include <algorithm>
#include <cmath>
#include <random>

using namespace coring;
using namespace coring::testing;
using coring::load::histogram;

TEST_CASE("histogram percentiles stay within 1/64 of the exact values", "[load]") {
    std::mt19937_64 gen{11};
    // Latency-like data: mostly tens of microseconds, a long tail up to seconds, some tiny.
    std::lognormal_distribution<double> body{std::log(50'000.0), 0.6};
    std::uniform_int_distribution<std::uint64_t> tail{1'000'000, 2'000'000'000};
    std::vector<std::uint64_t> values;
    histogram h;
    for (int i = 0; i < 200'000; ++i) {
        std::uint64_t v = i % 100 == 0 ? tail(gen) : static_cast<std::uint64_t>(body(gen));
        if (i % 1000 == 1) v = static_cast<std::uint64_t>(i % 31);  // exact small buckets
        values.push_back(v);
        h.record(v);
    }
    std::sort(values.begin(), values.end());
    REQUIRE(h.count() == values.size());
    CHECK(h.min() == values.front());
    CHECK(h.max() == values.back());
    for (double q : {0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 1.0}) {
        const auto rank = std::max<std::size_t>(1, static_cast<std::size_t>(std::ceil(q * static_cast<double>(values.size()))));
        const double exact = static_cast<double>(values[rank - 1]);
        const double got = static_cast<double>(h.percentile(q));
        INFO("q=" << q << " exact=" << exact << " histogram=" << got);
        CHECK(std::abs(got - exact) <= exact / 64 + 0.5);
    }

    // Merging equals recording everything in one; serializing loses nothing.
    histogram a, b;
    for (std::size_t i = 0; i < values.size(); ++i) (i % 2 ? a : b).record(values[i]);
    a.merge(b);
    histogram back;
    REQUIRE(back.deserialize(a.serialize()));
    for (double q : {0.5, 0.99, 0.999}) CHECK(back.percentile(q) == h.percentile(q));
    CHECK(back.max() == h.max());
    CHECK_FALSE(back.deserialize("n=3 min=1 max=2 0:1"));  // counts that do not add up
}

namespace {

// An echo server with a fault: after `good` bytes it starts flipping a bit in every 1000th byte,
// or (flip = false) it closes the connection instead.
task<> faulty_server(tcp_listener* l, std::size_t good, bool flip) {
    task_group group;
    for (;;) {
        auto conn = co_await l->accept();
        if (!conn) break;
        group.spawn([](tcp_stream s, std::size_t good, bool flip) -> task<> {
            std::array<std::byte, 4096> buf;
            std::size_t seen = 0;
            for (;;) {
                auto n = co_await s.recv(buf);
                if (!n || *n == 0) break;
                for (std::size_t i = 0; i < *n; ++i, ++seen)
                    if (seen > good && seen % 1000 == 0) {
                        if (!flip) {
                            co_await s.close();
                            co_return;
                        }
                        buf[i] ^= std::byte{0x10};
                    }
                auto sent = co_await s.write_all(std::span(buf).first(*n));
                if (!sent) break;
            }
            co_await s.close();
        }(std::move(*conn), good, flip));
    }
    co_await group.cancel_and_join();
}

load::results run_against(test_core& c, bool flip) {
    load::results out;
    load::live_counters live;
    c.run_for(30s, [](bool flip, load::results* out, load::live_counters* live) -> task<> {
        auto listener = tcp_listener::bind("127.0.0.1:0");
        REQUIRE(listener);
        load::settings s;
        s.target = *listener->local_address();
        s.conns = 8;
        s.depth = 4;
        s.size_min = 100;
        s.size_max = 3000;
        s.duration = 1;
        s.warmup = 0;
        s.reply_timeout = 2000ms;
        task_group server;
        server.spawn(faulty_server(&*listener, 50'000, flip));
        co_await load::run_share(s, 0, s.conns, out, live);
        co_await listener->close();
        co_await server.join();
    }(flip, &out, &live));
    return out;
}

}  // namespace

TEST_CASE("coring-load counts every corrupted reply and every connection the server drops", "[load]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    test_core c{kind};
    const load::results corrupted = run_against(c, true);
    INFO("first error: " << corrupted.first_error);
    CHECK(corrupted.connected == 8);
    CHECK(corrupted.errors.verify == 8);  // each connection stops at its first bad reply
    CHECK(corrupted.errors.total() == 8);
    CHECK(corrupted.messages > 0);        // what came before the fault was verified and counted
    CHECK_THAT(corrupted.first_error, Catch::Contains("differs"));

    const load::results dropped = run_against(c, false);
    INFO("first error: " << dropped.first_error);
    CHECK(dropped.errors.eof + dropped.errors.io == 8);
    CHECK(dropped.errors.verify == 0);
}

TEST_CASE("coring-load against nothing: every connection is a counted connect error", "[load]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    test_core c{kind};
    load::results out;
    load::live_counters live;
    c.run_for(10s, [](load::results* out, load::live_counters* live) -> task<> {
        // A port that was free a moment ago: bound, then closed, so nothing listens there.
        auto l = tcp_listener::bind("127.0.0.1:0");
        REQUIRE(l);
        load::settings s;
        s.target = *l->local_address();
        co_await l->close();
        s.conns = 5;
        s.duration = 0.2;
        co_await load::run_share(s, 0, s.conns, out, live);
    }(&out, &live));
    CHECK(out.errors.connect == 5);
    CHECK(out.connected == 0);
    CHECK_THAT(out.first_error, Catch::Contains("refused"));
}
