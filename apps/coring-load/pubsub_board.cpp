// coring-load's pub/sub board and payloads. The board is what every subscriber and publisher of
// a run shares, across cores and (with --procs) processes: one MAP_SHARED mapping with the
// rate steps, when each begins, and the publish counts per (publisher, channel). A payload
// carries its publisher, channel, sequence number and send time, padded with bytes derived
// from them, so a torn or misrouted delivery is told from a good one.
#include "load.hpp"

#include <cerrno>
#include <cstring>
#include <sys/mman.h>
#include <system_error>

namespace coring::load {

namespace {

// The board's mapping: its head, then the steps, then the publish counts.
std::size_t board_bytes(const settings& s) noexcept {
    return 64 + sizeof(pubsub_step) * s.pubsub.steps + sizeof(std::atomic<std::uint64_t>) * s.pubsub.publishers * s.pubsub.channels;
}

void* map_shared(std::size_t bytes) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::system_error(errno, std::system_category(), "mmap of the pub/sub board");
    return p;
}

template <class T>
T* construct_array(void* at, std::size_t n) {
    T* first = static_cast<T*>(at);
    for (std::size_t i = 0; i < n; ++i) new (first + i) T{};
    return first;
}

}  // namespace

// The mapping starts zeroed; placement new makes each atomic an object there, start_ns `never`.
pubsub_board::pubsub_board(const settings& st)
    : map_bytes_{board_bytes(st)},
      map_{map_shared(map_bytes_)},
      head_{new (map_) shared_head{.start_ns = never, .cut_ns = never}},
      s{st},
      created_ns{core::now_ns()},
      settled{head_->settled},
      publishers_ready{head_->publishers_ready},
      publishers_done{head_->publishers_done},
      start_ns{head_->start_ns},
      cut_ns{head_->cut_ns},
      steps{construct_array<pubsub_step>(static_cast<char*>(map_) + 64, st.pubsub.steps)},
      published{construct_array<std::atomic<std::uint64_t>>(steps + st.pubsub.steps,
                                                            std::size_t{st.pubsub.publishers} * st.pubsub.channels)} {
    static_assert(sizeof(shared_head) <= 64 && alignof(pubsub_step) <= 64);
}

pubsub_board::~pubsub_board() { ::munmap(map_, map_bytes_); }

std::int64_t pubsub_board::measure_from() const noexcept {
    const std::int64_t start = start_ns.load(std::memory_order_acquire);
    return start == never ? never : start + static_cast<std::int64_t>(s.warmup * 1e9);
}

// Between two steps, a pause of step_limit: what was late drains, and the step can be judged.
std::int64_t pubsub_board::step_from(unsigned k) const noexcept {
    const std::int64_t from = measure_from();
    if (from == never) return never;
    const auto window = static_cast<std::int64_t>(s.duration * 1e9);
    const std::int64_t pause = std::chrono::duration_cast<std::chrono::nanoseconds>(s.pubsub.step_limit).count();
    return from + k * (window + pause);
}

std::int64_t pubsub_board::step_to(unsigned k) const noexcept {
    const std::int64_t from = step_from(k);
    return from == never ? never : std::min(from + static_cast<std::int64_t>(s.duration * 1e9), cut_ns.load(std::memory_order_acquire));
}

void pubsub_board::cut() noexcept {
    const std::int64_t now = core::now_ns();
    std::int64_t seen = cut_ns.load(std::memory_order_acquire);
    while (now < seen && !cut_ns.compare_exchange_weak(seen, now, std::memory_order_acq_rel)) {
    }
}

std::int64_t pubsub_board::stop_at() const noexcept { return step_to(s.pubsub.steps - 1); }

int pubsub_board::step_of(std::int64_t sent_ns) const noexcept {
    const std::int64_t from = measure_from();
    if (from == never || sent_ns < from) return -1;
    const auto window = static_cast<std::int64_t>(s.duration * 1e9);
    const std::int64_t pause = std::chrono::duration_cast<std::chrono::nanoseconds>(s.pubsub.step_limit).count();
    const std::int64_t k = (sent_ns - from) / (window + pause);
    if (k >= s.pubsub.steps || sent_ns - from - k * (window + pause) >= window) return -1;
    return static_cast<int>(k);
}

std::uint64_t pubsub_board::subscribers_of(unsigned channel) const noexcept {
    const auto& ps = s.pubsub;
    return ps.subscribers / ps.channels + (channel < ps.subscribers % ps.channels ? 1 : 0);
}

bool pubsub_board::go_on_after(unsigned k) noexcept {
    pubsub_step& st = steps[k];
    int verdict = st.verdict.load(std::memory_order_acquire);
    if (verdict == 0) {
        // p99 within the limit: at least 99% of the deliveries owed came within it. Every
        // delivery not in by now (the step's end plus the limit) is late already.
        const bool ok = st.on_time.load(std::memory_order_acquire) * 100 >= st.expected.load(std::memory_order_acquire) * 99;
        const int mine = ok ? 1 : 2;
        if (st.verdict.compare_exchange_strong(verdict, mine, std::memory_order_acq_rel)) verdict = mine;
    }
    return verdict == 1;
}

std::string channel_name(protocol p, unsigned channel) {
    return format(p == protocol::nats ? "ch.{}" : "ch{}", channel);
}

std::string channel_pattern(protocol p, unsigned channel) {
    return format(p == protocol::nats ? "*.{}" : "*h{}", channel);
}

namespace {

// The padding's seed: the header's fields, so a payload with a changed header no longer checks.
std::uint64_t pad_seed(std::uint64_t seq, std::int64_t sent_ns) noexcept {
    return seq ^ (static_cast<std::uint64_t>(sent_ns) * 0x9E3779B97F4A7C15ull);
}

}  // namespace

// Host byte order: both ends run on this machine.
void fill_publish(std::span<std::byte> payload, std::uint32_t pub, std::uint32_t channel, std::uint64_t seq,
                  std::int64_t sent_ns, unsigned channels) noexcept {
    std::memcpy(payload.data(), &pub, 4);
    std::memcpy(payload.data() + 4, &channel, 4);
    std::memcpy(payload.data() + 8, &seq, 8);
    std::memcpy(payload.data() + 16, &sent_ns, 8);
    fill(payload.subspan(pubsub_header_bytes), std::uint64_t{pub} * channels + channel, pad_seed(seq, sent_ns));
}

bool check_publish(std::span<const std::byte> payload, unsigned channels, publish_header& out) noexcept {
    if (payload.size() < pubsub_header_bytes) return false;
    std::memcpy(&out.pub, payload.data(), 4);
    std::memcpy(&out.channel, payload.data() + 4, 4);
    std::memcpy(&out.seq, payload.data() + 8, 8);
    std::memcpy(&out.sent_ns, payload.data() + 16, 8);
    // The padding, made again from the header into a buffer of this thread's, and compared.
    thread_local std::vector<std::byte> want;
    const auto pad = payload.subspan(pubsub_header_bytes);
    if (want.size() < pad.size()) want.resize(pad.size());
    const auto w = std::span(want).first(pad.size());
    fill(w, std::uint64_t{out.pub} * channels + out.channel, pad_seed(out.seq, out.sent_ns));
    return std::memcmp(w.data(), pad.data(), pad.size()) == 0;
}

}  // namespace coring::load
