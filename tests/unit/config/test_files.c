/*
 * test_files.c — configs that read files: TLS certificates and keys, made at test time
 * with the openssl command-line tool in a mkdtemp directory.
 *
 *   - A certificate/key error names the line of the file at fault: the certificate_key
 *     line of the pair whose key does not match, even when that key file is also written
 *     (correctly) for another certificate.
 *   - The dump (`flashgate -T`, /config) of a config that writes every directive of the
 *     table is a config that loads, dumps the same, and still writes every directive:
 *     nothing the operator wrote is dropped (a dump without `health on;` once was).
 *   - A reload keeps the running values of the restart-only directives, with a warning
 *     naming each one and its line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/internal.h"

#define OPENSSL_BIN "/usr/bin/openssl"
#define NAME        "t.conf"

static char dir[64];

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[2048];
    int n = snprintf(cmd, sizeof(cmd), "cd '%s' && (", dir);
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(cmd + n, sizeof(cmd) - (size_t)n, fmt, ap);
    va_end(ap);
    snprintf(cmd + n, sizeof(cmd) - (size_t)n, ") >>openssl.log 2>&1");
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "test_files: command failed (see %s/openssl.log): %s\n", dir, cmd);
    return rc;
}

/* A self-signed EC certificate NAME.pem for CN with its key NAME.key. */
static int self_signed(const char *name, const char *cn)
{
    return sh(OPENSSL_BIN " req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                          "-keyout %s.key -out %s.pem -days 30 -subj /CN=%s "
                          "-addext subjectAltName=DNS:%s",
              name, name, cn, cn);
}

static int group_setup(void **state)
{
    (void)state;
    if (access(OPENSSL_BIN, X_OK) != 0) {
        fprintf(stderr, "test_files: FAIL: %s is missing (Debian package 'openssl')\n",
                OPENSSL_BIN);
        return -1;
    }
    snprintf(dir, sizeof(dir), "/tmp/fg-conf-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        perror("test_files: mkdtemp");
        return -1;
    }
    if (self_signed("a", "a.test") != 0 || self_signed("b", "b.test") != 0)
        return -1;
    /* a Redis password file as the endpoint wants it: the owner's alone */
    char pw[300];
    snprintf(pw, sizeof(pw), "%s/redis.pw", dir);
    FILE *f = fopen(pw, "w");
    if (f == NULL || fputs("s3cret\n", f) < 0 || fclose(f) != 0 || chmod(pw, 0600) != 0) {
        perror("test_files: redis.pw");
        return -1;
    }
    /* a waiting room's keys (root-only like the password) and its page */
    snprintf(pw, sizeof(pw), "%s/waitroom.keys", dir);
    f = fopen(pw, "w");
    if (f == NULL || fputs("0123456789abcdef0123456789abcdef\n", f) < 0 || fclose(f) != 0 ||
        chmod(pw, 0600) != 0) {
        perror("test_files: waitroom.keys");
        return -1;
    }
    snprintf(pw, sizeof(pw), "%s/waiting.html", dir);
    f = fopen(pw, "w");
    if (f == NULL || fputs("<p>{{position}} {{eta}}</p>{{script}}\n", f) < 0 || fclose(f) != 0) {
        perror("test_files: waiting.html");
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* text with every "$D" replaced by the fixture directory. */
static char *with_dir(const char *text)
{
    size_t n = strlen(text) + 1, dl = strlen(dir);
    for (const char *p = strstr(text, "$D"); p != NULL; p = strstr(p + 2, "$D"))
        n += dl;
    char *out = malloc(n), *o = out;
    assert_non_null(out);
    for (const char *p = text; *p;) {
        if (p[0] == '$' && p[1] == 'D') {
            memcpy(o, dir, dl);
            o += dl;
            p += 2;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return out;
}

static void expect_error(const char *tmpl, const char *want_tmpl)
{
    char *text = with_dir(tmpl), *want = with_dir(want_tmpl);
    struct fg_config_errors errs;
    struct fg_config *c = fg_config_load_string(NAME, text, &errs);
    assert_null(c);
    bool same = errs.n == 1 && strcmp(errs.msgs[0], want) == 0;
    if (!same) {
        print_error("config:\n%s\nexpected:\n  %s\ngot:\n", text, want);
        for (size_t i = 0; i < errs.n; i++)
            print_error("  %s\n", errs.msgs[i]);
    }
    fg_config_errors_free(&errs);
    free(text);
    free(want);
    assert_true(same);
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

#define TLS_HEAD                                                                                   \
    "upstream app { server 127.0.0.1:3000; }\n" /* 1 */                                            \
    "server {\n"                                /* 2 */                                            \
    "    listen 127.0.0.1:8443 ssl;\n"          /* 3 */                                            \
    "    route / { upstream app; }\n"           /* 4 */

/* ---- certificate errors point at the file's own line --------------------------------- */

static void test_key_mismatch_names_its_key_line(void **state)
{
    (void)state;
    /* a.key is right for a.pem (lines 5-6) and wrong for b.pem (lines 7-8): the error
     * is about line 8, where a.key is written for b.pem, not the a.pem pair. */
    expect_error(TLS_HEAD "    certificate $D/a.pem;\n"
                          "    certificate_key $D/a.key;\n"
                          "    certificate $D/b.pem;\n"
                          "    certificate_key $D/a.key;\n"
                          "}\n",
                 "t.conf:8: certificate_key $D/a.key: does not match certificate $D/b.pem");
    /* the wrong pair first: still its own key line */
    expect_error(TLS_HEAD "    certificate $D/b.pem;\n"
                          "    certificate_key $D/a.key;\n"
                          "    certificate $D/a.pem;\n"
                          "    certificate_key $D/a.key;\n"
                          "}\n",
                 "t.conf:6: certificate_key $D/a.key: does not match certificate $D/b.pem");
    /* a key that cannot be read: its own line too, the second pair's */
    expect_error(TLS_HEAD "    certificate $D/a.pem;\n"
                          "    certificate_key $D/a.key;\n"
                          "    certificate $D/b.pem;\n"
                          "    certificate_key $D/missing.key;\n"
                          "}\n",
                 "t.conf:8: certificate_key $D/missing.key: cannot open: No such file or "
                 "directory");
}

static void test_certificate_errors_name_the_certificate_line(void **state)
{
    (void)state;
    /* the same certificate file twice, the second one missing a neighbour: the line
     * that names the missing certificate */
    expect_error(TLS_HEAD "    certificate $D/a.pem;\n"
                          "    certificate_key $D/a.key;\n"
                          "    certificate $D/none.pem;\n"
                          "    certificate_key $D/a.key;\n"
                          "}\n",
                 "t.conf:7: certificate $D/none.pem: cannot open: No such file or directory");
    /* a key file given as the certificate */
    expect_error(
        TLS_HEAD "    certificate $D/a.pem;\n"
                 "    certificate_key $D/a.key;\n"
                 "    certificate $D/b.key;\n"
                 "    certificate_key $D/b.key;\n"
                 "}\n",
        "t.conf:7: certificate $D/b.key: not a valid PEM certificate chain: no start line");
}

static void test_good_pairs_load(void **state)
{
    (void)state;
    char *text = with_dir(TLS_HEAD "    certificate $D/a.pem;\n"
                                   "    certificate_key $D/a.key;\n"
                                   "    certificate $D/b.pem;\n"
                                   "    certificate_key $D/b.key;\n"
                                   "}\n");
    struct fg_config *c = load_ok(text);
    assert_non_null(c->servers[0].tls);
    assert_int_equal(c->servers[0].certs[1].line, 7);
    assert_int_equal(c->servers[0].certs[1].key_line, 8);
    fg_config_unref(c);
    free(text);
}

/* ---- the dump keeps every directive ---------------------------------------------------- */

/* Every directive of the table, each in a context it belongs to. */
static const char rich[] =
    "workers 3;\n"
    "user nobody;\n"
    "pid_file /run/fg-test.pid;\n"
    "error_log /var/log/fg-test-error.log info;\n"
    "shutdown_delay 5s;\n"
    "drain_timeout 20s;\n"
    "max_tunnels 500;\n"
    "ssl_ticket_key_rotation 2h;\n"
    "limit_table_entries 4096;\n"
    "admin {\n"
    "    listen 127.0.0.1:9911;\n"
    "    token \"s3cret\";\n"
    "    agent_status 127.0.0.1:9912;\n"
    "    dashboard off;\n"
    "    stream_viewers 20;\n"
    "    stream_buffer 64k;\n"
    "}\n"
    "instance_id web-7;\n"
    "emf {\n"
    "    target udp://127.0.0.1:25888;\n"
    "    interval 10s;\n"
    "    namespace shop/edge;\n"
    "    log_group shop-edge-metrics;\n"
    "    instance_dimension off;\n"
    "    route_dimension off;\n"
    "    dimension AutoScalingGroupName shop-web;\n"
    "    dimension Stage \"blue green\";\n"
    "}\n"
    "upstream app {\n"
    "    server 127.0.0.1:3000 weight=2 max_fails=4 fail_timeout=7s;\n"
    "    server localhost:3443 ssl;\n"
    "    balance least_conn;\n"
    "    keepalive 16;\n"
    "    keepalive_timeout 2s;\n"
    "    keepalive_requests 500;\n"
    "    connect_timeout 300ms;\n"
    "    send_timeout 9s;\n"
    "    read_timeout 12s;\n"
    "    retry off;\n"
    "    ssl_verify on;\n"
    "    ssl_ca_file $D/a.pem;\n"
    "    ssl_server_name a.test;\n"
    "}\n"
    "cache main {\n"
    "    memory 64m;\n"
    "    max_object 2m;\n"
    "    tag_field Cache-Tag X-Tags;\n"
    "    tag_strip off;\n"
    "    shared on;\n"
    "    shared_timeout 4ms;\n"
    "    shared_max_object 512k;\n"
    "}\n"
    "fleet {\n"
    "    redis fleet;\n"
    "    channel shop;\n"
    "    sharded on;\n"
    "    purge_log 500;\n"
    "    hot_keys 300;\n"
    "    warm_start 100;\n"
    "    warm_timeout 10s;\n"
    "    warm_concurrency 4;\n"
    "}\n"
    "limit per_key {\n"
    "    key header X-Api-Key cookie session;\n"
    "    rate 600r/m;\n"
    "    burst 30;\n"
    "    backend redis redis://:pw@127.0.0.1:6379/2 timeout=15ms fail=closed;\n"
    "}\n"
    "resolver 127.0.0.1:5353;\n"
    "redis fleet {\n"
    "    url rediss://app@cache.fleet.test:6380;\n"
    "    password_file $D/redis.pw;\n"
    "    ssl_ca_file $D/a.pem;\n"
    "    cluster on;\n"
    "    connect_timeout 2s;\n"
    "    resolve_interval 10s;\n"
    "}\n"
    "redis iam {\n"
    "    url rediss://cache.fleet.test:6379;\n"
    "    auth iam user=app cache=fleet-cache serverless region=eu-west-1;\n"
    "    max_connection_age 6h;\n"
    "    imds_endpoint http://127.0.0.1:1338;\n"
    "}\n"
    "waiting_room sale {\n"
    "    key_file $D/waitroom.keys;\n"
    "    admit 3000/m;\n"
    "    max_active 2000;\n"
    "    adaptive p99=800ms errors=5%;\n"
    "    session_ttl 15m;\n"
    "    opens_at 2026-12-08T09:00:00Z;\n"
    "    active off;\n"
    "    redis fleet timeout=80ms;\n"
    "    fallback 30% closed;\n"
    "    poll 4s;\n"
    "    page $D/waiting.html;\n"
    "    bypass_prefix /static/ /assets/;\n"
    "    bypass_header X-Api-Key partner-s3cret-key;\n"
    "}\n"
    "server {\n"
    "    listen 127.0.0.1:8080 backlog=512;\n"
    "    listen 127.0.0.1:8443 ssl;\n"
    "    certificate $D/a.pem;\n"
    "    certificate_key $D/a.key;\n"
    "    certificate $D/b.pem;\n"
    "    certificate_key $D/b.key;\n"
    "    ssl_protocols TLSv1.3;\n"
    "    ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256;\n"
    "    ssl_session_cache 1000;\n"
    "    ssl_session_timeout 10m;\n"
    "    ssl_session_tickets off;\n"
    "    keepalive_timeout 90s;\n"
    "    keepalive_requests 100;\n"
    "    header_timeout 5s;\n"
    "    body_timeout 30s;\n"
    "    body_min_rate 2k;\n"
    "    send_timeout 20s;\n"
    "    max_request_line 4k;\n"
    "    max_header_size 16k;\n"
    "    max_headers 50;\n"
    "    client_max_body_size 2m;\n"
    "    trusted_proxies 10.0.0.0/8 127.0.0.1;\n"
    "    request_id off;\n"
    "    server_timing on;\n"
    "    access_log /var/log/fg-test-access.log sample=0.5 slow=2s;\n"
    "    route /healthz {\n"
    "        health on;\n"
    "    }\n"
    "    route /down {\n"
    "        return 503 \"down for maintenance\\n\";\n"
    "    }\n"
    "    route /api/orders {\n"
    "        host *.example.com;\n"
    "        methods POST PUT;\n"
    "        upstream app;\n"
    "        client_max_body_size 100k;\n"
    "        limit per_key;\n"
    "        limit_headers on;\n"
    "        offload {\n"
    "            agent unix:/run/fg-test-agent.sock;\n"
    "            when inflight 10;\n"
    "            when latency 250ms;\n"
    "            when failing;\n"
    "            when limited;\n"
    "            methods POST PUT;\n"
    "            fallback reject;\n"
    "            max_body 64k;\n"
    "            headers Content-Type X-Trace;\n"
    "            key_header X-Key;\n"
    "            location_prefix /api/orders/status/;\n"
    "            timeout 800ms;\n"
    "        }\n"
    "    }\n"
    "    route / {\n"
    "        upstream app;\n"
    "        waiting_room sale;\n"
    "        compress gzip br;\n"
    "        compress_types text/* application/json;\n"
    "        compress_min_length 512;\n"
    "        gzip_level 6;\n"
    "        brotli_level 5;\n"
    "        cache main;\n"
    "        cache_lock_timeout 3s;\n"
    "        cache_hit_for_miss 20s;\n"
    "        stale_while_revalidate 15s;\n"
    "        stale_if_error 5m;\n"
    "        cache_default_ttl 1m;\n"
    "        cache_key_ignore_params utm_* gclid;\n"
    "        cache_key_sort_params on;\n"
    "        cache_targeted_field Flashgate-Cache-Control;\n"
    "        cache_status_header off;\n"
    "        cache_status_field off;\n"
    "        upgrade websocket mqtt;\n"
    "        tunnel_timeout 10m;\n"
    "    }\n"
    "}\n";

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

/* Does text have a statement that starts with name (first word of a line)? */
static bool writes(const char *text, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = text; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        while (*p == ' ')
            p++;
        if (strncmp(p, name, nl) == 0 && (p[nl] == ' ' || p[nl] == ';'))
            return true;
    }
    return false;
}

static void test_dump_keeps_every_directive(void **state)
{
    (void)state;
    char *text = with_dir(rich);
    /* the fixture itself covers the table: a new directive must be added above */
    for (size_t i = 0; i < fg_conf_n_directives; i++) {
        if (!writes(text, fg_conf_directives[i].name))
            print_error("the rich config lacks '%s'\n", fg_conf_directives[i].name);
        assert_true(writes(text, fg_conf_directives[i].name));
    }
    struct fg_config *c = load_ok(text);
    char *one = dump_to_string(c);
    fg_config_unref(c);
    for (size_t i = 0; i < fg_conf_n_directives; i++) {
        if (!writes(one, fg_conf_directives[i].name))
            print_error("the dump drops '%s':\n%s\n", fg_conf_directives[i].name, one);
        assert_true(writes(one, fg_conf_directives[i].name));
    }
    assert_non_null(strstr(one, "    route /healthz {\n        health on;\n"));
    assert_null(strstr(one, "s3cret"));
    assert_non_null(strstr(one, "    admit 50/s;\n    max_active 2000;\n"
                                "    adaptive p99=800ms errors=5.0%;\n"));
    assert_non_null(strstr(one, "    opens_at 1796720400;\n    active off;\n"));
    assert_null(strstr(one, ":pw@"));
    /* the dump loads (the masked secrets are values like any other) and dumps the same */
    c = load_ok(one);
    char *two = dump_to_string(c);
    assert_true(c->servers[0].routes[0].health);
    fg_config_unref(c);
    assert_string_equal(strchr(one, '\n'), strchr(two, '\n'));
    free(one);
    free(two);
    free(text);
}

/* ---- a reload keeps what only a restart changes --------------------------------------- */

static void test_restart_only_directives_keep_running_values(void **state)
{
    (void)state;
    struct fg_config *cur =
        load_ok("workers 2;\n"
                "limit_table_entries 4096;\n"
                "admin { listen 127.0.0.1:9901; }\n"
                "upstream app { server 127.0.0.1:3000; }\n"
                "server { listen 127.0.0.1:8080; route / { upstream app; } }\n");
    struct fg_config *next =
        load_ok("\n"
                "workers 4;\n"
                "user nobody;\n"
                "pid_file /run/x.pid;\n"
                "admin {\n"
                "    listen 127.0.0.1:9911;\n"
                "}\n"
                "upstream app { server 127.0.0.1:3000; }\n"
                "server { listen 127.0.0.1:8080; route / { upstream app; } }\n");
    struct fg_config_errors w;
    assert_int_equal(fg_config_keep_restart_only(next, cur, &w), 5);
    static const char *const want[] = {
        "t.conf:2: workers 4: takes effect only at a restart; 2 keep running",
        "t.conf:3: user nobody: takes effect only at a restart; still running as the starting "
        "user",
        "t.conf:4: pid_file /run/x.pid: takes effect only at a restart; no pid file stays in use",
        "t.conf: limit_table_entries 262144: takes effect only at a restart; the table keeps 4096 "
        "entries",
        "t.conf:6: admin listen 127.0.0.1:9911: takes effect only at a restart; the admin "
        "listener stays on 127.0.0.1:9901",
    };
    for (size_t i = 0; i < w.n && i < 5; i++) {
        if (strcmp(w.msgs[i], want[i]) != 0)
            print_error("got  %s\nwant %s\n", w.msgs[i], want[i]);
        assert_string_equal(w.msgs[i], want[i]);
    }
    fg_config_errors_free(&w);
    /* what the snapshot (and so /config) says is what runs */
    assert_int_equal(next->workers, 2);
    assert_null(next->user);
    assert_null(next->pid_file);
    assert_int_equal(next->limit_table_entries, 4096);
    assert_string_equal(next->admin.addr.text, "127.0.0.1:9901");
    char *d = dump_to_string(next);
    assert_non_null(strstr(d, "workers 2;\n"));
    assert_non_null(strstr(d, "    listen 127.0.0.1:9901;\n"));
    assert_null(strstr(d, "nobody"));
    free(d);
    /* nothing changed: no warning */
    assert_int_equal(fg_config_keep_restart_only(next, cur, &w), 0);
    fg_config_errors_free(&w);
    fg_config_unref(next);

    /* admin turned off by the new file: stays on */
    next = load_ok("workers 2;\nlimit_table_entries 4096;\nadmin off;\n"
                   "upstream app { server 127.0.0.1:3000; }\n"
                   "server { listen 127.0.0.1:8080; route / { upstream app; } }\n");
    assert_int_equal(fg_config_keep_restart_only(next, cur, &w), 1);
    assert_string_equal(w.msgs[0],
                        "t.conf:3: admin off: takes effect only at a restart; the admin listener "
                        "stays on");
    assert_true(next->admin.enabled);
    assert_string_equal(next->admin.addr.text, "127.0.0.1:9901");
    fg_config_errors_free(&w);
    fg_config_unref(next);
    fg_config_unref(cur);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_mismatch_names_its_key_line),
        cmocka_unit_test(test_certificate_errors_name_the_certificate_line),
        cmocka_unit_test(test_good_pairs_load),
        cmocka_unit_test(test_dump_keeps_every_directive),
        cmocka_unit_test(test_restart_only_directives_keep_running_values),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
