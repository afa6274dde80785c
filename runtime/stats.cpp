// Per-core counters: summed over cores, and written as one line for --stats and logs.
#include <coring/log.hpp>
#include <coring/stats.hpp>

namespace coring {

core_stats& core_stats::operator+=(const core_stats& o) noexcept {
    tasks_spawned += o.tasks_spawned;
    resumes += o.resumes;
    loop_turns += o.loop_turns;
    timers_fired += o.timers_fired;
    mail_received += o.mail_received;
    wakes_sent += o.wakes_sent;
    mail_deferred += o.mail_deferred;
    backend.ops_started += o.backend.ops_started;
    backend.sqes_submitted += o.backend.sqes_submitted;
    backend.enter_calls += o.backend.enter_calls;
    backend.completions += o.backend.completions;
    backend.sq_full_waits += o.backend.sq_full_waits;
    backend.parked_for_cq += o.backend.parked_for_cq;
    backend.cq_overflow += o.backend.cq_overflow;
    backend.cq_overcommits += o.backend.cq_overcommits;
    backend.cancels += o.backend.cancels;
    backend.eagain_retries += o.backend.eagain_retries;
    backend.multishot_arms += o.backend.multishot_arms;
    backend.buffers_in_use += o.backend.buffers_in_use;
    backend.buffer_waits += o.backend.buffer_waits;
    backend.spare_buffers += o.backend.spare_buffers;
    backend.buffer_ring_grows += o.backend.buffer_ring_grows;
    backend.direct_fallbacks += o.backend.direct_fallbacks;
    backend.fd_installs += o.backend.fd_installs;
    return *this;
}

std::string to_string(const core_stats& s) {
    const backend_stats& b = s.backend;
    return format("tasks={} resumes={} turns={} timers={} mail_in={} wakes_sent={} mail_deferred={} ops={} "
                  "sqes={} enters={} completions={} sq_full={} parked_for_cq={} cq_overflow={} cq_overcommits={} cancels={} "
                  "eagain={} multishot_arms={} buffers_in_use={} buffer_waits={} spare_buffers={} ring_grows={} "
                  "direct_fallbacks={} fd_installs={}",
                  s.tasks_spawned, s.resumes, s.loop_turns, s.timers_fired, s.mail_received, s.wakes_sent,
                  s.mail_deferred, b.ops_started, b.sqes_submitted, b.enter_calls, b.completions, b.sq_full_waits,
                  b.parked_for_cq, b.cq_overflow, b.cq_overcommits, b.cancels, b.eagain_retries, b.multishot_arms,
                  b.buffers_in_use, b.buffer_waits, b.spare_buffers, b.buffer_ring_grows,
                  b.direct_fallbacks, b.fd_installs);
}

}  // namespace coring
