// baseline-raw-uring-pubsub: the floor for a Redis-protocol pub/sub fan-out on io_uring, one
// thread. What issue 13 calls "a raw io_uring fan-out that sends once per subscriber per loop
// turn", built so that ./dev bench --pubsub measures it in the same run as coring-pubsub and
// redis-server, with the same client.
//
// The kernel features are coring's (and the other raw baselines', through uring_common.hpp): a
// SINGLE_ISSUER|DEFER_TASKRUN ring, one multishot accept, a provided-buffer ring (1024 x 16 KiB),
// one multishot recv per connection. A PUBLISH serializes its message frame once and appends it
// to each subscriber's output; after each batch of completions every connection with output and
// no send in flight gets one send of all of it (so a subscriber receiving several messages in a
// turn costs one send). Replies (subscribe confirmations, PUBLISH's receiver count, PONG) go the
// same way.
//
// What it skips, on purpose, because it is a floor and not a server: only SUBSCRIBE, PUBLISH
// and PING (RESP arrays of bulk strings, or an inline PING), anything else is answered with an
// error; no patterns, no UNSUBSCRIBE (a subscriber leaves by closing), no slow-consumer rule
// beyond the bound below, no INFO, no RESP3.
//
// Bounds on what a peer can make it hold: an incomplete command carried over to the next
// receive is at most max_command bytes, a connection's queued output at most max_output; a
// connection past either is closed.
#include <liburing.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common.hpp"
#include "uring_common.hpp"

namespace {

constexpr const char* prog = "baseline-raw-uring-pubsub";
constexpr std::size_t max_command = 1 << 20;   // a command (PUBLISH's payload included)
constexpr std::size_t max_output = 256 << 20;  // what the bench allows redis-server and coring-pubsub too
constexpr std::size_t max_args = 16;
using baseline::uring::tag;
using enum baseline::uring::op;

struct connection {
    std::string in;           // the start of a command whose end has not arrived (< max_command)
    std::vector<char> out;    // the send in flight: the kernel reads it until the send's CQE
    std::size_t sent = 0;     // bytes of `out` already sent (a short send goes on from here)
    std::vector<char> next;   // output queued since (<= max_output bytes)
    std::vector<std::string> channels;  // subscribed to: left when the connection closes
    bool recv_armed = false, sending = false;
    bool dirty = false;       // listed in `dirty`: has output to send at the end of this turn
    bool starved = false;     // recv ended with -ENOBUFS; listed in `starved`
    bool eof = false;         // peer finished sending: flush, then close
    bool failed = false;      // error or a bound passed: close once the kernel is done with the fd
};

// A ring of 4096 SQEs and 65536 CQEs and 1024 x 16 KiB provided buffers (the defaults).
baseline::uring::plain_server<connection> server{.prog = prog};
std::unordered_map<std::string, std::vector<int>> subscribers;  // channel -> subscriber fds
std::vector<int> dirty;  // connections with output for the end of this turn
// Printed at exit, to compare with coring-pubsub's --stats.
struct {
    std::uint64_t turns = 0, published = 0, delivered = 0, sends = 0;
} counts;

void fail(int fd, connection& c) {
    c.failed = true;
    c.in.clear();
    c.next.clear();
    if (c.recv_armed) shutdown(fd, SHUT_RDWR);  // ends the multishot recv (and any send)
}

void maybe_close(int fd, connection& c) {
    if (c.recv_armed || c.sending || c.dirty || !(c.failed || (c.eof && c.next.empty()))) return;
    for (const std::string& ch : c.channels) {
        auto it = subscribers.find(ch);
        if (it == subscribers.end()) continue;
        std::erase(it->second, fd);
        if (it->second.empty()) subscribers.erase(it);
    }
    c = connection{};
    close(fd);
}

void queue(int fd, connection& c, std::string_view bytes) {
    if (c.failed) return;
    c.next.insert(c.next.end(), bytes.begin(), bytes.end());
    if (c.next.size() > max_output) fail(fd, c);  // listed all the same: the turn's end closes it
    if (!c.dirty) {
        c.dirty = true;
        dirty.push_back(fd);
    }
}

void append_bulk(std::string& out, std::string_view s) {
    out += '$';
    out += std::to_string(s.size());
    out += "\r\n";
    out += s;
    out += "\r\n";
}

void execute(int fd, connection& c, const std::string_view* args, std::size_t n) {
    const auto is = [&](std::string_view name) {
        return args[0].size() == name.size() &&
               std::equal(name.begin(), name.end(), args[0].begin(), [](char a, char b) { return a == (b | 0x20); });
    };
    if (is("publish") && n == 3) {
        ++counts.published;
        std::string frame = "*3\r\n$7\r\nmessage\r\n";  // serialized once, copied to every subscriber
        append_bulk(frame, args[1]);
        append_bulk(frame, args[2]);
        std::size_t receivers = 0;
        if (auto it = subscribers.find(std::string(args[1])); it != subscribers.end()) {
            for (const int sub : it->second) queue(sub, server.conns[static_cast<std::size_t>(sub)], frame);
            receivers = it->second.size();
            counts.delivered += receivers;
        }
        queue(fd, c, ":" + std::to_string(receivers) + "\r\n");
    } else if (is("subscribe") && n >= 2) {
        for (std::size_t i = 1; i < n; ++i) {
            std::string ch(args[i]);
            if (std::find(c.channels.begin(), c.channels.end(), ch) == c.channels.end()) {
                c.channels.push_back(ch);
                subscribers[ch].push_back(fd);
            }
            std::string reply = "*3\r\n$9\r\nsubscribe\r\n";
            append_bulk(reply, ch);
            reply += ":" + std::to_string(c.channels.size()) + "\r\n";
            queue(fd, c, reply);
        }
    } else if (is("ping")) {
        queue(fd, c, "+PONG\r\n");
    } else {
        queue(fd, c, "-ERR this floor knows SUBSCRIBE, PUBLISH and PING only\r\n");
    }
}

// A decimal after a RESP type byte, up to its CRLF: the value, and `at` past the CRLF; -1 for
// an incomplete line, -2 for a malformed one.
long long number_line(std::string_view s, std::size_t& at) {
    const std::size_t end = s.find("\r\n", at);
    if (end == std::string_view::npos) return s.size() - at > 20 ? -2 : -1;
    long long v = 0;
    const auto [p, ec] = std::from_chars(s.data() + at, s.data() + end, v);
    if (ec != std::errc{} || p != s.data() + end || v < 0) return -2;
    at = end + 2;
    return v;
}

// Executes every complete command at the start of `s`; returns the bytes they took, or -1 for
// a malformed command (the connection is then closed).
long long run_commands(int fd, connection& c, std::string_view s) {
    std::size_t done = 0;
    std::string_view args[max_args];
    while (done < s.size() && !c.failed) {
        std::size_t at = done;
        std::size_t n = 0;
        if (s[at] != '*') {  // inline: "PING\r\n" (what the bench's probe sends)
            const std::size_t end = s.find("\r\n", at);
            if (end == std::string_view::npos) return static_cast<long long>(done);
            args[n++] = s.substr(at, end - at);
            execute(fd, c, args, n);
            done = end + 2;
            continue;
        }
        ++at;
        const long long count = number_line(s, at);
        if (count == -1) return static_cast<long long>(done);
        if (count < 1 || count > static_cast<long long>(max_args)) return -1;
        bool complete = true;
        for (; n < static_cast<std::size_t>(count); ++n) {
            if (at == s.size()) { complete = false; break; }
            if (s[at] != '$') return -1;
            ++at;
            const long long len = number_line(s, at);
            if (len == -1) { complete = false; break; }
            if (len < 0 || static_cast<std::size_t>(len) > max_command) return -1;
            if (s.size() - at < static_cast<std::size_t>(len) + 2) { complete = false; break; }
            if (s.substr(at + static_cast<std::size_t>(len), 2) != "\r\n") return -1;
            args[n] = s.substr(at, static_cast<std::size_t>(len));
            at += static_cast<std::size_t>(len) + 2;
        }
        if (!complete) return static_cast<long long>(done);
        execute(fd, c, args, n);
        done = at;
    }
    return static_cast<long long>(done);
}

void on_recv(int fd, std::int32_t res, std::uint32_t flags) {
    connection& c = server.conns[static_cast<std::size_t>(fd)];
    server.received(fd, c, res, flags, [fd, &c](std::string_view data) {
        if (c.in.empty()) {  // the common case: whole commands, parsed in the buffer itself
            const long long took = run_commands(fd, c, data);
            if (took < 0) fail(fd, c);
            else c.in.assign(data.substr(static_cast<std::size_t>(took)));
        } else {
            c.in.append(data);
            const long long took = run_commands(fd, c, c.in);
            if (took < 0) fail(fd, c);
            else c.in.erase(0, static_cast<std::size_t>(took));
        }
        if (c.in.size() >= max_command) fail(fd, c);
    }, fail);
    maybe_close(fd, c);
}

void on_send(int fd, std::int32_t res) {
    connection& c = server.conns[static_cast<std::size_t>(fd)];
    if (!server.sent(fd, c, res)) {
        fail(fd, c);
    } else if (!c.sending && !c.failed && !c.next.empty() && !c.dirty) {  // what came meanwhile: at the turn's end
        c.dirty = true;
        dirty.push_back(fd);
    }
    maybe_close(fd, c);
}

// The end of a turn: one send per connection with output and no send in flight.
void flush_turn() {
    ++counts.turns;
    for (const int fd : dirty) {
        connection& c = server.conns[static_cast<std::size_t>(fd)];
        c.dirty = false;
        if (!c.sending && !c.failed && !c.next.empty()) {
            server.start_send(fd, c);
            ++counts.sends;
        }
        maybe_close(fd, c);
    }
    dirty.clear();
}

}  // namespace

int main(int argc, char** argv) {
    const baseline::settings cfg = baseline::parse_args(
        argc, argv,
        {.prog = prog,
         .summary = "liburing pub/sub floor (RESP SUBSCRIBE/PUBLISH/PING): a PUBLISH's frame is serialized once, "
                    "each subscriber gets one send per loop turn (one thread; pin it with taskset)."});
    baseline::prepare_process();
    const int sig_fd = baseline::exit_signal_fd(prog, false);
    const int listener = baseline::listen_loopback(prog, cfg.port, false);
    server.serve(listener, sig_fd, on_recv, on_send, flush_turn);
    std::fprintf(stderr, "%s: turns %llu, published %llu, delivered %llu, sends %llu\n", prog,
                 static_cast<unsigned long long>(counts.turns), static_cast<unsigned long long>(counts.published),
                 static_cast<unsigned long long>(counts.delivered), static_cast<unsigned long long>(counts.sends));
    return 0;
}
