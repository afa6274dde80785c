// fuzz-sources: net/resp/resp.cpp
// libFuzzer target: Redis's glob (glob_match) against a plain reference matcher.
//
// The first byte says where the pattern ends; the rest is the pattern, then the text. When both
// are short (16 bytes at most) the answer must equal the reference's: Redis's recursive
// algorithm restated (exponential, so only for short inputs), with each one-byte item judged by
// building the set of bytes it matches. Longer inputs only have to finish: libFuzzer's -timeout
// catches a matcher gone exponential. Also: a text matches itself with every byte escaped, and
// "*" matches every text but the empty one.
//
// Built and run by ./dev fuzz, or by hand (from the repository root):
//   clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -Inet tests/fuzz/fuzz_glob.cpp \
//       net/resp/resp.cpp -o fuzz_glob && ./fuzz_glob -max_total_time=60 corpus tests/fuzz/corpus/glob
#include "fuzz_check.hpp"

#include <coring/resp/resp.hpp>

#include <bitset>
#include <cstdint>
#include <string>
#include <string_view>

namespace {

// The bytes that the item at the start of `p` (not '*') matches, and its length in the pattern.
std::size_t item_set(std::string_view p, std::bitset<256>& set) {
    set.reset();
    const auto byte = [](char c) { return static_cast<unsigned char>(c); };
    if (p[0] == '?') {
        set.set();
        return 1;
    }
    if (p[0] == '\\') {
        set.set(byte(p.size() >= 2 ? p[1] : '\\'));
        return p.size() >= 2 ? 2 : 1;
    }
    if (p[0] != '[') {
        set.set(byte(p[0]));
        return 1;
    }
    std::size_t i = 1;
    const bool negate = p.size() > 1 && p[1] == '^';
    if (negate) i = 2;
    while (i < p.size() && p[i] != ']') {
        if (p[i] == '\\' && p.size() - i >= 2) {
            set.set(byte(p[i + 1]));
            i += 2;
        } else if (p.size() - i >= 3 && p[i + 1] == '-') {
            // Ends as Redis reads them on x86-64: signed chars, either order.
            const int a = static_cast<signed char>(p[i]);
            const int b = static_cast<signed char>(p[i + 2]);
            for (int c = 0; c < 256; ++c) {
                const int v = static_cast<signed char>(c);
                if ((v >= a && v <= b) || (v >= b && v <= a)) set.set(static_cast<std::size_t>(c));
            }
            i += 3;
        } else {
            set.set(byte(p[i]));
            ++i;
        }
    }
    if (negate) set.flip();
    return i < p.size() ? i + 1 : p.size();  // past the ']', or an unclosed class to the end
}

bool reference(std::string_view p, std::string_view t) {
    while (!p.empty() && !t.empty()) {
        if (p[0] == '*') {
            while (p.size() > 1 && p[1] == '*') p.remove_prefix(1);
            if (p.size() == 1) return true;
            for (std::size_t k = 0; k < t.size(); ++k)
                if (reference(p.substr(1), t.substr(k))) return true;
            return false;
        }
        std::bitset<256> set;
        const std::size_t len = item_set(p, set);
        if (!set.test(static_cast<unsigned char>(t[0]))) return false;
        p.remove_prefix(len);
        t.remove_prefix(1);
        if (t.empty())
            while (!p.empty() && p[0] == '*') p.remove_prefix(1);
    }
    return p.empty() && t.empty();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::string_view rest{reinterpret_cast<const char*>(data + 1), size - 1};
    const std::size_t split = rest.empty() ? 0 : data[0] % (rest.size() + 1);
    const std::string_view pattern = rest.substr(0, split);
    const std::string_view text = rest.substr(split);

    const bool got = coring::resp::glob_match(pattern, text);
    if (pattern.size() <= 16 && text.size() <= 16) FUZZ_CHECK(got == reference(pattern, text));

    std::string escaped;
    for (const char c : text) {
        escaped.push_back('\\');
        escaped.push_back(c);
    }
    FUZZ_CHECK(coring::resp::glob_match(escaped, text));
    FUZZ_CHECK(coring::resp::glob_match("*", text) == !text.empty());
    return 0;
}
