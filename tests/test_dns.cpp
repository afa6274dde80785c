// dns::resolve over c-ares on both backends: /etc/hosts and numeric hosts (no query), and real
// queries to a DNS server this test runs on a loopback port: an answer, a name that does not
// exist, a server that never answers (the call ends at its timeout, sockets and waits gone).
#include "support.hpp"

#include <coring/dns.hpp>

#include <arpa/inet.h>
#include <atomic>
#include <thread>

using namespace coring;
using namespace coring::testing;

namespace {

// A UDP DNS server on 127.0.0.1 (a port of its own), in a thread: "svc.coring.test" has the A
// record 127.0.0.2, every other name does not exist; AAAA queries get no data. `silent` drops
// every query instead; `refused` answers every one REFUSED. Ends with the object.
enum class behaviour { answer, silent, refused };
class dns_server {
public:
    explicit dns_server(behaviour b = behaviour::answer) : silent_{b == behaviour::silent}, refused_{b == behaviour::refused} {
        fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd_ >= 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        socklen_t len = sizeof a;
        REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
        port_ = ntohs(a.sin_port);
        timeval tv{0, 50'000};  // the thread looks at stop_ every 50 ms
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        thread_ = std::thread([this] { serve(); });
    }
    ~dns_server() {
        stop_ = true;
        thread_.join();
        ::close(fd_);
    }
    std::string servers() const { return "127.0.0.1:" + std::to_string(port_); }
    int queries() const { return queries_.load(); }

private:
    void serve() {
        unsigned char q[512];
        while (!stop_) {
            sockaddr_in from{};
            socklen_t len = sizeof from;
            const ssize_t n = ::recvfrom(fd_, q, sizeof q, 0, reinterpret_cast<sockaddr*>(&from), &len);
            if (n < 12) continue;
            ++queries_;
            if (silent_) continue;
            // The question: labels from byte 12, then QTYPE and QCLASS.
            std::size_t at = 12;
            std::string name;
            while (at < static_cast<std::size_t>(n) && q[at] != 0) {
                const std::size_t l = q[at];
                if (!name.empty()) name += '.';
                name.append(reinterpret_cast<const char*>(q + at + 1), std::min(l, static_cast<std::size_t>(n) - at - 1));
                at += l + 1;
            }
            const std::size_t question_end = at + 5;  // the 0 label, QTYPE, QCLASS
            if (question_end > static_cast<std::size_t>(n)) continue;
            const int qtype = (q[at + 1] << 8) | q[at + 2];
            const bool known = name == "svc.coring.test";
            const bool answer = known && qtype == 1 && !refused_;
            std::string r(reinterpret_cast<const char*>(q), question_end);
            r[2] = static_cast<char>(0x81);               // QR, RD
            r[3] = static_cast<char>(refused_ ? 0x85 : known ? 0x80 : 0x83);  // RA; REFUSED, or NXDOMAIN for the unknown
            r[6] = 0;
            r[7] = answer ? 1 : 0;  // ANCOUNT
            r[8] = r[9] = r[10] = r[11] = 0;
            if (answer) {
                const unsigned char rr[] = {0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 2};
                r.append(reinterpret_cast<const char*>(rr), sizeof rr);
            }
            ::sendto(fd_, r.data(), r.size(), 0, reinterpret_cast<sockaddr*>(&from), len);
        }
    }

    bool silent_;
    bool refused_;
    int fd_ = -1;
    std::uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::atomic<int> queries_{0};
    std::thread thread_;
};

std::vector<std::string> texts(const std::vector<address>& found) {
    std::vector<std::string> out;
    for (const address& a : found) out.push_back(a.to_string());
    return out;
}

}  // namespace

TEST_CASE("dns: numeric hosts and /etc/hosts answer without a query", "[dns]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    test_core c{kind};
    auto v4 = c.run_for(5s, dns::resolve("127.0.0.1", 6379));
    REQUIRE(v4);
    CHECK(texts(*v4) == std::vector<std::string>{"127.0.0.1:6379"});
    auto v6 = c.run_for(5s, dns::resolve("::1", 80));
    REQUIRE(v6);
    CHECK(texts(*v6) == std::vector<std::string>{"[::1]:80"});
    auto local = c.run_for(5s, dns::resolve("localhost", 7000));  // /etc/hosts
    INFO(local.error().message());
    REQUIRE(local);
    REQUIRE_FALSE(local->empty());
    for (const std::string& t : texts(*local)) CHECK((t == "127.0.0.1:7000" || t == "[::1]:7000"));
}

TEST_CASE("dns: a query to a server on loopback: an address, a name that does not exist", "[dns]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    dns_server server;
    test_core c{kind};
    c.run_for(1s, []() -> task<> { co_return; }());  // the core's own op (its doorbell) is armed
    const std::size_t baseline = c->io().in_flight();
    dns::options opts;
    opts.servers = server.servers();
    auto found = c.run_for(10s, dns::resolve("svc.coring.test", 6379, opts));
    INFO(found.error().message());
    REQUIRE(found);
    CHECK(texts(*found) == std::vector<std::string>{"127.0.0.2:6379"});
    auto missing = c.run_for(10s, dns::resolve("nothing.coring.test", 6379, opts));
    REQUIRE_FALSE(missing);
    CHECK(&missing.error().category() == &dns::category());
    CHECK(missing.error().message() == "Domain name not found");
    CHECK(server.queries() >= 2);
    // Both calls left nothing behind: no wait of theirs is still in flight.
    CHECK(c->io().in_flight() == baseline);
}

TEST_CASE("dns: a server that never answers: the call ends at its timeout, nothing left waiting", "[dns]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    dns_server server{behaviour::silent};
    test_core c{kind};
    c.run_for(1s, []() -> task<> { co_return; }());  // the core's own op (its doorbell) is armed
    const std::size_t baseline = c->io().in_flight();
    const auto start = std::chrono::steady_clock::now();
    dns::options quick;
    quick.servers = server.servers();
    quick.timeout = 300ms;
    auto r = c.run_for(10s, dns::resolve("svc.coring.test", 80, quick));
    const auto took = std::chrono::steady_clock::now() - start;
    REQUIRE_FALSE(r);
    CHECK(r.error() == std::errc::timed_out);
    CHECK(took < 5s);  // bounded by the call's timeout, not c-ares's own retries
    CHECK(server.queries() >= 1);
    CHECK(c->io().in_flight() == baseline);
    // c-ares's own give-up (tries x 1 s) ends a call with a longer timeout as well.
    dns::options patient = quick;
    patient.timeout = 10000ms;
    patient.tries = 1;
    auto tried = c.run_for(20s, dns::resolve("svc.coring.test", 80, patient));
    REQUIRE_FALSE(tried);
    CHECK(tried.error().message() == "Timeout while contacting DNS servers");
}

TEST_CASE("dns: a server that refuses: c-ares moves on to the next, and the answer comes from there", "[dns]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    INFO(to_string(kind));
    dns_server refusing{behaviour::refused};
    dns_server good;
    test_core c{kind};
    c.run_for(1s, []() -> task<> { co_return; }());  // the core's own op (its doorbell) is armed
    const std::size_t baseline = c->io().in_flight();
    dns::options opts;
    opts.servers = refusing.servers() + "," + good.servers();
    for (int round = 0; round < 3; ++round) {  // sockets opened and closed again, numbers reused
        auto found = c.run_for(10s, dns::resolve("svc.coring.test", 6379, opts));
        INFO(found.error().message());
        REQUIRE(found);
        CHECK(texts(*found) == std::vector<std::string>{"127.0.0.2:6379"});
    }
    CHECK(refusing.queries() >= 3);
    CHECK(good.queries() >= 3);
    CHECK(c->io().in_flight() == baseline);
}
