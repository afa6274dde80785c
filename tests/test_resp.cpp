// RESP2 without I/O: commands in both forms (split at every byte, pipelined, binary, every
// protocol error in Redis's words), replies of every type, the writers, and Redis's glob as a
// table of what redis-server answers (its quirks included) plus the pattern that once made it
// exponential.
#include <coring/resp/resp.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace resp = coring::resp;
using namespace std::literals;

namespace {

std::vector<std::string> strings(const std::vector<std::string_view>& views) { return {views.begin(), views.end()}; }

bool inside(std::string_view part, std::string_view whole) {
    return part.empty() || (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

struct command_row {
    const char* why;
    std::string_view wire;
    std::vector<std::string> args;
};

struct error_row {
    const char* why;
    std::string wire;
    std::string_view error;
};

}  // namespace

TEST_CASE("commands parse whole, and every prefix is incomplete", "[resp]") {
    const std::vector<command_row> rows{
        {"array", "*1\r\n$4\r\nPING\r\n"sv, {"PING"}},
        {"array of three, one empty", "*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$0\r\n\r\n"sv, {"SUBSCRIBE", "a", ""}},
        {"binary bulk: NUL, CRLF, LF inside", "*2\r\n$7\r\nPUBLISH\r\n$6\r\na\0\r\nb\n\r\n"sv,
         {"PUBLISH", "a\0\r\nb\n"s}},
        {"bulk of 10 bytes (two-digit length)", "*1\r\n$10\r\n0123456789\r\n"sv, {"0123456789"}},
        {"empty array: skipped", "*0\r\n"sv, {}},
        {"negative count: skipped as Redis does", "*-1\r\n"sv, {}},
        {"inline with CRLF", "PING\r\n"sv, {"PING"}},
        {"inline with LF only", "PING\n"sv, {"PING"}},
        {"inline, spaces and tabs", "  subscribe \t a\tb  \r\n"sv, {"subscribe", "a", "b"}},
        {"blank inline line: skipped", "\r\n"sv, {}},
        {"blank inline LF", "\n"sv, {}},
        {"inline, \\v stays inside an argument", "a\vb\n"sv, {"a\vb"}},
        {"inline, double and single quotes", "set \"a b\" 'c d'\n"sv, {"set", "a b", "c d"}},
        {"inline, empty quoted argument", "echo \"\" ''\n"sv, {"echo", "", ""}},
        {"inline, escapes in double quotes", "\"\\x41\\x4a\\n\\r\\t\\b\\a\\\\\\\"\\q\"\n"sv,
         {"AJ\n\r\t\b\a\\\"q"}},
        {"inline, \\x without two hex digits is x", "\"\\xZZ\\x4\"\n"sv, {"xZZx4"}},
        {"inline, \\x00 makes a NUL", "\"a\\x00b\"\n"sv, {"a\0b"s}},
        {"inline, single quotes know only \\'", "'a\\'b\\n\"c'\n"sv, {"a'b\\n\"c"}},
        {"inline, quote inside an argument continues it", "a\"b c\" d\n"sv, {"ab c", "d"}},
        {"inline, closing quote then a tab", "\"a\"\tb\n"sv, {"a", "b"}},
        {"inline, a NUL ends the line for splitting", "a b\0c \"d\n"sv, {"a", "b"}},
    };
    std::vector<std::string_view> args;
    std::string scratch;
    for (const auto& r : rows) {
        INFO(r.why);
        for (std::size_t cut = 0; cut < r.wire.size(); ++cut) {
            INFO("cut at " << cut);
            const auto p = resp::parse_command(r.wire.substr(0, cut), args, scratch);
            REQUIRE(p.status == resp::parse_status::incomplete);
            CHECK(args.empty());
            if (p.needed != 0) {
                CHECK(p.needed > cut);
                CHECK(p.needed <= r.wire.size());
            }
        }
        const auto p = resp::parse_command(r.wire, args, scratch);
        REQUIRE(p.status == resp::parse_status::complete);
        CHECK(p.consumed == r.wire.size());
        CHECK(strings(args) == r.args);
        for (const auto a : args) CHECK((inside(a, r.wire) || inside(a, scratch)));
    }
}

TEST_CASE("command_progress: a command trickled a byte at a time parses as one sent whole", "[resp]") {
    std::string wire = "*5\r\n$7\r\nPUBLISH\r\n$0\r\n\r\n$3\r\nabc\r\n$12\r\nhello\r\nworld\r\n$1\r\nz\r\n";
    const std::vector<std::string> expected{"PUBLISH", "", "abc", "hello\r\nworld", "z"};
    std::vector<std::string_view> args;
    std::string scratch;
    resp::command_progress progress;
    std::uint32_t done = 0;
    for (std::size_t cut = 0; cut < wire.size(); ++cut) {
        INFO("cut at " << cut);
        const auto p = resp::parse_command(std::string_view{wire}.substr(0, cut), args, scratch, {}, &progress);
        REQUIRE(p.status == resp::parse_status::incomplete);
        CHECK(args.empty());
        CHECK(progress.at <= cut);
        CHECK(progress.done >= done);  // each element is checked once, then resumed after
        done = progress.done;
    }
    CHECK(done == 4);
    const auto p = resp::parse_command(wire, args, scratch, {}, &progress);
    REQUIRE(p.status == resp::parse_status::complete);
    CHECK(p.consumed == wire.size());
    CHECK(strings(args) == expected);
    CHECK(progress.count == 0);  // cleared for the next command

    // A lie found after resuming is the same error as when parsed whole, and clears it too.
    const std::string bad = "*3\r\n$1\r\na\r\n$2\r\nbcd\r\n$1\r\ne\r\n";
    REQUIRE(resp::parse_command(std::string_view{bad}.substr(0, 16), args, scratch, {}, &progress).status ==
            resp::parse_status::incomplete);
    CHECK(progress.done == 1);
    const auto lie = resp::parse_command(bad, args, scratch, {}, &progress);
    REQUIRE(lie.status == resp::parse_status::error);
    CHECK(lie.error == resp::parse_command(bad, args, scratch).error);
    CHECK(progress.count == 0);
}

TEST_CASE("needed names the end of the bulk in flight", "[resp]") {
    std::vector<std::string_view> args;
    std::string scratch;
    const std::string wire = "*2\r\n$3\r\nGET\r\n$1000\r\n" + std::string(1000, 'v') + "\r\n";
    const auto head = resp::parse_command(std::string_view{wire}.substr(0, 20), args, scratch);
    REQUIRE(head.status == resp::parse_status::incomplete);
    CHECK(head.needed == wire.size());
    const auto in_length = resp::parse_command(std::string_view{wire}.substr(0, 15), args, scratch);
    CHECK(in_length.needed == 0);  // the length line has not come: unknown
    // A bulk followed by more arguments: the end of this bulk, a lower bound of the whole.
    const std::string two = "*3\r\n$5\r\nhello\r\n$1\r\nx\r\n";
    CHECK(resp::parse_command(std::string_view{two}.substr(0, 10), args, scratch).needed == 15);
}

TEST_CASE("unquoted inline arguments view the input, decoded ones the scratch", "[resp]") {
    std::vector<std::string_view> args;
    std::string scratch;
    const std::string_view wire = "publish \"a\\nb\" plain 'q'\r\n";
    const auto p = resp::parse_command(wire, args, scratch);
    REQUIRE(p.status == resp::parse_status::complete);
    REQUIRE(args.size() == 4);
    CHECK(inside(args[0], wire));
    CHECK(inside(args[1], scratch));
    CHECK(inside(args[2], wire));
    CHECK(inside(args[3], scratch));
    CHECK(strings(args) == std::vector<std::string>{"publish", "a\nb", "plain", "q"});
}

TEST_CASE("pipelined commands of both forms parse one after another", "[resp]") {
    const std::string wire = "*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n"
                             "PING\r\n"
                             "\r\n"
                             "*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$5\r\nhello\r\n"
                             "*0\r\n"
                             "echo 'x y'\n"
                             "*1\r\n$4\r\nQU";  // the last one still arriving
    const std::vector<std::vector<std::string>> expected{
        {"SUBSCRIBE", "ch"}, {"PING"}, {}, {"PUBLISH", "ch", "hello"}, {}, {"echo", "x y"}};
    std::vector<std::vector<std::string>> got;
    std::vector<std::string_view> args;
    std::string scratch;
    std::string_view rest = wire;
    for (int i = 0; i < 20; ++i) {  // bounded: more than the commands above
        const auto p = resp::parse_command(rest, args, scratch);
        if (p.status != resp::parse_status::complete) {
            CHECK(p.status == resp::parse_status::incomplete);
            break;
        }
        REQUIRE(p.consumed > 0);
        got.push_back(strings(args));
        rest.remove_prefix(p.consumed);
    }
    CHECK(got == expected);
    CHECK(rest == "*1\r\n$4\r\nQU");
}

TEST_CASE("protocol errors are Redis's words", "[resp]") {
    const std::string digits_64k(64 * 1024, '1');
    const std::vector<error_row> rows{
        {"count not a number", "*x\r\n", "ERR Protocol error: invalid multibulk length"},
        {"count empty", "*\r\n", "ERR Protocol error: invalid multibulk length"},
        {"count with a leading zero", "*01\r\n", "ERR Protocol error: invalid multibulk length"},
        {"count with a plus", "*+1\r\n", "ERR Protocol error: invalid multibulk length"},
        {"count past max_args", "*1048577\r\n", "ERR Protocol error: invalid multibulk length"},
        {"count past int64", "*99999999999999999999\r\n", "ERR Protocol error: invalid multibulk length"},
        {"count line: CR without LF", "*1\rX", "ERR Protocol error: invalid multibulk length"},
        {"not a bulk", "*1\r\n:3\r\n", "ERR Protocol error: expected '$', got ':'"},
        {"inline word inside an array", "*2\r\n$1\r\na\r\nb\r\n", "ERR Protocol error: expected '$', got 'b'"},
        {"bulk length not a number", "*1\r\n$x\r\n", "ERR Protocol error: invalid bulk length"},
        {"bulk length negative", "*1\r\n$-1\r\n", "ERR Protocol error: invalid bulk length"},
        {"bulk length -0", "*1\r\n$-0\r\n", "ERR Protocol error: invalid bulk length"},
        {"bulk length empty", "*1\r\n$\r\n", "ERR Protocol error: invalid bulk length"},
        {"bulk past max_bulk", "*1\r\n$536870913\r\n", "ERR Protocol error: invalid bulk length"},
        {"bulk line: CR without LF", "*1\r\n$1\rXa\r\n", "ERR Protocol error: invalid bulk length"},
        {"bulk longer than its length", "*1\r\n$3\r\nfooXY", "ERR Protocol error: invalid bulk length"},
        {"bulk followed by CR alone", "*1\r\n$3\r\nfoo\rX", "ERR Protocol error: invalid bulk length"},
        {"count line of 64 KiB + 1 without CR", "*" + digits_64k, "ERR Protocol error: too big mbulk count string"},
        {"bulk line of 64 KiB + 1 without CR", "*1\r\n$" + digits_64k,
         "ERR Protocol error: too big bulk count string"},
        {"inline line of 64 KiB + 1 without LF", std::string(64 * 1024 + 1, 'a'),
         "ERR Protocol error: too big inline request"},
        {"unclosed double quote", "get \"abc\r\n", "ERR Protocol error: unbalanced quotes in request"},
        {"unclosed single quote", "get 'abc\n", "ERR Protocol error: unbalanced quotes in request"},
        {"double quote closed by an escaped one", "get \"abc\\\"\n", "ERR Protocol error: unbalanced quotes in request"},
        {"closing double quote then a letter", "get \"a\"b\n", "ERR Protocol error: unbalanced quotes in request"},
        {"closing single quote then a letter", "get 'a'b\n", "ERR Protocol error: unbalanced quotes in request"},
        {"backslash ending a quoted line", "get \"a\\\n", "ERR Protocol error: unbalanced quotes in request"},
        {"NUL inside quotes", "get \"a\0b\"\n"s, "ERR Protocol error: unbalanced quotes in request"},
    };
    std::vector<std::string_view> args;
    std::string scratch;
    for (const auto& r : rows) {
        INFO(r.why);
        const auto p = resp::parse_command(r.wire, args, scratch);
        REQUIRE(p.status == resp::parse_status::error);
        CHECK(p.error == r.error);
        CHECK(args.empty());
        // A prefix is incomplete or already the same error: never complete, never another text.
        // (The long rows are cut at a sample of points: every one would take quadratic time.)
        const std::size_t step = r.wire.size() > 256 ? r.wire.size() / 64 : 1;
        for (std::size_t cut = 0; cut < r.wire.size(); cut += step) {
            INFO("cut at " << cut);
            const auto part = resp::parse_command(std::string_view{r.wire}.substr(0, cut), args, scratch);
            REQUIRE(part.status != resp::parse_status::complete);
            if (part.status == resp::parse_status::error) CHECK(part.error == r.error);
        }
    }
}

TEST_CASE("length lines and inline lines at exactly the limit wait for more", "[resp]") {
    std::vector<std::string_view> args;
    std::string scratch;
    const std::string count_line = "*" + std::string(64 * 1024 - 1, '1');  // 64 KiB, no CR yet
    CHECK(resp::parse_command(count_line, args, scratch).status == resp::parse_status::incomplete);
    const std::string inline_line(64 * 1024, 'a');
    CHECK(resp::parse_command(inline_line, args, scratch).status == resp::parse_status::incomplete);
    // Whole lines of the same size are fine; one byte more is refused even with its newline
    // in (Redis would take it if it came in one read: here the verdict is the same however
    // the bytes were cut).
    const auto p = resp::parse_command(inline_line + "\r\n", args, scratch);
    REQUIRE(p.status == resp::parse_status::complete);
    CHECK(args.size() == 1);
    CHECK(resp::parse_command("a" + inline_line + "\n", args, scratch).error ==
          "ERR Protocol error: too big inline request");
    CHECK(resp::parse_command(count_line + "1\r\n", args, scratch).error ==
          "ERR Protocol error: too big mbulk count string");
    // A '$' check comes after the line is whole, as in Redis.
    CHECK(resp::parse_command("*1\r\nX", args, scratch).status == resp::parse_status::incomplete);
}

TEST_CASE("limits are the caller's", "[resp]") {
    resp::limits lim;
    lim.max_args = 2;
    lim.max_bulk = 3;
    std::vector<std::string_view> args;
    std::string scratch;
    CHECK(resp::parse_command("*2\r\n$3\r\nabc\r\n$0\r\n\r\n", args, scratch, lim).status ==
          resp::parse_status::complete);
    CHECK(resp::parse_command("*3\r\n", args, scratch, lim).error == "ERR Protocol error: invalid multibulk length");
    CHECK(resp::parse_command("*1\r\n$4\r\n", args, scratch, lim).error == "ERR Protocol error: invalid bulk length");
    lim.max_inline = 4;
    CHECK(resp::parse_command("abcd", args, scratch, lim).status == resp::parse_status::incomplete);
    CHECK(resp::parse_command("abcd\r", args, scratch, lim).status == resp::parse_status::incomplete);
    CHECK(resp::parse_command("abcd\r\n", args, scratch, lim).status == resp::parse_status::complete);
    CHECK(resp::parse_command("abcde\n", args, scratch, lim).error == "ERR Protocol error: too big inline request");
    CHECK(resp::parse_command("abcde", args, scratch, lim).error == "ERR Protocol error: too big inline request");
    CHECK(resp::parse_command("*12345", args, scratch, lim).error == "ERR Protocol error: too big mbulk count string");
}

namespace {

struct reply_row {
    const char* why;
    std::string_view wire;
    std::vector<resp::reply_item> items;
};

resp::reply_item item(char type, std::string_view text, std::int64_t integer = 0, std::int64_t size = 0) {
    return {type, text, integer, size};
}

bool same(const std::vector<resp::reply_item>& a, const std::vector<resp::reply_item>& b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (a[i].type != b[i].type || a[i].text != b[i].text || a[i].integer != b[i].integer || a[i].size != b[i].size)
            return false;
    return true;
}

}  // namespace

TEST_CASE("replies of every type parse whole, and every prefix is incomplete", "[resp]") {
    const std::vector<reply_row> rows{
        {"simple string", "+OK\r\n"sv, {item('+', "OK")}},
        {"empty simple string", "+\r\n"sv, {item('+', "")}},
        {"error", "-ERR unknown command 'x'\r\n"sv, {item('-', "ERR unknown command 'x'")}},
        {"integer", ":42\r\n"sv, {item(':', "", 42)}},
        {"negative integer", ":-7\r\n"sv, {item(':', "", -7)}},
        {"integer with a plus", ":+7\r\n"sv, {item(':', "", 7)}},
        {"int64 min", ":-9223372036854775808\r\n"sv, {item(':', "", std::numeric_limits<std::int64_t>::min())}},
        {"int64 max", ":9223372036854775807\r\n"sv, {item(':', "", std::numeric_limits<std::int64_t>::max())}},
        {"bulk", "$5\r\nhello\r\n"sv, {item('$', "hello", 0, 5)}},
        {"binary bulk", "$4\r\n\0\r\n\n\r\n"sv, {item('$', "\0\r\n\n"sv, 0, 4)}},
        {"empty bulk", "$0\r\n\r\n"sv, {item('$', "", 0, 0)}},
        {"null bulk", "$-1\r\n"sv, {item('$', "", 0, -1)}},
        {"null array", "*-1\r\n"sv, {item('*', "", 0, -1)}},
        {"empty array", "*0\r\n"sv, {item('*', "", 0, 0)}},
        {"subscribe confirmation", "*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"sv,
         {item('*', "", 0, 3), item('$', "subscribe", 0, 9), item('$', "ch", 0, 2), item(':', "", 1)}},
        {"nested, mixed", "*2\r\n*2\r\n+a\r\n$-1\r\n-E\r\n"sv,
         {item('*', "", 0, 2), item('*', "", 0, 2), item('+', "a"), item('$', "", 0, -1), item('-', "E")}},
    };
    std::vector<resp::reply_item> items;
    for (const auto& r : rows) {
        INFO(r.why);
        for (std::size_t cut = 0; cut < r.wire.size(); ++cut) {
            INFO("cut at " << cut);
            const auto p = resp::parse_reply(r.wire.substr(0, cut), items);
            REQUIRE(p.status == resp::parse_status::incomplete);
            CHECK(items.empty());
            if (p.needed != 0) {
                CHECK(p.needed > cut);
                CHECK(p.needed <= r.wire.size());
            }
        }
        const auto p = resp::parse_reply(r.wire, items);
        REQUIRE(p.status == resp::parse_status::complete);
        CHECK(p.consumed == r.wire.size());
        CHECK(same(items, r.items));
        // A reply followed by the next one takes only its own bytes.
        const std::string two = std::string(r.wire) + "+next\r\n";
        CHECK(resp::parse_reply(two, items).consumed == r.wire.size());
    }
}

TEST_CASE("bad replies are errors", "[resp]") {
    const std::vector<std::pair<std::string, std::string_view>> rows{
        {"?\r\n", "ERR Protocol error: unknown reply type"},
        {"+OK\rX", "ERR Protocol error: reply line without CRLF"},
        {"+O\nK\r\n", "ERR Protocol error: reply line without CRLF"},
        {":\r\n", "ERR Protocol error: invalid integer"},
        {":-\r\n", "ERR Protocol error: invalid integer"},
        {":+-1\r\n", "ERR Protocol error: invalid integer"},
        {":1a\r\n", "ERR Protocol error: invalid integer"},
        {":9223372036854775808\r\n", "ERR Protocol error: invalid integer"},
        {":-9223372036854775809\r\n", "ERR Protocol error: invalid integer"},
        {"$-2\r\n", "ERR Protocol error: invalid bulk length"},
        {"$x\r\n", "ERR Protocol error: invalid bulk length"},
        {"$3\r\nfooXY", "ERR Protocol error: invalid bulk length"},
        {"*-2\r\n", "ERR Protocol error: invalid multibulk length"},
        {"*1\r\n?\r\n", "ERR Protocol error: unknown reply type"},
        {"+" + std::string(64 * 1024, 'a'), "ERR Protocol error: too big reply line"},
    };
    std::vector<resp::reply_item> items;
    for (const auto& [wire, error] : rows) {
        INFO(wire.substr(0, 40));
        const auto p = resp::parse_reply(wire, items);
        REQUIRE(p.status == resp::parse_status::error);
        CHECK(p.error == error);
        CHECK(items.empty());
    }
}

TEST_CASE("reply arrays nest up to max_depth", "[resp]") {
    resp::limits lim;
    lim.max_depth = 3;
    std::vector<resp::reply_item> items;
    CHECK(resp::parse_reply("*1\r\n*1\r\n*1\r\n:1\r\n", items, lim).status == resp::parse_status::complete);
    CHECK(items.size() == 4);
    const auto deep = resp::parse_reply("*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", items, lim);
    REQUIRE(deep.status == resp::parse_status::error);
    CHECK(deep.error == "ERR Protocol error: arrays nested too deep");
    // The default bound, against a reply nested a thousand deep.
    std::string wire;
    for (int i = 0; i < 1000; ++i) wire += "*1\r\n";
    CHECK(resp::parse_reply(wire, items).status == resp::parse_status::error);
}

TEST_CASE("writers make what the parsers read", "[resp]") {
    std::string out;
    resp::append_simple(out, "OK");
    resp::append_error(out, "ERR unknown command 'a\r\n+OK'");  // a peer's text cannot forge a reply
    resp::append_integer(out, 0);
    resp::append_integer(out, -1);
    resp::append_integer(out, std::numeric_limits<std::int64_t>::min());
    resp::append_integer(out, std::numeric_limits<std::int64_t>::max());
    resp::append_bulk(out, "a\0\r\n"sv);
    resp::append_bulk(out, "");
    resp::append_null(out);
    resp::append_array(out, 2);
    resp::append_bulk(out, "message");
    resp::append_integer(out, 12);
    CHECK(out == "+OK\r\n-ERR unknown command 'a  +OK'\r\n:0\r\n:-1\r\n:-9223372036854775808\r\n"
                 ":9223372036854775807\r\n$4\r\na\0\r\n\r\n$0\r\n\r\n$-1\r\n*2\r\n$7\r\nmessage\r\n:12\r\n"sv);
    // Read back, reply by reply.
    std::vector<resp::reply_item> items;
    std::string_view rest = out;
    std::size_t replies = 0;
    for (int i = 0; i < 20 && !rest.empty(); ++i) {
        const auto p = resp::parse_reply(rest, items);
        REQUIRE(p.status == resp::parse_status::complete);
        rest.remove_prefix(p.consumed);
        ++replies;
    }
    CHECK(replies == 10);
    CHECK(rest.empty());
}

TEST_CASE("bulk_size is what append_bulk adds", "[resp]") {
    for (const std::size_t n : {0, 1, 9, 10, 99, 100, 999, 1000, 12345, 1 << 20}) {
        INFO(n);
        std::string out;
        resp::append_bulk(out, std::string(n, 'x'));
        CHECK(resp::bulk_size(n) == out.size());
    }
}

TEST_CASE("glob_match answers as Redis's stringmatchlen", "[resp]") {
    struct row {
        std::string_view pattern;
        std::string_view text;
        bool match;
    };
    const std::vector<row> rows{
        {"", "", true},
        {"", "a", false},
        {"*", "", false},  // Redis's loop never runs on an empty text
        {"*", "anything", true},
        {"**", "a", true},
        {"news.*", "news.tech", true},
        {"news.*", "news.", true},
        {"news.*", "news", false},
        {"a*", "a", true},
        {"*a", "a", true},
        {"a*b", "ab", true},
        {"a*b", "axyb", true},
        {"a*b", "axyba", false},
        {"a*?", "a", false},
        {"a*?", "ab", true},
        {"*[ab]", "xxb", true},
        {"h?llo", "hello", true},
        {"h?llo", "hllo", false},
        {"?", "", false},
        {"h[ae]llo", "hallo", true},
        {"h[ae]llo", "hillo", false},
        {"h[^e]llo", "hallo", true},
        {"h[^e]llo", "hello", false},
        {"h[a-b]llo", "hbllo", true},
        {"h[b-a]llo", "hallo", true},  // a reversed range is the same range
        {"[^a-c]", "d", true},
        {"[^a-c]", "b", false},
        {"[a-]", "_", true},  // "a-]" is the range ']'..'a', and the class is left unclosed
        {"[a-]", "-", false},
        {"[]", "]", false},  // an empty class matches nothing
        {"[]a]", "]a]", false},
        {"\\*", "*", true},
        {"\\*", "a", false},
        {"\\?", "?", true},
        {"\\?", "x", false},
        {"a\\", "a\\", true},  // a trailing backslash is itself
        {"[\\]]", "]", true},
        {"[\\^a]", "^", true},
        {"[\\-]", "-", true},
        {"[\\a-c]", "b", false},  // the escaped 'a' is a letter, then '-' and 'c' are too
        {"[\\a-c]", "-", true},
        {"[abc", "b", true},  // unclosed: the class runs to the end
        {"[abc", "d", false},
        {"[", "[", false},
        {"[", "", false},
        {"[^", "x", true},  // unclosed and negated: any byte
        {"x[^", "xy", true},
        {"[^", "", false},
        {"[a-", "-", true},
        {"[a-\xff]", "0", true},  // ends compare as signed chars (x86-64): 0xff is -1
        {"[a-\xff]", "\xff", true},
        {"[a-\xff]", "b", false},
        {"[a-\xff]", "\x80", false},
    };
    for (const auto& r : rows) {
        INFO("pattern '" << r.pattern << "' text '" << r.text << "'");
        CHECK(resp::glob_match(r.pattern, r.text) == r.match);
    }
}

TEST_CASE("glob_match stays polynomial on patterns that made Redis exponential", "[resp]") {
    // CVE-2022-36021: "a*a*a*...b" against a long run of 'a' backtracked on every star.
    std::string pattern;
    for (int i = 0; i < 200; ++i) pattern += "a*";
    const std::string text(4000, 'a');
    CHECK_FALSE(resp::glob_match(pattern + "b", text));
    CHECK(resp::glob_match(pattern + "a", text));
    CHECK(resp::glob_match(pattern, text));
    CHECK_FALSE(resp::glob_match("*[^a]*[^a]*[^a]*[^a]*[^a]*[^a]*[^a]*", text));
}
