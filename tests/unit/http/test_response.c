/*
 * test_response.c — the response parser: status line, field rules, and body framing per
 * RFC 9112 §6.3 (HEAD, 1xx, 204, 304: none; then chunked; then Content-Length; else
 * until close). Every case runs from right before an unreadable page and as every prefix.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "helpers.h"
#include "http/http.h"

static const struct fg_http_limits lim = {
    .max_request_line = 256, .max_header_bytes = 1024, .max_headers = 8};
static struct fg_http_response resp;
static size_t n_cases;

static int parse(const char *s, size_t len, enum fg_http_method m, enum fg_http_error *e)
{
    struct guard g;
    char *p = guard_place(&g, s, len);
    *e = FG_HTTP_E_NONE;
    int rc = fg_http_parse_response(p, len, &lim, m, &resp, e);
    guard_free(&g);
    if ((rc == FG_HTTP_ERROR) != (*e != FG_HTTP_E_NONE))
        fail_msg("rc=%d and reason %s disagree", rc, fg_http_error_name(*e));
    return rc;
}

static int run_case(const char *s, size_t len, enum fg_http_method m, enum fg_http_error *e)
{
    n_cases++;
    for (size_t k = 0; k < len; k++) {
        enum fg_http_error pe;
        int rc = parse(s, k, m, &pe);
        if (rc == FG_HTTP_INCOMPLETE)
            continue;
        enum fg_http_error we;
        int whole = parse(s, len, m, &we);
        if (whole == FG_HTTP_ERROR && rc == FG_HTTP_ERROR && pe == we)
            continue;
        fail_msg("prefix %zu of %zu: rc=%d %s, whole rc=%d %s: %.*s", k, len, rc,
                 fg_http_error_name(pe), whole, fg_http_error_name(we), (int)len, s);
    }
    char more[2048];
    int rc = parse(s, len, m, e);
    if (len + 16 <= sizeof(more)) {
        memcpy(more, s, len);
        memcpy(more + len, "hello\r\n0\r\n\r\n\x01\x02\x03", 16);
        enum fg_http_error e2;
        int rc2 = parse(more, len + 16, m, &e2);
        if (rc2 != rc || e2 != *e)
            fail_msg("a body after the head changed the answer: %.*s", (int)len, s);
    }
    return parse(s, len, m, e);
}

struct bad {
    const char *in;
    size_t len;
    enum fg_http_error err;
};
#define B(s, e)                                                                                    \
    {                                                                                              \
        s, sizeof(s) - 1, FG_HTTP_E_##e                                                            \
    }
#define OK200 "HTTP/1.1 200 OK\r\n"

static const struct bad bad_cases[] = {
    B("HTTP/1.1 20 OK\r\n\r\n", STATUS_LINE),
    B("HTTP/1.1 2000 OK\r\n\r\n", STATUS_LINE),
    B("HTTP/1.1 099 OK\r\n\r\n", STATUS_LINE),
    B("HTTP/1.1 000 OK\r\n\r\n", STATUS_LINE),
    B("HTTP/1.1  200 OK\r\n\r\n", STATUS_LINE),
    B("HTTP/1.1 abc OK\r\n\r\n", STATUS_LINE),
    B("HTTP/1.1 2x0 OK\r\n\r\n", STATUS_LINE),
    B("HTTP/1.1 -20 OK\r\n\r\n", STATUS_LINE),
    B("HTTP/1.1\t200 OK\r\n\r\n", STATUS_LINE),
    B("HTTP/1.1\r\n\r\n", STATUS_LINE),
    B("HTTP/1.1 \r\n\r\n", STATUS_LINE),
    B("HTTX/1.1 200 OK\r\n\r\n", STATUS_LINE),
    B("http/1.1 200 OK\r\n\r\n", STATUS_LINE),
    B("HTTP/1.10 200 OK\r\n\r\n", STATUS_LINE),
    B("HTTP/1 200 OK\r\n\r\n", STATUS_LINE),
    B("ICY 200 OK\r\n\r\n", STATUS_LINE),
    B(" HTTP/1.1 200 OK\r\n\r\n", STATUS_LINE),
    B("\r\nHTTP/1.1 200 OK\r\n\r\n", STATUS_LINE),
    B("<html>\r\n", STATUS_LINE),
    B("HTTP/1.1 200 O\x01K\r\n\r\n", STATUS_LINE),
    B("HTTP/1.1 200 OK\x7f\r\n\r\n", STATUS_LINE),
    B("HTTP/1.1 200 OK\x00\r\n\r\n", STATUS_LINE),
    B("HTTP/1.1 200\tOK\r\n\r\n", STATUS_LINE),
    B("HTTP/2.0 200 OK\r\n\r\n", VERSION_UNSUPPORTED),
    B("HTTP/1.2 200 OK\r\n\r\n", VERSION_UNSUPPORTED),
    B("HTTP/0.9 200 OK\r\n\r\n", VERSION_UNSUPPORTED),
    B("HTTP/1.1 200 OK\n\r\n", BARE_LF),
    B("HTTP/1.1 200\n\r\n", BARE_LF),
    B("HTTP/1.1 200 OK\rX: y\r\n\r\n", BARE_CR),
    B(OK200 "X: a\nY: b\r\n\r\n", BARE_LF),
    B(OK200 "X: a\rY: b\r\n\r\n", BARE_CR),
    B(OK200 "\n", BARE_LF),
    B(OK200 "\r\r\n", BARE_CR),
    B(OK200 "X: a\r\n folded\r\n\r\n", OBS_FOLD),
    B(OK200 "X: a\r\n\tfolded\r\n\r\n", OBS_FOLD),
    B(OK200 " X: a\r\n\r\n", OBS_FOLD),
    B(OK200 "Transfer-Encoding:\r\n chunked\r\n\r\n", OBS_FOLD),
    B(OK200 "X : a\r\n\r\n", SPACE_BEFORE_COLON),
    B(OK200 "Content-Length : 5\r\n\r\n", SPACE_BEFORE_COLON),
    B(OK200 ": a\r\n\r\n", HEADER_NAME),
    B(OK200 "X(y): a\r\n\r\n", HEADER_NAME),
    B(OK200 "NoColon\r\n\r\n", HEADER_NAME),
    B(OK200 "X: a\x01\r\n\r\n", HEADER_VALUE),
    B(OK200 "X: a\x00\r\n\r\n", HEADER_VALUE),
    B(OK200 "Set-Cookie: a=b\x0b\r\n\r\n", HEADER_VALUE),
    B(OK200 "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", CL_TE),
    B(OK200 "Transfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n", CL_TE),
    B("HTTP/1.1 304 Not Modified\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
      CL_TE),
    B("HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", CL_TE),
    B(OK200 "Content-Length: 1\r\nContent-Length: 1\r\n\r\n", CL_DUPLICATE),
    B(OK200 "Content-Length: 1\r\nContent-Length: 2\r\n\r\n", CL_DUPLICATE),
    B(OK200 "Content-Length: x\r\n\r\n", CL_INVALID),
    B(OK200 "Content-Length: 1, 1\r\n\r\n", CL_INVALID),
    B(OK200 "Content-Length: -1\r\n\r\n", CL_INVALID),
    B(OK200 "Content-Length: +1\r\n\r\n", CL_INVALID),
    B(OK200 "Content-Length: \r\n\r\n", CL_INVALID),
    B(OK200 "Content-Length: 1 2\r\n\r\n", CL_INVALID),
    B(OK200 "Content-Length: 99999999999999999999\r\n\r\n", CL_INVALID),
    B("HTTP/1.1 304 Not Modified\r\nContent-Length: abc\r\n\r\n", CL_INVALID),
    B(OK200 "Transfer-Encoding: gzip\r\n\r\n", TE_UNSUPPORTED),
    B(OK200 "Transfer-Encoding: gzip, chunked\r\n\r\n", TE_UNSUPPORTED),
    B(OK200 "Transfer-Encoding: chunked, chunked\r\n\r\n", TE_UNSUPPORTED),
    B(OK200 "Transfer-Encoding: identity\r\n\r\n", TE_UNSUPPORTED),
    B(OK200 "Transfer-Encoding: \r\n\r\n", TE_UNSUPPORTED),
    B(OK200 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", TE_UNSUPPORTED),
    B("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", TE_UNSUPPORTED),
    B(OK200 "A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\nH: 8\r\nI: 9\r\n\r\n",
      HEADERS_TOO_LARGE),
};

static void test_bad_responses(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(bad_cases); i++) {
        const struct bad *b = &bad_cases[i];
        enum fg_http_error e;
        int rc = run_case(b->in, b->len, FG_HTTP_GET, &e);
        if (rc != FG_HTTP_ERROR || e != b->err)
            fail_msg("case %zu: want %s, got rc=%d %s for: %.*s", i, fg_http_error_name(b->err), rc,
                     fg_http_error_name(e), (int)b->len, b->in);
    }
}

struct good {
    const char *in;
    enum fg_http_method method;
    int status, minor;
    const char *reason;
    enum fg_http_body body;
    uint64_t cl;
    unsigned flags;
};

#define NONE   FG_HTTP_BODY_NONE
#define LENGTH FG_HTTP_BODY_LENGTH
#define CHUNK  FG_HTTP_BODY_CHUNKED
#define CLOSE  FG_HTTP_BODY_CLOSE

static const struct good good_cases[] = {
    {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", FG_HTTP_GET, 200, 1, "OK", LENGTH, 2, 0},
    {"HTTP/1.0 404 Not Found Here\r\n\r\n", FG_HTTP_GET, 404, 0, "Not Found Here", CLOSE, 0, 0},
    {"HTTP/1.1 204 \r\n\r\n", FG_HTTP_GET, 204, 1, "", NONE, 0, 0},
    {"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", FG_HTTP_GET, 200, 1, NULL, LENGTH, 0, 0},
    {"HTTP/1.1 999 Whatever\r\n\r\n", FG_HTTP_GET, 999, 1, "Whatever", CLOSE, 0, 0},
    {"HTTP/1.1 200 \xc3\x84rger \"ok\"\t(\x80)\r\nContent-Length: 1\r\n\r\n", FG_HTTP_GET, 200, 1,
     "\xc3\x84rger \"ok\"\t(\x80)", LENGTH, 1, 0},
    {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", FG_HTTP_GET, 200, 1, "OK", LENGTH, 10, 0},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", FG_HTTP_GET, 200, 1, "OK", CHUNK, 0,
     0},
    {"HTTP/1.1 200 OK\r\ntransfer-encoding:  Chunked \r\n\r\n", FG_HTTP_POST, 200, 1, "OK", CHUNK,
     0, 0},
    {"HTTP/1.1 200 OK\r\nX: y\r\n\r\n", FG_HTTP_GET, 200, 1, "OK", CLOSE, 0, 0},
    {"HTTP/1.1 500 Oops\r\n\r\n", FG_HTTP_POST, 500, 1, "Oops", CLOSE, 0, 0},
    /* HEAD, 1xx, 204, 304: never a body, whatever the fields say */
    {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", FG_HTTP_HEAD, 200, 1, "OK", NONE, 10, 0},
    {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", FG_HTTP_HEAD, 200, 1, "OK", NONE, 0,
     0},
    {"HTTP/1.1 404 Not Found\r\n\r\n", FG_HTTP_HEAD, 404, 1, "Not Found", NONE, 0, 0},
    {"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", FG_HTTP_GET, 304, 1, "Not Modified",
     NONE, 10, 0},
    {"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", FG_HTTP_GET, 304, 1,
     "Not Modified", NONE, 0, 0},
    {"HTTP/1.1 204 No Content\r\n\r\n", FG_HTTP_GET, 204, 1, "No Content", NONE, 0, 0},
    {"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", FG_HTTP_DELETE, 204, 1, "No Content",
     NONE, 0, 0},
    {"HTTP/1.1 100 Continue\r\n\r\n", FG_HTTP_POST, 100, 1, "Continue", NONE, 0, 0},
    {"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n", FG_HTTP_GET, 103, 1,
     "Early Hints", NONE, 0, 0},
    {"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
     FG_HTTP_GET, 101, 1, "Switching Protocols", NONE, 0,
     FG_HTTP_F_CONN_UPGRADE | FG_HTTP_F_HAS_UPGRADE},
    /* connection facts */
    {"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", FG_HTTP_GET, 200, 1, "OK",
     LENGTH, 1, FG_HTTP_F_CONN_CLOSE},
    {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", FG_HTTP_GET, 200, 0,
     "OK", LENGTH, 1, FG_HTTP_F_CONN_KEEPALIVE},
    {"HTTP/1.1 200 OK\r\nConnection: x-a, close\r\nX-A: 1\r\n\r\n", FG_HTTP_GET, 200, 1, "OK",
     CLOSE, 0, FG_HTTP_F_CONN_CLOSE | FG_HTTP_F_CONN_OTHER},
    /* Host and Expect mean nothing in a response */
    {"HTTP/1.1 200 OK\r\nHost: a b\r\nHost: c\r\nExpect: x\r\nContent-Length: 0\r\n\r\n",
     FG_HTTP_GET, 200, 1, "OK", LENGTH, 0, 0},
};

static void test_good_responses(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(good_cases); i++) {
        const struct good *g = &good_cases[i];
        size_t len = strlen(g->in);
        enum fg_http_error e;
        int rc = run_case(g->in, len, g->method, &e);
        if (rc != (int)len)
            fail_msg("case %zu: rc=%d %s for: %s", i, rc, fg_http_error_name(e), g->in);
        /* again in place: the slices stay valid for the checks below */
        assert_int_equal(fg_http_parse_response(g->in, len, &lim, g->method, &resp, &e), (int)len);
        if (resp.status != g->status || resp.minor_version != g->minor || resp.body != g->body ||
            resp.flags != g->flags || resp.head_len != len)
            fail_msg("case %zu: status %d minor %d body %d flags %#x for: %s", i, resp.status,
                     resp.minor_version, resp.body, resp.flags, g->in);
        if (resp.content_length != g->cl)
            fail_msg("case %zu: content_length %llu", i, (unsigned long long)resp.content_length);
        if (g->reason == NULL) {
            assert_null(resp.reason);
        } else if (resp.reason_len != strlen(g->reason) ||
                   memcmp(resp.reason, g->reason, resp.reason_len) != 0) {
            fail_msg("case %zu: reason '%.*s'", i, (int)resp.reason_len, resp.reason);
        }
    }
}

static void test_every_status_code(void **state)
{
    (void)state;
    for (int st = 100; st <= 999; st++) {
        char buf[64];
        int n = snprintf(buf, sizeof(buf), "HTTP/1.1 %d X\r\nContent-Length: 3\r\n\r\n", st);
        enum fg_http_error e;
        assert_int_equal(parse(buf, (size_t)n, FG_HTTP_GET, &e), n);
        assert_int_equal(resp.status, st);
        bool none = st < 200 || st == 204 || st == 304;
        assert_int_equal(resp.body, none ? FG_HTTP_BODY_NONE : FG_HTTP_BODY_LENGTH);
    }
}

static void test_limits(void **state)
{
    (void)state;
    char big[1500];
    int n = snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nX: ");
    memset(big + n, 'v', sizeof(big) - (size_t)n);
    enum fg_http_error e;
    assert_int_equal(parse(big, 900, FG_HTTP_GET, &e), FG_HTTP_INCOMPLETE);
    assert_int_equal(parse(big, lim.max_header_bytes - 1, FG_HTTP_GET, &e), FG_HTTP_INCOMPLETE);
    assert_int_equal(parse(big, lim.max_header_bytes, FG_HTTP_GET, &e), FG_HTTP_ERROR);
    assert_int_equal(e, FG_HTTP_E_HEADERS_TOO_LARGE);
    assert_int_equal(parse(big, sizeof(big), FG_HTTP_GET, &e), FG_HTTP_ERROR);
    assert_int_equal(e, FG_HTTP_E_HEADERS_TOO_LARGE);
    /* a reason phrase that never ends counts against the head too */
    n = snprintf(big, sizeof(big), "HTTP/1.1 200 ");
    memset(big + n, 'r', sizeof(big) - (size_t)n);
    assert_int_equal(parse(big, sizeof(big), FG_HTTP_GET, &e), FG_HTTP_ERROR);
    assert_int_equal(e, FG_HTTP_E_HEADERS_TOO_LARGE);
    /* exactly at the limit passes */
    n = snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nX: ");
    size_t fill = lim.max_header_bytes - (size_t)n - 4;
    memset(big + n, 'v', fill);
    memcpy(big + n + fill, "\r\n\r\n", 4);
    assert_int_equal(run_case(big, lim.max_header_bytes, FG_HTTP_GET, &e),
                     (int)lim.max_header_bytes);
}

static int report(void **state)
{
    (void)state;
    printf("# %zu response cases, each also fed as every prefix\n", n_cases);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_responses),
        cmocka_unit_test(test_good_responses),
        cmocka_unit_test(test_every_status_code),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests_name("http response parser", tests, NULL, report);
}
