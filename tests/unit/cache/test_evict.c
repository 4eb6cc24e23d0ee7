/* test_evict.c — S3-FIFO queue rules one by one, LRU order, and byte accounting that holds
 * over random sequences (checked against the objects and by walking the lists). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"
#include "cache/evict.h"

/* A cached object as the store would have it: the node embedded, anywhere in it. */
struct obj {
    uint64_t id;
    struct fg_evict_node node;
    uint64_t charge;
    bool cached;
};

static struct obj *obj_of(struct fg_evict_node *n)
{
    return (struct obj *)((char *)n - offsetof(struct obj, node));
}

/* Hashes whose low 20 bits are all the same, as within one shard of a store that picks
 * the shard from the low bits: the ghost must not depend on them. */
static uint64_t hash_of(uint64_t id)
{
    return id << 20 | 0x5a5;
}

/* Victims in the order the callback saw them. */
struct victims {
    struct obj *v[4096];
    size_t n;
};

static void on_evict(struct fg_evict_node *n, void *arg)
{
    struct victims *vs = arg;
    struct obj *o = obj_of(n);
    assert_true(o->cached);
    assert_false(fg_evict_linked(n));
    o->cached = false;
    if (vs != NULL && vs->n < FG_ARRAY_LEN(vs->v))
        vs->v[vs->n++] = o;
}

static void init(struct fg_evict *e, enum fg_evict_policy p, uint64_t capacity,
                 uint32_t ghost_entries)
{
    struct fg_evict_config cfg = {
        .policy = p, .capacity = capacity, .ghost_entries = ghost_entries};
    assert_true(fg_evict_init(e, &cfg));
}

/* make_room for o, then insert it, as the store does. */
static void add(struct fg_evict *e, struct obj *o, struct victims *vs)
{
    assert_false(o->cached);
    assert_true(fg_evict_make_room(e, o->charge, on_evict, vs));
    fg_evict_insert(e, &o->node, hash_of(o->id), o->charge);
    o->cached = true;
}

static void objs_init(struct obj *o, size_t n, uint64_t charge)
{
    for (size_t i = 0; i < n; i++)
        o[i] = (struct obj){.id = i, .charge = charge};
}

static struct obj *evict_one(struct fg_evict *e)
{
    struct fg_evict_node *n = fg_evict_one(e);
    if (n == NULL)
        return NULL;
    struct obj *o = obj_of(n);
    assert_true(o->cached);
    o->cached = false;
    return o;
}

/* Walk one list both ways; its count and bytes must match what it links. */
static void check_list(const struct fg_evict_list *l, enum fg_evict_queue q, uint64_t *count,
                       uint64_t *bytes)
{
    uint64_t c = 0, b = 0;
    const struct fg_evict_node *prev = NULL;
    for (const struct fg_evict_node *n = l->head; n != NULL; n = n->older) {
        assert_int_equal(n->queue, q);
        assert_ptr_equal(n->newer, prev);
        assert_true(fg_evict_node_freq(n) <= FG_EVICT_FREQ_MAX);
        c++;
        b += n->charge;
        prev = n;
        assert_true(c <= l->count); /* no cycle */
    }
    assert_ptr_equal(l->tail, prev);
    assert_int_equal(c, l->count);
    assert_int_equal(b, l->bytes);
    *count += c;
    *bytes += b;
}

/* The lists, the stats and the objects agree, and the capacity holds. */
static void check_all(const struct fg_evict *e, const struct obj *o, size_t n)
{
    uint64_t lc = 0, lb = 0, oc = 0, ob = 0;
    check_list(&e->small, FG_EVICT_SMALL, &lc, &lb);
    check_list(&e->main, FG_EVICT_MAIN, &lc, &lb);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(o[i].cached, fg_evict_linked(&o[i].node));
        if (o[i].cached) {
            oc++;
            ob += o[i].charge;
            assert_int_equal(o[i].node.charge, o[i].charge);
        }
    }
    struct fg_evict_stats st;
    fg_evict_stats(e, &st);
    assert_int_equal(lc, oc);
    assert_int_equal(lb, ob);
    assert_int_equal(st.entries, oc);
    assert_int_equal(st.bytes, ob);
    assert_int_equal(st.small_bytes + st.main_bytes, ob);
    assert_true(st.bytes <= st.capacity);
    assert_true(st.ghost_entries <= st.ghost_capacity);
}

/* A new object enters the small queue with no hits. */
static void test_new_object_enters_small(void **state)
{
    (void)state;
    struct fg_evict e;
    struct obj o[2];
    objs_init(o, 2, 10);
    init(&e, FG_EVICT_S3FIFO, 1000, 0);
    add(&e, &o[0], NULL);
    add(&e, &o[1], NULL);
    assert_int_equal(o[0].node.queue, FG_EVICT_SMALL);
    assert_int_equal(fg_evict_node_freq(&o[0].node), 0);
    assert_ptr_equal(e.small.head, &o[1].node); /* newest at the head */
    assert_ptr_equal(e.small.tail, &o[0].node);
    struct fg_evict_stats st;
    fg_evict_stats(&e, &st);
    assert_int_equal(st.small_entries, 2);
    assert_int_equal(st.small_bytes, 20);
    assert_int_equal(st.main_entries, 0);
    check_all(&e, o, 2);
    fg_evict_fini(&e);
}

/* The counter counts hits and saturates at 3. */
static void test_hit_saturates(void **state)
{
    (void)state;
    struct fg_evict e;
    struct obj o;
    objs_init(&o, 1, 10);
    init(&e, FG_EVICT_S3FIFO, 1000, 0);
    add(&e, &o, NULL);
    fg_evict_hit(&e, &o.node);
    fg_evict_hit(&e, &o.node);
    assert_int_equal(fg_evict_node_freq(&o.node), 2);
    for (int i = 0; i < 10; i++)
        fg_evict_hit(&e, &o.node);
    assert_int_equal(fg_evict_node_freq(&o.node), FG_EVICT_FREQ_MAX);
    assert_int_equal(o.node.queue, FG_EVICT_SMALL); /* a hit never moves a node */
    fg_evict_fini(&e);
}

/* Evicting from small: a hit object moves to main (with its counter cleared) instead of
 * leaving, and the next cold one is the victim and enters the ghost. */
static void test_accessed_small_object_moves_to_main(void **state)
{
    (void)state;
    struct fg_evict e;
    struct obj o[11];
    struct victims vs = {.n = 0};
    objs_init(o, 11, 10);
    init(&e, FG_EVICT_S3FIFO, 100, 0);
    for (int i = 0; i < 10; i++)
        add(&e, &o[i], &vs);
    assert_int_equal(vs.n, 0); /* main is empty: small may fill the whole cache */
    fg_evict_hit(&e, &o[0].node);
    fg_evict_hit(&e, &o[0].node);
    add(&e, &o[10], &vs);
    assert_int_equal(vs.n, 1);
    assert_ptr_equal(vs.v[0], &o[1]);
    assert_int_equal(o[0].node.queue, FG_EVICT_MAIN);
    assert_int_equal(fg_evict_node_freq(&o[0].node), 0);
    struct fg_evict_stats st;
    fg_evict_stats(&e, &st);
    assert_int_equal(st.promotions, 1);
    assert_int_equal(st.evictions, 1);
    assert_int_equal(st.ghost_entries, 1);
    assert_int_equal(st.main_entries, 1);
    check_all(&e, o, 11);
    fg_evict_fini(&e);
}

/* One-hit wonders leave through small, oldest first, while small is over its share; the
 * promoted objects stay in main until small is empty. */
static void test_one_hit_wonders_leave_from_small(void **state)
{
    (void)state;
    struct fg_evict e;
    struct obj o[10];
    objs_init(o, 10, 10);
    init(&e, FG_EVICT_S3FIFO, 100, 0); /* small's share: 10 bytes */
    for (int i = 0; i < 10; i++)
        add(&e, &o[i], NULL);
    for (int i = 0; i < 5; i++)
        fg_evict_hit(&e, &o[i].node);
    for (int i = 5; i < 10; i++)
        assert_ptr_equal(evict_one(&e), &o[i]);
    for (int i = 0; i < 5; i++)
        assert_int_equal(o[i].node.queue, FG_EVICT_MAIN);
    assert_int_equal(e.small.count, 0);
    assert_ptr_equal(evict_one(&e), &o[0]); /* then main, oldest promotion first */
    struct fg_evict_stats st;
    fg_evict_stats(&e, &st);
    assert_int_equal(st.ghost_entries, 5); /* the small victims only */
    assert_int_equal(st.promotions, 5);
    check_all(&e, o, 10);
    fg_evict_fini(&e);
}

/* An object evicted from small comes back straight into main, and the ghost forgets it
 * then. Objects removed, evicted from main, or never seen enter small. */
static void test_ghost_hit_enters_main(void **state)
{
    (void)state;
    struct fg_evict e;
    struct obj o[11];
    objs_init(o, 11, 10);
    init(&e, FG_EVICT_S3FIFO, 100, 0);
    for (int i = 0; i < 10; i++)
        add(&e, &o[i], NULL);
    fg_evict_hit(&e, &o[0].node);
    assert_ptr_equal(evict_one(&e), &o[1]); /* o[0] went to main */
    assert_ptr_equal(evict_one(&e), &o[2]);
    add(&e, &o[1], NULL);
    assert_int_equal(o[1].node.queue, FG_EVICT_MAIN);
    assert_ptr_equal(e.main.head, &o[1].node);
    struct fg_evict_stats st;
    fg_evict_stats(&e, &st);
    assert_int_equal(st.ghost_hits, 1);
    assert_int_equal(st.ghost_entries, 1); /* o[2] is left */
    add(&e, &o[10], NULL);                 /* never seen */
    assert_int_equal(o[10].node.queue, FG_EVICT_SMALL);

    /* main's victims do not enter the ghost */
    for (int i = 3; i <= 10; i++) {
        fg_evict_remove(&e, &o[i].node);
        o[i].cached = false;
    }
    assert_ptr_equal(evict_one(&e), &o[0]);
    fg_evict_stats(&e, &st);
    assert_int_equal(st.ghost_entries, 1);
    add(&e, &o[0], NULL);
    assert_int_equal(o[0].node.queue, FG_EVICT_SMALL);
    add(&e, &o[3], NULL); /* removed, not evicted */
    assert_int_equal(o[3].node.queue, FG_EVICT_SMALL);
    /* o[1]'s hash left the ghost when it came back */
    fg_evict_remove(&e, &o[1].node);
    o[1].cached = false;
    add(&e, &o[1], NULL);
    assert_int_equal(o[1].node.queue, FG_EVICT_SMALL);
    /* and o[2] is still remembered */
    add(&e, &o[2], NULL);
    assert_int_equal(o[2].node.queue, FG_EVICT_MAIN);
    fg_evict_stats(&e, &st);
    assert_int_equal(st.ghost_entries, 0);
    assert_int_equal(st.ghost_hits, 2);
    check_all(&e, o, 11);
    fg_evict_fini(&e);
}

/* The ghost remembers no more hashes than the cache holds objects: as the cache empties,
 * it keeps only the most recent victims. */
static void test_ghost_bounded_by_objects(void **state)
{
    (void)state;
    struct fg_evict e;
    struct obj o[10];
    objs_init(o, 10, 10);
    init(&e, FG_EVICT_S3FIFO, 100, 0);
    for (int i = 0; i < 10; i++)
        add(&e, &o[i], NULL);
    for (int i = 0; i < 10; i++) {
        assert_ptr_equal(evict_one(&e), &o[i]);
        struct fg_evict_stats st;
        fg_evict_stats(&e, &st);
        uint64_t left = 10 - (uint64_t)i - 1;
        assert_true(st.ghost_entries <= left + 1);
    }
    add(&e, &o[0], NULL);
    assert_int_equal(o[0].node.queue, FG_EVICT_SMALL); /* forgotten */
    add(&e, &o[9], NULL);
    assert_int_equal(o[9].node.queue, FG_EVICT_MAIN); /* the last victim */
    check_all(&e, o, 10);
    fg_evict_fini(&e);
}

/* Evicting from main: a hit object goes round again with one hit less; while small is
 * under its share, its cold tail stays. */
static void test_main_reinsert_decrements(void **state)
{
    (void)state;
    struct fg_evict e;
    struct obj o[4] = {{.id = 0, .charge = 40},
                       {.id = 1, .charge = 40},
                       {.id = 2, .charge = 10},
                       {.id = 3, .charge = 5}};
    struct victims vs = {.n = 0};
    init(&e, FG_EVICT_S3FIFO, 100, 0); /* small's share: 10 bytes */
    add(&e, &o[0], &vs);
    add(&e, &o[1], &vs);
    add(&e, &o[2], &vs);
    fg_evict_hit(&e, &o[0].node);
    fg_evict_hit(&e, &o[1].node);
    assert_true(fg_evict_make_room(&e, 20, on_evict, &vs));
    assert_int_equal(vs.n, 1); /* 0 and 1 promoted, 2 evicted */
    assert_ptr_equal(vs.v[0], &o[2]);
    assert_ptr_equal(e.main.tail, &o[0].node);
    for (int i = 0; i < 5; i++)
        fg_evict_hit(&e, &o[0].node); /* saturates at 3 */
    fg_evict_hit(&e, &o[1].node);
    add(&e, &o[3], &vs); /* 5 bytes in small: under its share */

    /* 0: 3→2 and round, 1: 1→0 and round, 0: 2→1 and round, 1 leaves */
    assert_ptr_equal(evict_one(&e), &o[1]);
    assert_int_equal(fg_evict_node_freq(&o[0].node), 1);
    struct fg_evict_stats st;
    fg_evict_stats(&e, &st);
    assert_int_equal(st.reinsertions, 3);
    assert_int_equal(o[3].node.queue, FG_EVICT_SMALL);
    /* 0: 1→0 and round, then 0 leaves; only then small's object */
    assert_ptr_equal(evict_one(&e), &o[0]);
    fg_evict_stats(&e, &st);
    assert_int_equal(st.reinsertions, 4);
    assert_ptr_equal(evict_one(&e), &o[3]);
    assert_null(fg_evict_one(&e));
    check_all(&e, o, 4);
    fg_evict_fini(&e);
}

/* make_room evicts until the bytes fit, and no more. */
static void test_make_room_evicts_just_enough(void **state)
{
    (void)state;
    struct fg_evict e;
    struct obj o[10];
    struct victims vs = {.n = 0};
    objs_init(o, 10, 10);
    init(&e, FG_EVICT_S3FIFO, 100, 0);
    for (int i = 0; i < 10; i++)
        add(&e, &o[i], &vs);
    assert_true(fg_evict_make_room(&e, 25, on_evict, &vs));
    assert_int_equal(vs.n, 3);
    assert_int_equal(fg_evict_bytes(&e), 70);
    assert_true(fg_evict_make_room(&e, 30, on_evict, &vs)); /* fits already */
    assert_int_equal(vs.n, 3);
    check_all(&e, o, 10);
    fg_evict_fini(&e);
}

/* An object larger than the whole cache is refused without evicting anything; one the
 * size of the cache empties it. */
static void test_too_big_object_refused(void **state)
{
    (void)state;
    for (int p = FG_EVICT_S3FIFO; p <= FG_EVICT_LRU; p++) {
        struct fg_evict e;
        struct obj o[8];
        struct victims vs = {.n = 0};
        objs_init(o, 8, 10);
        init(&e, p, 100, 0);
        for (int i = 0; i < 8; i++)
            add(&e, &o[i], &vs);
        assert_false(fg_evict_make_room(&e, 101, on_evict, &vs));
        assert_false(fg_evict_make_room(&e, UINT64_MAX, on_evict, &vs));
        assert_int_equal(vs.n, 0);
        assert_int_equal(fg_evict_bytes(&e), 80);
        struct fg_evict_stats st;
        fg_evict_stats(&e, &st);
        assert_int_equal(st.oversize, 2);
        assert_int_equal(st.evictions, 0);
        assert_true(fg_evict_make_room(&e, 100, on_evict, &vs));
        assert_int_equal(vs.n, 8);
        assert_int_equal(fg_evict_bytes(&e), 0);
        check_all(&e, o, 8);
        fg_evict_fini(&e);
    }
}

/* remove unlinks from either queue at the head, the middle and the tail, keeps the lists
 * whole, and does not feed the ghost. */
static void test_remove_from_each_queue(void **state)
{
    (void)state;
    struct fg_evict e;
    struct obj o[10];
    objs_init(o, 10, 10);
    init(&e, FG_EVICT_S3FIFO, 100, 0);
    for (int i = 0; i < 10; i++)
        add(&e, &o[i], NULL);
    for (int i = 0; i < 4; i++)
        fg_evict_hit(&e, &o[i].node);
    for (int i = 4; i < 6; i++) /* 0..3 to main, 4 and 5 out */
        assert_ptr_equal(evict_one(&e), &o[i]);
    assert_int_equal(e.main.count, 4);
    /* main: head 3 2 1 0 tail; small: head 9 8 7 6 tail */
    int order[] = {0, 3, 2, 9, 6, 8};
    for (size_t k = 0; k < FG_ARRAY_LEN(order); k++) {
        struct obj *x = &o[order[k]];
        fg_evict_remove(&e, &x->node);
        x->cached = false;
        assert_false(fg_evict_linked(&x->node));
        check_all(&e, o, 10);
    }
    assert_int_equal(e.main.count, 1);
    assert_ptr_equal(e.main.head, &o[1].node);
    assert_ptr_equal(e.small.head, &o[7].node);
    assert_ptr_equal(e.small.tail, &o[7].node);
    struct fg_evict_stats st;
    fg_evict_stats(&e, &st);
    assert_int_equal(st.removals, 6);
    assert_int_equal(st.evictions, 2);
    assert_int_equal(st.ghost_entries, 2);
    add(&e, &o[9], NULL); /* removed from small: new again */
    assert_int_equal(o[9].node.queue, FG_EVICT_SMALL);
    add(&e, &o[4], NULL); /* evicted from small: remembered */
    assert_int_equal(o[4].node.queue, FG_EVICT_MAIN);
    check_all(&e, o, 10);
    fg_evict_fini(&e);
}

/* LRU: hits move to the head, the least recently used leaves first, no small queue, no
 * ghost. */
static void test_lru_order(void **state)
{
    (void)state;
    struct fg_evict e;
    struct obj o[5];
    objs_init(o, 5, 10);
    init(&e, FG_EVICT_LRU, 100, 0);
    for (int i = 0; i < 4; i++)
        add(&e, &o[i], NULL);
    fg_evict_hit(&e, &o[1].node);
    fg_evict_hit(&e, &o[0].node);
    fg_evict_hit(&e, &o[0].node); /* already at the head */
    assert_ptr_equal(e.main.head, &o[0].node);
    assert_ptr_equal(evict_one(&e), &o[2]);
    fg_evict_hit(&e, &o[2].node); /* evicted: nothing happens */
    assert_false(fg_evict_linked(&o[2].node));
    add(&e, &o[4], NULL);
    fg_evict_remove(&e, &o[1].node);
    o[1].cached = false;
    fg_evict_hit(&e, &o[1].node);
    check_all(&e, o, 5);
    assert_ptr_equal(evict_one(&e), &o[3]);
    assert_ptr_equal(evict_one(&e), &o[0]);
    assert_ptr_equal(evict_one(&e), &o[4]);
    assert_null(fg_evict_one(&e));
    struct fg_evict_stats st;
    fg_evict_stats(&e, &st);
    assert_int_equal(st.small_entries + st.ghost_entries + st.ghost_capacity, 0);
    assert_int_equal(st.evictions, 4);
    fg_evict_fini(&e);
}

/* A smaller capacity (reload) is reached by make_room(0). */
static void test_shrink_capacity(void **state)
{
    (void)state;
    struct fg_evict e;
    struct obj o[10];
    objs_init(o, 10, 10);
    init(&e, FG_EVICT_S3FIFO, 100, 0);
    for (int i = 0; i < 10; i++)
        add(&e, &o[i], NULL);
    fg_evict_set_capacity(&e, 45);
    assert_true(fg_evict_make_room(&e, 0, on_evict, NULL));
    assert_int_equal(fg_evict_bytes(&e), 40);
    assert_false(o[5].cached);
    assert_true(o[6].cached);
    check_all(&e, o, 10);
    fg_evict_fini(&e);
}

static uint64_t rng_state;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The ghost against a model: a FIFO of 64 ring positions, a hit leaving its position
 * stale. With no hits and small over its share, every victim is small's oldest object. */
#define GM_RING 64
#define GM_KEYS 3000
static void test_ghost_matches_model(void **state)
{
    (void)state;
    static struct obj o[GM_KEYS];
    struct fg_evict e;
    uint64_t small_fifo[GM_KEYS + 2000], sf_head = 0, sf_tail = 0; /* ids, oldest at head */
    struct {
        uint64_t id;
        bool live;
    } ring[GM_RING];
    unsigned ring_used = 0, ring_first = 0;
    uint64_t history[GM_KEYS], nhist = 0, next_id = 0, ghost_hits = 0;

    objs_init(o, GM_KEYS, 1);
    init(&e, FG_EVICT_S3FIFO, 1000, GM_RING);
    rng_state = 42;
    for (; next_id < 1000; next_id++) {
        add(&e, &o[next_id], NULL);
        small_fifo[sf_tail++] = next_id;
    }
    for (int op = 0; op < 1800; op++) {
        struct obj *x;
        if (rnd() % 10 < 7 || nhist == 0) {
            x = &o[next_id++];
        } else { /* an evicted key, recent ones more often */
            uint64_t back = rnd() % (rnd() % 2 ? 40 : 300);
            x = &o[history[nhist - 1 - back % nhist]];
            if (x->cached)
                continue;
        }
        struct fg_evict_node *v = fg_evict_one(&e);
        assert_non_null(v);
        assert_int_equal(obj_of(v)->id, small_fifo[sf_head++]);
        obj_of(v)->cached = false;
        history[nhist++] = obj_of(v)->id;
        if (ring_used == GM_RING) {
            ring_first = (ring_first + 1) % GM_RING;
            ring_used--;
        }
        unsigned slot = (ring_first + ring_used++) % GM_RING;
        ring[slot].id = obj_of(v)->id;
        ring[slot].live = true;

        bool expect_main = false;
        for (unsigned k = 0; k < ring_used; k++) {
            unsigned pos = (ring_first + k) % GM_RING;
            if (ring[pos].live && ring[pos].id == x->id) {
                ring[pos].live = false;
                expect_main = true;
            }
        }
        fg_evict_insert(&e, &x->node, hash_of(x->id), 1);
        x->cached = true;
        assert_int_equal(x->node.queue, expect_main ? FG_EVICT_MAIN : FG_EVICT_SMALL);
        if (expect_main)
            ghost_hits++;
        else
            small_fifo[sf_tail++] = x->id;
        unsigned live = 0;
        for (unsigned k = 0; k < ring_used; k++)
            live += ring[(ring_first + k) % GM_RING].live;
        struct fg_evict_stats st;
        fg_evict_stats(&e, &st);
        assert_int_equal(st.ghost_entries, live);
        assert_true(e.small.bytes >= e.small_target); /* the model's premise */
    }
    assert_true(ghost_hits > 100); /* the model was exercised */
    check_all(&e, o, GM_KEYS);
    fg_evict_fini(&e);
}

/* Random inserts, hits, removals and evictions of objects from 1 byte to larger than the
 * cache: after every step the accounting matches the objects and the capacity holds. */
#define RA_OBJS 400
static void random_accounting(enum fg_evict_policy p)
{
    static struct obj o[RA_OBJS];
    struct fg_evict e;
    const uint64_t cap = 200000;
    rng_state = 7 + (uint64_t)p;
    for (size_t i = 0; i < RA_OBJS; i++) {
        uint64_t r = rnd() % 100;
        uint64_t charge = r < 80 ? 1 + rnd() % 4000 : r < 98 ? rnd() % 60000 : cap + rnd() % 9;
        o[i] = (struct obj){.id = i, .charge = charge};
    }
    init(&e, p, cap, 32);
    uint64_t evicted = 0, refused = 0;
    for (int step = 0; step < 20000; step++) {
        struct obj *x = &o[rnd() % 50 < 40 ? rnd() % 60 : rnd() % RA_OBJS]; /* some hot */
        uint64_t r = rnd() % 100;
        if (r < 80) {
            if (x->cached) {
                fg_evict_hit(&e, &x->node);
            } else if (fg_evict_make_room(&e, x->charge, on_evict, NULL)) {
                fg_evict_insert(&e, &x->node, hash_of(x->id), x->charge);
                x->cached = true;
            } else {
                assert_true(x->charge > cap);
                refused++;
            }
        } else if (r < 92) {
            if (x->cached) {
                fg_evict_remove(&e, &x->node);
                x->cached = false;
            }
        } else {
            struct obj *v = evict_one(&e);
            assert_true(v != NULL || fg_evict_bytes(&e) == 0);
        }
        check_all(&e, o, RA_OBJS);
    }
    struct fg_evict_stats st;
    fg_evict_stats(&e, &st);
    evicted = st.evictions;
    assert_true(evicted > 1000 && refused > 0 && st.oversize == refused);
    if (p == FG_EVICT_S3FIFO)
        assert_true(st.promotions > 0 && st.reinsertions > 0 && st.ghost_hits > 0);
    fg_evict_fini(&e);
}

static void test_random_accounting_s3fifo(void **state)
{
    (void)state;
    random_accounting(FG_EVICT_S3FIFO);
}

static void test_random_accounting_lru(void **state)
{
    (void)state;
    random_accounting(FG_EVICT_LRU);
}

/* The ghost's size follows the config, with a floor, and its memory is what evict.h
 * says: 16 to 24 bytes an entry. */
static void test_ghost_sizing(void **state)
{
    (void)state;
    struct fg_evict e;
    struct fg_evict_stats st;
    init(&e, FG_EVICT_S3FIFO, 1024ull << 20, 0);
    fg_evict_stats(&e, &st);
    assert_int_equal(st.ghost_capacity, (1024ull << 20) / FG_EVICT_GHOST_OBJECT_ESTIMATE);
    assert_true(st.ghost_memory >= 16 * st.ghost_capacity);
    assert_true(st.ghost_memory <= 24 * st.ghost_capacity);
    fg_evict_fini(&e);
    init(&e, FG_EVICT_S3FIFO, 1000, 0);
    fg_evict_stats(&e, &st);
    assert_int_equal(st.ghost_capacity, FG_EVICT_GHOST_MIN);
    fg_evict_fini(&e);
    init(&e, FG_EVICT_S3FIFO, 1000, 100);
    fg_evict_stats(&e, &st);
    assert_int_equal(st.ghost_capacity, 100);
    assert_int_equal(st.ghost_memory, 100 * 8 + 256 * 4);
    fg_evict_fini(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_object_enters_small),
        cmocka_unit_test(test_hit_saturates),
        cmocka_unit_test(test_accessed_small_object_moves_to_main),
        cmocka_unit_test(test_one_hit_wonders_leave_from_small),
        cmocka_unit_test(test_ghost_hit_enters_main),
        cmocka_unit_test(test_ghost_bounded_by_objects),
        cmocka_unit_test(test_main_reinsert_decrements),
        cmocka_unit_test(test_make_room_evicts_just_enough),
        cmocka_unit_test(test_too_big_object_refused),
        cmocka_unit_test(test_remove_from_each_queue),
        cmocka_unit_test(test_lru_order),
        cmocka_unit_test(test_shrink_capacity),
        cmocka_unit_test(test_ghost_matches_model),
        cmocka_unit_test(test_random_accounting_s3fifo),
        cmocka_unit_test(test_random_accounting_lru),
        cmocka_unit_test(test_ghost_sizing),
    };
    return cmocka_run_group_tests_name("cache eviction (S3-FIFO, LRU)", tests, NULL, NULL);
}
