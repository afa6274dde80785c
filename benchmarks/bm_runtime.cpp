// Micro-benchmarks of the runtime's hot paths: task frames, the ready queue, the frame cache, a
// nop through each backend, and timer insert + cancel. Numbers only: nothing here asserts a
// time. BM_operator_new_delete is the frame cache's baseline, measured in the same run.
//
// Each benchmark builds its own core (outside the timed loop): one core per thread, and Google
// Benchmark runs every benchmark on this thread, one after another.
#include <benchmark/benchmark.h>
#include <coring/coring.hpp>
#include <coring/frame_allocator.hpp>

#include "bench_support.hpp"

#include <chrono>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <memory>
#include <new>
#include <string>

using namespace coring;
using namespace std::chrono_literals;
using coring::bench::make_core;
using coring::bench::yield_per_iteration;

namespace {

// ---- task frames ------------------------------------------------------------------------------

task<int> value_of(int x) { co_return x; }

// n tasks, each created, resumed by symmetric transfer, finished and destroyed in turn.
task<std::int64_t> await_values(std::int64_t n) {
    std::int64_t sum = 0;
    for (std::int64_t i = 0; i < n; ++i) sum += co_await value_of(static_cast<int>(i));
    co_return sum;
}

void BM_task_create_resume_destroy(benchmark::State& state) {
    auto c = make_core(state, backend_kind::epoll);  // the backend is not on this path
    if (!c) return;
    const std::int64_t n = state.range(0);
    for (auto _ : state) benchmark::DoNotOptimize(c->block_on(await_values(n)));
    state.SetItemsProcessed(state.iterations() * n);  // per task; block_on's own cost is amortised
}
BENCHMARK(BM_task_create_resume_destroy)->Arg(1000)->Arg(100'000);

// ---- ready queue ------------------------------------------------------------------------------

void BM_ready_queue_push_pop(benchmark::State& state) {
    detail::ready_queue queue;
    const auto n = static_cast<std::size_t>(state.range(0));
    const detail::ready_item item{std::noop_coroutine(), nullptr};
    for (auto _ : state) {
        for (std::size_t i = 0; i < n; ++i) queue.push(item);  // grows on the first pass only
        for (std::size_t i = 0; i < n; ++i) benchmark::DoNotOptimize(queue.pop());
    }
    state.SetItemsProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_ready_queue_push_pop)->Arg(64)->Arg(4096);

// ---- frame allocator ------------------------------------------------------------------------

void BM_frame_alloc_free(benchmark::State& state) {
    const auto size = static_cast<std::size_t>(state.range(0));
    for (auto _ : state) {
        void* frame = detail::allocate_frame(size);
        benchmark::DoNotOptimize(frame);
        detail::free_frame(frame, size);
    }
    state.SetItemsProcessed(state.iterations());
    if (!detail::frame_cache_enabled()) state.SetLabel("cache off (ASan)");
}
BENCHMARK(BM_frame_alloc_free)->RangeMultiplier(2)->Range(64, 1024);

// The baseline: the global heap, as frames would be without the cache.
void BM_operator_new_delete(benchmark::State& state) {
    const auto size = static_cast<std::size_t>(state.range(0));
    for (auto _ : state) {
        void* frame = ::operator new(size);
        benchmark::DoNotOptimize(frame);
        ::operator delete(frame);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_operator_new_delete)->RangeMultiplier(2)->Range(64, 1024);

// ---- a nop through the backend ---------------------------------------------------------------

void BM_nop_round_trip(benchmark::State& state, backend_kind kind) {
    auto c = make_core(state, kind);
    if (!c) return;
    c->block_on(yield_per_iteration(&state));
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(BM_nop_round_trip, uring, backend_kind::uring);
BENCHMARK_CAPTURE(BM_nop_round_trip, epoll, backend_kind::epoll);

// ---- timers -----------------------------------------------------------------------------------

constexpr int sleeps_per_round = 1000;

task<> sleep_an_hour() { (void)co_await sleep_for(1h); }

// Spawns the sleepers, lets each reach its sleep (a timer-heap insert), then cancels them all
// (a heap erase each) and waits for them to end.
task<> insert_and_cancel_timers(int n) {
    task_group sleepers;
    for (int i = 0; i < n; ++i) sleepers.spawn(sleep_an_hour());
    co_await yield();  // queued behind the sleepers, so every one of them is asleep by now
    co_await sleepers.cancel_and_join();
}

void BM_sleep_timer_insert_cancel(benchmark::State& state) {
    auto c = make_core(state, backend_kind::epoll);
    if (!c) return;
    for (auto _ : state) c->block_on(insert_and_cancel_timers(sleeps_per_round));
    state.SetItemsProcessed(state.iterations() * sleeps_per_round);  // per sleep, spawn included
}
BENCHMARK(BM_sleep_timer_insert_cancel);

}  // namespace

BENCHMARK_MAIN();

// Registration above or below BENCHMARK_MAIN() is the same: BENCHMARK() runs at static
// initialisation, before main.

// cross-core submit_to benchmarks: see below
