/* test_reader.c — fg_cache_reader through the public API only: a complete body in one
 * read, chunked framing, reading while the object fills (the callback runs when bytes
 * come), a fill that breaks off, stop, an empty body, and a filler on another thread
 * (the lock-free read protocol under ThreadSanitizer). Bytes reach the output by
 * reference: the object outlives every other reference while the output holds one. */
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

#include "cache/cache.h"

#define KIB 1024u

static const char HEAD[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain";

struct env {
    struct event_base *base;
    struct fg_cache_notifier *notifier;
    struct fg_cache *c;
    struct evbuffer *out;
    int calls; /* reader callbacks */
};

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    e->base = event_base_new();
    e->notifier = fg_cache_notifier_new(e->base);
    struct fg_cache_limits lim = {.memory = 64u << 20, .max_object = 8u << 20};
    e->c = fg_cache_new("reader", &lim);
    e->out = evbuffer_new();
    assert_non_null(e->c);
    assert_non_null(e->out);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    evbuffer_free(e->out);
    fg_cache_free(e->c);
    fg_cache_notifier_free(e->notifier);
    event_base_free(e->base);
    free(e);
    return 0;
}

static void pattern(char *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)((i * 7 + seed) & 0xff);
}

static void reader_cb(struct fg_cache_waiter *w)
{
    struct env *e = w->arg;
    e->calls++;
}

/* A miss on key: the busy object to fill (the caller's reference). */
static struct fg_cache_obj *miss(struct env *e, const char *key)
{
    size_t len = strlen(key);
    struct fg_cache_request rq = {.key = key,
                                  .key_len = len,
                                  .hash = fg_cache_key_hash(key, len),
                                  .now_ms = (int64_t)time(NULL) * 1000};
    struct fg_cache_obj *obj, *fill;
    assert_int_equal(fg_cache_lookup(e->c, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    assert_null(obj);
    return fill;
}

static void publish(struct fg_cache_obj *fill, uint64_t content_length)
{
    struct fg_cache_meta m;
    fg_cache_meta_init(&m);
    m.status = 200;
    m.content_length = content_length;
    m.lifetime = 60;
    m.response_time_ms = (int64_t)time(NULL) * 1000;
    assert_true(fg_cache_fill_head(fill, &m, HEAD, strlen(HEAD), NULL, 0, NULL, 0));
}

static bool run_until(struct env *e, int want)
{
    for (int i = 0; i < 2000 && e->calls < want; i++) {
        event_base_loop(e->base, EVLOOP_NONBLOCK);
        struct timespec ms = {0, 1000 * 1000};
        if (e->calls < want)
            nanosleep(&ms, NULL);
    }
    return e->calls >= want;
}

static size_t take(struct env *e, char *buf, size_t cap)
{
    size_t n = evbuffer_get_length(e->out);
    assert_true(n <= cap);
    evbuffer_remove(e->out, buf, n);
    return n;
}

static void test_complete_body_in_one_read(void **state)
{
    struct env *e = *state;
    static char body[40 * KIB], got[40 * KIB];
    pattern(body, sizeof(body), 1);
    struct fg_cache_obj *fill = miss(e, "h/complete");
    publish(fill, FG_CACHE_NO_VALUE); /* unknown length: several 16 KiB chunks */
    for (size_t off = 0; off < sizeof(body); off += 5000)
        fg_cache_fill_append(fill, body + off,
                             sizeof(body) - off < 5000 ? sizeof(body) - off : 5000);
    fg_cache_fill_done(fill, true);
    assert_int_equal(fg_cache_obj_length(fill), sizeof(body));

    struct fg_cache_reader r;
    fg_cache_reader_start(&r, fill, e->notifier, reader_cb, e);
    fg_cache_obj_unref(fill);
    uint64_t added = 0;
    assert_int_equal(fg_cache_reader_read(&r, e->out, false, &added), FG_CACHE_READ_END);
    assert_int_equal(added, sizeof(body));
    fg_cache_reader_stop(&r);
    /* The output's references keep the object: purge it, then read the bytes. */
    fg_cache_purge(e->c, "h/complete", 10, false);
    assert_int_equal(take(e, got, sizeof(got)), sizeof(body));
    assert_memory_equal(got, body, sizeof(body));
    assert_int_equal(e->calls, 0);
}

static void test_chunked_framing(void **state)
{
    struct env *e = *state;
    struct fg_cache_obj *fill = miss(e, "h/chunked");
    publish(fill, FG_CACHE_NO_VALUE);
    fg_cache_fill_append(fill, "hello", 5);
    struct fg_cache_reader r;
    fg_cache_reader_start(&r, fill, e->notifier, reader_cb, e);
    uint64_t added;
    assert_int_equal(fg_cache_reader_read(&r, e->out, true, &added), FG_CACHE_READ_MORE);
    assert_int_equal(added, 5);
    fg_cache_fill_append(fill, " world", 6);
    fg_cache_fill_done(fill, true);
    assert_true(run_until(e, 1));
    assert_int_equal(fg_cache_reader_read(&r, e->out, true, &added), FG_CACHE_READ_END);
    assert_int_equal(added, 6);
    char got[64];
    size_t n = take(e, got, sizeof(got));
    assert_int_equal(n, strlen("5\r\nhello\r\n6\r\n world\r\n"));
    assert_memory_equal(got, "5\r\nhello\r\n6\r\n world\r\n", n);
    fg_cache_reader_stop(&r);
    fg_cache_obj_unref(fill);
}

/* The callback runs when bytes come, not before; every byte arrives once, in order. */
static void test_read_while_filling(void **state)
{
    struct env *e = *state;
    static char body[50 * KIB], got[50 * KIB];
    pattern(body, sizeof(body), 2);
    struct fg_cache_obj *fill = miss(e, "h/filling");
    publish(fill, sizeof(body)); /* known length: one chunk, published piece by piece */
    struct fg_cache_reader r;
    fg_cache_reader_start(&r, fill, e->notifier, reader_cb, e);
    uint64_t added, total = 0;
    assert_int_equal(fg_cache_reader_read(&r, e->out, false, &added), FG_CACHE_READ_MORE);
    assert_int_equal(added, 0);
    for (int i = 0; i < 5; i++)
        event_base_loop(e->base, EVLOOP_NONBLOCK);
    assert_int_equal(e->calls, 0); /* nothing came, nobody called */
    enum fg_cache_read_status st = FG_CACHE_READ_MORE;
    for (size_t off = 0; off < sizeof(body); off += 10 * KIB) {
        int before = e->calls;
        fg_cache_fill_append(fill, body + off, 10 * KIB);
        if (off + 10 * KIB == sizeof(body))
            fg_cache_fill_done(fill, true);
        assert_true(run_until(e, before + 1));
        st = fg_cache_reader_read(&r, e->out, false, &added);
        total += added;
    }
    assert_int_equal(st, FG_CACHE_READ_END);
    assert_int_equal(total, sizeof(body));
    assert_int_equal(take(e, got, sizeof(got)), sizeof(body));
    assert_memory_equal(got, body, sizeof(body));
    fg_cache_reader_stop(&r);
    fg_cache_obj_unref(fill);
}

static void test_fill_broke_off(void **state)
{
    struct env *e = *state;
    struct fg_cache_obj *fill = miss(e, "h/broken");
    publish(fill, 100);
    fg_cache_fill_append(fill, "partial", 7);
    struct fg_cache_reader r;
    fg_cache_reader_start(&r, fill, e->notifier, reader_cb, e);
    uint64_t added;
    assert_int_equal(fg_cache_reader_read(&r, e->out, false, &added), FG_CACHE_READ_MORE);
    assert_int_equal(added, 7);
    fg_cache_fill_done(fill, false);
    assert_true(run_until(e, 1));
    assert_int_equal(fg_cache_reader_read(&r, e->out, false, &added), FG_CACHE_READ_FAILED);
    assert_int_equal(added, 0);
    fg_cache_reader_stop(&r);
    fg_cache_obj_unref(fill);
}

/* After stop, appends call nobody (and a never-started reader stops safely). */
static void test_stop_ends_callbacks(void **state)
{
    struct env *e = *state;
    struct fg_cache_reader idle;
    memset(&idle, 0, sizeof(idle));
    fg_cache_reader_stop(&idle);
    struct fg_cache_obj *fill = miss(e, "h/stop");
    publish(fill, FG_CACHE_NO_VALUE);
    struct fg_cache_reader r;
    fg_cache_reader_start(&r, fill, e->notifier, reader_cb, e);
    uint64_t added;
    assert_int_equal(fg_cache_reader_read(&r, e->out, false, &added), FG_CACHE_READ_MORE);
    fg_cache_fill_append(fill, "x", 1); /* queues the callback... */
    fg_cache_reader_stop(&r);           /* ...which stop takes back */
    fg_cache_fill_append(fill, "y", 1);
    fg_cache_fill_done(fill, true);
    for (int i = 0; i < 20; i++)
        event_base_loop(e->base, EVLOOP_NONBLOCK);
    assert_int_equal(e->calls, 0);
    fg_cache_obj_unref(fill);
}

static void test_empty_body(void **state)
{
    struct env *e = *state;
    struct fg_cache_obj *fill = miss(e, "h/empty");
    publish(fill, 0);
    fg_cache_fill_done(fill, true);
    struct fg_cache_reader r;
    fg_cache_reader_start(&r, fill, e->notifier, reader_cb, e);
    uint64_t added = 99;
    assert_int_equal(fg_cache_reader_read(&r, e->out, true, &added), FG_CACHE_READ_END);
    assert_int_equal(added, 0);
    assert_int_equal(evbuffer_get_length(e->out), 0);
    fg_cache_reader_stop(&r);
    fg_cache_obj_unref(fill);
}

/* ---- a filler on another thread ---------------------------------------------------------- */

struct filler {
    struct fg_cache_obj *fill;
    const char *body;
    size_t len;
};

static void *filler_main(void *arg)
{
    struct filler *f = arg;
    for (size_t off = 0; off < f->len; off += 700) {
        size_t n = f->len - off < 700 ? f->len - off : 700;
        fg_cache_fill_append(f->fill, f->body + off, n);
        if (off % 7000 == 0)
            sched_yield();
    }
    fg_cache_fill_done(f->fill, true);
    return NULL;
}

/* Readers on this thread stream what a filler on another thread appends: every byte, in
 * order, each reader woken on its own event base. */
static void test_filler_on_another_thread(void **state)
{
    struct env *e = *state;
    static char body[300 * KIB], got[300 * KIB];
    pattern(body, sizeof(body), 3);
    for (int round = 0; round < 4; round++) {
        char key[32];
        snprintf(key, sizeof(key), "h/thread%d", round);
        struct fg_cache_obj *fill = miss(e, key);
        publish(fill, round % 2 ? sizeof(body) : FG_CACHE_NO_VALUE);
        struct fg_cache_reader r;
        fg_cache_reader_start(&r, fill, e->notifier, reader_cb, e);
        struct filler f = {.fill = fill, .body = body, .len = sizeof(body)};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, filler_main, &f), 0);
        enum fg_cache_read_status st;
        uint64_t added, total = 0;
        time_t until = time(NULL) + 20;
        do {
            st = fg_cache_reader_read(&r, e->out, false, &added);
            total += added;
            if (st != FG_CACHE_READ_MORE)
                break;
            /* Sleep until the notifier says more came (at most 100 ms a turn). */
            struct timeval tick = {0, 100 * 1000};
            event_base_loopexit(e->base, &tick);
            event_base_loop(e->base, EVLOOP_ONCE);
        } while (time(NULL) < until);
        assert_int_equal(pthread_join(th, NULL), 0);
        assert_int_equal(st, FG_CACHE_READ_END);
        assert_int_equal(total, sizeof(body));
        assert_int_equal(take(e, got, sizeof(got)), sizeof(body));
        assert_memory_equal(got, body, sizeof(body));
        fg_cache_reader_stop(&r);
        fg_cache_obj_unref(fill);
    }
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_complete_body_in_one_read), T(test_chunked_framing),
        T(test_read_while_filling),        T(test_fill_broke_off),
        T(test_stop_ends_callbacks),       T(test_empty_body),
        T(test_filler_on_another_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
