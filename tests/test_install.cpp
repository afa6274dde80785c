// What a program outside this repository relies on: flags of its own next to the runtime flags
// (runtime_options::parse_args, from_args), and run()'s setup phase, which starts no main before
// every core's setup has finished. (./dev test also installs the library and builds a program
// against it: see check_install in ./dev.)
#include "child_process.hpp"
#include "support.hpp"

#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <initializer_list>
#include <poll.h>
#include <stdexcept>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace coring;
using namespace coring::testing;

namespace {

// argv from words; argv[0] is the program.
class args {
public:
    args(std::initializer_list<const char*> words) : args(std::vector<std::string>(words.begin(), words.end())) {}
    explicit args(std::vector<std::string> words) : words_(std::move(words)) {
        for (auto& w : words_) argv_.push_back(w.data());
        argv_.push_back(nullptr);
    }
    int argc() const noexcept { return static_cast<int>(words_.size()); }
    char** argv() noexcept { return argv_.data(); }

private:
    std::vector<std::string> words_;
    std::vector<char*> argv_;
};

struct app_settings {
    std::string name;
    bool verbose = false;
};

// An app with a flag that takes a value (--name) and a switch (--verbose).
runtime_options::flag_handler app_flags(app_settings& s) {
    return [&s](std::string_view flag, std::string_view value) {
        if (flag == "--name") {
            if (value.empty()) throw std::invalid_argument("--name: expected a name");
            s.name = value;
        } else if (flag == "--verbose") {
            s.verbose = true;
        } else {
            return false;
        }
        return true;
    };
}

struct child_exit {
    int status = -1;  // as waitpid reports it
    std::string out;
    std::string err;
};

// Runs fn() in a forked child, which may exit; how it ended and what it printed. SIGALRM ends
// a child that is still running after 10 s, so the test stays bounded.
template <class Fn>
child_exit in_child(Fn fn) {
    int out[2], err[2];
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(err, O_CLOEXEC) == 0);
    std::fflush(nullptr);  // nothing buffered here may be written twice
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::alarm(10);
        ::dup2(out[1], STDOUT_FILENO);
        ::dup2(err[1], STDERR_FILENO);
        fn();
        std::fflush(nullptr);
        ::_exit(0);
    }
    ::close(out[1]);
    ::close(err[1]);
    child_exit result;
    pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
    std::string* into[2] = {&result.out, &result.err};
    for (int open = 2; open > 0;) {
        const int ready = ::poll(fds, 2, 15'000);  // the alarm ends the child first
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) break;
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char buf[4096];
            const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
            if (n > 0) {
                into[i]->append(buf, static_cast<std::size_t>(n));
            } else if (n == 0 || errno != EINTR) {
                ::close(fds[i].fd);
                fds[i].fd = -1;
                --open;
            }
        }
    }
    for (auto& f : fds)
        if (f.fd >= 0) ::close(f.fd);
    while (::waitpid(pid, &result.status, 0) < 0 && errno == EINTR) {}
    return result;
}

runtime_options two_cores_short_drain(backend_kind kind) {
    runtime_options o = two_cores(kind);
    o.drain_timeout = 500ms;
    return o;
}

}  // namespace

TEST_CASE("parse_args takes runtime and app flags together, as --flag value and --flag=value", "[backend][flags]") {
    args a{"prog", "--cores", "2", "--name", "first", "--backend=epoll", "--verbose", "--stats", "--name=second"};
    runtime_options opts;
    app_settings app;
    const auto outcome = opts.parse_args(a.argc(), a.argv(), app_flags(app), {"--verbose"});
    CHECK(outcome.error.empty());
    CHECK_FALSE(outcome.help);
    CHECK(opts.cores == 2);
    CHECK(opts.backend == backend_kind::epoll);
    CHECK(opts.print_stats);
    CHECK(app.name == "second");
    CHECK(app.verbose);
}

TEST_CASE("parse_args names what is wrong in one line", "[backend][flags]") {
    struct example {
        std::vector<std::string> words;
        std::string error;
    };
    const example examples[] = {
        {{"prog", "--nope", "1"}, "unknown flag --nope (see --help)"},
        {{"prog", "--name"}, "--name: missing value"},
        {{"prog", "--name="}, "--name: expected a name"},  // the app's own message
        {{"prog", "--cores", "many"}, "--cores many: expected a whole number from 0 to 1024"},
        {{"prog", "--backend=io"}, "--backend io: expected uring, epoll or auto"},
        {{"prog", "stray"}, "unexpected argument 'stray' (see --help)"},
        {{"prog", "--stats=off"}, "--stats takes no value (got 'off')"},     // a runtime switch
        {{"prog", "--verbose=false"}, "--verbose takes no value (got 'false')"},  // an app's switch
    };
    for (const auto& e : examples) {
        args a(e.words);
        INFO("expected: " << e.error);
        runtime_options opts;
        app_settings app;
        const auto outcome = opts.parse_args(a.argc(), a.argv(), app_flags(app), {"--verbose"});
        CHECK(outcome.error == e.error);
        CHECK_FALSE(outcome.help);
    }
    // Without an app's flags, an app flag is unknown.
    args a{"prog", "--name", "x"};
    runtime_options opts;
    CHECK(opts.parse_args(a.argc(), a.argv()).error == "unknown flag --name (see --help)");
}

TEST_CASE("parse_args stops at --help and says so", "[backend][flags]") {
    args a{"prog", "--cores", "3", "-h", "--nope"};
    runtime_options opts;
    const auto outcome = opts.parse_args(a.argc(), a.argv());
    CHECK(outcome.help);
    CHECK(outcome.error.empty());
    CHECK(opts.cores == 3);
}

TEST_CASE("from_args with app flags: --help exits 0 with both usages, a bad flag exits 2 in one line", "[backend][flags]") {
    constexpr std::string_view usage = "usage: prog [--name N] [runtime flags]";
    const auto help = in_child([&] {
        args a{"/some/dir/prog", "--help"};
        app_settings app;
        runtime_options::from_args(a.argc(), a.argv(), app_flags(app), usage);
        std::printf("from_args returned\n");
    });
    CHECK(WIFEXITED(help.status));
    CHECK(WEXITSTATUS(help.status) == 0);
    CHECK(help.out.starts_with(usage));
    CHECK(std::string_view{help.out}.substr(usage.size()).starts_with("\nruntime flags:\n"));
    CHECK(help.out.find("--backend B") != std::string::npos);
    CHECK(help.out.find("from_args returned") == std::string::npos);

    const auto bad = in_child([&] {
        args a{"/some/dir/prog", "--name", "x", "--nope", "1"};
        app_settings app;
        runtime_options::from_args(a.argc(), a.argv(), app_flags(app), usage);
    });
    CHECK(WIFEXITED(bad.status));
    CHECK(WEXITSTATUS(bad.status) == 2);
    CHECK(bad.err == "prog: unknown flag --nope (see --help)\n");

    const auto good = in_child([&] {
        args a{"prog", "--verbose", "--cores=1"};
        app_settings app;
        const auto opts = runtime_options::from_args(a.argc(), a.argv(), app_flags(app), usage, {"--verbose"});
        std::printf("cores %u verbose %d\n", opts.cores, app.verbose ? 1 : 0);
    });
    CHECK(WIFEXITED(good.status));
    CHECK(WEXITSTATUS(good.status) == 0);
    CHECK(good.out == "cores 1 verbose 1\n");

    const auto plain = in_child([&] {  // the original form: runtime flags only
        args a{"prog", "--name", "x"};
        runtime_options::from_args(a.argc(), a.argv());
    });
    CHECK(WIFEXITED(plain.status));
    CHECK(WEXITSTATUS(plain.status) == 2);
    CHECK(plain.err == "prog: unknown flag --name (see --help)\n");
}

TEST_CASE("coring-echo --listen with a host name says what to use instead", "[backend][flags]") {
    child_process echo{CORING_ECHO_BINARY, {"--listen", "localhost:7100"}};
    const auto status = echo.wait_exit_or_kill(10s);
    REQUIRE(status);
    CHECK(WIFEXITED(*status));
    CHECK(WEXITSTATUS(*status) == 2);
    CHECK(echo.err() ==
          "coring-echo: --listen localhost:7100: names need resolution (not supported yet); use a numeric address: "
          "127.0.0.1:7000, [::1]:7000, unix:/path, unix:@name\n");
}

namespace {

struct setup_record {
    std::array<std::atomic<bool>, 2> built{};
    std::array<std::atomic<int>, 2> main_saw_built{};  // how many cores' setups each main saw done
    std::atomic<int> mains{0};
    std::atomic<int> served_by{-1};  // which core answered core 1's call during setup
};

// Core 1's setup is slow and calls core 0, which has finished its own setup and is waiting.
task<> slow_setup(core& c, setup_record* r) {
    if (c.id() == 1) {
        (void)co_await sleep_for(50ms);
        r->served_by = static_cast<int>(co_await c.submit_to(0, [] { return core::current().id(); }));
    }
    r->built[c.id()] = true;
}

task<> count_built(core& c, setup_record* r) {
    r->main_saw_built[c.id()] = (r->built[0] ? 1 : 0) + (r->built[1] ? 1 : 0);
    ++r->mains;
    co_return;
}

task<> failing_setup(core& c) {
    if (c.id() == 1) {
        (void)co_await sleep_for(20ms);  // core 0 is waiting by now
        throw std::runtime_error("deliberate setup failure");
    }
}

}  // namespace

TEST_CASE("run() with setup: every core's main starts after every core's setup has finished", "[backend][run][setup]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    setup_record r;
    const int rc = run(two_cores_short_drain(kind), [&](core& c) { return slow_setup(c, &r); },
                       [&](core& c) { return count_built(c, &r); });
    CHECK(rc == 0);
    CHECK(r.mains == 2);
    CHECK(r.main_saw_built[0] == 2);
    CHECK(r.main_saw_built[1] == 2);
    CHECK(r.served_by == 0);  // a waiting core keeps serving cross-core calls
}

TEST_CASE("run() with setup: a setup that throws on one core starts no main anywhere and returns 2", "[backend][run][setup]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    std::atomic<int> mains{0};
    const int rc = run(two_cores_short_drain(kind), [](core& c) { return failing_setup(c); }, [&](core&) -> task<> {
        ++mains;
        co_return;
    });
    CHECK(rc == 2);  // run() printed "core 1: setup: deliberate setup failure"
    CHECK(mains == 0);
}

TEST_CASE("run() with setup: a sharded<T> started from core 0 exists on every core when main starts", "[backend][run][setup]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    struct shard {
        unsigned built_on;
    };
    sharded<shard> shards;
    std::array<std::atomic<unsigned>, 2> ready{};
    const int rc = run(
        two_cores_short_drain(kind),
        [&](core& c) -> task<> {
            if (c.id() != 0) co_return;  // core 1's setup ends at once: its main must still wait
            co_await shards.start([] {
                if (core::current().id() == 1) std::this_thread::sleep_for(30ms);  // a slow build
                return shard{core::current().id()};
            });
        },
        [&](core& c) -> task<> {
            for (unsigned k = 0; k < shards.size(); ++k) {
                const unsigned built_on = co_await shards.invoke_on(k, [](shard& s) { return s.built_on; });
                if (built_on == k) ++ready[c.id()];
            }
        });
    CHECK(rc == 0);
    CHECK(ready[0] == 2);
    CHECK(ready[1] == 2);
}
