/* http_internal.h — shared by the http module's files only: character classes of
 * RFC 9110/9112/3986 as one lookup table, and small helpers. Not a public header. */
#ifndef FG_HTTP_INTERNAL_H
#define FG_HTTP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http.h"

enum {
    FG_C_TCHAR = 1u << 0, /* token characters */
    FG_C_VALUE = 1u << 1, /* field-value: VCHAR, obs-text, SP, HTAB */
    /* request-target characters that need no further look: pchar and '/' except '%'
     * (starts a triplet) and '?' (starts the query), which the target scan handles */
    FG_C_TARGET = 1u << 2,
    FG_C_HOST = 1u << 3, /* uri-host and port: unreserved, sub-delims, '%', ':', '[', ']' */
    FG_C_HEX = 1u << 4,
    FG_C_UNRESERVED = 1u << 5,
};

extern const uint8_t fg_http_char_class[256];

static inline int fg_http_is(unsigned char c, unsigned cls)
{
    return (fg_http_char_class[c] & cls) != 0;
}

static inline int fg_http_hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* uri-host [ ":" port ] (RFC 9110 §4.2.3, RFC 3986 §3.2.2). Empty is valid. */
bool fg_http_host_valid(const char *s, size_t len);

#endif
