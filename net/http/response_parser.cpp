// parse_response_head: the status line, the fields (shared with requests), then the framing.
#include <coring/http/response.hpp>
#include <coring/http/response_parser.hpp>

#include "fields.hpp"

namespace coring::http {

int parse_response_head(std::string_view head, response_head& out, bool head_request) noexcept {
    constexpr int bad = 502;
    out.minor_version = 1;
    out.status = 0;
    out.reason = {};
    out.header_count = 0;
    out.framing = body_framing::none;
    out.content_length = 0;
    out.keep_alive = true;

    if (head.size() < 4 || head.substr(head.size() - 4) != "\r\n\r\n") return bad;
    std::string_view rest = head;
    std::string_view line;
    if (!detail::next_line(rest, line)) return bad;
    // status-line = HTTP-version SP 3DIGIT SP [reason-phrase] (RFC 9112 §4): 13 bytes at least.
    if (line.size() < 13 || line[8] != ' ' || line[12] != ' ') return bad;
    if (detail::parse_version(line.substr(0, 8), out.minor_version) != 0) return bad;
    for (std::size_t i = 9; i < 12; ++i) {
        if (line[i] < '0' || line[i] > '9') return bad;
        out.status = out.status * 10 + (line[i] - '0');
    }
    if (out.status < 100 || out.status > 599) return bad;
    out.reason = line.substr(13);
    for (const char c : out.reason)
        if (!detail::is_value_byte(c)) return bad;

    if (detail::parse_fields(rest, out.headers, out.header_count) != detail::fields_result::ok) return bad;
    const detail::framing_fields f = detail::read_framing_fields(out.headers.data(), out.header_count);
    const bool http11 = out.minor_version == 1;
    out.keep_alive = http11 ? !f.connection_close : (f.connection_keep_alive && !f.connection_close);
    // RFC 9112 §6.3 item 1: these never carry a body, whatever their fields say.
    if (head_request || ends_at_head(out.status)) return 0;
    if (f.transfer_encoding) {
        if (!http11 || f.content_length_lines > 0 || f.transfer_coding_status != 0) return bad;
        out.framing = body_framing::chunked;
    } else if (f.content_length_lines > 0) {
        if (f.content_length_lines > 1 || !f.content_length_valid) return bad;
        out.framing = body_framing::length;
        out.content_length = f.content_length;
    } else {
        out.framing = body_framing::until_close;
        out.keep_alive = false;
    }
    return 0;
}

}  // namespace coring::http
