/*
 * test_dashboard_config.c — the directives of the dashboard and the EMF output: their
 * defaults, their values, and the exact "file:line: message" of each bad one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config/config.h"

#define NAME "t.conf"
#define UP   "upstream app { server 127.0.0.1:3000; }\n"
#define SRV  "server { listen 127.0.0.1:8080; route / { upstream app; } }\n"
/* main on line 1, admin and emf directives on line 2 */
#define IN_MAIN(x)  x "\n" UP SRV
#define IN_ADMIN(x) "admin {\n" x "\n}\n" UP SRV
#define IN_EMF(x)   "emf {\n" x "\n}\n" UP SRV

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

static void expect_error(const char *text, const char *msg)
{
    struct fg_config_errors errs;
    struct fg_config *c = fg_config_load_string(NAME, text, &errs);
    assert_null(c);
    bool same = errs.n == 1 && strcmp(errs.msgs[0], msg) == 0;
    if (!same) {
        print_error("config:\n%s\nexpected: %s\ngot:\n", text, msg);
        for (size_t i = 0; i < errs.n; i++)
            print_error("  %s\n", errs.msgs[i]);
    }
    fg_config_errors_free(&errs);
    assert_true(same);
}

static void test_defaults(void **state)
{
    (void)state;
    struct fg_config *c = load_ok(UP SRV);
    assert_true(c->admin.dashboard);
    assert_int_equal(c->admin.stream_viewers, 100);
    assert_int_equal(c->admin.stream_buffer, 256 * 1024);
    assert_null(c->instance_id);
    assert_false(c->emf.enabled);
    fg_config_unref(c);
    /* an admin block without them keeps the defaults too */
    c = load_ok(IN_ADMIN("listen 127.0.0.1:9902;"));
    assert_true(c->admin.dashboard);
    assert_int_equal(c->admin.stream_viewers, 100);
    fg_config_unref(c);
}

static void test_values(void **state)
{
    (void)state;
    struct fg_config *c = load_ok(IN_ADMIN("dashboard off; stream_viewers 0; stream_buffer 1m;"));
    assert_false(c->admin.dashboard);
    assert_int_equal(c->admin.stream_viewers, 0);
    assert_int_equal(c->admin.stream_buffer, 1 << 20);
    fg_config_unref(c);
    c = load_ok(IN_MAIN("instance_id web-1.eu;"));
    assert_string_equal(c->instance_id, "web-1.eu");
    fg_config_unref(c);
    c = load_ok(IN_MAIN("instance_id auto;"));
    assert_null(c->instance_id);
    fg_config_unref(c);

    c = load_ok(IN_EMF("target file:/var/log/flashgate/emf.log;"));
    assert_true(c->emf.enabled);
    assert_int_equal(c->emf.kind, FG_CONF_EMF_FILE);
    assert_string_equal(c->emf.path, "/var/log/flashgate/emf.log");
    assert_int_equal(c->emf.interval_ms, 60000);
    assert_null(c->emf.ns);
    assert_true(c->emf.instance_dimension);
    assert_true(c->emf.route_dimension);
    fg_config_unref(c);
    c = load_ok(IN_EMF("target tcp://127.0.0.1; interval 10s; namespace Shop/Edge;\n"
                       "log_group edge; dimension AutoScalingGroupName shop-web;"));
    assert_int_equal(c->emf.kind, FG_CONF_EMF_TCP);
    assert_string_equal(c->emf.addr.text, "127.0.0.1:25888"); /* the agent's port */
    assert_int_equal(c->emf.interval_ms, 10000);
    assert_string_equal(c->emf.ns, "Shop/Edge");
    assert_string_equal(c->emf.log_group, "edge");
    assert_int_equal(c->emf.n_dims, 1);
    assert_string_equal(c->emf.dims[0].name, "AutoScalingGroupName");
    assert_string_equal(c->emf.dims[0].value, "shop-web");
    assert_true(c->emf.instance_dimension);
    fg_config_unref(c);
    c = load_ok(IN_EMF("target tcp://127.0.0.1; instance_dimension off;"));
    assert_false(c->emf.instance_dimension);
    fg_config_unref(c);
    c = load_ok(IN_EMF("target udp://[::1]:9999;"));
    assert_int_equal(c->emf.kind, FG_CONF_EMF_UDP);
    assert_string_equal(c->emf.addr.text, "[::1]:9999");
    fg_config_unref(c);
    c = load_ok(IN_MAIN("emf off;"));
    assert_false(c->emf.enabled);
    fg_config_unref(c);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error(IN_EMF("interval 10s;"),
                 "t.conf:1: emf block without a target (file:/path, tcp://host:port or "
                 "udp://host:port)");
    expect_error(IN_EMF("target http://127.0.0.1:25888;"),
                 "t.conf:2: invalid target 'http://127.0.0.1:25888' (file:/path, tcp://host:port "
                 "or udp://host:port, e.g. the CloudWatch agent's tcp://127.0.0.1:25888)");
    expect_error(IN_EMF("target file:emf.log;"),
                 "t.conf:2: path 'emf.log' for 'target' must be absolute");
    expect_error(IN_EMF("target tcp://127.0.0.1:25888; interval 500ms;"),
                 "t.conf:2: value 500ms out of range 1s..1h for 'interval'");
    expect_error(IN_EMF("target tcp://127.0.0.1:25888; namespace a:b;"),
                 "t.conf:2: invalid namespace 'a:b' (1 to 255 characters, no ':')");
    expect_error(IN_EMF("target tcp://127.0.0.1:25888; dimension Instance x;"),
                 "t.conf:2: dimension 'Instance' is one flashgate sets itself");
    expect_error(IN_EMF("target tcp://127.0.0.1:25888; dimension A x; dimension A y;"),
                 "t.conf:2: dimension 'A' is given twice");
    expect_error(IN_EMF("target tcp://127.0.0.1:25888;\n"
                        "dimension a 1; dimension b 1; dimension c 1; dimension d 1;\n"
                        "dimension e 1; dimension f 1; dimension g 1; dimension h 1;\n"
                        "dimension i 1;"),
                 "t.conf:5: at most 8 dimension lines");
    expect_error(IN_MAIN("emf on;"), "t.conf:1: directive 'emf' needs 'off' or a block");
    expect_error(IN_MAIN("instance_id \"web 1\";"),
                 "t.conf:1: invalid instance_id 'web 1' (auto, or 1 to 128 visible ASCII "
                 "characters without quotes)");
    expect_error(IN_ADMIN("stream_viewers 20000;"),
                 "t.conf:2: value 20000 out of range 0..10000 for 'stream_viewers'");
    expect_error(IN_ADMIN("stream_buffer 1k;"),
                 "t.conf:2: value 1k out of range 4k..64m for 'stream_buffer'");
    expect_error(IN_ADMIN("dashboard yes;"),
                 "t.conf:2: invalid value 'yes' for 'dashboard' (use on or off)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
