// pubsub::append_json_string alone: a pure function (no runtime), so ./dev fuzz links it
// without the engine (tests/fuzz/fuzz_ws_command.cpp re-encodes what it parsed with it).
#include <coring/pubsub/hub.hpp>

#include <coring/ws/frame.hpp>

namespace coring::pubsub {

void append_json_string(std::string& out, std::string_view s) {
    const bool utf8 = ws::is_valid_utf8(s);
    static constexpr char hex[] = "0123456789abcdef";
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += ch;
        } else if (c < 0x20 || (c >= 0x80 && !utf8)) {
            out += "\\u00";
            out += hex[c >> 4];
            out += hex[c & 15];
        } else {
            out += ch;
        }
    }
}

}  // namespace coring::pubsub
