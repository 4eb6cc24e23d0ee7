/*
 * tunnel.c — upgrade tunnels (tunnel.h).
 *
 * After the 101 the two connections carry opaque bytes: whatever one side's reader takes
 * in goes to the other side's output at once (evbuffer_add_buffer moves the chains, no
 * copy) and is written through. Back-pressure as on the request path: a side stops being
 * read while FG_HIGH_WATER bytes wait for its peer, and resumes when the peer's output
 * drained to FG_LOW_WATER (the write callback's low watermark). When one side ends (EOF,
 * error), what it sent is delivered to the other first, then both close: a WebSocket
 * close handshake has already happened in the bytes by then.
 *
 * The idle timeout is one timer per tunnel, not a timer per read: each move stamps the
 * time, and the timer, when it fires early, re-arms itself for what is left.
 */
#include "server/internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *const fg_tunnel_end_names[FG_TUNNEL_BY__COUNT] = {"client", "app", "timeout", "drain",
                                                              "error"};

/* ---- which requests -------------------------------------------------------------------- */

static bool protocol_allowed(const struct fg_conf_route *r, const char *p, size_t len)
{
    /* protocol-name ["/" protocol-version] (RFC 9110 §7.8); the name decides. */
    const char *slash = memchr(p, '/', len);
    size_t name_len = slash ? (size_t)(slash - p) : len;
    if (name_len == 0)
        return false;
    if (name_len == 3 && strncasecmp(p, "h2c", 3) == 0)
        return false; /* HTTP/2 over cleartext is not a tunnel: the app would speak h2 to us */
    if (r->n_upgrade_protocols == 0)
        return true;
    for (size_t i = 0; i < r->n_upgrade_protocols; i++) {
        const char *a = r->upgrade_protocols[i];
        if (strlen(a) == name_len && strncasecmp(a, p, name_len) == 0)
            return true;
    }
    return false;
}

bool fg_tunnel_wanted(const struct fg_txn *t)
{
    const struct fg_http_request *r = &t->req;
    const struct fg_conf_route *route = t->route;
    unsigned need = FG_HTTP_F_HAS_UPGRADE | FG_HTTP_F_CONN_UPGRADE;
    if ((r->flags & need) != need || r->minor_version != 1 || route->upstream == NULL ||
        !route->upgrade)
        return false;
    if (r->body == FG_HTTP_BODY_CHUNKED || (r->body == FG_HTTP_BODY_LENGTH && r->content_length))
        return false; /* what would follow the body is ambiguous: forwarded as a plain request */
    size_t n_offered = 0;
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct fg_http_header *h = &r->headers[i];
        if (h->name_len != 7 || !fg_http_name_eq(h->name, h->name_len, "upgrade"))
            continue;
        size_t pos = 0;
        while (pos <= h->value_len) {
            size_t end = pos;
            while (end < h->value_len && h->value[end] != ',')
                end++;
            size_t a = pos, b = end;
            while (a < b && (h->value[a] == ' ' || h->value[a] == '\t'))
                a++;
            while (b > a && (h->value[b - 1] == ' ' || h->value[b - 1] == '\t'))
                b--;
            if (b > a) {
                if (!protocol_allowed(route, h->value + a, b - a))
                    return false;
                n_offered++;
            }
            pos = end + 1;
        }
    }
    return n_offered > 0;
}

bool fg_tunnel_admit(struct fg_txn *t)
{
    struct fg_worker *w = t->c->w;
    uint64_t cap = t->snap->cfg->max_tunnels;
    const char *why = NULL;
    if (w->stop_accepting)
        why = "draining: no new tunnels";
    else if (w->n_tunnels >= cap)
        why = "too many open tunnels (max_tunnels)";
    if (why == NULL)
        return true;
    fg_counter_add(&w->stats.tunnels.refused, 1);
    fg_respond_text(t, 503, why, true);
    return false;
}

/* ---- the tunnel ------------------------------------------------------------------------ */

static void tunnel_end(struct fg_tunnel *tun, enum fg_tunnel_end why);

static void arm(struct fg_tunnel *tun, uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(tun->timer, &tv);
}

/* Everything one side's reader holds, to the other side. */
static void move(struct fg_tunnel *tun, struct bufferevent *from, struct fg_reader *from_r,
                 struct bufferevent *to, bool up)
{
    struct evbuffer *in = bufferevent_get_input(from);
    size_t n = evbuffer_get_length(in);
    if (n == 0)
        return;
    struct fg_worker *w = tun->c->w;
    evbuffer_add_buffer(bufferevent_get_output(to), in);
    tun->last_ms = fg_mono_ms();
    if (up) {
        tun->up += n;
        fg_counter_add(&w->stats.tunnels.bytes_up, n);
    } else {
        tun->down += n;
        fg_counter_add(&w->stats.tunnels.bytes_down, n);
    }
    if (fg_flush(to) > FG_HIGH_WATER)
        fg_reader_disable(from_r); /* resumed by the peer's write callback */
}

static void client_read(void *arg)
{
    struct fg_tunnel *tun = arg;
    if (!tun->closing)
        move(tun, tun->c->bev, &tun->c->reader, tun->uc->bev, true);
}

static void app_read(void *arg)
{
    struct fg_tunnel *tun = arg;
    if (!tun->closing)
        move(tun, tun->uc->bev, &tun->uc->reader, tun->c->bev, false);
}

/* One side's output drained below FG_LOW_WATER: read its peer again, or finish closing. */
static void drained(struct fg_tunnel *tun, struct bufferevent *bev, struct fg_reader *peer)
{
    bool empty = evbuffer_get_length(bufferevent_get_output(bev)) == 0;
    if (empty)
        bufferevent_disable(bev, EV_WRITE); /* back to writing through (fg_flush) */
    if (tun->closing) {
        if (empty)
            tunnel_end(tun, (enum fg_tunnel_end)tun->end);
        return;
    }
    if (!peer->enabled) {
        fg_reader_enable(peer);
        if (evbuffer_get_length(bufferevent_get_input(peer->bev)) > 0)
            fg_reader_trigger(peer);
    }
}

static void client_write(struct bufferevent *bev, void *arg)
{
    struct fg_tunnel *tun = arg;
    drained(tun, bev, &tun->uc->reader);
}

static void app_write(struct bufferevent *bev, void *arg)
{
    struct fg_tunnel *tun = arg;
    drained(tun, bev, &tun->c->reader);
}

/* A side ended. Its last bytes were moved already (a reader delivers before its event);
 * the other side gets them, then both close. */
static void side_ended(struct fg_tunnel *tun, bool client, short what)
{
    enum fg_tunnel_end why = (what & BEV_EVENT_TIMEOUT) ? FG_TUNNEL_BY_TIMEOUT
                             : (what & BEV_EVENT_ERROR) ? FG_TUNNEL_BY_ERROR
                             : client                   ? FG_TUNNEL_BY_CLIENT
                                                        : FG_TUNNEL_BY_APP;
    if (tun->closing) {
        tunnel_end(tun, (enum fg_tunnel_end)tun->end);
        return;
    }
    /* Writing failed or timed out, or reading saw an error: nothing more can be
     * delivered, on this side at least. */
    if (!(what & BEV_EVENT_READING) || (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))) {
        tunnel_end(tun, why);
        return;
    }
    if (client)
        move(tun, tun->c->bev, &tun->c->reader, tun->uc->bev, true);
    else
        move(tun, tun->uc->bev, &tun->uc->reader, tun->c->bev, false);
    struct bufferevent *peer = client ? tun->uc->bev : tun->c->bev;
    if (evbuffer_get_length(bufferevent_get_output(peer)) == 0) {
        tunnel_end(tun, why);
        return;
    }
    tun->closing = true;
    tun->end = (int)why;
    fg_reader_disable(&tun->c->reader);
    fg_reader_disable(&tun->uc->reader);
}

static void client_read_event(short what, void *arg)
{
    struct fg_tunnel *tun = arg;
    side_ended(tun, true, what | BEV_EVENT_READING);
}

static void client_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct fg_tunnel *tun = arg;
    if (what & BEV_EVENT_CONNECTED)
        return;
    side_ended(tun, true, what);
}

static void app_read_event(short what, void *arg)
{
    struct fg_tunnel *tun = arg;
    side_ended(tun, false, what | BEV_EVENT_READING);
}

static void app_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct fg_tunnel *tun = arg;
    if (what & BEV_EVENT_CONNECTED)
        return;
    side_ended(tun, false, what);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fg_tunnel *tun = arg;
    if (tun->closing) {
        /* The peer did not take the last bytes within the send timeout's worth. */
        tunnel_end(tun, (enum fg_tunnel_end)tun->end);
        return;
    }
    uint64_t idle = fg_mono_ms() - tun->last_ms;
    if (idle + 5 < tun->timeout_ms) {
        arm(tun, tun->timeout_ms - idle);
        return;
    }
    fg_info("client %s: tunnel idle for %llums, closed", tun->c->peer_ip,
            (unsigned long long)tun->timeout_ms);
    tunnel_end(tun, FG_TUNNEL_BY_TIMEOUT);
}

void fg_tunnel_start(struct fg_txn *t, struct fg_upstream_conn *uc)
{
    struct fg_conn *c = t->c;
    struct fg_worker *w = c->w;
    struct fg_tunnel *tun = calloc(1, sizeof(*tun));
    struct event *timer = tun ? evtimer_new(w->base, timer_cb, tun) : NULL;
    if (timer == NULL) {
        free(tun);
        fg_err("out of memory for a tunnel; client %s closed", c->peer_ip);
        fg_upstream_release(uc, false);
        fg_conn_close(c);
        return;
    }
    tun->c = c;
    tun->t = t;
    tun->uc = uc;
    tun->timer = timer;
    tun->timeout_ms = t->route->tunnel_timeout_ms;
    tun->last_ms = fg_mono_ms();
    tun->end = -1;
    LIST_INSERT_HEAD(&w->tunnels, tun, link);
    w->n_tunnels++;
    fg_gauge_add(&w->stats.tunnels.open, 1);
    fg_counter_add(&w->stats.tunnels.opened, 1);
    fg_conn_tunnel_begin(c, tun);

    fg_reader_set_timeout(&c->reader, 0);
    fg_reader_setcb(&c->reader, client_read, client_read_event, tun);
    fg_reader_bev_setcb(&c->reader, client_write, client_event, tun);
    fg_reader_set_timeout(&uc->reader, 0);
    fg_reader_setcb(&uc->reader, app_read, app_read_event, tun);
    fg_reader_bev_setcb(&uc->reader, app_write, app_event, tun);
    bufferevent_setwatermark(uc->bev, EV_WRITE, FG_LOW_WATER, 0);
    bufferevent_setwatermark(c->bev, EV_WRITE, FG_LOW_WATER, 0);
    fg_reader_enable(&c->reader);
    fg_reader_enable(&uc->reader);
    arm(tun, tun->timeout_ms);
    /* The 101 goes out now, with whatever the app already sent after it; bytes the
     * client sent behind its request (a first frame) go to the app. */
    fg_flush(c->bev);
    app_read(tun);
    client_read(tun);
}

static void tunnel_end(struct fg_tunnel *tun, enum fg_tunnel_end why)
{
    struct fg_conn *c = tun->c;
    struct fg_worker *w = c->w;
    struct fg_txn *t = tun->t;
    fg_counter_add(&w->stats.tunnels.closed[why], 1);
    fg_gauge_add(&w->stats.tunnels.open, -1);
    w->n_tunnels--;
    LIST_REMOVE(tun, link);
    event_free(tun->timer);
    fg_upstream_release(tun->uc, false);
    t->bytes_in += tun->up;
    t->bytes_out += tun->down;
    t->tunnel_up = tun->up;
    t->tunnel_down = tun->down;
    t->log_tunnel = fg_tunnel_end_names[why];
    free(tun);
    fg_conn_tunnel_end(c, why == FG_TUNNEL_BY_CLIENT);
}

void fg_tunnel_close_all(struct fg_worker *w)
{
    struct fg_tunnel *tun;
    while ((tun = LIST_FIRST(&w->tunnels)) != NULL)
        tunnel_end(tun, FG_TUNNEL_BY_DRAIN);
}
