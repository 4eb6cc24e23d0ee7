/* fields.c — helpers over parsed header fields: lookup, hop-by-hop, Connection lists. */
#include "http/http.h"

#include <string.h>

bool fg_http_name_eq(const char *name, size_t len, const char *lower_literal)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char a = (unsigned char)name[i];
        unsigned char b = (unsigned char)lower_literal[i];
        if (b == '\0')
            return false;
        if (a >= 'A' && a <= 'Z')
            a = (unsigned char)(a | 0x20);
        if (a != b)
            return false;
    }
    return lower_literal[len] == '\0';
}

const struct fg_http_header *fg_http_find_header(const struct fg_http_header *h, size_t n,
                                                 const char *lower_name)
{
    size_t len = strlen(lower_name);
    for (size_t i = 0; i < n; i++)
        if (h[i].name_len == len && fg_http_name_eq(h[i].name, h[i].name_len, lower_name))
            return &h[i];
    return NULL;
}

const char *fg_http_cookie(const struct fg_http_header *h, size_t n, const char *name,
                           enum fg_http_cookie_pick pick, size_t *len)
{
    size_t nl = strlen(name);
    const char *found = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!fg_http_name_eq(h[i].name, h[i].name_len, "cookie"))
            continue;
        const char *v = h[i].value, *end = h[i].value + h[i].value_len;
        while (v < end) {
            while (v < end && (*v == ' ' || *v == ';'))
                v++;
            const char *semi = memchr(v, ';', (size_t)(end - v));
            const char *pair_end = semi ? semi : end;
            if ((size_t)(pair_end - v) > nl && memcmp(v, name, nl) == 0 && v[nl] == '=') {
                *len = (size_t)(pair_end - v - (ptrdiff_t)nl - 1);
                found = v + nl + 1;
                if (pick == FG_HTTP_COOKIE_FIRST)
                    return found;
            }
            v = pair_end;
        }
    }
    return found;
}

bool fg_http_is_hop_by_hop(const char *name, size_t len)
{
    switch (len) {
    case 2:
        return fg_http_name_eq(name, len, "te");
    case 7:
        return fg_http_name_eq(name, len, "trailer") || fg_http_name_eq(name, len, "upgrade");
    case 10:
        return fg_http_name_eq(name, len, "connection") || fg_http_name_eq(name, len, "keep-alive");
    case 16:
        return fg_http_name_eq(name, len, "proxy-connection");
    case 17:
        return fg_http_name_eq(name, len, "transfer-encoding");
    default:
        return false;
    }
}

bool fg_http_list_has_token(const char *value, size_t len, const char *lower_token)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
            i++;
        size_t s = i;
        while (i < len && value[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (value[e - 1] == ' ' || value[e - 1] == '\t'))
            e--;
        if (e > s && fg_http_name_eq(value + s, e - s, lower_token))
            return true;
    }
    return false;
}

bool fg_http_connection_lists(const struct fg_http_header *h, size_t n, const char *name,
                              size_t len)
{
    char lower[128];
    if (len == 0 || len >= sizeof(lower))
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];
        lower[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch | 0x20 : ch);
    }
    lower[len] = '\0';
    for (size_t i = 0; i < n; i++)
        if (fg_http_name_eq(h[i].name, h[i].name_len, "connection") &&
            fg_http_list_has_token(h[i].value, h[i].value_len, lower))
            return true;
    return false;
}
