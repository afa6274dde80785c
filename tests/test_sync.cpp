// Waiting between tasks: event, semaphore, mutex, channel, barrier (across cores) and writer,
// on both backends. Order and fairness, back-pressure, close, and every wait ended by a task
// cancel and by with_timeout with the primitive left consistent; no channel value is lost or
// duplicated under random cancels; many tasks share one stream through a writer.
#include "support.hpp"

#include <coring/channel.hpp>
#include <coring/sync.hpp>
#include <coring/writer.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <deque>
#include <random>
#include <string>
#include <sys/socket.h>

using namespace coring;
using namespace coring::testing;

namespace {

// Lets the other tasks run until pred() holds (the test's run_for limit bounds it).
template <class Pred>
task<> until(Pred pred) {
    while (!pred()) co_await yield();
}

// Awaits make() in a task of its own and stores how it ended (no error: it succeeded).
template <class Make>
task<> record(Make make, std::error_code* out) {
    auto r = co_await make();
    *out = r ? std::error_code{} : r.error();
}

const std::error_code not_yet = make_error_code(std::errc::interrupted);


// ---- event, semaphore, mutex -----------------------------------------------------------------

task<> log_when_set(event* e, std::vector<int>* order, int id) {
    const auto r = co_await e->wait();
    CHECK(r);
    order->push_back(id);
}

task<> event_wakes_all() {
    event e;
    std::vector<int> order;
    task_group group;
    for (int i = 0; i < 5; ++i) group.spawn(log_when_set(&e, &order, i));
    co_await until([&] { return e.waiting() == 5; });
    e.set();
    CHECK(order.empty());  // nobody resumed inside set(): they go through the ready queue
    CHECK(e.waiting() == 0);
    co_await group.join();
    CHECK(order == std::vector<int>{0, 1, 2, 3, 4});

    CO_REQUIRE(co_await e.wait());  // set: passes at once
    e.reset();
    CHECK_FALSE(e.is_set());
    group.spawn(log_when_set(&e, &order, 5));
    co_await until([&] { return e.waiting() == 1; });
    co_await yield();
    CHECK(order.size() == 5);  // reset: it waits
    e.set();
    co_await group.join();
    CHECK(order.back() == 5);
}

task<> acquire_and_log(semaphore* s, std::vector<int>* order, int id) {
    const auto r = co_await s->acquire();
    CHECK(r);
    order->push_back(id);
}

task<> semaphore_fifo() {
    semaphore s{0};
    std::vector<int> order;
    task_group group;
    for (int i = 0; i < 5; ++i) group.spawn(acquire_and_log(&s, &order, i));
    co_await until([&] { return s.waiting() == 5; });
    s.release(2);
    CHECK(s.available() == 0);
    CHECK_FALSE(s.try_acquire());  // both permits went to the first two waiters
    co_await until([&] { return order.size() == 2; });
    CHECK(order == std::vector<int>{0, 1});
    s.release();
    CHECK_FALSE(s.try_acquire());  // waiter 2 keeps its place against a newcomer
    s.release(5);                  // waiters 3 and 4, and three spare permits
    CHECK(s.available() == 3);
    co_await group.join();
    CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
    CHECK(s.try_acquire());
    CO_REQUIRE(co_await s.acquire());  // a free permit: no wait
    CHECK(s.available() == 1);
}

task<> locked_section(mutex* m, std::vector<int>* order, int* inside, int id) {
    auto g = co_await m->lock();
    REQUIRE(g);
    CHECK(++*inside == 1);
    order->push_back(id);
    co_await yield();  // held across suspensions
    co_await yield();
    CHECK(--*inside == 0);
}

task<> mutex_fifo_handoff() {
    mutex m;
    std::vector<int> order;
    int inside = 0;
    task_group group;
    auto held = co_await m.lock();
    REQUIRE(held);
    for (int i = 0; i < 5; ++i) group.spawn(locked_section(&m, &order, &inside, i));
    co_await until([&] { return m.waiting() == 5; });
    held->unlock();
    CHECK(m.is_locked());         // handed to the first waiter, not released
    CHECK_FALSE(m.try_lock());    // so a newcomer cannot overtake it
    co_await group.join();
    CHECK(order == std::vector<int>{0, 1, 2, 3, 4});
    CHECK_FALSE(m.is_locked());
    {
        auto g = m.try_lock();
        REQUIRE(g);
        CHECK(m.is_locked());
        mutex::guard moved = std::move(*g);
        CHECK(moved.owns_lock());
    }  // the moved-to guard unlocks
    CHECK_FALSE(m.is_locked());
}

// ---- channel -----------------------------------------------------------------------------------

task<> send_range(channel<int>* ch, int from, int to, int* sent) {
    for (int i = from; i < to; ++i) {
        const auto r = co_await ch->send(i);
        REQUIRE(r);
        ++*sent;
    }
}

task<> channel_order_and_backpressure() {
    channel<int> ch{4};
    int sent = 0;
    task_group group;
    group.spawn(send_range(&ch, 0, 100, &sent));
    co_await until([&] { return ch.waiting_senders() == 1; });
    CHECK(sent == 4);  // full: the fifth send waits
    CHECK(ch.size() == 4);
    for (int i = 0; i < 100; ++i) {
        auto v = co_await ch.receive();
        REQUIRE(v);
        CHECK(*v == i);
        CHECK(ch.size() <= ch.capacity());
    }
    co_await group.join();
    CHECK(sent == 100);
    CHECK(ch.try_receive().error() == std::errc::resource_unavailable_try_again);

    // A receiver that waits is handed the next value directly.
    std::error_code got = not_yet;
    group.spawn(record([&] { return ch.receive(); }, &got));
    co_await until([&] { return ch.waiting_receivers() == 1; });
    CHECK(ch.try_send(7));
    CHECK(ch.size() == 0);
    co_await group.join();
    CHECK(got == std::error_code{});
}

task<> channel_close() {
    channel<int> ch{2};
    CHECK(ch.try_send(1));
    CHECK(ch.try_send(2));
    int three = 3;
    CHECK(ch.try_send(std::move(three)).error() == std::errc::resource_unavailable_try_again);
    std::error_code sender = not_yet;
    task_group group;
    group.spawn(record([&] { return ch.send(3); }, &sender));
    co_await until([&] { return ch.waiting_senders() == 1; });
    ch.close();
    co_await group.join();
    CHECK(sender == std::errc::broken_pipe);  // its value was not enqueued
    CHECK(ch.try_send(4).error() == std::errc::broken_pipe);
    auto a = co_await ch.receive();  // what was queued is still received
    auto b = co_await ch.receive();
    auto end = co_await ch.receive();
    REQUIRE(a);
    REQUIRE(b);
    CHECK(*a == 1);
    CHECK(*b == 2);
    CHECK(end.error() == std::errc::broken_pipe);
    CHECK(ch.try_receive().error() == std::errc::broken_pipe);
    auto late = co_await ch.send(5);
    CHECK(late.error() == std::errc::broken_pipe);

    channel<std::string> empty{1};
    std::error_code receiver = not_yet;
    group.spawn(record([&] { return empty.receive(); }, &receiver));
    co_await until([&] { return empty.waiting_receivers() == 1; });
    empty.close();
    co_await group.join();
    CHECK(receiver == std::errc::broken_pipe);
}

// ---- cancellation of every wait ----------------------------------------------------------------

// Runs make() in a child, cancels the child once it waits (waiting() says so), returns its end.
template <class Make, class Waiting>
task<std::error_code> cancelled_wait(Make make, Waiting waiting) {
    std::error_code ec = not_yet;
    task_group group;
    group.spawn(record(make, &ec));
    co_await until(waiting);
    group.cancel();
    co_await group.join();
    co_return ec;
}

task<> cancel_event_semaphore_mutex() {
    event e;
    auto t = co_await with_timeout(10ms, e.wait());
    CHECK(t.error() == std::errc::timed_out);
    CHECK(e.waiting() == 0);
    auto c = co_await cancelled_wait([&] { return e.wait(); }, [&] { return e.waiting() == 1; });
    CHECK(c == std::errc::operation_canceled);
    CHECK(e.waiting() == 0);
    e.set();
    CO_REQUIRE(co_await e.wait());

    semaphore s{0};
    auto st = co_await with_timeout(10ms, s.acquire());
    CHECK(st.error() == std::errc::timed_out);
    auto sc = co_await cancelled_wait([&] { return s.acquire(); }, [&] { return s.waiting() == 1; });
    CHECK(sc == std::errc::operation_canceled);
    s.release();
    CHECK(s.available() == 1);  // nobody gone took it
    CHECK(s.waiting() == 0);
    CHECK(s.try_acquire());

    // Granted, then cancelled before it ran: a result that was reached stays a result.
    std::error_code granted = not_yet;
    task_group group;
    group.spawn(record([&] { return s.acquire(); }, &granted));
    co_await until([&] { return s.waiting() == 1; });
    s.release();
    group.cancel();
    co_await group.join();
    CHECK(granted == std::error_code{});  // it holds the permit
    CHECK(s.available() == 0);

    mutex m;
    auto held = m.try_lock();
    REQUIRE(held);
    auto mt = co_await with_timeout(10ms, m.lock());
    CHECK(mt.error() == std::errc::timed_out);
    auto mc = co_await cancelled_wait([&] { return m.lock(); }, [&] { return m.waiting() == 1; });
    CHECK(mc == std::errc::operation_canceled);
    held->unlock();
    CHECK_FALSE(m.is_locked());  // no waiter left to hand it to
    auto again = co_await m.lock();
    CHECK(again);
}

task<> cancel_channel() {
    channel<int> full{2};
    CHECK(full.try_send(1));
    CHECK(full.try_send(2));
    auto st = co_await with_timeout(10ms, full.send(3));
    CHECK(st.error() == std::errc::timed_out);
    auto sc = co_await cancelled_wait([&] { return full.send(4); }, [&] { return full.waiting_senders() == 1; });
    CHECK(sc == std::errc::operation_canceled);
    CHECK(full.size() == 2);  // neither 3 nor 4 went in
    CHECK(*full.try_receive() == 1);
    CHECK(*full.try_receive() == 2);
    CHECK(full.try_receive().error() == std::errc::resource_unavailable_try_again);

    channel<int> empty{2};
    auto rt = co_await with_timeout(10ms, empty.receive());
    CHECK(rt.error() == std::errc::timed_out);
    auto rc = co_await cancelled_wait([&] { return empty.receive(); }, [&] { return empty.waiting_receivers() == 1; });
    CHECK(rc == std::errc::operation_canceled);
    CHECK(empty.try_send(9));
    CHECK(empty.size() == 1);  // into the ring: no receiver is left to take it
}

// In a task that is already cancelled, every wait fails at once, even one that could complete.
task<> waits_after_cancel(event* e, channel<int>* ch, mutex* m, semaphore* s, int* refused) {
    auto slept = co_await sleep_for(1h);  // ended by the cancel
    CHECK(slept.error() == std::errc::operation_canceled);
    if (auto r = co_await e->wait(); r.error() == std::errc::operation_canceled) ++*refused;
    if (auto r = co_await ch->receive(); r.error() == std::errc::operation_canceled) ++*refused;
    if (auto r = co_await ch->send(2); r.error() == std::errc::operation_canceled) ++*refused;
    if (auto r = co_await m->lock(); r.error() == std::errc::operation_canceled) ++*refused;
    if (auto r = co_await s->acquire(); r.error() == std::errc::operation_canceled) ++*refused;
}

task<> cancelled_task_waits_fail() {
    event e{true};
    channel<int> ch{4};
    CHECK(ch.try_send(1));
    mutex m;
    semaphore s{1};
    int refused = 0;
    task_group group;
    group.spawn(waits_after_cancel(&e, &ch, &m, &s, &refused));
    co_await yield();
    co_await group.cancel_and_join();
    CHECK(refused == 5);
    CHECK(ch.size() == 1);  // nothing taken, nothing added
    CHECK_FALSE(m.is_locked());
    CHECK(s.available() == 1);
}

// ---- channel under random timeouts and cancels ---------------------------------------------------

struct shuffle_totals {
    int send_timeouts = 0;
    int receive_timeouts = 0;
    int cancelled_receivers = 0;
};

task<> timed_producer(channel<int>* ch, int id, int count, unsigned seed, shuffle_totals* totals) {
    std::mt19937 gen{seed};
    std::uniform_int_distribution<int> us{0, 200};
    for (int k = 0; k < count;) {
        auto r = co_await with_timeout(std::chrono::microseconds{us(gen)}, ch->send(id * 1'000'000 + k));
        if (r) {
            ++k;  // sent exactly once; a timed-out send did not enqueue, so it is sent again
            continue;
        }
        REQUIRE(r.error() == std::errc::timed_out);
        ++totals->send_timeouts;
    }
}

task<> timed_consumer(channel<int>* ch, std::vector<int>* got, unsigned seed, shuffle_totals* totals) {
    std::mt19937 gen{seed};
    std::uniform_int_distribution<int> us{0, 300};
    for (int n = 0;; ++n) {
        auto v = co_await with_timeout(std::chrono::microseconds{us(gen)}, ch->receive());
        if (v) {
            got->push_back(*v);
            if (n % 64 == 0) co_await yield();
            continue;
        }
        if (v.error() == std::errc::broken_pipe) co_return;  // closed and drained
        if (v.error() == std::errc::operation_canceled) {
            ++totals->cancelled_receivers;
            co_return;
        }
        REQUIRE(v.error() == std::errc::timed_out);
        ++totals->receive_timeouts;
    }
}

task<> channel_random_cancels() {
    constexpr int producers = 4;
    constexpr int per_producer = 3000;
    channel<int> ch{8};
    shuffle_totals totals;
    std::deque<std::vector<int>> got;  // one per consumer, stable addresses
    task_group sending;
    task_group steady;
    for (int p = 0; p < producers; ++p) sending.spawn(timed_producer(&ch, p, per_producer, 100u + unsigned(p), &totals));
    CO_REQUIRE(co_await sleep_for(5ms));  // nobody receives yet: sends time out against a full channel
    for (int c = 0; c < 2; ++c) steady.spawn(timed_consumer(&ch, &got.emplace_back(), 200u + unsigned(c), &totals));
    std::mt19937 gen{7};
    std::uniform_int_distribution<int> us{0, 2000};
    for (unsigned round = 0; sending.size() > 0; ++round) {  // consumers that come and are cancelled
        task_group churn;
        for (int c = 0; c < 3; ++c) churn.spawn(timed_consumer(&ch, &got.emplace_back(), 300u + round * 3 + unsigned(c), &totals));
        CO_REQUIRE(co_await sleep_for(std::chrono::microseconds{us(gen)}));
        co_await churn.cancel_and_join();
    }
    co_await sending.join();
    CO_REQUIRE(co_await sleep_for(2ms));  // the steady consumers drain, then time out on an empty channel
    ch.close();
    co_await steady.join();

    std::vector<int> all;
    for (const auto& g : got) {
        all.insert(all.end(), g.begin(), g.end());
        std::array<int, producers> last;  // each consumer sees each producer's values in order
        last.fill(-1);
        for (int v : g) {
            CHECK(v % 1'000'000 > last[v / 1'000'000]);
            last[v / 1'000'000] = v % 1'000'000;
        }
    }
    std::sort(all.begin(), all.end());
    std::vector<int> expected;
    for (int p = 0; p < producers; ++p)
        for (int k = 0; k < per_producer; ++k) expected.push_back(p * 1'000'000 + k);
    CHECK(all.size() == expected.size());
    CHECK(all == expected);  // none lost, none twice
    CHECK(totals.send_timeouts > 0);
    CHECK(totals.receive_timeouts > 0);
    CHECK(totals.cancelled_receivers > 0);
}

// A same-core send and receive are awaiters in the tasks' frames: no frame per message.
task<> receive_count(channel<int>* ch, long* sum) {
    for (;;) {
        auto v = co_await ch->receive();
        if (!v) co_return;
        *sum += *v;
    }
}

task<> channel_allocates_nothing_per_message(std::size_t* frames) {
    channel<int> ch{1};
    long sum = 0;
    task_group group;
    group.spawn(receive_count(&ch, &sum));
    co_await yield();
    const auto before = detail::frame_allocator_stats();
    for (int i = 0; i < 10'000; ++i) {
        const auto r = co_await ch.send(i);
        if (!r) break;
    }
    *frames = detail::frame_allocator_stats().allocations - before.allocations;
    ch.close();
    co_await group.join();
    CHECK(sum == 9'999L * 10'000 / 2);
}

// ---- barrier -------------------------------------------------------------------------------------

task<> barrier_walker(barrier* b, std::vector<int>* arrived, int phases, int* wrong) {
    for (int p = 0; p < phases; ++p) {
        ++(*arrived)[std::size_t(p)];
        const auto r = co_await b->arrive_and_wait();
        if (!r || (*arrived)[std::size_t(p)] != int(b->expected())) ++*wrong;
        if (p % 3 == 0) co_await yield();
    }
}

task<> barrier_one_core() {
    barrier b{4};
    std::vector<int> arrived(20, 0);
    int wrong = 0;
    task_group group;
    for (int i = 0; i < 4; ++i) group.spawn(barrier_walker(&b, &arrived, 20, &wrong));
    co_await group.join();
    CHECK(wrong == 0);
    CHECK(b.phase() == 20);

    // A waiter that times out has still arrived: the next arrival completes the phase.
    barrier pair{2};
    auto t = co_await with_timeout(10ms, pair.arrive_and_wait());
    CHECK(t.error() == std::errc::timed_out);
    CHECK(pair.phase() == 0);
    CO_REQUIRE(co_await pair.arrive_and_wait());  // the second arrival: no wait
    CHECK(pair.phase() == 1);
    std::error_code cancelled = not_yet;
    group.spawn(record([&] { return pair.arrive_and_wait(); }, &cancelled));
    co_await yield();
    co_await group.cancel_and_join();
    CHECK(cancelled == std::errc::operation_canceled);
}

struct cross_barrier {
    static constexpr int tasks_per_core = 3;
    static constexpr int phases = 50;
    barrier b{2 * tasks_per_core};
    std::array<std::atomic<int>, phases> arrived{};
    std::atomic<int> wrong{0};
};

task<> cross_walker(cross_barrier* s, unsigned core_id) {
    for (int p = 0; p < cross_barrier::phases; ++p) {
        s->arrived[std::size_t(p)].fetch_add(1);
        const auto r = co_await s->b.arrive_and_wait();
        // Every task of both cores arrived before any leaves the phase.
        if (!r || s->arrived[std::size_t(p)].load() != 2 * cross_barrier::tasks_per_core) s->wrong.fetch_add(1);
        if ((p + core_id) % 4 == 0) co_await yield();  // vary which core arrives last
    }
}

task<> cross_main(core& c, cross_barrier* s) {
    task_group group;
    for (int i = 0; i < cross_barrier::tasks_per_core; ++i) group.spawn(cross_walker(s, c.id()));
    co_await group.join();
}

struct cross_timeout {
    barrier b{2};
    std::atomic<int> stage{0};
    std::atomic<int> ok{0};
};

task<> cross_timeout_main(core& c, cross_timeout* s) {
    if (c.id() == 0) {
        auto t = co_await with_timeout(20ms, s->b.arrive_and_wait());
        if (t.error() == std::errc::timed_out && s->b.phase() == 0) s->ok.fetch_add(1);
        s->stage.store(1);
        while (s->stage.load() != 2) (void)co_await sleep_for(1ms);
        (void)co_await sleep_for(10ms);  // core 1 is waiting in phase 1 by now (either way is correct)
        if (auto r = co_await s->b.arrive_and_wait(); r) s->ok.fetch_add(1);
    } else {
        while (s->stage.load() != 1) (void)co_await sleep_for(1ms);
        // Core 0's timed-out arrival counts: this one completes phase 0 without waiting.
        if (auto r = co_await s->b.arrive_and_wait(); r && s->b.phase() == 1) s->ok.fetch_add(1);
        s->stage.store(2);
        if (auto r = co_await s->b.arrive_and_wait(); r) s->ok.fetch_add(1);  // woken by core 0's mail
    }
}

// ---- writer --------------------------------------------------------------------------------------

constexpr std::size_t header_size = 7;  // writer id (1), sequence (4), body length (2)
constexpr std::size_t max_body = 300;

std::size_t body_size(unsigned id, std::uint32_t seq) { return 1 + (id * 31 + seq * 17) % max_body; }
std::byte body_byte(unsigned id, std::uint32_t seq, std::size_t j) { return std::byte((id * 7 + seq * 13 + j) & 0xff); }

std::size_t make_message(std::array<std::byte, header_size + max_body>& buf, unsigned id, std::uint32_t seq) {
    const std::size_t len = body_size(id, seq);
    buf[0] = std::byte(id);
    for (int i = 0; i < 4; ++i) buf[1 + std::size_t(i)] = std::byte(seq >> (8 * i));
    buf[5] = std::byte(len & 0xff);
    buf[6] = std::byte(len >> 8);
    for (std::size_t j = 0; j < len; ++j) buf[header_size + j] = body_byte(id, seq, j);
    return header_size + len;
}

struct stream_check {
    std::vector<std::uint32_t> next;  // per writer: the sequence number expected next
    std::size_t messages = 0;
    std::size_t bad = 0;
    std::size_t written_when_reading_began = 0;
};

task<> write_messages(writer* w, unsigned id, std::uint32_t count, std::size_t* written, std::size_t* peak) {
    std::array<std::byte, header_size + max_body> buf;
    for (std::uint32_t seq = 0; seq < count; ++seq) {
        const std::size_t len = make_message(buf, id, seq);
        const auto r = co_await w->write(std::span(buf.data(), len));
        REQUIRE(r);
        ++*written;
        *peak = std::max(*peak, w->queued());
    }
}

// Reads until EOF, checking each message whole and each writer's messages in order.
task<> read_messages(tcp_stream* in, stream_check* check, const std::size_t* written) {
    CO_REQUIRE(co_await sleep_for(50ms));  // the writers run into back-pressure meanwhile
    check->written_when_reading_began = *written;
    std::vector<std::byte> buf(64 * 1024);
    std::vector<std::byte> data;
    std::size_t at = 0;
    for (;;) {
        auto n = co_await in->recv(buf);
        REQUIRE(n);
        if (*n == 0) break;
        data.erase(data.begin(), data.begin() + std::ptrdiff_t(at));
        at = 0;
        data.insert(data.end(), buf.begin(), buf.begin() + std::ptrdiff_t(*n));
        while (data.size() - at >= header_size) {
            const std::byte* m = data.data() + at;
            const unsigned id = unsigned(m[0]);
            std::uint32_t seq = 0;
            for (int i = 0; i < 4; ++i) seq |= std::uint32_t(m[1 + i]) << (8 * i);
            const std::size_t len = std::size_t(m[5]) | std::size_t(m[6]) << 8;
            if (data.size() - at < header_size + len) break;
            bool good = id < check->next.size() && seq == check->next[id] && len == body_size(id, seq);
            for (std::size_t j = 0; good && j < len; ++j) good = m[header_size + j] == body_byte(id, seq, j);
            if (!good) {
                ++check->bad;
                co_return;  // the stream is out of step from here on
            }
            ++check->next[id];
            ++check->messages;
            at += header_size + len;
        }
    }
    CHECK(at == data.size());  // nothing cut off at the end
}

void shrink_buffers(tcp_stream& sender, tcp_stream& receiver) {
    const int small = 16 * 1024;  // much smaller and loopback TCP crawls on delayed ACKs
    REQUIRE(::setsockopt(sender.fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small) == 0);
    REQUIRE(::setsockopt(receiver.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small) == 0);
}

task<> writer_many_tasks_one_stream() {
    constexpr unsigned tasks = 8;
    constexpr std::uint32_t per_task = 1000;
    constexpr std::size_t limit = 4096;
    auto [client, server] = co_await connected_pair();
    shrink_buffers(client, server);
    writer w{client, limit};
    stream_check check;
    check.next.assign(tasks, 0);
    std::size_t written = 0;
    std::size_t peak = 0;
    task_group reader;
    task_group writers;
    reader.spawn(read_messages(&server, &check, &written));
    for (unsigned i = 0; i < tasks; ++i) writers.spawn(write_messages(&w, i, per_task, &written, &peak));
    co_await writers.join();
    CO_REQUIRE(co_await w.flush());
    CHECK(w.queued() == 0);
    CO_REQUIRE(co_await w.close());
    CO_REQUIRE(co_await client.shutdown());
    co_await reader.join();

    CHECK(check.bad == 0);
    CHECK(check.messages == tasks * per_task);
    for (auto n : check.next) CHECK(n == per_task);
    CHECK(written == tasks * per_task);
    CHECK(check.written_when_reading_began < tasks * per_task);  // the writers were held back
    CHECK(peak < limit + header_size + max_body);                // by the writer's bound
    CHECK(w.sends() < tasks * per_task);                         // and their writes were coalesced
}

constexpr std::array<std::string_view, 8> texts{"zero,", "one,", "two,", "three,", "four,", "five,", "six,", "seven."};

task<> write_text(writer* w, std::string_view text) {
    const auto r = co_await w->write(text);
    CHECK(r);
}

// With the default bound, one send; with a bound of 0 (taken as 1), a send per write, in order.
task<> writer_coalesces_a_turn(std::size_t limit) {
    auto [client, server] = co_await connected_pair();
    writer w{client, limit};
    co_await yield();  // the flusher starts and waits
    task_group group;
    for (auto t : texts) group.spawn(write_text(&w, t));  // all run in one turn
    co_await group.join();
    CO_REQUIRE(co_await w.flush());
    CHECK(w.sends() == (limit == 0 ? texts.size() : 1));
    CO_REQUIRE(co_await w.close());
    CO_REQUIRE(co_await client.shutdown());
    std::string all;
    std::array<std::byte, 256> buf;
    for (;;) {
        auto n = co_await server.recv(buf);
        REQUIRE(n);
        if (*n == 0) break;
        all.append(reinterpret_cast<const char*>(buf.data()), *n);
    }
    CHECK(all == "zero,one,two,three,four,five,six,seven.");
}

task<> write_until_error(writer* w, std::error_code* out) {
    std::vector<std::byte> chunk(2048, std::byte{'x'});
    for (;;) {
        const auto r = co_await w->write(chunk);
        if (!r) {
            *out = r.error();
            co_return;
        }
    }
}

bool is_peer_gone(std::error_code ec) {
    return ec == std::errc::broken_pipe || ec == std::errc::connection_reset;
}

task<> writer_error_reaches_everyone() {
    auto [client, server] = co_await connected_pair();
    shrink_buffers(client, server);
    writer w{client, 4096};
    const std::vector<std::byte> block(4 << 20);  // far more than the kernel's buffers take
    CO_REQUIRE(co_await w.write(block));
    std::array<std::error_code, 4> errors;
    errors.fill(not_yet);
    task_group writers;
    for (auto& e : errors) writers.spawn(write_until_error(&w, &e));
    co_await until([&] { return w.waiting_writes() == errors.size(); });
    CO_REQUIRE(co_await sleep_for(10ms));  // the flusher's send waits in the kernel
    co_await server.close();  // unread data: the close resets the connection
    co_await writers.join();
    for (auto e : errors) CHECK(is_peer_gone(e));
    CHECK(is_peer_gone(w.error()));
    auto later = co_await w.write(std::string_view{"late"});
    CHECK(later.error() == w.error());
    auto flushed = co_await w.flush();
    CHECK(flushed.error() == w.error());
    auto closed = co_await w.close();
    CHECK(closed.error() == w.error());
}

std::vector<std::byte> numbered_chunk(std::uint32_t index) {
    std::vector<std::byte> chunk(1024);
    for (std::size_t i = 0; i < chunk.size(); i += 4)
        for (int b = 0; b < 4; ++b) chunk[i + std::size_t(b)] = std::byte(index >> (8 * b));
    return chunk;
}

// Reads chunks until EOF; they must be numbered 0, 1, 2, ... with nothing else in between.
task<> read_chunks(tcp_stream* in, std::uint32_t* count, bool* in_order) {
    std::vector<std::byte> data;
    std::array<std::byte, 16384> buf;
    for (;;) {
        auto n = co_await in->recv(buf);
        REQUIRE(n);
        if (*n == 0) break;
        data.insert(data.end(), buf.begin(), buf.begin() + std::ptrdiff_t(*n));
    }
    *in_order = data.size() % 1024 == 0;
    for (std::size_t at = 0; *in_order && at < data.size(); at += 1024) {
        *in_order = std::equal(data.begin() + std::ptrdiff_t(at), data.begin() + std::ptrdiff_t(at + 1024),
                               numbered_chunk(*count).begin());
        ++*count;
    }
}

task<> writer_waits_are_cancellable() {
    auto [client, server] = co_await connected_pair();
    shrink_buffers(client, server);
    writer w{client, 1024};
    // One write far bigger than the kernel's buffers (it goes in: the queue is empty) and nobody
    // reads, so the next write must wait for room for as long as this test lasts.
    constexpr std::uint32_t accepted = 4096;
    std::vector<std::byte> block;
    for (std::uint32_t i = 0; i < accepted; ++i) {
        const auto c = numbered_chunk(i);
        block.insert(block.end(), c.begin(), c.end());
    }
    CO_REQUIRE(co_await w.write(block));
    const auto chunk = numbered_chunk(accepted);
    auto t = co_await with_timeout(30ms, w.write(chunk));
    CHECK(t.error() == std::errc::timed_out);
    CHECK(w.waiting_writes() == 0);
    auto c = co_await cancelled_wait([&] { return w.write(chunk); }, [&] { return w.waiting_writes() == 1; });
    CHECK(c == std::errc::operation_canceled);
    CHECK(w.waiting_writes() == 0);
    auto f = co_await with_timeout(10ms, w.flush());
    CHECK(f.error() == std::errc::timed_out);
    CHECK(!w.error());  // the writer is fine; the reader below sees neither chunk went in

    // The reader comes: the same chunk number goes in now, and it is the next one received.
    std::uint32_t received = 0;
    bool in_order = false;
    task_group reader;
    reader.spawn(read_chunks(&server, &received, &in_order));
    CO_REQUIRE(co_await w.write(chunk));
    CO_REQUIRE(co_await w.flush());
    CO_REQUIRE(co_await w.close());
    CO_REQUIRE(co_await client.shutdown());
    co_await reader.join();
    CHECK(in_order);
    CHECK(received == accepted + 1);
}

task<> writer_close_under_timeout() {
    auto [client, server] = co_await connected_pair();
    shrink_buffers(client, server);
    writer w{client, 1024};
    const std::vector<std::byte> block(4 << 20);  // far more than the kernel's buffers take
    CO_REQUIRE(co_await w.write(block));
    std::error_code filler = not_yet;
    task_group group;
    group.spawn(write_until_error(&w, &filler));
    co_await until([&] { return w.waiting_writes() == 1; });
    // Nobody reads, so the queue never drains: the deadline cancels the flusher, and close
    // still returns only once it has ended (the writer may be destroyed right after).
    auto closed = co_await with_timeout(30ms, w.close());
    CHECK(closed.error() == std::errc::timed_out);
    co_await group.join();
    CHECK(filler == std::errc::broken_pipe);  // closed while it waited for room
    auto later = co_await w.write(std::string_view{"late"});
    CHECK(!later);
}

}  // namespace

TEST_CASE("event: set wakes every waiter in order, through the ready queue; reset", "[sync]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    c.run_for(5s, event_wakes_all());
}

TEST_CASE("semaphore: permits go to waiters first come first served", "[sync]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    c.run_for(5s, semaphore_fifo());
}

TEST_CASE("mutex: one holder at a time, FIFO handoff, the guard unlocks", "[sync]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    c.run_for(5s, mutex_fifo_handoff());
}

TEST_CASE("channel: FIFO order, a full channel holds its sender back, receivers are handed values", "[sync]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    c.run_for(5s, channel_order_and_backpressure());
}

TEST_CASE("channel: close fails waiting senders, queued values drain, then broken_pipe", "[sync]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    c.run_for(5s, channel_close());
    CHECK_THROWS_AS(channel<int>{0}, std::invalid_argument);
}

TEST_CASE("event, semaphore, mutex: a wait ends with ETIMEDOUT or ECANCELED and leaves no trace", "[sync]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    c.run_for(5s, cancel_event_semaphore_mutex());
}

TEST_CASE("channel: a timed-out or cancelled send enqueues nothing, such a receive takes nothing", "[sync]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    c.run_for(5s, cancel_channel());
}

TEST_CASE("in a cancelled task every wait fails at once, even one that could complete", "[sync]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    c.run_for(5s, cancelled_task_waits_fail());
}

TEST_CASE("channel: under random timeouts and cancels no value is lost or duplicated", "[sync]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    c.run_for(20s, channel_random_cancels());
}

TEST_CASE("channel: a same-core send and receive allocate no frame per message", "[sync]") {
    test_core c{backend_kind::epoll};
    std::size_t frames = 99;
    c.run_for(5s, channel_allocates_nothing_per_message(&frames));
    CHECK(frames == 0);
}

TEST_CASE("barrier on one core: phases, and a timed-out or cancelled waiter has still arrived", "[sync]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    c.run_for(5s, barrier_one_core());
    CHECK_THROWS_AS(barrier{0}, std::invalid_argument);
}

TEST_CASE("barrier across 2 cores: nobody leaves a phase before all have arrived", "[sync]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    cross_barrier s;
    CHECK(run(two_cores(kind), [&](core& c) { return cross_main(c, &s); }) == 0);
    CHECK(s.wrong.load() == 0);
    CHECK(s.b.phase() == cross_barrier::phases);
}

TEST_CASE("barrier across 2 cores: a timed-out arrival counts; the other core's wake is a mail", "[sync]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    cross_timeout s;
    CHECK(run(two_cores(kind), [&](core& c) { return cross_timeout_main(c, &s); }) == 0);
    CHECK(s.ok.load() == 4);
    CHECK(s.b.phase() == 2);
}

TEST_CASE("writer: 8 tasks x 1,000 messages share one stream, each whole and in order", "[sync][writer]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    c.run_for(30s, writer_many_tasks_one_stream());
}

TEST_CASE("writer: what is queued within one loop turn goes out in one send", "[sync][writer]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    c.run_for(5s, writer_coalesces_a_turn(writer::default_max_queued));
    c.run_for(5s, writer_coalesces_a_turn(0));
}

TEST_CASE("writer: a failed send reaches every waiting writer, and every later call", "[sync][writer]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    c.run_for(10s, writer_error_reaches_everyone());
}

TEST_CASE("writer: a write or flush waiting for room ends by cancel or timeout, queueing nothing", "[sync][writer]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    c.run_for(10s, writer_waits_are_cancellable());
}

TEST_CASE("writer: close under a deadline cancels the flusher and returns once it has ended", "[sync][writer]") {
    const auto kind = GENERATE(BOTH_BACKENDS);
    INFO("backend: " << to_string(kind));
    if (skip_without(kind)) return;
    test_core c{kind};
    c.run_for(10s, writer_close_under_timeout());
}
