#pragma once
// What the Google Benchmark programs share: a core per benchmark, and a yield per iteration.
#include <benchmark/benchmark.h>
#include <coring/coring.hpp>

#include <chrono>
#include <exception>
#include <memory>
#include <string>

namespace coring::bench {

// A core on `kind`, or nothing (and the benchmark skipped with the reason) when it cannot start,
// e.g. io_uring forbidden in this container.
inline std::unique_ptr<core> make_core(benchmark::State& state, backend_kind kind) {
    try {
        return std::make_unique<core>(core_config{0, {kind, 256, 0}, std::chrono::milliseconds{1000}});
    } catch (const std::exception& e) {
        state.SkipWithError((std::string{to_string(kind)} + " core: " + e.what()).c_str());
        return nullptr;
    }
}

// The timed loop runs inside the coroutine: each iteration is one yield (a nop op started on
// the backend, completed through the ready queue, and the task resumed).
inline task<> yield_per_iteration(benchmark::State* state) {
    for (auto _ : *state) co_await yield();
}

}  // namespace coring::bench
