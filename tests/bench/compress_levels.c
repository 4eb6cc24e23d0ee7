/*
 * compress_levels.c — how much each gzip level and brotli quality saves, what it costs in
 * CPU and what it holds in memory, on an HTML page, so the defaults in compress.h are chosen
 * by measurement. Not part of make check: numbers are reported, never asserted.
 *
 *   make -C BUILD tests/bench/compress_levels && BUILD/tests/bench/compress_levels [FILE]
 *
 * Without FILE it compresses a generated ~20 KiB product-listing page (markup, attribute
 * names and prose repeat as on a real page, with varying names and prices), then a 1 MiB
 * one. Each setting runs until 100 ms have passed, after a silent pass over all of them;
 * the best run is reported as µs per KiB of input, with the encoder's peak memory.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "compress/compress.h"

#define PAGE_SIZE  (20 * 1024)
#define LARGE_SIZE (1024 * 1024)

static uint32_t lcg_state = 12345;

static uint32_t lcg(void)
{
    lcg_state = lcg_state * 1103515245u + 12345u;
    return lcg_state >> 8;
}

/* A pseudo-word of 2-4 syllables: prose with a vocabulary, not a repeated phrase. */
static size_t word(char *buf, size_t cap)
{
    static const char *const syl[] = {"ka",  "lo", "mer", "tin", "sa",  "ver", "do", "ri",
                                      "pan", "el", "qu",  "ost", "bar", "ni",  "ze", "ut"};
    size_t n = 0, k = 2 + lcg() % 3;
    for (size_t i = 0; i < k && n + 4 < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s", syl[lcg() % 16]);
    return n;
}

static size_t sentence(char *buf, size_t cap, size_t words)
{
    size_t n = 0;
    for (size_t i = 0; i < words && n + 16 < cap; i++) {
        n += word(buf + n, cap - n);
        buf[n++] = i + 1 < words ? ' ' : '.';
    }
    buf[n] = '\0';
    return n;
}

/* A shop page: head, nav, product cards with varying names, prose, prices and image
 * hashes, footer. gzip -6 makes it about 0.25 of its size, like real pages. */
static size_t make_page(char *buf, size_t cap, size_t target)
{
    size_t n = (size_t)snprintf(
        buf, cap,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>Flash sale - Shop</title><link rel=\"stylesheet\" href=\"/static/app.css\">"
        "<script defer src=\"/static/app.js\"></script></head>\n<body class=\"shop\">"
        "<nav class=\"top\"><a href=\"/\">Home</a><a href=\"/sale\">Sale</a>"
        "<a href=\"/cart\">Cart</a><a href=\"/account\">Account</a></nav>\n<main id=\"grid\">\n");
    for (int id = 1000; n + 1200 < cap && n < target - 600; id++) {
        char name[64], note[400];
        sentence(name, sizeof(name), 2);
        sentence(note, sizeof(note), 12 + lcg() % 20);
        n += (size_t)snprintf(
            buf + n, cap - n,
            "<article class=\"card\" data-id=\"%d\" data-sku=\"SKU-%05u\">\n"
            "  <a class=\"card-link\" href=\"/product/%d\"><img loading=\"lazy\" "
            "src=\"/img/%08x%08x.webp\" alt=\"%s\" width=\"400\" height=\"400\"></a>\n"
            "  <h2 class=\"card-title\">%s</h2>\n"
            "  <p class=\"card-price\"><span class=\"old\">$%u.%02u</span> "
            "<span class=\"new\">$%u.%02u</span> <span class=\"stars\">%u.%u</span></p>\n"
            "  <p class=\"card-note\">%s</p>\n"
            "  <button class=\"btn btn-primary add-to-cart\" data-id=\"%d\">Add to cart</button>\n"
            "</article>\n",
            id, lcg() % 100000, id, lcg(), lcg(), name, name, 20 + lcg() % 200, lcg() % 100,
            10 + lcg() % 100, lcg() % 100, 1 + lcg() % 4, lcg() % 10, note, id);
    }
    n += (size_t)snprintf(buf + n, cap - n,
                          "</main>\n<footer><p>&copy; 2024 Shop Inc. All rights reserved.</p>"
                          "</footer></body></html>\n");
    return n;
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

struct result {
    size_t out_len;
    double us;     /* best time of one compression */
    size_t memory; /* fg_compressor_memory_peak() */
};

static struct result measure(enum fg_compress_encoding enc, const struct fg_compress_params *p,
                             const char *in, size_t len)
{
    struct result r = {0, 1e18, 0};
    double start = now_us();
    do {
        struct evbuffer *out = evbuffer_new();
        double t0 = now_us();
        struct fg_compressor *c = fg_compressor_new(enc, p);
        if (c == NULL || fg_compressor_write(c, in, len, out) != FG_COMPRESS_OK ||
            fg_compressor_finish(c, out) != FG_COMPRESS_OK) {
            fprintf(stderr, "compression failed\n");
            exit(1);
        }
        r.memory = fg_compressor_memory_peak(c);
        fg_compressor_free(c);
        double t = now_us() - t0;
        if (t < r.us)
            r.us = t;
        r.out_len = evbuffer_get_length(out);
        evbuffer_free(out);
    } while (now_us() - start < 100000);
    return r;
}

/* The first pass runs quietly: a long-running proxy's allocator has seen large blocks come
 * and go (glibc raises its mmap threshold), caches are warm, and the numbers should be
 * that steady state, not the first allocations of a fresh process. */
static bool quiet;

static void report(const char *name, int level, int wbits, int mem, bool hint,
                   const struct result *r, size_t len)
{
    if (quiet)
        return;
    printf("%-4s %2d  %2d/%d%s  ratio %.3f  %7.2f us/KiB  mem %6zu KiB  (%zu -> %zu)\n", name,
           level, wbits, mem, hint ? " hint" : "     ", (double)r->out_len / (double)len,
           r->us / ((double)len / 1024.0), r->memory / 1024, len, r->out_len);
}

/* One setting; hint: pass the body length as size_hint (a Content-Length response). */
static void run(enum fg_compress_encoding enc, int level, int wbits, int mem, bool hint,
                const char *in, size_t len)
{
    struct fg_compress_params p;
    fg_compress_params_default(enc, &p);
    p.level = level;
    p.window_bits = wbits;
    if (enc == FG_COMPRESS_GZIP)
        p.mem_level = mem;
    p.size_hint = hint ? len : 0;
    struct result r = measure(enc, &p, in, len);
    report(fg_compress_encoding_name(enc), level, wbits, mem, hint, &r, len);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf != NULL && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap)
            buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    *len = n;
    return buf;
}

static void levels(const char *in, size_t len)
{
    if (!quiet)
        printf("input %zu bytes, every level, no size hint (a streamed body):\n", len);
    for (int level = 1; level <= 9; level++)
        run(FG_COMPRESS_GZIP, level, 15, 8, false, in, len);
    for (int level = 0; level <= 11; level++)
        run(FG_COMPRESS_BR, level, FG_COMPRESS_BR_LGWIN_DEFAULT, 0, false, in, len);
    if (!quiet)
        printf("with the length known (size hint):\n");
    for (int level = 4; level <= 6; level++)
        run(FG_COMPRESS_GZIP, level, 15, 8, true, in, len);
    for (int level = 3; level <= 6; level++)
        run(FG_COMPRESS_BR, level, FG_COMPRESS_BR_LGWIN_DEFAULT, 0, true, in, len);
}

static void windows(const char *in, size_t len, int br_level)
{
    printf("input %zu bytes, windows at the default levels:\n", len);
    for (int w = 15; w >= 12; w--)
        run(FG_COMPRESS_GZIP, FG_COMPRESS_GZIP_LEVEL_DEFAULT, w, w - 7, false, in, len);
    for (int w = 22; w >= 16; w -= 2)
        run(FG_COMPRESS_BR, br_level, w, 0, false, in, len);
}

int main(int argc, char **argv)
{
    size_t len;
    char *page;
    if (argc > 1) {
        page = read_file(argv[1], &len);
        if (page == NULL) {
            perror(argv[1]);
            return 1;
        }
    } else {
        page = malloc(PAGE_SIZE + 4096);
        len = make_page(page, PAGE_SIZE + 4096, PAGE_SIZE);
    }
    quiet = true;
    levels(page, len);
    quiet = false;
    levels(page, len);
    windows(page, len, FG_COMPRESS_BR_LEVEL_DEFAULT);
    free(page);
    page = malloc(LARGE_SIZE + 4096);
    len = make_page(page, LARGE_SIZE + 4096, LARGE_SIZE);
    windows(page, len, FG_COMPRESS_BR_LEVEL_DEFAULT);
    windows(page, len, FG_COMPRESS_BR_LEVEL_DEFAULT + 1);
    printf("input %zu bytes, length known (from 1 MiB brotli picks larger hashers at 4-6):\n", len);
    for (int level = FG_COMPRESS_BR_LEVEL_DEFAULT; level <= FG_COMPRESS_BR_LEVEL_DEFAULT + 1;
         level++)
        for (int w = 18; w <= 20; w += 2)
            run(FG_COMPRESS_BR, level, w, 0, true, page, len);
    free(page);
    return 0;
}
