/*
 * page.c — the dashboard's three files, compiled in (proxy/admin/dashboard/, turned into
 * arrays by embed.sh at build time): GET / is index.html, /dashboard/app.js and
 * /dashboard/style.css are its script and style sheet, /dashboard/icon.svg its icon. Nothing comes
 * from elsewhere (the instance may have no internet), and the Content-Security-Policy says so to
 * the browser: scripts, styles and the event stream from this origin only, no inline code.
 *
 * The files change only with the binary: an ETag (checksum and length) and
 * Cache-Control: no-cache make a reload of the page cost a 304.
 */
#include "admin/internal.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *path, *file, *ctype;
} routes[] = {
    {"/", "index.html", "text/html; charset=utf-8"},
    {"/dashboard/app.js", "app.js", "text/javascript; charset=utf-8"},
    {"/dashboard/style.css", "style.css", "text/css; charset=utf-8"},
    {"/dashboard/icon.svg", "icon.svg", "image/svg+xml"},
};

static const struct fg_admin_asset *asset(const char *name)
{
    for (const struct fg_admin_asset *a = fg_admin_assets; a->name != NULL; a++)
        if (strcmp(a->name, name) == 0)
            return a;
    return NULL;
}

/* If-None-Match lists etag (or is "*"): weak comparison, as RFC 9110 13.1.2 asks. */
static bool not_modified(const struct fg_http_request *r, const char *etag)
{
    const struct fg_http_header *h = fg_http_find_header(r->headers, r->n_headers, "if-none-match");
    if (h == NULL)
        return false;
    size_t el = strlen(etag);
    const char *v = h->value, *end = h->value + h->value_len;
    while (v < end) {
        while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
            v++;
        if (v < end && *v == '*')
            return true;
        if (end - v >= 2 && v[0] == 'W' && v[1] == '/')
            v += 2;
        const char *e = v;
        while (e < end && *e != ',')
            e++;
        const char *t = e;
        while (t > v && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - v) == el && memcmp(v, etag, el) == 0)
            return true;
        v = e;
    }
    return false;
}

bool fg_admin_page(struct bufferevent *bev, const struct fg_http_request *r)
{
    for (size_t i = 0; i < FG_ARRAY_LEN(routes); i++) {
        size_t pl = strlen(routes[i].path);
        if (r->path_len != pl || memcmp(r->path, routes[i].path, pl) != 0)
            continue;
        const struct fg_admin_asset *a = asset(routes[i].file);
        if (a == NULL)
            return false;
        char fields[512];
        snprintf(fields, sizeof(fields),
                 "ETag: %s\r\nCache-Control: no-cache\r\nContent-Security-Policy: " FG_ADMIN_CSP
                 "\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"
                 "X-Frame-Options: DENY\r\n",
                 a->etag);
        /* A 304's Content-Length is the 200's (RFC 9110 8.6); it has no body. */
        bool same = not_modified(r, a->etag);
        fg_admin_respond(bev, same ? 304 : 200, routes[i].ctype, fields, a->data, a->len,
                         same || r->method == FG_HTTP_HEAD);
        return true;
    }
    return false;
}
