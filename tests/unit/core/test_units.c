/*
 * test_units.c — the config's number formats: strict parsing, every unit, overflow.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/core.h"

static void test_uint(void **state)
{
    (void)state;
    uint64_t v = 99;
    assert_true(fg_parse_uint("0", 10, &v));
    assert_int_equal(v, 0);
    assert_true(fg_parse_uint("65535", 65535, &v));
    assert_int_equal(v, 65535);
    assert_false(fg_parse_uint("65536", 65535, &v));
    assert_true(fg_parse_uint("18446744073709551615", UINT64_MAX, &v));
    assert_true(v == UINT64_MAX);
    assert_false(fg_parse_uint("18446744073709551616", UINT64_MAX, &v));
    assert_false(fg_parse_uint("99999999999999999999999", UINT64_MAX, &v));
    assert_true(fg_parse_uint("007", 10, &v));
    assert_int_equal(v, 7);
    /* strict: no sign, no space, no junk, not empty */
    const char *bad[] = {"", "-1", "+1", " 1", "1 ", "1x", "0x10", "1.0", "1e3", NULL};
    for (size_t i = 0; bad[i] != NULL; i++) {
        v = 42;
        assert_false(fg_parse_uint(bad[i], UINT64_MAX, &v));
        assert_int_equal(v, 42); /* untouched on failure */
    }
    assert_false(fg_parse_uint(NULL, 10, &v));
}

static void test_duration(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t ms;
    } ok[] = {
        {"0", 0},
        {"75", 75000},
        {"75s", 75000},
        {"500ms", 500},
        {"2m", 120000},
        {"2min", 120000},
        {"1h", 3600000},
        {"1d", 86400000},
        {"0ms", 0},
        {"1ms", 1},
        {"4s", 4000},
        {"90s", 90000},
        {"18446744073709551615ms", UINT64_MAX},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t v = 1234;
        assert_true(fg_parse_duration_ms(ok[i].s, &v));
        assert_true(v == ok[i].ms);
    }
    const char *bad[] = {"",
                         "s",
                         "75x",
                         "75 s",
                         " 75s",
                         "75S",
                         "1M",
                         "1.5s",
                         "-1s",
                         "1sec",
                         "1hh",
                         "ms",
                         "1 ",
                         "1w",
                         "18446744073709551615s", /* overflows once multiplied */
                         "213503982335d",
                         NULL};
    for (size_t i = 0; bad[i] != NULL; i++) {
        uint64_t v = 1234;
        assert_false(fg_parse_duration_ms(bad[i], &v));
        assert_int_equal(v, 1234);
    }
}

static void test_size(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t b;
    } ok[] = {
        {"0", 0},
        {"512", 512},
        {"64k", 65536},
        {"64K", 65536},
        {"1m", 1048576},
        {"8M", 8388608},
        {"2g", 2147483648ull},
        {"240k", 245760},
        {"17179869183g", 17179869183ull << 30},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t v = 7;
        assert_true(fg_parse_size(ok[i].s, &v));
        assert_true(v == ok[i].b);
    }
    const char *bad[] = {
        "",     "k",  "1kb", "1 k",          "1t",
        "1.5m", "-1", "1x",  "17179869184g", /* 2^34 g = 2^64 bytes: overflow */ NULL};
    for (size_t i = 0; bad[i] != NULL; i++) {
        uint64_t v = 7;
        assert_false(fg_parse_size(bad[i], &v));
        assert_int_equal(v, 7);
    }
}

static void test_rate(void **state)
{
    (void)state;
    uint64_t v = 0;
    assert_true(fg_parse_rate("50r/s", &v));
    assert_int_equal(v, 50000);
    assert_true(fg_parse_rate("600r/m", &v));
    assert_int_equal(v, 10000);
    assert_true(fg_parse_rate("600r/min", &v));
    assert_int_equal(v, 10000);
    assert_true(fg_parse_rate("1r/m", &v)); /* 16.67 per 1000 s, rounded */
    assert_int_equal(v, 17);
    assert_true(fg_parse_rate("0r/s", &v));
    assert_int_equal(v, 0);
    const char *bad[] = {"",    "50",     "50r",    "50/s",   "50r/h",
                         "r/s", "50 r/s", "50r/s ", "5.5r/s", "18446744073709551615r/s",
                         NULL};
    for (size_t i = 0; bad[i] != NULL; i++) {
        v = 3;
        assert_false(fg_parse_rate(bad[i], &v));
        assert_int_equal(v, 3);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uint),
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_size),
        cmocka_unit_test(test_rate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
