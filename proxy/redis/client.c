/*
 * client.c — a Redis client on one event_base: nodes, routing, deadlines, redirections,
 * reconnection and replacement of connections.
 *
 * Routing. Standalone, every command goes to the seed (the configured endpoint). In
 * cluster mode (found by asking the seed for its slot map, or required by config) a
 * command goes to the master owning its key's slot. A MOVED answer updates that slot at
 * once, sends the command again to the named node and asks for a fresh map (at most
 * every FG_REDIS_REFRESH_MS); an ASK answer sends it once to the named node behind
 * ASKING, without touching the map. A node that is still connecting keeps the commands
 * sent to it until it is ready, each within its own deadline.
 *
 * Deadlines. Every user command has a timer. When it fires the caller is told
 * (FG_REDIS_TIMEOUT) and, if the connection has not received a single byte since the
 * command was written, the connection is taken for hung and dropped: what waits behind
 * would be late too, and a hung connection would queue without bound. Its other commands
 * are answered FG_REDIS_LOST at once; the node reconnects with backoff.
 *
 * Reconnection and replacement. A lost connection is made again after a capped,
 * jittered exponential backoff, with a fresh DNS lookup. A working connection is
 * replaced — a new one set up beside it, commands moved over once it is ready, the old
 * one closed when its last answers are in — when it reaches max_connection_age, when the
 * endpoint's name now points to another address (looked up every resolve_interval), and
 * when a write is answered READONLY (a failover demoted the node). No command is lost
 * to a replacement.
 */
#include "redis/internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <event2/dns.h>
#include <event2/util.h>

#define REDIS_MAGIC 0x72636c69u /* "rcli" */

static struct timeval tv_ms(uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

void fg_redis_emit(struct fg_redis *r, enum fg_redis_event ev)
{
    if (r->opts.on_event != NULL && !r->freeing)
        r->opts.on_event(ev, r->opts.event_arg);
}

uint64_t fg_redis_jitter(struct fg_redis *r, uint64_t max)
{
    /* xorshift64*: jitter only, no secrets */
    uint64_t x = r->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->rng = x;
    return max > 0 ? (x * UINT64_C(0x2545F4914F6CDD1D)) % (max + 1) : 0;
}

struct evdns_base *fg_redis_dns(struct fg_redis *r)
{
    if (r->dns != NULL || r->dns_failed)
        return r->dns;
    const struct fg_redis_endpoint *ep = r->ep;
    if (ep->n_resolvers > 0) {
        r->dns = evdns_base_new(r->base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        for (size_t i = 0; r->dns != NULL && i < ep->n_resolvers; i++)
            if (evdns_base_nameserver_ip_add(r->dns, ep->resolvers[i]) != 0)
                fg_warn("redis %s: resolver %s refused by evdns", ep->name, ep->resolvers[i]);
        if (r->dns != NULL)
            evdns_base_load_hosts(r->dns, NULL);
    } else {
        r->dns = evdns_base_new(r->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                             EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    }
    if (r->dns == NULL) {
        r->dns_failed = true;
        fg_warn("redis %s: no DNS resolver (cannot read /etc/resolv.conf): only IP addresses "
                "can be reached",
                ep->name);
        return NULL;
    }
    /* A lookup must fit in connect_timeout: fail fast and try again on the next attempt. */
    evdns_base_set_option(r->dns, "timeout:", "1");
    evdns_base_set_option(r->dns, "attempts:", "2");
    return r->dns;
}

/* ---- requests ------------------------------------------------------------------------- */

void fg_redis_req_free(struct fg_redis_req *q)
{
    FG_ASSERT(q->magic == REQ_MAGIC);
    if (q->timer_set)
        event_del(&q->timer);
    q->magic = 0;
    free(q);
}

/* Answer q (it leaves every list first) and free it. */
static void req_answer(struct fg_redis_req *q, enum fg_redis_status st, const redisReply *reply)
{
    fg_redis_cb cb = q->cb;
    void *arg = q->arg;
    q->cb = NULL;
    fg_redis_req_free(q);
    if (cb != NULL)
        cb(st, reply, arg);
}

void fg_redis_fail_list(struct reqq *list)
{
    struct fg_redis_req *q;
    while ((q = TAILQ_FIRST(list)) != NULL) {
        TAILQ_REMOVE(list, q, link);
        q->conn = NULL;
        q->node = NULL;
        if (q->handler != NULL) {
            q->handler(NULL, q, NULL);
            fg_redis_req_free(q);
        } else {
            req_answer(q, FG_REDIS_LOST, NULL);
        }
    }
}

static void waiting_remove(struct rnode *n, struct fg_redis_req *q)
{
    TAILQ_REMOVE(&n->waiting, q, link);
    n->n_waiting--;
    q->node = NULL;
}

static void req_timed_out(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct fg_redis_req *q = arg;
    FG_ASSERT(q->magic == REQ_MAGIC);
    q->timer_set = false;
    fg_redis_cb cb = q->cb;
    void *cb_arg = q->arg;
    if (cb == NULL)
        return;
    struct fg_redis *r = q->r;
    uint64_t now = fg_mono_us();
    if (now < q->deadline_us) {
        /* libevent's clock is coarse (a few ms): never answer before the deadline */
        uint64_t left = q->deadline_us - now;
        struct timeval tv = {.tv_sec = (time_t)(left / 1000000),
                             .tv_usec = (suseconds_t)(left % 1000000)};
        if (event_add(&q->timer, &tv) == 0) {
            q->timer_set = true;
            return;
        }
    }
    rstat_add(r->stats, RS_TIMEOUTS, 1);
    q->cb = NULL;
    if (q->node != NULL) { /* still waiting for its node to connect */
        waiting_remove(q->node, q);
        fg_redis_req_free(q);
    } else if (q->conn != NULL && q->conn->last_read_us < q->sent_us) {
        /* Not a byte since it was written: the connection is hung. q goes with it. */
        char why[160];
        snprintf(why, sizeof(why), "no answer within the %llu ms timeout; dropping the connection",
                 (unsigned long long)q->timeout_ms);
        fg_redis_conn_fail(q->conn, why);
    }
    /* else: a slow answer is still due; the connection frees q when it comes */
    cb(FG_REDIS_TIMEOUT, NULL, cb_arg);
}

static void on_req_timeout(evutil_socket_t fd, short what, void *arg);

static const struct timeval *common_tv(struct fg_redis *r, uint64_t ms, struct timeval *tmp)
{
    for (size_t i = 0; i < r->n_tvs; i++)
        if (r->tvs[i].ms == ms)
            return r->tvs[i].tv;
    *tmp = tv_ms(ms);
    if (r->n_tvs < FG_ARRAY_LEN(r->tvs)) {
        /* libevent queues timers of one duration in O(1) instead of its heap */
        const struct timeval *tv = event_base_init_common_timeout(r->base, tmp);
        if (tv != NULL) {
            r->tvs[r->n_tvs].ms = ms;
            r->tvs[r->n_tvs++].tv = tv;
            return tv;
        }
    }
    return tmp;
}

/* A user request with copies of its arguments (argv[i] NULL: a slot filled when sent). */
static struct fg_redis_req *req_new(struct fg_redis *r, int argc, const char *const *argv,
                                    const size_t *lens)
{
    size_t bytes = 0;
    for (int i = 0; i < argc; i++)
        if (argv[i] != NULL)
            bytes += (lens != NULL ? lens[i] : strlen(argv[i])) + 1;
    size_t head = sizeof(struct fg_redis_req);
    size_t ptrs = (size_t)argc * sizeof(char *), sizes = (size_t)argc * sizeof(size_t);
    struct fg_redis_req *q = malloc(head + ptrs + sizes + bytes);
    if (q == NULL)
        return NULL;
    memset(q, 0, head);
    q->magic = REQ_MAGIC;
    q->r = r;
    q->slot = FG_REDIS_SLOTS;
    q->argc = argc;
    q->argv = (const char **)(void *)q->data;
    q->lens = (size_t *)(void *)(q->data + ptrs);
    char *p = q->data + ptrs + sizes;
    for (int i = 0; i < argc; i++) {
        if (argv[i] == NULL) {
            q->argv[i] = NULL;
            q->lens[i] = 0;
            continue;
        }
        size_t l = lens != NULL ? lens[i] : strlen(argv[i]);
        memcpy(p, argv[i], l);
        p[l] = '\0';
        q->argv[i] = p;
        q->lens[i] = l;
        p += l + 1;
    }
    return q;
}

/* ---- nodes ---------------------------------------------------------------------------- */

static bool node_wanted(const struct rnode *n)
{
    return n->seed || n->in_map || n->n_waiting > 0;
}

static void on_reconnect(evutil_socket_t fd, short what, void *arg);
static void on_ps_reconnect(evutil_socket_t fd, short what, void *arg);
static void on_resolve(evutil_socket_t fd, short what, void *arg);

static bool is_ip(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static struct rnode *node_add(struct fg_redis *r, const char *host, int port, const char *tls_name)
{
    if (r->n_nodes == FG_REDIS_MAX_NODES || strlen(host) >= sizeof(r->nodes[0]->host))
        return NULL;
    if (r->n_nodes == r->cap_nodes) {
        size_t nc = r->cap_nodes ? r->cap_nodes * 2 : 4;
        struct rnode **nv = realloc(r->nodes, nc * sizeof(*nv));
        if (nv == NULL)
            return NULL;
        r->nodes = nv;
        r->cap_nodes = nc;
    }
    struct rnode *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return NULL;
    n->r = r;
    n->index = r->n_nodes;
    snprintf(n->host, sizeof(n->host), "%s", host);
    n->port = port;
    snprintf(n->port_text, sizeof(n->port_text), "%d", port);
    snprintf(n->tls_name, sizeof(n->tls_name), "%s", tls_name);
    n->host_is_ip = is_ip(host);
    n->backoff_ms = n->ps_backoff_ms = r->opts.backoff_min_ms;
    TAILQ_INIT(&n->draining);
    TAILQ_INIT(&n->waiting);
    n->reconnect_ev = evtimer_new(r->base, on_reconnect, n);
    n->ps_reconnect_ev = evtimer_new(r->base, on_ps_reconnect, n);
    n->resolve_ev = evtimer_new(r->base, on_resolve, n);
    if (n->reconnect_ev == NULL || n->ps_reconnect_ev == NULL || n->resolve_ev == NULL) {
        if (n->reconnect_ev != NULL)
            event_free(n->reconnect_ev);
        if (n->ps_reconnect_ev != NULL)
            event_free(n->ps_reconnect_ev);
        if (n->resolve_ev != NULL)
            event_free(n->resolve_ev);
        free(n);
        return NULL;
    }
    r->nodes[r->n_nodes++] = n;
    return n;
}

struct rnode *fg_redis_node_get(struct fg_redis *r, const char *host, int port,
                                const char *hostname)
{
    for (size_t i = 0; i < r->n_nodes; i++)
        if (r->nodes[i]->port == port && strcasecmp(r->nodes[i]->host, host) == 0)
            return r->nodes[i];
    /* The name its certificate must carry: the one it announces, else its own name, else
     * (an address) the configured endpoint's name, as a cluster's nodes share one
     * certificate. */
    const char *tls_name = hostname != NULL && hostname[0] != '\0' ? hostname
                           : !is_ip(host)                          ? host
                                                                   : r->nodes[0]->tls_name;
    return node_add(r, host, port, tls_name);
}

static bool discovers(const struct rnode *n)
{
    return n->seed && n->r->ep->cluster != FG_REDIS_CLUSTER_OFF;
}

static void node_connect(struct rnode *n)
{
    if (n->active != NULL || n->r->freeing)
        return;
    n->active = fg_redis_conn_new(n, CK_COMMANDS, discovers(n));
    if (n->active == NULL)
        fg_err("redis %s: out of memory for a connection", n->r->ep->name);
}

static void schedule(struct fg_redis *r, struct event *ev, unsigned *backoff)
{
    /* Equal jitter: between half and all of the backoff, so that the workers (and the
     * fleet) do not all come back to a restarted Redis in the same millisecond. */
    uint64_t half = *backoff / 2;
    uint64_t delay = half + fg_redis_jitter(r, half);
    unsigned next = *backoff * 2;
    *backoff = next > r->opts.backoff_max_ms || next < *backoff ? r->opts.backoff_max_ms : next;
    struct timeval tv = tv_ms(delay);
    evtimer_add(ev, &tv);
}

static void reconnect_due(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct rnode *n = arg;
    if (n->r->freeing)
        return;
    if (n->active == NULL) {
        if (node_wanted(n))
            node_connect(n);
    } else if (n->moved_to[0] != '\0') {
        char why[400];
        snprintf(why, sizeof(why), "%s now points to %s", n->host, n->moved_to);
        n->moved_to[0] = '\0';
        fg_redis_node_replace(n, why, RS_ADDRESS_CHANGES, true);
    } else if (n->replace_pending) {
        n->replace_pending = false;
        n->last_replace_us = 0;
        fg_redis_node_replace(n, "trying the replacement again", RS_COUNT, false);
    }
}

static void ps_reconnect_due(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    fg_redis_pubsub_start(arg);
}

/* Where commands of slot go (FG_REDIS_SLOTS: keyless), if it is ready. */
static struct rconn *route(struct fg_redis *r, unsigned slot)
{
    if (!r->mode_known)
        return NULL;
    struct rnode *n = NULL;
    if (!r->cluster) {
        n = r->nodes[0];
    } else if (slot < FG_REDIS_SLOTS) {
        unsigned idx = r->slots != NULL ? r->slots[slot] : 0;
        if (idx == 0)
            return NULL;
        n = r->nodes[idx - 1];
    } else {
        for (size_t k = 0; k < r->n_nodes && n == NULL; k++) {
            struct rnode *m = r->nodes[(r->rr + k) % r->n_nodes];
            if (m->in_map && m->active != NULL && m->active->state == CS_READY)
                n = m;
        }
        r->rr++;
        if (n == NULL)
            return NULL;
    }
    struct rconn *c = n->active;
    if (c == NULL || c->state != CS_READY || c->n_inflight - c->n_internal >= r->opts.max_inflight)
        return NULL;
    return c;
}

/* Send q to node n now, or when n is ready (its deadline still runs). */
static void node_submit(struct rnode *n, struct fg_redis_req *q)
{
    struct rconn *c = n->active;
    if (c != NULL && c->state == CS_READY) {
        if (!fg_redis_conn_write(c, q))
            req_answer(q, FG_REDIS_LOST, NULL);
        return;
    }
    q->node = n;
    TAILQ_INSERT_TAIL(&n->waiting, q, link);
    n->n_waiting++;
    if (n->active == NULL && !evtimer_pending(n->reconnect_ev, NULL))
        node_connect(n);
}

void fg_redis_node_conn_ready(struct rnode *n, struct rconn *c)
{
    struct fg_redis *r = n->r;
    if (c->kind == CK_PUBSUB) {
        n->ps_backoff_ms = r->opts.backoff_min_ms;
        return;
    }
    if (c == n->next) {
        struct rconn *old = n->active;
        n->active = c;
        n->next = NULL;
        if (old != NULL)
            fg_redis_conn_drain(old);
    }
    n->backoff_ms = r->opts.backoff_min_ms;
    if (n->complained)
        fg_notice("redis %s: %s:%d: connected again", r->ep->name, n->host, n->port);
    n->complained = false;
    struct fg_redis_req *q;
    while ((q = TAILQ_FIRST(&n->waiting)) != NULL && c->state == CS_READY) {
        waiting_remove(n, q);
        if (!fg_redis_conn_write(c, q))
            req_answer(q, FG_REDIS_LOST, NULL);
    }
    if (r->ep->resolve_interval_ms > 0 && !n->host_is_ip && !evtimer_pending(n->resolve_ev, NULL)) {
        struct timeval tv = tv_ms(r->ep->resolve_interval_ms);
        evtimer_add(n->resolve_ev, &tv);
    }
}

static void complain(struct rnode *n, const struct rconn *c, bool was_ready)
{
    struct fg_redis *r = n->r;
    const char *why = c->why[0] != '\0' ? c->why : "closed";
    /* One warning per outage; the retries that follow go to the debug log. */
    if (!n->complained) {
        fg_warn("redis %s: %s:%d: %s%s", r->ep->name, n->host, n->port, why,
                was_ready ? "" : " (will retry with backoff)");
        n->complained = true;
    } else {
        fg_debug("redis %s: %s:%d: %s", r->ep->name, n->host, n->port, why);
    }
}

void fg_redis_node_conn_closed(struct rnode *n, struct rconn *c, bool failed, bool was_ready)
{
    struct fg_redis *r = n->r;
    if (failed && !r->freeing) {
        rstat_add(r->stats, was_ready ? RS_DISCONNECTS : RS_CONNECT_FAILURES, 1);
        fg_redis_emit(r, was_ready ? FG_REDIS_EV_DISCONNECTED : FG_REDIS_EV_CONNECT_FAILED);
    }
    if (c->kind == CK_PUBSUB) {
        if (n->pubsub == c)
            n->pubsub = NULL;
        if (failed && !r->freeing)
            complain(n, c, was_ready);
        if (!r->freeing)
            fg_redis_pubsub_lost(n);
        return;
    }
    if (c->draining) {
        TAILQ_REMOVE(&n->draining, c, link);
        return;
    }
    if (c == n->next) {
        n->next = NULL;
        if (failed && !r->freeing) {
            fg_info("redis %s: %s:%d: the replacement connection failed (%s); keeping the "
                    "current one",
                    r->ep->name, n->host, n->port, c->why[0] ? c->why : "closed");
            n->replace_pending = true;
            if (!evtimer_pending(n->reconnect_ev, NULL))
                schedule(r, n->reconnect_ev, &n->backoff_ms);
        }
        return;
    }
    if (c != n->active)
        return;
    n->active = NULL;
    if (r->freeing)
        return;
    if (failed)
        complain(n, c, was_ready);
    if (n->next != NULL) { /* a replacement is on its way: it takes over */
        n->active = n->next;
        n->next = NULL;
        return;
    }
    evtimer_del(n->resolve_ev);
    if (r->cluster && n->in_map)
        fg_redis_want_refresh(r);
    if (node_wanted(n) && !evtimer_pending(n->reconnect_ev, NULL))
        schedule(r, n->reconnect_ev, &n->backoff_ms);
    /* Commands redirected here would only wait for their deadline. */
    if (n->n_waiting > 0) {
        struct reqq mine;
        TAILQ_INIT(&mine);
        TAILQ_CONCAT(&mine, &n->waiting, link);
        n->n_waiting = 0;
        struct fg_redis_req *q;
        TAILQ_FOREACH(q, &mine, link)
        q->node = NULL;
        fg_redis_fail_list(&mine);
    }
}

void fg_redis_node_replace(struct rnode *n, const char *why, enum rstat counter, bool moved)
{
    struct fg_redis *r = n->r;
    if (r->freeing || n->next != NULL || n->active == NULL)
        return;
    uint64_t now = fg_mono_us();
    if (n->last_replace_us != 0 && now - n->last_replace_us < 1000000)
        return; /* at most once a second: a lagging DNS record must not make a storm */
    n->last_replace_us = now;
    if (counter != RS_COUNT)
        rstat_add(r->stats, counter, 1);
    fg_info("redis %s: %s:%d: %s; opening a new connection beside the current one", r->ep->name,
            n->host, n->port, why);
    n->next = fg_redis_conn_new(n, CK_COMMANDS, discovers(n));
    /* The node moved (or was demoted): its subscriptions follow, through a new pub/sub
     * connection (their owners are told: messages may have been missed meanwhile). */
    if (n->pubsub != NULL && moved)
        fg_redis_conn_fail(n->pubsub, NULL);
}

/* ---- periodic lookups ------------------------------------------------------------------ */

static void on_probe(int result, struct evutil_addrinfo *res, void *arg)
{
    if (result == EVUTIL_EAI_CANCEL) {
        if (res != NULL)
            evutil_freeaddrinfo(res);
        return;
    }
    struct rnode *n = arg;
    struct fg_redis *r = n->r;
    n->probe = NULL;
    n->probe_done = true;
    if (result != 0 || res == NULL) {
        rstat_add(r->stats, RS_RESOLVE_FAILURES, 1);
        fg_debug("redis %s: looking up %s again failed: %s", r->ep->name, n->host,
                 result != 0 ? evutil_gai_strerror(result) : "no address");
    } else if (n->active != NULL && n->active->state == CS_READY) {
        bool same = false;
        char first[64] = "";
        for (const struct evutil_addrinfo *a = res; a != NULL; a = a->ai_next) {
            if (first[0] == '\0')
                fg_addr_ip_text(a->ai_addr, first, sizeof(first));
            same |= fg_redis_conn_peer_is(n->active, a->ai_addr);
        }
        if (!same) {
            /* not from inside evdns: on the next loop turn (reconnect_due) */
            snprintf(n->moved_to, sizeof(n->moved_to), "%s", first[0] ? first : "?");
            event_active(n->reconnect_ev, EV_TIMEOUT, 0);
        }
    }
    if (res != NULL)
        evutil_freeaddrinfo(res);
    if (n->active != NULL && r->ep->resolve_interval_ms > 0) {
        struct timeval tv = tv_ms(r->ep->resolve_interval_ms);
        evtimer_add(n->resolve_ev, &tv);
    }
}

static void on_resolve(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct rnode *n = arg;
    struct fg_redis *r = n->r;
    if (r->freeing || n->probe != NULL || n->active == NULL)
        return;
    struct evdns_base *dns = fg_redis_dns(r);
    if (dns == NULL)
        return;
    rstat_add(r->stats, RS_RESOLUTIONS, 1);
    struct evutil_addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP};
    n->probe_done = false;
    struct evdns_getaddrinfo_request *d =
        evdns_getaddrinfo(dns, n->host, n->port_text, &hints, on_probe, n);
    if (!n->probe_done)
        n->probe = d;
}

/* ---- the slot map ---------------------------------------------------------------------- */

static void on_refresh(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct fg_redis *r = arg;
    r->refresh_armed = false;
    if (r->freeing || r->refresh_inflight)
        return;
    struct rconn *c = NULL;
    for (size_t k = 0; k < r->n_nodes && c == NULL; k++) {
        struct rnode *n = r->nodes[(r->rr + k) % r->n_nodes];
        if ((n->in_map || n->seed) && n->active != NULL && n->active->state == CS_READY)
            c = n->active;
    }
    r->rr++;
    r->last_refresh_us = fg_mono_us();
    if (c == NULL) {
        /* Nobody to ask: the seed's next handshake asks for the map. */
        node_connect(r->nodes[0]);
        return;
    }
    if (fg_redis_conn_ask_map(c, false))
        r->refresh_inflight = true;
}

void fg_redis_want_refresh(struct fg_redis *r)
{
    if (r->freeing || r->refresh_armed || r->refresh_inflight)
        return;
    uint64_t now = fg_mono_us(), next = r->last_refresh_us + FG_REDIS_REFRESH_MS * 1000;
    struct timeval tv = tv_ms(next > now ? (next - now + 999) / 1000 : 0);
    evtimer_add(r->refresh_ev, &tv);
    r->refresh_armed = true;
}

void fg_redis_set_standalone(struct fg_redis *r)
{
    if (r->cluster)
        fg_notice("redis %s: the server is no longer a cluster", r->ep->name);
    r->cluster = false;
    r->mode_known = true;
    fg_redis_pubsub_replace_all(r);
}

void fg_redis_apply_map(struct fg_redis *r, struct rconn *from, const struct slot_range *m,
                        size_t n)
{
    if (r->slots == NULL && (r->slots = calloc(FG_REDIS_SLOTS, sizeof(*r->slots))) == NULL) {
        fg_err("redis %s: out of memory for the slot map", r->ep->name);
        return;
    }
    uint16_t *map = calloc(FG_REDIS_SLOTS, sizeof(*map));
    bool *in = calloc(r->n_nodes + n + 1, sizeof(*in));
    if (map == NULL || in == NULL) {
        free(map);
        free(in);
        fg_err("redis %s: out of memory for the slot map", r->ep->name);
        return;
    }
    size_t covered = 0;
    for (size_t i = 0; i < n; i++) {
        const char *host = m[i].host[0] != '\0' ? m[i].host : from->node->host;
        const char *hostname = m[i].hostname;
        if (hostname[0] == '\0' && strcasecmp(host, from->node->host) == 0)
            hostname = from->node->tls_name;
        struct rnode *node = fg_redis_node_get(r, host, m[i].port, hostname);
        if (node == NULL)
            continue;
        if (node->index < r->n_nodes + n + 1)
            in[node->index] = true;
        for (unsigned s = m[i].start; s <= m[i].end; s++) {
            if (map[s] == 0)
                covered++;
            map[s] = (uint16_t)(node->index + 1);
        }
    }
    memcpy(r->slots, map, FG_REDIS_SLOTS * sizeof(*map));
    free(map);
    bool was_cluster = r->cluster && r->mode_known;
    r->cluster = true;
    r->mode_known = true;
    r->covered = covered;
    r->last_refresh_us = fg_mono_us();
    rstat_add(r->stats, RS_SLOT_MAP_REFRESHES, 1);
    if (!was_cluster)
        fg_info("redis %s: cluster mode, %zu slot range(s), %zu of %d slots served", r->ep->name, n,
                covered, FG_REDIS_SLOTS);
    else if (covered < FG_REDIS_SLOTS)
        fg_warn("redis %s: %zu of %d slots have no master online", r->ep->name,
                FG_REDIS_SLOTS - covered, FG_REDIS_SLOTS);
    for (size_t i = 0; i < r->n_nodes; i++) {
        struct rnode *node = r->nodes[i];
        node->in_map = in[i];
        if (node->in_map) {
            if (node->active == NULL && !evtimer_pending(node->reconnect_ev, NULL))
                node_connect(node);
        } else if (!node->seed && node->active != NULL && node->n_waiting == 0) {
            /* no slots any more (a demoted master): finish its answers, then close */
            struct rconn *c = node->active;
            node->active = NULL;
            evtimer_del(node->resolve_ev);
            fg_redis_conn_drain(c);
        }
    }
    free(in);
    fg_redis_pubsub_replace_all(r);
}

/* ---- answers ------------------------------------------------------------------------- */

static bool err_is(const redisReply *r, const char *prefix)
{
    size_t n = strlen(prefix);
    return r->type == REDIS_REPLY_ERROR && r->len >= n && memcmp(r->str, prefix, n) == 0;
}

void fg_redis_user_reply(struct rconn *c, struct fg_redis_req *q, redisReply *reply)
{
    struct fg_redis *r = c->r;
    if (q->cb == NULL) { /* answered by its deadline, or cancelled */
        fg_redis_req_free(q);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        bool ask = false;
        unsigned slot = 0;
        int port = 0;
        char host[256];
        if (fg_redis_parse_redirect(reply->str, reply->len, &ask, &slot, host, sizeof(host),
                                    &port) &&
            q->redirects < FG_REDIS_MAX_REDIRS && !r->freeing) {
            struct rnode *to =
                fg_redis_node_get(r, host[0] != '\0' ? host : c->node->host, port, NULL);
            if (to != NULL) {
                q->redirects++;
                q->asking = ask;
                rstat_add(r->stats, ask ? RS_ASK : RS_MOVED, 1);
                if (!ask) {
                    if (r->cluster && r->slots != NULL) {
                        if (r->slots[slot] == 0)
                            r->covered++;
                        r->slots[slot] = (uint16_t)(to->index + 1);
                    }
                    fg_redis_want_refresh(r);
                }
                node_submit(to, q);
                return;
            }
        }
        if (err_is(reply, "NOSCRIPT") && q->script != NULL && !q->eval) {
            rstat_add(r->stats, RS_NOSCRIPT, 1);
            fg_redis_emit(r, FG_REDIS_EV_NOSCRIPT);
            fg_redis_conn_forget_scripts(c);
            q->eval = true; /* EVAL runs it and loads it again */
            if (c->state == CS_READY && fg_redis_conn_write(c, q))
                return;
        }
        if (err_is(reply, "READONLY") && !r->cluster) {
            rstat_add(r->stats, RS_READONLY, 1);
            fg_redis_node_replace(c->node, "a write was answered READONLY (failover)", RS_COUNT,
                                  true);
        }
    }
    req_answer(q, FG_REDIS_REPLY, reply);
}

/* ---- the API ------------------------------------------------------------------------- */

struct fg_redis *fg_redis_new(struct event_base *base, struct fg_redis_endpoint *ep,
                              const struct fg_redis_opts *opts)
{
    FG_ASSERT(base != NULL && ep != NULL);
    struct fg_redis *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->magic = REDIS_MAGIC;
    r->base = base;
    r->ep = fg_redis_endpoint_ref(ep);
    r->stats = ep->stats;
    if (opts != NULL)
        r->opts = *opts;
    if (r->opts.max_inflight == 0)
        r->opts.max_inflight = 1000;
    if (r->opts.backoff_min_ms == 0)
        r->opts.backoff_min_ms = 100;
    if (r->opts.backoff_max_ms == 0)
        r->opts.backoff_max_ms = 5000;
    if (r->opts.backoff_max_ms < r->opts.backoff_min_ms)
        r->opts.backoff_max_ms = r->opts.backoff_min_ms;
    if (getrandom(&r->rng, sizeof(r->rng), 0) != sizeof(r->rng))
        r->rng = fg_mono_us() ^ (uintptr_t)r;
    r->rng |= 1;
    TAILQ_INIT(&r->subs);
    r->refresh_ev = evtimer_new(base, on_refresh, r);
    struct rnode *seed =
        r->refresh_ev != NULL ? node_add(r, ep->url.host, ep->url.port, ep->url.host) : NULL;
    if (seed == NULL) {
        fg_redis_free(r);
        return NULL;
    }
    seed->seed = true;
    fg_redis_endpoint_prepare(ep); /* IAM: credentials are fetched while we connect */
    if (ep->cluster == FG_REDIS_CLUSTER_OFF)
        r->mode_known = true;
    node_connect(seed);
    return r;
}

void fg_redis_free(struct fg_redis *r)
{
    if (r == NULL)
        return;
    FG_ASSERT(r->magic == REDIS_MAGIC);
    if (r->freeing)
        return; /* already closing, from inside one of its own callbacks */
    r->freeing = true;
    fg_redis_enter(r); /* the callbacks below (LOST answers) may not free it again */
    struct fg_redis_sub *s;
    while ((s = TAILQ_FIRST(&r->subs)) != NULL)
        fg_redis_unsubscribe(s);
    if (r->refresh_ev != NULL)
        event_del(r->refresh_ev);
    for (size_t i = 0; i < r->n_nodes; i++) {
        struct rnode *n = r->nodes[i];
        struct rconn *c;
        evtimer_del(n->reconnect_ev);
        evtimer_del(n->ps_reconnect_ev);
        evtimer_del(n->resolve_ev);
        if (n->next != NULL)
            fg_redis_conn_fail(n->next, NULL);
        if (n->active != NULL)
            fg_redis_conn_fail(n->active, NULL);
        while ((c = TAILQ_FIRST(&n->draining)) != NULL)
            fg_redis_conn_fail(c, NULL);
        if (n->pubsub != NULL)
            fg_redis_conn_fail(n->pubsub, NULL);
        struct fg_redis_req *q;
        TAILQ_FOREACH(q, &n->waiting, link)
        q->node = NULL;
        fg_redis_fail_list(&n->waiting);
        n->n_waiting = 0;
        if (n->probe != NULL) {
            struct evdns_getaddrinfo_request *d = n->probe;
            n->probe = NULL;
            evdns_getaddrinfo_cancel(d);
        }
    }
    r->free_pending = true;
    fg_redis_leave(r); /* frees it now, or when the callback it was called from returns */
}

static void really_free(struct fg_redis *r)
{
    if (r->refresh_ev != NULL)
        event_free(r->refresh_ev);
    for (size_t i = 0; i < r->n_nodes; i++) {
        struct rnode *n = r->nodes[i];
        event_free(n->reconnect_ev);
        event_free(n->ps_reconnect_ev);
        event_free(n->resolve_ev);
        free(n);
    }
    free(r->nodes);
    free(r->slots);
    if (r->dns != NULL)
        evdns_base_free(r->dns, 0);
    fg_redis_endpoint_unref(r->ep);
    r->magic = 0;
    free(r);
}

bool fg_redis_ready(const struct fg_redis *r)
{
    if (r == NULL || !r->mode_known)
        return false;
    if (!r->cluster) {
        const struct rconn *c = r->nodes[0]->active;
        return c != NULL && c->state == CS_READY;
    }
    if (r->covered < FG_REDIS_SLOTS)
        return false;
    for (size_t i = 0; i < r->n_nodes; i++) {
        const struct rnode *n = r->nodes[i];
        if (n->in_map && (n->active == NULL || n->active->state != CS_READY))
            return false;
    }
    return true;
}

bool fg_redis_is_cluster(const struct fg_redis *r)
{
    return r != NULL && r->mode_known && r->cluster;
}

static struct fg_redis_req *send_req(struct fg_redis *r, struct fg_redis_req *q, struct rconn *c,
                                     uint64_t timeout_ms, fg_redis_cb cb, void *arg)
{
    q->cb = cb;
    q->arg = arg;
    q->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
    q->deadline_us = fg_mono_us() + q->timeout_ms * 1000;
    struct timeval tmp;
    event_assign(&q->timer, r->base, -1, 0, on_req_timeout, q);
    if (event_add(&q->timer, common_tv(r, timeout_ms > 0 ? timeout_ms : 1, &tmp)) != 0 ||
        !fg_redis_conn_write(c, q)) {
        q->timer_set = true;
        q->cb = NULL;
        fg_redis_req_free(q);
        return NULL;
    }
    q->timer_set = true;
    return q;
}

struct fg_redis_req *fg_redis_command(struct fg_redis *r, const struct fg_redis_cmd *cmd,
                                      fg_redis_cb cb, void *arg)
{
    FG_ASSERT(r->magic == REDIS_MAGIC && cmd->argc > 0);
    if (r->freeing)
        return NULL;
    unsigned slot =
        cmd->key != NULL && r->cluster ? fg_redis_key_slot(cmd->key, cmd->key_len) : FG_REDIS_SLOTS;
    struct rconn *c = route(r, slot);
    if (c == NULL)
        return NULL;
    struct fg_redis_req *q = req_new(r, cmd->argc, cmd->argv, cmd->lens);
    if (q == NULL)
        return NULL;
    q->slot = slot;
    return send_req(r, q, c, cmd->timeout_ms, cb, arg);
}

struct fg_redis_req *fg_redis_eval(struct fg_redis *r, const struct fg_redis_script *s, int nkeys,
                                   const char *const *keys, const size_t *key_lens, int nargs,
                                   const char *const *args, const size_t *arg_lens,
                                   uint64_t timeout_ms, fg_redis_cb cb, void *arg)
{
    FG_ASSERT(r->magic == REDIS_MAGIC && nkeys >= 0 && nargs >= 0);
    if (r->freeing || nkeys + nargs > 64)
        return NULL;
    unsigned slot =
        nkeys > 0 && r->cluster
            ? fg_redis_key_slot(keys[0], key_lens != NULL ? key_lens[0] : strlen(keys[0]))
            : FG_REDIS_SLOTS;
    struct rconn *c = route(r, slot);
    if (c == NULL)
        return NULL;
    const char *argv[3 + 64];
    size_t lens[3 + 64];
    char nk[16];
    snprintf(nk, sizeof(nk), "%d", nkeys);
    argv[0] = argv[1] = NULL; /* EVALSHA sha, or EVAL source: chosen when written */
    lens[0] = lens[1] = 0;
    argv[2] = nk;
    lens[2] = strlen(nk);
    for (int i = 0; i < nkeys; i++) {
        argv[3 + i] = keys[i];
        lens[3 + i] = key_lens != NULL ? key_lens[i] : strlen(keys[i]);
    }
    for (int i = 0; i < nargs; i++) {
        argv[3 + nkeys + i] = args[i];
        lens[3 + nkeys + i] = arg_lens != NULL ? arg_lens[i] : strlen(args[i]);
    }
    struct fg_redis_req *q = req_new(r, 3 + nkeys + nargs, argv, lens);
    if (q == NULL)
        return NULL;
    q->script = s;
    q->slot = slot;
    return send_req(r, q, c, timeout_ms, cb, arg);
}

void fg_redis_cancel(struct fg_redis_req *q)
{
    if (q == NULL)
        return;
    FG_ASSERT(q->magic == REQ_MAGIC);
    q->cb = NULL;
    if (q->timer_set) {
        event_del(&q->timer);
        q->timer_set = false;
    }
    if (q->node != NULL) { /* not written yet: nothing will answer it */
        waiting_remove(q->node, q);
        fg_redis_req_free(q);
    }
}

/* ---- libevent's entry points (see fg_redis_enter) ---------------------------------------- */

void fg_redis_enter(struct fg_redis *r)
{
    r->busy++;
}

static void really_free(struct fg_redis *r);

void fg_redis_leave(struct fg_redis *r)
{
    FG_ASSERT(r->busy > 0);
    if (--r->busy == 0 && r->free_pending)
        really_free(r);
}

static void on_req_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct fg_redis *r = ((struct fg_redis_req *)arg)->r;
    fg_redis_enter(r);
    req_timed_out(fd, what, arg);
    fg_redis_leave(r);
}

static void on_reconnect(evutil_socket_t fd, short what, void *arg)
{
    struct fg_redis *r = ((struct rnode *)arg)->r;
    fg_redis_enter(r);
    reconnect_due(fd, what, arg);
    fg_redis_leave(r);
}

static void on_ps_reconnect(evutil_socket_t fd, short what, void *arg)
{
    struct fg_redis *r = ((struct rnode *)arg)->r;
    fg_redis_enter(r);
    ps_reconnect_due(fd, what, arg);
    fg_redis_leave(r);
}
