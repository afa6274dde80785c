#pragma once
// What a WebSocket client of coring-pubsub sends: one JSON object per text message,
//   {"sub":"news"}  {"unsub":"news"}  {"psub":"news.*"}  {"punsub":"news.*"}
//   {"pub":"news","data":"hello"}
// Pure parsing, no I/O (fuzzed: tests/fuzz/fuzz_ws_command.cpp). Only this flat shape is
// accepted: string values, each key once, no other keys; anything else is an error naming why.
#include <string>
#include <string_view>

namespace coring::apps {

struct ws_command {
    enum kind_t { subscribe, unsubscribe, psubscribe, punsubscribe, publish } kind = subscribe;
    std::string topic;  // channel or pattern
    std::string data;   // publish only
};

// Returns the error ("" on success): a short reason for the client.
std::string parse_ws_command(std::string_view json, ws_command& out);

}  // namespace coring::apps
