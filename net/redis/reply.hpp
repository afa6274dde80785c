#pragma once
// A deep copy of what hiredis parsed (its reply is freed when the callback returns).
#include <coring/redis/redis.hpp>

#include <hiredis/hiredis.h>

namespace coring::redis::detail {

reply copy_of(const redisReply& r);

// hiredis 0.14 allocates an array's element table as soon as it reads its header, so a peer
// that sends "*777777771\r\n" makes it ask for 6 GB (the fuzzer found it). This makes `reader`
// refuse arrays of more than max_array_elements: hiredis then fails the stream ("Out of
// memory") and the link drops the connection, as for any protocol error.
inline constexpr int max_array_elements = 1 << 20;  // as many as a RESP command's arguments
void limit_arrays(redisReader& reader) noexcept;

}  // namespace coring::redis::detail
