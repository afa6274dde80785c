// fuzz-sources: net/ws/frame.cpp
// libFuzzer target: the WebSocket frame codec and the UTF-8 validator over arbitrary bytes.
//
// The first two bytes pick the receiving side and the read sizes; the rest is the stream.
// It is read as a receiver would: heads parsed from whatever has arrived, payloads unmasked in
// pieces, text validated across fragments, close payloads parsed. Invariants checked (a broken
// one aborts, which libFuzzer reports as a crash):
// - a head parsed from a prefix never completes early, and "need more" names bytes that exist
//   in a longer input only: a prefix's verdict never contradicts the whole's;
// - a complete head written back by write_head is the same bytes;
// - masking piece by piece (at the right offsets) equals masking at once, and twice is nothing;
// - the incremental validator agrees with a plain decoder, wherever the text is cut;
// - a close payload that parses is written back to the same code and reason.
//
// Built and run by hand until ./dev fuzz covers it (from the repository root):
//   clang++-14 -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -Inet tests/fuzz/fuzz_ws_frame.cpp \
//       net/ws/frame.cpp -o fuzz_ws_frame && ./fuzz_ws_frame -max_total_time=60 corpus tests/fuzz/corpus/ws_frame
#include <coring/ws/frame.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

using namespace coring::ws;

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "invariant broken: %s\n", what);
        std::abort();
    }
}

// A decoder written the plain way: decode each code point, then judge it.
bool reference_utf8(const std::byte* p, std::size_t n) {
    std::size_t i = 0;
    while (i < n) {
        const auto b = std::to_integer<std::uint32_t>(p[i]);
        std::size_t len;
        std::uint32_t cp;
        if (b < 0x80) { len = 1; cp = b; }
        else if ((b & 0xE0) == 0xC0) { len = 2; cp = b & 0x1F; }
        else if ((b & 0xF0) == 0xE0) { len = 3; cp = b & 0x0F; }
        else if ((b & 0xF8) == 0xF0) { len = 4; cp = b & 0x07; }
        else return false;
        if (i + len > n) return false;
        for (std::size_t k = 1; k < len; ++k) {
            const auto c = std::to_integer<std::uint32_t>(p[i + k]);
            if ((c & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (c & 0x3F);
        }
        const std::uint32_t min_for_len[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_for_len[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}

void check_utf8(const std::byte* p, std::size_t n, std::size_t cut) {
    const bool expected = reference_utf8(p, n);
    utf8_validator v;
    cut = n ? cut % (n + 1) : 0;
    const bool a = v.feed(std::span{p, cut});
    const bool b = v.feed(std::span{p + cut, n - cut});
    require((a && b && v.complete()) == expected, "validator disagrees with the reference decoder");
}

void check_head(std::span<const std::byte> in, role side) {
    const head_parse whole = parse_head(in, side);
    for (std::size_t cut = 0; cut < std::min<std::size_t>(in.size(), max_head_size); ++cut) {
        const head_parse part = parse_head(in.first(cut), side);
        if (part.status == parse_status::failed)
            require(whole.status == parse_status::failed, "a prefix failed, the whole did not");
        if (whole.status == parse_status::complete) {
            if (cut < whole.head.head_size) {
                require(part.status == parse_status::need_more, "head complete before its last byte");
                require(part.missing >= 1 && cut + part.missing <= whole.head.head_size, "missing past the head");
            }
        }
    }
    if (whole.status != parse_status::complete) return;
    const frame_head& h = whole.head;
    require(h.head_size <= max_head_size && h.head_size <= in.size(), "head size out of range");
    require(!is_control(h.op) || (h.fin && h.payload_size <= max_control_payload), "bad control frame accepted");
    require(h.masked == (side == role::server), "mask rule broken");
    std::array<std::byte, max_head_size> out;
    const std::size_t n = write_head(out, h.fin, h.op, h.payload_size, h.masked ? &h.key : nullptr);
    require(n == h.head_size && std::memcmp(out.data(), in.data(), n) == 0, "head does not round-trip");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    const role side = (data[0] & 1) ? role::server : role::client;
    const std::size_t read_size = 1 + data[1] % 32;  // bytes per simulated read
    const auto* p = reinterpret_cast<const std::byte*>(data + 2);
    const std::size_t n = size - 2;

    check_utf8(p, n, data[1]);
    check_head({p, n}, side);

    // The receive loop: bytes arrive read_size at a time into `pending`.
    std::vector<std::byte> pending;
    std::size_t fed = 0;
    fragment_tracker fragments;
    utf8_validator text;
    std::vector<std::byte> payload;
    while (true) {
        const head_parse h = parse_head(pending, side);
        if (h.status == parse_status::failed) return 0;
        if (h.status == parse_status::need_more) {
            if (fed == n) return 0;
            const std::size_t take = std::min(read_size, n - fed);
            pending.insert(pending.end(), p + fed, p + fed + take);
            fed += take;
            continue;
        }
        opcode op;
        if (!fragments.accept(h.head, op)) return 0;
        pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(h.head.head_size));
        // The payload, in pieces as it arrives, unmasked at its offset; at most what the input holds.
        payload.clear();
        std::uint64_t left = h.head.payload_size;
        while (left > 0) {
            if (pending.empty()) {
                if (fed == n) return 0;
                const std::size_t take = std::min(read_size, n - fed);
                pending.insert(pending.end(), p + fed, p + fed + take);
                fed += take;
            }
            const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(left, pending.size()));
            const std::size_t at = payload.size();
            payload.insert(payload.end(), pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(take));
            pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(take));
            if (h.head.masked) apply_mask(std::span{payload}.subspan(at), h.head.key, at);
            if (op == opcode::text && !is_control(h.head.op)) text.feed(std::span{payload}.subspan(at));
            left -= take;
        }
        if (h.head.masked) {  // masked at once, then twice: the same as piece by piece, then the wire
            std::vector<std::byte> again = payload;
            apply_mask(again, h.head.key);
            apply_mask(again, h.head.key);
            require(again == payload, "masking twice is not the identity");
        }
        if (h.head.op == opcode::close) {
            const close_parse c = parse_close(payload);
            if (c.ok && c.code != close_code::no_status) {
                require(is_sendable(c.code), "a refused code parsed");
                std::array<std::byte, max_control_payload> out;
                const std::size_t w = write_close(out, c.code, c.reason);
                const close_parse back = parse_close(std::span{out}.first(w));
                require(back.ok && back.code == c.code && back.reason == c.reason, "close does not round-trip");
            }
            return 0;
        }
        if (!is_control(h.head.op) && h.head.fin) text.reset();
    }
}
