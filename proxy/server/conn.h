/*
 * conn.h — client connections (conn.c): accept, read a request head within its deadline,
 * hand it to the request path, then keep the connection alive (idle timeout) or close it.
 */
#ifndef FG_SERVER_CONN_H
#define FG_SERVER_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "netio/netio.h"

#define FG_CONN_MAGIC 0x636f6e31u /* "con1" */

struct fg_worker;
struct fg_listener;
struct fg_txn;
struct fg_tunnel;

enum fg_conn_state {
    FG_CONN_IDLE = 0, /* keep-alive: waiting for the first byte of a request */
    FG_CONN_HEAD,     /* bytes of a head arrived; header deadline running */
    FG_CONN_TXN,      /* a transaction is running */
    FG_CONN_CLOSING,  /* flushing the last response, then close */
    FG_CONN_TUNNEL,   /* after a 101: the tunnel (tunnel.c) owns the callbacks */
};

struct fg_conn {
    unsigned magic;
    struct fg_worker *w;
    struct fg_listener *lst;
    struct bufferevent *bev; /* writes and the send timeout */
    struct fg_reader reader; /* reads */
    struct event *timer;
    enum fg_conn_state state;
    unsigned requests;
    uint64_t head_deadline_ms;
    uint64_t body_deadline_ms; /* 0: no body deadline running */
    bool head_timer;           /* the header deadline's timer is armed */
    bool nodelay;              /* TCP_NODELAY is set (or not needed: unix socket) */
    bool peer_closed;          /* the client half-closed (after a complete request) */
    uint64_t body_start_ms;
    struct fg_txn *txn;
    struct fg_tunnel *tunnel; /* FG_CONN_TUNNEL */
    struct sockaddr_storage peer;
    char peer_ip[64];
    LIST_ENTRY(fg_conn) link;
};

void fg_conn_accept(struct fg_listener *lst, int fd, const struct sockaddr *sa, int salen);
void fg_conn_close(struct fg_conn *c);
void fg_conn_close_if_idle(struct fg_conn *c);
/* A transaction finished: log, count, then keep the connection or close it. */
void fg_conn_txn_done(struct fg_conn *c);
/* May this connection carry another request after the current one? */
bool fg_conn_keepalive_ok(struct fg_conn *c, struct fg_txn *t);
/* The request body began / ended: start / stop the body deadline. */
void fg_conn_body_started(struct fg_conn *c);
void fg_conn_body_finished(struct fg_conn *c);
/* Resume reading the client (back-pressure released or body wanted). */
void fg_conn_resume_read(struct fg_conn *c);
/* The transaction's answer was a 101: the tunnel takes the connection's callbacks. */
void fg_conn_tunnel_begin(struct fg_conn *c, struct fg_tunnel *tun);
/* The tunnel closed: the transaction ends (logged, counted), the connection closes. */
void fg_conn_tunnel_end(struct fg_conn *c, bool client_closed);

#endif /* FG_SERVER_CONN_H */
