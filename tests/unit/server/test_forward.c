/*
 * test_forward.c — the request as the app sees it (server/forward.c), built from parsed
 * requests without a socket: hop-by-hop and Connection-listed fields gone, our framing,
 * X-Forwarded-For appended to the last of several fields, X-Forwarded-Proto/-Port believed
 * only from a trusted peer, Host for an absolute-form target and for HTTP/1.0 without one,
 * our X-Request-Id added (the client's forwarded as it is), and a cache fill's head: GET,
 * without the client's conditionals and Range, without Accept-Encoding on a compressing
 * route.
 */
#include <arpa/inet.h>
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
    struct fg_worker w;
    struct fg_listener lst;
    struct fg_conn c;
    struct fg_conf_server srv;
    struct fg_conf_upstream up;
    struct fg_conf_route route;
    struct fg_cidr trusted;
    struct fg_txn *t;
    char text[4096]; /* the request bytes the parsed slices point into */
    char out[8192];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->w.rng[0] = 7, f->w.rng[1] = 11;
    f->c.magic = FG_CONN_MAGIC;
    f->c.w = &f->w;
    f->c.lst = &f->lst;
    snprintf(f->lst.port_text, sizeof(f->lst.port_text), "8080");
    struct sockaddr_in *sin = (struct sockaddr_in *)&f->c.peer;
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(0x0a000001); /* 10.0.0.1 */
    snprintf(f->c.peer_ip, sizeof(f->c.peer_ip), "10.0.0.1");
    f->srv.add_request_id = true;
    snprintf(f->up.name, sizeof(f->up.name), "app");
    f->route.upstream = &f->up;
    f->t = calloc(1, sizeof(*f->t));
    f->t->magic = FG_TXN_MAGIC;
    f->t->c = &f->c;
    f->t->srv = &f->srv;
    f->t->route = &f->route;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    free(f->t->proxy.head);
    free(f->t);
    free(f);
    return 0;
}

/* Parse text as the client's request and build the forwarded head into f->out. */
static const char *forward(struct fx *f, const char *text, bool for_cache)
{
    snprintf(f->text, sizeof(f->text), "%s", text);
    struct fg_http_limits lim = {
        .max_request_line = 8192, .max_header_bytes = 65536, .max_headers = FG_HTTP_MAX_HEADERS};
    enum fg_http_error err;
    assert_true(fg_http_parse_request(f->text, strlen(f->text), &lim, &f->t->req, &err) > 0);
    f->t->request_id[0] = '\0';
    f->t->request_id_ours = false;
    assert_true(fg_forward_head(f->t, for_cache));
    assert_true(f->t->proxy.head_len < sizeof(f->out));
    memcpy(f->out, f->t->proxy.head, f->t->proxy.head_len);
    f->out[f->t->proxy.head_len] = '\0';
    return f->out;
}

static bool has(const char *head, const char *line)
{
    return strstr(head, line) != NULL;
}

static bool starts(const char *head, const char *prefix)
{
    return strncmp(head, prefix, strlen(prefix)) == 0;
}

static void test_hop_by_hop_and_listed_fields_go(void **state)
{
    struct fx *f = *state;
    const char *h =
        forward(f,
                "GET /a?b=1 HTTP/1.1\r\nHost: shop.test\r\nConnection: keep-alive, X-Sec\r\n"
                "X-Sec: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: h2c\r\n"
                "Proxy-Connection: x\r\nAccept: */*\r\n\r\n",
                false);
    assert_true(starts(h, "GET /a?b=1 HTTP/1.1\r\nHost: shop.test\r\n"));
    assert_true(has(h, "\r\nAccept: */*\r\n"));
    const char *gone[] = {"Connection", "X-Sec",   "Keep-Alive",
                          "TE:",        "Upgrade", "Proxy-Connection"};
    for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
        assert_false(has(h, gone[i]));
    assert_true(has(h, "\r\nX-Forwarded-For: 10.0.0.1\r\n"));
    assert_true(has(h, "\r\nX-Forwarded-Proto: http\r\n"));
    assert_true(has(h, "\r\nX-Forwarded-Port: 8080\r\n"));
    assert_true(strcmp(h + strlen(h) - 4, "\r\n\r\n") == 0);
}

static void test_framing_is_ours(void **state)
{
    struct fx *f = *state;
    const char *h = forward(f,
                            "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 00012\r\n"
                            "Expect: 100-continue\r\n\r\n",
                            false);
    assert_true(has(h, "\r\nContent-Length: 12\r\n")); /* ours, normalised */
    assert_false(has(h, "00012"));
    assert_false(has(h, "Expect"));
    h = forward(f, "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", false);
    assert_true(has(h, "\r\nTransfer-Encoding: chunked\r\n"));
    assert_false(has(h, "Content-Length"));
}

static void test_forwarded_for_appends_to_the_last(void **state)
{
    struct fx *f = *state;
    const char *h = forward(f,
                            "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\n"
                            "Accept: x\r\nX-Forwarded-For: 2.2.2.2, 3.3.3.3\r\n\r\n",
                            false);
    const char *first = strstr(h, "X-Forwarded-For: 1.1.1.1\r\n");
    const char *last = strstr(h, "X-Forwarded-For: 2.2.2.2, 3.3.3.3, 10.0.0.1\r\n");
    assert_non_null(first);
    assert_non_null(last);
    assert_true(first < last); /* one list, in order */
}

static void test_proto_and_port_only_from_a_trusted_peer(void **state)
{
    struct fx *f = *state;
    static const char req[] = "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\n"
                              "X-Forwarded-Port: 443\r\n\r\n";
    const char *h = forward(f, req, false);
    assert_true(has(h, "\r\nX-Forwarded-Proto: http\r\n")); /* the client's is not believed */
    assert_false(has(h, "https"));
    assert_true(has(h, "\r\nX-Forwarded-Port: 8080\r\n"));
    assert_true(fg_cidr_parse("10.0.0.0/8", &f->trusted));
    f->srv.trusted_proxies = &f->trusted;
    f->srv.n_trusted_proxies = 1;
    h = forward(f, req, false);
    assert_true(has(h, "\r\nX-Forwarded-Proto: https\r\n")); /* the ALB's is */
    assert_true(has(h, "\r\nX-Forwarded-Port: 443\r\n"));
    assert_false(has(h, "8080"));
}

static void test_host_for_absolute_form_and_http10(void **state)
{
    struct fx *f = *state;
    const char *h = forward(f, "GET http://shop.test/x?y=1 HTTP/1.1\r\nHost: other\r\n\r\n", false);
    assert_true(starts(h, "GET /x?y=1 HTTP/1.1\r\n"));
    assert_true(has(h, "\r\nHost: shop.test\r\n"));
    assert_false(has(h, "other"));
    h = forward(f, "GET /x HTTP/1.0\r\n\r\n", false);
    assert_true(starts(h, "GET /x HTTP/1.1\r\n")); /* we speak 1.1 to the app */
    assert_true(has(h, "\r\nHost: app\r\n"));      /* the upstream's name */
}

static void test_request_id_ours_added_the_clients_forwarded(void **state)
{
    struct fx *f = *state;
    const char *h = forward(f, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", false);
    char want[64];
    snprintf(want, sizeof(want), "\r\nX-Request-Id: %s\r\n", f->t->request_id);
    assert_int_equal(strlen(f->t->request_id), 32);
    assert_true(has(h, want));
    /* the client's own goes as it came, once (request.c took it into t->request_id) */
    snprintf(f->text, sizeof(f->text), "GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: mine\r\n\r\n");
    struct fg_http_limits lim = {
        .max_request_line = 8192, .max_header_bytes = 65536, .max_headers = FG_HTTP_MAX_HEADERS};
    enum fg_http_error err;
    assert_true(fg_http_parse_request(f->text, strlen(f->text), &lim, &f->t->req, &err) > 0);
    snprintf(f->t->request_id, sizeof(f->t->request_id), "mine");
    f->t->request_id_ours = false;
    assert_true(fg_forward_head(f->t, false));
    memcpy(f->out, f->t->proxy.head, f->t->proxy.head_len);
    f->out[f->t->proxy.head_len] = '\0';
    assert_true(has(f->out, "\r\nX-Request-Id: mine\r\n"));
    assert_true(strstr(strstr(f->out, "X-Request-Id") + 1, "X-Request-Id") == NULL);
    f->srv.add_request_id = false;
    h = forward(f, "GET / HTTP/1.1\r\nHost: a\r\n\r\n", false);
    assert_false(has(h, "X-Request-Id"));
}

static void test_cache_fill_head(void **state)
{
    struct fx *f = *state;
    static const char req[] =
        "HEAD /c HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"x\"\r\n"
        "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        "If-Match: \"y\"\r\nIf-Unmodified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        "If-Range: \"z\"\r\nRange: bytes=0-1\r\nAccept-Encoding: gzip\r\n"
        "Cookie: c=1\r\n\r\n";
    const char *h = forward(f, req, true);
    assert_true(starts(h, "GET /c HTTP/1.1\r\n")); /* a HEAD miss fills the GET */
    const char *gone[] = {"If-None-Match",       "If-Modified-Since", "If-Match",
                          "If-Unmodified-Since", "If-Range",          "Range"};
    for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
        assert_false(has(h, gone[i]));
    assert_true(has(h, "\r\nCookie: c=1\r\n"));
    assert_true(has(h, "\r\nAccept-Encoding: gzip\r\n")); /* the route does not compress */
    f->t->z.route = true;
    h = forward(f, req, true);
    assert_false(has(h, "Accept-Encoding")); /* it stores its own encodings */
    /* the proxy path keeps all of them */
    f->t->z.route = false;
    h = forward(f, req, false);
    assert_true(starts(h, "HEAD /c HTTP/1.1\r\n"));
    assert_true(has(h, "If-None-Match") && has(h, "Range: bytes=0-1"));
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_hop_by_hop_and_listed_fields_go),
        T(test_framing_is_ours),
        T(test_forwarded_for_appends_to_the_last),
        T(test_proto_and_port_only_from_a_trusted_peer),
        T(test_host_for_absolute_form_and_http10),
        T(test_request_id_ours_added_the_clients_forwarded),
        T(test_cache_fill_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
