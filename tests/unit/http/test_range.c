/*
 * test_range.c — Range and If-Range (range.c, RFC 9110 §14 and §13.1.5): parsing every
 * range form, what makes a set one to ignore, resolution against a length (clamping,
 * suffixes, unsatisfiable ranges), overlaps, and the strong / date comparisons.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http/http.h"

#define S(lit) (lit), (sizeof(lit) - 1)

static size_t parse(const char *s, struct fg_http_range *r, size_t max)
{
    size_t n = 99;
    if (!fg_http_parse_ranges(s, strlen(s), r, max, &n))
        return 0;
    return n;
}

static void test_forms(void **state)
{
    (void)state;
    struct fg_http_range r[8];
    assert_int_equal(parse("bytes=0-499", r, 8), 1);
    assert_false(r[0].suffix);
    assert_int_equal(r[0].first, 0);
    assert_int_equal(r[0].last, 499);
    assert_int_equal(parse("bytes=9500-", r, 8), 1);
    assert_int_equal(r[0].first, 9500);
    assert_true(r[0].last == UINT64_MAX);
    assert_int_equal(parse("bytes=-500", r, 8), 1);
    assert_true(r[0].suffix);
    assert_int_equal(r[0].last, 500);
    assert_int_equal(parse("BYTES=0-0, -1 ,,5-6", r, 8), 3);
    assert_int_equal(r[2].first, 5);
    assert_int_equal(r[2].last, 6);
}

static void test_sets_to_ignore(void **state)
{
    (void)state;
    struct fg_http_range r[4];
    const char *bad[] = {"",
                         "bytes=",
                         "bytes=,",
                         "items=0-1",
                         "bytes 0-1",
                         "bytes=1-0",
                         "bytes=a-1",
                         "bytes=-",
                         "bytes=0-1;",
                         "bytes=--1",
                         "bytes=0-1 2-3",
                         "bytes=1",
                         "bytes=99999999999999999999-",
                         "bytes=0-1,2-3,4-5,6-7,8-9"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse(bad[i], r, 4) != 0)
            fail_msg("accepted '%s'", bad[i]);
    }
}

static void test_resolve(void **state)
{
    (void)state;
    struct fg_http_range r[8];
    size_t n = parse("bytes=0-0,5-,-3,10-20,-100,100-,-0", r, 8);
    assert_int_equal(n, 7);
    n = fg_http_ranges_resolve(r, n, 12);
    assert_int_equal(n, 5); /* 100- and -0 select nothing */
    uint64_t want[][2] = {{0, 0}, {5, 11}, {9, 11}, {10, 11}, {0, 11}};
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(r[i].first, want[i][0]);
        assert_int_equal(r[i].last, want[i][1]);
    }
    assert_true(fg_http_ranges_overlap(r, n));
    n = parse("bytes=0-1,4-6,-2", r, 8);
    assert_int_equal(fg_http_ranges_resolve(r, n, 100), 3);
    assert_false(fg_http_ranges_overlap(r, 3));
    n = parse("bytes=0-", r, 8);
    assert_int_equal(fg_http_ranges_resolve(r, n, 0), 0); /* an empty body: nothing fits */
}

static void test_if_range(void **state)
{
    (void)state;
    int64_t lm = 1700000000; /* Tue, 14 Nov 2023 22:13:20 GMT */
    assert_true(fg_http_if_range_matches(S("\"v1\""), "\"v1\"", lm));
    assert_true(fg_http_if_range_matches(S(" \"v1\" "), "\"v1\"", -1));
    assert_false(fg_http_if_range_matches(S("\"v2\""), "\"v1\"", lm));
    assert_false(fg_http_if_range_matches(S("W/\"v1\""), "\"v1\"", lm)); /* weak: never */
    assert_false(fg_http_if_range_matches(S("W/\"v1\""), "W/\"v1\"", lm));
    assert_false(fg_http_if_range_matches(S("\"v1\""), "W/\"v1\"", lm));
    assert_false(fg_http_if_range_matches(S("\"v1\""), "", lm));
    assert_true(fg_http_if_range_matches(S("Tue, 14 Nov 2023 22:13:20 GMT"), "", lm));
    assert_false(fg_http_if_range_matches(S("Tue, 14 Nov 2023 22:13:21 GMT"), "", lm));
    assert_false(fg_http_if_range_matches(S("Tue, 14 Nov 2023 22:13:20 GMT"), "", -1));
    assert_false(fg_http_if_range_matches(S("yesterday"), "", lm));
    assert_false(fg_http_if_range_matches(S(""), "\"v1\"", lm));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_sets_to_ignore),
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_if_range),
    };
    return cmocka_run_group_tests_name("http range", tests, NULL, NULL);
}
