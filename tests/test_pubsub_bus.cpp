// coring-pubsub nodes joined through a redis-server (--bus), as users run them: two nodes of two
// cores each on their own ports, one redis-server on a free loopback port of its own, clients
// over raw sockets, redis-cli and redis-py as real clients. Publishes on either node reach every
// subscriber on both, in order and exactly once; patterns cross nodes; the bus can be killed and
// restarted under the nodes; --workers runs nodes on one port. Every case on both backends.
// Without redis-server the cases are skipped (./dev test installs it).
#include "pubsub_support.hpp"
#include "pubsub_ws_support.hpp"
#include "redis_support.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <thread>

using namespace coring;
using namespace coring::testing;

namespace {

using clock = std::chrono::steady_clock;

// Polls `ready` every 10 ms until it holds or `limit` passes; whether it held. For what the nodes
// do on their own time (a link coming back, an unsubscribe reaching Redis), never as a delay.
template <class Pred>
bool eventually(Pred ready, std::chrono::milliseconds limit = 10s) {
    const auto deadline = clock::now() + limit;
    for (;;) {
        if (ready()) return true;
        if (clock::now() >= deadline) return false;
        std::this_thread::sleep_for(10ms);
    }
}

// One INFO counter of a node; the test fails when INFO has no such line.
std::uint64_t counter(resp_client& c, const std::string& name) {
    const auto fields = info_fields(c);
    const auto it = fields.find(name);
    INFO("INFO field " << name);
    REQUIRE(it != fields.end());
    return std::stoull(it->second);
}

// What --bus names: redis://127.0.0.1:PORT.
std::string url(const server& redis) { return "redis://127.0.0.1:" + std::to_string(redis.port); }

// The reply to a PUBLISH that reached only its own node's subscribers.
std::string bus_unavailable(int delivered) {
    return "-ERR bus unavailable: delivered to " + std::to_string(delivered) + " subscriber(s) on this node only";
}

// A bus node: coring-pubsub with two cores, so every case also runs the cross-core paths.
std::vector<std::string> bus_args(const server& bus, std::vector<std::string> extra = {}) {
    extra.insert(extra.begin(), {"--bus", url(bus)});
    return extra;
}

// A subscriber's message as [message, channel, payload]; empty when the next reply is no message.
std::string payload_of(resp_client& c) {
    const auto r = c.read();
    if (!r || r->elements.size() != 3 || r->elements[0].text != "message") return {};
    return r->elements[2].text;
}

// A node answers clients at once, while its connections to Redis are still being made (core 0's
// subscriber link, and a publishing connection per core): until then a SUBSCRIBE is answered
// without Redis's confirmation and a PUBLISH with the error. Waits until INFO counts the link up
// and a PUBLISH from this client's core (to a channel nobody has) is taken by Redis.
void wait_for_bus(resp_client& publisher) {
    CHECK(eventually([&] {
        return counter(publisher, "bus_link_up") >= 1 && publisher.call({"PUBLISH", "probe", "x"}) == ":0";
    }));
}

// The same for both cores of a node.
void wait_for_bus(pubsub_process& node) {
    std::vector<resp_client> spare;
    for (const unsigned core : {0u, 1u}) {
        auto c = node.client_on(core, spare);
        wait_for_bus(c);
    }
}

// Publishes `text` until Redis takes it (":N" rather than the error), after an outage: the
// publishing connections come back on their own backoff, maybe after the subscriber link. Every
// try reaches the node's own `local` subscribers either way, and is read from them here.
bool publish_until_taken(resp_client& publisher, const std::string& channel, const std::string& text,
                         std::vector<resp_client*> local) {
    const std::string taken = ":" + std::to_string(local.size());
    for (int i = 0; i < 100; ++i) {  // 100 tries 100 ms apart: past the 5 s backoff cap
        const std::string reply = publisher.call({"PUBLISH", channel, text});
        for (auto* s : local) CHECK(payload_of(*s) == text);
        if (reply == taken) return true;
        CHECK(reply == bus_unavailable(static_cast<int>(local.size())));
        std::this_thread::sleep_for(100ms);
    }
    return false;
}

// One redis-server and two nodes, A and B, joined through it, their links to it up.
struct two_nodes {
    server bus;
    pubsub_process a, b;

    two_nodes(backend_kind kind, const std::string& redis_binary)
        : bus{start_redis(redis_binary)}, a{kind, 2, bus_args(bus)}, b{kind, 2, bus_args(bus)} {
        wait_for_bus(a);
        wait_for_bus(b);
    }
};

// A program (a path) run to its end within 10 s: its exit status and stdout.
std::pair<int, std::string> run(const std::string& binary, std::vector<std::string> args) {
    child_process p{binary, std::move(args)};
    const auto status = p.wait_exit_or_kill(10s);
    INFO(binary << " said: " << p.out() << p.err());
    REQUIRE(status);
    return {WIFEXITED(*status) ? WEXITSTATUS(*status) : -1, p.out()};
}

// redis-cli, a real Redis client, as a user types it: `redis-cli -p PORT args...`.
std::pair<int, std::string> redis_cli(std::uint16_t port, std::vector<std::string> args) {
    args.insert(args.begin(), {"-p", std::to_string(port)});
    return run("/usr/bin/redis-cli", std::move(args));
}


}  // namespace

TEST_CASE("bus: publishes on two nodes reach every subscriber on both, each publisher's in order, once", "[bus]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    const auto binary = server_binary("redis-server");
    if (binary.empty()) return;
    two_nodes nodes{kind, binary};
    auto& [bus, a, b] = nodes;
    resp_client pa{a.port}, pb{b.port};
    const auto published_a = counter(pa, "bus_published"), published_b = counter(pb, "bus_published");

    // Four subscribers per node, two on each core.
    std::vector<resp_client> spare, subscribers;
    for (auto* node : {&a, &b})
        for (const unsigned core : {0u, 1u, 0u, 1u}) {
            subscribers.push_back(node->client_on(core, spare));
            REQUIRE(subscribers.back().call({"SUBSCRIBE", "flow"}) == "[subscribe, flow, :1]");
        }

    constexpr int per_publisher = 200;
    std::string batch_a, batch_b;
    for (int i = 0; i < per_publisher; ++i) {
        batch_a += resp_command({"PUBLISH", "flow", "A:" + std::to_string(i)});
        batch_b += resp_command({"PUBLISH", "flow", "B:" + std::to_string(i)});
    }
    REQUIRE(pa.send_raw(batch_a));  // all pipelined: the replies are read after both were sent
    REQUIRE(pb.send_raw(batch_b));
    std::map<std::string, int> replies_a, replies_b;  // each reply counts its own node's subscribers
    for (int i = 0; i < per_publisher; ++i) {
        ++replies_a[pa.next()];
        ++replies_b[pb.next()];
    }
    CHECK(replies_a == std::map<std::string, int>{{":4", per_publisher}});
    CHECK(replies_b == std::map<std::string, int>{{":4", per_publisher}});

    for (std::size_t s = 0; s < subscribers.size(); ++s) {
        INFO("subscriber " << s << " on node " << (s < 4 ? 'A' : 'B'));
        int next_a = 0, next_b = 0;
        std::string problem;
        for (int m = 0; m < 2 * per_publisher && problem.empty(); ++m) {
            const std::string p = payload_of(subscribers[s]);
            const bool from_a = p.starts_with("A:");
            int& next = from_a ? next_a : next_b;
            if (p != (from_a ? "A:" : "B:") + std::to_string(next))
                problem = "message " + std::to_string(m) + ": expected " + (from_a ? "A:" : "B:") +
                          std::to_string(next) + ", got '" + p + "'";
            ++next;
        }
        CHECK(problem == "");
        CHECK(next_a == per_publisher);
        CHECK(next_b == per_publisher);
    }

    // Each node's own 200 came back from Redis and were dropped there; once they are in, nothing
    // else waits before a PING's answer: no subscriber got any message twice.
    CHECK(eventually([&] { return counter(pa, "bus_own_dropped") == per_publisher; }));
    CHECK(eventually([&] { return counter(pb, "bus_own_dropped") == per_publisher; }));
    CHECK(counter(pa, "bus_published") == published_a + per_publisher);
    CHECK(counter(pb, "bus_published") == published_b + per_publisher);
    CHECK(counter(pa, "bus_received") == per_publisher);  // B's, and nothing of A's own
    CHECK(counter(pb, "bus_received") == per_publisher);
    for (auto& s : subscribers) CHECK(s.call({"PING"}) == "[pong, ]");
}

TEST_CASE("bus: pattern subscriptions cross nodes; channel and pattern together give two copies, never more", "[bus]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    const auto binary = server_binary("redis-server");
    if (binary.empty()) return;
    two_nodes nodes{kind, binary};
    auto& [bus, a, b] = nodes;
    resp_client pa{a.port}, pb{b.port};
    std::vector<resp_client> spare;
    auto pattern = a.client_on(1, spare);  // a pattern alone, on A's other core
    auto both = a.client_on(0, spare);     // the channel and a matching pattern
    auto on_b = b.client_on(1, spare);     // a pattern on B, for A's publishes
    REQUIRE(pattern.call({"PSUBSCRIBE", "news.*"}) == "[psubscribe, news.*, :1]");
    REQUIRE(both.call({"SUBSCRIBE", "news.eu"}) == "[subscribe, news.eu, :1]");
    REQUIRE(both.call({"PSUBSCRIBE", "news.*"}) == "[psubscribe, news.*, :2]");
    REQUIRE(on_b.call({"PSUBSCRIBE", "n?ws.*"}) == "[psubscribe, n?ws.*, :1]");

    // From B: the second publish follows the first through Redis and A in order, so a third copy
    // of the first would come before it.
    for (const char* text : {"hello", "after hello"}) {
        CHECK(pb.call({"PUBLISH", "news.eu", text}) == ":1");  // B's own pattern subscriber
        CHECK(on_b.next() == std::string{"[pmessage, n?ws.*, news.eu, "} + text + "]");
        CHECK(pattern.next() == std::string{"[pmessage, news.*, news.eu, "} + text + "]");
        CHECK(both.next() == std::string{"[message, news.eu, "} + text + "]");
        CHECK(both.next() == std::string{"[pmessage, news.*, news.eu, "} + text + "]");
    }

    // From A: delivered in A at once (three receivers there), to B through Redis.
    const auto own_before = counter(pa, "bus_own_dropped");
    CHECK(pa.call({"PUBLISH", "news.eu", "local"}) == ":3");
    CHECK(pattern.next() == "[pmessage, news.*, news.eu, local]");
    CHECK(both.next() == "[message, news.eu, local]");
    CHECK(both.next() == "[pmessage, news.*, news.eu, local]");
    CHECK(on_b.next() == "[pmessage, n?ws.*, news.eu, local]");
    // A's own publish came back from Redis (once per bus subscription it matched: the channel and
    // the pattern) and was dropped: nothing more waits before a PING's answer.
    CHECK(eventually([&] { return counter(pa, "bus_own_dropped") >= own_before + 2; }));
    CHECK(both.call({"PING"}) == "[pong, ]");
    CHECK(pattern.call({"PING"}) == "[pong, ]");
    CHECK(on_b.call({"PING"}) == "[pong, ]");
}

TEST_CASE("bus: a message published straight into Redis reaches both nodes byte for byte", "[bus]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    const auto binary = server_binary("redis-server");
    if (binary.empty()) return;
    two_nodes nodes{kind, binary};
    auto& [bus, a, b] = nodes;
    resp_client ask_a{a.port}, ask_b{b.port};  // INFO is no command for a subscribed connection
    std::vector<resp_client> spare, subscribers;
    for (auto* node : {&a, &b})
        for (const unsigned core : {0u, 1u}) {
            subscribers.push_back(node->client_on(core, spare));
            REQUIRE(subscribers.back().call({"SUBSCRIBE", "raw"}) == "[subscribe, raw, :1]");
        }

    std::string every_byte;  // every byte value, RESP framing and a NUL inside the payload
    for (int i = 0; i < 256; ++i) every_byte += static_cast<char>(255 - i);
    every_byte += std::string{"\r\n*1\r\n$3\r\n\0x", 13};
    const std::string big(100'000, 'z');  // more than one read of a node's bus link
    const std::string looks_wrapped = "\x1f" "coring\x1f" "not-hex-digits!!tail";  // no envelope: as it is
    const std::string foreign_node = "\x1f" "coring\x1f" "0123456789abcdef" "inner";  // another node's envelope

    resp_client redis{bus.port};  // a raw RESP client to redis-server itself
    const std::string* payloads[] = {&every_byte, &big, &looks_wrapped};
    for (const std::string* payload : payloads) {
        INFO("payload of " << payload->size() << " bytes");
        CHECK(redis.call({"PUBLISH", "raw", *payload}) == ":2");  // two nodes subscribed on Redis
        for (auto& s : subscribers) CHECK(payload_of(s) == *payload);
    }
    CHECK(redis.call({"PUBLISH", "raw", foreign_node}) == ":2");
    for (auto& s : subscribers) CHECK(payload_of(s) == "inner");

    const auto [status, out] = redis_cli(bus.port, {"PUBLISH", "raw", "from redis-cli"});
    CHECK(status == 0);
    CHECK(out == "2\n");
    for (auto& s : subscribers) CHECK(s.next() == "[message, raw, from redis-cli]");
    CHECK(counter(ask_a, "bus_received") == 5);
    CHECK(counter(ask_b, "bus_received") == 5);
}

TEST_CASE("bus: a SUBSCRIBE's reply means the bus has it: a publish on the other node right after arrives", "[bus]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    const auto binary = server_binary("redis-server");
    if (binary.empty()) return;
    two_nodes nodes{kind, binary};
    auto& [bus, a, b] = nodes;
    resp_client pa{a.port}, pb{b.port};
    std::vector<resp_client> spare;
    resp_client on_core[2] = {a.client_on(0, spare), a.client_on(1, spare)};
    for (int i = 0; i < 20; ++i) {
        INFO("round " << i);
        auto& s = on_core[i % 2];
        const std::string channel = "race." + std::to_string(i);
        REQUIRE(s.call({"SUBSCRIBE", channel}) == "[subscribe, " + channel + ", :" + std::to_string(i / 2 + 1) + "]");
        CHECK(pb.call({"PUBLISH", channel, "first"}) == ":0");  // no subscriber on B itself
        CHECK(s.next() == "[message, " + channel + ", first]");
    }
}

TEST_CASE("bus: a node holds one bus subscription per channel while it has subscribers, none after", "[bus]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    const auto binary = server_binary("redis-server");
    if (binary.empty()) return;
    two_nodes nodes{kind, binary};
    auto& [bus, a, b] = nodes;
    resp_client redis{bus.port};
    const auto numsub_is = [&](int n) {
        return eventually([&] { return redis.call({"PUBSUB", "NUMSUB", "interest"}) == "[interest, :" + std::to_string(n) + "]"; });
    };
    std::vector<resp_client> spare;
    auto a0 = a.client_on(0, spare), a1 = a.client_on(1, spare), b1 = b.client_on(1, spare);
    REQUIRE(a0.call({"SUBSCRIBE", "interest"}) == "[subscribe, interest, :1]");
    REQUIRE(a1.call({"SUBSCRIBE", "interest"}) == "[subscribe, interest, :1]");
    REQUIRE(b1.call({"SUBSCRIBE", "interest"}) == "[subscribe, interest, :1]");
    // Confirmed by Redis before the replies: no waiting. Two nodes, not three subscribers.
    CHECK(redis.call({"PUBSUB", "NUMSUB", "interest"}) == "[interest, :2]");

    CHECK(a0.call({"UNSUBSCRIBE", "interest"}) == "[unsubscribe, interest, :0]");  // A still has a1
    CHECK(redis.call({"PUBSUB", "NUMSUB", "interest"}) == "[interest, :2]");
    a1.close();  // A's last subscriber leaves by going away
    CHECK(numsub_is(1));
    CHECK(b1.call({"UNSUBSCRIBE", "interest"}) == "[unsubscribe, interest, :0]");
    CHECK(numsub_is(0));

    // Interest comes back, and patterns are counted the same way.
    CHECK(a0.call({"SUBSCRIBE", "interest"}) == "[subscribe, interest, :1]");
    CHECK(redis.call({"PUBSUB", "NUMSUB", "interest"}) == "[interest, :1]");
    CHECK(b1.call({"PSUBSCRIBE", "int*"}) == "[psubscribe, int*, :1]");
    CHECK(redis.call({"PUBSUB", "NUMPAT"}) == ":1");
    CHECK(b1.call({"PUNSUBSCRIBE", "int*"}) == "[punsubscribe, int*, :0]");
    CHECK(eventually([&] { return redis.call({"PUBSUB", "NUMPAT"}) == ":0"; }));
}

TEST_CASE("bus: killed and restarted under the nodes: local delivery goes on, PUBLISH errors, subscriptions come back", "[bus]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    const auto binary = server_binary("redis-server");
    if (binary.empty()) return;
    two_nodes nodes{kind, binary};
    auto& [bus, a, b] = nodes;
    resp_client pa{a.port}, pb{b.port};
    std::vector<resp_client> spare;
    resp_client on_a[2] = {a.client_on(0, spare), a.client_on(1, spare)};
    auto on_b = b.client_on(1, spare);
    for (auto* s : {&on_a[0], &on_a[1], &on_b}) REQUIRE(s->call({"SUBSCRIBE", "live"}) == "[subscribe, live, :1]");
    const auto up_a = counter(pa, "bus_link_up"), up_b = counter(pb, "bus_link_up");

    // Mid-flow: 50 pipelined publishes on A, and the bus killed while they go. Each is either
    // taken by Redis or answered with the error; A's own subscribers get all of them either way.
    constexpr int flow = 50;
    std::string batch;
    for (int i = 0; i < flow; ++i) batch += resp_command({"PUBLISH", "live", "flow:" + std::to_string(i)});
    REQUIRE(pa.send_raw(batch));
    bus.proc.reset();  // SIGKILL by its PID, reaped: its sockets close at once
    std::map<std::string, int> replies;
    for (int i = 0; i < flow; ++i) ++replies[pa.next()];
    INFO("replies: " << [&] {
        std::string all;
        for (const auto& [reply, n] : replies) all += reply + " x" + std::to_string(n) + "; ";
        return all;
    }());
    CHECK(replies[":2"] + replies[bus_unavailable(2)] == flow);
    for (auto& s : on_a)
        for (int i = 0; i < flow; ++i) CHECK(payload_of(s) == "flow:" + std::to_string(i));

    // Down: both nodes noticed; a publish on A still reaches A's subscribers, and says it went no further.
    CHECK(eventually([&] { return counter(pa, "bus_link_down") >= 1; }));
    CHECK(eventually([&] { return counter(pb, "bus_link_down") >= 1; }));
    CHECK(pa.call({"PUBLISH", "live", "while down"}) == bus_unavailable(2));
    for (auto& s : on_a) CHECK(s.next() == "[message, live, while down]");
    CHECK(pb.call({"PUBLISH", "live", "B while down"}) == bus_unavailable(1));
    // B may have got some of A's flow through Redis before the kill: those come first.
    std::string got = payload_of(on_b);
    for (int i = 0; i < flow && got.starts_with("flow:"); ++i) got = payload_of(on_b);
    CHECK(got == "B while down");

    // Back on the same port: both links come up again and both nodes subscribe again.
    bus = start_redis(binary, {}, bus.port);
    CHECK(eventually([&] { return counter(pa, "bus_link_up") > up_a; }));
    CHECK(eventually([&] { return counter(pb, "bus_link_up") > up_b; }));
    resp_client redis{bus.port};
    CHECK(eventually([&] { return redis.call({"PUBSUB", "NUMSUB", "live"}) == "[live, :2]"; }));
    REQUIRE(publish_until_taken(pb, "live", "after", {&on_b}));
    for (auto& s : on_a) CHECK(s.next() == "[message, live, after]");  // A is subscribed again
    REQUIRE(publish_until_taken(pa, "live", "after from A", {&on_a[0], &on_a[1]}));
    CHECK(on_b.next() == "[message, live, after from A]");

    CHECK(counter(pa, "bus_link_down") >= 1);
    CHECK(counter(pa, "bus_publish_failed") >= 1);
    CHECK(counter(pb, "bus_publish_failed") >= 1);
    const std::string where = "pubsub: bus " + url(bus);
    for (auto* node : {&a, &b}) {
        const std::string& log = node->log();
        INFO("node stderr:\n" << log);
        const auto down = log.find(where + " down");
        REQUIRE(down != std::string::npos);
        CHECK(log.find(where + " up", down) != std::string::npos);  // up again after it
    }
}

TEST_CASE("bus: a node whose bus is not there still serves its own subscribers", "[bus]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    // Held bound but not listening: a connect to it is refused, and nothing else can take it.
    const auto nothing = reserve_loopback_port();
    pubsub_process a{kind, 2, {"--bus", "redis://127.0.0.1:" + std::to_string(nothing.port)}};

    std::vector<resp_client> spare;
    resp_client subscribers[2] = {a.client_on(0, spare), a.client_on(1, spare)};
    for (auto& s : subscribers) CHECK(s.call({"SUBSCRIBE", "alone"}) == "[subscribe, alone, :1]");  // not held back
    resp_client p{a.port};
    CHECK(p.call({"PUBLISH", "alone", "still here"}) == bus_unavailable(2));
    for (auto& s : subscribers) CHECK(s.next() == "[message, alone, still here]");
    CHECK(counter(p, "bus_link_up") == 0);
    CHECK(counter(p, "bus_publish_failed") >= 1);
}

TEST_CASE("bus: --workers 2 runs two nodes on one port; a publish reaches every subscriber on both once", "[bus]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    const auto binary = server_binary("redis-server");
    if (binary.empty()) return;
    auto bus = start_redis(binary);
    pubsub_process w{kind, 2, bus_args(bus, {"--workers", "2"})};

    // Connections until two land on each worker (the kernel spreads them over the listeners).
    std::map<std::string, std::vector<resp_client>> by_worker;  // INFO's process_id -> its clients
    const auto enough = [&] {
        return by_worker.size() == 2 && std::all_of(by_worker.begin(), by_worker.end(), [](const auto& e) { return e.second.size() >= 2; });
    };
    for (int i = 0; i < 64 && !enough(); ++i) {
        resp_client c{w.port};
        const auto pid = info_fields(c)["process_id"];
        by_worker[pid].push_back(std::move(c));
    }
    REQUIRE(by_worker.size() == 2);
    auto& first = by_worker.begin()->second;
    auto& second = std::next(by_worker.begin())->second;
    REQUIRE(first.size() >= 2);
    REQUIRE(second.size() >= 2);

    wait_for_bus(first[0]);
    wait_for_bus(second[0]);
    // All but one connection per worker subscribe; the one left over publishes.
    for (auto* clients : {&first, &second})
        for (std::size_t i = 1; i < clients->size(); ++i)
            REQUIRE((*clients)[i].call({"SUBSCRIBE", "workers"}) == "[subscribe, workers, :1]");
    CHECK(first[0].call({"PUBLISH", "workers", "hi"}) == ":" + std::to_string(first.size() - 1));
    CHECK(second[0].call({"PUBLISH", "workers", "bye"}) == ":" + std::to_string(second.size() - 1));
    // Two publishers have no order between them: a subscriber of the second worker may get its
    // own worker's "bye" before "hi" comes through Redis. Each gets both, once: a PING's answer
    // comes after whatever was queued before it.
    for (auto* clients : {&first, &second})
        for (std::size_t i = 1; i < clients->size(); ++i) {
            std::vector<std::string> got{(*clients)[i].next(), (*clients)[i].next()};
            std::sort(got.begin(), got.end());
            CHECK(got == std::vector<std::string>{"[message, workers, bye]", "[message, workers, hi]"});
            CHECK((*clients)[i].call({"PING"}) == "[pong, ]");
        }
}

TEST_CASE("bus: redis-py subscribed on one node gets what redis-cli published on the other", "[bus]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    const auto binary = server_binary("redis-server");
    if (binary.empty()) return;
    if (::system("/usr/bin/python3 -c 'import redis' 2>/dev/null") != 0) {
        WARN("python3-redis is not installed: skipped");
        return;
    }
    two_nodes nodes{kind, binary};
    auto& [bus, a, b] = nodes;

    // Says "subscribed" once the SUBSCRIBE was answered, then prints the one message it waits
    // for (10 s at most).
    const std::string script =
        "import sys, redis\n"
        "p = redis.Redis(host='127.0.0.1', port=int(sys.argv[1]), socket_timeout=15).pubsub()\n"
        "p.subscribe('py')\n"
        "m = p.get_message(timeout=5)\n"
        "print(m and m['type'], flush=True)\n"
        "m = p.get_message(timeout=10)\n"
        "print(m and (m['type'], m['channel'], m['data']), flush=True)\n";
    child_process py{"/usr/bin/python3", {"-c", script, std::to_string(a.port)}};
    const bool subscribed = py.read_until(clock::now() + 10s, [](const child_process& p) {
        return p.out().find('\n') != std::string::npos;
    });
    INFO("python said: " << py.out() << py.err());
    REQUIRE(subscribed);
    REQUIRE(py.out() == "subscribe\n");

    const auto [status, out] = redis_cli(b.port, {"PUBLISH", "py", "hello from B"});
    CHECK(status == 0);
    CHECK(out == "0\n");  // no subscriber on B itself
    const auto exit = py.wait_exit_or_kill(15s);
    REQUIRE(exit);
    CHECK((WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0));
    CHECK(py.out() == "subscribe\n('message', b'py', b'hello from B')\n");
}

namespace {

// A masked WebSocket text frame (key 0: the payload goes as it is) of up to 65,535 bytes.
std::string ws_text_frame(std::string_view payload) {
    std::string f{'\x81'};
    if (payload.size() < 126) {
        f += static_cast<char>(0x80 | payload.size());
    } else {
        f += {'\xfe', static_cast<char>(payload.size() >> 8), static_cast<char>(payload.size() & 0xff)};
    }
    f += std::string(4, '\0');
    f += payload;
    return f;
}

// SIGSTOPs a process for as long as it lives, SIGCONT on every way out (a stopped redis-server
// would not end on the SIGTERM of its clean-up).
struct stopped {
    pid_t pid;
    explicit stopped(pid_t p) : pid{p} { ::kill(pid, SIGSTOP); }
    void resume() {
        if (pid > 0) ::kill(std::exchange(pid, 0), SIGCONT);
    }
    ~stopped() { resume(); }
};

}  // namespace

TEST_CASE("bus: a WebSocket publisher is held back while Redis does not answer, and loses nothing", "[bus]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    const auto binary = server_binary("redis-server");
    if (binary.empty()) return;
    server bus = start_redis(binary);
    pubsub_process node{kind, 1, bus_args(bus, {"--http", "127.0.0.1:0", "--bus-timeout", "60000"})};
    const auto http_port = pubsub_ports_of(node.log()).http;
    REQUIRE(http_port != 0);
    resp_client info{node.port}, sub{node.port};
    wait_for_bus(info);
    REQUIRE(sub.call({"SUBSCRIBE", "c"}) == "[subscribe, c, :1]");

    // A WebSocket publisher sends 6,000 publishes of 1 KiB (more than the socket buffers hold)
    // while Redis is stopped: every one waits for Redis's answer, so the session stops reading
    // at limits::max_unanswered (4,096) and TCP holds the rest back in the client.
    constexpr int total = 6000;
    fd_guard ws{connect_blocking(http_port)};
    REQUIRE(ws.fd >= 0);
    REQUIRE(send_all(ws.fd, "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"));
    REQUIRE(read_line(ws.fd).starts_with("HTTP/1.1 101"));
    for (int i = 0; i < 32; ++i)  // the rest of the head, up to its empty line
        if (read_line(ws.fd) == "\r\n") break;
    // The publisher subscribes too: what it is sent must not wait behind its own publishes.
    REQUIRE(send_all(ws.fd, ws_text_frame(R"({"sub":"w"})")));
    const auto text_message = [&] {  // a server's frame: unmasked, short
        const std::string head = read_n(ws.fd, 2);
        if (head.size() != 2 || (head[1] & 0x7f) >= 126) return std::string{"<bad frame>"};
        return read_n(ws.fd, static_cast<std::size_t>(head[1] & 0x7f));
    };
    CHECK(text_message() == R"({"subscribed":"w","count":1})");
    const std::uint64_t before = counter(info, "bus_published");
    stopped paused{bus.proc->pid()};
    std::thread flood([fd = ws.fd] {
        for (int i = 0; i < total; ++i) {
            std::string data = std::to_string(i);
            data.resize(1024, '.');
            if (!send_all(fd, ws_text_frame(R"({"pub":"c","data":")" + data + "\"}"))) return;
        }
    });
    CHECK(eventually([&] { return counter(info, "bus_published") - before >= 4096; }));
    std::this_thread::sleep_for(300ms);  // and it stays there
    CHECK(counter(info, "bus_published") - before == 4096);
    // Meanwhile the publisher's own subscription is served at once, Redis or not.
    resp_client other{node.port};
    REQUIRE(other.send_raw(resp_command({"PUBLISH", "w", "now"})));  // its reply waits for Redis
    CHECK(text_message() == R"({"channel":"w","data":"now"})");
    paused.resume();
    flood.join();
    CHECK(eventually([&] { return counter(info, "bus_published") - before == total + 1; }));  // and "now"
    CHECK(counter(info, "bus_publish_failed") == 0);
    CHECK(other.next() == ":1");
    for (int i = 0; i < total; ++i) {  // the node's own subscriber got every one, in order
        const std::string got = payload_of(sub);
        if (!got.starts_with(std::to_string(i) + ".")) FAIL("message " << i << ": " << got.substr(0, 16));
    }
}
