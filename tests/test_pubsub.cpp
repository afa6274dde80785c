// coring-pubsub's RESP side over raw sockets: framing (split, pipelined, inline), Redis's error
// texts, malformed frames, and every command the server speaks, on both backends; PUBSUB and
// PUBLISH's count with subscribers on both cores.
#include "pubsub_support.hpp"

#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <thread>

using namespace coring;
using namespace coring::testing;

TEST_CASE("pubsub: a command split at every byte position is answered once, whole", "[pubsub]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    pubsub_process server{kind, 1};
    resp_client c{server.port};
    // An array command, then an inline one: each sent in two writes split at byte i.
    for (const std::string& command : {resp_command({"ECHO", "hello\r\nworld"}), std::string{"ECHO \"split here\"\r\n"}}) {
        for (std::size_t i = 1; i < command.size(); ++i) {
            INFO("split at byte " << i << " of " << command.size());
            REQUIRE(c.send_raw(std::string_view{command}.substr(0, i)));
            std::this_thread::sleep_for(1ms);  // a chance for the first part to arrive alone
            REQUIRE(c.send_raw(std::string_view{command}.substr(i)));
            CHECK(c.next() == (command.starts_with('*') ? "hello\r\nworld" : "split here"));
        }
    }
    CHECK(c.call({"PING"}) == "+PONG");  // nothing left over from the splits
}

TEST_CASE("pubsub: pipelined commands in one write are answered in order", "[pubsub]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    pubsub_process server{kind, 2};
    resp_client c{server.port};
    std::string all = resp_command({"PING"}) + resp_command({"ECHO", "one"}) + resp_command({"CLIENT", "SETNAME", "piper"}) +
                      resp_command({"CLIENT", "GETNAME"}) + resp_command({"PUBLISH", "nobody", "x"}) + "PING inline\r\n" +
                      resp_command({"NOSUCH"}) + resp_command({"ECHO", "last"});
    REQUIRE(c.send_raw(all));
    for (const char* want : {"+PONG", "one", "+OK", "piper", ":0", "inline",
                             "-ERR unknown command 'NOSUCH', with args beginning with: ", "last"})
        CHECK(c.next() == want);
}

TEST_CASE("pubsub: inline commands as telnet sends them", "[pubsub]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    pubsub_process server{kind, 1};
    resp_client c{server.port};
    CHECK((c.send_raw("PING\r\n"), c.next()) == "+PONG");
    CHECK((c.send_raw("ping\n"), c.next()) == "+PONG");  // a bare LF ends a line too; any case
    CHECK((c.send_raw("\r\n"), c.send_raw("ECHO \"hello world\"\r\n"), c.next()) == "hello world");  // blank: skipped
    CHECK((c.send_raw("ECHO \"tab\\there\\x41\"\r\n"), c.next()) == "tab\thereA");
    CHECK((c.send_raw("ECHO 'it\\'s'\r\n"), c.next()) == "it's");
    REQUIRE(c.send_raw("SUBSCRIBE a b\n"));
    CHECK(c.next() == "[subscribe, a, :1]");
    CHECK(c.next() == "[subscribe, b, :2]");
}

TEST_CASE("pubsub: errors carry Redis's exact texts and the connection goes on", "[pubsub]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    pubsub_process server{kind, 1};
    resp_client c{server.port};
    CHECK(c.call({"FLUSHALL", "a", "b"}) == "-ERR unknown command 'FLUSHALL', with args beginning with: 'a' 'b' ");
    CHECK(c.call({"ECHO"}) == "-ERR wrong number of arguments for 'echo' command");
    CHECK(c.call({"Publish", "a"}) == "-ERR wrong number of arguments for 'publish' command");
    CHECK(c.call({"SUBSCRIBE"}) == "-ERR wrong number of arguments for 'subscribe' command");
    CHECK(c.call({"PING", "a", "b"}) == "-ERR wrong number of arguments for 'ping' command");
    CHECK(c.call({"SUBSCRIBE", "a"}) == "[subscribe, a, :1]");
    CHECK(c.call({"PUBLISH", "a", "x"}) ==
          "-ERR Can't execute 'publish': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context");
    CHECK(c.call({"ECHO", "x"}) ==
          "-ERR Can't execute 'echo': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context");
    CHECK(c.call({"PING"}) == "[pong, ]");
}

TEST_CASE("pubsub: a malformed frame gets an -ERR line, then the close; others are still served", "[pubsub]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    const auto [frame, error] = GENERATE(table<std::string, std::string>({
        {"*abc\r\n", "-ERR Protocol error: invalid multibulk length"},
        {"*1\r\n$-5\r\n", "-ERR Protocol error: invalid bulk length"},
        {"*2\r\n$4\r\nECHO\r\n$100000\r\n", "-ERR Protocol error: invalid bulk length"},  // over --max-message
        // Like redis-server, the parser judges a length line once its CR is in.
        {std::string{"*1\r\n\xfe\xff\x00\x01garbage\r\n", 17}, "-ERR Protocol error: expected '$', got '\xfe'"},
        {"ECHO \"unbalanced\r\n", "-ERR Protocol error: unbalanced quotes in request"},
    }));
    pubsub_process server{kind, 1, {"--max-message", "1024"}};
    resp_client other{server.port};
    CHECK(other.call({"SUBSCRIBE", "still"}) == "[subscribe, still, :1]");
    resp_client bad{server.port};
    REQUIRE(bad.send_raw(frame));
    CHECK(bad.next() == error);
    CHECK(bad.ends());

    resp_client publisher{server.port};
    CHECK(publisher.call({"PUBLISH", "still", "here"}) == ":1");
    CHECK(other.next() == "[message, still, here]");
    CHECK(other.call({"PING", "ok"}) == "[pong, ok]");
}

TEST_CASE("pubsub: PING, ECHO, QUIT and RESET", "[pubsub]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    pubsub_process server{kind, 2};
    resp_client c{server.port};
    CHECK(c.call({"PING"}) == "+PONG");
    CHECK(c.call({"PING", "hi"}) == "hi");
    CHECK(c.call({"ECHO", std::string{"bin\0ary", 7}}) == std::string{"bin\0ary", 7});
    CHECK(c.call({"SUBSCRIBE", "r1"}) == "[subscribe, r1, :1]");
    CHECK(c.call({"PSUBSCRIBE", "r*"}) == "[psubscribe, r*, :2]");
    CHECK(c.call({"PING"}) == "[pong, ]");  // a push in subscribed mode, told apart from messages
    CHECK(c.call({"PING", "hi"}) == "[pong, hi]");
    CHECK(c.call({"CLIENT", "SETNAME", "x"}).starts_with("-ERR Can't execute 'client'"));

    CHECK(c.call({"RESET"}) == "+RESET");
    resp_client publisher{server.port};
    CHECK(publisher.call({"PUBLISH", "r1", "lost"}) == ":0");  // no channel or pattern left
    CHECK(c.call({"PING"}) == "+PONG");  // out of subscribed mode, and no message came before it
    CHECK(c.call({"CLIENT", "GETNAME"}) == "(nil)");

    CHECK(c.call({"QUIT"}) == "+OK");
    CHECK(c.ends());
    CHECK(publisher.call({"PING"}) == "+PONG");
}

TEST_CASE("pubsub: HELLO, CLIENT SETNAME / GETNAME / ID", "[pubsub]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    pubsub_process server{kind, 1};
    resp_client c{server.port};
    for (const bool with_version : {false, true}) {
        const bool sent = with_version ? c.send({"HELLO", "2"}) : c.send({"HELLO"});
        REQUIRE(sent);
        const auto r = c.read();
        REQUIRE(r);
        REQUIRE(r->type == '*');
        REQUIRE(r->elements.size() == 14);
        CHECK(show(r->elements[0]) == "server");
        CHECK(show(r->elements[4]) == "proto");
        CHECK(show(r->elements[5]) == ":2");
        CHECK(show(r->elements[6]) == "id");
    }
    CHECK(c.call({"HELLO", "3"}) == "-NOPROTO sorry, this protocol version is not supported");
    CHECK(c.call({"HELLO", "two"}) == "-ERR Protocol version is not an integer or out of range");

    CHECK(c.call({"CLIENT", "GETNAME"}) == "(nil)");
    CHECK(c.call({"CLIENT", "SETNAME", "worker-1"}) == "+OK");
    CHECK(c.call({"CLIENT", "GETNAME"}) == "worker-1");
    CHECK(c.call({"CLIENT", "SETNAME", "has space"}) ==
          "-ERR Client names cannot contain spaces, newlines or special characters.");
    CHECK(c.call({"CLIENT", "GETNAME"}) == "worker-1");
    CHECK(c.call({"CLIENT", "NOSUCH"}) == "-ERR unknown subcommand or wrong number of arguments for 'NOSUCH'. Try CLIENT HELP.");
    const std::string first = c.call({"CLIENT", "ID"});
    resp_client d{server.port};
    const std::string second = d.call({"CLIENT", "ID"});
    CHECK(first.starts_with(":"));
    CHECK(second.starts_with(":"));
    CHECK(first != second);
    CHECK(c.call({"CLIENT", "ID"}) == first);
}

TEST_CASE("pubsub: UNSUBSCRIBE and PUNSUBSCRIBE with no names", "[pubsub]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    pubsub_process server{kind, 1};
    resp_client c{server.port};
    CHECK(c.call({"UNSUBSCRIBE"}) == "[unsubscribe, (nil), :0]");
    CHECK(c.call({"PUNSUBSCRIBE"}) == "[punsubscribe, (nil), :0]");
    REQUIRE(c.send({"SUBSCRIBE", "a", "b", "c"}));
    for (const char* want : {"[subscribe, a, :1]", "[subscribe, b, :2]", "[subscribe, c, :3]"}) CHECK(c.next() == want);
    CHECK(c.call({"PSUBSCRIBE", "p*"}) == "[psubscribe, p*, :4]");
    // One reply per channel, the count going down; the pattern stays.
    REQUIRE(c.send({"UNSUBSCRIBE"}));
    std::set<std::string> names;
    for (const std::int64_t left : {3, 2, 1}) {
        const auto r = c.read();
        REQUIRE(r);
        REQUIRE(r->elements.size() == 3);
        CHECK(show(r->elements[0]) == "unsubscribe");
        names.insert(show(r->elements[1]));
        CHECK(r->elements[2].integer == left);
    }
    CHECK(names == std::set<std::string>{"a", "b", "c"});
    CHECK(c.call({"UNSUBSCRIBE"}) == "[unsubscribe, (nil), :1]");
    CHECK(c.call({"UNSUBSCRIBE", "never"}) == "[unsubscribe, never, :1]");
    CHECK(c.call({"PUNSUBSCRIBE"}) == "[punsubscribe, p*, :0]");
    CHECK(c.call({"PING"}) == "+PONG");
}

TEST_CASE("pubsub: PUBSUB CHANNELS / NUMSUB / NUMPAT and INFO count both cores", "[pubsub]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    pubsub_process server{kind, 2};
    std::vector<resp_client> spare;
    resp_client on0 = server.client_on(0, spare);
    resp_client on1 = server.client_on(1, spare);
    REQUIRE(on0.send({"SUBSCRIBE", "news.a", "both"}));
    CHECK(on0.next() == "[subscribe, news.a, :1]");
    CHECK(on0.next() == "[subscribe, both, :2]");
    REQUIRE(on1.send({"SUBSCRIBE", "news.b", "both", "other"}));
    CHECK(on1.next() == "[subscribe, news.b, :1]");
    CHECK(on1.next() == "[subscribe, both, :2]");
    CHECK(on1.next() == "[subscribe, other, :3]");
    CHECK(on0.call({"PSUBSCRIBE", "news.*"}) == "[psubscribe, news.*, :3]");
    CHECK(on1.call({"PSUBSCRIBE", "news.*"}) == "[psubscribe, news.*, :4]");  // same pattern: counted once
    CHECK(on1.call({"PSUBSCRIBE", "x?"}) == "[psubscribe, x?, :5]");

    // Asked on either core, the answer is the same.
    resp_client ask0 = server.client_on(0, spare);
    resp_client ask1 = server.client_on(1, spare);
    for (resp_client* c : {&ask0, &ask1}) {
        REQUIRE(c->send({"PUBSUB", "CHANNELS"}));
        auto all = c->read();
        REQUIRE(all);
        std::set<std::string> names;
        for (const auto& e : all->elements) names.insert(show(e));
        CHECK(names == std::set<std::string>{"news.a", "news.b", "both", "other"});
        REQUIRE(c->send({"PUBSUB", "CHANNELS", "news.*"}));
        all = c->read();
        REQUIRE(all);
        names.clear();
        for (const auto& e : all->elements) names.insert(show(e));
        CHECK(names == std::set<std::string>{"news.a", "news.b"});
        CHECK(c->call({"PUBSUB", "NUMSUB", "both", "news.a", "none"}) == "[both, :2, news.a, :1, none, :0]");
        CHECK(c->call({"PUBSUB", "NUMSUB"}) == "[]");
        CHECK(c->call({"PUBSUB", "NUMPAT"}) == ":2");
        CHECK(c->call({"PUBSUB", "NOSUCH"}) == "-ERR unknown subcommand or wrong number of arguments for 'NOSUCH'. Try PUBSUB HELP.");
    }

    resp_client publisher{server.port};
    CHECK(publisher.call({"PUBLISH", "news.a", "1"}) == ":3");  // on0 by channel, on0 and on1 by pattern
    CHECK(publisher.call({"PUBLISH", "both", "2"}) == ":2");
    CHECK(on0.next() == "[message, news.a, 1]");
    CHECK(on0.next() == "[pmessage, news.*, news.a, 1]");
    CHECK(on0.next() == "[message, both, 2]");
    CHECK(on1.next() == "[pmessage, news.*, news.a, 1]");
    CHECK(on1.next() == "[message, both, 2]");

    auto fields = info_fields(publisher);
    CHECK(fields["cores"] == "2");
    CHECK(fields["pubsub_channels"] == "4");
    CHECK(fields["pubsub_patterns"] == "2");
    CHECK(fields["subscriptions"] == "8");
    CHECK(fields["published"] == "2");
    CHECK(fields["delivered"] == "5");
    CHECK(fields["slow_subscribers_cut"] == "0");
    CHECK(std::stoul(fields["connected_clients"]) == 5 + spare.size());  // on0, on1, ask0, ask1, publisher
    CHECK(std::stoul(fields["total_connections_received"]) == 5 + spare.size());
    for (const char* name : {"frames_serialized", "cross_core_batches", "gather_sends", "frames_dropped"})
        CHECK(fields.count(name) == 1);
}

TEST_CASE("pubsub: a SUBSCRIBE's reply comes before any message of its channel, while that channel floods", "[pubsub]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    pubsub_process server{kind, 2};
    std::vector<resp_client> spare;
    // The publisher and the subscribers share core 0: a first subscriber there waits for core 1
    // to learn of the channel, and the publisher's messages must not reach it meanwhile.
    resp_client publisher = server.client_on(0, spare);
    std::atomic<int> round{0};
    std::atomic<bool> stop{false};
    std::thread flood{[&] {  // no Catch here: it is not thread-safe
        char buf[4096];
        while (!stop) {
            std::string batch;
            const std::string channel = "c" + std::to_string(round.load());
            for (int k = 0; k < 8; ++k) batch += resp_command({"PUBLISH", channel, "x"});
            if (!publisher.send_raw(batch)) return;
            for (int lines = 0; lines < 8;) {  // eight ":N" replies
                const ssize_t n = ::recv(publisher.fd(), buf, sizeof buf, 0);
                if (n <= 0) return;
                lines += static_cast<int>(std::count(buf, buf + n, '\n'));
            }
        }
    }};
    int wrong = 0;
    for (int i = 0; i < 40; ++i) {
        round = i;
        std::this_thread::sleep_for(2ms);  // the flood is on channel c<i> now
        resp_client sub = server.client_on(0, spare);
        const std::string channel = "c" + std::to_string(i);
        REQUIRE(sub.send({"SUBSCRIBE", channel}));
        const std::string first = sub.next();
        if (first != "[subscribe, " + channel + ", :1]") {
            ++wrong;
            UNSCOPED_INFO("round " << i << ": the first reply was " << first);
        }
    }
    stop = true;
    flood.join();
    CHECK(wrong == 0);
}

TEST_CASE("pubsub: PUBLISH's reply counts channel and pattern subscribers on every core", "[pubsub]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    pubsub_process server{kind, 2};
    // Connect until each core has at least three subscribers (bounded: 64 connections).
    std::vector<resp_client> subscribers;
    std::size_t per_core[2] = {0, 0};
    while ((per_core[0] < 3 || per_core[1] < 3) && subscribers.size() < 64) {
        resp_client c{server.port};
        ++per_core[c.core_of()];
        subscribers.push_back(std::move(c));
    }
    REQUIRE(per_core[0] >= 3);
    REQUIRE(per_core[1] >= 3);
    // Every subscriber takes the channel; every third also a pattern matching it (counted again,
    // as Redis does), every fifth a pattern that does not match.
    std::size_t expected = 0;
    for (std::size_t i = 0; i < subscribers.size(); ++i) {
        auto& c = subscribers[i];
        CHECK(c.call({"SUBSCRIBE", "count.me"}) == "[subscribe, count.me, :1]");
        ++expected;
        if (i % 3 == 0) {
            CHECK(c.call({"PSUBSCRIBE", "count.*"}) == "[psubscribe, count.*, :2]");
            ++expected;
        } else if (i % 5 == 0) {
            CHECK(c.call({"PSUBSCRIBE", "other.*"}) == "[psubscribe, other.*, :2]");
        }
    }
    resp_client publisher{server.port};
    CHECK(publisher.call({"PUBLISH", "count.me", "hello"}) == ":" + std::to_string(expected));
    for (std::size_t i = 0; i < subscribers.size(); ++i) {
        INFO("subscriber " << i);
        CHECK(subscribers[i].next() == "[message, count.me, hello]");
        if (i % 3 == 0) CHECK(subscribers[i].next() == "[pmessage, count.*, count.me, hello]");
    }
    CHECK(publisher.call({"PUBLISH", "count.other", "x"}) == ":" + std::to_string((subscribers.size() + 2) / 3));
}

TEST_CASE("pubsub: --max-subscriptions bounds one connection's channels plus patterns; a refused name is not kept", "[pubsub]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    pubsub_process server{kind, 2, {"--max-subscriptions", "3"}};
    resp_client c{server.port}, other{server.port};
    REQUIRE(c.send_raw(resp_command({"SUBSCRIBE", "a", "b", "a"})));
    CHECK(c.next() == "[subscribe, a, :1]");
    CHECK(c.next() == "[subscribe, b, :2]");
    CHECK(c.next() == "[subscribe, a, :2]");  // already had it: takes no room
    REQUIRE(c.send_raw(resp_command({"PSUBSCRIBE", "p*", "q*"})));
    CHECK(c.next() == "[psubscribe, p*, :3]");
    CHECK(c.next() == "-ERR max subscriptions per connection reached (3)");
    CHECK(other.call({"PUBSUB", "NUMPAT"}) == ":1");  // q* was refused, not stored
    CHECK(c.call({"SUBSCRIBE", "a"}) == "[subscribe, a, :3]");  // a name it has is still fine at the limit
    CHECK(c.call({"UNSUBSCRIBE", "b"}) == "[unsubscribe, b, :2]");
    CHECK(c.call({"PSUBSCRIBE", "q*"}) == "[psubscribe, q*, :3]");  // room again
    CHECK(other.call({"PUBLISH", "qx", "hi"}) == ":1");
    CHECK(c.next() == "[pmessage, q*, qx, hi]");
    // Another connection has a limit of its own.
    CHECK(other.call({"SUBSCRIBE", "a"}) == "[subscribe, a, :1]");
}
