/*
 * evict.c — S3-FIFO and LRU over intrusive lists, and the ghost of S3-FIFO. See evict.h.
 */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "cache/evict.h"

#define FG_EVICT_MAGIC 0x65766331u /* "evc1" */
#define GHOST_EMPTY    UINT32_MAX

/* ---- lists -------------------------------------------------------------------------- */

static void list_push_head(struct fg_evict_list *l, struct fg_evict_node *n)
{
    n->newer = NULL;
    n->older = l->head;
    if (l->head != NULL)
        l->head->newer = n;
    else
        l->tail = n;
    l->head = n;
    l->count++;
    l->bytes += n->charge;
}

static void list_unlink(struct fg_evict_list *l, struct fg_evict_node *n)
{
    FG_ASSERT(l->count > 0 && l->bytes >= n->charge);
    if (n->newer != NULL)
        n->newer->older = n->older;
    else
        l->head = n->older;
    if (n->older != NULL)
        n->older->newer = n->newer;
    else
        l->tail = n->newer;
    n->newer = n->older = NULL;
    l->count--;
    l->bytes -= n->charge;
}

static struct fg_evict_list *list_of(struct fg_evict *e, const struct fg_evict_node *n)
{
    FG_ASSERT(n->queue == FG_EVICT_SMALL || n->queue == FG_EVICT_MAIN);
    return n->queue == FG_EVICT_SMALL ? &e->small : &e->main;
}

/* ---- the ghost ---------------------------------------------------------------------- */

/* Fibonacci hashing: the top bits of h times 2^64/phi depend on every bit of h. The store
 * may pick shards with some bits of the same hash, so all hashes in one fg_evict can share
 * those bits; this spreads them anyway, for one multiplication. */
static uint32_t ghost_home(const struct fg_evict_ghost *g, uint64_t h)
{
    return (uint32_t)((h * 0x9e3779b97f4a7c15ull) >> g->shift);
}

static bool ghost_alloc(struct fg_evict_ghost *g, uint32_t cap)
{
    uint32_t slots = 1;
    unsigned bits = 0;
    while (slots < 2 * (uint64_t)cap) { /* load factor at most 1/2: short probes */
        slots <<= 1;
        bits++;
    }
    g->ring = malloc((size_t)cap * sizeof(*g->ring));
    g->index = malloc((size_t)slots * sizeof(*g->index));
    if (g->ring == NULL || g->index == NULL) {
        free(g->ring);
        free(g->index);
        g->ring = NULL;
        g->index = NULL;
        return false;
    }
    memset(g->index, 0xff, (size_t)slots * sizeof(*g->index)); /* GHOST_EMPTY */
    g->cap = cap;
    g->mask = slots - 1;
    g->shift = (uint8_t)(64 - bits);
    return true;
}

/* Index slot holding hash h, or GHOST_EMPTY. */
static uint32_t ghost_find(const struct fg_evict_ghost *g, uint64_t h)
{
    for (uint32_t i = ghost_home(g, h);; i = (i + 1) & g->mask) {
        if (g->index[i] == GHOST_EMPTY) /* the load factor keeps empty slots: it ends */
            return GHOST_EMPTY;
        if (g->ring[g->index[i]] == h)
            return i;
    }
}

/* Empty index slot i and shift back the entries of its probe run that would otherwise
 * become unreachable (linear probing without tombstones, so probes stay short). */
static void ghost_unindex(struct fg_evict_ghost *g, uint32_t i)
{
    for (uint32_t j = (i + 1) & g->mask; g->index[j] != GHOST_EMPTY; j = (j + 1) & g->mask) {
        uint32_t home = ghost_home(g, g->ring[g->index[j]]);
        /* The entry at j may move to i unless its home lies cyclically in (i, j]. */
        if (((j - home) & g->mask) >= ((j - i) & g->mask)) {
            g->index[i] = g->index[j];
            i = j;
        }
    }
    g->index[i] = GHOST_EMPTY;
    g->entries--;
}

/* Forget the oldest ring position, unless a hit already took its hash out of the index
 * (then the position is stale and nothing points at it). */
static void ghost_drop_oldest(struct fg_evict_ghost *g)
{
    uint32_t pos = g->next >= g->used ? g->next - g->used : g->next + g->cap - g->used;
    for (uint32_t i = ghost_home(g, g->ring[pos]); g->index[i] != GHOST_EMPTY;
         i = (i + 1) & g->mask) {
        if (g->index[i] == pos) {
            ghost_unindex(g, i);
            break;
        }
    }
    g->used--;
}

/* Remember h; limit: how many hashes the ghost may hold now. A hash already there (two
 * objects with one hash, as variants may be) is indexed twice: harmless, both age out. */
static void ghost_add(struct fg_evict_ghost *g, uint64_t h, uint64_t limit)
{
    if (g->cap == 0)
        return;
    if (limit < 1)
        limit = 1;
    while (g->used >= g->cap || g->entries >= limit)
        ghost_drop_oldest(g);
    uint32_t pos = g->next;
    g->ring[pos] = h;
    g->next = pos + 1 == g->cap ? 0 : pos + 1;
    g->used++;
    uint32_t i = ghost_home(g, h);
    while (g->index[i] != GHOST_EMPTY)
        i = (i + 1) & g->mask;
    g->index[i] = pos;
    g->entries++;
}

/* Was h evicted lately? A found hash is forgotten: it enters main now. */
static bool ghost_take(struct fg_evict_ghost *g, uint64_t h)
{
    if (g->entries == 0)
        return false;
    uint32_t i = ghost_find(g, h);
    if (i == GHOST_EMPTY)
        return false;
    ghost_unindex(g, i);
    return true;
}

/* ---- the policy --------------------------------------------------------------------- */

static uint64_t small_target(uint64_t capacity, unsigned percent)
{
    /* capacity / 100 * percent would lose up to 99 bytes; this cannot overflow first */
    return capacity / 100 * percent + capacity % 100 * percent / 100;
}

bool fg_evict_init(struct fg_evict *e, const struct fg_evict_config *cfg)
{
    memset(e, 0, sizeof(*e));
    e->policy = cfg->policy;
    e->small_percent = cfg->small_percent != 0 ? cfg->small_percent : FG_EVICT_SMALL_PERCENT;
    FG_ASSERT(e->small_percent <= 100);
    e->capacity = cfg->capacity;
    e->small_target = small_target(e->capacity, e->small_percent);
    if (e->policy == FG_EVICT_S3FIFO) {
        uint64_t n = cfg->ghost_entries;
        if (n == 0) {
            n = cfg->capacity / FG_EVICT_GHOST_OBJECT_ESTIMATE;
            n = n < FG_EVICT_GHOST_MIN ? FG_EVICT_GHOST_MIN : n;
        }
        n = n > FG_EVICT_GHOST_MAX ? FG_EVICT_GHOST_MAX : n;
        if (!ghost_alloc(&e->ghost, (uint32_t)n))
            return false;
    }
    e->magic = FG_EVICT_MAGIC;
    return true;
}

void fg_evict_fini(struct fg_evict *e)
{
    FG_ASSERT(e->magic == FG_EVICT_MAGIC);
    free(e->ghost.ring);
    free(e->ghost.index);
    memset(e, 0, sizeof(*e));
}

void fg_evict_set_capacity(struct fg_evict *e, uint64_t capacity)
{
    FG_ASSERT(e->magic == FG_EVICT_MAGIC);
    e->capacity = capacity;
    e->small_target = small_target(capacity, e->small_percent);
}

void fg_evict_insert(struct fg_evict *e, struct fg_evict_node *n, uint64_t hash, uint64_t charge)
{
    FG_ASSERT(e->magic == FG_EVICT_MAGIC);
    FG_ASSERT(n->queue == FG_EVICT_NONE);
    FG_ASSERT(charge <= e->capacity && fg_evict_bytes(e) <= e->capacity - charge);
    n->hash = hash;
    n->charge = charge;
    atomic_store_explicit(&n->freq, 0, memory_order_relaxed);
    if (e->policy == FG_EVICT_S3FIFO && !ghost_take(&e->ghost, hash)) {
        n->queue = FG_EVICT_SMALL;
        list_push_head(&e->small, n);
        return;
    }
    if (e->policy == FG_EVICT_S3FIFO)
        e->ghost_hits++;
    n->queue = FG_EVICT_MAIN;
    list_push_head(&e->main, n);
}

void fg_evict_remove(struct fg_evict *e, struct fg_evict_node *n)
{
    FG_ASSERT(e->magic == FG_EVICT_MAGIC);
    list_unlink(list_of(e, n), n);
    n->queue = FG_EVICT_NONE;
    e->removals++;
}

void fg_evict_lru_touch(struct fg_evict *e, struct fg_evict_node *n)
{
    if (n->queue != FG_EVICT_MAIN || e->main.head == n)
        return;
    list_unlink(&e->main, n);
    list_push_head(&e->main, n);
}

static struct fg_evict_node *take_victim(struct fg_evict *e, struct fg_evict_node *n)
{
    n->queue = FG_EVICT_NONE;
    e->evictions++;
    e->evicted_bytes += n->charge;
    return n;
}

/* The small queue's tail: to main if it was hit while in small, else out (via the ghost). */
static struct fg_evict_node *evict_small(struct fg_evict *e)
{
    struct fg_evict_node *t = e->small.tail;
    list_unlink(&e->small, t);
    if (fg_evict_node_freq(t) > 0) {
        atomic_store_explicit(&t->freq, 0, memory_order_relaxed); /* it must earn main again */
        t->queue = FG_EVICT_MAIN;
        list_push_head(&e->main, t);
        e->promotions++;
        return NULL;
    }
    ghost_add(&e->ghost, t->hash, e->small.count + e->main.count + 1);
    return take_victim(e, t);
}

/* The main queue's tail: one more round per hit (a decrement, not a reset, so an object
 * hit three times outlives one hit once), else out. */
static struct fg_evict_node *evict_main(struct fg_evict *e)
{
    struct fg_evict_node *t = e->main.tail;
    list_unlink(&e->main, t);
    unsigned f = fg_evict_node_freq(t);
    if (f > 0) {
        atomic_store_explicit(&t->freq, (uint8_t)(f - 1), memory_order_relaxed);
        list_push_head(&e->main, t);
        e->reinsertions++;
        return NULL;
    }
    return take_victim(e, t);
}

struct fg_evict_node *fg_evict_one(struct fg_evict *e)
{
    FG_ASSERT(e->magic == FG_EVICT_MAGIC);
    if (e->policy == FG_EVICT_LRU) {
        struct fg_evict_node *t = e->main.tail;
        if (t == NULL)
            return NULL;
        list_unlink(&e->main, t);
        return take_victim(e, t);
    }
    for (;;) {
        struct fg_evict_node *v;
        /* Small works down to its share; main, when it is empty, leaves small all of it. */
        if (e->small.count > 0 && (e->small.bytes >= e->small_target || e->main.count == 0))
            v = evict_small(e);
        else if (e->main.count > 0)
            v = evict_main(e);
        else
            return NULL;
        if (v != NULL)
            return v;
    }
}

bool fg_evict_make_room(struct fg_evict *e, uint64_t needed, fg_evict_cb *cb, void *arg)
{
    FG_ASSERT(e->magic == FG_EVICT_MAGIC);
    if (needed > e->capacity) {
        e->oversize++;
        return false;
    }
    while (fg_evict_bytes(e) > e->capacity - needed) {
        struct fg_evict_node *v = fg_evict_one(e);
        FG_ASSERT(v != NULL); /* bytes > 0, so some node is linked */
        cb(v, arg);
    }
    return true;
}

void fg_evict_stats(const struct fg_evict *e, struct fg_evict_stats *out)
{
    FG_ASSERT(e->magic == FG_EVICT_MAGIC);
    const struct fg_evict_ghost *g = &e->ghost;
    *out = (struct fg_evict_stats){
        .capacity = e->capacity,
        .bytes = fg_evict_bytes(e),
        .entries = e->small.count + e->main.count,
        .small_bytes = e->small.bytes,
        .small_entries = e->small.count,
        .main_bytes = e->main.bytes,
        .main_entries = e->main.count,
        .ghost_entries = g->entries,
        .ghost_capacity = g->cap,
        .ghost_memory = g->cap == 0 ? 0
                                    : (uint64_t)g->cap * sizeof(*g->ring) +
                                          ((uint64_t)g->mask + 1) * sizeof(*g->index),
        .evictions = e->evictions,
        .evicted_bytes = e->evicted_bytes,
        .promotions = e->promotions,
        .reinsertions = e->reinsertions,
        .ghost_hits = e->ghost_hits,
        .removals = e->removals,
        .oversize = e->oversize,
    };
}
