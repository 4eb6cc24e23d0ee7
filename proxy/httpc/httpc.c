/*
 * httpc.c — an asynchronous HTTP/1.1 client: requests to one endpoint (SQS, the instance
 * metadata service, the app the agent replays to) over keep-alive connections, on the
 * owner's event_base, never blocking it.
 *
 * One request per connection at a time (no pipelining: a response that never comes
 * would hold every request behind it). A finished connection goes back to the idle list
 * unless the server asked to close; an idle connection that the server closes, or that
 * stays idle for idle_timeout, is dropped. Names are resolved with evdns_getaddrinfo
 * (the result is cached for DNS_CACHE_MS); IP literals and "localhost" need no lookup.
 * https goes through proxy/tls's client context (verification always on); plain http is
 * allowed only to a loopback address unless the owner says otherwise (IMDS is plain
 * http on a link-local address by design).
 *
 * The caller builds the request bytes (head and body) and the client carries them: the
 * SQS sink signs its own headers, the replay code writes the app's. Callbacks never run
 * inside fg_httpc_send(), so a caller may send from a callback without re-entrancy. A
 * reused connection that fails before any byte of the answer (the server closed it while
 * idle) is retried once at once on a fresh connection: the request may then reach the
 * server twice, which every caller of this client tolerates (at-least-once delivery).
 */
#include "httpc/httpc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <openssl/err.h>

#include "core/core.h"
#include "tls/tls.h"

#define HCONN_MAGIC      0x48434f4eu /* "HCON" */
#define HREQ_MAGIC       0x48524551u /* "HREQ" */
#define HEAD_MAX         (64u * 1024)
#define DNS_CACHE_MS     30000
#define IDLE_TIMEOUT_MS  30000
#define MAX_IDLE_DEFAULT 16
#define MAX_BODY_DEFAULT (8u << 20)

enum phase { P_IDLE = 0, P_HEAD, P_LENGTH, P_CHUNKED, P_CLOSE };

struct hconn {
    unsigned magic;
    struct fg_httpc *c;
    struct bufferevent *bev;
    SSL *ssl; /* owned by bev */
    struct fg_httpc_req *req;
    enum phase phase;
    bool connected, reused, got_any, close_after;
    int status;
    uint64_t left;
    struct fg_http_chunked ch;
    struct evbuffer *body;
    char *head;
    size_t head_len;
    struct hconn *next; /* in the idle list */
};

struct fg_httpc_req {
    unsigned magic;
    struct fg_httpc *c;
    struct hconn *conn;
    struct evbuffer *request;
    enum fg_http_method method;
    fg_httpc_cb cb;
    void *arg;
    struct event *timer; /* the deadline */
    struct event *step;  /* deferred work: connect after DNS, report an early failure */
    struct evdns_getaddrinfo_request *dns;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    const char *fail; /* set with step: fail with this */
    bool retried;
    bool dns_done;
    struct fg_httpc_req *prev, *next;
};

struct fg_httpc {
    struct event_base *base;
    struct evdns_base *dns;
    struct fg_tls_client *tls; /* NULL: plain http */
    struct fg_url url;
    char name[32];
    char port_text[8];
    struct sockaddr_storage addr; /* resolved endpoint */
    socklen_t addr_len;
    uint64_t addr_expires_ms; /* UINT64_MAX: a literal */
    struct hconn *idle;
    size_t n_idle, max_idle;
    uint64_t idle_timeout_ms;
    size_t max_body;
    bool discard_body;
    struct fg_httpc_req *reqs; /* every request not yet finished */
    struct fg_httpc_stats st;
};

/* ---- URLs --------------------------------------------------------------------------------- */

bool fg_url_parse(const char *s, struct fg_url *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof(*u));
    const char *p;
    if (strncmp(s, "https://", 8) == 0) {
        u->tls = true;
        p = s + 8;
        u->port = 443;
    } else if (strncmp(s, "http://", 7) == 0) {
        p = s + 7;
        u->port = 80;
    } else {
        snprintf(err, errlen, "'%s' does not start with https:// or http://", s);
        return false;
    }
    const char *hs = p, *he;
    if (*p == '[') {
        he = strchr(p, ']');
        if (he == NULL) {
            snprintf(err, errlen, "'%s': unterminated [IPv6] address", s);
            return false;
        }
        hs = p + 1;
        p = he + 1;
    } else {
        while (*p != '\0' && *p != ':' && *p != '/' && *p != '?' && *p != '#')
            p++;
        he = p;
    }
    size_t hl = (size_t)(he - hs);
    if (hl == 0 || hl >= sizeof(u->host)) {
        snprintf(err, errlen, "'%s': no host, or a host over %zu bytes", s, sizeof(u->host) - 1);
        return false;
    }
    for (size_t i = 0; i < hl; i++) {
        unsigned char c = (unsigned char)hs[i];
        if (c <= 0x20 || c >= 0x7f || c == '@' || c == '%') {
            snprintf(err, errlen, "'%s': a character a host cannot have", s);
            return false;
        }
    }
    memcpy(u->host, hs, hl);
    u->host[hl] = '\0';
    if (*p == ':') {
        uint64_t port;
        char num[8];
        size_t n = strcspn(p + 1, "/?#");
        if (n == 0 || n >= sizeof(num)) {
            snprintf(err, errlen, "'%s': bad port", s);
            return false;
        }
        memcpy(num, p + 1, n);
        num[n] = '\0';
        if (!fg_parse_uint(num, 65535, &port) || port == 0) {
            snprintf(err, errlen, "'%s': bad port", s);
            return false;
        }
        u->port = (int)port;
        p += 1 + n;
    }
    if (*p == '\0') {
        strcpy(u->path, "/");
    } else if (*p == '/' && strlen(p) < sizeof(u->path) && strcspn(p, "#") == strlen(p)) {
        strcpy(u->path, p);
    } else {
        snprintf(err, errlen,
                 "'%s': the path must start with '/', have no '#' and be under %zu "
                 "bytes",
                 s, sizeof(u->path));
        return false;
    }
    bool default_port = u->port == (u->tls ? 443 : 80);
    bool v6 = strchr(u->host, ':') != NULL;
    if (default_port)
        snprintf(u->hostport, sizeof(u->hostport), v6 ? "[%s]" : "%s", u->host);
    else
        snprintf(u->hostport, sizeof(u->hostport), v6 ? "[%s]:%d" : "%s:%d", u->host, u->port);
    return true;
}

bool fg_url_is_loopback(const struct fg_url *u)
{
    if (strcmp(u->host, "localhost") == 0 || strcmp(u->host, "::1") == 0)
        return true;
    struct in_addr a;
    return inet_pton(AF_INET, u->host, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

/* The address of an IP literal (or localhost) in c->addr; false for a name. */
static bool literal_addr(struct fg_httpc *c)
{
    const char *h = strcmp(c->url.host, "localhost") == 0 ? "127.0.0.1" : c->url.host;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&c->addr;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&c->addr;
    memset(&c->addr, 0, sizeof(c->addr));
    if (inet_pton(AF_INET, h, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)c->url.port);
        c->addr_len = sizeof(*s4);
        return true;
    }
    if (inet_pton(AF_INET6, h, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)c->url.port);
        c->addr_len = sizeof(*s6);
        return true;
    }
    return false;
}

/* Take n bytes of response body from in: kept, or dropped when the owner does not want
 * bodies (then no size limit applies: nothing is kept). */
static void body_take(struct hconn *h, struct evbuffer *in, size_t n)
{
    if (h->c->discard_body)
        evbuffer_drain(in, n);
    else
        evbuffer_remove_buffer(in, h->body, n);
}

/* ---- requests ending ---------------------------------------------------------------------- */

static void conn_free(struct hconn *h)
{
    FG_ASSERT(h->magic == HCONN_MAGIC);
    if (h->bev != NULL) {
        if (h->ssl != NULL && h->connected)
            SSL_set_shutdown(h->ssl, SSL_RECEIVED_SHUTDOWN); /* no close_notify wait */
        bufferevent_free(h->bev);
    }
    if (h->body != NULL)
        evbuffer_free(h->body);
    free(h->head);
    h->magic = 0;
    free(h);
}

static void idle_remove(struct fg_httpc *c, struct hconn *h)
{
    for (struct hconn **pp = &c->idle; *pp != NULL; pp = &(*pp)->next)
        if (*pp == h) {
            *pp = h->next;
            h->next = NULL;
            c->n_idle--;
            return;
        }
}

static void req_unlink_free(struct fg_httpc_req *r)
{
    struct fg_httpc *c = r->c;
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        c->reqs = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    if (r->dns != NULL) {
        struct evdns_getaddrinfo_request *d = r->dns;
        r->dns = NULL;
        evdns_getaddrinfo_cancel(d); /* its callback sees EVUTIL_EAI_CANCEL and returns */
    }
    if (r->timer != NULL)
        event_free(r->timer);
    if (r->step != NULL)
        event_free(r->step);
    if (r->request != NULL)
        evbuffer_free(r->request);
    r->magic = 0;
    free(r);
}

/* Hand the result to the caller and free the request. */
static void req_finish(struct fg_httpc_req *r, const struct fg_httpc_result *res)
{
    fg_httpc_cb cb = r->cb;
    void *arg = r->arg;
    if (res->status == 0)
        r->c->st.errors++;
    else
        r->c->st.responses++;
    if (res->timed_out)
        r->c->st.timeouts++;
    r->conn = NULL;
    req_unlink_free(r);
    cb(res, arg);
}

static void req_fail(struct fg_httpc_req *r, const char *why, bool timed_out)
{
    struct fg_httpc_result res = {
        .status = 0, .error = why, .timed_out = timed_out, .retried = r->retried};
    req_finish(r, &res);
}

/* ---- connections ---------------------------------------------------------------------------- */

static void conn_start_request(struct hconn *h, struct fg_httpc_req *r);
static void req_connect(struct fg_httpc_req *r);

static void idle_read(struct bufferevent *bev, void *arg);
static void idle_event(struct bufferevent *bev, short what, void *arg);
static void conn_read(struct bufferevent *bev, void *arg);
static void conn_event(struct bufferevent *bev, short what, void *arg);

static void conn_to_idle(struct hconn *h)
{
    struct fg_httpc *c = h->c;
    h->req = NULL;
    h->phase = P_IDLE;
    h->reused = true;
    if (h->close_after || c->n_idle >= c->max_idle) {
        conn_free(h);
        return;
    }
    struct timeval tv = {.tv_sec = (time_t)(c->idle_timeout_ms / 1000),
                         .tv_usec = (suseconds_t)(c->idle_timeout_ms % 1000) * 1000};
    bufferevent_set_timeouts(h->bev, &tv, NULL);
    bufferevent_setcb(h->bev, idle_read, NULL, idle_event, h);
    h->next = c->idle;
    c->idle = h;
    c->n_idle++;
}

static void idle_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct hconn *h = arg;
    FG_ASSERT(h->magic == HCONN_MAGIC);
    idle_remove(h->c, h); /* bytes nobody asked for */
    conn_free(h);
}

static void idle_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev, (void)what;
    struct hconn *h = arg;
    FG_ASSERT(h->magic == HCONN_MAGIC);
    idle_remove(h->c, h);
    conn_free(h);
}

/* The connection failed under its request: retry once if it was a stale keep-alive. */
static void conn_fail(struct hconn *h, const char *why)
{
    struct fg_httpc_req *r = h->req;
    bool stale = h->reused && !h->got_any;
    if (h->ssl != NULL && !h->connected)
        fg_tls_handshake_done(h->ssl, bufferevent_get_openssl_error(h->bev));
    conn_free(h);
    if (r == NULL)
        return;
    r->conn = NULL;
    if (stale && !r->retried) {
        /* The server dropped its idle connections (a restart, its idle timeout): the
         * others in the idle list are as dead as this one. */
        struct fg_httpc *c = r->c;
        while (c->idle != NULL) {
            struct hconn *i = c->idle;
            c->idle = i->next;
            c->n_idle--;
            conn_free(i);
        }
        r->retried = true;
        c->st.stale_retries++;
        req_connect(r);
        return;
    }
    req_fail(r, why, false);
}

static void conn_done(struct hconn *h)
{
    struct fg_httpc_req *r = h->req;
    size_t blen = evbuffer_get_length(h->body);
    /* A NUL after the body (not counted), so that no caller can run off its end. */
    if (evbuffer_add(h->body, "", 1) != 0) {
        conn_fail(h, "out of memory");
        return;
    }
    struct fg_httpc_result res = {.status = h->status,
                                  .retried = r->retried,
                                  .head = h->head,
                                  .head_len = h->head_len,
                                  .body = (const char *)evbuffer_pullup(h->body, -1),
                                  .body_len = blen};
    /* The caller reads the result before the connection is reused: detach it first,
     * hand it back after the callback. */
    bufferevent_set_timeouts(h->bev, NULL, NULL);
    h->req = NULL;
    r->conn = NULL;
    req_finish(r, &res);
    evbuffer_drain(h->body, blen + 1);
    free(h->head);
    h->head = NULL;
    h->head_len = 0;
    conn_to_idle(h);
}

static void conn_read(struct bufferevent *bev, void *arg)
{
    struct hconn *h = arg;
    FG_ASSERT(h->magic == HCONN_MAGIC);
    struct evbuffer *in = bufferevent_get_input(bev);
    if (evbuffer_get_length(in) > 0)
        h->got_any = true;
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (h->req == NULL) {
            if (len > 0)
                conn_free(h);
            return;
        }
        if (len == 0)
            return;
        switch (h->phase) {
        case P_HEAD: {
            size_t n = len < HEAD_MAX ? len : HEAD_MAX;
            const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
            struct fg_http_limits lim = {.max_request_line = 8192,
                                         .max_header_bytes = HEAD_MAX,
                                         .max_headers = FG_HTTP_MAX_HEADERS};
            static struct fg_http_response resp; /* large; one thread */
            enum fg_http_error err;
            int rc = fg_http_parse_response(p, n, &lim, h->req->method, &resp, &err);
            if (rc == FG_HTTP_INCOMPLETE && n < HEAD_MAX)
                return;
            if (rc < 0) {
                conn_fail(h, "malformed response");
                return;
            }
            if (resp.status < 200) {
                evbuffer_drain(in, resp.head_len);
                continue; /* 100 Continue and friends */
            }
            free(h->head);
            h->head = malloc(resp.head_len + 1);
            if (h->head == NULL) {
                conn_fail(h, "out of memory");
                return;
            }
            memcpy(h->head, p, resp.head_len);
            h->head[resp.head_len] = '\0';
            h->head_len = resp.head_len;
            evbuffer_drain(in, resp.head_len);
            h->status = resp.status;
            h->close_after = (resp.flags & FG_HTTP_F_CONN_CLOSE) ||
                             (resp.minor_version == 0 && !(resp.flags & FG_HTTP_F_CONN_KEEPALIVE));
            if (resp.body == FG_HTTP_BODY_NONE ||
                (resp.body == FG_HTTP_BODY_LENGTH && resp.content_length == 0)) {
                conn_done(h);
                return;
            } else if (resp.body == FG_HTTP_BODY_LENGTH) {
                if (resp.content_length > h->c->max_body && !h->c->discard_body) {
                    conn_fail(h, "response body too large");
                    return;
                }
                h->left = resp.content_length;
                h->phase = P_LENGTH;
            } else if (resp.body == FG_HTTP_BODY_CHUNKED) {
                fg_http_chunked_init(&h->ch);
                h->phase = P_CHUNKED;
            } else {
                h->close_after = true;
                h->phase = P_CLOSE;
            }
            break;
        }
        case P_LENGTH: {
            size_t n = h->left < len ? (size_t)h->left : len;
            body_take(h, in, n);
            h->left -= n;
            if (h->left == 0) {
                conn_done(h);
                return;
            }
            return;
        }
        case P_CHUNKED: {
            size_t n = len < HEAD_MAX ? len : HEAD_MAX;
            const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
            size_t used = 0;
            enum fg_http_error err;
            enum fg_http_chunk_status cs = fg_http_chunked_parse(&h->ch, p, n, &used, &err);
            evbuffer_drain(in, used);
            if (cs == FG_CHUNK_ERROR) {
                conn_fail(h, "malformed chunked body");
                return;
            } else if (cs == FG_CHUNK_DONE) {
                conn_done(h);
                return;
            } else if (cs == FG_CHUNK_DATA) {
                size_t have = evbuffer_get_length(in);
                size_t take = h->ch.data_left < have ? (size_t)h->ch.data_left : have;
                body_take(h, in, take);
                fg_http_chunked_data(&h->ch, take);
                if (evbuffer_get_length(h->body) > h->c->max_body) {
                    conn_fail(h, "response body too large");
                    return;
                }
                if (take == 0)
                    return;
            } else if (used == 0) {
                return;
            }
            break;
        }
        case P_CLOSE:
            body_take(h, in, len);
            if (evbuffer_get_length(h->body) > h->c->max_body) {
                conn_fail(h, "response body too large");
                return;
            }
            return;
        case P_IDLE:
            return;
        }
    }
}

static void conn_event(struct bufferevent *bev, short what, void *arg)
{
    struct hconn *h = arg;
    FG_ASSERT(h->magic == HCONN_MAGIC);
    if (what & BEV_EVENT_CONNECTED) {
        h->connected = true;
        if (h->ssl != NULL)
            fg_tls_handshake_done(h->ssl, 0);
        return;
    }
    if ((what & BEV_EVENT_EOF) && h->phase == P_CLOSE && h->req != NULL) {
        struct evbuffer *in = bufferevent_get_input(bev);
        body_take(h, in, evbuffer_get_length(in));
        if (evbuffer_get_length(h->body) > h->c->max_body) {
            conn_fail(h, "response body too large");
            return;
        }
        h->close_after = true;
        conn_done(h);
        return;
    }
    conn_fail(h, (what & BEV_EVENT_TIMEOUT) ? "timeout"
                 : (what & BEV_EVENT_EOF)   ? "connection closed"
                 : h->connected             ? "connection error"
                                            : "connect failed");
}

static void conn_start_request(struct hconn *h, struct fg_httpc_req *r)
{
    h->req = r;
    r->conn = h;
    h->phase = P_HEAD;
    h->got_any = false;
    h->status = 0;
    bufferevent_setcb(h->bev, conn_read, NULL, conn_event, h);
    bufferevent_set_timeouts(h->bev, NULL, NULL);
    size_t n = evbuffer_get_length(r->request);
    struct evbuffer *out = bufferevent_get_output(h->bev);
    if (evbuffer_add(out, evbuffer_pullup(r->request, -1), n) != 0) {
        conn_fail(h, "out of memory");
        return;
    }
    bufferevent_enable(h->bev, EV_READ | EV_WRITE);
}

/* A new connection for r to the resolved address in r->addr. */
static void req_open(struct fg_httpc_req *r)
{
    struct fg_httpc *c = r->c;
    struct hconn *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        req_fail(r, "out of memory", false);
        return;
    }
    h->magic = HCONN_MAGIC;
    h->c = c;
    h->body = evbuffer_new();
    if (h->body == NULL)
        goto oom;
    if (c->tls != NULL) {
        h->ssl = fg_tls_client_ssl_new(c->tls, c->url.host, NULL);
        if (h->ssl == NULL)
            goto oom;
        h->bev = bufferevent_openssl_socket_new(c->base, -1, h->ssl, BUFFEREVENT_SSL_CONNECTING,
                                                BEV_OPT_CLOSE_ON_FREE);
        if (h->bev == NULL) {
            SSL_free(h->ssl);
            h->ssl = NULL;
            goto oom;
        }
        /* AWS closes without close_notify at times; the framing says where bodies end. */
        bufferevent_openssl_set_allow_dirty_shutdown(h->bev, 1);
    } else {
        h->bev = bufferevent_socket_new(c->base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (h->bev == NULL)
            goto oom;
    }
    c->st.connects++;
    h->req = r;
    r->conn = h;
    bufferevent_setcb(h->bev, conn_read, NULL, conn_event, h);
    if (bufferevent_socket_connect(h->bev, (struct sockaddr *)&r->addr, (int)r->addr_len) != 0) {
        h->ssl = NULL; /* never started: no handshake to count */
        conn_fail(h, "connect failed");
        return;
    }
    conn_start_request(h, r);
    return;
oom:
    conn_free(h);
    req_fail(r, "out of memory", false);
}

static void step_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct fg_httpc_req *r = arg;
    FG_ASSERT(r->magic == HREQ_MAGIC);
    if (r->fail != NULL)
        req_fail(r, r->fail, false);
    else if (r->addr_len > 0)
        req_open(r);
    else
        req_connect(r);
}

static void dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
    if (result == EVUTIL_EAI_CANCEL) {
        if (res != NULL)
            evutil_freeaddrinfo(res);
        return; /* the request is being freed */
    }
    struct fg_httpc_req *r = arg;
    FG_ASSERT(r->magic == HREQ_MAGIC);
    struct fg_httpc *c = r->c;
    r->dns = NULL;
    r->dns_done = true;
    if (result != 0 || res == NULL || res->ai_addrlen > sizeof(r->addr)) {
        fg_warn("%s: cannot resolve %s: %s", c->name, c->url.host,
                result != 0 ? evutil_gai_strerror(result) : "no address");
        r->fail = "name resolution failed";
    } else {
        memcpy(&r->addr, res->ai_addr, res->ai_addrlen);
        r->addr_len = (socklen_t)res->ai_addrlen;
        memcpy(&c->addr, res->ai_addr, res->ai_addrlen);
        c->addr_len = r->addr_len;
        c->addr_expires_ms = fg_mono_ms() + DNS_CACHE_MS;
    }
    if (res != NULL)
        evutil_freeaddrinfo(res);
    event_active(r->step, EV_TIMEOUT, 0); /* never finish from inside the resolver */
}

/* Give r a connection: an idle one, or a new one (after DNS if the cache is stale). */
static void req_connect(struct fg_httpc_req *r)
{
    struct fg_httpc *c = r->c;
    if (c->idle != NULL) {
        struct hconn *h = c->idle;
        c->idle = h->next;
        h->next = NULL;
        c->n_idle--;
        c->st.reused++;
        conn_start_request(h, r);
        return;
    }
    if (c->addr_len > 0 && fg_mono_ms() < c->addr_expires_ms) {
        memcpy(&r->addr, &c->addr, c->addr_len);
        r->addr_len = c->addr_len;
        req_open(r);
        return;
    }
    if (c->dns == NULL) {
        r->fail = "no resolver";
        event_active(r->step, EV_TIMEOUT, 0);
        return;
    }
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC,
                                    .ai_socktype = SOCK_STREAM,
                                    .ai_protocol = IPPROTO_TCP,
                                    .ai_flags = EVUTIL_AI_ADDRCONFIG};
    r->dns = NULL;
    r->dns_done = false;
    struct evdns_getaddrinfo_request *d =
        evdns_getaddrinfo(c->dns, c->url.host, c->port_text, &hints, dns_cb, r);
    /* The callback may have run already (an /etc/hosts answer): only a pending lookup is
     * kept for cancelling. */
    if (!r->dns_done)
        r->dns = d;
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct fg_httpc_req *r = arg;
    FG_ASSERT(r->magic == HREQ_MAGIC);
    if (r->conn != NULL) {
        struct hconn *h = r->conn;
        h->req = NULL;
        conn_free(h); /* an answer may still be on its way: that connection is done */
    }
    req_fail(r, "timeout", true);
}

/* ---- the API ------------------------------------------------------------------------------- */

struct fg_httpc *fg_httpc_new(struct event_base *base, struct evdns_base *dns, const char *url,
                              const struct fg_httpc_opts *o, char *err, size_t errlen)
{
    struct fg_httpc *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->base = base;
    c->dns = dns;
    snprintf(c->name, sizeof(c->name), "%s", o->name != NULL ? o->name : "http client");
    if (!fg_url_parse(url, &c->url, err, errlen))
        goto fail;
    if (!c->url.tls && !o->allow_plain_http && !fg_url_is_loopback(&c->url)) {
        snprintf(err, errlen, "%s: '%s': plain http is only for a loopback endpoint; use https",
                 c->name, url);
        goto fail;
    }
    snprintf(c->port_text, sizeof(c->port_text), "%d", c->url.port);
    c->max_idle = o->max_idle > 0 ? o->max_idle : MAX_IDLE_DEFAULT;
    c->idle_timeout_ms = o->idle_timeout_ms > 0 ? o->idle_timeout_ms : IDLE_TIMEOUT_MS;
    c->max_body = o->max_body > 0 ? o->max_body : MAX_BODY_DEFAULT;
    c->discard_body = o->discard_body;
    if (literal_addr(c))
        c->addr_expires_ms = UINT64_MAX;
    else
        c->addr_len = 0;
    if (c->url.tls) {
        struct fg_tls_client_opts to = {.name = c->name, .ca_file = o->ca_file, .alpn = "http/1.1"};
        c->tls = fg_tls_client_new(&to, err, errlen);
        if (c->tls == NULL)
            goto fail;
    }
    return c;
fail:
    free(c);
    return NULL;
}

const struct fg_url *fg_httpc_url(const struct fg_httpc *c)
{
    return &c->url;
}

void fg_httpc_get_stats(const struct fg_httpc *c, struct fg_httpc_stats *st)
{
    *st = c->st;
    st->idle = c->n_idle;
}

struct fg_httpc_req *fg_httpc_send(struct fg_httpc *c, enum fg_http_method method,
                                   struct evbuffer *request, uint64_t timeout_ms, fg_httpc_cb cb,
                                   void *arg)
{
    struct fg_httpc_req *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->magic = HREQ_MAGIC;
    r->c = c;
    r->method = method;
    r->cb = cb;
    r->arg = arg;
    r->request = evbuffer_new();
    r->timer = evtimer_new(c->base, timeout_cb, r);
    r->step = event_new(c->base, -1, 0, step_cb, r);
    if (r->request == NULL || r->timer == NULL || r->step == NULL ||
        evbuffer_add_buffer(r->request, request) != 0) {
        if (r->request != NULL)
            evbuffer_free(r->request);
        if (r->timer != NULL)
            event_free(r->timer);
        if (r->step != NULL)
            event_free(r->step);
        free(r);
        return NULL;
    }
    r->next = c->reqs;
    if (c->reqs != NULL)
        c->reqs->prev = r;
    c->reqs = r;
    c->st.requests++;
    struct timeval tv = {.tv_sec = (time_t)(timeout_ms / 1000),
                         .tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000};
    event_add(r->timer, &tv);
    /* Connecting may fail at once: start from the loop, so cb never runs in here. */
    event_active(r->step, EV_TIMEOUT, 0);
    return r;
}

void fg_httpc_cancel(struct fg_httpc_req *r)
{
    if (r == NULL)
        return;
    FG_ASSERT(r->magic == HREQ_MAGIC);
    if (r->conn != NULL) {
        r->conn->req = NULL;
        conn_free(r->conn);
        r->conn = NULL;
    }
    req_unlink_free(r);
}

bool fg_httpc_header(const struct fg_httpc_result *res, const char *name, const char **value,
                     size_t *len)
{
    if (res->head == NULL)
        return false;
    size_t nl = strlen(name);
    const char *p = memchr(res->head, '\n', res->head_len);
    const char *end = res->head + res->head_len;
    while (p != NULL && p + 1 < end) {
        const char *line = p + 1;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (eol == NULL)
            eol = end;
        if ((size_t)(eol - line) > nl && line[nl] == ':' && fg_http_name_eq(line, nl, name)) {
            const char *v = line + nl + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *value = v;
            *len = (size_t)(ve - v);
            return true;
        }
        p = eol < end ? eol : NULL;
    }
    return false;
}

void fg_httpc_free(struct fg_httpc *c)
{
    if (c == NULL)
        return;
    while (c->reqs != NULL)
        fg_httpc_cancel(c->reqs);
    while (c->idle != NULL) {
        struct hconn *h = c->idle;
        c->idle = h->next;
        conn_free(h);
    }
    fg_tls_client_unref(c->tls);
    free(c);
}
