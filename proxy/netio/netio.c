/* netio.c — write-through and a FIONREAD-free reader (see netio.h for why), and the
 * same API over bufferevent_openssl for TLS connections. */
#include "netio/netio.h"

#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <event2/bufferevent_ssl.h>
#include <event2/bufferevent_struct.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/core.h"
#include "tls/tls.h"

#define FG_READ_MAX (64 * 1024)

static bool below_high_water(const struct fg_reader *r);
static void tls_write(struct fg_reader *r);
static void tls_read_cb(struct bufferevent *bev, void *arg);

size_t fg_send(struct bufferevent *bev, const void *data, size_t len)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    if (bev->readcb != tls_read_cb && evbuffer_get_length(out) == 0) {
        /* Nothing waits: straight to the socket, no buffer in between. A failure is left
         * for the bufferevent's writer to meet and report, as in fg_flush. */
        ssize_t n = send(bufferevent_getfd(bev), data, len, MSG_NOSIGNAL);
        if (n == (ssize_t)len)
            return 0;
        if (n > 0) {
            data = (const char *)data + n;
            len -= (size_t)n;
        }
    }
    evbuffer_add(out, data, len);
    return fg_flush(bev);
}

size_t fg_flush(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    /* A TLS reader routes the bufferevent's read callback (bufferevent_struct.h: read
     * directly, bufferevent_getcb takes the bufferevent's lock for the same answer). */
    if (bev->readcb == tls_read_cb) {
        tls_write(bev->cbarg); /* the socket carries records: OpenSSL writes */
    } else if (evbuffer_get_length(out) > 0) {
        /* A bufferevent keeps its output's start frozen so that only it drains it; we
         * do what its write callback does, a moment earlier. An error is left for that
         * callback to meet and report. */
        evbuffer_unfreeze(out, 1);
        /* One contiguous piece (a relayed read, a head): send(2), which costs the kernel
         * less than writev(2)'s iovec import and file lookup; several: writev. */
        struct evbuffer_iovec v[2];
        if (evbuffer_peek(out, -1, NULL, v, 2) == 1) {
            ssize_t k = send(bufferevent_getfd(bev), v[0].iov_base, v[0].iov_len, MSG_NOSIGNAL);
            if (k > 0)
                evbuffer_drain(out, (size_t)k);
        } else {
            evbuffer_write(out, bufferevent_getfd(bev));
        }
        evbuffer_freeze(out, 1);
    }
    size_t left = evbuffer_get_length(out);
    /* Only a change: enabling again would restart the send timeout (and costs a timer
     * operation), disabling what is disabled costs one for nothing. */
    bool writing = (bufferevent_get_enabled(bev) & EV_WRITE) != 0;
    if (left > 0 && !writing)
        bufferevent_enable(bev, EV_WRITE);
    else if (left == 0 && writing)
        bufferevent_disable(bev, EV_WRITE);
    return left;
}

static bool below_high_water(const struct fg_reader *r)
{
    return r->high_water == 0 || evbuffer_get_length(bufferevent_get_input(r->bev)) < r->high_water;
}

static void input_drained(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg);

/* The input is watched for drains only while reading is paused at the high watermark:
 * a callback on the buffer costs every add and drain of every request. */
static void watch_drain(struct fg_reader *r, bool on)
{
    struct evbuffer *in = bufferevent_get_input(r->bev);
    if (on && r->drain_cb == NULL) {
        r->drain_cb = evbuffer_add_cb(in, input_drained, r);
    } else if (!on && r->drain_cb != NULL) {
        evbuffer_remove_cb_entry(in, r->drain_cb); /* safe from inside the callback */
        r->drain_cb = NULL;
    }
}

/* Add or remove the event to match what the owner wants and the watermark allows. The
 * event is persistent: libevent restarts its timeout each time it runs, so a read needs
 * no rearm. An event added again without a timeout would keep its old one: that one is
 * removed (a new owner that wants none must not meet the previous owner's). */
static void rearm(struct fg_reader *r)
{
    bool below = below_high_water(r);
    bool want = r->enabled && below;
    if (r->high_water > 0)
        watch_drain(r, r->enabled && !below);
    if (want) {
        if (r->timeout_ms) {
            struct timeval tv = {.tv_sec = (time_t)(r->timeout_ms / 1000),
                                 .tv_usec = (suseconds_t)(r->timeout_ms % 1000) * 1000};
            event_add(r->ev, &tv);
        } else if (!r->armed) {
            event_add(r->ev, NULL);
        } else {
            event_remove_timer(r->ev);
        }
        r->armed = true;
    } else if (r->armed) {
        event_del(r->ev);
        r->armed = false;
    }
}

static void input_drained(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct fg_reader *r = arg;
    if (info->n_deleted > 0 && r->enabled && !r->armed && below_high_water(r))
        rearm(r);
}

static void reader_cb(evutil_socket_t fd, short what, void *arg)
{
    struct fg_reader *r = arg;
    if (what & EV_TIMEOUT) {
        fg_reader_disable(r);
        if (r->on_event)
            r->on_event(BEV_EVENT_TIMEOUT | BEV_EVENT_READING, r->arg);
        return;
    }
    bool triggered = r->triggered;
    r->triggered = false;
    struct evbuffer *in = bufferevent_get_input(r->bev);
    struct evbuffer_iovec v[2];
    int n = evbuffer_reserve_space(in, FG_READ_MAX, v, 2);
    if (n <= 0)
        return;
    struct iovec iov[2];
    for (int i = 0; i < n; i++) {
        iov[i].iov_base = v[i].iov_base;
        iov[i].iov_len = v[i].iov_len;
    }
    /* One piece of room (the usual case): recv(2), cheaper in the kernel than readv(2). */
    ssize_t got = n == 1 ? recv(fd, iov[0].iov_base, iov[0].iov_len, 0) : readv(fd, iov, n);
    if (got > 0) {
        size_t left = (size_t)got;
        for (int i = 0; i < n; i++) {
            size_t take = left < v[i].iov_len ? left : v[i].iov_len;
            v[i].iov_len = take;
            left -= take;
        }
        evbuffer_commit_space(in, v, n);
        if (!below_high_water(r))
            rearm(r); /* paused until the owner drains below the watermark */
        if (r->on_read)
            r->on_read(r->arg);
        return;
    }
    evbuffer_commit_space(in, v, 0);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
        if (triggered && r->on_read)
            r->on_read(r->arg);
        return;
    }
    fg_reader_disable(r);
    if (r->on_event)
        r->on_event((got == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR) | BEV_EVENT_READING, r->arg);
}

/* ---- TLS mode ---------------------------------------------------------------------------- */

/* A TLS record carries at most 16 KiB: small pieces of output are joined up to that. */
#define FG_TLS_RECORD (16 * 1024)

static void tls_read_cb(struct bufferevent *bev, void *arg);

static struct timeval tv_ms(uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

/* The read timer runs while reading is wanted; event_remove_timer keeps a deferred call
 * that may be pending on the same event. */
static void tls_rearm(struct fg_reader *r)
{
    r->armed = r->enabled;
    if (r->enabled && r->timeout_ms) {
        struct timeval tv = tv_ms(r->timeout_ms);
        event_add(r->ev, &tv);
    } else {
        event_remove_timer(r->ev);
    }
}

static void tls_defer(struct fg_reader *r)
{
    event_active(r->ev, EV_READ, 0);
}

/* Bytes OpenSSL decrypted but libevent has not taken (it stops mid-record at the high
 * watermark): no socket event would bring them, so read them from the loop. */
static void tls_kick_pending(struct fg_reader *r)
{
    if (r->enabled && SSL_pending(r->ssl) > 0) {
        r->kick = true;
        tls_defer(r);
    }
}

/* The first OpenSSL error the bufferevent recorded (it hands them out last first; it
 * may also record SSL_get_error()'s small code, which names no library: skipped). */
static unsigned long tls_first_error(struct bufferevent *bev)
{
    unsigned long e, first = 0;
    while ((e = bufferevent_get_openssl_error(bev)) != 0) {
        if (ERR_GET_LIB(e) != 0)
            first = e;
    }
    return first;
}

/* Count the handshake once, and say why it failed. A peer that sent nothing and left
 * (a port probe, a load balancer's TCP check) made no handshake: not counted. */
static void tls_handshake_end(struct fg_reader *r)
{
    if (r->hs_done)
        return;
    r->hs_done = true;
    SSL *ssl = r->ssl;
    if (SSL_is_init_finished(ssl)) {
        fg_tls_handshake_done(ssl, 0);
        return;
    }
    unsigned long err = tls_first_error(r->bev);
    BIO *rbio = SSL_get_rbio(ssl);
    if (err == 0 && (rbio == NULL || BIO_number_read(rbio) == 0) && SSL_is_server(ssl))
        return;
    fg_tls_handshake_done(ssl, err);
    char why[256];
    long vr = SSL_get_verify_result(ssl);
    if (!SSL_is_server(ssl) && SSL_get_verify_mode(ssl) != SSL_VERIFY_NONE && vr != X509_V_OK)
        snprintf(why, sizeof(why), "certificate verification failed: %s",
                 X509_verify_cert_error_string(vr));
    else if (err != 0 && ERR_reason_error_string(err) != NULL)
        snprintf(why, sizeof(why), "%s", ERR_reason_error_string(err));
    else
        snprintf(why, sizeof(why), "connection closed during the handshake");
    const char *kind = fg_tls_fail_name(fg_tls_classify_failure(ssl, err));
    if (SSL_is_server(ssl))
        fg_info("tls: client %s: handshake failed (%s): %s; connection closed",
                r->peer ? r->peer : "-", kind, why);
    else
        fg_warn("tls: upstream %s: handshake failed (%s): %s; connection closed",
                r->peer ? r->peer : "-", kind, why);
}

static void tls_read_cb(struct bufferevent *bev, void *arg)
{
    struct fg_reader *r = arg;
    if (r->timeout_ms && r->enabled)
        tls_rearm(r); /* an inactivity timeout restarts with every read */
    if (r->on_read)
        r->on_read(r->arg);
}

static void tls_write_cb(struct bufferevent *bev, void *arg)
{
    struct fg_reader *r = arg;
    if (r->owner_write == NULL)
        return;
    r->pend_write = true;
    tls_defer(r);
}

static void tls_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct fg_reader *r = arg;
    if (what & (BEV_EVENT_CONNECTED | BEV_EVENT_ERROR | BEV_EVENT_EOF | BEV_EVENT_TIMEOUT))
        tls_handshake_end(r);
    r->pend_event |= what;
    tls_defer(r);
}

static void tls_ev_cb(evutil_socket_t fd, short what, void *arg)
{
    struct fg_reader *r = arg;
    bool alive = true;
    r->alive = &alive;
    short ev = r->pend_event;
    bool wr = r->pend_write, trig = r->triggered, kick = r->kick;
    r->pend_event = 0;
    r->pend_write = r->triggered = r->kick = false;
    bool timed_out = (what & EV_TIMEOUT) != 0;
    if (!timed_out)
        tls_rearm(r); /* firing took the read timer off */
    if (ev & BEV_EVENT_CONNECTED) {
        if (r->owner_event)
            r->owner_event(r->bev, BEV_EVENT_CONNECTED, r->owner_arg);
        if (!alive)
            return;
        ev &= (short)~BEV_EVENT_CONNECTED;
    }
    if (ev != 0) {
        r->alive = NULL;
        if (ev & BEV_EVENT_READING) {
            fg_reader_disable(r);
            if (r->on_event)
                r->on_event(ev, r->arg);
        } else if (r->owner_event) {
            r->owner_event(r->bev, ev, r->owner_arg);
        }
        return; /* the connection is over: nothing else to deliver */
    }
    if (wr && r->owner_write) {
        r->owner_write(r->bev, r->owner_arg);
        if (!alive)
            return;
    }
    if (kick && r->enabled)
        event_active(&r->bev->ev_read, EV_READ, 0);
    if (trig && r->on_read) {
        r->on_read(r->arg);
        if (!alive)
            return;
    }
    r->alive = NULL;
    if (timed_out && r->enabled) {
        if (!below_high_water(r)) {
            tls_rearm(r); /* paused by back-pressure, not idle */
            return;
        }
        fg_reader_disable(r);
        if (r->on_event)
            r->on_event(BEV_EVENT_TIMEOUT | BEV_EVENT_READING, r->arg);
    }
}

/* Input fell below the high watermark: libevent resumes reading, but bytes OpenSSL
 * already holds need a nudge. */
static void tls_input_drained(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct fg_reader *r = arg;
    if (info->n_deleted > 0 && below_high_water(r))
        tls_kick_pending(r);
}

static bool tls_init(struct fg_reader *r, SSL *ssl)
{
    r->ssl = ssl;
    r->ev = event_new(bufferevent_get_base(r->bev), -1, 0, tls_ev_cb, r);
    if (r->ev == NULL)
        return false;
    /* A TLS bufferevent starts with reading and writing enabled: the owner decides. */
    bufferevent_disable(r->bev, EV_READ | EV_WRITE);
    /* Peers that close without close_notify (most HTTP clients, many apps) end the stream
     * like a TCP FIN; framing (Content-Length, chunked) tells a truncated body apart. */
    bufferevent_openssl_set_allow_dirty_shutdown(r->bev, 1);
    bufferevent_setcb(r->bev, tls_read_cb, tls_write_cb, tls_event_cb, r);
    if (r->high_water > 0) {
        bufferevent_setwatermark(r->bev, EV_READ, 0, r->high_water);
        r->drain_cb = evbuffer_add_cb(bufferevent_get_input(r->bev), tls_input_drained, r);
    }
    return true;
}

/* fg_flush on TLS: hand the output to SSL_write now. While the socket takes it, we call
 * SSL_write ourselves, a record (16 KiB) at a time, as the bufferevent's writer would: no EV_WRITE
 * to enable and disable again (two epoll_ctl per response) and no write callback, as for
 * a plain socket. When SSL_write cannot finish (the socket is full, OpenSSL wants to
 * read first, an error), the rest is left to the bufferevent's writer: it retries with
 * the same bytes first (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER, common.c) and reports any
 * error through the event callback. */
static void tls_write(struct fg_reader *r)
{
    struct bufferevent *bev = r->bev;
    struct evbuffer *out = bufferevent_get_output(bev);
    if (evbuffer_get_length(out) == 0 || (bufferevent_get_enabled(bev) & EV_WRITE) ||
        !SSL_is_init_finished(r->ssl))
        return; /* nothing to send, or the bufferevent's writer is at it already */
    /* The bufferevent may keep its output's start frozen (only it drains it): the drain
     * of nothing below fails exactly then. */
    bool frozen = evbuffer_drain(out, 0) != 0;
    if (frozen)
        evbuffer_unfreeze(out, 1);
    size_t len;
    while ((len = evbuffer_get_length(out)) > 0) {
        size_t n = len < FG_TLS_RECORD ? len : FG_TLS_RECORD;
        unsigned char *p = evbuffer_pullup(out, (ev_ssize_t)n);
        if (p == NULL)
            break;
        ERR_clear_error();
        int w = SSL_write(r->ssl, p, (int)n);
        if (w <= 0)
            break;
        evbuffer_drain(out, (size_t)w);
    }
    if (frozen)
        evbuffer_freeze(out, 1);
}

/* ---- the reader ------------------------------------------------------------------------ */

bool fg_reader_init(struct fg_reader *r, struct bufferevent *bev, size_t high_water)
{
    *r = (struct fg_reader){.bev = bev, .high_water = high_water};
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (ssl != NULL) {
        if (tls_init(r, ssl))
            return true;
        fg_reader_free(r);
        return false;
    }
    r->ev = event_new(bufferevent_get_base(bev), bufferevent_getfd(bev), EV_READ | EV_PERSIST,
                      reader_cb, r);
    if (r->ev == NULL)
        return false;
    bufferevent_disable(bev, EV_READ);
    evbuffer_unfreeze(bufferevent_get_input(bev), 0); /* we are the ones who add */
    return true;
}

void fg_reader_free(struct fg_reader *r)
{
    if (r->alive != NULL)
        *r->alive = false;
    if (r->ssl != NULL) {
        tls_handshake_end(r); /* closed before the handshake ended: that is how it ended */
        if (SSL_is_init_finished(r->ssl) && !(SSL_get_shutdown(r->ssl) & SSL_SENT_SHUTDOWN)) {
            /* close_notify, best effort. It also keeps the session resumable: OpenSSL
             * forgets the session of an SSL freed without it (a pool's reconnect would
             * pay the full handshake). */
            SSL_shutdown(r->ssl);
            ERR_clear_error();
            SSL_set_shutdown(r->ssl, SSL_get_shutdown(r->ssl) | SSL_SENT_SHUTDOWN);
        }
        bufferevent_setcb(r->bev, NULL, NULL, NULL, NULL);
    }
    if (r->drain_cb != NULL)
        evbuffer_remove_cb_entry(bufferevent_get_input(r->bev), r->drain_cb);
    if (r->ev != NULL)
        event_free(r->ev);
    r->ev = NULL;
}

void fg_reader_setcb(struct fg_reader *r, void (*on_read)(void *), void (*on_event)(short, void *),
                     void *arg)
{
    r->on_read = on_read;
    r->on_event = on_event;
    r->arg = arg;
}

void fg_reader_enable(struct fg_reader *r)
{
    if (r->enabled && r->armed)
        return;
    r->enabled = true;
    if (r->ssl != NULL) {
        bufferevent_enable(r->bev, EV_READ);
        tls_rearm(r);
        tls_kick_pending(r);
        return;
    }
    rearm(r);
}

void fg_reader_disable(struct fg_reader *r)
{
    r->enabled = false;
    if (r->ssl != NULL) {
        bufferevent_disable(r->bev, EV_READ);
        tls_rearm(r);
        return;
    }
    rearm(r);
}

void fg_reader_set_timeout(struct fg_reader *r, uint64_t ms)
{
    if (r->timeout_ms == ms)
        return;
    r->timeout_ms = ms;
    if (r->ssl != NULL)
        tls_rearm(r);
    else if (r->armed)
        rearm(r);
}

void fg_reader_trigger(struct fg_reader *r)
{
    r->triggered = true;
    event_active(r->ev, EV_READ, 0);
}

void fg_reader_bev_setcb(struct fg_reader *r, bufferevent_data_cb write_cb,
                         bufferevent_event_cb event_cb, void *arg)
{
    if (r->ssl == NULL) {
        bufferevent_setcb(r->bev, NULL, write_cb, event_cb, arg);
        return;
    }
    r->owner_write = write_cb;
    r->owner_event = event_cb;
    r->owner_arg = arg;
    r->pend_write = false; /* a drain meant for the previous owner */
}

void fg_reader_set_peer(struct fg_reader *r, const char *peer)
{
    r->peer = peer;
}

void fg_shutdown_write(struct fg_reader *r)
{
    if (r->ssl != NULL && SSL_is_init_finished(r->ssl)) {
        /* close_notify: the client learns the stream ended on purpose. The socket BIO
         * writes it at once; a full socket only costs the alert. */
        SSL_shutdown(r->ssl);
        ERR_clear_error();
    }
    shutdown(bufferevent_getfd(r->bev), SHUT_WR);
}
