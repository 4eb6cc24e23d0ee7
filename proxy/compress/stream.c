/*
 * stream.c — a body going through an encoder over evbuffers (compress.h, "a body through
 * an encoder"), and the process's compression counters: answers and bytes per coding, the
 * CPU the encoders took, why answers were not compressed, errors.
 */
#include "compress/compress.h"

#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

static struct {
    _Atomic uint64_t responses[FG_COMPRESS_ENCODING__COUNT];
    _Atomic uint64_t bytes_in[FG_COMPRESS_ENCODING__COUNT];
    _Atomic uint64_t bytes_out[FG_COMPRESS_ENCODING__COUNT];
    _Atomic uint64_t cpu_ns[FG_COMPRESS_ENCODING__COUNT];
    _Atomic uint64_t skipped[FG_COMPRESS_REASON__COUNT];
    _Atomic uint64_t errors;
} Z;

#define ADD(c, v) atomic_fetch_add_explicit(&(c), (v), memory_order_relaxed)
#define GET(c)    atomic_load_explicit(&(c), memory_order_relaxed)

void fg_compress_stats_get(struct fg_compress_stats *out)
{
    for (int e = 0; e < FG_COMPRESS_ENCODING__COUNT; e++) {
        out->responses[e] = GET(Z.responses[e]);
        out->bytes_in[e] = GET(Z.bytes_in[e]);
        out->bytes_out[e] = GET(Z.bytes_out[e]);
        out->cpu_ns[e] = GET(Z.cpu_ns[e]);
    }
    for (int r = 0; r < FG_COMPRESS_REASON__COUNT; r++)
        out->skipped[r] = GET(Z.skipped[r]);
    out->errors = GET(Z.errors);
}

void fg_compress_stats_skipped(enum fg_compress_reason r)
{
    if (r < FG_COMPRESS_REASON__COUNT)
        ADD(Z.skipped[r], 1);
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void fg_compress_stream_free(struct fg_compress_stream *s)
{
    fg_compressor_free(s->z);
    if (s->tmp != NULL)
        evbuffer_free(s->tmp);
    if (s->out != NULL)
        evbuffer_free(s->out);
    memset(s, 0, sizeof(*s));
}

bool fg_compress_stream_start(struct fg_compress_stream *s, const struct fg_compress_plan *plan,
                              const struct fg_compress_params *params)
{
    memset(s, 0, sizeof(*s));
    s->z = fg_compressor_new(plan->encoding, params);
    if (s->z == NULL)
        ADD(Z.errors, 1);
    s->tmp = evbuffer_new();
    s->out = evbuffer_new();
    s->encoding = plan->encoding;
    s->flush_each = plan->flush_each;
    if (s->z == NULL || s->tmp == NULL || s->out == NULL) {
        fg_compress_stream_free(s);
        return false;
    }
    return true;
}

bool fg_compress_stream_write(struct fg_compress_stream *s, struct evbuffer *in,
                              struct evbuffer *out)
{
    uint64_t t0 = thread_cpu_ns();
    enum fg_compress_status st = fg_compressor_write_buffer(s->z, in, out);
    if (st == FG_COMPRESS_OK && s->flush_each)
        st = fg_compressor_flush(s->z, out);
    s->cpu_ns += thread_cpu_ns() - t0;
    if (st != FG_COMPRESS_OK)
        ADD(Z.errors, 1);
    return st == FG_COMPRESS_OK;
}

bool fg_compress_stream_finish(struct fg_compress_stream *s, struct evbuffer *out)
{
    uint64_t t0 = thread_cpu_ns();
    enum fg_compress_status st = fg_compressor_finish(s->z, out);
    s->cpu_ns += thread_cpu_ns() - t0;
    if (st != FG_COMPRESS_OK) {
        ADD(Z.errors, 1);
        return false;
    }
    enum fg_compress_encoding e = s->encoding;
    ADD(Z.responses[e], 1);
    ADD(Z.bytes_in[e], fg_compressor_bytes_in(s->z));
    ADD(Z.bytes_out[e], fg_compressor_bytes_out(s->z));
    ADD(Z.cpu_ns[e], s->cpu_ns);
    return true;
}
