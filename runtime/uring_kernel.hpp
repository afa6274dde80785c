#pragma once
// What the io_uring backend's files (uring_setup.cpp, uring_backend.cpp) need of the kernel's
// interface beyond liburing 2.3's headers: flags and opcodes of newer kernels, by their values.
#include <liburing.h>

#include <cstdint>

// liburing 2.3 predates receive bundles (Linux 6.10): the flag goes in sqe->ioprio of a recv
// with IOSQE_BUFFER_SELECT, the feature bit comes back in io_uring_params.features.
#ifndef IORING_RECVSEND_BUNDLE
#define IORING_RECVSEND_BUNDLE (1U << 4)
#endif
#ifndef IORING_FEAT_RECVSEND_BUNDLE
#define IORING_FEAT_RECVSEND_BUNDLE (1U << 14)
#endif
// Newer than liburing 2.3's headers:
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)  // Linux 6.2: the notification says whether it copied
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)  // Linux 6.2: set in a notification's res
#endif
#ifndef IORING_FEAT_REG_REG_RING
#define IORING_FEAT_REG_REG_RING (1U << 13)  // Linux 6.3: dates REPORT_USAGE (no probe of its own)
#endif

namespace coring::detail {

// Newer than liburing 2.3's headers: the kernel's values.
#ifdef IORING_FIXED_FD_NO_CLOEXEC  // headers that know IORING_OP_FIXED_FD_INSTALL
constexpr std::uint8_t op_fixed_fd_install = IORING_OP_FIXED_FD_INSTALL;
#else
static_assert(IORING_OP_SENDMSG_ZC == 48);
constexpr std::uint8_t op_fixed_fd_install = 54;  // IORING_OP_FIXED_FD_INSTALL, Linux 6.8
#endif
constexpr std::uint32_t socket_op_setsockopt = 3;  // SOCKET_URING_OP_SETSOCKOPT (IORING_OP_URING_CMD), Linux 6.7

}  // namespace coring::detail
