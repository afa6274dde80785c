#pragma once
// buffered_reader: the one reader every protocol (HTTP, WebSocket, RESP) parses from.
//
// It reads a tcp_stream through recv_lease, so between messages a connection holds no receive
// buffer of its own. What it has received and not yet consumed sits in one of two places:
// - in the current lease, in place: a message that arrived whole in one buffer (the common
//   case: a pipelined burst of requests, a small frame) is parsed where the kernel put it;
// - in the spill, a heap buffer of the reader's: only when a message straddles two receives
//   are its bytes copied, so that peek() can always show them as one contiguous span.
// The spill is bounded (spill_limit): a peer that sends a message bigger than that, without the
// parser consuming any of it, gets std::errc::message_size instead of growing memory. The bound
// is on the bytes waiting before a receive, so they may pass it by one receive buffer (of any
// --buffer-size), but never by two. Parsers
// that stream a large payload (a body, a big frame) consume as they go and never hit it.
//
// At most one lease is held at a time, so a reader pins at most one pool buffer, and none while
// it waits for more bytes: a part of a message left in the lease is spilled before the wait.
#include <coring/buffer_lease.hpp>
#include <coring/result.hpp>
#include <coring/task.hpp>
#include <coring/tcp.hpp>

#include <coroutine>
#include <cstddef>
#include <memory>
#include <span>
#include <string_view>

namespace coring {

class buffered_reader {
public:
    static constexpr std::size_t default_spill_limit = 64 * 1024;

    // The stream must outlive the reader, and nothing else may read from it meanwhile.
    explicit buffered_reader(tcp_stream& stream, std::size_t spill_limit = default_spill_limit) noexcept
        : stream_{&stream}, spill_limit_{spill_limit} {}
    buffered_reader(const buffered_reader&) = delete;
    buffered_reader& operator=(const buffered_reader&) = delete;

    // The bytes received and not consumed, contiguous. Valid until the next fill or consume.
    std::span<const std::byte> peek() const noexcept {
        if (spill_used_ != spill_pos_) return {spill_.get() + spill_pos_, spill_used_ - spill_pos_};
        const auto d = lease_.data();
        return {d.data() + lease_pos_, d.size() - lease_pos_};
    }
    std::string_view peek_text() const noexcept {
        const auto p = peek();
        return {reinterpret_cast<const char*>(p.data()), p.size()};
    }
    std::size_t buffered() const noexcept { return peek().size(); }
    // The first n bytes of peek() are done with (n <= buffered()).
    void consume(std::size_t n) noexcept;
    // The peer closed its side (a fill returned 0): nothing more will arrive.
    bool at_end() const noexcept { return ended_; }

    // Waits for the next received bytes and appends them to what peek() shows. Returns how many
    // arrived; 0 at the end of the stream. Errors: the stream's (connection_reset, timed_out from
    // its idle timeout, operation_canceled), or message_size when the bytes not consumed would
    // pass spill_limit. An awaiter, not a task: a connection waiting for its next message holds
    // no coroutine frame for the wait (await it in the same expression, or with with_timeout).
    class fill_awaiter {
    public:
        explicit fill_awaiter(buffered_reader& r) : reader_{&r}, lease_{r.stream_->recv_lease()} {}
        bool await_ready() noexcept { return reader_->ended_ || lease_.await_ready(); }
        void await_suspend(std::coroutine_handle<> h) noexcept {
            reader_->spill_lease();  // a part of a message waits in the spill, not in a pool buffer
            lease_.await_suspend(h);
        }
        result<std::size_t> await_resume() noexcept {
            if (reader_->ended_) return std::size_t{0};
            return reader_->took(lease_.await_resume());
        }

    private:
        buffered_reader* reader_;
        tcp_stream::recv_lease_awaiter lease_;
    };
    [[nodiscard]] fill_awaiter fill() { return fill_awaiter{*this}; }

    // The bytes up to and including the first `delim`, as a view into peek() (consume it when
    // done). Errors: message_size when `max` bytes came without it (the delimiter would be
    // past max), bad_message when the stream ended inside it; an empty span when it ended
    // before any byte of it.
    [[nodiscard]] task<result<std::span<const std::byte>>> read_until(std::string_view delim, std::size_t max);
    // Exactly n bytes (n <= spill_limit), as a view into peek(). bad_message when the stream
    // ends first (an empty span when it ended before any byte).
    [[nodiscard]] task<result<std::span<const std::byte>>> read_exact(std::size_t n);

private:
    bool append_to_spill(std::span<const std::byte> bytes) noexcept;
    // Before a wait: bytes not consumed that sit in the lease move to the spill, and the pool
    // buffer goes back. A peer that sends half a message and stalls (slowloris) then holds a
    // spill the size of what it sent, not a whole receive buffer: a thousand such peers would
    // otherwise empty the pool, and everyone else's receives would fall back to spare buffers.
    void spill_lease() noexcept;
    result<std::size_t> took(result<buffer_lease> next) noexcept;  // fill's work once bytes came

    tcp_stream* stream_;
    buffer_lease lease_;           // the receive whose bytes peek() shows (unless they are spilled)
    std::size_t lease_pos_ = 0;    // of lease_, the bytes consumed
    std::unique_ptr<std::byte[]> spill_;
    std::size_t spill_capacity_ = 0;
    std::size_t spill_pos_ = 0;    // of the spill, the bytes consumed
    std::size_t spill_used_ = 0;   // of the spill, the bytes filled
    std::size_t spill_limit_;
    bool ended_ = false;
};

}  // namespace coring
