#include <coring/file.hpp>

#include <cerrno>
#include <climits>
#include <fcntl.h>
#include <sys/sysmacros.h>
#include <unistd.h>

namespace coring {

namespace detail {

result<file_status> stat_awaiter::await_resume() const noexcept {
    if (op_.res < 0) return to_error(op_.outcome());
    file_status s;
    s.size = status_.stx_size;
    s.mtime_ns = status_.stx_mtime.tv_sec * 1'000'000'000LL + status_.stx_mtime.tv_nsec;
    s.inode = status_.stx_ino;
    s.device = makedev(status_.stx_dev_major, status_.stx_dev_minor);
    s.mode = status_.stx_mode;
    // A regular file drops the O_NONBLOCK open_file gave it (for FIFOs and devices): on io_uring
    // the flag would mark any file "nowait", so on a filesystem without FMODE_NOWAIT (NFS, FUSE)
    // a read would be tried inline and wait for the server on the core. Without it, such reads go
    // to io-wq; a local filesystem's are tried inline either way.
    if (s.is_regular() && !is_direct_fd(op_.fd)) {
        const int fl = ::fcntl(op_.fd, F_GETFL);
        if (fl >= 0 && (fl & O_NONBLOCK)) ::fcntl(op_.fd, F_SETFL, fl & ~O_NONBLOCK);
    }
    return s;
}

read_awaiter::read_awaiter(int fd, std::int64_t offset, std::span<std::byte> into) noexcept
    : file_op_awaiter{op_kind::read_at, fd} {
    if (fd < 0) refuse(EBADF);
    if (offset < -1) refuse(EINVAL);
    request_.data = into.data();
    request_.offset = offset;
    // A longer buffer is read in part, like a short read (the kernel caps a read near 2 GiB).
    op_.len = into.size() > INT_MAX ? INT_MAX : static_cast<std::uint32_t>(into.size());
}

// A task of its own: its op takes room only while closing, not in every frame that may close.
task<> close_file(int fd) {
    if (fd < 0) co_return;
    file_op_awaiter closing{op_kind::close, fd};
    co_await closing;  // the fd is released whatever close reports
}

task<> file_handle::close() noexcept { return close_file(std::exchange(fd_, -1)); }

file_handle& file_handle::operator=(file_handle&& other) noexcept {
    if (this != &other) {
        this->~file_handle();
        fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
}

file_handle::~file_handle() {
    if (fd_ < 0) return;
    if (core* c = core::current_or_null()) c->io().close_detached(std::exchange(fd_, -1));
    else ::close(std::exchange(fd_, -1));  // after its core is gone: nothing can be in flight
}

}  // namespace detail

detail::read_awaiter file::read_at(std::uint64_t offset, std::span<std::byte> into) const noexcept {
    // Past INT64_MAX no file has bytes; -2 makes the awaiter refuse it (-1 would mean "at the position").
    return detail::read_awaiter{fd_, offset > INT64_MAX ? -2 : static_cast<std::int64_t>(offset), into};
}

detail::open_awaiter<directory> directory::open(std::string_view path) {
    return {AT_FDCWD, path, O_PATH | O_DIRECTORY | O_CLOEXEC, 0};
}

detail::open_awaiter<file> directory::open_file(std::string_view path) const {
    return {fd_, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
}

}  // namespace coring
