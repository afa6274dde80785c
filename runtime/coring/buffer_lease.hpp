#pragma once
// buffer_lease: received bytes in a buffer of the core's provided-buffer pool. The buffer goes
// back to the pool (and, on io_uring, to the kernel's buffer ring) when the lease is dropped,
// so hold it only as long as the bytes are needed. A lease belongs to its core: drop it there.
#include <coring/backend.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

namespace coring {

class buffer_lease {
public:
    buffer_lease() noexcept = default;  // empty: the end of the stream
    buffer_lease(backend& pool, std::uint16_t id, std::uint32_t size) noexcept : pool_{&pool}, id_{id}, size_{size} {}
    buffer_lease(buffer_lease&& o) noexcept
        : pool_{std::exchange(o.pool_, nullptr)}, id_{o.id_}, size_{std::exchange(o.size_, 0)} {}
    buffer_lease& operator=(buffer_lease&& o) noexcept {
        if (this != &o) {
            reset();
            pool_ = std::exchange(o.pool_, nullptr);
            id_ = o.id_;
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    ~buffer_lease() { reset(); }

    std::span<std::byte> data() const noexcept { return {pool_ ? pool_->buffer(id_) : nullptr, size_}; }
    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }

    // Gives the buffer back now.
    void reset() noexcept {
        if (pool_) std::exchange(pool_, nullptr)->give_back(id_);
        size_ = 0;
    }

private:
    backend* pool_ = nullptr;
    std::uint16_t id_ = 0;
    std::uint32_t size_ = 0;
};

}  // namespace coring
