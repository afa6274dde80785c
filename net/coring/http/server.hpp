#pragma once
// HTTP/1.1 server: each connection is one coroutine that reads requests through a
// buffered_reader, calls the route's handler, and writes the responses in order.
//
//   http::routes r;
//   r.get("/hello/{name}", [](http::request& req) -> task<http::response> {
//       co_return http::response::text("Hello, " + std::string{req.param("name")});
//   });
//   core.spawn(http::serve(std::move(listener), r));   // one listener per core (SO_REUSEPORT)
//
// A handler returns a whole response (a coroutine, or a plain function when it never waits: no
// frame per request then), or (stream) writes its body piece by piece through a
// response_stream; a websocket route gets the upgraded connection. What the server does for
// every route: keep-alive (HTTP/1.0 and 1.1 rules), HEAD, Expect: 100-continue, request bodies
// by Content-Length or chunked, the limits and errors of RFC 9112 (400, 413, 431, 501, 505,
// each answered and followed by a close), and the timeouts in server_options.
//
// Bounds, per connection: a request head (max_head_bytes); a request body (the route's
// max_body: 413 beyond); the reader's spill; responses queued for a pipelining client
// (max_output: past it the server sends before it reads on, and a client that never reads
// meets the write timeout); nothing else grows with what a peer sends.
#include <coring/http/request.hpp>
#include <coring/http/response.hpp>
#include <coring/reader.hpp>
#include <coring/result.hpp>
#include <coring/task.hpp>
#include <coring/tcp.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace coring::ws {
class websocket;
}

namespace coring::http {

struct server_options {
    std::chrono::milliseconds header_timeout{10'000};  // a whole request head (slowloris)
    std::chrono::milliseconds idle_timeout{60'000};    // keep-alive: the next request's first byte
    std::chrono::milliseconds body_timeout{30'000};    // a body read that makes no progress
    std::chrono::milliseconds write_timeout{30'000};   // a send that makes no progress
    std::size_t max_body = 1 << 20;                    // for routes that do not say
    std::size_t max_output = 64 * 1024;                // queued responses before a send
};

class connection;  // one per socket, inside serve_connection's frame

// What a handler sees of a request. Its views stay valid until the handler returns.
class request {
public:
    std::string_view method() const noexcept { return head_->method; }
    std::string_view target() const noexcept { return head_->target; }
    std::string_view path() const noexcept { return head_->path; }  // still %-encoded
    std::string_view query() const noexcept { return head_->query; }
    int minor_version() const noexcept { return head_->minor_version; }
    // The first field of that name (case-insensitive); empty when there is none.
    std::string_view header(std::string_view name) const noexcept { return head_->find(name); }
    const request_head& head() const noexcept { return *head_; }
    // A {name} segment of the route's pattern, %-decoded; empty when the pattern has none.
    std::string_view param(std::string_view name) const noexcept;

    // The whole body (empty when there is none). Errors: message_size past the route's
    // max_body (the server answers 413), timed_out, bad_message (a malformed chunked body), or
    // the connection's own. Sends "100 Continue" first when the client asked for it.
    [[nodiscard]] task<result<std::string>> body();
    // The body piece by piece: the next bytes (valid until the next call), empty at its end.
    [[nodiscard]] task<result<std::span<const std::byte>>> read_body_some();

private:
    friend class connection;
    connection* conn_ = nullptr;
    const request_head* head_ = nullptr;
    std::span<const std::pair<std::string_view, std::string>> params_;
};

// A response written as it is made: its head first, then the body in pieces (chunked for
// HTTP/1.1 when the length is not known; for HTTP/1.0 the body runs to the close). A 1xx, 204
// or 304 ends at its head: write() refuses bytes for it.
class response_stream {
public:
    [[nodiscard]] task<result<void>> start(int status, std::string_view content_type,
                                           std::optional<std::uint64_t> content_length = std::nullopt,
                                           std::span<const std::pair<std::string, std::string>> headers = {});
    [[nodiscard]] task<result<void>> write(std::span<const std::byte> piece);
    [[nodiscard]] task<result<void>> write(std::string_view piece) { return write(std::as_bytes(std::span(piece))); }
    [[nodiscard]] task<result<void>> finish();

private:
    friend class connection;
    explicit response_stream(connection& c) noexcept : conn_{&c} {}
    connection* conn_;
    bool started_ = false;
    bool chunked_ = false;
    bool finished_ = false;
    std::optional<std::uint64_t> remaining_;
};

using handler = std::function<task<response>(request&)>;
// A handler that never waits (it reads no body, calls nothing that suspends): a plain function,
// called without a coroutine frame of its own.
using sync_handler = std::function<response(request&)>;
using stream_handler = std::function<task<>(request&, response_stream&)>;
using websocket_handler = std::function<task<>(request&, ws::websocket&)>;

struct route_options {
    std::size_t max_body = 0;  // 0: server_options::max_body
};

class routes {
public:
    routes();
    ~routes();
    routes(routes&&) noexcept;
    routes& operator=(routes&&) noexcept;

    // Patterns are paths whose segments may be {name}: "/users/{id}". An exact segment wins
    // over a {name} one. A path that matches with another method gets 405 and Allow.
    routes& add(std::string_view method, std::string_view pattern, handler h, route_options o = {});
    routes& add(std::string_view method, std::string_view pattern, sync_handler h, route_options o = {});
    routes& get(std::string_view pattern, handler h, route_options o = {}) { return add("GET", pattern, std::move(h), o); }
    routes& get(std::string_view pattern, sync_handler h, route_options o = {}) { return add("GET", pattern, std::move(h), o); }
    routes& post(std::string_view pattern, handler h, route_options o = {}) { return add("POST", pattern, std::move(h), o); }
    routes& post(std::string_view pattern, sync_handler h, route_options o = {}) { return add("POST", pattern, std::move(h), o); }
    routes& stream(std::string_view method, std::string_view pattern, stream_handler h, route_options o = {});
    // GET with "Upgrade: websocket": the handshake is done before h runs; h owns the socket
    // until it returns. A plain GET there gets 426 Upgrade Required.
    routes& websocket(std::string_view pattern, websocket_handler h, std::size_t max_message = 1 << 20);
    // What no route matched (GET/HEAD only: static files); unset, 404.
    routes& fallback(stream_handler h);

    struct route;  // private to the server
    struct table;

private:
    friend class connection;
    routes& put(std::string_view method, std::string_view pattern, route r);
    std::unique_ptr<table> table_;
};

// Serves one connection until it closes (or the core stops); routes and opts must outlive it.
task<> serve_connection(tcp_stream conn, const routes& r, const server_options& opts);
// Accepts on listener and serves each connection in its own task on this core, until the core
// stops or the listener fails; routes and opts must outlive it. At a graceful stop, connections
// waiting for their next request close at once (as nginx's do), the others after their response.
task<> serve(tcp_listener listener, const routes& r, const server_options& opts);

}  // namespace coring::http
