// coring-load: a verifying load generator built on coring. `echo` mode: N connections, each with
// up to D messages in flight (closed loop) or sending on a fixed schedule (open loop, --rate),
// every reply checked byte for byte. --procs forks full runtimes to go past one process's fd
// limit; --bind-range spreads source addresses over 127.0.0.0/8 to go past the port range.
#include "../common/cli.hpp"
#include "load.hpp"
#include "report.hpp"

#include <coring/log.hpp>

#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <mutex>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace coring;
using namespace coring::load;

namespace {

constexpr std::string_view usage =
    "usage: coring-load [echo] [flags]\n"
    "Verifying load generator: every reply is checked byte for byte against the message it answers.\n"
    "  --target ADDR          server (default 127.0.0.1:7000)\n"
    "  --protocol echo|http|ws|pubsub|nats  echo (default): every message comes back as sent; http: keep-alive GETs\n"
    "                         of --path (default /plaintext), each answer 200 with exactly --expect as its\n"
    "                         body (default Hello, World!), --depth pipelines, --size does not apply;\n"
    "                         ws: a WebSocket to --path (default /ws/echo), binary messages of --size\n"
    "                         echoed and checked byte for byte; pubsub (RESP: redis-server, coring-pubsub)\n"
    "                         and nats (nats-server): subscribers and publishers, below\n"
    "  --conns N              connections in all (default 64)\n"
    "  --depth D              messages in flight per connection, closed loop (default 1)\n"
    "  --size S | MIN:MAX     message bytes, fixed or a range per message (default 64)\n"
    "  --duration SECONDS     measured time (default 10); Ctrl-C (or TERM, HUP) ends it early: the replies\n"
    "                         owed come in and the report covers the part that ran\n"
    "  --warmup SECONDS       unmeasured time once every connection is up (default 1)\n"
    "  --rate R               open loop: R requests/s in all, latency from the intended send time; sends\n"
    "                         the schedule owed and never made are reported (unsent) and count as late\n"
    "  --procs P              P processes, each a full runtime with its share of the connections (default 1;\n"
    "                         pub/sub: of the subscribers and publishers, sharing one board in shared memory)\n"
    "  --bind-range A-B|CIDR  spread source addresses over IPv4 A..B (or a CIDR such as 127.0.0.0/8)\n"
    "  --connect-parallel N   connects in flight per core (default 256)\n"
    "  --reply-timeout MS     a reply slower than this is an error (default 10000)\n"
    "  --json FILE            write the settings and every result to FILE\n"
    "  --idle N               first hold N more connections, each proven by an echo; once all are up\n"
    "                         (every process), verify every K-th again (--verify-every K, default 1),\n"
    "                         print 'holding', then run the active connections while they idle\n"
    "  --quiet                no progress line each second\n"
    "pubsub and nats (every delivery verified: lost, duplicated and reordered must all be 0):\n"
    "  --subscribers S        subscribers in all (default 100); subscriber i takes channel i % K\n"
    "  --channels K           channels \"ch<N>\" (NATS: \"ch.<N>\"), default 10\n"
    "  --patterns             PSUBSCRIBE \"*h<N>\" (NATS: SUB \"*.<N>\"): a pattern matching exactly that channel\n"
    "  --publishers P         publishers in all (default 1), round-robin over the channels\n"
    "  --rate R               open loop: R publishes/s in all; otherwise each publisher keeps --depth\n"
    "                         publishes unanswered (NATS: a PING after each window, its PONG the answer)\n"
    "  --size BYTES           payload (default 64, at least 24: publisher, channel, sequence, send time)\n"
    "  --slow N,SECS          the last N subscribers stop reading SECS s into publishing, until it ends;\n"
    "                         reported apart, with the ones the server cut\n"
    "  --steps N              with --rate: N measured windows of --duration, step k at rate x F^k\n"
    "                         (--step-factor F, default 2), each followed by a pause of --step-limit MS\n"
    "                         (default 1000); the run stops after the first step where under 99% of\n"
    "                         its deliveries came within MS of their send time (its p99 is above MS)\n"
    "  --setup-limit SECS     every subscriber confirmed within SECS, or the run fails (default 120)\n"
    "  --drain-quiet MS       after publishing, stop waiting for deliveries after MS ms without one (2000)\n"
    "  --announce-window      log 'measuring' and 'measured' as the window opens and closes\n"
    "  (always logged: 'subscribed S subscribers (T s)' once every one is confirmed, and each step's verdict)\n"
    "Prints a summary and one key=value line; exit 0 when every message was verified, 1 when any\n"
    "error happened (the result is then partial), 2 on a bad flag.\n"
    "coring-load runs on one core unless --cores says otherwise (the runtime's default of 0 does not apply).";

std::uint32_t parse_ipv4(std::string_view flag, std::string_view v) {
    in_addr a{};
    if (::inet_pton(AF_INET, std::string{v}.c_str(), &a) != 1) throw std::invalid_argument(format("{} {}: not an IPv4 address", flag, v));
    return ntohl(a.s_addr);
}

void parse_bind_range(std::string_view flag, std::string_view v, settings& s) {
    if (const auto slash = v.find('/'); slash != std::string_view::npos) {
        const auto bits = static_cast<unsigned>(apps::count_flag(flag, v.substr(slash + 1), 8, 32));
        const std::uint32_t mask = bits == 32 ? ~0u : ~((1u << (32 - bits)) - 1);
        const std::uint32_t net = parse_ipv4(flag, v.substr(0, slash)) & mask;
        // Skip the network's first address (127.0.0.0 is not usable); keep the rest.
        s.source_first = net + (bits < 31 ? 1 : 0);
        s.source_count = bits == 32 ? 1 : (~mask) - (bits < 31 ? 1 : 0);
    } else {
        const auto dash = v.find('-');
        if (dash == std::string_view::npos) throw std::invalid_argument(format("{} {}: expected A-B or a CIDR", flag, v));
        const std::uint32_t a = parse_ipv4(flag, v.substr(0, dash)), b = parse_ipv4(flag, v.substr(dash + 1));
        if (b < a) throw std::invalid_argument(format("{} {}: the range ends before it starts", flag, v));
        s.source_first = a;
        s.source_count = b - a + 1;
    }
    if ((s.source_first >> 24) != 127 || ((s.source_first + s.source_count - 1) >> 24) != 127)
        throw std::invalid_argument(format("{} {}: loopback (127.0.0.0/8) only", flag, v));
}

// Part k of n of the range [first, first + count): {its first, its count}.
std::pair<std::uint64_t, std::uint64_t> part(std::uint64_t first, std::uint64_t count, std::uint64_t k, std::uint64_t n) {
    const std::uint64_t base = count / n, extra = count % n;
    return {first + k * base + std::min(k, extra), base + (k < extra ? 1 : 0)};
}

// Runs this process's share (active connections, then idle ones; pub/sub: its subscribers and
// publishers, `pubsub_part` of them), split over the runtime's cores.
int run_here(const options& o, runtime_options runtime, std::pair<std::uint64_t, std::uint64_t> active,
             std::pair<std::uint64_t, std::uint64_t> idle, results* total, live_counters* live, pubsub_board* board,
             std::pair<unsigned, unsigned> pubsub_part) {
    const unsigned cores = runtime.cores ? runtime.cores : available_cpus();
    std::vector<results> per_core(cores);
    if (board) {
        const auto [proc, procs] = pubsub_part;
        const auto subs = part(0, o.s.pubsub.subscribers, proc, procs);
        const auto pubs = part(0, o.s.pubsub.publishers, proc, procs);
        const int rc = run(runtime, [&](core& c) -> task<> {
            const unsigned k = c.id();
            const auto [sub_from, sub_count] = part(subs.first, subs.second, k, cores);
            const auto [pub_from, pub_count] = part(pubs.first, pubs.second, k, cores);
            per_core[k].backend = std::string{to_string(c.kind())};
            return run_pubsub_share(o.s, *board, sub_from, sub_count, pub_from, pub_count, &per_core[k], live);
        });
        for (auto& r : per_core) total->merge(r);
        const std::int64_t start = board->start_ns.load(std::memory_order_acquire);
        if (start != never) total->setup_seconds = static_cast<double>(start - board->created_ns) / 1e9;
        return rc;
    }
    const int rc = run(runtime, [&](core& c) -> task<> {
        const unsigned k = c.id();
        const auto [from, count] = part(active.first, active.second, k, cores);
        const auto [idle_from, idle_count] = part(idle.first, idle.second, k, cores);
        per_core[k].backend = std::string{to_string(c.kind())};
        return run_share(o.s, from, count, &per_core[k], live, idle_from, idle_count);
    });
    for (auto& r : per_core) total->merge(r);
    return rc;
}

bool is_pubsub(load::protocol p) { return p == load::protocol::pubsub || p == load::protocol::nats; }

// Pub/sub: "subscribed" once every subscriber of every process is in (a script reads the
// server's memory then), and each step's verdict as it is judged.
void print_pubsub_milestones(const options& o, pubsub_board& board, bool& subscribed, unsigned& judged) {
    const std::int64_t start = board.start_ns.load(std::memory_order_acquire);
    if (!subscribed && start != never) {
        subscribed = true;
        std::fprintf(stderr, "coring-load: subscribed %u subscribers (%.1f s)\n", o.s.pubsub.subscribers,
                     static_cast<double>(start - board.created_ns) / 1e9);
    }
    for (; judged < o.s.pubsub.steps; ++judged) {
        pubsub_step& st = board.steps[judged];
        const int verdict = st.verdict.load(std::memory_order_acquire);
        if (verdict == 0) break;
        const std::uint64_t expected = st.expected.load(), on_time = st.on_time.load();
        std::fprintf(stderr, "coring-load: step %u at %.0f publishes/s: %llu published, %.2f%% of %llu deliveries within %lld ms%s\n",
                     judged, o.s.rate * std::pow(o.s.pubsub.step_factor, judged), static_cast<unsigned long long>(st.published.load()),
                     expected ? 100.0 * static_cast<double>(on_time) / static_cast<double>(expected) : 0.0,
                     static_cast<unsigned long long>(expected), static_cast<long long>(o.s.pubsub.step_limit.count()),
                     verdict == 2 ? "; the run stops here" : "");
        if (verdict == 2) {
            judged = o.s.pubsub.steps;
            break;
        }
    }
}

void print_progress(const options& o, live_counters& live, const std::atomic<bool>& done, pubsub_board* board) {
    std::uint64_t last = 0, last_published = 0;
    const auto start = std::chrono::steady_clock::now();
    bool held = o.s.idle == 0;
    bool subscribed = false;
    unsigned judged = 0;
    for (int second = 1; !done.load(); ++second) {
        const auto due = start + std::chrono::seconds{second};
        while (!done.load() && std::chrono::steady_clock::now() < due) {
            std::this_thread::sleep_for(std::chrono::milliseconds{20});
            if (!held && live.idle_checked.load() >= idle_sampled(o.s)) {  // a script waits for this line
                held = true;
                std::fprintf(stderr, "coring-load: holding %llu idle connections (%.1f s)\n",
                             static_cast<unsigned long long>(o.s.idle),
                             std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
            }
            if (board) print_pubsub_milestones(o, *board, subscribed, judged);
        }
        if (done.load()) break;
        if (o.quiet) continue;
        if (!held) {
            std::fprintf(stderr, "coring-load: %3ds  idle connections up %llu/%llu, verified %llu/%llu, errors %llu\n", second,
                         static_cast<unsigned long long>(live.idle_settled.load()), static_cast<unsigned long long>(o.s.idle),
                         static_cast<unsigned long long>(live.idle_checked.load()),
                         static_cast<unsigned long long>(idle_sampled(o.s)),
                         static_cast<unsigned long long>(live.errors.load()));
            continue;
        }
        const std::uint64_t m = live.messages.load(std::memory_order_relaxed);
        if (is_pubsub(o.s.proto)) {
            const std::uint64_t p = live.published.load(std::memory_order_relaxed);
            std::fprintf(stderr, "coring-load: %3ds  deliveries/s %9llu  publishes/s %8llu  p99 %8s us  errors %llu  connected %llu/%u\n",
                         second, static_cast<unsigned long long>(m - last), static_cast<unsigned long long>(p - last_published),
                         us(live.p99_ns.exchange(0)).c_str(), static_cast<unsigned long long>(live.errors.load(std::memory_order_relaxed)),
                         static_cast<unsigned long long>(live.connected.load(std::memory_order_relaxed)),
                         o.s.pubsub.subscribers + o.s.pubsub.publishers);
            last = m;
            last_published = p;
            continue;
        }
        std::fprintf(stderr, "coring-load: %3ds  msgs/s %9llu  p99 %8s us  errors %llu  connected %llu/%u\n", second,
                     static_cast<unsigned long long>(m - last), us(live.p99_ns.exchange(0)).c_str(),
                     static_cast<unsigned long long>(live.errors.load(std::memory_order_relaxed)),
                     static_cast<unsigned long long>(live.connected.load(std::memory_order_relaxed)), o.s.conns);
        last = m;
    }
}

// What /proc says, as a number (0 when unreadable): the first field of a file, or a meminfo key.
std::uint64_t proc_number(const char* path, const char* key = nullptr) {
    std::ifstream f{path};
    std::string word;
    if (!key) {
        std::uint64_t v = 0;
        f >> v;
        return v;
    }
    while (f >> word) {
        if (word == key) {
            std::uint64_t v = 0;
            f >> v;
            return v;
        }
    }
    return 0;
}

// Checks first, so a big run stops with a clear message instead of failing half way. The
// target is on this machine (loopback), so both ends of every connection count here.
bool preflight(const options& o, unsigned long fd_limit) {
    const std::uint64_t conns = is_pubsub(o.s.proto) ? o.s.pubsub.subscribers + o.s.pubsub.publishers : o.s.conns + o.s.idle;
    const std::uint64_t fds_needed = 2 * conns + 1000;
    const std::uint64_t file_max = proc_number("/proc/sys/fs/file-max");
    const std::uint64_t files_open = proc_number("/proc/sys/fs/file-nr");
    if (file_max && fds_needed > file_max - std::min(file_max, files_open)) {
        std::fprintf(stderr, "coring-load: %llu connections need about %llu file descriptors on this machine (both ends), "
                     "but fs.file-max (%llu) leaves %llu: lower --conns/--idle or raise fs.file-max\n",
                     static_cast<unsigned long long>(conns), static_cast<unsigned long long>(fds_needed),
                     static_cast<unsigned long long>(file_max), static_cast<unsigned long long>(file_max - std::min(file_max, files_open)));
        return false;
    }
    // ~12 KiB per connection, both ends: measured ~10.5 KiB of slab for the two sockets, plus
    // both user sides.
    const std::uint64_t mem_needed_kib = conns * 12;
    const std::uint64_t mem_available_kib = proc_number("/proc/meminfo", "MemAvailable:");
    if (mem_available_kib && mem_needed_kib > mem_available_kib * 9 / 10) {
        std::fprintf(stderr, "coring-load: %llu connections need about %llu MiB (both ends, ~12 KiB each), but only %llu MiB "
                     "is available: lower --conns/--idle\n",
                     static_cast<unsigned long long>(conns), static_cast<unsigned long long>(mem_needed_kib / 1024),
                     static_cast<unsigned long long>(mem_available_kib / 1024));
        return false;
    }
    const std::uint64_t per_proc = (conns + o.procs - 1) / o.procs;
    if (per_proc + 64 > fd_limit) {
        std::fprintf(stderr, "coring-load: %llu connections per process, but a process may open %lu files: use --procs %llu "
                     "or more\n",
                     static_cast<unsigned long long>(per_proc), fd_limit,
                     static_cast<unsigned long long>((conns + fd_limit - 65) / (fd_limit - 64)));
        return false;
    }
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    // Block the stop signals (INT, TERM, HUP) before any thread starts, so every thread inherits
    // the block and run() alone receives them (through its signalfd).
    hold_stop_signals();
    const sigset_t stop = stop_signals();

    if (argc > 1 && std::string_view{argv[1]} == "echo") {  // the mode word is optional: echo is the only one yet
        argv[1] = argv[0];
        ++argv;
        --argc;
    }
    runtime_options runtime;
    runtime.quiet = true;
    runtime.cores = 1;
    runtime.drain_timeout = std::chrono::milliseconds{2000};  // after a stop signal: the replies and deliveries owed come in
    const unsigned long fd_limit = raise_fd_limit();  // every connection is an fd
    options o;
    apps::parse_flags(argc, argv, usage, runtime, [&](std::string_view flag, std::string_view v) {
        if (flag == "--target") o.s.target = apps::address_flag(flag, v);
        else if (flag == "--protocol") {
            if (v == "echo") o.s.proto = load::protocol::echo;
            else if (v == "http") o.s.proto = load::protocol::http;
            else if (v == "ws") o.s.proto = load::protocol::ws;
            else if (v == "pubsub") o.s.proto = load::protocol::pubsub;
            else if (v == "nats") o.s.proto = load::protocol::nats;
            else throw std::invalid_argument(format("--protocol {}: expected echo, http, ws, pubsub or nats", v));
        } else if (flag == "--path") {
            if (v.empty() || v.front() != '/' || v.find_first_of(" \r\n") != std::string_view::npos)
                throw std::invalid_argument(format("--path {}: expected an absolute path without spaces", v));
            o.s.http_path = o.s.ws_path = std::string{v};
        } else if (flag == "--expect") o.s.http_expect = std::string{v};
        else if (flag == "--conns") o.s.conns = static_cast<unsigned>(apps::count_flag(flag, v, 1, 10'000'000));
        else if (flag == "--depth") o.s.depth = static_cast<unsigned>(apps::count_flag(flag, v, 1, 4096));
        else if (flag == "--size") {
            const auto colon = v.find(':');
            o.s.size_min = static_cast<std::size_t>(apps::count_flag(flag, v.substr(0, colon), 1, 16 << 20));
            o.s.size_max = colon == std::string_view::npos ? o.s.size_min
                                                            : static_cast<std::size_t>(apps::count_flag(flag, v.substr(colon + 1), 1, 16 << 20));
            if (o.s.size_max < o.s.size_min) throw std::invalid_argument(format("--size {}: MAX below MIN", v));
        } else if (flag == "--duration") o.s.duration = apps::number_flag(flag, v, 0.1, 86400);
        else if (flag == "--warmup") o.s.warmup = apps::number_flag(flag, v, 0, 3600);
        else if (flag == "--rate") o.s.rate = apps::number_flag(flag, v, 0, 1e9);
        else if (flag == "--procs") o.procs = static_cast<unsigned>(apps::count_flag(flag, v, 1, 256));
        else if (flag == "--bind-range") parse_bind_range(flag, v, o.s);
        else if (flag == "--connect-parallel") o.s.connect_parallel = static_cast<unsigned>(apps::count_flag(flag, v, 1, 1'000'000));
        else if (flag == "--reply-timeout") o.s.reply_timeout = std::chrono::milliseconds{static_cast<long>(apps::number_flag(flag, v, 1, 3'600'000))};
        else if (flag == "--json") o.json = std::string{v};
        else if (flag == "--idle") o.s.idle = static_cast<std::uint64_t>(apps::count_flag(flag, v, 0, 10'000'000));
        else if (flag == "--verify-every") o.s.verify_stride = static_cast<std::uint64_t>(apps::count_flag(flag, v, 1, 10'000'000));
        else if (flag == "--subscribers") o.s.pubsub.subscribers = static_cast<unsigned>(apps::count_flag(flag, v, 1, 1'000'000));
        else if (flag == "--channels") o.s.pubsub.channels = static_cast<unsigned>(apps::count_flag(flag, v, 1, 1'000'000));
        else if (flag == "--patterns") o.s.pubsub.patterns = true;
        else if (flag == "--publishers") o.s.pubsub.publishers = static_cast<unsigned>(apps::count_flag(flag, v, 1, 10'000));
        else if (flag == "--setup-limit") o.s.pubsub.setup_limit = std::chrono::seconds{static_cast<long>(apps::number_flag(flag, v, 1, 86400))};
        else if (flag == "--steps") o.s.pubsub.steps = static_cast<unsigned>(apps::count_flag(flag, v, 1, 64));
        else if (flag == "--step-factor") o.s.pubsub.step_factor = apps::number_flag(flag, v, 1.01, 100);
        else if (flag == "--step-limit") o.s.pubsub.step_limit = std::chrono::milliseconds{static_cast<long>(apps::number_flag(flag, v, 1, 600'000))};
        else if (flag == "--drain-quiet") o.s.pubsub.drain_quiet = std::chrono::milliseconds{static_cast<long>(apps::number_flag(flag, v, 1, 600'000))};
        else if (flag == "--slow") {
            const auto comma = v.find(',');
            if (comma == std::string_view::npos) throw std::invalid_argument(format("--slow {}: expected N,SECS", v));
            o.s.pubsub.slow = static_cast<unsigned>(apps::count_flag(flag, v.substr(0, comma), 0, 1'000'000));
            o.s.pubsub.slow_after = apps::number_flag(flag, v.substr(comma + 1), 0, 86400);
        }
        else if (flag == "--quiet") o.quiet = true;
        else if (flag == "--announce-window") o.s.announce_window = true;
        else return false;
        return true;
    }, {"--quiet", "--announce-window", "--patterns"});
    if (is_pubsub(o.s.proto)) {
        if (o.s.pubsub.steps > 1 && (o.s.rate <= 0 || o.s.pubsub.slow > 0)) {
            std::fprintf(stderr, "coring-load: --steps needs an open loop (--rate) and no --slow subscribers\n");
            return 2;
        }
        if (o.s.size_min != o.s.size_max || o.s.size_min < pubsub_header_bytes) {
            std::fprintf(stderr, "coring-load: --protocol %s takes one --size of at least %zu bytes\n", protocol_name(o.s.proto),
                         pubsub_header_bytes);
            return 2;
        }
        if (o.s.pubsub.slow > o.s.pubsub.subscribers) {
            std::fprintf(stderr, "coring-load: --slow %u of %u subscribers\n", o.s.pubsub.slow, o.s.pubsub.subscribers);
            return 2;
        }
    }
    if (o.s.target.family() != AF_INET && o.s.source_count) {
        std::fprintf(stderr, "coring-load: --bind-range needs an IPv4 target\n");
        return 2;
    }
    if (!preflight(o, fd_limit)) return 2;

    // Live counters in memory every process shares, for the progress line.
    void* shared = ::mmap(nullptr, sizeof(live_counters), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) {
        std::fprintf(stderr, "coring-load: mmap: %s\n", std::strerror(errno));
        return 2;
    }
    auto* live = new (shared) live_counters{};
    std::atomic<bool> done{false};
    std::thread progress;
    // Pub/sub: one board for every process (its counters are in shared memory).
    std::unique_ptr<pubsub_board> board;
    if (is_pubsub(o.s.proto)) board = std::make_unique<pubsub_board>(o.s);
    // Started only once every child is forked: a child forked while this thread holds a lock
    // (malloc's, stdio's, the sanitizer allocator's) would wait on it forever.
    const auto start_progress = [&] {
        if (!o.quiet || o.s.idle > 0 || board) progress = std::thread{[&] { print_progress(o, *live, done, board.get()); }};
    };

    results total;
    bool failed = false;
    if (o.procs == 1) {
        start_progress();
        failed = run_here(o, runtime, {0, o.s.conns}, {o.s.conns, o.s.idle}, &total, live, board.get(), {0, 1}) != 0;
    } else {
        // Each child runs its share and writes its results as one line into its pipe.
        struct child {
            pid_t pid;
            int out;
        };
        std::vector<child> children;
        for (unsigned p = 0; p < o.procs; ++p) {
            int fds[2];
            if (::pipe2(fds, O_CLOEXEC) != 0) {
                std::fprintf(stderr, "coring-load: pipe: %s\n", std::strerror(errno));
                failed = true;
                break;
            }
            const pid_t pid = ::fork();
            if (pid == 0) {
                ::close(fds[0]);
                ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // a parent killed outright takes its children along
                results mine;
                options here = o;  // one process says when the window opens and closes
                here.s.announce_window = o.s.announce_window && p == 0;
                const int rc = run_here(here, runtime, part(0, o.s.conns, p, o.procs), part(o.s.conns, o.s.idle, p, o.procs),
                                        &mine, live, board.get(), {p, o.procs});
                const std::string line = mine.serialize() + "\n";
                [[maybe_unused]] ssize_t w = ::write(fds[1], line.data(), line.size());
                ::_exit(rc == 0 ? 0 : 1);
            }
            ::close(fds[1]);
            if (pid < 0) {
                std::fprintf(stderr, "coring-load: fork: %s\n", std::strerror(errno));
                ::close(fds[0]);
                failed = true;
                break;
            }
            children.push_back({pid, fds[0]});
        }
        start_progress();
        // The stop signals are blocked here (main's first line): one sent to this process alone
        // (kill -TERM) is passed on to every child by pid, which stops its run early and still
        // reports; a terminal's Ctrl-C reached them all already.
        std::thread relay{[&children, &stop, &done] {
            const timespec tick{0, 100'000'000};
            while (!done) {
                siginfo_t info{};
                const int sig = ::sigtimedwait(&stop, &info, &tick);
                if (sig > 0 && info.si_pid != 0)
                    for (const child& c : children) ::kill(c.pid, sig);  // our own children
            }
        }};
        for (std::size_t p = 0; p < children.size(); ++p) {
            std::string line;
            char buf[65536];
            for (ssize_t n; (n = ::read(children[p].out, buf, sizeof buf)) != 0;) {
                if (n < 0 && errno == EINTR) continue;
                if (n < 0) break;
                line.append(buf, static_cast<std::size_t>(n));
            }
            ::close(children[p].out);
            int status = 0;
            while (::waitpid(children[p].pid, &status, 0) < 0 && errno == EINTR) {
            }
            results r;
            if (!r.deserialize(line)) {
                std::fprintf(stderr, "coring-load: process %zu (pid %d) ended without a result (%s)\n", p,
                             static_cast<int>(children[p].pid),
                             WIFSIGNALED(status) ? strsignal(WTERMSIG(status)) : format("exit {}", WEXITSTATUS(status)).c_str());
                failed = true;
                continue;
            }
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = true;
            total.merge(r);
        }
        done = true;
        relay.join();
    }
    done = true;
    if (progress.joinable()) progress.join();
    if (is_pubsub(o.s.proto)) return report_pubsub(o, total, failed, board.get());

    return report(o, runtime, total, failed);
}
