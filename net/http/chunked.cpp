// chunked_decoder: one byte at a time through the framing, a span at a time through the data.
#include <coring/http/chunked.hpp>

#include <algorithm>
#include <charconv>

namespace coring::http {
namespace {

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// What an extension or a trailer line may hold: field-vchar, SP, HTAB, obs-text.
bool line_byte(char c) noexcept { return c == '\t' || (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f); }

}  // namespace

chunked_decoder::step chunked_decoder::fail(std::size_t consumed, int status) noexcept {
    state_ = state::failed;
    error_ = status;
    return {.consumed = consumed, .data = {}, .done = false, .error = status};
}

chunked_decoder::step chunked_decoder::next(std::span<const std::byte> in) noexcept {
    if (state_ == state::done) return {.consumed = 0, .data = {}, .done = true, .error = 0};
    if (state_ == state::failed) return {.consumed = 0, .data = {}, .done = false, .error = error_};
    std::size_t i = 0;
    while (i < in.size()) {
        if (state_ == state::data) {
            const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk_left_, in.size() - i));
            chunk_left_ -= n;
            if (chunk_left_ == 0) state_ = state::data_cr;
            return {.consumed = i + n, .data = in.subspan(i, n), .done = false, .error = 0};
        }
        const char c = static_cast<char>(in[i++]);
        switch (state_) {
        case state::size: {
            const int d = hex_value(c);
            if (d >= 0) {
                const std::uint64_t left = max_body_ - body_bytes_;
                const auto digit = static_cast<std::uint64_t>(d);
                // chunk_left_ * 16 + d > left, asked without computing it (it could overflow).
                if (digit > left || chunk_left_ > (left - digit) / 16) return fail(i, 413);
                // 16 digits hold any 64-bit size; more can only be leading zeros.
                if (++line_bytes_ > 16) return fail(i, 400);
                chunk_left_ = chunk_left_ * 16 + digit;
                break;
            }
            if (line_bytes_ == 0) return fail(i, 400);
            line_bytes_ = 0;  // now counts extension bytes
            if (c == '\r') state_ = state::size_lf;
            else if (c == ';') state_ = state::extension;
            else if (c == ' ' || c == '\t') state_ = state::extension_space;
            else return fail(i, 400);
            break;
        }
        case state::extension_space:  // BWS is allowed only before a ';' (RFC 9112 §7.1.1)
            if (++line_bytes_ > max_extension_bytes) return fail(i, 400);
            if (c == ';') state_ = state::extension;
            else if (c != ' ' && c != '\t') return fail(i, 400);
            break;
        case state::extension:
            if (++line_bytes_ > max_extension_bytes) return fail(i, 400);
            if (c == '\r') state_ = state::size_lf;
            else if (!line_byte(c)) return fail(i, 400);
            break;
        case state::size_lf:
            if (c != '\n') return fail(i, 400);
            line_bytes_ = 0;
            if (chunk_left_ == 0) {
                state_ = state::trailer_start;
            } else {
                body_bytes_ += chunk_left_;  // within max_body_: checked digit by digit
                state_ = state::data;
            }
            break;
        case state::data_cr:
            if (c != '\r') return fail(i, 400);
            state_ = state::data_lf;
            break;
        case state::data_lf:
            if (c != '\n') return fail(i, 400);
            state_ = state::size;
            break;
        case state::trailer_start:
        case state::trailer:
            if (++line_bytes_ > max_trailer_bytes) return fail(i, 431);
            if (c == '\r') {
                state_ = state_ == state::trailer_start ? state::final_lf : state::trailer_lf;
            } else if (!line_byte(c) || (state_ == state::trailer_start && (c == ' ' || c == '\t'))) {
                return fail(i, 400);  // a control byte, or obs-fold
            } else {
                state_ = state::trailer;
            }
            break;
        case state::trailer_lf:
            if (++line_bytes_ > max_trailer_bytes) return fail(i, 431);
            if (c != '\n') return fail(i, 400);
            state_ = state::trailer_start;
            break;
        case state::final_lf:
            if (c != '\n') return fail(i, 400);
            state_ = state::done;
            return {.consumed = i, .data = {}, .done = true, .error = 0};
        case state::data:
        case state::done:
        case state::failed:
            break;  // handled before the switch
        }
    }
    return {.consumed = i, .data = {}, .done = false, .error = 0};
}

void append_chunk(std::string& out, std::span<const std::byte> data) {
    append_chunk(out, std::string_view{reinterpret_cast<const char*>(data.data()), data.size()});
}

void append_chunk(std::string& out, std::string_view data) {
    if (data.empty()) return;
    char size[16];
    const auto r = std::to_chars(size, size + sizeof(size), data.size(), 16);
    out.append(size, r.ptr).append("\r\n").append(data).append("\r\n");
}

}  // namespace coring::http
