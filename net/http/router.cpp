// route_table: patterns split once at add(), paths walked segment by segment at match().
#include <coring/http/router.hpp>

#include "fields.hpp"

#include <algorithm>
#include <stdexcept>

namespace coring::http {

bool percent_decode(std::string_view in, std::string& out) {
    out.clear();
    out.reserve(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] == '\0') return false;  // what a request target cannot hold, if called on other text
        if (in[i] != '%') {
            out.push_back(in[i]);
            continue;
        }
        if (in.size() - i < 3) return false;
        const int hi = detail::hex_value(in[i + 1]), lo = detail::hex_value(in[i + 2]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) return false;
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
    }
    return true;
}

namespace detail {

void route_table::add(std::string_view method, std::string_view pattern, std::size_t index) {
    const auto bad = [&](const char* why) {
        throw std::invalid_argument("http route " + std::string(method) + " " + std::string(pattern) + ": " + why);
    };
    if (pattern.empty() || pattern.front() != '/') bad("a pattern starts with '/'");
    route r{.method = std::string(method), .segments = {}, .index = index};
    std::size_t params = 0;
    std::string_view rest = pattern.substr(1);
    while (true) {
        const std::size_t slash = rest.find('/');
        const std::string_view text = rest.substr(0, slash);
        if (!r.segments.empty() && r.segments.back().kind == segment_kind::rest) bad("{*name} must be last");
        if (text.find_first_of("{}") == std::string_view::npos) {
            r.segments.push_back({segment_kind::literal, std::string(text)});
        } else {
            if (text.size() < 3 || text.front() != '{' || text.back() != '}') bad("a parameter is a whole segment");
            std::string_view name = text.substr(1, text.size() - 2);
            const bool is_rest = name.front() == '*';
            if (is_rest) name.remove_prefix(1);
            if (name.empty() || name.find_first_of("{}*") != std::string_view::npos) bad("malformed {name}");
            if (++params > max_route_params) bad("more parameters than max_route_params");
            r.segments.push_back({is_rest ? segment_kind::rest : segment_kind::param, std::string(name)});
        }
        if (slash == std::string_view::npos) break;
        rest.remove_prefix(slash + 1);
    }
    const bool all_literal = std::all_of(r.segments.begin(), r.segments.end(),
                                         [](const segment& seg) { return seg.kind == segment_kind::literal; });
    if (all_literal) exact_.push_back({std::string(pattern), routes_.size()});
    routes_.push_back(std::move(r));
}

bool route_table::matches(const route& r, std::string_view path, route_params& params) noexcept {
    params.count = 0;
    if (path.empty() || path.front() != '/') return false;
    std::string_view rest = path.substr(1);
    for (std::size_t i = 0; i < r.segments.size(); ++i) {
        const segment& s = r.segments[i];
        if (s.kind == segment_kind::rest) {
            params.items[params.count++] = {s.text, rest};
            return true;
        }
        const std::size_t slash = rest.find('/');
        const std::string_view text = rest.substr(0, slash);
        if (s.kind == segment_kind::literal ? text != s.text : text.empty()) return false;
        if (s.kind == segment_kind::param) params.items[params.count++] = {s.text, text};
        const bool last = i + 1 == r.segments.size();
        // Where the path ends, the pattern must too ("/static" is no match for
        // "/static/{*path}"; "/static/" is, with an empty path).
        if (slash == std::string_view::npos || last) return slash == std::string_view::npos && last;
        rest.remove_prefix(slash + 1);
    }
    return false;
}

bool route_table::more_specific(const route& a, const route& b) noexcept {
    const std::size_t n = std::min(a.segments.size(), b.segments.size());
    for (std::size_t i = 0; i < n; ++i)
        if (a.segments[i].kind != b.segments[i].kind) return a.segments[i].kind < b.segments[i].kind;
    return false;  // equally specific: the earlier route stays
}

const route_table::route* route_table::find_exact(std::string_view method, std::string_view path) const noexcept {
    for (const exact_route& e : exact_)
        if (e.path == path && routes_[e.position].method == method) return &routes_[e.position];
    return nullptr;
}

std::size_t route_table::exact(std::string_view method, std::string_view path) const noexcept {
    const route* r = find_exact(method, path);
    return r ? r->index : npos;
}

const route_table::route* route_table::best(std::string_view method, std::string_view path,
                                            route_params& params) const noexcept {
    if (const route* r = find_exact(method, path)) {
        params.count = 0;
        return r;
    }
    const route* chosen = nullptr;
    route_params scratch;
    for (const route& r : routes_) {
        if (r.method != method || !matches(r, path, scratch)) continue;
        if (chosen == nullptr || more_specific(r, *chosen)) {
            chosen = &r;
            params = scratch;
        }
    }
    return chosen;
}

route_table::found route_table::match(std::string_view method, std::string_view path,
                                      route_params& params) const noexcept {
    const route* r = best(method, path, params);
    if (r == nullptr && method == "HEAD") r = best("GET", path, params);
    if (r != nullptr) return {r->index, 200};
    params.count = 0;
    route_params scratch;
    for (const route& other : routes_)
        if (matches(other, path, scratch)) return {0, 405};
    return {0, 404};
}

std::string route_table::allow(std::string_view path) const {
    std::vector<std::string_view> methods;
    route_params scratch;
    for (const route& r : routes_) {
        if (!matches(r, path, scratch)) continue;
        methods.push_back(r.method);
        if (r.method == "GET") methods.push_back("HEAD");
    }
    std::sort(methods.begin(), methods.end());
    methods.erase(std::unique(methods.begin(), methods.end()), methods.end());
    std::string out;
    for (const std::string_view m : methods) out.append(out.empty() ? "" : ", ").append(m);
    return out;
}

}  // namespace detail
}  // namespace coring::http
