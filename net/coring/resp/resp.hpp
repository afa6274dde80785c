#pragma once
// RESP2, the Redis protocol (https://redis.io/docs/reference/protocol-spec/): pure functions over
// bytes, no I/O. Commands in (a client's array of bulk strings, or an inline line as telnet sends
// it), replies out, and a reply parser for clients (coring-load, tests). Everything a peer sends
// is bounded by `limits`; an error is Redis's own text, so clients show what redis-server shows.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace coring::resp {

struct limits {
    std::size_t max_bulk = 512 * 1024 * 1024;  // one argument (Redis's proto-max-bulk-len)
    std::size_t max_args = 1024 * 1024;        // elements of one command (Redis's multibulk limit)
    std::size_t max_inline = 64 * 1024;        // an inline command's line (Redis's PROTO_INLINE_MAX_SIZE)
    std::size_t max_depth = 8;                 // parse_reply: arrays inside arrays
};

enum class parse_status { complete, incomplete, error };

struct parsed {
    parse_status status = parse_status::incomplete;
    std::size_t consumed = 0;  // complete: the bytes this command or reply took (skip them)
    std::size_t needed = 0;    // incomplete: the whole command needs at least this many bytes (0: unknown)
    std::string_view error;    // error: Redis's text without the "-", e.g. "ERR Protocol error: invalid bulk length"
};

// How far an incomplete array command was checked, so that the next parse of the same bytes
// plus more goes on from there: a peer that trickles a command of a million small arguments
// then costs time linear in its bytes, not quadratic. parse_command keeps it while the command
// is incomplete and clears it when the command completes or fails.
struct command_progress {
    std::uint32_t at = 0;     // bytes known to hold the array's head and `done` whole elements
    std::uint32_t done = 0;
    std::uint32_t count = 0;  // the array's length; 0: nothing recorded
};

// One command from the start of `input`: a RESP array of bulk strings, or an inline command (a
// line split at spaces, with "..." and '...' quoting as redis-cli's). `args` gets the arguments:
// views into `input`, or into `scratch` where an inline argument had escapes (both must outlive
// them). A blank inline line or an empty array is complete with no arguments: skip it.
// With `progress`, `input` must start with the bytes the last incomplete call saw.
parsed parse_command(std::string_view input, std::vector<std::string_view>& args, std::string& scratch,
                     const limits& lim = {}, command_progress* progress = nullptr);

// A reply, flattened in pre-order: an array is an item of type '*' with `size` elements,
// followed by them. `text` views `input` ('+' '-' '$' items); '$' or '*' with size -1 is null.
struct reply_item {
    char type = 0;  // '+', '-', ':', '$', '*'
    std::string_view text;
    std::int64_t integer = 0;  // ':' items
    std::int64_t size = 0;     // '$': the text's length or -1; '*': elements or -1
};
parsed parse_reply(std::string_view input, std::vector<reply_item>& items, const limits& lim = {});

// Replies, appended to `out`.
void append_simple(std::string& out, std::string_view text);  // +text\r\n (no CR or LF inside)
void append_error(std::string& out, std::string_view text);   // -text\r\n, text like "ERR unknown command"
void append_integer(std::string& out, std::int64_t n);        // :n\r\n
void append_bulk(std::string& out, std::string_view bytes);   // $len\r\nbytes\r\n
void append_null(std::string& out);                           // $-1\r\n
void append_array(std::string& out, std::size_t n);           // *n\r\n, then n items
// The bytes append_bulk adds for `n` bytes, to reserve once.
std::size_t bulk_size(std::size_t n) noexcept;

// Redis's glob (PSUBSCRIBE, PUBSUB CHANNELS): `*`, `?`, `[abc]`, `[^a-z]`, `\x` escapes; case
// sensitive. Time O(pattern * text) at worst, never exponential (a peer chooses both).
bool glob_match(std::string_view pattern, std::string_view text) noexcept;

}  // namespace coring::resp
