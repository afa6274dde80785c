// Send paths: plain sends, zerocopy sends (SEND_ZC) and zerocopy sends from registered pool
// buffers on io_uring, plain sends on epoll, and SQ polling. Every byte is checked; a zerocopy
// send must not resume its caller before the kernel's notification, even when cancelled.
#include "echo_server.hpp"
#include "support.hpp"

#include <sys/socket.h>
#include <unistd.h>

using namespace coring;
using namespace coring::testing;

namespace {

struct send_setup {
    backend_kind kind;
    bool zc;
    bool registered;
};

std::string describe(const send_setup& s) {
    if (s.kind == backend_kind::epoll) return "epoll";
    return std::string{"uring, zerocopy "} + (s.zc ? "on" : "off") + ", registered buffers " + (s.registered ? "on" : "off");
}

#define SEND_SETUPS                                                                                        \
    send_setup{backend_kind::uring, true, true}, send_setup{backend_kind::uring, true, false},             \
        send_setup{backend_kind::uring, false, false}, send_setup{backend_kind::epoll, false, false}

backend_config config_of(const send_setup& s, std::uint32_t zc_threshold = 16384) {
    backend_config cfg{s.kind};
    cfg.send_zc = s.zc;
    cfg.registered_buffers = s.registered;
    cfg.zc_threshold = zc_threshold;
    return cfg;
}

// Writes `data` with one write_all, then half-closes.
task<> write_then_shutdown(tcp_stream* conn, const std::vector<std::byte>* data) {
    CO_REQUIRE(co_await conn->write_all(*data));
    CO_REQUIRE(co_await conn->shutdown(SHUT_WR));
}

// Everything until EOF.
task<std::vector<std::byte>> read_to_end(tcp_stream* conn) {
    std::vector<std::byte> got;
    std::vector<std::byte> buf(100'003);
    for (;;) {
        auto n = co_await conn->recv(buf);
        REQUIRE(n);
        if (*n == 0) break;
        got.insert(got.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*n));
    }
    co_return got;
}

// payload through write_all from one end of a loopback pair to the other.
task<std::vector<std::byte>> one_way(const std::vector<std::byte>* payload) {
    auto [client, server] = co_await connected_pair();
    task_group group;
    group.spawn(write_then_shutdown(&client, payload));
    auto got = co_await read_to_end(&server);
    co_await group.join();
    co_await client.close();
    co_await server.close();
    co_return got;
}

// payload through an echo server on this core (recv_lease, then write_all from the lease).
task<std::vector<std::byte>> through_echo(address server, const std::vector<std::byte>* payload) {
    auto conn = co_await tcp_stream::connect(server);
    REQUIRE(conn);
    task_group group;
    group.spawn(write_then_shutdown(&*conn, payload));
    auto got = co_await read_to_end(&*conn);
    co_await group.join();
    co_await conn->close();
    co_return got;
}

// Sends far more than the socket buffers hold to a peer that never reads, until `limit`.
task<std::error_code> send_to_stuck_peer(std::chrono::milliseconds limit, std::size_t bytes) {
    auto [client, server] = co_await connected_pair();
    std::error_code error;
    {
        const std::vector<std::byte> data = random_bytes(bytes, 3);
        const auto sent = co_await with_timeout(limit, client.write_all(data));
        if (!sent) error = sent.error();
    }  // the buffer goes here: the kernel must be done with it
    co_await client.close();
    co_await server.close();
    co_return error;
}

// The same, ended by cancelling the writer's task_group instead of a deadline.
task<> write_forever(tcp_stream* conn, const std::vector<std::byte>* data, std::error_code* error) {
    const auto sent = co_await conn->write_all(*data);
    if (!sent) *error = sent.error();
}

task<std::error_code> cancel_writer_of_stuck_peer(std::size_t bytes) {
    auto [client, server] = co_await connected_pair();
    const std::vector<std::byte> data = random_bytes(bytes, 4);
    std::error_code error;
    task_group group;
    group.spawn(write_forever(&client, &data, &error));
    // Let the write fill the socket buffers and block; a bounded number of turns, no clock.
    for (int i = 0; i < 50; ++i) co_await yield();
    co_await group.cancel_and_join();
    co_await client.close();
    co_await server.close();
    co_return error;
}

// A zerocopy notification is owed by no op once its caller resumed: every send counted.
void check_notifications(core& c) {
    const backend_stats& s = c.io().stats();
    CHECK(s.zc_notifications == s.zc_sends);
}

}  // namespace

TEST_CASE("write_all delivers large payloads byte for byte on every send path", "[tcp][send-paths]") {
    const auto setup = GENERATE(SEND_SETUPS);
    INFO(describe(setup));
    if (skip_without(setup.kind)) return;
    test_core c{config_of(setup)};
    const bool zc = setup.kind == backend_kind::uring && setup.zc && c->io().features().send_zc;
    for (std::size_t size : {std::size_t{16383}, std::size_t{16384}, std::size_t{16385}, std::size_t{64} << 10,
                             std::size_t{1} << 20}) {
        INFO("bytes: " << size);
        const auto payload = random_bytes(size, size);
        const std::uint64_t zc_before = c->io().stats().zc_sends;
        const auto got = c.run_for(30s, one_way(&payload));
        CHECK(got.size() == payload.size());
        CHECK(got == payload);
        // Sends of the threshold and up go zerocopy when it is on; smaller ones never do.
        const std::uint64_t zc_sends = c->io().stats().zc_sends - zc_before;
        // (Under injected faults a send may be cut below the threshold: only "never below" holds.)
        if (zc && size >= 16384 && !faults_on()) CHECK(zc_sends > 0);
        else if (!zc || size < 16384) CHECK(zc_sends == 0);
        check_notifications(c.get());
    }
}

TEST_CASE("an echo of 1 MiB through recv leases is exact, and zerocopy sends use registered buffers", "[tcp][send-paths]") {
    const auto setup = GENERATE(SEND_SETUPS);
    INFO(describe(setup));
    if (skip_without(setup.kind)) return;
    // A low threshold, so that most leases the echo writes back go zerocopy; and one lease per
    // send (no gathering: a gather send is a sendmsg, which never goes zerocopy here).
    backend_config cfg = config_of(setup, 1024);
    cfg.coalesce = false;
    cfg.fixed_files = false;  // zerocopy sends go only over real fds (uring_backend::prep_send)
    test_core c{cfg};
    auto server = apps::start_echo_server({.listen = address::ipv4_loopback(0)});
    REQUIRE(server);
    const auto payload = random_bytes(1 << 20, 11);
    for (int round = 0; round < 3; ++round) {
        const auto got = c.run_for(30s, through_echo(*server, &payload));
        CHECK(got.size() == payload.size());
        CHECK(got == payload);
    }
    const backend_stats& s = c->io().stats();
    const backend_features f = c->io().features();
    CHECK(f.send_zc_on == (setup.kind == backend_kind::uring && setup.zc && f.send_zc));
    CHECK(f.registered_buffers_on == (f.send_zc_on && setup.registered && f.registered_buffers));
    if (f.send_zc_on) CHECK(s.zc_sends > 0);
    if (f.registered_buffers_on) CHECK(s.fixed_sends > 0);
    else CHECK(s.fixed_sends == 0);
    check_notifications(c.get());
}

TEST_CASE("a zerocopy send cancelled while its peer does not read resumes only after its notification",
          "[tcp][send-paths][cancel]") {
    const auto setup = GENERATE(SEND_SETUPS);
    INFO(describe(setup));
    if (skip_without(setup.kind)) return;
    test_core c{config_of(setup)};
    const bool zc = c->io().features().send_zc_on;
    // 64 MiB never fit in loopback socket buffers: the send blocks until its deadline.
    CHECK(c.run_for(30s, send_to_stuck_peer(200ms, 64 << 20)) == std::errc::timed_out);
    check_notifications(c.get());
    CHECK(c->io().stats().zc_resets == (zc ? 1u : 0u));
    const auto error = c.run_for(30s, cancel_writer_of_stuck_peer(64 << 20));
    CHECK(error == std::errc::operation_canceled);
    check_notifications(c.get());
}

TEST_CASE("a zerocopy send the socket refuses (EOPNOTSUPP on a Unix socket) goes again as a plain send",
          "[tcp][send-paths]") {
    if (skip_without(backend_kind::uring)) return;
    test_core c{config_of({backend_kind::uring, true, true})};
    if (!c->io().features().send_zc_on) return;
    const auto where = address::parse("unix:@coring-send-paths-" + std::to_string(::getpid()));
    REQUIRE(where);
    auto server = apps::start_echo_server({.listen = *where});
    REQUIRE(server);
    const auto payload = random_bytes(256 << 10, 5);
    for (int round = 0; round < 2; ++round) {
        const auto got = c.run_for(30s, through_echo(*server, &payload));
        CHECK(got == payload);
    }
    const backend_stats& s = c->io().stats();
    CHECK(s.zc_fallbacks > 0);
    CHECK(s.zc_fallbacks <= 4);  // once per socket: later sends on it go plain at once
    check_notifications(c.get());
}

TEST_CASE("echo round trips on a core whose ring is polled by a kernel SQ thread (SQPOLL)", "[tcp][send-paths][sqpoll]") {
    if (skip_without(backend_kind::uring)) return;
    backend_config cfg{backend_kind::uring};
    cfg.sqpoll = true;
    test_core c{cfg};
    const backend_features f = c->io().features();
    if (f.sqpoll) {
        CHECK(f.sqpoll_on);
        CHECK(c->io().describe().find("SQPOLL") != std::string::npos);
    }
    auto server = apps::start_echo_server({.listen = address::ipv4_loopback(0)});
    REQUIRE(server);
    for (std::size_t size : {std::size_t{64}, std::size_t{16384}, std::size_t{1} << 20}) {
        const auto payload = random_bytes(size, size + 1);
        const auto got = c.run_for(30s, through_echo(*server, &payload));
        CHECK(got == payload);
    }
    check_notifications(c.get());
}
