/*
 * brotli.c — the brotli back ends (RFC 7932) over the streaming encoder and decoder APIs.
 */
#include "compress/compress.h"
#include "compress/internal.h"

#include <brotli/decode.h>
#include <brotli/encode.h>

/* BROTLI_PARAM_SIZE_HINT is a uint32_t; brotli itself caps it at 1 GiB. */
#define SIZE_HINT_MAX (1u << 30)

/* Without a hint, brotli takes the size of the first write as one, and from 1 MiB up it
 * picks hashers several MiB larger. Input is handed over in slices below that, so an
 * encoder's memory depends on its settings, never on how the caller cut its writes. */
#define INPUT_SLICE (256u * 1024)

/* ---- encoder ---------------------------------------------------------------------- */

static void *br_encoder_create(struct fg_codec_account *acct, const struct fg_compress_params *p)
{
    BrotliEncoderState *s = BrotliEncoderCreateInstance(fg_codec_alloc, fg_codec_free, acct);
    if (s == NULL)
        return NULL;
    uint32_t hint = p->size_hint > SIZE_HINT_MAX ? SIZE_HINT_MAX : (uint32_t)p->size_hint;
    if (!BrotliEncoderSetParameter(s, BROTLI_PARAM_QUALITY, (uint32_t)p->level) ||
        !BrotliEncoderSetParameter(s, BROTLI_PARAM_LGWIN, (uint32_t)fg_codec_br_lgwin(p)) ||
        (hint > 0 && !BrotliEncoderSetParameter(s, BROTLI_PARAM_SIZE_HINT, hint))) {
        BrotliEncoderDestroyInstance(s);
        return NULL;
    }
    return s;
}

static enum fg_compress_status br_encoder_step(void *state, enum fg_codec_op op,
                                               struct fg_codec_io *io)
{
    static const BrotliEncoderOperation ops[] = {
        [FG_CODEC_WRITE] = BROTLI_OPERATION_PROCESS,
        [FG_CODEC_FLUSH] = BROTLI_OPERATION_FLUSH,
        [FG_CODEC_FINISH] = BROTLI_OPERATION_FINISH,
    };
    BrotliEncoderState *s = state;
    size_t slice = io->in_left > INPUT_SLICE ? INPUT_SLICE : io->in_left;
    size_t rest = io->in_left - slice;
    bool ok =
        BrotliEncoderCompressStream(s, ops[op], &slice, &io->in, &io->out_left, &io->out, NULL);
    io->in_left = slice + rest;
    if (!ok)
        return FG_COMPRESS_E_INTERNAL; /* only on misuse or allocation failure */
    if (op == FG_CODEC_FINISH)
        io->more = !BrotliEncoderIsFinished(s);
    else
        io->more = io->in_left > 0 || BrotliEncoderHasMoreOutput(s);
    return FG_COMPRESS_OK;
}

static void br_encoder_destroy(void *state)
{
    BrotliEncoderDestroyInstance(state);
}

const struct fg_codec_backend fg_codec_br_encoder = {
    .create = br_encoder_create,
    .step = br_encoder_step,
    .at_end = NULL,
    .destroy = br_encoder_destroy,
};

/* ---- decoder ---------------------------------------------------------------------- */

static void *br_decoder_create(struct fg_codec_account *acct, const struct fg_compress_params *p)
{
    (void)p;
    return BrotliDecoderCreateInstance(fg_codec_alloc, fg_codec_free, acct);
}

static bool is_alloc_error(BrotliDecoderErrorCode e)
{
    switch (e) {
    case BROTLI_DECODER_ERROR_ALLOC_CONTEXT_MODES:
    case BROTLI_DECODER_ERROR_ALLOC_TREE_GROUPS:
    case BROTLI_DECODER_ERROR_ALLOC_CONTEXT_MAP:
    case BROTLI_DECODER_ERROR_ALLOC_RING_BUFFER_1:
    case BROTLI_DECODER_ERROR_ALLOC_RING_BUFFER_2:
    case BROTLI_DECODER_ERROR_ALLOC_BLOCK_TYPE_TREES:
        return true;
    default:
        return false;
    }
}

static enum fg_compress_status br_decoder_step(void *state, enum fg_codec_op op,
                                               struct fg_codec_io *io)
{
    (void)op;
    BrotliDecoderState *s = state;
    io->more = false;
    if (BrotliDecoderIsFinished(s))
        return io->in_left > 0 ? FG_COMPRESS_E_DATA : FG_COMPRESS_OK; /* bytes after the end */
    BrotliDecoderResult r =
        BrotliDecoderDecompressStream(s, &io->in_left, &io->in, &io->out_left, &io->out, NULL);
    switch (r) {
    case BROTLI_DECODER_RESULT_SUCCESS:
        return io->in_left > 0 ? FG_COMPRESS_E_DATA : FG_COMPRESS_OK;
    case BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT:
        return FG_COMPRESS_OK;
    case BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT:
        io->more = true;
        return FG_COMPRESS_OK;
    default:
        return is_alloc_error(BrotliDecoderGetErrorCode(s)) ? FG_COMPRESS_E_NOMEM
                                                            : FG_COMPRESS_E_DATA;
    }
}

static bool br_decoder_at_end(void *state)
{
    return BrotliDecoderIsFinished(state);
}

static void br_decoder_destroy(void *state)
{
    BrotliDecoderDestroyInstance(state);
}

const struct fg_codec_backend fg_codec_br_decoder = {
    .create = br_decoder_create,
    .step = br_decoder_step,
    .at_end = br_decoder_at_end,
    .destroy = br_decoder_destroy,
};
