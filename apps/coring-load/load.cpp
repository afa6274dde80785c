#include "load.hpp"

#include <coring/log.hpp>

#include <arpa/inet.h>
#include <cstring>
#include <netinet/in.h>
#include <deque>
#include <memory>

namespace coring::load {

error_counts& error_counts::operator+=(const error_counts& o) noexcept {
    connect += o.connect;
    io += o.io;
    eof += o.eof;
    verify += o.verify;
    timeout += o.timeout;
    return *this;
}

void results::merge(const results& o) {
    messages += o.messages;
    bytes += o.bytes;
    latency.merge(o.latency);
    errors += o.errors;
    connected += o.connected;
    seconds = std::max(seconds, o.seconds);
    if (backend.empty()) backend = o.backend;
    if (first_error.empty()) first_error = o.first_error;
}

std::string results::serialize() const {
    // first_error last: it is free text up to the end of the line.
    return format("messages={} bytes={} connected={} seconds={} connect={} io={} eof={} verify={} timeout={} backend={} hist={} | {}",
                  messages, bytes, connected, seconds, errors.connect, errors.io, errors.eof, errors.verify,
                  errors.timeout, backend.empty() ? "-" : backend, latency.serialize(), first_error);
}

bool results::deserialize(const std::string& line) {
    const auto bar = line.find(" | ");
    const auto hist = line.find("hist=");
    if (bar == std::string::npos || hist == std::string::npos || hist > bar) return false;
    first_error = line.substr(bar + 3);
    if (!latency.deserialize(std::string_view{line}.substr(hist + 5, bar - hist - 5))) return false;
    unsigned long long m, b, c, ce, io_, eo, ve, to;
    double sec;
    char be[32] = {};
    if (std::sscanf(line.c_str(), "messages=%llu bytes=%llu connected=%llu seconds=%lf connect=%llu io=%llu eof=%llu verify=%llu timeout=%llu backend=%31s",
                    &m, &b, &c, &sec, &ce, &io_, &eo, &ve, &to, be) != 10)
        return false;
    backend = std::string{be} == "-" ? "" : be;
    messages = m;
    bytes = b;
    connected = c;
    seconds = sec;
    errors = {ce, io_, eo, ve, to};
    return true;
}

address source_of(const settings& s, std::uint64_t conn) {
    if (s.source_count == 0) return {};
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(s.source_first + static_cast<std::uint32_t>(conn % s.source_count));
    return address::from_sockaddr(reinterpret_cast<const sockaddr*>(&a), sizeof a);
}

std::size_t message_size(const settings& s, std::uint64_t conn, std::uint64_t seq) noexcept {
    if (s.size_max <= s.size_min) return s.size_min;
    std::uint64_t x = (conn + 1) * 0x9E3779B97F4A7C15ull ^ (seq + 1) * 0xC2B2AE3D27D4EB4Full;
    x ^= x >> 31;
    return s.size_min + static_cast<std::size_t>(x % (s.size_max - s.size_min + 1));
}

void fill(std::span<std::byte> msg, std::uint64_t conn, std::uint64_t seq) noexcept {
    // A splitmix64 stream seeded by (conn, seq), eight bytes per step.
    std::uint64_t x = (conn << 32) ^ (seq * 0x9E3779B97F4A7C15ull) ^ 0x5851F42D4C957F2Dull;
    std::size_t i = 0;
    while (i < msg.size()) {
        x += 0x9E3779B97F4A7C15ull;
        std::uint64_t z = x;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        const std::size_t n = std::min<std::size_t>(8, msg.size() - i);
        std::memcpy(msg.data() + i, &z, n);
        i += n;
    }
}

namespace {

constexpr std::int64_t never = INT64_MAX;

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

// What the connections of one core share.
struct share {
    const settings& s;
    results& out;
    live_counters& live;
    histogram interval;                 // this second's latencies, for the progress line
    gate connecting;
    std::uint64_t pending_connects;     // connections not yet up (or failed)
    std::int64_t measure_from = never;  // set when the last connection is up: + warmup
    std::int64_t stop_at = never;
    std::int64_t interval_ns = 0;       // open loop: time between one connection's sends

    void fail(std::uint64_t error_counts::* kind_counter, std::uint64_t id, const std::string& what) {
        ++(out.errors.*kind_counter);
        live.errors.fetch_add(1, std::memory_order_relaxed);
        if (out.first_error.empty()) out.first_error = format("connection {}: {}", id, what);
    }
    void connection_settled() {
        if (--pending_connects == 0) {
            measure_from = core::now_ns() + static_cast<std::int64_t>(s.warmup * 1e9);
            stop_at = measure_from + static_cast<std::int64_t>(s.duration * 1e9);
        }
    }
};

struct connection {
    connection(std::uint64_t i, share& s, tcp_stream st) : id{i}, sh{s}, stream{std::move(st)} {}
    std::uint64_t id;
    share& sh;
    tcp_stream stream;
    std::uint64_t sent = 0;
    std::uint64_t received = 0;
    bool sender_done = false;
    bool failed = false;
    wake_slot sender_wait;
    wake_slot receiver_wait;
    std::vector<std::int64_t> sent_at;  // by seq % window: when each message was (meant to be) sent
    std::vector<std::byte> out_buf, in_buf, expected;

    std::uint64_t window() const { return sent_at.size(); }

    void fail(std::uint64_t error_counts::* kind, const std::string& what) {
        if (failed) return;  // one error per connection: the rest follow from it
        failed = true;
        sh.fail(kind, id, what);
        sender_wait.notify();
        receiver_wait.notify();
    }
    void classify(std::error_code ec, const char* during) {
        if (ec == std::errc::timed_out) fail(&error_counts::timeout, format("no reply within {} ms", sh.s.reply_timeout.count()));
        else fail(&error_counts::io, format("{}: {}", during, ec.message()));
    }
};

task<> send_loop(connection& c) {
    const settings& s = c.sh.s;
    std::int64_t next_send = core::now_ns();
    for (;;) {
        if (c.failed || core::now_ns() >= c.sh.stop_at) break;
        if (c.sent - c.received >= c.window()) {  // the window is full: wait for a reply
            co_await c.sender_wait.wait();
            continue;
        }
        std::int64_t at = core::now_ns();
        if (s.rate > 0) {  // open loop: the schedule decides, and latency counts from it
            at = next_send;
            next_send += c.sh.interval_ns;
            if (at > core::now_ns()) {
                const auto slept = co_await sleep_until(std::chrono::steady_clock::time_point{std::chrono::nanoseconds{at}});
                if (!slept || core::now_ns() >= c.sh.stop_at) break;
            }
        }
        const std::size_t n = message_size(s, c.id, c.sent);
        const auto msg = std::span(c.out_buf).first(n);
        fill(msg, c.id, c.sent);
        c.sent_at[c.sent % c.window()] = at;
        const auto written = co_await c.stream.write_all(msg);
        if (!written) {
            c.classify(written.error(), "send");
            break;
        }
        ++c.sent;
        c.receiver_wait.notify();
    }
    c.sender_done = true;
    c.receiver_wait.notify();
}

task<> receive_loop(connection& c) {
    share& sh = c.sh;
    while (!c.failed) {
        if (c.received == c.sent) {
            if (c.sender_done) break;  // every reply is in
            co_await c.receiver_wait.wait();
            continue;
        }
        const std::size_t n = message_size(sh.s, c.id, c.received);
        const auto got = std::span(c.in_buf).first(n);
        std::size_t have = 0;
        while (have < n) {
            auto r = co_await c.stream.recv(got.subspan(have));
            if (!r) {
                c.classify(r.error(), "recv");
                break;
            }
            if (*r == 0) {
                c.fail(&error_counts::eof, "the server closed the connection");
                break;
            }
            have += *r;
        }
        if (c.failed) break;
        const auto want = std::span(c.expected).first(n);
        fill(want, c.id, c.received);
        if (std::memcmp(got.data(), want.data(), n) != 0) {
            c.fail(&error_counts::verify, format("reply {} differs from the message sent", c.received));
            break;
        }
        const std::int64_t sent_at = c.sent_at[c.received % c.window()];
        const std::int64_t now = core::now_ns();
        if (sent_at >= sh.measure_from && sent_at < sh.stop_at) {
            const auto ns = static_cast<std::uint64_t>(std::max<std::int64_t>(0, now - sent_at));
            sh.out.latency.record(ns);
            sh.interval.record(ns);
            ++sh.out.messages;
            sh.out.bytes += n;
            sh.live.messages.fetch_add(1, std::memory_order_relaxed);
        }
        ++c.received;
        c.sender_wait.notify();
    }
}

task<> one_connection(share& sh, std::uint64_t id) {
    const settings& s = sh.s;
    co_await sh.connecting.enter();
    auto conn = co_await tcp_stream::connect_from(source_of(s, id), s.target, s.reply_timeout);
    sh.connecting.leave();
    sh.connection_settled();
    if (!conn) {
        sh.fail(&error_counts::connect, id, format("connect to {}: {}", s.target.to_string(), conn.error().message()));
        co_return;
    }
    ++sh.out.connected;
    sh.live.connected.fetch_add(1, std::memory_order_relaxed);
    (void)conn->set_nodelay(true);
    conn->set_idle_timeout(s.reply_timeout);
    // Heap state: the connection outlives neither task, and the tasks hold its address.
    auto c = std::make_unique<connection>(id, sh, std::move(*conn));
    c->sent_at.assign(s.rate > 0 ? 1024 : s.depth, 0);
    c->out_buf.resize(s.size_max);
    c->in_buf.resize(s.size_max);
    c->expected.resize(s.size_max);
    task_group sender;
    sender.spawn(send_loop(*c));
    co_await receive_loop(*c);
    co_await sender.join();
    co_await c->stream.close();
}

// Once a second: this core's share of the progress line.
task<> report_interval(share& sh) {
    for (;;) {
        const auto slept = co_await sleep_for(std::chrono::seconds{1});
        if (!slept) co_return;  // cancelled: the run is over
        const std::uint64_t p99 = sh.interval.percentile(0.99);
        sh.interval.reset();
        std::uint64_t seen = sh.live.p99_ns.load(std::memory_order_relaxed);
        while (p99 > seen && !sh.live.p99_ns.compare_exchange_weak(seen, p99, std::memory_order_relaxed)) {
        }
    }
}

// The measured window's edges, as log lines: when they pass, a script reads the server's CPU
// time, so CPU per message counts exactly the window's messages.
task<> announce_window(share& sh) {
    while (sh.measure_from == never) {
        const auto slept = co_await sleep_for(std::chrono::milliseconds{2});
        if (!slept) co_return;
    }
    auto until = [](std::int64_t ns) { return std::chrono::steady_clock::time_point{std::chrono::nanoseconds{ns}}; };
    const auto opened = co_await sleep_until(until(sh.measure_from));  // never co_await in a condition (g++ 12)
    if (!opened) co_return;
    log("measuring");
    const auto closed = co_await sleep_until(until(sh.stop_at));
    if (!closed) co_return;
    log("measured");
}

}  // namespace

task<> run_share(const settings& s, std::uint64_t first, std::uint64_t count, results* out, live_counters* live) {
    share sh{s, *out, *live, {}, gate{std::max(1u, s.connect_parallel)}, count};
    if (s.rate > 0) sh.interval_ns = static_cast<std::int64_t>(1e9 * static_cast<double>(s.conns) / s.rate);
    if (count == 0) co_return;
    task_group ticker;
    ticker.spawn(report_interval(sh));
    if (s.announce_window) ticker.spawn(announce_window(sh));
    task_group conns;
    for (std::uint64_t i = 0; i < count; ++i) conns.spawn(one_connection(sh, first + i));
    co_await conns.join();
    co_await ticker.cancel_and_join();
    out->seconds = s.duration;
}

}  // namespace coring::load
