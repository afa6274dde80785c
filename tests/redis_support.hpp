#pragma once
// Third-party servers for tests: a free loopback port, a binary at its usual path, and
// redis-server started there (killed by child_process's destructor at the end of the test).
#include "child_process.hpp"
#include "support.hpp"

#include <memory>
#include <string>
#include <unistd.h>
#include <vector>

namespace coring::testing {

// A port that was free a moment ago (bound, then closed) for a server that takes a port number.
inline std::uint16_t free_port() {
    test_core c{backend_kind::epoll};
    auto l = tcp_listener::bind("127.0.0.1:0");
    REQUIRE(l);
    const auto port = l->local_address()->port();
    c.run_for(2s, l->close());
    return port;
}

// A server binary at one of its usual paths; empty, said with a WARN, when it is not installed
// (the test is then skipped).
inline std::string server_binary(const char* name) {
    for (const char* dir : {"/usr/bin/", "/usr/sbin/", "/usr/local/bin/"})
        if (const std::string p = std::string{dir} + name; ::access(p.c_str(), X_OK) == 0) return p;
    WARN(name << " not installed (apt-get install " << name << "): skipped");
    return {};
}

// A third-party server on its own port, up (its ready line seen) or the test fails; killed by
// child_process's destructor at the end.
struct server {
    std::uint16_t port;
    std::unique_ptr<child_process> proc;
};

// On `port` when given (a restart on the same port), else on a free one.
inline server start_redis(const std::string& binary, std::vector<std::string> extra = {}, std::uint16_t port = 0) {
    if (port == 0) port = free_port();
    std::vector<std::string> args{"--port", std::to_string(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"};
    args.insert(args.end(), extra.begin(), extra.end());
    server s{port, std::make_unique<child_process>(binary, args)};
    const bool up = s.proc->read_until(child_process::clock::now() + 10s, [](const child_process& p) {
        return p.out().find("Ready to accept connections") != std::string::npos;
    });
    INFO("redis-server said: " << s.proc->out() << s.proc->err());
    REQUIRE(up);
    return s;
}

}  // namespace coring::testing
