/*
 * cache.h — flashgate's shared HTTP cache (RFC 9111). This first part is the policy:
 * pure functions that say whether a response may be stored, how long it stays fresh and
 * how old it is. The store, coalescing and the request-path stage come with issue 3.
 */
#ifndef FG_CACHE_H
#define FG_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http.h"

#define FG_CACHE_NO_VALUE UINT64_MAX

/* Cache-Control directives (RFC 9111 §5.2), from one or more fields. */
struct fg_cache_control {
    bool no_store, no_cache, private_, public_, must_revalidate, proxy_revalidate;
    bool no_transform, only_if_cached, immutable;
    bool no_cache_fields; /* no-cache="field": treated as plain no-cache for a shared cache */
    uint64_t max_age, s_maxage, stale_while_revalidate, stale_if_error, max_stale, min_fresh;
    bool malformed; /* a directive with an unparsable value was seen (it was ignored) */
};

/* Parse every field named `name` ("cache-control", or a targeted field such as
 * "cdn-cache-control") among h[0..n). Unknown directives are ignored (§5.2.3); a
 * duplicate directive keeps the most restrictive value. Returns true if any was present. */
bool fg_cache_control_parse(const struct fg_http_header *h, size_t n, const char *lower_name,
                            struct fg_cache_control *cc);

/* What the policy needs from a response. Times are Unix seconds; FG_CACHE_NO_VALUE when a
 * field is absent or invalid. */
struct fg_cache_response {
    int status;
    struct fg_cache_control cc;
    bool has_cc;
    uint64_t date, expires, last_modified, age;
    bool vary_star;
};

/* Fill a fg_cache_response from a parsed response head. targeted: an optional
 * CDN-Cache-Control style field that, when present, replaces Cache-Control (RFC 9213). */
void fg_cache_response_from_head(const struct fg_http_response *resp, const char *targeted,
                                 struct fg_cache_response *out);

/* May a shared cache store this response to this request (RFC 9111 §3, §3.5)?
 * request_has_authorization: the request carried Authorization. */
bool fg_cache_storable(enum fg_http_method method, const struct fg_cache_control *req_cc,
                       bool request_has_authorization, const struct fg_cache_response *r);

/* Freshness lifetime in seconds (§4.2.1): s-maxage, max-age, Expires - Date, or the
 * heuristic (10% of Date - Last-Modified, capped at a day) for heuristically cacheable
 * statuses without explicit freshness. 0 when none applies. now is used when Date is
 * absent. */
uint64_t fg_cache_freshness_lifetime(const struct fg_cache_response *r, int64_t now);

/* Current age in seconds (§4.2.3) of a response received between request_time and
 * response_time and stored until now. */
uint64_t fg_cache_current_age(const struct fg_cache_response *r, int64_t request_time,
                              int64_t response_time, int64_t now);

/* Statuses a cache may store with heuristic freshness (RFC 9110 §15.1). */
bool fg_cache_status_heuristic(int status);

#endif /* FG_CACHE_H */
