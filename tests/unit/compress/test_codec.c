/*
 * test_codec.c — the streaming gzip and brotli encoders and decoders. Encoder output is
 * checked with the libraries' own reference decoders (zlib's inflate with a strict gzip
 * wrapper, BrotliDecoderDecompress), never only with our decoder, and its size against
 * the libraries' one-shot compression at the same settings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <brotli/decode.h>
#include <brotli/encode.h>
#include <event2/buffer.h>
#include <zlib.h>

#include "compress/compress.h"

#define GZ    FG_COMPRESS_GZIP
#define BR    FG_COMPRESS_BR
#define CHUNK FG_COMPRESS_CHUNK
#define MIB   (1u << 20)

/* ---- test data -------------------------------------------------------------------- */

static uint32_t rng;

static uint32_t next_rand(void)
{
    rng = rng * 1103515245u + 12345u;
    return rng >> 8;
}

/* HTML-like text: markup and a vocabulary of words, compressible about 4:1 like a page. */
static uint8_t *make_text(size_t n, uint32_t seed)
{
    static const char *const words[] = {"<div class=\"item\">",
                                        "</div>\n",
                                        "price",
                                        "sale",
                                        "<a href=\"/p/",
                                        "\">",
                                        "</a>",
                                        "the",
                                        "quick",
                                        "brown",
                                        "fox",
                                        "order",
                                        "cart",
                                        "shipping",
                                        "free"};
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    rng = seed;
    size_t i = 0;
    while (i < n) {
        char w[32];
        int len = next_rand() % 3 == 0 ? snprintf(w, sizeof(w), "%u ", next_rand() % 10000)
                                       : snprintf(w, sizeof(w), "%s ", words[next_rand() % 15]);
        for (int k = 0; k < len && i < n; k++)
            p[i++] = (uint8_t)w[k];
    }
    return p;
}

static uint8_t *make_random(size_t n, uint32_t seed)
{
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    rng = seed;
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)next_rand();
    return p;
}

static uint8_t *text_1m, *random_1m;

static int setup(void **state)
{
    (void)state;
    text_1m = make_text(MIB, 1);
    random_1m = make_random(MIB, 2);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(text_1m);
    free(random_1m);
    return 0;
}

/* ---- helpers ---------------------------------------------------------------------- */

/* A copy of the buffer's bytes from offset on (the buffer is left as it is). */
static uint8_t *copy_out(struct evbuffer *b, size_t offset, size_t *len)
{
    size_t total = evbuffer_get_length(b);
    assert_true(offset <= total);
    *len = total - offset;
    uint8_t *p = malloc(total ? total : 1);
    assert_non_null(p);
    assert_int_equal(evbuffer_copyout(b, p, total), (ev_ssize_t)total);
    memmove(p, p + offset, *len);
    return p;
}

static struct fg_compress_params params(enum fg_compress_encoding enc, int level, int wbits)
{
    struct fg_compress_params p;
    fg_compress_params_default(enc, &p);
    if (level >= 0)
        p.level = level;
    if (wbits > 0)
        p.window_bits = wbits;
    return p;
}

/* Compress data in pieces of `piece` bytes (0: one write) and finish; checks the counters. */
static uint8_t *compress_pieces(enum fg_compress_encoding enc, const struct fg_compress_params *p,
                                const uint8_t *data, size_t len, size_t piece, size_t *out_len)
{
    struct fg_compressor *c = fg_compressor_new(enc, p);
    assert_non_null(c);
    struct evbuffer *out = evbuffer_new();
    size_t step = piece ? piece : (len ? len : 1);
    for (size_t off = 0; off < len; off += step) {
        size_t n = len - off < step ? len - off : step;
        assert_int_equal(fg_compressor_write(c, data + off, n, out), FG_COMPRESS_OK);
    }
    assert_int_equal(fg_compressor_finish(c, out), FG_COMPRESS_OK);
    assert_int_equal(fg_compressor_bytes_in(c), len);
    assert_int_equal(fg_compressor_bytes_out(c), evbuffer_get_length(out));
    fg_compressor_free(c);
    uint8_t *r = copy_out(out, 0, out_len);
    evbuffer_free(out);
    return r;
}

/* zlib's inflate, gzip wrapper only (15 + 16: a zlib stream would fail). Returns zlib's
 * result: Z_STREAM_END for a complete stream, Z_OK or Z_BUF_ERROR when it stopped early. */
static int ref_inflate(const uint8_t *in, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int r = inflate(&z, Z_SYNC_FLUSH);
    *out_len = cap - z.avail_out;
    if (r == Z_STREAM_END && z.avail_in != 0)
        r = Z_DATA_ERROR; /* bytes after the end */
    inflateEnd(&z);
    return r;
}

/* A stream of brotli, as far as it goes: the result of the streaming reference decoder. */
static BrotliDecoderResult ref_unbrotli_prefix(const uint8_t *in, size_t len, uint8_t *out,
                                               size_t cap, size_t *out_len)
{
    BrotliDecoderState *s = BrotliDecoderCreateInstance(NULL, NULL, NULL);
    assert_non_null(s);
    size_t avail_in = len, avail_out = cap;
    const uint8_t *next_in = in;
    uint8_t *next_out = out;
    BrotliDecoderResult r =
        BrotliDecoderDecompressStream(s, &avail_in, &next_in, &avail_out, &next_out, NULL);
    *out_len = cap - avail_out;
    BrotliDecoderDestroyInstance(s);
    return r;
}

/* Decode enc with the reference decoder and compare with want[0..want_len). */
static void expect_ref_decodes(enum fg_compress_encoding enc, const uint8_t *in, size_t len,
                               const uint8_t *want, size_t want_len)
{
    size_t cap = want_len + 64, got = 0;
    uint8_t *out = malloc(cap);
    assert_non_null(out);
    if (enc == GZ) {
        assert_int_equal(ref_inflate(in, len, out, cap, &got), Z_STREAM_END);
    } else {
        got = cap;
        assert_int_equal(BrotliDecoderDecompress(len, in, &got, out),
                         BROTLI_DECODER_RESULT_SUCCESS);
    }
    assert_int_equal(got, want_len);
    assert_memory_equal(out, want, want_len);
    free(out);
}

/* Decode with our decoder in pieces; returns the status of the last call. */
static enum fg_compress_status our_decode(enum fg_compress_encoding enc, const uint8_t *in,
                                          size_t len, size_t piece, uint64_t max_output,
                                          struct evbuffer *out)
{
    struct fg_decompressor *d = fg_decompressor_new(enc, max_output, SIZE_MAX);
    assert_non_null(d);
    enum fg_compress_status st = FG_COMPRESS_OK;
    size_t step = piece ? piece : (len ? len : 1);
    for (size_t off = 0; off < len && st == FG_COMPRESS_OK; off += step)
        st = fg_decompressor_write(d, in + off, len - off < step ? len - off : step, out);
    if (st == FG_COMPRESS_OK)
        st = fg_decompressor_finish(d);
    assert_int_equal(fg_decompressor_bytes_out(d), evbuffer_get_length(out));
    assert_true(fg_decompressor_bytes_out(d) <= max_output);
    fg_decompressor_free(d);
    return st;
}

static void expect_our_decodes(enum fg_compress_encoding enc, const uint8_t *in, size_t len,
                               size_t piece, const uint8_t *want, size_t want_len)
{
    struct evbuffer *out = evbuffer_new();
    assert_int_equal(our_decode(enc, in, len, piece, FG_COMPRESS_NO_LIMIT, out), FG_COMPRESS_OK);
    size_t got;
    uint8_t *p = copy_out(out, 0, &got);
    assert_int_equal(got, want_len);
    assert_memory_equal(p, want, want_len);
    free(p);
    evbuffer_free(out);
}

/* One-shot references at the same settings. */
static size_t ref_gzip_size(const uint8_t *in, size_t len, int level)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    assert_int_equal(deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&z, len);
    uint8_t *out = malloc(cap);
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    size_t n = cap - z.avail_out;
    deflateEnd(&z);
    free(out);
    return n;
}

static size_t ref_brotli_size(const uint8_t *in, size_t len, int quality, int lgwin)
{
    size_t cap = BrotliEncoderMaxCompressedSize(len), n = cap;
    uint8_t *out = malloc(cap);
    assert_true(BrotliEncoderCompress(quality, lgwin, BROTLI_MODE_GENERIC, len, in, &n, out));
    free(out);
    return n;
}

/* ---- round trips ------------------------------------------------------------------ */

static void round_trip(enum fg_compress_encoding enc, const uint8_t *data, size_t len, size_t piece)
{
    struct fg_compress_params p = params(enc, -1, 0);
    size_t clen;
    uint8_t *c = compress_pieces(enc, &p, data, len, piece, &clen);
    expect_ref_decodes(enc, c, clen, data, len);
    expect_our_decodes(enc, c, clen, piece ? piece : 4093, data, len);
    free(c);
}

/* Sizes around the output window, one piece, byte by byte, odd pieces, text and noise. */
static void round_trips(enum fg_compress_encoding enc)
{
    static const size_t sizes[] = {0, 1, 100, CHUNK - 1, CHUNK, CHUNK + 1, MIB};
    static const size_t pieces[] = {0, 1, 7, 4093, 65537};
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
        for (size_t pi = 0; pi < sizeof(pieces) / sizeof(pieces[0]); pi++) {
            if (pieces[pi] == 1 && sizes[si] > CHUNK + 1)
                continue; /* byte by byte for the small sizes only */
            round_trip(enc, text_1m, sizes[si], pieces[pi]);
            round_trip(enc, random_1m, sizes[si], pieces[pi]);
        }
    }
}

static void test_gzip_round_trips(void **state)
{
    (void)state;
    round_trips(GZ);
}

static void test_brotli_round_trips(void **state)
{
    (void)state;
    round_trips(BR);
}

/* Every level and window decodes with the reference. */
static void test_all_levels(void **state)
{
    (void)state;
    size_t len = 64 * 1024, clen;
    for (int level = 0; level <= 9; level++) {
        struct fg_compress_params p = params(GZ, level, 9 + level % 7);
        p.mem_level = 1 + level % 9;
        uint8_t *c = compress_pieces(GZ, &p, text_1m, len, 4093, &clen);
        expect_ref_decodes(GZ, c, clen, text_1m, len);
        free(c);
    }
    for (int q = 0; q <= 11; q++) {
        struct fg_compress_params p = params(BR, q, 10 + q);
        uint8_t *c = compress_pieces(BR, &p, text_1m, len, 4093, &clen);
        expect_ref_decodes(BR, c, clen, text_1m, len);
        free(c);
    }
}

/* The output is appended after what the buffer holds, also when its last chain has only a
 * few bytes left (the extent the encoder skips). */
static void test_appends_after_existing(void **state)
{
    (void)state;
    for (int enc = GZ; enc <= BR; enc++) {
        struct evbuffer *out = evbuffer_new();
        evbuffer_add(out, "HDR", 3);
        struct evbuffer_iovec v;
        size_t prefix = 3;
        for (;;) { /* fill until the tail is short, but not empty */
            assert_int_equal(evbuffer_reserve_space(out, 1, &v, 1), 1);
            if (v.iov_len < 64 && v.iov_len > 1)
                break;
            evbuffer_add(out, "x", 1);
            prefix++;
        }
        struct fg_compressor *c = fg_compressor_new((enum fg_compress_encoding)enc, NULL);
        assert_int_equal(fg_compressor_write(c, random_1m, 100000, out), FG_COMPRESS_OK);
        assert_int_equal(fg_compressor_finish(c, out), FG_COMPRESS_OK);
        assert_int_equal(fg_compressor_bytes_out(c) + prefix, evbuffer_get_length(out));
        fg_compressor_free(c);
        size_t len;
        uint8_t *all = copy_out(out, 0, &len);
        assert_memory_equal(all, "HDRx", 4);
        expect_ref_decodes((enum fg_compress_encoding)enc, all + prefix, len - prefix, random_1m,
                           100000);
        free(all);
        evbuffer_free(out);
    }
}

/* write_buffer takes the extents of an evbuffer (more than one peek's worth) and drains it. */
static void test_write_buffer(void **state)
{
    (void)state;
    for (int enc = GZ; enc <= BR; enc++) {
        struct evbuffer *in = evbuffer_new(), *out = evbuffer_new(), *plain = evbuffer_new();
        size_t total = 0;
        for (int i = 0; i < 20; i++, total += 3001) /* one chain per reference */
            evbuffer_add_reference(in, text_1m + total, 3001, NULL, NULL);
        struct fg_compressor *c = fg_compressor_new((enum fg_compress_encoding)enc, NULL);
        assert_int_equal(fg_compressor_write_buffer(c, in, out), FG_COMPRESS_OK);
        assert_int_equal(evbuffer_get_length(in), 0);
        assert_int_equal(fg_compressor_write_buffer(c, in, out), FG_COMPRESS_OK); /* empty */
        assert_int_equal(fg_compressor_finish(c, out), FG_COMPRESS_OK);
        assert_int_equal(fg_compressor_bytes_in(c), total);
        assert_int_equal(fg_compressor_write_buffer(c, in, out), FG_COMPRESS_E_STATE);
        fg_compressor_free(c);
        struct fg_decompressor *d =
            fg_decompressor_new((enum fg_compress_encoding)enc, FG_COMPRESS_NO_LIMIT, SIZE_MAX);
        assert_int_equal(fg_decompressor_write_buffer(d, out, plain), FG_COMPRESS_OK);
        assert_int_equal(evbuffer_get_length(out), 0);
        assert_int_equal(fg_decompressor_finish(d), FG_COMPRESS_OK);
        fg_decompressor_free(d);
        size_t len;
        uint8_t *p = copy_out(plain, 0, &len);
        assert_int_equal(len, total);
        assert_memory_equal(p, text_1m, total);
        free(p);
        evbuffer_free(in);
        evbuffer_free(out);
        evbuffer_free(plain);
    }
}

/* ---- flush ------------------------------------------------------------------------ */

/* Whatever the encoder appended up to a flush decodes to exactly what was written. */
static void expect_prefix_decodes(enum fg_compress_encoding enc, struct evbuffer *out,
                                  const uint8_t *want, size_t want_len)
{
    size_t len, got;
    uint8_t *c = copy_out(out, 0, &len);
    size_t cap = want_len + 64;
    uint8_t *plain = malloc(cap);
    if (enc == GZ) {
        int r = ref_inflate(c, len, plain, cap, &got);
        assert_true(r == Z_OK || r == Z_BUF_ERROR);
    } else {
        assert_int_equal(ref_unbrotli_prefix(c, len, plain, cap, &got),
                         BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT);
    }
    assert_int_equal(got, want_len);
    assert_memory_equal(plain, want, want_len);
    free(plain);
    free(c);
}

static void flush_points(enum fg_compress_encoding enc)
{
    struct fg_compressor *c = fg_compressor_new(enc, NULL);
    struct evbuffer *out = evbuffer_new();
    assert_int_equal(fg_compressor_flush(c, out), FG_COMPRESS_OK); /* nothing written yet */
    expect_prefix_decodes(enc, out, text_1m, 0);
    size_t done = 0;
    static const size_t steps[] = {1, 100, 5000, CHUNK, 3 * CHUNK + 7, 200000};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        assert_int_equal(fg_compressor_write(c, text_1m + done, steps[i], out), FG_COMPRESS_OK);
        done += steps[i];
        assert_int_equal(fg_compressor_flush(c, out), FG_COMPRESS_OK);
        expect_prefix_decodes(enc, out, text_1m, done);
    }
    size_t before = evbuffer_get_length(out);
    assert_int_equal(fg_compressor_flush(c, out), FG_COMPRESS_OK); /* nothing new */
    if (enc == GZ)
        assert_int_equal(evbuffer_get_length(out), before); /* no empty flush markers */
    expect_prefix_decodes(enc, out, text_1m, done);
    assert_int_equal(fg_compressor_write(c, text_1m + done, 1000, out), FG_COMPRESS_OK);
    assert_int_equal(fg_compressor_finish(c, out), FG_COMPRESS_OK);
    size_t len;
    uint8_t *all = copy_out(out, 0, &len);
    expect_ref_decodes(enc, all, len, text_1m, done + 1000);
    free(all);
    fg_compressor_free(c);
    evbuffer_free(out);
}

static void test_flush(void **state)
{
    (void)state;
    flush_points(GZ);
    flush_points(BR);
}

/* ---- state ------------------------------------------------------------------------ */

static void test_after_finish(void **state)
{
    (void)state;
    for (int enc = GZ; enc <= BR; enc++) {
        struct fg_compressor *c = fg_compressor_new((enum fg_compress_encoding)enc, NULL);
        struct evbuffer *out = evbuffer_new();
        assert_int_equal(fg_compressor_write(c, text_1m, 1000, out), FG_COMPRESS_OK);
        assert_int_equal(fg_compressor_finish(c, out), FG_COMPRESS_OK);
        size_t len = evbuffer_get_length(out);
        uint64_t in = fg_compressor_bytes_in(c), outb = fg_compressor_bytes_out(c);
        assert_int_equal(fg_compressor_finish(c, out), FG_COMPRESS_E_STATE);
        assert_int_equal(fg_compressor_write(c, text_1m, 10, out), FG_COMPRESS_E_STATE);
        assert_int_equal(fg_compressor_write(c, text_1m, 0, out), FG_COMPRESS_E_STATE);
        assert_int_equal(fg_compressor_flush(c, out), FG_COMPRESS_E_STATE);
        assert_int_equal(evbuffer_get_length(out), len);
        assert_int_equal(fg_compressor_bytes_in(c), in);
        assert_int_equal(fg_compressor_bytes_out(c), outb);
        size_t clen;
        uint8_t *p = copy_out(out, 0, &clen);
        expect_ref_decodes((enum fg_compress_encoding)enc, p, clen, text_1m, 1000);
        free(p);
        fg_compressor_free(c);
        evbuffer_free(out);
    }
}

static void test_decoder_after_finish(void **state)
{
    (void)state;
    for (int enc = GZ; enc <= BR; enc++) {
        struct fg_compress_params p = params((enum fg_compress_encoding)enc, -1, 0);
        size_t clen;
        uint8_t *c = compress_pieces((enum fg_compress_encoding)enc, &p, text_1m, 500, 0, &clen);
        struct fg_decompressor *d =
            fg_decompressor_new((enum fg_compress_encoding)enc, FG_COMPRESS_NO_LIMIT, SIZE_MAX);
        struct evbuffer *out = evbuffer_new();
        assert_int_equal(fg_decompressor_write(d, c, clen, out), FG_COMPRESS_OK);
        assert_int_equal(fg_decompressor_finish(d), FG_COMPRESS_OK);
        assert_int_equal(fg_decompressor_finish(d), FG_COMPRESS_E_STATE);
        assert_int_equal(fg_decompressor_write(d, c, clen, out), FG_COMPRESS_E_STATE);
        assert_int_equal(evbuffer_get_length(out), 500);
        assert_int_equal(fg_decompressor_bytes_in(d), clen);
        fg_decompressor_free(d);
        evbuffer_free(out);
        free(c);
    }
}

static void test_bad_params(void **state)
{
    (void)state;
    struct {
        enum fg_compress_encoding enc;
        int level, wbits, mem;
    } bad[] = {
        {GZ, 10, 15, 8}, {GZ, -1, 15, 8}, {GZ, 5, 8, 8},   {GZ, 5, 16, 8}, {GZ, 5, 15, 0},
        {GZ, 5, 15, 10}, {BR, 12, 18, 0}, {BR, -1, 18, 0}, {BR, 4, 9, 0},  {BR, 4, 25, 0},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct fg_compress_params p = {bad[i].level, bad[i].wbits, bad[i].mem, 0};
        assert_null(fg_compressor_new(bad[i].enc, &p));
        assert_int_equal(fg_compress_memory_estimate(bad[i].enc, &p), 0);
    }
    assert_null(fg_compressor_new(FG_COMPRESS_IDENTITY, NULL));
    assert_null(fg_compressor_new((enum fg_compress_encoding)7, NULL));
    assert_null(fg_decompressor_new(FG_COMPRESS_IDENTITY, 100, SIZE_MAX));
    assert_null(fg_decompressor_new((enum fg_compress_encoding)7, 100, SIZE_MAX));
    struct fg_compress_params p = {9, 9, 1, 0}; /* the edges are fine */
    struct fg_compressor *c = fg_compressor_new(GZ, &p);
    assert_non_null(c);
    fg_compressor_free(c);
    fg_compressor_free(NULL);
    fg_decompressor_free(NULL);
}

static void test_defaults(void **state)
{
    (void)state;
    struct fg_compress_params p;
    fg_compress_params_default(GZ, &p);
    assert_int_equal(p.level, FG_COMPRESS_GZIP_LEVEL_DEFAULT);
    assert_int_equal(p.window_bits, FG_COMPRESS_GZIP_WBITS_DEFAULT);
    assert_int_equal(p.mem_level, FG_COMPRESS_GZIP_MEMLEVEL_DEFAULT);
    assert_int_equal(p.size_hint, 0);
    fg_compress_params_default(BR, &p);
    assert_int_equal(p.level, FG_COMPRESS_BR_LEVEL_DEFAULT);
    assert_int_equal(p.window_bits, FG_COMPRESS_BR_LGWIN_DEFAULT);
    assert_int_equal(fg_compress_memory_estimate(FG_COMPRESS_IDENTITY, &p), 0);
    assert_int_equal(fg_compress_memory_estimate(BR, NULL), 0);
}

static void test_status_names(void **state)
{
    (void)state;
    for (int i = 0; i < FG_COMPRESS_STATUS__COUNT; i++) {
        const char *name = fg_compress_status_name((enum fg_compress_status)i);
        assert_string_not_equal(name, "unknown");
        for (int j = 0; j < i; j++)
            assert_string_not_equal(name, fg_compress_status_name((enum fg_compress_status)j));
    }
    assert_string_equal(fg_compress_status_name(FG_COMPRESS_E_LIMIT), "limit");
    assert_string_equal(fg_compress_status_name(FG_COMPRESS_STATUS__COUNT), "unknown");
}

/* ---- compressed size against the one-shot reference ------------------------------- */

static void expect_close(size_t ours, size_t ref, const char *what, int level)
{
    double diff = ours > ref ? (double)(ours - ref) : (double)(ref - ours);
    if (diff > 0.02 * (double)ref)
        fail_msg("%s level %d: %zu bytes streamed, %zu one-shot", what, level, ours, ref);
}

static void test_size_matches_one_shot(void **state)
{
    (void)state;
    static const int gz_levels[] = {1, 5, 6, 9};
    size_t clen;
    for (size_t i = 0; i < sizeof(gz_levels) / sizeof(gz_levels[0]); i++) {
        struct fg_compress_params p = params(GZ, gz_levels[i], 15);
        p.mem_level = 8;
        uint8_t *c = compress_pieces(GZ, &p, text_1m, MIB, 4093, &clen);
        expect_close(clen, ref_gzip_size(text_1m, MIB, gz_levels[i]), "gzip", gz_levels[i]);
        free(c);
    }
    static const int br_levels[] = {0, 1, 2, 4, 5, 9};
    for (size_t i = 0; i < sizeof(br_levels) / sizeof(br_levels[0]); i++) {
        for (int lgwin = 18; lgwin <= 22; lgwin += 4) {
            /* 0 and 1 compress each write on its own (compress.h): one write for them, and
             * a window no larger than the 256 KiB slices brotli.c hands them */
            if (br_levels[i] <= 1 && lgwin > 18)
                continue;
            struct fg_compress_params p = params(BR, br_levels[i], lgwin);
            p.size_hint = MIB;
            size_t piece = br_levels[i] <= 1 ? 0 : 4093;
            uint8_t *c = compress_pieces(BR, &p, text_1m, MIB, piece, &clen);
            expect_close(clen, ref_brotli_size(text_1m, MIB, br_levels[i], lgwin), "brotli",
                         br_levels[i]);
            free(c);
        }
    }
    for (int q = 10; q <= 11; q++) { /* slow: a smaller body */
        struct fg_compress_params p = params(BR, q, 22);
        p.size_hint = 64 * 1024;
        uint8_t *c = compress_pieces(BR, &p, text_1m, 64 * 1024, 4093, &clen);
        expect_close(clen, ref_brotli_size(text_1m, 64 * 1024, q, 22), "brotli", q);
        free(c);
    }
}

/* ---- decoders --------------------------------------------------------------------- */

/* Streams made by the libraries themselves, fed to our decoder in every way. */
static void test_decode_reference_streams(void **state)
{
    (void)state;
    size_t len = 3 * CHUNK + 5;
    z_stream z;
    memset(&z, 0, sizeof(z));
    assert_int_equal(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&z, len);
    uint8_t *gz = malloc(cap);
    z.next_in = text_1m;
    z.avail_in = (uInt)len;
    z.next_out = gz;
    z.avail_out = (uInt)cap;
    assert_int_equal(deflate(&z, Z_FINISH), Z_STREAM_END);
    size_t gz_len = cap - z.avail_out;
    deflateEnd(&z);
    size_t br_len = BrotliEncoderMaxCompressedSize(len);
    uint8_t *br = malloc(br_len);
    assert_true(BrotliEncoderCompress(5, 22, BROTLI_MODE_TEXT, len, text_1m, &br_len, br));
    static const size_t pieces[] = {0, 1, 7, 4093};
    for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
        expect_our_decodes(GZ, gz, gz_len, pieces[i], text_1m, len);
        expect_our_decodes(BR, br, br_len, pieces[i], text_1m, len);
    }
    /* a zlib-wrapped stream (what some servers send as "deflate") decodes too */
    uLongf zlen = compressBound(len);
    uint8_t *zl = malloc(zlen);
    assert_int_equal(compress2(zl, &zlen, text_1m, len, 6), Z_OK);
    expect_our_decodes(GZ, zl, zlen, 7, text_1m, len);
    free(zl);
    free(gz);
    free(br);
}

/* Concatenated gzip members are one body (RFC 1952 §2.2). */
static void test_gzip_members(void **state)
{
    (void)state;
    struct fg_compress_params p = params(GZ, -1, 0);
    size_t a_len, b_len;
    uint8_t *a = compress_pieces(GZ, &p, text_1m, 1000, 0, &a_len);
    uint8_t *b = compress_pieces(GZ, &p, text_1m + 1000, 2000, 0, &b_len);
    uint8_t *ab = malloc(a_len + b_len);
    memcpy(ab, a, a_len);
    memcpy(ab + a_len, b, b_len);
    expect_our_decodes(GZ, ab, a_len + b_len, 0, text_1m, 3000);
    expect_our_decodes(GZ, ab, a_len + b_len, 1, text_1m, 3000);
    free(a);
    free(b);
    free(ab);
}

static void expect_decode_status(enum fg_compress_encoding enc, const uint8_t *in, size_t len,
                                 size_t piece, enum fg_compress_status want)
{
    struct evbuffer *out = evbuffer_new();
    assert_int_equal(our_decode(enc, in, len, piece, FG_COMPRESS_NO_LIMIT, out), want);
    evbuffer_free(out);
}

static void test_decode_errors(void **state)
{
    (void)state;
    for (int e = GZ; e <= BR; e++) {
        enum fg_compress_encoding enc = (enum fg_compress_encoding)e;
        struct fg_compress_params p = params(enc, -1, 0);
        size_t clen;
        uint8_t *c = compress_pieces(enc, &p, random_1m, 5000, 0, &clen);
        expect_decode_status(enc, c, clen / 2, 0, FG_COMPRESS_E_TRUNCATED);
        expect_decode_status(enc, c, clen - 1, 0, FG_COMPRESS_E_TRUNCATED);
        expect_decode_status(enc, c, 0, 0, FG_COMPRESS_E_TRUNCATED);
        uint8_t *more = malloc(clen + 3);
        memcpy(more, c, clen);
        memcpy(more + clen, "abc", 3); /* bytes after the end: in the same write and later */
        expect_decode_status(enc, more, clen + 3, 0, FG_COMPRESS_E_DATA);
        expect_decode_status(enc, more, clen + 3, clen, FG_COMPRESS_E_DATA);
        free(more);
        free(c);
    }
    /* random bytes are neither gzip nor a zlib stream; 0x11 is a window code RFC 7932
     * §9.1 reserves */
    expect_decode_status(GZ, random_1m, 1000, 0, FG_COMPRESS_E_DATA);
    static const uint8_t br_bad[] = {0x11, 0xff, 0xff, 0xff, 0xff, 0xff};
    expect_decode_status(BR, br_bad, sizeof(br_bad), 0, FG_COMPRESS_E_DATA);
    /* gzip's CRC catches a flipped byte in the data */
    struct fg_compress_params p = params(GZ, -1, 0);
    size_t clen;
    uint8_t *c = compress_pieces(GZ, &p, text_1m, 20000, 0, &clen);
    c[clen / 2] ^= 0x40;
    expect_decode_status(GZ, c, clen, 0, FG_COMPRESS_E_DATA);
    free(c);
}

/* An error sticks: later calls repeat it, even with good data. */
static void test_decode_error_sticks(void **state)
{
    (void)state;
    struct fg_compress_params p = params(GZ, -1, 0);
    size_t clen;
    uint8_t *c = compress_pieces(GZ, &p, text_1m, 100, 0, &clen);
    struct fg_decompressor *d = fg_decompressor_new(GZ, FG_COMPRESS_NO_LIMIT, SIZE_MAX);
    struct evbuffer *out = evbuffer_new();
    assert_int_equal(fg_decompressor_write(d, "not gzip", 8, out), FG_COMPRESS_E_DATA);
    assert_int_equal(fg_decompressor_write(d, c, clen, out), FG_COMPRESS_E_DATA);
    assert_int_equal(fg_decompressor_finish(d), FG_COMPRESS_E_DATA);
    assert_int_equal(evbuffer_get_length(out), 0);
    fg_decompressor_free(d);
    evbuffer_free(out);
    free(c);
}

/* Zeros compress about 1000:1 (gzip) and far more (brotli): the cap stops them. */
static void test_bomb_cap(void **state)
{
    (void)state;
    size_t zlen = 8 * MIB;
    uint8_t *zeros = calloc(1, zlen);
    for (int e = GZ; e <= BR; e++) {
        enum fg_compress_encoding enc = (enum fg_compress_encoding)e;
        struct fg_compress_params p = params(enc, -1, 0);
        size_t clen;
        uint8_t *c = compress_pieces(enc, &p, zeros, zlen, 0, &clen);
        assert_true(clen < zlen / 500);
        static const size_t pieces[] = {0, 7, 4093};
        for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
            struct evbuffer *out = evbuffer_new();
            assert_int_equal(our_decode(enc, c, clen, pieces[i], MIB, out), FG_COMPRESS_E_LIMIT);
            assert_int_equal(evbuffer_get_length(out), MIB); /* all it was allowed, no more */
            evbuffer_free(out);
        }
        struct evbuffer *out = evbuffer_new(); /* the cap itself is allowed */
        assert_int_equal(our_decode(enc, c, clen, 4093, zlen, out), FG_COMPRESS_OK);
        assert_int_equal(evbuffer_get_length(out), zlen);
        evbuffer_free(out);
        out = evbuffer_new();
        assert_int_equal(our_decode(enc, c, clen, 0, zlen - 1, out), FG_COMPRESS_E_LIMIT);
        evbuffer_free(out);
        free(c);
        /* cap 0: an empty body passes, one byte does not */
        c = compress_pieces(enc, &p, zeros, 0, 0, &clen);
        out = evbuffer_new();
        assert_int_equal(our_decode(enc, c, clen, 0, 0, out), FG_COMPRESS_OK);
        free(c);
        c = compress_pieces(enc, &p, zeros, 1, 0, &clen);
        assert_int_equal(our_decode(enc, c, clen, 0, 0, out), FG_COMPRESS_E_LIMIT);
        assert_int_equal(evbuffer_get_length(out), 0);
        evbuffer_free(out);
        free(c);
    }
    free(zeros);
}

/* A brotli stream may ask for a window up to 16 MiB, which the decoder allocates as the
 * output grows: max_memory refuses it. */
static void test_decoder_memory_cap(void **state)
{
    (void)state;
    struct fg_compress_params p = params(BR, 1, 24);
    struct fg_compressor *c = fg_compressor_new(BR, &p);
    struct evbuffer *br = evbuffer_new();
    assert_int_equal(fg_compressor_write(c, random_1m, MIB, br), FG_COMPRESS_OK);
    assert_int_equal(fg_compressor_flush(c, br), FG_COMPRESS_OK); /* not the last metablock */
    assert_int_equal(fg_compressor_write(c, text_1m, MIB, br), FG_COMPRESS_OK);
    assert_int_equal(fg_compressor_finish(c, br), FG_COMPRESS_OK);
    fg_compressor_free(c);
    size_t len;
    uint8_t *stream = copy_out(br, 0, &len);
    struct fg_decompressor *d = fg_decompressor_new(BR, FG_COMPRESS_NO_LIMIT, MIB);
    struct evbuffer *out = evbuffer_new();
    assert_int_equal(fg_decompressor_write(d, stream, len, out), FG_COMPRESS_E_NOMEM);
    assert_true(fg_decompressor_memory(d) <= MIB + 1024);
    fg_decompressor_free(d);
    evbuffer_free(out);
    d = fg_decompressor_new(BR, FG_COMPRESS_NO_LIMIT, SIZE_MAX);
    out = evbuffer_new();
    assert_int_equal(fg_decompressor_write(d, stream, len, out), FG_COMPRESS_OK);
    assert_true(fg_decompressor_memory(d) > 2 * MIB); /* a ring buffer as large as the output */
    assert_int_equal(fg_decompressor_finish(d), FG_COMPRESS_OK);
    assert_int_equal(evbuffer_get_length(out), 2 * MIB);
    fg_decompressor_free(d);
    evbuffer_free(out);
    evbuffer_free(br);
    free(stream);
    /* inflate's state does not fit in 1 KiB: no decoder */
    assert_null(fg_decompressor_new(GZ, FG_COMPRESS_NO_LIMIT, 1024));
}

/* ---- memory ----------------------------------------------------------------------- */

/* Peak memory of a stream of len bytes in pieces, and the estimate beforehand. */
static void measure(enum fg_compress_encoding enc, const struct fg_compress_params *p,
                    const uint8_t *data, size_t len, size_t piece, size_t *peak, size_t *estimate)
{
    *estimate = fg_compress_memory_estimate(enc, p);
    struct fg_compressor *c = fg_compressor_new(enc, p);
    struct evbuffer *out = evbuffer_new();
    for (size_t off = 0; off < len; off += piece) {
        size_t n = len - off < piece ? len - off : piece;
        assert_int_equal(fg_compressor_write(c, data + off, n, out), FG_COMPRESS_OK);
        evbuffer_drain(out, evbuffer_get_length(out));
    }
    assert_int_equal(fg_compressor_finish(c, out), FG_COMPRESS_OK);
    *peak = fg_compressor_memory_peak(c);
    assert_true(fg_compressor_memory(c) <= *peak);
    fg_compressor_free(c);
    evbuffer_free(out);
}

static void test_gzip_memory(void **state)
{
    (void)state;
    struct fg_compress_params p = params(GZ, -1, 15);
    p.mem_level = 8;
    size_t peak, est;
    measure(GZ, &p, text_1m, MIB, 65536, &peak, &est);
    /* (1 << 17) + (1 << 17) + deflate's state */
    assert_true(peak > 256 * 1024 && peak <= est && est < peak + peak / 20);
    p.window_bits = 13;
    p.mem_level = 6;
    measure(GZ, &p, text_1m, MIB, 65536, &peak, &est);
    assert_true(peak > 64 * 1024 && peak <= est && est < peak + peak / 10);
    /* a known short body shrinks window and hash */
    p = params(GZ, -1, 15);
    p.size_hint = 1000;
    measure(GZ, &p, text_1m, 1000, 1000, &peak, &est);
    assert_true(peak < 24 * 1024 && peak <= est);
    size_t clen;
    uint8_t *c = compress_pieces(GZ, &p, text_1m, 1000, 0, &clen);
    expect_ref_decodes(GZ, c, clen, text_1m, 1000);
    free(c);
}

static void test_brotli_memory(void **state)
{
    (void)state;
    size_t len = 4 * MIB;
    uint8_t *big = make_text(len, 3);
    static const struct {
        int q, lgwin;
    } cases[] = {{1, 22}, {2, 18}, {4, 16}, {4, 18}, {4, 20}, {5, 18}, {6, 19}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct fg_compress_params p = params(BR, cases[i].q, cases[i].lgwin);
        static const size_t pieces[] = {4096, 16384, 4 * MIB}; /* whatever the writes */
        size_t most = 0, peak, est;
        for (size_t k = 0; k < 3; k++) {
            measure(BR, &p, big, len, pieces[k], &peak, &est);
            if (peak > est)
                fail_msg("q%d lgwin %d pieces %zu: peak %zu over the estimate %zu", cases[i].q,
                         cases[i].lgwin, pieces[k], peak, est);
            most = peak > most ? peak : most;
        }
        if (est > most + most / 2) /* and not a wild guess either */
            fail_msg("q%d lgwin %d: estimate %zu, peak %zu", cases[i].q, cases[i].lgwin, est, most);
    }
    /* the window grows the memory: that is what the default bounds */
    struct fg_compress_params small = params(BR, 4, 18), large = params(BR, 4, 22);
    size_t peak_small, peak_large, est;
    measure(BR, &small, big, len, 16384, &peak_small, &est);
    measure(BR, &large, big, len, 16384, &peak_large, &est);
    assert_true(peak_large > 4 * peak_small);
    /* a short body of known length takes far less than the stream bound */
    struct fg_compress_params hinted = params(BR, -1, 0);
    hinted.size_hint = 20000;
    size_t peak;
    measure(BR, &hinted, big, 20000, 20000, &peak, &est);
    assert_true(peak <= est && peak < 1024 * 1024);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gzip_round_trips),
        cmocka_unit_test(test_brotli_round_trips),
        cmocka_unit_test(test_all_levels),
        cmocka_unit_test(test_appends_after_existing),
        cmocka_unit_test(test_write_buffer),
        cmocka_unit_test(test_flush),
        cmocka_unit_test(test_after_finish),
        cmocka_unit_test(test_decoder_after_finish),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_size_matches_one_shot),
        cmocka_unit_test(test_decode_reference_streams),
        cmocka_unit_test(test_gzip_members),
        cmocka_unit_test(test_decode_errors),
        cmocka_unit_test(test_decode_error_sticks),
        cmocka_unit_test(test_bomb_cap),
        cmocka_unit_test(test_decoder_memory_cap),
        cmocka_unit_test(test_gzip_memory),
        cmocka_unit_test(test_brotli_memory),
    };
    return cmocka_run_group_tests_name("compress codecs", tests, setup, teardown);
}
