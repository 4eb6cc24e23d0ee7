/*
 * warm.c — the fleet's hottest pages and the warm start (fleet.h).
 *
 * The record: a sorted set fg:fleet:{channel}:hot, member "<coding> <key>" (the coding a
 * client negotiated: a warm start asks for the same variant), score the requests seen.
 * Workers add to it without waiting (every local miss by 1, one local hit in 16 by 16,
 * so a hit costs no Redis command in the common case). The bus thread keeps it bounded
 * and decayed: every 10 s it trims it to hot_keys members, and once a minute fleet-wide
 * (whoever takes the minute's lock) halves every score, so the record follows what is
 * hot now, not what was hot yesterday.
 *
 * The warm start: a starting instance (warm_start > 0) reads the hottest warm_start
 * members once its Redis is ready and asks its own traffic listener for each page,
 * warm_concurrency at a time — the client path, so a local miss asks the shared tier
 * first and the app only for what the fleet does not hold — while /healthz and health
 * routes answer 503 "warming". It ends when every page was answered or at warm_timeout,
 * whichever comes first; Redis never ready ends it at warm_timeout too.
 */
#include "fleet/internal.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "core/core.h"
#include "httpc/httpc.h"

#define HOT_TRIM_MS  10000
#define HOT_DECAY_MS 60000
#define HOT_SAMPLE   16 /* one hit in this many is recorded, with this weight */

/* KEYS: the record, the decay lock; ARGV: the lock's PX, hot_keys. */
static const char MAINTAIN_LUA[] =
    "if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then\n"
    "  redis.call('ZUNIONSTORE', KEYS[1], 1, KEYS[1], 'WEIGHTS', '0.5')\n"
    "end\n"
    "redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[2]) + 1))\n"
    "return redis.call('ZCARD', KEYS[1])\n";

static struct {
    /* the bus thread's */
    struct fg_redis_script maintain;
    struct event *timer;
    char hot[FG_CONF_NAME_MAX + 32], decay[FG_CONF_NAME_MAX + 32];
    uint64_t hot_keys, warm_start, warm_timeout_ms, concurrency;
    bool pending; /* a warm start waits for Redis */
    struct fg_addr target;
    struct fg_httpc *httpc;
    struct event *deadline;
    char **pages; /* "<coding> <key>" */
    size_t n_pages, next, running;
    uint64_t started_ms;

    _Atomic bool warming;
    _Atomic uint64_t asked, done, failed, in_flight, duration_ms;
    _Atomic int state; /* 0 off, 1 warming, 2 done */
} W;

/* ---- recording (workers) -------------------------------------------------------------- */

void fg_fleet_hot_key_name(const char *channel, char *out, size_t cap)
{
    snprintf(out, cap, "fg:fleet:{%s}:hot", channel);
}

/* ---- the record's upkeep (bus thread) ------------------------------------------------- */

static void ignore(enum fg_redis_status st, const struct redisReply *r, void *arg)
{
    (void)st;
    (void)r;
    (void)arg;
}

static void maintain_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    struct fg_redis *redis = fg_fleet_bus_redis();
    if (redis != NULL && fg_redis_ready(redis)) {
        char px[24], n[24];
        snprintf(px, sizeof(px), "%d", HOT_DECAY_MS - 1000);
        snprintf(n, sizeof(n), "%" PRIu64, W.hot_keys);
        const char *keys[] = {W.hot, W.decay};
        const char *args[] = {px, n};
        (void)fg_redis_eval(redis, &W.maintain, 2, keys, NULL, 2, args, NULL, 1000, ignore, NULL);
    }
    struct timeval tv = {.tv_sec = HOT_TRIM_MS / 1000};
    evtimer_add(W.timer, &tv);
}

/* ---- the warm start (bus thread) ------------------------------------------------------ */

static void warm_end(const char *why);

static void warm_more(void);

static void page_done(const struct fg_httpc_result *res, void *arg)
{
    (void)arg;
    W.running--;
    atomic_fetch_sub(&W.in_flight, 1);
    if (res->status >= 200 && res->status < 400)
        atomic_fetch_add(&W.done, 1);
    else
        atomic_fetch_add(&W.failed, 1);
    warm_more();
}

static void warm_more(void)
{
    while (atomic_load(&W.warming) && W.running < W.concurrency && W.next < W.n_pages) {
        const char *m = W.pages[W.next++];
        const char *sp = strchr(m, ' ');
        const char *key = sp ? sp + 1 : m;
        const char *slash = strchr(key, '/');
        if (slash == NULL || slash == key) {
            atomic_fetch_add(&W.failed, 1);
            continue;
        }
        struct evbuffer *b = evbuffer_new();
        if (b == NULL)
            break;
        evbuffer_add_printf(b, "GET %s HTTP/1.1\r\nHost: %.*s\r\n", slash, (int)(slash - key), key);
        if (sp != NULL && sp != m)
            evbuffer_add_printf(b, "Accept-Encoding: %.*s\r\n", (int)(sp - m), m);
        evbuffer_add_printf(b, "User-Agent: flashgate-warm-start\r\n\r\n");
        uint64_t spent = fg_mono_ms() - W.started_ms;
        uint64_t left = W.warm_timeout_ms > spent ? W.warm_timeout_ms - spent : 1;
        if (fg_httpc_send(W.httpc, FG_HTTP_GET, b, left, page_done, NULL) == NULL) {
            atomic_fetch_add(&W.failed, 1);
        } else {
            W.running++;
            atomic_fetch_add(&W.in_flight, 1);
        }
        evbuffer_free(b);
    }
    if (atomic_load(&W.warming) && W.running == 0 && W.next >= W.n_pages)
        warm_end("done");
}

static void free_httpc_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    fg_httpc_free(arg);
}

static void warm_end(const char *why)
{
    if (!atomic_exchange(&W.warming, false))
        return;
    uint64_t ms = fg_mono_ms() - W.started_ms;
    atomic_store(&W.duration_ms, ms);
    atomic_store(&W.state, 2);
    fg_notice("fleet: warm start %s: %" PRIu64 " of %zu page(s) fetched, %" PRIu64
              " failed, in %" PRIu64 " ms; /healthz says ready",
              why, atomic_load(&W.done), W.n_pages, atomic_load(&W.failed), ms);
    if (W.deadline != NULL)
        evtimer_del(W.deadline);
    if (W.httpc != NULL) /* not from inside its callback: on the next turn */
        event_base_once(fg_fleet_bus_base(), -1, EV_TIMEOUT, free_httpc_cb, W.httpc, NULL);
    W.httpc = NULL;
    atomic_store(&W.in_flight, 0);
    W.pending = false;
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    warm_end(W.pending ? "gave up (Redis not ready by warm_timeout)" : "stopped at warm_timeout");
}

static void hot_list_done(enum fg_redis_status st, const struct redisReply *r, void *arg)
{
    (void)arg;
    if (!atomic_load(&W.warming))
        return;
    if (st != FG_REDIS_REPLY || r->type != REDIS_REPLY_ARRAY) {
        warm_end("could not read the hot pages");
        return;
    }
    W.pages = calloc(r->elements ? r->elements : 1, sizeof(*W.pages));
    for (size_t i = 0; W.pages != NULL && i < r->elements; i++) {
        const struct redisReply *e = r->element[i];
        if (e->type == REDIS_REPLY_STRING && (W.pages[W.n_pages] = malloc(e->len + 1)) != NULL) {
            memcpy(W.pages[W.n_pages], e->str, e->len);
            W.pages[W.n_pages++][e->len] = '\0';
        }
    }
    atomic_store(&W.asked, W.n_pages);
    char url[160], host[INET6_ADDRSTRLEN], err[160];
    const struct sockaddr *sa = (const struct sockaddr *)&W.target.ss;
    const void *ip = sa->sa_family == AF_INET6
                         ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                         : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
    inet_ntop(sa->sa_family, ip, host, sizeof(host));
    snprintf(url, sizeof(url), sa->sa_family == AF_INET6 ? "http://[%s]:%d" : "http://%s:%d", host,
             fg_addr_port(sa));
    struct fg_httpc_opts o = {
        .name = "warm start", .discard_body = true, .max_idle = (size_t)W.concurrency};
    W.httpc = fg_httpc_new(fg_fleet_bus_base(), NULL, url, &o, err, sizeof(err));
    if (W.httpc == NULL) {
        fg_warn("fleet: warm start: %s", err);
        warm_end("could not reach its own listener");
        return;
    }
    fg_notice("fleet: warm start: %zu hot page(s) through %s, %" PRIu64 " at a time", W.n_pages,
              url, W.concurrency);
    warm_more();
}

void fg_fleet_warm_on_ready(void)
{
    if (!W.pending || !atomic_load(&W.warming))
        return;
    struct fg_redis *redis = fg_fleet_bus_redis();
    char n[24];
    snprintf(n, sizeof(n), "%" PRIu64, W.warm_start - 1);
    const char *argv[] = {"ZREVRANGE", W.hot, "0", n};
    struct fg_redis_cmd c = {
        .argc = 4, .argv = argv, .key = W.hot, .key_len = strlen(W.hot), .timeout_ms = 1000};
    if (fg_redis_command(redis, &c, hot_list_done, NULL) != NULL)
        W.pending = false;
}

void fg_fleet_warm_setup(const struct fg_config *cfg, const struct fg_addr *target, bool first)
{
    const struct fg_conf_fleet *f = &cfg->fleet;
    fg_redis_script_init(&W.maintain, MAINTAIN_LUA);
    fg_fleet_hot_key_name(f->channel, W.hot, sizeof(W.hot));
    snprintf(W.decay, sizeof(W.decay), "fg:fleet:{%s}:hot:decay", f->channel);
    W.hot_keys = f->hot_keys;
    if (W.hot_keys > 0) {
        W.timer = evtimer_new(fg_fleet_bus_base(), maintain_cb, NULL);
        struct timeval tv = {.tv_sec = HOT_TRIM_MS / 1000};
        if (W.timer != NULL)
            evtimer_add(W.timer, &tv);
    }
    /* Only when the process starts: a reload does not make an instance cold. */
    if (!first || f->warm_start == 0 || target == NULL)
        return;
    W.warm_start = f->warm_start;
    W.warm_timeout_ms = f->warm_timeout_ms;
    W.concurrency = f->warm_concurrency;
    W.target = *target;
    W.started_ms = fg_mono_ms();
    W.pending = true;
    atomic_store(&W.warming, true);
    atomic_store(&W.state, 1);
    W.deadline = evtimer_new(fg_fleet_bus_base(), deadline_cb, NULL);
    struct timeval tv = {.tv_sec = (time_t)(W.warm_timeout_ms / 1000),
                         .tv_usec = (suseconds_t)(W.warm_timeout_ms % 1000) * 1000};
    if (W.deadline != NULL)
        evtimer_add(W.deadline, &tv);
}

/* On the bus thread, before its base is freed. */
void fg_fleet_warm_teardown(void)
{
    warm_end("stopped");
    if (W.httpc != NULL)
        fg_httpc_free(W.httpc);
    W.httpc = NULL;
    if (W.timer != NULL)
        event_free(W.timer);
    W.timer = NULL;
    if (W.deadline != NULL)
        event_free(W.deadline);
    W.deadline = NULL;
    for (size_t i = 0; i < W.n_pages; i++)
        free(W.pages[i]);
    free(W.pages);
    W.pages = NULL;
    W.n_pages = W.next = W.running = 0;
}

bool fg_fleet_warming(void)
{
    return atomic_load(&W.warming);
}

void fg_fleet_warm_progress(struct fg_fleet_warm_progress *out)
{
    static const char *const states[] = {"off", "warming", "done"};
    *out = (struct fg_fleet_warm_progress){.state = states[atomic_load(&W.state)],
                                           .pages = atomic_load(&W.asked),
                                           .done = atomic_load(&W.done),
                                           .failed = atomic_load(&W.failed),
                                           .in_flight = atomic_load(&W.in_flight),
                                           .duration_ms = atomic_load(&W.duration_ms)};
}
