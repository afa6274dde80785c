#pragma once
// What the HTTP tests share: a set of routes served on a core in the test thread while clients
// run in another (serve_while), curl, and a raw-socket client that reads whole responses.
#include "child_process.hpp"
#include "support.hpp"

#include <coring/http/chunked.hpp>
#include <coring/http/response_parser.hpp>
#include <coring/http/server.hpp>
#include <coring/http/static_files.hpp>
#include <coring/ws/websocket.hpp>

#include <atomic>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace coring::testing {

// Whether a client binary a test runs is here; says which Debian package brings it when not.
inline bool installed(const char* path, const char* package) {
    if (::access(path, X_OK) == 0) return true;
    WARN(path << " not installed (Debian package " << package << "): skipped");
    return false;
}

inline http::routes test_routes() {
    http::routes r;
    r.get("/plaintext", [](http::request&) -> task<http::response> { co_return http::response::text("Hello, World!"); });
    r.get("/n/{id}", [](http::request& req) -> task<http::response> {
        co_return http::response::text(std::string{req.param("id")});
    });
    r.post("/echo", [](http::request& req) -> task<http::response> {
        auto body = co_await req.body();
        if (!body) co_return http::response::text(body.error().message(), 500);
        co_return http::response::text(std::move(*body));
    });
    r.post("/small", [](http::request& req) -> task<http::response> {
        auto body = co_await req.body();
        co_return http::response::text(body ? *body : std::string{"failed"});
    }, {.max_body = 16});
    // Handlers that never wait, as plain functions; and handlers that throw (500, then a close).
    r.get("/sync/{id}", [](http::request& req) { return http::response::text("sync " + std::string{req.param("id")}); });
    r.get("/sync-throws", [](http::request&) -> http::response { throw std::runtime_error("sync boom"); });
    r.get("/throws", [](http::request&) -> task<http::response> {
        throw std::runtime_error("boom");
        co_return http::response::text("never");
    });
    // A handler that never reads the body it was sent: the server must not read it as a request.
    r.post("/ignore", [](http::request&) -> task<http::response> { co_return http::response::text("ignored"); });
    // A handler that answers 204 with a body it should not have: the server sends neither.
    r.get("/nocontent", [](http::request&) { return http::response{.status = 204, .content_type = "", .body = "dropped", .headers = {}}; });
    // A WebSocket route that reads its request only after the socket has received: the head's
    // views must outlive the buffer it came in.
    r.websocket("/ws/who", [](http::request& req, ws::websocket& socket) -> task<> {
        auto m = co_await socket.receive();
        if (!m) co_return;
        (void)co_await socket.send_text(std::string{req.path()} + " " + std::string{req.header("X-Who")} + " " +
                                        std::string{m->text()});
        (void)co_await socket.close(ws::close_code::normal, "");
    });
    r.stream("GET", "/stream", [](http::request&, http::response_stream& out) -> task<> {
        auto started = co_await out.start(200, "text/plain");
        if (!started) co_return;
        for (std::string_view piece : {"a", "bb", "ccc"}) {
            auto sent = co_await out.write(piece);
            if (!sent) co_return;
        }
        (void)co_await out.finish();
    });
    return r;
}

// Runs the test routes on a core in this thread while `clients(port)` runs in another.
// With `root`, files under it are served for what no route matches.
template <class Clients>
void serve_while(backend_kind kind, const http::server_options& opts, Clients clients, std::string root = {}) {
    test_core server{kind};
    http::routes routes = test_routes();
    auto listener = server.run_for(5s, []() -> task<result<tcp_listener>> { co_return tcp_listener::bind("127.0.0.1:0"); }());
    REQUIRE(listener);
    const auto where = listener->local_address();
    REQUIRE(where);
    std::atomic<bool> done{false};
    std::exception_ptr client_failure;  // a failed REQUIRE there, rethrown here after the join
    std::thread client_thread{[&] {
        try {
            clients(where->port());
        } catch (...) {
            client_failure = std::current_exception();
        }
        done = true;
    }};
    server.run_for(120s, [](tcp_listener l, http::routes* r, const http::server_options* o, std::atomic<bool>* done,
                            std::string root) -> task<> {
        std::optional<http::static_files> files;
        if (!root.empty()) {
            auto opened = co_await http::static_files::open(root);
            REQUIRE(opened);
            files.emplace(std::move(*opened));
            r->fallback(files->handler());
        }
        task_group g;
        g.spawn(http::serve(std::move(l), *r, *o));
        // No Catch assertion here: the clients' thread makes its own, and Catch is not thread-safe.
        while (!done->load()) {
            auto slept = co_await sleep_for(1ms);
            if (!slept) break;  // run_for's deadline: it fails the test itself
        }
        co_await g.cancel_and_join();
        if (files) co_await files->close();
    }(std::move(*listener), &routes, &opts, &done, root));
    client_thread.join();
    if (client_failure) std::rethrow_exception(client_failure);
}

inline std::string curl(const std::vector<std::string>& args, int* exit_code = nullptr) {
    child_process p{"/usr/bin/curl", args};
    const auto code = p.wait_exit_or_kill(20s);
    if (exit_code) *exit_code = code.value_or(-1);
    return p.out();
}

inline bool send_all(int fd, std::string_view bytes) {
    while (!bytes.empty()) {
        const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

struct parsed_response {
    int status = 0;
    std::string head;
    std::string body;
    bool keep_alive = true;
};

// Reads one response from a blocking socket; `pending` keeps what came after it. status 0 when
// the connection ended (or stalled past its 5 s receive timeout) before a whole response.
inline parsed_response read_response(int fd, std::string& pending, bool head_request = false) {
    parsed_response r;
    const auto more = [&] {
        char buf[4096];
        ssize_t n;
        while ((n = ::recv(fd, buf, sizeof buf, 0)) < 0 && errno == EINTR) {}
        if (n <= 0) return false;
        pending.append(buf, static_cast<std::size_t>(n));
        return true;
    };
    std::size_t end;
    while ((end = http::find_head_end(pending)) == 0)
        if (!more()) return r;
    r.head = pending.substr(0, end);
    pending.erase(0, end);
    http::response_head h;
    if (http::parse_response_head(r.head, h, head_request) != 0) return r;
    r.keep_alive = h.keep_alive;
    if (h.framing == http::body_framing::length) {
        while (pending.size() < h.content_length)
            if (!more()) return r;
        r.body = pending.substr(0, h.content_length);
        pending.erase(0, h.content_length);
    } else if (h.framing == http::body_framing::chunked) {
        http::chunked_decoder d{1 << 20};
        for (;;) {
            const auto step = d.next(std::as_bytes(std::span(pending.data(), pending.size())));
            if (step.error) return r;
            r.body.append(reinterpret_cast<const char*>(step.data.data()), step.data.size());
            pending.erase(0, step.consumed);
            if (step.done) break;
            if (step.consumed == 0 && !more()) return r;
        }
    } else if (h.framing == http::body_framing::until_close) {
        while (more()) {}
        r.body = std::exchange(pending, {});
    }
    r.status = h.status;
    return r;
}

// True when the server closed the connection (recv returns 0 or a reset) within 5 s.
inline bool closed_by_server(int fd) {
    char buf[256];
    for (;;) {
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
        if (n < 0) return false;  // the 5 s receive timeout: still open
    }
}

// True when the next thing the socket says is the end (EOF or a reset), with no byte before it.
inline bool ends_here(int fd) {
    char byte;
    ssize_t n;
    while ((n = ::recv(fd, &byte, 1, 0)) < 0 && errno == EINTR) {}
    return n == 0 || (n < 0 && errno == ECONNRESET);
}

}  // namespace coring::testing
