/* internal.h — shared by the compress module's files only: character classes of
 * RFC 9110 §5.6, and the interface between the stream driver (codec.c) and the zlib and
 * brotli back ends. Not a public header. */
#ifndef FG_COMPRESS_INTERNAL_H
#define FG_COMPRESS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "compress/compress.h"

/* OWS: SP or HTAB */
static inline bool fg_compress_is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* tchar (RFC 9110 §5.6.2) */
static inline bool fg_compress_is_tchar(char ch)
{
    unsigned char c = (unsigned char)ch;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* ---- codec back ends -------------------------------------------------------------- */

/* Every allocation a library makes for one stream goes through this account, so the
 * stream's memory is known exactly and can be capped. */
struct fg_codec_account {
    size_t used;  /* bytes the library holds now (payload, not malloc's overhead) */
    size_t peak;  /* the most it ever held at once */
    size_t limit; /* an allocation that would pass it fails */
};

/* brotli_alloc_func / brotli_free_func shaped; opaque is the struct fg_codec_account. */
void *fg_codec_alloc(void *opaque, size_t size);
void fg_codec_free(void *opaque, void *ptr);

enum fg_codec_op {
    FG_CODEC_WRITE,  /* consume input */
    FG_CODEC_FLUSH,  /* encoders: make everything so far decodable */
    FG_CODEC_FINISH, /* encoders: end the stream */
};

/* One window of input and output for a step. */
struct fg_codec_io {
    const uint8_t *in;
    size_t in_left;
    uint8_t *out;
    size_t out_left;
    bool more; /* set by the step: call again (with more output space) */
};

struct fg_codec_backend {
    /* Create the library's state, allocating through acct; params only for encoders
     * (already validated). NULL on failure. */
    void *(*create)(struct fg_codec_account *acct, const struct fg_compress_params *p);
    /* Run the library once over io; sets io->more when the op is not complete yet. */
    enum fg_compress_status (*step)(void *state, enum fg_codec_op op, struct fg_codec_io *io);
    /* Decoders: the input so far ends exactly at the end of a stream. */
    bool (*at_end)(void *state);
    void (*destroy)(void *state);
};

extern const struct fg_codec_backend fg_codec_gzip_encoder, fg_codec_gzip_decoder;
extern const struct fg_codec_backend fg_codec_br_encoder, fg_codec_br_decoder;

/* True if p is within the ranges compress.h documents for enc (gzip or br). */
bool fg_codec_params_valid(enum fg_compress_encoding enc, const struct fg_compress_params *p);
/* The deflate window and memLevel after size_hint has shrunk them. */
void fg_codec_gzip_shape(const struct fg_compress_params *p, int *window_bits, int *mem_level);
/* The brotli lgwin after size_hint has shrunk it. */
int fg_codec_br_lgwin(const struct fg_compress_params *p);

#endif /* FG_COMPRESS_INTERNAL_H */
