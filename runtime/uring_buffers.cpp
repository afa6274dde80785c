// uring_backend's receive pool (docs/ARCHITECTURE.md, "Receive buffers"): the provided-buffer
// ring the kernel picks receive buffers from, the window of the pool it holds, how a receive
// bundle's buffers are named, and the registered-buffer slots of zerocopy sends.
#include <coring/log.hpp>
#include <coring/uring_backend.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <sys/mman.h>
#include <sys/uio.h>
#include <system_error>

namespace coring {

void uring_backend::setup_buffers() {
    // The ring of buffer descriptors the kernel reads, page-aligned, registered as group 0. It
    // has room for the whole pool, but holds only a window of it (see to_ring).
    const std::size_t bytes = std::size_t{buffer_count_} * sizeof(io_uring_buf);
    void* mem = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) throw std::system_error(errno, std::system_category(), "mmap buffer ring");
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<std::uintptr_t>(mem);
    reg.ring_entries = buffer_count_;
    reg.bgid = 0;
    if (const int rc = io_uring_register_buf_ring(&ring_, &reg, 0); rc < 0) {
        ::munmap(mem, bytes);
        throw std::system_error(-rc, std::system_category(),
                                "io_uring_register_buf_ring (provided buffer rings need Linux 5.19)");
    }
    buf_ring_ = static_cast<io_uring_buf_ring*>(mem);
    io_uring_buf_ring_init(buf_ring_);
    ring_ids_.assign(buffer_count_, 0);
    ring_pos_.assign(buffer_count_, 0);
    // Registered buffers for zerocopy sends: one empty slot per pool buffer, filled on a
    // buffer's first such send. Not one iovec over the pool: registering pins (and so faults
    // in) every page at once, and no single page could then be given back by trimming.
    if (features_.registered_buffers_on) {
        if (io_uring_register_buffers_sparse(&ring_, buffer_count_) == 0) registered_.assign(buffer_count_, false);
        else features_.registered_buffers_on = false;  // RLIMIT_MEMLOCK, say: zerocopy sends still work
    }
    ring_window_ = std::min(buffer_count_, min_ring_window);
    refill_ring();
}

void uring_backend::refill_ring() noexcept {
    int added = 0;
    const int mask = io_uring_buf_ring_mask(buffer_count_);
    while (buffers_in_ring_ + added < ring_window_) {
        const int id = take_free();
        if (id < 0) break;
        note_ring_position(static_cast<std::uint16_t>(id), added);
        io_uring_buf_ring_add(buf_ring_, buffer(static_cast<std::uint16_t>(id)), buffer_size_,
                              static_cast<unsigned short>(id), mask, added++);
    }
    io_uring_buf_ring_advance(buf_ring_, added);  // a release store: the kernel sees the entries first
    buffers_in_ring_ += static_cast<unsigned>(added);
}

bool uring_backend::to_ring(std::uint16_t id) noexcept {
    if (!buf_ring_ || buffers_in_ring_ >= ring_window_) return false;  // to the free list
    note_ring_position(id, 0);
    io_uring_buf_ring_add(buf_ring_, buffer(id), buffer_size_, id, io_uring_buf_ring_mask(buffer_count_), 0);
    io_uring_buf_ring_advance(buf_ring_, 1);
    ++buffers_in_ring_;
    return true;
}

void uring_backend::note_ring_position(std::uint16_t id, int offset) noexcept {
    // The kernel takes entries in ring order from its head; a bundle names only the first one.
    // Our own copy of which id sits where lets us name the rest (the tail is ours alone).
    const auto pos = static_cast<std::uint16_t>(buf_ring_->tail + offset);
    ring_ids_[pos & (buffer_count_ - 1)] = id;
    ring_pos_[id] = pos;
}

std::uint16_t uring_backend::take_bundle(std::uint16_t first, std::int32_t res) noexcept {
    // The kernel (io_uring/net.c, kbuf.c) maps consecutive ring entries from its head into one
    // iovec array, receives into it in order, and advances its head by the entries the bytes
    // reached, so entry k holds min(its length, what is left). Each entry's length is read
    // from the ring rather than assumed: the kernel may have shortened the first one (some
    // kernels write a truncated length back). A retry the kernel appends to the same CQE
    // continues at the next entry, so the rule holds across it. Incremental rings
    // (IOU_PBUF_RING_INC, a buffer consumed in pieces) would break it; ours is not one.
    // Those entries are ours until this CQE is handled: we add only below the window, so the
    // tail cannot come round to them.
    const unsigned mask = buffer_count_ - 1;
    std::uint16_t pos = ring_pos_[first];
    if (ring_ids_[pos & mask] != first) {
        log("io_uring: bundle names buffer {}, which is not where it was put in the ring", first);
        std::abort();
    }
    std::uint32_t left = static_cast<std::uint32_t>(res);
    std::uint16_t count = 0;
    std::uint16_t prev = 0;
    while (left > 0) {
        if (count == buffers_in_ring_) {  // more bytes than the entries we gave: impossible
            log("io_uring: a bundle of {} bytes covers more than the {} buffers in the ring", res, count);
            std::abort();
        }
        const std::uint16_t id = ring_ids_[pos & mask];
        const std::uint32_t len = std::min<std::uint32_t>(left, buf_ring_->bufs[pos & mask].len);
        link(id).len = len;
        if (count > 0) link(prev).next = id;
        prev = id;
        left -= len;
        ++pos;
        ++count;
    }
    buffers_in_ring_ -= count;
    stats_.buffers_in_use += count;
    ++stats_.recv_bundles;
    stats_.bundle_buffers += count;
    return count;
}

void uring_backend::ring_ran_dry() noexcept {
    // The kernel found the ring empty. If the free list has buffers, the window was too small
    // for this load: double it and refill (its owner arms the recv again and finds them).
    if (free_.empty() || ring_window_ >= buffer_count_) return;
    ring_ran_dry_ = true;
    ++stats_.buffer_ring_grows;
    ring_window_ = std::min(buffer_count_, ring_window_ * 2);
    refill_ring();
}

void uring_backend::on_trim() noexcept {
    // A second without the ring running dry: halve the window. Buffers already in the ring stay
    // there; as they come back they go to the free list, where trimming finds them cold.
    if (!ring_ran_dry_) ring_window_ = std::max(std::min(buffer_count_, min_ring_window), ring_window_ / 2);
    ring_ran_dry_ = false;
}

int uring_backend::registered_slot(const op& o) noexcept {
    // Only a send that lies within one pool buffer (the echo path: a lease's bytes).
    if (!features_.registered_buffers_on || registered_.empty()) return -1;
    const auto* p = static_cast<const std::byte*>(o.buf);
    if (p < pool_ || p >= pool_ + std::size_t{buffer_count_} * buffer_size_) return -1;
    const auto id = static_cast<std::uint16_t>(static_cast<std::size_t>(p - pool_) / buffer_size_);
    if (p + o.len > buffer(id) + buffer_size_) return -1;
    if (!registered_[id]) {
        // The first zerocopy send from this buffer since its pages came: pin them into slot id
        // (one syscall; the slot stays until trimming takes the pages back, see before_trim).
        iovec iov{buffer(id), buffer_size_};
        if (io_uring_register_buffers_update_tag(&ring_, id, &iov, nullptr, 1) != 1) return -1;  // a plain zerocopy send
        registered_[id] = true;
    }
    return id;
}

void uring_backend::before_trim(std::uint16_t id) noexcept {
    if (id >= registered_.size() || !registered_[id]) return;
    // An empty slot again. The registration pins the pages now mapped; after MADV_DONTNEED the
    // pool would map new ones, and a fixed-buffer send would read the old. No send holds the
    // buffer (it is in the free list), so nothing in flight uses the slot.
    iovec none{nullptr, 0};
    (void)io_uring_register_buffers_update_tag(&ring_, id, &none, nullptr, 1);
    registered_[id] = false;
}

}  // namespace coring
