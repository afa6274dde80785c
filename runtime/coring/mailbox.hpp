#pragma once
// Cross-core mail. Each core has one inbox: a bounded lock-free ring that any thread may push
// to and only its core pops (multi-producer, single-consumer). A mail is an intrusive node that
// lives in the sender's coroutine frame (submit_to's awaitable), so posting allocates nothing;
// it travels to the target core and, as the reply, back again.
#include <atomic>
#include <cstddef>
#include <memory>

namespace coring::detail {

struct mail {
    void (*deliver)(mail&) noexcept = nullptr;  // runs on the core that takes it out of its inbox
    void* context = nullptr;                    // what deliver works on (the awaitable)
    unsigned to = 0;                            // destination core
    mail* next = nullptr;                       // the sender's outbox, while the inbox is full
};

// Bounded MPSC ring (sequence-numbered slots): a push claims a slot by CAS on the tail and
// publishes it by storing the slot's sequence with release; the single consumer reads slots in
// order and frees each for the next lap.
class mailbox {
public:
    explicit mailbox(std::size_t capacity);  // rounded up to a power of two
    bool try_push(mail* m) noexcept;          // false when full: the caller keeps it and retries
    mail* try_pop() noexcept;                 // consumer only; null when empty
    bool empty() const noexcept;              // consumer only

private:
    struct slot {
        std::atomic<std::size_t> seq;
        mail* item;
    };
    std::unique_ptr<slot[]> slots_;
    std::size_t mask_;
    alignas(64) std::atomic<std::size_t> tail_{0};  // producers
    alignas(64) std::size_t head_ = 0;              // the consumer
};

}  // namespace coring::detail
