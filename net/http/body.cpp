// The request body as a handler reads it (whole, or in pieces; Content-Length or chunked, with
// 100-continue owed before the first read), and a response written piece by piece
// (response_stream: chunked, or as long as the handler said).
#include "connection.hpp"

#include <array>
#include <charconv>

namespace coring::http {

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
    // No chunks and no body where the status ends at the head; a 304's Content-Length, if
    // given, only says what the 200 would have had.
    const bool bodiless = ends_at_head(status);
    remaining_ = bodiless ? std::optional<std::uint64_t>{0} : content_length;
    // Without a length, HTTP/1.1 chunks the body; HTTP/1.0 has no chunks: the close ends it.
    // A HEAD response announces what the GET's would, and ends at its head either way.
    chunked_ = !bodiless && !content_length && c.head_.minor_version == 1;
    if (!bodiless && !content_length && !chunked_ && !c.is_head_) c.keep_alive_ = false;
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

}  // namespace coring::http
