// address: parsing, printing and the round trip between them, plus addresses the kernel writes.
#include <coring/address.hpp>

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>

using coring::address;

namespace {

std::error_code parse_error(std::string_view text) {
    auto a = address::parse(text);
    return a ? std::error_code{} : a.error();
}

// A socket bound to `where` port 0, asked by getsockname which port the kernel picked.
// Returns an empty address with errno set when the family is unavailable (no IPv6 here).
address bound_address(const address& where) {
    const int fd = ::socket(where.family(), SOCK_STREAM, 0);
    if (fd < 0) return {};
    address local;
    socklen_t len = address::capacity();
    const bool ok = ::bind(fd, where.data(), where.size()) == 0 && ::getsockname(fd, local.data(), &len) == 0;
    const int saved = errno;
    ::close(fd);
    errno = saved;
    if (!ok) return {};
    local.set_size(len);
    return local;
}

}  // namespace

TEST_CASE("address: an empty address", "[address]") {
    const address a;
    CHECK(a.family() == AF_UNSPEC);
    CHECK(a.size() == 0);
    CHECK(a.port() == 0);
    CHECK(a.to_string() == "unspec");
    CHECK(a == address{});
}

TEST_CASE("address: parses IPv4", "[address]") {
    auto a = address::parse("127.0.0.1:7000");
    REQUIRE(a);
    CHECK(a->family() == AF_INET);
    CHECK(a->port() == 7000);
    CHECK(a->size() == sizeof(sockaddr_in));
    CHECK(reinterpret_cast<const sockaddr_in*>(a->data())->sin_addr.s_addr == htonl(INADDR_LOOPBACK));
    CHECK(a->to_string() == "127.0.0.1:7000");
    CHECK(*a == address::ipv4_loopback(7000));

    CHECK(address::parse("0.0.0.0:0").value().port() == 0);
    CHECK(address::parse("10.1.2.3:65535").value().port() == 65535);
}

TEST_CASE("address: parses IPv6", "[address]") {
    auto a = address::parse("[::1]:7000");
    REQUIRE(a);
    CHECK(a->family() == AF_INET6);
    CHECK(a->port() == 7000);
    CHECK(a->size() == sizeof(sockaddr_in6));
    CHECK(a->to_string() == "[::1]:7000");
    CHECK(*a == address::ipv6_loopback(7000));

    CHECK(address::parse("[::]:0").value().to_string() == "[::]:0");
    CHECK(address::parse("[2001:DB8::1]:65535").value().to_string() == "[2001:db8::1]:65535");
    CHECK(address::parse("[::ffff:10.0.0.1]:80").value().to_string() == "[::ffff:10.0.0.1]:80");
}

TEST_CASE("address: parses an IPv6 scope id by number or interface name", "[address]") {
    auto numbered = address::parse("[fe80::1%2]:80");
    REQUIRE(numbered);
    CHECK(reinterpret_cast<const sockaddr_in6*>(numbered->data())->sin6_scope_id == 2);
    CHECK(numbered->to_string() == "[fe80::1%2]:80");

    const unsigned lo = ::if_nametoindex("lo");
    if (lo == 0) {
        WARN("no interface named lo: skipping the scope-by-name case");
        return;
    }
    auto named = address::parse("[fe80::1%lo]:80");
    REQUIRE(named);
    CHECK(reinterpret_cast<const sockaddr_in6*>(named->data())->sin6_scope_id == lo);
    CHECK(named->to_string() == "[fe80::1%" + std::to_string(lo) + "]:80");  // printed by index
}

TEST_CASE("address: parses unix paths and abstract names", "[address]") {
    auto path = address::parse("unix:/tmp/coring.sock");
    REQUIRE(path);
    CHECK(path->family() == AF_UNIX);
    CHECK(path->port() == 0);
    CHECK(path->size() == offsetof(sockaddr_un, sun_path) + std::strlen("/tmp/coring.sock") + 1);
    CHECK(std::string(reinterpret_cast<const sockaddr_un*>(path->data())->sun_path) == "/tmp/coring.sock");
    CHECK(path->to_string() == "unix:/tmp/coring.sock");

    auto abstract = address::parse("unix:@coring");
    REQUIRE(abstract);
    CHECK(abstract->family() == AF_UNIX);
    CHECK(abstract->size() == offsetof(sockaddr_un, sun_path) + 1 + 6);  // no trailing NUL
    const char* sun_path = reinterpret_cast<const sockaddr_un*>(abstract->data())->sun_path;
    CHECK(sun_path[0] == '\0');
    CHECK(std::string(sun_path + 1, 6) == "coring");
    CHECK(abstract->to_string() == "unix:@coring");
    CHECK_FALSE(*abstract == address::parse("unix:coring").value());

    // The longest names that fit: sun_path holds 108 bytes, one of them a NUL.
    const std::string longest(sizeof(sockaddr_un::sun_path) - 1, 'x');
    CHECK(address::parse("unix:/" + longest.substr(1)));
    CHECK(address::parse("unix:@" + longest));
}

TEST_CASE("address: rejects malformed text", "[address]") {
    const auto invalid = std::make_error_code(std::errc::invalid_argument);
    const char* bad[] = {
        "",                // empty
        "127.0.0.1",       // missing port
        "127.0.0.1:",      // empty port
        "127.0.0.1:65536", // port out of range
        "127.0.0.1:99999999999999999999",
        "127.0.0.1:7x",    // non-digits in port
        "127.0.0.1:-1",
        "127.0.0.1:+80",
        "127.0.0.1: 80",
        ":80",             // no host
        "300.1.1.1:80",    // bad IPv4
        "1.2.3:80",
        "localhost:80",    // no DNS
        "::1:80",          // IPv6 without brackets
        "[::1]",           // missing port
        "[::1]:",
        "[::1:80",         // unclosed bracket
        "[::1]80",
        "[1.2.3.4]:80",    // IPv4 in brackets
        "[::g]:80",        // bad IPv6
        "[fe80::1%]:80",   // empty scope
        "[fe80::1%no-such-interface0]:80",
        "unix:",           // empty path
        "unix:@",          // empty abstract name
        "unspec",
    };
    for (const char* text : bad) {
        INFO("text: \"" << text << '"');
        CHECK(parse_error(text) == invalid);
    }
    CHECK(parse_error(std::string_view("127.0.0.1\0:80", 13)) == invalid);
    CHECK(parse_error(std::string_view("unix:/a\0b", 9)) == invalid);  // the kernel would see "/a"
}

TEST_CASE("address: explains why a parse failed, and which forms are accepted", "[address]") {
    CHECK(address::explain_parse_error("localhost:7100") ==
          "names need resolution (not supported yet); use a numeric address: "
          "127.0.0.1:7000, [::1]:7000, unix:/path, unix:@name");
    const std::string forms = "; expected 127.0.0.1:7000, [::1]:7000, unix:/path, unix:@name";
    struct example {
        std::string_view text;
        std::string_view says;
    };
    const example examples[] = {
        {"", "empty address"},
        {"127.0.0.1", "missing :PORT"},
        {"127.0.0.1:65536", "the port must be a number from 0 to 65535"},
        {"127.0.0.1:7x", "the port must be a number from 0 to 65535"},
        {":80", "missing host before :PORT"},
        {"300.1.1.1:80", "not an IPv4 address"},
        {"::1:80", "an IPv6 address needs brackets, as in [::1]:7000"},
        {"[::1]80", "an IPv6 address needs its port after the brackets"},
        {"[::1]", "an IPv6 address needs its port after the brackets"},
        {"[::g]:80", "not an IPv6 address"},
        {"[fe80::1%]:80", "empty scope id after %"},
        {"[fe80::1%no-such-interface0]:80", "no such network interface"},
        {"unix:", "empty unix path"},
        {"unix:@", "empty abstract socket name"},
        {std::string_view("unix:/a\0b", 9), "a unix path cannot hold a NUL byte"},
    };
    for (const auto& e : examples) {
        INFO("text: \"" << e.text << '"');
        REQUIRE_FALSE(address::parse(e.text));
        const std::string why = address::explain_parse_error(e.text);
        CHECK(why.starts_with(e.says));
        CHECK(why.ends_with(forms));
    }
    // Only the length is wrong: the forms would not help.
    CHECK(address::explain_parse_error("unix:/" + std::string(199, 'p')) ==
          "unix socket name too long: at most 107 bytes fit in sun_path");
    // Text that parses has nothing to explain.
    for (const char* good : {"127.0.0.1:7000", "[::1]:0", "unix:/tmp/x.sock", "unix:@name"}) {
        INFO("text: " << good);
        CHECK(address::explain_parse_error(good).empty());
    }
}

TEST_CASE("address: rejects unix names longer than sun_path", "[address]") {
    const auto too_long = std::make_error_code(std::errc::filename_too_long);
    CHECK(parse_error("unix:/" + std::string(199, 'p')) == too_long);  // a 200-char path
    const std::string just_over(sizeof(sockaddr_un::sun_path), 'x');  // no room left for the NUL
    CHECK(parse_error("unix:" + just_over) == too_long);
    CHECK(parse_error("unix:@" + just_over) == too_long);
}

TEST_CASE("address: to_string round-trips through parse", "[address]") {
    const char* texts[] = {
        "127.0.0.1:7000", "0.0.0.0:0", "255.255.255.255:65535", "[::1]:7000", "[::]:0",
        "[fe80::1%2]:80", "[2001:db8::abcd:1]:443", "unix:/tmp/coring.sock", "unix:relative.sock",
        "unix:@coring",
    };
    for (const char* text : texts) {
        INFO("text: " << text);
        auto a = address::parse(text);
        REQUIRE(a);
        CHECK(a->to_string() == text);
        auto again = address::parse(a->to_string());
        REQUIRE(again);
        CHECK(*again == *a);
    }
    for (const address& a : {address::ipv4_loopback(1), address::ipv6_loopback(65535)})
        CHECK(address::parse(a.to_string()).value() == a);
}

TEST_CASE("address: with_port changes only the port", "[address]") {
    const address v4 = address::parse("10.0.0.1:80").value();
    CHECK(v4.with_port(8080).to_string() == "10.0.0.1:8080");
    CHECK(v4.with_port(80) == v4);
    CHECK_FALSE(v4.with_port(81) == v4);
    CHECK(address::parse("[fe80::1%2]:80").value().with_port(0).to_string() == "[fe80::1%2]:0");
    const address path = address::parse("unix:/tmp/x").value();
    CHECK(path.with_port(80) == path);
}

TEST_CASE("address: equality", "[address]") {
    CHECK_FALSE(address::ipv4_loopback(80) == address::ipv6_loopback(80));
    CHECK_FALSE(address::parse("[fe80::1%1]:80").value() == address::parse("[fe80::1%2]:80").value());

    // A path is the same path whether or not its size counts the trailing NUL.
    const address with_nul = address::parse("unix:/tmp/x").value();
    address without_nul = with_nul;
    without_nul.set_size(with_nul.size() - 1);
    CHECK(without_nul == with_nul);
    CHECK(without_nul.to_string() == "unix:/tmp/x");

    // An abstract name is exactly size bytes long, so a shorter size is another name.
    const address abstract = address::parse("unix:@abc").value();
    address shorter = abstract;
    shorter.set_size(abstract.size() - 1);
    CHECK_FALSE(shorter == abstract);
    CHECK(shorter.to_string() == "unix:@ab");
}

TEST_CASE("address: from_sockaddr copies and clamps", "[address]") {
    const address v4 = address::ipv4_loopback(9);
    const address copy = address::from_sockaddr(v4.data(), v4.size());
    CHECK(copy == v4);
    CHECK(copy.size() == v4.size());

    sockaddr_storage big{};
    big.ss_family = AF_INET6;
    const address clamped = address::from_sockaddr(reinterpret_cast<const sockaddr*>(&big), 1000);
    CHECK(clamped.size() == address::capacity());
    CHECK(clamped.family() == AF_INET6);

    CHECK(address::from_sockaddr(nullptr, 16).family() == AF_UNSPEC);

    // An unnamed unix socket (say, a client's peer address) has a family and nothing else.
    sockaddr_un unnamed{};
    unnamed.sun_family = AF_UNIX;
    const address peer = address::from_sockaddr(reinterpret_cast<const sockaddr*>(&unnamed), sizeof(sa_family_t));
    CHECK(peer.family() == AF_UNIX);
    CHECK(peer.to_string() == "unix:(unnamed)");
}

TEST_CASE("address: reads what the kernel wrote for a bound IPv4 socket", "[address]") {
    const address local = bound_address(address::ipv4_loopback(0));
    INFO("errno: " << std::strerror(errno));
    REQUIRE(local.family() == AF_INET);
    CHECK(local.size() == sizeof(sockaddr_in));
    CHECK(local.port() != 0);
    CHECK(local.to_string().starts_with("127.0.0.1:"));
    CHECK(address::parse(local.to_string()).value() == local);
}

TEST_CASE("address: reads what the kernel wrote for a bound IPv6 socket", "[address]") {
    const address local = bound_address(address::ipv6_loopback(0));
    if (local.family() == AF_UNSPEC) {
        WARN("IPv6 loopback unavailable (" << std::strerror(errno) << "): skipping");
        return;
    }
    REQUIRE(local.family() == AF_INET6);
    CHECK(local.size() == sizeof(sockaddr_in6));
    CHECK(local.port() != 0);
    CHECK(local.to_string().starts_with("[::1]:"));
    CHECK(address::parse(local.to_string()).value() == local);
}
