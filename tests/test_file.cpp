// Files on both backends: open beneath a root, stat, read_at, close; escapes refused by the
// kernel; cancellation; many reads at once; and on epoll, a read that blocks runs in the pool
// while the core goes on.
#include "child_process.hpp"
#include "support.hpp"

#include <atomic>
#include <cerrno>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <future>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace coring::testing {
namespace {

namespace fs = std::filesystem;

// A temporary tree, removed at the end:
//   base/outside.txt           a file next to the root, never reachable from it
//   base/root/data.bin         `size` random bytes (seed 12)
//   base/root/sub/inner.txt    "inner"
//   base/root/sub/fifo         a FIFO
//   base/root/link_in          -> sub/inner.txt   (relative, stays inside)
//   base/root/link_out         -> ../outside.txt  (relative, leaves the root)
//   base/root/link_abs         -> base/root/data.bin, absolute (an absolute target is refused)
struct tree {
    fs::path base;
    fs::path root;
    std::vector<std::byte> data;

    explicit tree(std::size_t size) : data{random_bytes(size, 12)} {
        std::string tmpl = (fs::temp_directory_path() / "coring-file.XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()));
        base = tmpl;
        root = base / "root";
        fs::create_directories(root / "sub");
        write(base / "outside.txt", "outside");
        write(root / "sub/inner.txt", "inner");
        std::ofstream{root / "data.bin", std::ios::binary}.write(reinterpret_cast<const char*>(data.data()),
                                                                  static_cast<std::streamsize>(data.size()));
        REQUIRE(::mkfifo((root / "sub/fifo").c_str(), 0600) == 0);
        fs::create_symlink("sub/inner.txt", root / "link_in");
        fs::create_symlink("../outside.txt", root / "link_out");
        fs::create_symlink(root / "data.bin", root / "link_abs");
    }
    ~tree() {
        std::error_code ignored;
        fs::remove_all(base, ignored);
    }
    static void write(const fs::path& p, std::string_view text) { std::ofstream{p} << text; }

    // Drops data.bin's pages from the page cache (clean pages go without privileges), so reads
    // of it wait for the disk: RWF_NOWAIT answers EAGAIN and epoll's reads go to the pool.
    void drop_cache() const {
        const int fd = ::open((root / "data.bin").c_str(), O_RDONLY | O_CLOEXEC);
        REQUIRE(fd >= 0);
        ::fdatasync(fd);
        ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        ::close(fd);
    }
};

// Ends when the backend owes no more than `before` (the core's own doorbell reader is always in
// flight; detached closes finish within a turn or two), and checks that it came to that.
task<> nothing_left_behind(std::size_t before) {
    for (int turns = 0; turns < 100 && core::current().io().in_flight() > before; ++turns) co_await yield();
    CHECK(core::current().io().in_flight() == before);
}

task<file> open_in(const tree* t, std::string path) {
    auto root = co_await directory::open(t->root.string());
    REQUIRE(root);
    auto f = co_await root->open_file(path);
    REQUIRE(f);
    co_await root->close();
    co_return std::move(*f);
}

// Reads the whole file through read_at in `piece`-byte steps, as a server sending it would.
task<std::vector<std::byte>> read_all(const file* f, std::size_t piece) {
    std::vector<std::byte> out;
    std::vector<std::byte> buf(piece);
    for (int steps = 0; steps < 100'000; ++steps) {
        auto n = co_await f->read_at(out.size(), buf);
        REQUIRE(n);
        if (*n == 0) break;
        out.insert(out.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(*n));
    }
    co_return out;
}

task<> open_stat_read(const tree* t) {
    const std::size_t before = core::current().io().in_flight();
    file f = co_await open_in(t, "data.bin");
    auto st = co_await f.stat();
    REQUIRE(st);
    struct stat expected {};
    REQUIRE(::stat((t->root / "data.bin").c_str(), &expected) == 0);
    CHECK(st->size == t->data.size());
    CHECK(st->is_regular());
    CHECK_FALSE(st->is_directory());
    CHECK(st->inode == expected.st_ino);
    CHECK(st->device == expected.st_dev);
    CHECK(st->mtime_ns == expected.st_mtim.tv_sec * 1'000'000'000LL + expected.st_mtim.tv_nsec);

    const auto whole = co_await read_all(&f, 16384);  // many reads: larger than one
    CHECK(whole == t->data);

    std::array<std::byte, 10> ten;
    auto n = co_await f.read_at(1000, ten);
    REQUIRE(n);
    REQUIRE(*n == 10);
    CHECK(std::equal(ten.begin(), ten.end(), t->data.begin() + 1000));
    n = co_await f.read_at(t->data.size() - 3, ten);  // the last 3 bytes
    REQUIRE(n);
    REQUIRE(*n == 3);
    CHECK(std::equal(ten.begin(), ten.begin() + 3, t->data.end() - 3));
    n = co_await f.read_at(t->data.size(), ten);
    REQUIRE(n);
    CHECK(*n == 0);
    n = co_await f.read_at(t->data.size() + 12345, ten);
    REQUIRE(n);
    CHECK(*n == 0);
    n = co_await f.read_at(UINT64_MAX, ten);  // no file has bytes there; never "the file position"
    REQUIRE_FALSE(n);
    CHECK(n.error() == std::errc::invalid_argument);
    co_await f.close();
    CHECK_FALSE(f.is_open());
    n = co_await f.read_at(0, ten);
    REQUIRE_FALSE(n);
    CHECK(n.error() == std::errc::bad_file_descriptor);
    co_await nothing_left_behind(before);
}

TEST_CASE("open_file, stat and read_at give a file's bytes exactly, cold or cached", "[file]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    tree t{1'000'003};  // not a multiple of any read size
    test_core c{kind};
    t.drop_cache();
    c.run_for(30s, open_stat_read(&t));
    c.run_for(30s, open_stat_read(&t));  // now from the page cache
    if (kind == backend_kind::epoll) {
        const auto s = c->stats().backend;
        CHECK(s.file_ops_pooled > 0);  // stat, at least, and the cold reads
        CHECK(s.file_ops_inline > 0);  // cached reads
    }
}

struct open_case {
    const char* path;
    std::errc error;  // std::errc{} : opens
};

task<> check_opens(const tree* t) {
    const std::size_t before = core::current().io().in_flight();
    auto root = co_await directory::open(t->root.string());
    REQUIRE(root);
    const std::string outside = (t->base / "outside.txt").string();
    const std::string nul_inside{"data.bin\0.txt", 13};
    const open_case cases[] = {
        {"sub/inner.txt", {}},
        {"link_in", {}},                                 // a symlink that stays inside
        {"./sub/../sub/inner.txt", {}},                  // ".." that stays inside
        {"missing.txt", std::errc::no_such_file_or_directory},
        {"", std::errc::no_such_file_or_directory},
        {"../outside.txt", std::errc::cross_device_link},  // EXDEV: RESOLVE_BENEATH's answer
        {"sub/../../outside.txt", std::errc::cross_device_link},
        {outside.c_str(), std::errc::cross_device_link},  // absolute
        {"/etc/hostname", std::errc::cross_device_link},
        {"link_out", std::errc::cross_device_link},       // a symlink pointing outside
        {"link_abs", std::errc::cross_device_link},       // an absolute symlink, even to inside
        {"data.bin/x", std::errc::not_a_directory},
    };
    for (const open_case& oc : cases) {
        INFO("path: \"" << oc.path << "\"");
        auto f = co_await root->open_file(oc.path);
        if (oc.error == std::errc{}) {
            REQUIRE(f);
            std::array<std::byte, 16> buf;
            auto n = co_await f->read_at(0, buf);
            REQUIRE(n);
            CHECK(std::string(reinterpret_cast<const char*>(buf.data()), *n) == "inner");
            co_await f->close();
        } else {
            REQUIRE_FALSE(f);
            CHECK(f.error() == oc.error);
        }
    }
    auto cut = co_await root->open_file(nul_inside);  // would open data.bin if passed on as is
    REQUIRE_FALSE(cut);
    CHECK(cut.error() == std::errc::invalid_argument);

    for (const char* dir : {"sub", "."}) {
        INFO("directory: " << dir);
        auto d = co_await root->open_file(dir);
        REQUIRE(d);
        auto st = co_await d->stat();
        REQUIRE(st);
        CHECK_FALSE(st->is_regular());
        CHECK(st->is_directory());
        std::array<std::byte, 16> buf;
        auto n = co_await d->read_at(0, buf);
        REQUIRE_FALSE(n);
        CHECK(n.error() == std::errc::is_a_directory);
    }
    // A FIFO opens at once (O_NONBLOCK: no writer needed) and says what it is.
    auto fifo = co_await root->open_file("sub/fifo");
    REQUIRE(fifo);
    auto st = co_await fifo->stat();
    REQUIRE(st);
    CHECK_FALSE(st->is_regular());
    CHECK((st->mode & S_IFMT) == S_IFIFO);
    CHECK((::fcntl(fifo->fd(), F_GETFL) & O_NONBLOCK) != 0);  // its reads must not wait for a writer
    // A regular file loses O_NONBLOCK at its stat: with it, io_uring would try every read inline
    // even on a filesystem that blocks (NFS, FUSE).
    auto regular = co_await root->open_file("data.bin");
    REQUIRE(regular);
    CHECK((::fcntl(regular->fd(), F_GETFL) & O_NONBLOCK) != 0);
    auto regular_st = co_await regular->stat();
    REQUIRE(regular_st);
    CHECK(regular_st->is_regular());
    CHECK((::fcntl(regular->fd(), F_GETFL) & O_NONBLOCK) == 0);
    co_await regular->close();

    directory unopened;
    auto none = co_await unopened.open_file("data.bin");
    REQUIRE_FALSE(none);
    CHECK(none.error() == std::errc::bad_file_descriptor);
    auto missing_root = co_await directory::open((t->base / "no-such-dir").string());
    REQUIRE_FALSE(missing_root);
    CHECK(missing_root.error() == std::errc::no_such_file_or_directory);
    auto file_as_root = co_await directory::open((t->root / "data.bin").string());
    REQUIRE_FALSE(file_as_root);
    CHECK(file_as_root.error() == std::errc::not_a_directory);
    co_await fifo->close();
    co_await root->close();
    co_await nothing_left_behind(before);
}

TEST_CASE("open_file stays beneath its root: .., absolute paths and symlinks out are refused", "[file]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    tree t{100};
    test_core c{kind};
    c.run_for(30s, check_opens(&t));
}

// ---- many at once, and cancellation ------------------------------------------------------------

task<> read_piece(const file* f, std::size_t offset, std::size_t len, std::vector<std::byte>* out) {
    out->resize(len);
    std::size_t got = 0;
    for (int steps = 0; got < len && steps < 1000; ++steps) {  // a short read is a success: go on
        auto n = co_await f->read_at(offset + got, std::span(*out).subspan(got));
        REQUIRE(n);
        if (*n == 0) break;
        got += *n;
    }
    out->resize(got);
}

// Each task opens, stats and reads a piece of its own, so opens, stats and reads all overlap
// (on epoll, more than one core's share of the pool: the rest wait their turn).
task<> open_stat_read_piece(const tree* t, std::size_t offset, std::size_t len, std::vector<std::byte>* out) {
    auto root = co_await directory::open(t->root.string());
    REQUIRE(root);
    auto f = co_await root->open_file("data.bin");
    REQUIRE(f);
    auto st = co_await f->stat();
    REQUIRE(st);
    REQUIRE(st->size == t->data.size());
    co_await read_piece(&*f, offset, len, out);
}

task<> many_at_once(const tree* t, int n) {
    const std::size_t before = core::current().io().in_flight();
    const std::size_t piece = t->data.size() / static_cast<std::size_t>(n) + 1;
    std::vector<std::vector<std::byte>> pieces(static_cast<std::size_t>(n));
    task_group group;
    for (int i = 0; i < n; ++i) {
        const std::size_t offset = static_cast<std::size_t>(i) * piece;
        group.spawn(open_stat_read_piece(t, offset, piece, &pieces[static_cast<std::size_t>(i)]));
    }
    co_await group.join();
    std::vector<std::byte> joined;
    for (auto& p : pieces) joined.insert(joined.end(), p.begin(), p.end());
    CHECK(joined == t->data);
    co_await nothing_left_behind(before);
}

TEST_CASE("200 tasks opening, stating and reading one file at once all get the right bytes", "[file]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    tree t{2'000'000};
    test_core c{kind};
    t.drop_cache();
    c.run_for(60s, many_at_once(&t, 200));
}

task<> store_read(const file* f, std::size_t offset, std::span<std::byte> buf, result<std::size_t>* out) {
    *out = co_await f->read_at(offset, buf);
}

task<> store_pipe_read(const file* f, std::span<std::byte> buf, result<std::size_t>* out) {
    *out = co_await f->read(buf);
}

// Cancels 100 cold reads and a read of an empty pipe (which would wait forever) right after
// they start (on epoll more than a core's share of the pool: some wait in the core's FIFO). Each ends with its bytes (it got there first) or ECANCELED, and nothing stays in
// flight.
task<> cancel_reads(const tree* t, int write_end, file* pipe_read) {
    const std::size_t before = core::current().io().in_flight();
    file f = co_await open_in(t, "data.bin");
    constexpr int n = 100;
    constexpr std::size_t piece = 10000;
    std::vector<std::vector<std::byte>> bufs(n, std::vector<std::byte>(piece));
    std::vector<result<std::size_t>> results(n, std::errc::interrupted);
    std::array<std::byte, 4> pipe_buf;
    result<std::size_t> pipe_result = std::errc::interrupted;
    task_group group;
    group.spawn(store_pipe_read(pipe_read, pipe_buf, &pipe_result));
    for (int i = 0; i < n; ++i)
        group.spawn(store_read(&f, static_cast<std::size_t>(i) * piece, bufs[static_cast<std::size_t>(i)],
                               &results[static_cast<std::size_t>(i)]));
    co_await yield();  // every read has started
    group.cancel();
    // On epoll a pool thread may already be inside the pipe's read: no cancel can take it back
    // (the thread owns the buffer until the call returns), so the read ends when a byte comes.
    // Elsewhere the byte just stays in the pipe.
    const char byte = 'x';
    REQUIRE(::write(write_end, &byte, 1) == 1);
    co_await group.join();
    int cancelled = 0;
    for (int i = 0; i < n; ++i) {
        const auto& r = results[static_cast<std::size_t>(i)];
        if (!r) {
            CHECK(r.error() == std::errc::operation_canceled);
            ++cancelled;
            continue;
        }
        REQUIRE(*r > 0);  // a reached result stays a result
        CHECK(std::equal(bufs[static_cast<std::size_t>(i)].begin(), bufs[static_cast<std::size_t>(i)].begin() + *r,
                         t->data.begin() + i * static_cast<std::ptrdiff_t>(piece)));
    }
    if (pipe_result) CHECK((*pipe_result == 1 && pipe_buf[0] == std::byte{'x'}));
    else CHECK(pipe_result.error() == std::errc::operation_canceled);
    INFO("cancelled " << cancelled << " of " << n);
    co_await f.close();
    co_await nothing_left_behind(before);
}

TEST_CASE("cancelling reads in flight leaves no op behind", "[file][cancel]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    tree t{1'000'000};
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);  // blocking: a read of it waits for a writer
    const int write_end = p[1];
    {
        test_core c{kind};
        file pipe_read{p[0]};
        t.drop_cache();
        c.run_for(30s, cancel_reads(&t, write_end, &pipe_read));
        }
    ::close(write_end);
}

// ---- the core goes on while a read blocks --------------------------------------------------------

task<> pipe_read_in_order(const file* f, std::span<std::byte> buf, result<std::size_t>* out, std::atomic<int>* seq,
                          int* at_seq) {
    *out = co_await f->read(buf);
    *at_seq = ++*seq;
}

// A read of an empty blocking pipe waits until the timer below fires and its task writes. If
// the read held the core (a pread on the core's own thread, for instance), the timer could
// not fire before it: the read would end only when the safety thread writes, after 10 s, and
// both the order and the byte read say so.
task<> read_while_timer_fires(const file* pipe_read, int write_end, std::atomic<int>* seq, int* read_at_seq,
                              int* timer_at_seq) {
    std::array<std::byte, 8> buf;
    result<std::size_t> got = std::errc::interrupted;
    task_group group;
    group.spawn(pipe_read_in_order(pipe_read, buf, &got, seq, read_at_seq));
    auto slept = co_await sleep_for(20ms);
    REQUIRE(slept);
    *timer_at_seq = ++*seq;
    const char byte = 'y';
    REQUIRE(::write(write_end, &byte, 1) == 1);
    co_await group.join();
    REQUIRE(got);
    CHECK(*got == 1);
    CHECK(buf[0] == std::byte{'y'});
}

TEST_CASE("a read that blocks does not block its core: a timer on it still fires", "[file]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    const int write_end = p[1];
    std::promise<void> finished;
    std::thread safety{[f = finished.get_future(), write_end]() mutable {
        if (f.wait_for(10s) == std::future_status::timeout) {
            const char byte = 'z';
            (void)!::write(write_end, &byte, 1);  // unblocks a core stuck in read(2)
        }
    }};
    std::atomic<int> seq{0};
    int read_at_seq = 0, timer_at_seq = 0;
    {
        test_core c{kind};
        file pipe_read{p[0]};
        c.run_for(30s, read_while_timer_fires(&pipe_read, write_end, &seq, &read_at_seq, &timer_at_seq));
        if (kind == backend_kind::epoll) CHECK(c->stats().backend.file_ops_pooled == 1);
    }
    finished.set_value();
    safety.join();
    ::close(write_end);
    CHECK(timer_at_seq == 1);
    CHECK(read_at_seq == 2);
}

// ---- two cores share the pool ---------------------------------------------------------------------

// No Catch2 macros here: they are not thread-safe, and this runs on two core threads at once.
task<> read_on_core(core& c, const tree* t, std::atomic<int>* good) {
    auto root = co_await directory::open(t->root.string());
    if (!root) co_return;
    auto f = co_await root->open_file("data.bin");
    if (!f) co_return;
    std::vector<std::byte> whole(t->data.size() + 1);
    const std::size_t piece = 65536 + 7 * c.id();  // the cores' reads fall differently
    std::size_t got = 0;
    for (int steps = 0; steps < 10'000; ++steps) {
        auto n = co_await f->read_at(got, std::span(whole).subspan(got, std::min(piece, whole.size() - got)));
        if (!n || *n == 0) break;
        got += *n;
    }
    whole.resize(got);
    if (whole == t->data) ++*good;
    co_await f->close();
    co_await root->close();
}

TEST_CASE("two cores read files at once; each gets its own completions back", "[file]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    tree t{3'000'000};
    t.drop_cache();
    std::atomic<int> good{0};
    CHECK(run(two_cores(kind), [&](core& c) { return read_on_core(c, &t, &good); }) == 0);
    CHECK(good == 2);
}

TEST_CASE("--features says how each backend does file I/O", "[file]") {
    child_process p{CORING_ECHO_BINARY, {"--features"}};
    const auto status = p.wait_exit_or_kill(10s);
    INFO("stdout:\n" << p.out() << "\nstderr:\n" << p.err());
    REQUIRE(status);
    CHECK(WEXITSTATUS(*status) == 0);
    CHECK_THAT(p.out(), Catch::Contains("file I/O:"));
    CHECK_THAT(p.out(), Catch::Contains("blocking pool"));  // epoll's line
}

}  // namespace
}  // namespace coring::testing
