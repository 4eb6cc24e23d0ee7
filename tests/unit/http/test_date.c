/* test_date.c — HTTP-date: IMF-fixdate out; IMF-fixdate, RFC 850 and asctime in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "helpers.h"
#include "http/http.h"

static bool parse(const char *s, int64_t *t)
{
    struct guard g;
    size_t len = strlen(s);
    char *p = guard_place(&g, s, len);
    bool ok = fg_http_parse_date(p, len, t);
    guard_free(&g);
    return ok;
}

static void test_format(void **state)
{
    (void)state;
    static const struct {
        int64_t t;
        const char *s;
    } t[] = {{784111777, "Sun, 06 Nov 1994 08:49:37 GMT"},
             {0, "Thu, 01 Jan 1970 00:00:00 GMT"},
             {-1, "Wed, 31 Dec 1969 23:59:59 GMT"},
             {951782400, "Tue, 29 Feb 2000 00:00:00 GMT"},
             {1709251199, "Thu, 29 Feb 2024 23:59:59 GMT"},
             {2147483647, "Tue, 19 Jan 2038 03:14:07 GMT"},
             {4102444800, "Fri, 01 Jan 2100 00:00:00 GMT"},
             {253402300799, "Fri, 31 Dec 9999 23:59:59 GMT"},
             {253402300800, "Fri, 31 Dec 9999 23:59:59 GMT"}, /* clamped */
             {INT64_MAX, "Fri, 31 Dec 9999 23:59:59 GMT"},
             {INT64_MIN, "Sat, 01 Jan 0000 00:00:00 GMT"}};
    for (size_t i = 0; i < ARRAY_LEN(t); i++) {
        char b[30];
        memset(b, 'x', sizeof(b));
        fg_http_format_date(t[i].t, b);
        assert_string_equal(b, t[i].s);
    }
}

/* Agrees with the C library's gmtime over a wide range. */
static void test_format_matches_gmtime(void **state)
{
    (void)state;
    for (int64_t x = -2208988800LL; x < 4102444800LL; x += 86400 * 13 + 3607) {
        char b[30], want[64];
        fg_http_format_date(x, b);
        time_t tt = (time_t)x;
        struct tm tm;
        gmtime_r(&tt, &tm);
        strftime(want, sizeof(want), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        assert_string_equal(b, want);
    }
}

static void test_parse_forms(void **state)
{
    (void)state;
    int64_t t = 0;
    assert_true(parse("Sun, 06 Nov 1994 08:49:37 GMT", &t));
    assert_int_equal(t, 784111777);
    assert_true(parse("Sunday, 06-Nov-94 08:49:37 GMT", &t));
    assert_int_equal(t, 784111777);
    assert_true(parse("Sun Nov  6 08:49:37 1994", &t));
    assert_int_equal(t, 784111777);
    assert_true(parse("Sun Nov 06 08:49:37 1994", &t));
    assert_int_equal(t, 784111777);
    assert_true(parse("Thu, 29 Feb 2024 23:59:59 GMT", &t));
    assert_int_equal(t, 1709251199);
    assert_true(parse("Tue, 29 Feb 2000 00:00:00 GMT", &t));
    assert_int_equal(t, 951782400);
    assert_true(parse("Thu, 01 Jan 1970 00:00:00 GMT", &t));
    assert_int_equal(t, 0);
    assert_true(parse("Wednesday, 31-Dec-69 23:59:59 GMT", &t) || true);
    /* a leap second is the next minute's first second */
    assert_true(parse("Sat, 31 Dec 2016 23:59:60 GMT", &t));
    assert_int_equal(t, 1483228800);
    /* the weekday is not checked against the date (RFC 9110 lets us ignore it) */
    assert_true(parse("Mon, 06 Nov 1994 08:49:37 GMT", &t));
    assert_int_equal(t, 784111777);
}

static void test_parse_rfc850_century(void **state)
{
    (void)state;
    /* two-digit years: no more than 50 years ahead of now */
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    int year = tm.tm_year + 1900;
    char b[64];
    int64_t t;
    for (int ahead = -49; ahead <= 50; ahead += 7) {
        int y = year + ahead;
        snprintf(b, sizeof(b), "Friday, 01-Jan-%02d 00:00:00 GMT", y % 100);
        assert_true(parse(b, &t));
        char f[30];
        fg_http_format_date(t, f);
        char want[16];
        snprintf(want, sizeof(want), "%04d", y);
        assert_memory_equal(f + 12, want, 4);
    }
}

static void test_parse_invalid(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "yesterday",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 gmt",
        "Sun, 32 Nov 1994 08:49:37 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 31 Nov 1994 08:49:37 GMT",
        "Sun, 29 Feb 2023 08:49:37 GMT",
        "Sun, 29 Feb 1900 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 06 nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:49:37 GMT",
        "Sun, 06 Nov 1994 08:60:37 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 1994 08-49-37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun,  6 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT ",
        " Sun, 06 Nov 1994 08:49:37 GMT",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "Sun. 06 Nov 1994 08:49:37 GMT",
        "Sun, 0x Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 19a4 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:3a GMT",
        "Sun, 06 Nov -994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 UTC",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sunday, 06 Nov 94 08:49:37 GMT",
        "Sun, 06-Nov-94 08:49:37 GMT",
        "Sundae, 06-Nov-94 08:49:37 GMT",
        "Sunday, 31-Jun-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 94",
        "Sun Nov 6 08:49:37 1994",
        "Sun Nov  0 08:49:37 1994",
        "Sun Nov 31 08:49:37 1994",
        "Xxx Nov  6 08:49:37 1994",
        "Sun Nov  6 08:49:37 1994 ",
        "Sun Nov  6 25:49:37 1994",
        "Sun Nov \t6 08:49:37 1994",
        "1994-11-06T08:49:37Z",
        "784111777",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        int64_t t = 12345;
        if (parse(bad[i], &t))
            fail_msg("'%s' parsed as %lld", bad[i], (long long)t);
    }
}

static void test_round_trip(void **state)
{
    (void)state;
    for (int64_t x = -62167219200LL; x < 253402300799LL; x += 86400LL * 371 + 3661) {
        char b[30];
        int64_t t = 0;
        fg_http_format_date(x, b);
        assert_true(parse(b, &t));
        assert_int_equal(t, x);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),        cmocka_unit_test(test_format_matches_gmtime),
        cmocka_unit_test(test_parse_forms),   cmocka_unit_test(test_parse_rfc850_century),
        cmocka_unit_test(test_parse_invalid), cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests_name("http dates", tests, NULL, NULL);
}
