// Faults on purpose (runtime/coring/faults.hpp): the setting's syntax, and real transfers over
// loopback under every fault the kernel may legally give, on each backend setup: every byte
// arrives, in order, and each fault kind that setup can meet was met.
#include "support.hpp"

#include <coring/faults.hpp>

using namespace coring;
using namespace coring::testing;

TEST_CASE("--faults takes SEED or SEED:NAME=RATE,... and says what is wrong", "[faults]") {
    auto off = fault_config::parse("");
    REQUIRE(off);
    CHECK_FALSE(off->on);
    CHECK_FALSE(fault_config::parse("off")->on);

    auto bare = fault_config::parse("42");
    REQUIRE(bare);
    CHECK(bare->on);
    CHECK(bare->seed == 42);
    CHECK(bare->rates[static_cast<std::size_t>(fault::reset)] == 0.0);  // a peer would see it: only when named
    CHECK(bare->rates[static_cast<std::size_t>(fault::short_io)] > 0.0);

    auto named = fault_config::parse("7:reset=0.01,short_io=1,eagain=0");
    REQUIRE(named);
    CHECK(named->seed == 7);
    CHECK(named->rates[static_cast<std::size_t>(fault::reset)] == 0.01);
    CHECK(named->rates[static_cast<std::size_t>(fault::short_io)] == 1.0);
    CHECK(named->rates[static_cast<std::size_t>(fault::eagain)] == 0.0);
    CHECK(named->rates[static_cast<std::size_t>(fault::delay)] == bare->rates[static_cast<std::size_t>(fault::delay)]);
    CHECK_THAT(named->describe(), Catch::Contains("seed 7:") && Catch::Contains("reset 0.01"));

    for (const char* bad : {"x", "-1", "7:", "7:short_io", "7:bogus=0.1", "7:short_io=2", "7:short_io=-0.1",
                            "7:short_io=0.1,", "7:short_io=abc"}) {
        INFO("--faults " << bad);
        std::string why;
        CHECK_FALSE(fault_config::parse(bad, &why));
        CHECK_FALSE(why.empty());
    }
}

namespace {

// The server side: echoes what arrives, several leases at a time in one gather send when
// they are there, so both the plain and the gather send paths meet the faults.
task<> echo_gathering(tcp_stream conn) {
    for (;;) {
        auto first = co_await conn.recv_lease();
        if (!first || first->empty()) break;
        std::vector<buffer_lease> leases;
        leases.push_back(std::move(*first));
        while (leases.size() < 8)
            if (auto more = conn.try_recv_lease(); more && !more->empty()) leases.push_back(std::move(*more));
            else break;
        std::vector<std::span<const std::byte>> pieces;
        for (auto& l : leases) pieces.emplace_back(l.data());
        const auto sent = leases.size() == 1 ? co_await conn.write_all(pieces[0]) : co_await conn.write_all(pieces);
        if (!sent) break;
    }
    co_await conn.close();
}

task<> accept_all(tcp_listener* listener, int connections, int* accepted, int* refused) {
    while (*accepted < connections) {
        auto conn = co_await listener->accept();
        if (conn) {
            ++*accepted;
            core::current().spawn(echo_gathering(std::move(*conn)));
            continue;
        }
        // Injected ECONNABORTED or EMFILE: the connection waits in the backlog, try again.
        ++*refused;
        REQUIRE((conn.error() == std::errc::connection_aborted || conn.error() == std::errc::too_many_files_open));
    }
}

// One client: `bytes` in pieces of odd sizes (several per gather send), read back and compared.
task<> client(address server, std::uint64_t seed, std::size_t bytes, int* verified) {
    auto conn = co_await tcp_stream::connect(server);
    REQUIRE(conn);
    const auto data = random_bytes(bytes, seed);
    std::vector<std::byte> back;
    back.reserve(bytes);
    task_group readers;
    core::current().spawn(read_exactly(&*conn, &back, bytes, false), readers);
    std::size_t at = 0;
    for (std::size_t k = 1; at < bytes; ++k) {
        std::vector<std::span<const std::byte>> pieces;
        for (int p = 0; p < 3 && at < bytes; ++p) {
            const std::size_t n = std::min(bytes - at, 1 + (k * 7919 + static_cast<std::size_t>(p) * 104729) % 40000);
            pieces.emplace_back(data.data() + at, n);
            at += n;
        }
        CO_REQUIRE(co_await conn->write_all(pieces));
    }
    co_await readers.join();
    REQUIRE(back.size() == bytes);
    CHECK(fnv1a(back) == fnv1a(data));
    if (back == data) ++*verified;
    co_await conn->close();
}

task<> transfers(int connections, std::size_t bytes, int* verified, int* refused) {
    auto listener = tcp_listener::bind("127.0.0.1:0");
    REQUIRE(listener);
    const auto where = listener->local_address();
    REQUIRE(where);
    int accepted = 0;
    task_group all;
    core::current().spawn(accept_all(&*listener, connections, &accepted, refused), all);
    for (int c = 0; c < connections; ++c) core::current().spawn(client(*where, 1000 + c, bytes, verified), all);
    co_await all.join();
    co_await listener->close();
}

}  // namespace

TEST_CASE("under injected faults every byte arrives in order, and each fault the setup can meet was met", "[faults][tcp]") {
    const auto setup = GENERATE(LEASE_SETUPS);
    INFO(describe(setup));
    if (skip_without(setup.kind)) return;
    // Rates well above the defaults, so a short run meets each kind many times.
    const std::uint64_t seed = GENERATE(1, 2, 3);
    INFO("replay: --faults " << seed << ":short_io=0.5,eintr=0.1,enobufs=0.1,eagain=0.3,sq_full=0.3,delay=0.3,accept=0.3");
    backend_config cfg = config_of(setup);
    cfg.faults = *fault_config::parse(std::to_string(seed) + ":short_io=0.5,eintr=0.1,enobufs=0.1,eagain=0.3,sq_full=0.3,delay=0.3,accept=0.3");
    cfg.sq_entries = 8;  // a small SQ also fills by itself
    test_core c{cfg};
    int verified = 0, refused = 0;
    c.run_for(20s, transfers(8, 1024 * 1024, &verified, &refused));
    CHECK(verified == 8);
    const fault_counts n = c->stats().faults;
    const auto met = [&](fault f) { return n[static_cast<std::size_t>(f)]; };
    CHECK(met(fault::short_io) > 0);
    CHECK(met(fault::eintr) > 0);
    if (!setup.multishot) CHECK(met(fault::enobufs) > 0);  // a multishot receive is armed a few times only
    CHECK(met(fault::delay) > 0);
    CHECK(met(fault::accept) == static_cast<std::uint64_t>(refused));
    CHECK(met(fault::reset) == 0);  // not asked for
    if (setup.kind == backend_kind::epoll) CHECK(met(fault::eagain) > 0);
    else CHECK(met(fault::sq_full) > 0);
}

TEST_CASE("an injected reset ends that connection with ECONNRESET or EPIPE, and nothing else breaks", "[faults][tcp]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    backend_config cfg{kind};
    cfg.faults = *fault_config::parse("5:reset=1,short_io=0,eintr=0,enobufs=0,eagain=0,sq_full=0,delay=0,accept=0");
    test_core c{cfg};
    c.run_for(5s, []() -> task<> {
        auto [client, server] = co_await connected_pair();
        std::array<std::byte, 16> buf{};
        auto got = co_await server.recv(buf);
        REQUIRE_FALSE(got);
        CHECK(got.error() == std::errc::connection_reset);
        auto sent = co_await client.send(as_bytes("x"));
        REQUIRE_FALSE(sent);
        CHECK(sent.error() == std::errc::broken_pipe);
        co_await client.close();
        co_await server.close();
    }());
    CHECK(c->stats().faults[static_cast<std::size_t>(fault::reset)] == 2);
}
