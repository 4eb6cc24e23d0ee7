/* test_emf.c — CloudWatch Embedded Metric Format records: each one follows the format's
 * rules (an _aws member with Timestamp and CloudWatchMetrics, every metric and dimension
 * named there a top-level member, at most 100 metrics and 30 dimensions, CloudWatch's
 * units), more metrics or dimensions make more records, and input that breaks a rule
 * gives no record at all. */
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

#define MAX_RECORDS 16

/* Split the output into lines and parse each one. */
static size_t records_of(struct evbuffer *b, struct fg_json *out[MAX_RECORDS])
{
    size_t n = 0;
    size_t len = evbuffer_get_length(b);
    char *text = malloc(len + 1);
    assert_non_null(text);
    evbuffer_remove(b, text, len);
    text[len] = '\0';
    assert_true(len > 0 && text[len - 1] == '\n');
    for (char *line = text, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        char err[64];
        assert_true(n < MAX_RECORDS);
        out[n] = fg_json_parse(line, (size_t)(nl - line), err, sizeof(err));
        if (out[n] == NULL)
            fail_msg("record %zu is not JSON: %s", n, err);
        n++;
    }
    free(text);
    return n;
}

/* The format's rules on one parsed record; returns its number of metrics. */
static size_t check_record(const struct fg_json *r, int64_t ts)
{
    assert_int_equal(r->type, FG_JSON_OBJECT);
    const struct fg_json *aws = fg_json_get(r, "_aws");
    assert_non_null(aws);
    const struct fg_json *t = fg_json_get(aws, "Timestamp");
    assert_non_null(t);
    assert_int_equal(t->type, FG_JSON_NUMBER);
    assert_int_equal(strtoll(t->str, NULL, 10), ts);
    const struct fg_json *cwm = fg_json_get(aws, "CloudWatchMetrics");
    assert_true(cwm != NULL && cwm->type == FG_JSON_ARRAY && cwm->n >= 1);
    size_t metrics = 0, dim_keys = 0;
    const char *seen[64];
    for (const struct fg_json *d = cwm->child; d != NULL; d = d->next) {
        assert_non_null(fg_json_get_string(d, "Namespace", NULL));
        const struct fg_json *dims = fg_json_get(d, "Dimensions");
        assert_true(dims != NULL && dims->type == FG_JSON_ARRAY);
        for (const struct fg_json *set = dims->child; set != NULL; set = set->next) {
            assert_int_equal(set->type, FG_JSON_ARRAY);
            assert_true(set->n <= FG_EMF_MAX_DIMENSIONS);
            for (const struct fg_json *k = set->child; k != NULL; k = k->next) {
                const struct fg_json *target = fg_json_get(r, k->str);
                if (target == NULL || target->type != FG_JSON_STRING)
                    fail_msg("dimension %s is not a top-level string", k->str);
                bool dup = false;
                for (size_t i = 0; i < dim_keys; i++)
                    dup = dup || strcmp(seen[i], k->str) == 0;
                if (!dup && dim_keys < 64)
                    seen[dim_keys++] = k->str;
            }
        }
        const struct fg_json *ms = fg_json_get(d, "Metrics");
        assert_true(ms != NULL && ms->type == FG_JSON_ARRAY);
        for (const struct fg_json *m = ms->child; m != NULL; m = m->next) {
            const char *name = fg_json_get_string(m, "Name", NULL);
            const char *unit = fg_json_get_string(m, "Unit", NULL);
            assert_true(name != NULL && unit != NULL && fg_emf_unit_valid(unit));
            const struct fg_json *target = fg_json_get(r, name);
            if (target == NULL || target->type != FG_JSON_NUMBER)
                fail_msg("metric %s is not a top-level number", name);
            metrics++;
        }
    }
    assert_true(metrics <= FG_EMF_MAX_METRICS);
    assert_true(dim_keys <= FG_EMF_MAX_DIMENSIONS);
    return metrics;
}

static struct fg_emf_metric *many_metrics(size_t n)
{
    struct fg_emf_metric *m = calloc(n, sizeof(*m));
    assert_non_null(m);
    for (size_t i = 0; i < n; i++) {
        char *name = malloc(16);
        assert_non_null(name);
        snprintf(name, 16, "M%03zu", i);
        m[i] = (struct fg_emf_metric){name, i % 2 ? "Count" : "Milliseconds", (double)i + 0.5};
    }
    return m;
}

static void free_metrics(struct fg_emf_metric *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free((char *)m[i].name);
    free(m);
}

static void test_one_record(void **state)
{
    (void)state;
    struct evbuffer *b = evbuffer_new();
    const struct fg_emf_dimension dims[] = {{"Instance", "i-0abc"},
                                            {"AutoScalingGroupName", "shop"}};
    static const int s0[] = {0, -1}, s1[] = {1, -1};
    const int *const sets[] = {s0, s1};
    const struct fg_emf_metric m[] = {{"Requests", "Count", 1200},
                                      {"LatencyP99", "Milliseconds", 12.5},
                                      {"CacheHitRatio", "Percent", 97.25}};
    assert_int_equal(
        fg_emf_write(b, "flashgate", "fg-metrics", 1700000000123, dims, 2, sets, 2, m, 3), 1);
    struct fg_json *r[MAX_RECORDS];
    assert_int_equal(records_of(b, r), 1);
    assert_int_equal(check_record(r[0], 1700000000123), 3);
    assert_string_equal(fg_json_get_string(r[0], "Instance", NULL), "i-0abc");
    assert_string_equal(fg_json_get_string(r[0], "AutoScalingGroupName", NULL), "shop");
    assert_string_equal(fg_json_get(r[0], "Requests")->str, "1200");
    assert_string_equal(fg_json_get(r[0], "LatencyP99")->str, "12.5");
    assert_string_equal(fg_json_get_string(fg_json_get(r[0], "_aws"), "LogGroupName", NULL),
                        "fg-metrics");
    fg_json_free(r[0]);
    /* without a log group (a file target): no LogGroupName */
    assert_int_equal(fg_emf_write(b, "flashgate", NULL, 1, dims, 2, sets, 1, m, 3), 1);
    assert_int_equal(records_of(b, r), 1);
    assert_null(fg_json_get(fg_json_get(r[0], "_aws"), "LogGroupName"));
    /* a dimension no set names is a plain property: there, but not in Dimensions */
    assert_string_equal(fg_json_get_string(r[0], "AutoScalingGroupName", NULL), "shop");
    const struct fg_json *d0 = fg_json_get(fg_json_get(r[0], "_aws"), "CloudWatchMetrics")->child;
    assert_int_equal(fg_json_get(d0, "Dimensions")->n, 1);
    fg_json_free(r[0]);
    evbuffer_free(b);
}

static void test_metrics_split_by_100(void **state)
{
    (void)state;
    struct evbuffer *b = evbuffer_new();
    struct fg_emf_metric *m = many_metrics(250);
    const struct fg_emf_dimension dims[] = {{"Instance", "web-1"}};
    static const int s0[] = {0, -1};
    const int *const sets[] = {s0};
    assert_int_equal(fg_emf_write(b, "ns", NULL, 42, dims, 1, sets, 1, m, 250), 3);
    struct fg_json *r[MAX_RECORDS];
    assert_int_equal(records_of(b, r), 3);
    assert_int_equal(check_record(r[0], 42), 100);
    assert_int_equal(check_record(r[1], 42), 100);
    assert_int_equal(check_record(r[2], 42), 50);
    /* every metric once, in order, and the dimension in each record */
    assert_non_null(fg_json_get(r[0], "M000"));
    assert_non_null(fg_json_get(r[1], "M100"));
    assert_non_null(fg_json_get(r[2], "M249"));
    assert_null(fg_json_get(r[2], "M000"));
    for (int i = 0; i < 3; i++) {
        assert_string_equal(fg_json_get_string(r[i], "Instance", NULL), "web-1");
        fg_json_free(r[i]);
    }
    free_metrics(m, 250);
    evbuffer_free(b);
}

static void test_dimension_sets_split_by_30(void **state)
{
    (void)state;
    struct evbuffer *b = evbuffer_new();
    struct fg_emf_dimension dims[40];
    char names[40][8];
    for (int i = 0; i < 40; i++) {
        snprintf(names[i], sizeof(names[i]), "D%02d", i);
        dims[i] = (struct fg_emf_dimension){names[i], "v"};
    }
    /* two sets of 20 different dimensions: 40 in all, more than one record may hold */
    int a[21], c[21];
    for (int i = 0; i < 20; i++) {
        a[i] = i;
        c[i] = 20 + i;
    }
    a[20] = c[20] = -1;
    const int *const sets[] = {a, c};
    const struct fg_emf_metric m[] = {{"Requests", "Count", 1}};
    assert_int_equal(fg_emf_write(b, "ns", NULL, 7, dims, 40, sets, 2, m, 1), 2);
    struct fg_json *r[MAX_RECORDS];
    assert_int_equal(records_of(b, r), 2);
    for (int i = 0; i < 2; i++) {
        check_record(r[i], 7);
        fg_json_free(r[i]);
    }
    /* one set of 31: it cannot be split, nothing is written */
    int big[32];
    for (int i = 0; i < 31; i++)
        big[i] = i;
    big[31] = -1;
    const int *const bigs[] = {big};
    assert_int_equal(fg_emf_write(b, "ns", NULL, 7, dims, 40, bigs, 1, m, 1), 0);
    assert_int_equal(evbuffer_get_length(b), 0);
    /* 30 is allowed */
    big[30] = -1;
    assert_int_equal(fg_emf_write(b, "ns", NULL, 7, dims, 40, bigs, 1, m, 1), 1);
    assert_int_equal(records_of(b, r), 1);
    check_record(r[0], 7);
    fg_json_free(r[0]);
    evbuffer_free(b);
}

static void test_bad_input_writes_nothing(void **state)
{
    (void)state;
    struct evbuffer *b = evbuffer_new();
    const struct fg_emf_dimension dims[] = {{"Instance", "x"}};
    static const int s0[] = {0, -1};
    const int *const sets[] = {s0};
    const struct fg_emf_metric bad_unit[] = {{"A", "Count", 1}, {"B", "Requests/Second", 1}};
    const struct fg_emf_metric twice[] = {{"A", "Count", 1}, {"A", "Count", 2}};
    const struct fg_emf_metric clash[] = {{"Instance", "Count", 1}};
    assert_int_equal(fg_emf_write(b, "ns", NULL, 1, dims, 1, sets, 1, bad_unit, 2), 0);
    assert_int_equal(fg_emf_write(b, "ns", NULL, 1, dims, 1, sets, 1, twice, 2), 0);
    assert_int_equal(fg_emf_write(b, "ns", NULL, 1, dims, 1, sets, 1, clash, 1), 0);
    assert_int_equal(fg_emf_write(b, "ns", NULL, 1, dims, 1, sets, 1, bad_unit, 0), 0);
    assert_int_equal(evbuffer_get_length(b), 0);
    /* no set at all: one empty DimensionSet (the metrics without dimensions) */
    const struct fg_emf_metric one[] = {{"A", "Count", 1}};
    assert_int_equal(fg_emf_write(b, "ns", NULL, 1, dims, 1, NULL, 0, one, 1), 1);
    struct fg_json *r[MAX_RECORDS];
    assert_int_equal(records_of(b, r), 1);
    check_record(r[0], 1);
    const struct fg_json *ds = fg_json_get(
        fg_json_get(fg_json_get(r[0], "_aws"), "CloudWatchMetrics")->child, "Dimensions");
    assert_true(ds->n == 1 && ds->child->type == FG_JSON_ARRAY && ds->child->n == 0);
    fg_json_free(r[0]);
    evbuffer_free(b);
}

static void test_units(void **state)
{
    (void)state;
    const char *ok[] = {"Seconds",
                        "Microseconds",
                        "Milliseconds",
                        "Bytes",
                        "Kilobytes",
                        "Megabytes",
                        "Gigabytes",
                        "Terabytes",
                        "Bits",
                        "Kilobits",
                        "Megabits",
                        "Gigabits",
                        "Terabits",
                        "Percent",
                        "Count",
                        "Bytes/Second",
                        "Kilobytes/Second",
                        "Megabytes/Second",
                        "Gigabytes/Second",
                        "Terabytes/Second",
                        "Bits/Second",
                        "Kilobits/Second",
                        "Megabits/Second",
                        "Gigabits/Second",
                        "Terabits/Second",
                        "Count/Second",
                        "None"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        assert_true(fg_emf_unit_valid(ok[i]));
    assert_false(fg_emf_unit_valid("count"));
    assert_false(fg_emf_unit_valid("ms"));
    assert_false(fg_emf_unit_valid(""));
}

/* The instance's metrics of an interval: counts are the interval's, gauges are now's,
 * and every name and unit passes the writer's checks. */
static void test_instance_metrics(void **state)
{
    (void)state;
    struct fg_admin_point *p = calloc(2, sizeof(*p));
    assert_non_null(p);
    p[0].s.requests = 1000;
    p[1].s.requests = 1600;
    p[0].s.cache_hits = 100;
    p[1].s.cache_hits = 550;
    p[1].s.cache_misses = 50;
    p[1].s.responses[5] = 7;
    p[1].s.latency[3] = 600;  /* all in (500 us, 1 ms] */
    p[1].s.app_head[6] = 200; /* (5, 10] ms */
    p[1].s.connections_active = 12;
    p[1].s.generation = 3;
    p[0].agent = (struct fg_admin_agent_numbers){.configured = true, .up = true, .sqs_sent = 10};
    p[1].agent = (struct fg_admin_agent_numbers){
        .configured = true, .up = true, .spool_depth = 42, .sqs_sent = 25, .oldest_age_ms = 900};
    struct fg_emf_metric m[96];
    size_t n = fg_emf_instance_metrics(&p[0], &p[1], m, 96);
    assert_true(n > 20 && n <= FG_EMF_MAX_METRICS);
#define FIND(nm)                                                                                   \
    ({                                                                                             \
        const struct fg_emf_metric *f_ = NULL;                                                     \
        for (size_t i_ = 0; i_ < n; i_++)                                                          \
            if (strcmp(m[i_].name, nm) == 0)                                                       \
                f_ = &m[i_];                                                                       \
        assert_non_null(f_);                                                                       \
        f_;                                                                                        \
    })
    assert_true(FIND("Requests")->value == 600);
    assert_true(FIND("Hits")->value == 450);
    assert_true(FIND("Misses")->value == 50);
    assert_true(FIND("CacheHitRatio")->value == 90);
    assert_string_equal(FIND("CacheHitRatio")->unit, "Percent");
    assert_true(FIND("Errors5xx")->value == 7);
    assert_true(FIND("ConnectionsActive")->value == 12);
    assert_true(FIND("OffloadSpoolDepth")->value == 42);
    assert_true(FIND("SQSSent")->value == 15);
    assert_true(FIND("ConfigGeneration")->value == 3);
    double p99 = FIND("LatencyP99")->value;
    assert_true(p99 > 0.5 && p99 <= 1.0);
    assert_string_equal(FIND("LatencyP99")->unit, "Milliseconds");
    double app99 = FIND("AppLatencyP99")->value;
    assert_true(app99 > 5 && app99 <= 10);
#undef FIND
    struct evbuffer *b = evbuffer_new();
    const struct fg_emf_dimension dims[] = {{"Instance", "i-1"}};
    static const int s0[] = {0, -1};
    const int *const sets[] = {s0};
    assert_int_equal(fg_emf_write(b, "flashgate", NULL, 5, dims, 1, sets, 1, m, n), 1);
    /* no lookups and no requests: no ratio and no percentiles (missing, not 0) */
    p[1] = p[0];
    n = fg_emf_instance_metrics(&p[0], &p[1], m, 96);
    for (size_t i = 0; i < n; i++) {
        assert_string_not_equal(m[i].name, "CacheHitRatio");
        assert_string_not_equal(m[i].name, "LatencyP99");
        assert_string_not_equal(m[i].name, "AppLatencyP99");
    }
    evbuffer_free(b);
    free(p);
}

/* A route's metrics: the interval's counts and its p99; a route new in the interval
 * counts from zero; no requests, no percentile. */
static void test_route_metrics(void **state)
{
    (void)state;
    struct fg_admin_sample_route a = {.name = "/api", .requests = 100, .r4xx = 3, .r5xx = 1};
    struct fg_admin_sample_route b = a;
    b.requests = 160;
    b.r5xx = 4;
    b.latency[5] = 60; /* (2.5, 5] ms */
    struct fg_emf_metric m[8];
    size_t n = fg_emf_route_metrics(&a, &b, m, 8);
    assert_int_equal(n, 4);
    assert_string_equal(m[0].name, "Requests");
    assert_true(m[0].value == 60);
    assert_string_equal(m[1].name, "Errors4xx");
    assert_true(m[1].value == 0);
    assert_string_equal(m[2].name, "Errors5xx");
    assert_true(m[2].value == 3);
    assert_string_equal(m[3].name, "LatencyP99");
    assert_true(m[3].value > 2.5 && m[3].value <= 5);
    n = fg_emf_route_metrics(NULL, &a, m, 8);
    assert_int_equal(n, 3); /* no latency observed */
    assert_true(m[0].value == 100);
    /* its record, with Instance and Route */
    struct evbuffer *buf = evbuffer_new();
    const struct fg_emf_dimension dims[] = {{"Instance", "i-1"}, {"Route", "/api"}};
    static const int s0[] = {0, 1, -1};
    const int *const sets[] = {s0};
    assert_int_equal(fg_emf_write(buf, "flashgate", NULL, 9, dims, 2, sets, 1, m, n), 1);
    struct fg_json *r[MAX_RECORDS];
    assert_int_equal(records_of(buf, r), 1);
    check_record(r[0], 9);
    assert_string_equal(fg_json_get_string(r[0], "Route", NULL), "/api");
    fg_json_free(r[0]);
    evbuffer_free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_record),
        cmocka_unit_test(test_metrics_split_by_100),
        cmocka_unit_test(test_dimension_sets_split_by_30),
        cmocka_unit_test(test_bad_input_writes_nothing),
        cmocka_unit_test(test_units),
        cmocka_unit_test(test_instance_metrics),
        cmocka_unit_test(test_route_metrics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
