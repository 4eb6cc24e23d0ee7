/*
 * range.c — Range requests (RFC 9110 §14): the byte-range set of a Range field, resolved
 * against a representation's length, and the If-Range comparison.
 *
 *   Range = "bytes" "=" 1#( first-pos "-" [ last-pos ] / "-" suffix-length )
 *
 * Anything else (another unit, a malformed set, more than the caller's room) is a field
 * the server ignores: the whole representation is the answer (§14.2 allows it).
 */
#include "http/http.h"
#include "http/http_internal.h"

#include <string.h>
#include <strings.h>

static bool digits(const char *s, size_t len, size_t *i, uint64_t *out)
{
    size_t start = *i;
    uint64_t v = 0;
    while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
        if (*i - start >= 18)
            return false; /* beyond any length we could hold */
        v = v * 10 + (uint64_t)(s[*i] - '0');
        (*i)++;
    }
    *out = v;
    return *i > start;
}

static void skip_ows(const char *s, size_t len, size_t *i)
{
    while (*i < len && (s[*i] == ' ' || s[*i] == '\t'))
        (*i)++;
}

bool fg_http_parse_ranges(const char *s, size_t len, struct fg_http_range *out, size_t max,
                          size_t *n)
{
    *n = 0;
    if (len < 6 || strncasecmp(s, "bytes=", 6) != 0)
        return false;
    size_t i = 6;
    for (;;) {
        skip_ows(s, len, &i);
        if (i < len && s[i] == ',') { /* empty list elements are allowed (#rule) */
            i++;
            continue;
        }
        if (i >= len)
            break;
        struct fg_http_range r = {0};
        if (s[i] == '-') {
            i++;
            r.suffix = true;
            if (!digits(s, len, &i, &r.last))
                return false;
        } else {
            if (!digits(s, len, &i, &r.first) || i >= len || s[i] != '-')
                return false;
            i++;
            r.last = UINT64_MAX;
            if (i < len && s[i] >= '0' && s[i] <= '9') {
                if (!digits(s, len, &i, &r.last) || r.last < r.first)
                    return false; /* last < first: the whole set is invalid (§14.1.1) */
            }
        }
        if (*n == max)
            return false;
        out[(*n)++] = r;
        skip_ows(s, len, &i);
        if (i >= len)
            break;
        if (s[i] != ',')
            return false;
        i++;
    }
    return *n > 0;
}

size_t fg_http_ranges_resolve(struct fg_http_range *r, size_t n, uint64_t length)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t first, last;
        if (r[i].suffix) {
            if (r[i].last == 0 || length == 0)
                continue; /* "-0" selects nothing */
            first = r[i].last >= length ? 0 : length - r[i].last;
            last = length - 1;
        } else {
            if (r[i].first >= length)
                continue; /* starts past the end: unsatisfiable */
            first = r[i].first;
            last = r[i].last >= length ? length - 1 : r[i].last;
        }
        r[k].first = first;
        r[k].last = last;
        r[k].suffix = false;
        k++;
    }
    return k;
}

bool fg_http_ranges_overlap(const struct fg_http_range *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (r[i].first <= r[j].last && r[j].first <= r[i].last)
                return true;
    return false;
}

bool fg_http_if_range_matches(const char *v, size_t len, const char *etag, int64_t last_modified)
{
    while (len > 0 && (v[0] == ' ' || v[0] == '\t'))
        v++, len--;
    while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    if (len == 0)
        return false;
    if (v[0] == '"' || (len > 2 && v[0] == 'W' && v[1] == '/')) {
        /* An entity-tag: the strong comparison (§8.8.3.2): both strong, same characters. */
        if (v[0] != '"' || etag == NULL || etag[0] != '"')
            return false;
        return strlen(etag) == len && memcmp(etag, v, len) == 0;
    }
    /* An HTTP-date: it must be exactly the representation's Last-Modified (§13.1.5). */
    int64_t when;
    if (last_modified < 0 || !fg_http_parse_date(v, len, &when))
        return false;
    return when == last_modified;
}
