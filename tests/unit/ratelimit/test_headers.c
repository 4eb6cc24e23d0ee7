/*
 * test_headers.c — Retry-After and the RateLimit fields, byte for byte: the draft pair,
 * the legacy trio, refusals, periods that are not whole seconds, and buffers too small.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ratelimit/ratelimit.h"

#define S UINT64_C(1000000)

static struct fg_ratelimit_limit mk(const char *name, uint64_t requests, uint64_t period_us,
                                    uint64_t burst)
{
    struct fg_ratelimit_limit l;
    char err[200];
    assert_true(fg_ratelimit_limit_init(&l, name, requests, period_us, burst, FG_RATELIMIT_LOCAL,
                                        err, sizeof(err)));
    return l;
}

static struct fg_ratelimit_result allowed(uint64_t remaining, uint64_t reset_ms)
{
    return (struct fg_ratelimit_result){
        .allowed = true, .remaining = remaining, .reset_ms = reset_ms};
}

static struct fg_ratelimit_result refused(uint64_t retry_ms, uint64_t reset_ms)
{
    return (struct fg_ratelimit_result){
        .allowed = false, .retry_after_ms = retry_ms, .reset_ms = reset_ms};
}

static void test_retry_after_rounding(void **state)
{
    assert_int_equal(fg_ratelimit_retry_after_s(0), 1);
    assert_int_equal(fg_ratelimit_retry_after_s(1), 1);
    assert_int_equal(fg_ratelimit_retry_after_s(999), 1);
    assert_int_equal(fg_ratelimit_retry_after_s(1000), 1);
    assert_int_equal(fg_ratelimit_retry_after_s(1001), 2);
    assert_int_equal(fg_ratelimit_retry_after_s(60000), 60);
    assert_int_equal(fg_ratelimit_retry_after_s(UINT64_MAX), UINT64_MAX / 1000 + 1);
}

static void test_reset_seconds(void **state)
{
    struct fg_ratelimit_result a = allowed(3, 0);
    assert_int_equal(fg_ratelimit_reset_s(&a), 0);
    a.reset_ms = 1;
    assert_int_equal(fg_ratelimit_reset_s(&a), 1);
    a.reset_ms = 2500;
    assert_int_equal(fg_ratelimit_reset_s(&a), 3);
    /* refused: the Retry-After value, even if the budget is full only later */
    struct fg_ratelimit_result r = refused(100, 9000);
    assert_int_equal(fg_ratelimit_reset_s(&r), 1);
}

static void test_draft_fields(void **state)
{
    struct fg_ratelimit_limit l = mk("per_ip", 50, S, 100);
    struct fg_ratelimit_result a = allowed(42, 2500);
    char buf[FG_RATELIMIT_HEADERS_MAX];
    size_t n = fg_ratelimit_format_headers(buf, sizeof(buf), &l, &a, FG_RATELIMIT_HEADERS_DRAFT);
    const char *want = "RateLimit-Policy: \"per_ip\";q=50;w=1\r\n"
                       "RateLimit: \"per_ip\";r=42;t=3\r\n";
    assert_string_equal(buf, want);
    assert_int_equal(n, strlen(want));

    struct fg_ratelimit_result r = refused(1500, 2000);
    n = fg_ratelimit_format_headers(buf, sizeof(buf), &l, &r, FG_RATELIMIT_HEADERS_DRAFT);
    want = "Retry-After: 2\r\n"
           "RateLimit-Policy: \"per_ip\";q=50;w=1\r\n"
           "RateLimit: \"per_ip\";r=0;t=2\r\n";
    assert_string_equal(buf, want);
    assert_int_equal(n, strlen(want));
}

static void test_legacy_fields(void **state)
{
    struct fg_ratelimit_limit l = mk("api", 600, 60 * S, 19);
    struct fg_ratelimit_result a = allowed(7, 1200);
    char buf[FG_RATELIMIT_HEADERS_MAX];
    fg_ratelimit_format_headers(buf, sizeof(buf), &l, &a, FG_RATELIMIT_HEADERS_LEGACY);
    assert_string_equal(buf, "RateLimit-Limit: 20\r\n"
                             "RateLimit-Remaining: 7\r\n"
                             "RateLimit-Reset: 2\r\n");
    struct fg_ratelimit_result r = refused(100, 2000);
    fg_ratelimit_format_headers(buf, sizeof(buf), &l, &r, FG_RATELIMIT_HEADERS_BOTH);
    assert_string_equal(buf, "Retry-After: 1\r\n"
                             "RateLimit-Policy: \"api\";q=600;w=60\r\n"
                             "RateLimit: \"api\";r=0;t=1\r\n"
                             "RateLimit-Limit: 20\r\n"
                             "RateLimit-Remaining: 0\r\n"
                             "RateLimit-Reset: 1\r\n");
    /* NONE writes only Retry-After, and nothing at all when allowed */
    assert_true(fg_ratelimit_format_headers(buf, sizeof(buf), &l, &r, FG_RATELIMIT_HEADERS_NONE) >
                0);
    assert_string_equal(buf, "Retry-After: 1\r\n");
    assert_int_equal(
        fg_ratelimit_format_headers(buf, sizeof(buf), &l, &a, FG_RATELIMIT_HEADERS_NONE), 0);
    assert_string_equal(buf, "");
}

static void test_policy_items(void **state)
{
    char buf[128];
    struct fg_ratelimit_limit l = mk("m", 600, 60 * S, 0);
    assert_int_equal(fg_ratelimit_format_policy_item(buf, sizeof(buf), &l), 14);
    assert_string_equal(buf, "\"m\";q=600;w=60");
    /* 3 per 1.5 s: a 2 s window holds at most 4 */
    l = mk("odd", 3, 1500000, 0);
    fg_ratelimit_format_policy_item(buf, sizeof(buf), &l);
    assert_string_equal(buf, "\"odd\";q=4;w=2");
    /* 5 per 100 ms: in 1 s, 50 */
    l = mk("fast", 5, 100000, 0);
    fg_ratelimit_format_policy_item(buf, sizeof(buf), &l);
    assert_string_equal(buf, "\"fast\";q=50;w=1");
    /* the largest rate over the shortest period does not overflow */
    l = mk("huge", UINT32_MAX, 1, 0);
    fg_ratelimit_format_policy_item(buf, sizeof(buf), &l);
    assert_string_equal(buf, "\"huge\";q=4294967295000000;w=1");
    struct fg_ratelimit_result a = allowed(12, 30000);
    fg_ratelimit_format_item(buf, sizeof(buf), &l, &a);
    assert_string_equal(buf, "\"huge\";r=12;t=30");
}

static void test_small_buffers(void **state)
{
    struct fg_ratelimit_limit l = mk("per_ip", 50, S, 100);
    struct fg_ratelimit_result r = refused(1500, 2000);
    char full[FG_RATELIMIT_HEADERS_MAX];
    size_t need =
        fg_ratelimit_format_headers(full, sizeof(full), &l, &r, FG_RATELIMIT_HEADERS_BOTH);
    assert_true(need > 0);
    for (size_t size = 0; size <= need; size++) {
        char buf[FG_RATELIMIT_HEADERS_MAX + 8];
        memset(buf, 'Z', sizeof(buf));
        size_t n = fg_ratelimit_format_headers(buf, size, &l, &r, FG_RATELIMIT_HEADERS_BOTH);
        assert_int_equal(n, 0); /* the NUL needs one more byte */
        if (size > 0)
            assert_int_equal(buf[0], '\0');
        for (size_t i = size; i < sizeof(buf); i++)
            assert_int_equal(buf[i], 'Z'); /* nothing written past size */
    }
    char exact[FG_RATELIMIT_HEADERS_MAX];
    assert_int_equal(
        fg_ratelimit_format_headers(exact, need + 1, &l, &r, FG_RATELIMIT_HEADERS_BOTH), need);
    assert_string_equal(exact, full);
    char tiny[4];
    assert_int_equal(fg_ratelimit_format_policy_item(tiny, sizeof(tiny), &l), 0);
    assert_int_equal(fg_ratelimit_format_item(tiny, sizeof(tiny), &l, &r), 0);
}

/* The longest name and largest numbers still fit in FG_RATELIMIT_HEADERS_MAX. */
static void test_max_size(void **state)
{
    char name[FG_RATELIMIT_NAME_MAX];
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    struct fg_ratelimit_limit l = mk(name, UINT32_MAX, 1, 0);
    l.burst = UINT64_MAX - 1;
    struct fg_ratelimit_result r = {.allowed = false,
                                    .remaining = UINT64_MAX,
                                    .retry_after_ms = UINT64_MAX,
                                    .reset_ms = UINT64_MAX};
    char buf[FG_RATELIMIT_HEADERS_MAX];
    assert_true(fg_ratelimit_format_headers(buf, sizeof(buf), &l, &r, FG_RATELIMIT_HEADERS_BOTH) >
                0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_after_rounding),
        cmocka_unit_test(test_reset_seconds),
        cmocka_unit_test(test_draft_fields),
        cmocka_unit_test(test_legacy_fields),
        cmocka_unit_test(test_policy_items),
        cmocka_unit_test(test_small_buffers),
        cmocka_unit_test(test_max_size),
    };
    return cmocka_run_group_tests_name("ratelimit headers", tests, NULL, NULL);
}
