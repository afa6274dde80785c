#include <coring/tcp.hpp>

#include <coring/log.hpp>

#include <algorithm>
#include <array>
#include <climits>
#include <cerrno>
#include <cstdlib>
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
    return connect_from(address{}, std::move(peer), timeout);
}

task<result<tcp_stream>> tcp_stream::connect_from(address local, address peer, std::chrono::nanoseconds timeout) {
    const int fd = core::current().io().open_socket(peer.family(), SOCK_STREAM, 0);
    if (fd < 0) co_return to_error(fd);
    tcp_stream stream{fd};  // closes the fd if the connect fails
    if (local.size() != 0) {
        if (auto r = set_int_option(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1); !r) co_return r.error();
        if (::bind(fd, local.data(), local.size()) < 0) co_return to_error(-errno);
    }
    detail::status_awaiter connecting{op_kind::connect, fd, stream.slot(detail::output)};
    // `peer` lives in this frame, so the kernel may read it any time until the completion.
    connecting.bind_address(peer.data(), peer.size());
    if (timeout.count() > 0) connecting.set_deadline(core::now_ns() + timeout.count());
    if (auto r = co_await connecting; !r) co_return r.error();
    co_return std::move(stream);
}

detail::transfer_awaiter tcp_stream::recv(std::span<std::byte> buf) noexcept {
    if (feed_.is_open()) {
        log("fd {}: recv on a stream that reads through recv_lease: use one or the other", fd_);
        std::abort();
    }
    return {op_kind::recv, fd_, slot(detail::input), buf.data(), buf.size(), 0, idle_timeout_ns()};
}

tcp_stream::recv_lease_awaiter tcp_stream::recv_lease() {
    if (fd_ >= 0 && !feed_.is_open()) {
        backend& io = core::current().io();
        io.ensure_buffers();  // the first lease on this core sets up the pool (may throw)
        if (in_flight_[detail::input]) {
            log("fd {}: recv_lease while a recv is in flight: one reader at a time", fd_);
            std::abort();
        }
        feed_.open(fd_, io.features().multishot_recv);
    }
    return recv_lease_awaiter{*this};
}

void tcp_stream::set_idle_timeout(std::chrono::nanoseconds d) noexcept {
    using namespace std::chrono;
    const auto ms = d.count() <= 0 ? 0 : ceil<milliseconds>(d).count();
    idle_timeout_ms_ = static_cast<std::int32_t>(std::min<std::int64_t>(ms, INT32_MAX));
}

result<buffer_lease> tcp_stream::recv_lease_awaiter::await_resume() noexcept {
    if (reader_.res < 0) return to_error(reader_.res);
    if (reader_.res == 0) return buffer_lease{};
    return buffer_lease{core::current().io(), static_cast<std::uint16_t>(reader_.flags >> cqe_buffer_shift),
                        static_cast<std::uint32_t>(reader_.res)};
}

task<result<void>> tcp_stream::write_all(std::span<const std::byte> buf) {
    while (!buf.empty()) {
        auto sent = co_await send(buf);
        if (!sent) co_return sent.error();
        buf = buf.subspan(*sent);
    }
    co_return result<void>{};
}

task<result<void>> tcp_stream::write_all(std::span<const std::span<const std::byte>> pieces) {
    const bool gather = core::current().io().coalesce();
    std::array<iovec, max_gather> iov;  // in this frame: the kernel reads it until the send completes
    std::size_t next = 0;    // the first piece not sent in full
    std::size_t offset = 0;  // of pieces[next], the bytes already sent
    while (next < pieces.size()) {
        if (offset == pieces[next].size()) {  // done with it (or empty)
            ++next;
            offset = 0;
            continue;
        }
        std::size_t n = 0;
        for (std::size_t i = next; gather && i < pieces.size() && n < iov.size(); ++i) {
            const auto piece = pieces[i].subspan(i == next ? offset : 0);
            if (!piece.empty()) iov[n++] = {const_cast<std::byte*>(piece.data()), piece.size()};  // only read
        }
        std::size_t moved;
        if (n <= 1) {  // one piece: a plain send, which spares the kernel the msghdr
            auto sent = co_await send(pieces[next].subspan(offset));
            if (!sent) co_return sent.error();
            moved = *sent;
        } else {
            auto sent = co_await send(std::span<const iovec>(iov.data(), n));
            if (!sent) co_return sent.error();
            moved = *sent;
        }
        // A short send may stop anywhere: whole pieces first, then part of the one it ended in.
        while (moved > 0 && next < pieces.size()) {
            const std::size_t rest = pieces[next].size() - offset;
            if (moved < rest) {
                offset += moved;
                break;
            }
            moved -= rest;
            ++next;
            offset = 0;
        }
    }
    co_return result<void>{};
}

std::optional<buffer_lease> tcp_stream::try_recv_lease() noexcept {
    detail::feed_reader r;
    if (!feed_.is_open() || !feed_.take_queued(r)) return std::nullopt;
    return buffer_lease{core::current().io(), static_cast<std::uint16_t>(r.flags >> cqe_buffer_shift),
                        static_cast<std::uint32_t>(r.res)};
}

detail::status_awaiter tcp_stream::shutdown(int how) noexcept {
    return {op_kind::shutdown, fd_, nullptr, how};
}

result<void> tcp_stream::set_nodelay(bool on) noexcept {
    if (fd_ < 0) return to_error(-EBADF);
    // Through the backend: a direct descriptor takes it as a socket command, without an fd.
    if (const int r = core::current().io().set_socket_option(fd_, IPPROTO_TCP, TCP_NODELAY, on); r < 0) return to_error(r);
    return {};
}

// No socket command answers these on Linux 6.18, so a direct socket makes its fd (fd()) once.
result<address> tcp_stream::local_address() const noexcept { return query_address(fd(), ::getsockname); }
result<address> tcp_stream::peer_address() const noexcept { return query_address(fd(), ::getpeername); }

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

tcp_listener::accept_awaiter tcp_listener::accept() {
    if (fd_ >= 0 && !feed_) feed_ = new detail::accept_feed{fd_, core::current().io().features().multishot_accept};
    return accept_awaiter{*this};
}

result<tcp_stream> tcp_listener::accept_awaiter::await_resume() noexcept {
    if (reader_.res < 0) return to_error(reader_.res);
    return tcp_stream{reader_.res};
}

result<address> tcp_listener::local_address() const noexcept { return query_address(fd_, ::getsockname); }

}  // namespace coring
