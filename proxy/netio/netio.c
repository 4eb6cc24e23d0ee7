/* netio.c — write-through and a FIONREAD-free reader (see netio.h for why). */
#include "netio/netio.h"

#include <errno.h>
#include <sys/uio.h>

#define FG_READ_MAX (64 * 1024)

size_t fg_flush(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    if (evbuffer_get_length(out) > 0) {
        /* A bufferevent keeps its output's start frozen so that only it drains it; we
         * do what its write callback does, a moment earlier. An error is left for that
         * callback to meet and report. */
        evbuffer_unfreeze(out, 1);
        evbuffer_write(out, bufferevent_getfd(bev));
        evbuffer_freeze(out, 1);
    }
    size_t left = evbuffer_get_length(out);
    if (left > 0)
        bufferevent_enable(bev, EV_WRITE);
    else
        bufferevent_disable(bev, EV_WRITE);
    return left;
}

static bool below_high_water(const struct fg_reader *r)
{
    return r->high_water == 0 || evbuffer_get_length(bufferevent_get_input(r->bev)) < r->high_water;
}

/* Add or remove the event to match what the owner wants and the watermark allows. */
static void rearm(struct fg_reader *r)
{
    bool want = r->enabled && below_high_water(r);
    if (want) {
        struct timeval tv = {.tv_sec = (time_t)(r->timeout_ms / 1000),
                             .tv_usec = (suseconds_t)(r->timeout_ms % 1000) * 1000};
        event_add(r->ev, r->timeout_ms ? &tv : NULL);
        r->armed = true;
    } else if (r->armed) {
        event_del(r->ev);
        r->armed = false;
    }
}

static void input_drained(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct fg_reader *r = arg;
    if (info->n_deleted > 0 && r->enabled && !r->armed && below_high_water(r))
        rearm(r);
}

static void reader_cb(evutil_socket_t fd, short what, void *arg)
{
    struct fg_reader *r = arg;
    if (what & EV_TIMEOUT) {
        fg_reader_disable(r);
        if (r->on_event)
            r->on_event(BEV_EVENT_TIMEOUT | BEV_EVENT_READING, r->arg);
        return;
    }
    bool triggered = r->triggered;
    r->triggered = false;
    struct evbuffer *in = bufferevent_get_input(r->bev);
    struct evbuffer_iovec v[2];
    int n = evbuffer_reserve_space(in, FG_READ_MAX, v, 2);
    if (n <= 0)
        return;
    struct iovec iov[2];
    for (int i = 0; i < n; i++) {
        iov[i].iov_base = v[i].iov_base;
        iov[i].iov_len = v[i].iov_len;
    }
    ssize_t got = readv(fd, iov, n);
    if (got > 0) {
        size_t left = (size_t)got;
        for (int i = 0; i < n; i++) {
            size_t take = left < v[i].iov_len ? left : v[i].iov_len;
            v[i].iov_len = take;
            left -= take;
        }
        evbuffer_commit_space(in, v, n);
        if (r->timeout_ms && r->armed)
            rearm(r); /* an inactivity timeout restarts with every read */
        else if (!below_high_water(r))
            rearm(r);
        if (r->on_read)
            r->on_read(r->arg);
        return;
    }
    evbuffer_commit_space(in, v, 0);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
        if (triggered && r->on_read)
            r->on_read(r->arg);
        return;
    }
    fg_reader_disable(r);
    if (r->on_event)
        r->on_event((got == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR) | BEV_EVENT_READING, r->arg);
}

bool fg_reader_init(struct fg_reader *r, struct bufferevent *bev, size_t high_water)
{
    *r = (struct fg_reader){.bev = bev, .high_water = high_water};
    r->ev = event_new(bufferevent_get_base(bev), bufferevent_getfd(bev), EV_READ | EV_PERSIST,
                      reader_cb, r);
    if (r->ev == NULL)
        return false;
    bufferevent_disable(bev, EV_READ);
    evbuffer_unfreeze(bufferevent_get_input(bev), 0); /* we are the ones who add */
    if (high_water > 0)
        r->drain_cb = evbuffer_add_cb(bufferevent_get_input(bev), input_drained, r);
    return true;
}

void fg_reader_free(struct fg_reader *r)
{
    if (r->drain_cb != NULL)
        evbuffer_remove_cb_entry(bufferevent_get_input(r->bev), r->drain_cb);
    if (r->ev != NULL)
        event_free(r->ev);
    r->ev = NULL;
}

void fg_reader_setcb(struct fg_reader *r, void (*on_read)(void *), void (*on_event)(short, void *),
                     void *arg)
{
    r->on_read = on_read;
    r->on_event = on_event;
    r->arg = arg;
}

void fg_reader_enable(struct fg_reader *r)
{
    if (r->enabled && r->armed)
        return;
    r->enabled = true;
    rearm(r);
}

void fg_reader_disable(struct fg_reader *r)
{
    r->enabled = false;
    rearm(r);
}

void fg_reader_set_timeout(struct fg_reader *r, uint64_t ms)
{
    if (r->timeout_ms == ms)
        return;
    r->timeout_ms = ms;
    if (r->armed)
        rearm(r);
}

void fg_reader_trigger(struct fg_reader *r)
{
    r->triggered = true;
    event_active(r->ev, EV_READ, 0);
}
