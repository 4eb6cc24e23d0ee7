/*
 * internal.h — the admin module's private pieces, all on the admin thread: the response
 * writer (admin.c), the dashboard's files (page.c, generated arrays), the one-second
 * summaries and their history (summary.c), the event stream (stream.c), the instance's
 * name (instance.c) and the CloudWatch EMF output (emf.c). Only proxy/admin includes it.
 */
#ifndef FG_ADMIN_INTERNAL_H
#define FG_ADMIN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "admin/admin.h"
#include "http/http.h"

/* ---- admin.c: answers ------------------------------------------------------------------ */

/* Queue a whole answer that closes the connection: status, Content-Type, Content-Length,
 * then fields ("Name: value\r\n" lines, NULL for none), then the body unless head_only.
 * fields replace the default Cache-Control: no-store when they carry one. */
void fg_admin_respond(struct bufferevent *bev, int status, const char *ctype, const char *fields,
                      const void *body, size_t len, bool head_only);
/* The current config's admin block says yes to the dashboard (page and stream). */
bool fg_admin_dashboard_on(void);
/* The current config, a reference to release (the ops' callback). */
struct fg_config *fg_admin_config(void);

/* ---- page.c: the dashboard's files ----------------------------------------------------- */

/* One file of proxy/admin/dashboard, turned into an array by the build (embed.sh). */
struct fg_admin_asset {
    const char *name; /* "index.html", "app.js", "style.css", "icon.svg" */
    const unsigned char *data;
    size_t len;
    const char *etag; /* "\"crc-length\"", quotes included */
};
extern const struct fg_admin_asset fg_admin_assets[]; /* ends with a NULL name */

/* GET or HEAD of / or /dashboard/<file>: the file (or 304), true. false: not one of
 * them (nothing was queued). */
bool fg_admin_page(struct bufferevent *bev, const struct fg_http_request *r);
/* The Content-Security-Policy every dashboard answer carries: this origin only. */
#define FG_ADMIN_CSP                                                                               \
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "                \
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/* ---- agentstat.c: the agent's numbers, parsed --------------------------------------------- */

struct fg_admin_agent_numbers {
    bool configured; /* admin agent_status is set */
    bool up;         /* the last poll was answered and the numbers below are its */
    uint64_t spool_depth, spool_bytes, oldest_age_ms;
    uint64_t replay_ok, replay_failed, replay_rejected; /* counters */
    uint64_t sqs_sent, sqs_failed;                      /* counters */
};
void fg_admin_agentstat_numbers(struct fg_admin_agent_numbers *out);

/* ---- summary.c: one summary a second, ten minutes of them ------------------------------------ */

/* One second of this instance: the server's counters and the admin thread's own. */
struct fg_admin_point {
    struct fg_admin_sample s;
    struct fg_admin_agent_numbers agent;
    struct fg_admin_warm_progress warm;
};

#define FG_ADMIN_SUMMARY_VERSION 1
#define FG_ADMIN_HISTORY         600         /* summaries kept: the last ten minutes */
#define FG_ADMIN_HISTORY_BYTES   (16u << 20) /* and at most this much (huge upstreams) */
#define FG_ADMIN_TOP_LIMITS      8           /* the busiest limits a summary names */
#define FG_ADMIN_TOP_ROUTES      8           /* and routes */

/* The summary of the interval prev..cur as one line of versioned JSON (no newline):
 * rates over the interval, totals and gauges at cur (docs/operations.md lists the
 * members). prev NULL: the first one (rates 0). Pure: the unit tests call it. */
void fg_admin_summary_write(struct evbuffer *out, const struct fg_admin_point *prev,
                            const struct fg_admin_point *cur, const char *instance);
/* The q-quantile of a histogram of microseconds, in milliseconds, interpolated linearly
 * inside its bucket (as Prometheus's histogram_quantile); 0 without observations. */
double fg_admin_hist_quantile_ms(const uint64_t bucket[FG_HIST_BUCKETS], double q);

/* One summary as written: shared by the history and every viewer's output buffer (by
 * reference, never copied), freed with its last user. Admin thread only. */
struct fg_admin_summary {
    unsigned refs;
    int64_t t_ms;
    size_t len;
    char json[]; /* len bytes, then a NUL */
};
struct fg_admin_summary *fg_admin_summary_ref(struct fg_admin_summary *s);
void fg_admin_summary_unref(struct fg_admin_summary *s);
/* Append s to out without copying it (out holds a reference until it sends it). */
void fg_admin_summary_add(struct evbuffer *out, struct fg_admin_summary *s);

/* Start the one-second timer (the first summary comes a second after the start). */
bool fg_admin_summary_start(struct event_base *base, const struct fg_admin_ops *ops);
void fg_admin_summary_stop(void);
/* Call fn for each summary kept whose time is after after_ms (0: all), oldest first. */
void fg_admin_summary_history(int64_t after_ms, void (*fn)(struct fg_admin_summary *s, void *arg),
                              void *arg);
/* The history's size in bytes (JSON text), for the viewers' buffer rule. */
size_t fg_admin_summary_history_bytes(void);

/* ---- stream.c: /stats/stream, server-sent events ------------------------------------------- */

/* Take over the connection of GET /stats/stream: refuse it (503) past stream_viewers,
 * else send the head, the history (after Last-Event-ID when the request has one), then
 * every new summary. The connection belongs to the stream from here. */
void fg_admin_stream_attach(struct bufferevent *bev, const struct fg_http_request *r);
/* A new summary for every viewer; one left with more than stream_buffer unread (beyond
 * the history it was sent) is dropped. */
void fg_admin_stream_publish(struct fg_admin_summary *s);
void fg_admin_stream_stop(void);

struct fg_admin_stream_stats {
    uint64_t viewers;      /* now */
    uint64_t accepted;     /* viewers taken since start */
    uint64_t refused;      /* answered 503: stream_viewers reached */
    uint64_t dropped_slow; /* dropped with more than stream_buffer unread, or stuck */
};
void fg_admin_stream_stats(struct fg_admin_stream_stats *out);

/* ---- instance.c: this instance's name ---------------------------------------------------------
 */

/* Begin with the host name (or the configured instance_id); with `instance_id auto`, ask
 * IMDSv2 for the EC2 instance id once, within a second. */
void fg_admin_instance_start(struct event_base *base, const char *configured);
/* The name now (a string owned by instance.c, valid until the next call on this thread). */
const char *fg_admin_instance(void);
/* Where the name came from: "config", "imds", "hostname", or "pending" while IMDS is asked. */
const char *fg_admin_instance_source(void);
void fg_admin_instance_stop(void);

/* ---- emf.c: CloudWatch Embedded Metric Format --------------------------------------------- */

/* CloudWatch's limits on one EMF record. */
#define FG_EMF_MAX_METRICS    100
#define FG_EMF_MAX_DIMENSIONS 30

struct fg_emf_metric {
    const char *name;
    const char *unit; /* one of CloudWatch's units (fg_emf_unit_valid) */
    double value;
};

struct fg_emf_dimension {
    const char *name, *value;
};

/* One set of metrics as records: each record carries every dimension as a top-level
 * string member (those no set names are plain properties), one DimensionSet per entry
 * of sets (each a list of indexes into dims, ended by -1; no sets: one empty set, the
 * metrics without dimensions), at most FG_EMF_MAX_DIMENSIONS different dimensions in the
 * sets of one record (sets are spread over records), at most FG_EMF_MAX_METRICS metrics
 * (more make more records with the same dimensions) and the metrics as top-level
 * numbers; one JSON object a line. log_group (NULL: none) is _aws.LogGroupName for the agent's
 * listener. Returns the number of records written, 0 when the input breaks a rule
 * (too many dimensions, a bad unit, a name twice). */
size_t fg_emf_write(struct evbuffer *out, const char *ns, const char *log_group, int64_t ts_ms,
                    const struct fg_emf_dimension *dims, size_t n_dims, const int *const *sets,
                    size_t n_sets, const struct fg_emf_metric *metrics, size_t n_metrics);
bool fg_emf_unit_valid(const char *unit);

/* The metrics of one interval prev..cur for the instance record (the EMF metric names);
 * returns how many (at most cap). Pure, for the unit tests. */
size_t fg_emf_instance_metrics(const struct fg_admin_point *prev, const struct fg_admin_point *cur,
                               struct fg_emf_metric *out, size_t cap);

/* The metrics of one route over an interval (prev NULL: a route new in it): Requests,
 * Errors4xx, Errors5xx, and LatencyP99 when it had requests. Pure, for the unit tests. */
size_t fg_emf_route_metrics(const struct fg_admin_sample_route *prev,
                            const struct fg_admin_sample_route *cur, struct fg_emf_metric *out,
                            size_t cap);

/* Called by the summary tick every second with the new point: writes the records when
 * an interval boundary was crossed (the config's emf block is read each time). */
void fg_admin_emf_tick(struct event_base *base, const struct fg_admin_point *cur);
void fg_admin_emf_stop(void);

struct fg_admin_emf_stats {
    uint64_t records, bytes; /* written (or sent) */
    uint64_t dropped;        /* records that could not be written or sent */
    uint64_t errors;         /* write, connect and send failures */
};
void fg_admin_emf_stats(struct fg_admin_emf_stats *out);
/* The last failure ("" if none). */
const char *fg_admin_emf_last_error(void);

#endif /* FG_ADMIN_INTERNAL_H */
