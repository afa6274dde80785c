// coring-load's pub/sub subscribers: each delivery checked (publisher, channel, sequence number,
// padding) and counted as delivered, duplicated or reordered, over RESP or NATS; subscribers that
// stall (--slow); and the drain once publishing is over.
#include "pubsub_share.hpp"

namespace coring::load::pubsub_detail {

namespace {

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
    if (sub.slow) return true;  // the slow ones are reported apart
    const auto ns = static_cast<std::uint64_t>(std::max<std::int64_t>(0, now - h.sent_ns));
    // A ladder step owns the messages published in it, wherever they land.
    if (h.sent_ns >= sh.board.measure_from() && h.sent_ns < sh.board.stop_at()) {
        if (const int k = sh.board.step_of(h.sent_ns); k >= 0) {
            sh.out.steps[static_cast<std::size_t>(k)].record(ns);
            if (ns <= static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(sh.ps().step_limit).count()))
                sh.board.steps[k].on_time.fetch_add(1, std::memory_order_relaxed);
        }
    }
    // The run's figures count deliveries by when they came, as the server's CPU is read over
    // the same window (a lagging fan-out's tail then falls outside, its warm-up backlog inside).
    if (now >= sh.board.measure_from() && now < sh.board.stop_at()) {
        sh.out.latency.record(ns);
        sh.interval.record(ns);
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

}  // namespace

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

}  // namespace coring::load::pubsub_detail
