#pragma once
// What the HTTP server's files share (private to net/http): a route as the table keeps it, and
// one connection's state. routes.cpp fills the table, server.cpp runs connections (heads,
// routing, answers, keep-alive), body.cpp reads request bodies and writes streamed responses.
#include <coring/http/server.hpp>

#include <coring/http/chunked.hpp>
#include <coring/http/router.hpp>

#include <cstddef>
#include <exception>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace coring::http {

struct routes::route {
    enum class kind : std::uint8_t { plain, sync, stream, websocket };
    kind k = kind::plain;
    handler plain;
    sync_handler immediate;
    stream_handler streamed;
    websocket_handler upgraded;
    std::size_t max_body = 0;     // 0: the server's
    std::size_t max_message = 0;  // websocket
};

struct routes::table {
    router<route> paths;
    std::optional<route> fallback;
};

inline std::span<const std::byte> bytes_of(std::string_view s) noexcept {
    return std::as_bytes(std::span(s.data(), s.size()));
}

// The connections of one serve() (one core), so that a graceful stop can end those that wait
// for their next request at once, as nginx closes idle keep-alive connections: nobody is
// owed anything there. The others end after their response (draining: no keep-alive wait).
struct connection_set {
    connection* head = nullptr;
    bool draining = false;
    void drain() noexcept;
};

// The state of one connection, in its task's frame (server.cpp, serve_in).
class connection {
public:
    connection(tcp_stream& s, const routes& r, const server_options& o, connection_set& set) noexcept;
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;
    ~connection();

    task<> run();

private:
    friend class request;
    friend class response_stream;

    // The head of the next request, parsed into head_; 0, or the status to answer (and close)
    // with; -1: the connection is over (closed, reset, idle), nothing to answer.
    task<int> next_head();
    // The same without waiting, when the whole head is already here (pipelined requests), or
    // what is here already shows the answer: not_buffered when neither.
    static constexpr int not_buffered = -2;
    int head_if_buffered();
    // head_ was parsed from the reader's first `length` bytes: keeps them where the request
    // needs them (in place, or copied when a body will move the reader's bytes).
    void keep_head(std::size_t length);
    // The same by copy: head_ is parsed again from head_copy_, and the reader's bytes consumed.
    void keep_head_copy(std::size_t length);
    // The route for head_, or none when the answer is already queued (404, 405, 400, 413).
    const routes::route* route();
    // route()'s general case, for a path no parameterless route matches exactly: the router's
    // full match, the fallback, or the 404 or 405 (null: queued). Fills params_.
    const routes::route* route_with_params(std::string_view method);
    request make_request() noexcept;
    void handler_threw(const std::exception& e) const;  // logs it; the answer is the caller's
    // Queues a plain handler's response (null: it threw), or the error its body read met.
    void answer(const response* resp);
    void answer_sync(const routes::route& r);
    // false: close the connection
    task<bool> answer_stream(const routes::route& r);
    task<bool> answer_websocket(const routes::route& r);
    void queue(const response& resp);
    void queue_error(int status);
    task<result<void>> flush();
    task<result<void>> send(std::span<const std::span<const std::byte>> pieces);
    task<> linger();
    task<result<std::span<const std::byte>>> read_body_some();
    void start_body() noexcept;
    bool body_finished() const noexcept { return body_done_; }

    friend struct connection_set;
    connection_set& set_;
    connection* prev_ = nullptr;  // in set_
    connection* next_ = nullptr;
    coring::detail::task_context* task_;  // the connection's task, ended by a stop while it is idle
    bool idle_ = false;           // waiting for the first byte of a request after the first
    bool answered_ = false;       // a response was queued: a keep-alive wait is idle from now on
    tcp_stream& stream_;
    buffered_reader reader_;
    const routes::table& table_;
    const server_options& opts_;
    request_head head_;
    std::string head_copy_;      // the head of a request with a body or an upgrade (whose reads move the reader's bytes)
    std::size_t head_in_reader_ = 0;  // a body-less request's head, consumed once it is answered
    bool keep_alive_ = true;
    bool is_head_ = false;       // HEAD: every response goes without its body
    std::string out_;            // responses queued for one send (bounded by max_output)
    std::vector<std::pair<std::string_view, std::string>> params_;
    // The request body.
    std::size_t body_limit_ = 0;
    std::uint64_t body_left_ = 0;  // Content-Length: bytes not yet read
    chunked_decoder chunks_{0};
    std::size_t body_pending_ = 0;  // handed to the handler, consumed at its next read
    bool body_done_ = true;
    bool continue_due_ = false;     // "100 Continue" owed before the first body read
    int body_failure_ = 0;          // the status a failed body read makes the response
};

}  // namespace coring::http
