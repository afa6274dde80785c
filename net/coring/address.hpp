#pragma once
// address: a socket address by value (IPv4, IPv6 or Unix), sized for anything the kernel returns.
// It owns its bytes, so an accept or connect can point the kernel at data() for as long as the
// address itself lives (a member of the op's frame, never a local of await_suspend).
#include <coring/result.hpp>

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace coring {

class address {
public:
    address() noexcept;  // empty: family() == AF_UNSPEC, size() == 0

    // Parses "127.0.0.1:7000", "[::1]:7000", "[fe80::1%lo]:80" (scope id by interface name or number),
    // "unix:/path/to/sock", "unix:@name" (Linux abstract socket: leading NUL byte in sun_path).
    // Numeric hosts only (no DNS): "localhost:80" is rejected. Port 0..65535 decimal, required for IP.
    // Errors: std::errc::invalid_argument for anything malformed (empty, missing port, port > 65535,
    // non-digits in port, bad IP, IPv6 without brackets, empty unix path);
    // std::errc::filename_too_long for a unix path longer than sun_path allows.
    static result<address> parse(std::string_view text);
    // Why parse(text) fails, as one line for a user: what is wrong and, unless only the length
    // was, the forms parse accepts ("names need resolution (not supported yet); use a numeric
    // address: 127.0.0.1:7000, [::1]:7000, unix:/path, unix:@name"). Empty when parse succeeds.
    static std::string explain_parse_error(std::string_view text);
    static address from_sockaddr(const sockaddr* sa, socklen_t len) noexcept;  // copies len bytes (clamped to storage)
    static address ipv4_loopback(std::uint16_t port) noexcept;  // 127.0.0.1:port
    static address ipv6_loopback(std::uint16_t port) noexcept;  // [::1]:port

    int family() const noexcept;                            // AF_INET, AF_INET6, AF_UNIX or AF_UNSPEC
    std::uint16_t port() const noexcept;                    // host order; 0 for unix/unspec
    address with_port(std::uint16_t port) const noexcept;  // same host, another port (IP only; unix unchanged)

    const sockaddr* data() const noexcept;
    sockaddr* data() noexcept;
    socklen_t size() const noexcept;       // the length to pass to bind/connect
    void set_size(socklen_t n) noexcept;  // after the kernel wrote into data() (accept/getsockname)
    static constexpr socklen_t capacity() noexcept { return sizeof(sockaddr_storage); }

    // "127.0.0.1:7000", "[::1]:7000", "[fe80::1%2]:80", "unix:/p", "unix:@name", "unix:(unnamed)",
    // "unspec" for an empty address. parse(a.to_string()) == a for every address parse can produce.
    std::string to_string() const;

    // Same family and the bytes that matter: port, host and scope id for IP (not flowinfo), the
    // name for unix (a path's trailing NUL and any bytes after it do not matter to the kernel).
    friend bool operator==(const address& a, const address& b) noexcept;

private:
    sockaddr_storage storage_;
    socklen_t size_;
};

}  // namespace coring
