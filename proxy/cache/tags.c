/*
 * tags.c — cache tags: the labels an app puts on its answers (Cache-Tag, Surrogate-Key)
 * so that one purge removes every page that shows a thing. Parsing and normalising
 * here; the objects keep them (store.c: fg_cache_fill_tags, fg_cache_purge_tag).
 */
#include "cache/internal.h"

#include <stdlib.h>
#include <string.h>

#include "core/core.h"

bool fg_cache_tag_valid(const char *tag, size_t len)
{
    if (len == 0 || len > FG_CACHE_TAG_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)tag[i];
        if (ch <= 0x20 || ch == 0x7f || ch == ',')
            return false;
    }
    return true;
}

static bool is_sep(char ch)
{
    return ch == ' ' || ch == '\t' || ch == ',';
}

/* Is tag[0..len) already in out[0..o) (" a b", without the final space yet)? */
static bool already(const char *out, size_t o, const char *tag, size_t len)
{
    for (size_t i = 0; i < o;) {
        size_t j = i + 1; /* out[i] is the space before a tag */
        while (j < o && out[j] != ' ')
            j++;
        if (j - i - 1 == len && memcmp(out + i + 1, tag, len) == 0)
            return true;
        i = j;
    }
    return false;
}

int fg_cache_tags_collect(const struct fg_http_header *h, size_t n, const char *const *fields,
                          size_t nf, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        bool named = false;
        for (size_t f = 0; f < nf && !named; f++)
            named = fg_http_name_eq(h[i].name, h[i].name_len, fields[f]);
        if (!named)
            continue;
        const char *v = h[i].value, *end = v + h[i].value_len;
        while (v < end) {
            while (v < end && is_sep(*v))
                v++;
            const char *t = v;
            while (v < end && !is_sep(*v))
                v++;
            size_t len = (size_t)(v - t);
            if (len == 0)
                continue;
            if (!fg_cache_tag_valid(t, len))
                return -1;
            if (o > 0 && already(out, o, t, len))
                continue;
            /* " tag" now, the final space once at the end */
            if (o + len + 2 > cap)
                return -1;
            out[o++] = ' ';
            memcpy(out + o, t, len);
            o += len;
        }
    }
    if (o == 0)
        return 0;
    out[o++] = ' ';
    return (int)o;
}
