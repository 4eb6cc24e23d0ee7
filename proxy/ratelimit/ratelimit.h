/*
 * ratelimit.h — request rate limits: GCRA decisions, the local table every worker shares,
 * the Redis backend for fleet-wide limits, and the 429 response headers.
 *
 * Layers, one header:
 *  - the limit and the GCRA math (gcra.c): a pure function of (limit, stored TAT, cost,
 *    now). No clock is read, nothing is allocated;
 *  - the local table (table.c): key -> TAT, sharded, a lock per shard, bounded memory,
 *    shared by all worker threads;
 *  - the Redis backend (redis.c): a proxy/redis client per worker on the worker's
 *    event_base (TLS, ACL or IAM auth, cluster mode, failover are that module's); the
 *    same GCRA runs as one Lua script on the Redis server, on the server's clock. Slow,
 *    down or broken Redis: the decision is taken from the local table instead (fail
 *    open) and counted;
 *  - header formatting (headers.c): Retry-After and the RateLimit fields;
 *  - fg_ratelimit_decide() (ratelimit.c): the one call the request path makes.
 *
 * GCRA in one paragraph. A limit of `requests` per `period` has an emission interval
 * T = period / requests; `burst` extra requests may come at once, so a fresh key can make
 * burst + 1 requests back to back. Each key stores a theoretical arrival time (TAT): the
 * time at which its budget would be full again. A request of cost c at time now is allowed
 * iff max(TAT, now) + c*T - now <= (burst + 1) * T; if allowed, TAT becomes
 * max(TAT, now) + c*T. A TAT in the past means "full budget": an idle key needs no
 * cleanup, it is the same as a key never seen.
 *
 * Exactness. T is rarely a whole number of microseconds (3 r/s is 333333.33 µs), and
 * rounding it would let the allowed rate drift from the configured one. So the TAT is
 * kept as whole microseconds plus a fraction in units of 1/requests µs, and all of the
 * decision is done in those units, where T is exactly `period_us`. Integers only, no
 * floating point, no drift: 7 r/m allows exactly 7 * 1440 requests a day.
 */
#ifndef FG_RATELIMIT_H
#define FG_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "core/core.h"
#include "redis/redis.h"

/* Limit names: letters, digits, '_', '-', '.' (the config's rule), at most 63 bytes. */
#define FG_RATELIMIT_NAME_MAX 64

/* (burst + 1) * period_us must stay below this: every intermediate value of the decision
 * then fits in 53 bits, so the Redis script (Lua numbers are doubles) computes exactly
 * what the C code computes. 2^52 µs is 142 years: no real limit comes near it. */
#define FG_RATELIMIT_CAPACITY_MAX (UINT64_C(1) << 52)

enum fg_ratelimit_backend {
    FG_RATELIMIT_LOCAL = 0, /* this process's table: per instance */
    FG_RATELIMIT_REDIS,     /* one Redis for the fleet, falling back to the local table */
};

/* A configured limit. Built by fg_ratelimit_limit_init(); read-only afterwards, so one
 * instance can be shared by every worker (it lives in the config snapshot). */
struct fg_ratelimit_limit {
    char name[FG_RATELIMIT_NAME_MAX];
    size_t name_len;
    uint64_t requests;  /* per period, 1 .. UINT32_MAX */
    uint64_t period_us; /* the period, >= 1 µs */
    uint64_t burst;     /* extra requests allowed at once */
    uint64_t capacity;  /* (burst + 1) * period_us: the tolerance, in 1/requests µs */
    enum fg_ratelimit_backend backend;
};

/*
 * Fill *l. "50r/s, burst 100" is (requests 50, period 1 s, burst 100); "600r/m" is
 * (600, 60 s). Returns false with a message in err when the name is not a valid limit
 * name, requests is 0 or above UINT32_MAX, period_us is 0, or (burst + 1) * period_us
 * reaches FG_RATELIMIT_CAPACITY_MAX.
 */
bool fg_ratelimit_limit_init(struct fg_ratelimit_limit *l, const char *name, uint64_t requests,
                             uint64_t period_us, uint64_t burst, enum fg_ratelimit_backend backend,
                             char *err, size_t errlen);

/* ---- GCRA ----------------------------------------------------------------------------- */

/* A stored theoretical arrival time: us + frac / requests microseconds. {0, 0} is the
 * state of a key never seen (any TAT at or before now is). */
struct fg_ratelimit_tat {
    uint64_t us;
    uint32_t frac; /* < requests of the limit that wrote it */
};

/* Where an answer came from. */
enum fg_ratelimit_source {
    FG_RATELIMIT_SRC_LOCAL = 0, /* the local table, as configured */
    FG_RATELIMIT_SRC_REDIS,     /* the Redis script */
    FG_RATELIMIT_SRC_FALLBACK,  /* the local table because Redis could not answer */
};

/* One decision. */
struct fg_ratelimit_result {
    bool allowed;
    enum fg_ratelimit_source source;
    /* Requests of cost 1 that would still be allowed right now, after this one. */
    uint64_t remaining;
    /* Milliseconds (rounded up) until the budget is full again, i.e. until the key is as
     * good as new. 0 when nothing is consumed. */
    uint64_t reset_ms;
    /* Refused only: milliseconds (rounded up, >= 1) until the same request would be
     * allowed. A cost above burst + 1 can never be allowed; its retry_after_ms is then
     * the time until the budget is full (the best a client can do). 0 when allowed. */
    uint64_t retry_after_ms;
    /* The TAT to store: the new one when allowed, the given one unchanged when refused
     * or peeked (cost 0). Meaningless for SRC_REDIS. */
    struct fg_ratelimit_tat tat;
};

/*
 * The GCRA decision for one request of `cost` (1 for a plain request; 0 only peeks: it
 * is allowed and consumes nothing) at monotonic time now_us, given the key's stored TAT.
 * Pure: no clock, no locks, no allocation. The caller stores result.tat if allowed.
 * A TAT further ahead of now than the limit can produce (now is older than the clock
 * reading that wrote it, as when threads race; or a reload lowered the limit) counts as
 * an empty budget, never as a fresh one. now_us must be below 2^63 (292,000 years of
 * uptime); the new TAT saturates instead of wrapping.
 */
struct fg_ratelimit_result fg_ratelimit_gcra(const struct fg_ratelimit_limit *l,
                                             struct fg_ratelimit_tat tat, uint64_t cost,
                                             uint64_t now_us);

/* ---- the local table ------------------------------------------------------------------ */

/*
 * One table per process, shared by every worker thread. Keys are (limit name, key
 * bytes); the table stores only a 128-bit keyed hash (SipHash-2-4 with a random key per
 * table) and the TAT: 32 bytes an entry, no allocation after creation. Two different keys
 * share a budget only if both 64-bit halves collide (about 2^-128 for any pair), and the
 * random key stops clients from crafting keys that collide or crowd one bucket.
 *
 * Memory is bounded by max_entries. An entry whose TAT is in the past is dead (it means
 * the same as no entry) and is reused first. When every slot a key may use holds a live
 * entry, the one with the oldest TAT (the budget closest to full, so the least is lost) is
 * overwritten: a decision is never refused because the table is full. The forgotten key
 * starts again with a full budget: the table fails open, like the Redis fallback. Size it
 * at least (distinct keys active within (burst + 1) * T) to keep this rare; the `evicted`
 * counter says when it happens.
 */
struct fg_ratelimit_table;

/* Create a table with room for about max_entries keys (rounded up to a multiple of the
 * shard count; at least 8). NULL if out of memory. */
struct fg_ratelimit_table *fg_ratelimit_table_new(size_t max_entries);
/* Free the table. No decision may be running. NULL is a no-op. */
void fg_ratelimit_table_free(struct fg_ratelimit_table *t);

/*
 * Decide for key[0..key_len) under limit at now_us and store the new TAT. Thread-safe
 * (one shard lock held for the probe and the arithmetic, nothing else). Keys are bytes:
 * a client address in text, a header value, a route name; the limit's name is part of the
 * identity, so limits never share budgets. source is FG_RATELIMIT_SRC_LOCAL.
 */
struct fg_ratelimit_result fg_ratelimit_table_decide(struct fg_ratelimit_table *t,
                                                     const struct fg_ratelimit_limit *limit,
                                                     const void *key, size_t key_len, uint64_t cost,
                                                     uint64_t now_us);

struct fg_ratelimit_table_stats {
    uint64_t capacity; /* slots */
    uint64_t filled;   /* slots ever used (they are never emptied, only reused) */
    uint64_t reused;   /* dead entries replaced by a new key */
    uint64_t evicted;  /* live entries overwritten because their slots were all taken */
};

/* Summed over the shards with relaxed reads: a consistent-enough snapshot for /stats. */
void fg_ratelimit_table_stats(const struct fg_ratelimit_table *t,
                              struct fg_ratelimit_table_stats *out);

/* ---- the Redis backend ---------------------------------------------------------------- */

/* The default wait for Redis's answer to one decision: the config's `timeout=` default
 * (flashgate.conf(5), docs/ratelimit.md) and the default of the options below alike. */
#define FG_RATELIMIT_REDIS_TIMEOUT_MS 20

/* Tuning. A zero field takes the default shown. */
struct fg_ratelimit_redis_opts {
    unsigned timeout_ms;     /* 20 (FG_RATELIMIT_REDIS_TIMEOUT_MS): per decision, then the
                                local table answers */
    unsigned backoff_min_ms; /* 100: first reconnect delay */
    unsigned backoff_max_ms; /* 5000: the delay doubles up to this (with jitter) */
    unsigned max_inflight;   /* 1000: decisions waiting at once on one connection; beyond, local */
    const char *key_prefix;  /* "fg:rl:": Redis keys are prefix + name + ':' + key */
};

/* Counters of one client (one worker). Written by the worker only; read by anyone. */
struct fg_ratelimit_redis_stats {
    fg_counter_t redis_ok;         /* decisions answered by Redis */
    fg_counter_t redis_errors;     /* error reply, bad reply, or connection lost meanwhile */
    fg_counter_t redis_timeouts;   /* no answer within timeout_ms */
    fg_counter_t redis_skipped;    /* not sent: not connected, or max_inflight reached */
    fg_counter_t fallbacks;        /* answered by the local table: sum of the three above */
    fg_counter_t connects;         /* connections that completed the handshake */
    fg_counter_t connect_failures; /* connects or handshakes that failed or timed out */
    fg_counter_t disconnects;      /* ready connections lost or dropped */
    fg_counter_t noscript;         /* NOSCRIPT answers (script cache flushed, failover) */
};

struct fg_ratelimit_redis;
/* A decision waiting for Redis; see fg_ratelimit_decide. */
struct fg_ratelimit_pending;

/* Called once per pending decision, on the client's event_base thread. */
typedef void (*fg_ratelimit_cb)(const struct fg_ratelimit_result *res, void *arg);

/*
 * A client for the Redis of ep (proxy/redis: built at config load) on one worker's
 * event_base, connecting at once (non-blocking) and reconnecting in the background with
 * capped, jittered exponential backoff whenever a connection cannot be made or is lost.
 * table answers every decision Redis cannot (required). stats may be NULL (the client
 * then keeps its own, see fg_ratelimit_redis_get_stats); when given it must outlive the
 * client. ep is referenced. Returns NULL only when out of memory.
 */
struct fg_ratelimit_redis *fg_ratelimit_redis_new(struct event_base *base,
                                                  struct fg_redis_endpoint *ep,
                                                  const struct fg_ratelimit_redis_opts *opts,
                                                  struct fg_ratelimit_table *table,
                                                  struct fg_ratelimit_redis_stats *stats);

/* Close the connection and free the client. Every decision still waiting is answered
 * first, as a fallback, before this returns. Must be called on the base's thread and not
 * from inside a decision callback. NULL is a no-op. */
void fg_ratelimit_redis_free(struct fg_ratelimit_redis *r);

/* True while connected and ready for every key: decisions go to Redis. */
bool fg_ratelimit_redis_ready(const struct fg_ratelimit_redis *r);

/* The counters in use (the caller's or the client's own). */
struct fg_ratelimit_redis_stats *fg_ratelimit_redis_get_stats(struct fg_ratelimit_redis *r);

/* ---- the one call of the request path ------------------------------------------------- */

enum fg_ratelimit_status {
    FG_RATELIMIT_DONE = 0, /* *res holds the answer; cb will not be called */
    FG_RATELIMIT_PENDING,  /* cb will be called with the answer; *pending identifies it */
};

/*
 * Decide for key under limit, now_us being the request's monotonic arrival time.
 *
 * A local limit, or a Redis limit that cannot go to Redis right now (redis NULL, not
 * connected, too many in flight), is answered at once: FG_RATELIMIT_DONE with *res
 * filled. Otherwise the decision is sent to Redis and FG_RATELIMIT_PENDING is returned;
 * cb(res, arg) then runs exactly once, later, from redis's event_base, never from inside
 * this call: with Redis's answer, or with the local table's (source FALLBACK) when Redis
 * answers with an error, does not answer within timeout_ms, or the connection is lost.
 * *pending (if pending is not NULL) stays valid until cb starts or fg_ratelimit_cancel;
 * a transaction that goes away first must cancel.
 *
 * cb may start new decisions and cancel other pending ones; it must not free the client.
 */
enum fg_ratelimit_status
fg_ratelimit_decide(struct fg_ratelimit_table *table, struct fg_ratelimit_redis *redis,
                    const struct fg_ratelimit_limit *limit, const void *key, size_t key_len,
                    uint64_t cost, uint64_t now_us, struct fg_ratelimit_result *res,
                    fg_ratelimit_cb cb, void *arg, struct fg_ratelimit_pending **pending);

/* Forget a pending decision: its callback will not run. A reply that arrives later is
 * discarded. Call on the client's thread, before the callback has started. */
void fg_ratelimit_cancel(struct fg_ratelimit_pending *p);

/* ---- response headers ----------------------------------------------------------------- */

/*
 * Which rate-limit fields to write besides Retry-After.
 *  DRAFT  — the current IETF draft (draft-ietf-httpapi-ratelimit-headers-10/-11):
 *           RateLimit-Policy: "name";q=<requests>;w=<period s>   (the configured rate)
 *           RateLimit: "name";r=<remaining>;t=<seconds>
 *           t is the time until the budget is full again; on a refusal it is the
 *           Retry-After value, as the draft asks (Retry-After not before the window end).
 *  LEGACY — RateLimit-Limit / RateLimit-Remaining / RateLimit-Reset (draft-06 and
 *           earlier), still what most client libraries and API gateways read. Limit is
 *           burst + 1, the most requests one may make at once, so that Limit - Remaining
 *           is what was used (clients compute that); Reset is t as above.
 *  BOTH   — the two sets; the default we recommend while the draft settles.
 */
enum fg_ratelimit_header_style {
    FG_RATELIMIT_HEADERS_NONE = 0,
    FG_RATELIMIT_HEADERS_DRAFT = 1,
    FG_RATELIMIT_HEADERS_LEGACY = 2,
    FG_RATELIMIT_HEADERS_BOTH = 3,
};

/* Enough for every field of one limit in any style. */
#define FG_RATELIMIT_HEADERS_MAX 512

/* Retry-After in whole seconds from milliseconds: rounded up, at least 1 (a 0 invites an
 * immediate retry that would be refused again). */
uint64_t fg_ratelimit_retry_after_s(uint64_t retry_after_ms);

/* The `t` / RateLimit-Reset value in seconds for res (see the styles above). */
uint64_t fg_ratelimit_reset_s(const struct fg_ratelimit_result *res);

/* One RateLimit-Policy list member, e.g. "per_ip";q=50;w=1 — for a response under several
 * limits, join members with ", ". Periods that are not whole seconds are written as the
 * next whole second with q scaled down (never advertising more than the limit allows).
 * Returns the length written (NUL-terminated), or 0 if it does not fit in size. */
size_t fg_ratelimit_format_policy_item(char *buf, size_t size,
                                       const struct fg_ratelimit_limit *limit);

/* One RateLimit list member, e.g. "per_ip";r=42;t=3. Same return convention. */
size_t fg_ratelimit_format_item(char *buf, size_t size, const struct fg_ratelimit_limit *limit,
                                const struct fg_ratelimit_result *res);

/*
 * The header lines ("Name: value\r\n" each) for a response under one limit: Retry-After
 * when res is a refusal, then the fields of `style`. Returns the length written
 * (NUL-terminated), or 0 with buf[0] = '\0' if they do not all fit (never a partial
 * header) or there is nothing to write. FG_RATELIMIT_HEADERS_MAX bytes always suffice.
 */
size_t fg_ratelimit_format_headers(char *buf, size_t size, const struct fg_ratelimit_limit *limit,
                                   const struct fg_ratelimit_result *res,
                                   enum fg_ratelimit_header_style style);

#endif /* FG_RATELIMIT_H */
