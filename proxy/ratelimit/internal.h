/*
 * internal.h — pieces of the ratelimit module shared by its files and its unit tests,
 * not by other modules.
 */
#ifndef FG_RATELIMIT_INTERNAL_H
#define FG_RATELIMIT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "ratelimit/ratelimit.h"

/* Table keys are identified by SipHash (core.h) under a per-process secret key. */

/* The Redis path of fg_ratelimit_decide (redis.c): same contract, for a redis limit with
 * a client. */
enum fg_ratelimit_status fg_ratelimit_redis_decide(struct fg_ratelimit_redis *r,
                                                   const struct fg_ratelimit_limit *limit,
                                                   const void *key, size_t key_len, uint64_t cost,
                                                   uint64_t now_us, struct fg_ratelimit_result *res,
                                                   fg_ratelimit_cb cb, void *arg,
                                                   struct fg_ratelimit_pending **pending);

/* The Redis-side GCRA, as loaded with SCRIPT LOAD (redis.c). Exposed for the tests. */
extern const char fg_ratelimit_redis_script[];

#endif /* FG_RATELIMIT_INTERNAL_H */
