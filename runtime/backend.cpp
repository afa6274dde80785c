#include <coring/backend.hpp>
#include <coring/epoll_backend.hpp>
#include <coring/log.hpp>
#include <coring/uring_backend.hpp>

#include <cerrno>
#include <cstdlib>
#include <sys/socket.h>
#include <sys/mman.h>
#include <unistd.h>
#include <fstream>
#include <system_error>

namespace coring {

std::string_view to_string(backend_kind k) noexcept {
    switch (k) {
    case backend_kind::uring: return "uring";
    case backend_kind::epoll: return "epoll";
    case backend_kind::automatic: return "auto";
    }
    return "?";
}

result<backend_kind> parse_backend_kind(std::string_view text) noexcept {
    if (text == "uring" || text == "io_uring") return backend_kind::uring;
    if (text == "epoll") return backend_kind::epoll;
    if (text == "auto") return backend_kind::automatic;
    return std::errc::invalid_argument;
}

int backend::set_socket_option(int fd, int level, int name, int value) noexcept {
    return ::setsockopt(fd, level, name, &value, sizeof value) < 0 ? -errno : 0;
}

backend::~backend() {
    if (pool_) ::munmap(pool_, std::size_t{buffer_count_} * buffer_size_);
    for (const auto& [direct, fd] : user_fds_) ::close(fd);  // sockets that outlived their core
}

int backend::user_fd(int direct) noexcept {
    if (auto it = user_fds_.find(direct); it != user_fds_.end()) return it->second;
    const int made = install_fd(direct);
    if (made < 0) return -1;
    user_fds_.emplace(direct, made);
    return made;
}

void backend::drop_user_fd(int direct) noexcept {
    if (auto it = user_fds_.find(direct); it != user_fds_.end()) {
        ::close(it->second);
        user_fds_.erase(it);
    }
}

void backend::ensure_buffers() {
    if (pool_) return;
    if (buffer_count_ == 0 || buffer_count_ > 32768 || (buffer_count_ & (buffer_count_ - 1)) != 0 || buffer_size_ == 0)
        throw std::system_error(EINVAL, std::system_category(),
                                format("buffer pool: {} buffers of {} bytes (need a power of two up to 32768)",
                                       buffer_count_, buffer_size_));
    // Anonymous memory: pages are touched, and so counted, only when data lands in them.
    // MAP_NORESERVE: no swap is set aside for pages never touched; it also keeps the pool a
    // mapping of its own (the kernel merges only mappings with equal flags, and the frame slabs
    // next to it have none), so /proc/PID/smaps shows what the pool holds (benchmarks/ladder.py).
    void* mem = ::mmap(nullptr, std::size_t{buffer_count_} * buffer_size_, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED)
        throw std::system_error(errno, std::system_category(),
                                format("mmap buffer pool ({} x {} bytes)", buffer_count_, buffer_size_));
    pool_ = static_cast<std::byte*>(mem);
    links_.resize(buffer_count_);
    touched_.assign(buffer_count_, false);
    stats_.pool_bytes = std::uint64_t{buffer_count_} * buffer_size_;
    free_.resize(buffer_count_);
    for (unsigned i = 0; i < buffer_count_; ++i) free_[i] = static_cast<std::uint16_t>(buffer_count_ - 1 - i);
    low_water_ = free_.size();
    try {
        setup_buffers();
    } catch (...) {
        ::munmap(pool_, std::size_t{buffer_count_} * buffer_size_);
        pool_ = nullptr;
        throw;
    }
}

int backend::take_free() noexcept {
    if (free_.empty()) return -1;
    const std::uint16_t id = free_.back();
    free_.pop_back();
    low_water_ = std::min(low_water_, free_.size());
    if (touched_[id]) --dirty_;  // leaves the trim candidates
    else stats_.pool_touched_bytes += buffer_size_;
    touched_[id] = true;
    return id;
}

int backend::take_spare() noexcept {
    // Ids are 16 bits: pool and spares share them, so spares are bounded by the id space
    // (0xffff stays free: a receive feed's "no spare").
    std::uint16_t id;
    if (!free_spare_ids_.empty()) {
        id = free_spare_ids_.back();
        free_spare_ids_.pop_back();
    } else if (buffer_count_ + spares_.size() < 0xffff) {
        id = static_cast<std::uint16_t>(buffer_count_ + spares_.size());
        spares_.emplace_back();
        links_.emplace_back();
    } else {
        return -1;
    }
    spares_[id - buffer_count_].reset(new (std::nothrow) std::byte[buffer_size_]);
    if (!spares_[id - buffer_count_]) {
        free_spare_ids_.push_back(id);
        return -1;
    }
    ++stats_.spare_buffers;
    ++stats_.buffers_in_use;
    return id;
}

void backend::give_back(std::uint16_t id) noexcept {
    --stats_.buffers_in_use;
    if (id >= buffer_count_) {  // a spare: its memory goes back to the heap at once
        spares_[id - buffer_count_].reset();
        free_spare_ids_.push_back(id);
    } else if (!to_ring(id)) {
        put_free(id);
    }
    if (!buffer_waiters_.empty()) {  // the longest waiter goes now (it arms its receive again)
        op& o = buffer_waiters_.pop();
        o.res = 0;
        sink_.complete(o);
    }
}

void backend::wait_for_buffer(op& o) noexcept {
    ++stats_.buffer_waits;
    buffer_waiters_.push(o, park_reason::buffers);
}

void backend::stop_waiting_for_buffer(op& o) noexcept { buffer_waiters_.remove(o); }

void backend::cancel_queued(op_queue& q) noexcept {
    while (!q.empty()) {
        op& o = q.pop();
        o.res = -ECANCELED;
        sink_.complete(o);
    }
}

void backend::cancel_everything() noexcept { cancel_queued(buffer_waiters_); }

void backend::withdraw(op& o, op* heir) noexcept {
    if (o.parked != park_reason::buffers) return;
    buffer_waiters_.replace(o, heir);
    if (heir) heir->parked = park_reason::buffers;
}

bool backend::trim_buffers() noexcept {
    if (trim_from_ == 0) on_trim();  // a round starts
    // free_ is a stack: its bottom low_water_ entries were not taken since the round began (a
    // round that goes on keeps low_water_, which take_free lowers as buffers leave).
    const std::size_t cold = std::min(low_water_, free_.size());
    std::size_t i = trim_from_;
    for (unsigned trimmed = 0; i < cold && trimmed < trim_per_turn; ++i) {
        const std::uint16_t id = free_[i];
        if (!touched_[id]) continue;
        before_trim(id);
        ::madvise(buffer(id), buffer_size_, MADV_DONTNEED);  // not in the kernel's ring: nobody writes it
        touched_[id] = false;
        --dirty_;
        stats_.pool_touched_bytes -= buffer_size_;
        ++stats_.buffers_trimmed;
        ++trimmed;
    }
    if (i < cold && dirty_ > 0) {  // more to look at, and something left to trim
        trim_from_ = i;
        return true;
    }
    trim_from_ = 0;
    low_water_ = free_.size();
    return false;
}

bool fast_paths_default() noexcept {
    static const bool on = [] {
        const char* v = std::getenv("CORING_FAST_PATHS");
        return !(v && std::string_view{v} == "off");
    }();
    return on;
}

std::unique_ptr<backend> make_backend(const backend_config& cfg, detail::completion_sink& sink, std::string* why) {
    if (cfg.kind == backend_kind::epoll) return std::make_unique<epoll_backend>(cfg, sink);
    // CORING_DISABLE_URING=1 makes io_uring setup fail as if the kernel refused it (for tests
    // and for comparing on machines where both work).
    const char* disabled = std::getenv("CORING_DISABLE_URING");
    try {
        if (disabled && *disabled && *disabled != '0')
            throw std::system_error(EPERM, std::system_category(), "io_uring disabled by CORING_DISABLE_URING");
        return std::make_unique<uring_backend>(cfg, sink);
    } catch (const std::system_error& e) {
        if (cfg.kind == backend_kind::uring) throw;
        std::string reason = e.what();
        int sysctl = 0;  // kernel.io_uring_disabled (6.6+): 1 = root only, 2 = nobody
        if (std::ifstream("/proc/sys/kernel/io_uring_disabled") >> sysctl; sysctl != 0)
            reason += format(" (kernel.io_uring_disabled = {})", sysctl);
        if (why) *why = "io_uring unavailable: " + reason + "; using epoll";
        return std::make_unique<epoll_backend>(cfg, sink);
    }
}

}  // namespace coring
