// What the raw io_uring baselines share: a ring set up with the flags coring uses, a
// provided-buffer ring, SQEs that never run out, multishot accept and recv, and the loop step
// that waits and copies the CQEs out. Header-only, like common.hpp; everything takes the ring
// it works on, so a server may keep one ring per thread.
#pragma once

#include <liburing.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common.hpp"

namespace baseline::uring {

// One CQE, copied out of the CQ so handlers may submit (and so reap) while handling it.
struct completion {
    std::uint64_t user_data;
    std::int32_t res;
    std::uint32_t flags;
};

// SINGLE_ISSUER|DEFER_TASKRUN (plain flags if the kernel refuses them: before 6.1) with a CQ of
// cq_entries, so a burst of multishot completions does not overflow it.
inline void init_ring(io_uring& ring, const char* prog, unsigned sq_entries, unsigned cq_entries) {
    io_uring_params p{};
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    p.cq_entries = cq_entries;
    int r = io_uring_queue_init_params(sq_entries, &ring, &p);
    if (r == -EINVAL) {
        p = io_uring_params{};
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = cq_entries;
        r = io_uring_queue_init_params(sq_entries, &ring, &p);
    }
    if (r < 0) die(prog, "io_uring_queue_init_params", -r);
}

// A free SQE; when the SQ is full, what is in it is submitted first.
inline io_uring_sqe* get_sqe(io_uring& ring, const char* prog) {
    io_uring_sqe* sqe;
    while ((sqe = io_uring_get_sqe(&ring)) == nullptr) {
        if (int r = io_uring_submit(&ring); r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
            die(prog, "io_uring_submit", -r);
        }
    }
    return sqe;
}

// `count` buffers of `size` bytes (count a power of two) registered as buffer group `group`,
// all of them in the kernel's hands at first. A CQE that carries one (IORING_CQE_F_BUFFER) hands
// it to us: claim() it, and recycle() it when done; recycled buffers reach the kernel together
// at the next publish(), one store to the ring's tail.
class buffer_ring {
public:
    void init(io_uring& ring, const char* prog, unsigned count, unsigned size, unsigned short group) {
        count_ = count;
        size_ = size;
        const std::size_t ring_bytes = sizeof(io_uring_buf) * count;
        void* mem = mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
        void* data = mmap(nullptr, std::size_t{count} * size, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
        if (mem == MAP_FAILED || data == MAP_FAILED) die(prog, "mmap");
        br_ = static_cast<io_uring_buf_ring*>(mem);
        base_ = static_cast<char*>(data);
        io_uring_buf_reg reg{};
        reg.ring_addr = reinterpret_cast<std::uintptr_t>(mem);
        reg.ring_entries = count;
        reg.bgid = group;
        if (int e = io_uring_register_buf_ring(&ring, &reg, 0); e < 0) die(prog, "io_uring_register_buf_ring", -e);
        io_uring_buf_ring_init(br_);
        held_ = count;
        for (unsigned i = 0; i < count; ++i) recycle(static_cast<std::uint16_t>(i));
        publish();
    }

    // The buffer id a CQE carries (its flags must have IORING_CQE_F_BUFFER); ours from now on.
    std::uint16_t claim(std::uint32_t cqe_flags) noexcept {
        ++held_;
        return static_cast<std::uint16_t>(cqe_flags >> IORING_CQE_BUFFER_SHIFT);
    }

    char* data(std::uint16_t bid) const noexcept { return base_ + std::size_t{bid} * size_; }

    void recycle(std::uint16_t bid) noexcept {
        --held_;
        io_uring_buf_ring_add(br_, data(bid), size_, bid, io_uring_buf_ring_mask(count_), static_cast<int>(returned_++));
    }

    void publish() noexcept {
        if (returned_ == 0) return;
        io_uring_buf_ring_advance(br_, static_cast<int>(returned_));
        returned_ = 0;
    }

    // True when the kernel has at least one buffer to receive into (after publish()).
    bool kernel_has_some() const noexcept { return held_ < count_; }

private:
    io_uring_buf_ring* br_ = nullptr;
    char* base_ = nullptr;
    unsigned count_ = 0, size_ = 0;
    unsigned returned_ = 0;  // recycled since the last publish()
    unsigned held_ = 0;      // not in the kernel's hands: claimed, or recycled but not yet published
};

// One multishot accept: a CQE per connection until it ends (no IORING_CQE_F_MORE).
inline void arm_accept(io_uring& ring, const char* prog, int listener, std::uint64_t user_data) {
    io_uring_sqe* sqe = get_sqe(ring, prog);
    io_uring_prep_multishot_accept(sqe, listener, nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, user_data);
}

// One multishot recv into buffers picked from `group`: a CQE per receive until it ends.
inline void arm_recv(io_uring& ring, const char* prog, int fd, unsigned short group, std::uint64_t user_data) {
    io_uring_sqe* sqe = get_sqe(ring, prog);
    io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = group;
    io_uring_sqe_set_data64(sqe, user_data);
}

// One loop step: submits what is queued, waits for at least one CQE, and copies every
// available CQE into `batch` (cleared first), releasing the CQ before any is handled.
inline void submit_and_collect(io_uring& ring, const char* prog, std::vector<completion>& batch) {
    if (int r = io_uring_submit_and_wait(&ring, 1); r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
        die(prog, "io_uring_submit_and_wait", -r);
    }
    batch.clear();
    unsigned head;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring, head, cqe) {
        batch.push_back({cqe->user_data, cqe->res, cqe->flags});
    }
    io_uring_cq_advance(&ring, static_cast<unsigned>(batch.size()));
}

}  // namespace baseline::uring
