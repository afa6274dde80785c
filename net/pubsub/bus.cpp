#include <coring/pubsub/bus.hpp>

#include <coring/log.hpp>
#include <coring/timer.hpp>

namespace coring::pubsub {

bus::bus(hub& h, const redis::options& o, std::uint64_t node, bool listens)
    : hub_{h}, node_{node}, where_{o.host + ":" + std::to_string(o.port)}, out_{o} {
    if (listens) {
        in_.emplace(o);
        in_->on_state([this](redis::link_state s) {
            if (closing_) return;  // our own close, not an outage
            if (s == redis::link_state::up) {
                ++hub_.stats_.bus_up;
                log("pubsub: bus redis://{} up: this node's channels and patterns are subscribed", where_);
            } else {
                ++hub_.stats_.bus_down;
                log("pubsub: bus redis://{} down: serving this node's subscribers only; PUBLISH answers an error "
                    "until it is back (reconnecting with backoff)",
                    where_);
            }
        });
    }
    hub_.attach(this);
}

bus::~bus() = default;

void bus::publish(std::string_view channel, std::string_view payload, frame_ref reply) {
    ++hub_.stats_.bus_published;
    const std::string wrapped = wrap_envelope(node_, payload);
    const std::string_view args[] = {"PUBLISH", channel, wrapped};  // copied by send (hiredis formats at once)
    out_.send(args, [this, reply = std::move(reply)](result<redis::reply> r) mutable {
        // close() fails what is pending before the bus goes: `this` outlives every answer.
        const bool taken = r && !r->is_error();
        if (!taken) ++hub_.stats_.bus_failed;
        hub::reply_part(reply, 0, !taken);
    });
}

task<> bus::subscribe(std::string name, bool pattern) {
    if (!in_) co_return;
    // Not connected: the name stays in the subscriber's set, subscribed when the link is back.
    if (pattern) (void)co_await in_->psubscribe(name);
    else (void)co_await in_->subscribe(name);
}

void bus::unsubscribe(const std::string& name, bool pattern) {
    if (!in_) return;
    if (pattern) in_->punsubscribe(name);
    else in_->unsubscribe(name);
}

task<bool> bus::wait_up(std::chrono::milliseconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    auto out = co_await out_.wait_connected(limit);
    if (!out) co_return false;
    // The subscriber says "up" once its set is confirmed; there is no event to wait on for
    // that at start-up alone, so it is polled, once per 10 ms.
    while (in_ && !in_->connected()) {
        if (std::chrono::steady_clock::now() >= until) co_return false;
        (void)co_await sleep_for(std::chrono::milliseconds{10});
    }
    co_return true;
}

task<> bus::run() {
    if (!in_) co_return;
    for (;;) {
        // While too much of what the bus brought is still away at other cores, read no more:
        // the subscriber link pauses at its queue_limit, and Redis holds the rest.
        while (hub_.bus_away_bytes_ > hub_.limits_.bus_away) {
            hub_.home_.reset();
            auto back = co_await hub_.home_.wait();
            if (!back) co_return;  // cancelled: closing
        }
        auto m = co_await in_->next();
        if (!m) break;  // closed
        const envelope u = unwrap_envelope(m->payload);
        if (u.node == node_) {  // our own publish: our subscribers have it already
            ++hub_.stats_.bus_own;
            continue;
        }
        ++hub_.stats_.bus_received;
        hub_.deliver_from_bus(m->pattern, m->channel, u.payload);
    }
}

task<> bus::close() {
    closing_ = true;
    hub_.attach(nullptr);
    co_await out_.close();
    if (in_) co_await in_->close();
}

}  // namespace coring::pubsub
