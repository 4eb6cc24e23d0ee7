/*
 * conn.c — one connection to one Redis node, over a libevent bufferevent (plain, or TLS
 * through proxy/tls's verified client), with hiredis as the RESP codec only.
 *
 * Life: RESOLVING (the node's name looked up again with evdns: a failover that moves the
 * name is followed on the next connection) → CONNECTING (our own non-blocking TCP connect,
 * so that a refused port is told apart from a failed handshake) → TLS (rediss://: the
 * handshake, the certificate checked) → HANDSHAKE (AUTH with the password or a fresh IAM
 * token, SELECT, the slot-map question, all pipelined) → READY → CLOSED. One timer bounds
 * the way to READY (connect_timeout), then says when the connection is too old
 * (max_connection_age), then, once replaced, how long its last answers may take.
 *
 * Commands are written as they come (write-through: one send per command when nothing
 * waits, libevent's buffer otherwise) and answered in order, so the requests in flight
 * are a FIFO. Failures never run a callback from inside the function that met them when a
 * caller could be in the middle of an update: a failure found while the connection is
 * being created is reported from its timer, on the next loop turn.
 */
#include "redis/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "tls/tls.h"

#define CONN_MAGIC 0x72636e6eu /* "rcnn" */

static void conn_free(struct rconn *c);
static void start_connect(struct rconn *c);
static void send_handshake(struct rconn *c);
static void on_read(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);
static void on_poll(evutil_socket_t fd, short what, void *arg);
static void on_timer(evutil_socket_t fd, short what, void *arg);
static void on_connect(evutil_socket_t fd, short what, void *arg);

static struct timeval tv_ms(uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

static const char *state_name(enum conn_state s)
{
    switch (s) {
    case CS_RESOLVING:
        return "resolving the name";
    case CS_CONNECTING:
        return "connecting";
    case CS_TLS:
        return "in the TLS handshake";
    case CS_HANDSHAKE:
        return "authenticating";
    case CS_READY:
        return "ready";
    case CS_CLOSED:
        return "closed";
    }
    return "?";
}

/* Report a failure from the timer, on the next loop turn. */
static void fail_soon(struct rconn *c, const char *why)
{
    if (c->why[0] == '\0')
        snprintf(c->why, sizeof(c->why), "%s", why);
    evtimer_del(c->timer);
    event_active(c->timer, EV_READ, 0); /* EV_READ: "fail now", see on_timer */
}

/* ---- requests on the wire ------------------------------------------------------------ */

/* Format and write one command; the formatted copy is wiped first when it holds a
 * secret. Write-through on plain sockets: when nothing waits in the output buffer the
 * command goes out at once with one send(), instead of arming EPOLLOUT and writing on the
 * next loop turn (a decision would wait a turn, and pay two epoll_ctl). The TLS
 * bufferevent already writes at once. */
static bool write_cmd(struct rconn *c, int argc, const char **argv, const size_t *lens, bool secret)
{
    char *cmd = NULL;
    long long n = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (n < 0 || cmd == NULL)
        return false;
    size_t len = (size_t)n, done = 0;
    if (c->ssl == NULL && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        ssize_t w = send(bufferevent_getfd(c->bev), cmd, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0)
            done = (size_t)w; /* an error is the bufferevent's to find and report */
    }
    int rc = done < len ? bufferevent_write(c->bev, cmd + done, len - done) : 0;
    if (secret)
        OPENSSL_cleanse(cmd, len);
    redisFreeCommand(cmd);
    return rc == 0;
}

static struct fg_redis_req *internal_new(struct fg_redis *r, req_handler h)
{
    struct fg_redis_req *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return NULL;
    q->magic = REQ_MAGIC;
    q->r = r;
    q->handler = h;
    q->slot = FG_REDIS_SLOTS;
    return q;
}

static void inflight_push(struct rconn *c, struct fg_redis_req *q)
{
    q->conn = c;
    q->sent_us = fg_mono_us();
    TAILQ_INSERT_TAIL(&c->inflight, q, link);
    c->n_inflight++;
    if (q->handler != NULL)
        c->n_internal++;
}

/* Send a command whose answer goes to h (h NULL: no answer expected in order, as for
 * pub/sub subscriptions). */
static bool send_internal(struct rconn *c, int argc, const char **argv, const size_t *lens,
                          req_handler h, bool secret)
{
    struct fg_redis_req *q = NULL;
    if (h != NULL && (q = internal_new(c->r, h)) == NULL)
        return false;
    if (!write_cmd(c, argc, argv, lens, secret)) {
        free(q);
        return false;
    }
    if (q != NULL)
        inflight_push(c, q);
    return true;
}

bool fg_redis_conn_send(struct rconn *c, int argc, const char **argv, const size_t *lens,
                        req_handler h)
{
    return c->bev != NULL && send_internal(c, argc, argv, lens, h, false);
}

static bool has_script(const struct rconn *c, const struct fg_redis_script *s)
{
    for (size_t i = 0; i < c->n_scripts; i++)
        if (c->scripts[i] == s)
            return true;
    return false;
}

static void on_script_loaded(struct rconn *c, struct fg_redis_req *q, redisReply *reply)
{
    (void)q;
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
        fg_debug("redis %s: %s:%d: SCRIPT LOAD refused (%.150s); EVAL will be used", c->r->ep->name,
                 c->node->host, c->node->port, reply->str);
}

static void on_asking(struct rconn *c, struct fg_redis_req *q, redisReply *reply)
{
    (void)c, (void)q, (void)reply; /* +OK; an error shows in the command that follows */
}

bool fg_redis_conn_write(struct rconn *c, struct fg_redis_req *q)
{
    FG_ASSERT(c->state == CS_READY && c->bev != NULL);
    if (q->script != NULL) {
        if (!q->eval && !has_script(c, q->script)) {
            /* Loaded once per connection, in the same write as its first EVALSHA. */
            const char *a[] = {"SCRIPT", "LOAD", q->script->source};
            if (c->n_scripts == c->cap_scripts) {
                size_t nc = c->cap_scripts ? c->cap_scripts * 2 : 4;
                const struct fg_redis_script **ns = realloc(c->scripts, nc * sizeof(*ns));
                if (ns == NULL)
                    return false;
                c->scripts = ns;
                c->cap_scripts = nc;
            }
            if (!send_internal(c, 3, a, NULL, on_script_loaded, false))
                return false;
            c->scripts[c->n_scripts++] = q->script;
        }
        q->argv[0] = q->eval ? "EVAL" : "EVALSHA";
        q->lens[0] = strlen(q->argv[0]);
        q->argv[1] = q->eval ? q->script->source : q->script->sha;
        q->lens[1] = strlen(q->argv[1]);
        if (q->eval && !has_script(c, q->script) && c->n_scripts < c->cap_scripts)
            c->scripts[c->n_scripts++] = q->script; /* EVAL loads it too */
    }
    if (q->asking) {
        /* ASKING covers the very next command only: right before it */
        const char *a[] = {"ASKING"};
        if (!send_internal(c, 1, a, NULL, on_asking, false))
            return false;
    }
    if (!write_cmd(c, q->argc, q->argv, q->lens, false))
        return false;
    inflight_push(c, q);
    return true;
}

void fg_redis_conn_forget_scripts(struct rconn *c)
{
    c->n_scripts = 0;
}

/* ---- the handshake -------------------------------------------------------------------- */

static void handshake_step_done(struct rconn *c);

/* An error answer during the handshake: classify it, count it, close. */
static void handshake_refused(struct rconn *c, const char *what, const redisReply *reply)
{
    struct fg_redis_counters *st = c->r->stats;
    const char *e = reply->str != NULL ? reply->str : "";
    if (strncmp(e, "WRONGPASS", 9) == 0)
        rstat_add(st, RS_AUTH_WRONGPASS, 1);
    else if (strncmp(e, "NOAUTH", 6) == 0)
        rstat_add(st, RS_AUTH_NOAUTH, 1);
    else if (strncmp(e, "NOPERM", 6) == 0)
        rstat_add(st, RS_AUTH_NOPERM, 1);
    else if (strcmp(what, "AUTH") == 0)
        rstat_add(st, RS_AUTH_OTHER, 1);
    char why[260];
    if (strncmp(e, "NOAUTH", 6) == 0)
        snprintf(why, sizeof(why),
                 "%s refused: the server wants a password and none is "
                 "configured (%.100s)",
                 what, e);
    else
        snprintf(why, sizeof(why), "%s refused: %.150s", what, e);
    fg_redis_conn_fail(c, why);
}

static void on_auth(struct rconn *c, struct fg_redis_req *q, redisReply *reply)
{
    (void)q;
    if (reply == NULL)
        return;
    if (reply->type == REDIS_REPLY_ERROR)
        handshake_refused(c, "AUTH", reply);
    else
        handshake_step_done(c);
}

static void on_select(struct rconn *c, struct fg_redis_req *q, redisReply *reply)
{
    (void)q;
    if (reply == NULL)
        return;
    if (reply->type == REDIS_REPLY_ERROR)
        handshake_refused(c, "SELECT", reply);
    else
        handshake_step_done(c);
}

static bool starts(const redisReply *r, const char *prefix)
{
    return r->type == REDIS_REPLY_ERROR && r->str != NULL &&
           strncmp(r->str, prefix, strlen(prefix)) == 0;
}

static void on_map(struct rconn *c, struct fg_redis_req *q, redisReply *reply);

static bool ask_map(struct rconn *c, unsigned flags)
{
    const char *shards[] = {"CLUSTER", "SHARDS"}, *slots[] = {"CLUSTER", "SLOTS"};
    struct fg_redis_req *q = internal_new(c->r, on_map);
    if (q == NULL)
        return false;
    q->flags = flags;
    if (!write_cmd(c, 2, (flags & REQF_SHARDS) ? shards : slots, NULL, false)) {
        free(q);
        return false;
    }
    inflight_push(c, q);
    return true;
}

bool fg_redis_conn_ask_map(struct rconn *c, bool handshake)
{
    if (c->bev == NULL)
        return false;
    return ask_map(c, REQF_SHARDS | (handshake ? REQF_HANDSHAKE : 0));
}

/* The answer to CLUSTER SHARDS or SLOTS: the slot map, or "not a cluster". */
static void on_map(struct rconn *c, struct fg_redis_req *q, redisReply *reply)
{
    struct fg_redis *r = c != NULL ? c->r : q->r;
    bool handshake = (q->flags & REQF_HANDSHAKE) != 0;
    bool shards = (q->flags & REQF_SHARDS) != 0;
    if (!handshake)
        r->refresh_inflight = false;
    if (reply == NULL)
        return; /* the connection closed: a refresh is asked for by whoever notices */
    if (reply->type == REDIS_REPLY_ERROR) {
        if (starts(reply, "ERR This instance has cluster support disabled")) {
            if (r->ep->cluster == FG_REDIS_CLUSTER_ON) {
                fg_redis_conn_fail(c, "cluster on, but the server is not a cluster (set "
                                      "cluster off or auto)");
                return;
            }
            fg_redis_set_standalone(r);
            if (handshake)
                handshake_step_done(c);
            return;
        }
        if (shards && (starts(reply, "ERR unknown") || starts(reply, "ERR Unknown"))) {
            /* before Redis 7: the same question as CLUSTER SLOTS */
            if (!ask_map(c, q->flags & ~REQF_SHARDS))
                fg_redis_conn_fail(c, "out of memory");
            else if (!handshake)
                r->refresh_inflight = true;
            return;
        }
        if (handshake) {
            handshake_refused(c, shards ? "CLUSTER SHARDS" : "CLUSTER SLOTS", reply);
            return;
        }
        fg_debug("redis %s: slot map refused (%.150s)", r->ep->name, reply->str);
        fg_redis_want_refresh(r);
        return;
    }
    char err[160] = "";
    size_t n = 0;
    struct slot_range *m = shards
                               ? fg_redis_parse_shards(reply, r->ep->url.tls, &n, err, sizeof(err))
                               : fg_redis_parse_slots(reply, &n, err, sizeof(err));
    if (m == NULL && err[0] != '\0') {
        if (handshake) {
            char why[200];
            snprintf(why, sizeof(why), "slot map: %s", err);
            fg_redis_conn_fail(c, why);
        } else {
            fg_warn("redis %s: %s; keeping the slot map", r->ep->name, err);
        }
        return;
    }
    fg_redis_apply_map(r, c, m, n);
    free(m);
    if (handshake && c->state == CS_HANDSHAKE)
        handshake_step_done(c);
}

static void become_ready(struct rconn *c)
{
    struct fg_redis *r = c->r;
    c->state = CS_READY;
    c->ready_us = fg_mono_us();
    evtimer_del(c->timer);
    uint64_t age = r->ep->max_age_ms;
    if (age > 0) {
        /* Up to a tenth earlier, so that the workers (and the fleet) do not all reconnect
         * in the same second. */
        age -= fg_redis_jitter(r, age / 10);
        struct timeval tv = tv_ms(age);
        evtimer_add(c->timer, &tv);
    }
    rstat_add(r->stats, RS_CONNECTS, 1);
    fg_redis_emit(r, FG_REDIS_EV_CONNECTED);
    fg_redis_node_conn_ready(c->node, c);
    if (c->kind == CK_PUBSUB && c->state == CS_READY)
        fg_redis_pubsub_ready(c);
}

static void handshake_step_done(struct rconn *c)
{
    if (c->handshake_left > 0)
        c->handshake_left--;
    if (c->handshake_left == 0 && c->state == CS_HANDSHAKE)
        become_ready(c);
}

/* AUTH, SELECT and the slot-map question, pipelined in one write. */
static void send_handshake(struct rconn *c)
{
    struct fg_redis *r = c->r;
    struct fg_redis_endpoint *ep = r->ep;
    const char *user = "";
    enum fg_redis_auth_fail why_kind = FG_REDIS_AUTH_OTHER;
    bool failed = false;
    char err[200] = "";
    char *secret =
        fg_redis_endpoint_secret(ep, fg_wall_s(), &user, &why_kind, &failed, err, sizeof(err));
    if (failed && why_kind == FG_REDIS_AUTH_NO_CREDENTIALS) {
        /* Being fetched (IMDS, at start): look again shortly, within connect_timeout. */
        snprintf(c->why, sizeof(c->why), "cannot authenticate: %s", err);
        c->creds_wait = true;
        struct timeval tv = tv_ms(20);
        evtimer_add(c->poll, &tv);
        return;
    }
    c->creds_wait = false;
    c->why[0] = '\0';
    if (failed) {
        rstat_add(r->stats, (enum rstat)(RS_AUTH_WRONGPASS + (int)why_kind), 1);
        char why[260];
        snprintf(why, sizeof(why), "cannot authenticate: %s", err);
        fg_redis_conn_fail(c, why);
        return;
    }
    bool ok = true;
    if (secret != NULL) {
        const char *a[3];
        int n = 0;
        a[n++] = "AUTH";
        if (user[0] != '\0')
            a[n++] = user;
        a[n++] = secret;
        ok = send_internal(c, n, a, NULL, on_auth, true);
        c->handshake_left++;
        fg_redis_secret_free(secret);
    }
    if (ok && ep->url.db != 0 && !(r->mode_known && r->cluster)) {
        char db[16];
        snprintf(db, sizeof(db), "%u", ep->url.db);
        const char *a[] = {"SELECT", db};
        ok = send_internal(c, 2, a, NULL, on_select, false);
        c->handshake_left++;
    }
    if (ok && c->discover) {
        ok = fg_redis_conn_ask_map(c, true);
        c->handshake_left++;
    }
    if (!ok) {
        fg_redis_conn_fail(c, "out of memory");
        return;
    }
    if (c->handshake_left == 0)
        become_ready(c);
}

/* ---- socket events ------------------------------------------------------------------- */

static void dispatch(struct rconn *c, redisReply *reply)
{
    if (c->kind == CK_PUBSUB && c->state == CS_READY && TAILQ_EMPTY(&c->inflight)) {
        fg_redis_pubsub_reply(c, reply);
        return;
    }
    struct fg_redis_req *q = TAILQ_FIRST(&c->inflight);
    if (q == NULL) {
        fg_redis_conn_fail(c, "an answer nobody asked for");
        return;
    }
    TAILQ_REMOVE(&c->inflight, q, link);
    c->n_inflight--;
    q->conn = NULL;
    if (q->handler != NULL) {
        c->n_internal--;
        q->handler(c, q, reply);
        fg_redis_req_free(q);
    } else {
        fg_redis_user_reply(c, q, reply);
    }
}

static void read_replies(struct bufferevent *bev, void *arg)
{
    struct rconn *c = arg;
    FG_ASSERT(c->magic == CONN_MAGIC);
    struct evbuffer *in = bufferevent_get_input(bev);
    c->last_read_us = fg_mono_us();
    while (evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v[16];
        int n = evbuffer_peek(in, -1, NULL, v, 16);
        size_t fed = 0;
        for (int i = 0; i < n && i < 16; i++) {
            if (redisReaderFeed(c->reader, v[i].iov_base, v[i].iov_len) != REDIS_OK) {
                fg_redis_conn_fail(c, "out of memory");
                return;
            }
            fed += v[i].iov_len;
        }
        evbuffer_drain(in, fed);
    }
    c->in_read++;
    while (c->state != CS_CLOSED) {
        void *reply = NULL;
        if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
            char why[200];
            snprintf(why, sizeof(why), "protocol error (%.150s)", c->reader->errstr);
            fg_redis_conn_fail(c, why);
            break;
        }
        if (reply == NULL)
            break;
        dispatch(c, reply);
        freeReplyObject(reply);
        if (c->draining && c->n_inflight == 0 && c->state != CS_CLOSED)
            fg_redis_conn_fail(c, NULL); /* replaced, and its last answer is in */
    }
    if (--c->in_read == 0 && c->closed_pending_free)
        conn_free(c);
}

static void set_socket_options(evutil_socket_t fd)
{
    int one = 1, idle = 60, intvl = 10, cnt = 3;
    /* Small pipelined commands must not wait for Nagle; keep-alive notices a peer that
     * vanished while the connection was idle (pub/sub connections mostly are). */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* Why a TLS handshake failed, in words an operator can act on (counted once). */
static void tls_failure(struct rconn *c, short what, char *why, size_t cap)
{
    unsigned long e = bufferevent_get_openssl_error(c->bev);
    long vr = SSL_get_verify_result(c->ssl);
    rstat_add(c->r->stats, RS_TLS_FAILURES, 1);
    fg_tls_handshake_done(c->ssl, e);
    if (vr != X509_V_OK) {
        snprintf(why, cap, "TLS: the certificate of %s is not trusted: %s", c->node->tls_name,
                 X509_verify_cert_error_string(vr));
    } else if (e != 0) {
        char buf[160];
        ERR_error_string_n(e, buf, sizeof(buf));
        snprintf(why, cap, "TLS handshake failed: %s", buf);
    } else if (what & BEV_EVENT_EOF) {
        snprintf(why, cap, "closed during the TLS handshake (is the port TLS?)");
    } else {
        int err = EVUTIL_SOCKET_ERROR();
        snprintf(why, cap, "TLS handshake failed: %s",
                 err != 0 ? evutil_socket_error_to_string(err) : "connection lost");
    }
}

static void socket_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct rconn *c = arg;
    FG_ASSERT(c->magic == CONN_MAGIC);
    if (what & BEV_EVENT_CONNECTED) {
        if (c->ssl != NULL) {
            rstat_add(c->r->stats, RS_TLS_HANDSHAKES, 1);
            fg_tls_handshake_done(c->ssl, 0);
        }
        c->state = CS_HANDSHAKE;
        bufferevent_enable(c->bev, EV_READ);
        send_handshake(c);
        return;
    }
    char why[400];
    int err = EVUTIL_SOCKET_ERROR();
    unsigned long tls_err = c->ssl != NULL ? bufferevent_get_openssl_error(c->bev) : 0;
    if (c->state == CS_TLS) {
        tls_failure(c, what, why, sizeof(why));
    } else if (tls_err != 0) {
        char buf[160];
        ERR_error_string_n(tls_err, buf, sizeof(buf));
        snprintf(why, sizeof(why), "connection lost: TLS: %s", buf);
    } else if ((what & BEV_EVENT_EOF) || err == 0) {
        snprintf(why, sizeof(why), "connection closed by the server");
    } else {
        snprintf(why, sizeof(why), "connection lost: %s", evutil_socket_error_to_string(err));
    }
    fg_redis_conn_fail(c, why);
}

static void poll_creds(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct rconn *c = arg;
    FG_ASSERT(c->magic == CONN_MAGIC);
    if (c->state == CS_HANDSHAKE && c->creds_wait)
        send_handshake(c);
}

static void timer_fired(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    struct rconn *c = arg;
    FG_ASSERT(c->magic == CONN_MAGIC);
    struct fg_redis *r = c->r;
    if (what & EV_READ) { /* fail_soon */
        char why[sizeof(((struct rconn *)0)->why)];
        memcpy(why, c->why, sizeof(why));
        fg_redis_conn_fail(c, why);
        return;
    }
    if (c->state < CS_READY && c->creds_wait) {
        rstat_add(r->stats, RS_AUTH_NO_CREDENTIALS, 1);
        char why[sizeof(((struct rconn *)0)->why)];
        memcpy(why, c->why, sizeof(why));
        fg_redis_conn_fail(c, why);
    } else if (c->state < CS_READY) {
        char why[200];
        snprintf(why, sizeof(why), "no answer within connect_timeout (%llu ms) while %s",
                 (unsigned long long)r->ep->connect_timeout_ms, state_name(c->state));
        fg_redis_conn_fail(c, why);
    } else if (c->draining) {
        fg_redis_conn_fail(c, NULL); /* its last answers are too late now */
    } else if (c->kind == CK_PUBSUB) {
        rstat_add(r->stats, RS_AGED_OUT, 1);
        fg_redis_conn_fail(c, NULL); /* resubscribed on a new connection at once */
    } else {
        fg_redis_node_replace(c->node, "max_connection_age reached", RS_AGED_OUT, false);
    }
}

static void on_dns(int result, struct evutil_addrinfo *res, void *arg)
{
    if (result == EVUTIL_EAI_CANCEL) {
        if (res != NULL)
            evutil_freeaddrinfo(res);
        return; /* the connection is closing */
    }
    struct rconn *c = arg;
    FG_ASSERT(c->magic == CONN_MAGIC);
    bool sync = c->dns == NULL && !c->dns_done; /* still inside evdns_getaddrinfo */
    c->dns = NULL;
    c->dns_done = true;
    /* Prefer IPv4, as the rest of flashgate does; ElastiCache names have A records. */
    const struct evutil_addrinfo *pick = NULL;
    for (const struct evutil_addrinfo *a = res; a != NULL; a = a->ai_next)
        if (pick == NULL || (a->ai_family == AF_INET && pick->ai_family != AF_INET))
            pick = a;
    if (result != 0 || pick == NULL || pick->ai_addrlen > sizeof(c->addr)) {
        rstat_add(c->r->stats, RS_RESOLVE_FAILURES, 1);
        char why[400];
        snprintf(why, sizeof(why), "cannot resolve %s: %s", c->node->host,
                 result != 0 ? evutil_gai_strerror(result) : "no address");
        if (res != NULL)
            evutil_freeaddrinfo(res);
        fail_soon(c, why);
        return;
    }
    memcpy(&c->addr, pick->ai_addr, pick->ai_addrlen);
    c->addr_len = (socklen_t)pick->ai_addrlen;
    evutil_freeaddrinfo(res);
    if (!sync)
        start_connect(c);
}

/* The socket is connected: TLS on it, or straight to the handshake. */
static void tcp_connected(struct rconn *c)
{
    struct fg_redis *r = c->r;
    evutil_socket_t fd = c->fd;
    set_socket_options(fd);
    if (r->ep->tls != NULL) {
        /* sessions are resumed per node: nodes of a cluster may share a name */
        char session[300];
        snprintf(session, sizeof(session), "%s:%d", c->node->host, c->node->port);
        c->ssl = fg_tls_client_ssl_new(r->ep->tls, c->node->tls_name, session);
        if (c->ssl == NULL) {
            fg_redis_conn_fail(c, "cannot make a TLS session");
            return;
        }
        c->bev = bufferevent_openssl_socket_new(r->base, fd, c->ssl, BUFFEREVENT_SSL_CONNECTING,
                                                BEV_OPT_CLOSE_ON_FREE);
        if (c->bev == NULL) {
            SSL_free(c->ssl);
            c->ssl = NULL;
        } else {
            bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
        }
    } else {
        c->bev = bufferevent_socket_new(r->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    if (c->bev == NULL) {
        fg_redis_conn_fail(c, "out of memory");
        return;
    }
    c->fd = -1; /* the bufferevent's now */
    bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
    if (c->ssl != NULL) {
        c->state = CS_TLS; /* BEV_EVENT_CONNECTED comes when the handshake is done */
        return;
    }
    c->state = CS_HANDSHAKE;
    bufferevent_enable(c->bev, EV_READ);
    send_handshake(c);
}

static void connect_done(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct rconn *c = arg;
    FG_ASSERT(c->magic == CONN_MAGIC);
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        char why[200];
        snprintf(why, sizeof(why), "cannot connect: %s", evutil_socket_error_to_string(err));
        fg_redis_conn_fail(c, why);
        return;
    }
    tcp_connected(c);
}

/* A non-blocking connect on a socket of our own, so that a refused or unreachable
 * address is told apart from a failed TLS handshake. */
static void start_connect(struct rconn *c)
{
    struct fg_redis *r = c->r;
    c->state = CS_CONNECTING;
    c->fd = socket(c->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (c->fd < 0) {
        char why[200];
        snprintf(why, sizeof(why), "cannot make a socket: %s", strerror(errno));
        fail_soon(c, why);
        return;
    }
    if (connect(c->fd, (struct sockaddr *)&c->addr, c->addr_len) != 0 && errno != EINPROGRESS) {
        char why[200];
        snprintf(why, sizeof(why), "cannot connect: %s", strerror(errno));
        fail_soon(c, why);
        return;
    }
    c->connect_ev = event_new(r->base, c->fd, EV_WRITE, on_connect, c);
    if (c->connect_ev == NULL || event_add(c->connect_ev, NULL) != 0)
        fail_soon(c, "out of memory");
}

struct rconn *fg_redis_conn_new(struct rnode *n, enum conn_kind kind, bool discover)
{
    struct fg_redis *r = n->r;
    struct rconn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->magic = CONN_MAGIC;
    c->r = r;
    c->node = n;
    c->kind = kind;
    c->discover = discover;
    c->state = CS_RESOLVING;
    c->fd = -1;
    TAILQ_INIT(&c->inflight);
    c->reader = redisReaderCreate();
    c->timer = evtimer_new(r->base, on_timer, c);
    c->poll = evtimer_new(r->base, on_poll, c);
    if (c->reader == NULL || c->timer == NULL || c->poll == NULL) {
        if (c->reader != NULL)
            redisReaderFree(c->reader);
        if (c->timer != NULL)
            event_free(c->timer);
        if (c->poll != NULL)
            event_free(c->poll);
        free(c);
        return NULL;
    }
    struct timeval tv = tv_ms(r->ep->connect_timeout_ms);
    evtimer_add(c->timer, &tv);
    if (n->host_is_ip) {
        char text[300];
        bool v6 = strchr(n->host, ':') != NULL;
        snprintf(text, sizeof(text), v6 ? "[%s]:%d" : "%s:%d", n->host, n->port);
        int len = (int)sizeof(c->addr);
        if (evutil_parse_sockaddr_port(text, (struct sockaddr *)&c->addr, &len) != 0) {
            fail_soon(c, "invalid address");
            return c;
        }
        c->addr_len = (socklen_t)len;
        start_connect(c);
        return c;
    }
    struct evdns_base *dns = fg_redis_dns(r);
    if (dns == NULL) {
        fail_soon(c, "no DNS resolver (cannot read /etc/resolv.conf; set 'resolver')");
        return c;
    }
    rstat_add(r->stats, RS_RESOLUTIONS, 1);
    struct evutil_addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP};
    struct evdns_getaddrinfo_request *d =
        evdns_getaddrinfo(dns, n->host, n->port_text, &hints, on_dns, c);
    if (c->dns_done) { /* answered at once (/etc/hosts, or an error) */
        if (c->why[0] == '\0')
            start_connect(c);
    } else {
        c->dns = d;
    }
    return c;
}

bool fg_redis_conn_peer_is(const struct rconn *c, const struct sockaddr *sa)
{
    if (c->addr_len == 0 || c->addr.ss_family != sa->sa_family)
        return false;
    if (sa->sa_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)&c->addr)->sin_addr,
                      &((const struct sockaddr_in *)sa)->sin_addr, sizeof(struct in_addr)) == 0;
    if (sa->sa_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)&c->addr)->sin6_addr,
                      &((const struct sockaddr_in6 *)sa)->sin6_addr, sizeof(struct in6_addr)) == 0;
    return false;
}

/* ---- closing ------------------------------------------------------------------------- */

static void conn_free(struct rconn *c)
{
    FG_ASSERT(c->magic == CONN_MAGIC && TAILQ_EMPTY(&c->inflight));
    if (c->timer != NULL)
        event_free(c->timer);
    if (c->poll != NULL)
        event_free(c->poll);
    if (c->connect_ev != NULL)
        event_free(c->connect_ev);
    if (c->reader != NULL)
        redisReaderFree(c->reader);
    free(c->scripts);
    c->magic = 0;
    free(c);
}

void fg_redis_conn_fail(struct rconn *c, const char *why)
{
    if (c->state == CS_CLOSED)
        return;
    bool was_ready = c->state == CS_READY;
    c->state = CS_CLOSED;
    if (why != NULL && why != c->why)
        snprintf(c->why, sizeof(c->why), "%s", why);
    evtimer_del(c->timer);
    evtimer_del(c->poll);
    if (c->connect_ev != NULL) {
        event_free(c->connect_ev);
        c->connect_ev = NULL;
    }
    if (c->fd >= 0) {
        evutil_closesocket(c->fd);
        c->fd = -1;
    }
    if (c->dns != NULL) {
        struct evdns_getaddrinfo_request *d = c->dns;
        c->dns = NULL;
        evdns_getaddrinfo_cancel(d);
    }
    if (c->bev != NULL) {
        if (c->ssl != NULL && was_ready)
            SSL_set_shutdown(c->ssl, SSL_RECEIVED_SHUTDOWN); /* no close_notify wait */
        bufferevent_free(c->bev); /* safe from its own callbacks: libevent holds a ref */
        c->bev = NULL;
        c->ssl = NULL;
    }
    /* The node first, so that callbacks below send elsewhere, then the answers. */
    struct reqq mine;
    TAILQ_INIT(&mine);
    TAILQ_CONCAT(&mine, &c->inflight, link);
    c->n_inflight = c->n_internal = 0;
    fg_redis_node_conn_closed(c->node, c, why != NULL, was_ready);
    fg_redis_fail_list(&mine);
    if (c->in_read > 0)
        c->closed_pending_free = true;
    else
        conn_free(c);
}

void fg_redis_conn_drain(struct rconn *c)
{
    if (c->state == CS_CLOSED || c->draining)
        return;
    c->draining = true;
    TAILQ_INSERT_TAIL(&c->node->draining, c, link);
    if (c->state != CS_READY || c->n_inflight == 0) {
        fg_redis_conn_fail(c, NULL);
        return;
    }
    evtimer_del(c->timer);
    struct timeval tv = tv_ms(FG_REDIS_DRAIN_MS);
    evtimer_add(c->timer, &tv);
}

/* ---- libevent's entry points ------------------------------------------------------------ */

/* Each runs the work between fg_redis_enter and fg_redis_leave: the owner's callbacks may
 * free the client, whose memory stays until the outermost of these returns. */

static void on_read(struct bufferevent *bev, void *arg)
{
    struct fg_redis *r = ((struct rconn *)arg)->r;
    fg_redis_enter(r);
    read_replies(bev, arg);
    fg_redis_leave(r);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct fg_redis *r = ((struct rconn *)arg)->r;
    fg_redis_enter(r);
    socket_event(bev, what, arg);
    fg_redis_leave(r);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    struct fg_redis *r = ((struct rconn *)arg)->r;
    fg_redis_enter(r);
    poll_creds(fd, what, arg);
    fg_redis_leave(r);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct fg_redis *r = ((struct rconn *)arg)->r;
    fg_redis_enter(r);
    timer_fired(fd, what, arg);
    fg_redis_leave(r);
}

static void on_connect(evutil_socket_t fd, short what, void *arg)
{
    struct fg_redis *r = ((struct rconn *)arg)->r;
    fg_redis_enter(r);
    connect_done(fd, what, arg);
    fg_redis_leave(r);
}
