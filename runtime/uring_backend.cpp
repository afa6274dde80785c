#include <coring/file_request.hpp>
#include <coring/log.hpp>
#include <coring/uring_backend.hpp>

#include "uring_kernel.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <string_view>
#include <sys/socket.h>
#include <sys/uio.h>
#include <system_error>
#include <unistd.h>

namespace coring {

using detail::op_fixed_fd_install;
using detail::socket_op_setsockopt;

namespace {

constexpr std::uint64_t cancel_tag = 1;  // ops are 8-aligned: bit 0 marks a cancel's CQE
constexpr std::uint64_t detached_user_data = 0;  // a CQE nobody waits for (detached close)
constexpr std::uint64_t wake_user_data = 2;      // a MSG_RING from another core: only a wake-up
constexpr std::uint64_t wake_sent_tag = 3;       // our MSG_RING's own CQE; the target's ring fd above bit 32
constexpr std::uint64_t direct_close_user_data = 4;  // a detached close of a direct descriptor: frees a slot
constexpr std::uint64_t run_now_user_data = 5;       // run_now's SQE: the caller waits for it
// The CQEs of a withdrawn receive that nobody takes over (core::withdraw): its buffers go back.
// orphan_bundle marks one that was a bundle; cancel_tag its cancel's CQE, as for any op.
constexpr std::uint64_t orphan_user_data = 8;
constexpr std::uint64_t orphan_bundle = 16;

// A CQE that carries its op's result: not a cancel's, not a zerocopy send's notification.
bool carries_result(std::uint64_t user_data, std::uint32_t flags) noexcept {
    return (user_data & cancel_tag) == 0 && !(flags & IORING_CQE_F_NOTIF);
}
// One of the completions an op's `pending` counts: all but a result with more to come (a
// multishot op's, or a zerocopy send's before its notification).
bool counted(std::uint64_t user_data, std::uint32_t flags) noexcept {
    return !(carries_result(user_data, flags) && (flags & IORING_CQE_F_MORE));
}

std::uint64_t user_data_of(const op& o) noexcept { return reinterpret_cast<std::uintptr_t>(&o); }
op& op_from(std::uint64_t user_data) noexcept {
    return *reinterpret_cast<op*>(static_cast<std::uintptr_t>(user_data & ~cancel_tag));
}

}  // namespace

int uring_backend::open_socket(int domain, int type, int protocol) noexcept {
    const int fd = ::socket(domain, type | SOCK_CLOEXEC, protocol);
    return fd < 0 ? -errno : fd;
}

void uring_backend::adopt(int fd) noexcept {
    const int fl = ::fcntl(fd, F_GETFL);  // blocking mode: io_uring waits inside the kernel
    if (fl >= 0 && (fl & O_NONBLOCK)) ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
}

io_uring_sqe* uring_backend::get_sqe() noexcept {
    io_uring_sqe* sqe;
    // An injected fault: the SQ is full now (the batch goes to the kernel first, as when it is).
    while (!(sqe = faults_ && faults_->hit(fault::sq_full) ? nullptr : io_uring_get_sqe(&ring_))) {
        ++stats_.sq_full_waits;  // SQ full: hand the batch to the kernel and take a new slot
        const int r = io_uring_submit(&ring_);
        ++stats_.enter_calls;
        if (r > 0) stats_.sqes_submitted += static_cast<unsigned>(r);
        // SQPOLL: the slots free up as the SQ thread takes SQEs; wait for that, never spin.
        if (r >= 0 && features_.sqpoll_on) (void)io_uring_sqring_wait(&ring_);
        if (r >= 0 || r == -EINTR) continue;
        if (r != -EBUSY && r != -EAGAIN) {  // nothing this loop can wait out: say so, never spin
            log("io_uring_submit: {}", std::system_category().message(-r));
            std::abort();
        }
        // Completions must be taken before more can be submitted (EBUSY), or the kernel is
        // short of memory for requests (EAGAIN): take them, or wait for one. Only collected
        // (their CQ slots freed), never handled here: the caller is in the middle of something
        // (a feed cancelling its op, a loop over its fds) that a handler could end or change.
        // The loop handles them next, before it waits (poll).
        const std::uint64_t before = stats_.completions;
        collect();
        if (stats_.completions == before) {
            io_uring_cqe* cqe = nullptr;
            (void)io_uring_wait_cqe(&ring_, &cqe);
            collect();
        }
    }
    return sqe;
}

void uring_backend::start(op& o) noexcept {
    ++stats_.ops_started;
    if (o.multishot) ++stats_.multishot_arms;
    if (o.kind == op_kind::send_msg) ++stats_.gather_sends;
    ++o.pending;
    o.cancel_sent = false;
    // Close and shutdown never wait: they finish at once, and must stay ordered before any
    // detached close (which is never parked either) that could free their fd number.
    const bool may_park = o.kind != op_kind::close && o.kind != op_kind::shutdown;
    if (may_park && !room_for_ops()) {  // the CQ could overflow: wait for room
        ++stats_.parked_for_cq;
        return parked_.push(o, park_reason::cq_room);
    }
    submit(o);
}

void uring_backend::submit(op& o) noexcept {
    io_uring_sqe* sqe = get_sqe();
    switch (o.kind) {
    case op_kind::nop: io_uring_prep_nop(sqe); break;
    case op_kind::accept: prep_accept(sqe, o); break;
    case op_kind::connect: io_uring_prep_connect(sqe, o.fd, o.addr, o.addr_len); break;
    case op_kind::recv:
        if (!o.select_buffer) {
            io_uring_prep_recv(sqe, o.fd, o.buf, o.len, o.flags);
            break;
        }
        // No buffer until data arrives: the kernel takes one from group 0 (length 0: all of it;
        // a single-shot receive may ask for less, as the fault injector's short receives do).
        if (o.multishot) io_uring_prep_recv_multishot(sqe, o.fd, nullptr, 0, o.flags);
        else io_uring_prep_recv(sqe, o.fd, nullptr, o.len, o.flags);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = 0;
        if (o.bundle) sqe->ioprio |= IORING_RECVSEND_BUNDLE;  // beside IORING_RECV_MULTISHOT, if set
        break;
    case op_kind::send: prep_send(sqe, o); break;
    case op_kind::send_msg:
        io_uring_prep_sendmsg(sqe, o.fd, static_cast<const msghdr*>(o.buf), static_cast<unsigned>(o.flags | MSG_NOSIGNAL));
        break;
    case op_kind::read: io_uring_prep_read(sqe, o.fd, o.buf, o.len, 0); break;
    case op_kind::shutdown: io_uring_prep_shutdown(sqe, o.fd, o.flags); break;
    case op_kind::close:
        forget_fd(o.fd);
        if (is_direct_fd(o.fd)) io_uring_prep_close_direct(sqe, direct_slot(o.fd));
        else io_uring_prep_close(sqe, o.fd);
        break;
    case op_kind::open_at:
    case op_kind::stat:
    case op_kind::read_at: prep_file_op(sqe, o); break;
    case op_kind::poll:
        // Single-shot: one wait, one CQE, like every other op here, so cancel and deadlines
        // need nothing new. Multishot (IORING_POLL_ADD_MULTI, 5.13) would save re-arming a
        // reader that waits again and again (hiredis's), but it posts a CQE per wake-up whether
        // anyone waits or not, which would need a feed and a queue; one SQE per wait goes out
        // in the turn's single io_uring_enter anyway.
        io_uring_prep_poll_add(sqe, o.fd, static_cast<unsigned>(o.flags));
        break;
    case op_kind::timer:
    case op_kind::deadline:
    case op_kind::join:
    case op_kind::buffer_wait:
    case op_kind::wait: std::abort();  // the core keeps these
    }
    if (is_direct_fd(o.fd) && o.kind != op_kind::close) {  // a slot of our table, not a process fd
        sqe->fd = static_cast<int>(direct_slot(o.fd));
        sqe->flags |= IOSQE_FIXED_FILE;
    }
    io_uring_sqe_set_data64(sqe, user_data_of(o));  // always: a reused SQE keeps stale values
    if (o.multishot && !o.multishot_live) {
        o.multishot_live = true;
        ++multishot_live_;
    }
    ++in_flight_;
}

void uring_backend::prep_file_op(io_uring_sqe* sqe, op& o) noexcept {
    // The kernel copies the path and open_how at submit and writes the statx buffer at the
    // CQE: all three live in the request, in the awaiting frame. A read of pages not in the
    // page cache is handed to the kernel's io-wq threads; the core never waits for it.
    auto& r = *static_cast<file_request*>(o.buf);
    switch (o.kind) {
    case op_kind::open_at: io_uring_prep_openat2(sqe, o.fd, r.path, &r.how); break;  // 5.6
    case op_kind::stat: io_uring_prep_statx(sqe, o.fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, r.status); break;  // 5.6
    default:  // read_at (IORING_OP_READ, 5.6): an offset of -1 reads at the file position
        io_uring_prep_read(sqe, o.fd, r.data, o.len, static_cast<std::uint64_t>(r.offset));
        break;
    }
}

void uring_backend::prep_send(io_uring_sqe* sqe, op& o) noexcept {
    const int flags = o.flags | MSG_NOSIGNAL;
    const bool refused = o.fd >= 0 && static_cast<std::size_t>(o.fd) < zc_refused_.size() && zc_refused_[o.fd];
    // Not on a direct descriptor: a cancelled zerocopy send resets its connection with
    // connect(AF_UNSPEC) (reset_connection), which needs a real fd.
    o.zerocopy = features_.send_zc_on && o.len >= zc_threshold_ && !refused && !is_direct_fd(o.fd);
    if (!o.zerocopy) return io_uring_prep_send(sqe, o.fd, o.buf, o.len, flags);
    ++stats_.zc_sends;
    io_uring_prep_send_zc(sqe, o.fd, o.buf, o.len, flags, zc_flags_);
    if (const int slot = registered_slot(o); slot >= 0) {
        sqe->ioprio |= IORING_RECVSEND_FIXED_BUF;  // addr stays the user address, inside the slot
        sqe->buf_index = static_cast<std::uint16_t>(slot);
        ++stats_.fixed_sends;
    }
}

void uring_backend::forget_fd(int fd) noexcept {
    if (fd >= 0 && static_cast<std::size_t>(fd) < zc_refused_.size()) zc_refused_[fd] = false;
}

void uring_backend::reset_connection(op& o) noexcept {
    // A zerocopy send is cancelled while the kernel holds its pages: they sit in the socket's
    // send queue until the peer has taken every byte, which a peer that does not read never
    // does, and the op (so the caller's frame and buffer) must outlive them. Disconnecting
    // (connect with AF_UNSPEC) drops the queue and resets the connection; the notification
    // follows. Done here, at the cancel, while the fd is surely still this socket's: a close
    // is queued only after the cancel.
    ++stats_.zc_resets;
    sockaddr unspec{};
    unspec.sa_family = AF_UNSPEC;
    (void)::connect(o.fd, &unspec, sizeof unspec);
}

void uring_backend::prep_accept(io_uring_sqe* sqe, op& o) noexcept {
    o.direct_accept = false;
    o.slot_reserved = false;
    const unsigned free = direct_slots_free();
    if (free > 0) {
        o.direct_accept = true;
        if (o.multishot && free >= slot_headroom_) {
            // One pass can take a whole accept queue; direct_slots_low() pauses it in time.
            io_uring_prep_multishot_accept_direct(sqe, o.fd, nullptr, nullptr, 0);
            return;
        }
        // Near the end of the table: one connection per SQE, its slot held from now to the CQE,
        // so no accept can find the table full. (liburing 2.3 adds 1 to IORING_FILE_INDEX_ALLOC
        // itself; later versions correct that.) Direct accepts take no SOCK_CLOEXEC: no fd yet.
        io_uring_prep_accept_direct(sqe, o.fd, o.addr, o.addr ? &o.addr_len : nullptr, 0, IORING_FILE_INDEX_ALLOC - 1);
        o.slot_reserved = true;
        ++slots_reserved_;
        return;
    }
    if (features_.fixed_files) {
        // The table is full: this one connection gets a real fd; the next arming looks again.
        ++stats_.direct_fallbacks;
        io_uring_prep_accept(sqe, o.fd, o.addr, o.addr ? &o.addr_len : nullptr, SOCK_CLOEXEC);
        return;
    }
    if (o.multishot) io_uring_prep_multishot_accept(sqe, o.fd, nullptr, nullptr, SOCK_CLOEXEC);
    else io_uring_prep_accept(sqe, o.fd, o.addr, o.addr ? &o.addr_len : nullptr, SOCK_CLOEXEC);
}

void uring_backend::cancel(op& o) noexcept {
    if (o.pending == 0) return;  // already complete; its waiter is queued
    ++stats_.cancels;
    if (o.parked != park_reason::none) {  // not in the kernel: unlink and finish here
        parked_.remove(o);
        o.res = -ECANCELED;
        return sink_.complete(o);
    }
    io_uring_sqe* sqe = get_sqe();  // may collect CQEs (SQ full, then -EBUSY), never handles them
    io_uring_prep_cancel64(sqe, user_data_of(o), 0);
    io_uring_sqe_set_data64(sqe, user_data_of(o) | cancel_tag);
    ++o.pending;  // the cancel's CQE names this op too: the frame must outlive it
    ++in_flight_;
    // A zerocopy send's notification may wait for the peer forever: reset the connection, the
    // first time only (by a second cancel, close() may have freed the fd number for another).
    if (o.zerocopy && !o.cancel_sent) reset_connection(o);
    o.cancel_sent = true;
}

void uring_backend::cancel_everything() noexcept {
    backend::cancel_everything();
    cancel_queued(parked_);
    if (in_flight_ == 0) return;
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);  // 5.19
    io_uring_sqe_set_data64(sqe, detached_user_data);
    ++in_flight_;
    ++stats_.cancels;
}

void uring_backend::close_detached(int fd) noexcept {
    forget_fd(fd);
    io_uring_sqe* sqe = get_sqe();  // after every SQE already queued for fd, so none hits a reused number
    if (is_direct_fd(fd)) {
        io_uring_prep_close_direct(sqe, direct_slot(fd));  // the same holds for a reused slot
        io_uring_sqe_set_data64(sqe, direct_close_user_data);
    } else {
        io_uring_prep_close(sqe, fd);
        io_uring_sqe_set_data64(sqe, detached_user_data);
    }
    ++in_flight_;
}

int uring_backend::run_now(io_uring_sqe* sqe) noexcept {
    if (reaping_) {  // the CQE would only be queued behind the one being handled: never answered
        log("io_uring: a call that waits for its answer from inside a completion handler");
        std::abort();
    }
    io_uring_sqe_set_data64(sqe, run_now_user_data);
    ++in_flight_;
    sync_done_ = false;
    while (!sync_done_) {
        // Submits everything queued, this SQE last; both commands complete at submit, so the
        // wait is short. Other CQEs are handled as in any turn (their waiters only get queued).
        const int r = io_uring_submit_and_wait(&ring_, 1);
        ++stats_.enter_calls;
        if (r > 0) stats_.sqes_submitted += static_cast<unsigned>(r);
        reap();
    }
    return sync_res_;
}

int uring_backend::install_fd(int fd) noexcept {
    if (!is_direct_fd(fd)) return fd;
    io_uring_sqe* sqe = get_sqe();
    // Raw fields: liburing 2.3 has no io_uring_prep_fixed_fd_install. Flags 0: O_CLOEXEC.
    io_uring_prep_rw(op_fixed_fd_install, sqe, static_cast<int>(direct_slot(fd)), nullptr, 0, 0);
    sqe->flags |= IOSQE_FIXED_FILE;
    ++stats_.fd_installs;
    return run_now(sqe);
}

int uring_backend::set_socket_option(int fd, int level, int name, int value) noexcept {
    if (!is_direct_fd(fd)) return backend::set_socket_option(fd, level, name, value);
    io_uring_sqe* sqe = get_sqe();
    // IORING_OP_URING_CMD with SOCKET_URING_OP_SETSOCKOPT; liburing 2.3 names none of its fields:
    // level and optname share addr, optlen is file_index's word, optval is addr3. `value` stays
    // on this stack until run_now returns, after the CQE.
    io_uring_prep_rw(IORING_OP_URING_CMD, sqe, static_cast<int>(direct_slot(fd)), nullptr, 0, 0);
    sqe->flags |= IOSQE_FIXED_FILE;
    sqe->cmd_op = socket_op_setsockopt;
    const std::uint32_t level_and_name[2] = {static_cast<std::uint32_t>(level), static_cast<std::uint32_t>(name)};
    std::memcpy(&sqe->addr, level_and_name, sizeof level_and_name);
    sqe->file_index = sizeof value;
    sqe->addr3 = reinterpret_cast<std::uintptr_t>(&value);
    return run_now(sqe);
}

bool uring_backend::post_wake(int target_ring_fd) noexcept {
    if (!features_.msg_ring || target_ring_fd < 0) return false;
    io_uring_sqe* sqe = get_sqe();
    // The target sees a CQE with user_data = wake_user_data; we get one for the send itself.
    io_uring_prep_msg_ring(sqe, target_ring_fd, 0, wake_user_data, 0);
    io_uring_sqe_set_data64(sqe, (std::uint64_t(unsigned(target_ring_fd)) << 32) | wake_sent_tag);
    ++in_flight_;
    return true;
}

void uring_backend::poll(std::int64_t timeout_ns) noexcept {
    // Parked ops wait for completions to make room. Should none come (every op in flight
    // waits for a peer that waits for a parked op), waiting on would be a deadlock: after
    // stall_ns without a completion, the oldest parked op goes in beyond the limit (the CQ
    // keeps an eighth in reserve, and IORING_FEAT_NODROP keeps any overflow in the kernel).
    constexpr std::int64_t stall_ns = 10'000'000;
    if (!parked_.empty() && (timeout_ns < 0 || timeout_ns > stall_ns)) timeout_ns = stall_ns;
    if (next_reaped_ < reaped_.size()) timeout_ns = 0;  // a withdraw collected CQEs: handle them now
    const std::uint64_t reaped_before = stats_.completions;
    int r;
    if (timeout_ns == 0) {
        // Submit and run deferred task work without waiting (DEFER_TASKRUN needs GETEVENTS).
        r = io_uring_submit_and_get_events(&ring_);
    } else {
        __kernel_timespec ts{};
        if (timeout_ns > 0) {
            ts.tv_sec = timeout_ns / 1'000'000'000;
            ts.tv_nsec = timeout_ns % 1'000'000'000;
        }
        io_uring_cqe* cqe = nullptr;
        r = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, timeout_ns > 0 ? &ts : nullptr, nullptr);
    }
    ++stats_.enter_calls;
    if (r > 0) stats_.sqes_submitted += static_cast<unsigned>(r);
    // -ETIME (timeout), -EINTR (signal) and -EBUSY (reap first) all mean: look at the CQ.
    reap();
    unpark();
    if (parked_.empty() || stats_.completions != reaped_before) {
        stalled_since_ns_ = 0;
        return;
    }
    const std::int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                 std::chrono::steady_clock::now().time_since_epoch()).count();
    if (stalled_since_ns_ == 0) {
        stalled_since_ns_ = now;
    } else if (now - stalled_since_ns_ >= stall_ns) {
        ++stats_.cq_overcommits;
        submit(parked_.pop());
        stalled_since_ns_ = now;
    }
}

void uring_backend::collect() noexcept {
    io_uring_cqe* cqe;
    unsigned head;
    unsigned count = 0;
    io_uring_for_each_cqe(&ring_, head, cqe) {
        reaped_.push_back({cqe->user_data, cqe->res, cqe->flags});
        ++count;
    }
    io_uring_cq_advance(&ring_, count);
    stats_.completions += count;
    if (ring_.cq.koverflow) stats_.cq_overflow = *ring_.cq.koverflow;
}

void uring_backend::reap() noexcept {
    // Copy CQEs out and free their slots before handling any: handling may start ops, and
    // starting may collect more (SQ full, then -EBUSY), or reap again (a handler that waits for
    // room). Those only append: CQEs are handled once each, in the order the kernel posted them
    // (a multishot recv's data too).
    collect();
    if (reaping_) return;  // the outer reap handles them, after what it already holds
    reaping_ = true;
    while (next_reaped_ < reaped_.size()) {
        const cqe_copy c = reaped_[next_reaped_++];  // a copy: handling may append, and so reallocate
        handle(c.user_data, c.res, c.flags);
    }
    reaped_.clear();
    next_reaped_ = 0;
    reaping_ = false;
}

void uring_backend::withdraw(op& o, op* heir) noexcept {
    if (o.parked == park_reason::cq_room) {  // never reached the kernel
        parked_.replace(o, heir);
        if (heir) heir->parked = park_reason::cq_room;
        return;
    }
    if (o.parked != park_reason::none || o.pending == 0) return backend::withdraw(o, heir);
    // In the kernel, which names o by its address in every CQE. Cancel it and wait here, only
    // collecting, until every CQE it owes is in reaped_ (a cancel ends a receive at once), then
    // rename them. Nothing is handled meanwhile: o's owner is in the middle of moving or dying.
    const bool was_reaping = std::exchange(reaping_, true);
    cancel(o);  // even if one was sent: that one may have come too early to end it
    const std::uint64_t mine = user_data_of(o);
    const auto collected = [&] {  // of o's CQEs still owed, those in reaped_ already
        unsigned n = 0;
        for (std::size_t i = next_reaped_; i < reaped_.size(); ++i) {
            const cqe_copy& c = reaped_[i];
            if ((c.user_data & ~cancel_tag) == mine) n += counted(c.user_data, c.flags);
        }
        return n;
    };
    for (;;) {
        collect();
        if (collected() >= o.pending) break;
        const int r = io_uring_submit_and_wait(&ring_, 1);  // the cancel goes in with this
        ++stats_.enter_calls;
        if (r > 0) stats_.sqes_submitted += static_cast<unsigned>(r);
    }
    ++stats_.withdrawals;
    const std::uint64_t to = heir ? user_data_of(*heir) : orphan_user_data | (o.bundle ? orphan_bundle : 0);
    for (std::size_t i = next_reaped_; i < reaped_.size(); ++i) {
        cqe_copy& c = reaped_[i];
        if ((c.user_data & ~cancel_tag) == mine) c.user_data = to | (c.user_data & cancel_tag);
    }
    if (!heir && o.multishot_live) {  // its last CQE is in reaped_, named an orphan: it has ended
        o.multishot_live = false;
        --multishot_live_;
    }
    reaping_ = was_reaping;
}

std::uint16_t uring_backend::take_buffers(bool bundle, std::int32_t res, std::uint32_t& flags) noexcept {
    if (!(flags & IORING_CQE_F_BUFFER)) return 0;
    if (bundle) {  // a bundle consumed as many ring entries as its bytes cover (none when res <= 0)
        if (res > 0) return take_bundle(static_cast<std::uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT), res);
        flags &= ~IORING_CQE_F_BUFFER;
        return 0;
    }
    --buffers_in_ring_;  // the kernel took a buffer from the ring
    ++stats_.buffers_in_use;
    if (res > 0) return 1;
    give_back(static_cast<std::uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT));  // and put nothing in it
    flags &= ~IORING_CQE_F_BUFFER;
    return 0;
}

void uring_backend::handle(std::uint64_t ud, std::int32_t res, std::uint32_t flags) noexcept {
    if (ud == wake_user_data) return;  // sent by another ring: never counted here
    // A zerocopy send's notification names the op like its result did, but carries no result.
    const bool notification = flags & IORING_CQE_F_NOTIF;
    const bool own = carries_result(ud, flags);
    const bool more = !counted(ud, flags);  // a multishot op goes on, or a notification follows
    if (!more) --in_flight_;
    if (ud == detached_user_data) return;
    if (ud == direct_close_user_data) {
        --slots_used_;  // counted at the CQE: until then an accept must not count on the slot
        return;
    }
    if (ud == run_now_user_data) {
        sync_res_ = res;
        sync_done_ = true;
        return;
    }
    if ((ud & 7) == wake_sent_tag) {
        if (res < 0) sink_.wake_failed(static_cast<int>(ud >> 32));
        return;
    }
    if ((ud & ~(cancel_tag | orphan_bundle)) == orphan_user_data) {  // nobody reads these (withdraw)
        if (own) {
            if (const std::uint16_t n = take_buffers(ud & orphan_bundle, res, flags))
                give_back_received(static_cast<std::uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT), n);
        }
        return;
    }
    op& o = op_from(ud);
    if (o.multishot_live && own && !(flags & IORING_CQE_F_MORE)) {  // its last CQE: it ended
        o.multishot_live = false;
        --multishot_live_;
    }
    if (notification) {
        ++stats_.zc_notifications;
        if (static_cast<std::uint32_t>(res) & IORING_NOTIF_USAGE_ZC_COPIED) ++stats_.zc_copied;
    }
    if (own) {
        const std::uint16_t n = take_buffers(o.bundle, res, flags);
        o.buffers = o.bundle ? n : 0;
        if (res == -ENOBUFS && o.select_buffer) ring_ran_dry();
        if (o.direct_accept) {
            if (!more && o.slot_reserved) {
                o.slot_reserved = false;
                --slots_reserved_;
            }
            // A slot (an accept cancelled after it succeeded brings one too: its owner closes it).
            // ENFILE would mean the count was wrong and the kernel closed that connection.
            if (res >= 0) {
                ++slots_used_;
                res = direct_fd(static_cast<unsigned>(res));
            }
        }
        if (o.kind == op_kind::close && is_direct_fd(o.fd)) --slots_used_;
        o.res = res;
        o.cqe_flags = flags;
    }
    if (o.sourced) {  // a feed: each result is news, and so is the op's end
        if (!more) --o.pending;
        sink_.deliver(o, own);
    } else if (more) {
        // A zerocopy send's result: the kernel still reads the caller's buffer, so the op
        // stays pending (and its frame suspended) until the notification.
    } else if (o.pending == 1) {
        if (o.zerocopy && o.res == -EOPNOTSUPP) {  // no zerocopy on this socket (AF_UNIX, say)
            o.zerocopy = false;
            if (!o.cancel_sent) {
                ++stats_.zc_fallbacks;
                if (static_cast<std::size_t>(o.fd) >= zc_refused_.size()) zc_refused_.resize(o.fd + 1);
                zc_refused_[o.fd] = true;  // later sends on this fd go plain at once
                return submit(o);          // the same op, as a plain send; still pending
            }
            o.res = -ECANCELED;
        }
        sink_.complete(o);  // the last CQE for o: its waiter may run
    } else {
        --o.pending;
    }
}

void uring_backend::unpark() noexcept {
    while (!parked_.empty() && room_for_ops()) submit(parked_.pop());
}

}  // namespace coring
