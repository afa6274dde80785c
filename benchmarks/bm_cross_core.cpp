// Cross-core submit_to: round-trip latency (one call in flight) and throughput (many in flight),
// on each backend. Each benchmark iteration runs two cores; only the calls are timed (manual
// time), measured on core 0, so thread start-up is not counted.
#include <benchmark/benchmark.h>
#include <coring/coring.hpp>

#include <chrono>

using namespace coring;

namespace {

struct batch {
    unsigned in_flight;  // concurrent callers on core 0
    unsigned calls;      // per caller
    double seconds = 0;
    std::uint64_t checksum = 0;
};

task<> caller(unsigned calls, std::uint64_t* sum) {
    core& here = core::current();
    for (unsigned i = 0; i < calls; ++i) *sum += co_await here.submit_to(1, [i] { return std::uint64_t{i}; });
}

task<> timed(core& c, batch* b) {
    if (c.id() != 0) co_return;
    const auto t0 = std::chrono::steady_clock::now();
    task_group group;
    for (unsigned k = 0; k < b->in_flight; ++k) group.spawn(caller(b->calls, &b->checksum));
    co_await group.join();
    b->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void submit_to_round_trips(benchmark::State& state, backend_kind kind) {
    batch b{static_cast<unsigned>(state.range(0)), static_cast<unsigned>(200'000 / state.range(0))};
    runtime_options o;
    o.cores = 2;
    o.backend = kind;
    o.quiet = true;
    std::uint64_t calls = 0;
    for (auto _ : state) {
        if (run(o, [&b](core& c) { return timed(c, &b); }) != 0) state.SkipWithError("run failed");
        state.SetIterationTime(b.seconds);
        calls += std::uint64_t{b.in_flight} * b.calls;
    }
    benchmark::DoNotOptimize(b.checksum);
    state.SetItemsProcessed(static_cast<std::int64_t>(calls));
    state.counters["ns_per_call"] = benchmark::Counter(static_cast<double>(calls), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

}  // namespace

// Arg: calls in flight. 1 = latency of one round trip; 256 = batched throughput.
BENCHMARK_CAPTURE(submit_to_round_trips, uring, backend_kind::uring)->Arg(1)->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(submit_to_round_trips, epoll, backend_kind::epoll)->Arg(1)->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
