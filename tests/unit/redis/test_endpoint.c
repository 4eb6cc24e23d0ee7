/*
 * test_endpoint.c — endpoints as the config builds them: the password file (one line,
 * nobody but its owner may read it, owned by root or by us), what excludes what (IAM and
 * passwords, IAM without TLS, a user without a password, a database in cluster mode), CA
 * files and resolvers; and no error message ever shows a secret.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "redis/internal.h"

static char dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/fg-redis-ep-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static const char *file(const char *name, const char *content, mode_t mode)
{
    static char path[4][300];
    static int k;
    char *p = path[k++ % 4];
    snprintf(p, 300, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    assert_int_equal(chmod(p, mode), 0);
    return p;
}

static struct fg_redis_endpoint *make(const struct fg_redis_endpoint_config *c, char *err,
                                      size_t errlen)
{
    err[0] = '\0';
    return fg_redis_endpoint_new(c, err, errlen);
}

static void expect_refused(const struct fg_redis_endpoint_config *c, const char *fragment)
{
    char err[512];
    struct fg_redis_endpoint *ep = make(c, err, sizeof(err));
    if (ep != NULL) {
        fg_redis_endpoint_unref(ep);
        fail_msg("accepted; expected an error about '%s'", fragment);
    }
    if (strstr(err, fragment) == NULL)
        fail_msg("error '%s' does not mention '%s'", err, fragment);
    assert_null(strstr(err, "topsecret"));
}

static char *password_of(struct fg_redis_endpoint *ep)
{
    const char *user;
    bool failed;
    enum fg_redis_auth_fail why;
    char err[200];
    return fg_redis_endpoint_secret(ep, 0, &user, &why, &failed, err, sizeof(err));
}

static void test_password_file(void **state)
{
    (void)state;
    struct fg_redis_endpoint_config c = {.name = "t", .url = "rediss://app@cache.test:6379"};
    char err[512];
    c.password_file = file("ok", "topsecret\n", 0600);
    struct fg_redis_endpoint *ep = make(&c, err, sizeof(err));
    assert_non_null(ep);
    char *pw = password_of(ep);
    assert_string_equal(pw, "topsecret"); /* the final newline is not part of it */
    fg_redis_secret_free(pw);
    /* shown as in use, never shown */
    assert_string_equal(fg_redis_endpoint_display(ep), "rediss://app:***@cache.test:6379/0");
    fg_redis_endpoint_unref(ep);

    c.password_file = file("crlf", "topsecret\r\n", 0400);
    ep = make(&c, err, sizeof(err));
    assert_non_null(ep);
    pw = password_of(ep);
    assert_string_equal(pw, "topsecret");
    fg_redis_secret_free(pw);
    fg_redis_endpoint_unref(ep);

    c.password_file = file("group", "topsecret\n", 0640);
    expect_refused(&c, "group or others have access (mode 0640)");
    c.password_file = file("world", "topsecret\n", 0604);
    expect_refused(&c, "group or others have access");
    c.password_file = file("gw", "topsecret\n", 0620);
    expect_refused(&c, "chmod 600");
    c.password_file = file("empty", "", 0600);
    expect_refused(&c, "one line");
    c.password_file = file("nl", "\n", 0600);
    expect_refused(&c, "one line");
    c.password_file = file("two", "topsecret\nmore\n", 0600);
    expect_refused(&c, "one line");
    c.password_file = dir;
    expect_refused(&c, "not a regular file");
    char missing[300];
    snprintf(missing, sizeof(missing), "%s/missing", dir);
    c.password_file = missing;
    expect_refused(&c, "cannot open");

    if (geteuid() == 0) {
        /* another user's file, even 0600: refused (it is not ours to trust) */
        const char *p = file("nobody", "topsecret\n", 0600);
        assert_int_equal(chown(p, 65534, 65534), 0);
        c.password_file = p;
        expect_refused(&c, "owned by uid 65534");
    }

    /* a password in the URL as well: which one? */
    c.url = "rediss://app:topsecret@cache.test";
    c.password_file = file("ok2", "topsecret\n", 0600);
    expect_refused(&c, "exclude each other");
}

static void test_users_and_iam(void **state)
{
    (void)state;
    struct fg_redis_endpoint_config c = {.name = "t", .url = "redis://app@cache.test"};
    expect_refused(&c, "user 'app' needs a password");

    c = (struct fg_redis_endpoint_config){.name = "t",
                                          .url = "redis://cache.test",
                                          .iam = true,
                                          .iam_user = "app",
                                          .iam_cache = "fleet"};
    expect_refused(&c, "auth iam needs rediss://");
    c.url = "rediss://:topsecret@cache.test";
    expect_refused(&c, "exclude each other");
    c.url = "rediss://other@cache.test";
    expect_refused(&c, "differs from auth iam's user");
    c.url = "rediss://cache.test";
    c.iam_region = "Europe";
    expect_refused(&c, "not a region name");
    c.iam_region = NULL;
    c.iam_cache = NULL;
    expect_refused(&c, "auth iam cache");
    c.iam_cache = "fleet";
    char err[300];
    struct fg_redis_endpoint *ep = make(&c, err, sizeof(err));
    assert_non_null(ep);
    /* the display names the IAM user */
    assert_string_equal(fg_redis_endpoint_display(ep), "rediss://app@cache.test:6379/0");
    fg_redis_endpoint_unref(ep);
}

static void test_other_checks(void **state)
{
    (void)state;
    struct fg_redis_endpoint_config c = {
        .name = "t", .url = "redis://cache.test/3", .cluster = FG_REDIS_CLUSTER_ON};
    expect_refused(&c, "database 0 only");
    c.cluster = FG_REDIS_CLUSTER_AUTO;
    c.ca_file = "/etc/ssl/certs/ca-certificates.crt";
    expect_refused(&c, "ssl_ca_file needs a rediss:// URL");
    c.url = "rediss://cache.test";
    char missing[300];
    snprintf(missing, sizeof(missing), "%s/no-ca.pem", dir);
    c.ca_file = missing;
    expect_refused(&c, "cannot open");
    c.ca_file = file("notpem", "not a certificate\n", 0644);
    expect_refused(&c, "no usable PEM certificate");
    c.ca_file = NULL;
    c.resolvers[0] = "dns.example";
    c.n_resolvers = 1;
    expect_refused(&c, "resolver 'dns.example'");
    c.resolvers[0] = "127.0.0.1:5353";
    c.resolvers[1] = "[::1]:53";
    c.n_resolvers = 2;
    char err[300];
    struct fg_redis_endpoint *ep = make(&c, err, sizeof(err));
    assert_non_null(ep);
    assert_string_equal(fg_redis_endpoint_name(ep), "t");
    fg_redis_endpoint_unref(ep);
    c.url = "http://cache.test";
    expect_refused(&c, "redis://");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_password_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_users_and_iam, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_checks, setup, teardown),
    };
    return cmocka_run_group_tests_name("redis endpoint", tests, NULL, NULL);
}
