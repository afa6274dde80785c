#include <coring/timer.hpp>
#include <coring/ws/handshake.hpp>
#include <coring/ws/websocket.hpp>

#include <algorithm>
#include <array>

namespace coring::ws {

namespace {

// A response head bigger than this is refused: a 101 needs a few hundred bytes.
constexpr std::size_t max_response_head = 8 * 1024;

std::span<const std::byte> bytes_of(std::string_view s) noexcept { return std::as_bytes(std::span{s.data(), s.size()}); }

}  // namespace

websocket::websocket(tcp_stream& stream, role side, options opts)
    : stream_{stream}, own_reader_{std::in_place, stream}, reader_{*own_reader_}, side_{side}, opts_{opts} {}

websocket::websocket(tcp_stream& stream, buffered_reader& reader, role side, options opts)
    : stream_{stream}, reader_{reader}, side_{side}, opts_{opts} {}

task<result<void>> websocket::handshake(std::string_view host, std::string_view target) {
    const std::string key = make_client_key();
    const std::string request = client_request(host, target, key);
    auto sent = co_await stream_.write_all(bytes_of(request));
    if (!sent) co_return sent.error();
    auto head = co_await reader_.read_until("\r\n\r\n", max_response_head);
    if (!head) co_return head.error();
    if (head->empty()) co_return std::errc::connection_reset;  // closed before answering
    const std::string_view text{reinterpret_cast<const char*>(head->data()), head->size()};
    handshake_failure_ = check_response(text, key);
    reader_.consume(head->size());  // what follows (frames the server sent at once) stays
    if (!handshake_failure_.empty()) co_return make_error_code(close_code::protocol_error);
    co_return result<void>{};
}

task<result<void>> websocket::send_frame(bool fin, opcode op, std::span<const std::byte> payload) {
    auto lock = co_await write_lock_.lock();
    if (!lock) co_return lock.error();
    // After a close frame nothing may follow (section 5.5.1), nor after the stream closed.
    if (close_sent_ || closed_) co_return closed_error();
    if (op == opcode::close) close_sent_ = true;
    std::array<std::byte, max_head_size> head;
    std::span<const std::byte> body = payload;
    std::size_t head_size;
    if (side_ == role::client) {
        const mask_key key = random_mask_key();
        head_size = write_head(head, fin, op, payload.size(), &key);
        masked_.assign(payload.begin(), payload.end());
        apply_mask(masked_, key);
        body = masked_;
    } else {
        head_size = write_head(head, fin, op, payload.size());
    }
    const std::array<std::span<const std::byte>, 2> pieces{std::span<const std::byte>{head.data(), head_size}, body};
    auto r = co_await stream_.write_all(pieces);
    co_return r;
}

task<result<void>> websocket::send_text(std::string_view text) {
    // Our own text must be valid too: the peer would close with 1007.
    if (!is_valid_utf8(text)) co_return make_error_code(close_code::invalid_payload);
    auto r = co_await send_frame(true, opcode::text, bytes_of(text));
    co_return r;
}

task<result<void>> websocket::send_binary(std::span<const std::byte> bytes) {
    auto r = co_await send_frame(true, opcode::binary, bytes);
    co_return r;
}

task<result<void>> websocket::send_fragment(opcode op, std::span<const std::byte> bytes, bool fin) {
    if (is_control(op)) co_return std::errc::invalid_argument;
    auto r = co_await send_frame(fin, op, bytes);
    co_return r;
}

task<result<void>> websocket::ping(std::span<const std::byte> payload) {
    if (payload.size() > max_control_payload) co_return std::errc::message_size;
    auto r = co_await send_frame(true, opcode::ping, payload);
    co_return r;
}

task<> websocket::close_stream() {
    closed_ = true;
    peer_closed_.set();
    co_await stream_.close();
}

task<std::error_code> websocket::fail(close_code code, std::string_view why) {
    if (!closed_) {
        close_code_ = code;
        if (!close_sent_ && code != close_code::abnormal) {
            std::array<std::byte, max_control_payload> payload;
            const std::size_t n = write_close(payload, code, why);
            // Bounded: a peer that does not read must not hold this connection open.
            auto sent = co_await with_timeout(opts_.close_timeout, send_frame(true, opcode::close, std::span{payload}.first(n)));
            (void)sent;  // the stream closes next either way
        }
        co_await close_stream();
    }
    co_return closed_error();
}

task<result<frame_head>> websocket::read_head() {
    while (true) {
        const head_parse p = parse_head(reader_.peek(), side_);
        if (p.status == parse_status::complete) {
            reader_.consume(p.head.head_size);
            co_return p.head;
        }
        if (p.status == parse_status::failed) {
            auto e = co_await fail(p.error, p.why);
            co_return e;
        }
        auto n = co_await reader_.fill();
        if (!n) co_return n.error();
        if (*n == 0) {
            auto e = co_await fail(close_code::abnormal, {});
            co_return e;
        }
    }
}

task<result<void>> websocket::read_payload(const frame_head& h, std::string& into, utf8_validator* text) {
    // Appended as the bytes come: a frame head's length is only a claim, so memory grows with
    // what arrived (14 bytes declaring 8 MiB must not pin 8 MiB). The first step reserves up
    // to 64 KiB, so most messages take one allocation.
    into.reserve(into.size() + static_cast<std::size_t>(std::min<std::uint64_t>(h.payload_size, 64 * 1024)));
    std::uint64_t done = 0;
    while (done < h.payload_size) {
        if (reader_.buffered() == 0) {
            auto n = co_await reader_.fill();
            if (!n) co_return n.error();
            if (*n == 0) {
                auto e = co_await fail(close_code::abnormal, {});
                co_return e;
            }
        }
        const auto avail = reader_.peek();
        const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(avail.size(), h.payload_size - done));
        const std::size_t at = into.size();
        into.append(reinterpret_cast<const char*>(avail.data()), take);
        reader_.consume(take);
        const auto piece = std::span{reinterpret_cast<std::byte*>(into.data()) + at, take};
        if (h.masked) apply_mask(piece, h.key, done);
        done += take;
        // Checked as it arrives, so bad text fails before the rest of a long message is read.
        if (text && !text->feed(piece)) {
            auto e = co_await fail(close_code::invalid_payload, "text is not valid UTF-8");
            co_return e;
        }
    }
    co_return result<void>{};
}

task<result<void>> websocket::on_control(const frame_head& h) {
    std::string payload;  // at most 125 bytes: within the small-string buffer or one allocation
    auto r = co_await read_payload(h, payload, nullptr);
    if (!r) co_return r;
    const auto bytes = bytes_of(payload);
    if (h.op == opcode::pong) {
        ++pongs_;
    } else if (h.op == opcode::ping) {
        // After our close we send nothing more; the peer's close will follow.
        if (!close_sent_) {
            auto sent = co_await send_frame(true, opcode::pong, bytes);
            if (!sent) co_return sent;
        }
    } else {  // close
        const close_parse c = parse_close(bytes);
        if (!c.ok) {
            auto e = co_await fail(c.error, "bad close frame");
            co_return e;
        }
        close_code_ = c.code;
        close_reason_.assign(c.reason);
        if (!close_sent_) {
            // Echo the code (section 5.5.1); a close without one is answered without one.
            std::array<std::byte, max_control_payload> echo;
            const std::size_t n = write_close(echo, c.code, {});
            auto sent = co_await with_timeout(opts_.close_timeout, send_frame(true, opcode::close, std::span{echo}.first(n)));
            (void)sent;  // the handshake is over either way
        }
        co_await close_stream();
        co_return closed_error();
    }
    co_return result<void>{};
}

task<result<message>> websocket::receive() {
    if (closed_) co_return closed_error();
    receiving_ = true;
    struct done_receiving {
        bool& flag;
        ~done_receiving() { flag = false; }
    } guard{receiving_};
    message m;
    utf8_validator text;
    std::size_t size = 0;
    while (true) {
        auto h = co_await read_head();
        if (!h) co_return h.error();
        opcode op;
        if (!fragments_.accept(*h, op)) {
            auto e = co_await fail(close_code::protocol_error, "continuation without a message, or a message inside one");
            co_return e;
        }
        if (is_control(op)) {
            auto r = co_await on_control(*h);
            if (!r) co_return r.error();
            continue;
        }
        if (h->payload_size > opts_.max_message - size) {
            auto e = co_await fail(close_code::message_too_big, "message too big");
            co_return e;
        }
        m.op = op;
        auto r = co_await read_payload(*h, m.payload, op == opcode::text ? &text : nullptr);
        if (!r) co_return r.error();
        size += static_cast<std::size_t>(h->payload_size);
        if (!h->fin) continue;
        if (op == opcode::text && !text.complete()) {
            auto e = co_await fail(close_code::invalid_payload, "text ends inside a code point");
            co_return e;
        }
        if (close_sent_) {  // close() is waiting for the peer's close: data is dropped meanwhile
            m.payload.clear();
            size = 0;
            text.reset();
            continue;
        }
        co_return m;
    }
}

task<result<void>> websocket::close(close_code code, std::string_view reason) {
    if (closed_) co_return result<void>{};
    if (!is_sendable(code)) co_return std::errc::invalid_argument;
    std::array<std::byte, max_control_payload> payload;
    const std::size_t n = write_close(payload, code, reason);
    auto sent = co_await with_timeout(opts_.close_timeout, send_frame(true, opcode::close, std::span{payload}.first(n)));
    if (!sent && !closed_) close_code_ = code;
    if (sent && !closed_) {
        if (receiving_) {
            // The running receive() reads the peer's close and closes the stream.
            auto seen = co_await with_timeout(opts_.close_timeout, peer_closed_.wait());
            (void)seen;
        } else {
            // Read (and drop) what the peer still sends until its close arrives.
            auto rest = co_await with_timeout(opts_.close_timeout, receive());
            (void)rest;
        }
    }
    if (!closed_) {
        close_code_ = code;
        co_await close_stream();
    }
    co_return sent;
}

}  // namespace coring::ws
