#pragma once
// Responses: what a handler returns, and the head a server writes in front of a body.
#include <cstdint>
#include <ctime>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace coring::http {

// A whole response, built by a handler: the server writes its head (write_head) and body.
struct response {
    int status = 200;
    std::string content_type;  // empty: no Content-Type field
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;  // extra fields, written in order

    static response text(std::string body, int status = 200);  // text/plain
    static response json(std::string body, int status = 200);  // application/json
};

// 1xx, 204 and 304 end at their head: never a body, whatever the fields say (RFC 9110 §6.4.1,
// RFC 9112 §6.3 item 1). A 304 may still repeat the 200's Content-Length; the others carry none.
constexpr bool ends_at_head(int status) noexcept { return status < 200 || status == 204 || status == 304; }

// The reason phrase RFC 9110 §15 gives a status; "" for one it does not name (a client must
// not rely on the phrase, and an empty one is valid).
std::string_view reason_phrase(int status) noexcept;

// Appends a complete response head to `out`: the status line, Server: coring, Date,
// Content-Type (unless empty), the framing, Connection, the extra fields, the blank line.
// Framing: `content_length`, or Transfer-Encoding: chunked when none and `chunked` (the caller
// then writes chunks), or neither (an HTTP/1.0 client, which cannot read chunks: the body runs
// to the close).
// 1xx and 204 get neither (RFC 9110 §8.6); a 304 gets Content-Length only when one is given.
// Connection says keep-alive or close every time: a 1.0 client keeps a connection only when
// told, a 1.1 client closes when told. An extra field whose name is not a token or whose value
// holds CR, LF or NUL is dropped, so data that reached a header cannot split the response.
void write_head(std::string& out, int status, std::string_view content_type,
                std::optional<std::uint64_t> content_length, bool keep_alive,
                std::span<const std::pair<std::string, std::string>> extra = {}, bool chunked = true);

// The current time as an IMF-fixdate, for Date. Cached per thread and formatted again only
// when the second changes; the clock read is CLOCK_REALTIME_COARSE (a vDSO read of the time
// at the last tick, no TSC read: a Date is whole seconds and may be up to a tick late).
// The view stays valid on this thread until the next call.
std::string_view http_date_now() noexcept;

// IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT" (RFC 9110 §5.6.7), for Date and Last-Modified.
std::string format_http_date(std::time_t t);

// Any of the three forms RFC 9110 §5.6.7 tells a recipient to accept: IMF-fixdate, the
// obsolete RFC 850 form ("Sunday, 06-Nov-94 08:49:37 GMT", a two-digit year more than 50
// years ahead is taken as the past century's) and asctime ("Sun Nov  6 08:49:37 1994").
// nullopt for anything else, including an impossible date or a weekday that does not match.
std::optional<std::time_t> parse_http_date(std::string_view text) noexcept;

}  // namespace coring::http
