/*
 * trigger.c — when an offload route with `when` lines queues a write instead of sending
 * it to the app (server/stage_offload.c asks fg_offload_trigger).
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
#include "offload/offload.h"

#include <stdlib.h>

#define P95_MIN   20
#define FAIL_MIN  5
#define SAMPLES   1024 /* response times kept per window (a uniform sample) */
#define WINDOW_MS 1000

struct fg_offload_window {
    uint64_t start_ms;  /* the current window's start */
    uint32_t n, failed; /* requests finished in the current window, failures among them */
    uint32_t kept;      /* samples kept of the n (reservoir) */
    uint64_t p95_us;    /* of the last finished window; 0: too few requests to tell */
    uint32_t last_n;    /* requests of the last finished window */
    bool last_failing;  /* at least half of the last finished window's requests failed */
    uint32_t lat_us[SAMPLES];
};

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Close the current window if its second is over (a gap of more than a window leaves an
 * empty last window: nothing known). */
static void roll(struct fg_offload_window *u, uint64_t now_ms)
{
    if (now_ms - u->start_ms < WINDOW_MS)
        return;
    bool adjacent = now_ms - u->start_ms < 2 * WINDOW_MS;
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

struct fg_offload_window *fg_offload_window_new(uint64_t now_ms)
{
    struct fg_offload_window *w = calloc(1, sizeof(*w));
    if (w != NULL)
        w->start_ms = now_ms;
    return w;
}

void fg_offload_window_free(struct fg_offload_window *w)
{
    free(w);
}

void fg_offload_window_observe(struct fg_offload_window *u, bool ok, uint64_t us, uint64_t now_ms,
                               uint64_t random)
{
    roll(u, now_ms);
    u->n++;
    if (!ok) {
        u->failed++;
        return;
    }
    uint32_t v = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    if (u->kept < SAMPLES) {
        u->lat_us[u->kept++] = v;
    } else {
        uint64_t j = random % (u->n - u->failed);
        if (j < SAMPLES)
            u->lat_us[j] = v;
    }
}

const char *fg_offload_trigger(const struct fg_conf_route_offload *of, struct fg_offload_window *u,
                               const struct fg_offload_signals *s, uint64_t now_ms,
                               struct fg_offload_stats *st)
{
    if (of->when_limited && s->limited) {
        fg_counter_add(&st->trig_limited, 1);
        return "limited";
    }
    if (of->when_inflight && s->inflight > of->inflight) {
        fg_counter_add(&st->trig_inflight, 1);
        return "inflight";
    }
    if ((of->latency_us == 0 && !of->when_failing) || u == NULL)
        return NULL;
    roll(u, now_ms);
    if (of->latency_us > 0 && u->p95_us > of->latency_us) {
        fg_counter_add(&st->trig_latency, 1);
        return "latency";
    }
    if (of->when_failing &&
        (u->last_failing || (u->failed >= FAIL_MIN && u->failed == u->n) || s->all_down)) {
        fg_counter_add(&st->trig_failing, 1);
        return "failing";
    }
    return NULL;
}
