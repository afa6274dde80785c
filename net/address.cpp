#include <coring/address.hpp>

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <algorithm>
#include <charconv>
#include <cctype>
#include <cstddef>
#include <cstring>

namespace coring {

namespace {

constexpr std::size_t sun_path_offset = offsetof(sockaddr_un, sun_path);
constexpr std::size_t sun_path_capacity = sizeof(sockaddr_un::sun_path);

sockaddr_in& as_ipv4(sockaddr* sa) noexcept { return *reinterpret_cast<sockaddr_in*>(sa); }
sockaddr_in6& as_ipv6(sockaddr* sa) noexcept { return *reinterpret_cast<sockaddr_in6*>(sa); }
sockaddr_un& as_unix(sockaddr* sa) noexcept { return *reinterpret_cast<sockaddr_un*>(sa); }
const sockaddr_in& as_ipv4(const sockaddr* sa) noexcept { return *reinterpret_cast<const sockaddr_in*>(sa); }
const sockaddr_in6& as_ipv6(const sockaddr* sa) noexcept { return *reinterpret_cast<const sockaddr_in6*>(sa); }
const sockaddr_un& as_unix(const sockaddr* sa) noexcept { return *reinterpret_cast<const sockaddr_un*>(sa); }

// The whole of `text` as a decimal number. from_chars rejects signs, spaces and overflow for
// unsigned types, so "+80", " 80" and "65536" all fail here without extra checks.
template <class Unsigned>
bool parse_decimal(std::string_view text, Unsigned& out) noexcept {
    const char* end = text.data() + text.size();
    auto [stop, ec] = std::from_chars(text.data(), end, out);
    return !text.empty() && ec == std::errc{} && stop == end;
}

// The name a unix address carries: empty for an unnamed socket, the leading NUL included for an
// abstract one. A path ends at its first NUL: the kernel ignores whatever size says lies beyond.
std::string_view unix_name(const address& a) noexcept {
    if (a.size() <= sun_path_offset) return {};
    const sockaddr_un& un = as_unix(a.data());
    std::size_t len = std::min<std::size_t>(a.size() - sun_path_offset, sun_path_capacity);
    if (un.sun_path[0] != '\0') len = ::strnlen(un.sun_path, len);
    return {un.sun_path, len};
}

// A failure and why: `why` is null for parse(), which keeps only the code; explain_parse_error
// passes it to learn the reason. Reasons are static text: the caller shows the input itself.
std::errc fail(std::string_view* why, std::errc code, std::string_view reason) noexcept {
    if (why) *why = reason;
    return code;
}

constexpr std::string_view names_unsupported = "names need resolution (not supported yet)";

// "/path" or "@name" (after the "unix:" prefix).
result<address> parse_unix(std::string_view name, std::string_view* why) {
    static_assert(sun_path_capacity == 108, "the messages below say 107 bytes");
    const bool abstract = name.starts_with('@');
    if (abstract) name.remove_prefix(1);
    if (name.empty()) return fail(why, std::errc::invalid_argument, abstract ? "empty abstract socket name" : "empty unix path");
    // A path is a C string to the kernel: an embedded NUL would silently cut it short.
    if (!abstract && name.find('\0') != std::string_view::npos)
        return fail(why, std::errc::invalid_argument, "a unix path cannot hold a NUL byte");
    // A path needs one byte for its trailing NUL, an abstract name one for its leading NUL.
    if (name.size() + 1 > sun_path_capacity)
        return fail(why, std::errc::filename_too_long, "unix socket name too long: at most 107 bytes fit in sun_path");

    address a;
    sockaddr_un& un = as_unix(a.data());
    un.sun_family = AF_UNIX;
    std::memcpy(un.sun_path + (abstract ? 1 : 0), name.data(), name.size());  // the rest is zeroed
    // Abstract names are exactly as long as size says, so no trailing NUL is counted for them.
    a.set_size(static_cast<socklen_t>(sun_path_offset + 1 + name.size()));
    return a;
}

// "a.b.c.d:port" or "[v6%zone]:port".
result<address> parse_ip(std::string_view text, std::string_view* why) {
    constexpr auto invalid = std::errc::invalid_argument;
    if (text.empty()) return fail(why, invalid, "empty address");
    if (text.find('\0') != std::string_view::npos)  // inet_pton wants C strings
        return fail(why, invalid, "an address cannot hold a NUL byte");
    const bool bracketed = text.starts_with('[');
    std::string_view host;
    std::string_view port_text;
    if (bracketed) {
        const auto close = text.find(']');
        if (close == std::string_view::npos || text.substr(close + 1, 1) != ":")
            return fail(why, invalid, "an IPv6 address needs its port after the brackets, as in [::1]:7000");
        host = text.substr(1, close - 1);
        port_text = text.substr(close + 2);
    } else {
        // Unbracketed means IPv4: in "::1:80" nothing could tell the port from the address.
        const auto colon = text.rfind(':');
        if (colon == std::string_view::npos) return fail(why, invalid, "missing :PORT");
        host = text.substr(0, colon);
        port_text = text.substr(colon + 1);
        if (host.empty()) return fail(why, invalid, "missing host before :PORT");
        if (host.find(':') != std::string_view::npos)
            return fail(why, invalid, "an IPv6 address needs brackets, as in [::1]:7000");
    }
    std::uint16_t port = 0;
    if (!parse_decimal(port_text, port)) return fail(why, invalid, "the port must be a number from 0 to 65535");

    address a;
    if (!bracketed) {
        sockaddr_in& in = as_ipv4(a.data());
        in.sin_family = AF_INET;
        in.sin_port = htons(port);
        if (::inet_pton(AF_INET, std::string(host).c_str(), &in.sin_addr) != 1) {
            // Dotted digits that do not parse are a typo; anything with a letter is a host name.
            const bool name = std::any_of(host.begin(), host.end(), [](char c) { return std::isalpha(static_cast<unsigned char>(c)); });
            return fail(why, invalid, name ? names_unsupported : "not an IPv4 address (four numbers 0-255, as in 127.0.0.1)");
        }
        a.set_size(sizeof(sockaddr_in));
        return a;
    }
    sockaddr_in6& in6 = as_ipv6(a.data());
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(port);
    if (const auto percent = host.find('%'); percent != std::string_view::npos) {
        const std::string_view zone = host.substr(percent + 1);
        host = host.substr(0, percent);
        std::uint32_t scope = 0;
        if (!parse_decimal(zone, scope)) {
            if (zone.empty()) return fail(why, invalid, "empty scope id after %");
            scope = ::if_nametoindex(std::string(zone).c_str());
            if (scope == 0) return fail(why, invalid, "no such network interface for the scope id");
        }
        in6.sin6_scope_id = scope;
    }
    if (::inet_pton(AF_INET6, std::string(host).c_str(), &in6.sin6_addr) != 1)
        return fail(why, invalid, "not an IPv6 address");
    a.set_size(sizeof(sockaddr_in6));
    return a;
}

result<address> parse_any(std::string_view text, std::string_view* why) {
    constexpr std::string_view unix_prefix = "unix:";
    if (text.starts_with(unix_prefix)) return parse_unix(text.substr(unix_prefix.size()), why);
    return parse_ip(text, why);
}

}  // namespace

address::address() noexcept : storage_{}, size_{0} {}

result<address> address::parse(std::string_view text) { return parse_any(text, nullptr); }

std::string address::explain_parse_error(std::string_view text) {
    constexpr std::string_view forms = "127.0.0.1:7000, [::1]:7000, unix:/path, unix:@name";
    std::string_view why;
    const auto parsed = parse_any(text, &why);
    if (parsed) return {};
    // A name is a well-formed request for what is missing, not a typo: say what to use instead.
    if (why == names_unsupported) return std::string{why} + "; use a numeric address: " + std::string{forms};
    if (parsed.error() == std::errc::filename_too_long) return std::string{why};
    return std::string{why} + "; expected " + std::string{forms};
}

address address::from_sockaddr(const sockaddr* sa, socklen_t len) noexcept {
    address a;
    if (sa != nullptr) {
        a.size_ = std::min(len, capacity());
        std::memcpy(&a.storage_, sa, a.size_);
    }
    return a;
}

address address::ipv4_loopback(std::uint16_t port) noexcept {
    address a;
    sockaddr_in& in = as_ipv4(a.data());
    in.sin_family = AF_INET;
    in.sin_port = htons(port);
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.size_ = sizeof(sockaddr_in);
    return a;
}

address address::ipv6_loopback(std::uint16_t port) noexcept {
    address a;
    sockaddr_in6& in6 = as_ipv6(a.data());
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(port);
    in6.sin6_addr = in6addr_loopback;
    a.size_ = sizeof(sockaddr_in6);
    return a;
}

int address::family() const noexcept {
    // Too short to hold a family (say, after a failed accept): the storage says nothing yet.
    return size_ < sizeof(sa_family_t) ? AF_UNSPEC : storage_.ss_family;
}

std::uint16_t address::port() const noexcept {
    switch (family()) {
    case AF_INET: return ntohs(as_ipv4(data()).sin_port);
    case AF_INET6: return ntohs(as_ipv6(data()).sin6_port);
    default: return 0;
    }
}

address address::with_port(std::uint16_t port) const noexcept {
    address a = *this;
    if (family() == AF_INET) as_ipv4(a.data()).sin_port = htons(port);
    if (family() == AF_INET6) as_ipv6(a.data()).sin6_port = htons(port);
    return a;
}

const sockaddr* address::data() const noexcept { return reinterpret_cast<const sockaddr*>(&storage_); }
sockaddr* address::data() noexcept { return reinterpret_cast<sockaddr*>(&storage_); }
socklen_t address::size() const noexcept { return size_; }
void address::set_size(socklen_t n) noexcept { size_ = std::min(n, capacity()); }  // the kernel may report more than it wrote

std::string address::to_string() const {
    char host[INET6_ADDRSTRLEN] = {};
    switch (family()) {
    case AF_UNSPEC: return "unspec";
    case AF_INET:
        ::inet_ntop(AF_INET, &as_ipv4(data()).sin_addr, host, sizeof host);
        return std::string(host) + ':' + std::to_string(port());
    case AF_INET6: {
        const sockaddr_in6& in6 = as_ipv6(data());
        ::inet_ntop(AF_INET6, &in6.sin6_addr, host, sizeof host);
        // The scope is printed as a number: an interface name could be renamed, its index cannot.
        std::string scope = in6.sin6_scope_id != 0 ? '%' + std::to_string(in6.sin6_scope_id) : "";
        return '[' + std::string(host) + scope + "]:" + std::to_string(port());
    }
    case AF_UNIX: {
        const std::string_view name = unix_name(*this);
        if (name.empty()) return "unix:(unnamed)";
        if (name.front() == '\0') return "unix:@" + std::string(name.substr(1));
        return "unix:" + std::string(name);
    }
    default: return "family " + std::to_string(family());
    }
}

bool operator==(const address& a, const address& b) noexcept {
    if (a.family() != b.family()) return false;
    switch (a.family()) {
    case AF_INET: {
        const sockaddr_in& x = as_ipv4(a.data());
        const sockaddr_in& y = as_ipv4(b.data());
        return a.size_ == b.size_ && x.sin_port == y.sin_port && x.sin_addr.s_addr == y.sin_addr.s_addr;
    }
    case AF_INET6: {
        // flowinfo is per-packet traffic labelling, not part of the endpoint, and to_string drops it.
        const sockaddr_in6& x = as_ipv6(a.data());
        const sockaddr_in6& y = as_ipv6(b.data());
        return a.size_ == b.size_ && x.sin6_port == y.sin6_port && x.sin6_scope_id == y.sin6_scope_id &&
               std::memcmp(&x.sin6_addr, &y.sin6_addr, sizeof x.sin6_addr) == 0;
    }
    case AF_UNIX: return unix_name(a) == unix_name(b);  // a path's size may or may not count its NUL
    default: return a.size_ == b.size_ && std::memcmp(&a.storage_, &b.storage_, a.size_) == 0;
    }
}

}  // namespace coring
