#pragma once
// sharded<T>: one T per core of the run, each touched only by its own core. A core uses its own
// shard directly (local()); another core's shard is reached by sending the work there
// (invoke_on), so no shard ever needs a lock.
//
// Lifetime: construct and destroy the sharded<T> outside the cores (before run() / after it
// returns) or on one core while no task uses it; start() builds each shard on its own core.
#include <coring/core.hpp>
#include <coring/when.hpp>

#include <memory>
#include <vector>

namespace coring {

template <class T>
class sharded {
public:
    sharded() = default;
    sharded(const sharded&) = delete;

    // Builds one T per core, each on its own core, from make() (called there). Await it from
    // any one core; the others may run meanwhile.
    template <class Make>
    task<> start(Make make) {
        core& here = core::current();
        shards_.resize(here.core_count());
        std::vector<task<>> builds;
        for (unsigned k = 0; k < here.core_count(); ++k) builds.push_back(build_on(k, make));
        co_await when_all(std::move(builds));
    }

    T& local() noexcept { return *shards_[core::current().id()]; }
    unsigned size() const noexcept { return static_cast<unsigned>(shards_.size()); }

    // fn(T&) on core k's shard; its result (or exception) comes back here.
    template <class Fn>
    auto invoke_on(unsigned k, Fn fn) {
        return core::current().submit_to(k, [this, k, fn = std::move(fn)]() mutable { return fn(*shards_[k]); });
    }

    // fn(T&) on every shard, concurrently; returns when all have run.
    template <class Fn>
    task<> invoke_on_all(Fn fn) {
        std::vector<task<>> calls;
        for (unsigned k = 0; k < size(); ++k) calls.push_back(call_on(k, fn));
        co_await when_all(std::move(calls));
    }

private:
    template <class Make>
    task<> build_on(unsigned k, Make make) {
        auto* slot = &shards_[k];
        co_await core::current().submit_to(k, [slot, make]() mutable { *slot = std::make_unique<T>(make()); });
    }
    template <class Fn>
    task<> call_on(unsigned k, Fn fn) {
        co_await invoke_on(k, std::move(fn));
    }

    std::vector<std::unique_ptr<T>> shards_;
};

}  // namespace coring
