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
#include "fleet/fleet.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "core/core.h"
#include "redis/redis.h"

#define L2_MAGIC     "FGL2"
#define L2_VERSION   1
#define L2_PUT_MS    1000 /* a write back: nobody waits for it */
#define L2_KEY_EXTRA 96

static const char PUT_LUA[] = "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])\n"
                              "local t = redis.call('PTTL', KEYS[1])\n"
                              "if t < tonumber(ARGV[3]) then\n"
                              "  redis.call('PEXPIRE', KEYS[1], ARGV[3])\n"
                              "end\n"
                              "return 1\n";

static struct fg_redis_script put_script;
static pthread_once_t put_once = PTHREAD_ONCE_INIT;

static void put_init(void)
{
    fg_redis_script_init(&put_script, PUT_LUA);
}

/* Process-wide counters (fleet.h's stats). */
static struct {
    _Atomic uint64_t ev[FG_FLEET_L2_EV__COUNT];
    _Atomic uint64_t bytes_in, bytes_out, writes, write_errors, timeouts, errors;
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
                                      .bytes_written = GET(bytes_out)};
#undef GET
}

/* ---- workers' clients ------------------------------------------------------------------ */

struct fg_fleet_worker {
    struct fg_redis *redis;
    char channel[FG_CONF_NAME_MAX];
};

struct fg_fleet_worker *fg_fleet_worker_new(struct event_base *base, const struct fg_config *cfg)
{
    bool shared = false;
    for (size_t i = 0; i < cfg->n_caches; i++)
        shared = shared || cfg->caches[i].shared;
    if (!cfg->fleet.enabled || cfg->fleet.ep == NULL || !shared)
        return NULL;
    pthread_once(&put_once, put_init);
    struct fg_fleet_worker *fw = calloc(1, sizeof(*fw));
    if (fw == NULL)
        return NULL;
    snprintf(fw->channel, sizeof(fw->channel), "%s", cfg->fleet.channel);
    struct fg_redis_opts o = {0};
    fw->redis = fg_redis_new(base, cfg->fleet.ep, &o);
    if (fw->redis == NULL) {
        free(fw);
        return NULL;
    }
    return fw;
}

void fg_fleet_worker_free(struct fg_fleet_worker *fw)
{
    if (fw == NULL)
        return;
    fg_redis_free(fw->redis); /* gets still waiting are answered (lost) inside */
    free(fw);
}

/* "fg:l2:{<key>}:<channel>" into out; its length, 0 when it does not fit. */
static size_t l2_key(const struct fg_fleet_worker *fw, const char *key, size_t key_len, char *out,
                     size_t cap)
{
    int n = snprintf(out, cap, "fg:l2:{%.*s}:%s", (int)key_len, key, fw->channel);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
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

static void encode(struct evbuffer *b, const struct fg_fleet_l2_record *r)
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

static bool decode(const char *data, size_t len, struct fg_fleet_l2_record *r)
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
        if (v->type == REDIS_REPLY_STRING && decode(v->str, v->len, &recs[n]))
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

/* ---- put --------------------------------------------------------------------------------- */

static void put_done(enum fg_redis_status st, const struct redisReply *r, void *arg)
{
    size_t bytes = (size_t)(uintptr_t)arg;
    if (st == FG_REDIS_REPLY && r->type != REDIS_REPLY_ERROR) {
        add(&C.writes, 1);
        add(&C.bytes_out, bytes);
    } else {
        add(&C.write_errors, 1);
        if (st == FG_REDIS_TIMEOUT)
            add(&C.timeouts, 1);
    }
}

void fg_fleet_l2_put(struct fg_fleet_worker *fw, const char *key, size_t key_len,
                     const struct fg_fleet_l2_record *rec, uint64_t ttl_ms)
{
    char k[FG_CACHE_KEY_MAX + L2_KEY_EXTRA];
    size_t klen = l2_key(fw, key, key_len, k, sizeof(k));
    struct evbuffer *b = evbuffer_new();
    struct evbuffer *field = evbuffer_new();
    if (klen == 0 || b == NULL || field == NULL || ttl_ms == 0) {
        add(&C.write_errors, 1);
        goto out;
    }
    encode(b, rec);
    evbuffer_add(field, rec->vary_names, rec->vary_names_len);
    evbuffer_add(field, "\n", 1);
    evbuffer_add(field, rec->vary_values, rec->vary_values_len);
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%" PRIu64, ttl_ms);
    size_t blen = evbuffer_get_length(b), flen = evbuffer_get_length(field);
    const char *keys[] = {k};
    size_t key_lens[] = {klen};
    const char *args[] = {(const char *)evbuffer_pullup(field, -1),
                          (const char *)evbuffer_pullup(b, -1), ttl};
    size_t arg_lens[] = {flen, blen, strlen(ttl)};
    if (fg_redis_eval(fw->redis, &put_script, 1, keys, key_lens, 3, args, arg_lens, L2_PUT_MS,
                      put_done, (void *)(uintptr_t)blen) == NULL)
        add(&C.write_errors, 1);
out:
    if (b != NULL)
        evbuffer_free(b);
    if (field != NULL)
        evbuffer_free(field);
}
