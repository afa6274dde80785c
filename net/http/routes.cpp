// http::routes: the table of handlers a server answers from (server.hpp).
#include "connection.hpp"

namespace coring::http {

routes::routes() : table_{std::make_unique<table>()} {}
routes::~routes() = default;
routes::routes(routes&&) noexcept = default;
routes& routes::operator=(routes&&) noexcept = default;

routes& routes::put(std::string_view method, std::string_view pattern, route r) {
    table_->paths.add(method, pattern, std::move(r));
    return *this;
}

routes& routes::add(std::string_view method, std::string_view pattern, handler h, route_options o) {
    route r;
    r.plain = std::move(h);
    r.max_body = o.max_body;
    return put(method, pattern, std::move(r));
}

routes& routes::add(std::string_view method, std::string_view pattern, sync_handler h, route_options o) {
    route r;
    r.k = route::kind::sync;
    r.immediate = std::move(h);
    r.max_body = o.max_body;
    return put(method, pattern, std::move(r));
}

routes& routes::stream(std::string_view method, std::string_view pattern, stream_handler h, route_options o) {
    route r;
    r.k = route::kind::stream;
    r.streamed = std::move(h);
    r.max_body = o.max_body;
    return put(method, pattern, std::move(r));
}

routes& routes::websocket(std::string_view pattern, websocket_handler h, std::size_t max_message) {
    route r;
    r.k = route::kind::websocket;
    r.upgraded = std::move(h);
    r.max_message = max_message;
    return put("GET", pattern, std::move(r));
}

routes& routes::fallback(stream_handler h) {
    route r;
    r.k = route::kind::stream;
    r.streamed = std::move(h);
    table_->fallback = std::move(r);
    return *this;
}

}  // namespace coring::http
