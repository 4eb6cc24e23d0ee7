/*
 * offload.h — writes queued with flashgate-agent instead of being sent to the app.
 *
 * Three parts, none of which knows a client connection:
 *  - the agent client (client.c): one non-blocking unix stream connection per worker and
 *    agent socket path, RECORD frames pipelined (docs/agent-protocol.md), answers matched
 *    by id, a timeout per record, reconnect with backoff when the agent is away;
 *  - the record (record.c): the idempotency key and the fields that travel with a write;
 *  - the triggers (trigger.c): whether a route queues now (`when inflight`, `latency`,
 *    `failing`, `limited`), from per-worker windows of what the upstream did.
 * The request-path stage that ties them to a transaction (waiting for the body, the 202,
 * the fallbacks) is server/stage_offload.c.
 *
 * Everything here runs on one worker's event_base; the counters are read by the admin
 * thread (relaxed atomics, core.h).
 */
#ifndef FG_OFFLOAD_H
#define FG_OFFLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "agent/agent.h"
#include "config/config.h"
#include "core/core.h"
#include "http/http.h"

/* One worker's counters. */
struct fg_offload_stats {
    fg_counter_t queued, duplicates;               /* answered 202 */
    fg_counter_t fallback_pass, fallback_reject;   /* the route's fallback ran */
    fg_counter_t too_big;                          /* 413 above the offload max_body */
    fg_counter_t err_full, err_too_big, err_error; /* why the agent did not take it */
    fg_counter_t err_timeout, err_unreachable;
    fg_counter_t in_flight; /* gauge: records sent, not answered */
    /* which trigger sent a write to the agent (none of them: `when always`) */
    fg_counter_t trig_inflight, trig_latency, trig_failing, trig_limited;
};

/* ---- the agent client (client.c) ---------------------------------------------------------- */

/* What became of a record. */
enum fg_offload_outcome {
    FG_OFFLOAD_DURABLE = 0, /* the agent made it durable */
    FG_OFFLOAD_DUPLICATE,   /* it had the key already */
    FG_OFFLOAD_FULL,        /* its spool is full (or it does not read: our queue is) */
    FG_OFFLOAD_TOO_BIG,     /* above its frame size */
    FG_OFFLOAD_ERROR,       /* it failed, or the record could not be made */
    FG_OFFLOAD_TIMEOUT,     /* no answer within the record's timeout */
    FG_OFFLOAD_UNREACHABLE, /* no connection (or it went away with the record) */
};

/* Count an outcome that ended in a fallback (err_*). */
void fg_offload_count_failure(struct fg_offload_stats *st, enum fg_offload_outcome o);

struct fg_offload_client;
struct fg_offload_pending;

struct fg_offload_client *fg_offload_client_new(struct event_base *base,
                                                struct fg_offload_stats *stats);
void fg_offload_client_free(struct fg_offload_client *c);

/*
 * Send rec (its id is assigned here) to the agent listening on path. The answer comes
 * later through cb(arg, outcome), exactly once, from the event loop, unless the record is
 * cancelled first. NULL when it cannot be sent now (*why: UNREACHABLE, FULL or ERROR): the
 * caller falls back at once.
 */
struct fg_offload_pending *fg_offload_send(struct fg_offload_client *c, const char *path,
                                           struct fg_agent_record *rec, uint64_t timeout_ms,
                                           void (*cb)(void *arg, enum fg_offload_outcome o),
                                           void *arg, enum fg_offload_outcome *why);
/* Forget a record: its answer, if it comes, is ignored (a durable record is still
 * replayed by the agent, with its key). */
void fg_offload_cancel(struct fg_offload_pending *p);

/* ---- the record (record.c) ---------------------------------------------------------------- */

/* Is this an idempotency key the agent accepts (1 to 255 visible ASCII characters)? */
bool fg_offload_key_ok(const char *s, size_t len);
/* Fill rec's method, target and the fields of r that the route sends with the record
 * (key and body are the caller's). */
void fg_offload_record_from(const struct fg_conf_route_offload *of, const struct fg_http_request *r,
                            struct fg_agent_record *rec);

/* ---- the triggers (trigger.c) ------------------------------------------------------------- */

/* What one worker saw of one upstream: response times and failures over one-second
 * windows (see trigger.c). */
struct fg_offload_window;

struct fg_offload_window *fg_offload_window_new(uint64_t now_ms);
void fg_offload_window_free(struct fg_offload_window *w);
/* A request to the upstream finished: ok with its response time, or failed (connect
 * error, timeout, broken or 5xx answer). random: any random number (reservoir sampling). */
void fg_offload_window_observe(struct fg_offload_window *w, bool ok, uint64_t us, uint64_t now_ms,
                               uint64_t random);

/* What the worker knows besides the window. */
struct fg_offload_signals {
    bool limited;      /* the write is over one of the route's limits */
    uint64_t inflight; /* the upstream's connections in use on this worker */
    bool all_down;     /* every server of the upstream is marked down */
};

/* The trigger of `of` that fires now ("inflight", "latency", "failing", "limited"), counted
 * in st, or NULL when none does. w may be NULL when no latency or failing trigger is set. */
const char *fg_offload_trigger(const struct fg_conf_route_offload *of, struct fg_offload_window *w,
                               const struct fg_offload_signals *s, uint64_t now_ms,
                               struct fg_offload_stats *st);

#endif /* FG_OFFLOAD_H */
