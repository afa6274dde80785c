// runtime_options: the runtime flags every app takes (--cores, --backend, the io_uring fast
// paths...), their --help text and parsing, and --features, the report of what this kernel offers.
#include <coring/blocking_pool.hpp>
#include <coring/log.hpp>
#include <coring/run.hpp>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

namespace coring {

namespace {

unsigned parse_count(std::string_view flag, std::string_view value, unsigned min, unsigned max) {
    unsigned n = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec != std::errc{} || end != value.data() + value.size() || n < min || n > max)
        throw std::invalid_argument(format("{} {}: expected a whole number from {} to {}", flag, value, min, max));
    return n;
}

bool parse_on_off(std::string_view flag, std::string_view value) {
    if (value != "on" && value != "off") throw std::invalid_argument(format("{} {}: expected on or off", flag, value));
    return value == "on";
}

}  // namespace

unsigned default_buffer_count(unsigned cores, std::uint32_t buffer_size) noexcept {
    constexpr std::uint64_t budget = 256ull << 20;  // all cores together
    const std::uint64_t fit = budget / (std::uint64_t{std::max(cores, 1u)} * std::max<std::uint32_t>(buffer_size, 1));
    unsigned n = 1024;
    while (n > 64 && n > fit) n /= 2;  // stays a power of two
    return n;
}

unsigned available_cpus() noexcept { return static_cast<unsigned>(allowed_cpus().size()); }

bool runtime_options::set(std::string_view flag, std::string_view value) {
    if (flag == "--cores") {
        cores = parse_count(flag, value, 0, 1024);
    } else if (flag == "--backend") {
        auto k = parse_backend_kind(value);
        if (!k) throw std::invalid_argument(format("--backend {}: expected uring, epoll or auto", value));
        backend = *k;
    } else if (flag == "--drain-timeout") {
        drain_timeout = std::chrono::milliseconds{parse_count(flag, value, 0, 3'600'000)};
    } else if (flag == "--sq-entries") {
        sq_entries = parse_count(flag, value, 2, 32768);
    } else if (flag == "--buffers") {
        buffer_count = parse_count(flag, value, 1, 32768);
        if (buffer_count & (buffer_count - 1)) throw std::invalid_argument(format("--buffers {}: expected a power of two", value));
    } else if (flag == "--buffer-size") {
        buffer_size = parse_count(flag, value, 64, 1u << 20);
    } else if (flag == "--multishot") {
        multishot = parse_on_off(flag, value);
    } else if (flag == "--coalesce") {
        coalesce = parse_on_off(flag, value);
    } else if (flag == "--recv-bundle") {
        recv_bundle = parse_on_off(flag, value);
    } else if (flag == "--send-zc") {
        send_zc = parse_on_off(flag, value);
    } else if (flag == "--zc-threshold") {
        zc_threshold = parse_count(flag, value, 1, UINT32_MAX);
    } else if (flag == "--registered-buffers") {
        registered_buffers = parse_on_off(flag, value);
    } else if (flag == "--sqpoll") {
        sqpoll = parse_on_off(flag, value);
    } else if (flag == "--fixed-files") {
        fixed_files = parse_on_off(flag, value);
    } else if (flag == "--stats-every") {
        stats_every = std::chrono::seconds{parse_count(flag, value, 1, 86'400)};
    } else if (flag == "--faults") {
        std::string why;
        auto f = fault_config::parse(value, &why);
        if (!f) throw std::invalid_argument(format("--faults {}: {}", value, why));
        faults = *f;
    } else if (flag == "--stats") {
        print_stats = true;
    } else if (flag == "--features") {
        print_features = true;
    } else {
        return false;
    }
    return true;
}

bool runtime_options::is_switch(std::string_view flag) noexcept { return flag == "--stats" || flag == "--features"; }

std::string_view runtime_options::help() noexcept {
    return "  --cores N            cores (threads, one per CPU); 0 = every CPU allowed (default 0)\n"
           "  --backend B          uring | epoll | auto (default auto: io_uring, else epoll)\n"
           "  --drain-timeout MS   on SIGINT/SIGTERM/SIGHUP, time for connections to finish (default 5000)\n"
           "  --sq-entries N       io_uring submission queue size (default 1024); the CQ holds 2 per fd\n"
           "  --buffers N          receive buffers per core, a power of two (default 1024, fewer above 16\n"
           "                       cores: all cores map at most 256 MiB; pages are used only when filled)\n"
           "  --buffer-size BYTES  bytes per receive buffer (default 16384)\n"
           "  --multishot on|off   io_uring multishot accept and receive, where the kernel has them (default on)\n"
           "  --coalesce on|off    gather sends: what a connection queued goes out in one sendmsg (default on)\n"
           "  --recv-bundle on|off io_uring receive bundles, several buffers per completion (6.10+; default on)\n"
           "  --send-zc on|off     io_uring zerocopy sends (SEND_ZC) from --zc-threshold bytes up (default off:\n"
           "                       on loopback the kernel copies anyway, and the wait for each\n"
           "                       notification costs more than the copy saves)\n"
           "  --zc-threshold BYTES the smallest send that goes zerocopy (default 16384)\n"
           "  --registered-buffers on|off  zerocopy sends from receive buffers use them registered (default on)\n"
           "  --sqpoll on|off      io_uring SQ polling: a kernel thread per core submits; it spins while\n"
           "                       busy, so it costs CPU of its own (--stats shows it; default off)\n"
           "  --fixed-files on|off io_uring direct descriptors for accepted sockets, where the kernel has them (default on)\n"
           "  --faults SEED[:NAME=RATE,...]  inject faults the kernel may legally give (testing; default off, or\n"
           "                       CORING_FAULTS): short_io eintr enobufs eagain sq_full delay accept (on with a\n"
           "                       bare seed) and reset (off unless named); --stats counts them\n"
           "  --stats              print per-core counters on exit\n"
           "  --stats-every SECS   every SECS, each core logs one line: live tasks, ops in flight, receive\n"
           "                       buffers in use (what a soak samples; default: never)\n"
           "  --features           print what io_uring and epoll offer here, and exit\n";
}

std::string feature_report(const runtime_options& opts) {
    struct no_sink final : detail::completion_sink {
        void complete(op&) noexcept override {}
        void deliver(op&, bool) noexcept override {}
        void wake_failed(int) noexcept override {}
    } sink;
    auto yes = [](bool b) { return b ? "yes" : "no"; };
    std::string out;
    backend_config cfg = opts.backend_settings();
    cfg.kind = backend_kind::uring;
    cfg.recv_bundle = true;  // probed on, so the report says what the kernel has even when it is off
    try {
        auto uring = make_backend(cfg, sink);
        const backend_features f = uring->features();
        out += format("io_uring: {}\n", uring->describe());
        out += format("  multishot accept:      {}\n", yes(f.multishot_accept));
        out += format("  multishot recv:        {}\n", yes(f.multishot_recv));
        out += format("  provided buffer rings: {}\n", yes(f.buffer_ring));
        auto on = [](bool b) { return b ? "on" : "off"; };
        out += format("  send_zc:               {} ({}{})\n", yes(f.send_zc), on(f.send_zc_on),
                      f.send_zc_on ? format(", from {} bytes", opts.zc_threshold) : std::string{});
        out += format("  registered buffers:    {} ({}; for zerocopy sends from receive buffers)\n",
                      yes(f.registered_buffers), on(f.registered_buffers_on));
        out += format("  SQPOLL:                {} ({})\n", yes(f.sqpoll), on(f.sqpoll_on));
        out += format("  MSG_RING:              {}\n", yes(f.msg_ring));
        out += format("  coalesced sends:       {}{}\n", yes(f.send_msg), opts.coalesce ? "" : " (off by --coalesce off)");
        out += format("  receive bundles:       {}{}\n", yes(f.recv_bundle),
                      f.recv_bundle && !opts.recv_bundle ? " (off by --recv-bundle off)" : "");
        if (f.fixed_files) out += format("  direct descriptors:    yes ({}-slot file table per core)\n", f.fixed_file_slots);
        else out += format("  direct descriptors:    {}\n", opts.fixed_files ? "no (needs Linux 6.8)" : "off (--fixed-files off)");
        out += format("  file I/O:              {}\n", f.file_ops ? "yes (OPENAT2, STATX, READ)" : "no (needs Linux 5.6)");
        if (!opts.multishot) out += "  (multishot off by --multishot off)\n";
    } catch (const std::exception& e) {
        out += format("io_uring: unavailable: {}\n", e.what());
    }
    cfg.kind = backend_kind::epoll;
    try {
        out += format("epoll: {}\n", make_backend(cfg, sink)->describe());
        out += format("  coalesced sends:       yes (sendmsg){}\n", opts.coalesce ? "" : " (off by --coalesce off)");
        out += "  receive bundles:       no (io_uring only)\n";
        out += "  sends: plain send(2) always (no zerocopy, registered buffers or SQ polling)\n";
        out += format("  file I/O:              cached reads and opens inline (RWF_NOWAIT, RESOLVE_CACHED), the rest\n"
                      "                         in a {}-thread blocking pool\n", detail::blocking_pool::threads);
    } catch (const std::exception& e) {
        out += format("epoll: unavailable: {}\n", e.what());
    }
    return out;
}

runtime_options::parse_outcome runtime_options::parse_args(int argc, char** argv, const flag_handler& app_flag,
                                                           std::initializer_list<std::string_view> switches) {
    parse_outcome out;
    for (int i = 1; i < argc; ++i) {
        std::string_view flag = argv[i];
        if (flag == "--help" || flag == "-h") {
            out.help = true;
            return out;
        }
        try {
            if (!flag.starts_with("--"))
                throw std::invalid_argument(format("unexpected argument '{}' (see --help)", flag));
            std::string_view value;
            const auto is_switch_flag = [&](std::string_view f) {
                return is_switch(f) || std::find(switches.begin(), switches.end(), f) != switches.end();
            };
            const bool takes_no_value = is_switch_flag(flag);
            if (const auto eq = flag.find('='); eq != std::string_view::npos) {
                value = flag.substr(eq + 1);
                flag = flag.substr(0, eq);
                // "--stats=off" must not turn --stats on: a switch takes no value at all.
                if (is_switch_flag(flag)) throw std::invalid_argument(format("{} takes no value (got '{}')", flag, value));
            } else if (!takes_no_value) {
                if (i + 1 >= argc) throw std::invalid_argument(format("{}: missing value", flag));
                value = argv[++i];
            }
            if (!(set(flag, value) || (app_flag && app_flag(flag, value))))
                throw std::invalid_argument(format("unknown flag {} (see --help)", flag));
        } catch (const std::invalid_argument& e) {
            out.error = e.what();
            return out;
        }
    }
    return out;
}

void runtime_options::parse_args_or_exit(int argc, char** argv, std::string_view usage, const flag_handler& app_flag,
                                         std::initializer_list<std::string_view> switches) {
    const auto outcome = parse_args(argc, argv, app_flag, switches);
    if (outcome.help) {
        std::printf("%.*s\nruntime flags:\n%.*s", static_cast<int>(usage.size()), usage.data(),
                    static_cast<int>(help().size()), help().data());
        std::exit(0);
    }
    if (!outcome.error.empty()) {
        std::string_view program = argc > 0 ? argv[0] : "coring";
        program.remove_prefix(program.rfind('/') + 1);  // npos + 1 == 0: no slash, nothing removed
        std::fprintf(stderr, "%.*s: %s\n", static_cast<int>(program.size()), program.data(), outcome.error.c_str());
        std::exit(2);
    }
}

runtime_options runtime_options::from_args(int argc, char** argv) {
    const std::string usage = format("usage: {} [runtime flags]", argc > 0 ? argv[0] : "coring");
    return from_args(argc, argv, {}, usage);
}

runtime_options runtime_options::from_args(int argc, char** argv, const flag_handler& app_flag, std::string_view usage,
                                           std::initializer_list<std::string_view> switches) {
    runtime_options opts;
    opts.parse_args_or_exit(argc, argv, usage, app_flag, switches);
    return opts;
}

}  // namespace coring
