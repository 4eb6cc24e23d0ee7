/*
 * routestats.c — counters per route, for the dashboard's busiest routes and the EMF
 * records' Route dimension: requests, 4xx, 5xx and the response time's histogram.
 *
 * A route is known by its name, its host and prefix as written ("/api",
 * "shop.example.com/checkout"), so its numbers go on across reloads like the limits'
 * (a small registry by name, one set of counters per worker: each has a single writer,
 * the admin thread sums them). Routes that differ only by their methods share a name and
 * their counters. The registry is bounded; routes past it are not counted apart.
 */
#include "server/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FG_ROUTE_REGISTRY_MAX 256

struct route_stats {
    char name[FG_ROUTE_NAME_MAX];
    struct fg_route_worker_stats *w; /* [n_workers] */
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct route_stats registry[FG_ROUTE_REGISTRY_MAX];
static size_t registry_n;
static size_t n_workers;

void fg_route_stats_global_init(size_t workers)
{
    n_workers = workers;
}

void fg_route_name(const struct fg_conf_route *r, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s", r->host ? r->host : "", r->prefix);
}

static struct fg_route_worker_stats *stats_of(const char *name, unsigned worker)
{
    struct fg_route_worker_stats *found = NULL;
    pthread_mutex_lock(&registry_lock);
    for (size_t i = 0; i < registry_n && found == NULL; i++)
        if (strcmp(registry[i].name, name) == 0)
            found = &registry[i].w[worker];
    if (found == NULL && registry_n < FG_ROUTE_REGISTRY_MAX && worker < n_workers) {
        struct route_stats *r = &registry[registry_n];
        r->w = calloc(n_workers, sizeof(*r->w));
        if (r->w != NULL) {
            snprintf(r->name, sizeof(r->name), "%s", name);
            registry_n++;
            found = &r->w[worker];
        }
    }
    pthread_mutex_unlock(&registry_lock);
    return found;
}

bool fg_route_stats_snap_init(struct fg_worker *w, struct fg_snap *s)
{
    const struct fg_config *cfg = s->cfg;
    s->routes = calloc(cfg->n_all_routes ? cfg->n_all_routes : 1, sizeof(*s->routes));
    if (s->routes == NULL)
        return false;
    for (size_t i = 0; i < cfg->n_servers; i++)
        for (size_t k = 0; k < cfg->servers[i].n_routes; k++) {
            const struct fg_conf_route *r = &cfg->servers[i].routes[k];
            char name[FG_ROUTE_NAME_MAX];
            fg_route_name(r, name, sizeof(name));
            s->routes[r->id] = stats_of(name, w->id); /* NULL: not counted apart */
        }
    return true;
}

void fg_route_stats_snap_free(struct fg_snap *s)
{
    free(s->routes);
    s->routes = NULL;
}

void fg_route_stats_observe(const struct fg_txn *t, uint64_t dur_us)
{
    if (t->route == NULL || t->snap == NULL || t->snap->routes == NULL)
        return;
    struct fg_route_worker_stats *rs = t->snap->routes[t->route->id];
    if (rs == NULL)
        return;
    fg_counter_add(&rs->requests, 1);
    if (t->status >= 400 && t->status < 500)
        fg_counter_add(&rs->r4xx, 1);
    else if (t->status >= 500)
        fg_counter_add(&rs->r5xx, 1);
    fg_hist_observe(&rs->latency, dur_us);
}

size_t fg_route_stats_count_names(void)
{
    pthread_mutex_lock(&registry_lock);
    size_t n = registry_n;
    pthread_mutex_unlock(&registry_lock);
    return n;
}

void fg_route_stats_sum(size_t i, char *name, size_t name_cap, struct fg_route_sum *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&registry_lock);
    if (i < registry_n) {
        snprintf(name, name_cap, "%s", registry[i].name);
        for (size_t k = 0; k < n_workers; k++) {
            const struct fg_route_worker_stats *s = &registry[i].w[k];
            out->requests += fg_counter_get(&s->requests);
            out->r4xx += fg_counter_get(&s->r4xx);
            out->r5xx += fg_counter_get(&s->r5xx);
            for (size_t b = 0; b < FG_HIST_BUCKETS; b++)
                out->latency[b] += fg_counter_get(&s->latency.bucket[b]);
            out->latency_sum_us += fg_counter_get(&s->latency.sum_us);
        }
    } else {
        name[0] = '\0';
    }
    pthread_mutex_unlock(&registry_lock);
}
