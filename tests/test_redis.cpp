// redis::client and redis::subscriber (hiredis driven through the readiness op) against a real
// redis-server on a free loopback port, on both backends: commands, pipelining, binary
// payloads, error replies, refused connections, timeouts, cancels, a server restart, patterns,
// unsubscribe, and the subscriber's bounded queue. Skipped without redis-server.
#include "redis_support.hpp"
#include "support.hpp"

#include <array>

#include <coring/redis/redis.hpp>

#include <csignal>

using namespace coring;
using namespace coring::testing;
using redis::reply;

// CHECK(co_await x) would put the co_await inside Catch's loop condition (see CO_REQUIRE).
#define CO_CHECK(...)                              \
    do {                                           \
        const auto co_check_value_ = (__VA_ARGS__); \
        CHECK(co_check_value_);                    \
    } while (false)

namespace {

redis::options at(std::uint16_t port) {
    redis::options o;
    o.port = port;
    o.backoff_min = 10ms;
    o.backoff_max = 100ms;
    return o;
}

// Waits (bounded) until pred holds, looking every 10 ms: for state that changes on its own
// (a reconnect), never as a stand-in for awaiting an event.
template <class Pred>
task<bool> eventually(Pred pred, int tries = 500) {
    for (int i = 0; i < tries && !pred(); ++i) (void)co_await sleep_for(10ms);
    co_return pred();
}

// ss's lines for the connections to 127.0.0.1:port (their kernel timers included).
std::string connections_to(std::uint16_t port) {
    child_process ss{"/usr/bin/ss", {"-tnoH", "state", "established", "dst", "127.0.0.1:" + std::to_string(port)}};
    (void)ss.wait_exit_or_kill(5s);
    return ss.out();
}

task<> commands(std::uint16_t port) {
    redis::client db{at(port)};
    CO_REQUIRE(co_await db.wait_connected(5s));
    if (::access("/usr/bin/ss", X_OK) == 0) {  // keepalive probing is armed (options::keepalive)
        const std::string ss = connections_to(port);
        INFO("ss: " << ss);
        CHECK(ss.find("timer:(keepalive,") != std::string::npos);
    }
    auto set = co_await db.command("SET", "k", "v1");
    REQUIRE(set);
    CHECK(set->kind == reply::type::status);
    CHECK(set->str == "OK");
    auto get = co_await db.command("GET", "k");
    REQUIRE(get);
    CHECK(get->kind == reply::type::string);
    CHECK(get->str == "v1");
    auto missing = co_await db.command("GET", "nothing-here");
    REQUIRE(missing);
    CHECK(missing->kind == reply::type::nil);
    auto published = co_await db.command("PUBLISH", "nobody", "x");
    REQUIRE(published);
    CHECK(published->kind == reply::type::integer);
    CHECK(published->integer == 0);

    // Binary-safe both ways: NUL bytes and CRLF inside a value.
    const std::string binary{"a\0b\r\nc\0", 7};
    CO_REQUIRE(co_await db.command("SET", "bin", binary));
    auto back = co_await db.command("GET", "bin");
    REQUIRE(back);
    CHECK(back->str == binary);

    // An error reply is a reply.
    auto bad = co_await db.command("NO-SUCH-COMMAND", "x");
    REQUIRE(bad);
    CHECK(bad->is_error());
    CHECK(bad->str.find("unknown command") != std::string::npos);
    // Commands that would turn the connection into a subscriber's are refused here.
    auto sub = co_await db.command("SUBSCRIBE", "ch");
    CHECK(sub.error() == std::errc::invalid_argument);

    // 1,000 commands pipelined through send(); replies come back in order.
    std::vector<std::int64_t> seen;
    bool inside_send = false;
    for (int i = 0; i < 1000; ++i) {
        const std::string n = std::to_string(i);
        const std::string_view args[] = {"INCR", "counter"};
        inside_send = true;
        db.send(args, [&seen, &inside_send](result<reply> r) {
            CHECK_FALSE(inside_send);
            seen.push_back(r ? r->integer : -1);
        });
        inside_send = false;
    }
    auto last = co_await db.command("GET", "counter");  // after all of them, in order
    REQUIRE(last);
    CHECK(last->str == "1000");
    {  // named first: g++ 12 mishandles a capturing lambda inside a co_await
        const auto done = [&] { return seen.size() == 1000; };
        CO_CHECK(co_await eventually(done));
    }
    REQUIRE(seen.size() == 1000);
    for (int i = 0; i < 1000; ++i) REQUIRE(seen[i] == i + 1);

    auto array = co_await db.command("MGET", "k", "nothing-here", "bin");
    REQUIRE(array);
    REQUIRE(array->kind == reply::type::array);
    REQUIRE(array->elements.size() == 3);
    CHECK(array->elements[0].str == "v1");
    CHECK(array->elements[1].kind == reply::type::nil);
    CHECK(array->elements[2].str == binary);

    const auto& st = db.stats();
    CHECK(st.connects == 1);
    CHECK(st.commands == 1009);
    CHECK(st.replies == 1009);
    CHECK(st.errors == 2);  // the error reply and the refused SUBSCRIBE
    co_await db.close();
    auto after = co_await db.command("GET", "k");
    CHECK(after.error() == std::errc::not_connected);
}

task<> refused(std::uint16_t port) {
    redis::client db{at(port)};
    auto waited = co_await db.wait_connected(300ms);
    CHECK(waited.error() == std::errc::timed_out);
    CHECK_FALSE(db.connected());
    auto r = co_await db.command("PING");
    CHECK(r.error() == std::errc::not_connected);
    bool inside_send = true, called = false;
    const std::string_view ping[] = {"PING"};
    db.send(ping, [&](result<reply> got) {
        CHECK_FALSE(inside_send);
        CHECK(got.error() == std::errc::not_connected);
        called = true;
    });
    inside_send = false;
    {  // named first: g++ 12 mishandles a capturing lambda inside a co_await
        const auto done = [&] { return called; };
        CO_CHECK(co_await eventually(done));
    }
    CHECK(db.stats().connect_failures >= 2);  // it kept trying, with backoff
    CHECK(db.stats().connects == 0);
    co_await db.close();
}

task<> timeout_then_recovery(std::uint16_t port, pid_t pid) {
    auto o = at(port);
    o.command_timeout = 200ms;
    o.max_pending_bytes = 4096;
    redis::client db{o};
    CO_REQUIRE(co_await db.wait_connected(5s));
    CO_REQUIRE(co_await db.command("PING"));
    REQUIRE(::kill(pid, SIGSTOP) == 0);  // the redis-server this test started
    auto slow = co_await db.command("SET", "late", "1");
    CHECK(slow.error() == std::errc::timed_out);
    // Timed out, the commands stay with hiredis until Redis answers: bounded by
    // max_pending_bytes (4 KiB here), past which a command fails at once.
    const std::string kib(1024, 'x');
    result<reply> refused = std::errc::interrupted;
    for (int i = 0; i < 8 && refused.error() != std::errc::no_buffer_space; ++i) refused = co_await db.command("SET", "big", kib);
    CHECK(refused.error() == std::errc::no_buffer_space);
    // A cancelled command: its task ends with ECANCELED, the record stays with hiredis.
    task_group g;
    result<reply> cancelled = std::errc::interrupted;
    g.spawn([&db, &cancelled]() -> task<> { cancelled = co_await db.command("GET", "late"); });
    co_await yield();
    co_await g.cancel_and_join();
    CHECK(cancelled.error() == std::errc::operation_canceled);
    REQUIRE(::kill(pid, SIGCONT) == 0);
    auto now = co_await db.command("GET", "late");  // the late SET went through after all
    REQUIRE(now);
    CHECK(now->str == "1");
    CHECK(db.stats().connects == 1);  // a timeout does not cost the connection
    co_await db.close();
}

// A cancelled task still calling into hiredis (a cut session unsubscribing, say): the write
// pump its call starts serves the link, not that task, so the command goes out now, not with
// the next command someone else sends. Another client looks for its effect.
task<> from_cancelled_task(std::uint16_t port) {
    redis::client db{at(port)};
    redis::client other{at(port)};
    CO_REQUIRE(co_await db.wait_connected(5s));
    CO_REQUIRE(co_await other.wait_connected(5s));
    task_group g;
    g.spawn([&db]() -> task<> {
        (void)co_await sleep_for(std::chrono::hours{1});  // cancelled here; it runs on
        const std::array<std::string_view, 3> args{"SET", "from-cancelled", "1"};
        db.send(args, [](result<reply>) {});  // its own answer is ECANCELED: the caller is
    });
    co_await yield();
    co_await g.cancel_and_join();
    bool seen = false;
    for (int i = 0; i < 200 && !seen; ++i) {
        auto got = co_await other.command("GET", "from-cancelled");
        seen = got && got->str == "1";
        if (!seen) (void)co_await sleep_for(10ms);
    }
    CHECK(seen);
    co_await other.close();
    co_await db.close();
}

task<> restart(server* srv, const std::string* binary) {
    redis::client db{at(srv->port)};
    redis::subscriber sub{at(srv->port)};
    std::vector<redis::link_state> states;
    sub.on_state([&states](redis::link_state s) { states.push_back(s); });
    CO_REQUIRE(co_await db.wait_connected(5s));
    CO_REQUIRE(co_await sub.subscribe("news"));
    {  // named first: g++ 12 mishandles a capturing lambda inside a co_await
        const auto done = [&] { return states.size() == 1; };
        CO_CHECK(co_await eventually(done));
    }
    CO_REQUIRE(co_await db.command("PUBLISH", "news", "before"));
    auto m = co_await sub.next();
    REQUIRE(m);
    CHECK(m->payload == "before");

    REQUIRE(::kill(srv->proc->pid(), SIGKILL) == 0);  // the redis-server this test started
    REQUIRE(srv->proc->wait_exit(child_process::clock::now() + 5s));
    {  // named first: g++ 12 mishandles a capturing lambda inside a co_await
        const auto done = [&] { return !db.connected() && !sub.connected(); };
        CO_CHECK(co_await eventually(done));
    }
    auto down = co_await db.command("PING");
    CHECK(down.error() == std::errc::not_connected);
    auto sub_down = co_await sub.subscribe("later");  // kept in the set for the next connect
    CHECK(sub_down.error() == std::errc::not_connected);

    *srv = start_redis(*binary, {}, srv->port);
    CO_REQUIRE(co_await db.wait_connected(5s));
    {  // named first: g++ 12 mishandles a capturing lambda inside a co_await
        const auto done = [&] { return sub.connected(); };
        CO_CHECK(co_await eventually(done));
    }
    CO_REQUIRE(co_await db.command("PUBLISH", "news", "after"));
    CO_REQUIRE(co_await db.command("PUBLISH", "later", "too"));
    auto m2 = co_await sub.next();
    REQUIRE(m2);
    CHECK(m2->channel == "news");
    CHECK(m2->payload == "after");
    auto m3 = co_await sub.next();
    REQUIRE(m3);
    CHECK(m3->channel == "later");
    CHECK(states == std::vector{redis::link_state::up, redis::link_state::down, redis::link_state::up});
    CHECK(db.stats().connects == 2);
    CHECK(db.stats().disconnects == 1);
    CHECK(sub.stats().connects == 2);
    co_await sub.close();
    co_await db.close();
}

task<> patterns_and_unsubscribe(std::uint16_t port) {
    redis::client db{at(port)};
    redis::subscriber sub{at(port)};
    CO_REQUIRE(co_await db.wait_connected(5s));
    {  // named first: g++ 12 mishandles a capturing lambda inside a co_await
        const auto done = [&] { return sub.connected(); };
        CO_CHECK(co_await eventually(done));
    }
    CO_REQUIRE(co_await sub.psubscribe("price.*"));
    CO_REQUIRE(co_await sub.subscribe("a"));
    CO_REQUIRE(co_await sub.subscribe("b"));
    CO_REQUIRE(co_await db.command("PUBLISH", "price.eur", "1.08"));
    auto p = co_await sub.next();
    REQUIRE(p);
    CHECK(p->pattern == "price.*");
    CHECK(p->channel == "price.eur");
    CHECK(p->payload == "1.08");
    sub.unsubscribe("a");
    sub.punsubscribe("price.*");
    CO_REQUIRE(co_await db.command("PUBLISH", "a", "dropped"));
    CO_REQUIRE(co_await db.command("PUBLISH", "price.usd", "dropped"));
    CO_REQUIRE(co_await db.command("PUBLISH", "b", "kept"));
    auto m = co_await sub.next();
    REQUIRE(m);
    CHECK(m->channel == "b");
    CHECK(m->payload == "kept");
    CHECK(sub.queued() == 0);
    co_await sub.close();
    auto closed = co_await sub.next();
    CHECK(closed.error() == std::errc::operation_canceled);
    co_await db.close();
}

task<> bounded_queue(std::uint16_t port) {
    auto o = at(port);
    o.queue_limit = 64 * 1024;
    redis::client db{at(port)};
    redis::subscriber sub{o};
    CO_REQUIRE(co_await db.wait_connected(5s));
    CO_REQUIRE(co_await sub.subscribe("flood"));
    constexpr int count = 2000;
    const std::string pad(1000, '.');
    std::vector<std::string> payloads;
    for (int i = 0; i < count; ++i) payloads.push_back(std::to_string(i) + pad);
    int replied = 0;
    for (int i = 0; i < count; ++i) {
        const std::string_view args[] = {"PUBLISH", "flood", payloads[i]};
        db.send(args, [&replied](result<reply> r) { replied += r && r->integer == 1; });
    }
    {  // named first: g++ 12 mishandles a capturing lambda inside a co_await
        const auto done = [&] { return replied == count; };
        CO_CHECK(co_await eventually(done));
    }
    (void)co_await sleep_for(200ms);  // time to fill the queue, if it were unbounded
    // The bound: 64 KiB of messages, plus one 16 KiB read of hiredis, in ~1 KiB messages.
    CHECK(sub.queued() <= 64 + 17 + 2);
    CHECK(sub.queued() > 0);
    for (int i = 0; i < count; ++i) {
        auto m = co_await sub.next();
        REQUIRE(m);
        REQUIRE(m->payload == payloads[i]);
    }
    co_await sub.close();
    co_await db.close();
}

}  // namespace

TEST_CASE("parse_url takes redis://HOST[:PORT] and says what is wrong otherwise", "[redis]") {
    auto a = redis::parse_url("redis://127.0.0.1:7000");
    REQUIRE(a);
    CHECK(a->host == "127.0.0.1");
    CHECK(a->port == 7000);
    auto b = redis::parse_url("redis://cache.local");
    REQUIRE(b);
    CHECK(b->port == 6379);
    auto c = redis::parse_url("redis://[::1]:7001");
    REQUIRE(c);
    CHECK(c->host == "::1");
    CHECK(c->port == 7001);
    for (const char* bad : {"http://h:1", "redis://", "redis://:6379", "redis://h:0", "redis://h:65536", "redis://h:x",
                            "redis://h:1/0", "redis://u:p@h:1", "redis://::1:7000", "redis://[::1", "redis://h:"}) {
        INFO(bad);
        CHECK_FALSE(redis::parse_url(bad));
        CHECK_FALSE(redis::url_error(bad).empty());
    }
    CHECK(redis::url_error("redis://h:1").empty());
}

namespace {

// A host name, looked up through dns.hpp (localhost: /etc/hosts, no query leaves the machine),
// not an address. If ::1 comes first, that connect is refused (the server listens on 127.0.0.1)
// and the next one tries 127.0.0.1.
task<> by_name(std::uint16_t port) {
    auto o = at(port);
    o.host = "localhost";
    o.backoff_min = 20ms;
    redis::client db{o};
    CO_REQUIRE(co_await db.wait_connected(5s));
    auto pong = co_await db.command("PING");
    REQUIRE(pong);
    CHECK(pong->str == "PONG");
    co_await db.close();
}

}  // namespace

TEST_CASE("redis client: a host name is looked up without blocking the core", "[redis][dns]") {
    const auto binary = server_binary("redis-server");
    if (binary.empty()) return;
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    auto srv = start_redis(binary);
    test_core c{kind};
    c.run_for(30s, by_name(srv.port));
}

TEST_CASE("redis client: commands, binary values, error replies, 1,000 pipelined", "[redis]") {
    const auto binary = server_binary("redis-server");
    if (binary.empty()) return;
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    auto srv = start_redis(binary);
    test_core c{kind};
    c.run_for(30s, commands(srv.port));
}

TEST_CASE("redis client: a refused connection fails commands at once and keeps retrying", "[redis]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    const auto port = free_port();  // nothing listens there
    test_core c{kind};
    c.run_for(10s, refused(port));
}

TEST_CASE("redis client: a stopped server times commands out, cancels detach, then it recovers", "[redis]") {
    const auto binary = server_binary("redis-server");
    if (binary.empty()) return;
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    auto srv = start_redis(binary);
    test_core c{kind};
    c.run_for(20s, timeout_then_recovery(srv.port, srv.proc->pid()));
}

TEST_CASE("redis client: a command sent by a cancelled task still goes out", "[redis]") {
    const auto binary = server_binary("redis-server");
    if (binary.empty()) return;
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    auto srv = start_redis(binary);
    test_core c{kind};
    c.run_for(20s, from_cancelled_task(srv.port));
}

TEST_CASE("redis: a server restarted on its port: the client reconnects, the subscriber re-subscribes", "[redis]") {
    const auto binary = server_binary("redis-server");
    if (binary.empty()) return;
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    auto srv = start_redis(binary);
    test_core c{kind};
    c.run_for(30s, restart(&srv, &binary));
}

TEST_CASE("redis subscriber: pattern messages name their pattern; unsubscribe stops delivery", "[redis]") {
    const auto binary = server_binary("redis-server");
    if (binary.empty()) return;
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    auto srv = start_redis(binary);
    test_core c{kind};
    c.run_for(20s, patterns_and_unsubscribe(srv.port));
}

TEST_CASE("redis subscriber: a reader that is away leaves the rest with Redis; all arrive in order", "[redis]") {
    const auto binary = server_binary("redis-server");
    if (binary.empty()) return;
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    auto srv = start_redis(binary);
    test_core c{kind};
    c.run_for(30s, bounded_queue(srv.port));
}
