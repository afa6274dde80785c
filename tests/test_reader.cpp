// buffered_reader over real sockets: messages that straddle pool buffers come out whole and in
// order, the spill stays within its bound, and the end of the stream inside a message is told
// apart from one between messages. Small pool buffers (64 B) make every case straddle.
#include "support.hpp"

#include <coring/reader.hpp>

#include <string>
#include <sys/socket.h>

using namespace coring;
using namespace coring::testing;

namespace {

std::string text_of(std::span<const std::byte> bytes) { return {reinterpret_cast<const char*>(bytes.data()), bytes.size()}; }

// Lines of 1..150 bytes, each ending in '\n': many longer than one 64-byte buffer.
std::string numbered_lines(int count) {
    std::string all;
    for (int i = 0; i < count; ++i) all += std::to_string(i) + ':' + std::string(static_cast<std::size_t>(i * 37 % 150), 'x') + '\n';
    return all;
}

unsigned buffers_in_use() {
    const backend& io = core::current().io();
    return io.buffer_count() - io.buffers_free();
}

// Sends `bytes` in one write_all, then closes the sending side.
task<> send_and_shut(tcp_stream* to, const std::string* bytes) {
    CO_REQUIRE(co_await to->write_all(as_bytes(*bytes)));
    CO_REQUIRE(co_await to->shutdown(SHUT_WR));
}

}  // namespace

TEST_CASE("buffered_reader: lines that straddle buffers come out whole and in order", "[tcp][reader]") {
    const auto setup = GENERATE(LEASE_SETUPS);
    INFO(describe(setup));
    test_core c{config_of(setup, 64, 64)};
    c.run_for(20s, []() -> task<> {
        auto [client, server] = co_await connected_pair();
        const std::string sent = numbered_lines(500);
        task_group group;
        group.spawn(send_and_shut(&client, &sent));
        buffered_reader reader{server, 1024};
        std::string got;
        for (;;) {
            auto line = co_await reader.read_until("\n", 200);
            REQUIRE(line);
            if (line->empty()) break;  // the end, between lines
            REQUIRE(line->back() == std::byte{'\n'});
            got += text_of(*line);
            reader.consume(line->size());
        }
        CHECK(got == sent);
        CHECK(reader.at_end());
        CHECK(buffers_in_use() == 0);  // nothing held once everything is consumed
        co_await group.join();
        co_await client.close();
        co_await server.close();
    }());
}

TEST_CASE("buffered_reader: read_exact and peek across buffers", "[tcp][reader]") {
    const auto setup = GENERATE(LEASE_SETUPS);
    INFO(describe(setup));
    test_core c{config_of(setup, 64, 64)};
    c.run_for(20s, []() -> task<> {
        auto [client, server] = co_await connected_pair();
        const auto data = random_bytes(5000, 3);
        const std::string sent(reinterpret_cast<const char*>(data.data()), data.size());
        task_group group;
        group.spawn(send_and_shut(&client, &sent));
        buffered_reader reader{server, 1024};
        std::string got;
        std::size_t n = 1;
        while (got.size() < sent.size()) {
            const std::size_t want = std::min(n, sent.size() - got.size());
            auto piece = co_await reader.read_exact(want);
            REQUIRE(piece);
            REQUIRE(piece->size() == want);
            got += text_of(*piece);
            reader.consume(want);
            n = n * 3 % 1000 + 1;  // 1, 4, 13, 40, 121, 364, 93, ...: within and across buffers
        }
        CHECK(got == sent);
        auto after = co_await reader.read_exact(1);
        REQUIRE(after);
        CHECK(after->empty());  // the end of the stream, between messages
        co_await group.join();
        co_await client.close();
        co_await server.close();
    }());
}

TEST_CASE("buffered_reader: a half-sent message waits in the spill, holding no pool buffer", "[tcp][reader]") {
    // A thousand peers that each send half a request head and stall (slowloris) would otherwise
    // hold a thousand receive buffers: the whole default pool.
    const auto setup = GENERATE(LEASE_SETUPS);
    INFO(describe(setup));
    test_core c{config_of(setup, 64, 1024)};
    c.run_for(20s, []() -> task<> {
        auto [client, server] = co_await connected_pair();
        buffered_reader reader{server, 4096};
        CO_REQUIRE(co_await client.write_all(as_bytes("GET / HTTP/1.1\r\nHost: a")));
        task_group group;
        std::size_t held_while_waiting = 99;
        group.spawn([](tcp_stream* to, std::size_t* held) -> task<> {
            CO_REQUIRE(co_await sleep_for(50ms));  // the reader waits for the rest by now
            *held = buffers_in_use();
            CO_REQUIRE(co_await to->write_all(as_bytes("\r\n\r\n")));
        }(&client, &held_while_waiting));
        auto head = co_await reader.read_until("\r\n\r\n", 1024);
        REQUIRE(head);
        CHECK(text_of(*head) == "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        CHECK(held_while_waiting == 0);
        reader.consume(head->size());
        CHECK(buffers_in_use() == 0);
        co_await group.join();
        co_await client.close();
        co_await server.close();
    }());
}

TEST_CASE("buffered_reader: pool buffers bigger than the spill limit still join a straddling message", "[tcp][reader]") {
    const auto setup = GENERATE(LEASE_SETUPS);
    INFO(describe(setup));
    test_core c{config_of(setup, 64, 4096)};
    c.run_for(20s, []() -> task<> {
        auto [client, server] = co_await connected_pair();
        buffered_reader reader{server, 256};
        // A line's first 100 bytes, alone; then its end and 2,000 bytes more in one receive.
        CO_REQUIRE(co_await client.write_all(as_bytes(std::string(100, 'a'))));
        auto first = co_await reader.fill();
        REQUIRE(first);
        REQUIRE(reader.buffered() == 100);  // a loopback send of 100 bytes is one receive
        std::string rest(50, 'b');  // appends, not operator+: g++ 12 warns wrongly on those in a coroutine
        rest.append(1, '\n').append(2000, 'c');
        CO_REQUIRE(co_await client.write_all(as_bytes(rest)));
        auto line = co_await reader.read_until("\n", 200);
        REQUIRE(line);  // the spill took one receive past its limit: no message_size
        std::string want(100, 'a');
        want.append(50, 'b').append(1, '\n');
        CHECK(text_of(*line) == want);
        reader.consume(line->size());
        // The line after it, with no end in sight, is refused within the limit and one receive.
        CO_REQUIRE(co_await client.write_all(as_bytes(std::string(3000, 'c'))));
        CO_REQUIRE(co_await client.shutdown(SHUT_WR));
        auto never = co_await reader.read_until("\n", 100000);
        REQUIRE_FALSE(never);
        CHECK(never.error() == std::errc::message_size);
        CHECK(reader.buffered() < 256 + 4096);
        co_await client.close();
        co_await server.close();
    }());
}

TEST_CASE("buffered_reader: bounds and a stream that ends inside a message", "[tcp][reader]") {
    const auto setup = GENERATE(LEASE_SETUPS);
    INFO(describe(setup));
    test_core c{config_of(setup, 64, 64)};
    c.run_for(20s, []() -> task<> {
        {  // no delimiter within max: message_size, whatever the spill could hold
            auto [client, server] = co_await connected_pair();
            const std::string sent(3000, 'a');
            task_group group;
            group.spawn(send_and_shut(&client, &sent));
            buffered_reader reader{server, 64 * 1024};
            auto line = co_await reader.read_until("\r\n\r\n", 1000);
            REQUIRE_FALSE(line);
            CHECK(line.error() == std::errc::message_size);
            CHECK(reader.buffered() <= 1000 + 64);  // it stopped reading once past max
            co_await group.join();
            co_await client.close();
            co_await server.close();
        }
        {  // more than the spill may hold, unconsumed: message_size, never more memory
            auto [client, server] = co_await connected_pair();
            const std::string sent(3000, 'b');
            task_group group;
            group.spawn(send_and_shut(&client, &sent));
            buffered_reader reader{server, 256};
            auto too_big = co_await reader.read_exact(300);
            REQUIRE_FALSE(too_big);
            CHECK(too_big.error() == std::errc::message_size);
            auto line = co_await reader.read_until("\n", 10000);
            REQUIRE_FALSE(line);
            CHECK(line.error() == std::errc::message_size);
            CHECK(reader.buffered() < 256 + 64);  // the limit, passed by at most one 64-byte receive
            co_await group.join();
            co_await client.close();
            co_await server.close();
        }
        {  // the end of the stream inside a message: bad_message, not an empty (clean) end
            auto [client, server] = co_await connected_pair();
            const std::string sent = "complete\npartial";
            task_group group;
            group.spawn(send_and_shut(&client, &sent));
            buffered_reader reader{server};
            auto first = co_await reader.read_until("\n", 100);
            REQUIRE(first);
            CHECK(text_of(*first) == "complete\n");
            reader.consume(first->size());
            auto second = co_await reader.read_until("\n", 100);
            REQUIRE_FALSE(second);
            CHECK(second.error() == std::errc::bad_message);
            CHECK(reader.peek_text() == "partial");  // what did arrive is still there
            co_await group.join();
            co_await client.close();
            co_await server.close();
        }
    }());
}

TEST_CASE("a reader past its with_timeout deadline gets no more bytes (multishot stays armed)", "[tcp][reader][timer]") {
    // The deadline passes while the task waits on something else (a sleep), with a multishot
    // receive still armed and a peer that keeps trickling bytes: the task's next read must fail
    // at once, not take the next byte (it would then read on for as long as the peer trickles).
    const auto setup = GENERATE(LEASE_SETUPS);
    INFO(describe(setup));
    test_core c{config_of(setup)};
    c.run_for(5s, []() -> task<> {
        auto [client, server] = co_await connected_pair();
        task_group group;
        group.spawn([](tcp_stream* to) -> task<> {
            // A byte every 150 ms for 6 s: slower than the deadline, so the receive is still
            // armed (not paused by a full queue) when the reader comes back.
            for (int i = 0; i < 40; ++i) {
                auto sent = co_await to->write_all(as_bytes("x"));
                if (!sent) co_return;
                auto slept = co_await sleep_for(150ms);
                if (!slept) co_return;
            }
        }(&client));
        buffered_reader reader{server};
        auto body = [](buffered_reader* r) -> task<result<std::size_t>> {
            auto first = co_await r->fill();
            if (!first) co_return first;
            (void)co_await sleep_for(300ms);  // the deadline passes here, and ends this wait
            for (;;) {                          // then reads on, as read_until would
                auto more = co_await r->fill();
                if (!more) co_return more;
                r->consume(r->buffered());
            }
        };
        auto got = co_await with_timeout(100ms, body(&reader));
        REQUIRE_FALSE(got);
        CHECK(got.error() == std::errc::timed_out);
        co_await group.cancel_and_join();
        co_await client.close();
        co_await server.close();
    }());
}
