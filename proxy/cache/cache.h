/*
 * cache.h — flashgate's shared HTTP cache (RFC 9111).
 *
 * Three layers, one header:
 *  - policy (policy.c): pure functions that say whether a response may be stored, how
 *    long it stays fresh and how old it is;
 *  - keys (key.c): the primary key of a request and the secondary (Vary) key;
 *  - the store (store.c, notify.c, reader.c, registry.c): memory-bounded, sharded,
 *    shared by every worker, with refcounted immutable objects and request coalescing.
 *    A miss creates a *busy* object that one fetch fills while every reader streams from
 *    it; see "The store". Objects are opaque: their layout (cache/internal.h) is known
 *    to the store and its reader only.
 *
 * The request-path stage that drives it lives in the server module (server/stage_cache.c
 * and server/fill.c), the only place that knows both HTTP connections and the store.
 */
#ifndef FG_CACHE_H
#define FG_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "http/http.h"

#define FG_CACHE_NO_VALUE UINT64_MAX

/* Cache-Control directives (RFC 9111 §5.2), from one or more fields. */
struct fg_cache_control {
    bool no_store, no_cache, private_, public_, must_revalidate, proxy_revalidate;
    bool no_transform, only_if_cached, immutable;
    bool no_cache_fields; /* no-cache="field": treated as plain no-cache for a shared cache */
    uint64_t max_age, s_maxage, stale_while_revalidate, stale_if_error, max_stale, min_fresh;
    bool malformed; /* a directive with an unparsable value was seen (it was ignored) */
};

/* Parse every field named `name` ("cache-control", or a targeted field such as
 * "cdn-cache-control") among h[0..n). Unknown directives are ignored (§5.2.3); a
 * duplicate directive keeps the most restrictive value. Returns true if any was present. */
bool fg_cache_control_parse(const struct fg_http_header *h, size_t n, const char *lower_name,
                            struct fg_cache_control *cc);

/* What the policy needs from a response. Times are Unix seconds; FG_CACHE_NO_VALUE when a
 * field is absent or invalid. */
struct fg_cache_response {
    int status;
    struct fg_cache_control cc;
    bool has_cc;
    uint64_t date, expires, last_modified, age;
    bool vary_star;
};

/* Fill a fg_cache_response from a parsed response head. targeted: an optional
 * CDN-Cache-Control style field that, when present, replaces Cache-Control (RFC 9213). */
void fg_cache_response_from_head(const struct fg_http_response *resp, const char *targeted,
                                 struct fg_cache_response *out);

/* May a shared cache store this response to this request (RFC 9111 §3, §3.5)?
 * request_has_authorization: the request carried Authorization. */
bool fg_cache_storable(enum fg_http_method method, const struct fg_cache_control *req_cc,
                       bool request_has_authorization, const struct fg_cache_response *r);

/* Freshness lifetime in seconds (§4.2.1): s-maxage, max-age, Expires - Date, or the
 * heuristic (10% of Date - Last-Modified, capped at a day) for heuristically cacheable
 * statuses without explicit freshness. 0 when none applies. now is used when Date is
 * absent. */
uint64_t fg_cache_freshness_lifetime(const struct fg_cache_response *r, int64_t now);

/* Current age in seconds (§4.2.3) of a response received between request_time and
 * response_time and stored until now. */
uint64_t fg_cache_current_age(const struct fg_cache_response *r, int64_t request_time,
                              int64_t response_time, int64_t now);

/* Statuses a cache may store with heuristic freshness (RFC 9110 §15.1). */
bool fg_cache_status_heuristic(int status);

/* ---- keys --------------------------------------------------------------------------- */

#define FG_CACHE_KEY_MAX 8192

/* Query parameters left out of the key: exact names, or prefixes written "utm_*". */
struct fg_cache_key_rules {
    const char *const *ignore_params;
    size_t n_ignore_params;
    bool sort_params; /* "?b=1&a=2" and "?a=2&b=1" are one key */
};

/* Build the primary key "host/path?query" into out (host lowercased, without a trailing
 * dot; parameters filtered and sorted by rules). Returns the length, or 0 when it does
 * not fit (the request is then not cached). */
size_t fg_cache_key_build(const char *host, size_t host_len, const char *path, size_t path_len,
                          const char *query, size_t query_len,
                          const struct fg_cache_key_rules *rules, char *out, size_t cap);

/* 64-bit hash of a key: SipHash under a per-process random key (spread over the shards
 * and buckets; clients cannot aim keys at one bucket). */
uint64_t fg_cache_key_hash(const char *key, size_t len);

/* Normalise a response's Vary fields into out: the lowercased field names, sorted, one
 * ',' between them ("accept-encoding,accept-language"). Returns the length (0: no Vary),
 * or -1 for "Vary: *" (never matches, so not stored) or when it does not fit. */
int fg_cache_vary_names(const struct fg_http_header *h, size_t n, char *out, size_t cap);

/* The secondary key of a request for normalised Vary names: for each name, the request's
 * field values after a '=' that marks the field present (so an absent field and an empty
 * one differ), joined by ',', whitespace around commas dropped, then '\n'. Requests with
 * equal secondary keys may be served the same variant (RFC 9111 §4.1). Returns the
 * length, or -1 when it does not fit. */
int fg_cache_vary_values(const char *names, size_t names_len, const struct fg_http_header *h,
                         size_t n, char *out, size_t cap);

/* ---- the store -------------------------------------------------------------------------
 *
 * An object is one stored response (one variant of one key): an immutable head and a
 * body that grows while it is filled and never changes afterwards. Every reader holds a
 * reference; the table holds one; body bytes are handed to libevent by reference (no
 * copy on a hit), each such reference holding one more.
 *
 * Lifecycle: fg_cache_lookup() on a miss inserts a BUSY object and makes the caller its
 * filler. The filler either publishes the response head (fg_cache_fill_head: FILLING,
 * readers may stream from then on), appends the body (fg_cache_fill_append) and ends it
 * (fg_cache_fill_done: COMPLETE, or FAILED when the origin broke off), or gives up at the
 * head: fg_cache_fill_pass (not storable: the key becomes hit-for-miss for a while, every
 * waiter goes to the origin on its own, in parallel) or fg_cache_fill_abort (the origin
 * failed before a head: waiters look up again and one of them fetches).
 *
 * Waiting: a reader with nothing to read yet registers a waiter on the object; the store
 * calls it back on the waiter's own worker thread (through that worker's notifier) when
 * the object changes: head published, bytes appended, done, failed, passed. A waiter is
 * thus never called on a foreign thread and never after fg_cache_waiter_cancel().
 */

enum fg_cache_state {
    FG_CACHE_BUSY = 0, /* placeholder: a fetch is on its way, no head yet */
    FG_CACHE_FILLING,  /* head known, body arriving */
    FG_CACHE_COMPLETE,
    FG_CACHE_FAILED,  /* the fetch broke off mid-body: readers must cut their clients */
    FG_CACHE_PASS,    /* hit-for-miss marker: go to the origin without coalescing */
    FG_CACHE_ABORTED, /* the fetch failed before a head: look up again */
};

struct fg_cache;
struct fg_cache_obj; /* opaque: its layout is the store's (cache/internal.h) */
struct fg_cache_notifier;

struct fg_cache_waiter {
    /* Runs on the waiter's worker when the object it waits on changed. */
    void (*cb)(struct fg_cache_waiter *w);
    void *arg;
    struct fg_cache_notifier *notifier; /* the waiter's worker's */
    /* Store-private links. */
    struct fg_cache_obj *obj;
    struct fg_cache_waiter *next, *prev; /* on obj's list, under obj->lock */
    struct fg_cache_waiter *q_next;      /* on the notifier's queue */
    bool queued;                         /* on the notifier's queue */
};

/* What the store keeps of a response besides its bytes: set by the filler with the head
 * (fg_cache_fill_head), read-only once the object is FILLING. */
struct fg_cache_meta {
    int status;
    uint64_t content_length;  /* as the head announced it; FG_CACHE_NO_VALUE: unknown */
    char etag[128];           /* "" when none */
    int64_t last_modified;    /* -1 when none */
    int64_t response_time_ms; /* wall clock when the head arrived */
    uint64_t initial_age;     /* corrected initial age (RFC 9111 §4.2.3), seconds */
    uint64_t lifetime;        /* freshness lifetime, seconds */
    uint64_t swr, sie;        /* stale-while-revalidate / stale-if-error windows, s */
    bool must_revalidate;     /* no stale serving at all (must-/proxy-revalidate) */
    bool no_cache;            /* stored, but revalidated before every use */
};

/* Meta of a response that is not yet known: no length, no validators. */
void fg_cache_meta_init(struct fg_cache_meta *m);
/* Are these facts fresh at now_ms? The current age in seconds goes to *age. */
bool fg_cache_meta_fresh(const struct fg_cache_meta *m, int64_t now_ms, uint64_t *age);

/* Limits and behaviour of one store. */
struct fg_cache_limits {
    uint64_t memory;     /* bytes of stored objects */
    uint64_t max_object; /* larger responses are streamed through, not stored */
};

/* Counters, summed over every worker (atomics in the store). */
struct fg_cache_stats {
    uint64_t entries, bytes, hits, misses, stale_served, revalidations, revalidated_304;
    uint64_t coalesced, hit_for_miss, passes, evictions, purged, too_big, fill_failed;
    uint64_t lock_timeouts, stores, invalidations, not_modified_served;
};

struct fg_cache *fg_cache_new(const char *name, const struct fg_cache_limits *lim);
/* A reload may change the limits of a running store; the contents stay. */
void fg_cache_set_limits(struct fg_cache *c, const struct fg_cache_limits *lim);
const char *fg_cache_name(const struct fg_cache *c);
void fg_cache_get_stats(struct fg_cache *c, struct fg_cache_stats *out);
/* Count an event the request path saw (one of the fields of fg_cache_stats). */
enum fg_cache_event {
    FG_CACHE_EV_HIT = 0,
    FG_CACHE_EV_MISS,
    FG_CACHE_EV_STALE,
    FG_CACHE_EV_REVALIDATION,
    FG_CACHE_EV_REVALIDATED,
    FG_CACHE_EV_COALESCED,
    FG_CACHE_EV_PASS,
    FG_CACHE_EV_LOCK_TIMEOUT,
    FG_CACHE_EV_NOT_MODIFIED,
    FG_CACHE_EV_INVALIDATION,
    FG_CACHE_EV__COUNT
};
void fg_cache_count(struct fg_cache *c, enum fg_cache_event ev);
/* Free the store (at exit; no reader may remain). */
void fg_cache_free(struct fg_cache *c);

/* What a lookup decided. */
enum fg_cache_verdict {
    FG_CACHE_V_HIT = 0, /* *obj: a fresh object, COMPLETE or FILLING */
    FG_CACHE_V_STALE,   /* *obj: stale but within its stale-while-revalidate window: serve
                           it. *fill: a new BUSY object for the background refresh the
                           caller starts, or NULL when a fetch is already on its way */
    FG_CACHE_V_WAIT,    /* *obj: a BUSY object; the waiter was registered on it */
    FG_CACHE_V_FILL,    /* *fill: a new BUSY object; the caller fetches and fills it.
                           *obj: a stale variant (or NULL), for its validators (a
                           conditional fetch) and for stale-if-error */
    FG_CACHE_V_PASS,    /* hit-for-miss: fetch without coalescing */
};

struct fg_cache_request {
    const char *key;
    size_t key_len;
    uint64_t hash;
    const struct fg_http_header *headers; /* for the Vary match */
    size_t n_headers;
    int64_t now_ms; /* wall clock */
};

/* May obj (FILLING or COMPLETE) be served to a request with these fields: do their values
 * for obj's Vary names give obj's secondary key (RFC 9111 §4.1)? */
bool fg_cache_obj_vary_matches(const struct fg_cache_obj *obj, const struct fg_http_header *h,
                               size_t n);

/* Is obj fresh at now_ms? Its current age in seconds goes to *age (RFC 9111 §4.2.3). */
bool fg_cache_obj_fresh(const struct fg_cache_obj *obj, int64_t now_ms, uint64_t *age);

/* ---- what a reader may know of an object ----------------------------------------------
 * An object is opaque outside the store. Its head and meta are immutable once it is
 * FILLING (published with its state), so these need no lock. */

/* The object's state now (an acquire load: what was published before it is visible). */
enum fg_cache_state fg_cache_obj_state(const struct fg_cache_obj *obj);
/* Status, validators and freshness; valid once the object is FILLING or later. */
const struct fg_cache_meta *fg_cache_obj_meta(const struct fg_cache_obj *obj);
/* The body's length: as announced, or once COMPLETE as stored; FG_CACHE_NO_VALUE while
 * a body of unannounced length is still arriving. */
uint64_t fg_cache_obj_length(const struct fg_cache_obj *obj);
/* The stored head (see fg_cache_fill_head), valid while a reference is held. */
const char *fg_cache_obj_head(const struct fg_cache_obj *obj, size_t *len);
/* The normalised Vary names and the secondary key the object was stored under (as given
 * to fg_cache_fill_head); valid once FILLING, while a reference is held. */
void fg_cache_obj_vary(const struct fg_cache_obj *obj, const char **names, size_t *names_len,
                       const char **values, size_t *values_len);
/* The primary key ("host/path?query"), for log lines. */
const char *fg_cache_obj_key(const struct fg_cache_obj *obj);
/* The status an ABORTED object's fetch failed with (502 when it did not say). */
int fg_cache_obj_abort_status(const struct fg_cache_obj *obj);
/* Did a revalidation (304) make this object out of an older one (whose body it shares)? */
bool fg_cache_obj_refreshed(const struct fg_cache_obj *obj);
/* Is it an older response published again because the app failed (stale-if-error)? It
 * is served stale. */
bool fg_cache_obj_fallback(const struct fg_cache_obj *obj);
/* Add the stored head to out by reference (no copy; the reference holds the object):
 * "HTTP/1.1 200 OK\r\n" and the stored fields, without the final CRLF. fields_only:
 * without the status line (a 304 answered from it). Returns the bytes added. */
size_t fg_cache_obj_add_head(struct fg_cache_obj *obj, struct evbuffer *out, bool fields_only);

/*
 * Look a request up. Returns the verdict; *obj and *fill carry references the caller
 * must give back (fg_cache_obj_unref) — a *fill must also be ended with one of the
 * fg_cache_fill_* calls. waiter (may be NULL: never wait) is registered on a BUSY object
 * for V_WAIT.
 */
enum fg_cache_verdict fg_cache_lookup(struct fg_cache *c, const struct fg_cache_request *rq,
                                      struct fg_cache_waiter *waiter, struct fg_cache_obj **obj,
                                      struct fg_cache_obj **fill);

/* Register waiter on obj (any state); fails (false) when obj is already in a final
 * state (COMPLETE, FAILED, PASS, ABORTED), since nothing more will happen to it. */
bool fg_cache_wait(struct fg_cache_obj *obj, struct fg_cache_waiter *waiter);
/* Stop waiting. Safe whether or not the waiter is registered or queued. Must run on the
 * waiter's worker. */
void fg_cache_waiter_cancel(struct fg_cache_waiter *waiter);

void fg_cache_obj_ref(struct fg_cache_obj *obj);
void fg_cache_obj_unref(struct fg_cache_obj *obj);
/* For evbuffer_add_reference(): unrefs the object given as extra. */
void fg_cache_obj_unref_cb(const void *data, size_t len, void *extra);

/* ---- filling (one filler per object: the fetch that the lookup made its owner) -------- */

/* The head is known and the response may be stored. head/head_len: the stored head
 * ("HTTP/1.1 200 OK\r\n" + stored fields, without framing, Age and hop-by-hop fields,
 * without the final CRLF); vary names/values as from fg_cache_vary_*; meta is copied.
 * Returns false when the object can not be kept (larger than max_object by its
 * Content-Length, or out of memory): the caller then calls fg_cache_fill_pass. Readers
 * are woken. */
bool fg_cache_fill_head(struct fg_cache_obj *obj, const struct fg_cache_meta *meta,
                        const char *head, size_t head_len, const char *vary_names,
                        size_t vary_names_len, const char *vary_values, size_t vary_values_len);
/* Append body bytes. Returns false when the object grew past max_object: it is then
 * taken out of the table (current readers still get every byte; nobody new finds it). */
bool fg_cache_fill_append(struct fg_cache_obj *obj, const void *data, size_t len);
/* The body ended (ok) or broke off (!ok: readers see FAILED). */
void fg_cache_fill_done(struct fg_cache_obj *obj, bool ok);
/* Not storable: mark the key hit-for-miss until now_ms + ttl_ms (0: just drop the
 * placeholder); waiters are told FG_CACHE_PASS. */
void fg_cache_fill_pass(struct fg_cache_obj *obj, int64_t now_ms, uint64_t ttl_ms);
/* The fetch failed before any head with this status (502, 504): waiters are told
 * FG_CACHE_ABORTED (fg_cache_obj_abort_status). */
void fg_cache_fill_abort(struct fg_cache_obj *obj, int status);
/* A revalidation answered 304: obj (BUSY) takes over stale's body with the refreshed
 * head and freshness from meta, and replaces stale in the table. Readers are woken. */
void fg_cache_fill_refresh(struct fg_cache_obj *obj, struct fg_cache_obj *stale,
                           const struct fg_cache_meta *meta, const char *head, size_t head_len);

/* The fetch failed and stale may stand in (stale-if-error): obj (BUSY) publishes stale's
 * response again, its head, freshness and body, marked as a fallback; readers are woken. */
void fg_cache_fill_stale(struct fg_cache_obj *obj, struct fg_cache_obj *stale);

/* Remove every object of a key (all variants), or every key starting with prefix.
 * Returns the number of objects removed. */
size_t fg_cache_purge(struct fg_cache *c, const char *key, size_t key_len, bool prefix);

/* ---- tags (tags.c): labels the app puts on its answers, for purges -------------------
 *
 * An app names what a page shows in a response field (Cache-Tag, as several CDNs do, or
 * Surrogate-Key): "Cache-Tag: product-123, category-7 home". The tags are kept with the
 * object and a purge by tag removes every object that carries it ("product 123's stock
 * changed: purge every page that shows it"). Tags are case-sensitive, split on spaces and
 * commas. */

#define FG_CACHE_TAG_MAX  128  /* bytes of one tag */
#define FG_CACHE_TAGS_MAX 2048 /* bytes of an object's normalised tags */

/* Collect the tags of every field among h[0..n) whose lowercased name is one of
 * fields[0..nf) into out, normalised: each tag once, with a space before and after each
 * (" a b c "), so that a tag is found as " tag ". Returns the length (0: no tags), or -1
 * when they do not fit (a tag longer than FG_CACHE_TAG_MAX, or more than cap bytes): the
 * response must then not be stored, since a purge of a tag it lost would miss it. */
int fg_cache_tags_collect(const struct fg_http_header *h, size_t n, const char *const *fields,
                          size_t nf, char *out, size_t cap);

/* Is tag[0..len) one tag (no space, comma or control character, at most FG_CACHE_TAG_MAX)? */
bool fg_cache_tag_valid(const char *tag, size_t len);

/* The filler gives the object its tags (normalised, from fg_cache_tags_collect) before
 * fg_cache_fill_head publishes them. false when out of memory (the caller passes). A
 * refresh (304) or a stale fallback keeps the tags of the object it replaces. */
bool fg_cache_fill_tags(struct fg_cache_obj *obj, const char *tags, size_t len);
/* The object's normalised tags ("" when none); valid once it is FILLING. */
const char *fg_cache_obj_tags(const struct fg_cache_obj *obj, size_t *len);

/* Remove every object that carries tag (and every busy object: its answer, on its way
 * since before the purge, may carry it too; its waiters still get it). Walks the whole
 * store, like a prefix purge. Returns the number of objects removed. */
size_t fg_cache_purge_tag(struct fg_cache *c, const char *tag, size_t len);

/* ---- reading a body (reader.c) --------------------------------------------------------
 *
 * A reader streams one object's body, as it fills or once complete, into evbuffers by
 * reference: no byte is copied, each reference holds the object. When it has read all
 * there is, it waits on the object (the waiter machinery above) and its callback runs on
 * its own worker when more arrives. The lock-free read side of the store's chunk list
 * lives here, beside its writer. */

struct fg_cache_chunk;

struct fg_cache_reader {
    struct fg_cache_obj *obj; /* a reference, while reading */
    struct fg_cache_chunk *chunk;
    size_t chunk_off;
    uint64_t done; /* body bytes added to the output so far */
    struct fg_cache_waiter waiter;
};

enum fg_cache_read_status {
    FG_CACHE_READ_MORE = 0, /* all there is now was added; cb runs when more comes */
    FG_CACHE_READ_END,      /* the whole body was added */
    FG_CACHE_READ_FAILED,   /* the fill broke off: the body will never be complete */
};

/* Start reading obj (FILLING or COMPLETE; takes a reference). cb(arg) runs on notifier's
 * worker when a read returned FG_CACHE_READ_MORE and the object changed. */
void fg_cache_reader_start(struct fg_cache_reader *r, struct fg_cache_obj *obj,
                           struct fg_cache_notifier *notifier, void (*cb)(struct fg_cache_waiter *),
                           void *arg);
/* Add every body byte available now to out, each piece framed as an HTTP chunk when
 * chunked (the last chunk is the caller's). *added: body bytes added by this call. */
enum fg_cache_read_status fg_cache_reader_read(struct fg_cache_reader *r, struct evbuffer *out,
                                               bool chunked, uint64_t *added);
/* Stop: no more callbacks, the reference is given back. Safe on a reader never started. */
void fg_cache_reader_stop(struct fg_cache_reader *r);

/* ---- the registry of stores: one per configured cache name, kept across reloads -------- */

/* The store named name, created on first use with lim (later calls apply lim to it: a
 * reload may change the limits of a running store). NULL when out of memory or when
 * FG_CACHE_REGISTRY_MAX stores exist. Thread-safe. */
struct fg_cache *fg_cache_registry_get(const char *name, const struct fg_cache_limits *lim);
/* Every store so far (n set to the count; the array stays valid). */
struct fg_cache *const *fg_cache_registry_all(size_t *n);
/* Purge a key (or a prefix) from every store; the number of objects removed. */
size_t fg_cache_registry_purge(const char *key, size_t len, bool prefix);
/* Purge a tag from every store; the number of objects removed. */
size_t fg_cache_registry_purge_tag(const char *tag, size_t len);

/* ---- notifiers: waking waiters on their own worker ---------------------------------- */

/* One per worker event_base: an eventfd the store writes to and an event that runs the
 * queued waiters' callbacks on that base. */
struct fg_cache_notifier *fg_cache_notifier_new(struct event_base *base);
void fg_cache_notifier_free(struct fg_cache_notifier *n);

#endif /* FG_CACHE_H */
