/* test_url.c — URLs of the HTTP client: parsing, Host values, loopback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "httpc/httpc.h"

static void test_url_parse_and_loopback(void **state)
{
    (void)state;
    struct fg_url u;
    char err[160];
    assert_true(fg_url_parse("https://sqs.us-east-1.amazonaws.com", &u, err, sizeof(err)));
    assert_true(u.tls);
    assert_int_equal(u.port, 443);
    assert_string_equal(u.hostport, "sqs.us-east-1.amazonaws.com");
    assert_string_equal(u.path, "/");
    assert_false(fg_url_is_loopback(&u));
    assert_true(fg_url_parse("http://127.0.0.5:9324/000/q", &u, err, sizeof(err)));
    assert_string_equal(u.hostport, "127.0.0.5:9324");
    assert_string_equal(u.path, "/000/q");
    assert_true(fg_url_is_loopback(&u));
    assert_true(fg_url_parse("http://[::1]:80/", &u, err, sizeof(err)));
    assert_string_equal(u.host, "::1");
    assert_string_equal(u.hostport, "[::1]");
    assert_true(fg_url_is_loopback(&u));
    const char *bad[] = {"ftp://x",     "http://",      "http://a:0",     "http://a:99999",
                         "http://a b/", "https://u@h/", "http://h/#frag", "http://[::1/"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(fg_url_parse(bad[i], &u, err, sizeof(err)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_parse_and_loopback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
