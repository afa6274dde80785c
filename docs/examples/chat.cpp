// chat: a line-based chat server on every core. Each line a client sends reaches every other
// client, on whichever core it is connected. Shows: a sharded<T> built in run()'s setup phase,
// invoke_on_all across cores (with a named lambda: see the compiler notes in ARCHITECTURE.md),
// a bounded channel per client (a client that stops reading is cut, never waited for), and an
// idle timeout. Try it: chat --cores 2, then `nc 127.0.0.1 7300` in a few terminals.
#include <coring/channel.hpp>
#include <coring/coring.hpp>
#include <coring/log.hpp>

#include <map>
#include <sys/socket.h>
#include <string>

using namespace coring;
using namespace std::chrono_literals;

struct member {
    channel<std::string> outbox{256};  // lines on their way to this client; full: it is cut
    int fd;                            // to cut it: shutdown ends its send and receive at once
};

struct room {  // one per core: the clients connected to that core
    std::map<std::uint64_t, member*> members;
    void deliver(const std::string& line, std::uint64_t from) {
        for (auto& [id, m] : members)
            if (id != from && !m->outbox.try_send(std::string{line})) {
                m->outbox.close();
                ::shutdown(m->fd, SHUT_RDWR);  // too slow: never waited for
            }
    }
};

sharded<room> rooms;

task<> send_lines(tcp_stream& conn, member& me) {  // the only task that sends on conn
    for (;;) {
        auto line = co_await me.outbox.receive();
        if (!line) break;  // closed: the client left, or it was too slow and is cut
        auto sent = co_await conn.write_all(std::as_bytes(std::span{*line}));
        if (!sent) break;
    }
    (void)co_await conn.shutdown(SHUT_RDWR);  // ends the reader too
}

task<> client(tcp_stream conn, std::uint64_t id) {
    conn.set_idle_timeout(10min);
    member me{.fd = conn.fd()};
    rooms.local().members[id] = &me;
    task_group writer;
    writer.spawn(send_lines(conn, me));
    std::string pending;
    for (;;) {
        auto data = co_await conn.recv_lease();
        if (!data || data->empty()) break;
        pending.append(reinterpret_cast<const char*>(data->data().data()), data->size());
        for (std::size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
            auto deliver = [line = pending.substr(0, nl + 1), id](room& r) { r.deliver(line, id); };
            pending.erase(0, nl + 1);
            co_await rooms.invoke_on_all(deliver);
        }
        if (pending.size() > 4096) break;  // a line longer than that: not a chat client
    }
    rooms.local().members.erase(id);
    me.outbox.close();
    co_await writer.join();
    co_await conn.close();
}

int main(int argc, char** argv) {
    address listen = address::ipv4_loopback(7300);
    const auto opts = runtime_options::from_args(
        argc, argv,
        [&](std::string_view flag, std::string_view value) {
            if (flag != "--listen") return false;
            listen = address::parse(value).value();
            return true;
        },
        "usage: chat [--listen ADDR] [runtime flags]\nEvery line a client sends goes to every other client.");
    return run(
        opts, [](core& c) -> task<> {  // setup: the rooms exist on every core before anyone connects
            if (c.id() == 0) co_await rooms.start([] { return room{}; });
        },
        [&](core& c) -> task<> {
            auto listener = tcp_listener::bind(listen, {.reuse_port = true});
            if (!listener) throw std::system_error(listener.error(), "bind " + listen.to_string());
            if (c.id() == 0) log("chat listening on {}", listen.to_string());
            accept_pacer pacer{"accept"};  // out of fds: pauses and tries again, never stops serving
            for (std::uint64_t n = 0;; ++n) {
                auto conn = co_await pacer.next(*listener);
                if (!conn) break;  // stopping
                c.spawn(client(std::move(*conn), std::uint64_t{c.id()} << 48 | n));
            }
        });
}
