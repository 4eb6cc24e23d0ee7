/*
 * proxy.h — the request at the app: its head as the app sees it (forward.c) and the
 * transaction forwarded through one upstream exchange, bodies streamed both ways
 * (proxy.c).
 */
#ifndef FG_SERVER_PROXY_H
#define FG_SERVER_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http.h"
#include "server/txn_hold.h"
#include "upstream/upstream.h"

struct fg_txn;

/* The proxy path's part of a transaction. */
struct fg_proxy {
    struct fg_txn_hold hold;        /* while the exchange runs */
    struct fg_upstream_exchange *x; /* NULL: not at the app (or it ended) */
    /* The request head as sent upstream: the buffer is kept across requests. */
    char *head;
    size_t head_len, head_cap;
    uint64_t req_body_left; /* LENGTH: bytes still to forward */
    struct fg_http_chunked req_chunked;
    bool chunked_out; /* we chunk-encode the answer toward the client */
    bool upgrade;     /* forwarded with Upgrade: a 101 turns it into a tunnel (tunnel.c) */
    /* The answer's head is queued, none of it written, and nothing else is in the client's
     * output: its length (0 once body bytes follow or when it cannot be taken back). A
     * failure then can still be a 502 instead of a cut connection. */
    size_t head_unsent;
    uint64_t upstream_start_us;
};

/* forward.c */
/* Build the request as the app sees it into t->proxy.head. for_cache: the head of a cache
 * fill (GET, no conditionals or Range of the client's: the answer must be a whole,
 * storable one). */
bool fg_forward_head(struct fg_txn *t, bool for_cache);

/* proxy.c */
void fg_proxy_start(struct fg_txn *t);
/* Take over the exchange of a cache fill whose answer turned out uncacheable, from inside
 * its on_head: resp is that head; the body follows through the proxy path. */
void fg_proxy_adopt(struct fg_txn *t, struct fg_upstream_exchange *x,
                    const struct fg_http_response *resp);
/* The client has more request body bytes, or its output drained (resume upstream). */
void fg_proxy_client_readable(struct fg_txn *t);
void fg_proxy_client_drained(struct fg_txn *t);
/* The transaction ends early (the client went away, an error answered): drop the app's side. */
void fg_proxy_abort(struct fg_txn *t);

#endif /* FG_SERVER_PROXY_H */
