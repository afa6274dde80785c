#include <coring/backend.hpp>
#include <coring/epoll_backend.hpp>
#include <coring/log.hpp>
#include <coring/uring_backend.hpp>

#include <cstdlib>
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

std::unique_ptr<backend> make_backend(const backend_config& cfg, detail::completion_sink& sink, std::string* why) {
    if (cfg.kind == backend_kind::epoll) return std::make_unique<epoll_backend>(sink);
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
        return std::make_unique<epoll_backend>(sink);
    }
}

}  // namespace coring
