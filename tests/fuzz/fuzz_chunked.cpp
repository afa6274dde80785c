// fuzz-sources: net/http/chunked.cpp
// The chunked decoder on arbitrary bytes, split at points the fuzzer chooses. Decoding the
// same bytes whole and split must give the same data, the same end and the same error at the
// same byte; every step's data lies inside the bytes it was given. Then the encoder's output
// for the same bytes must decode back to them.
//
// Input: byte 0 picks the body limit, bytes 1-2 seed the piece sizes, the rest is the body.
#include <coring/http/chunked.hpp>

#include "fuzz_check.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace http = coring::http;

namespace {

struct outcome {
    std::string data;
    std::size_t consumed = 0;
    bool done = false;
    int error = 0;
};

// Decodes `body` in pieces of the sizes `next_piece` gives (at least 1 byte each), offering
// again what a call left unconsumed, as a reader does. Every call after all offered bytes
// were taken gets an empty span, so empty calls are exercised too.
template <class NextPiece>
outcome decode(std::string_view body, std::uint64_t limit, NextPiece next_piece) {
    http::chunked_decoder d{limit};
    outcome out;
    std::size_t available = 0;  // bytes "arrived" so far
    // Bounded: every round consumes a byte, or brings at least one more in, or ends.
    for (std::size_t rounds = 0; rounds < 2 * body.size() + 4; ++rounds) {
        const std::string_view piece = body.substr(out.consumed, available - out.consumed);
        const auto in = std::span{reinterpret_cast<const std::byte*>(piece.data()), piece.size()};
        const auto s = d.next(in);
        FUZZ_CHECK(s.consumed <= piece.size());
        if (!s.data.empty()) {
            FUZZ_CHECK(s.data.data() >= in.data() && s.data.data() + s.data.size() == in.data() + s.consumed);
        }
        out.data.append(reinterpret_cast<const char*>(s.data.data()), s.data.size());
        out.consumed += s.consumed;
        FUZZ_CHECK(!(s.done && s.error != 0));
        if (s.done || s.error != 0) {
            out.done = s.done;
            out.error = s.error;
            FUZZ_CHECK(s.error == 0 || s.error == 400 || s.error == 413 || s.error == 431);
            FUZZ_CHECK(d.body_bytes() <= limit);
            if (s.done) FUZZ_CHECK(d.body_bytes() == out.data.size());
            return out;
        }
        if (s.consumed == 0 && s.data.empty()) {
            if (available == body.size()) return out;  // all in, the body is not over yet
            available = std::min(body.size(), available + std::max<std::size_t>(1, next_piece()));
        }
    }
    FUZZ_CHECK(false);  // the decoder stopped making progress
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 3) return 0;
    constexpr std::array<std::uint64_t, 8> limits = {0, 1, 10, 100, 4096, 1 << 20, UINT64_MAX - 1, UINT64_MAX};
    const std::uint64_t limit = limits[data[0] % limits.size()];
    std::uint32_t seed = (std::uint32_t{data[1]} << 8 | data[2]) * 2654435761u + 1;
    const auto random_piece = [&seed] {
        seed = seed * 1103515245u + 12345u;
        return static_cast<std::size_t>((seed >> 16) % 32);
    };
    const std::string_view body{reinterpret_cast<const char*>(data + 3), size - 3};

    const outcome whole = decode(body, limit, [&] { return body.size(); });
    const outcome split = decode(body, limit, random_piece);
    const outcome bytewise = decode(body, limit, [] { return std::size_t{1}; });
    for (const outcome* o : {&split, &bytewise}) {
        FUZZ_CHECK(o->data == whole.data);
        FUZZ_CHECK(o->done == whole.done);
        FUZZ_CHECK(o->error == whole.error);
        // Where it ended (or failed) is the same byte, however the bytes arrived.
        if (whole.done || whole.error != 0) FUZZ_CHECK(o->consumed == whole.consumed);
    }

    // The encoder's side: the body's bytes as chunks of the same random sizes, then the last
    // chunk, decode back to exactly those bytes.
    std::string encoded;
    for (std::size_t at = 0; at < body.size();) {
        const std::size_t n = std::min(body.size() - at, random_piece() + 1);
        http::append_chunk(encoded, body.substr(at, n));
        at += n;
    }
    encoded += http::last_chunk;
    const outcome round_trip = decode(encoded, UINT64_MAX, random_piece);
    FUZZ_CHECK(round_trip.done && round_trip.data == body && round_trip.consumed == encoded.size());
    return 0;
}
