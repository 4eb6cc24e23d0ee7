/*
 * stats.c — the /stats document: per-worker counters summed on read. Workers write their
 * own counters without locks (core.h); this runs on the admin thread.
 */
#include "server/internal.h"

#include <inttypes.h>
#include <string.h>

#define SUM(field)                                                                         \
    ({                                                                                     \
        uint64_t s_ = 0;                                                                   \
        for (size_t i_ = 0; i_ < n; i_++)                                                  \
            s_ += fg_counter_get(&ws[i_].stats.field);                                     \
        s_;                                                                                \
    })

static void upstream_json(struct evbuffer *out, struct fg_worker *ws, size_t n,
                          const struct fg_conf_upstream *u)
{
    struct fg_upstream_stats sum;
    memset(&sum, 0, sizeof(sum));
    uint64_t down[FG_UPSTREAM_MAX_SERVERS] = {0};
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&ws[i].ustats_lock);
        for (size_t k = 0; k < ws[i].n_ustats; k++) {
            struct fg_upstream_stats *st = ws[i].ustats[k];
            if (strcmp(st->name, u->name) != 0)
                continue;
#define ADD(f) fg_counter_add(&sum.f, fg_counter_get(&st->f))
            ADD(requests);
            ADD(connections_active);
            ADD(connections_idle);
            ADD(connects);
            ADD(reused);
            ADD(retries);
            ADD(err_connect);
            ADD(err_timeout);
            ADD(err_reset);
            ADD(err_bad_response);
            for (size_t s = 0; s < st->n_servers && s < u->n_servers; s++) {
                ADD(servers[s].requests);
                ADD(servers[s].fails);
                down[s] += fg_counter_get(&st->servers[s].down);
            }
#undef ADD
        }
        pthread_mutex_unlock(&ws[i].ustats_lock);
    }
#define G(f) fg_counter_get(&sum.f)
    evbuffer_add_printf(out,
                        "\"%s\":{\"requests\":%" PRIu64 ",\"connections_active\":%" PRIu64
                        ",\"connections_idle\":%" PRIu64 ",\"connects\":%" PRIu64
                        ",\"reused\":%" PRIu64 ",\"retries\":%" PRIu64
                        ",\"errors\":{\"connect\":%" PRIu64 ",\"timeout\":%" PRIu64
                        ",\"reset\":%" PRIu64 ",\"bad_response\":%" PRIu64 "},\"servers\":[",
                        u->name, G(requests), G(connections_active), G(connections_idle),
                        G(connects), G(reused), G(retries), G(err_connect), G(err_timeout),
                        G(err_reset), G(err_bad_response));
    for (size_t s = 0; s < u->n_servers && s < FG_UPSTREAM_MAX_SERVERS; s++) {
        evbuffer_add_printf(out,
                            "%s{\"address\":\"%s\",\"healthy\":%s,\"fails\":%" PRIu64
                            ",\"requests\":%" PRIu64 "}",
                            s ? "," : "", u->servers[s].addr.text, down[s] ? "false" : "true",
                            G(servers[s].fails), G(servers[s].requests));
    }
#undef G
    evbuffer_add(out, "]}", 2);
}

void fg_stats_json(struct evbuffer *out, struct fg_worker *ws, size_t n,
                   const struct fg_config *cfg, uint64_t uptime_s, bool draining)
{
    evbuffer_add_printf(out,
                        "{\"version\":\"%s\",\"uptime_s\":%" PRIu64 ",\"generation\":%" PRIu64
                        ",\"draining\":%s,\"workers\":%zu,",
                        PACKAGE_VERSION, uptime_s, cfg->generation, draining ? "true" : "false", n);
    evbuffer_add_printf(out,
                        "\"downstream\":{\"connections_active\":%" PRIu64
                        ",\"connections_idle\":%" PRIu64 ",\"connections_total\":%" PRIu64
                        ",\"requests_total\":%" PRIu64 ",\"requests_active\":%" PRIu64
                        ",\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64
                        ",\"client_aborts\":%" PRIu64 ",",
                        SUM(connections_active), SUM(connections_idle), SUM(connections_total),
                        SUM(requests_total), SUM(requests_active), SUM(bytes_in), SUM(bytes_out),
                        SUM(client_aborts));
    evbuffer_add_printf(out,
                        "\"responses\":{\"1xx\":%" PRIu64 ",\"2xx\":%" PRIu64 ",\"3xx\":%" PRIu64
                        ",\"4xx\":%" PRIu64 ",\"5xx\":%" PRIu64 "},",
                        SUM(responses[1]), SUM(responses[2]), SUM(responses[3]),
                        SUM(responses[4]), SUM(responses[5]));
    evbuffer_add(out, "\"rejected\":{", 12);
    for (int e = 1; e < FG_HTTP_E__COUNT; e++)
        evbuffer_add_printf(out, "\"%s\":%" PRIu64 ",", fg_http_error_name((enum fg_http_error)e),
                            SUM(rejected[e]));
    evbuffer_add_printf(out, "\"other\":%" PRIu64 "},", SUM(rejected_other));
    evbuffer_add_printf(out,
                        "\"timeouts\":{\"header\":%" PRIu64 ",\"body\":%" PRIu64
                        ",\"idle\":%" PRIu64 ",\"send\":%" PRIu64 "}},",
                        SUM(timeout_header), SUM(timeout_body), SUM(timeout_idle),
                        SUM(timeout_send));
    evbuffer_add(out, "\"upstreams\":{", 13);
    for (size_t u = 0; u < cfg->n_upstreams; u++) {
        if (u)
            evbuffer_add(out, ",", 1);
        upstream_json(out, ws, n, &cfg->upstreams[u]);
    }
    evbuffer_add(out, "},", 2);
    uint64_t b[FG_HIST_BUCKETS];
    for (size_t k = 0; k < FG_HIST_BUCKETS; k++)
        b[k] = SUM(latency.bucket[k]);
    evbuffer_add_printf(out,
                        "\"latency_us\":{\"count\":%" PRIu64 ",\"sum\":%" PRIu64
                        ",\"p50\":%" PRIu64 ",\"p90\":%" PRIu64 ",\"p99\":%" PRIu64 ",\"buckets\":{",
                        SUM(latency.count), SUM(latency.sum_us), fg_hist_quantile(b, 0.50),
                        fg_hist_quantile(b, 0.90), fg_hist_quantile(b, 0.99));
    for (size_t k = 0; k < FG_HIST_BUCKETS; k++) {
        if (k + 1 < FG_HIST_BUCKETS)
            evbuffer_add_printf(out, "\"le_%" PRIu64 "\":%" PRIu64 ",", fg_hist_bounds_us[k], b[k]);
        else
            evbuffer_add_printf(out, "\"le_inf\":%" PRIu64, b[k]);
    }
    evbuffer_add(out, "}}}\n", 4);
}
