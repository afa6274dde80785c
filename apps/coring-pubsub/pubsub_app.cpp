#include "pubsub_app.hpp"

#include <cstdio>
#include <random>

namespace coring::apps {

pubsub_server::pubsub_server(pubsub_options opts) : opts_{std::move(opts)}, listeners_{opts_.listen} {
    if (opts_.http) web_listeners_.emplace(*opts_.http);
    std::random_device seed;
    node_ = std::uint64_t{seed()} << 32 | seed();
}

task<> pubsub_server::setup(core& c) {
    co_await listeners_.bind(c);
    if (web_listeners_) co_await web_listeners_->bind(c);
    if (c.id() != 0) co_return;
    auto make = [this] { return std::make_unique<pubsub::hub>(hubs_, opts_.limits); };
    co_await hubs_.start(make);
    if (!opts_.bus) co_return;
    auto make_bus = [this] {
        const bool listens = core::current().id() == 0;  // core 0 holds the node's subscriptions
        return std::make_unique<pubsub::bus>(hubs_.local(), *opts_.bus, node_, listens);
    };
    co_await buses_.start(make_bus);
}

task<> pubsub_server::serve(core& c) {
    if (opts_.bus) {  // first the bus, so that the first PUBLISH is not refused for want of it
        const bool up = co_await buses_.local().wait_up(opts_.bus->connect_timeout);
        if (!up)
            log("pubsub: core {}: bus redis://{}:{} not reachable yet: serving; PUBLISH answers an error until it is",
                c.id(), opts_.bus->host, opts_.bus->port);
    }
    auto listener = listeners_.take();  // none on cores but 0 for a unix socket
    pubsub::hub& hub = hubs_.local();
    task_group web;
    if (web_listeners_)
        if (auto http_listener = web_listeners_->take())
            web.spawn(pubsub_detail::web_server(std::move(*http_listener), hub, opts_));
    if (c.id() == 0 && opts_.announce) {
        log("pubsub server listening on {} (RESP){}", opts_.listen.to_string(),
            opts_.http ? ", " + opts_.http->to_string() + " (HTTP: / demo, /ws WebSocket)" : std::string{});
    }
    task_group bus_reader;
    if (opts_.bus && c.id() == 0) {
        char name[17];
        std::snprintf(name, sizeof name, "%016llx", static_cast<unsigned long long>(node_));
        log("pubsub: node {} joins the others through redis://{}:{}", name, opts_.bus->host, opts_.bus->port);
        bus_reader.spawn(buses_.local().run());
    }
    task_group sessions;
    accept_pacer pacer{"accept"};  // out of fds: pauses, and says so once per interval
    for (std::uint64_t n = 1; listener; ++n) {
        auto conn = co_await pacer.next(*listener);
        if (!conn) break;  // stopping
        (void)conn->set_nodelay(true);
        sessions.spawn(pubsub_detail::resp_session(std::move(*conn), hub, opts_, std::uint64_t{c.id()} << 48 | n));
    }
    if (!listener) co_await web.join();  // no RESP here (a unix socket): the HTTP port until stopping
    // A subscriber never finishes by itself: stopping ends every session (their queued output
    // is dropped with them).
    co_await sessions.cancel_and_join();
    co_await web.cancel_and_join();
    if (opts_.bus) co_await buses_.local().close();  // its reader ends with it
    co_await bus_reader.join();
    std::lock_guard lock{final_lock_};
    final_ += hub.stats();
}

pubsub::counters pubsub_server::final_counters() const {
    std::lock_guard lock{final_lock_};
    return final_;
}

}  // namespace coring::apps
