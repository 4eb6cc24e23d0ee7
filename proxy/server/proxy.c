/*
 * proxy.c — forwarding one transaction to the app and its answer back, through one
 * upstream exchange (upstream/exchange.c, which owns the connection, the retries and the
 * de-framing of the answer).
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

static const struct fg_upstream_exchange_ops proxy_ops;
static void req_body_pump(struct fg_txn *t);

/* The request's last byte reached the exchange (or there was no body). */
static void client_request_done(struct fg_txn *t)
{
    t->req_state = FG_REQ_DONE;
    fg_conn_body_finished(t->c);
    /* Pipelined requests wait in the input buffer until this response is complete; the
     * read high watermark (conn.c) bounds how much of them we take in meanwhile. */
    if (t->x != NULL)
        fg_upstream_exchange_send_end(t->x);
}

static bool request_retryable(const struct fg_txn *t)
{
    return fg_http_method_idempotent(t->req.method) &&
           (t->req.body == FG_HTTP_BODY_NONE ||
            (t->req.body == FG_HTTP_BODY_LENGTH && t->req.content_length == 0));
}

void fg_proxy_start(struct fg_txn *t)
{
    struct fg_conn *c = t->c;
    struct fg_upstream_pool *pool = t->snap->pools[t->route->upstream->index];
    if (!fg_forward_head(t, false)) {
        fg_conn_respond(c, 500, "out of memory", true);
        return;
    }
    evbuffer_drain(bufferevent_get_input(c->bev), t->req.head_len);
    t->req.n_headers = 0;

    bool body = t->req_state == FG_REQ_BODY;
    struct fg_upstream_request rq = {
        .head = t->head,
        .head_len = t->head_len,
        .method = t->req.method,
        .body = !body                                 ? FG_UPSTREAM_BODY_NONE
                : t->req.body == FG_HTTP_BODY_CHUNKED ? FG_UPSTREAM_BODY_CHUNKED
                                                      : FG_UPSTREAM_BODY_LENGTH,
        .retryable = request_retryable(t),
    };
    t->upstream_start_us = fg_mono_us();
    t->x = fg_upstream_exchange_start(pool, &rq, &proxy_ops, t);
    if (t->x == NULL) {
        fg_trigger_observe(t, false, 0);
        fg_conn_respond(c, 502, "no connection to the upstream could be made", true);
        return;
    }
    snprintf(t->log_upstream, sizeof(t->log_upstream), "%s", fg_upstream_exchange_server(t->x));
    if (!body) {
        client_request_done(t);
        return;
    }
    if ((t->req.flags & FG_HTTP_F_EXPECT_CONTINUE) && t->req.minor_version == 1) {
        evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
        fg_flush(c->bev);
    }
    t->req_body_left = t->req.content_length;
    fg_http_chunked_init(&t->req_chunked);
    fg_conn_body_started(c);
    req_body_pump(t);
}

static void proxy_on_head(void *arg, struct fg_upstream_exchange *x,
                          const struct fg_http_response *resp);

void fg_proxy_adopt(struct fg_txn *t, struct fg_upstream_exchange *x,
                    const struct fg_http_response *resp)
{
    struct fg_conn *c = t->c;
    evbuffer_drain(bufferevent_get_input(c->bev), t->req.head_len);
    t->req.n_headers = 0;
    t->x = x;
    fg_upstream_exchange_set_owner(x, &proxy_ops, t);
    snprintf(t->log_upstream, sizeof(t->log_upstream), "%s", fg_upstream_exchange_server(x));
    t->upstream_start_us = fg_mono_us();
    t->req_state = FG_REQ_DONE; /* the fill sent the request; the client's had no body */
    fg_conn_body_finished(c);
    proxy_on_head(t, x, resp);
}

void fg_proxy_abort(struct fg_txn *t)
{
    if (t->x != NULL) {
        fg_upstream_exchange_abort(t->x);
        t->x = NULL;
    }
}

/* ---- request body: client → app -------------------------------------------------------- */

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

/* The client's body cannot go on (too large, malformed): an answer if none started. */
static void refuse_body(struct fg_txn *t, int status, const char *detail)
{
    struct fg_conn *c = t->c;
    if (t->resp_head_sent) {
        fg_conn_close(c);
        return;
    }
    fg_proxy_abort(t);
    fg_conn_respond(c, status, detail, true);
}

static void req_body_pump(struct fg_txn *t)
{
    struct fg_conn *c = t->c;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct fg_upstream_exchange *x = t->x;
    size_t queued = 0;
    if (t->req.body == FG_HTTP_BODY_LENGTH) {
        size_t avail = evbuffer_get_length(in);
        size_t n = avail < t->req_body_left ? avail : (size_t)t->req_body_left;
        if (n > 0) {
            queued = fg_upstream_exchange_send(x, in, n);
            t->req_body_left -= n;
            t->req_body_bytes += n;
            t->bytes_in += n;
        }
        if (t->req_body_left == 0) {
            client_request_done(t);
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
                    refuse_body(t, 413, "request body larger than client_max_body_size");
                    return;
                }
                queued = fg_upstream_exchange_send(x, in, n);
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
                refuse_body(t, fg_http_error_status(err), fg_http_error_name(err));
                return;
            }
            if (st == FG_CHUNK_DONE) {
                client_request_done(t);
                return;
            }
        }
    }
    queued = fg_upstream_exchange_flush(x);
    if (queued > FG_HIGH_WATER)
        fg_reader_disable(&c->reader); /* resumed by proxy_on_writable */
}

void fg_proxy_client_readable(struct fg_txn *t)
{
    if (t->x == NULL)
        return; /* between a failure and its answer, or the app answered already */
    req_body_pump(t);
}

static void proxy_on_writable(void *arg, struct fg_upstream_exchange *x)
{
    struct fg_txn *t = arg;
    FG_ASSERT(t->magic == FG_TXN_MAGIC);
    if (t->req_state == FG_REQ_BODY && !t->c->reader.enabled)
        fg_conn_resume_read(t->c);
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
        break;
    }
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

/* Move n payload bytes from in to out as one chunk of our own framing. */
static void move_as_chunk(struct evbuffer *in, struct evbuffer *out, size_t n)
{
    char line[24];
    evbuffer_add(out, line, fg_http_chunk_header(line, n));
    evbuffer_remove_buffer(in, out, n);
    evbuffer_add(out, "\r\n", 2);
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
    fg_conn_close(t->c); /* aborts the exchange */
}

static void proxy_on_head(void *arg, struct fg_upstream_exchange *x,
                          const struct fg_http_response *resp)
{
    struct fg_txn *t = arg;
    FG_ASSERT(t->magic == FG_TXN_MAGIC);
    t->status = resp->status;
    fg_cache_response_invalidates(t, resp);
    if (!send_response_head(t, resp)) {
        fg_upstream_exchange_fail(x, FG_UPSTREAM_FAIL_BAD_RESPONSE, 502, "response head too large");
        return;
    }
    t->resp_state = FG_RESP_BODY;
}

static void proxy_on_body(void *arg, struct fg_upstream_exchange *x, struct evbuffer *in, size_t n)
{
    struct fg_txn *t = arg;
    FG_ASSERT(t->magic == FG_TXN_MAGIC);
    struct fg_conn *c = t->c;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t before = evbuffer_get_length(out);
    if (!body_out(t, in, out, n)) {
        encoder_failed(t);
        return;
    }
    t->bytes_out += evbuffer_get_length(out) - before;
    if (fg_flush(c->bev) > FG_HIGH_WATER)
        fg_upstream_exchange_pause(x); /* resumed by fg_proxy_client_drained */
}

static void proxy_on_end(void *arg, struct fg_upstream_exchange *x)
{
    struct fg_txn *t = arg;
    FG_ASSERT(t->magic == FG_TXN_MAGIC);
    t->x = NULL;
    struct evbuffer *out = bufferevent_get_output(t->c->bev);
    size_t before = evbuffer_get_length(out);
    if (!body_end(t, out)) {
        encoder_failed(t);
        return;
    }
    t->bytes_out += evbuffer_get_length(out) - before;
    t->resp_state = FG_RESP_DONE; /* fg_conn_txn_done flushes the client's output */
    t->upstream_us = fg_mono_us() - t->upstream_start_us;
    fg_trigger_observe(t, t->status < 500, t->upstream_us);
    if (t->req_state != FG_REQ_DONE)
        t->client_close = true; /* the app answered before the body ended */
    fg_conn_txn_done(t->c);
}

/* Before any response byte reached the client: 502/504 (the exchange retried what could
 * be retried). Mid-response, the only honest signal left is to cut the connection, so the
 * client cannot take a truncated body for a complete one. */
static void proxy_on_error(void *arg, struct fg_upstream_exchange *x,
                           const struct fg_upstream_error *e)
{
    struct fg_txn *t = arg;
    FG_ASSERT(t->magic == FG_TXN_MAGIC);
    struct fg_conn *c = t->c;
    t->x = NULL;
    const char *name = t->route->upstream->name;
    snprintf(t->log_upstream, sizeof(t->log_upstream), "%s", e->server);
    fg_trigger_observe(t, false, 0);
    fg_warn("upstream %s: %s %s (client %s, %s %s)", name, e->server, e->detail, c->peer_ip,
            t->log_method[0] ? t->log_method : "-", t->log_path[0] ? t->log_path : "-");
    if (!t->resp_head_sent) {
        char msg[256];
        snprintf(msg, sizeof(msg), "upstream %s %s", name, e->detail);
        fg_conn_respond(c, e->status, msg, t->req_state != FG_REQ_DONE);
    } else {
        t->status = t->status ? t->status : 502;
        fg_conn_close(c);
    }
}

void fg_proxy_client_drained(struct fg_txn *t)
{
    if (t->x != NULL && t->resp_state == FG_RESP_BODY)
        fg_upstream_exchange_resume(t->x);
}

static const struct fg_upstream_exchange_ops proxy_ops = {
    .on_head = proxy_on_head,
    .on_body = proxy_on_body,
    .on_end = proxy_on_end,
    .on_error = proxy_on_error,
    .on_writable = proxy_on_writable,
};
