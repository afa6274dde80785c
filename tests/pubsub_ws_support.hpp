#pragma once
// What the coring-pubsub binary tests share (test_pubsub_ws.cpp, test_pubsub_demo.cpp,
// test_pubsub_memory.cpp): the server as a child process with both its ports, and a plain
// blocking RESP client (publisher or subscriber) that the tests drive step by step.
#include "http_support.hpp"  // send_all, child_process

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace coring::testing {

struct pubsub_ports {
    std::uint16_t resp = 0;
    std::uint16_t http = 0;  // 0 when the server runs without --http
};

// The ports in the server's line "pubsub server listening on 127.0.0.1:P (RESP), 127.0.0.1:Q
// (HTTP: ...)"; resp stays 0 until that line is complete, and when RESP is on a unix socket.
inline pubsub_ports pubsub_ports_of(const std::string& err) {
    static constexpr std::string_view marker = "listening on ";
    static constexpr std::string_view host = "127.0.0.1:";
    pubsub_ports found;
    const auto at = err.find(marker);
    if (at == std::string::npos) return found;
    const auto end = err.find('\n', at);
    if (end == std::string::npos) return found;  // the line is not all here yet
    std::vector<std::uint16_t> ports;
    for (auto i = err.find(host, at); i < end; i = err.find(host, i)) {
        i += host.size();
        unsigned port = 0;
        while (i < end && err[i] >= '0' && err[i] <= '9' && port <= 65535) port = port * 10 + static_cast<unsigned>(err[i++] - '0');
        if (port == 0 || port > 65535) return {};
        ports.push_back(static_cast<std::uint16_t>(port));
    }
    if (ports.empty()) return found;
    if (err.compare(at + marker.size(), host.size(), host) != 0) {  // RESP on a unix socket: no port
        found.http = ports[0];
        return found;
    }
    found.resp = ports[0];
    if (ports.size() > 1) found.http = ports[1];
    return found;
}

// coring-pubsub on 127.0.0.1 (RESP on any free port, and HTTP/WebSocket on another), one core,
// `kind`'s backend, plus `extra` flags; fails the test when it does not come up within 10 s.
class pubsub_server_process {
public:
    pubsub_server_process(backend_kind kind, std::vector<std::string> extra = {}) {
        std::vector<std::string> args{"--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--cores", "1",
                                      "--backend", std::string{to_string(kind)}};
        args.insert(args.end(), extra.begin(), extra.end());
        child_ = std::make_unique<child_process>(CORING_PUBSUB_BINARY, std::move(args));
        const bool up = child_->read_until(std::chrono::steady_clock::now() + 10s,
                                           [](const child_process& c) { return pubsub_ports_of(c.err()).http != 0; });
        INFO("coring-pubsub stderr:\n" << child_->err());
        REQUIRE(up);
        ports_ = pubsub_ports_of(child_->err());
    }

    const pubsub_ports& ports() const noexcept { return ports_; }
    child_process& process() noexcept { return *child_; }

    // Waits (bounded) until the server's stderr contains `text`.
    bool logged(std::string_view text, std::chrono::milliseconds limit = 5s) {
        return child_->read_until(std::chrono::steady_clock::now() + limit,
                                  [text](const child_process& c) { return c.err().find(text) != std::string::npos; });
    }

    // SIGTERM, then the exit status (SIGKILL after 10 s).
    std::optional<int> stop() {
        ::kill(child_->pid(), SIGTERM);  // our own child, still unreaped
        return child_->wait_exit_or_kill(10s);
    }

private:
    std::unique_ptr<child_process> child_;
    pubsub_ports ports_;
};

// A RESP command in the array form (any bytes in its arguments).
inline std::string resp_command(std::initializer_list<std::string_view> args) {
    std::string out = "*" + std::to_string(args.size()) + "\r\n";
    for (const std::string_view a : args) {
        out += "$" + std::to_string(a.size()) + "\r\n";
        out += a;
        out += "\r\n";
    }
    return out;
}

// A RESP bulk string, as a server writes one.
inline std::string resp_bulk(std::string_view s) { return "$" + std::to_string(s.size()) + "\r\n" + std::string{s} + "\r\n"; }

// Exactly n bytes from a blocking socket (connect_blocking's 5 s timeout bounds each wait);
// fewer when the connection ended or stalled. EINTR is retried: with SO_RCVTIMEO set, the
// kernel reports any pending notification as EINTR, and an io_uring this process made (a
// backend probe) may raise one with its task work, no signal sent.
inline std::string read_n(int fd, std::size_t n) {
    std::string got(n, '\0');
    std::size_t have = 0;
    while (have < n) {
        const ssize_t r = ::recv(fd, got.data() + have, n - have, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        have += static_cast<std::size_t>(r);
    }
    got.resize(have);
    return got;
}

// Reads up to and including the next "\r\n" (one byte at a time: nothing after it is taken).
inline std::string read_line(int fd) {
    std::string line;
    while (line.size() < 4096 && !line.ends_with("\r\n")) {
        const std::string c = read_n(fd, 1);
        if (c.empty()) break;
        line += c;
    }
    return line;
}

// PUBLISH over a blocking RESP connection: the receiver count the server answers, or -1.
inline long resp_publish(int fd, std::string_view channel, std::string_view payload) {
    if (!send_all(fd, resp_command({"PUBLISH", channel, payload}))) return -1;
    const std::string line = read_line(fd);
    if (line.size() < 4 || line[0] != ':') return -1;
    return std::stol(line.substr(1));
}

}  // namespace coring::testing
