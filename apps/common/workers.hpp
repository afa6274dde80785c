#pragma once
// Worker processes, as nginx runs them: W forks of one server, each a full thread-per-core
// runtime with its own fd limit, sharing the listening port through SO_REUSEPORT. The parent
// only watches: SIGINT/SIGTERM/SIGHUP sent to it are passed on to every worker (by pid), and one
// that comes before every worker is forked stops the start-up there; a worker that fails (a
// non-zero exit, or a signal's death) is reported in one line and stops the rest; the exit
// status is the worst one (128 + N for a death by signal N, as a shell says it). A worker whose
// parent dies (even by SIGKILL) gets SIGTERM from the kernel, so no worker keeps the port after
// its server is gone.
#include <coring/log.hpp>
#include <coring/run.hpp>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <string>
#include <system_error>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace coring::apps {

// worker(k) runs in worker process k and returns its exit status.
inline int run_workers(unsigned n, const std::function<int(unsigned)>& worker) {
    ignore_stray_signals();  // as run() does in each worker: SIGPIPE, SIGUSR1, SIGUSR2
    sigset_t watched = stop_signals(), old;
    sigaddset(&watched, SIGCHLD);
    sigprocmask(SIG_BLOCK, &watched, &old);
    const int sfd = ::signalfd(-1, &watched, SFD_CLOEXEC);
    std::vector<pid_t> pids;
    auto signal_all = [&](int sig) {
        for (pid_t p : pids)
            if (p > 0) ::kill(p, sig);  // our own children, by pid
    };
    const pid_t parent = ::getpid();
    const sigset_t stop = stop_signals();
    // A worker keeps the stop signals blocked: run() reads them, and one that comes before it
    // gets there waits, pending, instead of killing the worker (exit 128 + N for the parent).
    sigset_t worker_mask;
    sigorset(&worker_mask, &old, &stop);
    // A stop signal that comes while workers are being forked would not reach them all: a
    // terminal's (Ctrl-C) goes to the processes of the group at that moment, and the loop below
    // passes on only those sent to us alone. So before the first fork and after each one, a
    // stop signal pending (held since main's first line) is taken here and no more workers
    // are started. One of ours goes on to every worker. A terminal's reached the workers forked
    // before it was sent, and the newest one only if it came during or after that fork (the
    // kernel delays a group's signal that comes during fork() so the child gets it too), which
    // cannot be told apart: the newest one gets it from us as well, so it stops either way
    // (twice is "stop at once": a worker that has just started has nothing to drain).
    const auto stop_requested = [&] {
        siginfo_t info{};
        const timespec now{0, 0};
        const int sig = ::sigtimedwait(&stop, &info, &now);
        if (sig <= 0) return false;
        log("{}: stopping ({} of {} workers started)", strsignal(sig), pids.size(), n);
        if (info.si_pid != 0) signal_all(sig);
        else if (!pids.empty()) ::kill(pids.back(), sig);  // our own child, by pid
        return true;
    };
    bool stopped = stop_requested();
    for (unsigned k = 0; k < n && !stopped; ++k) {
        const pid_t pid = ::fork();
        if (pid == 0) {
            if (::prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) {
                log("worker {}: prctl(PR_SET_PDEATHSIG): {}", k, std::system_category().message(errno));
                std::_Exit(2);
            }
            // Armed only now: a parent that died before this line sent nothing, and the worker,
            // adopted by another process, must not start at all.
            if (::getppid() != parent) std::_Exit(2);
            ::close(sfd);
            sigprocmask(SIG_SETMASK, &worker_mask, nullptr);
            std::exit(worker(k));
        }
        if (pid < 0) {
            log("fork worker {}: {}", k, std::system_category().message(errno));
            signal_all(SIGTERM);
            break;
        }
        pids.push_back(pid);
        stopped = stop_requested();
    }
    int worst = pids.size() == n || stopped ? 0 : 2;
    std::size_t alive = pids.size();
    while (alive > 0) {
        signalfd_siginfo info{};
        if (::read(sfd, &info, sizeof info) != sizeof info) {
            if (errno == EINTR) continue;
            break;
        }
        if (info.ssi_signo == SIGCHLD) {
            int status = 0;
            for (pid_t& p : pids) {
                if (p <= 0 || ::waitpid(p, &status, WNOHANG) != p) continue;
                p = -p;  // reaped
                --alive;
                const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                if (code != 0) {
                    const pid_t pid = -p;
                    const std::size_t k = static_cast<std::size_t>(&p - pids.data());
                    const char* sig = WIFSIGNALED(status) ? sigabbrev_np(WTERMSIG(status)) : nullptr;  // null: a real-time one
                    const std::string how = WIFEXITED(status) ? format("exited with status {}", code)
                                            : sig             ? format("killed by SIG{}", sig)
                                                              : format("killed by signal {}", WTERMSIG(status));
                    const bool first = worst == 0 && alive > 0;
                    log("worker {} (pid {}) {}{}", k, pid, how, first ? "; stopping the others" : "");
                    if (worst == 0) signal_all(SIGTERM);  // one failed: the others stop too
                }
                worst = std::max(worst, code);
            }
            continue;
        }
        // A stop signal. From a terminal (ssi_pid 0) it reached the whole process group, the
        // workers included; from kill(1) it reached only us: pass it on.
        if (info.ssi_pid != 0) signal_all(static_cast<int>(info.ssi_signo));
    }
    ::close(sfd);
    sigprocmask(SIG_SETMASK, &old, nullptr);
    return worst;
}

}  // namespace coring::apps
