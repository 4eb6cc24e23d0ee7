/*
 * headers.c — the field edits an encoded response needs: Accept-Encoding in Vary, so caches
 * keep the variants apart, and a weak ETag, so a validator never claims the encoded bytes
 * are the identity ones.
 */
#include "compress/compress.h"
#include "compress/internal.h"

#include <string.h>

static const char VARY_AE[] = "Accept-Encoding";
#define VARY_AE_LEN (sizeof(VARY_AE) - 1)

/* Append src[0..len) at *pos; false when it does not fit. */
static bool put(char *out, size_t cap, size_t *pos, const char *src, size_t len)
{
    if (len > cap - *pos)
        return false;
    memcpy(out + *pos, src, len);
    *pos += len;
    return true;
}

bool fg_compress_vary_merge(const char *vary, size_t len, char *out, size_t cap, size_t *out_len)
{
    if (vary == NULL)
        len = 0;
    size_t b = 0, e = len;
    while (b < e && (fg_compress_is_ows(vary[b]) || vary[b] == ','))
        b++;
    while (e > b && (fg_compress_is_ows(vary[e - 1]) || vary[e - 1] == ','))
        e--;
    size_t pos = 0;
    bool ok;
    if (e > b && fg_http_list_has_token(vary + b, e - b, "*"))
        ok = put(out, cap, &pos, "*", 1);
    else if (e > b && fg_http_list_has_token(vary + b, e - b, "accept-encoding"))
        ok = put(out, cap, &pos, vary + b, e - b);
    else if (e > b)
        ok = put(out, cap, &pos, vary + b, e - b) && put(out, cap, &pos, ", ", 2) &&
             put(out, cap, &pos, VARY_AE, VARY_AE_LEN);
    else
        ok = put(out, cap, &pos, VARY_AE, VARY_AE_LEN);
    if (ok)
        *out_len = pos;
    return ok;
}

/* etagc = %x21 / %x23-7E / obs-text (RFC 9110 §8.8.3) */
static bool is_etagc(char ch)
{
    unsigned char c = (unsigned char)ch;
    return c == 0x21 || (c >= 0x23 && c != 0x7f);
}

/* opaque-tag = DQUOTE *etagc DQUOTE */
static bool is_opaque_tag(const char *s, size_t len)
{
    if (len < 2 || s[0] != '"' || s[len - 1] != '"')
        return false;
    for (size_t i = 1; i + 1 < len; i++)
        if (!is_etagc(s[i]))
            return false;
    return true;
}

bool fg_compress_etag_weaken(const char *etag, size_t len, char *out, size_t cap, size_t *out_len)
{
    if (etag == NULL || len == 0) {
        *out_len = 0;
        return true;
    }
    size_t b = 0, e = len;
    while (b < e && fg_compress_is_ows(etag[b]))
        b++;
    while (e > b && fg_compress_is_ows(etag[e - 1]))
        e--;
    size_t pos = 0;
    bool ok = true;
    if (is_opaque_tag(etag + b, e - b))
        ok = put(out, cap, &pos, "W/", 2); /* strong: make it weak */
    ok = ok && put(out, cap, &pos, etag + b, e - b);
    if (ok)
        *out_len = pos;
    return ok;
}
