/* test_fields.c — field helpers, path normalisation (route matching input) and dates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "http/http.h"

static void test_name_eq_and_find(void **state)
{
    (void)state;
    assert_true(fg_http_name_eq("Content-Length", 14, "content-length"));
    assert_false(fg_http_name_eq("Content-Lengt", 13, "content-length"));
    assert_false(fg_http_name_eq("Content-Lengths", 15, "content-length"));
    struct fg_http_header h[] = {{"A", 1, "1", 1}, {"x-Y", 3, "2", 1}, {"X-y", 3, "3", 1}};
    const struct fg_http_header *f = fg_http_find_header(h, 3, "x-y");
    assert_ptr_equal(f, &h[1]);
    assert_null(fg_http_find_header(h, 3, "x"));
}

static void test_hop_by_hop(void **state)
{
    (void)state;
    const char *yes[] = {"Connection", "keep-alive",        "Proxy-Connection", "TE",
                         "Trailer",    "Transfer-Encoding", "UPGRADE"};
    for (size_t i = 0; i < 7; i++)
        assert_true(fg_http_is_hop_by_hop(yes[i], strlen(yes[i])));
    const char *no[] = {"Content-Length", "Host", "Te-x", "Authorization", "Proxy-Authorization"};
    for (size_t i = 0; i < 5; i++)
        assert_false(fg_http_is_hop_by_hop(no[i], strlen(no[i])));
}

static void test_list_token(void **state)
{
    (void)state;
    const char *v = " gzip, Chunked ,br";
    assert_true(fg_http_list_has_token(v, strlen(v), "chunked"));
    assert_true(fg_http_list_has_token(v, strlen(v), "br"));
    assert_false(fg_http_list_has_token(v, strlen(v), "chunk"));
    assert_false(fg_http_list_has_token("", 0, "x"));
}

static void norm_ok(const char *in, const char *want)
{
    char out[256];
    size_t n = sizeof(out);
    if (!fg_http_normalize_path(in, strlen(in), out, &n))
        fail_msg("normalize(%s) failed", in);
    if (n != strlen(want) || memcmp(out, want, n) != 0)
        fail_msg("normalize(%s) = %.*s, want %s", in, (int)n, out, want);
}

static void norm_bad(const char *in)
{
    char out[256];
    size_t n = sizeof(out);
    if (fg_http_normalize_path(in, strlen(in), out, &n))
        fail_msg("normalize(%s) = %.*s, want failure", in, (int)n, out);
}

static void test_normalize(void **state)
{
    (void)state;
    norm_ok("/", "/");
    norm_ok("/a/b", "/a/b");
    norm_ok("/a/b/", "/a/b/");
    norm_ok("//a///b", "/a/b");
    norm_ok("/a/./b", "/a/b");
    norm_ok("/./a", "/a");
    norm_ok("/a/.", "/a/");
    norm_ok("/a/../b", "/b");
    norm_ok("/a/b/../../c", "/c");
    norm_ok("/a/..", "/");
    norm_ok("/%61dmin", "/admin");
    norm_ok("/a/%2e%2e/admin", "/admin");
    norm_ok("/a/%2E/b", "/a/b");
    norm_ok("/a%2fb", "/a%2Fb");
    norm_ok("/a%2Fb/..", "/");
    norm_ok("/%7e%41", "/~A");
    norm_ok("/a..b/.c", "/a..b/.c");
    norm_bad("/..");
    norm_bad("/a/../..");
    norm_bad("/%2e%2e");
    norm_bad("/a%00b");
    norm_bad("/a%0ab");
    norm_bad("/a%zz");
    norm_bad("/a%4");
    norm_bad("a/b");
    norm_bad("");
    char out[4];
    size_t n = sizeof(out);
    assert_false(fg_http_normalize_path("/abcdef", 7, out, &n)); /* does not fit */
}

static void test_dates(void **state)
{
    (void)state;
    char b[30];
    fg_http_format_date(784111777, b);
    assert_string_equal(b, "Sun, 06 Nov 1994 08:49:37 GMT");
    fg_http_format_date(0, b);
    assert_string_equal(b, "Thu, 01 Jan 1970 00:00:00 GMT");
    int64_t t = 0;
    assert_true(fg_http_parse_date("Sun, 06 Nov 1994 08:49:37 GMT", 29, &t));
    assert_int_equal(t, 784111777);
    assert_true(fg_http_parse_date("Sunday, 06-Nov-94 08:49:37 GMT", 30, &t));
    assert_int_equal(t, 784111777);
    assert_true(fg_http_parse_date("Sun Nov  6 08:49:37 1994", 24, &t));
    assert_int_equal(t, 784111777);
    assert_true(fg_http_parse_date("Thu, 29 Feb 2024 23:59:59 GMT", 29, &t));
    assert_int_equal(t, 1709251199);
    assert_false(fg_http_parse_date("Sun, 06 Nov 1994 08:49:37 UTC", 29, &t));
    assert_false(fg_http_parse_date("Sun, 32 Nov 1994 08:49:37 GMT", 29, &t));
    assert_false(fg_http_parse_date("Sun, 06 Foo 1994 08:49:37 GMT", 29, &t));
    assert_false(fg_http_parse_date("Sun, 06 Nov 1994 24:49:37 GMT", 29, &t));
    assert_false(fg_http_parse_date("yesterday", 9, &t));
    assert_false(fg_http_parse_date("", 0, &t));
    for (int64_t x = 0; x < 4000000000LL; x += 86400 * 37 + 3661) {
        fg_http_format_date(x, b);
        assert_true(fg_http_parse_date(b, 29, &t));
        assert_int_equal(t, x);
    }
}

static void test_reasons(void **state)
{
    (void)state;
    assert_string_equal(fg_http_reason(200), "OK");
    assert_string_equal(fg_http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(fg_http_reason(799), "Unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_eq_and_find),
        cmocka_unit_test(test_hop_by_hop),
        cmocka_unit_test(test_list_token),
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_reasons),
    };
    return cmocka_run_group_tests_name("http fields, paths, dates", tests, NULL, NULL);
}
