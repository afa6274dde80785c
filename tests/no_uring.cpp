// no-uring COMMAND [ARGS...]: runs COMMAND with io_uring_setup refused by a seccomp filter
// (EPERM, as a container runtime's default profile refuses it), so a test can watch a server
// meet a kernel that says no, not a flag that pretends to. Linux only; the filter checks the
// syscall number of the native ABI, which is all a test of this machine needs.
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fputs("usage: no-uring COMMAND [ARGS...]\n", stderr);
        return 2;
    }
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog program{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
    // Without NO_NEW_PRIVS only a process with CAP_SYS_ADMIN may install a filter.
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
        std::fprintf(stderr, "no-uring: seccomp: %s\n", std::strerror(errno));
        return 2;
    }
    ::execv(argv[1], argv + 1);
    std::fprintf(stderr, "no-uring: exec %s: %s\n", argv[1], std::strerror(errno));
    return 127;
}
