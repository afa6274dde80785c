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
//
// Here: a core's share of the run, and connecting. The subscribers are in pubsub_sub.cpp, the
// publishers in pubsub_pub.cpp; what they share in pubsub_share.hpp.
#include "pubsub_share.hpp"

namespace coring::load {

namespace pubsub_detail {

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

}  // namespace pubsub_detail

namespace {

using namespace pubsub_detail;

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
    ticker.spawn(when_stopping([&board] { board.cut(); }));
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
