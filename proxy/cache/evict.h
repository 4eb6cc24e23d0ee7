/*
 * evict.h — the cache store's eviction policy (private to proxy/cache/).
 *
 * S3-FIFO (Yang et al., "FIFO queues are all you need for cache eviction", SOSP 2023):
 * a small FIFO that new objects enter (10% of the bytes), a main FIFO with reinsertion,
 * and a ghost FIFO of hashes recently evicted from the small one. Most objects in a web
 * cache are requested once; the small queue lets them go after a short stay without
 * disturbing the main queue, where the objects that proved themselves live. A hit only
 * bumps a 2-bit counter and never relinks, so lookups can run under a read lock.
 * FG_EVICT_LRU, a plain LRU behind the same calls, exists for comparison
 * (tests/bench/zipf.c measures both).
 *
 * The structure is intrusive: a struct fg_evict_node lives inside the caller's object
 * (container_of gets back to it). Nothing is allocated per object and nothing is freed
 * here: an eviction unlinks a node and hands it back, and the caller removes the object
 * from its index and drops its reference. Capacity is in bytes (the "charge" of each
 * object, which should include its overhead, not only the body).
 *
 * Locking: there is none inside. The caller serialises every call on one struct fg_evict
 * (its shard lock, or one eviction lock), except fg_evict_hit in S3-FIFO mode (see there).
 *
 * Ghost memory: the ghost holds at most ghost_entries 64-bit key hashes (the config; by
 * default capacity / FG_EVICT_GHOST_OBJECT_ESTIMATE), allocated once at init: 8 bytes of
 * ring plus 8-16 bytes of open-addressing index per entry, 16-24 bytes in all (512 MiB of
 * cache: 32768 entries, 512 KiB). Like the paper's ghost, it remembers no more hashes than
 * the cache currently holds objects, so an object that comes back after a longer absence
 * than its peers stay in the cache starts in small again.
 */
#ifndef FG_CACHE_EVICT_H
#define FG_CACHE_EVICT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum fg_evict_policy { FG_EVICT_S3FIFO = 0, FG_EVICT_LRU };

/* Where a node is. A zeroed node is FG_EVICT_NONE: not linked. */
enum fg_evict_queue { FG_EVICT_NONE = 0, FG_EVICT_SMALL, FG_EVICT_MAIN };

#define FG_EVICT_FREQ_MAX              3          /* the counter saturates: 2 bits of history */
#define FG_EVICT_SMALL_PERCENT         10         /* the paper's choice; it generalises well */
#define FG_EVICT_GHOST_OBJECT_ESTIMATE (16 << 10) /* bytes per object, to size the ghost */
#define FG_EVICT_GHOST_MIN             64
#define FG_EVICT_GHOST_MAX             (1u << 24) /* 16 Mi entries, at most 384 MiB */

/* Embedded in the caller's object. Only freq may be touched outside the shard lock. */
struct fg_evict_node {
    struct fg_evict_node *newer, *older; /* towards the head / the tail of its queue */
    uint64_t hash;                       /* the key's hash, remembered by the ghost */
    uint64_t charge;                     /* bytes this object counts for */
    _Atomic uint8_t freq;                /* hits not yet used up, 0..FG_EVICT_FREQ_MAX */
    uint8_t queue;                       /* enum fg_evict_queue */
};

struct fg_evict_list {
    struct fg_evict_node *head, *tail; /* insert at the head, evict at the tail */
    uint64_t count, bytes;
};

/* The ghost: a ring of hashes (oldest first out) and an index over it for O(1) lookups. */
struct fg_evict_ghost {
    uint64_t *ring;   /* [cap] hashes */
    uint32_t *index;  /* [mask + 1] ring positions, UINT32_MAX when empty */
    uint32_t cap;     /* ring size; 0 when there is no ghost (LRU) */
    uint32_t mask;    /* index size - 1 (a power of two, at least twice cap) */
    uint32_t next;    /* ring position of the next hash */
    uint32_t used;    /* ring positions in use, including hashes since found (stale) */
    uint32_t entries; /* hashes the index still finds */
    uint8_t shift;    /* 64 - log2(index size), for ghost_home */
};

struct fg_evict_config {
    enum fg_evict_policy policy;
    uint64_t capacity;      /* bytes */
    unsigned small_percent; /* share of the small queue in bytes; 0: FG_EVICT_SMALL_PERCENT */
    uint32_t ghost_entries; /* 0: capacity / FG_EVICT_GHOST_OBJECT_ESTIMATE, clamped */
};

struct fg_evict {
    unsigned magic;
    enum fg_evict_policy policy;
    uint64_t capacity, small_target; /* bytes */
    unsigned small_percent;
    struct fg_evict_list small, main; /* LRU mode uses main only, most recent at the head */
    struct fg_evict_ghost ghost;
    /* counters for /stats */
    uint64_t evictions, evicted_bytes;
    uint64_t promotions;   /* small → main, accessed while in small */
    uint64_t reinsertions; /* main → main, second chances */
    uint64_t ghost_hits;   /* inserted straight into main */
    uint64_t removals;     /* fg_evict_remove: purge, invalidation, replacement */
    uint64_t oversize;     /* make_room refusals: the object is larger than the capacity */
};

/* A snapshot for /stats. */
struct fg_evict_stats {
    uint64_t capacity, bytes, entries;
    uint64_t small_bytes, small_entries, main_bytes, main_entries;
    uint64_t ghost_entries, ghost_capacity, ghost_memory; /* memory in bytes */
    uint64_t evictions, evicted_bytes, promotions, reinsertions, ghost_hits, removals;
    uint64_t oversize;
};

/* Set up e with no objects. Allocates the ghost (S3-FIFO only). false if that fails. */
bool fg_evict_init(struct fg_evict *e, const struct fg_evict_config *cfg);

/* Free the ghost. Nodes still linked are forgotten, not touched: the caller owns them. */
void fg_evict_fini(struct fg_evict *e);

/* Change the capacity (a reload). Shrinking evicts nothing by itself: call
 * fg_evict_make_room(e, 0, ...) afterwards. */
void fg_evict_set_capacity(struct fg_evict *e, uint64_t capacity);

/* Link a new object, charged `charge` bytes. It goes to the small queue, or straight to
 * the main one when the ghost remembers its hash (it was evicted too early). The caller
 * must have made room first: fg_evict_make_room(e, charge, ...) returned true. */
void fg_evict_insert(struct fg_evict *e, struct fg_evict_node *n, uint64_t hash, uint64_t charge);

/* Unlink an object for another reason than eviction (purge, invalidation, replacement by
 * a newer response). It does not enter the ghost. n must be linked in e. */
void fg_evict_remove(struct fg_evict *e, struct fg_evict_node *n);

/* Unlink and return the next victim, NULL when e is empty. In S3-FIFO mode this may first
 * move accessed objects from small to main and give accessed objects in main another
 * round; each such step uses up a hit, so the cost is amortised O(1). */
struct fg_evict_node *fg_evict_one(struct fg_evict *e);

/* Called for every victim, already unlinked; it may free the object but must not call
 * into e. */
typedef void fg_evict_cb(struct fg_evict_node *victim, void *arg);

/* Evict until `needed` more bytes fit. false, with nothing evicted, when needed exceeds
 * the capacity: such an object cannot be cached and the caller passes it through. */
bool fg_evict_make_room(struct fg_evict *e, uint64_t needed, fg_evict_cb *cb, void *arg);

/* LRU mode's hit: move n to the head. Use fg_evict_hit. */
void fg_evict_lru_touch(struct fg_evict *e, struct fg_evict_node *n);

/* A cache hit on n. In S3-FIFO mode this is one relaxed byte load and at most one relaxed
 * byte store, so it may run outside the shard lock (under a read lock, or none) while the
 * caller holds a reference that keeps n's memory alive; a lost update is harmless, the
 * counter is a hint. In LRU mode it relinks n and needs the shard lock. A hit on a node
 * that was evicted meanwhile does nothing that matters. */
static inline void fg_evict_hit(struct fg_evict *e, struct fg_evict_node *n)
{
    if (e->policy == FG_EVICT_LRU) {
        fg_evict_lru_touch(e, n);
        return;
    }
    uint8_t f = atomic_load_explicit(&n->freq, memory_order_relaxed);
    if (f < FG_EVICT_FREQ_MAX) /* a hot object's cache line is not written on every hit */
        atomic_store_explicit(&n->freq, (uint8_t)(f + 1), memory_order_relaxed);
}

static inline bool fg_evict_linked(const struct fg_evict_node *n)
{
    return n->queue != FG_EVICT_NONE;
}

static inline unsigned fg_evict_node_freq(const struct fg_evict_node *n)
{
    return atomic_load_explicit(&n->freq, memory_order_relaxed);
}

/* Bytes charged by linked objects. */
static inline uint64_t fg_evict_bytes(const struct fg_evict *e)
{
    return e->small.bytes + e->main.bytes;
}

void fg_evict_stats(const struct fg_evict *e, struct fg_evict_stats *out);

#endif /* FG_CACHE_EVICT_H */
