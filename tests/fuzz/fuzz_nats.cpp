// fuzz-sources: apps/coring-load/nats.cpp
// libFuzzer target: coring-load's NATS frame parser over arbitrary bytes, read as a stream the
// way the workload reads it (frames taken from the front until one is incomplete or bad).
// Invariants checked (a broken one aborts, which libFuzzer reports as a crash):
// - a complete frame takes at least one byte and no more than there are, and a MSG's payload
//   lies inside them, is at most max_payload long and is followed by CRLF;
// - a frame parsed from exactly its own bytes gives the same verdict, and any shorter prefix of
//   them is incomplete: a prefix never completes early or fails where the whole succeeds;
// - what a peer sends without a CRLF is bounded: past max_line it is an error, not a wait.
//
// Built and run by ./dev fuzz (or by hand from the repository root):
//   clang++-14 -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined tests/fuzz/fuzz_nats.cpp \
//       apps/coring-load/nats.cpp -o fuzz_nats && ./fuzz_nats -max_total_time=60 corpus tests/fuzz/corpus/nats
#include "../../apps/coring-load/nats.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

using namespace coring::load;

namespace {

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "invariant broken: %s\n", what);
        std::abort();
    }
}

constexpr std::size_t max_payload = 256;
constexpr std::size_t max_line = 128;

bool inside(std::string_view part, std::string_view whole) {
    return part.empty() || (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view rest{reinterpret_cast<const char*>(data), size};
    for (int frames = 0; frames < 10'000; ++frames) {  // each pass takes at least one byte
        nats_frame f;
        const auto got = parse_nats(rest, f, max_payload, max_line);
        if (got.st == nats_parsed::status::incomplete) {
            require(rest.find("\r\n") != std::string_view::npos || rest.size() <= max_line + 1, "an unbounded wait for a line");
            break;
        }
        if (got.st == nats_parsed::status::error) {
            require(got.error != nullptr && *got.error != '\0', "an error without a reason");
            break;
        }
        require(got.consumed > 0 && got.consumed <= rest.size(), "consumed out of range");
        const std::string_view whole = rest.substr(0, got.consumed);
        if (f.type == nats_frame::kind::msg) {
            require(f.payload.size() <= max_payload, "a payload over the limit");
            require(inside(f.payload, whole) && inside(f.subject, whole) && inside(f.sid, whole), "a view outside the frame");
            require(whole.substr(whole.size() - 2) == "\r\n", "a MSG not ending in CRLF");
            require(!f.subject.empty() && !f.sid.empty(), "a MSG without subject or sid");
        }
        nats_frame again;
        const auto exact = parse_nats(whole, again, max_payload, max_line);
        require(exact.st == nats_parsed::status::complete && exact.consumed == got.consumed && again.type == f.type,
                "its own bytes parse differently");
        for (std::size_t cut : {std::size_t{0}, got.consumed / 2, got.consumed - 1}) {
            nats_frame part;
            require(parse_nats(whole.substr(0, cut), part, max_payload, max_line).st == nats_parsed::status::incomplete,
                    "a prefix that is not incomplete");
        }
        rest.remove_prefix(got.consumed);
    }
    return 0;
}
