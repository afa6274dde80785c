#pragma once
// writer: many tasks of one core writing to one tcp_stream, each write whole and in order.
//
// A stream takes one send at a time (socket_base asserts it). The writer owns that direction:
// write() copies the bytes into its queue and returns; one flusher task sends everything queued
// in as few sends as it can (what the writers queued during a loop turn goes out in one send,
// while the previous send is in the kernel the next batch gathers). Nobody else may send on the
// stream while a writer has it. The copy is the point, not an accident a gather send could
// remove: write() returns once queued, so the caller's bytes are free at once; sending from them
// (sendmsg over each write's span) would make every write wait for the kernel, and chunks the
// writer owned one by one would still be a copy, plus an allocation each (docs/ARCHITECTURE.md).
//
// Bounded: while `max_queued` bytes or more wait to be sent, write() waits (back-pressure), in
// the order the writers came; a write bigger than the bound goes once the queue is below it
// (a bound of 0 counts as 1: one write at a time).
// Errors are sticky: the first failed send fails every waiting write and flush, and every later
// one, with its error (EPIPE, ECONNRESET, ETIMEDOUT from an idle timeout, ...).
//
// Ownership: the writer borrows the stream (which must outlive it) and owns the flusher, a
// child task in its own task_group. co_await close() before destroying it: close ends the
// flusher (the destructor aborts if it still runs, as task_group's does). Waits are cancellable
// as described in sync.hpp; close() in a cancelled task (or under a passed with_timeout
// deadline) cancels the flusher instead of waiting for the queue to drain.
#include <coring/result.hpp>
#include <coring/sync.hpp>
#include <coring/task.hpp>
#include <coring/task_group.hpp>
#include <coring/tcp.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <system_error>
#include <vector>

namespace coring {

class writer {
public:
    static constexpr std::size_t default_max_queued = 256 * 1024;

    // Starts the flusher on the current core (the stream's).
    explicit writer(tcp_stream& stream, std::size_t max_queued = default_max_queued);
    writer(const writer&) = delete;
    writer& operator=(const writer&) = delete;
    ~writer();

    class [[nodiscard]] write_awaiter final : public detail::wait_node {
    public:
        write_awaiter(writer& w, std::span<const std::byte> bytes) noexcept
            : wait_node{w.room_waiters_}, writer_{w}, bytes_{bytes} {}
        bool await_ready();  // may copy the bytes into the queue
        void await_suspend(std::coroutine_handle<> h) noexcept { suspend(h); }
        // Success: the bytes are queued (copied) and will be sent after everything queued
        // before them. Otherwise the writer's error, broken_pipe after close, ECANCELED/ETIMEDOUT
        // (then nothing of these bytes is queued).
        result<void> await_resume() const noexcept { return status(); }

    private:
        friend class writer;
        writer& writer_;
        std::span<const std::byte> bytes_;  // the caller's, alive while it awaits
    };
    // The bytes are copied when queued; until then they must stay put, so await the call in the
    // expression that makes it: co_await w.write(msg).
    write_awaiter write(std::span<const std::byte> bytes) noexcept { return write_awaiter{*this, bytes}; }
    write_awaiter write(std::string_view text) noexcept { return write(std::as_bytes(std::span{text})); }

    class [[nodiscard]] flush_awaiter final : public detail::wait_node {
    public:
        explicit flush_awaiter(writer& w) noexcept : wait_node{w.flush_waiters_}, writer_{w} {}
        bool await_ready() noexcept;
        void await_suspend(std::coroutine_handle<> h) noexcept { suspend(h); }
        // Success once the kernel took every byte queued before the flush; else the error.
        result<void> await_resume() const noexcept { return status(); }

    private:
        friend class writer;
        writer& writer_;
        std::uint64_t target_ = 0;  // writer::sent_ must reach this
    };
    flush_awaiter flush() noexcept { return flush_awaiter{*this}; }

    // No more writes (later ones, and those waiting for room, fail with broken_pipe); waits
    // until the queue is sent and the flusher has ended. The writer's error, if it had one.
    // The stream stays open: shut it down or close it afterwards.
    [[nodiscard]] task<result<void>> close();

    std::size_t queued() const noexcept { return pending_.size() + unsent_; }  // not yet sent
    std::size_t max_queued() const noexcept { return limit_; }
    std::size_t waiting_writes() const noexcept { return room_waiters_.size(); }
    std::uint64_t sends() const noexcept { return sends_; }  // send calls made so far
    std::error_code error() const noexcept { return error_; }

private:
    task<> flush_loop();
    void append(std::span<const std::byte> bytes);
    void admit_waiters() noexcept;
    void finish_flushes() noexcept;
    void fail(std::error_code ec) noexcept;

    tcp_stream& stream_;
    const std::size_t limit_;
    std::vector<std::byte> pending_;  // queued, not yet taken by the flusher
    std::vector<std::byte> sending_;  // the flusher's batch (its buffers are reused)
    std::size_t unsent_ = 0;          // of sending_, what the kernel has not taken yet
    std::uint64_t accepted_ = 0;      // bytes ever queued
    std::uint64_t sent_ = 0;          // bytes ever taken by the kernel
    std::uint64_t sends_ = 0;
    std::error_code error_;
    bool closing_ = false;
    event work_;                       // the flusher waits here for pending_ to fill (or close)
    detail::wait_queue room_waiters_;  // writes waiting for the queue to fall below limit_
    detail::wait_queue flush_waiters_; // in order of target_
    task_group flusher_;               // last: its child uses everything above
};

}  // namespace coring
