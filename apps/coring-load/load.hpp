#pragma once
// The echo workload of coring-load, as a library part so tests run the very code the tool runs.
// Each connection keeps up to `depth` messages in flight; a sender and a receiver task share it.
// Every byte of every reply is checked against the message it answers (content derived from the
// connection id and sequence number), so a reply that is torn, reordered, or meant for another
// connection is caught. Errors are counted by kind, never dropped.
#include "histogram.hpp"
#include "nats.hpp"

#include <coring/coring.hpp>
#include <coring/reader.hpp>

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace coring::load {

// What a connection speaks. echo: every message comes back as sent. http: each message is a GET
// of http_path (keep-alive, pipelined up to depth), and each response must be 200 with
// exactly http_expect as its body. ws: a WebSocket to ws_path (the handshake is part of the
// connect), each message a binary one that must come back as sent. pubsub and nats: the fan-out
// workload of pubsub.cpp (subscribers and publishers, every delivery verified), over RESP (Redis,
// coring-pubsub) or NATS's text protocol.
enum class protocol : std::uint8_t { echo, http, ws, pubsub, nats };

// The pub/sub workload's own knobs; the rest (target, depth, size_min, duration, warmup, rate,
// connect_parallel, reply_timeout) come from settings.
struct pubsub_settings {
    unsigned subscribers = 100;
    unsigned channels = 10;    // subscriber i takes channel i % channels
    bool patterns = false;     // PSUBSCRIBE (NATS: a wildcard SUB) matching exactly that channel
    unsigned publishers = 1;   // rate and depth are per the whole run and per publisher
    unsigned slow = 0;         // the last `slow` subscribers stop reading...
    double slow_after = 0;     // ...this many seconds after publishing starts, until it ends
    std::chrono::milliseconds drain_quiet{2000};  // after publishing: no delivery for this long ends the run
    std::chrono::seconds setup_limit{120};        // every subscriber confirmed within this
    // Steps (open loop only): the measured window is `steps` windows of `duration` each, step k
    // publishing at rate * step_factor^k, with a pause of step_limit between them, so each step
    // starts with no backlog. After each pause the step is judged: if fewer than 99% of the
    // deliveries it owed came within step_limit of their send time (its p99 is above the
    // limit), the run stops there. The warmup publishes at step 0's rate.
    unsigned steps = 1;
    double step_factor = 2;
    std::chrono::milliseconds step_limit{1000};
};

struct settings {
    address target = address::ipv4_loopback(7000);
    protocol proto = protocol::echo;
    std::string http_path = "/plaintext";
    std::string http_expect = "Hello, World!";
    std::string ws_path = "/ws/echo";
    unsigned conns = 64;              // in all (every core and process)
    unsigned depth = 1;               // messages in flight per connection
    std::size_t size_min = 64;        // message size; a range when min < max
    std::size_t size_max = 64;
    double duration = 10;             // measured seconds
    double warmup = 1;                // unmeasured seconds after the connections are up
    double rate = 0;                  // open loop: requests per second in all; 0 = closed loop
    std::uint32_t source_first = 0;   // IPv4 source addresses to spread connections over (host
    std::uint32_t source_count = 0;   // order): connection i binds first + i % count; 0 = any
    unsigned connect_parallel = 256;  // connects in flight per core (a SYN queue overflow costs 1 s)
    std::chrono::milliseconds reply_timeout{10'000};  // a reply slower than this is an error
    bool announce_window = false;     // log "measuring" and "measured" as the window opens and
                                      // closes (scripts sample the server's CPU time then)
    // Idle mode (the C10K..C1M ladder): first hold `idle` more connections (ids after the active
    // ones), each proven by one echo round trip; once all of them, in every process, are up,
    // verify every `verify_stride`-th again; then run the active connections as usual while the
    // idle ones stay open. They close with a reset (no TIME_WAIT left for the next run).
    std::uint64_t idle = 0;
    std::uint64_t verify_stride = 1;
    std::chrono::seconds idle_setup_limit{900};  // give up waiting for the other processes after this
    pubsub_settings pubsub;
};

struct error_counts {
    std::uint64_t connect = 0;  // could not connect
    std::uint64_t io = 0;       // reset, broken pipe, other send/recv errors
    std::uint64_t eof = 0;      // the server closed a connection with replies outstanding
    std::uint64_t verify = 0;   // a reply's bytes differ from the message
    std::uint64_t timeout = 0;  // no reply within reply_timeout
    std::uint64_t total() const noexcept { return connect + io + eof + verify + timeout; }
    error_counts& operator+=(const error_counts& o) noexcept;
};

// What the pub/sub workload counts besides results' messages (deliveries in the window).
struct pubsub_counts {
    std::uint64_t published = 0;         // publishes sent, in all
    std::uint64_t published_window = 0;  // of those, sent inside the measured window
    std::uint64_t delivered = 0;         // verified deliveries, in all (every subscriber)
    std::uint64_t subscribed = 0;        // subscribers whose subscription was confirmed
    std::uint64_t reached = 0;           // of those that kept reading, the ones that got a message
    // Among the subscribers that kept reading: all three must be 0.
    std::uint64_t lost = 0;        // published to its channel, never received (counted at the end)
    std::uint64_t duplicated = 0;  // a sequence number received twice
    std::uint64_t reordered = 0;   // a sequence number that came after a later one
    // The --slow subscribers, apart.
    std::uint64_t slow_received = 0;
    std::uint64_t slow_lost = 0;
    std::uint64_t slow_cut = 0;    // connections the server closed
    pubsub_counts& operator+=(const pubsub_counts& o) noexcept;
};

struct results {
    std::uint64_t messages = 0;  // verified replies inside the measured window
    std::uint64_t bytes = 0;     // of those, payload bytes (one direction)
    histogram latency;           // ns, of those
    error_counts errors;
    std::uint64_t connected = 0;
    std::uint64_t idle_up = 0;        // idle connections that connected and echoed once
    std::uint64_t idle_verified = 0;  // of those, verified again once every one was up
    // Open loop: sends the schedule owed inside the window that were never made (the sender
    // fell behind). Each is in `latency` as late as the window's end had made it already.
    std::uint64_t unsent = 0;
    double setup_seconds = 0;         // until every idle connection (all processes) was up, or
                                      // (pub/sub) every subscriber was confirmed
    double seconds = 0;          // the measured window's length
    bool cut_short = false;      // a stop signal ended it before --duration
    std::string backend;         // what the load ran on
    std::string first_error;     // what went wrong first, for the one-line message
    pubsub_counts pubsub;
    std::vector<histogram> steps;  // pub/sub: each step's latencies (its share of `latency`)

    void merge(const results& o);
    std::string serialize() const;  // for --procs: one line, then one per step histogram
    bool deserialize(const std::string& line);
};

// Live counters for the progress line, written by every core (and, in shared memory, by every
// process) with relaxed atomics.
struct live_counters {
    std::atomic<std::uint64_t> messages{0};
    std::atomic<std::uint64_t> errors{0};
    std::atomic<std::uint64_t> connected{0};
    std::atomic<std::uint64_t> p99_ns{0};  // the last second's p99 on the slowest core
    std::atomic<std::uint64_t> idle_settled{0};   // idle connections up or failed
    std::atomic<std::uint64_t> idle_checked{0};   // sampled idle connections verified or failed
    std::atomic<std::uint64_t> published{0};      // pub/sub: publishes sent
    std::atomic<std::uint64_t> settled{0};        // active connections up or failed
    std::atomic<std::int64_t> window_from{INT64_MAX};  // the measured window opens (once all settled)
};

// How many idle connections are sampled for the second check, in all.
std::uint64_t idle_sampled(const settings& s) noexcept;

// The local address connection `conn` binds (empty: the kernel's choice).
address source_of(const settings& s, std::uint64_t conn);

// Message `seq` of connection `conn`: its size and its bytes.
std::size_t message_size(const settings& s, std::uint64_t conn, std::uint64_t seq) noexcept;
void fill(std::span<std::byte> msg, std::uint64_t conn, std::uint64_t seq) noexcept;

// Runs connections [first, first + count) on the current core until the measured window has
// passed and every reply is in (or has failed), and adds what happened to *out.
// In idle mode, idle connections [idle_first, idle_first + idle_count) are this core's share.
task<> run_share(const settings& s, std::uint64_t first, std::uint64_t count, results* out, live_counters* live,
                 std::uint64_t idle_first = 0, std::uint64_t idle_count = 0);

constexpr std::int64_t never = INT64_MAX;

// Once a second, until cancelled: the last second's p99 from `interval` into live.p99_ns (the
// slowest core's wins), for the progress line.
task<> report_p99(histogram& interval, live_counters& live);
// Calls on_stop() once this core starts stopping (a stop signal); cancel it when the run is over.
template <class Fn>
task<> when_stopping(Fn on_stop) {
    while (!core::current().stopping()) {
        const auto slept = co_await sleep_for(std::chrono::milliseconds{10});
        if (!slept) co_return;
    }
    on_stop();
}

// One task waits here until another task of the same core calls notify(). The two tasks of a
// connection use a pair of these: neither is ever left waiting when the other ends.
class wake_slot {
public:
    auto wait() noexcept {
        struct awaiter {
            wake_slot& slot;
            bool await_ready() const noexcept { return false; }
            void await_suspend(std::coroutine_handle<> h) noexcept {
                slot.handle_ = h;
                slot.ctx_ = core::current().current_task();
            }
            void await_resume() const noexcept {}
        };
        return awaiter{*this};
    }
    void notify() noexcept {
        if (handle_) core::current().resume_later(std::exchange(handle_, {}), ctx_);
    }

private:
    std::coroutine_handle<> handle_;
    detail::task_context* ctx_ = nullptr;
};

// At most `free` connects in flight on this core; the rest wait in order.
class gate {
public:
    explicit gate(unsigned n) : free_{n} {}
    task<> enter() {
        if (free_ > 0) {
            --free_;
            co_return;
        }
        waiting_.emplace_back();
        co_await waiting_.back().wait();  // leave() passed its place on to us
    }
    void leave() {
        if (waiting_.empty()) {
            ++free_;
            return;
        }
        waiting_.front().notify();
        waiting_.pop_front();  // the slot was only needed until notify
    }

private:
    unsigned free_;
    std::deque<wake_slot> waiting_;
};

// ---- The pub/sub workload (pubsub.cpp) ----

// What every core of every process shares while the pub/sub workload runs: when publishing
// starts and stops, how many messages each publisher sent to each channel (the subscribers count
// their losses against it) and how each step went. Its counters live in one MAP_SHARED anonymous
// mapping, made before --procs forks, so the processes see one board.
struct pubsub_step {
    std::atomic<std::uint64_t> published{0};  // publishes sent (scheduled) inside the step's window
    std::atomic<std::uint64_t> expected{0};   // the deliveries they owe: each times its channel's subscribers
    std::atomic<std::uint64_t> on_time{0};    // of those, delivered within step_limit of the send time
    std::atomic<int> verdict{0};              // 0 not judged, 1 the next step runs, 2 the run stopped here
};

class pubsub_board {
    struct shared_head {
        std::atomic<std::uint64_t> settled{0};
        std::atomic<std::uint64_t> publishers_ready{0};
        std::atomic<std::uint64_t> publishers_done{0};
        std::atomic<std::int64_t> start_ns;
        std::atomic<std::int64_t> cut_ns;
    };
    std::size_t map_bytes_;
    void* map_;
    shared_head* head_;

public:
    explicit pubsub_board(const settings& s);  // throws std::system_error when mmap fails
    ~pubsub_board();
    pubsub_board(const pubsub_board&) = delete;
    pubsub_board& operator=(const pubsub_board&) = delete;

    const settings& s;
    const std::int64_t created_ns;                   // setup time counts from here
    std::atomic<std::uint64_t>& settled;             // subscribers confirmed or failed
    std::atomic<std::uint64_t>& publishers_ready;    // publishers connected or failed
    std::atomic<std::uint64_t>& publishers_done;     // publishers that stopped and saw their last answer
    std::atomic<std::int64_t>& start_ns;             // publishing starts (every subscriber is in)
    std::atomic<std::int64_t>& cut_ns;               // a stop signal ended the window here (or never)
    pubsub_step* const steps;                        // [s.pubsub.steps]
    std::atomic<std::uint64_t>* const published;     // [publisher * channels + channel]

    std::int64_t measure_from() const noexcept;      // start + warmup (never before the start)
    std::int64_t step_from(unsigned k) const noexcept;  // step k's window: [step_from, step_to)
    std::int64_t step_to(unsigned k) const noexcept;  // (no later than the cut)
    std::int64_t stop_at() const noexcept;           // the last step's end
    int step_of(std::int64_t sent_ns) const noexcept;  // the step whose window holds sent_ns, or -1
    std::uint64_t subscribers_of(unsigned channel) const noexcept;  // that take `channel`, in all
    // Once step k's pause is over: whether the next step runs. The first caller (of any process)
    // judges it; everyone after reads that verdict, so all publishers agree.
    bool go_on_after(unsigned k) noexcept;
    // A stop signal (Ctrl-C, TERM, HUP) in any core of any process: publishing ends now, the
    // deliveries owed still come in, and the window is what ran.
    void cut() noexcept;
    bool was_cut() const noexcept { return cut_ns.load(std::memory_order_acquire) != never; }
};

// The smallest payload: publisher id, channel, sequence number and send time.
constexpr std::size_t pubsub_header_bytes = 24;

// A channel's name and the pattern that matches exactly it: RESP "ch<N>" and "*h<N>", NATS
// "ch.<N>" and "*.<N>" (every channel starts with "ch", so the leading wildcard adds nothing
// but the matching work).
std::string channel_name(protocol p, unsigned channel);
std::string channel_pattern(protocol p, unsigned channel);

// The payload of publisher `pub`'s message `seq` to `channel`, sent (or meant to be) at sent_ns;
// and its check: true when every byte is what that header implies.
void fill_publish(std::span<std::byte> payload, std::uint32_t pub, std::uint32_t channel, std::uint64_t seq,
                  std::int64_t sent_ns, unsigned channels) noexcept;
struct publish_header {
    std::uint32_t pub = 0, channel = 0;
    std::uint64_t seq = 0;
    std::int64_t sent_ns = 0;
};
bool check_publish(std::span<const std::byte> payload, unsigned channels, publish_header& out) noexcept;

// Runs subscribers [sub_first, +sub_count) and publishers [pub_first, +pub_count) on the current
// core: subscribe, publish once every subscriber of every core is in, drain, then count losses.
task<> run_pubsub_share(const settings& s, pubsub_board& board, std::uint64_t sub_first, std::uint64_t sub_count,
                        std::uint64_t pub_first, std::uint64_t pub_count, results* out, live_counters* live);

}  // namespace coring::load
