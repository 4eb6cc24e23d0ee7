/*
 * server.h — the flashgate daemon: worker threads, listeners, client connections and the
 * request path. main() drives it through these calls; everything else is internal.
 */
#ifndef FG_SERVER_H
#define FG_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <event2/buffer.h>

#include "config/config.h"

/* Prepare workers and bind every listen address of this config (takes a reference);
 * returns false (logged) if any cannot be bound. Nothing is served until fg_server_run(),
 * so privileges can be dropped in between. */
bool fg_server_start(struct fg_config *cfg);
/* Start the worker threads. */
bool fg_server_run(void);

/* Apply a new, already validated config (takes a reference). New listen addresses are
 * bound first; if one fails the reload is refused and the old config keeps running.
 * Returns false with a log line on refusal. */
bool fg_server_reload(struct fg_config *cfg);

/* Begin draining: /healthz answers 503 from now on. */
void fg_server_begin_drain(void);
/* Stop accepting, close idle client connections, answer with Connection: close. */
void fg_server_stop_accepting(void);
/* Requests and client connections still open, summed over workers. */
unsigned long fg_server_inflight(void);
/* Stop the workers and free everything (after the drain, or at the deadline). */
void fg_server_stop(void);

bool fg_server_draining(void);
/* Reopen access log files (SIGUSR1, after logrotate). */
void fg_server_reopen_logs(void);
/* Write the /stats JSON document, and the same counters for /metrics (Prometheus). */
void fg_server_stats_json(struct evbuffer *out);
void fg_server_metrics(struct evbuffer *out);
/* Purge every cache store of a key, or of every key starting with it (admin). */
size_t fg_server_cache_purge(const char *key, size_t len, bool prefix);
/* Where cache warm-ups are sent: the first listen address (loopback for a wildcard). */
bool fg_server_warm_target(struct fg_addr *out);
/* The current config (a new reference; unref when done). */
struct fg_config *fg_server_config(void);

#endif /* FG_SERVER_H */
