/*
 * params.c — encoder settings: defaults, ranges, the window a known body length allows,
 * and the memory an encoder will take, so the proxy can bound memory per response.
 */
#include "compress/compress.h"
#include "compress/internal.h"

#include <brotli/encode.h>

#define GZIP_MIN_WBITS 9 /* zlib refuses 8 with the gzip wrapper */
#define GZIP_MAX_WBITS 15
#define KIB            1024u

void fg_compress_params_default(enum fg_compress_encoding enc, struct fg_compress_params *p)
{
    memset(p, 0, sizeof(*p));
    if (enc == FG_COMPRESS_BR) {
        p->level = FG_COMPRESS_BR_LEVEL_DEFAULT;
        p->window_bits = FG_COMPRESS_BR_LGWIN_DEFAULT;
        return;
    }
    p->level = FG_COMPRESS_GZIP_LEVEL_DEFAULT;
    p->window_bits = FG_COMPRESS_GZIP_WBITS_DEFAULT;
    p->mem_level = FG_COMPRESS_GZIP_MEMLEVEL_DEFAULT;
}

bool fg_codec_params_valid(enum fg_compress_encoding enc, const struct fg_compress_params *p)
{
    if (enc == FG_COMPRESS_GZIP)
        return p->level >= 0 && p->level <= 9 && p->window_bits >= GZIP_MIN_WBITS &&
               p->window_bits <= GZIP_MAX_WBITS && p->mem_level >= 1 && p->mem_level <= 9;
    if (enc == FG_COMPRESS_BR)
        return p->level >= BROTLI_MIN_QUALITY && p->level <= BROTLI_MAX_QUALITY &&
               p->window_bits >= BROTLI_MIN_WINDOW_BITS && p->window_bits <= BROTLI_MAX_WINDOW_BITS;
    return false;
}

/* A window larger than the whole body finds no more matches and only costs memory, so
 * when the length is known the window shrinks to the smallest one holding the body, and
 * deflate's hash table with it (as nginx does). */
void fg_codec_gzip_shape(const struct fg_compress_params *p, int *window_bits, int *mem_level)
{
    int w = p->window_bits;
    while (p->size_hint > 0 && w > GZIP_MIN_WBITS && (1ull << (w - 1)) >= p->size_hint)
        w--;
    int m = p->mem_level - (p->window_bits - w);
    *window_bits = w;
    *mem_level = m < 1 ? 1 : m;
}

int fg_codec_br_lgwin(const struct fg_compress_params *p)
{
    int w = p->window_bits;
    /* brotli's usable window is 2^lgwin - 16 bytes */
    while (p->size_hint > 0 && w > BROTLI_MIN_WINDOW_BITS && (1ull << (w - 1)) - 16 >= p->size_hint)
        w--;
    return w;
}

/*
 * Brotli's peak on a long stream: an upper bound fitted to fg_compressor_memory_peak() over
 * 8 MiB of two kinds of HTML, in writes of 1 KiB to 1 MiB (brotli 1.0.9), W = 2^lgwin:
 * - 0-1 compress each write on its own, in fragments F = min(W, 256 KiB, the write):
 *   2F + 160 KiB at 0, 5F + 448 KiB at 1;
 * - 2-3: the ring buffer (2W) and the hasher: 2W + 896 KiB;
 * - 4-9: the ring buffer (2W), and for a metablock that may grow to 2W before it is
 *   emitted its output storage (4W) and commands (up to 4W, less on most text): 10W, plus
 *   a hasher that grows with quality, 1.6 MiB at 4 up to 35 MiB at 9. Up to lgwin 16 the
 *   hashers are small and the metablocks short: 2 MiB in all (2.75 at 9). A size hint of
 *   1 MiB or more picks bigger hashers at 4-6 (brotli.c keeps brotli from inferring one
 *   from a large write);
 * - 10-11: the Zopfli tree and nodes, about 24W + 2.5 MiB.
 */
#define MIB (1024u * KIB)

/* The hasher (and what grows with quality) for lgwin > 16. */
static size_t br_hasher_bytes(int q, int lgwin, uint64_t size_hint)
{
    static const unsigned kib[] = {
        [4] = 1638, [5] = 2150, [6] = 3328, [7] = 9472, [8] = 17920, [9] = 36352};
    size_t bytes = kib[q] * KIB;
    if (lgwin >= 19 && size_hint >= MIB && (q == 5 || q == 6))
        bytes += (q == 5 ? 1024u : 2048u) * KIB; /* H6 instead of H5 */
    return bytes;
}

static size_t br_stream_bytes(int q, int lgwin, uint64_t size_hint)
{
    size_t w = (size_t)1 << lgwin;
    size_t fragment = w < 256 * KIB ? w : 256 * KIB; /* brotli.c's INPUT_SLICE */
    size_t h54 = q == 4 && size_hint >= MIB ? 4 * MIB : 0;
    if (q == 0)
        return 2 * fragment + 160 * KIB;
    if (q == 1)
        return 5 * fragment + 448 * KIB;
    if (q <= 3)
        return 2 * (w > 16 * KIB ? w : 16 * KIB) + 896 * KIB;
    if (q >= 10)
        return 24 * (w > 64 * KIB ? w : 64 * KIB) + 2560 * KIB;
    if (lgwin <= 16)
        return (q == 9 ? 2816 : 2048) * KIB + h54;
    return 10 * w + br_hasher_bytes(q, lgwin, size_hint) + h54 + 512 * KIB;
}

size_t fg_compress_memory_estimate(enum fg_compress_encoding enc,
                                   const struct fg_compress_params *p)
{
    if (p == NULL || !fg_codec_params_valid(enc, p))
        return 0;
    if (enc == FG_COMPRESS_GZIP) {
        int w, m;
        fg_codec_gzip_shape(p, &w, &m);
        return ((size_t)1 << (w + 2)) + ((size_t)1 << (m + 9)) + 8 * KIB; /* + the state */
    }
    return br_stream_bytes(p->level, fg_codec_br_lgwin(p), p->size_hint);
}
