// The core's side of cross-core mail: posting into peers' inboxes (or a local outbox when one
// is full), the batched wake-ups, and delivering what arrived. See mailbox.hpp for the ring.
#include <coring/core.hpp>
#include <coring/log.hpp>

#include <atomic>
#include <cstdlib>

namespace coring {

void core::join_group(std::vector<core*> peers, detail::run_group* group) {
    peers_ = std::move(peers);
    group_ = group;
    outboxes_.assign(peers_.size(), {});
}

void core::require_core(unsigned k, const char* what) const noexcept {
    if (k < peers_.size()) return;
    log("{}({}): this run has {} core(s)", what, k, peers_.size());
    std::abort();
}

void core::post(detail::mail& m) noexcept {
    // Once pushed, m belongs to the destination: it may be delivered, rewritten as the reply,
    // even freed, before try_push returns here. Read what we need from it first.
    const unsigned to = m.to;
    outbox& out = outboxes_[to];
    m.next = nullptr;
    if (out.head || !peers_[to]->inbox_.try_push(&m)) {  // keep order behind earlier overflow
        (out.tail ? out.tail->next : out.head) = &m;
        out.tail = &m;
        ++outbox_pending_;
        ++stats_.mail_deferred;
    }
    if (!out.wake && to != id_) {
        out.wake = true;
        sent_to_.push_back(to);
    }
}

void core::send_mail() noexcept {
    if (outbox_pending_ > 0) {
        for (unsigned k = 0; k < outboxes_.size(); ++k) {
            outbox& out = outboxes_[k];
            while (out.head) {
                detail::mail* next = out.head->next;  // before the push: then it is not ours
                if (!peers_[k]->inbox_.try_push(out.head)) break;
                out.head = next;
                --outbox_pending_;
            }
            if (!out.head) out.tail = nullptr;
            if (!out.wake && k != id_) {
                out.wake = true;
                sent_to_.push_back(k);
            }
        }
    }
    if (sent_to_.empty()) return;
    std::atomic_thread_fence(std::memory_order_seq_cst);  // pushes before the sleeping checks
    for (unsigned k : sent_to_) {
        outboxes_[k].wake = false;
        core& dest = *peers_[k];
        if (!dest.sleeping_.exchange(false)) continue;  // awake: it drains its inbox every turn
        ++stats_.wakes_sent;
        if (!backend_->post_wake(dest.backend_->ring_fd())) dest.ring_doorbell();
    }
    sent_to_.clear();
}

void core::receive_mail() noexcept {
    // At most one inbox's worth per turn, so a flood cannot keep this core from its own I/O.
    for (std::size_t n = 0; n < 4096; ++n) {
        detail::mail* m = inbox_.try_pop();
        if (!m) break;
        ++stats_.mail_received;
        m->deliver(*m);
    }
}

void core::wake_failed(int ring_fd) noexcept {
    for (core* p : peers_)
        if (p->backend_->ring_fd() == ring_fd) p->ring_doorbell();  // the eventfd always works
}

}  // namespace coring
