#pragma once
// A small HTTP/1.1 client: one keep-alive connection, one request at a time, the whole response
// read into memory (bounded by max_body). For tests, tools and talking to a local service; it
// reads responses with the same parsers the server's tests and coring-load use.
//
//   auto c = co_await http::client::connect(address::parse("127.0.0.1:8080").value());
//   auto r = co_await c->get("/plaintext");          // r->status, r->body, r->header("Date")
//   co_await c->close();
#include <coring/address.hpp>
#include <coring/result.hpp>
#include <coring/task.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace coring::http {

struct client_response {
    int status = 0;
    std::string reason;
    std::vector<std::pair<std::string, std::string>> headers;  // as received, in order
    std::string body;                                           // de-chunked
    // The first field of that name (case-insensitive); empty when there is none.
    std::string_view header(std::string_view name) const noexcept;
};

struct client_options {
    std::chrono::milliseconds timeout{10'000};  // connect, and each read or send that makes no progress
    std::size_t max_body = 64 << 20;            // a longer response body fails with message_size
};

class client {
public:
    [[nodiscard]] static task<result<client>> connect(address server, client_options opts = {});
    client(client&&) noexcept;
    client& operator=(client&&) noexcept;
    ~client();  // closes without waiting; prefer co_await close()

    // Sends one request (Host and Content-Length added; the extra fields as given) and reads its
    // response. Errors: the connection's (reset, timed_out), bad_message for a response that is
    // not HTTP/1.x or ends early, message_size past max_body, not_connected once the server
    // closed the connection (it said Connection: close, or its body ran to the close).
    [[nodiscard]] task<result<client_response>> request(std::string_view method, std::string_view target,
                                                        std::string_view body = {},
                                                        std::span<const std::pair<std::string, std::string>> fields = {});
    [[nodiscard]] task<result<client_response>> get(std::string_view target) { return request("GET", target); }
    [[nodiscard]] task<result<client_response>> post(std::string_view target, std::string_view body) {
        return request("POST", target, body);
    }
    // False once the server closed the connection or a request failed.
    bool is_open() const noexcept;
    [[nodiscard]] task<> close();

private:
    struct state;
    explicit client(std::unique_ptr<state> s) noexcept;
    std::unique_ptr<state> state_;  // on the heap: its reader points at its stream
};

}  // namespace coring::http
