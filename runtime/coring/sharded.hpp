#pragma once
// sharded<T>: one T per core of the run, each touched only by its own core. A core uses its own
// shard directly (local()); another core's shard is reached by sending the work there
// (invoke_on), so no shard ever needs a lock.
//
// Lifetime: construct and destroy the sharded<T> outside the cores (before run() / after it
// returns) or on one core while no task uses it; start() builds each shard on its own core.
#include <coring/core.hpp>
#include <coring/log.hpp>
#include <coring/when.hpp>

#include <cstdlib>
#include <memory>
#include <type_traits>
#include <vector>

namespace coring {

template <class T>
class sharded {
public:
    sharded() = default;
    sharded(const sharded&) = delete;

    // Builds one T per core, each on its own core, from make() (called there), which returns a
    // T or, for a T that cannot move, a std::unique_ptr<T>. Await it from
    // any one core; the others may run meanwhile (run()'s setup phase makes "every shard exists"
    // a fact before any core serves). make is copied to every core.
    template <class Make>
    [[nodiscard]] task<> start(Make&& make) {
        CORING_CHECK_CALLABLE(Make);
        return start_all(std::decay_t<Make>(std::forward<Make>(make)));
    }

    T& local() noexcept { return *shards_[core::current().id()]; }
    unsigned size() const noexcept { return static_cast<unsigned>(shards_.size()); }

    // fn(T&) on core k's shard; its result (or exception) comes back here.
    template <class Fn>
    [[nodiscard]] auto invoke_on(unsigned k, Fn&& fn) {
        CORING_CHECK_CALLABLE(Fn);
        if (k >= size()) {
            log("invoke_on({}): {} shard(s) (started?)", k, size());
            std::abort();
        }
        return call_on(k, std::decay_t<Fn>(std::forward<Fn>(fn)));
    }

    // fn(T&) on every shard, concurrently (each core gets a copy); returns when all have run.
    template <class Fn>
    [[nodiscard]] task<> invoke_on_all(Fn&& fn) {
        CORING_CHECK_CALLABLE(Fn);
        return call_on_all(std::decay_t<Fn>(std::forward<Fn>(fn)));
    }

private:
    // The callables below are always named objects (parameters, members) by the time they
    // reach a co_await, so the g++ trap above cannot bite inside coring.
    template <class Make>
    task<> start_all(Make make) {
        core& here = core::current();
        shards_.resize(here.core_count());
        std::vector<task<>> builds;
        for (unsigned k = 0; k < here.core_count(); ++k) builds.push_back(build_on(k, make));
        co_await when_all(std::move(builds));
    }
    template <class Make>
    task<> build_on(unsigned k, Make make) {
        auto build = [slot = &shards_[k], make = std::move(make)]() mutable {
            if constexpr (std::is_same_v<decltype(make()), std::unique_ptr<T>>) *slot = make();  // T need not move
            else *slot = std::make_unique<T>(make());
        };
        co_await core::current().submit_to(k, build);
    }
    template <class Fn>
    auto call_on(unsigned k, Fn fn) {
        auto on_shard = [this, k, fn = std::move(fn)]() mutable { return fn(*shards_[k]); };
        return detail::remote_call<decltype(on_shard)>{core::current(), k, std::move(on_shard)};
    }
    template <class Fn>
    task<> call_on_all(Fn fn) {
        std::vector<task<>> calls;
        for (unsigned k = 0; k < size(); ++k) calls.push_back(call_and_wait(k, fn));
        co_await when_all(std::move(calls));
    }
    template <class Fn>
    task<> call_and_wait(unsigned k, Fn fn) {
        co_await call_on(k, std::move(fn));
    }

    std::vector<std::unique_ptr<T>> shards_;
};

}  // namespace coring
