#pragma once
// blocking_pool: a few threads per process that run the system calls epoll cannot make without
// blocking its core (file opens off the dentry cache, statx, reads of pages not in the page
// cache; docs/ARCHITECTURE.md, "Files"). A core hands a job over and goes on; the thread that
// ran it posts it to that core's pool_port, whose eventfd wakes the core's epoll_wait, and the
// core completes the op there, in its own thread.
//
// Ownership: a job (and the memory its call reads or fills) belongs to the pool from submit()
// until the core takes it back from its port; withdraw() returns it early only if no thread has
// taken it yet. A job a thread runs is never interrupted: its op completes when the call
// returns, as an io_uring read punted to the kernel's io-wq threads does when its cancel comes
// too late.
//
// Bounds: the pool's queue is intrusive (jobs link through pool_job::next), and each core puts
// at most `per_core_limit` jobs into it (the rest wait in that core's own FIFO, in their
// frames), so it holds at most cores x per_core_limit jobs.
#include <coring/file_request.hpp>

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace coring::detail {

// One per epoll backend: where finished jobs come back. post() is called from pool threads;
// take_all() and fd() by the owning core only.
class pool_port {
public:
    pool_port();  // throws std::system_error (eventfd)
    ~pool_port();
    pool_port(const pool_port&) = delete;
    pool_port& operator=(const pool_port&) = delete;

    int fd() const noexcept { return fd_; }  // readable while jobs are waiting here
    void post(pool_job& j) noexcept;
    // Every finished job, in the order they finished (linked through next); resets the eventfd.
    pool_job* take_all() noexcept;

private:
    std::mutex mutex_;
    pool_job* head_ = nullptr;
    pool_job* tail_ = nullptr;
    int fd_ = -1;
};

class blocking_pool {
public:
    static constexpr unsigned threads = 2;          // enough to keep a disk queue busy for 2 CPUs' worth of cores
    static constexpr unsigned per_core_limit = 64;  // jobs one core may have in the pool at once

    // The process's pool. Its threads start on the first submit (so processes forked before any
    // file op, like coring-echo's workers, start their own) and end at exit.
    static blocking_pool& shared() noexcept;

    // Runs j.run on a pool thread, then posts j to j.port. With no thread at all (the system
    // refused to create one), j is posted at once with -EAGAIN.
    void submit(pool_job& j) noexcept;
    // Takes j back if no thread has taken it yet (true); false: it runs, and will be posted.
    bool withdraw(pool_job& j) noexcept;

    ~blocking_pool();

private:
    blocking_pool() = default;
    void work() noexcept;

    std::mutex mutex_;
    std::condition_variable wake_;
    pool_job* head_ = nullptr;
    pool_job* tail_ = nullptr;
    std::vector<std::thread> threads_;
    bool stopping_ = false;
};

}  // namespace coring::detail
