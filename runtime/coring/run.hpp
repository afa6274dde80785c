#pragma once
// run(): the thread-per-core launcher. One thread per core, each pinned to its own CPU, each
// with its own core (backend, ready queue, timers); main_fn(core&) starts on every core, after
// setup_fn(core&) has finished on every core when there is one.
// Signals, process-wide: the calling thread watches SIGINT, SIGTERM and SIGHUP (a terminal that
// went away, or a service manager, means "stop"); the first starts a graceful stop on every core,
// the second cancels everything at once. SIGPIPE is ignored (a log line to a pipe nobody reads
// must not kill a server: the write fails with EPIPE instead), and so are SIGUSR1 and SIGUSR2
// (a stray kill -USR1 must not take a server down; they have no meaning here yet).
#include <coring/backend.hpp>
#include <coring/core.hpp>
#include <coring/task.hpp>

#include <chrono>
#include <csignal>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace coring {

// The receive pool's default size per core: 1024 buffers (16 MiB of 16 KiB buffers) up to 16
// cores, then fewer, so that all cores together map at most 256 MiB (64 cores: 256 buffers, 4
// MiB each), never fewer than 64 per core. Mapped is not resident: a buffer's pages are touched
// only when a receive fills it, and given back when it stays cold (backend::trim_buffers).
unsigned default_buffer_count(unsigned cores, std::uint32_t buffer_size) noexcept;

struct runtime_options {
    unsigned cores = 0;                            // 0: one per CPU this process may use
    backend_kind backend = backend_kind::automatic;
    unsigned sq_entries = 1024;
    std::chrono::milliseconds drain_timeout{5000};  // graceful stop: time for live tasks to end
    bool quiet = false;                            // no start-up line
    unsigned buffer_count = 0;                     // receive pool per core (recv_lease); 0: default_buffer_count
    unsigned buffer_size = 16384;
    bool multishot = true;                         // multishot accept/recv where available
    bool coalesce = fast_paths_default();          // --coalesce: gather sends (write_all of pieces, echo)
    bool recv_bundle = fast_paths_default();       // --recv-bundle: io_uring receive bundles where available
    bool send_zc = false;                          // --send-zc: SEND_ZC for large sends where available
    std::uint32_t zc_threshold = 16384;            // --zc-threshold: the smallest send that goes zerocopy
    bool registered_buffers = true;                // --registered-buffers: zerocopy sends from registered pool buffers
    bool sqpoll = false;                           // --sqpoll: a kernel thread polls the SQ (costs a CPU while busy)
    bool fixed_files = fast_paths_default();       // --fixed-files: io_uring direct descriptors where available
    fault_config faults = fault_config::from_environment();  // --faults SEED[:RATES] (faults.hpp); default off
    bool print_stats = false;                      // --stats: per-core counters on exit
    std::chrono::seconds stats_every{0};           // --stats-every: a live line per core per interval; 0: none
    bool print_features = false;                   // --features: what the kernel offers, then exit

    // For one of `cores` cores.
    backend_config backend_settings(unsigned cores = 1) const noexcept {
        const unsigned buffers = buffer_count ? buffer_count : default_buffer_count(cores, buffer_size);
        return {backend,  sq_entries, 0,       buffers, buffer_size,        multishot,
                coalesce, recv_bundle, send_zc, zc_threshold, registered_buffers, sqpoll,
                fixed_files, 0, faults};
    }

    // Takes one runtime flag ("--cores", "--backend", "--drain-timeout", "--sq-entries").
    // Returns false for a flag that is not a runtime flag; throws std::invalid_argument naming
    // the flag and value when the value is bad.
    bool set(std::string_view flag, std::string_view value);
    // Runtime flags that take no value (--stats, --features).
    static bool is_switch(std::string_view flag) noexcept;
    // Help text for those flags, one per line, for an app's --help.
    static std::string_view help() noexcept;

    // An app's own flags: returns false for a flag it does not know (which then is an "unknown
    // flag"), throws std::invalid_argument naming the flag and value when the value is bad.
    using flag_handler = std::function<bool(std::string_view flag, std::string_view value)>;
    struct parse_outcome {
        bool help = false;  // --help or -h came; parsing stopped there
        std::string error;  // one line naming the flag and what is wrong; empty when all was taken
    };
    // Parses argv[1..] into these options (runtime flags) and app_flag (the rest), printing
    // nothing and never exiting: "--flag value" or "--flag=value"; runtime switches and the
    // app's `switches` take no value. Stops at the first error or at --help.
    parse_outcome parse_args(int argc, char** argv, const flag_handler& app_flag = {},
                             std::initializer_list<std::string_view> switches = {});
    // parse_args for main(): on --help prints `usage`, then the runtime flags, and exits 0; on
    // an error prints "PROGRAM: error" on stderr and exits 2.
    void parse_args_or_exit(int argc, char** argv, std::string_view usage, const flag_handler& app_flag = {},
                            std::initializer_list<std::string_view> switches = {});
    // The same into default options: from_args(argc, argv) for a program with no flags of its
    // own, from_args(argc, argv, app_flag, usage) for one that has some.
    static runtime_options from_args(int argc, char** argv);
    static runtime_options from_args(int argc, char** argv, const flag_handler& app_flag, std::string_view usage,
                                     std::initializer_list<std::string_view> switches = {});
};

// What io_uring and epoll offer here, as lines of text (coring-echo --features).
std::string feature_report(const runtime_options& opts);

// Raises this process's open-file limit (RLIMIT_NOFILE) to its hard limit; returns the limit
// now in force. A server or load generator that holds many sockets calls it first, before it
// starts threads: it also grows the kernel's fd table to the limit (up to 65,536 fds) at once.
// Otherwise the table doubles as fds are opened (at 64, 128, ..., 16,384), and each doubling in
// a process with threads waits for an RCU grace period: an accept4 that took 21 ms at fd 1024
// was seen, stalling every connection of that core.
unsigned long raise_fd_limit() noexcept;

// The signals run() treats as a stop request: SIGINT, SIGTERM, SIGHUP.
sigset_t stop_signals() noexcept;
// Sets SIGPIPE, SIGUSR1 and SIGUSR2 to SIG_IGN for the whole process (run() does it first).
void ignore_stray_signals() noexcept;
// Blocks the stop signals in the calling thread, and ignores the stray ones: a server's first
// line in main. Until run() reads them, a stop signal would otherwise take its default action
// and kill the process (a SIGTERM while it parses flags or binds); blocked, it waits pending and
// is run()'s first stop request. The threads and processes started later inherit the block.
void hold_stop_signals() noexcept;

std::vector<int> allowed_cpus();      // the CPUs in this process's affinity mask, ascending
unsigned available_cpus() noexcept;  // how many

// Runs main_fn on every core and returns when every core has stopped: 0 after a clean run or
// stop, 2 when a core could not start, a main task threw or the receive buffers could not fit
// in this machine's memory (the reason is printed), 1 when a core's loop failed.
int run(const runtime_options& opts, std::function<task<>(core&)> main_fn);

// The same with a start-up phase: setup_fn runs on every core first, and main_fn starts
// (on every core) only once setup has finished on every core, so a main may use what any
// core's setup built: per-core services, say, started from core 0 with sharded<T>::start.
// While a core waits for the others its loop keeps turning, so a setup may submit_to any
// core. When a setup throws on any core, no main starts anywhere, every core stops and run()
// returns 2 naming the failure; a stop signal during setup also ends the run before any main.
int run(const runtime_options& opts, std::function<task<>(core&)> setup_fn, std::function<task<>(core&)> main_fn);

}  // namespace coring
