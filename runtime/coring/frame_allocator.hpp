#pragma once
// Coroutine frames come from a per-thread (so per-core) cache of size classes: a frame freed is
// kept for the next frame of its class, so a busy server allocates frames without touching the
// global heap or taking a lock. Every cached block is its own ::operator new allocation, which
// makes a cross-thread free safe: the block simply joins the freeing thread's cache. Each class
// keeps at most max_cached blocks, so memory cannot pile up on one thread.
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
