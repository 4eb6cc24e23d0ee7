/*
 * internal.h — the redis module's private pieces, shared by its files and its unit tests
 * (never by other modules).
 *
 * The objects of a client, from the outside in:
 *
 *   struct fg_redis      one per event_base and user; owns the nodes, the slot map (cluster
 *                        mode), the subscriptions and the resolver.
 *   struct rnode         one Redis server by host:port: the configured endpoint (the seed)
 *                        and, in cluster mode, every master of the slot map and every
 *                        address a redirection named. A node has at most one active
 *                        command connection, at most one replacement being set up, the
 *                        connections it replaced (draining their last answers), one
 *                        pub/sub connection, and the commands redirected to it while it
 *                        connects.
 *   struct rconn         one TCP (or TLS) connection: resolve, connect, handshake (AUTH,
 *                        SELECT, slot-map discovery), then commands in flight in send order.
 *   struct fg_redis_req  one command, user's or internal (handshake steps, ASKING, SCRIPT
 *                        LOAD, slot-map refreshes), with its deadline timer.
 *
 * Ownership rules that keep callbacks safe:
 *  - a request is owned by the one list it is on (a connection's in-flight FIFO, or a
 *    node's waiting queue) and freed by whoever takes it off. Answering (callback,
 *    timeout) and cancelling only clear q->cb; they never free a request in flight.
 *  - lists are emptied by taking the head, then calling back: a callback may cancel or
 *    send other commands, never free the client.
 *  - a connection closed while its read callback runs is freed when that callback ends
 *    (c->in_read); nodes are freed only with the client.
 */
#ifndef FG_REDIS_INTERNAL_H
#define FG_REDIS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/event_struct.h>
#include <hiredis/hiredis.h>
#include <openssl/ssl.h>

#include "core/core.h"
#include "redis/redis.h"

#define FG_REDIS_SLOTS      16384
#define FG_REDIS_MAX_NODES  1024 /* distinct host:port a client will track */
#define FG_REDIS_MAX_REDIRS 5    /* MOVED/ASK followed per command */
#define FG_REDIS_DRAIN_MS   5000 /* a replaced connection's last answers wait this long */
#define FG_REDIS_REFRESH_MS 200  /* slot-map refreshes at most this often */

/* ---- counters (stats.c) --------------------------------------------------------------- */

enum rstat {
    RS_CONNECTS = 0,
    RS_CONNECT_FAILURES,
    RS_DISCONNECTS,
    RS_TLS_HANDSHAKES,
    RS_TLS_FAILURES,
    RS_AUTH_WRONGPASS,
    RS_AUTH_NOAUTH,
    RS_AUTH_NOPERM,
    RS_AUTH_NO_CREDENTIALS,
    RS_AUTH_OTHER,
    RS_MOVED,
    RS_ASK,
    RS_SLOT_MAP_REFRESHES,
    RS_RESOLUTIONS,
    RS_RESOLVE_FAILURES,
    RS_ADDRESS_CHANGES,
    RS_READONLY,
    RS_AGED_OUT,
    RS_TOKEN_RENEWALS,
    RS_TIMEOUTS,
    RS_NOSCRIPT,
    RS_MESSAGES,
    RS_COUNT
};

/* The counters of one endpoint name. Written by every worker (atomic adds), never freed:
 * names outlive reloads, so /stats keeps its totals. */
struct fg_redis_counters {
    char name[64];
    _Atomic uint64_t v[RS_COUNT];
};

/* The counters of name (created on first use); NULL when the registry is full. */
struct fg_redis_counters *fg_redis_counters_get(const char *name);

static inline void rstat_add(struct fg_redis_counters *s, enum rstat k, uint64_t n)
{
    if (s != NULL)
        atomic_fetch_add_explicit(&s->v[k], n, memory_order_relaxed);
}

/* ---- IAM credentials (iam.c) ---------------------------------------------------------- */

/* One background thread per (IMDS endpoint, region) keeps instance-role credentials
 * fresh (proxy/aws's fg_creds on its own event_base) and publishes a copy under a lock,
 * so that workers sign tokens without waiting. Shared and refcounted. */
struct iam_source;

/* Find or start the source. NULL with a message in err. */
struct iam_source *iam_source_acquire(const char *imds, const char *region, char *err,
                                      size_t errlen);
void iam_source_release(struct iam_source *s);

/* Mint the token of (user, cache, serverless) at now_s from the source's current
 * credentials. NULL with *no_creds set when it has none (or no region) yet. */
char *iam_source_token(struct iam_source *s, const char *user, const char *cache, bool serverless,
                       int64_t now_s, bool *no_creds, char *err, size_t errlen);

/* ---- endpoints (endpoint.c) ----------------------------------------------------------- */

struct fg_redis_endpoint {
    unsigned magic;
    _Atomic unsigned refs;
    char name[64];
    struct fg_redis_url url; /* its password is moved to `password` and wiped here */
    char display[512];
    char *password; /* AUTH [user] password; NULL: none (or IAM) */
    bool iam;
    char iam_user[128], iam_cache[128], iam_region[64], imds[256];
    bool iam_serverless;
    struct fg_tls_client *tls; /* rediss://, else NULL */
    enum fg_redis_cluster_mode cluster;
    uint64_t connect_timeout_ms, resolve_interval_ms, max_age_ms;
    char resolvers[FG_REDIS_RESOLVERS_MAX][64];
    size_t n_resolvers;
    struct fg_redis_counters *stats;

    /* The IAM token handed to new connections, under lock. */
    pthread_mutex_t lock;
    struct iam_source *src; /* acquired on the first token */
    char *token;
    int64_t token_minted_s;
};

/* What AUTH sends on a new connection at now_s: the password, or an IAM token (reused
 * while younger than FG_REDIS_IAM_RENEW_S, minted again otherwise). *user is the AUTH
 * user ("" for the default user). Returns a malloc'd secret the caller wipes and frees;
 * NULL with no AUTH to send (*why untouched), or on failure with *why and err set. */
char *fg_redis_endpoint_secret(struct fg_redis_endpoint *ep, int64_t now_s, const char **user,
                               enum fg_redis_auth_fail *why, bool *failed, char *err,
                               size_t errlen);

/* Start what the endpoint's secrets need before a connection asks (the IAM credentials
 * thread fetches from IMDS meanwhile). */
void fg_redis_endpoint_prepare(struct fg_redis_endpoint *ep);

/* Wipe and free a secret (NULL: no-op). */
void fg_redis_secret_free(char *s);

/* ---- cluster helpers (cluster.c) ------------------------------------------------------ */

/* The slot of a key: CRC16 (XMODEM) of the key, or of its hash tag — the bytes between
 * the first '{' and the next '}' when there are any — mod 16384. */
unsigned fg_redis_key_slot(const char *key, size_t len);

/* One range of the slot map, as a discovery answer gives it. */
struct slot_range {
    unsigned start, end; /* inclusive */
    char host[256];      /* "" : the node that answered */
    int port;
    char hostname[256]; /* the name announced for TLS checks, or "" */
};

/* Parse a CLUSTER SHARDS answer (masters that are online only) or a CLUSTER SLOTS one
 * into a malloc'd array; tls picks the TLS port when a node announces both. NULL with
 * *n = 0 on a malformed answer (err says why). */
struct slot_range *fg_redis_parse_shards(const redisReply *r, bool tls, size_t *n, char *err,
                                         size_t errlen);
struct slot_range *fg_redis_parse_slots(const redisReply *r, size_t *n, char *err, size_t errlen);

/* "MOVED 3999 10.0.0.5:6381" / "ASK ...": the slot and the target. False when err is not
 * a redirection. host is "" when the server left it out (":6381"). */
bool fg_redis_parse_redirect(const char *err, size_t len, bool *ask, unsigned *slot, char *host,
                             size_t host_cap, int *port);

/* ---- client, nodes, connections (client.c, conn.c) ------------------------------------ */

enum conn_kind { CK_COMMANDS = 0, CK_PUBSUB };
enum conn_state { CS_RESOLVING = 0, CS_CONNECTING, CS_TLS, CS_HANDSHAKE, CS_READY, CS_CLOSED };

struct rconn;
struct rnode;

TAILQ_HEAD(reqq, fg_redis_req);
TAILQ_HEAD(connq, rconn);

/* Internal requests answer to a handler instead of a user callback. reply is NULL when
 * the connection closed first (the handler only cleans up then). */
typedef void (*req_handler)(struct rconn *c, struct fg_redis_req *q, redisReply *reply);

#define REQ_MAGIC      0x72726571u /* "rreq" */
#define REQF_HANDSHAKE 1u          /* part of its connection's handshake */
#define REQF_SHARDS    2u          /* CLUSTER SHARDS (else SLOTS) */

struct fg_redis_req {
    unsigned magic;
    struct fg_redis *r;
    TAILQ_ENTRY(fg_redis_req) link;
    struct rconn *conn;  /* in its in-flight FIFO, or NULL */
    struct rnode *node;  /* in its waiting queue, or NULL */
    req_handler handler; /* internal requests */
    fg_redis_cb cb;      /* user requests; NULL once answered or cancelled */
    void *arg;
    struct event timer;
    bool timer_set;
    uint64_t sent_us;     /* written to a connection at (0: not yet) */
    uint64_t deadline_us; /* fg_mono_us() when the caller is answered TIMEOUT */
    uint64_t timeout_ms;
    const struct fg_redis_script *script;
    bool eval;   /* send the script's source (after NOSCRIPT) */
    bool asking; /* send ASKING first (an ASK redirection) */
    unsigned redirects;
    unsigned flags; /* REQF_* (internal requests) */
    unsigned slot;  /* FG_REDIS_SLOTS when keyless */
    int argc;
    const char **argv;
    size_t *lens;
    char data[]; /* the copied arguments */
};

struct rconn {
    unsigned magic;
    struct fg_redis *r;
    struct rnode *node;
    enum conn_kind kind;
    enum conn_state state;
    bool draining; /* replaced: no new commands, closed once its answers are in */
    bool discover; /* the handshake asks for the slot map */
    bool closed_pending_free;
    unsigned in_read;
    TAILQ_ENTRY(rconn) link; /* in its node's draining list */
    struct evdns_getaddrinfo_request *dns;
    bool dns_done;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    evutil_socket_t fd;       /* while the TCP connect runs; then the bufferevent's */
    struct event *connect_ev; /* the TCP connect's completion */
    struct bufferevent *bev;
    SSL *ssl;
    redisReader *reader;
    struct reqq inflight;
    size_t n_inflight;
    size_t n_internal;       /* of which handshake steps, ASKING, SCRIPT LOAD, map questions */
    unsigned handshake_left; /* handshake answers still expected */
    uint64_t ready_us, last_read_us;
    struct event *timer; /* handshake deadline, then max age, then drain deadline */
    struct event *poll;  /* IAM: look for credentials again (they are being fetched) */
    bool creds_wait;
    const struct fg_redis_script **scripts; /* loaded here */
    size_t n_scripts, cap_scripts;
    char why[400]; /* the first failure, for the log */
};

struct rnode {
    struct fg_redis *r;
    size_t index;
    char host[256];
    char port_text[8];
    int port;
    char tls_name[256]; /* the name its certificate must carry */
    bool seed;          /* the configured endpoint */
    bool in_map;        /* owns slots (cluster mode) */
    bool host_is_ip;
    struct rconn *active; /* commands go here once ready */
    struct rconn *next;   /* a replacement being set up */
    struct connq draining;
    struct reqq waiting; /* redirected here while it connects */
    size_t n_waiting;
    struct rconn *pubsub;
    unsigned backoff_ms, ps_backoff_ms;
    struct event *reconnect_ev, *ps_reconnect_ev, *resolve_ev;
    struct evdns_getaddrinfo_request *probe; /* a periodic lookup in progress */
    bool probe_done;
    uint64_t last_replace_us;
    bool replace_pending; /* a replacement failed: try again after the backoff */
    char moved_to[64];    /* a lookup found the name elsewhere: replace on the next turn */
    bool complained;
};

struct common_tv {
    uint64_t ms;
    const struct timeval *tv;
};

TAILQ_HEAD(subq, fg_redis_sub);

struct fg_redis_sub {
    unsigned magic;
    struct fg_redis *r;
    TAILQ_ENTRY(fg_redis_sub) link;
    char *channel;
    size_t len;
    bool sharded;
    bool subscribed;
    unsigned pass;
    struct rnode *node; /* where it is (to be) subscribed */
    fg_redis_msg_cb msg;
    fg_redis_sub_state_cb state;
    void *arg;
};

struct fg_redis {
    unsigned magic;
    struct event_base *base;
    struct fg_redis_endpoint *ep;
    struct fg_redis_counters *stats;
    struct fg_redis_opts opts;
    struct evdns_base *dns; /* made on the first name to resolve */
    bool dns_failed;
    struct rnode **nodes; /* nodes[0] is the seed */
    size_t n_nodes, cap_nodes;
    bool mode_known; /* the seed answered: cluster or not */
    bool cluster;
    uint16_t *slots; /* [FG_REDIS_SLOTS]: node index + 1, 0 = nobody */
    struct event *refresh_ev;
    bool refresh_armed;    /* refresh_ev is pending */
    bool refresh_inflight; /* a map question is out */
    size_t covered;        /* slots with a node */
    size_t rr;             /* rotates keyless commands and refreshes over the nodes */
    unsigned pass;         /* pubsub.c's walks */
    uint64_t last_refresh_us;
    struct subq subs;
    uint64_t rng;
    bool freeing;
    unsigned busy;     /* libevent callbacks of this client running (fg_redis_enter) */
    bool free_pending; /* fg_redis_free ran inside one: memory goes when the last returns */
    struct common_tv tvs[8];
    size_t n_tvs;
};

/* client.c, for conn.c and pubsub.c */
/* Around every libevent callback that may reach the owner's code: the owner may free the
 * client from a callback (a reload releasing the last snapshot), and its memory must
 * outlive the frames still running. */
void fg_redis_enter(struct fg_redis *r);
void fg_redis_leave(struct fg_redis *r);
void fg_redis_emit(struct fg_redis *r, enum fg_redis_event ev);
uint64_t fg_redis_jitter(struct fg_redis *r, uint64_t max);
struct evdns_base *fg_redis_dns(struct fg_redis *r);
struct rnode *fg_redis_node_get(struct fg_redis *r, const char *host, int port,
                                const char *hostname);
void fg_redis_node_conn_ready(struct rnode *n, struct rconn *c);
/* c left n: failed (count, log, reconnect) or quiet (closed on purpose). */
void fg_redis_node_conn_closed(struct rnode *n, struct rconn *c, bool failed, bool was_ready);
/* Open a new connection beside n's and move to it once ready (counter counted, unless
 * RS_COUNT); moved: the node's address changed, so its pub/sub connection goes too. */
void fg_redis_node_replace(struct rnode *n, const char *why, enum rstat counter, bool moved);
void fg_redis_want_refresh(struct fg_redis *r);
void fg_redis_apply_map(struct fg_redis *r, struct rconn *from, const struct slot_range *m,
                        size_t n);
void fg_redis_set_standalone(struct fg_redis *r);
void fg_redis_req_free(struct fg_redis_req *q);
/* A user request's answer from connection c (dispatches redirections and NOSCRIPT). */
void fg_redis_user_reply(struct rconn *c, struct fg_redis_req *q, redisReply *reply);
/* Fail every request of a list with FG_REDIS_LOST, emptying it. */
void fg_redis_fail_list(struct reqq *list);

/* conn.c */
struct rconn *fg_redis_conn_new(struct rnode *n, enum conn_kind kind, bool discover);
/* Queue q on c (ready): ASKING and SCRIPT LOAD first when needed. False when out of
 * memory (q untouched). */
bool fg_redis_conn_write(struct rconn *c, struct fg_redis_req *q);
/* Close c now: the log line (unless why is NULL), its requests failed, its node told. */
void fg_redis_conn_fail(struct rconn *c, const char *why);
/* Stop taking commands and close once the answers in flight are in. */
void fg_redis_conn_drain(struct rconn *c);
/* Forget that scripts are loaded (after NOSCRIPT). */
void fg_redis_conn_forget_scripts(struct rconn *c);
/* Send an internal command on c whose answer goes to h (NULL: none expected in order,
 * as for pub/sub subscriptions). False when out of memory or c has no socket. */
bool fg_redis_conn_send(struct rconn *c, int argc, const char **argv, const size_t *lens,
                        req_handler h);
/* Ask c for the slot map (CLUSTER SHARDS; CLUSTER SLOTS where that is unknown). */
bool fg_redis_conn_ask_map(struct rconn *c, bool handshake);
/* True when sa is the address c is connected to. */
bool fg_redis_conn_peer_is(const struct rconn *c, const struct sockaddr *sa);

/* pubsub.c */
void fg_redis_pubsub_ready(struct rconn *c);
void fg_redis_pubsub_reply(struct rconn *c, redisReply *reply);
void fg_redis_pubsub_lost(struct rnode *n);
void fg_redis_pubsub_replace_all(struct fg_redis *r);
void fg_redis_pubsub_start(struct rnode *n);

#endif /* FG_REDIS_INTERNAL_H */
