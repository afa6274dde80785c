#pragma once
// Listen addresses for the apps' servers (not installed), checked before the cores start.
#include <coring/address.hpp>
#include <coring/result.hpp>
#include <coring/sharded.hpp>
#include <coring/tcp.hpp>

#include <optional>
#include <utility>

namespace coring::apps {

// Before the cores start. Port 0 means "any free port", but each core binds its own listener:
// resolved separately they would get different ports, so this picks one for all of them, held
// (bound with SO_REUSEPORT, never listening, so it takes no connections) until the process
// exits. Any other port is probe-bound without SO_REUSEPORT: one another server listens on is
// EADDRINUSE here, instead of being shared silently by the cores' SO_REUSEPORT listeners. A
// unix socket file that nobody accepts on (left by a crashed server) is removed; a live one,
// or anything at the path that is not a socket, is EADDRINUSE and stays as it is.
result<address> prepare_listen_address(address where);

// One listener per core on one address, all bound in run()'s setup phase, so every core listens
// before any core's main runs: the "listening on" line a main says is then true of the whole
// server. Said while core 0 alone listened, it let the clients that connected at once all land
// on core 0 (SO_REUSEPORT spreads connections only over the sockets already listening).
// Construct before run() and destroy after it.
class core_listeners {
public:
    explicit core_listeners(address where) : where_{where} {}
    ~core_listeners();  // a unix socket's file goes, while the path still names the one its bind made
    // run()'s setup: on core 0, binds a listener (SO_REUSEPORT) on every core; a unix socket
    // only on core 0 (no SO_REUSEPORT there: its connections stay on that core). A failure
    // throws std::system_error naming the address.
    task<> bind(core& c);
    // In main: this core's listener, or none.
    std::optional<tcp_listener> take() { return std::exchange(listeners_.local(), std::nullopt); }

private:
    address where_;
    int file_ = -1;  // a unix socket's file, held from its bind on (hold_socket_file)
    sharded<std::optional<tcp_listener>> listeners_;
};

// A unix socket's path outlives its listener: the server that made it removes it, and only
// while the path still names the file its bind made. A server started on the same path while
// this one drains (after its listener closed) has made a file of its own, which stays. The
// file is held by an O_PATH descriptor from the bind on: a held inode is never freed, so its
// number cannot come back as the successor's file and pass for ours.
int hold_socket_file(const address& where);  // right after bind; -1: no file (an abstract name)
void remove_socket_file(const address& where, int held);  // and closes `held`

}  // namespace coring::apps
