// HTTP/1.1 messages without I/O: request and response heads, the chunked coding, response
// heads and dates, the router. Each rejection rule is a row with the status it must give.
#include <coring/http/chunked.hpp>
#include <coring/http/request.hpp>
#include <coring/http/response.hpp>
#include <coring/http/response_parser.hpp>
#include <coring/http/router.hpp>

#include <catch2/catch.hpp>

#include <cstddef>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace http = coring::http;

namespace {

struct row {
    const char* why;
    std::string head;
    int status;
};

std::span<const std::byte> bytes_of(std::string_view s) {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

struct decoded {
    std::string data;
    bool done = false;
    int error = 0;
    std::size_t consumed = 0;
};

// Feeds `body` to a decoder in the given pieces (each piece as it arrives, with whatever the
// previous call left unconsumed), the way a server's reader would.
decoded decode(std::string_view body, const std::vector<std::size_t>& cuts, std::uint64_t max_body = 1 << 20) {
    http::chunked_decoder d{max_body};
    decoded out;
    std::size_t start = 0;  // first byte not consumed
    std::vector<std::size_t> ends = cuts;
    ends.push_back(body.size());
    for (const std::size_t end : ends) {
        // Bounded: each call consumes at least one byte or returns with nothing left.
        for (int calls = 0; calls <= 2 * static_cast<int>(body.size()) + 2; ++calls) {
            const auto s = d.next(bytes_of(body.substr(start, end - start)));
            start += s.consumed;
            out.data.append(reinterpret_cast<const char*>(s.data.data()), s.data.size());
            if (s.done || s.error != 0) {
                out.done = s.done;
                out.error = s.error;
                out.consumed = start;
                return out;
            }
            if (s.consumed == 0) break;  // needs the next piece
        }
    }
    out.consumed = start;
    return out;
}

}  // namespace

TEST_CASE("http: a request head, parsed into views", "[http]") {
    const std::string head =
        "POST /users/42/posts?draft=1&x=%20 HTTP/1.1\r\n"
        "Host: example.com:8080\r\n"
        "Content-Length: 11\r\n"
        "X-Empty:\r\n"
        "X-Spaced: \t a b \t\r\n"
        "\r\n";
    http::request_head r;
    REQUIRE(http::parse_request_head(head, r) == 0);
    CHECK(r.method == "POST");
    CHECK(r.target == "/users/42/posts?draft=1&x=%20");
    CHECK(r.path == "/users/42/posts");
    CHECK(r.query == "draft=1&x=%20");
    CHECK(r.minor_version == 1);
    CHECK(r.header_count == 4);
    CHECK(r.framing == http::body_framing::length);
    CHECK(r.content_length == 11);
    CHECK(r.keep_alive);
    CHECK_FALSE(r.expect_continue);
    CHECK_FALSE(r.upgrade_websocket);
    CHECK(r.find("host") == "example.com:8080");
    CHECK(r.find("HOST") == "example.com:8080");
    CHECK(r.find("x-empty").empty());
    CHECK(r.find("x-spaced") == "a b");
    CHECK(r.find("missing").empty());
}

TEST_CASE("http: request targets and what they split into", "[http]") {
    struct target_row {
        std::string line;
        std::string_view path, query;
    };
    const std::vector<target_row> rows = {
        {"GET / HTTP/1.1", "/", ""},
        {"GET /a/b HTTP/1.1", "/a/b", ""},
        {"GET /a?b?c HTTP/1.1", "/a", "b?c"},
        {"GET /? HTTP/1.1", "/", ""},
        {"GET http://example.com/a/b?q HTTP/1.1", "/a/b", "q"},
        {"GET http://example.com HTTP/1.1", "/", ""},
        {"GET https://example.com?q=1 HTTP/1.1", "/", "q=1"},
        {"OPTIONS * HTTP/1.1", "*", ""},
    };
    for (const auto& t : rows) {
        INFO(t.line);
        const std::string head = t.line + "\r\nHost: h\r\n\r\n";  // the views point into it
        http::request_head r;
        REQUIRE(http::parse_request_head(head, r) == 0);
        CHECK(r.path == t.path);
        CHECK(r.query == t.query);
    }
}

TEST_CASE("http: keep-alive, 100-continue and websocket upgrade by version", "[http]") {
    struct flags_row {
        std::string head;
        bool keep_alive, expect_continue, upgrade;
    };
    const std::vector<flags_row> rows = {
        {"GET / HTTP/1.1\r\nHost: h\r\n\r\n", true, false, false},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", false, false, false},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, CLOSE\r\n\r\n", false, false, false},
        {"GET / HTTP/1.0\r\n\r\n", false, false, false},
        {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true, false, false},
        {"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false, false, false},
        {"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n", true, true, false},
        {"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", false, false, false},
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n", true, false, true},
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\r\n", true, false, true},
        {"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n", true, false, false},
        {"GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n", true, false, false},
        {"GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", false, false, false},
    };
    for (const auto& t : rows) {
        INFO(t.head);
        http::request_head r;
        REQUIRE(http::parse_request_head(t.head, r) == 0);
        CHECK(r.keep_alive == t.keep_alive);
        CHECK(r.expect_continue == t.expect_continue);
        CHECK(r.upgrade_websocket == t.upgrade);
    }
}

TEST_CASE("http: body framing of a request", "[http]") {
    http::request_head r;
    REQUIRE(http::parse_request_head("GET / HTTP/1.1\r\nHost: h\r\n\r\n", r) == 0);
    CHECK(r.framing == http::body_framing::none);
    REQUIRE(http::parse_request_head("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", r) == 0);
    CHECK(r.framing == http::body_framing::chunked);
    REQUIRE(http::parse_request_head("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: CHUNKED\r\n\r\n", r) == 0);
    CHECK(r.framing == http::body_framing::chunked);
    REQUIRE(http::parse_request_head("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", r) == 0);
    CHECK(r.framing == http::body_framing::length);
    CHECK(r.content_length == 0);
    REQUIRE(http::parse_request_head("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n", r) == 0);
    CHECK(r.content_length == 18446744073709551615ull);
}

TEST_CASE("http: every rejection rule answers its status", "[http]") {
    const std::string host = "Host: h\r\n";
    std::string many_fields = "GET / HTTP/1.1\r\n" + host;
    for (std::size_t i = 1; i < http::max_headers; ++i) many_fields += "X-" + std::to_string(i) + ": v\r\n";
    const std::string exactly_max = many_fields + "\r\n";
    const std::string one_too_many = many_fields + "X-Last: v\r\n\r\n";
    const std::vector<row> rows = {
        // the request line
        {"no blank line", "GET / HTTP/1.1\r\nHost: h\r\n", 400},
        {"empty head", "\r\n\r\n", 400},
        {"bare LF line ends", "GET / HTTP/1.1\nHost: h\n\r\n\r\n", 400},
        {"bare LF in a field line", "GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", 400},
        {"bare CR in the request line", "GET /\r HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"bare CR in a value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", 400},
        {"two spaces after the method", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"a tab for a space", "GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"a trailing space", "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400},
        {"no version", "GET /\r\nHost: h\r\n\r\n", 400},
        {"HTTP/0.9-style line", "GET\r\n\r\n", 400},
        {"a method with a non-token byte", "GE(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"an empty method", " / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"a control byte in the target", std::string("GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
        {"a NUL in the target", std::string("GET /a\0b HTTP/1.1\r\nHost: h\r\n\r\n", 29), 400},
        {"a non-ASCII byte in the target", "GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"a fragment in the target", "GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"authority-form (CONNECT)", "CONNECT example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"asterisk-form with GET", "GET * HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"a relative target", "GET a/b HTTP/1.1\r\nHost: h\r\n\r\n", 400},
        {"lower-case version", "GET / http/1.1\r\nHost: h\r\n\r\n", 400},
        {"a two-digit version", "GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400},
        {"HTTP/2.0", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505},
        {"HTTP/1.2", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505},
        {"HTTP/0.9", "GET / HTTP/0.9\r\n\r\n", 505},
        // field lines
        {"obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400},
        {"obs-fold with a tab", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n", 400},
        {"space before the colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400},
        {"tab before the colon", "GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", 400},
        {"no colon", "GET / HTTP/1.1\r\nHost: h\r\nX-No-Colon\r\n\r\n", 400},
        {"an empty field name", "GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n", 400},
        {"a field name with a non-token byte", "GET / HTTP/1.1\r\nHost: h\r\nX[1]: v\r\n\r\n", 400},
        {"a DEL in a value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n", 400},
        {"bytes after the blank line", "GET / HTTP/1.1\r\nHost: h\r\n\r\nX: y\r\n\r\n", 400},
        {"64 field lines are fine", exactly_max, 0},
        {"65 field lines", one_too_many, 431},
        {"a head over max_head_bytes", "GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(http::max_head_bytes, 'a') + "\r\n\r\n", 431},
        // Host
        {"no Host in 1.1", "GET / HTTP/1.1\r\n\r\n", 400},
        {"no Host in 1.0 is fine", "GET / HTTP/1.0\r\n\r\n", 0},
        {"an empty Host is fine", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 0},
        {"two different Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        {"two equal Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400},
        {"a Host with a space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
        {"a Host with a slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
        {"an IPv6 Host is fine", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 0},
        // Content-Length
        {"a list of lengths", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n", 400},
        {"a list of equal lengths", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n", 400},
        {"two different length lines", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400},
        {"two equal length lines", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400},
        {"a signed length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n", 400},
        {"a negative length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400},
        {"a hex length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\n", 400},
        {"an empty length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", 400},
        {"a length with a space inside", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n", 400},
        {"a length over 64 bits", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551616\r\n\r\n", 400},
        // Transfer-Encoding
        {"Content-Length and Transfer-Encoding", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        {"Transfer-Encoding and Content-Length", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400},
        {"Transfer-Encoding in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        {"chunked twice", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400},
        {"chunked twice, over two lines", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
        {"an empty Transfer-Encoding", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n", 400},
        {"gzip", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
        {"gzip, then chunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
        {"chunked, then gzip", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501},
        {"chunked with a parameter", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", 501},
        {"identity", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n", 501},
        // Expect
        {"an unknown expectation", "PUT / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n", 417},
        {"an unknown expectation in 1.0 is ignored", "PUT / HTTP/1.0\r\nExpect: 200-ok\r\n\r\n", 0},
    };
    for (const auto& t : rows) {
        INFO(t.why);
        http::request_head r;
        CHECK(http::parse_request_head(t.head, r) == t.status);
    }
}

TEST_CASE("http: find_head_end and pipelined heads", "[http]") {
    CHECK(http::find_head_end("") == 0);
    CHECK(http::find_head_end("GET / HTTP/1.1\r\nHost: h\r\n") == 0);
    CHECK(http::find_head_end("GET / HTTP/1.1\r\nHost: h\r\n\r") == 0);
    CHECK(http::find_head_end("GET / HTTP/1.1\nHost: h\n\n") == 0);  // bare LF never ends a head
    CHECK(http::find_head_end("GET / HTTP/1.1\r\n\r\nrest") == 18);
    CHECK(http::find_head_end("\r\n\r\n") == 4);

    // Three requests in one read, with a body and a Connection: close in the middle; the
    // caller walks them with find_head_end, skipping each body.
    const std::string first = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
    const std::string second = "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nConnection: close\r\n\r\n";
    const std::string third = "GET /c HTTP/1.1\r\nHost: h\r\n\r\n";
    const std::string stream = first + second + "hello" + third;
    std::string_view rest = stream;
    std::vector<std::string> paths;
    std::vector<bool> keep_alive;
    for (int i = 0; i < 10 && !rest.empty(); ++i) {
        const std::size_t n = http::find_head_end(rest);
        REQUIRE(n != 0);
        http::request_head r;
        REQUIRE(http::parse_request_head(rest.substr(0, n), r) == 0);
        paths.emplace_back(r.path);
        keep_alive.push_back(r.keep_alive);
        rest.remove_prefix(n + (r.framing == http::body_framing::length ? r.content_length : 0));
    }
    CHECK(paths == std::vector<std::string>{"/a", "/b", "/c"});
    CHECK(keep_alive == std::vector<bool>{true, false, true});

    // One CRLF after a body, before the next request line, is ignored (RFC 9112 §2.2).
    http::request_head r;
    CHECK(http::parse_request_head("\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", r) == 0);
}

TEST_CASE("http: a head that grows byte by byte ends exactly once", "[http]") {
    const std::string head = "GET /x HTTP/1.1\r\nHost: h\r\nX: \r\r\n\r\n";  // a CR inside a value
    for (std::size_t n = 0; n < head.size(); ++n) {
        INFO("prefix " << n);
        CHECK(http::find_head_end(std::string_view(head).substr(0, n)) == 0);
    }
    REQUIRE(http::find_head_end(head) == head.size());
    http::request_head r;
    CHECK(http::parse_request_head(head, r) == 400);
}

TEST_CASE("http: the one-pass parse waits for a head split anywhere, then takes pipelined heads in turn", "[http]") {
    const std::string first = "GET /a/b?x=1 HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: test/1.0 (a long value, over 16 bytes)\r\nAccept: */*\r\n\r\n";
    const std::string second = "POST /p HTTP/1.0\r\nContent-Length: 3\r\n\r\n";
    http::request_head r;
    std::size_t length = 99;
    for (std::size_t n = 0; n < first.size(); ++n) {
        INFO("the first " << n << " bytes");
        CHECK(http::parse_request_prefix(std::string_view(first).substr(0, n), r, length) == http::head_incomplete);
        CHECK(length == 0);
    }
    const std::string both = first + second + "abc";
    REQUIRE(http::parse_request_prefix(both, r, length) == 0);
    CHECK(length == first.size());
    CHECK(r.path == "/a/b");
    CHECK(r.query == "x=1");
    CHECK(r.find("user-agent") == "test/1.0 (a long value, over 16 bytes)");
    REQUIRE(http::parse_request_prefix(std::string_view(both).substr(length), r, length) == 0);
    CHECK(length == second.size());
    CHECK(r.method == "POST");
    CHECK(r.framing == http::body_framing::length);
    CHECK(r.content_length == 3);
    // A CRLF before the request line is skipped, a second one is an empty head.
    CHECK(http::parse_request_prefix("\r\n" + first, r, length) == 0);
    CHECK(length == first.size() + 2);
    CHECK(http::parse_request_prefix("\r\n\r\n" + first, r, length) == 400);
}

TEST_CASE("http: the one-pass parse answers as soon as the bytes so far are wrong", "[http]") {
    http::request_head r;
    std::size_t length = 0;
    CHECK(http::parse_request_prefix("GE(T /", r, length) == 400);                   // a method byte
    CHECK(http::parse_request_prefix("GET /a\x01", r, length) == 400);               // a target byte
    CHECK(http::parse_request_prefix("GET / HTTP/1.1\nHost", r, length) == 400);     // a bare LF
    CHECK(http::parse_request_prefix("GET / HTTP/1.1\r\nHost : h", r, length) == 400);
    CHECK(http::parse_request_prefix("GET / HTTP/1.1\r\nX: a\x7f", r, length) == 400);
    CHECK(http::parse_request_prefix("GET / HTTP/1.1\r\nX: a\rb", r, length) == 400);  // a bare CR
    CHECK(http::parse_request_prefix("GET / HTTP/2.0\r\n", r, length) == 505);
    // Nothing wrong, but max_head_bytes of it and still no end: 431.
    const std::string endless = "GET / HTTP/1.1\r\nX: " + std::string(http::max_head_bytes, 'a');
    CHECK(http::parse_request_prefix(endless, r, length) == 431);
    CHECK(http::parse_request_prefix(std::string_view(endless).substr(0, http::max_head_bytes - 1), r, length) ==
          http::head_incomplete);
}

TEST_CASE("http: every byte at every place of a Host value is judged as RFC 3986 says", "[http]") {
    // The check runs 16 bytes a step with overlapping loads: each byte value at each position of
    // values 1-40 bytes long, against the rule written out.
    const std::string_view allowed = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;=:[]";
    http::request_head r;
    for (std::size_t size : {1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 40}) {
        for (std::size_t at = 0; at < size; ++at) {
            for (int b = 0; b < 256; ++b) {
                const char c = static_cast<char>(b);
                if (c == '\r' || c == '\n') continue;  // those end the line: other rules
                std::string value(size, 'a');
                value[at] = c;
                const std::string head = "GET / HTTP/1.1\r\nHost: " + value + "\r\n\r\n";
                const bool ok = allowed.find(c) != std::string_view::npos ||
                                ((c == ' ' || c == '\t') && (at == 0 || at + 1 == size));  // OWS, trimmed
                INFO("size " << size << ", byte " << b << " at " << at);
                REQUIRE((http::parse_request_head(head, r) == 0) == ok);
            }
        }
    }
}

TEST_CASE("http: a chunked body decodes the same at every split point", "[http]") {
    const std::string body =
        "5\r\nhello\r\n"
        "1A;name=value;other\r\nabcdefghijklmnopqrstuvwxyz\r\n"
        "0003 ; ext=\"quoted\"\r\n123\r\n"
        "0\r\n"
        "Trailer-One: x\r\n"
        "Trailer-Two: y\r\n"
        "\r\n";
    const std::string expected = "helloabcdefghijklmnopqrstuvwxyz123";
    const std::string after = "GET /next HTTP/1.1\r\n";  // a pipelined request: not consumed
    const std::string stream = body + after;
    const decoded whole = decode(stream, {});
    REQUIRE(whole.done);
    CHECK(whole.data == expected);
    CHECK(whole.consumed == body.size());
    for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
        INFO("split at " << cut);
        const decoded d = decode(stream, {cut});
        CHECK(d.done);
        CHECK(d.data == expected);
        CHECK(d.consumed == body.size());
    }
    // One byte at a time: every state waits for its next byte.
    std::vector<std::size_t> every;
    for (std::size_t i = 1; i < body.size(); ++i) every.push_back(i);
    const decoded bytewise = decode(body, every);
    CHECK(bytewise.done);
    CHECK(bytewise.data == expected);
}

TEST_CASE("http: chunked bodies that are rejected", "[http]") {
    struct chunk_row {
        const char* why;
        std::string body;
        int error;
        std::uint64_t max_body = 1 << 20;
    };
    const std::vector<chunk_row> rows = {
        {"no size", "\r\n", 400},
        {"a non-hex size", "g\r\n", 400},
        {"a signed size", "+5\r\nhello\r\n0\r\n\r\n", 400},
        {"a bare LF after the size", "5\nhello\r\n0\r\n\r\n", 400},
        {"a bare CR after the size", "5\rhello\r\n0\r\n\r\n", 400},
        {"space after the size with no extension", "5 \r\nhello\r\n0\r\n\r\n", 400},
        {"data longer than its size", "5\r\nhello!\r\n0\r\n\r\n", 400},
        {"a bare LF after the data", "5\r\nhello\n0\r\n\r\n", 400},
        {"17 hex digits", "00000000000000005\r\nhello\r\n0\r\n\r\n", 400},
        {"a control byte in an extension", "5;a\x01\r\nhello\r\n0\r\n\r\n", 400},
        {"an extension over its bound", "5;" + std::string(http::chunked_decoder::max_extension_bytes, 'x') + "\r\n", 400},
        {"obs-fold in the trailers", "0\r\nA: b\r\n c\r\n\r\n", 400},
        {"a bare LF in the trailers", "0\r\nA: b\nC: d\r\n\r\n", 400},
        {"a bare LF at the end", "0\r\n\n", 400},
        {"trailers over their bound", "0\r\nA: " + std::string(http::chunked_decoder::max_trailer_bytes, 'b') + "\r\n\r\n", 431},
        {"a chunk over the body limit", "b\r\nhello world\r\n0\r\n\r\n", 413, 10},
        {"chunks that add up over the limit", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 413, 10},
        {"a size that overflows 64 bits", "fffffffffffffffff\r\n", 413, ~std::uint64_t{0}},
        {"a size of 2^64 - 1 over a limit of 2^64 - 1 minus a chunk", "1\r\na\r\nffffffffffffffff\r\n", 413, ~std::uint64_t{0}},
    };
    for (const auto& t : rows) {
        INFO(t.why);
        const decoded d = decode(t.body, {}, t.max_body);
        CHECK(d.error == t.error);
        CHECK_FALSE(d.done);
        for (std::size_t cut = 0; cut <= t.body.size(); ++cut) {
            INFO("split at " << cut);
            CHECK(decode(t.body, {cut}, t.max_body).error == t.error);
        }
    }
    // A body of exactly the limit is fine; a failed decoder keeps failing and consumes nothing.
    CHECK(decode("5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", {}, 10).done);
    http::chunked_decoder d{10};
    CHECK(d.next(bytes_of("x")).error == 400);
    const auto again = d.next(bytes_of("5\r\nhello\r\n"));
    CHECK(again.error == 400);
    CHECK(again.consumed == 0);
}

TEST_CASE("http: writing chunks", "[http]") {
    std::string out;
    http::append_chunk(out, std::string_view{"hello"});
    http::append_chunk(out, std::string_view{});  // nothing: it would end the body
    http::append_chunk(out, std::string(26, 'z'));
    out += http::last_chunk;
    CHECK(out == "5\r\nhello\r\n1a\r\n" + std::string(26, 'z') + "\r\n0\r\n\r\n");
    const decoded d = decode(out, {});
    CHECK(d.done);
    CHECK(d.data == "hello" + std::string(26, 'z'));
}

TEST_CASE("http: response heads", "[http]") {
    std::string out;
    http::write_head(out, 200, "text/plain", 13, true);
    http::response_head r;
    REQUIRE(http::find_head_end(out) == out.size());
    REQUIRE(http::parse_response_head(out, r) == 0);
    CHECK(r.status == 200);
    CHECK(r.reason == "OK");
    CHECK(r.find("server") == "coring");
    CHECK(r.find("content-type") == "text/plain");
    CHECK(r.framing == http::body_framing::length);
    CHECK(r.content_length == 13);
    CHECK(r.keep_alive);
    REQUIRE(r.find("date").size() == 29);
    CHECK(http::parse_http_date(r.find("date")).has_value());

    out.clear();
    const std::vector<std::pair<std::string, std::string>> extra = {
        {"Allow", "GET, HEAD"}, {"X-Split", "a\r\nSet-Cookie: evil"}, {"Bad Name", "v"}, {"X-Ok", "yes"}};
    http::write_head(out, 405, "", std::nullopt, false, extra);
    REQUIRE(http::parse_response_head(out, r) == 0);
    CHECK(r.status == 405);
    CHECK(r.reason == "Method Not Allowed");
    CHECK(r.framing == http::body_framing::chunked);
    CHECK_FALSE(r.keep_alive);
    CHECK(r.find("allow") == "GET, HEAD");
    CHECK(r.find("x-ok") == "yes");
    CHECK(r.find("content-type").empty());
    CHECK(r.find("x-split").empty());
    CHECK(r.find("set-cookie").empty());

    for (const int status : {100, 101, 204, 304}) {
        INFO(status);
        out.clear();
        http::write_head(out, status, "", std::nullopt, true);
        REQUIRE(http::parse_response_head(out, r) == 0);
        CHECK(r.find("content-length").empty());
        CHECK(r.find("transfer-encoding").empty());
        CHECK(r.framing == http::body_framing::none);
    }
    CHECK(http::reason_phrase(431) == "Request Header Fields Too Large");
    CHECK(http::reason_phrase(299).empty());
    const auto text = http::response::text("Hello, World!");
    CHECK(text.status == 200);
    CHECK(text.content_type == "text/plain");
    CHECK(http::response::json("{}", 201).content_type == "application/json");
}

TEST_CASE("http: response heads a client parses or rejects", "[http]") {
    struct response_row {
        const char* why;
        std::string head;
        int status;
        http::body_framing framing = http::body_framing::none;
        bool head_request = false;
    };
    using f = http::body_framing;
    const std::vector<response_row> rows = {
        {"length", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", 0, f::length},
        {"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0, f::chunked},
        {"until close", "HTTP/1.1 200 OK\r\n\r\n", 0, f::until_close},
        {"an empty reason", "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", 0, f::length},
        {"a HEAD response", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", 0, f::none, true},
        {"a 204", "HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n", 0, f::none},
        {"a 304", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", 0, f::none},
        {"a 100", "HTTP/1.1 100 Continue\r\n\r\n", 0, f::none},
        {"1.0, until close", "HTTP/1.0 200 OK\r\n\r\n", 0, f::until_close},
        {"no space after the status", "HTTP/1.1 200\r\n\r\n", 502},
        {"a two-digit status", "HTTP/1.1 20 OK\r\n\r\n", 502},
        {"status 600", "HTTP/1.1 600 Odd\r\n\r\n", 502},
        {"status 099", "HTTP/1.1 099 Odd\r\n\r\n", 502},
        {"HTTP/2.0", "HTTP/2.0 200 OK\r\n\r\n", 502},
        {"a control byte in the reason", "HTTP/1.1 200 O\x01K\r\n\r\n", 502},
        {"length and chunked", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 502},
        {"a list of lengths", "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n", 502},
        {"gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 502},
        {"chunked in 1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 502},
        {"obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", 502},
    };
    for (const auto& t : rows) {
        INFO(t.why);
        http::response_head r;
        REQUIRE(http::parse_response_head(t.head, r, t.head_request) == t.status);
        if (t.status == 0) CHECK(r.framing == t.framing);
    }
    http::response_head r;
    REQUIRE(http::parse_response_head("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", r) == 0);
    CHECK(r.keep_alive);
    REQUIRE(http::parse_response_head("HTTP/1.1 200 OK\r\n\r\n", r) == 0);
    CHECK_FALSE(r.keep_alive);  // the body runs until the close
}

TEST_CASE("http: dates in the three forms RFC 9110 names", "[http]") {
    constexpr std::time_t t = 784111777;  // Sun, 06 Nov 1994 08:49:37 GMT
    CHECK(http::format_http_date(t) == "Sun, 06 Nov 1994 08:49:37 GMT");
    CHECK(http::format_http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT");
    CHECK(http::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == t);
    CHECK(http::parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == t);
    CHECK(http::parse_http_date("Sun Nov  6 08:49:37 1994") == t);
    CHECK(http::parse_http_date("Thu, 29 Feb 2024 23:59:59 GMT") == 1709251199);
    for (const std::time_t x : {std::time_t{0}, std::time_t{951782400}, std::time_t{1709251199}, std::time_t{4102444800}}) {
        INFO(x);
        CHECK(http::parse_http_date(http::format_http_date(x)) == x);
    }
    const std::vector<std::string> bad = {
        "",
        "Mon, 06 Nov 1994 08:49:37 GMT",    // the wrong weekday
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "sun, 06 Nov 1994 08:49:37 GMT",    // names are case-sensitive
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Fri, 30 Feb 2024 00:00:00 GMT",
        "Sun, 06 Nox 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT ",
        "Sun, 06-Nov-94 08:49:37 GMT",      // a short day name in the RFC 850 form
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sun Nov 06 08:49:37 1994 ",
        "Sun Nov  6 08:49:37 94",
    };
    for (const auto& s : bad) {
        INFO(s);
        CHECK_FALSE(http::parse_http_date(s).has_value());
    }
    const std::string_view now = http::http_date_now();
    REQUIRE(now.size() == 29);
    CHECK(http::parse_http_date(now).has_value());
}

TEST_CASE("http: the router picks the most specific route", "[http]") {
    http::router<int> r;
    r.add("GET", "/", 1)
        .add("GET", "/users/{id}", 2)
        .add("GET", "/users/me", 3)
        .add("GET", "/users/{id}/posts/{post}", 4)
        .add("POST", "/users", 5)
        .add("GET", "/static/{*path}", 6)
        .add("GET", "/users/{id}/{*rest}", 7)
        .add("HEAD", "/users/me", 8);
    struct match_row {
        const char* method;
        const char* path;
        int status;
        int handler;
    };
    const std::vector<match_row> rows = {
        {"GET", "/", 200, 1},
        {"GET", "/users/42", 200, 2},
        {"GET", "/users/me", 200, 3},            // the literal beats {id}
        {"GET", "/users/42/posts/7", 200, 4},    // {post} beats {*rest}
        {"GET", "/users/42/likes", 200, 7},
        {"GET", "/static/css/site.css", 200, 6},
        {"GET", "/static/", 200, 6},
        {"HEAD", "/users/42", 200, 2},           // HEAD falls back to GET
        {"HEAD", "/users/me", 200, 8},           // unless it has its own route
        {"POST", "/users", 200, 5},
        {"GET", "/users", 405, 0},
        {"DELETE", "/users/42", 405, 0},
        {"GET", "/static", 404, 0},
        {"GET", "/users/", 404, 0},              // {id} never matches an empty segment
        {"GET", "/users//posts/7", 404, 0},
        {"GET", "/nowhere", 404, 0},
        {"GET", "", 404, 0},
        {"OPTIONS", "*", 404, 0},
    };
    for (const auto& t : rows) {
        INFO(t.method << " " << t.path);
        const auto m = r.match(t.method, t.path);
        CHECK(m.status == t.status);
        if (t.status == 200) {
            REQUIRE(m.handler != nullptr);
            CHECK(*m.handler == t.handler);
        } else {
            CHECK(m.handler == nullptr);
        }
    }
    const auto m = r.match("GET", "/users/a%20b/posts/x");
    CHECK(m.params.count == 2);
    CHECK(m.params.get("id") == "a%20b");
    CHECK(m.params.get("post") == "x");
    CHECK(m.params.get("nope").empty());
    CHECK(r.match("GET", "/static/a/b").params.get("path") == "a/b");
    CHECK(r.allow("/users") == "POST");
    CHECK(r.allow("/users/42") == "GET, HEAD");
    CHECK(r.allow("/nowhere").empty());
}

TEST_CASE("http: bad route patterns are refused", "[http]") {
    http::router<int> r;
    for (const char* pattern : {"", "users", "/{}", "/{id", "/x{id}", "/{*rest}/more", "/{a{b}}",
                                "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}"}) {
        INFO(pattern);
        CHECK_THROWS_AS(r.add("GET", pattern, 0), std::invalid_argument);
    }
    CHECK(r.match("GET", "/").status == 404);  // nothing refused was kept
}

TEST_CASE("http: percent-decoding", "[http]") {
    struct decode_row {
        const char* in;
        bool ok;
        const char* out;
    };
    const std::vector<decode_row> rows = {
        {"plain", true, "plain"},      {"a%20b", true, "a b"},   {"%2e%2E", true, ".."},
        {"%2F", true, "/"},            {"a+b", true, "a+b"},     {"%e2%82%ac", true, "\xe2\x82\xac"},
        {"%00", false, ""},            {"%", false, ""},         {"%2", false, ""},
        {"%zz", false, ""},            {"%g0", false, ""},       {"abc%", false, ""},
    };
    std::string out;
    CHECK_FALSE(http::percent_decode(std::string_view("a\0b", 3), out));
    for (const auto& t : rows) {
        INFO(t.in);
        std::string out = "old";
        CHECK(http::percent_decode(t.in, out) == t.ok);
        if (t.ok) CHECK(out == t.out);
    }
}
