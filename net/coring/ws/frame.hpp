#pragma once
// WebSocket frames (RFC 6455 section 5): the pure codec, no I/O. Everything here works on bytes
// the caller holds, so it is unit-tested and fuzzed alone and then driven by ws::websocket.
//
// Strict by default. A frame head is refused (with the close code to send) when:
// - an RSV bit is set: no extension is ever negotiated here, so none may be used (1002);
// - the opcode is reserved (3-7, 11-15) (1002);
// - a control frame (close, ping, pong) is fragmented or carries more than 125 bytes (1002);
// - the mask bit is wrong for the side: a server takes only masked frames, a client only
//   unmasked ones (1002);
// - a length is not in its minimal form (126 for < 126 bytes, 127 for < 65536 bytes) or the
//   64-bit length has its top bit set. Section 5.2 says the minimal form MUST be used, and a
//   length no sender writes is cheaper to refuse than to reason about (1002).
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <system_error>

namespace coring::ws {

enum class opcode : std::uint8_t {
    continuation = 0x0,
    text = 0x1,
    binary = 0x2,
    close = 0x8,
    ping = 0x9,
    pong = 0xA,
};

constexpr bool is_control(opcode op) noexcept { return (static_cast<std::uint8_t>(op) & 0x8) != 0; }

// Which end of the connection this is: it decides the masking rule both ways.
enum class role { server, client };

// Close status codes (section 7.4). An error_code of the websocket category carries one: what
// receive() reports once the connection is closed, by the peer or by this side.
enum class close_code : std::uint16_t {
    normal = 1000,
    going_away = 1001,
    protocol_error = 1002,
    unsupported_data = 1003,
    no_status = 1005,  // never sent: an empty close payload reads as this
    abnormal = 1006,   // never sent: the TCP connection ended without a close frame
    invalid_payload = 1007,
    policy_violation = 1008,
    message_too_big = 1009,
    mandatory_extension = 1010,
    internal_error = 1011,
};

const std::error_category& websocket_category() noexcept;
inline std::error_code make_error_code(close_code c) noexcept {
    return {static_cast<int>(c), websocket_category()};
}

// A frame head is at most 2 + 8 (length) + 4 (mask key) bytes.
constexpr std::size_t max_head_size = 14;
// Control frames carry at most this much (section 5.5).
constexpr std::size_t max_control_payload = 125;

using mask_key = std::array<std::byte, 4>;

struct frame_head {
    bool fin = false;
    opcode op = opcode::continuation;
    bool masked = false;
    mask_key key{};
    std::uint64_t payload_size = 0;
    std::size_t head_size = 0;  // bytes of the head itself: the payload starts there
};

enum class parse_status { complete, need_more, failed };

struct head_parse {
    parse_status status = parse_status::need_more;
    frame_head head;                         // when complete
    std::size_t missing = 0;                 // when need_more: at least this many more bytes
    close_code error = close_code::normal;   // when failed: the code to close with
    std::string_view why;                    // when failed: for logs and the close reason
};

// Reads a frame head from the start of `in`, as received by `receiver`. Input may end at any
// byte: then need_more says how many more bytes the head needs at least (it knows exactly once
// the first two bytes are in). Nothing is consumed; a complete head is head.head_size bytes.
head_parse parse_head(std::span<const std::byte> in, role receiver) noexcept;

// Writes a frame head into out and returns its size. A client masks every frame (`key` set,
// and the payload must then be masked with it); a server never does.
std::size_t write_head(std::span<std::byte, max_head_size> out, bool fin, opcode op, std::uint64_t payload_size,
                       const mask_key* key = nullptr) noexcept;

// XORs data with the key, in place, as if data started `offset` bytes into the payload (so a
// payload that arrives in pieces is unmasked piece by piece). Masking and unmasking are the same.
void apply_mask(std::span<std::byte> data, const mask_key& key, std::uint64_t offset = 0) noexcept;

// A fresh key for a client frame, from a per-thread PRNG seeded by getrandom: masking defends
// proxies against cache poisoning (section 10.3), it is not secrecy, so a fast generator will do.
mask_key random_mask_key() noexcept;

// Fragmentation rules (section 5.4): a continuation needs a message in progress, and a new text
// or binary frame must not start while one is. Control frames may come in between.
class fragment_tracker {
public:
    // False when `h` breaks the rules (close with 1002). Otherwise the message's opcode: text or
    // binary for data frames (a continuation's is the message's), h.op for control frames.
    bool accept(const frame_head& h, opcode& message_op) noexcept;
    bool in_message() const noexcept { return in_message_; }

private:
    bool in_message_ = false;
    opcode message_op_ = opcode::binary;
};

// Incremental UTF-8 validation (RFC 3629): state carries across fragments and reads, so a code
// point may be split anywhere. Refuses overlong forms, surrogates (U+D800-DFFF) and anything
// above U+10FFFF as soon as the offending byte arrives. Once failed, stays failed until reset.
class utf8_validator {
public:
    // False as soon as the bytes so far cannot begin valid UTF-8.
    bool feed(std::span<const std::byte> bytes) noexcept;
    bool feed(std::string_view s) noexcept { return feed(std::as_bytes(std::span{s.data(), s.size()})); }
    // True when everything fed is valid and no code point is cut off: a whole message.
    bool complete() const noexcept { return !failed_ && pending_ == 0; }
    bool failed() const noexcept { return failed_; }
    void reset() noexcept { *this = utf8_validator{}; }

private:
    std::uint8_t pending_ = 0;  // continuation bytes still owed by the current code point
    std::uint8_t low_ = 0x80;   // the next continuation byte's range: narrower right after a
    std::uint8_t high_ = 0xBF;  // lead byte that could start an overlong or a surrogate
    bool failed_ = false;
};

bool is_valid_utf8(std::string_view s) noexcept;

// Close frame payloads (section 5.5.1): empty, or a 2-byte code then a UTF-8 reason.
struct close_parse {
    bool ok = false;
    close_code code = close_code::no_status;  // no_status for an empty payload
    std::string_view reason;                  // points into the payload
    close_code error = close_code::protocol_error;  // when !ok: 1002, or 1007 for a bad reason
};
close_parse parse_close(std::span<const std::byte> payload) noexcept;

// Whether a code may travel in a close frame: 1000-1003, 1007-1014 and 3000-4999 (registered or
// private use). Below 1000, 1004-1006, 1015 and the rest of 1016-2999 are refused.
bool is_sendable(close_code c) noexcept;

// Writes a close payload and returns its size: the code, then as much of reason as fits in 123
// bytes, cut at a code point boundary. no_status writes an empty payload.
std::size_t write_close(std::span<std::byte, max_control_payload> out, close_code code, std::string_view reason) noexcept;

}  // namespace coring::ws

template <>
struct std::is_error_code_enum<coring::ws::close_code> : std::true_type {};
