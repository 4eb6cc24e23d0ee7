/* method.c — request methods: names, idempotency (RFC 9110 §9). */
#include "http/http.h"

#include <string.h>

static const char *const names[] = {
    [FG_HTTP_GET] = "GET",     [FG_HTTP_HEAD] = "HEAD",     [FG_HTTP_POST] = "POST",
    [FG_HTTP_PUT] = "PUT",     [FG_HTTP_DELETE] = "DELETE", [FG_HTTP_OPTIONS] = "OPTIONS",
    [FG_HTTP_TRACE] = "TRACE", [FG_HTTP_PATCH] = "PATCH",   [FG_HTTP_CONNECT] = "CONNECT",
};

bool fg_http_method_idempotent(enum fg_http_method m)
{
    return m == FG_HTTP_GET || m == FG_HTTP_HEAD || m == FG_HTTP_PUT || m == FG_HTTP_DELETE ||
           m == FG_HTTP_OPTIONS || m == FG_HTTP_TRACE;
}

bool fg_http_method_safe(enum fg_http_method m)
{
    /* RFC 9110 §9.2.1; a method we do not know by name is not (FG_HTTP_OTHER). */
    return m == FG_HTTP_GET || m == FG_HTTP_HEAD || m == FG_HTTP_OPTIONS || m == FG_HTTP_TRACE;
}

const char *fg_http_method_name(enum fg_http_method m)
{
    return (unsigned)m < sizeof(names) / sizeof(names[0]) ? names[m] : NULL;
}

enum fg_http_method fg_http_method_parse(const char *s, size_t len)
{
    /* The first byte and the length pick the one candidate; one memcmp confirms it. */
    enum fg_http_method m = FG_HTTP_OTHER;
    switch (len) {
    case 3:
        m = s[0] == 'G' ? FG_HTTP_GET : FG_HTTP_PUT;
        break;
    case 4:
        m = s[0] == 'H' ? FG_HTTP_HEAD : FG_HTTP_POST;
        break;
    case 5:
        m = s[0] == 'T' ? FG_HTTP_TRACE : FG_HTTP_PATCH;
        break;
    case 6:
        m = FG_HTTP_DELETE;
        break;
    case 7:
        m = s[0] == 'O' ? FG_HTTP_OPTIONS : FG_HTTP_CONNECT;
        break;
    default:
        return FG_HTTP_OTHER;
    }
    return memcmp(s, names[m], len) == 0 ? m : FG_HTTP_OTHER;
}
