#include "listen.hpp"

#include <cerrno>
#include <fcntl.h>
#include <cstddef>
#include <system_error>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace coring::apps {

namespace {

// The file a unix socket address names, or nullptr: abstract names ("unix:@x") have none.
const char* socket_file(const address& where) {
    const auto* un = reinterpret_cast<const sockaddr_un*>(where.data());
    return where.size() > offsetof(sockaddr_un, sun_path) && un->sun_path[0] != '\0' ? un->sun_path : nullptr;
}

}  // namespace

int hold_socket_file(const address& where) {
    const char* path = socket_file(where);
    return path ? ::open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC) : -1;
}

void remove_socket_file(const address& where, int held) {
    if (held < 0) return;
    struct stat ours, now;
    const char* path = socket_file(where);
    if (path && ::fstat(held, &ours) == 0 && ::lstat(path, &now) == 0 && ours.st_dev == now.st_dev && ours.st_ino == now.st_ino)
        ::unlink(path);
    ::close(held);
}

namespace {

// A unix socket path, before the cores bind it. Only a socket file nobody accepts on (what a
// crashed server leaves) is removed; a live listener, or anything that is not a socket (a file,
// a FIFO, a symlink: someone's data), is left alone and reported as EADDRINUSE, as bind would.
result<address> prepare_unix_path(address where) {
    const char* path = socket_file(where);
    struct stat st;
    if (!path || ::lstat(path, &st) != 0) return where;  // nothing there (or unreadable: bind says why)
    if (!S_ISSOCK(st.st_mode)) return to_error(-EADDRINUSE);
    // Non-blocking: a live listener whose backlog is full would block a plain connect forever.
    // Only a refusal means nobody listens; success, EAGAIN or EINPROGRESS mean a server is there.
    const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (probe < 0) return to_error(-errno);
    const int e = ::connect(probe, where.data(), where.size()) == 0 ? 0 : errno;
    ::close(probe);
    if (e == ECONNREFUSED) {
        ::unlink(path);
        return where;
    }
    if (e == 0 || e == EAGAIN || e == EINPROGRESS) return to_error(-EADDRINUSE);
    return where;  // a datagram socket, no permission...: not ours to judge, bind will fail
}

// Sets `name` to 1 on fd, binds it to where; 0 or the errno.
int bind_with(int fd, int name, const address& where) {
    const int on = 1;
    if (::setsockopt(fd, SOL_SOCKET, name, &on, sizeof on) < 0 || ::bind(fd, where.data(), where.size()) < 0) return errno;
    return 0;
}

}  // namespace

result<address> prepare_listen_address(address where) {
    if (where.family() == AF_UNIX) return prepare_unix_path(where);
    const int fd = ::socket(where.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return to_error(-errno);
    if (where.port() != 0) {
        // Every core's listener uses SO_REUSEPORT, which would quietly share the port with
        // another such server and split its connections. Sharing must be asked for (--workers),
        // so probe without it: a port someone listens on fails here. SO_REUSEADDR lets a port
        // whose old connections sit in TIME_WAIT through, as the listeners themselves allow.
        const int e = bind_with(fd, SO_REUSEADDR, where);
        ::close(fd);
        if (e != 0) return to_error(-e);
        return where;
    }
    address bound;
    socklen_t len = address::capacity();
    int e = bind_with(fd, SO_REUSEPORT, where);
    if (e == 0 && ::getsockname(fd, bound.data(), &len) < 0) e = errno;
    if (e != 0) {
        ::close(fd);
        return to_error(-e);
    }
    bound.set_size(len);
    return bound;  // fd stays open: the port stays ours
}

task<> core_listeners::bind(core& c) {
    if (c.id() != 0) co_return;
    auto make = [where = where_]() -> std::optional<tcp_listener> {
        if (where.family() == AF_UNIX && core::current().id() != 0) return std::nullopt;
        auto bound = tcp_listener::bind(where, {.reuse_port = true});
        if (!bound) throw std::system_error(bound.error(), "bind " + where.to_string());
        return std::move(*bound);
    };
    co_await listeners_.start(make);
    if (where_.family() == AF_UNIX) file_ = hold_socket_file(where_);
}

core_listeners::~core_listeners() { remove_socket_file(where_, file_); }  // nothing when nothing is held

}  // namespace coring::apps
