#include <coring/resp/resp.hpp>

#include <charconv>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <utility>

// Redis 7 is the reference for what a server accepts and the words of its errors
// (networking.c processMultibulkBuffer and processInlineBuffer, sds.c sdssplitargs, util.c
// string2ll and stringmatchlen); the code is ours. Every parse starts again from the first byte
// of `input`: a reader calls it again when more bytes came, and `needed` lets it wait for a whole
// bulk instead of re-parsing at every receive.
namespace coring::resp {

namespace {

constexpr std::string_view err_multibulk_length = "ERR Protocol error: invalid multibulk length";
constexpr std::string_view err_bulk_length = "ERR Protocol error: invalid bulk length";
constexpr std::string_view err_mbulk_count_too_big = "ERR Protocol error: too big mbulk count string";
constexpr std::string_view err_bulk_count_too_big = "ERR Protocol error: too big bulk count string";
constexpr std::string_view err_inline_too_big = "ERR Protocol error: too big inline request";
constexpr std::string_view err_unbalanced_quotes = "ERR Protocol error: unbalanced quotes in request";
// Redis words "expected '$', got 'X'" with the offending byte; one static text per byte value
// keeps `parsed::error` a view that outlives the call.
struct expected_dollar_table {
    char text[256][41];  // the head (39 bytes), the byte and the closing quote
    constexpr expected_dollar_table() : text{} {
        constexpr std::string_view head = "ERR Protocol error: expected '$', got '";
        for (int b = 0; b < 256; ++b) {
            std::size_t i = 0;
            for (char c : head) text[b][i++] = c;
            text[b][i++] = static_cast<char>(b);
            text[b][i++] = '\'';
        }
    }
};
constexpr expected_dollar_table expected_dollar{};
constexpr std::size_t expected_dollar_size = sizeof(expected_dollar.text[0]);

// parse_reply's own errors (a server's bytes, not Redis's words: hiredis has its own).
constexpr std::string_view err_reply_type = "ERR Protocol error: unknown reply type";
constexpr std::string_view err_reply_line = "ERR Protocol error: reply line without CRLF";
constexpr std::string_view err_reply_too_big = "ERR Protocol error: too big reply line";
constexpr std::string_view err_reply_integer = "ERR Protocol error: invalid integer";
constexpr std::string_view err_reply_depth = "ERR Protocol error: arrays nested too deep";

parsed error(std::string_view text) noexcept {
    parsed r;
    r.status = parse_status::error;
    r.error = text;
    return r;
}

parsed incomplete(std::size_t needed = 0) noexcept {
    parsed r;
    r.needed = needed;
    return r;
}

parsed complete(std::size_t consumed) noexcept {
    parsed r;
    r.status = parse_status::complete;
    r.consumed = consumed;
    return r;
}

// Redis's string2ll, for the lengths a client sends: an optional '-', then digits without a
// leading zero ("0" alone is fine; "-0", "+1", "01", " 1" and "" are not), within int64.
bool parse_length(std::string_view s, std::int64_t& out) noexcept {
    if (s.empty()) return false;
    if (s == "0") {
        out = 0;
        return true;
    }
    const std::size_t digits_at = s[0] == '-' ? 1 : 0;
    if (digits_at == s.size() || s[digits_at] < '1' || s[digits_at] > '9') return false;
    // from_chars takes the '-' itself and reports int64 overflow; it must use every byte.
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc{} && end == s.data() + s.size();
}

// Where the line starting at `from` ends: the index of `byte`, looked for in the first
// max_line + 1 bytes only, or npos. A line longer than max_line is refused whether or not its end
// has come, so the verdict never depends on how TCP cut the bytes (Redis takes a longer line if
// it arrives in one read), and no byte is scanned twice past the limit.
std::size_t find_line_end(std::string_view input, std::size_t from, char byte, std::size_t max_line) noexcept {
    std::size_t window = input.size() - from;
    if (window > max_line) window = max_line + 1;
    const void* end = std::memchr(input.data() + from, byte, window);
    return end ? static_cast<std::size_t>(static_cast<const char*>(end) - input.data()) : std::string_view::npos;
}

// ---- commands: the RESP array form ----

// A line at `at`, as processMultibulkBuffer looks for it: up to its first '\r', once the byte
// after that has come too. `cr` gets the index of the '\r'. Redis takes that next byte on trust;
// callers here require it to be '\n'.
enum class line_state { whole, incomplete, too_big };
line_state find_line(std::string_view input, std::size_t at, std::size_t max_line, std::size_t& cr) noexcept {
    cr = find_line_end(input, at, '\r', max_line);
    if (cr == std::string_view::npos) return input.size() - at > max_line ? line_state::too_big : line_state::incomplete;
    return cr + 1 == input.size() ? line_state::incomplete : line_state::whole;
}

// The number of a whole length line ("*3", "$5"), after its type byte.
bool line_number(std::string_view input, std::size_t at, std::size_t cr, std::int64_t& value) noexcept {
    return input[cr + 1] == '\n' && parse_length(input.substr(at + 1, cr - at - 1), value);
}

// The elements from `at` on, `done` of `count` checked before: into `args` when it is given.
// Incomplete: `progress` (when given) records how far they were checked.
parsed parse_elements(std::string_view input, std::size_t at, std::int64_t done, std::int64_t count,
                      std::vector<std::string_view>* args, const limits& lim, command_progress* progress) {
    const auto stop_at = [&](std::size_t element, std::int64_t i, std::size_t needed) {
        if (progress && element <= UINT32_MAX && count <= UINT32_MAX)
            *progress = {static_cast<std::uint32_t>(element), static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(count)};
        return incomplete(needed);
    };
    std::size_t cr = 0;
    for (std::int64_t i = done; i < count; ++i) {
        switch (find_line(input, at, lim.max_inline, cr)) {
        case line_state::incomplete: return stop_at(at, i, 0);
        case line_state::too_big: return error(err_bulk_count_too_big);
        case line_state::whole: break;
        }
        if (input[at] != '$') {
            const auto byte = static_cast<unsigned char>(input[at]);
            return error({expected_dollar.text[byte], expected_dollar_size});
        }
        std::int64_t size = 0;
        if (!line_number(input, at, cr, size) || size < 0 || static_cast<std::uint64_t>(size) > lim.max_bulk)
            return error(err_bulk_length);
        const std::size_t data = cr + 2;
        const auto bytes = static_cast<std::size_t>(size);
        // No overflow: bytes <= max_bulk, and `data` is inside input.
        if (input.size() - data < bytes + 2) return stop_at(at, i, data + bytes + 2);
        // Redis skips the two bytes after a bulk unseen; anything but CRLF there means the
        // length lied, and the next "argument" would start inside this one.
        if (input[data + bytes] != '\r' || input[data + bytes + 1] != '\n') return error(err_bulk_length);
        if (args) args->push_back(input.substr(data, bytes));
        at = data + bytes + 2;
    }
    return complete(at);
}

parsed parse_multibulk(std::string_view input, std::vector<std::string_view>& args, const limits& lim,
                       command_progress* progress) {
    if (progress && progress->count != 0) {
        // What was checked before is whole: only the rest is looked at, without its arguments.
        const parsed r = parse_elements(input, progress->at, progress->done, progress->count, nullptr, lim, progress);
        if (r.status != parse_status::complete) return r;
        // Complete: once more from the start, now taking the arguments (once per command).
    }
    std::size_t cr = 0;
    switch (find_line(input, 0, lim.max_inline, cr)) {
    case line_state::incomplete: return incomplete();
    case line_state::too_big: return error(err_mbulk_count_too_big);
    case line_state::whole: break;
    }
    std::int64_t count = 0;
    if (!line_number(input, 0, cr, count) || (count > 0 && static_cast<std::uint64_t>(count) > lim.max_args))
        return error(err_multibulk_length);
    // Zero or negative: Redis skips it as an empty command.
    return parse_elements(input, cr + 2, 0, count, &args, lim, progress);
}

// ---- commands: the inline form ----

bool is_hex(char c) noexcept {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int hex_value(char c) noexcept {
    if (c <= '9') return c - '0';
    if (c <= 'F') return c - 'A' + 10;
    return c - 'a' + 10;
}

// C's isspace in the "C" locale: where sdssplitargs skips between arguments and what may follow
// a closing quote.
bool is_space(char c) noexcept { return c == ' ' || (c >= '\t' && c <= '\r'); }

// sdssplitargs over one line (without its line ending). Redis splits a C string, so a NUL ends
// the line there (inside quotes it is the missing closing quote). An argument without quotes is
// a view into `line`; one with quotes is decoded into `scratch`, reserved to the line's size
// first so that it never moves while views into it exist.
bool split_inline(std::string_view line, std::vector<std::string_view>& args, std::string& scratch) {
    if (const void* nul = std::memchr(line.data(), '\0', line.size()))
        line = line.substr(0, static_cast<std::size_t>(static_cast<const char*>(nul) - line.data()));
    scratch.clear();
    std::size_t i = 0;
    const std::size_t n = line.size();
    while (true) {
        while (i < n && is_space(line[i])) ++i;
        if (i == n) return true;
        // A plain argument: up to a space, tab, CR or LF (not every isspace byte: \v and \f
        // stay inside, as in Redis). A quote on the way turns it into a decoded one.
        const std::size_t start = i;
        while (i < n && line[i] != ' ' && line[i] != '\t' && line[i] != '\r' && line[i] != '\n' && line[i] != '"' &&
               line[i] != '\'')
            ++i;
        if (i == n || (line[i] != '"' && line[i] != '\'')) {
            args.push_back(line.substr(start, i - start));
            continue;
        }
        if (scratch.capacity() < n) scratch.reserve(n);  // decoded text is never longer than the line
        const std::size_t out = scratch.size();
        scratch.append(line.substr(start, i - start));
        // The quoted part ends the argument: its closing quote must be followed by a space or
        // the end, so "a"b is an error rather than "ab" (a"b" is "ab", as in Redis).
        const char quote = line[i++];
        while (true) {
            if (i == n) return false;
            const char c = line[i];
            if (c == quote) {
                if (i + 1 < n && !is_space(line[i + 1])) return false;
                ++i;
                break;
            }
            const bool escape = c == '\\' && i + 1 < n;
            if (quote == '\'' && escape && line[i + 1] == '\'') {  // the only escape '...' knows
                scratch.push_back('\'');
                i += 2;
            } else if (quote == '"' && escape && i + 3 < n && line[i + 1] == 'x' && is_hex(line[i + 2]) &&
                       is_hex(line[i + 3])) {
                scratch.push_back(static_cast<char>(hex_value(line[i + 2]) * 16 + hex_value(line[i + 3])));
                i += 4;
            } else if (quote == '"' && escape) {
                const char e = line[i + 1];
                scratch.push_back(e == 'n' ? '\n' : e == 'r' ? '\r' : e == 't' ? '\t' : e == 'b' ? '\b'
                                  : e == 'a' ? '\a' : e);
                i += 2;
            } else {
                scratch.push_back(c);
                ++i;
            }
        }
        args.push_back(std::string_view{scratch}.substr(out));
    }
}

parsed parse_inline(std::string_view input, std::vector<std::string_view>& args, std::string& scratch,
                    const limits& lim) {
    // The limit counts the line without its "\r\n" or "\n": one byte more is looked at, for a '\r'.
    const std::size_t max_line = lim.max_inline == SIZE_MAX ? SIZE_MAX : lim.max_inline + 1;
    const std::size_t lf = find_line_end(input, 0, '\n', max_line);
    if (lf == std::string_view::npos) {
        std::size_t so_far = input.size();
        if (so_far > 0 && input.back() == '\r') --so_far;  // perhaps the first byte of "\r\n"
        return so_far > lim.max_inline ? error(err_inline_too_big) : incomplete();
    }
    std::size_t end = lf;
    if (end > 0 && input[end - 1] == '\r') --end;
    if (end > lim.max_inline) return error(err_inline_too_big);
    if (!split_inline(input.substr(0, end), args, scratch)) {
        args.clear();
        return error(err_unbalanced_quotes);
    }
    return complete(lf + 1);
}

// ---- replies ----

class reply_parser {
public:
    reply_parser(std::string_view input, std::vector<reply_item>& items, const limits& lim) noexcept
        : input_{input}, items_{items}, lim_{lim} {}

    // One reply at at_; `depth` arrays enclose it. Recursion is bounded by lim.max_depth.
    parsed parse(std::size_t depth) {
        if (at_ == input_.size()) return incomplete();
        const char type = input_[at_];
        if (type != '+' && type != '-' && type != ':' && type != '$' && type != '*') return error(err_reply_type);
        std::size_t cr = 0;
        switch (find_line(input_, at_, lim_.max_inline, cr)) {
        case line_state::incomplete: return incomplete();
        case line_state::too_big: return error(err_reply_too_big);
        case line_state::whole: break;
        }
        if (input_[cr + 1] != '\n') return error(err_reply_line);
        const std::string_view line = input_.substr(at_ + 1, cr - at_ - 1);
        at_ = cr + 2;
        reply_item item;
        item.type = type;
        switch (type) {
        case '+':
        case '-':
            if (line.find('\n') != std::string_view::npos) return error(err_reply_line);
            item.text = line;
            items_.push_back(item);
            return complete(at_);
        case ':':
            if (!parse_integer(line, item.integer)) return error(err_reply_integer);
            items_.push_back(item);
            return complete(at_);
        case '$': {
            if (!parse_size(line, item.size) || (item.size > 0 && static_cast<std::uint64_t>(item.size) > lim_.max_bulk))
                return error(err_bulk_length);
            if (item.size >= 0) {
                const auto bytes = static_cast<std::size_t>(item.size);
                if (input_.size() - at_ < bytes + 2) return incomplete(at_ + bytes + 2);
                if (input_[at_ + bytes] != '\r' || input_[at_ + bytes + 1] != '\n') return error(err_bulk_length);
                item.text = input_.substr(at_, bytes);
                at_ += bytes + 2;
            }
            items_.push_back(item);
            return complete(at_);
        }
        default: {  // '*'
            if (!parse_size(line, item.size) || (item.size > 0 && static_cast<std::uint64_t>(item.size) > lim_.max_args))
                return error(err_multibulk_length);
            if (depth + 1 > lim_.max_depth) return error(err_reply_depth);
            items_.push_back(item);
            for (std::int64_t i = 0; i < item.size; ++i) {
                const parsed element = parse(depth + 1);
                if (element.status != parse_status::complete) return element;
            }
            return complete(at_);
        }
        }
    }

private:
    // ':' lines: a sign ('+' or '-') and digits, within int64.
    static bool parse_integer(std::string_view s, std::int64_t& out) noexcept {
        if (!s.empty() && s[0] == '+') {
            s.remove_prefix(1);
            if (s.empty() || s[0] < '0' || s[0] > '9') return false;  // no "+-1"
        }
        if (s.empty() || s == "-") return false;
        const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
        return ec == std::errc{} && end == s.data() + s.size();
    }
    // '$' and '*' sizes: digits, or -1 for null.
    static bool parse_size(std::string_view s, std::int64_t& out) noexcept {
        if (s == "-1") {
            out = -1;
            return true;
        }
        if (s.empty() || s[0] < '0' || s[0] > '9') return false;
        const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
        return ec == std::errc{} && end == s.data() + s.size();
    }

    std::string_view input_;
    std::vector<reply_item>& items_;
    const limits& lim_;
    std::size_t at_ = 0;
};

// A status or error line must stay one line: a CR or LF from a caller's text (an error that
// quotes a peer's argument, say) would let the peer forge replies. Redis swaps them for spaces too.
void append_line(std::string& out, char type, std::string_view text) {
    out.push_back(type);
    const std::size_t from = out.size();
    out.append(text);
    for (std::size_t i = from; i < out.size(); ++i)
        if (out[i] == '\r' || out[i] == '\n') out[i] = ' ';
    out.append("\r\n");
}

template <class Int>
void append_number_line(std::string& out, char type, Int n) {
    char digits[1 + std::numeric_limits<Int>::digits10 + 2];  // sign, digits, one spare
    const auto [end, ec] = std::to_chars(std::begin(digits), std::end(digits), n);
    (void)ec;  // cannot fail: the buffer holds any Int
    out.push_back(type);
    out.append(digits, end);
    out.append("\r\n");
}

std::size_t decimal_digits(std::size_t n) noexcept {
    std::size_t d = 1;
    while (n >= 10) {
        n /= 10;
        ++d;
    }
    return d;
}

}  // namespace

parsed parse_command(std::string_view input, std::vector<std::string_view>& args, std::string& scratch,
                     const limits& lim, command_progress* progress) {
    args.clear();
    if (input.empty()) return incomplete();
    // As processInputBuffer decides: '*' starts the array form, anything else is a line.
    parsed r = input[0] == '*' ? parse_multibulk(input, args, lim, progress) : parse_inline(input, args, scratch, lim);
    if (r.status != parse_status::complete) args.clear();
    if (progress && r.status != parse_status::incomplete) *progress = {};
    return r;
}

parsed parse_reply(std::string_view input, std::vector<reply_item>& items, const limits& lim) {
    items.clear();
    reply_parser parser{input, items, lim};
    parsed r = parser.parse(0);
    if (r.status != parse_status::complete) items.clear();
    return r;
}

void append_simple(std::string& out, std::string_view text) { append_line(out, '+', text); }

void append_error(std::string& out, std::string_view text) { append_line(out, '-', text); }

void append_integer(std::string& out, std::int64_t n) { append_number_line(out, ':', n); }

void append_bulk(std::string& out, std::string_view bytes) {
    append_number_line(out, '$', bytes.size());
    out.append(bytes);
    out.append("\r\n");
}

void append_null(std::string& out) { out.append("$-1\r\n"); }

void append_array(std::string& out, std::size_t n) { append_number_line(out, '*', n); }

std::size_t bulk_size(std::size_t n) noexcept { return 1 + decimal_digits(n) + 2 + n + 2; }

// ---- glob ----

namespace {

// Whether the one-character item of `pattern` at `p` (not '*') matches `c`; `next` gets the index
// after the item. Redis's rules, quirks included: `\` escapes the next byte (a trailing one is
// itself); in a class `\` escapes too, `a-z` is a range whose ends may come reversed, and a class
// without its `]` runs to the end of the pattern ("[" alone matches nothing, "[^" any byte).
// Range ends compare as Redis's `int start = pattern[0]` does on x86-64, where char is signed.
bool item_matches(std::string_view pattern, std::size_t p, char c, std::size_t& next) noexcept {
    const std::size_t n = pattern.size();
    switch (pattern[p]) {
    case '?':
        next = p + 1;
        return true;
    case '\\':
        if (p + 1 < n) {
            next = p + 2;
            return pattern[p + 1] == c;
        }
        next = p + 1;
        return c == '\\';
    case '[': {
        std::size_t i = p + 1;
        const bool negate = i < n && pattern[i] == '^';
        if (negate) ++i;
        bool match = false;
        while (true) {
            if (i == n) break;  // unclosed: the class is the rest of the pattern
            if (pattern[i] == '\\' && i + 1 < n) {
                if (pattern[i + 1] == c) match = true;
                i += 2;
            } else if (pattern[i] == ']') {
                ++i;
                break;
            } else if (i + 2 < n && pattern[i + 1] == '-') {
                int low = static_cast<signed char>(pattern[i]);
                int high = static_cast<signed char>(pattern[i + 2]);
                if (low > high) std::swap(low, high);
                const int v = static_cast<signed char>(c);
                if (v >= low && v <= high) match = true;
                i += 3;
            } else {
                if (pattern[i] == c) match = true;
                ++i;
            }
        }
        next = i;
        return match != negate;
    }
    default:
        next = p + 1;
        return pattern[p] == c;
    }
}

}  // namespace

// Every item but '*' takes exactly one byte, so a failed attempt after a star only ever needs to
// retry from the latest star, one byte further on: earlier stars could only absorb bytes the
// latest one can absorb as well. That keeps it O(pattern * text), where Redis's recursion on each
// star went exponential on "a*a*a*...b" (CVE-2022-36021) until it learned to give up early.
bool glob_match(std::string_view pattern, std::string_view text) noexcept {
    // Redis's loop runs while both have bytes left, so an empty text matches only an empty
    // pattern: "*" does not match "" (PUBLISH to channel "" reaches no PSUBSCRIBE *).
    if (text.empty()) return pattern.empty();
    std::size_t p = 0;
    std::size_t t = 0;
    std::size_t star_p = std::string_view::npos;  // the item after the latest star
    std::size_t star_t = 0;                       // the text the latest star has absorbed up to
    while (t < text.size()) {
        if (p < pattern.size() && pattern[p] == '*') {
            while (p < pattern.size() && pattern[p] == '*') ++p;
            star_p = p;
            star_t = t;
            continue;
        }
        std::size_t next = 0;
        if (p < pattern.size() && item_matches(pattern, p, text[t], next)) {
            p = next;
            ++t;
            continue;
        }
        if (star_p == std::string_view::npos) return false;
        p = star_p;
        t = ++star_t;
    }
    while (p < pattern.size() && pattern[p] == '*') ++p;
    return p == pattern.size();
}

}  // namespace coring::resp
