#pragma once
// Coroutine frames come from a per-thread (so per-core) cache of size classes: a frame freed is
// kept for the next frame of its class, so a busy server allocates frames without touching the
// global heap or taking a lock. A frame freed on another core is handed back to the core that
// allocated it (see frame_allocator.cpp for the rule), never kept or freed by the other core.
#include <cstddef>

namespace coring::detail {

void* allocate_frame(std::size_t size);
void free_frame(void* frame, std::size_t size) noexcept;

struct frame_stats {
    std::size_t allocations = 0;   // frames handed out
    std::size_t cache_hits = 0;    // of those, from the cache rather than the heap
};
frame_stats frame_allocator_stats() noexcept;  // this thread's counters
bool frame_cache_enabled() noexcept;           // false under AddressSanitizer (see the .cpp)

}  // namespace coring::detail
