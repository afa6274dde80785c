#include <coring/pubsub/envelope.hpp>

#include <charconv>

namespace coring::pubsub {

namespace {
// A unit separator on each side: a payload from outside starts like this only on purpose.
constexpr std::string_view marker = "\x1f" "coring\x1f";
constexpr std::size_t node_digits = 16;
constexpr std::string_view hex = "0123456789abcdef";
}  // namespace

std::string wrap_envelope(std::uint64_t node, std::string_view payload) {
    std::string out;
    out.reserve(marker.size() + node_digits + payload.size());
    out += marker;
    for (std::size_t i = 0; i < node_digits; ++i) out += hex[(node >> (60 - 4 * i)) & 0xf];
    out += payload;
    return out;
}

envelope unwrap_envelope(std::string_view message) noexcept {
    if (message.size() < marker.size() + node_digits || !message.starts_with(marker)) return {std::nullopt, message};
    const char* first = message.data() + marker.size();
    // Exactly our own digits: from_chars alone would also take upper case.
    for (std::size_t i = 0; i < node_digits; ++i)
        if (hex.find(first[i]) == std::string_view::npos) return {std::nullopt, message};
    std::uint64_t node = 0;
    std::from_chars(first, first + node_digits, node, 16);
    return {node, message.substr(marker.size() + node_digits)};
}

}  // namespace coring::pubsub
