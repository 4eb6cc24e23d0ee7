/*
 * store.c — the shared object store: a sharded hash table of refcounted objects, one
 * S3-FIFO eviction structure for the whole memory bound, busy objects for coalescing.
 *
 * Locks, in the order they may nest: shard->lock → obj->lock → notifier lock (notify.c).
 * The eviction lock is never held together with a shard lock: victims are collected
 * under it, then taken out of their shards one by one. A hit takes one shard lock for
 * the probe and touches the eviction structure without a lock (fg_evict_hit).
 *
 * References: the table holds one while in_table, the eviction structure one while the
 * node is linked, every reader one, every body reference handed to libevent one.
 */
#include "cache/internal.h"
#include "core/core.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#define FG_CACHE_SHARDS      64
#define FG_CACHE_CHUNK       (16 * 1024) /* the largest chunk a body of unknown length gets */
#define FG_CACHE_CHUNK_MIN   1024        /* the smallest (a few small appends share one) */
#define FG_CACHE_VARY_BUF    2048
#define FG_CACHE_MAX_VICTIMS 64

struct shard {
    pthread_mutex_t lock;
    struct fg_cache_obj **buckets;
    size_t n_buckets; /* a power of two */
    size_t n_objs;
};

struct fg_cache {
    char name[64];
    _Atomic uint64_t max_object;
    struct shard shards[FG_CACHE_SHARDS];
    pthread_mutex_t evict_lock;
    struct fg_evict evict;
    _Atomic uint64_t entries;
    _Atomic uint64_t ev[FG_CACHE_EV__COUNT];
    _Atomic uint64_t evictions, purged, too_big, fill_failed, stores, hfm;
};

static void bump(_Atomic uint64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* ---- the store ------------------------------------------------------------------------- */

struct fg_cache *fg_cache_new(const char *name, const struct fg_cache_limits *lim)
{
    struct fg_cache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    snprintf(c->name, sizeof(c->name), "%s", name);
    atomic_store(&c->max_object, lim->max_object);
    struct fg_evict_config ec = {.policy = FG_EVICT_S3FIFO, .capacity = lim->memory};
    if (!fg_evict_init(&c->evict, &ec)) {
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->evict_lock, NULL);
    for (size_t i = 0; i < FG_CACHE_SHARDS; i++) {
        struct shard *s = &c->shards[i];
        pthread_mutex_init(&s->lock, NULL);
        s->n_buckets = 64;
        s->buckets = calloc(s->n_buckets, sizeof(*s->buckets));
        if (s->buckets == NULL) {
            fg_cache_free(c);
            return NULL;
        }
    }
    return c;
}

const char *fg_cache_name(const struct fg_cache *c)
{
    return c->name;
}

static void unlink_victims(struct fg_cache *c, struct fg_cache_obj **v, size_t n);

static void collect_victim(struct fg_evict_node *node, void *arg);

struct victims {
    struct fg_cache_obj *v[FG_CACHE_MAX_VICTIMS];
    size_t n;
    bool full;
};

void fg_cache_set_limits(struct fg_cache *c, const struct fg_cache_limits *lim)
{
    atomic_store(&c->max_object, lim->max_object);
    pthread_mutex_lock(&c->evict_lock);
    fg_evict_set_capacity(&c->evict, lim->memory);
    pthread_mutex_unlock(&c->evict_lock);
    /* Shrink in rounds: each round unlinks a bounded number of victims. */
    for (;;) {
        struct victims vs = {.n = 0};
        pthread_mutex_lock(&c->evict_lock);
        while (vs.n < FG_CACHE_MAX_VICTIMS && fg_evict_bytes(&c->evict) > lim->memory) {
            struct fg_evict_node *node = fg_evict_one(&c->evict);
            if (node == NULL)
                break;
            collect_victim(node, &vs);
        }
        pthread_mutex_unlock(&c->evict_lock);
        if (vs.n == 0)
            break;
        unlink_victims(c, vs.v, vs.n);
    }
}

static void obj_free(struct fg_cache_obj *o);

void fg_cache_free(struct fg_cache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < FG_CACHE_SHARDS; i++) {
        struct shard *s = &c->shards[i];
        for (size_t b = 0; s->buckets != NULL && b < s->n_buckets; b++) {
            struct fg_cache_obj *o = s->buckets[b];
            while (o != NULL) {
                struct fg_cache_obj *next = o->hnext;
                obj_free(o);
                o = next;
            }
        }
        free(s->buckets);
        pthread_mutex_destroy(&s->lock);
    }
    fg_evict_fini(&c->evict);
    pthread_mutex_destroy(&c->evict_lock);
    free(c);
}

void fg_cache_count(struct fg_cache *c, enum fg_cache_event ev)
{
    if (ev < FG_CACHE_EV__COUNT)
        bump(&c->ev[ev]);
}

void fg_cache_get_stats(struct fg_cache *c, struct fg_cache_stats *out)
{
    memset(out, 0, sizeof(*out));
#define GET(x) atomic_load_explicit(&(x), memory_order_relaxed)
    out->entries = GET(c->entries);
    pthread_mutex_lock(&c->evict_lock);
    out->bytes = fg_evict_bytes(&c->evict);
    pthread_mutex_unlock(&c->evict_lock);
    out->hits = GET(c->ev[FG_CACHE_EV_HIT]);
    out->misses = GET(c->ev[FG_CACHE_EV_MISS]);
    out->stale_served = GET(c->ev[FG_CACHE_EV_STALE]);
    out->revalidations = GET(c->ev[FG_CACHE_EV_REVALIDATION]);
    out->revalidated_304 = GET(c->ev[FG_CACHE_EV_REVALIDATED]);
    out->coalesced = GET(c->ev[FG_CACHE_EV_COALESCED]);
    out->passes = GET(c->ev[FG_CACHE_EV_PASS]);
    out->lock_timeouts = GET(c->ev[FG_CACHE_EV_LOCK_TIMEOUT]);
    out->not_modified_served = GET(c->ev[FG_CACHE_EV_NOT_MODIFIED]);
    out->hit_for_miss = GET(c->hfm);
    out->evictions = GET(c->evictions);
    out->purged = GET(c->purged);
    out->too_big = GET(c->too_big);
    out->fill_failed = GET(c->fill_failed);
    out->stores = GET(c->stores);
    out->invalidations = GET(c->ev[FG_CACHE_EV_INVALIDATION]);
#undef GET
}

/* ---- objects --------------------------------------------------------------------------- */

static struct fg_cache_obj *obj_new(struct fg_cache *c, const char *key, size_t key_len,
                                    uint64_t hash)
{
    struct fg_cache_obj *o = calloc(1, sizeof(*o) + key_len + 1);
    if (o == NULL)
        return NULL;
    o->magic = FG_CACHE_OBJ_MAGIC;
    atomic_init(&o->refs, 1);
    o->cache = c;
    o->hash = hash;
    o->key = (char *)(o + 1);
    memcpy(o->key, key, key_len);
    o->key[key_len] = '\0';
    o->key_len = key_len;
    fg_cache_meta_init(&o->m);
    pthread_mutex_init(&o->lock, NULL);
    atomic_init(&o->state, FG_CACHE_BUSY);
    return o;
}

static void obj_free(struct fg_cache_obj *o)
{
    FG_ASSERT(o->magic == FG_CACHE_OBJ_MAGIC);
    FG_ASSERT(o->waiters == NULL);
    o->magic = 0;
    if (o->body_owner != NULL) {
        fg_cache_obj_unref(o->body_owner);
    } else {
        struct fg_cache_chunk *ch = atomic_load_explicit(&o->first, memory_order_relaxed);
        while (ch != NULL) {
            struct fg_cache_chunk *next = atomic_load_explicit(&ch->next, memory_order_relaxed);
            free(ch);
            ch = next;
        }
    }
    free(o->head);
    free(o->tags);
    free(o->vary_names);
    free(o->vary_values);
    pthread_mutex_destroy(&o->lock);
    free(o);
}

void fg_cache_obj_ref(struct fg_cache_obj *obj)
{
    atomic_fetch_add_explicit(&obj->refs, 1, memory_order_relaxed);
}

void fg_cache_obj_unref(struct fg_cache_obj *obj)
{
    if (obj == NULL)
        return;
    FG_ASSERT(obj->magic == FG_CACHE_OBJ_MAGIC);
    if (atomic_fetch_sub_explicit(&obj->refs, 1, memory_order_acq_rel) == 1)
        obj_free(obj);
}

void fg_cache_obj_unref_cb(const void *data, size_t len, void *extra)
{
    (void)data;
    (void)len;
    fg_cache_obj_unref(extra);
}

void fg_cache_meta_init(struct fg_cache_meta *m)
{
    memset(m, 0, sizeof(*m));
    m->content_length = FG_CACHE_NO_VALUE;
    m->last_modified = -1;
}

/* Age in milliseconds: HTTP speaks whole seconds, but counting residence in seconds would
 * make a response stored at x.9 s look a second older at (x+1).0 s. */
static uint64_t age_ms(const struct fg_cache_meta *m, int64_t now_ms)
{
    uint64_t resident = now_ms > m->response_time_ms ? (uint64_t)(now_ms - m->response_time_ms) : 0;
    return m->initial_age * 1000 + resident;
}

bool fg_cache_meta_fresh(const struct fg_cache_meta *m, int64_t now_ms, uint64_t *age)
{
    uint64_t a = age_ms(m, now_ms);
    if (age != NULL)
        *age = a / 1000;
    return !m->no_cache && m->lifetime * 1000 > a;
}

bool fg_cache_obj_fresh(const struct fg_cache_obj *obj, int64_t now_ms, uint64_t *age)
{
    return fg_cache_meta_fresh(&obj->m, now_ms, age);
}

/* Seconds past the end of freshness, rounded up (0 while fresh). */
static uint64_t staleness(const struct fg_cache_obj *obj, int64_t now_ms)
{
    uint64_t a = age_ms(&obj->m, now_ms), life = obj->m.lifetime * 1000;
    return a > life ? (a - life + 999) / 1000 : 0;
}

/* ---- what a reader may know ------------------------------------------------------------ */

enum fg_cache_state fg_cache_obj_state(const struct fg_cache_obj *obj)
{
    return (enum fg_cache_state)atomic_load_explicit(&obj->state, memory_order_acquire);
}

const struct fg_cache_meta *fg_cache_obj_meta(const struct fg_cache_obj *obj)
{
    return &obj->m;
}

uint64_t fg_cache_obj_length(const struct fg_cache_obj *obj)
{
    if (obj->m.content_length != FG_CACHE_NO_VALUE)
        return obj->m.content_length;
    /* The state first: every byte appended before COMPLETE is counted in body_len. */
    if (fg_cache_obj_state(obj) == FG_CACHE_COMPLETE)
        return atomic_load_explicit(&obj->body_len, memory_order_acquire);
    return FG_CACHE_NO_VALUE;
}

const char *fg_cache_obj_head(const struct fg_cache_obj *obj, size_t *len)
{
    *len = obj->head_len;
    return obj->head;
}

void fg_cache_obj_vary(const struct fg_cache_obj *obj, const char **names, size_t *names_len,
                       const char **values, size_t *values_len)
{
    *names = obj->vary_names != NULL ? obj->vary_names : "";
    *names_len = obj->vary_names_len;
    *values = obj->vary_values != NULL ? obj->vary_values : "";
    *values_len = obj->vary_values_len;
}

const char *fg_cache_obj_key(const struct fg_cache_obj *obj)
{
    return obj->key;
}

int fg_cache_obj_abort_status(const struct fg_cache_obj *obj)
{
    return obj->abort_status ? obj->abort_status : 502;
}

bool fg_cache_obj_refreshed(const struct fg_cache_obj *obj)
{
    return obj->body_owner != NULL && !obj->fallback;
}

bool fg_cache_obj_fallback(const struct fg_cache_obj *obj)
{
    return obj->fallback;
}

size_t fg_cache_obj_add_head(struct fg_cache_obj *obj, struct evbuffer *out, bool fields_only)
{
    size_t off = 0;
    if (fields_only) {
        const char *eol = memchr(obj->head, '\n', obj->head_len);
        off = eol ? (size_t)(eol + 1 - obj->head) : obj->head_len;
    }
    size_t n = obj->head_len - off;
    if (n == 0)
        return 0;
    fg_cache_obj_ref(obj);
    if (evbuffer_add_reference(out, obj->head + off, n, fg_cache_obj_unref_cb, obj) != 0) {
        fg_cache_obj_unref(obj);
        return 0;
    }
    return n;
}

/* ---- waking waiters -------------------------------------------------------------------- */

/* Under obj->lock: queue every registered waiter on its notifier. */
static void wake_locked(struct fg_cache_obj *o)
{
    for (struct fg_cache_waiter *w = o->waiters; w != NULL; w = w->next)
        fg_cache_notifier_push(w);
}

static void set_state(struct fg_cache_obj *o, enum fg_cache_state st)
{
    pthread_mutex_lock(&o->lock);
    atomic_store_explicit(&o->state, st, memory_order_release);
    wake_locked(o);
    pthread_mutex_unlock(&o->lock);
}

static bool final_state(int st)
{
    return st == FG_CACHE_COMPLETE || st == FG_CACHE_FAILED || st == FG_CACHE_PASS ||
           st == FG_CACHE_ABORTED;
}

bool fg_cache_wait(struct fg_cache_obj *obj, struct fg_cache_waiter *w)
{
    FG_ASSERT(w->obj == NULL && w->cb != NULL && w->notifier != NULL);
    pthread_mutex_lock(&obj->lock);
    int st = atomic_load_explicit(&obj->state, memory_order_acquire);
    if (final_state(st)) {
        pthread_mutex_unlock(&obj->lock);
        return false;
    }
    w->obj = obj;
    w->prev = NULL;
    w->next = obj->waiters;
    if (obj->waiters != NULL)
        obj->waiters->prev = w;
    obj->waiters = w;
    pthread_mutex_unlock(&obj->lock);
    return true;
}

void fg_cache_waiter_cancel(struct fg_cache_waiter *w)
{
    struct fg_cache_obj *o = w->obj;
    if (o != NULL) {
        pthread_mutex_lock(&o->lock);
        if (w->prev != NULL)
            w->prev->next = w->next;
        else
            o->waiters = w->next;
        if (w->next != NULL)
            w->next->prev = w->prev;
        pthread_mutex_unlock(&o->lock);
        w->obj = NULL;
        w->next = w->prev = NULL;
    }
    fg_cache_notifier_unqueue(w); /* queued is the notifier's to read, under its lock */
}

/* ---- the table ------------------------------------------------------------------------- */

static struct shard *shard_of(struct fg_cache *c, uint64_t hash)
{
    return &c->shards[hash & (FG_CACHE_SHARDS - 1)];
}

static size_t bucket_of(const struct shard *s, uint64_t hash)
{
    return (size_t)(hash >> 6) & (s->n_buckets - 1);
}

static void shard_grow(struct shard *s)
{
    size_t n = s->n_buckets * 2;
    struct fg_cache_obj **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < s->n_buckets; i++) {
        struct fg_cache_obj *o = s->buckets[i];
        while (o != NULL) {
            struct fg_cache_obj *next = o->hnext;
            size_t j = (size_t)(o->hash >> 6) & (n - 1);
            o->hnext = b[j];
            b[j] = o;
            o = next;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->n_buckets = n;
}

/* Under the shard lock: put o at the head of its chain (newest first). */
static void table_insert(struct fg_cache *c, struct shard *s, struct fg_cache_obj *o)
{
    if (s->n_objs >= s->n_buckets * 2)
        shard_grow(s);
    size_t b = bucket_of(s, o->hash);
    o->hnext = s->buckets[b];
    s->buckets[b] = o;
    s->n_objs++;
    o->in_table = true;
    fg_cache_obj_ref(o);
    atomic_fetch_add_explicit(&c->entries, 1, memory_order_relaxed);
}

/* Under the shard lock: take o out; the table's reference is the caller's to drop. */
static bool table_remove(struct fg_cache *c, struct shard *s, struct fg_cache_obj *o)
{
    if (!o->in_table)
        return false;
    struct fg_cache_obj **pp = &s->buckets[bucket_of(s, o->hash)];
    while (*pp != NULL && *pp != o)
        pp = &(*pp)->hnext;
    FG_ASSERT(*pp == o);
    *pp = o->hnext;
    o->hnext = NULL;
    o->in_table = false;
    s->n_objs--;
    atomic_fetch_sub_explicit(&c->entries, 1, memory_order_relaxed);
    return true;
}

/* Unlink o from the eviction structure if it is there, dropping that reference. */
static void evict_unlink(struct fg_cache *c, struct fg_cache_obj *o)
{
    pthread_mutex_lock(&c->evict_lock);
    bool linked = fg_evict_linked(&o->evict);
    if (linked)
        fg_evict_remove(&c->evict, &o->evict);
    pthread_mutex_unlock(&c->evict_lock);
    if (linked)
        fg_cache_obj_unref(o);
}

/* Take o out of table and eviction: purge, replacement, too big. */
static void obj_retire(struct fg_cache *c, struct fg_cache_obj *o)
{
    struct shard *s = shard_of(c, o->hash);
    pthread_mutex_lock(&s->lock);
    bool removed = table_remove(c, s, o);
    pthread_mutex_unlock(&s->lock);
    evict_unlink(c, o);
    if (removed)
        fg_cache_obj_unref(o);
}

static void collect_victim(struct fg_evict_node *node, void *arg)
{
    struct victims *vs = arg;
    struct fg_cache_obj *o =
        (struct fg_cache_obj *)((char *)node - offsetof(struct fg_cache_obj, evict));
    FG_ASSERT(vs->n < FG_CACHE_MAX_VICTIMS);
    vs->v[vs->n++] = o; /* the eviction reference moves to the list */
}

/* Victims are unlinked from eviction already: take them out of their shards. */
static void unlink_victims(struct fg_cache *c, struct fg_cache_obj **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct fg_cache_obj *o = v[i];
        struct shard *s = shard_of(c, o->hash);
        pthread_mutex_lock(&s->lock);
        bool removed = table_remove(c, s, o);
        pthread_mutex_unlock(&s->lock);
        if (removed)
            fg_cache_obj_unref(o);
        fg_cache_obj_unref(o); /* the eviction reference */
        bump(&c->evictions);
    }
}

/* Charge o to the memory bound, evicting others as needed. false if it cannot fit. */
static bool evict_admit(struct fg_cache *c, struct fg_cache_obj *o, uint64_t charge)
{
    for (;;) {
        struct victims vs = {.n = 0};
        bool done = false, fits = false;
        pthread_mutex_lock(&c->evict_lock);
        if (charge > c->evict.capacity) {
            done = true;
        } else {
            while (vs.n < FG_CACHE_MAX_VICTIMS &&
                   fg_evict_bytes(&c->evict) + charge > c->evict.capacity) {
                struct fg_evict_node *node = fg_evict_one(&c->evict);
                if (node == NULL)
                    break;
                collect_victim(node, &vs);
            }
            if (fg_evict_bytes(&c->evict) + charge <= c->evict.capacity) {
                fg_cache_obj_ref(o);
                fg_evict_insert(&c->evict, &o->evict, o->hash, charge);
                done = fits = true;
            } else if (vs.n == 0) {
                done = true; /* nothing left to evict: objects in flight hold the room */
            }
        }
        pthread_mutex_unlock(&c->evict_lock);
        unlink_victims(c, vs.v, vs.n);
        if (done)
            return fits;
    }
}

/* ---- lookup ---------------------------------------------------------------------------- */

bool fg_cache_obj_vary_matches(const struct fg_cache_obj *o, const struct fg_http_header *h,
                               size_t n_headers)
{
    if (o->vary_names_len == 0)
        return true;
    char buf[FG_CACHE_VARY_BUF];
    int n = fg_cache_vary_values(o->vary_names, o->vary_names_len, h, n_headers, buf, sizeof(buf));
    return n >= 0 && (size_t)n == o->vary_values_len && memcmp(buf, o->vary_values, (size_t)n) == 0;
}

static bool vary_match(const struct fg_cache_obj *o, const struct fg_cache_request *rq)
{
    return fg_cache_obj_vary_matches(o, rq->headers, rq->n_headers);
}

static bool key_eq(const struct fg_cache_obj *o, const struct fg_cache_request *rq)
{
    return o->hash == rq->hash && o->key_len == rq->key_len &&
           memcmp(o->key, rq->key, rq->key_len) == 0;
}

enum fg_cache_verdict fg_cache_lookup(struct fg_cache *c, const struct fg_cache_request *rq,
                                      struct fg_cache_waiter *waiter, struct fg_cache_obj **obj,
                                      struct fg_cache_obj **fill)
{
    *obj = NULL;
    *fill = NULL;
    struct shard *s = shard_of(c, rq->hash);
    struct fg_cache_obj *best = NULL, *busy = NULL, *pass = NULL, *expired_pass = NULL;
    pthread_mutex_lock(&s->lock);
    for (struct fg_cache_obj *o = s->buckets[bucket_of(s, rq->hash)]; o != NULL; o = o->hnext) {
        if (!key_eq(o, rq))
            continue;
        int st = atomic_load_explicit(&o->state, memory_order_acquire);
        if (st == FG_CACHE_PASS) {
            if (rq->now_ms < (int64_t)o->pass_until_ms)
                pass = o;
            else
                expired_pass = o;
        } else if (st == FG_CACHE_BUSY) {
            if (busy == NULL)
                busy = o;
        } else if ((st == FG_CACHE_FILLING || st == FG_CACHE_COMPLETE) && best == NULL &&
                   !o->too_big && vary_match(o, rq)) {
            best = o;
        }
    }
    if (expired_pass != NULL && table_remove(c, s, expired_pass)) {
        /* dropped below, outside the lock */
    } else {
        expired_pass = NULL;
    }

    enum fg_cache_verdict v;
    bool fresh = best != NULL && fg_cache_obj_fresh(best, rq->now_ms, NULL);
    if (fresh) {
        v = FG_CACHE_V_HIT;
        *obj = best;
    } else if (best != NULL && !best->m.must_revalidate && !best->m.no_cache &&
               staleness(best, rq->now_ms) <= best->m.swr && best->m.swr > 0) {
        v = FG_CACHE_V_STALE;
        *obj = best;
    } else if (busy != NULL && waiter != NULL) {
        v = fg_cache_wait(busy, waiter) ? FG_CACHE_V_WAIT : FG_CACHE_V_PASS;
        if (v == FG_CACHE_V_WAIT)
            *obj = busy;
    } else if (busy != NULL) {
        v = FG_CACHE_V_PASS; /* no waiting wanted (pre-warm): leave it to the fetch */
    } else if (pass != NULL) {
        v = FG_CACHE_V_PASS;
    } else {
        v = FG_CACHE_V_FILL;
        *obj = best; /* the stale variant, for validators and stale-if-error */
    }
    /* A stale hit starts the refresh when nobody else is on it. */
    if ((v == FG_CACHE_V_FILL || (v == FG_CACHE_V_STALE && busy == NULL))) {
        struct fg_cache_obj *n = obj_new(c, rq->key, rq->key_len, rq->hash);
        if (n != NULL) {
            table_insert(c, s, n);
            *fill = n; /* the creation reference is the caller's */
        } else if (v == FG_CACHE_V_FILL) {
            v = FG_CACHE_V_PASS;
            *obj = NULL;
        }
    }
    if (*obj != NULL)
        fg_cache_obj_ref(*obj);
    pthread_mutex_unlock(&s->lock);

    if (expired_pass != NULL) {
        evict_unlink(c, expired_pass); /* markers are charged like responses */
        fg_cache_obj_unref(expired_pass);
    }
    if (v == FG_CACHE_V_HIT || v == FG_CACHE_V_STALE)
        fg_evict_hit(&c->evict, &best->evict);
    return v;
}

/* ---- filling --------------------------------------------------------------------------- */

static char *dup_bytes(const char *s, size_t len)
{
    char *p = malloc(len + 1);
    if (p != NULL) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

bool fg_cache_fill_head(struct fg_cache_obj *o, const struct fg_cache_meta *meta, const char *head,
                        size_t head_len, const char *vary_names, size_t vary_names_len,
                        const char *vary_values, size_t vary_values_len)
{
    FG_ASSERT(atomic_load(&o->state) == FG_CACHE_BUSY);
    struct fg_cache *c = o->cache;
    uint64_t max = atomic_load_explicit(&c->max_object, memory_order_relaxed);
    if (meta->content_length != FG_CACHE_NO_VALUE && meta->content_length > max) {
        bump(&c->too_big);
        return false;
    }
    o->m = *meta;
    o->head = dup_bytes(head, head_len);
    o->vary_names = dup_bytes(vary_names ? vary_names : "", vary_names_len);
    o->vary_values = dup_bytes(vary_values ? vary_values : "", vary_values_len);
    if (o->head == NULL || o->vary_names == NULL || o->vary_values == NULL)
        return false;
    o->head_len = head_len;
    o->vary_names_len = vary_names_len;
    o->vary_values_len = vary_values_len;
    if (o->m.content_length != FG_CACHE_NO_VALUE && o->m.content_length > 0) {
        /* The whole body in one chunk: a hit hands libevent one reference. */
        struct fg_cache_chunk *ch = malloc(sizeof(*ch) + o->m.content_length);
        if (ch == NULL)
            return false;
        atomic_init(&ch->next, NULL);
        atomic_init(&ch->len, 0);
        ch->cap = o->m.content_length;
        atomic_init(&o->first, ch); /* published with FILLING */
        o->last = ch;
    }
    set_state(o, FG_CACHE_FILLING);
    return true;
}

bool fg_cache_fill_tags(struct fg_cache_obj *o, const char *tags, size_t len)
{
    FG_ASSERT(atomic_load(&o->state) == FG_CACHE_BUSY);
    free(o->tags);
    o->tags = NULL;
    o->tags_len = 0;
    if (len == 0)
        return true;
    o->tags = dup_bytes(tags, len);
    if (o->tags == NULL)
        return false;
    o->tags_len = len;
    return true;
}

const char *fg_cache_obj_tags(const struct fg_cache_obj *obj, size_t *len)
{
    *len = obj->tags_len;
    return obj->tags != NULL ? obj->tags : "";
}

static struct fg_cache_chunk *chunk_new(size_t cap)
{
    struct fg_cache_chunk *ch = malloc(sizeof(*ch) + cap);
    if (ch != NULL) {
        atomic_init(&ch->next, NULL);
        atomic_init(&ch->len, 0);
        ch->cap = cap;
    }
    return ch;
}

/*
 * The next chunk of a body whose length is unknown (compressed at fill, chunked, to the
 * close): what is appended now, and room to grow by a quarter of what came before (at
 * least FG_CACHE_CHUNK_MIN, at most FG_CACHE_CHUNK). What the last chunk leaves unused is
 * then at most a quarter of the body, or 1 KiB: a 16 KiB chunk for every small compressed
 * page made the cache's RSS ten times its bound. The chunk cannot be shrunk when the fill
 * ends: readers may already hold references into it.
 */
static size_t chunk_cap(uint64_t body_before, size_t len)
{
    uint64_t grow = body_before / 4;
    if (grow < FG_CACHE_CHUNK_MIN)
        grow = FG_CACHE_CHUNK_MIN;
    if (grow > FG_CACHE_CHUNK)
        grow = FG_CACHE_CHUNK;
    return len > grow ? len : (size_t)grow;
}

bool fg_cache_fill_append(struct fg_cache_obj *o, const void *data, size_t len)
{
    struct fg_cache *c = o->cache;
    const char *p = data;
    uint64_t total = atomic_load_explicit(&o->body_len, memory_order_relaxed) + len;
    if (!o->too_big && total > atomic_load_explicit(&c->max_object, memory_order_relaxed)) {
        /* Readers that joined keep getting every byte; nobody new finds it. */
        o->too_big = true;
        bump(&c->too_big);
        obj_retire(c, o);
    }
    uint64_t before = total - len;
    while (len > 0) {
        struct fg_cache_chunk *ch = o->last;
        size_t used = ch ? atomic_load_explicit(&ch->len, memory_order_relaxed) : 0;
        if (ch == NULL || used == ch->cap) {
            struct fg_cache_chunk *n = chunk_new(chunk_cap(before, len));
            if (n == NULL)
                return false;
            if (ch == NULL)
                atomic_store_explicit(&o->first, n, memory_order_release);
            else
                atomic_store_explicit(&ch->next, n, memory_order_release);
            o->last = ch = n;
            used = 0;
        }
        size_t k = ch->cap - used < len ? ch->cap - used : len;
        memcpy(ch->data + used, p, k);
        atomic_store_explicit(&ch->len, used + k, memory_order_release);
        p += k;
        len -= k;
        before += k;
    }
    atomic_store_explicit(&o->body_len, total, memory_order_release);
    pthread_mutex_lock(&o->lock);
    wake_locked(o);
    pthread_mutex_unlock(&o->lock);
    return !o->too_big;
}

static uint64_t obj_charge(const struct fg_cache_obj *o);

/* Retire older variants of the same key and secondary key: o supersedes them. */
static void retire_older(struct fg_cache *c, struct fg_cache_obj *o)
{
    struct shard *s = shard_of(c, o->hash);
    struct fg_cache_obj *old[16];
    size_t n = 0;
    pthread_mutex_lock(&s->lock);
    for (struct fg_cache_obj *x = s->buckets[bucket_of(s, o->hash)]; x != NULL && n < 16;
         x = x->hnext) {
        int st = atomic_load_explicit(&x->state, memory_order_acquire);
        if (x == o || x->hash != o->hash || x->key_len != o->key_len ||
            memcmp(x->key, o->key, o->key_len) != 0)
            continue;
        /* A hit-for-miss marker replaces only older markers; a response replaces the
         * older copies of its variant too. */
        bool marker = atomic_load_explicit(&o->state, memory_order_relaxed) == FG_CACHE_PASS;
        bool same_variant = !marker && (st == FG_CACHE_COMPLETE || st == FG_CACHE_FILLING) &&
                            x->vary_values != NULL && o->vary_values != NULL &&
                            x->vary_values_len == o->vary_values_len &&
                            memcmp(x->vary_values, o->vary_values, o->vary_values_len) == 0;
        if (same_variant || st == FG_CACHE_PASS || st == FG_CACHE_FAILED) {
            fg_cache_obj_ref(x);
            old[n++] = x;
        }
    }
    pthread_mutex_unlock(&s->lock);
    for (size_t i = 0; i < n; i++) {
        obj_retire(c, old[i]);
        fg_cache_obj_unref(old[i]);
    }
}

/* What an allocation costs: what malloc gave (it rounds up) and its header. */
static uint64_t alloc_bytes(const void *p)
{
    return p == NULL ? 0 : malloc_usable_size((void *)p) + sizeof(size_t);
}

/* What o holds in memory, as allocated: the object with its key, the stored head, its tags, the
 * variant's strings, and the body's chunks with their unused room (a body shared with
 * the stale copy it refreshed is charged again: it lives as long as either). */
static uint64_t obj_charge(const struct fg_cache_obj *o)
{
    uint64_t n = alloc_bytes(o) + alloc_bytes(o->head) + alloc_bytes(o->tags) +
                 alloc_bytes(o->vary_names) + alloc_bytes(o->vary_values);
    const struct fg_cache_obj *b = o->body_owner != NULL ? o->body_owner : o;
    for (const struct fg_cache_chunk *ch = atomic_load(&b->first); ch != NULL;
         ch = atomic_load(&ch->next))
        n += alloc_bytes(ch);
    return n;
}

static bool in_table_now(struct fg_cache *c, struct fg_cache_obj *o)
{
    struct shard *s = shard_of(c, o->hash);
    pthread_mutex_lock(&s->lock);
    bool in = o->in_table;
    pthread_mutex_unlock(&s->lock);
    return in;
}

/* A final object (ready to serve, or a marker) takes its place in the memory bound if it
 * is still in the table: the older copies it replaces go, others are evicted to make room.
 * in_table is the shard lock's: read under it, and again once admitted, since a purge on
 * another thread may have taken o out meanwhile (it must not then stay charged). */
static bool admit(struct fg_cache *c, struct fg_cache_obj *o)
{
    if (!in_table_now(c, o))
        return false;
    retire_older(c, o);
    if (!evict_admit(c, o, obj_charge(o))) {
        obj_retire(c, o); /* larger than the whole cache */
        return false;
    }
    if (!in_table_now(c, o)) {
        evict_unlink(c, o);
        return false;
    }
    return true;
}

void fg_cache_fill_done(struct fg_cache_obj *o, bool ok)
{
    struct fg_cache *c = o->cache;
    if (ok) {
        /* m.content_length stays as announced (readers on other threads read it without a
         * lock); fg_cache_obj_length gives body_len once COMPLETE. */
        set_state(o, FG_CACHE_COMPLETE);
        if (!o->too_big && admit(c, o))
            bump(&c->stores);
    } else {
        bump(&c->fill_failed);
        set_state(o, FG_CACHE_FAILED);
        obj_retire(c, o);
    }
}

void fg_cache_fill_pass(struct fg_cache_obj *o, int64_t now_ms, uint64_t ttl_ms)
{
    struct fg_cache *c = o->cache;
    o->pass_until_ms = (uint64_t)now_ms + ttl_ms;
    set_state(o, FG_CACHE_PASS);
    if (ttl_ms == 0) {
        obj_retire(c, o);
        return;
    }
    bump(&c->hfm);
    /* The marker stays until it expires or is replaced. It counts against the memory bound
     * like any object, so a flood of distinct uncacheable URLs cannot grow the table
     * without limit: old markers are evicted like old responses. */
    admit(c, o);
}

void fg_cache_fill_abort(struct fg_cache_obj *o, int status)
{
    o->abort_status = status;
    set_state(o, FG_CACHE_ABORTED);
    obj_retire(o->cache, o);
}

void fg_cache_fill_refresh(struct fg_cache_obj *o, struct fg_cache_obj *stale,
                           const struct fg_cache_meta *meta, const char *head, size_t head_len)
{
    struct fg_cache *c = o->cache;
    FG_ASSERT(atomic_load(&stale->state) == FG_CACHE_COMPLETE);
    o->m = *meta;
    o->m.status = stale->m.status;
    o->m.content_length = fg_cache_obj_length(stale); /* COMPLETE: known */
    o->head = dup_bytes(head, head_len);
    o->vary_names = dup_bytes(stale->vary_names, stale->vary_names_len);
    o->vary_values = dup_bytes(stale->vary_values, stale->vary_values_len);
    if (o->head == NULL || o->vary_names == NULL || o->vary_values == NULL) {
        fg_cache_fill_abort(o, 502);
        return;
    }
    o->head_len = head_len;
    if (o->tags == NULL && stale->tags != NULL &&
        !fg_cache_fill_tags(o, stale->tags, stale->tags_len)) {
        fg_cache_fill_abort(o, 502);
        return;
    }
    o->vary_names_len = stale->vary_names_len;
    o->vary_values_len = stale->vary_values_len;
    struct fg_cache_obj *owner = stale->body_owner ? stale->body_owner : stale;
    fg_cache_obj_ref(owner);
    o->body_owner = owner;
    atomic_init(&o->first, atomic_load_explicit(&owner->first, memory_order_relaxed));
    atomic_store(&o->body_len, atomic_load(&stale->body_len));
    set_state(o, FG_CACHE_COMPLETE);
    if (admit(c, o))
        bump(&c->stores);
}

void fg_cache_fill_stale(struct fg_cache_obj *o, struct fg_cache_obj *stale)
{
    o->fallback = true; /* published with the state below */
    fg_cache_fill_refresh(o, stale, &stale->m, stale->head, stale->head_len);
}

/* ---- purge ----------------------------------------------------------------------------- */

/* What a purge removes: a key, the keys under a prefix, or the objects with a tag. */
struct purge_spec {
    const char *s;
    size_t len;
    enum { PURGE_KEY, PURGE_PREFIX, PURGE_TAG } kind;
};

/* Under the shard lock. */
static bool purge_match(const struct fg_cache_obj *o, const struct purge_spec *p)
{
    switch (p->kind) {
    case PURGE_KEY:
        return o->key_len == p->len && memcmp(o->key, p->s, p->len) == 0;
    case PURGE_PREFIX:
        return o->key_len >= p->len && memcmp(o->key, p->s, p->len) == 0;
    case PURGE_TAG:
        break;
    }
    /* The tags are published with FILLING (the acquire load pairs with set_state). A busy
     * object's answer is not known yet: it goes too. Hit-for-miss markers stay. */
    int st = atomic_load_explicit(&o->state, memory_order_acquire);
    if (st == FG_CACHE_BUSY)
        return true;
    if ((st != FG_CACHE_FILLING && st != FG_CACHE_COMPLETE) || o->tags == NULL)
        return false;
    /* p->s is " tag " (a space either side), as the tags are kept. */
    return memmem(o->tags, o->tags_len, p->s, p->len) != NULL;
}

static size_t purge_where(struct fg_cache *c, const struct purge_spec *p, uint64_t hash)
{
    size_t removed = 0;
    for (size_t i = 0; i < FG_CACHE_SHARDS; i++) {
        struct shard *s = &c->shards[i];
        if (p->kind == PURGE_KEY && s != shard_of(c, hash))
            continue;
        for (;;) {
            struct fg_cache_obj *batch[64];
            size_t n = 0;
            pthread_mutex_lock(&s->lock);
            for (size_t b = 0; b < s->n_buckets && n < 64; b++) {
                if (p->kind == PURGE_KEY && b != bucket_of(s, hash))
                    continue;
                for (struct fg_cache_obj *o = s->buckets[b]; o != NULL && n < 64; o = o->hnext) {
                    /* A busy object goes too: its fetch started before the purge, so
                     * its answer must not be stored (its waiters still get it). */
                    if (purge_match(o, p)) {
                        fg_cache_obj_ref(o);
                        batch[n++] = o;
                    }
                }
            }
            for (size_t k = 0; k < n; k++)
                table_remove(c, s, batch[k]);
            pthread_mutex_unlock(&s->lock);
            for (size_t k = 0; k < n; k++) {
                evict_unlink(c, batch[k]);
                fg_cache_obj_unref(batch[k]); /* the table's */
                fg_cache_obj_unref(batch[k]); /* ours */
            }
            removed += n;
            if (n < 64)
                break;
        }
    }
    atomic_fetch_add_explicit(&c->purged, removed, memory_order_relaxed);
    return removed;
}

size_t fg_cache_purge(struct fg_cache *c, const char *key, size_t key_len, bool prefix)
{
    struct purge_spec p = {key, key_len, prefix ? PURGE_PREFIX : PURGE_KEY};
    return purge_where(c, &p, prefix ? 0 : fg_cache_key_hash(key, key_len));
}

size_t fg_cache_purge_tag(struct fg_cache *c, const char *tag, size_t len)
{
    if (!fg_cache_tag_valid(tag, len))
        return 0;
    char needle[FG_CACHE_TAG_MAX + 2];
    needle[0] = ' ';
    memcpy(needle + 1, tag, len);
    needle[len + 1] = ' ';
    struct purge_spec p = {needle, len + 2, PURGE_TAG};
    return purge_where(c, &p, 0);
}
