// fuzz-sources: net/pubsub/envelope.cpp
// libFuzzer target: the bus envelope (coring-pubsub --bus). Any message from Redis unwraps
// without reading past its end; what unwraps with a node gives back, wrapped again, the very
// message; and every (node, payload) survives the round trip.
//
// Built and run by ./dev fuzz, or by hand (from the repository root):
//   clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -Inet tests/fuzz/fuzz_envelope.cpp \
//       net/pubsub/envelope.cpp -o fuzz_envelope && ./fuzz_envelope -max_total_time=60 corpus tests/fuzz/corpus/envelope
#include "fuzz_check.hpp"

#include <coring/pubsub/envelope.hpp>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view message{reinterpret_cast<const char*>(data), size};
    const auto got = coring::pubsub::unwrap_envelope(message);
    FUZZ_CHECK(got.payload.data() >= message.data() && got.payload.data() + got.payload.size() == message.data() + size);
    if (got.node) FUZZ_CHECK(coring::pubsub::wrap_envelope(*got.node, got.payload) == message);
    else FUZZ_CHECK(got.payload == message);

    std::uint64_t node = 0;
    std::memcpy(&node, data, size < sizeof node ? size : sizeof node);
    const std::string wrapped = coring::pubsub::wrap_envelope(node, message);
    const auto back = coring::pubsub::unwrap_envelope(wrapped);
    FUZZ_CHECK(back.node == node);
    FUZZ_CHECK(back.payload == message);
    return 0;
}
