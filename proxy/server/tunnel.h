/*
 * tunnel.h — upgrade tunnels (tunnel.c): a request with Upgrade (WebSocket) that the app
 * answers 101 turns the client connection and a fresh upstream connection into a byte
 * tunnel, with back-pressure both ways, an idle timeout (the route's tunnel_timeout) and
 * a per-worker cap (max_tunnels). The transaction stays open until the tunnel closes:
 * its access-log line says how long it was open, the bytes each way and who closed it.
 */
#ifndef FG_SERVER_TUNNEL_H
#define FG_SERVER_TUNNEL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include <event2/event.h>

#include "core/core.h"
#include "upstream/upstream.h"

struct fg_txn;
struct fg_conn;
struct fg_worker;

/* Who ended a tunnel: the access log's word and the counters' index. */
enum fg_tunnel_end {
    FG_TUNNEL_BY_CLIENT = 0,
    FG_TUNNEL_BY_APP,
    FG_TUNNEL_BY_TIMEOUT, /* tunnel_timeout without a byte either way, or a send timeout */
    FG_TUNNEL_BY_DRAIN,   /* the drain deadline (or the process stopping) */
    FG_TUNNEL_BY_ERROR,   /* a socket error on either side */
    FG_TUNNEL_BY__COUNT,
};
extern const char *const fg_tunnel_end_names[FG_TUNNEL_BY__COUNT];

struct fg_tunnel_stats {
    fg_counter_t open; /* gauge */
    fg_counter_t opened;
    fg_counter_t refused;    /* over max_tunnels, or draining: 503 */
    fg_counter_t bytes_up;   /* client → app */
    fg_counter_t bytes_down; /* app → client */
    fg_counter_t closed[FG_TUNNEL_BY__COUNT];
};

struct fg_tunnel {
    struct fg_conn *c;
    struct fg_txn *t;
    struct fg_upstream_conn *uc;
    struct event *timer; /* tunnel_timeout */
    uint64_t timeout_ms, last_ms;
    uint64_t up, down;
    int end;      /* enum fg_tunnel_end, -1 while open */
    bool closing; /* one side ended: the other's output drains, then both close */
    LIST_ENTRY(fg_tunnel) link;
};

/* Does this request ask for a tunnel the route allows (Upgrade + Connection: upgrade,
 * HTTP/1.1, no body, every protocol offered allowed, none of them h2c)? */
bool fg_tunnel_wanted(const struct fg_txn *t);
/* May one more open now? false: answered 503 (and counted). */
bool fg_tunnel_admit(struct fg_txn *t);
/* The app answered 101 (its head is queued for the client): join the two connections. */
void fg_tunnel_start(struct fg_txn *t, struct fg_upstream_conn *uc);
/* Close every tunnel of a worker now (the drain deadline, the process stopping). */
void fg_tunnel_close_all(struct fg_worker *w);

#endif /* FG_SERVER_TUNNEL_H */
