/*
 * policy.c — whether a response is worth compressing: the rules of RFC 9110 and 9111 that
 * forbid it, a media-type matcher and the default list of compressible types.
 */
#include "compress/compress.h"
#include "compress/internal.h"

#include <string.h>

/* Already-compressed formats (images, video, woff2, archives) are absent on purpose:
 * compressing them again costs CPU and gains nothing or less than nothing. */
const char *const fg_compress_default_types[] = {
    "text/*",
    "application/json",
    "application/*+json", /* manifest+json, ld+json, problem+json, geo+json... */
    "application/xml",
    "application/*+xml", /* rss+xml, atom+xml, xhtml+xml... */
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "application/wasm",
    "image/svg+xml",
    "image/x-icon",
    "image/vnd.microsoft.icon",
    "image/bmp",
    "font/ttf",
    "font/otf",
    "application/vnd.ms-fontobject",
    "application/x-font-ttf",
    NULL,
};

const char *fg_compress_reason_name(enum fg_compress_reason r)
{
    static const char *const names[FG_COMPRESS_REASON__COUNT] = {
        [FG_COMPRESS_YES] = "yes",
        [FG_COMPRESS_NO_ACCEPT] = "no_accept",
        [FG_COMPRESS_NO_HEAD] = "head",
        [FG_COMPRESS_NO_STATUS] = "status",
        [FG_COMPRESS_NO_PARTIAL] = "partial",
        [FG_COMPRESS_NO_ENCODED] = "encoded",
        [FG_COMPRESS_NO_TRANSFORM] = "no_transform",
        [FG_COMPRESS_NO_TYPE] = "type",
        [FG_COMPRESS_NO_SMALL] = "small",
    };
    if ((unsigned)r >= FG_COMPRESS_REASON__COUNT)
        return "unknown";
    return names[r];
}

static bool all_tchar(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!fg_compress_is_tchar(s[i]))
            return false;
    return len > 0;
}

static unsigned char lower(char c)
{
    unsigned char u = (unsigned char)c;
    return u >= 'A' && u <= 'Z' ? (unsigned char)(u | 0x20) : u;
}

static bool slice_ieq(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++)
        if (lower(a[i]) != lower(b[i]))
            return false;
    return true;
}

/* A media type as two slices; false unless it is token "/" token. */
struct media_type {
    const char *type, *sub;
    size_t type_len, sub_len;
};

static bool split_media_type(const char *s, size_t len, struct media_type *mt)
{
    size_t b = 0;
    while (b < len && fg_compress_is_ows(s[b]))
        b++;
    size_t e = b;
    while (e < len && s[e] != ';')
        e++;
    while (e > b && fg_compress_is_ows(s[e - 1]))
        e--;
    if (e == b)
        return false;
    const char *slash = memchr(s + b, '/', e - b);
    if (slash == NULL)
        return false;
    mt->type = s + b;
    mt->type_len = (size_t)(slash - mt->type);
    mt->sub = slash + 1;
    mt->sub_len = (size_t)(s + e - mt->sub);
    return all_tchar(mt->type, mt->type_len) && all_tchar(mt->sub, mt->sub_len);
}

/* pattern subtype "*", "*+suffix" or a literal, against a subtype */
static bool sub_matches(const char *pat, size_t plen, const char *sub, size_t slen)
{
    if (plen == 1 && pat[0] == '*')
        return true;
    if (plen > 1 && pat[0] == '*' && pat[1] == '+') {
        size_t suffix = plen - 1; /* "+json" */
        return slen > suffix && slice_ieq(sub + slen - suffix, suffix, pat + 1, suffix);
    }
    return slice_ieq(pat, plen, sub, slen);
}

bool fg_compress_type_match(const char *pattern, const char *value, size_t len)
{
    struct media_type p, v;
    if (!split_media_type(pattern, strlen(pattern), &p) || !split_media_type(value, len, &v))
        return false;
    bool any_type = p.type_len == 1 && p.type[0] == '*';
    return (any_type || slice_ieq(p.type, p.type_len, v.type, v.type_len)) &&
           sub_matches(p.sub, p.sub_len, v.sub, v.sub_len);
}

bool fg_compress_type_listed(const char *const *patterns, const char *value, size_t len)
{
    for (; *patterns != NULL; patterns++)
        if (fg_compress_type_match(*patterns, value, len))
            return true;
    return false;
}

bool fg_compress_no_transform(const struct fg_http_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fg_http_name_eq(h[i].name, h[i].name_len, "cache-control") &&
            fg_http_list_has_token(h[i].value, h[i].value_len, "no-transform"))
            return true;
    return false;
}

/* Does any Content-Encoding field name a coding other than identity? An empty value
 * names none. */
static bool already_encoded(const struct fg_http_header *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!fg_http_name_eq(h[i].name, h[i].name_len, "content-encoding"))
            continue;
        const char *v = h[i].value;
        size_t len = h[i].value_len, j = 0;
        while (j < len) {
            while (j < len && (fg_compress_is_ows(v[j]) || v[j] == ','))
                j++;
            size_t s = j;
            while (j < len && v[j] != ',')
                j++;
            size_t e = j;
            while (e > s && fg_compress_is_ows(v[e - 1]))
                e--;
            if (e > s && !fg_http_name_eq(v + s, e - s, "identity"))
                return true;
        }
    }
    return false;
}

static bool status_has_no_body(int status)
{
    return (status >= 100 && status < 200) || status == 204 || status == 304;
}

enum fg_compress_reason fg_compress_check(const struct fg_compress_policy *policy,
                                          enum fg_http_method method, int status,
                                          const struct fg_http_header *h, size_t n,
                                          uint64_t body_length)
{
    const char *const *types = policy && policy->types ? policy->types : fg_compress_default_types;
    uint64_t min_length = policy ? policy->min_length : FG_COMPRESS_MIN_LENGTH_DEFAULT;
    if (method == FG_HTTP_HEAD)
        return FG_COMPRESS_NO_HEAD;
    if (status_has_no_body(status))
        return FG_COMPRESS_NO_STATUS;
    if (status == 206 || fg_http_find_header(h, n, "content-range") != NULL)
        return FG_COMPRESS_NO_PARTIAL;
    if (already_encoded(h, n))
        return FG_COMPRESS_NO_ENCODED;
    if (fg_compress_no_transform(h, n))
        return FG_COMPRESS_NO_TRANSFORM;
    const struct fg_http_header *ct = fg_http_find_header(h, n, "content-type");
    if (ct == NULL || !fg_compress_type_listed(types, ct->value, ct->value_len))
        return FG_COMPRESS_NO_TYPE;
    if (body_length != FG_COMPRESS_LENGTH_UNKNOWN && body_length < min_length)
        return FG_COMPRESS_NO_SMALL;
    return FG_COMPRESS_YES;
}

enum fg_compress_reason fg_compress_check_response(const struct fg_compress_policy *policy,
                                                   enum fg_http_method method,
                                                   const struct fg_http_response *resp)
{
    uint64_t len = FG_COMPRESS_LENGTH_UNKNOWN;
    if (resp->body == FG_HTTP_BODY_LENGTH)
        len = resp->content_length;
    else if (resp->body == FG_HTTP_BODY_NONE)
        len = 0;
    return fg_compress_check(policy, method, resp->status, resp->headers, resp->n_headers, len);
}
