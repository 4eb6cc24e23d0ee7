/*
 * stage_limit.c — the rate-limit stage of the request path (request.c calls
 * fg_stage_limit).
 *
 * Each limit of the route is decided in order, by the shared local table or, for a Redis
 * limit, by this worker's Redis client (asynchronously: the request waits with its head
 * in the input buffer and reading paused, as in the cache stage). The first refusal
 * answers 429 with Retry-After and the RateLimit fields; when every limit allows, the
 * request goes on to the cache stage and the app.
 *
 * Limits are counted by name across reloads and workers (a small registry, like the
 * caches'), so /stats keeps its numbers when the config changes.
 */
#include "server/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FG_LIMIT_REGISTRY_MAX 128
#define FG_LIMIT_KEY_MAX      512

static struct fg_ratelimit_table *table;

/* Counters of one limit, by name; per worker so that each has a single writer. */
struct limit_stats {
    char name[FG_CONF_NAME_MAX];
    struct fg_limit_worker_stats *w; /* [n_workers] */
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct limit_stats registry[FG_LIMIT_REGISTRY_MAX];
static size_t registry_n;
static size_t n_workers;

bool fg_stage_limit_global_init(const struct fg_config *cfg, size_t workers)
{
    n_workers = workers;
    table = fg_ratelimit_table_new((size_t)cfg->limit_table_entries);
    return table != NULL;
}

struct fg_ratelimit_table *fg_stage_limit_table(void)
{
    return table;
}

static struct fg_limit_worker_stats *stats_of(const char *name, unsigned worker)
{
    struct fg_limit_worker_stats *found = NULL;
    pthread_mutex_lock(&registry_lock);
    for (size_t i = 0; i < registry_n && found == NULL; i++)
        if (strcmp(registry[i].name, name) == 0)
            found = &registry[i].w[worker];
    if (found == NULL && registry_n < FG_LIMIT_REGISTRY_MAX) {
        struct limit_stats *r = &registry[registry_n];
        r->w = calloc(n_workers ? n_workers : 1, sizeof(*r->w));
        if (r->w != NULL) {
            snprintf(r->name, sizeof(r->name), "%s", name);
            registry_n++;
            found = &r->w[worker];
        }
    }
    pthread_mutex_unlock(&registry_lock);
    return found;
}

void fg_stage_limit_stats_sum(size_t i, char *name, size_t name_cap, struct fg_limit_sum *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&registry_lock);
    if (i < registry_n) {
        snprintf(name, name_cap, "%s", registry[i].name);
        for (size_t k = 0; k < n_workers; k++) {
            const struct fg_limit_worker_stats *s = &registry[i].w[k];
            out->allowed += fg_counter_get(&s->allowed);
            out->limited += fg_counter_get(&s->limited);
            out->failed_closed += fg_counter_get(&s->failed_closed);
            out->redis_ok += fg_counter_get(&s->redis.redis_ok);
            out->redis_errors += fg_counter_get(&s->redis.redis_errors);
            out->redis_timeouts += fg_counter_get(&s->redis.redis_timeouts);
            out->fallbacks += fg_counter_get(&s->redis.fallbacks);
            out->connects += fg_counter_get(&s->redis.connects);
            out->disconnects += fg_counter_get(&s->redis.disconnects);
            out->noscript += fg_counter_get(&s->redis.noscript);
            for (size_t b = 0; b < FG_HIST_BUCKETS; b++)
                out->redis_latency[b] += fg_counter_get(&s->redis_latency.bucket[b]);
            out->redis_latency_count += fg_counter_get(&s->redis_latency.count);
            out->redis_latency_sum += fg_counter_get(&s->redis_latency.sum_us);
        }
    } else {
        name[0] = '\0';
    }
    pthread_mutex_unlock(&registry_lock);
}

size_t fg_stage_limit_stats_count(void)
{
    pthread_mutex_lock(&registry_lock);
    size_t n = registry_n;
    pthread_mutex_unlock(&registry_lock);
    return n;
}

/* ---- per snapshot: runtime limits and this worker's Redis clients -------------------------- */

bool fg_stage_limit_snap_init(struct fg_worker *w, struct fg_snap *s)
{
    const struct fg_config *cfg = s->cfg;
    size_t n = cfg->n_limits ? cfg->n_limits : 1;
    s->limits = calloc(n, sizeof(*s->limits));
    if (s->limits == NULL)
        return false;
    for (size_t i = 0; i < cfg->n_limits; i++) {
        const struct fg_conf_limit *cl = &cfg->limits[i];
        struct fg_snap_limit *sl = &s->limits[i];
        char err[160];
        /* Checked at load: it cannot fail here. */
        bool ok = fg_ratelimit_limit_init(
            &sl->limit, cl->name, cl->requests, cl->period_ms * 1000, cl->burst,
            cl->redis ? FG_RATELIMIT_REDIS : FG_RATELIMIT_LOCAL, err, sizeof(err));
        FG_ASSERT(ok);
        sl->stats = stats_of(cl->name, w->id);
        if (!cl->redis || cl->redis_ep == NULL || sl->stats == NULL)
            continue;
        struct fg_ratelimit_redis_opts opts = {.timeout_ms = (unsigned)cl->redis_timeout_ms};
        sl->redis = fg_ratelimit_redis_new(w->base, cl->redis_ep, &opts, table, &sl->stats->redis);
    }
    return true;
}

void fg_stage_limit_snap_free(struct fg_snap *s)
{
    for (size_t i = 0; s->limits != NULL && i < s->cfg->n_limits; i++)
        fg_ratelimit_redis_free(s->limits[i].redis);
    free(s->limits);
}

/* ---- the stage ----------------------------------------------------------------------------- */

static size_t put(char *key, size_t pos, const char *s, size_t len)
{
    if (pos + len + 1 > FG_LIMIT_KEY_MAX)
        len = FG_LIMIT_KEY_MAX - 1 - pos; /* long values are cut: still one budget each */
    memcpy(key + pos, s, len);
    pos += len;
    key[pos++] = '\x1f'; /* between parts: "a" + "bc" is not "ab" + "c" */
    return pos;
}

static size_t build_key(const struct fg_txn *t, const struct fg_conf_limit *cl, char *key)
{
    const struct fg_http_request *r = &t->req;
    size_t pos = 0;
    for (size_t i = 0; i < cl->n_key; i++) {
        const char *v = "";
        size_t len = 0;
        switch (cl->key[i]) {
        case FG_LIMIT_KEY_CLIENT_IP:
            v = t->client_ip, len = strlen(t->client_ip);
            break;
        case FG_LIMIT_KEY_HEADER: {
            const struct fg_http_header *h =
                fg_http_find_header(r->headers, r->n_headers, cl->key_name[i]);
            if (h != NULL)
                v = h->value, len = h->value_len;
            break;
        }
        case FG_LIMIT_KEY_COOKIE: {
            const char *c = fg_http_cookie(r->headers, r->n_headers, cl->key_name[i],
                                           FG_HTTP_COOKIE_FIRST, &len);
            if (c != NULL)
                v = c;
            break;
        }
        case FG_LIMIT_KEY_ROUTE:
            v = t->route->prefix, len = strlen(t->route->prefix);
            break;
        }
        pos = put(key, pos, v, len);
    }
    return pos;
}

static void decide_next(struct fg_txn *t);

/* The transaction ends: forget a decision still waiting for Redis. */
static void release(struct fg_txn *t)
{
    if (t->limit.pending != NULL) {
        fg_ratelimit_cancel(t->limit.pending);
        t->limit.pending = NULL;
    }
}

/* Format the RateLimit fields (and Retry-After on a refusal) of one decision. */
static size_t format_fields(const struct fg_snap_limit *sl, const struct fg_ratelimit_result *res,
                            char *buf, size_t cap)
{
    return fg_ratelimit_format_headers(buf, cap, &sl->limit, res, FG_RATELIMIT_HEADERS_BOTH);
}

/* Send the 429 of sl's refusal res (the request's head and body already consumed). */
static void send_refusal(struct fg_txn *t, const struct fg_snap_limit *sl,
                         const struct fg_ratelimit_result *res, bool close)
{
    char fields[FG_RATELIMIT_HEADERS_MAX];
    size_t n = format_fields(sl, res, fields, sizeof(fields));
    char body[256];
    int bl =
        snprintf(body, sizeof(body),
                 "{\"error\":\"too many requests\",\"limit\":\"%s\",\"retry_after\":%" PRIu64 "}\n",
                 sl->limit.name, fg_ratelimit_retry_after_s(res->retry_after_ms));
    fg_respond(t, 429, "application/json", body, (size_t)bl, fields, n, close);
}

static void refuse(struct fg_txn *t, const struct fg_snap_limit *sl,
                   const struct fg_ratelimit_result *res)
{
    struct fg_conn *c = t->c;
    fg_counter_add(&sl->stats->limited, 1);
    t->log_limit = sl->limit.name;
    fg_conn_resume_read(c);
    evbuffer_drain(bufferevent_get_input(c->bev), t->req.head_len);
    t->req.n_headers = 0;
    send_refusal(t, sl, res, false);
}

void fg_stage_limit_refuse_saved(struct fg_txn *t, bool close)
{
    send_refusal(t, t->limit.over, &t->limit.over_res, close);
}

bool fg_stage_limit_over(const struct fg_txn *t)
{
    return t->limit.over != NULL;
}

/* `when limited`: a write over its limit on an offload route is queued, not refused. */
static bool queue_instead(const struct fg_txn *t)
{
    const struct fg_conf_route_offload *of = &t->route->offload;
    return of->enabled && of->when_limited && (of->methods & (1u << t->req.method));
}

static void on_redis_answer(const struct fg_ratelimit_result *res, void *arg);

/* Apply one answer; true when the stage goes on to the next limit. */
static bool apply(struct fg_txn *t, const struct fg_snap_limit *sl, const struct fg_conf_limit *cl,
                  struct fg_ratelimit_result res)
{
    if (res.source == FG_RATELIMIT_SRC_FALLBACK && cl->fail_closed) {
        /* Fail closed: no answer from Redis is a refusal, retried in a second. */
        fg_counter_add(&sl->stats->failed_closed, 1);
        res.allowed = false;
        res.retry_after_ms = 1000;
        res.remaining = 0;
    }
    if (!res.allowed && queue_instead(t)) {
        fg_counter_add(&sl->stats->limited, 1);
        t->log_limit = sl->limit.name;
        t->limit.over = sl;
        t->limit.over_res = res;
        fg_conn_resume_read(t->c);
        fg_request_after_limits(t); /* the offload stage takes it, or answers this 429 */
        return false;
    }
    if (!res.allowed) {
        refuse(t, sl, &res);
        return false;
    }
    fg_counter_add(&sl->stats->allowed, 1);
    if (t->route->limit_headers && !t->limit.fields_added) {
        /* The first limit's RateLimit fields go on the answer, whatever answers it. */
        char fields[FG_RATELIMIT_HEADERS_MAX];
        fg_txn_add_fields(t, fields, format_fields(sl, &res, fields, sizeof(fields)));
        t->limit.fields_added = true;
    }
    return true;
}

static void on_redis_answer(const struct fg_ratelimit_result *res, void *arg)
{
    struct fg_txn *t = arg;
    FG_ASSERT(t->magic == FG_TXN_MAGIC);
    t->limit.pending = NULL;
    size_t i = t->limit.next - 1;
    const struct fg_conf_limit *cl = t->route->limits[i];
    struct fg_snap_limit *sl = &t->snap->limits[cl->index];
    uint64_t waited = fg_mono_us() - t->limit.started_us;
    fg_hist_observe(&sl->stats->redis_latency, waited);
    t->limit_us += waited;
    if (apply(t, sl, cl, *res))
        decide_next(t);
}

/* Decide the limits from t->limit.next on; go on to the request's next stage when all allow. */
static void decide_next(struct fg_txn *t)
{
    while (t->limit.next < t->route->n_limits) {
        const struct fg_conf_limit *cl = t->route->limits[t->limit.next++];
        struct fg_snap_limit *sl = &t->snap->limits[cl->index];
        if (sl->stats == NULL)
            continue; /* no counters could be made: out of memory, let it pass */
        char key[FG_LIMIT_KEY_MAX];
        size_t key_len = build_key(t, cl, key);
        struct fg_ratelimit_result res;
        t->limit.started_us = fg_mono_us();
        enum fg_ratelimit_status st =
            fg_ratelimit_decide(table, sl->redis, &sl->limit, key, key_len, 1, t->limit.started_us,
                                &res, on_redis_answer, t, &t->limit.pending);
        if (st == FG_RATELIMIT_PENDING) {
            fg_txn_hold(t, &t->limit.hold, release);
            fg_reader_disable(&t->c->reader); /* t->req points into the input buffer */
            return;
        }
        if (!apply(t, sl, cl, res))
            return;
    }
    fg_conn_resume_read(t->c);
    fg_request_after_limits(t);
}

bool fg_stage_limit(struct fg_txn *t)
{
    if (t->route->n_limits == 0 || table == NULL)
        return false;
    t->limit.next = 0;
    decide_next(t);
    return true;
}
