/*
 * stage_compress.c — compression on the request path (stage_compress.h): the coding
 * negotiated while the request head is here, and the route's policy and levels applied to
 * the plan and the encoders of proxy/compress/.
 */
#include "server/internal.h"

#include <string.h>

_Static_assert(FG_CONF_ENC_GZIP == FG_COMPRESS_GZIP && FG_CONF_ENC_BR == FG_COMPRESS_BR,
               "config coding numbers follow proxy/compress");

void fg_stage_compress_negotiate(struct fg_txn *t)
{
    const struct fg_conf_route_compress *rc = &t->route->compress;
    t->z.encoding = FG_COMPRESS_IDENTITY;
    t->z.route = rc->n > 0;
    if (!t->z.route)
        return;
    const struct fg_http_request *r = &t->req;
    if (fg_compress_no_transform(r->headers, r->n_headers))
        return; /* the client asked intermediaries not to touch the body */
    enum fg_compress_encoding order[2];
    for (size_t i = 0; i < rc->n; i++)
        order[i] = (enum fg_compress_encoding)rc->order[i];
    struct fg_compress_choice ch = fg_compress_negotiate(r->headers, r->n_headers, order, rc->n);
    t->z.encoding = ch.encoding;
}

size_t fg_stage_compress_lookup_headers(const struct fg_http_header *h, size_t n,
                                        enum fg_compress_encoding enc, struct fg_http_header *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k < FG_HTTP_MAX_HEADERS; i++)
        if (!fg_http_name_eq(h[i].name, h[i].name_len, "accept-encoding"))
            out[k++] = h[i];
    const char *token = fg_compress_encoding_name(enc);
    out[k++] = (struct fg_http_header){"accept-encoding", 15, token, strlen(token)};
    return k;
}

bool fg_stage_compress_plan(const struct fg_conf_route *route, enum fg_compress_encoding enc,
                            enum fg_http_method method, const struct fg_http_response *resp,
                            struct fg_compress_plan *plan)
{
    memset(plan, 0, sizeof(*plan));
    const struct fg_conf_route_compress *rc = &route->compress;
    if (rc->n == 0)
        return false;
    struct fg_compress_policy pol = {
        .types = rc->n_types > 0 ? (const char *const *)rc->types : NULL,
        .min_length = rc->min_length,
    };
    return fg_compress_plan_response(&pol, enc, method, resp, plan);
}

bool fg_stage_compress_start(struct fg_compress_stream *s, const struct fg_conf_route *route,
                             const struct fg_compress_plan *plan, uint64_t length_hint)
{
    struct fg_compress_params p;
    fg_compress_params_default(plan->encoding, &p);
    p.level = (int)(plan->encoding == FG_COMPRESS_BR ? route->compress.br_level
                                                     : route->compress.gzip_level);
    p.size_hint = length_hint == FG_COMPRESS_LENGTH_UNKNOWN ? 0 : length_hint;
    return fg_compress_stream_start(s, plan, &p);
}

static void release(struct fg_txn *t)
{
    fg_compress_stream_free(&t->z.stream);
}

bool fg_stage_compress_start_txn(struct fg_txn *t, const struct fg_compress_plan *plan,
                                 uint64_t length_hint)
{
    if (!fg_stage_compress_start(&t->z.stream, t->route, plan, length_hint))
        return false;
    fg_txn_hold(t, &t->z.hold, release);
    return true;
}
