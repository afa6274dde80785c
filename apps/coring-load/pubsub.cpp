// The pub/sub workload of coring-load: S subscribers over K channels and P publishers, over RESP
// (redis-server, coring-pubsub) or NATS's text protocol (nats-server).
//
// Every delivery is verified. A payload carries its publisher, channel, sequence number (per
// publisher and channel) and send time, and is padded with bytes derived from those, so a
// subscriber can tell a torn or misrouted message (an error), a sequence number it has seen
// (a duplicate), one that comes after a later one (reordered), and, at the end, how many of the
// messages published to its channel never came (lost). Publishing starts only once every
// subscriber of every core (and, with --procs, every process) has its subscription confirmed, so
// "published to my channel" is exactly what a subscriber must receive.
#include "load.hpp"

#include <coring/log.hpp>
#include <coring/resp/resp.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <optional>
#include <system_error>

namespace coring::load {

namespace {

std::span<const std::byte> bytes_of(std::string_view s) noexcept { return std::as_bytes(std::span(s.data(), s.size())); }
std::string_view text_of(std::span<const std::byte> b) noexcept { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

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
        if (ec == std::errc::timed_out) fail(&error_counts::timeout, who, format("no answer within {} ms", s.reply_timeout.count()));
        else fail(&error_counts::io, who, format("{}: {}", during, ec.message()));
    }
    // Publishing starts once every subscriber and publisher (every core) is in; whoever sees it first.
    void try_start() noexcept {
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

// One delivery's checks and counts; false (error counted) when it is not a message we sent.
bool on_delivery(core_share& sh, subscriber& sub, std::string_view channel, std::span<const std::byte> payload) {
    publish_header h;
    if (payload.size() != sh.s.size_min || !check_publish(payload, sh.ps().channels, h) || h.pub >= sh.ps().publishers ||
        h.channel != sub.channel || channel != sub.name) {
        sh.fail(&error_counts::verify, sub.who, format("a delivery on {} is not a message published to {}", channel, sub.name));
        return false;
    }
    std::uint64_t& next = sub.next[h.pub];
    auto& gaps = sub.gaps[h.pub];
    if (h.seq < next) {
        const auto in = std::find_if(gaps.begin(), gaps.end(), [&](const gap& g) { return h.seq >= g.first && h.seq < g.end; });
        if (in == gaps.end()) {
            ++sh.out.pubsub.duplicated;
            return true;
        }
        ++sh.out.pubsub.reordered;
        const gap g = *in;
        gaps.erase(in);
        if (g.first < h.seq) gaps.push_back({g.first, h.seq});
        if (h.seq + 1 < g.end) gaps.push_back({h.seq + 1, g.end});
        while (gaps.size() > max_gaps) gaps.erase(gaps.begin());
    } else {
        if (h.seq > next) {
            gaps.push_back({next, h.seq});
            if (gaps.size() > max_gaps) gaps.erase(gaps.begin());
        }
        next = h.seq + 1;
    }
    ++sub.unique;
    ++sh.out.pubsub.delivered;
    const std::int64_t now = core::now_ns();
    if (!sub.slow && h.sent_ns >= sh.board.measure_from() && h.sent_ns < sh.board.stop_at()) {  // slow ones apart
        const auto ns = static_cast<std::uint64_t>(std::max<std::int64_t>(0, now - h.sent_ns));
        sh.out.latency.record(ns);
        sh.interval.record(ns);
        if (const int k = sh.board.step_of(h.sent_ns); k >= 0) {
            sh.out.steps[static_cast<std::size_t>(k)].record(ns);
            if (ns <= static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(sh.ps().step_limit).count()))
                sh.board.steps[k].on_time.fetch_add(1, std::memory_order_relaxed);
        }
        ++sh.out.messages;
        sh.out.bytes += payload.size();
        sh.live.messages.fetch_add(1, std::memory_order_relaxed);
    }
    return true;
}

enum class step { more, failed };  // what a parse pass over the buffered bytes found

// RESP: the subscription's confirmation (`confirmed`) or deliveries, every complete frame in `in`.
step parse_resp_subscriber(core_share& sh, subscriber& sub, buffered_reader& in, bool& confirmed) {
    for (;;) {
        const auto got = resp::parse_reply(in.peek_text(), sh.items, sh.lim);
        if (got.status == resp::parse_status::incomplete) return step::more;
        if (got.status == resp::parse_status::error) {
            sh.fail(&error_counts::verify, sub.who, format("malformed reply: {}", got.error));
            return step::failed;
        }
        const auto& it = sh.items;
        const bool message = it.size() == 4 && it[0].type == '*' && it[1].text == "message";
        const bool pmessage = it.size() == 5 && it[0].type == '*' && it[1].text == "pmessage" &&
                              it[2].text == sub.pattern;
        const std::string_view want = sh.ps().patterns ? "psubscribe" : "subscribe";
        if (message || pmessage) {
            const auto& payload = it[it.size() - 1];
            if (!confirmed || payload.type != '$') {
                sh.fail(&error_counts::verify, sub.who, !confirmed ? "a message before the confirmation" : "a message without a payload");
                return step::failed;
            }
            if (!on_delivery(sh, sub, it[it.size() - 2].text, bytes_of(payload.text))) return step::failed;
        } else if (!confirmed && it.size() == 4 && it[0].type == '*' && it[1].text == want && it[3].type == ':') {
            confirmed = true;
        } else {
            const std::string_view what = it.empty() ? std::string_view{} : it[0].type == '*' && it.size() > 1 ? it[1].text : it[0].text;
            sh.fail(&error_counts::verify, sub.who, format("unexpected reply '{}'", what.substr(0, 80)));
            return step::failed;
        }
        in.consume(got.consumed);
    }
}

// NATS: the PONG that follows our SUB (`confirmed`), deliveries, and PINGs to answer.
step parse_nats_subscriber(core_share& sh, subscriber& sub, buffered_reader& in, bool& confirmed, unsigned& pongs_owed) {
    for (;;) {
        nats_frame f;
        const auto got = parse_nats(in.peek_text(), f, sh.max_frame);
        if (got.st == nats_parsed::status::incomplete) return step::more;
        if (got.st == nats_parsed::status::error) {
            sh.fail(&error_counts::verify, sub.who, format("malformed NATS frame: {}", got.error));
            return step::failed;
        }
        switch (f.type) {
        case nats_frame::kind::msg:
            if (!confirmed || f.sid != "1" || !on_delivery(sh, sub, f.subject, bytes_of(f.payload))) {
                if (!confirmed || f.sid != "1") sh.fail(&error_counts::verify, sub.who, "a MSG that is not for our subscription");
                return step::failed;
            }
            break;
        case nats_frame::kind::pong:
            confirmed = true;
            break;
        case nats_frame::kind::ping:
            ++pongs_owed;
            break;
        case nats_frame::kind::err:
            sh.fail(&error_counts::verify, sub.who, format("-ERR {}", f.text.substr(0, 120)));
            return step::failed;
        case nats_frame::kind::ok:
        case nats_frame::kind::info:
            break;
        }
        in.consume(got.consumed);
    }
}

// Slow subscribers stop reading from slow_after seconds into publishing until it is over (as a
// stalled client would), then read what is left, or find that the server cut them.
task<> stall_if_slow(core_share& sh, subscriber& sub, bool& stalled) {
    if (!sub.slow || stalled) co_return;
    const std::int64_t start = sh.board.start_ns.load(std::memory_order_acquire);
    if (start == never || core::now_ns() < start + static_cast<std::int64_t>(sh.ps().slow_after * 1e9)) co_return;
    stalled = true;
    // Bounded: publishing ends by stop_at plus the publishers' last answers.
    const std::int64_t give_up = sh.board.stop_at() + 2 * sh.s.reply_timeout.count() * 1'000'000;
    while (!sh.publishing_over() && core::now_ns() < give_up) {
        const auto slept = co_await sleep_for(std::chrono::milliseconds{10});
        if (!slept) co_return;
    }
}

// One of this core's connections (at most connect_parallel connecting at once), its waits
// bounded by reply_timeout until the caller says otherwise; a failure is counted. `id` picks
// the source address (--bind-range): past ~28,000 connections to one port, one source address
// runs out of ephemeral ports.
task<std::optional<tcp_stream>> connect_counted(core_share& sh, const std::string& who, std::uint64_t id) {
    co_await sh.connecting.enter();
    auto conn = co_await tcp_stream::connect_from(source_of(sh.s, id), sh.s.target, sh.s.reply_timeout);
    sh.connecting.leave();
    if (!conn) {
        sh.fail(&error_counts::connect, who, format("connect to {}: {}", sh.s.target.to_string(), conn.error().message()));
        co_return std::nullopt;
    }
    ++sh.out.connected;
    sh.live.connected.fetch_add(1, std::memory_order_relaxed);
    (void)conn->set_nodelay(true);
    conn->set_idle_timeout(sh.s.reply_timeout);
    co_return std::move(*conn);
}

// NATS: the server speaks first, with its INFO line; a client answers with CONNECT. The line
// stays in the reader (the frame parsers skip INFO); false (counted) when something else came.
task<bool> await_info(core_share& sh, buffered_reader& in, const std::string& who) {
    const auto line = co_await in.read_until("\r\n", 64 * 1024);
    if (!line || line->empty()) {
        if (!line) sh.fail_io(who, line.error(), "recv");
        else sh.fail(&error_counts::eof, who, "the server closed the connection before its INFO");
        co_return false;
    }
    if (!text_of(*line).starts_with("INFO ")) {
        sh.fail(&error_counts::verify, who, format("expected INFO, got '{}'", text_of(*line).substr(0, 80)));
        co_return false;
    }
    co_return true;
}

task<> run_subscriber(core_share& sh, subscriber* sub_ptr) {
    subscriber& sub = *sub_ptr;
    auto conn = co_await connect_counted(sh, sub.who, sub.id);  // its idle timeout bounds the subscription only
    if (!conn) {
        sub.failed = sub.done = true;
        sh.board.settled.fetch_add(1, std::memory_order_acq_rel);
        co_return;
    }
    auto in = std::make_unique<buffered_reader>(*conn, sh.spill_limit);
    const std::string& target = sh.ps().patterns ? sub.pattern : sub.name;
    std::string hello;
    if (sh.nats()) {
        hello = format("CONNECT {\"verbose\":false,\"pedantic\":false}\r\nSUB {} 1\r\nPING\r\n", target);
    } else {
        resp::append_array(hello, 2);
        resp::append_bulk(hello, sh.ps().patterns ? "PSUBSCRIBE" : "SUBSCRIBE");
        resp::append_bulk(hello, target);
    }
    bool confirmed = false, counted = false, stalled = false;
    unsigned pongs_owed = 0;
    if (sh.nats()) {
        const bool info = co_await await_info(sh, *in, sub.who);  // never co_await in a condition (g++ 12)
        sub.failed = !info;
    }
    if (!sub.failed) {
        const auto sent = co_await conn->write_all(bytes_of(hello));
        if (!sent) {
            sh.fail_io(sub.who, sent.error(), "send");
            sub.failed = true;
        }
    }
    while (!sub.failed) {
        const step st = sh.nats() ? parse_nats_subscriber(sh, sub, *in, confirmed, pongs_owed)
                                  : parse_resp_subscriber(sh, sub, *in, confirmed);
        if (st == step::failed) {
            sub.failed = true;
            break;
        }
        if (confirmed && !counted) {
            counted = true;
            conn->set_idle_timeout({});
            ++sh.out.pubsub.subscribed;
            sh.board.settled.fetch_add(1, std::memory_order_acq_rel);
        }
        for (; pongs_owed > 0; --pongs_owed) {
            const auto pong = co_await conn->write_all(bytes_of("PONG\r\n"));
            if (!pong) break;  // the next receive reports what went wrong
        }
        co_await stall_if_slow(sh, sub, stalled);
        const auto n = co_await in->fill();
        if (!n) {
            if (n.error() == std::errc::operation_canceled) break;  // the drain is over
            if (sub.slow && stalled && n.error() == std::errc::connection_reset) sub.cut = true;
            else sh.fail_io(sub.who, n.error(), "recv");
            sub.failed = !sub.cut;
            break;
        }
        if (*n == 0) {
            if (sub.slow && stalled) sub.cut = true;
            else {
                sh.fail(&error_counts::eof, sub.who, "the server closed the subscriber's connection");
                sub.failed = true;
            }
            break;
        }
    }
    if (!counted) sh.board.settled.fetch_add(1, std::memory_order_acq_rel);  // failed before its confirmation
    sub.done = true;
    in.reset();
    co_await conn->close();
}

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

// Appends one publish (the next channel in turn) to p.out and counts it as sent.
void add_publish(core_share& sh, publisher& p, std::int64_t at) {
    const unsigned channels = sh.ps().channels;
    const auto channel = static_cast<std::uint32_t>(p.next_channel++ % channels);
    const std::uint64_t seq = p.seq[channel]++;
    fill_publish(p.payload, p.id, channel, seq, at, channels);
    const std::string& name = sh.names[channel];
    if (sh.nats()) {
        p.out += format("PUB {} {}\r\n", name, p.payload.size());
        p.out.append(text_of(p.payload));
        p.out += "\r\n";
    } else {
        resp::append_array(p.out, 3);
        resp::append_bulk(p.out, "PUBLISH");
        resp::append_bulk(p.out, name);
        resp::append_bulk(p.out, text_of(p.payload));
    }
    sh.board.published[std::size_t{p.id} * channels + channel].fetch_add(1, std::memory_order_relaxed);
    ++sh.out.pubsub.published;
    if (at >= sh.board.measure_from() && at < sh.board.stop_at()) ++sh.out.pubsub.published_window;
    if (const int k = sh.board.step_of(at); k >= 0) {
        sh.board.steps[k].published.fetch_add(1, std::memory_order_relaxed);
        sh.board.steps[k].expected.fetch_add(sh.board.subscribers_of(channel), std::memory_order_relaxed);
    }
    sh.live.published.fetch_add(1, std::memory_order_relaxed);
}

// One step's publishing, until its window closes (the warmup belongs to step 0).
task<> publish_step(core_share& sh, publisher& p, double rate, std::int64_t& next_send, std::int64_t until) {
    const settings& s = sh.s;
    const std::int64_t interval = rate > 0 ? static_cast<std::int64_t>(1e9 * sh.ps().publishers / rate) : 0;
    while (!p.failed && core::now_ns() < until) {
        std::uint64_t count = 1;
        std::int64_t at = core::now_ns();
        if (rate > 0) {  // open loop: the schedule decides, and latency counts from it
            at = next_send;
            next_send += interval;
            if (at > core::now_ns()) {
                const auto slept = co_await sleep_until(std::chrono::steady_clock::time_point{std::chrono::nanoseconds{at}});
                if (!slept || core::now_ns() >= until) break;
            }
        } else {
            if (p.sent - p.answered >= s.depth) {  // the window is full: wait for an answer
                co_await p.sender_wait.wait();
                continue;
            }
            count = s.depth - (p.sent - p.answered);  // as many as the window has room for, in one write
        }
        p.out.clear();
        for (std::uint64_t k = 0; k < count; ++k) add_publish(sh, p, at);
        if (sh.nats() && rate <= 0) {  // PUB has no answer: a PING after the window stands for one
            p.out += "PING\r\n";
            p.pings.push_back(count);
        }
        const auto written = co_await p.stream->write_all(bytes_of(p.out));
        if (!written) {
            sh.fail_io(p.who, written.error(), "send");
            p.fail();
            break;
        }
        p.sent += count;
        p.receiver_wait.notify();
    }
}

task<> publish_loop(core_share& sh, publisher& p) {
    const settings& s = sh.s;
    std::int64_t next_send = sh.board.start_ns.load(std::memory_order_acquire);
    auto until = [](std::int64_t ns) { return std::chrono::steady_clock::time_point{std::chrono::nanoseconds{ns}}; };
    for (unsigned k = 0; k < sh.ps().steps && !p.failed; ++k) {
        if (k > 0) next_send = sh.board.step_from(k);  // a new schedule: what the last step still owed is not sent
        co_await publish_step(sh, p, s.rate * std::pow(sh.ps().step_factor, k), next_send, sh.board.step_to(k));
        if (sh.ps().steps == 1 || p.failed) break;  // steps: the last one is judged too, for the report
        const auto paused = co_await sleep_until(until(sh.board.step_to(k) + std::chrono::duration_cast<std::chrono::nanoseconds>(sh.ps().step_limit).count()));
        if (!paused || !sh.board.go_on_after(k)) break;
    }
    // NATS in an open loop: one PING at the end, whose PONG says every PUB before it was taken.
    if (!p.failed && sh.nats() && s.rate > 0) {
        p.pings.push_back(0);
        const auto written = co_await p.stream->write_all(bytes_of("PING\r\n"));
        if (!written) {
            sh.fail_io(p.who, written.error(), "send");
            p.fail();
        }
    }
    p.sender_done = true;
    p.receiver_wait.notify();
}

// The publisher's answers: RESP integer replies (a number each; its value depends on how the
// server counts receivers, so it is not checked), NATS PONGs (and PINGs to answer).
task<> publish_answers(core_share& sh, publisher& p, buffered_reader& in) {
    while (!p.failed) {
        const bool outstanding = sh.nats() ? !p.pings.empty() : p.answered < p.sent;
        if (!outstanding) {
            if (p.sender_done) break;
            co_await p.receiver_wait.wait();
            continue;
        }
        bool progress = false;
        unsigned pongs_owed = 0;
        while (!p.failed) {  // every complete answer buffered
            if (sh.nats()) {
                nats_frame f;
                const auto got = parse_nats(in.peek_text(), f, sh.max_frame);
                if (got.st == nats_parsed::status::incomplete) break;
                if (got.st == nats_parsed::status::error || f.type == nats_frame::kind::err || f.type == nats_frame::kind::msg) {
                    sh.fail(&error_counts::verify, p.who,
                            got.st == nats_parsed::status::error ? format("malformed NATS frame: {}", got.error)
                            : f.type == nats_frame::kind::err ? format("-ERR {}", f.text.substr(0, 120))
                                                               : std::string{"a MSG on a publisher"});
                    p.fail();
                    break;
                }
                if (f.type == nats_frame::kind::pong && !p.pings.empty()) {
                    p.answered += p.pings.front();
                    p.pings.pop_front();
                    progress = true;
                } else if (f.type == nats_frame::kind::ping) {
                    ++pongs_owed;
                }
                in.consume(got.consumed);
            } else {
                const auto got = resp::parse_reply(in.peek_text(), sh.items, sh.lim);
                if (got.status == resp::parse_status::incomplete) break;
                if (got.status == resp::parse_status::error || sh.items.empty() || sh.items[0].type != ':') {
                    const std::string_view what = sh.items.empty() ? std::string_view{} : sh.items[0].text;
                    sh.fail(&error_counts::verify, p.who,
                            got.status == resp::parse_status::error ? format("malformed reply: {}", got.error)
                                                                    : format("PUBLISH answered '{}', not a number", what.substr(0, 80)));
                    p.fail();
                    break;
                }
                ++p.answered;
                progress = true;
                in.consume(got.consumed);
            }
        }
        if (p.failed) break;
        for (; pongs_owed > 0; --pongs_owed) {
            const auto sent = co_await p.stream->write_all(bytes_of("PONG\r\n"));
            if (!sent) break;
        }
        if (progress) {
            p.sender_wait.notify();
            continue;
        }
        const auto n = co_await in.fill();
        if (!n || *n == 0) {
            if (!n) sh.fail_io(p.who, n.error(), "recv");
            else sh.fail(&error_counts::eof, p.who, "the server closed the publisher's connection");
            p.fail();
        }
    }
}

// A publisher: connects (NATS: CONNECT and a PING, whose PONG says the server took it), waits
// until every subscriber of every core is in, publishes until the window closes, and waits for
// its last answers. Every wait for an answer is bounded by reply_timeout.
task<> run_publisher(core_share& sh, publisher* p_ptr) {
    publisher& p = *p_ptr;
    auto conn = co_await connect_counted(sh, p.who, sh.ps().subscribers + p.id);
    if (!conn) {
        sh.board.publishers_ready.fetch_add(1, std::memory_order_acq_rel);
        sh.board.publishers_done.fetch_add(1, std::memory_order_acq_rel);
        co_return;
    }
    p.stream = &*conn;
    p.seq.assign(sh.ps().channels, 0);
    p.payload.resize(sh.s.size_min);
    auto in = std::make_unique<buffered_reader>(*conn, sh.spill_limit);
    if (sh.nats()) {
        const bool info = co_await await_info(sh, *in, p.who);  // never co_await in a condition (g++ 12)
        if (!info) p.fail();
    }
    if (sh.nats() && !p.failed) {
        p.pings.push_back(0);
        const auto sent = co_await conn->write_all(bytes_of("CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n"));
        if (!sent) {
            sh.fail_io(p.who, sent.error(), "send");
            p.fail();
        }
        p.sender_done = true;  // until publishing starts: publish_answers returns at the PONG
        co_await publish_answers(sh, p, *in);
        p.sender_done = false;
    }
    sh.board.publishers_ready.fetch_add(1, std::memory_order_acq_rel);
    // Every subscriber of every core in, then publish (bounded: setup_limit).
    const std::int64_t give_up = core::now_ns() + std::chrono::duration_cast<std::chrono::nanoseconds>(sh.ps().setup_limit).count();
    while (!p.failed && sh.board.start_ns.load(std::memory_order_acquire) == never) {
        sh.try_start();
        if (sh.board.start_ns.load(std::memory_order_acquire) != never) break;
        if (core::now_ns() > give_up) {
            sh.fail(&error_counts::timeout, p.who, format("the subscribers were not all in within {} s", sh.ps().setup_limit.count()));
            p.fail();
            break;
        }
        const auto slept = co_await sleep_for(std::chrono::milliseconds{2});
        if (!slept) p.fail();
    }
    if (!p.failed) {
        task_group sender;
        sender.spawn(publish_loop(sh, p));
        co_await publish_answers(sh, p, *in);
        p.fail();  // ends the sender if the answers ended early (an error, already counted)
        co_await sender.join();
    }
    sh.board.publishers_done.fetch_add(1, std::memory_order_acq_rel);
    in.reset();
    co_await conn->close();
}

// Once publishing is over (every core's publishers saw their last answer), this core's
// subscribers read until each has what was published to its channel, or nothing arrives for
// drain_quiet; then they are cancelled.
task<> drain(core_share& sh, std::vector<std::unique_ptr<subscriber>>& subs, task_group& readers) {
    const auto& ps = sh.ps();
    const std::int64_t reply_ns = sh.s.reply_timeout.count() * 1'000'000;
    const std::int64_t setup_ends = core::now_ns() + std::chrono::duration_cast<std::chrono::nanoseconds>(ps.setup_limit).count();
    for (;;) {
        if (sh.publishing_over()) break;
        const std::int64_t stop = sh.board.stop_at();
        const std::int64_t limit = (stop == never ? setup_ends : stop) + 2 * reply_ns + 1'000'000'000;
        if (core::now_ns() > limit) break;  // a publisher's own timeouts end it before this
        const auto slept = co_await sleep_for(std::chrono::milliseconds{5});
        if (!slept) break;
    }
    auto expected = [&](const subscriber& sub) {
        std::uint64_t n = 0;
        for (unsigned p = 0; p < ps.publishers; ++p)
            n += sh.board.published[std::size_t{p} * ps.channels + sub.channel].load(std::memory_order_relaxed);
        return n;
    };
    const std::int64_t quiet_ns = ps.drain_quiet.count() * 1'000'000;
    std::uint64_t seen = sh.out.pubsub.delivered + sh.out.pubsub.duplicated;
    std::int64_t last_progress = core::now_ns();
    // Bounded: each pass either sees progress (at most every message once) or counts toward quiet_ns.
    for (;;) {
        const bool complete = std::all_of(subs.begin(), subs.end(), [&](const auto& sub) { return sub->done || sub->unique >= expected(*sub); });
        if (complete) break;
        const std::uint64_t now_seen = sh.out.pubsub.delivered + sh.out.pubsub.duplicated;
        if (now_seen != seen) {
            seen = now_seen;
            last_progress = core::now_ns();
        } else if (core::now_ns() - last_progress > quiet_ns) {
            break;
        }
        const auto slept = co_await sleep_for(std::chrono::milliseconds{10});
        if (!slept) break;
    }
    readers.cancel();
    co_await readers.join();
    for (const auto& sub : subs) {
        const std::uint64_t want = expected(*sub);
        const std::uint64_t missing = want - std::min(want, sub->unique);
        if (sub->slow) {
            sh.out.pubsub.slow_received += sub->unique;
            sh.out.pubsub.slow_lost += missing;
            sh.out.pubsub.slow_cut += sub->cut ? 1 : 0;
        } else if (!sub->failed) {
            sh.out.pubsub.lost += missing;
            sh.out.pubsub.reached += sub->unique > 0 ? 1 : 0;
        }
    }
}

// The measured window's edges as log lines ("measuring", "measured"): a script reads the
// server's CPU time as they pass. One core says them.
task<> announce_window(const pubsub_board& board) {
    const std::int64_t give_up = core::now_ns() + std::chrono::duration_cast<std::chrono::nanoseconds>(board.s.pubsub.setup_limit).count();
    while (board.start_ns.load(std::memory_order_acquire) == never) {
        if (core::now_ns() > give_up) co_return;
        const auto slept = co_await sleep_for(std::chrono::milliseconds{2});
        if (!slept) co_return;
    }
    auto until = [](std::int64_t ns) { return std::chrono::steady_clock::time_point{std::chrono::nanoseconds{ns}}; };
    const auto opened = co_await sleep_until(until(board.measure_from()));  // never co_await in a condition (g++ 12)
    if (!opened) co_return;
    log("measuring");
    const auto closed = co_await sleep_until(until(board.stop_at()));
    if (!closed) co_return;
    log("measured");
}

}  // namespace

task<> run_pubsub_share(const settings& s, pubsub_board& board, std::uint64_t sub_first, std::uint64_t sub_count,
                        std::uint64_t pub_first, std::uint64_t pub_count, results* out, live_counters* live) {
    core_share sh{s, board, *out, *live, gate{std::max(1u, s.connect_parallel)}, {}, {}, {}, 0, 0, {}};
    sh.max_frame = s.size_min + 1024;  // a payload plus its channel, pattern and framing
    // The reader copies what is left of a frame plus the next received buffer into its spill.
    sh.spill_limit = std::max(buffered_reader::default_spill_limit, sh.max_frame + core::current().io().buffer_size());
    sh.lim.max_bulk = sh.max_frame;
    const auto& ps = s.pubsub;
    out->steps.resize(ps.steps);
    for (unsigned k = 0; k < ps.channels; ++k) sh.names.push_back(channel_name(s.proto, k));
    std::vector<std::unique_ptr<subscriber>> subs;
    for (std::uint64_t i = sub_first; i < sub_first + sub_count; ++i) {
        auto sub = std::make_unique<subscriber>();
        sub->id = i;
        sub->who = format("subscriber {}", i);
        sub->channel = static_cast<unsigned>(i % ps.channels);
        sub->name = channel_name(s.proto, sub->channel);
        sub->pattern = channel_pattern(s.proto, sub->channel);
        sub->slow = i + ps.slow >= ps.subscribers;  // the last `slow` ones
        sub->next.assign(ps.publishers, 0);
        sub->gaps.resize(ps.publishers);
        subs.push_back(std::move(sub));
    }
    std::vector<std::unique_ptr<publisher>> pubs;
    for (std::uint64_t i = pub_first; i < pub_first + pub_count; ++i) {
        auto p = std::make_unique<publisher>();
        p->id = static_cast<std::uint32_t>(i);
        p->who = format("publisher {}", i);
        p->next_channel = i * ps.channels / ps.publishers;  // publishers start spread over the channels
        pubs.push_back(std::move(p));
    }
    task_group ticker;
    ticker.spawn(report_p99(sh.interval, sh.live));
    if (s.announce_window && core::current().id() == 0) ticker.spawn(announce_window(board));
    task_group readers, writers;
    for (auto& sub : subs) readers.spawn(run_subscriber(sh, sub.get()));
    for (auto& p : pubs) writers.spawn(run_publisher(sh, p.get()));
    co_await drain(sh, subs, readers);
    co_await writers.join();  // done already, unless drain gave up on them: then their timeouts end them
    co_await ticker.cancel_and_join();
    out->seconds = s.duration;
}

}  // namespace coring::load
