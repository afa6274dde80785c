// The WebSocket codec and handshake as pure functions: frame heads split at every byte, masking,
// UTF-8 vectors (whole and split), close payloads, the accept key and the upgrade checks.
#include <catch2/catch.hpp>
#include <coring/ws/frame.hpp>
#include <coring/ws/handshake.hpp>

#include <string>
#include <vector>

using namespace coring::ws;

namespace {

std::vector<std::byte> bytes(std::initializer_list<int> v) {
    std::vector<std::byte> out;
    for (int b : v) out.push_back(std::byte(b));
    return out;
}

std::vector<std::byte> bytes_of(std::string_view s) {
    const auto b = std::as_bytes(std::span{s.data(), s.size()});
    return {b.begin(), b.end()};
}

}  // namespace

TEST_CASE("frame heads parse whole and split at every byte", "[ws]") {
    struct row {
        const char* name;
        std::vector<std::byte> wire;
        role receiver;
        bool fin;
        opcode op;
        std::uint64_t size;
        std::size_t head_size;
    };
    const std::vector<row> rows{
        {"server, masked text of 5", bytes({0x81, 0x85, 1, 2, 3, 4}), role::server, true, opcode::text, 5, 6},
        {"client, unmasked binary of 0", bytes({0x82, 0x00}), role::client, true, opcode::binary, 0, 2},
        {"first fragment", bytes({0x01, 0x03}), role::client, false, opcode::text, 3, 2},
        {"continuation", bytes({0x80, 0x83, 9, 9, 9, 9}), role::server, true, opcode::continuation, 3, 6},
        {"ping of 125", bytes({0x89, 0xFD, 0, 0, 0, 0}), role::server, true, opcode::ping, 125, 6},
        {"16-bit length 126", bytes({0x82, 0x7E, 0x00, 0x7E}), role::client, true, opcode::binary, 126, 4},
        {"16-bit length 65535, masked", bytes({0x82, 0xFE, 0xFF, 0xFF, 1, 2, 3, 4}), role::server, true, opcode::binary, 65535, 8},
        {"64-bit length 65536", bytes({0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0}), role::client, true, opcode::binary, 65536, 10},
        {"64-bit length 2^62, masked", bytes({0x82, 0xFF, 0x40, 0, 0, 0, 0, 0, 0, 0, 5, 6, 7, 8}), role::server, true,
         opcode::binary, std::uint64_t{1} << 62, 14},
    };
    for (const auto& r : rows) {
        INFO(r.name);
        for (std::size_t cut = 0; cut < r.wire.size(); ++cut) {
            INFO("cut at " << cut);
            const auto p = parse_head(std::span{r.wire}.first(cut), r.receiver);
            REQUIRE(p.status == parse_status::need_more);
            REQUIRE(p.missing >= 1);
            REQUIRE(cut + p.missing <= r.wire.size());
            if (cut >= 2) CHECK(cut + p.missing == r.wire.size());  // exact once the length form is known
        }
        const auto p = parse_head(r.wire, r.receiver);
        REQUIRE(p.status == parse_status::complete);
        CHECK(p.head.fin == r.fin);
        CHECK(p.head.op == r.op);
        CHECK(p.head.payload_size == r.size);
        CHECK(p.head.head_size == r.head_size);
        // The writer makes the same head back.
        std::array<std::byte, max_head_size> out;
        const mask_key* key = p.head.masked ? &p.head.key : nullptr;
        const std::size_t n = write_head(out, r.fin, r.op, r.size, key);
        CHECK(std::vector<std::byte>(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n)) == r.wire);
    }
}

TEST_CASE("bad frame heads fail with 1002 as soon as the offending byte is in", "[ws]") {
    struct row {
        const char* name;
        std::vector<std::byte> wire;
        role receiver;
    };
    const std::vector<row> rows{
        {"RSV1", bytes({0xC1, 0x80, 0, 0, 0, 0}), role::server},
        {"RSV3", bytes({0x91, 0x80, 0, 0, 0, 0}), role::server},
        {"opcode 3", bytes({0x83, 0x80, 0, 0, 0, 0}), role::server},
        {"opcode 0xB", bytes({0x8B, 0x00}), role::client},
        {"fragmented ping", bytes({0x09, 0x80, 0, 0, 0, 0}), role::server},
        {"close of 126", bytes({0x88, 0xFE, 0, 126, 0, 0, 0, 0}), role::server},
        {"unmasked from a client", bytes({0x81, 0x05}), role::server},
        {"masked from a server", bytes({0x81, 0x85, 1, 2, 3, 4}), role::client},
        {"16-bit length below 126", bytes({0x82, 0x7E, 0x00, 0x7D}), role::client},
        {"64-bit length below 65536", bytes({0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF}), role::client},
        {"64-bit length top bit", bytes({0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0}), role::client},
    };
    for (const auto& r : rows) {
        INFO(r.name);
        const auto p = parse_head(r.wire, r.receiver);
        REQUIRE(p.status == parse_status::failed);
        CHECK(p.error == close_code::protocol_error);
        CHECK_FALSE(p.why.empty());
        // A prefix never fails for a reason found later in the head, nor completes.
        for (std::size_t cut = 0; cut < r.wire.size(); ++cut)
            CHECK(parse_head(std::span{r.wire}.first(cut), r.receiver).status != parse_status::complete);
    }
}

TEST_CASE("masking round-trips at every offset and length", "[ws]") {
    const mask_key key{std::byte{0x37}, std::byte{0xFA}, std::byte{0x21}, std::byte{0x3D}};
    // RFC 6455 section 5.7: "Hello" masked with 37 fa 21 3d.
    auto hello = bytes_of("Hello");
    apply_mask(hello, key);
    CHECK(hello == bytes({0x7F, 0x9F, 0x4D, 0x51, 0x58}));
    std::vector<std::byte> plain(37);
    for (std::size_t i = 0; i < plain.size(); ++i) plain[i] = std::byte(i * 7 + 1);
    auto whole = plain;
    apply_mask(whole, key);
    for (std::size_t i = 0; i < whole.size(); ++i) REQUIRE(whole[i] == (plain[i] ^ key[i % 4]));
    // Masked in two pieces, the second knowing its offset, gives the same bytes.
    for (std::size_t cut = 0; cut <= plain.size(); ++cut) {
        auto pieces = plain;
        apply_mask(std::span{pieces}.first(cut), key, 0);
        apply_mask(std::span{pieces}.subspan(cut), key, cut);
        REQUIRE(pieces == whole);
    }
    // Different keys from the per-thread generator (four equal in a row would be a broken one).
    const auto a = random_mask_key(), b = random_mask_key(), c = random_mask_key(), d = random_mask_key();
    CHECK_FALSE((a == b && b == c && c == d));
}

TEST_CASE("fragments follow section 5.4", "[ws]") {
    fragment_tracker t;
    opcode op;
    frame_head h;
    h.op = opcode::continuation;
    h.fin = true;
    CHECK_FALSE(t.accept(h, op));  // a continuation with no message
    h.op = opcode::text;
    h.fin = false;
    REQUIRE(t.accept(h, op));
    CHECK(op == opcode::text);
    h.op = opcode::ping;
    h.fin = true;
    REQUIRE(t.accept(h, op));  // a control frame in between
    CHECK(op == opcode::ping);
    h.op = opcode::binary;
    h.fin = true;
    CHECK_FALSE(fragment_tracker{t}.accept(h, op));  // a new message inside one
    h.op = opcode::continuation;
    h.fin = true;
    REQUIRE(t.accept(h, op));
    CHECK(op == opcode::text);
    CHECK_FALSE(t.in_message());
}

TEST_CASE("UTF-8 validation, whole and split at every byte", "[ws]") {
    struct row {
        const char* name;
        std::string text;
        bool valid;
    };
    const std::vector<row> rows{
        {"empty", "", true},
        {"ASCII", "Hello, World! 0123456789 long enough for the 8-byte path", true},
        {"two-byte", "\xC3\xA9t\xC3\xA9", true},
        {"three-byte", "\xE2\x82\xAC and \xED\x9F\xBF (U+D7FF)", true},
        {"four-byte", "\xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF (U+10FFFF)", true},
        {"Autobahn 6.2.3", "\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5", true},
        {"stray continuation", "a\x80", false},
        {"overlong 2-byte C0", "\xC0\xAF", false},
        {"overlong 2-byte C1", "\xC1\xBF", false},
        {"overlong 3-byte", "\xE0\x80\xAF", false},
        {"overlong 4-byte", "\xF0\x80\x80\xAF", false},
        {"surrogate U+D800", "\xED\xA0\x80", false},
        {"surrogate U+DFFF", "\xED\xBF\xBF", false},
        {"above U+10FFFF", "\xF4\x90\x80\x80", false},
        {"F5 lead", "\xF5\x80\x80\x80", false},
        {"FF", "\xFF", false},
        {"truncated at the end", "ok \xE2\x82", false},
        {"lead then ASCII", "\xC3(", false},
    };
    for (const auto& r : rows) {
        INFO(r.name);
        CHECK(is_valid_utf8(r.text) == r.valid);
        for (std::size_t cut = 0; cut <= r.text.size(); ++cut) {
            utf8_validator v;
            const bool first = v.feed(std::string_view{r.text}.substr(0, cut));
            const bool second = v.feed(std::string_view{r.text}.substr(cut));
            CHECK((first && second && v.complete()) == r.valid);
        }
    }
    // A cut inside a code point is fine until the message ends.
    utf8_validator v;
    CHECK(v.feed("\xF0\x9F"));
    CHECK_FALSE(v.complete());
    CHECK(v.feed("\x98\x80"));
    CHECK(v.complete());
}

TEST_CASE("close payloads: codes, reasons and what is refused", "[ws]") {
    auto empty = parse_close({});
    CHECK(empty.ok);
    CHECK(empty.code == close_code::no_status);
    CHECK_FALSE(parse_close(bytes({0x03})).ok);  // half a code
    struct row {
        int code;
        bool valid;
    };
    for (const row r : {row{1000, true}, {1001, true}, {1003, true}, {1007, true}, {1011, true}, {1014, true},
                        {3000, true}, {4999, true}, {0, false}, {999, false}, {1004, false}, {1005, false},
                        {1006, false}, {1015, false}, {1016, false}, {2999, false}, {5000, false}, {65535, false}}) {
        INFO("code " << r.code);
        const auto payload = bytes({r.code >> 8, r.code & 0xFF, 'o', 'k'});
        const auto p = parse_close(payload);  // its reason points into payload
        CHECK(p.ok == r.valid);
        if (r.valid) CHECK(p.reason == "ok");
        else CHECK(p.error == close_code::protocol_error);
    }
    const auto bad_reason = parse_close(bytes({0x03, 0xE8, 0xFF}));
    CHECK_FALSE(bad_reason.ok);
    CHECK(bad_reason.error == close_code::invalid_payload);

    std::array<std::byte, max_control_payload> out;
    const std::size_t n = write_close(out, close_code::going_away, "bye");
    const auto back = parse_close(std::span{out}.first(n));
    CHECK(back.ok);
    CHECK(back.code == close_code::going_away);
    CHECK(back.reason == "bye");
    CHECK(write_close(out, close_code::no_status, "ignored") == 0);
    // A long reason is cut to fit, never inside a code point.
    std::string euros;
    for (int i = 0; i < 60; ++i) euros += "\xE2\x82\xAC";
    const std::size_t cut = write_close(out, close_code::normal, euros);
    CHECK(cut <= max_control_payload);
    CHECK(cut == 2 + 41 * 3);
    CHECK(parse_close(std::span{out}.first(cut)).ok);
    CHECK(std::error_code{close_code::message_too_big}.message() == "websocket message too big");
}

TEST_CASE("the handshake: accept key, request checks, response checks", "[ws]") {
    // RFC 6455 section 1.3's example (and `openssl sha1 -binary | base64` over key + GUID).
    CHECK(accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    upgrade_request good{"GET", "websocket", "keep-alive, Upgrade", "13", "dGhlIHNhbXBsZSBub25jZQ=="};
    CHECK(check_upgrade(good) == upgrade_error::none);
    auto r = good;
    r.method = "POST";
    CHECK(check_upgrade(r) == upgrade_error::not_get);
    r = good;
    r.upgrade = "h2c";
    CHECK(check_upgrade(r) == upgrade_error::no_upgrade_token);
    r = good;
    r.connection = "keep-alive";
    CHECK(check_upgrade(r) == upgrade_error::no_connection_upgrade);
    r = good;
    r.version = "8";
    CHECK(check_upgrade(r) == upgrade_error::bad_version);
    CHECK(status_for(upgrade_error::bad_version) == 426);
    for (std::string_view key : {"", "dGhlIHNhbXBsZSBub25jZQ=", "dGhlIHNhbXBsZSBub25jZR==", "dGhlIHNhbXBsZSBub25j*Q==",
                                 "dGhlIHNhbXBsZSBub25jZQ==="}) {
        INFO("key " << key);
        r = good;
        r.key = key;
        CHECK(check_upgrade(r) == upgrade_error::bad_key);
        CHECK(status_for(upgrade_error::bad_key) == 400);
    }
    CHECK(has_token("Upgrade", "upgrade"));
    CHECK(has_token(" foo ,\tUPGRADE ", "upgrade"));
    CHECK_FALSE(has_token("upgrades", "upgrade"));

    // A lookup by name, as a header store would give.
    auto find = [](std::string_view name) -> std::string_view {
        if (name == "Upgrade") return "websocket";
        if (name == "Connection") return "Upgrade";
        if (name == "Sec-WebSocket-Version") return "13";
        if (name == "Sec-WebSocket-Key") return "dGhlIHNhbXBsZSBub25jZQ==";
        return {};
    };
    CHECK(check_upgrade(upgrade_request_from("GET", find)) == upgrade_error::none);

    const std::string key = make_client_key();
    CHECK(is_valid_key(key));
    CHECK(make_client_key() != key);
    const std::string request = client_request("127.0.0.1:80", "/ws/echo", key);
    CHECK(request.starts_with("GET /ws/echo HTTP/1.1\r\nHost: 127.0.0.1:80\r\n"));
    CHECK(request.ends_with("\r\n\r\n"));

    const std::string answer = accept_response(key);
    CHECK(check_response(answer, key).empty());
    CHECK_FALSE(check_response(answer, make_client_key()).empty());  // another key's answer
    CHECK_FALSE(check_response("HTTP/1.1 200 OK\r\n\r\n", key).empty());
    CHECK_FALSE(check_response("HTTP/1.1 1010 X\r\n\r\n", key).empty());
    const std::string with_extension = answer.substr(0, answer.size() - 2) + "Sec-WebSocket-Extensions: x\r\n\r\n";
    CHECK_FALSE(check_response(with_extension, key).empty());
    CHECK_FALSE(check_response(answer.substr(0, answer.size() - 2), key).empty());  // no empty line
}
