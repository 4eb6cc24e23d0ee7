/*
 * conn.c — client connections: accept, read a request head within its deadline, hand
 * it to the request path, then keep the connection alive (idle timeout) or close it.
 *
 * Timeouts are deadlines, not per-read idle timers (DESIGN.md, "Keep-alive tuning"):
 * the header deadline starts with the first byte of a head and bounds the whole head;
 * the body deadline bounds the whole body and a minimum rate applies after a grace
 * period. An idle keep-alive connection is governed by keepalive_timeout alone.
 */
#include "server/internal.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/bufferevent_ssl.h>

#include "tls/tls.h"

#define FG_LINGER_MS     2000 /* discard late client bytes this long before closing */
#define FG_BODY_GRACE_MS 5000 /* body_min_rate applies after this */

static void conn_read_cb(void *arg);
static void conn_read_event_cb(short what, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);
static void conn_timer_cb(evutil_socket_t fd, short what, void *arg);
static void conn_free(struct fg_conn *c);

static const struct fg_conf_server *conn_server(const struct fg_conn *c)
{
    return &c->w->snap->cfg->servers[c->lst->server_index];
}

/* The bufferevent for an accepted socket: TLS when the listen address says ssl (the
 * current snapshot's certificates; the SSL keeps them alive past a reload). */
static struct bufferevent *conn_bev_new(struct fg_worker *w, const struct fg_listener *lst, int fd)
{
    const struct fg_conf_server *srv = &w->snap->cfg->servers[lst->server_index];
    bool ssl = lst->listen_index < srv->n_listens && srv->listens[lst->listen_index].ssl;
    if (!ssl || srv->tls == NULL)
        return bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    SSL *tls = fg_tls_server_ssl_new(srv->tls);
    if (tls == NULL)
        return NULL;
    /* On failure (out of memory only) libevent has already freed the SSL. */
    return bufferevent_openssl_socket_new(w->base, fd, tls, BUFFEREVENT_SSL_ACCEPTING,
                                          BEV_OPT_CLOSE_ON_FREE);
}

static void conn_arm(struct fg_conn *c, uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

/* ---- accept ---------------------------------------------------------------------------- */

void fg_conn_accept(struct fg_listener *lst, int fd, const struct sockaddr *sa, int salen)
{
    struct fg_worker *w = lst->w;
    if (w->stop_accepting) {
        close(fd);
        return;
    }
    struct fg_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return;
    }
    c->bev = conn_bev_new(w, lst, fd);
    c->timer = evtimer_new(w->base, conn_timer_cb, c);
    if (c->bev == NULL || c->timer == NULL) {
        fg_err("out of memory accepting a connection, closed");
        if (c->bev)
            bufferevent_free(c->bev);
        else
            close(fd);
        if (c->timer)
            event_free(c->timer);
        free(c);
        return;
    }
    if (!fg_reader_init(&c->reader, c->bev, FG_HIGH_WATER)) {
        fg_err("out of memory accepting a connection, closed");
        bufferevent_free(c->bev);
        event_free(c->timer);
        free(c);
        return;
    }
    c->magic = FG_CONN_MAGIC;
    c->w = w;
    c->lst = lst;
    /* TCP_NODELAY waits for keep-alive (fg_conn_txn_done), except under TLS: the handshake
     * writes several flights, and a record must not wait for an ACK. */
    c->nodelay = sa->sa_family == AF_UNIX;
    if (!c->nodelay && fg_reader_ssl(&c->reader) != NULL) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->nodelay = true;
    }
    memcpy(&c->peer, sa, (size_t)salen < sizeof(c->peer) ? (size_t)salen : sizeof(c->peer));
    fg_addr_ip_text(sa, c->peer_ip, sizeof(c->peer_ip));
    const struct fg_conf_server *srv = conn_server(c);
    fg_reader_bev_setcb(&c->reader, conn_write_cb, conn_event_cb, c);
    fg_reader_set_peer(&c->reader, c->peer_ip);
    bufferevent_setwatermark(c->bev, EV_WRITE, FG_LOW_WATER, 0);
    /* Reading pauses by itself while FG_HIGH_WATER bytes of input wait (pipelined
     * requests, a body the app is slow to take): memory per connection stays bounded. */
    fg_reader_setcb(&c->reader, conn_read_cb, conn_read_event_cb, c);
    struct timeval st = {.tv_sec = (time_t)(srv->send_timeout_ms / 1000),
                         .tv_usec = (suseconds_t)(srv->send_timeout_ms % 1000) * 1000};
    bufferevent_set_timeouts(c->bev, NULL, &st);
    /* EV_WRITE only while output waits (fg_flush); a new bufferevent starts with it on,
     * which would send an answer's head before its body's first bytes were seen on the
     * first request only (a malformed body must still be able to become a 502). On TLS
     * the handshake runs on its own events whatever is enabled; with EV_WRITE on, an
     * OpenSSL bufferevent would SSL_write the head the moment it is queued. */
    bufferevent_disable(c->bev, EV_WRITE);
    fg_reader_enable(&c->reader);
    c->state = FG_CONN_IDLE;
    /* A TLS handshake gets the time of a request head, not of an idle keep-alive. */
    conn_arm(c,
             fg_reader_ssl(&c->reader) != NULL && srv->header_timeout_ms < srv->keepalive_timeout_ms
                 ? srv->header_timeout_ms
                 : srv->keepalive_timeout_ms);
    LIST_INSERT_HEAD(&w->conns, c, link);
    atomic_fetch_add_explicit(&w->open_conns, 1, memory_order_relaxed);
    fg_counter_add(&w->stats.connections_total, 1);
    fg_gauge_add(&w->stats.connections_active, 1);
    fg_gauge_add(&w->stats.connections_idle, 1);
}

/* ---- closing --------------------------------------------------------------------------- */

static void conn_free(struct fg_conn *c)
{
    FG_ASSERT(c->magic == FG_CONN_MAGIC);
    struct fg_worker *w = c->w;
    if (c->txn != NULL) {
        if (c->state == FG_CONN_TXN) {
            fg_proxy_abort(c->txn);
            fg_gauge_add(&w->stats.requests_active, -1); /* it never reached txn_done */
        }
        fg_txn_put(w, c->txn);
        c->txn = NULL;
    }
    if (c->state == FG_CONN_IDLE)
        fg_gauge_add(&w->stats.connections_idle, -1);
    c->magic = 0;
    event_free(c->timer);
    fg_reader_free(&c->reader);
    bufferevent_free(c->bev);
    LIST_REMOVE(c, link);
    atomic_fetch_sub_explicit(&w->open_conns, 1, memory_order_relaxed);
    fg_gauge_add(&w->stats.connections_active, -1);
    free(c);
}

void fg_conn_close(struct fg_conn *c)
{
    conn_free(c);
}

/* May the connection close at once, without lingering? Only when the client itself ends
 * it (it asked to close after a complete request, or it half-closed), everything it sent
 * was read, everything we wrote is in the socket, and nothing more waits in it: then a
 * close cannot turn into a RST. A plain socket only (TLS says close_notify first). */
static bool conn_may_close_now(struct fg_conn *c, bool client_ends)
{
    if (!client_ends || fg_reader_ssl(&c->reader) != NULL ||
        evbuffer_get_length(bufferevent_get_input(c->bev)) != 0 || fg_flush(c->bev) != 0)
        return false;
    char b;
    ssize_t n = recv(bufferevent_getfd(c->bev), &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

/* Lingering close: flush what we wrote, half-close, then discard what the client still
 * sends for a moment. Closing with unread bytes in the socket would make the kernel send
 * a RST, which can destroy the response we just wrote before the client reads it. */
static void conn_start_closing(struct fg_conn *c)
{
    if (c->state == FG_CONN_IDLE)
        fg_gauge_add(&c->w->stats.connections_idle, -1);
    c->state = FG_CONN_CLOSING;
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    fg_reader_enable(&c->reader);
    evbuffer_drain(bufferevent_get_input(c->bev),
                   evbuffer_get_length(bufferevent_get_input(c->bev)));
    conn_arm(c, conn_server(c)->send_timeout_ms + FG_LINGER_MS);
    if (fg_flush(c->bev) == 0)
        conn_write_cb(c->bev, c);
}

void fg_conn_close_if_idle(struct fg_conn *c)
{
    if (c->state == FG_CONN_IDLE)
        conn_free(c);
}

/* ---- keep-alive decision ------------------------------------------------------------------ */

bool fg_conn_keepalive_ok(struct fg_conn *c, struct fg_txn *t)
{
    const struct fg_http_request *r = &t->req;
    if (t->client_close)
        return false;
    if (r->flags & FG_HTTP_F_CONN_CLOSE)
        return false;
    if (r->minor_version == 0 && !(r->flags & FG_HTTP_F_CONN_KEEPALIVE))
        return false;
    if (c->requests >= t->srv->keepalive_requests || c->w->stop_accepting)
        return false;
    /* Unread request body: it would be parsed as the next request. */
    if (t->req_state != FG_REQ_DONE)
        return false;
    return true;
}

/* ---- transaction end ------------------------------------------------------------------- */

void fg_conn_txn_done(struct fg_conn *c)
{
    struct fg_worker *w = c->w;
    struct fg_txn *t = c->txn;
    FG_ASSERT(t != NULL && t->magic == FG_TXN_MAGIC);
    uint64_t now = fg_mono_us();
    uint64_t dur = t->start_us ? now - t->start_us : 0;
    fg_counter_add(&w->stats.requests_total, 1);
    if (t->status >= 100 && t->status < 600)
        fg_counter_add(&w->stats.responses[t->status / 100], 1);
    fg_counter_add(&w->stats.bytes_in, t->bytes_in);
    fg_counter_add(&w->stats.bytes_out, t->bytes_out);
    if (t->tunnel_start_us > t->start_us)
        dur = t->tunnel_start_us - t->start_us; /* a tunnel's request ended at its 101 */
    fg_hist_observe(&w->stats.latency, dur);
    if (t->app_head_us > 0)
        fg_hist_observe(&w->stats.app_head, t->app_head_us);
    fg_route_stats_observe(t, dur);
    fg_stage_waitroom_done(t);
    if (c->state == FG_CONN_TXN)
        fg_gauge_add(&w->stats.requests_active, -1);
    fg_accesslog_txn(w, t);

    bool close = t->client_close || !fg_conn_keepalive_ok(c, t);
    const struct fg_http_request *r = &t->req;
    bool client_ends = t->req_state == FG_REQ_DONE &&
                       (c->peer_closed || (r->flags & FG_HTTP_F_CONN_CLOSE) ||
                        (r->minor_version == 0 && !(r->flags & FG_HTTP_F_CONN_KEEPALIVE)));
    c->txn = NULL;
    fg_txn_put(w, t);
    if (close) {
        if (conn_may_close_now(c, client_ends))
            conn_free(c); /* as nginx does when nothing is left to linger for */
        else
            conn_start_closing(c);
        return;
    }
    if (!c->nodelay) {
        /* Kept alive: from now on a small answer must not wait behind Nagle for the ACK
         * of the previous one (setting it also sends what Nagle holds now). A connection
         * that closes after its answer never needs it: the close pushes everything. */
        int one = 1;
        setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->nodelay = true;
    }
    c->state = FG_CONN_IDLE;
    fg_gauge_add(&w->stats.connections_idle, 1);
    /* The last bytes go out only now, after the counting: a client that has its answer
     * sees it in /stats too. */
    fg_flush(c->bev);
    conn_arm(c, conn_server(c)->keepalive_timeout_ms);
    bufferevent_setwatermark(c->bev, EV_WRITE, FG_LOW_WATER, 0);
    fg_reader_enable(&c->reader);
    /* A pipelined request may already be buffered: run it from the loop, not from here,
     * so a long pipeline cannot grow the stack. */
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        fg_reader_trigger(&c->reader);
}

void fg_conn_tunnel_begin(struct fg_conn *c, struct fg_tunnel *tun)
{
    FG_ASSERT(c->state == FG_CONN_TXN && c->txn != NULL);
    c->state = FG_CONN_TUNNEL;
    c->tunnel = tun;
    if (!c->nodelay) {
        /* A tunnel carries small messages both ways: none may wait behind Nagle for the
         * ACK of the one before (the upstream side has it from its connect). */
        int one = 1;
        setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->nodelay = true;
    }
    c->txn->tunnel_start_us = fg_mono_us();
    c->txn->resp_state = FG_RESP_DONE;
    fg_gauge_add(&c->w->stats.requests_active, -1); /* a tunnel is not a request in flight */
}

void fg_conn_tunnel_end(struct fg_conn *c, bool client_closed)
{
    FG_ASSERT(c->state == FG_CONN_TUNNEL && c->txn != NULL);
    c->tunnel = NULL;
    fg_reader_setcb(&c->reader, conn_read_cb, conn_read_event_cb, c);
    fg_reader_bev_setcb(&c->reader, conn_write_cb, conn_event_cb, c);
    c->txn->client_close = true;
    c->peer_closed = client_closed;
    fg_conn_txn_done(c);
}

void fg_conn_resume_read(struct fg_conn *c)
{
    /* Reading that was never paused needs nothing: a trigger here would cost every
     * request an extra loop turn (its own head is still in the input buffer). */
    if (c->reader.enabled)
        return;
    fg_reader_enable(&c->reader);
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        fg_reader_trigger(&c->reader);
}

/* ---- reading a head -------------------------------------------------------------------- */

static void conn_read_head(struct fg_conn *c)
{
    struct fg_worker *w = c->w;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t len = evbuffer_get_length(in);
    if (len == 0)
        return;
    const struct fg_conf_server *srv = conn_server(c);
    if (c->state == FG_CONN_IDLE) {
        c->state = FG_CONN_HEAD;
        fg_gauge_add(&w->stats.connections_idle, -1);
        c->head_deadline_ms = fg_mono_ms() + srv->header_timeout_ms;
        c->head_timer = false; /* armed only if the head does not come whole at once */
    }
    if (c->txn == NULL) {
        c->txn = fg_txn_get(w);
        if (c->txn == NULL) {
            fg_err("out of memory for a request, connection closed");
            conn_free(c);
            return;
        }
        c->txn->c = c;
        c->txn->start_us = fg_mono_us();
    }
    struct fg_txn *t = c->txn;
    struct fg_http_limits lim = {.max_request_line = srv->max_request_line,
                                 .max_header_bytes = srv->max_header_bytes,
                                 .max_headers = srv->max_headers};
    size_t n = len < srv->max_header_bytes + 1 ? len : srv->max_header_bytes + 1;
    const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
    enum fg_http_error err = FG_HTTP_E_NONE;
    int rc = fg_http_parse_request(buf, n, &lim, &t->req, &err);
    if (rc == FG_HTTP_INCOMPLETE) {
        if (!c->head_timer) {
            uint64_t now = fg_mono_ms();
            conn_arm(c, c->head_deadline_ms > now ? c->head_deadline_ms - now : 0);
            c->head_timer = true;
        }
        return;
    }
    /* The timer armed now (keep-alive or header deadline) is left to fire: in a
     * transaction without a body deadline it does nothing (cheaper than a delete). */
    c->body_deadline_ms = 0;
    c->state = FG_CONN_TXN;
    c->requests++;
    fg_gauge_add(&w->stats.requests_active, 1);
    t->srv = srv;
    t->snap = w->snap;
    t->snap->users++;
    if (rc == FG_HTTP_ERROR) {
        fg_counter_add(&w->stats.rejected[err], 1);
        snprintf(t->log_path, sizeof(t->log_path), "-");
        t->req.method = FG_HTTP_OTHER;
        t->req_state = FG_REQ_BODY; /* unknown framing: never keep this connection */
        fg_info("client %s: request refused (%s), connection closed", c->peer_ip,
                fg_http_error_name(err));
        fg_respond_text(t, fg_http_error_status(err), fg_http_error_name(err), true);
        return;
    }
    t->bytes_in = (size_t)rc;
    fg_request_start(c, t);
}

static void conn_read_cb(void *arg)
{
    struct fg_conn *c = arg;
    struct bufferevent *bev = c->bev;
    FG_ASSERT(c->magic == FG_CONN_MAGIC);
    switch (c->state) {
    case FG_CONN_IDLE:
    case FG_CONN_HEAD:
        conn_read_head(c);
        break;
    case FG_CONN_TXN:
        if (c->txn != NULL && c->txn->offload.active)
            fg_stage_offload_client_readable(c->txn);
        else if (c->txn != NULL && c->txn->req_state == FG_REQ_BODY)
            fg_proxy_client_readable(c->txn);
        /* else: a pipelined request; it waits in the buffer for this response */
        break;
    case FG_CONN_TUNNEL:
        break; /* the tunnel's own callbacks read */
    case FG_CONN_CLOSING: {
        struct evbuffer *in = bufferevent_get_input(bev);
        evbuffer_drain(in, evbuffer_get_length(in));
        break;
    }
    }
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct fg_conn *c = arg;
    FG_ASSERT(c->magic == FG_CONN_MAGIC);
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE); /* back to writing through (fg_flush) */
    if (c->state == FG_CONN_CLOSING) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
            fg_shutdown_write(&c->reader);
            evtimer_del(c->timer);
            conn_arm(c, FG_LINGER_MS);
        }
        return;
    }
    if (c->txn != NULL && c->state == FG_CONN_TXN)
        fg_proxy_client_drained(c->txn);
}

static void conn_read_event_cb(short what, void *arg)
{
    struct fg_conn *c = arg;
    conn_event_cb(c->bev, what, c);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct fg_conn *c = arg;
    FG_ASSERT(c->magic == FG_CONN_MAGIC);
    if (what & BEV_EVENT_CONNECTED) {
        /* TLS handshake done (counted by netio): from now on an idle connection. */
        if (c->state == FG_CONN_IDLE)
            conn_arm(c, conn_server(c)->keepalive_timeout_ms);
        return;
    }
    if (c->state == FG_CONN_CLOSING && (what & BEV_EVENT_EOF) &&
        evbuffer_get_length(bufferevent_get_output(bev)) > 0)
        return; /* the client half-closed: still deliver what we wrote, then close */
    if (what & BEV_EVENT_TIMEOUT) {
        fg_counter_add(&c->w->stats.timeout_send, 1);
        fg_info("client %s: did not read the response for %llums, connection closed", c->peer_ip,
                (unsigned long long)conn_server(c)->send_timeout_ms);
    } else if (c->state == FG_CONN_TXN && (what & BEV_EVENT_EOF) && c->txn != NULL &&
               c->txn->req_state == FG_REQ_DONE) {
        /* The client half-closed after a complete request (HTTP/1.0 tools do): answer,
         * then close. A client that is really gone shows up as a write error. */
        c->txn->client_close = true;
        c->peer_closed = true;
        return;
    } else if (c->state == FG_CONN_TXN) {
        fg_counter_add(&c->w->stats.client_aborts, 1);
        if (c->txn != NULL && c->txn->status == 0)
            c->txn->status = 499; /* nginx's "client closed request", for the log only */
    }
    conn_free(c);
}

/* ---- deadlines ------------------------------------------------------------------------- */

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct fg_conn *c = arg;
    FG_ASSERT(c->magic == FG_CONN_MAGIC);
    struct fg_worker *w = c->w;
    switch (c->state) {
    case FG_CONN_IDLE:
        fg_counter_add(&w->stats.timeout_idle, 1);
        conn_free(c);
        return;
    case FG_CONN_HEAD:
        fg_counter_add(&w->stats.timeout_header, 1);
        fg_info("client %s: request head not complete within %llums, closed", c->peer_ip,
                (unsigned long long)conn_server(c)->header_timeout_ms);
        /* 408 as a courtesy: the client learns why, the connection closes. */
        c->state = FG_CONN_TXN;
        fg_gauge_add(&w->stats.requests_active, 1);
        c->txn->srv = conn_server(c);
        c->txn->snap = w->snap;
        c->txn->snap->users++;
        c->txn->req_state = FG_REQ_BODY;
        c->txn->req.method = FG_HTTP_OTHER;
        snprintf(c->txn->log_path, sizeof(c->txn->log_path), "-");
        fg_respond_text(c->txn, 408, "request head not complete in time", true);
        return;
    case FG_CONN_TXN: {
        struct fg_txn *t = c->txn;
        if (t == NULL || t->req_state != FG_REQ_BODY || c->body_deadline_ms == 0)
            return; /* a timer of the connection's idle or head time, left to fire */
        uint64_t now = fg_mono_ms();
        const struct fg_conf_server *srv = t->srv;
        bool too_slow = false;
        if (srv->body_min_rate > 0 && now - c->body_start_ms >= FG_BODY_GRACE_MS) {
            uint64_t expected = srv->body_min_rate * (now - c->body_start_ms) / 1000;
            too_slow = t->req_body_bytes < expected;
        }
        if (now >= c->body_deadline_ms || too_slow) {
            fg_counter_add(&w->stats.timeout_body, 1);
            fg_info("client %s: request body %s after %llu bytes, closed", c->peer_ip,
                    too_slow ? "below body_min_rate" : "not complete within body_timeout",
                    (unsigned long long)t->req_body_bytes);
            if (!t->resp_head_sent) {
                fg_proxy_abort(t);
                fg_respond_text(t, 408, "request body not received in time", true);
            } else {
                conn_free(c);
            }
            return;
        }
        uint64_t next = c->body_deadline_ms - now;
        if (srv->body_min_rate > 0 && next > 1000)
            next = 1000;
        conn_arm(c, next);
        return;
    }
    case FG_CONN_CLOSING:
        conn_free(c);
        return;
    case FG_CONN_TUNNEL:
        return; /* a timer of the request, left to fire; the tunnel has its own */
    }
}

void fg_conn_body_started(struct fg_conn *c)
{
    const struct fg_conf_server *srv = c->txn->srv;
    uint64_t now = fg_mono_ms();
    c->body_start_ms = now;
    c->body_deadline_ms = now + srv->body_timeout_ms;
    uint64_t next = srv->body_timeout_ms;
    if (srv->body_min_rate > 0 && next > FG_BODY_GRACE_MS)
        next = FG_BODY_GRACE_MS;
    conn_arm(c, next);
}

void fg_conn_body_finished(struct fg_conn *c)
{
    c->body_deadline_ms = 0; /* a pending body timer now does nothing when it fires */
}
