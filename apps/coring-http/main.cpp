// coring-http: an HTTP/1.1 and WebSocket server on every core.
#include "../common/cli.hpp"
#include "../common/listen.hpp"
#include "http_app.hpp"

#include <sys/stat.h>

#include <cstdio>

using namespace coring;

namespace {
constexpr std::string_view usage =
    "usage: coring-http [--listen ADDR] [--root DIR] [runtime flags]\n"
    "HTTP/1.1 server:\n"
    "  GET /plaintext   Hello, World! (text/plain)\n"
    "  GET /json        {\"message\":\"Hello, World!\"}\n"
    "  /ws/echo         WebSocket echo\n"
    "  anything else    a file under --root (GET/HEAD), else 404\n"
    "  --listen ADDR    127.0.0.1:8080 (default), [::1]:8080\n"
    "  --root DIR       serve the files under DIR (never outside it: .., symlinks out → 404)\n"
    "signals: SIGINT/SIGTERM/SIGHUP stop gracefully, a second one stops at once";
}

int main(int argc, char** argv) {
    hold_stop_signals();  // a SIGTERM from here on is run()'s (or the workers' parent's) to handle
    runtime_options runtime;
    apps::http_options http;
    apps::parse_flags(argc, argv, usage, runtime, [&](std::string_view flag, std::string_view value) {
        if (flag == "--listen") http.listen = apps::address_flag(flag, value);
        else if (flag == "--root") http.root = std::string{value};
        else return false;
        return true;
    });
    if (auto port = apps::prepare_listen_address(http.listen)) {
        http.listen = *port;
    } else {
        std::fprintf(stderr, "coring-http: bind %s: %s\n", http.listen.to_string().c_str(), port.error().message().c_str());
        return 2;
    }
    if (http.root) {  // checked here for a one-line error; each core opens it for itself
        struct stat st;
        if (::stat(http.root->c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
            std::fprintf(stderr, "coring-http: --root %s: not a directory\n", http.root->c_str());
            return 2;
        }
    }
    const unsigned long fd_limit = raise_fd_limit();
    if (!runtime.quiet && !runtime.print_features) log("fd limit {}", fd_limit);
    apps::core_listeners listeners{http.listen};
    return run(
        runtime, [&listeners](core& c) { return listeners.bind(c); },
        [http, &listeners](core&) { return apps::http_server(http, listeners); });
}
