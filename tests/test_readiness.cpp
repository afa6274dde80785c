// wait_readable / wait_writable on fds the runtime did not make (a socketpair from plain
// syscalls, as a C library would have), on both backends: readiness, cancel, timeouts, hang-ups,
// and the forget_fd contract across many fds that reuse one number.
#include "support.hpp"

#include <coring/readiness.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace coring;
using namespace coring::testing;

namespace {

struct pair_fds {
    int a = -1, b = -1;
    pair_fds() {
        int sv[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
        a = sv[0];
        b = sv[1];
    }
    ~pair_fds() {
        if (a >= 0) ::close(a);
        if (b >= 0) ::close(b);
    }
};

task<> wait_into(int fd, short events, result<unsigned>* out) {
    if (events == POLLIN) *out = co_await wait_readable(fd);
    else *out = co_await wait_writable(fd);
}

task<> readable_after_write(int a, int b) {
    result<unsigned> got = std::errc::interrupted;  // "not finished yet"
    task_group g;
    g.spawn(wait_into(a, POLLIN, &got));
    for (int i = 0; i < 3; ++i) co_await yield();
    CHECK(got.error() == std::errc::interrupted);  // nothing to read: still waiting
    REQUIRE(::write(b, "x", 1) == 1);
    co_await g.join();
    REQUIRE(got);
    CHECK((*got & POLLIN) != 0);
    // Readiness is all it reports: the byte is still there for the fd's owner.
    char c = 0;
    CHECK(::read(a, &c, 1) == 1);
    auto w = co_await wait_writable(a);
    REQUIRE(w);
    CHECK((*w & POLLOUT) != 0);  // an empty send buffer: writable at once
    forget_fd(a);
}

task<> cancelled_then_reused(int a, int b) {
    result<unsigned> got = std::errc::interrupted;
    task_group g;
    g.spawn(wait_into(a, POLLIN, &got));
    co_await yield();
    co_await g.cancel_and_join();
    CHECK(got.error() == std::errc::operation_canceled);
    // The same direction of the same fd waits again: nothing of the cancelled wait is left.
    REQUIRE(::write(b, "y", 1) == 1);
    auto again = co_await wait_readable(a);
    REQUIRE(again);
    CHECK((*again & POLLIN) != 0);
    forget_fd(a);
}

task<> bad_fds() {
    // A closed or moved-from socket's fd() is -1: EBADF, never a table slot before fds_[0].
    auto r = co_await wait_readable(-1);
    REQUIRE_FALSE(r);
    CHECK(r.error() == std::errc::bad_file_descriptor);
    auto w = co_await wait_writable(-1);
    REQUIRE_FALSE(w);
    CHECK(w.error() == std::errc::bad_file_descriptor);
}

task<> timeouts(int a) {
    auto own = co_await wait_readable(a, 30ms);
    CHECK(own.error() == std::errc::timed_out);
    auto scoped = co_await with_timeout(30ms, wait_readable(a));
    CHECK(scoped.error() == std::errc::timed_out);
    forget_fd(a);
}

task<> hang_up(pair_fds* p) {
    ::close(std::exchange(p->b, -1));
    auto r = co_await wait_readable(p->a);
    REQUIRE(r);
    CHECK((*r & (POLLHUP | POLLIN)) != 0);  // the owner's read then says 0 (EOF)
    char c;
    CHECK(::read(p->a, &c, 1) == 0);
    forget_fd(p->a);
}

// Each round: a fresh pair (the kernel hands out the same numbers again), a wait cancelled
// and one completed on each, forget_fd, close. A stale registration or parked op would show
// as a wait that never ends or a wrong answer.
task<> many_rounds(std::size_t* same_number, core* c) {
    const std::size_t before = c->io().in_flight();  // the core's own (its doorbell's read)
    int first = -1;
    for (int round = 0; round < 200; ++round) {
        pair_fds p;
        if (first < 0) first = p.a;
        if (p.a == first) ++*same_number;
        result<unsigned> got = std::errc::interrupted;
        task_group g;
        g.spawn(wait_into(p.a, POLLIN, &got));
        co_await yield();
        co_await g.cancel_and_join();
        REQUIRE(got.error() == std::errc::operation_canceled);
        REQUIRE(::write(p.b, "z", 1) == 1);
        auto r = co_await wait_readable(p.a, 2s);
        REQUIRE(r);
        REQUIRE((*r & POLLIN) != 0);
        auto w = co_await wait_writable(p.b, 2s);
        REQUIRE(w);
        forget_fd(p.a);
        forget_fd(p.b);
    }
    CHECK(c->io().in_flight() == before);
}

}  // namespace

TEST_CASE("wait_readable reports a foreign fd readable once its peer wrote; writable at once", "[readiness]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    pair_fds p;
    c.run_for(5s, readable_after_write(p.a, p.b));
}

TEST_CASE("a cancelled readiness wait reports ECANCELED and the fd waits again", "[readiness]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    pair_fds p;
    c.run_for(5s, cancelled_then_reused(p.a, p.b));
}

TEST_CASE("a readiness wait past its deadline reports ETIMEDOUT", "[readiness]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    pair_fds p;
    c.run_for(5s, timeouts(p.a));
}

TEST_CASE("a readiness wait on fd -1 fails with EBADF", "[readiness]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    c.run_for(5s, bad_fds());
}

TEST_CASE("a readiness wait ends when the peer closes", "[readiness]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    pair_fds p;
    c.run_for(5s, hang_up(&p));
}

TEST_CASE("readiness waits over many fds that reuse one number leave nothing behind", "[readiness]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    std::size_t same_number = 0;
    c.run_for(20s, many_rounds(&same_number, &c.get()));
    CHECK(same_number > 100);  // the point of the test: numbers were reused
}
