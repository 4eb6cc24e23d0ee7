/*
 * stream.c — GET /stats/stream: the one-second summaries as server-sent events (the
 * HTML Living Standard's text/event-stream), for the dashboard and for anyone with curl.
 *
 * A viewer first gets the history (the ten minutes kept by summary.c, or what came after
 * its Last-Event-ID when its browser reconnects), then each new summary as it is made;
 * every event's id is the summary's time in Unix milliseconds.
 *
 * Viewers cost the admin thread only: the summary is computed once whatever their
 * number, and each viewer's output buffer references it (no copy, the history
 * included). Their number is bounded
 * (stream_viewers), and so is what one of them may leave unread: a viewer whose
 * unread bytes pass stream_buffer (beyond the history it was sent) is dropped, as is
 * one that takes nothing for 10 seconds, instead of its buffer growing. The kernel's
 * send buffer is kept small for the same reason.
 */
#include "admin/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "core/core.h"

#define STUCK_S   10          /* no byte taken for this long: dropped */
#define SNDBUF    (32 * 1024) /* the kernel's share of a viewer's unread bytes */
#define RETRY_MS  2000        /* the reconnection delay we ask browsers for */
#define EVENT_MAX 64          /* bytes an event adds around its data ("id: ...") */

struct viewer {
    struct bufferevent *bev;
    uint64_t queued;  /* bytes queued since the head */
    uint64_t history; /* of which the history sent when it came */
    LIST_ENTRY(viewer) link;
};

static struct {
    LIST_HEAD(, viewer) viewers;
    struct fg_admin_stream_stats st;
} ST = {.viewers = LIST_HEAD_INITIALIZER(ST.viewers)};

static void viewer_free(struct viewer *v)
{
    LIST_REMOVE(v, link);
    bufferevent_free(v->bev);
    free(v);
    ST.st.viewers--;
}

static void viewer_read_cb(struct bufferevent *bev, void *arg)
{
    (void)arg; /* a viewer has nothing to say: whatever comes is dropped */
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_drain(in, evbuffer_get_length(in));
}

static void viewer_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    if (what & BEV_EVENT_TIMEOUT)
        ST.st.dropped_slow++; /* it took nothing for STUCK_S */
    viewer_free(arg);
}

/* The summary itself is not copied: the output buffer references it. */
static void add_event(struct viewer *v, struct fg_admin_summary *s)
{
    struct evbuffer *out = bufferevent_get_output(v->bev);
    char id[EVENT_MAX];
    int n = snprintf(id, sizeof(id), "id: %" PRId64 "\ndata: ", s->t_ms);
    evbuffer_add(out, id, (size_t)n);
    fg_admin_summary_add(out, s);
    evbuffer_add(out, "\n\n", 2);
    v->queued += (size_t)n + s->len + 2;
}

static void history_cb(struct fg_admin_summary *s, void *arg)
{
    add_event(arg, s);
}

static void refuse(struct bufferevent *bev, unsigned max)
{
    char msg[160];
    int n = max == 0 ? snprintf(msg, sizeof(msg),
                                "503 Service Unavailable: the stream is off (admin "
                                "stream_viewers 0)\n")
                     : snprintf(msg, sizeof(msg),
                                "503 Service Unavailable: %u viewers already follow the stream "
                                "(admin stream_viewers)\n",
                                max);
    fg_admin_respond(bev, 503, "text/plain; charset=utf-8", "Retry-After: 5\r\n", msg, (size_t)n,
                     false);
}

void fg_admin_stream_attach(struct bufferevent *bev, const struct fg_http_request *r)
{
    struct fg_config *cfg = fg_admin_config();
    unsigned max = cfg->admin.stream_viewers;
    fg_config_unref(cfg);
    if (ST.st.viewers >= max) {
        ST.st.refused++;
        refuse(bev, max);
        return;
    }
    struct viewer *v = calloc(1, sizeof(*v));
    if (v == NULL) {
        fg_admin_respond(bev, 503, "text/plain; charset=utf-8", NULL, "out of memory\n", 14, false);
        return;
    }
    int64_t after = 0;
    const struct fg_http_header *h = fg_http_find_header(r->headers, r->n_headers, "last-event-id");
    if (h != NULL) {
        char idb[24];
        uint64_t id;
        if (h->value_len < sizeof(idb)) {
            memcpy(idb, h->value, h->value_len);
            idb[h->value_len] = '\0';
            if (fg_parse_uint(idb, INT64_MAX, &id))
                after = (int64_t)id;
        }
    }
    v->bev = bev;
    LIST_INSERT_HEAD(&ST.viewers, v, link);
    ST.st.viewers++;
    ST.st.accepted++;

    int fd = bufferevent_getfd(bev), sndbuf = SNDBUF;
    if (fd >= 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_drain(in, evbuffer_get_length(in)); /* the request */
    struct timeval stuck = {STUCK_S, 0};
    bufferevent_set_timeouts(bev, NULL, &stuck);
    bufferevent_setcb(bev, viewer_read_cb, NULL, viewer_event_cb, v);
    bufferevent_enable(bev, EV_READ | EV_WRITE); /* reading sees the viewer leave */
    evbuffer_add_printf(bufferevent_get_output(bev),
                        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                        "Cache-Control: no-store\r\nX-Accel-Buffering: no\r\n"
                        "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n"
                        "retry: %d\n\n",
                        RETRY_MS);
    fg_admin_summary_history(after, history_cb, v);
    v->history = v->queued;
}

void fg_admin_stream_publish(struct fg_admin_summary *s)
{
    if (LIST_EMPTY(&ST.viewers))
        return;
    struct fg_config *cfg = fg_admin_config();
    uint64_t cap = cfg->admin.stream_buffer;
    bool on = cfg->admin.dashboard;
    fg_config_unref(cfg);
    if (!on) { /* a reload turned the dashboard off: its viewers go too */
        fg_admin_stream_stop();
        return;
    }
    struct viewer *v, *next;
    for (v = LIST_FIRST(&ST.viewers); v != NULL; v = next) {
        next = LIST_NEXT(v, link);
        uint64_t unread = evbuffer_get_length(bufferevent_get_output(v->bev));
        uint64_t taken = v->queued - unread;
        uint64_t history_left = v->history > taken ? v->history - taken : 0;
        if (unread > history_left + cap) {
            ST.st.dropped_slow++;
            viewer_free(v);
            continue;
        }
        add_event(v, s);
    }
}

void fg_admin_stream_stop(void)
{
    while (!LIST_EMPTY(&ST.viewers))
        viewer_free(LIST_FIRST(&ST.viewers));
}

void fg_admin_stream_stats(struct fg_admin_stream_stats *out)
{
    *out = ST.st;
}
