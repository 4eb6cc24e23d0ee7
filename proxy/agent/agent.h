/*
 * agent.h — flashgate-agent, the local queue agent (issue 6): the durable spool, AWS SigV4
 * signing, and (to come) the SQS sink, credentials and drain mode.
 */
#ifndef FG_AGENT_H
#define FG_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- spool (spool.c) ------------------------------------------------------------------ */
/* SPOOL-API-BEGIN */
/* SPOOL-API-END */

/* ---- SigV4 (sigv4.c) ------------------------------------------------------------------ */
/* SIGV4-API-BEGIN */
/*
 * AWS Signature Version 4 (HMAC-SHA256), for the SQS sink. One call builds every stage
 * (canonical request, string to sign, signature, Authorization value or presigned query)
 * so each can be checked against AWS's test vectors. Inputs are taken as the request goes
 * on the wire; nothing here reads the clock, the environment or the network.
 */

/* Lengths of the fixed-size outputs, without the terminating NUL. */
#define FG_SIGV4_HEX_LEN  64 /* a SHA-256 or HMAC-SHA256 in lowercase hex */
#define FG_SIGV4_DATE_LEN 16 /* X-Amz-Date: "20150830T123600Z" */
/* Longest region or service name a key or a signature accepts ("ap-southeast-2": 14). */
#define FG_SIGV4_NAME_MAX 63
/* Longest presigned URL lifetime AWS accepts: 7 days. */
#define FG_SIGV4_MAX_EXPIRES 604800u

/* A request header as a (pointer, length) slice; neither part needs a NUL. Folded values
 * (continuation lines) may be passed as they are: runs of whitespace, line ends included,
 * are collapsed to one space when signing. */
struct fg_sigv4_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* Long-term (environment) or temporary (instance role) credentials. */
struct fg_sigv4_credentials {
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token; /* NULL or "" for long-term keys */
};

/* The derived signing key (kSigning) for one secret, UTC day, region and service. The
 * agent keeps one per sink so that the four key-derivation HMACs run once a day, not once
 * a request. Zero-initialise it; fg_sigv4_key_update() refills it when anything changed,
 * rotated credentials included (it keeps a SHA-256 of the secret, never the secret).
 * Not thread-safe: one per thread, or under the caller's lock. */
struct fg_sigv4_key {
    uint8_t k[32];
    uint8_t secret_hash[32];
    char date[9]; /* "20150830" */
    char region[FG_SIGV4_NAME_MAX + 1];
    char service[FG_SIGV4_NAME_MAX + 1];
    bool valid;
};

/* The request to sign, as it will be sent. */
struct fg_sigv4_request {
    const char *method; /* "POST" */
    /* The path of the request line without the query, as sent (percent-encoded as on the
     * wire): "/" or "/123456789012/orders". Empty or NULL means "/". */
    const char *path;
    /* The query string as sent, without the '?': "a=1&b=x%20y". NULL or "" for none.
     * Each name and value is decoded and re-encoded for signing, so both encoded and
     * plain forms ("%E1%88%B4" or the raw UTF-8) sign the same; '+' is a literal plus. */
    const char *query;
    /* The headers to sign; Host is required. Repeated names are allowed (their values are
     * joined with ',' in order). Pass only headers that reach AWS unchanged. Authorization,
     * and the headers signing adds (X-Amz-Date, X-Amz-Security-Token, and
     * x-amz-content-sha256 when sign_body) are ignored if present. */
    const struct fg_sigv4_header *headers;
    size_t n_headers;
    /* The body; hashed unless payload_hash is set. */
    const void *payload;
    size_t payload_len;
    /* Optional precomputed body hash in lowercase hex, or "UNSIGNED-PAYLOAD". */
    const char *payload_hash;
};

/* How to sign. Zero values are the right ones for SQS (and every service but S3). */
struct fg_sigv4_params {
    const struct fg_sigv4_credentials *creds;
    const char *region;  /* "us-east-1" */
    const char *service; /* "sqs" */
    int64_t time;        /* signing time, Unix seconds (UTC) */
    /* Keep '.', '..' and empty path segments (S3; the vectors' "normalize": false).
     * By default they are removed before signing, as every other service does. */
    bool keep_dot_segments;
    /* S3: the path is signed encoded once (valid %XX kept, other bytes encoded). By
     * default the path as sent is URI-encoded again ('%' becomes "%25"), per AWS. */
    bool single_encode;
    /* Add and sign x-amz-content-sha256 (header signing only). */
    bool sign_body;
    /* The session token is added after signing and is not signed. */
    bool omit_session_token;
    /* 0: sign with the Authorization header. 1..FG_SIGV4_MAX_EXPIRES: presign the query
     * (X-Amz-Signature in the URL), valid for that many seconds. */
    uint32_t presign_expires;
    /* Optional signing-key cache, updated in place; NULL derives a key for this call. */
    struct fg_sigv4_key *key;
};

/* Everything signing produced. Strings are NUL-terminated and owned by the result; free
 * them with fg_sigv4_result_free(). */
struct fg_sigv4_result {
    char *canonical_request;
    char *string_to_sign;
    char *signed_headers; /* "content-type;host;x-amz-date;x-amz-target" */
    char signature[FG_SIGV4_HEX_LEN + 1];
    char amz_date[FG_SIGV4_DATE_LEN + 1];    /* "20150830T123600Z" */
    char payload_hash[FG_SIGV4_HEX_LEN + 1]; /* the hash signed, as in the last line */
    char *authorization;                     /* header signing: the Authorization value */
    /* Presigning: the parameters to append to the query (after '&' when the request had
     * one), from X-Amz-Algorithm to X-Amz-Signature, in AWS's order. */
    char *presigned_query;
    /* Header signing: the headers to add to the request, in this order:
     * X-Amz-Security-Token (with a token), X-Amz-Date, x-amz-content-sha256 (sign_body),
     * Authorization. Values point into this result. Empty when presigning. */
    struct fg_sigv4_header add[4];
    size_t n_add;
    const char *error; /* why signing failed (a static string), NULL on success */
    char *priv_token;  /* private: the copy of the session token add[] points to */
};

/* Sign req with params into out (which need not be initialised). Returns false with
 * out->error set on bad input (no Host header, a non-token header name or method, empty
 * credentials, a region or service too long or with '/', a time before 1970 or after
 * 9999, an over-long payload_hash) or when memory or OpenSSL fails. Call
 * fg_sigv4_result_free() afterwards in both cases. */
bool fg_sigv4_sign(const struct fg_sigv4_request *req, const struct fg_sigv4_params *params,
                   struct fg_sigv4_result *out);

/* Free what a result owns and zero it. Safe on a zeroed or already freed result. */
void fg_sigv4_result_free(struct fg_sigv4_result *r);

/* Make key the signing key for this secret, the UTC day of time, region and service;
 * the four HMACs run only when one of them differs from what key holds. False (and key
 * invalidated) on bad input or an OpenSSL failure. */
bool fg_sigv4_key_update(struct fg_sigv4_key *key, const char *secret, int64_t time,
                         const char *region, const char *service);

/* Forget a key and wipe its bytes (on shutdown, or when credentials are revoked). */
void fg_sigv4_key_clear(struct fg_sigv4_key *key);

/* The canonical URI of a path as sent, with the same two switches as fg_sigv4_params:
 * "/example/../a b/" gives "/a%20b/". A malloc'd string (free() it), NULL when out of
 * memory. Exposed for tests and for logging what was signed. */
char *fg_sigv4_canonical_uri(const char *path, size_t len, bool keep_dot_segments,
                             bool single_encode);

/* The canonical query string of a query as sent: each name and value decoded and
 * re-encoded, pairs sorted by name then value, "name=" for a name alone, empty pairs
 * ("a=1&&b=2") dropped. A malloc'd string (free() it), NULL when out of memory. */
char *fg_sigv4_canonical_query(const char *query, size_t len);

/* URI-encode len bytes per AWS: RFC 3986 unreserved characters (A-Z a-z 0-9 - . _ ~) are
 * kept, '/' too when keep_slash, every other byte becomes %XX (uppercase). Writes at most
 * size bytes including a NUL (when size > 0) and returns the length of the whole encoding,
 * as snprintf does: a result >= size means out was too small. */
size_t fg_sigv4_uri_encode(char *out, size_t size, const void *in, size_t len, bool keep_slash);

/* SHA-256 of len bytes in lowercase hex, NUL-terminated. False if OpenSSL fails. */
bool fg_sigv4_sha256_hex(const void *data, size_t len, char out[FG_SIGV4_HEX_LEN + 1]);
/* SIGV4-API-END */

#endif /* FG_AGENT_H */
