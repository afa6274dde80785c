#include "echo_server.hpp"

#include <array>
#include <cerrno>
#include <cstddef>
#include <optional>
#include <span>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace coring::apps {

namespace {

// Leases one round sends at most; what is queued beyond goes in the next round.
constexpr std::size_t echo_gather = 16;

// One round of the echo: first, and whatever the stream has queued behind it (unless
// --coalesce off), goes back in one send. A task of its own, so that what a send needs (the
// leases, the iovecs, the send's awaiter) lives only while it runs: an idle connection's frame
// holds its stream and its wait for data, nothing else. conn and first live in the caller's
// frame (taken by reference: a copy there would be one more slot in every idle frame). When
// not all of it went out (a reset peer), conn is closed here: the caller's next receive ends
// the connection (so the caller keeps no flag for it).
task<> echo_back(tcp_stream& conn, buffer_lease&& first, bool gather) {
    std::array<buffer_lease, echo_gather> leases;
    std::array<std::span<const std::byte>, echo_gather> pieces;
    leases[0] = std::move(first);
    std::size_t n = 1;
    while (gather && n < echo_gather) {
        auto more = conn.try_recv_lease();
        if (!more) break;
        leases[n++] = std::move(*more);
    }
    if (n == 1) {  // a plain send: a smaller frame
        auto sent = co_await conn.write_all(leases[0].data());
        if (!sent) conn = tcp_stream{};
        co_return;
    }
    for (std::size_t i = 0; i < n; ++i) pieces[i] = leases[i].data();
    auto sent = co_await conn.write_all(std::span<const std::span<const std::byte>>(pieces.data(), n));
    if (!sent) conn = tcp_stream{};
}

}  // namespace

task<> echo_connection(tcp_stream conn, bool nodelay) {
    if (nodelay) (void)conn.set_nodelay(true);
    const bool gather = core::current().io().coalesce();
    // No buffer of its own: while it waits, a connection holds no receive memory at all. The
    // lease's buffer goes back to the pool at the end of each round.
    for (;;) {
        auto data = co_await conn.recv_lease();
        if (!data || data->empty()) break;  // reset, cancelled, the peer closed its side, or echo_back closed it
        co_await echo_back(conn, std::move(*data), gather);
    }
    // conn's destructor closes it: cancels its receive, then a close ordered after it, which
    // nobody needs to wait for here. (`co_await conn.close()` would wait, and would keep a task
    // and its awaiter in every idle frame: 16 bytes per connection.)
}

namespace {

task<> accept_loop(tcp_listener listener, bool nodelay) {
    core& here = core::current();
    accept_pacer pacer{"accept"};  // out of fds: pauses, and says so once per interval
    for (;;) {
        auto accepted = co_await pacer.next(listener);
        if (!accepted) break;  // the core is stopping
        here.spawn(echo_connection(std::move(*accepted), nodelay));
    }
    co_await listener.close();  // a unix socket's file goes when the process ends (core_listeners)
}

}  // namespace

result<address> start_echo_server(echo_options opts) {
    auto listener = tcp_listener::bind(opts.listen, {.reuse_port = true});
    if (!listener) return listener.error();
    auto bound = listener->local_address();
    if (!bound) return bound.error();
    core::current().spawn(accept_loop(std::move(*listener), opts.nodelay));
    return bound;
}

task<> echo_server(echo_options opts, core_listeners& listeners) {
    auto listener = listeners.take();
    if (!listener) co_return;  // a unix socket: core 0 alone listens
    if (core::current().id() == 0 && opts.announce) log("echo server listening on {}", opts.listen.to_string());
    core::current().spawn(accept_loop(std::move(*listener), opts.nodelay));
}

}  // namespace coring::apps
