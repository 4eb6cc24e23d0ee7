/*
 * stage_waitroom.h — the waiting-room stage (stage_waitroom.c): after the rate limits,
 * a route with `waiting_room NAME;` lets admitted visitors through and answers the
 * others with their place in line (the page, the JSON status, or 503 to API clients).
 */
#ifndef FG_SERVER_STAGE_WAITROOM_H
#define FG_SERVER_STAGE_WAITROOM_H

#include <stdbool.h>

#include "server/txn_hold.h"
#include "waitroom/waitroom.h"

struct fg_snap;
struct fg_txn;
struct fg_worker;

/* The stage's part of a transaction. */
struct fg_stage_waitroom {
    struct fg_txn_hold hold;  /* while a ticket is asked of Redis */
    struct fg_waitroom *room; /* the room that let the request through (adaptive inlet) */
    struct fg_waitroom_pending *pending;
    struct fg_waitroom_visit v;
    unsigned asks; /* Redis questions for this request (a ticket, then its rank) */
    bool status_poll, browser;
};

/* Start the rooms' thread (once, before the workers). */
bool fg_stage_waitroom_global_init(size_t workers);
/* A snapshot's rooms (made or updated by name) / forget them. */
bool fg_stage_waitroom_snap_init(struct fg_worker *w, struct fg_snap *s);
void fg_stage_waitroom_snap_free(struct fg_snap *s);
/* The route's room; false when the request goes on (no room, a bypass, admitted: then
 * the caller calls fg_request_after_waitroom). true: the stage answers, or goes on
 * itself once Redis answered. */
bool fg_stage_waitroom(struct fg_txn *t);
/* The request ends: the app's answer counts for the adaptive inlet. */
void fg_stage_waitroom_done(struct fg_txn *t);

#endif /* FG_SERVER_STAGE_WAITROOM_H */
