// The parts of static file serving that read what a client sent: pure, so fuzzed alone
// (tests/fuzz/fuzz_static.cpp).
#include <coring/http/static_files.hpp>

#include <coring/http/header.hpp>
#include <coring/http/router.hpp>

#include <algorithm>
#include <array>
#include <charconv>

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
        if (last == 0) return {byte_range::kind::unsatisfiable};
        if (size == 0) return {};  // RFC 9110 §14.1.1: satisfiable, by the whole (empty) file
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

bool etag_matches(std::string_view list, std::string_view etag) noexcept {
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

}  // namespace coring::http
