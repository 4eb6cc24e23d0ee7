/*
 * negotiate.c — Accept-Encoding (RFC 9110 §12.5.3): parse weighted coding lists and choose
 * the coding to send. Accept-Encoding is a hint, not framing, so the parser is tolerant
 * where tolerance is harmless (OWS, case) and skips a malformed element instead of
 * refusing the request.
 */
#include "compress/compress.h"
#include "compress/internal.h"

#include <string.h>

const enum fg_compress_encoding fg_compress_default_order[FG_COMPRESS_DEFAULT_ORDER_LEN] = {
    FG_COMPRESS_BR, FG_COMPRESS_GZIP};

const char *fg_compress_encoding_name(enum fg_compress_encoding e)
{
    switch (e) {
    case FG_COMPRESS_IDENTITY:
        return "identity";
    case FG_COMPRESS_GZIP:
        return "gzip";
    case FG_COMPRESS_BR:
        return "br";
    default:
        return "unknown";
    }
}

static size_t skip_ows(const char *s, size_t len, size_t i)
{
    while (i < len && fg_compress_is_ows(s[i]))
        i++;
    return i;
}

static size_t skip_token(const char *s, size_t len, size_t i)
{
    while (i < len && fg_compress_is_tchar(s[i]))
        i++;
    return i;
}

/* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), in thousandths; -1 if bad. */
static int parse_qvalue(const char *s, size_t len)
{
    if (len == 0 || len > 5 || (s[0] != '0' && s[0] != '1'))
        return -1;
    if (len > 1 && s[1] != '.')
        return -1;
    int q = (s[0] - '0') * 1000;
    int scale = 100;
    for (size_t i = 2; i < len; i++, scale /= 10) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        q += (s[i] - '0') * scale;
    }
    return q > FG_COMPRESS_Q_MAX ? -1 : q;
}

/* quoted-string starting at s[i] == '"'; returns the index after the closing quote, or
 * 0 if it is not closed (0 can never be a valid end). */
static size_t skip_quoted(const char *s, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return 0;
}

/*
 * One parameter after a ';': OWS name OWS "=" OWS value. Sets *q for "q" (a second q is
 * malformed). Returns the index after it, or 0 if malformed.
 */
static size_t parse_param(const char *s, size_t len, size_t i, int *q)
{
    i = skip_ows(s, len, i);
    size_t ns = i;
    i = skip_token(s, len, i);
    size_t ne = i;
    i = skip_ows(s, len, i);
    if (ne == ns || i >= len || s[i] != '=')
        return 0;
    i = skip_ows(s, len, i + 1);
    bool is_q = ne - ns == 1 && (s[ns] == 'q' || s[ns] == 'Q');
    if (i < len && s[i] == '"') {
        /* a quoted weight is not a qvalue; other quoted values are skipped */
        return is_q ? 0 : skip_quoted(s, len, i);
    }
    size_t vs = i;
    i = skip_token(s, len, i);
    if (i == vs)
        return 0;
    if (is_q) {
        if (*q != FG_COMPRESS_Q_UNSET)
            return 0;
        *q = parse_qvalue(s + vs, i - vs);
        if (*q < 0)
            return 0;
    }
    return i;
}

static void set_weight(int16_t *slot, int q)
{
    if (*slot == FG_COMPRESS_Q_UNSET || q < *slot)
        *slot = (int16_t)q;
}

static void record(struct fg_compress_accept *a, const char *coding, size_t len, int q)
{
    if (fg_http_name_eq(coding, len, "gzip") || fg_http_name_eq(coding, len, "x-gzip"))
        set_weight(&a->q[FG_COMPRESS_GZIP], q);
    else if (fg_http_name_eq(coding, len, "br"))
        set_weight(&a->q[FG_COMPRESS_BR], q);
    else if (fg_http_name_eq(coding, len, "identity"))
        set_weight(&a->q[FG_COMPRESS_IDENTITY], q);
    else if (len == 1 && coding[0] == '*')
        set_weight(&a->q_star, q);
}

/* One list element from s[i]; returns the index of the ',' that ends it, or len. */
static size_t parse_element(struct fg_compress_accept *a, const char *s, size_t len, size_t i)
{
    i = skip_ows(s, len, i);
    size_t cs = i;
    i = skip_token(s, len, i);
    size_t ce = i;
    i = skip_ows(s, len, i);
    if (ce == cs && (i >= len || s[i] == ','))
        return i; /* an empty element: allowed, means nothing */
    int q = FG_COMPRESS_Q_UNSET;
    bool ok = ce > cs;
    while (ok && i < len && s[i] == ';') {
        size_t next = parse_param(s, len, i + 1, &q);
        ok = next != 0;
        if (ok)
            i = skip_ows(s, len, next);
    }
    if (ok && (i >= len || s[i] == ',')) {
        record(a, s + cs, ce - cs, q == FG_COMPRESS_Q_UNSET ? FG_COMPRESS_Q_MAX : q);
        return i;
    }
    a->malformed++;
    const char *comma = memchr(s + i, ',', len - i);
    return comma ? (size_t)(comma - s) : len;
}

void fg_compress_accept_init(struct fg_compress_accept *a)
{
    memset(a, 0, sizeof(*a));
    for (int e = 0; e < FG_COMPRESS_ENCODING__COUNT; e++)
        a->q[e] = FG_COMPRESS_Q_UNSET;
    a->q_star = FG_COMPRESS_Q_UNSET;
}

void fg_compress_accept_add(struct fg_compress_accept *a, const char *value, size_t len)
{
    a->present = true;
    size_t i = 0;
    while (i < len) {
        i = parse_element(a, value, len, i);
        if (i < len)
            i++; /* the ',' */
    }
}

void fg_compress_accept_from_headers(struct fg_compress_accept *a, const struct fg_http_header *h,
                                     size_t n)
{
    fg_compress_accept_init(a);
    for (size_t i = 0; i < n; i++)
        if (fg_http_name_eq(h[i].name, h[i].name_len, "accept-encoding"))
            fg_compress_accept_add(a, h[i].value, h[i].value_len);
}

/* The weight the client gives a coding: its own entry, else "*", else unset. */
static int weight_of(const struct fg_compress_accept *a, enum fg_compress_encoding e)
{
    return a->q[e] != FG_COMPRESS_Q_UNSET ? a->q[e] : a->q_star;
}

struct fg_compress_choice fg_compress_choose(const struct fg_compress_accept *a,
                                             const enum fg_compress_encoding *enabled, size_t n)
{
    struct fg_compress_choice c = {FG_COMPRESS_IDENTITY, true};
    if (!a->present)
        return c;
    int best_q = 0;
    for (size_t i = 0; i < n; i++) {
        enum fg_compress_encoding e = enabled[i];
        if (e <= FG_COMPRESS_IDENTITY || e >= FG_COMPRESS_ENCODING__COUNT)
            continue;
        int q = weight_of(a, e);
        if (q > best_q) {
            best_q = q;
            c.encoding = e;
        }
    }
    /* Identity is acceptable by default (§12.5.3), unless excluded; it competes only
     * when the client gave it a weight. */
    int id_q = weight_of(a, FG_COMPRESS_IDENTITY);
    c.identity_ok = id_q != 0;
    if (c.encoding != FG_COMPRESS_IDENTITY && id_q > best_q)
        c.encoding = FG_COMPRESS_IDENTITY;
    return c;
}

struct fg_compress_choice fg_compress_negotiate(const struct fg_http_header *h, size_t n,
                                                const enum fg_compress_encoding *enabled,
                                                size_t n_enabled)
{
    struct fg_compress_accept a;
    fg_compress_accept_from_headers(&a, h, n);
    return fg_compress_choose(&a, enabled, n_enabled);
}
