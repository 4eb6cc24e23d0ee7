/*
 * headers.c — Retry-After and the RateLimit response fields (see ratelimit.h for which
 * draft and why both forms). Limit names are tokens by construction (limit_init checks
 * them), so they are written inside sf-string quotes without escaping.
 */
#include "ratelimit/ratelimit.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

uint64_t fg_ratelimit_retry_after_s(uint64_t retry_after_ms)
{
    uint64_t s = retry_after_ms / 1000 + (retry_after_ms % 1000 != 0);
    return s == 0 ? 1 : s;
}

uint64_t fg_ratelimit_reset_s(const struct fg_ratelimit_result *res)
{
    if (!res->allowed)
        return fg_ratelimit_retry_after_s(res->retry_after_ms);
    return res->reset_ms / 1000 + (res->reset_ms % 1000 != 0);
}

/* snprintf that reports "did not fit" as 0. */
__attribute__((format(printf, 3, 4))) static size_t put(char *buf, size_t size, const char *fmt,
                                                        ...)
{
    if (size == 0)
        return 0;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size) {
        buf[0] = '\0';
        return 0;
    }
    return (size_t)n;
}

size_t fg_ratelimit_format_policy_item(char *buf, size_t size,
                                       const struct fg_ratelimit_limit *limit)
{
    uint64_t period = limit->period_us, q = limit->requests, w;
    if (period % 1000000 == 0) {
        w = period / 1000000;
    } else {
        /* The draft's window is whole seconds: widen to the next one and scale the quota
         * down to what that window really allows. */
        w = period / 1000000 + 1;
        q = (uint64_t)((unsigned __int128)q * (w * 1000000) / period);
    }
    return put(buf, size, "\"%s\";q=%" PRIu64 ";w=%" PRIu64, limit->name, q, w);
}

size_t fg_ratelimit_format_item(char *buf, size_t size, const struct fg_ratelimit_limit *limit,
                                const struct fg_ratelimit_result *res)
{
    return put(buf, size, "\"%s\";r=%" PRIu64 ";t=%" PRIu64, limit->name, res->remaining,
               fg_ratelimit_reset_s(res));
}

/* Append to buf at *len; false (and nothing appended) if it does not fit. */
__attribute__((format(printf, 4, 5))) static bool append(char *buf, size_t size, size_t *len,
                                                         const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, size - *len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size - *len)
        return false;
    *len += (size_t)n;
    return true;
}

size_t fg_ratelimit_format_headers(char *buf, size_t size, const struct fg_ratelimit_limit *limit,
                                   const struct fg_ratelimit_result *res,
                                   enum fg_ratelimit_header_style style)
{
    if (size == 0)
        return 0;
    size_t len = 0;
    bool ok = true;
    if (!res->allowed)
        ok = append(buf, size, &len, "Retry-After: %" PRIu64 "\r\n",
                    fg_ratelimit_retry_after_s(res->retry_after_ms));
    if (ok && (style & FG_RATELIMIT_HEADERS_DRAFT)) {
        char policy[FG_RATELIMIT_NAME_MAX + 64], item[FG_RATELIMIT_NAME_MAX + 64];
        ok = fg_ratelimit_format_policy_item(policy, sizeof(policy), limit) > 0 &&
             fg_ratelimit_format_item(item, sizeof(item), limit, res) > 0 &&
             append(buf, size, &len, "RateLimit-Policy: %s\r\nRateLimit: %s\r\n", policy, item);
    }
    if (ok && (style & FG_RATELIMIT_HEADERS_LEGACY))
        ok = append(buf, size, &len,
                    "RateLimit-Limit: %" PRIu64 "\r\nRateLimit-Remaining: %" PRIu64
                    "\r\nRateLimit-Reset: %" PRIu64 "\r\n",
                    limit->burst + 1, res->remaining, fg_ratelimit_reset_s(res));
    if (!ok) {
        buf[0] = '\0';
        return 0;
    }
    buf[len] = '\0';
    return len;
}
