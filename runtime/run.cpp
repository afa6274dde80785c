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
#include <fcntl.h>
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
    } catch (...) {  // a main that throws an int or a string still fails the run
        state->fail("an exception that is not a std::exception");
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
    // An fd just below the limit makes the kernel size its table for it; closing it keeps the
    // table. 64 Ki fds cost the kernel 512 KiB of pointers: beyond that, growth is left to it.
    constexpr rlim_t presized = 65536;
    const rlim_t top = std::min(r.rlim_cur, presized);
    if (const int any = ::open("/dev/null", O_RDONLY | O_CLOEXEC); any >= 0) {
        if (top > 0) {
            const int high = ::fcntl(any, F_DUPFD_CLOEXEC, static_cast<int>(top - 1));
            if (high >= 0) ::close(high);
        }
        ::close(any);
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
    } catch (...) {
        state->fail("an exception that is not a std::exception");
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
