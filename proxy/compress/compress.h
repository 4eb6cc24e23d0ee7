/*
 * compress.h — response compression (gzip, brotli): the pure part. Accept-Encoding
 * negotiation (RFC 9110 §12.5.3), the "should this response be compressed" decision, the
 * header edits compression implies (Vary, ETag), and streaming encoders and decoders with
 * bounded memory that append to a libevent evbuffer.
 *
 * Nothing here does I/O or logs: every function answers from its arguments, and errors are
 * return values, never asserts on input data. The request path and the cache wire it in.
 */
#ifndef FG_COMPRESS_H
#define FG_COMPRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http.h"

struct evbuffer;

/* Content codings we produce or decode. The value indexes per-coding arrays. */
enum fg_compress_encoding {
    FG_COMPRESS_IDENTITY = 0,
    FG_COMPRESS_GZIP,
    FG_COMPRESS_BR,
    FG_COMPRESS_ENCODING__COUNT
};

/* The Content-Encoding token: "identity", "gzip", "br"; "unknown" out of range. */
const char *fg_compress_encoding_name(enum fg_compress_encoding e);

/* ---- Accept-Encoding negotiation (RFC 9110 §12.5.3) ------------------------------- */

/* Weights are kept in thousandths: q=1 is 1000, q=0.5 is 500. */
#define FG_COMPRESS_Q_MAX   1000
#define FG_COMPRESS_Q_UNSET (-1) /* the coding was not listed */

/*
 * What a request's Accept-Encoding fields say, folded over all of them. Codings other
 * than identity, gzip (alias x-gzip), br and "*" are ignored. When a coding is listed more
 * than once (gzip and x-gzip count as one) the lowest weight wins: whatever the client
 * refused anywhere is never sent.
 */
struct fg_compress_accept {
    int16_t q[FG_COMPRESS_ENCODING__COUNT]; /* FG_COMPRESS_Q_UNSET or 0..1000 */
    int16_t q_star;                         /* weight of "*", or FG_COMPRESS_Q_UNSET */
    bool present;                           /* at least one Accept-Encoding field seen */
    unsigned malformed;                     /* elements skipped because they did not parse */
};

/* Start with no field seen. */
void fg_compress_accept_init(struct fg_compress_accept *a);

/*
 * Fold one Accept-Encoding field value into *a (call once per field, in order). The value
 * is a comma list of coding [ OWS ";" OWS "q=" qvalue ]; empty elements (",,") are
 * skipped. Tolerated beyond the grammar: OWS around "=", an upper-case "Q", and parameters
 * other than q (ignored). An element with a bad weight ("q=", "q=1.001", "q=0.5000",
 * "q=.5", a second q) or junk after the coding is malformed: it is skipped whole and
 * counted, the rest of the value still counts. Reads exactly value[0..len), whatever the
 * bytes; the cost is linear in len.
 */
void fg_compress_accept_add(struct fg_compress_accept *a, const char *value, size_t len);

/* fg_compress_accept_init, then fg_compress_accept_add for every Accept-Encoding field
 * among h[0..n). */
void fg_compress_accept_from_headers(struct fg_compress_accept *a, const struct fg_http_header *h,
                                     size_t n);

/* The outcome of negotiation. */
struct fg_compress_choice {
    enum fg_compress_encoding encoding; /* what to send; FG_COMPRESS_IDENTITY: as it is */
    /* False when the client excluded identity ("identity;q=0", or "*;q=0" without an
     * identity entry), whatever encoding says: it matters when the body ends up sent as
     * it is (encoding is identity, or fg_compress_check said no). RFC 9110 lets a server
     * answer 406 then; we recommend sending identity anyway, as nginx, Apache and most
     * servers do: a 406 breaks the page, an unwanted identity body merely costs bytes. */
    bool identity_ok;
};

/*
 * Choose a coding for a response. enabled[0..n) lists the codings the route may produce,
 * in the server's order of preference (FG_COMPRESS_IDENTITY entries are ignored); see
 * fg_compress_default_order. The rule: among enabled codings with the highest weight
 * above 0, the first in enabled wins; a coding the client did not list is acceptable only
 * through "*". Identity is sent instead when the client gave identity (explicitly or
 * through "*") a weight strictly higher than the best coding's.
 *
 * No Accept-Encoding field at all means, per RFC, that any coding is acceptable; a proxy
 * must not take that literally (curl, monitoring probes and old clients send none and
 * cannot decode), so the answer is identity. An empty field value means "no coding
 * wanted": identity too.
 */
struct fg_compress_choice fg_compress_choose(const struct fg_compress_accept *a,
                                             const enum fg_compress_encoding *enabled, size_t n);

/* fg_compress_accept_from_headers over a request's fields, then fg_compress_choose. */
struct fg_compress_choice fg_compress_negotiate(const struct fg_http_header *h, size_t n,
                                                const enum fg_compress_encoding *enabled,
                                                size_t n_enabled);

/* The default preference: brotli (4-11% smaller at the defaults), then gzip. */
#define FG_COMPRESS_DEFAULT_ORDER_LEN 2
extern const enum fg_compress_encoding fg_compress_default_order[FG_COMPRESS_DEFAULT_ORDER_LEN];

/* ---- should this response be compressed? ------------------------------------------ */

/* Why a response is (not) compressed; fg_compress_reason_name() gives a stats name. */
enum fg_compress_reason {
    FG_COMPRESS_YES = 0,      /* compress it */
    FG_COMPRESS_NO_ACCEPT,    /* never returned by fg_compress_check: for the caller, when
                                 negotiation chose identity, so one set of counters covers
                                 every reason */
    FG_COMPRESS_NO_HEAD,      /* the request was HEAD: there is no body */
    FG_COMPRESS_NO_STATUS,    /* 1xx, 204 or 304: there is no body */
    FG_COMPRESS_NO_PARTIAL,   /* 206 or Content-Range: byte ranges of the identity body */
    FG_COMPRESS_NO_ENCODED,   /* Content-Encoding other than identity is already there */
    FG_COMPRESS_NO_TRANSFORM, /* Cache-Control: no-transform (RFC 9111 §5.2.2.6) */
    FG_COMPRESS_NO_TYPE,      /* Content-Type absent or not in the list */
    FG_COMPRESS_NO_SMALL,     /* known length below min_length */
    FG_COMPRESS_REASON__COUNT
};

/* A short stable snake_case name: "yes", "no_accept", "head", "status", "partial",
 * "encoded", "no_transform", "type", "small"; "unknown" out of range. */
const char *fg_compress_reason_name(enum fg_compress_reason r);

/* What may be compressed. */
struct fg_compress_policy {
    const char *const *types; /* NULL-terminated media-type patterns; NULL: the defaults */
    uint64_t min_length;      /* a body of known length below this is sent as it is */
};

/* A body this small fits one TCP segment either way and would save a few dozen bytes, while
 * the encoder's setup costs the same for every body (Akamai's threshold is 860 bytes,
 * Google's advice 150 to 1000). */
#define FG_COMPRESS_MIN_LENGTH_DEFAULT 256

/*
 * The default compressible types: every text type, JSON and XML with their +json and +xml
 * forms (application/manifest+json, ld+json, rss+xml...), JavaScript, SVG, WebAssembly and the
 * uncompressed font and icon formats. Images, video, archives, woff/woff2 are already
 * compressed and are left out. NULL-terminated.
 */
extern const char *const fg_compress_default_types[];

/*
 * Does the media type in a Content-Type value match pattern? Parameters ("; charset=x")
 * and OWS are ignored, case too. A pattern is "type/subtype" where either part may be "*"
 * (any non-empty token), or the subtype may be "*+suffix": any non-empty subtype ending in
 * "+suffix", so "application/" "*+json" matches application/ld+json, not application/json.
 * A value that is not token "/" token matches nothing.
 */
bool fg_compress_type_match(const char *pattern, const char *value, size_t len);

/* True if value matches one of the NULL-terminated patterns. */
bool fg_compress_type_listed(const char *const *patterns, const char *value, size_t len);

/* True if some Cache-Control field among h[0..n) has no-transform. A request's
 * no-transform (RFC 9111 §5.2.1.6) asks the same of us: the caller checks it on the
 * request and then does not compress. */
bool fg_compress_no_transform(const struct fg_http_header *h, size_t n);

/* body_length when the response is chunked or delimited by close. */
#define FG_COMPRESS_LENGTH_UNKNOWN UINT64_MAX

/*
 * Should this response be compressed? method is the request's; h[0..n) the response's
 * fields; body_length FG_COMPRESS_LENGTH_UNKNOWN when not known (such a body is
 * compressed: streaming is what the encoder is for). policy NULL: the defaults. The rules
 * are checked in the order of enum fg_compress_reason and the first that refuses is
 * returned. Whether the client accepts a coding is not checked here (see
 * FG_COMPRESS_NO_ACCEPT), so a cache can ask this once for all clients.
 */
enum fg_compress_reason fg_compress_check(const struct fg_compress_policy *policy,
                                          enum fg_http_method method, int status,
                                          const struct fg_http_header *h, size_t n,
                                          uint64_t body_length);

/* fg_compress_check over a parsed response head: the length is resp->content_length for
 * FG_HTTP_BODY_LENGTH, 0 for FG_HTTP_BODY_NONE, unknown otherwise. */
enum fg_compress_reason fg_compress_check_response(const struct fg_compress_policy *policy,
                                                   enum fg_http_method method,
                                                   const struct fg_http_response *resp);

/* ---- header edits ----------------------------------------------------------------- */

/*
 * The Vary value to send with a compressed (or compressible) response, given the one the
 * response has (vary NULL or len 0: none). Adds "Accept-Encoding" unless already listed
 * (case-insensitively); "*" stays "*"; trailing commas and OWS of the old value are
 * dropped. With several Vary fields, pass the last one: duplicates across fields are
 * harmless. Writes *out_len bytes into out (no NUL); false if cap is too small.
 */
bool fg_compress_vary_merge(const char *vary, size_t len, char *out, size_t cap, size_t *out_len);

/*
 * The ETag to send with an encoded representation: a strong entity-tag ("abc") becomes
 * weak (W/"abc"), because the encoded bytes differ from the identity ones while both stay
 * semantically equivalent (RFC 9110 §8.8.3). A weak tag, or anything that is not one
 * well-formed entity-tag, is copied unchanged (OWS trimmed). Writes *out_len bytes into out
 * (no NUL); false if cap is too small.
 */
bool fg_compress_etag_weaken(const char *etag, size_t len, char *out, size_t cap, size_t *out_len);

/* ---- the plan for one answer (plan.c) -------------------------------------------- */

/* What to do with one answer for one client: the edits to its head, and whether to encode
 * its body. */
struct fg_compress_plan {
    bool vary_edit; /* write the merged Vary instead of the answer's */
    bool compress;
    bool flush_each; /* a stream (text/event-stream): flush after every piece */
    enum fg_compress_encoding encoding;
    char vary[512];
    size_t vary_len;
    char etag[160]; /* weakened */
    size_t etag_len;
};

/* Room fg_compress_plan_fields needs. */
#define FG_COMPRESS_PLAN_FIELDS_MAX (512 + 160 + 64)

/*
 * Plan an answer for a client that accepts enc (identity: none): false when its body stays
 * as it is (plan->vary_edit may still be set: a compressible answer varies on
 * Accept-Encoding whoever asks, so caches downstream key on it too). Every refusal is
 * counted (fg_compress_stats: skipped).
 */
bool fg_compress_plan_response(const struct fg_compress_policy *policy,
                               enum fg_compress_encoding enc, enum fg_http_method method,
                               const struct fg_http_response *resp, struct fg_compress_plan *plan);
/* Is this field of the answer replaced by the plan's (Vary, ETag, Content-Length)? */
bool fg_compress_plan_replaces(const struct fg_compress_plan *plan, const struct fg_http_header *h);
/* The plan's own fields ("Name: value\r\n" lines): Vary, Content-Encoding, ETag. */
size_t fg_compress_plan_fields(const struct fg_compress_plan *plan, char *out, size_t cap);

/* ---- streaming encoders and decoders ---------------------------------------------- */

/* What every codec call returns. After any error but FG_COMPRESS_E_STATE the stream is
 * dead: every later call returns the same error. */
enum fg_compress_status {
    FG_COMPRESS_OK = 0,
    FG_COMPRESS_E_STATE,     /* write, flush or finish after finish */
    FG_COMPRESS_E_NOMEM,     /* out of memory, or over the decoder's max_memory */
    FG_COMPRESS_E_DATA,      /* decoder: not a valid stream, or bytes after its end */
    FG_COMPRESS_E_LIMIT,     /* decoder: output would exceed max_output */
    FG_COMPRESS_E_TRUNCATED, /* decoder: finish before the end of the stream */
    FG_COMPRESS_E_INTERNAL,  /* the library refused a call (our bug) or made no progress */
    FG_COMPRESS_STATUS__COUNT
};

/* "ok", "state", "nomem", "data", "limit", "truncated", "internal"; "unknown" otherwise. */
const char *fg_compress_status_name(enum fg_compress_status s);

/*
 * Output is written straight into space reserved in the caller's evbuffer, in windows of
 * this many bytes (spread over at most two of the buffer's chains, so their tails are
 * used): nothing is copied and nothing is allocated per call but the evbuffer's own chains
 * and what zlib or brotli allocate inside.
 */
#define FG_COMPRESS_CHUNK 16384

/* No limit, for fg_decompressor_new. */
#define FG_COMPRESS_NO_LIMIT UINT64_MAX

/*
 * Encoder settings. Start from fg_compress_params_default() and change what you need.
 *
 * Memory per encoder: fg_compressor_memory() counts it exactly (every allocation of the
 * library goes through an account, plus the object itself), fg_compress_memory_estimate()
 * bounds it beforehand (params.c has the fit):
 * - gzip: deflate's (1 << (window_bits + 2)) + (1 << (mem_level + 9)) plus 6 KiB of state,
 *   all allocated at creation: 15/8 takes 262 KiB, 14/7 134 KiB, 13/6 70 KiB.
 * - brotli: allocated as input arrives and kept until the end. For quality 4-9 a long
 *   stream takes 8 to 10 times 2^lgwin (a ring buffer of twice the window, and the output
 *   and commands of a metablock that grows to twice the window before it is emitted) plus
 *   a hasher of 1.6 MiB at 4 up to 35 MiB at 9. Measured peaks for 8 MiB of HTML at
 *   quality 4: lgwin 16: 1.9 MiB, 18: 3.3-4 MiB, 20: 9.5-12 MiB, 22: 33-41 MiB (brotli's
 *   own default window!); 2-3 take 2 * 2^lgwin + 0.9 MiB, 10-11 about 24 * 2^lgwin. A
 *   short body takes less: the 20 KiB page holds 0.8 MiB at quality 4. Quality 0-1 take
 *   40 KiB to 1.7 MiB depending on the size of the writes, because they compress every
 *   write as a fragment of its own, with no history: on small writes their ratio suffers
 *   (13% larger with 4 KiB writes than in one piece). Use 2 or more for streaming.
 * size_hint shrinks the window when the body is smaller (for both encodings).
 */
struct fg_compress_params {
    int level;          /* gzip 1..9 (0: stored), brotli quality 0..11 */
    int window_bits;    /* gzip 9..15, brotli lgwin 10..24: the window is 2^n bytes */
    int mem_level;      /* gzip 1..9: hash table and block buffer of 2^(n+9) bytes each */
    uint64_t size_hint; /* the body length when known, else 0 */
};

/*
 * Defaults for on-the-fly compression, chosen by measurement with tests/bench/
 * compress_levels.c: a generated 20 KiB shop page (it compresses like a real one: gzip 6
 * leaves 0.22 of it, 0.25 of a rustdoc page) and a 1 MiB one; ratio = output / input, and
 * us per KiB of input for creating, running and freeing an encoder in a warmed-up process,
 * on the 2-core build machine (+-10% run to run):
 *
 *   gzip (15/8)     1     2     3     4     5     6     7     8     9
 *     ratio       0.242 0.236 0.228 0.227 0.222 0.219 0.218 0.218 0.218
 *     us/KiB        1.8   1.9   2.5   3.0   3.9   5.5   6.0   6.6   6.6
 *   brotli (18)     0     1     2     3     4     5     6     7     9    10    11
 *     ratio       0.253 0.240 0.219 0.218 0.213 0.199 0.199 0.199 0.199 0.190 0.183
 *     us/KiB        1.3   1.8   2.2   2.8   4.5   5.6   5.9   7.2   211   237   665
 *   1 MiB page: gzip 5 0.179 at 8.5 us/KiB; brotli 4 0.159 at 5.3, 5 0.146 at 9.6. With the
 *   length known (size_hint >= 1 MiB) brotli 4 takes a larger hasher: 0.137 at 4.8, 6.8 MiB.
 *
 * gzip 5: 1.4% larger than 6 for 30% less CPU; 7-9 gain nothing. brotli 4: 4% smaller than
 * gzip 5 on the page for 15% more CPU, 11% smaller on the large one for 40% less; 5 is 7-8%
 * smaller again for 25% (page) to 80% (large) more CPU. The proxy shares the instance's CPU
 * with the app, hence 4; 9 and up are for objects compressed once (cache fills), off the
 * worker threads. Windows, on the 1 MiB page: gzip 14/7 is 6% larger than 15/8 for half of
 * 262 KiB: kept at 15/8. brotli lgwin 18 is 1% larger than 20 and 22 for half the memory
 * of 20 and a quarter of 22's (peaks of 3.3, 6.3 and 12.3 MiB there).
 */
#define FG_COMPRESS_GZIP_LEVEL_DEFAULT    5
#define FG_COMPRESS_GZIP_WBITS_DEFAULT    15
#define FG_COMPRESS_GZIP_MEMLEVEL_DEFAULT 8
#define FG_COMPRESS_BR_LEVEL_DEFAULT      4
#define FG_COMPRESS_BR_LGWIN_DEFAULT      18

/* Fill *p with the defaults for enc (identity: the gzip ones, unused). */
void fg_compress_params_default(enum fg_compress_encoding enc, struct fg_compress_params *p);

/* The most an encoder with these settings holds, after size_hint has shrunk the window (see
 * above): an upper bound, up to 40% above what long streams of HTML showed whatever the
 * sizes of the writes, and generous for short bodies. 0 for identity or invalid settings. */
size_t fg_compress_memory_estimate(enum fg_compress_encoding enc,
                                   const struct fg_compress_params *p);

struct fg_compressor;

/*
 * A streaming encoder for enc (gzip: deflate with the gzip wrapper; br). p NULL: the
 * defaults. NULL when enc is identity, a setting is out of range, or memory is short.
 */
struct fg_compressor *fg_compressor_new(enum fg_compress_encoding enc,
                                        const struct fg_compress_params *p);

/* Free the encoder (NULL is fine). Output already appended stays in the buffers. */
void fg_compressor_free(struct fg_compressor *c);

/* Compress data[0..len) and append whatever output is ready to out (the encoder keeps
 * back what it needs for better matches, so a small write may append nothing). */
enum fg_compress_status fg_compressor_write(struct fg_compressor *c, const void *data, size_t len,
                                            struct evbuffer *out);

/* fg_compressor_write of everything in `in` (not out), without copying it; `in` is drained
 * of what was consumed (all of it on success). */
enum fg_compress_status fg_compressor_write_buffer(struct fg_compressor *c, struct evbuffer *in,
                                                   struct evbuffer *out);

/* Append everything written so far as decodable output (gzip Z_SYNC_FLUSH, brotli
 * BROTLI_OPERATION_FLUSH), for a streaming response that must push what it has. Costs a few
 * bytes and some ratio per call: flush when the upstream pauses, not per read. */
enum fg_compress_status fg_compressor_flush(struct fg_compressor *c, struct evbuffer *out);

/* End the stream and append its tail (gzip: the CRC32 and length trailer). Afterwards
 * write, flush and finish return FG_COMPRESS_E_STATE. */
enum fg_compress_status fg_compressor_finish(struct fg_compressor *c, struct evbuffer *out);

/* Bytes taken in and bytes appended to out so far, for stats. */
uint64_t fg_compressor_bytes_in(const struct fg_compressor *c);
uint64_t fg_compressor_bytes_out(const struct fg_compressor *c);

/* Bytes the encoder holds now: the library's allocations and the object itself. */
size_t fg_compressor_memory(const struct fg_compressor *c);

/* The most it held at once so far (brotli grows its buffers by reallocation, so the peak
 * is above the current size for a moment). */
size_t fg_compressor_memory_peak(const struct fg_compressor *c);

struct fg_decompressor;

/*
 * A streaming decoder for enc (gzip: also a zlib stream; concatenated gzip members are
 * decoded as one body, RFC 1952 §2.2). Output beyond max_output bytes in total is refused
 * with FG_COMPRESS_E_LIMIT, which stops decompression bombs (a gzip body expands up to
 * 1032:1, a brotli one far more); max_memory bounds the library's allocations (a brotli
 * stream may ask for a 16 MiB window) and fails with FG_COMPRESS_E_NOMEM. Pass
 * FG_COMPRESS_NO_LIMIT (or SIZE_MAX) for none. NULL for identity or when memory is short.
 * Memory: inflate takes 2^15 + about 7 KiB; brotli a ring buffer that grows with the output
 * up to the stream's window (2^24 at most), plus up to a few hundred KiB of tables.
 */
struct fg_decompressor *fg_decompressor_new(enum fg_compress_encoding enc, uint64_t max_output,
                                            size_t max_memory);

/* Free the decoder (NULL is fine). */
void fg_decompressor_free(struct fg_decompressor *d);

/* Decompress data[0..len) and append all the output it yields to out. On
 * FG_COMPRESS_E_LIMIT, out has received at most max_output bytes in total: discard them. */
enum fg_compress_status fg_decompressor_write(struct fg_decompressor *d, const void *data,
                                              size_t len, struct evbuffer *out);

/* fg_decompressor_write of everything in `in` (not out); `in` is drained of what was
 * consumed. */
enum fg_compress_status fg_decompressor_write_buffer(struct fg_decompressor *d, struct evbuffer *in,
                                                     struct evbuffer *out);

/* The input is over: FG_COMPRESS_E_TRUNCATED unless it ended exactly at the end of a
 * stream (an empty input is truncated too). Output was already appended by the writes. */
enum fg_compress_status fg_decompressor_finish(struct fg_decompressor *d);

/* Bytes taken in and bytes appended so far. */
uint64_t fg_decompressor_bytes_in(const struct fg_decompressor *d);
uint64_t fg_decompressor_bytes_out(const struct fg_decompressor *d);

/* Bytes the decoder holds now: the library's allocations and the object itself. */
size_t fg_decompressor_memory(const struct fg_decompressor *d);

/* ---- a body through an encoder, with the process's counters (stream.c) ------------- */

struct evbuffer;

struct fg_compress_stream {
    struct fg_compressor *z; /* NULL: not started */
    struct evbuffer *tmp;    /* input staged for the encoder */
    struct evbuffer *out;    /* encoder output before framing */
    enum fg_compress_encoding encoding;
    bool flush_each;
    uint64_t cpu_ns;
};

/* An encoder for plan (its coding and flushing) with params; false (counted as an error)
 * when none can be made. */
bool fg_compress_stream_start(struct fg_compress_stream *s, const struct fg_compress_plan *plan,
                              const struct fg_compress_params *params);
/* Encode what in holds into out / end the stream into out (then counted). false on failure. */
bool fg_compress_stream_write(struct fg_compress_stream *s, struct evbuffer *in,
                              struct evbuffer *out);
bool fg_compress_stream_finish(struct fg_compress_stream *s, struct evbuffer *out);
/* Safe on a stream never started. */
void fg_compress_stream_free(struct fg_compress_stream *s);

/* Compression counters of the whole process (every worker adds with relaxed atomics). */
struct fg_compress_stats {
    uint64_t responses[FG_COMPRESS_ENCODING__COUNT], bytes_in[FG_COMPRESS_ENCODING__COUNT];
    uint64_t bytes_out[FG_COMPRESS_ENCODING__COUNT], cpu_ns[FG_COMPRESS_ENCODING__COUNT];
    uint64_t skipped[FG_COMPRESS_REASON__COUNT], errors;
};
void fg_compress_stats_get(struct fg_compress_stats *out);
void fg_compress_stats_skipped(enum fg_compress_reason r);

#endif /* FG_COMPRESS_H */
