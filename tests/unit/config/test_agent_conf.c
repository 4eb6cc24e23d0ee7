/*
 * test_agent_conf.c — flashgate-agent.conf through the shared parser and its directive
 * table: the defaults the man page states, the shipped file, the last value of a
 * repeated directive, every error as "file:line: message" (with "did you mean"), and the
 * checks that span directives.
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

#define NAME "a.conf"

static struct fg_conf_agent *load_ok(const char *text)
{
    struct fg_config_errors errs;
    struct fg_conf_agent *c = fg_config_load_agent_string(NAME, text, &errs);
    for (size_t i = 0; i < errs.n; i++)
        print_error("unexpected: %s\n", errs.msgs[i]);
    assert_int_equal(errs.n, 0);
    assert_non_null(c);
    fg_config_errors_free(&errs);
    return c;
}

/* The load fails and the messages are exactly want[0..n) (sorted by line). */
static void load_bad(const char *text, const char *const *want, size_t n)
{
    struct fg_config_errors errs;
    struct fg_conf_agent *c = fg_config_load_agent_string(NAME, text, &errs);
    assert_null(c);
    for (size_t i = 0; i < errs.n; i++)
        print_message("got: %s\n", errs.msgs[i]);
    assert_int_equal(errs.n, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(errs.msgs[i], want[i]);
    fg_config_errors_free(&errs);
}

static void test_defaults_as_documented(void **state)
{
    (void)state;
    struct fg_conf_agent *c = load_ok("# nothing but defaults\n");
    assert_int_equal(c->mode, FG_CONF_AGENT_FORWARD);
    assert_int_equal(c->sink, FG_CONF_AGENT_SINK_LOCAL);
    assert_string_equal(c->listen_path, "/run/flashgate/agent.sock");
    assert_string_equal(c->spool_dir, "/var/lib/flashgate/spool");
    assert_int_equal(c->spool_max_bytes, 1ull << 30);
    assert_int_equal(c->spool_max_age_ms, 0);
    assert_int_equal(c->spool_segment_size, 64u << 20);
    assert_int_equal(c->max_record, 1u << 20);
    assert_int_equal(c->commit_batch, 64);
    assert_int_equal(c->commit_delay_us, 500);
    assert_int_equal(c->dedup_window, 100000);
    assert_int_equal(c->dedup_window_bytes, 4u << 20);
    assert_string_equal(c->app.text, "127.0.0.1:3000");
    assert_int_equal(c->replay_rate, 100);
    assert_int_equal(c->replay_concurrency, 4);
    assert_int_equal(c->replay_timeout_ms, 10000);
    assert_int_equal(c->replay_backoff_ms, 100);
    assert_int_equal(c->replay_backoff_max_ms, 10000);
    assert_int_equal(c->checkpoint_ms, 1000);
    assert_null(c->sqs_queue_url);
    assert_null(c->sqs_endpoint);
    assert_null(c->sqs_region);
    assert_string_equal(c->sqs_message_group, "flashgate");
    assert_null(c->sqs_group_header);
    assert_int_equal(c->sqs_concurrency, 4);
    assert_int_equal(c->sqs_batch_max, 10);
    assert_int_equal(c->sqs_batch_bytes, 256u << 10);
    assert_int_equal(c->sqs_timeout_ms, 10000);
    assert_int_equal(c->sqs_backoff_ms, 100);
    assert_int_equal(c->sqs_backoff_max_ms, 20000);
    assert_string_equal(c->imds_endpoint, "http://169.254.169.254");
    assert_int_equal(c->imds_timeout_ms, 2000);
    assert_int_equal(c->visibility_timeout_s, 60);
    assert_int_equal(c->receive_wait_s, 20);
    assert_true(c->status_enabled);
    assert_string_equal(c->status_addr.text, "127.0.0.1:9902");
    assert_null(c->error_log);
    assert_int_equal(c->log_level, FG_LOG_NOTICE);
    fg_config_agent_free(c);
}

static void test_shipped_file_loads(void **state)
{
    (void)state;
    const char *src = getenv("srcdir");
    char path[4096];
    snprintf(path, sizeof(path), "%s/conf/flashgate-agent.conf", src != NULL ? src : ".");
    struct fg_config_errors errs;
    struct fg_conf_agent *c = fg_config_load_agent(path, &errs);
    for (size_t i = 0; i < errs.n; i++)
        print_error("%s\n", errs.msgs[i]);
    assert_non_null(c);
    assert_string_equal(c->path, path);
    fg_config_agent_free(c);
    fg_config_errors_free(&errs);
}

static void test_values_and_last_one_wins(void **state)
{
    (void)state;
    struct fg_conf_agent *c =
        load_ok("listen /tmp/a.sock;   # a comment after\n"
                "sink sqs;\n"
                "sqs_queue_url https://sqs.eu-west-1.amazonaws.com/1/q.fifo;\n"
                "sqs_message_group header:X-Tenant;\n"
                "spool_max_age 90s; commit_batch 8;\n"
                "replay_rate 0;\n"
                "error_log \"/var/log/flashgate agent.log\" debug;\n"
                "status_listen off;\n"
                "checkpoint_interval 100ms;\n"
                "checkpoint_interval 1h;\n"
                "sink local;\n");
    assert_string_equal(c->listen_path, "/tmp/a.sock");
    assert_int_equal(c->sink, FG_CONF_AGENT_SINK_LOCAL); /* the later line */
    assert_true(c->sqs_fifo);
    assert_string_equal(c->sqs_group_header, "X-Tenant");
    assert_string_equal(c->sqs_message_group, "flashgate");
    assert_int_equal(c->spool_max_age_ms, 90000);
    assert_int_equal(c->commit_batch, 8);
    assert_int_equal(c->replay_rate, 0);
    assert_string_equal(c->error_log, "/var/log/flashgate agent.log");
    assert_int_equal(c->log_level, FG_LOG_DEBUG);
    assert_false(c->status_enabled);
    assert_int_equal(c->checkpoint_ms, 3600000);
    fg_config_agent_free(c);
}

static void test_errors_name_file_line_and_suggest(void **state)
{
    (void)state;
    static const char *const want[] = {
        "a.conf:2: unknown directive 'replay_rat' (did you mean 'replay_rate'?)",
        "a.conf:3: invalid number 'fast' for 'commit_batch'",
        "a.conf:4: value 11 out of range 1..10 for 'sqs_batch_max'",
        "a.conf:5: invalid duration '5x' for 'replay_timeout' (use ms, s, m, h or d)",
        "a.conf:6: invalid value 'sideways' for 'mode' (use forward or drain)",
        "a.conf:7: path 'spool' for 'spool_dir' must be absolute",
        "a.conf:8: directive 'listen' takes 1 argument, got 2",
        "a.conf:9: 'http://sqs.example.com' for 'sqs_endpoint': plain http only to a loopback "
        "address (tests); use https",
        "a.conf:10: value 1500ms for 'visibility_timeout' is not whole seconds from 1s to "
        "43200s",
        "a.conf:11: directive 'app' takes no block",
        "a.conf:12: missing ';' after directive 'app'",
    };
    load_bad("listen /tmp/a.sock;\n"
             "replay_rat 5;\n"
             "commit_batch fast;\n"
             "sqs_batch_max 11;\n"
             "replay_timeout 5x;\n"
             "mode sideways;\n"
             "spool_dir spool;\n"
             "listen /a /b;\n"
             "sqs_endpoint http://sqs.example.com;\n"
             "visibility_timeout 1500ms;\n"
             "app 127.0.0.1:1 { }\n"
             "app 127.0.0.1:1\n",
             want, sizeof(want) / sizeof(want[0]));
}

static void test_checks_across_directives(void **state)
{
    (void)state;
    static const char *const backoff[] = {
        "a.conf:3: replay_backoff_max (1000ms) is below replay_backoff (2000ms)",
        "a.conf:5: sqs_backoff_max (50ms) is below sqs_backoff (100ms)",
    };
    load_bad("replay_backoff 2s;\n"
             "listen /tmp/a.sock;\n"
             "replay_backoff_max 1s;\n"
             "# the default sqs_backoff is 100ms\n"
             "sqs_backoff_max 50ms;\n",
             backoff, 2);
    static const char *const sqs[] = {"a.conf:2: sink sqs needs sqs_queue_url"};
    load_bad("listen /tmp/a.sock;\nsink sqs;\n", sqs, 1);
    static const char *const drain[] = {"a.conf:1: mode drain needs sqs_queue_url"};
    load_bad("mode drain;\n", drain, 1);
    /* A long poll must end before its request times out. */
    struct fg_conf_agent *c = load_ok("mode drain;\n"
                                      "sqs_queue_url https://sqs.eu-west-1.amazonaws.com/1/q;\n"
                                      "receive_wait 20s;\nsqs_timeout 3s;\n");
    assert_int_equal(c->sqs_timeout_ms, 25000);
    fg_config_agent_free(c);
}

static void test_missing_file(void **state)
{
    (void)state;
    struct fg_config_errors errs;
    assert_null(fg_config_load_agent("/nonexistent/agent.conf", &errs));
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.msgs[0],
                        "/nonexistent/agent.conf: cannot open: No such file or directory");
    fg_config_errors_free(&errs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_as_documented),
        cmocka_unit_test(test_shipped_file_loads),
        cmocka_unit_test(test_values_and_last_one_wins),
        cmocka_unit_test(test_errors_name_file_line_and_suggest),
        cmocka_unit_test(test_checks_across_directives),
        cmocka_unit_test(test_missing_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
