/*
 * test_gcra.c — the GCRA decision as exact sequences: a burst then refusals, a steady rate
 * at exactly the emission interval, Retry-After and remaining values, costs above one, long
 * idle keys, huge clocks, per-minute rates and fractional emission intervals that must not
 * drift.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ratelimit/ratelimit.h"

#define S  UINT64_C(1000000)
#define MS UINT64_C(1000)

static struct fg_ratelimit_limit mk(uint64_t requests, uint64_t period_us, uint64_t burst)
{
    struct fg_ratelimit_limit l;
    char err[200];
    assert_true(fg_ratelimit_limit_init(&l, "test", requests, period_us, burst, FG_RATELIMIT_LOCAL,
                                        err, sizeof(err)));
    return l;
}

/* One decision against a key's stored TAT, storing the new one as the table does. */
static struct fg_ratelimit_result step(const struct fg_ratelimit_limit *l,
                                       struct fg_ratelimit_tat *tat, uint64_t cost, uint64_t now)
{
    struct fg_ratelimit_result r = fg_ratelimit_gcra(l, *tat, cost, now);
    if (r.allowed && cost > 0) {
        *tat = r.tat;
    } else {
        /* a refusal or a peek changes nothing */
        assert_int_equal(r.tat.us, tat->us);
        assert_int_equal(r.tat.frac, tat->frac);
    }
    return r;
}

static void assert_same(const struct fg_ratelimit_result *a, const struct fg_ratelimit_result *b)
{
    assert_int_equal(a->allowed, b->allowed);
    assert_int_equal(a->source, b->source);
    assert_int_equal(a->remaining, b->remaining);
    assert_int_equal(a->reset_ms, b->reset_ms);
    assert_int_equal(a->retry_after_ms, b->retry_after_ms);
    assert_int_equal(a->tat.us, b->tat.us);
    assert_int_equal(a->tat.frac, b->tat.frac);
}

static void test_burst_then_refusals(void **state)
{
    struct fg_ratelimit_limit l = mk(10, S, 4); /* 10 r/s: T = 100 ms; 5 at once */
    struct fg_ratelimit_tat tat = {0, 0};
    uint64_t t0 = 1000 * S;
    for (uint64_t i = 0; i < 5; i++) {
        struct fg_ratelimit_result r = step(&l, &tat, 1, t0);
        assert_true(r.allowed);
        assert_int_equal(r.remaining, 4 - i);
        assert_int_equal(r.reset_ms, 100 * (i + 1));
        assert_int_equal(r.retry_after_ms, 0);
        assert_int_equal(r.source, FG_RATELIMIT_SRC_LOCAL);
    }
    assert_int_equal(tat.us, t0 + 500 * MS);
    for (int i = 0; i < 3; i++) {
        struct fg_ratelimit_result r = step(&l, &tat, 1, t0);
        assert_false(r.allowed);
        assert_int_equal(r.remaining, 0);
        assert_int_equal(r.retry_after_ms, 100);
        assert_int_equal(r.reset_ms, 500);
    }
    /* one emission interval later exactly one more */
    assert_false(step(&l, &tat, 1, t0 + 100 * MS - 1).allowed);
    assert_true(step(&l, &tat, 1, t0 + 100 * MS).allowed);
    assert_false(step(&l, &tat, 1, t0 + 100 * MS).allowed);
}

static void test_steady_rate_at_emission_interval(void **state)
{
    struct fg_ratelimit_limit l = mk(50, S, 0); /* T = 20 ms */
    struct fg_ratelimit_tat tat = {0, 0};
    uint64_t t0 = 5 * S, T = 20 * MS;
    for (uint64_t k = 0; k < 1000; k++) {
        struct fg_ratelimit_result r = step(&l, &tat, 1, t0 + k * T);
        assert_true(r.allowed);
        assert_int_equal(r.remaining, 0);
        assert_int_equal(r.reset_ms, 20);
        /* one microsecond before the next slot is too early, by 1 µs -> 1 ms */
        r = step(&l, &tat, 1, t0 + (k + 1) * T - 1);
        assert_false(r.allowed);
        assert_int_equal(r.retry_after_ms, 1);
    }
}

static void test_retry_after_values(void **state)
{
    struct fg_ratelimit_limit l = mk(1, S, 0); /* 1 r/s */
    struct fg_ratelimit_tat tat = {0, 0};
    uint64_t t0 = 77 * S;
    assert_true(step(&l, &tat, 1, t0).allowed);
    assert_int_equal(step(&l, &tat, 1, t0).retry_after_ms, 1000);
    assert_int_equal(step(&l, &tat, 1, t0 + 1).retry_after_ms, 1000);   /* 999999 µs */
    assert_int_equal(step(&l, &tat, 1, t0 + 1000).retry_after_ms, 999); /* exact ms */
    assert_int_equal(step(&l, &tat, 1, t0 + 999000).retry_after_ms, 1); /* 1000 µs */
    assert_int_equal(step(&l, &tat, 1, t0 + 999999).retry_after_ms, 1); /* 1 µs */
    assert_true(step(&l, &tat, 1, t0 + S).allowed);

    /* 7 r/m: T = 8571428.57 µs, rounded up to 8572 ms */
    struct fg_ratelimit_limit m = mk(7, 60 * S, 0);
    struct fg_ratelimit_tat t2 = {0, 0};
    assert_true(step(&m, &t2, 1, t0).allowed);
    struct fg_ratelimit_result r = step(&m, &t2, 1, t0);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_ms, 8572);
    assert_int_equal(r.reset_ms, 8572);
    assert_false(step(&m, &t2, 1, t0 + 8571428).allowed); /* 0.57 µs short */
    assert_true(step(&m, &t2, 1, t0 + 8571429).allowed);
}

static void test_remaining_counts(void **state)
{
    struct fg_ratelimit_limit l = mk(1, S, 9); /* 10 at once, 1 back per second */
    struct fg_ratelimit_tat tat = {0, 0};
    uint64_t t0 = 3 * S;
    /* a peek (cost 0) consumes nothing and reports the whole budget */
    struct fg_ratelimit_result r = step(&l, &tat, 0, t0);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 10);
    assert_int_equal(r.reset_ms, 0);
    for (int i = 0; i < 4; i++)
        r = step(&l, &tat, 1, t0);
    assert_int_equal(r.remaining, 6);
    assert_int_equal(r.reset_ms, 4000);
    /* 1.5 s later 1.5 came back: 4 - 1.5 = 2.5 used, +1 = 3.5, so 6 whole ones left */
    r = step(&l, &tat, 1, t0 + 1500 * MS);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 6);
    assert_int_equal(r.reset_ms, 3500);
    r = step(&l, &tat, 0, t0 + 1500 * MS);
    assert_int_equal(r.remaining, 6);
    assert_int_equal(tat.us, t0 + 1500 * MS + 3500 * MS);
}

static void test_cost_above_one(void **state)
{
    struct fg_ratelimit_limit l = mk(10, S, 9); /* T = 100 ms, 10 at once */
    struct fg_ratelimit_tat tat = {0, 0};
    uint64_t t0 = 9 * S;
    struct fg_ratelimit_result r = step(&l, &tat, 4, t0);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 6);
    r = step(&l, &tat, 4, t0);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 2);
    r = step(&l, &tat, 4, t0);
    assert_false(r.allowed);
    assert_int_equal(r.remaining, 2); /* a cost-1 request would still pass */
    assert_int_equal(r.retry_after_ms, 200);
    r = step(&l, &tat, 2, t0);
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 0);
    assert_int_equal(r.reset_ms, 1000);
    /* 200 ms later a cost of 2 fits again, a cost of 3 does not */
    assert_false(step(&l, &tat, 3, t0 + 200 * MS).allowed);
    assert_true(step(&l, &tat, 2, t0 + 200 * MS).allowed);

    /* more than a whole budget never passes, even on a fresh key */
    struct fg_ratelimit_tat fresh = {0, 0};
    r = step(&l, &fresh, 11, t0);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_ms, 1);
    assert_int_equal(r.remaining, 10);
    r = step(&l, &tat, 11, t0 + 200 * MS);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_ms, r.reset_ms); /* "when full" */
    assert_int_equal(r.reset_ms, 1000);
}

static void test_long_idle_is_fresh(void **state)
{
    struct fg_ratelimit_limit l = mk(5, S, 2);
    struct fg_ratelimit_tat tat = {0, 0};
    uint64_t t0 = 10 * S;
    while (step(&l, &tat, 1, t0).allowed)
        ;
    uint64_t later = t0 + 3 * 86400 * S; /* three days */
    struct fg_ratelimit_result idle = fg_ratelimit_gcra(&l, tat, 1, later);
    struct fg_ratelimit_result fresh =
        fg_ratelimit_gcra(&l, (struct fg_ratelimit_tat){0, 0}, 1, later);
    assert_same(&idle, &fresh);
    assert_true(idle.allowed);
    assert_int_equal(idle.remaining, 2);
}

/* The same burst sequence at any absolute time, up to 2^63, and no wrap near the top. */
static void test_large_times(void **state)
{
    struct fg_ratelimit_limit l = mk(10, S, 4);
    uint64_t bases[] = {0, 1, UINT64_C(1) << 40, UINT64_C(1) << 62, (UINT64_C(1) << 63) - S};
    for (size_t b = 0; b < sizeof(bases) / sizeof(bases[0]); b++) {
        struct fg_ratelimit_tat tat = {0, 0};
        uint64_t t0 = bases[b];
        for (uint64_t i = 0; i < 5; i++) {
            struct fg_ratelimit_result r = step(&l, &tat, 1, t0);
            assert_true(r.allowed);
            assert_int_equal(r.remaining, 4 - i);
        }
        assert_int_equal(tat.us, t0 + 500 * MS);
        assert_false(step(&l, &tat, 1, t0 + 99999).allowed);
        assert_true(step(&l, &tat, 1, t0 + 100 * MS).allowed);
    }
    /* At the very top the TAT saturates instead of wrapping to a tiny value. */
    struct fg_ratelimit_tat tat = {0, 0};
    struct fg_ratelimit_result r = step(&l, &tat, 1, UINT64_MAX - 5);
    assert_true(r.allowed);
    assert_int_equal(tat.us, UINT64_MAX);
    r = fg_ratelimit_gcra(&l, tat, 1, UINT64_MAX - 5);
    assert_true(r.allowed); /* still counted, not reset to a far-past value */
    assert_int_equal(r.remaining, 4 - 1);
}

static void test_rate_per_minute(void **state)
{
    struct fg_ratelimit_limit l = mk(600, 60 * S, 0); /* 600 r/m: T = 100 ms */
    struct fg_ratelimit_tat tat = {0, 0};
    uint64_t t0 = 60 * S;
    assert_true(step(&l, &tat, 1, t0).allowed);
    struct fg_ratelimit_result r = step(&l, &tat, 1, t0 + 99999);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_ms, 1);
    assert_true(step(&l, &tat, 1, t0 + 100 * MS).allowed);

    struct fg_ratelimit_limit one = mk(1, 60 * S, 0); /* 1 r/m */
    struct fg_ratelimit_tat t1 = {0, 0};
    assert_true(step(&one, &t1, 1, t0).allowed);
    r = step(&one, &t1, 1, t0);
    assert_int_equal(r.retry_after_ms, 60000);
    r = step(&one, &t1, 1, t0 + 59 * S);
    assert_int_equal(r.retry_after_ms, 1000);
    assert_true(step(&one, &t1, 1, t0 + 60 * S).allowed);
}

/* 3 per millisecond: T = 333.33 µs. Polled every µs for a second with burst 1, exactly
 * 2 + 3000 pass. Rounding T to 333 µs would let 3005 through, 334 µs only 2996. */
static void test_fractional_interval_exact(void **state)
{
    struct fg_ratelimit_limit l = mk(3, 1000, 1);
    struct fg_ratelimit_tat tat = {0, 0};
    uint64_t t0 = 123 * S, allowed = 0;
    for (uint64_t t = 0; t <= S; t++)
        allowed += step(&l, &tat, 1, t0 + t).allowed;
    assert_int_equal(allowed, 3002);
}

/* 7 r/m over a day, polled every second: 2 + 7 * 1440, the last one exactly at 24:00. */
static void test_no_drift_over_a_day(void **state)
{
    struct fg_ratelimit_limit l = mk(7, 60 * S, 1);
    struct fg_ratelimit_tat tat = {0, 0};
    uint64_t t0 = 42 * S, allowed = 0, last = 0;
    for (uint64_t s = 0; s <= 86400; s++) {
        if (step(&l, &tat, 1, t0 + s * S).allowed) {
            allowed++;
            last = s;
        }
    }
    assert_int_equal(allowed, 2 + 7 * 1440);
    assert_int_equal(last, 86400);
}

static void test_odd_stored_states(void **state)
{
    struct fg_ratelimit_limit l = mk(10, S, 4); /* T = 100 ms, capacity 500 ms */
    uint64_t now = 50 * S;
    /* A TAT further ahead than the capacity: this reader's clock is older than the writer's
     * (threads race), or a reload lowered the limit. An empty budget, never a fresh one. */
    struct fg_ratelimit_tat far = {now + 3600 * S, 0};
    struct fg_ratelimit_result r = fg_ratelimit_gcra(&l, far, 1, now);
    assert_false(r.allowed);
    assert_int_equal(r.remaining, 0);
    assert_int_equal(r.retry_after_ms, 100);
    assert_int_equal(r.tat.us, far.us);
    struct fg_ratelimit_tat just = {now + 500 * MS + 1, 0};
    assert_false(fg_ratelimit_gcra(&l, just, 1, now).allowed);
    r = fg_ratelimit_gcra(&l, just, 0, now); /* a peek sees an empty budget, stores nothing */
    assert_true(r.allowed);
    assert_int_equal(r.remaining, 0);
    assert_int_equal(r.tat.us, just.us);
    /* Exactly at the edge it is honoured as it is. */
    struct fg_ratelimit_tat edge = {now + 500 * MS, 0};
    r = fg_ratelimit_gcra(&l, edge, 1, now);
    assert_false(r.allowed);
    assert_int_equal(r.retry_after_ms, 100);
    assert_true(fg_ratelimit_gcra(&l, edge, 1, now + 100 * MS).allowed);
    /* A fraction from another limit's denominator is clamped, not trusted. */
    struct fg_ratelimit_tat odd = {now + 100 * MS, 4000000000u};
    r = fg_ratelimit_gcra(&l, odd, 1, now);
    assert_true(r.allowed);
    assert_int_equal(r.tat.us, now + 200 * MS);
    assert_true(r.tat.frac < 10);
    /* A TAT at now with a fraction left is not yet in the past. */
    struct fg_ratelimit_limit three = mk(3, 1000, 0);
    struct fg_ratelimit_tat f = {now, 2};
    assert_false(fg_ratelimit_gcra(&three, f, 1, now).allowed);
    assert_true(fg_ratelimit_gcra(&three, f, 1, now + 1).allowed);
}

static void test_limit_init_validation(void **state)
{
    struct fg_ratelimit_limit l;
    char err[200];
    assert_false(fg_ratelimit_limit_init(&l, "", 1, S, 0, FG_RATELIMIT_LOCAL, err, sizeof(err)));
    assert_false(fg_ratelimit_limit_init(&l, "a b", 1, S, 0, FG_RATELIMIT_LOCAL, err, sizeof(err)));
    assert_false(fg_ratelimit_limit_init(&l, "a:b", 1, S, 0, FG_RATELIMIT_LOCAL, err, sizeof(err)));
    assert_non_null(strstr(err, "invalid limit name"));
    char long_name[80];
    memset(long_name, 'x', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    assert_false(
        fg_ratelimit_limit_init(&l, long_name, 1, S, 0, FG_RATELIMIT_LOCAL, err, sizeof(err)));
    assert_false(fg_ratelimit_limit_init(&l, "r", 0, S, 0, FG_RATELIMIT_LOCAL, err, sizeof(err)));
    assert_false(fg_ratelimit_limit_init(&l, "r", UINT64_C(1) << 32, S, 0, FG_RATELIMIT_LOCAL, err,
                                         sizeof(err)));
    assert_false(fg_ratelimit_limit_init(&l, "r", 1, 0, 0, FG_RATELIMIT_LOCAL, err, sizeof(err)));
    assert_false(fg_ratelimit_limit_init(&l, "r", 1, 86400 * S, UINT64_C(1) << 40,
                                         FG_RATELIMIT_LOCAL, err, sizeof(err)));
    assert_non_null(strstr(err, "too large"));
    assert_false(
        fg_ratelimit_limit_init(&l, "r", 1, S, UINT64_MAX, FG_RATELIMIT_LOCAL, err, sizeof(err)));
    assert_true(fg_ratelimit_limit_init(&l, "per_ip-v2.1", UINT32_MAX, S, 1000000,
                                        FG_RATELIMIT_REDIS, err, sizeof(err)));
    assert_string_equal(l.name, "per_ip-v2.1");
    assert_int_equal(l.name_len, 11);
    assert_int_equal(l.capacity, 1000001 * S);
    assert_int_equal(l.backend, FG_RATELIMIT_REDIS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_refusals),
        cmocka_unit_test(test_steady_rate_at_emission_interval),
        cmocka_unit_test(test_retry_after_values),
        cmocka_unit_test(test_remaining_counts),
        cmocka_unit_test(test_cost_above_one),
        cmocka_unit_test(test_long_idle_is_fresh),
        cmocka_unit_test(test_large_times),
        cmocka_unit_test(test_rate_per_minute),
        cmocka_unit_test(test_fractional_interval_exact),
        cmocka_unit_test(test_no_drift_over_a_day),
        cmocka_unit_test(test_odd_stored_states),
        cmocka_unit_test(test_limit_init_validation),
    };
    return cmocka_run_group_tests_name("ratelimit gcra", tests, NULL, NULL);
}
