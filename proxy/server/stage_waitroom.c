/*
 * stage_waitroom.c — the waiting room on the request path (request.c calls
 * fg_stage_waitroom after the rate limits).
 *
 * The visitor's two cookies (fgwr_NAME: the ticket, fgwa_NAME: the admitted session) are
 * verified here; the room (proxy/waitroom) decides. A visitor without a ticket in a room
 * backed by Redis waits for one (asynchronously: the head stays in the input buffer with
 * reading paused, as in the rate-limit stage). Answers:
 *   admitted            on to the app, with the session cookie set or renewed;
 *   `X-Waitroom: status` the JSON status (the page's poll), 200, no-store;
 *   a browser           the waiting page, 200, no-store;
 *   anything else       503 with Retry-After and the JSON status.
 */
#include "server/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#define WR_FIELDS_MAX 480

static struct fg_waitroom_worker **ww; /* [n_workers], each made on its worker's thread */
static size_t n_ww;

bool fg_stage_waitroom_global_init(size_t workers)
{
    ww = calloc(workers ? workers : 1, sizeof(*ww));
    n_ww = workers;
    return ww != NULL && fg_waitroom_start();
}

bool fg_stage_waitroom_snap_init(struct fg_worker *w, struct fg_snap *s)
{
    const struct fg_config *cfg = s->cfg;
    s->waitrooms = calloc(cfg->n_waitrooms ? cfg->n_waitrooms : 1, sizeof(*s->waitrooms));
    if (s->waitrooms == NULL)
        return false;
    for (size_t i = 0; i < cfg->n_waitrooms; i++) {
        const struct fg_conf_waitroom *cw = &cfg->waitrooms[i];
        struct fg_waitroom_config c = {
            .name = cw->name,
            .inlet = {.rate_milli = cw->rate_per_ks,
                      .max_active = cw->max_active,
                      .p99_limit_us = cw->p99_limit_ms * 1000,
                      .err_limit_permille = cw->err_limit_permille},
            .session_ttl_ms = cw->session_ttl_ms,
            .opens_at_ms = cw->opens_at_ms,
            .active = cw->active,
            .redis = cw->redis_ep,
            .redis_timeout_ms = cw->redis_timeout_ms,
            .fallback_permille = cw->fallback_permille,
            .fail_closed = cw->fail_closed,
            .poll_ms = cw->poll_ms,
        };
        s->waitrooms[i] = fg_waitroom_configure(&c);
    }
    if (w != NULL && w->id < n_ww && ww[w->id] == NULL && cfg->n_waitrooms > 0)
        ww[w->id] = fg_waitroom_worker_new(w->base);
    /* connect now: the first visitors find a ready client for their ticket */
    for (size_t i = 0; w != NULL && w->id < n_ww && ww[w->id] != NULL && i < cfg->n_waitrooms; i++)
        if (s->waitrooms[i] != NULL && cfg->waitrooms[i].redis_ep != NULL)
            fg_waitroom_worker_prepare(ww[w->id], s->waitrooms[i]);
    return true;
}

void fg_stage_waitroom_snap_free(struct fg_snap *s)
{
    free(s->waitrooms);
}

/* ---- the request ---------------------------------------------------------------------- */

static bool has_prefix(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(s, prefix, n) == 0;
}

static bool bypass(const struct fg_txn *t, const struct fg_conf_waitroom *cw)
{
    const struct fg_http_request *r = &t->req;
    for (size_t i = 0; i < cw->n_bypass_prefix; i++)
        if (has_prefix(r->path, r->path_len, cw->bypass_prefix[i]))
            return true;
    if (cw->bypass_header[0] != '\0') {
        const struct fg_http_header *h =
            fg_http_find_header(r->headers, r->n_headers, cw->bypass_header);
        size_t vl = strlen(cw->bypass_value);
        if (h != NULL && h->value_len == vl && CRYPTO_memcmp(h->value, cw->bypass_value, vl) == 0)
            return true;
    }
    return false;
}

/* The value of cookie name in the Cookie fields (the last one wins), or NULL. */
static const char *cookie(const struct fg_http_request *r, const char *name, size_t *len)
{
    return fg_http_cookie(r->headers, r->n_headers, name, FG_HTTP_COOKIE_LAST, len);
}

static bool header_has(const struct fg_http_request *r, const char *name, const char *needle)
{
    const struct fg_http_header *h = fg_http_find_header(r->headers, r->n_headers, name);
    return h != NULL && memmem(h->value, h->value_len, needle, strlen(needle)) != NULL;
}

/* Read the visitor's cookies into t->wr.v. */
static void read_cookies(struct fg_txn *t, const struct fg_conf_waitroom *cw,
                         struct fg_waitroom *room)
{
    struct fg_waitroom_visit *v = &t->wr.v;
    char name[FG_CONF_NAME_MAX + 8];
    size_t len;
    snprintf(name, sizeof(name), "fgwr_%s", cw->name);
    const char *c = cookie(&t->req, name, &len);
    if (c != NULL) {
        enum fg_waitroom_verdict vd =
            fg_waitroom_token_verify(cw->keys, cw->name, c, len, &v->ticket);
        if (vd == FG_WR_TOKEN_OK && v->ticket.kind == FG_WR_TICKET) {
            v->has_ticket = true;
        } else {
            v->bad_ticket = true; /* a new ticket, at the back */
            fg_waitroom_count_tampered(room);
        }
    }
    snprintf(name, sizeof(name), "fgwa_%s", cw->name);
    c = cookie(&t->req, name, &len);
    if (c != NULL) {
        enum fg_waitroom_verdict vd =
            fg_waitroom_token_verify(cw->keys, cw->name, c, len, &v->session);
        if (vd == FG_WR_TOKEN_OK && v->session.kind == FG_WR_ADMITTED)
            v->has_session = true;
        else
            fg_waitroom_count_tampered(room);
    }
}

/* Set-Cookie fields for what the room gave the visitor. */
static size_t cookie_fields(const struct fg_txn *t, char *out, size_t cap)
{
    const struct fg_conf_waitroom *cw = t->route->waitroom;
    const struct fg_waitroom_visit *v = &t->wr.v;
    size_t n = 0;
    char tok[FG_WAITROOM_TOKEN_MAX];
    /* Secure over TLS, ours or the ALB's (a client claiming https only makes it stricter) */
    const char *secure =
        fg_reader_ssl(&t->c->reader) != NULL || header_has(&t->req, "x-forwarded-proto", "https")
            ? "; Secure"
            : "";
    if (v->set_ticket &&
        fg_waitroom_token_sign(cw->keys, cw->name, &v->out_ticket, tok, sizeof(tok))) {
        int k =
            snprintf(out + n, cap - n,
                     "Set-Cookie: fgwr_%s=%s; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax%s\r\n",
                     cw->name, tok, secure);
        if (k > 0 && (size_t)k < cap - n)
            n += (size_t)k;
    }
    if (v->set_session &&
        fg_waitroom_token_sign(cw->keys, cw->name, &v->out_session, tok, sizeof(tok))) {
        int k = snprintf(out + n, cap - n,
                         "Set-Cookie: fgwa_%s=%s; Path=/; Max-Age=%" PRIu64
                         "; HttpOnly; SameSite=Lax%s\r\n",
                         cw->name, tok, cw->session_ttl_ms / 1000, secure);
        if (k > 0 && (size_t)k < cap - n)
            n += (size_t)k;
    }
    return n;
}

static void respond_waiting(struct fg_txn *t, struct fg_waitroom *room)
{
    const struct fg_conf_waitroom *cw = t->route->waitroom;
    struct fg_waitroom_visit *v = &t->wr.v;
    char fields[WR_FIELDS_MAX + 128];
    size_t n = cookie_fields(t, fields, WR_FIELDS_MAX);
    uint64_t pace = fg_waitroom_pace_ms(room, v);
    struct evbuffer *body = evbuffer_new();
    if (body == NULL) {
        fg_respond_text(t, 503, "out of memory", true);
        return;
    }
    int status = 200;
    const char *ctype = "application/json";
    if (t->wr.status_poll) {
        fg_waitroom_status_json(body, cw->name, v, pace);
        fg_waitroom_count_page(room, true);
    } else if (t->wr.browser && !v->admitted) {
        char target[1024];
        size_t tl = t->req.target_len < sizeof(target) ? t->req.target_len : sizeof(target) - 1;
        memcpy(target, t->req.target, tl);
        fg_waitroom_page(body, cw->page, cw->page_len, cw->name, v, pace, "", target, tl);
        ctype = "text/html; charset=utf-8";
        fg_waitroom_count_page(room, false);
    } else {
        status = 503;
        fg_waitroom_status_json(body, cw->name, v, pace);
        uint64_t after = v->eta_s < 1 ? 1 : v->eta_s > pace / 1000 ? pace / 1000 : v->eta_s;
        int k = snprintf(fields + n, sizeof(fields) - n, "Retry-After: %" PRIu64 "\r\n", after);
        if (k > 0 && (size_t)k < sizeof(fields) - n)
            n += (size_t)k;
        fg_waitroom_count_page(room, true);
    }
    int k = snprintf(fields + n, sizeof(fields) - n, "Cache-Control: no-store\r\n");
    if (k > 0 && (size_t)k < sizeof(fields) - n)
        n += (size_t)k;
    t->log_limit = "waiting_room";
    bool close = t->req_state == FG_REQ_BODY; /* an unread body: not kept alive */
    evbuffer_drain(bufferevent_get_input(t->c->bev), t->req.head_len);
    t->req.n_headers = 0;
    size_t len = evbuffer_get_length(body);
    const char *text = (const char *)evbuffer_pullup(body, -1);
    fg_respond(t, status, ctype, text, len, fields, n, close);
    evbuffer_free(body);
}

/* The room's answer: true when the stage answered, false when the request goes on. */
static bool finish(struct fg_txn *t, struct fg_waitroom *room, enum fg_waitroom_answer a)
{
    if (a == FG_WR_PASS && !t->wr.status_poll) {
        char fields[WR_FIELDS_MAX];
        size_t n = cookie_fields(t, fields, sizeof(fields));
        if (n > 0)
            fg_txn_add_fields(t, fields, n);
        t->wr.room = room; /* the app's answer counts for the adaptive inlet */
        return false;
    }
    respond_waiting(t, room);
    return true;
}

static void release(struct fg_txn *t)
{
    if (t->wr.pending != NULL) {
        fg_waitroom_cancel(t->wr.pending);
        t->wr.pending = NULL;
    }
}

static enum fg_waitroom_answer decide(struct fg_txn *t, struct fg_waitroom *room, bool *waiting);

static void on_ticket(void *arg)
{
    struct fg_txn *t = arg;
    FG_ASSERT(t->magic == FG_TXN_MAGIC);
    t->wr.pending = NULL;
    struct fg_waitroom *room = t->snap->waitrooms[t->route->waitroom->index];
    bool waiting = false;
    enum fg_waitroom_answer a = decide(t, room, &waiting);
    if (waiting)
        return;
    fg_conn_resume_read(t->c);
    if (!finish(t, room, a))
        fg_request_after_waitroom(t);
}

/* Ask the room; when it needs Redis, send the question (waiting set: on_ticket goes on). */
static enum fg_waitroom_answer decide(struct fg_txn *t, struct fg_waitroom *room, bool *waiting)
{
    struct fg_waitroom_worker *w = t->c->w->id < n_ww ? ww[t->c->w->id] : NULL;
    *waiting = false;
    for (;;) {
        enum fg_waitroom_answer a = fg_waitroom_check(room, w, &t->wr.v);
        if (a != FG_WR_NEED_TICKET)
            return a;
        if (t->wr.asks++ < 2 &&
            fg_waitroom_take_ticket(room, w, &t->wr.v, on_ticket, t, &t->wr.pending)) {
            fg_txn_hold(t, &t->wr.hold, release);
            fg_reader_disable(&t->c->reader); /* t->req points into the input buffer */
            *waiting = true;
            return a;
        }
        t->wr.v.redis_failed = true; /* the fallback decides */
    }
}

bool fg_stage_waitroom(struct fg_txn *t)
{
    const struct fg_conf_waitroom *cw = t->route->waitroom;
    if (cw == NULL || t->snap->waitrooms == NULL || cw->keys == NULL)
        return false;
    struct fg_waitroom *room = t->snap->waitrooms[cw->index];
    if (room == NULL)
        return false; /* out of memory when the snapshot was made: let it pass */
    if (bypass(t, cw)) {
        fg_waitroom_count_bypass(room);
        return false;
    }
    memset(&t->wr.v, 0, sizeof(t->wr.v));
    t->wr.asks = 0;
    t->wr.v.now_ms = (uint64_t)fg_wall_ms();
    read_cookies(t, cw, room);
    t->wr.status_poll = header_has(&t->req, "x-waitroom", "status");
    t->wr.browser = header_has(&t->req, "accept", "text/html");
    struct fg_waitroom_worker *w = t->c->w->id < n_ww ? ww[t->c->w->id] : NULL;
    if (cw->redis_ep != NULL && w != NULL)
        fg_waitroom_worker_prepare(w, room);
    bool waiting = false;
    enum fg_waitroom_answer a = decide(t, room, &waiting);
    if (waiting)
        return true;
    return finish(t, room, a);
}

void fg_stage_waitroom_done(struct fg_txn *t)
{
    if (t->wr.room != NULL && (t->app_head_us > 0 || t->status >= 500))
        fg_waitroom_observe(t->wr.room, t->status, t->app_head_us);
}
