#pragma once
// Listen addresses for the apps' servers (not installed), checked before the cores start.
#include <coring/address.hpp>
#include <coring/result.hpp>

namespace coring::apps {

// Before the cores start. Port 0 means "any free port", but each core binds its own listener:
// resolved separately they would get different ports, so this picks one for all of them, held
// (bound with SO_REUSEPORT, never listening, so it takes no connections) until the process
// exits. Any other port is probe-bound without SO_REUSEPORT: one another server listens on is
// EADDRINUSE here, instead of being shared silently by the cores' SO_REUSEPORT listeners. A
// unix socket file that nobody accepts on (left by a crashed server) is removed; a live one,
// or anything at the path that is not a socket, is EADDRINUSE and stays as it is.
result<address> prepare_listen_address(address where);


// A unix socket's path outlives its listener: the server that made it removes it.
void remove_socket_file(const address& where);

}  // namespace coring::apps
