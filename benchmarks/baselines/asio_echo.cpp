// baseline-asio-epoll and baseline-asio-uring: the echo server a C++ programmer would write
// instead of using coring: standalone Asio (Debian's libasio-dev, 1.22) with C++20 coroutines.
//
// One coroutine per connection (co_spawn of an asio::awaitable): async_read_some into the
// connection's own 16 KiB buffer (the size of coring's pool buffers, so a 16 KiB message takes
// one read on both), then async_write of what arrived. Errors come back as values (as_tuple):
// EOF and resets end a connection every second on a busy server, and exceptions would put
// unwinding on that path. Each io_context is built with concurrency hint 1, which tells Asio
// that a single thread runs it.
//
// --threads N (default 1): N threads, each running its own io_context with its own acceptor on
// the shared port (SO_REUSEPORT, so the kernel spreads connections), thread k pinned to the k-th
// allowed CPU. That is the io_context-per-CPU design Asio suggests for multi-core servers (its
// HTTP server 2 example), with the kernel doing the hand-out instead of a round-robin, and it is
// the shape of coring-echo --cores N; one io_context run by N threads would add locking to
// every operation instead.
//
// One source, two binaries: baseline-asio-epoll is Asio's default reactor (epoll);
// baseline-asio-uring is built with ASIO_HAS_IO_URING and ASIO_DISABLE_EPOLL, which makes
// io_uring the backend for sockets too (Asio's io_uring reactor, liburing linked).
// Asio 1.22 turns co_await on for clang only with libc++'s <experimental/coroutine>; clang 14 on
// libstdc++ has C++20's <coroutine>, which Asio then uses (ASIO_HAS_STD_COROUTINE) as it does on g++.
#if defined(__clang__) && defined(__cpp_impl_coroutine) && !defined(ASIO_HAS_CO_AWAIT)
#define ASIO_HAS_CO_AWAIT 1
#endif
#include <asio.hpp>
#include <asio/experimental/as_tuple.hpp>

#include <array>
#include <memory>
#include <vector>

#include "common.hpp"

namespace {

#if defined(ASIO_HAS_IO_URING) && defined(ASIO_DISABLE_EPOLL)
constexpr const char* prog = "baseline-asio-uring";
#else
constexpr const char* prog = "baseline-asio-epoll";
#endif

using asio::ip::tcp;
constexpr auto as_values = asio::experimental::as_tuple(asio::use_awaitable);  // (error_code, result)

// The coroutine frame holds the buffer, and the frame lives as long as the connection.
asio::awaitable<void> echo(tcp::socket socket) {
    std::array<char, 16384> buf;
    for (;;) {
        const auto [read_error, n] = co_await socket.async_read_some(asio::buffer(buf), as_values);
        if (read_error) co_return;  // EOF included
        const auto [write_error, written] = co_await asio::async_write(socket, asio::buffer(buf, n), as_values);
        if (write_error) co_return;
    }
}

asio::awaitable<void> accept_loop(tcp::acceptor acceptor) {
    for (;;) {
        auto [error, socket] = co_await acceptor.async_accept(as_values);
        if (error == asio::error::operation_aborted) co_return;  // the io_context is stopping
        if (error) continue;  // an aborted connection, or out of fds: keep accepting
        asio::error_code ignored;
        socket.set_option(tcp::no_delay(true), ignored);
        asio::co_spawn(acceptor.get_executor(), echo(std::move(socket)), asio::detached);
    }
}

}  // namespace

int main(int argc, char** argv) {
    const baseline::settings cfg = baseline::parse_args(
        argc, argv,
        {.prog = prog,
         .summary = "Asio 1.22 C++20-coroutine echo server, an io_context per thread.",
         .threads = true,
         .default_threads = 1});
    baseline::prepare_process();
    const std::vector<int> listeners = baseline::listen_loopback_group(prog, cfg.port, false, cfg.threads);

    std::vector<std::unique_ptr<asio::io_context>> contexts;  // an io_context cannot move
    for (const int fd : listeners) {
        auto& context = *contexts.emplace_back(std::make_unique<asio::io_context>(1));
        asio::co_spawn(context, accept_loop(tcp::acceptor(context, tcp::v4(), fd)), asio::detached);
    }
    // SIGINT/SIGTERM stop every io_context; each thread's run() then returns and main exits 0.
    asio::signal_set signals(*contexts[0], SIGINT, SIGTERM);
    signals.async_wait([&](const asio::error_code&, int) {
        for (auto& context : contexts) context->stop();
    });
    baseline::run_pinned_threads(cfg.threads, [&](unsigned k) { contexts[k]->run(); });
    return 0;
}
