// Which backend a core ends up with, and why; and what run() reports when cores or tasks fail.
#include "support.hpp"

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <mutex>
#include <poll.h>
#include <set>
#include <stdexcept>
#include <string>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace coring;
using namespace coring::testing;

namespace {

// Writes all of s to fd; the child's only way to talk to the parent, so it retries on EINTR.
void write_all_fd(int fd, const std::string& s) {
    std::size_t off = 0;
    while (off < s.size()) {
        const ssize_t n = ::write(fd, s.data() + off, s.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        off += static_cast<std::size_t>(n);
    }
}

// Makes io_uring_setup fail with EPERM for this process from now on, as a container runtime's
// seccomp profile does. Everything else, and other architectures' syscall numbers, pass.
bool forbid_io_uring_setup() {
#if defined(__x86_64__)
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog prog{static_cast<unsigned short>(std::size(filter)), filter};
    // NO_NEW_PRIVS lets an unprivileged process install a filter.
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
    return ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
#else
    return false;
#endif
}

// The forked child: no Catch here (its state belongs to the parent), only lines on the pipe:
//   "auto|<kind>|<fallback reason>"  and  "uring|<threw 0/1>|<what()>"
[[noreturn]] void seccomp_child(int out) {
    if (!forbid_io_uring_setup()) {
        write_all_fd(out, "error|seccomp filter not installed\n");
        ::_exit(1);
    }
    try {
        {
            core c{core_config{0, {backend_kind::automatic, 64, 0}, std::chrono::milliseconds{100}}};
            write_all_fd(out, "auto|" + std::string{to_string(c.kind())} + "|" + c.fallback_reason() + "\n");
        }  // one core per thread: this one goes before the explicit attempt
        try {
            core c{core_config{0, {backend_kind::uring, 64, 0}, std::chrono::milliseconds{100}}};
            write_all_fd(out, "uring|0|" + std::string{to_string(c.kind())} + "\n");
        } catch (const std::exception& e) {
            write_all_fd(out, std::string{"uring|1|"} + e.what() + "\n");
        }
    } catch (const std::exception& e) {
        write_all_fd(out, std::string{"error|"} + e.what() + "\n");
        ::_exit(1);
    }
    ::_exit(0);
}

struct child_report {
    std::string text;
    bool timed_out = false;
    int status = -1;
};

// Reads the child's pipe to EOF (bounded), then reaps it (bounded); SIGKILL when either passes.
child_report collect(pid_t pid, int fd, std::chrono::milliseconds limit) {
    child_report r;
    const auto deadline = std::chrono::steady_clock::now() + limit;
    char buf[512];
    for (;;) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            r.timed_out = true;
            break;
        }
        pollfd p{fd, POLLIN, 0};
        const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) {
            r.timed_out = ready == 0;
            break;
        }
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  // EOF: the child has exited (or closed its end)
        r.text.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    for (;;) {
        const pid_t w = ::waitpid(pid, &r.status, WNOHANG);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) break;
        if (r.timed_out || std::chrono::steady_clock::now() > deadline + 2s) {
            ::kill(pid, SIGKILL);  // only the child this test forked
            ::waitpid(pid, &r.status, 0);
            r.timed_out = true;
            break;
        }
        std::this_thread::sleep_for(10ms);  // polling a pid for exit, not synchronising with it
    }
    return r;
}

// The field after "<key>|" on the line that starts with it, up to the end of that line.
std::string field(const std::string& text, const std::string& key, int index) {
    const auto start = text.find(key + "|");
    if (start == std::string::npos) return "<missing " + key + ">";
    const auto end = text.find('\n', start);
    std::string line = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    std::size_t pos = 0;
    for (int i = 0; i <= index; ++i) {
        pos = line.find('|', pos);
        if (pos == std::string::npos) return "<short " + key + ">";
        ++pos;
    }
    if (index == 1) return line.substr(pos);  // the last field may itself hold '|'
    return line.substr(pos, line.find('|', pos) - pos);
}

// Restores the environment variable on every way out of the test.
struct env_guard {
    const char* name;
    ~env_guard() { ::unsetenv(name); }
};

task<> throw_deliberately() {
    (void)co_await sleep_for(1ms);  // a real suspension first: the throw comes from a resumed task
    throw std::runtime_error("deliberate");
}

task<> sleep_briefly() { (void)co_await sleep_for(1ms); }

struct thread_record {
    std::mutex lock;
    std::set<std::thread::id> ids;
    int calls = 0;
};

// Coroutines take their state by pointer: a capturing lambda coroutine would leave its captures
// behind in the lambda object, which dies before the coroutine runs.
task<> note_thread(thread_record* record) {
    {
        std::lock_guard g{record->lock};
        record->ids.insert(std::this_thread::get_id());
        ++record->calls;
    }
    (void)co_await sleep_for(1ms);
}

}  // namespace

TEST_CASE("auto falls back to epoll and says why when io_uring setup is refused by seccomp", "[backend][seccomp]") {
#if !defined(__x86_64__)
    SUCCEED("the seccomp filter here checks x86_64 syscall numbers only");
    return;
#endif
    // The filter lives and dies with a forked child: installing it in the test process would
    // take io_uring away from every later test.
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::close(fds[0]);
        seccomp_child(fds[1]);
    }
    ::close(fds[1]);
    const child_report r = collect(pid, fds[0], 10s);
    INFO("child said:\n" << r.text);
    REQUIRE_FALSE(r.timed_out);
    REQUIRE(WIFEXITED(r.status));
    REQUIRE(WEXITSTATUS(r.status) == 0);

    CHECK(field(r.text, "auto", 0) == "epoll");
    const std::string reason = field(r.text, "auto", 1);
    CHECK_THAT(reason, Catch::Contains("io_uring unavailable"));
    CHECK_THAT(reason, Catch::Contains("Operation not permitted"));
    // An explicit choice does not fall back: it fails and names the call that failed.
    CHECK(field(r.text, "uring", 0) == "1");
    const std::string what = field(r.text, "uring", 1);
    CHECK_THAT(what, Catch::Contains("io_uring_queue_init_params"));
    CHECK_THAT(what, Catch::Contains("Operation not permitted"));
}

TEST_CASE("CORING_DISABLE_URING makes auto choose epoll", "[backend]") {
    REQUIRE(::setenv("CORING_DISABLE_URING", "1", 1) == 0);
    env_guard unset{"CORING_DISABLE_URING"};
    test_core c{backend_kind::automatic};
    CHECK(c->kind() == backend_kind::epoll);
    CHECK_THAT(c->fallback_reason(), Catch::Contains("io_uring unavailable"));
    CHECK_THAT(c->fallback_reason(), Catch::Contains("CORING_DISABLE_URING"));
}

TEST_CASE("CORING_DISABLE_URING makes an explicit uring choice fail", "[backend]") {
    REQUIRE(::setenv("CORING_DISABLE_URING", "1", 1) == 0);
    env_guard unset{"CORING_DISABLE_URING"};
    CHECK_THROWS_AS(test_core{backend_kind::uring}, std::system_error);
}

TEST_CASE("CORING_DISABLE_URING=0 leaves io_uring allowed", "[backend]") {
    REQUIRE(::setenv("CORING_DISABLE_URING", "0", 1) == 0);
    env_guard unset{"CORING_DISABLE_URING"};
    test_core c{backend_kind::automatic};
    if (c->kind() == backend_kind::uring) {
        CHECK(c->fallback_reason().empty());
    } else {
        CHECK_THAT(c->fallback_reason(), !Catch::Contains("CORING_DISABLE_URING"));
    }
}

TEST_CASE("auto picks io_uring on this machine when nothing forbids it", "[backend]") {
    test_core c{backend_kind::automatic};
    if (c->kind() == backend_kind::uring) {
        CHECK(c->fallback_reason().empty());
    } else {
        // A kernel or container may forbid io_uring; then the reason must say so.
        WARN("auto chose epoll: " << c->fallback_reason());
        CHECK_FALSE(c->fallback_reason().empty());
    }
}

TEST_CASE("an explicit epoll choice has no fallback reason", "[backend]") {
    test_core c{backend_kind::epoll};
    CHECK(c->kind() == backend_kind::epoll);
    CHECK(c->fallback_reason().empty());
}

TEST_CASE("a second core on the same thread is refused", "[backend]") {
    test_core first{backend_kind::epoll};
    CHECK_THROWS_AS(test_core{backend_kind::epoll}, std::logic_error);
    CHECK(&core::current() == &first.get());  // the failed attempt did not unseat the first
}

TEST_CASE("run() returns 2 and names the failure when the main task throws", "[backend][run]") {
    runtime_options opts;
    opts.cores = 1;
    opts.quiet = true;
    opts.backend = backend_kind::epoll;
    opts.drain_timeout = 500ms;
    // The message goes to stderr ("deliberate"); the exit code is what callers see.
    CHECK(run(opts, [](core&) { return throw_deliberately(); }) == 2);
}

TEST_CASE("run() returns 2 when a core cannot start", "[backend][run]") {
    REQUIRE(::setenv("CORING_DISABLE_URING", "1", 1) == 0);
    env_guard unset{"CORING_DISABLE_URING"};
    runtime_options opts;
    opts.cores = 1;
    opts.quiet = true;
    opts.backend = backend_kind::uring;  // explicit, so the refused setup is fatal
    bool main_ran = false;
    CHECK(run(opts, [&](core&) {
              main_ran = true;
              return sleep_briefly();
          }) == 2);
    CHECK_FALSE(main_ran);
}

TEST_CASE("run() returns 0 when every task finishes", "[backend][run]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    runtime_options opts;
    opts.cores = 1;
    opts.quiet = true;
    opts.backend = kind;
    CHECK(run(opts, [](core&) { return sleep_briefly(); }) == 0);
}

TEST_CASE("run() starts the main function once per core, each on its own thread", "[backend][run]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    runtime_options opts;
    opts.cores = 2;  // more cores than CPUs is allowed too: they share
    opts.quiet = true;
    opts.backend = kind;
    thread_record record;
    std::set<unsigned> core_ids;
    std::mutex ids_lock;
    const int rc = run(opts, [&](core& c) {
        {
            std::lock_guard g{ids_lock};
            core_ids.insert(c.id());
        }
        return note_thread(&record);
    });
    CHECK(rc == 0);
    CHECK(record.calls == 2);
    CHECK(record.ids.size() == 2);
    CHECK(record.ids.count(std::this_thread::get_id()) == 0);  // not on the caller's thread
    CHECK(core_ids == std::set<unsigned>{0, 1});
}

TEST_CASE("the receive pool's default size is sane for 1 and for 64 cores", "[backend][pool]") {
    // 16 KiB buffers: 16 MiB per core while all cores together stay within 256 MiB.
    CHECK(default_buffer_count(1, 16384) == 1024);
    CHECK(default_buffer_count(16, 16384) == 1024);
    CHECK(default_buffer_count(64, 16384) == 256);
    CHECK(default_buffer_count(1024, 16384) == 64);  // the floor
    CHECK(default_buffer_count(64, 4096) == 1024);   // smaller buffers: more of them
    runtime_options o;
    CHECK(o.backend_settings(64).buffer_count == 256);
    o.buffer_count = 128;  // --buffers wins
    CHECK(o.backend_settings(64).buffer_count == 128);
}
