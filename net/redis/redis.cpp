// redis::client: commands through one hiredis context (link.hpp), and parse_url.
#include "link.hpp"

#include <coring/core.hpp>
#include <coring/timer.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <functional>
#include <variant>
#include <vector>

namespace coring::redis {

namespace detail {

class client_link final : public link {
public:
    using link::link;

    // Queues args with hiredis, or says why not (`failed`): a null record.
    pending* begin(std::span<const std::string_view> args, std::error_code& failed) {
        std::size_t bytes = 16;  // the array's head, then each argument with its own
        for (const std::string_view a : args) bytes += a.size() + 16;
        if (refused(args)) {
            failed = std::make_error_code(std::errc::invalid_argument);
        } else if (pending_bytes_ != 0 && pending_bytes_ + bytes > opts_.max_pending_bytes) {
            failed = std::make_error_code(std::errc::no_buffer_space);  // Redis is not keeping up
        } else if (redisAsyncContext* ac = context()) {
            std::vector<const char*> argv(args.size());
            std::vector<std::size_t> lens(args.size());
            for (std::size_t i = 0; i < args.size(); ++i) {
                argv[i] = args[i].data();
                lens[i] = args[i].size();
            }
            auto* p = new pending;
            // hiredis copies the command into its output buffer now; the write pump sends it.
            if (redisAsyncCommandArgv(ac, on_reply, p, static_cast<int>(args.size()), argv.data(), lens.data()) ==
                REDIS_OK) {
                ++stats_.commands;
                p->bytes = bytes;
                pending_bytes_ += bytes;
                return p;
            }
            p->discard();  // nobody will answer or await it
            failed = std::make_error_code(std::errc::not_connected);  // hiredis is disconnecting
        } else {
            failed = std::make_error_code(std::errc::not_connected);
        }
        ++stats_.errors;
        return nullptr;
    }

    using link::deadline;
    void spawn(task<> t) { tasks_.spawn(std::move(t)); }

private:
    // A subscription or MONITOR would turn this connection's replies into pushes, which its
    // command callbacks cannot take: those belong to a subscriber. No command at all is refused too.
    static bool refused(std::span<const std::string_view> args) noexcept {
        if (args.empty()) return true;
        std::string name(args[0].substr(0, 16));
        std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
        return name == "subscribe" || name == "psubscribe" || name == "unsubscribe" || name == "punsubscribe" ||
               name == "monitor";
    }

    std::size_t pending_bytes_ = 0;  // of the commands hiredis holds (options::max_pending_bytes)

    static void on_reply(redisAsyncContext* ac, void* r, void* privdata) {
        auto& self = *static_cast<client_link*>(ac->data);
        auto* p = static_cast<pending*>(privdata);
        self.pending_bytes_ -= p->bytes;
        if (r) {
            ++self.stats_.replies;
            const auto& reply = *static_cast<redisReply*>(r);
            if (reply.type == REDIS_REPLY_ERROR) ++self.stats_.errors;
            if (p->awaited()) p->answer(copy_of(reply));  // nobody left: no copy
        } else {  // the context is being freed before this reply came
            ++self.stats_.errors;
            p->answer(self.closing_ ? std::errc::operation_canceled : std::errc::connection_reset);
        }
        p->release();
    }
};

namespace {
task<> deliver(pending_ref p, std::error_code failed, std::int64_t deadline_ns,
               std::function<void(result<reply>)> done) {
    auto r = co_await await_answer(std::move(p), failed, deadline_ns);
    done(std::move(r));
}
}  // namespace

}  // namespace detail

client::client(options o) : link_{std::make_unique<detail::client_link>(std::move(o))} { link_->start(); }
client::~client() = default;

bool client::connected() const noexcept { return link_->connected(); }
task<result<void>> client::wait_connected(std::chrono::milliseconds timeout) { return link_->wait_connected(timeout); }
const client_stats& client::stats() const noexcept { return link_->stats(); }
task<> client::close() { return link_->close(); }

// Not a coroutine: the command is queued at the call, so the caller's arguments are read now
// and need not outlive it; only the record travels into the (lazy) task.
task<result<reply>> client::command(std::span<const std::string_view> args) {
    std::error_code failed;
    detail::pending* p = link_->begin(args, failed);
    return detail::await_answer(detail::pending_ref{p}, failed, link_->deadline());
}

void client::send(std::span<const std::string_view> args, std::function<void(result<reply>)> done) {
    std::error_code failed;
    detail::pending* p = link_->begin(args, failed);
    // `done` runs from a task, so never inside this call. One waiting for a reply belongs to
    // the client's group (close() waits for it); one that failed at once needs nothing of the
    // client and goes on the core, so a client may be destroyed right after a failed send.
    auto t = detail::deliver(detail::pending_ref{p}, failed, link_->deadline(), std::move(done));
    if (p) link_->spawn(std::move(t));
    else core::current().spawn(std::move(t));
}

// ---- redis://HOST:PORT --------------------------------------------------------------------

namespace {
// The options, or why not.
std::variant<options, std::string> parse(std::string_view url) {
    constexpr std::string_view scheme = "redis://";
    if (url.substr(0, scheme.size()) != scheme) return std::string{"it must start with redis://"};
    std::string_view rest = url.substr(scheme.size());
    if (rest.find_first_of("/@?#") != std::string_view::npos)
        return std::string{"only redis://HOST:PORT is supported (no user, password, database or options)"};
    options o;
    std::string_view port;
    if (rest.starts_with('[')) {  // [IPv6]
        const auto close = rest.find(']');
        if (close == std::string_view::npos) return std::string{"an IPv6 host needs its closing ]"};
        o.host = rest.substr(1, close - 1);
        rest.remove_prefix(close + 1);
        if (!rest.empty() && !rest.starts_with(':')) return std::string{"after ] only :PORT may follow"};
        if (!rest.empty()) port = rest.substr(1);
        else port = "6379";
    } else {
        const auto colon = rest.rfind(':');
        o.host = rest.substr(0, colon);
        port = colon == std::string_view::npos ? std::string_view{"6379"} : rest.substr(colon + 1);
        if (o.host.find(':') != std::string::npos) return std::string{"write an IPv6 host in brackets: [::1]"};
    }
    if (o.host.empty()) return std::string{"the host is empty"};
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || ec != std::errc{} || end != port.data() + port.size() || value == 0 || value > 65535)
        return std::string{"the port must be a number from 1 to 65535"};
    o.port = static_cast<std::uint16_t>(value);
    return o;
}
}  // namespace

result<options> parse_url(std::string_view url) {
    auto r = parse(url);
    if (auto* o = std::get_if<options>(&r)) return std::move(*o);
    return std::errc::invalid_argument;
}

std::string url_error(std::string_view url) {
    auto r = parse(url);
    if (auto* why = std::get_if<std::string>(&r)) return "bad Redis URL '" + std::string{url} + "': " + *why;
    return {};
}

}  // namespace coring::redis
