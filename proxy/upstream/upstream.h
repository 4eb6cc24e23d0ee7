/*
 * upstream.h — connections to the app: a per-worker pool of keep-alive connections for
 * each configured upstream, server selection (round robin or least connections) and
 * passive health (a server that keeps failing is skipped for a while).
 *
 * Everything here runs on one worker's event_base and is never shared between threads,
 * except the statistics, which the admin thread reads (relaxed atomics, core.h).
 *
 * A connection is either idle in its pool (the pool watches it: any byte or EOF from the
 * app while idle closes it, and so does keepalive_timeout) or in use by exactly one
 * transaction, which installs its own callbacks until it releases it.
 */
#ifndef FG_UPSTREAM_H
#define FG_UPSTREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "config/config.h"
#include "core/core.h"
#include "netio/netio.h"

#define FG_UPSTREAM_MAX_SERVERS 64

/* Counters of one server of one upstream in one worker. */
struct fg_upstream_server_stats {
    char address[112];
    fg_counter_t requests;
    fg_counter_t fails;  /* failures counted toward passive health */
    fg_counter_t down;   /* 1 while this worker skips it */
    fg_counter_t active; /* connections in use */
};

/* Counters of one upstream in one worker; they outlive reloads (keyed by name). */
struct fg_upstream_stats {
    char name[FG_CONF_NAME_MAX];
    fg_counter_t requests;
    fg_counter_t connections_active;
    fg_counter_t connections_idle;
    fg_counter_t connects;
    fg_counter_t reused;
    fg_counter_t retries;
    fg_counter_t err_connect;
    fg_counter_t err_timeout;
    fg_counter_t err_reset;
    fg_counter_t err_bad_response;
    size_t n_servers;
    struct fg_upstream_server_stats servers[FG_UPSTREAM_MAX_SERVERS];
};

struct fg_upstream_pool;

struct fg_upstream_conn {
    unsigned magic;
    struct bufferevent *bev; /* writes, connect, write timeouts */
    struct fg_reader reader; /* reads (the owner sets its callbacks and read timeout) */
    struct fg_upstream_pool *pool;
    size_t server;     /* index into the upstream's servers */
    unsigned requests; /* requests started on this connection */
    bool reused;       /* taken from the idle list (may have been closed by the app) */
    bool connected;    /* the TCP connect completed */
    uint64_t idle_since_ms;
    TAILQ_ENTRY(fg_upstream_conn) link;
};

/* Why a request to a server failed, for passive health and stats. */
enum fg_upstream_failure {
    FG_UPSTREAM_FAIL_CONNECT = 0,
    FG_UPSTREAM_FAIL_TIMEOUT,
    FG_UPSTREAM_FAIL_RESET,
    FG_UPSTREAM_FAIL_BAD_RESPONSE,
};

/* A pool for one upstream of one config snapshot in one worker. */
struct fg_upstream_pool *fg_upstream_pool_new(struct event_base *base,
                                              const struct fg_conf_upstream *conf,
                                              struct fg_upstream_stats *stats);
/* Retire a pool (reload or shutdown): idle connections close now, connections in use
 * close when released, and the pool frees itself when the last one is gone. */
void fg_upstream_pool_retire(struct fg_upstream_pool *pool);
/* Close every idle connection (drain). */
void fg_upstream_pool_close_idle(struct fg_upstream_pool *pool);

const struct fg_conf_upstream *fg_upstream_pool_conf(const struct fg_upstream_pool *pool);
struct fg_upstream_stats *fg_upstream_pool_stats(struct fg_upstream_pool *pool);

/*
 * Get a connection to a server chosen by the balancer among the healthy ones (or all of
 * them, if none is healthy). Returns an idle connection when one to that server is
 * available (reused = true), else starts a non-blocking connect (connected = false; write
 * to bev at once, libevent sends it when the connect completes; a failed connect comes as
 * BEV_EVENT_ERROR, or as BEV_EVENT_TIMEOUT|BEV_EVENT_WRITING after connect_timeout).
 * fresh forces a new connection. exclude is a server index to avoid (-1 for none): used to
 * try another server after a connect failure. Returns NULL only if no socket could be
 * made (out of fds): the caller answers 502.
 * The caller sets the bufferevent's callbacks (connect and write events) and the
 * reader's (fg_reader_setcb), and enables the reader.
 */
struct fg_upstream_conn *fg_upstream_acquire(struct fg_upstream_pool *pool, bool fresh,
                                             int exclude);

/* Mark the connect as done (from the caller's BEV_EVENT_CONNECTED handler). */
void fg_upstream_connected(struct fg_upstream_conn *uc);

/*
 * Give a connection back. reusable: the response was complete and framed, the request
 * was fully sent and the app did not ask to close. The pool keeps it if it has room and
 * the connection is under keepalive_requests; else it is closed.
 */
void fg_upstream_release(struct fg_upstream_conn *uc, bool reusable);

/* Report a success or a failure of a request on a server, for passive health. */
void fg_upstream_report(struct fg_upstream_pool *pool, size_t server, bool ok,
                        enum fg_upstream_failure why);

/* Number of servers, and the text of one (for logs). */
size_t fg_upstream_server_count(const struct fg_upstream_pool *pool);
const char *fg_upstream_server_name(const struct fg_upstream_pool *pool, size_t server);

#endif /* FG_UPSTREAM_H */
