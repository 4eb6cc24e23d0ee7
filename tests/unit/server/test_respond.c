/*
 * test_respond.c — the one response-head writer (server/respond.c), driven without a
 * socket: a transaction on a bufferevent with no file, its head read back from the output.
 * What every answer carries (X-Request-Id made, echoed, or left to the app's; the stages'
 * fields; Connection for 1.0 and for a close), and what each kind is made of: the app's
 * fields with hop-by-hop, Connection-listed and redone framing fields dropped, a
 * compression plan's edits, a stored head by reference (304 included), our own bodies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/internal.h"

struct fx {
    struct event_base *base;
    struct fg_worker w;
    struct fg_conn c;
    struct fg_conf_server srv;
    struct fg_txn *t;
    char head[8192];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->base = event_base_new();
    f->w.rng[0] = 0x1234, f->w.rng[1] = 0x5678;
    f->c.magic = FG_CONN_MAGIC;
    f->c.w = &f->w;
    f->c.bev = bufferevent_socket_new(f->base, -1, 0);
    f->c.requests = 1;
    f->srv.keepalive_requests = 100;
    f->srv.add_request_id = true;
    f->t = calloc(1, sizeof(*f->t));
    f->t->magic = FG_TXN_MAGIC;
    f->t->c = &f->c;
    f->t->srv = &f->srv;
    f->t->req.minor_version = 1;
    f->t->req.method = FG_HTTP_GET;
    f->t->req_state = FG_REQ_DONE;
    f->c.txn = f->t;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    bufferevent_free(f->c.bev);
    free(f->w.scratch);
    free(f->t);
    event_base_free(f->base);
    free(f);
    return 0;
}

/* The head written, as a string. */
static const char *written(struct fx *f)
{
    struct evbuffer *out = bufferevent_get_output(f->c.bev);
    size_t n = evbuffer_get_length(out);
    assert_true(n < sizeof(f->head));
    evbuffer_unfreeze(out, 1); /* the bufferevent keeps its output's start frozen */
    evbuffer_remove(out, f->head, n);
    evbuffer_freeze(out, 1);
    f->head[n] = '\0';
    return f->head;
}

static bool has(const char *head, const char *line)
{
    return strstr(head, line) != NULL;
}

static bool starts(const char *head, const char *prefix)
{
    return strncmp(head, prefix, strlen(prefix)) == 0;
}

static int count(const char *head, const char *name)
{
    int n = 0;
    for (const char *p = head; (p = strstr(p, name)) != NULL; p++)
        n++;
    return n;
}

/* Parse s as a response head. */
static void app_response(const char *s, struct fg_http_response *resp)
{
    struct fg_http_limits lim = {
        .max_request_line = 8192, .max_header_bytes = 65536, .max_headers = FG_HTTP_MAX_HEADERS};
    enum fg_http_error err;
    assert_true(fg_http_parse_response(s, strlen(s), &lim, FG_HTTP_GET, resp, &err) > 0);
}

static void test_own_answer_carries_id_and_length(void **state)
{
    struct fx *f = *state;
    struct fg_respond r = {.status = 404,
                           .ctype = "text/plain; charset=utf-8",
                           .body = FG_RESPOND_LENGTH,
                           .length = 12};
    assert_true(fg_respond_head(f->t, &r));
    const char *h = written(f);
    assert_true(starts(h, "HTTP/1.1 404 Not Found\r\n"));
    assert_true(has(h, "\r\nContent-Type: text/plain; charset=utf-8\r\n"));
    assert_true(has(h, "\r\nContent-Length: 12\r\n"));
    assert_true(has(h, "\r\nX-Request-Id: ")); /* made: request_id on */
    assert_int_equal(strlen(f->t->request_id), 32);
    assert_true(f->t->request_id_ours);
    assert_false(has(h, "Connection:")); /* 1.1 and kept alive: nothing to say */
    assert_true(strcmp(h + strlen(h) - 4, "\r\n\r\n") == 0);
    assert_int_equal(f->t->status, 404);
    assert_true(f->t->resp_head_sent);
    assert_int_equal(f->t->bytes_out, strlen(h));
}

static void test_client_id_is_echoed_and_off_adds_none(void **state)
{
    struct fx *f = *state;
    strcpy(f->t->request_id, "trace-42");
    struct fg_respond r = {.status = 429, .body = FG_RESPOND_LENGTH};
    assert_true(fg_respond_head(f->t, &r));
    assert_true(has(written(f), "\r\nX-Request-Id: trace-42\r\n"));
    f->t->request_id[0] = '\0';
    f->srv.add_request_id = false;
    assert_true(fg_respond_head(f->t, &r));
    assert_false(has(written(f), "X-Request-Id"));
}

static void test_stage_fields_and_kind_fields(void **state)
{
    struct fx *f = *state;
    static const char rl[] = "RateLimit-Policy: 10;w=1\r\n";
    fg_txn_add_fields(f->t, rl, sizeof(rl) - 1);
    static const char kind[] = "Retry-After: 1\r\n";
    struct fg_respond r = {
        .status = 503, .fields = kind, .fields_len = sizeof(kind) - 1, .body = FG_RESPOND_LENGTH};
    assert_true(fg_respond_head(f->t, &r));
    const char *h = written(f);
    assert_true(has(h, "\r\nRateLimit-Policy: 10;w=1\r\n"));
    assert_true(has(h, "\r\nRetry-After: 1\r\n"));
}

static void test_connection_for_http10_and_close(void **state)
{
    struct fx *f = *state;
    f->t->req.minor_version = 0;
    f->t->req.flags = FG_HTTP_F_CONN_KEEPALIVE;
    struct fg_respond r = {.status = 200, .body = FG_RESPOND_LENGTH};
    assert_true(fg_respond_head(f->t, &r));
    assert_true(has(written(f), "\r\nConnection: keep-alive\r\n"));
    assert_false(f->t->client_close);
    r.close = true;
    assert_true(fg_respond_head(f->t, &r));
    assert_true(has(written(f), "\r\nConnection: close\r\n"));
    assert_true(f->t->client_close);
    /* a body read to the close closes, whatever the client asked */
    f->t->req.minor_version = 1;
    f->t->req.flags = 0;
    f->t->client_close = false;
    r.close = false;
    r.body = FG_RESPOND_TO_CLOSE;
    assert_true(fg_respond_head(f->t, &r));
    const char *h = written(f);
    assert_true(has(h, "\r\nConnection: close\r\n"));
    assert_false(has(h, "Content-Length") || has(h, "Transfer-Encoding"));
}

static void test_app_fields_filtered(void **state)
{
    struct fx *f = *state;
    struct fg_http_response resp;
    app_response("HTTP/1.1 200 Fine\r\nContent-Type: text/html\r\nConnection: X-Secret, close\r\n"
                 "X-Secret: 1\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\n"
                 "X-Request-Id: app-id\r\nVary: Cookie\r\n\r\n",
                 &resp);
    struct fg_respond r = {.status = resp.status,
                           .reason = resp.reason,
                           .reason_len = resp.reason_len,
                           .app = &resp,
                           .body = FG_RESPOND_CHUNKED};
    assert_true(fg_respond_head(f->t, &r));
    const char *h = written(f);
    assert_true(starts(h, "HTTP/1.1 200 Fine\r\n")); /* the app's reason */
    assert_true(has(h, "\r\nContent-Type: text/html\r\n"));
    assert_true(has(h, "\r\nVary: Cookie\r\n"));
    assert_false(has(h, "X-Secret")); /* listed in Connection */
    assert_false(has(h, "Keep-Alive"));
    assert_int_equal(count(h, "Transfer-Encoding: chunked"), 1); /* ours, once */
    assert_int_equal(count(h, "X-Request-Id"), 1);               /* the app's stays alone */
    assert_true(has(h, "\r\nX-Request-Id: app-id\r\n"));
}

static void test_app_length_kept_or_redone(void **state)
{
    struct fx *f = *state;
    struct fg_http_response resp;
    app_response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", &resp);
    struct fg_respond r = {.status = 200, .app = &resp, .body = FG_RESPOND_AS_APP};
    assert_true(fg_respond_head(f->t, &r));
    assert_int_equal(count(written(f), "Content-Length: 5"), 1);
    r.body = FG_RESPOND_CHUNKED; /* an encoded body is reframed: its length goes */
    assert_true(fg_respond_head(f->t, &r));
    const char *h = written(f);
    assert_false(has(h, "Content-Length"));
    assert_true(has(h, "Transfer-Encoding: chunked"));
}

static void test_compression_plan_edits(void **state)
{
    struct fx *f = *state;
    struct fg_http_response resp;
    app_response("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nETag: \"v1\"\r\n"
                 "Vary: Cookie\r\nContent-Length: 5000\r\n\r\n",
                 &resp);
    struct fg_compress_plan plan;
    assert_true(fg_compress_plan_response(NULL, FG_COMPRESS_GZIP, FG_HTTP_GET, &resp, &plan));
    struct fg_respond r = {.status = 200, .app = &resp, .plan = &plan, .body = FG_RESPOND_CHUNKED};
    assert_true(fg_respond_head(f->t, &r));
    const char *h = written(f);
    assert_true(has(h, "\r\nContent-Encoding: gzip\r\n"));
    assert_true(has(h, "\r\nETag: W/\"v1\"\r\n"));
    assert_int_equal(count(h, "ETag"), 1);
    assert_true(has(h, "\r\nVary: Cookie, Accept-Encoding\r\n"));
    assert_int_equal(count(h, "Vary"), 1);
    assert_false(has(h, "Content-Length"));
}

/* A stored head goes by reference: its own status line for a 200, ours for a 304 made
 * from it, its fields either way, then Age and the framing. */
static void test_stored_head_and_304(void **state)
{
    struct fx *f = *state;
    struct fg_cache_limits lim = {.memory = 1 << 20, .max_object = 1 << 16};
    struct fg_cache *store = fg_cache_new("respond", &lim);
    struct fg_cache_request rq = {.key = "h/x", .key_len = 3, .hash = fg_cache_key_hash("h/x", 3)};
    struct fg_cache_obj *obj, *fill;
    assert_int_equal(fg_cache_lookup(store, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    struct fg_cache_meta m;
    fg_cache_meta_init(&m);
    m.status = 200;
    m.content_length = 4;
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/css\r\nETag: \"s\"\r\n";
    assert_true(fg_cache_fill_head(fill, &m, head, sizeof(head) - 1, NULL, 0, NULL, 0));
    assert_true(fg_cache_fill_append(fill, "body", 4));
    fg_cache_fill_done(fill, true);

    static const char age[] = "Age: 3\r\n";
    struct fg_respond r = {.status = 200,
                           .stored = fill,
                           .fields = age,
                           .fields_len = sizeof(age) - 1,
                           .body = FG_RESPOND_LENGTH,
                           .length = 4};
    assert_true(fg_respond_head(f->t, &r));
    const char *h = written(f);
    assert_true(starts(h, "HTTP/1.1 200 OK\r\nContent-Type: text/css\r\nETag: \"s\"\r\n"));
    assert_true(has(h, "\r\nAge: 3\r\n"));
    assert_true(has(h, "\r\nContent-Length: 4\r\n"));
    assert_true(has(h, "\r\nX-Request-Id: "));

    r.status = 304;
    r.body = FG_RESPOND_NO_BODY;
    assert_true(fg_respond_head(f->t, &r));
    h = written(f);
    assert_true(starts(h, "HTTP/1.1 304 Not Modified\r\nContent-Type: text/css\r\n"));
    assert_int_equal(count(h, "HTTP/1.1"), 1);
    assert_false(has(h, "Content-Length"));
    assert_int_equal(f->t->status, 304);
    fg_cache_obj_unref(obj);
    fg_cache_obj_unref(fill);
    fg_cache_free(store); /* the output's references were taken back by reading it */
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_own_answer_carries_id_and_length),
        T(test_client_id_is_echoed_and_off_adds_none),
        T(test_stage_fields_and_kind_fields),
        T(test_connection_for_http10_and_close),
        T(test_app_fields_filtered),
        T(test_app_length_kept_or_redone),
        T(test_compression_plan_edits),
        T(test_stored_head_and_304),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
