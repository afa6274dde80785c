#include <coring/http/server.hpp>

#include <coring/accept_pacer.hpp>
#include <coring/http/chunked.hpp>
#include <coring/http/router.hpp>
#include <coring/log.hpp>
#include <coring/task_group.hpp>
#include <coring/timer.hpp>
#include <coring/ws/handshake.hpp>
#include <coring/ws/websocket.hpp>

#include <array>
#include <charconv>
#include <optional>
#include <vector>

namespace coring::http {

struct routes::route {
    enum class kind : std::uint8_t { plain, stream, websocket };
    kind k = kind::plain;
    handler plain;
    stream_handler streamed;
    websocket_handler upgraded;
    std::size_t max_body = 0;     // 0: the server's
    std::size_t max_message = 0;  // websocket
};

struct routes::table {
    router<route> paths;
    std::optional<route> fallback;
};

routes::routes() : table_{std::make_unique<table>()} {}
routes::~routes() = default;
routes::routes(routes&&) noexcept = default;
routes& routes::operator=(routes&&) noexcept = default;

routes& routes::add(std::string_view method, std::string_view pattern, handler h, route_options o) {
    route r;
    r.plain = std::move(h);
    r.max_body = o.max_body;
    table_->paths.add(method, pattern, std::move(r));
    return *this;
}

routes& routes::stream(std::string_view method, std::string_view pattern, stream_handler h, route_options o) {
    route r;
    r.k = route::kind::stream;
    r.streamed = std::move(h);
    r.max_body = o.max_body;
    table_->paths.add(method, pattern, std::move(r));
    return *this;
}

routes& routes::websocket(std::string_view pattern, websocket_handler h, std::size_t max_message) {
    route r;
    r.k = route::kind::websocket;
    r.upgraded = std::move(h);
    r.max_message = max_message;
    table_->paths.add("GET", pattern, std::move(r));
    return *this;
}

routes& routes::fallback(stream_handler h) {
    route r;
    r.k = route::kind::stream;
    r.streamed = std::move(h);
    table_->fallback = std::move(r);
    return *this;
}

namespace {

using namespace std::chrono_literals;

constexpr std::string_view head_end = "\r\n\r\n";
// After an error response the client may still be sending: reading (and dropping) what comes
// for this long, up to this much, lets the response arrive before our close resets it.
constexpr auto linger_time = 1000ms;
constexpr std::size_t linger_bytes = 64 * 1024;

std::span<const std::byte> bytes_of(std::string_view s) noexcept { return std::as_bytes(std::span(s.data(), s.size())); }

}  // namespace

// The state of one connection, in serve_connection's frame.
class connection {
public:
    connection(tcp_stream& s, const routes& r, const server_options& o) noexcept
        : stream_{s}, reader_{s, max_head_bytes + 16 * 1024}, table_{*r.table_}, opts_{o} {}

    task<> run();

private:
    friend class request;
    friend class response_stream;

    // The head of the next request, parsed into head_; 0, or the status to answer (and close)
    // with; -1: the connection is over (closed, reset, idle), nothing to answer.
    task<int> next_head();
    // The same without waiting, when the whole head is already here (pipelined requests):
    // not_buffered when it is not.
    static constexpr int not_buffered = -2;
    int head_if_buffered();
    int parse_head(std::size_t length);
    // The route for head_, or none when the answer is already queued (404, 405, 400, 413).
    const routes::route* route();
    // false: close the connection
    task<bool> answer_plain(const routes::route& r);
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

    tcp_stream& stream_;
    buffered_reader reader_;
    const routes::table& table_;
    const server_options& opts_;
    request_head head_;
    std::string head_copy_;      // the head of a request with a body (reading it moves the reader's bytes)
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

// ---- request ------------------------------------------------------------------------------------

std::string_view request::param(std::string_view name) const noexcept {
    for (const auto& [n, v] : params_)
        if (n == name) return v;
    return {};
}

task<result<std::span<const std::byte>>> request::read_body_some() { return conn_->read_body_some(); }

task<result<std::string>> request::body() {
    std::string all;
    for (;;) {
        auto piece = co_await conn_->read_body_some();
        if (!piece) co_return piece.error();
        if (piece->empty()) co_return all;
        all.append(reinterpret_cast<const char*>(piece->data()), piece->size());
    }
}

void connection::start_body() noexcept {
    body_pending_ = 0;
    body_failure_ = 0;
    body_done_ = head_.framing == body_framing::none;
    body_left_ = head_.framing == body_framing::length ? head_.content_length : 0;
    if (head_.framing == body_framing::chunked) chunks_ = chunked_decoder{body_limit_};
    continue_due_ = head_.expect_continue && !body_done_ && head_.minor_version == 1;
}

task<result<std::span<const std::byte>>> connection::read_body_some() {
    reader_.consume(std::exchange(body_pending_, 0));
    if (body_done_) co_return std::span<const std::byte>{};
    if (body_failure_) co_return std::errc::bad_message;
    if (continue_due_) {
        continue_due_ = false;
        out_ += "HTTP/1.1 100 Continue\r\n\r\n";
        auto sent = co_await flush();
        if (!sent) co_return sent.error();
    }
    stream_.set_idle_timeout(opts_.body_timeout);
    for (;;) {
        const auto have = reader_.peek();
        if (head_.framing == body_framing::length) {
            if (body_left_ == 0) {
                body_done_ = true;
                co_return std::span<const std::byte>{};
            }
            if (!have.empty()) {
                const std::size_t n = have.size() < body_left_ ? have.size() : static_cast<std::size_t>(body_left_);
                body_left_ -= n;
                body_pending_ = n;
                co_return have.first(n);
            }
        } else if (!have.empty()) {
            const auto step = chunks_.next(have);
            if (step.error) {  // malformed (400), too big (413), trailers too big (431)
                body_failure_ = step.error;
                co_return step.error == 413 ? std::errc::message_size : std::errc::bad_message;
            }
            if (!step.data.empty()) {
                body_pending_ = step.consumed;
                co_return step.data;
            }
            reader_.consume(step.consumed);
            if (step.done) {
                body_done_ = true;
                co_return std::span<const std::byte>{};
            }
            if (step.consumed > 0) continue;
        }
        auto more = co_await reader_.fill();
        if (!more) {
            body_failure_ = 400;
            co_return more.error();
        }
        if (*more == 0) {  // the client stopped inside its body
            body_failure_ = 400;
            co_return std::errc::bad_message;
        }
    }
}

// ---- response_stream ------------------------------------------------------------------------------

task<result<void>> response_stream::start(int status, std::string_view content_type,
                                          std::optional<std::uint64_t> content_length,
                                          std::span<const std::pair<std::string, std::string>> headers) {
    connection& c = *conn_;
    started_ = true;
    remaining_ = content_length;
    // Without a length, HTTP/1.1 chunks the body; HTTP/1.0 has no chunks: the close ends it.
    // A HEAD response announces what the GET's would, and ends at its head either way.
    chunked_ = !content_length && c.head_.minor_version == 1;
    if (!content_length && !chunked_ && !c.is_head_) c.keep_alive_ = false;
    write_head(c.out_, status, content_type, content_length, c.keep_alive_, headers, chunked_);
    return c.flush();
}

task<result<void>> response_stream::write(std::span<const std::byte> piece) {
    connection& c = *conn_;
    if (!started_) co_return std::errc::invalid_argument;
    if (piece.empty() || c.is_head_) co_return result<void>{};
    if (remaining_) {
        if (piece.size() > *remaining_) co_return std::errc::message_size;  // more than it announced
        *remaining_ -= piece.size();
    }
    if (!chunked_) co_return co_await c.send(std::array{piece});
    std::array<char, 20> size_line;
    auto [end, ec] = std::to_chars(size_line.data(), size_line.data() + 16, piece.size(), 16);
    *end++ = '\r';
    *end++ = '\n';
    const std::array pieces{bytes_of({size_line.data(), static_cast<std::size_t>(end - size_line.data())}), piece,
                            bytes_of("\r\n")};
    co_return co_await c.send(pieces);
}

task<result<void>> response_stream::finish() {
    connection& c = *conn_;
    if (finished_) co_return result<void>{};
    finished_ = true;
    if (remaining_ && *remaining_ != 0 && !c.is_head_) {  // fewer bytes than announced: only a close says so
        c.keep_alive_ = false;
        co_return std::errc::message_size;
    }
    if (!chunked_ || c.is_head_) co_return result<void>{};
    co_return co_await c.send(std::array{bytes_of("0\r\n\r\n")});
}

// ---- the connection ------------------------------------------------------------------------------

task<result<void>> connection::send(std::span<const std::span<const std::byte>> pieces) {
    // What is queued goes first, in the same send.
    std::array<std::span<const std::byte>, 4> all;
    std::size_t n = 0;
    if (!out_.empty()) all[n++] = bytes_of(out_);
    for (auto p : pieces) all[n++] = p;
    stream_.set_idle_timeout(opts_.write_timeout);
    auto sent = n == 1 ? co_await stream_.write_all(all[0])
                       : co_await stream_.write_all(std::span<const std::span<const std::byte>>(all.data(), n));
    out_.clear();
    co_return sent;
}

task<result<void>> connection::flush() {
    if (out_.empty()) co_return result<void>{};
    co_return co_await send({});
}

void connection::queue(const response& resp) {
    std::string_view body = resp.body;
    write_head(out_, resp.status, resp.content_type, body.size(), keep_alive_, resp.headers);
    if (!is_head_) out_ += body;
}

void connection::queue_error(int status) {
    keep_alive_ = false;
    response r = response::text(std::string{reason_phrase(status)} + "\n");
    r.status = status;
    queue(r);
}

task<> connection::linger() {
    (void)co_await stream_.shutdown(SHUT_WR);
    auto drain = [](connection* c) -> task<result<void>> {
        std::size_t dropped = 0;
        while (dropped < linger_bytes) {
            dropped += c->reader_.buffered();
            c->reader_.consume(c->reader_.buffered());
            auto more = co_await c->reader_.fill();
            if (!more) co_return more.error();
            if (*more == 0) break;
        }
        co_return result<void>{};
    };
    (void)co_await with_timeout(linger_time, drain(this));
}

task<int> connection::next_head() {
    if (reader_.buffered() == 0) {
        // Between requests: what is queued goes now, then the keep-alive wait.
        auto sent = co_await flush();
        if (!sent) co_return -1;
        stream_.set_idle_timeout({});
        auto got = co_await with_timeout(opts_.idle_timeout, reader_.fill());
        if (!got || *got == 0) co_return -1;
    }
    std::size_t length = find_head_end(reader_.peek_text());
    if (length == 0) {  // the rest of the head is still on its way
        if (reader_.buffered() >= max_head_bytes) co_return 431;
        auto sent = co_await flush();
        if (!sent) co_return -1;
        stream_.set_idle_timeout({});
        auto head = co_await with_timeout(opts_.header_timeout, reader_.read_until(head_end, max_head_bytes));
        if (!head) {
            if (head.error() == std::errc::message_size) co_return 431;
            if (head.error() == std::errc::timed_out) co_return 408;
            co_return -1;  // reset, or the client closed inside its head
        }
        if (head->empty()) co_return -1;
        length = head->size();
    }
    co_return parse_head(length);
}

int connection::parse_head(std::size_t length) {
    if (length > max_head_bytes) return 431;
    const std::string_view text = reader_.peek_text().substr(0, length);
    if (const int status = parse_request_head(text, head_); status != 0) return status;
    if (head_.framing == body_framing::none) {
        head_in_reader_ = length;  // parsed in place; consumed once answered
    } else {
        head_copy_.assign(text);  // the body's reads will move the reader's bytes
        (void)parse_request_head(head_copy_, head_);
        reader_.consume(length);
        head_in_reader_ = 0;
    }
    return 0;
}

int connection::head_if_buffered() {
    const std::size_t length = find_head_end(reader_.peek_text());
    return length == 0 ? not_buffered : parse_head(length);
}

task<> connection::run() {
    for (;;) {
        // A pipelined request is parsed without a wait (and without a coroutine frame).
        int status = head_if_buffered();
        if (status == not_buffered) status = co_await next_head();
        if (status < 0) break;
        if (status > 0) {
            is_head_ = false;
            queue_error(status);
            (void)co_await flush();
            co_await linger();
            break;
        }
        bool again = true;
        if (const routes::route* r = route()) {
            if (r->k == routes::route::kind::plain) again = co_await answer_plain(*r);
            else if (r->k == routes::route::kind::stream) again = co_await answer_stream(*r);
            else again = co_await answer_websocket(*r);
        }
        reader_.consume(std::exchange(head_in_reader_, 0));
        if (!again) break;
        if (!keep_alive_) {
            auto sent = co_await flush();
            if (sent) co_await linger();
            break;
        }
        if (out_.size() >= opts_.max_output) {
            auto sent = co_await flush();
            if (!sent) break;
        }
    }
}

const routes::route* connection::route() {
    is_head_ = head_.method == "HEAD";
    keep_alive_ = head_.keep_alive;
    body_limit_ = opts_.max_body;
    start_body();  // again below, with the route's limit, once it is known
    // A HEAD is answered as the GET would be, without the body.
    const std::string_view method = is_head_ ? std::string_view{"GET"} : head_.method;
    const auto found = table_.paths.match(method, head_.path);
    const routes::route* r = found.handler;
    if (!r) {
        if (found.status == 404 && table_.fallback && method == "GET") r = &*table_.fallback;
        else {
            response resp = response::text(std::string{reason_phrase(found.status)} + "\n");
            resp.status = found.status;
            if (found.status == 405) resp.headers.emplace_back("Allow", table_.paths.allow(head_.path));
            if (!body_done_) keep_alive_ = false;  // its body is not read
            queue(resp);
            return nullptr;
        }
    }
    params_.clear();
    for (std::size_t i = 0; i < found.params.count; ++i) {
        const auto& [name, raw] = found.params.items[i];
        std::string value;
        if (!percent_decode(raw, value)) {
            queue_error(400);
            return nullptr;
        }
        params_.emplace_back(name, std::move(value));
    }
    body_limit_ = r->max_body ? r->max_body : opts_.max_body;
    start_body();
    if (head_.framing == body_framing::length && head_.content_length > body_limit_) {
        queue_error(413);
        return nullptr;
    }
    return r;
}

task<bool> connection::answer_plain(const routes::route& r) {
    request req;
    req.conn_ = this;
    req.head_ = &head_;
    req.params_ = params_;
    std::optional<response> resp;
    try {
        resp = co_await r.plain(req);
    } catch (const std::exception& e) {
        log("http: handler for {} {} threw: {}", head_.method, head_.path, e.what());
    }
    reader_.consume(std::exchange(body_pending_, 0));
    if (body_failure_) {  // the body was too big or malformed: that is the answer
        queue_error(body_failure_);
        co_return true;
    }
    if (!resp) {
        queue_error(500);
        co_return true;
    }
    if (!body_done_) keep_alive_ = false;  // the handler left the body unread: only a close ends it
    queue(*resp);
    co_return true;
}

task<bool> connection::answer_stream(const routes::route& r) {
    request req;
    req.conn_ = this;
    req.head_ = &head_;
    req.params_ = params_;
    response_stream out{*this};
    bool threw = false;
    try {
        co_await r.streamed(req, out);
    } catch (const std::exception& e) {
        threw = true;
        log("http: handler for {} {} threw: {}", head_.method, head_.path, e.what());
    }
    reader_.consume(std::exchange(body_pending_, 0));
    if (!out.started_) {
        if (body_failure_) queue_error(body_failure_);
        else queue_error(500);
        co_return true;
    }
    // A started response that cannot be finished properly ends with the connection.
    if (threw) co_return false;
    if (!out.finished_) {
        auto done = co_await out.finish();
        if (!done) co_return false;
    }
    if (!body_done_) keep_alive_ = false;
    co_return true;
}

task<bool> connection::answer_websocket(const routes::route& r) {
    const auto upgrade = ws::upgrade_request_from(head_.method, [this](std::string_view name) { return head_.find(name); });
    const ws::upgrade_error refused = ws::check_upgrade(upgrade);
    if (refused != ws::upgrade_error::none) {
        // A plain GET of a WebSocket endpoint is told to upgrade (426); a broken handshake is a 400.
        const int status = upgrade.upgrade.empty() ? 426 : ws::status_for(refused);
        response resp = response::text(std::string{ws::describe(refused)} + "\n", status);
        if (resp.status == 426) {
            resp.headers.emplace_back("Upgrade", "websocket");
            resp.headers.emplace_back("Sec-WebSocket-Version", "13");
        }
        queue(resp);
        co_return true;
    }
    out_ += ws::accept_response(upgrade.key);  // 101 Switching Protocols
    auto sent = co_await flush();
    if (!sent) co_return false;
    // What follows the head may already be frames: the websocket reads on from this reader.
    reader_.consume(std::exchange(head_in_reader_, 0));
    request req;
    req.conn_ = this;
    req.head_ = &head_;
    req.params_ = params_;
    stream_.set_idle_timeout({});
    ws::websocket socket{stream_, reader_, ws::role::server, {.max_message = r.max_message}};
    try {
        co_await r.upgraded(req, socket);
    } catch (const std::exception& e) {
        log("http: websocket handler for {} threw: {}", head_.path, e.what());
    }
    co_return false;  // the connection was the handler's: it ends with it
}

task<> serve_connection(tcp_stream conn, const routes& r, const server_options& opts) {
    {
        connection c{conn, r, opts};
        co_await c.run();
    }
    co_await conn.close();
}

task<> serve(tcp_listener listener, const routes& r, const server_options& opts) {
    // The connections are children of this task, so the routes and options they borrow (which
    // live in the caller's frame) outlive every one of them: serve ends after its last connection.
    task_group connections;
    accept_pacer pacer{"http accept"};  // out of fds: pauses, and says so once per interval
    for (;;) {
        auto accepted = co_await pacer.next(listener);
        if (!accepted) break;  // the core is stopping
        (void)accepted->set_nodelay(true);  // a response is a whole message: send it at once
        connections.spawn(serve_connection(std::move(*accepted), r, opts));
    }
    co_await listener.close();
    co_await connections.join();
}

}  // namespace coring::http
