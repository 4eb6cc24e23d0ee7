/*
 * sink.c — the `local` sink: the spool is the queue, and committed records are replayed
 * in order to the app over HTTP/1.1 keep-alive connections, each with its
 * Idempotency-Key, at most replay_rate per second and replay_concurrency at a time.
 *
 * Records are read into a window in sequence order. Each is sent until the app gives a
 * final answer: 2xx (ok) or a permanent 4xx other than 408 and 429 (rejected: logged,
 * counted, never sent again). 5xx, 408, 429, timeouts, connection errors and garbled
 * responses are failures: the record is sent again after a jittered exponential backoff
 * (replay_backoff doubling up to replay_backoff_max, times a random 0.5..1). Later
 * records keep flowing while one waits, within the window. The spool is acknowledged up
 * to the highest record of the finished prefix of the window, so a record is
 * acknowledged only once it and everything before it are done; the checkpoint timer
 * makes that durable. After a crash everything above the checkpoint is replayed again:
 * at least once, and the app deduplicates by key.
 */
#include "agent/agentd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "http/http.h"

#define SLOT_MAGIC  0x41475353u
#define HEAD_MAX    (64u * 1024)
#define WINDOW_MIN  64
#define IO_RETRY_MS 1000

enum entry_state { E_WAIT = 0, E_SENDING, E_DONE };

struct entry {
    uint64_t seq;
    uint8_t *data; /* the spooled RECORD frame */
    size_t len;
    uint8_t state;
    unsigned attempts;
    uint64_t not_before_ms;
};

enum slot_phase { P_IDLE = 0, P_HEAD, P_LENGTH, P_CHUNKED, P_CLOSE };

struct slot {
    unsigned magic;
    struct fg_sink *s;
    struct bufferevent *bev; /* NULL: not connected */
    struct entry *e;         /* the record in flight, NULL when idle */
    enum slot_phase phase;
    bool reused;  /* the connection served a request before this one */
    bool got_any; /* some byte of this response arrived */
    bool close_after;
    int status;
    enum fg_http_method method;
    uint64_t left;
    struct fg_http_chunked ch;
};

struct fg_sink {
    struct event_base *base;
    struct fg_spool *sp;
    const struct fg_agentd_config *cfg;
    struct fg_agentd_stats *st;
    struct fg_spool_iter *it;
    struct entry *win;
    size_t wcap, whead, wcount;
    struct slot *slots;
    size_t nslots, busy;
    struct fg_rate rate;
    struct event *timer;
    bool in_pump, again;
};

static void pump(struct fg_sink *s);

static struct entry *win_at(struct fg_sink *s, size_t i)
{
    return &s->win[(s->whead + i) % s->wcap];
}

static void slot_close(struct slot *sl)
{
    if (sl->bev != NULL)
        bufferevent_free(sl->bev);
    sl->bev = NULL;
    sl->phase = P_IDLE;
    sl->reused = false;
}

/* The request in flight on sl is over: done (ok or rejected), or to be sent again. */
static void slot_finish(struct slot *sl, bool done, bool at_once, const char *why)
{
    struct fg_sink *s = sl->s;
    struct entry *e = sl->e;
    sl->e = NULL;
    sl->phase = P_IDLE;
    s->busy--;
    if (sl->bev != NULL)
        bufferevent_set_timeouts(sl->bev, NULL, NULL);
    if (done) {
        e->state = E_DONE;
    } else {
        e->state = E_WAIT;
        e->attempts++;
        s->st->replay_retries++;
        if (at_once) {
            e->not_before_ms = 0;
        } else {
            s->st->replayed_failed++;
            uint64_t d = fg_backoff_ms(s->cfg->replay_backoff_ms, s->cfg->replay_backoff_max_ms,
                                       e->attempts);
            e->not_before_ms = fg_mono_ms() + d;
            if (e->attempts == 1 || e->attempts % 10 == 0)
                fg_warn("replay of record %llu to %s failed (%s), attempt %u; retrying in %llums",
                        (unsigned long long)e->seq, s->cfg->app.text, why, e->attempts,
                        (unsigned long long)d);
        }
    }
    pump(s);
}

/* A connection failure or a garbled response: the connection is closed, the record
 * retried. A reused keep-alive connection that dies before any byte of the answer was
 * most likely closed by the app while idle: that retry goes out at once, on a new one. */
static void slot_fail(struct slot *sl, const char *why)
{
    bool stale = sl->reused && !sl->got_any;
    slot_close(sl);
    if (sl->e != NULL)
        slot_finish(sl, false, stale, why);
}

static void slot_response_done(struct slot *sl)
{
    struct fg_sink *s = sl->s;
    int code = sl->status;
    if (sl->close_after)
        slot_close(sl);
    else
        sl->reused = true;
    enum fg_replay_verdict v = fg_replay_verdict(code);
    if (v == FG_REPLAY_OK) {
        s->st->replayed_ok++;
        slot_finish(sl, true, false, NULL);
    } else if (v == FG_REPLAY_RETRY) {
        char why[32];
        snprintf(why, sizeof(why), "status %d", code);
        slot_finish(sl, false, false, why);
    } else {
        s->st->replayed_rejected++;
        fg_warn("replay of record %llu: the app answered %d, a permanent refusal; the record "
                "is dropped",
                (unsigned long long)sl->e->seq, code);
        slot_finish(sl, true, false, NULL);
    }
}

static void slot_read(struct bufferevent *bev, void *arg)
{
    struct slot *sl = arg;
    FG_ASSERT(sl->magic == SLOT_MAGIC);
    struct evbuffer *in = bufferevent_get_input(bev);
    if (evbuffer_get_length(in) > 0)
        sl->got_any = true;
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (sl->e == NULL) {
            if (len > 0)
                slot_close(sl); /* bytes nobody asked for */
            return;
        }
        if (len == 0 && sl->phase != P_HEAD)
            return;
        switch (sl->phase) {
        case P_HEAD: {
            if (len == 0)
                return;
            size_t n = len < HEAD_MAX ? len : HEAD_MAX;
            const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
            struct fg_http_limits lim = {.max_request_line = 8192,
                                         .max_header_bytes = HEAD_MAX,
                                         .max_headers = FG_HTTP_MAX_HEADERS};
            static struct fg_http_response resp; /* large; one thread */
            enum fg_http_error err;
            int r = fg_http_parse_response(p, n, &lim, sl->method, &resp, &err);
            if (r == FG_HTTP_INCOMPLETE)
                return;
            if (r < 0) {
                slot_fail(sl, "malformed response");
                return;
            }
            evbuffer_drain(in, resp.head_len);
            if (resp.status < 200)
                continue; /* 100 Continue and friends */
            sl->status = resp.status;
            sl->close_after = (resp.flags & FG_HTTP_F_CONN_CLOSE) ||
                              (resp.minor_version == 0 && !(resp.flags & FG_HTTP_F_CONN_KEEPALIVE));
            if (resp.body == FG_HTTP_BODY_NONE) {
                slot_response_done(sl);
                return;
            } else if (resp.body == FG_HTTP_BODY_LENGTH) {
                sl->left = resp.content_length;
                sl->phase = P_LENGTH;
                if (sl->left == 0) {
                    slot_response_done(sl);
                    return;
                }
            } else if (resp.body == FG_HTTP_BODY_CHUNKED) {
                fg_http_chunked_init(&sl->ch);
                sl->phase = P_CHUNKED;
            } else {
                sl->close_after = true;
                sl->phase = P_CLOSE;
            }
            break;
        }
        case P_LENGTH: {
            size_t n = sl->left < len ? (size_t)sl->left : len;
            evbuffer_drain(in, n);
            sl->left -= n;
            if (sl->left == 0) {
                slot_response_done(sl);
                return;
            }
            return;
        }
        case P_CHUNKED: {
            size_t n = len < HEAD_MAX ? len : HEAD_MAX;
            const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
            size_t used = 0;
            enum fg_http_error err;
            enum fg_http_chunk_status cs = fg_http_chunked_parse(&sl->ch, p, n, &used, &err);
            evbuffer_drain(in, used);
            if (cs == FG_CHUNK_ERROR) {
                slot_fail(sl, "malformed chunked body");
                return;
            } else if (cs == FG_CHUNK_DONE) {
                slot_response_done(sl);
                return;
            } else if (cs == FG_CHUNK_DATA) {
                size_t have = evbuffer_get_length(in);
                size_t take = sl->ch.data_left < have ? (size_t)sl->ch.data_left : have;
                evbuffer_drain(in, take);
                fg_http_chunked_data(&sl->ch, take);
                if (take == 0)
                    return;
            } else if (used == 0) {
                return;
            }
            break;
        }
        case P_CLOSE:
            evbuffer_drain(in, len);
            return;
        case P_IDLE:
            return;
        }
    }
}

static void slot_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct slot *sl = arg;
    FG_ASSERT(sl->magic == SLOT_MAGIC);
    if (what & BEV_EVENT_CONNECTED)
        return;
    if (sl->e == NULL) {
        slot_close(sl); /* the app closed an idle connection */
        return;
    }
    if ((what & BEV_EVENT_EOF) && sl->phase == P_CLOSE) {
        slot_close(sl);
        slot_response_done(sl);
        return;
    }
    slot_fail(sl, (what & BEV_EVENT_TIMEOUT) ? "timeout"
                  : (what & BEV_EVENT_EOF)   ? "connection closed"
                                             : "connection error");
}

/* Put e's request on sl's connection (connecting first if needed). */
static void slot_send(struct slot *sl, struct entry *e)
{
    struct fg_sink *s = sl->s;
    static struct fg_agent_record r; /* large; one thread */
    sl->e = e;
    e->state = E_SENDING;
    s->busy++;
    sl->got_any = false;
    sl->phase = P_HEAD;
    if (fg_agent_proto_decode_record(e->data, e->len, e->len, &r, NULL, NULL) !=
        FG_AGENT_PROTO_OK) {
        s->st->replayed_rejected++;
        fg_err("spool record %llu does not decode as a RECORD frame; skipped",
               (unsigned long long)e->seq);
        slot_finish(sl, true, false, NULL);
        return;
    }
    sl->method = fg_http_method_parse(r.method, r.method_len);
    if (sl->bev == NULL) {
        sl->bev = bufferevent_socket_new(s->base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (sl->bev == NULL) {
            slot_finish(sl, false, false, "out of memory");
            return;
        }
        bufferevent_setcb(sl->bev, slot_read, NULL, slot_event, sl);
        if (bufferevent_socket_connect(sl->bev, (const struct sockaddr *)&s->cfg->app.ss,
                                       (int)s->cfg->app.len) != 0) {
            slot_fail(sl, "connect failed");
            return;
        }
        bufferevent_enable(sl->bev, EV_READ | EV_WRITE);
    }
    struct timeval tv = {.tv_sec = (time_t)(s->cfg->replay_timeout_ms / 1000),
                         .tv_usec = (suseconds_t)(s->cfg->replay_timeout_ms % 1000) * 1000};
    bufferevent_set_timeouts(sl->bev, &tv, &tv);
    fg_replay_write_request(bufferevent_get_output(sl->bev), &r, s->cfg->app.text);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    pump(arg);
}

static void arm(struct fg_sink *s, uint64_t in_ms)
{
    struct timeval tv = {.tv_sec = (time_t)(in_ms / 1000),
                         .tv_usec = (suseconds_t)(in_ms % 1000) * 1000};
    event_add(s->timer, &tv);
}

static void pump_once(struct fg_sink *s)
{
    /* 1. Acknowledge the finished prefix. */
    uint64_t upto = 0;
    while (s->wcount > 0 && win_at(s, 0)->state == E_DONE) {
        struct entry *e = win_at(s, 0);
        upto = e->seq;
        free(e->data);
        e->data = NULL;
        s->whead = (s->whead + 1) % s->wcap;
        s->wcount--;
    }
    if (upto > 0) {
        enum fg_spool_status st = fg_spool_ack(s->sp, upto);
        if (st != FG_SPOOL_OK)
            fg_err("spool ack up to %llu refused: %s", (unsigned long long)upto,
                   fg_spool_status_name(st));
    }
    /* 2. Read committed records into the window. */
    uint64_t wake = UINT64_MAX, now = fg_mono_ms();
    while (s->wcount < s->wcap) {
        struct fg_spool_record rec;
        enum fg_spool_status st = fg_spool_iter_next(s->it, &rec);
        if (st == FG_SPOOL_END)
            break;
        if (st != FG_SPOOL_OK) {
            fg_err("spool read failed (%s: %s); trying again in %ums", fg_spool_status_name(st),
                   fg_spool_error(s->sp), IO_RETRY_MS);
            wake = now + IO_RETRY_MS;
            break;
        }
        uint8_t *copy = malloc(rec.len > 0 ? rec.len : 1);
        if (copy == NULL) {
            /* The iterator moved on; start again after the acknowledged prefix later. */
            fg_err("out of memory for the replay window; retrying in %ums", IO_RETRY_MS);
            wake = now + IO_RETRY_MS;
            break;
        }
        memcpy(copy, rec.data, rec.len);
        struct entry *e = win_at(s, s->wcount++);
        *e = (struct entry){.seq = rec.seq, .data = copy, .len = rec.len, .state = E_WAIT};
    }
    /* 3. Send what the concurrency and the rate allow, oldest first. */
    for (size_t i = 0; i < s->wcount && s->busy < s->nslots; i++) {
        struct entry *e = win_at(s, i);
        if (e->state != E_WAIT)
            continue;
        if (e->not_before_ms > now) {
            if (e->not_before_ms < wake)
                wake = e->not_before_ms;
            continue;
        }
        uint64_t need = fg_rate_take(&s->rate, fg_mono_us());
        if (need > 0) {
            if (now + need < wake)
                wake = now + need;
            break;
        }
        struct slot *sl = NULL;
        for (size_t k = 0; k < s->nslots && sl == NULL; k++)
            if (s->slots[k].e == NULL && s->slots[k].bev != NULL)
                sl = &s->slots[k]; /* prefer an open keep-alive connection */
        for (size_t k = 0; k < s->nslots && sl == NULL; k++)
            if (s->slots[k].e == NULL)
                sl = &s->slots[k];
        FG_ASSERT(sl != NULL);
        slot_send(sl, e);
    }
    if (wake != UINT64_MAX)
        arm(s, wake > now ? wake - now : 0);
}

static void pump(struct fg_sink *s)
{
    if (s->in_pump) {
        s->again = true;
        return;
    }
    s->in_pump = true;
    do {
        s->again = false;
        pump_once(s);
    } while (s->again);
    s->in_pump = false;
}

struct fg_sink *fg_sink_new(struct event_base *base, struct fg_spool *sp,
                            const struct fg_agentd_config *cfg, struct fg_agentd_stats *st)
{
    struct fg_sink *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->base = base;
    s->sp = sp;
    s->cfg = cfg;
    s->st = st;
    s->nslots = (size_t)cfg->replay_concurrency;
    s->wcap = s->nslots * 8 > WINDOW_MIN ? s->nslots * 8 : WINDOW_MIN;
    s->win = calloc(s->wcap, sizeof(*s->win));
    s->slots = calloc(s->nslots, sizeof(*s->slots));
    s->it = fg_spool_iter_new(sp);
    s->timer = evtimer_new(base, timer_cb, s);
    fg_rate_init(&s->rate, cfg->replay_rate, fg_mono_us());
    if (s->win == NULL || s->slots == NULL || s->it == NULL || s->timer == NULL) {
        fg_sink_free(s);
        return NULL;
    }
    for (size_t i = 0; i < s->nslots; i++) {
        s->slots[i].magic = SLOT_MAGIC;
        s->slots[i].s = s;
    }
    srandom((unsigned)fg_mono_us());
    return s;
}

void fg_sink_kick(struct fg_sink *s)
{
    if (s != NULL)
        pump(s);
}

size_t fg_sink_window(const struct fg_sink *s)
{
    return s != NULL ? s->wcount : 0;
}

size_t fg_sink_in_flight(const struct fg_sink *s)
{
    return s != NULL ? s->busy : 0;
}

void fg_sink_free(struct fg_sink *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; s->slots != NULL && i < s->nslots; i++) {
        if (s->slots[i].bev != NULL)
            bufferevent_free(s->slots[i].bev);
        s->slots[i].magic = 0;
    }
    for (size_t i = 0; s->win != NULL && i < s->wcount; i++)
        free(win_at(s, i)->data);
    free(s->slots);
    free(s->win);
    fg_spool_iter_free(s->it);
    if (s->timer != NULL)
        event_free(s->timer);
    free(s);
}
