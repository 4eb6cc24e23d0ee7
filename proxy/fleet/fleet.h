/*
 * fleet.h — what the instances of an Auto Scaling group do together, through the Redis
 * (ElastiCache) they already share and the one Redis client (proxy/redis); never a
 * protocol of our own between instances.
 *
 * The purge bus (bus.c): a purge asked on any instance (a URL, a prefix, a tag) is applied
 * there, appended to a bounded log in Redis (a stream, fg:fleet:{channel}:log) and
 * published on the fleet's channel (fg:fleet:{channel}:bus; SPUBLISH on a cluster); every
 * instance subscribed applies it at once, and the publisher learns how many received it.
 * Pub/sub delivers at most once: an instance whose subscription was lost reads the log
 * from the last entry it saw when it subscribes again and applies what it missed; when the
 * log cannot cover the gap (trimmed past it, or unreadable) it drops its caches whole.
 * docs/caching.md ("The fleet") says why.
 *
 * The bus runs on a thread of its own with its own event_base, so neither the workers nor
 * the admin listener ever wait for Redis.
 */
#ifndef FG_FLEET_H
#define FG_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/cache.h"
#include "config/config.h"

struct event_base;
struct evbuffer;

enum fg_fleet_purge_kind {
    FG_FLEET_PURGE_KEY = 0, /* one key ("host/path?query"), every variant */
    FG_FLEET_PURGE_PREFIX,  /* every key under a prefix */
    FG_FLEET_PURGE_TAG,     /* every object with a tag */
};

/* Apply a purge to every cache store of this process; the objects removed. The purge is
 * remembered (purges.c) so that a copy in the shared tier stored before it is not taken. */
size_t fg_fleet_apply_purge(enum fg_fleet_purge_kind kind, const char *value, size_t len);
/* Every object of every store (the purge log could not cover a gap); remembered too. */
size_t fg_fleet_apply_flush(void);

/* ---- purges remembered (purges.c) ------------------------------------------------------
 * The shared tier (L2) keeps objects other instances stored, possibly before a purge
 * that reached this instance: a copy taken from it must be newer than every purge that
 * matches it. The last FG_FLEET_PURGES_KEPT purges applied here are kept with their wall
 * time; a copy older than what is remembered counts as purged (it cannot be told). */
#define FG_FLEET_PURGES_KEPT 4096
#define FG_FLEET_SKEW_MS     2000 /* clocks of two instances may differ this much */

void fg_fleet_remember_purge(enum fg_fleet_purge_kind kind, const char *value, size_t len,
                             int64_t now_ms);
void fg_fleet_remember_flush(int64_t now_ms);
/* Was an object of this key with these tags (normalised, " a b ") stored at stored_ms
 * purged since (or can that not be told)? Thread-safe. */
bool fg_fleet_purged_since(const char *key, size_t key_len, const char *tags, size_t tags_len,
                           int64_t stored_ms);

/* Start the bus for cfg's fleet block (nothing without one). Call once the workers run
 * (after the privileges were dropped). warm_target: the traffic listener a warm start
 * asks (NULL: none). false when the thread cannot start. */
bool fg_fleet_start(const struct fg_config *cfg, const struct fg_addr *warm_target);
/* A reload: a fleet block that changed (its redis block's URL, channel, sharded,
 * purge_log), appeared or went restarts the bus; an unchanged one keeps running. */
void fg_fleet_reload(const struct fg_config *cfg);
/* Stop the bus; every publish still waiting is answered (not published) first. */
void fg_fleet_stop(void);
/* Is a fleet configured (the bus running)? */
bool fg_fleet_on(void);

/* ---- the hot pages and the warm start (warm.c) ------------------------------------------ */

/* Is the warm start still running? /healthz and health routes answer 503 meanwhile. */
bool fg_fleet_warming(void);

struct fg_fleet_warm_progress {
    const char *state; /* "off", "warming", "done" */
    uint64_t pages, done, failed, in_flight, duration_ms;
};
void fg_fleet_warm_progress(struct fg_fleet_warm_progress *out);

struct fg_fleet_publish_result {
    bool published;
    uint64_t receivers; /* subscribers that received it: the instances, this one included */
    const char *error;  /* static text when not published */
};
typedef void (*fg_fleet_published)(const struct fg_fleet_publish_result *res, void *arg);

/* Publish a purge already applied here to every instance. cb(res, arg) runs once on
 * reply_base (an event_base made notifiable, the admin thread's), within about a second
 * whatever Redis does; at once, before this returns, when no fleet runs. value is copied. */
void fg_fleet_publish_purge(enum fg_fleet_purge_kind kind, const char *value, size_t len,
                            struct event_base *reply_base, fg_fleet_published cb, void *arg);

/* Counters, process-wide. */
struct fg_fleet_stats {
    bool on, subscribed;
    uint64_t purges_sent;      /* published, with the log entry when purge_log > 0 */
    uint64_t publish_failures; /* Redis could not take them: applied here only */
    uint64_t purges_received;  /* from other instances, applied here */
    uint64_t purges_replayed;  /* missed while cut off, read back from the log */
    uint64_t resyncs;          /* (re)subscriptions after which the log was read */
    uint64_t flushes;          /* the log could not cover a gap: every cache dropped */
    uint64_t objects_purged;   /* objects removed here by purges from other instances */
};
void fg_fleet_get_stats(struct fg_fleet_stats *out);
/* The "fleet" member of /stats (null without a fleet; no trailing comma), and the
 * flashgate_fleet_* families of /metrics. */
void fg_fleet_stats_json(struct evbuffer *out);
void fg_fleet_stats_metrics(struct evbuffer *out);

/* ---- the shared tier (l2.c) -----------------------------------------------------------
 * A cache with `shared on` keeps its objects in the fleet's Redis too: a local miss asks
 * Redis (with a deadline of a few milliseconds) before the app, and what the app filled is
 * written back asynchronously, with a TTL of its freshness plus its stale windows. One
 * Redis hash per primary key, one field per variant (its secondary key), each a versioned
 * record: the meta, the stored head, the Vary names and values, the tags and the body as
 * stored (already encoded: L2 saves the compression CPU too). */

/* One worker's client for the shared tier and the hot record (one per worker and config
 * snapshot). */
struct fg_fleet_worker;
/* A request for key in the variant of coding ("br", "gzip", "identity") was served:
 * counted in the fleet's hot record (a miss always, one hit in 16), without waiting. */
void fg_fleet_hot(struct fg_fleet_worker *fw, const char *key, size_t key_len, const char *coding,
                  bool miss);
/* NULL when cfg has no fleet, or no cache uses the shared tier and no hot record is kept. */
struct fg_fleet_worker *fg_fleet_worker_new(struct event_base *base, const struct fg_config *cfg);
void fg_fleet_worker_free(struct fg_fleet_worker *fw);

/* A stored response as the shared tier keeps it (slices valid during a callback only). */
struct fg_fleet_l2_record {
    struct fg_cache_meta meta;
    const char *head, *vary_names, *vary_values, *tags, *body;
    size_t head_len, vary_names_len, vary_values_len, tags_len, body_len;
};

enum fg_fleet_l2_status {
    FG_FLEET_L2_FOUND = 0, /* recs[0..n) are the key's variants (n may be 0: a miss) */
    FG_FLEET_L2_TIMEOUT,   /* no answer within the deadline */
    FG_FLEET_L2_ERROR,     /* not ready, refused, lost, a record that does not decode */
};
typedef void (*fg_fleet_l2_cb)(enum fg_fleet_l2_status st, const struct fg_fleet_l2_record *recs,
                               size_t n, void *arg);
struct fg_fleet_l2_get;

/* Ask for every variant of key (the primary key). cb runs once, on the worker, never from
 * inside this call: within timeout_ms. NULL when it cannot be asked now (no ready
 * connection): then cb never runs and the caller goes to the app at once. */
struct fg_fleet_l2_get *fg_fleet_l2_get(struct fg_fleet_worker *fw, const char *key, size_t key_len,
                                        uint64_t timeout_ms, fg_fleet_l2_cb cb, void *arg);
/* Forget a get before its callback ran. NULL is a no-op. */
void fg_fleet_l2_cancel(struct fg_fleet_l2_get *g);

/* Write a variant back, fire and forget (the record is copied): kept ttl_ms. With
 * release, the fleet's fill lock of key is released once Redis has the record, and the
 * instances waiting for it are told (FILLED; ABORTED when the write failed). */
void fg_fleet_l2_put(struct fg_fleet_worker *fw, const char *key, size_t key_len,
                     const struct fg_fleet_l2_record *rec, uint64_t ttl_ms, bool release);

/* ---- fleet-wide coalescing (l2.c) ------------------------------------------------------
 * A key missing from every level: one instance takes a short lock in Redis (SET NX PX)
 * and asks the app; the others wait for its fill notification on the fleet's fills
 * channel (pub/sub, no polling), up to cache_lock_timeout, then ask the shared tier again,
 * or the app when the answer was not storable (released at once, the hit-for-miss rule
 * fleet-wide) or the wait ran out. */

enum fg_fleet_fill_outcome {
    FG_FLEET_FILL_FILLED = 0, /* the record is in the shared tier */
    FG_FLEET_FILL_PASSED,     /* not storable: go to the app */
    FG_FLEET_FILL_ABORTED,    /* the fill failed or was not written: go to the app */
    FG_FLEET_FILL_TIMEOUT,    /* no word within the wait */
    FG_FLEET_FILL_PENDING,    /* fg_fleet_wait_fill: the callback will say */
    FG_FLEET_FILL_UNAVAILABLE /* fg_fleet_wait_fill: not subscribed, cannot wait */
};

struct fg_fleet_req; /* a lock request or a wait, until its callback */

/* Try to take key's fill lock for ttl_ms, answering within timeout_ms: cb(taken, arg);
 * taken false also when Redis could not say (the caller then asks the app). NULL when it
 * cannot be asked now: ask the app. */
struct fg_fleet_req *fg_fleet_lock(struct fg_fleet_worker *fw, const char *key, size_t key_len,
                                   uint64_t ttl_ms, uint64_t timeout_ms,
                                   void (*cb)(bool taken, bool answered, void *arg), void *arg);
/* Wait for the fill of key by the instance that holds its lock, at most timeout_ms.
 * Returns PENDING (*req set; cb(outcome, arg) runs later, on the worker), an outcome
 * already known (a notification came in the last second), or UNAVAILABLE. */
enum fg_fleet_fill_outcome fg_fleet_wait_fill(struct fg_fleet_worker *fw, const char *key,
                                              size_t key_len, uint64_t timeout_ms,
                                              void (*cb)(enum fg_fleet_fill_outcome o, void *arg),
                                              void *arg, struct fg_fleet_req **req);
/* Release key's lock (held by this process) and tell the waiting instances o. */
void fg_fleet_release(struct fg_fleet_worker *fw, const char *key, size_t key_len,
                      enum fg_fleet_fill_outcome o);
/* Forget a lock request or a wait before its callback. NULL is a no-op. */
void fg_fleet_req_cancel(struct fg_fleet_req *q);

/* Count what the caller decided about an answer (hits are counted by it: a found record
 * may be stale, purged since or of another variant). */
enum fg_fleet_l2_event {
    FG_FLEET_L2_EV_HIT = 0,  /* a record served a miss */
    FG_FLEET_L2_EV_MISS,     /* no usable record: the app was asked */
    FG_FLEET_L2_EV_REJECTED, /* a record for the variant, but stale or purged since */
    FG_FLEET_L2_EV_TOO_BIG,  /* not written: larger than shared_max_object */
    FG_FLEET_L2_EV__COUNT
};
void fg_fleet_l2_count(enum fg_fleet_l2_event ev, uint64_t bytes);

struct fg_fleet_l2_stats {
    uint64_t hits, misses, rejected, too_big; /* as counted by the caller */
    uint64_t writes, write_errors;            /* write backs Redis took, or not */
    uint64_t timeouts, errors;                /* gets and puts past their deadline; the rest */
    uint64_t bytes_read, bytes_written;       /* records served from, written to Redis */
    uint64_t locks_taken, locks_waited, lock_timeouts;  /* fleet-wide coalescing */
    uint64_t waits_filled, waits_passed, notifications; /* how waits ended; fills told */
};
void fg_fleet_l2_stats(struct fg_fleet_l2_stats *out);

#endif /* FG_FLEET_H */
