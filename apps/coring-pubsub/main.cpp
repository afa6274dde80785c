// coring-pubsub: Redis-compatible publish/subscribe on every core (RESP2: redis-cli, hiredis and
// redis-py work as they do with redis-server), plus WebSocket and a demo page with --http.
#include "../common/cli.hpp"
#include "../common/listen.hpp"
#include "../common/workers.hpp"
#include "pubsub_app.hpp"

#include <cstdio>

using namespace coring;

namespace {
constexpr std::string_view usage =
    "usage: coring-pubsub [--listen ADDR] [--http ADDR] [limits] [runtime flags]\n"
    "Publish/subscribe server speaking Redis's RESP2 (SUBSCRIBE, PSUBSCRIBE, PUBLISH, PUBSUB, PING,\n"
    "ECHO, QUIT, RESET, INFO, CLIENT SETNAME/GETNAME/ID, HELLO 2, inline commands).\n"
    "  --listen ADDR          RESP clients: 127.0.0.1:6380 (default), [::1]:6380\n"
    "  --http ADDR            also serve the demo page (/) and WebSocket (/ws, JSON) there\n"
    "  --max-message BYTES    the largest command or WebSocket message (default 8388608)\n"
    "  --max-output BYTES     a subscriber with more output queued is cut (default 33554432)\n"
    "  --max-output-soft BYTES,SECS   ... or with more than BYTES queued for SECS (default 8388608,60)\n"
    "  --max-subscriptions N  channels plus patterns one connection may hold (default 100000)\n"
    "  --bus redis://HOST:PORT        join the other nodes (processes, machines) through this Redis:\n"
    "                         a publish to any node reaches the subscribers of every node, once\n"
    "  --bus-timeout MS       a PUBLISH the bus has not taken by then answers an error (default 2000)\n"
    "  --workers W            W processes sharing the port (SO_REUSEPORT), each its own node on the\n"
    "                         bus (needs --bus), for more subscribers than one process may hold (default 1)\n"
    "A PUBLISH reply counts every subscriber it reached in this process, on every core (other nodes'\n"
    "are not known); with --bus it is an error when the bus did not take the message.\n"
    "signals: SIGINT/SIGTERM/SIGHUP stop gracefully, a second one stops at once";

std::pair<std::size_t, double> soft_flag(std::string_view flag, std::string_view value) {
    const auto comma = value.find(',');
    if (comma == std::string_view::npos) throw std::invalid_argument(std::string{flag} + ": expected BYTES,SECS");
    return {apps::count_flag(flag, value.substr(0, comma), 1, 1ul << 40),
            apps::number_flag(flag, value.substr(comma + 1), 0, 86400)};
}
}  // namespace

int main(int argc, char** argv) {
    hold_stop_signals();  // a SIGTERM from here on is run()'s (or the workers' parent's) to handle
    runtime_options runtime;
    apps::pubsub_options opts;
    unsigned workers = 1;
    std::chrono::milliseconds bus_timeout{2000};
    apps::parse_flags(argc, argv, usage, runtime, [&](std::string_view flag, std::string_view value) {
        if (flag == "--listen") {
            opts.listen = apps::address_flag(flag, value);
        } else if (flag == "--http") {
            opts.http = apps::address_flag(flag, value);
        } else if (flag == "--max-message") {
            opts.max_message = apps::count_flag(flag, value, 16, 512ul << 20);
        } else if (flag == "--max-output") {
            opts.limits.hard = apps::count_flag(flag, value, 1, 1ul << 40);
        } else if (flag == "--max-subscriptions") {
            opts.limits.max_subscriptions = apps::count_flag(flag, value, 1, 1ul << 32);
        } else if (flag == "--max-output-soft") {
            const auto [bytes, secs] = soft_flag(flag, value);
            opts.limits.soft = bytes;
            opts.limits.soft_for = std::chrono::nanoseconds{static_cast<std::int64_t>(secs * 1e9)};
        } else if (flag == "--bus") {
            auto bus = redis::parse_url(value);
            if (!bus) throw std::invalid_argument("--bus: " + redis::url_error(value) + " (expected redis://HOST:PORT)");
            opts.bus = *bus;
        } else if (flag == "--bus-timeout") {
            bus_timeout = std::chrono::milliseconds{apps::count_flag(flag, value, 1, 3'600'000)};
        } else if (flag == "--workers") {
            workers = static_cast<unsigned>(apps::count_flag(flag, value, 1, 1024));
        } else {
            return false;
        }
        return true;
    });
    if (opts.bus) opts.bus->command_timeout = bus_timeout;  // then PUBLISH answers "bus unavailable"
    if (workers > 1 && !opts.bus) {
        std::fprintf(stderr, "coring-pubsub: --workers needs --bus (without it, each worker's subscribers would "
                             "miss what the others' publishers send)\n");
        return 2;
    }
    if (runtime.cores > 64) {
        std::fprintf(stderr, "coring-pubsub: --cores %u: at most 64\n", runtime.cores);
        return 2;
    }
    if (runtime.cores == 0 && available_cpus() > 64) {  // every CPU, by default: as many as the hub takes
        log("{} CPUs here, at most 64 cores for coring-pubsub: --cores 64 (name --cores to choose)", available_cpus());
        runtime.cores = 64;
    }
    if (workers > 1 && opts.listen.family() == AF_UNIX) {
        std::fprintf(stderr, "coring-pubsub: --workers needs a TCP address (unix sockets have no SO_REUSEPORT)\n");
        return 2;
    }
    for (address* a : {&opts.listen, opts.http ? &*opts.http : nullptr}) {
        if (!a) continue;
        if (auto port = apps::prepare_listen_address(*a)) {
            *a = *port;
        } else {
            std::fprintf(stderr, "coring-pubsub: bind %s: %s\n", a->to_string().c_str(), port.error().message().c_str());
            return 2;
        }
    }
    const unsigned long fd_limit = raise_fd_limit();
    if (!runtime.quiet && !runtime.print_features) log("fd limit {}", fd_limit);
    auto serve = [&runtime](const apps::pubsub_options& o) {
        apps::pubsub_server server{o};
        const int status = run(
            runtime, [&server](core& c) { return server.setup(c); }, [&server](core& c) { return server.serve(c); });
        if (runtime.print_stats) {
            const pubsub::counters c = server.final_counters();
            log("pubsub: accepted {}, published {}, delivered {}, frames serialized {}, cross-core batches {}, "
                "gather sends {}, slow subscribers cut {}, frames dropped with them {}",
                c.accepted, c.published, c.delivered, c.frames, c.batches_out, c.sends, c.slow_cut, c.dropped);
            if (o.bus)
                log("pubsub: bus: published {}, not taken {}, received {}, own dropped {}, link down {}, up {}",
                    c.bus_published, c.bus_failed, c.bus_received, c.bus_own, c.bus_down, c.bus_up);
        }
        return status;
    };
    if (workers == 1 || runtime.print_features) return serve(opts);
    log("{} workers, each with fd limit {}", workers, fd_limit);
    return apps::run_workers(workers, [&](unsigned k) {
        apps::pubsub_options mine = opts;
        mine.announce = k == 0;  // one "listening on" line for the whole server
        if (k != 0) runtime.quiet = true;
        return serve(mine);
    });
}
