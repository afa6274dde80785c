#pragma once
// The chunked transfer coding (RFC 9112 §7.1): an incremental decoder for request bodies, and
// the two pieces a response writer appends.
//
// chunked_decoder takes the body's bytes as they arrive, split anywhere (mid-size, mid-CRLF,
// mid-trailer), and hands back the data inside them without copying. It owns no buffer: its
// whole state is a few integers, so what a peer can make it hold is bounded by construction,
// and each thing it reads and drops has a stated bound:
//   - the body's total size: the caller's `max_body` (413 past it, checked before any overflow),
//   - a chunk-size line: at most 16 hex digits (leading zeros included), and its extensions at
//     most max_extension_bytes (they are skipped, never parsed into anything),
//   - the trailer section: at most max_trailer_bytes (431 past it); its fields are checked for
//     line syntax and then ignored, so a trailer can never smuggle a header in.
// Line ends are CRLF only; anything else is a 400.
#include <coring/http/request.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace coring::http {

class chunked_decoder {
public:
    static constexpr std::size_t max_extension_bytes = 1024;
    static constexpr std::size_t max_trailer_bytes = max_head_bytes;

    struct step {
        std::size_t consumed = 0;           // bytes of `in` used, data included
        std::span<const std::byte> data;    // body bytes inside `in`, ending where consumed does
        bool done = false;                  // the last chunk and its trailers were read
        int error = 0;                      // 400, 413 or 431: answer it and close
    };

    explicit chunked_decoder(std::uint64_t max_body) noexcept : max_body_{max_body} {}

    // Decodes from the start of `in` up to the end of the next piece of data, or to the end of
    // `in`, or to the end of the body. Call again with the bytes after `consumed` (and more as
    // they arrive) until done or error; after either it consumes nothing.
    step next(std::span<const std::byte> in) noexcept;

    std::uint64_t body_bytes() const noexcept { return body_bytes_; }

private:
    enum class state : std::uint8_t {
        size, extension_space, extension, size_lf,  // chunk-size [chunk-ext] CRLF
        data, data_cr, data_lf,                     // chunk-data CRLF
        trailer_start, trailer, trailer_lf,         // *( field-line CRLF )
        final_lf, done, failed,                     // CRLF
    };
    step fail(std::size_t consumed, int status) noexcept;

    std::uint64_t max_body_;
    std::uint64_t body_bytes_ = 0;
    std::uint64_t chunk_left_ = 0;  // the chunk size while reading it, then its bytes to come
    std::size_t line_bytes_ = 0;    // hex digits, then extension bytes, or trailer bytes so far
    int error_ = 0;                 // the status that failed the body, repeated after
    state state_ = state::size;
};

// Appends one chunk holding `data`; nothing for empty data (an empty chunk would end the body).
void append_chunk(std::string& out, std::span<const std::byte> data);
void append_chunk(std::string& out, std::string_view data);

// Ends a chunked body: the zero-size chunk and an empty trailer section.
inline constexpr std::string_view last_chunk = "0\r\n\r\n";

}  // namespace coring::http
