/*
 * pool.c — per-worker keep-alive pools, server selection and passive health.
 *
 * Why per worker: a connection belongs to one event_base, so sharing idle connections
 * across threads would need locks on the hot path for no gain (each worker keeps its own
 * `keepalive` idle connections, as nginx does per worker process).
 */
#include "upstream/upstream.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/bufferevent_ssl.h>

#include "tls/tls.h"

#define FG_UPSTREAM_CONN_MAGIC 0x75706331u /* "upc1" */
#define FG_UPSTREAM_POOL_MAGIC 0x75707031u /* "upp1" */

TAILQ_HEAD(fg_upstream_conn_list, fg_upstream_conn);

struct fg_upstream_server_state {
    unsigned fails;
    uint64_t window_start_ms;
    uint64_t down_until_ms;
    unsigned active;
    int64_t wrr_current; /* smooth weighted round robin state */
    struct fg_upstream_conn_list idle;
};

struct fg_upstream_pool {
    unsigned magic;
    struct event_base *base;
    const struct fg_conf_upstream *conf;
    struct fg_upstream_stats *stats;
    unsigned n_idle;
    unsigned in_use;
    bool retired;
    size_t n_servers;
    struct fg_upstream_server_state servers[];
};

static void conn_close(struct fg_upstream_conn *uc);

static struct timeval tv_from_ms(uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

struct fg_upstream_pool *fg_upstream_pool_new(struct event_base *base,
                                              const struct fg_conf_upstream *conf,
                                              struct fg_upstream_stats *stats)
{
    size_t n = conf->n_servers;
    if (n > FG_UPSTREAM_MAX_SERVERS)
        n = FG_UPSTREAM_MAX_SERVERS;
    struct fg_upstream_pool *p = calloc(1, sizeof(*p) + n * sizeof(p->servers[0]));
    if (p == NULL)
        return NULL;
    p->magic = FG_UPSTREAM_POOL_MAGIC;
    p->base = base;
    p->conf = conf;
    p->stats = stats;
    p->n_servers = n;
    for (size_t i = 0; i < n; i++)
        TAILQ_INIT(&p->servers[i].idle);
    return p;
}

static void pool_maybe_free(struct fg_upstream_pool *p)
{
    if (p->retired && p->in_use == 0 && p->n_idle == 0) {
        p->magic = 0;
        free(p);
    }
}

void fg_upstream_pool_close_idle(struct fg_upstream_pool *p)
{
    FG_ASSERT(p->magic == FG_UPSTREAM_POOL_MAGIC);
    for (size_t i = 0; i < p->n_servers; i++) {
        struct fg_upstream_conn *uc;
        while ((uc = TAILQ_FIRST(&p->servers[i].idle)) != NULL) {
            TAILQ_REMOVE(&p->servers[i].idle, uc, link);
            p->n_idle--;
            fg_gauge_add(&p->stats->connections_idle, -1);
            conn_close(uc);
        }
    }
}

void fg_upstream_pool_retire(struct fg_upstream_pool *p)
{
    if (p == NULL)
        return;
    FG_ASSERT(p->magic == FG_UPSTREAM_POOL_MAGIC);
    p->retired = true;
    fg_upstream_pool_close_idle(p);
    pool_maybe_free(p);
}

const struct fg_conf_upstream *fg_upstream_pool_conf(const struct fg_upstream_pool *p)
{
    return p->conf;
}

struct fg_upstream_stats *fg_upstream_pool_stats(struct fg_upstream_pool *p)
{
    return p->stats;
}

size_t fg_upstream_server_count(const struct fg_upstream_pool *p)
{
    return p->n_servers;
}

const char *fg_upstream_server_name(const struct fg_upstream_pool *p, size_t server)
{
    return p->conf->servers[server].addr.text;
}

static void conn_close(struct fg_upstream_conn *uc)
{
    uc->magic = 0;
    fg_reader_free(&uc->reader);
    bufferevent_free(uc->bev);
    free(uc);
}

/* ---- health and selection -------------------------------------------------------------- */

static bool server_up(struct fg_upstream_pool *p, size_t i, uint64_t now)
{
    struct fg_upstream_server_state *s = &p->servers[i];
    if (s->down_until_ms == 0)
        return true;
    if (now >= s->down_until_ms) {
        /* Give it another chance: the next request is the probe. */
        s->down_until_ms = 0;
        s->fails = 0;
        fg_counter_add(&p->stats->servers[i].down, (uint64_t)-1);
        fg_notice("upstream %s: server %s is tried again", p->conf->name,
                  p->conf->servers[i].addr.text);
        return true;
    }
    return false;
}

void fg_upstream_report(struct fg_upstream_pool *p, size_t server, bool ok,
                        enum fg_upstream_failure why)
{
    FG_ASSERT(p->magic == FG_UPSTREAM_POOL_MAGIC && server < p->n_servers);
    struct fg_upstream_server_state *s = &p->servers[server];
    if (ok) {
        s->fails = 0;
        return;
    }
    switch (why) {
    case FG_UPSTREAM_FAIL_CONNECT:
        fg_counter_add(&p->stats->err_connect, 1);
        break;
    case FG_UPSTREAM_FAIL_TIMEOUT:
        fg_counter_add(&p->stats->err_timeout, 1);
        break;
    case FG_UPSTREAM_FAIL_RESET:
        fg_counter_add(&p->stats->err_reset, 1);
        break;
    case FG_UPSTREAM_FAIL_BAD_RESPONSE:
        fg_counter_add(&p->stats->err_bad_response, 1);
        break;
    }
    fg_counter_add(&p->stats->servers[server].fails, 1);
    const struct fg_conf_upstream_server *cs = &p->conf->servers[server];
    if (cs->max_fails == 0 || s->down_until_ms != 0)
        return;
    uint64_t now = fg_mono_ms();
    if (now - s->window_start_ms > cs->fail_timeout_ms) {
        s->window_start_ms = now;
        s->fails = 0;
    }
    if (++s->fails >= cs->max_fails) {
        s->down_until_ms = now + cs->fail_timeout_ms;
        fg_counter_add(&p->stats->servers[server].down, 1);
        fg_warn("upstream %s: server %s failed %u times within %llums, skipped for %llums",
                p->conf->name, cs->addr.text, s->fails, (unsigned long long)cs->fail_timeout_ms,
                (unsigned long long)cs->fail_timeout_ms);
    }
}

/* Smooth weighted round robin (each server's share equals its weight, interleaved) or
 * least connections weighted; servers that are down are skipped unless all are. */
static size_t pick_server(struct fg_upstream_pool *p, int exclude)
{
    if (p->n_servers == 1) {
        /* The only server takes every request, down or not; but the rule that brings a
         * server back after fail_timeout must run here too, or one outage marks it down
         * for good (and `offload when failing` keeps queueing every write). */
        if (p->servers[0].down_until_ms != 0)
            (void)server_up(p, 0, fg_mono_ms());
        return 0;
    }
    uint64_t now = fg_mono_ms();
    bool any_up = false;
    bool up[FG_UPSTREAM_MAX_SERVERS];
    for (size_t i = 0; i < p->n_servers; i++) {
        up[i] = server_up(p, i, now) && (int)i != exclude;
        any_up |= up[i];
    }
    if (!any_up) {
        for (size_t i = 0; i < p->n_servers; i++)
            up[i] = (int)i != exclude || p->n_servers == 1;
    }
    size_t best = SIZE_MAX;
    if (p->conf->balance == FG_BALANCE_LEAST_CONN) {
        for (size_t i = 0; i < p->n_servers; i++) {
            if (!up[i])
                continue;
            unsigned w = p->conf->servers[i].weight ? p->conf->servers[i].weight : 1;
            if (best == SIZE_MAX ||
                (uint64_t)p->servers[i].active *
                        (p->conf->servers[best].weight ? p->conf->servers[best].weight : 1) <
                    (uint64_t)p->servers[best].active * w)
                best = i;
        }
        if (best != SIZE_MAX)
            return best;
    }
    int64_t total = 0;
    for (size_t i = 0; i < p->n_servers; i++) {
        if (!up[i])
            continue;
        int64_t w = p->conf->servers[i].weight ? p->conf->servers[i].weight : 1;
        p->servers[i].wrr_current += w;
        total += w;
        if (best == SIZE_MAX || p->servers[i].wrr_current > p->servers[best].wrr_current)
            best = i;
    }
    if (best == SIZE_MAX)
        return 0;
    p->servers[best].wrr_current -= total;
    return best;
}

bool fg_upstream_all_down(struct fg_upstream_pool *p)
{
    FG_ASSERT(p->magic == FG_UPSTREAM_POOL_MAGIC);
    uint64_t now = fg_mono_ms();
    bool any_up = false;
    for (size_t i = 0; i < p->n_servers; i++)
        any_up |= server_up(p, i, now); /* every one: each may come back now */
    return p->n_servers > 0 && !any_up;
}

/* ---- idle connections ------------------------------------------------------------------ */

static void idle_drop(struct fg_upstream_conn *uc)
{
    struct fg_upstream_pool *p = uc->pool;
    TAILQ_REMOVE(&p->servers[uc->server].idle, uc, link);
    p->n_idle--;
    fg_gauge_add(&p->stats->connections_idle, -1);
    conn_close(uc);
    pool_maybe_free(p);
}

/* An idle connection must stay silent: bytes from the app now would be garbage, and EOF
 * means the app closed it (its own keep-alive timeout). Either way, close our end. */
static void idle_read_cb(void *arg)
{
    struct fg_upstream_conn *uc = arg;
    FG_ASSERT(uc->magic == FG_UPSTREAM_CONN_MAGIC);
    fg_debug("upstream %s: idle connection to %s sent unexpected bytes, closed",
             uc->pool->conf->name, uc->pool->conf->servers[uc->server].addr.text);
    idle_drop(uc);
}

static void idle_event_cb(short what, void *arg)
{
    struct fg_upstream_conn *uc = arg;
    FG_ASSERT(uc->magic == FG_UPSTREAM_CONN_MAGIC);
    idle_drop(uc);
}

static void idle_bev_event_cb(struct bufferevent *bev, short what, void *arg)
{
    idle_event_cb(what, arg);
}

/* ---- acquire / release ----------------------------------------------------------------- */

static struct fg_upstream_conn *conn_connect(struct fg_upstream_pool *p, size_t server)
{
    const struct fg_addr *a = &p->conf->servers[server].addr;
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fg_err("upstream %s: cannot create a socket for %s: %s", p->conf->name, a->text,
               strerror(errno));
        return NULL;
    }
    if (a->ss.ss_family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    struct fg_upstream_conn *uc = calloc(1, sizeof(*uc));
    if (uc == NULL) {
        close(fd);
        return NULL;
    }
    const struct fg_conf_upstream_server *cs = &p->conf->servers[server];
    if (cs->ssl && p->conf->tls != NULL) {
        /* Sessions are kept per server address, so a reconnect resumes (the handshake
         * costs one round trip and no certificate check). */
        SSL *ssl = fg_tls_client_ssl_new(p->conf->tls, cs->tls_name, a->text);
        uc->bev = ssl ? bufferevent_openssl_socket_new(p->base, fd, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                       BEV_OPT_CLOSE_ON_FREE)
                      : NULL;
        /* libevent frees the SSL (and closes fd) when it cannot make the bufferevent */
        if (uc->bev == NULL && ssl == NULL)
            close(fd);
    } else {
        uc->bev = bufferevent_socket_new(p->base, fd, BEV_OPT_CLOSE_ON_FREE);
        if (uc->bev == NULL)
            close(fd);
    }
    if (uc->bev == NULL) {
        fg_err("upstream %s: out of memory connecting to %s", p->conf->name, a->text);
        free(uc);
        return NULL;
    }
    if (!fg_reader_init(&uc->reader, uc->bev, 0)) {
        bufferevent_free(uc->bev);
        free(uc);
        return NULL;
    }
    uc->magic = FG_UPSTREAM_CONN_MAGIC;
    uc->pool = p;
    uc->server = server;
    fg_reader_set_peer(&uc->reader, cs->host);
    struct timeval ct = tv_from_ms(p->conf->connect_timeout_ms);
    /* A TLS handshake waits on reads too: connect_timeout bounds connect + handshake. */
    bufferevent_set_timeouts(uc->bev, cs->ssl ? &ct : NULL, &ct);
    if (bufferevent_socket_connect(uc->bev, (struct sockaddr *)&a->ss, (int)a->len) < 0) {
        fg_warn("upstream %s: connect to %s failed at once: %s", p->conf->name, a->text,
                strerror(errno));
        fg_upstream_report(p, server, false, FG_UPSTREAM_FAIL_CONNECT);
        conn_close(uc);
        return NULL;
    }
    fg_counter_add(&p->stats->connects, 1);
    return uc;
}

struct fg_upstream_conn *fg_upstream_acquire(struct fg_upstream_pool *p, bool fresh, int exclude)
{
    FG_ASSERT(p->magic == FG_UPSTREAM_POOL_MAGIC && !p->retired);
    size_t server = pick_server(p, exclude);
    struct fg_upstream_server_state *s = &p->servers[server];
    struct fg_upstream_conn *uc = NULL;
    if (!fresh && (uc = TAILQ_FIRST(&s->idle)) != NULL) {
        /* Most recently used first: it is the least likely to have been closed by the app. */
        TAILQ_REMOVE(&s->idle, uc, link);
        p->n_idle--;
        fg_gauge_add(&p->stats->connections_idle, -1);
        fg_reader_set_timeout(&uc->reader, 0);
        uc->reused = true;
        fg_counter_add(&p->stats->reused, 1);
    } else {
        uc = conn_connect(p, server);
        if (uc == NULL)
            return NULL;
    }
    uc->requests++;
    s->active++;
    p->in_use++;
    fg_gauge_add(&p->stats->connections_active, 1);
    fg_gauge_add(&p->stats->servers[server].active, 1);
    fg_counter_add(&p->stats->servers[server].requests, 1);
    fg_counter_add(&p->stats->requests, 1);
    return uc;
}

void fg_upstream_connected(struct fg_upstream_conn *uc)
{
    uc->connected = true;
    bufferevent_set_timeouts(uc->bev, NULL, NULL);
}

void fg_upstream_release(struct fg_upstream_conn *uc, bool reusable)
{
    FG_ASSERT(uc->magic == FG_UPSTREAM_CONN_MAGIC);
    struct fg_upstream_pool *p = uc->pool;
    struct fg_upstream_server_state *s = &p->servers[uc->server];
    s->active--;
    p->in_use--;
    fg_gauge_add(&p->stats->connections_active, -1);
    fg_gauge_add(&p->stats->servers[uc->server].active, -1);
    struct evbuffer *in = bufferevent_get_input(uc->bev);
    if (!reusable || p->retired || !uc->connected || p->n_idle >= p->conf->keepalive ||
        uc->requests >= p->conf->keepalive_requests || evbuffer_get_length(in) != 0 ||
        evbuffer_get_length(bufferevent_get_output(uc->bev)) != 0) {
        conn_close(uc);
        pool_maybe_free(p);
        return;
    }
    uc->reused = false;
    uc->idle_since_ms = fg_mono_ms();
    TAILQ_INSERT_HEAD(&s->idle, uc, link);
    p->n_idle++;
    fg_gauge_add(&p->stats->connections_idle, 1);
    fg_reader_bev_setcb(&uc->reader, NULL, idle_bev_event_cb, uc);
    bufferevent_set_timeouts(uc->bev, NULL, NULL);
    fg_reader_setcb(&uc->reader, idle_read_cb, idle_event_cb, uc);
    fg_reader_set_timeout(&uc->reader, p->conf->keepalive_timeout_ms);
    fg_reader_enable(&uc->reader);
}
