/*
 * warm.c — filling the cache before a sale opens: POST /cache/warm with one URL per
 * line. The admin thread asks flashgate's own traffic listener for each URL, a bounded
 * number at a time, so a warm-up takes the same path as a client (routes, cache keys,
 * coalescing with real traffic) and never floods the app.
 *
 * Only http:// URLs: the requests go to the plain traffic listener, so an https:// line
 * would be fetched as http — the list is refused whole instead. A URL that fails (no
 * 2xx/3xx answer) is logged, at most FG_WARM_LOG_PER_S a second (the rest counted), and
 * each run ends with one line of totals.
 */
#include "admin/admin.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "core/core.h"
#include "http/http.h"

#define FG_WARM_TIMEOUT_S 30
#define FG_WARM_QUEUE_MAX 100000
#define FG_WARM_LOG_PER_S 10

struct warm_url {
    char *host; /* for the Host field */
    char *target;
};

static struct {
    struct event_base *base;
    struct fg_addr target; /* the traffic listener */
    struct warm_url *queue;
    size_t n, next, cap;
    unsigned concurrency, running;
    _Atomic uint64_t queued, done, failed, in_flight, jobs;
    uint64_t run_done, run_failed; /* since the queue was last empty: the end-of-run line */
    uint64_t log_second;           /* the second the failure lines below were counted in */
    unsigned logged;               /* failure lines written in log_second */
    uint64_t unlogged;             /* failures past the limit, said with the next line */
} W;

static void start_more(void);

static void url_free(struct warm_url *u)
{
    free(u->host);
    free(u->target);
    u->host = u->target = NULL;
}

/* One warm-up request; its answer is judged by the status line, the rest is dropped. */
struct warm_conn {
    bool status_known;
    bool ok;
    int status;    /* of the answer, 0 before (or without) a status line */
    char url[512]; /* for the log line: http://host/target, cut if longer */
};

static void log_failure(const struct warm_conn *wc, const char *why)
{
    uint64_t sec = fg_mono_ms() / 1000;
    if (sec != W.log_second) {
        W.log_second = sec;
        W.logged = 0;
    }
    if (W.logged >= FG_WARM_LOG_PER_S) {
        W.unlogged++;
        return;
    }
    W.logged++;
    char more[64] = "";
    if (W.unlogged > 0)
        snprintf(more, sizeof(more), " (and %llu more failures not logged)",
                 (unsigned long long)W.unlogged);
    W.unlogged = 0;
    if (wc->status_known && !wc->ok && wc->status > 0)
        fg_warn("cache warm-up: GET %s failed: %d%s", wc->url, wc->status, more);
    else
        fg_warn("cache warm-up: GET %s failed: %s%s", wc->url, why, more);
}

static void one_done(struct bufferevent *bev, struct warm_conn *wc, bool complete, const char *why)
{
    bool ok = complete && wc->status_known && wc->ok;
    if (!ok)
        log_failure(wc, wc->status_known && wc->ok ? "the answer was cut" : why);
    bufferevent_free(bev);
    free(wc);
    W.running--;
    atomic_fetch_sub(&W.in_flight, 1);
    atomic_fetch_add(ok ? &W.done : &W.failed, 1);
    if (ok)
        W.run_done++;
    else
        W.run_failed++;
    start_more();
}

static void warm_read_cb(struct bufferevent *bev, void *arg)
{
    struct warm_conn *wc = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (!wc->status_known && evbuffer_get_length(in) >= 12) {
        char line[12];
        evbuffer_copyout(in, line, sizeof(line));
        wc->status_known = true;
        wc->ok = memcmp(line, "HTTP/1.1 ", 9) == 0 && (line[9] == '2' || line[9] == '3');
        if (memcmp(line, "HTTP/1.", 7) == 0 && line[9] >= '1' && line[9] <= '9' &&
            line[10] >= '0' && line[10] <= '9' && line[11] >= '0' && line[11] <= '9')
            wc->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    }
    if (wc->status_known)
        evbuffer_drain(in, evbuffer_get_length(in));
}

/* The answer ends with the connection (we asked for Connection: close). */
static void warm_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct warm_conn *wc = arg;
    if (what & BEV_EVENT_CONNECTED)
        return;
    warm_read_cb(bev, wc);
    const char *why = what & BEV_EVENT_TIMEOUT ? "no answer within 30 s"
                      : what & BEV_EVENT_EOF   ? "closed without an answer"
                                               : "connection to the traffic listener failed";
    one_done(bev, wc, (what & BEV_EVENT_EOF) != 0, why);
}

static void start_one(struct warm_url *u)
{
    struct warm_conn *wc = calloc(1, sizeof(*wc));
    struct bufferevent *bev = wc ? bufferevent_socket_new(W.base, -1, BEV_OPT_CLOSE_ON_FREE) : NULL;
    if (bev == NULL) {
        free(wc);
        atomic_fetch_add(&W.failed, 1);
        return;
    }
    snprintf(wc->url, sizeof(wc->url), "http://%s%s", u->host, u->target);
    struct timeval tv = {.tv_sec = FG_WARM_TIMEOUT_S};
    bufferevent_set_timeouts(bev, &tv, &tv);
    bufferevent_setcb(bev, warm_read_cb, NULL, warm_event_cb, wc);
    evbuffer_add_printf(bufferevent_get_output(bev),
                        "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: flashgate-warm\r\n"
                        "Connection: close\r\n\r\n",
                        u->target, u->host);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(bev, (const struct sockaddr *)&W.target.ss, (int)W.target.len) !=
        0) {
        log_failure(wc, "cannot connect to the traffic listener");
        bufferevent_free(bev);
        free(wc);
        atomic_fetch_add(&W.failed, 1);
        W.run_failed++;
        return;
    }
    W.running++;
    atomic_fetch_add(&W.in_flight, 1);
}

static void start_more(void)
{
    while (W.running < W.concurrency && W.next < W.n) {
        struct warm_url *u = &W.queue[W.next++];
        atomic_fetch_sub(&W.queued, 1);
        start_one(u);
        url_free(u);
    }
    if (W.next == W.n && W.running == 0) {
        free(W.queue);
        W.queue = NULL;
        W.n = W.next = W.cap = 0;
        if (W.run_done + W.run_failed > 0) {
            char more[64] = "";
            if (W.unlogged > 0)
                snprintf(more, sizeof(more), " (%llu failures not logged one by one)",
                         (unsigned long long)W.unlogged);
            if (W.run_failed > 0)
                fg_warn("cache warm-up finished: %llu fetched, %llu failed%s",
                        (unsigned long long)W.run_done, (unsigned long long)W.run_failed, more);
            else
                fg_notice("cache warm-up finished: %llu fetched", (unsigned long long)W.run_done);
        }
        W.run_done = W.run_failed = W.unlogged = 0;
    }
}

/* "http://host[:port]/path?q". https:// is not one: the warm-up goes to the plain
 * traffic listener and would fetch it as http. */
static bool parse_url(const char *s, size_t len, struct warm_url *out)
{
    const char *p = s, *end = s + len;
    const char *host = NULL;
    size_t host_len = 0;
    if (len >= 7 && strncmp(p, "http://", 7) == 0)
        p += 7;
    else
        return false;
    host = p;
    while (p < end && *p != '/')
        p++;
    host_len = (size_t)(p - host);
    if (host_len == 0 || host_len > 255)
        return false;
    if (p == end)
        p = "/", end = p + 1;
    for (const char *c = p; c < end; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f)
            return false; /* no spaces or controls in a request line */
    for (const char *c = host; c < host + host_len; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f)
            return false;
    out->host = strndup(host, host_len);
    out->target = strndup(p, (size_t)(end - p));
    return out->host != NULL && out->target != NULL;
}

/* The next URL line of body from *pos: its trimmed bytes in [*b, *e), *line its number.
 * Blank lines and '#' comments are skipped. False at the end. */
static bool next_url_line(const char *body, size_t len, size_t *pos, size_t *line, size_t *b,
                          size_t *e)
{
    while (*pos < len) {
        size_t i = *pos, j = i;
        while (j < len && body[j] != '\n')
            j++;
        *pos = j + 1;
        ++*line;
        size_t end = j;
        while (end > i && (body[end - 1] == '\r' || body[end - 1] == ' ' || body[end - 1] == '\t'))
            end--;
        while (i < end && (body[i] == ' ' || body[i] == '\t'))
            i++;
        if (end > i && body[i] != '#') {
            *b = i;
            *e = end;
            return true;
        }
    }
    return false;
}

bool fg_admin_warm_add(struct event_base *base, const struct fg_addr *target, const char *body,
                       size_t len, unsigned concurrency, size_t *accepted, size_t *bad_line)
{
    W.base = base;
    W.target = *target;
    W.concurrency = concurrency;
    *accepted = 0;
    *bad_line = 0;
    /* Check every line first: a list with a bad line is refused whole. */
    size_t pos = 0, line = 0, b, e, count = 0;
    while (next_url_line(body, len, &pos, &line, &b, &e)) {
        struct warm_url u = {0};
        bool ok = parse_url(body + b, e - b, &u);
        url_free(&u);
        if (!ok) {
            *bad_line = line;
            return false;
        }
        count++;
    }
    if (W.n - W.next + count > FG_WARM_QUEUE_MAX)
        return false;
    if (W.n + count > W.cap) {
        size_t cap = W.n + count;
        struct warm_url *q = realloc(W.queue, cap * sizeof(*q));
        if (q == NULL)
            return false;
        W.queue = q;
        W.cap = cap;
    }
    pos = line = 0;
    while (next_url_line(body, len, &pos, &line, &b, &e))
        if (parse_url(body + b, e - b, &W.queue[W.n]))
            W.n++;
    *accepted = count;
    atomic_fetch_add(&W.queued, count);
    atomic_fetch_add(&W.jobs, 1);
    start_more();
    return true;
}

void fg_admin_warm_progress(struct fg_admin_warm_progress *out)
{
    out->jobs = atomic_load(&W.jobs);
    out->queued = atomic_load(&W.queued);
    out->in_flight = atomic_load(&W.in_flight);
    out->done = atomic_load(&W.done);
    out->failed = atomic_load(&W.failed);
}
