#pragma once
// dns: host names to addresses without blocking the core. c-ares (Debian libc-ares-dev) makes
// the queries; its sockets are driven by the readiness op (readiness.hpp), its retries by a
// timer, all on the calling core: no thread of its own, as the C libraries of
// docs/ARCHITECTURE.md "Third-party C libraries on a core".
//
//   auto found = co_await dns::resolve("redis.internal", 6379);  // result<std::vector<address>>
//   if (!found) log("{}", found.error().message());               // "Domain name not found"
//
// A numeric host (127.0.0.1, ::1) is answered without a query. A name is looked up as the
// system's own resolver would (/etc/hosts, then the servers of /etc/resolv.conf), or through
// options::servers. The call always ends by itself: c-ares gives each server `tries` tries,
// and options::timeout bounds the whole call (ETIMEDOUT); cancelling the task ends it with
// ECANCELED. A name that has no address is an error of dns::category() (c-ares's status: not
// found, no data, server failure...), never an empty list.
//
// Bounds: one query in flight per call, and its sockets are c-ares's (one per server at most).
#include <coring/address.hpp>
#include <coring/result.hpp>
#include <coring/task.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <system_error>
#include <vector>

namespace coring::dns {

struct options {
    std::string servers;                      // "127.0.0.1:5353,[::1]:53" (c-ares's CSV); empty: resolv.conf's
    std::chrono::milliseconds timeout{5000};  // the whole call
    int tries = 2;                            // per server, each waiting up to 1 s (c-ares doubles it per round)
};

// c-ares's status codes (ARES_ENOTFOUND, ARES_ESERVFAIL...) with c-ares's own messages.
const std::error_category& category() noexcept;

// The addresses of `host`, each with `port`, in c-ares's order (RFC 6724 sorted).
[[nodiscard]] task<result<std::vector<address>>> resolve(std::string host, std::uint16_t port, options opts = {});

}  // namespace coring::dns
