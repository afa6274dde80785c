#pragma once
// Per-core counters (DESIGN.md §10). Plain integers: each core writes only its own.
#include <coring/faults.hpp>

#include <cstdint>
#include <string>

namespace coring {

struct backend_stats {
    std::uint64_t ops_started = 0;
    std::uint64_t sqes_submitted = 0;   // io_uring
    std::uint64_t enter_calls = 0;      // io_uring_enter / epoll_wait calls
    std::uint64_t completions = 0;      // CQEs reaped / readiness-driven completions
    std::uint64_t sq_full_waits = 0;    // io_uring_get_sqe found no room
    std::uint64_t parked_for_cq = 0;    // ops held back so the CQ cannot overflow
    std::uint64_t cq_overflow = 0;      // kernel overflow count (must stay 0)
    std::uint64_t cq_overcommits = 0;   // parked ops let in past the limit after a stall (see poll)
    std::uint64_t cancels = 0;
    std::uint64_t withdrawals = 0;      // io_uring: ops in the kernel whose last CQEs were waited for on the spot (core::withdraw)
    std::uint64_t eagain_retries = 0;   // epoll: ops that parked to wait for readiness
    std::uint64_t multishot_arms = 0;   // multishot SQEs submitted (each may bring many CQEs)
    std::uint64_t buffers_in_use = 0;   // pool buffers held by the kernel's results or by leases
    std::uint64_t pool_bytes = 0;       // the receive pool's mapping (0 until first used)
    std::uint64_t pool_touched_bytes = 0;  // of it, buffers whose pages may be resident now
    std::uint64_t buffers_trimmed = 0;  // cold buffers whose pages went back to the kernel
    std::uint64_t buffer_waits = 0;     // readers that found pool and spares used up, and waited
    std::uint64_t spare_buffers = 0;    // receives into a spare buffer because the pool was empty
    std::uint64_t buffer_ring_grows = 0;  // io_uring: the ring ran dry with buffers free, and grew
    std::uint64_t gather_sends = 0;     // sendmsg ops (several pieces in one send)
    std::uint64_t recv_bundles = 0;     // io_uring: receive completions that filled buffers as a bundle
    std::uint64_t bundle_buffers = 0;   // the buffers those bundles filled
    std::uint64_t zc_sends = 0;         // io_uring: sends submitted as SEND_ZC
    std::uint64_t zc_notifications = 0; // their notifications (the kernel let go of the buffer)
    std::uint64_t zc_copied = 0;        // notifications saying the kernel copied after all (loopback does)
    std::uint64_t zc_fallbacks = 0;     // SEND_ZC refused (EOPNOTSUPP): sent again as a plain send
    std::uint64_t zc_resets = 0;        // zerocopy sends cancelled in flight: their connection was reset
    std::uint64_t fixed_sends = 0;      // SEND_ZC from a registered pool buffer
    std::uint64_t sq_thread_cpu_us = 0; // io_uring SQPOLL: the kernel SQ thread's CPU time (user + system)
    std::uint64_t direct_fallbacks = 0;   // io_uring: accepts that got a real fd, the file table being full
    std::uint64_t fd_installs = 0;        // io_uring: real fds made for direct descriptors (install_fd)
    std::uint64_t file_ops_inline = 0;    // epoll: file ops answered without blocking (cached pages, cached paths)
    std::uint64_t file_ops_pooled = 0;    // epoll: file ops handed to the blocking pool
};

struct core_stats {
    std::uint64_t tasks_spawned = 0;
    std::uint64_t resumes = 0;          // coroutines run from the ready queue
    std::uint64_t loop_turns = 0;
    std::uint64_t timers_fired = 0;
    std::uint64_t mail_received = 0;    // cross-core messages delivered here
    std::uint64_t wakes_sent = 0;       // doorbells rung for sleeping peers
    std::uint64_t mail_deferred = 0;    // posts that found the destination inbox full
    backend_stats backend;
    fault_counts faults{};  // faults injected, by kind (faults.hpp); all 0 when off

    core_stats& operator+=(const core_stats& o) noexcept;
};

// One line, "name=value" pairs, for --stats and logs.
std::string to_string(const core_stats& s);

}  // namespace coring
