/*
 * test_chunked.c — the chunked decoder fed in every piece size from 1 byte to the whole
 * input: the payload and the outcome must never depend on how the bytes arrive.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "http/http.h"

/* Decode s in pieces of `step` bytes. Returns the final status; payload in out. */
static enum fg_http_chunk_status decode(const char *s, size_t len, size_t step, char *out,
                                        size_t *out_len, enum fg_http_error *err,
                                        size_t *used_total)
{
    struct fg_http_chunked c;
    fg_http_chunked_init(&c);
    size_t pos = 0, o = 0;
    enum fg_http_chunk_status st = FG_CHUNK_MORE;
    size_t avail_end = 0;
    while (pos < len || st == FG_CHUNK_DATA) {
        avail_end = avail_end + step > len ? len : avail_end + step;
        if (avail_end < pos)
            avail_end = pos;
        for (;;) {
            if (c.data_left > 0) {
                size_t n = avail_end - pos;
                if (n > c.data_left)
                    n = (size_t)c.data_left;
                memcpy(out + o, s + pos, n);
                o += n;
                pos += n;
                fg_http_chunked_data(&c, n);
                if (c.data_left > 0)
                    break; /* need more input */
                continue;
            }
            size_t used = 0;
            st = fg_http_chunked_parse(&c, s + pos, avail_end - pos, &used, err);
            pos += used;
            if (st == FG_CHUNK_DATA)
                continue;
            if (st == FG_CHUNK_DONE || st == FG_CHUNK_ERROR) {
                *out_len = o;
                *used_total = pos;
                return st;
            }
            break; /* MORE */
        }
        if (avail_end == len && pos == len && c.data_left == 0 && st != FG_CHUNK_DATA)
            break;
        if (avail_end == len && c.data_left > 0)
            break;
    }
    *out_len = o;
    *used_total = pos;
    return FG_CHUNK_MORE;
}

static void check(const char *in, size_t len, enum fg_http_chunk_status want, const char *payload,
                  enum fg_http_error want_err)
{
    char out[4096];
    for (size_t step = 1; step <= len; step++) {
        size_t ol = 0, used = 0;
        enum fg_http_error err = FG_HTTP_E_NONE;
        enum fg_http_chunk_status st = decode(in, len, step, out, &ol, &err, &used);
        if (st != want)
            fail_msg("step %zu: status %d, want %d, for %.*s", step, st, want, (int)len, in);
        if (want == FG_CHUNK_ERROR && err != want_err)
            fail_msg("step %zu: error %s want %s", step, fg_http_error_name(err),
                     fg_http_error_name(want_err));
        if (want == FG_CHUNK_DONE) {
            assert_int_equal(ol, strlen(payload));
            assert_memory_equal(out, payload, ol);
            assert_int_equal(used, len);
        }
    }
}

#define OK(in, payload) check(in, sizeof(in) - 1, FG_CHUNK_DONE, payload, FG_HTTP_E_NONE)
#define BAD(in, e)      check(in, sizeof(in) - 1, FG_CHUNK_ERROR, "", e)
#define MORE(in)        check(in, sizeof(in) - 1, FG_CHUNK_MORE, "", FG_HTTP_E_NONE)

static void test_valid(void **state)
{
    (void)state;
    OK("0\r\n\r\n", "");
    OK("5\r\nhello\r\n0\r\n\r\n", "hello");
    OK("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world");
    OK("A\r\n0123456789\r\n0\r\n\r\n", "0123456789");
    OK("a\r\n0123456789\r\n00\r\n\r\n", "0123456789");
    OK("000005\r\nhello\r\n0\r\n\r\n", "hello");
    OK("5;ext=1\r\nhello\r\n0;last\r\n\r\n", "hello");
    OK("5 ;a=\"q;\\\"x\" ; b\r\nhello\r\n0\r\n\r\n", "hello");
    OK("5\r\nhe\r\nl\r\n0\r\n\r\n", "he\r\nl");
    OK("5\r\nhello\r\n0\r\nTrailer-A: 1\r\nB: two words\r\n\r\n", "hello");
}

static void test_invalid(void **state)
{
    (void)state;
    BAD("x\r\n", FG_HTTP_E_CHUNK_SIZE);
    BAD("\r\n", FG_HTTP_E_CHUNK_SIZE);
    BAD("-5\r\n", FG_HTTP_E_CHUNK_SIZE);
    BAD("0x5\r\n", FG_HTTP_E_CHUNK_SIZE);
    BAD("5\n", FG_HTTP_E_CHUNK_SIZE);
    BAD("5\rx", FG_HTTP_E_CHUNK_SIZE);
    BAD("11111111111111111\r\n", FG_HTTP_E_CHUNK_SIZE); /* 17 hex digits */
    BAD("5\r\nhelloX\r\n", FG_HTTP_E_CHUNK_CRLF);
    BAD("5\r\nhello\n0\r\n\r\n", FG_HTTP_E_CHUNK_CRLF);
    BAD("5\r\nhello\r0\r\n\r\n", FG_HTTP_E_CHUNK_CRLF);
    BAD("5;\x01\r\nhello\r\n", FG_HTTP_E_CHUNK_EXT);
    BAD("5;a=\"\x01\"\r\nhello\r\n", FG_HTTP_E_CHUNK_EXT);
    BAD("5 x\r\n", FG_HTTP_E_CHUNK_SIZE);
    BAD("0\r\nX: a\r\n folded\r\n\r\n", FG_HTTP_E_TRAILER);
    BAD("0\r\nX a\r\n\r\n", FG_HTTP_E_TRAILER);
    BAD("0\r\nX: a\x01\r\n\r\n", FG_HTTP_E_TRAILER);
    BAD("0\r\n\n", FG_HTTP_E_TRAILER);
    BAD("0\r\n\rx", FG_HTTP_E_TRAILER);
}

static void test_incomplete(void **state)
{
    (void)state;
    MORE("5");
    MORE("5\r\nhel");
    MORE("5\r\nhello\r\n");
    MORE("5\r\nhello\r\n0\r\n");
    MORE("5\r\nhello\r\n0\r\nX: y\r\n");
}

static void test_limits(void **state)
{
    (void)state;
    static char big[6000];
    memset(big, 'a', sizeof(big));
    memcpy(big, "5;", 2);
    struct fg_http_chunked c;
    fg_http_chunked_init(&c);
    size_t used;
    enum fg_http_error err = FG_HTTP_E_NONE;
    assert_int_equal(fg_http_chunked_parse(&c, big, sizeof(big), &used, &err), FG_CHUNK_ERROR);
    assert_int_equal(err, FG_HTTP_E_CHUNK_EXT);

    fg_http_chunked_init(&c);
    c.max_trailer = 10;
    const char *t = "0\r\nX-Long-Trailer: 1234567890\r\n\r\n";
    assert_int_equal(fg_http_chunked_parse(&c, t, strlen(t), &used, &err), FG_CHUNK_ERROR);
    assert_int_equal(err, FG_HTTP_E_TRAILER);

    /* the largest size that fits 16 hex digits */
    fg_http_chunked_init(&c);
    const char *m = "ffffffffffffffff\r\n";
    assert_int_equal(fg_http_chunked_parse(&c, m, strlen(m), &used, &err), FG_CHUNK_DATA);
    assert_true(c.data_left == UINT64_MAX);
}

static void test_chunk_header(void **state)
{
    (void)state;
    char b[24];
    assert_int_equal(fg_http_chunk_header(b, 0), 3);
    assert_memory_equal(b, "0\r\n", 3);
    assert_int_equal(fg_http_chunk_header(b, 255), 4);
    assert_memory_equal(b, "ff\r\n", 4);
    assert_int_equal(fg_http_chunk_header(b, 0x1a2b3c), 8);
    assert_memory_equal(b, "1a2b3c\r\n", 8);
    assert_int_equal(fg_http_chunk_header(b, UINT64_MAX), 18);
}

/* Re-encode what we decoded and decode again: same payload (what the proxy relies on). */
static void test_round_trip(void **state)
{
    (void)state;
    char payload[3000];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (char)('a' + i % 26);
    char enc[4000];
    size_t e = 0;
    size_t sizes[] = {1, 7, 100, 1000, 1892};
    size_t p = 0;
    for (size_t k = 0; k < 5; k++) {
        e += fg_http_chunk_header(enc + e, sizes[k]);
        memcpy(enc + e, payload + p, sizes[k]);
        e += sizes[k];
        p += sizes[k];
        memcpy(enc + e, "\r\n", 2);
        e += 2;
    }
    memcpy(enc + e, "0\r\n\r\n", 5);
    e += 5;
    char out[4000];
    size_t ol, used;
    enum fg_http_error err;
    for (size_t step = 1; step < e; step += 37) {
        assert_int_equal(decode(enc, e, step, out, &ol, &err, &used), FG_CHUNK_DONE);
        assert_int_equal(ol, p);
        assert_memory_equal(out, payload, p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_incomplete),   cmocka_unit_test(test_limits),
        cmocka_unit_test(test_chunk_header), cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests_name("http chunked", tests, NULL, NULL);
}
