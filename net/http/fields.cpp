// Field lines and the framing fields (fields.hpp), plus what header.hpp declares.
#include "fields.hpp"

#include <array>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace coring::http {
namespace {

using detail::host_char;
using detail::is_class;
using detail::is_token_byte;
using detail::token_char;
using detail::value_char;

// No early exit, four bytes a step: an AND over the bytes' classes, which beats a test and a
// branch per byte on the short strings this sees (a Host value on every request).
bool all_of_class(std::string_view s, std::uint8_t k) noexcept {
    constexpr auto& t = detail::char_classes;
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const auto* const end = p + s.size();
    std::uint8_t all = k;
    const auto four = [](const unsigned char* q) { return t[q[0]] & t[q[1]] & t[q[2]] & t[q[3]]; };
    if (end - p < 4) {
        for (; p < end; ++p) all &= t[*p];
        return all != 0;
    }
    for (; end - p >= 4; p += 4) all &= four(p);
    return (all & four(end - 4)) != 0;  // the last 0-3 bytes, in a step that overlaps the one before
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

// A field name (a token, so no CR) against a lowercase literal of letters and '-' of the same
// length: c | 0x20 folds a letter's case, and of the bytes it maps onto '-' only '-' is a tchar.
// Eight bytes a compare, then four, then one (N is known: the steps unroll).
template <std::size_t N>
bool name_is(std::string_view name, const char (&lower)[N]) noexcept {
    constexpr std::size_t n = N - 1;
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        std::uint64_t a, b;
        std::memcpy(&a, name.data() + i, 8);
        std::memcpy(&b, lower + i, 8);
        if ((a | 0x2020202020202020u) != b) return false;
    }
    for (; i + 4 <= n; i += 4) {
        std::uint32_t a, b;
        std::memcpy(&a, name.data() + i, 4);
        std::memcpy(&b, lower + i, 4);
        if ((a | 0x20202020u) != b) return false;
    }
    for (; i < n; ++i)
        if ((name[i] | 0x20) != lower[i]) return false;
    return true;
}

// Whether every byte of a Host value is one an authority may hold (host_char). With SSE2, 16
// bytes a step, every load inside the value: a value of 8-16 bytes is two 8-byte loads that
// may overlap, a longer one ends with a 16-byte load that overlaps the step before (checking
// a byte twice changes nothing). Refused: below 0x21 or above 0x7e (signed: < 0x21 takes in
// the negative ones), and the visible bytes RFC 3986 keeps out of a host and port.
bool host_bytes_valid(std::string_view v) noexcept {
#if defined(__SSE2__)
    const char* const p = v.data();
    const std::size_t n = v.size();
    const auto refused = [](__m128i b) {
        const auto eq = [&b](char c) { return _mm_cmpeq_epi8(b, _mm_set1_epi8(c)); };
        const auto in = [&b](char lo, char hi) {
            return _mm_and_si128(_mm_cmpgt_epi8(b, _mm_set1_epi8(static_cast<char>(lo - 1))),
                                 _mm_cmplt_epi8(b, _mm_set1_epi8(static_cast<char>(hi + 1))));
        };
        __m128i r = _mm_or_si128(_mm_cmplt_epi8(b, _mm_set1_epi8(0x21)), eq(0x7f));
        r = _mm_or_si128(r, _mm_or_si128(in('"', '#'), eq('/')));    // " # /
        r = _mm_or_si128(r, _mm_or_si128(eq('<'), in('>', '@')));    // < > ? @
        r = _mm_or_si128(r, _mm_or_si128(eq('\\'), eq('^')));        // \ ^
        r = _mm_or_si128(r, _mm_or_si128(eq('`'), in('{', '}')));    // ` { | }
        return _mm_movemask_epi8(r) != 0;
    };
    if (n >= 8 && n <= 16)
        return !refused(_mm_unpacklo_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)),
                                           _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + n - 8))));
    if (n > 16) {
        for (std::size_t i = 0; i + 16 <= n; i += 16)
            if (refused(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i)))) return false;
        return !refused(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + n - 16)));
    }
#endif
    return all_of_class(v, host_char);
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
    // A head ends at the first LF that closes "\r\n\r\n". LFs are found 16 bytes at a time
    // (SSE2: a compare and a mask), then the three bytes before each are checked; the tail, or
    // everything on a machine without SSE2, one byte at a time.
    const char* const begin = bytes.data();
    const std::size_t size = bytes.size();
    const auto closes_head = [begin](std::size_t lf) {
        return lf >= 3 && begin[lf - 1] == '\r' && begin[lf - 2] == '\n' && begin[lf - 3] == '\r';
    };
    std::size_t i = 0;
#if defined(__SSE2__)
    const __m128i newline = _mm_set1_epi8('\n');
    for (; i + 16 <= size; i += 16) {
        const __m128i chunk = _mm_loadu_si128(reinterpret_cast<const __m128i*>(begin + i));
        for (auto mask = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(chunk, newline))); mask != 0;
             mask &= mask - 1) {
            const std::size_t lf = i + static_cast<std::size_t>(__builtin_ctz(mask));
            if (closes_head(lf)) return lf + 1;
        }
    }
#endif
    for (; i < size; ++i)
        if (begin[i] == '\n' && closes_head(i)) return i + 1;
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

fields_result parse_fields(const char*& p, const char* const end, std::array<header, max_headers>& out,
                           std::size_t& count) noexcept {
    // One pass, one table lookup per byte (16 at a time for values): a name runs over tchars up
    // to its colon, a value over value bytes up to its CR, and a CR must be followed by LF. What
    // the scans stop at (a bare CR or LF, a control byte, whitespace before the colon) is
    // refused by the check after them; running into `end` is incomplete.
    using enum fields_result;
    count = 0;
    for (;;) {
        if (p == end) return incomplete;
        if (*p == '\r') {  // the blank line: the end of the head
            if (end - p < 2) return incomplete;
            if (p[1] != '\n') return bad_syntax;
            p += 2;
            return ok;
        }
        // obs-fold (a line starting with SP/HTAB) is rejected, as RFC 9112 §5.2 allows a server;
        // so is "Host : x" (whitespace is no tchar, and §5.1 requires a 400).
        const char* const name = p;
        while (p < end && is_token_byte(*p)) ++p;
        if (p == end) return incomplete;
        if (p == name || *p != ':') return bad_syntax;
        const std::string_view field_name{name, static_cast<std::size_t>(p - name)};
        ++p;
        while (p < end && is_ows(*p)) ++p;
        const char* const value = p;
        p = skip_value_bytes(p, end);
        if (p == end) return incomplete;
        if (*p != '\r') return bad_syntax;
        if (end - p < 2) return incomplete;
        if (p[1] != '\n') return bad_syntax;
        const char* value_end = p;
        while (value_end > value && is_ows(value_end[-1])) --value_end;
        p += 2;
        if (count == max_headers) return too_many;
        out[count++] = header{field_name, {value, static_cast<std::size_t>(value_end - value)}};
    }
}

fields_result parse_fields(std::string_view rest, std::array<header, max_headers>& out, std::size_t& count) noexcept {
    const char* p = rest.data();
    const char* const end = p + rest.size();
    const fields_result r = parse_fields(p, end, out, count);
    if (r == fields_result::incomplete || (r == fields_result::ok && p != end)) return fields_result::bad_syntax;
    return r;
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
            if (name_is(h.name, "host")) {
                ++f.host_lines;
                if (!host_bytes_valid(h.value)) f.host_valid = false;
            }
            break;
        case 6:
            if (name_is(h.name, "expect")) {
                for_each_element(h.value, [&](std::string_view e) {
                    (equals_ignore_case(e, "100-continue") ? f.expect_continue : f.expect_other) = true;
                });
            }
            break;
        case 7:
            if (name_is(h.name, "upgrade")) {
                for_each_element(h.value, [&](std::string_view e) {
                    if (equals_ignore_case(e, "websocket")) f.upgrade_websocket = true;
                });
            }
            break;
        case 10:
            if (name_is(h.name, "connection")) {
                for_each_element(h.value, [&](std::string_view e) {
                    if (equals_ignore_case(e, "close")) f.connection_close = true;
                    else if (equals_ignore_case(e, "keep-alive")) f.connection_keep_alive = true;
                    else if (equals_ignore_case(e, "upgrade")) f.connection_upgrade = true;
                });
            }
            break;
        case 14:
            if (name_is(h.name, "content-length")) {
                ++f.content_length_lines;
                if (!parse_decimal(h.value, f.content_length)) f.content_length_valid = false;
            }
            break;
        case 17:
            if (name_is(h.name, "transfer-encoding")) {
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
