/*
 * admin.c — a deliberately small HTTP/1.1 server for operators and health checks. It
 * reuses the strict request parser, answers one request per connection and closes (but
 * for /stats/stream, which stream.c keeps open).
 */
#include "admin/internal.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "core/core.h"
#include "http/http.h"
#include "json/json.h"

#define FG_ADMIN_TIMEOUT_S 10
#define FG_ADMIN_BODY_MAX  (4u << 20) /* a warm-up list of some 50,000 URLs */

static struct {
    struct event_base *base;
    struct evconnlistener *evl;
    pthread_t thread;
    bool running;
    const struct fg_admin_ops *ops;
} AD;

void fg_admin_respond(struct bufferevent *bev, int status, const char *ctype, const char *fields,
                      const void *body, size_t len, bool head_only)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    bool own_cc = fields != NULL && strstr(fields, "Cache-Control:") != NULL;
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s%s",
                        status, fg_http_reason(status), ctype, len,
                        own_cc ? "" : "Cache-Control: no-store\r\n", fields ? fields : "");
    evbuffer_add(out, "Connection: close\r\n\r\n", 21);
    if (!head_only)
        evbuffer_add(out, body, len);
}

static void send_response(struct bufferevent *bev, int status, const char *ctype,
                          struct evbuffer *body, bool head_only)
{
    size_t len = evbuffer_get_length(body);
    fg_admin_respond(bev, status, ctype, NULL, evbuffer_pullup(body, -1), len, head_only);
}

static void text_response(struct bufferevent *bev, int status, const char *text, bool head_only)
{
    fg_admin_respond(bev, status, "text/plain; charset=utf-8", NULL, text, strlen(text), head_only);
}

struct fg_config *fg_admin_config(void)
{
    return AD.ops->config();
}

bool fg_admin_dashboard_on(void)
{
    struct fg_config *cfg = AD.ops->config();
    bool on = cfg->admin.dashboard;
    fg_config_unref(cfg);
    return on;
}

void fg_admin_stats_json(struct evbuffer *out)
{
    struct fg_admin_stream_stats st;
    fg_admin_stream_stats(&st);
    evbuffer_add(out, "\"instance\":{\"name\":", 19);
    fg_json_put_string(out, fg_admin_instance(), strlen(fg_admin_instance()), false);
    evbuffer_add_printf(out,
                        ",\"source\":\"%s\"},\"dashboard\":{\"viewers\":%" PRIu64
                        ",\"accepted\":%" PRIu64 ",\"refused\":%" PRIu64
                        ",\"dropped_slow\":%" PRIu64 ",\"history_bytes\":%zu},\"emf\":",
                        fg_admin_instance_source(), st.viewers, st.accepted, st.refused,
                        st.dropped_slow, fg_admin_summary_history_bytes());
    struct fg_config *cfg = AD.ops->config();
    if (!cfg->emf.enabled) {
        evbuffer_add(out, "null,", 5);
    } else {
        struct fg_admin_emf_stats e;
        fg_admin_emf_stats(&e);
        evbuffer_add(out, "{\"target\":", 10);
        fg_json_put_string(out, cfg->emf.target, strlen(cfg->emf.target), false);
        evbuffer_add_printf(out,
                            ",\"records\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"dropped\":%" PRIu64
                            ",\"errors\":%" PRIu64 ",\"last_error\":",
                            e.records, e.bytes, e.dropped, e.errors);
        const char *le = fg_admin_emf_last_error();
        fg_json_put_string(out, le, strlen(le), false);
        evbuffer_add(out, "},", 2);
    }
    fg_config_unref(cfg);
}

void fg_admin_stats_metrics(struct evbuffer *out)
{
    struct fg_admin_stream_stats st;
    struct fg_admin_emf_stats e;
    fg_admin_stream_stats(&st);
    fg_admin_emf_stats(&e);
    evbuffer_add_printf(
        out,
        "# HELP flashgate_dashboard_viewers Viewers following /stats/stream.\n"
        "# TYPE flashgate_dashboard_viewers gauge\n"
        "flashgate_dashboard_viewers %" PRIu64 "\n"
        "# HELP flashgate_dashboard_viewers_refused_total Viewers answered 503 (stream_viewers).\n"
        "# TYPE flashgate_dashboard_viewers_refused_total counter\n"
        "flashgate_dashboard_viewers_refused_total %" PRIu64 "\n"
        "# HELP flashgate_dashboard_viewers_dropped_total Viewers dropped for leaving more than "
        "stream_buffer unread.\n"
        "# TYPE flashgate_dashboard_viewers_dropped_total counter\n"
        "flashgate_dashboard_viewers_dropped_total %" PRIu64 "\n"
        "# HELP flashgate_emf_records_total EMF records written or sent.\n"
        "# TYPE flashgate_emf_records_total counter\n"
        "flashgate_emf_records_total %" PRIu64 "\n"
        "# HELP flashgate_emf_dropped_total EMF records that could not be written or sent.\n"
        "# TYPE flashgate_emf_dropped_total counter\n"
        "flashgate_emf_dropped_total %" PRIu64 "\n"
        "# HELP flashgate_emf_errors_total EMF write, connect and send failures.\n"
        "# TYPE flashgate_emf_errors_total counter\n"
        "flashgate_emf_errors_total %" PRIu64 "\n",
        st.viewers, st.refused, st.dropped_slow, e.records, e.dropped, e.errors);
}

/* Decode base64 (RFC 4648, padded) into out; the decoded length, or -1 if malformed or
 * longer than cap. */
static long base64_decode(const char *in, size_t len, char *out, size_t cap)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (len % 4 != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        unsigned v = 0, pad = 0;
        for (size_t k = 0; k < 4; k++) {
            const char *p = in[i + k] == '=' ? NULL : memchr(abc, in[i + k], 64);
            if (p == NULL && (in[i + k] != '=' || i + 4 != len || k < 2))
                return -1;
            if (p == NULL)
                pad++;
            else if (pad > 0)
                return -1; /* data after padding */
            v = v << 6 | (p ? (unsigned)(p - abc) : 0);
        }
        for (size_t k = 0; k < 3 - pad; k++) {
            if (o >= cap)
                return -1;
            out[o++] = (char)(v >> (16 - 8 * k) & 0xff);
        }
    }
    return (long)o;
}

/* The token as a bearer token, or as the password of Basic authentication (any user
 * name): a browser cannot send a bearer token when it opens the dashboard, but it asks
 * for Basic credentials and sends them on every request of the page, the stream too. */
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
        char cred[512];
        long cl;
        if (!ok && h != NULL && h->value_len > 6 && strncasecmp(h->value, "Basic ", 6) == 0 &&
            (cl = base64_decode(h->value + 6, h->value_len - 6, cred, sizeof(cred))) > 0) {
            const char *colon = memchr(cred, ':', (size_t)cl);
            ok = colon != NULL && (size_t)(cred + cl - colon - 1) == tl &&
                 memcmp(colon + 1, token, tl) == 0;
        }
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

/* A purge in progress: its connection waits (reading and writing off) for the answer. */
struct purge_wait {
    struct bufferevent *bev;
    size_t purged;                      /* by the tags before the last one */
    struct fg_admin_purge_result fleet; /* of every tag: published if all were, the fewest
                                           receivers, the first error */
    bool first;
    size_t tags_left;
    char tags[8192]; /* the tags still to purge, NUL-separated */
    size_t next;
};

static void purge_answer(struct bufferevent *bev, const struct fg_admin_purge_result *res,
                         size_t purged)
{
    struct evbuffer *b = evbuffer_new();
    if (!res->fleet)
        evbuffer_add_printf(b, "{\"purged\":%zu}\n", purged);
    else if (res->published)
        evbuffer_add_printf(
            b, "{\"purged\":%zu,\"fleet\":{\"published\":true,\"receivers\":%" PRIu64 "}}\n",
            purged, res->receivers);
    else
        evbuffer_add_printf(b,
                            "{\"purged\":%zu,\"fleet\":{\"published\":false,\"error\":\"%s\"}}\n",
                            purged, res->error ? res->error : "unknown");
    bufferevent_enable(bev, EV_WRITE);
    send_response(bev, 200, "application/json", b, false);
    evbuffer_free(b);
}

static void purge_done(const struct fg_admin_purge_result *res, void *arg);

/* A tag as the cache keeps them (cache.h's fg_cache_tag_valid): 1 to 128 bytes, visible
 * characters but the comma. */
static bool tag_ok(const char *t, size_t len)
{
    if (len == 0 || len > 128)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)t[i] <= 0x20 || t[i] == 0x7f || t[i] == ',')
            return false;
    return true;
}

/* The next tag of a multi-tag purge (each one goes out as its own purge). */
static void purge_next_tag(struct purge_wait *w)
{
    const char *tag = w->tags + w->next;
    size_t len = strlen(tag);
    w->next += len + 1;
    w->tags_left--;
    AD.ops->cache_purge(FG_ADMIN_PURGE_TAG, tag, len, AD.base, purge_done, w);
}

static void purge_done(const struct fg_admin_purge_result *res, void *arg)
{
    struct purge_wait *w = arg;
    w->purged += res->purged;
    if (!w->first) {
        w->first = true;
        w->fleet = *res;
    } else {
        if (res->receivers < w->fleet.receivers)
            w->fleet.receivers = res->receivers;
        if (w->fleet.published && !res->published) {
            w->fleet.published = false;
            w->fleet.error = res->error;
        }
    }
    if (w->tags_left > 0) { /* every tag is purged here, whatever the fleet said */
        purge_next_tag(w);
        return;
    }
    purge_answer(w->bev, &w->fleet, w->purged);
    free(w);
}

/* POST /cache/purge?url=http://host/path[&prefix=1] (the key is host/path?query), or
 * ?tag=TAG (several tags separated by spaces or commas: objects with any of them). */
static void purge(struct bufferevent *bev, const struct fg_http_request *r)
{
    char url[8192], flag[8];
    if (r->method != FG_HTTP_POST) {
        text_response(bev, 405, "405 Method Not Allowed: use POST\n", false);
        return;
    }
    struct purge_wait *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        text_response(bev, 503, "503 Service Unavailable: out of memory\n", false);
        return;
    }
    w->bev = bev;
    if (r->query != NULL && query_param(r->query, r->query_len, "tag", url, sizeof(url))) {
        /* split on spaces and commas into NUL-separated tags, each checked */
        size_t o = 0, n = 0;
        for (const char *p = url; *p != '\0';) {
            if (*p == ' ' || *p == ',') {
                p++;
                continue;
            }
            const char *t = p;
            while (*p != '\0' && *p != ' ' && *p != ',')
                p++;
            if (!tag_ok(t, (size_t)(p - t))) {
                free(w);
                text_response(bev, 400,
                              "400 Bad Request: a tag is 1 to 128 visible characters, no comma\n",
                              false);
                return;
            }
            memcpy(w->tags + o, t, (size_t)(p - t));
            o += (size_t)(p - t);
            w->tags[o++] = '\0';
            n++;
        }
        if (n == 0) {
            free(w);
            text_response(bev, 400,
                          "400 Bad Request: give ?tag=TAG (spaces or commas between several)\n",
                          false);
            return;
        }
        w->tags_left = n;
        bufferevent_disable(bev, EV_READ | EV_WRITE);
        purge_next_tag(w);
        return;
    }
    if (r->query == NULL || !query_param(r->query, r->query_len, "url", url, sizeof(url))) {
        free(w);
        text_response(bev, 400,
                      "400 Bad Request: give ?url=http://host/path[&prefix=1] or ?tag=TAG\n",
                      false);
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
        free(w);
        text_response(bev, 400, "400 Bad Request: the url needs a host and a path\n", false);
        return;
    }
    for (char *p = (char *)k; p < slash; p++)
        *p = (char)tolower((unsigned char)*p);
    bufferevent_disable(bev, EV_READ | EV_WRITE);
    AD.ops->cache_purge(prefix ? FG_ADMIN_PURGE_PREFIX : FG_ADMIN_PURGE_KEY, k, strlen(k), AD.base,
                        purge_done, w);
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

/* POST /waitroom/OP?room=NAME[&rate=50/s]: open, pause, resume, activate, deactivate a
 * waiting room (every room without room=), or set its rate. Fleet-wide with Redis. */
static void waitroom_op(struct bufferevent *bev, const struct fg_http_request *r, const char *op)
{
    static const char *const ops[] = {"open", "pause", "resume", "activate", "deactivate", "rate"};
    char room[FG_CONF_NAME_MAX], rate[32];
    bool known = false;
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        known |= strcmp(op, ops[i]) == 0;
    if (r->method != FG_HTTP_POST) {
        text_response(bev, 405, "405 Method Not Allowed: use POST\n", false);
        return;
    }
    if (!known || AD.ops->waitroom == NULL) {
        text_response(bev, 404,
                      "404 Not Found: POST /waitroom/open, pause, resume, activate, deactivate "
                      "or rate?rate=50/s (&room=NAME: one room)\n",
                      false);
        return;
    }
    bool one = r->query != NULL && query_param(r->query, r->query_len, "room", room, sizeof(room));
    uint64_t value = 0;
    if (strcmp(op, "rate") == 0) {
        char norm[40];
        const char *slash;
        if (r->query == NULL || !query_param(r->query, r->query_len, "rate", rate, sizeof(rate)) ||
            (slash = strchr(rate, '/')) == NULL || slash == rate) {
            text_response(bev, 400, "400 Bad Request: give ?rate=50/s (or 3000/m)\n", false);
            return;
        }
        snprintf(norm, sizeof(norm), "%.*sr%s", (int)(slash - rate), rate, slash);
        if (!fg_parse_rate(norm, &value) || value == 0) {
            text_response(bev, 400, "400 Bad Request: give ?rate=50/s (or 3000/m)\n", false);
            return;
        }
    }
    size_t n = AD.ops->waitroom(one ? room : NULL, op, value);
    if (n == 0) {
        text_response(bev, 404, "404 Not Found: no such waiting room\n", false);
        return;
    }
    char msg[64];
    snprintf(msg, sizeof(msg), "{\"rooms\":%zu}\n", n);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, msg, strlen(msg));
    send_response(bev, 200, "application/json", b, false);
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
        else if (AD.ops->warming != NULL && AD.ops->warming())
            text_response(bev, 503, "warming\n", head_only);
        else
            text_response(bev, 200, "ok\n", head_only);
        return;
    }
    if (!authorized(r)) {
        static const char msg[] = "401 Unauthorized: admin token required (Authorization: "
                                  "Bearer TOKEN, or Basic with the token as password)\n";
        fg_admin_respond(bev, 401, "text/plain; charset=utf-8",
                         "WWW-Authenticate: Basic realm=\"flashgate admin\", charset=\"UTF-8\"\r\n",
                         msg, sizeof(msg) - 1, head_only);
        return;
    }
    if (IS("/stats/stream") && fg_admin_dashboard_on()) {
        if (r->method != FG_HTTP_GET)
            text_response(bev, 405, "405 Method Not Allowed: GET it\n", head_only);
        else
            fg_admin_stream_attach(bev, r);
        return;
    }
    if (get && fg_admin_dashboard_on() && fg_admin_page(bev, r))
        return;
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
    if (n > 10 && n < 32 && memcmp(p, "/waitroom/", 10) == 0) {
        char op[24];
        memcpy(op, p + 10, n - 10);
        op[n - 10] = '\0';
        waitroom_op(bev, r, op);
        return;
    }
#undef IS
    text_response(bev, 404,
                  "404 Not Found: try /, /healthz, /stats, /stats/stream, /metrics, /config, "
                  "/cache/purge, /cache/warm or /waitroom/OP\n",
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
    pthread_setname_np(pthread_self(), "fg-admin");
    event_base_loop(AD.base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

bool fg_admin_start(const struct fg_addr *addr, const struct fg_admin_ops *ops)
{
    AD.ops = ops;
    AD.base = event_base_new();
    if (AD.base == NULL)
        return false;
    struct fg_config *cfg = ops->config();
    fg_admin_instance_start(AD.base, cfg->instance_id);
    fg_config_unref(cfg);
    if (!fg_admin_summary_start(AD.base, ops)) {
        fg_err("admin: out of memory for the dashboard's summaries");
        return false;
    }
    if (addr == NULL)
        goto no_listener;
    AD.evl = evconnlistener_new_bind(
        AD.base, accept_cb, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
        128, (const struct sockaddr *)&addr->ss, (int)addr->len);
    if (AD.evl == NULL) {
        fg_err("admin: cannot listen on %s: %s", addr->text, strerror(errno));
        fg_admin_summary_stop();
        fg_admin_instance_stop();
        event_base_free(AD.base);
        AD.base = NULL;
        return false;
    }
no_listener:
    if (!fg_admin_agentstat_start(AD.base, ops))
        fg_warn("admin: out of memory: the agent's numbers are left out of /stats");
    if (pthread_create(&AD.thread, NULL, admin_main, NULL) != 0) {
        fg_err("admin: cannot start its thread");
        return false;
    }
    AD.running = true;
    if (addr != NULL)
        fg_notice("admin listening on %s", addr->text);
    return true;
}

void fg_admin_stop(void)
{
    if (!AD.running)
        return;
    event_base_loopbreak(AD.base);
    pthread_join(AD.thread, NULL);
    fg_admin_stream_stop();
    fg_admin_emf_stop();
    fg_admin_summary_stop();
    fg_admin_instance_stop();
    fg_admin_agentstat_stop();
    if (AD.evl != NULL)
        evconnlistener_free(AD.evl);
    event_base_free(AD.base);
    AD.running = false;
}
