/*
 * proxy.c — forwarding one transaction to the app and its answer back.
 *
 * Bodies stream both ways through evbuffers without copies (evbuffer_remove_buffer moves
 * chains). Back-pressure: a side whose peer has FG_HIGH_WATER bytes waiting stops being
 * read until the peer drains to FG_LOW_WATER, so a slow client never makes us hold a
 * whole large response. Chunked bodies are decoded and re-encoded (never passed through
 * raw): what we send is always framing we produced ourselves.
 */
#include "server/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FG_RESP_HEAD_MAX 65536

static void up_read_cb(void *arg);
static void up_read_event_cb(short what, void *arg);
static void up_write_cb(struct bufferevent *bev, void *arg);
static void up_event_cb(struct bufferevent *bev, short what, void *arg);
static void req_body_pump(struct fg_txn *t);
static void resp_body_pump(struct fg_txn *t);

static struct timeval tv_ms(uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

/* ---- building the request head --------------------------------------------------------- */

static bool head_reserve(struct fg_txn *t, size_t more)
{
    if (t->head_len + more <= t->head_cap)
        return true;
    size_t cap = t->head_cap ? t->head_cap : 2048;
    while (cap < t->head_len + more)
        cap *= 2;
    char *p = realloc(t->head, cap);
    if (p == NULL)
        return false;
    t->head = p;
    t->head_cap = cap;
    return true;
}

static void head_put(struct fg_txn *t, const char *s, size_t len)
{
    if (!head_reserve(t, len))
        return;
    memcpy(t->head + t->head_len, s, len);
    t->head_len += len;
}

#define HEAD_LIT(t, lit) head_put((t), (lit), sizeof(lit) - 1)

static void head_field(struct fg_txn *t, const char *name, size_t nlen, const char *value,
                       size_t vlen)
{
    if (!head_reserve(t, nlen + vlen + 4))
        return;
    char *p = t->head + t->head_len;
    memcpy(p, name, nlen);
    p += nlen;
    *p++ = ':';
    *p++ = ' ';
    memcpy(p, value, vlen);
    p += vlen;
    *p++ = '\r';
    *p++ = '\n';
    t->head_len += nlen + vlen + 4;
}

static void make_request_id(struct fg_worker *w, char out[40])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t a = fg_worker_random(w), b = fg_worker_random(w);
    for (int i = 0; i < 16; i++) {
        out[i] = hex[(a >> (i * 4)) & 15];
        out[16 + i] = hex[(b >> (i * 4)) & 15];
    }
    out[32] = '\0';
}

/* Client fields a cache fill must not forward: the stored answer must be the whole,
 * unconditional representation (the client's conditionals are answered from it). */
static bool cache_fill_strips(const struct fg_http_header *h)
{
    return fg_http_name_eq(h->name, h->name_len, "if-none-match") ||
           fg_http_name_eq(h->name, h->name_len, "if-modified-since") ||
           fg_http_name_eq(h->name, h->name_len, "if-match") ||
           fg_http_name_eq(h->name, h->name_len, "if-unmodified-since") ||
           fg_http_name_eq(h->name, h->name_len, "if-range") ||
           fg_http_name_eq(h->name, h->name_len, "range");
}

/* The request as the app sees it: our framing, no hop-by-hop fields, forwarding fields. */
bool fg_proxy_build_head(struct fg_txn *t, bool for_cache)
{
    struct fg_conn *c = t->c;
    const struct fg_http_request *r = &t->req;
    const struct fg_conf_server *srv = t->srv;
    bool peer_trusted = fg_cidr_match(srv->trusted_proxies, srv->n_trusted_proxies,
                                      (const struct sockaddr *)&c->peer);
    t->head_len = 0;

    if (for_cache)
        HEAD_LIT(t, "GET "); /* a HEAD miss fills the GET entry it is served from */
    else
        head_put(t, r->method_name, r->method_len), HEAD_LIT(t, " ");
    if (r->flags & FG_HTTP_F_ABSOLUTE_FORM) {
        head_put(t, r->path, r->path_len);
        if (r->query != NULL) {
            HEAD_LIT(t, "?");
            head_put(t, r->query, r->query_len);
        }
    } else {
        head_put(t, r->target, r->target_len);
    }
    HEAD_LIT(t, " HTTP/1.1\r\n");

    const struct fg_http_header *xff_last = NULL;
    bool have_proto = false, have_port = false;
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct fg_http_header *h = &r->headers[i];
        if (fg_http_is_hop_by_hop(h->name, h->name_len) ||
            fg_http_name_eq(h->name, h->name_len, "content-length") ||
            fg_http_name_eq(h->name, h->name_len, "expect"))
            continue;
        if ((r->flags & FG_HTTP_F_CONN_OTHER) &&
            fg_http_connection_lists(r->headers, r->n_headers, h->name, h->name_len))
            continue;
        if ((r->flags & FG_HTTP_F_ABSOLUTE_FORM) && fg_http_name_eq(h->name, h->name_len, "host"))
            continue;
        if (for_cache && cache_fill_strips(h))
            continue;
        /* A compressing route stores its own encodings: it asks the app for identity. */
        if (for_cache && t->zroute && fg_http_name_eq(h->name, h->name_len, "accept-encoding"))
            continue;
        if (fg_http_name_eq(h->name, h->name_len, "x-forwarded-for")) {
            /* Several X-Forwarded-For fields are one list (RFC 9110 §5.3): keep them in
             * order and append the peer to the last one. */
            if (xff_last != NULL)
                head_field(t, xff_last->name, xff_last->name_len, xff_last->value,
                           xff_last->value_len);
            xff_last = h;
            continue;
        }
        if (fg_http_name_eq(h->name, h->name_len, "x-forwarded-proto")) {
            if (!peer_trusted)
                continue; /* only a trusted proxy (the ALB) may tell us the scheme */
            have_proto = true;
        } else if (fg_http_name_eq(h->name, h->name_len, "x-forwarded-port")) {
            if (!peer_trusted)
                continue;
            have_port = true;
        } else if (fg_http_name_eq(h->name, h->name_len, "x-request-id")) {
            if (h->value_len > 0 && h->value_len < sizeof(t->request_id))
                memcpy(t->request_id, h->value, h->value_len), t->request_id[h->value_len] = 0;
        }
        head_field(t, h->name, h->name_len, h->value, h->value_len);
    }
    if (r->flags & FG_HTTP_F_ABSOLUTE_FORM) {
        head_field(t, "Host", 4, r->host, r->host_len);
    } else if (r->host == NULL) {
        /* An HTTP/1.0 request may come without Host; an HTTP/1.1 one may not, and we
         * send 1.1. Name the upstream instead, as nginx's proxy_pass does. */
        const char *name = t->route->upstream->name;
        head_field(t, "Host", 4, name, strlen(name));
    }

    char val[8192];
    size_t plen = strlen(c->peer_ip);
    if (xff_last != NULL && xff_last->value_len + plen + 2 < sizeof(val)) {
        memcpy(val, xff_last->value, xff_last->value_len);
        memcpy(val + xff_last->value_len, ", ", 2);
        memcpy(val + xff_last->value_len + 2, c->peer_ip, plen);
        head_field(t, "X-Forwarded-For", 15, val, xff_last->value_len + 2 + plen);
    } else {
        head_field(t, "X-Forwarded-For", 15, c->peer_ip, plen);
    }
    if (!have_proto && fg_reader_ssl(&c->reader) != NULL)
        HEAD_LIT(t, "X-Forwarded-Proto: https\r\n");
    else if (!have_proto)
        HEAD_LIT(t, "X-Forwarded-Proto: http\r\n");
    if (!have_port)
        head_field(t, "X-Forwarded-Port", 16, c->lst->port_text, strlen(c->lst->port_text));
    if (t->request_id[0] == '\0' && srv->add_request_id) {
        make_request_id(c->w, t->request_id);
        head_field(t, "X-Request-Id", 12, t->request_id, 32);
    }
    if (r->body == FG_HTTP_BODY_LENGTH) {
        char digits[24];
        size_t n = 0;
        uint64_t v = r->content_length;
        do {
            digits[sizeof(digits) - 1 - n++] = (char)('0' + v % 10);
            v /= 10;
        } while (v != 0);
        head_field(t, "Content-Length", 14, digits + sizeof(digits) - n, n);
    } else if (r->body == FG_HTTP_BODY_CHUNKED) {
        HEAD_LIT(t, "Transfer-Encoding: chunked\r\n");
    }
    HEAD_LIT(t, "\r\n");
    return head_reserve(t, 0) && t->head_len > 0;
}

/* ---- upstream connection handling ------------------------------------------------------ */

/* Write to the app now when connected; while a connect is in progress libevent writes
 * on completion (EV_WRITE must stay enabled for it to see the connect finish). */
static void up_flush(struct fg_txn *t)
{
    if (t->uc != NULL && t->uc->connected)
        fg_flush(t->uc->bev);
}

static void set_upstream_timeouts(struct fg_txn *t)
{
    const struct fg_conf_upstream *u = fg_upstream_pool_conf(t->pool);
    struct timeval wt = tv_ms(u->send_timeout_ms);
    /* The read timeout runs once the request is sent: the app may rightly wait for the
     * whole body before it answers, however slowly the client uploads it. */
    fg_reader_set_timeout(&t->uc->reader, t->req_state == FG_REQ_DONE ? u->read_timeout_ms : 0);
    bufferevent_set_timeouts(t->uc->bev, NULL, &wt);
}

static bool attach_upstream(struct fg_txn *t, bool fresh, int exclude)
{
    struct fg_upstream_conn *uc = fg_upstream_acquire(t->pool, fresh, exclude);
    if (uc == NULL)
        return false;
    t->uc = uc;
    t->attempts++;
    snprintf(t->log_upstream, sizeof(t->log_upstream), "%s",
             fg_upstream_server_name(t->pool, uc->server));
    fg_reader_bev_setcb(&uc->reader, up_write_cb, up_event_cb, t);
    bufferevent_setwatermark(uc->bev, EV_WRITE, FG_LOW_WATER, 0);
    fg_reader_setcb(&uc->reader, up_read_cb, up_read_event_cb, t);
    fg_reader_enable(&uc->reader);
    if (uc->connected)
        set_upstream_timeouts(t);
    else
        bufferevent_enable(uc->bev, EV_WRITE); /* the connect completes through it */
    return true;
}

static void client_request_done(struct fg_txn *t)
{
    t->req_state = FG_REQ_DONE;
    fg_conn_body_finished(t->c);
    /* Pipelined requests wait in the input buffer until this response is complete; the
     * read high watermark (conn.c) bounds how much of them we take in meanwhile. */
    if (t->uc != NULL && t->uc->connected)
        set_upstream_timeouts(t);
}

void fg_proxy_start(struct fg_txn *t)
{
    struct fg_conn *c = t->c;
    t->pool = t->snap->pools[t->route->upstream->index];
    if (!fg_proxy_build_head(t, false)) {
        fg_conn_respond(c, 500, "out of memory", true);
        return;
    }
    evbuffer_drain(bufferevent_get_input(c->bev), t->req.head_len);
    t->req.n_headers = 0;

    if (!attach_upstream(t, false, -1)) {
        fg_trigger_observe(t, false, 0);
        fg_conn_respond(c, 502, "no connection to the upstream could be made", true);
        return;
    }
    t->upstream_start_us = fg_mono_us();
    evbuffer_add(bufferevent_get_output(t->uc->bev), t->head, t->head_len);

    if (t->req_state == FG_REQ_BODY) {
        if ((t->req.flags & FG_HTTP_F_EXPECT_CONTINUE) && t->req.minor_version == 1) {
            evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
            fg_flush(c->bev);
        }
        t->req_body_left = t->req.content_length;
        fg_http_chunked_init(&t->req_chunked);
        fg_conn_body_started(c);
        req_body_pump(t); /* flushes */
    } else {
        client_request_done(t);
        up_flush(t);
    }
}

void fg_proxy_adopt(struct fg_txn *t, struct fg_upstream_pool *pool, struct fg_upstream_conn *uc)
{
    struct fg_conn *c = t->c;
    evbuffer_drain(bufferevent_get_input(c->bev), t->req.head_len);
    t->req.n_headers = 0;
    t->pool = pool;
    t->uc = uc;
    t->attempts = 1;
    t->retried = true; /* the request was answered: nothing to retry */
    snprintf(t->log_upstream, sizeof(t->log_upstream), "%s",
             fg_upstream_server_name(pool, uc->server));
    fg_reader_bev_setcb(&uc->reader, up_write_cb, up_event_cb, t);
    bufferevent_setwatermark(uc->bev, EV_WRITE, FG_LOW_WATER, 0);
    fg_reader_setcb(&uc->reader, up_read_cb, up_read_event_cb, t);
    fg_reader_enable(&uc->reader);
    t->upstream_start_us = fg_mono_us();
    client_request_done(t);
    up_read_cb(t);
}

/* ---- finishing ------------------------------------------------------------------------- */

static void response_complete(struct fg_txn *t)
{
    t->resp_state = FG_RESP_DONE; /* fg_conn_txn_done flushes the client's output */
    t->upstream_us = fg_mono_us() - t->upstream_start_us;
    fg_trigger_observe(t, t->status < 500, t->upstream_us);
    if (t->uc != NULL) {
        fg_upstream_report(t->pool, t->uc->server, true, FG_UPSTREAM_FAIL_CONNECT);
        bool reusable = t->upstream_reusable && t->req_state == FG_REQ_DONE;
        fg_upstream_release(t->uc, reusable);
        t->uc = NULL;
    }
    if (t->req_state != FG_REQ_DONE)
        t->client_close = true; /* the app answered before the body ended */
    fg_conn_txn_done(t->c);
}

void fg_proxy_abort(struct fg_txn *t)
{
    if (t->uc != NULL) {
        fg_upstream_release(t->uc, false);
        t->uc = NULL;
    }
}

static bool request_retryable(const struct fg_txn *t)
{
    return fg_http_method_idempotent(t->req.method) &&
           (t->req.body == FG_HTTP_BODY_NONE ||
            (t->req.body == FG_HTTP_BODY_LENGTH && t->req.content_length == 0));
}

/*
 * The app failed us. Before any response byte reached the client we may try again:
 * - the connect failed: nothing was sent, so any request may go to another server (what
 *   was written so far moves to the new connection);
 * - a reused keep-alive connection died before any response byte: the app probably closed
 *   it as we reused it; an idempotent request without a body is sent once more on a fresh
 *   connection.
 * Otherwise the client gets 502/504, or, mid-response, a closed connection.
 */
static void upstream_failed(struct fg_txn *t, enum fg_upstream_failure why, int status,
                            const char *detail)
{
    struct fg_conn *c = t->c;
    struct fg_upstream_conn *uc = t->uc;
    const struct fg_conf_upstream *u = fg_upstream_pool_conf(t->pool);
    bool nothing_back =
        t->resp_state == FG_RESP_WAIT && evbuffer_get_length(bufferevent_get_input(uc->bev)) == 0;
    bool reused = uc->reused;
    fg_upstream_report(t->pool, uc->server, false, why);
    fg_trigger_observe(t, false, 0);
    fg_warn("upstream %s: %s %s (client %s, %s %s)", u->name,
            fg_upstream_server_name(t->pool, uc->server), detail, c->peer_ip,
            t->log_method[0] ? t->log_method : "-", t->log_path[0] ? t->log_path : "-");

    if (!t->resp_head_sent && !uc->connected && why != FG_UPSTREAM_FAIL_BAD_RESPONSE &&
        t->attempts < fg_upstream_server_count(t->pool)) {
        int failed_server = (int)uc->server;
        struct evbuffer *pending = evbuffer_new();
        if (pending != NULL) {
            evbuffer_add_buffer(pending, bufferevent_get_output(uc->bev));
            fg_upstream_release(uc, false);
            t->uc = NULL;
            if (attach_upstream(t, false, failed_server)) {
                fg_counter_add(&fg_upstream_pool_stats(t->pool)->retries, 1);
                evbuffer_add_buffer(bufferevent_get_output(t->uc->bev), pending);
                evbuffer_free(pending);
                up_flush(t);
                return;
            }
            evbuffer_free(pending);
            fg_conn_respond(c, status, detail, true);
            return;
        }
    }
    if (!t->resp_head_sent && nothing_back && reused && !t->retried && u->retry_idempotent &&
        request_retryable(t)) {
        t->retried = true;
        fg_upstream_release(uc, false);
        t->uc = NULL;
        if (attach_upstream(t, true, -1)) {
            fg_counter_add(&fg_upstream_pool_stats(t->pool)->retries, 1);
            evbuffer_add(bufferevent_get_output(t->uc->bev), t->head, t->head_len);
            up_flush(t);
            return;
        }
        fg_conn_respond(c, status, detail, true);
        return;
    }
    fg_upstream_release(uc, false);
    t->uc = NULL;
    if (!t->resp_head_sent) {
        char msg[256];
        snprintf(msg, sizeof(msg), "upstream %s %s", u->name, detail);
        fg_conn_respond(c, status, msg, t->req_state != FG_REQ_DONE);
    } else {
        /* Mid-response: the only honest signal left is to cut the connection, so the
         * client cannot take a truncated body for a complete one. */
        t->status = t->status ? t->status : 502;
        fg_conn_close(c);
    }
}

/* ---- chunked relaying -------------------------------------------------------------------- */

/* Move n payload bytes from in to out as one chunk of our own framing. */
static void move_as_chunk(struct evbuffer *in, struct evbuffer *out, size_t n)
{
    char line[24];
    evbuffer_add(out, line, fg_http_chunk_header(line, n));
    evbuffer_remove_buffer(in, out, n);
    evbuffer_add(out, "\r\n", 2);
}

/* Run the chunk framing parser over the first contiguous piece of in, drain what it took.
 * *used is the framing bytes consumed. */
static enum fg_http_chunk_status chunk_framing(struct fg_http_chunked *ch, struct evbuffer *in,
                                               size_t *used, enum fg_http_error *err)
{
    struct evbuffer_iovec v;
    *used = 0;
    if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
        return FG_CHUNK_MORE;
    enum fg_http_chunk_status st = fg_http_chunked_parse(ch, v.iov_base, v.iov_len, used, err);
    evbuffer_drain(in, *used);
    return st;
}

/* ---- request body: client → app -------------------------------------------------------- */

static void req_body_pump(struct fg_txn *t)
{
    struct fg_conn *c = t->c;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(t->uc->bev);
    if (t->req.body == FG_HTTP_BODY_LENGTH) {
        size_t avail = evbuffer_get_length(in);
        size_t n = avail < t->req_body_left ? avail : (size_t)t->req_body_left;
        if (n > 0) {
            evbuffer_remove_buffer(in, out, n);
            t->req_body_left -= n;
            t->req_body_bytes += n;
            t->bytes_in += n;
        }
        if (t->req_body_left == 0) {
            client_request_done(t);
            up_flush(t);
            return;
        }
    } else {
        for (;;) {
            if (t->req_chunked.data_left > 0) {
                size_t avail = evbuffer_get_length(in);
                if (avail == 0)
                    break;
                size_t n =
                    avail < t->req_chunked.data_left ? avail : (size_t)t->req_chunked.data_left;
                if (t->req_body_bytes + n > t->route->max_body) {
                    fg_counter_add(&c->w->stats.rejected_other, 1);
                    if (t->resp_head_sent) {
                        fg_conn_close(c);
                    } else {
                        fg_proxy_abort(t);
                        fg_conn_respond(c, 413, "request body larger than client_max_body_size",
                                        true);
                    }
                    return;
                }
                move_as_chunk(in, out, n);
                fg_http_chunked_data(&t->req_chunked, n);
                t->req_body_bytes += n;
                t->bytes_in += n;
                continue;
            }
            size_t used = 0;
            enum fg_http_error err = FG_HTTP_E_NONE;
            enum fg_http_chunk_status st = chunk_framing(&t->req_chunked, in, &used, &err);
            t->bytes_in += used;
            if (st == FG_CHUNK_MORE && (used == 0 || evbuffer_get_length(in) == 0))
                break; /* else framing goes on in the buffer's next segment */
            if (st == FG_CHUNK_MORE)
                continue;
            if (st == FG_CHUNK_ERROR) {
                fg_counter_add(&c->w->stats.rejected[err], 1);
                if (t->resp_head_sent) {
                    fg_conn_close(c);
                } else {
                    fg_proxy_abort(t);
                    fg_conn_respond(c, fg_http_error_status(err), fg_http_error_name(err), true);
                }
                return;
            }
            if (st == FG_CHUNK_DONE) {
                evbuffer_add(out, "0\r\n\r\n", 5);
                client_request_done(t);
                up_flush(t);
                return;
            }
        }
    }
    up_flush(t);
    if (evbuffer_get_length(out) > FG_HIGH_WATER)
        fg_reader_disable(&c->reader); /* resumed by up_write_cb */
}

void fg_proxy_client_readable(struct fg_txn *t)
{
    if (t->uc == NULL)
        return; /* between a failure and its answer */
    req_body_pump(t);
}

/* ---- response: app → client ------------------------------------------------------------ */

static size_t scratch_reserve(struct fg_worker *w, size_t need)
{
    if (w->scratch_cap < need) {
        size_t cap = w->scratch_cap ? w->scratch_cap : 8192;
        while (cap < need)
            cap *= 2;
        char *p = realloc(w->scratch, cap);
        if (p == NULL)
            return 0;
        w->scratch = p;
        w->scratch_cap = cap;
    }
    return w->scratch_cap;
}

/* Returns false if the head could not be built (out of memory). */
static bool send_response_head(struct fg_txn *t, const struct fg_http_response *resp)
{
    struct fg_conn *c = t->c;
    struct fg_worker *w = c->w;
    bool client11 = t->req.minor_version == 1;

    t->resp_body = resp->body;
    t->resp_chunked_out = false;
    /* Compression: planned on the answer's head; the encoded body has no known length. */
    struct fg_zplan plan;
    bool z = t->zroute && fg_z_plan(t->route, t->zenc, t->req.method, resp, &plan);
    if (z && !fg_z_start(&t->zs, t->route, &plan,
                         resp->body == FG_HTTP_BODY_LENGTH ? resp->content_length
                                                           : FG_COMPRESS_LENGTH_UNKNOWN))
        z = plan.compress = false; /* no encoder (out of memory): send it as it is */
    bool zedit = t->zroute && (z || plan.vary_edit);
    switch (resp->body) {
    case FG_HTTP_BODY_NONE:
        break;
    case FG_HTTP_BODY_LENGTH:
        t->resp_body_left = resp->content_length;
        if (!z)
            break;
        /* An encoded body is reframed like a chunked one. */
        __attribute__((fallthrough));
    case FG_HTTP_BODY_CHUNKED:
    case FG_HTTP_BODY_CLOSE:
        if (client11)
            t->resp_chunked_out = true;
        else
            t->client_close = true; /* an HTTP/1.0 client reads to the close */
        fg_http_chunked_init(&t->resp_chunked);
        break;
    }
    t->upstream_reusable = resp->body != FG_HTTP_BODY_CLOSE &&
                           !(resp->flags & FG_HTTP_F_CONN_CLOSE) &&
                           (resp->minor_version == 1 || (resp->flags & FG_HTTP_F_CONN_KEEPALIVE));
    if (t->req_state != FG_REQ_DONE)
        t->client_close = true;
    bool close = !fg_conn_keepalive_ok(c, t);
    t->client_close = close;

    size_t need = resp->head_len + 256 + sizeof(t->request_id) + t->rl_fields_len +
                  (zedit ? sizeof(plan.vary) + sizeof(plan.etag) + 64 : 0);
    if (scratch_reserve(w, need) == 0)
        return false;
    char *p = w->scratch;
    memcpy(p, "HTTP/1.1 ", 9);
    p[9] = (char)('0' + resp->status / 100);
    p[10] = (char)('0' + resp->status / 10 % 10);
    p[11] = (char)('0' + resp->status % 10);
    p[12] = ' ';
    p += 13;
    if (resp->reason_len > 0) {
        memcpy(p, resp->reason, resp->reason_len);
        p += resp->reason_len;
    } else {
        p += sprintf(p, "%s", fg_http_reason(resp->status));
    }
    *p++ = '\r';
    *p++ = '\n';
    bool have_request_id = false;
    bool reframed = resp->body == FG_HTTP_BODY_CHUNKED || resp->body == FG_HTTP_BODY_CLOSE;
    for (size_t i = 0; i < resp->n_headers; i++) {
        const struct fg_http_header *h = &resp->headers[i];
        if (fg_http_is_hop_by_hop(h->name, h->name_len))
            continue;
        if (zedit && fg_z_field_replaced(&plan, h))
            continue;
        if (reframed && fg_http_name_eq(h->name, h->name_len, "content-length"))
            continue;
        if ((resp->flags & FG_HTTP_F_CONN_OTHER) &&
            fg_http_connection_lists(resp->headers, resp->n_headers, h->name, h->name_len))
            continue;
        if (!have_request_id && fg_http_name_eq(h->name, h->name_len, "x-request-id"))
            have_request_id = true;
        memcpy(p, h->name, h->name_len);
        p += h->name_len;
        *p++ = ':';
        *p++ = ' ';
        memcpy(p, h->value, h->value_len);
        p += h->value_len;
        *p++ = '\r';
        *p++ = '\n';
    }
#define PUT_LIT(lit) (memcpy(p, lit, sizeof(lit) - 1), p += sizeof(lit) - 1)
    if (!have_request_id && t->request_id[0]) {
        size_t n = strlen(t->request_id);
        PUT_LIT("X-Request-Id: ");
        memcpy(p, t->request_id, n);
        p += n;
        PUT_LIT("\r\n");
    }
    if (t->rl_fields_len > 0) {
        memcpy(p, t->rl_fields, t->rl_fields_len);
        p += t->rl_fields_len;
    }
    if (zedit)
        p += fg_z_extra_fields(&plan, p, sizeof(plan.vary) + sizeof(plan.etag) + 64);
    if (t->xcache != NULL) {
        size_t n = strlen(t->xcache);
        PUT_LIT("X-Cache: ");
        memcpy(p, t->xcache, n);
        p += n;
        PUT_LIT("\r\n");
    }
    if (t->resp_chunked_out)
        PUT_LIT("Transfer-Encoding: chunked\r\n");
    if (close)
        PUT_LIT("Connection: close\r\n");
    else if (!client11)
        PUT_LIT("Connection: keep-alive\r\n");
#undef PUT_LIT
    *p++ = '\r';
    *p++ = '\n';
    size_t len = (size_t)(p - w->scratch);
    evbuffer_add(bufferevent_get_output(c->bev), w->scratch, len);
    t->bytes_out += len;
    t->resp_head_sent = true;
    return true;
}

static void up_read_cb(void *arg)
{
    struct fg_txn *t = arg;
    FG_ASSERT(t->magic == FG_TXN_MAGIC);
    struct bufferevent *bev = t->uc->bev;
    if (t->resp_state == FG_RESP_BODY) {
        resp_body_pump(t);
        return;
    }
    if (t->resp_state != FG_RESP_WAIT)
        return;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return;
        size_t n = len < FG_RESP_HEAD_MAX ? len : FG_RESP_HEAD_MAX;
        const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
        struct fg_http_limits lim = {.max_request_line = 8192,
                                     .max_header_bytes = FG_RESP_HEAD_MAX,
                                     .max_headers = FG_HTTP_MAX_HEADERS};
        struct fg_http_response resp;
        enum fg_http_error err = FG_HTTP_E_NONE;
        int rc = fg_http_parse_response(buf, n, &lim, t->req.method, &resp, &err);
        if (rc == FG_HTTP_INCOMPLETE)
            return;
        if (rc == FG_HTTP_ERROR) {
            char detail[96];
            snprintf(detail, sizeof(detail), "sent an invalid response (%s)",
                     fg_http_error_name(err));
            upstream_failed(t, FG_UPSTREAM_FAIL_BAD_RESPONSE, 502, detail);
            return;
        }
        if (resp.status < 200) {
            /* Interim responses: 100 Continue is ours to send (we did, if asked); 101
             * would switch protocols, which we never asked for on the app's side. */
            if (resp.status == 101) {
                upstream_failed(t, FG_UPSTREAM_FAIL_BAD_RESPONSE, 502,
                                "switched protocols without being asked");
                return;
            }
            evbuffer_drain(in, (size_t)rc);
            continue;
        }
        t->status = resp.status;
        fg_cache_response_invalidates(t, &resp);
        if (!send_response_head(t, &resp)) {
            upstream_failed(t, FG_UPSTREAM_FAIL_BAD_RESPONSE, 502, "response head too large");
            return;
        }
        evbuffer_drain(in, (size_t)rc);
        t->resp_state = FG_RESP_BODY;
        if (resp.body == FG_HTTP_BODY_NONE ||
            (resp.body == FG_HTTP_BODY_LENGTH && resp.content_length == 0)) {
            response_complete(t);
            return;
        }
        resp_body_pump(t);
        return;
    }
}

/* The encoder's output so far, framed for the client. */
static void zs_drain(struct fg_txn *t, struct evbuffer *out)
{
    size_t k = evbuffer_get_length(t->zs.out);
    if (k == 0)
        return;
    if (t->resp_chunked_out)
        move_as_chunk(t->zs.out, out, k);
    else
        evbuffer_remove_buffer(t->zs.out, out, k);
}

/* Pass n body bytes from in to the client: as they are, or through the encoder. False
 * when the encoder failed (the response cannot be finished: the caller cuts it). */
static bool body_out(struct fg_txn *t, struct evbuffer *in, struct evbuffer *out, size_t n)
{
    if (t->zs.z == NULL) {
        if (t->resp_chunked_out)
            move_as_chunk(in, out, n);
        else
            evbuffer_remove_buffer(in, out, n);
        return true;
    }
    evbuffer_remove_buffer(in, t->zs.tmp, n);
    if (!fg_z_write(&t->zs, t->zs.tmp, t->zs.out))
        return false;
    zs_drain(t, out);
    return true;
}

/* The body ended: the encoder's last bytes, then the last chunk. */
static bool body_end(struct fg_txn *t, struct evbuffer *out)
{
    if (t->zs.z != NULL) {
        bool ok = fg_z_finish(&t->zs, t->zs.out);
        zs_drain(t, out);
        fg_z_free(&t->zs);
        if (!ok)
            return false;
    }
    if (t->resp_chunked_out)
        evbuffer_add(out, "0\r\n\r\n", 5);
    return true;
}

static void encoder_failed(struct fg_txn *t)
{
    fg_warn("compression of a response to %s failed; connection cut", t->c->peer_ip);
    t->status = t->status ? t->status : 500;
    fg_conn_close(t->c);
}

static void resp_body_pump(struct fg_txn *t)
{
    struct fg_conn *c = t->c;
    struct evbuffer *in = bufferevent_get_input(t->uc->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t before = evbuffer_get_length(out);
    switch (t->resp_body) {
    case FG_HTTP_BODY_LENGTH: {
        size_t avail = evbuffer_get_length(in);
        size_t n = avail < t->resp_body_left ? avail : (size_t)t->resp_body_left;
        if (n > 0) {
            if (t->zs.z != NULL) {
                if (!body_out(t, in, out, n)) {
                    encoder_failed(t);
                    return;
                }
            } else {
                evbuffer_remove_buffer(in, out, n);
            }
            t->resp_body_left -= n;
        }
        if (t->resp_body_left == 0) {
            if (t->zs.z != NULL && !body_end(t, out)) {
                encoder_failed(t);
                return;
            }
            t->bytes_out += evbuffer_get_length(out) - before;
            response_complete(t);
            return;
        }
        break;
    }
    case FG_HTTP_BODY_CHUNKED:
        for (;;) {
            if (t->resp_chunked.data_left > 0) {
                size_t avail = evbuffer_get_length(in);
                if (avail == 0)
                    break;
                size_t n =
                    avail < t->resp_chunked.data_left ? avail : (size_t)t->resp_chunked.data_left;
                if (!body_out(t, in, out, n)) {
                    encoder_failed(t);
                    return;
                }
                fg_http_chunked_data(&t->resp_chunked, n);
                continue;
            }
            size_t used = 0;
            enum fg_http_error err = FG_HTTP_E_NONE;
            enum fg_http_chunk_status st = chunk_framing(&t->resp_chunked, in, &used, &err);
            if (st == FG_CHUNK_MORE && (used == 0 || evbuffer_get_length(in) == 0))
                break; /* else framing goes on in the buffer's next segment */
            if (st == FG_CHUNK_MORE)
                continue;
            if (st == FG_CHUNK_ERROR) {
                t->bytes_out += evbuffer_get_length(out) - before;
                upstream_failed(t, FG_UPSTREAM_FAIL_BAD_RESPONSE, 502,
                                "sent a malformed chunked body");
                return;
            }
            if (st == FG_CHUNK_DONE) {
                if (!body_end(t, out)) {
                    encoder_failed(t);
                    return;
                }
                t->bytes_out += evbuffer_get_length(out) - before;
                response_complete(t);
                return;
            }
        }
        break;
    case FG_HTTP_BODY_CLOSE: {
        size_t n = evbuffer_get_length(in);
        if (n > 0 && !body_out(t, in, out, n)) {
            encoder_failed(t);
            return;
        }
        break;
    }
    case FG_HTTP_BODY_NONE:
        break;
    }
    t->bytes_out += evbuffer_get_length(out) - before;
    if (fg_flush(c->bev) > FG_HIGH_WATER)
        fg_reader_disable(&t->uc->reader); /* resumed by fg_proxy_client_drained */
}

void fg_proxy_client_drained(struct fg_txn *t)
{
    if (t->uc == NULL || t->resp_state != FG_RESP_BODY)
        return;
    if (!t->uc->reader.enabled) {
        fg_reader_enable(&t->uc->reader);
        resp_body_pump(t);
    }
}

static void up_write_cb(struct bufferevent *bev, void *arg)
{
    struct fg_txn *t = arg;
    FG_ASSERT(t->magic == FG_TXN_MAGIC);
    if (t->uc->connected && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE); /* back to writing through (fg_flush) */
    if (t->req_state == FG_REQ_BODY && !t->c->reader.enabled)
        fg_conn_resume_read(t->c);
}

static void up_read_event_cb(short what, void *arg)
{
    struct fg_txn *t = arg;
    up_event_cb(t->uc->bev, what, t);
}

static void up_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct fg_txn *t = arg;
    FG_ASSERT(t->magic == FG_TXN_MAGIC);
    struct fg_upstream_conn *uc = t->uc;
    if (what & BEV_EVENT_CONNECTED) {
        fg_upstream_connected(uc);
        set_upstream_timeouts(t);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        if (!uc->connected)
            upstream_failed(t, FG_UPSTREAM_FAIL_CONNECT, 504, "connect timed out");
        else if (what & BEV_EVENT_READING)
            upstream_failed(t, FG_UPSTREAM_FAIL_TIMEOUT, 504, "timed out waiting for the response");
        else
            upstream_failed(t, FG_UPSTREAM_FAIL_TIMEOUT, 504, "timed out accepting the request");
        return;
    }
    if ((what & BEV_EVENT_EOF) && t->resp_state == FG_RESP_BODY &&
        t->resp_body == FG_HTTP_BODY_CLOSE) {
        /* A close-delimited body ends here; take what is buffered, then finish. */
        resp_body_pump(t);
        if (t->uc == NULL)
            return;
        struct evbuffer *out = bufferevent_get_output(t->c->bev);
        size_t before = evbuffer_get_length(out);
        if (!body_end(t, out)) {
            encoder_failed(t);
            return;
        }
        t->bytes_out += evbuffer_get_length(out) - before;
        t->upstream_reusable = false;
        response_complete(t);
        return;
    }
    if (!uc->connected)
        upstream_failed(t, FG_UPSTREAM_FAIL_CONNECT, 502,
                        fg_reader_ssl(&uc->reader) != NULL
                            ? "could not be connected (TCP connect or TLS handshake failed)"
                            : "refused the connection");
    else if (t->resp_state == FG_RESP_WAIT)
        upstream_failed(t, FG_UPSTREAM_FAIL_RESET, 502, "closed the connection before responding");
    else
        upstream_failed(t, FG_UPSTREAM_FAIL_RESET, 502, "closed the connection mid-response");
}
