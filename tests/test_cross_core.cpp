// Across cores: submit_to round trips, back-pressure, ordering, async calls, exceptions,
// sharded<T>, when_all and when_any. Every case on both backends.
#include "support.hpp"

#include <atomic>
#include <stdexcept>
#include <thread>

using namespace coring;
using namespace coring::testing;

namespace {

struct outcome {
    std::atomic<std::uint64_t> ok{0};
    std::atomic<std::uint64_t> wrong{0};
    std::atomic<std::uint64_t> deferred{0};
    std::vector<int> order;  // written only on core 1
    std::thread::id target_thread;
};


task<> ping_many(unsigned calls, std::uint64_t base, outcome* out) {
    core& here = core::current();
    for (unsigned i = 0; i < calls; ++i) {
        const std::uint64_t x = base + i;
        const std::uint64_t y = co_await here.submit_to(1, [x] { return x * 2 + 1; });
        (y == x * 2 + 1 ? out->ok : out->wrong)++;
    }
}

task<> round_trips(core& c, unsigned senders, unsigned calls, outcome* out) {
    if (c.id() != 0) co_return;  // core 1 only answers
    task_group group;
    for (unsigned s = 0; s < senders; ++s) group.spawn(ping_many(calls, std::uint64_t{s} << 32, out));
    co_await group.join();
}

task<> post_one(int seq, outcome* out) {
    core& here = core::current();
    const int echoed = co_await here.submit_to(1, [seq, out] {
        out->order.push_back(seq);  // runs on core 1, in arrival order
        out->target_thread = std::this_thread::get_id();
        return seq;
    });
    (echoed == seq ? out->ok : out->wrong)++;
}

task<> post_to(unsigned target, int seq, outcome* out) {
    const int echoed = co_await core::current().submit_to(target, [seq] { return seq; });
    (echoed == seq ? out->ok : out->wrong)++;
}

task<> flood(core& c, int n, outcome* out) {
    if (c.id() != 0) co_return;
    task_group group;
    for (int i = 0; i < n; ++i) group.spawn(post_one(i, out));  // all in flight at once
    co_await group.join();
    out->deferred = c.stats().mail_deferred;
}

task<int> slow_double(int x) {
    (void)co_await sleep_for(std::chrono::milliseconds{1});
    co_return 2 * x;
}

task<> async_and_throwing(core& c, outcome* out) {
    if (c.id() != 0) co_return;
    const int v = co_await c.submit_to(1, [] { return slow_double(21); });  // a task runs on core 1
    (v == 42 ? out->ok : out->wrong)++;
    try {
        co_await c.submit_to(1, []() -> int { throw std::runtime_error("remote failure"); });
        out->wrong++;
    } catch (const std::runtime_error& e) {
        (std::string_view{e.what()} == "remote failure" ? out->ok : out->wrong)++;
    }
}

struct counter {
    unsigned owner;
    int hits = 0;
};

task<> use_sharded(core& c, sharded<counter>* s, outcome* out) {
    if (c.id() != 0) co_return;
    co_await s->start([] { return counter{core::current().id()}; });
    co_await s->invoke_on_all([](counter& k) { k.hits += 10; });
    const int hits1 = co_await s->invoke_on(1, [](counter& k) { return k.hits + static_cast<int>(k.owner) * 100; });
    (hits1 == 110 ? out->ok : out->wrong)++;
    (s->local().owner == 0 && s->local().hits == 10 ? out->ok : out->wrong)++;
}

}  // namespace

TEST_CASE("1,000,000 submit_to round trips between two cores, every result checked", "[cross]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    outcome out;
    const int rc = run(two_cores(kind), [&out](core& c) { return round_trips(c, 100, 10'000, &out); });
    CHECK(rc == 0);
    CHECK(out.ok == 1'000'000);
    CHECK(out.wrong == 0);
}

TEST_CASE("a flood into a full inbox is held back, loses nothing and keeps order", "[cross]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    outcome out;
    const int n = 20'000;  // five times the inbox
    const int rc = run(two_cores(kind), [&out](core& c) { return flood(c, n, &out); });
    CHECK(rc == 0);
    CHECK(out.ok == static_cast<std::uint64_t>(n));
    CHECK(out.wrong == 0);
    CHECK(out.deferred > 0);  // the back-pressure path ran
    REQUIRE(out.order.size() == static_cast<std::size_t>(n));
    bool in_order = true;
    for (int i = 0; i < n; ++i) in_order &= out.order[i] == i;
    CHECK(in_order);
    CHECK(out.target_thread != std::this_thread::get_id());
}

TEST_CASE("submit_to runs a returned task on the target, and carries exceptions back", "[cross]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    outcome out;
    CHECK(run(two_cores(kind), [&out](core& c) { return async_and_throwing(c, &out); }) == 0);
    CHECK(out.ok == 2);
    CHECK(out.wrong == 0);
}

TEST_CASE("sharded<T> keeps one T per core, reached through invoke_on", "[cross]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    outcome out;
    sharded<counter> shards;
    CHECK(run(two_cores(kind), [&out, &shards](core& c) { return use_sharded(c, &shards, &out); }) == 0);
    CHECK(out.ok == 2);
    CHECK(out.wrong == 0);
}

namespace {
task<int> after(std::chrono::milliseconds d, int value) {
    const auto slept = co_await sleep_for(d);
    if (!slept) co_return -1;  // cancelled
    co_return value;
}
task<std::pair<std::size_t, int>> race() {
    std::vector<task<int>> racers;
    racers.push_back(after(std::chrono::seconds{30}, 1));
    racers.push_back(after(std::chrono::milliseconds{5}, 2));
    racers.push_back(after(std::chrono::seconds{30}, 3));
    co_return co_await when_any(std::move(racers));
}
task<std::vector<int>> gather() {
    std::vector<task<int>> all;
    for (int i = 0; i < 10; ++i) all.push_back(after(std::chrono::milliseconds{10 - i}, i));
    co_return co_await when_all(std::move(all));
}
}  // namespace

TEST_CASE("when_any returns the first and cancels the rest; when_all keeps order", "[cross][when]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    test_core c{kind};
    const auto t0 = std::chrono::steady_clock::now();
    const auto [index, value] = c.run_for(10s, race());
    CHECK(index == 1);
    CHECK(value == 2);
    CHECK(std::chrono::steady_clock::now() - t0 < 5s);  // the 30 s sleepers were cancelled
    CHECK(c.run_for(10s, gather()) == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
}

namespace {
task<> flood_from(core& c, unsigned target, int n, outcome* out) {
    if (c.id() == target) co_return;
    task_group group;
    for (int i = 0; i < n; ++i) group.spawn(post_to(target, i, out));
    co_await group.join();
}
}  // namespace

// Regression: a sender read a mail's `next` (and `to`) after pushing it, by which time the
// target could already have turned it into the reply; the rest of an outbox chain was lost and
// the senders waited forever. Several senders on shared CPUs make that window likeliest.
TEST_CASE("three cores flooding a fourth through full inboxes lose nothing", "[cross]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    outcome out;
    runtime_options o = two_cores(kind);
    o.cores = 4;  // more than this machine's CPUs: cores share them and get preempted mid-send
    constexpr int n = 15'000;
    CHECK(run(o, [&out](core& c) { return flood_from(c, 3, n, &out); }) == 0);
    CHECK(out.ok == 3u * n);
    CHECK(out.wrong == 0);
}
