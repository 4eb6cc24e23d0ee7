/*
 * trigger.c — when an offload route with `when` lines queues a write instead of sending
 * it to the app (offload.c asks fg_trigger_fires).
 *
 *   inflight N   the route's upstream has more than N connections in use on this worker;
 *   latency T    the upstream's p95 response time on this worker over the last finished
 *                one-second window is above T;
 *   failing      at least half of the upstream's requests in the last finished window
 *                failed (with at least FAIL_MIN of them), the current window has had
 *                FAIL_MIN failures and no success yet, or every server is marked down;
 *   limited      the write is over one of the route's limits (limit.c keeps its 429
 *                for the case the agent cannot take it).
 *
 * Windows are per worker and per upstream, like the pools: no locks, and what a worker
 * sees is what its own requests meet. The response time is from the request's first
 * byte to the response head's last one (the app's think time plus the network), taken
 * for every finished request; a window keeps a uniform sample of at most
 * FG_UPWIN_SAMPLES of them (reservoir sampling) and computes the exact p95 of the
 * sample once, when it ends. A window with fewer than P95_MIN requests says nothing
 * about latency: a lone slow request does not start queueing.
 *
 * While writes are queued the app sees fewer requests, so a window may end with none:
 * then it says "healthy" and the next write goes to the app again — a probe at most
 * once a second. The inflight and latency triggers keep firing on what the reads show.
 */
#include "server/internal.h"

#include <stdlib.h>

#define P95_MIN  20
#define FAIL_MIN 5

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Close the current window if its second is over (a gap of more than a window leaves an
 * empty last window: nothing known). */
static void roll(struct fg_upwin *u, uint64_t now_ms)
{
    if (now_ms - u->start_ms < FG_UPWIN_MS)
        return;
    bool adjacent = now_ms - u->start_ms < 2 * FG_UPWIN_MS;
    u->last_n = adjacent ? u->n : 0;
    u->last_failing = adjacent && u->n >= FAIL_MIN && 2 * (uint64_t)u->failed >= u->n;
    u->p95_us = 0;
    if (adjacent && u->kept >= P95_MIN) {
        qsort(u->lat_us, u->kept, sizeof(u->lat_us[0]), cmp_u32);
        size_t i = (size_t)((u->kept * 95 + 99) / 100); /* nearest rank, 1-based */
        u->p95_us = u->lat_us[i - 1];
    }
    u->start_ms = now_ms;
    u->n = u->failed = u->kept = 0;
}

static struct fg_upwin *window(struct fg_snap *s, size_t upstream)
{
    if (s->upwins == NULL) {
        size_t n = s->cfg->n_upstreams ? s->cfg->n_upstreams : 1;
        s->upwins = calloc(n, sizeof(*s->upwins));
        if (s->upwins == NULL)
            return NULL;
    }
    if (s->upwins[upstream] == NULL) {
        s->upwins[upstream] = calloc(1, sizeof(struct fg_upwin));
        if (s->upwins[upstream] != NULL)
            s->upwins[upstream]->start_ms = fg_mono_ms();
    }
    return s->upwins[upstream];
}

void fg_trigger_observe(struct fg_txn *t, bool ok, uint64_t us)
{
    if (t->route == NULL || t->route->upstream == NULL || !t->route->offload.triggered)
        return; /* only routes that ask pay for the window */
    struct fg_upwin *u = window(t->snap, t->route->upstream->index);
    if (u == NULL)
        return;
    roll(u, fg_mono_ms());
    u->n++;
    if (!ok) {
        u->failed++;
        return;
    }
    uint32_t v = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    if (u->kept < FG_UPWIN_SAMPLES) {
        u->lat_us[u->kept++] = v;
    } else {
        uint64_t j = fg_worker_random(t->c->w) % (u->n - u->failed);
        if (j < FG_UPWIN_SAMPLES)
            u->lat_us[j] = v;
    }
}

static bool all_down(struct fg_upstream_pool *pool)
{
    size_t n = fg_upstream_server_count(pool);
    const struct fg_upstream_stats *st = fg_upstream_pool_stats(pool);
    for (size_t i = 0; i < n; i++)
        if (fg_counter_get(&st->servers[i].down) == 0)
            return false;
    return n > 0;
}

const char *fg_trigger_fires(struct fg_txn *t)
{
    const struct fg_conf_route_offload *of = &t->route->offload;
    struct fg_worker *w = t->c->w;
    if (of->when_limited && t->of_limit != NULL) {
        fg_counter_add(&w->stats.of_trig_limited, 1);
        return "limited";
    }
    size_t ui = t->route->upstream->index;
    struct fg_upstream_pool *pool = t->snap->pools[ui];
    if (of->when_inflight &&
        fg_counter_get(&fg_upstream_pool_stats(pool)->connections_active) > of->inflight) {
        fg_counter_add(&w->stats.of_trig_inflight, 1);
        return "inflight";
    }
    if (of->latency_us == 0 && !of->when_failing)
        return NULL;
    struct fg_upwin *u = window(t->snap, ui);
    if (u == NULL)
        return NULL;
    roll(u, fg_mono_ms());
    if (of->latency_us > 0 && u->p95_us > of->latency_us) {
        fg_counter_add(&w->stats.of_trig_latency, 1);
        return "latency";
    }
    if (of->when_failing &&
        (u->last_failing || (u->failed >= FAIL_MIN && u->failed == u->n) || all_down(pool))) {
        fg_counter_add(&w->stats.of_trig_failing, 1);
        return "failing";
    }
    return NULL;
}

void fg_trigger_snap_free(struct fg_snap *s)
{
    if (s->upwins == NULL)
        return;
    for (size_t i = 0; i < s->cfg->n_upstreams; i++)
        free(s->upwins[i]);
    free(s->upwins);
    s->upwins = NULL;
}
