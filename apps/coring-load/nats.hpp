#pragma once
// NATS's client protocol (https://docs.nats.io/reference/reference-protocols/nats-protocol), as
// coring-load's nats workload reads it from the server: pure, no I/O, fuzzed on its own
// (tests/fuzz/fuzz_nats.cpp).
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace coring::load {

// One frame of NATS's client protocol from the server, parsed from the start of `input` with
// no I/O (pure, fuzzed). `complete` says how many bytes it took; `incomplete` that more must
// arrive; `error` that the bytes are not NATS (or a control line passes max_line, or a payload
// max_payload: the bounds on what a peer can make us hold).
struct nats_frame {
    enum class kind : std::uint8_t { msg, ping, pong, ok, err, info } type = kind::ok;
    std::string_view subject, sid, reply_to, payload;  // msg
    std::string_view text;                             // err and info: the rest of the line
};
struct nats_parsed {
    enum class status : std::uint8_t { complete, incomplete, error } st = status::incomplete;
    std::size_t consumed = 0;
    const char* error = "";
};
nats_parsed parse_nats(std::string_view input, nats_frame& out, std::size_t max_payload,
                       std::size_t max_line = 64 * 1024);

}  // namespace coring::load
