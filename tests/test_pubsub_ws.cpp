// coring-pubsub's WebSocket side: the JSON command parser (table-driven), then the binary as
// users run it, both backends: coring's own websocket client and Python's websockets client
// against /ws, with RESP publishers and subscribers on the other port; and a WebSocket
// subscriber that never reads, cut by --max-output while the others go on.
#include "pubsub_ws_support.hpp"
#include "ws_command.hpp"

#include <coring/ws/websocket.hpp>

#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

using namespace coring;
using namespace coring::testing;
using apps::parse_ws_command;
using apps::ws_command;
using namespace std::string_view_literals;  // "a\0b"sv: a NUL inside

namespace {

struct parse_case {
    std::string_view json;
    ws_command::kind_t kind;
    std::string_view topic;
    std::string_view data;
};

struct error_case {
    std::string_view json;
    std::string error;
};

}  // namespace

TEST_CASE("parse_ws_command: every verb, any key order and spacing, JSON escapes to UTF-8", "[pubsub]") {
    const parse_case cases[] = {
        {R"({"sub":"news"})", ws_command::subscribe, "news", ""},
        {" {\n\"unsub\" :\t\"news\" }\r\n", ws_command::unsubscribe, "news", ""},
        {R"({"psub":"news.*"})", ws_command::psubscribe, "news.*", ""},
        {R"({"punsub":"h?llo[ab]\\*"})", ws_command::punsubscribe, "h?llo[ab]\\*", ""},
        {R"({"pub":"news","data":"hello"})", ws_command::publish, "news", "hello"},
        {R"({"data":"first","pub":"news"})", ws_command::publish, "news", "first"},
        {R"({"sub":""})", ws_command::subscribe, "", ""},
        {R"({"pub":"c","data":""})", ws_command::publish, "c", ""},
        {R"({"pub":"c","data":"q\"b\\s\/\b\f\n\r\t"})", ws_command::publish, "c", "q\"b\\s/\b\f\n\r\t"},
        {R"({"sub":"\u0041\u00e9\u07FF\u20AC\uFFFF"})", ws_command::subscribe, "A\xC3\xA9\xDF\xBF\xE2\x82\xAC\xEF\xBF\xBF", ""},
        {R"({"sub":"\ud83d\ude00 \uDBFF\uDFFF"})", ws_command::subscribe, "\xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF", ""},
        {R"({"pub":"nul","data":"a\u0000b"})", ws_command::publish, "nul", "a\0b"sv},
        {"{\"sub\":\"h\xC3\xA9llo\"}", ws_command::subscribe, "h\xC3\xA9llo", ""},  // raw UTF-8 passes as it is
    };
    for (const parse_case& c : cases) {
        INFO("input: " << c.json);
        ws_command cmd;
        CHECK(parse_ws_command(c.json, cmd).empty());
        CHECK(cmd.kind == c.kind);
        CHECK(cmd.topic == c.topic);
        CHECK(cmd.data == c.data);
    }
}

TEST_CASE("parse_ws_command: each malformation gets its own reason", "[pubsub]") {
    const std::string long_key(40, 'k');
    const std::string long_key_json = "{\"" + long_key + "\":\"v\"}";
    const error_case cases[] = {
        {"", "expected a JSON object"},
        {R"(["sub","news"])", "expected a JSON object"},
        {R"("sub")", "expected a JSON object"},
        {R"({sub:"news"})", "expected a string key"},
        {R"({"sub":"news",})", "expected a string key"},
        {R"({"su)", "expected a string key"},
        {R"({"sub" "news"})", "expected ':'"},
        {R"({"sub":1})", R"(expected a string value for "sub")"},
        {R"({"sub":"news)", R"(expected a string value for "sub")"},
        {R"({"sub":"\q"})", R"(expected a string value for "sub")"},
        {R"({"sub":"\u12"})", R"(expected a string value for "sub")"},
        {R"({"sub":"\uZZZZ"})", R"(expected a string value for "sub")"},
        {R"({"sub":"\ud83d"})", R"(expected a string value for "sub")"},          // a high surrogate alone
        {R"({"sub":"\ud83d\u0041"})", R"(expected a string value for "sub")"},    // ... followed by no low one
        {R"({"sub":"\ude00"})", R"(expected a string value for "sub")"},          // a low surrogate first
        {"{\"sub\":\"a\x01\"}", R"(expected a string value for "sub")"},           // a raw control character
        {"{\"sub\":\"a\\", R"(expected a string value for "sub")"},                // ends inside an escape
        {R"({"data":"x","data":"y","pub":"c"})", R"("data" twice)"},
        {R"({"subscribe":"news"})", R"(unknown key "subscribe")"},
        {long_key_json, "unknown key \"" + std::string(32, 'k') + "\""},          // cut to 32 bytes
        {R"({"sub":"a","unsub":"b"})", "one of sub, unsub, psub, punsub, pub per message"},
        {R"({"sub":"a" "b"})", "expected ',' or '}'"},
        {R"({"sub":"a"})", ""},  // (the control row: the same object, whole, is fine)
        {R"({"sub":"a"} {"sub":"b"})", "text after the object"},
        {"{}", "expected one of sub, unsub, psub, punsub, pub"},
        {R"({"data":"x"})", "expected one of sub, unsub, psub, punsub, pub"},
        {R"({"pub":"c"})", R"("data" goes with "pub", and only with it)"},
        {R"({"sub":"c","data":"x"})", R"("data" goes with "pub", and only with it)"},
    };
    for (const error_case& c : cases) {
        INFO("input: " << c.json);
        ws_command cmd;
        CHECK(parse_ws_command(c.json, cmd) == c.error);
    }
}

namespace {

// One connection to the server's /ws through coring's client-side websocket. Heap-held: the
// websocket keeps a reference to the stream.
struct ws_client {
    explicit ws_client(tcp_stream s) : stream{std::move(s)}, socket{stream, ws::role::client} {}
    tcp_stream stream;
    ws::websocket socket;
};

task<std::unique_ptr<ws_client>> ws_connect(std::uint16_t port) {
    auto stream = co_await tcp_stream::connect(address::ipv4_loopback(port), 5s);
    REQUIRE(stream);
    auto client = std::make_unique<ws_client>(std::move(*stream));
    auto up = co_await client->socket.handshake("127.0.0.1", "/ws");
    INFO(client->socket.handshake_failure());
    REQUIRE(up);
    co_return client;
}

// The next message's text, or what ended the connection.
task<std::string> ws_next(ws_client* c) {
    auto m = co_await c->socket.receive();
    if (!m) co_return "<ended: " + m.error().message() + ">";
    co_return std::move(m->payload);
}

// Sends one text message and returns the next message that arrives.
task<std::string> ws_ask(ws_client* c, std::string_view json) {
    auto sent = co_await c->socket.send_text(json);
    if (!sent) co_return "<send failed: " + sent.error().message() + ">";
    co_return co_await ws_next(c);
}

std::string message_json(std::string_view channel_json, std::string_view data_json, std::string_view pattern_json = {}) {
    std::string out = R"({"channel":")" + std::string{channel_json};
    if (!pattern_json.empty()) out += R"(","pattern":")" + std::string{pattern_json};
    return out + R"(","data":")" + std::string{data_json} + "\"}";
}

task<> subscribe_publish_round_trips(pubsub_ports ports) {
    auto sub = co_await ws_connect(ports.http);
    fd_guard pub{connect_blocking(ports.resp)};
    REQUIRE(pub.fd >= 0);
    auto got = co_await ws_ask(sub.get(), R"({"sub":"news"})");
    CHECK(got == R"({"subscribed":"news","count":1})");

    // What a RESP publisher sends arrives as the JSON string of it. A payload that is not UTF-8
    // (a text frame must be) has every byte from 0x80 up as \u00XX.
    struct delivery {
        std::string_view payload, data_json;
    };
    const delivery deliveries[] = {
        {"plain", "plain"},
        {R"(q"uote \ back)", R"(q\"uote \\ back)"},
        {"ctl\x01\n\t\x1f", R"(ctl\u0001\u000a\u0009\u001f)"},
        {"h\xC3\xA9llo \xF0\x9F\x98\x80", "h\xC3\xA9llo \xF0\x9F\x98\x80"},
        {"bin\xFF\xFE\xC3\xA9", R"(bin\u00ff\u00fe\u00c3\u00a9)"},
        {"", ""},
    };
    for (const delivery& d : deliveries) {
        INFO("payload: " << d.payload);
        CHECK(resp_publish(pub.fd, "news", d.payload) == 1);
        got = co_await ws_next(sub.get());
        CHECK(got == message_json("news", d.data_json));
    }

    // A channel name that needs escaping, both ways.
    got = co_await ws_ask(sub.get(), R"({"sub":"q\"ch"})");
    CHECK(got == R"({"subscribed":"q\"ch","count":2})");
    CHECK(resp_publish(pub.fd, "q\"ch", "x") == 1);
    got = co_await ws_next(sub.get());
    CHECK(got == message_json(R"(q\"ch)", "x"));

    got = co_await ws_ask(sub.get(), R"({"psub":"news.*"})");
    CHECK(got == R"({"psubscribed":"news.*","count":3})");
    CHECK(resp_publish(pub.fd, "news.eu", "by pattern") == 1);
    got = co_await ws_next(sub.get());
    CHECK(got == message_json("news.eu", "by pattern", "news.*"));

    got = co_await ws_ask(sub.get(), R"({"unsub":"news"})");
    CHECK(got == R"({"unsubscribed":"news","count":2})");
    CHECK(resp_publish(pub.fd, "news", "gone") == 0);
    got = co_await ws_ask(sub.get(), R"({"punsub":"news.*"})");
    CHECK(got == R"({"punsubscribed":"news.*","count":1})");
    CHECK(resp_publish(pub.fd, "news.eu", "gone") == 0);
    got = co_await ws_ask(sub.get(), R"({"unsub":"never"})");
    CHECK(got == R"({"unsubscribed":"never","count":1})");  // unchanged

    // Bad input gets an error, and the connection goes on.
    got = co_await ws_ask(sub.get(), "{nope");
    CHECK(got == R"({"error":"expected a string key"})");
    got = co_await ws_ask(sub.get(), R"({"sub":1})");
    CHECK(got == R"({"error":"expected a string value for \"sub\""})");
    CO_REQUIRE(co_await sub->socket.send_binary(as_bytes(R"({"sub":"bin"})")));
    got = co_await ws_next(sub.get());
    CHECK(got == R"({"error":"send JSON in text messages"})");
    // The next message is the last one published, so nothing of "gone" came in between.
    CHECK(resp_publish(pub.fd, "q\"ch", "still here") == 1);
    got = co_await ws_next(sub.get());
    CHECK(got == message_json(R"(q\"ch)", "still here"));

    auto closed = co_await sub->socket.close();
    CHECK(closed);
}

// {"pub":...} from one WebSocket client reaches a RESP subscriber and a WebSocket subscriber.
task<> publish_from_websocket(pubsub_ports ports) {
    fd_guard resp_sub{connect_blocking(ports.resp)};
    REQUIRE(resp_sub.fd >= 0);
    REQUIRE(send_all(resp_sub.fd, "SUBSCRIBE chat\r\n"));
    const std::string subscribed = "*3\r\n" + resp_bulk("subscribe") + resp_bulk("chat") + ":1\r\n";
    CHECK(read_n(resp_sub.fd, subscribed.size()) == subscribed);

    auto ws_sub = co_await ws_connect(ports.http);
    auto got = co_await ws_ask(ws_sub.get(), R"({"sub":"chat"})");
    CHECK(got == R"({"subscribed":"chat","count":1})");
    auto ws_pub = co_await ws_connect(ports.http);
    const std::string_view text = "hi \"there\" \xE2\x82\xAC";
    CO_REQUIRE(co_await ws_pub->socket.send_text(R"({"pub":"chat","data":"hi \"there\" \u20ac"})"));

    got = co_await ws_next(ws_sub.get());
    CHECK(got == message_json("chat", R"(hi \"there\" )" "\xE2\x82\xAC"));
    const std::string message = "*3\r\n" + resp_bulk("message") + resp_bulk("chat") + resp_bulk(text);
    CHECK(read_n(resp_sub.fd, message.size()) == message);

    // A publish gets no reply: the publisher's next answer is to its next command.
    got = co_await ws_ask(ws_pub.get(), R"({"sub":"own"})");
    CHECK(got == R"({"subscribed":"own","count":1})");
    auto closed = co_await ws_pub->socket.close();
    CHECK(closed);
    closed = co_await ws_sub->socket.close();
    CHECK(closed);
}

}  // namespace

TEST_CASE("coring-pubsub /ws: subscribe, psubscribe, unsubscribe, RESP publishes as JSON, errors keep the connection",
          "[pubsub]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    pubsub_server_process server{kind};
    test_core c{kind};
    c.run_for(20s, subscribe_publish_round_trips(server.ports()));
    const auto status = server.stop();
    INFO("coring-pubsub stderr:\n" << server.process().err());
    REQUIRE(status);
    CHECK(WIFEXITED(*status));
}

TEST_CASE("coring-pubsub /ws: a WebSocket publish reaches a RESP subscriber and a WebSocket subscriber", "[pubsub]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    pubsub_server_process server{kind};
    test_core c{kind};
    c.run_for(20s, publish_from_websocket(server.ports()));
    const auto status = server.stop();
    REQUIRE(status);
    CHECK(WIFEXITED(*status));
}

namespace {

// Its own round trip (JSON escapes of a surrogate pair on the way in), then one message from
// a RESP publisher once it has said "ready".
constexpr const char* python_client = R"(
import asyncio, json, sys, websockets
async def main(port):
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
        await ws.send(json.dumps({"sub": "py"}))
        assert json.loads(await ws.recv()) == {"subscribed": "py", "count": 1}
        text = "h\u00e9llo \U0001F600 \"q\" \\ \n"
        await ws.send(json.dumps({"pub": "py", "data": text}))
        assert json.loads(await ws.recv()) == {"channel": "py", "data": text}
        await ws.send("{not json")
        assert "error" in json.loads(await ws.recv())
        print("ready", flush=True)
        m = json.loads(await ws.recv())
        assert m == {"channel": "py", "data": "from resp"}, m
        await ws.close()
    print("ok")
asyncio.run(asyncio.wait_for(main(int(sys.argv[1])), 10))
)";

}  // namespace

TEST_CASE("coring-pubsub /ws: Python's websockets client subscribes, publishes and receives", "[pubsub]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    if (skip_without_python_websockets()) return;
    pubsub_server_process server{kind};
    child_process python{"/usr/bin/python3", {"-c", python_client, std::to_string(server.ports().http)}};
    const bool ready = python.read_until(std::chrono::steady_clock::now() + 10s,
                                         [](const child_process& p) { return p.out().find("ready\n") != std::string::npos; });
    INFO("python stdout: " << python.out() << "\npython stderr: " << python.err());
    REQUIRE(ready);
    fd_guard pub{connect_blocking(server.ports().resp)};
    REQUIRE(pub.fd >= 0);
    CHECK(resp_publish(pub.fd, "py", "from resp") == 1);
    const auto status = python.wait_exit_or_kill(10s);
    INFO("python at its end: stdout: " << python.out() << "\nstderr: " << python.err());
    REQUIRE(status);
    CHECK(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
    CHECK(python.out() == "ready\nok\n");
}

namespace {

// A WebSocket subscriber by hand on a blocking socket with a small receive buffer: the upgrade,
// one masked {"sub":...} (key 0: the payload goes as it is), its acknowledgement; after that the
// test never reads it. Returns the socket, or fails the test.
fd_guard stalled_subscriber(std::uint16_t port, std::string_view channel) {
    fd_guard c{connect_blocking(port, /*rcvbuf=*/4096)};
    REQUIRE(c.fd >= 0);
    const std::string json = R"({"sub":")" + std::string{channel} + "\"}";
    REQUIRE(json.size() < 126);
    std::string request =
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    request += {'\x81', static_cast<char>(0x80 | json.size()), '\0', '\0', '\0', '\0'};
    request += json;
    REQUIRE(send_all(c.fd, request));
    const std::string ack = R"("count":1})";
    std::string got;
    for (int reads = 0; reads < 1000 && got.find(ack) == std::string::npos; ++reads) {  // a byte a time
        const std::string more = read_n(c.fd, 1);
        if (more.empty()) break;
        got += more;
    }
    INFO("the server answered: " << got);
    REQUIRE(got.starts_with("HTTP/1.1 101"));
    REQUIRE(got.ends_with(ack));
    return c;
}

// Publishes 16 KiB messages until the stalled subscriber is cut (the receiver count drops to
// 1); the healthy one reads each, in order, before the next goes out, then three more after.
task<> flood_until_cut(pubsub_ports ports, int* published_before_cut) {
    auto healthy = co_await ws_connect(ports.http);
    auto got = co_await ws_ask(healthy.get(), R"({"sub":"flood"})");
    CHECK(got == R"({"subscribed":"flood","count":1})");
    fd_guard stalled = stalled_subscriber(ports.http, "flood");
    fd_guard pub{connect_blocking(ports.resp)};
    REQUIRE(pub.fd >= 0);

    const std::string pad(16 << 10, 'p');
    long receivers = 2;
    int n = 0;
    // 400 x 16 KiB is far beyond --max-output plus what the kernel's socket buffers take.
    for (; n < 400 && receivers == 2; ++n) {
        const std::string payload = std::to_string(n) + ":" + pad;
        receivers = resp_publish(pub.fd, "flood", payload);
        REQUIRE(receivers >= 1);
        got = co_await ws_next(healthy.get());
        REQUIRE(got == message_json("flood", payload));
    }
    *published_before_cut = n;
    CHECK(receivers == 1);
    for (int k = 0; k < 3; ++k) {
        const std::string payload = "after " + std::to_string(k);
        CHECK(resp_publish(pub.fd, "flood", payload) == 1);
        got = co_await ws_next(healthy.get());
        CHECK(got == message_json("flood", payload));
    }
    // The stalled one is closed: what its socket holds, then the end.
    bool ended = false;
    for (int reads = 0; reads < 10'000 && !ended; ++reads) {
        char buf[4096];
        const ssize_t r = ::recv(stalled.fd, buf, sizeof buf, 0);
        ended = r == 0 || (r < 0 && errno == ECONNRESET);
        if (r < 0 && errno != EINTR && !ended) break;  // 5 s without a byte: still open
    }
    CHECK(ended);
    auto closed = co_await healthy->socket.close();
    CHECK(closed);
}

}  // namespace

TEST_CASE("coring-pubsub /ws: a subscriber that never reads is cut at --max-output, the others go on", "[pubsub]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    pubsub_server_process server{kind, {"--max-output", "65536"}};
    test_core c{kind};
    int published = 0;
    c.run_for(60s, flood_until_cut(server.ports(), &published));
    INFO("published before the cut: " << published);
    CHECK(server.logged("cut slow subscriber 127.0.0.1:"));
    const auto status = server.stop();
    INFO("coring-pubsub stderr:\n" << server.process().err());
    REQUIRE(status);
    CHECK(WIFEXITED(*status));
}

TEST_CASE("coring-pubsub /ws: a pong asked for while a big message is half sent goes between whole frames", "[pubsub]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    pubsub_server_process server{kind, {}};
    fd_guard sub = stalled_subscriber(server.ports().http, "big");
    fd_guard pub{connect_blocking(server.ports().resp)};
    REQUIRE(pub.fd >= 0);
    // A 6 MiB message for a subscriber that reads nothing yet: more than the kernel's socket
    // buffers take (tcp_wmem's 4 MiB at most), so the server's send of it stops inside it, and
    // each step a reader's progress allows ends inside it too. Then two small ones.
    std::vector<std::string> payloads{"0:" + std::string(6 << 20, 'a'), "1:b", "2:c"};
    std::string publishes;
    for (const std::string& p : payloads) publishes += resp_command({"PUBLISH", "big", p});
    REQUIRE(send_all(pub.fd, publishes));
    for (int i = 0; i < 3; ++i) REQUIRE(read_line(pub.fd) == ":1\r\n");
    std::this_thread::sleep_for(100ms);
    REQUIRE(send_all(sub.fd, std::string{'\x89', '\x81', '\0', '\0', '\0', '\0', 'p'}));  // a ping, mask key 0
    std::this_thread::sleep_for(100ms);  // its pong now waits for the stream
    // Read it all: every frame whole, the messages in order, the pong between two of them.
    std::size_t messages = 0;
    bool pong = false;
    while (messages < payloads.size() || !pong) {
        const std::string head = read_n(sub.fd, 2);
        REQUIRE(head.size() == 2);
        const auto op = static_cast<unsigned char>(head[0]);
        std::uint64_t length = static_cast<unsigned char>(head[1]) & 0x7f;
        if (length >= 126) {
            const std::string more = read_n(sub.fd, length == 126 ? 2 : 8);
            REQUIRE(more.size() == (length == 126 ? 2u : 8u));
            length = 0;
            for (const char b : more) length = length << 8 | static_cast<unsigned char>(b);
        }
        INFO("frame " << messages << ": opcode byte " << int{op} << ", length " << length);
        REQUIRE(length < (16u << 20));
        const std::string payload = read_n(sub.fd, static_cast<std::size_t>(length));
        REQUIRE(payload.size() == length);
        if (op == 0x8a) {
            CHECK(payload == "p");
            pong = true;
            continue;
        }
        REQUIRE(op == 0x81);
        REQUIRE(messages < payloads.size());
        const bool whole = payload == message_json("big", payloads[messages]);  // not printed: 6 MiB
        CHECK(whole);
        ++messages;
    }
    const auto status = server.stop();
    INFO("coring-pubsub stderr:\n" << server.process().err());
    REQUIRE(status);
    CHECK(WIFEXITED(*status));
}

namespace {

task<> subscribe_past_limit(pubsub_ports ports) {
    auto c = co_await ws_connect(ports.http);
    auto got = co_await ws_ask(c.get(), R"({"sub":"a"})");
    CHECK(got == R"({"subscribed":"a","count":1})");
    got = co_await ws_ask(c.get(), R"({"psub":"b*"})");
    CHECK(got == R"j({"error":"max subscriptions per connection reached (1)"})j");
    got = co_await ws_ask(c.get(), R"({"sub":"a"})");  // one it has: fine at the limit
    CHECK(got == R"({"subscribed":"a","count":1})");
    auto closed = co_await c->socket.close();
    CHECK(closed);
}

}  // namespace

TEST_CASE("coring-pubsub /ws: past --max-subscriptions a subscribe gets an error and the connection goes on", "[pubsub]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    pubsub_server_process server{kind, {"--max-subscriptions", "1"}};
    test_core c{kind};
    c.run_for(20s, subscribe_past_limit(server.ports()));
    const auto status = server.stop();
    REQUIRE(status);
    CHECK(WIFEXITED(*status));
}

TEST_CASE("coring-pubsub with RESP on a unix socket and 2 cores answers every HTTP connection", "[pubsub]") {
    // Core 0 alone listens on a unix socket; every core listens on the HTTP port (SO_REUSEPORT).
    // A core without the RESP listener must still serve the HTTP one, or the kernel's share of
    // connections it hands that core would hang.
    const auto kind = GENERATE(backend_kind::uring, backend_kind::epoll);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    const std::string path = "/tmp/coring-pubsub-test-" + std::to_string(::getpid()) + ".sock";
    ::unlink(path.c_str());
    pubsub_server_process server{kind, {"--listen", "unix:" + path, "--cores", "2"}};
    for (int i = 0; i < 32; ++i) {
        const int fd = connect_blocking(server.ports().http);  // 5 s receive timeout: a hang fails
        REQUIRE(fd >= 0);
        const std::string request = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        REQUIRE(::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size()));
        const std::string head = read_n(fd, 12);
        ::close(fd);
        INFO("connection " << i);
        CHECK(head == "HTTP/1.1 200");
    }
    // And RESP on the unix socket.
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
    const timeval limit{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    REQUIRE(::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0);
    CHECK(blocking_round_trip(fd, "PING\r\n") == "+PONG\r");  // as many bytes back as went out
    ::close(fd);
    const auto status = server.stop();
    REQUIRE(status);
    CHECK(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
    CHECK(::access(path.c_str(), F_OK) != 0);  // the server removed its socket file
}
