// coring-pubsub with the clients people use (redis-cli, redis-py) and with the clients that
// hurt: a thousand subscribers, a subscriber that never reads, one that leaves mid-flood or
// resets with a queue waiting, a publisher that never reads its replies; and a graceful stop.
// Each on both backends, on two cores where messages cross cores.
#include <coring/frame_allocator.hpp>
#include "pubsub_support.hpp"

#include <atomic>
#include <csignal>
#include <fstream>
#include <map>
#include <thread>

using namespace coring;
using namespace coring::testing;

namespace {

using clock_type = std::chrono::steady_clock;

// INFO's value for `name`, as a number.
std::uint64_t info_value(resp_client& c, std::string_view name) {
    REQUIRE(c.send({"INFO"}));
    const auto r = c.read();
    REQUIRE(r);
    const std::string key = "\n" + std::string{name} + ":";
    const auto at = r->text.find(key);
    INFO("INFO:\n" << r->text);
    REQUIRE(at != std::string::npos);
    return std::stoull(r->text.substr(at + key.size()));
}

// The resident memory of a process, from /proc (kB).
std::uint64_t resident_kb(pid_t pid) {
    std::ifstream status{"/proc/" + std::to_string(pid) + "/status"};
    std::string line;
    while (std::getline(status, line))
        if (line.starts_with("VmRSS:")) return std::stoull(line.substr(6));
    return 0;
}

// Publishes `count` messages numbered from `first` on to `channel`, pipelined, each payload its
// number padded with dots to `size` bytes; returns the replies.
std::vector<std::string> publish_batch(resp_client& publisher, const std::string& channel, std::uint64_t first,
                                       std::size_t count, std::size_t size = 0) {
    std::string commands;
    for (std::size_t i = 0; i < count; ++i) {
        std::string payload = std::to_string(first + i);
        if (payload.size() < size) payload += std::string(size - payload.size(), '.');
        commands += resp_command({"PUBLISH", channel, payload});
    }
    REQUIRE(publisher.send_raw(commands));
    std::vector<std::string> replies;
    for (std::size_t i = 0; i < count; ++i) replies.push_back(publisher.next());
    return replies;
}

// The same, when every reply must be the count `receivers`.
void publish_to(resp_client& publisher, const std::string& channel, std::uint64_t first, std::size_t count,
                std::size_t receivers, std::size_t size = 0) {
    for (const auto& r : publish_batch(publisher, channel, first, count, size)) REQUIRE(r == ":" + std::to_string(receivers));
}

// Reads `count` messages of `channel` numbered from `first` on, in order (payload: seq, padding).
void expect_messages(resp_client& c, const std::string& channel, std::uint64_t first, std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) {
        const auto r = c.read();
        REQUIRE(r);
        REQUIRE(r->elements.size() == 3);
        REQUIRE(show(r->elements[1]) == channel);
        REQUIRE(std::stoull(r->elements[2].text) == first + i);
    }
}

}  // namespace

TEST_CASE("pubsub: redis-cli subscribes, psubscribes and publishes", "[pubsub]") {
    if (!installed("/usr/bin/redis-cli", "redis-tools")) return;
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    pubsub_process server{kind, 2};
    const std::string port = std::to_string(server.port);
    child_process sub{"/usr/bin/redis-cli", {"-p", port, "SUBSCRIBE", "cli.news"}};
    child_process psub{"/usr/bin/redis-cli", {"-p", port, "PSUBSCRIBE", "cli.*"}};
    // redis-cli prints each reply's parts on lines of their own when its output is no terminal.
    CHECK(sub.read_until(clock_type::now() + 10s, [](const child_process& p) { return p.out() == "subscribe\ncli.news\n1\n"; }));
    CHECK(psub.read_until(clock_type::now() + 10s, [](const child_process& p) { return p.out() == "psubscribe\ncli.*\n1\n"; }));

    child_process pub{"/usr/bin/redis-cli", {"-p", port, "PUBLISH", "cli.news", "hello from redis-cli"}};
    const auto status = pub.wait_exit_or_kill(10s);
    INFO("redis-cli PUBLISH stderr: " << pub.err());
    CHECK(status == 0);
    CHECK(pub.out() == "2\n");
    CHECK(sub.read_until(clock_type::now() + 10s, [](const child_process& p) {
        return p.out().ends_with("message\ncli.news\nhello from redis-cli\n");
    }));
    CHECK(psub.read_until(clock_type::now() + 10s, [](const child_process& p) {
        return p.out().ends_with("pmessage\ncli.*\ncli.news\nhello from redis-cli\n");
    }));
    INFO("SUBSCRIBE output:\n" << sub.out() << "\nPSUBSCRIBE output:\n" << psub.out());

    child_process ping{"/usr/bin/redis-cli", {"-p", port, "PING"}};
    CHECK(ping.wait_exit_or_kill(10s) == 0);
    CHECK(ping.out() == "PONG\n");
}

namespace {

// redis-py's pubsub API: one line per thing it saw.
constexpr const char* python_redis_client = R"(
import sys, redis
r = redis.Redis(host="127.0.0.1", port=int(sys.argv[1]), socket_timeout=10)
p = r.pubsub()
p.subscribe("py.news")
p.psubscribe("py.*")
def next_message():
    for _ in range(100):
        m = p.get_message(timeout=0.1)
        if m is not None:
            return m
    raise SystemExit("no message within 10 s")
for _ in range(2):
    m = next_message()
    print(m["type"], m["channel"].decode(), m["data"])
print("publish", r.publish("py.news", b"hello from python"))
for _ in range(2):
    m = next_message()
    print(m["type"], m.get("pattern") and m["pattern"].decode(), m["channel"].decode(), m["data"].decode())
print("numsub", r.pubsub_numsub("py.news"), "numpat", r.pubsub_numpat())
p.unsubscribe("py.news")
print(next_message()["type"])
print("ping", r.ping())
)";

}  // namespace

TEST_CASE("pubsub: python3-redis's pubsub API", "[pubsub]") {
    if (!installed("/usr/bin/python3", "python3")) return;
    if (::system("/usr/bin/python3 -c 'import redis' 2>/dev/null") != 0) {
        WARN("python3-redis is not installed: skipped");
        return;
    }
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    pubsub_process server{kind, 2};
    child_process python{"/usr/bin/python3", {"-c", python_redis_client, std::to_string(server.port)}};
    const auto status = python.wait_exit_or_kill(30s);
    INFO("python stderr: " << python.err());
    CHECK(status == 0);
    CHECK(python.out() ==
          "subscribe py.news 1\n"
          "psubscribe py.* 2\n"
          "publish 2\n"
          "message None py.news hello from python\n"
          "pmessage py.* py.news hello from python\n"
          "numsub [(b'py.news', 1)] numpat 1\n"
          "unsubscribe\n"
          "ping True\n");
}

TEST_CASE("pubsub: 1,000 subscribers over 10 channels get every message once, in each publisher's order", "[pubsub]") {
    constexpr std::size_t subscribers = 1000, channels = 10, per_publisher = 200;
    if (raise_fd_limit() < 2 * subscribers + 64) {
        WARN("the fd limit stays below " << 2 * subscribers + 64 << ": skipped");
        return;
    }
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    pubsub_process server{kind, 2};
    std::vector<resp_client> subs;
    subs.reserve(subscribers);
    for (std::size_t i = 0; i < subscribers; ++i) {
        subs.emplace_back(server.port);
        REQUIRE(subs.back().send({"SUBSCRIBE", "fan." + std::to_string(i % channels)}));
    }
    for (std::size_t i = 0; i < subscribers; ++i)
        REQUIRE(subs[i].next() == "[subscribe, fan." + std::to_string(i % channels) + ", :1]");

    // Two publishers at once, each numbering its messages; message s goes to channel s % 10.
    resp_client publishers[2] = {resp_client{server.port}, resp_client{server.port}};
    std::vector<std::string> replies[2];
    std::vector<std::thread> threads;
    for (int p = 0; p < 2; ++p) {
        threads.emplace_back([&, p] {
            std::string commands;
            for (std::size_t s = 0; s < per_publisher; ++s)
                commands += resp_command({"PUBLISH", "fan." + std::to_string(s % channels), std::to_string(p) + ":" + std::to_string(s)});
            if (!publishers[p].send_raw(commands)) return;
            for (std::size_t s = 0; s < per_publisher; ++s) replies[p].push_back(publishers[p].next());
        });
    }
    for (auto& t : threads) t.join();
    for (int p = 0; p < 2; ++p) {
        REQUIRE(replies[p].size() == per_publisher);
        for (const auto& r : replies[p]) REQUIRE(r == ":" + std::to_string(subscribers / channels));
    }

    for (std::size_t i = 0; i < subscribers; ++i) {
        INFO("subscriber " << i);
        const std::string channel = "fan." + std::to_string(i % channels);
        const auto first = std::int64_t(i % channels);
        std::int64_t last[2] = {first - std::int64_t{channels}, first - std::int64_t{channels}};
        std::size_t got[2] = {0, 0};
        for (std::size_t m = 0; m < 2 * per_publisher / channels; ++m) {
            const auto r = subs[i].read();
            REQUIRE(r);
            REQUIRE(r->elements.size() == 3);
            REQUIRE(show(r->elements[1]) == channel);
            const std::string& payload = r->elements[2].text;
            const int p = payload[0] - '0';
            REQUIRE((p == 0 || p == 1));
            const std::int64_t seq = std::stoll(payload.substr(2));
            REQUIRE(seq % std::int64_t{channels} == std::int64_t(i % channels));
            REQUIRE(seq == last[p] + std::int64_t{channels});  // the next one of that publisher: none lost, none twice
            last[p] = seq;
            ++got[p];
        }
        CHECK(got[0] == per_publisher / channels);
        CHECK(got[1] == per_publisher / channels);
        REQUIRE(subs[i].call({"PING"}) == "[pong, ]");  // and nothing more came before it
    }
}

TEST_CASE("pubsub: a subscriber past --max-output is cut; the others lose nothing", "[pubsub]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    // The hard rule alone, or the soft one (bytes for a while) with the hard one far off.
    const bool soft = GENERATE(false, true);
    INFO(to_string(kind) << (soft ? ", soft limit" : ", hard limit"));
    pubsub_process server{kind, 2,
                          soft ? std::vector<std::string>{"--max-output-soft", "32768,0.3"}
                               : std::vector<std::string>{"--max-output", "65536"}};
    resp_client slow{server.port, 4096};  // a small window, and it never reads
    CHECK(slow.call({"SUBSCRIBE", "slow.ch"}) == "[subscribe, slow.ch, :1]");
    std::vector<resp_client> readers;
    for (int i = 0; i < 3; ++i) {
        readers.emplace_back(server.port);
        CHECK(readers.back().call({"SUBSCRIBE", "slow.ch"}) == "[subscribe, slow.ch, :1]");
    }
    resp_client publisher{server.port};
    resp_client admin{server.port};

    // Batches of 10 KiB stay under either limit for a reader that reads each batch at once; the
    // slow one's queue only grows. Bounded: 2,000 batches (20 MiB), more than its socket buffers
    // and the limit together.
    constexpr std::size_t batch = 10, size = 1024;
    std::uint64_t sent = 0;
    bool cut = false;
    for (int b = 0; b < 2000 && !cut; ++b) {
        server.log();
        // The publish that cuts the slow one may count it or not; later ones do not.
        for (const auto& r : publish_batch(publisher, "slow.ch", sent, batch, size)) REQUIRE((r == ":4" || r == ":3"));
        for (auto& r : readers) expect_messages(r, "slow.ch", sent, batch);
        sent += batch;
        cut = info_value(admin, "slow_subscribers_cut") == 1;
        if (soft) std::this_thread::sleep_for(10ms);  // the soft rule needs time above the limit
    }
    INFO("published " << sent << " messages of " << size << " bytes; server log:\n" << server.log());
    REQUIRE(cut);
    CHECK(slow.ends());  // what the kernel held, then the end
    CHECK_THAT(server.log(), Catch::Contains("cut slow subscriber 127.0.0.1:"));

    // Afterwards the rest go on: the publish count drops to 3, and each reader saw everything.
    publish_to(publisher, "slow.ch", sent, batch, 3, size);
    for (auto& r : readers) {
        expect_messages(r, "slow.ch", sent, batch);
        CHECK(r.call({"PING"}) == "[pong, ]");
    }
    CHECK(info_value(admin, "slow_subscribers_cut") == 1);
    CHECK(info_value(admin, "connected_clients") == 5);
}

TEST_CASE("pubsub: UNSUBSCRIBE during a flood: the reply, and after it no message of that channel", "[pubsub]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    pubsub_process server{kind, 2};
    resp_client sub{server.port};
    CHECK(sub.call({"SUBSCRIBE", "flood"}) == "[subscribe, flood, :1]");
    CHECK(sub.call({"SUBSCRIBE", "calm"}) == "[subscribe, calm, :2]");
    resp_client publisher{server.port};

    // The publisher floods in batches of 100 until told to stop (at most 100,000 messages).
    constexpr std::uint64_t max_messages = 100'000;
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> published{0};
    std::atomic<bool> failed{false};
    std::thread flood{[&] {
        while (!stop && published < max_messages) {
            std::string commands;
            for (int i = 0; i < 100; ++i) commands += resp_command({"PUBLISH", "flood", std::to_string(published + std::uint64_t(i))});
            if (!publisher.send_raw(commands)) return failed.store(true);
            for (int i = 0; i < 100; ++i) {
                const std::string r = publisher.next();
                if (r != ":1" && r != ":0") return failed.store(true);
            }
            published += 100;
        }
    }};
    std::uint64_t next_seq = 0;
    std::string after;  // what came after the unsubscribe reply
    bool unsubscribed = false;
    std::uint64_t at_unsubscribe = 0;
    for (std::uint64_t n = 0; n < max_messages + 10; ++n) {
        const auto r = sub.read();
        if (!r) break;
        const std::string text = show(*r);
        if (text == "[unsubscribe, flood, :1]") {
            unsubscribed = true;
            at_unsubscribe = published;
            break;
        }
        if (r->elements.size() != 3 || show(r->elements[1]) != "flood" || std::stoull(r->elements[2].text) != next_seq) {
            after = text;
            break;
        }
        if (++next_seq == 200) REQUIRE(sub.send({"UNSUBSCRIBE", "flood"}));
    }
    // Let the flood go on for a while after the reply, then see that nothing of it came.
    for (int i = 0; i < 500 && published < at_unsubscribe + 2000 && published < max_messages; ++i) std::this_thread::sleep_for(10ms);
    const std::uint64_t flooded_after = published - at_unsubscribe;
    CHECK(sub.call({"PING", "end"}) == "[pong, end]");  // still subscribed to calm: a push
    stop = true;
    flood.join();
    INFO("messages before the reply: " << next_seq << ", published after it: " << flooded_after << ", unexpected: " << after);
    CHECK_FALSE(failed);
    REQUIRE(unsubscribed);
    CHECK(after.empty());
    CHECK(at_unsubscribe < max_messages);  // the flood was still on when the reply came
    CHECK(flooded_after > 0);
}

TEST_CASE("pubsub: a subscriber that resets with a large queue waiting leaves the others served", "[pubsub]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    pubsub_process server{kind, 2};
    resp_client victim{server.port, 4096};
    CHECK(victim.call({"SUBSCRIBE", "big"}) == "[subscribe, big, :1]");
    resp_client keeper{server.port};
    CHECK(keeper.call({"SUBSCRIBE", "big"}) == "[subscribe, big, :1]");
    resp_client publisher{server.port};
    // 100 messages of 64 KiB: 6.4 MiB queued for the victim, under the 32 MiB default limit.
    for (std::uint64_t b = 0; b < 10; ++b) {
        publish_to(publisher, "big", b * 10, 10, 2, 64 << 10);
        expect_messages(keeper, "big", b * 10, 10);
    }
    const linger reset{1, 0};
    REQUIRE(::setsockopt(victim.fd(), SOL_SOCKET, SO_LINGER, &reset, sizeof reset) == 0);
    victim.close();  // an RST, with the server mid-send

    CHECK(publisher.call({"PING"}) == "+PONG");
    // The server notices the reset when its send fails; until then the count may still be 2.
    std::string count;
    for (std::uint64_t i = 0; i < 100 && count != ":1"; ++i) {
        count = publisher.call({"PUBLISH", "big", std::to_string(100 + i)});
        expect_messages(keeper, "big", 100 + i, 1);
        if (count != ":1") std::this_thread::sleep_for(10ms);
    }
    CHECK(count == ":1");
    CHECK(keeper.call({"PING"}) == "[pong, ]");
    CHECK(info_value(publisher, "connected_clients") == 2);
}

TEST_CASE("pubsub: a publisher that never reads its replies is stopped, not buffered; others are served", "[pubsub]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    pubsub_process server{kind, 2};
    resp_client sub{server.port};
    CHECK(sub.call({"SUBSCRIBE", "watched"}) == "[subscribe, watched, :1]");
    const std::uint64_t rss_before = resident_kb(server.process.pid());

    resp_client greedy{server.port, 4096};
    const int flags = ::fcntl(greedy.fd(), F_GETFL);
    REQUIRE(::fcntl(greedy.fd(), F_SETFL, flags | O_NONBLOCK) == 0);
    std::string chunk;
    while (chunk.size() < 64 * 1024) chunk += resp_command({"PUBLISH", "nobody", "x"});
    // Write until the writes block for half a second; at most 512 MiB. A short send goes on
    // from where it stopped, so every command arrives whole.
    std::uint64_t written = 0;
    std::size_t at = 0;
    bool blocked = false;
    while (!blocked && written < (512ull << 20)) {
        const ssize_t n = ::send(greedy.fd(), chunk.data() + at, chunk.size() - at, MSG_NOSIGNAL);
        if (n > 0) {
            written += static_cast<std::uint64_t>(n);
            at = (at + static_cast<std::size_t>(n)) % chunk.size();
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            pollfd p{greedy.fd(), POLLOUT, 0};
            blocked = ::poll(&p, 1, 500) == 0;
        } else {
            REQUIRE(errno == EINTR);
        }
        server.log();
    }
    const std::uint64_t rss_after = resident_kb(server.process.pid());
    INFO("written " << written << " bytes; server RSS " << rss_before << " kB -> " << rss_after << " kB");
    REQUIRE(blocked);
    // What the server holds for it: its replies (reply_room, 256 KiB), one command buffer
    // (--max-message + 64 KiB) and the kernel's socket buffers, which are not the server's RSS.
    // Not under ASan: its quarantine keeps freed blocks (up to 256 MiB), so RSS is ASan's there.
    if (detail::frame_cache_enabled()) CHECK(rss_after < rss_before + 48 * 1024);

    // Meanwhile everyone else is served, on both cores.
    std::vector<resp_client> spare;
    for (unsigned core : {0u, 1u}) {
        resp_client other = server.client_on(core, spare);
        CHECK(other.call({"PING"}) == "+PONG");
        CHECK(other.call({"PUBLISH", "watched", "core " + std::to_string(core)}) == ":1");
        CHECK(sub.next() == "[message, watched, core " + std::to_string(core) + "]");
    }
}

TEST_CASE("pubsub: SIGTERM with subscribers connected ends coring-pubsub with exit 0 within the drain timeout", "[pubsub]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    pubsub_process server{kind, 2};  // --drain-timeout 1000
    std::vector<resp_client> subs;
    for (int i = 0; i < 8; ++i) {
        subs.emplace_back(server.port, i == 0 ? 4096 : 0);
        CHECK(subs.back().call({"SUBSCRIBE", "stop.ch"}) == "[subscribe, stop.ch, :1]");
    }
    resp_client publisher{server.port};
    // The first subscriber reads nothing: it has output queued when the stop comes.
    publish_to(publisher, "stop.ch", 0, 20, 8, 32 << 10);

    REQUIRE(::kill(server.process.pid(), SIGTERM) == 0);  // this test's own child, by pid
    const auto signalled = clock_type::now();
    const auto status = server.process.wait_exit_or_kill(1000ms + 5s);
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - signalled);
    INFO("stderr:\n" << server.process.err());
    REQUIRE(status);
    REQUIRE(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
    WARN(to_string(kind) << ": coring-pubsub stopped " << took.count() << " ms after SIGTERM with 9 clients (drain timeout 1000 ms)");
    for (auto& s : subs) CHECK(s.ends());
}
