/*
 * bus.c — the fleet's purge bus (fleet.h). One thread with its own event_base owns one
 * Redis client (proxy/redis) and one subscription to the fleet's channel.
 *
 * A purge asked here: applied here by the caller, then XADD to the log (its id is the
 * purge's place in the fleet's order), then (S)PUBLISH "1 <id> <origin> <kind> <value>"
 * on the channel; PUBLISH's answer is the number of subscribers that received it. The
 * two go one after the other on the connection that owns the channel's slot (the log and
 * the channel share a hash tag).
 *
 * A purge received: applied unless this process sent it (it was applied at once, before
 * the publish); its log id is remembered. A subscription that comes back after a loss
 * (or the first one: purges sent while this process started) reads the log after the
 * last id seen, in one script (XLEN, the first entry, the entries after it) so the answer
 * is one consistent view: entries missed are applied; when the log was trimmed past that
 * id (it is full and its oldest entry is newer), or cannot be read, every cache is
 * dropped instead. Dropping more than needed costs app requests; serving a purged page
 * after a purge is what the fleet promises never to do.
 */
#include "fleet/internal.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <hiredis/hiredis.h>

#include "cache/cache.h"
#include "core/core.h"
#include "redis/redis.h"

#define BUS_TIMEOUT_MS   1000 /* one Redis command of the bus */
#define BUS_FORMAT       "1"  /* payload format version */
#define BUS_MARGIN_MS    2000 /* a first subscription reads purges since start minus this */
#define BUS_PAYLOAD_MAX  (8192 + 256)
#define BUS_REPLAY_COUNT 100000 /* entries read back at most (purge_log is at most 1e6...) */

/* The log, read back after a (re)subscription. Returns {XLEN, first id or "", entries}. */
static const char RESYNC_LUA[] =
    "local n = redis.call('XLEN', KEYS[1])\n"
    "local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)\n"
    "local rest = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])\n"
    "local f = ''\n"
    "if first[1] then f = first[1][1] end\n"
    "return {n, f, rest}\n";

/* What a running bus was started with, to tell whether a reload changes it. */
struct bus_conf {
    char url[512]; /* the endpoint as displayed (no secret) and its name */
    char channel[FG_CONF_NAME_MAX];
    enum fg_conf_fleet_sharded sharded;
    uint64_t purge_log, hot_keys;
};

static struct {
    pthread_mutex_t lock; /* running, base: publishers on other threads vs start/stop */
    bool running;
    struct event_base *base;
    pthread_t thread;
    struct bus_conf conf;

    /* The fleet thread's (set before it starts, then its own). */
    struct fg_redis_endpoint *ep;
    struct fg_redis *redis;
    struct fg_redis_sub *sub;
    bool sharded;               /* decided when the client first got ready */
    char chan[96], log_key[96]; /* fg:fleet:{channel}:bus / :log */
    bool have_id;               /* last_ms/last_seq: the newest log entry applied or seen */
    uint64_t last_ms, last_seq;
    bool resync_running, resync_again, resync_wanted;
    uint64_t since_ms, since_seq; /* where the running resync reads from */
    struct fg_redis_script resync;
    int64_t start_ms;
    struct fg_config *setup_cfg; /* for setup_cb, on the bus thread */
    struct fg_addr warm_target;
    bool has_warm_target, first_start;
    char origin[24]; /* this process, in its payloads: its own are not applied twice */

    _Atomic bool subscribed;
    _Atomic uint64_t sent, publish_failures, received, replayed, resyncs, flushes, objects;
} B = {.lock = PTHREAD_MUTEX_INITIALIZER};

static const char KIND_CHAR[] = {'k', 'p', 't'};

static void bump(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

size_t fg_fleet_apply_purge(enum fg_fleet_purge_kind kind, const char *value, size_t len)
{
    fg_fleet_remember_purge(kind, value, len, fg_wall_ms());
    if (kind == FG_FLEET_PURGE_TAG)
        return fg_cache_registry_purge_tag(value, len);
    return fg_cache_registry_purge(value, len, kind == FG_FLEET_PURGE_PREFIX);
}

size_t fg_fleet_apply_flush(void)
{
    fg_fleet_remember_flush(fg_wall_ms());
    return fg_cache_registry_purge("", 0, true);
}

/* Every object of every store: the log could not say what was missed. */
static size_t flush_all(const char *why)
{
    size_t n = fg_fleet_apply_flush();
    bump(&B.flushes, 1);
    fg_warn("fleet: %s: every cache dropped (%zu object(s)), since purges may have been missed",
            why, n);
    return n;
}

/* "1700000000000-3" into its two numbers. */
static bool parse_id(const char *s, size_t len, uint64_t *ms, uint64_t *seq)
{
    char buf[48];
    if (len == 0 || len >= sizeof(buf))
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *dash = strchr(buf, '-');
    if (dash == NULL)
        return false;
    *dash = '\0';
    return fg_parse_uint(buf, UINT64_MAX, ms) && fg_parse_uint(dash + 1, UINT64_MAX, seq);
}

static bool id_after(uint64_t ms, uint64_t seq, uint64_t ms2, uint64_t seq2)
{
    return ms > ms2 || (ms == ms2 && seq > seq2);
}

static void saw_id(uint64_t ms, uint64_t seq)
{
    if (!B.have_id || id_after(ms, seq, B.last_ms, B.last_seq)) {
        B.have_id = true;
        B.last_ms = ms;
        B.last_seq = seq;
    }
}

/* "<origin> <kind> <value>" (what the log keeps): apply it unless it is ours. Returns
 * false when it is not a purge of this format. */
static bool apply_entry(const char *p, size_t len, bool replay)
{
    const char *sp = memchr(p, ' ', len);
    if (sp == NULL || (size_t)(sp - p) + 3 > len || sp[2] != ' ')
        return false;
    size_t olen = (size_t)(sp - p);
    char k = sp[1];
    const char *v = sp + 3;
    size_t vlen = len - (size_t)(v - p);
    int kind = k == 'k'   ? FG_FLEET_PURGE_KEY
               : k == 'p' ? FG_FLEET_PURGE_PREFIX
               : k == 't' ? FG_FLEET_PURGE_TAG
                          : -1;
    if (kind < 0)
        return false;
    if (olen == strlen(B.origin) && memcmp(p, B.origin, olen) == 0)
        return true; /* applied when it was asked here */
    size_t n = fg_fleet_apply_purge((enum fg_fleet_purge_kind)kind, v, vlen);
    bump(&B.objects, n);
    bump(replay ? &B.replayed : &B.received, 1);
    fg_info("fleet: purge of %s%.*s %s: %zu object(s) removed",
            kind == FG_FLEET_PURGE_PREFIX ? "prefix "
            : kind == FG_FLEET_PURGE_TAG  ? "tag "
                                          : "",
            (int)vlen, v, replay ? "read back from the log" : "received", n);
    return true;
}

/* ---- receiving ------------------------------------------------------------------------- */

/* "1 <id> <origin> <kind> <value>" */
static void on_message(const char *channel, size_t channel_len, const char *payload, size_t len,
                       void *arg)
{
    (void)channel;
    (void)channel_len;
    (void)arg;
    const char *sp = len > 2 ? memchr(payload, ' ', len) : NULL;
    if (sp == NULL || sp != payload + 1 || payload[0] != BUS_FORMAT[0]) {
        fg_warn("fleet: a message of an unknown format on %s was ignored", B.chan);
        return;
    }
    const char *id = sp + 1, *end = payload + len;
    const char *sp2 = memchr(id, ' ', (size_t)(end - id));
    if (sp2 == NULL) {
        fg_warn("fleet: a message of an unknown format on %s was ignored", B.chan);
        return;
    }
    uint64_t ms, seq;
    if (parse_id(id, (size_t)(sp2 - id), &ms, &seq))
        saw_id(ms, seq);
    /* "-": published without a log entry (the XADD failed): nothing to remember */
    if (!apply_entry(sp2 + 1, (size_t)(end - sp2 - 1), false))
        fg_warn("fleet: a message of an unknown format on %s was ignored", B.chan);
}

static void resync_start(void);

static void resync_done(enum fg_redis_status st, const struct redisReply *r, void *arg)
{
    (void)arg;
    B.resync_running = false;
    if (st != FG_REDIS_REPLY || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[2]->type != REDIS_REPLY_ARRAY) {
        flush_all(st == FG_REDIS_TIMEOUT ? "the purge log did not answer in time"
                                         : "the purge log could not be read");
    } else {
        bump(&B.resyncs, 1);
        uint64_t n = (uint64_t)r->element[0]->integer;
        const struct redisReply *first = r->element[1], *rest = r->element[2];
        uint64_t fms = 0, fseq = 0;
        bool has_first =
            first->type == REDIS_REPLY_STRING && parse_id(first->str, first->len, &fms, &fseq);
        /* Trimmed past our place: full, and its oldest entry is newer than where we read
         * from (with an exact MAXLEN, a log that is not full never lost an entry). */
        bool gap =
            n >= B.conf.purge_log && has_first && id_after(fms, fseq, B.since_ms, B.since_seq);
        if (gap)
            flush_all("the purge log was trimmed past the last purge this instance saw");
        for (size_t i = 0; i < rest->elements; i++) {
            const struct redisReply *e = rest->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
                e->element[0]->type != REDIS_REPLY_STRING ||
                e->element[1]->type != REDIS_REPLY_ARRAY || e->element[1]->elements < 2)
                continue;
            const struct redisReply *val = e->element[1]->element[1];
            uint64_t ms, seq;
            if (val->type == REDIS_REPLY_STRING &&
                parse_id(e->element[0]->str, e->element[0]->len, &ms, &seq)) {
                if (!gap)
                    apply_entry(val->str, val->len, true);
                saw_id(ms, seq);
            }
        }
    }
    if (B.resync_again) {
        B.resync_again = false;
        resync_start();
    }
}

static void resync_start(void)
{
    if (B.resync_running) {
        B.resync_again = true;
        return;
    }
    if (B.conf.purge_log == 0) {
        flush_all("subscribed again without a purge log (purge_log 0)");
        return;
    }
    if (!fg_redis_ready(B.redis)) {
        /* the pub/sub connection came back before the command one: read the log once it
         * is there too (on_redis_event) */
        B.resync_wanted = true;
        return;
    }
    B.resync_wanted = false;
    char from[64], count[24];
    if (B.have_id) {
        B.since_ms = B.last_ms;
        B.since_seq = B.last_seq;
        snprintf(from, sizeof(from), "(%" PRIu64 "-%" PRIu64, B.last_ms, B.last_seq);
    } else { /* the first subscription: what was sent while this process started */
        B.since_ms = B.start_ms > BUS_MARGIN_MS ? (uint64_t)(B.start_ms - BUS_MARGIN_MS) : 0;
        B.since_seq = 0;
        snprintf(from, sizeof(from), "%" PRIu64 "-0", B.since_ms);
    }
    snprintf(count, sizeof(count), "%d", BUS_REPLAY_COUNT);
    const char *keys[] = {B.log_key};
    const char *args[] = {from, count};
    B.resync_running = fg_redis_eval(B.redis, &B.resync, 1, keys, NULL, 2, args, NULL,
                                     BUS_TIMEOUT_MS, resync_done, NULL) != NULL;
    if (!B.resync_running)
        flush_all("the purge log could not be asked for");
}

static void on_sub_state(bool subscribed, void *arg)
{
    (void)arg;
    bool was = atomic_exchange(&B.subscribed, subscribed);
    if (subscribed) {
        fg_notice("fleet: subscribed to %s%s", B.chan, B.sharded ? " (sharded)" : "");
        resync_start();
    } else if (was) {
        fg_warn("fleet: subscription to %s lost; purges sent meanwhile are read back from the "
                "log once it is back",
                B.chan);
    }
}

/* The subscription is made once the client knows whether the server is a cluster (auto
 * picks sharded pub/sub there), outside the client's own callback. */
static void subscribe_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (B.sub != NULL || B.redis == NULL)
        return;
    B.sharded = B.conf.sharded == FG_CONF_SHARDED_ON ||
                (B.conf.sharded == FG_CONF_SHARDED_AUTO && fg_redis_is_cluster(B.redis));
    B.sub = fg_redis_subscribe(B.redis, B.chan, strlen(B.chan), B.sharded, on_message, on_sub_state,
                               NULL);
    if (B.sub == NULL)
        fg_err("fleet: cannot subscribe to %s: out of memory", B.chan);
}

static void resync_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (B.resync_wanted && B.redis != NULL)
        resync_start();
}

struct event_base *fg_fleet_bus_base(void)
{
    return B.base;
}

struct fg_redis *fg_fleet_bus_redis(void)
{
    return B.redis;
}

static void warm_ready_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    fg_fleet_warm_on_ready();
}

static void on_redis_event(enum fg_redis_event ev, void *arg)
{
    (void)arg;
    if (ev == FG_REDIS_EV_CONNECTED)
        event_base_once(B.base, -1, EV_TIMEOUT, warm_ready_cb, NULL, NULL);
    if (ev == FG_REDIS_EV_CONNECTED && B.sub == NULL)
        event_base_once(B.base, -1, EV_TIMEOUT, subscribe_cb, NULL, NULL);
    else if (ev == FG_REDIS_EV_CONNECTED && B.resync_wanted)
        event_base_once(B.base, -1, EV_TIMEOUT, resync_cb, NULL, NULL);
}

/* ---- publishing ------------------------------------------------------------------------ */

struct pub_job {
    struct event_base *reply_base;
    fg_fleet_published cb;
    void *arg;
    struct fg_fleet_publish_result res;
    char kind;
    size_t len;
    char value[]; /* NUL-terminated */
};

static void deliver_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pub_job *j = arg;
    j->cb(&j->res, j->arg);
    free(j);
}

/* Hand the result to the caller's thread. */
static void finish(struct pub_job *j, bool published, uint64_t receivers, const char *error)
{
    j->res.published = published;
    j->res.receivers = receivers;
    j->res.error = error;
    bump(published ? &B.sent : &B.publish_failures, 1);
    if (!published)
        fg_warn("fleet: purge of %s not published (%s): applied on this instance only", j->value,
                error);
    if (event_base_once(j->reply_base, -1, EV_TIMEOUT, deliver_cb, j, NULL) != 0) {
        fg_err("fleet: cannot hand a purge's result back");
        free(j);
    }
}

static void publish_done(enum fg_redis_status st, const struct redisReply *r, void *arg)
{
    struct pub_job *j = arg;
    if (st == FG_REDIS_REPLY && r->type == REDIS_REPLY_INTEGER)
        finish(j, true, (uint64_t)r->integer, NULL);
    else if (st == FG_REDIS_REPLY)
        finish(j, false, 0, "Redis refused the publish");
    else
        finish(j, false, 0, st == FG_REDIS_TIMEOUT ? "Redis did not answer in time" : "Redis lost");
}

static void publish(struct pub_job *j, const char *id, size_t id_len)
{
    char payload[BUS_PAYLOAD_MAX];
    int n = snprintf(payload, sizeof(payload), BUS_FORMAT " %.*s %s %c %s", (int)id_len, id,
                     B.origin, j->kind, j->value);
    /* decided here too: a publish may come before the subscription was made */
    bool sharded = B.conf.sharded == FG_CONF_SHARDED_ON ||
                   (B.conf.sharded == FG_CONF_SHARDED_AUTO && fg_redis_is_cluster(B.redis));
    const char *argv[] = {sharded ? "SPUBLISH" : "PUBLISH", B.chan, payload};
    size_t lens[] = {strlen(argv[0]), strlen(B.chan), (size_t)n};
    struct fg_redis_cmd c = {.argc = 3,
                             .argv = argv,
                             .lens = lens,
                             .key = B.chan,
                             .key_len = strlen(B.chan),
                             .timeout_ms = BUS_TIMEOUT_MS};
    if (fg_redis_command(B.redis, &c, publish_done, j) == NULL)
        finish(j, false, 0, "Redis unavailable");
}

static void xadd_done(enum fg_redis_status st, const struct redisReply *r, void *arg)
{
    struct pub_job *j = arg;
    if (st == FG_REDIS_REPLY && r->type == REDIS_REPLY_STRING) {
        publish(j, r->str, r->len);
        return;
    }
    if (st == FG_REDIS_LOST) {
        finish(j, false, 0, "Redis lost");
        return;
    }
    /* Published anyway: the instances subscribed now still get it; one cut off will not
     * find it in the log (it is said here). */
    fg_warn("fleet: the purge of %s could not be logged (%s); instances cut off now will "
            "miss it",
            j->value,
            st == FG_REDIS_TIMEOUT         ? "timeout"
            : r->type == REDIS_REPLY_ERROR ? r->str
                                           : "?");
    publish(j, "-", 1);
}

static void job_start(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pub_job *j = arg;
    if (B.redis == NULL || !fg_redis_ready(B.redis)) {
        finish(j, false, 0, "Redis unavailable");
        return;
    }
    if (B.conf.purge_log == 0) {
        publish(j, "-", 1);
        return;
    }
    char entry[BUS_PAYLOAD_MAX], maxlen[24];
    int n = snprintf(entry, sizeof(entry), "%s %c %s", B.origin, j->kind, j->value);
    snprintf(maxlen, sizeof(maxlen), "%" PRIu64, B.conf.purge_log);
    /* MAXLEN exact (not ~): a log that is not full has lost nothing (resync_done) */
    const char *argv[] = {"XADD", B.log_key, "MAXLEN", maxlen, "*", "m", entry};
    size_t lens[] = {4, strlen(B.log_key), 6, strlen(maxlen), 1, 1, (size_t)n};
    struct fg_redis_cmd c = {.argc = 7,
                             .argv = argv,
                             .lens = lens,
                             .key = B.log_key,
                             .key_len = strlen(B.log_key),
                             .timeout_ms = BUS_TIMEOUT_MS};
    if (fg_redis_command(B.redis, &c, xadd_done, j) == NULL)
        finish(j, false, 0, "Redis unavailable");
}

void fg_fleet_publish_purge(enum fg_fleet_purge_kind kind, const char *value, size_t len,
                            struct event_base *reply_base, fg_fleet_published cb, void *arg)
{
    struct pub_job *j = malloc(sizeof(*j) + len + 1);
    if (j != NULL) {
        memset(j, 0, sizeof(*j));
        j->reply_base = reply_base;
        j->cb = cb;
        j->arg = arg;
        j->kind = KIND_CHAR[kind];
        j->len = len;
        memcpy(j->value, value, len);
        j->value[len] = '\0';
    }
    pthread_mutex_lock(&B.lock);
    bool queued = j != NULL && B.running && len < 8192 &&
                  event_base_once(B.base, -1, EV_TIMEOUT, job_start, j, NULL) == 0;
    bool on = B.running;
    pthread_mutex_unlock(&B.lock);
    if (!queued) {
        struct fg_fleet_publish_result res = {.error = !on         ? "no fleet"
                                                       : j == NULL ? "out of memory"
                                                                   : "cannot queue it"};
        if (on)
            bump(&B.publish_failures, 1);
        free(j);
        cb(&res, arg);
    }
}

/* ---- the thread ------------------------------------------------------------------------ */

static void setup_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    struct fg_redis_opts o = {.on_event = on_redis_event};
    B.redis = fg_redis_new(B.base, B.ep, &o);
    if (B.redis == NULL)
        fg_err("fleet: cannot make a Redis client: out of memory");
    fg_fleet_warm_setup(B.setup_cfg, B.has_warm_target ? &B.warm_target : NULL, B.first_start);
    fg_config_unref(B.setup_cfg);
    B.setup_cfg = NULL;
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    fg_fleet_warm_teardown();
    fg_redis_unsubscribe(B.sub);
    B.sub = NULL;
    fg_redis_free(B.redis); /* publishes still waiting are answered (lost) inside */
    B.redis = NULL;
    atomic_store(&B.subscribed, false);
    event_base_loopbreak(B.base);
}

static void *bus_main(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "fg-fleet");
    event_base_loop(B.base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

static void conf_of(const struct fg_config *cfg, struct bus_conf *out)
{
    memset(out, 0, sizeof(*out));
    const struct fg_conf_fleet *f = &cfg->fleet;
    snprintf(out->url, sizeof(out->url), "%s %s", fg_redis_endpoint_name(f->ep),
             fg_redis_endpoint_display(f->ep));
    snprintf(out->channel, sizeof(out->channel), "%s", f->channel);
    out->sharded = f->sharded;
    out->purge_log = f->purge_log;
    out->hot_keys = f->hot_keys;
}

bool fg_fleet_start(const struct fg_config *cfg, const struct fg_addr *warm_target)
{
    if (!cfg->fleet.enabled || cfg->fleet.ep == NULL)
        return true;
    FG_ASSERT(!B.running);
    evthread_use_pthreads(); /* publishers post to this base from the admin thread */
    B.first_start = B.origin[0] == '\0';
    B.has_warm_target = warm_target != NULL;
    if (warm_target != NULL)
        B.warm_target = *warm_target;
    B.setup_cfg = fg_config_ref((struct fg_config *)cfg);
    if (B.origin[0] == '\0') {
        uint64_t r = 0;
        if (getrandom(&r, sizeof(r), 0) != sizeof(r))
            r = (uint64_t)fg_wall_ms() ^ (uint64_t)getpid() << 32;
        snprintf(B.origin, sizeof(B.origin), "%016" PRIx64, r);
        B.start_ms = fg_wall_ms();
        fg_redis_script_init(&B.resync, RESYNC_LUA);
    }
    struct bus_conf next;
    conf_of(cfg, &next);
    if (strcmp(next.channel, B.conf.channel) != 0 && !B.first_start) {
        /* another fleet's log: our place in the old one means nothing there */
        B.have_id = false;
        B.start_ms = fg_wall_ms();
    }
    B.conf = next;
    snprintf(B.chan, sizeof(B.chan), "fg:fleet:{%s}:bus", cfg->fleet.channel);
    snprintf(B.log_key, sizeof(B.log_key), "fg:fleet:{%s}:log", cfg->fleet.channel);
    B.ep = fg_redis_endpoint_ref(cfg->fleet.ep);
    B.base = event_base_new();
    if (B.base == NULL || event_base_once(B.base, -1, EV_TIMEOUT, setup_cb, NULL, NULL) != 0 ||
        pthread_create(&B.thread, NULL, bus_main, NULL) != 0) {
        fg_err("fleet: cannot start the bus thread");
        fg_config_unref(B.setup_cfg);
        B.setup_cfg = NULL;
        if (B.base != NULL)
            event_base_free(B.base);
        B.base = NULL;
        fg_redis_endpoint_unref(B.ep);
        B.ep = NULL;
        return false;
    }
    pthread_mutex_lock(&B.lock);
    B.running = true;
    pthread_mutex_unlock(&B.lock);
    fg_notice("fleet: purges go through %s on channel %s", fg_redis_endpoint_display(B.ep), B.chan);
    return true;
}

void fg_fleet_stop(void)
{
    pthread_mutex_lock(&B.lock);
    bool running = B.running;
    B.running = false; /* no new job is queued from now on */
    pthread_mutex_unlock(&B.lock);
    if (!running)
        return;
    event_base_once(B.base, -1, EV_TIMEOUT, stop_cb, NULL, NULL);
    pthread_join(B.thread, NULL);
    /* Jobs queued before running went false but after the stop: answered now (no
     * client: not published), so that no caller waits for ever. */
    event_base_loop(B.base, EVLOOP_NONBLOCK);
    event_base_free(B.base);
    B.base = NULL;
    fg_redis_endpoint_unref(B.ep);
    B.ep = NULL;
    B.resync_running = B.resync_again = B.resync_wanted = false;
}

void fg_fleet_reload(const struct fg_config *cfg)
{
    bool want = cfg->fleet.enabled && cfg->fleet.ep != NULL;
    pthread_mutex_lock(&B.lock);
    bool running = B.running;
    pthread_mutex_unlock(&B.lock);
    if (running && want) {
        struct bus_conf next;
        conf_of(cfg, &next);
        if (memcmp(&next, &B.conf, sizeof(next)) == 0)
            return;
    }
    if (!running && !want)
        return;
    fg_fleet_stop();
    fg_fleet_start(cfg, NULL); /* a reload does not warm: the instance is not cold */
}

bool fg_fleet_on(void)
{
    pthread_mutex_lock(&B.lock);
    bool on = B.running;
    pthread_mutex_unlock(&B.lock);
    return on;
}

/* ---- counters -------------------------------------------------------------------------- */

void fg_fleet_get_stats(struct fg_fleet_stats *out)
{
#define GET(x) atomic_load_explicit(&B.x, memory_order_relaxed)
    *out = (struct fg_fleet_stats){.on = fg_fleet_on(),
                                   .subscribed = atomic_load(&B.subscribed),
                                   .purges_sent = GET(sent),
                                   .publish_failures = GET(publish_failures),
                                   .purges_received = GET(received),
                                   .purges_replayed = GET(replayed),
                                   .resyncs = GET(resyncs),
                                   .flushes = GET(flushes),
                                   .objects_purged = GET(objects)};
#undef GET
}

void fg_fleet_stats_json(struct evbuffer *out)
{
    struct fg_fleet_stats s;
    fg_fleet_get_stats(&s);
    if (!s.on) {
        evbuffer_add_printf(out, "\"fleet\":null");
        return;
    }
    struct fg_fleet_l2_stats l;
    fg_fleet_l2_stats(&l);
    evbuffer_add_printf(
        out,
        "\"fleet\":{\"subscribed\":%s,\"purges_sent\":%" PRIu64 ",\"publish_failures\":%" PRIu64
        ",\"purges_received\":%" PRIu64 ",\"purges_replayed\":%" PRIu64 ",\"resyncs\":%" PRIu64
        ",\"flushes\":%" PRIu64 ",\"objects_purged\":%" PRIu64 ",",
        s.subscribed ? "true" : "false", s.purges_sent, s.publish_failures, s.purges_received,
        s.purges_replayed, s.resyncs, s.flushes, s.objects_purged);
    evbuffer_add_printf(out,
                        "\"l2\":{\"hits\":%" PRIu64 ",\"misses\":%" PRIu64 ",\"rejected\":%" PRIu64
                        ",\"too_big\":%" PRIu64 ",\"writes\":%" PRIu64 ",\"write_errors\":%" PRIu64
                        ",\"timeouts\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"bytes_read\":%" PRIu64
                        ",\"bytes_written\":%" PRIu64 "},",
                        l.hits, l.misses, l.rejected, l.too_big, l.writes, l.write_errors,
                        l.timeouts, l.errors, l.bytes_read, l.bytes_written);
    evbuffer_add_printf(out,
                        "\"locks\":{\"taken\":%" PRIu64 ",\"waited\":%" PRIu64
                        ",\"timed_out\":%" PRIu64 ",\"filled\":%" PRIu64 ",\"passed\":%" PRIu64
                        ",\"notifications\":%" PRIu64 "}",
                        l.locks_taken, l.locks_waited, l.lock_timeouts, l.waits_filled,
                        l.waits_passed, l.notifications);
    struct fg_fleet_warm_progress w;
    fg_fleet_warm_progress(&w);
    evbuffer_add_printf(out,
                        ",\"warm_start\":{\"state\":\"%s\",\"pages\":%" PRIu64 ",\"done\":%" PRIu64
                        ",\"failed\":%" PRIu64 ",\"in_flight\":%" PRIu64 ",\"duration_ms\":%" PRIu64
                        "}}",
                        w.state, w.pages, w.done, w.failed, w.in_flight, w.duration_ms);
}

void fg_fleet_stats_metrics(struct evbuffer *out)
{
    struct fg_fleet_stats s;
    fg_fleet_get_stats(&s);
    if (!s.on)
        return;
    static const struct {
        const char *name, *type, *help;
    } m[] = {
        {"flashgate_fleet_subscribed", "gauge",
         "1 while this instance is subscribed to the fleet's purge channel."},
        {"flashgate_fleet_purges_sent_total", "counter", "Purges published to the fleet."},
        {"flashgate_fleet_publish_failures_total", "counter",
         "Purges Redis could not take: applied on this instance only."},
        {"flashgate_fleet_purges_received_total", "counter",
         "Purges from other instances applied here."},
        {"flashgate_fleet_purges_replayed_total", "counter",
         "Purges missed while cut off from Redis, read back from the log."},
        {"flashgate_fleet_resyncs_total", "counter",
         "Subscriptions (first or again) after which the purge log was read."},
        {"flashgate_fleet_flushes_total", "counter",
         "Times every cache was dropped because purges may have been missed."},
        {"flashgate_fleet_objects_purged_total", "counter",
         "Objects removed here by purges from other instances."},
    };
    uint64_t v[] = {s.subscribed ? 1 : 0, s.purges_sent, s.publish_failures, s.purges_received,
                    s.purges_replayed,    s.resyncs,     s.flushes,          s.objects_purged};
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
        evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", m[i].name,
                            m[i].help, m[i].name, m[i].type, m[i].name, v[i]);
    struct fg_fleet_l2_stats l;
    fg_fleet_l2_stats(&l);
    struct fg_fleet_warm_progress w;
    fg_fleet_warm_progress(&w);
    static const struct {
        const char *name, *type, *help;
    } lm[] = {
        {"flashgate_fleet_l2_hits_total", "counter", "Local misses served from the shared tier."},
        {"flashgate_fleet_l2_misses_total", "counter",
         "Local misses the shared tier could not serve."},
        {"flashgate_fleet_l2_rejected_total", "counter",
         "Shared-tier records of the variant that were stale or purged since."},
        {"flashgate_fleet_l2_too_big_total", "counter",
         "Fills not written back: over shared_max_object."},
        {"flashgate_fleet_l2_writes_total", "counter", "Write backs the shared tier took."},
        {"flashgate_fleet_l2_write_errors_total", "counter",
         "Write backs that failed or were refused."},
        {"flashgate_fleet_l2_timeouts_total", "counter",
         "Shared-tier commands past their deadline (the app was asked instead)."},
        {"flashgate_fleet_l2_errors_total", "counter",
         "Shared-tier gets that could not be asked or answered, undecodable records."},
        {"flashgate_fleet_l2_read_bytes_total", "counter",
         "Bytes of records served from the shared tier."},
        {"flashgate_fleet_l2_written_bytes_total", "counter",
         "Bytes of records written to the shared tier."},
        {"flashgate_fleet_locks_taken_total", "counter",
         "Fleet fill locks taken: this instance asked the app for the fleet."},
        {"flashgate_fleet_locks_waited_total", "counter",
         "Misses that waited for another instance's fill of the key."},
        {"flashgate_fleet_lock_timeouts_total", "counter",
         "Waits that ran out (cache_lock_timeout): the app was asked."},
        {"flashgate_fleet_lock_waits_filled_total", "counter",
         "Waits ended by the other instance's fill (then served from the shared tier)."},
        {"flashgate_fleet_lock_waits_passed_total", "counter",
         "Waits ended by an uncacheable or failed fill: the app was asked at once."},
        {"flashgate_fleet_fill_notifications_total", "counter",
         "Fill notifications sent to the fleet."},
        {"flashgate_fleet_warming", "gauge", "1 while the warm start keeps /healthz at 503."},
        {"flashgate_fleet_warm_pages", "gauge", "Hot pages the warm start asked for."},
        {"flashgate_fleet_warm_done", "gauge", "Warm-start pages answered."},
        {"flashgate_fleet_warm_failed", "gauge", "Warm-start pages that failed."},
    };
    uint64_t lv[] = {l.hits,
                     l.misses,
                     l.rejected,
                     l.too_big,
                     l.writes,
                     l.write_errors,
                     l.timeouts,
                     l.errors,
                     l.bytes_read,
                     l.bytes_written,
                     l.locks_taken,
                     l.locks_waited,
                     l.lock_timeouts,
                     l.waits_filled,
                     l.waits_passed,
                     l.notifications,
                     fg_fleet_warming() ? 1 : 0,
                     w.pages,
                     w.done,
                     w.failed};
    _Static_assert(sizeof(lm) / sizeof(lm[0]) == sizeof(lv) / sizeof(lv[0]), "one value each");
    for (size_t i = 0; i < sizeof(lm) / sizeof(lm[0]); i++)
        evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", lm[i].name,
                            lm[i].help, lm[i].name, lm[i].type, lm[i].name, lv[i]);
}
