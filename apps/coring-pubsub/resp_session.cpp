// One RESP connection of coring-pubsub: commands in, replies and messages out through the
// connection's queue (pubsub::connection), in the order Redis gives them.
#include "pubsub_app.hpp"

#include <coring/reader.hpp>
#include <coring/resp/resp.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <unistd.h>

namespace coring::apps::pubsub_detail {

namespace {

using args_view = std::vector<std::string_view>;

bool is(std::string_view arg, std::string_view lower_name) noexcept {
    return arg.size() == lower_name.size() &&
           std::equal(arg.begin(), arg.end(), lower_name.begin(),
                      [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == b; });
}

std::string lowered(std::string_view s) {
    std::string out{s};
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

// Redis's reply to a subscription change: [kind, name, subscriptions left] (a null name when
// there was nothing to unsubscribe from).
void append_subscription_reply(std::string& out, std::string_view kind, const std::string_view* name, std::size_t count) {
    resp::append_array(out, 3);
    resp::append_bulk(out, kind);
    if (name) resp::append_bulk(out, *name);
    else resp::append_null(out);
    resp::append_integer(out, static_cast<std::int64_t>(count));
}

class session {
public:
    session(pubsub::connection& conn, pubsub::hub& hub, std::uint64_t id) : conn_{conn}, hub_{hub}, id_{id} {}

    // Commands that may wait for the other cores: SUBSCRIBE, PSUBSCRIBE, PUBSUB, INFO.
    static bool waits(std::string_view cmd) noexcept;
    // Runs one of those.
    task<bool> execute(const args_view& args);
    // Runs any other command without a coroutine (a flood of PUBLISHes must not nest awaits);
    // false when the connection should end after its replies (QUIT).
    bool run(const args_view& args);

private:
    bool refused(std::string_view cmd);  // not allowed in subscribed mode: answered with the error
    void error(std::string_view text) {
        conn_.reply_with([text](std::string& out) { resp::append_error(out, text); });
    }
    void wrong_arity(std::string_view command) {
        error("ERR wrong number of arguments for '" + lowered(command) + "' command");
    }
    task<> subscribe(const args_view& args, bool pattern);
    void unsubscribe(const args_view& args, bool pattern);
    task<> pubsub_command(const args_view& args);
    task<> info();
    void hello(const args_view& args);
    void client(const args_view& args);

    pubsub::connection& conn_;
    pubsub::hub& hub_;
    std::uint64_t id_;
    std::string name_;  // CLIENT SETNAME
};

bool session::refused(std::string_view cmd) {
    // In subscribed mode (RESP2) a client may only change subscriptions, ping, quit or reset.
    if (conn_.subscription_count() == 0 || is(cmd, "subscribe") || is(cmd, "psubscribe") || is(cmd, "unsubscribe") ||
        is(cmd, "punsubscribe") || is(cmd, "ping") || is(cmd, "quit") || is(cmd, "reset"))
        return false;
    error("ERR Can't execute '" + lowered(cmd) +
          "': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context");
    return true;
}

bool session::waits(std::string_view cmd) noexcept {
    return is(cmd, "subscribe") || is(cmd, "psubscribe") || is(cmd, "pubsub") || is(cmd, "info");
}

task<bool> session::execute(const args_view& args) {
    const std::string_view cmd = args[0];
    if (refused(cmd)) co_return true;
    if (is(cmd, "subscribe") || is(cmd, "psubscribe")) {
        if (args.size() < 2) wrong_arity(cmd);
        else co_await subscribe(args, is(cmd, "psubscribe"));
    } else if (is(cmd, "pubsub")) {
        co_await pubsub_command(args);
    } else if (is(cmd, "info")) {
        co_await info();
    }
    co_return true;
}

bool session::run(const args_view& args) {
    const std::string_view cmd = args[0];
    const bool subscribed = conn_.subscription_count() > 0;
    if (refused(cmd)) return true;
    if (is(cmd, "publish")) {
        if (args.size() != 3) wrong_arity(cmd);
        else conn_.publish(args[1], args[2]);
    } else if (is(cmd, "unsubscribe") || is(cmd, "punsubscribe")) {
        unsubscribe(args, is(cmd, "punsubscribe"));
    } else if (is(cmd, "ping")) {
        if (args.size() > 2) {
            wrong_arity(cmd);
        } else if (subscribed) {  // a push, so a subscriber can tell it from a message
            conn_.reply_with([&](std::string& out) {
                resp::append_array(out, 2);
                resp::append_bulk(out, "pong");
                resp::append_bulk(out, args.size() == 2 ? args[1] : std::string_view{});
            });
        } else if (args.size() == 2) {
            conn_.reply_with([&](std::string& out) { resp::append_bulk(out, args[1]); });
        } else {
            conn_.reply("+PONG\r\n");
        }
    } else if (is(cmd, "echo")) {
        if (args.size() != 2) wrong_arity(cmd);
        else conn_.reply_with([&](std::string& out) { resp::append_bulk(out, args[1]); });
    } else if (is(cmd, "quit")) {
        conn_.reply("+OK\r\n");
        return false;
    } else if (is(cmd, "reset")) {
        for (const bool pattern : {false, true})
            for (const auto& name : conn_.names(pattern)) (void)conn_.unsubscribe(name, pattern);
        name_.clear();
        conn_.reply("+RESET\r\n");
    } else if (is(cmd, "hello")) {
        hello(args);
    } else if (is(cmd, "client")) {
        client(args);
    } else if (is(cmd, "command")) {  // redis-cli asks for COMMAND DOCS: none here
        conn_.reply("*0\r\n");
    } else {
        std::string text = "ERR unknown command '" + std::string{cmd.substr(0, 128)} + "', with args beginning with: ";
        for (std::size_t i = 1; i < args.size() && text.size() < 512; ++i)
            text += "'" + std::string{args[i].substr(0, 128)} + "' ";
        for (char& c : text)
            if (c == '\r' || c == '\n') c = ' ';  // an error line must stay one line
        error(text);
    }
    return true;
}

task<> session::subscribe(const args_view& args, bool pattern) {
    const std::string_view kind = pattern ? "psubscribe" : "subscribe";
    for (std::size_t i = 1; i < args.size(); ++i) {
        const auto count = co_await conn_.subscribe(args[i], pattern);
        if (!count) {
            error("ERR max subscriptions per connection reached (" +
                  std::to_string(hub_.output_limits().max_subscriptions) + ")");
            continue;
        }
        conn_.reply_with([&](std::string& out) { append_subscription_reply(out, kind, &args[i], *count); });
    }
}

void session::unsubscribe(const args_view& args, bool pattern) {
    const std::string_view kind = pattern ? "punsubscribe" : "unsubscribe";
    if (args.size() > 1) {
        for (std::size_t i = 1; i < args.size(); ++i) {
            const std::size_t count = conn_.unsubscribe(args[i], pattern);
            conn_.reply_with([&](std::string& out) { append_subscription_reply(out, kind, &args[i], count); });
        }
        return;
    }
    const auto names = conn_.names(pattern);
    if (names.empty()) {
        conn_.reply_with([&](std::string& out) {
            append_subscription_reply(out, kind, nullptr, conn_.subscription_count());
        });
    }
    for (const std::string& name : names) {
        const std::size_t count = conn_.unsubscribe(name, pattern);
        const std::string_view view = name;
        conn_.reply_with([&](std::string& out) { append_subscription_reply(out, kind, &view, count); });
    }
}

task<> session::pubsub_command(const args_view& args) {
    if (args.size() < 2) {
        wrong_arity(args[0]);
        co_return;
    }
    const std::string_view sub = args[1];
    if (is(sub, "channels") && args.size() <= 3) {
        // Named first: g++ 12 miscompiles a ?: inside a co_await's operands (ASan saw it read
        // past args) — see ARCHITECTURE.md's compiler notes.
        const std::string_view pattern = args.size() == 3 ? args[2] : std::string_view{};
        const auto names = co_await hub_.channels_all(pattern);
        conn_.reply_with([&](std::string& out) {
            resp::append_array(out, names.size());
            for (const auto& n : names) resp::append_bulk(out, n);
        });
    } else if (is(sub, "numsub")) {
        std::vector<std::uint64_t> counts;
        for (std::size_t i = 2; i < args.size(); ++i) counts.push_back(co_await hub_.numsub_all(args[i]));
        conn_.reply_with([&](std::string& out) {
            resp::append_array(out, 2 * counts.size());
            for (std::size_t i = 0; i < counts.size(); ++i) {
                resp::append_bulk(out, args[i + 2]);
                resp::append_integer(out, static_cast<std::int64_t>(counts[i]));
            }
        });
    } else if (is(sub, "numpat") && args.size() == 2) {
        const std::uint64_t n = co_await hub_.numpat_all();
        conn_.reply_with([n](std::string& out) { resp::append_integer(out, static_cast<std::int64_t>(n)); });
    } else {
        error("ERR unknown subcommand or wrong number of arguments for '" + std::string{sub.substr(0, 128)} +
              "'. Try PUBSUB HELP.");
    }
}

task<> session::info() {
    const pubsub::counters c = co_await hub_.stats_all();
    const auto channels = co_await hub_.channels_all({});
    const std::uint64_t patterns = co_await hub_.numpat_all();
    std::string text = format(
        "# Server\r\nredis_version:7.0.0\r\ncoring_pubsub:1\r\nprocess_id:{}\r\ncores:{}\r\n"
        "# Clients\r\nconnected_clients:{}\r\n"
        "# Stats\r\ntotal_connections_received:{}\r\npubsub_channels:{}\r\npubsub_patterns:{}\r\n"
        "subscriptions:{}\r\npublished:{}\r\ndelivered:{}\r\nframes_serialized:{}\r\ncross_core_batches:{}\r\n"
        "gather_sends:{}\r\nslow_subscribers_cut:{}\r\nframes_dropped:{}\r\n",
        ::getpid(), core::current().core_count(), c.connections, c.accepted, channels.size(), patterns,
        c.subscriptions, c.published, c.delivered, c.frames, c.batches_out, c.sends, c.slow_cut, c.dropped);
    if (hub_.has_bus())
        text += format("# Bus\r\nbus_published:{}\r\nbus_publish_failed:{}\r\n"
                       "bus_received:{}\r\nbus_own_dropped:{}\r\nbus_link_down:{}\r\nbus_link_up:{}\r\n",
                       c.bus_published, c.bus_failed, c.bus_received, c.bus_own,
                       c.bus_down, c.bus_up);
    conn_.reply_with([&](std::string& out) { resp::append_bulk(out, text); });
}

void session::hello(const args_view& args) {
    if (args.size() >= 2) {
        int version = 0;
        const auto [end, ec] = std::from_chars(args[1].data(), args[1].data() + args[1].size(), version);
        if (ec != std::errc{} || end != args[1].data() + args[1].size()) {
            error("ERR Protocol version is not an integer or out of range");
            return;
        }
        if (version != 2) {  // RESP3 is not spoken here
            error("NOPROTO sorry, this protocol version is not supported");
            return;
        }
    }
    for (std::size_t i = 2; i + 1 < args.size(); ++i)
        if (is(args[i], "setname")) name_ = std::string{args[++i]};
    conn_.reply_with([&](std::string& out) {  // RESP2 has no map: key, value, key, value...
        resp::append_array(out, 14);
        resp::append_bulk(out, "server");
        resp::append_bulk(out, "redis");
        resp::append_bulk(out, "version");
        resp::append_bulk(out, "7.0.0");
        resp::append_bulk(out, "proto");
        resp::append_integer(out, 2);
        resp::append_bulk(out, "id");
        resp::append_integer(out, static_cast<std::int64_t>(id_));
        resp::append_bulk(out, "mode");
        resp::append_bulk(out, "standalone");
        resp::append_bulk(out, "role");
        resp::append_bulk(out, "master");
        resp::append_bulk(out, "modules");
        resp::append_array(out, 0);
    });
}

void session::client(const args_view& args) {
    if (args.size() < 2) {
        wrong_arity(args[0]);
    } else if (is(args[1], "setname") && args.size() == 3) {
        const bool plain = std::all_of(args[2].begin(), args[2].end(), [](char c) { return c > ' ' && c <= '~'; });
        if (!plain) {
            error("ERR Client names cannot contain spaces, newlines or special characters.");
        } else {
            name_ = std::string{args[2]};
            conn_.reply("+OK\r\n");
        }
    } else if (is(args[1], "getname") && args.size() == 2) {
        if (name_.empty()) conn_.reply("$-1\r\n");
        else conn_.reply_with([&](std::string& out) { resp::append_bulk(out, name_); });
    } else if (is(args[1], "id") && args.size() == 2) {
        conn_.reply_with([&](std::string& out) { resp::append_integer(out, static_cast<std::int64_t>(id_)); });
    } else {
        error("ERR unknown subcommand or wrong number of arguments for '" + std::string{args[1].substr(0, 128)} +
              "'. Try CLIENT HELP.");
    }
}

}  // namespace

namespace {

// What run_buffered leaves in `needed` when the session is over (a QUIT, a malformed command,
// a client that never reads its replies).
constexpr std::size_t session_over = SIZE_MAX;

// Runs the complete commands buffered in `in`, in order, until one is not complete: `needed`
// then says how many bytes it is known to need (0: unknown), or session_over. A task of its
// own, run when bytes came: what parsing and running commands takes (the arguments, the parse
// state, a command's own waits) lives only meanwhile, not in an idle subscriber's frame.
task<> run_buffered(buffered_reader& in, session& s, pubsub::connection& conn, std::size_t max_message,
                    std::size_t& needed, resp::command_progress& progress) {
    resp::limits lim;
    lim.max_bulk = std::min(lim.max_bulk, max_message);
    args_view args;
    std::string scratch;
    for (;;) {
        const resp::parsed p = resp::parse_command(in.peek_text(), args, scratch, lim, &progress);
        if (p.status == resp::parse_status::error) {
            conn.reply_with([&](std::string& out) { resp::append_error(out, p.error); });
            needed = session_over;
            co_return;
        }
        if (p.status != resp::parse_status::complete) {
            needed = p.needed;
            co_return;
        }
        bool go_on = true;
        if (args.empty()) go_on = true;
        else if (session::waits(args[0])) go_on = co_await s.execute(args);
        else go_on = s.run(args);
        in.consume(p.consumed);
        if (!go_on) {
            needed = session_over;
            co_return;
        }
        if (conn.crowded()) {  // a client that does not read its replies waits here
            auto room = co_await conn.room();
            if (!room) {
                needed = session_over;
                co_return;
            }
        }
    }
}

}  // namespace

task<> resp_session(tcp_stream stream, pubsub::hub& hub, const pubsub_options& opts, std::uint64_t id) {
    pubsub::connection conn{hub, stream, pubsub::format::resp};
    task_group writer;
    writer.spawn(conn.write_loop());
    {
        // Reads until the peer quits or goes away, or sends a malformed command (then the error
        // is the last reply, as redis-server does). An idle subscriber waits here, in fill():
        // the commands run in a task of their own (run_buffered). A command must fit whole: the
        // largest message plus its framing.
        buffered_reader in{stream, opts.max_message + 64 * 1024};
        session s{conn, hub, id};
        std::size_t needed = 0;  // a command known to need this many bytes: no parse before
        resp::command_progress progress;  // how far an incomplete command was checked
        for (;;) {
            if (needed <= in.buffered()) {
                co_await run_buffered(in, s, conn, opts.max_message, needed, progress);
                if (needed == session_over) break;
            }
            auto got = co_await in.fill();
            if (!got && got.error() == std::errc::message_size) {
                conn.reply("-ERR Protocol error: command bigger than --max-message\r\n");
                break;
            }
            if (!got || *got == 0) break;  // gone, reset, cut or stopping
        }
    }
    conn.close_output();  // what is queued still goes out (QUIT's +OK, a protocol error)
    co_await writer.join();
    co_await stream.close();
}

}  // namespace coring::apps::pubsub_detail
