#pragma once
// file_request: what a file op (open_at, stat, read_at) needs beyond op's own fields. It lives
// in the awaitable that started the op (op::buf points at it), so in the suspended frame: the
// kernel reads the path and open_how at submit and writes the statx buffer at completion, and
// on epoll a thread of the blocking pool uses all of it until it hands the job back.
#include <cstddef>
#include <cstdint>
#include <linux/openat2.h>  // struct open_how, RESOLVE_* (Linux 5.6)
#include <sys/stat.h>       // struct statx

namespace coring {

struct op;

namespace detail {

class pool_port;

// One job for the blocking pool (epoll's file ops, blocking_pool.hpp). Plain data; the pool
// links it through `next` while it is queued, so queueing allocates nothing.
struct pool_job {
    void (*run)(pool_job&) noexcept = nullptr;  // on a pool thread: the blocking call, into `res`
    pool_port* port = nullptr;                  // whose core gets it back when it is done
    pool_job* next = nullptr;
    std::int32_t res = 0;                       // written by the pool thread, read by the core after
    bool running = false;                       // a thread took it (under the pool's lock)
};

}  // namespace detail

struct file_request : detail::pool_job {
    op* owner = nullptr;            // the op this request belongs to
    const char* path = nullptr;     // open_at: NUL-terminated, relative to op.fd
    open_how how{};                 // open_at
    struct statx* status = nullptr; // stat: filled at completion
    std::byte* data = nullptr;      // read_at: op.len bytes
    std::int64_t offset = 0;        // read_at: -1 reads at the file position (and moves it)
};

}  // namespace coring
