// Faults on purpose: parsing the setting, and each core's dice (see coring/faults.hpp).
#include <coring/faults.hpp>
#include <coring/log.hpp>
#include <coring/op.hpp>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <sys/socket.h>
#include <sys/uio.h>

namespace coring {

namespace {

constexpr std::array<std::string_view, fault_kinds> fault_names{"short_io", "eintr", "enobufs", "eagain",
                                                                "sq_full",  "delay", "accept",  "reset"};

// splitmix64: spreads a small seed (1, 2, 3) over the whole state.
std::uint64_t mix(std::uint64_t x) noexcept {
    x += 0x9e3779b97f4a7c15;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9;
    x = (x ^ (x >> 27)) * 0x94d049bb133111eb;
    return x ^ (x >> 31);
}

result<fault_config> fail(std::string* error, std::string why) {
    if (error) *error = std::move(why);
    return std::errc::invalid_argument;
}

}  // namespace

std::string_view to_string(fault f) noexcept { return fault_names[static_cast<std::size_t>(f)]; }

result<fault_config> fault_config::parse(std::string_view text, std::string* error) {
    fault_config c;
    if (text.empty() || text == "off") return c;
    const auto colon = text.find(':');
    const std::string_view seed = text.substr(0, colon);
    const auto [end, ec] = std::from_chars(seed.data(), seed.data() + seed.size(), c.seed);
    if (ec != std::errc{} || end != seed.data() + seed.size())
        return fail(error, format("\"{}\": the seed must be a whole number", seed));
    c.on = true;
    if (colon == std::string_view::npos) return c;
    std::string_view rest = text.substr(colon + 1);
    for (bool more = true; more;) {
        const auto comma = rest.find(',');
        const std::string_view item = rest.substr(0, comma);
        more = comma != std::string_view::npos;
        rest = more ? rest.substr(comma + 1) : std::string_view{};
        const auto eq = item.find('=');
        const std::string_view name = item.substr(0, eq);
        const auto known = std::find(fault_names.begin(), fault_names.end(), name);
        if (eq == std::string_view::npos || known == fault_names.end())
            return fail(error, format("\"{}\": expected NAME=RATE with NAME one of short_io, eintr, enobufs, eagain, "
                                      "sq_full, delay, accept, reset",
                                      item));
        const std::string value{item.substr(eq + 1)};
        char* stop = nullptr;
        const double rate = std::strtod(value.c_str(), &stop);
        if (value.empty() || *stop != '\0' || !(rate >= 0 && rate <= 1))
            return fail(error, format("\"{}\": a rate is a number from 0 to 1", item));
        c.rates[static_cast<std::size_t>(known - fault_names.begin())] = rate;
    }
    return c;
}

fault_config fault_config::from_environment() {
    static const fault_config env = [] {
        const char* v = std::getenv("CORING_FAULTS");
        std::string why;
        auto c = parse(v ? v : "", &why);
        if (!c) {
            std::fprintf(stderr, "coring: CORING_FAULTS=%s: %s\n", v, why.c_str());
            std::exit(2);
        }
        return *c;
    }();
    return env;
}

std::string fault_config::describe() const {
    if (!on) return "off";
    std::string out = format("seed {}:", seed);
    for (std::size_t i = 0; i < fault_kinds; ++i) out += format(" {} {}{}", fault_names[i], rates[i], i + 1 < fault_kinds ? "," : "");
    return out;
}

namespace detail {

fault_injector::fault_injector(const fault_config& cfg, unsigned core_id) noexcept
    : state_{mix(cfg.seed * 0x100000001b3 + core_id) | 1} {
    for (std::size_t i = 0; i < fault_kinds; ++i)
        thresholds_[i] = static_cast<std::uint32_t>(std::min(cfg.rates[i], 1.0) * 4294967295.0);
}

std::uint32_t fault_injector::below(std::uint32_t n) noexcept {
    // xorshift64*: the high half is the good half.
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    const std::uint64_t r = (state_ * 0x2545f4914f6cdd1d) >> 32;
    return static_cast<std::uint32_t>((r * n) >> 32);
}

bool fault_injector::hit(fault f) noexcept {
    const auto i = static_cast<std::size_t>(f);
    if (thresholds_[i] == 0) return false;
    if (below(UINT32_MAX) >= thresholds_[i]) return false;
    ++counts_[i];
    return true;
}

int fault_injector::before_start(op& o, std::uint32_t buffer_size) noexcept {
    switch (o.kind) {
    case op_kind::recv: {
        if (hit(fault::reset)) return -ECONNRESET;
        if (hit(fault::eintr)) return -EINTR;
        if (o.select_buffer && hit(fault::enobufs)) return -ENOBUFS;
        // A multishot receive or a bundle takes no length: the kernel decides, so no cut.
        if (o.multishot || o.bundle) return 0;
        const std::uint32_t asked = o.select_buffer && o.len == 0 ? buffer_size : o.len;
        if (asked > 1 && hit(fault::short_io)) {
            cuts_.push_back({&o, o.len, nullptr, 0, {}});
            o.len = 1 + below(asked - 1);
        }
        return 0;
    }
    case op_kind::send:
        if (hit(fault::reset)) return -EPIPE;
        if (hit(fault::eintr)) return -EINTR;
        if (o.len > 1 && hit(fault::short_io)) {
            cuts_.push_back({&o, o.len, nullptr, 0, {}});
            o.len = 1 + below(o.len - 1);
        }
        return 0;
    case op_kind::send_msg: {
        if (hit(fault::reset)) return -EPIPE;
        if (hit(fault::eintr)) return -EINTR;
        auto& m = *static_cast<msghdr*>(o.buf);
        std::size_t total = 0;
        for (std::size_t i = 0; i < m.msg_iovlen; ++i) total += m.msg_iov[i].iov_len;
        if (total <= 1 || !hit(fault::short_io)) return 0;
        // The caller's iovecs stay as they are: the op sends from a shortened copy of the first
        // pieces, and the msghdr points back at the caller's when it completes.
        std::size_t keep = 1 + below(static_cast<std::uint32_t>(std::min<std::size_t>(total - 1, UINT32_MAX - 1)));
        std::size_t i = 0;
        while (keep > m.msg_iov[i].iov_len) keep -= m.msg_iov[i++].iov_len;
        cut c{&o, 0, m.msg_iov, m.msg_iovlen, {}};
        c.copy.assign(m.msg_iov, m.msg_iov + i + 1);
        c.copy.back().iov_len = keep;
        m.msg_iov = c.copy.data();  // a vector's buffer stays put when the vector moves
        m.msg_iovlen = i + 1;
        cuts_.push_back(std::move(c));
        return 0;
    }
    case op_kind::accept:
        if (hit(fault::eintr)) return -EINTR;
        if (hit(fault::accept)) return below(2) ? -ECONNABORTED : -EMFILE;
        return 0;
    default: return 0;
    }
}

void fault_injector::after_completion(op& o) noexcept {
    for (std::size_t i = 0; i < cuts_.size(); ++i) {
        if (cuts_[i].o != &o) continue;
        cut& c = cuts_[i];
        if (o.kind == op_kind::send_msg) {
            auto& m = *static_cast<msghdr*>(o.buf);
            m.msg_iov = c.iov;
            m.msg_iovlen = c.iov_count;
        } else {
            o.len = c.len;
        }
        if (i + 1 != cuts_.size()) c = std::move(cuts_.back());
        cuts_.pop_back();
        return;
    }
}

void fault_injector::moved(op& o, op* heir) noexcept {
    for (std::size_t i = 0; i < cuts_.size(); ++i) {
        if (cuts_[i].o != &o) continue;
        if (heir) {
            cuts_[i].o = heir;
            return;
        }
        if (i + 1 != cuts_.size()) cuts_[i] = std::move(cuts_.back());
        cuts_.pop_back();
        return;
    }
}

}  // namespace detail
}  // namespace coring
