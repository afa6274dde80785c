// Micro-benchmarks of the HTTP server's per-request work, outside any I/O: parsing a head,
// routing it, writing a response head. Numbers only: nothing here asserts a time. The requests
// are the ones the HTTP benchmark's clients send (wrk's and coring-load's are the same shape),
// plus a browser-like head with a dozen fields.
#include <benchmark/benchmark.h>
#include <coring/http/request.hpp>
#include <coring/http/response.hpp>
#include <coring/http/router.hpp>

#include <string>
#include <string_view>

using namespace coring;

namespace {

constexpr std::string_view short_head = "GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
constexpr std::string_view browser_head =
    "GET /static/app.js?v=12 HTTP/1.1\r\n"
    "Host: example.test:8080\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Connection: keep-alive\r\n"
    "Referer: http://example.test:8080/index.html\r\n"
    "Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n"
    "Cache-Control: max-age=0\r\n"
    "Sec-Fetch-Dest: script\r\n"
    "Sec-Fetch-Mode: no-cors\r\n"
    "If-None-Match: \"5f1c-1a2b\"\r\n"
    "\r\n";

void parse(benchmark::State& state, std::string_view head) {
    http::request_head out;
    for (auto _ : state) {
        benchmark::DoNotOptimize(head.data());
        const int status = http::parse_request_head(head, out);
        benchmark::DoNotOptimize(status);
        benchmark::DoNotOptimize(out.header_count);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * head.size()));
}
void BM_parse_short_head(benchmark::State& state) { parse(state, short_head); }
void BM_parse_browser_head(benchmark::State& state) { parse(state, browser_head); }
BENCHMARK(BM_parse_short_head);
BENCHMARK(BM_parse_browser_head);

void BM_find_head_end(benchmark::State& state) {
    for (auto _ : state) {
        std::string_view h = browser_head;
        benchmark::DoNotOptimize(h.data());
        benchmark::DoNotOptimize(http::find_head_end(h));
    }
}
BENCHMARK(BM_find_head_end);

// The head of coring-http's /plaintext answer, appended to a reused buffer as the server does.
void BM_write_head_plaintext(benchmark::State& state) {
    std::string out;
    for (auto _ : state) {
        out.clear();
        http::write_head(out, 200, "text/plain", 13, true);
        benchmark::DoNotOptimize(out.data());
    }
}
BENCHMARK(BM_write_head_plaintext);

void BM_route_literal(benchmark::State& state) {
    http::router<int> r;
    r.add("GET", "/plaintext", 1).add("GET", "/json", 2).add("GET", "/users/{id}", 3).add("GET", "/{*rest}", 4);
    for (auto _ : state) {
        std::string_view path = "/plaintext";
        benchmark::DoNotOptimize(path.data());
        auto m = r.match("GET", path);
        benchmark::DoNotOptimize(m.handler);
    }
}
BENCHMARK(BM_route_literal);

}  // namespace

BENCHMARK_MAIN();
