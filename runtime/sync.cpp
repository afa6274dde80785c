#include <coring/log.hpp>
#include <coring/sync.hpp>

#include <cstdlib>
#include <stdexcept>

namespace coring {

// ---- wait_queue ------------------------------------------------------------------------------

namespace detail {

void wait_node::park(op&) noexcept { queue_->push_back(*this); }

void wait_node::unlink(op&) noexcept { queue_->erase(*this); }

wait_queue::~wait_queue() {
    if (head_) {
        log("a sync primitive destroyed while {} task(s) wait in it", size_);
        std::abort();
    }
}

void wait_queue::push_back(wait_node& n) noexcept {
    n.prev_ = tail_;
    n.next_ = nullptr;
    (tail_ ? tail_->next_ : head_) = &n;
    tail_ = &n;
    ++size_;
}

void wait_queue::erase(wait_node& n) noexcept {
    (n.prev_ ? n.prev_->next_ : head_) = n.next_;
    (n.next_ ? n.next_->prev_ : tail_) = n.prev_;
    n.prev_ = n.next_ = nullptr;
    --size_;
}

void wait_queue::grant_front(int res) noexcept {
    wait_node& n = *head_;
    erase(n);
    n.op_.res = res;
    core::current().complete_wait(n.op_);  // through the ready queue
}

}  // namespace detail

// ---- barrier ---------------------------------------------------------------------------------

// A core's share of a barrier: its waiters, and the mail that wakes them. Made by that core,
// read by the phase's last arrival (any core) to post the mail, freed by ~barrier.
struct barrier::core_slot : detail::wait_queue {
    barrier* owner = nullptr;
    core* home = nullptr;
    detail::mail wake_mail;
    std::atomic<bool> mail_in_flight{false};  // wake_mail is posted and not yet delivered
    core_slot* next = nullptr;                // the barrier's list, fixed once pushed
};

namespace {
constexpr std::uint64_t arrivals_mask = 0xffff'ffffu;
std::uint32_t phase_of(std::uint64_t state) noexcept { return static_cast<std::uint32_t>(state >> 32); }
}  // namespace

barrier::barrier(unsigned n) : n_{n} {
    if (n == 0) throw std::invalid_argument("barrier: at least one arrival per phase");
}

barrier::~barrier() {
    for (core_slot* s = slots_.load(); s;) delete std::exchange(s, s->next);  // aborts if one has waiters
}

std::uint32_t barrier::phase() const noexcept { return phase_of(state_.load()); }

barrier::core_slot& barrier::slot_here() {
    core& here = core::current();
    for (core_slot* s = slots_.load(); s; s = s->next)
        if (s->home == &here) return *s;
    // Only this core makes its slot, so there is never a second one; other cores may push theirs
    // at the same time, hence the CAS.
    auto* s = new core_slot;
    s->owner = this;
    s->home = &here;
    s->wake_mail.context = s;
    s->wake_mail.to = here.id();
    s->wake_mail.deliver = &on_mail;
    s->next = slots_.load();
    while (!slots_.compare_exchange_weak(s->next, s)) {
    }
    return *s;
}

barrier::arrive_awaiter barrier::arrive_and_wait() { return arrive_awaiter{*this, slot_here()}; }

barrier::arrive_awaiter::arrive_awaiter(barrier& b, core_slot& s) noexcept
    : wait_node{s}, barrier_{b}, slot_{s} {}

bool barrier::arrive_awaiter::await_ready() noexcept {
    if (detail::refuses_waits()) return false;  // a cancelled task does not arrive: start fails it
    if (!barrier_.arrive(phase_)) return false;  // parks in its core's slot, in await_suspend
    // The last arrival: every waiter goes, and this task goes on without waiting.
    barrier_.release(slot_);
    return true;
}

bool barrier::arrive(std::uint32_t& phase) noexcept {
    // One CAS both counts this arrival and, for the n-th, starts the next phase: each arrival
    // belongs to exactly one phase. Everything before (the slot push) is visible to the last.
    std::uint64_t s = state_.load();
    for (;;) {
        phase = phase_of(s);
        const bool last = (s & arrivals_mask) + 1 == n_;
        const std::uint64_t next = last ? std::uint64_t{phase + 1u} << 32 : s + 1;
        if (state_.compare_exchange_weak(s, next)) return last;
    }
}

void barrier::release(core_slot& here) noexcept {
    wake(here);
    core& me = core::current();
    for (core_slot* s = slots_.load(); s; s = s->next) {
        if (s == &here) continue;
        if (s->wake_mail.to >= me.core_count() || &me.peer(s->wake_mail.to) != s->home) {
            log("barrier: used by cores of different runs (a barrier serves the cores of one run)");
            std::abort();
        }
        // One mail per slot at a time: if one is already on its way, it reads the phase when it
        // arrives (after clearing the flag), so it covers this phase too.
        if (!s->mail_in_flight.exchange(true)) me.post(s->wake_mail);
    }
}

void barrier::on_mail(detail::mail& m) noexcept {
    auto& s = *static_cast<core_slot*>(m.context);
    s.mail_in_flight.store(false);  // before reading the phase: a later release posts again
    wake(s);
}

void barrier::wake(core_slot& s) noexcept {
    // Waiters queue in the order they arrived, so those of completed phases come first.
    const std::uint32_t current = phase_of(s.owner->state_.load());
    while (!s.empty() && static_cast<arrive_awaiter&>(s.front()).phase_ != current) s.grant_front(0);
}

}  // namespace coring
