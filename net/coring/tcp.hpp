#pragma once
// TCP: a listener and a connected stream, each owned by the core that made it. Every call
// that may wait returns an awaitable whose co_await yields result<T>: peer resets, closes and
// cancellation are values (std::errc::connection_reset, broken_pipe, operation_canceled).
#include <coring/address.hpp>
#include <coring/buffer_lease.hpp>
#include <coring/socket.hpp>
#include <coring/task.hpp>

#include <chrono>
#include <optional>
#include <span>
#include <string_view>
#include <sys/socket.h>

namespace coring {

class tcp_stream : public detail::socket_base {
public:
    tcp_stream() noexcept = default;
    // An fd from this core's backend (on io_uring an accepted one may be a direct descriptor).
    explicit tcp_stream(int fd) noexcept : socket_base{fd} {}
    tcp_stream(tcp_stream&&) noexcept = default;  // the receive feed moves along (recv_feed)
    tcp_stream& operator=(tcp_stream&& other) noexcept {
        if (this != &other) {
            feed_.close();  // before the fd it reads goes
            socket_base::operator=(std::move(other));
            feed_ = std::move(other.feed_);
        }
        return *this;
    }
    ~tcp_stream() { feed_.close(); }  // before socket_base closes the fd

    // As socket_base::close, the receive feed first.
    [[nodiscard]] task<> close() noexcept {
        feed_.close();
        return socket_base::close();
    }

    // Opens a socket on the current core and connects it; ETIMEDOUT when `timeout` (if not
    // zero) passes first.
    [[nodiscard]] static task<result<tcp_stream>> connect(address peer, std::chrono::nanoseconds timeout = {});
    // The same from a chosen local address (port 0: the kernel picks one at connect time, per
    // destination, so many source addresses go past the ephemeral-port range).
    [[nodiscard]] static task<result<tcp_stream>> connect_from(address local, address peer,
                                                              std::chrono::nanoseconds timeout = {});

    // Each recv and send from now on fails with ETIMEDOUT when it makes no progress for `d`
    // (zero: wait forever, the default). The op is cancelled first: the buffer is free again.
    // Kept in whole milliseconds (rounded up; at most 24 days).
    void set_idle_timeout(std::chrono::nanoseconds d) noexcept;

    // Up to buf.size() bytes; 0 means the peer will send no more. Not on a stream that has
    // used recv_lease (two readers would split the bytes): that aborts.
    [[nodiscard]] detail::transfer_awaiter recv(std::span<std::byte> buf) noexcept;

    // The next received bytes, in a buffer the core's pool lends (see buffer_lease): no
    // buffer is held while waiting. An empty lease means the peer will send no more. On
    // io_uring one multishot receive stays armed and results queue here until taken.
    class recv_lease_awaiter : public detail::feed_awaiter<tcp_stream> {
    public:
        using feed_awaiter::feed_awaiter;
        result<buffer_lease> await_resume() noexcept;
    };
    [[nodiscard]] recv_lease_awaiter recv_lease();
    // Some of buf (a short send is a success); EPIPE/ECONNRESET, never SIGPIPE.
    // One writer: one send (or write_all) at a time per stream; a second aborts. To share a
    // stream between tasks, give it a coring::writer (writer.hpp), whose flusher alone sends.
    [[nodiscard]] detail::transfer_awaiter send(std::span<const std::byte> buf) noexcept {
        return {op_kind::send, fd_, slot(detail::output), const_cast<std::byte*>(buf.data()), buf.size(), 0,
                idle_timeout_ns()};
    }
    // Several pieces in one send (sendmsg): some of their bytes, in order; a short send may end
    // inside any piece. The same one-writer rule. The iovecs must stay put until it completes.
    [[nodiscard]] detail::gather_awaiter send(std::span<const iovec> pieces) noexcept {
        return {fd_, slot(detail::output), pieces, idle_timeout_ns()};
    }
    // All of buf, looping over short sends. buf must stay alive until this completes.
    // The same one-writer rule: concurrent write_alls would interleave their bytes.
    [[nodiscard]] task<result<void>> write_all(std::span<const std::byte> buf);
    // All of every piece, in order, in as few sends as it can: up to max_gather pieces per
    // sendmsg, resuming inside a piece after a short send. With --coalesce off, one send per
    // piece (the A/B baseline). The pieces must stay alive until this completes.
    [[nodiscard]] task<result<void>> write_all(std::span<const std::span<const std::byte>> pieces);
    // Pieces per sendmsg. The kernel takes up to IOV_MAX (1024); 64 keeps write_all's iovecs at
    // 1 KiB, so its frame stays in the frame allocator's size classes (up to 2 KiB), and beyond
    // a few dozen pieces one more per call saves little: the call is already shared 64 ways,
    // while the kernel copies and walks the whole array on every call (a short send included).
    static constexpr std::size_t max_gather = 64;

    // A received buffer already queued, taken without waiting; none when nothing is queued.
    // The end of the stream and errors are left for the next recv_lease. For sending what
    // arrived while this reader was busy in one gather send (the echo server does).
    std::optional<buffer_lease> try_recv_lease() noexcept;
    // SHUT_WR sends FIN after queued data: the peer's recv then returns 0.
    [[nodiscard]] detail::status_awaiter shutdown(int how = SHUT_WR) noexcept;

    result<void> set_nodelay(bool on) noexcept;
    result<address> local_address() const noexcept;
    result<address> peer_address() const noexcept;

private:
    friend class detail::feed_awaiter<tcp_stream>;
    detail::recv_feed* open_feed() noexcept { return feed_.is_open() ? &feed_ : nullptr; }
    // Unused until the first recv_lease; in the stream, so an idle connection is one block.
    detail::recv_feed feed_;
};

struct listen_options {
    bool reuse_port = false;    // SO_REUSEPORT: one listener per core, the kernel spreads connections
    bool reuse_address = true;  // SO_REUSEADDR: restart without waiting out TIME_WAIT
    int backlog = 4096;         // the kernel caps it at net.core.somaxconn
};

class tcp_listener : public detail::socket_base {
public:
    tcp_listener() noexcept = default;
    tcp_listener(tcp_listener&& other) noexcept
        : socket_base{std::move(other)}, feed_{std::exchange(other.feed_, nullptr)} {}
    tcp_listener& operator=(tcp_listener&& other) noexcept {
        if (this != &other) {
            release_feed();
            socket_base::operator=(std::move(other));
            feed_ = std::exchange(other.feed_, nullptr);
        }
        return *this;
    }
    ~tcp_listener() { release_feed(); }

    // As socket_base::close, the accept feed first.
    [[nodiscard]] task<> close() noexcept {
        release_feed();
        return socket_base::close();
    }

    // socket + options + bind + listen on the current core. Errors name nothing but the errno:
    // callers add the address (see format_error in apps).
    static result<tcp_listener> bind(const address& where, listen_options opts = {});
    static result<tcp_listener> bind(std::string_view where, listen_options opts = {});

    class accept_awaiter : public detail::feed_awaiter<tcp_listener> {
    public:
        using feed_awaiter::feed_awaiter;
        result<tcp_stream> await_resume() noexcept;
    };
    // The next connection (its peer: tcp_stream::peer_address). ECANCELED when the core stops
    // or the listener is closed. On io_uring one multishot accept stays armed meanwhile.
    [[nodiscard]] accept_awaiter accept();

    result<address> local_address() const noexcept;

private:
    explicit tcp_listener(int fd) noexcept : socket_base{fd} {}
    friend class detail::feed_awaiter<tcp_listener>;
    detail::accept_feed* open_feed() noexcept { return feed_; }
    void release_feed() noexcept {
        if (feed_) std::exchange(feed_, nullptr)->release();
    }
    // Made on the first accept; outlives the listener while its op is in the kernel.
    detail::accept_feed* feed_ = nullptr;
};

}  // namespace coring
