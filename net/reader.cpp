#include <coring/reader.hpp>

#include <algorithm>
#include <cstring>

namespace coring {

namespace {
// A spill this big or smaller is kept once empty (the next straddling message reuses it);
// a bigger one is freed, so an idle connection does not keep a large message's memory.
constexpr std::size_t kept_spill = 4096;
}  // namespace

void buffered_reader::consume(std::size_t n) noexcept {
    if (spill_used_ != spill_pos_) {
        spill_pos_ += n;
        return;
    }
    lease_pos_ += n;
    if (lease_pos_ == lease_.size()) {  // all of it parsed: the buffer goes back to the pool now
        lease_.reset();
        lease_pos_ = 0;
    }
}

bool buffered_reader::append_to_spill(std::span<const std::byte> bytes) noexcept {
    // The limit is on what was waiting before these bytes: one receive may take the spill past
    // it (a receive buffer may be bigger than the limit), the next one is refused.
    const std::size_t pending = spill_used_ - spill_pos_;
    if (pending >= spill_limit_) return false;
    if (spill_used_ + bytes.size() > spill_capacity_) {
        if (pending + bytes.size() <= spill_capacity_) {  // room once the consumed prefix goes
            std::memmove(spill_.get(), spill_.get() + spill_pos_, pending);
        } else {
            const std::size_t capacity = std::max(
                pending + bytes.size(), std::min(spill_limit_, std::max(2 * spill_capacity_, std::size_t{1024})));
            auto grown = std::make_unique_for_overwrite<std::byte[]>(capacity);
            if (pending) std::memcpy(grown.get(), spill_.get() + spill_pos_, pending);
            spill_ = std::move(grown);
            spill_capacity_ = capacity;
        }
        spill_pos_ = 0;
        spill_used_ = pending;
    }
    std::memcpy(spill_.get() + spill_used_, bytes.data(), bytes.size());
    spill_used_ += bytes.size();
    return true;
}

void buffered_reader::spill_lease() noexcept {
    if (spill_used_ != spill_pos_ || lease_pos_ == lease_.size()) return;  // spilled already, or nothing
    spill_pos_ = spill_used_ = 0;
    if (!append_to_spill(peek())) return;  // over the limit: took() reports it with the next bytes
    lease_.reset();
    lease_pos_ = 0;
}

result<std::size_t> buffered_reader::took(result<buffer_lease> next) noexcept {
    if (!next) return next.error();
    const std::size_t n = next->size();
    if (n == 0) {
        ended_ = true;
        return std::size_t{0};
    }
    if (buffered() == 0) {  // nothing pending: the new bytes are parsed where they are
        spill_pos_ = spill_used_ = 0;
        if (spill_capacity_ > kept_spill) {
            spill_.reset();
            spill_capacity_ = 0;
        }
        lease_ = std::move(*next);
        lease_pos_ = 0;
        return n;
    }
    // A message straddles two receives: its bytes are copied together into the spill.
    if (spill_used_ == spill_pos_) {
        spill_pos_ = spill_used_ = 0;
        if (!append_to_spill(peek())) return std::errc::message_size;
        lease_.reset();
        lease_pos_ = 0;
    }
    if (!append_to_spill(next->data())) return std::errc::message_size;
    return n;
}

task<result<std::span<const std::byte>>> buffered_reader::read_until(std::string_view delim, std::size_t max) {
    std::size_t searched = 0;  // bytes of peek() known not to start the delimiter
    for (;;) {
        const std::string_view text = peek_text();
        const std::size_t at = text.find(delim, searched);
        if (at != std::string_view::npos) {
            if (at + delim.size() > max) co_return std::errc::message_size;
            co_return peek().first(at + delim.size());
        }
        if (text.size() >= max) co_return std::errc::message_size;
        searched = text.size() >= delim.size() ? text.size() - delim.size() + 1 : 0;
        auto more = co_await fill();
        if (!more) co_return more.error();
        if (*more == 0) {
            if (buffered() == 0) co_return std::span<const std::byte>{};
            co_return std::errc::bad_message;
        }
    }
}

task<result<std::span<const std::byte>>> buffered_reader::read_exact(std::size_t n) {
    if (n > spill_limit_) co_return std::errc::message_size;
    while (buffered() < n) {
        auto more = co_await fill();
        if (!more) co_return more.error();
        if (*more == 0) {
            if (buffered() == 0) co_return std::span<const std::byte>{};
            co_return std::errc::bad_message;
        }
    }
    co_return peek().first(n);
}

}  // namespace coring
