/* test_plan.c — the plan for one answer (compress/plan.c): what is compressed for whom,
 * the head's edits (Vary merged, ETag weakened, the length gone, Content-Encoding added),
 * event streams flushed piece by piece, and every refusal counted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "compress/compress.h"

static void parse(const char *s, struct fg_http_response *resp)
{
    struct fg_http_limits lim = {
        .max_request_line = 8192, .max_header_bytes = 65536, .max_headers = FG_HTTP_MAX_HEADERS};
    enum fg_http_error err;
    assert_true(fg_http_parse_response(s, strlen(s), &lim, FG_HTTP_GET, resp, &err) > 0);
}

static size_t fields(const struct fg_compress_plan *plan, char *out)
{
    size_t n = fg_compress_plan_fields(plan, out, FG_COMPRESS_PLAN_FIELDS_MAX);
    out[n] = '\0';
    return n;
}

static void test_compressible_answer(void **state)
{
    (void)state;
    struct fg_http_response resp;
    parse("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nETag: \"e1\"\r\n"
          "Vary: Cookie\r\nContent-Length: 4000\r\n\r\n",
          &resp);
    struct fg_compress_plan plan;
    assert_true(fg_compress_plan_response(NULL, FG_COMPRESS_BR, FG_HTTP_GET, &resp, &plan));
    assert_true(plan.compress && plan.vary_edit && !plan.flush_each);
    char out[FG_COMPRESS_PLAN_FIELDS_MAX + 1];
    fields(&plan, out);
    assert_string_equal(out, "Vary: Cookie, Accept-Encoding\r\nContent-Encoding: br\r\n"
                             "ETag: W/\"e1\"\r\n");
    for (size_t i = 0; i < resp.n_headers; i++) {
        bool replaced = fg_compress_plan_replaces(&plan, &resp.headers[i]);
        bool content_type = resp.headers[i].name_len == 12;
        assert_true(replaced != content_type); /* all replaced but Content-Type */
    }
}

static void test_identity_client_still_gets_vary(void **state)
{
    (void)state;
    struct fg_compress_stats before, after;
    fg_compress_stats_get(&before);
    struct fg_http_response resp;
    parse("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 4000\r\n\r\n", &resp);
    struct fg_compress_plan plan;
    assert_false(fg_compress_plan_response(NULL, FG_COMPRESS_IDENTITY, FG_HTTP_GET, &resp, &plan));
    assert_true(plan.vary_edit); /* caches downstream must key on Accept-Encoding */
    assert_false(plan.compress);
    char out[FG_COMPRESS_PLAN_FIELDS_MAX + 1];
    fields(&plan, out);
    assert_string_equal(out, "Vary: Accept-Encoding\r\n");
    fg_compress_stats_get(&after);
    assert_int_equal(after.skipped[FG_COMPRESS_NO_ACCEPT],
                     before.skipped[FG_COMPRESS_NO_ACCEPT] + 1);
}

static void test_refusals_are_counted(void **state)
{
    (void)state;
    struct fg_compress_stats before, after;
    fg_compress_stats_get(&before);
    struct fg_http_response resp;
    struct fg_compress_plan plan;
    parse("HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 4000\r\n\r\n", &resp);
    assert_false(fg_compress_plan_response(NULL, FG_COMPRESS_GZIP, FG_HTTP_GET, &resp, &plan));
    assert_false(plan.vary_edit);
    parse("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 10\r\n\r\n", &resp);
    assert_false(fg_compress_plan_response(NULL, FG_COMPRESS_GZIP, FG_HTTP_GET, &resp, &plan));
    fg_compress_stats_get(&after);
    assert_int_equal(after.skipped[FG_COMPRESS_NO_TYPE], before.skipped[FG_COMPRESS_NO_TYPE] + 1);
    assert_int_equal(after.skipped[FG_COMPRESS_NO_SMALL], before.skipped[FG_COMPRESS_NO_SMALL] + 1);
}

static void test_event_stream_flushes_each_piece(void **state)
{
    (void)state;
    struct fg_http_response resp;
    parse(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
        &resp);
    struct fg_compress_plan plan;
    assert_true(fg_compress_plan_response(NULL, FG_COMPRESS_GZIP, FG_HTTP_GET, &resp, &plan));
    assert_true(plan.flush_each);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compressible_answer),
        cmocka_unit_test(test_identity_client_still_gets_vary),
        cmocka_unit_test(test_refusals_are_counted),
        cmocka_unit_test(test_event_stream_flushes_each_piece),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
