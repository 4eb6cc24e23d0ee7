/*
 * respond.c — the one writer of response heads (respond.h).
 *
 * An answer's head is: the status line; the fields it is made of (the app's, the stored
 * ones, or a Content-Type of ours); its kind's own fields (Age and X-Cache from the cache,
 * Retry-After, Idempotency-Key...); the compression plan's fields; then what every answer
 * carries: X-Request-Id (unless the app sent one), the fields the stages added (RateLimit),
 * Server-Timing (with `server_timing on`), the framing field and Connection. The text is built in
 * the worker's scratch buffer and queued with one evbuffer_add; a stored head goes by reference (no
 * copy).
 */
#include "server/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

#define PUT_LIT(p, lit) ((p) = put((p), (lit), sizeof(lit) - 1))

static char *put_field(char *p, const char *name, size_t nlen, const char *value, size_t vlen)
{
    p = put(p, name, nlen);
    *p++ = ':';
    *p++ = ' ';
    p = put(p, value, vlen);
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

static char *put_u64(char *p, uint64_t v)
{
    char digits[24];
    size_t n = 0;
    do {
        digits[sizeof(digits) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return put(p, digits + sizeof(digits) - n, n);
}

static char *put_status_line(char *p, int status, const char *reason, size_t reason_len)
{
    PUT_LIT(p, "HTTP/1.1 ");
    p[0] = (char)('0' + status / 100 % 10);
    p[1] = (char)('0' + status / 10 % 10);
    p[2] = (char)('0' + status % 10);
    p[3] = ' ';
    p += 4;
    if (reason == NULL || reason_len == 0) {
        reason = fg_http_reason(status);
        reason_len = strlen(reason);
    }
    p = put(p, reason, reason_len);
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

/* Is h one of the tag fields of a cache that strips them? */
static bool tag_field(const struct fg_conf_cache *k, const struct fg_http_header *h)
{
    for (size_t i = 0; k != NULL && k->tag_strip && i < k->n_tag_fields; i++)
        if (fg_http_name_eq(h->name, h->name_len, k->tag_fields[i]))
            return true;
    return false;
}

/* The app's fields that go on: hop-by-hop, what Connection lists, the framing we redo,
 * what the compression plan replaces and a cache's tag fields are dropped. *have_id: the
 * app sent X-Request-Id. */
static char *put_app_fields(char *p, const struct fg_respond *r, bool *have_id)
{
    const struct fg_http_response *resp = r->app;
    bool keep_length = r->body == FG_RESPOND_AS_APP;
    for (size_t i = 0; i < resp->n_headers; i++) {
        const struct fg_http_header *h = &resp->headers[i];
        if (fg_http_is_hop_by_hop(h->name, h->name_len))
            continue;
        if (r->plan != NULL && fg_compress_plan_replaces(r->plan, h))
            continue;
        if (tag_field(r->tags, h))
            continue;
        /* A 204 has no body and no Content-Length (RFC 9110 8.6), whatever the app said. */
        if (h->name_len == 14 && (!keep_length || resp->status == 204) &&
            fg_http_name_eq(h->name, h->name_len, "content-length"))
            continue;
        if ((resp->flags & FG_HTTP_F_CONN_OTHER) &&
            fg_http_connection_lists(resp->headers, resp->n_headers, h->name, h->name_len))
            continue;
        if (h->name_len == 12 && fg_http_name_eq(h->name, h->name_len, "x-request-id"))
            *have_id = true;
        p = put_field(p, h->name, h->name_len, h->value, h->value_len);
    }
    return p;
}

/* `server_timing on`: where this request's time went, for a browser's developer tools
 * (W3C Server Timing): the cache stage and its outcome, the wait for the app's head, and
 * the waits for a rate limit's Redis or the agent when there were some. At most
 * SERVER_TIMING_MAX bytes. */
#define SERVER_TIMING_MAX 200
static char *put_server_timing(char *p, const struct fg_txn *t)
{
    char *start = p;
    PUT_LIT(p, "Server-Timing: ");
    char *items = p;
    if (t->log_cache != NULL)
        p += sprintf(p, "cache;desc=\"%.16s\";dur=%.3f", t->log_cache, (double)t->cache_us / 1000);
    if (t->app.attempts > 0 && t->app_head_us > 0)
        p += sprintf(p, "%sapp;dur=%.3f", p > items ? ", " : "", (double)t->app_head_us / 1000);
    if (t->limit_us > 0)
        p += sprintf(p, "%slimit;dur=%.3f", p > items ? ", " : "", (double)t->limit_us / 1000);
    if (t->offload_us > 0)
        p += sprintf(p, "%soffload;dur=%.3f", p > items ? ", " : "", (double)t->offload_us / 1000);
    if (p == items)
        return start; /* nothing was timed (a request refused before any stage) */
    PUT_LIT(p, "\r\n");
    return p;
}

bool fg_respond_head(struct fg_txn *t, const struct fg_respond *r)
{
    struct fg_conn *c = t->c;
    struct fg_worker *w = c->w;
    bool client11 = t->req.minor_version == 1;

    if (r->body == FG_RESPOND_TO_CLOSE || r->close)
        t->client_close = true; /* an HTTP/1.0 client reads to the close */
    bool close = !fg_conn_keepalive_ok(c, t);
    t->client_close = close;
    fg_txn_request_id(t);

    size_t need = 128 + r->reason_len + r->fields_len + t->fields_len + sizeof(t->request_id) +
                  (r->ctype ? strlen(r->ctype) + 16 : 0) + (r->app ? r->app->head_len : 0) +
                  (r->plan ? FG_COMPRESS_PLAN_FIELDS_MAX : 0) + SERVER_TIMING_MAX;
    if (scratch_reserve(w, need) == 0)
        return false;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    char *p = w->scratch;
    bool have_id = false;
    size_t head_bytes = 0;
    if (r->stored != NULL) {
        /* The stored head by reference: its status line too, unless it answers another
         * status (a 304 from a stored 200). */
        bool own_line = r->status != fg_cache_obj_meta(r->stored)->status;
        if (own_line) {
            p = put_status_line(p, r->status, r->reason, r->reason_len);
            evbuffer_add(out, w->scratch, (size_t)(p - w->scratch));
            head_bytes += (size_t)(p - w->scratch);
            p = w->scratch;
        }
        head_bytes += fg_cache_obj_add_head(r->stored, out, own_line);
    } else {
        p = put_status_line(p, r->status, r->reason, r->reason_len);
    }
    if (r->app != NULL)
        p = put_app_fields(p, r, &have_id);
    if (r->ctype != NULL)
        p = put_field(p, "Content-Type", 12, r->ctype, strlen(r->ctype));
    if (r->fields_len > 0)
        p = put(p, r->fields, r->fields_len);
    if (r->plan != NULL)
        p += fg_compress_plan_fields(r->plan, p, FG_COMPRESS_PLAN_FIELDS_MAX);
    if (!have_id && t->request_id[0] != '\0')
        p = put_field(p, "X-Request-Id", 12, t->request_id, strlen(t->request_id));
    if (t->fields_len > 0)
        p = put(p, t->fields, t->fields_len);
    if (t->srv != NULL && t->srv->server_timing)
        p = put_server_timing(p, t);
    switch (r->body) {
    case FG_RESPOND_LENGTH:
        PUT_LIT(p, "Content-Length: ");
        p = put_u64(p, r->length);
        PUT_LIT(p, "\r\n");
        break;
    case FG_RESPOND_CHUNKED:
        PUT_LIT(p, "Transfer-Encoding: chunked\r\n");
        break;
    case FG_RESPOND_TO_CLOSE:
    case FG_RESPOND_AS_APP:
    case FG_RESPOND_NO_BODY:
        break;
    }
    if (close)
        PUT_LIT(p, "Connection: close\r\n");
    else if (!client11)
        PUT_LIT(p, "Connection: keep-alive\r\n");
    PUT_LIT(p, "\r\n");
    size_t len = (size_t)(p - w->scratch);
    evbuffer_add(out, w->scratch, len);
    t->bytes_out += head_bytes + len;
    t->status = r->status;
    t->resp_head_sent = true;
    return true;
}

void fg_respond(struct fg_txn *t, int status, const char *ctype, const char *body, size_t len,
                const char *fields, size_t fields_len, bool close)
{
    FG_ASSERT(t != NULL && t->magic == FG_TXN_MAGIC);
    struct fg_respond r = {.status = status,
                           .ctype = ctype,
                           .fields = fields,
                           .fields_len = fields_len,
                           .body = FG_RESPOND_LENGTH,
                           .length = len,
                           .close = close};
    if (!fg_respond_head(t, &r)) {
        /* Out of memory for a head: nothing can be said, the connection goes. */
        t->status = status;
        fg_conn_close(t->c);
        return;
    }
    if (t->req.method != FG_HTTP_HEAD && len > 0) {
        evbuffer_add(bufferevent_get_output(t->c->bev), body, len);
        t->bytes_out += len;
    }
    t->resp_state = FG_RESP_DONE;
    fg_conn_txn_done(t->c);
}

void fg_respond_text(struct fg_txn *t, int status, const char *detail, bool close)
{
    char body[512];
    int n = snprintf(body, sizeof(body), "%d %s: %s\n", status, fg_http_reason(status), detail);
    if (n < 0 || (size_t)n >= sizeof(body))
        n = (int)strlen(body);
    fg_respond(t, status, "text/plain; charset=utf-8", body, (size_t)n, NULL, 0, close);
}
