#pragma once
// channel<T>: a bounded FIFO between the tasks of one core (no atomics, no locks).
//
// Bounded, always (capacity >= 1): every queue a peer can fill is bounded, so a sender that
// outruns its receivers waits in send() (back-pressure) instead of growing memory. The ring is
// allocated once, in the constructor; sending and receiving allocate nothing.
//
// Every value is delivered exactly once or stays with its sender:
// - a send that completes has enqueued its value (or handed it to a waiting receiver); a send
//   that fails (closed, cancelled, timed out) has not, and its value is dropped with the awaiter;
// - a receive that completes has taken exactly one value; one that fails has taken none. A
//   receiver is handed its value at the moment it is let go, so a cancel that arrives later
//   finds it already granted and the value is returned, not lost.
// close(): later sends and every waiting sender fail with broken_pipe (EPIPE); receivers take
// what is queued, then get broken_pipe too. Waits are cancellable as described in sync.hpp.
#include <coring/result.hpp>
#include <coring/sync.hpp>

#include <cerrno>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

namespace coring {

template <class T>
class channel {
    static_assert(std::is_nothrow_move_constructible_v<T>, "a value in flight must move without throwing");

public:
    explicit channel(std::size_t capacity) : ring_(capacity) {
        if (capacity == 0) throw std::invalid_argument("channel: capacity must be at least 1");
    }
    channel(const channel&) = delete;
    channel& operator=(const channel&) = delete;

    class [[nodiscard]] send_awaiter final : public detail::wait_node {
    public:
        send_awaiter(channel& c, T value) noexcept : wait_node{c.senders_}, channel_{c}, value_{std::move(value)} {}
        bool await_ready() noexcept {
            if (detail::refuses_waits()) return false;  // core::start fails it: nothing is enqueued
            if (channel_.closed_) return finish_now(-EPIPE);
            if (!channel_.has_room()) return false;     // parks until a receiver makes room
            channel_.put(std::move(value_));
            return true;
        }
        void await_suspend(std::coroutine_handle<> h) noexcept { suspend(h); }
        // Success: the value is in the channel. broken_pipe: closed; ECANCELED/ETIMEDOUT.
        result<void> await_resume() const noexcept { return status(); }

    private:
        friend class channel;
        channel& channel_;
        T value_;  // until enqueued; a parked sender's value moves in when room appears
    };

    class [[nodiscard]] receive_awaiter final : public detail::wait_node {
    public:
        explicit receive_awaiter(channel& c) noexcept : wait_node{c.receivers_}, channel_{c} {}
        bool await_ready() noexcept {
            if (detail::refuses_waits()) return false;  // core::start fails it: nothing is taken
            if (channel_.size_ > 0) {
                slot_.emplace(channel_.take());
                return true;
            }
            if (channel_.closed_) return finish_now(-EPIPE);
            return false;  // parks until a sender hands it a value
        }
        void await_suspend(std::coroutine_handle<> h) noexcept { suspend(h); }
        // The next value; broken_pipe once closed and drained; ECANCELED/ETIMEDOUT.
        result<T> await_resume() noexcept {
            if (res() < 0) return to_error(res());
            return std::move(*slot_);
        }

    private:
        friend class channel;
        channel& channel_;
        std::optional<T> slot_;  // filled by await_ready, or by the sender that lets it go
    };

    send_awaiter send(T value) noexcept { return send_awaiter{*this, std::move(value)}; }
    receive_awaiter receive() noexcept { return receive_awaiter{*this}; }

    // Without waiting: success (value moved from), or resource_unavailable_try_again (full:
    // value untouched), or broken_pipe (closed: value untouched).
    result<void> try_send(T&& value) noexcept {
        if (closed_) return std::errc::broken_pipe;
        if (!has_room()) return std::errc::resource_unavailable_try_again;
        put(std::move(value));
        return {};
    }
    // Without waiting: a value, or resource_unavailable_try_again (empty), or broken_pipe
    // (closed and drained).
    result<T> try_receive() noexcept {
        if (size_ > 0) return take();
        if (closed_) return std::errc::broken_pipe;
        return std::errc::resource_unavailable_try_again;
    }

    // No more values: waiting senders fail (their values are not enqueued), waiting receivers
    // get broken_pipe (nothing is queued while they wait), queued values stay to be received.
    void close() noexcept {
        closed_ = true;
        senders_.grant_all(-EPIPE);
        receivers_.grant_all(-EPIPE);
    }

    bool is_closed() const noexcept { return closed_; }
    std::size_t size() const noexcept { return size_; }
    std::size_t capacity() const noexcept { return ring_.size(); }
    std::size_t waiting_senders() const noexcept { return senders_.size(); }
    std::size_t waiting_receivers() const noexcept { return receivers_.size(); }

private:
    // Invariants: senders wait only while the ring is full, receivers only while it is empty.
    bool has_room() const noexcept { return size_ < ring_.size() || !receivers_.empty(); }

    // A value goes to the first waiting receiver, else into the ring (has_room() holds).
    void put(T&& value) noexcept {
        if (!receivers_.empty()) {
            static_cast<receive_awaiter&>(receivers_.front()).slot_.emplace(std::move(value));
            return receivers_.grant_front(0);
        }
        ring_[(head_ + size_) % ring_.size()].emplace(std::move(value));
        ++size_;
    }

    // The oldest value (size_ > 0); the first waiting sender's value takes the freed place.
    T take() noexcept {
        std::optional<T>& front = ring_[head_];
        T value = std::move(*front);
        front.reset();
        head_ = (head_ + 1) % ring_.size();
        --size_;
        if (!senders_.empty()) {
            put(std::move(static_cast<send_awaiter&>(senders_.front()).value_));
            senders_.grant_front(0);
        }
        return value;
    }

    std::vector<std::optional<T>> ring_;  // capacity slots, allocated once
    std::size_t head_ = 0;
    std::size_t size_ = 0;
    bool closed_ = false;
    detail::wait_queue senders_;    // each holds its value until room appears
    detail::wait_queue receivers_;  // each gets its value in its own slot
};

}  // namespace coring
