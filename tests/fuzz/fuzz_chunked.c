/*
 * fuzz_chunked.c — the chunked decoder, whole and split in two at a point the input
 * picks: payload bytes, outcome, error and bytes consumed must be the same (the decoder
 * is a byte-at-a-time state machine, so no split may change anything). Each piece is an
 * exact-size heap block so ASan catches any read past it.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "http/http.h"

struct result {
    enum fg_http_chunk_status st;
    enum fg_http_error err;
    size_t used;
    size_t out_len;
};

/* Feed [0, split) then [split, len); payload into out (at most len bytes). */
static void decode(const uint8_t *in, size_t len, size_t split, size_t max_trailer, char *out,
                   struct result *res)
{
    struct fg_http_chunked c;
    fg_http_chunked_init(&c);
    c.max_trailer = max_trailer;
    memset(res, 0, sizeof(*res));
    res->st = FG_CHUNK_MORE;
    size_t bounds[3] = {0, split, len};
    for (int piece = 0; piece < 2; piece++) {
        size_t n = bounds[piece + 1] - bounds[piece];
        char *p = malloc(n ? n : 1);
        if (p == NULL)
            abort();
        memcpy(p, in + bounds[piece], n);
        size_t pos = 0;
        for (;;) {
            if (c.data_left > 0) {
                size_t take = n - pos;
                if (take > c.data_left)
                    take = (size_t)c.data_left;
                memcpy(out + res->out_len, p + pos, take);
                res->out_len += take;
                pos += take;
                res->used += take;
                fg_http_chunked_data(&c, take);
                if (c.data_left > 0)
                    break;
                continue;
            }
            size_t used = 0;
            enum fg_http_error err = FG_HTTP_E_NONE;
            enum fg_http_chunk_status st = fg_http_chunked_parse(&c, p + pos, n - pos, &used, &err);
            if (used > n - pos)
                abort();
            pos += used;
            res->used += used;
            if (st == FG_CHUNK_DATA) {
                if (c.data_left == 0)
                    abort();
                continue;
            }
            if (st == FG_CHUNK_MORE) {
                if (pos != n)
                    abort();
                break;
            }
            if (st == FG_CHUNK_ERROR && (err == FG_HTTP_E_NONE || err >= FG_HTTP_E__COUNT))
                abort();
            res->st = st;
            res->err = err;
            free(p);
            /* finished or failed: it stays so */
            enum fg_http_error again = FG_HTTP_E_NONE;
            size_t u2 = 1;
            if (fg_http_chunked_parse(&c, "0\r\n\r\n", 5, &u2, &again) != st || u2 != 0 ||
                (st == FG_CHUNK_ERROR && again != err))
                abort();
            return;
        }
        free(p);
    }
}

int fg_fuzz_chunked(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max_trailer = 64 + (size_t)data[0] * 4;
    data++;
    size--;
    char *a = malloc(size + 1), *b = malloc(size + 1);
    if (a == NULL || b == NULL)
        abort();
    struct result ra, rb;
    decode(data, size, size, max_trailer, a, &ra);
    size_t split = fg_fuzz_hash(data, size) % (size + 1);
    decode(data, size, split, max_trailer, b, &rb);
    if (ra.st != rb.st || ra.err != rb.err || ra.used != rb.used || ra.out_len != rb.out_len ||
        memcmp(a, b, ra.out_len) != 0)
        abort();
    if (ra.out_len > ra.used || ra.used > size)
        abort();
    free(a);
    free(b);
    return 0;
}

#ifndef FG_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fg_fuzz_chunked(data, size);
}
#endif
