// results: what one core, process or run counted, summed across them and carried from a
// --procs child process to its parent as one line of text (a line per rate step after it).
#include "load.hpp"

#include <coring/log.hpp>

#include <cstdio>
#include <string>

namespace coring::load {

error_counts& error_counts::operator+=(const error_counts& o) noexcept {
    connect += o.connect;
    io += o.io;
    eof += o.eof;
    verify += o.verify;
    timeout += o.timeout;
    return *this;
}

pubsub_counts& pubsub_counts::operator+=(const pubsub_counts& o) noexcept {
    published += o.published;
    published_window += o.published_window;
    delivered += o.delivered;
    subscribed += o.subscribed;
    lost += o.lost;
    duplicated += o.duplicated;
    reordered += o.reordered;
    slow_received += o.slow_received;
    slow_lost += o.slow_lost;
    slow_cut += o.slow_cut;
    reached += o.reached;
    return *this;
}

void results::merge(const results& o) {
    pubsub += o.pubsub;
    messages += o.messages;
    bytes += o.bytes;
    latency.merge(o.latency);
    if (steps.size() < o.steps.size()) steps.resize(o.steps.size());
    for (std::size_t k = 0; k < o.steps.size(); ++k) steps[k].merge(o.steps[k]);
    errors += o.errors;
    connected += o.connected;
    idle_up += o.idle_up;
    idle_verified += o.idle_verified;
    unsent += o.unsent;
    setup_seconds = std::max(setup_seconds, o.setup_seconds);
    seconds = std::max(seconds, o.seconds);
    cut_short = cut_short || o.cut_short;
    if (backend.empty()) backend = o.backend;
    if (first_error.empty()) first_error = o.first_error;
}

std::string results::serialize() const {
    // first_error last: it is free text up to the end of the line. Then a line per step. The
    // pub/sub counts in pubsub_counts' order.
    const auto& c = pubsub;
    std::string out = format("messages={} bytes={} connected={} seconds={} connect={} io={} eof={} verify={} timeout={} backend={} "
                             "idle_up={} idle_verified={} setup={} unsent={} cut={} pubsub={},{},{},{},{},{},{},{},{},{},{} hist={} | {}",
                             messages, bytes, connected, seconds, errors.connect, errors.io, errors.eof, errors.verify,
                             errors.timeout, backend.empty() ? "-" : backend, idle_up, idle_verified, setup_seconds, unsent, cut_short ? 1 : 0, c.published,
                             c.published_window, c.delivered, c.subscribed, c.reached, c.lost, c.duplicated, c.reordered,
                             c.slow_received, c.slow_lost, c.slow_cut, latency.serialize(), first_error);
    for (const auto& h : steps) out += "\n" + h.serialize();
    return out;
}

bool results::deserialize(const std::string& text) {
    const std::string line = text.substr(0, text.find('\n'));
    const auto bar = line.find(" | ");
    const auto hist = line.find("hist=");
    if (bar == std::string::npos || hist == std::string::npos || hist > bar) return false;
    first_error = line.substr(bar + 3);
    if (!latency.deserialize(std::string_view{line}.substr(hist + 5, bar - hist - 5))) return false;
    unsigned long long m, b, c, ce, io_, eo, ve, to;
    double sec;
    char be[32] = {};
    if (std::sscanf(line.c_str(), "messages=%llu bytes=%llu connected=%llu seconds=%lf connect=%llu io=%llu eof=%llu verify=%llu timeout=%llu backend=%31s",
                    &m, &b, &c, &sec, &ce, &io_, &eo, &ve, &to, be) != 10)
        return false;
    backend = std::string{be} == "-" ? "" : be;
    const auto idle_at = line.find("idle_up=");
    if (idle_at == std::string::npos) return false;
    unsigned long long up, ver;
    if (std::sscanf(line.c_str() + idle_at, "idle_up=%llu idle_verified=%llu setup=%lf", &up, &ver, &setup_seconds) != 3)
        return false;
    const auto unsent_at = line.find(" unsent=");
    unsigned long long owed = 0;
    int cut = 0;
    if (unsent_at == std::string::npos || std::sscanf(line.c_str() + unsent_at, " unsent=%llu cut=%d", &owed, &cut) != 2) return false;
    unsent = owed;
    cut_short = cut != 0;
    const auto pubsub_at = line.find(" pubsub=");
    unsigned long long ps[11];
    if (pubsub_at == std::string::npos ||
        std::sscanf(line.c_str() + pubsub_at, " pubsub=%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu", &ps[0], &ps[1],
                    &ps[2], &ps[3], &ps[4], &ps[5], &ps[6], &ps[7], &ps[8], &ps[9], &ps[10]) != 11)
        return false;
    pubsub = {ps[0], ps[1], ps[2], ps[3], ps[4], ps[5], ps[6], ps[7], ps[8], ps[9], ps[10]};
    steps.clear();
    for (auto at = text.find('\n'); at != std::string::npos && at + 1 < text.size();) {
        const auto next = text.find('\n', at + 1);
        if (!steps.emplace_back().deserialize(std::string_view{text}.substr(at + 1, next == std::string::npos ? std::string::npos : next - at - 1)))
            return false;
        at = next;
    }
    idle_up = up;
    idle_verified = ver;
    messages = m;
    bytes = b;
    connected = c;
    seconds = sec;
    errors = {ce, io_, eo, ve, to};
    return true;
}

}  // namespace coring::load
