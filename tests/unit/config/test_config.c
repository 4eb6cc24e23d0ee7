/*
 * test_config.c — flashgate.conf: valid configs checked field by field (defaults
 * included), invalid ones checked for the exact "file:line: message", several errors in
 * one load, the dump round trip, refcounting, and route matching.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "http/http.h"
#include "ratelimit/ratelimit.h"

#define NAME "t.conf"

#define UP       "upstream app { server 127.0.0.1:3000; }\n"
#define SRV_LINE "server { listen 127.0.0.1:8080; route / { upstream app; } }\n"
/* The wrapped text lands on a known line: main 1, upstream 3, server 5, route 6, admin 2. */
#define IN_MAIN(x)     x "\n" UP SRV_LINE
#define IN_UPSTREAM(x) "upstream app {\n    server 127.0.0.1:3000;\n" x "\n}\n" SRV_LINE
#define IN_SERVER(x)                                                                               \
    UP "server {\n    listen 127.0.0.1:8080;\n    route / { upstream app; }\n" x "\n}\n"
#define IN_ROUTE(x)                                                                                \
    UP "server {\n    listen 127.0.0.1:8080;\n    route / {\n        upstream app;\n" x            \
       "\n    }\n}\n"
#define IN_ADMIN(x) "admin {\n" x "\n}\n" UP SRV_LINE

static const char *srcdir(void)
{
    const char *s = getenv("srcdir");
    return s != NULL ? s : ".";
}

static struct fg_config *load_ok(const char *text)
{
    struct fg_config_errors errs;
    struct fg_config *c = fg_config_load_string(NAME, text, &errs);
    for (size_t i = 0; i < errs.n; i++)
        print_error("unexpected: %s\n", errs.msgs[i]);
    assert_int_equal(errs.n, 0);
    assert_non_null(c);
    fg_config_errors_free(&errs);
    return c;
}

/* The load fails with exactly these messages, in this order. */
static void expect_errors(const char *text, const char *const *msgs, size_t n)
{
    struct fg_config_errors errs;
    struct fg_config *c = fg_config_load_string(NAME, text, &errs);
    assert_null(c);
    bool same = errs.n == n;
    for (size_t i = 0; same && i < n; i++)
        same = strcmp(errs.msgs[i], msgs[i]) == 0;
    if (!same) {
        print_error("config:\n%s\nexpected:\n", text);
        for (size_t i = 0; i < n; i++)
            print_error("  %s\n", msgs[i]);
        print_error("got:\n");
        for (size_t i = 0; i < errs.n; i++)
            print_error("  %s\n", errs.msgs[i]);
    }
    fg_config_errors_free(&errs);
    assert_true(same);
}

static void expect_error(const char *text, const char *msg)
{
    expect_errors(text, &msg, 1);
}

/* ---- valid configs ------------------------------------------------------------------ */

static void test_minimal_defaults(void **state)
{
    (void)state;
    struct fg_config *c = load_ok(UP SRV_LINE);
    assert_string_equal(c->path, NAME);
    assert_int_equal(atomic_load(&c->refs), 1);
    assert_int_equal(c->generation, 0);
    assert_int_equal(c->workers, 0);
    assert_null(c->user);
    assert_null(c->pid_file);
    assert_null(c->error_log);
    assert_int_equal(c->error_log_level, FG_LOG_NOTICE);
    assert_int_equal(c->shutdown_delay_ms, 0);
    assert_int_equal(c->drain_timeout_ms, 30000);
    assert_true(c->admin.enabled);
    assert_string_equal(c->admin.addr.text, "127.0.0.1:9901");
    assert_int_equal(fg_addr_port((const struct sockaddr *)&c->admin.addr.ss), 9901);
    assert_null(c->admin.token);

    assert_int_equal(c->n_upstreams, 1);
    const struct fg_conf_upstream *u = &c->upstreams[0];
    assert_string_equal(u->name, "app");
    assert_int_equal(u->index, 0);
    assert_int_equal(u->n_servers, 1);
    assert_string_equal(u->servers[0].host, "127.0.0.1:3000");
    assert_string_equal(u->servers[0].addr.text, "127.0.0.1:3000");
    assert_int_equal(u->servers[0].addr.ss.ss_family, AF_INET);
    assert_int_equal(u->servers[0].weight, 1);
    assert_int_equal(u->servers[0].max_fails, 3);
    assert_int_equal(u->servers[0].fail_timeout_ms, 10000);
    assert_int_equal(u->balance, FG_BALANCE_ROUND_ROBIN);
    assert_int_equal(u->keepalive, 64);
    /* below gunicorn's 2 s, Node's 5 s and Puma's 20 s keep-alive: an idle pooled
     * connection is never one the app has closed (the ALB-502 pattern) */
    assert_int_equal(u->keepalive_timeout_ms, 1000);
    assert_int_equal(u->keepalive_requests, 1000);
    assert_int_equal(u->connect_timeout_ms, 1000);
    assert_int_equal(u->send_timeout_ms, 30000);
    assert_int_equal(u->read_timeout_ms, 30000);
    assert_true(u->retry_idempotent);

    assert_int_equal(c->n_servers, 1);
    const struct fg_conf_server *s = &c->servers[0];
    assert_int_equal(s->n_listens, 1);
    assert_string_equal(s->listens[0].addr.text, "127.0.0.1:8080");
    assert_int_equal(s->listens[0].backlog, 4096);
    assert_false(s->listens[0].ssl);
    assert_int_equal(s->keepalive_timeout_ms, 75000);
    assert_int_equal(s->keepalive_requests, 10000);
    assert_int_equal(s->header_timeout_ms, 10000);
    assert_int_equal(s->body_timeout_ms, 60000);
    assert_int_equal(s->body_min_rate, 1024);
    assert_int_equal(s->send_timeout_ms, 60000);
    assert_int_equal(s->max_request_line, 8192);
    assert_int_equal(s->max_header_bytes, 32768);
    assert_int_equal(s->max_headers, 100);
    assert_int_equal(s->client_max_body_size, 1048576);
    assert_int_equal(s->n_trusted_proxies, 0);
    assert_true(s->add_request_id);
    assert_null(s->access_log);
    assert_true(s->access_log_sample == 1.0);
    assert_int_equal(s->slow_request_ms, 1000);
    assert_int_equal(s->n_routes, 1);
    const struct fg_conf_route *r = &s->routes[0];
    assert_string_equal(r->prefix, "/");
    assert_null(r->host);
    assert_int_equal(r->methods, FG_METHOD_ALL);
    assert_ptr_equal(r->upstream, u);
    assert_int_equal(r->return_status, 0);
    assert_null(r->return_body);
    assert_int_equal(r->max_body, 1048576);
    assert_int_equal(r->line, 2);
    fg_config_unref(c);
}

/* The example of docs/interface-contract.md loads and means what it says. */
static const char contract_example[] =
    "workers auto;                         # or N\n"
    "user flashgate;\n"
    "pid_file /run/flashgate/flashgate.pid;\n"
    "error_log /var/log/flashgate/error.log notice;\n"
    "shutdown_delay 60s;\n"
    "drain_timeout 30s;\n"
    "admin { listen 127.0.0.1:9901; token \"secret\"; }\n"
    "upstream app {\n"
    "    server 127.0.0.1:3000 weight=1 max_fails=3 fail_timeout=10s;\n"
    "    balance round_robin;\n"
    "    keepalive 64;\n"
    "    keepalive_timeout 1s;\n"
    "    keepalive_requests 1000;\n"
    "    connect_timeout 1s;\n"
    "    send_timeout 30s;\n"
    "    read_timeout 30s;\n"
    "    retry on;\n"
    "}\n"
    "server {\n"
    "    listen 0.0.0.0:8080 backlog=4096;\n"
    "    keepalive_timeout 75s;\n"
    "    keepalive_requests 10000;\n"
    "    header_timeout 10s;\n"
    "    body_timeout 60s;\n"
    "    body_min_rate 1k;\n"
    "    send_timeout 60s;\n"
    "    max_request_line 8k;\n"
    "    max_header_size 32k;\n"
    "    max_headers 100;\n"
    "    client_max_body_size 1m;\n"
    "    trusted_proxies 10.0.0.0/8 127.0.0.1;\n"
    "    request_id on;\n"
    "    access_log /var/log/flashgate/access.log sample=0.1 slow=1s;\n"
    "    route /api/ {\n"
    "        host shop.example.com;\n"
    "        methods GET HEAD POST;\n"
    "        upstream app;\n"
    "        client_max_body_size 240k;\n"
    "    }\n"
    "    route /maintenance { return 503 \"down for maintenance\\n\"; }\n"
    "    route / { upstream app; }\n"
    "}\n";

static void test_contract_example(void **state)
{
    (void)state;
    struct fg_config *c = load_ok(contract_example);
    assert_int_equal(c->workers, 0);
    assert_string_equal(c->user, "flashgate");
    assert_string_equal(c->pid_file, "/run/flashgate/flashgate.pid");
    assert_string_equal(c->error_log, "/var/log/flashgate/error.log");
    assert_int_equal(c->error_log_level, FG_LOG_NOTICE);
    assert_int_equal(c->shutdown_delay_ms, 60000);
    assert_int_equal(c->drain_timeout_ms, 30000);
    assert_string_equal(c->admin.token, "secret");
    const struct fg_conf_server *s = &c->servers[0];
    assert_string_equal(s->listens[0].addr.text, "0.0.0.0:8080");
    assert_int_equal(s->n_trusted_proxies, 2);
    assert_int_equal(s->trusted_proxies[0].prefix, 8);
    assert_int_equal(s->trusted_proxies[1].prefix, 32);
    assert_string_equal(s->access_log, "/var/log/flashgate/access.log");
    assert_true(s->access_log_sample == 0.1);
    assert_int_equal(s->slow_request_ms, 1000);
    assert_int_equal(s->n_routes, 3);
    const struct fg_conf_route *api = &s->routes[0];
    assert_string_equal(api->prefix, "/api/");
    assert_string_equal(api->host, "shop.example.com");
    assert_int_equal(api->methods,
                     (1u << FG_HTTP_GET) | (1u << FG_HTTP_HEAD) | (1u << FG_HTTP_POST));
    assert_int_equal(api->max_body, 240 * 1024);
    assert_int_equal(api->line, 34);
    const struct fg_conf_route *m = &s->routes[1];
    assert_null(m->upstream);
    assert_int_equal(m->return_status, 503);
    assert_string_equal(m->return_body, "down for maintenance\n");
    assert_int_equal(m->max_body, 1048576);
    assert_ptr_equal(s->routes[2].upstream, &c->upstreams[0]);
    fg_config_unref(c);
}

static void test_shipped_config(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof(path), "%s/conf/flashgate.conf", srcdir());
    struct fg_config_errors errs;
    struct fg_config *c = fg_config_load(path, &errs);
    for (size_t i = 0; i < errs.n; i++)
        print_error("%s\n", errs.msgs[i]);
    assert_non_null(c);
    fg_config_errors_free(&errs);
    /* the ALB reasoning, as numbers */
    const struct fg_conf_server *s = &c->servers[0];
    assert_true(s->keepalive_timeout_ms > 60000); /* above the ALB's 60 s idle timeout */
    assert_true(c->upstreams[0].keepalive_timeout_ms < 5000); /* below Node's 5 s */
    assert_int_equal(c->shutdown_delay_ms, 60000);
    assert_true(c->shutdown_delay_ms + c->drain_timeout_ms < 300000); /* dereg. delay */
    assert_string_equal(s->listens[0].addr.text, "0.0.0.0:8080");
    assert_string_equal(c->upstreams[0].servers[0].addr.text, "127.0.0.1:3000");
    assert_true(c->admin.enabled);
    assert_string_equal(c->admin.addr.text, "127.0.0.1:9901");
    assert_null(c->user);
    fg_config_unref(c);
}

/* A Redis limit without timeout= waits 20 ms, as flashgate.conf(5) and ratelimit.md say,
 * and that is the Redis backend's own default too (one constant for both). */
static void test_redis_timeout_default(void **state)
{
    (void)state;
    struct fg_config *c = load_ok("limit fleet { key client_ip; rate 10r/s;\n"
                                  "    backend redis redis://127.0.0.1:6379; }\n" UP SRV_LINE);
    assert_true(c->limits[0].redis);
    assert_int_equal(c->limits[0].redis_timeout_ms, 20);
    assert_int_equal(FG_RATELIMIT_REDIS_TIMEOUT_MS, 20);
    fg_config_unref(c);
}

static void test_main_values(void **state)
{
    (void)state;
    struct fg_config *c = load_ok(IN_MAIN("workers 1;"));
    assert_int_equal(c->workers, 1);
    fg_config_unref(c);
    c = load_ok(IN_MAIN("workers 256; shutdown_delay 500ms; drain_timeout 2m;"));
    assert_int_equal(c->workers, 256);
    assert_int_equal(c->shutdown_delay_ms, 500);
    assert_int_equal(c->drain_timeout_ms, 120000);
    fg_config_unref(c);
    c = load_ok(IN_MAIN("shutdown_delay 1h; drain_timeout 0;"));
    assert_int_equal(c->shutdown_delay_ms, 3600000);
    assert_int_equal(c->drain_timeout_ms, 0);
    fg_config_unref(c);

    static const char *const levels[] = {"error", "warn", "notice", "info", "debug"};
    for (size_t i = 0; i < 5; i++) {
        char text[512];
        snprintf(text, sizeof(text), IN_MAIN("error_log /tmp/fg-error.log %s;"), levels[i]);
        c = load_ok(text);
        assert_string_equal(c->error_log, "/tmp/fg-error.log");
        assert_int_equal(c->error_log_level, (int)i);
        fg_config_unref(c);
    }
    c = load_ok(IN_MAIN("error_log stderr;"));
    assert_null(c->error_log);
    assert_int_equal(c->error_log_level, FG_LOG_NOTICE);
    fg_config_unref(c);
    c = load_ok(IN_MAIN("error_log stderr debug;"));
    assert_null(c->error_log);
    assert_int_equal(c->error_log_level, FG_LOG_DEBUG);
    fg_config_unref(c);
}

static void test_admin_forms(void **state)
{
    (void)state;
    struct fg_config *c = load_ok(IN_MAIN("admin off;"));
    assert_false(c->admin.enabled);
    fg_config_unref(c);
    c = load_ok(IN_MAIN("admin on;"));
    assert_true(c->admin.enabled);
    assert_string_equal(c->admin.addr.text, "127.0.0.1:9901");
    fg_config_unref(c);
    c = load_ok(IN_MAIN("admin { }"));
    assert_true(c->admin.enabled);
    assert_string_equal(c->admin.addr.text, "127.0.0.1:9901");
    fg_config_unref(c);
    c = load_ok(IN_ADMIN("listen [::1]:9902; token \"s3cr\\\"et\";"));
    assert_true(c->admin.enabled);
    assert_int_equal(c->admin.addr.ss.ss_family, AF_INET6);
    assert_string_equal(c->admin.addr.text, "[::1]:9902");
    assert_string_equal(c->admin.token, "s3cr\"et");
    fg_config_unref(c);
    /* admin off: its port is free for a server */
    c = load_ok("admin off;\n" UP "server { listen 127.0.0.1:9901; route / { upstream app; } }");
    assert_false(c->admin.enabled);
    fg_config_unref(c);
}

static void test_upstream_values(void **state)
{
    (void)state;
    struct fg_config *c =
        load_ok(IN_UPSTREAM("    server 127.0.0.2:3001 weight=5 max_fails=0 fail_timeout=30s;\n"
                            "    server [::1]:3002 fail_timeout=500ms;\n"
                            "    server localhost weight=1000;\n"
                            "    balance least_conn; keepalive 0; keepalive_timeout 4s;\n"
                            "    keepalive_requests 1; connect_timeout 250ms; send_timeout 1m;\n"
                            "    read_timeout 1h; retry off;"));
    const struct fg_conf_upstream *u = &c->upstreams[0];
    assert_int_equal(u->n_servers, 4);
    assert_int_equal(u->servers[1].weight, 5);
    assert_int_equal(u->servers[1].max_fails, 0);
    assert_int_equal(u->servers[1].fail_timeout_ms, 30000);
    assert_string_equal(u->servers[2].host, "[::1]:3002");
    assert_int_equal(u->servers[2].addr.ss.ss_family, AF_INET6);
    assert_int_equal(u->servers[2].weight, 1);
    assert_int_equal(u->servers[2].max_fails, 3);
    assert_int_equal(u->servers[2].fail_timeout_ms, 500);
    assert_string_equal(u->servers[3].host, "localhost");
    assert_string_equal(u->servers[3].addr.text, "localhost:80");
    assert_int_equal(fg_addr_port((const struct sockaddr *)&u->servers[3].addr.ss), 80);
    assert_int_equal(u->servers[3].weight, 1000);
    assert_int_equal(u->balance, FG_BALANCE_LEAST_CONN);
    assert_int_equal(u->keepalive, 0);
    assert_int_equal(u->keepalive_timeout_ms, 4000);
    assert_int_equal(u->keepalive_requests, 1);
    assert_int_equal(u->connect_timeout_ms, 250);
    assert_int_equal(u->send_timeout_ms, 60000);
    assert_int_equal(u->read_timeout_ms, 3600000);
    assert_false(u->retry_idempotent);
    fg_config_unref(c);

    /* upstreams may be defined after the server that uses them, in any number */
    c = load_ok("server { listen 8080; route /b { upstream b; } route / { upstream a; } }\n"
                "upstream a { server 127.0.0.1:1; }\n"
                "upstream b { server 127.0.0.1:2; }\n");
    assert_int_equal(c->n_upstreams, 2);
    assert_string_equal(c->upstreams[1].name, "b");
    assert_int_equal(c->upstreams[1].index, 1);
    assert_ptr_equal(c->servers[0].routes[0].upstream, &c->upstreams[1]);
    assert_ptr_equal(c->servers[0].routes[1].upstream, &c->upstreams[0]);
    assert_string_equal(c->servers[0].listens[0].addr.text, "0.0.0.0:8080");
    fg_config_unref(c);
}

static void test_server_values(void **state)
{
    (void)state;
    struct fg_config *c = load_ok(UP "server {\n"
                                     "  listen 127.0.0.1:8080 backlog=128;\n"
                                     "  listen [::1]:8080;\n"
                                     "  listen *:8081 backlog=65535;\n"
                                     "  keepalive_timeout 4000s; keepalive_requests 1;\n"
                                     "  header_timeout 500ms; body_timeout 5m;\n"
                                     "  body_min_rate 0; send_timeout 2s;\n"
                                     "  max_request_line 64; max_header_size 1m;\n"
                                     "  max_headers 256; client_max_body_size 8g;\n"
                                     "  trusted_proxies 10.0.0.0/8;\n"
                                     "  trusted_proxies 172.16.0.0/12\n"
                                     "                  fd00::/8;\n"
                                     "  request_id off;\n"
                                     "  access_log stderr sample=0 slow=0;\n"
                                     "  route / { upstream app; }\n"
                                     "}\n");
    const struct fg_conf_server *s = &c->servers[0];
    assert_int_equal(s->n_listens, 3);
    assert_int_equal(s->listens[0].backlog, 128);
    assert_int_equal(s->listens[1].addr.ss.ss_family, AF_INET6);
    assert_int_equal(s->listens[1].backlog, 4096);
    assert_string_equal(s->listens[2].addr.text, "0.0.0.0:8081");
    assert_int_equal(s->listens[2].backlog, 65535);
    assert_int_equal(s->keepalive_timeout_ms, 4000000);
    assert_int_equal(s->keepalive_requests, 1);
    assert_int_equal(s->header_timeout_ms, 500);
    assert_int_equal(s->body_timeout_ms, 300000);
    assert_int_equal(s->body_min_rate, 0);
    assert_int_equal(s->send_timeout_ms, 2000);
    assert_int_equal(s->max_request_line, 64);
    assert_int_equal(s->max_header_bytes, 1048576);
    assert_int_equal(s->max_headers, 256);
    assert_true(s->client_max_body_size == 8ull << 30);
    assert_int_equal(s->n_trusted_proxies, 3);
    assert_int_equal(s->trusted_proxies[2].family, AF_INET6);
    assert_false(s->add_request_id);
    assert_string_equal(s->access_log, "stderr");
    assert_true(s->access_log_sample == 0.0);
    assert_int_equal(s->slow_request_ms, 0);
    assert_true(s->routes[0].max_body == 8ull << 30);
    fg_config_unref(c);

    c = load_ok(IN_SERVER("access_log /var/log/a.log slow=250ms;"));
    assert_string_equal(c->servers[0].access_log, "/var/log/a.log");
    assert_true(c->servers[0].access_log_sample == 1.0);
    assert_int_equal(c->servers[0].slow_request_ms, 250);
    fg_config_unref(c);
    c = load_ok(IN_SERVER("access_log off;"));
    assert_null(c->servers[0].access_log);
    fg_config_unref(c);
    c = load_ok(IN_SERVER("access_log /a.log sample=.25;"));
    assert_true(c->servers[0].access_log_sample == 0.25);
    fg_config_unref(c);
}

/* TLS directives without files to read (no ssl listen, upstream verify off): the names
 * checked in upstream certificates, the defaults of the listener's settings. */
static void test_tls_values(void **state)
{
    (void)state;
    struct fg_config *c = load_ok("upstream app {\n"
                                  "    server localhost:443 ssl;\n"
                                  "    server [::1]:8443 ssl weight=2;\n"
                                  "    server 127.0.0.1:3000;\n"
                                  "    ssl_verify off;\n"
                                  "}\n"
                                  "upstream named { server 10.0.0.7:443 ssl; ssl_verify off;\n"
                                  "    ssl_server_name app.example.com; }\n" SRV_LINE);
    const struct fg_conf_upstream *u = &c->upstreams[0];
    assert_true(u->servers[0].ssl && u->servers[1].ssl && !u->servers[2].ssl);
    assert_string_equal(u->servers[0].tls_name, "localhost");
    assert_string_equal(u->servers[1].tls_name, "::1");
    assert_int_equal(u->servers[1].weight, 2);
    assert_false(u->ssl_verify);
    assert_non_null(u->tls);
    assert_string_equal(c->upstreams[1].servers[0].tls_name, "app.example.com");
    const struct fg_conf_server *s = &c->servers[0];
    assert_null(s->tls);
    assert_int_equal(s->ssl_session_cache, 20480);
    assert_int_equal(s->ssl_session_timeout_ms, 3600000);
    assert_true(s->ssl_session_tickets);
    assert_int_equal(c->ssl_ticket_key_rotation_ms, 3600000);
    assert_true(c->upstreams[0].servers[2].tls_name[0] != '\0'); /* unused without ssl */
    fg_config_unref(c);
    /* ssl_verify is on by default */
    c = load_ok(UP SRV_LINE);
    assert_true(c->upstreams[0].ssl_verify);
    assert_null(c->upstreams[0].tls);
    fg_config_unref(c);
}

static void test_two_servers(void **state)
{
    (void)state;
    struct fg_config *c = load_ok(UP "server { listen 127.0.0.1:8080; route / { upstream app; } }\n"
                                     "server { listen 127.0.0.1:8081; listen 127.0.0.2:8080;\n"
                                     "         route / { return 404; } }\n");
    assert_int_equal(c->n_servers, 2);
    assert_int_equal(c->servers[1].n_listens, 2);
    assert_int_equal(c->servers[1].routes[0].return_status, 404);
    assert_null(c->servers[1].routes[0].return_body);
    assert_int_equal(c->servers[1].routes[0].line, 4);
    fg_config_unref(c);
}

static void test_route_values(void **state)
{
    (void)state;
    struct fg_config *c =
        load_ok(UP "server {\n"
                   "  listen 8080;\n"
                   "  route /api { methods POST PUT; upstream app;\n"
                   "               client_max_body_size 240k; }\n"
                   "  route /a { methods GET; host *.Example.COM.; upstream app; }\n"
                   "  route /b { host Shop.example.com; return 200 \"\"; }\n"
                   "  route / { methods GET HEAD OPTIONS TRACE PATCH DELETE CONNECT;\n"
                   "            upstream app; }\n"
                   "  client_max_body_size 2m; # after the routes: still inherited\n"
                   "}\n");
    const struct fg_conf_server *s = &c->servers[0];
    assert_int_equal(s->n_routes, 4);
    assert_int_equal(s->routes[0].methods, (1u << FG_HTTP_POST) | (1u << FG_HTTP_PUT));
    assert_int_equal(s->routes[0].max_body, 240 * 1024);
    assert_int_equal(s->routes[1].methods, (1u << FG_HTTP_GET) | (1u << FG_HTTP_HEAD));
    assert_string_equal(s->routes[1].host, "*.example.com");
    assert_int_equal(s->routes[1].max_body, 2 * 1048576);
    assert_string_equal(s->routes[2].host, "shop.example.com");
    assert_int_equal(s->routes[2].return_status, 200);
    assert_string_equal(s->routes[2].return_body, "");
    assert_int_equal(s->routes[3].methods, (1u << FG_HTTP_GET) | (1u << FG_HTTP_HEAD) |
                                               (1u << FG_HTTP_OPTIONS) | (1u << FG_HTTP_TRACE) |
                                               (1u << FG_HTTP_PATCH) | (1u << FG_HTTP_DELETE) |
                                               (1u << FG_HTTP_CONNECT));
    assert_int_equal(s->routes[3].line, 8);
    assert_false(s->routes[0].health);
    fg_config_unref(c);

    c = load_ok(UP "server {\n"
                   "  listen 8080;\n"
                   "  route /healthz { health on; }\n"
                   "  route / { upstream app; }\n"
                   "}\n");
    assert_true(c->servers[0].routes[0].health);
    assert_null(c->servers[0].routes[0].upstream);
    assert_false(c->servers[0].routes[1].health);
    fg_config_unref(c);
}

static void test_syntax_features(void **state)
{
    (void)state;
    /* comments anywhere, quoted arguments with escapes, braces inside quotes, multi-line
     * directives, CRLF line ends, and '#' inside a word */
    struct fg_config *c = load_ok(
        "# leading comment\r\n"
        "upstream \"app\" { server \"127.0.0.1:3000\"; } # trailing\r\n"
        "server{listen 8080;access_log /tmp/a#b.log;route /x{return 200 \"a{b}c;d\\\\e\\tf\";}\n"
        "  route\n"
        "    /\n"
        "  {\n"
        "    upstream # comment between arguments\n"
        "      app;\n"
        "  }\n"
        "}");
    const struct fg_conf_server *s = &c->servers[0];
    assert_string_equal(s->routes[0].prefix, "/x");
    assert_string_equal(s->access_log, "/tmp/a#b.log");
    assert_string_equal(s->routes[0].return_body, "a{b}c;d\\e\tf");
    assert_int_equal(s->routes[1].line, 4);
    assert_ptr_equal(s->routes[1].upstream, &c->upstreams[0]);
    fg_config_unref(c);
    /* a newline inside a quoted string is kept and counted */
    c = load_ok(UP "server { listen 8080;\n route /m { return 503 \"line one\nline two\"; }\n"
                   " route / { upstream app; } }\n");
    assert_string_equal(c->servers[0].routes[0].return_body, "line one\nline two");
    assert_int_equal(c->servers[0].routes[1].line, 5);
    fg_config_unref(c);
}

static void test_refcount(void **state)
{
    (void)state;
    struct fg_config *c = load_ok(UP SRV_LINE);
    assert_ptr_equal(fg_config_ref(c), c);
    assert_ptr_equal(fg_config_ref(c), c);
    assert_int_equal(atomic_load(&c->refs), 3);
    fg_config_unref(c);
    fg_config_unref(c);
    assert_int_equal(atomic_load(&c->refs), 1);
    /* the data is intact until the last reference goes */
    assert_string_equal(c->servers[0].routes[0].prefix, "/");
    fg_config_unref(c);
    fg_config_unref(NULL);
    assert_null(fg_config_ref(NULL));
}

static char *dump_to_string(const struct fg_config *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    fg_config_dump(c, f);
    fclose(f);
    return buf;
}

/* ---- redis blocks ------------------------------------------------------------------- */

#define LIM_ROUTE "server { listen 127.0.0.1:8080; route / { upstream app; limit fleet; } }\n"

static void test_redis_values(void **state)
{
    (void)state;
    /* a limit may name a redis block defined further down; defaults spelled out */
    struct fg_config *c =
        load_ok(UP "limit fleet { rate 5r/s; backend redis cache timeout=30ms; }\n"
                   "resolver 127.0.0.1:5353 10.0.0.2;\n"
                   "redis cache {\n"
                   "    url rediss://app@cache.fleet.test:6380;\n"
                   "    auth iam user=app cache=Fleet-Cache serverless region=eu-west-1;\n"
                   "    ssl_ca_file /etc/ssl/certs/ca-certificates.crt;\n"
                   "    cluster on;\n"
                   "}\n" LIM_ROUTE);
    assert_int_equal(c->n_redis, 1);
    const struct fg_conf_redis *rd = &c->redis[0];
    assert_string_equal(rd->name, "cache");
    assert_true(rd->iam && rd->iam_serverless);
    assert_string_equal(rd->iam_user, "app");
    assert_string_equal(rd->iam_cache, "Fleet-Cache");
    assert_string_equal(rd->iam_region, "eu-west-1");
    assert_int_equal(rd->cluster, FG_CONF_CLUSTER_ON);
    assert_int_equal(rd->connect_timeout_ms, 1000);
    assert_int_equal(rd->resolve_interval_ms, 5000);
    assert_false(rd->max_connection_age_set);
    assert_non_null(rd->ep); /* built at load */
    assert_int_equal(c->n_resolvers, 2);
    const struct fg_conf_limit *l = &c->limits[0];
    assert_true(l->redis);
    assert_string_equal(l->redis_name, "cache");
    assert_ptr_equal(l->redis_ep, rd->ep);
    assert_int_equal(l->redis_timeout_ms, 30);
    fg_config_unref(c);

    /* an inline URL makes an endpoint of its own */
    c = load_ok(
        UP "limit fleet { rate 5r/s; backend redis redis://:pw@10.0.0.7:6379/2; }\n" LIM_ROUTE);
    assert_int_equal(c->n_redis, 0);
    assert_non_null(c->limits[0].redis_inline);
    assert_non_null(c->limits[0].redis_ep);
    assert_ptr_equal(c->limits[0].redis_ep, c->limits[0].redis_inline->ep);
    fg_config_unref(c);

    c = load_ok(UP "redis r { url redis://h; max_connection_age off; resolve_interval 0s;\n"
                   "          connect_timeout 250ms; cluster off; }\n" SRV_LINE);
    assert_true(c->redis[0].max_connection_age_set);
    assert_int_equal(c->redis[0].max_connection_age_ms, 0);
    assert_int_equal(c->redis[0].resolve_interval_ms, 0);
    assert_int_equal(c->redis[0].connect_timeout_ms, 250);
    assert_int_equal(c->redis[0].cluster, FG_CONF_CLUSTER_OFF);
    fg_config_unref(c);
}

static void test_redis_errors(void **state)
{
    (void)state;
    expect_error(UP "limit fleet { rate 5r/s;\n backend redis nosuch; }\n" LIM_ROUTE,
                 NAME ":3: redis 'nosuch' is not defined (add 'redis nosuch { url "
                      "redis://host:6379; }')");
    expect_error(UP "redis r {\n}\n" SRV_LINE,
                 NAME ":2: redis 'r' needs a url (for example 'url rediss://host:6379;')");
    expect_error(UP "redis r { url http://h; }\n" SRV_LINE,
                 NAME ":2: expected redis:// or rediss://[user[:password]@]host[:port][/db]");
    expect_error(UP "redis r { url redis://h; auth password x; }\n" SRV_LINE,
                 NAME ":2: use 'auth iam user=ID cache=NAME [serverless] [region=REGION];' (a "
                      "password goes in password_file)");
    expect_error(UP "redis r { url rediss://h; auth iam user=a cache=c region=Mars; }\n" SRV_LINE,
                 NAME ":2: invalid auth iam parameter 'region=Mars' (user=ID, cache=NAME, "
                      "serverless, region=REGION)");
    expect_error(UP "redis r { url rediss://h; auth iam user=a serverless; }\n" SRV_LINE,
                 NAME ":2: auth iam needs user=ID and cache=NAME");
    expect_error(UP "redis r { url redis://h; auth iam user=a cache=c; }\n" SRV_LINE,
                 NAME ":2: redis 'r': auth iam needs rediss:// (ElastiCache takes IAM tokens "
                      "over TLS only)");
    expect_error(UP "redis r { url redis://h; cluster maybe; }\n" SRV_LINE,
                 NAME ":2: invalid value 'maybe' for 'cluster' (auto, on or off)");
    expect_error(UP "redis r { url redis://h; max_connection_age 500ms; }\n" SRV_LINE,
                 NAME ":2: max_connection_age 500ms is below 1s (or write off)");
    expect_error(UP "redis r { url redis://h; imds_endpoint https://x; }\n" SRV_LINE,
                 NAME ":2: invalid imds_endpoint 'https://x' (an http:// URL, like "
                      "http://169.254.169.254)");
    expect_error(UP "redis r { url redis://h; }\nredis r { url redis://h; }\n" SRV_LINE,
                 NAME ":3: duplicate redis 'r' (first at line 2)");
    expect_error("resolver 10.0.0.2:53 name.example;\n" UP SRV_LINE,
                 NAME ":1: invalid resolver 'name.example' (an IP address with an optional "
                      "port: 10.0.0.2, 127.0.0.1:5353, [fd00::2]:53)");
    expect_error(UP "redis r { url redis://h; ssl_ca_file /x.pem; }\n" SRV_LINE,
                 NAME ":2: redis 'r': ssl_ca_file needs a rediss:// URL");
}

static void test_cache_tags(void **state)
{
    (void)state;
    struct fg_config *c =
        load_ok("cache a { memory 16m; }\n"
                "cache b { memory 16m; tag_field X-Tags Edge_Key; tag_strip off; }\n"
                "cache n { memory 16m; tag_field off; }\n" UP SRV_LINE);
    assert_int_equal(c->caches[0].n_tag_fields, 2);
    assert_string_equal(c->caches[0].tag_fields[0], "cache-tag");
    assert_string_equal(c->caches[0].tag_fields[1], "surrogate-key");
    assert_true(c->caches[0].tag_strip);
    assert_int_equal(c->caches[1].n_tag_fields, 2);
    assert_string_equal(c->caches[1].tag_fields[0], "x-tags");
    assert_string_equal(c->caches[1].tag_fields[1], "edge_key");
    assert_false(c->caches[1].tag_strip);
    assert_int_equal(c->caches[2].n_tag_fields, 0);
    char *one = dump_to_string(c);
    assert_non_null(strstr(one, "    tag_field cache-tag surrogate-key;\n    tag_strip on;\n"));
    assert_non_null(strstr(one, "    tag_field x-tags edge_key;\n    tag_strip off;\n"));
    assert_non_null(strstr(one, "    tag_field off;\n"));
    free(one);
    fg_config_unref(c);
    expect_error("cache a {\n    tag_field Cache:Tag;\n}\n" UP SRV_LINE, NAME
                 ":2: invalid field name 'Cache:Tag' for 'tag_field' (letters, digits, '-', '_')");
    expect_error("cache a {\n    tag_field a b c d e;\n}\n" UP SRV_LINE,
                 NAME ":2: directive 'tag_field' takes 1 to 4 arguments, got 5");
}

static void test_fleet_block(void **state)
{
    (void)state;
    struct fg_config *c = load_ok(UP SRV_LINE);
    assert_false(c->fleet.enabled);
    fg_config_unref(c);
    c = load_ok("fleet { redis r; }\nredis r { url redis://127.0.0.1:6379; }\n" UP SRV_LINE);
    assert_true(c->fleet.enabled);
    assert_string_equal(c->fleet.redis_name, "r");
    assert_non_null(c->fleet.ep);
    assert_ptr_equal(c->fleet.ep, c->redis[0].ep);
    assert_string_equal(c->fleet.channel, "flashgate");
    assert_int_equal(c->fleet.sharded, FG_CONF_SHARDED_AUTO);
    assert_int_equal(c->fleet.purge_log, 10000);
    char *one = dump_to_string(c);
    assert_non_null(strstr(one,
                           "fleet {\n    redis r;\n    channel flashgate;\n    sharded "
                           "auto;\n    purge_log 10000;\n    hot_keys 1000;\n    "
                           "warm_start 0;\n    warm_timeout 30s;\n    warm_concurrency 8;\n}\n"));
    assert_int_equal(c->fleet.hot_keys, 1000);
    assert_int_equal(c->fleet.warm_start, 0);
    free(one);
    fg_config_unref(c);
    c = load_ok("redis r { url redis://h; }\nfleet { redis r; channel shop-2; sharded on; "
                "purge_log 0; }\n" UP SRV_LINE);
    assert_string_equal(c->fleet.channel, "shop-2");
    assert_int_equal(c->fleet.sharded, FG_CONF_SHARDED_ON);
    assert_int_equal(c->fleet.purge_log, 0);
    fg_config_unref(c);
    c = load_ok("redis r { url redis://h; }\nfleet { redis r; }\n"
                "cache m { memory 16m; shared on; shared_timeout 3ms; shared_max_object 64k; }\n" UP
                    SRV_LINE);
    assert_true(c->caches[0].shared);
    assert_int_equal(c->caches[0].shared_timeout_ms, 3);
    assert_int_equal(c->caches[0].shared_max_object, 65536);
    fg_config_unref(c);
    expect_error("cache m {\n    memory 16m;\n    shared on;\n}\n" UP SRV_LINE,
                 NAME ":1: cache 'm': shared on needs a fleet block (fleet { redis NAME; })");
    expect_error("redis r { url redis://h; }\nfleet {\n    redis r;\n    hot_keys 10;\n    "
                 "warm_start 20;\n}\n" UP SRV_LINE,
                 NAME ":2: fleet: warm_start 20 is more than hot_keys 10 keeps");
    expect_error("fleet {\n}\n" UP SRV_LINE,
                 NAME ":1: fleet needs 'redis NAME;' (a redis block: the Redis the fleet shares)");
    expect_error("fleet {\n    redis r;\n}\n" UP SRV_LINE,
                 NAME ":2: redis 'r' is not defined (add 'redis r { url redis://host:6379; }')");
    expect_error("redis r { url redis://h; }\nfleet { redis r; }\nfleet { redis r; }\n" UP SRV_LINE,
                 NAME ":3: duplicate directive 'fleet' (first at line 2)");
    expect_error(
        "redis r { url redis://h; }\nfleet {\n    redis r;\n    channel \"a:b\";\n}\n" UP SRV_LINE,
        NAME ":4: invalid channel 'a:b' (letters, digits, '_', '-', '.'; at most 63 "
             "characters)");
}

static void test_redis_dump_masks_secrets(void **state)
{
    (void)state;
    struct fg_config *c =
        load_ok(UP "redis a { url rediss://app:hunter2@h.test:6380/0; }\n"
                   "redis b { url rediss://h.test; auth iam user=u cache=c; }\n"
                   "limit fleet { rate 5r/s; backend redis redis://:hunter3@h; }\n" LIM_ROUTE);
    char *one = dump_to_string(c);
    assert_null(strstr(one, "hunter"));
    assert_non_null(strstr(one, "    url rediss://app:********@h.test:6380/0;\n"));
    assert_non_null(strstr(one, "    backend redis redis://:********@h timeout=20ms fail=open;\n"));
    assert_non_null(strstr(one, "    auth iam user=u cache=c;\n"));
    assert_non_null(strstr(one, "    max_connection_age 11h;\n")); /* IAM's default */
    assert_non_null(strstr(one, "    cluster auto;\n"));
    fg_config_unref(c);
    free(one);
}

static void test_dump_round_trip(void **state)
{
    (void)state;
    struct fg_config *c = load_ok(contract_example);
    char *one = dump_to_string(c);
    /* secrets masked, defaults spelled out, units canonical */
    assert_null(strstr(one, "secret"));
    assert_non_null(strstr(one, "    token \"********\";\n"));
    assert_non_null(strstr(one, "    keepalive_timeout 75s;\n"));
    assert_non_null(strstr(one, "    body_timeout 60s;\n"));
    assert_non_null(strstr(one, "    client_max_body_size 240k;\n"));
    assert_non_null(strstr(one, "    return 503 \"down for maintenance\\n\";\n"));
    assert_non_null(strstr(one, "    methods GET HEAD POST;\n"));
    assert_non_null(strstr(one, "access_log /var/log/flashgate/access.log sample=0.1 slow=1s;"));
    assert_non_null(strstr(one, "user flashgate;\n"));
    assert_non_null(strstr(one, "error_log /var/log/flashgate/error.log notice;\n"));
    fg_config_unref(c);

    /* the dump is itself a valid config that dumps the same (past the first line) */
    c = load_ok(one);
    char *two = dump_to_string(c);
    assert_string_equal(strchr(one, '\n'), strchr(two, '\n'));
    fg_config_unref(c);
    free(one);
    free(two);

    /* minimal config: every default shows up */
    c = load_ok(UP SRV_LINE);
    one = dump_to_string(c);
    static const char *const defaults[] = {
        "workers auto;",
        "error_log stderr notice;",
        "shutdown_delay 0s;",
        "drain_timeout 30s;",
        "listen 127.0.0.1:9901;",
        "keepalive 64;",
        "keepalive_timeout 1s;", /* upstream: below gunicorn's 2 s, the shortest common one */
        "keepalive_requests 1000;",
        "connect_timeout 1s;",
        "read_timeout 30s;",
        "retry on;",
        "balance round_robin;",
        "keepalive_requests 10000;",
        "header_timeout 10s;",
        "body_min_rate 1k;",
        "max_request_line 8k;",
        "max_header_size 32k;",
        "max_headers 100;",
        "client_max_body_size 1m;",
        "request_id on;",
        "access_log off;",
        "listen 127.0.0.1:8080 backlog=4096;",
        "server 127.0.0.1:3000 weight=1 max_fails=3 fail_timeout=10s;",
    };
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
        if (strstr(one, defaults[i]) == NULL)
            print_error("missing in dump: %s\n%s", defaults[i], one);
        assert_non_null(strstr(one, defaults[i]));
    }
    assert_null(strstr(one, "token"));
    fg_config_unref(c);
    free(one);

    c = load_ok(IN_MAIN("admin off; workers 3;"));
    one = dump_to_string(c);
    assert_non_null(strstr(one, "admin off;\n"));
    assert_non_null(strstr(one, "workers 3;\n"));
    fg_config_unref(c);
    free(one);
}

static void test_load_file(void **state)
{
    (void)state;
    char path[] = "/tmp/fg-test-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char text[] = UP "server {\n  listen 127.0.0.1:8080;\n  keepalive_timeout 75q;\n"
                           "  route / { upstream app; }\n}\n";
    assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)(sizeof(text) - 1));
    close(fd);
    struct fg_config_errors errs;
    assert_null(fg_config_load(path, &errs));
    assert_int_equal(errs.n, 1);
    char want[256];
    snprintf(want, sizeof(want),
             "%s:4: invalid duration '75q' for 'keepalive_timeout' (use ms, s, m, h or d)", path);
    assert_string_equal(errs.msgs[0], want);
    fg_config_errors_free(&errs);
    assert_int_equal(errs.n, 0);
    unlink(path);

    assert_null(fg_config_load("/nonexistent/flashgate.conf", &errs));
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.msgs[0],
                        "/nonexistent/flashgate.conf: cannot open: No such file or directory");
    fg_config_errors_free(&errs);
    assert_null(fg_config_load("/tmp", &errs));
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.msgs[0], "/tmp: cannot read: not a regular file");
    fg_config_errors_free(&errs);
    /* errs may be NULL */
    assert_null(fg_config_load_string(NAME, "bogus;", NULL));
}

/* ---- invalid configs --------------------------------------------------------------------- */

struct bad_case {
    const char *text;
    const char *msg;
};

static const struct bad_case bad_cases[] = {
    /* syntax */
    {IN_MAIN("workers 4"), "t.conf:1: missing ';' after directive 'workers'"},
    {"workers 4\n" UP SRV_LINE, "t.conf:1: missing ';' after directive 'workers'"},
    {IN_UPSTREAM("    keepalive 64\n    keepalive_timeout 4s;"),
     "t.conf:3: missing ';' after directive 'keepalive'"},
    {"admin {\nlisten 127.0.0.1:9902 }\n" UP SRV_LINE,
     "t.conf:2: missing ';' after directive 'listen'"},
    {IN_MAIN("}"), "t.conf:1: unexpected '}'"},
    {IN_MAIN(";"), "t.conf:1: unexpected ';'"},
    {IN_MAIN("{ }"), "t.conf:1: unexpected '{'"},
    {IN_MAIN("token \"abc"), "t.conf:1: unterminated string"},
    {UP "server {\n listen 8080;\n route / { upstream app; }\n",
     "t.conf:5: unexpected end of file: missing '}' for 'server' opened at line 2"},
    {IN_SERVER("access_log \"/a\\qb.log\";"),
     "t.conf:5: invalid escape '\\q' in string (use \\\", \\\\, \\n or \\t)"},
    {IN_MAIN("workers\x01 4;"), "t.conf:1: invalid character 0x01"},
    {IN_MAIN("pid_file /run/a\"b\";"), "t.conf:1: unexpected '\"' in the middle of a word"},
    /* directives */
    {IN_MAIN("keepalive_timout 5s;"),
     "t.conf:1: unknown directive 'keepalive_timout' (did you mean 'keepalive_timeout'?)"},
    {IN_SERVER("keepalive_timout 5s;"),
     "t.conf:5: unknown directive 'keepalive_timout' (did you mean 'keepalive_timeout'?)"},
    {IN_SERVER("lisen 8081;"), "t.conf:5: unknown directive 'lisen' (did you mean 'listen'?)"},
    {IN_MAIN("frobnicate on;"), "t.conf:1: unknown directive 'frobnicate'"},
    {IN_SERVER("keepalive 3;"),
     "t.conf:5: directive 'keepalive' is not allowed in server (allowed in: upstream)"},
    {IN_MAIN("listen 8080;"),
     "t.conf:1: directive 'listen' is not allowed in main (allowed in: server, admin)"},
    {IN_ROUTE("workers 2;"),
     "t.conf:6: directive 'workers' is not allowed in route (allowed in: main)"},
    {IN_MAIN("workers 1 2;"), "t.conf:1: directive 'workers' takes 1 argument, got 2"},
    {IN_MAIN("workers;"), "t.conf:1: directive 'workers' takes 1 argument, got 0"},
    {IN_MAIN("error_log /a b c;"), "t.conf:1: directive 'error_log' takes 1 to 2 arguments, got 3"},
    {IN_SERVER("trusted_proxies;"),
     "t.conf:5: directive 'trusted_proxies' needs at least 1 argument"},
    {IN_MAIN("workers 2 { }"), "t.conf:1: directive 'workers' takes no block"},
    {IN_MAIN("upstream other;"), "t.conf:1: directive 'upstream' needs a block"},
    {IN_MAIN("server x { }"), "t.conf:1: directive 'server' takes no arguments, got 1"},
    {IN_MAIN("workers 2; workers 3;"), "t.conf:1: duplicate directive 'workers' (first at line 1)"},
    {IN_SERVER("keepalive_timeout 75s;\nkeepalive_timeout 80s;"),
     "t.conf:6: duplicate directive 'keepalive_timeout' (first at line 5)"},
    {IN_MAIN("admin off; admin on;"), "t.conf:1: duplicate directive 'admin' (first at line 1)"},
    /* values */
    {IN_SERVER("keepalive_timeout 75x;"),
     "t.conf:5: invalid duration '75x' for 'keepalive_timeout' (use ms, s, m, h or d)"},
    {IN_SERVER("keepalive_timeout 0;"),
     "t.conf:5: value 0 out of range 1ms..1d for 'keepalive_timeout'"},
    {IN_SERVER("keepalive_timeout 2d;"),
     "t.conf:5: value 2d out of range 1ms..1d for 'keepalive_timeout'"},
    {IN_MAIN("shutdown_delay 2h;"), "t.conf:1: value 2h out of range 0s..1h for 'shutdown_delay'"},
    {IN_SERVER("keepalive_requests 0;"),
     "t.conf:5: value 0 out of range 1..1000000000 for 'keepalive_requests'"},
    {IN_SERVER("keepalive_requests -1;"), "t.conf:5: invalid number '-1' for 'keepalive_requests'"},
    {IN_UPSTREAM("keepalive 65536;"),
     "t.conf:3: value 65536 out of range 0..65535 for 'keepalive'"},
    {IN_SERVER("max_headers 257;"), "t.conf:5: value 257 out of range 1..256 for 'max_headers'"},
    {IN_SERVER("client_max_body_size 1x;"),
     "t.conf:5: invalid size '1x' for 'client_max_body_size' (use a number with k, m or g)"},
    {IN_SERVER("client_max_body_size 0;"),
     "t.conf:5: value 0 out of range 1..1024g for 'client_max_body_size'"},
    {IN_SERVER("max_request_line 32;"),
     "t.conf:5: value 32 out of range 64..1m for 'max_request_line'"},
    {IN_SERVER("max_header_size 2k; max_request_line 4k;"),
     "t.conf:2: max_header_size 2k is smaller than max_request_line 4k"},
    {IN_MAIN("workers 0;"), "t.conf:1: value 0 out of range 1..256 for 'workers'"},
    {IN_MAIN("workers 257;"), "t.conf:1: value 257 out of range 1..256 for 'workers'"},
    {IN_MAIN("workers many;"),
     "t.conf:1: invalid value 'many' for 'workers' (use auto or a number)"},
    {IN_UPSTREAM("retry yes;"), "t.conf:3: invalid value 'yes' for 'retry' (use on or off)"},
    {IN_UPSTREAM("balance random;"),
     "t.conf:3: invalid value 'random' for 'balance' (use round_robin or least_conn)"},
    {IN_MAIN("error_log stderr loud;"),
     "t.conf:1: invalid log level 'loud' for 'error_log' (use error, warn, notice, info or debug)"},
    {IN_MAIN("error_log flashgate.log;"),
     "t.conf:1: path 'flashgate.log' for 'error_log' must be absolute"},
    {IN_MAIN("pid_file run/x.pid;"), "t.conf:1: path 'run/x.pid' for 'pid_file' must be absolute"},
    {IN_MAIN("user \"\";"), "t.conf:1: empty value for 'user'"},
    {IN_MAIN("admin maybe;"),
     "t.conf:1: invalid value 'maybe' for 'admin' (use on, off or a block)"},
    {IN_MAIN("admin;"), "t.conf:1: directive 'admin' needs 'on', 'off' or a block"},
    {IN_MAIN("admin x { }"), "t.conf:1: directive 'admin' takes no arguments with a block"},
    {IN_ADMIN("listen unix:/run/a.sock;"), "t.conf:2: 'listen' on a unix socket is not supported"},
    {IN_ADMIN("token \"\";"), "t.conf:2: empty value for 'token'"},
    /* upstream */
    {IN_MAIN("upstream \"a b\" { server 127.0.0.1:1; }"),
     "t.conf:1: invalid upstream name 'a b' (letters, digits, '_', '-', '.'; at most 63 "
     "characters)"},
    {IN_MAIN("upstream app { server 127.0.0.1:1; }"),
     "t.conf:2: duplicate upstream 'app' (first at line 1)"},
    {IN_MAIN("upstream empty { }"), "t.conf:1: upstream 'empty' has no server"},
    {IN_UPSTREAM("server 127.0.0.1:0;"),
     "t.conf:3: invalid address '127.0.0.1:0' for 'server': port 0 out of range 1..65535"},
    {IN_UPSTREAM("server ::1;"),
     "t.conf:3: invalid address '::1' for 'server': IPv6 address '::1' must be written in "
     "brackets"},
    {IN_UPSTREAM("server 127.0.0.1:1 weight=0;"),
     "t.conf:3: value 0 out of range 1..1000 for 'weight'"},
    {IN_UPSTREAM("server 127.0.0.1:1 max_fails=x;"),
     "t.conf:3: invalid number 'x' for 'max_fails'"},
    {IN_UPSTREAM("server 127.0.0.1:1 fail_timeout=2d;"),
     "t.conf:3: value 2d out of range 0s..1d for 'fail_timeout'"},
    {IN_UPSTREAM("sever 127.0.0.1:1;"), "t.conf:3: unknown directive 'sever' (did you mean "
                                        "'server'?)"},
    {IN_UPSTREAM("server 127.0.0.1:1 fail_timeout=1y;"),
     "t.conf:3: invalid duration '1y' for 'fail_timeout' (use ms, s, m, h or d)"},
    {IN_UPSTREAM("server 127.0.0.1:1 down;"),
     "t.conf:3: unknown parameter 'down' for 'server' (use weight=, max_fails=, fail_timeout=, "
     "ssl)"},
    /* server */
    {IN_MAIN("server { route / { upstream app; } }"), "t.conf:1: server has no listen"},
    {IN_MAIN("server { listen 9000; }"), "t.conf:1: server has no route"},
    {"upstream app { server 127.0.0.1:3000; }\n", "t.conf:2: no server block"},
    {"", "t.conf:1: no server block"},
    {IN_SERVER("listen 127.0.0.1:8080;"),
     "t.conf:5: listen address 127.0.0.1:8080 is already used by the server at line 2"},
    {IN_MAIN("server { listen 127.0.0.1:8080; route / { return 200; } }"),
     "t.conf:3: listen address 127.0.0.1:8080 is already used by the server at line 1"},
    {IN_SERVER("listen *:8080;"),
     "t.conf:5: listen address 0.0.0.0:8080 overlaps 127.0.0.1:8080 of the server at line 2"},
    {IN_SERVER("listen 127.0.0.1:9901;"),
     "t.conf:5: listen address 127.0.0.1:9901 overlaps the admin listener 127.0.0.1:9901 "
     "(move one of them with 'admin { listen ...; }')"},
    {IN_ADMIN("listen 127.0.0.1:8080;"),
     "t.conf:2: admin listen address 127.0.0.1:8080 is already used by the server at line 5"},
    {IN_SERVER("listen 127.0.0.1:8081 backlog=0;"),
     "t.conf:5: value 0 out of range 1..65535 for 'backlog'"},
    /* TLS (certificate files themselves: tests/integration/test_tls.py) */
    {IN_SERVER("listen 127.0.0.1:8081 ssl;"),
     "t.conf:2: server has 'listen ... ssl' but no certificate (add 'certificate' and "
     "'certificate_key')"},
    {IN_SERVER("certificate /etc/fg/a.pem;\n    certificate_key /etc/fg/a.key;"),
     "t.conf:5: certificate without any 'listen ... ssl' in this server"},
    {IN_SERVER("listen 127.0.0.1:8081 ssl;\n    certificate /etc/fg/a.pem;"),
     "t.conf:6: certificate has no certificate_key after it"},
    {IN_SERVER("listen 127.0.0.1:8081 ssl;\n    certificate_key /etc/fg/a.key;\n"
               "    certificate /etc/fg/b.pem;\n    certificate_key /etc/fg/b.key;"),
     "t.conf:6: certificate_key without a certificate before it"},
    {IN_SERVER("certificate a.pem;"), "t.conf:5: path 'a.pem' for 'certificate' must be absolute"},
    {IN_SERVER("listen 127.0.0.1:8081 ssl;\n    certificate /nonexistent/a.pem;\n"
               "    certificate_key /nonexistent/a.key;"),
     "t.conf:6: certificate /nonexistent/a.pem: cannot open: No such file or directory"},
    {IN_SERVER("ssl_protocols TLSv1.1 TLSv1.2;"),
     "t.conf:5: 'TLSv1.1' is not supported: it is obsolete (RFC 8996); use TLSv1.2 and TLSv1.3"},
    {IN_SERVER("ssl_protocols TLSv1.2;"),
     "t.conf:5: 'ssl_protocols' without TLSv1.3 is not supported (use TLSv1.2 TLSv1.3)"},
    {IN_SERVER("ssl_protocols TLSv2;"),
     "t.conf:5: invalid value 'TLSv2' for 'ssl_protocols' (use TLSv1.2 and/or TLSv1.3)"},
    {IN_SERVER("ssl_session_cache 0;"),
     "t.conf:5: value 0 out of range 1..10000000 for 'ssl_session_cache'"},
    {IN_MAIN("ssl_ticket_key_rotation 10ms;"),
     "t.conf:1: value 10ms out of range 1s..7d for 'ssl_ticket_key_rotation'"},
    {IN_UPSTREAM("    ssl_verify off;"),
     "t.conf:1: upstream 'app' has ssl_* directives but no 'server ... ssl' (add 'ssl' to the "
     "servers that speak TLS)"},
    {IN_UPSTREAM("    server 127.0.0.1:3001 ssl;\n    ssl_ca_file /nonexistent/ca.pem;"),
     "t.conf:1: upstream app: CA file /nonexistent/ca.pem: cannot open: No such file or "
     "directory"},
    {"upstream app {\n    server unix:/run/app.sock ssl;\n}\n" SRV_LINE,
     "t.conf:2: 'ssl' on a unix socket server is not supported"},
    {IN_SERVER("listen 127.0.0.1:8081 reuseport;"),
     "t.conf:5: unknown parameter 'reuseport' for 'listen' (use backlog=, ssl)"},
    {IN_SERVER("listen unix:/run/fg.sock;"),
     "t.conf:5: 'listen' on a unix socket is not supported"},
    {IN_SERVER("trusted_proxies 10.0.0.0/8 10.0.0.0/33;"),
     "t.conf:5: invalid address or CIDR '10.0.0.0/33' for 'trusted_proxies'"},
    {IN_SERVER("access_log /a.log sample=2;"),
     "t.conf:5: invalid sample '2' for 'access_log' (use a fraction from 0 to 1)"},
    {IN_SERVER("access_log /a.log sample=-0.5;"),
     "t.conf:5: invalid sample '-0.5' for 'access_log' (use a fraction from 0 to 1)"},
    {IN_SERVER("access_log /a.log sample=nan;"),
     "t.conf:5: invalid sample 'nan' for 'access_log' (use a fraction from 0 to 1)"},
    {IN_SERVER("access_log /a.log rotate=1;"),
     "t.conf:5: unknown parameter 'rotate=1' for 'access_log' (use sample= or slow=)"},
    {IN_SERVER("access_log off sample=1;"), "t.conf:5: 'access_log off' takes no parameters"},
    {IN_SERVER("access_log a.log;"), "t.conf:5: path 'a.log' for 'access_log' must be absolute"},
    {IN_SERVER("request_id maybe;"),
     "t.conf:5: invalid value 'maybe' for 'request_id' (use on or off)"},
    /* route */
    {IN_SERVER("route /x { upstream ap; }"), "t.conf:5: upstream 'ap' is not defined (did you "
                                             "mean 'app'?)"},
    {IN_SERVER("route /x { upstream zzzzzz; }"), "t.conf:5: upstream 'zzzzzz' is not defined"},
    {IN_SERVER("route /x { }"), "t.conf:5: route needs 'upstream', 'return' or 'health on'"},
    {IN_SERVER("route /x { host a.com; }"),
     "t.conf:5: route needs 'upstream', 'return' or 'health on'"},
    {IN_SERVER("route /x { upstream app; return 503; }"),
     "t.conf:5: route has both 'upstream' and 'return'"},
    {IN_SERVER("route /x { health on; upstream app; }"),
     "t.conf:5: a 'health on' route answers by itself: no 'upstream' or 'return'"},
    {IN_SERVER("route /x { health on; return 200; }"),
     "t.conf:5: a 'health on' route answers by itself: no 'upstream' or 'return'"},
    {IN_SERVER("route /x { health off; }"),
     "t.conf:5: route needs 'upstream', 'return' or 'health on'"},
    {IN_SERVER("route api { upstream app; }"), "t.conf:5: route prefix 'api' must start with '/'"},
    {IN_SERVER("route /a/../b { upstream app; }"),
     "t.conf:5: route prefix '/a/../b' is not a normalised path (no '//', '.', '..', '?', '#' "
     "or spaces)"},
    {IN_SERVER("route //a { upstream app; }"),
     "t.conf:5: route prefix '//a' is not a normalised path (no '//', '.', '..', '?', '#' or "
     "spaces)"},
    {IN_SERVER("route /a?b { upstream app; }"),
     "t.conf:5: route prefix '/a?b' is not a normalised path (no '//', '.', '..', '?', '#' or "
     "spaces)"},
    {IN_SERVER("route / { return 200; }"),
     "t.conf:5: route '/' can never match: the route at line 4 takes all its requests"},
    {IN_SERVER("route /x;"), "t.conf:5: directive 'route' needs a block"},
    {IN_ROUTE("methods GET get;"),
     "t.conf:6: unknown method 'get' for 'methods' (use upper-case names such as GET, POST)"},
    {IN_ROUTE("host \"a b\";"),
     "t.conf:6: invalid host 'a b' for 'host' (a name or *.domain, without port)"},
    {IN_ROUTE("host shop.example.com:8080;"),
     "t.conf:6: invalid host 'shop.example.com:8080' for 'host' (a name or *.domain, without "
     "port)"},
    {IN_ROUTE("host *;"),
     "t.conf:6: invalid host '*' for 'host' (a name or *.domain, without port)"},
    {IN_ROUTE("return 99;"), "t.conf:6: value 99 out of range 200..599 for 'return'"},
    {IN_ROUTE("return 600 x;"), "t.conf:6: value 600 out of range 200..599 for 'return'"},
    {IN_ROUTE("return abc;"), "t.conf:6: invalid number 'abc' for 'return'"},
    {IN_ROUTE("client_max_body_size 0;"),
     "t.conf:6: value 0 out of range 1..1024g for 'client_max_body_size'"},
    {IN_ROUTE("upstream app;"), "t.conf:6: duplicate directive 'upstream' (first at line 5)"},
    {IN_ROUTE("listen 8081;"),
     "t.conf:6: directive 'listen' is not allowed in route (allowed in: server, admin)"},
};

static void test_invalid_configs(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++)
        expect_error(bad_cases[i].text, bad_cases[i].msg);
}

static void test_many_errors_one_load(void **state)
{
    (void)state;
    static const char text[] = "workers 0;\n"                    /* 1 */
                               "keepalive_timout 5s;\n"          /* 2 */
                               "upstream app {\n"                /* 3 */
                               "    server 127.0.0.1:3000;\n"    /* 4 */
                               "    keepalive_timeout 75x;\n"    /* 5 */
                               "}\n"                             /* 6 */
                               "server {\n"                      /* 7 */
                               "    listen 127.0.0.1:8080;\n"    /* 8 */
                               "    route /a { upstream ap; }\n" /* 9 */
                               "    route /b { }\n"              /* 10 */
                               "    max_headers 0;\n"            /* 11 */
                               "}\n"                             /* 12 */
                               "server {\n"                      /* 13 */
                               "    listen 127.0.0.1:8080;\n"    /* 14 */
                               "    route / { return 200; }\n"   /* 15 */
                               "}\n"                             /* 16 */
                               "server { }\n";                   /* 17 */
    static const char *const want[] = {
        "t.conf:1: value 0 out of range 1..256 for 'workers'",
        "t.conf:2: unknown directive 'keepalive_timout' (did you mean 'keepalive_timeout'?)",
        "t.conf:5: invalid duration '75x' for 'keepalive_timeout' (use ms, s, m, h or d)",
        "t.conf:9: upstream 'ap' is not defined (did you mean 'app'?)",
        "t.conf:10: route needs 'upstream', 'return' or 'health on'",
        "t.conf:11: value 0 out of range 1..256 for 'max_headers'",
        "t.conf:14: listen address 127.0.0.1:8080 is already used by the server at line 7",
        "t.conf:17: server has no listen",
        "t.conf:17: server has no route",
    };
    expect_errors(text, want, sizeof(want) / sizeof(want[0]));
}

static void test_syntax_error_suppresses_completeness(void **state)
{
    (void)state;
    /* An unterminated block: report it, not "server has no route" for the cut-off part. */
    static const char *const want1[] = {
        "t.conf:3: unknown directive 'lsten' (did you mean 'listen'?)",
        "t.conf:4: unexpected end of file: missing '}' for 'route' opened at line 4",
    };
    expect_errors(UP "server {\n lsten 8080;\n route / { upstream app;", want1, 2);
    /* A missing ';' is recovered from: the rest of the file is still checked. */
    static const char *const want2[] = {
        "t.conf:1: missing ';' after directive 'workers'",
        "t.conf:3: value 0 out of range 1..1000000000 for 'keepalive_requests'",
        "t.conf:4: missing ';' after directive 'keepalive'",
    };
    expect_errors("workers 4\n"
                  "upstream app { server 127.0.0.1:3000;\n"
                  "  keepalive_requests 0;\n"
                  "  keepalive 3 }\n" SRV_LINE,
                  want2, 3);
}

/* ---- route matching ---------------------------------------------------------------------- */

static const struct fg_conf_route *match(const struct fg_conf_server *s, const char *path,
                                         int method, const char *host)
{
    return fg_config_match_route(s, path, strlen(path), method, host,
                                 host != NULL ? strlen(host) : 0);
}

static void test_route_matching(void **state)
{
    (void)state;
    struct fg_config *c =
        load_ok(UP "server {\n"
                   "  listen 8080;\n"
                   "  route /api { host shop.example.com; upstream app; }\n" /* 0 */
                   "  route /api/ { upstream app; }\n"                       /* 1 */
                   "  route /api { methods POST; upstream app; }\n"          /* 2 */
                   "  route /static/ { host *.cdn.example.com; upstream app; }\n"
                   "  route /exact { methods GET; upstream app; }\n" /* 4 */
                   "  route / { return 404 nope; }\n"                /* 5 */
                   "}\n");
    const struct fg_conf_server *s = &c->servers[0];
    const struct fg_conf_route *r = s->routes;
    /* segment-aware prefixes */
    assert_ptr_equal(match(s, "/api", FG_HTTP_GET, "shop.example.com"), &r[0]);
    assert_ptr_equal(match(s, "/api/x", FG_HTTP_GET, "shop.example.com"), &r[0]);
    assert_ptr_equal(match(s, "/api?q=1", FG_HTTP_GET, "shop.example.com"), &r[0]);
    assert_ptr_equal(match(s, "/apix", FG_HTTP_GET, "shop.example.com"), &r[5]);
    assert_ptr_equal(match(s, "/ap", FG_HTTP_GET, "shop.example.com"), &r[5]);
    /* host: case-insensitive, port and trailing dot ignored */
    assert_ptr_equal(match(s, "/api", FG_HTTP_GET, "SHOP.Example.com:8080"), &r[0]);
    assert_ptr_equal(match(s, "/api", FG_HTTP_GET, "shop.example.com."), &r[0]);
    assert_ptr_equal(match(s, "/api/x", FG_HTTP_GET, "other.example.com"), &r[1]);
    assert_ptr_equal(match(s, "/api/x", FG_HTTP_GET, NULL), &r[1]);
    /* "/api/" does not take "/api" itself; the POST-only "/api" does, for POST */
    assert_ptr_equal(match(s, "/api", FG_HTTP_GET, "other.example.com"), &r[5]);
    assert_ptr_equal(match(s, "/api", FG_HTTP_POST, "other.example.com"), &r[2]);
    assert_ptr_equal(match(s, "/api", FG_HTTP_POST, "shop.example.com"), &r[0]);
    /* wildcard hosts: one or more labels before the suffix, not the bare domain */
    assert_ptr_equal(match(s, "/static/a.css", FG_HTTP_GET, "img.cdn.example.com"), &r[3]);
    assert_ptr_equal(match(s, "/static/a.css", FG_HTTP_GET, "a.b.cdn.example.com:443"), &r[3]);
    assert_ptr_equal(match(s, "/static/a.css", FG_HTTP_GET, "cdn.example.com"), &r[5]);
    assert_ptr_equal(match(s, "/static/a.css", FG_HTTP_GET, "xcdn.example.com"), &r[5]);
    assert_ptr_equal(match(s, "/static", FG_HTTP_GET, "img.cdn.example.com"), &r[5]);
    /* methods: GET implies HEAD; anything else falls through; unknown methods only match
     * routes without a method list */
    assert_ptr_equal(match(s, "/exact", FG_HTTP_GET, NULL), &r[4]);
    assert_ptr_equal(match(s, "/exact/", FG_HTTP_HEAD, NULL), &r[4]);
    assert_ptr_equal(match(s, "/exact", FG_HTTP_DELETE, NULL), &r[5]);
    assert_ptr_equal(match(s, "/exact", FG_HTTP_OTHER, NULL), &r[5]);
    assert_ptr_equal(match(s, "/exact", -1, NULL), &r[5]);
    assert_ptr_equal(match(s, "/exact", 1000, NULL), &r[5]);
    assert_ptr_equal(match(s, "/", FG_HTTP_OTHER, "[::1]:8080"), &r[5]);
    /* only path_len bytes count */
    assert_ptr_equal(fg_config_match_route(s, "/apixyz", 4, FG_HTTP_GET, "shop.example.com", 16),
                     &r[0]);
    assert_string_equal(r[5].return_body, "nope");
    fg_config_unref(c);

    /* no catch-all: 404 */
    c = load_ok(UP "server { listen 8080; route /only { upstream app; } }");
    s = &c->servers[0];
    assert_null(match(s, "/", FG_HTTP_GET, NULL));
    assert_null(match(s, "/onlyx", FG_HTTP_GET, NULL));
    assert_non_null(match(s, "/only/", FG_HTTP_GET, NULL));
    assert_null(fg_config_match_route(NULL, "/", 1, 0, NULL, 0));
    fg_config_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_defaults),
        cmocka_unit_test(test_contract_example),
        cmocka_unit_test(test_shipped_config),
        cmocka_unit_test(test_main_values),
        cmocka_unit_test(test_redis_timeout_default),
        cmocka_unit_test(test_admin_forms),
        cmocka_unit_test(test_upstream_values),
        cmocka_unit_test(test_server_values),
        cmocka_unit_test(test_two_servers),
        cmocka_unit_test(test_route_values),
        cmocka_unit_test(test_syntax_features),
        cmocka_unit_test(test_refcount),
        cmocka_unit_test(test_dump_round_trip),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_invalid_configs),
        cmocka_unit_test(test_tls_values),
        cmocka_unit_test(test_many_errors_one_load),
        cmocka_unit_test(test_syntax_error_suppresses_completeness),
        cmocka_unit_test(test_route_matching),
        cmocka_unit_test(test_redis_values),
        cmocka_unit_test(test_redis_errors),
        cmocka_unit_test(test_cache_tags),
        cmocka_unit_test(test_fleet_block),
        cmocka_unit_test(test_redis_dump_masks_secrets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
