// The io_uring backend's setup: the ring (flags tried newest first), what the kernel offers
// (probes), the buffer ring and the file table; its description and the SQPOLL thread's CPU
// time. Submission and completion are in uring_backend.cpp.
#include <coring/file_request.hpp>
#include <coring/log.hpp>
#include <coring/uring_backend.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <string_view>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <system_error>
#include <unistd.h>

#include "uring_kernel.hpp"

namespace coring {

using detail::op_fixed_fd_install;

namespace {

std::string flag_names(unsigned flags) {
    std::string s;
    auto add = [&](unsigned f, const char* name) {
        if (!(flags & f)) return;
        if (!s.empty()) s += '|';
        s += name;
    };
    add(IORING_SETUP_SINGLE_ISSUER, "SINGLE_ISSUER");
    add(IORING_SETUP_DEFER_TASKRUN, "DEFER_TASKRUN");
    add(IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN");
    add(IORING_SETUP_TASKRUN_FLAG, "TASKRUN_FLAG");
    add(IORING_SETUP_SQPOLL, "SQPOLL");
    return s.empty() ? "plain" : s;
}

// The kernel's SQ thread is a thread of this process named iou-sqp-<the creating thread's id>
// (it names itself once it runs, so look after setup, not during it).
int find_sq_thread(int creator) noexcept {
    char want[32];
    std::snprintf(want, sizeof want, "iou-sqp-%d\n", creator);
    DIR* tasks = ::opendir("/proc/self/task");
    if (!tasks) return -1;
    int found = -1;
    while (dirent* e = ::readdir(tasks)) {
        if (e->d_name[0] == '.') continue;
        char path[300], comm[32] = {};
        std::snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        if (std::FILE* f = std::fopen(path, "re")) {
            const bool named = std::fgets(comm, sizeof comm, f) && std::string_view{comm} == want;
            std::fclose(f);
            if (named) {
                found = std::atoi(e->d_name);
                break;
            }
        }
    }
    ::closedir(tasks);
    return found;
}

// User plus system time of thread tid of this process, in microseconds (0 when unreadable).
std::uint64_t thread_cpu_us(int tid) noexcept {
    char path[64], line[512] = {};
    std::snprintf(path, sizeof path, "/proc/self/task/%d/stat", tid);
    std::FILE* f = std::fopen(path, "re");
    if (!f) return 0;
    const bool read = std::fgets(line, sizeof line, f) != nullptr;
    std::fclose(f);
    const char* after_name = read ? std::strrchr(line, ')') : nullptr;  // the name may hold spaces
    unsigned long long utime = 0, stime = 0;
    // Fields 3..15 follow the name: state, then 10 numbers, then utime and stime (clock ticks).
    if (!after_name || std::sscanf(after_name + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                                   &utime, &stime) != 2)
        return 0;
    return (utime + stime) * 1'000'000 / static_cast<std::uint64_t>(::sysconf(_SC_CLK_TCK));
}

// The CQ must hold a completion for every op that can be in flight. Each fd has at most one op
// per direction (asserted by the sockets), so two per allowed fd covers them all; a smaller CQ
// would force ops to wait for room behind receives that wait for those very ops' peers.
unsigned default_cq_entries(unsigned sq) noexcept {
    rlimit r{};
    std::uint64_t fds = 1024;
    if (::getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur != RLIM_INFINITY) fds = r.rlim_cur;
    std::uint64_t cq = 4ull * sq;
    while (cq < 2 * fds && cq < 65536) cq *= 2;  // the kernel's maximum CQ size
    return static_cast<unsigned>(std::min<std::uint64_t>(cq, 65536));
}

// The file table holds as many sockets as the process may hold fds (the kernel refuses a
// larger table anyway), at most 65536: 8 bytes of kernel memory per slot, per core, plus a small
// node per socket in it.
unsigned default_file_slots() noexcept {
    rlimit r{};
    std::uint64_t fds = 1024;
    if (::getrlimit(RLIMIT_NOFILE, &r) == 0) fds = r.rlim_cur == RLIM_INFINITY ? 65536 : r.rlim_cur;
    return static_cast<unsigned>(std::clamp<std::uint64_t>(fds, 1, 65536));
}

// How many connections one pass of a multishot accept may take: the accept queue holds at most
// the listener's backlog, which the kernel caps at net.core.somaxconn; a margin covers those that
// finish their handshake during the pass.
unsigned multishot_accept_burst() noexcept {
    unsigned somaxconn = 4096;
    if (std::FILE* f = std::fopen("/proc/sys/net/core/somaxconn", "re")) {
        if (std::fscanf(f, "%u", &somaxconn) != 1) somaxconn = 4096;
        std::fclose(f);
    }
    return somaxconn + 64;
}

}  // namespace

uring_backend::uring_backend(const backend_config& cfg, detail::completion_sink& sink) : backend{cfg, sink} {
    const unsigned sq = cfg.sq_entries;
    const unsigned cq = cfg.cq_entries ? cfg.cq_entries : default_cq_entries(sq);
    // Best first: one issuer with task work run only when we ask (fewest interrupts), then
    // cooperative task work, then whatever this kernel has. SQPOLL (asked for) goes first; the
    // kernel refuses it with DEFER_TASKRUN, COOP_TASKRUN and TASKRUN_FLAG (task work is the SQ
    // thread's there), so it is tried with SINGLE_ISSUER, then alone, then not at all.
    const unsigned attempts[] = {
        IORING_SETUP_SQPOLL | IORING_SETUP_SINGLE_ISSUER,
        IORING_SETUP_SQPOLL,
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
        0,
    };
    int rc = -EINVAL;
    for (unsigned flags : attempts) {
        if ((flags & IORING_SETUP_SQPOLL) && !cfg.sqpoll) continue;
        io_uring_params p{};
        p.flags = flags | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
        p.cq_entries = cq;
        // The SQ thread spins while there is work and sleeps after this much without: a busy
        // core never pays a wake-up, an idle one stops burning its CPU within 10 ms.
        p.sq_thread_idle = 10;
        rc = io_uring_queue_init_params(sq, &ring_, &p);
        if (rc == -EINVAL || (rc == -EPERM && (flags & IORING_SETUP_SQPOLL))) continue;  // try the next set
        if (rc < 0) break;
        if (!(p.features & IORING_FEAT_NODROP)) {
            io_uring_queue_exit(&ring_);
            throw std::system_error(EOPNOTSUPP, std::system_category(),
                                    "io_uring lacks IORING_FEAT_NODROP (kernel too old)");
        }
        setup_flags_ = flags;
        if (io_uring_probe* probe = io_uring_get_probe_ring(&ring_)) {
            // Flags have no probe of their own; each is dated by an opcode of the same release.
            features_.msg_ring = io_uring_opcode_supported(probe, IORING_OP_MSG_RING);          // 5.18
            features_.multishot_accept = io_uring_opcode_supported(probe, IORING_OP_SOCKET);   // 5.19
            features_.buffer_ring = features_.multishot_accept;                                // 5.19
            features_.send_zc = io_uring_opcode_supported(probe, IORING_OP_SEND_ZC);           // 6.0
            features_.multishot_recv = features_.send_zc;                                      // 6.0
            features_.send_msg = io_uring_opcode_supported(probe, IORING_OP_SENDMSG);          // 5.3
            features_.file_ops = io_uring_opcode_supported(probe, IORING_OP_OPENAT2) &&       // 5.6
                                 io_uring_opcode_supported(probe, IORING_OP_STATX) &&
                                 io_uring_opcode_supported(probe, IORING_OP_READ);
            // IORING_RECVSEND_FIXED_BUF on SEND_ZC (6.0); sparse buffer tables (5.19). Plain
            // IORING_OP_SEND refuses the flag (EINVAL, checked on 6.18): only zerocopy sends use it.
            features_.registered_buffers = features_.send_zc;
            io_uring_free_probe(probe);
        }
        features_.recv_bundle = (p.features & IORING_FEAT_RECVSEND_BUNDLE) && features_.buffer_ring;  // 6.10
        features_.sqpoll = p.features & IORING_FEAT_SQPOLL_NONFIXED;  // 5.11
        if (!cfg.multishot) features_.multishot_accept = features_.multishot_recv = false;
        if (!cfg.recv_bundle) features_.recv_bundle = false;
        features_.send_zc_on = features_.send_zc && cfg.send_zc;
        features_.registered_buffers_on = features_.send_zc_on && features_.registered_buffers && cfg.registered_buffers &&
                                          cfg.buffer_count <= 16384;  // the kernel's most registered buffers
        features_.sqpoll_on = flags & IORING_SETUP_SQPOLL;
        zc_threshold_ = std::max<std::uint32_t>(cfg.zc_threshold, 1);
        if (p.features & IORING_FEAT_REG_REG_RING) zc_flags_ = IORING_SEND_ZC_REPORT_USAGE;  // 6.2, dated by 6.3
        if (features_.sqpoll_on) sq_creator_ = static_cast<int>(::gettid());
        setup_file_table(cfg);
        // An eighth of the CQ stays free for cancels and detached closes, which are never
        // held back. Beyond that, IORING_FEAT_NODROP keeps extra CQEs in the kernel's overflow
        // list rather than losing them; stats count it (it should stay 0).
        in_flight_limit_ = p.cq_entries - p.cq_entries / 8;
        return;
    }
    throw std::system_error(-rc, std::system_category(),
                            format("io_uring_queue_init_params ({} entries)", sq));
}

void uring_backend::setup_file_table(const backend_config& cfg) {
    if (!cfg.fixed_files) return;
    // FIXED_FD_INSTALL (6.8) is required, not just the table (5.19): without it a direct socket
    // could never give its user a real fd. It also dates the setsockopt command (6.7).
    io_uring_probe* probe = io_uring_get_probe_ring(&ring_);
    const bool install = probe && io_uring_opcode_supported(probe, op_fixed_fd_install);
    if (probe) io_uring_free_probe(probe);
    if (!install) return;
    const unsigned slots = cfg.fixed_file_slots ? cfg.fixed_file_slots : default_file_slots();
    if (io_uring_register_files_sparse(&ring_, slots) < 0) return;  // ENOMEM, a lower limit: plain fds
    features_.fixed_files = true;
    features_.fixed_file_slots = slots;
    slot_headroom_ = multishot_accept_burst();
}

uring_backend::~uring_backend() {
    io_uring_queue_exit(&ring_);  // unregisters the buffer ring too
    if (buf_ring_) ::munmap(buf_ring_, std::size_t{buffer_count_} * sizeof(io_uring_buf));
}

std::string uring_backend::describe() const {
    return format("io_uring ({}, {} SQ / {} CQ entries{}{}{}{}{}{})", flag_names(setup_flags_), ring_.sq.ring_entries,
                  ring_.cq.ring_entries, features_.msg_ring ? ", MSG_RING" : "",
                  features_.multishot_recv ? ", multishot" : "", features_.recv_bundle ? ", bundles" : "",
                  features_.send_zc_on ? format(", SEND_ZC from {} B", zc_threshold_) : std::string{},
                  features_.registered_buffers_on ? ", registered buffers" : "",
                  features_.fixed_files ? format(", {} direct descriptors", features_.fixed_file_slots) : std::string{});
}

void uring_backend::refresh_stats() noexcept {
    if (sq_creator_ < 0) return;
    if (sq_thread_ < 0) sq_thread_ = find_sq_thread(sq_creator_);
    if (sq_thread_ >= 0) stats_.sq_thread_cpu_us = thread_cpu_us(sq_thread_);
}

}  // namespace coring
