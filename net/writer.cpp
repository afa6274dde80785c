#include <coring/log.hpp>
#include <coring/writer.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

namespace coring {

writer::writer(tcp_stream& stream, std::size_t max_queued) : stream_{stream}, limit_{std::max<std::size_t>(1, max_queued)} {
    flusher_.spawn(flush_loop());
}

writer::~writer() {
    if (flusher_.size() != 0) {  // the flusher would use a dead writer
        log("writer destroyed while its flusher runs: co_await close() first");
        std::abort();
    }
}

bool writer::write_awaiter::await_ready() {
    writer& w = writer_;
    if (detail::refuses_waits()) return false;  // core::start fails it: nothing is queued
    if (w.error_) return finish_now(-w.error_.value());
    if (w.closing_) return finish_now(-EPIPE);
    if (!w.room_waiters_.empty() || w.queued() >= w.limit_) return false;  // waits its turn
    w.append(bytes_);
    return true;
}

bool writer::flush_awaiter::await_ready() noexcept {
    writer& w = writer_;
    if (detail::refuses_waits()) return false;
    if (w.error_) return finish_now(-w.error_.value());
    target_ = w.accepted_;
    return w.sent_ >= target_;
}

void writer::append(std::span<const std::byte> bytes) {
    pending_.insert(pending_.end(), bytes.begin(), bytes.end());
    accepted_ += bytes.size();
    work_.set();  // the flusher runs later: what else is queued before then joins this batch
}

void writer::admit_waiters() noexcept {  // (a failed allocation here ends the process)
    while (!room_waiters_.empty() && queued() < limit_) {
        append(static_cast<write_awaiter&>(room_waiters_.front()).bytes_);
        room_waiters_.grant_front(0);
    }
}

void writer::finish_flushes() noexcept {
    while (!flush_waiters_.empty() && static_cast<flush_awaiter&>(flush_waiters_.front()).target_ <= sent_)
        flush_waiters_.grant_front(0);
}

void writer::fail(std::error_code ec) noexcept {
    if (!error_) error_ = ec;
    room_waiters_.grant_all(-error_.value());
    flush_waiters_.grant_all(-error_.value());
}

task<> writer::flush_loop() {
    for (;;) {
        if (pending_.empty()) {
            if (closing_) co_return;  // everything queued is sent
            work_.reset();
            const auto woken = co_await work_.wait();
            if (!woken) {  // cancelled: close() in a cancelled task, or shutdown
                fail(woken.error());
                co_return;
            }
            continue;
        }
        sending_.swap(pending_);  // writers fill the other buffer meanwhile
        unsent_ = sending_.size();
        std::span<const std::byte> rest{sending_};
        while (!rest.empty()) {
            ++sends_;
            const auto sent = co_await stream_.send(rest);
            if (!sent) {
                fail(sent.error());
                co_return;
            }
            rest = rest.subspan(*sent);
            unsent_ -= *sent;
            sent_ += *sent;
            finish_flushes();
            admit_waiters();
        }
        sending_.clear();  // keeps its capacity for the next batch
    }
}

task<result<void>> writer::close() {
    closing_ = true;
    room_waiters_.grant_all(-EPIPE);  // not queued, and now never will be
    work_.set();                      // the flusher sends what is queued, then ends
    if (detail::refuses_waits()) flusher_.cancel();  // this task cannot wait for a peer to read
    // A join: cancelling this task (or its with_timeout deadline) cancels the flusher, and the
    // join still waits until it has ended, so the writer may be destroyed right after.
    co_await flusher_.join();
    if (error_) co_return error_;
    co_return result<void>{};
}

}  // namespace coring
