// The server from README.md, compiled by the build so the README cannot drift from the API.
#include <array>
#include <coring/coring.hpp>
using namespace coring;

task<> echo(tcp_stream conn) {                          // by value: the frame owns the stream
    std::array<std::byte, 4096> buf;                    // in the frame, which outlives every op
    for (;;) {
        auto n = co_await conn.recv(buf);               // result<size_t>: bytes or an error_code
        if (!n || *n == 0) break;                       // reset, cancelled, or the peer closed
        if (auto sent = co_await conn.write_all(std::span(buf).first(*n)); !sent) break;
    }
    co_await conn.close();
}
task<> serve() {
    auto listener = tcp_listener::bind("127.0.0.1:7000", {.reuse_port = true}).value();
    for (auto conn = co_await listener.accept(); conn; conn = co_await listener.accept())
        core::current().spawn(echo(std::move(*conn)));  // ends with ECANCELED on SIGINT/SIGTERM
}
int main(int argc, char** argv) {                       // --cores N --backend uring|epoll|auto
    return run(runtime_options::from_args(argc, argv), [](core&) { return serve(); });
}
