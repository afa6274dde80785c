#include "nats.hpp"

namespace coring::load {

namespace {

bool same_word(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        const char x = a[i] >= 'a' && a[i] <= 'z' ? static_cast<char>(a[i] - 32) : a[i];
        if (x != b[i]) return false;
    }
    return true;
}

// The line's words, separated by spaces or tabs; at most `max` (false when there are more).
bool split_words(std::string_view line, std::string_view* words, std::size_t max, std::size_t& n) noexcept {
    n = 0;
    std::size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
        if (i == line.size()) break;
        const std::size_t start = i;
        while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
        if (n == max) return false;
        words[n++] = line.substr(start, i - start);
    }
    return true;
}

nats_parsed nats_error(const char* why) { return {nats_parsed::status::error, 0, why}; }

}  // namespace

nats_parsed parse_nats(std::string_view input, nats_frame& out, std::size_t max_payload, std::size_t max_line) {
    const auto eol = input.find("\r\n");
    if (eol == std::string_view::npos) {
        // max_line bytes and the CR of their CRLF may still make a line within the limit.
        if (input.size() > max_line + 1) return nats_error("a control line longer than the limit");
        return {};
    }
    if (eol > max_line) return nats_error("a control line longer than the limit");
    const std::string_view line = input.substr(0, eol);
    const std::string_view op = line.substr(0, line.find_first_of(" \t"));
    const auto rest = [&] {
        std::string_view r = line.substr(op.size());
        while (!r.empty() && (r.front() == ' ' || r.front() == '\t')) r.remove_prefix(1);
        return r;
    };
    out = nats_frame{};
    const nats_parsed line_only{nats_parsed::status::complete, eol + 2, ""};
    if (same_word(op, "PING") || same_word(op, "PONG")) {
        if (!rest().empty()) return nats_error("PING or PONG with arguments");
        out.type = same_word(op, "PING") ? nats_frame::kind::ping : nats_frame::kind::pong;
        return line_only;
    }
    if (same_word(op, "+OK")) {
        out.type = nats_frame::kind::ok;
        return line_only;
    }
    if (same_word(op, "-ERR") || same_word(op, "INFO")) {
        out.type = same_word(op, "INFO") ? nats_frame::kind::info : nats_frame::kind::err;
        out.text = rest();
        return line_only;
    }
    if (!same_word(op, "MSG")) return nats_error("an unknown operation");
    std::string_view words[5];
    std::size_t n = 0;
    if (!split_words(line, words, 5, n) || n < 4) return nats_error("MSG takes subject, sid, [reply-to,] size");
    const std::string_view size_word = words[n - 1];
    std::size_t size = 0;
    if (size_word.empty() || size_word.size() > 10) return nats_error("a bad MSG size");
    for (char c : size_word) {
        if (c < '0' || c > '9') return nats_error("a bad MSG size");
        size = size * 10 + static_cast<std::size_t>(c - '0');
    }
    if (size > max_payload) return nats_error("a MSG payload larger than the limit");
    const std::size_t total = eol + 2 + size + 2;
    if (input.size() < total) return {};
    if (input.substr(eol + 2 + size, 2) != "\r\n") return nats_error("a MSG payload not followed by CRLF");
    out.type = nats_frame::kind::msg;
    out.subject = words[1];
    out.sid = words[2];
    if (n == 5) out.reply_to = words[3];
    out.payload = input.substr(eol + 2, size);
    return {nats_parsed::status::complete, total, ""};
}

}  // namespace coring::load
