/*
 * test_request.c — the request parser against valid and invalid heads, each one also
 * fed as every prefix (a prefix is incomplete or already the same error, never another
 * outcome) and placed right before an unreadable page (any over-read crashes).
 */
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
    .max_request_line = 256, .max_header_bytes = 1024, .max_headers = 8};

static int parse(const char *s, size_t len, struct fg_http_request *r, enum fg_http_error *e)
{
    struct guard g;
    char *p = guard_place(&g, s, len);
    assert_non_null(p);
    int rc = fg_http_parse_request(p, len, &lim, r, e);
    guard_free(&g);
    return rc;
}

/* Every strict prefix must be INCOMPLETE or the same error as the whole. */
static void check_prefixes(const char *s, size_t len, int whole_rc, enum fg_http_error whole_err)
{
    static struct fg_http_request r;
    for (size_t k = 0; k < len; k++) {
        enum fg_http_error e = FG_HTTP_E_NONE;
        int rc = parse(s, k, &r, &e);
        if (rc == FG_HTTP_INCOMPLETE)
            continue;
        if (whole_rc == FG_HTTP_ERROR && rc == FG_HTTP_ERROR && e == whole_err)
            continue;
        fail_msg("prefix of %zu bytes of %zu gave rc=%d err=%s for: %.*s", k, len, rc,
                 fg_http_error_name(e), (int)len, s);
    }
}

/* ---- invalid heads ----------------------------------------------------------------- */

struct bad {
    const char *in;
    enum fg_http_error err;
};

#define H11 "GET / HTTP/1.1\r\nHost: a\r\n"
static const struct bad bad_cases[] = {
    /* request line */
    {"G@T / HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_E_METHOD},
    {"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_E_REQUEST_LINE},
    {" GET / HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_E_REQUEST_LINE},
    {"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_E_REQUEST_LINE},
    {"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", FG_HTTP_E_VERSION},
    {"GET /\tx HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_E_REQUEST_LINE},
    {"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_E_VERSION},
    {"GET /\"x HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_E_TARGET},
    {"GET /<script> HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_E_TARGET},
    {"GET /a\\b HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_E_TARGET},
    {"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_E_TARGET},
    {"GET /%4 HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_E_TARGET},
    {"GET /\x80 HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_E_TARGET},
    {"GET x HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_E_TARGET},
    {"GET * HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_E_TARGET},
    {"GET http://user@h/ HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_E_TARGET},
    {"GET http:// HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_E_TARGET},
    {"GET ftp://h/ HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_E_TARGET},
    {"CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_E_TARGET},
    {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", FG_HTTP_E_VERSION_UNSUPPORTED},
    {"GET / HTTP/1.2\r\nHost: a\r\n\r\n", FG_HTTP_E_VERSION_UNSUPPORTED},
    {"GET / HTTP/0.9\r\nHost: a\r\n\r\n", FG_HTTP_E_VERSION_UNSUPPORTED},
    {"GET / HTTP/1.10\r\nHost: a\r\n\r\n", FG_HTTP_E_VERSION},
    {"GET / http/1.1\r\nHost: a\r\n\r\n", FG_HTTP_E_VERSION},
    {"GET / HTTP/1\r\nHost: a\r\n\r\n", FG_HTTP_E_VERSION},
    {"GET /\r\n\r\n", FG_HTTP_E_REQUEST_LINE},
    {"GET / HTTP/1.1\nHost: a\r\n\r\n", FG_HTTP_E_BARE_LF},
    {"GET / HTTP/1.1\rHost: a\r\n\r\n", FG_HTTP_E_BARE_CR},
    {"\n" H11 "\r\n", FG_HTTP_E_BARE_LF},
    /* fields */
    {H11 "X: a\nY: b\r\n\r\n", FG_HTTP_E_BARE_LF},
    {H11 "X: a\rY: b\r\n\r\n", FG_HTTP_E_BARE_CR},
    {H11 "X: a\r\n\n", FG_HTTP_E_BARE_LF},
    {H11 "X: a\r\n\r\r\n", FG_HTTP_E_BARE_CR},
    {H11 "X: a\r\n folded\r\n\r\n", FG_HTTP_E_OBS_FOLD},
    {H11 "X: a\r\n\tfolded\r\n\r\n", FG_HTTP_E_OBS_FOLD},
    {"GET / HTTP/1.1\r\n Host: a\r\n\r\n", FG_HTTP_E_OBS_FOLD},
    {H11 "X : a\r\n\r\n", FG_HTTP_E_SPACE_BEFORE_COLON},
    {H11 "X\t: a\r\n\r\n", FG_HTTP_E_SPACE_BEFORE_COLON},
    {H11 "Transfer-Encoding : chunked\r\n\r\n", FG_HTTP_E_SPACE_BEFORE_COLON},
    {H11 ": a\r\n\r\n", FG_HTTP_E_HEADER_NAME},
    {H11 "X(y): a\r\n\r\n", FG_HTTP_E_HEADER_NAME},
    {H11 "X y: a\r\n\r\n", FG_HTTP_E_SPACE_BEFORE_COLON},
    {H11 "Xa\r\n\r\n", FG_HTTP_E_HEADER_NAME},
    {H11 "X\xc3\xa9: a\r\n\r\n", FG_HTTP_E_HEADER_NAME},
    {H11 "X: a\x01b\r\n\r\n", FG_HTTP_E_HEADER_VALUE},
    {H11 "X: a\x7f\r\n\r\n", FG_HTTP_E_HEADER_VALUE},
    {H11 "X: a\x1b[31m\r\n\r\n", FG_HTTP_E_HEADER_VALUE},
    /* Host */
    {"GET / HTTP/1.1\r\n\r\n", FG_HTTP_E_HOST_MISSING},
    {"GET / HTTP/1.1\r\nX: a\r\n\r\n", FG_HTTP_E_HOST_MISSING},
    {H11 "Host: b\r\n\r\n", FG_HTTP_E_HOST_DUPLICATE},
    {H11 "host: a\r\n\r\n", FG_HTTP_E_HOST_DUPLICATE},
    {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", FG_HTTP_E_HOST_INVALID},
    {"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", FG_HTTP_E_HOST_INVALID},
    {"GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", FG_HTTP_E_HOST_INVALID},
    {"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", FG_HTTP_E_HOST_INVALID},
    {"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", FG_HTTP_E_HOST_INVALID},
    /* framing: the smuggling classics */
    {H11 "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", FG_HTTP_E_CL_TE},
    {H11 "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", FG_HTTP_E_CL_TE},
    {H11 "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n", FG_HTTP_E_CL_TE},
    {H11 "Content-Length: +5\r\n\r\n", FG_HTTP_E_CL_INVALID},
    {H11 "Content-Length: -1\r\n\r\n", FG_HTTP_E_CL_INVALID},
    {H11 "Content-Length: 0x5\r\n\r\n", FG_HTTP_E_CL_INVALID},
    {H11 "Content-Length: 5, 5\r\n\r\n", FG_HTTP_E_CL_INVALID},
    {H11 "Content-Length: 5 5\r\n\r\n", FG_HTTP_E_CL_INVALID},
    {H11 "Content-Length: \r\n\r\n", FG_HTTP_E_CL_INVALID},
    {H11 "Content-Length: 5.0\r\n\r\n", FG_HTTP_E_CL_INVALID},
    {H11 "Content-Length: 99999999999999999999\r\n\r\n", FG_HTTP_E_CL_INVALID},
    {H11 "Content-Length: 5\r\nContent-Length: 5\r\n\r\n", FG_HTTP_E_CL_DUPLICATE},
    {H11 "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", FG_HTTP_E_CL_DUPLICATE},
    {H11 "Transfer-Encoding: gzip\r\n\r\n", FG_HTTP_E_TE_UNSUPPORTED},
    {H11 "Transfer-Encoding: gzip, chunked\r\n\r\n", FG_HTTP_E_TE_UNSUPPORTED},
    {H11 "Transfer-Encoding: chunked, chunked\r\n\r\n", FG_HTTP_E_TE_UNSUPPORTED},
    {H11 "Transfer-Encoding: identity\r\n\r\n", FG_HTTP_E_TE_UNSUPPORTED},
    {H11 "Transfer-Encoding: xchunked\r\n\r\n", FG_HTTP_E_TE_UNSUPPORTED},
    {H11 "Transfer-Encoding: chunked;x\r\n\r\n", FG_HTTP_E_TE_UNSUPPORTED},
    {H11 "Transfer-Encoding: \"chunked\"\r\n\r\n", FG_HTTP_E_TE_UNSUPPORTED},
    {H11 "Transfer-Encoding:\r\n\r\n", FG_HTTP_E_TE_UNSUPPORTED},
    {H11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
     FG_HTTP_E_TE_UNSUPPORTED},
    {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", FG_HTTP_E_TE_UNSUPPORTED},
    {H11 "Transfer-Encoding: chunked\r\n chunked\r\n\r\n", FG_HTTP_E_OBS_FOLD},
    {H11 "Transfer-Encoding:\x0b"
         "chunked\r\n\r\n",
     FG_HTTP_E_HEADER_VALUE},
    /* limits */
    {"GET "
     "/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "a"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\nHost: "
     "a\r\n\r\n",
     FG_HTTP_E_URI_TOO_LONG},
    {H11 "A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\nH: 8\r\n\r\n",
     FG_HTTP_E_HEADERS_TOO_LARGE},
};

static void test_bad_requests(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad *b = &bad_cases[i];
        size_t len = strlen(b->in);
        struct fg_http_request r;
        enum fg_http_error e = FG_HTTP_E_NONE;
        int rc = parse(b->in, len, &r, &e);
        if (rc != FG_HTTP_ERROR || e != b->err)
            fail_msg("case %zu: want %s, got rc=%d %s for: %s", i, fg_http_error_name(b->err), rc,
                     fg_http_error_name(e), b->in);
        check_prefixes(b->in, len, rc, e);
    }
}

static void test_nul_in_value(void **state)
{
    (void)state;
    static const char s[] = "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chu\0nked\r\n\r\n";
    struct fg_http_request r;
    enum fg_http_error e = FG_HTTP_E_NONE;
    assert_int_equal(parse(s, sizeof(s) - 1, &r, &e), FG_HTTP_ERROR);
    assert_int_equal(e, FG_HTTP_E_HEADER_VALUE);
    check_prefixes(s, sizeof(s) - 1, FG_HTTP_ERROR, e);
    static const char n[] = "GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_int_equal(parse(n, sizeof(n) - 1, &r, &e), FG_HTTP_ERROR);
    assert_int_equal(e, FG_HTTP_E_TARGET);
}

static void test_error_statuses(void **state)
{
    (void)state;
    assert_int_equal(fg_http_error_status(FG_HTTP_E_CL_TE), 400);
    assert_int_equal(fg_http_error_status(FG_HTTP_E_URI_TOO_LONG), 414);
    assert_int_equal(fg_http_error_status(FG_HTTP_E_HEADERS_TOO_LARGE), 431);
    assert_int_equal(fg_http_error_status(FG_HTTP_E_VERSION_UNSUPPORTED), 505);
    assert_string_equal(fg_http_error_name(FG_HTTP_E_CL_TE), "cl_te");
    assert_string_equal(fg_http_error_name(FG_HTTP_E_OBS_FOLD), "obs_fold");
    for (int e = 0; e < FG_HTTP_E__COUNT; e++)
        assert_non_null(fg_http_error_name((enum fg_http_error)e));
}

/* Over the limits only once the bytes are there: a long line still arriving is 414 as
 * soon as it passes the limit, without waiting for its end. */
static void test_limits_while_incomplete(void **state)
{
    (void)state;
    char line[600];
    memset(line, 'a', sizeof(line));
    memcpy(line, "GET /", 5);
    struct fg_http_request r;
    enum fg_http_error e = FG_HTTP_E_NONE;
    assert_int_equal(parse(line, 200, &r, &e), FG_HTTP_INCOMPLETE);
    assert_int_equal(parse(line, sizeof(line), &r, &e), FG_HTTP_ERROR);
    assert_int_equal(e, FG_HTTP_E_URI_TOO_LONG);

    char head[2000];
    int n = snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nHost: a\r\nX: ");
    memset(head + n, 'b', sizeof(head) - (size_t)n);
    assert_int_equal(parse(head, 1000, &r, &e), FG_HTTP_INCOMPLETE);
    assert_int_equal(parse(head, sizeof(head), &r, &e), FG_HTTP_ERROR);
    assert_int_equal(e, FG_HTTP_E_HEADERS_TOO_LARGE);
}

/* ---- valid heads --------------------------------------------------------------------- */

static struct fg_http_request req;

static int ok(const char *s)
{
    size_t len = strlen(s);
    enum fg_http_error e = FG_HTTP_E_NONE;
    int rc = parse(s, len, &req, &e);
    if (rc < 0)
        fail_msg("rc=%d err=%s for: %s", rc, fg_http_error_name(e), s);
    assert_int_equal(rc, (int)len);
    check_prefixes(s, len, rc, e);
    /* parse again in place: the slices must point into the caller's buffer */
    rc = fg_http_parse_request(s, len, &lim, &req, &e);
    assert_int_equal(rc, (int)len);
    return rc;
}

#define SLICE_EQ(p, n, lit)                                                                        \
    do {                                                                                           \
        assert_int_equal((n), strlen(lit));                                                        \
        assert_memory_equal((p), (lit), (n));                                                      \
    } while (0)

static void test_simple_get(void **state)
{
    (void)state;
    ok("GET /index.html?a=1&b=%20 HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: x/1\r\n\r\n");
    assert_int_equal(req.method, FG_HTTP_GET);
    SLICE_EQ(req.method_name, req.method_len, "GET");
    SLICE_EQ(req.target, req.target_len, "/index.html?a=1&b=%20");
    SLICE_EQ(req.path, req.path_len, "/index.html");
    SLICE_EQ(req.query, req.query_len, "a=1&b=%20");
    SLICE_EQ(req.host, req.host_len, "shop.example.com");
    assert_int_equal(req.minor_version, 1);
    assert_int_equal(req.n_headers, 2);
    SLICE_EQ(req.headers[1].name, req.headers[1].name_len, "User-Agent");
    SLICE_EQ(req.headers[1].value, req.headers[1].value_len, "x/1");
    assert_int_equal(req.body, FG_HTTP_BODY_NONE);
    assert_int_equal(req.flags, 0);
}

static void test_value_trimming(void **state)
{
    (void)state;
    ok("GET / HTTP/1.1\r\nHost:a\r\nX:  \t spaced value \t \r\nEmpty:\r\nE2:   \r\n\r\n");
    SLICE_EQ(req.headers[0].value, req.headers[0].value_len, "a");
    SLICE_EQ(req.headers[1].value, req.headers[1].value_len, "spaced value");
    SLICE_EQ(req.headers[2].value, req.headers[2].value_len, "");
    SLICE_EQ(req.headers[3].value, req.headers[3].value_len, "");
}

static void test_obs_text_value(void **state)
{
    (void)state;
    ok("GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9 \"q\" <>{}|\\^`\r\n\r\n");
    SLICE_EQ(req.headers[1].value, req.headers[1].value_len, "caf\xc3\xa9 \"q\" <>{}|\\^`");
}

static void test_methods(void **state)
{
    (void)state;
    static const struct {
        const char *m;
        enum fg_http_method e;
    } t[] = {{"GET", FG_HTTP_GET},     {"HEAD", FG_HTTP_HEAD},     {"POST", FG_HTTP_POST},
             {"PUT", FG_HTTP_PUT},     {"DELETE", FG_HTTP_DELETE}, {"OPTIONS", FG_HTTP_OPTIONS},
             {"TRACE", FG_HTTP_TRACE}, {"PATCH", FG_HTTP_PATCH},   {"PURGE", FG_HTTP_OTHER},
             {"get", FG_HTTP_OTHER},   {"M-SEARCH", FG_HTTP_OTHER}};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        char buf[128];
        snprintf(buf, sizeof(buf), "%s / HTTP/1.1\r\nHost: a\r\n\r\n", t[i].m);
        ok(buf);
        assert_int_equal(req.method, t[i].e);
        SLICE_EQ(req.method_name, req.method_len, t[i].m);
    }
    assert_true(fg_http_method_idempotent(FG_HTTP_GET));
    assert_true(fg_http_method_idempotent(FG_HTTP_PUT));
    assert_false(fg_http_method_idempotent(FG_HTTP_POST));
    assert_false(fg_http_method_idempotent(FG_HTTP_PATCH));
    assert_string_equal(fg_http_method_name(FG_HTTP_OPTIONS), "OPTIONS");
    assert_null(fg_http_method_name(FG_HTTP_OTHER));
}

static void test_http10(void **state)
{
    (void)state;
    ok("GET / HTTP/1.0\r\n\r\n");
    assert_int_equal(req.minor_version, 0);
    assert_int_equal(req.host_len, 0);
    ok("GET / HTTP/1.0\r\nConnection: keep-alive\r\nExpect: 100-continue\r\n\r\n");
    assert_int_equal(req.flags, FG_HTTP_F_CONN_KEEPALIVE); /* 1.0 Expect is ignored */
}

static void test_framing(void **state)
{
    (void)state;
    ok("POST /o HTTP/1.1\r\nHost: a\r\nContent-Length: 12345\r\n\r\n");
    assert_int_equal(req.body, FG_HTTP_BODY_LENGTH);
    assert_int_equal(req.content_length, 12345);
    ok("POST /o HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(req.body, FG_HTTP_BODY_LENGTH);
    assert_int_equal(req.content_length, 0);
    ok("POST /o HTTP/1.1\r\nHost: a\r\ncontent-length: 007\r\n\r\n");
    assert_int_equal(req.content_length, 7);
    ok("POST /o HTTP/1.1\r\nHost: a\r\nContent-Length: 9999999999999999999\r\n\r\n");
    assert_true(req.content_length == 9999999999999999999ull);
    ok("POST /o HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_int_equal(req.body, FG_HTTP_BODY_CHUNKED);
    ok("POST /o HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED \r\n\r\n");
    assert_int_equal(req.body, FG_HTTP_BODY_CHUNKED);
}

static void test_connection_flags(void **state)
{
    (void)state;
    ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert_int_equal(req.flags, FG_HTTP_F_CONN_CLOSE);
    ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, X-Foo\r\nX-Foo: 1\r\n\r\n");
    assert_int_equal(req.flags, FG_HTTP_F_CONN_KEEPALIVE | FG_HTTP_F_CONN_OTHER);
    assert_true(fg_http_connection_lists(req.headers, req.n_headers, "x-foo", 5));
    assert_true(fg_http_connection_lists(req.headers, req.n_headers, "X-FOO", 5));
    assert_false(fg_http_connection_lists(req.headers, req.n_headers, "x-fo", 4));
    ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    assert_int_equal(req.flags, FG_HTTP_F_CONN_UPGRADE | FG_HTTP_F_HAS_UPGRADE);
    ok("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n");
    assert_int_equal(req.flags, FG_HTTP_F_EXPECT_CONTINUE);
    ok("PUT / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n");
    assert_int_equal(req.flags, FG_HTTP_F_EXPECT_OTHER);
}

static void test_target_forms(void **state)
{
    (void)state;
    ok("GET http://Shop.example.com:8080/p/q?x=1 HTTP/1.1\r\nHost: other\r\n\r\n");
    assert_true(req.flags & FG_HTTP_F_ABSOLUTE_FORM);
    SLICE_EQ(req.host, req.host_len, "Shop.example.com:8080");
    SLICE_EQ(req.path, req.path_len, "/p/q");
    SLICE_EQ(req.query, req.query_len, "x=1");
    ok("GET https://h HTTP/1.1\r\nHost: h\r\n\r\n");
    SLICE_EQ(req.path, req.path_len, "/");
    assert_null(req.query);
    ok("GET http://h?q HTTP/1.1\r\nHost: h\r\n\r\n");
    SLICE_EQ(req.path, req.path_len, "/");
    SLICE_EQ(req.query, req.query_len, "q");
    ok("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_true(req.flags & FG_HTTP_F_ASTERISK_FORM);
    ok("CONNECT h.example:443 HTTP/1.1\r\nHost: h.example:443\r\n\r\n");
    assert_true(req.flags & FG_HTTP_F_AUTHORITY_FORM);
    assert_int_equal(req.method, FG_HTTP_CONNECT);
    ok("GET /a/b;p=1/c:d@e!$&'()*+,=-._~%41? HTTP/1.1\r\nHost: [::1]:80\r\n\r\n");
    SLICE_EQ(req.query, req.query_len, "");
    SLICE_EQ(req.host, req.host_len, "[::1]:80");
    ok("GET /?a/b?c HTTP/1.1\r\nHost: \r\n\r\n");
    SLICE_EQ(req.path, req.path_len, "/");
    SLICE_EQ(req.query, req.query_len, "a/b?c");
    SLICE_EQ(req.host, req.host_len, "");
}

static void test_leading_crlf(void **state)
{
    (void)state;
    const char *s = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    ok(s);
    SLICE_EQ(req.method_name, req.method_len, "GET");
    assert_int_equal(req.head_len, strlen(s));
}

static void test_pipelined_stops_at_head(void **state)
{
    (void)state;
    const char *s = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    const int one = (int)strlen(s) / 2;
    enum fg_http_error e;
    int rc = fg_http_parse_request(s, strlen(s), &lim, &req, &e);
    assert_int_equal(rc, one);
    SLICE_EQ(req.target, req.target_len, "/1");
    rc = fg_http_parse_request(s + one, strlen(s) - (size_t)one, &lim, &req, &e);
    assert_int_equal(rc, one);
    SLICE_EQ(req.target, req.target_len, "/2");
}

static void test_max_headers_exactly(void **state)
{
    (void)state;
    ok("GET / HTTP/1.1\r\nHost: a\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\nH: 8\r\n\r\n");
    assert_int_equal(req.n_headers, 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_nul_in_value),
        cmocka_unit_test(test_error_statuses),
        cmocka_unit_test(test_limits_while_incomplete),
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_value_trimming),
        cmocka_unit_test(test_obs_text_value),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_http10),
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_connection_flags),
        cmocka_unit_test(test_target_forms),
        cmocka_unit_test(test_leading_crlf),
        cmocka_unit_test(test_pipelined_stops_at_head),
        cmocka_unit_test(test_max_headers_exactly),
    };
    return cmocka_run_group_tests_name("http request parser", tests, NULL, NULL);
}
