/*
 * internal.h — the server module's private types: workers, snapshots, listeners, and the
 * headers of the request path (conn.h, txn.h, respond.h and each stage's). Only the server
 * module includes this.
 */
#ifndef FG_SERVER_INTERNAL_H
#define FG_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "cache/cache.h"
#include "compress/compress.h"
#include "config/config.h"
#include "core/core.h"
#include "http/http.h"
#include "netio/netio.h"
#include "offload/offload.h"
#include "fleet/fleet.h"
#include "ratelimit/ratelimit.h"
#include "server/conn.h"
#include "server/respond.h"
#include "server/server.h"
#include "server/tunnel.h"
#include "server/txn.h"
#include "upstream/upstream.h"

/* ---- statistics ---------------------------------------------------------------------- */

struct fg_worker_stats {
    fg_counter_t connections_total;
    fg_counter_t connections_active; /* gauge */
    fg_counter_t connections_idle;   /* gauge */
    fg_counter_t requests_total;
    fg_counter_t requests_active; /* gauge */
    fg_counter_t bytes_in;
    fg_counter_t bytes_out;
    fg_counter_t responses[6]; /* index status / 100; [0] unused */
    fg_counter_t rejected[FG_HTTP_E__COUNT];
    fg_counter_t rejected_other; /* 404, 413, 417, 501 decided by us */
    fg_counter_t timeout_header;
    fg_counter_t timeout_body;
    fg_counter_t timeout_idle;
    fg_counter_t timeout_send;
    fg_counter_t client_aborts;
    struct fg_hist latency;
    struct fg_hist app_head;         /* from the request sent to the app to its response head */
    struct fg_offload_stats offload; /* the offload stage and the agent client */
    struct fg_tunnel_stats tunnels;  /* upgrade tunnels (tunnel.c) */
};

/* ---- snapshots ----------------------------------------------------------------------- */

/* A config snapshot as one worker uses it: the config and this worker's pools for it.
 * Transactions pin the snapshot they started on (users); a reload swaps w->snap and the
 * old one is freed when its last transaction ends. Worker-local: no atomics needed. */
struct fg_snap {
    struct fg_config *cfg;
    struct fg_upstream_pool **pools;       /* [cfg->n_upstreams] */
    struct fg_cache **caches;              /* [cfg->n_caches]: stores outlive snapshots */
    struct fg_snap_limit *limits;          /* [cfg->n_limits] */
    struct fg_waitroom **waitrooms;        /* [cfg->n_waitrooms] (stage_waitroom.c) */
    struct fg_offload_window **windows;    /* [cfg->n_upstreams], made on first use
                                              (stage_offload.c: the triggers' windows) */
    struct fg_route_worker_stats **routes; /* [cfg->n_all_routes] (routestats.c); NULL
                                              entries are not counted apart */
    struct fg_fleet_worker *fleet;         /* the shared cache tier's client (fleet.h);
                                              NULL: no cache is shared */
    unsigned users;
    bool retired;
};

/* ---- listeners ----------------------------------------------------------------------- */

struct fg_worker;

struct fg_listener {
    struct fg_worker *w;
    struct evconnlistener *evl;
    struct fg_addr addr;
    int port;
    char port_text[8];   /* for X-Forwarded-Port */
    size_t server_index; /* into w->snap->cfg->servers, refreshed on reload */
    size_t listen_index; /* into that server's listens (its ssl flag), likewise */
    bool present;        /* scratch flag used while reconciling on reload */
    LIST_ENTRY(fg_listener) link;
};

/* ---- workers ------------------------------------------------------------------------- */

struct fg_worker {
    unsigned id;
    pthread_t thread;
    struct event_base *base;
    int wake_fd; /* eventfd: the main thread writes, msg_ev reads */
    struct event *msg_ev;
    struct fg_snap *snap; /* current */

    pthread_mutex_t msg_lock;
    struct fg_config *pending_cfg; /* reload handed over by main */
    int *pending_fds;              /* [n_pending_fds] new listener sockets */
    struct fg_addr *pending_addrs;
    size_t n_pending_fds;
    bool pending_stop_accept;
    bool pending_exit;

    bool stop_accepting; /* draining: Connection: close, no new connections */
    LIST_HEAD(, fg_listener) listeners;
    LIST_HEAD(, fg_listener) closed_listeners; /* closed, still pointed to by connections */
    LIST_HEAD(, fg_conn) conns;
    LIST_HEAD(, fg_tunnel) tunnels; /* open upgrade tunnels (their connections are in conns) */
    uint64_t n_tunnels;
    TAILQ_HEAD(, fg_txn) free_txns;
    unsigned n_free_txns;
    bool txns_shed;                   /* transactions were unmapped: a burst ended */
    uint64_t last_trim_ms;            /* when the heap's free pages were last given back */
    uint64_t txn_gets, txn_gets_seen; /* transactions started; as of the last timer tick */
    _Atomic unsigned long open_conns;

    struct fg_worker_stats stats;
    pthread_mutex_t ustats_lock; /* guards the ustats array itself, not the counters */
    struct fg_upstream_stats **ustats;
    size_t n_ustats;

    struct fg_cache_notifier *cache_notifier;
    struct fg_offload_client *offload; /* this worker's connections to the agent */
    uint64_t rng[2];
    char *scratch; /* response head building */
    size_t scratch_cap;

    /* access log: lines gathered here and handed to the writer thread */
    struct evbuffer *alog;
    char alog_path[1024]; /* the file alog's lines are for (a copy: configs come and go) */
    struct event *alog_timer;
};

/* worker.c */
struct fg_upstream_stats *fg_worker_upstream_stats(struct fg_worker *w,
                                                   const struct fg_conf_upstream *u);
void fg_snap_release(struct fg_worker *w, struct fg_snap *s);
uint64_t fg_worker_random(struct fg_worker *w);

/* request.c — the request path, top to bottom */
/* A complete head was parsed into t->req; run the stages. */
void fg_request_start(struct fg_conn *c, struct fg_txn *t);
/* Every limit allowed the request: the stages after rate limiting. */
void fg_request_after_limits(struct fg_txn *t);
/* Past the waiting room: the offload stage, then the cache and the app. */
void fg_request_after_waitroom(struct fg_txn *t);
/* Not offloaded (or falling back): the cache stage and the app. */
void fg_request_after_offload(struct fg_txn *t);

/* accesslog.c */
bool fg_accesslog_start(void);
void fg_accesslog_stop(void);
void fg_accesslog_txn(struct fg_worker *w, const struct fg_txn *t);
void fg_accesslog_flush(struct fg_worker *w);

/* stats.c */
void fg_stats_json(struct evbuffer *out, struct fg_worker *workers, size_t n,
                   const struct fg_config *cfg, uint64_t uptime_s, bool draining);
void fg_stats_metrics(struct evbuffer *out, struct fg_worker *workers, size_t n,
                      const struct fg_config *cfg, uint64_t uptime_s, bool draining);
/* routestats.c — counters per route, by name (host and prefix), across reloads */
#define FG_ROUTE_NAME_MAX 128
struct fg_route_worker_stats {
    fg_counter_t requests, r4xx, r5xx;
    struct fg_hist latency;
};
struct fg_route_sum {
    uint64_t requests, r4xx, r5xx, latency[FG_HIST_BUCKETS], latency_sum_us;
};
void fg_route_stats_global_init(size_t workers);
/* "/api", "shop.example.com/checkout": how a route is named in /stats, the dashboard and
 * the EMF records. */
void fg_route_name(const struct fg_conf_route *r, char *out, size_t cap);
bool fg_route_stats_snap_init(struct fg_worker *w, struct fg_snap *s);
void fg_route_stats_snap_free(struct fg_snap *s);
/* A transaction of t's route ended after dur_us (its worker's thread). */
void fg_route_stats_observe(const struct fg_txn *t, uint64_t dur_us);
/* The i-th route name ever counted and its counters summed over the workers. */
size_t fg_route_stats_count_names(void);
void fg_route_stats_sum(size_t i, char *name, size_t name_cap, struct fg_route_sum *out);

struct fg_admin_sample;
/* The same counters for the admin thread's one-second summaries and EMF records. */
void fg_stats_sample(struct fg_admin_sample *out, struct fg_worker *workers, size_t n,
                     const struct fg_config *cfg, uint64_t uptime_s, bool draining);

#endif /* FG_SERVER_INTERNAL_H */
