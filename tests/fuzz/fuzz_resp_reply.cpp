// fuzz-sources: net/resp/resp.cpp
// libFuzzer target: the RESP reply parser over arbitrary bytes, read the way a client reads.
//
// The first two bytes pick small limits (nesting depth, line and bulk sizes) and a cut point;
// the rest is the stream of replies. It is parsed whole (reply after reply) and in two pieces as
// a client receives it. Invariants checked:
// - both readings give the same replies, then the same end (an error's text, or incomplete);
// - consumed is within the input and not zero; needed, when known, lies past the input;
// - the flattened items are well formed: each array is followed by exactly its elements, no
//   deeper than max_depth; texts view the input; sizes agree with the texts;
// - every complete reply written back by the writers parses to the same items.
//
// Built and run by ./dev fuzz, or by hand (from the repository root):
//   clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -Inet tests/fuzz/fuzz_resp_reply.cpp \
//       net/resp/resp.cpp -o fuzz_resp_reply && ./fuzz_resp_reply -max_total_time=60 corpus tests/fuzz/corpus/resp_reply
#include "resp_readings.hpp"

#include <coring/resp/resp.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

using namespace coring::resp;

namespace {

struct owned_item {
    char type;
    std::string text;
    std::int64_t integer;
    std::int64_t size;
    bool operator==(const owned_item&) const = default;
};
using reply = std::vector<owned_item>;

// Walks one element at items[i] (and its elements), checking the shape; returns the index after it.
std::size_t check_shape(const std::vector<reply_item>& items, std::size_t i, std::size_t depth, const limits& lim) {
    FUZZ_CHECK(i < items.size());
    const reply_item& it = items[i];
    switch (it.type) {
    case '+':
    case '-':
        FUZZ_CHECK(it.text.find('\r') == std::string_view::npos && it.text.find('\n') == std::string_view::npos);
        return i + 1;
    case ':': return i + 1;
    case '$':
        FUZZ_CHECK(it.size >= -1);
        FUZZ_CHECK(it.size == -1 ? it.text.empty() : it.text.size() == static_cast<std::size_t>(it.size));
        return i + 1;
    case '*':
        FUZZ_CHECK(it.size >= -1);
        FUZZ_CHECK(depth + 1 <= lim.max_depth);
        ++i;
        for (std::int64_t k = 0; k < it.size; ++k) i = check_shape(items, i, depth + 1, lim);
        return i;
    default: FUZZ_CHECK(!"unknown item type");
    }
    return i;
}

// The writers' form of a parsed reply; `i` walks the items.
void write_back(const std::vector<reply_item>& items, std::size_t& i, std::string& out) {
    const reply_item& it = items[i++];
    switch (it.type) {
    case '+': append_simple(out, it.text); break;
    case '-': append_error(out, it.text); break;
    case ':': append_integer(out, it.integer); break;
    case '$':
        if (it.size < 0) append_null(out);
        else append_bulk(out, it.text);
        break;
    case '*':
        if (it.size < 0) {
            out.append("*-1\r\n");  // the writers have no null array: a server of ours never sends one
            break;
        }
        append_array(out, static_cast<std::size_t>(it.size));
        for (std::int64_t k = 0; k < it.size; ++k) write_back(items, i, out);
        break;
    }
}

reply own(const std::vector<reply_item>& items) {
    reply r;
    for (const auto& it : items) r.push_back({it.type, std::string(it.text), it.integer, it.size});
    return r;
}

parsed parse_checked(std::string_view in, std::vector<reply_item>& items, const limits& lim) {
    const parsed p = parse_reply(in, items, lim);
    if (p.status != parse_status::complete) {
        FUZZ_CHECK(items.empty());
        FUZZ_CHECK(p.status == parse_status::error ? !p.error.empty() : (p.needed == 0 || p.needed > in.size()));
        return p;
    }
    FUZZ_CHECK(p.consumed > 0 && p.consumed <= in.size());
    FUZZ_CHECK(check_shape(items, 0, 0, lim) == items.size());
    for (const auto& it : items) FUZZ_CHECK(inside(it.text, in.substr(0, p.consumed)));
    // Written back (with bulks sized as bulk_size says) and parsed again: the same items.
    std::string again;
    std::size_t i = 0;
    write_back(items, i, again);
    std::vector<reply_item> items_again;
    const parsed q = parse_reply(again, items_again, lim);
    FUZZ_CHECK(q.status == parse_status::complete && q.consumed == again.size());
    FUZZ_CHECK(own(items) == own(items_again));
    return p;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    limits lim;
    lim.max_depth = data[0] % 6;
    lim.max_inline = 8 + data[0] % 64;
    lim.max_bulk = data[0] & 0x80 ? limits{}.max_bulk : 32;
    lim.max_args = data[0] & 0x40 ? limits{}.max_args : 4;
    const std::string_view in{reinterpret_cast<const char*>(data + 2), size - 2};
    const std::size_t cut = in.empty() ? 0 : (std::size_t{data[1]} * 257) % (in.size() + 1);

    std::vector<reply_item> items;
    check_readings_agree<reply>(in, cut, [&](std::string_view bytes, reply& value) {
        const parsed p = parse_checked(bytes, items, lim);
        value = own(items);
        return p;
    });
    return 0;
}
