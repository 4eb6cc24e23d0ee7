/*
 * forward.c — the request as the app sees it: our framing, no hop-by-hop fields, the
 * forwarding fields (X-Forwarded-For/-Proto/-Port, X-Request-Id). Built into the
 * transaction's head buffer (kept across requests), for the proxy path and, with the
 * client's conditionals and Range left out, for a cache fill.
 */
#include "server/internal.h"

#include <stdlib.h>
#include <string.h>

static bool head_reserve(struct fg_txn *t, size_t more)
{
    if (t->proxy.head_len + more <= t->proxy.head_cap)
        return true;
    size_t cap = t->proxy.head_cap ? t->proxy.head_cap : 2048;
    while (cap < t->proxy.head_len + more)
        cap *= 2;
    char *p = realloc(t->proxy.head, cap);
    if (p == NULL)
        return false;
    t->proxy.head = p;
    t->proxy.head_cap = cap;
    return true;
}

static void head_put(struct fg_txn *t, const char *s, size_t len)
{
    if (!head_reserve(t, len))
        return;
    memcpy(t->proxy.head + t->proxy.head_len, s, len);
    t->proxy.head_len += len;
}

#define HEAD_LIT(t, lit) head_put((t), (lit), sizeof(lit) - 1)

static void head_field(struct fg_txn *t, const char *name, size_t nlen, const char *value,
                       size_t vlen)
{
    if (!head_reserve(t, nlen + vlen + 4))
        return;
    char *p = t->proxy.head + t->proxy.head_len;
    memcpy(p, name, nlen);
    p += nlen;
    *p++ = ':';
    *p++ = ' ';
    memcpy(p, value, vlen);
    p += vlen;
    *p++ = '\r';
    *p++ = '\n';
    t->proxy.head_len += nlen + vlen + 4;
}

/* What a client field is to the forwarded head, found with one switch on the length
 * (this runs for every field of every proxied request). */
enum field_kind {
    F_KEEP = 0,
    F_DROP,        /* hop-by-hop, or framing we redo (Content-Length, Expect) */
    F_HOST,        /* dropped for an absolute-form target (Host is written from it) */
    F_CONDITIONAL, /* If-* and Range: not for a cache fill (the answer must be whole) */
    F_ACCEPT_ENCODING,
    F_XFF,
    F_XF_PROTO,
    F_XF_PORT,
};

static enum field_kind classify(const char *n, size_t len)
{
#define IS(lit) fg_http_name_eq(n, len, lit)
    switch (len) {
    case 2:
        return IS("te") ? F_DROP : F_KEEP;
    case 4:
        return IS("host") ? F_HOST : F_KEEP;
    case 5:
        return IS("range") ? F_CONDITIONAL : F_KEEP;
    case 6:
        return IS("expect") ? F_DROP : F_KEEP;
    case 7:
        return IS("trailer") || IS("upgrade") ? F_DROP : F_KEEP;
    case 8:
        return IS("if-match") || IS("if-range") ? F_CONDITIONAL : F_KEEP;
    case 10:
        return IS("connection") || IS("keep-alive") ? F_DROP : F_KEEP;
    case 13:
        return IS("if-none-match") ? F_CONDITIONAL : F_KEEP;
    case 14:
        return IS("content-length") ? F_DROP : F_KEEP;
    case 15:
        return IS("x-forwarded-for") ? F_XFF : IS("accept-encoding") ? F_ACCEPT_ENCODING : F_KEEP;
    case 16:
        return IS("x-forwarded-port") ? F_XF_PORT : IS("proxy-connection") ? F_DROP : F_KEEP;
    case 17:
        return IS("x-forwarded-proto")   ? F_XF_PROTO
               : IS("transfer-encoding") ? F_DROP
               : IS("if-modified-since") ? F_CONDITIONAL
                                         : F_KEEP;
    case 19:
        return IS("if-unmodified-since") ? F_CONDITIONAL : F_KEEP;
    default:
        return F_KEEP;
    }
#undef IS
}

/* The request as the app sees it: our framing, no hop-by-hop fields, forwarding fields. */
bool fg_forward_head(struct fg_txn *t, bool for_cache)
{
    struct fg_conn *c = t->c;
    const struct fg_http_request *r = &t->req;
    const struct fg_conf_server *srv = t->srv;
    bool peer_trusted = fg_cidr_match(srv->trusted_proxies, srv->n_trusted_proxies,
                                      (const struct sockaddr *)&c->peer);
    t->proxy.head_len = 0;

    if (for_cache)
        HEAD_LIT(t, "GET "); /* a HEAD miss fills the GET entry it is served from */
    else
        head_put(t, r->method_name, r->method_len), HEAD_LIT(t, " ");
    if (r->flags & FG_HTTP_F_ABSOLUTE_FORM) {
        head_put(t, r->path, r->path_len);
        if (r->query != NULL) {
            HEAD_LIT(t, "?");
            head_put(t, r->query, r->query_len);
        }
    } else {
        head_put(t, r->target, r->target_len);
    }
    HEAD_LIT(t, " HTTP/1.1\r\n");

    const struct fg_http_header *xff_last = NULL;
    bool have_proto = false, have_port = false;
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct fg_http_header *h = &r->headers[i];
        enum field_kind kind = classify(h->name, h->name_len);
        if (kind == F_DROP)
            continue;
        if ((r->flags & FG_HTTP_F_CONN_OTHER) &&
            fg_http_connection_lists(r->headers, r->n_headers, h->name, h->name_len))
            continue;
        switch (kind) {
        case F_HOST:
            if (r->flags & FG_HTTP_F_ABSOLUTE_FORM)
                continue;
            break;
        case F_CONDITIONAL:
            /* A cache fill asks for the whole, unconditional representation: the client's
             * conditionals are answered from it. */
            if (for_cache)
                continue;
            break;
        case F_ACCEPT_ENCODING:
            /* A compressing route stores its own encodings: it asks the app for identity. */
            if (for_cache && t->z.route)
                continue;
            break;
        case F_XFF:
            /* Several X-Forwarded-For fields are one list (RFC 9110 §5.3): keep them in
             * order and append the peer to the last one. */
            if (xff_last != NULL)
                head_field(t, xff_last->name, xff_last->name_len, xff_last->value,
                           xff_last->value_len);
            xff_last = h;
            continue;
        case F_XF_PROTO:
            if (!peer_trusted)
                continue; /* only a trusted proxy (the ALB) may tell us the scheme */
            have_proto = true;
            break;
        case F_XF_PORT:
            if (!peer_trusted)
                continue;
            have_port = true;
            break;
        case F_KEEP:
        case F_DROP:
            break;
        }
        head_field(t, h->name, h->name_len, h->value, h->value_len);
    }
    if (r->flags & FG_HTTP_F_ABSOLUTE_FORM) {
        head_field(t, "Host", 4, r->host, r->host_len);
    } else if (r->host == NULL) {
        /* An HTTP/1.0 request may come without Host; an HTTP/1.1 one may not, and we
         * send 1.1. Name the upstream instead, as nginx's proxy_pass does. */
        const char *name = t->route->upstream->name;
        head_field(t, "Host", 4, name, strlen(name));
    }

    char val[8192];
    size_t plen = strlen(c->peer_ip);
    if (xff_last != NULL && xff_last->value_len + plen + 2 < sizeof(val)) {
        memcpy(val, xff_last->value, xff_last->value_len);
        memcpy(val + xff_last->value_len, ", ", 2);
        memcpy(val + xff_last->value_len + 2, c->peer_ip, plen);
        head_field(t, "X-Forwarded-For", 15, val, xff_last->value_len + 2 + plen);
    } else {
        head_field(t, "X-Forwarded-For", 15, c->peer_ip, plen);
    }
    if (!have_proto && fg_reader_ssl(&c->reader) != NULL)
        HEAD_LIT(t, "X-Forwarded-Proto: https\r\n");
    else if (!have_proto)
        HEAD_LIT(t, "X-Forwarded-Proto: http\r\n");
    if (!have_port)
        head_field(t, "X-Forwarded-Port", 16, c->lst->port_text, strlen(c->lst->port_text));
    /* The client's X-Request-Id went with its fields; ours is added (request_id on). */
    if (fg_txn_request_id(t) && t->request_id_ours)
        head_field(t, "X-Request-Id", 12, t->request_id, strlen(t->request_id));
    if (t->proxy.upgrade && !for_cache) {
        /* The client's Upgrade offers, and the one Connection option that goes with it. */
        for (size_t i = 0; i < r->n_headers; i++) {
            const struct fg_http_header *h = &r->headers[i];
            if (h->name_len == 7 && fg_http_name_eq(h->name, h->name_len, "upgrade"))
                head_field(t, "Upgrade", 7, h->value, h->value_len);
        }
        HEAD_LIT(t, "Connection: upgrade\r\n");
    }
    if (r->body == FG_HTTP_BODY_LENGTH) {
        char digits[24];
        size_t n = 0;
        uint64_t v = r->content_length;
        do {
            digits[sizeof(digits) - 1 - n++] = (char)('0' + v % 10);
            v /= 10;
        } while (v != 0);
        head_field(t, "Content-Length", 14, digits + sizeof(digits) - n, n);
    } else if (r->body == FG_HTTP_BODY_CHUNKED) {
        HEAD_LIT(t, "Transfer-Encoding: chunked\r\n");
    }
    HEAD_LIT(t, "\r\n");
    return head_reserve(t, 0) && t->proxy.head_len > 0;
}
