// The HTTP/1.1 server over real sockets, on both backends: curl and wrk as clients, and raw
// sockets for what those never send (pipelines, heads split anywhere, smuggling attempts,
// clients that stall or never read).
#include "http_support.hpp"

#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <netinet/tcp.h>

using namespace coring;
using namespace coring::testing;

TEST_CASE("http: curl gets the routes, keep-alive reuses one connection", "[http]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    serve_while(kind, {}, [](std::uint16_t port) {
        const std::string base = "http://127.0.0.1:" + std::to_string(port);
        int code = -1;
        CHECK(curl({"-sS", base + "/plaintext"}, &code) == "Hello, World!");
        CHECK(code == 0);
        // Three URLs in one curl: one connection (curl says "Re-using" on stderr with -v; the
        // server's answers in order are what we check here).
        CHECK(curl({"-sS", base + "/n/1", base + "/n/two", base + "/n/%C3%A9"}) == "1two\xC3\xA9");
        CHECK(curl({"-sS", "-o", "/dev/null", "-o", "/dev/null", "-w", "%{http_code} %{num_connects},", base + "/n/1",
                    base + "/n/2"}) == "200 1,200 0,");  // the second request made no connection
        CHECK(curl({"-sS", "-o", "/dev/null", "-w", "%{http_code}", base + "/missing"}) == "404");
        CHECK(curl({"-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", base + "/plaintext"}) == "405");
        CHECK(curl({"-sS", "-I", base + "/plaintext"}).find("Content-Length: 13") != std::string::npos);
        CHECK(curl({"-sS", base + "/stream"}) == "abbccc");
        CHECK(curl({"-sS", "--http1.0", base + "/stream"}) == "abbccc");  // no chunks for 1.0: ends at the close
        // A body bigger than one argument may be (128 KiB) goes from a file.
        char path[] = "/tmp/coring-http-body-XXXXXX";
        const int body_fd = ::mkstemp(path);
        REQUIRE(body_fd >= 0);
        const auto big = random_bytes(300'000, 5);
        REQUIRE(::write(body_fd, big.data(), big.size()) == static_cast<ssize_t>(big.size()));
        ::close(body_fd);
        const std::string echoed = curl({"-sS", "--data-binary", std::string{"@"} + path, base + "/echo"});
        ::unlink(path);
        CHECK(echoed == std::string(reinterpret_cast<const char*>(big.data()), big.size()));
        CHECK(curl({"-sS", "-H", "Transfer-Encoding: chunked", "--data-binary", "chunked body", base + "/echo"}) ==
              "chunked body");
        CHECK(curl({"-sS", "-H", "Expect: 100-continue", "--data-binary", "after continue", base + "/echo"}) ==
              "after continue");
        CHECK(curl({"-sS", "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", std::string(100, 'x'), base + "/small"}) ==
              "413");
    });
}

TEST_CASE("http: a pipeline of 200 requests in one send is answered in order", "[http]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    serve_while(kind, {}, [](std::uint16_t port) {
        const int fd = connect_blocking(port);
        REQUIRE(fd >= 0);
        fd_guard guard{fd};
        std::string burst;
        for (int i = 0; i < 200; ++i) burst += "GET /n/" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n";
        REQUIRE(send_all(fd, burst));
        std::string pending;
        for (int i = 0; i < 200; ++i) {
            const auto r = read_response(fd, pending);
            REQUIRE(r.status == 200);
            REQUIRE(r.body == std::to_string(i));
        }
    });
}

TEST_CASE("http: a WebSocket handler reads its request's path and headers after frames came", "[http][ws]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    serve_while(kind, {}, [](std::uint16_t port) {
        // Two heads: one that fits a receive, and one bigger than the 4 KiB a spill keeps.
        for (const std::size_t who_size : {std::size_t{40}, std::size_t{6000}}) {
            const int fd = connect_blocking(port);
            REQUIRE(fd >= 0);
            fd_guard guard{fd};
            const std::string who(who_size, 'w');
            REQUIRE(send_all(fd, "GET /ws/who HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                                 "X-Who: " + who + "\r\n\r\n"));
            std::string pending;
            const auto up = read_response(fd, pending);
            REQUIRE(up.status == 101);
            // The frame goes only now, so the head's buffer was given back before it came.
            std::string frame = "\x81\x82" + std::string("\x01\x02\x03\x04", 4) + "hi";
            frame[6] ^= 0x01;
            frame[7] ^= 0x02;
            REQUIRE(send_all(fd, frame));
            const std::string expected = "/ws/who " + who + " hi";
            char buf[8192];
            while (pending.size() < 4 || pending.size() < 4 + expected.size()) {
                const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
                if (n <= 0) break;
                pending.append(buf, static_cast<std::size_t>(n));
            }
            REQUIRE(pending.size() >= 4 + expected.size());
            CHECK(static_cast<unsigned char>(pending[0]) == 0x81);
            const std::size_t header = (pending[1] & 0x7f) == 126 ? 4 : 2;
            CHECK(pending.substr(header, expected.size()) == expected);
        }
    });
}

TEST_CASE("http: a 204 goes without Content-Length or body, and the connection goes on", "[http]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    serve_while(kind, {}, [](std::uint16_t port) {
        const int fd = connect_blocking(port);
        REQUIRE(fd >= 0);
        fd_guard guard{fd};
        REQUIRE(send_all(fd, "GET /nocontent HTTP/1.1\r\nHost: x\r\n\r\nGET /n/7 HTTP/1.1\r\nHost: x\r\n\r\n"));
        std::string pending;
        const auto none = read_response(fd, pending);
        CHECK(none.status == 204);
        CHECK(none.head.find("Content-Length") == std::string::npos);
        const auto next = read_response(fd, pending);  // a body after the 204 would be read as this
        CHECK(next.status == 200);
        CHECK(next.body == "7");
    });
}

TEST_CASE("http: a request split at every byte, and a body split too", "[http]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    serve_while(kind, {}, [](std::uint16_t port) {
        const std::string request = "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                    "3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\nTrailer: ignored\r\n\r\n";
        const int fd = connect_blocking(port);
        REQUIRE(fd >= 0);
        fd_guard guard{fd};
        const int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        std::string pending;
        for (std::size_t cut = 1; cut < request.size(); cut += 3) {  // one keep-alive connection
            REQUIRE(send_all(fd, request.substr(0, cut)));
            std::this_thread::sleep_for(1ms);  // the server reads the first part alone (usually)
            REQUIRE(send_all(fd, request.substr(cut)));
            const auto r = read_response(fd, pending);
            INFO("cut at " << cut);
            REQUIRE(r.status == 200);
            REQUIRE(r.body == "abcdefg");
        }
    });
}

TEST_CASE("http: bad requests get their status and a close", "[http]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    serve_while(kind, {}, [](std::uint16_t port) {
        const std::vector<std::pair<std::string, int>> cases{
            {"GET /plaintext HTTP/1.1\r\nHost: x\r\nX: " + std::string(9000, 'a') + "\r\n\r\n", 431},
            {"GET /plaintext HTTP/1.1\r\nHost: x\r\n" + [] {
                 std::string many;
                 for (int i = 0; i < 70; ++i) many += "X" + std::to_string(i) + ": y\r\n";
                 return many;
             }() + "\r\n", 431},
            {"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400},
            {"GET /pl\raintext HTTP/1.1\r\nHost: x\r\n\r\n", 400},
            {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
            {"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400},
            {"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
            {"GET /plaintext HTTP/2.0\r\nHost: x\r\n\r\n", 505},
            {"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + std::string(100, 'b'), 413},
            {"POST /small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n" + std::string(32, 'c') + "\r\n0\r\n\r\n", 413},
            {"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
        };
        for (const auto& [request, status] : cases) {
            INFO(request.substr(0, 80));
            const int fd = connect_blocking(port);
            REQUIRE(fd >= 0);
            fd_guard guard{fd};
            REQUIRE(send_all(fd, request));
            std::string pending;
            const auto r = read_response(fd, pending);
            CHECK(r.status == status);
            CHECK_FALSE(r.keep_alive);
            CHECK(closed_by_server(fd));
        }
    });
}

TEST_CASE("http: plain-function handlers answer like coroutines; one that throws gets 500 and a close", "[http]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    serve_while(kind, {}, [](std::uint16_t port) {
        // Pipelined: two plain-function answers, a HEAD of one, then one that throws, on one connection.
        const int fd = connect_blocking(port);
        REQUIRE(fd >= 0);
        fd_guard guard{fd};
        REQUIRE(send_all(fd, "GET /sync/7 HTTP/1.1\r\nHost: x\r\n\r\nGET /sync/8 HTTP/1.1\r\nHost: x\r\n\r\n"
                             "HEAD /sync/9 HTTP/1.1\r\nHost: x\r\n\r\nGET /sync-throws HTTP/1.1\r\nHost: x\r\n\r\n"));
        std::string pending;
        for (const char* id : {"7", "8"}) {
            const auto r = read_response(fd, pending);
            CHECK(r.status == 200);
            CHECK(r.body == std::string{"sync "} + id);
            CHECK(r.keep_alive);
        }
        const auto head = read_response(fd, pending, true);
        CHECK(head.status == 200);
        CHECK(head.body.empty());
        const auto thrown = read_response(fd, pending);
        CHECK(thrown.status == 500);
        CHECK_FALSE(thrown.keep_alive);
        CHECK(closed_by_server(fd));
        // A coroutine handler that throws: the same answer.
        const int fd2 = connect_blocking(port);
        REQUIRE(fd2 >= 0);
        fd_guard guard2{fd2};
        REQUIRE(send_all(fd2, "GET /throws HTTP/1.1\r\nHost: x\r\n\r\n"));
        std::string pending2;
        const auto r = read_response(fd2, pending2);
        CHECK(r.status == 500);
        CHECK_FALSE(r.keep_alive);
        CHECK(closed_by_server(fd2));
    });
}

TEST_CASE("http: HTTP/1.0 closes unless asked to keep alive; HEAD has no body", "[http]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    serve_while(kind, {}, [](std::uint16_t port) {
        {
            const int fd = connect_blocking(port);
            fd_guard guard{fd};
            REQUIRE(send_all(fd, "GET /plaintext HTTP/1.0\r\n\r\n"));
            std::string pending;
            const auto r = read_response(fd, pending);
            CHECK(r.status == 200);
            CHECK(r.body == "Hello, World!");
            CHECK(closed_by_server(fd));
        }
        {
            const int fd = connect_blocking(port);
            fd_guard guard{fd};
            std::string pending;
            for (int i = 0; i < 3; ++i) {
                REQUIRE(send_all(fd, "GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
                const auto r = read_response(fd, pending);
                CHECK(r.status == 200);
                CHECK(r.keep_alive);
            }
            REQUIRE(send_all(fd, "HEAD /plaintext HTTP/1.1\r\nHost: x\r\n\r\nGET /n/7 HTTP/1.1\r\nHost: x\r\n\r\n"));
            const auto head = read_response(fd, pending, true);
            CHECK(head.status == 200);
            CHECK(head.body.empty());
            CHECK(head.head.find("Content-Length: 13") != std::string::npos);
            const auto after = read_response(fd, pending);  // nothing of a body got in its way
            CHECK(after.body == "7");
        }
    });
}

TEST_CASE("http: timeouts end slow heads, idle connections, and clients that never read", "[http]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    http::server_options opts;
    opts.header_timeout = 300ms;
    opts.idle_timeout = 300ms;
    opts.write_timeout = 300ms;
    serve_while(kind, opts, [](std::uint16_t port) {
        {  // slowloris: a head that never ends gets 408 and a close
            const int fd = connect_blocking(port);
            fd_guard guard{fd};
            REQUIRE(send_all(fd, "GET /plaintext HTTP/1.1\r\nHost: x\r\n"));
            std::string pending;
            CHECK(read_response(fd, pending).status == 408);
            CHECK(closed_by_server(fd));
        }
        {  // idle keep-alive: closed without a word
            const int fd = connect_blocking(port);
            fd_guard guard{fd};
            REQUIRE(send_all(fd, "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n"));
            std::string pending;
            CHECK(read_response(fd, pending).status == 200);
            CHECK(closed_by_server(fd));
        }
        {  // a pipelining client that never reads: the server stops at its bounds and closes
            const int fd = connect_blocking(port, 4096);
            fd_guard guard{fd};
            std::string burst;
            for (int i = 0; i < 100; ++i) burst += "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n";
            ::fcntl(fd, F_SETFL, O_NONBLOCK);
            // The server answers until its output bound, then waits in a send that makes no
            // progress: past the write timeout it closes, and our next send meets the reset.
            const auto until = std::chrono::steady_clock::now() + 10s;
            std::size_t sent_total = 0;
            bool reset = false;
            while (std::chrono::steady_clock::now() < until && !reset) {
                const ssize_t n = ::send(fd, burst.data(), burst.size(), MSG_NOSIGNAL);
                if (n > 0) sent_total += static_cast<std::size_t>(n);
                else if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) reset = true;
                else std::this_thread::sleep_for(20ms);
            }
            INFO("sent " << sent_total);
            CHECK(reset);
        }
        {  // and it still serves everyone else
            const int fd = connect_blocking(port);
            fd_guard guard{fd};
            REQUIRE(send_all(fd, "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n"));
            std::string pending;
            CHECK(read_response(fd, pending).status == 200);
        }
    });
}

TEST_CASE("http: wrk keeps 20 connections busy without an error", "[http]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    if (::access("/usr/bin/wrk", X_OK) != 0) {
        WARN("wrk not installed (Debian package wrk): skipped");
        return;
    }
    INFO(to_string(kind));
    serve_while(kind, {}, [](std::uint16_t port) {
        child_process wrk{"/usr/bin/wrk", {"-t1", "-c20", "-d1s", "http://127.0.0.1:" + std::to_string(port) + "/plaintext"}};
        REQUIRE(wrk.wait_exit_or_kill(20s) == 0);
        INFO(wrk.out());
        CHECK(wrk.out().find("requests in") != std::string::npos);
        CHECK(wrk.out().find("Non-2xx") == std::string::npos);
        CHECK(wrk.out().find("Socket errors") == std::string::npos);
    });
}

TEST_CASE("http: static files with ranges, validators, and nothing from outside the root", "[http][file]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    namespace fs = std::filesystem;
    const fs::path root = fs::temp_directory_path() / ("coring-www-" + std::to_string(::getpid()));
    fs::remove_all(root);
    fs::create_directories(root / "sub");
    const auto data = random_bytes(100'000, 9);  // more than one read_chunk
    std::ofstream(root / "sub" / "data.bin", std::ios::binary).write(reinterpret_cast<const char*>(data.data()), data.size());
    std::ofstream(root / "index.html") << "<p>home</p>";
    std::ofstream(root / "empty.txt").flush();
    std::ofstream(root.parent_path() / ("coring-secret-" + std::to_string(::getpid()))) << "secret";
    fs::create_symlink(root.parent_path() / ("coring-secret-" + std::to_string(::getpid())), root / "out");
    fs::create_symlink("index.html", root / "in.html");
    const std::string whole(reinterpret_cast<const char*>(data.data()), data.size());
    serve_while(kind, {}, [&](std::uint16_t port) {
        const std::string base = "http://127.0.0.1:" + std::to_string(port);
        const auto code = [&](std::vector<std::string> args) {
            args.insert(args.begin(), {"-sS", "-o", "/dev/null", "-w", "%{http_code}"});
            return curl(args);
        };
        CHECK(curl({"-sS", base + "/sub/data.bin"}) == whole);
        CHECK(curl({"-sS", base + "/"}) == "<p>home</p>");
        CHECK(curl({"-sS", base + "/in.html"}) == "<p>home</p>");  // a symlink inside the root
        CHECK(curl({"-sS", "-w", "%{content_type}", "-o", "/dev/null", base + "/index.html"}) == "text/html; charset=utf-8");
        CHECK(curl({"-sS", "-r", "1000-1999", base + "/sub/data.bin"}) == whole.substr(1000, 1000));
        CHECK(curl({"-sS", "-r", "-10", base + "/sub/data.bin"}) == whole.substr(whole.size() - 10));
        CHECK(code({"-r", "99990-", base + "/sub/data.bin"}) == "206");
        CHECK(code({"-r", "200000-", base + "/sub/data.bin"}) == "416");
        CHECK(code({"-r", "-5", base + "/empty.txt"}) == "200");  // the one satisfiable range of an empty file
        CHECK(code({"-r", "0-", base + "/empty.txt"}) == "416");
        CHECK(code({base + "/out"}) == "404");                                    // a symlink out of the root
        CHECK(code({"--path-as-is", base + "/../etc/passwd"}) == "404");
        CHECK(code({"--path-as-is", base + "/%2e%2e/%2e%2e/etc/passwd"}) == "404");
        CHECK(code({"--path-as-is", base + "/sub/%2E%2E/index.html"}) == "404");
        CHECK(code({base + "/sub/%00x"}) == "404");
        CHECK(code({base + "/missing.txt"}) == "404");
        CHECK(code({base + "/sub"}) == "404");  // a directory is not a file
        const std::string head = curl({"-sS", "-I", base + "/sub/data.bin"});
        CHECK(head.find("Content-Length: 100000") != std::string::npos);
        const auto etag_at = head.find("ETag: ");
        REQUIRE(etag_at != std::string::npos);
        const std::string etag = head.substr(etag_at + 6, head.find('\r', etag_at) - etag_at - 6);
        CHECK(code({"-H", "If-None-Match: " + etag, base + "/sub/data.bin"}) == "304");
        CHECK(code({"-H", "If-None-Match: \"other\"", base + "/sub/data.bin"}) == "200");
        // A 304 has no Content-Length but the 200's (RFC 9110 §8.6), and its connection goes on.
        const std::string both = curl({"-sS", "-i", "-H", "If-None-Match: " + etag, base + "/sub/data.bin", base + "/index.html"});
        const auto second = both.find("HTTP/1.1 200");
        REQUIRE(second != std::string::npos);
        CHECK(both.substr(0, second).find("304 Not Modified") != std::string::npos);
        CHECK(both.substr(0, second).find("Content-Length") == std::string::npos);
        CHECK(both.ends_with("<p>home</p>"));
        CHECK(code({"-H", "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT", base + "/sub/data.bin"}) == "304");
        CHECK(code({"-H", "If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT", base + "/sub/data.bin"}) == "200");
        CHECK(code({"-X", "POST", base + "/sub/data.bin"}) == "404");  // files are GET/HEAD only
    }, root.string());
    fs::remove_all(root);
    fs::remove(root.parent_path() / ("coring-secret-" + std::to_string(::getpid())));
}

TEST_CASE("http: requests sent one byte per send, head and body, are answered", "[http]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    serve_while(kind, {}, [](std::uint16_t port) {
        const int fd = connect_blocking(port);
        REQUIRE(fd >= 0);
        fd_guard guard{fd};
        const int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // each byte its own segment
        const auto trickle = [&](std::string_view request) {
            for (char c : request) {
                REQUIRE(send_all(fd, {&c, 1}));
                std::this_thread::sleep_for(1ms);  // so the server sees them one read at a time (mostly)
            }
        };
        std::string pending;
        trickle("GET /n/42 HTTP/1.1\r\nHost: x\r\n\r\n");
        auto r = read_response(fd, pending);
        CHECK(r.status == 200);
        CHECK(r.body == "42");
        trickle("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");  // same connection
        r = read_response(fd, pending);
        CHECK(r.status == 200);
        CHECK(r.body == "hello");
        CHECK(r.keep_alive);
    });
}

TEST_CASE("http: a pipeline with Connection: close in the middle ends there", "[http]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    serve_while(kind, {}, [](std::uint16_t port) {
        const int fd = connect_blocking(port);
        REQUIRE(fd >= 0);
        fd_guard guard{fd};
        REQUIRE(send_all(fd, "GET /n/1 HTTP/1.1\r\nHost: x\r\n\r\n"
                             "GET /n/2 HTTP/1.1\r\nHost: x\r\n\r\n"
                             "GET /n/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                             "GET /n/4 HTTP/1.1\r\nHost: x\r\n\r\n"
                             "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"));
        std::string pending;
        for (const char* body : {"1", "2"}) {
            const auto r = read_response(fd, pending);
            CHECK(r.status == 200);
            CHECK(r.body == body);
            CHECK(r.keep_alive);
        }
        const auto last = read_response(fd, pending);
        CHECK(last.status == 200);
        CHECK(last.body == "3");
        CHECK_FALSE(last.keep_alive);
        CHECK_THAT(last.head, Catch::Contains("Connection: close"));
        CHECK(pending.empty());  // nothing answered after it
        CHECK(ends_here(fd));
    });
}

TEST_CASE("http: HEAD of a streamed route gets the GET's head and no body", "[http]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    serve_while(kind, {}, [](std::uint16_t port) {
        for (const int minor : {1, 0}) {
            INFO("HTTP/1." << minor);
            const int fd = connect_blocking(port);
            REQUIRE(fd >= 0);
            fd_guard guard{fd};
            const std::string version = "HTTP/1." + std::to_string(minor);
            const std::string keep = minor == 0 ? "Connection: keep-alive\r\n" : "";
            REQUIRE(send_all(fd, "HEAD /stream " + version + "\r\nHost: x\r\n" + keep + "\r\n" +
                                     "GET /n/5 " + version + "\r\nHost: x\r\n" + keep + "\r\n"));
            std::string pending;
            const auto head = read_response(fd, pending, true);
            CHECK(head.status == 200);
            CHECK(head.body.empty());
            CHECK(head.keep_alive);  // a HEAD response ends at its blank line: no close needed
            if (minor == 1) CHECK_THAT(head.head, Catch::Contains("Transfer-Encoding: chunked"));  // as the GET's
            // A pipelined request after it is answered, so no body bytes came between.
            const auto after = read_response(fd, pending);
            CHECK(after.status == 200);
            CHECK(after.body == "5");
        }
    });
}

TEST_CASE("http: Expect: 100-continue gets 100 before the body is sent, and none when refused", "[http]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    serve_while(kind, {}, [](std::uint16_t port) {
        {
            const int fd = connect_blocking(port);
            REQUIRE(fd >= 0);
            fd_guard guard{fd};
            REQUIRE(send_all(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"));
            std::string pending;
            const auto interim = read_response(fd, pending);  // the client waits for this before its body
            CHECK(interim.status == 100);
            CHECK(interim.head.starts_with("HTTP/1.1 100 Continue\r\n"));
            CHECK(pending.empty());
            REQUIRE(send_all(fd, "hello"));
            const auto r = read_response(fd, pending);
            CHECK(r.status == 200);
            CHECK(r.body == "hello");
            CHECK(r.keep_alive);
        }
        {  // over the route's limit: the final answer at once, no 100, and a close
            const int fd = connect_blocking(port);
            REQUIRE(fd >= 0);
            fd_guard guard{fd};
            REQUIRE(send_all(fd, "POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n"));
            std::string pending;
            const auto r = read_response(fd, pending);
            CHECK(r.status == 413);
            CHECK_FALSE(r.keep_alive);
            CHECK(closed_by_server(fd));
        }
    });
}

TEST_CASE("http: a body nobody reads is never parsed as the next request", "[http]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    // Each body is a whole request of its own: answering it would be request smuggling.
    const std::string hidden = "GET /n/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    const std::string length = "Content-Length: " + std::to_string(hidden.size()) + "\r\n\r\n" + hidden;
    std::string chunk_size(8, '\0');
    chunk_size.resize(static_cast<std::size_t>(std::snprintf(chunk_size.data(), chunk_size.size(), "%zx", hidden.size())));
    const std::string chunked = "Transfer-Encoding: chunked\r\n\r\n" + chunk_size + "\r\n" + hidden + "\r\n0\r\n\r\n";
    const std::vector<std::pair<std::string, int>> cases{
        {"POST /plaintext HTTP/1.1\r\nHost: x\r\n" + length, 405},  // a GET-only path
        {"POST /plaintext HTTP/1.1\r\nHost: x\r\n" + chunked, 405},
        {"POST /missing HTTP/1.1\r\nHost: x\r\n" + length, 404},
        {"POST /ignore HTTP/1.1\r\nHost: x\r\n" + length, 200},     // a handler that ignores its body
        {"POST /ignore HTTP/1.1\r\nHost: x\r\n" + chunked, 200},
    };
    serve_while(kind, {}, [&](std::uint16_t port) {
        for (const auto& [request, status] : cases) {
            INFO(request);
            const int fd = connect_blocking(port);
            REQUIRE(fd >= 0);
            fd_guard guard{fd};
            REQUIRE(send_all(fd, request));
            std::string pending;
            const auto r = read_response(fd, pending);
            CHECK(r.status == status);
            CHECK_FALSE(r.keep_alive);
            CHECK(pending.empty());
            CHECK(ends_here(fd));
        }
    });
}
