// TCP over real loopback sockets, every case on both backends.
#include "echo_server.hpp"
#include "support.hpp"

#include <array>
#include <cstring>
#include <csignal>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace coring;
using namespace coring::testing;

namespace {

// Connects, sends `message`, reads back exactly as many bytes, returns them.
task<std::string> round_trip(address server, std::string message) {
    auto conn = co_await tcp_stream::connect(server);
    REQUIRE(conn);
    CO_REQUIRE(co_await conn->write_all(as_bytes(message)));
    std::string echoed;
    std::array<std::byte, 1024> buf;
    while (echoed.size() < message.size()) {
        auto n = co_await conn->recv(buf);
        REQUIRE(n);
        if (*n == 0) break;
        echoed.append(reinterpret_cast<const char*>(buf.data()), *n);
    }
    co_await conn->close();
    co_return echoed;
}

// One of many clients: `messages` request/response rounds, each message unique to (id, round).
task<> echo_client(address server, int id, int messages, int* verified, int* failed) {
    auto conn = co_await tcp_stream::connect(server);
    if (!conn) {
        ++*failed;
        co_return;
    }
    std::array<std::byte, 256> buf;
    for (int m = 0; m < messages; ++m) {
        const std::string msg = "client " + std::to_string(id) + " message " + std::to_string(m) + ";";
        const auto sent = co_await conn->write_all(as_bytes(msg));
        if (!sent) {
            ++*failed;
            co_return;
        }
        std::size_t got = 0;
        while (got < msg.size()) {
            auto n = co_await conn->recv(std::span(buf).first(msg.size() - got));
            if (!n || *n == 0 || std::memcmp(buf.data(), msg.data() + got, *n) != 0) {
                ++*failed;
                co_return;
            }
            got += *n;
        }
    }
    ++*verified;
    co_await conn->close();
}

task<std::pair<int, int>> many_clients(address server, int clients, int messages) {
    int verified = 0, failed = 0;
    task_group group;
    for (int i = 0; i < clients; ++i) group.spawn(echo_client(server, i, messages, &verified, &failed));
    co_await group.join();
    co_return std::pair{verified, failed};
}

// Sends `data` in chunks whose sizes cycle through odd primes.
task<> send_in_odd_chunks(tcp_stream* conn, const std::vector<std::byte>* data) {
    static constexpr std::size_t sizes[] = {1, 7, 251, 4093, 65521, 3, 1021, 131071};
    std::size_t off = 0;
    for (std::size_t i = 0; off < data->size(); ++i) {
        const std::size_t n = std::min(sizes[i % std::size(sizes)], data->size() - off);
        CO_REQUIRE(co_await conn->write_all(std::span(*data).subspan(off, n)));
        off += n;
    }
    CO_REQUIRE(co_await conn->shutdown(SHUT_WR));
}

task<std::pair<std::size_t, std::uint64_t>> transfer_64mib(address server, const std::vector<std::byte>* data) {
    auto conn = co_await tcp_stream::connect(server);
    REQUIRE(conn);
    task_group group;
    group.spawn(send_in_odd_chunks(&*conn, data));  // the writer; this task reads
    std::vector<std::byte> buf(70001);
    static constexpr std::size_t reads[] = {13, 70001, 509, 8191, 1};
    std::size_t total = 0;
    std::uint64_t hash = fnv1a({});
    for (std::size_t i = 0;; ++i) {
        auto n = co_await conn->recv(std::span(buf).first(reads[i % std::size(reads)]));
        REQUIRE(n);
        if (*n == 0) break;
        hash = fnv1a(std::span(buf).first(*n), hash);
        total += *n;
    }
    co_await group.join();
    co_await conn->close();
    co_return std::pair{total, hash};
}

task<tcp_stream> accept_one(tcp_listener* listener) {
    auto conn = co_await listener->accept();
    REQUIRE(conn);
    co_return std::move(*conn);
}

// A connected pair on loopback: {server side, client side}.
task<std::pair<tcp_stream, tcp_stream>> connected_pair() {
    auto listener = tcp_listener::bind(address::ipv4_loopback(0));
    REQUIRE(listener);
    const auto where = listener->local_address();
    REQUIRE(where);
    task_group group;
    tcp_stream server;
    struct acceptor {
        static task<> run(tcp_listener* l, tcp_stream* out) { *out = co_await accept_one(l); }
    };
    group.spawn(acceptor::run(&*listener, &server));
    auto client = co_await tcp_stream::connect(*where);
    REQUIRE(client);
    co_await group.join();
    co_return std::pair{std::move(server), std::move(*client)};
}

}  // namespace

TEST_CASE("echo round trip over IPv4, IPv6 and a Unix socket", "[tcp]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    test_core c{kind};
    auto v4 = apps::start_echo_server({.listen = address::ipv4_loopback(0)});
    REQUIRE(v4);
    CHECK(c.run_for(5s, round_trip(*v4, "hello, coring")) == "hello, coring");

    if (auto v6 = apps::start_echo_server({.listen = address::ipv6_loopback(0)})) {
        CHECK(c.run_for(5s, round_trip(*v6, "over ::1")) == "over ::1");
    } else {
        WARN("IPv6 loopback unavailable: " << v6.error().message());
    }

    const std::string path = "/tmp/coring-test-" + std::to_string(::getpid()) + "-" + std::string{to_string(kind)};
    ::unlink(path.c_str());
    auto unix_addr = address::parse("unix:" + path);
    REQUIRE(unix_addr);
    auto local = apps::start_echo_server({.listen = *unix_addr});
    REQUIRE(local);
    CHECK(c.run_for(5s, round_trip(*local, "over a unix socket")) == "over a unix socket");
    ::unlink(path.c_str());
}

TEST_CASE("1,000 concurrent clients each echo 100 messages, every byte verified", "[tcp][load]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    test_core c{kind};
    auto server = apps::start_echo_server({.listen = address::ipv4_loopback(0)});
    REQUIRE(server);
    const auto [verified, failed] = c.run_for(120s, many_clients(*server, 1000, 100));
    CHECK(failed == 0);
    CHECK(verified == 1000);
}

TEST_CASE("a 64 MiB transfer in odd chunk sizes arrives intact", "[tcp][bulk]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    test_core c{kind};
    auto server = apps::start_echo_server({.listen = address::ipv4_loopback(0)});
    REQUIRE(server);
    const auto data = random_bytes(64 << 20, 64);
    const auto [total, hash] = c.run_for(120s, transfer_64mib(*server, &data));
    CHECK(total == data.size());
    CHECK(hash == fnv1a(data));
}

namespace {

task<std::error_code> recv_after_peer_reset() {
    auto [server, client] = co_await connected_pair();
    const linger abort_on_close{1, 0};  // close() sends RST instead of FIN
    REQUIRE(::setsockopt(client.fd(), SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close) == 0);
    CO_REQUIRE(co_await client.write_all(as_bytes("some bytes, then a reset")));
    co_await client.close();
    std::array<std::byte, 64> buf;
    for (;;) {  // the bytes may or may not arrive before the reset; the reset must
        auto n = co_await server.recv(buf);
        if (!n) co_return n.error();
        if (*n == 0) co_return std::error_code{};
    }
}

task<std::error_code> send_after_peer_reset() {
    auto [server, client] = co_await connected_pair();
    const linger abort_on_close{1, 0};
    REQUIRE(::setsockopt(client.fd(), SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close) == 0);
    co_await client.close();
    const std::vector<std::byte> chunk(64 * 1024);
    for (int i = 0; i < 100; ++i) {  // the first send may be accepted; a later one must fail
        auto r = co_await server.write_all(chunk);
        if (!r) co_return r.error();
    }
    co_return std::error_code{};
}

task<std::string> half_close(address server) {
    auto conn = co_await tcp_stream::connect(server);
    REQUIRE(conn);
    CO_REQUIRE(co_await conn->write_all(as_bytes("last words")));
    CO_REQUIRE(co_await conn->shutdown(SHUT_WR));  // we are done sending; keep reading
    std::string echoed;
    std::array<std::byte, 64> buf;
    for (;;) {
        auto n = co_await conn->recv(buf);
        REQUIRE(n);
        if (*n == 0) break;  // the server saw our FIN, echoed everything, and closed
        echoed.append(reinterpret_cast<const char*>(buf.data()), *n);
    }
    co_return echoed;
}

task<std::vector<std::byte>> write_all_to_slow_reader(const std::vector<std::byte>* payload, std::size_t* short_sends) {
    auto [server, client] = co_await connected_pair();
    const int small = 16 * 1024;  // much smaller and loopback TCP crawls on delayed ACKs
    REQUIRE(::setsockopt(client.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0);
    REQUIRE(::setsockopt(server.fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
    std::vector<std::byte> received;
    task_group group;
    group.spawn(read_exactly(&client, &received, payload->size(), true));
    // One plain send first: with these buffers it must come back short.
    auto first = co_await server.send(*payload);
    REQUIRE(first);
    if (*first < payload->size()) ++*short_sends;
    CO_REQUIRE(co_await server.write_all(std::span(*payload).subspan(*first)));
    co_await group.join();
    co_return received;
}

task<std::error_code> recv_on(tcp_stream* conn) {
    std::array<std::byte, 16> buf;
    auto n = co_await conn->recv(buf);
    co_return n ? std::error_code{} : n.error();
}

task<> store_recv_error(tcp_stream* conn, std::error_code* out) { *out = co_await recv_on(conn); }

task<std::error_code> close_with_recv_in_flight() {
    auto [server, client] = co_await connected_pair();
    std::error_code seen = make_error_code(std::errc::interrupted);
    task_group group;
    group.spawn(store_recv_error(&server, &seen));  // blocks: the client never sends
    co_await yield();                               // let it reach the kernel
    co_await yield();
    co_await server.close();                        // cancels that recv, then closes
    co_await group.join();
    CHECK_FALSE(server.is_open());
    co_return seen;
}

task<std::pair<int, int>> cancel_blocked_receivers(int n) {
    std::vector<std::pair<tcp_stream, tcp_stream>> pairs;
    for (int i = 0; i < n; ++i) pairs.push_back(co_await connected_pair());
    std::vector<std::error_code> errors(n, make_error_code(std::errc::interrupted));
    task_group group;
    for (int i = 0; i < n; ++i) group.spawn(store_recv_error(&pairs[i].first, &errors[i]));
    co_await yield();
    co_await yield();
    co_await group.cancel_and_join();
    int cancelled = 0, other = 0;
    for (auto& e : errors) (e == std::errc::operation_canceled ? cancelled : other)++;
    co_return std::pair{cancelled, other};
}

task<std::error_code> connect_error(address where) {
    auto conn = co_await tcp_stream::connect(where);
    co_return conn ? std::error_code{} : conn.error();
}

task<std::string> recv_text(tcp_stream& s) {
    std::array<std::byte, 64> buf;
    auto n = co_await s.recv(buf);
    REQUIRE(n);
    co_return std::string(reinterpret_cast<const char*>(buf.data()), *n);
}

// After a short receive the epoll backend takes the stream for drained and parks the next one
// without a syscall (epoll_backend.hpp): what comes next, bytes, or bytes and the FIN together,
// whether the edge came before or after the receive started, must still arrive.
task<std::vector<std::string>> receives_after_short_reads() {
    auto [client, server] = co_await connected_pair();
    std::vector<std::string> got;
    CO_REQUIRE(co_await client.write_all(as_bytes("a")));
    got.push_back(co_await recv_text(server));  // short: 1 of 64
    CO_REQUIRE(co_await client.write_all(as_bytes("bc")));
    got.push_back(co_await recv_text(server));  // parked, then woken by the edge
    CO_REQUIRE(co_await client.write_all(as_bytes("tail")));
    (void)co_await sleep_for(20ms);             // the bytes wait, their edge already seen
    got.push_back(co_await recv_text(server));
    task_group group;
    auto late = [](tcp_stream* c) -> task<> {
        (void)co_await sleep_for(20ms);  // the receive below waits first
        // Plain syscalls, so the byte and the FIN both arrive before the core polls again:
        // one edge reports both.
        REQUIRE(::send(c->fd(), "x", 1, MSG_NOSIGNAL) == 1);
        REQUIRE(::shutdown(c->fd(), SHUT_WR) == 0);
    };
    group.spawn(late(&client));
    got.push_back(co_await recv_text(server));  // "x", short, with the FIN reported by now
    got.push_back(co_await recv_text(server));  // the end: "" at once, not a wait for an edge
    co_await group.join();
    co_return got;
}

// TCP urgent data: a read stops at the urgent mark with bytes queued behind it, a short read
// that does not mean drained (epoll_backend.hpp). Every byte but the urgent one must arrive.
task<std::string> receive_around_urgent_data() {
    auto [client, server] = co_await connected_pair();
    const int fd = client.fd();  // plain syscalls: all three arrive before the core polls again
    REQUIRE(::send(fd, "ab", 2, MSG_NOSIGNAL) == 2);
    REQUIRE(::send(fd, "X", 1, MSG_NOSIGNAL | MSG_OOB) == 1);
    REQUIRE(::send(fd, "cd", 2, MSG_NOSIGNAL) == 2);
    CO_REQUIRE(co_await sleep_for(20ms));  // the core polls meanwhile: the edge is seen before the receive
    std::string got;
    while (got.size() < 4) {
        std::string piece = co_await recv_text(server);
        if (piece.empty()) break;
        got += piece;
    }
    co_return got;
}

}  // namespace

TEST_CASE("after a short receive, later bytes and the peer's FIN still arrive", "[tcp]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    test_core c{kind};
    const auto got = c.run_for(5s, receives_after_short_reads());
    CHECK(got == std::vector<std::string>{"a", "bc", "tail", "x", ""});
}

TEST_CASE("TCP urgent data in mid-stream strands none of the bytes behind it", "[tcp]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    test_core c{kind};
    CHECK(c.run_for(5s, receive_around_urgent_data()) == "abcd");  // the urgent byte is out of band
}

TEST_CASE("a peer reset ends that connection with ECONNRESET", "[tcp][fault]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    test_core c{kind};
    CHECK(c.run_for(5s, recv_after_peer_reset()) == std::errc::connection_reset);
}

TEST_CASE("sending to a reset peer fails with EPIPE or ECONNRESET, never SIGPIPE", "[tcp][fault]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    struct sigaction old {};
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;  // the default action would kill this process
    ::sigaction(SIGPIPE, &dfl, &old);
    test_core c{kind};
    const auto ec = c.run_for(5s, send_after_peer_reset());
    ::sigaction(SIGPIPE, &old, nullptr);
    CHECK((ec == std::errc::broken_pipe || ec == std::errc::connection_reset));
}

TEST_CASE("half-close: the server echoes everything, then closes", "[tcp]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    test_core c{kind};
    auto server = apps::start_echo_server({.listen = address::ipv4_loopback(0)});
    REQUIRE(server);
    CHECK(c.run_for(5s, half_close(*server)) == "last words");
}

TEST_CASE("the echo server keeps serving after clients reset, vanish or send nothing", "[tcp][fault]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    test_core c{kind};
    auto server = apps::start_echo_server({.listen = address::ipv4_loopback(0)});
    REQUIRE(server);
    struct misbehave {
        static task<> reset(address a) {
            auto conn = co_await tcp_stream::connect(a);
            REQUIRE(conn);
            const linger rst{1, 0};
            ::setsockopt(conn->fd(), SOL_SOCKET, SO_LINGER, &rst, sizeof rst);
            (void)co_await conn->write_all(as_bytes("partial"));
        }  // the destructor closes: an RST mid-transfer
        static task<> silent(address a) {
            auto conn = co_await tcp_stream::connect(a);
            REQUIRE(conn);
        }  // connects, sends nothing, closes
    };
    for (int i = 0; i < 20; ++i) {
        c.run_for(5s, misbehave::reset(*server));
        c.run_for(5s, misbehave::silent(*server));
    }
    CHECK(c.run_for(5s, round_trip(*server, "still here")) == "still here");
}

TEST_CASE("write_all completes against a slow reader through short sends", "[tcp][short-write]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    test_core c{kind};
    const auto payload = random_bytes(4 << 20, 7);
    std::size_t short_sends = 0;
    const auto received = c.run_for(60s, write_all_to_slow_reader(&payload, &short_sends));
    CHECK(short_sends == 1);
    CHECK(received.size() == payload.size());
    CHECK(received == payload);
}

TEST_CASE("bind reports an address in use and rejects a bad address", "[tcp][bind]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    test_core c{kind};
    auto first = tcp_listener::bind(address::ipv4_loopback(0));
    REQUIRE(first);
    const auto taken = first->local_address();
    REQUIRE(taken);
    auto second = tcp_listener::bind(*taken);  // no SO_REUSEPORT: the port is taken
    REQUIRE_FALSE(second);
    CHECK(second.error() == std::errc::address_in_use);
    CHECK(tcp_listener::bind("not an address").error() == std::errc::invalid_argument);
    CHECK(tcp_listener::bind("127.0.0.1:99999").error() == std::errc::invalid_argument);
}

TEST_CASE("connect to a closed port fails with ECONNREFUSED", "[tcp][fault]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    test_core c{kind};
    address closed;
    {
        auto l = tcp_listener::bind(address::ipv4_loopback(0));  // a port that was just free
        REQUIRE(l);
        closed = *l->local_address();
    }
    CHECK(c.run_for(5s, connect_error(closed)) == std::errc::connection_refused);
}

TEST_CASE("close() with a recv in flight cancels it, then closes the fd", "[tcp][cancel]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    test_core c{kind};
    CHECK(c.run_for(5s, close_with_recv_in_flight()) == std::errc::operation_canceled);
}

TEST_CASE("task_group cancel ends 1,000 blocked receives with ECANCELED", "[tcp][cancel]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    test_core c{kind};
    const auto [cancelled, other] = c.run_for(60s, cancel_blocked_receivers(1000));
    CHECK(cancelled == 1000);
    CHECK(other == 0);
}

TEST_CASE("a tiny submission queue (8 entries) under 200 connections loses no completion", "[tcp][pressure]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    test_core c{kind, 8};
    auto server = apps::start_echo_server({.listen = address::ipv4_loopback(0)});
    REQUIRE(server);
    const auto [verified, failed] = c.run_for(60s, many_clients(*server, 200, 20));
    CHECK(failed == 0);
    CHECK(verified == 200);
    const auto s = c->stats().backend;
    CHECK(s.cq_overflow == 0);
    if (kind == backend_kind::uring) CHECK(s.sq_full_waits > 0);
}

namespace {
task<> yield_n(int n, int* done) {
    for (int i = 0; i < n; ++i) co_await yield();
    ++*done;
}
task<> send_n(tcp_stream* conn, int n, int* done) {
    const std::array<std::byte, 100> msg{};
    for (int i = 0; i < n; ++i) {
        const auto sent = co_await conn->send(msg);
        REQUIRE(sent);
    }
    ++*done;
}
task<int> crowd_a_small_cq(int tasks) {
    auto [server, client] = co_await connected_pair();
    int done = 0;
    task_group group;
    for (int i = 0; i < tasks; ++i) group.spawn(yield_n(20, &done));
    group.spawn(send_n(&client, 20, &done));  // sends complete without the peer reading
    co_await group.join();
    co_return done;
}
}  // namespace

TEST_CASE("with a 16-entry CQ, 100 concurrent ops wait for room and all complete", "[tcp][pressure]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    test_core c{kind, 8, 16};
    CHECK(c.run_for(30s, crowd_a_small_cq(100)) == 101);
    const auto s = c->stats().backend;
    CHECK(s.cq_overflow == 0);
    if (kind == backend_kind::uring) CHECK(s.parked_for_cq > 0);
}

namespace {
task<> recv_one(tcp_stream* s, int* got) {
    std::array<std::byte, 1> b;
    const auto n = co_await s->recv(b);  // into its own buffer: a single-shot receive, counted
    CO_REQUIRE(n);
    *got += static_cast<int>(*n);
}
// 20 receives on a core with room for 14 ops: 6 park. Then the first send parks too, and every
// op in flight waits for data only a parked op can bring: no completion comes, and only the
// stall rule (10 ms without one lets the oldest parked op in) gets the sends out.
task<int> outwait_a_full_cq(int receivers) {
    std::vector<std::pair<tcp_stream, tcp_stream>> pairs;
    for (int i = 0; i < receivers; ++i) pairs.push_back(co_await connected_pair());
    int got = 0;
    task_group readers;
    for (auto& p : pairs) readers.spawn(recv_one(&p.first, &got));
    co_await yield();
    const std::array<std::byte, 1> byte{std::byte{'x'}};
    for (auto& p : pairs) CO_REQUIRE(co_await p.second.send(byte));
    co_await readers.join();
    co_return got;
}
}  // namespace

TEST_CASE("ops waiting for CQ room behind ops that wait for them get in by the stall rule", "[tcp][pressure]") {
    if (skip_without(backend_kind::uring)) return;
    test_core c{backend_kind::uring, 8, 16};
    CHECK(c.run_for(30s, outwait_a_full_cq(20)) == 20);
    const auto s = c->stats().backend;
    CHECK(s.parked_for_cq > 0);
    if (!faults_on()) CHECK(s.cq_overcommits > 0);
}
