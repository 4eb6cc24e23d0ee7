/*
 * internal.h — the cache module's private layout: objects, their body chunks, the
 * notifier hooks of the store. Only proxy/cache/ (and its own unit tests) include this;
 * everyone else sees an opaque struct fg_cache_obj through cache.h.
 */
#ifndef FG_CACHE_INTERNAL_H
#define FG_CACHE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "cache/cache.h"
#include "cache/evict.h"

#define FG_CACHE_OBJ_MAGIC 0x6f626a31u /* "obj1" */

/* Body storage: a list of chunks; bytes are appended, published with a release store of
 * len, and never move, so readers on other threads read without a lock (reader.c). */
struct fg_cache_chunk {
    struct fg_cache_chunk *_Atomic next;
    _Atomic size_t len;
    size_t cap;
    char data[];
};

struct fg_cache_obj {
    unsigned magic;
    atomic_uint refs;
    struct fg_cache *cache;
    uint64_t hash;
    char *key; /* primary key */
    size_t key_len;
    char *vary_names; /* normalised Vary names, "" when none; NULL while BUSY */
    size_t vary_names_len;
    char *vary_values; /* the filler's secondary key for those names */
    size_t vary_values_len;

    pthread_mutex_t lock; /* waiters, state changes */
    _Atomic int state;    /* enum fg_cache_state */
    struct fg_cache_waiter *waiters;
    bool in_table;          /* under the shard lock */
    bool stored;            /* counted in the memory bound (COMPLETE in the table) */
    uint64_t charge;        /* bytes charged to the cache */
    uint64_t pass_until_ms; /* PASS markers: wall ms when the marker expires */
    int abort_status;       /* ABORTED: what the fetch failed with */
    bool fallback;          /* stale-if-error: an older response published again */

    /* The response, set by fg_cache_fill_head (read-only afterwards). */
    struct fg_cache_meta m;
    char *head; /* "HTTP/1.1 200 OK\r\n" + stored fields, without framing, Age and
                   hop-by-hop fields, and without the final CRLF */
    size_t head_len;
    char *tags; /* normalised (" a b "), set before FILLING (fg_cache_fill_tags); NULL: none */
    size_t tags_len;

    /* Body. A refreshed object (304) shares the body of the one it replaced: body_owner
     * holds a reference to the object whose chunks these are (NULL: its own). */
    struct fg_cache_obj *body_owner;
    struct fg_cache_chunk *_Atomic first; /* set once, by the filler (release) */
    struct fg_cache_chunk *last;          /* filler only */
    _Atomic uint64_t body_len;            /* bytes appended so far */
    struct fg_cache_obj *hnext;           /* bucket chain, under the shard lock */
    bool too_big;                         /* grew past max_object: never stored */
    /* Eviction (evict.h), under the store's eviction lock. While linked there, the
     * object holds a reference for it, as it does while in the table. */
    struct fg_evict_node evict;
};

/* store.c → notify.c: queue a waiter on its notifier / take it off. */
void fg_cache_notifier_push(struct fg_cache_waiter *w);
void fg_cache_notifier_unqueue(struct fg_cache_waiter *w);

#endif /* FG_CACHE_INTERNAL_H */
