/*
 * test_pool.c — the upstream pool against real sockets on 127.0.0.1: reuse, the idle cap,
 * keepalive_requests, an app that closes idle connections, passive health and balancing.
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/listener.h>

#include "upstream/upstream.h"

#define MAX_ACCEPTED 64

struct origin {
    struct evconnlistener *evl;
    int port;
    int accepted[MAX_ACCEPTED];
    int n_accepted;
};

struct fixture {
    struct event_base *base;
    struct origin origins[2];
    struct fg_conf_upstream_server servers[2];
    struct fg_conf_upstream conf;
    struct fg_upstream_stats stats;
    struct fg_upstream_pool *pool;
};

static void origin_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                          int len, void *arg)
{
    struct origin *o = arg;
    if (o->n_accepted < MAX_ACCEPTED)
        o->accepted[o->n_accepted++] = fd;
    else
        close(fd);
}

static void origin_start(struct event_base *base, struct origin *o)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    o->evl =
        evconnlistener_new_bind(base, origin_accept, o, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                16, (struct sockaddr *)&sin, sizeof(sin));
    assert_non_null(o->evl);
    struct sockaddr_in got;
    socklen_t gl = sizeof(got);
    getsockname(evconnlistener_get_fd(o->evl), (struct sockaddr *)&got, &gl);
    o->port = ntohs(got.sin_port);
}

static void server_conf(struct fg_conf_upstream_server *s, int port)
{
    memset(s, 0, sizeof(*s));
    struct sockaddr_in *sin = (struct sockaddr_in *)&s->addr.ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->addr.len = sizeof(*sin);
    snprintf(s->addr.text, sizeof(s->addr.text), "127.0.0.1:%d", port);
    s->weight = 1;
    s->max_fails = 2;
    s->fail_timeout_ms = 10000;
}

static int setup_n(void **state, size_t n)
{
    struct fixture *f = calloc(1, sizeof(*f));
    f->base = event_base_new();
    for (size_t i = 0; i < n; i++) {
        origin_start(f->base, &f->origins[i]);
        server_conf(&f->servers[i], f->origins[i].port);
    }
    snprintf(f->conf.name, sizeof(f->conf.name), "app");
    f->conf.servers = f->servers;
    f->conf.n_servers = n;
    f->conf.keepalive = 4;
    f->conf.keepalive_timeout_ms = 30000;
    f->conf.keepalive_requests = 100;
    f->conf.connect_timeout_ms = 1000;
    f->conf.read_timeout_ms = 1000;
    f->conf.send_timeout_ms = 1000;
    snprintf(f->stats.name, sizeof(f->stats.name), "app");
    f->stats.n_servers = n;
    *state = f;
    return 0;
}

static int setup1(void **state)
{
    return setup_n(state, 1);
}

static int setup2(void **state)
{
    return setup_n(state, 2);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    if (f->pool)
        fg_upstream_pool_retire(f->pool);
    for (size_t i = 0; i < 2; i++) {
        if (f->origins[i].evl)
            evconnlistener_free(f->origins[i].evl);
        for (int k = 0; k < f->origins[i].n_accepted; k++)
            close(f->origins[i].accepted[k]);
    }
    event_base_free(f->base);
    free(f);
    return 0;
}

static void conn_event(struct bufferevent *bev, short what, void *arg)
{
    struct fg_upstream_conn *uc = arg;
    if (what & BEV_EVENT_CONNECTED)
        fg_upstream_connected(uc);
}

/* Acquire and wait (bounded) until connected. */
static struct fg_upstream_conn *get(struct fixture *f, bool fresh, int exclude)
{
    struct fg_upstream_conn *uc = fg_upstream_acquire(f->pool, fresh, exclude);
    assert_non_null(uc);
    bufferevent_setcb(uc->bev, NULL, NULL, conn_event, uc);
    bufferevent_enable(uc->bev, EV_READ | EV_WRITE);
    for (int i = 0; i < 200 && !uc->connected; i++)
        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(1000);
    assert_true(uc->connected);
    return uc;
}

static void spin(struct fixture *f, int ms)
{
    for (int i = 0; i < ms; i++) {
        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        usleep(1000);
    }
}

static void test_reuse_after_release(void **state)
{
    struct fixture *f = *state;
    f->pool = fg_upstream_pool_new(f->base, &f->conf, &f->stats);
    struct fg_upstream_conn *a = get(f, false, -1);
    assert_false(a->reused);
    fg_upstream_release(a, true);
    assert_int_equal(fg_counter_get(&f->stats.connections_idle), 1);
    struct fg_upstream_conn *b = get(f, false, -1);
    assert_ptr_equal(a, b);
    assert_true(b->reused);
    assert_int_equal(fg_counter_get(&f->stats.reused), 1);
    assert_int_equal(fg_counter_get(&f->stats.connects), 1);
    fg_upstream_release(b, true);
    spin(f, 20);
    assert_int_equal(f->origins[0].n_accepted, 1);
}

static void test_not_reusable_is_closed(void **state)
{
    struct fixture *f = *state;
    f->pool = fg_upstream_pool_new(f->base, &f->conf, &f->stats);
    struct fg_upstream_conn *a = get(f, false, -1);
    fg_upstream_release(a, false);
    assert_int_equal(fg_counter_get(&f->stats.connections_idle), 0);
    struct fg_upstream_conn *b = get(f, false, -1);
    assert_false(b->reused);
    assert_int_equal(fg_counter_get(&f->stats.connects), 2);
    fg_upstream_release(b, true);
}

static void test_idle_cap(void **state)
{
    struct fixture *f = *state;
    f->conf.keepalive = 1;
    f->pool = fg_upstream_pool_new(f->base, &f->conf, &f->stats);
    struct fg_upstream_conn *a = get(f, false, -1);
    struct fg_upstream_conn *b = get(f, false, -1);
    assert_ptr_not_equal(a, b);
    assert_int_equal(fg_counter_get(&f->stats.connections_active), 2);
    fg_upstream_release(a, true);
    fg_upstream_release(b, true);
    assert_int_equal(fg_counter_get(&f->stats.connections_idle), 1);
    assert_int_equal(fg_counter_get(&f->stats.connections_active), 0);
}

static void test_keepalive_requests(void **state)
{
    struct fixture *f = *state;
    f->conf.keepalive_requests = 2;
    f->pool = fg_upstream_pool_new(f->base, &f->conf, &f->stats);
    struct fg_upstream_conn *a = get(f, false, -1);
    fg_upstream_release(a, true);
    struct fg_upstream_conn *b = get(f, false, -1);
    assert_ptr_equal(a, b);
    assert_int_equal(b->requests, 2);
    fg_upstream_release(b, true); /* second request done: retired */
    assert_int_equal(fg_counter_get(&f->stats.connections_idle), 0);
}

static void test_fresh_skips_idle(void **state)
{
    struct fixture *f = *state;
    f->pool = fg_upstream_pool_new(f->base, &f->conf, &f->stats);
    struct fg_upstream_conn *a = get(f, false, -1);
    fg_upstream_release(a, true);
    struct fg_upstream_conn *b = get(f, true, -1);
    assert_false(b->reused);
    assert_int_equal(fg_counter_get(&f->stats.connects), 2);
    assert_int_equal(fg_counter_get(&f->stats.connections_idle), 1);
    fg_upstream_release(b, true);
}

static void test_app_closes_idle(void **state)
{
    struct fixture *f = *state;
    f->pool = fg_upstream_pool_new(f->base, &f->conf, &f->stats);
    struct fg_upstream_conn *a = get(f, false, -1);
    fg_upstream_release(a, true);
    spin(f, 10);
    assert_int_equal(f->origins[0].n_accepted, 1);
    close(f->origins[0].accepted[0]); /* the app's own keep-alive timeout */
    f->origins[0].n_accepted = 0;
    for (int i = 0; i < 500 && fg_counter_get(&f->stats.connections_idle) != 0; i++)
        spin(f, 1);
    assert_int_equal(fg_counter_get(&f->stats.connections_idle), 0);
}

static void test_idle_timeout(void **state)
{
    struct fixture *f = *state;
    f->conf.keepalive_timeout_ms = 50;
    f->pool = fg_upstream_pool_new(f->base, &f->conf, &f->stats);
    struct fg_upstream_conn *a = get(f, false, -1);
    fg_upstream_release(a, true);
    assert_int_equal(fg_counter_get(&f->stats.connections_idle), 1);
    for (int i = 0; i < 1000 && fg_counter_get(&f->stats.connections_idle) != 0; i++)
        spin(f, 1);
    assert_int_equal(fg_counter_get(&f->stats.connections_idle), 0);
}

static void test_round_robin(void **state)
{
    struct fixture *f = *state;
    f->servers[1].weight = 3;
    f->pool = fg_upstream_pool_new(f->base, &f->conf, &f->stats);
    int count[2] = {0, 0};
    for (int i = 0; i < 8; i++) {
        struct fg_upstream_conn *c = get(f, false, -1);
        count[c->server]++;
        fg_upstream_release(c, false);
    }
    assert_int_equal(count[0], 2);
    assert_int_equal(count[1], 6);
}

static void test_passive_health(void **state)
{
    struct fixture *f = *state;
    f->pool = fg_upstream_pool_new(f->base, &f->conf, &f->stats);
    fg_upstream_report(f->pool, 0, false, FG_UPSTREAM_FAIL_CONNECT);
    fg_upstream_report(f->pool, 0, false, FG_UPSTREAM_FAIL_RESET);
    assert_int_equal(fg_counter_get(&f->stats.servers[0].down), 1);
    assert_int_equal(fg_counter_get(&f->stats.err_connect), 1);
    assert_int_equal(fg_counter_get(&f->stats.err_reset), 1);
    for (int i = 0; i < 6; i++) {
        struct fg_upstream_conn *c = get(f, false, -1);
        assert_int_equal(c->server, 1);
        fg_upstream_release(c, false);
    }
}

static void test_one_failure_is_not_down(void **state)
{
    struct fixture *f = *state;
    f->pool = fg_upstream_pool_new(f->base, &f->conf, &f->stats);
    fg_upstream_report(f->pool, 0, false, FG_UPSTREAM_FAIL_TIMEOUT);
    fg_upstream_report(f->pool, 0, true, FG_UPSTREAM_FAIL_CONNECT); /* a success resets */
    fg_upstream_report(f->pool, 0, false, FG_UPSTREAM_FAIL_TIMEOUT);
    assert_int_equal(fg_counter_get(&f->stats.servers[0].down), 0);
    int count[2] = {0, 0};
    for (int i = 0; i < 4; i++) {
        struct fg_upstream_conn *c = get(f, false, -1);
        count[c->server]++;
        fg_upstream_release(c, false);
    }
    assert_int_equal(count[0], 2);
}

static void test_exclude(void **state)
{
    struct fixture *f = *state;
    f->pool = fg_upstream_pool_new(f->base, &f->conf, &f->stats);
    for (int i = 0; i < 4; i++) {
        struct fg_upstream_conn *c = get(f, false, 0);
        assert_int_equal(c->server, 1);
        fg_upstream_release(c, false);
    }
}

static void test_least_conn(void **state)
{
    struct fixture *f = *state;
    f->conf.balance = FG_BALANCE_LEAST_CONN;
    f->pool = fg_upstream_pool_new(f->base, &f->conf, &f->stats);
    struct fg_upstream_conn *a = get(f, false, -1);
    struct fg_upstream_conn *b = get(f, false, -1);
    assert_int_not_equal(a->server, b->server);
    size_t freed = a->server;
    fg_upstream_release(a, false);
    struct fg_upstream_conn *c = get(f, false, -1);
    assert_int_equal(c->server, freed); /* the server with no connection in use */
    fg_upstream_release(b, false);
    fg_upstream_release(c, false);
}

static void record_event(struct bufferevent *bev, short what, void *arg)
{
    *(short *)arg |= what;
}

static void test_connect_refused(void **state)
{
    struct fixture *f = *state;
    evconnlistener_free(f->origins[0].evl); /* nothing listens there any more */
    f->origins[0].evl = NULL;
    f->pool = fg_upstream_pool_new(f->base, &f->conf, &f->stats);
    struct fg_upstream_conn *uc = fg_upstream_acquire(f->pool, false, -1);
    if (uc == NULL) {
        /* refused synchronously: it must have been counted */
        assert_int_equal(fg_counter_get(&f->stats.err_connect), 1);
        return;
    }
    short seen = 0;
    bufferevent_setcb(uc->bev, NULL, NULL, record_event, &seen);
    bufferevent_enable(uc->bev, EV_READ | EV_WRITE);
    for (int i = 0; i < 500 && seen == 0; i++)
        spin(f, 1);
    assert_true(seen & BEV_EVENT_ERROR);
    assert_false(seen & BEV_EVENT_CONNECTED);
    assert_false(uc->connected);
    fg_upstream_release(uc, true); /* never connected: closed, not pooled */
    assert_int_equal(fg_counter_get(&f->stats.connections_idle), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reuse_after_release, setup1, teardown),
        cmocka_unit_test_setup_teardown(test_not_reusable_is_closed, setup1, teardown),
        cmocka_unit_test_setup_teardown(test_idle_cap, setup1, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_requests, setup1, teardown),
        cmocka_unit_test_setup_teardown(test_fresh_skips_idle, setup1, teardown),
        cmocka_unit_test_setup_teardown(test_app_closes_idle, setup1, teardown),
        cmocka_unit_test_setup_teardown(test_idle_timeout, setup1, teardown),
        cmocka_unit_test_setup_teardown(test_round_robin, setup2, teardown),
        cmocka_unit_test_setup_teardown(test_passive_health, setup2, teardown),
        cmocka_unit_test_setup_teardown(test_one_failure_is_not_down, setup2, teardown),
        cmocka_unit_test_setup_teardown(test_exclude, setup2, teardown),
        cmocka_unit_test_setup_teardown(test_least_conn, setup2, teardown),
        cmocka_unit_test_setup_teardown(test_connect_refused, setup1, teardown),
    };
    return cmocka_run_group_tests_name("upstream pool", tests, NULL, NULL);
}
