/*
 * sink.c — the `local` sink: the spool is the queue, and committed records are replayed
 * in order to the app over HTTP/1.1 keep-alive connections (proxy/httpc,
 * as in drain mode), each with its Idempotency-Key, at most replay_rate per second and
 * replay_concurrency at a time.
 *
 * Records are read into a window in sequence order. Each is sent until the app gives a
 * final answer: 2xx (ok) or a permanent 4xx other than 408 and 429 (rejected: logged,
 * counted, never sent again). 5xx, 408, 429, timeouts (replay_timeout for the whole
 * request), connection errors and garbled responses are failures: the record is sent
 * again after a jittered exponential backoff
 * (replay_backoff doubling up to replay_backoff_max, times a random 0.5..1). Later
 * records keep flowing while one waits, within the window. The spool is acknowledged up
 * to the highest record of the finished prefix of the window, so a record is
 * acknowledged only once it and everything before it are done; the checkpoint timer
 * makes that durable. After a crash everything above the checkpoint is replayed again:
 * at least once, and the app deduplicates by key.
 */
#include "agent/agentd.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENTRY_MAGIC 0x41475345u /* "AGSE" */
#define WINDOW_MIN  64

/* A record in the window; the window's ring holds it, so its address is stable until it
 * leaves the finished prefix (never while a request for it is in flight). */
struct entry {
    struct fg_window_entry w; /* first: the window's part */
    unsigned magic;
    struct local_sink *s;
    uint8_t *data; /* the spooled RECORD frame */
    size_t len;
    struct fg_httpc_req *req; /* the replay in flight */
};

struct local_sink {
    const struct fg_conf_agent *cfg;
    struct fg_agentd_stats *st;
    struct fg_httpc *app;
    struct fg_window *win;
    size_t busy;
    struct fg_rate rate;
    struct event *timer;
    bool in_pump, again;
};

static void pump(struct local_sink *s);

static bool entry_load(void *arg, struct fg_window_entry *we, const struct fg_spool_record *rec)
{
    struct entry *e = (struct entry *)we;
    e->data = malloc(rec->len > 0 ? rec->len : 1);
    if (e->data == NULL)
        return false;
    memcpy(e->data, rec->data, rec->len);
    e->len = rec->len;
    e->w.bytes = rec->len;
    e->magic = ENTRY_MAGIC;
    e->s = arg;
    return true;
}

static void entry_clear(void *arg, struct fg_window_entry *we)
{
    (void)arg;
    struct entry *e = (struct entry *)we;
    fg_httpc_cancel(e->req);
    e->req = NULL;
    free(e->data);
    e->data = NULL;
    e->magic = 0;
}

static const struct fg_window_ops entry_ops = {.load = entry_load, .clear = entry_clear};

/* The replay of e is over: done (ok or rejected), or to be sent again after the backoff. */
static void entry_finish(struct local_sink *s, struct entry *e, bool done, const char *why)
{
    if (done) {
        e->w.state = FG_WINDOW_DONE;
    } else {
        e->w.state = FG_WINDOW_WAIT;
        e->w.attempts++;
        s->st->replay_retries++;
        s->st->replayed_failed++;
        uint64_t d =
            fg_backoff_ms(s->cfg->replay_backoff_ms, s->cfg->replay_backoff_max_ms, e->w.attempts);
        e->w.not_before_ms = fg_mono_ms() + d;
        if (e->w.attempts == 1 || e->w.attempts % 10 == 0)
            fg_warn("replay of record %llu to %s failed (%s), attempt %u; retrying in %llums",
                    (unsigned long long)e->w.seq, s->cfg->app.text, why, e->w.attempts,
                    (unsigned long long)d);
    }
    pump(s);
}

static void replay_cb(const struct fg_httpc_result *res, void *arg)
{
    struct entry *e = arg;
    FG_ASSERT(e->magic == ENTRY_MAGIC);
    struct local_sink *s = e->s;
    e->req = NULL;
    s->busy--;
    if (res->retried)
        s->st->replay_retries++; /* httpc sent it again at once: a stale keep-alive */
    if (res->status == 0) {
        entry_finish(s, e, false, res->error);
        return;
    }
    enum fg_replay_verdict v = fg_replay_verdict(res->status);
    if (v == FG_REPLAY_OK) {
        s->st->replayed_ok++;
        entry_finish(s, e, true, NULL);
    } else if (v == FG_REPLAY_RETRY) {
        char why[32];
        snprintf(why, sizeof(why), "status %d", res->status);
        entry_finish(s, e, false, why);
    } else {
        s->st->replayed_rejected++;
        fg_warn("replay of record %llu: the app answered %d, a permanent refusal; the record "
                "is dropped",
                (unsigned long long)e->w.seq, res->status);
        entry_finish(s, e, true, NULL);
    }
}

static void entry_send(struct local_sink *s, struct entry *e)
{
    static struct fg_agent_record r; /* large; one thread */
    if (fg_agent_proto_decode_record(e->data, e->len, e->len, &r, NULL, NULL) !=
        FG_AGENT_PROTO_OK) {
        s->st->replayed_rejected++;
        fg_err("spool record %llu does not decode as a RECORD frame; skipped",
               (unsigned long long)e->w.seq);
        entry_finish(s, e, true, NULL);
        return;
    }
    struct evbuffer *b = evbuffer_new();
    if (b != NULL) {
        fg_replay_write_request(b, &r, s->cfg->app.text);
        e->req = fg_httpc_send(s->app, fg_http_method_parse(r.method, r.method_len), b,
                               s->cfg->replay_timeout_ms, replay_cb, e);
        evbuffer_free(b);
    }
    if (e->req == NULL) {
        entry_finish(s, e, false, "out of memory");
        return;
    }
    e->w.state = FG_WINDOW_SENDING;
    s->busy++;
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    pump(arg);
}

static void pump_once(struct local_sink *s)
{
    /* 1. Acknowledge the finished prefix, read committed records into the window. */
    uint64_t now = fg_mono_ms();
    uint64_t wake = fg_window_fill(s->win, now);
    /* 2. Send what the concurrency and the rate allow, oldest first. */
    size_t n = fg_window_count(s->win);
    for (size_t i = 0; i < n && s->busy < s->cfg->replay_concurrency; i++) {
        struct entry *e = fg_window_at(s->win, i);
        if (e->w.state != FG_WINDOW_WAIT)
            continue;
        if (e->w.not_before_ms > now) {
            if (e->w.not_before_ms < wake)
                wake = e->w.not_before_ms;
            continue;
        }
        uint64_t need = fg_rate_take(&s->rate, fg_mono_us());
        if (need > 0) {
            if (now + need < wake)
                wake = now + need;
            break;
        }
        entry_send(s, e);
    }
    if (wake != UINT64_MAX) {
        uint64_t in_ms = wake > now ? wake - now : 0;
        struct timeval tv = {.tv_sec = (time_t)(in_ms / 1000),
                             .tv_usec = (suseconds_t)(in_ms % 1000) * 1000};
        event_add(s->timer, &tv);
    }
}

static void pump(struct local_sink *s)
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

/* The app's address as an http:// URL for the client: the address resolved when the
 * configuration was loaded, so that no lookup happens at run time. */
static void app_url(const struct fg_addr *a, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN];
    fg_addr_ip_text((const struct sockaddr *)&a->ss, ip, sizeof(ip));
    uint16_t port = a->ss.ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)&a->ss)->sin6_port
                                                : ((const struct sockaddr_in *)&a->ss)->sin_port;
    snprintf(out, outlen, strchr(ip, ':') != NULL ? "http://[%s]:%u" : "http://%s:%u", ip,
             (unsigned)ntohs(port));
}

static void local_destroy(void *sink);

static void *local_create(const struct fg_agentd_sink_env *env, char *err, size_t errlen)
{
    const struct fg_conf_agent *cfg = env->cfg;
    struct local_sink *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    struct fg_agentd_stats *st = env->st;
    struct event_base *base = env->base;
    s->cfg = cfg;
    s->st = st;
    size_t conc = (size_t)cfg->replay_concurrency;
    size_t wcap = conc * 8 > WINDOW_MIN ? conc * 8 : WINDOW_MIN;
    s->win = fg_window_new(env->sp, wcap, sizeof(struct entry), 0, &entry_ops, s, "replay");
    s->timer = evtimer_new(base, timer_cb, s);
    if (s->win == NULL || s->timer == NULL) {
        snprintf(err, errlen, "out of memory");
        local_destroy(s);
        return NULL;
    }
    char url[128], why[256];
    app_url(&cfg->app, url, sizeof(url));
    struct fg_httpc_opts o = {
        .name = "app", .allow_plain_http = true, .max_idle = conc, .discard_body = true};
    s->app = fg_httpc_new(base, NULL, url, &o, why, sizeof(why));
    if (s->app == NULL) {
        snprintf(err, errlen, "cannot replay to %s (%s): %s", cfg->app.text, url, why);
        local_destroy(s);
        return NULL;
    }
    fg_rate_init(&s->rate, cfg->replay_rate, fg_mono_us());
    srandom((unsigned)fg_mono_us());
    return s;
}

static void local_kick(void *sink)
{
    pump(sink);
}

static void local_gauges(const void *sink, struct fg_agentd_sink_gauges *g)
{
    const struct local_sink *s = sink;
    g->replay_window = fg_window_count(s->win);
    g->replay_in_flight = s->busy;
}

/* Close the app connections (requests in flight are abandoned and replayed after the
 * next start) and free the sink. */
static void local_destroy(void *sink)
{
    struct local_sink *s = sink;
    if (s == NULL)
        return;
    fg_window_free(s->win); /* cancels the requests in flight */
    fg_httpc_free(s->app);
    if (s->timer != NULL)
        event_free(s->timer);
    free(s);
}

const struct fg_agentd_sink_ops fg_sink_local_ops = {
    .name = "local",
    .create = local_create,
    .kick = local_kick,
    .gauges = local_gauges,
    .destroy = local_destroy,
};
