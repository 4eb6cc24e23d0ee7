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
 * exchange (exchange.c), which installs its own callbacks until it releases it.
 *
 * Two layers: the pool (pool.c: acquire, release, health, balancing) and the exchange
 * (exchange.c: one request and its response over a pooled connection, with the retry
 * rules, the timeouts, the body's de-framing and the reuse decision). The proxy path and
 * the cache fill are the exchange's users; they never touch a connection themselves.
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
#include "http/http.h"
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

/* Every server is marked down (fail_timeout not over yet). A server whose fail_timeout
 * is over is up again from this call on, as from the balancer's: the two agree. */
bool fg_upstream_all_down(struct fg_upstream_pool *pool);

/* Number of servers, and the text of one (for logs). */
size_t fg_upstream_server_count(const struct fg_upstream_pool *pool);
const char *fg_upstream_server_name(const struct fg_upstream_pool *pool, size_t server);

/* ---- one exchange (exchange.c) ------------------------------------------------------------
 *
 * An exchange sends one request to the upstream and delivers its response: the head
 * (interim 1xx answers passed to on_interim when the owner wants them, else skipped), then the
 * body's payload de-framed (Content-Length, chunked or close-delimited), then the end. It takes a
 * pooled connection and gives it back when the response is complete, keeping it only when the
 * response was framed, the request fully sent and neither side asked to close.
 *
 * Retry rules, applied before any response byte was seen, and never visible to the
 * caller except in the counters:
 *  - a connect that fails (refused, timed out, TLS handshake) is tried on another server
 *    of the upstream, with what was written so far (nothing reached the app);
 *  - a reused keep-alive connection that dies (EOF or reset, not a timeout) before any
 *    response byte is tried once on a fresh connection when the request is retryable
 *    (idempotent, without body) and `retry` is on: the app closed the idle connection
 *    as we reused it.
 * Anything else ends the exchange with an error: before the head, the caller answers
 * 502/504; after it, the response is cut.
 *
 * Timeouts: connect_timeout (connect and TLS handshake), send_timeout (each write of the
 * request), read_timeout (a deadline for the whole head from the end of the request, as
 * the client side's header_timeout; then a timeout between reads of the body).
 *
 * Back-pressure: the response is read only while the caller wants it
 * (fg_upstream_exchange_pause/resume); the request body's producer watches the bytes
 * queued (fg_upstream_exchange_send returns them) and is told when they drained.
 *
 * Callbacks run from the event loop or from the calls that deliver (resume, send_end);
 * inside any of them the caller may end the exchange (abort, fail) or hand it to another
 * owner (set_owner). After on_end or on_error the exchange is gone.
 */

struct fg_upstream_exchange;

/* How the request's body is framed on the wire; the exchange frames what it is given. */
enum fg_upstream_body {
    FG_UPSTREAM_BODY_NONE = 0,
    FG_UPSTREAM_BODY_LENGTH,  /* the head carries Content-Length: the bytes go as they are */
    FG_UPSTREAM_BODY_CHUNKED, /* the head carries Transfer-Encoding: chunked */
};

struct fg_upstream_request {
    const char *head; /* the request head; valid until the response head arrived */
    size_t head_len;
    enum fg_http_method method; /* what the response answers (a HEAD response has no body) */
    enum fg_upstream_body body;
    bool retryable; /* idempotent and without body: may be sent again (see above) */
    /* The head asks to switch protocols (Upgrade + Connection: upgrade): it goes on a new
     * connection, never a pooled one, and a 101 is a final answer (on_upgrade). */
    bool upgrade;
};

struct fg_upstream_error {
    enum fg_upstream_failure why;
    int status;         /* what to answer when nothing was answered: 502, 504 for timeouts */
    const char *detail; /* "refused the connection", ... (for the caller's log line) */
    const char *server; /* the server's address text */
};

struct fg_upstream_exchange_ops {
    /* The final response head; resp's slices are valid during the call only. */
    void (*on_head)(void *arg, struct fg_upstream_exchange *x, const struct fg_http_response *resp);
    /* n payload bytes are at the start of in: take exactly those (remove or drain them). */
    void (*on_body)(void *arg, struct fg_upstream_exchange *x, struct evbuffer *in, size_t n);
    /* The body is complete and the connection is back in the pool (or closed). */
    void (*on_end)(void *arg, struct fg_upstream_exchange *x);
    /* The exchange failed: before or after on_head (then the response is truncated). */
    void (*on_error)(void *arg, struct fg_upstream_exchange *x, const struct fg_upstream_error *e);
    /* Optional: the request body queued for the app drained below FG_LOW_WATER. */
    void (*on_writable)(void *arg, struct fg_upstream_exchange *x);
    /* Optional: an interim answer (1xx but 100 and 101: 103 Early Hints...) before the
     * final one; resp's slices are valid during the call only. Never on a retry's path:
     * once an interim byte came, nothing is sent again. */
    void (*on_interim)(void *arg, struct fg_upstream_exchange *x,
                       const struct fg_http_response *resp);
    /* Optional, for an upgrade request: after on_head delivered the 101, the connection
     * is the owner's (its input may already hold the app's first bytes of the new
     * protocol); the exchange is gone. The owner installs its own callbacks at once and
     * gives it back with fg_upstream_release(uc, false). Without it a 101 is an error. */
    void (*on_upgrade)(void *arg, struct fg_upstream_exchange *x, struct fg_upstream_conn *uc);
};

/* Start: take a connection, write the head. NULL when no connection could be made at all
 * (no socket: out of fds). A request without body is complete at once; otherwise the
 * caller sends it (fg_upstream_exchange_send, then _send_end). */
struct fg_upstream_exchange *fg_upstream_exchange_start(struct fg_upstream_pool *pool,
                                                        const struct fg_upstream_request *req,
                                                        const struct fg_upstream_exchange_ops *ops,
                                                        void *arg);
/* Queue n payload bytes of src for the app (as one chunk for a chunked body). Returns the
 * bytes waiting in the connection's output: above FG_HIGH_WATER the producer waits for
 * on_writable. Written at the next flush (or send_end). */
size_t fg_upstream_exchange_send(struct fg_upstream_exchange *x, struct evbuffer *src, size_t n);
/* Write what is queued; the bytes still waiting. */
size_t fg_upstream_exchange_flush(struct fg_upstream_exchange *x);
/* The request body is complete (its last chunk is written): the read timeout starts. */
void fg_upstream_exchange_send_end(struct fg_upstream_exchange *x);
/* Stop delivering the response / deliver again (what is buffered at once). */
void fg_upstream_exchange_pause(struct fg_upstream_exchange *x);
void fg_upstream_exchange_resume(struct fg_upstream_exchange *x);
/* From now on callbacks go to ops/arg (a cache fill hands an uncacheable answer to the
 * request that started it, from inside its on_head). */
void fg_upstream_exchange_set_owner(struct fg_upstream_exchange *x,
                                    const struct fg_upstream_exchange_ops *ops, void *arg);
/* End the exchange now, without callbacks; the connection is closed. */
void fg_upstream_exchange_abort(struct fg_upstream_exchange *x);
/* End it as failed (the caller cannot use the answer): counted for passive health, then
 * on_error, as for a failure of the app. */
void fg_upstream_exchange_fail(struct fg_upstream_exchange *x, enum fg_upstream_failure why,
                               int status, const char *detail);
/* The server the request went to (the last one tried), for logs. */
const char *fg_upstream_exchange_server(const struct fg_upstream_exchange *x);

/* What the exchange's connections cost, for the access log and Server-Timing: valid from
 * on_head on (and inside on_error), about the connection the answer came on. */
struct fg_upstream_timing {
    unsigned attempts;   /* connections the request was sent on (2: a retry or another server) */
    bool reused;         /* a pooled keep-alive connection: no connect */
    uint64_t connect_us; /* a new connection: TCP connect and TLS handshake; 0 when reused */
};
void fg_upstream_exchange_timing(const struct fg_upstream_exchange *x,
                                 struct fg_upstream_timing *out);

#endif /* FG_UPSTREAM_H */
