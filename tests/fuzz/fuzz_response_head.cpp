// fuzz-sources: net/http/response_parser.cpp net/http/fields.cpp
// The client's response head parser on arbitrary bytes. The first byte says whether the
// request was HEAD. Invariants: 0 or 502, views inside the head, framing by RFC 9112 §6.3.
#include <coring/http/response_parser.hpp>

#include "fuzz_check.hpp"

#include <cstddef>
#include <cstdint>

namespace http = coring::http;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const bool head_request = (data[0] & 1) != 0;
    const std::string_view input{reinterpret_cast<const char*>(data + 1), size - 1};
    const std::size_t n = http::find_head_end(input);
    const std::string_view head = n == 0 ? input : input.substr(0, n);
    http::response_head r;
    const int status = http::parse_response_head(head, r, head_request);
    FUZZ_CHECK(status == 0 || status == 502);
    if (status != 0) return 0;
    FUZZ_CHECK(r.status >= 100 && r.status <= 599);
    FUZZ_CHECK(inside(r.reason, head));
    FUZZ_CHECK(r.header_count <= http::max_headers);
    for (std::size_t i = 0; i < r.header_count; ++i)
        FUZZ_CHECK(inside(r.headers[i].name, head) && inside(r.headers[i].value, head));
    if (head_request || r.status < 200 || r.status == 204 || r.status == 304)
        FUZZ_CHECK(r.framing == http::body_framing::none);
    else
        FUZZ_CHECK(r.framing != http::body_framing::none);
    FUZZ_CHECK(r.framing == http::body_framing::length || r.content_length == 0);
    if (r.framing == http::body_framing::until_close) FUZZ_CHECK(!r.keep_alive);
    return 0;
}
