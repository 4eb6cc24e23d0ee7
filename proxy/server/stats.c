/*
 * stats.c — the /stats document: per-worker counters summed on read. Workers write their
 * own counters without locks (core.h); this runs on the admin thread.
 */
#include "server/internal.h"
#include "admin/admin.h"
#include "fleet/fleet.h"
#include "json/json.h"
#include "redis/redis.h"
#include "tls/tls.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUM(field)                                                                                 \
    ({                                                                                             \
        uint64_t s_ = 0;                                                                           \
        for (size_t i_ = 0; i_ < n; i_++)                                                          \
            s_ += fg_counter_get(&ws[i_].stats.field);                                             \
        s_;                                                                                        \
    })

static void caches_json(struct evbuffer *out);
static void app_head_json(struct evbuffer *out, struct fg_worker *ws, size_t n);
static void routes_json(struct evbuffer *out);
static void app_head_metrics(struct evbuffer *out, struct fg_worker *ws, size_t n);
static void routes_metrics(struct evbuffer *out);
static void features_json(struct evbuffer *out);
static void tls_json(struct evbuffer *out);
static void tls_metrics(struct evbuffer *out);

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
    evbuffer_add_printf(
        out,
        "\"%s\":{\"requests\":%" PRIu64 ",\"connections_active\":%" PRIu64
        ",\"connections_idle\":%" PRIu64 ",\"connects\":%" PRIu64 ",\"reused\":%" PRIu64
        ",\"retries\":%" PRIu64 ",\"errors\":{\"connect\":%" PRIu64 ",\"timeout\":%" PRIu64
        ",\"reset\":%" PRIu64 ",\"bad_response\":%" PRIu64 "},\"servers\":[",
        u->name, G(requests), G(connections_active), G(connections_idle), G(connects), G(reused),
        G(retries), G(err_connect), G(err_timeout), G(err_reset), G(err_bad_response));
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
    evbuffer_add_printf(
        out,
        "\"downstream\":{\"connections_active\":%" PRIu64 ",\"connections_idle\":%" PRIu64
        ",\"connections_total\":%" PRIu64 ",\"requests_total\":%" PRIu64
        ",\"requests_active\":%" PRIu64 ",\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64
        ",\"client_aborts\":%" PRIu64 ",",
        SUM(connections_active), SUM(connections_idle), SUM(connections_total), SUM(requests_total),
        SUM(requests_active), SUM(bytes_in), SUM(bytes_out), SUM(client_aborts));
    evbuffer_add_printf(out,
                        "\"responses\":{\"1xx\":%" PRIu64 ",\"2xx\":%" PRIu64 ",\"3xx\":%" PRIu64
                        ",\"4xx\":%" PRIu64 ",\"5xx\":%" PRIu64 "},",
                        SUM(responses[1]), SUM(responses[2]), SUM(responses[3]), SUM(responses[4]),
                        SUM(responses[5]));
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
    evbuffer_add_printf(
        out,
        "\"offload\":{\"queued\":%" PRIu64 ",\"duplicates\":%" PRIu64 ",\"fallback_pass\":%" PRIu64
        ",\"fallback_reject\":%" PRIu64 ",\"too_big\":%" PRIu64 ",\"in_flight\":%" PRIu64
        ",\"agent_errors\":{\"full\":%" PRIu64 ",\"too_big\":%" PRIu64 ",\"error\":%" PRIu64
        ",\"timeout\":%" PRIu64 ",\"unreachable\":%" PRIu64 "},\"triggered\":{\"inflight\":%" PRIu64
        ",\"latency\":%" PRIu64 ",\"failing\":%" PRIu64 ",\"limited\":%" PRIu64 "}},",
        SUM(offload.queued), SUM(offload.duplicates), SUM(offload.fallback_pass),
        SUM(offload.fallback_reject), SUM(offload.too_big), SUM(offload.in_flight),
        SUM(offload.err_full), SUM(offload.err_too_big), SUM(offload.err_error),
        SUM(offload.err_timeout), SUM(offload.err_unreachable), SUM(offload.trig_inflight),
        SUM(offload.trig_latency), SUM(offload.trig_failing), SUM(offload.trig_limited));
    evbuffer_add_printf(out,
                        "\"tunnels\":{\"open\":%" PRIu64 ",\"opened\":%" PRIu64
                        ",\"refused\":%" PRIu64 ",\"bytes_up\":%" PRIu64 ",\"bytes_down\":%" PRIu64
                        ",\"closed\":{",
                        SUM(tunnels.open), SUM(tunnels.opened), SUM(tunnels.refused),
                        SUM(tunnels.bytes_up), SUM(tunnels.bytes_down));
    for (int k = 0; k < FG_TUNNEL_BY__COUNT; k++)
        evbuffer_add_printf(out, "%s\"%s\":%" PRIu64, k ? "," : "", fg_tunnel_end_names[k],
                            SUM(tunnels.closed[k]));
    evbuffer_add(out, "}},", 3);
    evbuffer_add(out, "\"upstreams\":{", 13);
    for (size_t u = 0; u < cfg->n_upstreams; u++) {
        if (u)
            evbuffer_add(out, ",", 1);
        upstream_json(out, ws, n, &cfg->upstreams[u]);
    }
    evbuffer_add(out, "},", 2);
    caches_json(out);
    features_json(out);
    tls_json(out);
    fg_redis_stats_json(out); /* per Redis endpoint (proxy/redis) */
    evbuffer_add(out, ",", 1);
    fg_fleet_stats_json(out); /* the fleet's purge bus (proxy/fleet) */
    evbuffer_add(out, ",", 1);
    fg_waitroom_stats_json(out); /* per waiting room (proxy/waitroom), with its comma */
    app_head_json(out, ws, n);
    routes_json(out);
    uint64_t b[FG_HIST_BUCKETS], total = 0;
    for (size_t k = 0; k < FG_HIST_BUCKETS; k++)
        total += b[k] = SUM(latency.bucket[k]); /* count = the buckets' total: consistent */
    evbuffer_add_printf(out,
                        "\"latency_us\":{\"count\":%" PRIu64 ",\"sum\":%" PRIu64 ",\"p50\":%" PRIu64
                        ",\"p90\":%" PRIu64 ",\"p99\":%" PRIu64 ",\"buckets\":{",
                        total, SUM(latency.sum_us), fg_hist_quantile(b, 0.50),
                        fg_hist_quantile(b, 0.90), fg_hist_quantile(b, 0.99));
    for (size_t k = 0; k < FG_HIST_BUCKETS; k++) {
        if (k + 1 < FG_HIST_BUCKETS)
            evbuffer_add_printf(out, "\"le_%" PRIu64 "\":%" PRIu64 ",", fg_hist_bounds_us[k], b[k]);
        else
            evbuffer_add_printf(out, "\"le_inf\":%" PRIu64, b[k]);
    }
    evbuffer_add(out, "}}}\n", 4);
}

/* ---- caches: one table for /stats and /metrics ------------------------------------------ */

static const struct {
    const char *name; /* JSON key; the metric is flashgate_cache_<name>[_total] */
    bool gauge;
    const char *help;
    size_t off;
} cache_fields[] = {
#define CF(n, g, h)                                                                                \
    {                                                                                              \
#n, g, h, offsetof(struct fg_cache_stats, n)                                               \
    }
    CF(entries, true, "Objects in the cache (variants and hit-for-miss markers included)."),
    CF(bytes, true, "Bytes charged to the memory bound."),
    CF(hits, false, "Requests served fresh from the cache."),
    CF(misses, false, "Requests that started a fetch."),
    CF(coalesced, false, "Requests that waited for another request's fetch instead of asking."),
    CF(stale_served, false, "Stale responses served (stale-while-revalidate, stale-if-error)."),
    CF(revalidations, false, "Conditional fetches of stale objects."),
    CF(revalidated_304, false, "Revalidations answered 304 (body kept)."),
    CF(not_modified_served, false, "Client conditional requests answered 304 from the cache."),
    CF(ranges_served, false, "Range requests answered 206 or 416 from a stored response."),
    CF(passes, false, "Requests sent to the app without caching (hit-for-miss, uncacheable)."),
    CF(hit_for_miss, false, "Keys marked hit-for-miss after an uncacheable answer."),
    CF(lock_timeouts, false, "Waiters that gave up on another request's fetch."),
    CF(stores, false, "Objects stored."),
    CF(evictions, false, "Objects evicted to respect the memory bound."),
    CF(purged, false, "Objects removed by purge or invalidation."),
    CF(invalidations, false, "Unsafe requests that invalidated stored objects."),
    CF(too_big, false, "Responses above max_object, passed through."),
    CF(fill_failed, false, "Fetches that broke off mid-body."),
#undef CF
};

static uint64_t cache_field(const struct fg_cache_stats *s, size_t f)
{
    return *(const uint64_t *)((const char *)s + cache_fields[f].off);
}

static void caches_json(struct evbuffer *out)
{
    size_t n = 0;
    struct fg_cache *const *all = fg_cache_registry_all(&n);
    evbuffer_add(out, "\"caches\":{", 10);
    for (size_t i = 0; i < n; i++) {
        struct fg_cache_stats s;
        fg_cache_get_stats(all[i], &s);
        evbuffer_add_printf(out, "%s\"%s\":{", i ? "," : "", fg_cache_name(all[i]));
        for (size_t f = 0; f < FG_ARRAY_LEN(cache_fields); f++)
            evbuffer_add_printf(out, "%s\"%s\":%" PRIu64, f ? "," : "", cache_fields[f].name,
                                cache_field(&s, f));
        uint64_t looked = s.hits + s.misses + s.coalesced + s.stale_served;
        evbuffer_add_printf(out, ",\"hit_ratio\":%.4f}",
                            looked ? (double)(s.hits + s.coalesced + s.stale_served) / looked
                                   : 0.0);
    }
    evbuffer_add(out, "},", 2);
}

/* "limits", "compression" and "cache_warm": the features' counters outside the caches. */
static void features_json(struct evbuffer *out)
{
    size_t nl = fg_stage_limit_stats_count();
    evbuffer_add(out, "\"limits\":{", 10);
    for (size_t i = 0; i < nl; i++) {
        char name[FG_CONF_NAME_MAX];
        struct fg_limit_sum s;
        fg_stage_limit_stats_sum(i, name, sizeof(name), &s);
        evbuffer_add_printf(
            out,
            "%s\"%s\":{\"allowed\":%" PRIu64 ",\"limited\":%" PRIu64 ",\"failed_closed\":%" PRIu64
            ",\"redis\":{\"ok\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"timeouts\":%" PRIu64
            ",\"fallbacks\":%" PRIu64 ",\"connects\":%" PRIu64 ",\"disconnects\":%" PRIu64
            ",\"noscript\":%" PRIu64 ",\"latency_us\":{\"count\":%" PRIu64 ",\"p50\":%" PRIu64
            ",\"p99\":%" PRIu64 "}}}",
            i ? "," : "", name, s.allowed, s.limited, s.failed_closed, s.redis_ok, s.redis_errors,
            s.redis_timeouts, s.fallbacks, s.connects, s.disconnects, s.noscript,
            s.redis_latency_count, fg_hist_quantile(s.redis_latency, 0.50),
            fg_hist_quantile(s.redis_latency, 0.99));
    }
    evbuffer_add(out, "},", 2);
    struct fg_compress_stats z;
    fg_compress_stats_get(&z);
    evbuffer_add(out, "\"compression\":{", 15);
    for (int e = FG_COMPRESS_GZIP; e < FG_COMPRESS_ENCODING__COUNT; e++)
        evbuffer_add_printf(out,
                            "\"%s\":{\"responses\":%" PRIu64 ",\"bytes_in\":%" PRIu64
                            ",\"bytes_out\":%" PRIu64 ",\"cpu_us\":%" PRIu64 "},",
                            fg_compress_encoding_name((enum fg_compress_encoding)e), z.responses[e],
                            z.bytes_in[e], z.bytes_out[e], z.cpu_ns[e] / 1000);
    evbuffer_add(out, "\"skipped\":{", 11);
    for (int r = 1; r < FG_COMPRESS_REASON__COUNT; r++)
        evbuffer_add_printf(out, "%s\"%s\":%" PRIu64, r > 1 ? "," : "",
                            fg_compress_reason_name((enum fg_compress_reason)r), z.skipped[r]);
    evbuffer_add_printf(out, "},\"errors\":%" PRIu64 "},", z.errors);
    struct fg_admin_warm_progress w;
    fg_admin_warm_progress(&w);
    evbuffer_add_printf(out,
                        "\"cache_warm\":{\"jobs\":%" PRIu64 ",\"queued\":%" PRIu64
                        ",\"in_flight\":%" PRIu64 ",\"done\":%" PRIu64 ",\"failed\":%" PRIu64 "},",
                        w.jobs, w.queued, w.in_flight, w.done, w.failed);
    fg_admin_agentstat_json(out);
    evbuffer_add(out, ",", 1);
    fg_admin_stats_json(out);
}

static void caches_metrics(struct evbuffer *out)
{
    size_t n = 0;
    struct fg_cache *const *all = fg_cache_registry_all(&n);
    struct fg_cache_stats s[64];
    for (size_t i = 0; i < n && i < FG_ARRAY_LEN(s); i++)
        fg_cache_get_stats(all[i], &s[i]);
    for (size_t f = 0; f < FG_ARRAY_LEN(cache_fields); f++) {
        char name[96];
        snprintf(name, sizeof(name), "flashgate_cache_%s%s", cache_fields[f].name,
                 cache_fields[f].gauge ? "" : "_total");
        evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, cache_fields[f].help, name,
                            cache_fields[f].gauge ? "gauge" : "counter");
        for (size_t i = 0; i < n && i < FG_ARRAY_LEN(s); i++)
            evbuffer_add_printf(out, "%s{cache=\"%s\"} %" PRIu64 "\n", name, fg_cache_name(all[i]),
                                cache_field(&s[i], f));
    }
}

static void compression_metrics(struct evbuffer *out)
{
    struct fg_compress_stats z;
    fg_compress_stats_get(&z);
    static const char *const names[] = {"responses", "bytes_in", "bytes_out"};
    static const char *const helps[] = {"Responses compressed, by coding.",
                                        "Bytes given to the encoder, by coding.",
                                        "Bytes the encoder produced, by coding."};
    for (size_t k = 0; k < 3; k++) {
        evbuffer_add_printf(out,
                            "# HELP flashgate_compress_%s_total %s\n"
                            "# TYPE flashgate_compress_%s_total counter\n",
                            names[k], helps[k], names[k]);
        for (int e = FG_COMPRESS_GZIP; e < FG_COMPRESS_ENCODING__COUNT; e++) {
            uint64_t v = k == 0 ? z.responses[e] : k == 1 ? z.bytes_in[e] : z.bytes_out[e];
            evbuffer_add_printf(out, "flashgate_compress_%s_total{coding=\"%s\"} %" PRIu64 "\n",
                                names[k], fg_compress_encoding_name((enum fg_compress_encoding)e),
                                v);
        }
    }
    evbuffer_add(out,
                 "# HELP flashgate_compress_cpu_seconds_total CPU time spent compressing.\n"
                 "# TYPE flashgate_compress_cpu_seconds_total counter\n",
                 strlen("# HELP flashgate_compress_cpu_seconds_total CPU time spent "
                        "compressing.\n# TYPE flashgate_compress_cpu_seconds_total counter\n"));
    for (int e = FG_COMPRESS_GZIP; e < FG_COMPRESS_ENCODING__COUNT; e++)
        evbuffer_add_printf(out, "flashgate_compress_cpu_seconds_total{coding=\"%s\"} %.6f\n",
                            fg_compress_encoding_name((enum fg_compress_encoding)e),
                            (double)z.cpu_ns[e] / 1e9);
    evbuffer_add(out,
                 "# HELP flashgate_compress_skipped_total Compressible routes' answers sent as "
                 "they are, by reason.\n# TYPE flashgate_compress_skipped_total counter\n",
                 strlen("# HELP flashgate_compress_skipped_total Compressible routes' answers "
                        "sent as they are, by reason.\n# TYPE flashgate_compress_skipped_total "
                        "counter\n"));
    for (int r = 1; r < FG_COMPRESS_REASON__COUNT; r++)
        evbuffer_add_printf(out, "flashgate_compress_skipped_total{reason=\"%s\"} %" PRIu64 "\n",
                            fg_compress_reason_name((enum fg_compress_reason)r), z.skipped[r]);
}

static void limits_metrics(struct evbuffer *out)
{
    static const struct {
        const char *name, *help;
        size_t off;
    } f[] = {
        {"flashgate_limit_allowed_total", "Requests a limit allowed.",
         offsetof(struct fg_limit_sum, allowed)},
        {"flashgate_limit_limited_total", "Requests a limit refused (429).",
         offsetof(struct fg_limit_sum, limited)},
        {"flashgate_limit_failed_closed_total", "Refused because Redis could not answer.",
         offsetof(struct fg_limit_sum, failed_closed)},
        {"flashgate_limit_redis_ok_total", "Decisions Redis answered.",
         offsetof(struct fg_limit_sum, redis_ok)},
        {"flashgate_limit_redis_errors_total", "Redis errors (then the local table decided).",
         offsetof(struct fg_limit_sum, redis_errors)},
        {"flashgate_limit_redis_timeouts_total", "Redis answers later than the timeout.",
         offsetof(struct fg_limit_sum, redis_timeouts)},
        {"flashgate_limit_fallbacks_total", "Decisions taken locally because Redis could not.",
         offsetof(struct fg_limit_sum, fallbacks)},
    };
    size_t nl = fg_stage_limit_stats_count();
    struct fg_limit_sum s[64];
    char names[64][FG_CONF_NAME_MAX];
    for (size_t i = 0; i < nl && i < 64; i++)
        fg_stage_limit_stats_sum(i, names[i], sizeof(names[i]), &s[i]);
    for (size_t k = 0; k < FG_ARRAY_LEN(f); k++) {
        evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s counter\n", f[k].name, f[k].help,
                            f[k].name);
        for (size_t i = 0; i < nl && i < 64; i++)
            evbuffer_add_printf(out, "%s{limit=\"%s\"} %" PRIu64 "\n", f[k].name, names[i],
                                *(const uint64_t *)((const char *)&s[i] + f[k].off));
    }
    evbuffer_add(out,
                 "# HELP flashgate_limit_redis_duration_seconds Rate-limit decisions through "
                 "Redis.\n# TYPE flashgate_limit_redis_duration_seconds histogram\n",
                 strlen("# HELP flashgate_limit_redis_duration_seconds Rate-limit decisions "
                        "through Redis.\n# TYPE flashgate_limit_redis_duration_seconds "
                        "histogram\n"));
    for (size_t i = 0; i < nl && i < 64; i++) {
        uint64_t cum = 0;
        for (size_t b = 0; b < FG_HIST_BUCKETS; b++) {
            cum += s[i].redis_latency[b];
            if (b + 1 < FG_HIST_BUCKETS)
                evbuffer_add_printf(out,
                                    "flashgate_limit_redis_duration_seconds_bucket{limit=\"%s\","
                                    "le=\"%g\"} %" PRIu64 "\n",
                                    names[i], (double)fg_hist_bounds_us[b] / 1e6, cum);
            else
                evbuffer_add_printf(out,
                                    "flashgate_limit_redis_duration_seconds_bucket{limit=\"%s\","
                                    "le=\"+Inf\"} %" PRIu64 "\n",
                                    names[i], cum);
        }
        evbuffer_add_printf(out,
                            "flashgate_limit_redis_duration_seconds_sum{limit=\"%s\"} %.6f\n"
                            "flashgate_limit_redis_duration_seconds_count{limit=\"%s\"} %" PRIu64
                            "\n",
                            names[i], (double)s[i].redis_latency_sum / 1e6, names[i], cum);
    }
}

/* ---- Prometheus text exposition (format 0.0.4) --------------------------------------- */

static void metric_head(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metric(struct evbuffer *out, const char *name, const char *type, const char *help,
                   uint64_t v)
{
    metric_head(out, name, type, help);
    evbuffer_add_printf(out, "%s %" PRIu64 "\n", name, v);
}

void fg_stats_metrics(struct evbuffer *out, struct fg_worker *ws, size_t n,
                      const struct fg_config *cfg, uint64_t uptime_s, bool draining)
{
    metric(out, "flashgate_uptime_seconds", "gauge", "Seconds since start.", uptime_s);
    metric(out, "flashgate_config_generation", "gauge", "Configuration generation running.",
           cfg->generation);
    metric(out, "flashgate_draining", "gauge", "1 while draining.", draining ? 1 : 0);
    metric(out, "flashgate_workers", "gauge", "Worker threads.", n);
    metric(out, "flashgate_downstream_connections_active", "gauge", "Open client connections.",
           SUM(connections_active));
    metric(out, "flashgate_downstream_connections_idle", "gauge",
           "Client connections idle in keep-alive.", SUM(connections_idle));
    metric(out, "flashgate_downstream_connections_total", "counter", "Client connections accepted.",
           SUM(connections_total));
    metric(out, "flashgate_downstream_requests_total", "counter", "Requests answered.",
           SUM(requests_total));
    metric(out, "flashgate_downstream_requests_active", "gauge", "Requests in flight.",
           SUM(requests_active));
    metric(out, "flashgate_downstream_bytes_in_total", "counter", "Request bytes received.",
           SUM(bytes_in));
    metric(out, "flashgate_downstream_bytes_out_total", "counter", "Response bytes sent.",
           SUM(bytes_out));
    metric(out, "flashgate_downstream_client_aborts_total", "counter",
           "Clients that closed before their response was complete.", SUM(client_aborts));
    metric_head(out, "flashgate_downstream_responses_total", "counter",
                "Responses by status class.");
    for (int k = 1; k <= 5; k++)
        evbuffer_add_printf(out,
                            "flashgate_downstream_responses_total{class=\"%dxx\"} %" PRIu64 "\n", k,
                            SUM(responses[k]));
    metric_head(out, "flashgate_downstream_rejected_total", "counter",
                "Requests refused before routing, by reason.");
    for (int e = 1; e < FG_HTTP_E__COUNT; e++)
        evbuffer_add_printf(out, "flashgate_downstream_rejected_total{reason=\"%s\"} %" PRIu64 "\n",
                            fg_http_error_name((enum fg_http_error)e), SUM(rejected[e]));
    evbuffer_add_printf(out, "flashgate_downstream_rejected_total{reason=\"other\"} %" PRIu64 "\n",
                        SUM(rejected_other));
    metric_head(out, "flashgate_downstream_timeouts_total", "counter", "Client timeouts by kind.");
    evbuffer_add_printf(out,
                        "flashgate_downstream_timeouts_total{kind=\"header\"} %" PRIu64 "\n"
                        "flashgate_downstream_timeouts_total{kind=\"body\"} %" PRIu64 "\n"
                        "flashgate_downstream_timeouts_total{kind=\"idle\"} %" PRIu64 "\n"
                        "flashgate_downstream_timeouts_total{kind=\"send\"} %" PRIu64 "\n",
                        SUM(timeout_header), SUM(timeout_body), SUM(timeout_idle),
                        SUM(timeout_send));

    metric(out, "flashgate_tunnels_open", "gauge", "Upgrade tunnels open (WebSocket).",
           SUM(tunnels.open));
    metric(out, "flashgate_tunnels_opened_total", "counter", "Upgrade tunnels opened.",
           SUM(tunnels.opened));
    metric(out, "flashgate_tunnels_refused_total", "counter",
           "Upgrade requests answered 503: over max_tunnels, or draining.", SUM(tunnels.refused));
    metric_head(out, "flashgate_tunnel_bytes_total", "counter",
                "Bytes carried by tunnels: up is client to app, down app to client.");
    evbuffer_add_printf(out,
                        "flashgate_tunnel_bytes_total{direction=\"up\"} %" PRIu64 "\n"
                        "flashgate_tunnel_bytes_total{direction=\"down\"} %" PRIu64 "\n",
                        SUM(tunnels.bytes_up), SUM(tunnels.bytes_down));
    metric_head(out, "flashgate_tunnels_closed_total", "counter",
                "Tunnels closed, by who closed them.");
    for (int k = 0; k < FG_TUNNEL_BY__COUNT; k++)
        evbuffer_add_printf(out, "flashgate_tunnels_closed_total{by=\"%s\"} %" PRIu64 "\n",
                            fg_tunnel_end_names[k], SUM(tunnels.closed[k]));

    metric_head(out, "flashgate_request_duration_seconds", "histogram",
                "Time from the first byte of a request head to the end of its response.");
    uint64_t cum = 0;
    for (size_t k = 0; k < FG_HIST_BUCKETS; k++) {
        cum += SUM(latency.bucket[k]);
        if (k + 1 < FG_HIST_BUCKETS)
            evbuffer_add_printf(
                out, "flashgate_request_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                (double)fg_hist_bounds_us[k] / 1e6, cum);
        else
            evbuffer_add_printf(
                out, "flashgate_request_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
    }
    evbuffer_add_printf(out, "flashgate_request_duration_seconds_sum %.6f\n",
                        (double)SUM(latency.sum_us) / 1e6);
    /* _count is the +Inf bucket's total, not the separate counter: a request that ends
     * between the two reads would make them disagree (the format wants them equal). */
    evbuffer_add_printf(out, "flashgate_request_duration_seconds_count %" PRIu64 "\n", cum);
    app_head_metrics(out, ws, n);
    routes_metrics(out);

    metric(out, "flashgate_offload_queued_total", "counter",
           "Writes the agent made durable (answered 202).", SUM(offload.queued));
    metric(out, "flashgate_offload_duplicates_total", "counter",
           "Writes whose idempotency key the agent had already (answered 202 again).",
           SUM(offload.duplicates));
    metric_head(out, "flashgate_offload_fallback_total", "counter",
                "Offloadable writes the agent did not take, by the route's fallback.");
    evbuffer_add_printf(out,
                        "flashgate_offload_fallback_total{action=\"pass\"} %" PRIu64 "\n"
                        "flashgate_offload_fallback_total{action=\"reject\"} %" PRIu64 "\n",
                        SUM(offload.fallback_pass), SUM(offload.fallback_reject));
    metric(out, "flashgate_offload_too_big_total", "counter",
           "Writes refused with 413 above the offload max_body.", SUM(offload.too_big));
    metric(out, "flashgate_offload_in_flight", "gauge", "Records sent to the agent, not answered.",
           SUM(offload.in_flight));
    metric_head(out, "flashgate_offload_agent_errors_total", "counter",
                "Records the agent refused or did not answer, by reason.");
    evbuffer_add_printf(out,
                        "flashgate_offload_agent_errors_total{reason=\"full\"} %" PRIu64 "\n"
                        "flashgate_offload_agent_errors_total{reason=\"too_big\"} %" PRIu64 "\n"
                        "flashgate_offload_agent_errors_total{reason=\"error\"} %" PRIu64 "\n"
                        "flashgate_offload_agent_errors_total{reason=\"timeout\"} %" PRIu64 "\n"
                        "flashgate_offload_agent_errors_total{reason=\"unreachable\"} %" PRIu64
                        "\n",
                        SUM(offload.err_full), SUM(offload.err_too_big), SUM(offload.err_error),
                        SUM(offload.err_timeout), SUM(offload.err_unreachable));
    metric_head(out, "flashgate_offload_triggered_total", "counter",
                "Writes sent to the offload stage by a `when` trigger, by trigger.");
    evbuffer_add_printf(out,
                        "flashgate_offload_triggered_total{trigger=\"inflight\"} %" PRIu64 "\n"
                        "flashgate_offload_triggered_total{trigger=\"latency\"} %" PRIu64 "\n"
                        "flashgate_offload_triggered_total{trigger=\"failing\"} %" PRIu64 "\n"
                        "flashgate_offload_triggered_total{trigger=\"limited\"} %" PRIu64 "\n",
                        SUM(offload.trig_inflight), SUM(offload.trig_latency),
                        SUM(offload.trig_failing), SUM(offload.trig_limited));
    caches_metrics(out);
    limits_metrics(out);
    tls_metrics(out);
    fg_redis_stats_metrics(out);
    fg_fleet_stats_metrics(out);
    fg_waitroom_stats_metrics(out);
    compression_metrics(out);
    struct fg_admin_warm_progress w;
    fg_admin_warm_progress(&w);
    metric(out, "flashgate_cache_warm_queued", "gauge", "Warm-up URLs waiting.", w.queued);
    metric(out, "flashgate_cache_warm_in_flight", "gauge", "Warm-up requests running.",
           w.in_flight);
    metric(out, "flashgate_cache_warm_done_total", "counter", "Warm-up URLs fetched.", w.done);
    metric(out, "flashgate_cache_warm_failed_total", "counter",
           "Warm-up URLs that failed (not 2xx/3xx, or no answer).", w.failed);
    fg_admin_agentstat_metrics(out);
    fg_admin_stats_metrics(out);

    static const struct {
        const char *name, *type, *help;
        size_t off;
    } ufields[] = {
        {"flashgate_upstream_requests_total", "counter", "Requests sent to the upstream.",
         offsetof(struct fg_upstream_stats, requests)},
        {"flashgate_upstream_connections_active", "gauge", "Upstream connections in use.",
         offsetof(struct fg_upstream_stats, connections_active)},
        {"flashgate_upstream_connections_idle", "gauge", "Idle pooled upstream connections.",
         offsetof(struct fg_upstream_stats, connections_idle)},
        {"flashgate_upstream_connects_total", "counter", "New upstream connections opened.",
         offsetof(struct fg_upstream_stats, connects)},
        {"flashgate_upstream_reused_total", "counter", "Requests sent on a pooled connection.",
         offsetof(struct fg_upstream_stats, reused)},
        {"flashgate_upstream_retries_total", "counter", "Requests retried on another connection.",
         offsetof(struct fg_upstream_stats, retries)},
        {"flashgate_upstream_errors_connect_total", "counter", "Failed connects.",
         offsetof(struct fg_upstream_stats, err_connect)},
        {"flashgate_upstream_errors_timeout_total", "counter", "Upstream timeouts.",
         offsetof(struct fg_upstream_stats, err_timeout)},
        {"flashgate_upstream_errors_reset_total", "counter",
         "Connections closed by the upstream early.",
         offsetof(struct fg_upstream_stats, err_reset)},
        {"flashgate_upstream_errors_bad_response_total", "counter", "Invalid upstream responses.",
         offsetof(struct fg_upstream_stats, err_bad_response)},
    };
    for (size_t f = 0; f < FG_ARRAY_LEN(ufields); f++) {
        metric_head(out, ufields[f].name, ufields[f].type, ufields[f].help);
        for (size_t u = 0; u < cfg->n_upstreams; u++) {
            uint64_t v = 0;
            for (size_t i = 0; i < n; i++) {
                pthread_mutex_lock(&ws[i].ustats_lock);
                for (size_t k = 0; k < ws[i].n_ustats; k++)
                    if (strcmp(ws[i].ustats[k]->name, cfg->upstreams[u].name) == 0)
                        v += fg_counter_get(
                            (fg_counter_t *)((char *)ws[i].ustats[k] + ufields[f].off));
                pthread_mutex_unlock(&ws[i].ustats_lock);
            }
            evbuffer_add_printf(out, "%s{upstream=\"%s\"} %" PRIu64 "\n", ufields[f].name,
                                cfg->upstreams[u].name, v);
        }
    }
}

/* ---- TLS -------------------------------------------------------------------------------- */

static const char *const tls_side_names[FG_TLS_SIDES] = {"server", "client"};

/* "tls": {"server": {...}, "client": {...}}: server is clients' handshakes with our
 * listeners, client ours with upstreams. Process-wide counters (tls/stats.c). */
static void tls_json(struct evbuffer *out)
{
    evbuffer_add_printf(out, "\"tls\":{");
    for (int side = 0; side < FG_TLS_SIDES; side++) {
        struct fg_tls_stats st;
        fg_tls_stats_read((enum fg_tls_side)side, &st);
        uint64_t failed = 0;
        for (size_t i = 0; i < FG_TLS_FAIL_COUNT; i++)
            failed += st.failures[i];
        evbuffer_add_printf(out,
                            "%s\"%s\":{\"handshakes\":%" PRIu64 ",\"resumptions\":%" PRIu64
                            ",\"failures_total\":%" PRIu64 ",\"failures\":{",
                            side ? "," : "", tls_side_names[side], st.handshakes, st.resumptions,
                            failed);
        for (size_t i = 0; i < FG_TLS_FAIL_COUNT; i++)
            evbuffer_add_printf(out, "%s\"%s\":%" PRIu64, i ? "," : "",
                                fg_tls_fail_name((enum fg_tls_fail)i), st.failures[i]);
        evbuffer_add_printf(out, "},\"protocols\":{");
        for (size_t i = 0; i < FG_TLS_PROTO_COUNT; i++)
            evbuffer_add_printf(out, "%s\"%s\":%" PRIu64, i ? "," : "",
                                fg_tls_proto_name((enum fg_tls_proto)i), st.protocols[i]);
        evbuffer_add_printf(out, "},\"ciphers\":{");
        for (size_t i = 0; i < FG_TLS_CIPHER_COUNT; i++)
            evbuffer_add_printf(out, "%s\"%s\":%" PRIu64, i ? "," : "", fg_tls_cipher_name(i),
                                st.ciphers[i]);
        evbuffer_add(out, "}}", 2);
    }
    evbuffer_add(out, "},", 2);
}

/* One labelled TLS counter family: for each side, n values (the offset of the first in
 * struct fg_tls_stats), each under label="name(i)". */
static void tls_family(struct evbuffer *out, const struct fg_tls_stats st[FG_TLS_SIDES],
                       const char *metric, const char *help, const char *label, size_t n,
                       size_t offset, const char *(*name)(size_t))
{
    metric_head(out, metric, "counter", help);
    for (int side = 0; side < FG_TLS_SIDES; side++) {
        const uint64_t *v = (const uint64_t *)((const char *)&st[side] + offset);
        for (size_t i = 0; i < n; i++) {
            evbuffer_add_printf(out, "%s{side=\"%s\"", metric, tls_side_names[side]);
            if (label != NULL)
                evbuffer_add_printf(out, ",%s=\"%s\"", label, name(i));
            evbuffer_add_printf(out, "} %" PRIu64 "\n", v[i]);
        }
    }
}

static const char *tls_fail_label(size_t i)
{
    return fg_tls_fail_name((enum fg_tls_fail)i);
}

static const char *tls_proto_label(size_t i)
{
    return fg_tls_proto_name((enum fg_tls_proto)i);
}

static void tls_metrics(struct evbuffer *out)
{
    struct fg_tls_stats st[FG_TLS_SIDES];
    for (int side = 0; side < FG_TLS_SIDES; side++)
        fg_tls_stats_read((enum fg_tls_side)side, &st[side]);
    tls_family(out, st, "flashgate_tls_handshakes_total",
               "Completed TLS handshakes (server: with clients, client: with upstreams).", NULL, 1,
               offsetof(struct fg_tls_stats, handshakes), NULL);
    tls_family(out, st, "flashgate_tls_resumptions_total",
               "TLS handshakes that resumed a session (ticket or session id).", NULL, 1,
               offsetof(struct fg_tls_stats, resumptions), NULL);
    tls_family(out, st, "flashgate_tls_handshake_failures_total",
               "Failed TLS handshakes by reason.", "reason", FG_TLS_FAIL_COUNT,
               offsetof(struct fg_tls_stats, failures), tls_fail_label);
    tls_family(out, st, "flashgate_tls_protocol_handshakes_total",
               "Completed TLS handshakes by protocol version.", "protocol", FG_TLS_PROTO_COUNT,
               offsetof(struct fg_tls_stats, protocols), tls_proto_label);
    tls_family(out, st, "flashgate_tls_cipher_handshakes_total",
               "Completed TLS handshakes by cipher suite.", "cipher", FG_TLS_CIPHER_COUNT,
               offsetof(struct fg_tls_stats, ciphers), fg_tls_cipher_name);
}

/* ---- the sample the dashboard and the EMF records are computed from ---------------------- */

/* The counters of /stats, with the same sums, as plain numbers for the admin thread. */
void fg_stats_sample(struct fg_admin_sample *out, struct fg_worker *ws, size_t n,
                     const struct fg_config *cfg, uint64_t uptime_s, bool draining)
{
    memset(out, 0, sizeof(*out));
    out->mono_ms = fg_mono_ms();
    out->wall_ms = fg_wall_ms();
    out->generation = cfg->generation;
    out->uptime_s = uptime_s;
    out->workers = (unsigned)n;
    out->draining = draining;
    out->requests = SUM(requests_total);
    for (int k = 1; k <= 5; k++)
        out->responses[k] = SUM(responses[k]);
    out->bytes_in = SUM(bytes_in);
    out->bytes_out = SUM(bytes_out);
    out->connections_active = SUM(connections_active);
    out->connections_idle = SUM(connections_idle);
    out->requests_active = SUM(requests_active);
    for (size_t k = 0; k < FG_HIST_BUCKETS; k++) {
        out->latency[k] = SUM(latency.bucket[k]);
        out->app_head[k] = SUM(app_head.bucket[k]);
    }
    out->latency_sum_us = SUM(latency.sum_us);
    size_t nr = fg_route_stats_count_names();
    for (size_t i = 0; i < nr && out->n_routes < FG_ADMIN_SAMPLE_ROUTES; i++) {
        struct fg_admin_sample_route *r = &out->routes[out->n_routes++];
        struct fg_route_sum s;
        fg_route_stats_sum(i, r->name, sizeof(r->name), &s);
        r->requests = s.requests;
        r->r4xx = s.r4xx;
        r->r5xx = s.r5xx;
        memcpy(r->latency, s.latency, sizeof(r->latency));
    }

    size_t nc = 0;
    struct fg_cache *const *all = fg_cache_registry_all(&nc);
    for (size_t i = 0; i < nc; i++) {
        struct fg_cache_stats s;
        fg_cache_get_stats(all[i], &s);
        out->cache_hits += s.hits;
        out->cache_coalesced += s.coalesced;
        out->cache_misses += s.misses;
        out->cache_stale += s.stale_served;
        out->cache_passes += s.passes;
        out->cache_entries += s.entries;
        out->cache_bytes += s.bytes;
    }

    out->offload_queued = SUM(offload.queued);
    out->offload_duplicates = SUM(offload.duplicates);
    out->offload_fallback_pass = SUM(offload.fallback_pass);
    out->offload_fallback_reject = SUM(offload.fallback_reject);
    out->offload_too_big = SUM(offload.too_big);
    out->offload_in_flight = SUM(offload.in_flight);
    out->offload_agent_errors = SUM(offload.err_full) + SUM(offload.err_too_big) +
                                SUM(offload.err_error) + SUM(offload.err_timeout) +
                                SUM(offload.err_unreachable);

    struct fg_tls_stats st;
    fg_tls_stats_read(FG_TLS_SERVER, &st);
    out->tls_handshakes = st.handshakes;
    out->tls_resumptions = st.resumptions;
    for (size_t i = 0; i < FG_TLS_FAIL_COUNT; i++)
        out->tls_failures += st.failures[i];
    fg_tls_stats_read(FG_TLS_CLIENT, &st);
    out->tls_upstream_handshakes = st.handshakes;
    for (size_t i = 0; i < FG_TLS_FAIL_COUNT; i++)
        out->tls_upstream_failures += st.failures[i];

    size_t nl = fg_stage_limit_stats_count();
    for (size_t i = 0; i < nl && out->n_limits < FG_ADMIN_SAMPLE_LIMITS; i++) {
        struct fg_admin_sample_limit *l = &out->limits[out->n_limits++];
        struct fg_limit_sum s;
        fg_stage_limit_stats_sum(i, l->name, sizeof(l->name), &s);
        l->allowed = s.allowed;
        l->limited = s.limited;
        l->failed_closed = s.failed_closed;
    }

    struct fg_waitroom_summary room;
    for (size_t i = 0; out->n_rooms < FG_ADMIN_SAMPLE_ROOMS && fg_waitroom_summary(i, &room); i++) {
        struct fg_admin_sample_room *r = &out->rooms[out->n_rooms++];
        snprintf(r->name, sizeof(r->name), "%s", room.name);
        r->issued = room.issued;
        r->serving = room.serving;
        r->waiting = room.waiting;
        r->active = room.active;
        r->eta_s = room.eta_s;
        r->rate_milli = room.rate_milli;
        r->admitted = room.admitted;
        snprintf(r->decision, sizeof(r->decision), "%s", fg_waitroom_decision_name(room.decision));
        r->fallback = room.fallback;
        r->paused = room.paused;
        r->on = room.active_on;
    }

    for (size_t u = 0; u < cfg->n_upstreams && out->n_upstreams < FG_ADMIN_SAMPLE_UPSTREAMS; u++) {
        const struct fg_conf_upstream *cu = &cfg->upstreams[u];
        struct fg_admin_sample_upstream *su = &out->upstreams[out->n_upstreams++];
        snprintf(su->name, sizeof(su->name), "%s", cu->name);
        su->pool_max = (uint64_t)cu->keepalive * n;
        su->n_servers =
            cu->n_servers < FG_ADMIN_SAMPLE_SERVERS ? cu->n_servers : FG_ADMIN_SAMPLE_SERVERS;
        uint64_t down[FG_ADMIN_SAMPLE_SERVERS] = {0};
        for (size_t i = 0; i < n; i++) {
            pthread_mutex_lock(&ws[i].ustats_lock);
            for (size_t k = 0; k < ws[i].n_ustats; k++) {
                struct fg_upstream_stats *st2 = ws[i].ustats[k];
                if (strcmp(st2->name, cu->name) != 0)
                    continue;
#define G(f) fg_counter_get(&st2->f)
                su->requests += G(requests);
                su->retries += G(retries);
                su->connects += G(connects);
                su->reused += G(reused);
                su->errors += G(err_connect) + G(err_timeout) + G(err_reset) + G(err_bad_response);
                su->active += G(connections_active);
                su->idle += G(connections_idle);
                for (size_t s = 0; s < st2->n_servers && s < su->n_servers; s++) {
                    su->servers[s].requests += G(servers[s].requests);
                    su->servers[s].fails += G(servers[s].fails);
                    down[s] += G(servers[s].down);
                }
#undef G
            }
            pthread_mutex_unlock(&ws[i].ustats_lock);
        }
        for (size_t s = 0; s < su->n_servers; s++) {
            char *a = su->servers[s].address; /* truncated: a long host name */
            size_t al = strnlen(cu->servers[s].addr.text, sizeof(su->servers[s].address) - 1);
            memcpy(a, cu->servers[s].addr.text, al);
            a[al] = '\0';
            su->servers[s].healthy = down[s] == 0; /* as /stats: no worker skips it */
        }
    }
}

/* ---- the app's response heads and the routes ---------------------------------------------- */

/* "app_head_us": how long the app took to send its response head, from the request sent
 * (the histogram the dashboard's and EMF's app percentiles come from). */
static void app_head_json(struct evbuffer *out, struct fg_worker *ws, size_t n)
{
    uint64_t b[FG_HIST_BUCKETS], total = 0;
    for (size_t k = 0; k < FG_HIST_BUCKETS; k++)
        total += b[k] = SUM(app_head.bucket[k]);
    evbuffer_add_printf(out,
                        "\"app_head_us\":{\"count\":%" PRIu64 ",\"sum\":%" PRIu64
                        ",\"p50\":%" PRIu64 ",\"p90\":%" PRIu64 ",\"p99\":%" PRIu64 "},",
                        total, SUM(app_head.sum_us), fg_hist_quantile(b, 0.50),
                        fg_hist_quantile(b, 0.90), fg_hist_quantile(b, 0.99));
}

/* "routes": each route by name (host and prefix): requests, 4xx, 5xx, response time. */
static void routes_json(struct evbuffer *out)
{
    size_t nr = fg_route_stats_count_names();
    evbuffer_add(out, "\"routes\":{", 10);
    for (size_t i = 0; i < nr; i++) {
        char name[FG_ROUTE_NAME_MAX];
        struct fg_route_sum s;
        fg_route_stats_sum(i, name, sizeof(name), &s);
        if (i)
            evbuffer_add(out, ",", 1);
        fg_json_put_string(out, name, strlen(name), false);
        evbuffer_add_printf(out,
                            ":{\"requests\":%" PRIu64 ",\"4xx\":%" PRIu64 ",\"5xx\":%" PRIu64
                            ",\"latency_us\":{\"p50\":%" PRIu64 ",\"p99\":%" PRIu64 "}}",
                            s.requests, s.r4xx, s.r5xx, fg_hist_quantile(s.latency, 0.50),
                            fg_hist_quantile(s.latency, 0.99));
    }
    evbuffer_add(out, "},", 2);
}

/* A Prometheus histogram of microsecond buckets in seconds; labels: "" or `name="v",`. */
static void hist_lines(struct evbuffer *out, const char *metric, const char *labels,
                       const uint64_t b[FG_HIST_BUCKETS], uint64_t sum_us)
{
    uint64_t cum = 0;
    for (size_t k = 0; k < FG_HIST_BUCKETS; k++) {
        cum += b[k];
        if (k + 1 < FG_HIST_BUCKETS)
            evbuffer_add_printf(out, "%s_bucket{%sle=\"%g\"} %" PRIu64 "\n", metric, labels,
                                (double)fg_hist_bounds_us[k] / 1e6, cum);
        else
            evbuffer_add_printf(out, "%s_bucket{%sle=\"+Inf\"} %" PRIu64 "\n", metric, labels, cum);
    }
    size_t ll = strlen(labels);
    if (ll > 0) /* the labels without their trailing comma */
        evbuffer_add_printf(out, "%s_sum{%.*s} %.6f\n%s_count{%.*s} %" PRIu64 "\n", metric,
                            (int)ll - 1, labels, (double)sum_us / 1e6, metric, (int)ll - 1, labels,
                            cum);
    else
        evbuffer_add_printf(out, "%s_sum %.6f\n%s_count %" PRIu64 "\n", metric,
                            (double)sum_us / 1e6, metric, cum);
}

static void app_head_metrics(struct evbuffer *out, struct fg_worker *ws, size_t n)
{
    uint64_t b[FG_HIST_BUCKETS];
    for (size_t k = 0; k < FG_HIST_BUCKETS; k++)
        b[k] = SUM(app_head.bucket[k]);
    metric_head(out, "flashgate_upstream_head_duration_seconds", "histogram",
                "Time from the request sent to the app to its response head.");
    hist_lines(out, "flashgate_upstream_head_duration_seconds", "", b, SUM(app_head.sum_us));
}

/* A label value with backslash, quote and newline escaped (the exposition format's rule). */
static void label_value(char *out, size_t cap, const char *v)
{
    size_t o = 0;
    for (; *v != '\0' && o + 3 < cap; v++) {
        if (*v == '\\' || *v == '"' || *v == '\n') {
            out[o++] = '\\';
            out[o++] = *v == '\n' ? 'n' : *v;
        } else {
            out[o++] = *v;
        }
    }
    out[o] = '\0';
}

static void routes_metrics(struct evbuffer *out)
{
    size_t nr = fg_route_stats_count_names();
    if (nr > 256)
        nr = 256;
    struct fg_route_sum *s = calloc(nr ? nr : 1, sizeof(*s));
    char(*names)[2 * FG_ROUTE_NAME_MAX + 16] = calloc(nr ? nr : 1, sizeof(*names));
    if (s == NULL || names == NULL) {
        free(s);
        free(names);
        return;
    }
    for (size_t i = 0; i < nr; i++) {
        char name[FG_ROUTE_NAME_MAX];
        fg_route_stats_sum(i, name, sizeof(name), &s[i]);
        char v[2 * FG_ROUTE_NAME_MAX];
        label_value(v, sizeof(v), name);
        snprintf(names[i], sizeof(names[i]), "route=\"%s\",", v);
    }
    metric_head(out, "flashgate_route_requests_total", "counter", "Requests answered, by route.");
    for (size_t i = 0; i < nr; i++)
        evbuffer_add_printf(out, "flashgate_route_requests_total{%.*s} %" PRIu64 "\n",
                            (int)strlen(names[i]) - 1, names[i], s[i].requests);
    metric_head(out, "flashgate_route_responses_total", "counter",
                "Error responses by route and class.");
    for (size_t i = 0; i < nr; i++)
        evbuffer_add_printf(out,
                            "flashgate_route_responses_total{%sclass=\"4xx\"} %" PRIu64 "\n"
                            "flashgate_route_responses_total{%sclass=\"5xx\"} %" PRIu64 "\n",
                            names[i], s[i].r4xx, names[i], s[i].r5xx);
    metric_head(out, "flashgate_route_duration_seconds", "histogram",
                "Time from the first byte of a request head to the end of its response, by route.");
    for (size_t i = 0; i < nr; i++)
        hist_lines(out, "flashgate_route_duration_seconds", names[i], s[i].latency,
                   s[i].latency_sum_us);
    free(s);
    free(names);
}
