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

#include "config/config.h"

struct event_base;
struct evbuffer;

enum fg_fleet_purge_kind {
    FG_FLEET_PURGE_KEY = 0, /* one key ("host/path?query"), every variant */
    FG_FLEET_PURGE_PREFIX,  /* every key under a prefix */
    FG_FLEET_PURGE_TAG,     /* every object with a tag */
};

/* Apply a purge to every cache store of this process; the objects removed. */
size_t fg_fleet_apply_purge(enum fg_fleet_purge_kind kind, const char *value, size_t len);

/* Start the bus for cfg's fleet block (nothing without one). Call once the workers run
 * (after the privileges were dropped). false when the thread cannot start. */
bool fg_fleet_start(const struct fg_config *cfg);
/* A reload: a fleet block that changed (its redis block's URL, channel, sharded,
 * purge_log), appeared or went restarts the bus; an unchanged one keeps running. */
void fg_fleet_reload(const struct fg_config *cfg);
/* Stop the bus; every publish still waiting is answered (not published) first. */
void fg_fleet_stop(void);
/* Is a fleet configured (the bus running)? */
bool fg_fleet_on(void);

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

#endif /* FG_FLEET_H */
