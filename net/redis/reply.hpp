#pragma once
// A deep copy of what hiredis parsed (its reply is freed when the callback returns).
#include <coring/redis/redis.hpp>

#include <hiredis/hiredis.h>

namespace coring::redis::detail {

reply copy_of(const redisReply& r);

}  // namespace coring::redis::detail
