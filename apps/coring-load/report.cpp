// What coring-load prints and writes when a run ends: the summary, the key=value line a script
// reads, and the --json file; echo, HTTP and WebSocket runs in report(), pub/sub in
// report_pubsub().
#include "report.hpp"

#include <coring/log.hpp>

#include <cmath>
#include <cstdio>
#include <fstream>

namespace coring::load {

std::string num(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f", v);
    return buf;
}
std::string us(std::uint64_t ns) { return num(static_cast<double>(ns) / 1000.0); }

namespace {

std::string json_escape(const std::string& s) {
    std::string out;
    for (char ch : s) {
        if (ch == '"' || ch == '\\') out += '\\';
        if (static_cast<unsigned char>(ch) < 0x20) continue;
        out += ch;
    }
    return out;
}

}  // namespace

const char* protocol_name(load::protocol p) {
    switch (p) {
    case load::protocol::http: return "http";
    case load::protocol::ws: return "ws";
    case load::protocol::pubsub: return "pubsub";
    case load::protocol::nats: return "nats";
    case load::protocol::echo: break;
    }
    return "echo";
}

namespace {

// The window as it ran: shorter than --duration when a stop signal cut it, none when it cut it
// before the window opened.
double window_seconds(const options& o, const results& r) { return r.seconds > 0 || r.cut_short ? r.seconds : o.s.duration; }
double per_second(double n, double secs) { return secs > 0 ? n / secs : 0; }
// Step k's window as it ran: --duration, or less when a stop signal cut it.
double step_seconds(const pubsub_board& b, unsigned k) {
    return static_cast<double>(std::max<std::int64_t>(0, b.step_to(k) - b.step_from(k))) / 1e9;
}

void write_json(const options& o, const runtime_options& runtime, const results& r, const std::string& path) {
    const double secs = window_seconds(o, r);
    const histogram& h = r.latency;
    std::ofstream f{path};
    f << format("{\"tool\": \"coring-load\", \"mode\": \"{}\", \"target\": \"{}\", \"conns\": {}, \"depth\": {}, "
                "\"size_min\": {}, \"size_max\": {}, \"duration_s\": {}, \"warmup_s\": {}, \"rate\": {}, \"procs\": {}, "
                "\"cores_per_proc\": {}, \"backend\": \"{}\", \"connected\": {}, \"messages\": {}, \"msgs_per_sec\": {}, "
                "\"mb_per_sec\": {}, \"latency_us\": {\"p50\": {}, \"p90\": {}, \"p99\": {}, \"p999\": {}, \"max\": {}}, "
                "\"errors\": {\"total\": {}, \"connect\": {}, \"io\": {}, \"eof\": {}, \"verify\": {}, \"timeout\": {}}, "
                "\"idle\": {}, \"idle_up\": {}, \"idle_verified\": {}, \"idle_sampled\": {}, \"setup_s\": {}, "
                "\"unsent\": {}, \"cut_short\": {}, \"first_error\": \"{}\"}\n",
                protocol_name(o.s.proto), o.s.target.to_string(), o.s.conns, o.s.depth, o.s.size_min, o.s.size_max, num(o.s.duration), num(o.s.warmup),
                num(o.s.rate), o.procs, runtime.cores ? runtime.cores : available_cpus(), r.backend, r.connected, r.messages,
                num(per_second(static_cast<double>(r.messages), secs)), num(per_second(static_cast<double>(r.bytes), secs) / 1e6), us(h.percentile(0.5)),
                us(h.percentile(0.9)), us(h.percentile(0.99)), us(h.percentile(0.999)), us(h.max()), r.errors.total(),
                r.errors.connect, r.errors.io, r.errors.eof, r.errors.verify, r.errors.timeout, o.s.idle, r.idle_up,
                r.idle_verified, idle_sampled(o.s), num(r.setup_seconds), r.unsent, r.cut_short ? "true" : "false", json_escape(r.first_error));
    if (!f) std::fprintf(stderr, "coring-load: cannot write %s\n", path.c_str());
}

}  // namespace

// The pub/sub summary, key=value line and JSON; the exit code (1 when anything was lost,
// duplicated, reordered or failed among the subscribers that kept reading).
int report_pubsub(const options& o, const results& r, bool failed, const pubsub_board* board) {
    const auto& ps = o.s.pubsub;
    const auto& c = r.pubsub;
    // With steps, the window is the steps that ran (their pauses publish nothing).
    unsigned steps_run = 1;
    while (board && steps_run < ps.steps && board->steps[steps_run - 1].verdict.load() == 1) ++steps_run;
    // The steps' windows as they ran (a stop signal may have cut one short).
    double secs = (r.seconds > 0 ? r.seconds : o.s.duration) * steps_run;
    if (board) {
        secs = 0;
        for (unsigned k = 0; k < steps_run; ++k) secs += step_seconds(*board, k);
    }
    const bool cut = board && board->was_cut();
    const histogram& h = r.latency;
    const double deliveries = per_second(static_cast<double>(r.messages), secs);
    const double publishes = per_second(static_cast<double>(c.published_window), secs);
    const char* proto = protocol_name(o.s.proto);
    std::printf("coring-load %s %s: %u subscribers, %u channels%s, %u publisher(s), %s, %zu B, %.1f s measured%s, %s\n", proto,
                o.s.target.to_string().c_str(), ps.subscribers, ps.channels, ps.patterns ? " (patterns)" : "", ps.publishers,
                o.s.rate > 0 ? format("open loop at {}/s", o.s.rate).c_str() : format("closed loop, depth {}", o.s.depth).c_str(),
                o.s.size_min, secs, cut ? " (cut short by a stop signal)" : "", r.backend.c_str());
    std::printf("  %.0f publishes/s, %.0f deliveries/s; latency us: p50 %s  p99 %s  p99.9 %s  max %s\n", publishes, deliveries,
                us(h.percentile(0.5)).c_str(), us(h.percentile(0.99)).c_str(), us(h.percentile(0.999)).c_str(), us(h.max()).c_str());
    std::printf("  subscribed %llu of %u in %.1f s, %llu reached by a message; published %llu, delivered %llu; lost %llu, "
                "duplicated %llu, reordered %llu\n",
                static_cast<unsigned long long>(c.subscribed), ps.subscribers, r.setup_seconds,
                static_cast<unsigned long long>(c.reached), static_cast<unsigned long long>(c.published),
                static_cast<unsigned long long>(c.delivered), static_cast<unsigned long long>(c.lost),
                static_cast<unsigned long long>(c.duplicated), static_cast<unsigned long long>(c.reordered));
    if (ps.slow > 0)
        std::printf("  slow subscribers (%u, stalled after %.1f s): received %llu, lost %llu, cut by the server %llu\n", ps.slow,
                    ps.slow_after, static_cast<unsigned long long>(c.slow_received), static_cast<unsigned long long>(c.slow_lost),
                    static_cast<unsigned long long>(c.slow_cut));
    std::printf("  errors %llu (connect %llu, io %llu, eof %llu, verify %llu, timeout %llu)\n",
                static_cast<unsigned long long>(r.errors.total()), static_cast<unsigned long long>(r.errors.connect),
                static_cast<unsigned long long>(r.errors.io), static_cast<unsigned long long>(r.errors.eof),
                static_cast<unsigned long long>(r.errors.verify), static_cast<unsigned long long>(r.errors.timeout));
    std::printf("publishes_per_sec=%.0f deliveries_per_sec=%.0f p50_us=%s p99_us=%s p999_us=%s max_us=%s lost=%llu duplicated=%llu "
                "reordered=%llu slow_cut=%llu slow_lost=%llu errors=%llu subscribers=%u size=%zu\n",
                publishes, deliveries, us(h.percentile(0.5)).c_str(), us(h.percentile(0.99)).c_str(), us(h.percentile(0.999)).c_str(),
                us(h.max()).c_str(), static_cast<unsigned long long>(c.lost), static_cast<unsigned long long>(c.duplicated),
                static_cast<unsigned long long>(c.reordered), static_cast<unsigned long long>(c.slow_cut),
                static_cast<unsigned long long>(c.slow_lost), static_cast<unsigned long long>(r.errors.total()), ps.subscribers,
                o.s.size_min);
    // Each step: the rate asked, what was sent and delivered in its window, and its verdict.
    std::string steps = "[";
    for (unsigned k = 0; k < ps.steps && board; ++k) {
        const pubsub_step& st = board->steps[k];
        const histogram sh = k < r.steps.size() ? r.steps[k] : histogram{};
        const int verdict = st.verdict.load();
        if (k > 0) steps += ", ";
        steps += format("{\"rate\": {}, \"publishes_per_sec\": {}, \"deliveries_per_sec\": {}, \"expected\": {}, "
                        "\"on_time\": {}, \"p50_us\": {}, \"p99_us\": {}, \"verdict\": \"{}\"}",
                        num(o.s.rate * std::pow(ps.step_factor, k)), num(per_second(static_cast<double>(st.published.load()), step_seconds(*board, k))),
                        num(per_second(static_cast<double>(sh.count()), step_seconds(*board, k))), st.expected.load(), st.on_time.load(),
                        us(sh.percentile(0.5)), us(sh.percentile(0.99)),
                        verdict == 1 ? "within" : verdict == 2 ? "over" : ps.steps == 1 ? "-" : "not run");
    }
    steps += "]";
    if (!o.json.empty()) {
        std::ofstream f{o.json};
        f << format("{\"tool\": \"coring-load\", \"mode\": \"{}\", \"target\": \"{}\", \"subscribers\": {}, \"channels\": {}, "
                    "\"patterns\": {}, \"publishers\": {}, \"depth\": {}, \"rate\": {}, \"size\": {}, \"duration_s\": {}, "
                    "\"warmup_s\": {}, \"backend\": \"{}\", \"connected\": {}, \"subscribed\": {}, \"published\": {}, "
                    "\"delivered\": {}, \"messages\": {}, \"publishes_per_sec\": {}, \"deliveries_per_sec\": {}, "
                    "\"latency_us\": {\"p50\": {}, \"p90\": {}, \"p99\": {}, \"p999\": {}, \"max\": {}}, \"lost\": {}, "
                    "\"duplicated\": {}, \"reordered\": {}, \"slow\": {}, \"slow_received\": {}, \"slow_lost\": {}, "
                    "\"slow_cut\": {}, \"errors\": {\"total\": {}, \"connect\": {}, \"io\": {}, \"eof\": {}, \"verify\": {}, "
                    "\"timeout\": {}}, \"procs\": {}, \"setup_s\": {}, \"reached\": {}, \"step_limit_ms\": {}, \"steps\": {}, "
                    "\"first_error\": \"{}\"}\n",
                    proto, o.s.target.to_string(), ps.subscribers, ps.channels, ps.patterns ? "true" : "false", ps.publishers,
                    o.s.depth, num(o.s.rate), o.s.size_min, num(o.s.duration), num(o.s.warmup), r.backend, r.connected, c.subscribed,
                    c.published, c.delivered, r.messages, num(publishes), num(deliveries), us(h.percentile(0.5)),
                    us(h.percentile(0.9)), us(h.percentile(0.99)), us(h.percentile(0.999)), us(h.max()), c.lost, c.duplicated,
                    c.reordered, ps.slow, c.slow_received, c.slow_lost, c.slow_cut, r.errors.total(), r.errors.connect,
                    r.errors.io, r.errors.eof, r.errors.verify, r.errors.timeout, o.procs, num(r.setup_seconds), c.reached,
                    ps.step_limit.count(), steps, json_escape(r.first_error));
        if (!f) std::fprintf(stderr, "coring-load: cannot write %s\n", o.json.c_str());
    }
    if (c.lost + c.duplicated + c.reordered > 0)
        std::fprintf(stderr, "coring-load: delivery failed: %llu lost, %llu duplicated, %llu reordered\n",
                     static_cast<unsigned long long>(c.lost), static_cast<unsigned long long>(c.duplicated),
                     static_cast<unsigned long long>(c.reordered));
    if (r.errors.total() > 0)
        std::fprintf(stderr, "coring-load: %llu error(s), the result is partial; first: %s\n",
                     static_cast<unsigned long long>(r.errors.total()), r.first_error.c_str());
    return failed || r.errors.total() > 0 || c.lost + c.duplicated + c.reordered > 0 ? 1 : 0;
}

int report(const options& o, const runtime_options& runtime, const results& r, bool failed) {
    const double secs = window_seconds(o, r);
    const histogram& h = r.latency;
    const double rate = per_second(static_cast<double>(r.messages), secs);
    const double mb = per_second(static_cast<double>(r.bytes), secs) / 1e6;
    const std::string size = o.s.size_min == o.s.size_max ? format("{} B", o.s.size_min)
                                                          : format("{}..{} B", o.s.size_min, o.s.size_max);
    const char* proto = protocol_name(o.s.proto);
    std::printf("coring-load %s %s: %u conns, depth %u, %s, %s, %.1f s measured%s, %s, %u proc(s)\n", proto,
                o.s.target.to_string().c_str(), o.s.conns, o.s.depth, size.c_str(),
                o.s.rate > 0 ? format("open loop at {}/s", o.s.rate).c_str() : "closed loop", secs,
                r.cut_short ? " (cut short by a stop signal)" : "", r.backend.c_str(), o.procs);
    std::printf("  %.0f msgs/s, %.2f MB/s; latency us: p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n", rate, mb, us(h.percentile(0.5)).c_str(), us(h.percentile(0.9)).c_str(),
                us(h.percentile(0.99)).c_str(), us(h.percentile(0.999)).c_str(), us(h.max()).c_str());
    std::printf("  connected %llu of %u; errors %llu (connect %llu, io %llu, eof %llu, verify %llu, timeout %llu)\n",
                static_cast<unsigned long long>(r.connected), o.s.conns,
                static_cast<unsigned long long>(r.errors.total()), static_cast<unsigned long long>(r.errors.connect),
                static_cast<unsigned long long>(r.errors.io), static_cast<unsigned long long>(r.errors.eof),
                static_cast<unsigned long long>(r.errors.verify), static_cast<unsigned long long>(r.errors.timeout));
    std::printf("msgs_per_sec=%.0f mb_per_sec=%.3f p50_us=%s p90_us=%s p99_us=%s p999_us=%s max_us=%s errors=%llu conns=%u "
                "depth=%u size=%zu\n",
                rate, mb, us(h.percentile(0.5)).c_str(), us(h.percentile(0.9)).c_str(),
                us(h.percentile(0.99)).c_str(), us(h.percentile(0.999)).c_str(), us(h.max()).c_str(),
                static_cast<unsigned long long>(r.errors.total()), o.s.conns, o.s.depth, o.s.size_max);
    if (r.unsent > 0)
        std::printf("  the open loop fell behind: %llu scheduled sends never made (in the latencies, as late as the end made them)\n",
                    static_cast<unsigned long long>(r.unsent));
    if (o.s.idle > 0)
        std::printf("  idle: %llu of %llu up in %.1f s, %llu of %llu sampled verified again\n",
                    static_cast<unsigned long long>(r.idle_up), static_cast<unsigned long long>(o.s.idle),
                    r.setup_seconds, static_cast<unsigned long long>(r.idle_verified),
                    static_cast<unsigned long long>(idle_sampled(o.s)));
    if (!o.json.empty()) write_json(o, runtime, r, o.json);
    if (r.errors.total() > 0) {
        std::fprintf(stderr, "coring-load: %llu error(s), the result is partial; first: %s\n",
                     static_cast<unsigned long long>(r.errors.total()), r.first_error.c_str());
        return 1;
    }
    return failed ? 1 : 0;
}

}  // namespace coring::load
