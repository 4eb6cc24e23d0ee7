/*
 * stage_offload.h — the offload stage (stage_offload.c): a write on a route with an
 * `offload` block, when its trigger fires, waits for its whole body, goes to the agent
 * (proxy/offload/) and is answered 202 once durable, or takes the route's fallback.
 */
#ifndef FG_SERVER_STAGE_OFFLOAD_H
#define FG_SERVER_STAGE_OFFLOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "offload/offload.h"
#include "server/txn_hold.h"

struct fg_snap;

/* The stage's part of a transaction. */
struct fg_stage_offload {
    struct fg_txn_hold hold;            /* while it owns the transaction */
    struct fg_offload_pending *pending; /* the record waiting for the agent's answer */
    bool active;                        /* the stage owns the transaction */
    bool body_wait;                     /* waiting for the whole body in the input buffer */
    bool sent_continue;                 /* 100 Continue went out */
    uint64_t sent_us;                   /* the record went to the agent */
    char *key; /* the idempotency key (allocated once the record is made) */
};

/* Take the request if its route offloads it (true): 202 once the agent made it durable,
 * or the route's fallback (fg_request_after_offload, or 503). false: the caller goes on. */
bool fg_stage_offload(struct fg_txn *t);
/* More request bytes arrived while the stage owns the transaction. */
void fg_stage_offload_client_readable(struct fg_txn *t);
/* A request to the route's upstream finished: ok with its response time, or failed
 * (connect error, timeout, broken or 5xx answer) — for the triggers' windows. */
void fg_stage_offload_observe(struct fg_txn *t, bool ok, uint64_t us);
/* Free a snapshot's trigger windows. */
void fg_stage_offload_snap_free(struct fg_snap *s);

#endif /* FG_SERVER_STAGE_OFFLOAD_H */
