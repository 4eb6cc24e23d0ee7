/*
 * admin.c — a deliberately small HTTP/1.1 server for operators and health checks. It
 * reuses the strict request parser, answers one request per connection and closes.
 */
#include "admin/admin.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "core/core.h"
#include "http/http.h"

#define FG_ADMIN_TIMEOUT_S 10
#define FG_ADMIN_BODY_MAX  (4u << 20) /* a warm-up list of some 50,000 URLs */

static struct {
    struct event_base *base;
    struct evconnlistener *evl;
    pthread_t thread;
    bool running;
    const struct fg_admin_ops *ops;
} AD;

static void send_response(struct bufferevent *bev, int status, const char *ctype,
                          struct evbuffer *body, bool head_only)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                        status, fg_http_reason(status), ctype, evbuffer_get_length(body));
    if (!head_only)
        evbuffer_add_buffer(out, body);
}

static void text_response(struct bufferevent *bev, int status, const char *text, bool head_only)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, text, strlen(text));
    send_response(bev, status, "text/plain; charset=utf-8", b, head_only);
    evbuffer_free(b);
}

static bool authorized(const struct fg_http_request *r)
{
    struct fg_config *cfg = AD.ops->config();
    const char *token = cfg->admin.token;
    bool ok = true;
    if (token != NULL && token[0] != '\0') {
        const struct fg_http_header *h =
            fg_http_find_header(r->headers, r->n_headers, "authorization");
        size_t tl = strlen(token);
        ok = h != NULL && h->value_len == tl + 7 && strncmp(h->value, "Bearer ", 7) == 0 &&
             memcmp(h->value + 7, token, tl) == 0;
    }
    fg_config_unref(cfg);
    return ok;
}

/* The value of parameter name in a query, percent-decoded into out. false if absent or
 * malformed. */
static bool query_param(const char *q, size_t qlen, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name), i = 0;
    while (i < qlen) {
        size_t j = i;
        while (j < qlen && q[j] != '&')
            j++;
        if (j - i > nl && memcmp(q + i, name, nl) == 0 && q[i + nl] == '=') {
            size_t o = 0;
            for (size_t k = i + nl + 1; k < j; k++) {
                char c = q[k];
                if (c == '%') {
                    int hi = k + 2 < j ? fg_hex_value(q[k + 1]) : -1;
                    int lo = k + 2 < j ? fg_hex_value(q[k + 2]) : -1;
                    if (hi < 0 || lo < 0)
                        return false;
                    c = (char)(hi * 16 + lo);
                    k += 2;
                } else if (c == '+') {
                    c = ' ';
                }
                if (o + 1 >= cap)
                    return false;
                out[o++] = c;
            }
            out[o] = '\0';
            return true;
        }
        i = j + 1;
    }
    return false;
}

/* POST /cache/purge?url=http://host/path[&prefix=1]: the key is host/path?query. */
static void purge(struct bufferevent *bev, const struct fg_http_request *r)
{
    char url[8192], flag[8];
    if (r->method != FG_HTTP_POST) {
        text_response(bev, 405, "405 Method Not Allowed: use POST\n", false);
        return;
    }
    if (r->query == NULL || !query_param(r->query, r->query_len, "url", url, sizeof(url))) {
        text_response(bev, 400, "400 Bad Request: give ?url=http://host/path[&prefix=1]\n", false);
        return;
    }
    bool prefix =
        query_param(r->query, r->query_len, "prefix", flag, sizeof(flag)) && strcmp(flag, "1") == 0;
    const char *k = url;
    if (strncmp(k, "http://", 7) == 0)
        k += 7;
    else if (strncmp(k, "https://", 8) == 0)
        k += 8;
    const char *slash = strchr(k, '/');
    if (slash == NULL || slash == k) {
        text_response(bev, 400, "400 Bad Request: the url needs a host and a path\n", false);
        return;
    }
    for (char *p = (char *)k; p < slash; p++)
        *p = (char)tolower((unsigned char)*p);
    size_t n = AD.ops->cache_purge ? AD.ops->cache_purge(k, strlen(k), prefix) : 0;
    char msg[64];
    snprintf(msg, sizeof(msg), "{\"purged\":%zu}\n", n);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, msg, strlen(msg));
    send_response(bev, 200, "application/json", b, false);
    evbuffer_free(b);
}

/* POST /cache/warm[?concurrency=N] with one URL per line. */
static void warm(struct bufferevent *bev, const struct fg_http_request *r, const char *body,
                 size_t body_len)
{
    char conc[16];
    uint64_t c = 8;
    if (r->method != FG_HTTP_POST) {
        text_response(bev, 405, "405 Method Not Allowed: use POST\n", false);
        return;
    }
    if (r->query != NULL &&
        query_param(r->query, r->query_len, "concurrency", conc, sizeof(conc)) &&
        (!fg_parse_uint(conc, 256, &c) || c == 0)) {
        text_response(bev, 400, "400 Bad Request: concurrency is 1 to 256\n", false);
        return;
    }
    struct fg_addr target;
    if (AD.ops->warm_target == NULL || !AD.ops->warm_target(&target)) {
        text_response(bev, 503, "503 Service Unavailable: no listener to warm through\n", false);
        return;
    }
    size_t accepted = 0, bad = 0;
    char msg[256];
    if (!fg_admin_warm_add(AD.base, &target, body, body_len, (unsigned)c, &accepted, &bad)) {
        if (bad > 0)
            snprintf(msg, sizeof(msg),
                     "400 Bad Request: line %zu is not an http:// URL (https:// included: "
                     "warm-ups are plain HTTP requests); nothing was queued\n",
                     bad);
        else
            snprintf(msg, sizeof(msg), "503 Service Unavailable: the warm-up queue is full\n");
        text_response(bev, bad > 0 ? 400 : 503, msg, false);
        return;
    }
    snprintf(msg, sizeof(msg), "{\"accepted\":%zu}\n", accepted);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, msg, strlen(msg));
    send_response(bev, 202, "application/json", b, false);
    evbuffer_free(b);
}

static void handle(struct bufferevent *bev, const struct fg_http_request *r, const char *body,
                   size_t body_len)
{
    bool head_only = r->method == FG_HTTP_HEAD;
    bool get = r->method == FG_HTTP_GET || head_only;
    const char *p = r->path;
    size_t n = r->path_len;
#define IS(lit) (n == sizeof(lit) - 1 && memcmp(p, lit, n) == 0)
    if (IS("/healthz")) {
        /* Unauthenticated on purpose: health checkers carry no token. */
        if (!get)
            text_response(bev, 405, "405 Method Not Allowed\n", false);
        else if (AD.ops->draining())
            text_response(bev, 503, "draining\n", head_only);
        else
            text_response(bev, 200, "ok\n", head_only);
        return;
    }
    if (!authorized(r)) {
        text_response(bev, 401, "401 Unauthorized: admin token required\n", head_only);
        return;
    }
    if (IS("/stats")) {
        if (!get) {
            text_response(bev, 405, "405 Method Not Allowed\n", false);
            return;
        }
        struct evbuffer *b = evbuffer_new();
        AD.ops->stats_json(b);
        send_response(bev, 200, "application/json", b, head_only);
        evbuffer_free(b);
        return;
    }
    if (IS("/metrics") && get) {
        struct evbuffer *b = evbuffer_new();
        AD.ops->metrics(b);
        send_response(bev, 200, "text/plain; version=0.0.4; charset=utf-8", b, head_only);
        evbuffer_free(b);
        return;
    }
    if (IS("/config") && get) {
        struct fg_config *cfg = AD.ops->config();
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        if (f != NULL) {
            fg_config_dump(cfg, f);
            fclose(f);
        }
        fg_config_unref(cfg);
        struct evbuffer *b = evbuffer_new();
        evbuffer_add(b, text ? text : "", len);
        free(text);
        send_response(bev, 200, "text/plain; charset=utf-8", b, head_only);
        evbuffer_free(b);
        return;
    }
    if (IS("/cache/purge")) {
        purge(bev, r);
        return;
    }
    if (IS("/cache/warm")) {
        warm(bev, r, body, body_len);
        return;
    }
#undef IS
    text_response(bev, 404,
                  "404 Not Found: try /healthz, /stats, /metrics, /config, /cache/purge or "
                  "/cache/warm\n",
                  head_only);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_free(bev);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    bufferevent_free(bev);
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    static const struct fg_http_limits lim = {
        .max_request_line = 4096, .max_header_bytes = 16384, .max_headers = 64};
    size_t n = len < 16385 ? len : 16385;
    const char *buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
    struct fg_http_request *r = malloc(sizeof(*r));
    if (r == NULL) {
        bufferevent_free(bev);
        return;
    }
    enum fg_http_error err = FG_HTTP_E_NONE;
    int rc = fg_http_parse_request(buf, n, &lim, r, &err);
    if (rc == FG_HTTP_INCOMPLETE) {
        free(r);
        return;
    }
    const char *body = NULL;
    size_t body_len = 0;
    if (rc > 0 && r->body == FG_HTTP_BODY_LENGTH && r->content_length > 0) {
        if (r->content_length > FG_ADMIN_BODY_MAX) {
            bufferevent_disable(bev, EV_READ);
            bufferevent_enable(bev, EV_WRITE);
            text_response(bev, 413, "413 Content Too Large: at most 4 MiB\n", false);
            free(r);
            return;
        }
        body_len = (size_t)r->content_length;
        if (len < (size_t)rc + body_len) {
            free(r); /* parsed again once the whole body is in */
            return;
        }
        buf = (const char *)evbuffer_pullup(in, (ev_ssize_t)((size_t)rc + body_len));
        rc = fg_http_parse_request(buf, (size_t)rc + body_len, &lim, r, &err);
        body = buf + rc;
    } else if (rc > 0 && r->body == FG_HTTP_BODY_CHUNKED) {
        bufferevent_disable(bev, EV_READ);
        bufferevent_enable(bev, EV_WRITE);
        text_response(bev, 411, "411 Length Required: send a Content-Length\n", false);
        free(r);
        return;
    }
    bufferevent_disable(bev, EV_READ);
    bufferevent_enable(bev, EV_WRITE);
    if (rc == FG_HTTP_ERROR) {
        char msg[128];
        snprintf(msg, sizeof(msg), "%d %s: %s\n", fg_http_error_status(err),
                 fg_http_reason(fg_http_error_status(err)), fg_http_error_name(err));
        text_response(bev, fg_http_error_status(err), msg, false);
    } else {
        handle(bev, r, body, body_len);
    }
    free(r);
}

static void accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    struct bufferevent *bev = bufferevent_socket_new(AD.base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        close(fd);
        return;
    }
    struct timeval tv = {.tv_sec = FG_ADMIN_TIMEOUT_S};
    bufferevent_set_timeouts(bev, &tv, &tv);
    bufferevent_setcb(bev, conn_read_cb, conn_write_cb, conn_event_cb, NULL);
    /* EV_WRITE only once a response is queued: libevent calls the write callback of an
     * empty, writable buffer, and ours closes the connection. */
    bufferevent_enable(bev, EV_READ);
}

static void *admin_main(void *arg)
{
    event_base_loop(AD.base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

bool fg_admin_start(const struct fg_addr *addr, const struct fg_admin_ops *ops)
{
    AD.ops = ops;
    AD.base = event_base_new();
    if (AD.base == NULL)
        return false;
    AD.evl = evconnlistener_new_bind(
        AD.base, accept_cb, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
        128, (const struct sockaddr *)&addr->ss, (int)addr->len);
    if (AD.evl == NULL) {
        fg_err("admin: cannot listen on %s: %s", addr->text, strerror(errno));
        event_base_free(AD.base);
        AD.base = NULL;
        return false;
    }
    if (!fg_admin_agentstat_start(AD.base, ops))
        fg_warn("admin: out of memory: the agent's numbers are left out of /stats");
    if (pthread_create(&AD.thread, NULL, admin_main, NULL) != 0) {
        fg_err("admin: cannot start its thread");
        return false;
    }
    AD.running = true;
    fg_notice("admin listening on %s", addr->text);
    return true;
}

void fg_admin_stop(void)
{
    if (!AD.running)
        return;
    event_base_loopbreak(AD.base);
    pthread_join(AD.thread, NULL);
    fg_admin_agentstat_stop();
    evconnlistener_free(AD.evl);
    event_base_free(AD.base);
    AD.running = false;
}
