#pragma once
// accept_pacer: what a server's accept loop does when accept fails, in one place (coring-echo,
// the HTTP server and coring-pubsub share it).
//
// Out of descriptors (EMFILE, ENFILE) or kernel memory (ENOBUFS, ENOMEM), the connection stays
// in the listener's backlog: accepting again at once would fail again at once, a spin. So the
// pacer pauses (50 ms) between tries until a close frees what accept needs; the peers wait in
// the backlog meanwhile (the backlog bounds them). On io_uring with direct descriptors the
// file table is as big as RLIMIT_NOFILE was at setup, so a full table ends the same way: the
// backend falls back to plain accepts (docs/ARCHITECTURE.md, "Direct descriptors"), which then
// meet EMFILE like epoll's.
//
// The condition is logged at most once per interval (10 s) for the whole process, not once per
// try nor once per core: the first failure at once, then a count per interval while it lasts,
// and a last count once a connection is accepted again (if that line is due).
//
// A failure that concerns one connection only (ECONNABORTED: the peer reset it while it
// waited, and the network errors Linux hands to accept) is retried at once, without a word:
// the next connection may be fine. Any other failure (a listener in a state nobody expected)
// is paused and logged like the first kind: never spun on, and never a reason to stop serving.
#include <coring/result.hpp>
#include <coring/task.hpp>
#include <coring/tcp.hpp>

#include <chrono>
#include <string>
#include <system_error>
#include <utility>

namespace coring {

class accept_pacer {
public:
    // `who` opens each log line ("accept", "http accept").
    explicit accept_pacer(std::string who, std::chrono::milliseconds pause = std::chrono::milliseconds{50},
                          std::chrono::seconds log_interval = std::chrono::seconds{10})
        : who_{std::move(who)}, pause_{pause}, log_interval_{log_interval} {}

    // The next connection on `listener` (which must outlive the wait), riding out the failures
    // above; an error only when the wait was cancelled (ECANCELED: the core is stopping or the
    // listener closed). The caller's loop ends on that error.
    [[nodiscard]] task<result<tcp_stream>> next(tcp_listener& listener);

    // Whether accept failed because the process or the system ran out of something a close
    // will give back (any other failure but connection_failed is paused on too, and its log
    // line says it was unexpected).
    static bool out_of_resources(std::error_code ec) noexcept;
    // Whether accept failed for that one connection only (so: try the next one at once).
    static bool connection_failed(std::error_code ec) noexcept;

private:
    void note_failure(std::error_code ec);
    void note_recovered();

    std::string who_;
    std::chrono::milliseconds pause_;
    std::chrono::seconds log_interval_;
    std::error_code last_error_;  // the condition being counted
    bool failing_ = false;        // the last try failed for lack of resources
};

}  // namespace coring
