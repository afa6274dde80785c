// fuzz-sources: net/http/router.cpp
// What a server does with a peer's path: route it, then %-decode what matched. The first
// byte picks the method. Invariants: 200/404/405 only, a handler exactly with 200, every
// parameter value inside the path, Allow non-empty exactly when some route has the path, and
// a decoded string never longer than its input nor holding a NUL.
#include <coring/http/router.hpp>

#include "fuzz_check.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace http = coring::http;

namespace {

// Literals, params and rest params, overlapping, and a route with the most params allowed.
constexpr std::array<std::array<const char*, 2>, 8> route_table = {{
    {"GET", "/"},
    {"GET", "/plaintext"},
    {"GET", "/users/{id}"},
    {"GET", "/users/me"},
    {"POST", "/users/{id}/posts/{post}"},
    {"GET", "/users/{id}/{*rest}"},
    {"GET", "/static/{*path}"},
    {"DELETE", "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}"},
}};

const http::router<int>& routes() {
    static const http::router<int> r = [] {
        http::router<int> built;
        for (std::size_t i = 0; i < route_table.size(); ++i)
            built.add(route_table[i][0], route_table[i][1], static_cast<int>(i));
        return built;
    }();
    return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    constexpr std::array<std::string_view, 5> methods = {"GET", "HEAD", "POST", "DELETE", "PUT"};
    const std::string_view method = methods[data[0] % methods.size()];
    const std::string_view path{reinterpret_cast<const char*>(data + 1), size - 1};

    const auto m = routes().match(method, path);
    FUZZ_CHECK(m.status == 200 || m.status == 404 || m.status == 405);
    FUZZ_CHECK((m.status == 200) == (m.handler != nullptr));
    FUZZ_CHECK(m.params.count <= http::max_route_params);
    if (m.status != 200) FUZZ_CHECK(m.params.count == 0);
    const std::string allow = routes().allow(path);
    FUZZ_CHECK(allow.empty() == (m.status == 404));

    std::string decoded;
    for (std::size_t i = 0; i < m.params.count; ++i) {
        FUZZ_CHECK(inside(m.params.items[i].value, path));
        if (http::percent_decode(m.params.items[i].value, decoded)) {
            FUZZ_CHECK(decoded.size() <= m.params.items[i].value.size());
            FUZZ_CHECK(decoded.find('\0') == std::string::npos);
        }
    }
    if (http::percent_decode(path, decoded) && path.find('%') == std::string_view::npos)
        FUZZ_CHECK(decoded == path);
    return 0;
}
