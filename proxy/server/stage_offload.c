/*
 * stage_offload.c — the offload stage of the request path (request.c calls
 * fg_stage_offload after the rate limits, before the cache).
 *
 * A write on a route with an `offload` block (and whose trigger fires) waits for its
 * whole body in the connection's input buffer, under the server's body deadline. Then it
 * becomes a record for the agent (proxy/offload/: the worker's agent client sends it and
 * matches the answer). DURABLE or DUPLICATE: 202 with the idempotency key, the head and
 * body are consumed and the connection lives on. Anything else (FULL, TOO_BIG, ERROR, no
 * answer within `timeout`, the agent unreachable or gone with the record): the route's
 * fallback — `pass` sends the request to the app as if there were no offload (the head
 * and body are still in the input buffer), `reject` answers 503 with Retry-After. No write
 * is ever dropped: each one ends in a 202, the app, or an error answer the client sees.
 *
 * While a request waits, its head and body stay in the input buffer and the request
 * owns the connection: pipelined requests wait behind it, nothing is parsed twice. A
 * client that goes away cancels its record (a later answer for it is ignored; if the
 * agent had made it durable it is still replayed, with its key).
 */
#include "server/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fallback(struct fg_txn *t, enum fg_offload_outcome why, bool count);

static struct fg_offload_stats *stats_of(struct fg_txn *t)
{
    return &t->c->w->stats.offload;
}

/* ---- the triggers' windows: per worker and snapshot, one per upstream --------------------- */

static struct fg_offload_window *window(struct fg_snap *s, size_t upstream)
{
    if (s->windows == NULL) {
        size_t n = s->cfg->n_upstreams ? s->cfg->n_upstreams : 1;
        s->windows = calloc(n, sizeof(*s->windows));
        if (s->windows == NULL)
            return NULL;
    }
    if (s->windows[upstream] == NULL)
        s->windows[upstream] = fg_offload_window_new(fg_mono_ms());
    return s->windows[upstream];
}

void fg_stage_offload_observe(struct fg_txn *t, bool ok, uint64_t us)
{
    if (t->route == NULL || t->route->upstream == NULL || !t->route->offload.triggered)
        return; /* only routes that ask pay for the window */
    struct fg_offload_window *u = window(t->snap, t->route->upstream->index);
    if (u != NULL)
        fg_offload_window_observe(u, ok, us, fg_mono_ms(), fg_worker_random(t->c->w));
}

void fg_stage_offload_snap_free(struct fg_snap *s)
{
    if (s->windows == NULL)
        return;
    for (size_t i = 0; i < s->cfg->n_upstreams; i++)
        fg_offload_window_free(s->windows[i]);
    free(s->windows);
    s->windows = NULL;
}

/* Does a trigger of t's route fire now? */
static bool triggered(struct fg_txn *t)
{
    const struct fg_conf_route_offload *of = &t->route->offload;
    size_t ui = t->route->upstream->index;
    struct fg_upstream_pool *pool = t->snap->pools[ui];
    struct fg_offload_signals sig = {
        .limited = fg_stage_limit_over(t),
        .inflight = fg_counter_get(&fg_upstream_pool_stats(pool)->connections_active),
        .all_down = of->when_failing && fg_upstream_all_down(pool),
    };
    struct fg_offload_window *w =
        of->latency_us > 0 || of->when_failing ? window(t->snap, ui) : NULL;
    return fg_offload_trigger(of, w, &sig, fg_mono_ms(), stats_of(t)) != NULL;
}

/* ---- answers -------------------------------------------------------------------------------- */

static void restore_reading(struct fg_conn *c)
{
    c->reader.high_water = FG_HIGH_WATER;
    fg_reader_enable(&c->reader);
}

/* The stage lets go of the transaction (its answer, or the next stage, follows). */
static void leave(struct fg_txn *t)
{
    t->offload.active = false;
    t->offload.body_wait = false;
    restore_reading(t->c);
}

static void consume_request(struct fg_txn *t)
{
    struct fg_conn *c = t->c;
    uint64_t body = t->req.body == FG_HTTP_BODY_LENGTH ? t->req.content_length : 0;
    evbuffer_drain(bufferevent_get_input(c->bev), t->req.head_len + (size_t)body);
    t->req.n_headers = 0;
    t->bytes_in += body;
    t->req_state = FG_REQ_DONE;
}

static size_t json_key(char *out, size_t cap, const char *key)
{
    size_t o = 0;
    for (const char *p = key; *p != '\0' && o + 3 < cap; p++) {
        if (*p == '"' || *p == '\\')
            out[o++] = '\\';
        out[o++] = *p;
    }
    out[o] = '\0';
    return o;
}

static void answer_202(struct fg_txn *t, bool duplicate)
{
    const struct fg_conf_route_offload *of = &t->route->offload;
    fg_counter_add(duplicate ? &stats_of(t)->duplicates : &stats_of(t)->queued, 1);
    t->log_offload = duplicate ? "duplicate" : "queued";
    leave(t);
    consume_request(t);
    char fields[1600];
    int n = snprintf(fields, sizeof(fields), "Idempotency-Key: %s\r\n", t->offload.key);
    if (of->location_prefix != NULL)
        n += snprintf(fields + n, sizeof(fields) - (size_t)n, "Location: %s%s\r\n",
                      of->location_prefix, t->offload.key);
    char k[520], body[600];
    json_key(k, sizeof(k), t->offload.key);
    int bl = snprintf(body, sizeof(body), "{\"status\":\"%s\",\"id\":\"%s\"}",
                      duplicate ? "duplicate" : "queued", k);
    fg_respond(t, 202, "application/json", body, (size_t)bl, fields, (size_t)n, false);
}

/* Re-parse the head from the input buffer: its slices must point where the bytes are now
 * (a pullup, or a read growing the buffer, may have moved them). */
static bool reparse(struct fg_txn *t, size_t pull)
{
    struct fg_conn *c = t->c;
    const struct fg_conf_server *srv = t->srv;
    struct fg_http_limits lim = {.max_request_line = srv->max_request_line,
                                 .max_header_bytes = srv->max_header_bytes,
                                 .max_headers = srv->max_headers};
    size_t head_len = t->req.head_len;
    const char *buf =
        (const char *)evbuffer_pullup(bufferevent_get_input(c->bev), (ev_ssize_t)pull);
    if (buf == NULL)
        return false;
    enum fg_http_error err = FG_HTTP_E_NONE;
    int rc = fg_http_parse_request(buf, head_len, &lim, &t->req, &err);
    if (rc <= 0 || (size_t)rc != head_len)
        return false;
    if (t->offload.sent_continue)
        t->req.flags &= ~(unsigned)FG_HTTP_F_EXPECT_CONTINUE; /* the client has had it */
    return true;
}

/* The fallback answers the request itself: take it out of the input. With the whole body
 * in, the connection can live on (true); otherwise only the head goes and it must close. */
static bool take_request(struct fg_txn *t, bool body_in)
{
    if (body_in) {
        consume_request(t);
        return true;
    }
    evbuffer_drain(bufferevent_get_input(t->c->bev), t->req.head_len);
    t->req.n_headers = 0;
    return false;
}

/* The agent could not take the request (or it cannot be offloaded): the route's fallback. */
static void fallback(struct fg_txn *t, enum fg_offload_outcome why, bool count)
{
    if (count)
        fg_offload_count_failure(stats_of(t), why);
    bool body_in = t->offload.active && !t->offload.body_wait;
    if (body_in && t->req.body == FG_HTTP_BODY_LENGTH && t->req.content_length > 0)
        t->req_state = FG_REQ_BODY; /* for the app, the body is still to be read */
    leave(t);
    if (fg_stage_limit_over(t)) {
        /* Over its limit: what the limit would have answered, never the app. */
        t->log_offload = "limited";
        fg_stage_limit_refuse_saved(t, !take_request(t, body_in));
        return;
    }
    if (t->route->offload.reject) {
        fg_counter_add(&stats_of(t)->fallback_reject, 1);
        t->log_offload = "reject";
        bool close = !take_request(t, body_in);
        static const char fields[] = "Retry-After: 1\r\n";
        static const char body[] = "{\"error\":\"offload unavailable\",\"retry_after\":1}";
        fg_respond(t, 503, "application/json", body, sizeof(body) - 1, fields, sizeof(fields) - 1,
                   close);
        return;
    }
    fg_counter_add(&stats_of(t)->fallback_pass, 1);
    t->log_offload = "pass";
    if (!reparse(t, t->req.head_len)) {
        fg_respond_text(t, 500, "request head lost", true);
        return;
    }
    fg_request_after_offload(t);
}

static void answered(void *arg, enum fg_offload_outcome o)
{
    struct fg_txn *t = arg;
    FG_ASSERT(t->magic == FG_TXN_MAGIC);
    t->offload.pending = NULL;
    t->offload_us = fg_mono_us() - t->offload.sent_us;
    if (o == FG_OFFLOAD_DURABLE || o == FG_OFFLOAD_DUPLICATE)
        answer_202(t, o == FG_OFFLOAD_DUPLICATE);
    else
        fallback(t, o, true);
}

/* ---- the record ----------------------------------------------------------------------------- */

static void send_record(struct fg_txn *t)
{
    struct fg_conn *c = t->c;
    struct fg_worker *w = c->w;
    const struct fg_conf_route_offload *of = &t->route->offload;
    size_t body_len = t->req.body == FG_HTTP_BODY_LENGTH ? (size_t)t->req.content_length : 0;
    size_t total = t->req.head_len + body_len;
    if (!reparse(t, total)) {
        fallback(t, FG_OFFLOAD_ERROR, true);
        return;
    }
    const struct fg_http_request *r = &t->req;
    /* Already contiguous (reparse pulled it up): this only gives the pointer. */
    const char *buf =
        (const char *)evbuffer_pullup(bufferevent_get_input(c->bev), (ev_ssize_t)total);

    const struct fg_http_header *kh = fg_http_find_header(r->headers, r->n_headers, of->key_header);
    if (kh != NULL) {
        if (!fg_offload_key_ok(kh->value, kh->value_len)) {
            leave(t);
            fg_counter_add(&w->stats.rejected_other, 1);
            fg_respond_text(t, 400, "invalid idempotency key (1 to 255 visible characters)", true);
            return;
        }
        t->offload.key = strndup(kh->value, kh->value_len);
    } else {
        char made[40];
        snprintf(made, sizeof(made), "%016llx%016llx", (unsigned long long)fg_worker_random(w),
                 (unsigned long long)fg_worker_random(w));
        t->offload.key = strdup(made);
    }
    if (t->offload.key == NULL) {
        fallback(t, FG_OFFLOAD_ERROR, true);
        return;
    }

    struct fg_agent_record rec;
    rec.key = t->offload.key;
    rec.key_len = strlen(t->offload.key);
    fg_offload_record_from(of, r, &rec);
    rec.body = buf + r->head_len;
    rec.body_len = body_len;
    enum fg_offload_outcome why;
    t->offload.sent_us = fg_mono_us();
    t->offload.pending =
        fg_offload_send(w->offload, of->agent, &rec, of->timeout_ms, answered, t, &why);
    if (t->offload.pending == NULL)
        fallback(t, why, true);
}

/* The whole body in the input buffer yet? Then the record goes out. */
static void body_check(struct fg_txn *t)
{
    struct fg_conn *c = t->c;
    size_t have = evbuffer_get_length(bufferevent_get_input(c->bev));
    size_t head = t->req.head_len;
    uint64_t want = t->req.content_length;
    uint64_t got = have > head ? have - head : 0;
    t->req_body_bytes = got < want ? got : want; /* for body_min_rate */
    if (got < want)
        return;
    t->offload.body_wait = false;
    /* All of it is here: a client that half-closes now still gets its answer. */
    t->req_state = FG_REQ_DONE;
    fg_conn_body_finished(c);
    c->reader.high_water = FG_HIGH_WATER; /* pipelined requests wait behind this one */
    send_record(t);
}

/* ---- the stage ------------------------------------------------------------------------------ */

/* The transaction ends (answered, or the client went away). */
static void release(struct fg_txn *t)
{
    if (t->offload.pending != NULL) {
        fg_offload_cancel(t->offload.pending); /* its answer, if it comes, is ignored */
        t->offload.pending = NULL;
    }
    free(t->offload.key);
    t->offload.key = NULL;
    if (t->offload.active && t->c != NULL && t->c->magic == FG_CONN_MAGIC)
        t->c->reader.high_water = FG_HIGH_WATER;
    t->offload.active = false;
    t->offload.body_wait = false;
}

bool fg_stage_offload(struct fg_txn *t)
{
    const struct fg_conf_route_offload *of = &t->route->offload;
    if (!of->enabled || t->log_offload != NULL || t->proxy.upgrade)
        return false; /* an upgrade request becomes a tunnel, never a record */
    const struct fg_http_request *r = &t->req;
    if (!(of->methods & (1u << r->method)))
        return false; /* reads are never queued; writes as the block says */
    if (of->triggered && !triggered(t))
        return false;
    struct fg_conn *c = t->c;
    if (r->body == FG_HTTP_BODY_CHUNKED) {
        /* A record needs its length; the app takes it as it streams. */
        fallback(t, FG_OFFLOAD_ERROR, false);
        return true;
    }
    if (r->body == FG_HTTP_BODY_LENGTH && r->content_length > of->max_body) {
        fg_counter_add(&stats_of(t)->too_big, 1);
        t->log_offload = "too_big";
        fg_respond_text(t, 413, "request body larger than the offload max_body", true);
        return true;
    }
    t->offload.active = true;
    fg_txn_hold(t, &t->offload.hold, release);
    if (t->req_state != FG_REQ_BODY) {
        send_record(t);
        return true;
    }
    if ((r->flags & FG_HTTP_F_EXPECT_CONTINUE) && r->minor_version == 1) {
        evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
        fg_flush(c->bev);
        t->offload.sent_continue = true;
    }
    t->offload.body_wait = true;
    size_t need = r->head_len + (size_t)r->content_length + 1;
    if (c->reader.high_water < need)
        c->reader.high_water = need; /* the whole body must fit in the input buffer */
    fg_reader_enable(&c->reader);
    fg_conn_body_started(c);
    body_check(t);
    return true;
}

void fg_stage_offload_client_readable(struct fg_txn *t)
{
    if (t->offload.body_wait)
        body_check(t);
    /* else: waiting for the agent; later bytes are the next request, they wait */
}
