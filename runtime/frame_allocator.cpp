#include <coring/frame_allocator.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <new>
#include <sys/mman.h>
#include <utility>
#include <vector>

// Blocks without headers. A frame's size class comes from its size (operator delete is told
// the size), and its owner from its address: blocks are carved out of 64 KiB slabs aligned to
// 64 KiB, and each slab starts with a header naming the thread (core) that owns it and the
// class it serves. So a 200-byte frame costs 208 bytes, not 200 plus a malloc header plus a
// block header: an idle connection's frame is most of what it costs.
//
// Freed on its own thread, a block goes on its slab's free list. Freed on another thread, it is
// handed back: pushed onto the owner's lock-free `returned` stack, which the owner sorts into
// its slabs the next time a class has no room. A slab whose blocks have all come back stays
// mapped while its class has at most as many empty slabs as it had in use at once since the
// last trim (two at least): a load that fills a few slabs with short-lived frames every loop
// turn (a send per subscriber, say) would otherwise unmap them at each turn's end and fault
// fresh pages in at the next. trim_frames() (the core's, about once a second while there is
// something to trim) gives back the empty slabs beyond two per class and starts counting
// afresh: the memory of a burst returns. (A thread that never calls it, which runs no core,
// keeps empty slabs up to its peak; once it has exited, two per class.)
//
// Once the owner thread has exited, its cache struct stays (it is small) and its `returned`
// stack is closed: every later operation on its slabs (a late free from another thread, or a
// frame made during the owner's own thread-exit) takes one process-wide lock. Rare, and correct.
namespace coring::detail {

namespace {

constexpr std::size_t granule = 16;        // class k holds blocks of (k + 1) * 16 bytes
constexpr std::size_t class_count = 128;   // so frames up to 2 KiB come from slabs
constexpr std::size_t slab_bytes = 64 * 1024;
constexpr unsigned empty_slabs_kept = 2;   // per class

// Under AddressSanitizer frames go straight to the heap, so ASan sees each frame's lifetime
// (a block reused from a slab would hide a use-after-free behind the next frame of its class).
#if defined(__SANITIZE_ADDRESS__)
#define CORING_FRAME_CACHE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CORING_FRAME_CACHE 0
#endif
#endif
#ifndef CORING_FRAME_CACHE
#define CORING_FRAME_CACHE 1
#endif
constexpr bool use_slabs = CORING_FRAME_CACHE;

struct free_block {
    free_block* next;
};
free_block* const closed = reinterpret_cast<free_block*>(alignof(free_block));  // owner has exited

struct frame_cache;

struct alignas(16) slab {
    frame_cache* owner;
    slab* prev = nullptr;  // in its class's list of slabs with room
    slab* next = nullptr;
    free_block* free = nullptr;  // blocks that came back
    std::uint32_t klass;
    std::uint32_t used = 0;      // blocks handed out and not back
    std::uint32_t carved;        // bytes from the slab's start given out at least once
    std::uint32_t index = 0;     // in the owner's `slabs`
    bool listed = false;         // in the class list: it has room

    std::size_t block_bytes() const noexcept { return (std::size_t{klass} + 1) * granule; }
    bool has_room() const noexcept { return free || carved + block_bytes() <= slab_bytes; }
};

// A slab straight from the kernel, aligned to its size: map twice the size and unmap the
// unaligned ends. Its pages become resident only as blocks are carved, and free gives them back.
void* map_slab() {
    void* raw = ::mmap(nullptr, 2 * slab_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) throw std::bad_alloc{};
    const auto start = reinterpret_cast<std::uintptr_t>(raw);
    const std::uintptr_t aligned = (start + slab_bytes - 1) & ~std::uintptr_t{slab_bytes - 1};
    if (aligned > start) ::munmap(raw, aligned - start);
    if (aligned + slab_bytes < start + 2 * slab_bytes)
        ::munmap(reinterpret_cast<void*>(aligned + slab_bytes), start + 2 * slab_bytes - aligned - slab_bytes);
    return reinterpret_cast<void*>(aligned);
}

slab* slab_of(void* block) noexcept {
    return reinterpret_cast<slab*>(reinterpret_cast<std::uintptr_t>(block) & ~std::uintptr_t{slab_bytes - 1});
}

struct frame_cache {
    slab* rooms[class_count] = {};  // per class: slabs with room, most recently freed into first
    unsigned empty[class_count] = {};  // slabs with no block handed out
    unsigned busy[class_count] = {};   // slabs with blocks handed out
    unsigned peak[class_count] = {};   // the most `busy` since the last trim
    unsigned surplus = 0;              // empty slabs beyond empty_slabs_kept, summed over classes
    std::vector<slab*> slabs;       // every slab it owns, for the thread-exit sweep
    std::atomic<free_block*> returned{nullptr};  // blocks freed by other threads
    frame_stats stats;

    void* take(std::size_t k) {
        slab* s = rooms[k];
        if (!s) {
            take_returned();
            s = rooms[k];
        }
        if (s) {
            ++stats.cache_hits;
        } else {
            s = new_slab(k);
        }
        void* block;
        if (s->free) {
            block = std::exchange(s->free, s->free->next);
        } else {
            block = reinterpret_cast<std::byte*>(s) + s->carved;
            s->carved += static_cast<std::uint32_t>(s->block_bytes());
        }
        if (s->used++ == 0) {
            less_empty(k);
            peak[k] = std::max(peak[k], ++busy[k]);
        }
        if (!s->has_room()) unlist(*s);
        return block;
    }

    void give_back(void* block) noexcept {
        slab& s = *slab_of(block);
        s.free = new (block) free_block{s.free};
        if (!s.listed) list(s);
        if (--s.used != 0) return;
        --busy[s.klass];
        if (empty[s.klass] < std::max(empty_slabs_kept, peak[s.klass])) {
            more_empty(s.klass);
            return;
        }
        release(s);
    }

    void more_empty(std::size_t k) noexcept {
        if (++empty[k] > empty_slabs_kept) ++surplus;
    }
    void less_empty(std::size_t k) noexcept {
        if (empty[k]-- > empty_slabs_kept) --surplus;
    }

    // The empty slabs beyond empty_slabs_kept per class go back to the heap; the peaks start
    // again from what is in use now.
    void trim() noexcept {
        for (std::size_t i = slabs.size(); i-- > 0 && surplus > 0;) {  // backwards: release() moves the last here
            slab& s = *slabs[i];
            if (s.used != 0 || empty[s.klass] <= empty_slabs_kept) continue;
            less_empty(s.klass);
            release(s);
        }
        for (std::size_t k = 0; k < class_count; ++k) peak[k] = busy[k];
    }

    // An empty slab goes back to the heap.
    void release(slab& s) noexcept {
        if (s.listed) unlist(s);
        slabs[s.index] = slabs.back();
        slabs[s.index]->index = s.index;
        slabs.pop_back();
        ::munmap(&s, slab_bytes);
        ++stats.slabs_unmapped;
    }

    // Takes back what other threads returned, each block into its slab.
    void take_returned(free_block* replacement = nullptr) noexcept {
        if (returned.load(std::memory_order_relaxed) == closed) return;  // nobody pushes any more
        free_block* b = returned.exchange(replacement, std::memory_order_acquire);
        while (b && b != closed) give_back(std::exchange(b, b->next));
    }

    slab* new_slab(std::size_t k) {
        void* mem = map_slab();
        ++stats.slabs_mapped;
        constexpr auto header = static_cast<std::uint32_t>((sizeof(slab) + granule - 1) / granule * granule);
        auto* s = new (mem) slab{.owner = this, .klass = static_cast<std::uint32_t>(k), .carved = header};
        s->index = static_cast<std::uint32_t>(slabs.size());
        slabs.push_back(s);
        more_empty(k);  // until take() hands out its first block
        list(*s);
        return s;
    }

    void list(slab& s) noexcept {
        s.listed = true;
        s.prev = nullptr;
        s.next = rooms[s.klass];
        if (s.next) s.next->prev = &s;
        rooms[s.klass] = &s;
    }
    void unlist(slab& s) noexcept {
        s.listed = false;
        (s.prev ? s.prev->next : rooms[s.klass]) = s.next;
        if (s.next) s.next->prev = s.prev;
    }
};

std::mutex& late_lock() {  // guards the caches of exited threads
    static std::mutex m;
    return m;
}

// Never destroyed, so the caches stay reachable through it to the end (leak checkers agree).
frame_cache* new_cache() {
    static auto* all = new std::vector<frame_cache*>;
    auto* c = new frame_cache;
    std::lock_guard g{late_lock()};
    all->push_back(c);
    return c;
}

// The hot path reads only `mine`, a constant-initialised thread_local (no TLS init wrapper).
// The reaper, a thread_local with a destructor, is touched once when the cache is made, so it
// runs at thread exit: it closes the return stack and gives back every slab nobody uses.
thread_local frame_cache* mine = nullptr;
thread_local bool gone = false;  // this thread's cache is torn down: it is one of the late ones

struct reaper {
    ~reaper() {
        if (!mine) return;
        std::lock_guard g{late_lock()};
        gone = true;
        mine->take_returned(closed);  // from now on, late frees from other threads take the lock
        // Nobody trims a closed cache: a late free keeps at most two empty slabs per class.
        for (unsigned& p : mine->peak) p = 0;
        const std::vector<slab*> all = mine->slabs;  // a copy: release() edits the list
        for (slab* s : all)
            if (s->used == 0) {
                mine->less_empty(s->klass);
                mine->release(*s);
            }
    }
};
thread_local reaper reap_at_exit;

frame_cache& my_cache() {
    if (!mine) {
        mine = new_cache();
        [[maybe_unused]] reaper* r = &reap_at_exit;  // constructs it, registering its destructor
    }
    return *mine;
}

constexpr std::size_t class_of(std::size_t bytes) noexcept { return (bytes - 1) / granule; }

}  // namespace

void* allocate_frame(std::size_t size) {
    const std::size_t k = class_of(size);
    if (!use_slabs || k >= class_count) {
        if (!gone) ++my_cache().stats.allocations;
        return ::operator new(size);
    }
    frame_cache& c = my_cache();
    if (gone) {
        std::lock_guard g{late_lock()};
        return c.take(k);
    }
    ++c.stats.allocations;
    return c.take(k);
}

void free_frame(void* frame, std::size_t size) noexcept {
    if (!use_slabs || class_of(size) >= class_count) return ::operator delete(frame);
    frame_cache* owner = slab_of(frame)->owner;
    if (owner == mine && !gone) return owner->give_back(frame);
    // Another thread's block: hand it back, never keep or free it here while its owner lives.
    auto* b = static_cast<free_block*>(frame);
    free_block* head = owner->returned.load(std::memory_order_relaxed);
    do {
        if (head == closed) {  // the owner has exited: its slabs are everyone's, under the lock
            std::lock_guard g{late_lock()};
            return owner->give_back(frame);
        }
        b->next = head;
    } while (!owner->returned.compare_exchange_weak(head, b, std::memory_order_release, std::memory_order_relaxed));
}

bool frames_to_trim() noexcept { return use_slabs && mine && !gone && mine->surplus > 0; }

void trim_frames() noexcept {
    if (frames_to_trim()) mine->trim();
}

frame_stats frame_allocator_stats() noexcept { return my_cache().stats; }
bool frame_cache_enabled() noexcept { return use_slabs; }

}  // namespace coring::detail
