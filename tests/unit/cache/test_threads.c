/*
 * test_threads.c — the store shared by worker threads, as flashgate shares it: several
 * threads, each with its own event_base and notifier, look the same few keys up at once,
 * fill what they miss (some fills pass, abort or break off), stream what they hit while
 * another thread is still filling it, wait on each other's fills, purge, and evict under a
 * small memory bound. Every body read must be whole and right for its key. Built with
 * --enable-tsan (scripts/test.sh) this is where ThreadSanitizer sees the shard locks, the
 * eviction lock, the lock-free chunk list, the reference counts and the notifiers race.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "cache/cache.h"

#define THREADS    4
#define ROUNDS     1500
#define KEYS       12
#define BODY_MAX   (40 * 1024)
#define HEAD_BYTES "HTTP/1.1 200 OK\r\nContent-Type: text/plain"

struct shared {
    struct fg_cache *c;
    pthread_barrier_t start;
};

struct worker {
    struct shared *sh;
    unsigned id;
    uint64_t rng;
    struct event_base *base;
    struct fg_cache_notifier *notifier;
    int woken;
    /* results */
    unsigned fills, hits, waits, passes, purges, bad;
    char why[160];
};

static uint64_t next(struct worker *w)
{
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return w->rng;
}

/* Key k's body: its length and bytes depend on k only, so any reader can check it. */
static size_t body_len(unsigned k)
{
    return 100 + (size_t)k * 3301 % BODY_MAX;
}

static char body_byte(unsigned k, size_t i)
{
    return (char)('a' + (k * 7 + i) % 26);
}

static void key_of(unsigned k, char *out, size_t cap)
{
    snprintf(out, cap, "h/key%u", k);
}

static void woke(struct fg_cache_waiter *wt)
{
    ((struct worker *)wt->arg)->woken++;
}

/* Turn this thread's loop until its notifier ran a callback (woken moved past since), or
 * ten seconds went by on a very busy machine. Each turn waits for an event: no spinning. */
static bool wait_woken(struct worker *w, int since)
{
    time_t until = time(NULL) + 10;
    while (w->woken == since && time(NULL) < until) {
        struct timeval tick = {0, 50 * 1000};
        event_base_loopexit(w->base, &tick);
        event_base_loop(w->base, EVLOOP_ONCE);
    }
    return w->woken != since;
}

static void note_bad(struct worker *w, const char *why, unsigned k)
{
    if (w->bad++ == 0)
        snprintf(w->why, sizeof(w->why), "thread %u, key %u: %s", w->id, k, why);
}

/* Fill k: head, the body in pieces (the other threads read it meanwhile), then done — or,
 * now and then, one of the other endings. */
static void fill(struct worker *w, unsigned k, struct fg_cache_obj *obj)
{
    unsigned how = (unsigned)(next(w) % 16);
    for (unsigned i = 0; i < 1 + how % 4; i++)
        sched_yield(); /* the origin's think time: others find the key busy and wait */
    if (how == 0) {
        fg_cache_fill_abort(obj, 502);
        return;
    }
    if (how == 1) {
        fg_cache_fill_pass(obj, (int64_t)time(NULL) * 1000, 0);
        return;
    }
    struct fg_cache_meta m;
    fg_cache_meta_init(&m);
    m.status = 200;
    m.lifetime = 1 + (unsigned)(next(w) % 3);
    m.response_time_ms = (int64_t)time(NULL) * 1000;
    size_t len = body_len(k);
    if (next(w) % 2)
        m.content_length = len;
    if (!fg_cache_fill_head(obj, &m, HEAD_BYTES, strlen(HEAD_BYTES), NULL, 0, NULL, 0)) {
        fg_cache_fill_pass(obj, m.response_time_ms, 0);
        return;
    }
    char buf[4096];
    size_t off = 0;
    while (off < len) {
        size_t n = 1 + (size_t)(next(w) % sizeof(buf));
        if (n > len - off)
            n = len - off;
        for (size_t i = 0; i < n; i++)
            buf[i] = body_byte(k, off + i);
        fg_cache_fill_append(obj, buf, n);
        off += n;
        if (next(w) % 4 == 0)
            sched_yield(); /* let readers in mid-body */
        if (how == 2 && off > len / 2) {
            fg_cache_fill_done(obj, false); /* the origin broke off */
            return;
        }
    }
    fg_cache_fill_done(obj, true);
    w->fills++;
}

/* Read obj's whole body through a reader, waiting on this thread's notifier while another
 * thread fills it, and check every byte. */
static void read_all(struct worker *w, unsigned k, struct fg_cache_obj *obj)
{
    /* What serving looks at first, while the object may still be filling elsewhere. */
    uint64_t announced = fg_cache_obj_length(obj);
    if (announced != FG_CACHE_NO_VALUE && announced != body_len(k))
        note_bad(w, "an announced length that is not the body's", k);
    if (fg_cache_obj_meta(obj)->status != 200)
        note_bad(w, "a served object without its status", k);
    struct fg_cache_reader r;
    struct evbuffer *out = evbuffer_new();
    fg_cache_reader_start(&r, obj, w->notifier, woke, w);
    enum fg_cache_read_status st = FG_CACHE_READ_MORE;
    uint64_t total = 0, added;
    for (;;) {
        int since = w->woken;
        st = fg_cache_reader_read(&r, out, false, &added);
        total += added;
        if (st != FG_CACHE_READ_MORE || !wait_woken(w, since))
            break;
    }
    fg_cache_reader_stop(&r);
    size_t n = evbuffer_get_length(out);
    const char *p = (const char *)evbuffer_pullup(out, -1);
    if (st == FG_CACHE_READ_END) {
        if (n != body_len(k) || total != n)
            note_bad(w, "a complete body of the wrong length", k);
        for (size_t i = 0; i < n && w->bad == 0; i++)
            if (p[i] != body_byte(k, i))
                note_bad(w, "a wrong byte in a body", k);
        uint64_t length = fg_cache_obj_length(obj);
        if (length != n)
            note_bad(w, "a complete object whose length disagrees with its body", k);
        w->hits++;
    } else if (st == FG_CACHE_READ_FAILED) {
        for (size_t i = 0; i < n && w->bad == 0; i++)
            if (p[i] != body_byte(k, i))
                note_bad(w, "a wrong byte before a break", k);
    } else {
        note_bad(w, "a body that never ended", k);
    }
    evbuffer_free(out);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    w->base = event_base_new();
    w->notifier = fg_cache_notifier_new(w->base);
    struct fg_cache_waiter wt = {.cb = woke, .arg = w, .notifier = w->notifier};
    pthread_barrier_wait(&w->sh->start);
    for (int round = 0; round < ROUNDS && w->bad == 0; round++) {
        unsigned k = (unsigned)(next(w) % KEYS);
        char key[32];
        key_of(k, key, sizeof(key));
        if (next(w) % 64 == 0) {
            fg_cache_purge(w->sh->c, key, strlen(key), next(w) % 2);
            w->purges++;
            continue;
        }
        struct fg_cache_request rq = {.key = key,
                                      .key_len = strlen(key),
                                      .hash = fg_cache_key_hash(key, strlen(key)),
                                      .now_ms = (int64_t)time(NULL) * 1000};
        struct fg_cache_obj *obj = NULL, *busy = NULL;
        w->woken = 0;
        enum fg_cache_verdict v = fg_cache_lookup(w->sh->c, &rq, &wt, &obj, &busy);
        switch (v) {
        case FG_CACHE_V_HIT:
            read_all(w, k, obj);
            break;
        case FG_CACHE_V_STALE:
            if (busy != NULL)
                fill(w, k, busy);
            read_all(w, k, obj);
            break;
        case FG_CACHE_V_FILL:
            fill(w, k, busy);
            break;
        case FG_CACHE_V_WAIT:
            /* Another thread fills it: its head (or its end) wakes us here. */
            if (!wait_woken(w, 0))
                note_bad(w, "a waiter never woken", k);
            fg_cache_waiter_cancel(&wt);
            w->waits++;
            if (fg_cache_obj_state(obj) == FG_CACHE_COMPLETE ||
                fg_cache_obj_state(obj) == FG_CACHE_FILLING)
                read_all(w, k, obj);
            break;
        case FG_CACHE_V_PASS:
            w->passes++;
            break;
        }
        fg_cache_waiter_cancel(&wt);
        fg_cache_obj_unref(obj);
        fg_cache_obj_unref(busy);
    }
    fg_cache_waiter_cancel(&wt);
    fg_cache_notifier_free(w->notifier);
    event_base_free(w->base);
    return NULL;
}

static void test_threads_share_the_store(void **state)
{
    (void)state;
    struct fg_cache_limits lim = {.memory = 128 * 1024, .max_object = 64 * 1024};
    struct shared sh = {.c = fg_cache_new("threads", &lim)};
    assert_non_null(sh.c);
    pthread_barrier_init(&sh.start, NULL, THREADS);
    struct worker w[THREADS];
    pthread_t th[THREADS];
    memset(w, 0, sizeof(w));
    for (unsigned i = 0; i < THREADS; i++) {
        w[i].sh = &sh;
        w[i].id = i;
        w[i].rng = 0x9e3779b97f4a7c15ull * (i + 1);
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
    }
    unsigned hits = 0, fills = 0, waits = 0;
    for (unsigned i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        if (w[i].bad)
            fail_msg("%s", w[i].why);
        hits += w[i].hits;
        fills += w[i].fills;
        waits += w[i].waits;
    }
    /* The mix really happened: bodies served, filled, and waited for across threads. */
    assert_true(hits > 100);
    assert_true(fills > 50);
    assert_true(waits > 0);
    struct fg_cache_stats st;
    fg_cache_get_stats(sh.c, &st);
    assert_true(st.evictions > 0); /* 128 KiB for a dozen keys of up to 40 KiB */
    pthread_barrier_destroy(&sh.start);
    fg_cache_free(sh.c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_threads_share_the_store)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
