/*
 * stage_compress.h — compression on the request path (stage_compress.c): the coding
 * negotiated while the request head is here, the plan for an answer with the route's
 * policy, an encoder with the route's levels. The coders and the plan itself are
 * proxy/compress/.
 *
 * Where bodies are compressed: a proxied (uncached) answer streams through an encoder
 * (proxy.c); a cache fill stores the encoded variant, one per coding (fill.c), so a hit
 * costs no compression at all.
 */
#ifndef FG_SERVER_STAGE_COMPRESS_H
#define FG_SERVER_STAGE_COMPRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compress/compress.h"
#include "config/config.h"
#include "http/http.h"
#include "server/txn_hold.h"

struct fg_txn;

/* The stage's part of a transaction. */
struct fg_stage_compress {
    bool route;                         /* the route compresses */
    enum fg_compress_encoding encoding; /* what the client accepts best (identity: none) */
    struct fg_compress_stream stream;   /* a proxied answer being encoded */
    struct fg_txn_hold hold;            /* while the stream runs */
};

/* Negotiate the coding while the request head is here (t->z). */
void fg_stage_compress_negotiate(struct fg_txn *t);
/* The request's fields as the cache sees them on a compressing route: Accept-Encoding
 * replaced by the negotiated coding, so variants are per coding, not per header spelling.
 * out has room for FG_HTTP_MAX_HEADERS + 1; returns the count. */
size_t fg_stage_compress_lookup_headers(const struct fg_http_header *h, size_t n,
                                        enum fg_compress_encoding enc, struct fg_http_header *out);
/* Plan an answer of route for a client that accepts enc (see fg_compress_plan_response). */
bool fg_stage_compress_plan(const struct fg_conf_route *route, enum fg_compress_encoding enc,
                            enum fg_http_method method, const struct fg_http_response *resp,
                            struct fg_compress_plan *plan);
/* Start an encoder for plan with the route's level; length_hint FG_COMPRESS_LENGTH_UNKNOWN
 * if unknown. */
bool fg_stage_compress_start(struct fg_compress_stream *s, const struct fg_conf_route *route,
                             const struct fg_compress_plan *plan, uint64_t length_hint);
/* Encode a proxied answer: t's stream starts now and is freed when t ends. */
bool fg_stage_compress_start_txn(struct fg_txn *t, const struct fg_compress_plan *plan,
                                 uint64_t length_hint);

#endif /* FG_SERVER_STAGE_COMPRESS_H */
