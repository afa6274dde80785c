// SIGTERM at random moments of a server's life (issue 15): while it starts, under a verifying
// load, and while it drains connections that are in the middle of a message, with a second
// SIGTERM in some of those. Every try must end in exit 0 within the drain timeout and 1 s of the
// (first) signal, and no client may see a wrong byte: a connection the stop closed is fine, a
// torn, reordered or foreign reply is not. coring-echo (alone, and as --workers 2), coring-http
// and coring-pubsub take turns; the moments are random, from a seed printed with every failure
// (CORING_SHUTDOWN_SEED=S replays the same delays; the timing around them is the machine's).
#include "load.hpp"
#include "child_process.hpp"
#include "support.hpp"

#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <fcntl.h>
#include <poll.h>
#include <random>
#include <string>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace coring;
using namespace coring::testing;

namespace {

using clock_type = std::chrono::steady_clock;

constexpr auto drain_timeout = 300ms;
constexpr double load_seconds = 0.3;  // the measured window: every SIGTERM of a try falls in it

enum class moment { start_up, load, drain };

const char* to_string(moment m) {
    switch (m) {
    case moment::start_up: return "start-up";
    case moment::load: return "load";
    case moment::drain: return "drain";
    }
    return "?";
}

// A server as the tries run it, and what one of its connections says when it is in the middle
// of a message: `request` gets a reply that starts with `reply` and ends with `reply_end` at
// once, and `partial` (the start of the next message) keeps the connection busy until the
// drain timeout ends it.
struct app {
    const char* binary;
    load::protocol proto;
    std::string request;
    std::string reply;
    std::string reply_end;
    std::string partial;
    bool partial_echoed;  // the echo server sends back what it has of a message, as it comes
};

const std::vector<app>& apps() {
    static const std::vector<app> all{
        {CORING_ECHO_BINARY, load::protocol::echo, "a whole message\n", "a whole message\n", "\n", "half of the ne", true},
        {CORING_HTTP_BINARY, load::protocol::http, "GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n", "HTTP/1.1 200 OK\r\n",
         "\r\n\r\nHello, World!", "GET /plaintext HTTP/1.1\r\nHost: t\r\nX-Half: ", false},
        {CORING_PUBSUB_BINARY, load::protocol::pubsub, "*1\r\n$4\r\nPING\r\n", "+PONG\r\n", "+PONG\r\n",
         "*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$5\r\nhel", false},
    };
    return all;
}

load::settings workload(const app& a, std::uint16_t port) {
    load::settings s;
    s.proto = a.proto;
    s.target = address::ipv4_loopback(port);
    s.conns = 8;
    s.depth = 2;
    s.size_min = a.proto == load::protocol::pubsub ? 64 : 1;  // pub/sub: at least its 24-byte header
    s.size_max = a.proto == load::protocol::pubsub ? 64 : 40000;  // echo: messages of many segments
    s.duration = load_seconds;
    s.warmup = 0;
    s.reply_timeout = 3000ms;
    s.pubsub.subscribers = 8;
    s.pubsub.channels = 2;
    s.pubsub.publishers = 2;
    s.pubsub.drain_quiet = 200ms;
    s.pubsub.setup_limit = std::chrono::seconds{5};
    return s;
}

// The verifying load, on a core of its own in a thread of its own, so that the test's thread
// times the signals and the server's exit meanwhile.
struct load_run {
    load::results out;
    std::string failure;  // a throw out of the load's core (its 20 s deadline)
    std::thread thread;

    load_run(backend_kind kind, load::settings s)
        : thread{[this, kind, s] {
              try {
                  test_core c{kind};
                  load::live_counters live;
                  if (s.proto == load::protocol::pubsub) {
                      load::pubsub_board board{s};
                      c.run_for(20s, load::run_pubsub_share(s, board, 0, s.pubsub.subscribers, 0, s.pubsub.publishers, &out, &live));
                  } else {
                      c.run_for(20s, load::run_share(s, 0, s.conns, &out, &live));
                  }
              } catch (const std::exception& e) {
                  failure = e.what();
              }
          }} {}
    load_run(const load_run&) = delete;
    load_run& operator=(const load_run&) = delete;
    ~load_run() { join(); }
    void join() {
        if (thread.joinable()) thread.join();
    }
};

// A connection in the middle of a message: `request` answered, then `partial` sent. What it
// received after that, read once the server is gone, for the check.
struct mid_message {
    fd_guard conn;
    std::string answered;  // the reply to `request`, or what came instead (up to 4 KiB)
};

mid_message start_mid_message(const app& a, std::uint16_t port) {
    mid_message m{fd_guard{connect_blocking(port)}, {}};
    if (m.conn.fd < 0) return m;
    if (::send(m.conn.fd, a.request.data(), a.request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(a.request.size())) return m;
    char buf[512];
    while (!m.answered.ends_with(a.reply_end) && m.answered.size() < 4096) {  // 5 s receive timeout each
        const ssize_t n = ::recv(m.conn.fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        m.answered.append(buf, static_cast<std::size_t>(n));
    }
    ::send(m.conn.fd, a.partial.data(), a.partial.size(), MSG_NOSIGNAL);
    return m;
}

// Everything left in the socket up to its end (the server has exited: EOF or a reset comes at
// once; the 5 s receive timeout bounds the rest).
std::string rest_of(int fd) {
    std::string got;
    char buf[4096];
    for (int i = 0; i < 1000; ++i) {
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        got.append(buf, static_cast<std::size_t>(n));
    }
    return got;
}

std::uint64_t base_seed() {
    if (const char* s = std::getenv("CORING_SHUTDOWN_SEED")) return std::strtoull(s, nullptr, 0);
    return std::random_device{}();
}

// A delay from `from_us` to `to_us` on a log scale: as many below 100 us as from 100 us to 1 ms.
std::chrono::microseconds log_scale(std::mt19937_64& rng, double from_us, double to_us) {
    const double u = std::uniform_real_distribution<double>{std::log(from_us), std::log(to_us)}(rng);
    return std::chrono::microseconds{static_cast<std::int64_t>(std::exp(u))};
}

// One try: the server started, one SIGTERM (two in some drain tries) at the moment drawn, then
// the checks. The delays are drawn from `rng` before anything runs, so a seed names them all.
void one_try(backend_kind kind, const app& a, bool workers, moment when, std::mt19937_64& rng) {
    const auto up_to = [&rng](std::int64_t us) { return std::chrono::microseconds{static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(us))}; };
    // Start-up: from main's first line through flags, bind, forks, cores and setup, 10 us to
    // 30 ms on a log scale: most of start-up is its first millisecond or two, and a window
    // there (a worker between fork and run(), say) is a few hundred microseconds wide. Load:
    // anywhere in the load's 300 ms, its connects included. Drain: early in the load, with two
    // connections in the middle of a message; half of these tries send a second SIGTERM (stop
    // at once) while the first one's drain goes on.
    const auto first_delay = when == moment::start_up ? log_scale(rng, 10, 30'000) : up_to(when == moment::load ? 300'000 : 100'000);
    const bool second = when == moment::drain && rng() % 2 == 0;
    const auto second_delay = up_to(300'000);
    INFO("moment: " << to_string(when) << ", SIGTERM " << first_delay.count() << " us after "
                    << (when == moment::start_up ? "main blocked it" : "the load started")
                    << (second ? ", another " + std::to_string(second_delay.count()) + " us later" : ""));

    std::vector<std::string> args{"--listen", "127.0.0.1:0", "--backend", std::string{coring::to_string(kind)},
                                  "--drain-timeout", std::to_string(drain_timeout.count())};
    if (workers) args.insert(args.end(), {"--workers", "2", "--cores", "1"});  // the parent passes the signal on
    else args.insert(args.end(), {"--cores", "2"});
    child_process server{a.binary, args};
    REQUIRE(wait_stop_signals_blocked(server.pid(), clock_type::now() + 10s));
    if (when == moment::start_up) {
        std::this_thread::sleep_for(first_delay);
        const auto signalled = clock_type::now();
        REQUIRE(::kill(server.pid(), SIGTERM) == 0);  // this try's own child, by pid
        CHECK(exited_by(server, signalled + drain_timeout + 1s) == "exit 0");
        return;
    }

    const std::uint16_t port = wait_listening(server);
    INFO("server's stderr so far:\n" << server.err());
    REQUIRE(port != 0);
    std::vector<mid_message> busy;
    if (when == moment::drain)
        for (int i = 0; i < 2; ++i) busy.push_back(start_mid_message(a, port));
    load_run load{kind, workload(a, port)};
    std::this_thread::sleep_for(first_delay);
    const auto signalled = clock_type::now();
    REQUIRE(::kill(server.pid(), SIGTERM) == 0);  // unreaped until exited_by: still ours
    if (second) {
        std::this_thread::sleep_for(second_delay);
        REQUIRE(::kill(server.pid(), SIGTERM) == 0);
    }
    CHECK(exited_by(server, signalled + drain_timeout + 1s) == "exit 0");
    load.join();  // the server is gone (or was killed by exited_by): the load ends
    INFO("the load's first error: " << load.out.first_error);
    CHECK(load.failure.empty());
    CHECK(load.out.errors.verify == 0);
    CHECK(load.out.pubsub.duplicated == 0);
    CHECK(load.out.pubsub.reordered == 0);

    for (auto& m : busy) {
        REQUIRE(m.conn.fd >= 0);
        CHECK(m.answered.starts_with(a.reply));
        CHECK(m.answered.ends_with(a.reply_end));
        const std::string rest = rest_of(m.conn.fd);
        // The echo server may have sent back part of the partial message, never anything else;
        // the others answer no half of a request.
        if (a.partial_echoed) CHECK(a.partial.starts_with(rest));
        else CHECK(rest.empty());
    }
}

}  // namespace

TEST_CASE("SIGTERM at random moments of start-up, load and drain: exit 0 in time, no client sees a wrong byte", "[shutdown]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    const std::uint64_t seed = base_seed();
    constexpr int tries = 50;  // per backend: 100 in all
    for (int i = 0; i < tries; ++i) {
        const app& a = apps()[static_cast<std::size_t>(i) % apps().size()];
        const moment when = static_cast<moment>((i / 3) % 3);  // every app meets every moment
        // coring-echo runs as two worker processes in every other round of the three moments.
        const bool workers = a.proto == load::protocol::echo && (i / 9) % 2 == 1;
        std::mt19937_64 rng{seed + static_cast<std::uint64_t>(i)};
        INFO("backend " << coring::to_string(kind) << ", try " << i << " of seed " << seed
                        << " (CORING_SHUTDOWN_SEED=" << seed << " replays it): " << a.binary << (workers ? " --workers 2" : ""));
        one_try(kind, a, workers, when, rng);
    }
}

namespace {

// coring-echo --workers 2 in a session of its own whose controlling terminal is a pty, as a
// shell runs it: a Ctrl-C written to the pty's master makes the kernel send SIGINT (from no
// process: si_pid 0) to every process of the foreground group at that moment.
class on_a_terminal {
public:
    explicit on_a_terminal(std::vector<std::string> args) {
        master_ = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        REQUIRE(master_ >= 0);
        REQUIRE(::grantpt(master_) == 0);
        REQUIRE(::unlockpt(master_) == 0);
        const std::string slave = ::ptsname(master_);
        args.insert(args.begin(), CORING_ECHO_BINARY);
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);  // built before fork: the child only opens, dups and execs
        pid_ = ::fork();
        if (pid_ == 0) {
            ::setsid();  // a new session: the first terminal it opens becomes its controlling one
            const int tty = ::open(slave.c_str(), O_RDWR);
            if (tty < 0) ::_exit(127);
            for (const int fd : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO}) ::dup2(tty, fd);
            reset_signals_for_exec();
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        REQUIRE(pid_ > 0);
    }
    on_a_terminal(const on_a_terminal&) = delete;
    on_a_terminal& operator=(const on_a_terminal&) = delete;
    ~on_a_terminal() {
        if (status_ < 0) {  // a failed check left it running: the whole session goes (its group)
            ::kill(-pid_, SIGKILL);
            while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {}
        }
        ::close(master_);
    }

    pid_t pid() const noexcept { return pid_; }
    void ctrl_c() { REQUIRE(::write(master_, "\x03", 1) == 1); }

    // How it ended by `deadline` ("exit N", "signal N", "still running"), reading what it
    // writes to the terminal meanwhile so that it never blocks on a full one.
    std::string ended_by(clock_type::time_point deadline) {
        for (;;) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                status_ = status;
                return WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status)) : "signal " + std::to_string(WTERMSIG(status));
            }
            if (clock_type::now() >= deadline) return "still running";
            pollfd p{master_, POLLIN, 0};
            if (::poll(&p, 1, 10) > 0) {
                char buf[4096];
                const ssize_t n = ::read(master_, buf, sizeof buf);
                if (n > 0) output_.append(buf, static_cast<std::size_t>(n));
            }
        }
    }
    const std::string& output() const noexcept { return output_; }

private:
    int master_ = -1;
    pid_t pid_ = -1;
    int status_ = -1;
    std::string output_;
};

}  // namespace

TEST_CASE("Ctrl-C at random moments of coring-echo --workers 2's start-up stops it all: exit 0", "[shutdown]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    if (skip_without(kind)) return;
    const std::uint64_t seed = base_seed();
    // A terminal's SIGINT reaches only the workers forked by then; the parent passes on only
    // what was sent to it alone. A Ctrl-C between main's first line and the last fork must still
    // stop every worker (it once left the later ones serving, or killed them: exit 130).
    for (int i = 0; i < 20; ++i) {
        std::mt19937_64 rng{seed + static_cast<std::uint64_t>(i)};
        const auto delay = log_scale(rng, 10, 5000);
        INFO("backend " << coring::to_string(kind) << ", try " << i << " of seed " << seed << " (CORING_SHUTDOWN_SEED="
                        << seed << " replays it): Ctrl-C " << delay.count() << " us after main blocked SIGINT");
        on_a_terminal server{{"--listen", "127.0.0.1:0", "--backend", std::string{coring::to_string(kind)}, "--workers", "2",
                              "--cores", "1", "--drain-timeout", std::to_string(drain_timeout.count())}};
        REQUIRE(wait_stop_signals_blocked(server.pid(), clock_type::now() + 10s));
        std::this_thread::sleep_for(delay);
        const auto pressed = clock_type::now();
        server.ctrl_c();
        const std::string ended = server.ended_by(pressed + drain_timeout + 1s);
        INFO("what it wrote to the terminal:\n" << server.output());
        CHECK(ended == "exit 0");  // the parent exits once every worker has
    }
}
