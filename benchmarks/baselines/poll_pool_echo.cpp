// baseline-poll-pool: the classic poll() + worker thread pool echo server.
//
// One poller thread (main) runs poll() over the listener, a wakeup eventfd, a signalfd and every
// idle connection, and does all the accepting. A connection that becomes readable is removed
// from the poll set and pushed onto a mutex+condvar work queue; one of --threads N workers takes
// it, recv()s (non-blocking) until EAGAIN and echoes every chunk back (if send would block it
// waits in poll() on that one fd for POLLOUT), then hands the fd back to the poller through a
// return queue and an eventfd write, so the next poll() watches it again. Because a connection
// is either in the poll set or owned by exactly one worker, no two threads ever touch the same
// socket. This is the textbook "reactor + thread pool" design of pre-epoll servers; its costs
// (O(n) poll scans, two queue hand-offs per message) are what the comparison is meant to show.
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "common.hpp"

namespace {

constexpr const char* prog = "baseline-poll-pool";

// Poller -> workers: readable connections.
std::mutex work_mu;
std::condition_variable work_cv;
std::deque<int> work;

// Workers -> poller: connections that are idle again (drained to EAGAIN).
std::mutex back_mu;
std::vector<int> back;
int wake_fd = -1;  // eventfd in the poll set; written when `back` becomes non-empty

// Sends all of [p, p+n) on a non-blocking socket, blocking in poll() while the buffer is full.
bool send_all(int fd, const char* p, std::size_t n) {
    while (n > 0) {
        const ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w >= 0) {
            p += w;
            n -= static_cast<std::size_t>(w);
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            pollfd pfd{fd, POLLOUT, 0};
            if (poll(&pfd, 1, -1) < 0 && errno != EINTR) return false;
        } else if (errno != EINTR) {
            return false;
        }
    }
    return true;
}

void worker() {
    std::vector<char> buf(16 * 1024);  // coring's buffer size
    for (;;) {
        int fd;
        {
            std::unique_lock lock{work_mu};
            work_cv.wait(lock, [] { return !work.empty(); });
            fd = work.front();
            work.pop_front();
        }
        bool keep = true;
        for (;;) {
            const ssize_t n = recv(fd, buf.data(), buf.size(), 0);
            if (n > 0) {
                if (!send_all(fd, buf.data(), static_cast<std::size_t>(n))) {
                    keep = false;
                    break;
                }
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                break;
            } else if (n == 0 || errno != EINTR) {
                keep = false;  // EOF or a connection error
                break;
            }
        }
        if (!keep) {
            close(fd);
            continue;
        }
        bool was_empty;
        {
            std::lock_guard lock{back_mu};
            was_empty = back.empty();
            back.push_back(fd);
        }
        // Only the push that makes the queue non-empty needs to wake the poller; the poller
        // reads the eventfd before it takes the queue, so no hand-back is ever missed.
        if (was_empty) {
            const std::uint64_t one = 1;
            while (write(wake_fd, &one, sizeof one) < 0 && errno == EINTR) {
            }
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    const baseline::settings cfg = baseline::parse_args(
        argc, argv,
        {.prog = prog,
         .summary = "poll() reactor + worker thread pool echo server on 127.0.0.1.",
         .threads = true,
         .refuse_minus = true});
    baseline::prepare_process();

    // Block the exit signals before starting workers so only the signalfd sees them.
    const int sig_fd = baseline::exit_signal_fd(prog, true);
    wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd < 0) baseline::die(prog, "eventfd");
    const int listener = baseline::listen_loopback(prog, cfg.port, true);

    for (unsigned i = 0; i < cfg.threads; ++i) std::thread(worker).detach();

    // Fixed slots first, then the idle connections (order among them does not matter).
    constexpr std::size_t fixed = 3;
    std::vector<pollfd> pfds{{sig_fd, POLLIN, 0}, {wake_fd, POLLIN, 0}, {listener, POLLIN, 0}};
    std::vector<int> ready, returned;
    for (;;) {
        if (poll(pfds.data(), pfds.size(), -1) < 0) {
            if (errno == EINTR) continue;
            baseline::die(prog, "poll");
        }
        if (pfds[0].revents) _exit(0);  // SIGINT/SIGTERM; workers may be mid-send, so no cleanup
        const bool wake = pfds[1].revents != 0;
        const bool acceptable = pfds[2].revents != 0;

        // Readable (or hung-up/errored) connections leave the poll set and go to the workers.
        ready.clear();
        for (std::size_t i = fixed; i < pfds.size();) {
            if (pfds[i].revents == 0) {
                ++i;
                continue;
            }
            ready.push_back(pfds[i].fd);
            pfds[i] = pfds.back();  // the moved-in entry's revents are from this poll() too
            pfds.pop_back();
        }
        if (!ready.empty()) {
            {
                std::lock_guard lock{work_mu};
                work.insert(work.end(), ready.begin(), ready.end());
            }
            if (ready.size() == 1) work_cv.notify_one();
            else work_cv.notify_all();
        }

        if (wake) {
            std::uint64_t count;
            (void)!read(wake_fd, &count, sizeof count);  // reset before taking the queue
            {
                std::lock_guard lock{back_mu};
                returned.swap(back);
            }
            for (const int fd : returned) pfds.push_back({fd, POLLIN, 0});
            returned.clear();
        }

        if (acceptable) {
            for (;;) {
                const int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                    if (errno == EINTR || errno == ECONNABORTED) continue;
                    break;  // EAGAIN, or out of fds: poll() reports the listener again
                }
                baseline::set_nodelay(fd);
                pfds.push_back({fd, POLLIN, 0});
            }
        }
    }
}
