/*
 * test_offload.c — proxy/offload without a client connection: idempotency keys, the fields
 * a record carries, the triggers over their one-second windows, and the agent client
 * against a fake agent on a unix socket the test answers frame by frame (answers matched
 * by id in any order, a record cancelled before its answer, no answer in time, the agent
 * gone with records in flight, no agent at all). Waits run the event loop (bounded).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include <event2/event.h>

#include "offload/offload.h"

/* ---- keys and records ------------------------------------------------------------------ */

static void test_key_ok(void **state)
{
    (void)state;
    assert_true(fg_offload_key_ok("order-42", 8));
    assert_true(fg_offload_key_ok("~!", 2));
    assert_false(fg_offload_key_ok("", 0));
    assert_false(fg_offload_key_ok("a b", 3));
    assert_false(fg_offload_key_ok("a\x7f", 2));
    char long_key[300];
    memset(long_key, 'k', sizeof(long_key));
    assert_true(fg_offload_key_ok(long_key, 255));
    assert_false(fg_offload_key_ok(long_key, 256));
}

static void test_record_carries_the_named_fields(void **state)
{
    (void)state;
    static const char text[] = "POST /orders?x=1 HTTP/1.1\r\nHost: shop\r\nContent-Type: a/b\r\n"
                               "Cookie: s=1\r\nX-Tenant: t1\r\nContent-Length: 0\r\n\r\n";
    struct fg_http_limits lim = {
        .max_request_line = 8192, .max_header_bytes = 65536, .max_headers = FG_HTTP_MAX_HEADERS};
    struct fg_http_request r;
    enum fg_http_error err;
    assert_true(fg_http_parse_request(text, sizeof(text) - 1, &lim, &r, &err) > 0);
    char *names[] = {"content-type", "x-tenant"};
    struct fg_conf_route_offload of = {.headers = names, .n_headers = 2};
    struct fg_agent_record rec;
    fg_offload_record_from(&of, &r, &rec);
    assert_int_equal(rec.method_len, 4);
    assert_memory_equal(rec.method, "POST", 4);
    assert_int_equal(rec.target_len, strlen("/orders?x=1"));
    assert_int_equal(rec.n_headers, 2);
    assert_memory_equal(rec.headers[0].name, "Content-Type", 12);
    assert_memory_equal(rec.headers[1].value, "t1", 2);
}

/* ---- triggers ------------------------------------------------------------------------- */

static void test_inflight_and_limited_fire_without_a_window(void **state)
{
    (void)state;
    struct fg_offload_stats st;
    memset(&st, 0, sizeof(st));
    struct fg_conf_route_offload of = {.when_inflight = true, .inflight = 8, .when_limited = true};
    struct fg_offload_signals s = {.inflight = 8};
    assert_null(fg_offload_trigger(&of, NULL, &s, 0, &st));
    s.inflight = 9;
    assert_string_equal(fg_offload_trigger(&of, NULL, &s, 0, &st), "inflight");
    s.limited = true;
    assert_string_equal(fg_offload_trigger(&of, NULL, &s, 0, &st), "limited");
    assert_int_equal(fg_counter_get(&st.trig_inflight), 1);
    assert_int_equal(fg_counter_get(&st.trig_limited), 1);
    of.when_limited = false;
    assert_string_equal(fg_offload_trigger(&of, NULL, &s, 0, &st), "inflight");
}

/* p95 over the last finished one-second window: 20 requests at least, then it fires while
 * it is above the threshold; an idle second clears it. */
static void test_latency_over_the_last_window(void **state)
{
    (void)state;
    struct fg_offload_stats st;
    memset(&st, 0, sizeof(st));
    struct fg_conf_route_offload of = {.latency_us = 50000};
    struct fg_offload_signals s = {0};
    uint64_t t = 1000000;
    struct fg_offload_window *w = fg_offload_window_new(t);
    for (int i = 0; i < 19; i++)
        fg_offload_window_observe(w, true, 900000, t + 10, (uint64_t)i);
    assert_null(fg_offload_trigger(&of, w, &s, t + 1000, &st)); /* 19: too few to tell */
    for (int i = 0; i < 18; i++)
        fg_offload_window_observe(w, true, 1000, t + 1010, (uint64_t)i);
    fg_offload_window_observe(w, true, 80000, t + 1010, 1);
    fg_offload_window_observe(w, true, 90000, t + 1010, 2);
    /* 20 samples, the two slowest are the top 10%: p95 (nearest rank 19 of 20) is 80 ms */
    assert_string_equal(fg_offload_trigger(&of, w, &s, t + 2000, &st), "latency");
    assert_int_equal(fg_counter_get(&st.trig_latency), 1);
    assert_null(fg_offload_trigger(&of, w, &s, t + 3000, &st)); /* an empty second: healthy */
    fg_offload_window_free(w);
}

static void test_failing(void **state)
{
    (void)state;
    struct fg_offload_stats st;
    memset(&st, 0, sizeof(st));
    struct fg_conf_route_offload of = {.when_failing = true};
    struct fg_offload_signals s = {0};
    uint64_t t = 5000;
    struct fg_offload_window *w = fg_offload_window_new(t);
    for (int i = 0; i < 4; i++)
        fg_offload_window_observe(w, false, 0, t + 1, 0);
    assert_null(fg_offload_trigger(&of, w, &s, t + 2, &st)); /* 4 failures: not yet */
    fg_offload_window_observe(w, false, 0, t + 3, 0);
    assert_string_equal(fg_offload_trigger(&of, w, &s, t + 4, &st), "failing");
    fg_offload_window_observe(w, true, 100, t + 5, 0); /* a success in the same second */
    assert_null(fg_offload_trigger(&of, w, &s, t + 6, &st));
    /* the second ends with 5 failures of 6: the last window says failing */
    assert_string_equal(fg_offload_trigger(&of, w, &s, t + 1000, &st), "failing");
    s.all_down = true;
    assert_string_equal(fg_offload_trigger(&of, w, &s, t + 5000, &st), "failing");
    assert_int_equal(fg_counter_get(&st.trig_failing), 3);
    fg_offload_window_free(w);
}

/* ---- the agent client against a fake agent -------------------------------------------- */

struct answer_seen {
    int calls;
    enum fg_offload_outcome last;
};

static void on_answer(void *arg, enum fg_offload_outcome o)
{
    struct answer_seen *a = arg;
    a->calls++;
    a->last = o;
}

struct agent_fx {
    struct event_base *base;
    struct fg_offload_stats stats;
    struct fg_offload_client *client;
    char path[108];
    int listen_fd, peer;
    uint8_t buf[65536]; /* what the fake agent read and did not decode yet */
    size_t have;
};

static int agent_setup(void **state)
{
    struct agent_fx *f = calloc(1, sizeof(*f));
    f->base = event_base_new();
    f->client = fg_offload_client_new(f->base, &f->stats);
    snprintf(f->path, sizeof(f->path), "/tmp/fg-offload-test-%d.sock", (int)getpid());
    unlink(f->path);
    f->listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
    assert_int_equal(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(f->listen_fd, 4), 0);
    f->peer = -1;
    *state = f;
    return 0;
}

static int agent_teardown(void **state)
{
    struct agent_fx *f = *state;
    fg_offload_client_free(f->client);
    if (f->peer >= 0)
        close(f->peer);
    if (f->listen_fd >= 0)
        close(f->listen_fd);
    unlink(f->path);
    event_base_free(f->base);
    free(f);
    return 0;
}

static struct fg_offload_pending *send_one(struct agent_fx *f, const char *key,
                                           struct answer_seen *a, uint64_t timeout_ms, uint64_t *id)
{
    struct fg_agent_record rec = {.key = key,
                                  .key_len = strlen(key),
                                  .method = "POST",
                                  .method_len = 4,
                                  .target = "/o",
                                  .target_len = 2,
                                  .body = "{}",
                                  .body_len = 2};
    enum fg_offload_outcome why;
    struct fg_offload_pending *p =
        fg_offload_send(f->client, f->path, &rec, timeout_ms, on_answer, a, &why);
    assert_non_null(p);
    *id = rec.id;
    return p;
}

/* The fake agent reads one record frame. */
static uint64_t agent_reads_record(struct agent_fx *f)
{
    if (f->peer < 0)
        f->peer = accept(f->listen_fd, NULL, NULL);
    assert_true(f->peer >= 0);
    for (;;) {
        struct fg_agent_record r;
        uint64_t id;
        size_t frame = 0;
        enum fg_agent_proto_result res =
            fg_agent_proto_decode_record(f->buf, f->have, sizeof(f->buf), &r, &id, &frame);
        if (res == FG_AGENT_PROTO_OK) {
            memmove(f->buf, f->buf + frame, f->have - frame);
            f->have -= frame;
            return id;
        }
        assert_int_equal(res, FG_AGENT_PROTO_INCOMPLETE);
        /* The client writes from its event loop: turn it until the bytes are here. */
        ssize_t n = -1;
        for (int i = 0; i < 1000 && n < 0; i++) {
            event_base_loop(f->base, EVLOOP_NONBLOCK);
            n = recv(f->peer, f->buf + f->have, sizeof(f->buf) - f->have, MSG_DONTWAIT);
        }
        assert_true(n > 0);
        f->have += (size_t)n;
    }
}

static void agent_answers(struct agent_fx *f, uint64_t id, enum fg_agent_status st)
{
    uint8_t a[FG_AGENT_PROTO_ANSWER_SIZE];
    fg_agent_proto_encode_answer(id, st, a);
    assert_int_equal(write(f->peer, a, sizeof(a)), (ssize_t)sizeof(a));
}

static void run_until(struct agent_fx *f, const int *calls, int want)
{
    for (int i = 0; i < 400 && *calls < want; i++) {
        struct timeval tick = {0, 10 * 1000};
        event_base_loopexit(f->base, &tick);
        event_base_loop(f->base, EVLOOP_ONCE);
    }
}

static void test_answers_matched_by_id(void **state)
{
    struct agent_fx *f = *state;
    struct answer_seen a = {0}, b = {0}, c = {0};
    uint64_t ia, ib, ic;
    send_one(f, "a", &a, 5000, &ia);
    send_one(f, "b", &b, 5000, &ib);
    send_one(f, "c", &c, 5000, &ic);
    assert_int_equal(fg_counter_get(&f->stats.in_flight), 3);
    assert_int_equal(agent_reads_record(f), ia);
    assert_int_equal(agent_reads_record(f), ib);
    assert_int_equal(agent_reads_record(f), ic);
    agent_answers(f, ib, FG_AGENT_DUPLICATE); /* out of order */
    agent_answers(f, ia, FG_AGENT_DURABLE);
    agent_answers(f, ic, FG_AGENT_FULL);
    run_until(f, &c.calls, 1);
    assert_int_equal(a.calls + b.calls + c.calls, 3);
    assert_int_equal(a.last, FG_OFFLOAD_DURABLE);
    assert_int_equal(b.last, FG_OFFLOAD_DUPLICATE);
    assert_int_equal(c.last, FG_OFFLOAD_FULL);
    assert_int_equal(fg_counter_get(&f->stats.in_flight), 0);
}

static void test_cancelled_record_hears_nothing(void **state)
{
    struct agent_fx *f = *state;
    struct answer_seen a = {0}, b = {0};
    uint64_t ia, ib;
    struct fg_offload_pending *p = send_one(f, "a", &a, 5000, &ia);
    send_one(f, "b", &b, 5000, &ib);
    agent_reads_record(f);
    agent_reads_record(f);
    fg_offload_cancel(p); /* the client went away */
    agent_answers(f, ia, FG_AGENT_DURABLE);
    agent_answers(f, ib, FG_AGENT_DURABLE);
    run_until(f, &b.calls, 1);
    assert_int_equal(a.calls, 0);
    assert_int_equal(b.calls, 1);
}

static void test_no_answer_in_time(void **state)
{
    struct agent_fx *f = *state;
    struct answer_seen a = {0};
    uint64_t id;
    send_one(f, "slow", &a, 50, &id);
    agent_reads_record(f);
    run_until(f, &a.calls, 1);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.last, FG_OFFLOAD_TIMEOUT);
    agent_answers(f, id, FG_AGENT_DURABLE); /* too late: ignored */
    for (int i = 0; i < 5; i++)
        event_base_loop(f->base, EVLOOP_NONBLOCK);
    assert_int_equal(a.calls, 1);
}

static void test_agent_gone_with_records_in_flight(void **state)
{
    struct agent_fx *f = *state;
    struct answer_seen a = {0}, b = {0};
    uint64_t ia, ib;
    send_one(f, "a", &a, 5000, &ia);
    send_one(f, "b", &b, 5000, &ib);
    agent_reads_record(f);
    close(f->peer); /* the agent died */
    f->peer = -1;
    f->have = 0;
    run_until(f, &b.calls, 1);
    assert_int_equal(a.last, FG_OFFLOAD_UNREACHABLE);
    assert_int_equal(b.last, FG_OFFLOAD_UNREACHABLE);
    /* a restarted agent is tried again at once */
    struct answer_seen c = {0};
    uint64_t ic;
    send_one(f, "c", &c, 5000, &ic);
    assert_int_equal(agent_reads_record(f), ic);
}

static void test_no_agent(void **state)
{
    struct agent_fx *f = *state;
    close(f->listen_fd);
    f->listen_fd = -1;
    unlink(f->path);
    struct answer_seen a = {0};
    struct fg_agent_record rec = {.key = "k",
                                  .key_len = 1,
                                  .method = "POST",
                                  .method_len = 4,
                                  .target = "/",
                                  .target_len = 1};
    enum fg_offload_outcome why = FG_OFFLOAD_DURABLE;
    assert_null(fg_offload_send(f->client, f->path, &rec, 1000, on_answer, &a, &why));
    assert_int_equal(why, FG_OFFLOAD_UNREACHABLE);
    assert_int_equal(a.calls, 0); /* the caller falls back at once: no callback */
    fg_offload_count_failure(&f->stats, why);
    assert_int_equal(fg_counter_get(&f->stats.err_unreachable), 1);
}

int main(void)
{
#define A(t) cmocka_unit_test_setup_teardown(t, agent_setup, agent_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_ok),
        cmocka_unit_test(test_record_carries_the_named_fields),
        cmocka_unit_test(test_inflight_and_limited_fire_without_a_window),
        cmocka_unit_test(test_latency_over_the_last_window),
        cmocka_unit_test(test_failing),
        A(test_answers_matched_by_id),
        A(test_cancelled_record_hears_nothing),
        A(test_no_answer_in_time),
        A(test_agent_gone_with_records_in_flight),
        A(test_no_agent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
