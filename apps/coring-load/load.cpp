#include "load.hpp"

#include <coring/http/chunked.hpp>
#include <coring/http/response_parser.hpp>
#include <coring/log.hpp>
#include <coring/ws/websocket.hpp>

#include <arpa/inet.h>
#include <cstring>
#include <netinet/in.h>
#include <deque>
#include <memory>
#include <optional>

namespace coring::load {

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

// What the connections of one core share.
struct share {
    const settings& s;
    results& out;
    live_counters& live;
    histogram interval;                 // this second's latencies, for the progress line
    gate connecting;
    // The window, the same on every core and process (live.window_from, once known here).
    std::int64_t measure_from = never;
    std::int64_t stop_at = never;
    std::int64_t interval_ns = 0;       // open loop: time between one connection's sends
    bool cut_short = false;             // a stop signal ended the window early

    // A stop signal (Ctrl-C, TERM): the window ends now (or opens empty), senders stop at their
    // next check, the replies still owed come in, and the report covers what was measured.
    void cut_window() {
        const std::int64_t now = core::now_ns();
        cut_short = true;
        stop_at = std::min(stop_at, now);
        measure_from = std::min(measure_from, stop_at);
    }

    void fail(std::uint64_t error_counts::* kind_counter, std::uint64_t id, const std::string& what) {
        ++(out.errors.*kind_counter);
        live.errors.fetch_add(1, std::memory_order_relaxed);
        if (out.first_error.empty()) out.first_error = format("connection {}: {}", id, what);
    }
    // A send or recv error: a timeout is a reply that did not come, anything else an I/O error.
    void fail_io(std::uint64_t id, std::error_code ec, const char* during) {
        if (ec == std::errc::operation_canceled && cut_short) return;  // the stop's drain ran out: not the server's fault
        if (ec == std::errc::timed_out) fail(&error_counts::timeout, id, format("no reply within {} ms", s.reply_timeout.count()));
        else fail(&error_counts::io, id, format("{}: {}", during, ec.message()));
    }
    // The window opens a warm-up after the last connection of the whole run (every core and
    // process) is up or has failed: one window, so the server's CPU read over it covers every
    // counted reply.
    void connection_settled() {
        if (live.settled.fetch_add(1, std::memory_order_acq_rel) + 1 == s.conns)
            live.window_from.store(core::now_ns() + static_cast<std::int64_t>(s.warmup * 1e9), std::memory_order_release);
    }
    void adopt_window(std::int64_t from) {
        if (cut_short) return;  // a stop came first: the window stays as the cut left it
        measure_from = from;
        stop_at = from + static_cast<std::int64_t>(s.duration * 1e9);
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
    std::unique_ptr<buffered_reader> reader;  // http: responses are parsed from it
    std::unique_ptr<ws::websocket> socket;    // ws: messages go through it

    std::uint64_t window() const { return sent_at.size(); }

    // A connection's first error is counted and ends both its tasks; later ones follow from it.
    void fail(std::uint64_t error_counts::* kind, const std::string& what) {
        if (first_failure()) sh.fail(kind, id, what);
    }
    void fail_io(std::error_code ec, const char* during) {
        if (first_failure()) sh.fail_io(id, ec, during);
    }

private:
    bool first_failure() {
        if (failed) return false;
        failed = true;
        sender_wait.notify();
        receiver_wait.notify();
        return true;
    }
};

constexpr const char* closed_early = "the server closed the connection";

// Fills buf from conn; fewer bytes than asked means the server closed the connection first.
task<result<std::size_t>> recv_exactly(tcp_stream& conn, std::span<std::byte> buf) {
    std::size_t have = 0;
    while (have < buf.size()) {
        auto n = co_await conn.recv(buf.subspan(have));
        if (!n) co_return n.error();
        if (*n == 0) break;
        have += *n;
    }
    co_return have;
}

// Connects connection id (from its source address, if any) and counts a failure.
task<result<tcp_stream>> connect_counted(share& sh, std::uint64_t id) {
    auto conn = co_await tcp_stream::connect_from(source_of(sh.s, id), sh.s.target, sh.s.reply_timeout);
    if (!conn) sh.fail(&error_counts::connect, id, format("connect to {}: {}", sh.s.target.to_string(), conn.error().message()));
    else conn->set_idle_timeout(sh.s.reply_timeout);
    co_return conn;
}

// The reply to message c.received, checked byte for byte; its size, or none (failure counted).
task<std::optional<std::size_t>> receive_echo(connection& c) {
    const std::size_t n = message_size(c.sh.s, c.id, c.received);
    const auto got = std::span(c.in_buf).first(n);
    const auto read = co_await recv_exactly(c.stream, got);
    if (!read || *read < n) {
        if (read) c.fail(&error_counts::eof, closed_early);
        else c.fail_io(read.error(), "recv");
        co_return std::nullopt;
    }
    const auto want = std::span(c.expected).first(n);
    fill(want, c.id, c.received);
    if (std::memcmp(got.data(), want.data(), n) != 0) {
        c.fail(&error_counts::verify, format("reply {} differs from the message sent", c.received));
        co_return std::nullopt;
    }
    co_return n;
}

// The next WebSocket message: binary, and byte for byte the message sent.
task<std::optional<std::size_t>> receive_ws(connection& c) {
    auto m = co_await c.socket->receive();
    if (!m) {
        c.fail_io(m.error(), "receive");
        co_return std::nullopt;
    }
    const std::size_t n = message_size(c.sh.s, c.id, c.received);
    const auto want = std::span(c.expected).first(n);
    fill(want, c.id, c.received);
    if (m->op != ws::opcode::binary || m->payload.size() != n || std::memcmp(m->payload.data(), want.data(), n) != 0) {
        c.fail(&error_counts::verify, format("message {} differs from the one sent", c.received));
        co_return std::nullopt;
    }
    co_return n;
}

// The next HTTP response: 200 with exactly the expected body (Content-Length or chunked).
task<std::optional<std::size_t>> receive_http(connection& c) {
    buffered_reader& in = *c.reader;
    const auto head = co_await in.read_until("\r\n\r\n", http::max_head_bytes);
    if (!head || head->empty()) {
        if (!head) c.fail_io(head.error(), "recv");
        else c.fail(&error_counts::eof, closed_early);
        co_return std::nullopt;
    }
    http::response_head h;
    const std::string_view text{reinterpret_cast<const char*>(head->data()), head->size()};
    if (http::parse_response_head(text, h) != 0 || h.status != 200) {
        c.fail(&error_counts::verify, format("response {}: {}", c.received, text.substr(0, text.find('\r'))));
        co_return std::nullopt;
    }
    const auto framing = h.framing;
    const std::uint64_t length = h.content_length;
    in.consume(head->size());
    std::string body;
    if (framing == http::body_framing::length) {
        if (length > c.sh.s.http_expect.size()) {  // more than expected: wrong, and no need to read it
            c.fail(&error_counts::verify, format("response {}: {} body bytes, expected {}", c.received, length, c.sh.s.http_expect.size()));
            co_return std::nullopt;
        }
        const auto got = co_await in.read_exact(static_cast<std::size_t>(length));
        if (!got || got->size() < length) {
            if (!got) c.fail_io(got.error(), "recv");
            else c.fail(&error_counts::eof, closed_early);
            co_return std::nullopt;
        }
        body.assign(reinterpret_cast<const char*>(got->data()), got->size());
        in.consume(got->size());
    } else if (framing == http::body_framing::chunked) {
        http::chunked_decoder chunks{c.sh.s.http_expect.size()};
        for (;;) {
            const auto step = chunks.next(in.peek());
            if (step.error) {
                c.fail(&error_counts::verify, format("response {}: malformed chunked body", c.received));
                co_return std::nullopt;
            }
            body.append(reinterpret_cast<const char*>(step.data.data()), step.data.size());
            in.consume(step.consumed);
            if (step.done) break;
            if (step.consumed > 0) continue;
            const auto more = co_await in.fill();
            if (!more || *more == 0) {
                if (!more) c.fail_io(more.error(), "recv");
                else c.fail(&error_counts::eof, closed_early);
                co_return std::nullopt;
            }
        }
    }
    if (body != c.sh.s.http_expect) {
        c.fail(&error_counts::verify, format("response {}: body differs from the expected one", c.received));
        co_return std::nullopt;
    }
    co_return body.size();
}

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
                if (!slept || core::now_ns() >= c.sh.stop_at) {
                    next_send = at;  // not sent: owed, below
                    break;
                }
            }
        }
        // http: the same request every time, and in a closed loop as many as the window has
        // room for in one write, as a pipelining client sends them (out_buf holds depth copies).
        std::uint64_t count = 1;
        std::span<const std::byte> msg;
        if (s.proto == protocol::http) {
            if (s.rate <= 0) count = c.window() - (c.sent - c.received);
            msg = std::span(c.out_buf).first(count * (c.out_buf.size() / s.depth));
        } else {
            const auto own = std::span(c.out_buf).first(message_size(s, c.id, c.sent));
            fill(own, c.id, c.sent);
            msg = own;
        }
        for (std::uint64_t k = 0; k < count; ++k) c.sent_at[(c.sent + k) % c.window()] = at;
        result<void> written;
        if (c.socket) written = co_await c.socket->send_binary(msg);
        else written = co_await c.stream.write_all(msg);
        if (!written) {
            c.fail_io(written.error(), "send");
            break;
        }
        c.sent += count;
        c.receiver_wait.notify();
    }
    // Open loop: what the schedule still owed inside the window was never sent (the sender fell
    // behind, or the connection failed). Each is counted, and is in the latencies as late as
    // the window's end had made it: a p99 must not look better for what was never asked.
    if (s.rate > 0 && c.sh.interval_ns > 0 && c.sh.stop_at != never) {
        const std::int64_t step = c.sh.interval_ns;
        std::int64_t first = next_send;  // the first owed send time inside the window
        if (first < c.sh.measure_from) first += (c.sh.measure_from - first + step - 1) / step * step;
        if (first < c.sh.stop_at) {
            const auto owed = static_cast<std::uint64_t>((c.sh.stop_at - first + step - 1) / step);
            // At most ~4,096 samples, each standing for `stride` sends: the distribution holds,
            // and an absurd --rate costs no time here.
            const std::uint64_t stride = std::max<std::uint64_t>(1, owed / 4096);
            for (std::uint64_t k = 0; k < owed; k += stride) {
                const std::int64_t at = first + static_cast<std::int64_t>(k) * step;
                c.sh.out.latency.record(static_cast<std::uint64_t>(c.sh.stop_at - at), std::min(stride, owed - k));
            }
            c.sh.out.unsent += owed;
        }
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
        std::optional<std::size_t> n;
        if (sh.s.proto == protocol::http) n = co_await receive_http(c);
        else if (sh.s.proto == protocol::ws) n = co_await receive_ws(c);
        else n = co_await receive_echo(c);
        if (!n) break;  // counted as the connection's failure
        const std::int64_t sent_at = c.sent_at[c.received % c.window()];
        const std::int64_t now = core::now_ns();
        // Counted by when it came back, as the server's CPU is read over the same window: a
        // reply to a warm-up send that lands inside counts, one that lands after does not.
        if (now >= sh.measure_from && now < sh.stop_at) {
            const auto ns = static_cast<std::uint64_t>(std::max<std::int64_t>(0, now - sent_at));
            sh.out.latency.record(ns);
            sh.interval.record(ns);
            ++sh.out.messages;
            sh.out.bytes += *n;
            sh.live.messages.fetch_add(1, std::memory_order_relaxed);
        }
        ++c.received;
        c.sender_wait.notify();
    }
}

task<> one_connection(share& sh, std::uint64_t id) {
    const settings& s = sh.s;
    co_await sh.connecting.enter();
    auto conn = co_await connect_counted(sh, id);
    sh.connecting.leave();
    sh.connection_settled();
    if (!conn) co_return;
    ++sh.out.connected;
    sh.live.connected.fetch_add(1, std::memory_order_relaxed);
    (void)conn->set_nodelay(true);
    // Heap state: the connection outlives neither task, and the tasks hold its address.
    auto c = std::make_unique<connection>(id, sh, std::move(*conn));
    c->sent_at.assign(s.rate > 0 ? 1024 : s.depth, 0);
    if (s.proto == protocol::http) {
        const std::string request = format("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", s.http_path, s.target.to_string());
        const auto bytes = std::as_bytes(std::span(request));
        for (unsigned k = 0; k < s.depth; ++k) c->out_buf.insert(c->out_buf.end(), bytes.begin(), bytes.end());
        c->reader = std::make_unique<buffered_reader>(c->stream);
    } else {
        c->out_buf.resize(s.size_max);
        c->in_buf.resize(s.size_max);
        c->expected.resize(s.size_max);
    }
    if (s.proto == protocol::ws) {
        c->socket = std::make_unique<ws::websocket>(c->stream, ws::role::client);
        auto upgraded = co_await c->socket->handshake(s.target.to_string(), s.ws_path);
        if (!upgraded) {
            sh.fail(&error_counts::connect, id, format("websocket handshake: {} {}", upgraded.error().message(), c->socket->handshake_failure()));
            c->socket.reset();
            co_await c->stream.close();
            co_return;
        }
    }
    task_group sender;
    sender.spawn(send_loop(*c));
    co_await receive_loop(*c);
    co_await sender.join();
    if (c->socket && !c->failed) (void)co_await c->socket->close();
    c->socket.reset();
    c->reader.reset();
    co_await c->stream.close();
}

// Takes the run's window as soon as the last connection anywhere has settled.
task<> await_window(share& sh) {
    std::int64_t from;
    while ((from = sh.live.window_from.load(std::memory_order_acquire)) == never) {
        const auto slept = co_await sleep_for(std::chrono::milliseconds{1});
        if (!slept) co_return;
    }
    sh.adopt_window(from);
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

task<> report_p99(histogram& interval, live_counters& live) {
    for (;;) {
        const auto slept = co_await sleep_for(std::chrono::seconds{1});
        if (!slept) co_return;  // cancelled: the run is over
        const std::uint64_t p99 = interval.percentile(0.99);
        interval.reset();
        std::uint64_t seen = live.p99_ns.load(std::memory_order_relaxed);
        while (p99 > seen && !live.p99_ns.compare_exchange_weak(seen, p99, std::memory_order_relaxed)) {
        }
    }
}

std::uint64_t idle_sampled(const settings& s) noexcept {
    const std::uint64_t stride = std::max<std::uint64_t>(1, s.verify_stride);
    return (s.idle + stride - 1) / stride;  // ids conns + k * stride
}

namespace {

// One echo round trip of a 16-byte message, checked; errors are counted against connection id.
task<bool> round_trip(share& sh, tcp_stream& conn, std::uint64_t id, std::uint64_t seq) {
    std::array<std::byte, 16> out, in;
    fill(out, id, seq);
    const auto sent = co_await conn.write_all(out);
    if (!sent) {
        sh.fail_io(id, sent.error(), "send");
        co_return false;
    }
    const auto read = co_await recv_exactly(conn, in);
    if (!read || *read < in.size()) {
        if (read) sh.fail(&error_counts::eof, id, closed_early);
        else sh.fail_io(id, read.error(), "recv");
        co_return false;
    }
    if (in != out) {
        sh.fail(&error_counts::verify, id, "an idle connection's echo differs");
        co_return false;
    }
    co_return true;
}

task<> hold_one(share& sh, std::uint64_t id, std::vector<std::pair<std::uint64_t, tcp_stream>>* held) {
    co_await sh.connecting.enter();
    auto conn = co_await connect_counted(sh, id);
    bool ok = false;
    if (conn) ok = co_await round_trip(sh, *conn, id, 0);
    sh.connecting.leave();
    if (ok) {
        ++sh.out.idle_up;
        held->emplace_back(id, std::move(*conn));
    }
    sh.live.idle_settled.fetch_add(1, std::memory_order_relaxed);
}

// Waits until a shared counter reaches `target` (every process's share), or the limit passes.
task<bool> wait_for_all(const std::atomic<std::uint64_t>& counter, std::uint64_t target, std::chrono::seconds limit) {
    const std::int64_t give_up = core::now_ns() + std::chrono::duration_cast<std::chrono::nanoseconds>(limit).count();
    while (counter.load(std::memory_order_relaxed) < target) {
        if (core::now_ns() > give_up) co_return false;
        const auto slept = co_await sleep_for(std::chrono::milliseconds{5});
        if (!slept) co_return false;
    }
    co_return true;
}

void abort_close(tcp_stream& s) {
    const linger reset{1, 0};  // close sends RST: no TIME_WAIT left behind for the next run
    ::setsockopt(s.fd(), SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
}

}  // namespace

task<> run_share(const settings& s, std::uint64_t first, std::uint64_t count, results* out, live_counters* live,
                 std::uint64_t idle_first, std::uint64_t idle_count) {
    share sh{s, *out, *live, {}, gate{std::max(1u, s.connect_parallel)}};
    if (s.rate > 0) sh.interval_ns = static_cast<std::int64_t>(1e9 * static_cast<double>(s.conns) / s.rate);
    std::vector<std::pair<std::uint64_t, tcp_stream>> held;  // (id, connection): they come up in any order
    if (s.idle > 0) {
        const std::int64_t started = core::now_ns();
        {
            task_group g;
            held.reserve(idle_count);
            for (std::uint64_t i = 0; i < idle_count; ++i) g.spawn(hold_one(sh, idle_first + i, &held));
            co_await g.join();
        }
        const bool all_up = co_await wait_for_all(live->idle_settled, s.idle, s.idle_setup_limit);
        out->setup_seconds = static_cast<double>(core::now_ns() - started) / 1e9;
        if (!all_up) sh.fail(&error_counts::timeout, idle_first, "the other processes' idle connections did not come up in time");
        // The second check: every verify_stride-th idle connection (by id, so all processes
        // together sample idle_sampled(s) of them) echoes again.
        const std::uint64_t stride = std::max<std::uint64_t>(1, s.verify_stride);
        auto sampled = [&](std::uint64_t id) { return (id - s.conns) % stride == 0; };
        std::uint64_t checked = 0;
        {
            task_group g;
            for (std::size_t k = 0; k < held.size(); ++k) {
                if (!sampled(held[k].first)) continue;
                ++checked;
                g.spawn([](share* sh, tcp_stream* c, std::uint64_t id) -> task<> {
                    co_await sh->connecting.enter();
                    const bool verified = co_await round_trip(*sh, *c, id, 1);  // not in a condition: g++ 12
                    if (verified) ++sh->out.idle_verified;
                    sh->connecting.leave();
                    sh->live.idle_checked.fetch_add(1, std::memory_order_relaxed);
                }(&sh, &held[k].second, held[k].first));
            }
            co_await g.join();
        }
        // Connections that never came up are not sampled: count them as checked too, so the
        // processes agree on when everyone is done.
        std::uint64_t expected_here = 0;
        for (std::uint64_t id = idle_first; id < idle_first + idle_count; ++id) expected_here += sampled(id) ? 1 : 0;
        live->idle_checked.fetch_add(expected_here - std::min(expected_here, checked), std::memory_order_relaxed);
        (void)co_await wait_for_all(live->idle_checked, idle_sampled(s), s.idle_setup_limit);
    }
    if (count > 0) {
        task_group ticker;
        ticker.spawn(report_p99(sh.interval, sh.live));
        ticker.spawn(when_stopping([&sh] { sh.cut_window(); }));
        ticker.spawn(await_window(sh));
        if (s.announce_window && core::current().id() == 0) ticker.spawn(announce_window(sh));  // one window: one core says it
        task_group conns;
        for (std::uint64_t i = 0; i < count; ++i) conns.spawn(one_connection(sh, first + i));
        co_await conns.join();
        co_await ticker.cancel_and_join();
        // The window as it ran: shorter than --duration when a stop signal cut it.
        if (sh.measure_from != never) out->seconds = static_cast<double>(sh.stop_at - sh.measure_from) / 1e9;
        out->cut_short = sh.cut_short;
    }
    for (auto& entry : held) {
        abort_close(entry.second);
        co_await entry.second.close();
    }
}

}  // namespace coring::load
