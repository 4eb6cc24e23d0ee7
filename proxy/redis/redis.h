/*
 * redis.h — the one Redis client of flashgate. Every feature that talks to Redis goes
 * through it: fleet-wide rate limits today, the fleet bus, the shared cache tier, fleet
 * locks and the waiting room next. It reaches Redis the way AWS ships it (ElastiCache
 * Serverless or node-based, Valkey or Redis OSS): TLS, RBAC users or IAM tokens, cluster
 * mode, DNS names that move on a failover.
 *
 * Parts, one header:
 *  - URLs (url.c): redis:// and rediss://[user[:password]@]host[:port][/db].
 *  - Endpoints (endpoint.c): what the config says about one Redis (URL, the password from
 *    a root-only file or an IAM identity, TLS, cluster mode, DNS), checked and built at
 *    config load, then immutable and shared by every thread (refcounted). The IAM token
 *    cache and the counters are the only parts that change, each under its own lock.
 *  - IAM tokens (iam.c): SigV4 presigned ElastiCache tokens, minted from instance-role
 *    credentials that one background thread keeps fresh (proxy/aws).
 *  - Clients (client.c, conn.c, cluster.c): one client per event_base (one per worker and
 *    user), single-threaded. Pipelined commands, each with its own deadline and exactly one
 *    callback; cluster routing by key slot with MOVED and ASK; scripts by SHA;
 *    reconnection with capped jittered backoff and a fresh DNS lookup every time.
 *  - Pub/sub (pubsub.c): SUBSCRIBE and SSUBSCRIBE on connections of their own, restored
 *    after every reconnect.
 *  - Counters (stats.c): per endpoint name, process-wide, for /stats and /metrics.
 *
 * hiredis is the RESP codec only (redisReader for replies, redisFormatCommandArgv for
 * commands): the connections are libevent bufferevents, plain or TLS (proxy/tls). Only API
 * present in both hiredis 0.14 (Debian 12) and 1.x (Amazon Linux 2023) is used, and the
 * connection speaks RESP2 so replies have the same shapes under both.
 *
 * The promise to callers: a command never waits longer than its timeout. Whatever
 * happens to Redis (down, hung, TLS stalled, failover, slot migration), the callback runs
 * with a reply, a timeout or a lost connection by then, or the command is refused at once
 * (fg_redis_command returns NULL) so that the caller decides without Redis.
 */
#ifndef FG_REDIS_H
#define FG_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "aws/aws.h"

struct event_base;
struct evbuffer;
struct redisReply; /* hiredis's reply (<hiredis/hiredis.h>): what callbacks are given */

#define FG_REDIS_DEFAULT_PORT 6379

/* ---- URLs (url.c) --------------------------------------------------------------------- */

struct fg_redis_url {
    bool tls;           /* rediss:// */
    char host[256];     /* a DNS name, or an IP literal (IPv6 without its brackets) */
    int port;           /* default 6379 */
    unsigned db;        /* SELECT db when non-zero (standalone servers only) */
    char user[128];     /* the ACL user ("" : the default user) */
    char password[256]; /* "" : none in the URL */
};

/*
 * Parse "redis://host[:port][/db]" or "rediss://..." with optional "user@",
 * "user:password@" or ":password@" before the host. Userinfo may be percent-encoded (a
 * '@' or ':' in a password is %40, %3A). IPv6 hosts go in brackets. Names are not
 * resolved here: clients resolve them on every connection. Returns false with a message
 * in err, which never contains the password.
 */
bool fg_redis_url_parse(const char *url, struct fg_redis_url *out, char *err, size_t errlen);

/* "rediss://user:***@host:port/db": for logs and /config, never the password. */
void fg_redis_url_display(const struct fg_redis_url *u, char *out, size_t size);

/* ---- endpoints (endpoint.c) ------------------------------------------------------------ */

enum fg_redis_cluster_mode {
    FG_REDIS_CLUSTER_AUTO = 0, /* ask the server (CLUSTER SHARDS) on every connection */
    FG_REDIS_CLUSTER_ON,       /* cluster protocol required (a configuration endpoint,
                                  ElastiCache Serverless) */
    FG_REDIS_CLUSTER_OFF,      /* one server; MOVED answers are errors */
};

#define FG_REDIS_RESOLVERS_MAX 4

/* What the config says about one Redis. Strings are copied by fg_redis_endpoint_new. */
struct fg_redis_endpoint_config {
    const char *name; /* names its counters (across reloads) and its log lines */
    const char *url;  /* redis[s]://... as above */
    /* The password, from a file (one line; a final newline is dropped) that no one but
     * its owner may read, the owner being root or this process's user (a systemd
     * credential). NULL: the URL's password, if any. */
    const char *password_file;
    /* ElastiCache IAM authentication instead of a password: AUTH iam_user <token>. */
    bool iam;
    const char *iam_user;   /* the ElastiCache user id (= its name) */
    const char *iam_cache;  /* the replication group or serverless cache name */
    bool iam_serverless;    /* the token carries ResourceType=ServerlessCache */
    const char *iam_region; /* NULL: the instance's region, from IMDS */
    const char *imds;       /* instance metadata endpoint; NULL: FG_AWS_IMDS_DEFAULT */
    const char *ca_file;    /* rediss: CA bundle; NULL: the system store */
    enum fg_redis_cluster_mode cluster;
    uint64_t connect_timeout_ms;  /* DNS + TCP + TLS + AUTH + discovery; 0: 1000 */
    uint64_t resolve_interval_ms; /* while connected, look the name up again this often
                                     and move when it points elsewhere; 0: only on
                                     reconnect */
    uint64_t max_age_ms;          /* replace a connection this old (ElastiCache closes
                                     IAM connections after 12 h); 0: never */
    /* DNS servers ("ip" or "ip:port") for run-time lookups; none: /etc/resolv.conf. */
    const char *resolvers[FG_REDIS_RESOLVERS_MAX];
    size_t n_resolvers;
};

struct fg_redis_endpoint;

/*
 * Check and build an endpoint: the URL parsed, the password file read (refused when it
 * is not a regular file, is readable by group or others, or belongs to another user than
 * root or this process's), the TLS context built (a CA file that cannot be read refuses
 * it), the IAM settings checked. No network access. Returns NULL with a message in err
 * (never containing a secret).
 */
struct fg_redis_endpoint *fg_redis_endpoint_new(const struct fg_redis_endpoint_config *c, char *err,
                                                size_t errlen);
struct fg_redis_endpoint *fg_redis_endpoint_ref(struct fg_redis_endpoint *ep);
/* Drop a reference; the last one wipes the password and the token. NULL is a no-op. */
void fg_redis_endpoint_unref(struct fg_redis_endpoint *ep);
const char *fg_redis_endpoint_name(const struct fg_redis_endpoint *ep);
/* The masked URL ("rediss://app:***@host:6379/0"). */
const char *fg_redis_endpoint_display(const struct fg_redis_endpoint *ep);

/* ---- IAM tokens (iam.c) ---------------------------------------------------------------- */

#define FG_REDIS_IAM_TTL_S 900 /* X-Amz-Expires of a token: 15 minutes, AWS's maximum */
#define FG_REDIS_IAM_RENEW_S                                                                       \
    300 /* a token older than this is not used for new connections:                                \
           each has at least 10 minutes to authenticate */

/*
 * Presign "GET http://host/?query" (the query as sent; "" for none) for service in
 * region at Unix time `time`, valid `expires` seconds, and return it without the scheme:
 * "host/?query&X-Amz-Algorithm=...&X-Amz-Signature=..." (or "host/?X-Amz-..." without a
 * query). The session token, if any, is signed. malloc'd; NULL with a message in err.
 */
char *fg_redis_iam_presign(const char *host, const char *query,
                           const struct fg_sigv4_credentials *creds, const char *region,
                           const char *service, int64_t time, uint32_t expires, char *err,
                           size_t errlen);

/*
 * The ElastiCache IAM token of user for cache (lower-cased, as AWS names caches):
 * fg_redis_iam_presign of "http://<cache>/?Action=connect&User=<user>" (plus
 * "&ResourceType=ServerlessCache" for a serverless cache), service "elasticache",
 * FG_REDIS_IAM_TTL_S. It is sent as the password: AUTH <user> <token>.
 */
char *fg_redis_iam_token(const char *user, const char *cache, bool serverless,
                         const struct fg_sigv4_credentials *creds, const char *region, int64_t time,
                         char *err, size_t errlen);

/* ---- scripts (script.c) --------------------------------------------------------------- */

/* A Lua script known by its SHA1. Clients load it once per connection (SCRIPT LOAD,
 * pipelined before its first EVALSHA there) and run it with EVAL when a server answers
 * NOSCRIPT anyway (SCRIPT FLUSH, a failover to a node that never saw it). */
struct fg_redis_script {
    const char *source; /* not copied: static text, or kept alive by the owner */
    char sha[41];
};

/* Compute s->sha for source. False only if OpenSSL fails. */
bool fg_redis_script_init(struct fg_redis_script *s, const char *source);

/* ---- clients (client.c) --------------------------------------------------------------- */

struct fg_redis;
struct fg_redis_req;

/* How a command ended. */
enum fg_redis_status {
    FG_REDIS_REPLY = 0, /* reply is the server's answer, which may be an error reply
                           (after MOVED / ASK / NOSCRIPT were dealt with) */
    FG_REDIS_TIMEOUT,   /* no answer within the command's timeout */
    FG_REDIS_LOST,      /* the connection closed first (or the client was freed) */
};

/* The one callback of a command, on the client's event_base thread, never from inside
 * the call that sent it. reply is valid during the callback only (NULL unless REPLY). */
typedef void (*fg_redis_cb)(enum fg_redis_status st, const struct redisReply *reply, void *arg);

/* Events a client reports to its owner (counted per owner, e.g. per limit). */
enum fg_redis_event {
    FG_REDIS_EV_CONNECTED = 0, /* a connection completed its handshake */
    FG_REDIS_EV_CONNECT_FAILED,
    FG_REDIS_EV_DISCONNECTED, /* a ready connection was lost or dropped */
    FG_REDIS_EV_NOSCRIPT,     /* a script had to be sent again (EVAL) */
};

struct fg_redis_opts {
    unsigned max_inflight;   /* commands waiting per connection; beyond, refused; 0: 1000 */
    unsigned backoff_min_ms; /* first reconnect delay; 0: 100 */
    unsigned backoff_max_ms; /* it doubles up to this, with jitter; 0: 5000 */
    void (*on_event)(enum fg_redis_event ev, void *arg); /* NULL: none */
    void *event_arg;
};

/*
 * A client for ep on base, connecting at once (without blocking: names are resolved with
 * evdns) and reconnecting in the background whenever a connection fails or is lost. In
 * cluster mode it keeps one connection per master of the slot map. ep is referenced.
 * Returns NULL only when out of memory.
 */
struct fg_redis *fg_redis_new(struct event_base *base, struct fg_redis_endpoint *ep,
                              const struct fg_redis_opts *opts);

/* Close every connection and free the client. Every command still waiting is answered
 * first (FG_REDIS_LOST), before this returns; subscriptions get no more messages. Must
 * be called on the base's thread, not from inside a callback of this client. NULL: no-op. */
void fg_redis_free(struct fg_redis *r);

/* True when commands can be sent: a ready connection for every slot (cluster), or to the
 * server (standalone). */
bool fg_redis_ready(const struct fg_redis *r);

/* True when the server turned out to be a cluster. */
bool fg_redis_is_cluster(const struct fg_redis *r);

/* One command. argv[0] is the command name; lens may be NULL for NUL-terminated
 * arguments. key (key_len bytes) routes it in cluster mode (its hash tag, if any, decides
 * the slot); NULL for a keyless command (any node). */
struct fg_redis_cmd {
    int argc;
    const char *const *argv;
    const size_t *lens;
    const char *key;
    size_t key_len;
    uint64_t timeout_ms; /* > 0 */
};

/*
 * Send a command, pipelined behind those already waiting on its connection. Returns a
 * handle valid until the callback starts or fg_redis_cancel, or NULL when it cannot be
 * sent now (no ready connection for its slot, max_inflight reached, out of memory): cb
 * is then never called and the caller decides without Redis. Arguments are copied.
 */
struct fg_redis_req *fg_redis_command(struct fg_redis *r, const struct fg_redis_cmd *c,
                                      fg_redis_cb cb, void *arg);

/*
 * Run a script: EVALSHA sha numkeys keys... args..., loaded on the connection first if
 * need be, EVAL after a NOSCRIPT. keys[0] routes it (all keys of one call must share a
 * slot in cluster mode: give them one hash tag). Same return rule as fg_redis_command.
 */
struct fg_redis_req *fg_redis_eval(struct fg_redis *r, const struct fg_redis_script *s, int nkeys,
                                   const char *const *keys, const size_t *key_lens, int nargs,
                                   const char *const *args, const size_t *arg_lens,
                                   uint64_t timeout_ms, fg_redis_cb cb, void *arg);

/* Forget a command: its callback will not run; a late reply is dropped. Call on the
 * client's thread before the callback has started. NULL is a no-op. */
void fg_redis_cancel(struct fg_redis_req *q);

/* ---- pub/sub (pubsub.c) --------------------------------------------------------------- */

struct fg_redis_sub;

/* A message on a subscribed channel (payload valid during the call only). */
typedef void (*fg_redis_msg_cb)(const char *channel, size_t channel_len, const char *payload,
                                size_t payload_len, void *arg);
/* The subscription is in place (true: after every (re)subscription; messages published
 * while it was not may have been missed, so a user that keeps state resynchronises) or
 * lost (false). */
typedef void (*fg_redis_sub_state_cb)(bool subscribed, void *arg);

/*
 * Subscribe to channel on a connection of its own (SUBSCRIBE; SSUBSCRIBE when sharded,
 * on the node that owns the channel's slot in cluster mode), restored after every
 * reconnect or slot move. state may be NULL. Returns NULL when out of memory.
 */
struct fg_redis_sub *fg_redis_subscribe(struct fg_redis *r, const char *channel, size_t channel_len,
                                        bool sharded, fg_redis_msg_cb msg,
                                        fg_redis_sub_state_cb state, void *arg);

/* End a subscription; no callback runs after this. NULL is a no-op. */
void fg_redis_unsubscribe(struct fg_redis_sub *s);

/* ---- counters (stats.c) --------------------------------------------------------------- */

/* Why an AUTH failed. */
enum fg_redis_auth_fail {
    FG_REDIS_AUTH_WRONGPASS = 0,  /* WRONGPASS: wrong password or token, or user disabled */
    FG_REDIS_AUTH_NOAUTH,         /* the server wants a password and none is configured */
    FG_REDIS_AUTH_NOPERM,         /* the user may not run a command the client needs */
    FG_REDIS_AUTH_NO_CREDENTIALS, /* IAM: no AWS credentials or region to sign with yet */
    FG_REDIS_AUTH_OTHER,
    FG_REDIS_AUTH_FAIL_COUNT
};

/* The counters of one endpoint name, summed over every client of the process. */
struct fg_redis_stats {
    uint64_t connects;         /* connections that completed the handshake */
    uint64_t connect_failures; /* DNS, TCP, TLS, AUTH or discovery failed or timed out */
    uint64_t disconnects;      /* ready connections lost or dropped */
    uint64_t tls_handshakes;   /* completed TLS handshakes */
    uint64_t tls_failures;     /* failed TLS handshakes (verification included) */
    uint64_t auth_failures[FG_REDIS_AUTH_FAIL_COUNT];
    uint64_t moved;              /* MOVED redirections followed */
    uint64_t ask;                /* ASK redirections followed */
    uint64_t slot_map_refreshes; /* CLUSTER SHARDS / SLOTS answers taken */
    uint64_t resolutions;        /* DNS lookups made (every connect, and periodic ones) */
    uint64_t resolve_failures;   /* lookups that failed */
    uint64_t address_changes;    /* a lookup moved a live connection to a new address */
    uint64_t readonly;           /* READONLY answers: the node was demoted by a failover */
    uint64_t aged_out;           /* connections replaced at max_connection_age */
    uint64_t token_renewals;     /* IAM tokens minted */
    uint64_t timeouts;           /* commands answered FG_REDIS_TIMEOUT */
    uint64_t noscript;           /* NOSCRIPT answers */
    uint64_t messages;           /* pub/sub messages delivered */
};

/* How many endpoint names have counters, and a snapshot of the i-th (name copied into
 * name). False when i is out of range. */
size_t fg_redis_stats_count(void);
bool fg_redis_stats_get(size_t i, char *name, size_t name_cap, struct fg_redis_stats *out);

/* The "redis":{...} member of /stats (without a trailing comma), and the
 * flashgate_redis_* families of /metrics. */
void fg_redis_stats_json(struct evbuffer *out);
void fg_redis_stats_metrics(struct evbuffer *out);

/* Stat names: "wrongpass", "noauth", "noperm", "no_credentials", "other". */
const char *fg_redis_auth_fail_name(enum fg_redis_auth_fail f);

#endif /* FG_REDIS_H */
