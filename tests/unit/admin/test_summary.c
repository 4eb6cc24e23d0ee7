/* test_summary.c — the one-second summary (versioned JSON) the dashboard draws and the
 * fleet will publish: rates over the interval, totals as /stats counts them, upstreams
 * and limits matched by name across samples, counters that go back counted from zero,
 * and percentiles interpolated inside the histogram's buckets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <event2/buffer.h>

#include "admin/internal.h"
#include "json/json.h"

static struct fg_json *summarize(const struct fg_admin_point *prev,
                                 const struct fg_admin_point *cur)
{
    struct evbuffer *b = evbuffer_new();
    fg_admin_summary_write(b, prev, cur, "web-1");
    size_t len = evbuffer_get_length(b);
    char *text = malloc(len + 1);
    assert_non_null(text);
    evbuffer_remove(b, text, len);
    text[len] = '\0';
    assert_null(memchr(text, '\n', len)); /* one line: one event's data */
    char err[64];
    struct fg_json *j = fg_json_parse(text, len, err, sizeof(err));
    if (j == NULL)
        fail_msg("not JSON (%s): %s", err, text);
    free(text);
    evbuffer_free(b);
    return j;
}

static double num(const struct fg_json *j, const char *a, const char *b)
{
    const struct fg_json *v = fg_json_get(j, a);
    if (v != NULL && b != NULL)
        v = fg_json_get(v, b);
    if (v == NULL || v->type != FG_JSON_NUMBER)
        fail_msg("%s.%s is not a number", a, b ? b : "");
    return strtod(v->str, NULL);
}

static struct fg_admin_point *two_points(void)
{
    struct fg_admin_point *p = calloc(2, sizeof(*p));
    assert_non_null(p);
    p[0].s.mono_ms = 10000;
    p[1].s.mono_ms = 12000; /* a two-second interval: rates are per second */
    p[1].s.wall_ms = 1700000000000;
    p[0].s.generation = p[1].s.generation = 4;
    return p;
}

static void test_rates_totals_and_version(void **state)
{
    (void)state;
    struct fg_admin_point *p = two_points();
    p[0].s.requests = 1000;
    p[1].s.requests = 1400;
    p[0].s.cache_hits = 500;
    p[1].s.cache_hits = 760;
    p[1].s.cache_coalesced = 20;
    p[1].s.cache_misses = 40;
    p[1].s.cache_stale = 20;
    p[1].s.responses[5] = 10;
    p[1].s.offload_queued = 30;
    p[1].s.offload_duplicates = 2;
    p[1].s.n_limits = 1;
    snprintf(p[1].s.limits[0].name, FG_CONF_NAME_MAX, "api");
    p[1].s.limits[0].limited = 8;
    p[1].s.latency[4] = 100; /* (1 ms, 2.5 ms] */
    p[1].warm = (struct fg_admin_warm_progress){.jobs = 1, .done = 5, .queued = 5};
    struct fg_json *j = summarize(&p[0], &p[1]);
    assert_int_equal((int)num(j, "v", NULL), FG_ADMIN_SUMMARY_VERSION);
    assert_string_equal(fg_json_get_string(j, "instance", NULL), "web-1");
    assert_true(num(j, "t", NULL) == 1700000000000.0);
    assert_true(num(j, "interval_ms", NULL) == 2000);
    assert_true(num(j, "generation", NULL) == 4);
    assert_true(num(j, "rate", "requests") == 200);
    assert_true(num(j, "rate", "hit") == 140); /* (260 + 20) / 2 */
    assert_true(num(j, "rate", "5xx") == 5);
    assert_true(num(j, "rate", "offloaded") == 16);
    assert_true(num(j, "rate", "limited") == 4);
    assert_true(num(j, "total", "requests") == 1400);
    assert_true(num(j, "total", "hit") == 780); /* hits + coalesced, as /stats' hit_ratio */
    /* hit ratio: (hit + stale) / (hit + miss + stale) over the interval, and since start */
    assert_true(num(j, "hit_ratio", "interval") == 0.8824); /* (280 + 20) / 340 */
    fg_json_free(j);
    free(p);
}

static void test_hit_ratio_and_percentiles(void **state)
{
    (void)state;
    struct fg_admin_point *p = two_points();
    p[1].s.cache_hits = 80;
    p[1].s.cache_stale = 10;
    p[1].s.cache_misses = 10;
    for (int k = 0; k < 100; k++)
        p[1].s.latency[k < 50 ? 3 : 4]++; /* half in (0.5, 1] ms, half in (1, 2.5] ms */
    struct fg_json *j = summarize(&p[0], &p[1]);
    assert_true(num(j, "hit_ratio", "interval") == 0.9);
    assert_true(num(j, "hit_ratio", "total") == 0.9);
    assert_true(num(j, "latency_ms", "count") == 100);
    double p50 = num(j, "latency_ms", "p50"), p99 = num(j, "latency_ms", "p99");
    assert_true(p50 == 1.0);              /* the 50th of 100: the top of the first bucket */
    assert_true(p99 > 2.4 && p99 <= 2.5); /* 98 % into (1, 2.5] */
    fg_json_free(j);
    /* nothing looked up: no ratio (null), not 0 */
    p[1].s.cache_hits = 0;
    p[1].s.cache_stale = p[1].s.cache_misses = 0;
    j = summarize(&p[0], &p[1]);
    assert_int_equal(fg_json_get(fg_json_get(j, "hit_ratio"), "interval")->type, FG_JSON_NULL);
    fg_json_free(j);
    free(p);
}

static void test_quantile_interpolation(void **state)
{
    (void)state;
    uint64_t b[FG_HIST_BUCKETS] = {0};
    assert_true(fg_admin_hist_quantile_ms(b, 0.99) == 0);
    b[0] = 10; /* (0, 100 us] */
    assert_true(fg_admin_hist_quantile_ms(b, 0.5) == 0.05);
    memset(b, 0, sizeof(b));
    b[FG_HIST_BUCKETS - 1] = 3; /* beyond the last bound: its lower bound */
    assert_true(fg_admin_hist_quantile_ms(b, 0.99) ==
                (double)fg_hist_bounds_us[FG_HIST_BUCKETS - 2] / 1000);
}

static void test_upstreams_and_limits_by_name(void **state)
{
    (void)state;
    struct fg_admin_point *p = two_points();
    /* a reload reordered the upstreams: rates follow the names */
    p[0].s.n_upstreams = p[1].s.n_upstreams = 2;
    snprintf(p[0].s.upstreams[0].name, FG_CONF_NAME_MAX, "app");
    snprintf(p[0].s.upstreams[1].name, FG_CONF_NAME_MAX, "api");
    snprintf(p[1].s.upstreams[0].name, FG_CONF_NAME_MAX, "api");
    snprintf(p[1].s.upstreams[1].name, FG_CONF_NAME_MAX, "app");
    p[0].s.upstreams[0].requests = 100; /* app */
    p[0].s.upstreams[1].requests = 900; /* api */
    p[1].s.upstreams[0].requests = 920; /* api: +20 */
    p[1].s.upstreams[1].requests = 300; /* app: +200 */
    p[1].s.upstreams[1].n_servers = 1;
    snprintf(p[1].s.upstreams[1].servers[0].address, 64, "10.0.0.1:8080");
    p[1].s.upstreams[1].servers[0].healthy = false;
    /* ten limits, one of which refuses most: it comes first, at most 8 are named */
    p[0].s.n_limits = p[1].s.n_limits = 10;
    for (int i = 0; i < 10; i++) {
        snprintf(p[0].s.limits[i].name, FG_CONF_NAME_MAX, "l%d", i);
        snprintf(p[1].s.limits[i].name, FG_CONF_NAME_MAX, "l%d", i);
        p[0].s.limits[i].limited = 1000; /* refused much before, */
        p[1].s.limits[i].limited = 1000 + (uint64_t)i;
    }
    p[1].s.limits[3].limited = 1100;
    struct fg_json *j = summarize(&p[0], &p[1]);
    const struct fg_json *ups = fg_json_get(j, "upstreams");
    assert_int_equal(ups->n, 2);
    assert_string_equal(fg_json_get_string(ups->child, "name", NULL), "api");
    assert_true(num(ups->child, "rate", NULL) == 10);
    assert_true(num(ups->child->next, "rate", NULL) == 100);
    const struct fg_json *srv = fg_json_get(ups->child->next, "servers")->child;
    assert_string_equal(fg_json_get_string(srv, "address", NULL), "10.0.0.1:8080");
    assert_int_equal(fg_json_get(srv, "healthy")->type, FG_JSON_FALSE);
    const struct fg_json *lim = fg_json_get(j, "limits");
    assert_int_equal(lim->n, FG_ADMIN_TOP_LIMITS);
    assert_string_equal(fg_json_get_string(lim->child, "name", NULL), "l3");
    assert_true(num(lim->child, "limited", NULL) == 50);
    assert_string_equal(fg_json_get_string(lim->child->next, "name", NULL), "l9");
    fg_json_free(j);
    free(p);
}

static void test_counters_going_back_and_the_first_summary(void **state)
{
    (void)state;
    struct fg_admin_point *p = two_points();
    p[0].s.cache_hits = 5000; /* a cache gone with a reload: the sum went back */
    p[1].s.cache_hits = 30;
    p[0].agent = (struct fg_admin_agent_numbers){.configured = true, .up = true, .sqs_sent = 900};
    p[1].agent = (struct fg_admin_agent_numbers){.configured = true, .up = true, .sqs_sent = 40};
    struct fg_json *j = summarize(&p[0], &p[1]);
    assert_true(num(j, "rate", "hit") == 15); /* counted from zero: 30 in 2 s */
    const struct fg_json *agent = fg_json_get(fg_json_get(j, "offload"), "agent");
    assert_true(num(agent, "sqs_sent_rate", NULL) == 20); /* the agent restarted */
    fg_json_free(j);
    /* the first summary has no interval: rates 0, totals as they are */
    j = summarize(NULL, &p[1]);
    assert_true(num(j, "interval_ms", NULL) == 0);
    assert_true(num(j, "rate", "hit") == 0);
    assert_true(num(j, "total", "hit") == 30);
    fg_json_free(j);
    /* the agent not configured: null; configured but silent: up false only */
    p[1].agent.configured = false;
    j = summarize(&p[0], &p[1]);
    assert_int_equal(fg_json_get(fg_json_get(j, "offload"), "agent")->type, FG_JSON_NULL);
    fg_json_free(j);
    p[1].agent = (struct fg_admin_agent_numbers){.configured = true, .up = false, .spool_depth = 7};
    j = summarize(&p[0], &p[1]);
    agent = fg_json_get(fg_json_get(j, "offload"), "agent");
    assert_int_equal(fg_json_get(agent, "up")->type, FG_JSON_FALSE);
    assert_null(fg_json_get(agent, "spool_depth")); /* old numbers are not shown as current */
    fg_json_free(j);
    free(p);
}

static void test_routes_and_the_apps_share(void **state)
{
    (void)state;
    struct fg_admin_point *p = two_points();
    p[0].s.n_routes = p[1].s.n_routes = 2;
    snprintf(p[0].s.routes[0].name, 128, "/");
    snprintf(p[0].s.routes[1].name, 128, "shop.example.com/api");
    snprintf(p[1].s.routes[0].name, 128, "/");
    snprintf(p[1].s.routes[1].name, 128, "shop.example.com/api");
    p[0].s.routes[0].requests = 1000; /* busier since the start, */
    p[1].s.routes[0].requests = 1010;
    p[1].s.routes[1].requests = 400; /* but /api is busier now */
    p[1].s.routes[1].r5xx = 40;
    p[1].s.routes[1].latency[7] = 400; /* (10, 25] ms */
    p[1].s.app_head[7] = 400;
    struct fg_json *j = summarize(&p[0], &p[1]);
    const struct fg_json *routes = fg_json_get(j, "routes");
    assert_int_equal(routes->n, 2);
    assert_string_equal(fg_json_get_string(routes->child, "name", NULL), "shop.example.com/api");
    assert_true(num(routes->child, "rate", NULL) == 200);
    assert_true(num(routes->child, "5xx", NULL) == 20);
    double p99 = num(routes->child, "p99_ms", NULL);
    assert_true(p99 > 10 && p99 <= 25);
    assert_true(num(routes->child->next, "rate", NULL) == 5);
    assert_true(num(j, "app_ms", "count") == 400);
    assert_true(num(j, "app_ms", "p99") > 10);
    fg_json_free(j);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rates_totals_and_version),
        cmocka_unit_test(test_hit_ratio_and_percentiles),
        cmocka_unit_test(test_quantile_interpolation),
        cmocka_unit_test(test_upstreams_and_limits_by_name),
        cmocka_unit_test(test_counters_going_back_and_the_first_summary),
        cmocka_unit_test(test_routes_and_the_apps_share),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
