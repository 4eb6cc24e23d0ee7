/*
 * exchange.c — one request to the upstream and its response (upstream.h, "one exchange").
 *
 * The only place that parses a response head from the app, de-frames its body and
 * decides whether the connection goes back to the pool; the proxy path and the cache
 * fill both drive their answers through here. Bodies are never copied: payload bytes
 * stay in the connection's input buffer and the owner moves them on (for a chunked body,
 * the payload of one read is gathered first, so the owner sees one piece per read).
 *
 * Lifetime: callbacks may end the exchange (abort, fail) or re-own it while the exchange
 * is on the stack, so every entry point counts its depth and the memory is freed when the
 * outermost one returns.
 */
#include "upstream/upstream.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FG_EXCHANGE_MAGIC 0x78636831u /* "xch1" */
#define FG_RESP_HEAD_MAX  65536

enum x_state {
    X_WAIT = 0, /* no final response head yet: retries are still possible */
    X_BODY,     /* head delivered, body flowing */
    X_DONE,     /* ended: no more callbacks */
};

struct fg_upstream_exchange {
    unsigned magic;
    struct fg_upstream_pool *pool;
    struct fg_upstream_conn *uc; /* NULL once released */
    const struct fg_upstream_exchange_ops *ops;
    void *arg;
    struct fg_upstream_request req;
    enum x_state state;
    bool req_done; /* the request's last byte is queued */
    bool retried;  /* the once-only retry on a fresh connection was used */
    bool paused;   /* the owner does not want the response now */
    bool interim;  /* an interim answer came: the app has the request, never resend it */
    unsigned attempts;
    unsigned depth; /* entry points on the stack */
    bool freed;     /* free when depth drops to 0 */
    /* the response body */
    enum fg_http_body body;
    uint64_t left;
    struct fg_http_chunked chunked;
    bool reusable;          /* the app keeps the connection open after this response */
    struct evbuffer *stage; /* chunked: one read's payload, gathered */
    const char *server;     /* the config's text of the server (outlives the exchange) */
    /* the connection the answer comes on: taken from the pool, or how long its connect took */
    bool reused;
    uint64_t connect_start_us, connect_us;
    uint64_t head_deadline_ms; /* read_timeout bounds the whole head: 0 until the request is sent */
};

static void read_cb(void *arg);
static void read_event_cb(short what, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);

static struct timeval tv_ms(uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

/* ---- memory: a few spare exchanges per thread ----------------------------------------------
 *
 * An exchange per proxied request: calloc and free cost more than the rest of its start.
 * Each worker keeps a few spares (a thread-local list; the thread's exit frees it). */

#define SPARES_MAX 32

struct spares {
    struct fg_upstream_exchange *list[SPARES_MAX];
    unsigned n;
};

static pthread_key_t spares_key;
static pthread_once_t spares_once = PTHREAD_ONCE_INIT;
static _Thread_local struct spares *spares;

static void spares_free(void *arg)
{
    struct spares *sp = arg;
    for (unsigned i = 0; i < sp->n; i++)
        free(sp->list[i]);
    free(sp);
}

static void spares_key_make(void)
{
    pthread_key_create(&spares_key, spares_free);
}

static struct fg_upstream_exchange *x_alloc(void)
{
    if (spares != NULL && spares->n > 0) {
        struct fg_upstream_exchange *x = spares->list[--spares->n];
        memset(x, 0, sizeof(*x));
        return x;
    }
    return calloc(1, sizeof(struct fg_upstream_exchange));
}

static void x_free(struct fg_upstream_exchange *x)
{
    if (spares == NULL) {
        pthread_once(&spares_once, spares_key_make);
        spares = calloc(1, sizeof(*spares));
        if (spares != NULL)
            pthread_setspecific(spares_key, spares);
    }
    if (spares != NULL && spares->n < SPARES_MAX)
        spares->list[spares->n++] = x;
    else
        free(x);
}

/* ---- lifetime --------------------------------------------------------------------------- */

static void enter(struct fg_upstream_exchange *x)
{
    x->depth++;
}

static void leave(struct fg_upstream_exchange *x)
{
    if (--x->depth == 0 && x->freed) {
        if (x->stage != NULL)
            evbuffer_free(x->stage);
        x->magic = 0;
        x_free(x);
    }
}

/* No more callbacks; the memory goes when the outermost entry point returns. */
static void finish(struct fg_upstream_exchange *x)
{
    x->state = X_DONE;
    x->freed = true;
}

static bool gone(const struct fg_upstream_exchange *x)
{
    return x->state == X_DONE;
}

/* ---- the connection --------------------------------------------------------------------- */

static void set_timeouts(struct fg_upstream_exchange *x)
{
    const struct fg_conf_upstream *u = fg_upstream_pool_conf(x->pool);
    struct timeval wt = tv_ms(u->send_timeout_ms);
    /* The read timeout runs once the request is sent: the app may rightly wait for the
     * whole body before it answers, however slowly the client uploads it. */
    fg_reader_set_timeout(&x->uc->reader, x->req_done ? u->read_timeout_ms : 0);
    bufferevent_set_timeouts(x->uc->bev, NULL, &wt);
    if (x->req_done && x->state == X_WAIT && x->head_deadline_ms == 0)
        x->head_deadline_ms = fg_mono_ms() + u->read_timeout_ms;
}

/* The head is still incomplete: the read timeout is what is left of its deadline, so an
 * app that drips its head a byte at a time is cut at read_timeout as a silent one is. */
static void head_timeout(struct fg_upstream_exchange *x)
{
    if (x->head_deadline_ms == 0)
        return;
    uint64_t now = fg_mono_ms();
    fg_reader_set_timeout(&x->uc->reader,
                          x->head_deadline_ms > now ? x->head_deadline_ms - now : 1);
}

static bool attach(struct fg_upstream_exchange *x, bool fresh, int exclude)
{
    /* An upgrade becomes a tunnel that never returns to the pool: never take a pooled one
     * (the app may treat a connection that switched protocols differently). */
    struct fg_upstream_conn *uc = fg_upstream_acquire(x->pool, fresh || x->req.upgrade, exclude);
    if (uc == NULL)
        return false;
    x->uc = uc;
    x->attempts++;
    x->server = fg_upstream_server_name(x->pool, uc->server);
    x->reused = uc->reused; /* from the pool; a new one connects now */
    x->connect_us = 0;
    x->connect_start_us = uc->connected ? 0 : fg_mono_us();
    x->head_deadline_ms = 0; /* a new connection: the head's deadline starts when it is sent */
    fg_reader_bev_setcb(&uc->reader, write_cb, event_cb, x);
    bufferevent_setwatermark(uc->bev, EV_WRITE, FG_LOW_WATER, 0);
    fg_reader_setcb(&uc->reader, read_cb, read_event_cb, x);
    fg_reader_enable(&uc->reader);
    if (uc->connected)
        set_timeouts(x);
    else
        bufferevent_enable(uc->bev, EV_WRITE); /* the connect completes through it */
    return true;
}

/* Write now when connected; while a connect is in progress libevent writes on completion. */
static size_t flush(struct fg_upstream_exchange *x)
{
    if (x->uc == NULL)
        return 0;
    if (x->uc->connected)
        return fg_flush(x->uc->bev);
    return evbuffer_get_length(bufferevent_get_output(x->uc->bev));
}

static void release(struct fg_upstream_exchange *x, bool reusable)
{
    if (x->uc != NULL) {
        fg_upstream_release(x->uc, reusable);
        x->uc = NULL;
    }
}

/* ---- endings ---------------------------------------------------------------------------- */

static void complete(struct fg_upstream_exchange *x)
{
    fg_upstream_report(x->pool, x->uc->server, true, FG_UPSTREAM_FAIL_CONNECT);
    release(x, x->reusable && x->req_done);
    finish(x);
    x->ops->on_end(x->arg, x);
}

/* The request head onto a new connection: straight to the socket when the request is
 * complete and the connection ready (a pooled one); else queued, for the body's first
 * bytes to join it in one write, or for the connect to send. */
static void write_head(struct fg_upstream_exchange *x)
{
    if (x->uc->connected && x->req_done)
        fg_send(x->uc->bev, x->req.head, x->req.head_len);
    else
        evbuffer_add(bufferevent_get_output(x->uc->bev), x->req.head, x->req.head_len);
}

/* A retry on a new connection; false when none could be made. */
static bool retry(struct fg_upstream_exchange *x, bool fresh, int exclude, struct evbuffer *pending)
{
    if (!attach(x, fresh, exclude))
        return false;
    fg_counter_add(&fg_upstream_pool_stats(x->pool)->retries, 1);
    if (pending != NULL)
        evbuffer_add_buffer(bufferevent_get_output(x->uc->bev), pending);
    else
        write_head(x);
    flush(x);
    return true;
}

/*
 * The app failed us (or the owner gave up on the answer). Before any response byte, the
 * retry rules may send the request again; otherwise the owner hears of it.
 */
static void failed(struct fg_upstream_exchange *x, enum fg_upstream_failure why, int status,
                   const char *detail)
{
    struct fg_upstream_conn *uc = x->uc;
    const struct fg_conf_upstream *u = fg_upstream_pool_conf(x->pool);
    bool before_head = x->state == X_WAIT;
    bool nothing_back =
        before_head && !x->interim && evbuffer_get_length(bufferevent_get_input(uc->bev)) == 0;
    fg_upstream_report(x->pool, uc->server, false, why);

    if (before_head && !uc->connected && why != FG_UPSTREAM_FAIL_BAD_RESPONSE &&
        x->attempts < fg_upstream_server_count(x->pool)) {
        /* Nothing reached the app: what was written goes to another server. */
        fg_warn("upstream %s: %s %s; trying another server", u->name, x->server, detail);
        int failed_server = (int)uc->server;
        struct evbuffer *pending = evbuffer_new();
        if (pending != NULL) {
            evbuffer_add_buffer(pending, bufferevent_get_output(uc->bev));
            release(x, false);
            bool ok = retry(x, false, failed_server, pending);
            evbuffer_free(pending);
            if (ok)
                return;
        }
    } else if (nothing_back && uc->reused && !x->retried && u->retry_idempotent &&
               x->req.retryable && why != FG_UPSTREAM_FAIL_TIMEOUT) {
        /* The app closed the pooled connection as we reused it: once more, fresh. */
        fg_info("upstream %s: %s %s on a reused connection; sent again on a new one", u->name,
                x->server, detail);
        x->retried = true;
        release(x, false);
        if (retry(x, true, -1, NULL))
            return;
    }
    release(x, false);
    struct fg_upstream_error e = {
        .why = why, .status = status, .detail = detail, .server = x->server};
    finish(x);
    x->ops->on_error(x->arg, x, &e);
}

/* ---- the response ----------------------------------------------------------------------- */

/* Hand n payload bytes of in to the owner. false when the exchange ended meanwhile. */
static bool deliver(struct fg_upstream_exchange *x, struct evbuffer *in, size_t n)
{
    x->ops->on_body(x->arg, x, in, n);
    return !gone(x);
}

static void pump(struct fg_upstream_exchange *x)
{
    if (x->paused)
        return;
    struct evbuffer *in = bufferevent_get_input(x->uc->bev);
    switch (x->body) {
    case FG_HTTP_BODY_LENGTH: {
        size_t avail = evbuffer_get_length(in);
        size_t n = avail < x->left ? avail : (size_t)x->left;
        if (n > 0) {
            x->left -= n;
            if (!deliver(x, in, n))
                return;
        }
        if (x->left == 0)
            complete(x);
        return;
    }
    case FG_HTTP_BODY_CHUNKED: {
        /* Gather this read's payload, framing dropped, then deliver it as one piece. */
        if (x->stage == NULL && (x->stage = evbuffer_new()) == NULL) {
            failed(x, FG_UPSTREAM_FAIL_BAD_RESPONSE, 502, "could not be read (out of memory)");
            return;
        }
        enum fg_http_chunk_status st = FG_CHUNK_MORE;
        for (;;) {
            if (x->chunked.data_left > 0) {
                size_t avail = evbuffer_get_length(in);
                if (avail == 0)
                    break;
                size_t n = avail < x->chunked.data_left ? avail : (size_t)x->chunked.data_left;
                evbuffer_remove_buffer(in, x->stage, n);
                fg_http_chunked_data(&x->chunked, n);
                continue;
            }
            struct evbuffer_iovec v;
            if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
                break;
            size_t used = 0;
            enum fg_http_error err = FG_HTTP_E_NONE;
            st = fg_http_chunked_parse(&x->chunked, v.iov_base, v.iov_len, &used, &err);
            evbuffer_drain(in, used);
            if (st == FG_CHUNK_DATA || (st == FG_CHUNK_MORE && used > 0))
                continue; /* payload next, or framing goes on in the next segment */
            break;        /* more input needed, the end, or an error */
        }
        size_t n = evbuffer_get_length(x->stage);
        if (st == FG_CHUNK_ERROR) {
            /* This read's payload is dropped: the answer is broken either way, and when
             * none of it reached the owner's client yet, it can still answer 502. */
            evbuffer_drain(x->stage, n);
            failed(x, FG_UPSTREAM_FAIL_BAD_RESPONSE, 502, "sent a malformed chunked body");
            return;
        }
        if (n > 0 && !deliver(x, x->stage, n))
            return;
        if (st == FG_CHUNK_DONE)
            complete(x);
        return;
    }
    case FG_HTTP_BODY_CLOSE: {
        size_t n = evbuffer_get_length(in);
        if (n > 0)
            deliver(x, in, n);
        return;
    }
    case FG_HTTP_BODY_NONE:
        return;
    }
}

/* Interim responses: 100 Continue was ours to send to the client (we did, if it asked);
 * 101 is final for an upgrade request whose owner takes the connection, an error
 * otherwise; any other 1xx (103 Early Hints) goes to the owner that wants it. */
static bool interim_ok(struct fg_upstream_exchange *x, const struct fg_http_response *resp)
{
    if (resp->status == 101) {
        failed(x, FG_UPSTREAM_FAIL_BAD_RESPONSE, 502, "switched protocols without being asked");
        return false;
    }
    x->interim = true;
    if (resp->status != 100 && x->ops->on_interim != NULL) {
        x->ops->on_interim(x->arg, x, resp);
        if (gone(x))
            return false;
    }
    return true;
}

/* The app switched protocols: the 101 goes to the owner, then the connection. */
static void upgraded(struct fg_upstream_exchange *x, const struct fg_http_response *resp,
                     size_t head_len)
{
    struct fg_upstream_conn *uc = x->uc;
    x->state = X_BODY;
    x->req.head = NULL;
    x->ops->on_head(x->arg, x, resp);
    if (gone(x))
        return;
    evbuffer_drain(bufferevent_get_input(uc->bev), head_len);
    fg_upstream_report(x->pool, uc->server, true, FG_UPSTREAM_FAIL_CONNECT);
    x->uc = NULL; /* not released: the owner has it now */
    finish(x);
    x->ops->on_upgrade(x->arg, x, uc);
}

static void read_head(struct fg_upstream_exchange *x)
{
    struct evbuffer *in = bufferevent_get_input(x->uc->bev);
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (len == 0) {
            head_timeout(x); /* after an interim answer: the final head's deadline holds */
            return;
        }
        size_t n = len < FG_RESP_HEAD_MAX ? len : FG_RESP_HEAD_MAX;
        const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        struct fg_http_limits lim = {.max_request_line = 8192,
                                     .max_header_bytes = FG_RESP_HEAD_MAX,
                                     .max_headers = FG_HTTP_MAX_HEADERS};
        struct fg_http_response resp;
        enum fg_http_error err = FG_HTTP_E_NONE;
        int rc = fg_http_parse_response(buf, n, &lim, x->req.method, &resp, &err);
        if (rc == FG_HTTP_INCOMPLETE) {
            head_timeout(x);
            return;
        }
        if (rc == FG_HTTP_ERROR) {
            char detail[96];
            snprintf(detail, sizeof(detail), "sent an invalid response (%s)",
                     fg_http_error_name(err));
            failed(x, FG_UPSTREAM_FAIL_BAD_RESPONSE, 502, detail);
            return;
        }
        if (resp.status == 101 && x->req.upgrade && x->ops->on_upgrade != NULL) {
            upgraded(x, &resp, (size_t)rc);
            return;
        }
        if (resp.status < 200) {
            if (!interim_ok(x, &resp))
                return;
            evbuffer_drain(in, (size_t)rc);
            continue;
        }
        x->state = X_BODY;
        x->req.head = NULL;           /* no retry from here on: the owner's head may go */
        if (x->head_deadline_ms != 0) /* the body: read_timeout between reads again */
            fg_reader_set_timeout(&x->uc->reader, fg_upstream_pool_conf(x->pool)->read_timeout_ms);
        x->body = resp.body;
        x->left = resp.content_length;
        fg_http_chunked_init(&x->chunked);
        x->reusable = resp.body != FG_HTTP_BODY_CLOSE && !(resp.flags & FG_HTTP_F_CONN_CLOSE) &&
                      (resp.minor_version == 1 || (resp.flags & FG_HTTP_F_CONN_KEEPALIVE));
        /* The owner reads resp's slices: the head leaves the input only afterwards. */
        x->ops->on_head(x->arg, x, &resp);
        if (gone(x))
            return;
        evbuffer_drain(in, (size_t)rc);
        if (resp.body == FG_HTTP_BODY_NONE ||
            (resp.body == FG_HTTP_BODY_LENGTH && resp.content_length == 0)) {
            complete(x);
            return;
        }
        pump(x);
        return;
    }
}

/* ---- events ----------------------------------------------------------------------------- */

static void read_cb(void *arg)
{
    struct fg_upstream_exchange *x = arg;
    FG_ASSERT(x->magic == FG_EXCHANGE_MAGIC);
    enter(x);
    if (x->state == X_WAIT)
        read_head(x);
    else if (x->state == X_BODY)
        pump(x);
    leave(x);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct fg_upstream_exchange *x = arg;
    FG_ASSERT(x->magic == FG_EXCHANGE_MAGIC);
    if (x->uc->connected && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE); /* back to writing through (fg_flush) */
    if (x->req_done || x->ops->on_writable == NULL)
        return;
    enter(x);
    x->ops->on_writable(x->arg, x);
    leave(x);
}

static void read_event_cb(short what, void *arg)
{
    struct fg_upstream_exchange *x = arg;
    event_cb(x->uc->bev, what, x);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct fg_upstream_exchange *x = arg;
    FG_ASSERT(x->magic == FG_EXCHANGE_MAGIC);
    struct fg_upstream_conn *uc = x->uc;
    if (what & BEV_EVENT_CONNECTED) {
        fg_upstream_connected(uc);
        x->connect_us = fg_mono_us() - x->connect_start_us;
        set_timeouts(x);
        fg_flush(bev);
        return;
    }
    enter(x);
    if (what & BEV_EVENT_TIMEOUT) {
        if (!uc->connected)
            failed(x, FG_UPSTREAM_FAIL_CONNECT, 504, "connect timed out");
        else if (what & BEV_EVENT_READING)
            failed(x, FG_UPSTREAM_FAIL_TIMEOUT, 504, "timed out waiting for the response");
        else
            failed(x, FG_UPSTREAM_FAIL_TIMEOUT, 504, "timed out accepting the request");
    } else if ((what & BEV_EVENT_EOF) && x->state == X_BODY && x->body == FG_HTTP_BODY_CLOSE) {
        /* A close-delimited body ends here: what is buffered is its tail. */
        struct evbuffer *in = bufferevent_get_input(bev);
        size_t n = evbuffer_get_length(in);
        if (n == 0 || deliver(x, in, n)) {
            x->reusable = false;
            complete(x);
        }
    } else if (!uc->connected) {
        failed(x, FG_UPSTREAM_FAIL_CONNECT, 502,
               fg_reader_ssl(&uc->reader) != NULL
                   ? "could not be connected (TCP connect or TLS handshake failed)"
                   : "refused the connection");
    } else if (x->state == X_WAIT) {
        failed(x, FG_UPSTREAM_FAIL_RESET, 502, "closed the connection before responding");
    } else {
        failed(x, FG_UPSTREAM_FAIL_RESET, 502, "closed the connection mid-response");
    }
    leave(x);
}

/* ---- the owner's calls ------------------------------------------------------------------ */

struct fg_upstream_exchange *fg_upstream_exchange_start(struct fg_upstream_pool *pool,
                                                        const struct fg_upstream_request *req,
                                                        const struct fg_upstream_exchange_ops *ops,
                                                        void *arg)
{
    struct fg_upstream_exchange *x = x_alloc();
    if (x == NULL)
        return NULL;
    x->magic = FG_EXCHANGE_MAGIC;
    x->pool = pool;
    x->ops = ops;
    x->arg = arg;
    x->req = *req;
    x->req_done = req->body == FG_UPSTREAM_BODY_NONE;
    if (!attach(x, false, -1)) {
        x_free(x);
        return NULL;
    }
    write_head(x);
    return x;
}

size_t fg_upstream_exchange_send(struct fg_upstream_exchange *x, struct evbuffer *src, size_t n)
{
    FG_ASSERT(x->magic == FG_EXCHANGE_MAGIC && !x->req_done);
    struct evbuffer *out = bufferevent_get_output(x->uc->bev);
    if (n > 0 && x->req.body == FG_UPSTREAM_BODY_CHUNKED) {
        /* Our own framing, whatever the client's was. */
        char line[24];
        evbuffer_add(out, line, fg_http_chunk_header(line, n));
        evbuffer_remove_buffer(src, out, n);
        evbuffer_add(out, "\r\n", 2);
    } else if (n > 0) {
        evbuffer_remove_buffer(src, out, n);
    }
    return evbuffer_get_length(out);
}

size_t fg_upstream_exchange_flush(struct fg_upstream_exchange *x)
{
    FG_ASSERT(x->magic == FG_EXCHANGE_MAGIC);
    return flush(x);
}

void fg_upstream_exchange_send_end(struct fg_upstream_exchange *x)
{
    FG_ASSERT(x->magic == FG_EXCHANGE_MAGIC);
    if (x->req_done || x->uc == NULL)
        return;
    if (x->req.body == FG_UPSTREAM_BODY_CHUNKED)
        evbuffer_add(bufferevent_get_output(x->uc->bev), "0\r\n\r\n", 5);
    x->req_done = true;
    if (x->uc->connected)
        set_timeouts(x);
    flush(x);
}

void fg_upstream_exchange_pause(struct fg_upstream_exchange *x)
{
    FG_ASSERT(x->magic == FG_EXCHANGE_MAGIC);
    if (x->paused || x->uc == NULL)
        return;
    x->paused = true;
    fg_reader_disable(&x->uc->reader);
}

void fg_upstream_exchange_resume(struct fg_upstream_exchange *x)
{
    FG_ASSERT(x->magic == FG_EXCHANGE_MAGIC);
    if (!x->paused || x->uc == NULL)
        return;
    x->paused = false;
    fg_reader_enable(&x->uc->reader);
    if (x->state != X_BODY)
        return;
    enter(x);
    pump(x);
    leave(x);
}

void fg_upstream_exchange_set_owner(struct fg_upstream_exchange *x,
                                    const struct fg_upstream_exchange_ops *ops, void *arg)
{
    FG_ASSERT(x->magic == FG_EXCHANGE_MAGIC);
    x->ops = ops;
    x->arg = arg;
}

void fg_upstream_exchange_abort(struct fg_upstream_exchange *x)
{
    FG_ASSERT(x->magic == FG_EXCHANGE_MAGIC);
    if (gone(x))
        return;
    enter(x);
    release(x, false);
    finish(x);
    leave(x);
}

void fg_upstream_exchange_fail(struct fg_upstream_exchange *x, enum fg_upstream_failure why,
                               int status, const char *detail)
{
    FG_ASSERT(x->magic == FG_EXCHANGE_MAGIC);
    if (gone(x))
        return;
    enter(x);
    x->state = X_BODY; /* the owner refused the answer: nothing to retry */
    failed(x, why, status, detail);
    leave(x);
}

void fg_upstream_exchange_timing(const struct fg_upstream_exchange *x,
                                 struct fg_upstream_timing *out)
{
    out->attempts = x->attempts;
    out->reused = x->reused;
    out->connect_us = x->connect_us;
}

const char *fg_upstream_exchange_server(const struct fg_upstream_exchange *x)
{
    return x->server;
}
