#include <coring/epoll_backend.hpp>
#include <coring/file_request.hpp>
#include <coring/log.hpp>

#include <cerrno>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <system_error>
#include <unistd.h>

#ifndef RESOLVE_CACHED
#define RESOLVE_CACHED 0x20  // Linux 5.12: fail with EAGAIN unless the whole lookup is in the dentry cache
#endif

namespace coring {

namespace {

enum direction : int { reading = 0, writing = 1, neither = 2 };

direction direction_of(const op& o) noexcept {
    switch (o.kind) {
    case op_kind::accept:
    case op_kind::recv:
    case op_kind::read: return reading;
    case op_kind::connect:
    case op_kind::send:
    case op_kind::send_msg: return writing;
    case op_kind::poll: return (o.flags & POLLIN) ? reading : writing;
    default: return neither;
    }
}

int errno_or(long r) noexcept { return r < 0 ? -errno : static_cast<int>(r); }

// The sockets whose short read means an empty receive queue (epoll_backend.hpp): TCP only.
// AF_UNIX stream stops a read early after passed fds (SCM_RIGHTS) or between writers with
// SO_PASSCRED, SCTP returns a message per read: data may stay queued with no new edge.
bool is_tcp(int domain, int type, int protocol) noexcept {
    return (domain == AF_INET || domain == AF_INET6) && type == SOCK_STREAM && (protocol == 0 || protocol == IPPROTO_TCP);
}

// The system call of a file op. `nowait`: the form that answers EAGAIN rather than wait for
// the disk (epoll's core thread tries that first). Reads only op fields nothing writes while
// the op is in flight (kind, fd, len), so a pool thread may call it too.
int file_call(const op& o, file_request& r, bool nowait) noexcept {
    switch (o.kind) {
    case op_kind::open_at: {
        open_how how = r.how;
        if (nowait) how.resolve |= RESOLVE_CACHED;
        return errno_or(::syscall(SYS_openat2, o.fd, r.path, &how, sizeof how));
    }
    case op_kind::stat:
        if (nowait) return -EAGAIN;  // statx has no form that refuses to wait
        return errno_or(::statx(o.fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, r.status));
    case op_kind::read_at: {
        iovec piece{r.data, o.len};
        return errno_or(::preadv2(o.fd, &piece, 1, r.offset, nowait ? RWF_NOWAIT : 0));
    }
    default: std::abort();  // not a file op
    }
}

// A pool thread's half: the same call, allowed to block.
void run_in_pool(detail::pool_job& j) noexcept {
    auto& r = static_cast<file_request&>(j);
    r.res = file_call(*r.owner, r, false);
}

// Whether a nowait attempt's answer means "it would block", rather than the op's result.
bool would_block(op_kind k, int res) noexcept {
    if (res == -EAGAIN) return true;
    if (k == op_kind::read_at) return res == -EOPNOTSUPP;  // a file system without RWF_NOWAIT
    if (k == op_kind::open_at) return res == -EINVAL;      // a kernel without RESOLVE_CACHED (< 5.12)
    return false;
}

}  // namespace

epoll_backend::epoll_backend(const backend_config& cfg, detail::completion_sink& sink) : backend{cfg, sink} {
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) throw std::system_error(errno, std::system_category(), "epoll_create1");
    epoll_event ev{};
    ev.events = EPOLLIN;  // level-triggered: pool_done reads it empty each time
    ev.data.fd = port_.fd();
    if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, port_.fd(), &ev) < 0) {
        const int err = errno;
        ::close(epfd_);
        throw std::system_error(err, std::system_category(), "epoll_ctl ADD (blocking pool port)");
    }
}

epoll_backend::~epoll_backend() { ::close(epfd_); }

std::string epoll_backend::describe() const { return "epoll (edge-triggered, one registration per fd)"; }

epoll_backend::fd_state& epoll_backend::state_of(int fd) {
    if (static_cast<std::size_t>(fd) >= fds_.size()) fds_.resize(std::max<std::size_t>(fd + 1, fds_.size() * 2));
    return fds_[fd];
}

int epoll_backend::register_fd(int fd, bool tcp) noexcept {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET;  // PRI: TCP urgent data (see drained_by)
    ev.data.fd = fd;
    // ENOSPC (fs.epoll.max_user_watches) or ENOMEM: an fd no edge would ever wake is refused.
    if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) < 0) return -errno;
    state_of(fd) = fd_state{};
    fds_[fd].registered = true;
    fds_[fd].tcp = tcp;
    return 0;
}

void epoll_backend::forget_fd(int fd) noexcept {
    if (fd < 0) return;
    if (static_cast<std::size_t>(fd) < fds_.size()) {
        if (fds_[fd].waiter[reading] || fds_[fd].waiter[writing]) {  // its frame would wait forever
            log("epoll: fd {} forgotten while an op waits on it (cancel the wait first)", fd);
            std::abort();
        }
        fds_[fd] = fd_state{};
    }
    // Explicit DEL: a dup of fd elsewhere would keep the registration (and its errors) alive.
    ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
}

int epoll_backend::open_socket(int domain, int type, int protocol) noexcept {
    const int fd = ::socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
    if (fd < 0) return -errno;
    if (const int err = register_fd(fd, is_tcp(domain, type & 0xf, protocol)); err < 0) {
        ::close(fd);
        return err;
    }
    return fd;
}

void epoll_backend::adopt(int fd) noexcept {
    const int fl = ::fcntl(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK)) ::fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    const auto option = [fd](int name) {  // -1 when the fd cannot say (not a socket)
        int value = -1;
        socklen_t len = sizeof value;
        return ::getsockopt(fd, SOL_SOCKET, name, &value, &len) == 0 ? value : -1;
    };
    if (const int err = register_fd(fd, is_tcp(option(SO_DOMAIN), option(SO_TYPE), option(SO_PROTOCOL))); err < 0)
        log("epoll_ctl ADD fd {}: {}: its waits will fail", fd, std::system_category().message(-err));
}

int epoll_backend::perform(op& o) noexcept {
    switch (o.kind) {
    case op_kind::nop: return 0;
    case op_kind::accept: {
        const int fd = ::accept4(o.fd, o.addr, o.addr ? &o.addr_len : nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return -errno;
        if (const int err = register_fd(fd, fds_[o.fd].tcp); err < 0) {  // a TCP listener's connections are TCP
            ::close(fd);  // the peer sees a reset; the accept loop hears why
            return err;
        }
        return fd;
    }
    case op_kind::connect: {
        if (!o.started_once) {  // the first call starts the handshake; later ones ask how it went
            o.started_once = true;
            const int r = ::connect(o.fd, o.addr, o.addr_len);
            if (r == 0) return 0;
            return errno == EINPROGRESS ? -EAGAIN : -errno;
        }
        int err = 0;
        socklen_t len = sizeof err;
        if (::getsockopt(o.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return -errno;
        if (err == 0) {
            // Writable with no error can also be "not connected yet" after a spurious edge.
            sockaddr_storage peer;
            socklen_t plen = sizeof peer;
            if (::getpeername(o.fd, reinterpret_cast<sockaddr*>(&peer), &plen) < 0)
                return errno == ENOTCONN ? -EAGAIN : -errno;
        }
        return -err;
    }
    case op_kind::recv:
        if (o.select_buffer) return recv_into_pool(o);
        return errno_or(::recv(o.fd, o.buf, o.len, o.flags));
    case op_kind::send: return errno_or(::send(o.fd, o.buf, o.len, o.flags | MSG_NOSIGNAL));
    case op_kind::send_msg: return errno_or(::sendmsg(o.fd, static_cast<const msghdr*>(o.buf), o.flags | MSG_NOSIGNAL));
    case op_kind::read: return errno_or(::read(o.fd, o.buf, o.len));
    case op_kind::poll: {
        // A check, not a wait: the fd is registered edge-triggered, so "not ready" parks the op
        // and the next edge retries it. The owner reads and writes the fd itself.
        pollfd p{o.fd, static_cast<short>(o.flags), 0};
        const int n = ::poll(&p, 1, 0);
        if (n < 0) return -errno;
        if (p.revents & POLLNVAL) return -EBADF;
        return n == 0 ? -EAGAIN : static_cast<int>(p.revents);
    }
    case op_kind::shutdown: return errno_or(::shutdown(o.fd, o.flags));
    case op_kind::close:
        forget_fd(o.fd);
        return errno_or(::close(o.fd));
    case op_kind::timer:
    case op_kind::deadline:
    case op_kind::join:
    case op_kind::buffer_wait:
    case op_kind::wait:
    case op_kind::open_at:
    case op_kind::stat:
    case op_kind::read_at: break;
    }
    std::abort();  // the core keeps timers and joins; file ops go through start_file_op
}

bool epoll_backend::drained_by(const op& o, int r) const noexcept {
    const fd_state& f = fds_[o.fd];
    if (r <= 0 || !f.tcp || f.sticky_event || o.flags != 0) return false;  // plain receives only
    const std::uint32_t asked = o.select_buffer ? pool_recv_size(o) : o.len;
    return static_cast<std::uint32_t>(r) < asked;
}

int epoll_backend::recv_into_pool(op& o) noexcept {
    const int id = take_free();
    if (id < 0) return -ENOBUFS;  // readable, but the pool is empty: the op's owner decides
    const std::uint32_t want = pool_recv_size(o);
    const ssize_t n = ::recv(o.fd, buffer(static_cast<std::uint16_t>(id)), want, o.flags);
    if (n <= 0) {  // nothing landed: the buffer goes back on top, as warm as it was
        put_free(static_cast<std::uint16_t>(id));
        return errno_or(n);
    }
    ++stats_.buffers_in_use;
    o.cqe_flags = cqe_buffer_flag | (std::uint32_t(id) << cqe_buffer_shift);
    return static_cast<int>(n);
}

void epoll_backend::setup_buffers() {}  // the free list is all there is

void epoll_backend::finish(op& o, int res) noexcept {
    o.res = res;
    sink_.complete(o);  // through the ready queue, as on io_uring
}

void epoll_backend::start(op& o) noexcept {
    ++stats_.ops_started;
    if (o.kind == op_kind::send_msg) ++stats_.gather_sends;
    ++o.pending;
    if (is_file_op(o.kind)) return start_file_op(o);
    const direction d = direction_of(o);
    if (d == neither) return finish(o, perform(o));
    if (o.fd < 0) return finish(o, -EBADF);  // a closed or moved-from socket's fd: no table slot
    if (!state_of(o.fd).registered) {  // a foreign fd's first wait, or one whose registration failed
        if (const int err = register_fd(o.fd, false); err < 0) return finish(o, err);
    }
    if (state_of(o.fd).waiter[d]) {  // one op per direction per fd: a second would be a bug
        log("epoll: two {} ops at once on fd {}", d == reading ? "read" : "write", o.fd);
        std::abort();
    }
    attempt(o);
}

void epoll_backend::attempt(op& o) noexcept {
    const direction d = direction_of(o);
    if (fds_[o.fd].ready[d]) {
        if (faults_ && faults_->hit(fault::eagain)) [[unlikely]] {
            // An injected EAGAIN on a ready fd: it parks, and the next poll wakes it again, as a
            // spurious edge would (its readiness stays: no edge is owed).
            respin_.push_back({o.fd, d});
        } else {
            const int r = perform(o);
            if (r != -EAGAIN) {
                if (o.kind == op_kind::recv && drained_by(o, r)) fds_[o.fd].ready[reading] = false;
                return finish(o, r);
            }
            fds_[o.fd].ready[d] = false;  // the next edge sets it again
        }
    }
    ++stats_.eagain_retries;
    fds_[o.fd].waiter[d] = &o;  // indexed afresh: an accept may have grown fds_
    o.parked = park_reason::ready;
    ++parked_;
}

void epoll_backend::on_ready(int fd, int dir) noexcept {
    fds_[fd].ready[dir] = true;
    op* o = fds_[fd].waiter[dir];
    if (!o) return;
    fds_[fd].waiter[dir] = nullptr;
    o->parked = park_reason::none;
    --parked_;
    attempt(*o);  // done, or parked again (a spurious edge, or no buffer yet)
}

void epoll_backend::start_file_op(op& o) noexcept {
    auto& r = *static_cast<file_request*>(o.buf);
    const int res = file_call(o, r, true);
    if (!would_block(o.kind, res)) {  // the page cache or the dentry cache had it
        ++stats_.file_ops_inline;
        return finish(o, res);
    }
    ++stats_.file_ops_pooled;
    r.run = run_in_pool;
    r.port = &port_;
    if (in_pool_ >= detail::blocking_pool::per_core_limit) return pool_waiting_.push(o, park_reason::pool_room);
    to_pool(o);
}

void epoll_backend::to_pool(op& o) noexcept {
    ++in_pool_;
    o.parked = park_reason::pool;
    detail::blocking_pool::shared().submit(*static_cast<file_request*>(o.buf));
}

void epoll_backend::pool_done() noexcept {
    for (detail::pool_job* j = port_.take_all(); j;) {
        auto& r = static_cast<file_request&>(*j);
        j = j->next;
        --in_pool_;
        r.owner->parked = park_reason::none;
        finish(*r.owner, r.res);
    }
    while (!pool_waiting_.empty() && in_pool_ < detail::blocking_pool::per_core_limit) to_pool(pool_waiting_.pop());
}

void epoll_backend::cancel(op& o) noexcept {
    switch (o.parked) {
    case park_reason::ready:
        fds_[o.fd].waiter[direction_of(o)] = nullptr;
        --parked_;
        break;
    case park_reason::pool_room: pool_waiting_.remove(o); break;
    case park_reason::pool:
        // A thread that took the job owns its memory until the call returns (a read may be
        // filling the buffer right now): then the op completes through the port as usual, with
        // whatever the call reached, as an io_uring op whose cancel came too late.
        if (!detail::blocking_pool::shared().withdraw(*static_cast<file_request*>(o.buf))) return;
        --in_pool_;
        if (!pool_waiting_.empty()) to_pool(pool_waiting_.pop());
        break;
    default: return;  // it finished already (no syscall is ever left half done)
    }
    ++stats_.cancels;
    o.parked = park_reason::none;
    finish(o, -ECANCELED);
}

void epoll_backend::cancel_everything() noexcept {
    backend::cancel_everything();
    for (std::size_t fd = 0; fd < fds_.size(); ++fd) {  // (by index: a completion may start an op)
        for (int d = 0; d < 2; ++d)
            if (op* w = fds_[fd].waiter[d]) cancel(*w);
    }
}

void epoll_backend::withdraw(op& o, op* heir) noexcept {
    // Nothing here is in the kernel: a parked op is a pointer in its fd's state (a file op in
    // the blocking pool is never withdrawn: its request lives in a frame that waits for it).
    if (o.parked != park_reason::ready) return backend::withdraw(o, heir);
    fds_[o.fd].waiter[direction_of(o)] = heir;
    o.parked = park_reason::none;
    if (heir) heir->parked = park_reason::ready;
    else --parked_;
}

void epoll_backend::close_detached(int fd) noexcept {
    forget_fd(fd);
    ::close(fd);
}

void epoll_backend::poll(std::int64_t timeout_ns) noexcept {
    epoll_event events[256];
    // Round up to whole milliseconds: waking early would spin until the deadline.
    // At most an hour (the loop computes the timeout again after each wake): epoll_wait takes an
    // int of ms, which a timer 25 days away would overflow.
    constexpr std::int64_t longest_ns = 3'600'000'000'000;
    const int timeout_ms = !respin_.empty() ? 0
                           : timeout_ns < 0 ? -1
                                            : static_cast<int>((std::min(timeout_ns, longest_ns) + 999'999) / 1'000'000);
    const int n = ::epoll_wait(epfd_, events, 256, timeout_ms);
    ++stats_.enter_calls;
    for (int i = 0; i < n; ++i) {
        const int fd = events[i].data.fd;
        if (fd == port_.fd()) {
            pool_done();
            continue;
        }
        if (static_cast<std::size_t>(fd) >= fds_.size()) continue;
        const std::uint32_t ev = events[i].events;
        const bool failed = ev & (EPOLLERR | EPOLLHUP);
        if (failed || (ev & (EPOLLRDHUP | EPOLLPRI))) fds_[fd].sticky_event = true;
        if (failed || (ev & (EPOLLIN | EPOLLRDHUP | EPOLLPRI))) on_ready(fd, reading);
        if (failed || (ev & EPOLLOUT)) on_ready(fd, writing);
        ++stats_.completions;
    }
    if (respin_.empty()) return;
    respinning_.swap(respin_);  // what on_ready parks again waits for the next poll
    for (const auto [fd, d] : respinning_)
        if (static_cast<std::size_t>(fd) < fds_.size() && fds_[fd].waiter[d]) on_ready(fd, d);
    respinning_.clear();
}

}  // namespace coring
