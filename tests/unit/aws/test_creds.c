/* test_creds.c — credentials (IMDS answers, refresh timing), region names, regional
 * endpoints and ISO 8601 expirations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "aws/aws.h"

static void test_creds_parse_imds(void **state)
{
    (void)state;
    int64_t now = 1700000000; /* 2023-11-14T22:13:20Z */
    const char *body = "{\"Code\":\"Success\",\"LastUpdated\":\"2023-11-14T22:00:00Z\","
                       "\"Type\":\"AWS-HMAC\",\"AccessKeyId\":\"ASIAX\",\"SecretAccessKey\":"
                       "\"sec\",\"Token\":\"tok\",\"Expiration\":\"2023-11-15T04:13:20Z\"}";
    struct fg_creds_value v;
    char err[128];
    assert_true(fg_creds_parse_imds(body, strlen(body), now, &v, err, sizeof(err)));
    assert_string_equal(v.access_key_id, "ASIAX");
    assert_string_equal(v.secret_access_key, "sec");
    assert_string_equal(v.session_token, "tok");
    assert_int_equal(v.expires_s, now + 6 * 3600);
    assert_int_equal(v.obtained_s, now);
    fg_creds_value_clear(&v);
    static const char failure[] =
        "{\"Code\":\"Failure\",\"AccessKeyId\":\"a\","
        "\"SecretAccessKey\":\"b\",\"Expiration\":\"2023-11-15T04:13:20Z\"}";
    const char *bad[] = {
        failure, "{\"AccessKeyId\":\"a\",\"Expiration\":\"2023-11-15T04:13:20Z\"}",
        "{\"AccessKeyId\":\"a\",\"SecretAccessKey\":\"b\",\"Expiration\":\"tomorrow\"}",
        "{\"AccessKeyId\":\"a\",\"SecretAccessKey\":\"b\",\"Expiration\":\"2023-11-14T22:00:00Z\"}",
        "not json"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(fg_creds_parse_imds(bad[i], strlen(bad[i]), now, &v, err, sizeof(err)));
    int64_t t;
    assert_true(fg_aws_parse_iso8601("2023-11-14T22:13:20.123Z", 24, &t));
    assert_int_equal(t, now);
    assert_false(fg_aws_parse_iso8601("2023-13-14T22:13:20Z", 20, &t));
    assert_false(fg_aws_parse_iso8601("2023-11-14 22:13:20Z", 20, &t));
}

static void test_creds_refresh_timing(void **state)
{
    (void)state;
    int64_t t0 = 1000000;
    /* 6 h: a fifth of the lifetime (72 min) before the end. */
    assert_int_equal(fg_creds_refresh_at(t0, t0 + 21600), t0 + 21600 - 4320);
    /* 20 min: 5 minutes before the end (a fifth would be 4). */
    assert_int_equal(fg_creds_refresh_at(t0, t0 + 1200), t0 + 900);
    /* 4 min: halfway, never every second. */
    assert_int_equal(fg_creds_refresh_at(t0, t0 + 240), t0 + 120);
    assert_int_equal(fg_creds_refresh_at(t0, t0 + 1), t0 + 1);
}

/* ---- regions and endpoints ---------------------------------------------------------------- */

static void test_region_from_url(void **state)
{
    (void)state;
    char region[64];
    assert_true(fg_aws_region_from_url("https://sqs.eu-west-1.amazonaws.com/1/q", "sqs", region,
                                       sizeof(region)));
    assert_string_equal(region, "eu-west-1");
    assert_true(fg_aws_region_from_url("https://sqs.cn-north-1.amazonaws.com.cn/1/q", "sqs", region,
                                       sizeof(region)));
    assert_string_equal(region, "cn-north-1");
    assert_false(
        fg_aws_region_from_url("https://queue.example.com/1/q", "sqs", region, sizeof(region)));
    /* another service's endpoint, a longer service name, no region part, upper case */
    assert_false(fg_aws_region_from_url("https://sns.eu-west-1.amazonaws.com/", "sqs", region,
                                        sizeof(region)));
    assert_false(fg_aws_region_from_url("https://sqsx.eu-west-1.amazonaws.com/", "sqs", region,
                                        sizeof(region)));
    assert_false(fg_aws_region_from_url("https://sqs.localhost/", "sqs", region, sizeof(region)));
    assert_false(
        fg_aws_region_from_url("https://sqs.EU.amazonaws.com/", "sqs", region, sizeof(region)));
    /* too small an output */
    assert_false(
        fg_aws_region_from_url("https://sqs.eu-west-1.amazonaws.com/1/q", "sqs", region, 5));
}

static void test_region_valid_and_endpoint(void **state)
{
    (void)state;
    assert_true(fg_aws_region_valid("us-east-1", 9));
    assert_false(fg_aws_region_valid("", 0));
    assert_false(fg_aws_region_valid("us/east", 7));
    assert_false(fg_aws_region_valid("US-EAST-1", 9));
    char long_name[80];
    memset(long_name, 'a', sizeof(long_name));
    assert_true(fg_aws_region_valid(long_name, FG_SIGV4_NAME_MAX));
    assert_false(fg_aws_region_valid(long_name, FG_SIGV4_NAME_MAX + 1));
    char url[128];
    assert_true(fg_aws_endpoint("sqs", "eu-west-1", url, sizeof(url)));
    assert_string_equal(url, "https://sqs.eu-west-1.amazonaws.com");
    assert_true(fg_aws_endpoint("sqs", "cn-northwest-1", url, sizeof(url)));
    assert_string_equal(url, "https://sqs.cn-northwest-1.amazonaws.com.cn");
    assert_false(fg_aws_endpoint("sqs", "eu west", url, sizeof(url)));
    assert_false(fg_aws_endpoint("sqs", "eu-west-1", url, 20));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_creds_parse_imds),
        cmocka_unit_test(test_creds_refresh_timing),
        cmocka_unit_test(test_region_from_url),
        cmocka_unit_test(test_region_valid_and_endpoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
