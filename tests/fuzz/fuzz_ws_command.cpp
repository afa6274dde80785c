// fuzz-sources: apps/coring-pubsub/ws_command.cpp net/pubsub/json.cpp net/ws/frame.cpp
// libFuzzer target: coring-pubsub's WebSocket commands (parse_ws_command) over arbitrary bytes.
//
// What a WebSocket client sends reaches the parser as the text of a message. Invariants checked
// (a broken one aborts, which libFuzzer reports as a crash):
// - an error is a short reason (it goes back to the client inside {"error":...});
// - a success has a verb, and "data" exactly when the verb is pub;
// - re-encoded the way the server encodes strings (pubsub::append_json_string) and parsed
//   again, a command comes back the same: the same verb, topic and data byte for byte when they
//   are UTF-8; a string that is not (raw bytes pass through the parser as they are) comes back
//   with each byte from 0x80 up as that code point, since the encoder writes it as \u00XX.
//
// Run by ./dev fuzz (and ./dev test, 10 s), or by hand from the repository root:
//   clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -Inet -Iruntime -Iapps \
//       tests/fuzz/fuzz_ws_command.cpp apps/coring-pubsub/ws_command.cpp net/pubsub/json.cpp \
//       net/ws/frame.cpp -o fuzz_ws_command && ./fuzz_ws_command -max_total_time=60 corpus tests/fuzz/corpus/ws_command
#include "fuzz_check.hpp"

#include <coring-pubsub/ws_command.hpp>
#include <coring/pubsub/hub.hpp>
#include <coring/ws/frame.hpp>

#include <cstdint>
#include <string>
#include <string_view>

using coring::apps::ws_command;

namespace {

const char* verb_of(ws_command::kind_t k) {
    switch (k) {
    case ws_command::subscribe: return "sub";
    case ws_command::unsubscribe: return "unsub";
    case ws_command::psubscribe: return "psub";
    case ws_command::punsubscribe: return "punsub";
    case ws_command::publish: return "pub";
    }
    return "?";
}

// What the string reads as after append_json_string and a JSON parse.
std::string after_encoding(std::string_view s) {
    if (coring::ws::is_valid_utf8(s)) return std::string{s};
    std::string out;
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        if (c < 0x80) {
            out += ch;
        } else {  // U+0080..U+00FF in UTF-8
            out += static_cast<char>(0xC0 | (c >> 6));
            out += static_cast<char>(0x80 | (c & 0x3F));
        }
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view json{reinterpret_cast<const char*>(data), size};
    ws_command cmd;
    const std::string why = coring::apps::parse_ws_command(json, cmd);
    if (!why.empty()) {
        FUZZ_CHECK(why.size() <= 128);
        return 0;
    }
    FUZZ_CHECK(cmd.kind == ws_command::publish || cmd.data.empty());

    // The same command as the server would write it, keys in another order for a publish.
    std::string again = "{\"";
    if (cmd.kind == ws_command::publish) {
        again += "data\":\"";
        coring::pubsub::append_json_string(again, cmd.data);
        again += "\", \"";
    }
    again += verb_of(cmd.kind);
    again += "\":\"";
    coring::pubsub::append_json_string(again, cmd.topic);
    again += "\"}";
    ws_command back;
    FUZZ_CHECK(coring::apps::parse_ws_command(again, back).empty());
    FUZZ_CHECK(back.kind == cmd.kind);
    FUZZ_CHECK(back.topic == after_encoding(cmd.topic));
    FUZZ_CHECK(back.data == after_encoding(cmd.data));
    return 0;
}
