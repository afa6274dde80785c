#include <coring/blocking_pool.hpp>
#include <coring/log.hpp>
#include <coring/run.hpp>
#include <coring/timer.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <latch>
#include <memory>
#include <mutex>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdexcept>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <thread>
#include <unistd.h>
#include <vector>

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

std::vector<int> allowed_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    std::vector<int> cpus;
    if (::sched_getaffinity(0, sizeof set, &set) == 0)
        for (int c = 0; c < CPU_SETSIZE; ++c)
            if (CPU_ISSET(c, &set)) cpus.push_back(c);
    if (cpus.empty()) cpus.push_back(0);
    return cpus;
}

namespace {

// Wraps each core's main task: an exception escaping it (a bind that failed, say) is a start-up
// failure of the whole program: recorded once, and every core is asked to stop.
struct launch_state {
    std::vector<core*> cores;
    std::mutex lock;  // guards cores (the relay must not ring a core being destroyed), stop_requests, first_error
    // Stop signals seen so far. A signal can come while some cores are still being built; each
    // core is given every request made before it registered, so none is lost and a first signal
    // never turns into a core's "second one: stop at once".
    unsigned stop_requests = 0;
    std::string first_error;
    bool main_failed = false;

    void fail(std::string message) {
        std::lock_guard g{lock};
        if (first_error.empty()) first_error = std::move(message);
        main_failed = true;
        for (core* c : cores)
            if (c) c->request_stop_from_any_thread();
    }
};

// MemTotal from /proc/meminfo in bytes; 0 when it cannot be read.
std::uint64_t memory_total() noexcept {
    std::FILE* f = std::fopen("/proc/meminfo", "re");
    if (!f) return 0;
    unsigned long long kib = 0;
    char line[256];
    while (std::fgets(line, sizeof line, f) && std::sscanf(line, "MemTotal: %llu kB", &kib) != 1) {}
    std::fclose(f);
    return kib * 1024;
}

std::string gib(std::uint64_t bytes) {
    return format("{}.{} GiB", bytes >> 30, ((bytes & ((1ull << 30) - 1)) * 10) >> 30);
}

std::string mib(std::uint64_t bytes) { return format("{} MiB", (bytes + (1ull << 19)) >> 20); }

// --stats-every: the gauges a soak watches for leaks, one line per core per interval, in a
// fixed "name value" form that tests/soak.py parses (cumulative counters stay in --stats). A
// background task: it keeps logging through a stop's drain and never holds the core up.
task<> log_stats_every(core& c, std::chrono::seconds every) {
    for (;;) {
        const auto slept = co_await sleep_for(every);  // not in the condition: g++ 12
        if (!slept) co_return;  // cancelled: the core is going down
        const core_stats s = c.stats();
        log("stats core {}: tasks {}, in_flight {}, buffers_in_use {}, pool_touched_kib {}, buffer_waits {}, "
            "spare_buffers {}, mail_deferred {}",
            c.id(), c.live_tasks(), c.io().in_flight(), s.backend.buffers_in_use, s.backend.pool_touched_bytes / 1024,
            s.backend.buffer_waits, s.backend.spare_buffers, s.mail_deferred);
    }
}

task<> guard_main(task<> main_task, launch_state* state) {
    try {
        co_await std::move(main_task);
    } catch (const std::exception& e) {
        state->fail(e.what());
    }
}

}  // namespace

unsigned long raise_fd_limit() noexcept {
    rlimit r{};
    if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return 0;
    if (r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &r);
        ::getrlimit(RLIMIT_NOFILE, &r);
    }
    return static_cast<unsigned long>(r.rlim_cur);
}

sigset_t stop_signals() noexcept {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    return set;
}

void ignore_stray_signals() noexcept {
    // Dispositions, not the mask: they hold in every thread and survive until exit.
    ::signal(SIGPIPE, SIG_IGN);
    ::signal(SIGUSR1, SIG_IGN);
    ::signal(SIGUSR2, SIG_IGN);
}

void hold_stop_signals() noexcept {
    ignore_stray_signals();
    const sigset_t stop = stop_signals();
    pthread_sigmask(SIG_BLOCK, &stop, nullptr);
}

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
            const bool takes_no_value = is_switch(flag) || std::find(switches.begin(), switches.end(), flag) != switches.end();
            if (const auto eq = flag.find('='); eq != std::string_view::npos) {
                value = flag.substr(eq + 1);
                flag = flag.substr(0, eq);
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

namespace {

// The setup phase's barrier: how many cores have finished setup, and whether any failed.
struct setup_barrier {
    unsigned cores = 0;
    std::atomic<unsigned> finished{0};
    std::atomic<bool> failed{false};
};

using core_fn = std::function<task<>(core&)>;

// One core's start-up with a setup phase: its setup, then a wait for every other core's, then
// its main (guarded as without setup).
task<> setup_then_main(core& c, const core_fn* setup_fn, const core_fn* main_fn, setup_barrier* barrier,
                       launch_state* state) {
    std::string error;
    try {
        co_await (*setup_fn)(c);
    } catch (const std::exception& e) {
        error = e.what();
    } catch (...) {
        error = "an exception that is not a std::exception";
    }
    if (!error.empty()) {
        barrier->failed = true;  // before counting: whoever sees every core finished sees this too
        state->fail(format("core {}: setup: {}", c.id(), error));
    }
    barrier->finished.fetch_add(1);
    // The wait must not block the loop: a peer's setup may be awaiting a submit_to that this
    // core serves. It happens once per run, so polling each millisecond costs nothing.
    while (barrier->finished.load() < barrier->cores) {
        if (barrier->failed.load() || c.stopping()) co_return;
        const auto slept = co_await sleep_for(std::chrono::milliseconds{1});  // not in the condition: g++ 12
        if (!slept) co_return;  // cancelled: stopping
    }
    if (barrier->failed.load() || c.stopping()) co_return;
    task<> main_task;
    try {
        main_task = (*main_fn)(c);
    } catch (const std::exception& e) {
        state->fail(e.what());
        co_return;
    }
    co_await guard_main(std::move(main_task), state);
}

}  // namespace

int run(const runtime_options& opts, std::function<task<>(core&)> main_fn) {
    return run(opts, nullptr, std::move(main_fn));
}

int run(const runtime_options& opts, std::function<task<>(core&)> setup_fn, std::function<task<>(core&)> main_fn) {
    if (opts.print_features) {
        std::fputs(feature_report(opts).c_str(), stdout);
        return 0;
    }
    const std::vector<int> cpus = allowed_cpus();
    const unsigned n = opts.cores ? opts.cores : static_cast<unsigned>(cpus.size());

    // Each core maps its pool on first use, so a pool that cannot fit would start fine and then
    // fail every connection: refuse it now, while the reason can still be said.
    const unsigned buffers = opts.backend_settings(n).buffer_count;
    const std::uint64_t pools = std::uint64_t{buffers} * opts.buffer_size * n;
    if (const std::uint64_t memory = memory_total(); memory != 0 && pools > memory) {
        log("--buffers {} x --buffer-size {} x {} core{} = {} of receive buffers, more than this machine's {} of memory",
            buffers, opts.buffer_size, n, n == 1 ? "" : "s", gib(pools), gib(memory));
        return 2;
    }

    ignore_stray_signals();
    // Stop signals go to a signalfd read by this thread; every core thread inherits the block.
    const sigset_t stop_set = stop_signals();
    sigset_t old_mask;
    pthread_sigmask(SIG_BLOCK, &stop_set, &old_mask);
    const int sig_fd = ::signalfd(-1, &stop_set, SFD_CLOEXEC);
    const int done_fd = ::eventfd(0, EFD_CLOEXEC);

    launch_state state;
    state.cores.assign(n, nullptr);
    detail::run_group group;
    group.size = n;
    std::latch started{static_cast<std::ptrdiff_t>(n)};
    std::latch stopped{static_cast<std::ptrdiff_t>(n)};  // no core dies while a peer may ring it
    std::atomic<bool> start_failed{false};
    std::atomic<bool> loop_failed{false};
    std::vector<core_stats> final_stats(n);
    setup_barrier setup;
    setup.cores = n;

    auto core_main = [&](unsigned k) {
        std::unique_ptr<core> c;
        try {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpus[k % cpus.size()], &one);  // more cores than CPUs: they share, still run
            if (const int e = pthread_setaffinity_np(pthread_self(), sizeof one, &one); e != 0)
                throw std::system_error(e, std::system_category(), format("pin core {} to CPU {}", k, cpus[k % cpus.size()]));
            core_config cfg;
            cfg.id = k;
            cfg.backend = opts.backend_settings(n);
            cfg.drain_timeout = opts.drain_timeout;
            c = std::make_unique<core>(cfg);
            std::lock_guard g{state.lock};
            state.cores[k] = c.get();
            for (unsigned i = 0; i < state.stop_requests; ++i) c->request_stop_from_any_thread();
            if (k == 0 && !opts.quiet) {
                if (!c->fallback_reason().empty()) log("{}", c->fallback_reason());
                log("{} core(s), {}; receive pool {} x {} B per core ({} mapped, resident only when used)", n,
                    c->io().describe(), cfg.backend.buffer_count, cfg.backend.buffer_size,
                    mib(std::uint64_t{cfg.backend.buffer_count} * cfg.backend.buffer_size * n));
                if (opts.faults.on) log("injecting faults ({}; replay with --faults or CORING_FAULTS)", opts.faults.describe());
            }
        } catch (const std::exception& e) {
            start_failed = true;
            state.fail(format("core {}: {}", k, e.what()));
        }
        started.arrive_and_wait();  // all up, or none runs main_fn
        if (c && !start_failed) {
            c->join_group(state.cores, &group);  // complete: every core was set before the latch
            if (opts.stats_every.count() > 0) c->spawn_background(log_stats_every(*c, opts.stats_every));
            try {
                if (setup_fn)
                    c->spawn(setup_then_main(*c, &setup_fn, &main_fn, &setup, &state));
                else
                    c->spawn(guard_main(main_fn(*c), &state));
                c->run();
            } catch (const std::exception& e) {
                loop_failed = true;
                state.fail(format("core {}: {}", k, e.what()));  // every core is asked to stop
                c->leave_group();  // or the others would wait for this one forever
            }
        }
        stopped.arrive_and_wait();
        {
            std::lock_guard g{state.lock};
            state.cores[k] = nullptr;
            if (c) final_stats[k] = c->stats();
        }
        c.reset();
        const std::uint64_t one = 1;
        [[maybe_unused]] ssize_t w = ::write(done_fd, &one, sizeof one);
    };

    std::vector<std::thread> threads;
    threads.reserve(n);
    for (unsigned k = 0; k < n; ++k) threads.emplace_back(core_main, k);

    // Wait for the cores to finish, relaying stop signals to every core meanwhile.
    std::uint64_t finished = 0;
    int signals_seen = 0;
    while (finished < n) {
        pollfd fds[2] = {{done_fd, POLLIN, 0}, {sig_fd, POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) continue;  // EINTR
        if (fds[0].revents & POLLIN) {
            std::uint64_t count = 0;
            if (::read(done_fd, &count, sizeof count) == sizeof count) finished += count;
        }
        if (fds[1].revents & POLLIN) {
            signalfd_siginfo info{};
            if (::read(sig_fd, &info, sizeof info) != sizeof info) continue;
            ++signals_seen;
            if (!opts.quiet)
                log(signals_seen == 1 ? "{}: stopping (up to {} ms for connections to finish)"
                                      : "{}: stopping now", strsignal(static_cast<int>(info.ssi_signo)),
                    opts.drain_timeout.count());
            std::lock_guard g{state.lock};
            ++state.stop_requests;  // cores not registered yet get it when they do
            for (core* c : state.cores)
                if (c) c->request_stop_from_any_thread();
        }
    }
    for (auto& t : threads) t.join();
    ::close(sig_fd);
    ::close(done_fd);
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    if (opts.print_stats) {
        core_stats total;
        for (unsigned k = 0; k < n; ++k) {
            log("stats core {}: {}", k, to_string(final_stats[k]));
            total += final_stats[k];
        }
        if (n > 1) log("stats total: {}", to_string(total));
    }

    if (state.main_failed) {
        log("{}", state.first_error);
        return 2;
    }
    return loop_failed ? 1 : 0;
}

}  // namespace coring
