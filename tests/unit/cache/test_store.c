/* test_store.c — the shared store driven directly, no network: coalescing on a busy
 * object, the fill lifecycle and its body chunks, waiters woken on their own event_base
 * (and thread), freshness verdicts, hit-for-miss, aborts, Vary variants, 304 refreshes,
 * purge, the memory bound, oversized objects and reference counts. Each test gets its own
 * event_base, notifier and store, and gives back every reference it took, so that the
 * sanitizer build (--enable-sanitizers) sees no leak and no use after free. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pthread.h>
#include <time.h>

#include <cmocka.h>

#include <event2/buffer.h>

#include "cache/internal.h" /* a white-box test of the store: it reads the chunk list */

#define KIB 1024u
#define MIB (1024u * 1024u)

static const char HEAD[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain";

/* Wall seconds every test measures its times from. */
static int64_t t0;

static int64_t at_ms(int64_t seconds_after_t0)
{
    return (t0 + seconds_after_t0) * 1000;
}

/* ---- environment --------------------------------------------------------------------- */

struct env {
    struct event_base *base;
    struct fg_cache_notifier *notifier;
    struct fg_cache *c;
};

static struct fg_cache *new_cache(uint64_t memory, uint64_t max_object)
{
    struct fg_cache_limits lim = {.memory = memory, .max_object = max_object};
    struct fg_cache *c = fg_cache_new("test", &lim);
    assert_non_null(c);
    return c;
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    e->base = event_base_new();
    assert_non_null(e->base);
    e->notifier = fg_cache_notifier_new(e->base);
    assert_non_null(e->notifier);
    e->c = new_cache(64 * MIB, 8 * MIB);
    t0 = (int64_t)time(NULL);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    fg_cache_free(e->c);
    fg_cache_notifier_free(e->notifier);
    event_base_free(e->base);
    free(e);
    return 0;
}

/* Replace the test's store by one with other limits. */
static void env_limits(struct env *e, uint64_t memory, uint64_t max_object)
{
    fg_cache_free(e->c);
    e->c = new_cache(memory, max_object);
}

static struct fg_cache_request req_h(const char *key, int64_t now_ms,
                                     const struct fg_http_header *h, size_t n)
{
    size_t len = strlen(key);
    return (struct fg_cache_request){.key = key,
                                     .key_len = len,
                                     .hash = fg_cache_key_hash(key, len),
                                     .headers = h,
                                     .n_headers = n,
                                     .now_ms = now_ms};
}

static struct fg_cache_request req(const char *key, int64_t now_ms)
{
    return req_h(key, now_ms, NULL, 0);
}

/* The freshness fields of a 200 received at t0. */
static void src_init(struct fg_cache_meta *s, uint64_t content_length, uint64_t lifetime)
{
    memset(s, 0, sizeof(*s));
    s->status = 200;
    s->content_length = content_length;
    s->lifetime = lifetime;
    s->response_time_ms = t0 * 1000;
    s->last_modified = -1;
}

static void pattern(char *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)((i * 31 + seed) & 0xff);
}

/* Copy the body readable now (first .. next, len of each) into out; the chunk count to
 * *chunks when not NULL. */
static size_t read_body(struct fg_cache_obj *o, char *out, size_t cap, size_t *chunks)
{
    size_t n = 0, k = 0;
    for (struct fg_cache_chunk *ch = o->first; ch != NULL; ch = atomic_load(&ch->next)) {
        size_t len = atomic_load(&ch->len);
        assert_true(n + len <= cap);
        memcpy(out + n, ch->data, len);
        n += len;
        k++;
    }
    if (chunks != NULL)
        *chunks = k;
    return n;
}

static int state_of(struct fg_cache_obj *o)
{
    return atomic_load(&o->state);
}

static unsigned refs_of(struct fg_cache_obj *o)
{
    return atomic_load(&o->refs);
}

/* A miss on rq, filled with body and completed; every reference is given back. */
static void store(struct env *e, const struct fg_cache_request *rq, const struct fg_cache_meta *src,
                  const char *vary_names, const char *vary_values, const char *body, size_t len)
{
    struct fg_cache_obj *obj, *fill;
    assert_int_equal(fg_cache_lookup(e->c, rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    assert_non_null(fill);
    assert_true(fg_cache_fill_head(fill, src, HEAD, strlen(HEAD), vary_names,
                                   vary_names ? strlen(vary_names) : 0, vary_values,
                                   vary_values ? strlen(vary_values) : 0));
    assert_true(fg_cache_fill_append(fill, body, len));
    fg_cache_fill_done(fill, true);
    fg_cache_obj_unref(obj);
    fg_cache_obj_unref(fill);
}

/* store() with a fresh 200 of the given length and lifetime and no Vary. */
static void store_simple(struct env *e, const char *key, uint64_t lifetime, const char *body,
                         size_t len)
{
    struct fg_cache_meta src;
    src_init(&src, len, lifetime);
    struct fg_cache_request rq = req(key, at_ms(0));
    store(e, &rq, &src, NULL, NULL, body, len);
}

/* Look up expecting a hit; the object (a reference the caller drops). */
static struct fg_cache_obj *hit(struct env *e, const struct fg_cache_request *rq)
{
    struct fg_cache_obj *obj, *fill;
    assert_int_equal(fg_cache_lookup(e->c, rq, NULL, &obj, &fill), FG_CACHE_V_HIT);
    assert_non_null(obj);
    assert_null(fill);
    return obj;
}

/* Look up expecting a miss; the new busy object is aborted, the stale one (if any) and
 * the busy one are given back. */
static void expect_fill(struct env *e, const struct fg_cache_request *rq)
{
    struct fg_cache_obj *obj, *fill;
    assert_int_equal(fg_cache_lookup(e->c, rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    assert_non_null(fill);
    fg_cache_fill_abort(fill, 502);
    fg_cache_obj_unref(fill);
    fg_cache_obj_unref(obj);
}

/* ---- waiters ------------------------------------------------------------------------- */

struct probe {
    struct fg_cache_waiter w;
    int calls;
    int finals;        /* calls that saw a final state */
    int state;         /* the object's state at the last call */
    uint64_t body_len; /* bytes appended at the last call */
    pthread_t thread;  /* where the last call ran */
    char *copy;        /* when set: the body is copied here once COMPLETE */
    size_t copy_cap, copied;
};

static void probe_cb(struct fg_cache_waiter *w)
{
    struct probe *p = w->arg;
    p->calls++;
    p->thread = pthread_self();
    p->state = atomic_load(&w->obj->state);
    p->body_len = atomic_load(&w->obj->body_len);
    if (p->state != FG_CACHE_BUSY && p->state != FG_CACHE_FILLING)
        p->finals++;
    if (p->state == FG_CACHE_COMPLETE && p->copy != NULL) {
        /* no cmocka assertion off the main thread: just stop at the buffer's end */
        size_t n = 0;
        for (struct fg_cache_chunk *ch = w->obj->first; ch != NULL; ch = atomic_load(&ch->next)) {
            size_t len = atomic_load(&ch->len);
            if (n + len > p->copy_cap)
                break;
            memcpy(p->copy + n, ch->data, len);
            n += len;
        }
        p->copied = n;
    }
}

static void probe_init(struct probe *p, struct fg_cache_notifier *n)
{
    memset(p, 0, sizeof(*p));
    p->w.cb = probe_cb;
    p->w.arg = p;
    p->w.notifier = n;
    p->state = -1;
}

/* Run base without blocking until *counter reaches want, for about two seconds at most. */
static bool run_until(struct event_base *base, const int *counter, int want)
{
    for (int i = 0; i < 2000; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        if (*counter >= want)
            return true;
        struct timespec ms = {0, 1000 * 1000};
        nanosleep(&ms, NULL);
    }
    return false;
}

/* A few turns of base, for showing that nothing happens. */
static void run_turns(struct event_base *base, int turns)
{
    for (int i = 0; i < turns; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        struct timespec ms = {0, 1000 * 1000};
        nanosleep(&ms, NULL);
    }
}

/* ---- lookup on a miss: coalescing ---------------------------------------------------- */

static void test_lookup_empty_gives_fill_with_busy_object(void **state)
{
    struct env *e = *state;
    struct fg_cache_request rq = req("h/a", at_ms(0));
    struct fg_cache_obj *obj, *fill;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    assert_null(obj);
    assert_non_null(fill);
    assert_int_equal(fill->magic, FG_CACHE_OBJ_MAGIC);
    assert_int_equal(state_of(fill), FG_CACHE_BUSY);
    assert_int_equal(fill->key_len, 3);
    assert_memory_equal(fill->key, "h/a", 3);
    fg_cache_fill_abort(fill, 502);
    fg_cache_obj_unref(fill);
}

static void test_lookup_busy_with_waiter_waits_on_same_object(void **state)
{
    struct env *e = *state;
    struct fg_cache_request rq = req("h/a", at_ms(0));
    struct fg_cache_obj *obj, *fill, *obj2, *fill2;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    struct probe p;
    probe_init(&p, e->notifier);
    assert_int_equal(fg_cache_lookup(e->c, &rq, &p.w, &obj2, &fill2), FG_CACHE_V_WAIT);
    assert_ptr_equal(obj2, fill);
    assert_null(fill2);
    assert_ptr_equal(p.w.obj, fill);
    fg_cache_waiter_cancel(&p.w);
    fg_cache_obj_unref(obj2);
    fg_cache_fill_abort(fill, 502);
    fg_cache_obj_unref(fill);
}

/* A lookup that does not want to wait (pre-warm) is sent to the origin on its own. */
static void test_lookup_busy_without_waiter_passes(void **state)
{
    struct env *e = *state;
    struct fg_cache_request rq = req("h/a", at_ms(0));
    struct fg_cache_obj *obj, *fill, *obj2, *fill2;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj2, &fill2), FG_CACHE_V_PASS);
    assert_null(obj2);
    assert_null(fill2);
    fg_cache_fill_abort(fill, 502);
    fg_cache_obj_unref(fill);
}

/* ---- the fill lifecycle -------------------------------------------------------------- */

static void test_fill_wakes_waiter_on_its_base(void **state)
{
    struct env *e = *state;
    struct fg_cache_request rq = req("h/a", at_ms(0));
    struct fg_cache_obj *obj, *fill, *fill2;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    struct probe p;
    probe_init(&p, e->notifier);
    assert_int_equal(fg_cache_lookup(e->c, &rq, &p.w, &obj, &fill2), FG_CACHE_V_WAIT);

    struct fg_cache_meta src;
    src_init(&src, FG_CACHE_NO_VALUE, 60);
    assert_true(fg_cache_fill_head(fill, &src, HEAD, strlen(HEAD), NULL, 0, NULL, 0));
    assert_int_equal(p.calls, 0); /* never called inline, only from its base */
    assert_true(run_until(e->base, &p.calls, 1));
    assert_int_equal(p.state, FG_CACHE_FILLING);
    assert_true(pthread_equal(p.thread, pthread_self()));

    assert_true(fg_cache_fill_append(fill, "hello", 5));
    assert_true(run_until(e->base, &p.calls, 2));
    assert_int_equal(p.body_len, 5);

    fg_cache_fill_done(fill, true);
    assert_true(run_until(e->base, &p.finals, 1));
    assert_int_equal(p.state, FG_CACHE_COMPLETE);

    fg_cache_waiter_cancel(&p.w);
    fg_cache_obj_unref(obj);
    fg_cache_obj_unref(fill);
}

/* Changes that happen before the waiter's base runs cost it one call, not one each. */
static void test_waiter_queued_once_for_many_changes(void **state)
{
    struct env *e = *state;
    struct fg_cache_request rq = req("h/a", at_ms(0));
    struct fg_cache_obj *obj, *fill, *fill2;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    struct probe p;
    probe_init(&p, e->notifier);
    assert_int_equal(fg_cache_lookup(e->c, &rq, &p.w, &obj, &fill2), FG_CACHE_V_WAIT);
    struct fg_cache_meta src;
    src_init(&src, FG_CACHE_NO_VALUE, 60);
    assert_true(fg_cache_fill_head(fill, &src, HEAD, strlen(HEAD), NULL, 0, NULL, 0));
    for (int i = 0; i < 5; i++)
        assert_true(fg_cache_fill_append(fill, "abc", 3));
    assert_true(run_until(e->base, &p.calls, 1));
    run_turns(e->base, 5);
    assert_int_equal(p.calls, 1);
    assert_int_equal(p.body_len, 15);
    fg_cache_waiter_cancel(&p.w);
    fg_cache_fill_done(fill, true);
    fg_cache_obj_unref(obj);
    fg_cache_obj_unref(fill);
}

static void test_waiter_cancel_drops_queued_callback(void **state)
{
    struct env *e = *state;
    struct fg_cache_request rq = req("h/a", at_ms(0));
    struct fg_cache_obj *obj, *fill, *fill2;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    struct probe p;
    probe_init(&p, e->notifier);
    assert_int_equal(fg_cache_lookup(e->c, &rq, &p.w, &obj, &fill2), FG_CACHE_V_WAIT);
    struct fg_cache_meta src;
    src_init(&src, FG_CACHE_NO_VALUE, 60);
    assert_true(fg_cache_fill_head(fill, &src, HEAD, strlen(HEAD), NULL, 0, NULL, 0));
    assert_true(p.w.queued); /* on the notifier's queue, its callback not run yet */
    fg_cache_waiter_cancel(&p.w);
    assert_false(p.w.queued);
    assert_null(p.w.obj);
    assert_true(fg_cache_fill_append(fill, "x", 1)); /* no longer registered: not queued */
    fg_cache_fill_done(fill, true);
    run_turns(e->base, 10);
    assert_int_equal(p.calls, 0);
    fg_cache_obj_unref(obj);
    fg_cache_obj_unref(fill);
}

/* Cancelling one of several queued waiters leaves the others' callbacks alone. */
static void test_waiter_cancel_keeps_other_waiters(void **state)
{
    struct env *e = *state;
    struct fg_cache_request rq = req("h/a", at_ms(0));
    struct fg_cache_obj *obj, *fill, *fill2, *o[3];
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    struct probe p[3];
    for (int i = 0; i < 3; i++) {
        probe_init(&p[i], e->notifier);
        assert_int_equal(fg_cache_lookup(e->c, &rq, &p[i].w, &o[i], &fill2), FG_CACHE_V_WAIT);
    }
    fg_cache_fill_abort(fill, 502);
    fg_cache_waiter_cancel(&p[1].w);
    assert_true(run_until(e->base, &p[2].calls, 1));
    assert_true(run_until(e->base, &p[0].calls, 1));
    run_turns(e->base, 3);
    assert_int_equal(p[0].calls, 1);
    assert_int_equal(p[1].calls, 0);
    assert_int_equal(p[2].calls, 1);
    for (int i = 0; i < 3; i++) {
        fg_cache_waiter_cancel(&p[i].w);
        fg_cache_obj_unref(o[i]);
    }
    fg_cache_obj_unref(fill);
}

/* Readers stream from an object as soon as its head is published. */
static void test_lookup_while_filling_is_hit(void **state)
{
    struct env *e = *state;
    struct fg_cache_request rq = req("h/a", at_ms(0));
    struct fg_cache_obj *obj, *fill;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    struct fg_cache_meta src;
    src_init(&src, 10, 60);
    assert_true(fg_cache_fill_head(fill, &src, HEAD, strlen(HEAD), NULL, 0, NULL, 0));
    assert_true(fg_cache_fill_append(fill, "01234", 5));
    struct fg_cache_obj *r = hit(e, &rq);
    assert_ptr_equal(r, fill);
    assert_int_equal(state_of(r), FG_CACHE_FILLING);
    assert_int_equal(fg_cache_obj_meta(r)->status, 200);
    assert_int_equal(r->head_len, strlen(HEAD));
    assert_memory_equal(r->head, HEAD, strlen(HEAD));
    assert_int_equal(atomic_load(&r->body_len), 5);
    fg_cache_fill_done(fill, true);
    fg_cache_obj_unref(r);
    fg_cache_obj_unref(fill);
}

static void test_fill_known_length_body_in_one_chunk(void **state)
{
    struct env *e = *state;
    char body[5000], got[5000];
    pattern(body, sizeof(body), 1);
    struct fg_cache_request rq = req("h/known", at_ms(0));
    struct fg_cache_obj *obj, *fill;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    struct fg_cache_meta src;
    src_init(&src, sizeof(body), 60);
    assert_true(fg_cache_fill_head(fill, &src, HEAD, strlen(HEAD), NULL, 0, NULL, 0));
    size_t pieces[] = {1, 999, 2000, 1, 1999};
    size_t off = 0;
    for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
        assert_true(fg_cache_fill_append(fill, body + off, pieces[i]));
        off += pieces[i];
    }
    assert_int_equal(off, sizeof(body));
    fg_cache_fill_done(fill, true);
    fg_cache_obj_unref(fill);

    struct fg_cache_obj *r = hit(e, &rq);
    assert_int_equal(state_of(r), FG_CACHE_COMPLETE);
    assert_int_equal(fg_cache_obj_length(r), sizeof(body));
    size_t chunks;
    assert_int_equal(read_body(r, got, sizeof(got), &chunks), sizeof(body));
    assert_int_equal(chunks, 1);
    assert_int_equal(r->first->cap, sizeof(body));
    assert_memory_equal(got, body, sizeof(body));
    fg_cache_obj_unref(r);
}

static void test_fill_unknown_length_body_in_growing_chunks(void **state)
{
    struct env *e = *state;
    static char body[100 * KIB], got[100 * KIB];
    pattern(body, sizeof(body), 2);
    struct fg_cache_request rq = req("h/unknown", at_ms(0));
    struct fg_cache_obj *obj, *fill;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    struct fg_cache_meta src;
    src_init(&src, FG_CACHE_NO_VALUE, 60);
    assert_true(fg_cache_fill_head(fill, &src, HEAD, strlen(HEAD), NULL, 0, NULL, 0));
    assert_null(fill->first); /* nothing allocated before the first byte */
    size_t sizes[] = {1, 7, 333, 4099, 9999, 15000, 16383};
    size_t off = 0;
    for (size_t i = 0; off < sizeof(body); i++) {
        size_t n = sizes[i % (sizeof(sizes) / sizeof(sizes[0]))];
        if (n > sizeof(body) - off)
            n = sizeof(body) - off;
        assert_true(fg_cache_fill_append(fill, body + off, n));
        off += n;
    }
    assert_true(fg_cache_obj_length(fill) == FG_CACHE_NO_VALUE);
    fg_cache_fill_done(fill, true);
    assert_int_equal(fg_cache_obj_length(fill), sizeof(body));
    fg_cache_obj_unref(fill);

    struct fg_cache_obj *r = hit(e, &rq);
    size_t chunks;
    assert_int_equal(read_body(r, got, sizeof(got), &chunks), sizeof(body));
    assert_memory_equal(got, body, sizeof(body));
    /* Chunks grow by a quarter of the body so far (1 KiB to 16 KiB, or the append's size):
     * few of them, each full before the next one starts, and the last one's unused room
     * at most a quarter of the body. */
    assert_true(chunks <= 20);
    size_t room = 0;
    for (struct fg_cache_chunk *ch = r->first; ch != NULL; ch = ch->next) {
        if (ch->next != NULL)
            assert_int_equal(ch->len, ch->cap);
        room += ch->cap;
        assert_true(ch->cap <= 16 * KIB || ch->cap == ch->len);
    }
    assert_true(room >= sizeof(body) && room <= sizeof(body) + sizeof(body) / 4);
    /* The bound is charged what was allocated: the chunks' room at least. */
    struct fg_cache_stats st;
    fg_cache_get_stats(e->c, &st);
    assert_true(st.bytes >= room && st.bytes <= room + 4 * KIB);
    fg_cache_obj_unref(r);
}

/* An empty body (Content-Length: 0) is a complete object without chunks. */
static void test_fill_empty_body(void **state)
{
    struct env *e = *state;
    store_simple(e, "h/empty", 60, "", 0);
    struct fg_cache_request rq = req("h/empty", at_ms(1));
    struct fg_cache_obj *r = hit(e, &rq);
    assert_int_equal(state_of(r), FG_CACHE_COMPLETE);
    assert_int_equal(fg_cache_obj_length(r), 0);
    assert_null(r->first);
    fg_cache_obj_unref(r);
}

/* A body that broke off: waiters see FAILED, nobody new finds the object. */
static void test_fill_failed_tells_waiters_and_drops_object(void **state)
{
    struct env *e = *state;
    struct fg_cache_request rq = req("h/a", at_ms(0));
    struct fg_cache_obj *obj, *fill, *fill2;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    struct probe p;
    probe_init(&p, e->notifier);
    assert_int_equal(fg_cache_lookup(e->c, &rq, &p.w, &obj, &fill2), FG_CACHE_V_WAIT);
    struct fg_cache_meta src;
    src_init(&src, 100, 60);
    assert_true(fg_cache_fill_head(fill, &src, HEAD, strlen(HEAD), NULL, 0, NULL, 0));
    assert_true(fg_cache_fill_append(fill, "abc", 3));
    fg_cache_fill_done(fill, false);
    assert_true(run_until(e->base, &p.finals, 1));
    assert_int_equal(p.state, FG_CACHE_FAILED);
    fg_cache_waiter_cancel(&p.w);
    fg_cache_obj_unref(obj);
    fg_cache_obj_unref(fill);
    expect_fill(e, &rq);
    struct fg_cache_stats st;
    fg_cache_get_stats(e->c, &st);
    assert_int_equal(st.fill_failed, 1);
    assert_int_equal(st.bytes, 0);
}

/* ---- waiters on another worker thread ------------------------------------------------ */

struct worker {
    struct fg_cache *c;
    const char *key;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool registered; /* the lookup is done: the main thread may fill */
    pthread_t self;
    enum fg_cache_verdict verdict;
    struct fg_cache_obj *obj;
    struct probe p;
    bool woke; /* a final state was seen within the time limit */
};

static void *worker_main(void *arg)
{
    struct worker *wk = arg;
    struct event_base *base = event_base_new();
    struct fg_cache_notifier *n = base ? fg_cache_notifier_new(base) : NULL;
    wk->self = pthread_self();
    wk->verdict = FG_CACHE_V_PASS;
    struct fg_cache_obj *fill = NULL;
    if (n != NULL) {
        wk->p.w.notifier = n;
        struct fg_cache_request rq = req(wk->key, at_ms(0));
        wk->verdict = fg_cache_lookup(wk->c, &rq, &wk->p.w, &wk->obj, &fill);
    }
    pthread_mutex_lock(&wk->lock);
    wk->registered = true;
    pthread_cond_signal(&wk->cond);
    pthread_mutex_unlock(&wk->lock);
    if (wk->verdict == FG_CACHE_V_WAIT)
        wk->woke = run_until(base, &wk->p.finals, 1);
    if (n != NULL)
        fg_cache_waiter_cancel(&wk->p.w); /* on the waiter's own worker, as required */
    fg_cache_obj_unref(wk->obj);
    fg_cache_obj_unref(fill);
    fg_cache_notifier_free(n);
    if (base != NULL)
        event_base_free(base);
    return NULL;
}

static void test_waiter_called_on_its_own_thread(void **state)
{
    struct env *e = *state;
    static char body[100 * KIB], seen[100 * KIB];
    pattern(body, sizeof(body), 3);
    struct fg_cache_request rq = req("h/thread", at_ms(0));
    struct fg_cache_obj *obj, *fill;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);

    struct worker wk = {.c = e->c, .key = "h/thread"};
    pthread_mutex_init(&wk.lock, NULL);
    pthread_cond_init(&wk.cond, NULL);
    probe_init(&wk.p, NULL);
    wk.p.copy = seen;
    wk.p.copy_cap = sizeof(seen);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, worker_main, &wk), 0);
    pthread_mutex_lock(&wk.lock);
    while (!wk.registered)
        pthread_cond_wait(&wk.cond, &wk.lock);
    pthread_mutex_unlock(&wk.lock);

    struct fg_cache_meta src;
    src_init(&src, FG_CACHE_NO_VALUE, 60);
    assert_true(fg_cache_fill_head(fill, &src, HEAD, strlen(HEAD), NULL, 0, NULL, 0));
    for (size_t off = 0; off < sizeof(body); off += 1000) {
        size_t n = sizeof(body) - off < 1000 ? sizeof(body) - off : 1000;
        assert_true(fg_cache_fill_append(fill, body + off, n));
    }
    fg_cache_fill_done(fill, true);
    assert_int_equal(pthread_join(th, NULL), 0);

    assert_int_equal(wk.verdict, FG_CACHE_V_WAIT);
    assert_ptr_equal(wk.obj, fill);
    assert_true(wk.woke);
    assert_true(pthread_equal(wk.p.thread, wk.self));
    assert_false(pthread_equal(wk.p.thread, pthread_self()));
    assert_int_equal(wk.p.state, FG_CACHE_COMPLETE);
    assert_int_equal(wk.p.body_len, sizeof(body));
    assert_int_equal(wk.p.copied, sizeof(body));
    assert_memory_equal(seen, body, sizeof(body));
    pthread_cond_destroy(&wk.cond);
    pthread_mutex_destroy(&wk.lock);
    fg_cache_obj_unref(fill);
}

/* ---- freshness ----------------------------------------------------------------------- */

static void test_obj_fresh_age_and_lifetime(void **state)
{
    (void)state;
    struct fg_cache_meta o;
    src_init(&o, 0, 60);
    o.initial_age = 10;
    uint64_t age;
    assert_true(fg_cache_meta_fresh(&o, at_ms(0), &age));
    assert_int_equal(age, 10);
    assert_true(fg_cache_meta_fresh(&o, at_ms(49) + 999, &age));
    assert_int_equal(age, 59);
    assert_false(fg_cache_meta_fresh(&o, at_ms(50), &age)); /* age == lifetime: stale */
    assert_int_equal(age, 60);
    assert_true(fg_cache_meta_fresh(&o, at_ms(-100), &age)); /* a clock behind: no resident time */
    assert_int_equal(age, 10);
    assert_true(fg_cache_meta_fresh(&o, at_ms(1), NULL));
}

/* Residence is counted in milliseconds: stored at x.9 s, a 1 s lifetime ends at (x+1).9 s. */
static void test_obj_fresh_counts_milliseconds(void **state)
{
    (void)state;
    struct fg_cache_meta o;
    src_init(&o, 0, 1);
    o.response_time_ms = at_ms(0) + 900;
    uint64_t age;
    assert_true(fg_cache_meta_fresh(&o, at_ms(1), &age));
    assert_int_equal(age, 0);
    assert_true(fg_cache_meta_fresh(&o, at_ms(1) + 899, NULL));
    assert_false(fg_cache_meta_fresh(&o, at_ms(1) + 900, &age));
    assert_int_equal(age, 1);
}

static void test_obj_fresh_no_cache_never_fresh(void **state)
{
    (void)state;
    struct fg_cache_meta o;
    src_init(&o, 0, 600);
    o.no_cache = true;
    uint64_t age = 99;
    assert_false(fg_cache_meta_fresh(&o, at_ms(1), &age));
    assert_int_equal(age, 1);
}

static void test_lookup_fresh_then_stale_without_swr_fills(void **state)
{
    struct env *e = *state;
    store_simple(e, "h/a", 10, "body", 4);
    struct fg_cache_request rq = req("h/a", at_ms(9));
    fg_cache_obj_unref(hit(e, &rq));
    rq = req("h/a", at_ms(10));
    struct fg_cache_obj *obj, *fill;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    assert_non_null(obj); /* the stale variant, for a conditional fetch */
    assert_int_equal(state_of(obj), FG_CACHE_COMPLETE);
    assert_non_null(fill);
    assert_ptr_not_equal(obj, fill);
    fg_cache_fill_abort(fill, 502);
    fg_cache_obj_unref(fill);
    fg_cache_obj_unref(obj);
}

/* Store a stale-while-revalidate object at "h/swr": fresh 10 s, then 30 s of swr. */
static void store_swr(struct env *e, bool must_revalidate, bool no_cache)
{
    struct fg_cache_meta src;
    src_init(&src, 4, 10);
    src.swr = 30;
    src.must_revalidate = must_revalidate;
    src.no_cache = no_cache;
    struct fg_cache_request rq = req("h/swr", at_ms(0));
    store(e, &rq, &src, NULL, NULL, "body", 4);
}

static void test_stale_within_swr_served_with_refresh(void **state)
{
    struct env *e = *state;
    store_swr(e, false, false);
    struct fg_cache_request rq = req("h/swr", at_ms(20));
    struct fg_cache_obj *obj, *fill, *obj2, *fill2;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_STALE);
    assert_non_null(obj);
    assert_int_equal(state_of(obj), FG_CACHE_COMPLETE);
    assert_non_null(fill);
    assert_int_equal(state_of(fill), FG_CACHE_BUSY);
    /* the refresh is on its way: the next one is served stale without a second fetch */
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj2, &fill2), FG_CACHE_V_STALE);
    assert_ptr_equal(obj2, obj);
    assert_null(fill2);
    fg_cache_obj_unref(obj2);
    fg_cache_fill_abort(fill, 502);
    fg_cache_obj_unref(fill);
    fg_cache_obj_unref(obj);
}

/* The window's last millisecond still serves stale; one more and the object is only good
 * for its validators. */
static void test_stale_beyond_swr_fills(void **state)
{
    struct env *e = *state;
    store_swr(e, false, false);
    struct fg_cache_request rq = req("h/swr", at_ms(40));
    struct fg_cache_obj *obj, *fill;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_STALE);
    fg_cache_fill_abort(fill, 502);
    fg_cache_obj_unref(fill);
    fg_cache_obj_unref(obj);
    rq = req("h/swr", at_ms(40) + 1);
    struct fg_cache_obj *stale;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &stale, &fill), FG_CACHE_V_FILL);
    assert_ptr_equal(stale, obj); /* still our (only) object */
    assert_non_null(fill);
    fg_cache_fill_abort(fill, 502);
    fg_cache_obj_unref(fill);
    fg_cache_obj_unref(stale);
}

static void test_stale_must_revalidate_fills_with_stale_variant(void **state)
{
    struct env *e = *state;
    store_swr(e, true, false);
    struct fg_cache_request rq = req("h/swr", at_ms(20));
    struct fg_cache_obj *obj, *fill;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    assert_non_null(obj);
    assert_true(fg_cache_obj_meta(obj)->must_revalidate);
    assert_int_equal(state_of(obj), FG_CACHE_COMPLETE);
    assert_non_null(fill);
    assert_int_equal(state_of(fill), FG_CACHE_BUSY);
    fg_cache_fill_abort(fill, 502);
    fg_cache_obj_unref(fill);
    fg_cache_obj_unref(obj);
}

/* no-cache without stale-while-revalidate: every use goes to the origin, with the stored
 * object for its validators. */
static void test_no_cache_object_fills_with_stored_variant(void **state)
{
    struct env *e = *state;
    struct fg_cache_meta src;
    src_init(&src, 4, 600);
    src.no_cache = true;
    struct fg_cache_request rq = req("h/nc", at_ms(0));
    store(e, &rq, &src, NULL, NULL, "body", 4);
    rq = req("h/nc", at_ms(1));
    struct fg_cache_obj *obj, *fill;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    assert_non_null(obj);
    assert_non_null(fill);
    fg_cache_fill_abort(fill, 502);
    fg_cache_obj_unref(fill);
    fg_cache_obj_unref(obj);
}

/* Regression: a no-cache object is never served without revalidation, not even inside a
 * stale-while-revalidate window (RFC 9111 §5.2.2.4). */
static void test_no_cache_object_not_served_stale(void **state)
{
    struct env *e = *state;
    store_swr(e, false, true);
    struct fg_cache_request rq = req("h/swr", at_ms(1));
    struct fg_cache_obj *obj, *fill;
    enum fg_cache_verdict v = fg_cache_lookup(e->c, &rq, NULL, &obj, &fill);
    if (fill != NULL)
        fg_cache_fill_abort(fill, 502);
    fg_cache_obj_unref(fill);
    fg_cache_obj_unref(obj);
    assert_int_equal(v, FG_CACHE_V_FILL);
}

/* ---- hit-for-miss and aborts --------------------------------------------------------- */

/* A hit-for-miss marker for key, ttl_ms from t0. */
static void make_marker(struct env *e, const char *key, uint64_t ttl_ms)
{
    struct fg_cache_request rq = req(key, at_ms(0));
    struct fg_cache_obj *obj, *fill;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    fg_cache_fill_pass(fill, at_ms(0), ttl_ms);
    fg_cache_obj_unref(fill);
}

static void test_pass_tells_waiters(void **state)
{
    struct env *e = *state;
    struct fg_cache_request rq = req("h/p", at_ms(0));
    struct fg_cache_obj *obj, *fill, *fill2;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    struct probe p;
    probe_init(&p, e->notifier);
    assert_int_equal(fg_cache_lookup(e->c, &rq, &p.w, &obj, &fill2), FG_CACHE_V_WAIT);
    fg_cache_fill_pass(fill, at_ms(0), 5000);
    assert_true(run_until(e->base, &p.finals, 1));
    assert_int_equal(p.state, FG_CACHE_PASS);
    fg_cache_waiter_cancel(&p.w);
    fg_cache_obj_unref(obj);
    fg_cache_obj_unref(fill);
    struct fg_cache_stats st;
    fg_cache_get_stats(e->c, &st);
    assert_int_equal(st.hit_for_miss, 1);
}

static void test_pass_ttl_passes_before_expiry(void **state)
{
    struct env *e = *state;
    make_marker(e, "h/p", 5000);
    struct probe q;
    probe_init(&q, e->notifier);
    int64_t times[] = {at_ms(0), at_ms(1), at_ms(4) + 999};
    for (size_t i = 0; i < 3; i++) {
        struct fg_cache_request rq = req("h/p", times[i]);
        struct fg_cache_obj *obj, *fill;
        assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_PASS);
        assert_null(obj);
        assert_null(fill);
        /* with a waiter too: hit-for-miss requests go in parallel, nobody waits */
        assert_int_equal(fg_cache_lookup(e->c, &rq, &q.w, &obj, &fill), FG_CACHE_V_PASS);
        assert_null(q.w.obj);
    }
    /* a purge takes a marker out like any object */
    assert_int_equal(fg_cache_purge(e->c, "h/p", 3, false), 1);
    struct fg_cache_request rq = req("h/p", at_ms(1));
    expect_fill(e, &rq);
}

static void test_pass_ttl_expired_gives_fill(void **state)
{
    struct env *e = *state;
    make_marker(e, "h/p", 5000);
    struct fg_cache_request rq = req("h/p", at_ms(5));
    expect_fill(e, &rq);
}

/* Regression: an expired hit-for-miss marker leaves the table and the eviction structure
 * (markers are charged to the memory bound), so its bytes are released. */
static void test_expired_pass_marker_released(void **state)
{
    struct env *e = *state;
    make_marker(e, "h/p", 1000);
    struct fg_cache_stats st;
    fg_cache_get_stats(e->c, &st);
    assert_true(st.bytes > 0); /* the marker is charged */
    struct fg_cache_request rq = req("h/p", at_ms(1));
    expect_fill(e, &rq);
    fg_cache_get_stats(e->c, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
}

/* Markers count against the memory bound: a flood of uncacheable URLs stays bounded. */
static void test_pass_markers_bounded_by_memory(void **state)
{
    struct env *e = *state;
    env_limits(e, 64 * KIB, 64 * KIB);
    char k[32];
    struct fg_cache_stats st;
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof(k), "h/nocache/%04d", i);
        make_marker(e, k, 60000);
        fg_cache_get_stats(e->c, &st);
        assert_true(st.bytes <= 64 * KIB);
    }
    assert_true(st.evictions > 0);
    assert_int_equal(st.entries + st.evictions, 2000);
    /* the newest marker is still in force */
    struct fg_cache_request rq = req("h/nocache/1999", at_ms(1));
    struct fg_cache_obj *obj, *fill;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_PASS);
}

static void test_pass_without_ttl_drops_placeholder(void **state)
{
    struct env *e = *state;
    make_marker(e, "h/p", 0);
    struct fg_cache_stats st;
    fg_cache_get_stats(e->c, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    struct fg_cache_request rq = req("h/p", at_ms(0));
    expect_fill(e, &rq);
}

static void test_abort_tells_waiters_and_key_fills_again(void **state)
{
    struct env *e = *state;
    struct fg_cache_request rq = req("h/a", at_ms(0));
    struct fg_cache_obj *obj, *fill, *fill2;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    struct probe p;
    probe_init(&p, e->notifier);
    assert_int_equal(fg_cache_lookup(e->c, &rq, &p.w, &obj, &fill2), FG_CACHE_V_WAIT);
    fg_cache_fill_abort(fill, 502);
    assert_true(run_until(e->base, &p.finals, 1));
    assert_int_equal(p.state, FG_CACHE_ABORTED);
    fg_cache_waiter_cancel(&p.w);
    /* the waiter looks up again and becomes the filler */
    struct fg_cache_obj *obj2, *again;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj2, &again), FG_CACHE_V_FILL);
    assert_non_null(again);
    assert_ptr_not_equal(again, fill);
    assert_int_equal(state_of(again), FG_CACHE_BUSY);
    store_simple(e, "h/other", 60, "x", 1); /* unrelated keys are unaffected */
    struct fg_cache_meta src;
    src_init(&src, 2, 60);
    assert_true(fg_cache_fill_head(again, &src, HEAD, strlen(HEAD), NULL, 0, NULL, 0));
    assert_true(fg_cache_fill_append(again, "ok", 2));
    fg_cache_fill_done(again, true);
    fg_cache_obj_unref(again);
    fg_cache_obj_unref(obj);
    fg_cache_obj_unref(fill);
    fg_cache_obj_unref(hit(e, &rq));
}

/* ---- Vary ---------------------------------------------------------------------------- */

static struct fg_http_header ae(const char *value)
{
    return (struct fg_http_header){"Accept-Encoding", 15, value, strlen(value)};
}

/* Store a variant of "h/v" for a request with these headers (Vary: Accept-Encoding). */
static void store_variant(struct env *e, const struct fg_http_header *h, size_t n, const char *body)
{
    char values[256];
    int vl = fg_cache_vary_values("accept-encoding", 15, h, n, values, sizeof(values) - 1);
    assert_true(vl > 0);
    values[vl] = '\0';
    struct fg_cache_meta src;
    src_init(&src, strlen(body), 60);
    struct fg_cache_request rq = req_h("h/v", at_ms(0), h, n);
    store(e, &rq, &src, "accept-encoding", values, body, strlen(body));
}

static void test_vary_each_request_finds_its_variant(void **state)
{
    struct env *e = *state;
    struct fg_http_header gz[] = {ae("gzip")}, br[] = {ae("br")}, id[] = {ae("identity")};
    store_variant(e, gz, 1, "gzip body");
    store_variant(e, br, 1, "br body!");
    char got[64];

    struct fg_cache_request rq = req_h("h/v", at_ms(1), gz, 1);
    struct fg_cache_obj *r = hit(e, &rq);
    assert_int_equal(read_body(r, got, sizeof(got), NULL), 9);
    assert_memory_equal(got, "gzip body", 9);
    assert_memory_equal(r->vary_values, "=gzip\n", 6);
    fg_cache_obj_unref(r);

    rq = req_h("h/v", at_ms(1), br, 1);
    r = hit(e, &rq);
    assert_int_equal(read_body(r, got, sizeof(got), NULL), 8);
    assert_memory_equal(got, "br body!", 8);
    fg_cache_obj_unref(r);

    struct fg_cache_stats st;
    fg_cache_get_stats(e->c, &st);
    assert_int_equal(st.entries, 2);

    rq = req_h("h/v", at_ms(1), id, 1);
    struct fg_cache_obj *obj, *fill;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    assert_null(obj); /* no variant of this request to validate */
    fg_cache_fill_abort(fill, 502);
    fg_cache_obj_unref(fill);
}

/* The request's field values are compared after normalisation (RFC 9111 §4.1). */
static void test_vary_normalised_values_match(void **state)
{
    struct env *e = *state;
    struct fg_http_header stored[] = {ae("gzip, br")};
    store_variant(e, stored, 1, "x");
    struct fg_http_header spaced[] = {ae("gzip ,br")}, split[] = {ae("gzip"), ae("br")};
    struct fg_cache_request rq = req_h("h/v", at_ms(1), spaced, 1);
    fg_cache_obj_unref(hit(e, &rq));
    rq = req_h("h/v", at_ms(1), split, 2);
    fg_cache_obj_unref(hit(e, &rq));
    struct fg_http_header swapped[] = {ae("br, gzip")};
    rq = req_h("h/v", at_ms(1), swapped, 1);
    expect_fill(e, &rq); /* order is significant */
}

/* A new response for one variant replaces that variant only. */
static void test_vary_new_response_replaces_its_variant_only(void **state)
{
    struct env *e = *state;
    struct fg_http_header gz[] = {ae("gzip")}, br[] = {ae("br")};
    store_variant(e, gz, 1, "old gzip");
    store_variant(e, br, 1, "br");
    char values[] = "=gzip\n";
    struct fg_cache_meta src;
    src_init(&src, 8, 60);
    struct fg_cache_request rq = req_h("h/v", at_ms(1), gz, 1);
    struct fg_cache_obj *old = hit(e, &rq);
    fg_cache_obj_unref(old);
    /* make the old one stale so that the lookup asks for a fill */
    rq = req_h("h/v", at_ms(61), gz, 1);
    struct fg_cache_obj *stale, *fill;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &stale, &fill), FG_CACHE_V_FILL);
    assert_ptr_equal(stale, old);
    src.response_time_ms = at_ms(61);
    assert_true(
        fg_cache_fill_head(fill, &src, HEAD, strlen(HEAD), "accept-encoding", 15, values, 6));
    assert_true(fg_cache_fill_append(fill, "new gzip", 8));
    fg_cache_fill_done(fill, true);
    assert_false(stale->in_table);
    fg_cache_obj_unref(stale);
    fg_cache_obj_unref(fill);
    struct fg_cache_stats st;
    fg_cache_get_stats(e->c, &st);
    assert_int_equal(st.entries, 2);
    char got[16];
    struct fg_cache_obj *r = hit(e, &rq);
    assert_int_equal(read_body(r, got, sizeof(got), NULL), 8);
    assert_memory_equal(got, "new gzip", 8);
    fg_cache_obj_unref(r);
    rq = req_h("h/v", at_ms(1), br, 1);
    fg_cache_obj_unref(hit(e, &rq));
}

/* ---- 304 refreshes ------------------------------------------------------------------- */

static const char HEAD_304[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plaiN";

/* Store "h/r" (lifetime 1 s, 3000 bytes) and look it up stale: *stale and *fill. */
static void stale_for_refresh(struct env *e, char *body, size_t len, struct fg_cache_obj **stale,
                              struct fg_cache_obj **fill)
{
    pattern(body, len, 4);
    store_simple(e, "h/r", 1, body, len);
    struct fg_cache_request rq = req("h/r", at_ms(5));
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, stale, fill), FG_CACHE_V_FILL);
    assert_non_null(*stale);
    assert_non_null(*fill);
}

static void test_refresh_shares_stale_body(void **state)
{
    struct env *e = *state;
    char body[3000], got[3000];
    struct fg_cache_obj *stale, *fill;
    stale_for_refresh(e, body, sizeof(body), &stale, &fill);
    struct fg_cache_meta src;
    src_init(&src, FG_CACHE_NO_VALUE, 60);
    src.response_time_ms = at_ms(5);
    fg_cache_fill_refresh(fill, stale, &src, HEAD_304, strlen(HEAD_304));
    assert_int_equal(state_of(fill), FG_CACHE_COMPLETE);
    assert_ptr_equal(fill->body_owner, stale);
    assert_ptr_equal(fill->first, stale->first);
    assert_int_equal(fg_cache_obj_length(fill), sizeof(body));
    assert_int_equal(fg_cache_obj_meta(fill)->status, 200);
    assert_false(stale->in_table);
    assert_false(fg_evict_linked(&stale->evict));
    fg_cache_obj_unref(fill);

    struct fg_cache_request rq = req("h/r", at_ms(6));
    struct fg_cache_obj *r = hit(e, &rq);
    assert_ptr_equal(r, fill);
    assert_memory_equal(r->head, HEAD_304, strlen(HEAD_304));
    assert_int_equal(read_body(r, got, sizeof(got), NULL), sizeof(body));
    assert_memory_equal(got, body, sizeof(body));
    assert_int_equal(refs_of(stale), 2); /* ours and the refreshed object's */
    fg_cache_obj_unref(stale);
    fg_cache_obj_unref(r);
}

/* The refreshed object takes over the charge: same head size, same bytes, one entry. */
static void test_refresh_keeps_memory_accounting(void **state)
{
    struct env *e = *state;
    char body[3000];
    struct fg_cache_obj *stale, *fill;
    stale_for_refresh(e, body, sizeof(body), &stale, &fill);
    struct fg_cache_stats before, after;
    fg_cache_get_stats(e->c, &before);
    assert_int_equal(before.entries, 2); /* the stale object and the busy one */
    assert_true(before.bytes > sizeof(body));
    struct fg_cache_meta src;
    src_init(&src, FG_CACHE_NO_VALUE, 60);
    src.response_time_ms = at_ms(5);
    fg_cache_fill_refresh(fill, stale, &src, HEAD_304, strlen(HEAD_304));
    fg_cache_get_stats(e->c, &after);
    assert_int_equal(after.entries, 1);
    assert_int_equal(after.bytes, before.bytes);
    fg_cache_obj_unref(fill);
    fg_cache_obj_unref(stale);

    /* a second refresh with a longer head: charged for the head's extra bytes only (as
     * allocated: malloc rounds a size up to 16 bytes) */
    struct fg_cache_request rq = req("h/r", at_ms(100));
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &stale, &fill), FG_CACHE_V_FILL);
    static const char longer[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: 0123456789";
    src.response_time_ms = at_ms(100);
    fg_cache_fill_refresh(fill, stale, &src, longer, strlen(longer));
    fg_cache_get_stats(e->c, &after);
    assert_int_equal(after.entries, 1);
    size_t extra = strlen(longer) - strlen(HEAD_304);
    assert_true(after.bytes + 16 >= before.bytes + extra &&
                after.bytes <= before.bytes + extra + 16);
    fg_cache_obj_unref(fill);
    fg_cache_obj_unref(stale);
}

/* Refreshing a refreshed object shares the original body, not a chain of owners. */
static void test_refresh_twice_shares_original_owner(void **state)
{
    struct env *e = *state;
    char body[3000], got[3000];
    struct fg_cache_obj *orig, *first;
    stale_for_refresh(e, body, sizeof(body), &orig, &first);
    struct fg_cache_meta src;
    src_init(&src, FG_CACHE_NO_VALUE, 1);
    src.response_time_ms = at_ms(5);
    fg_cache_fill_refresh(first, orig, &src, HEAD_304, strlen(HEAD_304));
    fg_cache_obj_unref(first);

    struct fg_cache_request rq = req("h/r", at_ms(10));
    struct fg_cache_obj *stale, *second;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &stale, &second), FG_CACHE_V_FILL);
    assert_ptr_equal(stale, first);
    src.response_time_ms = at_ms(10);
    src.lifetime = 60;
    fg_cache_fill_refresh(second, stale, &src, HEAD, strlen(HEAD));
    assert_ptr_equal(second->body_owner, orig);
    fg_cache_obj_unref(stale); /* the first refresh is gone now */
    fg_cache_obj_unref(second);
    rq = req("h/r", at_ms(11));
    struct fg_cache_obj *r = hit(e, &rq);
    assert_int_equal(read_body(r, got, sizeof(got), NULL), sizeof(body));
    assert_memory_equal(got, body, sizeof(body));
    assert_int_equal(refs_of(orig), 2);
    fg_cache_obj_unref(orig);
    fg_cache_obj_unref(r);
}

/* ---- purge --------------------------------------------------------------------------- */

static void test_purge_exact_removes_every_variant_of_key_only(void **state)
{
    struct env *e = *state;
    struct fg_http_header gz[] = {ae("gzip")}, br[] = {ae("br")};
    store_variant(e, gz, 1, "g");
    store_variant(e, br, 1, "b");
    store_simple(e, "h/vv", 60, "other", 5); /* "h/v" is a prefix of it */
    assert_int_equal(fg_cache_purge(e->c, "h/v", 3, false), 2);
    struct fg_cache_request rq = req_h("h/v", at_ms(1), gz, 1);
    expect_fill(e, &rq);
    rq = req_h("h/v", at_ms(1), br, 1);
    expect_fill(e, &rq);
    rq = req("h/vv", at_ms(1));
    fg_cache_obj_unref(hit(e, &rq));
    assert_int_equal(fg_cache_purge(e->c, "h/v", 3, false), 0);
    struct fg_cache_stats st;
    fg_cache_get_stats(e->c, &st);
    assert_int_equal(st.purged, 2);
    assert_int_equal(st.entries, 1);
}

static void test_purge_prefix_removes_matching_keys(void **state)
{
    struct env *e = *state;
    const char *keys[] = {"h/img/1", "h/img/2", "h/img/a/b", "h/css/1", "g/img/1", "h/im"};
    for (size_t i = 0; i < 6; i++)
        store_simple(e, keys[i], 60, "x", 1);
    assert_int_equal(fg_cache_purge(e->c, "h/img/", 6, true), 3);
    for (size_t i = 0; i < 6; i++) {
        struct fg_cache_request rq = req(keys[i], at_ms(1));
        if (i < 3)
            expect_fill(e, &rq);
        else
            fg_cache_obj_unref(hit(e, &rq));
    }
    struct fg_cache_stats st;
    fg_cache_get_stats(e->c, &st);
    assert_int_equal(st.entries, 3);
    assert_int_equal(st.purged, 3);
}

/* More matching keys per shard than one purge batch (64) holds, and grown shards. */
static void test_purge_prefix_many(void **state)
{
    struct env *e = *state;
    char k[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(k, sizeof(k), "h/%05d", i);
        store_simple(e, k, 600, "x", 1);
    }
    store_simple(e, "g/1", 600, "x", 1);
    assert_int_equal(fg_cache_purge(e->c, "h/", 2, true), 10000);
    struct fg_cache_stats st;
    fg_cache_get_stats(e->c, &st);
    assert_int_equal(st.entries, 1);
    struct fg_cache_request rq = req("g/1", at_ms(1));
    fg_cache_obj_unref(hit(e, &rq));
}

static void test_purge_leaves_reader_body_intact(void **state)
{
    struct env *e = *state;
    char body[20000], got[20000];
    pattern(body, sizeof(body), 5);
    store_simple(e, "h/held", 60, body, sizeof(body));
    struct fg_cache_request rq = req("h/held", at_ms(1));
    struct fg_cache_obj *r = hit(e, &rq);
    assert_int_equal(fg_cache_purge(e->c, "h/held", 6, false), 1);
    assert_false(r->in_table);
    assert_int_equal(refs_of(r), 1); /* only ours is left */
    assert_int_equal(read_body(r, got, sizeof(got), NULL), sizeof(body));
    assert_memory_equal(got, body, sizeof(body));
    expect_fill(e, &rq);
    struct fg_cache_stats st;
    fg_cache_get_stats(e->c, &st);
    assert_int_equal(st.bytes, 0);
    fg_cache_obj_unref(r);
}

/* ---- the memory bound ---------------------------------------------------------------- */

static void test_memory_bound_holds_after_every_fill(void **state)
{
    struct env *e = *state;
    env_limits(e, 1 * MIB, 64 * KIB);
    char body[4 * KIB], k[32];
    pattern(body, sizeof(body), 6);
    /* An object's charge includes the allocator's rounding (malloc_usable_size), which can
     * differ by a few bytes between objects of the same size: take the largest seen. */
    uint64_t max_charge = 0, prev = 0;
    struct fg_cache_stats st;
    for (int i = 0; i < 1000; i++) {
        snprintf(k, sizeof(k), "h/obj/%04d", i);
        store_simple(e, k, 60, body, sizeof(body));
        fg_cache_get_stats(e->c, &st);
        assert_true(st.bytes <= 1 * MIB);
        if (st.evictions == 0) {
            if (st.bytes - prev > max_charge)
                max_charge = st.bytes - prev;
            prev = st.bytes;
        }
    }
    assert_true(max_charge > sizeof(body));
    assert_true(st.evictions > 0);
    assert_int_equal(st.entries + st.evictions, 1000);
    assert_true(st.bytes >= st.entries * sizeof(body)); /* each charged at least its body */
    assert_true(st.bytes > 1 * MIB - max_charge);       /* evictions made room, no more */
    /* the newest one is still there */
    struct fg_cache_request rq = req("h/obj/0999", at_ms(1));
    fg_cache_obj_unref(hit(e, &rq));
}

static void test_object_larger_than_memory_not_stored(void **state)
{
    struct env *e = *state;
    env_limits(e, 1 * MIB, 4 * MIB);
    store_simple(e, "h/small", 60, "small", 5);
    struct fg_cache_stats before, after;
    fg_cache_get_stats(e->c, &before);
    size_t len = 2 * MIB;
    char *body = malloc(len);
    assert_non_null(body);
    pattern(body, len, 7);
    store_simple(e, "h/big", 60, body, len);
    free(body);
    fg_cache_get_stats(e->c, &after);
    assert_int_equal(after.bytes, before.bytes);
    assert_int_equal(after.entries, 1);
    assert_int_equal(after.evictions, 0); /* nothing evicted for an object that cannot fit */
    struct fg_cache_request rq = req("h/big", at_ms(1));
    expect_fill(e, &rq);
    rq = req("h/small", at_ms(1));
    fg_cache_obj_unref(hit(e, &rq));
}

/* ---- too big ------------------------------------------------------------------------- */

static void test_too_big_by_content_length_refused(void **state)
{
    struct env *e = *state;
    env_limits(e, 1 * MIB, 10 * KIB);
    struct fg_cache_request rq = req("h/big", at_ms(0));
    struct fg_cache_obj *obj, *fill;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    struct fg_cache_meta src;
    src_init(&src, 20 * KIB, 60);
    assert_false(fg_cache_fill_head(fill, &src, HEAD, strlen(HEAD), NULL, 0, NULL, 0));
    assert_int_equal(state_of(fill), FG_CACHE_BUSY);
    fg_cache_fill_pass(fill, at_ms(0), 0);
    fg_cache_obj_unref(fill);
    struct fg_cache_stats st;
    fg_cache_get_stats(e->c, &st);
    assert_int_equal(st.too_big, 1);
    expect_fill(e, &rq);
}

static void test_too_big_boundary_is_max_object(void **state)
{
    struct env *e = *state;
    env_limits(e, 1 * MIB, 10 * KIB);
    static char body[10 * KIB + 1];
    pattern(body, sizeof(body), 8);
    store_simple(e, "h/exact", 60, body, 10 * KIB); /* exactly max_object: kept */
    struct fg_cache_request rq = req("h/exact", at_ms(1));
    fg_cache_obj_unref(hit(e, &rq));
    /* one byte more while appending without a length */
    rq = req("h/over", at_ms(0));
    struct fg_cache_obj *obj, *fill;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    struct fg_cache_meta src;
    src_init(&src, FG_CACHE_NO_VALUE, 60);
    assert_true(fg_cache_fill_head(fill, &src, HEAD, strlen(HEAD), NULL, 0, NULL, 0));
    assert_true(fg_cache_fill_append(fill, body, 10 * KIB));
    assert_false(fg_cache_fill_append(fill, body + 10 * KIB, 1));
    fg_cache_fill_done(fill, true);
    fg_cache_obj_unref(fill);
    expect_fill(e, &rq);
}

static void test_too_big_while_appending_reader_keeps_every_byte(void **state)
{
    struct env *e = *state;
    env_limits(e, 1 * MIB, 10 * KIB);
    static char body[24 * KIB], got[24 * KIB];
    pattern(body, sizeof(body), 9);
    struct fg_cache_request rq = req("h/grow", at_ms(0));
    struct fg_cache_obj *obj, *fill;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    struct fg_cache_meta src;
    src_init(&src, FG_CACHE_NO_VALUE, 60);
    assert_true(fg_cache_fill_head(fill, &src, HEAD, strlen(HEAD), NULL, 0, NULL, 0));
    assert_true(fg_cache_fill_append(fill, body, 6 * KIB));
    struct fg_cache_obj *reader = hit(e, &rq); /* streams from the object being filled */
    struct probe p;
    probe_init(&p, e->notifier);
    assert_true(fg_cache_wait(reader, &p.w));

    assert_false(fg_cache_fill_append(fill, body + 6 * KIB, 6 * KIB)); /* past 10 KiB */
    assert_true(fill->too_big);
    assert_false(fill->in_table);
    /* nobody new finds it; this lookup's fill is dropped again */
    expect_fill(e, &rq);
    /* the filler goes on for the readers it has */
    assert_false(fg_cache_fill_append(fill, body + 12 * KIB, sizeof(body) - 12 * KIB));
    fg_cache_fill_done(fill, true);
    assert_true(run_until(e->base, &p.finals, 1));
    assert_int_equal(p.state, FG_CACHE_COMPLETE);
    assert_int_equal(p.body_len, sizeof(body));
    fg_cache_waiter_cancel(&p.w);

    assert_int_equal(read_body(reader, got, sizeof(got), NULL), sizeof(body));
    assert_memory_equal(got, body, sizeof(body));
    assert_int_equal(fg_cache_obj_length(reader), sizeof(body));
    struct fg_cache_stats st;
    fg_cache_get_stats(e->c, &st);
    assert_int_equal(st.too_big, 1);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(st.entries, 0);
    fg_cache_obj_unref(reader);
    fg_cache_obj_unref(fill);
}

/* ---- references ---------------------------------------------------------------------- */

/* The table, the eviction structure and every reader each hold one reference. */
static void test_refs_table_eviction_readers(void **state)
{
    struct env *e = *state;
    struct fg_cache_request rq = req("h/refs", at_ms(0));
    struct fg_cache_obj *obj, *fill;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    assert_int_equal(refs_of(fill), 2); /* table + filler */
    struct fg_cache_meta src;
    src_init(&src, 3, 60);
    assert_true(fg_cache_fill_head(fill, &src, HEAD, strlen(HEAD), NULL, 0, NULL, 0));
    assert_true(fg_cache_fill_append(fill, "abc", 3));
    fg_cache_fill_done(fill, true);
    assert_int_equal(refs_of(fill), 3); /* + eviction */
    assert_true(fg_evict_linked(&fill->evict));
    struct fg_cache_obj *r1 = hit(e, &rq), *r2 = hit(e, &rq);
    assert_int_equal(refs_of(fill), 5);
    fg_cache_obj_unref(r2);
    fg_cache_obj_unref(fill);
    assert_int_equal(refs_of(r1), 3);
    assert_int_equal(fg_cache_purge(e->c, "h/refs", 6, false), 1);
    assert_int_equal(refs_of(r1), 1);
    fg_cache_obj_unref(r1); /* the last one frees it (the sanitizer build checks) */
}

/* A body reference handed to libevent keeps the object alive after every other one. */
static void test_refs_evbuffer_reference_outlives_object(void **state)
{
    struct env *e = *state;
    store_simple(e, "h/evb", 60, "payload", 7);
    struct fg_cache_request rq = req("h/evb", at_ms(1));
    struct fg_cache_obj *r = hit(e, &rq);
    struct evbuffer *buf = evbuffer_new();
    assert_non_null(buf);
    fg_cache_obj_ref(r);
    assert_int_equal(evbuffer_add_reference(buf, r->first->data, atomic_load(&r->first->len),
                                            fg_cache_obj_unref_cb, r),
                     0);
    fg_cache_obj_unref(r);
    assert_int_equal(fg_cache_purge(e->c, "h/evb", 5, false), 1);
    char got[8];
    assert_int_equal(evbuffer_remove(buf, got, sizeof(got)), 7);
    assert_memory_equal(got, "payload", 7);
    evbuffer_free(buf);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_lookup_empty_gives_fill_with_busy_object),
        T(test_lookup_busy_with_waiter_waits_on_same_object),
        T(test_lookup_busy_without_waiter_passes),
        T(test_fill_wakes_waiter_on_its_base),
        T(test_waiter_queued_once_for_many_changes),
        T(test_waiter_cancel_drops_queued_callback),
        T(test_waiter_cancel_keeps_other_waiters),
        T(test_lookup_while_filling_is_hit),
        T(test_fill_known_length_body_in_one_chunk),
        T(test_fill_unknown_length_body_in_growing_chunks),
        T(test_fill_empty_body),
        T(test_fill_failed_tells_waiters_and_drops_object),
        T(test_waiter_called_on_its_own_thread),
        T(test_obj_fresh_age_and_lifetime),
        T(test_obj_fresh_counts_milliseconds),
        T(test_obj_fresh_no_cache_never_fresh),
        T(test_lookup_fresh_then_stale_without_swr_fills),
        T(test_stale_within_swr_served_with_refresh),
        T(test_stale_beyond_swr_fills),
        T(test_stale_must_revalidate_fills_with_stale_variant),
        T(test_no_cache_object_fills_with_stored_variant),
        T(test_no_cache_object_not_served_stale),
        T(test_pass_tells_waiters),
        T(test_pass_ttl_passes_before_expiry),
        T(test_pass_ttl_expired_gives_fill),
        T(test_expired_pass_marker_released),
        T(test_pass_markers_bounded_by_memory),
        T(test_pass_without_ttl_drops_placeholder),
        T(test_abort_tells_waiters_and_key_fills_again),
        T(test_vary_each_request_finds_its_variant),
        T(test_vary_normalised_values_match),
        T(test_vary_new_response_replaces_its_variant_only),
        T(test_refresh_shares_stale_body),
        T(test_refresh_keeps_memory_accounting),
        T(test_refresh_twice_shares_original_owner),
        T(test_purge_exact_removes_every_variant_of_key_only),
        T(test_purge_prefix_removes_matching_keys),
        T(test_purge_prefix_many),
        T(test_purge_leaves_reader_body_intact),
        T(test_memory_bound_holds_after_every_fill),
        T(test_object_larger_than_memory_not_stored),
        T(test_too_big_by_content_length_refused),
        T(test_too_big_boundary_is_max_object),
        T(test_too_big_while_appending_reader_keeps_every_byte),
        T(test_refs_table_eviction_readers),
        T(test_refs_evbuffer_reference_outlives_object),
    };
#undef T
    return cmocka_run_group_tests_name("cache store", tests, NULL, NULL);
}
