/*
 * sigv4.c — AWS Signature Version 4 (HMAC-SHA256): the agent's SQS requests, ElastiCache
 * IAM tokens (presigned).
 *
 * The steps follow AWS's description of the algorithm: canonical request, string to sign,
 * derived signing key, signature, then the Authorization header or the presigned query.
 * Every stage is kept in the result so the unit test can compare each one with AWS's
 * published vectors: a wrong canonical request is far easier to debug than a wrong
 * signature. Crypto is OpenSSL 3's EVP API (EVP_Q_digest, EVP_Q_mac).
 */
#include "aws/aws.h"
#include "core/core.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ALGORITHM "AWS4-HMAC-SHA256"

/* 9999-12-31T23:59:59Z: X-Amz-Date has four year digits. */
#define MAX_SIGNING_TIME INT64_C(253402300799)

/* ---- a growable string ------------------------------------------------------------- */

/* Appends never fail visibly: the first allocation failure sets oom, later appends do
 * nothing, and the caller checks once at the end. That keeps the builders linear. */
struct sb {
    char *p;
    size_t len, cap;
    bool oom;
};

static bool sb_reserve(struct sb *b, size_t more)
{
    if (b->oom)
        return false;
    if (b->cap > b->len && more < b->cap - b->len)
        return true; /* room for more bytes and the NUL */
    if (more > SIZE_MAX / 2 - b->len) {
        b->oom = true;
        return false;
    }
    size_t cap = b->cap ? b->cap : 256;
    while (cap <= b->len + more)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void sb_put(struct sb *b, const void *s, size_t n)
{
    if (n == 0 || !sb_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(struct sb *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void sb_putc(struct sb *b, char c)
{
    sb_put(b, &c, 1);
}

static void sb_free(struct sb *b)
{
    free(b->p);
    *b = (struct sb){0};
}

/* The finished string (the builder is left empty), or NULL if an append failed. */
static char *sb_take(struct sb *b)
{
    if (!b->oom && b->p == NULL)
        sb_reserve(b, 0);
    if (b->oom) {
        sb_free(b);
        return NULL;
    }
    b->p[b->len] = '\0';
    char *s = b->p;
    *b = (struct sb){0};
    return s;
}

/* ---- characters ---------------------------------------------------------------------- */

static bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

/* RFC 9110 tchar: what a header name or a method may be made of. */
static bool is_tchar(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
}

static bool token_ok(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

/* A value that goes into a header or the credential scope: printable, no space. */
static bool printable_ok(const char *s, size_t max, const char *forbidden)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == 0x7f || strchr(forbidden, c) != NULL)
            return false;
    }
    return true;
}

/* Region and service names: letters, digits, '-', '_', '.'; never the scope's '/'. */
static bool name_ok(const char *s)
{
    if (s == NULL)
        return false;
    size_t n = strlen(s);
    if (n == 0 || n > FG_SIGV4_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_unreserved((unsigned char)s[i]) || s[i] == '~')
            return false;
    return true;
}

/* ---- URI encoding ------------------------------------------------------------------ */

enum enc_mode {
    ENC_PLAIN,       /* every byte as it is: '%' becomes "%25" */
    ENC_DECODE,      /* %XX is decoded first, so encoded and plain input sign the same */
    ENC_KEEP_ESCAPES /* a valid %XX is kept (hex uppercased), other bytes encoded */
};

static const char HEX_UP[] = "0123456789ABCDEF";

static void sb_encode(struct sb *b, const char *s, size_t n, bool keep_slash, enum enc_mode m)
{
    if (n > SIZE_MAX / 4) {
        b->oom = true;
        return;
    }
    if (!sb_reserve(b, n * 3))
        return; /* the worst case, so the loop below never reallocates */
    char *o = b->p + b->len;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%' && m != ENC_PLAIN && i + 2 < n && fg_hex_value(s[i + 1]) >= 0 &&
            fg_hex_value(s[i + 2]) >= 0) {
            unsigned char v = (unsigned char)(fg_hex_value(s[i + 1]) * 16 + fg_hex_value(s[i + 2]));
            i += 2;
            if (m == ENC_KEEP_ESCAPES) {
                *o++ = '%';
                *o++ = HEX_UP[v >> 4];
                *o++ = HEX_UP[v & 15];
                continue;
            }
            c = v;
        }
        if (is_unreserved(c) || (keep_slash && c == '/')) {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = HEX_UP[c >> 4];
            *o++ = HEX_UP[c & 15];
        }
    }
    b->len = (size_t)(o - b->p);
    b->p[b->len] = '\0';
}

size_t fg_sigv4_uri_encode(char *out, size_t size, const void *in, size_t len, bool keep_slash)
{
    const unsigned char *s = in;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char piece[3];
        size_t k = 0;
        if (is_unreserved(s[i]) || (keep_slash && s[i] == '/')) {
            piece[k++] = (char)s[i];
        } else {
            piece[k++] = '%';
            piece[k++] = HEX_UP[s[i] >> 4];
            piece[k++] = HEX_UP[s[i] & 15];
        }
        for (size_t j = 0; j < k; j++, n++)
            if (n + 1 < size)
                out[n] = piece[j];
    }
    if (size > 0)
        out[n < size ? n : size - 1] = '\0';
    return n;
}

/* ---- crypto ------------------------------------------------------------------------ */

static void hex_lower(const uint8_t *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static bool sha256(const void *data, size_t len, uint8_t out[32])
{
    size_t outlen = 0;
    if (data == NULL)
        data = "";
    return EVP_Q_digest(NULL, "SHA256", NULL, data, len, out, &outlen) == 1 && outlen == 32;
}

static bool hmac_sha256(const void *key, size_t klen, const void *data, size_t dlen,
                        uint8_t out[32])
{
    size_t outlen = 0;
    return EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, klen, data, dlen, out, 32, &outlen) !=
               NULL &&
           outlen == 32;
}

bool fg_sigv4_sha256_hex(const void *data, size_t len, char out[FG_SIGV4_HEX_LEN + 1])
{
    uint8_t md[32];
    if (!sha256(data, len, md)) {
        out[0] = '\0';
        return false;
    }
    hex_lower(md, sizeof md, out);
    return true;
}

/* ---- time and the signing key ------------------------------------------------------ */

/* "20150830T123600Z" into out, false if the time has no four-digit UTC year. */
static bool amz_date(int64_t t, char out[FG_SIGV4_DATE_LEN + 1])
{
    if (t < 0 || t > MAX_SIGNING_TIME)
        return false;
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm) == NULL)
        return false;
    return strftime(out, FG_SIGV4_DATE_LEN + 1, "%Y%m%dT%H%M%SZ", &tm) == FG_SIGV4_DATE_LEN;
}

void fg_sigv4_key_clear(struct fg_sigv4_key *key)
{
    OPENSSL_cleanse(key, sizeof *key);
}

bool fg_sigv4_key_update(struct fg_sigv4_key *key, const char *secret, int64_t time,
                         const char *region, const char *service)
{
    char date[FG_SIGV4_DATE_LEN + 1];
    uint8_t secret_hash[32];
    if (secret == NULL || secret[0] == '\0' || !name_ok(region) || !name_ok(service) ||
        !amz_date(time, date) || !sha256(secret, strlen(secret), secret_hash)) {
        fg_sigv4_key_clear(key);
        return false;
    }
    date[8] = '\0'; /* the day: YYYYMMDD */
    if (key->valid && strcmp(key->date, date) == 0 && strcmp(key->region, region) == 0 &&
        strcmp(key->service, service) == 0 &&
        CRYPTO_memcmp(key->secret_hash, secret_hash, sizeof secret_hash) == 0)
        return true;

    /* kDate = HMAC("AWS4" + secret, date), then region, service and "aws4_request". */
    size_t slen = strlen(secret);
    char *k0 = malloc(slen + 5);
    if (k0 == NULL) {
        fg_sigv4_key_clear(key);
        return false;
    }
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, secret, slen + 1);
    uint8_t k1[32], k2[32], k3[32];
    bool ok = hmac_sha256(k0, slen + 4, date, 8, k1) &&
              hmac_sha256(k1, 32, region, strlen(region), k2) &&
              hmac_sha256(k2, 32, service, strlen(service), k3) &&
              hmac_sha256(k3, 32, "aws4_request", 12, key->k);
    OPENSSL_cleanse(k0, slen + 4);
    free(k0);
    OPENSSL_cleanse(k1, sizeof k1);
    OPENSSL_cleanse(k2, sizeof k2);
    OPENSSL_cleanse(k3, sizeof k3);
    if (!ok) {
        fg_sigv4_key_clear(key);
        return false;
    }
    memcpy(key->secret_hash, secret_hash, sizeof secret_hash);
    memcpy(key->date, date, sizeof key->date);
    snprintf(key->region, sizeof key->region, "%s", region);
    snprintf(key->service, sizeof key->service, "%s", service);
    key->valid = true;
    return true;
}

/* ---- canonical URI ----------------------------------------------------------------- */

static void put_canonical_uri(struct sb *b, const char *p, size_t n, bool keep_dots, bool single)
{
    enum enc_mode m = single ? ENC_KEEP_ESCAPES : ENC_PLAIN;
    if (n == 0) {
        sb_putc(b, '/');
        return;
    }
    if (keep_dots) {
        sb_encode(b, p, n, true, m);
        return;
    }
    /* Segment by segment: '.' and empty ones vanish, '..' drops the last one kept. The
     * output so far is "/seg/seg", and an encoded segment never holds a '/', so dropping
     * a segment is cutting back to the last '/'. */
    size_t base = b->len;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && p[j] != '/')
            j++;
        size_t len = j - i;
        if (len == 2 && p[i] == '.' && p[i + 1] == '.') {
            if (b->len > base) {
                while (b->p[--b->len] != '/')
                    ; /* stops at the segment's '/', at base at the latest */
                b->p[b->len] = '\0';
            }
        } else if (len > 0 && !(len == 1 && p[i] == '.')) {
            sb_putc(b, '/');
            sb_encode(b, p + i, len, false, m);
        }
        i = j + 1;
    }
    if (b->oom || b->len == base || p[n - 1] == '/')
        sb_putc(b, '/');
}

char *fg_sigv4_canonical_uri(const char *path, size_t len, bool keep_dot_segments,
                             bool single_encode)
{
    struct sb b = {0};
    put_canonical_uri(&b, path, len, keep_dot_segments, single_encode);
    return sb_take(&b);
}

/* ---- canonical query --------------------------------------------------------------- */

/* Encoded pairs live in one buffer; offsets while it grows, pointers once it is done. */
struct qpair {
    size_t noff, nlen, voff, vlen;
    const char *n, *v;
};

struct qlist {
    struct sb enc;
    struct qpair *v;
    size_t n, cap;
    bool oom;
};

static void qlist_add(struct qlist *q, const char *name, size_t nlen, const char *val, size_t vlen,
                      enum enc_mode m)
{
    if (q->oom)
        return;
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 16;
        struct qpair *v = realloc(q->v, cap * sizeof *v);
        if (v == NULL) {
            q->oom = true;
            return;
        }
        q->v = v;
        q->cap = cap;
    }
    struct qpair *e = &q->v[q->n++];
    e->noff = q->enc.len;
    sb_encode(&q->enc, name, nlen, false, m);
    e->nlen = q->enc.len - e->noff;
    e->voff = q->enc.len;
    sb_encode(&q->enc, val, vlen, false, m);
    e->vlen = q->enc.len - e->voff;
}

/* Split "a=1&b&c=2" into pairs, decoding and re-encoding each part. */
static void qlist_parse(struct qlist *q, const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && s[j] != '&')
            j++;
        if (j > i) {
            const char *eq = memchr(s + i, '=', j - i);
            size_t nlen = eq ? (size_t)(eq - (s + i)) : j - i;
            const char *v = eq ? eq + 1 : s + j;
            qlist_add(q, s + i, nlen, v, (size_t)(s + j - v), ENC_DECODE);
        }
        i = j + 1;
    }
}

static int span_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c != 0)
        return c;
    return (alen > blen) - (alen < blen);
}

/* By name, then by value: "Param" sorts before "Param-3" although '=' > '-'. */
static int qpair_cmp(const void *x, const void *y)
{
    const struct qpair *a = x, *b = y;
    int c = span_cmp(a->n, a->nlen, b->n, b->nlen);
    return c != 0 ? c : span_cmp(a->v, a->vlen, b->v, b->vlen);
}

/* Sort q and append "n=v&n=v" to out; false when q ran out of memory. */
static bool qlist_put(struct qlist *q, struct sb *out)
{
    if (q->oom || q->enc.oom)
        return false;
    for (size_t i = 0; i < q->n; i++) {
        q->v[i].n = q->enc.p + q->v[i].noff;
        q->v[i].v = q->enc.p + q->v[i].voff;
    }
    if (q->n > 1)
        qsort(q->v, q->n, sizeof *q->v, qpair_cmp);
    for (size_t i = 0; i < q->n; i++) {
        if (i > 0)
            sb_putc(out, '&');
        sb_put(out, q->v[i].n, q->v[i].nlen);
        sb_putc(out, '=');
        sb_put(out, q->v[i].v, q->v[i].vlen);
    }
    return true;
}

static void qlist_free(struct qlist *q)
{
    sb_free(&q->enc);
    free(q->v);
    *q = (struct qlist){0};
}

char *fg_sigv4_canonical_query(const char *query, size_t len)
{
    struct qlist q = {0};
    struct sb out = {0};
    qlist_parse(&q, query, len);
    if (!qlist_put(&q, &out))
        out.oom = true;
    qlist_free(&q);
    return sb_take(&out);
}

/* ---- canonical headers ------------------------------------------------------------- */

struct hent {
    const char *name; /* lowercased */
    size_t nlen;
    const char *value;
    size_t vlen;
    size_t order; /* position in the request: repeated names keep their order */
};

static int hent_cmp(const void *x, const void *y)
{
    const struct hent *a = x, *b = y;
    int c = span_cmp(a->name, a->nlen, b->name, b->nlen);
    if (c != 0)
        return c;
    return (a->order > b->order) - (a->order < b->order);
}

static bool span_is(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

/* Trim the value and collapse each inner run of whitespace (line folds too) to one space. */
static void sb_trimall(struct sb *b, const char *v, size_t n)
{
    bool gap = false, any = false;
    for (size_t i = 0; i < n; i++) {
        if (is_space(v[i])) {
            gap = any;
            continue;
        }
        if (gap)
            sb_putc(b, ' ');
        gap = false;
        any = true;
        sb_putc(b, v[i]);
    }
}

/* ---- signing ----------------------------------------------------------------------- */

void fg_sigv4_result_free(struct fg_sigv4_result *r)
{
    free(r->canonical_request);
    free(r->string_to_sign);
    free(r->signed_headers);
    free(r->authorization);
    free(r->presigned_query);
    if (r->priv_token != NULL) {
        OPENSSL_cleanse(r->priv_token, strlen(r->priv_token));
        free(r->priv_token);
    }
    *r = (struct fg_sigv4_result){0};
}

static const char *check_input(const struct fg_sigv4_request *req, const struct fg_sigv4_params *pr)
{
    const struct fg_sigv4_credentials *c = pr->creds;
    if (req->method == NULL || !token_ok(req->method, strlen(req->method)))
        return "method missing or not a token";
    if (c == NULL || c->access_key_id == NULL || c->secret_access_key == NULL)
        return "credentials missing";
    if (!printable_ok(c->access_key_id, 128, "/,;=\"\\"))
        return "access key id empty, too long or with '/', ',' or spaces";
    if (c->secret_access_key[0] == '\0')
        return "secret access key empty";
    if (c->session_token != NULL && c->session_token[0] != '\0' &&
        !printable_ok(c->session_token, SIZE_MAX, ""))
        return "session token with spaces or control characters";
    if (!name_ok(pr->region))
        return "region missing, too long or not [A-Za-z0-9._-]";
    if (!name_ok(pr->service))
        return "service missing, too long or not [A-Za-z0-9._-]";
    if (pr->time < 0 || pr->time > MAX_SIGNING_TIME)
        return "signing time outside 1970..9999";
    if (pr->presign_expires > FG_SIGV4_MAX_EXPIRES)
        return "presign_expires over 7 days";
    if (req->payload_hash != NULL && !printable_ok(req->payload_hash, FG_SIGV4_HEX_LEN, ""))
        return "payload_hash empty, too long or with spaces";
    if (req->payload == NULL && req->payload_len > 0)
        return "payload_len without payload";
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct fg_sigv4_header *h = &req->headers[i];
        if (h->name == NULL || !token_ok(h->name, h->name_len))
            return "header name empty or not a token";
        if (h->value == NULL && h->value_len > 0)
            return "header value_len without value";
    }
    return NULL;
}

/* The header entries to sign: the caller's (lowercased, minus the ones signing sets)
 * plus X-Amz-Date, the token and the body hash as the mode asks. names receives the
 * lowercased copies. Returns the count; sets *host when a Host header is present. */
static size_t collect_headers(const struct fg_sigv4_request *req, const struct fg_sigv4_params *pr,
                              const struct fg_sigv4_result *r, const char *token, struct hent *e,
                              char *names, bool *host)
{
    bool presign = pr->presign_expires > 0;
    size_t n = 0;
    *host = false;
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct fg_sigv4_header *h = &req->headers[i];
        for (size_t k = 0; k < h->name_len; k++)
            names[k] = lower(h->name[k]);
        const char *nm = names;
        names += h->name_len;
        size_t nl = h->name_len;
        if (span_is(nm, nl, "authorization"))
            continue;
        if (!presign && (span_is(nm, nl, "x-amz-date") || span_is(nm, nl, "x-amz-security-token") ||
                         (pr->sign_body && span_is(nm, nl, "x-amz-content-sha256"))))
            continue;
        if (span_is(nm, nl, "host"))
            *host = true;
        e[n++] = (struct hent){nm, nl, h->value ? h->value : "", h->value_len, i};
    }
    if (presign)
        return n;
    size_t order = req->n_headers;
    e[n++] = (struct hent){"x-amz-date", 10, r->amz_date, FG_SIGV4_DATE_LEN, order++};
    if (token != NULL && !pr->omit_session_token)
        e[n++] = (struct hent){"x-amz-security-token", 20, token, strlen(token), order++};
    if (pr->sign_body)
        e[n++] = (struct hent){"x-amz-content-sha256", 20, r->payload_hash, strlen(r->payload_hash),
                               order++};
    return n;
}

/* "name:v1,v2\n" per name into hdrs, "name;name" into signed_h. */
static void put_headers(struct hent *e, size_t n, struct sb *hdrs, struct sb *signed_h)
{
    qsort(e, n, sizeof *e, hent_cmp);
    for (size_t i = 0; i < n; i++) {
        bool same = i > 0 && span_cmp(e[i].name, e[i].nlen, e[i - 1].name, e[i - 1].nlen) == 0;
        if (same) {
            sb_putc(hdrs, ',');
        } else {
            if (i > 0) {
                sb_putc(hdrs, '\n');
                sb_putc(signed_h, ';');
            }
            sb_put(hdrs, e[i].name, e[i].nlen);
            sb_putc(hdrs, ':');
            sb_put(signed_h, e[i].name, e[i].nlen);
        }
        sb_trimall(hdrs, e[i].value, e[i].vlen);
    }
    if (n > 0)
        sb_putc(hdrs, '\n');
}

bool fg_sigv4_sign(const struct fg_sigv4_request *req, const struct fg_sigv4_params *pr,
                   struct fg_sigv4_result *r)
{
    *r = (struct fg_sigv4_result){0};
    const char *err = check_input(req, pr);
    if (err != NULL) {
        r->error = err;
        return false;
    }
    const struct fg_sigv4_credentials *c = pr->creds;
    const char *token =
        (c->session_token != NULL && c->session_token[0] != '\0') ? c->session_token : NULL;
    bool presign = pr->presign_expires > 0;
    struct fg_sigv4_key local = {0};
    struct fg_sigv4_key *key = pr->key != NULL ? pr->key : &local;
    struct hent *ents = NULL;
    char *names = NULL;
    struct sb hdrs = {0}, signed_h = {0}, cr = {0}, sts = {0}, scope = {0}, tmp = {0};
    struct sb line = {0};
    struct qlist q = {0};
    uint8_t md[32];

    amz_date(pr->time, r->amz_date);
    if (req->payload_hash != NULL)
        snprintf(r->payload_hash, sizeof r->payload_hash, "%s", req->payload_hash);
    else if (!fg_sigv4_sha256_hex(req->payload, req->payload_len, r->payload_hash))
        goto crypto_fail;
    if (!fg_sigv4_key_update(key, c->secret_access_key, pr->time, pr->region, pr->service))
        goto crypto_fail;

    /* Headers. */
    size_t name_bytes = 0;
    for (size_t i = 0; i < req->n_headers; i++)
        name_bytes += req->headers[i].name_len;
    ents = malloc((req->n_headers + 3) * sizeof *ents);
    names = malloc(name_bytes + 1);
    if (ents == NULL || names == NULL)
        goto oom;
    bool host;
    size_t n = collect_headers(req, pr, r, token, ents, names, &host);
    if (!host) {
        err = "no Host header: SigV4 signs it";
        goto fail;
    }
    put_headers(ents, n, &hdrs, &signed_h);
    r->signed_headers = sb_take(&signed_h);
    if (r->signed_headers == NULL)
        goto oom;

    /* The credential scope: 20150830/us-east-1/sqs/aws4_request. */
    sb_put(&scope, r->amz_date, 8);
    sb_putc(&scope, '/');
    sb_puts(&scope, pr->region);
    sb_putc(&scope, '/');
    sb_puts(&scope, pr->service);
    sb_puts(&scope, "/aws4_request");
    if (scope.oom)
        goto oom;

    /* Query: the request's own parameters, plus the X-Amz-* ones when presigning. */
    if (req->query != NULL)
        qlist_parse(&q, req->query, strlen(req->query));
    char expires[16];
    snprintf(expires, sizeof expires, "%u", (unsigned)pr->presign_expires);
    if (presign) {
        sb_puts(&tmp, c->access_key_id);
        sb_putc(&tmp, '/');
        sb_put(&tmp, scope.p, scope.len);
        if (tmp.oom)
            goto oom;
        qlist_add(&q, "X-Amz-Algorithm", 15, ALGORITHM, strlen(ALGORITHM), ENC_PLAIN);
        qlist_add(&q, "X-Amz-Credential", 16, tmp.p, tmp.len, ENC_PLAIN);
        qlist_add(&q, "X-Amz-Date", 10, r->amz_date, FG_SIGV4_DATE_LEN, ENC_PLAIN);
        qlist_add(&q, "X-Amz-Expires", 13, expires, strlen(expires), ENC_PLAIN);
        if (token != NULL && !pr->omit_session_token)
            qlist_add(&q, "X-Amz-Security-Token", 20, token, strlen(token), ENC_PLAIN);
        qlist_add(&q, "X-Amz-SignedHeaders", 19, r->signed_headers, strlen(r->signed_headers),
                  ENC_PLAIN);
    }

    /* Canonical request. */
    sb_puts(&cr, req->method);
    sb_putc(&cr, '\n');
    put_canonical_uri(&cr, req->path ? req->path : "", req->path ? strlen(req->path) : 0,
                      pr->keep_dot_segments, pr->single_encode);
    sb_putc(&cr, '\n');
    if (!qlist_put(&q, &cr))
        goto oom;
    sb_putc(&cr, '\n');
    sb_put(&cr, hdrs.p, hdrs.len);
    sb_putc(&cr, '\n');
    sb_puts(&cr, r->signed_headers);
    sb_putc(&cr, '\n');
    sb_puts(&cr, r->payload_hash);
    r->canonical_request = sb_take(&cr);
    if (r->canonical_request == NULL)
        goto oom;

    /* String to sign. */
    char cr_hex[FG_SIGV4_HEX_LEN + 1];
    if (!fg_sigv4_sha256_hex(r->canonical_request, strlen(r->canonical_request), cr_hex))
        goto crypto_fail;
    sb_puts(&sts, ALGORITHM "\n");
    sb_puts(&sts, r->amz_date);
    sb_putc(&sts, '\n');
    sb_put(&sts, scope.p, scope.len);
    sb_putc(&sts, '\n');
    sb_puts(&sts, cr_hex);
    r->string_to_sign = sb_take(&sts);
    if (r->string_to_sign == NULL)
        goto oom;

    /* Signature. */
    if (!hmac_sha256(key->k, sizeof key->k, r->string_to_sign, strlen(r->string_to_sign), md))
        goto crypto_fail;
    hex_lower(md, sizeof md, r->signature);

    if (presign) {
        /* AWS's order, as its signers emit it; the server sorts for itself. */
        struct sb *o = &line;
        sb_puts(o, "X-Amz-Algorithm=" ALGORITHM "&X-Amz-Credential=");
        sb_encode(o, tmp.p, tmp.len, false, ENC_PLAIN);
        sb_puts(o, "&X-Amz-Date=");
        sb_puts(o, r->amz_date);
        sb_puts(o, "&X-Amz-SignedHeaders=");
        sb_encode(o, r->signed_headers, strlen(r->signed_headers), false, ENC_PLAIN);
        sb_puts(o, "&X-Amz-Expires=");
        sb_puts(o, expires);
        if (token != NULL) {
            sb_puts(o, "&X-Amz-Security-Token=");
            sb_encode(o, token, strlen(token), false, ENC_PLAIN);
        }
        sb_puts(o, "&X-Amz-Signature=");
        sb_puts(o, r->signature);
        r->presigned_query = sb_take(o);
        if (r->presigned_query == NULL)
            goto oom;
    } else {
        struct sb *o = &line;
        sb_puts(o, ALGORITHM " Credential=");
        sb_puts(o, c->access_key_id);
        sb_putc(o, '/');
        sb_put(o, scope.p, scope.len);
        sb_puts(o, ", SignedHeaders=");
        sb_puts(o, r->signed_headers);
        sb_puts(o, ", Signature=");
        sb_puts(o, r->signature);
        r->authorization = sb_take(o);
        if (r->authorization == NULL)
            goto oom;
        if (token != NULL) {
            r->priv_token = strdup(token);
            if (r->priv_token == NULL)
                goto oom;
            r->add[r->n_add++] = (struct fg_sigv4_header){"X-Amz-Security-Token", 20, r->priv_token,
                                                          strlen(r->priv_token)};
        }
        r->add[r->n_add++] =
            (struct fg_sigv4_header){"X-Amz-Date", 10, r->amz_date, FG_SIGV4_DATE_LEN};
        if (pr->sign_body)
            r->add[r->n_add++] = (struct fg_sigv4_header){"x-amz-content-sha256", 20,
                                                          r->payload_hash, strlen(r->payload_hash)};
        r->add[r->n_add++] = (struct fg_sigv4_header){"Authorization", 13, r->authorization,
                                                      strlen(r->authorization)};
    }
    err = NULL;
    goto done;

oom:
    err = "out of memory";
    goto fail;
crypto_fail:
    err = "OpenSSL SHA-256 or HMAC failed";
fail:
    fg_sigv4_result_free(r);
    r->error = err;
done:
    OPENSSL_cleanse(md, sizeof md);
    fg_sigv4_key_clear(&local);
    free(ents);
    free(names);
    qlist_free(&q);
    sb_free(&hdrs);
    sb_free(&signed_h);
    sb_free(&cr);
    sb_free(&sts);
    sb_free(&scope);
    sb_free(&tmp);
    sb_free(&line);
    return err == NULL;
}
