// Response heads and HTTP dates.
#include <coring/http/response.hpp>

#include <array>
#include <charconv>
#include <chrono>
#include <cstring>

#include <time.h>

#include "fields.hpp"

namespace coring::http {
namespace {

constexpr std::array<std::string_view, 7> day_names = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr std::array<std::string_view, 7> long_day_names = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                                            "Thursday", "Friday", "Saturday"};
constexpr std::array<std::string_view, 12> month_names = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
constexpr std::size_t date_length = 29;  // "Sun, 06 Nov 1994 08:49:37 GMT"

void put2(char* p, unsigned v) noexcept {
    p[0] = static_cast<char>('0' + v / 10 % 10);
    p[1] = static_cast<char>('0' + v % 10);
}

void format_date(std::time_t t, char* out) noexcept {
    using namespace std::chrono;
    const sys_seconds s{seconds{t}};
    const sys_days day = floor<days>(s);
    const year_month_day ymd{day};
    const hh_mm_ss<seconds> time{s - day};
    std::memcpy(out, day_names[weekday{day}.c_encoding()].data(), 3);
    std::memcpy(out + 3, ", ", 2);
    put2(out + 5, static_cast<unsigned>(ymd.day()));
    out[7] = ' ';
    std::memcpy(out + 8, month_names[static_cast<unsigned>(ymd.month()) - 1].data(), 3);
    out[11] = ' ';
    const auto y = static_cast<unsigned>(static_cast<int>(ymd.year()));
    put2(out + 12, y / 100);
    put2(out + 14, y);
    out[16] = ' ';
    put2(out + 17, static_cast<unsigned>(time.hours().count()));
    out[19] = ':';
    put2(out + 20, static_cast<unsigned>(time.minutes().count()));
    out[22] = ':';
    put2(out + 23, static_cast<unsigned>(time.seconds().count()));
    std::memcpy(out + 25, " GMT", 4);
}

// Reads exactly `n` digits at `s[pos]`; -1 if they are not all digits.
int digits(std::string_view s, std::size_t pos, std::size_t n) noexcept {
    if (pos + n > s.size()) return -1;
    int v = 0;
    for (std::size_t i = pos; i < pos + n; ++i) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

template <std::size_t N>
int index_of(const std::array<std::string_view, N>& names, std::string_view name) noexcept {
    for (std::size_t i = 0; i < N; ++i)
        if (names[i] == name) return static_cast<int>(i);
    return -1;
}

// "hh:mm:ss" at s[pos], into seconds of the day; -1 if malformed. 60 is a leap second.
int time_of_day(std::string_view s, std::size_t pos) noexcept {
    if (pos + 8 > s.size() || s[pos + 2] != ':' || s[pos + 5] != ':') return -1;
    const int h = digits(s, pos, 2), m = digits(s, pos + 3, 2), sec = digits(s, pos + 6, 2);
    if (h < 0 || h > 23 || m < 0 || m > 59 || sec < 0 || sec > 60) return -1;
    return h * 3600 + m * 60 + sec;
}

std::optional<std::time_t> to_time(int weekday, int year, int month, int day, int seconds) noexcept {
    using namespace std::chrono;
    if (weekday < 0 || month < 0 || year < 0 || day < 0 || seconds < 0) return std::nullopt;
    const year_month_day ymd{std::chrono::year{year}, std::chrono::month{static_cast<unsigned>(month + 1)},
                             std::chrono::day{static_cast<unsigned>(day)}};
    if (!ymd.ok()) return std::nullopt;
    const sys_days d{ymd};
    if (std::chrono::weekday{d}.c_encoding() != static_cast<unsigned>(weekday)) return std::nullopt;
    return static_cast<std::time_t>(d.time_since_epoch() / std::chrono::seconds{1}) + seconds;
}

// RFC 9110 §5.6.7: a two-digit year lands within 50 years of now, never more than 50 ahead.
int full_year(int two_digits) noexcept {
    using namespace std::chrono;
    const int now = static_cast<int>(year_month_day{floor<days>(system_clock::now())}.year());
    int y = now / 100 * 100 + two_digits;
    if (y > now + 50) y -= 100;
    else if (y <= now - 50) y += 100;
    return y;
}

}  // namespace

response response::text(std::string body, int status) {
    return {.status = status, .content_type = "text/plain", .body = std::move(body), .headers = {}};
}

response response::json(std::string body, int status) {
    return {.status = status, .content_type = "application/json", .body = std::move(body), .headers = {}};
}

std::string_view reason_phrase(int status) noexcept {
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "";
    }
}

namespace {

// The Date for now, and the second it names.
std::string_view date_now(std::time_t& second) noexcept {
    // Per thread, so cores never share the cache line; thread_local, so each core formats
    // at most once a second.
    thread_local std::time_t cached_second = -1;
    thread_local char cached[date_length];
    timespec now{};
    clock_gettime(CLOCK_REALTIME_COARSE, &now);
    if (now.tv_sec != cached_second) {
        format_date(now.tv_sec, cached);
        cached_second = now.tv_sec;
    }
    second = cached_second;
    return {cached, date_length};
}

// The start of a head: the status line, Server, Date and Content-Type, which a server repeats
// in most of its responses within a second.
void make_start(std::string& out, int status, std::string_view content_type, std::string_view date) {
    char number[24];
    out.append("HTTP/1.1 ");
    out.append(number, std::to_chars(number, number + sizeof(number), status).ptr);
    out.append(" ").append(reason_phrase(status)).append("\r\nServer: coring\r\nDate: ").append(date).append("\r\n");
    if (!content_type.empty()) out.append("Content-Type: ").append(content_type).append("\r\n");
}

}  // namespace

void write_head(std::string& out, int status, std::string_view content_type,
                std::optional<std::uint64_t> content_length, bool keep_alive,
                std::span<const std::pair<std::string, std::string>> extra, bool chunked) {
    // Most responses of a server within a second repeat their head. Per thread (so per core),
    // the last head made is kept whole, and the start it was made from (status line, Server,
    // Date, Content-Type) too, so that a new length or Connection costs only the tail. A key
    // is set only once what it names is complete: a throw midway leaves nothing half-made.
    thread_local struct {
        int status = 0;
        std::time_t second = -1;  // of the start's Date; -1: no start
        std::string content_type;
        std::string start;
        bool whole_valid = false;
        std::optional<std::uint64_t> content_length;
        bool keep_alive = false;
        bool chunked = false;
        std::string whole;        // start, then the framing and Connection fields, then the blank line
    } last;
    std::time_t second;
    const std::string_view date = date_now(second);
    if (last.second != second || last.status != status || last.content_type != content_type) {
        last.second = -1;
        last.whole_valid = false;
        last.status = status;
        last.content_type.assign(content_type);
        last.start.clear();
        make_start(last.start, status, content_type, date);
        last.second = second;
    }
    if (!last.whole_valid || last.content_length != content_length || last.keep_alive != keep_alive ||
        last.chunked != chunked) {
        last.whole_valid = false;
        last.whole = last.start;
        const bool never_length = ends_at_head(status) && status != 304;  // a 304 may repeat the 200's
        if (!never_length && content_length) {
            char number[24];
            last.whole.append("Content-Length: ");
            last.whole.append(number, std::to_chars(number, number + sizeof(number), *content_length).ptr);
            last.whole.append("\r\n");
        } else if (!ends_at_head(status) && chunked) {
            last.whole.append("Transfer-Encoding: chunked\r\n");
        }
        last.whole.append(keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n");
        last.content_length = content_length;
        last.keep_alive = keep_alive;
        last.chunked = chunked;
        last.whole_valid = true;
    }
    if (extra.empty()) {  // the common case: the cached head, blank line included, in one append
        out.append(last.whole);
        return;
    }
    out.append(last.whole, 0, last.whole.size() - 2);
    for (const auto& [name, value] : extra) {
        if (!detail::is_token(name) || value.find_first_of(std::string_view{"\r\n\0", 3}) != std::string::npos) continue;
        out.append(name).append(": ").append(value).append("\r\n");
    }
    out.append("\r\n");
}

std::string_view http_date_now() noexcept {
    std::time_t second;
    return date_now(second);
}

std::string format_http_date(std::time_t t) {
    std::string s(date_length, ' ');
    format_date(t, s.data());
    return s;
}

std::optional<std::time_t> parse_http_date(std::string_view s) noexcept {
    if (s.size() == date_length && s[3] == ',') {  // "Sun, 06 Nov 1994 08:49:37 GMT"
        if (s.substr(4, 1) != " " || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' || s.substr(25) != " GMT")
            return std::nullopt;
        return to_time(index_of(day_names, s.substr(0, 3)), digits(s, 12, 4), index_of(month_names, s.substr(8, 3)),
                       digits(s, 5, 2), time_of_day(s, 17));
    }
    if (s.size() == 24 && s[3] == ' ') {  // "Sun Nov  6 08:49:37 1994"
        if (s[7] != ' ' || s[10] != ' ' || s[19] != ' ') return std::nullopt;
        const int day = s[8] == ' ' ? digits(s, 9, 1) : digits(s, 8, 2);
        return to_time(index_of(day_names, s.substr(0, 3)), digits(s, 20, 4), index_of(month_names, s.substr(4, 3)),
                       day, time_of_day(s, 11));
    }
    // "Sunday, 06-Nov-94 08:49:37 GMT": the long day name, then 24 fixed bytes.
    const std::size_t comma = s.find(',');
    if (comma == std::string_view::npos || s.size() != comma + 24) return std::nullopt;
    const std::string_view d = s.substr(comma);
    if (d[1] != ' ' || d[4] != '-' || d[8] != '-' || d[11] != ' ' || d.substr(20) != " GMT") return std::nullopt;
    const int yy = digits(d, 9, 2);
    return to_time(index_of(long_day_names, s.substr(0, comma)), yy < 0 ? -1 : full_year(yy),
                   index_of(month_names, d.substr(5, 3)), digits(d, 2, 2), time_of_day(d, 12));
}

}  // namespace coring::http
