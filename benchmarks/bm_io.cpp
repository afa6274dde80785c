// Micro-benchmarks of one I/O through coring against the same I/O without it, measured in the
// same run: a no-op SQE round trip (coring's reactor vs raw liburing), and a send + recv over a
// socketpair (coring on each backend vs plain blocking syscalls). Numbers only, no assertions.
#include <benchmark/benchmark.h>
#include <coring/coring.hpp>

#include "bench_support.hpp"

#include <liburing.h>
#include <memory>
#include <string>
#include <sys/socket.h>
#include <unistd.h>

using namespace coring;
using coring::bench::make_core;
using coring::bench::yield_per_iteration;

namespace {

// ---- a no-op SQE: the reactor's cost over the kernel's ------------------------------------------

void BM_nop_coring_uring(benchmark::State& state) {
    auto c = make_core(state, backend_kind::uring);
    if (!c) return;
    c->block_on(yield_per_iteration(&state));
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_nop_coring_uring);

// The floor: the same ring setup, one NOP submitted and reaped per iteration, nothing else.
void BM_nop_raw_liburing(benchmark::State& state) {
    io_uring ring;
    io_uring_params p{};
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    if (io_uring_queue_init_params(256, &ring, &p) < 0) {
        p.flags = 0;
        if (const int rc = io_uring_queue_init_params(256, &ring, &p); rc < 0) {
            state.SkipWithError(("io_uring_queue_init_params: " + std::to_string(rc)).c_str());
            return;
        }
    }
    for (auto _ : state) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring);
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data64(sqe, 1);
        io_uring_cqe* cqe = nullptr;
        io_uring_submit_and_wait(&ring, 1);
        if (io_uring_peek_cqe(&ring, &cqe) == 0) io_uring_cqe_seen(&ring, cqe);
    }
    io_uring_queue_exit(&ring);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_nop_raw_liburing);

// ---- send + recv over a socketpair ----------------------------------------------------------------

task<> ping_through(benchmark::State* state, int a, int b) {
    tcp_stream left{a}, right{b};  // stream sockets: tcp_stream works on any connected one
    std::array<std::byte, 64> out{}, in{};
    for (auto _ : *state) {
        auto sent = co_await left.send(out);
        auto got = co_await right.recv(in);
        benchmark::DoNotOptimize(sent);
        benchmark::DoNotOptimize(got);
    }
    co_await left.close();
    co_await right.close();
}

void BM_socketpair_coring(benchmark::State& state, backend_kind kind) {
    auto c = make_core(state, kind);
    if (!c) return;
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        state.SkipWithError("socketpair");
        return;
    }
    c->io().adopt(fds[0]);  // the backend's mode: blocking on io_uring, O_NONBLOCK + registered on epoll
    c->io().adopt(fds[1]);
    c->block_on(ping_through(&state, fds[0], fds[1]));
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(BM_socketpair_coring, uring, backend_kind::uring);
BENCHMARK_CAPTURE(BM_socketpair_coring, epoll, backend_kind::epoll);

// The floor: the same 64-byte send and recv as plain blocking syscalls.
void BM_socketpair_syscalls(benchmark::State& state) {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        state.SkipWithError("socketpair");
        return;
    }
    char out[64] = {}, in[64];
    for (auto _ : state) {
        benchmark::DoNotOptimize(::send(fds[0], out, sizeof out, MSG_NOSIGNAL));
        benchmark::DoNotOptimize(::recv(fds[1], in, sizeof in, 0));
    }
    ::close(fds[0]);
    ::close(fds[1]);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_socketpair_syscalls);

}  // namespace

BENCHMARK_MAIN();
