#include <coring/frame_allocator.hpp>

#include <array>
#include <atomic>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

// Who owns a frame's memory: the thread (core) that allocated it. Each block carries a 16-byte
// header naming its owner's cache and size class. Freed on its own thread, a block goes on that
// thread's free list for its class. Freed on another thread, it is handed back: pushed onto the
// owner's lock-free `returned` stack, which the owner sorts into its lists the next time a class
// runs empty. A block is never put on a foreign list and never freed by a foreign thread while
// its owner lives; once the owner has exited, its `returned` stack is closed and a late free
// goes straight to the heap.

namespace coring::detail {
namespace {

constexpr std::size_t granule = 32;       // class k holds blocks of (k + 1) * 32 bytes, header included
constexpr std::size_t class_count = 64;   // so frames up to ~2 KiB are cached

// Under AddressSanitizer frames go straight to the heap, so ASan sees each frame's lifetime
// (a cached block would hide a use-after-free behind the next frame of its class).
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
constexpr std::size_t max_cached = CORING_FRAME_CACHE ? 4096 : 0;  // per class and thread

struct frame_cache;

struct alignas(16) header {
    frame_cache* owner;  // null: a heap block outside the classes
    std::size_t klass;
};

struct free_block {
    free_block* next;
};

free_block* const closed = reinterpret_cast<free_block*>(alignof(header));  // owner has exited

struct frame_cache {
    std::array<free_block*, class_count> heads{};
    std::array<std::size_t, class_count> counts{};
    std::atomic<free_block*> returned{nullptr};  // blocks freed by other threads
    frame_stats stats;

    // Takes back what other threads returned, sorting each block into its class.
    void take_returned(free_block* replacement = nullptr) noexcept {
        free_block* b = returned.exchange(replacement, std::memory_order_acquire);
        while (b && b != closed) {
            free_block* next = b->next;
            const header* h = reinterpret_cast<const header*>(b);
            push(h->klass, b);
            b = next;
        }
    }
    void push(std::size_t k, free_block* b) noexcept {
        b->next = heads[k];
        heads[k] = b;
        ++counts[k];
    }
};

// The cache struct of an exited thread stays allocated (it is small), so a late cross-thread
// free can still read its `returned` head and see that it is closed.
frame_cache* new_cache() {
    static std::mutex lock;
    // Never destroyed, so the caches stay reachable through it to the end (leak checkers agree).
    static auto* all = new std::vector<frame_cache*>;
    auto* c = new frame_cache;
    std::lock_guard g{lock};
    all->push_back(c);
    return c;
}

// The hot path reads only `mine`, a constant-initialised thread_local (no TLS init wrapper).
// The reaper, a thread_local with a destructor, is touched once when the cache is made, so it
// runs at thread exit: it closes the return stack and frees the cached blocks.
thread_local frame_cache* mine = nullptr;
thread_local bool gone = false;  // this thread's cache is torn down: use the heap

struct reaper {
    ~reaper() {
        if (!mine) return;
        mine->take_returned(closed);  // from now on, late frees from other threads go to the heap
        for (free_block*& head : mine->heads)
            while (head) ::operator delete(std::exchange(head, head->next));
        gone = true;
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

void* payload(header* h) noexcept { return h + 1; }
header* header_of(void* frame) noexcept { return static_cast<header*>(frame) - 1; }

}  // namespace

void* allocate_frame(std::size_t size) {
    const std::size_t k = class_of(size + sizeof(header));
    if (!gone) ++my_cache().stats.allocations;
    if (gone || k >= class_count || max_cached == 0) {
        auto* h = static_cast<header*>(::operator new(size + sizeof(header)));
        *h = {nullptr, 0};
        return payload(h);
    }
    frame_cache& c = *mine;
    if (!c.heads[k]) c.take_returned();
    if (free_block* b = c.heads[k]) {
        c.heads[k] = b->next;
        --c.counts[k];
        ++c.stats.cache_hits;
        auto* h = reinterpret_cast<header*>(b);
        *h = {&c, k};
        return payload(h);
    }
    auto* h = static_cast<header*>(::operator new((k + 1) * granule));  // the class size: reusable by any frame of it
    *h = {&c, k};
    return payload(h);
}

void free_frame(void* frame, std::size_t) noexcept {
    header* h = header_of(frame);
    frame_cache* owner = h->owner;
    if (!owner) return ::operator delete(h);
    const std::size_t k = h->klass;
    auto* b = reinterpret_cast<free_block*>(h);  // the header stays readable: klass is reused below
    if (!gone && owner == mine) {
        if (owner->counts[k] >= max_cached) return ::operator delete(h);
        return owner->push(k, b);
    }
    // Another thread's block: hand it back, never keep or free it here while its owner lives.
    free_block* head = owner->returned.load(std::memory_order_relaxed);
    do {
        if (head == closed) return ::operator delete(h);  // the owner has exited
        b->next = head;
    } while (!owner->returned.compare_exchange_weak(head, b, std::memory_order_release, std::memory_order_relaxed));
}

frame_stats frame_allocator_stats() noexcept { return my_cache().stats; }
bool frame_cache_enabled() noexcept { return max_cached > 0; }

}  // namespace coring::detail
