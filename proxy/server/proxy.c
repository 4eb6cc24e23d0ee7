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

/* The transaction ends while the app is still at it: drop the app's side. */
static void release(struct fg_txn *t)
{
    fg_proxy_abort(t);
}

/* The request's last byte reached the exchange (or there was no body). */
static void client_request_done(struct fg_txn *t)
{
    t->req_state = FG_REQ_DONE;
    fg_conn_body_finished(t->c);
    /* Pipelined requests wait in the input buffer until this response is complete; the
     * read high watermark (conn.c) bounds how much of them we take in meanwhile. */
    if (t->proxy.x != NULL)
        fg_upstream_exchange_send_end(t->proxy.x);
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
        fg_respond_text(t, 500, "out of memory", true);
        return;
    }
    evbuffer_drain(bufferevent_get_input(c->bev), t->req.head_len);
    t->req.n_headers = 0;

    bool body = t->req_state == FG_REQ_BODY;
    struct fg_upstream_request rq = {
        .head = t->proxy.head,
        .head_len = t->proxy.head_len,
        .method = t->req.method,
        .body = !body                                 ? FG_UPSTREAM_BODY_NONE
                : t->req.body == FG_HTTP_BODY_CHUNKED ? FG_UPSTREAM_BODY_CHUNKED
                                                      : FG_UPSTREAM_BODY_LENGTH,
        .retryable = request_retryable(t),
        .upgrade = t->proxy.upgrade,
    };
    t->proxy.upstream_start_us = fg_mono_us();
    t->proxy.head_unsent = 0;
    t->proxy.x = fg_upstream_exchange_start(pool, &rq, &proxy_ops, t);
    fg_txn_hold(t, &t->proxy.hold, release);
    if (t->proxy.x == NULL) {
        fg_stage_offload_observe(t, false, 0);
        fg_respond_text(t, 502, "no connection to the upstream could be made", true);
        return;
    }
    fg_strcopy(t->log_upstream, sizeof(t->log_upstream), fg_upstream_exchange_server(t->proxy.x));
    if (!body) {
        client_request_done(t);
        return;
    }
    if ((t->req.flags & FG_HTTP_F_EXPECT_CONTINUE) && t->req.minor_version == 1) {
        evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
        fg_flush(c->bev);
    }
    t->proxy.req_body_left = t->req.content_length;
    fg_http_chunked_init(&t->proxy.req_chunked);
    fg_conn_body_started(c);
    req_body_pump(t);
}

static void proxy_on_head(void *arg, struct fg_upstream_exchange *x,
                          const struct fg_http_response *resp);

/* The app's head is here: how long it took, and on what connection (an adopted fill's
 * exchange was timed by the fill already). */
static void time_app_head(struct fg_txn *t, struct fg_upstream_exchange *x)
{
    if (t->app.attempts != 0)
        return;
    t->app_head_us = fg_mono_us() - t->proxy.upstream_start_us;
    fg_upstream_exchange_timing(x, &t->app);
}

void fg_proxy_adopt(struct fg_txn *t, struct fg_upstream_exchange *x,
                    const struct fg_http_response *resp)
{
    struct fg_conn *c = t->c;
    evbuffer_drain(bufferevent_get_input(c->bev), t->req.head_len);
    t->req.n_headers = 0;
    t->proxy.x = x;
    fg_txn_hold(t, &t->proxy.hold, release);
    fg_upstream_exchange_set_owner(x, &proxy_ops, t);
    fg_strcopy(t->log_upstream, sizeof(t->log_upstream), fg_upstream_exchange_server(x));
    t->proxy.upstream_start_us = fg_mono_us();
    t->req_state = FG_REQ_DONE; /* the fill sent the request; the client's had no body */
    fg_conn_body_finished(c);
    proxy_on_head(t, x, resp);
}

void fg_proxy_abort(struct fg_txn *t)
{
    if (t->proxy.x != NULL) {
        fg_upstream_exchange_abort(t->proxy.x);
        t->proxy.x = NULL;
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
    fg_respond_text(t, status, detail, true);
}

static void req_body_pump(struct fg_txn *t)
{
    struct fg_conn *c = t->c;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct fg_upstream_exchange *x = t->proxy.x;
    size_t queued = 0;
    if (t->req.body == FG_HTTP_BODY_LENGTH) {
        size_t avail = evbuffer_get_length(in);
        size_t n = avail < t->proxy.req_body_left ? avail : (size_t)t->proxy.req_body_left;
        if (n > 0) {
            queued = fg_upstream_exchange_send(x, in, n);
            t->proxy.req_body_left -= n;
            t->req_body_bytes += n;
            t->bytes_in += n;
        }
        if (t->proxy.req_body_left == 0) {
            client_request_done(t);
            return;
        }
    } else {
        for (;;) {
            if (t->proxy.req_chunked.data_left > 0) {
                size_t avail = evbuffer_get_length(in);
                if (avail == 0)
                    break;
                size_t n = avail < t->proxy.req_chunked.data_left
                               ? avail
                               : (size_t)t->proxy.req_chunked.data_left;
                if (t->req_body_bytes + n > t->route->max_body) {
                    fg_counter_add(&c->w->stats.rejected_other, 1);
                    refuse_body(t, 413, "request body larger than client_max_body_size");
                    return;
                }
                queued = fg_upstream_exchange_send(x, in, n);
                fg_http_chunked_data(&t->proxy.req_chunked, n);
                t->req_body_bytes += n;
                t->bytes_in += n;
                continue;
            }
            size_t used = 0;
            enum fg_http_error err = FG_HTTP_E_NONE;
            enum fg_http_chunk_status st = chunk_framing(&t->proxy.req_chunked, in, &used, &err);
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
    if (t->proxy.x == NULL)
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

/* The answer's head to the client: the app's fields, edited for compression, framed for
 * this client (an HTTP/1.0 client reads a body of unknown length to the close). */
static bool send_response_head(struct fg_txn *t, const struct fg_http_response *resp)
{
    bool client11 = t->req.minor_version == 1;
    struct fg_compress_plan plan;
    bool z =
        t->z.route && fg_stage_compress_plan(t->route, t->z.encoding, t->req.method, resp, &plan);
    if (z && !fg_stage_compress_start_txn(t, &plan,
                                          resp->body == FG_HTTP_BODY_LENGTH
                                              ? resp->content_length
                                              : FG_COMPRESS_LENGTH_UNKNOWN))
        z = plan.compress = false; /* no encoder (out of memory): send it as it is */
    bool zedit = t->z.route && (z || plan.vary_edit);
    struct fg_respond r = {.status = resp->status,
                           .reason = resp->reason,
                           .reason_len = resp->reason_len,
                           .app = resp,
                           .plan = zedit ? &plan : NULL,
                           .tags = t->route->cache.cache,
                           .body = FG_RESPOND_AS_APP};
    t->proxy.chunked_out = false;
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
        t->proxy.chunked_out = client11;
        r.body = client11 ? FG_RESPOND_CHUNKED : FG_RESPOND_TO_CLOSE;
        break;
    }
    char cache_fields[FG_STAGE_CACHE_FIELDS_MAX];
    r.fields = cache_fields;
    r.fields_len = fg_stage_cache_fields(t, cache_fields);
    return fg_respond_head(t, &r);
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
    size_t k = evbuffer_get_length(t->z.stream.out);
    if (k == 0)
        return;
    if (t->proxy.chunked_out)
        move_as_chunk(t->z.stream.out, out, k);
    else
        evbuffer_remove_buffer(t->z.stream.out, out, k);
}

/* Pass n body bytes from in to the client: as they are, or through the encoder. False
 * when the encoder failed (the response cannot be finished: the caller cuts it). */
static bool body_out(struct fg_txn *t, struct evbuffer *in, struct evbuffer *out, size_t n)
{
    if (t->z.stream.z == NULL) {
        if (t->proxy.chunked_out)
            move_as_chunk(in, out, n);
        else
            evbuffer_remove_buffer(in, out, n);
        return true;
    }
    evbuffer_remove_buffer(in, t->z.stream.tmp, n);
    if (!fg_compress_stream_write(&t->z.stream, t->z.stream.tmp, t->z.stream.out))
        return false;
    zs_drain(t, out);
    return true;
}

/* The body ended: the encoder's last bytes, then the last chunk. */
static bool body_end(struct fg_txn *t, struct evbuffer *out)
{
    if (t->z.stream.z != NULL) {
        bool ok = fg_compress_stream_finish(&t->z.stream, t->z.stream.out);
        zs_drain(t, out);
        fg_compress_stream_free(&t->z.stream);
        if (!ok)
            return false;
    }
    if (t->proxy.chunked_out)
        evbuffer_add(out, "0\r\n\r\n", 5);
    return true;
}

static void encoder_failed(struct fg_txn *t)
{
    fg_warn("compression of a response to %s failed; connection cut", t->c->peer_ip);
    t->status = t->status ? t->status : 500;
    fg_conn_close(t->c); /* aborts the exchange */
}

/* The app switched protocols (only ever for an upgrade request we forwarded): the 101
 * with the protocol it chose; the connection comes next (proxy_on_upgrade). */
static bool send_switching_head(struct fg_txn *t, const struct fg_http_response *resp)
{
    const struct fg_http_header *up =
        fg_http_find_header(resp->headers, resp->n_headers, "upgrade");
    struct fg_respond r = {.status = 101,
                           .reason = resp->reason,
                           .reason_len = resp->reason_len,
                           .app = resp,
                           .body = FG_RESPOND_NO_BODY,
                           .upgrade = up ? up->value : "",
                           .upgrade_len = up ? up->value_len : 0};
    return fg_respond_head(t, &r);
}

static void proxy_on_head(void *arg, struct fg_upstream_exchange *x,
                          const struct fg_http_response *resp)
{
    struct fg_txn *t = arg;
    FG_ASSERT(t->magic == FG_TXN_MAGIC);
    time_app_head(t, x);
    t->status = resp->status;
    if (resp->status == 101) {
        if (!send_switching_head(t, resp))
            fg_upstream_exchange_fail(x, FG_UPSTREAM_FAIL_BAD_RESPONSE, 502,
                                      "response head too large");
        return;
    }
    fg_stage_cache_invalidate(t, resp);
    struct evbuffer *out = bufferevent_get_output(t->c->bev);
    bool out_empty = evbuffer_get_length(out) == 0;
    if (!send_response_head(t, resp)) {
        fg_upstream_exchange_fail(x, FG_UPSTREAM_FAIL_BAD_RESPONSE, 502, "response head too large");
        return;
    }
    t->proxy.head_unsent = out_empty ? evbuffer_get_length(out) : 0;
    t->resp_state = FG_RESP_BODY;
}

static void proxy_on_body(void *arg, struct fg_upstream_exchange *x, struct evbuffer *in, size_t n)
{
    struct fg_txn *t = arg;
    FG_ASSERT(t->magic == FG_TXN_MAGIC);
    struct fg_conn *c = t->c;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t before = evbuffer_get_length(out);
    t->proxy.head_unsent = 0; /* the head goes with the body's first bytes */
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
    t->proxy.x = NULL;
    struct evbuffer *out = bufferevent_get_output(t->c->bev);
    size_t before = evbuffer_get_length(out);
    if (!body_end(t, out)) {
        encoder_failed(t);
        return;
    }
    t->bytes_out += evbuffer_get_length(out) - before;
    t->resp_state = FG_RESP_DONE; /* fg_conn_txn_done flushes the client's output */
    t->upstream_us = fg_mono_us() - t->proxy.upstream_start_us;
    fg_stage_offload_observe(t, t->status < 500, t->upstream_us);
    if (t->req_state != FG_REQ_DONE)
        t->client_close = true; /* the app answered before the body ended */
    fg_conn_txn_done(t->c);
}

/* The app's head is still whole in the client's output, alone, and none of it was written
 * (the body's first bytes did not come, or were malformed): take it back, so the client
 * can get a 502 rather than a cut connection. */
static bool take_back_head(struct fg_txn *t)
{
    struct evbuffer *out = bufferevent_get_output(t->c->bev);
    if (!t->resp_head_sent || t->proxy.head_unsent == 0 ||
        evbuffer_get_length(out) != t->proxy.head_unsent)
        return false;
    /* A socket bufferevent freezes its output's front (only its writes take from there):
     * lifted for this drain only. An OpenSSL one does not (the drain of nothing tells),
     * and has nothing of the head yet: it was queued on an empty output with EV_WRITE
     * off, so no SSL_write took it or waits to be retried with it. */
    bool frozen = evbuffer_drain(out, 0) != 0;
    if (frozen)
        evbuffer_unfreeze(out, 1);
    int rc = evbuffer_drain(out, t->proxy.head_unsent);
    if (frozen)
        evbuffer_freeze(out, 1);
    if (rc != 0 || evbuffer_get_length(out) != 0)
        return false;
    t->bytes_out -= t->proxy.head_unsent;
    t->proxy.head_unsent = 0;
    t->proxy.chunked_out = false;
    fg_compress_stream_free(&t->z.stream);
    t->resp_head_sent = false;
    t->resp_state = FG_RESP_WAIT;
    return true;
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
    t->proxy.x = NULL;
    const char *name = t->route->upstream->name;
    fg_strcopy(t->log_upstream, sizeof(t->log_upstream), e->server);
    if (t->app.attempts == 0)
        fg_upstream_exchange_timing(x, &t->app); /* the connections it tried */
    fg_stage_offload_observe(t, false, 0);
    fg_warn("upstream %s: %s %s (client %s, %s %s)", name, e->server, e->detail, c->peer_ip,
            t->log_method[0] ? t->log_method : "-", t->log_path[0] ? t->log_path : "-");
    if (!t->resp_head_sent || take_back_head(t)) {
        char msg[256];
        snprintf(msg, sizeof(msg), "upstream %s %s", name, e->detail);
        fg_respond_text(t, e->status, msg, t->req_state != FG_REQ_DONE);
    } else {
        t->status = t->status ? t->status : 502;
        fg_conn_close(c);
    }
}

/* 103 Early Hints and the like: to an HTTP/1.1 client before the final answer (an
 * HTTP/1.0 client does not expect them, RFC 9110 §15.2). Never stored: a cache fill has
 * no client to give them to. */
static void proxy_on_interim(void *arg, struct fg_upstream_exchange *x,
                             const struct fg_http_response *resp)
{
    struct fg_txn *t = arg;
    FG_ASSERT(t->magic == FG_TXN_MAGIC);
    (void)x;
    if (t->req.minor_version == 1 && !t->resp_head_sent)
        fg_respond_interim(t, resp);
}

/* After the 101: the exchange is gone, the connection to the app is the tunnel's. */
static void proxy_on_upgrade(void *arg, struct fg_upstream_exchange *x, struct fg_upstream_conn *uc)
{
    struct fg_txn *t = arg;
    FG_ASSERT(t->magic == FG_TXN_MAGIC);
    (void)x;
    t->proxy.x = NULL;
    t->upstream_us = fg_mono_us() - t->proxy.upstream_start_us;
    fg_tunnel_start(t, uc);
}

void fg_proxy_client_drained(struct fg_txn *t)
{
    if (t->proxy.x != NULL && t->resp_state == FG_RESP_BODY)
        fg_upstream_exchange_resume(t->proxy.x);
}

static const struct fg_upstream_exchange_ops proxy_ops = {
    .on_head = proxy_on_head,
    .on_body = proxy_on_body,
    .on_end = proxy_on_end,
    .on_error = proxy_on_error,
    .on_writable = proxy_on_writable,
    .on_interim = proxy_on_interim,
    .on_upgrade = proxy_on_upgrade,
};
