#pragma once
// bus: coring-pubsub nodes (processes, machines) joined through Redis pub/sub, as Centrifugo and
// Socket.IO's Redis adapter join theirs. One bus per core, beside that core's hub.
//
// - Interest-based: core 0 holds one subscriber connection to Redis and subscribes there to each
//   channel (and pattern) any subscriber of this node has, once; it unsubscribes when the node's
//   last one leaves. A core's first subscriber of a name waits for Redis's confirmation before
//   its SUBSCRIBE is answered, so a publish on any node after that reply reaches it.
// - A publish is delivered in this node at once (hub), and sent to the bus by the publishing
//   core's own connection, wrapped in an envelope naming this node. What comes back from the
//   bus with our own name is dropped (our subscribers have it already): exactly once. Messages
//   published into Redis by anyone else (redis-cli, an app) carry no envelope and are delivered
//   as they are.
// - Order: one publisher's messages to one channel keep their order here (the hub) and on every
//   other node (one connection to Redis per core, and Redis keeps order per connection).
// - The bus down: this node goes on serving its own subscribers. A PUBLISH the bus did not take
//   (down, or no answer within `command_timeout`) gets an error reply saying it reached this
//   node's subscribers only, so nothing is lost silently. Both connections reconnect with
//   backoff; the subscriber connection re-subscribes everything. What other nodes published
//   while the link was down is not replayed: Redis pub/sub keeps nothing (docs/ARCHITECTURE.md).
#include <coring/pubsub/envelope.hpp>
#include <coring/pubsub/hub.hpp>
#include <coring/redis/redis.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace coring::pubsub {

class bus {
public:
    // On the current core; `listens`: this core (core 0) holds the node's subscriber connection.
    // `node` names this node in the envelopes (random per process).
    bus(hub& h, const redis::options& o, std::uint64_t node, bool listens);
    bus(const bus&) = delete;
    bus& operator=(const bus&) = delete;
    ~bus();  // close() first

    // Sends a publish of this node to the other nodes. `reply` is the publish's reply frame,
    // waiting for the bus's answer (hub::reply_part); its connection counts it as unanswered,
    // which bounds what one publisher has waiting on Redis (limits::max_unanswered).
    void publish(std::string_view channel, std::string_view payload, frame_ref reply);
    // Core 0: the node subscribes to a name (completes when Redis confirmed it, or at once while
    // the link is down: it is subscribed when the link comes back), or leaves it.
    [[nodiscard]] task<> subscribe(std::string name, bool pattern);
    void unsubscribe(const std::string& name, bool pattern);
    // Until this core's connections are up (core 0: its subscriber too), at most `limit`: a
    // node that serves before then would answer PUBLISH with errors. False when it gave up.
    [[nodiscard]] task<bool> wait_up(std::chrono::milliseconds limit);
    // Core 0: hands what the bus sends to the hub until close().
    [[nodiscard]] task<> run();
    [[nodiscard]] task<> close();


private:
    hub& hub_;
    std::uint64_t node_;
    std::string where_;  // "HOST:PORT", for the logs
    bool closing_ = false;
    redis::client out_;
    std::optional<redis::subscriber> in_;
};

}  // namespace coring::pubsub
