#include "echo_server.hpp"

#include <array>
#include <cerrno>
#include <cstddef>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace coring::apps {

task<> echo_connection(tcp_stream conn, bool nodelay) {
    if (nodelay) (void)conn.set_nodelay(true);
    // No buffer of its own: while it waits, a connection holds no receive memory at all. The
    // lease's buffer goes back to the pool at the end of each round.
    for (;;) {
        auto data = co_await conn.recv_lease();
        if (!data || data->empty()) break;  // reset, cancelled, or the peer closed its side
        const auto sent = co_await conn.write_all(data->data());
        if (!sent) break;
    }
    co_await conn.close();
}

namespace {

// A unix socket's path outlives its listener; abstract names ("unix:@x") leave no file.
void remove_socket_file(const address& where) {
    const auto* un = reinterpret_cast<const sockaddr_un*>(where.data());
    if (where.size() > offsetof(sockaddr_un, sun_path) && un->sun_path[0] != '\0') ::unlink(un->sun_path);
}

task<> accept_loop(tcp_listener listener, bool nodelay) {
    core& here = core::current();
    for (;;) {
        auto accepted = co_await listener.accept();
        if (accepted) {
            here.spawn(echo_connection(std::move(*accepted), nodelay));
            continue;
        }
        const std::error_code ec = accepted.error();
        if (ec == std::errc::operation_canceled) break;  // the core is stopping
        if (ec == std::errc::too_many_files_open || ec == std::errc::too_many_files_open_in_system ||
            ec == std::errc::no_buffer_space || ec == std::errc::not_enough_memory) {
            // The connection stays queued: retrying at once would spin. Wait for fds to close.
            log("accept: {}; pausing 50 ms", ec.message());
            const auto slept = co_await sleep_for(std::chrono::milliseconds{50});
            if (!slept) break;  // cancelled while pausing
        }
        // ECONNABORTED and friends: that one connection is gone, the next may be fine.
    }
    const auto where = listener.local_address();
    co_await listener.close();
    if (where && where->family() == AF_UNIX) remove_socket_file(*where);  // ours: we made it
}

}  // namespace

result<address> prepare_listen_address(address where) {
    if (where.family() == AF_UNIX) {
        // A socket file nobody accepts on is what a crashed server leaves: remove it. One that
        // accepts belongs to a live server, and bind will say "Address already in use".
        const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0) {
            if (::connect(probe, where.data(), where.size()) < 0 && errno == ECONNREFUSED) remove_socket_file(where);
            ::close(probe);
        }
        return where;
    }
    if (where.port() != 0) return where;
    const int fd = ::socket(where.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return to_error(-errno);
    const int on = 1;
    address bound;
    socklen_t len = address::capacity();
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) < 0 || ::bind(fd, where.data(), where.size()) < 0 ||
        ::getsockname(fd, bound.data(), &len) < 0) {
        const int e = errno;
        ::close(fd);
        return to_error(-e);
    }
    bound.set_size(len);
    return bound;  // fd stays open: the port stays ours
}

result<address> start_echo_server(echo_options opts) {
    auto listener = tcp_listener::bind(opts.listen, {.reuse_port = true});
    if (!listener) return listener.error();
    auto bound = listener->local_address();
    if (!bound) return bound.error();
    core::current().spawn(accept_loop(std::move(*listener), opts.nodelay));
    return bound;
}

task<> echo_server(echo_options opts) {
    // Unix sockets have no SO_REUSEPORT: one core listens, and its connections stay there.
    if (opts.listen.family() == AF_UNIX && core::current().id() != 0) co_return;
    auto bound = start_echo_server(opts);
    if (!bound) throw std::system_error(bound.error(), "bind " + opts.listen.to_string());
    if (core::current().id() == 0 && opts.announce) log("echo server listening on {}", bound->to_string());
    co_return;
}

}  // namespace coring::apps
