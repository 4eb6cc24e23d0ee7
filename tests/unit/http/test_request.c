/*
 * test_request.c — the request parser against tables of valid and invalid heads. Every
 * case is parsed from right before an unreadable page (an over-read crashes), then fed
 * as each of its strict prefixes: a prefix must be FG_HTTP_INCOMPLETE or already the
 * same error, never a success or another error, so the answer cannot depend on how the
 * bytes arrive. Invalid cases assert the exact enum fg_http_error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "helpers.h"
#include "http/http.h"

static const struct fg_http_limits lim = {
    .max_request_line = 256, .max_header_bytes = 1024, .max_headers = 8};

static size_t n_cases; /* table entries run, reported at the end */

static int parse_lim(const char *s, size_t len, const struct fg_http_limits *l,
                     struct fg_http_request *r, enum fg_http_error *e)
{
    struct guard g;
    char *p = guard_place(&g, s, len);
    *e = FG_HTTP_E_NONE;
    int rc = fg_http_parse_request(p, len, l, r, e);
    guard_free(&g);
    if (rc == FG_HTTP_ERROR && *e == FG_HTTP_E_NONE)
        fail_msg("error without a reason");
    if (rc != FG_HTTP_ERROR && *e != FG_HTTP_E_NONE)
        fail_msg("rc=%d with a reason %s", rc, fg_http_error_name(*e));
    return rc;
}

/* Every strict prefix is INCOMPLETE or the same error as the whole. */
static void check_prefixes_lim(const char *s, size_t len, const struct fg_http_limits *l,
                               int whole_rc, enum fg_http_error whole_err)
{
    static struct fg_http_request r;
    for (size_t k = 0; k < len; k++) {
        enum fg_http_error e;
        int rc = parse_lim(s, k, l, &r, &e);
        if (rc == FG_HTTP_INCOMPLETE)
            continue;
        if (whole_rc == FG_HTTP_ERROR && rc == FG_HTTP_ERROR && e == whole_err)
            continue;
        fail_msg("prefix of %zu bytes of %zu gave rc=%d %s (whole: rc=%d %s) for: %.*s", k, len, rc,
                 fg_http_error_name(e), whole_rc, fg_http_error_name(whole_err), (int)len, s);
    }
}

/* The whole, its prefixes, and the whole followed by more bytes (a pipelined request or
 * a body): the head's answer must not change. Returns rc of the whole. */
static int run_case(const char *s, size_t len, const struct fg_http_limits *l,
                    struct fg_http_request *r, enum fg_http_error *e)
{
    n_cases++;
    int rc = parse_lim(s, len, l, r, e);
    check_prefixes_lim(s, len, l, rc, *e);
    char more[4096];
    if (len + 40 <= sizeof(more)) {
        static struct fg_http_request r2;
        memcpy(more, s, len);
        static const char tail[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n\x01\x02\r\n";
        memcpy(more + len, tail, sizeof(tail) - 1);
        enum fg_http_error e2;
        int rc2 = parse_lim(more, len + sizeof(tail) - 1, l, &r2, &e2);
        if (rc2 != rc || (rc == FG_HTTP_ERROR && e2 != *e))
            fail_msg("with trailing bytes: rc=%d %s, alone rc=%d %s for: %.*s", rc2,
                     fg_http_error_name(e2), rc, fg_http_error_name(*e), (int)len, s);
    }
    return rc;
}

/* ---- invalid heads ----------------------------------------------------------------- */

struct bad {
    const char *in;
    size_t len;
    enum fg_http_error err;
};

#define B(s, e)                                                                                    \
    {                                                                                              \
        s, sizeof(s) - 1, FG_HTTP_E_##e                                                            \
    }
#define H11 "GET / HTTP/1.1\r\nHost: a\r\n"
#define P11 "POST / HTTP/1.1\r\nHost: a\r\n"

static const struct bad bad_cases[] = {
    /* method */
    B("G@T / HTTP/1.1\r\nHost: a\r\n\r\n", METHOD),
    B("GE(T / HTTP/1.1\r\nHost: a\r\n\r\n", METHOD),
    B("GET/ HTTP/1.1\r\nHost: a\r\n\r\n", METHOD),
    B("G\xc3\x89T / HTTP/1.1\r\nHost: a\r\n\r\n", METHOD),
    B("{GET} / HTTP/1.1\r\nHost: a\r\n\r\n", METHOD),
    B("GET\x00 / HTTP/1.1\r\nHost: a\r\n\r\n", METHOD),
    B("GET\x7f / HTTP/1.1\r\nHost: a\r\n\r\n", METHOD),
    B(": / HTTP/1.1\r\nHost: a\r\n\r\n", METHOD),
    B("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", METHOD),  /* a TLS ClientHello */
    B("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", VERSION_UNSUPPORTED), /* the h2 preface */
    /* request line: spacing, missing parts, tabs */
    B("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", REQUEST_LINE),
    B("GET\t/\tHTTP/1.1\r\nHost: a\r\n\r\n", REQUEST_LINE),
    B("GET /\tHTTP/1.1\r\nHost: a\r\n\r\n", REQUEST_LINE),
    B(" GET / HTTP/1.1\r\nHost: a\r\n\r\n", REQUEST_LINE),
    B("\tGET / HTTP/1.1\r\nHost: a\r\n\r\n", REQUEST_LINE),
    B("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", REQUEST_LINE),
    B("GET /\r\n\r\n", REQUEST_LINE),
    B("GET /\n\r\n", REQUEST_LINE),
    B("GET\r\n\r\n", REQUEST_LINE),
    B("GET \r\n\r\n", REQUEST_LINE),
    B("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", REQUEST_LINE),
    B("\r\n\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", BARE_CR),
    B("\n" H11 "\r\n", BARE_LF),
    B("\r\n\n" H11 "\r\n", BARE_LF),
    /* version */
    B("GET /  HTTP/1.1\r\nHost: a\r\n\r\n", VERSION),
    B("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", VERSION),
    B("GET / HTTP/1.1\t\r\nHost: a\r\n\r\n", VERSION),
    B("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", VERSION),
    B("GET / HTTP/1.10\r\nHost: a\r\n\r\n", VERSION),
    B("GET / HTTP/1.1x\r\nHost: a\r\n\r\n", VERSION),
    B("GET / http/1.1\r\nHost: a\r\n\r\n", VERSION),
    B("GET / Http/1.1\r\nHost: a\r\n\r\n", VERSION),
    B("GET / HTTP/1\r\nHost: a\r\n\r\n", VERSION),
    B("GET / HTTP/11\r\nHost: a\r\n\r\n", VERSION),
    B("GET / HTTP/1,1\r\nHost: a\r\n\r\n", VERSION),
    B("GET / HTTP/a.1\r\nHost: a\r\n\r\n", VERSION),
    B("GET / HTTP 1.1\r\nHost: a\r\n\r\n", VERSION),
    B("GET / HTTPS/1.1\r\nHost: a\r\n\r\n", VERSION),
    B("GET / HTTP/\r\nHost: a\r\n\r\n", VERSION),
    B("GET / HTTP/2\r\nHost: a\r\n\r\n", VERSION),
    B("GET / HTTP/1.1\x00\r\nHost: a\r\n\r\n", VERSION),
    B("GET / HTTP/2.0\r\nHost: a\r\n\r\n", VERSION_UNSUPPORTED),
    B("GET / HTTP/1.2\r\nHost: a\r\n\r\n", VERSION_UNSUPPORTED),
    B("GET / HTTP/1.9\r\nHost: a\r\n\r\n", VERSION_UNSUPPORTED),
    B("GET / HTTP/0.9\r\nHost: a\r\n\r\n", VERSION_UNSUPPORTED),
    B("GET / HTTP/3.0\r\nHost: a\r\n\r\n", VERSION_UNSUPPORTED),
    B("GET / HTTP/9.9\r\nHost: a\r\n\r\n", VERSION_UNSUPPORTED),
    B("GET / HTTP/0.0\n", VERSION_UNSUPPORTED),
    B("GET / HTTP/1.1\nHost: a\r\n\r\n", BARE_LF),
    B("GET / HTTP/1.1\rHost: a\r\n\r\n", BARE_CR),
    B("GET / HTTP/1.1\r\r\n", BARE_CR),
    /* request-target characters */
    B("GET /\"x HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET /<script> HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET /a>b HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET /a\\b HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET /a^b HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET /a`b HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET /a{b HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET /a}b HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET /a|b HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET /?q#frag HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET /\x80 HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET /\xff HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET /\x0b HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET /%4 HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET /%4g HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET /%%41 HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET /% HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET /?a=%x1 HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET /[x] HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET /?[x] HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    /* request-target forms */
    B("GET x HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET ?q HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET * HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("POST * HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("OPTIONS ** HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("OPTIONS */ HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET http://user@h/ HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET http://user:pw@h/ HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET http://@h/ HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET http://h@evil.example/ HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET http:// HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET https://?q HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET ftp://h/ HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET ws://h/ HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET http:/h/ HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET http:h HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET httpx://h/ HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET http://h:8x/ HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET http://[::1/ HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET http://[]/ HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET http://h/[x] HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET http://h%zz/ HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("GET http://h:80:80/ HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("CONNECT h HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("CONNECT h: HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("CONNECT h:0 HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("CONNECT h:65536 HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("CONNECT h:123456 HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("CONNECT :443 HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("CONNECT * HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("CONNECT http://h:443 HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("CONNECT h:443?x HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("CONNECT u@h:443 HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    B("CONNECT [::1] HTTP/1.1\r\nHost: a\r\n\r\n", TARGET),
    /* field lines: line endings */
    B(H11 "X: a\nY: b\r\n\r\n", BARE_LF),
    B(H11 "X: a\rY: b\r\n\r\n", BARE_CR),
    B(H11 "X: a\r\n\n", BARE_LF),
    B(H11 "X: a\r\n\r\r\n", BARE_CR),
    B(H11 "X: a\r\n\rX", BARE_CR),
    B(H11 "X: \r\r\n\r\n", BARE_CR),
    B(H11 "\n", BARE_LF),
    B("GET / HTTP/1.1\r\nHost: a\n\r\n", BARE_LF),
    /* obs-fold, and whitespace before the first field */
    B(H11 "X: a\r\n folded\r\n\r\n", OBS_FOLD),
    B(H11 "X: a\r\n\tfolded\r\n\r\n", OBS_FOLD),
    B(H11 "X: a\r\n \r\n\r\n", OBS_FOLD),
    B("GET / HTTP/1.1\r\n Host: a\r\n\r\n", OBS_FOLD),
    B("GET / HTTP/1.1\r\n\tHost: a\r\n\r\n", OBS_FOLD),
    B(P11 "Transfer-Encoding:\r\n chunked\r\n\r\n", OBS_FOLD),
    B(P11 "Transfer-Encoding: chunked\r\n , identity\r\n\r\n", OBS_FOLD),
    B(P11 "Content-Length: 5\r\n 5\r\n\r\n", OBS_FOLD),
    B(P11 " Transfer-Encoding: chunked\r\n\r\n", OBS_FOLD),
    B("POST / HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: a\r\n\r\n", OBS_FOLD),
    /* field names */
    B(H11 "X : a\r\n\r\n", SPACE_BEFORE_COLON),
    B(H11 "X\t: a\r\n\r\n", SPACE_BEFORE_COLON),
    B(H11 "X y: a\r\n\r\n", SPACE_BEFORE_COLON),
    B(H11 "Transfer-Encoding : chunked\r\n\r\n", SPACE_BEFORE_COLON),
    B(H11 "Content-Length\t: 5\r\n\r\n", SPACE_BEFORE_COLON),
    B("GET / HTTP/1.1\r\nHost : a\r\n\r\n", SPACE_BEFORE_COLON),
    B(H11 ": a\r\n\r\n", HEADER_NAME),
    B(H11 ":a: b\r\n\r\n", HEADER_NAME),
    B(H11 "X(y): a\r\n\r\n", HEADER_NAME),
    B(H11 "Xa\r\n\r\n", HEADER_NAME),
    B(H11 "X\r\n\r\n", HEADER_NAME),
    B(H11 "X\xc3\xa9: a\r\n\r\n", HEADER_NAME),
    B(H11 "X\x00: a\r\n\r\n", HEADER_NAME),
    B(H11 "[X]: a\r\n\r\n", HEADER_NAME),
    B(H11 "X/Y: a\r\n\r\n", HEADER_NAME),
    B(H11 "X;Y: a\r\n\r\n", HEADER_NAME),
    B(H11 "X=Y: a\r\n\r\n", HEADER_NAME),
    B(H11 "X@Y: a\r\n\r\n", HEADER_NAME),
    B(H11 "\"X\": a\r\n\r\n", HEADER_NAME),
    /* field values */
    B(H11 "X: a\x01b\r\n\r\n", HEADER_VALUE),
    B(H11 "X: a\x7f\r\n\r\n", HEADER_VALUE),
    B(H11 "X: a\x1b[31m\r\n\r\n", HEADER_VALUE),
    B(H11 "X: a\x00b\r\n\r\n", HEADER_VALUE),
    B(H11 "X: \x00\r\n\r\n", HEADER_VALUE),
    B(P11 "Transfer-Encoding: chu\x00nked\r\n\r\n", HEADER_VALUE),
    B(P11 "Transfer-Encoding:\x0b"
          "chunked\r\n\r\n",
      HEADER_VALUE),
    B(P11 "Transfer-Encoding: chunked\x0c\r\n\r\n", HEADER_VALUE),
    B(P11 "Content-Length: 5\x00\r\n\r\n", HEADER_VALUE),
    B("GET / HTTP/1.1\r\nHost: a\x00.evil\r\n\r\n", HEADER_VALUE),
    /* Host */
    B("GET / HTTP/1.1\r\n\r\n", HOST_MISSING),
    B("GET / HTTP/1.1\r\nX: a\r\n\r\n", HOST_MISSING),
    B("GET / HTTP/1.1\r\nHost-Name: a\r\n\r\n", HOST_MISSING),
    B("GET http://h/ HTTP/1.1\r\n\r\n", HOST_MISSING),
    B(H11 "Host: b\r\n\r\n", HOST_DUPLICATE),
    B(H11 "host: a\r\n\r\n", HOST_DUPLICATE),
    B(H11 "HOST: \r\n\r\n", HOST_DUPLICATE),
    B("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", HOST_DUPLICATE),
    B("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", HOST_INVALID),
    B("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", HOST_INVALID),
    B("GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", HOST_INVALID),
    B("GET / HTTP/1.1\r\nHost: a:b:c\r\n\r\n", HOST_INVALID),
    B("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", HOST_INVALID),
    B("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", HOST_INVALID),
    B("GET / HTTP/1.1\r\nHost: []\r\n\r\n", HOST_INVALID),
    B("GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", HOST_INVALID),
    B("GET / HTTP/1.1\r\nHost: ::1\r\n\r\n", HOST_INVALID),
    B("GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n", HOST_INVALID),
    B("GET / HTTP/1.1\r\nHost: a%2\r\n\r\n", HOST_INVALID),
    B("GET / HTTP/1.1\r\nHost: <a>\r\n\r\n", HOST_INVALID),
    B("GET / HTTP/1.1\r\nHost: a\"b\r\n\r\n", HOST_INVALID),
    B("GET / HTTP/1.1\r\nHost: a?b\r\n\r\n", HOST_INVALID),
    B("GET / HTTP/1.1\r\nHost: a#b\r\n\r\n", HOST_INVALID),
    B("GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n", HOST_INVALID),
    B("GET / HTTP/1.1\r\nHost: http://a/\r\n\r\n", HOST_INVALID),
    /* framing: the request smuggling classics */
    B(P11 "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", CL_TE),
    B(P11 "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", CL_TE),
    B(P11 "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n", CL_TE),
    B(P11 "Transfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n", CL_TE),
    B(P11 "Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\n", CL_TE),
    B(P11 "Content-Length: 5\r\nTransfer-Encoding: chunked\t\r\n\r\n", CL_TE),
    B(P11 "Content-Length: 5\r\nTransfer-Encoding:  chunked\r\n\r\n", CL_TE),
    B(P11 "Content-Length: 5\r\ntransfer-encoding: CHUNKED\r\n\r\n", CL_TE),
    B(P11 "Transfer-Encoding: chunked\r\nContent-Length: x\r\n\r\n", CL_TE),
    B("POST / HTTP/1.0\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", CL_TE),
    B(P11 "Content-Length: +5\r\n\r\n", CL_INVALID),
    B(P11 "Content-Length: -1\r\n\r\n", CL_INVALID),
    B(P11 "Content-Length: -0\r\n\r\n", CL_INVALID),
    B(P11 "Content-Length: 0x5\r\n\r\n", CL_INVALID),
    B(P11 "Content-Length: 5, 5\r\n\r\n", CL_INVALID),
    B(P11 "Content-Length: 5,5\r\n\r\n", CL_INVALID),
    B(P11 "Content-Length: 5,\r\n\r\n", CL_INVALID),
    B(P11 "Content-Length: ,5\r\n\r\n", CL_INVALID),
    B(P11 "Content-Length: 5 5\r\n\r\n", CL_INVALID),
    B(P11 "Content-Length: 5\t5\r\n\r\n", CL_INVALID),
    B(P11 "Content-Length: 1 0\r\n\r\n", CL_INVALID),
    B(P11 "Content-Length: \r\n\r\n", CL_INVALID),
    B(P11 "Content-Length:\r\n\r\n", CL_INVALID),
    B(P11 "Content-Length: 5.0\r\n\r\n", CL_INVALID),
    B(P11 "Content-Length: 1e3\r\n\r\n", CL_INVALID),
    B(P11 "Content-Length: 5;\r\n\r\n", CL_INVALID),
    B(P11 "Content-Length: \"5\"\r\n\r\n", CL_INVALID),
    B(P11 "Content-Length: \xd9\xa5\r\n\r\n", CL_INVALID),
    B(P11 "Content-Length: 9223372036854775808\r\n\r\n", CL_INVALID),
    B(P11 "Content-Length: 18446744073709551616\r\n\r\n", CL_INVALID),
    B(P11 "Content-Length: 99999999999999999999\r\n\r\n", CL_INVALID),
    B(P11 "Content-Length: 5\r\nContent-Length: x\r\n\r\n", CL_INVALID),
    B(P11 "Content-Length: 5\r\nContent-Length: 5\r\n\r\n", CL_DUPLICATE),
    B(P11 "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", CL_DUPLICATE),
    B(P11 "Content-Length: 0\r\ncontent-length: 0\r\n\r\n", CL_DUPLICATE),
    B(P11 "Content-Length: 5\r\nX: y\r\nCONTENT-LENGTH: 5\r\n\r\n", CL_DUPLICATE),
    B(P11 "Transfer-Encoding: gzip\r\n\r\n", TE_UNSUPPORTED),
    B(P11 "Transfer-Encoding: gzip, chunked\r\n\r\n", TE_UNSUPPORTED),
    B(P11 "Transfer-Encoding: chunked, gzip\r\n\r\n", TE_UNSUPPORTED),
    B(P11 "Transfer-Encoding: chunked, chunked\r\n\r\n", TE_UNSUPPORTED),
    B(P11 "Transfer-Encoding: chunked,chunked\r\n\r\n", TE_UNSUPPORTED),
    B(P11 "Transfer-Encoding: chunked,\r\n\r\n", TE_UNSUPPORTED),
    B(P11 "Transfer-Encoding: ,chunked\r\n\r\n", TE_UNSUPPORTED),
    B(P11 "Transfer-Encoding: identity\r\n\r\n", TE_UNSUPPORTED),
    B(P11 "Transfer-Encoding: identity, chunked\r\n\r\n", TE_UNSUPPORTED),
    B(P11 "Transfer-Encoding: xchunked\r\n\r\n", TE_UNSUPPORTED),
    B(P11 "Transfer-Encoding: chunkedx\r\n\r\n", TE_UNSUPPORTED),
    B(P11 "Transfer-Encoding: chunk\r\n\r\n", TE_UNSUPPORTED),
    B(P11 "Transfer-Encoding: ch unked\r\n\r\n", TE_UNSUPPORTED),
    B(P11 "Transfer-Encoding: chunked;x\r\n\r\n", TE_UNSUPPORTED),
    B(P11 "Transfer-Encoding: chunked; q=1\r\n\r\n", TE_UNSUPPORTED),
    B(P11 "Transfer-Encoding: \"chunked\"\r\n\r\n", TE_UNSUPPORTED),
    B(P11 "Transfer-Encoding: chunked\xa0\r\n\r\n", TE_UNSUPPORTED),
    B(P11 "Transfer-Encoding: \xa0\x63hunked\r\n\r\n", TE_UNSUPPORTED),
    B(P11 "Transfer-Encoding: chunke\xc4\x8f\r\n\r\n", TE_UNSUPPORTED),
    B(P11 "Transfer-Encoding:\r\n\r\n", TE_UNSUPPORTED),
    B(P11 "Transfer-Encoding: \r\n\r\n", TE_UNSUPPORTED),
    B(P11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", TE_UNSUPPORTED),
    B(P11 "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", TE_UNSUPPORTED),
    B(P11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n", TE_UNSUPPORTED),
    B("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", TE_UNSUPPORTED),
    B("POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", TE_UNSUPPORTED),
};

static void test_bad_requests(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(bad_cases); i++) {
        const struct bad *b = &bad_cases[i];
        static struct fg_http_request r;
        enum fg_http_error e;
        int rc = run_case(b->in, b->len, &lim, &r, &e);
        if (rc != FG_HTTP_ERROR || e != b->err)
            fail_msg("case %zu: want %s, got rc=%d %s for: %.*s", i, fg_http_error_name(b->err), rc,
                     fg_http_error_name(e), (int)b->len, b->in);
    }
}

static int is_tchar(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Every byte that is not a token character, inside a header name. */
static void test_every_bad_name_byte(void **state)
{
    (void)state;
    for (int ch = 0; ch < 256; ch++) {
        if (is_tchar(ch) || ch == ':')
            continue;
        char buf[64];
        int n = snprintf(buf, sizeof(buf), "%sXa", H11);
        buf[n++] = (char)ch;
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "b: v\r\n\r\n");
        enum fg_http_error want =
            ch == ' ' || ch == '\t' ? FG_HTTP_E_SPACE_BEFORE_COLON : FG_HTTP_E_HEADER_NAME;
        static struct fg_http_request r;
        enum fg_http_error e;
        int rc = run_case(buf, (size_t)n, &lim, &r, &e);
        if (rc != FG_HTTP_ERROR || e != want)
            fail_msg("name byte 0x%02x: rc=%d %s", ch, rc, fg_http_error_name(e));
    }
}

/* Every byte outside VCHAR / obs-text / SP / HTAB, inside a header value. */
static void test_every_bad_value_byte(void **state)
{
    (void)state;
    for (int ch = 0; ch < 256; ch++) {
        if ((ch >= 0x20 && ch != 0x7f) || ch == '\t')
            continue;
        char buf[64];
        int n = snprintf(buf, sizeof(buf), "%sX: a", H11);
        buf[n++] = (char)ch;
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "b\r\n\r\n");
        enum fg_http_error want = ch == '\r'   ? FG_HTTP_E_BARE_CR
                                  : ch == '\n' ? FG_HTTP_E_BARE_LF
                                               : FG_HTTP_E_HEADER_VALUE;
        static struct fg_http_request r;
        enum fg_http_error e;
        int rc = run_case(buf, (size_t)n, &lim, &r, &e);
        if (rc != FG_HTTP_ERROR || e != want)
            fail_msg("value byte 0x%02x: rc=%d %s", ch, rc, fg_http_error_name(e));
    }
}

/* Every byte in a request-target: pchar, '/', '?', '%'-triplets pass; others do not. */
static void test_every_target_byte(void **state)
{
    (void)state;
    for (int ch = 0; ch < 256; ch++) {
        char buf[64];
        int n = snprintf(buf, sizeof(buf), "GET /a");
        buf[n++] = (char)ch;
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "b HTTP/1.1\r\nHost: a\r\n\r\n");
        bool ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
                  (ch >= 'A' && ch <= 'Z') || (ch && strchr("-._~!$&'()*+,;=:@/?", ch));
        static struct fg_http_request r;
        enum fg_http_error e;
        int rc = run_case(buf, (size_t)n, &lim, &r, &e);
        if (ok) {
            if (rc != n)
                fail_msg("target byte 0x%02x refused: %s", ch, fg_http_error_name(e));
            continue;
        }
        enum fg_http_error want = FG_HTTP_E_TARGET;
        if (ch == ' ')
            want = FG_HTTP_E_VERSION; /* "GET /a b HTTP/1.1": "b" is no version */
        else if (ch == '\t' || ch == '\r' || ch == '\n')
            want = FG_HTTP_E_REQUEST_LINE;
        if (rc != FG_HTTP_ERROR || e != want)
            fail_msg("target byte 0x%02x: rc=%d %s", ch, rc, fg_http_error_name(e));
    }
}

/* ---- valid heads --------------------------------------------------------------------- */

struct good {
    const char *in;
    enum fg_http_method method;
    const char *path, *query, *host; /* NULL: none */
    int minor;
    unsigned flags;
    enum fg_http_body body;
    uint64_t cl;
    size_t n_headers;
};

#define F(x) FG_HTTP_F_##x
static const struct good good_cases[] = {
    {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_GET, "/", NULL, "a", 1, 0, FG_HTTP_BODY_NONE, 0,
     1},
    {"GET /index.html?a=1&b=%20 HTTP/1.1\r\nHost: shop.example.com\r\nUser-Agent: x/1\r\n\r\n",
     FG_HTTP_GET, "/index.html", "a=1&b=%20", "shop.example.com", 1, 0, FG_HTTP_BODY_NONE, 0, 2},
    {"HEAD /x HTTP/1.0\r\n\r\n", FG_HTTP_HEAD, "/x", NULL, NULL, 0, 0, FG_HTTP_BODY_NONE, 0, 0},
    {"GET / HTTP/1.0\r\nHost: a\r\n\r\n", FG_HTTP_GET, "/", NULL, "a", 0, 0, FG_HTTP_BODY_NONE, 0,
     1},
    {"GET /?a/b?c HTTP/1.1\r\nHost: \r\n\r\n", FG_HTTP_GET, "/", "a/b?c", "", 1, 0,
     FG_HTTP_BODY_NONE, 0, 1},
    {"GET /? HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_GET, "/", "", "a", 1, 0, FG_HTTP_BODY_NONE, 0,
     1},
    {"GET //a//b HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_GET, "//a//b", NULL, "a", 1, 0,
     FG_HTTP_BODY_NONE, 0, 1},
    {"GET /a/b;p=1/c:d@e!$&'()*+,=-._~%41%7e? HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", FG_HTTP_GET,
     "/a/b;p=1/c:d@e!$&'()*+,=-._~%41%7e", "", "[::1]:80", 1, 0, FG_HTTP_BODY_NONE, 0, 1},
    {"GET /../../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_GET, "/../../etc/passwd", NULL,
     "a", 1, 0, FG_HTTP_BODY_NONE, 0, 1},
    /* Host forms */
    {"GET / HTTP/1.1\r\nHost: a.example:8080\r\n\r\n", FG_HTTP_GET, "/", NULL, "a.example:8080", 1,
     0, FG_HTTP_BODY_NONE, 0, 1},
    {"GET / HTTP/1.1\r\nHost: 10.0.0.1:\r\n\r\n", FG_HTTP_GET, "/", NULL, "10.0.0.1:", 1, 0,
     FG_HTTP_BODY_NONE, 0, 1},
    {"GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n", FG_HTTP_GET, "/", NULL, "[fe80::1%25eth0]",
     1, 0, FG_HTTP_BODY_NONE, 0, 1},
    {"GET / HTTP/1.1\r\nHost: xn--caf-dma.example\r\n\r\n", FG_HTTP_GET, "/", NULL,
     "xn--caf-dma.example", 1, 0, FG_HTTP_BODY_NONE, 0, 1},
    {"GET / HTTP/1.1\r\nHost:\t a_b~c!$&'()*+,;=%41 \t\r\n\r\n", FG_HTTP_GET, "/", NULL,
     "a_b~c!$&'()*+,;=%41", 1, 0, FG_HTTP_BODY_NONE, 0, 1},
    {"GET / HTTP/1.1\r\nhOsT: a\r\n\r\n", FG_HTTP_GET, "/", NULL, "a", 1, 0, FG_HTTP_BODY_NONE, 0,
     1},
    /* target forms */
    {"GET http://Shop.example.com:8080/p/q?x=1 HTTP/1.1\r\nHost: other\r\n\r\n", FG_HTTP_GET,
     "/p/q", "x=1", "Shop.example.com:8080", 1, F(ABSOLUTE_FORM), FG_HTTP_BODY_NONE, 0, 1},
    {"GET https://h HTTP/1.1\r\nHost: h\r\n\r\n", FG_HTTP_GET, "/", NULL, "h", 1, F(ABSOLUTE_FORM),
     FG_HTTP_BODY_NONE, 0, 1},
    {"GET HTTP://h?q HTTP/1.1\r\nHost: h\r\n\r\n", FG_HTTP_GET, "/", "q", "h", 1, F(ABSOLUTE_FORM),
     FG_HTTP_BODY_NONE, 0, 1},
    {"GET http://[::1]:8080/a?b HTTP/1.1\r\nHost: x\r\n\r\n", FG_HTTP_GET, "/a", "b", "[::1]:8080",
     1, F(ABSOLUTE_FORM), FG_HTTP_BODY_NONE, 0, 1},
    {"GET http://h/?a@b HTTP/1.0\r\n\r\n", FG_HTTP_GET, "/", "a@b", "h", 0, F(ABSOLUTE_FORM),
     FG_HTTP_BODY_NONE, 0, 0},
    {"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", FG_HTTP_OPTIONS, "*", NULL, "h", 1, F(ASTERISK_FORM),
     FG_HTTP_BODY_NONE, 0, 1},
    {"OPTIONS /x HTTP/1.1\r\nHost: h\r\n\r\n", FG_HTTP_OPTIONS, "/x", NULL, "h", 1, 0,
     FG_HTTP_BODY_NONE, 0, 1},
    {"CONNECT h.example:443 HTTP/1.1\r\nHost: h.example:443\r\n\r\n", FG_HTTP_CONNECT, "/", NULL,
     "h.example:443", 1, F(AUTHORITY_FORM), FG_HTTP_BODY_NONE, 0, 1},
    {"CONNECT [::1]:65535 HTTP/1.1\r\nHost: x\r\n\r\n", FG_HTTP_CONNECT, "/", NULL, "[::1]:65535",
     1, F(AUTHORITY_FORM), FG_HTTP_BODY_NONE, 0, 1},
    {"CONNECT 10.1.2.3:1 HTTP/1.1\r\nHost: x\r\n\r\n", FG_HTTP_CONNECT, "/", NULL, "10.1.2.3:1", 1,
     F(AUTHORITY_FORM), FG_HTTP_BODY_NONE, 0, 1},
    /* methods: any token */
    {"PURGE / HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_OTHER, "/", NULL, "a", 1, 0, FG_HTTP_BODY_NONE,
     0, 1},
    {"M-SEARCH / HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_OTHER, "/", NULL, "a", 1, 0,
     FG_HTTP_BODY_NONE, 0, 1},
    {"get / HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_OTHER, "/", NULL, "a", 1, 0, FG_HTTP_BODY_NONE, 0,
     1},
    {"!#$%&'*+-.^_`|~09azAZ / HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_OTHER, "/", NULL, "a", 1, 0,
     FG_HTTP_BODY_NONE, 0, 1},
    /* framing */
    {"POST /o HTTP/1.1\r\nHost: a\r\nContent-Length: 12345\r\n\r\n", FG_HTTP_POST, "/o", NULL, "a",
     1, 0, FG_HTTP_BODY_LENGTH, 12345, 2},
    {"POST /o HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", FG_HTTP_POST, "/o", NULL, "a", 1,
     0, FG_HTTP_BODY_LENGTH, 0, 2},
    {"POST /o HTTP/1.1\r\nHost: a\r\ncontent-length: 007\r\n\r\n", FG_HTTP_POST, "/o", NULL, "a", 1,
     0, FG_HTTP_BODY_LENGTH, 7, 2},
    {"POST /o HTTP/1.1\r\nHost: a\r\nContent-Length:  \t42\t \r\n\r\n", FG_HTTP_POST, "/o", NULL,
     "a", 1, 0, FG_HTTP_BODY_LENGTH, 42, 2},
    {"POST /o HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n", FG_HTTP_POST,
     "/o", NULL, "a", 1, 0, FG_HTTP_BODY_LENGTH, 9223372036854775807ull, 2},
    {"POST /o HTTP/1.1\r\nHost: a\r\nContent-Length: 00000000000000000000000001\r\n\r\n",
     FG_HTTP_POST, "/o", NULL, "a", 1, 0, FG_HTTP_BODY_LENGTH, 1, 2},
    {"POST /o HTTP/1.0\r\nContent-Length: 3\r\n\r\n", FG_HTTP_POST, "/o", NULL, NULL, 0, 0,
     FG_HTTP_BODY_LENGTH, 3, 1},
    {"GET /o HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n", FG_HTTP_GET, "/o", NULL, "a", 1, 0,
     FG_HTTP_BODY_LENGTH, 3, 2},
    {"POST /o HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", FG_HTTP_POST, "/o", NULL,
     "a", 1, 0, FG_HTTP_BODY_CHUNKED, 0, 2},
    {"POST /o HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED \r\n\r\n", FG_HTTP_POST, "/o", NULL,
     "a", 1, 0, FG_HTTP_BODY_CHUNKED, 0, 2},
    {"POST /o HTTP/1.1\r\nHost: a\r\ntransfer-encoding:\t Chunked\t\r\n\r\n", FG_HTTP_POST, "/o",
     NULL, "a", 1, 0, FG_HTTP_BODY_CHUNKED, 0, 2},
    {"POST /o HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\n\r\n", FG_HTTP_POST, "/o", NULL,
     "a", 1, 0, FG_HTTP_BODY_NONE, 0, 2},
    {"POST /o HTTP/1.1\r\nHost: a\r\nTransfer-Encoding-X: chunked\r\nContent-Length-X: 1\r\n\r\n",
     FG_HTTP_POST, "/o", NULL, "a", 1, 0, FG_HTTP_BODY_NONE, 0, 3},
    /* connection facts */
    {"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", FG_HTTP_GET, "/", NULL, "a", 1,
     F(CONN_CLOSE), FG_HTTP_BODY_NONE, 0, 2},
    {"GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, X-Foo\r\nX-Foo: 1\r\n\r\n", FG_HTTP_GET,
     "/", NULL, "a", 1, F(CONN_KEEPALIVE) | F(CONN_OTHER), FG_HTTP_BODY_NONE, 0, 3},
    {"GET / HTTP/1.1\r\nHost: a\r\nConnection: ,, close ,,\r\nconnection: keep-alive\r\n\r\n",
     FG_HTTP_GET, "/", NULL, "a", 1, F(CONN_CLOSE) | F(CONN_KEEPALIVE), FG_HTTP_BODY_NONE, 0, 3},
    {"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", FG_HTTP_GET,
     "/", NULL, "a", 1, F(CONN_UPGRADE) | F(HAS_UPGRADE), FG_HTTP_BODY_NONE, 0, 3},
    {"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n", FG_HTTP_GET, "/", NULL, "a", 1,
     F(HAS_UPGRADE), FG_HTTP_BODY_NONE, 0, 2},
    {"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n", FG_HTTP_PUT,
     "/", NULL, "a", 1, F(EXPECT_CONTINUE), FG_HTTP_BODY_LENGTH, 1, 3},
    {"PUT / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n", FG_HTTP_PUT, "/", NULL, "a", 1,
     F(EXPECT_OTHER), FG_HTTP_BODY_NONE, 0, 2},
    {"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, x\r\n\r\n", FG_HTTP_PUT, "/", NULL, "a", 1,
     F(EXPECT_OTHER), FG_HTTP_BODY_NONE, 0, 2},
    {"GET / HTTP/1.0\r\nConnection: keep-alive\r\nExpect: 100-continue\r\n\r\n", FG_HTTP_GET, "/",
     NULL, NULL, 0, F(CONN_KEEPALIVE), FG_HTTP_BODY_NONE, 0, 2},
    /* values: trimming, obs-text, every VCHAR */
    {"GET / HTTP/1.1\r\nHost:a\r\nX:  \t spaced value \t \r\nEmpty:\r\nE2:   \r\n\r\n", FG_HTTP_GET,
     "/", NULL, "a", 1, 0, FG_HTTP_BODY_NONE, 0, 4},
    {"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9 \"q\" <>{}|\\^`\x80\xff\r\n\r\n", FG_HTTP_GET,
     "/", NULL, "a", 1, 0, FG_HTTP_BODY_NONE, 0, 2},
    {"GET / HTTP/1.1\r\nHost: a\r\nX: !\"#$%&'()*+,-./0123456789:;<=>?@AZ[\\]^_`az{|}~\r\n\r\n",
     FG_HTTP_GET, "/", NULL, "a", 1, 0, FG_HTTP_BODY_NONE, 0, 2},
    {"GET / HTTP/1.1\r\nHost: a\r\nX-:::: ::\r\n!#$%&'*+-.^_`|~: v\r\n\r\n", FG_HTTP_GET, "/", NULL,
     "a", 1, 0, FG_HTTP_BODY_NONE, 0, 3},
    /* stray CRLFs before the request line (up to four) */
    {"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_GET, "/", NULL, "a", 1, 0, FG_HTTP_BODY_NONE,
     0, 1},
    {"\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", FG_HTTP_GET, "/", NULL, "a", 1, 0,
     FG_HTTP_BODY_NONE, 0, 1},
    /* exactly max_headers fields */
    {"GET / HTTP/1.1\r\nHost: a\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\nG: 7\r\nH: 8\r\n\r\n",
     FG_HTTP_GET, "/", NULL, "a", 1, 0, FG_HTTP_BODY_NONE, 0, 8},
};

static void slice_eq(const char *what, const char *p, size_t n, const char *want, const char *in)
{
    if (want == NULL) {
        if (p != NULL || n != 0)
            fail_msg("%s: want none, got '%.*s' for: %s", what, (int)n, p, in);
        return;
    }
    if (p == NULL || n != strlen(want) || memcmp(p, want, n) != 0)
        fail_msg("%s: want '%s', got '%.*s' for: %s", what, want, (int)n, p ? p : "", in);
}

static void test_good_requests(void **state)
{
    (void)state;
    for (size_t i = 0; i < ARRAY_LEN(good_cases); i++) {
        const struct good *g = &good_cases[i];
        size_t len = strlen(g->in);
        static struct fg_http_request r;
        enum fg_http_error e;
        int rc = run_case(g->in, len, &lim, &r, &e);
        if (rc != (int)len)
            fail_msg("case %zu: rc=%d %s for: %s", i, rc, fg_http_error_name(e), g->in);
        /* again in place, so the slices point into memory that stays mapped */
        assert_int_equal(fg_http_parse_request(g->in, len, &lim, &r, &e), (int)len);
        if (r.method != g->method)
            fail_msg("case %zu: method %d", i, r.method);
        /* method_name is the token as received, at the start of the request line */
        if (r.method_len == 0 || memcmp(r.method_name + r.method_len, " ", 1) != 0)
            fail_msg("case %zu: method slice", i);
        slice_eq("path", r.path, r.path_len, g->path, g->in);
        slice_eq("query", r.query, r.query_len, g->query, g->in);
        slice_eq("host", r.host, r.host_len, g->host, g->in);
        if (r.minor_version != g->minor || r.flags != g->flags || r.body != g->body ||
            r.n_headers != g->n_headers || r.head_len != len)
            fail_msg("case %zu: minor %d flags %#x body %d n %zu head %zu for: %s", i,
                     r.minor_version, r.flags, r.body, r.n_headers, r.head_len, g->in);
        if (g->body == FG_HTTP_BODY_LENGTH && r.content_length != g->cl)
            fail_msg("case %zu: content_length %llu", i, (unsigned long long)r.content_length);
        for (size_t h = 0; h < r.n_headers; h++) {
            const struct fg_http_header *hd = &r.headers[h];
            assert_true(hd->name >= g->in && hd->value + hd->value_len <= g->in + len);
            assert_true(hd->name_len > 0);
            assert_int_equal(hd->name[hd->name_len], ':');
            if (hd->value_len > 0) {
                assert_true(hd->value[0] != ' ' && hd->value[0] != '\t');
                assert_true(hd->value[hd->value_len - 1] != ' ' &&
                            hd->value[hd->value_len - 1] != '\t');
            }
        }
    }
}

static void test_slices(void **state)
{
    (void)state;
    static struct fg_http_request r;
    enum fg_http_error e;
    const char *s = "GET /p?q HTTP/1.1\r\nHost:a\r\nX:  \t spaced value \t \r\nEmpty:\r\n\r\n";
    assert_int_equal(fg_http_parse_request(s, strlen(s), &lim, &r, &e), (int)strlen(s));
    slice_eq("method", r.method_name, r.method_len, "GET", s);
    slice_eq("target", r.target, r.target_len, "/p?q", s);
    slice_eq("name0", r.headers[0].name, r.headers[0].name_len, "Host", s);
    slice_eq("value0", r.headers[0].value, r.headers[0].value_len, "a", s);
    slice_eq("value1", r.headers[1].value, r.headers[1].value_len, "spaced value", s);
    slice_eq("name2", r.headers[2].name, r.headers[2].name_len, "Empty", s);
    assert_int_equal(r.headers[2].value_len, 0);
    const struct fg_http_header *h = fg_http_find_header(r.headers, r.n_headers, "x");
    assert_ptr_equal(h, &r.headers[1]);
}

static void test_methods(void **state)
{
    (void)state;
    static const struct {
        const char *m;
        enum fg_http_method e;
    } t[] = {{"GET", FG_HTTP_GET},       {"HEAD", FG_HTTP_HEAD},     {"POST", FG_HTTP_POST},
             {"PUT", FG_HTTP_PUT},       {"DELETE", FG_HTTP_DELETE}, {"OPTIONS", FG_HTTP_OPTIONS},
             {"TRACE", FG_HTTP_TRACE},   {"PATCH", FG_HTTP_PATCH},   {"PURGE", FG_HTTP_OTHER},
             {"get", FG_HTTP_OTHER},     {"GETS", FG_HTTP_OTHER},    {"GE", FG_HTTP_OTHER},
             {"PUX", FG_HTTP_OTHER},     {"HEAP", FG_HTTP_OTHER},    {"POSTS", FG_HTTP_OTHER},
             {"DELETF", FG_HTTP_OTHER},  {"OPTION", FG_HTTP_OTHER},  {"CONNECX", FG_HTTP_OTHER},
             {"Connect", FG_HTTP_OTHER}, {"TRACK", FG_HTTP_OTHER},   {"PATCHY", FG_HTTP_OTHER},
             {"M-SEARCH", FG_HTTP_OTHER}};
    for (size_t i = 0; i < ARRAY_LEN(t); i++) {
        char buf[128];
        snprintf(buf, sizeof(buf), "%s / HTTP/1.1\r\nHost: a\r\n\r\n", t[i].m);
        static struct fg_http_request r;
        enum fg_http_error e;
        assert_int_equal(run_case(buf, strlen(buf), &lim, &r, &e), (int)strlen(buf));
        assert_int_equal(r.method, t[i].e);
        assert_int_equal(fg_http_method_parse(t[i].m, strlen(t[i].m)), t[i].e);
    }
    assert_int_equal(fg_http_method_parse("CONNECT", 7), FG_HTTP_CONNECT);
    assert_int_equal(fg_http_method_parse("", 0), FG_HTTP_OTHER);
    for (int m = 0; m < FG_HTTP_OTHER; m++) {
        const char *name = fg_http_method_name((enum fg_http_method)m);
        assert_non_null(name);
        assert_int_equal(fg_http_method_parse(name, strlen(name)), m);
    }
    assert_true(fg_http_method_idempotent(FG_HTTP_GET));
    assert_true(fg_http_method_idempotent(FG_HTTP_HEAD));
    assert_true(fg_http_method_idempotent(FG_HTTP_PUT));
    assert_true(fg_http_method_idempotent(FG_HTTP_DELETE));
    assert_true(fg_http_method_idempotent(FG_HTTP_OPTIONS));
    assert_true(fg_http_method_idempotent(FG_HTTP_TRACE));
    assert_false(fg_http_method_idempotent(FG_HTTP_POST));
    assert_false(fg_http_method_idempotent(FG_HTTP_PATCH));
    assert_false(fg_http_method_idempotent(FG_HTTP_CONNECT));
    assert_false(fg_http_method_idempotent(FG_HTTP_OTHER));
    assert_string_equal(fg_http_method_name(FG_HTTP_OPTIONS), "OPTIONS");
    assert_null(fg_http_method_name(FG_HTTP_OTHER));
}

static void test_error_statuses(void **state)
{
    (void)state;
    assert_int_equal(fg_http_error_status(FG_HTTP_E_CL_TE), 400);
    assert_int_equal(fg_http_error_status(FG_HTTP_E_OBS_FOLD), 400);
    assert_int_equal(fg_http_error_status(FG_HTTP_E_URI_TOO_LONG), 414);
    assert_int_equal(fg_http_error_status(FG_HTTP_E_HEADERS_TOO_LARGE), 431);
    assert_int_equal(fg_http_error_status(FG_HTTP_E_VERSION_UNSUPPORTED), 505);
    assert_int_equal(fg_http_error_status(FG_HTTP_E_STATUS_LINE), 502);
    assert_string_equal(fg_http_error_name(FG_HTTP_E_NONE), "none");
    assert_string_equal(fg_http_error_name(FG_HTTP_E_CL_TE), "cl_te");
    assert_string_equal(fg_http_error_name(FG_HTTP_E_OBS_FOLD), "obs_fold");
    /* every error has a distinct snake_case name and a 4xx/5xx status */
    for (int a = 1; a < FG_HTTP_E__COUNT; a++) {
        const char *na = fg_http_error_name((enum fg_http_error)a);
        assert_non_null(na);
        for (const char *p = na; *p; p++)
            assert_true((*p >= 'a' && *p <= 'z') || *p == '_');
        int st = fg_http_error_status((enum fg_http_error)a);
        assert_true(st >= 400 && st <= 599);
        for (int b = 1; b < a; b++)
            assert_string_not_equal(na, fg_http_error_name((enum fg_http_error)b));
    }
}

/* ---- limits: exact boundaries, and answered while the head is still arriving --------- */

static void test_request_line_limit(void **state)
{
    (void)state;
    static struct fg_http_request r;
    enum fg_http_error e;
    char buf[1200];
    /* "GET /aaa... HTTP/1.1" of exactly max_request_line bytes passes; one more is 414 */
    for (size_t linelen = lim.max_request_line - 2; linelen <= lim.max_request_line + 2;
         linelen++) {
        size_t path = linelen - strlen("GET  HTTP/1.1");
        int n = snprintf(buf, sizeof(buf), "GET /");
        memset(buf + n, 'a', path - 1);
        n += (int)path - 1;
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, " HTTP/1.1\r\nHost: a\r\n\r\n");
        int rc = run_case(buf, (size_t)n, &lim, &r, &e);
        if (linelen <= lim.max_request_line)
            assert_int_equal(rc, n);
        else
            assert_true(rc == FG_HTTP_ERROR && e == FG_HTTP_E_URI_TOO_LONG);
    }
    /* a long line still arriving is 414 as soon as it passes the limit */
    memset(buf, 'a', sizeof(buf));
    memcpy(buf, "GET /", 5);
    assert_int_equal(parse_lim(buf, 200, &lim, &r, &e), FG_HTTP_INCOMPLETE);
    assert_int_equal(parse_lim(buf, lim.max_request_line + 1, &lim, &r, &e), FG_HTTP_INCOMPLETE);
    assert_int_equal(parse_lim(buf, lim.max_request_line + 2, &lim, &r, &e), FG_HTTP_ERROR);
    assert_int_equal(e, FG_HTTP_E_URI_TOO_LONG);
    /* what lies beyond the limit is never looked at: a bad byte there changes nothing */
    buf[600] = '\x01';
    assert_int_equal(parse_lim(buf, 700, &lim, &r, &e), FG_HTTP_ERROR);
    assert_int_equal(e, FG_HTTP_E_URI_TOO_LONG);
    /* stray CRLFs do not count in the request line */
    int n = snprintf(buf, sizeof(buf), "\r\n\r\nGET /");
    memset(buf + n, 'a', lim.max_request_line - 14);
    n += (int)lim.max_request_line - 14;
    n += snprintf(buf + n, sizeof(buf) - (size_t)n, " HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_int_equal(run_case(buf, (size_t)n, &lim, &r, &e), n);
}

static void test_header_bytes_limit(void **state)
{
    (void)state;
    static struct fg_http_request r;
    enum fg_http_error e;
    char buf[2048];
    /* a head of exactly max_header_bytes passes; one byte more is 431 */
    for (size_t total = lim.max_header_bytes - 2; total <= lim.max_header_bytes + 2; total++) {
        int n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX: ");
        size_t fill = total - (size_t)n - 4;
        memset(buf + n, 'v', fill);
        n += (int)fill;
        memcpy(buf + n, "\r\n\r\n", 4);
        n += 4;
        assert_int_equal((size_t)n, total);
        int rc = run_case(buf, (size_t)n, &lim, &r, &e);
        if (total <= lim.max_header_bytes)
            assert_int_equal(rc, n);
        else
            assert_true(rc == FG_HTTP_ERROR && e == FG_HTTP_E_HEADERS_TOO_LARGE);
    }
    /* still arriving: 431 once max_header_bytes are in without the end of the head */
    int n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX: ");
    memset(buf + n, 'b', sizeof(buf) - (size_t)n);
    assert_int_equal(parse_lim(buf, 1000, &lim, &r, &e), FG_HTTP_INCOMPLETE);
    assert_int_equal(parse_lim(buf, lim.max_header_bytes - 1, &lim, &r, &e), FG_HTTP_INCOMPLETE);
    assert_int_equal(parse_lim(buf, lim.max_header_bytes, &lim, &r, &e), FG_HTTP_ERROR);
    assert_int_equal(e, FG_HTTP_E_HEADERS_TOO_LARGE);
    buf[1500] = '\0'; /* past the window: not looked at */
    assert_int_equal(parse_lim(buf, sizeof(buf), &lim, &r, &e), FG_HTTP_ERROR);
    assert_int_equal(e, FG_HTTP_E_HEADERS_TOO_LARGE);
    /* many small fields count as bytes too */
    struct fg_http_limits many = lim;
    many.max_headers = FG_HTTP_MAX_HEADERS;
    n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\n");
    while (n < 1100)
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "X-%d: v\r\n", n);
    n += snprintf(buf + n, sizeof(buf) - (size_t)n, "\r\n");
    assert_int_equal(run_case(buf, (size_t)n, &many, &r, &e), FG_HTTP_ERROR);
    assert_int_equal(e, FG_HTTP_E_HEADERS_TOO_LARGE);
}

static void test_header_count_limit(void **state)
{
    (void)state;
    static struct fg_http_request r;
    enum fg_http_error e;
    const char *nine = "GET / HTTP/1.1\r\nHost: a\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\n"
                       "G: 7\r\nH: 8\r\nI: 9\r\n\r\n";
    assert_int_equal(run_case(nine, strlen(nine), &lim, &r, &e), FG_HTTP_ERROR);
    assert_int_equal(e, FG_HTTP_E_HEADERS_TOO_LARGE);
    /* max_headers above the hard cap is the hard cap */
    struct fg_http_limits big = {.max_request_line = 8192,
                                 .max_header_bytes = 1 << 20,
                                 .max_headers = FG_HTTP_MAX_HEADERS * 4};
    static char buf[1 << 16];
    int n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 1; i < FG_HTTP_MAX_HEADERS; i++)
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "X%d: %d\r\n", i, i);
    n += snprintf(buf + n, sizeof(buf) - (size_t)n, "\r\n");
    assert_int_equal(parse_lim(buf, (size_t)n, &big, &r, &e), n);
    assert_int_equal(r.n_headers, FG_HTTP_MAX_HEADERS);
    n -= 2;
    n += snprintf(buf + n, sizeof(buf) - (size_t)n, "Y: 1\r\n\r\n");
    assert_int_equal(parse_lim(buf, (size_t)n, &big, &r, &e), FG_HTTP_ERROR);
    assert_int_equal(e, FG_HTTP_E_HEADERS_TOO_LARGE);
}

static void test_pipelined_stops_at_head(void **state)
{
    (void)state;
    static struct fg_http_request r;
    const char *s = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    const int one = (int)strlen(s) / 2;
    enum fg_http_error e;
    int rc = fg_http_parse_request(s, strlen(s), &lim, &r, &e);
    assert_int_equal(rc, one);
    slice_eq("target", r.target, r.target_len, "/1", s);
    rc = fg_http_parse_request(s + one, strlen(s) - (size_t)one, &lim, &r, &e);
    assert_int_equal(rc, one);
    slice_eq("target", r.target, r.target_len, "/2", s);
}

/* The hot path: a typical 500-byte browser head. Generous bound (sanitizer builds are
 * several times slower); the number printed is the one to watch. */
static void test_speed(void **state)
{
    (void)state;
    const char *s = "GET /api/products/12345?color=blue&size=m HTTP/1.1\r\n"
                    "Host: shop.example.com\r\n"
                    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:124.0) Gecko/20100101 "
                    "Firefox/124.0\r\n"
                    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
                    "Accept-Language: en-US,en;q=0.5\r\n"
                    "Accept-Encoding: gzip, deflate, br\r\n"
                    "Connection: keep-alive\r\n"
                    "Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n"
                    "X-Forwarded-For: 203.0.113.7, 10.0.0.12\r\n"
                    "X-Amzn-Trace-Id: Root=1-65f0c0de-0123456789abcdef01234567\r\n"
                    "\r\n";
    struct fg_http_limits l = {
        .max_request_line = 8192, .max_header_bytes = 32768, .max_headers = FG_HTTP_MAX_HEADERS};
    static struct fg_http_request r;
    enum fg_http_error e;
    size_t len = strlen(s);
    const int rounds = 200000;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < rounds; i++)
        if (fg_http_parse_request(s, len, &l, &r, &e) != (int)len)
            fail_msg("parse failed: %s", fg_http_error_name(e));
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / rounds;
    printf("# request parse: %zu-byte head, %.0f ns per parse\n", len, ns);
    assert_true(ns < 50000.0);
}

static int report(void **state)
{
    (void)state;
    printf("# %zu request cases, each also fed as every prefix\n", n_cases);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_every_bad_name_byte),
        cmocka_unit_test(test_every_bad_value_byte),
        cmocka_unit_test(test_every_target_byte),
        cmocka_unit_test(test_good_requests),
        cmocka_unit_test(test_slices),
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_error_statuses),
        cmocka_unit_test(test_request_line_limit),
        cmocka_unit_test(test_header_bytes_limit),
        cmocka_unit_test(test_header_count_limit),
        cmocka_unit_test(test_pipelined_stops_at_head),
        cmocka_unit_test(test_speed),
    };
    return cmocka_run_group_tests_name("http request parser", tests, NULL, report);
}
