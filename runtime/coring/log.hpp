#pragma once
// log(): one line on stderr, "<program>: " + the message with each {} replaced by the next argument.
// For rare events (start-up, errors, shutdown), never the data path.
#include <cerrno>
#include <cstdio>
#include <sstream>
#include <string>
#include <string_view>

namespace coring {

namespace detail {
inline void format_into(std::ostringstream& out, std::string_view fmt) { out << fmt; }
template <class First, class... Rest>
void format_into(std::ostringstream& out, std::string_view fmt, const First& first, const Rest&... rest) {
    const auto hole = fmt.find("{}");
    if (hole == std::string_view::npos) {
        out << fmt;
        return;
    }
    out << fmt.substr(0, hole) << first;
    format_into(out, fmt.substr(hole + 2), rest...);
}
}  // namespace detail

template <class... Args>
std::string format(std::string_view fmt, const Args&... args) {
    std::ostringstream out;
    detail::format_into(out, fmt, args...);
    return std::move(out).str();
}

template <class... Args>
void log(std::string_view fmt, const Args&... args) {
    // glibc's argv[0] without its directory (<errno.h>, _GNU_SOURCE: always set by g++/clang++)
    const std::string line = std::string{::program_invocation_short_name} + ": " + format(fmt, args...) + "\n";
    std::fwrite(line.data(), 1, line.size(), stderr);  // one write: lines from cores do not interleave
}

}  // namespace coring
