/*
 * l2.c — the shared cache tier in the fleet's Redis (fleet.h): one client per worker and
 * config snapshot, records encoded and decoded here, a get with a deadline of a few
 * milliseconds and a put nobody waits for.
 *
 * Layout: the hash fg:l2:{<primary key>}:<channel> (the primary key is the hash tag, so
 * keys spread over a cluster's shards by URL), one field per variant: its Vary names, a
 * newline, its secondary key. A put sets the field and lengthens the hash's TTL to the
 * variant's (a script: PEXPIRE ... GT would not set a TTL on a new hash).
 *
 * A record (little-endian): "FGL2" and a version byte, the meta (status, Content-Length,
 * ETag, Last-Modified, response time, initial age, lifetime, the stale windows, the
 * revalidation flags), then length-prefixed the stored head, the Vary names, the
 * secondary key, the tags and the body.
 */
#include "fleet/internal.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "core/core.h"
#include "redis/redis.h"

#define L2_MAGIC     "FGL2"
#define L2_VERSION   1
#define L2_PUT_MS    1000 /* a write back: nobody waits for it */
#define L2_KEY_EXTRA 96

/* KEYS: the hash, the fill lock; ARGV: field, record, TTL ms, this process's lock token
 * ("" : no lock to release). */
static const char PUT_LUA[] = "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
                              "local t = redis.call('PTTL', KEYS[1])\n"
                              "if t < tonumber(ARGV[3]) then\n"
                              "  redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"
                              "end\n"
                              "if ARGV[4] ~= '' and redis.call('GET', KEYS[2]) == ARGV[4] then\n"
                              "  redis.call('DEL', KEYS[2])\n"
                              "end\n"
                              "return 1\n";
/* KEYS: the fill lock; ARGV: the token. Released only by its holder. */
static const char RELEASE_LUA[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                                  "  return redis.call('DEL', KEYS[1])\n"
                                  "end\n"
                                  "return 0\n";

static struct fg_redis_script put_script, release_script;
static pthread_once_t put_once = PTHREAD_ONCE_INIT;
static char token[24]; /* this process's lock token */

static void put_init(void)
{
    fg_redis_script_init(&put_script, PUT_LUA);
    fg_redis_script_init(&release_script, RELEASE_LUA);
    uint64_t r = 0;
    if (getrandom(&r, sizeof(r), 0) != sizeof(r))
        r = (uint64_t)fg_wall_ms() ^ (uint64_t)getpid() << 32;
    snprintf(token, sizeof(token), "%016" PRIx64, r);
}

/* Process-wide counters (fleet.h's stats). */
static struct {
    _Atomic uint64_t ev[FG_FLEET_L2_EV__COUNT];
    _Atomic uint64_t bytes_in, bytes_out, writes, write_errors, timeouts, errors;
    _Atomic uint64_t locks_taken, locks_waited, lock_timeouts, waits_filled, waits_passed;
    _Atomic uint64_t notifications;
} C;

static void add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

void fg_fleet_l2_count(enum fg_fleet_l2_event ev, uint64_t bytes)
{
    add(&C.ev[ev], 1);
    if (ev == FG_FLEET_L2_EV_HIT)
        add(&C.bytes_in, bytes);
}

void fg_fleet_l2_stats(struct fg_fleet_l2_stats *out)
{
#define GET(x) atomic_load_explicit(&C.x, memory_order_relaxed)
    *out = (struct fg_fleet_l2_stats){.hits = GET(ev[FG_FLEET_L2_EV_HIT]),
                                      .misses = GET(ev[FG_FLEET_L2_EV_MISS]),
                                      .rejected = GET(ev[FG_FLEET_L2_EV_REJECTED]),
                                      .too_big = GET(ev[FG_FLEET_L2_EV_TOO_BIG]),
                                      .writes = GET(writes),
                                      .write_errors = GET(write_errors),
                                      .timeouts = GET(timeouts),
                                      .errors = GET(errors),
                                      .bytes_read = GET(bytes_in),
                                      .bytes_written = GET(bytes_out),
                                      .locks_taken = GET(locks_taken),
                                      .locks_waited = GET(locks_waited),
                                      .lock_timeouts = GET(lock_timeouts),
                                      .waits_filled = GET(waits_filled),
                                      .waits_passed = GET(waits_passed),
                                      .notifications = GET(notifications)};
#undef GET
}

static void ignore_reply(enum fg_redis_status st, const struct redisReply *r, void *arg)
{
    (void)st;
    (void)r;
    (void)arg;
}

/* ---- workers' clients ------------------------------------------------------------------ */

#define L2_RECENT    64 /* fill notifications remembered, for a wait that registers late */
#define L2_RECENT_MS 1000

struct fg_fleet_req {
    struct fg_fleet_worker *fw;
    struct fg_redis_req *q; /* a lock request on its way */
    bool waiting;           /* a wait, on fw->waits */
    char *key;
    size_t key_len;
    struct event *timer;
    void (*lock_cb)(bool taken, bool answered, void *arg);
    void (*wait_cb)(enum fg_fleet_fill_outcome o, void *arg);
    void *arg;
    TAILQ_ENTRY(fg_fleet_req) link;
};

struct recent {
    uint64_t at_ms; /* monotonic */
    enum fg_fleet_fill_outcome o;
    char *key;
    size_t key_len;
};

struct fg_fleet_worker {
    struct event_base *base;
    struct fg_redis *redis;
    char channel[FG_CONF_NAME_MAX];
    char fills[FG_CONF_NAME_MAX + 32]; /* fg:fleet:{channel}:fills */
    enum fg_conf_fleet_sharded sharded_conf;
    bool sharded;
    struct fg_redis_sub *sub;
    bool subscribed;
    TAILQ_HEAD(, fg_fleet_req) waits;
    struct recent recent[L2_RECENT];
    size_t recent_next;
    char hot[FG_CONF_NAME_MAX + 32]; /* the hot record; "" when not kept */
    uint64_t rng;
    struct event *probe; /* while waits are pending: is Redis still answering? */
    bool probing;
};

void fg_fleet_hot(struct fg_fleet_worker *fw, const char *key, size_t key_len, const char *coding,
                  bool miss)
{
    if (fw == NULL || fw->hot[0] == '\0')
        return;
    const char *weight = "1";
    if (!miss) { /* one hit in HOT_SAMPLE, counted HOT_SAMPLE times (xorshift64) */
        fw->rng ^= fw->rng << 13;
        fw->rng ^= fw->rng >> 7;
        fw->rng ^= fw->rng << 17;
        if (fw->rng % 16 != 0)
            return;
        weight = "16";
    }
    char member[FG_CACHE_KEY_MAX + 16];
    int n = snprintf(member, sizeof(member), "%s %.*s", coding, (int)key_len, key);
    if (n <= 0 || (size_t)n >= sizeof(member))
        return;
    const char *argv[] = {"ZINCRBY", fw->hot, weight, member};
    size_t lens[] = {7, strlen(fw->hot), strlen(weight), (size_t)n};
    struct fg_redis_cmd c = {.argc = 4,
                             .argv = argv,
                             .lens = lens,
                             .key = fw->hot,
                             .key_len = strlen(fw->hot),
                             .timeout_ms = L2_PUT_MS};
    (void)fg_redis_command(fw->redis, &c, ignore_reply, NULL);
}

static void on_fill_message(const char *channel, size_t channel_len, const char *payload,
                            size_t len, void *arg);

static void req_free(struct fg_fleet_req *q);

/* Every wait ends now, told o: no word can come (Redis gone or not answering). */
static void abort_waits(struct fg_fleet_worker *fw)
{
    struct fg_fleet_req *q;
    while ((q = TAILQ_FIRST(&fw->waits)) != NULL) {
        void (*cb)(enum fg_fleet_fill_outcome, void *) = q->wait_cb;
        void *cb_arg = q->arg;
        req_free(q);
        cb(FG_FLEET_FILL_ABORTED, cb_arg);
    }
}

static void on_fills_state(bool subscribed, void *arg)
{
    struct fg_fleet_worker *fw = arg;
    fw->subscribed = subscribed;
    /* No word can come now: whoever waits goes to the app at once, not at the lock's
     * timeout (Redis gone must never make an answer late). */
    if (!subscribed)
        abort_waits(fw);
}

/* While requests wait for another instance's fill, Redis is asked every L2_PROBE_MS
 * whether it still answers: a hung Redis (the connection open, nothing coming back)
 * would otherwise hold them until cache_lock_timeout, since the fill's notification
 * cannot come through it. */
#define L2_PROBE_MS 250

static void probe_done(enum fg_redis_status st, const struct redisReply *r, void *arg)
{
    (void)r;
    struct fg_fleet_worker *fw = arg;
    fw->probing = false;
    if (st == FG_REDIS_TIMEOUT) {
        add(&C.timeouts, 1);
        abort_waits(fw);
    } else if (st == FG_REDIS_LOST) {
        abort_waits(fw);
    }
}

static void probe_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fg_fleet_worker *fw = arg;
    if (TAILQ_EMPTY(&fw->waits))
        return;
    if (!fw->probing) {
        static const char *const argv[] = {"PING"};
        struct fg_redis_cmd c = {.argc = 1, .argv = argv, .timeout_ms = L2_PROBE_MS};
        fw->probing = fg_redis_command(fw->redis, &c, probe_done, fw) != NULL;
        if (!fw->probing) { /* cannot even be asked */
            abort_waits(fw);
            return;
        }
    }
    struct timeval tv = {.tv_usec = L2_PROBE_MS * 1000};
    evtimer_add(fw->probe, &tv);
}

static void subscribe_fills(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fg_fleet_worker *fw = arg;
    if (fw->sub != NULL || fw->redis == NULL)
        return;
    fw->sharded = fw->sharded_conf == FG_CONF_SHARDED_ON ||
                  (fw->sharded_conf == FG_CONF_SHARDED_AUTO && fg_redis_is_cluster(fw->redis));
    fw->sub = fg_redis_subscribe(fw->redis, fw->fills, strlen(fw->fills), fw->sharded,
                                 on_fill_message, on_fills_state, fw);
}

static void on_worker_event(enum fg_redis_event ev, void *arg)
{
    struct fg_fleet_worker *fw = arg;
    if (ev == FG_REDIS_EV_CONNECTED && fw->sub == NULL)
        event_base_once(fw->base, -1, EV_TIMEOUT, subscribe_fills, fw, NULL);
}

struct fg_fleet_worker *fg_fleet_worker_new(struct event_base *base, const struct fg_config *cfg)
{
    bool shared = false;
    for (size_t i = 0; i < cfg->n_caches; i++)
        shared = shared || cfg->caches[i].shared;
    if (!cfg->fleet.enabled || cfg->fleet.ep == NULL || (!shared && cfg->fleet.hot_keys == 0))
        return NULL;
    pthread_once(&put_once, put_init);
    struct fg_fleet_worker *fw = calloc(1, sizeof(*fw));
    if (fw == NULL)
        return NULL;
    snprintf(fw->channel, sizeof(fw->channel), "%s", cfg->fleet.channel);
    snprintf(fw->fills, sizeof(fw->fills), "fg:fleet:{%s}:fills", cfg->fleet.channel);
    fw->base = base;
    fw->sharded_conf = cfg->fleet.sharded;
    if (cfg->fleet.hot_keys > 0)
        fg_fleet_hot_key_name(cfg->fleet.channel, fw->hot, sizeof(fw->hot));
    fw->rng = ((uint64_t)(uintptr_t)fw ^ (uint64_t)fg_mono_us()) | 1;
    TAILQ_INIT(&fw->waits);
    struct fg_redis_opts o = {.on_event = on_worker_event, .event_arg = fw};
    fw->probe = evtimer_new(base, probe_cb, fw);
    fw->redis = fw->probe != NULL ? fg_redis_new(base, cfg->fleet.ep, &o) : NULL;
    if (fw->redis == NULL) {
        if (fw->probe != NULL)
            event_free(fw->probe);
        free(fw);
        return NULL;
    }
    return fw;
}

static void req_free(struct fg_fleet_req *q);

void fg_fleet_worker_free(struct fg_fleet_worker *fw)
{
    if (fw == NULL)
        return;
    fg_redis_unsubscribe(fw->sub);
    fw->sub = NULL;
    fg_redis_free(fw->redis); /* gets still waiting are answered (lost) inside */
    fw->redis = NULL;
    event_free(fw->probe);
    /* Waits outlive no snapshot: their fills hold it (fill.c), so none is left here. */
    FG_ASSERT(TAILQ_EMPTY(&fw->waits));
    for (size_t i = 0; i < L2_RECENT; i++)
        free(fw->recent[i].key);
    free(fw);
}

/* "fg:<kind>:{<key>}:<channel>" into out (kind "l2": the records, "lock": the fill
 * lock; one slot per key); its length, 0 when it does not fit. */
static size_t fleet_key(const struct fg_fleet_worker *fw, const char *kind, const char *key,
                        size_t key_len, char *out, size_t cap)
{
    int n = snprintf(out, cap, "fg:%s:{%.*s}:%s", kind, (int)key_len, key, fw->channel);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static size_t l2_key(const struct fg_fleet_worker *fw, const char *key, size_t key_len, char *out,
                     size_t cap)
{
    return fleet_key(fw, "l2", key, key_len, out, cap);
}

/* ---- records --------------------------------------------------------------------------- */

static void put_u64(struct evbuffer *b, uint64_t v)
{
    unsigned char x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (unsigned char)(v >> (8 * i));
    evbuffer_add(b, x, 8);
}

static void put_bytes(struct evbuffer *b, const char *p, size_t len)
{
    put_u64(b, len);
    evbuffer_add(b, p, len);
}

void fg_fleet_l2_encode(struct evbuffer *b, const struct fg_fleet_l2_record *r)
{
    const struct fg_cache_meta *m = &r->meta;
    evbuffer_add(b, L2_MAGIC, 4);
    unsigned char v = L2_VERSION;
    evbuffer_add(b, &v, 1);
    put_u64(b, (uint64_t)m->status);
    put_u64(b, m->content_length);
    put_bytes(b, m->etag, strlen(m->etag));
    put_u64(b, (uint64_t)m->last_modified);
    put_u64(b, (uint64_t)m->response_time_ms);
    put_u64(b, m->initial_age);
    put_u64(b, m->lifetime);
    put_u64(b, m->swr);
    put_u64(b, m->sie);
    put_u64(b, (m->must_revalidate ? 1u : 0u) | (m->no_cache ? 2u : 0u));
    put_bytes(b, r->head, r->head_len);
    put_bytes(b, r->vary_names, r->vary_names_len);
    put_bytes(b, r->vary_values, r->vary_values_len);
    put_bytes(b, r->tags, r->tags_len);
    put_bytes(b, r->body, r->body_len);
}

struct cursor {
    const unsigned char *p, *end;
    bool ok;
};

static uint64_t get_u64(struct cursor *c)
{
    if (!c->ok || c->end - c->p < 8) {
        c->ok = false;
        return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)c->p[i] << (8 * i);
    c->p += 8;
    return v;
}

static const char *get_bytes(struct cursor *c, size_t *len)
{
    uint64_t n = get_u64(c);
    if (!c->ok || (uint64_t)(c->end - c->p) < n) {
        c->ok = false;
        *len = 0;
        return "";
    }
    const char *s = (const char *)c->p;
    c->p += n;
    *len = (size_t)n;
    return s;
}

bool fg_fleet_l2_decode(const char *data, size_t len, struct fg_fleet_l2_record *r)
{
    struct cursor c = {(const unsigned char *)data, (const unsigned char *)data + len, true};
    if (len < 5 || memcmp(data, L2_MAGIC, 4) != 0 || (unsigned char)data[4] != L2_VERSION)
        return false;
    c.p += 5;
    memset(r, 0, sizeof(*r));
    struct fg_cache_meta *m = &r->meta;
    fg_cache_meta_init(m);
    m->status = (int)get_u64(&c);
    m->content_length = get_u64(&c);
    size_t elen;
    const char *etag = get_bytes(&c, &elen);
    if (elen >= sizeof(m->etag))
        return false;
    memcpy(m->etag, etag, elen);
    m->etag[elen] = '\0';
    m->last_modified = (int64_t)get_u64(&c);
    m->response_time_ms = (int64_t)get_u64(&c);
    m->initial_age = get_u64(&c);
    m->lifetime = get_u64(&c);
    m->swr = get_u64(&c);
    m->sie = get_u64(&c);
    uint64_t flags = get_u64(&c);
    m->must_revalidate = flags & 1;
    m->no_cache = (flags & 2) != 0;
    r->head = get_bytes(&c, &r->head_len);
    r->vary_names = get_bytes(&c, &r->vary_names_len);
    r->vary_values = get_bytes(&c, &r->vary_values_len);
    r->tags = get_bytes(&c, &r->tags_len);
    r->body = get_bytes(&c, &r->body_len);
    return c.ok && c.p == c.end && m->status >= 100 && m->status < 600;
}

/* ---- get --------------------------------------------------------------------------------- */

struct fg_fleet_l2_get {
    struct fg_redis_req *q;
    fg_fleet_l2_cb cb;
    void *arg;
};

#define L2_VARIANTS_MAX 16

static void get_done(enum fg_redis_status st, const struct redisReply *r, void *arg)
{
    struct fg_fleet_l2_get *g = arg;
    fg_fleet_l2_cb cb = g->cb;
    void *cb_arg = g->arg;
    free(g);
    if (st == FG_REDIS_TIMEOUT) {
        add(&C.timeouts, 1);
        cb(FG_FLEET_L2_TIMEOUT, NULL, 0, cb_arg);
        return;
    }
    if (st != FG_REDIS_REPLY || r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
        add(&C.errors, 1);
        cb(FG_FLEET_L2_ERROR, NULL, 0, cb_arg);
        return;
    }
    struct fg_fleet_l2_record recs[L2_VARIANTS_MAX];
    size_t n = 0;
    for (size_t i = 1; i < r->elements && n < L2_VARIANTS_MAX; i += 2) {
        const struct redisReply *v = r->element[i];
        if (v->type == REDIS_REPLY_STRING && fg_fleet_l2_decode(v->str, v->len, &recs[n]))
            n++;
        else
            add(&C.errors, 1); /* another version's record, or damaged: skipped */
    }
    cb(FG_FLEET_L2_FOUND, recs, n, cb_arg);
}

struct fg_fleet_l2_get *fg_fleet_l2_get(struct fg_fleet_worker *fw, const char *key, size_t key_len,
                                        uint64_t timeout_ms, fg_fleet_l2_cb cb, void *arg)
{
    char k[FG_CACHE_KEY_MAX + L2_KEY_EXTRA];
    size_t klen = l2_key(fw, key, key_len, k, sizeof(k));
    struct fg_fleet_l2_get *g = klen > 0 ? malloc(sizeof(*g)) : NULL;
    if (g == NULL) {
        add(&C.errors, 1);
        return NULL;
    }
    g->cb = cb;
    g->arg = arg;
    const char *argv[] = {"HGETALL", k};
    size_t lens[] = {7, klen};
    struct fg_redis_cmd c = {
        .argc = 2, .argv = argv, .lens = lens, .key = k, .key_len = klen, .timeout_ms = timeout_ms};
    g->q = fg_redis_command(fw->redis, &c, get_done, g);
    if (g->q == NULL) {
        add(&C.errors, 1);
        free(g);
        return NULL;
    }
    return g;
}

void fg_fleet_l2_cancel(struct fg_fleet_l2_get *g)
{
    if (g == NULL)
        return;
    fg_redis_cancel(g->q);
    free(g);
}

/* ---- fleet-wide coalescing ----------------------------------------------------------- */

static const char OUTCOME_CHAR[] = {'F', 'P', 'A'};

static void notify(struct fg_fleet_worker *fw, const char *key, size_t key_len,
                   enum fg_fleet_fill_outcome o)
{
    char payload[FG_CACHE_KEY_MAX + 8];
    int n = snprintf(payload, sizeof(payload), "1 %c %.*s", OUTCOME_CHAR[o], (int)key_len, key);
    if (n <= 0 || (size_t)n >= sizeof(payload))
        return;
    bool sharded = fw->sharded_conf == FG_CONF_SHARDED_ON ||
                   (fw->sharded_conf == FG_CONF_SHARDED_AUTO && fg_redis_is_cluster(fw->redis));
    const char *argv[] = {sharded ? "SPUBLISH" : "PUBLISH", fw->fills, payload};
    size_t lens[] = {strlen(argv[0]), strlen(fw->fills), (size_t)n};
    struct fg_redis_cmd c = {.argc = 3,
                             .argv = argv,
                             .lens = lens,
                             .key = fw->fills,
                             .key_len = strlen(fw->fills),
                             .timeout_ms = L2_PUT_MS};
    if (fg_redis_command(fw->redis, &c, ignore_reply, NULL) != NULL)
        add(&C.notifications, 1);
}

static void req_free(struct fg_fleet_req *q)
{
    if (q->waiting)
        TAILQ_REMOVE(&q->fw->waits, q, link);
    if (q->timer != NULL)
        event_free(q->timer);
    free(q->key);
    free(q);
}

static void remember_fill(struct fg_fleet_worker *fw, const char *key, size_t len,
                          enum fg_fleet_fill_outcome o)
{
    struct recent *r = &fw->recent[fw->recent_next];
    fw->recent_next = (fw->recent_next + 1) % L2_RECENT;
    char *k = malloc(len ? len : 1);
    free(r->key);
    *r = (struct recent){.at_ms = fg_mono_ms(), .o = o, .key = k, .key_len = k ? len : 0};
    if (k != NULL)
        memcpy(k, key, len);
}

/* "1 <F|P|A> <key>" */
static void on_fill_message(const char *channel, size_t channel_len, const char *payload,
                            size_t len, void *arg)
{
    (void)channel;
    (void)channel_len;
    struct fg_fleet_worker *fw = arg;
    if (len < 5 || payload[0] != '1' || payload[1] != ' ' || payload[3] != ' ')
        return;
    const char *oc = memchr(OUTCOME_CHAR, payload[2], sizeof(OUTCOME_CHAR));
    if (oc == NULL)
        return;
    enum fg_fleet_fill_outcome o = (enum fg_fleet_fill_outcome)(oc - OUTCOME_CHAR);
    const char *key = payload + 4;
    size_t klen = len - 4;
    remember_fill(fw, key, klen, o);
    struct fg_fleet_req *q, *next;
    for (q = TAILQ_FIRST(&fw->waits); q != NULL; q = next) {
        next = TAILQ_NEXT(q, link);
        if (q->key_len != klen || memcmp(q->key, key, klen) != 0)
            continue;
        add(o == FG_FLEET_FILL_FILLED ? &C.waits_filled : &C.waits_passed, 1);
        void (*cb)(enum fg_fleet_fill_outcome, void *) = q->wait_cb;
        void *cb_arg = q->arg;
        req_free(q);
        cb(o, cb_arg); /* may register or cancel other waits: next is taken again */
        next = TAILQ_FIRST(&fw->waits);
    }
}

static void lock_done(enum fg_redis_status st, const struct redisReply *r, void *arg)
{
    struct fg_fleet_req *q = arg;
    q->q = NULL;
    bool answered = st == FG_REDIS_REPLY && r->type != REDIS_REPLY_ERROR;
    bool taken = answered && r->type == REDIS_REPLY_STATUS;
    if (st == FG_REDIS_TIMEOUT)
        add(&C.timeouts, 1);
    else if (!answered)
        add(&C.errors, 1);
    if (taken)
        add(&C.locks_taken, 1);
    void (*cb)(bool, bool, void *) = q->lock_cb;
    void *cb_arg = q->arg;
    req_free(q);
    cb(taken, answered, cb_arg);
}

struct fg_fleet_req *fg_fleet_lock(struct fg_fleet_worker *fw, const char *key, size_t key_len,
                                   uint64_t ttl_ms, uint64_t timeout_ms,
                                   void (*cb)(bool taken, bool answered, void *arg), void *arg)
{
    char k[FG_CACHE_KEY_MAX + L2_KEY_EXTRA], ttl[24];
    size_t klen = fleet_key(fw, "lock", key, key_len, k, sizeof(k));
    struct fg_fleet_req *q = klen > 0 ? calloc(1, sizeof(*q)) : NULL;
    if (q == NULL)
        return NULL;
    q->fw = fw;
    q->lock_cb = cb;
    q->arg = arg;
    snprintf(ttl, sizeof(ttl), "%" PRIu64, ttl_ms);
    const char *argv[] = {"SET", k, token, "NX", "PX", ttl};
    size_t lens[] = {3, klen, strlen(token), 2, 2, strlen(ttl)};
    struct fg_redis_cmd c = {
        .argc = 6, .argv = argv, .lens = lens, .key = k, .key_len = klen, .timeout_ms = timeout_ms};
    q->q = fg_redis_command(fw->redis, &c, lock_done, q);
    if (q->q == NULL) {
        free(q);
        return NULL;
    }
    return q;
}

static void wait_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fg_fleet_req *q = arg;
    add(&C.lock_timeouts, 1);
    void (*cb)(enum fg_fleet_fill_outcome, void *) = q->wait_cb;
    void *cb_arg = q->arg;
    req_free(q);
    cb(FG_FLEET_FILL_TIMEOUT, cb_arg);
}

enum fg_fleet_fill_outcome fg_fleet_wait_fill(struct fg_fleet_worker *fw, const char *key,
                                              size_t key_len, uint64_t timeout_ms,
                                              void (*cb)(enum fg_fleet_fill_outcome o, void *arg),
                                              void *arg, struct fg_fleet_req **req)
{
    *req = NULL;
    /* The holder may have told before our lock request's answer was read. */
    uint64_t now = fg_mono_ms();
    for (size_t i = 0; i < L2_RECENT; i++) {
        const struct recent *r = &fw->recent[i];
        if (r->key != NULL && r->key_len == key_len && now - r->at_ms < L2_RECENT_MS &&
            memcmp(r->key, key, key_len) == 0) {
            add(r->o == FG_FLEET_FILL_FILLED ? &C.waits_filled : &C.waits_passed, 1);
            return r->o;
        }
    }
    if (!fw->subscribed)
        return FG_FLEET_FILL_UNAVAILABLE;
    struct fg_fleet_req *q = calloc(1, sizeof(*q));
    if (q == NULL || (q->key = malloc(key_len ? key_len : 1)) == NULL ||
        (q->timer = evtimer_new(fw->base, wait_timeout, q)) == NULL) {
        if (q != NULL)
            free(q->key);
        free(q);
        return FG_FLEET_FILL_UNAVAILABLE;
    }
    q->fw = fw;
    memcpy(q->key, key, key_len);
    q->key_len = key_len;
    q->wait_cb = cb;
    q->arg = arg;
    q->waiting = true;
    TAILQ_INSERT_TAIL(&fw->waits, q, link);
    struct timeval tv = {.tv_sec = (time_t)(timeout_ms / 1000),
                         .tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000};
    evtimer_add(q->timer, &tv);
    add(&C.locks_waited, 1);
    if (!evtimer_pending(fw->probe, NULL)) {
        struct timeval ptv = {.tv_usec = L2_PROBE_MS * 1000};
        evtimer_add(fw->probe, &ptv);
    }
    *req = q;
    return FG_FLEET_FILL_PENDING;
}

void fg_fleet_req_cancel(struct fg_fleet_req *q)
{
    if (q == NULL)
        return;
    fg_redis_cancel(q->q);
    req_free(q);
}

void fg_fleet_release(struct fg_fleet_worker *fw, const char *key, size_t key_len,
                      enum fg_fleet_fill_outcome o)
{
    char k[FG_CACHE_KEY_MAX + L2_KEY_EXTRA];
    size_t klen = fleet_key(fw, "lock", key, key_len, k, sizeof(k));
    if (klen == 0)
        return;
    const char *keys[] = {k};
    size_t key_lens[] = {klen};
    const char *args[] = {token};
    (void)fg_redis_eval(fw->redis, &release_script, 1, keys, key_lens, 1, args, NULL, L2_PUT_MS,
                        ignore_reply, NULL);
    notify(fw, key, key_len, o);
}

/* ---- put --------------------------------------------------------------------------------- */

struct put {
    struct fg_fleet_worker *fw;
    size_t bytes;
    bool release;
    size_t key_len;
    char key[]; /* the primary key (release: who to tell) */
};

static void put_done(enum fg_redis_status st, const struct redisReply *r, void *arg)
{
    struct put *p = arg;
    bool ok = st == FG_REDIS_REPLY && r->type != REDIS_REPLY_ERROR;
    if (ok) {
        add(&C.writes, 1);
        add(&C.bytes_out, p->bytes);
    } else {
        add(&C.write_errors, 1);
        if (st == FG_REDIS_TIMEOUT)
            add(&C.timeouts, 1);
    }
    /* LOST: the client is being freed; the lock expires by itself */
    if (p->release && st != FG_REDIS_LOST) {
        if (ok)
            notify(p->fw, p->key, p->key_len, FG_FLEET_FILL_FILLED); /* the script released */
        else
            fg_fleet_release(p->fw, p->key, p->key_len, FG_FLEET_FILL_ABORTED);
    }
    free(p);
}

void fg_fleet_l2_put(struct fg_fleet_worker *fw, const char *key, size_t key_len,
                     const struct fg_fleet_l2_record *rec, uint64_t ttl_ms, bool release)
{
    char k[FG_CACHE_KEY_MAX + L2_KEY_EXTRA], lk[FG_CACHE_KEY_MAX + L2_KEY_EXTRA];
    size_t klen = l2_key(fw, key, key_len, k, sizeof(k));
    size_t lklen = fleet_key(fw, "lock", key, key_len, lk, sizeof(lk));
    struct evbuffer *b = evbuffer_new();
    struct evbuffer *field = evbuffer_new();
    struct put *p = malloc(sizeof(*p) + key_len);
    if (klen == 0 || lklen == 0 || b == NULL || field == NULL || p == NULL || ttl_ms == 0) {
        add(&C.write_errors, 1);
        free(p);
        if (release)
            fg_fleet_release(fw, key, key_len, FG_FLEET_FILL_ABORTED);
        goto out;
    }
    *p = (struct put){.fw = fw, .release = release, .key_len = key_len};
    memcpy(p->key, key, key_len);
    fg_fleet_l2_encode(b, rec);
    evbuffer_add(field, rec->vary_names, rec->vary_names_len);
    evbuffer_add(field, "\n", 1);
    evbuffer_add(field, rec->vary_values, rec->vary_values_len);
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%" PRIu64, ttl_ms);
    size_t blen = evbuffer_get_length(b), flen = evbuffer_get_length(field);
    p->bytes = blen;
    const char *keys[] = {k, lk};
    size_t key_lens[] = {klen, lklen};
    const char *args[] = {(const char *)evbuffer_pullup(field, -1),
                          (const char *)evbuffer_pullup(b, -1), ttl, release ? token : ""};
    size_t arg_lens[] = {flen, blen, strlen(ttl), release ? strlen(token) : 0};
    if (fg_redis_eval(fw->redis, &put_script, 2, keys, key_lens, 4, args, arg_lens, L2_PUT_MS,
                      put_done, p) == NULL) {
        add(&C.write_errors, 1);
        free(p);
        if (release)
            fg_fleet_release(fw, key, key_len, FG_FLEET_FILL_ABORTED);
    }
out:
    if (b != NULL)
        evbuffer_free(b);
    if (field != NULL)
        evbuffer_free(field);
}
