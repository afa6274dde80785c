#include <coring/dns.hpp>

#include <coring/core.hpp>
#include <coring/readiness.hpp>
#include <coring/sync.hpp>
#include <coring/task_group.hpp>
#include <coring/timer.hpp>

#include <ares.h>

#include <algorithm>
#include <array>
#include <mutex>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <utility>

namespace coring::dns {

namespace {

class ares_category final : public std::error_category {
public:
    const char* name() const noexcept override { return "c-ares"; }
    std::string message(int status) const override { return ares_strerror(status); }
};

enum direction : int { reading = 0, writing = 1 };

// One resolve() call: its c-ares channel, the sockets c-ares asked us to watch, and the answer.
// Lives in resolve()'s frame; c-ares's callbacks find it through their void* argument.
struct query {
    struct watch {
        int fd = -1;
        // Which watch of this query: c-ares may close a socket and open another with the same
        // number inside one ares_process_fd, and the old socket's pump must not take the new
        // one's watch (its wish's generations start again) for its own.
        unsigned serial = 0;
        readiness_wish wishes[2];  // c-ares's, per direction
    };

    ares_channel channel = nullptr;
    std::uint16_t port = 0;
    std::vector<watch> watched;  // c-ares opens at most one socket per server
    unsigned watches_made = 0;
    task_group tasks;            // the pumps and the retry timer
    event finished;
    bool done = false;
    int status = ARES_SUCCESS;
    std::vector<address> found;

    watch* find(int fd) noexcept {
        auto it = std::find_if(watched.begin(), watched.end(), [fd](const watch& w) { return w.fd == fd; });
        return it == watched.end() ? nullptr : &*it;
    }
    // c-ares's sock_state_cb: start or stop watching fd in each direction. Both off means c-ares
    // closes fd right after this returns: the waits must be gone and the fd forgotten first
    // (readiness.hpp's contract; on epoll the cancel unparks the wait at once).
    void want(int fd, bool read, bool write);
    task<> pump(int fd, unsigned serial, int d, unsigned generation);
    task<> retries();
    void answer(int st, ares_addrinfo* info) noexcept;
};

void query::want(int fd, bool read, bool write) {
    watch* w = find(fd);
    if (!w) {
        if (!read && !write) return;
        w = &watched.emplace_back();
        w->fd = fd;
        w->serial = ++watches_made;
    }
    for (const int d : {reading, writing})
        if (const unsigned generation = w->wishes[d].set(d == reading ? read : write))
            tasks.spawn(pump(fd, w->serial, d, generation));
    if (!read && !write) {
        core::current().io().forget_fd(fd);
        watched.erase(watched.begin() + (w - watched.data()));
    }
}

task<> query::pump(int fd, unsigned serial, int d, unsigned generation) {
    // By fd each time: `watched` may move when c-ares opens another socket.
    auto mine = [&]() -> watch* {
        watch* w = find(fd);
        return w && w->serial == serial ? w : nullptr;
    };
    auto current = [&] {
        const watch* w = mine();
        return !done && w && w->wishes[d].current(generation);
    };
    if (!current()) co_return;
    mine()->wishes[d].enter();
    while (current()) {
        auto ready = co_await wait_ready(fd, d == writing);
        if (!ready || !current()) break;
        // c-ares reads (or writes) the socket itself; it may close it, or finish the query,
        // from inside this call.
        ares_process_fd(channel, d == reading ? fd : ARES_SOCKET_BAD, d == writing ? fd : ARES_SOCKET_BAD);
    }
    if (watch* w = mine()) w->wishes[d].leave(generation);
}

task<> query::retries() {
    // c-ares retransmits, moves to the next server and gives up only when asked to process
    // with no socket ready once its own timeout has passed.
    while (!done) {
        timeval limit{1, 0};
        timeval tv{};
        const timeval* next = ares_timeout(channel, &limit, &tv);
        const auto wait = std::chrono::seconds{next->tv_sec} + std::chrono::microseconds{next->tv_usec};
        auto woken = co_await with_timeout(std::chrono::duration_cast<std::chrono::nanoseconds>(wait), finished.wait());
        if (done) break;
        if (!woken && woken.error() != std::errc::timed_out) break;  // cancelled
        ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    }
}

void query::answer(int st, ares_addrinfo* info) noexcept {
    status = st;
    if (st == ARES_SUCCESS && info) {
        for (const ares_addrinfo_node* n = info->nodes; n; n = n->ai_next) {
            if (n->ai_family != AF_INET && n->ai_family != AF_INET6) continue;
            found.push_back(address::from_sockaddr(n->ai_addr, n->ai_addrlen).with_port(port));
        }
        if (found.empty()) status = ARES_ENODATA;
    }
    if (info) ares_freeaddrinfo(info);
    done = true;
    finished.set();
}

void init_library() {
    static std::once_flag once;
    std::call_once(once, [] {
        if (const int st = ares_library_init(ARES_LIB_INIT_ALL); st != ARES_SUCCESS)
            throw std::system_error(st, category(), "ares_library_init");
    });
}

}  // namespace

const std::error_category& category() noexcept {
    static const ares_category c;
    return c;
}

task<result<std::vector<address>>> resolve(std::string host, std::uint16_t port, options opts) {
    init_library();
    query q;
    q.port = port;
    ares_options o{};
    o.sock_state_cb = [](void* data, ares_socket_t fd, int read, int write) {
        static_cast<query*>(data)->want(fd, read != 0, write != 0);
    };
    o.sock_state_cb_data = &q;
    o.timeout = 1000;  // ms per try: ARES_OPT_TIMEOUTMS
    o.tries = std::max(1, opts.tries);
    char lookups[] = "fb";  // /etc/hosts, then DNS: what the system's resolver does
    o.lookups = lookups;
    const int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_LOOKUPS;
    if (const int st = ares_init_options(&q.channel, &o, mask); st != ARES_SUCCESS)
        co_return std::error_code{st, category()};
    if (!opts.servers.empty()) {
        if (const int st = ares_set_servers_ports_csv(q.channel, opts.servers.c_str()); st != ARES_SUCCESS) {
            ares_destroy(q.channel);
            co_return std::error_code{st, category()};
        }
    }
    ares_addrinfo_hints hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;  // one entry per address, not one per socket type
    ares_getaddrinfo(
        q.channel, host.c_str(), nullptr, &hints,
        [](void* arg, int st, int, ares_addrinfo* info) { static_cast<query*>(arg)->answer(st, info); }, &q);
    std::error_code failed;
    if (!q.done) {  // else the answer came inside ares_getaddrinfo (/etc/hosts, a numeric host)
        q.tasks.spawn(q.retries());
        auto waited = co_await with_timeout(opts.timeout, q.finished.wait());  // set only when done
        if (!waited) failed = waited.error();  // ETIMEDOUT, or ECANCELED
    }
    // Everything stops before the channel goes: ares_cancel answers the query (ECANCELLED),
    // the pumps and the timer end, then ares_destroy closes the sockets (each is forgotten
    // first, through want()).
    if (!q.done) ares_cancel(q.channel);
    q.done = true;
    q.finished.set();
    for (auto& w : q.watched)
        for (auto& wish : w.wishes) (void)wish.set(false);
    co_await q.tasks.cancel_and_join();
    ares_destroy(q.channel);
    if (failed) co_return failed;
    if (q.status != ARES_SUCCESS) co_return std::error_code{q.status, category()};
    co_return std::move(q.found);
}

}  // namespace coring::dns
