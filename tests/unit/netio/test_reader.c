/* test_reader.c — fg_reader and fg_flush over a socketpair: reads, EOF, the read timeout,
 * the high watermark pause and resume, trigger, and write-through. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "netio/netio.h"

struct fx {
    struct event_base *base;
    struct bufferevent *bev;
    struct fg_reader r;
    int peer;
    int reads;
    short event;
};

static void on_read(void *arg)
{
    ((struct fx *)arg)->reads++;
}

static void on_event(short what, void *arg)
{
    ((struct fx *)arg)->event = what;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    f->base = event_base_new();
    f->bev = bufferevent_socket_new(f->base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    f->peer = sv[1];
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    fg_reader_free(&f->r);
    bufferevent_free(f->bev);
    close(f->peer);
    event_base_free(f->base);
    free(f);
    return 0;
}

static void spin(struct fx *f, int n)
{
    for (int i = 0; i < n; i++) {
        event_base_loop(f->base, EVLOOP_NONBLOCK);
        usleep(1000);
    }
}

static size_t input_len(struct fx *f)
{
    return evbuffer_get_length(bufferevent_get_input(f->bev));
}

static void test_reads_and_eof(void **state)
{
    struct fx *f = *state;
    assert_true(fg_reader_init(&f->r, f->bev, 0));
    fg_reader_setcb(&f->r, on_read, on_event, f);
    fg_reader_enable(&f->r);
    assert_int_equal(write(f->peer, "hello", 5), 5);
    spin(f, 10);
    assert_true(f->reads >= 1);
    assert_int_equal(input_len(f), 5);
    assert_memory_equal(evbuffer_pullup(bufferevent_get_input(f->bev), 5), "hello", 5);
    shutdown(f->peer, SHUT_WR);
    spin(f, 10);
    assert_int_equal(f->event, BEV_EVENT_EOF | BEV_EVENT_READING);
    assert_false(f->r.enabled);
}

static void test_large_read_in_big_pieces(void **state)
{
    struct fx *f = *state;
    assert_true(fg_reader_init(&f->r, f->bev, 0));
    fg_reader_setcb(&f->r, on_read, on_event, f);
    fg_reader_enable(&f->r);
    static char big[60000];
    memset(big, 'z', sizeof(big));
    ssize_t w = write(f->peer, big, sizeof(big));
    assert_true(w > 16384);
    spin(f, 5);
    assert_int_equal(input_len(f), (size_t)w);
    assert_true(f->reads <= 3); /* libevent 2.1 would have needed 4 KiB reads */
}

static void test_disabled_reads_nothing(void **state)
{
    struct fx *f = *state;
    assert_true(fg_reader_init(&f->r, f->bev, 0));
    fg_reader_setcb(&f->r, on_read, on_event, f);
    assert_int_equal(write(f->peer, "x", 1), 1);
    spin(f, 10);
    assert_int_equal(f->reads, 0);
    fg_reader_enable(&f->r);
    spin(f, 10);
    assert_int_equal(f->reads, 1);
}

static void test_timeout(void **state)
{
    struct fx *f = *state;
    assert_true(fg_reader_init(&f->r, f->bev, 0));
    fg_reader_setcb(&f->r, on_read, on_event, f);
    fg_reader_set_timeout(&f->r, 50);
    fg_reader_enable(&f->r);
    spin(f, 20);
    assert_int_equal(f->event, 0); /* 20 ms: not yet */
    for (int i = 0; i < 200 && f->event == 0; i++)
        spin(f, 1);
    assert_int_equal(f->event, BEV_EVENT_TIMEOUT | BEV_EVENT_READING);
}

/* A timeout taken back (0) is gone: an owner that wants none (a request body still
 * uploading) must not meet the previous owner's (a pooled connection's idle timeout). */
static void test_timeout_cleared(void **state)
{
    struct fx *f = *state;
    assert_true(fg_reader_init(&f->r, f->bev, 0));
    fg_reader_setcb(&f->r, on_read, on_event, f);
    fg_reader_set_timeout(&f->r, 30);
    fg_reader_enable(&f->r);
    fg_reader_set_timeout(&f->r, 0);
    spin(f, 120);
    assert_int_equal(f->event, 0);
    assert_true(f->r.enabled);
}

/* The inactivity timeout restarts with every read: bytes every 20 ms keep a 60 ms timeout
 * from firing, silence then lets it fire. */
static void test_timeout_restarts_with_reads(void **state)
{
    struct fx *f = *state;
    assert_true(fg_reader_init(&f->r, f->bev, 0));
    fg_reader_setcb(&f->r, on_read, on_event, f);
    fg_reader_set_timeout(&f->r, 60);
    fg_reader_enable(&f->r);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(write(f->peer, "x", 1), 1);
        spin(f, 20);
        assert_int_equal(f->event, 0);
    }
    assert_int_equal(f->reads, 8);
    for (int i = 0; i < 300 && f->event == 0; i++)
        spin(f, 1);
    assert_int_equal(f->event, BEV_EVENT_TIMEOUT | BEV_EVENT_READING);
}

static void test_high_water_pauses_and_resumes(void **state)
{
    struct fx *f = *state;
    assert_true(fg_reader_init(&f->r, f->bev, 1000));
    fg_reader_setcb(&f->r, on_read, on_event, f);
    fg_reader_enable(&f->r);
    static char chunk[1500];
    memset(chunk, 'a', sizeof(chunk));
    assert_int_equal(write(f->peer, chunk, sizeof(chunk)), (ssize_t)sizeof(chunk));
    spin(f, 10);
    assert_int_equal(input_len(f), 1500);
    assert_false(f->r.armed); /* paused: over the high watermark */
    assert_int_equal(write(f->peer, chunk, sizeof(chunk)), (ssize_t)sizeof(chunk));
    spin(f, 10);
    assert_int_equal(input_len(f), 1500); /* nothing more read */
    evbuffer_drain(bufferevent_get_input(f->bev), 1500);
    assert_true(f->r.armed); /* draining resumed it */
    spin(f, 10);
    assert_int_equal(input_len(f), 1500);
}

static void test_trigger_without_bytes(void **state)
{
    struct fx *f = *state;
    assert_true(fg_reader_init(&f->r, f->bev, 0));
    fg_reader_setcb(&f->r, on_read, on_event, f);
    fg_reader_enable(&f->r);
    fg_reader_trigger(&f->r);
    spin(f, 3);
    assert_int_equal(f->reads, 1);
    assert_int_equal(f->event, 0);
}

static void test_flush_writes_at_once(void **state)
{
    struct fx *f = *state;
    evbuffer_add(bufferevent_get_output(f->bev), "now", 3);
    assert_int_equal(fg_flush(f->bev), 0); /* no loop turn needed */
    char buf[8];
    assert_int_equal(read(f->peer, buf, sizeof(buf)), 3);
    assert_memory_equal(buf, "now", 3);
    assert_false(bufferevent_get_enabled(f->bev) & EV_WRITE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reads_and_eof, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_read_in_big_pieces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disabled_reads_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_cleared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_restarts_with_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_high_water_pauses_and_resumes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trigger_without_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_writes_at_once, setup, teardown),
    };
    return cmocka_run_group_tests_name("netio", tests, NULL, NULL);
}
