/*
 * replay.c — what the local sink and drain mode share when they hand a record to the app:
 * the request as the app sees it, what its answer means, the retry delay and the rate.
 * One place, so that a record replays the same way from the spool and from SQS.
 */
#include "agent/agentd.h"

#include <stdlib.h>

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

uint64_t fg_backoff_ms(uint64_t base, uint64_t max, unsigned attempts)
{
    unsigned shift = attempts > 1 ? attempts - 1 : 0;
    if (shift > 20)
        shift = 20;
    uint64_t b = base << shift;
    if (b > max)
        b = max;
    return b / 2 + (uint64_t)random() % (b / 2 + 1);
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
