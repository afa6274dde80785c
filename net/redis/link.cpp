#include "link.hpp"

#include <coring/dns.hpp>
#include <coring/log.hpp>
#include <coring/timer.hpp>

#include <algorithm>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <cstdint>
#include <cstdlib>

namespace coring::redis::detail {

void pending::answer(result<reply> r) noexcept {
    if (answer_) return;
    answer_.emplace(std::move(r));
    if (op* w = std::exchange(waiter_, nullptr)) core::current().complete_wait(*w);
}

namespace {
class answer_awaiter {
public:
    answer_awaiter(pending& p, std::int64_t deadline_ns) noexcept : p_{p} {
        op_.buf = static_cast<wait_list*>(&p);
        op_.deadline_ns = deadline_ns;
    }
    answer_awaiter(const answer_awaiter&) = delete;
    bool await_ready() const noexcept { return p_.answered(); }
    void await_suspend(std::coroutine_handle<> h) noexcept {
        op_.waiter = h;
        core::current().start(op_);  // parks in p_ (or fails at once in a cancelled task)
    }
    result<reply> await_resume() noexcept {
        if (op_.res < 0) return to_error(op_.outcome());
        return p_.take();
    }

private:
    pending& p_;
    op op_{op_kind::wait, -1};
};
}  // namespace

task<result<reply>> await_answer(pending_ref p, std::error_code failed, std::int64_t deadline_ns) {
    if (!p.get()) co_return failed;
    co_return co_await answer_awaiter{*p.get(), deadline_ns};
}

link::link(options o) : opts_{std::move(o)} {}

link::~link() {
    if (tasks_.size() != 0) {  // they point at this link; a destructor cannot wait for them
        log("redis {}:{}: destroyed while its tasks run (co_await close() first)", opts_.host, opts_.port);
        std::abort();
    }
    if (ac_) redisAsyncFree(ac_);  // the core's shutdown ended the tasks; the context is left
}

std::int64_t link::deadline() const noexcept {
    return opts_.command_timeout.count() > 0 ? coring::detail::deadline_after(opts_.command_timeout) : 0;
}

void link::start() { tasks_.spawn(connector()); }

// ---- hiredis's hooks (ev.data and ac->data are this link) ----------------------------------

void link::want(int d, bool on) noexcept {
    // A pump switched off from inside its own Handle call sees it when that call returns.
    // Independent: the hook may run inside a cancelled task (a cut session unsubscribing), and
    // the pump serves the link, not that task.
    if (const unsigned generation = wishes_[d].set(on)) tasks_.spawn_independent(pump(d, generation, ac_));
}

void link::on_cleanup() noexcept {
    // hiredis is freeing the context and closes the fd right after this returns: both waits
    // must be gone first (epoll: unparked now by the cancel; io_uring: the cancel names the op,
    // not the fd number, so a new socket reusing the number is safe).
    want(reading, false);
    want(writing, false);
    if (core* c = core::current_or_null()) c->io().forget_fd(fd_);  // none: ~link after the core
    fd_ = -1;
    if (ac_ && ac_->err) last_error_ = ac_->errstr;  // why it ends (EOF, reset, protocol error)
    else if (up_) last_error_.clear();
    ac_ = nullptr;
    const bool was_up = std::exchange(up_, false);
    up_event_.reset();
    if (was_up) on_disconnected();
    changed_.set();
}

void link::on_connect(const redisAsyncContext* ac, int status) {
    auto* self = static_cast<link*>(ac->data);
    if (status != REDIS_OK) {  // hiredis frees the context next: cleanup follows
        self->last_error_ = ac->errstr ? ac->errstr : "connect failed";
        return;
    }
    self->up_ = true;
    ++self->stats_.connects;
    self->up_event_.set();
    self->changed_.set();
    self->on_connected();
}

// ---- tasks --------------------------------------------------------------------------------

task<> link::pump(int d, unsigned generation, redisAsyncContext* ac) {
    readiness_wish& wish = wishes_[d];
    auto current = [&] { return wish.current(generation) && ac_ == ac; };
    if (!current()) co_return;  // switched off before it ever ran
    wish.enter();
    while (current()) {
        if (d == reading && reading_paused()) {  // the subscriber's queue is full: Redis holds the rest
            room_.reset();
            auto room = co_await room_.wait();
            if (!room) break;
            continue;
        }
        auto ready = co_await wait_ready(fd_, d == writing);
        if (!ready || !current()) break;
        // POLLERR/POLLHUP included: hiredis's own read or write then meets the error and
        // disconnects (cleanup, then the context is freed inside this call).
        if (d == reading) redisAsyncHandleRead(ac);
        else redisAsyncHandleWrite(ac);
    }
    wish.leave(generation);
}

task<result<void>> link::settled() {
    while (ac_ && !up_) {
        changed_.reset();
        auto r = co_await changed_.wait();
        if (!r) co_return r;
    }
    co_return result<void>{};
}

namespace {

bool is_numeric(const std::string& host) noexcept {
    unsigned char buf[sizeof(in6_addr)];
    return ::inet_pton(AF_INET, host.c_str(), buf) == 1 || ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

std::string numeric_host(const address& a) {
    char text[INET6_ADDRSTRLEN] = "";
    const void* bytes = a.family() == AF_INET6 ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in6*>(a.data())->sin6_addr)
                                               : static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(a.data())->sin_addr);
    ::inet_ntop(a.family(), bytes, text, sizeof text);
    return text;
}

// options::keepalive on a connection's socket.
void keep_alive(int fd, std::chrono::seconds idle) noexcept {
    if (idle.count() <= 0) return;
    const int on = 1, probes = 3;
    const int secs = static_cast<int>(std::min<std::int64_t>(idle.count(), 86400));
    const int interval = std::max(1, secs / 3);
    const unsigned user_timeout_ms = static_cast<unsigned>(secs) * 2000u;
    ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &secs, sizeof secs);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
    ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof user_timeout_ms);
}

}  // namespace

task<bool> link::connect_once() {
    // hiredis would resolve a name itself, blocking the core: it is given an address instead,
    // looked up through dns.hpp. A name with several addresses has them tried in turn, one per
    // attempt (the backoff spaces them).
    std::string host = opts_.host;
    if (!is_numeric(host)) {
        dns::options lookup;
        lookup.timeout = opts_.connect_timeout;
        auto found = co_await dns::resolve(host, opts_.port, lookup);
        if (!found) {
            last_error_ = "resolving " + host + ": " + found.error().message();
            co_return false;
        }
        host = numeric_host((*found)[attempt_++ % found->size()]);
    }
    redisAsyncContext* ac = redisAsyncConnect(host.c_str(), opts_.port);
    if (!ac) {
        last_error_ = "out of memory";
        co_return false;
    }
    if (ac->err) {  // refused at once (loopback answers synchronously), or no such host
        last_error_ = ac->errstr;
        redisAsyncFree(ac);
        co_return false;
    }
    detail::limit_arrays(*ac->c.reader);
    keep_alive(ac->c.fd, opts_.keepalive);
    ac_ = ac;
    fd_ = ac->c.fd;
    up_ = false;
    ac->data = this;
    ac->ev.data = this;
    ac->ev.addRead = [](void* self) { static_cast<link*>(self)->want(reading, true); };
    ac->ev.delRead = [](void* self) { static_cast<link*>(self)->want(reading, false); };
    ac->ev.addWrite = [](void* self) { static_cast<link*>(self)->want(writing, true); };
    ac->ev.delWrite = [](void* self) { static_cast<link*>(self)->want(writing, false); };
    ac->ev.cleanup = [](void* self) { static_cast<link*>(self)->on_cleanup(); };
    redisAsyncSetConnectCallback(ac, on_connect);  // also adds the write wait that sees the connect
    const auto waited = co_await with_timeout(opts_.connect_timeout, settled());
    if (ac_ == ac && !up_) {  // the connect timeout passed (or close() is on its way)
        last_error_ = waited ? "connect failed" : "connect timed out";
        redisAsyncFree(ac);  // not inside a hiredis callback: freed now, cleanup runs
    }
    co_return up_;
}

task<> link::connector() {
    auto delay = opts_.backoff_min;
    while (!closing_) {
        const bool ok = co_await connect_once();
        if (closing_) break;
        if (ok) {
            if (std::exchange(failing_, false)) log("redis {}:{}: connected", opts_.host, opts_.port);
            delay = opts_.backoff_min;
            while (ac_ && !closing_) {  // until the connection drops
                changed_.reset();
                auto r = co_await changed_.wait();
                if (!r) co_return;
            }
            if (closing_) break;
            ++stats_.disconnects;
            log("redis {}:{}: connection lost ({}); reconnecting", opts_.host, opts_.port,
                last_error_.empty() ? "closed" : last_error_);
        } else {
            ++stats_.connect_failures;
            if (!std::exchange(failing_, true))
                log("redis {}:{}: {}; retrying with backoff up to {} ms", opts_.host, opts_.port, last_error_,
                    opts_.backoff_max.count());
        }
        auto slept = co_await sleep_for(delay);
        if (!slept) break;
        delay = std::min(delay * 2, opts_.backoff_max);
    }
}

task<result<void>> link::wait_connected(std::chrono::milliseconds timeout) {
    if (closing_) co_return std::errc::operation_canceled;
    if (connected()) co_return result<void>{};
    auto r = co_await with_timeout(timeout, up_event_.wait());
    if (closing_) co_return std::errc::operation_canceled;
    co_return r;
}

task<> link::close() {
    if (closing_) co_return;
    closing_ = true;
    // Not inside a hiredis callback (those never resume a task inline): the context goes now,
    // pending callbacks run with no reply (their waiters get ECANCELED), cleanup stops the pumps.
    if (ac_) redisAsyncFree(ac_);
    changed_.set();
    up_event_.set();
    on_closing();
    co_await tasks_.cancel_and_join();
}

}  // namespace coring::redis::detail
