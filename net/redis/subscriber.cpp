// redis::subscriber: a set of channels and patterns kept subscribed over reconnects.
//
// hiredis 0.14 calls a subscription's callback for its confirmation, for every message and for
// its unsubscribe, keyed by the name (async.c); every SUBSCRIBE here names one shared callback,
// which dispatches on the push's first element. A push with no reply (the context is being
// freed) is ignored. No other command ever goes on this connection: in subscribed mode its
// reply would be a push too.
#include "link.hpp"

#include <coring/core.hpp>

#include <deque>
#include <functional>
#include <map>
#include <set>
#include <vector>

namespace coring::redis {

namespace detail {

class subscriber_link final : public link {
public:
    using link::link;

    ~subscriber_link() override { answer_all(std::errc::operation_canceled); }

    task<result<void>> subscribe(std::string_view name, bool pattern) {
        sets_[pattern].emplace(name);
        if (!context()) return confirmed(pending_ref{}, std::make_error_code(std::errc::not_connected), 0);
        const std::string_view names[] = {name};
        send(pattern ? "PSUBSCRIBE" : "SUBSCRIBE", names);
        auto* p = new pending;
        confirms_[pattern][std::string{name}].push_back(p);  // the list's reference; the task holds the other
        return confirmed(pending_ref{p}, {}, deadline());
    }

    void unsubscribe(std::string_view name, bool pattern) {
        const auto it = sets_[pattern].find(name);
        if (it == sets_[pattern].end()) return;
        sets_[pattern].erase(it);
        if (!context()) return;
        const std::string_view names[] = {name};
        send(pattern ? "PUNSUBSCRIBE" : "UNSUBSCRIBE", names);
    }

    task<result<message>> next() {
        while (queue_.empty() || closing_) {
            if (closing_) co_return std::errc::operation_canceled;
            data_.reset();
            auto r = co_await data_.wait();
            if (!r) co_return r.error();
        }
        message m = std::move(queue_.front());
        queue_.pop_front();
        queued_bytes_ -= size_of(m);
        // Half empty before the reader goes on: it reads whole 16 KiB batches, not a message at a time.
        if (queued_bytes_ <= opts_.queue_limit / 2) resume_reading();
        co_return m;
    }

    void on_state(std::function<void(link_state)> fn) { on_state_ = std::move(fn); }
    bool up() const noexcept { return connected() && reported_ == link_state::up; }
    std::size_t queued() const noexcept { return queue_.size(); }

private:
    // Inside hiredis's connect callback, so no command can go out before the set does.
    void on_connected() noexcept override {
        batch_left_ = sets_[0].size() + sets_[1].size();
        if (batch_left_ == 0) return notify(link_state::up);
        for (int pattern = 0; pattern < 2; ++pattern) {
            // Up to 1,024 names per command: one command's argument arrays stay small.
            std::vector<std::string_view> names;
            for (const std::string& n : sets_[pattern]) {
                names.push_back(n);
                if (names.size() == 1024) {
                    send(pattern ? "PSUBSCRIBE" : "SUBSCRIBE", names);
                    names.clear();
                }
            }
            if (!names.empty()) send(pattern ? "PSUBSCRIBE" : "SUBSCRIBE", names);
        }
    }

    void on_disconnected() noexcept override {
        batch_left_ = 0;
        answer_all(closing_ ? std::errc::operation_canceled : std::errc::connection_reset);
        notify(link_state::down);
    }

    void answer_all(std::errc why) noexcept {
        for (auto& by_name : confirms_) {
            for (auto& [name, waiting] : by_name)
                for (pending* p : waiting) {
                    p->answer(why);
                    p->release();
                }
            by_name.clear();
        }
    }

    void on_closing() noexcept override { data_.set(); }

    bool reading_paused() const noexcept override { return queued_bytes_ >= opts_.queue_limit; }

    static std::size_t size_of(const message& m) noexcept {
        return sizeof(message) + m.pattern.size() + m.channel.size() + m.payload.size();
    }

    void send(std::string_view verb, std::span<const std::string_view> names) {
        std::vector<const char*> argv{verb.data()};
        std::vector<std::size_t> lens{verb.size()};
        for (std::string_view n : names) {
            argv.push_back(n.data());
            lens.push_back(n.size());
        }
        // Fails only while hiredis is disconnecting (or an UNSUBSCRIBE when nothing is
        // subscribed): either way there is nothing to undo, the next connect sends the set.
        if (redisAsyncCommandArgv(context(), on_push, this, static_cast<int>(argv.size()), argv.data(), lens.data()) ==
            REDIS_OK)
            ++stats_.commands;
    }

    static task<result<void>> confirmed(pending_ref p, std::error_code failed, std::int64_t deadline_ns) {
        auto r = co_await await_answer(std::move(p), failed, deadline_ns);
        if (!r) co_return r.error();
        co_return result<void>{};
    }

    static void on_push(redisAsyncContext* ac, void* r, void*) {
        if (!r) return;  // the context is being freed: on_disconnected says so
        static_cast<subscriber_link*>(ac->data)->dispatch(*static_cast<const redisReply*>(r));
    }

    static std::string_view text(const redisReply& r) noexcept {
        return r.type == REDIS_REPLY_STRING ? std::string_view{r.str, r.len} : std::string_view{};
    }

    void dispatch(const redisReply& r) {
        ++stats_.replies;
        if (r.type != REDIS_REPLY_ARRAY || r.elements < 3) return;  // hiredis asserts the shape before us
        const std::string_view kind = text(*r.element[0]);
        if (kind == "message") {
            // Delivered only while still in the set: nothing arrives after unsubscribe().
            if (sets_[0].contains(text(*r.element[1])))
                enqueue({{}, std::string{text(*r.element[1])}, std::string{text(*r.element[2])}});
        } else if (kind == "pmessage" && r.elements == 4) {
            if (sets_[1].contains(text(*r.element[1])))
                enqueue({std::string{text(*r.element[1])}, std::string{text(*r.element[2])},
                         std::string{text(*r.element[3])}});
        } else if (kind == "subscribe" || kind == "psubscribe") {
            // The re-subscribed set's confirmations come first: it was sent before anything else.
            if (batch_left_ > 0 && --batch_left_ == 0) notify(link_state::up);
            auto& by_name = confirms_[kind[0] == 'p'];
            const auto it = by_name.find(text(*r.element[1]));
            if (it == by_name.end()) return;
            for (pending* p : it->second) {
                p->answer(reply{});
                p->release();
            }
            by_name.erase(it);
        }
    }

    void enqueue(message m) {
        queued_bytes_ += size_of(m);
        queue_.push_back(std::move(m));
        data_.set();
    }

    // on_state's function runs from a task of its own: never inside hiredis's callbacks.
    void notify(link_state s) {
        if (s == reported_) return;
        reported_ = s;
        if (on_state_) tasks_.spawn(report(this, s));
    }
    static task<> report(subscriber_link* self, link_state s) {
        if (self->on_state_) self->on_state_(s);
        co_return;
    }

    std::set<std::string, std::less<>> sets_[2];  // [0] channels, [1] patterns
    // subscribe() calls waiting for Redis's word, by name: [0] channels, [1] patterns.
    std::map<std::string, std::vector<pending*>, std::less<>> confirms_[2];
    // Bounded by opts_.queue_limit bytes, plus what one read (16 KiB) held: see reading_paused.
    std::deque<message> queue_;
    std::size_t queued_bytes_ = 0;
    std::size_t batch_left_ = 0;  // confirmations of the re-subscribed set still to come
    link_state reported_ = link_state::down;
    event data_;
    std::function<void(link_state)> on_state_;
};

}  // namespace detail

subscriber::subscriber(options o) : link_{std::make_unique<detail::subscriber_link>(std::move(o))} { link_->start(); }
subscriber::~subscriber() = default;

task<result<void>> subscriber::subscribe(std::string_view channel) { return link_->subscribe(channel, false); }
task<result<void>> subscriber::psubscribe(std::string_view pattern) { return link_->subscribe(pattern, true); }
void subscriber::unsubscribe(std::string_view channel) { link_->unsubscribe(channel, false); }
void subscriber::punsubscribe(std::string_view pattern) { link_->unsubscribe(pattern, true); }
task<result<message>> subscriber::next() { return link_->next(); }
void subscriber::on_state(std::function<void(link_state)> fn) { link_->on_state(std::move(fn)); }
bool subscriber::connected() const noexcept { return link_->up(); }
std::size_t subscriber::queued() const noexcept { return link_->queued(); }
const client_stats& subscriber::stats() const noexcept { return link_->stats(); }
task<> subscriber::close() { return link_->close(); }

}  // namespace coring::redis
