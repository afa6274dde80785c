#include "pubsub_app.hpp"

#include <system_error>

namespace coring::apps {

task<> pubsub_server::setup(core& c) {
    if (c.id() != 0) co_return;
    auto make = [this] { return std::make_unique<pubsub::hub>(hubs_, opts_.limits); };
    co_await hubs_.start(make);
}

task<> pubsub_server::serve(core& c) {
    auto listener = tcp_listener::bind(opts_.listen, {.reuse_port = true});
    if (!listener) throw std::system_error(listener.error(), "bind " + opts_.listen.to_string());
    pubsub::hub& hub = hubs_.local();
    task_group web;
    if (opts_.http) {
        // Bound here, before the line below announces the port: bound by web_server itself, at
        // the spawned task's first turn, a client that read the line could be refused.
        auto http_listener = tcp_listener::bind(*opts_.http, {.reuse_port = true});
        if (!http_listener) throw std::system_error(http_listener.error(), "bind --http " + opts_.http->to_string());
        web.spawn(pubsub_detail::web_server(std::move(*http_listener), hub, opts_));
    }
    if (c.id() == 0 && opts_.announce) {
        auto where = listener->local_address();
        log("pubsub server listening on {} (RESP){}", where ? where->to_string() : opts_.listen.to_string(),
            opts_.http ? ", " + opts_.http->to_string() + " (HTTP: / demo, /ws WebSocket)" : std::string{});
    }
    task_group sessions;
    for (std::uint64_t n = 1;; ++n) {
        auto conn = co_await listener->accept();
        if (!conn) break;  // stopping
        (void)conn->set_nodelay(true);
        sessions.spawn(pubsub_detail::resp_session(std::move(*conn), hub, opts_, std::uint64_t{c.id()} << 48 | n));
    }
    // A subscriber never finishes by itself: stopping ends every session (their queued output
    // is dropped with them).
    co_await sessions.cancel_and_join();
    co_await web.cancel_and_join();
    std::lock_guard lock{final_lock_};
    final_ += hub.stats();
}

pubsub::counters pubsub_server::final_counters() const {
    std::lock_guard lock{final_lock_};
    return final_;
}

}  // namespace coring::apps
