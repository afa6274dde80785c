// task<T>: laziness, values, exceptions, nesting and constant-stack symmetric transfer.
#include "support.hpp"

#include <stdexcept>
#include <thread>

using namespace coring;
using namespace coring::testing;

namespace {

task<int> answer() { co_return 42; }
task<int> add_one(int x) { co_return x + 1; }
task<int> nested() {
    const int a = co_await answer();
    const int b = co_await add_one(a);
    co_return a + b;
}
task<> fails() {
    throw std::runtime_error("boom");
    co_return;
}
task<int> catches() {
    try {
        co_await fails();
    } catch (const std::runtime_error& e) {
        co_return std::string_view{e.what()} == "boom" ? 1 : 0;
    }
    co_return -1;
}

task<std::uintptr_t> stack_probe() {
    int local = 0;
    co_return reinterpret_cast<std::uintptr_t>(&local);
}

// A million awaits of tasks that finish without suspending: without symmetric transfer each
// completion would nest one resume() deeper and overflow the stack.
// Returns how far (bytes) the deepest probe sat below the first one.
task<std::uintptr_t> many_sync_awaits(int n, std::uint64_t* sum) {
    const std::uintptr_t first = co_await stack_probe();
    std::uintptr_t deepest = first;
    for (int i = 0; i < n; ++i) {
        *sum += static_cast<std::uint64_t>(co_await add_one(i));
        if (i % 1000 == 0) {
            const std::uintptr_t p = co_await stack_probe();
            if (p < deepest) deepest = p;
        }
    }
    co_return first - deepest;
}

task<int> chain(int depth) {
    if (depth == 0) co_return 0;
    co_return 1 + co_await chain(depth - 1);
}

task<> set_flag(bool* flag) {
    *flag = true;
    co_return;
}

}  // namespace

TEST_CASE("task is lazy: nothing runs until awaited", "[task]") {
    test_core c{backend_kind::epoll};
    bool ran = false;
    {
        auto t = set_flag(&ran);
        CHECK_FALSE(ran);
    }  // destroyed unstarted: never runs
    CHECK_FALSE(ran);
    c.run_for(1s, set_flag(&ran));
    CHECK(ran);
}

TEST_CASE("task returns values, void, and nested results", "[task]") {
    test_core c{backend_kind::epoll};
    CHECK(c.run_for(1s, answer()) == 42);
    CHECK(c.run_for(1s, nested()) == 85);
    bool ran = false;
    c.run_for(1s, set_flag(&ran));
    CHECK(ran);
}

TEST_CASE("an exception propagates to the awaiter and out of block_on", "[task]") {
    test_core c{backend_kind::epoll};
    CHECK(c.run_for(1s, catches()) == 1);
    CHECK_THROWS_WITH(c.run_for(1s, fails()), "boom");
}

namespace {
task<int> catches_each(int n) {
    int caught = 0;
    for (int i = 0; i < n; ++i) {
        try {
            co_await fails();
        } catch (const std::runtime_error&) {
            ++caught;
        }
    }
    co_return caught;
}
}  // namespace

TEST_CASE("an exception waits outside the frame until taken, and never outlives its frame", "[task]") {
    // Frames hold no exception_ptr: an escaping exception waits in a table keyed by its promise.
    test_core c{backend_kind::epoll};
    const std::size_t before = detail::exceptions_waiting();
    CHECK(c.run_for(1s, catches_each(100)) == 100);
    CHECK(detail::exceptions_waiting() == before);  // each one taken by its awaiter
    c->spawn(fails());                               // a root task: the core takes it and logs it
    c.run_for(1s, []() -> task<> { (void)co_await sleep_for(1ms); }());
    CHECK(detail::exceptions_waiting() == before);
    auto frame = fails().release();  // run by hand and never awaited
    frame.resume();
    CHECK(frame.done());
    CHECK(detail::exceptions_waiting() == before + 1);
    frame.destroy();  // its exception goes with it
    CHECK(detail::exceptions_waiting() == before);
}

namespace {
task<> sleeper(std::error_code* out) {
    auto slept = co_await sleep_for(30s);
    *out = slept ? std::error_code{} : slept.error();
}

// The core's cancel-all (here its user-task half) reaches a group's children, which are on their group's list, not the
// core's: through the group's anchor. Returns how long the join took.
task<std::chrono::milliseconds> cancel_all_reaches_group_children(std::array<std::error_code, 3>* seen) {
    task_group outer;
    task_group inner;  // a second group at the same time: two anchors on the core's list
    outer.spawn(sleeper(&(*seen)[0]));
    outer.spawn(sleeper(&(*seen)[1]));
    inner.spawn(sleeper(&(*seen)[2]));
    (void)co_await sleep_for(5ms);
    const auto start = std::chrono::steady_clock::now();
    core::current().cancel_user_tasks();  // this task too: its joins still wait for the children
    co_await outer.join();
    co_await inner.join();
    co_return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
}
}  // namespace

TEST_CASE("cancelling every task reaches the children of every task_group", "[task]") {
    const auto kind = GENERATE(backend_kind::uring, backend_kind::epoll);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    std::array<std::error_code, 3> seen;
    CHECK(c.run_for(10s, cancel_all_reaches_group_children(&seen)) < 5s);
    for (const auto& e : seen) CHECK(e == std::errc::operation_canceled);
    CHECK(c->live_tasks() == 0);
}

namespace {
// Two tasks join one group while its child sleeps: both resume when it ends.
task<int> two_joiners() {
    task_group work;
    work.spawn([]() -> task<> { (void)co_await sleep_for(50ms); });
    int resumed = 0;
    task_group joiners;
    for (int i = 0; i < 2; ++i)
        joiners.spawn([&work, &resumed]() -> task<> {
            co_await work.join();
            ++resumed;
        });
    co_await joiners.join();
    co_return resumed;
}

// A task cancelled while it sleeps then joins its own group, whose child would sleep an hour:
// the join cancels the child, so the outer cancel_and_join ends.
task<std::error_code> cancelled_task_joins() {
    std::error_code child_saw;
    task_group outer;
    outer.spawn([&child_saw]() -> task<> {
        task_group inner;
        inner.spawn([&child_saw]() -> task<> {
            auto slept = co_await sleep_for(std::chrono::hours{1});
            child_saw = slept ? std::error_code{} : slept.error();
        });
        (void)co_await sleep_for(std::chrono::hours{1});  // cancelled here
        co_await inner.join();
    });
    co_await yield();
    co_await outer.cancel_and_join();
    co_return child_saw;
}
}  // namespace

TEST_CASE("task_group: two tasks join at once and both resume", "[task]") {
    const auto kind = GENERATE(backend_kind::uring, backend_kind::epoll);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    CHECK(c.run_for(5s, two_joiners()) == 2);
}

TEST_CASE("task_group: a task already cancelled that joins cancels its children first", "[task]") {
    const auto kind = GENERATE(backend_kind::uring, backend_kind::epoll);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    CHECK(c.run_for(5s, cancelled_task_joins()) == std::errc::operation_canceled);
}

TEST_CASE("a million synchronous awaits run in constant stack", "[task][symmetric]") {
    test_core c{backend_kind::epoll};
    std::uint64_t sum = 0;
    const std::uintptr_t growth = c.run_for(30s, many_sync_awaits(1'000'000, &sum));
    CHECK(sum == 1'000'000ull * 1'000'001ull / 2);
    // The stack did not grow with the awaits: a resume nested per await would be a million frames
    // deep (tens of MiB). Under ASan a probe may sit a few KiB off the first one (ASan's own
    // frames around the loop), once, however many awaits run; so the bound, not 0.
    CHECK(growth < 64 * 1024);
}

TEST_CASE("a chain of 100,000 nested tasks completes without stack overflow", "[task][symmetric]") {
    test_core c{backend_kind::epoll};
    CHECK(c.run_for(30s, chain(100'000)) == 100'000);
}

TEST_CASE("frames are recycled by the per-core allocator", "[task][allocator]") {
    test_core c{backend_kind::epoll};
    const auto before = detail::frame_allocator_stats();
    for (int i = 0; i < 1000; ++i) CHECK(c.run_for(1s, answer()) == 42);
    const auto after = detail::frame_allocator_stats();
    CHECK(after.allocations - before.allocations >= 1000);
    if (detail::frame_cache_enabled()) CHECK(after.cache_hits - before.cache_hits >= 990);
    else CHECK(after.cache_hits == before.cache_hits);  // ASan build: every frame from the heap
}

namespace {
task<int> made_here(int x) { co_return x; }
TEST_CASE("a burst's empty frame slabs stay for the next burst, until a trim gives them back", "[task][allocator]") {
    if (!detail::frame_cache_enabled()) return;  // ASan build: frames come from the heap
    // 500 frames of 1,200 bytes fill 10 slabs (54 blocks each). Unmapped at the end of every
    // burst, the next burst would fault fresh pages in: a pub/sub core did so at every turn.
    constexpr std::size_t size = 1200;
    std::vector<void*> burst(500);
    detail::trim_frames();  // what earlier tests on this thread left to trim, so the counts below are this test's
    const auto fill = [&] {
        for (void*& p : burst) p = detail::allocate_frame(size);
    };
    const auto drain = [&] {
        for (void* p : burst) detail::free_frame(p, size);
    };
    fill();
    drain();
    const auto before = detail::frame_allocator_stats();
    fill();
    drain();
    const auto again = detail::frame_allocator_stats();
    CHECK(again.slabs_mapped == before.slabs_mapped);  // the second burst found its slabs
    CHECK(again.slabs_unmapped == before.slabs_unmapped);
    REQUIRE(detail::frames_to_trim());
    detail::trim_frames();
    CHECK_FALSE(detail::frames_to_trim());
    CHECK(detail::frame_allocator_stats().slabs_unmapped - again.slabs_unmapped == 8);  // all but two
    // After the trim the burst's slabs are counted afresh: two stay, the rest come and go again.
    fill();
    drain();
    CHECK(detail::frame_allocator_stats().slabs_mapped - again.slabs_mapped == 8);
}

struct handed_frames {
    std::vector<task<int>> tasks;
};
task<> free_on_core1(core& c, handed_frames* h, std::atomic<int>* sum) {
    if (c.id() != 1) co_return;
    // Frames allocated on core 0 are awaited and destroyed here, on core 1.
    for (auto& t : h->tasks) *sum += co_await std::move(t);
    h->tasks.clear();
}
}  // namespace

TEST_CASE("a frame freed on another core is handed back to its owner", "[task][allocator]") {
    if (!detail::frame_cache_enabled()) return;  // ASan build: frames come from the heap
    handed_frames frames;
    for (int i = 0; i < 1000; ++i) frames.tasks.push_back(made_here(i));  // allocated on this thread
    std::atomic<int> sum{0};
    runtime_options o;
    o.cores = 2;
    o.backend = backend_kind::epoll;
    o.quiet = true;
    CHECK(run(o, [&](core& c) { return free_on_core1(c, &frames, &sum); }) == 0);
    CHECK(sum == 999 * 1000 / 2);
    // The 1000 blocks came back to this thread: the next 1000 frames of that class reuse them.
    const auto before = detail::frame_allocator_stats();
    std::vector<task<int>> again;
    for (int i = 0; i < 1000; ++i) again.push_back(made_here(i));
    const auto after = detail::frame_allocator_stats();
    CHECK(after.cache_hits - before.cache_hits == 1000);
}

TEST_CASE("frames outlive the thread that made them, and slabs come back when they go", "[task][allocator]") {
    // A thread makes frames and exits with them alive: its cache closes, and the frames are
    // destroyed here, later, on another thread (through the late path, under its lock).
    handed_frames frames;
    std::thread maker{[&] {
        for (int i = 0; i < 5000; ++i) frames.tasks.push_back(made_here(i));
    }};
    maker.join();
    test_core c{backend_kind::epoll};
    for (int i = 0; i < 10; ++i) CHECK(c.run_for(1s, std::move(frames.tasks[static_cast<std::size_t>(i)])) == i);
    frames.tasks.clear();  // the rest, never started: freed here (ASan checks every one)
}
