#pragma once
// The echo server as a library part, so tests and benchmarks run the very code coring-echo runs.
#include <coring/coring.hpp>
#include <coring/log.hpp>

#include "../common/listen.hpp"

namespace coring::apps {

struct echo_options {
    address listen = address::ipv4_loopback(7000);
    bool nodelay = true;  // answer each message at once (pipelined clients see no Nagle delay)
    bool announce = true; // log "listening on" (core 0); extra worker processes stay quiet
};

// One connection: echo everything until the peer closes, errors or the task is cancelled.
task<> echo_connection(tcp_stream conn, bool nodelay);

// run()'s main: serves this core's listener (bound in setup by `listeners`, on opts.listen)
// until the core stops.
task<> echo_server(echo_options opts, core_listeners& listeners);

// Binds now, serves in a task owned by the current core; returns the bound address (port 0
// becomes the real port). For tests.
result<address> start_echo_server(echo_options opts);

}  // namespace coring::apps
