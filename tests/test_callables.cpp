// Every API that takes a callable, with lambdas that capture a std::string (on the heap) and a
// std::shared_ptr. g++ 12 destroys a closure twice when it is a temporary argument inside a
// co_await expression (cross-core chat lines began with 16 bytes of freed heap), whatever the
// API does with it; so the APIs that are awaited refuse such a temporary at compile time under
// g++ (CORING_CHECK_CALLABLE) and these calls pass lambdas by name. ASan checks every free,
// and the shared_ptr's use count proves every copy was destroyed exactly once.
#include "support.hpp"

#include <atomic>
#include <memory>
#include <string>

using namespace coring;
using namespace coring::testing;

namespace {


struct room {
    std::string lines;
};

struct tally {
    std::atomic<int> ok{0};
    std::atomic<int> wrong{0};
    void check(bool b) { (b ? ok : wrong)++; }
};

task<> every_api(core& c, sharded<room>* rooms, tally* t) {
    if (c.id() != 0) co_return;
    const std::string line(64, 'x');  // longer than the small-string buffer: on the heap
    auto owner = std::make_shared<int>(7);

    auto measure = [line, owner] { return line.size() + *owner; };
    const std::size_t n = co_await c.submit_to(1, measure);
    t->check(n == 71);

    auto make = [line, owner] { return room{line}; };
    co_await rooms->start(make);
    auto append = [line, owner](room& r) { r.lines += line; };
    co_await rooms->invoke_on(1, append);
    co_await rooms->invoke_on_all(append);
    auto size_of = [line, owner](room& r) { return r.lines.size(); };
    const std::size_t got = co_await rooms->invoke_on(1, size_of);
    t->check(got == 3 * line.size());

    auto trivially = [p = owner.get()] { return *p; };  // no destructor: fine inline too
    const int seven = co_await c.submit_to(1, [p = owner.get()] { return *p; });
    t->check(seven == 7 && trivially() == 7);

    task_group group;
    c.spawn([line, owner]() -> task<> { co_return; }, group);  // a callable: the task owns it
    group.spawn([line, owner, t]() -> task<> {
        co_await yield();
        t->check(line.size() == 64 && *owner == 7);  // the captures outlive the suspension
    });
    co_await group.join();

    std::vector<task<std::size_t>> kids;
    for (int i = 0; i < 2; ++i)
        kids.push_back(make_task([line, owner]() -> task<std::size_t> {
            co_await yield();
            co_return line.size() + *owner;
        }));
    for (std::size_t k : co_await when_all(std::move(kids))) t->check(k == 71);

    t->check(owner.use_count() == 5);  // the named lambdas above hold the other four
    c.post_to(1, [line, owner, t] { t->check(line.size() == 64 && *owner == 7); });
}

}  // namespace

TEST_CASE("callables with captures, inline in co_await: submit_to, sharded, spawn, when_all, post_to", "[cross][callables]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO(to_string(kind));
    if (skip_without(kind)) return;
    sharded<room> rooms;
    tally t;
    REQUIRE(run(two_cores(kind), [&](core& c) { return every_api(c, &rooms, &t); }) == 0);
    CHECK(t.wrong == 0);
    CHECK(t.ok == 8);
}
