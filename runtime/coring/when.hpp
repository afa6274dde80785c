#pragma once
// when_all / when_any over tasks of one type, built on task_group: the children run
// concurrently on the current core, and neither function returns before every child has ended
// (when_any cancels the losers and waits for them), so no child outlives the call.
#include <coring/task.hpp>
#include <coring/task_group.hpp>

#include <exception>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

namespace coring {

namespace detail {
template <class T>
using slot_of = std::conditional_t<std::is_void_v<T>, bool, T>;

template <class T>
task<> run_into(task<T> t, std::optional<slot_of<T>>* out, std::exception_ptr* error) {
    try {
        if constexpr (std::is_void_v<T>) {
            co_await std::move(t);
            out->emplace(true);
        } else {
            out->emplace(co_await std::move(t));
        }
    } catch (...) {
        if (!*error) *error = std::current_exception();
    }
}

template <class T>
task<> race_into(task<T> t, std::size_t index, std::optional<std::pair<std::size_t, slot_of<T>>>* winner,
                 std::exception_ptr* error, task_group* group) {
    try {
        if constexpr (std::is_void_v<T>) {
            co_await std::move(t);
            if (!*winner && !*error) winner->emplace(index, true);
        } else {
            auto value = co_await std::move(t);
            if (!*winner && !*error) winner->emplace(index, std::move(value));
        }
    } catch (...) {
        if (!*winner && !*error) *error = std::current_exception();
    }
    group->cancel();  // the first to finish ends the race; cancelling is idempotent
}
}  // namespace detail

// Every result, in the order given; the first exception is rethrown after all have ended.
template <class T>
task<std::conditional_t<std::is_void_v<T>, void, std::vector<T>>> when_all(std::vector<task<T>> tasks) {
    std::vector<std::optional<detail::slot_of<T>>> results(tasks.size());
    std::exception_ptr error;
    task_group group;
    for (std::size_t i = 0; i < tasks.size(); ++i)
        group.spawn(detail::run_into(std::move(tasks[i]), &results[i], &error));
    co_await group.join();
    if (error) std::rethrow_exception(error);
    if constexpr (!std::is_void_v<T>) {
        std::vector<T> out;
        out.reserve(results.size());
        for (auto& r : results) out.push_back(std::move(*r));
        co_return out;
    }
}

// The index and result of the first task to finish; the others are cancelled (their ops end
// with ECANCELED) and awaited. For void tasks the result is just the index.
template <class T>
task<std::conditional_t<std::is_void_v<T>, std::size_t, std::pair<std::size_t, T>>> when_any(std::vector<task<T>> tasks) {
    std::optional<std::pair<std::size_t, detail::slot_of<T>>> winner;
    std::exception_ptr error;
    task_group group;
    for (std::size_t i = 0; i < tasks.size(); ++i)
        group.spawn(detail::race_into(std::move(tasks[i]), i, &winner, &error, &group));
    co_await group.join();
    if (error) std::rethrow_exception(error);
    if constexpr (std::is_void_v<T>) {
        co_return winner->first;
    } else {
        co_return std::pair<std::size_t, T>{winner->first, std::move(winner->second)};
    }
}

}  // namespace coring
