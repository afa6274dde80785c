// baseline-raw-uring-http: the floor for an HTTP/1.1 plaintext server on io_uring, one thread.
//
// The kernel features are coring's (and baseline-raw-uring's, whose ring and buffer setup it
// shares through uring_common.hpp): a SINGLE_ISSUER|DEFER_TASKRUN ring, one multishot accept, a
// provided-buffer ring (1024 x 16 KiB, coring's pool), one multishot recv per connection. Every received buffer
// is scanned for complete request heads ("\r\n\r\n") and given straight back to the ring; each
// complete head is answered with the bytes coring-http sends for GET /plaintext (status line,
// Server, Date, Content-Type: text/plain, Content-Length: 13, Connection: keep-alive, "Hello,
// World!"), and all the responses one receive asks for go out in one send (pipelining). At most
// one send is in flight per connection; responses due meanwhile wait and go out together in
// the next. The Date is formatted once a second, as coring and nginx do.
//
// What it skips, on purpose, because it is a floor and not a server: it parses nothing. The
// method, target, version and fields are not read, so every head gets the /plaintext response
// (a request with a body would have its body taken for the next head); there is no Connection:
// close, no timeouts, no error responses, no routes. Only what a benchmark client sends is
// served correctly: keep-alive GETs without bodies, pipelined or not.
//
// Bounds on what a peer can make it hold: a partial head carried over to the next receive is
// at most max_head bytes, and the responses waiting behind a send in flight at most
// max_output; a connection past either is closed.
#include <liburing.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "common.hpp"
#include "uring_common.hpp"

namespace {

constexpr const char* prog = "baseline-raw-uring-http";
constexpr std::size_t max_head = 8192;        // coring-http's default head limit is of this order
constexpr std::size_t max_output = 1 << 20;   // a client that sends but never reads is cut off here
using baseline::uring::tag;
using enum baseline::uring::op;

// coring-http's answer to GET /plaintext; the Date's 29 bytes are rewritten each second.
constexpr std::string_view date_field = "Date: ";
std::string response =
    "HTTP/1.1 200 OK\r\nServer: coring\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
    "Content-Type: text/plain\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\nHello, World!";
const std::size_t date_at = response.find(date_field) + date_field.size();
time_t date_second = -1;

struct connection {
    std::string carry;        // the start of a head whose end has not arrived (< max_head bytes)
    std::vector<char> out;    // the send in flight: the kernel reads it until the send's CQE
    std::size_t sent = 0;     // bytes of `out` already sent (a short send goes on from here)
    std::vector<char> next;   // responses due while a send is in flight (<= max_output bytes)
    bool recv_armed = false, sending = false;
    bool starved = false;     // recv ended with -ENOBUFS; listed in `starved`
    bool eof = false;         // peer finished sending: flush, then close
    bool failed = false;      // error or a bound passed: close once the kernel is done with the fd
};
// What is being sent is in vectors, not strings (uring_common.hpp's start_send says why).

// A ring of 4096 SQEs and 65536 CQEs and 1024 x 16 KiB provided buffers (the defaults).
baseline::uring::plain_server<connection> server{.prog = prog};

void refresh_date() {
    timespec now{};
    clock_gettime(CLOCK_REALTIME_COARSE, &now);
    if (now.tv_sec == date_second) return;
    date_second = now.tv_sec;
    tm utc{};
    gmtime_r(&now.tv_sec, &utc);
    char text[32];
    // The C locale (this program never calls setlocale), so the names are English, as HTTP wants.
    if (strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &utc) == 29) response.replace(date_at, 29, text, 29);
}

void fail(int fd, connection& c) {
    c.failed = true;
    c.carry.clear();
    c.next.clear();
    if (c.recv_armed) shutdown(fd, SHUT_RDWR);  // ends the multishot recv (and any send)
}

void maybe_close(int fd, connection& c) {
    if (c.recv_armed || c.sending || !(c.failed || (c.eof && c.next.empty()))) return;
    c = connection{};
    close(fd);
}

// How many request heads end in `data`, given what the connection carried over; what follows
// the last one becomes the new carry.
std::size_t complete_heads(connection& c, std::string_view data) {
    constexpr std::string_view end = "\r\n\r\n";
    std::string_view text = data;
    std::size_t from = 0;
    if (!c.carry.empty()) {
        // The carry holds no whole terminator, but its last 3 bytes may start one.
        from = c.carry.size() > 3 ? c.carry.size() - 3 : 0;
        c.carry.append(data);
        text = c.carry;
    }
    std::size_t heads = 0, rest = 0;
    for (std::size_t at; (at = text.find(end, from)) != std::string_view::npos; from = rest) {
        ++heads;
        rest = at + end.size();
    }
    if (text.data() == c.carry.data()) c.carry.erase(0, rest);
    else c.carry.assign(text.substr(rest));
    return heads;
}

void on_recv(int fd, std::int32_t res, std::uint32_t flags) {
    connection& c = server.conns[static_cast<std::size_t>(fd)];
    server.received(fd, c, res, flags, [fd, &c](std::string_view data) {
        const std::size_t heads = complete_heads(c, data);
        if (heads > 0) refresh_date();  // a clock read per receive that asks for responses
        for (std::size_t i = 0; i < heads; ++i) c.next.insert(c.next.end(), response.begin(), response.end());
        if (c.carry.size() >= max_head || c.next.size() > max_output) fail(fd, c);
        else if (heads > 0 && !c.sending) server.start_send(fd, c);
    }, fail);
    maybe_close(fd, c);
}

void on_send(int fd, std::int32_t res) {
    connection& c = server.conns[static_cast<std::size_t>(fd)];
    if (!server.sent(fd, c, res)) fail(fd, c);
    else if (!c.sending && !c.next.empty() && !c.failed) server.start_send(fd, c);
    maybe_close(fd, c);
}

}  // namespace

int main(int argc, char** argv) {
    const baseline::settings cfg = baseline::parse_args(
        argc, argv,
        {.prog = prog,
         .summary = "liburing HTTP/1.1 plaintext floor: answers every request head with coring-http's /plaintext "
                    "response (one thread; pin it with taskset)."});
    baseline::prepare_process();
    const int sig_fd = baseline::exit_signal_fd(prog, false);
    const int listener = baseline::listen_loopback(prog, cfg.port, false);
    server.serve(listener, sig_fd, on_recv, on_send);
    return 0;
}
