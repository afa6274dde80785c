// The smallest program on an installed coring: a listener on a port the kernel picks, one
// connection to it from the same core, one message there and back, then exit 0. `./dev test`
// builds it with nothing but
//     g++ pkgconfig_hello.cpp $(pkg-config --cflags --libs coring)
// and, as a Meson subproject, with dependency('coring'). It also shows an app flag of its own
// next to the runtime flags: --message TEXT.
#include <coring/coring.hpp>

#include <array>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <string_view>

using namespace coring;

// The value, or an exception naming what failed: run() prints it and returns 2.
template <class T>
T must(result<T> r, std::string_view what) {
    if (!r) throw std::runtime_error(std::string{what} + ": " + r.error().message());
    return std::move(*r);
}

task<> hello(std::string message) {
    auto listener = must(tcp_listener::bind("127.0.0.1:0"), "bind 127.0.0.1:0");
    const address where = must(listener.local_address(), "getsockname");
    auto client = must(co_await tcp_stream::connect(where), "connect " + where.to_string());
    auto server = must(co_await listener.accept(), "accept on " + where.to_string());
    const auto bytes = std::as_bytes(std::span(message));
    if (auto sent = co_await client.write_all(bytes); !sent)
        throw std::runtime_error("send to " + where.to_string() + ": " + sent.error().message());
    std::string echoed;
    std::array<std::byte, 256> buf;
    while (echoed.size() < message.size()) {
        const auto n = must(co_await server.recv(buf), "recv on " + where.to_string());
        if (n == 0) throw std::runtime_error("recv on " + where.to_string() + ": the peer closed early");
        echoed.append(reinterpret_cast<const char*>(buf.data()), n);
    }
    if (echoed != message) throw std::runtime_error("received '" + echoed + "', sent '" + message + "'");
    const std::string_view backend = to_string(core::current().kind());
    std::printf("%s (through %s on %.*s)\n", echoed.c_str(), where.to_string().c_str(), static_cast<int>(backend.size()),
                backend.data());
    co_await client.close();
    co_await server.close();
    co_await listener.close();
}

int main(int argc, char** argv) {
    std::string message = "hello from coring";
    auto opts = runtime_options::from_args(argc, argv, [&](std::string_view flag, std::string_view value) {
        if (flag != "--message") return false;
        message = value;
        return true;
    }, "usage: pkgconfig_hello [--message TEXT] [runtime flags]\nSends TEXT to itself over loopback TCP and prints it.");
    opts.cores = 1;  // one message needs one core
    opts.quiet = true;
    return run(opts, [&](core&) { return hello(message); });
}
