#include "ws_command.hpp"

#include <cstdint>
#include <optional>

namespace coring::apps {

namespace {

class json_reader {
public:
    explicit json_reader(std::string_view s) noexcept : s_{s} {}

    void skip_space() noexcept {
        while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
    }
    bool take(char c) noexcept {
        skip_space();
        if (i_ < s_.size() && s_[i_] == c) {
            ++i_;
            return true;
        }
        return false;
    }
    bool at_end() noexcept {
        skip_space();
        return i_ == s_.size();
    }
    // A string after its opening quote; unescaped into out. False on any malformation.
    bool string(std::string& out) {
        out.clear();
        while (i_ < s_.size()) {
            const char c = s_[i_++];
            if (c == '"') return true;
            if (static_cast<unsigned char>(c) < 0x20) return false;  // raw control characters are not JSON
            if (c != '\\') {
                out += c;
                continue;
            }
            if (i_ == s_.size()) return false;
            switch (const char e = s_[i_++]) {
            case '"': case '\\': case '/': out += e; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'u': {
                auto cp = hex4();
                if (!cp) return false;
                if (*cp >= 0xD800 && *cp < 0xDC00) {  // a high surrogate: its low half must follow
                    if (s_.substr(i_, 2) != "\\u") return false;
                    i_ += 2;
                    auto low = hex4();
                    if (!low || *low < 0xDC00 || *low >= 0xE000) return false;
                    *cp = 0x10000 + ((*cp - 0xD800) << 10) + (*low - 0xDC00);
                } else if (*cp >= 0xDC00 && *cp < 0xE000) {
                    return false;
                }
                append_utf8(out, *cp);
                break;
            }
            default: return false;
            }
        }
        return false;
    }

private:
    std::optional<std::uint32_t> hex4() noexcept {
        if (s_.size() - i_ < 4) return std::nullopt;
        std::uint32_t v = 0;
        for (int k = 0; k < 4; ++k) {
            const char c = s_[i_++];
            v <<= 4;
            if (c >= '0' && c <= '9') v |= static_cast<std::uint32_t>(c - '0');
            else if (c >= 'a' && c <= 'f') v |= static_cast<std::uint32_t>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') v |= static_cast<std::uint32_t>(c - 'A' + 10);
            else return std::nullopt;
        }
        return v;
    }
    static void append_utf8(std::string& out, std::uint32_t cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }

    std::string_view s_;
    std::size_t i_ = 0;
};

}  // namespace

std::string parse_ws_command(std::string_view json, ws_command& out) {
    json_reader r{json};
    if (!r.take('{')) return "expected a JSON object";
    bool have_verb = false, have_data = false;
    std::string key, value;
    if (!r.take('}')) {
        do {
            if (!r.take('"') || !r.string(key)) return "expected a string key";
            if (!r.take(':')) return "expected ':'";
            if (!r.take('"') || !r.string(value)) return "expected a string value for \"" + key.substr(0, 32) + "\"";
            if (key == "data") {
                if (have_data) return "\"data\" twice";
                have_data = true;
                out.data = std::move(value);
                continue;
            }
            ws_command::kind_t kind;
            if (key == "sub") kind = ws_command::subscribe;
            else if (key == "unsub") kind = ws_command::unsubscribe;
            else if (key == "psub") kind = ws_command::psubscribe;
            else if (key == "punsub") kind = ws_command::punsubscribe;
            else if (key == "pub") kind = ws_command::publish;
            else return "unknown key \"" + key.substr(0, 32) + "\"";
            if (have_verb) return "one of sub, unsub, psub, punsub, pub per message";
            have_verb = true;
            out.kind = kind;
            out.topic = std::move(value);
        } while (r.take(','));
        if (!r.take('}')) return "expected ',' or '}'";
    }
    if (!r.at_end()) return "text after the object";
    if (!have_verb) return "expected one of sub, unsub, psub, punsub, pub";
    if ((out.kind == ws_command::publish) != have_data) return "\"data\" goes with \"pub\", and only with it";
    return {};
}

}  // namespace coring::apps
