/*
 * plan.c — the decision for one answer and its head edits (compress.h, "the plan"): the
 * policy's verdict, the merged Vary, the weakened ETag, the coding, and whether to flush
 * after every piece (an event stream).
 */
#include "compress/compress.h"

#include <stdio.h>
#include <string.h>

bool fg_compress_plan_response(const struct fg_compress_policy *policy,
                               enum fg_compress_encoding enc, enum fg_http_method method,
                               const struct fg_http_response *resp, struct fg_compress_plan *plan)
{
    memset(plan, 0, sizeof(*plan));
    enum fg_compress_reason why = fg_compress_check_response(policy, method, resp);
    if (why != FG_COMPRESS_YES) {
        fg_compress_stats_skipped(why);
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
        fg_compress_stats_skipped(FG_COMPRESS_NO_ACCEPT);
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

bool fg_compress_plan_replaces(const struct fg_compress_plan *plan, const struct fg_http_header *h)
{
    if (plan->vary_edit && fg_http_name_eq(h->name, h->name_len, "vary"))
        return true;
    if (plan->compress && (fg_http_name_eq(h->name, h->name_len, "etag") ||
                           fg_http_name_eq(h->name, h->name_len, "content-length")))
        return true;
    return false;
}

size_t fg_compress_plan_fields(const struct fg_compress_plan *plan, char *out, size_t cap)
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
