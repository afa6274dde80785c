// coring-echo: the reference server. Every byte received is sent back on the same connection.
#include "../common/cli.hpp"
#include "../common/workers.hpp"
#include "echo_server.hpp"

#include <cstdlib>
#include <stdexcept>

using namespace coring;

namespace {
constexpr std::string_view usage =
    "usage: coring-echo [--listen ADDR] [runtime flags]\n"
    "Echo server: sends back every byte it receives.\n"
    "  --listen ADDR        127.0.0.1:7000 (default), [::1]:7000, unix:/path\n"
    "  --no-delay on|off    TCP_NODELAY on accepted connections (default on)\n"
    "  --workers W          W processes sharing the port (SO_REUSEPORT), each a full runtime with\n"
    "                       its own fd limit, for more connections than one process may hold (default 1)\n"
    "signals: SIGINT/SIGTERM/SIGHUP stop gracefully, a second one stops at once;\n"
    "         SIGPIPE, SIGUSR1, SIGUSR2 are ignored";
}

int main(int argc, char** argv) {
    hold_stop_signals();  // a SIGTERM from here on is run()'s (or the workers' parent's) to handle
    runtime_options runtime;
    apps::echo_options echo;
    unsigned workers = 1;
    apps::parse_flags(argc, argv, usage, runtime, [&](std::string_view flag, std::string_view value) {
        if (flag == "--listen") {
            echo.listen = apps::address_flag(flag, value);
        } else if (flag == "--no-delay") {
            if (value != "on" && value != "off") throw std::invalid_argument("--no-delay: expected on or off");
            echo.nodelay = value == "on";
        } else if (flag == "--workers") {
            workers = static_cast<unsigned>(apps::count_flag(flag, value, 1, 1024));
        } else {
            return false;
        }
        return true;
    });
    if (auto port = apps::prepare_listen_address(echo.listen)) {
        echo.listen = *port;
    } else {
        std::fprintf(stderr, "coring-echo: bind %s: %s\n", echo.listen.to_string().c_str(), port.error().message().c_str());
        return 2;
    }
    const unsigned long fd_limit = raise_fd_limit();
    if (workers == 1 || runtime.print_features) {  // --features: run() prints them and returns
        if (!runtime.quiet) log("fd limit {}", fd_limit);
        apps::core_listeners listeners{echo.listen};
        return run(
            runtime, [&listeners](core& c) { return listeners.bind(c); },
            [echo, &listeners](core&) { return apps::echo_server(echo, listeners); });
    }
    if (echo.listen.family() == AF_UNIX) {
        std::fprintf(stderr, "coring-echo: --workers needs a TCP address (unix sockets have no SO_REUSEPORT)\n");
        return 2;
    }
    log("{} workers, each with fd limit {}", workers, fd_limit);
    return apps::run_workers(workers, [&](unsigned k) {
        apps::echo_options mine = echo;
        runtime_options rt = runtime;
        mine.announce = k == 0;  // one "listening on" line for the whole server
        rt.quiet = runtime.quiet || k != 0;
        apps::core_listeners listeners{mine.listen};
        return run(
            rt, [&listeners](core& c) { return listeners.bind(c); },
            [mine, &listeners](core&) { return apps::echo_server(mine, listeners); });
    });
}
