#pragma once
// What the pub/sub workload's files share: pubsub.cpp (a core's share of the run, connecting),
// pubsub_sub.cpp (the subscribers) and pubsub_pub.cpp (the publishers).
#include "load.hpp"

#include <coring/log.hpp>
#include <coring/resp/resp.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <optional>
#include <system_error>

#include <coring/reader.hpp>

#include <deque>
#include <memory>
#include <string>
#include <vector>

namespace coring::load::pubsub_detail {

inline std::span<const std::byte> bytes_of(std::string_view s) noexcept { return std::as_bytes(std::span(s.data(), s.size())); }
inline std::string_view text_of(std::span<const std::byte> b) noexcept { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

// What the connections of one core share.
struct core_share {
    const settings& s;
    pubsub_board& board;
    results& out;
    live_counters& live;
    gate connecting;
    histogram interval;                   // this second's latencies, for the progress line
    std::vector<resp::reply_item> items;  // parse_reply's output: no parse spans a co_await
    resp::limits lim;
    std::size_t max_frame;                // the largest frame the server may rightly send
    std::size_t spill_limit;              // a reader's bound: a partial frame plus one received buffer
    std::vector<std::string> names;       // channel_name of each channel, made once

    const pubsub_settings& ps() const noexcept { return s.pubsub; }
    bool nats() const noexcept { return s.proto == protocol::nats; }
    bool publishing_over() const noexcept {
        return board.publishers_done.load(std::memory_order_acquire) >= ps().publishers;
    }
    void fail(std::uint64_t error_counts::* kind, const std::string& who, const std::string& what) {
        ++(out.errors.*kind);
        live.errors.fetch_add(1, std::memory_order_relaxed);
        if (out.first_error.empty()) out.first_error = format("{}: {}", who, what);
    }
    void fail_io(const std::string& who, std::error_code ec, const char* during) {
        if (ec == std::errc::operation_canceled && board.was_cut()) return;  // the stop's drain ran out
        if (ec == std::errc::timed_out) fail(&error_counts::timeout, who, format("no answer within {} ms", s.reply_timeout.count()));
        else fail(&error_counts::io, who, format("{}: {}", during, ec.message()));
    }
    // Publishing starts once every subscriber and publisher (every core) is in; whoever sees it first.
    void try_start() noexcept {
        if (board.was_cut()) return;
        if (board.settled.load(std::memory_order_acquire) < ps().subscribers) return;
        if (board.publishers_ready.load(std::memory_order_acquire) < ps().publishers) return;
        std::int64_t expected = never;
        board.start_ns.compare_exchange_strong(expected, core::now_ns(), std::memory_order_acq_rel);
    }
};

// A run of sequence numbers [first, end) that a subscriber skipped: if one comes later, it was
// reordered, not duplicated. At most max_gaps per (subscriber, publisher): past that the oldest
// run is forgotten, and a late arrival from it counts as a duplicate (a failure either way).
struct gap {
    std::uint64_t first, end;
};
constexpr std::size_t max_gaps = 64;

struct subscriber {
    std::uint64_t id;                     // over every process: picks the source address
    std::string who;
    unsigned channel;
    std::string name, pattern;            // of its channel: what deliveries must name
    bool slow;
    std::vector<std::uint64_t> next;      // per publisher: the sequence number expected next
    std::vector<std::vector<gap>> gaps;   // per publisher
    std::uint64_t unique = 0;             // distinct messages received
    bool done = false;                    // its task has ended
    bool failed = false;                  // an error, counted
    bool cut = false;                     // the server closed it
};

struct publisher {
    std::uint32_t id;
    std::string who;
    tcp_stream* stream = nullptr;
    std::vector<std::uint64_t> seq;    // per channel: the next sequence number
    std::uint64_t next_channel = 0;    // round-robin over the channels
    std::uint64_t sent = 0;            // publishes written
    std::uint64_t answered = 0;        // of those, answered (RESP) or covered by a PONG (NATS)
    std::deque<std::uint64_t> pings;   // NATS: the publishes each PING outstanding covers (at most depth + 1)
    bool sender_done = false;
    bool failed = false;
    wake_slot sender_wait, receiver_wait;
    std::string out;                   // the commands of one write
    std::vector<std::byte> payload;

    void fail() {
        failed = true;
        sender_wait.notify();
        receiver_wait.notify();
    }
};

// One of this core's connections (pubsub.cpp); a failure is counted.
task<std::optional<tcp_stream>> connect_counted(core_share& sh, const std::string& who, std::uint64_t id);
// NATS: the server's INFO line, left in the reader (pubsub.cpp); false (counted) for anything else.
task<bool> await_info(core_share& sh, buffered_reader& in, const std::string& who);

task<> run_subscriber(core_share& sh, subscriber* sub_ptr);  // pubsub_sub.cpp
task<> drain(core_share& sh, std::vector<std::unique_ptr<subscriber>>& subs, task_group& readers);  // pubsub_sub.cpp
task<> run_publisher(core_share& sh, publisher* p_ptr);  // pubsub_pub.cpp

}  // namespace coring::load::pubsub_detail
