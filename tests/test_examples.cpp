// The programs in docs/examples, run as users run them: the chat server on two cores, with
// plain sockets as its clients. Both backends.
#include "child_process.hpp"
#include "support.hpp"

#include <csignal>
#include <poll.h>
#include <set>
#include <string>
#include <sys/socket.h>
#include <vector>

using namespace coring;
using namespace coring::testing;

namespace {

using clock_type = std::chrono::steady_clock;

// Reads whole lines from fd until `count` have come or `limit` passed.
std::vector<std::string> read_lines(int fd, std::size_t count, std::chrono::milliseconds limit) {
    std::vector<std::string> lines;
    std::string pending;
    const auto deadline = clock_type::now() + limit;
    while (lines.size() < count) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now());
        pollfd p{fd, POLLIN, 0};
        if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
        char buf[4096];
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        pending.append(buf, static_cast<std::size_t>(n));
        for (std::size_t nl; (nl = pending.find('\n')) != std::string::npos; pending.erase(0, nl + 1))
            lines.push_back(pending.substr(0, nl));
    }
    return lines;
}

}  // namespace

TEST_CASE("the chat example on two cores: every line reaches every other client once, beside a client that never reads", "[app][examples]") {
    const auto kind = GENERATE(backend_kind::uring, backend_kind::epoll);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    const reserved_port port = reserve_loopback_port();
    child_process p{CORING_CHAT_BINARY, {"--listen", "127.0.0.1:" + std::to_string(port.port), "--cores", "2",
                                         "--backend", std::string{to_string(kind)}, "--drain-timeout", "500"}};
    REQUIRE(p.read_until(clock_type::now() + 10s, [](const child_process& c) { return c.err().find("chat listening") != std::string::npos; }));

    // 8 clients: the kernel spreads them over both cores' listeners. Each proves it is in the
    // room by a first line that everyone else must see.
    constexpr int clients = 8;
    std::vector<fd_guard> fds;
    for (int i = 0; i < clients; ++i) {
        fds.emplace_back(connect_blocking(port.port));
        REQUIRE(fds.back().fd >= 0);
    }
    // A client that never reads: nobody waits for it (its lines queue in its own bounded outbox;
    // once that is full the server cuts it, which takes more than the kernel's buffers hold).
    fd_guard sloth{connect_blocking(port.port, 4096)};
    ::usleep(100'000);  // every client accepted and in its core's room before the first line
    for (int round = 0; round < 50; ++round) {
        for (int i = 0; i < clients; ++i) {
            const std::string line = "client " + std::to_string(i) + " line " + std::to_string(round) + " " +
                                     std::string(3000, static_cast<char>('a' + i)) + "\n";
            REQUIRE(::send(fds[i].fd, line.data(), line.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(line.size()));
        }
        for (int i = 0; i < clients; ++i) {  // everyone reads what the others sent this round
            const auto got = read_lines(fds[i].fd, clients - 1, 5000ms);
            REQUIRE(got.size() == clients - 1);
            std::set<std::string> from;
            for (const auto& l : got) from.insert(l.substr(0, l.find(" line ")));
            CHECK(from.size() == clients - 1);  // each other client once
            CHECK(from.count("client " + std::to_string(i)) == 0);  // never its own
        }
    }
    REQUIRE(::kill(p.pid(), SIGTERM) == 0);  // this test's own child, by pid
    const auto status = p.wait_exit_or_kill(5s);
    INFO("stderr:\n" << p.err());
    REQUIRE(status);
    CHECK(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
}
