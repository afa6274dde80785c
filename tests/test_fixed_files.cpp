// Direct descriptors (io_uring's registered file table): accepted sockets live in the table, their
// ops name the slot, a user who asks gets a real fd, a full table falls back per connection, and
// every slot comes back however the socket ends. Over real loopback sockets; each case runs with
// fixed files on and off (and on epoll, where there are none) unless it is about the table.
#include "echo_server.hpp"
#include "support.hpp"

#include <array>
#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

using namespace coring;
using namespace coring::testing;

namespace {

struct fixed_setup {
    backend_kind kind;
    bool fixed_files;
};

std::string describe(const fixed_setup& s) {
    return std::string{to_string(s.kind)} + (s.kind == backend_kind::uring ? (s.fixed_files ? " fixed files on" : " fixed files off") : "");
}

#define FIXED_SETUPS                                                  \
    fixed_setup{backend_kind::uring, true}, fixed_setup{backend_kind::uring, false}, \
        fixed_setup{backend_kind::epoll, false}

backend_config config_of(const fixed_setup& s, unsigned slots = 0) {
    backend_config cfg{s.kind};
    cfg.fixed_files = s.fixed_files;
    cfg.fixed_file_slots = slots;
    return cfg;
}

// True when the case cannot run as asked here (no io_uring, or a kernel without direct
// descriptors while the case wants them); says so.
bool skip(test_core& c, const fixed_setup& s) {
    if (s.fixed_files && !c->io().features().fixed_files) {
        WARN("io_uring direct descriptors unavailable here (Linux 6.8): case skipped");
        return true;
    }
    return false;
}

// The process's open fds (entries of /proc/self/fd, minus the directory's own).
int open_fds() {
    DIR* d = ::opendir("/proc/self/fd");
    REQUIRE(d);
    int n = 0;
    while (const dirent* e = ::readdir(d))
        if (e->d_name[0] != '.') ++n;
    ::closedir(d);
    return n - 1;
}

// Sends msg and reads exactly as many bytes back; true when they match.
task<bool> echo_once(tcp_stream* s, std::string msg) {
    if (auto sent = co_await s->write_all(as_bytes(msg)); !sent) co_return false;
    std::string got;
    std::array<std::byte, 256> buf;
    while (got.size() < msg.size()) {
        auto n = co_await s->recv(std::span(buf).first(std::min(buf.size(), msg.size() - got.size())));
        if (!n || *n == 0) co_return false;
        got.append(reinterpret_cast<const char*>(buf.data()), *n);
    }
    co_return got == msg;
}

// Waits (yielding to the loop, at most ~2 s) until the table has `want` free slots; returns the
// count it saw last. Closes of the server's connections finish on their own schedule.
task<unsigned> free_slots_reach(unsigned want) {
    backend& io = core::current().io();
    for (int i = 0; i < 2000 && io.direct_slots_free() != want; ++i) (void)co_await sleep_for(1ms);
    co_return io.direct_slots_free();
}

// One client: connects, proves one echo, waits until every client is up (so all hold a
// connection at once), proves more, closes.
task<> held_client(address server, int id, event* all_up, int* up, int clients, int* verified) {
    auto conn = co_await tcp_stream::connect(server);
    if (!conn) co_return;
    const bool first = co_await echo_once(&*conn, "client " + std::to_string(id) + " first;");
    if (!first) co_return;
    if (++*up == clients) all_up->set();
    (void)co_await all_up->wait();
    bool ok = true;
    for (int m = 0; m < 10 && ok; ++m) ok = co_await echo_once(&*conn, "client " + std::to_string(id) + " #" + std::to_string(m));
    if (ok) ++*verified;
    co_await conn->close();
}

task<int> held_clients(address server, int clients) {
    event all_up;
    int up = 0, verified = 0;
    task_group group;
    for (int i = 0; i < clients; ++i) group.spawn(held_client(server, i, &all_up, &up, clients, &verified));
    co_await group.join();
    co_return verified;
}

}  // namespace

TEST_CASE("accepted connections echo with fixed files on and off", "[tcp][fixed]") {
    const auto setup = GENERATE(FIXED_SETUPS);
    INFO(describe(setup));
    if (skip_without(setup.kind)) return;
    test_core c{config_of(setup)};
    if (skip(c, setup)) return;
    const unsigned slots = c->io().direct_slots_free();
    CHECK(slots == (setup.fixed_files ? c->io().features().fixed_file_slots : 0));

    // The accepted end is direct exactly when fixed files are on; the connecting end never is.
    auto [client, server] = c.run_for(5s, connected_pair());
    CHECK(server.is_direct() == setup.fixed_files);
    CHECK_FALSE(client.is_direct());
    c.run_for(5s, server.close());
    c.run_for(5s, client.close());

    auto where = apps::start_echo_server({.listen = address::ipv4_loopback(0)});
    REQUIRE(where);
    CHECK(c.run_for(30s, held_clients(*where, 50)) == 50);
    if (setup.fixed_files) CHECK(c.run_for(5s, free_slots_reach(slots)) == slots);  // every slot came back
}

TEST_CASE("a full file table falls back per connection: 10 clients on 4 slots all echo", "[tcp][fixed]") {
    const fixed_setup setup{backend_kind::uring, true};
    if (skip_without(setup.kind)) return;
    const int fds_before = open_fds();
    {
        test_core c{config_of(setup, 4)};
        if (skip(c, setup)) return;
        REQUIRE(c->io().direct_slots_free() == 4);
        auto where = apps::start_echo_server({.listen = address::ipv4_loopback(0)});
        REQUIRE(where);
        // All 10 hold their connection at once: 4 get slots, 6 get real fds, and none is lost
        // (the kernel closes a connection it accepted into a full table, so the backend must never
        // let it try).
        CHECK(c.run_for(30s, held_clients(*where, 10)) == 10);
        CHECK(c->stats().backend.direct_fallbacks >= 6);
        CHECK(c.run_for(5s, free_slots_reach(4)) == 4);
        // And once slots are free again, new connections take them.
        auto [client, server] = c.run_for(5s, connected_pair());
        CHECK(server.is_direct());
        c.run_for(5s, server.close());
        c.run_for(5s, client.close());
        CHECK(c.run_for(5s, free_slots_reach(4)) == 4);
    }
    CHECK(open_fds() == fds_before);  // every fallback fd was closed too
}

TEST_CASE("fd(), peer_address and set_nodelay work on a direct socket", "[tcp][fixed]") {
    const auto setup = GENERATE(FIXED_SETUPS);
    INFO(describe(setup));
    if (skip_without(setup.kind)) return;
    test_core c{config_of(setup)};
    if (skip(c, setup)) return;
    auto [client, server] = c.run_for(5s, connected_pair());
    REQUIRE(server.is_direct() == setup.fixed_files);

    // TCP_NODELAY without a real fd (a socket command on io_uring), then read back through one.
    REQUIRE(server.set_nodelay(true));
    const std::uint64_t installs_before = c->stats().backend.fd_installs;
    const int fd = server.fd();
    REQUIRE(fd >= 0);
    CHECK_FALSE(is_direct_fd(fd));
    CHECK(server.fd() == fd);  // made once, kept
    CHECK(c->stats().backend.fd_installs - installs_before == (setup.fixed_files ? 1u : 0u));
    int nodelay = 0;
    socklen_t len = sizeof nodelay;
    REQUIRE(::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len) == 0);
    CHECK(nodelay == 1);
    REQUIRE(server.set_nodelay(false));
    REQUIRE(::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len) == 0);
    CHECK(nodelay == 0);

    const auto peer = server.peer_address();
    const auto client_side = client.local_address();
    REQUIRE(peer);
    REQUIRE(client_side);
    CHECK(peer->to_string() == client_side->to_string());
    REQUIRE(server.local_address());
    CHECK(server.local_address()->to_string() == client.peer_address()->to_string());

    // A user's option through the fd shapes the socket the ops use: a 1-byte SO_RCVBUF is the
    // kernel's minimum, and the transfer still completes.
    const int small = 1;
    REQUIRE(::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0);
    struct pair_echo {
        static task<bool> run(tcp_stream* from, tcp_stream* to) {
            const std::string msg(10000, 'x');
            task_group g;
            bool sent = false;
            struct sender {
                static task<> run(tcp_stream* s, std::string m, bool* ok) { *ok = static_cast<bool>(co_await s->write_all(as_bytes(m))); }
            };
            g.spawn(sender::run(from, msg, &sent));
            std::string got;
            std::array<std::byte, 4096> buf;
            while (got.size() < msg.size()) {
                auto n = co_await to->recv(buf);
                if (!n || *n == 0) break;
                got.append(reinterpret_cast<const char*>(buf.data()), *n);
            }
            co_await g.join();
            co_return sent && got == msg;
        }
    };
    CHECK(c.run_for(5s, pair_echo::run(&client, &server)));
    CHECK(c.run_for(5s, pair_echo::run(&server, &client)));

    // Closing the socket closes the fd it made as well.
    c.run_for(5s, server.close());
    const int still_open = ::fcntl(fd, F_GETFD);
    const int error = errno;
    CHECK(still_open == -1);
    CHECK(error == EBADF);
    c.run_for(5s, client.close());
}

namespace {

// A receive waits on the accepted end; the socket is closed (or dropped) under it.
task<std::error_code> close_under_recv(bool by_destructor) {
    auto [client, server] = co_await connected_pair();
    std::error_code seen;
    struct reader {
        static task<> run(tcp_stream* s, std::error_code* out) {
            std::array<std::byte, 64> buf;
            auto n = co_await s->recv(buf);
            *out = n ? std::error_code{} : n.error();
        }
    };
    task_group g;
    g.spawn(reader::run(&server, &seen));
    (void)co_await sleep_for(5ms);  // let the receive reach the kernel (either way it must end)
    if (by_destructor) {
        // The destructor's path: it cancels the receive in flight, then closes without waiting.
        { tcp_stream gone = std::move(server); }
        co_await g.join();
    } else {
        co_await server.close();
        co_await g.join();
    }
    // The peer sees the socket really closed: end of stream.
    std::array<std::byte, 16> buf;
    auto n = co_await client.recv(buf);
    REQUIRE(n);
    CHECK(*n == 0);
    co_await client.close();
    co_return seen;
}

}  // namespace

TEST_CASE("close and cancel under a receive free the slot and close the socket", "[tcp][fixed][cancel]") {
    const auto setup = GENERATE(FIXED_SETUPS);
    const bool by_destructor = GENERATE(false, true);
    INFO(describe(setup) << (by_destructor ? ", destructor" : ", close()"));
    if (skip_without(setup.kind)) return;
    test_core c{config_of(setup)};
    if (skip(c, setup)) return;
    const unsigned slots = c->io().direct_slots_free();
    CHECK(c.run_for(5s, close_under_recv(by_destructor)) == std::errc::operation_canceled);
    CHECK(c.run_for(5s, free_slots_reach(slots)) == slots);
}

namespace {

// Connections the kernel accepted into the feed (a multishot accept stays armed) and nobody took:
// ending the feed closes them, through the ring for direct ones. `stop`: by the core's graceful
// stop rather than by closing the listener.
task<int> queued_then_dropped(bool stop, unsigned slots) {
    backend& io = core::current().io();
    auto listener = tcp_listener::bind(address::ipv4_loopback(0));
    REQUIRE(listener);
    const auto where = listener->local_address();
    REQUIRE(where);
    std::vector<tcp_stream> clients;
    auto first = co_await tcp_stream::connect(*where);
    REQUIRE(first);
    auto taken = co_await listener->accept();  // the feed exists, its accept stays armed
    REQUIRE(taken);
    for (int i = 0; i < 5; ++i) {
        auto c = co_await tcp_stream::connect(*where);
        REQUIRE(c);
        clients.push_back(std::move(*c));
    }
    if (io.features().fixed_files && io.features().multishot_accept) {
        // They are accepted into slots without anyone asking: 1 taken + 5 queued.
        CHECK(co_await free_slots_reach(slots - 6) == slots - 6);
    }
    if (stop) core::current().request_stop();  // ends every accept feed (on_stop)
    else co_await listener->close();
    if (io.features().fixed_files && io.features().multishot_accept) {
        CHECK(co_await free_slots_reach(slots - 1) == slots - 1);  // only `taken` holds one now
    }
    if (stop) co_await listener->close();  // on epoll the 5 still wait in the kernel's backlog
    int closed = 0;
    for (auto& c : clients) {
        std::array<std::byte, 16> buf;
        auto n = co_await c.recv(buf);  // end of stream, or a reset
        if (!n || *n == 0) ++closed;
        co_await c.close();
    }
    co_await taken->close();
    co_await first->close();
    if (io.features().fixed_files) CHECK(co_await free_slots_reach(slots) == slots);
    co_return closed;
}

}  // namespace

TEST_CASE("connections queued in the accept feed are closed when the feed ends", "[tcp][fixed]") {
    const auto setup = GENERATE(FIXED_SETUPS);
    const bool stop = GENERATE(false, true);
    INFO(describe(setup) << (stop ? ", graceful stop" : ", listener closed"));
    if (skip_without(setup.kind)) return;
    const int fds_before = open_fds();
    {
        test_core c{config_of(setup)};
        if (skip(c, setup)) return;
        const unsigned slots = c->io().direct_slots_free();
        CHECK(c.run_for(5s, queued_then_dropped(stop, slots)) == 5);
    }
    CHECK(open_fds() == fds_before);
}
