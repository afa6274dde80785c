#pragma once
// Files on a core: open beneath a root directory, stat, read at an offset, close; each is an
// op like a socket's, cancellable, and none blocks the core (docs/ARCHITECTURE.md, "Files").
//
//   auto root = co_await directory::open("/srv/www");        // once, at setup
//   auto f = co_await root->open_file("css/site.css");        // "../x", "/etc/passwd" and
//   auto st = co_await f->stat();                             // symlinks out of the root fail
//   auto n = co_await f->read_at(0, buffer);                  // bytes read; 0 at the end
//   co_await f->close();
//
// Ownership: a file or directory owns its fd and closes it through the backend (the destructor
// does it without waiting). Unlike a socket, a file may have many reads in flight at once, and
// it does not track them: every op started on it must have finished before it closes (the
// structured way does that: a task awaits its reads, a group is joined, before the file goes).
// On epoll a pool thread may be using the fd number until then.
//
// One directory may serve every core: open_file only reads its fd, which is the process's. It
// must outlive the opens in flight beneath it.
#include <coring/core.hpp>
#include <coring/file_request.hpp>
#include <coring/op.hpp>
#include <coring/result.hpp>
#include <coring/task.hpp>

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <fcntl.h>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace coring {

struct file_status {
    std::uint64_t size = 0;
    std::int64_t mtime_ns = 0;  // last modification, nanoseconds since the epoch
    std::uint64_t inode = 0;
    std::uint64_t device = 0;   // makedev(major, minor) of the file system holding it
    std::uint32_t mode = 0;     // type and permission bits, as st_mode
    bool is_regular() const noexcept { return (mode & S_IFMT) == S_IFREG; }
    bool is_directory() const noexcept { return (mode & S_IFMT) == S_IFDIR; }
};

namespace detail {

// Pins an op and its file_request in the awaiting frame; starts the op in await_suspend. An
// argument refused before the kernel (a bad path, a closed file) answers without suspending.
class file_op_awaiter {
public:
    file_op_awaiter(op_kind kind, int fd) noexcept : op_{kind, fd} {}
    file_op_awaiter(const file_op_awaiter&) = delete;  // &op_ is the kernel's cookie
    file_op_awaiter& operator=(const file_op_awaiter&) = delete;
    bool await_ready() const noexcept { return refused_; }
    void await_suspend(std::coroutine_handle<> h) noexcept {
        op_.buf = &request_;  // here, not in the constructor: by now the awaiter has its final address
        request_.owner = &op_;
        op_.waiter = h;
        core::current().start(op_);
    }
    void await_resume() const noexcept {}  // close: the fd is released whatever it reports

protected:
    void refuse(int err) noexcept {
        op_.res = -err;
        refused_ = true;
    }
    op op_;
    file_request request_;
    bool refused_ = false;
};

// openat2: a file beneath a directory, or a directory to open files beneath.
template <class Handle>
class open_awaiter : public file_op_awaiter {
public:
    // `dir_fd` may be AT_FDCWD. path is copied: the kernel reads it at submit, after this returns.
    open_awaiter(int dir_fd, std::string_view path, std::uint64_t flags, std::uint64_t resolve)
        : file_op_awaiter{op_kind::open_at, dir_fd}, path_{path} {
        if (dir_fd < 0 && dir_fd != AT_FDCWD) refuse(EBADF);
        // A NUL inside would cut the path short at a place the caller did not choose.
        if (path_.find('\0') != std::string::npos) refuse(EINVAL);
        if (path_.size() >= 4096) refuse(ENAMETOOLONG);  // PATH_MAX, counting the NUL
        request_.path = path_.c_str();
        request_.how.flags = flags;
        request_.how.resolve = resolve;
    }
    result<Handle> await_resume() const noexcept {
        if (op_.res < 0) return to_error(op_.outcome());
        return Handle{op_.res};
    }

private:
    std::string path_;
};

class stat_awaiter : public file_op_awaiter {
public:
    explicit stat_awaiter(int fd) noexcept : file_op_awaiter{op_kind::stat, fd} {
        if (fd < 0) refuse(EBADF);
        request_.status = &status_;  // written at completion: a member, in the frame
    }
    result<file_status> await_resume() const noexcept;

private:
    struct statx status_{};
};

class read_awaiter : public file_op_awaiter {
public:
    read_awaiter(int fd, std::int64_t offset, std::span<std::byte> into) noexcept;
    result<std::size_t> await_resume() const noexcept {
        if (op_.res < 0) return to_error(op_.outcome());
        return static_cast<std::size_t>(op_.res);
    }
};

// An owned fd closed through the backend: what file and directory share.
class file_handle {
public:
    int fd() const noexcept { return fd_; }
    bool is_open() const noexcept { return fd_ >= 0; }
    // Closes the fd, ordered after every op already queued for it; released whatever happens.
    [[nodiscard]] task<> close() noexcept;

protected:
    file_handle() noexcept = default;
    explicit file_handle(int fd) noexcept : fd_{fd} {}
    file_handle(file_handle&& other) noexcept : fd_{std::exchange(other.fd_, -1)} {}
    file_handle& operator=(file_handle&& other) noexcept;
    ~file_handle();  // closes without waiting

    int fd_ = -1;
};

}  // namespace detail

class file : public detail::file_handle {
public:
    file() noexcept = default;
    // Adopts an fd opened elsewhere (it closes with this file). Its reads run as they would on
    // a file from open_file: on epoll, one that would block runs on a pool thread, which it holds
    // until the call returns; a pipe in blocking mode may hold it until a writer writes.
    explicit file(int fd) noexcept : file_handle{fd} {}

    [[nodiscard]] detail::stat_awaiter stat() const noexcept { return detail::stat_awaiter{fd_}; }
    // Reads up to into.size() bytes at `offset` (the file position is neither used nor moved).
    // A short count is a success (on epoll, a read may stop where the cached pages end); 0 means
    // offset is at or past the end.
    [[nodiscard]] detail::read_awaiter read_at(std::uint64_t offset, std::span<std::byte> into) const noexcept;
    // Reads at the file position and moves it: for what has no offsets (a pipe, a FIFO).
    [[nodiscard]] detail::read_awaiter read(std::span<std::byte> into) const noexcept {
        return detail::read_awaiter{fd_, -1, into};
    }
};

class directory : public detail::file_handle {
public:
    directory() noexcept = default;
    explicit directory(int fd) noexcept : file_handle{fd} {}

    // Opens the directory at `path` (relative to the working directory, or absolute) as a root
    // to open files beneath: O_PATH, so it needs no read permission and reads nothing.
    [[nodiscard]] static detail::open_awaiter<directory> open(std::string_view path);

    // Opens `path` beneath this directory, read-only. The kernel resolves it so that it never
    // leaves the directory (openat2 RESOLVE_BENEATH): an absolute path, a ".." above it or a
    // symlink pointing outside fails with EXDEV; a symlink that stays inside is followed.
    // /proc-style magic links fail with ELOOP. O_NONBLOCK: opening a FIFO or a device waits for
    // nothing, and their reads do not block either; callers serving files check is_regular()
    // (stat() of a regular file clears the flag: see docs/ARCHITECTURE.md, "Files").
    [[nodiscard]] detail::open_awaiter<file> open_file(std::string_view path) const;
};

}  // namespace coring
