/* test_response.c — the response parser: status line, framing rules of RFC 9112 §6.3. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "http/http.h"
#include "guard.h"

static const struct fg_http_limits lim = {
    .max_request_line = 256, .max_header_bytes = 1024, .max_headers = 16};
static struct fg_http_response resp;

static int parse(const char *s, size_t len, enum fg_http_method m, enum fg_http_error *e)
{
    struct guard g;
    char *p = guard_place(&g, s, len);
    assert_non_null(p);
    int rc = fg_http_parse_response(p, len, &lim, m, &resp, e);
    guard_free(&g);
    return rc;
}

static void prefixes(const char *s, size_t len, enum fg_http_method m, int whole,
                     enum fg_http_error we)
{
    for (size_t k = 0; k < len; k++) {
        enum fg_http_error e = FG_HTTP_E_NONE;
        int rc = parse(s, k, m, &e);
        if (rc == FG_HTTP_INCOMPLETE || (whole == FG_HTTP_ERROR && rc == whole && e == we))
            continue;
        fail_msg("prefix %zu of: %s gave rc=%d %s", k, s, rc, fg_http_error_name(e));
    }
}

static void ok(const char *s, enum fg_http_method m)
{
    enum fg_http_error e = FG_HTTP_E_NONE;
    int rc = parse(s, strlen(s), m, &e);
    if (rc != (int)strlen(s))
        fail_msg("rc=%d %s for: %s", rc, fg_http_error_name(e), s);
    prefixes(s, strlen(s), m, rc, e);
    /* again in place: the slices must stay valid for the assertions that follow */
    assert_int_equal(fg_http_parse_response(s, strlen(s), &lim, m, &resp, &e), (int)strlen(s));
}

static void bad(const char *s, enum fg_http_error want)
{
    enum fg_http_error e = FG_HTTP_E_NONE;
    int rc = parse(s, strlen(s), FG_HTTP_GET, &e);
    if (rc != FG_HTTP_ERROR || e != want)
        fail_msg("want %s got rc=%d %s for: %s", fg_http_error_name(want), rc,
                 fg_http_error_name(e), s);
    prefixes(s, strlen(s), FG_HTTP_GET, rc, e);
}

static void test_status_line(void **state)
{
    (void)state;
    ok("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", FG_HTTP_GET);
    assert_int_equal(resp.status, 200);
    assert_int_equal(resp.minor_version, 1);
    assert_int_equal(resp.reason_len, 2);
    assert_memory_equal(resp.reason, "OK", 2);
    ok("HTTP/1.0 404 Not Found Here\r\n\r\n", FG_HTTP_GET);
    assert_int_equal(resp.status, 404);
    assert_int_equal(resp.minor_version, 0);
    assert_int_equal(resp.reason_len, 14);
    ok("HTTP/1.1 204 \r\n\r\n", FG_HTTP_GET);
    assert_int_equal(resp.reason_len, 0);
    ok("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", FG_HTTP_GET);
    assert_int_equal(resp.status, 200);
}

static void test_bad_status_lines(void **state)
{
    (void)state;
    bad("HTTP/1.1 20 OK\r\n\r\n", FG_HTTP_E_STATUS_LINE);
    bad("HTTP/1.1 2000 OK\r\n\r\n", FG_HTTP_E_STATUS_LINE);
    bad("HTTP/1.1 099 OK\r\n\r\n", FG_HTTP_E_STATUS_LINE);
    bad("HTTP/1.1  200 OK\r\n\r\n", FG_HTTP_E_STATUS_LINE);
    bad("HTTP/1.1 abc OK\r\n\r\n", FG_HTTP_E_STATUS_LINE);
    bad("HTTX/1.1 200 OK\r\n\r\n", FG_HTTP_E_STATUS_LINE);
    bad("HTTP/2.0 200 OK\r\n\r\n", FG_HTTP_E_VERSION_UNSUPPORTED);
    bad("HTTP/1.1 200 O\x01K\r\n\r\n", FG_HTTP_E_STATUS_LINE);
    bad("HTTP/1.1 200 OK\n\r\n", FG_HTTP_E_BARE_LF);
    bad("HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n", FG_HTTP_E_OBS_FOLD);
    bad("HTTP/1.1 200 OK\r\nX : a\r\n\r\n", FG_HTTP_E_SPACE_BEFORE_COLON);
}

static void test_framing(void **state)
{
    (void)state;
    ok("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", FG_HTTP_GET);
    assert_int_equal(resp.body, FG_HTTP_BODY_LENGTH);
    assert_int_equal(resp.content_length, 10);
    ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", FG_HTTP_GET);
    assert_int_equal(resp.body, FG_HTTP_BODY_CHUNKED);
    ok("HTTP/1.1 200 OK\r\nX: y\r\n\r\n", FG_HTTP_GET);
    assert_int_equal(resp.body, FG_HTTP_BODY_CLOSE);
    /* HEAD, 1xx, 204, 304: never a body, whatever the fields say */
    ok("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", FG_HTTP_HEAD);
    assert_int_equal(resp.body, FG_HTTP_BODY_NONE);
    assert_int_equal(resp.content_length, 10);
    ok("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", FG_HTTP_GET);
    assert_int_equal(resp.body, FG_HTTP_BODY_NONE);
    ok("HTTP/1.1 204 No Content\r\n\r\n", FG_HTTP_GET);
    assert_int_equal(resp.body, FG_HTTP_BODY_NONE);
    ok("HTTP/1.1 100 Continue\r\n\r\n", FG_HTTP_POST);
    assert_int_equal(resp.body, FG_HTTP_BODY_NONE);
    ok("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", FG_HTTP_GET);
    assert_true(resp.flags & FG_HTTP_F_CONN_CLOSE);
    ok("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", FG_HTTP_GET);
    assert_true(resp.flags & FG_HTTP_F_CONN_KEEPALIVE);
}

static void test_bad_framing(void **state)
{
    (void)state;
    bad("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        FG_HTTP_E_CL_TE);
    bad("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
        FG_HTTP_E_CL_DUPLICATE);
    bad("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", FG_HTTP_E_CL_INVALID);
    bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", FG_HTTP_E_TE_UNSUPPORTED);
    bad("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", FG_HTTP_E_TE_UNSUPPORTED);
}

static void test_limits(void **state)
{
    (void)state;
    char big[1500];
    int n = snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nX: ");
    memset(big + n, 'v', sizeof(big) - (size_t)n);
    enum fg_http_error e;
    assert_int_equal(parse(big, 900, FG_HTTP_GET, &e), FG_HTTP_INCOMPLETE);
    assert_int_equal(parse(big, sizeof(big), FG_HTTP_GET, &e), FG_HTTP_ERROR);
    assert_int_equal(e, FG_HTTP_E_HEADERS_TOO_LARGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_line), cmocka_unit_test(test_bad_status_lines),
        cmocka_unit_test(test_framing),     cmocka_unit_test(test_bad_framing),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests_name("http response parser", tests, NULL, NULL);
}
