// The table where an exception that escaped a task waits for its awaiter (task.hpp says why
// it is not in the frame).
#include <coring/task.hpp>

#include <mutex>
#include <unordered_map>

namespace coring::detail {

namespace {
std::mutex failures_lock;
std::unordered_map<const void*, std::exception_ptr>& failures() {
    static std::unordered_map<const void*, std::exception_ptr> by_promise;
    return by_promise;
}
}  // namespace

void keep_exception(const void* promise, std::exception_ptr e) noexcept {
    std::lock_guard g{failures_lock};
    failures()[promise] = std::move(e);  // (out of memory here ends the process: noexcept)
}

std::exception_ptr take_exception(const void* promise) noexcept {
    std::lock_guard g{failures_lock};
    auto it = failures().find(promise);
    if (it == failures().end()) return nullptr;
    std::exception_ptr e = std::move(it->second);
    failures().erase(it);
    return e;
}

std::size_t exceptions_waiting() noexcept {
    std::lock_guard g{failures_lock};
    return failures().size();
}

}  // namespace coring::detail
