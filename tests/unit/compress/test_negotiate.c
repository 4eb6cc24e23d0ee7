/*
 * test_negotiate.c — Accept-Encoding negotiation (RFC 9110 §12.5.3), the should-compress
 * rules, the media-type matcher, and the Vary and ETag edits. Every input string is copied
 * into a heap block of exactly its length, so an over-read trips AddressSanitizer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "compress/compress.h"

#define BR       FG_COMPRESS_BR
#define GZ       FG_COMPRESS_GZIP
#define ID       FG_COMPRESS_IDENTITY
#define NO_FIELD NULL

static const enum fg_compress_encoding br_gz[] = {BR, GZ};
static const enum fg_compress_encoding gz_br[] = {GZ, BR};
static const enum fg_compress_encoding gz_only[] = {GZ};

/* A copy of s[0..len) with nothing readable after it. */
static char *exact(const char *s, size_t len)
{
    char *p = malloc(len ? len : 1);
    assert_non_null(p);
    memcpy(p, s, len);
    return p;
}

static struct fg_compress_choice choose_n(const char *value, size_t len,
                                          const enum fg_compress_encoding *enabled, size_t n,
                                          struct fg_compress_accept *a)
{
    fg_compress_accept_init(a);
    if (value != NO_FIELD) {
        char *copy = exact(value, len);
        fg_compress_accept_add(a, copy, len);
        free(copy);
    }
    return fg_compress_choose(a, enabled, n);
}

struct neg_case {
    const char *value; /* NO_FIELD: no Accept-Encoding field */
    const enum fg_compress_encoding *enabled;
    size_t n_enabled;
    enum fg_compress_encoding want;
    bool identity_ok;
    unsigned malformed;
};

#define DEF br_gz, 2

static const struct neg_case neg_cases[] = {
    /* no field: never compress; an empty one: no coding wanted */
    {NO_FIELD, DEF, ID, true, 0},
    {"", DEF, ID, true, 0},
    {"gzip", DEF, GZ, true, 0},
    {"br", DEF, BR, true, 0},
    {"gzip, deflate, br", DEF, BR, true, 0},
    {"gzip, deflate, br, zstd", DEF, BR, true, 0},
    {"deflate, zstd", DEF, ID, true, 0},
    {"br;q=0, gzip", DEF, GZ, true, 0},
    {"br;q=0, gzip;q=0", DEF, ID, true, 0},
    /* "*" stands for every coding not listed */
    {"*", DEF, BR, true, 0},
    {"*;q=0", DEF, ID, false, 0},
    {"*, br;q=0", DEF, GZ, true, 0},
    {"*;q=0.5, gzip", DEF, GZ, true, 0},
    {"*;q=0.5, br;q=0", DEF, GZ, true, 0},
    {"*;q=0, identity", DEF, ID, true, 0},
    {"*;q=0, gzip", DEF, GZ, false, 0},
    /* identity excluded */
    {"identity;q=0", DEF, ID, false, 0},
    {"identity;q=0, *;q=0", DEF, ID, false, 0},
    {"identity;q=0, deflate", DEF, ID, false, 0},
    {"identity;q=0, gzip;q=0.1", DEF, GZ, false, 0},
    /* identity competes only with a weight of its own (or through "*") */
    {"gzip;q=0.5, identity;q=0.8", DEF, ID, true, 0},
    {"gzip;q=0.8, identity;q=0.8", DEF, GZ, true, 0},
    {"gzip;q=0.5", DEF, GZ, true, 0},
    {"*;q=1, gzip;q=0.5", gz_only, 1, ID, true, 0},
    /* weights and case */
    {"GZIP;Q=0.5, BR;q=0.4", DEF, GZ, true, 0},
    {"gzip;q=0.4, br;q=0.5", DEF, BR, true, 0},
    {"BR", DEF, BR, true, 0},
    {"gzip;q=1.000", DEF, GZ, true, 0},
    {"gzip;q=1.", DEF, GZ, true, 0},
    {"gzip;q=0.", DEF, ID, true, 0},
    {"gzip;q=0", DEF, ID, true, 0},
    {"br;q=0.001", DEF, BR, true, 0},
    {"br;q=0.000, gzip;q=0.001", DEF, GZ, true, 0},
    /* ties: the server's order */
    {"gzip;q=0.5, br;q=0.5", DEF, BR, true, 0},
    {"gzip;q=0.5, br;q=0.5", gz_br, 2, GZ, true, 0},
    {"br, gzip", gz_br, 2, GZ, true, 0},
    /* what is enabled */
    {"br, gzip", gz_only, 1, GZ, true, 0},
    {"br", gz_only, 1, ID, true, 0},
    {"gzip", NULL, 0, ID, true, 0},
    {"*", NULL, 0, ID, true, 0},
    /* aliases and duplicates: the lowest weight wins */
    {"x-gzip", DEF, GZ, true, 0},
    {"X-GZIP;q=0.3, br;q=0.2", DEF, GZ, true, 0},
    {"gzip;q=0, x-gzip", DEF, ID, true, 0},
    {"br, br;q=0", DEF, ID, true, 0},
    /* whitespace and empty elements */
    {" \t gzip \t ; \t q=0.5 \t , \t br ; q = 0.4 \t", DEF, GZ, true, 0},
    {"\tbr\t", DEF, BR, true, 0},
    {"gzip,,,br", gz_br, 2, GZ, true, 0},
    {",,, ,\t,", DEF, ID, true, 0},
    {", gzip ,", DEF, GZ, true, 0},
    /* parameters other than q are ignored; quoted strings may hold commas */
    {"gzip;level=9", DEF, GZ, true, 0},
    {"gzip;foo=\"a,b;q=0\";q=0.3, br;q=0.2", DEF, GZ, true, 0},
    /* malformed elements are skipped, the others still count */
    {"gzip;q=1.001", DEF, ID, true, 1},
    {"gzip;q=", DEF, ID, true, 1},
    {";;;", DEF, ID, true, 1},
    {";q=1", DEF, ID, true, 1},
    {"gzip;q=0.5000", DEF, ID, true, 1},
    {"gzip;q=.5", DEF, ID, true, 1},
    {"gzip;q=-1", DEF, ID, true, 1},
    {"gzip;q=2", DEF, ID, true, 1},
    {"gzip;q=1.5", DEF, ID, true, 1},
    {"gzip;q=abc", DEF, ID, true, 1},
    {"gzip;q=0x1", DEF, ID, true, 1},
    {"gzip;q=0.5;q=0.9", DEF, ID, true, 1},
    {"gzip;q=\"0.5\"", DEF, ID, true, 1},
    {"gzip;q=\"", DEF, ID, true, 1},
    {"gzip;x=\"unterminated, br", DEF, BR, true, 1}, /* skipped up to the next comma */
    {"gzip;", DEF, ID, true, 1},
    {"gzip;=0.5", DEF, ID, true, 1},
    {"gzip;q", DEF, ID, true, 1},
    {"gz ip", DEF, ID, true, 1},
    {"gzip br", DEF, ID, true, 1},
    {"gzip;q=0.5 junk, br", DEF, BR, true, 1},
    {"\xff\xfe, gzip", DEF, GZ, true, 1},
    {"identity;q=x, *;q=0", DEF, ID, false, 1},
    {"br;q=0.9x, gzip;q=0.1, br;q=0.05", DEF, GZ, true, 1},
    {"\"gzip\", br", DEF, BR, true, 1},
    {"=, br", DEF, BR, true, 1},
};

static void test_negotiation_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(neg_cases) / sizeof(neg_cases[0]); i++) {
        const struct neg_case *c = &neg_cases[i];
        struct fg_compress_accept a;
        size_t len = c->value ? strlen(c->value) : 0;
        struct fg_compress_choice ch = choose_n(c->value, len, c->enabled, c->n_enabled, &a);
        if (ch.encoding != c->want || ch.identity_ok != c->identity_ok ||
            a.malformed != c->malformed)
            fail_msg("case %zu \"%s\": got %s ok=%d malformed=%u, want %s ok=%d malformed=%u", i,
                     c->value ? c->value : "(no field)", fg_compress_encoding_name(ch.encoding),
                     ch.identity_ok, a.malformed, fg_compress_encoding_name(c->want),
                     c->identity_ok, c->malformed);
    }
}

/* NUL and other control bytes inside the value are just bytes of a malformed element. */
static void test_embedded_nul(void **state)
{
    (void)state;
    static const char v[] = "gzip\0;q=1, br";
    struct fg_compress_accept a;
    struct fg_compress_choice ch = choose_n(v, sizeof(v) - 1, br_gz, 2, &a);
    assert_int_equal(ch.encoding, BR);
    assert_int_equal(a.malformed, 1);
    ch = choose_n(v, 4, br_gz, 2, &a); /* the length decides, not the NUL */
    assert_int_equal(ch.encoding, GZ);
}

/* The weights themselves, in thousandths. */
static void test_weights_recorded(void **state)
{
    (void)state;
    struct fg_compress_accept a;
    const char *v = "gzip;q=0.25, identity;q=0.125, *;q=0.001";
    choose_n(v, strlen(v), br_gz, 2, &a);
    assert_true(a.present);
    assert_int_equal(a.q[GZ], 250);
    assert_int_equal(a.q[ID], 125);
    assert_int_equal(a.q[BR], FG_COMPRESS_Q_UNSET);
    assert_int_equal(a.q_star, 1);
    choose_n(NO_FIELD, 0, br_gz, 2, &a);
    assert_false(a.present);
}

static struct fg_http_header hdr(const char *name, const char *value)
{
    struct fg_http_header h = {name, strlen(name), value, strlen(value)};
    return h;
}

/* Several Accept-Encoding fields are one list (RFC 9110 §5.3). */
static void test_several_fields(void **state)
{
    (void)state;
    struct fg_http_header h[4] = {hdr("Accept-Encoding", "gzip;q=0.5"), hdr("Accept", "*/*"),
                                  hdr("ACCEPT-ENCODING", "br;q=0.4"), hdr("Accept-Encodings", "*")};
    struct fg_compress_choice ch = fg_compress_negotiate(h, 4, br_gz, 2);
    assert_int_equal(ch.encoding, GZ);
    h[0] = hdr("accept-encoding", "br;q=0");
    h[2] = hdr("Accept-Encoding", "gzip");
    assert_int_equal(fg_compress_negotiate(h, 4, br_gz, 2).encoding, GZ);
    h[0] = hdr("Accept-Encoding", "identity;q=0");
    h[2] = hdr("Accept-Encoding", "*;q=0");
    ch = fg_compress_negotiate(h, 4, br_gz, 2);
    assert_int_equal(ch.encoding, ID);
    assert_false(ch.identity_ok);
    /* a similar name is not the field; no field at all: identity */
    ch = fg_compress_negotiate(h + 3, 1, br_gz, 2);
    assert_int_equal(ch.encoding, ID);
    assert_true(ch.identity_ok);
    assert_int_equal(fg_compress_negotiate(NULL, 0, br_gz, 2).encoding, ID);
}

/* Long values: linear, no fixed buffers, the last element still counts. */
static void test_long_values(void **state)
{
    (void)state;
    size_t cap = 1 << 20, n = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    while (n + 64 < cap)
        n += (size_t)snprintf(s + n, cap - n, "foo;q=0.5, bar;x=\"y,z\" , ");
    n += (size_t)snprintf(s + n, cap - n, "br;q=0.1");
    struct fg_compress_accept a;
    assert_int_equal(choose_n(s, n, br_gz, 2, &a).encoding, BR);
    assert_int_equal(a.malformed, 0);
    memset(s, ';', cap); /* one huge malformed element */
    assert_int_equal(choose_n(s, cap, br_gz, 2, &a).encoding, ID);
    assert_int_equal(a.malformed, 1);
    memset(s, ',', cap); /* only empty elements */
    memcpy(s + cap - 4, "gzip", 4);
    assert_int_equal(choose_n(s, cap, br_gz, 2, &a).encoding, GZ);
    assert_int_equal(a.malformed, 0);
    for (size_t i = 0; i < cap; i++) /* a long token that is no coding we know */
        s[i] = "gzipbr"[i % 6];
    assert_int_equal(choose_n(s, cap, br_gz, 2, &a).encoding, ID);
    free(s);
}

/* Random bytes from an alphabet of the grammar's characters: never a crash, never a coding
 * that is not enabled, never one the client gave weight 0. */
static void test_random_values(void **state)
{
    (void)state;
    static const char alphabet[] = "gzipbrGZIPBRx-*;q=01.5 \t,\"\\identy\x80\x01";
    uint32_t seed = 1;
    char buf[64];
    for (int iter = 0; iter < 200000; iter++) {
        size_t len = (size_t)(iter % (int)sizeof(buf));
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            buf[i] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
        }
        struct fg_compress_accept a;
        char *copy = exact(buf, len);
        fg_compress_accept_init(&a);
        fg_compress_accept_add(&a, copy, len);
        free(copy);
        struct fg_compress_choice ch = fg_compress_choose(&a, gz_only, 1);
        assert_true(ch.encoding == ID || ch.encoding == GZ);
        if (ch.encoding == GZ)
            assert_true(a.q[GZ] > 0 || (a.q[GZ] == FG_COMPRESS_Q_UNSET && a.q_star > 0));
        for (int e = 0; e < FG_COMPRESS_ENCODING__COUNT; e++)
            assert_true(a.q[e] >= FG_COMPRESS_Q_UNSET && a.q[e] <= FG_COMPRESS_Q_MAX);
    }
}

static void test_encoding_names(void **state)
{
    (void)state;
    assert_string_equal(fg_compress_encoding_name(ID), "identity");
    assert_string_equal(fg_compress_encoding_name(GZ), "gzip");
    assert_string_equal(fg_compress_encoding_name(BR), "br");
    assert_string_equal(fg_compress_encoding_name(FG_COMPRESS_ENCODING__COUNT), "unknown");
    assert_int_equal(fg_compress_default_order[0], BR);
    assert_int_equal(fg_compress_default_order[1], GZ);
}

/* ---- should-compress -------------------------------------------------------------- */

static struct fg_http_header resp_h[8];
static size_t resp_n;

/* A compressible response's fields, plus one extra field when name is not NULL. */
static void fields(const char *name, const char *value)
{
    resp_n = 0;
    resp_h[resp_n++] = hdr("Content-Type", "text/html; charset=utf-8");
    resp_h[resp_n++] = hdr("Cache-Control", "max-age=60");
    if (name != NULL)
        resp_h[resp_n++] = hdr(name, value);
}

static enum fg_compress_reason check(enum fg_http_method m, int status, uint64_t len)
{
    return fg_compress_check(NULL, m, status, resp_h, resp_n, len);
}

static void test_check_yes(void **state)
{
    (void)state;
    fields(NULL, NULL);
    assert_int_equal(check(FG_HTTP_GET, 200, 10000), FG_COMPRESS_YES);
    assert_int_equal(check(FG_HTTP_POST, 404, 10000), FG_COMPRESS_YES);
    assert_int_equal(check(FG_HTTP_GET, 500, FG_COMPRESS_LENGTH_UNKNOWN), FG_COMPRESS_YES);
}

static void test_check_head(void **state)
{
    (void)state;
    fields(NULL, NULL);
    assert_int_equal(check(FG_HTTP_HEAD, 200, 10000), FG_COMPRESS_NO_HEAD);
}

static void test_check_status(void **state)
{
    (void)state;
    fields(NULL, NULL);
    static const int none[] = {100, 101, 103, 199, 204, 304};
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++)
        assert_int_equal(check(FG_HTTP_GET, none[i], 10000), FG_COMPRESS_NO_STATUS);
    assert_int_equal(check(FG_HTTP_GET, 200, 10000), FG_COMPRESS_YES);
    assert_int_equal(check(FG_HTTP_GET, 205, 10000), FG_COMPRESS_YES);
}

static void test_check_partial(void **state)
{
    (void)state;
    fields(NULL, NULL);
    assert_int_equal(check(FG_HTTP_GET, 206, 10000), FG_COMPRESS_NO_PARTIAL);
    fields("content-range", "bytes 0-9999/20000");
    assert_int_equal(check(FG_HTTP_GET, 200, 10000), FG_COMPRESS_NO_PARTIAL);
}

static void test_check_encoded(void **state)
{
    (void)state;
    static const char *const encoded[] = {"gzip", "br", "identity, gzip", "x-custom", "GZIP"};
    for (size_t i = 0; i < sizeof(encoded) / sizeof(encoded[0]); i++) {
        fields("Content-Encoding", encoded[i]);
        assert_int_equal(check(FG_HTTP_GET, 200, 10000), FG_COMPRESS_NO_ENCODED);
    }
    static const char *const plain[] = {"identity", "Identity", "", " , identity ,"};
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        fields("Content-Encoding", plain[i]);
        assert_int_equal(check(FG_HTTP_GET, 200, 10000), FG_COMPRESS_YES);
    }
}

static void test_check_no_transform(void **state)
{
    (void)state;
    fields("Cache-Control", "public, No-Transform");
    assert_int_equal(check(FG_HTTP_GET, 200, 10000), FG_COMPRESS_NO_TRANSFORM);
    assert_true(fg_compress_no_transform(resp_h, resp_n));
    fields("Cache-Control", "no-transformer");
    assert_int_equal(check(FG_HTTP_GET, 200, 10000), FG_COMPRESS_YES);
    assert_false(fg_compress_no_transform(resp_h, resp_n));
}

static void test_check_type(void **state)
{
    (void)state;
    fields(NULL, NULL);
    resp_h[0] = hdr("Content-Type", "image/png");
    assert_int_equal(check(FG_HTTP_GET, 200, 10000), FG_COMPRESS_NO_TYPE);
    resp_h[0] = hdr("Content-Type", "TEXT/CSS");
    assert_int_equal(check(FG_HTTP_GET, 200, 10000), FG_COMPRESS_YES);
    resp_h[0] = hdr("X-Content-Type", "text/html"); /* no Content-Type at all */
    assert_int_equal(check(FG_HTTP_GET, 200, 10000), FG_COMPRESS_NO_TYPE);
    /* a configured list replaces the defaults */
    static const char *const only_bin[] = {"application/octet-stream", NULL};
    struct fg_compress_policy p = {only_bin, 0};
    resp_h[0] = hdr("Content-Type", "text/html");
    assert_int_equal(fg_compress_check(&p, FG_HTTP_GET, 200, resp_h, resp_n, 10),
                     FG_COMPRESS_NO_TYPE);
    resp_h[0] = hdr("Content-Type", "application/octet-stream");
    assert_int_equal(fg_compress_check(&p, FG_HTTP_GET, 200, resp_h, resp_n, 10), FG_COMPRESS_YES);
}

static void test_check_min_length(void **state)
{
    (void)state;
    fields(NULL, NULL);
    assert_int_equal(check(FG_HTTP_GET, 200, FG_COMPRESS_MIN_LENGTH_DEFAULT - 1),
                     FG_COMPRESS_NO_SMALL);
    assert_int_equal(check(FG_HTTP_GET, 200, FG_COMPRESS_MIN_LENGTH_DEFAULT), FG_COMPRESS_YES);
    assert_int_equal(check(FG_HTTP_GET, 200, 0), FG_COMPRESS_NO_SMALL);
    struct fg_compress_policy p = {NULL, 1000}; /* NULL types: the defaults */
    assert_int_equal(fg_compress_check(&p, FG_HTTP_GET, 200, resp_h, resp_n, 999),
                     FG_COMPRESS_NO_SMALL);
    assert_int_equal(fg_compress_check(&p, FG_HTTP_GET, 200, resp_h, resp_n, 1000),
                     FG_COMPRESS_YES);
    assert_int_equal(
        fg_compress_check(&p, FG_HTTP_GET, 200, resp_h, resp_n, FG_COMPRESS_LENGTH_UNKNOWN),
        FG_COMPRESS_YES);
}

/* The first rule that refuses is the reason reported. */
static void test_check_order(void **state)
{
    (void)state;
    fields("Content-Encoding", "gzip");
    resp_h[0] = hdr("Content-Type", "image/png");
    assert_int_equal(check(FG_HTTP_HEAD, 206, 1), FG_COMPRESS_NO_HEAD);
    assert_int_equal(check(FG_HTTP_GET, 304, 1), FG_COMPRESS_NO_STATUS);
    assert_int_equal(check(FG_HTTP_GET, 206, 1), FG_COMPRESS_NO_PARTIAL);
    assert_int_equal(check(FG_HTTP_GET, 200, 1), FG_COMPRESS_NO_ENCODED);
}

/* Over a parsed head, the framing gives the length. */
static void test_check_response(void **state)
{
    (void)state;
    static struct fg_http_response resp;
    struct fg_http_limits lim = {8192, 8192, 64};
    enum fg_http_error err;
    struct {
        const char *head;
        enum fg_http_method method;
        enum fg_compress_reason want;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n", FG_HTTP_GET,
         FG_COMPRESS_NO_SMALL},
        {"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5000\r\n\r\n", FG_HTTP_GET,
         FG_COMPRESS_YES},
        {"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
         FG_HTTP_GET, FG_COMPRESS_YES},
        {"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n", FG_HTTP_GET, FG_COMPRESS_YES},
        {"HTTP/1.1 204 No Content\r\nContent-Type: text/plain\r\n\r\n", FG_HTTP_GET,
         FG_COMPRESS_NO_STATUS},
        {"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5000\r\n\r\n",
         FG_HTTP_HEAD, FG_COMPRESS_NO_HEAD},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int len = (int)strlen(cases[i].head);
        assert_int_equal(
            fg_http_parse_response(cases[i].head, (size_t)len, &lim, cases[i].method, &resp, &err),
            len);
        assert_int_equal(fg_compress_check_response(NULL, cases[i].method, &resp), cases[i].want);
    }
}

static void test_reason_names(void **state)
{
    (void)state;
    for (int i = 0; i < FG_COMPRESS_REASON__COUNT; i++) {
        const char *name = fg_compress_reason_name((enum fg_compress_reason)i);
        assert_non_null(name);
        assert_string_not_equal(name, "unknown");
        for (int j = 0; j < i; j++)
            assert_string_not_equal(name, fg_compress_reason_name((enum fg_compress_reason)j));
    }
    assert_string_equal(fg_compress_reason_name(FG_COMPRESS_NO_TRANSFORM), "no_transform");
    assert_string_equal(fg_compress_reason_name(FG_COMPRESS_REASON__COUNT), "unknown");
}

/* ---- media types ------------------------------------------------------------------ */

static bool match(const char *pattern, const char *value)
{
    char *copy = exact(value, strlen(value));
    bool r = fg_compress_type_match(pattern, copy, strlen(value));
    free(copy);
    return r;
}

static void test_type_match(void **state)
{
    (void)state;
    assert_true(match("text/*", "text/html"));
    assert_true(match("text/*", "text/plain; charset=utf-8"));
    assert_true(match("text/*", "Text/CSS"));
    assert_true(match("text/*", " \ttext/html \t;x=y"));
    assert_false(match("text/*", "text/"));
    assert_false(match("text/*", "text"));
    assert_false(match("text/*", "textual/html"));
    assert_false(match("text/*", "application/text"));
    assert_false(match("text/*", "text/html/x"));
    assert_false(match("text/*", "text/ html"));
    assert_true(match("application/json", "APPLICATION/JSON;charset=utf-8"));
    assert_false(match("application/json", "application/jsonx"));
    assert_false(match("application/json", "application/json-seq"));
    assert_true(match("application/*+json", "application/ld+json"));
    assert_true(match("application/*+json", "application/vnd.api+JSON"));
    assert_false(match("application/*+json", "application/json"));
    assert_false(match("application/*+json", "application/+json"));
    assert_false(match("application/*+json", "text/ld+json"));
    assert_false(match("application/*+json", "application/ld+jsonx"));
    assert_true(match("image/svg+xml", "image/svg+xml"));
    assert_false(match("image/svg+xml", "image/svg"));
    assert_true(match("*/*", "video/mp4"));
    assert_false(match("*/*", "video"));
    static const char *const junk[] = {"", ";", "/", " / ", "text/html\"", "t\x01/x", "\xc3/x"};
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
        assert_false(match("*/*", junk[i]));
}

static void test_default_types(void **state)
{
    (void)state;
    static const char *const yes[] = {
        "text/html",
        "text/css",
        "text/plain",
        "text/javascript",
        "application/json",
        "application/javascript",
        "application/x-javascript",
        "application/xml",
        "application/rss+xml",
        "application/atom+xml",
        "image/svg+xml",
        "application/wasm",
        "font/ttf",
        "font/otf",
        "application/vnd.ms-fontobject",
        "application/manifest+json",
        "application/ld+json",
        "application/problem+json; charset=utf-8",
    };
    static const char *const no[] = {
        "image/png",       "image/jpeg",       "image/webp",
        "font/woff2",      "font/woff",        "video/mp4",
        "application/zip", "application/gzip", "application/octet-stream"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (!fg_compress_type_listed(fg_compress_default_types, yes[i], strlen(yes[i])))
            fail_msg("%s should be compressible", yes[i]);
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (fg_compress_type_listed(fg_compress_default_types, no[i], strlen(no[i])))
            fail_msg("%s should not be compressible", no[i]);
}

/* ---- Vary and ETag ---------------------------------------------------------------- */

static void expect_vary(const char *in, const char *want)
{
    char out[128];
    size_t len = 0;
    char *copy = in ? exact(in, strlen(in)) : NULL;
    assert_true(fg_compress_vary_merge(copy, in ? strlen(in) : 0, out, sizeof(out), &len));
    free(copy);
    if (len != strlen(want) || memcmp(out, want, len) != 0)
        fail_msg("Vary \"%s\": got \"%.*s\", want \"%s\"", in ? in : "(none)", (int)len, out, want);
}

static void test_vary_merge(void **state)
{
    (void)state;
    expect_vary(NULL, "Accept-Encoding");
    expect_vary("", "Accept-Encoding");
    expect_vary(" ,\t", "Accept-Encoding");
    expect_vary("Cookie", "Cookie, Accept-Encoding");
    expect_vary("  Origin  ", "Origin, Accept-Encoding");
    expect_vary("Cookie, ", "Cookie, Accept-Encoding");
    expect_vary("Origin,Cookie,", "Origin,Cookie, Accept-Encoding");
    expect_vary("accept-encoding", "accept-encoding");
    expect_vary("Cookie, ACCEPT-ENCODING ", "Cookie, ACCEPT-ENCODING");
    expect_vary("Accept-Encodingx", "Accept-Encodingx, Accept-Encoding");
    expect_vary("*", "*");
    expect_vary("Cookie, *", "*");
}

static void test_vary_no_room(void **state)
{
    (void)state;
    char out[64];
    size_t len = 99;
    const char *want = "Cookie, Accept-Encoding";
    assert_false(fg_compress_vary_merge("Cookie", 6, out, strlen(want) - 1, &len));
    assert_int_equal(len, 99); /* untouched on failure */
    assert_true(fg_compress_vary_merge("Cookie", 6, out, strlen(want), &len));
    assert_int_equal(len, strlen(want));
    assert_false(fg_compress_vary_merge(NULL, 0, out, 14, &len));
    assert_false(fg_compress_vary_merge("*", 1, out, 0, &len));
}

static void expect_etag(const char *in, const char *want)
{
    char out[128];
    size_t len = 0;
    char *copy = exact(in, strlen(in));
    assert_true(fg_compress_etag_weaken(copy, strlen(in), out, sizeof(out), &len));
    free(copy);
    if (len != strlen(want) || memcmp(out, want, len) != 0)
        fail_msg("ETag %s: got %.*s, want %s", in, (int)len, out, want);
}

static void test_etag_weaken(void **state)
{
    (void)state;
    expect_etag("\"abc\"", "W/\"abc\"");
    expect_etag("\"\"", "W/\"\"");
    expect_etag(" \"v1-\x80\xff\" ", "W/\"v1-\x80\xff\"");
    expect_etag("W/\"abc\"", "W/\"abc\""); /* weak stays weak */
    /* malformed: left alone */
    expect_etag("abc", "abc");
    expect_etag("\"abc", "\"abc");
    expect_etag("\"", "\"");
    expect_etag("\"ab\"c\"", "\"ab\"c\"");
    expect_etag("\"a b\"", "\"a b\"");
    expect_etag("w/\"abc\"", "w/\"abc\"");
    expect_etag("W/abc", "W/abc");
    expect_etag("\"a\", \"b\"", "\"a\", \"b\"");
    char out[8];
    size_t len = 99;
    assert_true(fg_compress_etag_weaken(NULL, 0, out, sizeof(out), &len));
    assert_int_equal(len, 0);
}

static void test_etag_no_room(void **state)
{
    (void)state;
    char out[16];
    size_t len = 99;
    assert_false(fg_compress_etag_weaken("\"abc\"", 5, out, 6, &len));
    assert_int_equal(len, 99);
    assert_true(fg_compress_etag_weaken("\"abc\"", 5, out, 7, &len));
    assert_int_equal(len, 7);
    assert_false(fg_compress_etag_weaken("W/\"abc\"", 7, out, 6, &len));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_negotiation_table),  cmocka_unit_test(test_embedded_nul),
        cmocka_unit_test(test_weights_recorded),   cmocka_unit_test(test_several_fields),
        cmocka_unit_test(test_long_values),        cmocka_unit_test(test_random_values),
        cmocka_unit_test(test_encoding_names),     cmocka_unit_test(test_check_yes),
        cmocka_unit_test(test_check_head),         cmocka_unit_test(test_check_status),
        cmocka_unit_test(test_check_partial),      cmocka_unit_test(test_check_encoded),
        cmocka_unit_test(test_check_no_transform), cmocka_unit_test(test_check_type),
        cmocka_unit_test(test_check_min_length),   cmocka_unit_test(test_check_order),
        cmocka_unit_test(test_check_response),     cmocka_unit_test(test_reason_names),
        cmocka_unit_test(test_type_match),         cmocka_unit_test(test_default_types),
        cmocka_unit_test(test_vary_merge),         cmocka_unit_test(test_vary_no_room),
        cmocka_unit_test(test_etag_weaken),        cmocka_unit_test(test_etag_no_room),
    };
    return cmocka_run_group_tests_name("compress negotiation and policy", tests, NULL, NULL);
}
