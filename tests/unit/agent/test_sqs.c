/* test_sqs.c — the SQS sink's pure parts: SendMessageBatch entries (JSON escaping, the
 * UTF-8/base64 decision, attributes, FIFO ids), batching by count and by encoded size,
 * answer parsing and classification. (The JSON reader, credentials and URLs are tested
 * with their modules: tests/unit/json, tests/unit/aws, tests/unit/httpc.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/evp.h>

#include "agent/agentd.h"

/* ---- helpers ------------------------------------------------------------------------------- */

static struct fg_agent_record rec(const char *key, const void *body, size_t len)
{
    struct fg_agent_record r = {0};
    r.key = key;
    r.key_len = strlen(key);
    r.method = "POST";
    r.method_len = 4;
    r.target = "/api/orders?x=1";
    r.target_len = strlen(r.target);
    r.body = body;
    r.body_len = len;
    return r;
}

static void add_header(struct fg_agent_record *r, const char *n, const char *v)
{
    r->headers[r->n_headers++] = (struct fg_agent_header){n, strlen(n), v, strlen(v)};
}

/* The entry for r as a parsed JSON object ({"Id":"0", tail}), and its text in *text. */
static struct fg_json *entry(const struct fg_agent_record *r, const struct fg_sqs_entry_opts *o,
                             char **text)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, "{\"Id\":\"0\",", 10);
    assert_true(fg_sqs_encode_entry(b, r, o));
    size_t n = evbuffer_get_length(b);
    char *t = malloc(n + 1);
    evbuffer_remove(b, t, n);
    t[n] = '\0';
    evbuffer_free(b);
    char err[128];
    struct fg_json *j = fg_json_parse(t, n, err, sizeof(err));
    if (j == NULL)
        fail_msg("entry is not JSON (%s): %s", err, t);
    if (text != NULL)
        *text = t;
    else
        free(t);
    return j;
}

static const char *attr(const struct fg_json *e, const char *name)
{
    return fg_json_get_string(fg_json_get(fg_json_get(e, "MessageAttributes"), name), "StringValue",
                              NULL);
}

/* ---- entries -------------------------------------------------------------------------------- */

static void test_entry_text_body_escaped_and_attributes(void **state)
{
    (void)state;
    const char body[] = "caf\xc3\xa9 \"q\" \\ \n\t \xe2\x98\x83";
    struct fg_agent_record r = rec("k-1", body, strlen(body));
    add_header(&r, "Content-Type", "application/json");
    add_header(&r, "X-Tenant", "t\xe9"); /* latin1 byte: escaped, not passed raw */
    struct fg_sqs_entry_opts o = {0};
    char *text;
    struct fg_json *j = entry(&r, &o, &text);
    size_t bl;
    const char *b = fg_json_get_string(j, "MessageBody", &bl);
    assert_non_null(b);
    assert_int_equal(bl, strlen(body));
    assert_memory_equal(b, body, bl);
    assert_non_null(strstr(text, "\\\"q\\\" \\\\ \\n\\t"));
    assert_string_equal(attr(j, "fg-method"), "POST");
    assert_string_equal(attr(j, "fg-path"), "/api/orders?x=1");
    assert_string_equal(attr(j, "fg-idempotency-key"), "k-1");
    assert_string_equal(attr(j, "fg-content-type"), "application/json");
    assert_null(attr(j, "fg-body-encoding"));
    assert_null(fg_json_get(j, "MessageGroupId"));
    /* fg-headers is JSON in a JSON string; the latin1 byte became \u00e9. */
    const char *h = attr(j, "fg-headers");
    assert_non_null(h);
    assert_string_equal(h, "[[\"Content-Type\",\"application/json\"],[\"X-Tenant\",\"t\\u00e9\"]]");
    char err[64];
    struct fg_json *hj = fg_json_parse(h, strlen(h), err, sizeof(err));
    assert_non_null(hj);
    char *v = hj->child->next->child->next->str;
    size_t vl = fg_json_latin1(v, hj->child->next->child->next->len);
    assert_int_equal(vl, 2);
    assert_memory_equal(v, "t\xe9", 2);
    fg_json_free(hj);
    fg_json_free(j);
    free(text);
}

static void test_entry_base64_for_binary_controls_and_bad_utf8(void **state)
{
    (void)state;
    struct {
        const char *body;
        size_t len;
        const char *enc;
    } cases[] = {
        {"\x00\x01\xff", 3, "base64"}, /* NUL and a byte that is never UTF-8 */
        {"a\x01z", 3, "base64"},       /* valid UTF-8, but SQS refuses U+0001 */
        {"\xc0\xaf", 2, "base64"},     /* overlong '/' */
        {"\xed\xa0\x80", 3, "base64"}, /* a surrogate */
        {"\xef\xbf\xbe", 3, "base64"}, /* U+FFFE, outside SQS's set */
        {"\xe2\x82", 2, "base64"},     /* truncated */
        {"", 0, "empty"},
        {"\xf0\x9f\x98\x80 ok\r\n", 8, NULL}, /* emoji, CR LF: text */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fg_agent_record r = rec("k", cases[i].body, cases[i].len);
        struct fg_sqs_entry_opts o = {0};
        struct fg_json *j = entry(&r, &o, NULL);
        const char *enc = attr(j, "fg-body-encoding");
        if (cases[i].enc == NULL) {
            assert_null(enc);
        } else {
            assert_non_null(enc);
            assert_string_equal(enc, cases[i].enc);
        }
        if (cases[i].enc != NULL && strcmp(cases[i].enc, "base64") == 0) {
            size_t bl;
            const char *b = fg_json_get_string(j, "MessageBody", &bl);
            unsigned char out[16];
            int n = EVP_DecodeBlock(out, (const unsigned char *)b, (int)bl);
            size_t pad = (b[bl - 1] == '=') + (b[bl - 2] == '=');
            assert_int_equal((size_t)n - pad, cases[i].len);
            assert_memory_equal(out, cases[i].body, cases[i].len);
        }
        fg_json_free(j);
    }
    assert_true(fg_sqs_text_ok("\t\n\r \x7f", 5));
    assert_false(fg_sqs_text_ok("\x0b", 1));
}

static void test_entry_fifo_ids(void **state)
{
    (void)state;
    struct fg_agent_record r = rec("key-7", "x", 1);
    add_header(&r, "x-tenant", "acme");
    struct fg_sqs_entry_opts o = {.fifo = true, .group_header = "X-Tenant"};
    struct fg_json *j = entry(&r, &o, NULL);
    assert_string_equal(fg_json_get_string(j, "MessageGroupId", NULL), "acme");
    assert_string_equal(fg_json_get_string(j, "MessageDeduplicationId", NULL), "key-7");
    fg_json_free(j);
    /* No such header: the fixed group, else "flashgate". */
    struct fg_sqs_entry_opts o2 = {.fifo = true, .group = "g1", .group_header = "X-Other"};
    j = entry(&r, &o2, NULL);
    assert_string_equal(fg_json_get_string(j, "MessageGroupId", NULL), "g1");
    fg_json_free(j);
    struct fg_sqs_entry_opts o3 = {.fifo = true};
    j = entry(&r, &o3, NULL);
    assert_string_equal(fg_json_get_string(j, "MessageGroupId", NULL), "flashgate");
    fg_json_free(j);
    /* A key over SQS's 128 characters: its SHA-256, stable and 64 hex digits. */
    char longkey[201];
    memset(longkey, 'k', 200);
    longkey[200] = '\0';
    struct fg_agent_record rl = rec(longkey, "x", 1);
    j = entry(&rl, &o3, NULL);
    char hex[FG_SIGV4_HEX_LEN + 1];
    assert_true(fg_sigv4_sha256_hex(longkey, 200, hex));
    assert_string_equal(fg_json_get_string(j, "MessageDeduplicationId", NULL), hex);
    fg_json_free(j);
}

/* ---- batching -------------------------------------------------------------------------------- */

static void test_batch_plan_ten_entries_at_most(void **state)
{
    (void)state;
    size_t sizes[25];
    for (size_t i = 0; i < 25; i++)
        sizes[i] = 100;
    assert_int_equal(fg_sqs_batch_plan(sizes, 25, 10, FG_SQS_BATCH_BYTES), 10);
    assert_int_equal(fg_sqs_batch_plan(sizes, 7, 10, FG_SQS_BATCH_BYTES), 7);
    assert_int_equal(fg_sqs_batch_plan(sizes, 25, 3, FG_SQS_BATCH_BYTES), 3);
    assert_int_equal(fg_sqs_batch_plan(sizes, 0, 10, FG_SQS_BATCH_BYTES), 0);
}

static void test_batch_plan_counts_encoded_bytes(void **state)
{
    (void)state;
    /* Entry i costs: a comma (i > 0), {"Id":"<i>", and its tail. */
    assert_int_equal(fg_sqs_entry_size(100, 0), 110);
    assert_int_equal(fg_sqs_entry_size(100, 9), 111);
    /* Four entries of 64 KiB tails: 4 * 65546 + 3 > 256 KiB, so only three fit. */
    size_t sizes[4] = {65536, 65536, 65536, 65536};
    assert_int_equal(fg_sqs_batch_plan(sizes, 4, 10, FG_SQS_BATCH_BYTES), 3);
    /* Exactly at the limit fits, one byte more does not. */
    size_t exact = FG_SQS_BATCH_BYTES - fg_sqs_entry_size(0, 0) - fg_sqs_entry_size(1000, 1);
    size_t two[2] = {exact, 1000};
    assert_int_equal(fg_sqs_batch_plan(two, 2, 10, FG_SQS_BATCH_BYTES), 2);
    two[0]++;
    assert_int_equal(fg_sqs_batch_plan(two, 2, 10, FG_SQS_BATCH_BYTES), 1);
    /* A real record whose body escapes to more than 256 KiB: the encoded size counts. */
    size_t n = 100 * 1024;
    char *body = malloc(n);
    memset(body, '"', n); /* 100 KiB raw, 200 KiB escaped */
    struct fg_agent_record r = rec("k", body, n);
    struct evbuffer *b = evbuffer_new();
    fg_sqs_encode_entry(b, &r, &(struct fg_sqs_entry_opts){0});
    size_t tail = evbuffer_get_length(b);
    assert_true(tail > 2 * n);
    size_t big[2] = {tail, tail};
    assert_int_equal(fg_sqs_batch_plan(big, 2, 10, FG_SQS_BATCH_BYTES), 1);
    evbuffer_free(b);
    free(body);
}

static void test_batch_plan_single_record_too_big_goes_alone(void **state)
{
    (void)state;
    size_t sizes[3] = {300 * 1024, 10, 10};
    assert_int_equal(fg_sqs_batch_plan(sizes, 3, 10, FG_SQS_BATCH_BYTES), 1);
    size_t after[3] = {10, 300 * 1024, 10};
    assert_int_equal(fg_sqs_batch_plan(after, 3, 10, FG_SQS_BATCH_BYTES), 1);
}

/* ---- answers --------------------------------------------------------------------------------- */

static void test_parse_batch_response_partial_failure(void **state)
{
    (void)state;
    const char *body =
        "{\"Successful\":[{\"Id\":\"0\",\"MessageId\":\"m0\",\"MD5OfMessageBody\":\"x\"},"
        "{\"Id\":\"2\",\"MessageId\":\"m2\"}],"
        "\"Failed\":[{\"Id\":\"1\",\"SenderFault\":true,\"Code\":\"InvalidMessageContents\","
        "\"Message\":\"bad\"},{\"Id\":\"3\",\"SenderFault\":false,\"Code\":\"InternalError\"}]}";
    struct fg_sqs_batch_result br;
    char err[128];
    assert_true(fg_sqs_parse_batch_response(body, strlen(body), 5, &br, err, sizeof(err)));
    assert_int_equal(br.outcome[0], FG_SQS_SENT);
    assert_int_equal(br.outcome[1], FG_SQS_SENDER_FAULT);
    assert_string_equal(br.code[1], "InvalidMessageContents");
    assert_int_equal(br.outcome[2], FG_SQS_SENT);
    assert_int_equal(br.outcome[3], FG_SQS_RETRYABLE);
    assert_int_equal(br.outcome[4], FG_SQS_MISSING); /* in neither list: retried */
    assert_int_equal(br.n_sent, 2);
    assert_int_equal(br.n_failed, 2);
    /* Ids we did not send, and answers that are not the expected JSON, are refused. */
    const char *bad[] = {"{\"Successful\":[{\"Id\":\"7\"}]}",
                         "{\"Successful\":[{\"Id\":\"00\"}]}",
                         "{\"Successful\":{}}",
                         "[]",
                         "{\"Successful\":[{\"Id\":\"0\"}],}",
                         "<html>"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(fg_sqs_parse_batch_response(bad[i], strlen(bad[i]), 5, &br, err, sizeof(err)));
}

static enum fg_sqs_verdict classify(int status, const char *body, const char *head, char *code)
{
    struct fg_httpc_result r = {.status = status,
                                .body = body,
                                .body_len = strlen(body),
                                .head = head,
                                .head_len = head != NULL ? strlen(head) : 0};
    return fg_sqs_classify(&r, code, 64);
}

static void test_classify_throttling_content_and_failures(void **state)
{
    (void)state;
    char code[64];
    assert_int_equal(classify(200, "{}", NULL, code), FG_SQS_OK);
    assert_int_equal(classify(429, "", NULL, code), FG_SQS_THROTTLED);
    assert_int_equal(classify(400,
                              "{\"__type\":\"com.amazon.coral.availability#ThrottlingException\"}",
                              NULL, code),
                     FG_SQS_THROTTLED);
    assert_string_equal(code, "ThrottlingException");
    assert_int_equal(classify(400, "",
                              "HTTP/1.1 400 Bad\r\nx-amzn-query-error: "
                              "AWS.SimpleQueueService.RequestThrottled;Sender\r\n\r\n",
                              code),
                     FG_SQS_THROTTLED);
    /* SQS's JSON protocol answers RequestThrottled with 403 (the query protocol too). */
    assert_int_equal(
        classify(403, "{\"__type\":\"com.amazonaws.sqs#RequestThrottled\"}", NULL, code),
        FG_SQS_THROTTLED);
    assert_string_equal(code, "RequestThrottled");
    assert_int_equal(classify(403, "",
                              "HTTP/1.1 403 Forbidden\r\nx-amzn-query-error: "
                              "AWS.SimpleQueueService.RequestThrottled;Sender\r\n\r\n",
                              code),
                     FG_SQS_THROTTLED);
    assert_int_equal(classify(400, "{\"__type\":\"com.amazonaws.sqs#KmsThrottled\"}", NULL, code),
                     FG_SQS_THROTTLED);
    assert_int_equal(
        classify(400, "{\"__type\":\"com.amazonaws.sqs#BatchRequestTooLong\"}", NULL, code),
        FG_SQS_BAD_CONTENT);
    /* About us, not the entries: retried, never dropped. */
    assert_int_equal(
        classify(400, "{\"__type\":\"com.amazonaws.sqs#QueueDoesNotExist\"}", NULL, code),
        FG_SQS_FAILED);
    assert_int_equal(classify(403, "{\"__type\":\"InvalidClientTokenId\"}", NULL, code),
                     FG_SQS_FAILED);
    assert_int_equal(classify(403, "{\"__type\":\"com.amazonaws.sqs#AccessDenied\"}", NULL, code),
                     FG_SQS_FAILED);
    assert_int_equal(classify(500, "oops", NULL, code), FG_SQS_FAILED);
    assert_int_equal(classify(503, "", NULL, code), FG_SQS_FAILED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_entry_text_body_escaped_and_attributes),
        cmocka_unit_test(test_entry_base64_for_binary_controls_and_bad_utf8),
        cmocka_unit_test(test_entry_fifo_ids),
        cmocka_unit_test(test_batch_plan_ten_entries_at_most),
        cmocka_unit_test(test_batch_plan_counts_encoded_bytes),
        cmocka_unit_test(test_batch_plan_single_record_too_big_goes_alone),
        cmocka_unit_test(test_parse_batch_response_partial_failure),
        cmocka_unit_test(test_classify_throttling_content_and_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
