/*
 * test_exchange.c — one upstream exchange against origins on 127.0.0.1 that the test
 * scripts byte by byte: body framing (length, chunked split anywhere, close-delimited),
 * the reuse decision, interim answers, the retry rules (another server after a failed
 * connect; once on a fresh connection when a reused one dies, never for a request that
 * is not retryable, never after a timeout), request bodies with our own chunk framing,
 * back-pressure, and owners that hand over, abort or refuse an answer from inside a
 * callback. Every wait runs the event loop until the awaited event (bounded), never a
 * sleep.
 */
#include <arpa/inet.h>
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
#include <event2/listener.h>

#include "upstream/upstream.h"

#define MAX_PEERS 8

/* One connection as the origin sees it. */
struct peer {
    struct bufferevent *bev;
    bool eof;
};

struct origin {
    struct evconnlistener *evl;
    int port;
    struct peer peers[MAX_PEERS];
    int n_peers;
};

/* What an owner saw. */
struct owner {
    int heads, ends, errors;
    int status;
    struct evbuffer *body;
    struct fg_upstream_error err;
    char err_detail[128];
    /* behaviours */
    bool pause_on_body;
    bool abort_on_body;
    bool fail_on_head;
    struct owner *hand_to;             /* on_head: set_owner(hand_to) */
    int interims;                      /* on_interim calls (ops_interim only) */
    int statuses[4];                   /* their statuses */
    struct fg_upstream_conn *upgraded; /* on_upgrade's connection (ops_interim only) */
    struct fg_upstream_timing timing;  /* as on_head saw it */
};

struct fixture {
    struct event_base *base;
    struct origin origins[2];
    struct fg_conf_upstream_server servers[2];
    struct fg_conf_upstream conf;
    struct fg_upstream_stats stats;
    struct fg_upstream_pool *pool;
    struct owner a, b;
};

static const struct fg_upstream_exchange_ops ops;

/* ---- the origin ------------------------------------------------------------------------ */

static void peer_event(struct bufferevent *bev, short what, void *arg)
{
    struct peer *p = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        p->eof = true;
}

static void origin_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                          int len, void *arg)
{
    struct origin *o = arg;
    if (o->n_peers == MAX_PEERS) {
        close(fd);
        return;
    }
    struct peer *p = &o->peers[o->n_peers++];
    p->bev = bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(p->bev, NULL, NULL, peer_event, p);
    bufferevent_enable(p->bev, EV_READ);
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
    s->max_fails = 10;
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
    f->conf.read_timeout_ms = 2000;
    f->conf.send_timeout_ms = 1000;
    f->conf.retry_idempotent = true;
    snprintf(f->stats.name, sizeof(f->stats.name), "app");
    f->stats.n_servers = n;
    f->pool = fg_upstream_pool_new(f->base, &f->conf, &f->stats);
    f->a.body = evbuffer_new();
    f->b.body = evbuffer_new();
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
    fg_upstream_pool_retire(f->pool);
    for (size_t i = 0; i < 2; i++) {
        if (f->origins[i].evl)
            evconnlistener_free(f->origins[i].evl);
        for (int k = 0; k < f->origins[i].n_peers; k++)
            if (f->origins[i].peers[k].bev != NULL)
                bufferevent_free(f->origins[i].peers[k].bev);
    }
    evbuffer_free(f->a.body);
    evbuffer_free(f->b.body);
    event_base_free(f->base);
    free(f);
    return 0;
}

/* Run the loop until cond(f) holds; each turn waits for an event (at most 2 s in all). */
static bool wait_until(struct fixture *f, bool (*cond)(struct fixture *f, void *arg), void *arg)
{
    for (int i = 0; i < 1000 && !cond(f, arg); i++) {
        struct timeval limit = {2, 0};
        event_base_loopexit(f->base, &limit);
        event_base_loop(f->base, EVLOOP_ONCE);
    }
    return cond(f, arg);
}

/* A few turns of the loop that do not wait: what is ready runs, nothing more. */
static void turns(struct fixture *f, int n)
{
    for (int i = 0; i < n; i++)
        event_base_loop(f->base, EVLOOP_NONBLOCK);
}

struct want_bytes {
    struct peer *p;
    size_t n;
};

static bool got_bytes(struct fixture *f, void *arg)
{
    struct want_bytes *w = arg;
    return w->p->bev != NULL && evbuffer_get_length(bufferevent_get_input(w->p->bev)) >= w->n;
}

static bool got_head(struct fixture *f, void *arg)
{
    struct peer *p = arg;
    if (p->bev == NULL)
        return false;
    struct evbuffer *in = bufferevent_get_input(p->bev);
    return evbuffer_search(in, "\r\n\r\n", 4, NULL).pos >= 0;
}

struct want_peer {
    struct origin *o;
    int k;
};

static bool has_peer(struct fixture *f, void *arg)
{
    struct want_peer *w = arg;
    return w->o->n_peers > w->k;
}

/* The k-th connection of origin o once its request head arrived; the head is taken from
 * its input into out (NUL-terminated). */
static struct peer *request_on(struct fixture *f, struct origin *o, int k, char *out, size_t cap)
{
    struct want_peer wp = {o, k};
    assert_true(wait_until(f, has_peer, &wp));
    struct peer *p = &o->peers[k];
    assert_true(wait_until(f, got_head, p));
    struct evbuffer *in = bufferevent_get_input(p->bev);
    struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    size_t n = (size_t)end.pos + 4;
    assert_true(n < cap);
    evbuffer_remove(in, out, n);
    out[n] = '\0';
    return p;
}

/* The origin answers at once (written to the socket, not queued). */
static void answer(struct peer *p, const char *bytes)
{
    size_t len = strlen(bytes);
    assert_int_equal(send(bufferevent_getfd(p->bev), bytes, len, 0), (ssize_t)len);
}

static void hang_up(struct peer *p)
{
    bufferevent_free(p->bev);
    p->bev = NULL;
}

/* ---- the owner --------------------------------------------------------------------------- */

static void on_head(void *arg, struct fg_upstream_exchange *x, const struct fg_http_response *resp)
{
    struct owner *o = arg;
    o->heads++;
    o->status = resp->status;
    fg_upstream_exchange_timing(x, &o->timing);
    if (o->fail_on_head) {
        fg_upstream_exchange_fail(x, FG_UPSTREAM_FAIL_BAD_RESPONSE, 502, "refused by the owner");
        return;
    }
    if (o->hand_to != NULL)
        fg_upstream_exchange_set_owner(x, &ops, o->hand_to);
}

static void on_body(void *arg, struct fg_upstream_exchange *x, struct evbuffer *in, size_t n)
{
    struct owner *o = arg;
    evbuffer_remove_buffer(in, o->body, n);
    if (o->abort_on_body) {
        fg_upstream_exchange_abort(x);
        return;
    }
    if (o->pause_on_body)
        fg_upstream_exchange_pause(x);
}

static void on_end(void *arg, struct fg_upstream_exchange *x)
{
    struct owner *o = arg;
    o->ends++;
}

static void on_error(void *arg, struct fg_upstream_exchange *x, const struct fg_upstream_error *e)
{
    struct owner *o = arg;
    o->errors++;
    o->err = *e;
    snprintf(o->err_detail, sizeof(o->err_detail), "%s", e->detail);
    o->err.detail = o->err_detail;
    o->err.server = NULL;
}

static const struct fg_upstream_exchange_ops ops = {
    .on_head = on_head, .on_body = on_body, .on_end = on_end, .on_error = on_error};

static void on_interim(void *arg, struct fg_upstream_exchange *x,
                       const struct fg_http_response *resp)
{
    struct owner *o = arg;
    if (o->interims < 4)
        o->statuses[o->interims] = resp->status;
    o->interims++;
}

static void on_upgrade(void *arg, struct fg_upstream_exchange *x, struct fg_upstream_conn *uc)
{
    struct owner *o = arg;
    o->upgraded = uc;
}

/* An owner that wants interim answers and can take an upgraded connection (proxy.c). */
static const struct fg_upstream_exchange_ops ops_interim = {.on_head = on_head,
                                                            .on_body = on_body,
                                                            .on_end = on_end,
                                                            .on_error = on_error,
                                                            .on_interim = on_interim,
                                                            .on_upgrade = on_upgrade};

static bool finished(struct fixture *f, void *arg)
{
    struct owner *o = arg;
    return o->ends + o->errors > 0;
}

static bool has_head(struct fixture *f, void *arg)
{
    return ((struct owner *)arg)->heads > 0;
}

static bool has_body(struct fixture *f, void *arg)
{
    return evbuffer_get_length(((struct owner *)arg)->body) > 0;
}

static bool peer_closed(struct fixture *f, void *arg)
{
    return ((struct peer *)arg)->eof;
}

static const char GET[] = "GET /x HTTP/1.1\r\nHost: app\r\n\r\n";

static struct fg_upstream_exchange *start(struct fixture *f, struct owner *o,
                                          enum fg_upstream_body body, bool retryable)
{
    struct fg_upstream_request rq = {.head = GET,
                                     .head_len = sizeof(GET) - 1,
                                     .method = FG_HTTP_GET,
                                     .body = body,
                                     .retryable = retryable};
    struct fg_upstream_exchange *x = fg_upstream_exchange_start(f->pool, &rq, &ops, o);
    assert_non_null(x);
    return x;
}

static size_t body_is(struct owner *o, const char *want)
{
    size_t n = evbuffer_get_length(o->body);
    char buf[256];
    assert_true(n < sizeof(buf));
    evbuffer_remove(o->body, buf, n);
    buf[n] = '\0';
    assert_string_equal(buf, want);
    return n;
}

static uint64_t count(const fg_counter_t *c)
{
    return fg_counter_get(c);
}

/* ---- framing and reuse ----------------------------------------------------------------- */

static void test_length_body_then_reuse(void **state)
{
    struct fixture *f = *state;
    char req[512];
    start(f, &f->a, FG_UPSTREAM_BODY_NONE, true);
    struct peer *p = request_on(f, &f->origins[0], 0, req, sizeof(req));
    assert_string_equal(req, GET);
    answer(p, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel");
    assert_true(wait_until(f, has_head, &f->a));
    turns(f, 3);
    assert_int_equal(f->a.ends, 0); /* two bytes still to come */
    answer(p, "lo");
    assert_true(wait_until(f, finished, &f->a));
    assert_int_equal(f->a.status, 200);
    body_is(&f->a, "hello");
    assert_int_equal(count(&f->stats.connections_idle), 1);
    /* a new connection: its connect is timed (loopback: some microseconds) */
    assert_int_equal(f->a.timing.attempts, 1);
    assert_false(f->a.timing.reused);
    assert_true(f->a.timing.connect_us > 0 && f->a.timing.connect_us < 2000000);

    start(f, &f->b, FG_UPSTREAM_BODY_NONE, true);
    assert_ptr_equal(request_on(f, &f->origins[0], 0, req, sizeof(req)), p); /* same connection */
    answer(p, "HTTP/1.1 204 No Content\r\n\r\n");
    assert_true(wait_until(f, finished, &f->b));
    assert_int_equal(f->b.status, 204);
    assert_int_equal(f->origins[0].n_peers, 1);
    assert_int_equal(count(&f->stats.reused), 1);
    assert_true(f->b.timing.reused); /* the pooled one: no connect */
    assert_int_equal(f->b.timing.connect_us, 0);
    assert_int_equal(f->b.timing.attempts, 1);
    assert_int_equal(count(&f->stats.connections_idle), 1);
}

/* Chunk framing split at every awkward place: the payload comes out whole, and the
 * connection is kept. */
static void test_chunked_body_split_anywhere(void **state)
{
    struct fixture *f = *state;
    char req[512];
    start(f, &f->a, FG_UPSTREAM_BODY_NONE, true);
    struct peer *p = request_on(f, &f->origins[0], 0, req, sizeof(req));
    const char *pieces[] = {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5",
                            "\r",
                            "\nhel",
                            "lo\r\n6;ext=1\r\n wor",
                            "ld\r",
                            "\n0\r\nX-T: 1\r\n",
                            "\r\n"};
    for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
        answer(p, pieces[i]);
        turns(f, 3);
        if (i + 1 < sizeof(pieces) / sizeof(pieces[0]))
            assert_int_equal(f->a.ends, 0);
    }
    assert_true(wait_until(f, finished, &f->a));
    assert_int_equal(f->a.ends, 1);
    body_is(&f->a, "hello world");
    assert_int_equal(count(&f->stats.connections_idle), 1);
}

static void test_close_delimited_body_ends_at_eof(void **state)
{
    struct fixture *f = *state;
    char req[512];
    start(f, &f->a, FG_UPSTREAM_BODY_NONE, true);
    struct peer *p = request_on(f, &f->origins[0], 0, req, sizeof(req));
    answer(p, "HTTP/1.1 200 OK\r\n\r\nuntil ");
    answer(p, "the end");
    hang_up(p);
    assert_true(wait_until(f, finished, &f->a));
    assert_int_equal(f->a.ends, 1);
    body_is(&f->a, "until the end");
    assert_int_equal(count(&f->stats.connections_idle), 0);
}

static void test_connection_close_and_http10_are_not_reused(void **state)
{
    struct fixture *f = *state;
    char req[512];
    start(f, &f->a, FG_UPSTREAM_BODY_NONE, true);
    struct peer *p = request_on(f, &f->origins[0], 0, req, sizeof(req));
    answer(p, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
    assert_true(wait_until(f, finished, &f->a));
    assert_int_equal(count(&f->stats.connections_idle), 0);

    start(f, &f->b, FG_UPSTREAM_BODY_NONE, true);
    p = request_on(f, &f->origins[0], 1, req, sizeof(req));
    answer(p, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
    assert_true(wait_until(f, finished, &f->b));
    assert_int_equal(f->b.ends, 1);
    assert_int_equal(count(&f->stats.connections_idle), 0);
}

static void test_interim_answers_are_skipped(void **state)
{
    struct fixture *f = *state;
    char req[512];
    start(f, &f->a, FG_UPSTREAM_BODY_NONE, true);
    struct peer *p = request_on(f, &f->origins[0], 0, req, sizeof(req));
    answer(p, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
              "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    assert_true(wait_until(f, finished, &f->a));
    assert_int_equal(f->a.heads, 1);
    assert_int_equal(f->a.status, 200);
    body_is(&f->a, "ok");
    assert_int_equal(count(&f->stats.connections_idle), 1);
}

static void test_interim_answers_reach_an_owner_that_wants_them(void **state)
{
    struct fixture *f = *state;
    char req[512];
    struct fg_upstream_request rq = {
        .head = GET, .head_len = sizeof(GET) - 1, .method = FG_HTTP_GET, .retryable = true};
    assert_non_null(fg_upstream_exchange_start(f->pool, &rq, &ops_interim, &f->a));
    struct peer *p = request_on(f, &f->origins[0], 0, req, sizeof(req));
    answer(p, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
              "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
              "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    assert_true(wait_until(f, finished, &f->a));
    /* 100 was ours to send; the others in order, then the final answer, then reuse. */
    assert_int_equal(f->a.interims, 2);
    assert_int_equal(f->a.statuses[0], 102);
    assert_int_equal(f->a.statuses[1], 103);
    assert_int_equal(f->a.heads, 1);
    assert_int_equal(f->a.status, 200);
    body_is(&f->a, "ok");
    assert_int_equal(count(&f->stats.connections_idle), 1);
}

static bool has_upgraded(struct fixture *f, void *arg)
{
    return ((struct owner *)arg)->upgraded != NULL || ((struct owner *)arg)->errors > 0;
}

static void test_upgrade_hands_over_a_fresh_connection(void **state)
{
    struct fixture *f = *state;
    char req[512];
    /* One pooled connection first: the upgrade must not take it. */
    start(f, &f->b, FG_UPSTREAM_BODY_NONE, true);
    struct peer *p0 = request_on(f, &f->origins[0], 0, req, sizeof(req));
    answer(p0, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    assert_true(wait_until(f, finished, &f->b));
    assert_int_equal(count(&f->stats.connections_idle), 1);

    static const char UP_GET[] = "GET /ws HTTP/1.1\r\nHost: app\r\nUpgrade: websocket\r\n"
                                 "Connection: upgrade\r\n\r\n";
    struct fg_upstream_request rq = {
        .head = UP_GET, .head_len = sizeof(UP_GET) - 1, .method = FG_HTTP_GET, .upgrade = true};
    assert_non_null(fg_upstream_exchange_start(f->pool, &rq, &ops_interim, &f->a));
    struct peer *p = request_on(f, &f->origins[0], 1, req, sizeof(req));
    assert_non_null(strstr(req, "Upgrade: websocket"));
    /* The 101 and the app's first bytes of the new protocol in one write. */
    answer(p, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
              "Connection: upgrade\r\n\r\n\x81\x02hi");
    assert_true(wait_until(f, has_upgraded, &f->a));
    assert_int_equal(f->a.errors, 0);
    assert_int_equal(f->a.heads, 1);
    assert_int_equal(f->a.status, 101);
    struct fg_upstream_conn *uc = f->a.upgraded;
    assert_non_null(uc);
    /* The head is gone from the input; what followed it is the owner's. */
    struct evbuffer *in = bufferevent_get_input(uc->bev);
    assert_int_equal(evbuffer_get_length(in), 4);
    assert_memory_equal(evbuffer_pullup(in, 4), "\x81\x02hi", 4);
    assert_int_equal(count(&f->stats.connections_idle), 1); /* the pooled one, untouched */
    assert_int_equal(count(&f->stats.connections_active), 1);
    fg_upstream_release(uc, false);
    assert_true(wait_until(f, peer_closed, p));
    assert_int_equal(count(&f->stats.connections_active), 0);
}

static void test_switching_protocols_unasked_is_502(void **state)
{
    struct fixture *f = *state;
    char req[512];
    start(f, &f->a, FG_UPSTREAM_BODY_NONE, true);
    struct peer *p = request_on(f, &f->origins[0], 0, req, sizeof(req));
    answer(p, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n");
    assert_true(wait_until(f, finished, &f->a));
    assert_int_equal(f->a.heads, 0);
    assert_int_equal(f->a.errors, 1);
    assert_int_equal(f->a.err.why, FG_UPSTREAM_FAIL_BAD_RESPONSE);
    assert_int_equal(f->a.err.status, 502);
    assert_int_equal(count(&f->stats.err_bad_response), 1);
    assert_int_equal(count(&f->stats.connections_idle), 0);
}

static void test_invalid_head_is_502_without_retry(void **state)
{
    struct fixture *f = *state;
    char req[512];
    start(f, &f->a, FG_UPSTREAM_BODY_NONE, true);
    struct peer *p = request_on(f, &f->origins[0], 0, req, sizeof(req));
    answer(p, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nok");
    assert_true(wait_until(f, finished, &f->a));
    assert_int_equal(f->a.errors, 1);
    assert_int_equal(f->a.err.status, 502);
    assert_int_equal(count(&f->stats.retries), 0);
    assert_int_equal(f->origins[0].n_peers, 1);
}

static void test_malformed_chunk_after_head_cuts(void **state)
{
    struct fixture *f = *state;
    char req[512];
    start(f, &f->a, FG_UPSTREAM_BODY_NONE, true);
    struct peer *p = request_on(f, &f->origins[0], 0, req, sizeof(req));
    answer(p, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n");
    assert_true(wait_until(f, finished, &f->a));
    assert_int_equal(f->a.heads, 1);
    assert_int_equal(f->a.errors, 1);
    assert_int_equal(f->a.err.why, FG_UPSTREAM_FAIL_BAD_RESPONSE);
    /* Nothing: the payload of the read that holds bad framing is dropped with it (the
     * answer is broken either way, and its owner may still answer 502 instead). */
    body_is(&f->a, "");
    assert_int_equal(count(&f->stats.connections_idle), 0);
}

/* A response to HEAD announces a length it does not send. */
static void test_head_response_has_no_body(void **state)
{
    struct fixture *f = *state;
    char req[512];
    static const char head[] = "HEAD /x HTTP/1.1\r\nHost: app\r\n\r\n";
    struct fg_upstream_request rq = {
        .head = head, .head_len = sizeof(head) - 1, .method = FG_HTTP_HEAD, .retryable = true};
    assert_non_null(fg_upstream_exchange_start(f->pool, &rq, &ops, &f->a));
    struct peer *p = request_on(f, &f->origins[0], 0, req, sizeof(req));
    answer(p, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
    assert_true(wait_until(f, finished, &f->a));
    assert_int_equal(f->a.ends, 1);
    assert_int_equal(count(&f->stats.connections_idle), 1);
}

/* ---- retries ----------------------------------------------------------------------------- */

/* Nothing listens on the first server: the request goes to the second, the owner sees
 * only the answer. */
static void test_failed_connect_goes_to_another_server(void **state)
{
    struct fixture *f = *state;
    evconnlistener_free(f->origins[0].evl);
    f->origins[0].evl = NULL;
    char req[512];
    start(f, &f->a, FG_UPSTREAM_BODY_NONE, false); /* even a request that is not retryable */
    struct peer *p = request_on(f, &f->origins[1], 0, req, sizeof(req));
    assert_string_equal(req, GET);
    answer(p, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    assert_true(wait_until(f, finished, &f->a));
    assert_int_equal(f->a.ends, 1);
    assert_int_equal(f->a.errors, 0);
    assert_int_equal(count(&f->stats.retries), 1);
    assert_int_equal(count(&f->stats.err_connect), 1);
}

static void test_failed_connect_with_one_server_is_502(void **state)
{
    struct fixture *f = *state;
    evconnlistener_free(f->origins[0].evl);
    f->origins[0].evl = NULL;
    struct fg_upstream_request rq = {
        .head = GET, .head_len = sizeof(GET) - 1, .method = FG_HTTP_GET, .retryable = true};
    struct fg_upstream_exchange *x = fg_upstream_exchange_start(f->pool, &rq, &ops, &f->a);
    if (x == NULL)
        return; /* refused synchronously: the caller answers 502 itself */
    assert_true(wait_until(f, finished, &f->a));
    assert_int_equal(f->a.errors, 1);
    assert_int_equal(f->a.err.why, FG_UPSTREAM_FAIL_CONNECT);
    assert_int_equal(f->a.err.status, 502);
    assert_int_equal(count(&f->stats.retries), 0);
}

/* A pooled connection, then the app closes it as the next request arrives. */
static struct peer *pooled_then_closed(struct fixture *f, bool retryable)
{
    char req[512];
    start(f, &f->a, FG_UPSTREAM_BODY_NONE, true);
    struct peer *p = request_on(f, &f->origins[0], 0, req, sizeof(req));
    answer(p, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_true(wait_until(f, finished, &f->a));
    assert_int_equal(count(&f->stats.connections_idle), 1);
    start(f, &f->b, FG_UPSTREAM_BODY_NONE, retryable);
    assert_ptr_equal(request_on(f, &f->origins[0], 0, req, sizeof(req)), p);
    hang_up(p);
    return p;
}

static void test_reused_connection_closed_is_retried_once_fresh(void **state)
{
    struct fixture *f = *state;
    char req[512];
    pooled_then_closed(f, true);
    struct peer *p = request_on(f, &f->origins[0], 1, req, sizeof(req));
    assert_string_equal(req, GET);
    answer(p, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    assert_true(wait_until(f, finished, &f->b));
    assert_int_equal(f->b.ends, 1);
    assert_int_equal(f->b.errors, 0);
    body_is(&f->b, "ok");
    assert_int_equal(count(&f->stats.retries), 1);
    /* the answer came on the second, fresh connection */
    assert_int_equal(f->b.timing.attempts, 2);
    assert_false(f->b.timing.reused);

    /* Once only: the fresh connection dying too is the owner's 502. */
    start(f, &f->a, FG_UPSTREAM_BODY_NONE, true);
    f->a.ends = 0;
    assert_ptr_equal(request_on(f, &f->origins[0], 1, req, sizeof(req)), p);
    hang_up(p);
    p = request_on(f, &f->origins[0], 2, req, sizeof(req)); /* a new exchange: its own retry */
    hang_up(p);
    assert_true(wait_until(f, finished, &f->a));
    assert_int_equal(f->a.errors, 1);
    assert_int_equal(f->a.err.why, FG_UPSTREAM_FAIL_RESET);
    assert_int_equal(count(&f->stats.retries), 2);
}

static void test_not_retryable_request_is_not_sent_twice(void **state)
{
    struct fixture *f = *state;
    pooled_then_closed(f, false);
    assert_true(wait_until(f, finished, &f->b));
    assert_int_equal(f->b.errors, 1);
    assert_int_equal(f->b.err.status, 502);
    assert_string_equal(f->b.err_detail, "closed the connection before responding");
    assert_int_equal(count(&f->stats.retries), 0);
    assert_int_equal(f->origins[0].n_peers, 1);
}

/* A timeout is not the app closing a pooled connection: no retry, 504. */
static void test_read_timeout_is_504_without_retry(void **state)
{
    struct fixture *f = *state;
    f->conf.read_timeout_ms = 100;
    char req[512];
    start(f, &f->a, FG_UPSTREAM_BODY_NONE, true);
    struct peer *p = request_on(f, &f->origins[0], 0, req, sizeof(req));
    answer(p, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    assert_true(wait_until(f, finished, &f->a));
    start(f, &f->b, FG_UPSTREAM_BODY_NONE, true); /* reused, and never answered */
    assert_ptr_equal(request_on(f, &f->origins[0], 0, req, sizeof(req)), p);
    assert_true(wait_until(f, finished, &f->b));
    assert_int_equal(f->b.errors, 1);
    assert_int_equal(f->b.err.why, FG_UPSTREAM_FAIL_TIMEOUT);
    assert_int_equal(f->b.err.status, 504);
    assert_int_equal(count(&f->stats.retries), 0);
    assert_int_equal(count(&f->stats.err_timeout), 1);
    assert_int_equal(f->origins[0].n_peers, 1);
}

/* ---- request bodies ---------------------------------------------------------------------- */

static void test_request_body_gets_our_chunk_framing(void **state)
{
    struct fixture *f = *state;
    char req[512];
    struct fg_upstream_exchange *x = start(f, &f->a, FG_UPSTREAM_BODY_CHUNKED, false);
    struct evbuffer *src = evbuffer_new();
    evbuffer_add(src, "hello world", 11);
    fg_upstream_exchange_send(x, src, 5);
    fg_upstream_exchange_send(x, src, 6);
    fg_upstream_exchange_send_end(x);
    evbuffer_free(src);
    struct peer *p = request_on(f, &f->origins[0], 0, req, sizeof(req));
    static const char framed[] = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    struct want_bytes w = {p, sizeof(framed) - 1};
    assert_true(wait_until(f, got_bytes, &w));
    char body[64] = {0};
    evbuffer_remove(bufferevent_get_input(p->bev), body, sizeof(body) - 1);
    assert_string_equal(body, framed);
    answer(p, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    assert_true(wait_until(f, finished, &f->a));
    assert_int_equal(f->a.status, 201);
    assert_int_equal(count(&f->stats.connections_idle), 1);
}

/* The app answers before the body is complete: the answer is delivered, the connection
 * is not kept (the rest of the body would be read as the next request). */
static void test_early_answer_is_not_reused(void **state)
{
    struct fixture *f = *state;
    char req[512];
    struct fg_upstream_exchange *x = start(f, &f->a, FG_UPSTREAM_BODY_LENGTH, false);
    struct evbuffer *src = evbuffer_new();
    evbuffer_add(src, "abc", 3);
    fg_upstream_exchange_send(x, src, 3);
    fg_upstream_exchange_flush(x);
    evbuffer_free(src);
    struct peer *p = request_on(f, &f->origins[0], 0, req, sizeof(req));
    answer(p, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n");
    assert_true(wait_until(f, finished, &f->a));
    assert_int_equal(f->a.status, 413);
    assert_int_equal(f->a.ends, 1);
    assert_int_equal(count(&f->stats.connections_idle), 0);
}

/* ---- back-pressure and owners ------------------------------------------------------------ */

static bool has_ended(struct fixture *f, void *arg)
{
    return ((struct owner *)arg)->ends > 0;
}

static void test_pause_holds_the_body_until_resume(void **state)
{
    struct fixture *f = *state;
    char req[512];
    f->a.pause_on_body = true;
    struct fg_upstream_exchange *x = start(f, &f->a, FG_UPSTREAM_BODY_NONE, true);
    struct peer *p = request_on(f, &f->origins[0], 0, req, sizeof(req));
    answer(p, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345");
    assert_true(wait_until(f, has_body, &f->a));
    body_is(&f->a, "12345");
    answer(p, "67890");
    turns(f, 20);
    assert_int_equal(evbuffer_get_length(f->a.body), 0); /* paused: nothing delivered */
    assert_int_equal(f->a.ends, 0);
    f->a.pause_on_body = false;
    fg_upstream_exchange_resume(x);
    assert_true(wait_until(f, has_ended, &f->a));
    body_is(&f->a, "67890");
    assert_int_equal(count(&f->stats.connections_idle), 1);
}

/* A cache fill hands an uncacheable answer to the request that started it, from inside
 * its on_head: the new owner gets the body and the end, the first one nothing more. */
static void test_handover_inside_on_head(void **state)
{
    struct fixture *f = *state;
    char req[512];
    f->a.hand_to = &f->b;
    start(f, &f->a, FG_UPSTREAM_BODY_NONE, true);
    struct peer *p = request_on(f, &f->origins[0], 0, req, sizeof(req));
    answer(p, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndata");
    assert_true(wait_until(f, finished, &f->b));
    assert_int_equal(f->a.heads, 1);
    assert_int_equal(f->a.ends + f->a.errors, 0);
    assert_int_equal(evbuffer_get_length(f->a.body), 0);
    assert_int_equal(f->b.ends, 1);
    body_is(&f->b, "data");
    assert_int_equal(count(&f->stats.connections_idle), 1);
}

static void test_abort_inside_on_body_closes(void **state)
{
    struct fixture *f = *state;
    char req[512];
    f->a.abort_on_body = true;
    start(f, &f->a, FG_UPSTREAM_BODY_NONE, true);
    struct peer *p = request_on(f, &f->origins[0], 0, req, sizeof(req));
    answer(p, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345");
    assert_true(wait_until(f, has_body, &f->a));
    assert_true(wait_until(f, peer_closed, p)); /* the connection was closed, not pooled */
    turns(f, 5);
    assert_int_equal(f->a.ends + f->a.errors, 0);
    assert_int_equal(count(&f->stats.connections_idle), 0);
    assert_int_equal(count(&f->stats.connections_active), 0);
}

static void test_owner_refusing_the_head_is_an_error(void **state)
{
    struct fixture *f = *state;
    char req[512];
    f->a.fail_on_head = true;
    start(f, &f->a, FG_UPSTREAM_BODY_NONE, true);
    struct peer *p = request_on(f, &f->origins[0], 0, req, sizeof(req));
    answer(p, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    assert_true(wait_until(f, finished, &f->a));
    assert_int_equal(f->a.errors, 1);
    assert_string_equal(f->a.err_detail, "refused by the owner");
    assert_int_equal(count(&f->stats.err_bad_response), 1);
    assert_int_equal(count(&f->stats.retries), 0);
    assert_int_equal(count(&f->stats.connections_idle), 0);
}

int main(void)
{
#define T1(t) cmocka_unit_test_setup_teardown(t, setup1, teardown)
#define T2(t) cmocka_unit_test_setup_teardown(t, setup2, teardown)
    const struct CMUnitTest tests[] = {
        T1(test_length_body_then_reuse),
        T1(test_chunked_body_split_anywhere),
        T1(test_close_delimited_body_ends_at_eof),
        T1(test_connection_close_and_http10_are_not_reused),
        T1(test_interim_answers_are_skipped),
        T1(test_switching_protocols_unasked_is_502),
        T1(test_interim_answers_reach_an_owner_that_wants_them),
        T1(test_upgrade_hands_over_a_fresh_connection),
        T1(test_invalid_head_is_502_without_retry),
        T1(test_malformed_chunk_after_head_cuts),
        T1(test_head_response_has_no_body),
        T2(test_failed_connect_goes_to_another_server),
        T1(test_failed_connect_with_one_server_is_502),
        T1(test_reused_connection_closed_is_retried_once_fresh),
        T1(test_not_retryable_request_is_not_sent_twice),
        T1(test_read_timeout_is_504_without_retry),
        T1(test_request_body_gets_our_chunk_framing),
        T1(test_early_answer_is_not_reused),
        T1(test_pause_holds_the_body_until_resume),
        T1(test_handover_inside_on_head),
        T1(test_abort_inside_on_body_closes),
        T1(test_owner_refusing_the_head_is_an_error),
    };
    return cmocka_run_group_tests_name("upstream exchange", tests, NULL, NULL);
}
