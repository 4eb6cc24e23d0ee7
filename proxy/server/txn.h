/*
 * txn.h — one request and its answer: what every request has, whatever stages it goes
 * through. Each stage keeps its own state in its own struct (stage_*.h, proxy.h), and a
 * stage that holds something past its return (a timer, a reference, a record at the
 * agent) joins the transaction's list of holders with fg_txn_hold: when the transaction
 * ends, the list is walked and each releases its own.
 */
#ifndef FG_SERVER_TXN_H
#define FG_SERVER_TXN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "http/http.h"
#include "server/proxy.h"
#include "server/stage_cache.h"
#include "server/stage_compress.h"
#include "server/stage_limit.h"
#include "server/stage_offload.h"
#include "server/stage_waitroom.h"
#include "server/txn_hold.h"

#define FG_TXN_MAGIC 0x74786e31u /* "txn1" */

/* Fields the stages add to every answer of the request ("Name: value\r\n" lines; the rate
 * limits' RateLimit fields so far). */
#define FG_TXN_FIELDS_MAX 512

struct fg_conn;
struct fg_snap;
struct fg_worker;
struct fg_txn;

enum fg_req_state { FG_REQ_BODY = 0, FG_REQ_DONE };
enum fg_resp_state { FG_RESP_WAIT = 0, FG_RESP_BODY, FG_RESP_DONE };

struct fg_txn {
    unsigned magic;
    struct fg_conn *c;
    struct fg_snap *snap; /* pinned: the config this request started on */
    const struct fg_conf_server *srv;
    const struct fg_conf_route *route;

    enum fg_req_state req_state;
    enum fg_resp_state resp_state;
    bool resp_head_sent;
    bool client_close; /* close the client connection after this answer */
    int status;
    uint64_t req_body_bytes; /* of the body so far (body_min_rate) */
    uint64_t start_us, bytes_in, bytes_out;
    bool request_id_ours;
    size_t fields_len;
    struct fg_txn_hold *holds; /* stages to release at the end */

    /* The access log's view. Each stage writes its own word (cache, limited_by, offload). */
    uint64_t upstream_us;
    /* Where the time went, in microseconds (the access log and Server-Timing): waiting for
     * rate-limit decisions (Redis), for the agent's answer, in the cache stage (lookup,
     * waiting on a fill; this request's own wait for the app not counted), and from the
     * request sent to the app to its response head; the connection it came on. */
    uint64_t limit_us, offload_us, cache_us, app_head_us;
    struct fg_upstream_timing app; /* attempts 0: the app was not asked */
    const char *log_cache;         /* what the cache did (NULL: no cache on the route) */
    const char *log_limit;         /* the limit that refused */
    const char *log_offload;       /* queued, duplicate, pass, reject, limited, too_big */
    const char *log_fleet;         /* what the fleet did for this request's fill (fill.c):
                                      l2_hit, l2_miss, l2_timeout, l2_error, lock (asked
                                      the app for the fleet), waited (then the shared
                                      tier), wait_passed, wait_timeout; NULL: nothing */
    /* An upgrade tunnel (tunnel.c): who closed it (NULL: no tunnel), bytes each way, when
     * it opened (the request's own latency ends there). */
    const char *log_tunnel;
    uint64_t tunnel_up, tunnel_down, tunnel_start_us;

    /* The stages' own state. */
    struct fg_stage_limit limit;
    struct fg_stage_waitroom wr;
    struct fg_stage_offload offload;
    struct fg_stage_compress z;
    struct fg_stage_cache cache;
    struct fg_proxy proxy;

    /* Text: strings are cleared by their first byte only (fg_txn_get), the rest is
     * written before it is read. */
    struct {
        char request_id[40]; /* the client's X-Request-Id, or ours (respond.c); "" none */
        char client_ip[64];  /* the peer, or the trusted X-Forwarded-For hop (request.c) */
        char fields[FG_TXN_FIELDS_MAX]; /* fields_len bytes */
        /* Copies for the access log: the head itself is gone once forwarded. */
        char log_method[16];
        char log_path[512];
        char log_ua[256];
        char log_trace[256];
        char log_upstream[112];
    };

    TAILQ_ENTRY(fg_txn) free_link;
    /* Last: recycled transactions clear everything above, the parser overwrites the
     * header array. */
    struct fg_http_request req;
};

/* txn.c */
/* A transaction for a request on c (recycled per worker: they are large). */
struct fg_txn *fg_txn_get(struct fg_worker *w);
/* Release every stage's hold and the snapshot, then recycle t. */
void fg_txn_put(struct fg_worker *w, struct fg_txn *t);
/* After a burst (transactions beyond the spares ended): give the heap's free pages back to
 * the system, at most once a second (the worker's 250 ms timer calls it). */
void fg_txn_trim(struct fg_worker *w, uint64_t now_ms);
/* A stage holds something until the transaction ends: release(t) will run then, once. */
void fg_txn_hold(struct fg_txn *t, struct fg_txn_hold *h, void (*release)(struct fg_txn *t));
/* Add "Name: value\r\n" lines to every answer of the request. */
void fg_txn_add_fields(struct fg_txn *t, const char *fields, size_t len);
/* The request's id (t->request_id): the client's X-Request-Id, or one made now when the
 * server adds them (request_id on). false: it has none. */
bool fg_txn_request_id(struct fg_txn *t);

#endif /* FG_SERVER_TXN_H */
