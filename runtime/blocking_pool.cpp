#include <coring/blocking_pool.hpp>
#include <coring/log.hpp>

#include <cerrno>
#include <csignal>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <system_error>
#include <unistd.h>
#include <utility>

namespace coring::detail {

pool_port::pool_port() {
    fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd_ < 0) throw std::system_error(errno, std::system_category(), "eventfd (blocking pool port)");
}

pool_port::~pool_port() {
    // Every job came back before its core let go of this port (the core drains until the
    // backend owes nothing); the lock waits out a pool thread still leaving post().
    { std::lock_guard lock{mutex_}; }
    ::close(fd_);
}

void pool_port::post(pool_job& j) noexcept {
    j.next = nullptr;
    std::lock_guard lock{mutex_};
    const bool was_empty = !head_;
    (tail_ ? tail_->next : head_) = &j;
    tail_ = &j;
    // One ring per batch: a non-empty list was rung for already and not yet taken (take_all
    // reads the eventfd before it takes the list, so no job is left behind unrung). The write
    // is made under the lock: once the core has taken this job it may finish its last op and
    // close the eventfd, and a write after that could hit whatever reused the fd number.
    if (was_empty) {
        const std::uint64_t one = 1;
        (void)!::write(fd_, &one, sizeof one);  // cannot fail short of 2^64 - 1 unread rings
    }
}

pool_job* pool_port::take_all() noexcept {
    std::uint64_t rings;
    (void)!::read(fd_, &rings, sizeof rings);  // EAGAIN when a wake was spurious: fine
    std::lock_guard lock{mutex_};
    tail_ = nullptr;
    return std::exchange(head_, nullptr);
}

blocking_pool& blocking_pool::shared() noexcept {
    static blocking_pool pool;  // joined at exit, after every core (cores live inside run())
    return pool;
}

void blocking_pool::submit(pool_job& j) noexcept {
    {
        std::lock_guard lock{mutex_};
        while (threads_.size() < threads) {
            try {
                threads_.emplace_back([this] { work(); });
            } catch (const std::system_error& e) {
                log("blocking pool: cannot start a thread: {}", e.what());
                break;
            }
        }
        if (!threads_.empty()) {
            j.next = nullptr;
            j.running = false;
            (tail_ ? tail_->next : head_) = &j;
            tail_ = &j;
            wake_.notify_one();
            return;
        }
    }
    j.res = -EAGAIN;  // no thread to run it: the caller learns at once rather than never
    j.port->post(j);
}

bool blocking_pool::withdraw(pool_job& j) noexcept {
    std::lock_guard lock{mutex_};
    if (j.running) return false;
    pool_job* prev = nullptr;
    for (pool_job** link = &head_; *link; prev = *link, link = &(*link)->next) {
        if (*link != &j) continue;
        *link = j.next;
        if (tail_ == &j) tail_ = prev;
        return true;
    }
    return false;  // ran already, and is on its way back through the port
}

void blocking_pool::work() noexcept {
    // Signals belong to the threads that wait for them (run()'s signalfd); and this thread was
    // started by a core pinned to one CPU, whose mask it inherited: it may run anywhere the
    // process may (the main thread's mask), so a blocked read does not compete with that core.
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    cpu_set_t cpus;
    if (::sched_getaffinity(::getpid(), sizeof cpus, &cpus) == 0) ::sched_setaffinity(0, sizeof cpus, &cpus);
    pthread_setname_np(pthread_self(), "coring-blocking");
    std::unique_lock lock{mutex_};
    for (;;) {
        wake_.wait(lock, [this] { return head_ || stopping_; });
        if (!head_) return;  // stopping, and nothing left to run
        pool_job& j = *head_;
        head_ = j.next;
        if (!head_) tail_ = nullptr;
        j.running = true;  // from here on withdraw() says no: the call owns the job's memory
        lock.unlock();
        j.run(j);
        j.port->post(j);  // after this the job is the core's again: not touched here any more
        lock.lock();
    }
}

blocking_pool::~blocking_pool() {
    {
        std::lock_guard lock{mutex_};
        stopping_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : threads_) t.join();
}

}  // namespace coring::detail
