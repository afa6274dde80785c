// A per-core service, built before any core serves: run(opts, setup, main).
// setup runs on every core and no main starts until it has finished on every core, so the
// sharded<T> that core 0 starts exists on every core before any main uses it. Started from
// main instead, core 1 could reach its shard (or accept a connection) before it was built.
#include <coring/coring.hpp>

#include <cstdio>

using namespace coring;

// One per core, touched only by its own core: no locks.
struct hit_counter {
    unsigned built_on = 0;
    unsigned long hits = 0;
};

int main(int argc, char** argv) {  // try --cores 4, --backend epoll
    const runtime_options opts = runtime_options::from_args(argc, argv);
    sharded<hit_counter> counters;  // outlives run(), so it outlives every task using it
    return run(
        opts,
        [&](core& c) -> task<> {  // setup, on every core; one start builds every shard
            if (c.id() == 0) co_await counters.start([] { return hit_counter{core::current().id()}; });
        },
        [&](core& c) -> task<> {  // main, on every core, once every setup has finished
            unsigned ready = 0;  // shards that exist and were built on their own core
            for (unsigned k = 0; k < counters.size(); ++k) {
                const unsigned built_on = co_await counters.invoke_on(k, [](hit_counter& h) { ++h.hits; return h.built_on; });
                if (built_on == k) ++ready;  // await first: g++ 12 mis-compiles co_await in a condition
            }
            std::printf("core %u: %u of %u shards ready\n", c.id(), ready, counters.size());
        });
}
