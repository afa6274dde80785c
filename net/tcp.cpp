#include <coring/tcp.hpp>

#include <cerrno>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

namespace coring {

namespace {

result<void> set_int_option(int fd, int level, int name, int value) noexcept {
    if (::setsockopt(fd, level, name, &value, sizeof value) < 0) return to_error(-errno);
    return {};
}

template <class Query>
result<address> query_address(int fd, Query query) noexcept {
    address a;
    socklen_t len = address::capacity();
    if (query(fd, a.data(), &len) < 0) return to_error(-errno);
    a.set_size(len);
    return a;
}

}  // namespace

// ---- tcp_stream ---------------------------------------------------------------------------------

task<result<tcp_stream>> tcp_stream::connect(address peer, std::chrono::nanoseconds timeout) {
    const int fd = core::current().io().open_socket(peer.family(), SOCK_STREAM, 0);
    if (fd < 0) co_return to_error(fd);
    tcp_stream stream{fd};  // closes the fd if the connect fails
    detail::status_awaiter connecting{op_kind::connect, fd, stream.slot(detail::output)};
    // `peer` lives in this frame, so the kernel may read it any time until the completion.
    connecting.bind_address(peer.data(), peer.size());
    if (timeout.count() > 0) connecting.set_deadline(core::now_ns() + timeout.count());
    if (auto r = co_await connecting; !r) co_return r.error();
    co_return std::move(stream);
}

task<result<void>> tcp_stream::write_all(std::span<const std::byte> buf) {
    while (!buf.empty()) {
        auto sent = co_await send(buf);
        if (!sent) co_return sent.error();
        buf = buf.subspan(*sent);
    }
    co_return result<void>{};
}

detail::status_awaiter tcp_stream::shutdown(int how) noexcept {
    return {op_kind::shutdown, fd_, nullptr, how};
}

result<void> tcp_stream::set_nodelay(bool on) noexcept { return set_int_option(fd_, IPPROTO_TCP, TCP_NODELAY, on); }

result<address> tcp_stream::local_address() const noexcept { return query_address(fd_, ::getsockname); }
result<address> tcp_stream::peer_address() const noexcept { return query_address(fd_, ::getpeername); }

// ---- tcp_listener -------------------------------------------------------------------------------

result<tcp_listener> tcp_listener::bind(const address& where, listen_options opts) {
    const int fd = core::current().io().open_socket(where.family(), SOCK_STREAM, 0);
    if (fd < 0) return to_error(fd);
    tcp_listener listener{fd};  // closes the fd on any error below
    const bool ip = where.family() == AF_INET || where.family() == AF_INET6;
    if (ip && opts.reuse_address)
        if (auto r = set_int_option(fd, SOL_SOCKET, SO_REUSEADDR, 1); !r) return r.error();
    if (ip && opts.reuse_port)
        if (auto r = set_int_option(fd, SOL_SOCKET, SO_REUSEPORT, 1); !r) return r.error();
    if (::bind(fd, where.data(), where.size()) < 0) return to_error(-errno);
    if (::listen(fd, opts.backlog) < 0) return to_error(-errno);
    return listener;
}

result<tcp_listener> tcp_listener::bind(std::string_view where, listen_options opts) {
    auto a = address::parse(where);
    if (!a) return a.error();
    return bind(*a, opts);
}

tcp_listener::accept_awaiter::accept_awaiter(tcp_listener& l) noexcept
    : op_awaiter{op_kind::accept, l.fd_, l.slot(detail::input)} {
    op_.addr = peer_.data();
    op_.addr_len = address::capacity();
}

result<tcp_stream> tcp_listener::accept_awaiter::await_resume() noexcept {
    if (op_.res < 0) return to_error(op_.res);
    peer_.set_size(op_.addr_len);
    return tcp_stream{op_.res};
}

result<address> tcp_listener::local_address() const noexcept { return query_address(fd_, ::getsockname); }

}  // namespace coring
