/*
 * ratelimit.c — fg_ratelimit_decide, the one call of the request path: a local limit is
 * the table's answer; a Redis limit goes to the worker's client, which answers later or
 * falls back to the table itself.
 */
#include "ratelimit/internal.h"
#include "ratelimit/ratelimit.h"

enum fg_ratelimit_status
fg_ratelimit_decide(struct fg_ratelimit_table *table, struct fg_ratelimit_redis *redis,
                    const struct fg_ratelimit_limit *limit, const void *key, size_t key_len,
                    uint64_t cost, uint64_t now_us, struct fg_ratelimit_result *res,
                    fg_ratelimit_cb cb, void *arg, struct fg_ratelimit_pending **pending)
{
    if (pending != NULL)
        *pending = NULL;
    if (limit->backend == FG_RATELIMIT_REDIS && redis != NULL)
        return fg_ratelimit_redis_decide(redis, limit, key, key_len, cost, now_us, res, cb, arg,
                                         pending);
    *res = fg_ratelimit_table_decide(table, limit, key, key_len, cost, now_us);
    if (limit->backend == FG_RATELIMIT_REDIS)
        res->source = FG_RATELIMIT_SRC_FALLBACK; /* a Redis limit with no client here */
    return FG_RATELIMIT_DONE;
}
