// The HTTP/1.1 server (server.hpp): one connection's loop (the next head, its route, the answer,
// keep-alive and pipelining, errors and the lingering close) and serve()'s accept loop.
#include "connection.hpp"

#include <coring/accept_pacer.hpp>
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

namespace {

using namespace std::chrono_literals;

constexpr std::string_view head_end = "\r\n\r\n";
// After an error response the client may still be sending: reading (and dropping) what comes
// for this long, up to this much, lets the response arrive before our close resets it.
constexpr auto linger_time = 1000ms;
constexpr std::size_t linger_bytes = 64 * 1024;

}  // namespace

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
    // No body where the status ends at the head, and no Content-Length (a 304's may only
    // repeat the 200's, which a handler's empty body is not).
    const bool bodiless = ends_at_head(resp.status);
    write_head(out_, resp.status, resp.content_type, bodiless ? std::nullopt : std::optional<std::uint64_t>{body.size()},
               keep_alive_, resp.headers);
    if (!is_head_ && !bodiless) out_ += body;
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

connection::connection(tcp_stream& s, const routes& r, const server_options& o, connection_set& set) noexcept
    : set_{set}, task_{core::current().current_task()}, stream_{s}, reader_{s, max_head_bytes + 16 * 1024},
      table_{*r.table_}, opts_{o} {
    next_ = set_.head;
    if (next_) next_->prev_ = this;
    set_.head = this;
}

connection::~connection() {
    (prev_ ? prev_->next_ : set_.head) = next_;
    if (next_) next_->prev_ = prev_;
}

void connection_set::drain() noexcept {
    draining = true;
    core& here = core::current();
    // Only the wait is cancelled, not the task: a request whose bytes came this very turn (its
    // wait is over, its resumption queued) is still answered, and then the connection closes.
    for (connection* c = head; c; c = c->next_)
        if (c->idle_ && c->task_ && c->task_->waiting_on) here.cancel(*c->task_->waiting_on);
}

task<int> connection::next_head() {
    if (reader_.buffered() == 0) {
        // Between requests: what is queued goes now, then the keep-alive wait (none once the
        // server is stopping). A new connection's first request is waited for even then:
        // it may be on the wire already, and the drain timeout bounds the wait.
        auto sent = co_await flush();
        if (!sent || (set_.draining && answered_)) co_return -1;
        stream_.set_idle_timeout({});
        idle_ = answered_;
        auto got = co_await with_timeout(opts_.idle_timeout, reader_.fill());
        idle_ = false;
        if (!got || *got == 0) co_return -1;
        if (const int status = head_if_buffered(); status != not_buffered) co_return status;
    }
    // The rest of the head is still on its way (head_if_buffered saw no error in what is here).
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
    const std::size_t length = head->size();  // parse_request_head answers 431 past max_head_bytes
    if (const int status = parse_request_head(reader_.peek_text().substr(0, length), head_); status != 0) co_return status;
    keep_head(length);
    co_return 0;
}

void connection::keep_head(std::size_t length) {
    if (head_.framing == body_framing::none) {
        head_in_reader_ = length;  // parsed in place; consumed once answered
        return;
    }
    keep_head_copy(length);  // the body's reads will move the reader's bytes
    head_in_reader_ = 0;
}

void connection::keep_head_copy(std::size_t length) {
    head_copy_.assign(reader_.peek_text().substr(0, length));
    (void)parse_request_head(head_copy_, head_);
    reader_.consume(length);
}

int connection::head_if_buffered() {
    std::size_t length = 0;
    const int status = parse_request_prefix(reader_.peek_text(), head_, length);
    if (status == head_incomplete) return not_buffered;
    if (status == 0) keep_head(length);
    return status;
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
            if (r->k == routes::route::kind::plain) {
                // Here rather than in a coroutine of its own: most requests come this way, and
                // a frame per request is what the handler's own already costs.
                request req = make_request();
                std::optional<response> resp;
                try {
                    resp = co_await r->plain(req);
                } catch (const std::exception& e) {
                    handler_threw(e);
                }
                answer(resp ? &*resp : nullptr);
            } else if (r->k == routes::route::kind::sync) {
                answer_sync(*r);  // a plain function: its request and response stay off this frame
            } else if (r->k == routes::route::kind::stream) {
                again = co_await answer_stream(*r);
            } else {
                again = co_await answer_websocket(*r);
            }
        }
        reader_.consume(std::exchange(head_in_reader_, 0));
        answered_ = true;
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
    keep_alive_ = head_.keep_alive && !set_.draining;  // stopping: this response says close
    // A HEAD is answered as the GET would be, without the body.
    const std::string_view method = is_head_ ? std::string_view{"GET"} : head_.method;
    params_.clear();
    const routes::route* r = table_.paths.exact(method, head_.path);  // most requests: no params
    if (!r) r = route_with_params(method);
    if (!r) return nullptr;
    body_limit_ = r->max_body ? r->max_body : opts_.max_body;
    start_body();
    if (head_.framing == body_framing::length && head_.content_length > body_limit_) {
        queue_error(413);
        return nullptr;
    }
    return r;
}

const routes::route* connection::route_with_params(std::string_view method) {
    const auto found = table_.paths.match(method, head_.path);
    if (!found.handler) {
        if (found.status == 404 && table_.fallback && method == "GET") return &*table_.fallback;
        body_limit_ = opts_.max_body;
        start_body();  // what the answer below needs to know: is a body still coming?
        response resp = response::text(std::string{reason_phrase(found.status)} + "\n");
        resp.status = found.status;
        if (found.status == 405) resp.headers.emplace_back("Allow", table_.paths.allow(head_.path));
        if (!body_done_) keep_alive_ = false;  // its body is not read
        queue(resp);
        return nullptr;
    }
    for (std::size_t i = 0; i < found.params.count; ++i) {
        const auto& [name, raw] = found.params.items[i];
        std::string value;
        if (!percent_decode(raw, value)) {
            queue_error(400);
            return nullptr;
        }
        params_.emplace_back(name, std::move(value));
    }
    return found.handler;
}

void connection::handler_threw(const std::exception& e) const {
    log("http: handler for {} {} threw: {}", head_.method, head_.path, e.what());
}

request connection::make_request() noexcept {
    request req;
    req.conn_ = this;
    req.head_ = &head_;
    req.params_ = params_;
    return req;
}

void connection::answer_sync(const routes::route& r) {
    request req = make_request();
    bool threw = false;
    // The handler's response is built right here (returned as a prvalue, never moved: a move
    // of its strings costs what building them did). Only the handler's call is guarded:
    // answer() failing (out of memory) must not add a 500 after half a response.
    const response resp = [&]() -> response {
        try {
            return r.immediate(req);
        } catch (const std::exception& e) {
            handler_threw(e);
            threw = true;
            return {};
        }
    }();
    answer(threw ? nullptr : &resp);
}

void connection::answer(const response* resp) {
    reader_.consume(std::exchange(body_pending_, 0));
    if (body_failure_) {  // the body was too big or malformed: that is the answer
        queue_error(body_failure_);
    } else if (!resp) {  // the handler threw
        queue_error(500);
    } else {
        if (!body_done_) keep_alive_ = false;  // the handler left the body unread: only a close ends it
        queue(*resp);
    }
}

task<bool> connection::answer_stream(const routes::route& r) {
    request req = make_request();
    response_stream out{*this};
    bool threw = false;
    try {
        co_await r.streamed(req, out);
    } catch (const std::exception& e) {
        threw = true;
        handler_threw(e);
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
    // What follows the head may already be frames: the websocket reads on from this reader, so
    // the head's bytes move to head_copy_ first (the request's views must outlive the buffer).
    if (head_in_reader_ != 0) {
        keep_head_copy(head_in_reader_);
        head_in_reader_ = 0;
    }
    request req = make_request();
    stream_.set_idle_timeout({});
    ws::websocket socket{stream_, reader_, ws::role::server, {.max_message = r.max_message}};
    try {
        co_await r.upgraded(req, socket);
    } catch (const std::exception& e) {
        log("http: websocket handler for {} threw: {}", head_.path, e.what());
    }
    co_return false;  // the connection was the handler's: it ends with it
}

namespace {

task<> serve_in(tcp_stream conn, const routes& r, const server_options& opts, connection_set& set) {
    {
        connection c{conn, r, opts, set};
        co_await c.run();
    }
    co_await conn.close();
}

}  // namespace

task<> serve_connection(tcp_stream conn, const routes& r, const server_options& opts) {
    connection_set alone;  // no serve() to drain it: its keep-alive wait ends with the idle timeout
    co_await serve_in(std::move(conn), r, opts, alone);
}

task<> serve(tcp_listener listener, const routes& r, const server_options& opts) {
    // The connections are children of this task, so the routes and options they borrow (which
    // live in the caller's frame) outlive every one of them: serve ends after its last connection.
    connection_set live;  // declared first: it outlives the connections' task group
    task_group connections;
    accept_pacer pacer{"http accept"};  // out of fds: pauses, and says so once per interval
    for (;;) {
        auto accepted = co_await pacer.next(listener);
        if (!accepted) break;  // the core is stopping
        (void)accepted->set_nodelay(true);  // a response is a whole message: send it at once
        connections.spawn(serve_in(std::move(*accepted), r, opts, live));
    }
    live.drain();  // idle keep-alive connections end now, the others after their response
    co_await listener.close();
    co_await connections.join();
}

}  // namespace coring::http
