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
    std::size_t slabs_mapped = 0;  // 64 KiB slabs taken from the kernel
    std::size_t slabs_unmapped = 0;  // and given back
};
frame_stats frame_allocator_stats() noexcept;  // this thread's counters

// Slabs that a burst of frames filled stay mapped for the next burst once empty (the .cpp says
// how many). frames_to_trim(): this thread keeps more than two empty slabs of some class;
// trim_frames() gives those back. The core calls it about once a second while there are any.
bool frames_to_trim() noexcept;
void trim_frames() noexcept;
bool frame_cache_enabled() noexcept;           // false under AddressSanitizer (see the .cpp)

}  // namespace coring::detail
