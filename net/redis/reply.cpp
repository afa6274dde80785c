// copy_of: hiredis's parsed reply, copied into coring's own type. Pure (no I/O, no runtime):
// also compiled alone by ./dev fuzz (tests/fuzz/fuzz_redis_reply.cpp).
#include "reply.hpp"

namespace coring::redis::detail {

reply copy_of(const redisReply& r) {
    reply out;
    switch (r.type) {
    case REDIS_REPLY_STRING: out.kind = reply::type::string; break;
    case REDIS_REPLY_STATUS: out.kind = reply::type::status; break;
    case REDIS_REPLY_ERROR: out.kind = reply::type::error; break;
    case REDIS_REPLY_INTEGER:
        out.kind = reply::type::integer;
        out.integer = r.integer;
        return out;
    case REDIS_REPLY_ARRAY:
        out.kind = reply::type::array;
        out.elements.reserve(r.elements);
        // hiredis's reader nests at most 7 levels deep, so this recursion is shallow.
        for (std::size_t i = 0; i < r.elements; ++i) out.elements.push_back(copy_of(*r.element[i]));
        return out;
    default: return out;  // REDIS_REPLY_NIL
    }
    out.str.assign(r.str, r.len);  // binary-safe: NUL bytes included
    return out;
}

namespace {

// hiredis's own functions (every reader starts with the same table), and a copy of them whose
// createArray refuses what no Redis reply of ours needs.
const redisReplyObjectFunctions* hiredis_functions = nullptr;

void* create_array_limited(const redisReadTask* task, int elements) {
    if (elements > max_array_elements) return nullptr;  // the reader reports "Out of memory"
    return hiredis_functions->createArray(task, elements);
}

}  // namespace

void limit_arrays(redisReader& reader) noexcept {
    static const redisReplyObjectFunctions limited = [&] {
        hiredis_functions = reader.fn;
        redisReplyObjectFunctions f = *reader.fn;
        f.createArray = create_array_limited;
        return f;
    }();
    if (reader.fn == hiredis_functions) reader.fn = const_cast<redisReplyObjectFunctions*>(&limited);
}

}  // namespace coring::redis::detail
