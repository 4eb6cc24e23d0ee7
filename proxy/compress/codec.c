/*
 * codec.c — the stream driver shared by every encoder and decoder: state (open, finished,
 * failed), byte counters, the allocation account, and the pump that runs a back end
 * straight into space reserved in the caller's evbuffer.
 */
#include "compress/compress.h"
#include "compress/internal.h"

#include <stdlib.h>

#include <event2/buffer.h>

#include "core/core.h"

#define FG_CODEC_MAGIC 0x66676364u /* "fgcd" */

/* The tail of an evbuffer chain shorter than this is skipped: a window of a few bytes
 * costs a library call per few bytes, and zlib wants more than 6 for a flush. */
#define MIN_EXTENT 64

/* Allocation header: keeps the caller's block aligned like malloc's. */
#define ALLOC_HDR sizeof(max_align_t)

struct fg_codec {
    unsigned magic;
    const struct fg_codec_backend *backend;
    void *state;
    enum fg_compress_status error; /* sticky once set */
    bool finished;
    uint64_t bytes_in, bytes_out;
    uint64_t max_output;
    struct fg_codec_account acct;
};

/* The public types are the same driver; distinct names keep callers from mixing them. */
struct fg_compressor {
    struct fg_codec c;
};
struct fg_decompressor {
    struct fg_codec c;
};

const char *fg_compress_status_name(enum fg_compress_status s)
{
    static const char *const names[FG_COMPRESS_STATUS__COUNT] = {
        [FG_COMPRESS_OK] = "ok",
        [FG_COMPRESS_E_STATE] = "state",
        [FG_COMPRESS_E_NOMEM] = "nomem",
        [FG_COMPRESS_E_DATA] = "data",
        [FG_COMPRESS_E_LIMIT] = "limit",
        [FG_COMPRESS_E_TRUNCATED] = "truncated",
        [FG_COMPRESS_E_INTERNAL] = "internal",
    };
    if ((unsigned)s >= FG_COMPRESS_STATUS__COUNT)
        return "unknown";
    return names[s];
}

/* ---- allocation account ----------------------------------------------------------- */

void *fg_codec_alloc(void *opaque, size_t size)
{
    struct fg_codec_account *a = opaque;
    if (size > a->limit - a->used || size > SIZE_MAX - ALLOC_HDR)
        return NULL;
    unsigned char *p = malloc(ALLOC_HDR + size);
    if (p == NULL)
        return NULL;
    memcpy(p, &size, sizeof(size));
    a->used += size;
    if (a->used > a->peak)
        a->peak = a->used;
    return p + ALLOC_HDR;
}

void fg_codec_free(void *opaque, void *ptr)
{
    struct fg_codec_account *a = opaque;
    if (ptr == NULL)
        return;
    unsigned char *p = (unsigned char *)ptr - ALLOC_HDR;
    size_t size;
    memcpy(&size, p, sizeof(size));
    FG_ASSERT(size <= a->used);
    a->used -= size;
    free(p);
}

/* ---- life cycle ------------------------------------------------------------------- */

static struct fg_codec *codec_new(size_t size, const struct fg_codec_backend *backend,
                                  const struct fg_compress_params *p, uint64_t max_output,
                                  size_t max_memory)
{
    struct fg_codec *c = calloc(1, size);
    if (c == NULL)
        return NULL;
    c->magic = FG_CODEC_MAGIC;
    c->backend = backend;
    c->max_output = max_output;
    c->acct.limit = max_memory;
    c->state = backend->create(&c->acct, p);
    if (c->state == NULL) {
        free(c);
        return NULL;
    }
    return c;
}

static void codec_free(struct fg_codec *c)
{
    if (c == NULL)
        return;
    FG_ASSERT(c->magic == FG_CODEC_MAGIC);
    c->backend->destroy(c->state);
    FG_ASSERT(c->acct.used == 0); /* the library freed all it took */
    c->magic = 0;
    free(c);
}

/* ---- the pump --------------------------------------------------------------------- */

/* Run the back end into buf[0..cap) until the op is complete or buf is full. */
static enum fg_compress_status fill(struct fg_codec *c, enum fg_codec_op op, struct fg_codec_io *io,
                                    void *buf, size_t cap, size_t *used)
{
    enum fg_compress_status st = FG_COMPRESS_OK;
    io->out = buf;
    io->out_left = cap;
    while (st == FG_COMPRESS_OK && io->more && io->out_left > 0) {
        size_t in_before = io->in_left, out_before = io->out_left;
        st = c->backend->step(c->state, op, io);
        /* a library that wants to go on but neither reads nor writes would spin forever */
        if (st == FG_COMPRESS_OK && io->more && io->in_left == in_before &&
            io->out_left == out_before)
            st = FG_COMPRESS_E_INTERNAL;
    }
    *used = cap - io->out_left;
    return st;
}

/* Commit what was written into the reserved extents; the decoder's output cap may take
 * back the byte that proved it was exceeded. */
static enum fg_compress_status commit(struct fg_codec *c, struct evbuffer *out,
                                      struct evbuffer_iovec *v, int n, uint64_t room)
{
    enum fg_compress_status st = FG_COMPRESS_OK;
    uint64_t total = 0;
    int last = -1;
    for (int i = 0; i < n; i++) {
        total += v[i].iov_len;
        if (v[i].iov_len > 0)
            last = i;
    }
    if (total > room) {
        v[last].iov_len -= (size_t)(total - room); /* at most one byte, in the last one */
        total = room;
        st = FG_COMPRESS_E_LIMIT;
    }
    if (evbuffer_commit_space(out, v, last + 1) != 0)
        return FG_COMPRESS_E_INTERNAL;
    c->bytes_out += total;
    return st;
}

/* One reservation: fill its extents, commit. */
static enum fg_compress_status pump_once(struct fg_codec *c, enum fg_codec_op op,
                                         struct fg_codec_io *io, struct evbuffer *out)
{
    struct evbuffer_iovec v[2];
    int n = evbuffer_reserve_space(out, FG_COMPRESS_CHUNK, v, 2);
    if (n <= 0)
        return FG_COMPRESS_E_NOMEM;
    uint64_t room = c->max_output - c->bytes_out, total = 0;
    size_t cap[2];
    for (int i = 0; i < n; i++) {
        cap[i] = v[i].iov_len;
        v[i].iov_len = 0; /* what gets committed: set by fill() */
    }
    enum fg_compress_status st = FG_COMPRESS_OK;
    for (int i = 0; i < n && st == FG_COMPRESS_OK && io->more && total <= room; i++) {
        if (i == 0 && n > 1 && cap[0] < MIN_EXTENT)
            continue;
        /* room + 1 at most: one byte beyond the cap is how a decoder shows it goes on */
        if (room - total < cap[i])
            cap[i] = (size_t)(room - total) + 1;
        st = fill(c, op, io, v[i].iov_base, cap[i], &v[i].iov_len);
        total += v[i].iov_len;
    }
    enum fg_compress_status cst = commit(c, out, v, n, room);
    return st != FG_COMPRESS_OK ? st : cst;
}

static enum fg_compress_status pump(struct fg_codec *c, enum fg_codec_op op, const void *data,
                                    size_t len, struct evbuffer *out)
{
    struct fg_codec_io io = {.in = data, .in_left = len, .more = true};
    enum fg_compress_status st = FG_COMPRESS_OK;
    while (st == FG_COMPRESS_OK && io.more) {
        size_t in_before = io.in_left;
        uint64_t out_before = c->bytes_out;
        st = pump_once(c, op, &io, out);
        /* fill() already refuses a library that stalls; this catches a window of nothing */
        if (st == FG_COMPRESS_OK && io.more && io.in_left == in_before &&
            c->bytes_out == out_before)
            st = FG_COMPRESS_E_INTERNAL;
    }
    c->bytes_in += len - io.in_left;
    return st;
}

/* The state machine around the pump: errors stick, nothing runs after finish. */
static enum fg_compress_status run(struct fg_codec *c, enum fg_codec_op op, const void *data,
                                   size_t len, struct evbuffer *out)
{
    FG_ASSERT(c != NULL && c->magic == FG_CODEC_MAGIC && out != NULL);
    if (c->error != FG_COMPRESS_OK)
        return c->error;
    if (c->finished)
        return FG_COMPRESS_E_STATE;
    if (op == FG_CODEC_WRITE && len == 0)
        return FG_COMPRESS_OK;
    enum fg_compress_status st = pump(c, op, data, len, out);
    if (st != FG_COMPRESS_OK)
        c->error = st;
    else if (op == FG_CODEC_FINISH)
        c->finished = true;
    return st;
}

/* Feed the extents of `in` without copying them, draining what was consumed. */
static enum fg_compress_status run_buffer(struct fg_codec *c, struct evbuffer *in,
                                          struct evbuffer *out)
{
    FG_ASSERT(in != NULL && in != out);
    enum fg_compress_status st = FG_COMPRESS_OK;
    do {
        struct evbuffer_iovec v[8];
        int n = evbuffer_peek(in, -1, NULL, v, 8);
        if (n > 8)
            n = 8;
        size_t done = 0;
        st = run(c, FG_CODEC_WRITE, NULL, 0, out); /* state errors even when in is empty */
        for (int i = 0; i < n && st == FG_COMPRESS_OK; i++) {
            st = run(c, FG_CODEC_WRITE, v[i].iov_base, v[i].iov_len, out);
            if (st == FG_COMPRESS_OK)
                done += v[i].iov_len;
        }
        evbuffer_drain(in, done);
    } while (st == FG_COMPRESS_OK && evbuffer_get_length(in) > 0);
    return st;
}

/* ---- encoders --------------------------------------------------------------------- */

struct fg_compressor *fg_compressor_new(enum fg_compress_encoding enc,
                                        const struct fg_compress_params *p)
{
    struct fg_compress_params defaults;
    if (p == NULL) {
        fg_compress_params_default(enc, &defaults);
        p = &defaults;
    }
    if (!fg_codec_params_valid(enc, p))
        return NULL;
    const struct fg_codec_backend *b =
        enc == FG_COMPRESS_GZIP ? &fg_codec_gzip_encoder : &fg_codec_br_encoder;
    return (struct fg_compressor *)codec_new(sizeof(struct fg_compressor), b, p,
                                             FG_COMPRESS_NO_LIMIT, SIZE_MAX);
}

void fg_compressor_free(struct fg_compressor *c)
{
    codec_free(c ? &c->c : NULL);
}

enum fg_compress_status fg_compressor_write(struct fg_compressor *c, const void *data, size_t len,
                                            struct evbuffer *out)
{
    return run(&c->c, FG_CODEC_WRITE, data, len, out);
}

enum fg_compress_status fg_compressor_write_buffer(struct fg_compressor *c, struct evbuffer *in,
                                                   struct evbuffer *out)
{
    return run_buffer(&c->c, in, out);
}

enum fg_compress_status fg_compressor_flush(struct fg_compressor *c, struct evbuffer *out)
{
    return run(&c->c, FG_CODEC_FLUSH, NULL, 0, out);
}

enum fg_compress_status fg_compressor_finish(struct fg_compressor *c, struct evbuffer *out)
{
    return run(&c->c, FG_CODEC_FINISH, NULL, 0, out);
}

uint64_t fg_compressor_bytes_in(const struct fg_compressor *c)
{
    return c->c.bytes_in;
}

uint64_t fg_compressor_bytes_out(const struct fg_compressor *c)
{
    return c->c.bytes_out;
}

size_t fg_compressor_memory(const struct fg_compressor *c)
{
    return sizeof(*c) + c->c.acct.used;
}

size_t fg_compressor_memory_peak(const struct fg_compressor *c)
{
    return sizeof(*c) + c->c.acct.peak;
}

/* ---- decoders --------------------------------------------------------------------- */

struct fg_decompressor *fg_decompressor_new(enum fg_compress_encoding enc, uint64_t max_output,
                                            size_t max_memory)
{
    const struct fg_codec_backend *b;
    if (enc == FG_COMPRESS_GZIP)
        b = &fg_codec_gzip_decoder;
    else if (enc == FG_COMPRESS_BR)
        b = &fg_codec_br_decoder;
    else
        return NULL;
    return (struct fg_decompressor *)codec_new(sizeof(struct fg_decompressor), b, NULL, max_output,
                                               max_memory);
}

void fg_decompressor_free(struct fg_decompressor *d)
{
    codec_free(d ? &d->c : NULL);
}

enum fg_compress_status fg_decompressor_write(struct fg_decompressor *d, const void *data,
                                              size_t len, struct evbuffer *out)
{
    return run(&d->c, FG_CODEC_WRITE, data, len, out);
}

enum fg_compress_status fg_decompressor_write_buffer(struct fg_decompressor *d, struct evbuffer *in,
                                                     struct evbuffer *out)
{
    return run_buffer(&d->c, in, out);
}

enum fg_compress_status fg_decompressor_finish(struct fg_decompressor *d)
{
    struct fg_codec *c = &d->c;
    FG_ASSERT(c->magic == FG_CODEC_MAGIC);
    if (c->error != FG_COMPRESS_OK)
        return c->error;
    if (c->finished)
        return FG_COMPRESS_E_STATE;
    c->finished = true;
    if (!c->backend->at_end(c->state))
        c->error = FG_COMPRESS_E_TRUNCATED;
    return c->error;
}

uint64_t fg_decompressor_bytes_in(const struct fg_decompressor *d)
{
    return d->c.bytes_in;
}

uint64_t fg_decompressor_bytes_out(const struct fg_decompressor *d)
{
    return d->c.bytes_out;
}

size_t fg_decompressor_memory(const struct fg_decompressor *d)
{
    return sizeof(*d) + d->c.acct.used;
}
