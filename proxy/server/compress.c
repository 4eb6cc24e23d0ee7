/*
 * compress.c — response compression on the request path: negotiation while the request
 * head is here, the decision and the header edits at the response head, and the
 * counters. The coders themselves are proxy/compress/.
 *
 * Where the body is compressed:
 *  - a proxied (uncached) answer: proxy.c streams it through an encoder, chunk by chunk,
 *    with the same back-pressure as any body;
 *  - a cache fill: fetch.c stores the encoded variant (one per coding, the cache's Vary
 *    key being the negotiated coding, not the raw Accept-Encoding), so a hit costs no
 *    compression at all.
 */
#include "server/internal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

_Static_assert(FG_CONF_ENC_GZIP == FG_COMPRESS_GZIP && FG_CONF_ENC_BR == FG_COMPRESS_BR,
               "config coding numbers follow proxy/compress");

static struct {
    _Atomic uint64_t responses[FG_COMPRESS_ENCODING__COUNT];
    _Atomic uint64_t bytes_in[FG_COMPRESS_ENCODING__COUNT];
    _Atomic uint64_t bytes_out[FG_COMPRESS_ENCODING__COUNT];
    _Atomic uint64_t cpu_ns[FG_COMPRESS_ENCODING__COUNT];
    _Atomic uint64_t skipped[FG_COMPRESS_REASON__COUNT];
    _Atomic uint64_t errors;
} Z;

void fg_zstats_get(struct fg_zstats *out)
{
    for (int e = 0; e < FG_COMPRESS_ENCODING__COUNT; e++) {
        out->responses[e] = atomic_load_explicit(&Z.responses[e], memory_order_relaxed);
        out->bytes_in[e] = atomic_load_explicit(&Z.bytes_in[e], memory_order_relaxed);
        out->bytes_out[e] = atomic_load_explicit(&Z.bytes_out[e], memory_order_relaxed);
        out->cpu_ns[e] = atomic_load_explicit(&Z.cpu_ns[e], memory_order_relaxed);
    }
    for (int r = 0; r < FG_COMPRESS_REASON__COUNT; r++)
        out->skipped[r] = atomic_load_explicit(&Z.skipped[r], memory_order_relaxed);
    out->errors = atomic_load_explicit(&Z.errors, memory_order_relaxed);
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void fg_zstats_account(enum fg_compress_encoding e, uint64_t in, uint64_t out, uint64_t cpu_ns)
{
    atomic_fetch_add_explicit(&Z.responses[e], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&Z.bytes_in[e], in, memory_order_relaxed);
    atomic_fetch_add_explicit(&Z.bytes_out[e], out, memory_order_relaxed);
    atomic_fetch_add_explicit(&Z.cpu_ns[e], cpu_ns, memory_order_relaxed);
}

void fg_zstats_skipped(enum fg_compress_reason r)
{
    if (r < FG_COMPRESS_REASON__COUNT)
        atomic_fetch_add_explicit(&Z.skipped[r], 1, memory_order_relaxed);
}

/* ---- negotiation --------------------------------------------------------------------- */

void fg_z_negotiate(struct fg_txn *t)
{
    const struct fg_conf_route_compress *rc = &t->route->compress;
    t->zenc = FG_COMPRESS_IDENTITY;
    t->zroute = rc->n > 0;
    if (!t->zroute)
        return;
    const struct fg_http_request *r = &t->req;
    if (fg_compress_no_transform(r->headers, r->n_headers))
        return; /* the client asked intermediaries not to touch the body */
    enum fg_compress_encoding order[2];
    for (size_t i = 0; i < rc->n; i++)
        order[i] = (enum fg_compress_encoding)rc->order[i];
    struct fg_compress_choice ch = fg_compress_negotiate(r->headers, r->n_headers, order, rc->n);
    t->zenc = ch.encoding;
}

size_t fg_z_lookup_headers(const struct fg_http_header *h, size_t n, enum fg_compress_encoding enc,
                           struct fg_http_header *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k < FG_HTTP_MAX_HEADERS; i++)
        if (!fg_http_name_eq(h[i].name, h[i].name_len, "accept-encoding"))
            out[k++] = h[i];
    const char *token = fg_compress_encoding_name(enc);
    out[k++] = (struct fg_http_header){"accept-encoding", 15, token, strlen(token)};
    return k;
}

/* ---- the decision and the header edits -------------------------------------------------- */

static void policy_of(const struct fg_conf_route_compress *rc, struct fg_compress_policy *p)
{
    p->types = rc->n_types > 0 ? (const char *const *)rc->types : NULL;
    p->min_length = rc->min_length;
}

bool fg_z_plan(const struct fg_conf_route *route, enum fg_compress_encoding enc,
               enum fg_http_method method, const struct fg_http_response *resp,
               struct fg_zplan *plan)
{
    memset(plan, 0, sizeof(*plan));
    if (route->compress.n == 0)
        return false;
    struct fg_compress_policy pol;
    policy_of(&route->compress, &pol);
    enum fg_compress_reason why = fg_compress_check_response(&pol, method, resp);
    if (why != FG_COMPRESS_YES) {
        fg_zstats_skipped(why);
        return false;
    }
    /* Compressible: the answer varies with Accept-Encoding whoever asks, so caches
     * downstream (CloudFront, browsers) key on it too. */
    const struct fg_http_header *vary = NULL;
    for (size_t i = 0; i < resp->n_headers; i++)
        if (fg_http_name_eq(resp->headers[i].name, resp->headers[i].name_len, "vary"))
            vary = &resp->headers[i];
    if (!fg_compress_vary_merge(vary ? vary->value : NULL, vary ? vary->value_len : 0, plan->vary,
                                sizeof(plan->vary), &plan->vary_len))
        return false; /* an absurd Vary: leave the answer alone */
    plan->vary_edit = true;
    if (enc == FG_COMPRESS_IDENTITY) {
        fg_zstats_skipped(FG_COMPRESS_NO_ACCEPT);
        return false;
    }
    const struct fg_http_header *etag = fg_http_find_header(resp->headers, resp->n_headers, "etag");
    if (etag != NULL && !fg_compress_etag_weaken(etag->value, etag->value_len, plan->etag,
                                                 sizeof(plan->etag), &plan->etag_len))
        return false;
    plan->encoding = enc;
    plan->compress = true;
    const struct fg_http_header *ct =
        fg_http_find_header(resp->headers, resp->n_headers, "content-type");
    plan->flush_each =
        ct != NULL && fg_compress_type_match("text/event-stream", ct->value, ct->value_len);
    return true;
}

bool fg_z_field_replaced(const struct fg_zplan *plan, const struct fg_http_header *h)
{
    if (plan->vary_edit && fg_http_name_eq(h->name, h->name_len, "vary"))
        return true;
    if (plan->compress && (fg_http_name_eq(h->name, h->name_len, "etag") ||
                           fg_http_name_eq(h->name, h->name_len, "content-length")))
        return true;
    return false;
}

size_t fg_z_extra_fields(const struct fg_zplan *plan, char *out, size_t cap)
{
    size_t n = 0;
    if (plan->vary_edit && n + plan->vary_len + 8 < cap) {
        memcpy(out + n, "Vary: ", 6);
        memcpy(out + n + 6, plan->vary, plan->vary_len);
        n += 6 + plan->vary_len;
        out[n++] = '\r';
        out[n++] = '\n';
    }
    if (plan->compress) {
        n += (size_t)snprintf(out + n, cap - n, "Content-Encoding: %s\r\n",
                              fg_compress_encoding_name(plan->encoding));
        if (plan->etag_len > 0 && n + plan->etag_len + 8 < cap) {
            memcpy(out + n, "ETag: ", 6);
            memcpy(out + n + 6, plan->etag, plan->etag_len);
            n += 6 + plan->etag_len;
            out[n++] = '\r';
            out[n++] = '\n';
        }
    }
    return n;
}

struct fg_compressor *fg_z_encoder(const struct fg_conf_route *route, enum fg_compress_encoding enc,
                                   uint64_t length_hint)
{
    struct fg_compress_params p;
    fg_compress_params_default(enc, &p);
    p.level = (int)(enc == FG_COMPRESS_BR ? route->compress.br_level : route->compress.gzip_level);
    p.size_hint = length_hint == FG_COMPRESS_LENGTH_UNKNOWN ? 0 : length_hint;
    struct fg_compressor *z = fg_compressor_new(enc, &p);
    if (z == NULL)
        atomic_fetch_add_explicit(&Z.errors, 1, memory_order_relaxed);
    return z;
}

/* ---- streaming through an encoder ----------------------------------------------------- */

bool fg_z_write(struct fg_zstream *zs, struct evbuffer *in, struct evbuffer *out)
{
    uint64_t t0 = thread_cpu_ns();
    enum fg_compress_status st = fg_compressor_write_buffer(zs->z, in, out);
    if (st == FG_COMPRESS_OK && zs->flush_each)
        st = fg_compressor_flush(zs->z, out);
    zs->cpu_ns += thread_cpu_ns() - t0;
    if (st != FG_COMPRESS_OK)
        atomic_fetch_add_explicit(&Z.errors, 1, memory_order_relaxed);
    return st == FG_COMPRESS_OK;
}

bool fg_z_finish(struct fg_zstream *zs, struct evbuffer *out)
{
    uint64_t t0 = thread_cpu_ns();
    enum fg_compress_status st = fg_compressor_finish(zs->z, out);
    zs->cpu_ns += thread_cpu_ns() - t0;
    if (st != FG_COMPRESS_OK) {
        atomic_fetch_add_explicit(&Z.errors, 1, memory_order_relaxed);
        return false;
    }
    fg_zstats_account(zs->encoding, fg_compressor_bytes_in(zs->z), fg_compressor_bytes_out(zs->z),
                      zs->cpu_ns);
    return true;
}

void fg_z_free(struct fg_zstream *zs)
{
    fg_compressor_free(zs->z);
    if (zs->tmp != NULL)
        evbuffer_free(zs->tmp);
    if (zs->out != NULL)
        evbuffer_free(zs->out);
    memset(zs, 0, sizeof(*zs));
}

bool fg_z_start(struct fg_zstream *zs, const struct fg_conf_route *route,
                const struct fg_zplan *plan, uint64_t length_hint)
{
    memset(zs, 0, sizeof(*zs));
    zs->z = fg_z_encoder(route, plan->encoding, length_hint);
    zs->tmp = evbuffer_new();
    zs->out = evbuffer_new();
    zs->encoding = plan->encoding;
    zs->flush_each = plan->flush_each;
    if (zs->z == NULL || zs->tmp == NULL || zs->out == NULL) {
        fg_z_free(zs);
        return false;
    }
    return true;
}
