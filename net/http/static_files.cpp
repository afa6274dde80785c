#include <coring/http/static_files.hpp>

#include <coring/http/response.hpp>

#include <charconv>
#include <memory>
#include <utility>
#include <vector>

namespace coring::http {

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
        unchanged = etag_matches(inm, etag);
    } else if (const auto ims = parse_http_date(req.header("If-Modified-Since"))) {
        unchanged = mtime <= *ims;
    }
    if (unchanged) {
        co_await f->close();
        (void)co_await out.start(304, {}, std::nullopt, fields);  // no Content-Length: RFC 9110 §15.4.5
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
