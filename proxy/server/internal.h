/*
 * internal.h — the server module's private types: workers, snapshots, client
 * connections and transactions. Only the server module includes this.
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
#include "ratelimit/ratelimit.h"
#include "server/server.h"
#include "upstream/upstream.h"

#define FG_CONN_MAGIC 0x636f6e31u /* "con1" */
#define FG_TXN_MAGIC  0x74786e31u /* "txn1" */

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
    /* offload (offload.c) */
    fg_counter_t of_queued, of_duplicates, of_fallback_pass, of_fallback_reject, of_too_big;
    fg_counter_t of_err_full, of_err_too_big, of_err_error, of_err_timeout, of_err_unreachable;
    fg_counter_t of_in_flight; /* gauge: records sent, not answered */
    /* which trigger sent a write to the offload stage (none of them: `when always`) */
    fg_counter_t of_trig_inflight, of_trig_latency, of_trig_failing, of_trig_limited;
};

/* ---- rate limits (limit.c) -------------------------------------------------------------- */

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

/* ---- compression (compress.c) ----------------------------------------------------------- */

/* What to do with one answer: the edits to its head, and whether to encode its body. */
struct fg_zplan {
    bool vary_edit; /* write the merged Vary instead of the answer's */
    bool compress;
    bool flush_each; /* a stream (text/event-stream): flush after every piece */
    enum fg_compress_encoding encoding;
    char vary[512];
    size_t vary_len;
    char etag[160]; /* weakened */
    size_t etag_len;
};

/* A body going through an encoder. */
struct fg_zstream {
    struct fg_compressor *z;
    struct evbuffer *tmp; /* input staged for the encoder */
    struct evbuffer *out; /* encoder output before framing */
    enum fg_compress_encoding encoding;
    bool flush_each;
    uint64_t cpu_ns;
};

struct fg_zstats {
    uint64_t responses[FG_COMPRESS_ENCODING__COUNT], bytes_in[FG_COMPRESS_ENCODING__COUNT];
    uint64_t bytes_out[FG_COMPRESS_ENCODING__COUNT], cpu_ns[FG_COMPRESS_ENCODING__COUNT];
    uint64_t skipped[FG_COMPRESS_REASON__COUNT], errors;
};

/* ---- upstream health windows (trigger.c) ---------------------------------------------- */

/* What one worker saw of one upstream over the last second, for the offload triggers:
 * response times (a sample of at most FG_UPWIN_SAMPLES, exact p95 once per window) and
 * how many requests failed. */
#define FG_UPWIN_SAMPLES 1024
#define FG_UPWIN_MS      1000
struct fg_upwin {
    uint64_t start_ms;  /* the current window's start */
    uint32_t n, failed; /* requests finished in the current window, failures among them */
    uint32_t kept;      /* samples kept of the n (reservoir) */
    uint64_t p95_us;    /* of the last finished window; 0: too few requests to tell */
    uint32_t last_n;    /* requests of the last finished window */
    bool last_failing;  /* at least half of the last finished window's requests failed */
    uint32_t lat_us[FG_UPWIN_SAMPLES];
};

/* ---- snapshots ----------------------------------------------------------------------- */

/* A config snapshot as one worker uses it: the config and this worker's pools for it.
 * Transactions pin the snapshot they started on (users); a reload swaps w->snap and the
 * old one is freed when its last transaction ends. Worker-local: no atomics needed. */
struct fg_snap {
    struct fg_config *cfg;
    struct fg_upstream_pool **pools; /* [cfg->n_upstreams] */
    struct fg_cache **caches;        /* [cfg->n_caches]: stores outlive snapshots */
    struct fg_snap_limit *limits;    /* [cfg->n_limits] */
    struct fg_upwin **upwins;        /* [cfg->n_upstreams], made on first use (trigger.c) */
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

/* ---- client connections and transactions ----------------------------------------------- */

enum fg_conn_state {
    FG_CONN_IDLE = 0, /* keep-alive: waiting for the first byte of a request */
    FG_CONN_HEAD,     /* bytes of a head arrived; header deadline running */
    FG_CONN_TXN,      /* a transaction is running */
    FG_CONN_CLOSING,  /* flushing the last response, then close */
};

enum fg_req_state { FG_REQ_BODY = 0, FG_REQ_DONE };
enum fg_resp_state { FG_RESP_WAIT = 0, FG_RESP_BODY, FG_RESP_DONE };

struct fg_conn;
struct fg_fetch;
struct fg_offload_pending;
struct fg_offload_agent;

/* The cache stage's part of a transaction (server/cache.c). */
struct fg_txn_cache {
    struct fg_cache *store;
    struct fg_cache_obj *obj;   /* served, or waited on */
    struct fg_cache_obj *stale; /* a stale variant, for stale-if-error */
    struct fg_cache_waiter waiter;
    struct event *lock_timer;      /* cache_lock_timeout while waiting on another's fetch */
    struct fg_fetch *fetch;        /* the fetch this request started (PASS hands it over) */
    struct fg_cache_reader reader; /* the body, while serving */
    bool active;                   /* the stage owns the transaction */
    bool serving;                  /* head written, body streaming */
    bool chunked;                  /* body sent chunked (length unknown while filling) */
    bool waited;                   /* waited on a fetch: coalesced */
};

struct fg_txn {
    unsigned magic;
    struct fg_conn *c;
    struct fg_snap *snap;
    const struct fg_conf_server *srv;
    const struct fg_conf_route *route;
    struct fg_upstream_exchange *x; /* the request at the app (proxy.c) */

    struct fg_http_request req;
    enum fg_req_state req_state;
    enum fg_resp_state resp_state;
    uint64_t req_body_left; /* LENGTH: bytes still to forward */
    uint64_t req_body_bytes;
    struct fg_http_chunked req_chunked;
    bool resp_chunked_out; /* we chunk-encode toward the client */
    bool resp_head_sent;
    bool client_close; /* close the client connection after this response */
    int status;
    const char *xcache;             /* X-Cache value for a proxied response (NULL: none) */
    bool zroute;                    /* the route compresses */
    enum fg_compress_encoding zenc; /* what the client accepts best (identity: none) */
    struct fg_zstream zs;           /* a proxied answer being compressed */
    const char *log_cache;          /* what the cache did, for the access log (NULL: no cache) */
    /* Rate limits (limit.c): the next limit to decide, a decision waiting for Redis, the
     * RateLimit fields for an allowed response (limit_headers on). */
    size_t rl_next;
    struct fg_ratelimit_pending *rl_pending;
    uint64_t rl_started_us;
    const char *log_limit; /* the limit that refused, for the access log */
    size_t rl_fields_len;
    char rl_fields[FG_RATELIMIT_HEADERS_MAX];
    /* An unsafe request on a cached route: what to invalidate when the answer comes. */
    struct fg_cache *inval_store;
    char *inval_key;
    char inval_host[256];
    size_t inval_host_len;
    struct fg_txn_cache cache;
    /* Offload (offload.c): the record waiting for the agent's answer, the key. */
    struct fg_offload_pending *of_pending;
    bool of_active;    /* the stage owns the transaction */
    bool of_body_wait; /* waiting for the whole body in the input buffer */
    bool of_sent_continue;
    const char *log_offload; /* queued, duplicate, pass, reject (NULL: not offloaded) */
    /* `when limited`: the limit this write is over, and its refusal if it is not queued */
    const struct fg_snap_limit *of_limit;
    struct fg_ratelimit_result of_limit_res;
    char of_key[256];

    /* The request head as sent upstream, kept for a retry on a fresh connection. */
    char *head;
    size_t head_len, head_cap;

    uint64_t start_us, upstream_start_us, upstream_us;
    uint64_t bytes_in, bytes_out;
    char request_id[40];
    char client_ip[64]; /* the peer, or the trusted X-Forwarded-For hop (request.c) */
    /* Copies for the access log: the head itself is gone once forwarded. */
    char log_method[16];
    char log_path[512];
    char log_ua[256];
    char log_trace[256];
    char log_upstream[112];
    TAILQ_ENTRY(fg_txn) free_link;
};

struct fg_conn {
    unsigned magic;
    struct fg_worker *w;
    struct fg_listener *lst;
    struct bufferevent *bev; /* writes and the send timeout */
    struct fg_reader reader; /* reads */
    struct event *timer;
    enum fg_conn_state state;
    unsigned requests;
    uint64_t head_deadline_ms;
    uint64_t body_deadline_ms;
    uint64_t body_start_ms;
    struct fg_txn *txn;
    struct sockaddr_storage peer;
    char peer_ip[64];
    LIST_ENTRY(fg_conn) link;
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
    TAILQ_HEAD(, fg_txn) free_txns;
    unsigned n_free_txns;
    _Atomic unsigned long open_conns;

    struct fg_worker_stats stats;
    pthread_mutex_t ustats_lock; /* guards the ustats array itself, not the counters */
    struct fg_upstream_stats **ustats;
    size_t n_ustats;

    struct fg_cache_notifier *cache_notifier;
    struct fg_offload_agent *agents; /* offload.c: one connection per agent socket path */
    uint64_t of_next_id;
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

/* conn.c — client connections */
void fg_conn_accept(struct fg_listener *lst, int fd, const struct sockaddr *sa, int salen);
void fg_conn_close(struct fg_conn *c);
void fg_conn_close_if_idle(struct fg_conn *c);
/* A transaction finished: log, count, then keep the connection or close it. */
void fg_conn_txn_done(struct fg_conn *c);
/* Write a complete response made by flashgate itself. close: the connection closes after
 * (it also closes when keep-alive is not possible). The body is "<code> <reason>: detail". */
void fg_conn_respond(struct fg_conn *c, int status, const char *detail, bool close);
void fg_conn_send_response(struct fg_conn *c, int status, const char *ctype, const char *body,
                           size_t body_len, bool close);
/* The same with extra header fields ("Name: value\r\n" lines, fields_len bytes). */
void fg_conn_send_response_fields(struct fg_conn *c, int status, const char *ctype,
                                  const char *body, size_t body_len, const char *fields,
                                  size_t fields_len, bool close);
/* May this connection carry another request after the current one? */
bool fg_conn_keepalive_ok(struct fg_conn *c, struct fg_txn *t);
/* The request body began / ended: start / stop the body deadline. */
void fg_conn_body_started(struct fg_conn *c);
void fg_conn_body_finished(struct fg_conn *c);
/* Resume reading the client (back-pressure released or body wanted). */
void fg_conn_resume_read(struct fg_conn *c);

/* request.c — the request path, top to bottom */
/* A complete head was parsed into t->req; run the stages. */
void fg_request_start(struct fg_conn *c, struct fg_txn *t);
/* Every limit allowed the request: the stages after rate limiting. */
void fg_request_after_limits(struct fg_txn *t);
/* Not offloaded (or falling back): the cache stage and the app. */
void fg_request_after_offload(struct fg_txn *t);

/* compress.c — compression on the request path */
/* Negotiate the coding while the request head is here (t->zroute, t->zenc). */
void fg_z_negotiate(struct fg_txn *t);
/* The request's fields as the cache sees them on a compressing route: Accept-Encoding
 * replaced by the negotiated coding, so variants are per coding, not per header spelling.
 * out has room for FG_HTTP_MAX_HEADERS + 1; returns the count. */
size_t fg_z_lookup_headers(const struct fg_http_header *h, size_t n, enum fg_compress_encoding enc,
                           struct fg_http_header *out);
/* Plan an answer of route for a client that accepts enc: false when its body stays as it
 * is (plan->vary_edit may still be set: a compressible answer varies on Accept-Encoding). */
bool fg_z_plan(const struct fg_conf_route *route, enum fg_compress_encoding enc,
               enum fg_http_method method, const struct fg_http_response *resp,
               struct fg_zplan *plan);
/* Is this field of the answer replaced by the plan's (Vary, ETag, Content-Length)? */
bool fg_z_field_replaced(const struct fg_zplan *plan, const struct fg_http_header *h);
/* The plan's own fields ("Name: value\r\n" lines): Vary, Content-Encoding, ETag. */
size_t fg_z_extra_fields(const struct fg_zplan *plan, char *out, size_t cap);
/* An encoder with the route's level; length_hint FG_COMPRESS_LENGTH_UNKNOWN if unknown. */
struct fg_compressor *fg_z_encoder(const struct fg_conf_route *route, enum fg_compress_encoding enc,
                                   uint64_t length_hint);
bool fg_z_start(struct fg_zstream *zs, const struct fg_conf_route *route,
                const struct fg_zplan *plan, uint64_t length_hint);
/* Encode what in holds into out / end the stream into out (counted). false on failure. */
bool fg_z_write(struct fg_zstream *zs, struct evbuffer *in, struct evbuffer *out);
bool fg_z_finish(struct fg_zstream *zs, struct evbuffer *out);
void fg_z_free(struct fg_zstream *zs);
void fg_zstats_get(struct fg_zstats *out);
void fg_zstats_account(enum fg_compress_encoding e, uint64_t in, uint64_t out, uint64_t cpu_ns);
void fg_zstats_skipped(enum fg_compress_reason r);

/* limit.c — the rate-limit stage */
/* The process-wide local table (limit_table_entries, read at start). */
bool fg_limit_global_init(const struct fg_config *cfg, size_t workers);
struct fg_ratelimit_table *fg_limit_table(void);
/* Build a snapshot's runtime limits and this worker's Redis clients / free them (on the
 * worker's thread, or before the workers start). */
bool fg_limit_snap_init(struct fg_worker *w, struct fg_snap *s);
void fg_limit_snap_free(struct fg_snap *s);
/* Decide the route's limits; false when it has none (the caller goes on). Otherwise the
 * stage answers 429 itself or calls fg_request_after_limits, now or later. */
bool fg_limit_stage(struct fg_txn *t);
/* The transaction ends: forget a decision still waiting for Redis. */
void fg_limit_stage_release(struct fg_txn *t);
/* Counters by name: the i-th limit ever seen (name out), summed over workers. */
size_t fg_limit_stats_count(void);
void fg_limit_stats_sum(size_t i, char *name, size_t name_cap, struct fg_limit_sum *out);
struct fg_limit_worker_stats *fg_limit_stats(const char *name, unsigned worker);

/* offload.c — the offload stage */
/* Take the request if its route offloads it (true): 202 once the agent made it durable,
 * or the route's fallback (fg_request_after_offload, or 503). false: the caller goes on. */
bool fg_offload_stage(struct fg_txn *t);
/* More request bytes arrived while the stage waits for the body. */
void fg_offload_client_readable(struct fg_txn *t);
/* The transaction ends: forget a record still waiting for its answer. */
void fg_offload_stage_release(struct fg_txn *t);

/* trigger.c — upstream health windows for the offload triggers */
/* A request to the route's upstream finished: ok with its response time, or failed
 * (connect error, timeout, broken or 5xx answer). */
void fg_trigger_observe(struct fg_txn *t, bool ok, uint64_t us);
/* The trigger of t's route that fires now for t (a name for stats: "inflight", "latency",
 * "failing", "limited"), or NULL when none does. Only for routes with `when` lines. */
const char *fg_trigger_fires(struct fg_txn *t);
/* Free a snapshot's windows. */
void fg_trigger_snap_free(struct fg_snap *s);

/* limit.c, for the offload fallback: refuse t with the 429 its limit would have sent
 * (t->of_limit, t->of_limit_res); close: close the connection after it. */
void fg_limit_refuse_saved(struct fg_txn *t, bool close);

/* forward.c — the upstream request head */
/* Build the request as the app sees it into t->head. for_cache: the head of a cache fill
 * (GET, no conditionals or Range of the client's: the answer must be a whole, storable
 * one). */
bool fg_forward_head(struct fg_txn *t, bool for_cache);

/* proxy.c — forwarding to the app */
void fg_proxy_start(struct fg_txn *t);
/* Take over the exchange of a cache fill whose answer turned out uncacheable, from inside
 * its on_head: resp is that head; the body follows through the proxy path. */
void fg_proxy_adopt(struct fg_txn *t, struct fg_upstream_exchange *x,
                    const struct fg_http_response *resp);
/* The client has more request body bytes, or its output drained (resume upstream). */
void fg_proxy_client_readable(struct fg_txn *t);
void fg_proxy_client_drained(struct fg_txn *t);
/* The client went away: drop the upstream side. */
void fg_proxy_abort(struct fg_txn *t);

/* cache.c — the cache stage */
/* Serve, wait or fill; false when the request is not for the cache (the caller proxies). */
bool fg_cache_stage(struct fg_txn *t);
/* The app answered an unsafe request: invalidate its URL and its Location and
 * Content-Location of the same host (RFC 9111 §4.4), unless the answer is an error. */
void fg_cache_response_invalidates(struct fg_txn *t, const struct fg_http_response *resp);
/* The transaction ends (done or aborted): let go of everything the stage holds. */
void fg_cache_stage_release(struct fg_txn *t);

/* fetch.c — filling a cache object from the upstream, independent of any client */
/* Start fetching t's request into fill (a BUSY object). stale: the variant to revalidate
 * (validators are added) and to fall back on (stale-if-error); may be NULL. background:
 * nobody waits on the connection (stale-while-revalidate refresh). Takes its own
 * references. Returns the fetch, or NULL (fill was aborted). */
struct fg_fetch *fg_fetch_start(struct fg_txn *t, struct fg_cache_obj *fill,
                                struct fg_cache_obj *stale, bool background);
/* The transaction that started a fetch goes away. */
void fg_fetch_forget_initiator(struct fg_fetch *f);
/* Called by a fetch that gives its connection to its initiator (cache.c). */
void fg_cache_stage_adopt(struct fg_txn *t, struct fg_upstream_exchange *x,
                          const struct fg_http_response *resp);
bool fg_accesslog_start(void);
void fg_accesslog_stop(void);
void fg_accesslog_reopen(void);
void fg_accesslog_txn(struct fg_worker *w, const struct fg_txn *t);
void fg_accesslog_flush(struct fg_worker *w);

/* stats.c */
void fg_stats_json(struct evbuffer *out, struct fg_worker *workers, size_t n,
                   const struct fg_config *cfg, uint64_t uptime_s, bool draining);
void fg_stats_metrics(struct evbuffer *out, struct fg_worker *workers, size_t n,
                      const struct fg_config *cfg, uint64_t uptime_s, bool draining);

#endif /* FG_SERVER_INTERNAL_H */
