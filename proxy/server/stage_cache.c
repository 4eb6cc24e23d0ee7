/*
 * stage_cache.c — the cache stage of the request path (request.c calls fg_stage_cache).
 *
 *   lookup → HIT: serve from memory (a reference per body chunk, no copy)
 *          → STALE: serve the stale object, refresh it in the background (once per key)
 *          → WAIT: another request's fill is on its way: wait for its head, then
 *                  stream from the object as it fills (coalescing)
 *          → FILL: start the fill (fill.c) and wait on it like everybody else
 *          → PASS: hit-for-miss: straight to the app, in parallel
 *
 * Every reader, the one that started the fill included, reads the object, so a client
 * that goes away never disturbs the fill or the other readers. While a request waits,
 * its head stays in the connection's input buffer and reading is paused, so the parsed
 * slices in t->req stay valid (they point into that buffer).
 */
#include "server/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- helpers ----------------------------------------------------------------------------- */

static void waiter_cb(struct fg_cache_waiter *w);
static void reader_cb(struct fg_cache_waiter *w);
static void stream_body(struct fg_txn *t);

static void drop_head(struct fg_txn *t)
{
    evbuffer_drain(bufferevent_get_input(t->c->bev), t->req.head_len);
    t->req.n_headers = 0;
}

static void stop_waiting(struct fg_txn *t)
{
    struct fg_stage_cache *tc = &t->cache;
    fg_cache_waiter_cancel(&tc->waiter);
    if (tc->lock_timer != NULL) {
        event_free(tc->lock_timer);
        tc->lock_timer = NULL;
    }
}

/* The stage lets go of what it holds for the request: waits, the body reader, the fill
 * it started, its references. The labels (X-Cache, the log's) stay. */
/* The answer is known (served, or off to the app): the time the stage took, without the
 * time this request's own fill waited for the app's head (that is the app's). */
static void timed(struct fg_txn *t)
{
    struct fg_stage_cache *tc = &t->cache;
    if (tc->timed)
        return;
    tc->timed = true;
    uint64_t d = fg_mono_us() - tc->started_us;
    if (tc->own_fill_head)
        d = d > t->app_head_us ? d - t->app_head_us : 0;
    t->cache_us = d;
}

static void leave(struct fg_txn *t)
{
    struct fg_stage_cache *tc = &t->cache;
    if (!tc->active)
        return;
    timed(t);
    stop_waiting(t);
    if (tc->serving)
        fg_cache_reader_stop(&tc->reader);
    if (tc->fill != NULL)
        fg_fill_forget_initiator(tc->fill);
    fg_cache_obj_unref(tc->obj);
    fg_cache_obj_unref(tc->stale);
    tc->fill = NULL;
    tc->obj = tc->stale = NULL;
    tc->active = tc->serving = tc->waited = false;
}

/* The transaction ends (done or aborted). */
static void release(struct fg_txn *t)
{
    leave(t);
    free(t->cache.inval_key);
    t->cache.inval_key = NULL;
}

/* Cache-Status parameters of answers that go to the app (RFC 9211). */
#define CS_BYPASS       "fwd=bypass"
#define CS_HIT_FOR_MISS "fwd=uri-miss; detail=hit-for-miss"
#define CS_NOT_STORED   "fwd=uri-miss; detail=not-stored"
#define CS_LOCK_TIMEOUT "fwd=uri-miss; detail=lock-timeout"

/* What the cache did for an answer that goes to the app: its X-Cache word (also the
 * access log's) and its Cache-Status parameters, written by fg_stage_cache_fields. */
static void label_pass(struct fg_txn *t, const char *label, const char *status)
{
    t->cache.xcache = t->route->cache.status_header ? label : NULL;
    t->cache.status = t->route->cache.status_field ? status : NULL;
    t->log_cache = label;
}

/* Append s at out[n] (the caller's buffer has room); the new length. */
static size_t put_str(char *out, size_t n, const char *s)
{
    while (*s != '\0')
        out[n++] = *s++;
    return n;
}

static size_t put_u64(char *out, size_t n, uint64_t v)
{
    char digits[24];
    size_t k = 0;
    do {
        digits[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (k > 0)
        out[n++] = digits[--k];
    return n;
}

size_t fg_stage_cache_fields(const struct fg_txn *t, char *out)
{
    size_t n = 0;
    if (t->cache.xcache != NULL) {
        n = put_str(out, n, "X-Cache: ");
        n = put_str(out, n, t->cache.xcache);
        n = put_str(out, n, "\r\n");
    }
    if (t->cache.status != NULL) {
        n = put_str(out, n, "Cache-Status: flashgate; ");
        n = put_str(out, n, t->cache.status);
        n = put_str(out, n, "\r\n");
    }
    return n;
}

/* Leave the stage and proxy the request as usual (pass, lock timeout, errors). */
static void go_to_origin(struct fg_txn *t, const char *xcache, const char *status)
{
    leave(t);
    label_pass(t, xcache, status);
    fg_conn_resume_read(t->c);
    fg_proxy_start(t);
}

static bool etag_matches(const char *list, size_t len, const char *etag)
{
    /* If-None-Match uses the weak comparison (RFC 9110 §13.1.2): W/ prefixes ignored. */
    if (etag[0] == '\0')
        return false;
    const char *e = strncmp(etag, "W/", 2) == 0 ? etag + 2 : etag;
    size_t elen = strlen(e);
    size_t i = 0;
    while (i < len) {
        while (i < len && (list[i] == ' ' || list[i] == '\t' || list[i] == ','))
            i++;
        if (i < len && list[i] == '*')
            return true;
        if (i + 2 <= len && list[i] == 'W' && list[i + 1] == '/')
            i += 2;
        size_t start = i;
        if (i < len && list[i] == '"') {
            i++;
            while (i < len && list[i] != '"')
                i++;
            if (i < len)
                i++;
        } else {
            while (i < len && list[i] != ',')
                i++;
        }
        if (i - start == elen && memcmp(list + start, e, elen) == 0)
            return true;
    }
    return false;
}

/* May the client's conditional request be answered 304 from obj (RFC 9110 §13.2.2)? */
static bool not_modified(const struct fg_txn *t, const struct fg_cache_obj *obj)
{
    const struct fg_http_request *r = &t->req;
    const struct fg_cache_meta *m = fg_cache_obj_meta(obj);
    if (m->status != 200)
        return false;
    const struct fg_http_header *inm =
        fg_http_find_header(r->headers, r->n_headers, "if-none-match");
    if (inm != NULL)
        return etag_matches(inm->value, inm->value_len, m->etag);
    const struct fg_http_header *ims =
        fg_http_find_header(r->headers, r->n_headers, "if-modified-since");
    int64_t since;
    if (ims != NULL && m->last_modified >= 0 &&
        fg_http_parse_date(ims->value, ims->value_len, &since))
        return m->last_modified <= since;
    return false;
}

/* ---- serving an object -------------------------------------------------------------------- */

static void finish(struct fg_txn *t)
{
    t->resp_state = FG_RESP_DONE;
    fg_conn_txn_done(t->c); /* resumes reading, releases the stage (txn_put) */
}

/* How a stored response comes to be served: its X-Cache word and Cache-Status. */
enum served {
    SERVED_HIT,         /* fresh, from memory */
    SERVED_STALE,       /* stale-while-revalidate: served, refreshed in the background */
    SERVED_COALESCED,   /* waited for another request's fill */
    SERVED_MISS,        /* this request's fill */
    SERVED_MISS_STALE,  /* this request's fill of a stale entry: a new answer came */
    SERVED_REVALIDATED, /* this request's fill: the app confirmed a stale entry (304) */
    SERVED_FALLBACK,    /* the app failed, a stale entry stood in (stale-if-error) */
};

static const struct {
    const char *label;  /* X-Cache, and the access log's "cache" */
    const char *status; /* Cache-Status parameters before ttl= */
    const char *detail; /* after it */
} SERVED[] = {
    [SERVED_HIT] = {"HIT", "hit", ""},
    [SERVED_STALE] = {"STALE", "hit", "; detail=stale-while-revalidate"},
    [SERVED_COALESCED] = {"HIT", "fwd=uri-miss; collapsed", ""},
    [SERVED_MISS] = {"MISS", "fwd=uri-miss; stored", ""},
    [SERVED_MISS_STALE] = {"MISS", "fwd=stale; stored", ""},
    [SERVED_REVALIDATED] = {"REVALIDATED", "fwd=stale; fwd-status=304; stored", ""},
    [SERVED_FALLBACK] = {"STALE", "fwd=stale", "; detail=stale-if-error"},
};

/* Write the head of obj and start its body. obj is FILLING or COMPLETE. */
static void serve(struct fg_txn *t, struct fg_cache_obj *obj, enum served how)
{
    const char *xcache = SERVED[how].label;
    struct fg_conn *c = t->c;
    struct fg_stage_cache *tc = &t->cache;
    timed(t);
    if (tc->obj != obj) {
        fg_cache_obj_ref(obj);
        fg_cache_obj_unref(tc->obj);
        tc->obj = obj;
    }
    t->log_cache = xcache;
    bool is_304 = not_modified(t, obj);
    bool head_only = is_304 || t->req.method == FG_HTTP_HEAD;
    drop_head(t);

    uint64_t age = 0;
    bool fresh = fg_cache_obj_fresh(obj, fg_wall_ms(), &age);
    uint64_t length = fg_cache_obj_length(obj);
    /* Age, X-Cache and Cache-Status, without printf: this runs for every hit. */
    char fields[256];
    size_t n = put_str(fields, 0, "Age: ");
    n = put_u64(fields, n, age);
    n = put_str(fields, n, "\r\n");
    if (t->route->cache.status_header) {
        n = put_str(fields, n, "X-Cache: ");
        n = put_str(fields, n, xcache);
        n = put_str(fields, n, "\r\n");
    }
    if (t->route->cache.status_field) {
        /* ttl: the freshness left, negative once stale (RFC 9211 §2.7); whole seconds,
         * and a stale entry is at least a second past (never "ttl=0"). */
        uint64_t life = fg_cache_obj_meta(obj)->lifetime;
        n = put_str(fields, n, "Cache-Status: flashgate; ");
        n = put_str(fields, n, SERVED[how].status);
        if (fresh && life >= age) {
            n = put_str(fields, n, "; ttl=");
            n = put_u64(fields, n, life - age);
        } else {
            n = put_str(fields, n, "; ttl=-");
            n = put_u64(fields, n, age > life ? age - life : 1);
        }
        n = put_str(fields, n, SERVED[how].detail);
        n = put_str(fields, n, "\r\n");
    }
    /* A 304 has the stored 200's fields minus the body's own framing (RFC 9110 §15.4.5). */
    struct fg_respond r = {.status = is_304 ? 304 : fg_cache_obj_meta(obj)->status,
                           .stored = obj,
                           .fields = fields,
                           .fields_len = n};
    if (is_304)
        r.body = FG_RESPOND_NO_BODY;
    else if (length != FG_CACHE_NO_VALUE)
        r.body = FG_RESPOND_LENGTH, r.length = length;
    else if (head_only)
        r.body = FG_RESPOND_NO_BODY;
    else if (t->req.minor_version == 1)
        r.body = FG_RESPOND_CHUNKED; /* still filling: the length is not known yet */
    else
        r.body = FG_RESPOND_TO_CLOSE; /* an HTTP/1.0 client reads to the close */
    if (is_304)
        fg_cache_count(tc->store, FG_CACHE_EV_NOT_MODIFIED);
    tc->chunked = r.body == FG_RESPOND_CHUNKED;
    if (!fg_respond_head(t, &r)) {
        fg_conn_close(c);
        return;
    }
    t->resp_state = FG_RESP_BODY;
    if (head_only) {
        finish(t);
        return;
    }
    tc->serving = true;
    fg_cache_reader_start(&tc->reader, obj, c->w->cache_notifier, reader_cb, t);
    stream_body(t);
}

static void stream_body(struct fg_txn *t)
{
    struct fg_stage_cache *tc = &t->cache;
    struct evbuffer *out = bufferevent_get_output(t->c->bev);
    uint64_t added = 0;
    enum fg_cache_read_status st = fg_cache_reader_read(&tc->reader, out, tc->chunked, &added);
    t->bytes_out += added;
    if (st == FG_CACHE_READ_END) {
        if (tc->chunked)
            evbuffer_add(out, "0\r\n\r\n", 5), t->bytes_out += 5;
        finish(t);
        return;
    }
    if (st == FG_CACHE_READ_FAILED) {
        /* The origin broke off mid-body: a cut connection is the only honest end. */
        fg_conn_close(t->c);
        return;
    }
    fg_flush(t->c->bev); /* the reader calls back when more arrives */
}

static void reader_cb(struct fg_cache_waiter *w)
{
    struct fg_txn *t = w->arg;
    FG_ASSERT(t->magic == FG_TXN_MAGIC);
    stream_body(t);
}

/* ---- waiting ----------------------------------------------------------------------------- */

/* The request's fields as the cache matches them (stage_compress.c: Accept-Encoding stands for
 * the negotiated coding on a compressing route). */
static const struct fg_http_header *match_headers(const struct fg_txn *t,
                                                  struct fg_http_header *buf, size_t *n)
{
    if (!t->z.route) {
        *n = t->req.n_headers;
        return t->req.headers;
    }
    *n = fg_stage_compress_lookup_headers(t->req.headers, t->req.n_headers, t->z.encoding, buf);
    return buf;
}

static bool vary_ok(const struct fg_txn *t, const struct fg_cache_obj *obj)
{
    struct fg_http_header hbuf[FG_HTTP_MAX_HEADERS + 1];
    size_t nh;
    const struct fg_http_header *h = match_headers(t, hbuf, &nh);
    return fg_cache_obj_vary_matches(obj, h, nh);
}

static void lock_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct fg_txn *t = arg;
    FG_ASSERT(t->magic == FG_TXN_MAGIC);
    fg_cache_count(t->cache.store, FG_CACHE_EV_LOCK_TIMEOUT);
    fg_info("cache: waited %llums for another request's fill of %s; going to the app",
            (unsigned long long)t->route->cache.lock_timeout_ms, t->log_path);
    go_to_origin(t, "MISS", CS_LOCK_TIMEOUT);
}

static void start_waiting(struct fg_txn *t, struct fg_cache_obj *busy, bool own_fill)
{
    struct fg_stage_cache *tc = &t->cache;
    tc->obj = busy; /* the lookup's reference */
    tc->waited = !own_fill;
    fg_reader_disable(&t->c->reader); /* t->req points into the input buffer */
    if (!own_fill) {
        tc->lock_timer = evtimer_new(t->c->w->base, lock_timeout_cb, t);
        uint64_t ms = t->route->cache.lock_timeout_ms;
        struct timeval tv = {.tv_sec = (time_t)(ms / 1000),
                             .tv_usec = (suseconds_t)(ms % 1000) * 1000};
        if (tc->lock_timer != NULL)
            evtimer_add(tc->lock_timer, &tv);
    }
}

/* The fill failed before a head (the app down, a timeout) and no stale entry could stand
 * in: the request was a miss, and says so in the log. */
static void respond_error(struct fg_txn *t, int status)
{
    t->log_cache = "MISS";
    leave(t);
    fg_conn_resume_read(t->c);
    drop_head(t);
    fg_respond_text(t, status, status == 504 ? "upstream timed out" : "upstream failed", false);
}

static void run_lookup(struct fg_txn *t);

/* The object we wait on or stream from changed. */
static void waiter_cb(struct fg_cache_waiter *w)
{
    struct fg_txn *t = w->arg;
    FG_ASSERT(t->magic == FG_TXN_MAGIC);
    struct fg_stage_cache *tc = &t->cache;
    struct fg_cache_obj *obj = tc->obj;
    switch (fg_cache_obj_state(obj)) {
    case FG_CACHE_BUSY:
        return;
    case FG_CACHE_FILLING:
    case FG_CACHE_COMPLETE:
        stop_waiting(t);
        if (!vary_ok(t, obj)) {
            /* Another variant: look again (this one may now start its own fill). */
            fg_cache_obj_unref(tc->obj);
            tc->obj = NULL;
            run_lookup(t);
            return;
        }
        if (tc->waited)
            fg_cache_count(tc->store, FG_CACHE_EV_COALESCED);
        serve(t, obj,
              fg_cache_obj_fallback(obj)    ? SERVED_FALLBACK
              : tc->waited                  ? SERVED_COALESCED
              : fg_cache_obj_refreshed(obj) ? SERVED_REVALIDATED
              : tc->stale != NULL           ? SERVED_MISS_STALE
                                            : SERVED_MISS);
        return;
    case FG_CACHE_PASS:
        /* Uncacheable: our own fill hands us its exchange (fg_stage_cache_adopt); a
         * waiter asks the app itself, in parallel with the others. */
        if (tc->fill != NULL)
            return;
        fg_cache_count(tc->store, FG_CACHE_EV_PASS);
        go_to_origin(t, "PASS", CS_NOT_STORED);
        return;
    case FG_CACHE_ABORTED:
        /* The fill failed before any head (status says how): every reader is told so
         * at once, instead of sending the app a stampede of retries. */
        respond_error(t, fg_cache_obj_abort_status(obj));
        return;
    case FG_CACHE_FAILED:
        respond_error(t, 502);
        return;
    }
}

void fg_stage_cache_adopt(struct fg_txn *t, struct fg_upstream_exchange *x,
                          const struct fg_http_response *resp)
{
    t->cache.fill = NULL;
    fg_cache_count(t->cache.store, FG_CACHE_EV_PASS);
    leave(t);
    label_pass(t, "PASS", CS_NOT_STORED);
    fg_conn_resume_read(t->c);
    fg_proxy_adopt(t, x, resp);
}

/* ---- the stage --------------------------------------------------------------------------- */

static bool cacheable_request(const struct fg_txn *t)
{
    const struct fg_http_request *r = &t->req;
    if (r->method != FG_HTTP_GET && r->method != FG_HTTP_HEAD)
        return false;
    if (r->body != FG_HTTP_BODY_NONE && !(r->body == FG_HTTP_BODY_LENGTH && r->content_length == 0))
        return false;
    /* Range answers are not stored (206); a request with credentials is the app's. */
    if (fg_http_find_header(r->headers, r->n_headers, "range") != NULL ||
        fg_http_find_header(r->headers, r->n_headers, "authorization") != NULL)
        return false;
    return r->host != NULL;
}

/* The route's query-parameter rules for cache keys. */
static struct fg_cache_key_rules key_rules(const struct fg_txn *t)
{
    const struct fg_conf_route_cache *rc = &t->route->cache;
    return (struct fg_cache_key_rules){.ignore_params = (const char *const *)rc->ignore_params,
                                       .n_ignore_params = rc->n_ignore_params,
                                       .sort_params = rc->sort_params};
}

static size_t build_key(const struct fg_txn *t, char *key, size_t cap)
{
    const struct fg_http_request *r = &t->req;
    struct fg_cache_key_rules rules = key_rules(t);
    return fg_cache_key_build(r->host, r->host_len, r->path, r->path_len, r->query, r->query_len,
                              &rules, key, cap);
}

/* Unsafe methods invalidate what is stored for their target once the app answered
 * without error (RFC 9111 §4.4): the key is taken now, while the request head is here. */
static void note_invalidation(struct fg_txn *t, struct fg_cache *store)
{
    char key[FG_CACHE_KEY_MAX];
    size_t n = build_key(t, key, sizeof(key));
    if (n == 0)
        return;
    struct fg_stage_cache *tc = &t->cache;
    size_t host_len = t->req.host_len < 256 ? t->req.host_len : 0;
    char *p = malloc(n + 1 + host_len + 1);
    if (p == NULL)
        return;
    memcpy(p, key, n);
    p[n] = '\0';
    memcpy(p + n + 1, t->req.host, host_len);
    p[n + 1 + host_len] = '\0';
    tc->inval_store = store;
    tc->inval_key = p;
    tc->inval_host = p + n + 1;
    tc->inval_host_len = host_len;
    fg_txn_hold(t, &tc->hold, release);
}

/* A Location or Content-Location of the same host: its key ("host/path?query"). */
static size_t related_key(const struct fg_txn *t, const struct fg_http_header *h, char *key,
                          size_t cap)
{
    const char *v = h->value;
    size_t len = h->value_len;
    const char *host = t->cache.inval_host;
    size_t host_len = t->cache.inval_host_len;
    if (len >= 7 && strncasecmp(v, "http://", 7) == 0) {
        v += 7, len -= 7;
        const char *slash = memchr(v, '/', len);
        size_t hl = slash ? (size_t)(slash - v) : len;
        if (hl != host_len || strncasecmp(v, host, hl) != 0)
            return 0; /* another origin: not ours to invalidate */
        v += hl, len -= hl;
    }
    if (len == 0 || v[0] != '/')
        return 0;
    const char *q = memchr(v, '?', len);
    size_t path_len = q ? (size_t)(q - v) : len;
    struct fg_cache_key_rules rules = key_rules(t);
    return fg_cache_key_build(host, host_len, v, path_len, q ? q + 1 : NULL,
                              q ? len - path_len - 1 : 0, &rules, key, cap);
}

void fg_stage_cache_invalidate(struct fg_txn *t, const struct fg_http_response *resp)
{
    struct fg_stage_cache *tc = &t->cache;
    if (tc->inval_key == NULL)
        return;
    if (resp->status < 400) {
        size_t n = fg_cache_purge(tc->inval_store, tc->inval_key, strlen(tc->inval_key), false);
        for (size_t i = 0; i < resp->n_headers; i++) {
            const struct fg_http_header *h = &resp->headers[i];
            char key[FG_CACHE_KEY_MAX];
            size_t k;
            if ((fg_http_name_eq(h->name, h->name_len, "location") ||
                 fg_http_name_eq(h->name, h->name_len, "content-location")) &&
                (k = related_key(t, h, key, sizeof(key))) > 0)
                n += fg_cache_purge(tc->inval_store, key, k, false);
        }
        if (n > 0)
            fg_cache_count(tc->inval_store, FG_CACHE_EV_INVALIDATION);
    }
    free(tc->inval_key);
    tc->inval_key = NULL;
}

static void run_lookup(struct fg_txn *t)
{
    struct fg_stage_cache *tc = &t->cache;
    char key[FG_CACHE_KEY_MAX];
    size_t key_len = build_key(t, key, sizeof(key));
    if (key_len == 0) {
        go_to_origin(t, "PASS", CS_BYPASS); /* a key too long to keep */
        return;
    }
    struct fg_http_header hbuf[FG_HTTP_MAX_HEADERS + 1];
    size_t nh;
    const struct fg_http_header *h = match_headers(t, hbuf, &nh);
    struct fg_cache_request rq = {.key = key,
                                  .key_len = key_len,
                                  .hash = fg_cache_key_hash(key, key_len),
                                  .headers = h,
                                  .n_headers = nh,
                                  .now_ms = fg_wall_ms()};
    tc->waiter.cb = waiter_cb;
    tc->waiter.arg = t;
    tc->waiter.notifier = t->c->w->cache_notifier;
    struct fg_cache_obj *obj = NULL, *fill = NULL;
    enum fg_cache_verdict v = fg_cache_lookup(tc->store, &rq, &tc->waiter, &obj, &fill);
    if (v == FG_CACHE_V_HIT || v == FG_CACHE_V_STALE || v == FG_CACHE_V_FILL)
        fg_fleet_hot(t->snap->fleet, key, key_len, fg_compress_encoding_name(t->z.encoding),
                     v == FG_CACHE_V_FILL); /* the fleet's hot pages, for warm starts */
    switch (v) {
    case FG_CACHE_V_HIT:
        fg_cache_count(tc->store, FG_CACHE_EV_HIT);
        serve(t, obj, SERVED_HIT);
        fg_cache_obj_unref(obj);
        return;
    case FG_CACHE_V_STALE:
        fg_cache_count(tc->store, FG_CACHE_EV_STALE);
        if (fill != NULL) {
            /* One background refresh per key; the head is built from this request. */
            fg_fill_start(t, fill, obj, true);
            fg_cache_obj_unref(fill);
        }
        serve(t, obj, SERVED_STALE);
        fg_cache_obj_unref(obj);
        return;
    case FG_CACHE_V_WAIT:
        start_waiting(t, obj, false);
        return;
    case FG_CACHE_V_FILL:
        fg_cache_count(tc->store, FG_CACHE_EV_MISS);
        tc->stale = obj; /* may be NULL */
        tc->fill = fg_fill_start(t, fill, obj, false);
        if (tc->fill == NULL) {
            fg_cache_obj_unref(fill);
            respond_error(t, 502);
            return;
        }
        /* Wait on our own fill like any other reader. */
        if (!fg_cache_wait(fill, &tc->waiter)) {
            /* It ended at once (an immediate failure): handle it as a wake-up. */
            tc->obj = fill;
            tc->waited = false;
            waiter_cb(&tc->waiter);
            return;
        }
        start_waiting(t, fill, true);
        return;
    case FG_CACHE_V_PASS:
        fg_cache_count(tc->store, FG_CACHE_EV_PASS);
        go_to_origin(t, "PASS", CS_HIT_FOR_MISS);
        return;
    }
}

bool fg_stage_cache(struct fg_txn *t)
{
    const struct fg_conf_route_cache *rc = &t->route->cache;
    if (rc->cache == NULL)
        return false;
    struct fg_cache *store = t->snap->caches[rc->cache->index];
    if (store == NULL)
        return false;
    enum fg_http_method m = t->req.method;
    if (m == FG_HTTP_POST || m == FG_HTTP_PUT || m == FG_HTTP_DELETE || m == FG_HTTP_PATCH) {
        note_invalidation(t, store);
        return false;
    }
    if (!cacheable_request(t)) {
        label_pass(t, "PASS", CS_BYPASS);
        return false;
    }
    struct fg_stage_cache *tc = &t->cache;
    tc->active = true;
    tc->store = store;
    tc->started_us = fg_mono_us();
    fg_txn_hold(t, &tc->hold, release);
    run_lookup(t);
    return true;
}
