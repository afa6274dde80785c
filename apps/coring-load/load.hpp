#pragma once
// The echo workload of coring-load, as a library part so tests run the very code the tool runs.
// Each connection keeps up to `depth` messages in flight; a sender and a receiver task share it.
// Every byte of every reply is checked against the message it answers (content derived from the
// connection id and sequence number), so a reply that is torn, reordered, or meant for another
// connection is caught. Errors are counted by kind, never dropped.
#include "histogram.hpp"

#include <coring/coring.hpp>
#include <coring/reader.hpp>

#include <atomic>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace coring::load {

// What a connection speaks. echo: every message comes back as sent. http: each message is a GET
// of http_path (keep-alive, pipelined up to depth), and each response must be 200 with
// exactly http_expect as its body. ws: a WebSocket to ws_path (the handshake is part of the
// connect), each message a binary one that must come back as sent.
enum class protocol : std::uint8_t { echo, http, ws };

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

struct results {
    std::uint64_t messages = 0;  // verified replies inside the measured window
    std::uint64_t bytes = 0;     // of those, payload bytes (one direction)
    histogram latency;           // ns, of those
    error_counts errors;
    std::uint64_t connected = 0;
    std::uint64_t idle_up = 0;        // idle connections that connected and echoed once
    std::uint64_t idle_verified = 0;  // of those, verified again once every one was up
    double setup_seconds = 0;         // until every idle connection (all processes) was up
    double seconds = 0;          // the measured window's length
    std::string backend;         // what the load ran on
    std::string first_error;     // what went wrong first, for the one-line message

    void merge(const results& o);
    std::string serialize() const;  // one line, for --procs
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

}  // namespace coring::load
