#include <coring/frame_allocator.hpp>

#include <array>
#include <new>
#include <utility>

namespace coring::detail {
namespace {

constexpr std::size_t granule = 64;          // class k holds frames of up to (k + 1) * 64 bytes
constexpr std::size_t class_count = 32;      // so frames up to 2 KiB are cached
// Under AddressSanitizer frames go straight to the heap, so ASan sees each frame's lifetime
// (a cached block would hide a use-after-free behind the next frame of its class).
#if defined(__SANITIZE_ADDRESS__)
constexpr std::size_t max_cached = 0;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr std::size_t max_cached = 0;
#else
constexpr std::size_t max_cached = 4096;  // per class and thread
#endif
#else
constexpr std::size_t max_cached = 4096;  // per class and thread
#endif

struct free_block {
    free_block* next;
};

thread_local bool gone = false;  // trivially destructible, so still readable after the cache dies

struct frame_cache {
    std::array<free_block*, class_count> heads{};
    std::array<std::size_t, class_count> counts{};
    frame_stats stats;

    ~frame_cache() {
        gone = true;  // frames freed later in thread exit go straight to the heap
        for (free_block* head : heads)
            while (head) ::operator delete(std::exchange(head, head->next));
    }
};

thread_local frame_cache cache;

constexpr std::size_t class_of(std::size_t size) noexcept { return (size - 1) / granule; }

}  // namespace

void* allocate_frame(std::size_t size) {
    const std::size_t k = class_of(size);
    if (gone || k >= class_count) return ::operator new(size);
    ++cache.stats.allocations;
    if (free_block* b = cache.heads[k]) {
        cache.heads[k] = b->next;
        --cache.counts[k];
        ++cache.stats.cache_hits;
        return b;
    }
    return ::operator new((k + 1) * granule);  // the class size, so any frame of the class fits later
}

void free_frame(void* frame, std::size_t size) noexcept {
    const std::size_t k = class_of(size);
    if (gone || k >= class_count || cache.counts[k] >= max_cached) {
        ::operator delete(frame);
        return;
    }
    cache.heads[k] = new (frame) free_block{cache.heads[k]};
    ++cache.counts[k];
}

frame_stats frame_allocator_stats() noexcept { return cache.stats; }
bool frame_cache_enabled() noexcept { return max_cached > 0; }

}  // namespace coring::detail
