#include <coring/accept_pacer.hpp>

#include <coring/log.hpp>
#include <coring/timer.hpp>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <string>

namespace coring {

namespace {

// The process's one report of accept failures, shared by every pacer: each core has its own
// accept loop (and coring-pubsub a second one for --http), and they all meet the same limit at
// the same moment; one line per interval for the process says it, one per loop would repeat it.
struct failure_report {
    std::atomic<std::int64_t> last_line_ns{0};  // steady clock; 0: nothing said yet
    std::atomic<std::uint64_t> unsaid{0};       // failures since that line
};
failure_report report;

std::int64_t now_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Whether this caller is the one to write the next line: the interval has passed since the last
// one (or none was written), and no other loop claimed it first.
bool claim_line(std::chrono::seconds interval, std::int64_t now, std::int64_t& since_ns) noexcept {
    std::int64_t last = report.last_line_ns.load(std::memory_order_relaxed);
    if (last != 0 && now - last < std::chrono::nanoseconds{interval}.count()) return false;
    if (!report.last_line_ns.compare_exchange_strong(last, now, std::memory_order_relaxed)) return false;
    since_ns = last == 0 ? 0 : now - last;
    return true;
}

}  // namespace

bool accept_pacer::out_of_resources(std::error_code ec) noexcept {
    return ec == std::errc::too_many_files_open || ec == std::errc::too_many_files_open_in_system ||
           ec == std::errc::no_buffer_space || ec == std::errc::not_enough_memory;
}

bool accept_pacer::connection_failed(std::error_code ec) noexcept {
    if (ec.category() != std::system_category()) return false;
    switch (ec.value()) {
    case ECONNABORTED:  // the peer reset it while it waited in the backlog
    case EINTR:
    case EPERM:         // a firewall rule refused it
    case EPROTO:        // accept(2): Linux passes the new socket's pending network errors on
    case ENOPROTOOPT:
    case ENETDOWN:
    case ENETUNREACH:
    case EHOSTDOWN:
    case EHOSTUNREACH:
    case ENONET:
    case EOPNOTSUPP:
    case ECONNRESET:
    case ETIMEDOUT:
        return true;
    default:
        return false;
    }
}

task<result<tcp_stream>> accept_pacer::next(tcp_listener& listener) {
    for (;;) {
        auto accepted = co_await listener.accept();
        if (accepted) {
            if (failing_) note_recovered();
            co_return accepted;
        }
        const std::error_code ec = accepted.error();
        if (ec == std::errc::operation_canceled) co_return ec;
        if (connection_failed(ec)) continue;
        note_failure(ec);
        // The connection is still queued: only a close can make the next try succeed.
        const auto slept = co_await sleep_for(pause_);
        if (!slept) co_return slept.error();  // cancelled while pausing
    }
}

void accept_pacer::note_failure(std::error_code ec) {
    failing_ = true;
    last_error_ = ec;
    const std::uint64_t unsaid = report.unsaid.fetch_add(1, std::memory_order_relaxed) + 1;
    std::int64_t since_ns = 0;
    if (!claim_line(log_interval_, now_ns(), since_ns)) return;
    report.unsaid.fetch_sub(unsaid, std::memory_order_relaxed);  // what this line tells
    const std::string what = ec.message() + (out_of_resources(ec) ? "" : " (unexpected)");
    if (since_ns == 0 || unsaid == 1) {
        log("{}: {}; pausing {} ms between tries (said at most once per {} s)", who_, what, pause_.count(),
            log_interval_.count());
    } else {
        log("{}: {} ({} times in the last {} s); pausing {} ms between tries", who_, what, unsaid,
            since_ns / 1'000'000'000, pause_.count());
    }
}

void accept_pacer::note_recovered() {
    failing_ = false;
    // Only when a line is due anyway: a server that runs at its limit alternates between
    // accepting and failing, and a line per change would be a line per try again.
    const std::uint64_t unsaid = report.unsaid.load(std::memory_order_relaxed);
    std::int64_t since_ns = 0;
    if (unsaid == 0 || !claim_line(log_interval_, now_ns(), since_ns)) return;
    report.unsaid.fetch_sub(unsaid, std::memory_order_relaxed);
    log("{}: accepting again ({} {} times in the last {} s)", who_, last_error_.message(), unsaid, since_ns / 1'000'000'000);
}

}  // namespace coring
