#pragma once
// http::router: method + path to a handler, with {params}.
//
// Patterns are split at '/': a segment is a literal ("users"), a parameter ("{id}", matching
// one non-empty segment) or, last only, a rest parameter ("{*path}", matching what is left,
// possibly nothing, slashes included: static files use it). When several routes match, the one
// whose segments are more specific from the left wins (literal over {param} over {*rest}), then
// the one added first. HEAD falls back to a GET route (RFC 9110 §9.3.2: a server answering GET
// answers HEAD; the server drops the body). A path some route matches with another method
// gives 405, and allow() lists the methods to put in Allow; no route at all gives 404.
//
// Matching compares raw segments: the path is still %-encoded, and so are the values of
// params; decoding them (percent_decode) is the caller's, after matching, so an encoded '/'
// can never change which route matches.
//
// Why a template over the handler type instead of std::function inside: the router stores
// whatever the server calls (a function pointer costs nothing, a std::function only when a
// handler needs state) and stays unaware of coroutines. Everything but storing handlers is
// the non-template detail::route_table, compiled once in router.cpp.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace coring::http {

// Parameters one route may have; add() refuses a pattern with more (a bound on the result
// array every match fills on the caller's stack).
inline constexpr std::size_t max_route_params = 8;

struct route_param {
    std::string_view name, value;  // name: the router's; value: inside the matched path
};

struct route_params {
    std::array<route_param, max_route_params> items;
    std::size_t count = 0;

    // The value of parameter `name`; empty when the route has none by that name.
    std::string_view get(std::string_view name) const noexcept {
        for (std::size_t i = 0; i < count; ++i)
            if (items[i].name == name) return items[i].value;
        return {};
    }
};

// Appends the %-decoding of `in` to a cleared `out`. False for an escape that is not two hex
// digits and for a NUL, raw or as %00 (no file name or identifier holds one), so what it
// decodes never holds NUL. '+' stays '+' (that is forms, not
// paths), and "%2F" becomes '/': a caller that maps a segment to a file must look for it.
bool percent_decode(std::string_view in, std::string& out);

namespace detail {

class route_table {
public:
    struct found {
        std::size_t index = 0;  // of the route's handler, in the order add() was called
        int status = 404;       // 200, 404 or 405
    };

    // Throws std::invalid_argument for a pattern that does not start with '/', has a
    // malformed or empty {name}, a {*rest} before the end, or more than max_route_params.
    void add(std::string_view method, std::string_view pattern, std::size_t index);
    // Parameter names point into the table: valid until the next add().
    found match(std::string_view method, std::string_view path, route_params& params) const noexcept;
    // The index of the route without parameters for exactly this method and path, or npos:
    // what match() finds first (such a route is the most specific for its path), without
    // the params to fill. No HEAD-to-GET fallback here.
    static constexpr std::size_t npos = static_cast<std::size_t>(-1);
    std::size_t exact(std::string_view method, std::string_view path) const noexcept;
    std::string allow(std::string_view path) const;

private:
    enum class segment_kind : std::uint8_t { literal, param, rest };  // in order of preference
    struct segment {
        segment_kind kind;
        std::string text;  // the literal, or the parameter's name
    };
    struct route {
        std::string method;
        std::vector<segment> segments;
        std::size_t index;
    };
    static bool matches(const route& r, std::string_view path, route_params& params) noexcept;
    static bool more_specific(const route& a, const route& b) noexcept;
    const route* find_exact(std::string_view method, std::string_view path) const noexcept;
    const route* best(std::string_view method, std::string_view path, route_params& params) const noexcept;

    std::vector<route> routes_;
    // The routes without parameters, by their whole pattern: such a route is the most specific
    // match for its path, so a lookup here settles most requests with one string compare each.
    struct exact_route {
        std::string path;
        std::size_t position;  // in routes_
    };
    std::vector<exact_route> exact_;
};

}  // namespace detail

template <class Handler>
class router {
public:
    struct match_result {
        const Handler* handler = nullptr;  // set when status is 200
        route_params params;
        int status = 404;  // 200, 404, or 405 (send allow(path) as Allow)
    };

    router& add(std::string_view method, std::string_view pattern, Handler handler) {
        handlers_.push_back(std::move(handler));
        try {
            table_.add(method, pattern, handlers_.size() - 1);
        } catch (...) {
            handlers_.pop_back();
            throw;
        }
        return *this;
    }

    match_result match(std::string_view method, std::string_view path) const noexcept {
        match_result m;
        const auto found = table_.match(method, path, m.params);
        m.status = found.status;
        if (found.status == 200) m.handler = &handlers_[found.index];
        return m;
    }

    // The handler of a route without parameters for exactly this method and path, or null:
    // most requests of a server end here, with no match_result to fill (route_table::exact).
    const Handler* exact(std::string_view method, std::string_view path) const noexcept {
        const std::size_t i = table_.exact(method, path);
        return i == detail::route_table::npos ? nullptr : &handlers_[i];
    }
    // The methods routes have for `path`, as Allow wants them ("GET, HEAD, POST").
    std::string allow(std::string_view path) const { return table_.allow(path); }

private:
    detail::route_table table_;
    std::vector<Handler> handlers_;
};

}  // namespace coring::http
