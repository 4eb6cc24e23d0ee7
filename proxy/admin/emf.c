/*
 * emf.c — CloudWatch without an exporter: every `interval` (aligned to the clock) the
 * admin thread turns the counters of the interval into CloudWatch Embedded Metric Format
 * records, JSON objects that CloudWatch Logs turns into metrics, and writes them to a
 * file the CloudWatch agent ships or sends them to the agent's EMF listener (TCP or UDP,
 * 25888). No PutMetricData call, no credentials here: the agent carries the records.
 *
 * The format's rules, each kept by fg_emf_write (and checked on every record written
 * under traffic by tests/integration/test_emf.py):
 *   - an `_aws` member with Timestamp (Unix milliseconds) and CloudWatchMetrics, a list
 *     of {Namespace, Dimensions (lists of dimension names), Metrics [{Name, Unit}]};
 *   - every metric and dimension named there is a top-level member of the record: a
 *     number for a metric, a string for a dimension;
 *   - at most 100 metrics and 30 dimensions in a record: more metrics make more records
 *     with the same dimensions, dimension sets are spread over records;
 *   - units from CloudWatch's list.
 * Records go out whole or not at all: one that cannot be written or sent is counted as
 * dropped (never queued without bound), and what happened is in /stats ("emf").
 */
#include "admin/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/core.h"
#include "json/json.h"

#define TCP_BUFFER_MAX (1u << 20) /* records waiting for the agent's TCP listener, at most */
#define LOG_EVERY_MS   60000      /* the same failure is logged at most once a minute */

/* ---- the format ------------------------------------------------------------------------- */

/* MetricDatum's units (CloudWatch API reference). */
static const char *const units[] = {
    "Seconds",
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
    "None",
};

bool fg_emf_unit_valid(const char *unit)
{
    for (size_t i = 0; i < FG_ARRAY_LEN(units); i++)
        if (strcmp(units[i], unit) == 0)
            return true;
    return false;
}

static void put_str(struct evbuffer *out, const char *s)
{
    fg_json_put_string(out, s, strlen(s), false);
}

static size_t set_len(const int *set)
{
    size_t n = 0;
    while (set[n] >= 0)
        n++;
    return n;
}

/* The dimensions sets[first..last) name, each once, into used[] (by index). */
static size_t union_dims(const int *const *sets, size_t first, size_t last, bool *used,
                         size_t n_dims)
{
    memset(used, 0, n_dims * sizeof(*used));
    size_t n = 0;
    for (size_t s = first; s < last; s++)
        for (const int *d = sets[s]; *d >= 0; d++)
            if (!used[*d]) {
                used[*d] = true;
                n++;
            }
    return n;
}

static void write_record(struct evbuffer *out, const char *ns, const char *log_group, int64_t ts,
                         const struct fg_emf_dimension *dims, size_t n_dims, const int *const *sets,
                         size_t first, size_t last, const struct fg_emf_metric *m, size_t n)
{
    evbuffer_add_printf(out, "{\"_aws\":{\"Timestamp\":%" PRId64 ",", ts);
    if (log_group != NULL) {
        evbuffer_add(out, "\"LogGroupName\":", 15);
        put_str(out, log_group);
        evbuffer_add(out, ",", 1);
    }
    evbuffer_add(out, "\"CloudWatchMetrics\":[{\"Namespace\":", 34);
    put_str(out, ns);
    evbuffer_add(out, ",\"Dimensions\":[", 15);
    for (size_t s = first; s < last; s++) {
        evbuffer_add(out, s > first ? ",[" : "[", s > first ? 2 : 1);
        for (const int *d = sets[s]; *d >= 0; d++) {
            if (d != sets[s])
                evbuffer_add(out, ",", 1);
            put_str(out, dims[*d].name);
        }
        evbuffer_add(out, "]", 1);
    }
    evbuffer_add(out, "],\"Metrics\":[", 13);
    for (size_t i = 0; i < n; i++) {
        evbuffer_add(out, i ? ",{\"Name\":" : "{\"Name\":", i ? 9 : 8);
        put_str(out, m[i].name);
        evbuffer_add_printf(out, ",\"Unit\":\"%s\"}", m[i].unit);
    }
    evbuffer_add(out, "]}]}", 4);
    for (size_t d = 0; d < n_dims; d++) { /* those no set names are plain properties */
        evbuffer_add(out, ",", 1);
        put_str(out, dims[d].name);
        evbuffer_add(out, ":", 1);
        put_str(out, dims[d].value);
    }
    for (size_t i = 0; i < n; i++) {
        double v = isfinite(m[i].value) ? m[i].value : 0;
        evbuffer_add(out, ",", 1);
        put_str(out, m[i].name);
        if (v == floor(v) && fabs(v) < 9e15)
            evbuffer_add_printf(out, ":%.0f", v);
        else
            evbuffer_add_printf(out, ":%.6g", v);
    }
    evbuffer_add(out, "}\n", 2);
}

size_t fg_emf_write(struct evbuffer *out, const char *ns, const char *log_group, int64_t ts_ms,
                    const struct fg_emf_dimension *dims, size_t n_dims, const int *const *sets,
                    size_t n_sets, const struct fg_emf_metric *metrics, size_t n_metrics)
{
    /* Check everything first: a record is written whole or not at all. */
    if (n_metrics == 0 || n_dims > 256)
        return 0;
    for (size_t i = 0; i < n_metrics; i++) {
        if (!fg_emf_unit_valid(metrics[i].unit) || metrics[i].name[0] == '\0' ||
            strcmp(metrics[i].name, "_aws") == 0)
            return 0;
        for (size_t k = 0; k < i; k++)
            if (strcmp(metrics[i].name, metrics[k].name) == 0)
                return 0;
        for (size_t d = 0; d < n_dims; d++)
            if (strcmp(metrics[i].name, dims[d].name) == 0)
                return 0; /* one member cannot be both */
    }
    for (size_t s = 0; s < n_sets; s++) {
        if (set_len(sets[s]) > FG_EMF_MAX_DIMENSIONS)
            return 0;
        for (const int *d = sets[s]; *d >= 0; d++)
            if ((size_t)*d >= n_dims)
                return 0;
    }
    bool used[256];
    size_t records = 0, first = 0;
    static const int none[] = {-1};
    static const int *const no_sets[] = {none};
    if (n_sets == 0) { /* an empty DimensionSet: the metrics without dimensions */
        sets = no_sets;
        n_sets = 1;
    }
    while (first < n_sets) {
        /* as many sets as fit in FG_EMF_MAX_DIMENSIONS distinct dimensions */
        size_t last = first + 1;
        while (last < n_sets &&
               union_dims(sets, first, last + 1, used, n_dims) <= FG_EMF_MAX_DIMENSIONS)
            last++;
        for (size_t m = 0; m < n_metrics; m += FG_EMF_MAX_METRICS) {
            size_t n = n_metrics - m < FG_EMF_MAX_METRICS ? n_metrics - m : FG_EMF_MAX_METRICS;
            write_record(out, ns, log_group, ts_ms, dims, n_dims, sets, first, last, metrics + m,
                         n);
            records++;
        }
        first = last;
    }
    return records;
}

/* ---- the instance's metrics --------------------------------------------------------------- */

static uint64_t delta(uint64_t cur, uint64_t prev)
{
    return cur >= prev ? cur - prev : cur;
}

size_t fg_emf_instance_metrics(const struct fg_admin_point *prev, const struct fg_admin_point *cur,
                               struct fg_emf_metric *out, size_t cap)
{
    const struct fg_admin_sample *s = &cur->s, *p = &prev->s;
    size_t n = 0;
#define PUT(nm, un, v)                                                                             \
    do {                                                                                           \
        if (n < cap)                                                                               \
            out[n++] = (struct fg_emf_metric){nm, un, (double)(v)};                                \
    } while (0)
#define D(f) delta(s->f, p->f)
    uint64_t limited = 0, plimited = 0;
    for (size_t i = 0; i < s->n_limits; i++)
        limited += s->limits[i].limited;
    for (size_t i = 0; i < p->n_limits; i++)
        plimited += p->limits[i].limited;
    uint64_t hit = D(cache_hits) + D(cache_coalesced), miss = D(cache_misses);
    uint64_t stale = D(cache_stale);
    PUT("Requests", "Count", D(requests));
    PUT("Hits", "Count", hit);
    PUT("Misses", "Count", miss);
    PUT("Stale", "Count", stale);
    PUT("Passes", "Count", D(cache_passes));
    PUT("Limited", "Count", delta(limited, plimited));
    PUT("Offloaded", "Count", D(offload_queued) + D(offload_duplicates));
    PUT("Errors4xx", "Count", D(responses[4]));
    PUT("Errors5xx", "Count", D(responses[5]));
    if (hit + miss + stale > 0) /* no lookups: no ratio (missing data, not 0 %) */
        PUT("CacheHitRatio", "Percent",
            100.0 * (double)(hit + stale) / (double)(hit + miss + stale));
    uint64_t lat[FG_HIST_BUCKETS], count = 0;
    for (size_t k = 0; k < FG_HIST_BUCKETS; k++)
        count += lat[k] = D(latency[k]);
    if (count > 0) {
        PUT("LatencyP50", "Milliseconds", fg_admin_hist_quantile_ms(lat, 0.50));
        PUT("LatencyP90", "Milliseconds", fg_admin_hist_quantile_ms(lat, 0.90));
        PUT("LatencyP99", "Milliseconds", fg_admin_hist_quantile_ms(lat, 0.99));
    }
    uint64_t app_lat[FG_HIST_BUCKETS], app_count = 0; /* the app's time to its head */
    for (size_t k = 0; k < FG_HIST_BUCKETS; k++)
        app_count += app_lat[k] = D(app_head[k]);
    if (app_count > 0) {
        PUT("AppLatencyP50", "Milliseconds", fg_admin_hist_quantile_ms(app_lat, 0.50));
        PUT("AppLatencyP90", "Milliseconds", fg_admin_hist_quantile_ms(app_lat, 0.90));
        PUT("AppLatencyP99", "Milliseconds", fg_admin_hist_quantile_ms(app_lat, 0.99));
    }
    uint64_t app = 0, papp = 0, err = 0, perr = 0, active = 0, retries = 0, pretries = 0;
    for (size_t i = 0; i < s->n_upstreams; i++) {
        app += s->upstreams[i].requests;
        err += s->upstreams[i].errors;
        retries += s->upstreams[i].retries;
        active += s->upstreams[i].active;
    }
    for (size_t i = 0; i < p->n_upstreams; i++) {
        papp += p->upstreams[i].requests;
        perr += p->upstreams[i].errors;
        pretries += p->upstreams[i].retries;
    }
    PUT("AppRequests", "Count", delta(app, papp));
    PUT("AppErrors", "Count", delta(err, perr));
    PUT("AppRetries", "Count", delta(retries, pretries));
    PUT("AppConnectionsActive", "Count", active);
    PUT("ConnectionsActive", "Count", s->connections_active);
    PUT("RequestsActive", "Count", s->requests_active);
    PUT("BytesIn", "Bytes", D(bytes_in));
    PUT("BytesOut", "Bytes", D(bytes_out));
    PUT("CacheBytes", "Bytes", s->cache_bytes);
    PUT("CacheEntries", "Count", s->cache_entries);
    PUT("OffloadFallbacks", "Count", D(offload_fallback_pass) + D(offload_fallback_reject));
    PUT("OffloadAgentErrors", "Count", D(offload_agent_errors));
    PUT("OffloadInFlight", "Count", s->offload_in_flight);
    const struct fg_admin_agent_numbers *a = &cur->agent, *pa = &prev->agent;
    if (a->configured)
        PUT("AgentUp", "Count", a->up ? 1 : 0);
    if (a->up) {
        PUT("OffloadSpoolDepth", "Count", a->spool_depth);
        PUT("OffloadSpoolBytes", "Bytes", a->spool_bytes);
        PUT("OffloadOldestAge", "Milliseconds", a->oldest_age_ms);
        if (pa->up) {
            PUT("OffloadReplayed", "Count", delta(a->replay_ok, pa->replay_ok));
            PUT("OffloadReplayFailed", "Count",
                delta(a->replay_failed + a->replay_rejected,
                      pa->replay_failed + pa->replay_rejected));
            PUT("SQSSent", "Count", delta(a->sqs_sent, pa->sqs_sent));
            PUT("SQSFailed", "Count", delta(a->sqs_failed, pa->sqs_failed));
        }
    }
    PUT("TLSHandshakes", "Count", D(tls_handshakes));
    PUT("TLSResumptions", "Count", D(tls_resumptions));
    PUT("TLSFailures", "Count", D(tls_failures));
    PUT("WarmQueued", "Count", cur->warm.queued + cur->warm.in_flight);
    PUT("ConfigGeneration", "None", s->generation);
#undef D
#undef PUT
    return n;
}

size_t fg_emf_route_metrics(const struct fg_admin_sample_route *prev,
                            const struct fg_admin_sample_route *cur, struct fg_emf_metric *out,
                            size_t cap)
{
    if (cap < 4)
        return 0;
    uint64_t lat[FG_HIST_BUCKETS], count = 0;
    for (size_t k = 0; k < FG_HIST_BUCKETS; k++)
        count += lat[k] = delta(cur->latency[k], prev ? prev->latency[k] : 0);
    size_t n = 0;
    out[n++] = (struct fg_emf_metric){"Requests", "Count",
                                      (double)delta(cur->requests, prev ? prev->requests : 0)};
    out[n++] = (struct fg_emf_metric){"Errors4xx", "Count",
                                      (double)delta(cur->r4xx, prev ? prev->r4xx : 0)};
    out[n++] = (struct fg_emf_metric){"Errors5xx", "Count",
                                      (double)delta(cur->r5xx, prev ? prev->r5xx : 0)};
    if (count > 0)
        out[n++] = (struct fg_emf_metric){"LatencyP99", "Milliseconds",
                                          fg_admin_hist_quantile_ms(lat, 0.99)};
    return n;
}

/* ---- output ------------------------------------------------------------------------------ */

static struct {
    struct fg_admin_point *last; /* the start of the current interval; NULL: none yet */
    int64_t boundary_ms;         /* the interval boundary last reached */
    char target[1100];           /* the target the output below was made for */
    struct bufferevent *tcp;
    int udp;
    struct fg_admin_emf_stats st;
    char last_error[160];
    uint64_t logged_ms;
} EM = {.udp = -1};

static void set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_error(const char *fmt, ...)
{
    char msg[sizeof(EM.last_error)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    EM.st.errors++;
    uint64_t now = fg_mono_ms();
    if (strcmp(msg, EM.last_error) != 0 || now - EM.logged_ms >= LOG_EVERY_MS) {
        fg_err("emf: %s", msg);
        EM.logged_ms = now;
    }
    snprintf(EM.last_error, sizeof(EM.last_error), "%s", msg);
}

static size_t count_lines(struct evbuffer *b)
{
    size_t n = 0;
    struct evbuffer_ptr p = evbuffer_search(b, "\n", 1, NULL);
    while (p.pos >= 0) {
        n++;
        evbuffer_ptr_set(b, &p, 1, EVBUFFER_PTR_ADD);
        p = evbuffer_search(b, "\n", 1, &p);
    }
    return n;
}

static void tcp_close(void)
{
    if (EM.tcp == NULL)
        return;
    EM.st.dropped += count_lines(bufferevent_get_output(EM.tcp)); /* never sent */
    bufferevent_free(EM.tcp);
    EM.tcp = NULL;
}

static void outputs_close(void)
{
    tcp_close();
    if (EM.udp >= 0)
        close(EM.udp);
    EM.udp = -1;
}

static void tcp_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev, (void)arg;
    if (what & BEV_EVENT_CONNECTED)
        return;
    set_error("%s: %s", EM.target,
              what & BEV_EVENT_EOF ? "the agent closed the connection" : strerror(errno));
    tcp_close(); /* opened again with the next interval's records */
}

static void tcp_read_cb(struct bufferevent *bev, void *arg)
{
    (void)arg; /* the agent says nothing; drop whatever comes */
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_drain(in, evbuffer_get_length(in));
}

static void send_tcp(struct event_base *base, const struct fg_conf_emf *e, struct evbuffer *recs,
                     size_t n)
{
    if (EM.tcp == NULL) {
        EM.tcp = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (EM.tcp == NULL) {
            EM.st.dropped += n;
            set_error("%s: out of memory", e->target);
            return;
        }
        struct timeval tv = {10, 0};
        bufferevent_set_timeouts(EM.tcp, NULL, &tv);
        bufferevent_setcb(EM.tcp, tcp_read_cb, NULL, tcp_event_cb, NULL);
        bufferevent_enable(EM.tcp, EV_READ | EV_WRITE);
        if (bufferevent_socket_connect(EM.tcp, (const struct sockaddr *)&e->addr.ss,
                                       (int)e->addr.len) != 0) {
            set_error("%s: cannot connect: %s", e->target, strerror(errno));
            bufferevent_free(EM.tcp);
            EM.tcp = NULL;
            EM.st.dropped += n;
            return;
        }
    }
    struct evbuffer *out = bufferevent_get_output(EM.tcp);
    size_t len = evbuffer_get_length(recs);
    if (evbuffer_get_length(out) + len > TCP_BUFFER_MAX) {
        EM.st.dropped += n;
        set_error("%s: the agent does not take the records: dropped", e->target);
        return;
    }
    evbuffer_add_buffer(out, recs);
    EM.st.records += n;
    EM.st.bytes += len;
}

/* One datagram per record (the agent's UDP listener takes one or more lines each). */
static void send_udp(const struct fg_conf_emf *e, struct evbuffer *recs)
{
    if (EM.udp < 0) {
        EM.udp = socket(e->addr.ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (EM.udp < 0) {
            EM.st.dropped += count_lines(recs);
            set_error("%s: socket: %s", e->target, strerror(errno));
            return;
        }
    }
    for (;;) {
        struct evbuffer_ptr nl = evbuffer_search(recs, "\n", 1, NULL);
        if (nl.pos < 0)
            break;
        size_t len = (size_t)nl.pos + 1;
        const void *rec = evbuffer_pullup(recs, (ev_ssize_t)len);
        ssize_t w = sendto(EM.udp, rec, len, 0, (const struct sockaddr *)&e->addr.ss, e->addr.len);
        if (w == (ssize_t)len) {
            EM.st.records++;
            EM.st.bytes += len;
        } else {
            EM.st.dropped++;
            set_error("%s: send: %s", e->target, w < 0 ? strerror(errno) : "datagram cut short");
        }
        evbuffer_drain(recs, len);
    }
}

/* The file is opened for each interval's records: logrotate may move it at any time,
 * and the next interval writes a new one without a signal. */
static void write_file(const struct fg_conf_emf *e, struct evbuffer *recs, size_t n)
{
    int fd = open(e->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
        EM.st.dropped += n;
        set_error("%s: cannot open: %s", e->path, strerror(errno));
        return;
    }
    size_t len = evbuffer_get_length(recs);
    /* One write of whole lines (O_APPEND): a reader never sees half a record, unless the
     * disk is full, which the error says. */
    const void *data = evbuffer_pullup(recs, -1);
    ssize_t w = write(fd, data, len);
    int err = errno;
    close(fd);
    if (w != (ssize_t)len) {
        EM.st.dropped += n;
        set_error("%s: write: %s", e->path, w < 0 ? strerror(err) : "short write (disk full?)");
        return;
    }
    EM.st.records += n;
    EM.st.bytes += len;
}

/* The records of the interval last..cur, to the target: the instance's, then one per
 * route that had requests in the interval (a route with none costs nothing). */
static void emit(struct event_base *base, const struct fg_config *cfg,
                 const struct fg_admin_point *cur)
{
    const struct fg_conf_emf *e = &cfg->emf;
    /* dims: Instance, the fixed ones, Route (last, filled per route). Dimension sets:
     * Instance alone (unless instance_dimension off) and the fixed ones together (the
     * whole group) when there are some; a route's records put Route in each set, or have
     * [Route] alone when there is no other. Instance stays a member of every record, for
     * CloudWatch Logs Insights, either way. */
    struct fg_emf_dimension dims[2 + FG_CONF_EMF_DIMENSIONS] = {{"Instance", fg_admin_instance()}};
    size_t nd = 1 + e->n_dims, route_at = nd;
    int instance_set[] = {0, -1, -1}, fixed_set[FG_CONF_EMF_DIMENSIONS + 2], route_set[] = {-1, -1};
    for (size_t i = 0; i < e->n_dims; i++) {
        dims[1 + i] = (struct fg_emf_dimension){e->dims[i].name, e->dims[i].value};
        fixed_set[i] = (int)(1 + i);
    }
    fixed_set[e->n_dims] = fixed_set[e->n_dims + 1] = -1;
    const int *sets[2];
    size_t n_sets = 0;
    if (e->instance_dimension)
        sets[n_sets++] = instance_set;
    if (e->n_dims > 0)
        sets[n_sets++] = fixed_set;

    struct evbuffer *recs = evbuffer_new();
    if (recs == NULL)
        return;
    const char *ns = e->ns != NULL ? e->ns : "flashgate";
    const char *group = e->kind == FG_CONF_EMF_FILE ? NULL
                        : e->log_group != NULL      ? e->log_group
                                                    : "flashgate";
    int64_t ts = EM.last->s.wall_ms;
    struct fg_emf_metric m[96];
    size_t nm = fg_emf_instance_metrics(EM.last, cur, m, FG_ARRAY_LEN(m));
    size_t n = fg_emf_write(recs, ns, group, ts, dims, nd, sets, n_sets, m, nm);
    bool broken = n == 0;

    if (e->route_dimension) {
        /* Route joins each set (the sets above end with an extra -1 for it). */
        instance_set[1] = (int)route_at;
        fixed_set[e->n_dims] = (int)route_at;
        route_set[0] = (int)route_at;
        const int *rsets[2];
        size_t n_rsets = n_sets;
        memcpy(rsets, sets, sizeof(sets));
        if (n_rsets == 0)
            rsets[n_rsets++] = route_set;
        for (size_t i = 0; i < cur->s.n_routes; i++) {
            const struct fg_admin_sample_route *r = &cur->s.routes[i], *p = NULL;
            for (size_t k = 0; k < EM.last->s.n_routes && p == NULL; k++)
                if (strcmp(EM.last->s.routes[k].name, r->name) == 0)
                    p = &EM.last->s.routes[k];
            if (r->requests == (p ? p->requests : 0))
                continue; /* no request in the interval */
            struct fg_emf_metric rm[8];
            size_t nrm = fg_emf_route_metrics(p, r, rm, FG_ARRAY_LEN(rm));
            dims[route_at] = (struct fg_emf_dimension){"Route", r->name};
            size_t k = fg_emf_write(recs, ns, group, ts, dims, nd + 1, rsets, n_rsets, rm, nrm);
            broken = broken || k == 0;
            n += k;
        }
    }
    if (broken)
        set_error("some of the interval's records break the format's rules: left out");
    if (n > 0) {
        if (e->kind == FG_CONF_EMF_FILE)
            write_file(e, recs, n);
        else if (e->kind == FG_CONF_EMF_TCP)
            send_tcp(base, e, recs, n);
        else
            send_udp(e, recs);
    }
    evbuffer_free(recs);
}

void fg_admin_emf_tick(struct event_base *base, const struct fg_admin_point *cur)
{
    struct fg_config *cfg = fg_admin_config();
    const struct fg_conf_emf *e = &cfg->emf;
    if (!e->enabled || strcmp(e->target, EM.target) != 0) {
        outputs_close(); /* off, or a reload moved it */
        snprintf(EM.target, sizeof(EM.target), "%s", e->enabled ? e->target : "");
        free(EM.last);
        EM.last = NULL;
    }
    if (!e->enabled) {
        fg_config_unref(cfg);
        return;
    }
    int64_t iv = (int64_t)e->interval_ms;
    int64_t boundary = cur->s.wall_ms / iv * iv;
    if (EM.last == NULL) {
        EM.last = malloc(sizeof(*EM.last));
        if (EM.last != NULL)
            *EM.last = *cur;
        EM.boundary_ms = boundary;
    } else if (boundary != EM.boundary_ms) {
        emit(base, cfg, cur);
        *EM.last = *cur;
        EM.boundary_ms = boundary;
    }
    fg_config_unref(cfg);
}

void fg_admin_emf_stop(void)
{
    if (EM.tcp != NULL && evbuffer_get_length(bufferevent_get_output(EM.tcp)) > 0) {
        /* the last records: one try to send what waits (the agent is local) */
        int fd = bufferevent_getfd(EM.tcp);
        struct evbuffer *out = bufferevent_get_output(EM.tcp);
        if (fd >= 0)
            (void)evbuffer_write(out, fd);
    }
    outputs_close();
    free(EM.last);
    EM.last = NULL;
}

void fg_admin_emf_stats(struct fg_admin_emf_stats *out)
{
    *out = EM.st;
}

const char *fg_admin_emf_last_error(void)
{
    return EM.last_error;
}
