#include <coring/http/client.hpp>

#include <coring/http/chunked.hpp>
#include <coring/http/header.hpp>
#include <coring/http/request.hpp>
#include <coring/http/response_parser.hpp>
#include <coring/reader.hpp>
#include <coring/tcp.hpp>

#include <charconv>

namespace coring::http {

std::string_view client_response::header(std::string_view name) const noexcept {
    for (const auto& [n, v] : headers)
        if (equals_ignore_case(n, name)) return v;
    return {};
}

struct client::state {
    explicit state(tcp_stream s, client_options o) : stream{std::move(s)}, opts{o} {}
    tcp_stream stream;
    buffered_reader reader{stream};
    client_options opts;
    std::string host;
    std::string out;
    bool open = true;
};

client::client(std::unique_ptr<state> s) noexcept : state_{std::move(s)} {}
client::client(client&&) noexcept = default;
client& client::operator=(client&&) noexcept = default;
client::~client() = default;

bool client::is_open() const noexcept { return state_ && state_->open; }

task<result<client>> client::connect(address server, client_options opts) {
    auto stream = co_await tcp_stream::connect(server, opts.timeout);
    if (!stream) co_return stream.error();
    (void)stream->set_nodelay(true);
    stream->set_idle_timeout(opts.timeout);
    auto s = std::make_unique<state>(std::move(*stream), opts);
    s->host = server.to_string();
    co_return client{std::move(s)};
}

task<> client::close() {
    if (!state_) co_return;
    state_->open = false;
    co_await state_->stream.close();
}

namespace {

// Reads the body `h` announces into out->body (bounded by max).
task<result<void>> read_body(buffered_reader& in, const response_head& h, std::size_t max, client_response* out) {
    if (h.framing == body_framing::length) {
        if (h.content_length > max) co_return std::errc::message_size;
        while (out->body.size() < h.content_length) {
            if (in.buffered() == 0) {
                auto more = co_await in.fill();
                if (!more) co_return more.error();
                if (*more == 0) co_return std::errc::bad_message;
            }
            const auto have = in.peek();
            const std::size_t n = std::min<std::uint64_t>(have.size(), h.content_length - out->body.size());
            out->body.append(reinterpret_cast<const char*>(have.data()), n);
            in.consume(n);
        }
    } else if (h.framing == body_framing::chunked) {
        chunked_decoder chunks{max};
        for (;;) {
            const auto step = chunks.next(in.peek());
            if (step.error) co_return step.error == 413 ? std::errc::message_size : std::errc::bad_message;
            out->body.append(reinterpret_cast<const char*>(step.data.data()), step.data.size());
            in.consume(step.consumed);
            if (step.done) break;
            if (step.consumed > 0) continue;
            auto more = co_await in.fill();
            if (!more) co_return more.error();
            if (*more == 0) co_return std::errc::bad_message;
        }
    } else if (h.framing == body_framing::until_close) {
        for (;;) {
            const auto have = in.peek();
            if (out->body.size() + have.size() > max) co_return std::errc::message_size;
            out->body.append(reinterpret_cast<const char*>(have.data()), have.size());
            in.consume(have.size());
            auto more = co_await in.fill();
            if (!more) co_return more.error();
            if (*more == 0) break;
        }
    }
    co_return result<void>{};
}

}  // namespace

task<result<client_response>> client::request(std::string_view method, std::string_view target, std::string_view body,
                                              std::span<const std::pair<std::string, std::string>> fields) {
    state& s = *state_;
    if (!s.open) co_return std::errc::not_connected;
    s.out.assign(method).append(" ").append(target).append(" HTTP/1.1\r\nHost: ").append(s.host).append("\r\n");
    for (const auto& [name, value] : fields) s.out.append(name).append(": ").append(value).append("\r\n");
    if (!body.empty() || method == "POST" || method == "PUT") {
        char digits[24];
        s.out.append("Content-Length: ").append(digits, std::to_chars(digits, digits + sizeof digits, body.size()).ptr).append("\r\n");
    }
    s.out.append("\r\n");
    const std::array pieces{std::as_bytes(std::span(s.out)), std::as_bytes(std::span(body))};
    auto sent = co_await s.stream.write_all(std::span<const std::span<const std::byte>>(pieces));
    if (!sent) {
        s.open = false;
        co_return sent.error();
    }
    // 1xx answers (100 Continue) come before the real one: skip them.
    for (;;) {
        auto head = co_await s.reader.read_until("\r\n\r\n", max_head_bytes);
        if (!head || head->empty()) {
            s.open = false;
            if (!head) co_return head.error();
            co_return std::errc::bad_message;  // closed before a response
        }
        const std::string_view text{reinterpret_cast<const char*>(head->data()), head->size()};
        response_head h;
        if (parse_response_head(text, h, method == "HEAD") != 0) {
            s.open = false;
            co_return std::errc::bad_message;
        }
        if (h.status < 200) {
            s.reader.consume(head->size());
            continue;
        }
        client_response r;
        r.status = h.status;
        r.reason.assign(h.reason);
        for (std::size_t i = 0; i < h.header_count; ++i) r.headers.emplace_back(h.headers[i].name, h.headers[i].value);
        const response_head framing = h;  // its views die with the consume below; the numbers stay
        s.reader.consume(head->size());
        auto read = co_await read_body(s.reader, framing, s.opts.max_body, &r);
        if (!read) {
            s.open = false;
            co_return read.error();
        }
        if (!framing.keep_alive || framing.framing == body_framing::until_close) s.open = false;
        co_return r;
    }
}

}  // namespace coring::http
