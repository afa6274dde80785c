// Field lines and the framing fields (fields.hpp), plus what header.hpp declares.
#include "fields.hpp"

#include <array>
#include <cstring>

namespace coring::http {
namespace {

// One table lookup per byte instead of a chain of comparisons: the parsers run per request.
enum char_class : std::uint8_t {
    token_char = 1,   // tchar
    value_char = 2,   // field-vchar, SP, HTAB, obs-text (RFC 9110 §5.5)
    host_char = 4,    // what an authority's host and port are made of (RFC 3986 §3.2)
};

constexpr bool in(std::string_view set, int c) { return set.find(static_cast<char>(c)) != std::string_view::npos; }

constexpr std::array<std::uint8_t, 256> make_classes() {
    std::array<std::uint8_t, 256> t{};
    for (int c = 0; c < 256; ++c) {
        const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        std::uint8_t k = 0;
        if (alnum || in("!#$%&'*+-.^_`|~", c)) k |= token_char;
        if (c == '\t' || (c >= 0x20 && c != 0x7f)) k |= value_char;
        if (alnum || in("-._~%!$&'()*+,;=:[]", c)) k |= host_char;
        t[static_cast<std::size_t>(c)] = k;
    }
    return t;
}
constexpr auto classes = make_classes();

bool all_of_class(std::string_view s, std::uint8_t k) noexcept {
    for (const char c : s)
        if ((classes[static_cast<unsigned char>(c)] & k) == 0) return false;
    return true;
}

char lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c; }

bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }

std::string_view trim_ows(std::string_view s) noexcept {
    while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
    return s;
}

// Calls fn(element) for each non-empty element of a comma-separated list (RFC 9110 §5.6.1:
// empty elements are ignored), OWS trimmed.
template <class Fn>
void for_each_element(std::string_view list, Fn fn) noexcept {
    while (true) {
        const std::size_t comma = list.find(',');
        const std::string_view element = trim_ows(list.substr(0, comma));
        if (!element.empty()) fn(element);
        if (comma == std::string_view::npos) return;
        list.remove_prefix(comma + 1);
    }
}

// 1*DIGIT into a uint64; false for anything else (sign, space, list, overflow).
bool parse_decimal(std::string_view s, std::uint64_t& out) noexcept {
    if (s.empty()) return false;
    std::uint64_t v = 0;
    for (const char c : s) {
        if (c < '0' || c > '9') return false;
        const auto d = static_cast<std::uint64_t>(c - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    out = v;
    return true;
}

}  // namespace

bool equals_ignore_case(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (lower(a[i]) != lower(b[i])) return false;
    return true;
}

std::string_view find_header(std::span<const header> headers, std::string_view name) noexcept {
    for (const header& h : headers)
        if (equals_ignore_case(h.name, name)) return h.value;
    return {};
}

std::size_t find_head_end(std::string_view bytes) noexcept {
    // memchr finds each LF at memory speed; a head ends at the first LF that closes "\r\n\r\n".
    const char* const begin = bytes.data();
    const char* const end = begin + bytes.size();
    const char* p = begin;
    while (p < end) {
        const auto* lf = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
        if (lf == nullptr) return 0;
        if (lf - begin >= 3 && lf[-1] == '\r' && lf[-2] == '\n' && lf[-3] == '\r')
            return static_cast<std::size_t>(lf - begin) + 1;
        p = lf + 1;
    }
    return 0;
}

namespace detail {

bool is_token(std::string_view s) noexcept { return !s.empty() && all_of_class(s, token_char); }

bool next_line(std::string_view& rest, std::string_view& line) noexcept {
    const std::size_t lf = rest.find('\n');
    if (lf == std::string_view::npos || lf == 0 || rest[lf - 1] != '\r') return false;
    line = rest.substr(0, lf - 1);
    rest.remove_prefix(lf + 1);
    return true;
}

fields_result parse_fields(std::string_view rest, std::array<header, max_headers>& out,
                           std::size_t& count) noexcept {
    count = 0;
    std::string_view line;
    while (next_line(rest, line)) {
        if (line.empty()) return rest.empty() ? fields_result::ok : fields_result::bad_syntax;
        // obs-fold (a continuation line) is rejected, RFC 9112 §5.2 allows it for servers.
        if (is_ows(line.front())) return fields_result::bad_syntax;
        const std::size_t colon = line.find(':');
        if (colon == std::string_view::npos) return fields_result::bad_syntax;
        const std::string_view name = line.substr(0, colon);
        // "Host : x" fails here: whitespace is no tchar (RFC 9112 §5.1 requires a 400).
        if (!is_token(name)) return fields_result::bad_syntax;
        const std::string_view value = trim_ows(line.substr(colon + 1));
        if (!all_of_class(value, value_char)) return fields_result::bad_syntax;
        if (count == max_headers) return fields_result::too_many;
        out[count++] = header{name, value};
    }
    return fields_result::bad_syntax;  // no blank line, or a bare LF
}

framing_fields read_framing_fields(const header* headers, std::size_t count) noexcept {
    framing_fields f;
    int chunked_count = 0;
    bool chunked_last = false;
    bool unknown_coding = false;
    for (std::size_t i = 0; i < count; ++i) {
        const header& h = headers[i];
        // Dispatch on length first: most fields are none of these and cost one switch.
        switch (h.name.size()) {
        case 4:
            if (equals_ignore_case(h.name, "host")) {
                ++f.host_lines;
                if (!all_of_class(h.value, host_char)) f.host_valid = false;
            }
            break;
        case 6:
            if (equals_ignore_case(h.name, "expect")) {
                for_each_element(h.value, [&](std::string_view e) {
                    (equals_ignore_case(e, "100-continue") ? f.expect_continue : f.expect_other) = true;
                });
            }
            break;
        case 7:
            if (equals_ignore_case(h.name, "upgrade")) {
                for_each_element(h.value, [&](std::string_view e) {
                    if (equals_ignore_case(e, "websocket")) f.upgrade_websocket = true;
                });
            }
            break;
        case 10:
            if (equals_ignore_case(h.name, "connection")) {
                for_each_element(h.value, [&](std::string_view e) {
                    if (equals_ignore_case(e, "close")) f.connection_close = true;
                    else if (equals_ignore_case(e, "keep-alive")) f.connection_keep_alive = true;
                    else if (equals_ignore_case(e, "upgrade")) f.connection_upgrade = true;
                });
            }
            break;
        case 14:
            if (equals_ignore_case(h.name, "content-length")) {
                ++f.content_length_lines;
                if (!parse_decimal(h.value, f.content_length)) f.content_length_valid = false;
            }
            break;
        case 17:
            if (equals_ignore_case(h.name, "transfer-encoding")) {
                f.transfer_encoding = true;
                // Codings apply in order across lines (RFC 9110 §5.3 combines them).
                for_each_element(h.value, [&](std::string_view e) {
                    chunked_last = equals_ignore_case(e, "chunked");
                    if (chunked_last) ++chunked_count;
                    else unknown_coding = true;
                });
            }
            break;
        default:
            break;
        }
    }
    if (f.transfer_encoding) {
        // Any coding we cannot undo is 501 (RFC 9112 §6.1), wherever it sits; chunked twice, or
        // a value with no coding at all, leaves the length unknowable: 400 (§6.3 item 4).
        if (unknown_coding) f.transfer_coding_status = 501;
        else if (chunked_count != 1 || !chunked_last) f.transfer_coding_status = 400;
    }
    return f;
}

int parse_version(std::string_view v, int& minor) noexcept {
    const auto digit = [](char c) { return c >= '0' && c <= '9'; };
    if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || !digit(v[5]) || v[6] != '.' || !digit(v[7]))
        return 400;
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1')) return 505;
    minor = v[7] - '0';
    return 0;
}

}  // namespace detail
}  // namespace coring::http
