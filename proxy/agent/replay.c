/*
 * replay.c — what the local sink and drain mode share when they hand a record to the app:
 * the request as the app sees it, what its answer means and the rate (the retry delay is
 * core's fg_backoff_ms). One place, so that a record replays the same way from the spool
 * and from SQS. And what both spool sinks (local and sqs) share: the window of records
 * read from the spool, acknowledged only up to its finished prefix.
 */
#include "agent/agentd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW_MAGIC    0x46475749u /* "FGWI" */
#define WINDOW_RETRY_MS 1000

enum fg_replay_verdict fg_replay_verdict(int status)
{
    if (status >= 200 && status <= 299)
        return FG_REPLAY_OK;
    if (status >= 500 || status == 408 || status == 429 || status < 200)
        return FG_REPLAY_RETRY;
    return FG_REPLAY_REJECTED;
}

static bool header_skipped(const struct fg_agent_header *h)
{
    return fg_http_name_eq(h->name, h->name_len, "host") ||
           fg_http_name_eq(h->name, h->name_len, "content-length") ||
           fg_http_name_eq(h->name, h->name_len, "idempotency-key") ||
           fg_http_is_hop_by_hop(h->name, h->name_len);
}

void fg_replay_write_request(struct evbuffer *out, const struct fg_agent_record *r,
                             const char *default_host)
{
    evbuffer_add_printf(out, "%.*s %.*s HTTP/1.1\r\n", (int)r->method_len, r->method,
                        (int)r->target_len, r->target);
    bool host = false;
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct fg_agent_header *h = &r->headers[i];
        if (fg_http_name_eq(h->name, h->name_len, "host") && !host) {
            evbuffer_add_printf(out, "Host: %.*s\r\n", (int)h->value_len, h->value);
            host = true;
        }
        if (header_skipped(h))
            continue;
        evbuffer_add_printf(out, "%.*s: %.*s\r\n", (int)h->name_len, h->name, (int)h->value_len,
                            h->value);
    }
    if (!host)
        evbuffer_add_printf(out, "Host: %s\r\n", default_host);
    evbuffer_add_printf(out, "Idempotency-Key: %.*s\r\nContent-Length: %zu\r\n\r\n",
                        (int)r->key_len, r->key, r->body_len);
    if (r->body_len > 0)
        evbuffer_add(out, r->body, r->body_len);
}

void fg_rate_init(struct fg_rate *r, uint64_t per_s, uint64_t now_us)
{
    r->per_s = per_s;
    r->burst = per_s >= 10 ? (double)per_s / 10.0 : 1.0;
    r->tokens = r->burst;
    r->last_us = now_us;
}

uint64_t fg_rate_take(struct fg_rate *r, uint64_t now_us)
{
    if (r->per_s == 0)
        return 0;
    r->tokens += (double)(now_us - r->last_us) * (double)r->per_s / 1e6;
    if (r->tokens > r->burst)
        r->tokens = r->burst;
    r->last_us = now_us;
    if (r->tokens < 1.0)
        return (uint64_t)((1.0 - r->tokens) * 1000.0 / (double)r->per_s) + 1;
    r->tokens -= 1.0;
    return 0;
}

/* ---- the window ------------------------------------------------------------------------- */

struct fg_window {
    unsigned magic;
    struct fg_spool *sp;
    struct fg_spool_iter *it; /* NULL after running out of memory, until the window empties */
    unsigned char *ring;
    size_t cap, esize, head, count;
    size_t bytes, max_bytes;
    const struct fg_window_ops *ops;
    void *arg;
    char name[16];
};

static struct fg_window_entry *window_slot(const struct fg_window *w, size_t i)
{
    return (struct fg_window_entry *)(void *)(w->ring + ((w->head + i) % w->cap) * w->esize);
}

struct fg_window *fg_window_new(struct fg_spool *sp, size_t cap, size_t entry_size,
                                size_t max_bytes, const struct fg_window_ops *ops, void *arg,
                                const char *name)
{
    FG_ASSERT(cap > 0 && entry_size >= sizeof(struct fg_window_entry));
    struct fg_window *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->magic = WINDOW_MAGIC;
    w->sp = sp;
    w->cap = cap;
    w->esize = entry_size;
    w->max_bytes = max_bytes;
    w->ops = ops;
    w->arg = arg;
    snprintf(w->name, sizeof(w->name), "%s", name);
    w->ring = calloc(cap, entry_size);
    w->it = fg_spool_iter_new(sp);
    if (w->ring == NULL || w->it == NULL) {
        fg_window_free(w);
        return NULL;
    }
    return w;
}

uint64_t fg_window_fill(struct fg_window *w, uint64_t now_ms)
{
    FG_ASSERT(w->magic == WINDOW_MAGIC);
    uint64_t upto = 0;
    while (w->count > 0 && window_slot(w, 0)->state == FG_WINDOW_DONE) {
        struct fg_window_entry *e = window_slot(w, 0);
        upto = e->seq;
        w->bytes -= e->bytes;
        w->ops->clear(w->arg, e);
        memset(e, 0, w->esize);
        w->head = (w->head + 1) % w->cap;
        w->count--;
    }
    if (upto > 0) {
        enum fg_spool_status st = fg_spool_ack(w->sp, upto);
        if (st != FG_SPOOL_OK)
            fg_err("spool ack up to %llu refused: %s", (unsigned long long)upto,
                   fg_spool_status_name(st));
    }
    /* A fresh iterator starts after the acknowledgment: only an empty window has nothing
     * of its own above it, so only then is nothing read twice. */
    if (w->it == NULL && w->count == 0)
        w->it = fg_spool_iter_new(w->sp);
    if (w->it == NULL)
        return now_ms + WINDOW_RETRY_MS;
    while (w->count < w->cap && (w->max_bytes == 0 || w->bytes < w->max_bytes || w->count == 0)) {
        struct fg_spool_record rec;
        enum fg_spool_status st = fg_spool_iter_next(w->it, &rec);
        if (st == FG_SPOOL_END)
            break;
        if (st != FG_SPOOL_OK) {
            fg_err("spool read failed (%s: %s); trying again in %ums", fg_spool_status_name(st),
                   fg_spool_error(w->sp), WINDOW_RETRY_MS);
            return now_ms + WINDOW_RETRY_MS;
        }
        struct fg_window_entry *e = window_slot(w, w->count);
        memset(e, 0, w->esize);
        e->seq = rec.seq;
        e->state = FG_WINDOW_WAIT;
        if (!w->ops->load(w->arg, e, &rec)) {
            /* The iterator moved past this record: drop it, read again once the entries
             * before it are acknowledged. */
            memset(e, 0, w->esize);
            fg_spool_iter_free(w->it);
            w->it = NULL;
            fg_err("out of memory for the %s window; retrying in %ums", w->name, WINDOW_RETRY_MS);
            return now_ms + WINDOW_RETRY_MS;
        }
        w->bytes += e->bytes;
        w->count++;
    }
    return UINT64_MAX;
}

size_t fg_window_count(const struct fg_window *w)
{
    return w != NULL ? w->count : 0;
}

void *fg_window_at(const struct fg_window *w, size_t i)
{
    FG_ASSERT(w->magic == WINDOW_MAGIC && i < w->count);
    return window_slot(w, i);
}

void fg_window_free(struct fg_window *w)
{
    if (w == NULL)
        return;
    FG_ASSERT(w->magic == WINDOW_MAGIC);
    for (size_t i = 0; w->ring != NULL && i < w->count; i++)
        w->ops->clear(w->arg, window_slot(w, i));
    free(w->ring);
    fg_spool_iter_free(w->it);
    w->magic = 0;
    free(w);
}
