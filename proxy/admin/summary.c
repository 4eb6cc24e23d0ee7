/*
 * summary.c — once a second the admin thread reads the counters of /stats (the server's
 * sample, the agent's last numbers, the warm-up progress) and writes one summary: the
 * rates of the second that ended, the totals and the gauges, as one line of versioned
 * JSON. The last ten minutes of summaries are kept in a fixed ring (600, and 16 MiB at
 * most), so a new viewer of /stats/stream sees the recent past at once; each new one
 * goes to the viewers (stream.c) and to the EMF output (emf.c). A summary is written
 * once and shared: the ring and every viewer's output buffer hold references to it.
 *
 * Nothing here touches a worker: the counters are relaxed atomics the workers write and
 * this thread only reads, exactly as a /stats scrape does, once a second whatever the
 * number of viewers. The summary is self-contained (instance, time, version) so that the
 * fleet can later publish it as it is.
 */
#include "admin/internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "json/json.h"

#define TICK_MS 1000

static struct {
    struct event_base *base;
    const struct fg_admin_ops *ops;
    struct event *timer;
    struct fg_admin_point *prev, *cur; /* prev NULL until the first tick */
    struct fg_admin_summary *ring[FG_ADMIN_HISTORY];
    size_t head, n; /* the oldest slot, and how many are used */
    size_t bytes;   /* JSON bytes in the ring */
} SM;

/* ---- numbers -------------------------------------------------------------------------- */

/* cur - prev of a counter; a counter that went back (a store or a limit gone with a
 * reload, an agent restarted) counts from zero. */
static uint64_t delta(uint64_t cur, uint64_t prev)
{
    return cur >= prev ? cur - prev : cur;
}

/* A number with at most `decimals` decimals, trailing zeros dropped ("12", "0.25"). */
static void put_num(struct evbuffer *out, double v, int decimals)
{
    if (!isfinite(v))
        v = 0;
    char b[64];
    int n = snprintf(b, sizeof(b), "%.*f", decimals, v);
    if (n <= 0 || (size_t)n >= sizeof(b))
        n = snprintf(b, sizeof(b), "0");
    if (memchr(b, '.', (size_t)n) != NULL) {
        while (n > 0 && b[n - 1] == '0')
            n--;
        if (n > 0 && b[n - 1] == '.')
            n--;
    }
    if (n == 2 && b[0] == '-' && b[1] == '0')
        b[0] = '0', n = 1; /* "-0" */
    evbuffer_add(out, b, (size_t)n);
}

static void put_str(struct evbuffer *out, const char *s)
{
    fg_json_put_string(out, s, strlen(s), false);
}

static void key(struct evbuffer *out, bool *first, const char *k)
{
    evbuffer_add_printf(out, "%s\"%s\":", *first ? "" : ",", k);
    *first = false;
}

static void key_u64(struct evbuffer *out, bool *first, const char *k, uint64_t v)
{
    key(out, first, k);
    evbuffer_add_printf(out, "%" PRIu64, v);
}

static void key_num(struct evbuffer *out, bool *first, const char *k, double v, int decimals)
{
    key(out, first, k);
    put_num(out, v, decimals);
}

double fg_admin_hist_quantile_ms(const uint64_t bucket[FG_HIST_BUCKETS], double q)
{
    uint64_t total = 0;
    for (size_t i = 0; i < FG_HIST_BUCKETS; i++)
        total += bucket[i];
    if (total == 0)
        return 0;
    double rank = q * (double)total, seen = 0;
    for (size_t i = 0; i < FG_HIST_BUCKETS; i++) {
        if (bucket[i] == 0 || seen + (double)bucket[i] < rank) {
            seen += (double)bucket[i];
            continue;
        }
        double lo = i > 0 ? (double)fg_hist_bounds_us[i - 1] : 0;
        if (i + 1 == FG_HIST_BUCKETS)
            return lo / 1000; /* the +Inf bucket: its lower bound is all we know */
        double hi = (double)fg_hist_bounds_us[i];
        double frac = (rank - seen) / (double)bucket[i];
        return (lo + (hi - lo) * frac) / 1000;
    }
    return (double)fg_hist_bounds_us[FG_HIST_BUCKETS - 2] / 1000;
}

/* ---- the summary ---------------------------------------------------------------------------- */

/* What a request ended as: one set of counters, from the caches, the limits, the
 * offload and the responses (the same sums as /stats). */
struct outcomes {
    uint64_t requests, hit, miss, stale, pass, limited, offloaded, r4xx, r5xx;
};

static void outcomes_of(const struct fg_admin_sample *s, struct outcomes *o)
{
    o->requests = s->requests;
    o->hit = s->cache_hits + s->cache_coalesced; /* as /stats' hit_ratio counts them */
    o->miss = s->cache_misses;
    o->stale = s->cache_stale;
    o->pass = s->cache_passes;
    o->limited = 0;
    for (size_t i = 0; i < s->n_limits; i++)
        o->limited += s->limits[i].limited;
    o->offloaded = s->offload_queued + s->offload_duplicates;
    o->r4xx = s->responses[4];
    o->r5xx = s->responses[5];
}

static const struct fg_admin_sample_upstream *upstream_named(const struct fg_admin_sample *s,
                                                             const char *name)
{
    for (size_t i = 0; s != NULL && i < s->n_upstreams; i++)
        if (strcmp(s->upstreams[i].name, name) == 0)
            return &s->upstreams[i];
    return NULL;
}

static const struct fg_admin_sample_limit *limit_named(const struct fg_admin_sample *s,
                                                       const char *name)
{
    for (size_t i = 0; s != NULL && i < s->n_limits; i++)
        if (strcmp(s->limits[i].name, name) == 0)
            return &s->limits[i];
    return NULL;
}

static void upstreams_json(struct evbuffer *out, const struct fg_admin_sample *prev,
                           const struct fg_admin_sample *cur, double dt)
{
    evbuffer_add(out, "\"upstreams\":[", 13);
    for (size_t i = 0; i < cur->n_upstreams; i++) {
        const struct fg_admin_sample_upstream *u = &cur->upstreams[i];
        const struct fg_admin_sample_upstream *p = upstream_named(prev, u->name);
        bool f = true;
        evbuffer_add(out, i ? ",{" : "{", i ? 2 : 1);
        key(out, &f, "name");
        put_str(out, u->name);
        key_num(out, &f, "rate", p ? (double)delta(u->requests, p->requests) / dt : 0, 1);
        key_num(out, &f, "errors", p ? (double)delta(u->errors, p->errors) / dt : 0, 1);
        key_num(out, &f, "retries", p ? (double)delta(u->retries, p->retries) / dt : 0, 1);
        key_u64(out, &f, "requests", u->requests);
        key_u64(out, &f, "errors_total", u->errors);
        key_u64(out, &f, "active", u->active);
        key_u64(out, &f, "idle", u->idle);
        key_u64(out, &f, "pool_max", u->pool_max);
        key(out, &f, "servers");
        evbuffer_add(out, "[", 1);
        for (size_t k = 0; k < u->n_servers; k++) {
            const struct fg_admin_sample_server *sv = &u->servers[k];
            const struct fg_admin_sample_server *ps = NULL;
            for (size_t m = 0; p != NULL && m < p->n_servers && ps == NULL; m++)
                if (strcmp(p->servers[m].address, sv->address) == 0)
                    ps = &p->servers[m];
            bool g = true;
            evbuffer_add(out, k ? ",{" : "{", k ? 2 : 1);
            key(out, &g, "address");
            put_str(out, sv->address);
            key(out, &g, "healthy");
            evbuffer_add_printf(out, "%s", sv->healthy ? "true" : "false");
            key_num(out, &g, "rate", ps ? (double)delta(sv->requests, ps->requests) / dt : 0, 1);
            key_u64(out, &g, "fails", sv->fails);
            evbuffer_add(out, "}", 1);
        }
        evbuffer_add(out, "]}", 2);
    }
    evbuffer_add(out, "]", 1);
}

/* The busiest limits first: refused in the interval, then refused since the start. */
struct limit_rank {
    const struct fg_admin_sample_limit *l;
    uint64_t d_limited, d_allowed;
};

static int limit_cmp(const void *a, const void *b)
{
    const struct limit_rank *x = a, *y = b;
    if (x->d_limited != y->d_limited)
        return x->d_limited > y->d_limited ? -1 : 1;
    if (x->l->limited != y->l->limited)
        return x->l->limited > y->l->limited ? -1 : 1;
    if (x->d_allowed != y->d_allowed)
        return x->d_allowed > y->d_allowed ? -1 : 1;
    return strcmp(x->l->name, y->l->name);
}

static void limits_json(struct evbuffer *out, const struct fg_admin_sample *prev,
                        const struct fg_admin_sample *cur, double dt)
{
    struct limit_rank r[FG_ADMIN_SAMPLE_LIMITS];
    size_t n = cur->n_limits < FG_ADMIN_SAMPLE_LIMITS ? cur->n_limits : FG_ADMIN_SAMPLE_LIMITS;
    for (size_t i = 0; i < n; i++) {
        const struct fg_admin_sample_limit *p = limit_named(prev, cur->limits[i].name);
        r[i].l = &cur->limits[i];
        r[i].d_limited = p ? delta(cur->limits[i].limited, p->limited) : 0;
        r[i].d_allowed = p ? delta(cur->limits[i].allowed, p->allowed) : 0;
    }
    qsort(r, n, sizeof(r[0]), limit_cmp);
    evbuffer_add(out, "\"limits\":[", 10);
    for (size_t i = 0; i < n && i < FG_ADMIN_TOP_LIMITS; i++) {
        bool f = true;
        evbuffer_add(out, i ? ",{" : "{", i ? 2 : 1);
        key(out, &f, "name");
        put_str(out, r[i].l->name);
        key_num(out, &f, "allowed", (double)r[i].d_allowed / dt, 1);
        key_num(out, &f, "limited", (double)r[i].d_limited / dt, 1);
        key_u64(out, &f, "limited_total", r[i].l->limited);
        key_u64(out, &f, "allowed_total", r[i].l->allowed);
        evbuffer_add(out, "}", 1);
    }
    evbuffer_add(out, "]", 1);
}

static const struct fg_admin_sample_room *room_named(const struct fg_admin_sample *s,
                                                     const char *name)
{
    for (size_t i = 0; s != NULL && i < s->n_rooms; i++)
        if (strcmp(s->rooms[i].name, name) == 0)
            return &s->rooms[i];
    return NULL;
}

/* The waiting rooms: where the queue stands, and admissions per second. */
static void rooms_json(struct evbuffer *out, const struct fg_admin_sample *prev,
                       const struct fg_admin_sample *cur, double dt)
{
    evbuffer_add(out, "\"rooms\":[", 9);
    for (size_t i = 0; i < cur->n_rooms && i < FG_ADMIN_SAMPLE_ROOMS; i++) {
        const struct fg_admin_sample_room *r = &cur->rooms[i];
        const struct fg_admin_sample_room *p = room_named(prev, r->name);
        bool f = true;
        evbuffer_add(out, i ? ",{" : "{", i ? 2 : 1);
        key(out, &f, "name");
        put_str(out, r->name);
        key_u64(out, &f, "issued", r->issued);
        key_u64(out, &f, "serving", r->serving);
        key_u64(out, &f, "waiting", r->waiting);
        key_u64(out, &f, "active", r->active);
        key_u64(out, &f, "eta_s", r->eta_s);
        key_num(out, &f, "rate", (double)r->rate_milli / 1000.0, 3);
        key_num(out, &f, "admitted", p ? (double)delta(r->admitted, p->admitted) / dt : 0.0, 1);
        key_u64(out, &f, "admitted_total", r->admitted);
        key(out, &f, "decision");
        put_str(out, r->decision);
        evbuffer_add_printf(out, ",\"fallback\":%s,\"paused\":%s,\"on\":%s}",
                            r->fallback ? "true" : "false", r->paused ? "true" : "false",
                            r->on ? "true" : "false");
    }
    evbuffer_add(out, "]", 1);
}

/* The busiest routes first: the most requests in the interval, then since the start. */
struct route_rank {
    const struct fg_admin_sample_route *r;
    uint64_t d_req, d_4xx, d_5xx;
    uint64_t lat[FG_HIST_BUCKETS];
};

static int route_cmp(const void *a, const void *b)
{
    const struct route_rank *x = a, *y = b;
    if (x->d_req != y->d_req)
        return x->d_req > y->d_req ? -1 : 1;
    if (x->r->requests != y->r->requests)
        return x->r->requests > y->r->requests ? -1 : 1;
    return strcmp(x->r->name, y->r->name);
}

static void routes_json(struct evbuffer *out, const struct fg_admin_sample *prev,
                        const struct fg_admin_sample *cur, double dt)
{
    struct route_rank *rk = calloc(FG_ADMIN_SAMPLE_ROUTES, sizeof(*rk));
    size_t n = cur->n_routes < FG_ADMIN_SAMPLE_ROUTES ? cur->n_routes : FG_ADMIN_SAMPLE_ROUTES;
    evbuffer_add(out, "\"routes\":[", 10);
    if (rk == NULL) {
        evbuffer_add(out, "]", 1);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const struct fg_admin_sample_route *r = &cur->routes[i], *p = NULL;
        for (size_t k = 0; prev != NULL && k < prev->n_routes && p == NULL; k++)
            if (strcmp(prev->routes[k].name, r->name) == 0)
                p = &prev->routes[k];
        rk[i].r = r;
        rk[i].d_req = p ? delta(r->requests, p->requests) : 0;
        rk[i].d_4xx = p ? delta(r->r4xx, p->r4xx) : 0;
        rk[i].d_5xx = p ? delta(r->r5xx, p->r5xx) : 0;
        for (size_t b = 0; b < FG_HIST_BUCKETS; b++)
            rk[i].lat[b] = p ? delta(r->latency[b], p->latency[b]) : 0;
    }
    qsort(rk, n, sizeof(rk[0]), route_cmp);
    for (size_t i = 0; i < n && i < FG_ADMIN_TOP_ROUTES; i++) {
        bool f = true;
        evbuffer_add(out, i ? ",{" : "{", i ? 2 : 1);
        key(out, &f, "name");
        put_str(out, rk[i].r->name);
        key_num(out, &f, "rate", (double)rk[i].d_req / dt, 1);
        key_num(out, &f, "4xx", (double)rk[i].d_4xx / dt, 1);
        key_num(out, &f, "5xx", (double)rk[i].d_5xx / dt, 1);
        key_num(out, &f, "p99_ms", fg_admin_hist_quantile_ms(rk[i].lat, 0.99), 3);
        key_u64(out, &f, "requests", rk[i].r->requests);
        evbuffer_add(out, "}", 1);
    }
    evbuffer_add(out, "]", 1);
    free(rk);
}

static void offload_json(struct evbuffer *out, const struct fg_admin_point *prev,
                         const struct fg_admin_point *cur, double dt)
{
    const struct fg_admin_sample *s = &cur->s, *p = prev ? &prev->s : NULL;
    bool f = true;
    evbuffer_add(out, "\"offload\":{\"rate\":{", 19);
    uint64_t queued = s->offload_queued + s->offload_duplicates;
    uint64_t fallback = s->offload_fallback_pass + s->offload_fallback_reject;
    key_num(out, &f, "queued",
            p ? (double)delta(queued, p->offload_queued + p->offload_duplicates) / dt : 0, 1);
    key_num(out, &f, "fallback",
            p ? (double)delta(fallback, p->offload_fallback_pass + p->offload_fallback_reject) / dt
              : 0,
            1);
    key_num(out, &f, "agent_errors",
            p ? (double)delta(s->offload_agent_errors, p->offload_agent_errors) / dt : 0, 1);
    evbuffer_add_printf(out,
                        "},\"queued_total\":%" PRIu64 ",\"fallback_total\":%" PRIu64
                        ",\"in_flight\":%" PRIu64 ",\"agent\":",
                        queued, fallback, s->offload_in_flight);
    const struct fg_admin_agent_numbers *a = &cur->agent, *pa = prev ? &prev->agent : NULL;
    if (!a->configured) {
        evbuffer_add(out, "null}", 5);
        return;
    }
    if (!a->up) {
        evbuffer_add(out, "{\"up\":false}}", 13);
        return;
    }
    bool rates = pa != NULL && pa->up;
    f = true;
    evbuffer_add(out, "{", 1);
    key(out, &f, "up");
    evbuffer_add(out, "true", 4);
    key_u64(out, &f, "spool_depth", a->spool_depth);
    key_u64(out, &f, "spool_bytes", a->spool_bytes);
    key_u64(out, &f, "oldest_age_ms", a->oldest_age_ms);
    key_num(out, &f, "replay_rate", rates ? (double)delta(a->replay_ok, pa->replay_ok) / dt : 0, 1);
    key_num(out, &f, "replay_failed_rate",
            rates ? (double)delta(a->replay_failed + a->replay_rejected,
                                  pa->replay_failed + pa->replay_rejected) /
                        dt
                  : 0,
            1);
    key_num(out, &f, "sqs_sent_rate", rates ? (double)delta(a->sqs_sent, pa->sqs_sent) / dt : 0, 1);
    key_num(out, &f, "sqs_failed_rate",
            rates ? (double)delta(a->sqs_failed, pa->sqs_failed) / dt : 0, 1);
    key_u64(out, &f, "replayed", a->replay_ok);
    key_u64(out, &f, "sqs_sent", a->sqs_sent);
    key_u64(out, &f, "sqs_failed", a->sqs_failed);
    evbuffer_add(out, "}}", 2);
}

static void tls_json(struct evbuffer *out, const struct fg_admin_sample *p,
                     const struct fg_admin_sample *s, double dt)
{
    bool f = true;
    evbuffer_add(out, "\"tls\":{\"rate\":{", 15);
    key_num(out, &f, "handshakes", p ? (double)delta(s->tls_handshakes, p->tls_handshakes) / dt : 0,
            1);
    key_num(out, &f, "resumptions",
            p ? (double)delta(s->tls_resumptions, p->tls_resumptions) / dt : 0, 1);
    key_num(out, &f, "failures", p ? (double)delta(s->tls_failures, p->tls_failures) / dt : 0, 1);
    key_num(out, &f, "upstream_handshakes",
            p ? (double)delta(s->tls_upstream_handshakes, p->tls_upstream_handshakes) / dt : 0, 1);
    evbuffer_add_printf(out,
                        "},\"total\":{\"handshakes\":%" PRIu64 ",\"resumptions\":%" PRIu64
                        ",\"failures\":%" PRIu64 ",\"upstream_handshakes\":%" PRIu64
                        ",\"upstream_failures\":%" PRIu64 "}}",
                        s->tls_handshakes, s->tls_resumptions, s->tls_failures,
                        s->tls_upstream_handshakes, s->tls_upstream_failures);
}

static void ratio(struct evbuffer *out, uint64_t num, uint64_t den)
{
    if (den == 0)
        evbuffer_add(out, "null", 4);
    else
        put_num(out, (double)num / (double)den, 4);
}

void fg_admin_summary_write(struct evbuffer *out, const struct fg_admin_point *prev,
                            const struct fg_admin_point *cur, const char *instance)
{
    const struct fg_admin_sample *s = &cur->s, *p = prev ? &prev->s : NULL;
    uint64_t interval_ms = p && s->mono_ms > p->mono_ms ? s->mono_ms - p->mono_ms : 0;
    double dt = interval_ms ? (double)interval_ms / 1000 : 1;
    struct outcomes o, po;
    outcomes_of(s, &o);
    if (p != NULL)
        outcomes_of(p, &po);
    else
        po = o; /* the first summary: no rates yet */

    evbuffer_add_printf(out, "{\"v\":%d,\"instance\":", FG_ADMIN_SUMMARY_VERSION);
    put_str(out, instance);
    evbuffer_add_printf(out,
                        ",\"t\":%" PRId64 ",\"interval_ms\":%" PRIu64
                        ",\"version\":\"%s\",\"generation\":%" PRIu64 ",\"uptime_s\":%" PRIu64
                        ",\"draining\":%s,\"workers\":%u,",
                        s->wall_ms, interval_ms, PACKAGE_VERSION, s->generation, s->uptime_s,
                        s->draining ? "true" : "false", s->workers);

    static const char *const names[] = {"requests", "hit",       "miss", "stale", "pass",
                                        "limited",  "offloaded", "4xx",  "5xx"};
    const uint64_t now[] = {o.requests, o.hit,       o.miss, o.stale, o.pass,
                            o.limited,  o.offloaded, o.r4xx, o.r5xx};
    const uint64_t then[] = {po.requests, po.hit,       po.miss, po.stale, po.pass,
                             po.limited,  po.offloaded, po.r4xx, po.r5xx};
    bool f = true;
    evbuffer_add(out, "\"rate\":{", 8);
    for (size_t i = 0; i < FG_ARRAY_LEN(names); i++)
        key_num(out, &f, names[i], (double)delta(now[i], then[i]) / dt, 1);
    uint64_t app = 0, papp = 0;
    for (size_t i = 0; i < s->n_upstreams; i++) {
        const struct fg_admin_sample_upstream *pu = upstream_named(p, s->upstreams[i].name);
        app += s->upstreams[i].requests;
        papp += pu ? pu->requests : s->upstreams[i].requests;
    }
    key_num(out, &f, "app", (double)delta(app, papp) / dt, 1);
    key_num(out, &f, "bytes_in", p ? (double)delta(s->bytes_in, p->bytes_in) / dt : 0, 0);
    key_num(out, &f, "bytes_out", p ? (double)delta(s->bytes_out, p->bytes_out) / dt : 0, 0);
    f = true;
    evbuffer_add(out, "},\"total\":{", 11);
    for (size_t i = 0; i < FG_ARRAY_LEN(names); i++)
        key_u64(out, &f, names[i], now[i]);
    key_u64(out, &f, "app", app);

    uint64_t looked = o.hit + o.miss + o.stale, plooked = po.hit + po.miss + po.stale;
    evbuffer_add(out, "},\"hit_ratio\":{\"interval\":", 26);
    ratio(out, delta(o.hit + o.stale, po.hit + po.stale), delta(looked, plooked));
    evbuffer_add(out, ",\"total\":", 9);
    ratio(out, o.hit + o.stale, looked);

    uint64_t lat[FG_HIST_BUCKETS], count = 0;
    for (size_t k = 0; k < FG_HIST_BUCKETS; k++) {
        lat[k] = p ? delta(s->latency[k], p->latency[k]) : 0;
        count += lat[k];
    }
    f = true;
    evbuffer_add(out, "},\"latency_ms\":{", 16);
    key_u64(out, &f, "count", count);
    key_num(out, &f, "p50", fg_admin_hist_quantile_ms(lat, 0.50), 3);
    key_num(out, &f, "p90", fg_admin_hist_quantile_ms(lat, 0.90), 3);
    key_num(out, &f, "p99", fg_admin_hist_quantile_ms(lat, 0.99), 3);
    /* the app's share: from the request sent to its response head */
    uint64_t head[FG_HIST_BUCKETS], head_count = 0;
    for (size_t k = 0; k < FG_HIST_BUCKETS; k++) {
        head[k] = p ? delta(s->app_head[k], p->app_head[k]) : 0;
        head_count += head[k];
    }
    f = true;
    evbuffer_add(out, "},\"app_ms\":{", 12);
    key_u64(out, &f, "count", head_count);
    key_num(out, &f, "p50", fg_admin_hist_quantile_ms(head, 0.50), 3);
    key_num(out, &f, "p90", fg_admin_hist_quantile_ms(head, 0.90), 3);
    key_num(out, &f, "p99", fg_admin_hist_quantile_ms(head, 0.99), 3);
    evbuffer_add_printf(out,
                        "},\"connections\":{\"active\":%" PRIu64 ",\"idle\":%" PRIu64
                        ",\"requests_active\":%" PRIu64 "},\"cache\":{\"entries\":%" PRIu64
                        ",\"bytes\":%" PRIu64 "},",
                        s->connections_active, s->connections_idle, s->requests_active,
                        s->cache_entries, s->cache_bytes);
    upstreams_json(out, p, s, dt);
    evbuffer_add(out, ",", 1);
    limits_json(out, p, s, dt);
    evbuffer_add(out, ",", 1);
    rooms_json(out, p, s, dt);
    evbuffer_add(out, ",", 1);
    routes_json(out, p, s, dt);
    evbuffer_add(out, ",", 1);
    offload_json(out, prev, cur, dt);
    evbuffer_add(out, ",", 1);
    tls_json(out, p, s, dt);
    const struct fg_admin_warm_progress *w = &cur->warm;
    evbuffer_add_printf(out,
                        ",\"warm\":{\"jobs\":%" PRIu64 ",\"queued\":%" PRIu64
                        ",\"in_flight\":%" PRIu64 ",\"done\":%" PRIu64 ",\"failed\":%" PRIu64 "}}",
                        w->jobs, w->queued, w->in_flight, w->done, w->failed);
}

/* ---- the tick and the history ------------------------------------------------------------- */

struct fg_admin_summary *fg_admin_summary_ref(struct fg_admin_summary *s)
{
    s->refs++;
    return s;
}

void fg_admin_summary_unref(struct fg_admin_summary *s)
{
    if (s != NULL && --s->refs == 0)
        free(s);
}

static void summary_sent_cb(const void *data, size_t len, void *arg)
{
    (void)data, (void)len;
    fg_admin_summary_unref(arg);
}

void fg_admin_summary_add(struct evbuffer *out, struct fg_admin_summary *s)
{
    fg_admin_summary_ref(s);
    if (evbuffer_add_reference(out, s->json, s->len, summary_sent_cb, s) != 0)
        fg_admin_summary_unref(s);
}

static void ring_drop_oldest(void)
{
    struct fg_admin_summary *old = SM.ring[SM.head];
    SM.bytes -= old->len;
    fg_admin_summary_unref(old); /* viewers still sending it keep it */
    SM.head = (SM.head + 1) % FG_ADMIN_HISTORY;
    SM.n--;
}

static void ring_push(struct fg_admin_summary *s)
{
    while (SM.n > 0 && (SM.n == FG_ADMIN_HISTORY || SM.bytes + s->len > FG_ADMIN_HISTORY_BYTES))
        ring_drop_oldest();
    SM.ring[(SM.head + SM.n) % FG_ADMIN_HISTORY] = fg_admin_summary_ref(s);
    SM.n++;
    SM.bytes += s->len;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    struct fg_admin_point *pt = SM.cur;
    memset(pt, 0, sizeof(*pt));
    SM.ops->sample(&pt->s);
    fg_admin_agentstat_numbers(&pt->agent);
    fg_admin_warm_progress(&pt->warm);

    struct evbuffer *b = evbuffer_new();
    if (b != NULL) {
        fg_admin_summary_write(b, SM.prev, pt, fg_admin_instance());
        size_t len = evbuffer_get_length(b);
        struct fg_admin_summary *s = malloc(sizeof(*s) + len + 1);
        if (s != NULL) {
            s->refs = 1;
            s->t_ms = pt->s.wall_ms;
            s->len = len;
            evbuffer_remove(b, s->json, len);
            s->json[len] = '\0';
            ring_push(s);
            fg_admin_stream_publish(s);
            fg_admin_summary_unref(s);
        }
        evbuffer_free(b);
    }
    fg_admin_emf_tick(SM.base, pt);

    /* This point is the next one's prev; the old prev (or a new one) is filled next. */
    struct fg_admin_point *spare = SM.prev != NULL ? SM.prev : malloc(sizeof(*spare));
    if (spare == NULL)
        return; /* out of memory: no rates until there is some */
    SM.prev = pt;
    SM.cur = spare;
}

bool fg_admin_summary_start(struct event_base *base, const struct fg_admin_ops *ops)
{
    SM.base = base;
    SM.ops = ops;
    SM.cur = calloc(1, sizeof(*SM.cur));
    SM.timer = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
    if (SM.cur == NULL || SM.timer == NULL) {
        fg_admin_summary_stop();
        return false;
    }
    struct timeval tv = {TICK_MS / 1000, (TICK_MS % 1000) * 1000};
    event_add(SM.timer, &tv);
    return true;
}

void fg_admin_summary_stop(void)
{
    if (SM.timer != NULL)
        event_free(SM.timer);
    SM.timer = NULL;
    free(SM.cur);
    free(SM.prev);
    SM.cur = SM.prev = NULL;
    while (SM.n > 0)
        ring_drop_oldest();
    SM.head = SM.bytes = 0;
}

void fg_admin_summary_history(int64_t after_ms, void (*fn)(struct fg_admin_summary *s, void *arg),
                              void *arg)
{
    for (size_t i = 0; i < SM.n; i++) {
        struct fg_admin_summary *s = SM.ring[(SM.head + i) % FG_ADMIN_HISTORY];
        if (s->t_ms > after_ms)
            fn(s, arg);
    }
}

size_t fg_admin_summary_history_bytes(void)
{
    return SM.bytes;
}
