/*
 * aws.h — what flashgate and flashgate-agent need to talk to AWS: Signature Version 4
 * (sigv4.c: headers and presigned queries), credentials (creds.c: the environment or the
 * instance role over IMDSv2, refreshed before they expire) and the region and endpoint
 * rules (region.c). Services' own protocols (SQS, ElastiCache) live with their users.
 */
#ifndef FG_AWS_H
#define FG_AWS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evdns_base;

/* ---- SigV4 (sigv4.c) ------------------------------------------------------------------ */
/*
 * AWS Signature Version 4 (HMAC-SHA256): SQS requests (header signing) and ElastiCache IAM
 * tokens (presigned query). One call builds every stage
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

/* ---- credentials (creds.c) ------------------------------------------------------------ */

/* The instance metadata service (IMDSv2), where instance-role credentials come from. */
#define FG_AWS_IMDS_DEFAULT "http://169.254.169.254"

/* One set of credentials. */
struct fg_creds_value {
    char *access_key_id, *secret_access_key, *session_token; /* token may be NULL */
    int64_t obtained_s, expires_s; /* Unix seconds; expires_s 0: never (environment) */
};

/* Parse IMDS's role credentials JSON (Code "Success", AccessKeyId, SecretAccessKey, Token,
 * Expiration) into out (free with fg_creds_value_clear). False with a message in err. */
bool fg_creds_parse_imds(const char *body, size_t len, int64_t now_s, struct fg_creds_value *out,
                         char *err, size_t errlen);
/* Wipe the secret and free what v holds; v is zeroed. */
void fg_creds_value_clear(struct fg_creds_value *v);
/* When to fetch again credentials obtained at obtained_s that expire at expires_s: when
 * the larger of 5 minutes and a fifth of their lifetime is left, but not before
 * obtained_s + 1 (a server handing out nearly expired credentials is not hammered). */
int64_t fg_creds_refresh_at(int64_t obtained_s, int64_t expires_s);

/* Where credentials and the region come from. Strings are copied. */
struct fg_creds_config {
    const char *imds_endpoint; /* NULL: FG_AWS_IMDS_DEFAULT */
    uint64_t imds_timeout_ms;  /* one IMDS request; 0: 2 s */
    const char *region;        /* NULL: asked from IMDS (placement/region) */
    const char *user_agent;    /* the User-Agent of IMDS requests; NULL: "flashgate" */
};

/* Counters of a credentials source. */
struct fg_creds_stats {
    uint64_t refreshed; /* credentials fetched from IMDS */
    uint64_t failed;    /* IMDS fetches that failed (each retried with a backoff) */
};

struct fg_creds;

/* Credentials from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 * AWS_SESSION_TOKEN, read once here) or, without them, from IMDSv2 at
 * cfg->imds_endpoint, refreshed before they expire; a failed fetch is retried with a
 * backoff while the old credentials stay in use until they expire. The region is
 * cfg->region, else IMDS's. ready(arg) is called whenever credentials or the region
 * arrive or change later (never inside this call: what is known at once, environment
 * credentials and a configured region, is there when it returns). NULL with a message in
 * err. */
struct fg_creds *fg_creds_new(struct event_base *base, struct evdns_base *dns,
                              const struct fg_creds_config *cfg, void (*ready)(void *), void *arg,
                              char *err, size_t errlen);
/* The current credentials (pointing into the object, valid until the next loop turn),
 * false while none are usable (not fetched yet, or expired and not refreshed). */
bool fg_creds_get(struct fg_creds *c, struct fg_sigv4_credentials *out);
/* The region, NULL while unknown. */
const char *fg_creds_region(const struct fg_creds *c);
/* "env" or "imds". */
const char *fg_creds_source(const struct fg_creds *c);
void fg_creds_get_stats(const struct fg_creds *c, struct fg_creds_stats *st);
/* Stop fetching, wipe the secrets and free. NULL is a no-op. */
void fg_creds_free(struct fg_creds *c);

/* ---- regions and endpoints (region.c) -------------------------------------------------- */

/* A region name as AWS writes them: 1..FG_SIGV4_NAME_MAX of [a-z0-9-] ("eu-west-1"). */
bool fg_aws_region_valid(const char *s, size_t len);
/* The region a regional endpoint's URL names: "https://sqs.eu-west-1.amazonaws.com/1/q"
 * with service "sqs" gives "eu-west-1" (any domain after the region: amazonaws.com,
 * amazonaws.com.cn, a VPC endpoint's). False when the host is not
 * <service>.<region>.<domain> or out is too small. */
bool fg_aws_region_from_url(const char *url, const char *service, char *out, size_t outlen);
/* The default https endpoint of service in region into out ("https://sqs.eu-west-1.
 * amazonaws.com"; the China regions, cn-*, end in amazonaws.com.cn). False when region
 * is not valid or out is too small. */
bool fg_aws_endpoint(const char *service, const char *region, char *out, size_t outlen);
/* "2025-01-02T03:04:05Z" (fractions allowed, "+00:00" too) to Unix seconds, as IMDS and
 * STS write expirations. */
bool fg_aws_parse_iso8601(const char *s, size_t len, int64_t *out);

#endif /* FG_AWS_H */
