#pragma once
// pubsub: the fan-out engine behind coring-pubsub. One hub per core (a sharded<hub>); a client
// connection is a pubsub::connection on the core that accepted it.
//
// Where things live:
// - Subscriptions live on the subscriber's core, in that core's hub. Every hub also keeps a
//   replicated map "channel (or pattern) → the cores that have subscribers of it", changed by
//   mail when a core's first subscriber of a name arrives (the SUBSCRIBE reply waits until every
//   core knows, so a publish that starts after the reply always reaches it) or its last leaves.
// - A publish is delivered at once to the subscribers on its own core, and joins this turn's
//   batch for each other core with interest. At the end of the turn one mail per such core
//   carries the batch (read-only there; its memory stays with the publishing core), and the
//   same mail comes back with how many subscribers each message reached there. So the PUBLISH
//   reply counts every receiver in the process, on all cores, as redis-server's does; it is
//   sent once the counts are in, in order with the connection's other replies.
// - Each core serializes an outgoing message once per format (RESP, WebSocket JSON) into a
//   refcounted frame; every subscriber's queue holds references to it. A connection's writer
//   sends everything queued (up to max_gather frames) in one gather send, so a subscriber that
//   gets 50 messages in a turn costs one send, not 50.
//
// Ordering: one publisher's messages to one channel reach every subscriber in publish order
// (same core: delivered in the order published; other cores: batches travel in order through
// the mailbox, which is FIFO per pair of cores).
//
// Slow consumers never slow anyone else: delivery only queues a reference. A connection whose
// queued output passes `limits::hard` bytes, or stays above `limits::soft` for `soft_for`, is
// cut (its tasks cancelled, its queue dropped), counted and logged with its address, as redis's
// client-output-buffer-limit pubsub does. A publisher's own replies are back-pressured instead:
// the session stops reading commands while its output is above `reply_room` (see session code).
#include <coring/core.hpp>
#include <coring/sharded.hpp>
#include <coring/sync.hpp>
#include <coring/task.hpp>
#include <coring/tcp.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace coring::pubsub {

class hub;
class connection;
class bus;

// Maps keyed by name, looked up by string_view without building a string.
struct name_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
template <class T>
using name_map = std::unordered_map<std::string, T, name_hash, std::equal_to<>>;

// Bytes on their way to one or more connections of one core. Refcounted without atomics: a
// frame never leaves its core.
class frame {
public:
    std::string bytes;
    bool ready = true;              // false: a PUBLISH reply waiting for other cores' counts or the bus
    bool silent = false;            // a publish that gets no reply (WebSocket): stays empty
    connection* waiter = nullptr;   // while not ready: whose writer to wake once it is
    // A PUBLISH reply still being made: how many answers it waits for (the other cores' counts,
    // the bus's), the receivers counted so far, and whether the bus failed to take the message.
    std::uint8_t parts = 0;
    bool bus_failed = false;
    std::uint64_t receivers = 0;

private:
    friend class frame_ref;
    std::uint32_t refs_ = 0;
};

class frame_ref {
public:
    frame_ref() noexcept = default;
    explicit frame_ref(frame* f) noexcept : f_{f} { if (f_) ++f_->refs_; }
    frame_ref(const frame_ref& o) noexcept : frame_ref{o.f_} {}
    frame_ref(frame_ref&& o) noexcept : f_{std::exchange(o.f_, nullptr)} {}
    frame_ref& operator=(frame_ref o) noexcept {
        std::swap(f_, o.f_);
        return *this;
    }
    ~frame_ref() {
        if (f_ && --f_->refs_ == 0) delete f_;
    }
    static frame_ref make() { return frame_ref{new frame}; }
    frame* get() const noexcept { return f_; }
    frame* operator->() const noexcept { return f_; }
    explicit operator bool() const noexcept { return f_ != nullptr; }
    bool shared() const noexcept { return f_ && f_->refs_ > 1; }

private:
    frame* f_ = nullptr;
};

// How a subscriber wants its messages.
enum class format : std::uint8_t {
    resp,     // *3 message <channel> <payload> (and pmessage with the pattern)
    ws_json,  // a WebSocket text frame {"channel":"...","data":"..."} (+ "pattern" for patterns)
};

// A JSON string's contents for s (the ws_json format): quotes, backslashes and control
// characters escaped; a payload that is not UTF-8 (a text frame must be) has each byte from 0x80
// up sent as \u00XX.
void append_json_string(std::string& out, std::string_view s);

struct limits {
    std::size_t hard = 32 << 20;  // queued output past this: cut at once (redis: 32mb)
    std::size_t soft = 8 << 20;   // above this for soft_for: cut (redis: 8mb 60)
    std::chrono::nanoseconds soft_for = std::chrono::seconds{60};
    std::size_t reply_room = 256 << 10;  // a session reads no more commands while more is queued
    std::size_t max_unanswered = 4096;   // PUBLISHes waiting for other cores' counts, per connection
    // Channels plus patterns one connection may hold (redis-server has no limit): each costs an
    // entry on its core and interest on every core, so this is what bounds a client's memory.
    std::size_t max_subscriptions = 100'000;
    // Bytes of the bus's messages (those Redis brought) that this core sent to other cores to
    // fan out and are not yet back (their counts): past it, the bus (on core 0) reads no more
    // from Redis until enough came home, so a core slower at fan-out than Redis is read cannot
    // pile mail up without bound. Publishers here are bounded per connection instead.
    std::size_t bus_away = 16 << 20;
};

// Counters of one core (summed over cores for INFO and --stats).
struct counters {
    std::uint64_t connections = 0;  // open now
    std::uint64_t accepted = 0;     // ever
    std::uint64_t subscriptions = 0;  // (connection, channel or pattern) pairs now
    std::uint64_t published = 0;    // PUBLISH commands taken on this core
    std::uint64_t delivered = 0;    // messages queued to subscribers of this core
    std::uint64_t frames = 0;       // messages serialized here (once per format per core)
    std::uint64_t batches_out = 0;  // cross-core mails sent with publishes
    std::uint64_t sends = 0;        // gather sends made by connection writers
    std::uint64_t slow_cut = 0;     // connections cut for passing the output limits
    std::uint64_t dropped = 0;      // frames thrown away with the queue of a cut connection
    // With --bus (bus.hpp); core 0 alone counts the link and what it received.
    std::uint64_t bus_published = 0;  // publishes handed to the bus
    std::uint64_t bus_failed = 0;     // ... that it did not take (down, timed out, refused)
    std::uint64_t bus_received = 0;   // messages from other nodes, fanned out here
    std::uint64_t bus_own = 0;        // this node's own publishes coming back: dropped (delivered already)
    std::uint64_t bus_down = 0;       // times the subscriber link went down
    std::uint64_t bus_up = 0;         // times it came (back) up with every subscription confirmed
    counters& operator+=(const counters& o) noexcept;
};

// One client connection's side of the engine: its output queue and writer, its subscriptions.
// Lives in the session's frame on the core that accepted the connection, and must be closed
// (close_output, then the writer task ends) before it goes.
class connection {
public:
    connection(hub& h, tcp_stream& stream, format f);
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;
    ~connection();  // drops every subscription (a core's last one of a name tells the others)

    // ---- output, in order: replies and delivered messages --------------------------------
    // Appends a reply's bytes (coalesced with the other replies queued this turn).
    void reply(std::string_view bytes) {
        reply_with([bytes](std::string& out) { out.append(bytes); });
    }
    // The same, built in place: build(std::string&) appends the reply.
    template <class Build>
    void reply_with(Build&& build) {
        std::string& out = reply_tail();
        const std::size_t before = out.size();
        build(out);
        queued_ += out.size() - before;
        work_.set();
    }
    // Another writer shares the stream (a websocket answering pings): each send holds `lock`.
    void share_stream(mutex& lock) noexcept { shared_lock_ = &lock; }
    // Queues a delivered message; cuts this connection when that passes the limits.
    void deliver(const frame_ref& f);
    // The one sender on the stream: run it as a child task; it ends after close_output() once
    // everything is sent, or at the first send error, or when the connection is cut.
    task<> write_loop();
    // No more output; the writer ends once the queue is sent.
    void close_output() noexcept;
    std::size_t queued() const noexcept { return queued_; }
    // Waits until queued() <= limits::reply_room and fewer than max_unanswered PUBLISH replies
    // wait for counts. Fails when the connection is cut or its task cancelled.
    [[nodiscard]] task<result<void>> room();
    // room() would wait: check before calling it on every command.
    bool crowded() const noexcept {
        return queued_ > hub_limits().reply_room || unanswered_ >= hub_limits().max_unanswered;
    }
    bool is_cut() const noexcept { return cut_; }

    // ---- subscriptions ----------------------------------------------------------------------
    // Subscribes to a channel (or a pattern); returns this connection's subscription count
    // after it. Waits for the other cores only when this core had no subscriber of `name`.
    // Fails (std::errc::too_many_links) when a new name would pass limits::max_subscriptions.
    // Messages come only once it has returned: queue its reply before the next co_await.
    [[nodiscard]] task<result<std::size_t>> subscribe(std::string_view name, bool pattern);
    // Returns the count after it (unchanged when it was not subscribed).
    std::size_t unsubscribe(std::string_view name, bool pattern);
    // Every name it has of one kind, to unsubscribe them (UNSUBSCRIBE with no argument).
    std::vector<std::string> names(bool pattern) const;
    std::size_t subscription_count() const noexcept { return subs_.size(); }

    // Publishes through the hub. RESP: the reply (":N", every receiver on every core) is queued
    // in order, perhaps not yet ready. Other formats get no reply, but a publish that travels
    // to other cores or the bus counts as unanswered until they took it, as a RESP one does:
    // room() holds a publisher back at max_unanswered whatever its format.
    void publish(std::string_view channel, std::string_view payload);

private:
    friend class hub;
    struct subscription;
    const limits& hub_limits() const noexcept;
    bool front_ready() noexcept;  // drops sent and empty frames; is the first one sendable?
    [[nodiscard]] task<bool> send_ready();
    // The ready frames from the front as iovecs (their count); marks them in flight.
    std::size_t gather(std::span<iovec, tcp_stream::max_gather> iov) noexcept;
    void sent(std::size_t bytes) noexcept;  // drops what a send took from the front
    std::string& reply_tail();  // the last queued frame when replies may go on into it
    void cut(const char* why);
    void drop_queue() noexcept;
    void release_reply() noexcept;  // a PUBLISH reply got its counts

    hub& hub_;
    tcp_stream& stream_;
    format format_;
    bool cut_ = false;
    bool closed_ = false;
    std::vector<frame_ref> queue_;  // [head_, end): not yet fully sent
    std::size_t head_ = 0;
    std::size_t in_flight_ = 0;     // of the queue's front frames, how many the current send uses
    std::size_t offset_ = 0;        // bytes of the front frame already sent
    std::size_t queued_ = 0;        // bytes not yet sent
    std::size_t unanswered_ = 0;    // PUBLISH replies waiting for counts
    std::int64_t soft_since_ = 0;   // when queued_ went above the soft limit (0: it is not)
    detail::task_context* reader_ = nullptr;  // the session's task, cancelled by a cut
    detail::task_context* writer_ = nullptr;
    mutex* shared_lock_ = nullptr;
    event work_;   // the writer waits here for output (or the end)
    event room_;   // room() waits here
    std::vector<subscription*> subs_;  // sorted by topic, so one is found in O(log n)
    // Publishes of a connection that gets no replies (WebSocket) still travelling to other
    // cores or the bus: never sent, each counted in unanswered_ until it is ready. A vector
    // with a head, not a std::deque: an empty deque already holds a 512-byte block, and every
    // connection has this member (the pub/sub ladder saw +600 B per idle subscriber).
    std::vector<frame_ref> silent_;  // [silent_head_, end): the ones that may still travel
    std::size_t silent_head_ = 0;
};

// One core's engine. Build with sharded<hub>::start (every core), before any connection.
class hub {
public:
    explicit hub(sharded<hub>& all, limits lim = {});
    hub(const hub&) = delete;
    hub& operator=(const hub&) = delete;
    ~hub();

    const limits& output_limits() const noexcept { return limits_; }
    counters stats() const noexcept { return stats_; }  // this core's
    // Summed over every core (awaits each).
    [[nodiscard]] task<counters> stats_all();
    // PUBSUB CHANNELS / NUMSUB / NUMPAT over every core.
    [[nodiscard]] task<std::vector<std::string>> channels_all(std::string_view pattern);
    [[nodiscard]] task<std::uint64_t> numsub_all(std::string_view channel);
    [[nodiscard]] task<std::uint64_t> numpat_all();

    // ---- the bus (bus.hpp): other nodes, joined through Redis -------------------------------
    // The core's bus, or none; set once by the bus itself, cleared when it closes.
    void attach(bus* b) noexcept { bus_ = b; }
    bool has_bus() const noexcept { return bus_ != nullptr; }
    // A message another node published, as the bus got it: `pattern` empty for a channel
    // subscription's copy, else the pattern's. Redis sends one copy per matching subscription
    // of ours, so each copy goes only to the subscribers behind that subscription: every
    // subscriber gets it once, as with a local publish.
    void deliver_from_bus(std::string_view pattern, std::string_view channel, std::string_view payload);

private:
    friend class connection;
    friend class bus;  // counts in stats_
    struct topic;
    struct batch;
    using core_mask = std::uint64_t;  // coring-pubsub runs on at most 64 cores
    // Which of a core's subscribers a message is for: all that match (a publish in this node),
    // or only those of one channel or one pattern (a copy from the bus: see deliver_from_bus).
    enum class reach : std::uint8_t { all, channel, pattern };

    // The channel (or pattern) names with subscribers on any core, each once; those matching
    // `glob` when it is not empty.
    task<std::vector<std::string>> names_all(bool patterns, std::string_view glob);
    topic& topic_of(std::string_view name, bool pattern);
    void drop_topic(topic& t, bool pattern);
    // Delivers to this core's subscribers; returns how many got it.
    std::uint32_t deliver_local(std::string_view channel, std::string_view payload, reach r = reach::all,
                                std::string_view pattern = {});
    core_mask interested(std::string_view channel) const;
    void queue_remote(core_mask cores, std::string_view channel, std::string_view payload, frame_ref reply,
                      reach r = reach::all, std::string_view pattern = {});
    // A PUBLISH reply's part is in: `receivers` more, or the bus did not take it.
    static void reply_part(frame_ref& reply, std::uint64_t receivers, bool bus_failed);
    // The bus subscription for a core's first subscriber of `name` (run on core 0).
    task<> bus_subscribe(std::string name, bool pattern);
    void set_interest(const std::string& name, bool pattern, unsigned core, bool on);
    void flush_batches() noexcept;
    static void on_flush(detail::mail& m) noexcept;
    static void on_batch(detail::mail& m) noexcept;
    static void on_counts(detail::mail& m) noexcept;

    sharded<hub>& all_;
    limits limits_;
    counters stats_;
    name_map<std::unique_ptr<topic>> channels_;  // with subscribers on this core
    name_map<std::unique_ptr<topic>> patterns_;
    name_map<core_mask> channel_cores_;  // replicated: the cores that have subscribers of a name
    name_map<core_mask> pattern_cores_;
    std::unique_ptr<batch> filling_;     // this turn's publishes for other cores
    std::size_t bus_away_bytes_ = 0;     // of the bus's messages in batches not yet home (limits::bus_away)
    event home_{true};                   // the bus's wait while bus_away_bytes_ is past the limit
    unsigned core_;                      // this hub's
    detail::mail flush_mail_;                      // to this core itself: "the turn is over"
    bool flush_posted_ = false;
    bus* bus_ = nullptr;
};

}  // namespace coring::pubsub
