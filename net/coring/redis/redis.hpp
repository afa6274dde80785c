#pragma once
// A Redis client on the current core: hiredis (0.14) speaks the protocol, coring drives its
// socket through the readiness op, and every timeout is coring's (docs/ARCHITECTURE.md,
// "Third-party C libraries on a core"). No threads of its own.
//
//   redis::client db{{.host = "127.0.0.1", .port = 6379}};
//   co_await db.wait_connected(2s);
//   auto r = co_await db.command("PUBLISH", channel, payload);   // result<reply>
//   co_await db.close();
//
// Who owns what: a client (or subscriber) owns one hiredis context at a time and the tasks that
// drive it (a connector, and a reader and a writer while hiredis wants them), all in a group
// that close() cancels and joins. A command's record belongs to hiredis from the call until
// hiredis answers it or frees the context; an awaiting task that is cancelled or times out
// only detaches from its record, since hiredis cannot withdraw a command it has queued.
// Destroying a client or subscriber whose tasks still run (close() not awaited, and the core
// not shut down) aborts, like a task_group: a destructor cannot wait.
#include <coring/result.hpp>
#include <coring/task.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace coring::redis {

struct reply {  // a deep copy of hiredis's redisReply (RESP2 types)
    enum class type : std::uint8_t { string, array, integer, nil, status, error };
    type kind = type::nil;
    std::int64_t integer = 0;
    std::string str;              // string, status, error text
    std::vector<reply> elements;  // array
    bool is_error() const noexcept { return kind == type::error; }
};

struct options {
    std::string host = "127.0.0.1";  // an address, or a name (looked up through dns.hpp at each connect)
    std::uint16_t port = 6379;
    std::chrono::milliseconds connect_timeout{2000};
    std::chrono::milliseconds command_timeout{0};                   // 0: none
    std::chrono::milliseconds backoff_min{100}, backoff_max{5000};  // reconnect delays, doubling
    // A Redis that vanishes without a FIN or a reset (its host down, a NAT mapping dropped) is
    // noticed, and the link reconnects: TCP keepalive probes after this long idle (three, a
    // third of it apart), and unacknowledged data gives up after twice it (TCP_USER_TIMEOUT).
    // 0: the kernel's defaults (no probes; a link that only listens would wait forever).
    std::chrono::seconds keepalive{15};
    // client: bytes of commands handed to hiredis and not yet answered (a timed-out or
    // cancelled one counts until Redis answers it or the connection drops). Past it a command
    // fails at once with std::errc::no_buffer_space, so a Redis that stalls cannot make this
    // process's memory grow with every command its callers go on sending.
    std::size_t max_pending_bytes = std::size_t{64} << 20;
    // subscriber: bytes of messages (names and payloads) waiting for next(). At the bound the
    // subscriber stops reading its socket; what one read already held still lands (hiredis
    // reads 16 KiB at a time and hands over every complete reply in it).
    std::size_t queue_limit = std::size_t{4} << 20;
};

// "redis://HOST:PORT" or "redis://HOST" (port 6379); HOST a name or IPv4 address, or [IPv6].
result<options> parse_url(std::string_view url);
// Why parse_url refused url, in words ("" when it did not).
std::string url_error(std::string_view url);

struct client_stats {
    std::uint64_t connects = 0, disconnects = 0, connect_failures = 0, commands = 0, replies = 0, errors = 0;
};

namespace detail {
class link;
class client_link;
class subscriber_link;
}  // namespace detail

// One connection to Redis on the current core, reconnecting with backoff until close().
// Commands pipeline (hiredis queues them); replies come in order.
class client {
public:
    explicit client(options o);  // starts connecting in the background on this core
    client(const client&) = delete;
    client& operator=(const client&) = delete;
    ~client();  // close() first, unless the core's shutdown ended its tasks (else: abort)

    bool connected() const noexcept;
    // Success once connected (at once if it is); ETIMEDOUT, or ECANCELED after close().
    [[nodiscard]] task<result<void>> wait_connected(std::chrono::milliseconds timeout);
    // The command goes to hiredis at the call (before the task is awaited). Fails (not a reply)
    // with std::errc::not_connected when not connected right now (never queued for later: a
    // caller must know at once), ETIMEDOUT past command_timeout, ECANCELED when its task is
    // cancelled or the client closed, or ECONNRESET when the connection drops before the
    // reply. A Redis error reply ("-ERR ...") is a success whose reply.is_error().
    [[nodiscard]] task<result<reply>> command(std::span<const std::string_view> args);
    template <class... A>
    [[nodiscard]] task<result<reply>> command(A&&... args) {  // each convertible to string_view
        const std::string_view list[] = {std::string_view(args)...};
        return command(std::span<const std::string_view>(list));
    }
    // The same for callers that are not coroutines: `done` runs exactly once on this core,
    // later (never inside send), with the reply or the error above.
    void send(std::span<const std::string_view> args, std::function<void(result<reply>)> done);
    const client_stats& stats() const noexcept;
    // Fails what is pending with ECANCELED, frees the context, ends the tasks.
    [[nodiscard]] task<> close();

private:
    std::unique_ptr<detail::client_link> link_;
};

struct message {  // pattern empty: a "message"; else a "pmessage" of that pattern
    std::string pattern;
    std::string channel;
    std::string payload;
};
enum class link_state : std::uint8_t { up, down };

// A subscriber connection: keeps its channel/pattern set and re-subscribes all of it after
// every reconnect. Messages wait in a queue bounded by options::queue_limit bytes: while it is
// full the subscriber stops reading its socket, so Redis holds the rest (and its own
// client-output-buffer-limit for pubsub clients applies: past it Redis cuts the connection, and
// the subscriber reconnects and re-subscribes; what was published meanwhile is lost).
class subscriber {
public:
    explicit subscriber(options o);
    subscriber(const subscriber&) = delete;
    subscriber& operator=(const subscriber&) = delete;
    ~subscriber();  // as client's

    // Adds to the set and sends SUBSCRIBE; completes when Redis confirmed it. When not
    // connected it completes at once with std::errc::not_connected (the name stays in the set
    // and is subscribed at the next connect); ECONNRESET if the link drops before the
    // confirmation (the same holds); ECANCELED when the task is cancelled.
    [[nodiscard]] task<result<void>> subscribe(std::string_view channel);
    [[nodiscard]] task<result<void>> psubscribe(std::string_view pattern);
    // Drops from the set (nothing of it is delivered from now on); UNSUBSCRIBE if connected.
    void unsubscribe(std::string_view channel);
    void punsubscribe(std::string_view pattern);
    // The next message, in the order Redis sent them; ECANCELED when the task is cancelled or
    // the subscriber closed. One reader at a time.
    [[nodiscard]] task<result<message>> next();
    // Called on this core whenever the link goes up (after the set is re-subscribed and
    // confirmed) or down.
    void on_state(std::function<void(link_state)> fn);
    bool connected() const noexcept;
    std::size_t queued() const noexcept;  // messages waiting for next()
    const client_stats& stats() const noexcept;
    [[nodiscard]] task<> close();

private:
    std::unique_ptr<detail::subscriber_link> link_;
};

}  // namespace coring::redis
