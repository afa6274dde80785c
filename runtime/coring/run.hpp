#pragma once
// run(): the thread-per-core launcher. One thread per core, each pinned to its own CPU, each
// with its own core (backend, ready queue, timers); main_fn(core&) starts on every core.
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
#include <string>
#include <string_view>
#include <vector>

namespace coring {

struct runtime_options {
    unsigned cores = 0;                            // 0: one per CPU this process may use
    backend_kind backend = backend_kind::automatic;
    unsigned sq_entries = 1024;
    std::chrono::milliseconds drain_timeout{5000};  // graceful stop: time for live tasks to end
    bool quiet = false;                            // no start-up line
    unsigned buffer_count = 1024;                  // provided-buffer pool per core (recv_lease)
    unsigned buffer_size = 16384;
    bool multishot = true;                         // multishot accept/recv where available
    bool print_stats = false;                      // --stats: per-core counters on exit
    bool print_features = false;                   // --features: what the kernel offers, then exit

    backend_config backend_settings() const noexcept {
        return {backend, sq_entries, 0, buffer_count, buffer_size, multishot};
    }

    // Takes one runtime flag ("--cores", "--backend", "--drain-timeout", "--sq-entries").
    // Returns false for a flag that is not a runtime flag; throws std::invalid_argument naming
    // the flag and value when the value is bad.
    bool set(std::string_view flag, std::string_view value);
    // Runtime flags that take no value (--stats, --features).
    static bool is_switch(std::string_view flag) noexcept;
    // Help text for those flags, one per line, for an app's --help.
    static std::string_view help() noexcept;
    // For programs with no flags of their own: parses argv, prints help on --help and exits 0,
    // prints one line and exits 2 on a bad or unknown flag.
    static runtime_options from_args(int argc, char** argv);
};

// What io_uring and epoll offer here, as lines of text (coring-echo --features).
std::string feature_report(const runtime_options& opts);

// Raises this process's open-file limit (RLIMIT_NOFILE) to its hard limit; returns the limit
// now in force. A server or load generator that holds many sockets calls it first.
unsigned long raise_fd_limit() noexcept;

// The signals run() treats as a stop request: SIGINT, SIGTERM, SIGHUP.
sigset_t stop_signals() noexcept;
// Sets SIGPIPE, SIGUSR1 and SIGUSR2 to SIG_IGN for the whole process (run() does it first).
void ignore_stray_signals() noexcept;

std::vector<int> allowed_cpus();      // the CPUs in this process's affinity mask, ascending
unsigned available_cpus() noexcept;  // how many

// Runs main_fn on every core and returns when every core has stopped: 0 after a clean run or
// stop, 2 when a core could not start or the receive buffers could not fit in this machine's
// memory (the reason is printed), 1 when a core's loop failed.
int run(const runtime_options& opts, std::function<task<>(core&)> main_fn);

}  // namespace coring
