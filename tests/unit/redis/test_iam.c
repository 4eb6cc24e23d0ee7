/*
 * test_iam.c — ElastiCache IAM tokens.
 *
 *  - fg_redis_iam_presign against the presigned-query cases of AWS's SigV4 test suite
 *    whose request is a GET of "/" with only a Host header (the shape of an ElastiCache
 *    token): each expected token is the suite's signed URL without its scheme.
 *  - fg_redis_iam_token against the layout AWS documents ("Authenticating with IAM",
 *    ElastiCache user guide): <cache>/?Action=connect&User=<id>[&ResourceType=
 *    ServerlessCache]&X-Amz-..., service elasticache, X-Amz-Expires=900, the session
 *    token signed; its signature recomputed here from first principles (OpenSSL HMAC),
 *    not with our SigV4 code.
 *  - an endpoint's token cache driven by a test clock: reused for new connections while
 *    younger than FG_REDIS_IAM_RENEW_S, minted again after, each mint counted; no
 *    credentials gives the no_credentials failure.
 *
 * The suite's data (aws-signing-test-suite/v4, from awslabs/aws-c-auth) is under the
 * Apache License 2.0:
 *   AWS C Auth
 *   Copyright Amazon.com, Inc. or its affiliates. All Rights Reserved.
 *   SPDX-License-Identifier: Apache-2.0.
 * Only the expected strings of six cases are copied below; no code was taken.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "redis/internal.h"

/* 2015-08-30T12:36:00Z, the suite's signing time */
#define SUITE_TIME 1440938160

static const struct fg_sigv4_credentials suite_creds = {
    .access_key_id = "AKIDEXAMPLE",
    .secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
};

#define CRED "X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request"
#define MID                                                                                        \
    "X-Amz-Algorithm=AWS4-HMAC-SHA256&" CRED "&X-Amz-Date=20150830T123600Z&X-Amz-SignedHeaders="   \
    "host&X-Amz-Expires=3600"

static const struct {
    const char *name, *query, *token, *want;
} cases[] = {
    {"get-vanilla", "", NULL,
     "example.amazonaws.com/?" MID
     "&X-Amz-Signature=e93c787ed7f371d5c6b165c1b38ede9550f4dce4144713e844b25b7192d3865d"},
    {"get-vanilla-query-order-key-case", "Param2=value2&Param1=value1", NULL,
     "example.amazonaws.com/?Param2=value2&Param1=value1&" MID
     "&X-Amz-Signature=86012e2c9ad4d77369f5d81c11f75158aae4f895a085212cc6d3f923d300bed5"},
    {"get-vanilla-query-unreserved",
     "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~"
     "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
     NULL,
     "example.amazonaws.com/?-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz="
     "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz&" MID
     "&X-Amz-Signature=8e76a88a7433637b12778d5592799b29ad21ecd6cf6325051c21d86f0acda2bf"},
    {"get-vanilla-empty-query-key", "Param1=value1", NULL,
     "example.amazonaws.com/?Param1=value1&" MID
     "&X-Amz-Signature=49096700cbbaa5753443850f40df10f904fc2fdb544dc9512203cc77c471a9de"},
    {"get-vanilla-query-order-encoded", "Param-3=Value3&Param=Value2&%E1%88%B4=Value1", NULL,
     "example.amazonaws.com/?Param-3=Value3&Param=Value2&%E1%88%B4=Value1&" MID
     "&X-Amz-Signature=c5f1848ceec943ac2ca68ee720460c23aaae30a2300586597ada94c4a65e4787"},
    {"get-vanilla-with-session-token", "",
     "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267",
     "example.amazonaws.com/?" MID
     "&X-Amz-Security-Token=6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"
     "&X-Amz-Signature=7ff2b50b376cb4d151970630573d6291dc128cc5c2a12ffb237f73cc53f67b6c"},
};

static void test_suite_presigned_queries(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fg_sigv4_credentials c = suite_creds;
        c.session_token = cases[i].token;
        char err[200] = "";
        char *tok = fg_redis_iam_presign("example.amazonaws.com", cases[i].query, &c, "us-east-1",
                                         "service", SUITE_TIME, 3600, err, sizeof(err));
        if (tok == NULL)
            fail_msg("%s: %s", cases[i].name, err);
        if (strcmp(tok, cases[i].want) != 0)
            fail_msg("%s:\n got  %s\n want %s", cases[i].name, tok, cases[i].want);
        free(tok);
    }
}

/* ---- the token AWS documents, checked from first principles ------------------------------ */

static void hmac256(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
    unsigned int n = 32;
    assert_non_null(
        HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &n));
}

static void hex(const unsigned char *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

/* The value of name=... in the token's query (not decoded), into out. */
static bool param(const char *tok, const char *name, char *out, size_t cap)
{
    const char *q = strchr(tok, '?');
    size_t nl = strlen(name);
    while (q != NULL) {
        q++;
        if (strncmp(q, name, nl) == 0 && q[nl] == '=') {
            size_t vl = strcspn(q + nl + 1, "&");
            if (vl >= cap)
                return false;
            memcpy(out, q + nl + 1, vl);
            out[vl] = '\0';
            return true;
        }
        q = strchr(q, '&');
    }
    return false;
}

static void test_elasticache_token(void **state)
{
    (void)state;
    const struct fg_sigv4_credentials creds = {
        .access_key_id = "ASIAFLEETEXAMPLE",
        .secret_access_key = "fleet/secret+key/EXAMPLE",
        .session_token = "IQoJb3JpZ2luX2VjE/session+token==",
    };
    const int64_t t = 1700000000; /* 2023-11-14T22:13:20Z */
    char err[200];
    /* Cache names are lower case at AWS: "My-Cache" is signed as "my-cache". */
    char *tok = fg_redis_iam_token("app-user-01", "My-Cache", false, &creds, "eu-west-1", t, err,
                                   sizeof(err));
    assert_non_null(tok);
    const char *head = "my-cache/?Action=connect&User=app-user-01&X-Amz-Algorithm=AWS4-HMAC-SHA256"
                       "&X-Amz-Credential=ASIAFLEETEXAMPLE%2F20231114%2Feu-west-1%2Felasticache"
                       "%2Faws4_request&X-Amz-Date=20231114T221320Z&X-Amz-SignedHeaders=host"
                       "&X-Amz-Expires=900&X-Amz-Security-Token=IQoJb3JpZ2luX2VjE%2Fsession%2B"
                       "token%3D%3D&X-Amz-Signature=";
    if (strncmp(tok, head, strlen(head)) != 0)
        fail_msg("token layout:\n got  %s\n want %s<signature>", tok, head);
    assert_null(strstr(tok, "http"));
    assert_int_equal(strlen(tok), strlen(head) + 64);

    /* the signature, from first principles */
    const char *creq = "GET\n/\n"
                       "Action=connect&User=app-user-01&X-Amz-Algorithm=AWS4-HMAC-SHA256"
                       "&X-Amz-Credential=ASIAFLEETEXAMPLE%2F20231114%2Feu-west-1%2Felasticache"
                       "%2Faws4_request&X-Amz-Date=20231114T221320Z&X-Amz-Expires=900"
                       "&X-Amz-Security-Token=IQoJb3JpZ2luX2VjE%2Fsession%2Btoken%3D%3D"
                       "&X-Amz-SignedHeaders=host\n"
                       "host:my-cache\n\nhost\n"
                       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    unsigned char h[32], k[32];
    char hh[65], sts[300], sig[65], got[80];
    SHA256((const unsigned char *)creq, strlen(creq), h);
    hex(h, 32, hh);
    snprintf(sts, sizeof(sts),
             "AWS4-HMAC-SHA256\n20231114T221320Z\n20231114/eu-west-1/elasticache/aws4_request\n%s",
             hh);
    const char *secret = "AWS4fleet/secret+key/EXAMPLE";
    hmac256(secret, strlen(secret), "20231114", k);
    hmac256(k, 32, "eu-west-1", k);
    hmac256(k, 32, "elasticache", k);
    hmac256(k, 32, "aws4_request", k);
    hmac256(k, 32, sts, h);
    hex(h, 32, sig);
    assert_true(param(tok, "X-Amz-Signature", got, sizeof(got)));
    assert_string_equal(got, sig);
    free(tok);

    /* serverless: ResourceType=ServerlessCache, right after User, and signed */
    tok = fg_redis_iam_token("app-user-01", "my-cache", true, &creds, "eu-west-1", t, err,
                             sizeof(err));
    assert_non_null(tok);
    assert_true(strncmp(tok,
                        "my-cache/?Action=connect&User=app-user-01&ResourceType=ServerlessCache"
                        "&X-Amz-Algorithm=",
                        strlen("my-cache/?Action=connect&User=app-user-01&ResourceType="
                               "ServerlessCache&X-Amz-Algorithm=")) == 0);
    char sig2[80];
    assert_true(param(tok, "X-Amz-Signature", sig2, sizeof(sig2)));
    assert_string_not_equal(sig2, sig);
    free(tok);

    /* long-term keys: no security token */
    struct fg_sigv4_credentials lt = creds;
    lt.session_token = NULL;
    tok = fg_redis_iam_token("u", "c", false, &lt, "us-east-1", t, err, sizeof(err));
    assert_non_null(tok);
    assert_null(strstr(tok, "Security-Token"));
    free(tok);
    /* a user id that needs encoding is encoded (and signed so) */
    tok = fg_redis_iam_token("a b", "c", false, &lt, "us-east-1", t, err, sizeof(err));
    assert_non_null(tok);
    assert_non_null(strstr(tok, "User=a%20b&"));
    free(tok);
    /* refused */
    assert_null(fg_redis_iam_token("", "c", false, &lt, "us-east-1", t, err, sizeof(err)));
    assert_null(fg_redis_iam_token("u", "", false, &lt, "us-east-1", t, err, sizeof(err)));
}

/* ---- the token cache, on a test clock ------------------------------------------------------ */

static struct fg_redis_endpoint *iam_endpoint(const char *imds, const char *region)
{
    struct fg_redis_endpoint_config c = {.name = "iamtest",
                                         .url = "rediss://cache.fleet.test:6379",
                                         .iam = true,
                                         .iam_user = "app",
                                         .iam_cache = "fleet-cache",
                                         .iam_serverless = true,
                                         .iam_region = region,
                                         .imds = imds};
    char err[300];
    struct fg_redis_endpoint *ep = fg_redis_endpoint_new(&c, err, sizeof(err));
    if (ep == NULL)
        fail_msg("%s", err);
    return ep;
}

static char *secret_at(struct fg_redis_endpoint *ep, int64_t now, const char **user, bool *failed,
                       enum fg_redis_auth_fail *why)
{
    char err[300];
    return fg_redis_endpoint_secret(ep, now, user, why, failed, err, sizeof(err));
}

static uint64_t renewals(void)
{
    struct fg_redis_stats s;
    char name[64];
    for (size_t i = 0; fg_redis_stats_get(i, name, sizeof(name), &s); i++)
        if (strcmp(name, "iamtest") == 0)
            return s.token_renewals;
    return 0;
}

static void test_token_renewal_on_a_test_clock(void **state)
{
    (void)state;
    setenv("AWS_ACCESS_KEY_ID", "AKIDCLOCK", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "clock-secret", 1);
    unsetenv("AWS_SESSION_TOKEN");
    struct fg_redis_endpoint *ep = iam_endpoint("http://127.0.0.1:9", "eu-central-1");
    uint64_t base = renewals();
    const char *user = NULL;
    bool failed = true;
    enum fg_redis_auth_fail why = FG_REDIS_AUTH_OTHER;
    const int64_t t0 = 1800000000;

    char *a = secret_at(ep, t0, &user, &failed, &why);
    assert_false(failed);
    assert_non_null(a);
    assert_string_equal(user, "app");
    assert_true(
        strncmp(a, "fleet-cache/?Action=connect&User=app&ResourceType=ServerlessCache&", 66) == 0);
    assert_non_null(strstr(a, "%2Feu-central-1%2Felasticache%2F"));
    assert_non_null(strstr(a, "X-Amz-Date=20270115T080000Z"));
    assert_int_equal(renewals(), base + 1);

    /* younger than FG_REDIS_IAM_RENEW_S: the same token for the next connection */
    char *b = secret_at(ep, t0 + FG_REDIS_IAM_RENEW_S - 1, &user, &failed, &why);
    assert_string_equal(a, b);
    assert_int_equal(renewals(), base + 1);
    fg_redis_secret_free(b);
    /* old enough: a new one, signed at the new time, still valid for 10 minutes at least */
    b = secret_at(ep, t0 + FG_REDIS_IAM_RENEW_S, &user, &failed, &why);
    assert_string_not_equal(a, b);
    assert_non_null(strstr(b, "X-Amz-Date=20270115T080500Z"));
    assert_non_null(strstr(b, "X-Amz-Expires=900&"));
    assert_int_equal(renewals(), base + 2);
    fg_redis_secret_free(a);
    /* a clock that went back more than a minute: minted again */
    a = secret_at(ep, t0 - 3600, &user, &failed, &why);
    assert_non_null(strstr(a, "X-Amz-Date=20270115T070000Z"));
    assert_int_equal(renewals(), base + 3);
    fg_redis_secret_free(a);
    fg_redis_secret_free(b);
    fg_redis_endpoint_unref(ep);
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
}

static void test_no_credentials(void **state)
{
    (void)state;
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    /* nothing listens on port 9 of 127.0.0.1: IMDS never answers */
    struct fg_redis_endpoint *ep = iam_endpoint("http://127.0.0.1:9", NULL);
    const char *user;
    bool failed = false;
    enum fg_redis_auth_fail why = FG_REDIS_AUTH_OTHER;
    char err[300] = "";
    char *s = fg_redis_endpoint_secret(ep, 1800000000, &user, &why, &failed, err, sizeof(err));
    assert_null(s);
    assert_true(failed);
    assert_int_equal(why, FG_REDIS_AUTH_NO_CREDENTIALS);
    assert_non_null(strstr(err, "credentials"));
    fg_redis_endpoint_unref(ep);
}

/* A password endpoint hands out its password and its user, never minting anything. */
static void test_password_secret(void **state)
{
    (void)state;
    struct fg_redis_endpoint_config c = {.name = "pwtest", .url = "redis://app:pw%40x@h:1/2"};
    char err[300];
    struct fg_redis_endpoint *ep = fg_redis_endpoint_new(&c, err, sizeof(err));
    assert_non_null(ep);
    assert_string_equal(fg_redis_endpoint_display(ep), "redis://app:***@h:1/2");
    const char *user;
    bool failed;
    enum fg_redis_auth_fail why;
    char *s = fg_redis_endpoint_secret(ep, 0, &user, &why, &failed, err, sizeof(err));
    assert_string_equal(s, "pw@x");
    assert_string_equal(user, "app");
    fg_redis_secret_free(s);
    fg_redis_endpoint_unref(ep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_suite_presigned_queries),
        cmocka_unit_test(test_elasticache_token),
        cmocka_unit_test(test_token_renewal_on_a_test_clock),
        cmocka_unit_test(test_no_credentials),
        cmocka_unit_test(test_password_secret),
    };
    return cmocka_run_group_tests_name("redis iam", tests, NULL, NULL);
}
