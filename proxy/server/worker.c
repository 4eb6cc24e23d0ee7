/*
 * worker.c — the process model: N worker threads, each with its own event_base, its own
 * SO_REUSEPORT listening sockets (the kernel spreads connections), its own upstream pools
 * and its own counters. The main thread only loads configs, binds sockets and signals the
 * workers through an event it activates on their bases.
 */
#include "server/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/thread.h>

static struct {
    struct fg_worker *workers;
    size_t n;
    pthread_mutex_t lock; /* guards cfg */
    struct fg_config *cfg;
    _Atomic bool draining;
    uint64_t start_ms;
} S = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* ---- sockets --------------------------------------------------------------------------- */

static int listen_socket(const struct fg_conf_listen *l)
{
    const struct fg_addr *a = &l->addr;
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* One socket per worker on the same port: the kernel balances accepts between them
     * without a shared accept lock (no thundering herd). */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        goto fail;
    if (a->ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0)
        goto fail;
    if (listen(fd, l->backlog > 0 ? l->backlog : 4096) < 0)
        goto fail;
    return fd;
fail:;
    int e = errno;
    close(fd);
    errno = e;
    return -1;
}

static bool addr_same(const struct fg_addr *a, const struct fg_addr *b)
{
    return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

/* 0 when nobody else listens on a: bound once without SO_REUSEPORT, the socket collides
 * with any listener there, one with SO_REUSEPORT included (which our own listen sockets
 * would otherwise join, sharing the port's connections with another process). Else an
 * errno. The probe is closed at once; the race with another start in between is
 * closed by the pid file lock when both use the same config. */
static int probe_addr(const struct fg_addr *a)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    int one = 1;
    /* SO_REUSEADDR: a TIME_WAIT leftover of an earlier run is nobody's listener */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (a->ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    int r = bind(fd, (const struct sockaddr *)&a->ss, a->len) == 0 ? 0 : errno;
    close(fd);
    return r;
}

static const char *probe_error(int e)
{
    return e == EADDRINUSE ? "the address is in use by another process (another flashgate with "
                             "this configuration?); refusing to share its port"
                           : strerror(e);
}

static const char *config_name(const struct fg_config *cfg)
{
    return cfg->path != NULL ? cfg->path : "flashgate.conf";
}

bool fg_server_probe_ports(const struct fg_config *cfg, struct fg_config_errors *errs)
{
    bool ok = true;
    for (size_t s = 0; s < cfg->n_servers; s++) {
        for (size_t l = 0; l < cfg->servers[s].n_listens; l++) {
            const struct fg_conf_listen *cl = &cfg->servers[s].listens[l];
            int e = probe_addr(&cl->addr);
            if (e != 0) {
                fg_config_error_add(errs, "%s:%zu: listen %s: %s", config_name(cfg), cl->line,
                                    cl->addr.text, probe_error(e));
                ok = false;
            }
        }
    }
    if (cfg->admin.enabled) {
        int e = probe_addr(&cfg->admin.addr);
        if (e != 0 && cfg->admin.line > 0)
            fg_config_error_add(errs, "%s:%zu: admin listen %s: %s", config_name(cfg),
                                cfg->admin.line, cfg->admin.addr.text, probe_error(e));
        else if (e != 0)
            fg_config_error_add(errs, "%s: admin listen %s (the default): %s", config_name(cfg),
                                cfg->admin.addr.text, probe_error(e));
        ok = ok && e == 0;
    }
    return ok;
}

static bool addr_is_any(const struct fg_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    if (a->ss.ss_family == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
    return false;
}

/* Does the running config listen on an address that overlaps a (same family and port,
 * one of them the wildcard)? Then a probe of a would collide with our own socket. */
static bool overlaps_running(const struct fg_config *cfg, const struct fg_addr *a)
{
    for (size_t s = 0; s < cfg->n_servers; s++) {
        for (size_t l = 0; l < cfg->servers[s].n_listens; l++) {
            const struct fg_addr *b = &cfg->servers[s].listens[l].addr;
            if (a->ss.ss_family == b->ss.ss_family &&
                fg_addr_port((const struct sockaddr *)&a->ss) ==
                    fg_addr_port((const struct sockaddr *)&b->ss) &&
                (addr_is_any(a) || addr_is_any(b)))
                return true;
        }
    }
    return false;
}

static bool config_has_listen(const struct fg_config *cfg, const struct fg_addr *a, size_t *server,
                              size_t *listen)
{
    if (cfg == NULL)
        return false;
    for (size_t s = 0; s < cfg->n_servers; s++) {
        for (size_t i = 0; i < cfg->servers[s].n_listens; i++) {
            if (addr_same(&cfg->servers[s].listens[i].addr, a)) {
                if (server)
                    *server = s;
                if (listen)
                    *listen = i;
                return true;
            }
        }
    }
    return false;
}

/* ---- snapshots and stats registry ---------------------------------------------------- */

struct fg_upstream_stats *fg_worker_upstream_stats(struct fg_worker *w,
                                                   const struct fg_conf_upstream *u)
{
    for (size_t i = 0; i < w->n_ustats; i++) {
        if (strcmp(w->ustats[i]->name, u->name) == 0) {
            struct fg_upstream_stats *st = w->ustats[i];
            /* Servers may have changed on reload: counters follow the addresses. */
            pthread_mutex_lock(&w->ustats_lock);
            for (size_t s = 0; s < u->n_servers && s < FG_UPSTREAM_MAX_SERVERS; s++) {
                if (strcmp(st->servers[s].address, u->servers[s].addr.text) != 0) {
                    memset(&st->servers[s], 0, sizeof(st->servers[s]));
                    snprintf(st->servers[s].address, sizeof(st->servers[s].address), "%s",
                             u->servers[s].addr.text);
                }
            }
            st->n_servers =
                u->n_servers < FG_UPSTREAM_MAX_SERVERS ? u->n_servers : FG_UPSTREAM_MAX_SERVERS;
            atomic_store(&st->connections_idle, 0);
            pthread_mutex_unlock(&w->ustats_lock);
            return st;
        }
    }
    struct fg_upstream_stats *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return NULL;
    snprintf(st->name, sizeof(st->name), "%s", u->name);
    st->n_servers = u->n_servers < FG_UPSTREAM_MAX_SERVERS ? u->n_servers : FG_UPSTREAM_MAX_SERVERS;
    for (size_t s = 0; s < st->n_servers; s++)
        snprintf(st->servers[s].address, sizeof(st->servers[s].address), "%s",
                 u->servers[s].addr.text);
    pthread_mutex_lock(&w->ustats_lock);
    struct fg_upstream_stats **arr = realloc(w->ustats, (w->n_ustats + 1) * sizeof(*arr));
    if (arr != NULL) {
        w->ustats = arr;
        w->ustats[w->n_ustats++] = st;
    }
    pthread_mutex_unlock(&w->ustats_lock);
    if (arr == NULL) {
        free(st);
        return NULL;
    }
    return st;
}

static struct fg_snap *snap_new(struct fg_worker *w, struct fg_config *cfg)
{
    struct fg_snap *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->cfg = fg_config_ref(cfg);
    s->pools = calloc(cfg->n_upstreams ? cfg->n_upstreams : 1, sizeof(*s->pools));
    s->caches = calloc(cfg->n_caches ? cfg->n_caches : 1, sizeof(*s->caches));
    FG_ASSERT(s->caches != NULL);
    if (!fg_stage_limit_snap_init(w, s))
        FG_ASSERT(!"out of memory creating rate limits");
    if (!fg_stage_waitroom_snap_init(w, s))
        FG_ASSERT(!"out of memory creating waiting rooms");
    if (!fg_route_stats_snap_init(w, s))
        FG_ASSERT(!"out of memory creating route counters");
    for (size_t i = 0; i < cfg->n_caches; i++) {
        const struct fg_conf_cache *k = &cfg->caches[i];
        struct fg_cache_limits lim = {.memory = k->memory, .max_object = k->max_object};
        s->caches[i] = fg_cache_registry_get(k->name, &lim);
        if (s->caches[i] == NULL)
            fg_err("cache %s could not be created (out of memory): its routes pass through",
                   cfg->caches[i].name);
    }
    s->fleet = fg_fleet_worker_new(w->base, cfg);
    for (size_t i = 0; i < cfg->n_upstreams; i++) {
        struct fg_upstream_stats *st = fg_worker_upstream_stats(w, &cfg->upstreams[i]);
        s->pools[i] = st ? fg_upstream_pool_new(w->base, &cfg->upstreams[i], st) : NULL;
        if (s->pools[i] == NULL)
            FG_ASSERT(!"out of memory creating upstream pools");
    }
    return s;
}

static void snap_free(struct fg_snap *s)
{
    for (size_t i = 0; i < s->cfg->n_upstreams; i++)
        fg_upstream_pool_retire(s->pools[i]);
    free(s->pools);
    free(s->caches);
    fg_stage_limit_snap_free(s);
    fg_stage_waitroom_snap_free(s);
    fg_stage_offload_snap_free(s);
    fg_route_stats_snap_free(s);
    fg_fleet_worker_free(s->fleet);
    fg_config_unref(s->cfg);
    free(s);
}

void fg_snap_release(struct fg_worker *w, struct fg_snap *s)
{
    FG_ASSERT(s->users > 0);
    if (--s->users == 0 && s->retired)
        snap_free(s);
}

uint64_t fg_worker_random(struct fg_worker *w)
{
    /* xorshift128+: request ids need to be unique, not secret */
    uint64_t s1 = w->rng[0];
    const uint64_t s0 = w->rng[1];
    w->rng[0] = s0;
    s1 ^= s1 << 23;
    w->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return w->rng[1] + s0;
}

/* ---- listeners ------------------------------------------------------------------------- */

static void accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    fg_conn_accept(arg, fd, sa, salen);
}

static void accept_error_cb(struct evconnlistener *evl, void *arg)
{
    int e = EVUTIL_SOCKET_ERROR();
    /* Out of fds or memory: keep the listener, the kernel queue holds the clients. */
    fg_err("accept failed: %s", evutil_socket_error_to_string(e));
}

static bool listener_add(struct fg_worker *w, int fd, const struct fg_addr *addr)
{
    struct fg_listener *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return false;
    l->w = w;
    l->addr = *addr;
    l->port = fg_addr_port((const struct sockaddr *)&addr->ss);
    snprintf(l->port_text, sizeof(l->port_text), "%d", l->port);
    /* Backlog 0: the socket already listens with the configured backlog; -1 would make
     * libevent call listen(fd, 128) again and shrink the accept queue under a burst. */
    l->evl = evconnlistener_new(w->base, accept_cb, l,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
    if (l->evl == NULL) {
        free(l);
        return false;
    }
    evconnlistener_set_error_cb(l->evl, accept_error_cb);
    config_has_listen(w->snap->cfg, addr, &l->server_index, &l->listen_index);
    LIST_INSERT_HEAD(&w->listeners, l, link);
    return true;
}

static void listeners_close_all(struct fg_worker *w)
{
    struct fg_listener *l;
    while ((l = LIST_FIRST(&w->listeners)) != NULL) {
        LIST_REMOVE(l, link);
        evconnlistener_free(l->evl);
        /* Connections keep a pointer to their listener: it stays allocated (tiny) until
         * the worker is gone. */
        l->evl = NULL;
        LIST_INSERT_HEAD(&w->closed_listeners, l, link);
    }
}

/* ---- worker thread messages ------------------------------------------------------------ */

static void close_idle_conns(struct fg_worker *w)
{
    struct fg_conn *c = LIST_FIRST(&w->conns);
    while (c != NULL) {
        struct fg_conn *next = LIST_NEXT(c, link);
        fg_conn_close_if_idle(c);
        c = next;
    }
    for (size_t i = 0; i < w->snap->cfg->n_upstreams; i++)
        fg_upstream_pool_close_idle(w->snap->pools[i]);
}

static void worker_apply_config(struct fg_worker *w, struct fg_config *cfg, int *fds,
                                struct fg_addr *addrs, size_t nfds)
{
    struct fg_snap *old = w->snap;
    struct fg_snap *s = snap_new(w, cfg);
    fg_config_unref(cfg); /* snap_new took its own reference */
    if (s == NULL) {
        fg_err("worker %u: out of memory applying the new config; keeping the old one", w->id);
        for (size_t i = 0; i < nfds; i++)
            close(fds[i]);
        return;
    }
    w->snap = s;
    /* Reconcile listeners: keep those still configured, close the others, add new ones. */
    struct fg_listener *l = LIST_FIRST(&w->listeners);
    while (l != NULL) {
        struct fg_listener *next = LIST_NEXT(l, link);
        if (!config_has_listen(s->cfg, &l->addr, &l->server_index, &l->listen_index)) {
            LIST_REMOVE(l, link);
            evconnlistener_free(l->evl);
            l->evl = NULL;
            l->server_index = 0;
            l->listen_index = 0;
            LIST_INSERT_HEAD(&w->closed_listeners, l, link);
            /* Connections on it finish their request, then close (stop_accepting is not
             * set, but the listener's server index may no longer exist). */
        }
        l = next;
    }
    for (size_t i = 0; i < nfds; i++) {
        if (!listener_add(w, fds[i], &addrs[i])) {
            fg_err("worker %u: cannot listen on %s", w->id, addrs[i].text);
            close(fds[i]);
        }
    }
    old->retired = true;
    if (old->users == 0)
        snap_free(old);
}

static void worker_msg_cb(evutil_socket_t fd, short what, void *arg)
{
    struct fg_worker *w = arg;
    uint64_t n;
    if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        fg_err("worker %u: reading its wake-up: %s", w->id, strerror(errno));
    pthread_mutex_lock(&w->msg_lock);
    struct fg_config *cfg = w->pending_cfg;
    int *fds = w->pending_fds;
    struct fg_addr *addrs = w->pending_addrs;
    size_t nfds = w->n_pending_fds;
    bool stop_accept = w->pending_stop_accept;
    bool exit_now = w->pending_exit;
    w->pending_cfg = NULL;
    w->pending_fds = NULL;
    w->pending_addrs = NULL;
    w->n_pending_fds = 0;
    w->pending_stop_accept = false;
    pthread_mutex_unlock(&w->msg_lock);

    if (cfg != NULL)
        worker_apply_config(w, cfg, fds, addrs, nfds);
    free(fds);
    free(addrs);
    if (stop_accept && !w->stop_accepting) {
        w->stop_accepting = true;
        listeners_close_all(w);
        close_idle_conns(w);
    }
    if (exit_now) {
        /* The drain deadline (or a stop): open tunnels close now, each with its log line. */
        fg_tunnel_close_all(w);
        event_base_loopbreak(w->base);
    }
}

/* Wake a worker from the main thread. An eventfd rather than event_active() lets the
 * worker's event_base run without locks (EVENT_BASE_FLAG_NOLOCK): every event_add on the
 * request path would otherwise take a mutex nobody else ever contends. */
static void worker_wake(struct fg_worker *w)
{
    uint64_t one = 1;
    if (write(w->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        fg_err("worker %u: cannot wake it: %s", w->id, strerror(errno));
}

static void alog_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    fg_accesslog_flush(arg);
    fg_txn_trim(arg, fg_mono_ms());
}

static void *worker_main(void *arg)
{
    struct fg_worker *w = arg;
    char name[16]; /* for top -H and the benchmarks, which count the workers' CPU apart */
    snprintf(name, sizeof(name), "fg-worker-%u", w->id % 10000);
    pthread_setname_np(pthread_self(), name);
    event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

/* ---- public ---------------------------------------------------------------------------- */

static unsigned worker_count(const struct fg_config *cfg)
{
    if (cfg->workers > 0)
        return cfg->workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

bool fg_server_start(struct fg_config *cfg)
{
    evthread_use_pthreads();
    S.start_ms = fg_mono_ms();
    S.n = worker_count(cfg);
    S.workers = calloc(S.n, sizeof(*S.workers));
    if (S.workers == NULL)
        return false;
    S.cfg = fg_config_ref(cfg);
    if (!fg_accesslog_start())
        return false;
    fg_route_stats_global_init(S.n);
    if (!fg_stage_limit_global_init(cfg, S.n)) {
        fg_err("out of memory for the rate-limit table (limit_table_entries)");
        return false;
    }
    if (!fg_stage_waitroom_global_init(S.n)) {
        fg_err("the waiting rooms' thread could not start");
        return false;
    }
    for (size_t i = 0; i < S.n; i++) {
        struct fg_worker *w = &S.workers[i];
        w->id = (unsigned)i;
        /* The changelist folds an EV_WRITE enabled and disabled within one loop turn
         * into no epoll_ctl at all (fg_flush relies on it). */
        struct event_config *ec = event_config_new();
        event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        event_config_set_flag(ec, EVENT_BASE_FLAG_NOLOCK);
        w->base = event_base_new_with_config(ec);
        event_config_free(ec);
        if (w->base == NULL)
            return false;
        pthread_mutex_init(&w->msg_lock, NULL);
        pthread_mutex_init(&w->ustats_lock, NULL);
        LIST_INIT(&w->listeners);
        LIST_INIT(&w->closed_listeners);
        LIST_INIT(&w->conns);
        TAILQ_INIT(&w->free_txns);
        w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (w->wake_fd < 0)
            return false;
        w->msg_ev = event_new(w->base, w->wake_fd, EV_READ | EV_PERSIST, worker_msg_cb, w);
        event_add(w->msg_ev, NULL);
        w->cache_notifier = fg_cache_notifier_new(w->base);
        w->offload = fg_offload_client_new(w->base, &w->stats.offload);
        if (w->cache_notifier == NULL || w->offload == NULL)
            return false;
        w->alog = evbuffer_new();
        w->alog_timer = event_new(w->base, -1, EV_PERSIST, alog_timer_cb, w);
        struct timeval sec = {.tv_sec = 0, .tv_usec = 250000};
        event_add(w->alog_timer, &sec);
        if (getrandom(w->rng, sizeof(w->rng), 0) != sizeof(w->rng))
            w->rng[0] = (uint64_t)fg_wall_ms() ^ i, w->rng[1] = 0x9e3779b97f4a7c15ull;
        w->snap = snap_new(w, cfg);
        if (w->snap == NULL)
            return false;
    }
    for (size_t s = 0; s < cfg->n_servers; s++) {
        for (size_t l = 0; l < cfg->servers[s].n_listens; l++) {
            const struct fg_conf_listen *cl = &cfg->servers[s].listens[l];
            for (size_t i = 0; i < S.n; i++) {
                int fd = listen_socket(cl);
                if (fd < 0) {
                    fg_err("%s:%zu: cannot listen on %s: %s", config_name(cfg), cl->line,
                           cl->addr.text, strerror(errno));
                    return false;
                }
                if (!listener_add(&S.workers[i], fd, &cl->addr)) {
                    close(fd);
                    return false;
                }
            }
            fg_notice("listening on %s (%zu workers)", cl->addr.text, S.n);
        }
    }
    return true;
}

bool fg_server_run(void)
{
    for (size_t i = 0; i < S.n; i++) {
        if (pthread_create(&S.workers[i].thread, NULL, worker_main, &S.workers[i]) != 0) {
            fg_err("cannot start worker thread %zu: %s", i, strerror(errno));
            return false;
        }
    }
    return true;
}

bool fg_server_reload(struct fg_config *cfg)
{
    /* Bind new addresses first, in this thread: a failure refuses the reload whole. */
    size_t n_new = 0;
    struct fg_addr *addrs = NULL;
    const struct fg_conf_listen **lists = NULL;
    for (size_t s = 0; s < cfg->n_servers; s++) {
        for (size_t l = 0; l < cfg->servers[s].n_listens; l++) {
            const struct fg_conf_listen *cl = &cfg->servers[s].listens[l];
            if (config_has_listen(S.cfg, &cl->addr, NULL, NULL))
                continue;
            lists = realloc(lists, (n_new + 1) * sizeof(*lists));
            lists[n_new++] = cl;
        }
    }
    int *fds = calloc(n_new * S.n + 1, sizeof(int));
    bool ok = fds != NULL;
    size_t opened = 0;
    for (size_t k = 0; ok && k < n_new; k++) {
        int e = overlaps_running(S.cfg, &lists[k]->addr) ? 0 : probe_addr(&lists[k]->addr);
        if (e != 0) {
            fg_err("%s:%zu: reload refused: listen %s: %s; the old config keeps running",
                   config_name(cfg), lists[k]->line, lists[k]->addr.text, probe_error(e));
            ok = false;
            break;
        }
        for (size_t i = 0; i < S.n; i++) {
            int fd = listen_socket(lists[k]);
            if (fd < 0) {
                fg_err("%s:%zu: reload refused: cannot listen on %s: %s; the old config keeps "
                       "running",
                       config_name(cfg), lists[k]->line, lists[k]->addr.text, strerror(errno));
                ok = false;
                break;
            }
            fds[opened++] = fd;
        }
    }
    if (!ok) {
        for (size_t i = 0; i < opened; i++)
            close(fds[i]);
        free(fds);
        free(lists);
        return false;
    }
    for (size_t i = 0; i < S.n; i++) {
        struct fg_worker *w = &S.workers[i];
        int *wfds = calloc(n_new + 1, sizeof(int));
        struct fg_addr *waddrs = calloc(n_new + 1, sizeof(*waddrs));
        for (size_t k = 0; k < n_new; k++) {
            wfds[k] = fds[k * S.n + i];
            waddrs[k] = lists[k]->addr;
        }
        pthread_mutex_lock(&w->msg_lock);
        if (w->pending_cfg != NULL) /* an earlier reload not yet picked up */
            fg_config_unref(w->pending_cfg);
        w->pending_cfg = fg_config_ref(cfg);
        free(w->pending_fds);
        free(w->pending_addrs);
        w->pending_fds = wfds;
        w->pending_addrs = waddrs;
        w->n_pending_fds = n_new;
        pthread_mutex_unlock(&w->msg_lock);
        worker_wake(w);
    }
    free(fds);
    free(lists);
    free(addrs);
    pthread_mutex_lock(&S.lock);
    struct fg_config *old = S.cfg;
    S.cfg = fg_config_ref(cfg);
    pthread_mutex_unlock(&S.lock);
    fg_config_unref(old);
    return true;
}

void fg_server_begin_drain(void)
{
    atomic_store(&S.draining, true);
}

bool fg_server_draining(void)
{
    return atomic_load(&S.draining);
}

void fg_server_stop_accepting(void)
{
    for (size_t i = 0; i < S.n; i++) {
        pthread_mutex_lock(&S.workers[i].msg_lock);
        S.workers[i].pending_stop_accept = true;
        pthread_mutex_unlock(&S.workers[i].msg_lock);
        worker_wake(&S.workers[i]);
    }
}

unsigned long fg_server_inflight(void)
{
    unsigned long n = 0;
    for (size_t i = 0; i < S.n; i++)
        n += atomic_load(&S.workers[i].open_conns);
    return n;
}

void fg_server_stop(void)
{
    for (size_t i = 0; i < S.n; i++) {
        pthread_mutex_lock(&S.workers[i].msg_lock);
        S.workers[i].pending_exit = true;
        pthread_mutex_unlock(&S.workers[i].msg_lock);
        worker_wake(&S.workers[i]);
    }
    for (size_t i = 0; i < S.n; i++) {
        pthread_join(S.workers[i].thread, NULL);
        fg_accesslog_flush(&S.workers[i]);
        struct fg_listener *l;
        while ((l = LIST_FIRST(&S.workers[i].closed_listeners)) != NULL) {
            LIST_REMOVE(l, link);
            free(l);
        }
    }
    fg_accesslog_stop();
}

struct fg_config *fg_server_config(void)
{
    pthread_mutex_lock(&S.lock);
    struct fg_config *c = fg_config_ref(S.cfg);
    pthread_mutex_unlock(&S.lock);
    return c;
}

void fg_server_stats_json(struct evbuffer *out)
{
    struct fg_config *cfg = fg_server_config();
    fg_stats_json(out, S.workers, S.n, cfg, (fg_mono_ms() - S.start_ms) / 1000,
                  fg_server_draining());
    fg_config_unref(cfg);
}

void fg_server_sample(struct fg_admin_sample *out)
{
    struct fg_config *cfg = fg_server_config();
    fg_stats_sample(out, S.workers, S.n, cfg, (fg_mono_ms() - S.start_ms) / 1000,
                    fg_server_draining());
    fg_config_unref(cfg);
}

void fg_server_metrics(struct evbuffer *out)
{
    struct fg_config *cfg = fg_server_config();
    fg_stats_metrics(out, S.workers, S.n, cfg, (fg_mono_ms() - S.start_ms) / 1000,
                     fg_server_draining());
    fg_config_unref(cfg);
}
