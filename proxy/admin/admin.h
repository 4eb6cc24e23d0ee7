/*
 * admin.h — the admin listener (loopback by default): /healthz for the ALB's view of this
 * instance, /stats (JSON), /metrics (Prometheus), /config (effective, secrets masked),
 * POST /cache/purge?url=URL[&prefix=1] or ?tag=TAG, POST /cache/warm (a list of URLs),
 * POST /waitroom/OP?room=NAME[&rate=N/s] (open, pause, resume, activate, deactivate, rate), the
 * live dashboard (GET /) and its event stream (/stats/stream). It runs on its own thread with its
 * own event_base, so a slow scraper or viewer never touches a worker; the same thread writes the
 * CloudWatch EMF records (emf.c).
 */
#ifndef FG_ADMIN_H
#define FG_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include <event2/buffer.h>

#include "config/config.h"

/* ---- samples: what the dashboard and the EMF records are computed from ------------------ */

#define FG_ADMIN_SAMPLE_UPSTREAMS 16
#define FG_ADMIN_SAMPLE_SERVERS   64
#define FG_ADMIN_SAMPLE_LIMITS    64
#define FG_ADMIN_SAMPLE_ROUTES    64

struct fg_admin_sample_server {
    char address[64]; /* as /stats shows it (truncated beyond 63 bytes) */
    bool healthy;
    uint64_t requests, fails;
};

struct fg_admin_sample_upstream {
    char name[FG_CONF_NAME_MAX];
    uint64_t requests, retries, connects, reused;
    uint64_t errors;       /* connect failures, timeouts, resets and bad responses */
    uint64_t active, idle; /* connections in use, and idle in the pools: now */
    uint64_t pool_max;     /* idle connections the pools keep at most (keepalive x workers) */
    size_t n_servers;
    struct fg_admin_sample_server servers[FG_ADMIN_SAMPLE_SERVERS];
};

struct fg_admin_sample_limit {
    char name[FG_CONF_NAME_MAX];
    uint64_t allowed, limited, failed_closed;
};

#define FG_ADMIN_SAMPLE_ROOMS 8

/* A waiting room now (gauges) and its admissions (cumulative). */
struct fg_admin_sample_room {
    char name[FG_CONF_NAME_MAX];
    uint64_t issued, serving, waiting, active, eta_s, rate_milli; /* gauges */
    uint64_t admitted;
    char decision[16];
    bool fallback, paused, on;
};

struct fg_admin_sample_route {
    char name[128]; /* host and prefix: "/api", "shop.example.com/checkout" */
    uint64_t requests, r4xx, r5xx;
    uint64_t latency[FG_HIST_BUCKETS]; /* response times (fg_hist buckets) */
};

/* The counters of /stats at one instant, summed over the workers: cumulative since the
 * start, but for the gauges (noted). Filled by the server (ops->sample) on the admin
 * thread, from the same counters and with the same sums as /stats; plain data, copied. */
struct fg_admin_sample {
    uint64_t mono_ms;
    int64_t wall_ms;
    uint64_t generation, uptime_s;
    unsigned workers;
    bool draining;
    uint64_t requests, responses[6], bytes_in, bytes_out;           /* responses by status / 100 */
    uint64_t connections_active, connections_idle, requests_active; /* gauges */
    uint64_t latency[FG_HIST_BUCKETS]; /* request durations (fg_hist buckets) */
    uint64_t latency_sum_us;
    uint64_t app_head[FG_HIST_BUCKETS]; /* the app's time to its response head */
    /* the caches, summed over the stores */
    uint64_t cache_hits, cache_coalesced, cache_misses, cache_stale, cache_passes;
    uint64_t cache_entries, cache_bytes; /* gauges */
    /* this side of the offload: records the agent made durable, fallbacks, errors */
    uint64_t offload_queued, offload_duplicates, offload_fallback_pass, offload_fallback_reject;
    uint64_t offload_agent_errors, offload_too_big;
    uint64_t offload_in_flight; /* gauge */
    /* TLS: clients' handshakes with our listeners, ours with upstreams */
    uint64_t tls_handshakes, tls_resumptions, tls_failures;
    uint64_t tls_upstream_handshakes, tls_upstream_failures;
    size_t n_upstreams; /* in config order, at most FG_ADMIN_SAMPLE_UPSTREAMS */
    struct fg_admin_sample_upstream upstreams[FG_ADMIN_SAMPLE_UPSTREAMS];
    size_t n_limits; /* every limit seen since start, by name */
    struct fg_admin_sample_limit limits[FG_ADMIN_SAMPLE_LIMITS];
    size_t n_rooms; /* the waiting rooms */
    struct fg_admin_sample_room rooms[FG_ADMIN_SAMPLE_ROOMS];
    size_t n_routes; /* every route seen since start, by name */
    struct fg_admin_sample_route routes[FG_ADMIN_SAMPLE_ROUTES];
};

/* A purge asked through POST /cache/purge. */
enum fg_admin_purge_kind {
    FG_ADMIN_PURGE_KEY = 0, /* one key ("host/path?query"), every variant */
    FG_ADMIN_PURGE_PREFIX,  /* every key that starts with value */
    FG_ADMIN_PURGE_TAG,     /* every object that carries the tag value */
};

struct fg_admin_purge_result {
    size_t purged; /* objects removed here */
    bool fleet;    /* a fleet is configured: the purge was for every instance */
    bool published;
    uint64_t receivers; /* instances that received it (the publish's subscriber count) */
    const char *error;  /* why it was not published (static text); NULL when it was */
};

typedef void (*fg_admin_purge_done)(const struct fg_admin_purge_result *res, void *arg);

/* What the admin endpoint asks of the daemon; every callback runs on the admin thread. */
struct fg_admin_ops {
    bool (*draining)(void);
    bool (*warming)(void); /* a warm start runs: /healthz 503 "warming" (NULL: never) */
    void (*stats_json)(struct evbuffer *out);
    void (*metrics)(struct evbuffer *out); /* Prometheus text format */
    /* The current config (a reference the admin thread releases), for tokens. */
    struct fg_config *(*config)(void);
    /* Remove cached objects: a key ("host/path?query"), a prefix or a tag (value[0..len)),
     * here and, with a fleet, on every instance. done(result, arg) runs once on base (the
     * admin thread), maybe before this returns. */
    void (*cache_purge)(enum fg_admin_purge_kind kind, const char *value, size_t len,
                        struct event_base *base, fg_admin_purge_done done, void *arg);
    /* The address of the traffic listener cache warm-ups are sent to (loopback when it
     * listens on any address); false when there is none. */
    bool (*warm_target)(struct fg_addr *out);
    /* The counters of /stats now (mono_ms and wall_ms included). */
    void (*sample)(struct fg_admin_sample *out);
    /* A waiting room operation ("open", "pause", "resume", "activate", "deactivate",
     * "rate" with value in admissions per 1000 s) on room (NULL: every room); returns
     * how many rooms took it. */
    size_t (*waitroom)(const char *room, const char *op, uint64_t value);
};

/* The admin thread's own numbers for /stats ("dashboard" and "emf" members, each
 * followed by a comma) and /metrics: stream viewers, EMF records written and dropped. */
void fg_admin_stats_json(struct evbuffer *out);
void fg_admin_stats_metrics(struct evbuffer *out);

/* Progress of the cache warm-ups (POST /cache/warm), for /stats. */
struct fg_admin_warm_progress {
    uint64_t jobs, queued, in_flight, done, failed;
};
void fg_admin_warm_progress(struct fg_admin_warm_progress *out);

/* warm.c, on the admin thread: queue the URLs of body (one http:// URL per line, '#'
 * comments) and fetch them through target, concurrency at a time. false when a line is
 * not a URL (*bad_line says which, the whole list is refused) or the queue is full. */
bool fg_admin_warm_add(struct event_base *base, const struct fg_addr *target, const char *body,
                       size_t len, unsigned concurrency, size_t *accepted, size_t *bad_line);

/* agentstat.c, on the admin thread: poll flashgate-agent's status listener (admin
 * agent_status) every second; write its last numbers as the "agent" member of /stats
 * ("agent":null when not configured) and as lines of /metrics. The writers are for the
 * stats_json and metrics callbacks (they run on the admin thread too). */
bool fg_admin_agentstat_start(struct event_base *base, const struct fg_admin_ops *ops);
void fg_admin_agentstat_stop(void);
void fg_admin_agentstat_json(struct evbuffer *out);
void fg_admin_agentstat_metrics(struct evbuffer *out);

/* Start the admin thread: the one-second summaries, the EMF output and, with addr (NULL:
 * `admin off`), the listener. false (logged) if it cannot bind. */
bool fg_admin_start(const struct fg_addr *addr, const struct fg_admin_ops *ops);
void fg_admin_stop(void);

#endif /* FG_ADMIN_H */
