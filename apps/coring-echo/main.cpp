// coring-echo: the reference server. Every byte received is sent back on the same connection.
#include "../common/cli.hpp"
#include "echo_server.hpp"

#include <stdexcept>

using namespace coring;

namespace {
constexpr std::string_view usage =
    "usage: coring-echo [--listen ADDR] [runtime flags]\n"
    "Echo server: sends back every byte it receives.\n"
    "  --listen ADDR        127.0.0.1:7000 (default), [::1]:7000, unix:/path\n"
    "  --no-delay on|off    TCP_NODELAY on accepted connections (default on)";
}

int main(int argc, char** argv) {
    runtime_options runtime;
    apps::echo_options echo;
    apps::parse_flags(argc, argv, usage, runtime, [&](std::string_view flag, std::string_view value) {
        if (flag == "--listen") {
            echo.listen = apps::address_flag(flag, value);
        } else if (flag == "--no-delay") {
            if (value != "on" && value != "off") throw std::invalid_argument("--no-delay: expected on or off");
            echo.nodelay = value == "on";
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
    return run(runtime, [echo](core&) { return apps::echo_server(echo); });
}
