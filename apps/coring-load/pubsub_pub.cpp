// coring-load's pub/sub publishers: closed loop (--depth publishes unanswered) or open loop
// (--rate, in --steps), and their answers (RESP integers, NATS PONGs).
#include "pubsub_share.hpp"

namespace coring::load::pubsub_detail {

namespace {

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

// Step k's publishing, until its window closes (the warmup belongs to step 0) or is cut.
task<> publish_step(core_share& sh, publisher& p, double rate, std::int64_t& next_send, unsigned k) {
    const settings& s = sh.s;
    const std::int64_t interval = rate > 0 ? static_cast<std::int64_t>(1e9 * sh.ps().publishers / rate) : 0;
    while (!p.failed && core::now_ns() < sh.board.step_to(k)) {
        std::uint64_t count = 1;
        std::int64_t at = core::now_ns();
        if (rate > 0) {  // open loop: the schedule decides, and latency counts from it
            at = next_send;
            next_send += interval;
            if (at > core::now_ns()) {
                const auto slept = co_await sleep_until(std::chrono::steady_clock::time_point{std::chrono::nanoseconds{at}});
                if (!slept || core::now_ns() >= sh.board.step_to(k)) break;
            }
        } else {
            if (p.sent - p.answered >= s.depth) {  // the window is full: wait for an answer
                co_await p.sender_wait.wait();
                continue;
            }
            count = s.depth - (p.sent - p.answered);  // as many as the window has room for, in one write
        }
        p.out.clear();
        for (std::uint64_t i = 0; i < count; ++i) add_publish(sh, p, at);
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
        co_await publish_step(sh, p, s.rate * std::pow(sh.ps().step_factor, k), next_send, k);
        if (sh.ps().steps == 1 || p.failed || sh.board.was_cut()) break;  // steps: the last one is judged too, for the report
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
}  // namespace

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

}  // namespace coring::load::pubsub_detail
