// ws::websocket over real loopback sockets, both backends: a server-role and a client-role
// websocket talking (echo, fragments, ping/pong, the close handshake both ways, and each way a
// peer breaks the protocol), and Python's websockets client against a server-role websocket.
#include "child_process.hpp"
#include "support.hpp"

#include <coring/reader.hpp>
#include <coring/ws/handshake.hpp>
#include <coring/ws/websocket.hpp>

#include <array>
#include <string>

using namespace coring;
using namespace coring::testing;
using namespace coring::ws;

namespace {

std::string_view header_of(std::string_view head, std::string_view name) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    for (auto line_end = head.find("\r\n"); line_end != std::string_view::npos; line_end = head.find("\r\n")) {
        const std::string_view line = head.substr(0, line_end);
        head.remove_prefix(line_end + 2);
        const auto colon = line.find(':');
        if (colon != name.size()) continue;
        bool same = true;
        for (std::size_t i = 0; i < colon; ++i) same = same && lower(line[i]) == lower(name[i]);
        if (!same) continue;
        std::string_view value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        return value;
    }
    return {};
}

// The server side of the opening handshake, by hand: the HTTP server does it for real.
task<result<void>> accept_upgrade(tcp_stream* stream, buffered_reader* reader) {
    auto head = co_await reader->read_until("\r\n\r\n", 8192);
    if (!head) co_return head.error();
    const std::string text{reinterpret_cast<const char*>(head->data()), head->size()};
    reader->consume(head->size());
    auto find = [&](std::string_view name) { return header_of(text, name); };
    const auto check = check_upgrade(upgrade_request_from(std::string_view{text}.substr(0, text.find(' ')), find));
    if (check != upgrade_error::none) {
        FAIL_CHECK(describe(check));
        co_return std::errc::protocol_error;
    }
    const std::string answer = accept_response(find("Sec-WebSocket-Key"));
    auto sent = co_await stream->write_all(as_bytes(answer));
    co_return sent;
}

struct server_outcome {
    std::error_code ended;      // what receive() said at the end
    std::size_t messages = 0;
};

// Echoes every message until receive() fails; "close 1001" makes it close from its side.
task<> serve_echo(tcp_stream* stream, options opts, server_outcome* out) {
    buffered_reader reader{*stream};
    auto up = co_await accept_upgrade(stream, &reader);
    REQUIRE(up);
    websocket ws{*stream, reader, role::server, opts};
    while (true) {
        auto m = co_await ws.receive();
        if (!m) {
            out->ended = m.error();
            break;
        }
        ++out->messages;
        if (m->text() == "close 1001") {
            auto closed = co_await ws.close(close_code::going_away, "asked to");
            CHECK(closed);
            out->ended = make_error_code(ws.code());
            break;
        }
        result<void> r;
        if (m->op == opcode::text) r = co_await ws.send_text(m->text());
        else r = co_await ws.send_binary(m->bytes());
        if (!r) {
            out->ended = r.error();
            break;
        }
    }
    CHECK_FALSE(ws.is_open());
}

std::span<const std::byte> text_bytes(std::string_view s) { return as_bytes(s); }

// A client and an echo server on one core; `body` drives the client side.
template <class Body>
task<server_outcome> with_echo_server(options server_opts, Body body) {
    auto [client_end, server_end] = co_await connected_pair();
    server_outcome outcome;
    task_group group;
    group.spawn(serve_echo(&server_end, server_opts, &outcome));
    {
        websocket client{client_end, role::client};
        auto up = co_await client.handshake("127.0.0.1", "/echo");
        INFO(client.handshake_failure());
        REQUIRE(up);
        co_await body(client, client_end);
    }
    co_await group.join();
    co_await client_end.close();
    co_await server_end.close();
    co_return outcome;
}

task<> echo_round_trips(websocket& client, tcp_stream&) {
    CO_REQUIRE(co_await client.send_text("h\xC3\xA9llo"));
    auto m = co_await client.receive();
    REQUIRE(m);
    CHECK(m->op == opcode::text);
    CHECK(m->text() == "h\xC3\xA9llo");

    const auto big = random_bytes(200'000, 3);  // 64-bit length, many receives
    CO_REQUIRE(co_await client.send_binary(big));
    m = co_await client.receive();
    REQUIRE(m);
    CHECK(m->op == opcode::binary);
    CHECK(std::vector<std::byte>(m->bytes().begin(), m->bytes().end()) == big);

    // A fragmented text message with a code point cut between fragments and a ping inside.
    CO_REQUIRE(co_await client.send_fragment(opcode::text, text_bytes("frag \xE2\x82"), false));
    CO_REQUIRE(co_await client.ping(text_bytes("are you there")));
    CO_REQUIRE(co_await client.send_fragment(opcode::continuation, text_bytes("\xAC mented"), true));
    m = co_await client.receive();
    REQUIRE(m);
    CHECK(m->text() == "frag \xE2\x82\xAC mented");
    CHECK(client.pongs() == 1);  // the pong came back before the echo

    CO_REQUIRE(co_await client.send_text(""));
    m = co_await client.receive();
    REQUIRE(m);
    CHECK(m->text().empty());

    CO_REQUIRE(co_await client.close(close_code::normal, "done"));
    CHECK_FALSE(client.is_open());
    CHECK(client.code() == close_code::normal);
    auto after = co_await client.receive();
    REQUIRE_FALSE(after);
    CHECK(after.error() == close_code::normal);
    auto late = co_await client.send_text("late");  // nothing goes out after the close
    CHECK(late.error() == close_code::normal);
}

}  // namespace

TEST_CASE("websocket: echo of text, binary and fragmented messages, ping/pong, client close", "[ws]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    const auto outcome = c.run_for(10s, with_echo_server({}, echo_round_trips));
    CHECK(outcome.messages == 4);
    CHECK(outcome.ended == close_code::normal);  // the server saw the client's close
}

TEST_CASE("websocket: the server closes, the client's receive reports the code", "[ws]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    auto body = [](websocket& client, tcp_stream&) -> task<> {
        CO_REQUIRE(co_await client.send_text("close 1001"));
        auto m = co_await client.receive();
        REQUIRE_FALSE(m);
        CHECK(m.error() == close_code::going_away);
        CHECK(client.close_reason() == "asked to");
        CHECK_FALSE(client.is_open());
    };
    const auto outcome = c.run_for(10s, with_echo_server({}, body));
    CHECK(outcome.ended == close_code::going_away);
}

TEST_CASE("websocket: a message over max_message closes with 1009, whole or in fragments", "[ws]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    const bool fragmented = GENERATE(false, true);
    INFO("backend: " << to_string(kind) << (fragmented ? ", fragmented" : ", one frame"));
    if (skip_without(kind)) return;
    test_core c{kind};
    auto body = [fragmented](websocket& client, tcp_stream&) -> task<> {
        const auto payload = random_bytes(1200, 5);
        if (fragmented) {
            CO_REQUIRE(co_await client.send_fragment(opcode::binary, std::span{payload}.first(600), false));
            CO_REQUIRE(co_await client.send_fragment(opcode::continuation, std::span{payload}.subspan(600), true));
        } else {
            CO_REQUIRE(co_await client.send_binary(payload));
        }
        auto m = co_await client.receive();
        REQUIRE_FALSE(m);
        CHECK(m.error() == close_code::message_too_big);
    };
    const auto outcome = c.run_for(10s, with_echo_server({.max_message = 1000}, body));
    CHECK(outcome.messages == 0);
    CHECK(outcome.ended == close_code::message_too_big);
}

TEST_CASE("websocket: a frame head that claims 48 MiB holds memory for the bytes that came, not for the claim", "[ws]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    auto body = [](websocket&, tcp_stream& raw) -> task<> {
        const std::int64_t before = anon_rss_bytes(::getpid());
        // Binary, 64-bit length 48 MiB, masked (key 0), then three payload bytes and silence.
        std::array<std::uint8_t, 17> head{0x82, 0xff, 0, 0, 0, 0, 0x03, 0, 0, 0, 0, 0, 0, 0, 'a', 'b', 'c'};
        CO_REQUIRE(co_await raw.write_all(std::as_bytes(std::span{head})));
        const auto slept = co_await sleep_for(100ms);  // the server reads the head and the three bytes
        REQUIRE(slept);
        const std::int64_t grown = anon_rss_bytes(::getpid()) - before;
        INFO("RssAnon grew by " << grown << " bytes");
        CHECK(grown < 8 * 1024 * 1024);
        (void)co_await raw.shutdown(SHUT_WR);  // the server's receive ends: abnormal closure
    };
    const auto outcome = c.run_for(10s, with_echo_server({.max_message = 64 << 20}, body));
    CHECK(outcome.messages == 0);
}

TEST_CASE("websocket: invalid UTF-8 in text closes with 1007", "[ws]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    auto body = [](websocket& client, tcp_stream&) -> task<> {
        // send_text refuses it; send_fragment sends it as is.
        auto refused = co_await client.send_text("\xED\xA0\x80");
        CHECK(refused.error() == close_code::invalid_payload);
        CO_REQUIRE(co_await client.send_fragment(opcode::text, text_bytes("ok \xED\xA0\x80"), true));
        auto m = co_await client.receive();
        REQUIRE_FALSE(m);
        CHECK(m.error() == close_code::invalid_payload);
    };
    const auto outcome = c.run_for(10s, with_echo_server({}, body));
    CHECK(outcome.ended == close_code::invalid_payload);
}

TEST_CASE("websocket: an unmasked client frame, or a reserved opcode, closes with 1002", "[ws]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    const bool unmasked = GENERATE(true, false);
    INFO("backend: " << to_string(kind) << (unmasked ? ", unmasked frame" : ", opcode 3"));
    if (skip_without(kind)) return;
    test_core c{kind};
    auto body = [unmasked](websocket& client, tcp_stream& raw) -> task<> {
        // Written on the stream itself, past the websocket's own rules.
        const std::array<std::byte, 4> bare{std::byte{0x81}, std::byte{0x02}, std::byte{'h'}, std::byte{'i'}};
        const std::array<std::byte, 6> reserved{std::byte{0x83}, std::byte{0x80}, std::byte{0}, std::byte{0}, std::byte{0}, std::byte{0}};
        CO_REQUIRE(co_await raw.write_all(unmasked ? std::span<const std::byte>{bare} : std::span<const std::byte>{reserved}));
        auto m = co_await client.receive();
        REQUIRE_FALSE(m);
        CHECK(m.error() == close_code::protocol_error);
    };
    const auto outcome = c.run_for(10s, with_echo_server({}, body));
    CHECK(outcome.ended == close_code::protocol_error);
}

namespace {

// One connection from Python's websockets client, served by a server-role websocket.
task<server_outcome> serve_one(tcp_listener* listener) {
    server_outcome outcome;
    auto conn = co_await with_timeout(10s, listener->accept());
    REQUIRE(conn);
    co_await serve_echo(&*conn, {}, &outcome);
    co_await conn->close();
    co_return outcome;
}

constexpr const char* python_client = R"(
import asyncio, sys, websockets
async def main(port):
    async with websockets.connect(f"ws://127.0.0.1:{port}/echo") as ws:
        await ws.send("h\u00e9llo \U0001F600")
        assert await ws.recv() == "h\u00e9llo \U0001F600"
        blob = bytes(range(256)) * 300
        await ws.send(blob)
        assert await ws.recv() == blob
        await ws.send(["frag", "mented"])
        assert await ws.recv() == "fragmented"
        pong = await ws.ping(b"p")
        await asyncio.wait_for(pong, 5)
        await ws.close(1000, "bye")
    print("ok", ws.close_code)
asyncio.run(asyncio.wait_for(main(int(sys.argv[1])), 10))
)";

}  // namespace

TEST_CASE("websocket: Python's websockets client talks to a server-role websocket", "[ws]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    if (skip_without_python_websockets()) return;
    test_core c{kind};
    auto listener = tcp_listener::bind("127.0.0.1:0");
    REQUIRE(listener);
    const auto where = listener->local_address();
    REQUIRE(where);
    child_process python{"/usr/bin/python3", {"-c", python_client, std::to_string(where->port())}};
    const auto outcome = c.run_for(20s, serve_one(&*listener));
    const auto status = python.wait_exit_or_kill(10s);
    INFO("python stdout: " << python.out() << "\npython stderr: " << python.err());
    REQUIRE(status);
    CHECK(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
    CHECK(python.out() == "ok 1000\n");
    CHECK(outcome.messages == 3);
    CHECK(outcome.ended == close_code::normal);
}

namespace {

// Does the handshake, then only reads (answering nothing) until the client's side ends.
task<> silent_server(tcp_stream* stream, std::vector<std::byte>* received) {
    buffered_reader reader{*stream};
    CO_REQUIRE(co_await accept_upgrade(stream, &reader));
    for (int reads = 0; reads < 100; ++reads) {  // a close frame and the end: a few reads
        auto n = co_await reader.fill();
        REQUIRE(n);
        if (*n == 0) break;
    }
    const auto bytes = reader.peek();
    received->assign(bytes.begin(), bytes.end());
}

task<> close_unanswered() {
    auto [client_end, server_end] = co_await connected_pair();
    std::vector<std::byte> received;
    task_group group;
    group.spawn(silent_server(&server_end, &received));
    {
        websocket client{client_end, role::client, {.close_timeout = std::chrono::milliseconds{200}}};
        CO_REQUIRE(co_await client.handshake("127.0.0.1", "/silent"));
        auto closed = co_await client.close(close_code::normal, "bye");
        CHECK(closed);  // the close frame went out; the peer's answer never came
        CHECK_FALSE(client.is_open());
        CHECK(client.code() == close_code::normal);
    }
    co_await group.join();
    // One masked close frame of 5 bytes (code 1000, "bye"), then the end of the stream.
    REQUIRE(received.size() == 2 + 4 + 5);
    CHECK(received[0] == std::byte{0x88});
    CHECK(received[1] == std::byte{0x85});
    co_await client_end.close();
    co_await server_end.close();
}

}  // namespace

TEST_CASE("websocket: close() gives up waiting for a peer that never answers, and closes the stream", "[ws]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    c.run_for(10s, close_unanswered());
}
