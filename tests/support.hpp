#pragma once
// Shared test helpers: a core per test on a chosen backend, deadlines, payloads.
#include <catch2/catch.hpp>
#include <coring/coring.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace coring {
// Catch prints a failed result as its error text.
template <class T>
std::ostream& operator<<(std::ostream& out, const result<T>& r) {
    if (r) return out << "value";
    return out << "error: " << r.error().message();
}
}  // namespace coring

namespace coring::testing {

using namespace std::chrono_literals;

// REQUIRE(co_await x) would put the co_await inside Catch's loop condition as well, which g++ 12
// mis-compiles (a co_await in a condition); this awaits into a variable first.
#define CO_REQUIRE(...)                              \
    do {                                             \
        const auto co_require_value_ = (__VA_ARGS__); \
        REQUIRE(co_require_value_);                  \
    } while (false)

// Receives into *out until it holds `expected` bytes; `slowly` yields after each receive, so a
// writer keeps running into a full socket buffer (short sends).
inline task<> read_exactly(tcp_stream* conn, std::vector<std::byte>* out, std::size_t expected, bool slowly) {
    std::array<std::byte, 1024> buf;
    while (out->size() < expected) {
        auto n = co_await conn->recv(buf);
        REQUIRE(n);
        REQUIRE(*n > 0);
        out->insert(out->end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*n));
        if (slowly) co_await yield();
    }
}

// CORING_FAULTS is set (./dev test runs the networking groups again under fault seeds): checks
// that a particular internal path ran (a counter above 0) may not hold then; bytes must.
inline bool faults_on() { return fault_config::from_environment().on; }

// Every networking test runs on both backends: `const auto kind = GENERATE(BOTH_BACKENDS);`
#define BOTH_BACKENDS ::coring::backend_kind::uring, ::coring::backend_kind::epoll

// The configurations recv_lease and feeds have: io_uring with multishot, io_uring one shot at a
// time (as on kernels before 6.0), epoll. `GENERATE(LEASE_SETUPS)`.
struct lease_setup {
    backend_kind kind;
    bool multishot;
};
inline std::string describe(const lease_setup& s) {
    return std::string{to_string(s.kind)} + (s.kind == backend_kind::uring ? (s.multishot ? " multishot" : " single-shot") : "");
}
#define LEASE_SETUPS                                                                   \
    ::coring::testing::lease_setup{::coring::backend_kind::uring, true},               \
        ::coring::testing::lease_setup{::coring::backend_kind::uring, false},          \
        ::coring::testing::lease_setup{::coring::backend_kind::epoll, false}

inline backend_config config_of(const lease_setup& s, unsigned buffers = 1024, unsigned size = 16384) {
    backend_config cfg{s.kind};
    cfg.buffer_count = buffers;
    cfg.buffer_size = size;
    cfg.multishot = s.multishot;
    return cfg;
}

// coring::run on two cores (more than this machine's CPUs is fine: they share), quietly.
inline runtime_options two_cores(backend_kind kind) {
    runtime_options o;
    o.cores = 2;
    o.backend = kind;
    o.quiet = true;
    return o;
}

class test_core {
public:
    explicit test_core(backend_kind kind, unsigned sq_entries = 256, unsigned cq_entries = 0)
        : test_core{backend_config{kind, sq_entries, cq_entries}} {}
    explicit test_core(const backend_config& cfg) : core_{core_config{0, cfg, std::chrono::milliseconds{1000}}} {}

    core& get() noexcept { return core_; }
    core* operator->() noexcept { return &core_; }

    // Runs t to completion; past `limit`, everything is cancelled and the test fails.
    template <class T>
    T run_for(std::chrono::milliseconds limit, task<T> t) {
        return core_.block_on(std::move(t), limit);
    }

private:
    core core_;
};

// Whether a run on `kind` cannot happen here: io_uring may be forbidden by the kernel or a
// container, and then a uring run would fail at start-up rather than test what it is about.
// Says so (WARN) when it skips.
inline bool skip_without(backend_kind kind) {
    if (kind != backend_kind::uring) return false;
    try {
        test_core probe{backend_kind::uring, 8};
        return false;
    } catch (const std::exception& e) {
        WARN("io_uring unavailable here, uring run skipped: " << e.what());
        return true;
    }
}

inline std::vector<std::byte> random_bytes(std::size_t n, std::uint64_t seed) {
    std::mt19937_64 gen{seed};
    std::vector<std::byte> out(n);
    for (std::size_t i = 0; i < n; i += 8) {
        const std::uint64_t v = gen();
        for (std::size_t j = 0; j < 8 && i + j < n; ++j) out[i + j] = std::byte(v >> (8 * j));
    }
    return out;
}

// FNV-1a, continued over several pieces.
inline std::uint64_t fnv1a(std::span<const std::byte> data, std::uint64_t h = 1469598103934665603ull) {
    for (std::byte b : data) h = (h ^ std::uint64_t(b)) * 1099511628211ull;
    return h;
}

// A connected pair on loopback, both ends owned by the current core: {client, server}.
inline task<std::pair<tcp_stream, tcp_stream>> connected_pair() {
    auto listener = tcp_listener::bind("127.0.0.1:0");
    REQUIRE(listener);
    auto where = listener->local_address();
    REQUIRE(where);
    auto client = co_await tcp_stream::connect(*where);
    REQUIRE(client);
    auto server = co_await listener->accept();
    REQUIRE(server);
    co_await listener->close();
    co_return std::pair{std::move(*client), std::move(*server)};
}

inline std::span<const std::byte> as_bytes(std::string_view s) {
    return std::as_bytes(std::span(s.data(), s.size()));
}

}  // namespace coring::testing
