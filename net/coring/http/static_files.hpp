#pragma once
// Static files for the HTTP server: GET/HEAD of the files under a root directory, with
// Content-Type by extension, Last-Modified / If-Modified-Since, ETag / If-None-Match, and one
// byte range (Range: bytes=...). Nothing outside the root is ever served: the path is decoded
// and checked here (no "..", no NUL), and the kernel resolves it beneath the root (openat2
// RESOLVE_BENEATH), so a symlink pointing out of it fails too; every refusal is a 404.
//
// The file is read through the runtime's file ops (io_uring READ; on epoll, page-cache hits
// inline and the rest on the file pool: docs/ARCHITECTURE.md, "Files"), in pieces of
// read_chunk bytes, each sent before the next is read: a download holds one piece of memory.
#include <coring/file.hpp>
#include <coring/http/server.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace coring::http {

// The parsers of what a client sends, pure so they are fuzzed alone.

// The path beneath the root that an (encoded) request path names: decoded, without its leading
// '/', "index.html" for a directory path ("/" or ending in '/'). None for what may not be
// served: a bad %-escape or %00, a ".." or "." segment (encoded or not), an empty segment
// ("//"), a backslash, or a path that does not start with '/'.
std::optional<std::string> file_path_of(std::string_view encoded_path);

// A Range header against a file of `size` bytes. Only one range of bytes is served: several
// ranges, another unit, or a malformed header are ignored (the whole file, as RFC 9110 §14.2
// allows); a range that starts past the end is unsatisfiable (416).
struct byte_range {
    enum class kind : std::uint8_t { whole, part, unsatisfiable };
    kind k = kind::whole;
    std::uint64_t first = 0;  // part: the first and last byte, inclusive
    std::uint64_t last = 0;
};
byte_range parse_range(std::string_view header, std::uint64_t size) noexcept;

// If-None-Match against a file's entity tag: "*" or a list of tags, compared weakly (a W/
// prefix is ignored, RFC 9110 §13.1.2).
bool etag_matches(std::string_view if_none_match, std::string_view etag) noexcept;

// Content-Type by the file name's extension (case-insensitive); application/octet-stream else.
std::string_view content_type_of(std::string_view file_name) noexcept;

class static_files {
public:
    static constexpr std::size_t read_chunk = 32 * 1024;

    // Opens the root directory on the current core.
    [[nodiscard]] static task<result<static_files>> open(std::string root);

    // A fallback handler for routes (it borrows this object, which must outlive the server).
    stream_handler handler() const;
    [[nodiscard]] task<> serve(request& req, response_stream& out) const;
    [[nodiscard]] task<> close() { return root_.close(); }

private:
    explicit static_files(directory root) noexcept : root_{std::move(root)} {}
    directory root_;
};

}  // namespace coring::http
