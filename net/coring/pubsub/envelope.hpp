#pragma once
// The envelope around a payload on the bus (bus.hpp): a marker, the publishing node as 16 hex
// digits, the payload. A node drops what comes back with its own name; a message without an
// envelope (published into Redis by anyone else) is delivered as it is. Pure: no I/O.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace coring::pubsub {

std::string wrap_envelope(std::uint64_t node, std::string_view payload);

struct envelope {
    std::optional<std::uint64_t> node;  // none: not from a coring node
    std::string_view payload;           // inside `message`
};
envelope unwrap_envelope(std::string_view message) noexcept;

}  // namespace coring::pubsub
