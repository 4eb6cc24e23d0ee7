/*
 * stage_limit.h — the rate-limit stage (stage_limit.c): the route's limits decided in
 * order, 429 on the first refusal, RateLimit fields on allowed answers; the limits of a
 * snapshot and their counters by name.
 */
#ifndef FG_SERVER_STAGE_LIMIT_H
#define FG_SERVER_STAGE_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/core.h"
#include "ratelimit/ratelimit.h"
#include "server/txn_hold.h"

struct fg_snap;
struct fg_worker;

/* Counters of one limit in one worker (single writer), kept by name across reloads. */
struct fg_limit_worker_stats {
    fg_counter_t allowed;
    fg_counter_t limited;
    fg_counter_t failed_closed; /* refused because Redis could not answer (fail=closed) */
    struct fg_ratelimit_redis_stats redis;
    struct fg_hist redis_latency; /* decision round trips through Redis */
};

/* A limit as one worker's snapshot runs it. */
struct fg_snap_limit {
    struct fg_ratelimit_limit limit;
    struct fg_ratelimit_redis *redis; /* NULL: local */
    struct fg_limit_worker_stats *stats;
};

/* The counters of one limit summed over the workers, for /stats. */
struct fg_limit_sum {
    uint64_t allowed, limited, failed_closed, redis_ok, redis_errors, redis_timeouts, fallbacks;
    uint64_t connects, disconnects, noscript;
    uint64_t redis_latency[FG_HIST_BUCKETS], redis_latency_count, redis_latency_sum;
};

/* The stage's part of a transaction. */
struct fg_stage_limit {
    struct fg_txn_hold hold; /* while a decision waits for Redis */
    size_t next;             /* the next limit of the route to decide */
    struct fg_ratelimit_pending *pending;
    uint64_t started_us;
    /* `when limited`: the limit this write is over, and its refusal if it is not queued */
    const struct fg_snap_limit *over;
    struct fg_ratelimit_result over_res;
    bool fields_added; /* the RateLimit fields of an allowing limit are on the answer */
};

/* The process-wide local table (limit_table_entries, read at start). */
bool fg_stage_limit_global_init(const struct fg_config *cfg, size_t workers);
struct fg_ratelimit_table *fg_stage_limit_table(void);
/* Build a snapshot's runtime limits and this worker's Redis clients / free them (on the
 * worker's thread, or before the workers start). */
bool fg_stage_limit_snap_init(struct fg_worker *w, struct fg_snap *s);
void fg_stage_limit_snap_free(struct fg_snap *s);
/* Decide the route's limits; false when it has none (the caller goes on). Otherwise the
 * stage answers 429 itself or calls fg_request_after_limits, now or later. */
bool fg_stage_limit(struct fg_txn *t);
/* Is the request over one of its limits, let through for the offload stage to queue? */
bool fg_stage_limit_over(const struct fg_txn *t);
/* Refuse t with the 429 its limit would have sent (the offload fallback of a write over
 * its limit); close: close the connection after it. */
void fg_stage_limit_refuse_saved(struct fg_txn *t, bool close);
/* Counters by name: the i-th limit ever seen (name out), summed over workers. */
size_t fg_stage_limit_stats_count(void);
void fg_stage_limit_stats_sum(size_t i, char *name, size_t name_cap, struct fg_limit_sum *out);

#endif /* FG_SERVER_STAGE_LIMIT_H */
