// What a core has armed outside any task's wait (multishot accepts and receives), and scopes
// that must reach everything started inside them: stop, drain and with_timeout. Each case
// opens with the bug it guards against. Both backends, multishot on and off where it matters.
#include "support.hpp"

#include <cerrno>
#include <csignal>
#include <functional>
#include <optional>
#include <sys/wait.h>
#include <unistd.h>

using namespace coring;
using namespace coring::testing;

namespace {

using clock_type = std::chrono::steady_clock;

// Runs fn in a child process: a hang there is killed at `limit` instead of hanging the suite,
// and an abort is an exit status instead of the end of the test run. Catch stays in the parent.
int exit_status_of(std::chrono::milliseconds limit, const std::function<int()>& fn) {
    const pid_t pid = ::fork();
    if (pid == 0) {
        int rc = 3;
        try {
            rc = fn();
        } catch (...) {
        }
        ::_exit(rc);  // no flush: the parent's buffered output is the parent's
    }
    REQUIRE(pid > 0);
    const auto deadline = clock_type::now() + limit;
    int status = 0;
    while (::waitpid(pid, &status, WNOHANG) == 0) {
        if (clock_type::now() > deadline) {
            ::kill(pid, SIGKILL);  // our own child, by pid
            ::waitpid(pid, &status, 0);
            return -1;  // hung
        }
        ::usleep(5000);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

TEST_CASE("sockets with armed feeds that belong to no task: run() ends, and they may go after their core", "[cores][armed]") {
    // The story: a stream that used recv_lease and a listener that used accept, kept by an
    // object outside any task (as a sharded<T> service is), left a multishot op in the kernel.
    // drain_everything cancelled only tasks, so run() blocked forever in io_uring_enter; on
    // epoll, destroying the socket after its core was gone aborted ("no core on this thread").
    const auto s = GENERATE(LEASE_SETUPS);
    INFO(describe(s));
    const int status = exit_status_of(10s, [&] {
        std::optional<tcp_stream> kept_stream;
        std::optional<tcp_listener> kept_listener;
        bool got_data = false;
        {
            core c{core_config{0, config_of(s), 1000ms}};
            c.spawn([](std::optional<tcp_stream>* stream, std::optional<tcp_listener>* listener, bool* got) -> task<> {
                auto l = tcp_listener::bind("127.0.0.1:0");
                if (!l) co_return;
                auto where = l->local_address();
                auto client = co_await tcp_stream::connect(*where);
                if (!client) co_return;
                auto server = co_await l->accept();  // the listener's feed is armed now
                if (!server) co_return;
                (void)co_await client->write_all(as_bytes("hello"));
                auto lease = co_await server->recv_lease();  // and the stream's
                *got = lease && !lease->empty();
                stream->emplace(std::move(*server));
                listener->emplace(std::move(*l));
                co_await client->close();
            }(&kept_stream, &kept_listener, &got_data));
            c.run();  // every task has ended: it must return, whatever the kept sockets have armed
        }
        kept_stream.reset();  // after the core: nothing to cancel, the fds just close
        kept_listener.reset();
        return got_data ? 0 : 4;
    });
    CHECK(status == 0);  // -1: hung in run() or ~core; 134: aborted
}

TEST_CASE("a stop ends an accept loop that is busy between accepts", "[cores][armed]") {
    // The story: begin_stop cancelled only accepts that a task waited on at that instant. A
    // multishot accept stays armed between accepts, so a connection arriving after the stop
    // was accepted and served, and run() took the whole drain timeout (2,050 ms vs 450 ms).
    const auto s = GENERATE(LEASE_SETUPS);
    INFO(describe(s));
    core c{core_config{0, config_of(s), 2000ms}};
    struct shared {
        address where;
        int accepted = 0;
        bool listening = false;
    } sh;
    c.spawn([](shared* sh) -> task<> {
        auto l = tcp_listener::bind("127.0.0.1:0");
        REQUIRE(l);
        sh->where = *l->local_address();
        sh->listening = true;
        for (;;) {
            auto conn = co_await l->accept();
            if (!conn) break;
            ++sh->accepted;
            co_await conn->close();
            (void)co_await sleep_for(200ms);  // busy: not waiting in accept when the stop comes
        }
        co_await l->close();
    }(&sh));
    c.spawn([](shared* sh) -> task<> {
        while (!sh->listening) (void)co_await sleep_for(1ms);
        auto first = co_await tcp_stream::connect(sh->where);
        REQUIRE(first);
        while (sh->accepted == 0) (void)co_await sleep_for(1ms);
        core::current().request_stop();
        auto late = co_await tcp_stream::connect(sh->where);  // lands in the backlog after the stop
        (void)co_await sleep_for(20ms);
        if (late) co_await late->close();
        co_await first->close();
    }(&sh));
    const auto start = clock_type::now();
    c.run();
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now() - start);
    INFO("run() took " << took.count() << " ms, drain timeout 2000 ms");
    CHECK(sh.accepted == 1);   // the connection that came after the stop was not served
    CHECK(took < 1000ms);      // the loop ended when it came back to accept, not at the drain timeout
}

TEST_CASE("with_timeout bounds the children its body starts after the deadline", "[timer][armed]") {
    // The story: with_timeout(0ms, body) where body yields and then awaits when_all of two 300 ms
    // sleeps returned success after 300 ms: children inherited `cancelled`, not `expired`.
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO(to_string(kind));
    test_core c{kind};
    c.run_for(5s, []() -> task<> {
        const auto start = clock_type::now();
        auto r = co_await with_timeout(0ms, []() -> task<result<void>> {
            co_await yield();  // the deadline passes here
            std::vector<task<result<void>>> kids;
            for (int i = 0; i < 2; ++i)
                kids.push_back([]() -> task<result<void>> { co_return co_await sleep_for(300ms); }());
            for (auto& r : co_await when_all(std::move(kids)))
                if (!r) co_return r.error();
            co_return result<void>{};
        }());
        const auto took = clock_type::now() - start;
        REQUIRE_FALSE(r);
        CHECK(r.error() == std::errc::timed_out);
        CHECK(took < 150ms);
    }());
}

TEST_CASE("a 2-entry SQ and a 16-entry CQ: CQEs reaped while a batch is handled keep every stream in order", "[buffers][armed]") {
    // The story: a handler that submits while the SQ is full may have to reap (EBUSY); that inner
    // reap handled newer CQEs before the rest of the outer batch, which could reorder a
    // multishot receive's data. Now the inner reap only appends behind the outer batch.
    const auto s = GENERATE(lease_setup{backend_kind::uring, true}, lease_setup{backend_kind::uring, false});
    INFO(describe(s));
    backend_config cfg = config_of(s);
    cfg.sq_entries = 2;
    cfg.cq_entries = 16;
    cfg.buffer_count = 64;
    cfg.buffer_size = 1024;
    test_core c{cfg};
    bool in_order = true;
    std::size_t total = 0;
    c.run_for(60s, [](bool* in_order, std::size_t* total) -> task<> {
        constexpr int streams = 16;
        constexpr std::size_t bytes = 512 * 1024;
        std::vector<std::pair<tcp_stream, tcp_stream>> pairs;
        for (int k = 0; k < streams; ++k) pairs.push_back(co_await connected_pair());
        task_group group;
        for (int k = 0; k < streams; ++k) {
            group.spawn([](tcp_stream* out, int k) -> task<> {
                std::vector<std::byte> chunk(16384);
                for (std::size_t sent = 0; sent < bytes; sent += chunk.size()) {
                    for (std::size_t i = 0; i < chunk.size(); ++i) chunk[i] = std::byte((sent + i) * 7 + k);
                    CO_REQUIRE(co_await out->write_all(chunk));
                }
                CO_REQUIRE(co_await out->shutdown(SHUT_WR));
            }(&pairs[k].first, k));
            group.spawn([](tcp_stream* in, int k, bool* in_order, std::size_t* total) -> task<> {
                std::size_t at = 0;
                for (;;) {
                    auto lease = co_await in->recv_lease();
                    REQUIRE(lease);
                    if (lease->empty()) break;
                    for (std::byte b : lease->data())
                        if (b != std::byte(at++ * 7 + k)) *in_order = false;
                    if (at % 3 == 0) co_await yield();  // away now and then: queues fill, ops pause
                }
                *total += at;
            }(&pairs[k].second, k, in_order, total));
        }
        co_await group.join();
        for (auto& [a, b] : pairs) {
            co_await a.close();
            co_await b.close();
        }
    }(&in_order, &total));
    INFO("stats: " << to_string(c->stats()));
    CHECK(in_order);
    CHECK(total == 16u * 512 * 1024);
}
