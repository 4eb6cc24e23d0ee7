/*
 * gzip.c — the zlib back ends: deflate with the gzip wrapper, and inflate that accepts a
 * gzip or zlib stream and concatenated gzip members.
 */
#include "compress/compress.h"
#include "compress/internal.h"

#include <limits.h>

#include <zlib.h>

#define GZIP_WRAPPER 16 /* windowBits + 16: gzip header and trailer */
#define AUTO_WRAPPER 32 /* windowBits + 32: inflate detects gzip or zlib */

struct gz_state {
    z_stream z;
    bool at_end; /* the last inflate call ended a member */
};

static voidpf gz_alloc(voidpf opaque, uInt items, uInt size)
{
    if (size != 0 && items > SIZE_MAX / size)
        return Z_NULL;
    return fg_codec_alloc(opaque, (size_t)items * size);
}

static void gz_free(voidpf opaque, voidpf ptr)
{
    fg_codec_free(opaque, ptr);
}

static struct gz_state *gz_state_new(struct fg_codec_account *acct)
{
    struct gz_state *g = fg_codec_alloc(acct, sizeof(*g));
    if (g == NULL)
        return NULL;
    memset(g, 0, sizeof(*g));
    g->z.zalloc = gz_alloc;
    g->z.zfree = gz_free;
    g->z.opaque = acct;
    return g;
}

/* zlib counts in uInt, so a huge window is taken in slices */
static uInt clamp_uint(size_t n)
{
    return n > UINT_MAX ? UINT_MAX : (uInt)n;
}

static void io_to_z(z_stream *z, const struct fg_codec_io *io)
{
    z->next_in = (Bytef *)(uintptr_t)io->in; /* zlib does not write through next_in */
    z->avail_in = clamp_uint(io->in_left);
    z->next_out = io->out;
    z->avail_out = clamp_uint(io->out_left);
}

static void z_to_io(const z_stream *z, struct fg_codec_io *io)
{
    size_t in_used = clamp_uint(io->in_left) - z->avail_in;
    size_t out_used = clamp_uint(io->out_left) - z->avail_out;
    if (in_used > 0) /* flush and finish have no input: NULL + 0 is undefined */
        io->in += in_used;
    io->in_left -= in_used;
    io->out += out_used;
    io->out_left -= out_used;
}

/* ---- deflate ---------------------------------------------------------------------- */

static void *deflate_create(struct fg_codec_account *acct, const struct fg_compress_params *p)
{
    struct gz_state *g = gz_state_new(acct);
    if (g == NULL)
        return NULL;
    int wbits, mem_level;
    fg_codec_gzip_shape(p, &wbits, &mem_level);
    if (deflateInit2(&g->z, p->level, Z_DEFLATED, wbits + GZIP_WRAPPER, mem_level,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
        fg_codec_free(acct, g);
        return NULL;
    }
    return g;
}

static enum fg_compress_status deflate_step(void *state, enum fg_codec_op op,
                                            struct fg_codec_io *io)
{
    static const int flush[] = {[FG_CODEC_WRITE] = Z_NO_FLUSH,
                                [FG_CODEC_FLUSH] = Z_SYNC_FLUSH,
                                [FG_CODEC_FINISH] = Z_FINISH};
    struct gz_state *g = state;
    io_to_z(&g->z, io);
    int r = deflate(&g->z, flush[op]);
    z_to_io(&g->z, io);
    if (r == Z_STREAM_ERROR)
        return FG_COMPRESS_E_INTERNAL;
    /* Z_BUF_ERROR only says there was nothing to do */
    if (op == FG_CODEC_FINISH)
        io->more = r != Z_STREAM_END;
    else
        io->more = io->in_left > 0 || io->out_left == 0;
    return FG_COMPRESS_OK;
}

static void deflate_destroy(void *state)
{
    struct gz_state *g = state;
    void *acct = g->z.opaque;
    deflateEnd(&g->z);
    fg_codec_free(acct, g);
}

const struct fg_codec_backend fg_codec_gzip_encoder = {
    .create = deflate_create,
    .step = deflate_step,
    .at_end = NULL,
    .destroy = deflate_destroy,
};

/* ---- inflate ---------------------------------------------------------------------- */

static void *inflate_create(struct fg_codec_account *acct, const struct fg_compress_params *p)
{
    (void)p;
    struct gz_state *g = gz_state_new(acct);
    if (g == NULL)
        return NULL;
    if (inflateInit2(&g->z, MAX_WBITS + AUTO_WRAPPER) != Z_OK) {
        fg_codec_free(acct, g);
        return NULL;
    }
    return g;
}

static enum fg_compress_status inflate_result(struct gz_state *g, int r, struct fg_codec_io *io)
{
    switch (r) {
    case Z_STREAM_END:
        g->at_end = true;
        io->more = io->in_left > 0; /* another member follows */
        return FG_COMPRESS_OK;
    case Z_OK:
        io->more = io->in_left > 0 || io->out_left == 0;
        return FG_COMPRESS_OK;
    case Z_BUF_ERROR: /* needs more input */
        io->more = false;
        return FG_COMPRESS_OK;
    case Z_NEED_DICT: /* a preset dictionary we cannot have */
    case Z_DATA_ERROR:
        return FG_COMPRESS_E_DATA;
    case Z_MEM_ERROR:
        return FG_COMPRESS_E_NOMEM;
    default:
        return FG_COMPRESS_E_INTERNAL;
    }
}

static enum fg_compress_status inflate_step(void *state, enum fg_codec_op op,
                                            struct fg_codec_io *io)
{
    (void)op;
    struct gz_state *g = state;
    if (g->at_end) {
        if (io->in_left == 0) {
            io->more = false;
            return FG_COMPRESS_OK;
        }
        if (inflateReset(&g->z) != Z_OK)
            return FG_COMPRESS_E_INTERNAL;
        g->at_end = false;
    }
    io_to_z(&g->z, io);
    int r = inflate(&g->z, Z_NO_FLUSH);
    z_to_io(&g->z, io);
    return inflate_result(g, r, io);
}

static bool inflate_at_end(void *state)
{
    return ((struct gz_state *)state)->at_end;
}

static void inflate_destroy(void *state)
{
    struct gz_state *g = state;
    void *acct = g->z.opaque;
    inflateEnd(&g->z);
    fg_codec_free(acct, g);
}

const struct fg_codec_backend fg_codec_gzip_decoder = {
    .create = inflate_create,
    .step = inflate_step,
    .at_end = inflate_at_end,
    .destroy = inflate_destroy,
};
