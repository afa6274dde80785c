// The coring-http binary as users run it: --help, flag errors, a port in use, every route
// (files under --root, and /ws/echo with Python's websockets client), and SIGTERM.
#include "http_support.hpp"

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>

using namespace coring;
using namespace coring::testing;

namespace {

using clock_type = std::chrono::steady_clock;

std::size_t count_lines(const std::string& s) { return static_cast<std::size_t>(std::count(s.begin(), s.end(), '\n')); }

// One text and one binary message through /ws/echo; prints what came back.
constexpr const char* python_ws_client = R"(
import asyncio, sys, websockets
async def main(port):
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws/echo") as ws:
        await ws.send("hello")
        text = await ws.recv()
        await ws.send(bytes([0, 1, 2, 255]))
        binary = await ws.recv()
        print(text, binary.hex())
asyncio.run(main(int(sys.argv[1])))
)";

}  // namespace

TEST_CASE("coring-http --help names every route and flag, and exits 0", "[http]") {
    child_process p{CORING_HTTP_BINARY, {"--help"}};
    const auto status = p.wait_exit_or_kill(10s);
    INFO("stdout:\n" << p.out() << "\nstderr:\n" << p.err());
    REQUIRE(status);
    REQUIRE(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
    for (const char* word : {"usage", "/plaintext", "/json", "/ws/echo", "--root", "--listen", "--cores", "--backend", "--stats"})
        CHECK_THAT(p.out(), Catch::Contains(word));
    CHECK(p.err().empty());
}

TEST_CASE("coring-http refuses a bad flag or --root with exit code 2 and one line", "[http]") {
    const auto [args, word] = GENERATE(table<std::vector<std::string>, std::string>({
        {{"--bogus"}, "--bogus"},
        {{"--root", "/nonexistent"}, "/nonexistent"},
        {{"--listen", "not-an-address"}, "not-an-address"},
    }));
    INFO("coring-http " << args.front() << " ...");
    child_process p{CORING_HTTP_BINARY, args};
    const auto status = p.wait_exit_or_kill(10s);
    INFO("stdout:\n" << p.out() << "\nstderr:\n" << p.err());
    REQUIRE(status);
    REQUIRE(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 2);
    CHECK(count_lines(p.err()) == 1);
    CHECK_THAT(p.err(), Catch::Contains(word));
    CHECK(p.out().empty());
}

TEST_CASE("coring-http exits 2 naming the address when the port is taken", "[http]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    const taken_port taken = take_loopback_port();
    const std::string& where = taken.where;
    child_process p{CORING_HTTP_BINARY, {"--listen", where, "--backend", std::string{to_string(kind)}}};
    const auto status = p.wait_exit_or_kill(10s);
    INFO("stderr:\n" << p.err());
    REQUIRE(status);
    REQUIRE(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 2);
    CHECK(count_lines(p.err()) == 1);
    CHECK_THAT(p.err(), Catch::Contains("bind " + where));
    CHECK_THAT(p.err(), Catch::Contains("Address already in use"));
}

TEST_CASE("coring-http serves its routes, files and /ws/echo, and stops on SIGTERM with a keep-alive client", "[http]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    namespace fs = std::filesystem;
    const fs::path root = fs::temp_directory_path() / ("coring-http-app-" + std::to_string(::getpid()));
    fs::remove_all(root);
    fs::create_directories(root / "docs");
    std::ofstream(root / "docs" / "note.txt") << "a file under the root\n";
    constexpr auto drain = 20000ms;  // longer than the test waits: an idle client must not hold the stop
    child_process server{CORING_HTTP_BINARY, {"--listen", "127.0.0.1:0", "--cores", "1", "--backend", std::string{to_string(kind)},
                                              "--root", root.string(), "--drain-timeout", std::to_string(drain.count())}};
    const bool up = server.read_until(clock_type::now() + 10s, [](const child_process& s) { return listening_port(s.err()) != 0; });
    INFO("stderr:\n" << server.err());
    REQUIRE(up);
    const std::uint16_t port = listening_port(server.err());
    const std::string base = "http://127.0.0.1:" + std::to_string(port);

    CHECK(curl({"-sS", base + "/plaintext"}) == "Hello, World!");
    CHECK(curl({"-sS", "-w", " %{content_type}", base + "/json"}) == R"({"message":"Hello, World!"} application/json)");
    CHECK(curl({"-sS", base + "/docs/note.txt"}) == "a file under the root\n");
    CHECK(curl({"-sS", "-o", "/dev/null", "-w", "%{http_code}", base + "/nothing-here"}) == "404");
    CHECK(curl({"-sS", "-o", "/dev/null", "-w", "%{http_code}", base + "/ws/echo"}) == "426");  // a plain GET
    if (::system("/usr/bin/python3 -c 'import websockets' 2>/dev/null") == 0) {
        child_process python{"/usr/bin/python3", {"-c", python_ws_client, std::to_string(port)}};
        const auto status = python.wait_exit_or_kill(10s);
        INFO("python stderr: " << python.err());
        CHECK(status == 0);
        CHECK(python.out() == "hello 000102ff\n");
    } else {
        WARN("python3-websockets is not installed: /ws/echo not tried");
    }

    // A keep-alive connection that has been answered and now waits for its next request.
    const int fd = connect_blocking(port);
    REQUIRE(fd >= 0);
    fd_guard guard{fd};
    REQUIRE(send_all(fd, "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n"));
    std::string pending;
    const auto r = read_response(fd, pending);
    CHECK(r.status == 200);
    CHECK(r.keep_alive);

    REQUIRE(::kill(server.pid(), SIGTERM) == 0);  // this test's own child, by pid
    // The idle keep-alive connection is closed at once (as nginx does), not after the drain.
    const auto status = server.wait_exit_or_kill(3s);
    INFO("stderr after SIGTERM:\n" << server.err());
    REQUIRE(status);
    REQUIRE(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 0);
    CHECK(ends_here(fd));  // the server closed it on its way out
    fs::remove_all(root);
}
