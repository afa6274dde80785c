// fuzz-sources: net/http/response.cpp net/http/fields.cpp
// parse_http_date on arbitrary bytes (If-Modified-Since comes from the peer). A date it
// accepts, formatted as an IMF-fixdate, must parse back to the same time.
#include <coring/http/response.hpp>

#include "fuzz_check.hpp"

#include <cstddef>
#include <cstdint>

namespace http = coring::http;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input{reinterpret_cast<const char*>(data), size};
    const auto t = http::parse_http_date(input);
    if (!t) return 0;
    const std::string formatted = http::format_http_date(*t);
    FUZZ_CHECK(formatted.size() == 29);
    FUZZ_CHECK(http::parse_http_date(formatted) == t);
    return 0;
}
