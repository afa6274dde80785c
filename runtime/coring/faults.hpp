#pragma once
// Faults on purpose (docs/ARCHITECTURE.md, "Fault injection"). With a seed, either backend turns
// its answers into others the kernel may legally give: short receives and sends, EINTR, ENOBUFS
// from an empty buffer ring, spurious readiness (epoll), a full SQ (io_uring), accept failures
// (ECONNABORTED, EMFILE), completions held for a few loop turns and delivered out of order, and,
// only when asked for, resets (ECONNRESET, EPIPE). Code that is right for every kernel answer
// passes the suite under any seed; a seed that fails is printed, so it can be replayed.
//
// `--faults SEED[:NAME=RATE,...]` (any app), or the environment: CORING_FAULTS=SEED[:...]. Off by
// default, and then free: the core checks one pointer where an op starts and where it completes.
#include <coring/result.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <sys/uio.h>
#include <vector>

namespace coring {

struct op;

enum class fault : std::uint8_t {
    short_io,  // a receive or send of fewer bytes than asked (the op's length cut at random)
    eintr,     // a receive, send or accept answered EINTR (the core starts it again)
    enobufs,   // a receive from the buffer pool answered ENOBUFS (the ring ran dry)
    eagain,    // epoll: a ready fd answers EAGAIN and is woken again (spurious readiness)
    sq_full,   // io_uring: no SQE free, so the batch goes to the kernel first
    delay,     // a completion held for 1-3 loop turns; those due together go in random order
    accept,    // an accept answered ECONNABORTED or EMFILE
    reset,     // a receive answered ECONNRESET, a send EPIPE (the connection is then dropped)
};
inline constexpr std::size_t fault_kinds = 8;
std::string_view to_string(fault f) noexcept;

struct fault_config {
    bool on = false;
    std::uint64_t seed = 0;
    // The chance, per op that could meet it, of each fault. A bare seed gives the defaults: every
    // fault but `reset`, whose effect a client sees (use "SEED:reset=0.01" for it).
    std::array<double, fault_kinds> rates{0.2, 0.02, 0.02, 0.1, 0.05, 0.1, 0.05, 0.0};

    // "SEED" or "SEED:NAME=RATE,..." (names as to_string(fault) gives them, e.g. short_io=0.5);
    // "off" or "" is off. An error names what is wrong.
    static result<fault_config> parse(std::string_view text, std::string* error = nullptr);
    // CORING_FAULTS, read once. A value that does not parse ends the process (exit 2) with the
    // reason: a test run that meant to inject faults must not pass without them.
    static fault_config from_environment();
    std::string describe() const;  // "seed 42: short_io 0.2, eintr 0.02, ..."
};

using fault_counts = std::array<std::uint64_t, fault_kinds>;

namespace detail {

// One core's dice (its own seeded generator: seed and core id) and what it changed in ops that
// are in flight, to undo it before their owners look.
class fault_injector {
public:
    fault_injector(const fault_config& cfg, unsigned core_id) noexcept;

    bool hit(fault f) noexcept;              // rolls; counts a hit
    std::uint32_t below(std::uint32_t n) noexcept;  // uniform in [0, n), n > 0
    // Before the backend sees o: an error to answer at once instead (0: none), or o's length cut
    // short (receives and sends; a send_msg's iovecs), which after_completion puts back.
    int before_start(op& o, std::uint32_t buffer_size) noexcept;
    void after_completion(op& o) noexcept;
    // o moved to heir, or (null) is gone: its cut, if any, follows it or is dropped (core::withdraw).
    void moved(op& o, op* heir) noexcept;
    const fault_counts& counts() const noexcept { return counts_; }

private:
    std::uint64_t state_;
    std::array<std::uint32_t, fault_kinds> thresholds_;  // rate scaled to 2^32
    fault_counts counts_{};
    struct cut {
        op* o;
        std::uint32_t len;       // recv/send: the length asked for
        iovec* iov = nullptr;    // send_msg: the caller's iovecs and their count
        std::size_t iov_count = 0;
        std::vector<iovec> copy;  // send_msg: what the op sends instead (the first pieces, the last cut)
    };
    std::vector<cut> cuts_;  // ops in flight with a cut length (few: one per shortened op)
};

}  // namespace detail
}  // namespace coring
