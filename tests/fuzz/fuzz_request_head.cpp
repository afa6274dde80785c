// fuzz-sources: net/http/request.cpp net/http/fields.cpp
// The request head parser on arbitrary bytes, as a server's reader would feed it: find a head,
// parse it, skip its Content-Length body, go on with the next (pipelining). Invariants: only
// the statuses request.hpp names, views inside the head, framing fields consistent; and the
// server's one-pass parse (parse_request_prefix) accepts exactly the heads the whole-head parse
// accepts, ending them where find_head_end does.
#include <coring/http/request.hpp>

#include "fuzz_check.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace http = coring::http;

namespace {

int check_parse(std::string_view head) {
    http::request_head r;
    const int status = http::parse_request_head(head, r);
    FUZZ_CHECK(status == 0 || status == 400 || status == 417 || status == 431 || status == 501 ||
               status == 505);
    if (status != 0) return status;
    FUZZ_CHECK(head.size() <= http::max_head_bytes);
    FUZZ_CHECK(!r.method.empty() && inside(r.method, head));
    FUZZ_CHECK(!r.target.empty() && inside(r.target, head));
    FUZZ_CHECK(inside(r.path, head) || r.path == "/");  // "/" for an absolute-form with no path
    FUZZ_CHECK(inside(r.query, head));
    FUZZ_CHECK(r.minor_version == 0 || r.minor_version == 1);
    FUZZ_CHECK(r.header_count <= http::max_headers);
    for (std::size_t i = 0; i < r.header_count; ++i) {
        FUZZ_CHECK(!r.headers[i].name.empty() && inside(r.headers[i].name, head));
        FUZZ_CHECK(inside(r.headers[i].value, head));
        FUZZ_CHECK(r.headers[i].value.find_first_of("\r\n") == std::string_view::npos);
    }
    FUZZ_CHECK(r.framing != http::body_framing::until_close);
    FUZZ_CHECK(r.framing == http::body_framing::length || r.content_length == 0);
    if (r.framing == http::body_framing::chunked) FUZZ_CHECK(r.minor_version == 1);
    if (r.upgrade_websocket || r.expect_continue) FUZZ_CHECK(r.minor_version == 1);
    return 0;
}

// parse_request_prefix on bytes that may hold a part of a head, or more than one.
void check_prefix(std::string_view bytes) {
    http::request_head r;
    std::size_t length = 0;
    const int status = http::parse_request_prefix(bytes, r, length);
    FUZZ_CHECK(status == http::head_incomplete || status == 0 || status == 400 || status == 417 || status == 431 ||
               status == 501 || status == 505);
    const std::size_t end = http::find_head_end(bytes);
    http::request_head whole;
    const int whole_status = end == 0 ? http::head_incomplete : http::parse_request_head(bytes.substr(0, end), whole);
    if (status == 0) FUZZ_CHECK(length == end && whole_status == 0);
    if (whole_status == 0) FUZZ_CHECK(status == 0);
    if (status == http::head_incomplete) FUZZ_CHECK(bytes.size() < http::max_head_bytes);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input{reinterpret_cast<const char*>(data), size};
    check_parse(input);  // whatever the bytes, as if a caller passed them whole
    check_prefix(input);  // as the server's reader holds them
    std::string_view rest = input;
    for (int requests = 0; requests < 64 && !rest.empty(); ++requests) {
        const std::size_t n = http::find_head_end(rest);
        if (n == 0) break;
        FUZZ_CHECK(n >= 4 && n <= rest.size() && rest.substr(n - 4, 4) == "\r\n\r\n");
        FUZZ_CHECK(http::find_head_end(rest.substr(0, n - 1)) == 0);  // the first end, not a later one
        const std::string_view head = rest.substr(0, n);
        if (check_parse(head) != 0) break;  // the server answers and closes
        http::request_head r;
        http::parse_request_head(head, r);
        rest.remove_prefix(n);
        if (r.framing == http::body_framing::length)
            rest.remove_prefix(static_cast<std::size_t>(std::min<std::uint64_t>(r.content_length, rest.size())));
        else if (r.framing == http::body_framing::chunked)
            break;  // the chunked decoder has its own target
    }
    return 0;
}
