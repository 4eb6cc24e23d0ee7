/*
 * gcra.c — limits and the GCRA decision.
 *
 * Units. With n = requests and P = period_us, the emission interval is T = P / n µs. The
 * decision works in "ticks" of 1/n µs, where T is exactly P ticks and the tolerance
 * (burst + 1) * T is exactly capacity = (burst + 1) * P ticks. Only the distance between
 * the TAT and now is ever scaled to ticks, and that distance is bounded by the capacity
 * (< 2^52), so nothing overflows however large the absolute times are. The Redis script
 * in redis.c is this same function, plus one rule its wall clock needs (see there).
 */
#include "ratelimit/ratelimit.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static bool valid_name(const char *s, size_t n)
{
    if (n == 0 || n >= FG_RATELIMIT_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

bool fg_ratelimit_limit_init(struct fg_ratelimit_limit *l, const char *name, uint64_t requests,
                             uint64_t period_us, uint64_t burst, enum fg_ratelimit_backend backend,
                             char *err, size_t errlen)
{
    memset(l, 0, sizeof(*l));
    size_t n = name != NULL ? strlen(name) : 0;
    if (!valid_name(name, n)) {
        snprintf(err, errlen,
                 "invalid limit name '%.64s' (letters, digits, '_', '-', '.'; at most %d "
                 "characters)",
                 name != NULL ? name : "", FG_RATELIMIT_NAME_MAX - 1);
        return false;
    }
    if (requests == 0 || requests > UINT32_MAX) {
        snprintf(err, errlen, "limit '%s': the rate must be 1 to %" PRIu32 " requests per period",
                 name, UINT32_MAX);
        return false;
    }
    if (period_us == 0) {
        snprintf(err, errlen, "limit '%s': the period must not be zero", name);
        return false;
    }
    uint64_t capacity;
    if (burst >= FG_RATELIMIT_CAPACITY_MAX ||
        __builtin_mul_overflow(burst + 1, period_us, &capacity) ||
        capacity >= FG_RATELIMIT_CAPACITY_MAX) {
        snprintf(err, errlen,
                 "limit '%s': burst %" PRIu64 " over a period of %" PRIu64
                 " us is too large ((burst + 1) x period must stay below 142 years)",
                 name, burst, period_us);
        return false;
    }
    memcpy(l->name, name, n + 1);
    l->name_len = n;
    l->requests = requests;
    l->period_us = period_us;
    l->burst = burst;
    l->capacity = capacity;
    l->backend = backend;
    return true;
}

static inline uint64_t ceil_div(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

struct fg_ratelimit_result fg_ratelimit_gcra(const struct fg_ratelimit_limit *l,
                                             struct fg_ratelimit_tat tat, uint64_t cost,
                                             uint64_t now_us)
{
    const uint64_t n = l->requests, period = l->period_us, capacity = l->capacity;
    const uint64_t ms_ticks = n * 1000; /* ticks per millisecond; n < 2^32: no overflow */
    struct fg_ratelimit_result res = {.source = FG_RATELIMIT_SRC_LOCAL, .tat = tat};

    /* ahead: how far the TAT is past now, in ticks; 0 for a TAT at or before now (a
     * full budget). It can exceed the capacity only if this call's clock reading is older
     * than the one that wrote the TAT (threads race between reading the clock and taking
     * the shard lock) or if a reload lowered the limit: that is an empty budget, so it is
     * clamped, never taken as a fresh key. Only the distance is scaled to ticks, and only
     * once it is known to be at most the capacity, so nothing can overflow. */
    uint64_t ahead = 0;
    if (tat.us >= now_us) {
        if (tat.us - now_us > capacity / n) {
            ahead = capacity;
        } else {
            uint64_t frac = tat.frac < n ? tat.frac : n - 1;
            ahead = (tat.us - now_us) * n + frac;
            if (ahead > capacity)
                ahead = capacity;
        }
    }

    uint64_t after = ahead; /* the distance once this request is counted */
    if (cost > l->burst + 1) {
        /* More than a full budget: never allowed. The best advice is "when full". */
        res.retry_after_ms = ceil_div(ahead, ms_ticks);
        if (res.retry_after_ms == 0)
            res.retry_after_ms = 1;
    } else {
        uint64_t need = ahead + cost * period; /* <= 2 * capacity < 2^53 */
        if (need > capacity) {
            res.retry_after_ms = ceil_div(need - capacity, ms_ticks);
        } else {
            res.allowed = true;
            after = need;
            if (cost > 0) { /* a peek leaves the TAT as it is */
                uint64_t whole = after / n;
                res.tat.us = whole > UINT64_MAX - now_us ? UINT64_MAX : now_us + whole;
                res.tat.frac = (uint32_t)(after % n);
            }
        }
    }
    res.remaining = (capacity - after) / period;
    res.reset_ms = ceil_div(after, ms_ticks);
    return res;
}
