/*
 * test_chunked.c — the chunked decoder. Each case is decoded whole, split in two at every
 * byte, one byte at a time, and in pieces of every size; each piece sits right before an
 * unreadable page. Payload, outcome, error and bytes consumed must never depend on how
 * the bytes arrive, and every strict prefix of a case must be "need more" or the same
 * error, never the end of the body.
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

struct outcome {
    enum fg_http_chunk_status st; /* DONE, ERROR, or MORE if the input ran out */
    enum fg_http_error err;
    size_t used; /* bytes consumed up to DONE or the error */
    char payload[8192];
    size_t payload_len;
};

static size_t n_cases, n_decodes;

/* Feed one piece to the decoder; false once it reached DONE or ERROR. */
static bool feed(struct fg_http_chunked *c, const char *piece, size_t len, struct outcome *o)
{
    struct guard g;
    char *p = guard_place(&g, piece, len);
    size_t pos = 0;
    bool go_on = true;
    for (;;) {
        if (c->data_left > 0) {
            size_t n = len - pos;
            if (n > c->data_left)
                n = (size_t)c->data_left;
            if (o->payload_len + n > sizeof(o->payload))
                fail_msg("payload too large for the test buffer");
            memcpy(o->payload + o->payload_len, p + pos, n);
            o->payload_len += n;
            pos += n;
            o->used += n;
            fg_http_chunked_data(c, n);
            if (c->data_left > 0)
                break; /* the piece ended inside the data */
            continue;
        }
        size_t used = 0;
        enum fg_http_error err = FG_HTTP_E_NONE;
        enum fg_http_chunk_status st = fg_http_chunked_parse(c, p + pos, len - pos, &used, &err);
        if (used > len - pos)
            fail_msg("consumed more than it was given");
        pos += used;
        o->used += used;
        if (st == FG_CHUNK_DATA)
            continue;
        if (st == FG_CHUNK_MORE) {
            if (pos != len)
                fail_msg("MORE without consuming everything");
            break;
        }
        o->st = st;
        o->err = err;
        if (st == FG_CHUNK_ERROR && err == FG_HTTP_E_NONE)
            fail_msg("error without a reason");
        go_on = false;
        break;
    }
    guard_free(&g);
    return go_on;
}

/* Decode s cut at the given offsets (ascending, each in 1..len-1). */
static void decode_cuts(const char *s, size_t len, const size_t *cuts, size_t n_cuts,
                        size_t max_trailer, struct outcome *o)
{
    n_decodes++;
    struct fg_http_chunked c;
    fg_http_chunked_init(&c);
    if (max_trailer)
        c.max_trailer = max_trailer;
    memset(o, 0, offsetof(struct outcome, payload));
    o->payload_len = 0;
    o->st = FG_CHUNK_MORE;
    size_t start = 0;
    for (size_t i = 0; i <= n_cuts; i++) {
        size_t end = i < n_cuts ? cuts[i] : len;
        if (!feed(&c, s + start, end - start, o))
            return;
        start = end;
    }
}

static void same(const struct outcome *a, const struct outcome *b, const char *how, size_t at,
                 const char *s, size_t len)
{
    if (a->st != b->st || a->err != b->err || a->used != b->used ||
        a->payload_len != b->payload_len || memcmp(a->payload, b->payload, a->payload_len) != 0)
        fail_msg("%s %zu: st %d/%d err %s/%s used %zu/%zu payload %zu/%zu for: %.*s", how, at,
                 a->st, b->st, fg_http_error_name(a->err), fg_http_error_name(b->err), a->used,
                 b->used, a->payload_len, b->payload_len, (int)len, s);
}

/* Decode every way and check they agree; returns the whole-input outcome in *o. */
static void check_all_splits(const char *s, size_t len, size_t max_trailer, struct outcome *o)
{
    static struct outcome other;
    static size_t cuts[8192];
    n_cases++;
    decode_cuts(s, len, NULL, 0, max_trailer, o);
    for (size_t k = 1; k < len; k++) {
        decode_cuts(s, len, &k, 1, max_trailer, &other);
        same(o, &other, "split at", k, s, len);
    }
    for (size_t step = 1; step < len; step++) {
        size_t n = 0;
        for (size_t at = step; at < len && n < ARRAY_LEN(cuts); at += step)
            cuts[n++] = at;
        decode_cuts(s, len, cuts, n, max_trailer, &other);
        same(o, &other, "pieces of", step, s, len);
    }
    /* a strict prefix never ends the body early and never gives another error */
    for (size_t k = 0; k < len; k++) {
        decode_cuts(s, k, NULL, 0, max_trailer, &other);
        if (other.st == FG_CHUNK_DONE && o->st == FG_CHUNK_DONE && k >= o->used) {
            same(o, &other, "prefix", k, s, len);
            continue;
        }
        if (other.st == FG_CHUNK_DONE ||
            (other.st == FG_CHUNK_ERROR && (o->st != FG_CHUNK_ERROR || other.err != o->err)))
            fail_msg("prefix %zu: st %d %s for: %.*s", k, other.st, fg_http_error_name(other.err),
                     (int)len, s);
    }
}

static void ok_case(const char *s, size_t len, const char *payload, size_t payload_len)
{
    static struct outcome o;
    check_all_splits(s, len, 0, &o);
    if (o.st != FG_CHUNK_DONE)
        fail_msg("want DONE, got st %d %s for: %.*s", o.st, fg_http_error_name(o.err), (int)len, s);
    if (o.used != len || o.payload_len != payload_len ||
        memcmp(o.payload, payload, payload_len) != 0)
        fail_msg("used %zu of %zu, payload %zu '%.*s' for: %.*s", o.used, len, o.payload_len,
                 (int)o.payload_len, o.payload, (int)len, s);
}

static void bad_case(const char *s, size_t len, enum fg_http_error want)
{
    static struct outcome o;
    check_all_splits(s, len, 0, &o);
    if (o.st != FG_CHUNK_ERROR || o.err != want)
        fail_msg("want %s, got st %d %s for: %.*s", fg_http_error_name(want), o.st,
                 fg_http_error_name(o.err), (int)len, s);
}

#define OK(in, payload) ok_case(in, sizeof(in) - 1, payload, sizeof(payload) - 1)
#define BAD(in, e)      bad_case(in, sizeof(in) - 1, FG_HTTP_E_##e)

static void test_valid(void **state)
{
    (void)state;
    OK("0\r\n\r\n", "");
    OK("00\r\n\r\n", "");
    OK("0000000000000000\r\n\r\n", ""); /* 16 digits */
    OK("5\r\nhello\r\n0\r\n\r\n", "hello");
    OK("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world");
    OK("1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n", "abc");
    OK("A\r\n0123456789\r\n0\r\n\r\n", "0123456789");
    OK("a\r\n0123456789\r\n00\r\n\r\n", "0123456789");
    OK("000005\r\nhello\r\n0\r\n\r\n", "hello");
    OK("0000000000000005\r\nhello\r\n0\r\n\r\n", "hello");
    OK("10\r\n0123456789abcdef\r\n0\r\n\r\n", "0123456789abcdef");
    OK("5\r\nhe\r\nl\r\n0\r\n\r\n", "he\r\nl");
    OK("5\r\n0\r\n\r\n\r\n0\r\n\r\n", "0\r\n\r\n");
    OK("3\r\n\x00\xff\n\r\n0\r\n\r\n", "\x00\xff\n");
    /* extensions, every form the grammar allows */
    OK("5;ext\r\nhello\r\n0\r\n\r\n", "hello");
    OK("5;ext=1\r\nhello\r\n0;last\r\n\r\n", "hello");
    OK("5;a=b;c;d=e\r\nhello\r\n0\r\n\r\n", "hello");
    OK("5 ;a\r\nhello\r\n0\r\n\r\n", "hello");
    OK("5\t; a\r\nhello\r\n0\r\n\r\n", "hello");
    OK("5; \ta = b\t;c\r\nhello\r\n0\r\n\r\n", "hello");
    OK("5;a=\"\"\r\nhello\r\n0\r\n\r\n", "hello");
    OK("5;a=\"q;\\\"x\" ; b\r\nhello\r\n0\r\n\r\n", "hello");
    OK("5;a=\"sp ace\ttab \x80\xff\"\r\nhello\r\n0\r\n\r\n", "hello");
    OK("5;a=\"\\\\\\ \"\r\nhello\r\n0\r\n\r\n", "hello");
    OK("5;!#$%&'*+-.^_`|~=!#$%&'*+-.^_`|~\r\nhello\r\n0\r\n\r\n", "hello");
    OK("0;a=\"b\"\r\n\r\n", "");
    /* trailers: validated, dropped */
    OK("5\r\nhello\r\n0\r\nTrailer-A: 1\r\nB: two words\r\n\r\n", "hello");
    OK("0\r\nX:\r\n\r\n", "");
    OK("0\r\nX:   \t\r\n\r\n", "");
    OK("0\r\nX: caf\xc3\xa9 \"q\"\r\n\r\n", "");
    OK("0\r\nContent-Length: 5\r\nTransfer-Encoding: x\r\n\r\n", "");
}

static void test_invalid(void **state)
{
    (void)state;
    /* size line */
    BAD("x\r\n", CHUNK_SIZE);
    BAD("\r\n", CHUNK_SIZE);
    BAD("\n", CHUNK_SIZE);
    BAD(";a\r\n", CHUNK_SIZE);
    BAD(" 5\r\nhello\r\n", CHUNK_SIZE);
    BAD("\t5\r\nhello\r\n", CHUNK_SIZE);
    BAD("-5\r\n", CHUNK_SIZE);
    BAD("+5\r\n", CHUNK_SIZE);
    BAD("0x5\r\n", CHUNK_SIZE);
    BAD("5g\r\n", CHUNK_SIZE);
    BAD("5\n", CHUNK_SIZE);
    BAD("5\nhello\r\n", CHUNK_SIZE);
    BAD("5\rx", CHUNK_SIZE);
    BAD("5\r\r\n", CHUNK_SIZE);
    BAD("5 \r\nhello\r\n0\r\n\r\n", CHUNK_SIZE);
    BAD("5\t\r\nhello\r\n0\r\n\r\n", CHUNK_SIZE);
    BAD("5 x\r\n", CHUNK_SIZE);
    BAD("5 5\r\n", CHUNK_SIZE);
    BAD("5,5\r\n", CHUNK_SIZE);
    BAD("5\x00\r\n", CHUNK_SIZE);
    BAD("11111111111111111\r\n", CHUNK_SIZE); /* 17 hex digits */
    BAD("00000000000000000\r\n", CHUNK_SIZE); /* 17 digits, even zeros */
    BAD("00000000000000005\r\n", CHUNK_SIZE);
    BAD("5\r\nhello\r\nx\r\n", CHUNK_SIZE);
    BAD("5\r\nhello\r\n\r\n", CHUNK_SIZE);
    /* extensions */
    BAD("5;\r\nhello\r\n", CHUNK_EXT);
    BAD("5; \r\nhello\r\n", CHUNK_EXT);
    BAD("5;;a\r\nhello\r\n", CHUNK_EXT);
    BAD("5;=v\r\nhello\r\n", CHUNK_EXT);
    BAD("5;a=\r\nhello\r\n", CHUNK_EXT);
    BAD("5;a= \r\nhello\r\n", CHUNK_EXT);
    BAD("5;a==b\r\nhello\r\n", CHUNK_EXT);
    BAD("5;a b\r\nhello\r\n", CHUNK_EXT);
    BAD("5;a \r\nhello\r\n", CHUNK_EXT);
    BAD("5;a=b c\r\nhello\r\n", CHUNK_EXT);
    BAD("5;a=b \r\nhello\r\n", CHUNK_EXT);
    BAD("5;a=b;\r\nhello\r\n", CHUNK_EXT);
    BAD("5;a=b,c\r\nhello\r\n", CHUNK_EXT);
    BAD("5;a,b\r\nhello\r\n", CHUNK_EXT);
    BAD("5;a=\"x\"y\r\nhello\r\n", CHUNK_EXT);
    BAD("5;a=\"x\r\nhello\r\n", CHUNK_EXT);
    BAD("5;a=\"x\\\r\nhello\r\n", CHUNK_EXT);
    BAD("5;a=\\x\r\nhello\r\n", CHUNK_EXT);
    BAD("5;a=\"\x01\"\r\nhello\r\n", CHUNK_EXT);
    BAD("5;a=\"\x7f\"\r\nhello\r\n", CHUNK_EXT);
    BAD("5;a=\"\\\x01\"\r\nhello\r\n", CHUNK_EXT);
    BAD("5;\x01\r\nhello\r\n", CHUNK_EXT);
    BAD("5;a\x00\r\nhello\r\n", CHUNK_EXT);
    BAD("5;a\nhello\r\n", CHUNK_EXT);
    BAD("5;a=b\nhello\r\n", CHUNK_EXT);
    BAD("5;a\rx", CHUNK_SIZE);
    BAD("5;(a)\r\nhello\r\n", CHUNK_EXT);
    BAD("5;a=\xc3\xa9\r\nhello\r\n", CHUNK_EXT);
    /* data and its CRLF */
    BAD("5\r\nhelloX\r\n", CHUNK_CRLF);
    BAD("5\r\nhello\n0\r\n\r\n", CHUNK_CRLF);
    BAD("5\r\nhello\r0\r\n\r\n", CHUNK_CRLF);
    BAD("5\r\nhello\r\r\n", CHUNK_CRLF);
    BAD("5\r\nhello world\r\n0\r\n\r\n", CHUNK_CRLF); /* longer than announced */
    BAD("6\r\nhello\r\n0\r\n\r\n", CHUNK_CRLF);       /* shorter: eats the CR */
    BAD("3\r\nabc0\r\n\r\n", CHUNK_CRLF);
    /* trailers */
    BAD("0\r\nX: a\r\n folded\r\n\r\n", TRAILER);
    BAD("0\r\n X: a\r\n\r\n", TRAILER);
    BAD("0\r\n\tX: a\r\n\r\n", TRAILER);
    BAD("0\r\nX a\r\n\r\n", TRAILER);
    BAD("0\r\nX : a\r\n\r\n", TRAILER);
    BAD("0\r\n: a\r\n\r\n", TRAILER);
    BAD("0\r\nX\r\n\r\n", TRAILER);
    BAD("0\r\nX(y): a\r\n\r\n", TRAILER);
    BAD("0\r\nX: a\x01\r\n\r\n", TRAILER);
    BAD("0\r\nX: a\x00\r\n\r\n", TRAILER);
    BAD("0\r\nX: a\x7f\r\n\r\n", TRAILER);
    BAD("0\r\nX: a\n\r\n", TRAILER);
    BAD("0\r\nX: a\rb\r\n\r\n", TRAILER);
    BAD("0\r\n\n", TRAILER);
    BAD("0\r\n\rx", TRAILER);
    BAD("0\r\n\r\r\n", TRAILER);
}

static void test_incomplete(void **state)
{
    (void)state;
    static const char *more[] = {
        "",           "5",        "5;",         "5;a=\"x",      "5\r",
        "5\r\n",      "5\r\nhel", "5\r\nhello", "5\r\nhello\r", "5\r\nhello\r\n",
        "0\r\n",      "0\r\n\r",  "0\r\nX",     "0\r\nX: y",    "5\r\nhello\r\n0\r\nX: y\r\n",
        "0\r\nX: y\r"};
    for (size_t i = 0; i < ARRAY_LEN(more); i++) {
        static struct outcome o;
        check_all_splits(more[i], strlen(more[i]), 0, &o);
        if (o.st != FG_CHUNK_MORE)
            fail_msg("want MORE for '%s', got %d %s", more[i], o.st, fg_http_error_name(o.err));
    }
}

/* The body ends where the last CRLF ends: bytes after it (the next request) are not eaten,
 * and a finished or failed decoder stays so. */
static void test_stops_at_end_and_sticks(void **state)
{
    (void)state;
    const char *s = "5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    static struct outcome o;
    check_all_splits(s, strlen(s), 0, &o);
    assert_int_equal(o.st, FG_CHUNK_DONE);
    assert_int_equal(o.used, strlen("5\r\nhello\r\n0\r\n\r\n"));

    struct fg_http_chunked c;
    fg_http_chunked_init(&c);
    size_t used;
    enum fg_http_error err = FG_HTTP_E_NONE;
    assert_int_equal(fg_http_chunked_parse(&c, "0\r\n\r\n", 5, &used, &err), FG_CHUNK_DONE);
    assert_int_equal(used, 5);
    assert_int_equal(fg_http_chunked_parse(&c, "more", 4, &used, &err), FG_CHUNK_DONE);
    assert_int_equal(used, 0);

    fg_http_chunked_init(&c);
    assert_int_equal(fg_http_chunked_parse(&c, "5\r\nzz", 5, &used, &err), FG_CHUNK_DATA);
    assert_int_equal(used, 3);
    assert_true(c.data_left == 5);
    /* data not taken yet: reported again, nothing consumed */
    assert_int_equal(fg_http_chunked_parse(&c, "zz", 2, &used, &err), FG_CHUNK_DATA);
    assert_int_equal(used, 0);
    assert_int_equal(fg_http_chunked_parse(&c, "", 0, &used, &err), FG_CHUNK_DATA);
    fg_http_chunked_data(&c, 99); /* more than there is: clamped */
    assert_true(c.data_left == 0);
    assert_int_equal(fg_http_chunked_parse(&c, "X\r\n", 3, &used, &err), FG_CHUNK_ERROR);
    assert_int_equal(err, FG_HTTP_E_CHUNK_CRLF);
    err = FG_HTTP_E_NONE;
    assert_int_equal(fg_http_chunked_parse(&c, "\r\n0\r\n\r\n", 7, &used, &err), FG_CHUNK_ERROR);
    assert_int_equal(err, FG_HTTP_E_CHUNK_CRLF);
    assert_int_equal(used, 0);
}

static void test_limits(void **state)
{
    (void)state;
    static char line[6000];
    static struct outcome o;
    /* a size line of exactly 4096 bytes (CRLF included) passes, one more byte does not */
    for (size_t total = 4094; total <= 4098; total++) {
        memset(line, 'a', sizeof(line));
        memcpy(line, "1;a=", 4);
        memcpy(line + total - 2, "\r\nx\r\n0\r\n\r\n", 10);
        size_t len = total + 8;
        check_all_splits(line, len, 0, &o);
        if (total <= 4096) {
            assert_int_equal(o.st, FG_CHUNK_DONE);
            assert_int_equal(o.payload_len, 1);
        } else {
            assert_int_equal(o.st, FG_CHUNK_ERROR);
            assert_int_equal(o.err, FG_HTTP_E_CHUNK_EXT);
        }
    }
    /* an extension that never ends is refused once over the cap, without waiting */
    memset(line, 'a', sizeof(line));
    memcpy(line, "5;", 2);
    decode_cuts(line, sizeof(line), NULL, 0, 0, &o);
    assert_int_equal(o.st, FG_CHUNK_ERROR);
    assert_int_equal(o.err, FG_HTTP_E_CHUNK_EXT);
    assert_int_equal(o.used, 4096);

    /* trailer section: max_trailer bytes (from the first trailer byte to the final CRLF) */
    const char *t = "0\r\nX-Long-Trailer: 1234567890\r\n\r\n"; /* 30 trailer bytes */
    check_all_splits(t, strlen(t), 30, &o);
    assert_int_equal(o.st, FG_CHUNK_DONE);
    check_all_splits(t, strlen(t), 29, &o);
    assert_int_equal(o.st, FG_CHUNK_ERROR);
    assert_int_equal(o.err, FG_HTTP_E_TRAILER);
    check_all_splits(t, strlen(t), 10, &o);
    assert_int_equal(o.err, FG_HTTP_E_TRAILER);
    /* the default cap is 8 KiB */
    static char many[9000];
    size_t n = (size_t)snprintf(many, sizeof(many), "0\r\n");
    while (n < 8300)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "X: 0123456789\r\n");
    n += (size_t)snprintf(many + n, sizeof(many) - n, "\r\n");
    decode_cuts(many, n, NULL, 0, 0, &o);
    assert_int_equal(o.st, FG_CHUNK_ERROR);
    assert_int_equal(o.err, FG_HTTP_E_TRAILER);

    /* the largest size that fits 16 hex digits */
    struct fg_http_chunked c;
    fg_http_chunked_init(&c);
    size_t used;
    enum fg_http_error err = FG_HTTP_E_NONE;
    const char *m = "ffffffffffffffff\r\n";
    assert_int_equal(fg_http_chunked_parse(&c, m, strlen(m), &used, &err), FG_CHUNK_DATA);
    assert_true(c.data_left == UINT64_MAX);
    fg_http_chunked_init(&c);
    m = "FFFFFFFFFFFFFFFF0\r\n";
    assert_int_equal(fg_http_chunked_parse(&c, m, strlen(m), &used, &err), FG_CHUNK_ERROR);
    assert_int_equal(err, FG_HTTP_E_CHUNK_SIZE);
}

static void test_chunk_header(void **state)
{
    (void)state;
    char b[24];
    assert_int_equal(fg_http_chunk_header(b, 0), 3);
    assert_memory_equal(b, "0\r\n", 3);
    assert_int_equal(fg_http_chunk_header(b, 1), 3);
    assert_memory_equal(b, "1\r\n", 3);
    assert_int_equal(fg_http_chunk_header(b, 255), 4);
    assert_memory_equal(b, "ff\r\n", 4);
    assert_int_equal(fg_http_chunk_header(b, 4096), 6);
    assert_memory_equal(b, "1000\r\n", 6);
    assert_int_equal(fg_http_chunk_header(b, 0x1a2b3c), 8);
    assert_memory_equal(b, "1a2b3c\r\n", 8);
    assert_int_equal(fg_http_chunk_header(b, UINT64_MAX), 18);
    assert_memory_equal(b, "ffffffffffffffff\r\n", 18);
}

/* Re-encode with our own framing and decode again: the payload survives (the proxy
 * re-chunks bodies in both directions). */
static void test_round_trip(void **state)
{
    (void)state;
    static char payload[3000];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (char)(i * 7 + i / 13);
    static char enc[4000];
    size_t e = 0;
    const size_t sizes[] = {1, 7, 100, 1000, 1892};
    size_t p = 0;
    for (size_t k = 0; k < ARRAY_LEN(sizes); k++) {
        e += fg_http_chunk_header(enc + e, sizes[k]);
        memcpy(enc + e, payload + p, sizes[k]);
        e += sizes[k];
        p += sizes[k];
        memcpy(enc + e, "\r\n", 2);
        e += 2;
    }
    memcpy(enc + e, "0\r\n\r\n", 5);
    e += 5;
    static struct outcome o;
    check_all_splits(enc, e, 0, &o);
    assert_int_equal(o.st, FG_CHUNK_DONE);
    assert_int_equal(o.payload_len, p);
    assert_memory_equal(o.payload, payload, p);
}

static int report(void **state)
{
    (void)state;
    printf("# %zu chunked cases, %zu decodes (every split, every piece size, every prefix)\n",
           n_cases, n_decodes);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),      cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_incomplete), cmocka_unit_test(test_stops_at_end_and_sticks),
        cmocka_unit_test(test_limits),     cmocka_unit_test(test_chunk_header),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests_name("http chunked", tests, NULL, report);
}
