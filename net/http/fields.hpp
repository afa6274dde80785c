#pragma once
// What the request and response parsers share: line splitting, field-line syntax, and what
// the fields that frame a message (Content-Length, Transfer-Encoding, Connection, Host,
// Upgrade, Expect) say. Private to net/http: the rules are documented in request.hpp.
#include <coring/http/header.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace coring::http::detail {

// tchar (RFC 9110 §5.6.2): the bytes of a method, a field name, a list token.
bool is_token(std::string_view s) noexcept;

// Takes the next CRLF-terminated line off the front of `rest` (without the CRLF). False when
// there is none or a LF comes without its CR (a bare CR inside the line is left to the caller's
// byte checks, which all reject control bytes).
bool next_line(std::string_view& rest, std::string_view& line) noexcept;

enum class fields_result : std::uint8_t { ok, bad_syntax, too_many };

// Parses the field lines in `rest` (everything after the start line, ending with the blank
// line's CRLF, which must be the last bytes) into `out`, at most max_headers of them.
fields_result parse_fields(std::string_view rest, std::array<header, max_headers>& out,
                           std::size_t& count) noexcept;

// What the framing fields of a message say, before request or response rules apply.
struct framing_fields {
    int content_length_lines = 0;
    bool content_length_valid = true;  // every Content-Length line a plain number, no overflow
    std::uint64_t content_length = 0;
    bool transfer_encoding = false;
    int transfer_coding_status = 0;    // 0: exactly one chunked, last; 400 or 501 otherwise
    int host_lines = 0;
    bool host_valid = true;
    bool connection_close = false;
    bool connection_keep_alive = false;
    bool connection_upgrade = false;
    bool upgrade_websocket = false;
    bool expect_continue = false;
    bool expect_other = false;
};

framing_fields read_framing_fields(const header* headers, std::size_t count) noexcept;

// "HTTP/d.d": 0 and sets minor; 400 when not that shape; 505 for a version other than 1.0/1.1.
int parse_version(std::string_view v, int& minor) noexcept;

}  // namespace coring::http::detail
