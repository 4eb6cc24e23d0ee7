/*
 * table.c — the local rate-limit table: key -> TAT, shared by every worker thread.
 *
 * Layout. Up to 64 shards, each a mutex and a fixed array of 32-byte slots. A key's two
 * 64-bit SipHash values pick its shard (h1) and its home slot (h2); the key may live in
 * the WINDOW slots from home on (wrapping), like a set-associative cache. Slots are never
 * emptied, only overwritten, so a lookup can stop at the first empty slot: a key is always
 * stored at or before it. That keeps deletion out of open addressing altogether (no
 * tombstones) and bounds every probe to WINDOW slots, two cache lines.
 *
 * Replacement, when a new key arrives and its window has no empty slot: first a dead
 * entry (TAT at or before now: the same as no entry), else the live entry with the oldest
 * TAT, whose budget is nearest to full, so forgetting it changes the least. Nothing ever
 * refuses a decision for lack of room.
 *
 * Locking: the hashing happens before the lock; under it, at most WINDOW compares and one
 * GCRA computation. A mutex rather than a spinlock because workers may be preempted while
 * holding it (more workers than cores, or a noisy neighbour on a small instance), and a
 * spinning waiter would then burn its whole time slice.
 */
#include "ratelimit/internal.h"
#include "ratelimit/ratelimit.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define SHARDS_MAX 64
#define WINDOW     8
#define CACHE_LINE 64

struct slot {
    uint64_t h1, h2; /* both zero: empty */
    uint64_t tat_us;
    uint32_t tat_frac;
    uint32_t unused;
};

struct shard {
    _Alignas(CACHE_LINE) pthread_mutex_t lock;
    struct slot *slots;
    size_t cap;
    fg_counter_t filled, reused, evicted; /* written under lock */
};

struct fg_ratelimit_table {
    struct shard *shards;
    size_t n_shards; /* a power of two */
    uint8_t key1[16], key2[16];
};

static void random_bytes(uint8_t *out, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = getrandom(out + got, len - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got < len) {
        /* No entropy source (an odd container): the table still works, only the
         * protection against crafted collisions is weaker. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uintptr_t)out;
        for (size_t i = got; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            out[i] = (uint8_t)x;
        }
    }
}

struct fg_ratelimit_table *fg_ratelimit_table_new(size_t max_entries)
{
    if (max_entries < WINDOW)
        max_entries = WINDOW;
    /* As many shards as keep at least one full window each. */
    size_t n_shards = SHARDS_MAX;
    while (n_shards > 1 && max_entries / n_shards < WINDOW)
        n_shards /= 2;
    size_t per_shard = (max_entries + n_shards - 1) / n_shards;

    struct fg_ratelimit_table *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->shards = aligned_alloc(CACHE_LINE, n_shards * sizeof(struct shard));
    if (t->shards == NULL) {
        free(t);
        return NULL;
    }
    memset(t->shards, 0, n_shards * sizeof(struct shard));
    t->n_shards = n_shards;
    for (size_t i = 0; i < n_shards; i++) {
        struct shard *s = &t->shards[i];
        s->slots = calloc(per_shard, sizeof(struct slot));
        if (s->slots == NULL) {
            t->n_shards = i;
            fg_ratelimit_table_free(t);
            return NULL;
        }
        s->cap = per_shard;
        pthread_mutex_init(&s->lock, NULL);
    }
    random_bytes(t->key1, sizeof(t->key1));
    random_bytes(t->key2, sizeof(t->key2));
    return t;
}

void fg_ratelimit_table_free(struct fg_ratelimit_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n_shards; i++) {
        pthread_mutex_destroy(&t->shards[i].lock);
        free(t->shards[i].slots);
    }
    free(t->shards);
    free(t);
}

static uint64_t key_hash(const uint8_t hkey[16], const struct fg_ratelimit_limit *limit,
                         const void *key, size_t key_len)
{
    struct fg_siphash s;
    fg_siphash_init(&s, hkey);
    /* The name's NUL ends it unambiguously: names never contain one. */
    fg_siphash_update(&s, limit->name, limit->name_len + 1);
    fg_siphash_update(&s, key, key_len);
    return fg_siphash_final(&s);
}

static inline bool slot_empty(const struct slot *s)
{
    return (s->h1 | s->h2) == 0;
}

/* TAT at or before now: the entry means nothing any more. */
static inline bool slot_dead(const struct slot *s, uint64_t now_us)
{
    return s->tat_us < now_us || (s->tat_us == now_us && s->tat_frac == 0);
}

static inline bool slot_older(const struct slot *a, const struct slot *b)
{
    return a->tat_us < b->tat_us || (a->tat_us == b->tat_us && a->tat_frac < b->tat_frac);
}

struct fg_ratelimit_result fg_ratelimit_table_decide(struct fg_ratelimit_table *t,
                                                     const struct fg_ratelimit_limit *limit,
                                                     const void *key, size_t key_len, uint64_t cost,
                                                     uint64_t now_us)
{
    uint64_t h1 = key_hash(t->key1, limit, key, key_len);
    uint64_t h2 = key_hash(t->key2, limit, key, key_len);
    if ((h1 | h2) == 0)
        h1 = 1; /* (0, 0) marks an empty slot */
    struct shard *s = &t->shards[h1 & (t->n_shards - 1)];
    size_t home = (size_t)(h2 % s->cap);
    size_t window = s->cap < WINDOW ? s->cap : WINDOW;

    pthread_mutex_lock(&s->lock);
    struct slot *found = NULL, *empty = NULL, *dead = NULL, *oldest = NULL;
    for (size_t j = 0, i = home; j < window; j++, i = (i + 1 == s->cap) ? 0 : i + 1) {
        struct slot *sl = &s->slots[i];
        if (slot_empty(sl)) {
            empty = sl;
            break;
        }
        if (sl->h1 == h1 && sl->h2 == h2) {
            found = sl;
            break;
        }
        if (dead == NULL && slot_dead(sl, now_us))
            dead = sl;
        if (oldest == NULL || slot_older(sl, oldest))
            oldest = sl;
    }
    struct fg_ratelimit_tat tat = {0, 0};
    if (found != NULL)
        tat = (struct fg_ratelimit_tat){found->tat_us, found->tat_frac};
    struct fg_ratelimit_result res = fg_ratelimit_gcra(limit, tat, cost, now_us);

    /* Store when allowed; a new key only if it now holds something (a peek of a fresh
     * key, or a refusal, would store a meaningless entry). */
    bool holds = res.tat.us > now_us || (res.tat.us == now_us && res.tat.frac != 0);
    if (res.allowed && (found != NULL || holds)) {
        struct slot *to = found;
        if (to == NULL) {
            if (dead != NULL) {
                to = dead;
                fg_counter_add(&s->reused, 1);
            } else if (empty != NULL) {
                to = empty;
                fg_counter_add(&s->filled, 1);
            } else {
                to = oldest;
                fg_counter_add(&s->evicted, 1);
            }
            to->h1 = h1;
            to->h2 = h2;
        }
        to->tat_us = res.tat.us;
        to->tat_frac = res.tat.frac;
    }
    pthread_mutex_unlock(&s->lock);
    return res;
}

void fg_ratelimit_table_stats(const struct fg_ratelimit_table *t,
                              struct fg_ratelimit_table_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < t->n_shards; i++) {
        const struct shard *s = &t->shards[i];
        out->capacity += s->cap;
        out->filled += fg_counter_get(&s->filled);
        out->reused += fg_counter_get(&s->reused);
        out->evicted += fg_counter_get(&s->evicted);
    }
}
