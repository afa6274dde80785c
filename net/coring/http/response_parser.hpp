#pragma once
// http::parse_response_head: the client side of HTTP/1.1 (tests and coring-load read servers'
// responses with it). Pure, views into the head, strict like the request parser.
#include <coring/http/header.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace coring::http {

struct response_head {
    int minor_version = 1;
    int status = 0;
    std::string_view reason;
    std::array<header, max_headers> headers;
    std::size_t header_count = 0;
    body_framing framing = body_framing::none;  // RFC 9112 §6.3, in its order of precedence
    std::uint64_t content_length = 0;           // when framing == length
    bool keep_alive = true;  // 1.1 unless Connection: close; 1.0 only with keep-alive; never
                             // when the body runs until the close

    std::string_view find(std::string_view name) const noexcept {
        return find_header({headers.data(), header_count}, name);
    }
};

// Parses `head` (through its blank line, as find_head_end measures it). `head_request`: the
// request was HEAD, so whatever the fields say, no body follows. Returns 0, or 502 (what a
// proxy would answer for an upstream's bad response): a malformed status line or field, more
// than max_headers fields, a status outside 100-599, a version other than HTTP/1.0 or 1.1,
// Content-Length with Transfer-Encoding, a Content-Length that is not one plain number, a
// transfer coding other than chunked, or Transfer-Encoding in HTTP/1.0.
int parse_response_head(std::string_view head, response_head& out, bool head_request = false) noexcept;

}  // namespace coring::http
