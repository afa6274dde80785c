// pubsub::connection: one client's side of the engine (hub.hpp): its output queue and the
// writer that sends it in gather sends, the output limits that cut a slow subscriber, its
// subscriptions, and its publishes (whose replies wait for the other cores' counts).
#include <coring/pubsub/hub.hpp>
#include "topic.hpp"

#include <coring/pubsub/bus.hpp>

#include <coring/log.hpp>
#include <coring/resp/resp.hpp>

#include <algorithm>
#include <array>
#include <sys/uio.h>

namespace coring::pubsub {

// ---- connection ------------------------------------------------------------------------------

connection::connection(hub& h, tcp_stream& stream, format f)
    : hub_{h}, stream_{stream}, format_{f}, reader_{core::current().current_task()} {
    ++hub_.stats_.connections;
    ++hub_.stats_.accepted;
}

connection::~connection() {
    for (subscription* s : subs_) {
        hub::topic& t = *s->topic;
        (s->prev ? s->prev->next : t.head) = s->next;
        if (s->next) s->next->prev = s->prev;
        const bool pattern = s->pattern;
        delete s;
        --hub_.stats_.subscriptions;
        if (--t.count == 0) hub_.drop_topic(t, pattern);
    }
    drop_queue();
    --hub_.stats_.connections;
}

const limits& connection::hub_limits() const noexcept { return hub_.limits_; }

std::string& connection::reply_tail() {
    // Replies go on into the last frame when nobody else holds it and no send is reading it
    // (growing the string could move its bytes): pipelined replies become one frame.
    if (head_ + in_flight_ < queue_.size()) {
        const frame_ref& last = queue_.back();
        if (!last.shared() && last->ready) return last->bytes;
    }
    queue_.push_back(frame_ref::make());
    return queue_.back()->bytes;
}

void connection::deliver(const frame_ref& f) {
    if (cut_ || closed_) return;
    queue_.push_back(f);
    queued_ += f->bytes.size();
    work_.set();
    const limits& lim = hub_.limits_;
    if (queued_ > lim.hard) {
        cut("over the hard output limit");
    } else if (queued_ > lim.soft) {
        const std::int64_t now = core::now_ns();
        if (soft_since_ == 0) soft_since_ = now;
        else if (now - soft_since_ >= lim.soft_for.count()) cut("over the soft output limit for too long");
    }
}

void connection::cut(const char* why) {
    cut_ = true;
    ++hub_.stats_.slow_cut;
    hub_.stats_.dropped += queue_.size() - head_;
    auto peer = stream_.peer_address();
    log("pubsub: cut slow subscriber {}: {} ({} bytes queued)", peer ? peer->to_string() : std::string{"?"}, why,
        queued_);
    // Both tasks end: the writer's send and the reader's receive fail with ECANCELED. The
    // queue goes when the writer has ended (the kernel may still read the frame it sends).
    core& here = core::current();
    if (writer_) here.cancel_task(*writer_);
    if (reader_) here.cancel_task(*reader_);
    work_.set();
    room_.set();
}

void connection::drop_queue() noexcept {
    for (std::size_t i = head_; i < queue_.size(); ++i)
        if (!queue_[i]->ready) queue_[i]->waiter = nullptr;  // its counts will find nobody
    for (const frame_ref& f : silent_)
        if (f) f->waiter = nullptr;
    silent_ = {};
    silent_head_ = 0;
    queue_.clear();
    head_ = in_flight_ = offset_ = queued_ = 0;
}

void connection::close_output() noexcept {
    closed_ = true;
    work_.set();
}

void connection::release_reply() noexcept {
    --unanswered_;
    // Silent replies are done with once ready. They mostly come back in order; those ready
    // behind one still travelling are swept when the list reaches twice the bound.
    while (silent_head_ < silent_.size() && silent_[silent_head_]->ready) silent_[silent_head_++] = frame_ref{};
    if (silent_head_ == silent_.size()) {
        if (silent_.capacity() > 64) silent_ = {};  // an idle connection keeps no burst-sized array
        else silent_.clear();
        silent_head_ = 0;
    } else if (silent_.size() > 2 * hub_limits().max_unanswered) {
        std::erase_if(silent_, [](const frame_ref& f) { return !f || f->ready; });
        silent_head_ = 0;
    }
    work_.set();
    room_.set();
}

task<result<void>> connection::room() {
    while (!cut_ && crowded()) {
        room_.reset();
        auto woken = co_await room_.wait();
        if (!woken) co_return woken;
    }
    if (cut_) co_return std::errc::operation_canceled;
    co_return result<void>{};
}

bool connection::front_ready() noexcept {
    while (head_ < queue_.size() && queue_[head_]->ready && queue_[head_]->bytes.size() == offset_) {
        queue_[head_++] = frame_ref{};  // ready and empty, or sent whole
        offset_ = 0;
    }
    if (head_ == queue_.size()) {
        if (queue_.capacity() > 64) queue_ = {};  // an idle connection keeps no burst-sized array
        else queue_.clear();
        head_ = 0;
        return false;
    }
    return queue_[head_]->ready;
}

task<> connection::write_loop() {
    writer_ = core::current().current_task();
    // This frame stays small: an idle subscriber waits here; the iovecs live in send_ready's.
    for (;;) {
        if (!front_ready()) {
            if (cut_ || (closed_ && head_ == queue_.size())) break;
            work_.reset();
            auto woken = co_await work_.wait();
            if (!woken) break;
            continue;
        }
        const bool sent = co_await send_ready();
        if (!sent) break;  // the peer went away, or a cut or stop cancelled the send
    }
    // However it ended, the connection is done: the reader must not wait for a peer that can no
    // longer be answered. Nothing is in flight now, so the queue can go.
    writer_ = nullptr;
    if (!closed_ && reader_) core::current().cancel_task(*reader_);
    closed_ = true;
    drop_queue();
    room_.set();
}

std::size_t connection::gather(std::span<iovec, tcp_stream::max_gather> iov) noexcept {
    // Everything ready from the front, up to max_gather frames; a PUBLISH reply still waiting
    // for counts stops it (what follows must go after it).
    std::size_t n = 0;
    std::size_t i = head_;
    for (; i < queue_.size() && n < iov.size() && queue_[i]->ready; ++i) {
        const std::string& bytes = queue_[i]->bytes;
        const std::size_t skip = i == head_ ? offset_ : 0;
        if (bytes.size() > skip) iov[n++] = {const_cast<char*>(bytes.data()) + skip, bytes.size() - skip};
    }
    in_flight_ = i - head_;  // reply_tail must not grow these while the kernel reads them
    return n;
}

void connection::sent(std::size_t left) noexcept {
    queued_ -= left;
    while (left > 0) {  // drop what went out whole
        const std::size_t rest = queue_[head_]->bytes.size() - offset_;
        if (left < rest) {
            offset_ += left;
            return;
        }
        left -= rest;
        queue_[head_++] = frame_ref{};
        offset_ = 0;
    }
}

task<bool> connection::send_ready() {
    std::array<iovec, tcp_stream::max_gather> iov;
    std::size_t n = gather(iov);
    // A WebSocket's own frames (pongs, its close) share the stream: they may go only between
    // whole frames, so a send that ends inside one keeps the lock and sends on to its end.
    mutex::guard shared;
    if (shared_lock_) {
        auto locked = co_await shared_lock_->lock();
        if (!locked) {
            in_flight_ = 0;
            co_return false;
        }
        shared = std::move(*locked);
    }
    for (;;) {
        auto done = co_await stream_.send(std::span<const iovec>{iov.data(), n});
        in_flight_ = 0;
        if (!done) co_return false;
        ++hub_.stats_.sends;
        sent(*done);
        if (!shared.owns_lock() || offset_ == 0) break;
        // Only the rest of the frame it stopped in: the lock goes at that frame's end, however
        // slowly the peer reads and however much more is queued behind it.
        const std::string& rest = queue_[head_]->bytes;
        iov[0] = {const_cast<char*>(rest.data()) + offset_, rest.size() - offset_};
        n = 1;
        in_flight_ = 1;
    }
    shared.unlock();
    if (head_ >= 64 && head_ * 2 >= queue_.size()) {  // the sent front goes; the rest moves up
        queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(head_));
        head_ = 0;
    }
    if (queued_ <= hub_.limits_.soft) soft_since_ = 0;
    if (queued_ <= hub_.limits_.reply_room) room_.set();
    co_return true;
}

task<result<std::size_t>> connection::subscribe(std::string_view name, bool pattern) {
    auto& topics = pattern ? hub_.patterns_ : hub_.channels_;
    const auto known = topics.find(name);
    const auto mine = [&](hub::topic* key) {
        return std::lower_bound(subs_.begin(), subs_.end(), key,
                                [](const subscription* s, const hub::topic* k) { return s->topic < k; });
    };
    if (known != topics.end()) {
        const auto at = mine(known->second.get());
        if (at != subs_.end() && (*at)->topic == known->second.get()) co_return subs_.size();
    }
    if (subs_.size() >= hub_.limits_.max_subscriptions) co_return std::errc::too_many_links;
    hub::topic& t = hub_.topic_of(name, pattern);
    const auto at = mine(&t);
    auto* s = new subscription{this, &t, pattern};
    s->next = t.head;
    if (t.head) t.head->prev = s;
    t.head = s;
    subs_.insert(at, s);
    ++hub_.stats_.subscriptions;
    if (++t.count == 1 && !t.announced) {
        // The first here: every core learns that this one has subscribers of the name before
        // the reply goes out. Our subscription keeps the topic alive meanwhile.
        auto announce = [name = t.name, pattern, k = hub_.core_](hub& h) { h.set_interest(name, pattern, k, true); };
        co_await hub_.all_.invoke_on_all(announce);
        if (hub_.bus_) {  // and the other nodes, through core 0's subscription on the bus
            auto on_bus = [name = t.name, pattern](hub& h) { return h.bus_subscribe(name, pattern); };
            co_await hub_.all_.invoke_on(0, on_bus);
        }
        t.announced = true;
        t.announced_event.set();
    } else if (!t.announced) {
        (void)co_await t.announced_event.wait();  // another connection is announcing it
    }
    s->confirmed = true;  // the caller queues the reply before anything else runs here
    co_return subs_.size();
}

std::size_t connection::unsubscribe(std::string_view name, bool pattern) {
    auto& topics = pattern ? hub_.patterns_ : hub_.channels_;
    const auto found = topics.find(name);
    if (found == topics.end()) return subs_.size();
    hub::topic* t = found->second.get();
    const auto at = std::lower_bound(subs_.begin(), subs_.end(), t,
                                     [](const subscription* s, const hub::topic* key) { return s->topic < key; });
    if (at == subs_.end() || (*at)->topic != t) return subs_.size();
    subscription* s = *at;
    subs_.erase(at);
    (s->prev ? s->prev->next : t->head) = s->next;
    if (s->next) s->next->prev = s->prev;
    delete s;
    --hub_.stats_.subscriptions;
    if (--t->count == 0) hub_.drop_topic(*t, pattern);  // nobody is announcing it: they would count
    return subs_.size();
}

std::vector<std::string> connection::names(bool pattern) const {
    std::vector<std::string> out;
    for (const subscription* s : subs_)
        if (s->pattern == pattern) out.push_back(s->topic->name);
    return out;
}

void connection::publish(std::string_view channel, std::string_view payload) {
    ++hub_.stats_.published;
    const std::uint32_t local = hub_.deliver_local(channel, payload);
    const hub::core_mask others = hub_.interested(channel) & ~(hub::core_mask{1} << hub_.core_);
    const bool silent = format_ != format::resp;
    if (others == 0 && !hub_.bus_) {
        if (!silent) reply_with([local](std::string& out) { resp::append_integer(out, local); });
        return;
    }
    // The reply waits in line for the other cores' counts and for the bus to take the message;
    // what is queued after it waits too. A silent one is never sent, so it waits apart (the
    // connection's deliveries and acknowledgements go on), counted until it is ready: that
    // bounds the publisher.
    frame_ref reply = frame_ref::make();
    reply->ready = false;
    reply->silent = silent;
    reply->waiter = this;
    reply->receivers = local;
    reply->parts = static_cast<std::uint8_t>((others != 0) + (hub_.bus_ != nullptr));
    if (silent) silent_.push_back(reply);
    else queue_.push_back(reply);
    ++unanswered_;
    if (hub_.bus_) hub_.bus_->publish(channel, payload, reply);
    if (others != 0) hub_.queue_remote(others, channel, payload, std::move(reply));
}

}  // namespace coring::pubsub
