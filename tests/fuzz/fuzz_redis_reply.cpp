// fuzz-sources: net/redis/reply.cpp
// fuzz-libs: -lhiredis
// libFuzzer target: what a Redis server (a peer) sends to redis::client and redis::subscriber,
// read by hiredis's reader and copied by copy_of, over arbitrary bytes.
//
// The first byte picks a cut point; the rest is the stream. It is read whole and in two pieces
// (as two receives would bring it). Invariants checked:
// - both readings give the same replies (as copied), then the same end (an error, or not);
// - every copy equals hiredis's reply it came from: type, integer, bytes (NULs included),
//   elements, recursively.
//
// Built and run by ./dev fuzz, or by hand (from the repository root):
//   clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -Inet -Iruntime tests/fuzz/fuzz_redis_reply.cpp \
//       net/redis/reply.cpp -lhiredis -o fuzz_redis_reply && ./fuzz_redis_reply -max_total_time=60 corpus tests/fuzz/corpus/redis_reply
#include "fuzz_check.hpp"

#include "../../net/redis/reply.hpp"

#include <cstdint>
#include <string_view>
#include <vector>

using coring::redis::reply;
using coring::redis::detail::copy_of;

namespace {

bool same(const reply& a, const reply& b) {
    if (a.kind != b.kind || a.integer != b.integer || a.str != b.str || a.elements.size() != b.elements.size())
        return false;
    for (std::size_t i = 0; i < a.elements.size(); ++i)
        if (!same(a.elements[i], b.elements[i])) return false;
    return true;
}

bool matches(const reply& c, const redisReply& r) {
    switch (r.type) {
    case REDIS_REPLY_INTEGER: return c.kind == reply::type::integer && c.integer == r.integer;
    case REDIS_REPLY_NIL: return c.kind == reply::type::nil;
    case REDIS_REPLY_ARRAY:
        if (c.kind != reply::type::array || c.elements.size() != r.elements) return false;
        for (std::size_t i = 0; i < r.elements; ++i)
            if (!matches(c.elements[i], *r.element[i])) return false;
        return true;
    default: {
        const auto want = r.type == REDIS_REPLY_STRING   ? reply::type::string
                          : r.type == REDIS_REPLY_STATUS ? reply::type::status
                                                         : reply::type::error;
        return c.kind == want && c.str == std::string_view(r.str, r.len);
    }
    }
}

struct reading {
    std::vector<reply> replies;
    bool failed = false;
};

// Feeds the pieces in turn, taking every complete reply after each.
reading read(std::string_view first, std::string_view second) {
    reading out;
    redisReader* rd = redisReaderCreate();
    FUZZ_CHECK(rd != nullptr);
    coring::redis::detail::limit_arrays(*rd);  // as the client's link does
    for (std::string_view piece : {first, second}) {
        if (redisReaderFeed(rd, piece.data(), piece.size()) != REDIS_OK) {
            out.failed = true;
            break;
        }
        void* r = nullptr;
        int status;
        while ((status = redisReaderGetReply(rd, &r)) == REDIS_OK && r) {
            const auto& parsed = *static_cast<redisReply*>(r);
            reply copy = copy_of(parsed);
            FUZZ_CHECK(matches(copy, parsed));
            out.replies.push_back(std::move(copy));
            freeReplyObject(r);
            r = nullptr;
        }
        if (status != REDIS_OK) {
            out.failed = true;
            break;
        }
    }
    redisReaderFree(rd);
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
    const std::size_t cut = bytes.empty() ? 0 : data[0] % (bytes.size() + 1);
    const reading whole = read(bytes, {});
    const reading split = read(bytes.substr(0, cut), bytes.substr(cut));
    FUZZ_CHECK(whole.failed == split.failed);
    FUZZ_CHECK(whole.replies.size() == split.replies.size());
    for (std::size_t i = 0; i < whole.replies.size(); ++i) FUZZ_CHECK(same(whole.replies[i], split.replies[i]));
    return 0;
}
