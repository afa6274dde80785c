#pragma once
// uring_backend: ops as io_uring SQEs, completions as CQEs. The only files that include
// <liburing.h> are this pair.
//
// Who owns what: an SQE's user_data is the op's address (cancel SQEs: the address | 1). From
// start() to the CQE, the kernel may read or write the op's buffer, sockaddr and socklen_t, so
// the op is pinned (it lives in a suspended frame). A cancelled op finishes only when both its
// own CQE and its cancel's CQE are in (op::pending). In-flight ops never exceed what the CQ can
// hold; beyond that they wait in a local FIFO (parked) and are submitted as CQEs are reaped.
//
// Multishot ops (accept, recv) post many CQEs for one SQE; each goes to the op's source, and
// the op ends at the CQE without IORING_CQE_F_MORE. Provided buffers are a registered buffer
// ring (group 0): the kernel takes one when data arrives. The ring holds a window of the pool
// (the rest waits in the free list, coldest at the bottom); when it runs dry with buffers still
// free the window doubles, and it halves again after a quiet second. A recv that finds it dry
// ends with ENOBUFS like any result: its owner (recv_feed) decides what happens next.
// A receive bundle (Linux 6.10) fills several ring entries in ring order and names the first;
// a copy of the ring's slots (ring_ids_) names the rest, and take_bundle chains them.
//
// Zerocopy sends (SEND_ZC) post two CQEs: the result (with IORING_CQE_F_MORE) and later a
// notification (IORING_CQE_F_NOTIF) once the kernel let go of the caller's pages; the op stays
// pending, and its frame suspended, until the notification. Pool buffers a zerocopy send reads
// are registered one slot per buffer (slot = buffer id) on their first such send, and lose the
// registration before trimming gives their pages back. docs/ARCHITECTURE.md, "Send paths".
//
// Direct descriptors: a sparse file table is registered at setup; accepts put sockets there
// (IORING_FILE_INDEX_ALLOC) and report direct_fd(slot); ops on them carry IOSQE_FIXED_FILE,
// closes go through the ring. The kernel accepts first and takes a slot after, so a connection
// accepted into a full table is closed by the kernel: the backend counts slots and never lets an
// accept run without a free one (docs/ARCHITECTURE.md, "Direct descriptors").
#include <coring/backend.hpp>

#include <liburing.h>

namespace coring {

class uring_backend final : public backend {
public:
    // Throws std::system_error naming the call and entry count when no ring can be set up.
    uring_backend(const backend_config& cfg, detail::completion_sink& sink);
    ~uring_backend() override;

    backend_kind kind() const noexcept override { return backend_kind::uring; }
    std::string describe() const override;
    int open_socket(int domain, int type, int protocol) noexcept override;
    void adopt(int fd) noexcept override;
    void start(op& o) noexcept override;
    void cancel(op& o) noexcept override;
    void withdraw(op& o, op* heir) noexcept override;
    void cancel_everything() noexcept override;
    void close_detached(int fd) noexcept override;
    void forget_fd(int fd) noexcept override;
    void poll(std::int64_t timeout_ns) noexcept override;
    std::size_t in_flight() const noexcept override {
        return in_flight_ + parked_.size() + buffer_waiters_.size();
    }
    backend_features features() const noexcept override { return features_; }
    int ring_fd() const noexcept override { return features_.msg_ring ? ring_.ring_fd : -1; }
    bool post_wake(int target_ring_fd) noexcept override;
    void refresh_stats() noexcept override;
    int install_fd(int fd) noexcept override;
    int set_socket_option(int fd, int level, int name, int value) noexcept override;
    unsigned direct_slots_free() const noexcept override {
        return features_.fixed_files ? features_.fixed_file_slots - slots_used_ - slots_reserved_ : 0;
    }
    bool direct_slots_low() const noexcept override {
        return features_.fixed_files && direct_slots_free() < slot_headroom_;
    }

private:
    io_uring_sqe* get_sqe() noexcept;
    void submit(op& o) noexcept;
    void reap() noexcept;
    void collect() noexcept;  // CQEs out of the ring into reaped_, not handled yet
    void handle(std::uint64_t user_data, std::int32_t res, std::uint32_t flags) noexcept;
    void unpark() noexcept;
    void prep_send(io_uring_sqe* sqe, op& o) noexcept;
    void prep_file_op(io_uring_sqe* sqe, op& o) noexcept;
    int registered_slot(const op& o) noexcept;  // the registered pool buffer o sends from, or -1
    void reset_connection(op& o) noexcept;
    void before_trim(std::uint16_t id) noexcept override;
    void setup_file_table(const backend_config& cfg);
    void prep_accept(io_uring_sqe* sqe, op& o) noexcept;
    // Submits sqe (prepared, user_data not set) and waits for its CQE; handles every other CQE
    // that comes meanwhile as usual. For the few calls that must answer at once (install_fd,
    // set_socket_option); never from inside a CQE handler.
    int run_now(io_uring_sqe* sqe) noexcept;
    void setup_buffers() override;
    bool to_ring(std::uint16_t id) noexcept override;
    void on_trim() noexcept override;
    void refill_ring() noexcept;
    void ring_ran_dry() noexcept;
    void note_ring_position(std::uint16_t id, int offset) noexcept;
    // What a receive's own CQE took from the ring, accounted: 0 buffers, 1, or a bundle's
    // chain (take_bundle). A buffer that came back empty goes straight back, and flags loses
    // IORING_CQE_F_BUFFER.
    std::uint16_t take_buffers(bool bundle, std::int32_t res, std::uint32_t& flags) noexcept;
    // A bundle's CQE: chains its buffers (first, then ring order) through link(), each with
    // its length; returns how many there are.
    std::uint16_t take_bundle(std::uint16_t first, std::int32_t res) noexcept;
    static constexpr unsigned min_ring_window = 64;

    io_uring ring_{};
    unsigned setup_flags_ = 0;
    backend_features features_;
    unsigned in_flight_ = 0;        // ops (and cancels, closes) whose last CQE is still owed
    unsigned in_flight_limit_ = 0;  // CQ size minus room for cancels and detached closes
    // Of in_flight_, the multishot ops armed (receives, accepts). They do not count against the
    // limit: an idle connection's armed receive posts nothing, and a burst from many of them is
    // the kernel's to queue (NODROP; a multishot that meets a full CQ ends, with its data). Were
    // they counted, a core holding more idle connections than its CQ has room for would park
    // every other op, sends included, behind receives that may never complete.
    unsigned multishot_live_ = 0;
    bool room_for_ops() const noexcept { return in_flight_ - multishot_live_ < in_flight_limit_; }
    op_queue parked_;               // ops waiting for CQ room
    io_uring_buf_ring* buf_ring_ = nullptr;
    unsigned ring_window_ = 0;      // the most buffers the ring is refilled to
    bool ring_ran_dry_ = false;     // since the last trim: the window was too small
    std::vector<std::uint16_t> ring_ids_;  // by ring slot: the id we put there last
    std::vector<std::uint16_t> ring_pos_;  // by pool id: the ring position (tail count) it went in at
    unsigned slots_used_ = 0;      // table slots holding a socket: +1 at an accept's CQE, -1 at a close's
    unsigned slots_reserved_ = 0;  // single-shot direct accepts in flight, one slot each
    unsigned slot_headroom_ = 0;   // fewer free slots than this: no multishot direct accept
    int sync_res_ = 0;             // run_now: the result of its CQE, once sync_done_
    bool sync_done_ = false;
    std::int64_t stalled_since_ns_ = 0;  // ops parked and no completion since then (0: not stalled)
    // CQEs copied out of the ring and not yet handled, oldest first. Handling one may submit,
    // and submitting may have to reap (SQ full, then -EBUSY): those newer CQEs queue behind.
    struct cqe_copy {
        std::uint64_t user_data;
        std::int32_t res;
        std::uint32_t flags;
    };
    std::vector<cqe_copy> reaped_;
    std::size_t next_reaped_ = 0;  // reaped_[next_reaped_...] are not handled yet
    bool reaping_ = false;  // a reap is handling reaped_ (or a withdraw collects): others only collect
    std::uint32_t zc_threshold_ = 0;
    unsigned zc_flags_ = 0;               // IORING_SEND_ZC_REPORT_USAGE where the kernel has it
    std::vector<bool> zc_refused_;        // by fd: SEND_ZC answered EOPNOTSUPP (until the fd closes)
    std::vector<bool> registered_;        // by pool id: its slot holds the buffer's pages
    int sq_creator_ = -1;                 // SQPOLL: the thread that set the ring up (names the SQ thread)
    int sq_thread_ = -1;                  // SQPOLL: the kernel SQ thread's id, for its CPU time
};

}  // namespace coring
