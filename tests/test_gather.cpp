// Coalesced sends and receive bundles: write_all of many pieces in few sendmsg calls (short
// sends stopping inside a piece included), recv_lease through multi-buffer bundles, and the echo
// server gathering what it has queued, in process and as the coring-echo binary.
#include "child_process.hpp"
#include "echo_server.hpp"
#include "support.hpp"

#include <algorithm>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <thread>
#include <vector>

using namespace coring;
using namespace coring::testing;

namespace {

using clock_type = std::chrono::steady_clock;

const backend_stats& io_stats() { return core::current().io().stats(); }

// Pieces of 1 to 300 bytes cut from one payload, so the concatenation is the payload.
std::vector<std::span<const std::byte>> cut(const std::vector<std::byte>& payload, std::uint64_t seed) {
    std::mt19937_64 gen{seed};
    std::vector<std::span<const std::byte>> pieces;
    std::size_t at = 0;
    while (at < payload.size()) {
        const std::size_t n = std::min<std::size_t>(payload.size() - at, 1 + gen() % 300);
        pieces.push_back(std::span(payload).subspan(at, n));
        if (gen() % 16 == 0) pieces.push_back({});  // empty pieces are skipped, not sent
        at += n;
    }
    return pieces;
}

struct gather_outcome {
    std::vector<std::byte> received;
    std::uint64_t gather_sends = 0;
};

// write_all(pieces) from one end, read by the other (slowly, through small socket buffers,
// when `short_sends`: then sendmsg comes back short, usually in the middle of a piece).
task<gather_outcome> send_pieces(const std::vector<std::byte>* payload, std::uint64_t seed, bool short_sends) {
    auto [writer_end, reader_end] = co_await connected_pair();
    if (short_sends) {
        const int small = 16 * 1024;  // much smaller and loopback TCP crawls on delayed ACKs
        REQUIRE(::setsockopt(reader_end.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0);
        REQUIRE(::setsockopt(writer_end.fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
    }
    const auto pieces = cut(*payload, seed);
    gather_outcome out;
    const std::uint64_t before = io_stats().gather_sends;
    task_group group;
    group.spawn(read_exactly(&reader_end, &out.received, payload->size(), short_sends));
    CO_REQUIRE(co_await writer_end.write_all(pieces));
    co_await group.join();
    out.gather_sends = io_stats().gather_sends - before;
    co_await writer_end.close();
    co_await reader_end.close();
    co_return out;
}

backend_config with_coalesce(backend_kind kind, bool coalesce) {
    backend_config cfg{kind};
    cfg.coalesce = coalesce;
    return cfg;
}

}  // namespace

TEST_CASE("write_all of many small pieces arrives byte for byte, in few gather sends", "[tcp][gather]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    const bool coalesce = GENERATE(true, false);
    INFO("backend: " << to_string(kind) << ", coalesce " << (coalesce ? "on" : "off"));
    if (skip_without(kind)) return;
    test_core c{with_coalesce(kind, coalesce)};
    const auto payload = random_bytes(300'000, 11);
    const auto all = cut(payload, 5);
    const auto pieces = static_cast<std::size_t>(std::count_if(all.begin(), all.end(), [](auto p) { return !p.empty(); }));
    const auto out = c.run_for(20s, send_pieces(&payload, 5, false));
    CHECK(out.received == payload);
    if (coalesce) {
        // 64 pieces per sendmsg at most; the socket takes all of it, so about pieces / 64.
        CHECK(out.gather_sends >= pieces / tcp_stream::max_gather);
        CHECK(out.gather_sends <= pieces / 8);
    } else {
        CHECK(out.gather_sends == 0);  // one plain send per piece, as before
    }
}

TEST_CASE("write_all of pieces through short sends resumes inside a piece and loses nothing", "[tcp][gather][short-write]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{with_coalesce(kind, true)};
    const auto payload = random_bytes(2 << 20, 13);  // far more than the 16 KiB socket buffers
    const auto out = c.run_for(60s, send_pieces(&payload, 9, true));
    CHECK(out.received.size() == payload.size());
    CHECK(out.received == payload);
    CHECK(out.gather_sends > 0);
}

TEST_CASE("a gather send of iovecs reports a byte count; empty and closed streams answer at once", "[tcp][gather]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    c.run_for(10s, []() -> task<> {
        auto [a, b] = co_await connected_pair();
        char x[] = "hello, ";
        char y[] = "world";
        const std::array<iovec, 2> iov{{{x, 7}, {y, 5}}};
        auto sent = co_await a.send(std::span<const iovec>(iov));
        REQUIRE(sent);
        CHECK(*sent == 12);
        std::vector<std::byte> got;
        co_await read_exactly(&b, &got, 12, false);
        CHECK(std::string(reinterpret_cast<const char*>(got.data()), got.size()) == "hello, world");
        CO_REQUIRE(co_await a.write_all(std::span<const std::span<const std::byte>>{}));  // nothing to send
        co_await a.close();
        auto closed = co_await a.send(std::span<const iovec>(iov));
        REQUIRE_FALSE(closed);
        CHECK(closed.error() == std::errc::bad_file_descriptor);
        co_await b.close();
    }());
}

namespace {

struct bundle_outcome {
    std::uint64_t hash = 0;
    std::size_t bytes = 0;
    std::size_t leases = 0;
    std::uint64_t bundles = 0;
    std::uint64_t bundle_buffers = 0;
};

// The whole payload is sent (and is in the receiver's socket) before the first recv_lease, so
// one receive finds far more than one buffer's worth waiting.
task<bundle_outcome> receive_in_one_go(const std::vector<std::byte>* payload) {
    auto [client, server] = co_await connected_pair();
    CO_REQUIRE(co_await client.write_all(*payload));
    CO_REQUIRE(co_await client.shutdown(SHUT_WR));
    bundle_outcome out;
    out.hash = fnv1a({});
    const std::uint64_t bundles_before = io_stats().recv_bundles;
    const std::uint64_t buffers_before = io_stats().bundle_buffers;
    for (;;) {
        auto lease = co_await server.recv_lease();
        REQUIRE(lease);
        if (lease->empty()) break;
        REQUIRE(lease->size() <= core::current().io().buffer_size());
        out.hash = fnv1a(lease->data(), out.hash);
        out.bytes += lease->size();
        ++out.leases;
    }
    out.bundles = io_stats().recv_bundles - bundles_before;
    out.bundle_buffers = io_stats().bundle_buffers - buffers_before;
    CHECK(io_stats().buffers_in_use == 0);
    co_await client.close();
    co_await server.close();
    co_return out;
}

}  // namespace

TEST_CASE("100 KiB in one go through 4 KiB buffers: every byte in order, bundles on and off", "[buffers][bundle]") {
    const auto setup = GENERATE(LEASE_SETUPS);
    const bool bundle = GENERATE(true, false);
    INFO(describe(setup) << ", recv bundles " << (bundle ? "on" : "off"));
    if (skip_without(setup.kind)) return;
    if (setup.kind == backend_kind::epoll && !bundle) return;  // epoll has no bundles: one run is enough
    backend_config cfg = config_of(setup, 64, 4096);
    cfg.recv_bundle = bundle;
    test_core c{cfg};
    const auto payload = random_bytes(100 << 10, 17);
    const auto out = c.run_for(20s, receive_in_one_go(&payload));
    CHECK(out.bytes == payload.size());
    CHECK(out.hash == fnv1a(payload));
    CHECK(out.leases >= payload.size() / 4096);
    const bool has_bundles = c->io().features().recv_bundle;
    if (!bundle || setup.kind == backend_kind::epoll) {
        CHECK_FALSE(has_bundles);
        CHECK(out.bundles == 0);
    } else if (has_bundles) {
        // The kernel had 25 buffers' worth waiting: some completion filled several at once.
        CHECK(out.bundles > 0);
        CHECK(out.bundle_buffers > out.bundles);
    } else {
        WARN("this kernel has no receive bundles (Linux 6.10+): only the plain path ran");
    }
}

namespace {

// The echo server on this core; one client on the same core pipelines `count` messages of
// `size` bytes (one write_all of them all, read back meanwhile) and checks every echoed byte.
task<> echo_pipelined(address where, std::size_t count, std::size_t size, bool* verified) {
    auto conn = co_await tcp_stream::connect(where);
    REQUIRE(conn);
    std::vector<std::byte> sent(count * size);
    for (std::size_t i = 0; i < sent.size(); ++i) sent[i] = std::byte((i * 131 + (i >> 8)) & 0xff);
    std::vector<std::span<const std::byte>> messages;
    for (std::size_t i = 0; i < count; ++i) messages.push_back(std::span(sent).subspan(i * size, size));
    std::vector<std::byte> back;
    task_group group;
    group.spawn(read_exactly(&*conn, &back, sent.size(), false));
    CO_REQUIRE(co_await conn->write_all(messages));
    co_await group.join();
    *verified = back == sent;
    co_await conn->close();
}

}  // namespace

TEST_CASE("the echo server gathers what it has queued into one send, and echoes every byte", "[app][gather]") {
    const auto setup = GENERATE(LEASE_SETUPS);
    const bool coalesce = GENERATE(true, false);
    INFO(describe(setup) << ", coalesce " << (coalesce ? "on" : "off"));
    if (skip_without(setup.kind)) return;
    backend_config cfg = config_of(setup, 64, 4096);
    cfg.coalesce = coalesce;
    test_core c{cfg};
    apps::echo_options opts;
    opts.listen = address::ipv4_loopback(0);
    opts.announce = false;
    const auto where = apps::start_echo_server(opts);
    REQUIRE(where);
    bool verified = false;
    c.run_for(30s, echo_pipelined(*where, 4000, 100, &verified));
    CHECK(verified);
    if (!coalesce) CHECK(c->io().stats().gather_sends == 0);
}

namespace {

// Writes `data` to fd from this thread while the caller reads: the echo comes back meanwhile.
void write_fully(int fd, const std::vector<char>* data) {
    std::size_t at = 0;
    while (at < data->size()) {
        const ssize_t n = ::send(fd, data->data() + at, std::min<std::size_t>(data->size() - at, 997), MSG_NOSIGNAL);
        if (n <= 0) return;
        at += static_cast<std::size_t>(n);
    }
}

}  // namespace

TEST_CASE("coring-echo with --coalesce and --recv-bundle on and off echoes pipelined messages", "[app][gather]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    const auto coalesce = GENERATE(std::string{"on"}, std::string{"off"});
    const auto bundle = GENERATE(std::string{"on"}, std::string{"off"});
    INFO("backend: " << to_string(kind) << ", --coalesce " << coalesce << ", --recv-bundle " << bundle);
    if (skip_without(kind)) return;
    child_process p{CORING_ECHO_BINARY,
                    {"--listen", "127.0.0.1:0", "--cores", "1", "--backend", std::string{to_string(kind)},
                     "--buffer-size", "4096", "--coalesce", coalesce, "--recv-bundle", bundle, "--stats",
                     "--drain-timeout", "500"}};
    const bool up = p.read_until(clock_type::now() + 10s, [](const child_process& e) { return listening_port(e.err()) != 0; });
    INFO("stderr:\n" << p.err());
    REQUIRE(up);
    fd_guard conn{connect_blocking(listening_port(p.err()))};
    REQUIRE(conn.fd >= 0);
    std::vector<char> data(400'000);  // many ~1 KiB sends, each cut where it happens to fall
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 7 + (i >> 10)) & 0xff);
    std::thread writer{write_fully, conn.fd, &data};
    std::vector<char> back;
    back.reserve(data.size());
    std::array<char, 65536> buf;
    const auto deadline = clock_type::now() + 20s;
    while (back.size() < data.size() && clock_type::now() < deadline) {
        pollfd pfd{conn.fd, POLLIN, 0};
        if (::poll(&pfd, 1, 1000) <= 0) continue;
        const ssize_t n = ::recv(conn.fd, buf.data(), buf.size(), 0);
        if (n <= 0) break;
        back.insert(back.end(), buf.begin(), buf.begin() + n);
    }
    ::shutdown(conn.fd, SHUT_RDWR);  // the writer thread, if stuck, gets an error and ends
    writer.join();
    CHECK(back.size() == data.size());
    CHECK(back == data);
    REQUIRE(::kill(p.pid(), SIGTERM) == 0);
    const auto status = p.wait_exit_or_kill(5s);
    REQUIRE(status);
    CHECK(WIFEXITED(*status));
    INFO("stderr:\n" << p.err());
    CHECK_THAT(p.err(), Catch::Contains("gather_sends="));
    if (coalesce == "off") CHECK_THAT(p.err(), Catch::Contains("gather_sends=0 "));
    if (bundle == "off" || kind == backend_kind::epoll) CHECK_THAT(p.err(), Catch::Contains("bundles=0 "));
}

TEST_CASE("--features lists coalesced sends and receive bundles; bad values are refused", "[app][gather]") {
    {
        child_process p{CORING_ECHO_BINARY, {"--features", "--recv-bundle", "off", "--coalesce", "off"}};
        const auto status = p.wait_exit_or_kill(10s);
        INFO("stdout:\n" << p.out() << "\nstderr:\n" << p.err());
        REQUIRE(status);
        CHECK(WEXITSTATUS(*status) == 0);
        CHECK_THAT(p.out(), Catch::Contains("coalesced sends:"));
        CHECK_THAT(p.out(), Catch::Contains("receive bundles:"));
        CHECK_THAT(p.out(), Catch::Contains("off by --coalesce off"));
    }
    for (const char* flag : {"--coalesce", "--recv-bundle"}) {
        child_process p{CORING_ECHO_BINARY, {flag, "maybe"}};
        const auto status = p.wait_exit_or_kill(10s);
        INFO("stderr:\n" << p.err());
        REQUIRE(status);
        CHECK(WEXITSTATUS(*status) == 2);
        CHECK_THAT(p.err(), Catch::Contains(flag));
    }
}
