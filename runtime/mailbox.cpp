#include <coring/mailbox.hpp>

namespace coring::detail {

mailbox::mailbox(std::size_t capacity) {
    std::size_t n = 2;
    while (n < capacity) n *= 2;
    slots_ = std::make_unique<slot[]>(n);
    for (std::size_t i = 0; i < n; ++i) slots_[i].seq.store(i, std::memory_order_relaxed);
    mask_ = n - 1;
}

bool mailbox::try_push(mail* m) noexcept {
    std::size_t pos = tail_.load(std::memory_order_relaxed);
    for (;;) {
        slot& s = slots_[pos & mask_];
        const std::size_t seq = s.seq.load(std::memory_order_acquire);
        const auto diff = static_cast<std::ptrdiff_t>(seq - pos);
        if (diff == 0) {  // free for this lap: claim it
            if (tail_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
                s.item = m;
                s.seq.store(pos + 1, std::memory_order_release);  // publish to the consumer
                return true;
            }
        } else if (diff < 0) {
            return false;  // the consumer has not freed this slot since the last lap: full
        } else {
            pos = tail_.load(std::memory_order_relaxed);  // another producer took it
        }
    }
}

mail* mailbox::try_pop() noexcept {
    slot& s = slots_[head_ & mask_];
    if (s.seq.load(std::memory_order_acquire) != head_ + 1) return nullptr;
    mail* m = s.item;
    s.seq.store(head_ + mask_ + 1, std::memory_order_release);  // free for the next lap
    ++head_;
    return m;
}

bool mailbox::empty() const noexcept {
    return slots_[head_ & mask_].seq.load(std::memory_order_acquire) != head_ + 1;
}

}  // namespace coring::detail
