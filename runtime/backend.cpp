#include <coring/backend.hpp>
#include <coring/epoll_backend.hpp>
#include <coring/log.hpp>
#include <coring/uring_backend.hpp>

#include <cstdlib>
#include <sys/mman.h>
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

backend::~backend() {
    if (pool_) ::munmap(pool_, std::size_t{buffer_count_} * buffer_size_);
}

void backend::ensure_buffers() {
    if (pool_) return;
    if (buffer_count_ == 0 || buffer_count_ > 32768 || (buffer_count_ & (buffer_count_ - 1)) != 0 || buffer_size_ == 0)
        throw std::system_error(EINVAL, std::system_category(),
                                format("buffer pool: {} buffers of {} bytes (need a power of two up to 32768)",
                                       buffer_count_, buffer_size_));
    // Anonymous memory: pages are touched, and so counted, only when data lands in them.
    void* mem = ::mmap(nullptr, std::size_t{buffer_count_} * buffer_size_, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) throw std::system_error(errno, std::system_category(), "mmap buffer pool");
    pool_ = static_cast<std::byte*>(mem);
    links_.resize(buffer_count_);
    try {
        setup_buffers();
    } catch (...) {
        ::munmap(pool_, std::size_t{buffer_count_} * buffer_size_);
        pool_ = nullptr;
        throw;
    }
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
