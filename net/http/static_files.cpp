#include <coring/http/static_files.hpp>

#include <coring/http/header.hpp>
#include <coring/http/response.hpp>
#include <coring/http/router.hpp>

#include <array>
#include <charconv>
#include <memory>
#include <utility>
#include <vector>

namespace coring::http {

std::optional<std::string> file_path_of(std::string_view encoded_path) {
    if (encoded_path.empty() || encoded_path.front() != '/') return std::nullopt;
    std::string path;
    if (!percent_decode(encoded_path, path)) return std::nullopt;
    if (path.find('\\') != std::string::npos || path.find('\0') != std::string::npos) return std::nullopt;
    // Every segment between the slashes: none may be empty, "." or "..".
    for (std::size_t at = 1; at < path.size();) {
        const std::size_t end = std::min(path.find('/', at), path.size());
        const std::string_view seg = std::string_view{path}.substr(at, end - at);
        if (seg.empty() || seg == "." || seg == "..") return std::nullopt;
        at = end + 1;
    }
    if (path.back() == '/') path += "index.html";
    return path.substr(1);
}

namespace {

// Digits only, no sign, no overflow.
bool parse_u64(std::string_view s, std::uint64_t& out) noexcept {
    if (s.empty()) return false;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc{} && end == s.data() + s.size();
}

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

}  // namespace

byte_range parse_range(std::string_view header, std::uint64_t size) noexcept {
    constexpr std::string_view unit = "bytes=";
    header = trim(header);
    if (header.size() <= unit.size() || !equals_ignore_case(header.substr(0, unit.size()), unit)) return {};
    const std::string_view spec = trim(header.substr(unit.size()));
    if (spec.find(',') != std::string_view::npos) return {};  // several ranges: the whole file
    const std::size_t dash = spec.find('-');
    if (dash == std::string_view::npos) return {};
    const std::string_view a = trim(spec.substr(0, dash)), b = trim(spec.substr(dash + 1));
    std::uint64_t first = 0, last = 0;
    if (a.empty()) {  // "-N": the last N bytes
        if (!parse_u64(b, last)) return {};
        if (last == 0 || size == 0) return {byte_range::kind::unsatisfiable};
        return {byte_range::kind::part, last >= size ? 0 : size - last, size - 1};
    }
    if (!parse_u64(a, first)) return {};
    if (b.empty()) last = size ? size - 1 : 0;  // "N-": from N to the end
    else if (!parse_u64(b, last) || last < first) return {};
    if (first >= size) return {byte_range::kind::unsatisfiable};
    return {byte_range::kind::part, first, last >= size ? size - 1 : last};
}

std::string_view content_type_of(std::string_view name) noexcept {
    static constexpr std::array<std::pair<std::string_view, std::string_view>, 24> types{{
        {"html", "text/html; charset=utf-8"}, {"htm", "text/html; charset=utf-8"},
        {"css", "text/css; charset=utf-8"}, {"js", "text/javascript; charset=utf-8"},
        {"mjs", "text/javascript; charset=utf-8"}, {"json", "application/json"},
        {"txt", "text/plain; charset=utf-8"}, {"md", "text/markdown; charset=utf-8"},
        {"xml", "application/xml"}, {"svg", "image/svg+xml"}, {"png", "image/png"},
        {"jpg", "image/jpeg"}, {"jpeg", "image/jpeg"}, {"gif", "image/gif"}, {"webp", "image/webp"},
        {"ico", "image/x-icon"}, {"wasm", "application/wasm"}, {"pdf", "application/pdf"},
        {"woff", "font/woff"}, {"woff2", "font/woff2"}, {"mp4", "video/mp4"}, {"webm", "video/webm"},
        {"mp3", "audio/mpeg"}, {"csv", "text/csv; charset=utf-8"},
    }};
    const std::size_t dot = name.rfind('.');
    const std::size_t slash = name.rfind('/');
    if (dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash)) return "application/octet-stream";
    const std::string_view ext = name.substr(dot + 1);
    for (const auto& [e, type] : types)
        if (equals_ignore_case(e, ext)) return type;
    return "application/octet-stream";
}

task<result<static_files>> static_files::open(std::string root) {
    auto dir = co_await directory::open(root);
    if (!dir) co_return dir.error();
    co_return static_files{std::move(*dir)};
}

stream_handler static_files::handler() const {
    return [this](request& req, response_stream& out) { return serve(req, out); };
}

namespace {

// A strong validator from what changes when the file does: inode, size, modification time.
std::string etag_of(const file_status& st) {
    std::string tag = "\"";
    char hex[17];
    for (const std::uint64_t v : {st.inode, st.size, static_cast<std::uint64_t>(st.mtime_ns)}) {
        if (tag.size() > 1) tag += '-';
        tag.append(hex, std::to_chars(hex, hex + sizeof hex, v, 16).ptr);
    }
    return tag + '"';
}

// If-None-Match: "*" or a list of entity tags; weak comparison (RFC 9110 §13.1.2).
bool none_match(std::string_view list, std::string_view etag) noexcept {
    if (trim(list) == "*") return true;
    while (!list.empty()) {
        const std::size_t comma = list.find(',');
        std::string_view tag = trim(list.substr(0, comma));
        if (tag.starts_with("W/")) tag.remove_prefix(2);
        if (tag == etag) return true;
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
    }
    return false;
}

}  // namespace

namespace {
task<> not_found(response_stream& out) {
    auto started = co_await out.start(404, "text/plain; charset=utf-8", 10);
    if (started) (void)co_await out.write("Not Found\n");
}
}  // namespace

task<> static_files::serve(request& req, response_stream& out) const {
    auto path = file_path_of(req.path());
    if (!path) {
        co_await not_found(out);
        co_return;
    }
    auto f = co_await root_.open_file(*path);
    if (!f) {  // missing, outside the root (EXDEV), a magic link (ELOOP), no permission: all 404
        co_await not_found(out);
        co_return;
    }
    auto st = co_await f->stat();
    if (!st || !st->is_regular()) {
        co_await f->close();
        co_await not_found(out);
        co_return;
    }
    const std::string etag = etag_of(*st);
    const std::time_t mtime = static_cast<std::time_t>(st->mtime_ns / 1'000'000'000);
    std::vector<std::pair<std::string, std::string>> fields{
        {"ETag", etag}, {"Last-Modified", format_http_date(mtime)}, {"Accept-Ranges", "bytes"}};
    // Not modified: If-None-Match decides when present, else If-Modified-Since (RFC 9110 §13.2.2).
    bool unchanged = false;
    if (const auto inm = req.header("If-None-Match"); !inm.empty()) {
        unchanged = none_match(inm, etag);
    } else if (const auto ims = parse_http_date(req.header("If-Modified-Since"))) {
        unchanged = mtime <= *ims;
    }
    if (unchanged) {
        co_await f->close();
        (void)co_await out.start(304, {}, 0, fields);
        co_return;
    }
    byte_range range;
    if (const auto r = req.header("Range"); !r.empty()) {
        // If-Range: the range only while the client's copy is this one; else the whole file.
        const auto if_range = req.header("If-Range");
        if (if_range.empty() || if_range == etag) range = parse_range(r, st->size);
    }
    if (range.k == byte_range::kind::unsatisfiable) {
        co_await f->close();
        fields.emplace_back("Content-Range", format("bytes */{}", st->size));
        auto started = co_await out.start(416, "text/plain; charset=utf-8", 22, fields);
        if (started) (void)co_await out.write("Range Not Satisfiable\n");
        co_return;
    }
    std::uint64_t at = 0, left = st->size;
    int status = 200;
    if (range.k == byte_range::kind::part) {
        status = 206;
        at = range.first;
        left = range.last - range.first + 1;
        fields.emplace_back("Content-Range", format("bytes {}-{}/{}", range.first, range.last, st->size));
    }
    auto started = co_await out.start(status, content_type_of(*path), left, fields);
    if (started && req.method() != "HEAD") {
        auto chunk = std::make_unique_for_overwrite<std::byte[]>(read_chunk);
        while (left > 0) {
            const std::size_t want = left < read_chunk ? static_cast<std::size_t>(left) : read_chunk;
            auto n = co_await f->read_at(at, std::span(chunk.get(), want));
            if (!n || *n == 0) break;  // an I/O error, or the file shrank: finish() then closes the connection
            auto sent = co_await out.write(std::span<const std::byte>(chunk.get(), *n));
            if (!sent) break;
            at += *n;
            left -= *n;
        }
    }
    co_await f->close();
}

}  // namespace coring::http
