// fuzz-sources: net/http/static_paths.cpp net/http/router.cpp net/http/fields.cpp
// What static file serving reads from a client: the request path that names a file, a Range
// header, an If-None-Match list. Invariants: a file path is relative, has no empty, "." or ".."
// segment and no NUL or backslash (so it never names anything outside the root, whatever the
// kernel's own check); a range part lies inside the file; an If-None-Match of "*" matches.
//
// Input: bytes 0-7 are the file size, then three fields separated by '\n': path, Range,
// If-None-Match.
#include <coring/http/static_files.hpp>

#include "fuzz_check.hpp"

#include <cstdint>
#include <cstring>
#include <string_view>

namespace http = coring::http;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 8) return 0;
    std::uint64_t file_size;
    std::memcpy(&file_size, data, 8);
    file_size %= (std::uint64_t{1} << 40);  // up to 1 TiB: sizes the kernel has
    std::string_view rest{reinterpret_cast<const char*>(data) + 8, size - 8};
    const auto field = [&rest] {
        const std::size_t nl = rest.find('\n');
        const std::string_view f = rest.substr(0, nl);
        rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
        return f;
    };
    const std::string_view path = field(), range = field(), inm = field();

    if (const auto file = http::file_path_of(path)) {
        FUZZ_CHECK(!file->empty() && file->front() != '/');
        FUZZ_CHECK(file->find('\0') == std::string::npos && file->find('\\') == std::string::npos);
        std::string_view segs = *file;
        for (;;) {
            const std::size_t slash = segs.find('/');
            const std::string_view seg = segs.substr(0, slash);
            FUZZ_CHECK(!seg.empty() && seg != "." && seg != "..");
            if (slash == std::string_view::npos) break;
            segs.remove_prefix(slash + 1);
        }
        (void)http::content_type_of(*file);
    }

    const http::byte_range r = http::parse_range(range, file_size);
    if (r.k == http::byte_range::kind::part) FUZZ_CHECK(r.first <= r.last && r.last < file_size);
    if (r.k == http::byte_range::kind::unsatisfiable) FUZZ_CHECK(file_size == 0 || range.find('-') != std::string_view::npos);

    (void)http::etag_matches(inm, "\"1-2-3\"");
    FUZZ_CHECK(http::etag_matches("*", inm.empty() ? std::string_view{"\"x\""} : inm));
    return 0;
}
