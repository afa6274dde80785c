#pragma once
// run(): the thread-per-core launcher. One thread per core, each pinned to its own CPU, each
// with its own core (backend, ready queue, timers); main_fn(core&) starts on every core. The
// calling thread watches SIGINT/SIGTERM: the first starts a graceful stop on every core, the
// second cancels everything at once.
#include <coring/backend.hpp>
#include <coring/core.hpp>
#include <coring/task.hpp>

#include <chrono>
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

std::vector<int> allowed_cpus();      // the CPUs in this process's affinity mask, ascending
unsigned available_cpus() noexcept;  // how many

// Runs main_fn on every core and returns when every core has stopped: 0 after a clean run or
// stop, 2 when a core could not start (the reason is printed), 1 when a core's loop failed.
int run(const runtime_options& opts, std::function<task<>(core&)> main_fn);

}  // namespace coring
