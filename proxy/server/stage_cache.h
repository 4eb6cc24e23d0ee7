/*
 * stage_cache.h — the cache on the request path: the stage (stage_cache.c: lookup, serve,
 * wait, coalesce, invalidate) and the fills (fill.c: one origin request that fills an
 * object, owned by no client connection).
 */
#ifndef FG_SERVER_STAGE_CACHE_H
#define FG_SERVER_STAGE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "cache/cache.h"
#include "http/http.h"
#include "server/txn_hold.h"
#include "upstream/upstream.h"

struct fg_txn;
struct fg_fill;

/* More ranges than this in one request: the Range is ignored (the whole answer). */
#define FG_STAGE_CACHE_RANGES_MAX 16

/* The stage's part of a transaction. */
struct fg_stage_cache {
    struct fg_txn_hold hold;
    struct fg_cache *store;
    struct fg_cache_obj *obj;   /* served, or waited on */
    struct fg_cache_obj *stale; /* a stale variant, for stale-if-error */
    struct fg_cache_waiter waiter;
    struct event *lock_timer;      /* cache_lock_timeout while waiting on another's fill */
    struct fg_fill *fill;          /* the fill this request started (PASS hands it over) */
    struct fg_cache_reader reader; /* the body, while serving */
    bool active;                   /* the stage owns the transaction */
    bool serving;                  /* head written, body streaming */
    bool chunked;                  /* body sent chunked (length unknown while filling) */
    bool waited;                   /* waited on a fill: coalesced */
    bool own_fill_head;            /* our fill's head came: its wait was the app's, not ours */
    bool timed;                    /* t->cache_us is set */
    uint64_t started_us;           /* the stage began */
    /* A GET with a Range the cache answers from a stored response (206, 416): the
     * parsed set; collecting: the body is gathered until complete, then sliced. */
    struct fg_http_range ranges[FG_STAGE_CACHE_RANGES_MAX];
    size_t n_ranges; /* 0: no Range (or one to ignore) */
    bool collecting;
    bool auth;                  /* the request has Authorization (RFC 9111 §3.5) */
    int served_how;             /* how the object came to be served (stage_cache.c) */
    struct evbuffer *range_buf; /* the body so far, by reference */
    /* What the cache did for an answer that went to the app: its X-Cache word and its
     * Cache-Status parameters (NULL: no such field; see fg_stage_cache_fields). */
    const char *xcache;
    const char *status;
    /* An unsafe request on a cached route: what to invalidate when the answer comes. */
    struct fg_cache *inval_store;
    char *inval_key;  /* one allocation: the key, then the host */
    char *inval_host; /* the request's Host (Location fields of the same host count) */
    size_t inval_host_len;
};

/* stage_cache.c */
/* Serve, wait or fill; false when the request is not for the cache (the caller proxies). */
bool fg_stage_cache(struct fg_txn *t);
/* The app answered an unsafe request: invalidate its URL and its Location and
 * Content-Location of the same host (RFC 9111 §4.4), unless the answer is an error. */
void fg_stage_cache_invalidate(struct fg_txn *t, const struct fg_http_response *resp);
/* The cache's fields (X-Cache, Cache-Status) for an answer of t that went to the app, into
 * out (FG_STAGE_CACHE_FIELDS_MAX bytes); their length, 0 when none. */
#define FG_STAGE_CACHE_FIELDS_MAX 160
size_t fg_stage_cache_fields(const struct fg_txn *t, char *out);
/* The fill t started found its answer uncacheable: t takes its exchange over, from inside
 * the exchange's on_head (resp). */
void fg_stage_cache_adopt(struct fg_txn *t, struct fg_upstream_exchange *x,
                          const struct fg_http_response *resp);

/* fill.c */
/* Start filling fill (a BUSY object) with t's request. stale: the variant to revalidate
 * (validators are added) and to fall back on (stale-if-error); may be NULL. background:
 * nobody waits on the connection (stale-while-revalidate refresh). Takes its own
 * references. Returns the fill, or NULL (fill was aborted). */
struct fg_fill *fg_fill_start(struct fg_txn *t, struct fg_cache_obj *fill,
                              struct fg_cache_obj *stale, bool background);
/* The transaction that started a fill goes away. */
void fg_fill_forget_initiator(struct fg_fill *f);

#endif /* FG_SERVER_STAGE_CACHE_H */
