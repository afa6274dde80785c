// echo-client: the small closed-loop load generator behind `./dev bench` (the full coring-load
// is apps/coring-load). N connections, each sends a message, waits for the whole echo, checks
// every byte, and sends the next. Prints one result line: msgs/s and latency percentiles.
#include "../apps/common/cli.hpp"

#include <coring/coring.hpp>
#include <coring/log.hpp>

#include <algorithm>
#include <cstring>
#include <vector>

using namespace coring;

namespace {

constexpr std::string_view usage =
    "usage: echo-client [--target ADDR] [--conns N] [--size BYTES] [--duration S] [--warmup S]\n"
    "Closed-loop echo load: each connection has one message in flight; every byte is verified.\n"
    "  --target ADDR     server address (default 127.0.0.1:7000)\n"
    "  --conns N         connections (default 64)\n"
    "  --size BYTES      message size (default 64)\n"
    "  --duration S      measured seconds (default 3)\n"
    "  --warmup S        unmeasured seconds first (default 1)";

struct settings {
    address target = address::ipv4_loopback(7000);
    unsigned conns = 64;
    std::size_t size = 64;
    double duration = 3;
    double warmup = 1;
};

struct totals {
    std::uint64_t messages = 0;
    std::uint64_t errors = 0;
    std::vector<std::uint32_t> latency_ns;  // one sample per measured message (capped at ~4 s)
};

std::uint64_t parse_number(std::string_view flag, std::string_view v, double* real = nullptr) {
    char* end = nullptr;
    const std::string s{v};
    const double d = std::strtod(s.c_str(), &end);
    if (s.empty() || *end != '\0' || d < 0) throw std::invalid_argument(std::string{flag} + " " + s + ": expected a number");
    if (real) *real = d;
    return static_cast<std::uint64_t>(d);
}

// Message k of connection c: bytes that differ per connection and per message, so a reply
// delivered to the wrong connection, out of order, or torn, fails the check.
void fill(std::span<std::byte> msg, unsigned conn, std::uint64_t seq) {
    std::uint64_t x = (std::uint64_t{conn} << 40) ^ (seq * 0x9E3779B97F4A7C15ull);
    for (auto& b : msg) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        b = std::byte(x >> 56);
    }
}

task<> one_connection(settings s, unsigned id, std::int64_t measure_from, std::int64_t stop_at, totals* out) {
    auto conn = co_await tcp_stream::connect(s.target);
    if (!conn) {
        ++out->errors;
        log("connect {}: {}", s.target.to_string(), conn.error().message());
        co_return;
    }
    (void)conn->set_nodelay(true);
    std::vector<std::byte> msg(s.size), reply(s.size);
    for (std::uint64_t seq = 0;; ++seq) {
        const std::int64_t start = core::now_ns();
        if (start >= stop_at) break;
        fill(msg, id, seq);
        const auto sent = co_await conn->write_all(msg);
        if (!sent) {
            ++out->errors;
            break;
        }
        std::size_t got = 0;
        while (got < reply.size()) {
            const auto n = co_await conn->recv(std::span(reply).subspan(got));
            if (!n || *n == 0) break;
            got += *n;
        }
        if (got != reply.size() || std::memcmp(msg.data(), reply.data(), msg.size()) != 0) {
            ++out->errors;
            break;
        }
        const std::int64_t end = core::now_ns();
        if (start >= measure_from) {
            ++out->messages;
            out->latency_ns.push_back(static_cast<std::uint32_t>(std::min<std::int64_t>(end - start, UINT32_MAX)));
        }
    }
    co_await conn->close();
}

task<> drive(settings s, totals* out) {
    const std::int64_t now = core::now_ns();
    const std::int64_t measure_from = now + static_cast<std::int64_t>(s.warmup * 1e9);
    const std::int64_t stop_at = measure_from + static_cast<std::int64_t>(s.duration * 1e9);
    task_group group;
    for (unsigned i = 0; i < s.conns; ++i) group.spawn(one_connection(s, i, measure_from, stop_at, out));
    co_await group.join();
}

double percentile_us(std::vector<std::uint32_t>& v, double p) {
    if (v.empty()) return 0;
    const std::size_t k = std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())));
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return v[k] / 1000.0;
}

}  // namespace

int main(int argc, char** argv) {
    runtime_options runtime;
    runtime.quiet = true;
    runtime.cores = 1;
    settings s;
    apps::parse_flags(argc, argv, usage, runtime, [&](std::string_view flag, std::string_view value) {
        if (flag == "--target") {
            s.target = apps::address_flag(flag, value);
        } else if (flag == "--conns") {
            s.conns = static_cast<unsigned>(parse_number(flag, value));
            if (s.conns == 0) throw std::invalid_argument("--conns: at least 1");
        } else if (flag == "--size") {
            s.size = parse_number(flag, value);
            if (s.size == 0 || s.size > (16 << 20)) throw std::invalid_argument("--size: 1 byte to 16 MiB");
        } else if (flag == "--duration") {
            parse_number(flag, value, &s.duration);
        } else if (flag == "--warmup") {
            parse_number(flag, value, &s.warmup);
        } else {
            return false;
        }
        return true;
    });
    if (runtime.cores != 1) {
        std::fprintf(stderr, "echo-client: runs on one core (use several processes for more)\n");
        return 2;
    }
    totals t;
    const int rc = run(runtime, [&s, &t](core&) { return drive(s, &t); });
    if (rc != 0) return rc;
    const double msgs = static_cast<double>(t.messages) / s.duration;
    std::printf("msgs_per_sec=%.0f p50_us=%.1f p99_us=%.1f errors=%llu conns=%u size=%zu\n", msgs,
                percentile_us(t.latency_ns, 0.50), percentile_us(t.latency_ns, 0.99),
                static_cast<unsigned long long>(t.errors), s.conns, s.size);
    return t.errors == 0 ? 0 : 1;
}
