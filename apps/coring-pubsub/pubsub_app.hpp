#pragma once
// coring-pubsub's server as a library part, so the tests run the very code the binary runs.
// RESP2 (redis-cli, hiredis, redis-py) on --listen; with --http, a WebSocket endpoint (/ws) and a
// demo page (/) on a second port. The fan-out engine is net's pubsub::hub, one per core.
#include <coring/coring.hpp>
#include <coring/pubsub/bus.hpp>
#include <coring/pubsub/hub.hpp>
#include <coring/sharded.hpp>

#include "../common/listen.hpp"

#include <cstddef>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace coring::apps {

struct pubsub_options {
    address listen = address::ipv4_loopback(6380);
    std::optional<address> http;              // WebSocket (/ws) and the demo page (/), when set
    std::size_t max_message = 8 << 20;        // the largest command (RESP) or WebSocket message
    pubsub::limits limits;                    // per-connection output: see hub.hpp
    bool announce = true;                     // core 0 logs where it listens
    std::optional<redis::options> bus;        // --bus: nodes joined through this Redis (bus.hpp)
};

class pubsub_server {
public:
    // Built in the process that serves (after any fork): the node's name on the bus is random.
    explicit pubsub_server(pubsub_options opts);
    // run()'s setup phase: binds every core's listeners and builds the hubs (every core's exists
    // before any serves).
    task<> setup(core& c);
    // run()'s main: one core's share. Serves its listeners until the core stops.
    task<> serve(core& c);
    // The counters summed over the cores, as each core left them when it stopped.
    pubsub::counters final_counters() const;
    const pubsub_options& options() const noexcept { return opts_; }

private:
    pubsub_options opts_;
    std::uint64_t node_;
    core_listeners listeners_;                    // RESP, on opts_.listen
    std::optional<core_listeners> web_listeners_;  // with --http
    sharded<pubsub::hub> hubs_;
    sharded<pubsub::bus> buses_;  // with --bus; declared after the hubs, so it goes first
    mutable std::mutex final_lock_;
    pubsub::counters final_;
};

namespace pubsub_detail {
// One RESP client, until it quits or goes away (resp_session.cpp).
task<> resp_session(tcp_stream stream, pubsub::hub& hub, const pubsub_options& opts, std::uint64_t id);
// The demo page and the WebSocket endpoint on `listener` (ws_session.cpp).
task<> web_server(tcp_listener listener, pubsub::hub& hub, const pubsub_options& opts);
}  // namespace pubsub_detail

}  // namespace coring::apps
