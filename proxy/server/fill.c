/*
 * fill.c — one origin request that fills a cache object, owned by nobody's connection.
 *
 * The fill runs on the worker of the request that missed, with that worker's upstream
 * pool, but no client is attached: every reader (that request included) streams from
 * the object. So a client that goes away costs the others nothing, and the same engine
 * serves background refreshes (stale-while-revalidate).
 *
 * At the response head the fill decides, by RFC 9111 (cache/policy.c):
 *  - storable: publish the head, append the body as it comes, done;
 *  - 304 to our revalidation: the stale object is refreshed (its body is shared);
 *  - an error or 5xx with a stale object inside its stale-if-error window: publish the
 *    stale object again (readers get it, the app gets a rest);
 *  - otherwise not storable: the key becomes hit-for-miss and the request that started
 *    the fill takes the exchange over, so the answer is not asked for twice.
 */
#include "server/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FG_FILL_MAGIC            0x66746331u /* "ftc1" */
#define FG_FILL_HEAD_MAX         65536
#define FG_FILL_TRANSIENT_FACTOR 4u

struct fg_fill {
    unsigned magic;
    struct fg_worker *w;
    struct fg_snap *snap;
    const struct fg_conf_route *route;
    struct fg_upstream_pool *pool;
    struct fg_upstream_exchange *x; /* NULL once it ended (or was handed over) */
    struct fg_cache *store;
    struct fg_cache_obj *obj;   /* BUSY, then filled */
    struct fg_cache_obj *stale; /* revalidated / fallen back on; may be NULL */
    struct fg_txn *initiator;   /* may take the connection over; NULL when gone */
    bool head_only_client;      /* the initiator asked HEAD: it cannot adopt a GET */
    bool conditional;           /* we sent validators of stale */
    bool head_done;             /* the head was stored: the body follows */
    uint64_t sent_us;           /* the request went to the app */
    char *head;                 /* the request as sent */
    size_t head_len;
    struct fg_http_request *req; /* parsed from head: Vary values */
    int64_t request_time;        /* wall s */
    /* Compression (stage_compress.c): the coding the initiator negotiated; the variant stored is
     * encoded with it when the answer is compressible. */
    bool zroute;
    enum fg_compress_encoding zenc;
    struct fg_compress_stream zs;
    /* An app that encoded its answer anyway: decoded while filling, so the variants stored
     * are always our own codings and identity clients get identity. */
    struct fg_decompressor *zdec;
    struct evbuffer *dstage, *dout;
    enum fg_http_body app_body; /* the framing the app sent, whatever is stored */
    uint64_t appended;          /* body bytes given to the object */
    uint64_t app_length;
    /* The shared tier (fleet.h): asked before the app on a plain miss. */
    struct fg_fleet_l2_get *l2; /* the get on its way */
    bool from_l2;               /* the object came from it: not written back */
    bool l2_again;              /* asked again after another instance's fill: no lock now */
    /* Fleet-wide coalescing: the fill lock asked for, held, or waited on. */
    struct fg_fleet_req *fleet_req;
    bool lock_held;
    enum fg_fleet_fill_outcome release_as; /* what waiters are told if it ends otherwise */
};

static const struct fg_upstream_exchange_ops fill_ops;

static void fill_free(struct fg_fill *f)
{
    FG_ASSERT(f->magic == FG_FILL_MAGIC);
    f->magic = 0;
    if (f->initiator != NULL)
        f->initiator->cache.fill = NULL;
    if (f->x != NULL)
        fg_upstream_exchange_abort(f->x);
    fg_fleet_l2_cancel(f->l2);
    fg_fleet_req_cancel(f->fleet_req);
    if (f->lock_held) { /* the other instances waiting go to the app now */
        const char *key = fg_cache_obj_key(f->obj);
        fg_fleet_release(f->snap->fleet, key, strlen(key), f->release_as);
    }
    fg_cache_obj_unref(f->obj);
    fg_cache_obj_unref(f->stale);
    if (f->zs.z != NULL)
        fg_compress_stream_free(&f->zs);
    fg_decompressor_free(f->zdec);
    if (f->dstage != NULL)
        evbuffer_free(f->dstage);
    if (f->dout != NULL)
        evbuffer_free(f->dout);
    fg_snap_release(f->w, f->snap);
    free(f->head);
    free(f->req);
    free(f);
}

void fg_fill_forget_initiator(struct fg_fill *f)
{
    FG_ASSERT(f->magic == FG_FILL_MAGIC);
    f->initiator = NULL;
}

/* Insert the validators of the stale object before the head's final CRLF. */
static bool add_validators(struct fg_fill *f, const struct fg_cache_obj *stale)
{
    char extra[256];
    size_t n = 0;
    const struct fg_cache_meta *m = fg_cache_obj_meta(stale);
    if (m->etag[0] != '\0')
        n += (size_t)snprintf(extra + n, sizeof(extra) - n, "If-None-Match: %s\r\n", m->etag);
    if (m->last_modified >= 0) {
        char date[30];
        fg_http_format_date(m->last_modified, date);
        n += (size_t)snprintf(extra + n, sizeof(extra) - n, "If-Modified-Since: %s\r\n", date);
    }
    if (n == 0 || n >= sizeof(extra))
        return false;
    char *p = realloc(f->head, f->head_len + n);
    if (p == NULL)
        return false;
    f->head = p;
    memmove(p + f->head_len - 2 + n, p + f->head_len - 2, 2);
    memcpy(p + f->head_len - 2, extra, n);
    f->head_len += n;
    return true;
}

/* Send the fill's request. */
static bool send_request(struct fg_fill *f)
{
    struct fg_upstream_request rq = {.head = f->head,
                                     .head_len = f->head_len,
                                     .method = FG_HTTP_GET,
                                     .body = FG_UPSTREAM_BODY_NONE,
                                     .retryable = true};
    f->sent_us = fg_mono_us();
    f->x = fg_upstream_exchange_start(f->pool, &rq, &fill_ops, f);
    return f->x != NULL;
}

/* ---- the shared tier (fleet.h) ---------------------------------------------------------- */

static bool l2_ask(struct fg_fill *f);

/* The access log's word for what the fleet did, on the request that started the fill. */
static void fleet_log(struct fg_fill *f, const char *word)
{
    if (f->initiator != NULL)
        f->initiator->log_fleet = word;
}

/* Ask the app (the exchange); the fill is over when it cannot be. */
static void app(struct fg_fill *f)
{
    if (!send_request(f)) {
        fg_cache_fill_abort(f->obj, 502);
        fill_free(f);
    }
}

/* Another instance's fill of the key ended (or the wait did). */
static void wait_answer(enum fg_fleet_fill_outcome o, void *arg)
{
    struct fg_fill *f = arg;
    FG_ASSERT(f->magic == FG_FILL_MAGIC);
    f->fleet_req = NULL;
    f->l2_again = true;
    fleet_log(f, o == FG_FLEET_FILL_TIMEOUT  ? "wait_timeout"
                 : o == FG_FLEET_FILL_FILLED ? "waited"
                                             : "wait_passed");
    if (o == FG_FLEET_FILL_FILLED && l2_ask(f))
        return;
    app(f); /* not storable, failed, or no word in time: on our own */
}

static void lock_answer(bool taken, bool answered, void *arg)
{
    struct fg_fill *f = arg;
    FG_ASSERT(f->magic == FG_FILL_MAGIC);
    f->fleet_req = NULL;
    if (taken) {
        fleet_log(f, "lock");
        f->lock_held = true;
        f->release_as = FG_FLEET_FILL_ABORTED;
        app(f);
        return;
    }
    if (!answered) { /* Redis could not say: the app, as without the fleet */
        app(f);
        return;
    }
    const char *key = fg_cache_obj_key(f->obj);
    struct fg_fleet_req *q = NULL;
    enum fg_fleet_fill_outcome o = fg_fleet_wait_fill(
        f->snap->fleet, key, strlen(key), f->route->cache.lock_timeout_ms, wait_answer, f, &q);
    if (o == FG_FLEET_FILL_PENDING) {
        f->fleet_req = q;
        return;
    }
    f->l2_again = true;
    fleet_log(f, o == FG_FLEET_FILL_FILLED ? "waited" : "wait_passed");
    if (o == FG_FLEET_FILL_FILLED && l2_ask(f))
        return;
    app(f);
}

/* Take the key's fleet-wide fill lock (lock_answer goes on). false: ask the app now. */
static bool lock_ask(struct fg_fill *f)
{
    const char *key = fg_cache_obj_key(f->obj);
    const struct fg_conf_route_cache *rc = &f->route->cache;
    f->fleet_req = fg_fleet_lock(f->snap->fleet, key, strlen(key), rc->lock_timeout_ms,
                                 rc->cache->shared_timeout_ms, lock_answer, f);
    return f->fleet_req != NULL;
}

static int vary_values_of(const struct fg_fill *f, const char *names, size_t names_len, char *out,
                          size_t cap);

/* The variant among recs this fill's request may be served: its secondary key, fresh,
 * not to be revalidated, and not purged here since it was stored. NULL: none. */
static const struct fg_fleet_l2_record *
l2_pick(struct fg_fill *f, const struct fg_fleet_l2_record *recs, size_t n, bool *rejected)
{
    const char *key = fg_cache_obj_key(f->obj);
    int64_t now = fg_wall_ms();
    for (size_t i = 0; i < n; i++) {
        const struct fg_fleet_l2_record *r = &recs[i];
        char values[2048];
        int vlen = r->vary_names_len > 0
                       ? vary_values_of(f, r->vary_names, r->vary_names_len, values, sizeof(values))
                       : 0;
        if (vlen < 0 || (size_t)vlen != r->vary_values_len ||
            memcmp(values, r->vary_values, (size_t)vlen) != 0)
            continue; /* another variant */
        uint64_t age;
        if (r->meta.no_cache || !fg_cache_meta_fresh(&r->meta, now, &age) ||
            r->body_len > f->route->cache.cache->max_object ||
            fg_fleet_purged_since(key, strlen(key), r->tags, r->tags_len,
                                  r->meta.response_time_ms)) {
            *rejected = true;
            continue;
        }
        return r;
    }
    return NULL;
}

/* Publish a record into the busy object, for every reader waiting on it. */
static bool l2_publish(struct fg_fill *f, const struct fg_fleet_l2_record *r)
{
    struct fg_cache_meta m = r->meta;
    m.content_length = r->body_len;
    if (!fg_cache_fill_tags(f->obj, r->tags, r->tags_len) ||
        !fg_cache_fill_head(f->obj, &m, r->head, r->head_len, r->vary_names, r->vary_names_len,
                            r->vary_values, r->vary_values_len))
        return false;
    if (r->body_len > 0)
        fg_cache_fill_append(f->obj, r->body, r->body_len); /* too big: readers still get it */
    fg_cache_fill_done(f->obj, true);
    return true;
}

static void l2_answer(enum fg_fleet_l2_status st, const struct fg_fleet_l2_record *recs, size_t n,
                      void *arg)
{
    struct fg_fill *f = arg;
    FG_ASSERT(f->magic == FG_FILL_MAGIC);
    f->l2 = NULL;
    bool rejected = false;
    const struct fg_fleet_l2_record *r =
        st == FG_FLEET_L2_FOUND ? l2_pick(f, recs, n, &rejected) : NULL;
    if (r != NULL && l2_publish(f, r)) {
        if (!f->l2_again) /* after a wait, "waited" says it */
            fleet_log(f, "l2_hit");
        fg_fleet_l2_count(FG_FLEET_L2_EV_HIT, r->body_len);
        f->from_l2 = true;
        fill_free(f);
        return;
    }
    /* a timeout or an error was counted by the tier */
    if (!f->l2_again)
        fleet_log(f, st == FG_FLEET_L2_TIMEOUT ? "l2_timeout"
                     : st == FG_FLEET_L2_ERROR ? "l2_error"
                                               : "l2_miss");
    if (st == FG_FLEET_L2_FOUND)
        fg_fleet_l2_count(rejected ? FG_FLEET_L2_EV_REJECTED : FG_FLEET_L2_EV_MISS, 0);
    /* Missing everywhere: one instance of the fleet asks the app (the lock), unless this
     * is already the second look, after another instance's fill. */
    if (st == FG_FLEET_L2_FOUND && !f->l2_again && lock_ask(f))
        return;
    app(f);
}

/* Ask the shared tier first: a plain miss (not a revalidation) of a shared cache. true
 * when the question is on its way (l2_answer continues). */
static bool l2_ask(struct fg_fill *f)
{
    const struct fg_conf_cache *k = f->route->cache.cache;
    if (f->snap->fleet == NULL || !k->shared || f->stale != NULL)
        return false;
    const char *key = fg_cache_obj_key(f->obj);
    f->l2 = fg_fleet_l2_get(f->snap->fleet, key, strlen(key), k->shared_timeout_ms, l2_answer, f);
    return f->l2 != NULL;
}

/* Write what the app filled back to the shared tier, if it may serve other instances:
 * complete, fresh for a while, not revalidated before every use, within
 * shared_max_object. The store only kept what a shared cache may store (no private, no
 * Set-Cookie, describe()). */
static void l2_write_back(struct fg_fill *f)
{
    const struct fg_conf_cache *k = f->route->cache.cache;
    if (f->snap->fleet == NULL || !k->shared || f->from_l2 ||
        fg_cache_obj_state(f->obj) != FG_CACHE_COMPLETE)
        return;
    f->release_as = FG_FLEET_FILL_ABORTED; /* not written: the waiters ask the app */
    const struct fg_cache_meta *m = fg_cache_obj_meta(f->obj);
    uint64_t len = fg_cache_obj_length(f->obj), age;
    if (len > k->shared_max_object) {
        fg_fleet_l2_count(FG_FLEET_L2_EV_TOO_BIG, 0);
        return;
    }
    if (m->no_cache || !fg_cache_meta_fresh(m, fg_wall_ms(), &age))
        return;
    uint64_t windows = m->swr > m->sie ? m->swr : m->sie;
    uint64_t ttl_ms = (m->lifetime - age + windows) * 1000;
    struct evbuffer *body = evbuffer_new();
    if (body == NULL)
        return;
    struct fg_cache_reader rd;
    fg_cache_reader_start(&rd, f->obj, NULL, NULL, NULL);
    uint64_t added = 0;
    enum fg_cache_read_status rs = fg_cache_reader_read(&rd, body, false, &added);
    fg_cache_reader_stop(&rd);
    if (rs == FG_CACHE_READ_END) {
        struct fg_fleet_l2_record r = {.meta = *m};
        r.meta.content_length = evbuffer_get_length(body);
        r.head = fg_cache_obj_head(f->obj, &r.head_len);
        fg_cache_obj_vary(f->obj, &r.vary_names, &r.vary_names_len, &r.vary_values,
                          &r.vary_values_len);
        r.tags = fg_cache_obj_tags(f->obj, &r.tags_len);
        r.body_len = evbuffer_get_length(body);
        r.body = r.body_len > 0 ? (const char *)evbuffer_pullup(body, -1) : "";
        const char *key = fg_cache_obj_key(f->obj);
        /* the put releases the lock and tells the waiters once Redis has the record */
        fg_fleet_l2_put(f->snap->fleet, key, strlen(key), &r, ttl_ms, f->lock_held);
        f->lock_held = false;
    }
    evbuffer_free(body);
}

struct fg_fill *fg_fill_start(struct fg_txn *t, struct fg_cache_obj *fill,
                              struct fg_cache_obj *stale, bool background)
{
    struct fg_fill *f = calloc(1, sizeof(*f));
    struct fg_http_request *req = malloc(sizeof(*req));
    if (f == NULL || req == NULL || !fg_forward_head(t, true)) {
        free(f);
        free(req);
        fg_cache_fill_abort(fill, 502);
        return NULL;
    }
    f->magic = FG_FILL_MAGIC;
    f->w = t->c->w;
    f->snap = t->snap;
    f->snap->users++;
    f->route = t->route;
    f->pool = t->snap->pools[t->route->upstream->index];
    f->store = t->cache.store;
    f->obj = fill;
    fg_cache_obj_ref(fill);
    f->initiator = background ? NULL : t;
    f->head_only_client = t->req.method == FG_HTTP_HEAD;
    f->zroute = t->z.route;
    f->zenc = t->z.encoding;
    f->request_time = fg_wall_s();
    f->req = req;
    f->head = malloc(t->proxy.head_len);
    f->head_len = t->proxy.head_len;
    if (f->head != NULL)
        memcpy(f->head, t->proxy.head, t->proxy.head_len);
    if (stale != NULL) {
        fg_cache_obj_ref(stale);
        f->stale = stale;
        if (fg_cache_obj_state(stale) == FG_CACHE_COMPLETE &&
            fg_cache_obj_meta(stale)->status == 200 && f->head != NULL)
            f->conditional = add_validators(f, stale);
    }
    /* Our own head, parsed again: its slices stay valid for the whole fill. */
    struct fg_http_limits lim = {
        .max_request_line = 65536, .max_header_bytes = 1 << 20, .max_headers = FG_HTTP_MAX_HEADERS};
    enum fg_http_error err;
    if (f->head == NULL || fg_http_parse_request(f->head, f->head_len, &lim, req, &err) <= 0 ||
        !(l2_ask(f) || send_request(f))) {
        fg_cache_fill_abort(fill, 502);
        fill_free(f);
        return NULL;
    }
    if (f->conditional)
        fg_cache_count(f->store, FG_CACHE_EV_REVALIDATION);
    return f;
}

/* ---- endings ------------------------------------------------------------------------------ */

/* Stale-if-error: publish the stale object again for everyone waiting. */
static bool fall_back_on_stale(struct fg_fill *f)
{
    struct fg_cache_obj *s = f->stale;
    if (s == NULL || fg_cache_obj_state(s) != FG_CACHE_COMPLETE)
        return false;
    const struct fg_cache_meta *m = fg_cache_obj_meta(s);
    if (m->must_revalidate)
        return false;
    uint64_t age;
    fg_cache_obj_fresh(s, fg_wall_ms(), &age);
    if (age >= m->lifetime + m->sie)
        return false;
    fg_cache_fill_stale(f->obj, s);
    fg_cache_count(f->store, FG_CACHE_EV_STALE);
    return true;
}

/* The fill failed before a response head (the exchange retried what could be). */
static void fail_before_head(struct fg_fill *f, int status, const char *server, const char *why)
{
    const struct fg_conf_upstream *u = fg_upstream_pool_conf(f->pool);
    fg_warn("cache fill of %s from upstream %s: %s %s", fg_cache_obj_key(f->obj), u->name, server,
            why);
    if (!fall_back_on_stale(f))
        fg_cache_fill_abort(f->obj, status);
    fill_free(f);
}

static bool zs_to_obj(struct fg_fill *f);

/* The body ended (ok: complete; the exchange already gave the connection back) or the
 * fill cannot go on. */
static void body_done(struct fg_fill *f, bool ok)
{
    if (ok && f->zdec != NULL && fg_decompressor_finish(f->zdec) != FG_COMPRESS_OK) {
        fg_warn("cache fill of %s: the app's encoded body is truncated or corrupt",
                fg_cache_obj_key(f->obj));
        ok = false;
    }
    if (ok && f->zs.z != NULL) {
        ok = fg_compress_stream_finish(&f->zs, f->zs.out) && zs_to_obj(f);
        fg_compress_stream_free(&f->zs);
    }
    fg_cache_fill_done(f->obj, ok);
    if (ok)
        l2_write_back(f);
    fill_free(f); /* aborts the exchange if it still runs */
}

/* ---- the response head -------------------------------------------------------------------- */

/* Is h one of the cache's tag fields (Cache-Tag...)? */
static bool tag_field(const struct fg_conf_cache *k, const struct fg_http_header *h)
{
    for (size_t i = 0; i < k->n_tag_fields; i++)
        if (fg_http_name_eq(h->name, h->name_len, k->tag_fields[i]))
            return true;
    return false;
}

/* Fields not stored: framing, hop-by-hop, ours (Age is computed on every hit), and the
 * tag fields with `tag_strip on` (the tags are kept beside the head, for purges). */
static bool stored_field(const struct fg_conf_cache *k, const struct fg_http_response *resp,
                         const struct fg_http_header *h)
{
    if ((k->tag_strip && tag_field(k, h)) || fg_http_is_hop_by_hop(h->name, h->name_len) ||
        fg_http_name_eq(h->name, h->name_len, "content-length") ||
        fg_http_name_eq(h->name, h->name_len, "age") ||
        fg_http_name_eq(h->name, h->name_len, "x-cache"))
        return false;
    return !((resp->flags & FG_HTTP_F_CONN_OTHER) &&
             fg_http_connection_lists(resp->headers, resp->n_headers, h->name, h->name_len));
}

/* Write "Name: value\r\n" at o; returns the end. */
static char *put_field(char *o, const struct fg_http_header *h)
{
    memcpy(o, h->name, h->name_len);
    o += h->name_len;
    *o++ = ':';
    *o++ = ' ';
    memcpy(o, h->value, h->value_len);
    o += h->value_len;
    *o++ = '\r';
    *o++ = '\n';
    return o;
}

static char *stored_head(const struct fg_conf_cache *k, const struct fg_http_response *resp,
                         const struct fg_compress_plan *plan, size_t *len)
{
    size_t cap = resp->head_len + 64 + (plan ? FG_COMPRESS_PLAN_FIELDS_MAX : 0);
    char *p = malloc(cap), *o = p;
    if (p == NULL)
        return NULL;
    o += snprintf(o, cap, "HTTP/1.1 %d %.*s\r\n", resp->status,
                  resp->reason_len ? (int)resp->reason_len
                                   : (int)strlen(fg_http_reason(resp->status)),
                  resp->reason_len ? resp->reason : fg_http_reason(resp->status));
    for (size_t i = 0; i < resp->n_headers; i++) {
        const struct fg_http_header *h = &resp->headers[i];
        if (!stored_field(k, resp, h) || (plan != NULL && fg_compress_plan_replaces(plan, h)))
            continue;
        o = put_field(o, h);
    }
    if (plan != NULL)
        o += fg_compress_plan_fields(plan, o, FG_COMPRESS_PLAN_FIELDS_MAX);
    *len = (size_t)(o - p);
    return p;
}

/* The answer's Vary names, with accept-encoding added when compression varies it. */
static int vary_names_of(const struct fg_http_response *resp, bool add_ae, char *out, size_t cap)
{
    struct fg_http_header h[FG_HTTP_MAX_HEADERS + 1];
    size_t n = 0;
    for (size_t i = 0; i < resp->n_headers; i++)
        if (fg_http_name_eq(resp->headers[i].name, resp->headers[i].name_len, "vary"))
            h[n++] = resp->headers[i];
    if (add_ae)
        h[n++] = (struct fg_http_header){"Vary", 4, "Accept-Encoding", 15};
    return fg_cache_vary_names(h, n, out, cap);
}

/* The fill's secondary key: its own request, with Accept-Encoding standing for the coding
 * the initiator negotiated (cache.c looks variants up the same way). */
static int vary_values_of(const struct fg_fill *f, const char *names, size_t names_len, char *out,
                          size_t cap)
{
    if (!f->zroute)
        return fg_cache_vary_values(names, names_len, f->req->headers, f->req->n_headers, out, cap);
    struct fg_http_header h[FG_HTTP_MAX_HEADERS + 1];
    size_t n = fg_stage_compress_lookup_headers(f->req->headers, f->req->n_headers, f->zenc, h);
    return fg_cache_vary_values(names, names_len, h, n, out, cap);
}

/* The freshness facts of a response into src (an object used only as a carrier). */
static bool describe(struct fg_fill *f, const struct fg_http_response *resp,
                     struct fg_cache_meta *src)
{
    const struct fg_conf_route_cache *rc = &f->route->cache;
    struct fg_cache_response cr;
    fg_cache_response_from_head(resp, rc->targeted, &cr);
    struct fg_cache_control none;
    memset(&none, 0, sizeof(none));
    none.max_age = none.s_maxage = none.stale_while_revalidate = none.stale_if_error =
        none.max_stale = none.min_fresh = FG_CACHE_NO_VALUE;
    bool storable = fg_cache_storable(FG_HTTP_GET, &none, false, &cr);
    /* A shared cache that stores Set-Cookie hands one user's session to the next. */
    if (fg_http_find_header(resp->headers, resp->n_headers, "set-cookie") != NULL)
        storable = false;
    int64_t now = fg_wall_s();
    uint64_t lifetime = fg_cache_freshness_lifetime(&cr, now);
    bool explicit_freshness = cr.cc.max_age != FG_CACHE_NO_VALUE ||
                              cr.cc.s_maxage != FG_CACHE_NO_VALUE ||
                              cr.expires != FG_CACHE_NO_VALUE;
    if (!explicit_freshness && lifetime == 0 && rc->default_ttl_ms > 0)
        lifetime = rc->default_ttl_ms / 1000;
    src->status = resp->status;
    src->content_length = resp->body == FG_HTTP_BODY_LENGTH ? resp->content_length
                          : resp->body == FG_HTTP_BODY_NONE ? 0
                                                            : FG_CACHE_NO_VALUE;
    const struct fg_http_header *etag = fg_http_find_header(resp->headers, resp->n_headers, "etag");
    src->etag[0] = '\0';
    if (etag != NULL && etag->value_len < sizeof(src->etag)) {
        memcpy(src->etag, etag->value, etag->value_len);
        src->etag[etag->value_len] = '\0';
    }
    src->last_modified = cr.last_modified != FG_CACHE_NO_VALUE ? (int64_t)cr.last_modified : -1;
    src->response_time_ms = fg_wall_ms();
    src->initial_age = fg_cache_current_age(&cr, f->request_time, now, now);
    src->lifetime = lifetime;
    src->swr = cr.cc.stale_while_revalidate != FG_CACHE_NO_VALUE ? cr.cc.stale_while_revalidate
                                                                 : rc->swr_ms / 1000;
    src->sie = cr.cc.stale_if_error != FG_CACHE_NO_VALUE ? cr.cc.stale_if_error : rc->sie_ms / 1000;
    /* s-maxage carries proxy-revalidate's meaning for a shared cache (RFC 9111 §5.2.2.10). */
    src->must_revalidate =
        cr.cc.must_revalidate || cr.cc.proxy_revalidate || cr.cc.s_maxage != FG_CACHE_NO_VALUE;
    if (src->must_revalidate)
        src->swr = src->sie = 0;
    src->no_cache = cr.cc.no_cache;
    /* Worth keeping only if it can be served again: fresh for a while, or revalidatable. */
    bool useful = lifetime > 0 || src->etag[0] != '\0' || src->last_modified >= 0;
    return storable && useful && !cr.vary_star;
}

/* Replace the stored fields with those of a 304 (RFC 9111 §3.2) into a new head. */
static char *merged_head(const struct fg_conf_cache *k, const struct fg_cache_obj *stale,
                         const struct fg_http_response *nm, size_t *len)
{
    size_t stale_len;
    const char *stale_head = fg_cache_obj_head(stale, &stale_len);
    size_t cap = stale_len + nm->head_len + 64;
    char *p = malloc(cap), *o = p;
    if (p == NULL)
        return NULL;
    const char *s = stale_head, *end = stale_head + stale_len;
    const char *eol = memchr(s, '\n', stale_len);
    if (eol == NULL) {
        free(p);
        return NULL;
    }
    memcpy(o, s, (size_t)(eol + 1 - s)); /* status line */
    o += eol + 1 - s;
    for (const char *line = eol + 1; line < end;) {
        const char *next = memchr(line, '\n', (size_t)(end - line));
        next = next ? next + 1 : end;
        const char *colon = memchr(line, ':', (size_t)(next - line));
        bool replaced = false;
        for (size_t i = 0; colon != NULL && i < nm->n_headers && !replaced; i++) {
            const struct fg_http_header *h = &nm->headers[i];
            replaced = stored_field(k, nm, h) && h->name_len == (size_t)(colon - line) &&
                       strncasecmp(h->name, line, h->name_len) == 0;
        }
        if (!replaced) {
            memcpy(o, line, (size_t)(next - line));
            o += next - line;
        }
        line = next;
    }
    for (size_t i = 0; i < nm->n_headers; i++) {
        const struct fg_http_header *h = &nm->headers[i];
        if (!stored_field(k, nm, h) || fg_http_name_eq(h->name, h->name_len, "content-encoding") ||
            fg_http_name_eq(h->name, h->name_len, "content-type"))
            continue;
        o = put_field(o, h);
    }
    *len = (size_t)(o - p);
    return p;
}

static void not_modified(struct fg_fill *f, const struct fg_http_response *resp)
{
    struct fg_cache_meta src;
    fg_cache_meta_init(&src);
    size_t len = 0;
    char *head = merged_head(f->route->cache.cache, f->stale, resp, &len);
    /* Freshness from the merged fields: parse them back as one head. */
    struct fg_http_response *merged = malloc(sizeof(*merged));
    char *text = head ? malloc(len + 2) : NULL;
    bool ok = merged != NULL && text != NULL;
    if (ok) {
        memcpy(text, head, len);
        memcpy(text + len, "\r\n", 2);
        struct fg_http_limits lim = {.max_request_line = 65536,
                                     .max_header_bytes = 1 << 20,
                                     .max_headers = FG_HTTP_MAX_HEADERS};
        enum fg_http_error err;
        ok = fg_http_parse_response(text, len + 2, &lim, FG_HTTP_HEAD, merged, &err) > 0;
    }
    if (ok) {
        describe(f, merged, &src);
        fg_cache_fill_refresh(f->obj, f->stale, &src, head, len);
        fg_cache_count(f->store, FG_CACHE_EV_REVALIDATED);
    } else {
        fg_cache_fill_abort(f->obj, 502);
    }
    free(text);
    free(merged);
    free(head);
}

/* Not storable: hit-for-miss, and the initiator takes the response over. */
static void pass(struct fg_fill *f, const struct fg_http_response *resp)
{
    /* A 5xx is no verdict on the key: the next request coalesces again. */
    uint64_t ttl = resp->status >= 500 ? 0 : f->route->cache.hit_for_miss_ms;
    struct fg_txn *t = f->initiator;
    struct fg_upstream_exchange *x = f->x;
    f->release_as = FG_FLEET_FILL_PASSED; /* the fleet's waiters go to the app at once */
    fg_cache_fill_pass(f->obj, fg_wall_ms(), ttl);
    if (t != NULL && !f->head_only_client) {
        /* The request that started the fill takes the answer over: the exchange goes on
         * with the body, now to the client (the app is not asked twice). */
        f->x = NULL;
        f->initiator = NULL;
        fg_stage_cache_adopt(t, x, resp);
    }
    fill_free(f);
}

static void on_head_storable(struct fg_fill *f, const struct fg_http_response *resp,
                             const struct fg_http_response *view, struct fg_cache_meta *srcp);

/* The app sent gzip or br on its own: decode it while filling. *decoded is a copy of the
 * head without Content-Encoding and without a known length. false when it cannot be
 * decoded (an unknown coding, out of memory): the answer then passes as it is. */
static bool decode_app_encoding(struct fg_fill *f, const struct fg_http_response *resp,
                                struct fg_http_response **decoded)
{
    const struct fg_http_header *ce =
        fg_http_find_header(resp->headers, resp->n_headers, "content-encoding");
    *decoded = NULL;
    if (ce == NULL || fg_http_name_eq(ce->value, ce->value_len, "identity"))
        return true;
    enum fg_compress_encoding enc = fg_http_name_eq(ce->value, ce->value_len, "gzip") ||
                                            fg_http_name_eq(ce->value, ce->value_len, "x-gzip")
                                        ? FG_COMPRESS_GZIP
                                    : fg_http_name_eq(ce->value, ce->value_len, "br")
                                        ? FG_COMPRESS_BR
                                        : FG_COMPRESS_IDENTITY;
    if (enc == FG_COMPRESS_IDENTITY)
        return false; /* deflate, zstd, several codings: not ours to store */
    struct fg_http_response *d = malloc(sizeof(*d));
    uint64_t cap = FG_FILL_TRANSIENT_FACTOR * f->route->cache.cache->max_object;
    f->zdec = fg_decompressor_new(enc, cap, 64u << 20);
    f->dstage = evbuffer_new();
    f->dout = evbuffer_new();
    if (d == NULL || f->zdec == NULL || f->dstage == NULL || f->dout == NULL) {
        free(d);
        return false;
    }
    *d = *resp;
    d->n_headers = 0;
    for (size_t i = 0; i < resp->n_headers; i++)
        if (!fg_http_name_eq(resp->headers[i].name, resp->headers[i].name_len, "content-encoding"))
            d->headers[d->n_headers++] = resp->headers[i];
    if (d->body == FG_HTTP_BODY_LENGTH)
        d->body = FG_HTTP_BODY_CHUNKED; /* only for the policy: the decoded length is unknown */
    *decoded = d;
    return true;
}

static void fill_on_head(void *arg, struct fg_upstream_exchange *x,
                         const struct fg_http_response *resp)
{
    struct fg_fill *f = arg;
    FG_ASSERT(f->magic == FG_FILL_MAGIC);
    f->app_body = resp->body;
    f->app_length = resp->content_length;
    if (f->initiator != NULL) { /* what the app cost the request that started the fill */
        struct fg_txn *t = f->initiator;
        t->app_head_us = fg_mono_us() - f->sent_us;
        fg_upstream_exchange_timing(x, &t->app);
        t->cache.own_fill_head = true;
    }
    if (resp->status == 304 && f->conditional) {
        not_modified(f, resp); /* the exchange ends it (no body): fill_on_end frees */
        return;
    }
    if (resp->status >= 500 && fall_back_on_stale(f)) {
        fill_free(f); /* closes the connection: its body is of no use */
        return;
    }
    struct fg_cache_meta src;
    fg_cache_meta_init(&src);
    struct fg_http_response *decoded = NULL;
    if (f->zroute && !decode_app_encoding(f, resp, &decoded)) {
        pass(f, resp);
        return;
    }
    const struct fg_http_response *view = decoded ? decoded : resp;
    on_head_storable(f, resp, view, &src);
    free(decoded);
}

/* resp: the answer as the app sent it (what an adopting client gets); view: as it will
 * be stored (decoded if the app encoded it). */
static void on_head_storable(struct fg_fill *f, const struct fg_http_response *resp,
                             const struct fg_http_response *view, struct fg_cache_meta *srcp)
{
    struct fg_cache_meta src = *srcp;
    /* A compressible answer on a compressing route varies on Accept-Encoding: one variant
     * per negotiated coding (the fill asked the app for identity). */
    struct fg_compress_plan plan;
    bool z = f->zroute && fg_stage_compress_plan(f->route, f->zenc, FG_HTTP_GET, view, &plan);
    bool zedit = f->zroute && (z || plan.vary_edit);
    char names[512];
    int nlen = vary_names_of(view, zedit, names, sizeof(names));
    char values[2048];
    int vlen = nlen > 0 ? vary_values_of(f, names, (size_t)nlen, values, sizeof(values)) : 0;
    if (!describe(f, view, &src) || nlen < 0 || vlen < 0) {
        pass(f, resp);
        return;
    }
    /* The tags go with the object; an answer whose tags do not fit is not stored (a
     * purge of a tag it lost would miss it). */
    const struct fg_conf_cache *k = f->route->cache.cache;
    char tags[FG_CACHE_TAGS_MAX];
    int tlen = fg_cache_tags_collect(view->headers, view->n_headers,
                                     (const char *const[]){k->tag_fields[0], k->tag_fields[1],
                                                           k->tag_fields[2], k->tag_fields[3]},
                                     k->n_tag_fields, tags, sizeof(tags));
    if (tlen < 0) {
        fg_info("cache fill of %s: not stored: its tags do not fit (%d bytes of tags, %d per tag "
                "at most)",
                fg_cache_obj_key(f->obj), FG_CACHE_TAGS_MAX, FG_CACHE_TAG_MAX);
        pass(f, resp);
        return;
    }
    if (z) {
        if (!fg_stage_compress_start(&f->zs, f->route, &plan,
                                     view->body == FG_HTTP_BODY_LENGTH
                                         ? view->content_length
                                         : FG_COMPRESS_LENGTH_UNKNOWN)) {
            pass(f, resp);
            return;
        }
        src.content_length = FG_CACHE_NO_VALUE; /* known once encoded */
    }
    size_t hlen = 0;
    char *head = stored_head(k, view, zedit ? &plan : NULL, &hlen);
    bool ok =
        head != NULL && fg_cache_fill_tags(f->obj, tags, (size_t)tlen) &&
        fg_cache_fill_head(f->obj, &src, head, hlen, names, (size_t)nlen, values, (size_t)vlen);
    free(head);
    if (!ok) {
        pass(f, resp);
        return;
    }
    f->head_done = true; /* the exchange delivers the body (fill_on_body) and the end */
}

/* ---- the body ----------------------------------------------------------------------------- */

/* Append n bytes from the input to the object. false when the fill must stop: a body of
 * unannounced length grew past max_object (it is then no longer stored, but the readers
 * that joined still need it), and past FG_FILL_TRANSIENT_FACTOR times that: holding more
 * in memory for a few readers is not worth it, they are cut. */
static bool append(struct fg_fill *f, const void *data, size_t k)
{
    f->appended += k;
    if (!fg_cache_fill_append(f->obj, data, k) &&
        f->appended > FG_FILL_TRANSIENT_FACTOR * f->route->cache.cache->max_object) {
        fg_warn("cache fill of %s: body over %u x max_object with no Content-Length; "
                "readers cut (raise max_object or send Content-Length)",
                fg_cache_obj_key(f->obj), FG_FILL_TRANSIENT_FACTOR);
        return false;
    }
    return true;
}

/* What the encoder produced so far goes into the object. */
static bool zs_to_obj(struct fg_fill *f)
{
    struct evbuffer *o = f->zs.out;
    while (evbuffer_get_length(o) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(o, -1, NULL, &v, 1) < 1)
            break;
        if (!append(f, v.iov_base, v.iov_len))
            return false;
        evbuffer_drain(o, v.iov_len);
    }
    return true;
}

static bool take(struct fg_fill *f, struct evbuffer *in, size_t n)
{
    if (f->zdec != NULL) {
        /* Decode the app's encoding first; what comes out is the plain body. */
        evbuffer_remove_buffer(in, f->dstage, n);
        enum fg_compress_status st = fg_decompressor_write_buffer(f->zdec, f->dstage, f->dout);
        if (st != FG_COMPRESS_OK) {
            fg_warn("cache fill of %s: cannot decode the app's body (%s)", fg_cache_obj_key(f->obj),
                    fg_compress_status_name(st));
            return false;
        }
        in = f->dout;
        n = evbuffer_get_length(in);
    }
    if (f->zs.z != NULL) {
        /* Encoded variant: the encoder's output is what readers and the cache get. */
        evbuffer_remove_buffer(in, f->zs.tmp, n);
        return fg_compress_stream_write(&f->zs, f->zs.tmp, f->zs.out) && zs_to_obj(f);
    }
    while (n > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, (ev_ssize_t)n, NULL, &v, 1) < 1)
            return true;
        size_t k = v.iov_len < n ? v.iov_len : n;
        if (!append(f, v.iov_base, k))
            return false;
        evbuffer_drain(in, k);
        n -= k;
    }
    return true;
}

static void fill_on_body(void *arg, struct fg_upstream_exchange *x, struct evbuffer *in, size_t n)
{
    struct fg_fill *f = arg;
    FG_ASSERT(f->magic == FG_FILL_MAGIC);
    if (!take(f, in, n))
        body_done(f, false);
}

static void fill_on_end(void *arg, struct fg_upstream_exchange *x)
{
    struct fg_fill *f = arg;
    FG_ASSERT(f->magic == FG_FILL_MAGIC);
    f->x = NULL;
    if (f->head_done)
        body_done(f, true);
    else
        fill_free(f); /* a 304 that refreshed the stale object */
}

static void fill_on_error(void *arg, struct fg_upstream_exchange *x,
                          const struct fg_upstream_error *e)
{
    struct fg_fill *f = arg;
    FG_ASSERT(f->magic == FG_FILL_MAGIC);
    f->x = NULL;
    if (f->initiator != NULL) /* for its access log line: the server the fill tried */
        fg_strcopy(f->initiator->log_upstream, sizeof(f->initiator->log_upstream), e->server);
    if (!f->head_done) {
        fail_before_head(f, e->status, e->server, e->detail);
        return;
    }
    fg_warn("cache fill from upstream %s: %s broke off mid-body (%s)",
            fg_upstream_pool_conf(f->pool)->name, e->server, e->detail);
    body_done(f, false);
}

static const struct fg_upstream_exchange_ops fill_ops = {
    .on_head = fill_on_head,
    .on_body = fill_on_body,
    .on_end = fill_on_end,
    .on_error = fill_on_error,
};
