// The core's two queues: the FIFO of coroutines ready to run and the timer heap. Plain data
// structures, touched only by their core's thread.
#include <coring/core.hpp>

namespace coring::detail {

void ready_queue::push(ready_item item) {
    if (size() == items_.size()) {  // full: unroll into a buffer twice the size
        std::vector<ready_item> bigger(items_.size() * 2);
        for (std::size_t i = 0; i < items_.size(); ++i) bigger[i] = pop();
        head_ = 0;
        tail_ = items_.size();
        items_ = std::move(bigger);
    }
    items_[tail_++ & (items_.size() - 1)] = item;
}

void timer_heap::push(op& o) {
    o.armed = true;
    heap_.push_back(&o);
    place(heap_.size() - 1, &o);
    sift_up(heap_.size() - 1);
}

void timer_heap::erase(op& o) noexcept {
    o.armed = false;
    const std::size_t i = o.heap_index;
    op* last = heap_.back();
    heap_.pop_back();
    if (i == heap_.size()) return;  // o was the last one
    place(i, last);
    sift_up(i);
    sift_down(last->heap_index);
}

void timer_heap::sift_up(std::size_t i) noexcept {
    op* o = heap_[i];
    while (i > 0) {
        const std::size_t parent = (i - 1) / 2;
        if (heap_[parent]->deadline_ns <= o->deadline_ns) break;
        place(i, heap_[parent]);
        i = parent;
    }
    place(i, o);
}

void timer_heap::sift_down(std::size_t i) noexcept {
    op* o = heap_[i];
    for (;;) {
        std::size_t child = 2 * i + 1;
        if (child >= heap_.size()) break;
        if (child + 1 < heap_.size() && heap_[child + 1]->deadline_ns < heap_[child]->deadline_ns)
            ++child;
        if (o->deadline_ns <= heap_[child]->deadline_ns) break;
        place(i, heap_[child]);
        i = child;
    }
    place(i, o);
}

}  // namespace coring::detail
