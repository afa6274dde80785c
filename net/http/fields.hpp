#pragma once
// What the request and response parsers share: line splitting, field-line syntax, and what
// the fields that frame a message (Content-Length, Transfer-Encoding, Connection, Host,
// Upgrade, Expect) say. Private to net/http: the rules are documented in request.hpp.
#include <coring/http/header.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace coring::http::detail {

// A hex digit's value, or -1 (chunk sizes, %-escapes).
inline int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// What a field value may hold (field-vchar, SP, HTAB, obs-text: RFC 9110 §5.5); also what a
// reason phrase, a chunk extension and a trailer line may hold.
constexpr bool is_value_byte(char c) noexcept {
    return c == '\t' || (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f);
}

// One table lookup per byte instead of a chain of comparisons: the parsers run per request.
enum char_class : std::uint8_t {
    token_char = 1,   // tchar (RFC 9110 §5.6.2): a method, a field name, a list token
    value_char = 2,   // is_value_byte
    host_char = 4,    // what an authority's host and port are made of (RFC 3986 §3.2)
    target_char = 8,  // a request-target's: visible ASCII but '#' (RFC 3986 has no raw spaces,
                      // controls or bytes >= 0x80, and a fragment is never sent: RFC 9112 §3.2)
};

constexpr std::array<std::uint8_t, 256> make_char_classes() {
    const auto in = [](std::string_view set, int c) { return set.find(static_cast<char>(c)) != std::string_view::npos; };
    std::array<std::uint8_t, 256> t{};
    for (int c = 0; c < 256; ++c) {
        const bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        std::uint8_t k = 0;
        if (alnum || in("!#$%&'*+-.^_`|~", c)) k |= token_char;
        if (is_value_byte(static_cast<char>(c))) k |= value_char;
        if (alnum || in("-._~%!$&'()*+,;=:[]", c)) k |= host_char;
        if (c > 0x20 && c < 0x7f && c != '#') k |= target_char;
        t[static_cast<std::size_t>(c)] = k;
    }
    return t;
}
inline constexpr auto char_classes = make_char_classes();

constexpr bool is_class(char c, std::uint8_t k) noexcept {
    return (char_classes[static_cast<unsigned char>(c)] & k) != 0;
}
constexpr bool is_token_byte(char c) noexcept { return is_class(c, token_char); }

// The first byte in [p, end) that a field value may not hold (on a well-formed line, its CR), or
// end. With SSE2, 16 bytes per step while 16 remain: a byte is refused when it is a control
// other than HTAB (0x00-0x1f: signed 0 <= b < 0x20) or DEL; bytes >= 0x80 (obs-text) pass.
inline const char* skip_value_bytes(const char* p, const char* end) noexcept {
#if defined(__SSE2__)
    const __m128i space = _mm_set1_epi8(0x20), minus_one = _mm_set1_epi8(-1);
    const __m128i tab = _mm_set1_epi8('\t'), del = _mm_set1_epi8(0x7f);
    for (; end - p >= 16; p += 16) {
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        const __m128i control = _mm_andnot_si128(_mm_cmpeq_epi8(b, tab),
                                                 _mm_and_si128(_mm_cmplt_epi8(b, space), _mm_cmpgt_epi8(b, minus_one)));
        const int refused = _mm_movemask_epi8(_mm_or_si128(control, _mm_cmpeq_epi8(b, del)));
        if (refused != 0) return p + __builtin_ctz(static_cast<unsigned>(refused));
    }
#endif
    while (p < end && is_class(*p, value_char)) ++p;
    return p;
}

// The first byte in [p, end) that a request-target may not hold (on a well-formed line, the SP
// after it), or end; `query` is set to the first '?' before it (left alone when there is none).
// With SSE2, 16 bytes per step while 16 remain: refused are bytes below 0x21 or above 0x7e
// (signed: < 0x21, which takes in the negative ones) and '#'.
inline const char* skip_target_bytes(const char* p, const char* end, const char*& query) noexcept {
#if defined(__SSE2__)
    const __m128i bang = _mm_set1_epi8(0x21), del = _mm_set1_epi8(0x7f), hash = _mm_set1_epi8('#');
    const __m128i question = _mm_set1_epi8('?');
    for (; end - p >= 16; p += 16) {
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        const __m128i refused_bytes =
            _mm_or_si128(_mm_cmplt_epi8(b, bang), _mm_or_si128(_mm_cmpeq_epi8(b, del), _mm_cmpeq_epi8(b, hash)));
        const auto refused = static_cast<unsigned>(_mm_movemask_epi8(refused_bytes));
        // The '?'s before the first refused byte (all 16 when there is none).
        const unsigned before = refused != 0 ? (refused & -refused) - 1 : 0xffffu;
        const auto marks = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(b, question))) & before;
        if (marks != 0 && !query) query = p + __builtin_ctz(marks);
        if (refused != 0) return p + __builtin_ctz(refused);
    }
#endif
    for (; p < end && is_class(*p, target_char); ++p)
        if (*p == '?' && !query) query = p;
    return p;
}
bool is_token(std::string_view s) noexcept;  // one or more tchars

// Takes the next CRLF-terminated line off the front of `rest` (without the CRLF). False when
// there is none or a LF comes without its CR (a bare CR inside the line is left to the caller's
// byte checks, which all reject control bytes).
bool next_line(std::string_view& rest, std::string_view& line) noexcept;

enum class fields_result : std::uint8_t { ok, bad_syntax, too_many, incomplete };

// Parses the field lines from `p` through the blank line's CRLF into `out` (at most
// max_headers of them) and moves `p` past that CRLF. `end` may cut the section short:
// incomplete then means nothing wrong was seen before it (the rest may still come).
fields_result parse_fields(const char*& p, const char* end, std::array<header, max_headers>& out,
                           std::size_t& count) noexcept;
// The same over a whole section: `rest` ends with the blank line (else bad_syntax).
fields_result parse_fields(std::string_view rest, std::array<header, max_headers>& out, std::size_t& count) noexcept;

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
