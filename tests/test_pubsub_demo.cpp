// coring-pubsub's demo page (GET / with --http) in headless Chromium, both backends: a
// publisher sends "tick N" to channel "ticker" every 50 ms, and the page's DOM shows that
// messages arrived over its WebSocket. Skipped (WARN) without Debian's chromium or
// python3-websockets (the DevTools client below).
#include "pubsub_ws_support.hpp"

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <stop_token>
#include <thread>

using namespace coring;
using namespace coring::testing;

namespace {

constexpr const char* chromium_binary = "/usr/bin/chromium";

// Publishes "tick N" to "ticker" every 50 ms until asked to stop, at most 1,200 times (a
// minute): its own thread, no Catch assertions (Catch is not thread-safe); counts the publishes.
void tick(std::stop_token stop, std::uint16_t port, std::atomic<int>* published) {
    fd_guard pub{connect_blocking(port)};
    if (pub.fd < 0) return;
    for (int n = 0; n < 1200 && !stop.stop_requested(); ++n) {
        if (resp_publish(pub.fd, "ticker", "tick " + std::to_string(n)) < 0) return;
        ++*published;
        std::this_thread::sleep_for(50ms);
    }
}

// The number in the page's <span id="count">N</span>, or -1.
long shown_count(const std::string& dom) {
    static constexpr std::string_view marker = R"(<span id="count">)";
    const auto at = dom.find(marker);
    if (at == std::string::npos) return -1;
    const auto end = dom.find('<', at + marker.size());
    if (end == std::string::npos || end == at + marker.size()) return -1;
    return std::stol(dom.substr(at + marker.size(), end - at - marker.size()));
}

// The port in Chromium's "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/...", or 0.
std::uint16_t devtools_port(const std::string& err) {
    static constexpr std::string_view marker = "DevTools listening on ws://127.0.0.1:";
    const auto at = err.find(marker);
    if (at == std::string::npos) return 0;
    const auto end = err.find('/', at + marker.size());
    if (end == std::string::npos) return 0;
    const long port = std::stol(err.substr(at + marker.size(), end - at - marker.size()));
    return port > 0 && port <= 65535 ? static_cast<std::uint16_t>(port) : 0;
}

// Why not --dump-dom: it dumps at the load event, before the WebSocket has said anything, and
// --virtual-time-budget runs the page's timers ahead but not the socket, which delivers in real
// time (one message at best, here). So this talks to the running page through the DevTools
// protocol: it polls the page's count (every 100 ms, 15 s at most) until ten messages are shown,
// then prints the DOM; with a second argument it also saves a screenshot there (PNG, 800x500:
// headless Chromium's window is that size, but its viewport is less).
constexpr const char* devtools_client = R"(
import asyncio, base64, json, sys, urllib.request, websockets
async def main(devtools, screenshot):
    page = None
    for _ in range(100):
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{devtools}/json/list", timeout=5))
        page = next((t for t in targets if t.get("type") == "page" and "channel=" in t.get("url", "")), None)
        if page:
            break
        await asyncio.sleep(0.1)
    async with websockets.connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
        calls = 0
        async def call(method, **params):
            nonlocal calls
            calls += 1
            await ws.send(json.dumps({"id": calls, "method": method, "params": params}))
            while True:
                answer = json.loads(await ws.recv())
                if answer.get("id") == calls:
                    return answer["result"]
        count = "document.getElementById('count')?.textContent ?? '0'"
        for _ in range(150):
            if int((await call("Runtime.evaluate", expression=count))["result"]["value"]) >= 10:
                break
            await asyncio.sleep(0.1)
        if screenshot:
            await call("Emulation.setDeviceMetricsOverride", width=800, height=500, deviceScaleFactor=1, mobile=False)
            png = await call("Page.captureScreenshot", format="png")
            with open(screenshot, "wb") as f:
                f.write(base64.b64decode(png["data"]))
        print((await call("Runtime.evaluate", expression="document.documentElement.outerHTML"))["result"]["value"])
asyncio.run(asyncio.wait_for(main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None), 30))
)";

}  // namespace

TEST_CASE("coring-pubsub's demo page in headless Chromium shows messages as they are published", "[pubsub]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    if (::access(chromium_binary, X_OK) != 0) {
        WARN("chromium is not installed (Debian package chromium): skipped");
        return;
    }
    if (skip_without_python_websockets()) return;
    pubsub_server_process server{kind};
    std::atomic<int> published{0};
    std::jthread publisher{tick, server.ports().resp, &published};  // stopped and joined on every way out

    namespace fs = std::filesystem;
    const fs::path profile = fs::temp_directory_path() / ("coring-pubsub-chromium-" + std::to_string(::getpid()));
    fs::remove_all(profile);
    child_process chromium{chromium_binary,
                           {"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
                            "--user-data-dir=" + profile.string(), "--remote-debugging-port=0", "--window-size=800,500",
                            "http://127.0.0.1:" + std::to_string(server.ports().http) + "/?channel=ticker"}};
    const bool listening = chromium.read_until(std::chrono::steady_clock::now() + 30s,
                                               [](const child_process& c) { return devtools_port(c.err()) != 0; });
    std::vector<std::string> args{"-c", devtools_client, std::to_string(devtools_port(chromium.err()))};
    // ./dev demo-screenshot sets this to write docs/pubsub-demo.png.
    if (const char* shot = std::getenv("CORING_DEMO_SCREENSHOT")) args.emplace_back(shot);
    std::optional<int> asked;
    std::string dom, asked_err;
    if (listening) {
        child_process python{"/usr/bin/python3", args};
        asked = python.wait_exit_or_kill(40s);
        dom = python.out();
        asked_err = python.err();
    }
    ::kill(chromium.pid(), SIGTERM);  // our own child: it ends its renderers itself
    const auto closed = chromium.wait_exit_or_kill(20s);
    publisher.request_stop();
    publisher.join();
    fs::remove_all(profile);
    INFO("published: " << published.load() << "\nchromium stderr:\n" << chromium.err() << "\nDevTools client stderr:\n" << asked_err);
    REQUIRE(listening);
    REQUIRE(asked);
    CHECK(*asked == 0);
    CHECK(closed);
    CHECK(dom.find(R"(<p id="status">subscribed</p>)") != std::string::npos);
    CHECK(shown_count(dom) >= 10);
    CHECK(dom.find("<li>tick ") != std::string::npos);
    const auto stopped = server.stop();
    REQUIRE(stopped);
    CHECK(WIFEXITED(*stopped));
}
