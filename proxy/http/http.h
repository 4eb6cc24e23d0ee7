/*
 * http.h — flashgate's strict HTTP/1.1 codec (RFC 9110, RFC 9112).
 *
 * This is the security boundary of the proxy: every byte a client or an upstream sends
 * goes through these functions before anything else looks at it. The codec is pure C
 * with no I/O and no allocation: heads are parsed in one stateless call over a
 * contiguous buffer (picohttpparser's shape: bytes consumed, FG_HTTP_INCOMPLETE or
 * FG_HTTP_ERROR), header names and values are (pointer, length) slices into that
 * buffer, and chunked bodies go through a small incremental state machine that accepts
 * any split of its input.
 *
 * Unlike lenient parsers, it follows RFC 9112 strictly and says why it refused
 * (enum fg_http_error), so the caller can answer with the right status and count the
 * reason.
 */
#ifndef FG_HTTP_H
#define FG_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FG_HTTP_INCOMPLETE (-2)
#define FG_HTTP_ERROR      (-1)

/* Hard cap on the header array; the configured limit (max_headers) is at most this. */
#define FG_HTTP_MAX_HEADERS 256

/* Why a message was refused. fg_http_error_status() maps each to a status code and
 * fg_http_error_name() to a short stable name used in logs and stats counters. */
enum fg_http_error {
    FG_HTTP_E_NONE = 0,
    FG_HTTP_E_METHOD,              /* bad method token (400) */
    FG_HTTP_E_TARGET,              /* bad request-target characters or form (400) */
    FG_HTTP_E_VERSION,             /* malformed HTTP-version (400) */
    FG_HTTP_E_VERSION_UNSUPPORTED, /* well-formed but not HTTP/1.0 or 1.1 (505) */
    FG_HTTP_E_REQUEST_LINE,        /* malformed request line: spacing, missing parts (400) */
    FG_HTTP_E_URI_TOO_LONG,        /* request line longer than the limit (414) */
    FG_HTTP_E_HEADERS_TOO_LARGE,   /* header bytes or count over the limit (431) */
    FG_HTTP_E_HEADER_NAME,         /* empty name or non-token character in a name (400) */
    FG_HTTP_E_SPACE_BEFORE_COLON,  /* "Name : value" (400) */
    FG_HTTP_E_HEADER_VALUE,        /* CTL or NUL in a field value (400) */
    FG_HTTP_E_OBS_FOLD,            /* obsolete line folding (400) */
    FG_HTTP_E_BARE_CR,             /* CR not followed by LF (400) */
    FG_HTTP_E_BARE_LF,             /* LF not preceded by CR (400) */
    FG_HTTP_E_HOST_MISSING,        /* HTTP/1.1 request without Host (400) */
    FG_HTTP_E_HOST_DUPLICATE,      /* more than one Host (400) */
    FG_HTTP_E_HOST_INVALID,        /* Host value not a valid uri-host[:port] (400) */
    FG_HTTP_E_CL_INVALID,          /* Content-Length not 1*DIGIT (no sign, no list such as
                                      "5, 5") or over 2^63-1 (400) */
    FG_HTTP_E_CL_DUPLICATE,        /* more than one Content-Length (400) */
    FG_HTTP_E_CL_TE,               /* both Content-Length and Transfer-Encoding (400) */
    FG_HTTP_E_TE_UNSUPPORTED,      /* Transfer-Encoding other than a single final "chunked",
                                      or any Transfer-Encoding in an HTTP/1.0 message (400) */
    FG_HTTP_E_CHUNK_SIZE,          /* bad chunk-size line (400) */
    FG_HTTP_E_CHUNK_EXT,           /* bad or too long chunk extension (400) */
    FG_HTTP_E_CHUNK_CRLF,          /* missing CRLF after chunk data (400) */
    FG_HTTP_E_TRAILER,             /* malformed or too large trailer section (400) */
    FG_HTTP_E_STATUS_LINE,         /* malformed response status line (502 to the client) */
    FG_HTTP_E__COUNT
};

/* The status code a server answers with for this error (400, 414, 431, 505...). */
int fg_http_error_status(enum fg_http_error e);
/* A short stable snake_case name, e.g. "cl_te", "obs_fold"; "none" for FG_HTTP_E_NONE. */
const char *fg_http_error_name(enum fg_http_error e);

enum fg_http_method {
    FG_HTTP_GET = 0,
    FG_HTTP_HEAD,
    FG_HTTP_POST,
    FG_HTTP_PUT,
    FG_HTTP_DELETE,
    FG_HTTP_OPTIONS,
    FG_HTTP_TRACE,
    FG_HTTP_PATCH,
    FG_HTTP_CONNECT,
    FG_HTTP_OTHER, /* any other valid token: forwarded as is */
    FG_HTTP_METHOD__COUNT
};

/* Idempotent per RFC 9110 §9.2.2 (GET HEAD PUT DELETE OPTIONS TRACE). */
bool fg_http_method_idempotent(enum fg_http_method m);
/* GET, HEAD, OPTIONS and TRACE (RFC 9110 §9.2.1): any other method, known or not, is unsafe. */
bool fg_http_method_safe(enum fg_http_method m);
/* Upper-case name of a known method ("GET"), NULL for FG_HTTP_OTHER. */
const char *fg_http_method_name(enum fg_http_method m);
/* The method a token names, matched exactly (methods are case-sensitive, RFC 9110 §9.1):
 * "GET" is FG_HTTP_GET, "get" or "PURGE" are FG_HTTP_OTHER. */
enum fg_http_method fg_http_method_parse(const char *s, size_t len);

/* How the body of a message is delimited (RFC 9112 §6.3). */
enum fg_http_body {
    FG_HTTP_BODY_NONE = 0, /* no body at all */
    FG_HTTP_BODY_LENGTH,   /* content_length bytes (may be 0) */
    FG_HTTP_BODY_CHUNKED,  /* chunked transfer coding */
    FG_HTTP_BODY_CLOSE     /* responses only: until the connection closes */
};

struct fg_http_header {
    const char *name;
    size_t name_len;
    const char *value; /* leading and trailing SP/HTAB already trimmed */
    size_t value_len;
};

struct fg_http_limits {
    size_t max_request_line; /* bytes of the request line without CRLF; over it: 414 */
    size_t max_header_bytes; /* bytes of the whole head including request line; over: 431 */
    size_t max_headers;      /* number of header fields, <= FG_HTTP_MAX_HEADERS; over: 431 */
};

/* Connection-level facts gathered while parsing, as bit flags. */
enum fg_http_flags {
    FG_HTTP_F_CONN_CLOSE = 1u << 0,      /* Connection: close present */
    FG_HTTP_F_CONN_KEEPALIVE = 1u << 1,  /* Connection: keep-alive present */
    FG_HTTP_F_CONN_UPGRADE = 1u << 2,    /* Connection lists "upgrade" */
    FG_HTTP_F_EXPECT_CONTINUE = 1u << 3, /* Expect: 100-continue (case-insensitive) */
    FG_HTTP_F_EXPECT_OTHER = 1u << 4,    /* an Expect value we do not know (417) */
    FG_HTTP_F_HAS_UPGRADE = 1u << 5,     /* an Upgrade header field present */
    FG_HTTP_F_CONN_OTHER = 1u << 6,      /* Connection lists other names (to strip) */
    FG_HTTP_F_ABSOLUTE_FORM = 1u << 7,   /* request-target in absolute-form */
    FG_HTTP_F_ASTERISK_FORM = 1u << 8,   /* "OPTIONS * HTTP/1.1" */
    FG_HTTP_F_AUTHORITY_FORM = 1u << 9,  /* CONNECT host:port */
};

struct fg_http_request {
    enum fg_http_method method;
    const char *method_name; /* the token as received */
    size_t method_len;
    const char *target; /* request-target as received */
    size_t target_len;
    /* For origin-form and absolute-form: the path (starts with '/') and the query
     * (without the '?', NULL/0 when absent). For asterisk-form path is "*". For an
     * absolute-form without a path ("http://h") and for authority-form, path is a static
     * "/" outside buf. */
    const char *path;
    size_t path_len;
    const char *query;
    size_t query_len;
    /* The authority to use: the absolute-form (or CONNECT authority-form) authority if
     * present, else the Host value (trimmed), else NULL/0 (HTTP/1.0 without Host). */
    const char *host;
    size_t host_len;
    int minor_version;       /* 0 or 1 */
    unsigned flags;          /* enum fg_http_flags */
    enum fg_http_body body;  /* NONE, LENGTH or CHUNKED (never CLOSE for requests) */
    uint64_t content_length; /* valid when body == LENGTH */
    size_t head_len;         /* bytes of the head, including the final CRLF CRLF */
    size_t n_headers;
    struct fg_http_header headers[FG_HTTP_MAX_HEADERS];
};

struct fg_http_response {
    int minor_version;
    int status; /* 100..999 */
    const char *reason;
    size_t reason_len;
    unsigned flags; /* FG_HTTP_F_CONN_* and FG_HTTP_F_HAS_UPGRADE */
    enum fg_http_body body;
    uint64_t content_length;
    size_t head_len;
    size_t n_headers;
    struct fg_http_header headers[FG_HTTP_MAX_HEADERS];
};

/*
 * Parse a request head from buf[0..len).
 * Returns the head length (> 0) when a complete valid head was found, FG_HTTP_INCOMPLETE
 * when more bytes are needed (and the limits are not yet exceeded), or FG_HTTP_ERROR
 * with *err set. Never reads past buf + len. Slices in *req point into buf.
 * The answer never depends on how the bytes arrived: a strict prefix of any input gives
 * FG_HTTP_INCOMPLETE or the same error. Errors are reported at the first byte that
 * decides them, limits included: once max_request_line + 2 bytes of request line (or
 * max_header_bytes of head) are in without its end, the answer is 414 (or 431) at once.
 * A keep-alive client's stray CRLFs before a request line are skipped as RFC 9112 §2.2
 * allows (they count in the returned length).
 */
int fg_http_parse_request(const char *buf, size_t len, const struct fg_http_limits *lim,
                          struct fg_http_request *req, enum fg_http_error *err);

/*
 * Parse a response head. request_method is the method of the request this answers
 * (HEAD responses have no body); the body framing follows RFC 9112 §6.3: 1xx, 204 and
 * 304 have none, then Transfer-Encoding chunked, then Content-Length, else CLOSE.
 * Same return convention as fg_http_parse_request.
 */
int fg_http_parse_response(const char *buf, size_t len, const struct fg_http_limits *lim,
                           enum fg_http_method request_method, struct fg_http_response *resp,
                           enum fg_http_error *err);

/* ---- chunked transfer coding (RFC 9112 §7.1) -------------------------------------- */

enum fg_http_chunk_status {
    FG_CHUNK_MORE = 0, /* all input consumed, need more */
    FG_CHUNK_DATA,     /* positioned at chunk data: c->data_left payload bytes follow */
    FG_CHUNK_DONE,     /* last-chunk and trailer section fully consumed */
    FG_CHUNK_ERROR     /* *err says why */
};

struct fg_http_chunked {
    int state;
    uint64_t data_left; /* payload bytes of the current chunk not yet taken */
    uint64_t size;      /* size of the chunk being read */
    size_t line_len;    /* bytes in the current size or trailer line */
    size_t trailer_len; /* bytes of trailer section so far */
    size_t max_trailer; /* limit for the trailer section, default 8192 */
};

void fg_http_chunked_init(struct fg_http_chunked *c);

/*
 * Consume chunk framing from buf[0..len). Byte-at-a-time safe: any split of the input
 * gives the same payload and outcome. A chunk-size has at most 16 hex digits; a size line
 * with its extensions and CRLF is at most 4096 bytes (else FG_HTTP_E_CHUNK_EXT); BWS is
 * accepted only where RFC 9112 has it ("5 \r\n" is refused). An error is sticky: later
 * calls return FG_CHUNK_ERROR with the same *err. Stops (a) where chunk data begins, returning
 * FG_CHUNK_DATA (the caller then takes up to c->data_left bytes of payload itself and
 * reports them with fg_http_chunked_data()), (b) at the end of the body (FG_CHUNK_DONE),
 * (c) at the end of input (FG_CHUNK_MORE) or (d) on an error. *consumed is how many
 * bytes of buf were framing. Trailer fields are validated and dropped.
 */
enum fg_http_chunk_status fg_http_chunked_parse(struct fg_http_chunked *c, const char *buf,
                                                size_t len, size_t *consumed,
                                                enum fg_http_error *err);

/* The caller took n (<= c->data_left; more is clamped) payload bytes. */
void fg_http_chunked_data(struct fg_http_chunked *c, uint64_t n);

/* Write the chunk-size line for a chunk of n bytes ("1a2b\r\n") into out (>= 20 bytes);
 * returns its length. The caller appends the data and "\r\n". The last chunk is the
 * literal "0\r\n\r\n". */
size_t fg_http_chunk_header(char *out, uint64_t n);

/* ---- Range requests (RFC 9110 §14; range.c) ------------------------------------ */

/* One range of a Range field: first-last (last UINT64_MAX when open-ended), or a suffix
 * of `last` bytes. Resolved: absolute first..last, both within the representation. */
struct fg_http_range {
    uint64_t first, last;
    bool suffix;
};

/* Parse "bytes=..." into out[0..*n). false for another unit, a malformed set or more
 * than max ranges: the field is to be ignored (the whole representation is the answer). */
bool fg_http_parse_ranges(const char *s, size_t len, struct fg_http_range *out, size_t max,
                          size_t *n);
/* Resolve the parsed ranges against length, in place, dropping the unsatisfiable ones
 * (first beyond the end, an empty suffix); the number left (0: answer 416). */
size_t fg_http_ranges_resolve(struct fg_http_range *r, size_t n, uint64_t length);
/* Do any two resolved ranges overlap (a set the server should not answer piecewise)? */
bool fg_http_ranges_overlap(const struct fg_http_range *r, size_t n);
/* Does an If-Range value match the representation: a strong entity-tag equal to etag
 * (a weak one never matches), or an HTTP-date equal to last_modified (-1: none)? */
bool fg_http_if_range_matches(const char *v, size_t len, const char *etag, int64_t last_modified);

/* ---- field helpers ---------------------------------------------------------------- */

/* Case-insensitive comparison of a slice with a NUL-terminated lower-case literal. */
bool fg_http_name_eq(const char *name, size_t len, const char *lower_literal);

/* First header with this name (case-insensitive), or NULL. */
const struct fg_http_header *fg_http_find_header(const struct fg_http_header *h, size_t n,
                                                 const char *lower_name);

/* Which of several cookies of one name fg_http_cookie returns (a client may send more). */
enum fg_http_cookie_pick { FG_HTTP_COOKIE_FIRST, FG_HTTP_COOKIE_LAST };

/* The value of cookie name in the Cookie fields among h[0..n) (pairs split at ';', spaces
 * before a pair skipped), its length in *len; NULL if there is none. */
const char *fg_http_cookie(const struct fg_http_header *h, size_t n, const char *name,
                           enum fg_http_cookie_pick pick, size_t *len);

/* True if the name is a hop-by-hop field a proxy never forwards: Connection, Keep-Alive,
 * Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade. */
bool fg_http_is_hop_by_hop(const char *name, size_t len);

/* True if some Connection header among h[0..n) lists this field name (RFC 9110 §7.6.1),
 * so the field must be removed before forwarding. */
bool fg_http_connection_lists(const struct fg_http_header *h, size_t n, const char *name,
                              size_t len);

/* True if value contains the token (comma-separated list, case-insensitive, OWS trimmed). */
bool fg_http_list_has_token(const char *value, size_t len, const char *lower_token);

/*
 * Normalise a request path for route matching (RFC 3986 §5.2.4 and §6.2.2): decode
 * percent-encoded unreserved characters, upper-case remaining escapes, remove dot
 * segments, collapse repeated slashes. Writes at most *out_len bytes into out and sets
 * *out_len. Returns false (400) if the path is malformed (bad escape, an encoded '/',
 * NUL or CTL, or ".." that climbs above the root), or if it does not fit. The result is
 * never longer than the input, so an out buffer of len bytes is always large enough.
 */
bool fg_http_normalize_path(const char *path, size_t len, char *out, size_t *out_len);

/* Format an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT", 29 bytes + NUL) into out. */
void fg_http_format_date(int64_t unix_seconds, char out[30]);
/* Parse an HTTP-date (IMF-fixdate; also the obsolete RFC 850 and asctime forms).
 * Returns false if it is not a valid date. */
bool fg_http_parse_date(const char *s, size_t len, int64_t *unix_seconds);

/* Standard reason phrase for a status code ("Not Found"), "Unknown" otherwise. */
const char *fg_http_reason(int status);

#endif /* FG_HTTP_H */
