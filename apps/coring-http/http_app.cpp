#include "http_app.hpp"

#include <coring/http/server.hpp>
#include <coring/http/static_files.hpp>
#include <coring/ws/websocket.hpp>

#include <system_error>

namespace coring::apps {

namespace {

// The TechEmpower conventions, so results compare with theirs. Neither waits for anything, so
// both are plain functions (a handler that reads a body or calls a database is a coroutine).
http::response plaintext(http::request&) { return http::response::text("Hello, World!"); }
http::response json(http::request&) { return http::response::json(R"({"message":"Hello, World!"})"); }

// Every message comes back as it came (text as text, binary as binary) until the client closes.
task<> ws_echo(http::request&, ws::websocket& socket) {
    for (;;) {
        auto message = co_await socket.receive();
        if (!message) break;  // closed (the close handshake is done), reset, or a protocol error
        result<void> sent;
        if (message->op == ws::opcode::text) sent = co_await socket.send_text(message->payload);
        else sent = co_await socket.send_binary(message->bytes());
        if (!sent) break;
    }
}

}  // namespace

task<> http_server(http_options opts, core_listeners& listeners) {
    auto listener = listeners.take();
    if (!listener) co_return;  // a unix socket: core 0 alone listens
    http::routes routes;
    routes.get("/plaintext", plaintext).get("/json", json).websocket("/ws/echo", ws_echo);
    std::optional<http::static_files> files;
    if (opts.root) {
        auto opened = co_await http::static_files::open(*opts.root);
        if (!opened) throw std::system_error(opened.error(), "--root " + *opts.root);
        files.emplace(std::move(*opened));
        routes.fallback(files->handler());
    }
    if (core::current().id() == 0 && opts.announce) {
        log("http server listening on {}{}", opts.listen.to_string(),
            opts.root ? ", files from " + *opts.root : std::string{});
    }
    const http::server_options server;
    co_await http::serve(std::move(*listener), routes, server);
    if (files) co_await files->close();
}

}  // namespace coring::apps
