// coring-load's pub/sub workload: its NATS parser and payload check alone, then the whole
// workload against the real servers it is meant to load (redis-server, nats-server), each
// started here on a free loopback port. Without those binaries the server cases are skipped
// (./dev test installs them).
#include "child_process.hpp"
#include "load.hpp"
#include "redis_support.hpp"
#include "support.hpp"

#include <fstream>
#include <iterator>
#include <unistd.h>

using namespace coring;
using namespace coring::testing;

namespace {

struct nats_case {
    std::string_view input;
    load::nats_parsed::status st;
    load::nats_frame::kind type = load::nats_frame::kind::ok;
    std::size_t consumed = 0;
    std::string_view payload = {};
};

}  // namespace

TEST_CASE("parse_nats reads the server's frames whole, waits for partial ones, rejects garbage", "[load]") {
    using st = load::nats_parsed::status;
    using k = load::nats_frame::kind;
    const nats_case cases[] = {
        {"PING\r\n", st::complete, k::ping, 6},
        {"pong\r\n", st::complete, k::pong, 6},  // operations are case-insensitive
        {"+OK\r\n", st::complete, k::ok, 5},
        {"-ERR 'Slow Consumer'\r\n", st::complete, k::err, 22},
        {"INFO {\"server_id\":\"x\"}\r\n", st::complete, k::info, 24},
        {"MSG ch.1 1 5\r\nhello\r\n", st::complete, k::msg, 21, "hello"},
        {"MSG ch.1 1 reply.to 2\r\nhi\r\nPING\r\n", st::complete, k::msg, 27, "hi"},
        {"MSG ch.1 1 0\r\n\r\n", st::complete, k::msg, 16, ""},
        {"MSG\tch.1\t1  3\r\na\r\n\r\n", st::complete, k::msg, 20, "a\r\n"},  // CRLF inside a payload is data
        {"PIN", st::incomplete},
        {"MSG ch.1 1 5\r\nhel", st::incomplete},
        {"MSG ch.1 1 5\r\nhello\r", st::incomplete},
        {"", st::incomplete},
        {"HELLO\r\n", st::error},
        {"PING now\r\n", st::error},
        {"MSG ch.1 5\r\nhello\r\n", st::error},           // no sid
        {"MSG ch.1 1 a b 5\r\nhello\r\n", st::error},     // too many words
        {"MSG ch.1 1 -5\r\nhello\r\n", st::error},
        {"MSG ch.1 1 99999999999\r\n", st::error},        // over max_payload
        {"MSG ch.1 1 5\r\nhelloXY", st::error},           // no CRLF after the payload
    };
    for (const auto& c : cases) {
        INFO("input: " << c.input);
        load::nats_frame f;
        const auto got = load::parse_nats(c.input, f, 1024, 64);
        REQUIRE(got.st == c.st);
        if (c.st != st::complete) continue;
        CHECK(f.type == c.type);
        CHECK(got.consumed == c.consumed);
        if (c.type == k::msg) {
            CHECK(f.payload == c.payload);
            CHECK(f.subject == "ch.1");
            CHECK(f.sid == "1");
        }
    }
    load::nats_frame f;
    CHECK(load::parse_nats(std::string(100, 'x'), f, 1024, 64).st == st::error);  // a line past max_line, no CRLF yet
}

TEST_CASE("a publish payload checks only with the header it was made for", "[load]") {
    std::vector<std::byte> p(100);
    load::fill_publish(p, 3, 7, 12345, 987654321, 10);
    load::publish_header h;
    REQUIRE(load::check_publish(p, 10, h));
    CHECK(h.pub == 3);
    CHECK(h.channel == 7);
    CHECK(h.seq == 12345);
    CHECK(h.sent_ns == 987654321);
    for (std::size_t i : {0u, 4u, 8u, 16u, 24u, 99u}) {  // any byte, header or padding
        auto bad = p;
        bad[i] ^= std::byte{1};
        CHECK_FALSE(load::check_publish(bad, 10, h));
    }
    CHECK_FALSE(load::check_publish(std::span(p).first(load::pubsub_header_bytes - 1), 10, h));
    CHECK(load::channel_name(load::protocol::pubsub, 4) == "ch4");
    CHECK(load::channel_pattern(load::protocol::nats, 4) == "*.4");
}

namespace {

server start_nats(const std::string& binary) {
    const auto port = free_port();
    server s{port, std::make_unique<child_process>(binary, std::vector<std::string>{"-a", "127.0.0.1", "-p", std::to_string(port)})};
    const bool up = s.proc->read_until(child_process::clock::now() + 10s, [](const child_process& p) {
        return p.err().find("Server is ready") != std::string::npos;
    });
    INFO("nats-server said: " << s.proc->out() << s.proc->err());
    REQUIRE(up);
    return s;
}

load::settings small_workload(load::protocol proto, std::uint16_t port) {
    load::settings s;
    s.proto = proto;
    s.target = address::ipv4_loopback(port);
    s.pubsub.subscribers = 20;
    s.pubsub.channels = 4;
    s.pubsub.publishers = 2;
    s.depth = 8;
    s.size_min = s.size_max = 64;
    s.duration = 0.5;
    s.warmup = 0;
    s.reply_timeout = 5000ms;
    return s;
}

// The whole workload on one core; `board` is left for the caller to read (the steps' verdicts).
load::results run_workload(backend_kind kind, const load::settings& s, load::pubsub_board& board) {
    test_core c{kind};
    load::results out;
    load::live_counters live;
    c.run_for(60s, load::run_pubsub_share(s, board, 0, s.pubsub.subscribers, 0, s.pubsub.publishers, &out, &live));
    return out;
}

load::results run_workload(backend_kind kind, const load::settings& s) {
    load::pubsub_board board{s};
    return run_workload(kind, s, board);
}

// Every subscriber that kept reading got every message of its channel, once and in order.
void check_verified(const load::settings& s, const load::results& r) {
    INFO("first error: " << r.first_error);
    CHECK(r.errors.total() == 0);
    CHECK(r.pubsub.subscribed == s.pubsub.subscribers);
    CHECK(r.pubsub.published > 0);
    CHECK(r.pubsub.lost == 0);
    CHECK(r.pubsub.duplicated == 0);
    CHECK(r.pubsub.reordered == 0);
}

}  // namespace

TEST_CASE("coring-load pubsub against redis-server: every delivery verified, channels and patterns", "[load]") {
    const auto redis = server_binary("redis-server");
    if (redis.empty()) return;
    const auto kind = GENERATE(BOTH_BACKENDS);
    const bool patterns = GENERATE(false, true);
    INFO("backend: " << to_string(kind) << (patterns ? ", patterns" : ", channels"));
    if (skip_without(kind)) return;
    auto srv = start_redis(redis);
    auto s = small_workload(load::protocol::pubsub, srv.port);
    s.pubsub.patterns = patterns;
    const auto r = run_workload(kind, s);
    check_verified(s, r);
    // Every publish reached the 5 subscribers of its channel (20 over 4 channels).
    CHECK(r.pubsub.delivered == r.pubsub.published * 5);
}

TEST_CASE("coring-load pubsub: a stalled subscriber is cut by redis-server and reported apart", "[load]") {
    const auto redis = server_binary("redis-server");
    if (redis.empty()) return;
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    // Cut a subscriber once 64 KiB wait for it, or 32 KiB for a second.
    auto srv = start_redis(redis, {"--client-output-buffer-limit", "pubsub 64kb 32kb 1"});
    auto s = small_workload(load::protocol::pubsub, srv.port);
    s.pubsub.slow = 1;
    s.pubsub.slow_after = 0;  // stalls at its first look after publishing starts
    // 4 KiB messages: the stalled one's socket buffers (a few MiB on loopback) fill within the
    // run, then redis-server's output buffer passes its limit.
    s.size_min = s.size_max = 4096;
    s.duration = 1.5;
    s.pubsub.drain_quiet = 1000ms;
    const auto r = run_workload(kind, s);
    check_verified(s, r);
    CHECK(r.pubsub.slow_cut == 1);
    CHECK(r.pubsub.slow_lost > 0);
}

TEST_CASE("coring-load nats against nats-server: every delivery verified, subjects and wildcards", "[load]") {
    const auto nats = server_binary("nats-server");
    if (nats.empty()) return;
    const auto kind = GENERATE(BOTH_BACKENDS);
    const bool patterns = GENERATE(false, true);
    INFO("backend: " << to_string(kind) << (patterns ? ", wildcards" : ", subjects"));
    if (skip_without(kind)) return;
    auto srv = start_nats(nats);
    auto s = small_workload(load::protocol::nats, srv.port);
    s.pubsub.patterns = patterns;
    const auto r = run_workload(kind, s);
    check_verified(s, r);
    CHECK(r.pubsub.delivered == r.pubsub.published * 5);
}

TEST_CASE("coring-load pubsub in an open loop sends at the rate asked", "[load]") {
    const auto redis = server_binary("redis-server");
    if (redis.empty()) return;
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    auto srv = start_redis(redis);
    auto s = small_workload(load::protocol::pubsub, srv.port);
    s.rate = 400;  // 0.5 s: 200 publishes, 100 per publisher
    const auto r = run_workload(kind, s);
    check_verified(s, r);
    CHECK(r.pubsub.published > 0);  // a busy machine may send fewer by the end, never more
    CHECK(r.pubsub.published <= 202);
}

TEST_CASE("pubsub_board: each step's window, and a step judged once, by whoever asks first", "[load]") {
    load::settings s;
    s.pubsub.subscribers = 10;
    s.pubsub.channels = 4;
    s.pubsub.steps = 3;
    s.duration = 2;
    s.warmup = 1;
    s.pubsub.step_limit = 500ms;
    load::pubsub_board board{s};
    CHECK(board.step_of(0) == -1);  // nothing has started
    board.start_ns = 10'000'000'000;
    // Windows of 2 s, each followed by a 0.5 s pause, from start + warmup = 11 s.
    const std::pair<std::int64_t, int> at[] = {{10'999'999'999, -1}, {11'000'000'000, 0}, {12'999'999'999, 0},
                                               {13'000'000'000, -1}, {13'500'000'000, 1}, {16'000'000'000, 2},
                                               {17'999'999'999, 2}, {18'000'000'000, -1}, {30'000'000'000, -1}};
    for (const auto& [ns, step] : at) {
        INFO("sent at " << ns);
        CHECK(board.step_of(ns) == step);
    }
    CHECK(board.stop_at() == 18'000'000'000);
    // 10 subscribers over 4 channels: 3, 3, 2, 2.
    CHECK(board.subscribers_of(0) == 3);
    CHECK(board.subscribers_of(3) == 2);
    board.steps[0].expected = 100;
    board.steps[0].on_time = 99;  // 99% within the limit: its p99 is too
    CHECK(board.go_on_after(0));
    board.steps[1].expected = 100;
    board.steps[1].on_time = 98;
    CHECK_FALSE(board.go_on_after(1));
    board.steps[1].on_time = 100;  // came late: the verdict stands, so every publisher agrees
    CHECK_FALSE(board.go_on_after(1));
}

TEST_CASE("coring-load pubsub in steps: each step at its rate, all judged within the limit", "[load]") {
    const auto redis = server_binary("redis-server");
    if (redis.empty()) return;
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    auto srv = start_redis(redis);
    auto s = small_workload(load::protocol::pubsub, srv.port);
    s.rate = 200;  // then 400, 800: 0.4 s each, so 80, 160, 320 publishes
    s.duration = 0.4;
    s.pubsub.steps = 3;
    // Loopback to redis-server: far within, even on a busy machine. It is also the pause after
    // each step (so a step's late deliveries can still be judged), so it sets this case's time.
    s.pubsub.step_limit = 1500ms;
    load::pubsub_board board{s};
    const auto out = run_workload(kind, s, board);
    check_verified(s, out);
    CHECK(out.pubsub.reached == s.pubsub.subscribers);
    REQUIRE(out.steps.size() == 3);
    std::uint64_t in_steps = 0;
    for (unsigned k = 0; k < 3; ++k) {
        INFO("step " << k);
        const auto& st = board.steps[k];
        CHECK(st.verdict == 1);
        CHECK(st.published > 0);  // a busy machine may send fewer by the end, never more
        CHECK(st.published <= (80u << k) + 2);
        CHECK(st.expected == st.published * 5);  // 20 subscribers over 4 channels
        CHECK(st.on_time == st.expected);
        CHECK(out.steps[k].count() == st.expected);
        in_steps += out.steps[k].count();
    }
    CHECK(out.latency.count() == in_steps);  // the window is the steps, the pauses publish nothing
}

TEST_CASE("coring-load pubsub over --procs: one board, every subscriber of every process verified", "[load]") {
    const auto redis = server_binary("redis-server");
    if (redis.empty()) return;
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    auto srv = start_redis(redis);
    const std::string json = "/tmp/coring-load-procs-" + std::to_string(::getpid()) + ".json";
    child_process p{CORING_LOAD_BINARY,
                    {"--protocol", "pubsub", "--target", "127.0.0.1:" + std::to_string(srv.port), "--subscribers", "60",
                     "--channels", "7", "--publishers", "3", "--procs", "3", "--rate", "300", "--steps", "2",
                     "--duration", "0.3", "--warmup", "0.2", "--step-limit", "1500", "--backend", std::string{to_string(kind)},
                     "--quiet", "--json", json}};
    const auto status = p.wait_exit_or_kill(60s);
    INFO("stdout:\n" << p.out() << "stderr:\n" << p.err());
    REQUIRE(status);
    CHECK(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
    // Every process's subscribers counted, and the milestones a script waits for said once.
    CHECK_THAT(p.out(), Catch::Contains("subscribed 60 of 60") && Catch::Contains("60 reached by a message") &&
                            Catch::Contains("lost 0, duplicated 0, reordered 0"));
    CHECK_THAT(p.err(), Catch::Contains("coring-load: subscribed 60 subscribers") &&
                            Catch::Contains("coring-load: step 1 at 600 publishes/s"));
    std::ifstream f{json};
    const std::string text{std::istreambuf_iterator<char>{f}, {}};
    ::unlink(json.c_str());
    CHECK_THAT(text, Catch::Contains("\"procs\": 3") && Catch::Contains("\"reached\": 60") &&
                         Catch::Contains("\"verdict\": \"within\""));
}
