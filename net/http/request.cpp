// parse_request_head: the request line, then the fields, then RFC 9112's framing rules.
#include <coring/http/request.hpp>

#include "fields.hpp"

#include <cstring>

namespace coring::http {
namespace {

bool is_alpha(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// Splits the target into path and query; false for a form we do not serve: authority-form
// (CONNECT's "host:port": we are no proxy) or an asterisk-form with a method other than OPTIONS.
// query_at: where the first '?' of the target is (npos: none).
bool split_target(std::string_view method, std::string_view target, std::size_t query_at, request_head& out) noexcept {
    std::string_view rest = target;
    if (target == "*") {
        if (method != "OPTIONS") return false;
        out.path = target;
        return true;
    }
    if (target.front() != '/') {
        // absolute-form (RFC 9112 §3.2.2): scheme "://" authority [path] ["?" query].
        std::size_t i = 0;
        if (!is_alpha(target[0])) return false;
        while (i < target.size() && (is_alpha(target[i]) || (target[i] >= '0' && target[i] <= '9') ||
                                     target[i] == '+' || target[i] == '-' || target[i] == '.'))
            ++i;
        if (target.substr(i, 3) != "://") return false;
        rest = target.substr(i + 3);
        const std::size_t path_start = rest.find_first_of("/?");
        rest = path_start == std::string_view::npos ? std::string_view{} : rest.substr(path_start);
        if (rest.empty() || rest.front() == '?') {
            // No path: the path is "/" (RFC 9112 §3.2.1), a static string, not a view into head.
            out.path = "/";
            out.query = rest.empty() ? rest : rest.substr(1);
            return true;
        }
    }
    const std::size_t q = rest.data() == target.data() ? query_at : rest.find('?');
    out.path = rest.substr(0, q);
    out.query = q == std::string_view::npos ? std::string_view{} : rest.substr(q + 1);
    return true;
}

}  // namespace

int parse_request_prefix(std::string_view bytes, request_head& out, std::size_t& length) noexcept {
    // Reset what a previous parse set; the headers array is overwritten up to header_count.
    out.method = out.target = out.path = out.query = {};
    out.minor_version = 1;
    out.header_count = 0;
    out.framing = body_framing::none;
    out.content_length = 0;
    out.keep_alive = true;
    out.expect_continue = out.upgrade_websocket = false;
    length = 0;

    const char* const start = bytes.data();
    const char* const end = start + bytes.size();
    // Not the end of the head yet: more may come, unless there is already too much of it.
    const int incomplete = bytes.size() >= max_head_bytes ? 431 : head_incomplete;
    const char* p = start;
    // A server SHOULD ignore at least one empty line before a request line (RFC 9112 §2.2): a
    // client may send a CRLF after a POST body. One, not more: two would make "\r\n\r\n", which
    // ends a head (find_head_end) where a head is waited for whole.
    if (end - p >= 2 && p[0] == '\r' && p[1] == '\n') p += 2;
    if (p == end || (*p == '\r' && end - p == 1)) return incomplete;

    // The request line in one pass: exactly one SP between its three parts (RFC 9112 §3: the
    // lenient whitespace it allows is one of the smuggling vectors strictness removes), a token
    // for the method, target bytes (fields.hpp) for the target, then the version and CRLF.
    const char* const begin = p;
    if (end - p >= 4 && std::memcmp(p, "GET ", 4) == 0) p += 3;  // the common method, in one compare
    else while (p < end && detail::is_token_byte(*p)) ++p;
    if (p == end) return incomplete;
    if (p == begin || *p != ' ') return 400;
    out.method = {begin, static_cast<std::size_t>(p - begin)};
    const char* const target = ++p;
    const char* query = nullptr;
    p = detail::skip_target_bytes(p, end, query);
    if (p == end) return incomplete;
    if (p == target || *p != ' ') return 400;
    out.target = {target, static_cast<std::size_t>(p - target)};
    ++p;
    if (end - p < 10) return incomplete;  // the version's bytes are checked once all are here
    if (p[8] != '\r' || p[9] != '\n') return 400;
    if (std::memcmp(p, "HTTP/1.1", 8) != 0)  // the common case is one 8-byte compare
        if (const int v = detail::parse_version({p, 8}, out.minor_version); v != 0) return v;
    p += 10;
    if (!split_target(out.method, out.target, query ? static_cast<std::size_t>(query - target) : std::string_view::npos, out))
        return 400;

    switch (detail::parse_fields(p, end, out.headers, out.header_count)) {
    case detail::fields_result::ok: break;
    case detail::fields_result::incomplete: return incomplete;
    case detail::fields_result::bad_syntax: return 400;
    case detail::fields_result::too_many: return 431;
    }
    length = static_cast<std::size_t>(p - start);
    if (length > max_head_bytes) return 431;

    const detail::framing_fields f = detail::read_framing_fields(out.headers.data(), out.header_count);
    const bool http11 = out.minor_version == 1;
    // RFC 9112 §3.2: a 1.1 request has exactly one Host line; more, or an invalid one, is a 400.
    if (f.host_lines > 1 || !f.host_valid || (http11 && f.host_lines == 0)) return 400;
    if (f.transfer_encoding) {
        // §6.1: Transfer-Encoding in 1.0 means the framing is faulty; with Content-Length it
        // is the classic smuggling pair (§6.3 item 3 lets a server reject it, so we do).
        if (!http11 || f.content_length_lines > 0) return 400;
        if (f.transfer_coding_status != 0) return f.transfer_coding_status;
        out.framing = body_framing::chunked;
    } else if (f.content_length_lines > 0) {
        if (f.content_length_lines > 1 || !f.content_length_valid) return 400;
        out.framing = body_framing::length;
        out.content_length = f.content_length;
    }
    out.keep_alive = http11 ? !f.connection_close : (f.connection_keep_alive && !f.connection_close);
    // 1.0 has neither 100-continue nor Upgrade: both are ignored there (RFC 9110 §10.1.1, §7.8).
    if (http11) {
        if (f.expect_other) return 417;
        out.expect_continue = f.expect_continue;
        out.upgrade_websocket = f.upgrade_websocket && f.connection_upgrade;
    }
    return 0;
}

int parse_request_head(std::string_view head, request_head& out) noexcept {
    if (head.size() > max_head_bytes) return 431;
    std::size_t length = 0;
    const int status = parse_request_prefix(head, out, length);
    if (status == head_incomplete || (status == 0 && length != head.size())) return 400;  // not one whole head
    return status;
}

}  // namespace coring::http
