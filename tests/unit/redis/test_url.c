/*
 * test_url.c — redis:// and rediss:// URLs: host, port, database, credentials
 * (percent-encoded, a user alone), IPv6, names kept for run-time lookups, and errors that
 * never echo a password.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "redis/redis.h"

static const char *show(const struct fg_redis_url *u)
{
    static char buf[600];
    fg_redis_url_display(u, buf, sizeof(buf));
    return buf;
}

static void test_plain(void **state)
{
    struct fg_redis_url u;
    char err[256];
    assert_true(fg_redis_url_parse("redis://127.0.0.1:6380/2", &u, err, sizeof(err)));
    assert_string_equal(u.host, "127.0.0.1");
    assert_false(u.tls);
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 2);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "");
    assert_string_equal(show(&u), "redis://127.0.0.1:6380/2");

    assert_true(fg_redis_url_parse("redis://10.1.2.3", &u, err, sizeof(err)));
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_true(fg_redis_url_parse("REDIS://10.1.2.3/", &u, err, sizeof(err)));
    assert_int_equal(u.db, 0);
    assert_string_equal(show(&u), "redis://10.1.2.3:6379/0");
}

static void test_tls_scheme(void **state)
{
    struct fg_redis_url u;
    char err[256];
    assert_true(fg_redis_url_parse(
        "rediss://my-cache-abc123.serverless.euw1.cache.amazonaws.com:6379", &u, err, sizeof(err)));
    assert_true(u.tls);
    assert_string_equal(u.host, "my-cache-abc123.serverless.euw1.cache.amazonaws.com");
    assert_string_equal(show(&u),
                        "rediss://my-cache-abc123.serverless.euw1.cache.amazonaws.com:6379/0");
    assert_true(fg_redis_url_parse("REDISS://app@10.0.0.5", &u, err, sizeof(err)));
    assert_true(u.tls);
    assert_string_equal(u.user, "app"); /* the password comes from password_file */
    assert_string_equal(u.password, "");
    assert_string_equal(show(&u), "rediss://app@10.0.0.5:6379/0");
}

static void test_credentials(void **state)
{
    struct fg_redis_url u;
    char err[256];
    assert_true(fg_redis_url_parse("redis://:s%40cr%3At@127.0.0.1:7000", &u, err, sizeof(err)));
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "s@cr:t");
    assert_int_equal(u.port, 7000);
    assert_string_equal(show(&u), "redis://:***@127.0.0.1:7000/0");
    assert_null(strstr(show(&u), "cr"));

    assert_true(fg_redis_url_parse("redis://alice:pw@127.0.0.1/1", &u, err, sizeof(err)));
    assert_string_equal(u.user, "alice");
    assert_string_equal(u.password, "pw");
    assert_string_equal(show(&u), "redis://alice:***@127.0.0.1:6379/1");

    /* an unencoded '@' in the password: the last one ends the userinfo */
    assert_true(fg_redis_url_parse("redis://:a@b@127.0.0.1", &u, err, sizeof(err)));
    assert_string_equal(u.password, "a@b");
}

static void test_ipv6_and_names(void **state)
{
    struct fg_redis_url u;
    char err[256];
    assert_true(fg_redis_url_parse("redis://[::1]:6390/3", &u, err, sizeof(err)));
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 6390);
    assert_string_equal(show(&u), "redis://[::1]:6390/3");
    assert_true(fg_redis_url_parse("redis://[::1]", &u, err, sizeof(err)));
    assert_int_equal(u.port, 6379);
    /* a name is kept as written: clients look it up on every connection */
    assert_true(fg_redis_url_parse("redis://cache.fleet.test:6379", &u, err, sizeof(err)));
    assert_string_equal(u.host, "cache.fleet.test");
    assert_true(fg_redis_url_parse("redis://no-such-name.invalid", &u, err, sizeof(err)));
}

static void expect_error(const char *url, const char *fragment)
{
    struct fg_redis_url u;
    char err[256] = "";
    assert_false(fg_redis_url_parse(url, &u, err, sizeof(err)));
    if (strstr(err, fragment) == NULL)
        fail_msg("'%s': error '%s' does not mention '%s'", url, err, fragment);
}

static void test_errors(void **state)
{
    expect_error("http://127.0.0.1:6379", "redis://");
    expect_error("127.0.0.1:6379", "redis://");
    expect_error(NULL, "redis://");
    expect_error("redis://", "host");
    expect_error("redis://:6379", "host");
    expect_error("redis://127.0.0.1:0", "port");
    expect_error("redis://127.0.0.1:65536", "port");
    expect_error("redis://127.0.0.1:abc", "port");
    expect_error("redis://127.0.0.1:", "port");
    expect_error("redis://127.0.0.1/abc", "database");
    expect_error("redis://127.0.0.1/12345", "database");
    expect_error("redis://127.0.0.1/1/2", "database");
    expect_error("redis://127.0.0.1/1?timeout=1", "database");
    expect_error("redis://127.0.0.1?db=1", "query");
    expect_error("redis://@127.0.0.1", "empty user");
    expect_error("redis://:@127.0.0.1", "empty password");
    expect_error("redis://:pw%zz@127.0.0.1", "password");
    expect_error("redis://:pw%00x@127.0.0.1", "password");
    expect_error("redis://::1:6379", "brackets");
    expect_error("redis://[::1", "]");
    expect_error("redis://[::1]x", "after");
    expect_error("redis://[zz::1]:6379", "IPv6");
    expect_error("redis://bad_host!:6379", "host");
    expect_error("redis://-bad.example:6379", "host");
    expect_error("redis://a..b:6379", "host");
}

static void test_errors_hide_password(void **state)
{
    const char *urls[] = {
        "redis://:topsecret@bad host:6379", "redis://:topsecret@127.0.0.1:99999",
        "redis://:topsecret@127.0.0.1/x",   "rediss://:topsecret@bad host",
        "http://:topsecret@127.0.0.1",
    };
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        struct fg_redis_url u;
        char err[256] = "";
        assert_false(fg_redis_url_parse(urls[i], &u, err, sizeof(err)));
        assert_true(err[0] != '\0');
        assert_null(strstr(err, "topsecret"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),       cmocka_unit_test(test_tls_scheme),
        cmocka_unit_test(test_credentials), cmocka_unit_test(test_ipv6_and_names),
        cmocka_unit_test(test_errors),      cmocka_unit_test(test_errors_hide_password),
    };
    return cmocka_run_group_tests_name("redis url", tests, NULL, NULL);
}
