#include <coring/ws/frame.hpp>

#include <bit>
#include <cstring>
#include <string>
#include <sys/random.h>

namespace coring::ws {

namespace {

class category final : public std::error_category {
public:
    const char* name() const noexcept override { return "websocket"; }
    std::string message(int code) const override {
        switch (static_cast<close_code>(code)) {
        case close_code::normal: return "websocket closed normally";
        case close_code::going_away: return "websocket peer going away";
        case close_code::protocol_error: return "websocket protocol error";
        case close_code::unsupported_data: return "websocket data type not accepted";
        case close_code::no_status: return "websocket closed without a status code";
        case close_code::abnormal: return "websocket connection ended without a close frame";
        case close_code::invalid_payload: return "websocket text is not valid UTF-8";
        case close_code::policy_violation: return "websocket policy violation";
        case close_code::message_too_big: return "websocket message too big";
        case close_code::mandatory_extension: return "websocket extension required";
        case close_code::internal_error: return "websocket internal error";
        }
        return "websocket closed with code " + std::to_string(code);
    }
};

head_parse fail(std::string_view why) noexcept {
    head_parse r;
    r.status = parse_status::failed;
    r.error = close_code::protocol_error;
    r.why = why;
    return r;
}

std::uint64_t read_big_endian(const std::byte* p, std::size_t n) noexcept {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v = (v << 8) | std::to_integer<std::uint64_t>(p[i]);
    return v;
}

}  // namespace

const std::error_category& websocket_category() noexcept {
    static const category instance;
    return instance;
}

head_parse parse_head(std::span<const std::byte> in, role receiver) noexcept {
    head_parse r;
    if (in.size() < 2) {
        r.missing = 2 - in.size();
        return r;
    }
    const auto b0 = std::to_integer<std::uint8_t>(in[0]);
    const auto b1 = std::to_integer<std::uint8_t>(in[1]);
    // Checked before the rest of the head arrives: a bad first byte fails at once, and the
    // checks cannot depend on bytes not yet seen.
    if (b0 & 0x70) return fail("RSV bit set without an extension");
    const auto op = static_cast<opcode>(b0 & 0x0F);
    switch (op) {
    case opcode::continuation: case opcode::text: case opcode::binary:
    case opcode::close: case opcode::ping: case opcode::pong: break;
    default: return fail("reserved opcode");
    }
    const bool fin = (b0 & 0x80) != 0;
    const bool masked = (b1 & 0x80) != 0;
    const std::uint8_t len7 = b1 & 0x7F;
    if (is_control(op) && !fin) return fail("fragmented control frame");
    if (is_control(op) && len7 > max_control_payload) return fail("control frame over 125 bytes");
    if (receiver == role::server && !masked) return fail("unmasked frame from a client");
    if (receiver == role::client && masked) return fail("masked frame from a server");

    const std::size_t length_bytes = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    const std::size_t head_size = 2 + length_bytes + (masked ? 4 : 0);
    if (in.size() < head_size) {
        r.missing = head_size - in.size();
        return r;
    }
    std::uint64_t size = len7;
    if (length_bytes) {
        size = read_big_endian(in.data() + 2, length_bytes);
        if (length_bytes == 2 && size < 126) return fail("length not in its minimal form");
        if (length_bytes == 8 && size <= 0xFFFF) return fail("length not in its minimal form");
        if (size >> 63) return fail("64-bit length with its top bit set");
    }
    r.status = parse_status::complete;
    r.head.fin = fin;
    r.head.op = op;
    r.head.masked = masked;
    if (masked) std::memcpy(r.head.key.data(), in.data() + 2 + length_bytes, 4);
    r.head.payload_size = size;
    r.head.head_size = head_size;
    return r;
}

std::size_t write_head(std::span<std::byte, max_head_size> out, bool fin, opcode op, std::uint64_t payload_size,
                       const mask_key* key) noexcept {
    out[0] = std::byte((fin ? 0x80 : 0) | static_cast<std::uint8_t>(op));
    const std::byte mask_bit{static_cast<unsigned char>(key ? 0x80 : 0)};
    std::size_t n = 2;
    if (payload_size < 126) {
        out[1] = mask_bit | std::byte(payload_size);
    } else {
        const std::size_t length_bytes = payload_size <= 0xFFFF ? 2 : 8;
        out[1] = mask_bit | std::byte(length_bytes == 2 ? 126 : 127);
        for (std::size_t i = 0; i < length_bytes; ++i)
            out[2 + i] = std::byte(payload_size >> (8 * (length_bytes - 1 - i)));
        n += length_bytes;
    }
    if (key) {
        std::memcpy(out.data() + n, key->data(), 4);
        n += 4;
    }
    return n;
}

void apply_mask(std::span<std::byte> data, const mask_key& key, std::uint64_t offset) noexcept {
    // The key as it lines up with data[0], repeated to 8 bytes: then each 8-byte word is one XOR
    // (memcpy keeps it legal for any alignment; compilers make it a plain load and store).
    std::array<std::byte, 8> wide;
    for (std::size_t i = 0; i < 8; ++i) wide[i] = key[(offset + i) % 4];
    std::uint64_t k;
    std::memcpy(&k, wide.data(), 8);
    std::size_t i = 0;
    for (; i + 8 <= data.size(); i += 8) {
        std::uint64_t w;
        std::memcpy(&w, data.data() + i, 8);
        w ^= k;
        std::memcpy(data.data() + i, &w, 8);
    }
    for (; i < data.size(); ++i) data[i] ^= wide[i % 8];
}

mask_key random_mask_key() noexcept {
    // xorshift64*, one per thread, seeded from the kernel's entropy once.
    thread_local std::uint64_t state = [] {
        std::uint64_t seed = 0;
        if (getrandom(&seed, sizeof seed, 0) != sizeof seed || seed == 0) seed = 0x9E3779B97F4A7C15ull;
        return seed;
    }();
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    const std::uint64_t v = state * 0x2545F4914F6CDD1Dull;
    mask_key key;
    for (std::size_t i = 0; i < 4; ++i) key[i] = std::byte(v >> (32 + 8 * i));  // the high half: the better bits
    return key;
}

bool fragment_tracker::accept(const frame_head& h, opcode& message_op) noexcept {
    if (is_control(h.op)) {
        message_op = h.op;
        return true;
    }
    if (h.op == opcode::continuation) {
        if (!in_message_) return false;
    } else {
        if (in_message_) return false;
        message_op_ = h.op;
    }
    in_message_ = !h.fin;
    message_op = message_op_;
    return true;
}

bool utf8_validator::feed(std::span<const std::byte> bytes) noexcept {
    if (failed_) return false;
    const std::byte* p = bytes.data();
    const std::byte* end = p + bytes.size();
    while (p < end) {
        if (pending_ == 0) {
            // ASCII runs, 8 bytes at a time: most text is mostly ASCII.
            while (end - p >= 8) {
                std::uint64_t w;
                std::memcpy(&w, p, 8);
                if (w & 0x8080808080808080ull) break;
                p += 8;
            }
            if (p == end) break;
            const auto b = std::to_integer<std::uint8_t>(*p++);
            if (b < 0x80) continue;
            low_ = 0x80;
            high_ = 0xBF;
            if (b >= 0xC2 && b <= 0xDF) {
                pending_ = 1;
            } else if (b >= 0xE0 && b <= 0xEF) {
                pending_ = 2;
                if (b == 0xE0) low_ = 0xA0;   // below: an overlong 3-byte form
                if (b == 0xED) high_ = 0x9F;  // above: a surrogate
            } else if (b >= 0xF0 && b <= 0xF4) {
                pending_ = 3;
                if (b == 0xF0) low_ = 0x90;   // below: an overlong 4-byte form
                if (b == 0xF4) high_ = 0x8F;  // above: past U+10FFFF
            } else {
                failed_ = true;  // a stray continuation, C0/C1 (overlong 2-byte) or F5-FF
                return false;
            }
        } else {
            const auto b = std::to_integer<std::uint8_t>(*p++);
            if (b < low_ || b > high_) {
                failed_ = true;
                return false;
            }
            low_ = 0x80;
            high_ = 0xBF;
            --pending_;
        }
    }
    return true;
}

bool is_valid_utf8(std::string_view s) noexcept {
    utf8_validator v;
    return v.feed(s) && v.complete();
}

bool is_sendable(close_code c) noexcept {
    const auto v = static_cast<std::uint16_t>(c);
    return (v >= 1000 && v <= 1003) || (v >= 1007 && v <= 1014) || (v >= 3000 && v <= 4999);
}

close_parse parse_close(std::span<const std::byte> payload) noexcept {
    close_parse r;
    if (payload.empty()) {
        r.ok = true;
        return r;
    }
    if (payload.size() == 1) return r;  // half a code
    const auto code = static_cast<close_code>(read_big_endian(payload.data(), 2));
    if (!is_sendable(code)) return r;
    const std::string_view reason{reinterpret_cast<const char*>(payload.data()) + 2, payload.size() - 2};
    if (!is_valid_utf8(reason)) {
        r.error = close_code::invalid_payload;
        return r;
    }
    r.ok = true;
    r.code = code;
    r.reason = reason;
    return r;
}

std::size_t write_close(std::span<std::byte, max_control_payload> out, close_code code, std::string_view reason) noexcept {
    if (code == close_code::no_status) return 0;
    const auto v = static_cast<std::uint16_t>(code);
    out[0] = std::byte(v >> 8);
    out[1] = std::byte(v & 0xFF);
    std::size_t n = std::min(reason.size(), max_control_payload - 2);
    // Back up over continuation bytes so the cut does not split a code point.
    if (n < reason.size())
        while (n > 0 && (static_cast<unsigned char>(reason[n]) & 0xC0) == 0x80) --n;
    if (n) std::memcpy(out.data() + 2, reason.data(), n);  // an empty view's data() may be null
    return 2 + n;
}

}  // namespace coring::ws
