#pragma once
// What the coring-pubsub tests share: the binary started as users start it (a port of its own,
// a backend, a core count), and a plain blocking RESP client over a loopback socket whose replies
// come back as trees, printed the way the tests compare them.
#include "pubsub_ws_support.hpp"  // resp_command, child_process

#include <coring/resp/resp.hpp>

#include <map>
#include <netinet/tcp.h>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace coring::testing {

// One RESP reply. show() prints it as the tests compare it: +simple, -error, :integer, a bulk's
// bytes as they are, (nil) for a null, [a, b, c] for an array.
struct resp_reply {
    char type = 0;
    std::string text;
    std::int64_t integer = 0;
    bool null = false;
    std::vector<resp_reply> elements;
};

inline std::string show(const resp_reply& r) {
    if (r.null) return "(nil)";
    switch (r.type) {
    case '+': return "+" + r.text;
    case '-': return "-" + r.text;
    case ':': return ":" + std::to_string(r.integer);
    case '$': return r.text;
    default: break;
    }
    std::string out = "[";
    for (std::size_t i = 0; i < r.elements.size(); ++i) out += (i ? ", " : "") + show(r.elements[i]);
    return out + "]";
}

// A blocking client: every receive waits at most 5 s (connect_blocking's timeouts), so a silent
// server fails the test instead of hanging it.
class resp_client {
public:
    resp_client() = default;
    explicit resp_client(std::uint16_t port, int rcvbuf = 0) : fd_{connect_blocking(port, rcvbuf)} {
        INFO("connect: " << (fd_.fd < 0 ? std::strerror(-fd_.fd) : "ok"));
        REQUIRE(fd_.fd >= 0);
        const int on = 1;
        ::setsockopt(fd_.fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);  // split writes go out split
    }
    resp_client(resp_client&&) noexcept = default;

    int fd() const noexcept { return fd_.fd; }
    void close() noexcept {
        if (fd_.fd >= 0) ::close(fd_.fd);
        fd_.fd = -1;
    }

    bool send_raw(std::string_view bytes) {
        while (!bytes.empty()) {
            const ssize_t n = ::send(fd_.fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return false;
            bytes.remove_prefix(static_cast<std::size_t>(n));
        }
        return true;
    }
    bool send(std::initializer_list<std::string_view> args) { return send_raw(resp_command(args)); }

    // The next reply, or nothing when the connection ended, stayed silent for 5 s or sent bytes
    // that are no reply. Uses no Catch macro, so a helper thread may read too.
    std::optional<resp_reply> read() {
        for (;;) {
            items_.clear();
            const resp::parsed p = resp::parse_reply(pending_, items_);
            if (p.status == resp::parse_status::error) {
                bad_ = true;
                return std::nullopt;
            }
            if (p.status == resp::parse_status::complete) {
                std::size_t next = 0;
                resp_reply r = build(next);
                pending_.erase(0, p.consumed);
                return r;
            }
            if (bad_ || !fill()) return std::nullopt;
        }
    }
    // The next reply as show() prints it, "<closed>" or "<bad reply>" when there is none.
    std::string next() {
        const auto r = read();
        return r ? show(*r) : bad_ ? "<bad reply>" : "<closed>";
    }
    // Sends a command and returns its reply as next() does.
    std::string call(std::initializer_list<std::string_view> args) {
        REQUIRE(send(args));
        return next();
    }
    // The core that accepted this connection: CLIENT ID's top 16 bits.
    unsigned core_of() {
        REQUIRE(send({"CLIENT", "ID"}));
        const auto r = read();
        REQUIRE(r);
        REQUIRE(r->type == ':');
        return static_cast<unsigned>(static_cast<std::uint64_t>(r->integer) >> 48);
    }
    // Whether the server closed (end of file or a reset) within 5 s, reading and dropping what
    // comes before, up to `limit` bytes.
    bool ends(std::size_t limit = 64 << 20) {
        pending_.clear();
        std::size_t seen = 0;
        char buf[65536];
        while (seen <= limit) {
            const ssize_t n = ::recv(fd_.fd, buf, sizeof buf, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
            if (n < 0) return false;  // the 5 s timeout: still open
            seen += static_cast<std::size_t>(n);
        }
        return false;
    }

private:
    bool fill() {
        char buf[16384];
        for (;;) {
            const ssize_t n = ::recv(fd_.fd, buf, sizeof buf, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return false;
            pending_.append(buf, static_cast<std::size_t>(n));
            return true;
        }
    }
    resp_reply build(std::size_t& at) const {
        const resp::reply_item& item = items_[at++];
        resp_reply r;
        r.type = item.type;
        r.text = std::string{item.text};
        r.integer = item.integer;
        r.null = (item.type == '$' || item.type == '*') && item.size < 0;
        if (item.type == '*')
            for (std::int64_t i = 0; i < item.size; ++i) r.elements.push_back(build(at));
        return r;
    }

    fd_guard fd_;
    std::string pending_;
    bool bad_ = false;  // the server sent bytes that are no reply: nothing more is read
    std::vector<resp::reply_item> items_;
};

// INFO's "name:value" lines.
inline std::map<std::string, std::string> info_fields(resp_client& c) {
    REQUIRE(c.send({"INFO"}));
    const auto r = c.read();
    REQUIRE(r);
    REQUIRE(r->type == '$');
    std::map<std::string, std::string> fields;
    std::size_t at = 0;
    while (at < r->text.size()) {
        const auto end = std::min(r->text.find("\r\n", at), r->text.size());
        const std::string line = r->text.substr(at, end - at);
        const auto colon = line.find(':');
        if (colon != std::string::npos && !line.starts_with('#')) fields[line.substr(0, colon)] = line.substr(colon + 1);
        at = end + 2;
    }
    return fields;
}

// coring-pubsub running as a child on a port of its own, with its log read while it starts.
struct pubsub_process {
    child_process process;
    std::uint16_t port = 0;

    pubsub_process(backend_kind kind, unsigned cores, std::vector<std::string> extra = {})
        : process{CORING_PUBSUB_BINARY, args(kind, cores, std::move(extra))} {
        const bool up = process.read_until(std::chrono::steady_clock::now() + 10s,
                                           [](const child_process& p) { return listening_port(p.err()) != 0; });
        INFO("coring-pubsub stderr:\n" << process.err());
        REQUIRE(up);
        port = listening_port(process.err());
    }

    // Reads what the server logged meanwhile, so its pipe never fills and stalls it.
    const std::string& log() {
        // 2 ms: read_until counts whole milliseconds, and 1 ms less a little is none.
        process.read_until(std::chrono::steady_clock::now() + 2ms, [](const child_process&) { return false; });
        return process.err();
    }

    // A client on core `want` (CLIENT ID's top 16 bits name the accepting core), found by
    // connecting until one lands there (at most 64 tries); the others are kept in `spare` so that
    // the kernel's choice moves on.
    resp_client client_on(unsigned want, std::vector<resp_client>& spare) {
        for (int i = 0; i < 64; ++i) {
            resp_client c{port};
            if (c.core_of() == want) return c;
            spare.push_back(std::move(c));
        }
        FAIL("no connection landed on core " << want << " in 64 tries");
        return {};
    }

private:
    static std::vector<std::string> args(backend_kind kind, unsigned cores, std::vector<std::string> extra) {
        std::vector<std::string> a{"--listen", "127.0.0.1:0", "--backend", std::string{to_string(kind)}, "--cores",
                                   std::to_string(cores), "--drain-timeout", "1000"};
        a.insert(a.end(), extra.begin(), extra.end());
        return a;
    }
};

}  // namespace coring::testing
