#pragma once
// What request and response heads share: a field line, the body framing a head announces, and
// the scan for where a head ends.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace coring::http {

// One field line, as views into the head: the name as sent (compare it case-insensitively),
// the value without the whitespace around it.
struct header {
    std::string_view name, value;
};

// Field lines a head may carry: one more is answered 431. 64 is what a browser behind a
// few proxies sends with room to spare, and keeps a parsed head at 2 KiB on the caller's stack.
inline constexpr std::size_t max_headers = 64;

enum class body_framing : std::uint8_t {
    none,         // no body: a request without Content-Length/Transfer-Encoding, a 204, ...
    length,       // Content-Length bytes
    chunked,      // Transfer-Encoding: chunked (chunked.hpp decodes it)
    until_close,  // responses only: the body ends when the server closes (RFC 9112 §6.3 item 8)
};

// ASCII case-insensitive equality, as field names and most field tokens compare.
bool equals_ignore_case(std::string_view a, std::string_view b) noexcept;

// The value of the first field named `name` (case-insensitive); empty when none.
std::string_view find_header(std::span<const header> headers, std::string_view name) noexcept;

// The length of the head at the start of `bytes` through its first "\r\n\r\n", or 0 when the
// bytes hold no complete head yet. A head with bare LF line ends never ends here: the reader
// answers it 431 at max_head_bytes (or the header timeout ends it first).
std::size_t find_head_end(std::string_view bytes) noexcept;

}  // namespace coring::http
