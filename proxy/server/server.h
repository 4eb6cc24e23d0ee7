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
#include "admin/admin.h"

/* startup.c: what start and `flashgate -t` check, each failure a "file:line: message"
 * in errs: the user exists, the log files can be written by whoever will write them.
 * Returns the number of problems. */
size_t fg_server_check(const struct fg_config *cfg, struct fg_config_errors *errs);
/* Log files created from now on while root go to cfg's user (false, logged: no such
 * user). Call before opening the logs at start. */
bool fg_server_set_log_owner(const struct fg_config *cfg);
/* Open and lock (flock) cfg's pid file for the life of the process, without changing
 * it; false (logged) when another process holds it. Writing the pid comes later; the
 * file is removed at exit (atexit), also when the start fails after this. */
bool fg_server_lock_pid_file(const struct fg_config *cfg);
bool fg_server_write_pid_file(void);
/* At exit: remove the pid file and let go of the lock. */
void fg_server_remove_pid_file(void);
/* Switch to cfg's user when running as root (false, logged, when it cannot). */
bool fg_server_drop_privileges(const struct fg_config *cfg);

/* worker.c: is every address cfg listens on (the admin listener's included) free of
 * other processes? Each one is bound once without SO_REUSEPORT, so a port that another
 * flashgate holds is seen as in use instead of being shared with it. false with
 * "file:line: ..." messages in errs. */
bool fg_server_probe_ports(const struct fg_config *cfg, struct fg_config_errors *errs);

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
/* Open the access log files of cfg not open yet, as the current user: at start before
 * privileges are dropped, and on reload before the new config is applied. false (with
 * "file:line: ..." messages in errs) when one cannot be opened. */
bool fg_server_open_logs(const struct fg_config *cfg, struct fg_config_errors *errs);
/* Reopen every access log file (SIGUSR1, after logrotate). A file that cannot be
 * reopened keeps the descriptor it had (logged); returns how many could not. */
size_t fg_server_reopen_logs(void);
/* Write the /stats JSON document, and the same counters for /metrics (Prometheus). */
void fg_server_stats_json(struct evbuffer *out);
void fg_server_metrics(struct evbuffer *out);
/* The same counters as plain numbers, for the dashboard and the EMF output (admin.h). */
struct fg_admin_sample;
void fg_server_sample(struct fg_admin_sample *out);
/* Purge every cache store of a key, of every key starting with it, or of a tag; with a
 * fleet, on every instance (admin). */
void fg_server_cache_purge(enum fg_admin_purge_kind kind, const char *value, size_t len,
                           struct event_base *base, fg_admin_purge_done done, void *arg);
/* Where cache warm-ups are sent: the first listen address (loopback for a wildcard). */
bool fg_server_warm_target(struct fg_addr *out);
/* The current config (a new reference; unref when done). */
struct fg_config *fg_server_config(void);

#endif /* FG_SERVER_H */
