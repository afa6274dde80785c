#pragma once
// A log-linear latency histogram: fixed memory (1,248 counters), O(1) record, and a relative
// error of at most 1/64 for any percentile. Values below 32 ns have a bucket each; above that,
// every power of two is split into 32 equal buckets, so a bucket is never wider than 1/32 of its
// lower bound, and reporting its midpoint is within 1/64 of any value in it. Histograms of
// several cores or processes merge by adding counts.
#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace coring::load {

class histogram {
public:
    static constexpr unsigned sub_bits = 5;  // 32 buckets per power of two
    static constexpr unsigned sub_count = 1u << sub_bits;
    static constexpr unsigned max_shift = 37;  // values up to 2^42 ns (over an hour)
    static constexpr std::size_t bucket_count = (max_shift + 1) * sub_count + sub_count;

    void record(std::uint64_t ns, std::uint64_t times = 1) noexcept {
        counts_[index_of(ns)] += times;
        total_ += times;
        max_ = std::max(max_, ns);
        min_ = std::min(min_, ns);
    }
    void merge(const histogram& o) noexcept {
        for (std::size_t i = 0; i < bucket_count; ++i) counts_[i] += o.counts_[i];
        total_ += o.total_;
        max_ = std::max(max_, o.max_);
        min_ = std::min(min_, o.min_);
    }
    void reset() noexcept { *this = histogram{}; }

    std::uint64_t count() const noexcept { return total_; }
    std::uint64_t max() const noexcept { return total_ ? max_ : 0; }
    std::uint64_t min() const noexcept { return total_ ? min_ : 0; }

    // The value at quantile q (0..1): the midpoint of the bucket that holds the ceil(q * n)-th
    // smallest value, clamped to the exact min and max. 0 when empty.
    std::uint64_t percentile(double q) const noexcept {
        if (total_ == 0) return 0;
        const auto rank = std::max<std::uint64_t>(1, static_cast<std::uint64_t>(q * static_cast<double>(total_) + 0.9999999));
        std::uint64_t seen = 0;
        for (std::size_t i = 0; i < bucket_count; ++i) {
            seen += counts_[i];
            if (seen >= rank) return std::clamp(midpoint_of(i), min(), max());
        }
        return max();
    }

    // "index:count ..." of the non-empty buckets plus min and max: how processes hand theirs over.
    std::string serialize() const {
        char word[64];
        std::snprintf(word, sizeof word, "n=%llu min=%llu max=%llu", static_cast<unsigned long long>(total_),
                      static_cast<unsigned long long>(min()), static_cast<unsigned long long>(max()));
        std::string out = word;
        for (std::size_t i = 0; i < bucket_count; ++i) {
            if (!counts_[i]) continue;
            std::snprintf(word, sizeof word, " %zu:%llu", i, static_cast<unsigned long long>(counts_[i]));
            out.append(word);
        }
        return out;
    }
    // The inverse; false on malformed text.
    bool deserialize(std::string_view text);

    static std::size_t index_of(std::uint64_t v) noexcept {
        if (v < sub_count) return static_cast<std::size_t>(v);
        const unsigned msb = 63u - static_cast<unsigned>(std::countl_zero(v));
        unsigned shift = msb - sub_bits;  // v >> shift is in [32, 64)
        if (shift > max_shift) return bucket_count - 1;  // beyond the range: the last bucket
        return (shift + 1) * sub_count + static_cast<std::size_t>((v >> shift) - sub_count);
    }
    static std::uint64_t lower_bound_of(std::size_t i) noexcept {
        if (i < sub_count) return i;
        const unsigned shift = static_cast<unsigned>(i / sub_count) - 1;
        return (std::uint64_t{sub_count} + i % sub_count) << shift;
    }
    static std::uint64_t midpoint_of(std::size_t i) noexcept {
        if (i < sub_count) return i;
        const unsigned shift = static_cast<unsigned>(i / sub_count) - 1;
        return lower_bound_of(i) + ((std::uint64_t{1} << shift) >> 1);
    }

private:
    std::array<std::uint64_t, bucket_count> counts_{};
    std::uint64_t total_ = 0;
    std::uint64_t max_ = 0;
    std::uint64_t min_ = UINT64_MAX;
};

inline bool histogram::deserialize(std::string_view text) {
    reset();
    auto number = [](std::string_view s, std::uint64_t& out) {
        if (s.empty()) return false;
        out = 0;
        for (char c : s) {
            if (c < '0' || c > '9') return false;
            out = out * 10 + static_cast<std::uint64_t>(c - '0');
        }
        return true;
    };
    std::uint64_t n = 0, lo = 0, hi = 0;
    while (!text.empty()) {
        const auto end = text.find(' ');
        const std::string_view word = text.substr(0, end);
        text = end == std::string_view::npos ? std::string_view{} : text.substr(end + 1);
        if (word.starts_with("n=")) {
            if (!number(word.substr(2), n)) return false;
        } else if (word.starts_with("min=")) {
            if (!number(word.substr(4), lo)) return false;
        } else if (word.starts_with("max=")) {
            if (!number(word.substr(4), hi)) return false;
        } else {
            const auto colon = word.find(':');
            std::uint64_t i = 0, c = 0;
            if (colon == std::string_view::npos || !number(word.substr(0, colon), i) || !number(word.substr(colon + 1), c) ||
                i >= bucket_count)
                return false;
            counts_[i] += c;
            total_ += c;
        }
    }
    if (total_ != n) return false;
    if (n) {
        min_ = lo;
        max_ = hi;
    }
    return true;
}

}  // namespace coring::load
