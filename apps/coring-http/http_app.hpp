#pragma once
// coring-http's server as a library part, so the tests run the very code the binary runs.
#include <coring/coring.hpp>

#include "../common/listen.hpp"

#include <optional>
#include <string>

namespace coring::apps {

struct http_options {
    address listen = address::ipv4_loopback(8080);
    std::optional<std::string> root;  // static files served from here (GET/HEAD), when set
    bool announce = true;             // core 0 logs "http server listening on ..."
};

// run()'s main, one core's share: serves this core's listener (bound in setup by `listeners`,
// on opts.listen) until the core stops.
task<> http_server(http_options opts, core_listeners& listeners);

}  // namespace coring::apps
