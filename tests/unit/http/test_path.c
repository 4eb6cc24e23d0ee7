/* test_path.c — path normalisation for route matching: dot segments, repeated slashes,
 * escapes; and the paths it must refuse (so that no spelling can dodge a route rule). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "helpers.h"
#include "http/http.h"

static size_t n_cases;

/* Normalise from a guarded copy into a guarded output of exactly cap bytes. */
static bool norm(const char *in, size_t len, char *res, size_t cap, size_t *out_len)
{
    struct guard gi, go;
    char *p = guard_place(&gi, in, len);
    char *o = guard_place(&go, "", 0) - cap; /* the cap bytes before the fence */
    size_t n = cap;
    bool ok = fg_http_normalize_path(p, len, o, &n);
    if (ok) {
        assert_true(n <= cap);
        memcpy(res, o, n);
        *out_len = n;
    }
    guard_free(&gi);
    guard_free(&go);
    return ok;
}

static void ok_path(const char *in, const char *want)
{
    char out[512];
    size_t n = 0;
    n_cases++;
    if (!norm(in, strlen(in), out, sizeof(out), &n))
        fail_msg("normalize(%s) failed", in);
    if (n != strlen(want) || memcmp(out, want, n) != 0)
        fail_msg("normalize(%s) = %.*s, want %s", in, (int)n, out, want);
    /* normalising is idempotent */
    char again[512];
    size_t n2 = 0;
    assert_true(norm(out, n, again, sizeof(again), &n2));
    if (n2 != n || memcmp(again, out, n) != 0)
        fail_msg("normalize(normalize(%s)) = %.*s", in, (int)n2, again);
    /* an output buffer as long as the input is always enough */
    assert_true(norm(in, strlen(in), again, strlen(in), &n2));
    assert_int_equal(n2, n);
}

static void bad_path(const char *in, size_t len)
{
    char out[512];
    size_t n = 0;
    n_cases++;
    if (norm(in, len, out, sizeof(out), &n))
        fail_msg("normalize(%.*s) = %.*s, want failure", (int)len, in, (int)n, out);
}
#define BAD(s) bad_path(s, sizeof(s) - 1)

static void test_plain(void **state)
{
    (void)state;
    ok_path("/", "/");
    ok_path("/a", "/a");
    ok_path("/a/b", "/a/b");
    ok_path("/a/b/", "/a/b/");
    ok_path("/api/orders/123", "/api/orders/123");
    ok_path("/a;b=c/d:e@f!$&'()*+,=", "/a;b=c/d:e@f!$&'()*+,=");
    ok_path("/a..b/.c/..d/c..", "/a..b/.c/..d/c..");
    ok_path("/...", "/...");
    ok_path("/.a", "/.a");
}

static void test_slashes(void **state)
{
    (void)state;
    ok_path("//", "/");
    ok_path("///", "/");
    ok_path("//a", "/a");
    ok_path("//a///b", "/a/b");
    ok_path("/a//", "/a/");
    ok_path("//admin//", "/admin/");
}

static void test_dot_segments(void **state)
{
    (void)state;
    ok_path("/.", "/");
    ok_path("/./", "/");
    ok_path("/./a", "/a");
    ok_path("/a/.", "/a/");
    ok_path("/a/./", "/a/");
    ok_path("/a/./b", "/a/b");
    ok_path("/a/././b", "/a/b");
    ok_path("/a/..", "/");
    ok_path("/a/../", "/");
    ok_path("/a/../b", "/b");
    ok_path("/a/b/..", "/a/");
    ok_path("/a/b/../", "/a/");
    ok_path("/a/b/../c", "/a/c");
    ok_path("/a/b/../../c", "/c");
    ok_path("/a/b/c/./../../g", "/a/g");
    ok_path("/a//../b", "/b");
    ok_path("/a/.//b", "/a/b");
    ok_path("/public/../admin", "/admin");
    ok_path("/public/./../admin/", "/admin/");
}

static void test_escapes(void **state)
{
    (void)state;
    ok_path("/%61dmin", "/admin");
    ok_path("/%41%42%43", "/ABC");
    ok_path("/%7e%2D%2e%5F", "/~-._");
    ok_path("/%7euser", "/~user");
    ok_path("/a/%2e%2e/admin", "/admin");
    ok_path("/a/%2E%2E/admin", "/admin");
    ok_path("/a/.%2e/admin", "/admin");
    ok_path("/a/%2E/b", "/a/b");
    ok_path("/%2e/a", "/a");
    ok_path("/a%20b", "/a%20b");
    ok_path("/a%3fb", "/a%3Fb");
    ok_path("/a%3Fb", "/a%3Fb");
    ok_path("/a%25b", "/a%25b");
    ok_path("/a%252e%252e", "/a%252e%252e"); /* decoded once only */
    ok_path("/caf%c3%a9", "/caf%C3%A9");
    ok_path("/%3a%40", "/%3A%40");
    ok_path("/a%23b", "/a%23b");
}

static void test_refused(void **state)
{
    (void)state;
    /* above the root */
    BAD("/..");
    BAD("/../");
    BAD("/../a");
    BAD("/a/../..");
    BAD("/a/../../b");
    BAD("/%2e%2e");
    BAD("/%2E%2E/etc/passwd");
    BAD("/.%2e");
    BAD("//..");
    /* an encoded segment boundary */
    BAD("/a%2fb");
    BAD("/a%2Fb");
    BAD("/%2f");
    BAD("/..%2f..%2fetc");
    /* bad escapes */
    BAD("/a%zz");
    BAD("/a%4");
    BAD("/a%");
    BAD("/a%%41");
    BAD("/a%g1");
    /* NUL and CTL, raw or encoded */
    BAD("/a%00b");
    BAD("/a%0ab");
    BAD("/a%0Db");
    BAD("/a%1f");
    BAD("/a%7f");
    BAD("/a\x00b");
    BAD("/a\x01");
    BAD("/a\x7f");
    BAD("/a b");
    BAD("/a\tb");
    /* not a path */
    BAD("");
    BAD("a/b");
    BAD("*");
    BAD("http://h/");
}

static void test_capacity(void **state)
{
    (void)state;
    char out[16];
    size_t n = 4;
    assert_false(fg_http_normalize_path("/abcdef", 7, out, &n)); /* does not fit */
    n = 7;
    assert_true(fg_http_normalize_path("/abcdef", 7, out, &n));
    assert_int_equal(n, 7);
    n = 1;
    assert_true(fg_http_normalize_path("/", 1, out, &n));
    n = 0;
    assert_false(fg_http_normalize_path("/", 1, out, &n));
    /* the output never grows past the input */
    static char big[4096], res[4096];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = "/a.%2e/b%41c"[i % 12];
    big[0] = '/';
    size_t len = sizeof(big) - 2;
    size_t outn = 0;
    if (norm(big, len, res, len, &outn))
        assert_true(outn <= len);
}

static int report(void **state)
{
    (void)state;
    printf("# %zu path cases\n", n_cases);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),        cmocka_unit_test(test_slashes),
        cmocka_unit_test(test_dot_segments), cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_refused),      cmocka_unit_test(test_capacity),
    };
    return cmocka_run_group_tests_name("http path normalisation", tests, NULL, report);
}
