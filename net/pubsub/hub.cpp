// pubsub::hub: one core's side of the engine (hub.hpp): topics and their subscribers here, the
// replicated interest of every core, delivery, and the turn's cross-core batches and their
// counts. A connection's own side (output, subscriptions, publishes) is in connection.cpp.
#include <coring/pubsub/hub.hpp>
#include "topic.hpp"

#include <coring/pubsub/bus.hpp>

#include <coring/resp/resp.hpp>
#include <coring/ws/frame.hpp>

#include <array>
#include <bit>
#include <set>

namespace coring::pubsub {

// One turn's publishes for the other cores. It lives on the publishing core; each core with
// interest gets one mail (a leg) pointing here, reads the messages, writes only its own counts,
// and sends the leg back. The batch is freed when the last leg is home.
struct hub::batch {
    struct message {
        std::string channel;
        std::string payload;
        core_mask cores;
        reach to = reach::all;
        std::string pattern;  // reach::pattern: whose subscribers
    };
    struct leg {
        detail::mail mail;
        batch* owner = nullptr;
        std::vector<std::uint32_t> counts;  // written by the leg's core only, per message
    };
    explicit batch(hub& h, unsigned cores) : origin{h}, legs(cores) {}

    hub& origin;
    std::vector<message> messages;
    std::vector<frame_ref> replies;    // the origin's: per message, the PUBLISH reply (or none)
    std::vector<leg> legs;             // per core; only those in `cores` travel
    core_mask cores = 0;
    unsigned pending = 0;  // legs not back yet
    std::size_t bus_bytes = 0;  // of its messages from the bus, in origin.bus_away_bytes_ until it is home
};

counters& counters::operator+=(const counters& o) noexcept {
    connections += o.connections;
    accepted += o.accepted;
    subscriptions += o.subscriptions;
    published += o.published;
    delivered += o.delivered;
    frames += o.frames;
    batches_out += o.batches_out;
    sends += o.sends;
    slow_cut += o.slow_cut;
    dropped += o.dropped;
    bus_published += o.bus_published;
    bus_failed += o.bus_failed;
    bus_received += o.bus_received;
    bus_own += o.bus_own;
    bus_down += o.bus_down;
    bus_up += o.bus_up;
    return *this;
}

namespace {

// The outgoing form of one message for subscribers of one format (pattern empty: a channel
// subscription's "message", else a pattern's "pmessage").
frame_ref encode(format f, std::string_view pattern, std::string_view channel, std::string_view payload) {
    frame_ref fr = frame_ref::make();
    std::string& out = fr->bytes;
    if (f == format::resp) {
        out.reserve(16 + resp::bulk_size(pattern.size()) + resp::bulk_size(channel.size()) +
                    resp::bulk_size(payload.size()));
        resp::append_array(out, pattern.empty() ? 3 : 4);
        resp::append_bulk(out, pattern.empty() ? "message" : "pmessage");
        if (!pattern.empty()) resp::append_bulk(out, pattern);
        resp::append_bulk(out, channel);
        resp::append_bulk(out, payload);
        return fr;
    }
    std::string json;
    json.reserve(32 + pattern.size() + channel.size() + payload.size());
    json += R"({"channel":")";
    append_json_string(json, channel);
    if (!pattern.empty()) {
        json += R"(","pattern":")";
        append_json_string(json, pattern);
    }
    json += R"(","data":")";
    append_json_string(json, payload);
    json += "\"}";
    std::array<std::byte, ws::max_head_size> head;
    const std::size_t n = ws::write_head(head, true, ws::opcode::text, json.size());
    out.reserve(n + json.size());
    out.append(reinterpret_cast<const char*>(head.data()), n);
    out += json;
    return fr;
}

}  // namespace

// ---- hub ---------------------------------------------------------------------------------------

hub::hub(sharded<hub>& all, limits lim) : all_{all}, limits_{lim}, core_{core::current().id()} {
    if (core::current().core_count() > 64) throw std::invalid_argument("pubsub: at most 64 cores");
    flush_mail_.deliver = &on_flush;
    flush_mail_.context = this;
    flush_mail_.to = core_;
}

hub::~hub() = default;

hub::topic& hub::topic_of(std::string_view name, bool pattern) {
    auto& topics = pattern ? patterns_ : channels_;
    auto found = topics.find(name);
    if (found != topics.end()) return *found->second;
    auto t = std::make_unique<topic>();
    t->name = std::string{name};
    topic& ref = *t;
    topics.emplace(t->name, std::move(t));
    return ref;
}

void hub::drop_topic(topic& t, bool pattern) {
    // The other cores forget this one's interest; a publish already on its way finds nobody
    // here and counts 0. Mail is FIFO per pair of cores, so a later re-subscribe's
    // announcement lands after this.
    std::string name = std::move(t.name);
    (pattern ? patterns_ : channels_).erase(name);
    core& here = core::current();
    for (unsigned k = 0; k < all_.size(); ++k) {
        if (k == core_) set_interest(name, pattern, core_, false);
        else here.post_to(k, [name, pattern, me = core_, all = &all_] { all->local().set_interest(name, pattern, me, false); });
    }
}

void hub::set_interest(const std::string& name, bool pattern, unsigned core, bool on) {
    auto& cores = pattern ? pattern_cores_ : channel_cores_;
    const core_mask bit = core_mask{1} << core;
    if (on) {
        cores[name] |= bit;
        return;
    }
    auto found = cores.find(name);
    if (found == cores.end()) return;
    found->second &= ~bit;
    if (found->second != 0) return;
    cores.erase(found);
    // The node's last subscriber of the name is gone: core 0 leaves it on the bus. (A core's
    // first subscriber announces itself here before it asks for the bus subscription, so this
    // can never undo a newer one.)
    if (bus_ && core_ == 0) bus_->unsubscribe(name, pattern);
}

task<> hub::bus_subscribe(std::string name, bool pattern) {
    if (bus_) co_await bus_->subscribe(std::move(name), pattern);
}

hub::core_mask hub::interested(std::string_view channel) const {
    core_mask cores = 0;
    if (auto found = channel_cores_.find(channel); found != channel_cores_.end()) cores = found->second;
    for (const auto& [pattern, mask] : pattern_cores_)
        if ((mask & ~cores) != 0 && resp::glob_match(pattern, channel)) cores |= mask;
    return cores;
}

std::uint32_t hub::deliver_local(std::string_view channel, std::string_view payload, reach r,
                                 std::string_view pattern) {
    std::uint32_t receivers = 0;
    // One frame per format, made the first time a subscriber of that format needs it.
    auto fan_out = [&](const topic& t, std::string_view pattern) {
        std::array<frame_ref, 2> frames;
        for (auto* s = t.head; s; s = s->next) {
            if (!s->confirmed) continue;
            frame_ref& f = frames[static_cast<std::size_t>(s->who->format_)];
            if (!f) {
                f = encode(s->who->format_, pattern, channel, payload);
                ++stats_.frames;
            }
            s->who->deliver(f);
            ++receivers;
        }
    };
    if (r != reach::pattern)
        if (auto found = channels_.find(channel); found != channels_.end()) fan_out(*found->second, {});
    if (r == reach::all) {
        for (const auto& [name, t] : patterns_)
            if (resp::glob_match(name, channel)) fan_out(*t, name);
    } else if (r == reach::pattern) {
        if (auto found = patterns_.find(pattern); found != patterns_.end()) fan_out(*found->second, pattern);
    }
    stats_.delivered += receivers;
    return receivers;
}

void hub::deliver_from_bus(std::string_view pattern, std::string_view channel, std::string_view payload) {
    const reach r = pattern.empty() ? reach::channel : reach::pattern;
    deliver_local(channel, payload, r, pattern);
    const auto& cores = pattern.empty() ? channel_cores_ : pattern_cores_;
    const auto found = cores.find(pattern.empty() ? channel : pattern);
    const core_mask others = found == cores.end() ? 0 : found->second & ~(core_mask{1} << core_);
    if (others == 0) return;
    queue_remote(others, channel, payload, frame_ref{}, r, pattern);
    const std::size_t bytes = channel.size() + payload.size() + pattern.size();
    filling_->bus_bytes += bytes;
    bus_away_bytes_ += bytes;
}

void hub::queue_remote(core_mask cores, std::string_view channel, std::string_view payload, frame_ref reply,
                       reach r, std::string_view pattern) {
    if (!filling_) filling_ = std::make_unique<batch>(*this, all_.size());
    filling_->messages.push_back({std::string{channel}, std::string{payload}, cores, r, std::string{pattern}});
    filling_->replies.push_back(std::move(reply));
    filling_->cores |= cores;
    if (!flush_posted_) {  // the batch leaves when this turn is over: the mail comes back next turn
        flush_posted_ = true;
        core::current().post(flush_mail_);
    }
}

void hub::reply_part(frame_ref& reply, std::uint64_t receivers, bool bus_failed) {
    reply->receivers += receivers;
    reply->bus_failed |= bus_failed;
    if (--reply->parts > 0) return;
    if (reply->silent) {
        // nobody to tell: the bus counted a failure (bus_publish_failed)
    } else if (reply->bus_failed) {
        // Redis-style, and nothing silently lost: the publisher learns that only this node's
        // subscribers got it.
        resp::append_error(reply->bytes, "ERR bus unavailable: delivered to " + std::to_string(reply->receivers) +
                                             " subscriber(s) on this node only");
    } else {
        resp::append_integer(reply->bytes, static_cast<std::int64_t>(reply->receivers));
    }
    reply->ready = true;
    if (connection* c = std::exchange(reply->waiter, nullptr)) {
        c->queued_ += reply->bytes.size();
        c->release_reply();
    }
}

void hub::on_flush(detail::mail& m) noexcept {
    auto* self = static_cast<hub*>(m.context);
    self->flush_posted_ = false;
    self->flush_batches();
}

void hub::flush_batches() noexcept {
    if (!filling_) return;
    batch* b = filling_.release();
    core& here = core::current();
    for (core_mask left = b->cores; left != 0; left &= left - 1) {
        const auto k = static_cast<unsigned>(std::countr_zero(left));
        batch::leg& leg = b->legs[k];
        leg.owner = b;
        leg.counts.assign(b->messages.size(), 0);
        leg.mail.deliver = &on_batch;
        leg.mail.context = &leg;
        leg.mail.to = k;
        ++b->pending;
    }
    // Count every leg before posting any: a leg may come home while the others are being posted.
    for (core_mask left = b->cores; left != 0; left &= left - 1) {
        ++stats_.batches_out;
        here.post(b->legs[static_cast<unsigned>(std::countr_zero(left))].mail);
    }
}

void hub::on_batch(detail::mail& m) noexcept {
    auto& leg = *static_cast<batch::leg*>(m.context);
    const batch& b = *leg.owner;
    hub& here = b.origin.all_.local();
    const core_mask me = core_mask{1} << here.core_;
    for (std::size_t i = 0; i < b.messages.size(); ++i) {
        const auto& msg = b.messages[i];
        if (msg.cores & me) leg.counts[i] = here.deliver_local(msg.channel, msg.payload, msg.to, msg.pattern);
    }
    m.deliver = &on_counts;
    m.to = b.origin.core_;
    core::current().post(m);
}

void hub::on_counts(detail::mail& m) noexcept {
    auto& leg = *static_cast<batch::leg*>(m.context);
    batch* b = leg.owner;
    if (--b->pending > 0) return;
    std::unique_ptr<batch> done{b};
    hub& origin = b->origin;
    origin.bus_away_bytes_ -= b->bus_bytes;
    if (origin.bus_away_bytes_ <= origin.limits_.bus_away) origin.home_.set();
    for (std::size_t i = 0; i < b->messages.size(); ++i) {
        frame_ref& reply = b->replies[i];
        if (!reply) continue;
        std::uint64_t receivers = 0;
        for (const auto& l : b->legs)
            if (l.owner) receivers += l.counts[i];
        reply_part(reply, receivers, false);
    }
}

task<counters> hub::stats_all() {
    counters sum;
    for (unsigned k = 0; k < all_.size(); ++k) {
        auto get = [](hub& h) { return h.stats(); };
        sum += co_await all_.invoke_on(k, get);
    }
    co_return sum;
}

task<std::vector<std::string>> hub::names_all(bool patterns, std::string_view glob) {
    std::set<std::string> names;  // a name with subscribers on several cores counts once
    const std::string pat{glob};
    for (unsigned k = 0; k < all_.size(); ++k) {
        auto get = [&pat, patterns](hub& h) {
            std::vector<std::string> out;
            for (const auto& [name, t] : patterns ? h.patterns_ : h.channels_)
                if (pat.empty() || resp::glob_match(pat, name)) out.push_back(name);
            return out;
        };
        for (auto& n : co_await all_.invoke_on(k, get)) names.insert(std::move(n));
    }
    co_return std::vector<std::string>(names.begin(), names.end());
}

task<std::vector<std::string>> hub::channels_all(std::string_view pattern) { return names_all(false, pattern); }

task<std::uint64_t> hub::numsub_all(std::string_view channel) {
    std::uint64_t sum = 0;
    const std::string name{channel};
    for (unsigned k = 0; k < all_.size(); ++k) {
        auto get = [&name](hub& h) -> std::uint64_t {
            auto found = h.channels_.find(name);
            return found == h.channels_.end() ? 0 : found->second->count;
        };
        sum += co_await all_.invoke_on(k, get);
    }
    co_return sum;
}

task<std::uint64_t> hub::numpat_all() {
    const auto names = co_await names_all(true, {});
    co_return names.size();
}

}  // namespace coring::pubsub
