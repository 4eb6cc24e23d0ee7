/*
 * path.c — normalising a request path for route matching (RFC 3986 §6.2.2, §5.2.4), so
 * that "/a/../admin", "/%61dmin" and "//admin" all match a route for "/admin".
 * Percent-encoded unreserved characters are decoded; other escapes ('?', '%', ' ')
 * stay encoded, upper-cased. An encoded '/' is refused: it would be a segment boundary to
 * some origins and not to others, so a route could be dodged with it either way.
 */
#include "http/http.h"

#include <string.h>

#include "http/http_internal.h"

bool fg_http_normalize_path(const char *path, size_t len, char *out, size_t *out_len)
{
    size_t cap = *out_len;
    size_t o = 0;
    size_t seg_start = 0; /* in out: where the current segment's text begins */
    if (len == 0 || path[0] != '/' || cap < 1)
        return false;
    out[o++] = '/';
    seg_start = o;
    size_t i = 1;
    for (;;) {
        /* read one segment (decoded) into out[seg_start..o) */
        while (i < len && path[i] != '/') {
            unsigned char ch = (unsigned char)path[i];
            if (ch == '%') {
                if (i + 2 >= len)
                    return false;
                int hi = fg_http_hexval((unsigned char)path[i + 1]);
                int lo = fg_http_hexval((unsigned char)path[i + 2]);
                if (hi < 0 || lo < 0)
                    return false;
                unsigned char v = (unsigned char)(hi * 16 + lo);
                if (v < 0x20 || v == 0x7f || v == '/')
                    return false; /* NUL, CTL or a segment boundary smuggled in an escape */
                if (fg_http_is(v, FG_C_UNRESERVED)) {
                    if (o + 1 > cap)
                        return false;
                    out[o++] = (char)v;
                } else {
                    static const char hex[] = "0123456789ABCDEF";
                    if (o + 3 > cap)
                        return false;
                    out[o++] = '%';
                    out[o++] = hex[v >> 4];
                    out[o++] = hex[v & 15];
                }
                i += 3;
                continue;
            }
            if (ch < 0x21 || ch == 0x7f)
                return false;
            if (o + 1 > cap)
                return false;
            out[o++] = (char)ch;
            i++;
        }
        size_t seg_len = o - seg_start;
        bool last = i >= len;
        if (seg_len == 1 && out[seg_start] == '.') {
            o = seg_start; /* "." : drop */
        } else if (seg_len == 2 && out[seg_start] == '.' && out[seg_start + 1] == '.') {
            /* "..": drop it and the previous segment; above the root is an error */
            if (seg_start == 1)
                return false;
            size_t p = seg_start - 1; /* the '/' before ".." */
            while (p > 0 && out[p - 1] != '/')
                p--;
            o = p;
        } else if (seg_len == 0) {
            /* empty segment ("//"): collapse; o stays */
        } else if (!last) {
            if (o + 1 > cap)
                return false;
            out[o++] = '/';
        }
        if (last)
            break;
        i++; /* skip '/' */
        seg_start = o;
        if (o == 0 || out[o - 1] != '/') {
            if (o + 1 > cap)
                return false;
            out[o++] = '/';
            seg_start = o;
        }
    }
    if (o == 0)
        out[o++] = '/';
    *out_len = o;
    return true;
}
