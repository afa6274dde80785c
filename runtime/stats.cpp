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
    backend.withdrawals += o.backend.withdrawals;
    backend.eagain_retries += o.backend.eagain_retries;
    backend.multishot_arms += o.backend.multishot_arms;
    backend.buffers_in_use += o.backend.buffers_in_use;
    backend.pool_bytes += o.backend.pool_bytes;
    backend.pool_touched_bytes += o.backend.pool_touched_bytes;
    backend.buffers_trimmed += o.backend.buffers_trimmed;
    backend.buffer_waits += o.backend.buffer_waits;
    backend.spare_buffers += o.backend.spare_buffers;
    backend.buffer_ring_grows += o.backend.buffer_ring_grows;
    backend.gather_sends += o.backend.gather_sends;
    backend.recv_bundles += o.backend.recv_bundles;
    backend.bundle_buffers += o.backend.bundle_buffers;
    backend.zc_sends += o.backend.zc_sends;
    backend.zc_notifications += o.backend.zc_notifications;
    backend.zc_copied += o.backend.zc_copied;
    backend.zc_fallbacks += o.backend.zc_fallbacks;
    backend.zc_resets += o.backend.zc_resets;
    backend.fixed_sends += o.backend.fixed_sends;
    backend.sq_thread_cpu_us += o.backend.sq_thread_cpu_us;
    backend.direct_fallbacks += o.backend.direct_fallbacks;
    backend.fd_installs += o.backend.fd_installs;
    backend.file_ops_inline += o.backend.file_ops_inline;
    backend.file_ops_pooled += o.backend.file_ops_pooled;
    for (std::size_t i = 0; i < fault_kinds; ++i) faults[i] += o.faults[i];
    return *this;
}

std::string to_string(const core_stats& s) {
    const backend_stats& b = s.backend;
    std::string out = format("tasks={} resumes={} turns={} timers={} mail_in={} wakes_sent={} mail_deferred={} ops={} "
                  "sqes={} enters={} completions={} sq_full={} parked_for_cq={} cq_overflow={} cq_overcommits={} cancels={} "
                  "withdrawals={} eagain={} multishot_arms={} buffers_in_use={} buffer_waits={} spare_buffers={} ring_grows={} "
                  "gather_sends={} bundles={} bundle_buffers={} pool_kib={} pool_touched_kib={} buffers_trimmed={} "
                  "direct_fallbacks={} fd_installs={}",
                  s.tasks_spawned, s.resumes, s.loop_turns, s.timers_fired, s.mail_received, s.wakes_sent,
                  s.mail_deferred, b.ops_started, b.sqes_submitted, b.enter_calls, b.completions, b.sq_full_waits,
                  b.parked_for_cq, b.cq_overflow, b.cq_overcommits, b.cancels, b.withdrawals, b.eagain_retries, b.multishot_arms,
                  b.buffers_in_use, b.buffer_waits, b.spare_buffers, b.buffer_ring_grows,
                  b.gather_sends, b.recv_bundles, b.bundle_buffers, b.pool_bytes / 1024, b.pool_touched_bytes / 1024,
                  b.buffers_trimmed, b.direct_fallbacks, b.fd_installs);
    if (b.zc_sends != 0 || b.zc_fallbacks != 0)
        out += format(" zc_sends={} zc_notifications={} zc_copied={} zc_fallbacks={} zc_resets={} fixed_sends={}",
                      b.zc_sends, b.zc_notifications, b.zc_copied, b.zc_fallbacks, b.zc_resets, b.fixed_sends);
    if (b.file_ops_inline != 0 || b.file_ops_pooled != 0)
        out += format(" file_ops_inline={} file_ops_pooled={}", b.file_ops_inline, b.file_ops_pooled);
    if (b.sq_thread_cpu_us != 0) out += format(" sq_thread_cpu_ms={}", b.sq_thread_cpu_us / 1000);
    for (std::size_t i = 0; i < fault_kinds; ++i)  // only with --faults: what was injected, by kind
        if (s.faults[i] != 0) out += format(" fault_{}={}", to_string(static_cast<fault>(i)), s.faults[i]);
    return out;
}

}  // namespace coring
