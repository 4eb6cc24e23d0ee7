/*
 * config.h — the operator's interface: flashgate.conf parsed into an immutable,
 * refcounted snapshot (and flashgate-agent.conf, at the end).
 *
 * Syntax (nginx-like): `directive arg...;` and `block [name] { ... }`, `#` comments,
 * arguments are bare words or "double-quoted strings", units as in core.h. Every error
 * is reported as "file:line: message" and loading goes on to find them all; a config
 * with any error is refused whole (the running one stays).
 *
 * A snapshot is shared read-only by all workers. A reload builds a new snapshot and
 * swaps the pointer; requests in flight keep the snapshot they started with (refcount).
 */
#ifndef FG_CONFIG_H
#define FG_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/core.h"

#define FG_CONF_NAME_MAX 64

/* TLS contexts (proxy/tls/tls.h), built at load and owned by the snapshot. */
struct fg_tls_server;
struct fg_tls_client;
struct fg_tls_ticket_keys;
/* A Redis endpoint (proxy/redis/redis.h), built at load and owned by the snapshot. */
struct fg_redis_endpoint;

enum fg_balance { FG_BALANCE_ROUND_ROBIN = 0, FG_BALANCE_LEAST_CONN };

struct fg_conf_upstream_server {
    char host[256];           /* as written, for logs and the Host of health checks */
    struct fg_addr addr;      /* resolved at load */
    unsigned weight;          /* default 1 */
    unsigned max_fails;       /* failures within fail_timeout before it is skipped; default 3 */
    uint64_t fail_timeout_ms; /* window and skip time; default 10s */
    bool ssl;                 /* `ssl`: TLS to this server (the upstream's tls context) */
    char tls_name[256];       /* SNI and the name its certificate must carry: the host
                                 without port, or the upstream's ssl_server_name */
};

struct fg_conf_upstream {
    char name[FG_CONF_NAME_MAX];
    size_t index; /* position in fg_config.upstreams */
    struct fg_conf_upstream_server *servers;
    size_t n_servers;
    enum fg_balance balance;       /* `balance round_robin|least_conn;` */
    unsigned keepalive;            /* idle connections kept per worker; default 64 */
    uint64_t keepalive_timeout_ms; /* idle pooled connection lifetime; default 1s, below
                                      every common app's keep-alive (gunicorn 2 s) */
    unsigned keepalive_requests;   /* requests per upstream connection; default 1000 */
    uint64_t connect_timeout_ms;   /* default 1s */
    uint64_t send_timeout_ms;      /* deadline to write the request head+body; default 30s */
    uint64_t read_timeout_ms;      /* max wait for response head and between body reads;
                                      default 30s */
    bool retry_idempotent;         /* `retry on|off;` default on */
    /* TLS to the servers marked `ssl` (docs/tls.md) */
    bool ssl_verify;           /* `ssl_verify on|off;` default on; off is logged loudly */
    char *ssl_ca_file;         /* CA bundle; NULL: the system store */
    char *ssl_server_name;     /* SNI and checked name for every server; NULL: each host */
    struct fg_tls_client *tls; /* built at load when a server has `ssl`, else NULL */
};

#define FG_CONF_TAG_FIELDS_MAX 4

/* `cache NAME { memory 512m; max_object 8m; }`: a store shared by every worker. A
 * reload keeps the contents of a store whose name stays (only its limits change). */
struct fg_conf_cache {
    char name[FG_CONF_NAME_MAX];
    size_t index;        /* position in fg_config.caches */
    uint64_t memory;     /* bytes of stored objects; default 256m */
    uint64_t max_object; /* larger responses pass through; default 8m */
    /* `tag_field Cache-Tag Surrogate-Key;`: the app's fields that name an answer's tags
     * (lowercased; the default is both), kept with the object for purges by tag. */
    char tag_fields[FG_CONF_TAG_FIELDS_MAX][64];
    size_t n_tag_fields;
    bool tag_strip; /* `tag_strip on|off;` the tag fields never reach clients; default on */
    /* The shared tier in the fleet's Redis (proxy/fleet, needs a fleet block). */
    bool shared;                /* `shared on|off;` default off */
    uint64_t shared_timeout_ms; /* a local miss waits this long for Redis; default 5ms */
    uint64_t shared_max_object; /* larger objects are not written; default 1m */
    size_t line;                /* of the cache block */
};

/* What a rate limit counts requests by; several parts make one key. */
enum fg_conf_limit_key_part {
    FG_LIMIT_KEY_CLIENT_IP = 0, /* the trusted-proxy aware client address */
    FG_LIMIT_KEY_HEADER,        /* a request header's value (an API key) */
    FG_LIMIT_KEY_COOKIE,        /* a cookie's value (a session) */
    FG_LIMIT_KEY_ROUTE,         /* the route itself: one budget for all its clients */
};

#define FG_CONF_LIMIT_KEY_PARTS 4

/* `redis NAME { url rediss://...; password_file ...; auth iam ...; }`: one Redis (or
 * ElastiCache) endpoint that features name. `backend redis URL` in a limit makes an
 * unnamed one the same way. The runtime endpoint is built at load, once the rest of the
 * config is right: the password file read and checked, the TLS context made. */
/* max_connection_age with auth iam when not written: an hour before ElastiCache's cut. */
#define FG_CONF_REDIS_IAM_AGE_MS (11ull * 3600 * 1000)

enum fg_conf_redis_cluster { FG_CONF_CLUSTER_AUTO = 0, FG_CONF_CLUSTER_ON, FG_CONF_CLUSTER_OFF };

struct fg_conf_redis {
    char name[FG_CONF_NAME_MAX];
    char *url;           /* may hold a password: masked in dumps */
    char *password_file; /* NULL: none */
    bool iam;            /* `auth iam user=ID cache=NAME [serverless] [region=R]` */
    char *iam_user, *iam_cache, *iam_region;
    bool iam_serverless;
    char *imds_endpoint;                /* NULL: http://169.254.169.254 */
    char *ssl_ca_file;                  /* NULL: the system store */
    enum fg_conf_redis_cluster cluster; /* default auto */
    uint64_t connect_timeout_ms;        /* default 1s */
    uint64_t resolve_interval_ms;       /* default 5s; 0: on reconnect only */
    uint64_t max_connection_age_ms;     /* 0: never */
    bool max_connection_age_set;        /* written (else: 11h with auth iam, never) */
    size_t line;
    struct fg_redis_endpoint *ep; /* built at load (NULL in a config with errors) */
};

/* `limit NAME { key ...; rate 50r/s; burst 100; backend local|redis NAME|URL; }`. The
 * runtime form (struct fg_ratelimit_limit) is built by the server from these numbers. */
struct fg_conf_limit {
    char name[FG_CONF_NAME_MAX];
    size_t index;
    enum fg_conf_limit_key_part key[FG_CONF_LIMIT_KEY_PARTS];
    char key_name[FG_CONF_LIMIT_KEY_PARTS][64]; /* header or cookie name, lowercased */
    size_t n_key;
    uint64_t requests;                  /* per period */
    uint64_t period_ms;                 /* 1s, 1m or 1h as written */
    uint64_t burst;                     /* default 0 */
    bool redis;                         /* backend redis */
    char *redis_name;                   /* `backend redis NAME`: a redis block */
    struct fg_conf_redis *redis_inline; /* `backend redis URL`: its own endpoint */
    size_t redis_line;                  /* of the backend line */
    struct fg_redis_endpoint *redis_ep; /* the endpoint either way, built at load */
    uint64_t redis_timeout_ms;          /* default 20ms */
    bool fail_closed;                   /* refuse when Redis cannot answer; default open */
    size_t line;
};

/* `waiting_room NAME { ... }`: a fair queue in front of the routes that name it
 * (proxy/waitroom, docs/waitingroom.md). Keys and the page are read at load. */
struct fg_waitroom_keys;
#define FG_CONF_WAITROOM_BYPASS_MAX 8
struct fg_conf_waitroom {
    char name[FG_CONF_NAME_MAX];
    size_t index, line;
    char *key_file;                /* required */
    struct fg_waitroom_keys *keys; /* read at load */
    uint64_t rate_per_ks;          /* `admit 50/s`: admissions per 1000 s; 0: none */
    uint64_t max_active;           /* 0: no cap */
    uint64_t p99_limit_ms;         /* `adaptive p99=800ms errors=5%`; 0: off */
    uint64_t err_limit_permille;   /* 0: off */
    uint64_t session_ttl_ms;       /* default 10m */
    int64_t opens_at_ms;           /* Unix ms; 0: open */
    bool active;                   /* default on */
    char *redis_name;              /* `redis NAME [timeout=]`; NULL: local */
    size_t redis_line;
    struct fg_redis_endpoint *redis_ep; /* built at load */
    uint64_t redis_timeout_ms;          /* default 100ms */
    uint64_t fallback_permille;         /* `fallback 25% open|closed` */
    bool fail_closed;
    uint64_t poll_ms; /* default 5s */
    char *page_file;  /* NULL: the built-in page */
    char *page;       /* its text, read at load */
    size_t page_len;
    char *bypass_prefix[FG_CONF_WAITROOM_BYPASS_MAX];
    size_t n_bypass_prefix;
    char bypass_header[64]; /* lowercased; "" none */
    char *bypass_value;
};

/* A route's compression (`compress br gzip;`). Codings are numbered as in
 * proxy/compress/compress.h (gzip 1, br 2), checked there at compile time. */
#define FG_CONF_ENC_GZIP 1
#define FG_CONF_ENC_BR   2
struct fg_conf_route_compress {
    int order[2]; /* FG_CONF_ENC_*, in the order of preference */
    size_t n;     /* 0: off */
    char **types; /* NULL-terminated media-type patterns; NULL: the built-in list */
    size_t n_types;
    uint64_t min_length; /* default 256 */
    unsigned gzip_level; /* default 5 */
    unsigned br_level;   /* default 4 */
};

/* A route's caching behaviour (only with `cache NAME;`). */
struct fg_conf_route_cache {
    struct fg_conf_cache *cache; /* NULL: the route does not cache */
    uint64_t lock_timeout_ms;    /* a waiter past it fetches on its own; default 5s */
    uint64_t hit_for_miss_ms;    /* uncacheable key: no coalescing this long; default 30s */
    uint64_t swr_ms;             /* stale_while_revalidate unless the response says; 0 */
    uint64_t sie_ms;             /* stale_if_error unless the response says; 0 */
    uint64_t default_ttl_ms;     /* freshness for responses with none; 0 = off */
    char **ignore_params;        /* query parameters left out of the key ("utm_*") */
    size_t n_ignore_params;
    bool sort_params;   /* default off */
    char *targeted;     /* RFC 9213 field that overrides Cache-Control; NULL = off */
    bool status_header; /* X-Cache on responses; default on */
    bool status_field;  /* Cache-Status (RFC 9211) on responses; default on */
};

/* A route's offload block (`offload { agent unix:/path; ... }`): writes are handed to
 * flashgate-agent and answered 202 once durable (proxy/server/offload.c). */
struct fg_conf_route_offload {
    bool enabled;
    char *agent; /* the agent's unix socket path (without "unix:") */
    /* Triggers (`when` lines, any one fires); none set: `when always`. */
    bool triggered;
    bool when_always;    /* `when always` was written (it excludes the others) */
    bool when_inflight;  /* `when inflight N` */
    uint64_t inflight;   /* offload while the route's upstream connections in use on
                            the worker are above this */
    uint64_t latency_us; /* `when latency T`: while the upstream's p95 response time on
                            the worker over the last second is above T; 0: off */
    bool when_failing;   /* `when failing`: while the upstream fails (half of the last
                            second's requests, or every server marked down) */
    bool when_limited;   /* `when limited`: writes over one of the route's limits are
                            queued instead of refused with 429 */
    uint32_t methods;    /* bits (1 << enum fg_http_method) offloaded; default the writes:
                            POST PUT DELETE PATCH and unknown methods */
    bool reject;         /* `fallback reject` (503); default pass (to the app) */
    uint64_t max_body;   /* 413 above it; default 240k */
    char **headers;      /* request fields that travel with the record, lowercased */
    size_t n_headers;
    char *key_header;      /* where the idempotency key comes from, lowercased */
    char *location_prefix; /* Location: <prefix><key> on the 202; NULL: none */
    uint64_t timeout_ms;   /* no answer within it: fallback; default 1s */
};

#define FG_METHOD_ALL 0xffffffffu

struct fg_conf_route {
    size_t id;        /* position among every server's routes (per-route counters) */
    char *prefix;     /* path prefix, matched on the normalised path; "/" matches all */
    char *host;       /* NULL = any host; else exact (case-insensitive) or "*.example.com" */
    uint32_t methods; /* bit (1 << enum fg_http_method); FG_METHOD_ALL by default;
                         `methods GET` sets HEAD too */
    struct fg_conf_upstream *upstream; /* NULL only with `return` */
    int return_status;                 /* `return 503 "text";` answers directly (0 = proxy) */
    char *return_body;
    bool health;       /* `health;` answers 200 "ok" (503 "draining" while draining): the
                          ALB's health check path on the traffic port */
    uint64_t max_body; /* 413 above it; inherits server's client_max_body_size */
    struct fg_conf_route_cache cache;
    struct fg_conf_route_compress compress;
    const struct fg_conf_limit *limits[8]; /* `limit NAME;` lines, checked in order */
    size_t n_limits;
    bool limit_headers; /* RateLimit fields on allowed responses too; default off */
    const struct fg_conf_waitroom *waitroom; /* `waiting_room NAME;` NULL: none */
    struct fg_conf_route_offload offload;
    /* Upgrade tunnels (WebSocket...): `upgrade on|off|protocol ...;` default on, any
     * protocol but h2c; upgrade_protocols (lower case) narrows it when n > 0. */
    bool upgrade;
    char **upgrade_protocols;
    size_t n_upgrade_protocols;
    uint64_t tunnel_timeout_ms; /* an open tunnel with no byte either way closes; 1h */
    size_t line;                /* where it was defined, for messages */
};

struct fg_conf_listen {
    struct fg_addr addr;
    int backlog; /* default 4096 */
    bool ssl;    /* TLS with the server block's certificates */
    size_t line; /* of the listen directive, for messages (a reload that cannot bind it) */
};

/* A `certificate` and the `certificate_key` that follows it. */
struct fg_conf_cert {
    char *cert;      /* PEM: leaf then chain */
    char *key;       /* PEM, unencrypted */
    size_t line;     /* of the certificate directive */
    size_t key_line; /* of its certificate_key */
};

/* A listen address belongs to exactly one server block; name-based routing is done
 * with the `host` of each route. */
struct fg_conf_server {
    struct fg_conf_listen *listens;
    size_t n_listens;

    /* Downstream keep-alive and deadlines (see docs/keepalive.md). */
    uint64_t keepalive_timeout_ms; /* idle keep-alive connection; default 75s (> ALB 60s) */
    unsigned keepalive_requests;   /* requests per client connection; default 10000 */
    uint64_t header_timeout_ms;    /* deadline for a whole request head from its first
                                      byte; default 10s */
    uint64_t body_timeout_ms;      /* deadline for a whole request body; default 60s */
    uint64_t body_min_rate;        /* bytes/s a body must keep up after the first 5s;
                                      default 1024; 0 = off */
    uint64_t send_timeout_ms;      /* client must accept response bytes within; 60s */
    size_t max_request_line;       /* default 8192 */
    size_t max_header_bytes;       /* default 32768 */
    size_t max_headers;            /* default 100 */
    uint64_t client_max_body_size; /* default 1m */

    struct fg_cidr *trusted_proxies; /* hops from these are skipped in X-Forwarded-For */
    size_t n_trusted_proxies;
    bool add_request_id; /* `request_id on|off;` default on */
    bool server_timing;  /* `server_timing on|off;` Server-Timing on answers; default off */

    char *access_log;         /* NULL = off; an absolute path, or the string "stderr" */
    size_t access_log_line;   /* 0 when not written */
    double access_log_sample; /* 0..1, default 1 */
    uint64_t slow_request_ms; /* always logged above it; default 1s */

    struct fg_conf_route *routes; /* in file order; first match wins */
    size_t n_routes;

    /* TLS for its `listen ... ssl` addresses (docs/tls.md). */
    struct fg_conf_cert *certs; /* the first is served without (or for an unknown) SNI */
    size_t n_certs, n_cert_keys;
    int ssl_min_version;             /* TLS1_2_VERSION (0x0303) or TLS1_3_VERSION (0x0304) */
    char *ssl_ciphers;               /* TLS 1.2 list; NULL: ECDHE with AEAD only */
    uint64_t ssl_session_cache;      /* sessions kept for resumption by id; default 20480 */
    uint64_t ssl_session_timeout_ms; /* default 1h */
    bool ssl_session_tickets;        /* default on */
    struct fg_tls_server *tls;       /* built at load when a listen has `ssl`, else NULL */
};

struct fg_conf_admin {
    bool enabled;        /* default on */
    struct fg_addr addr; /* default 127.0.0.1:9901 */
    char *token;         /* optional bearer token; masked in dumps */
    bool agent_status;   /* `agent_status ADDRESS`: merge flashgate-agent's numbers */
    struct fg_addr agent_status_addr;
    size_t line; /* of the admin listen (else of `admin`); 0: not written, the default */
    /* The dashboard (GET /) and its event stream (/stats/stream), proxy/admin/ */
    bool dashboard;          /* `dashboard on|off;` default on */
    unsigned stream_viewers; /* concurrent /stats/stream viewers; default 100 */
    uint64_t stream_buffer;  /* bytes a viewer may leave unread before it is dropped; 256k */
};

/* `emf { target ...; }`: CloudWatch Embedded Metric Format records every interval, to a
 * file the CloudWatch agent ships or to the agent's EMF listener (proxy/admin/emf.c). */
enum fg_conf_emf_kind { FG_CONF_EMF_FILE = 0, FG_CONF_EMF_TCP, FG_CONF_EMF_UDP };
#define FG_CONF_EMF_DIMENSIONS 8
struct fg_conf_emf {
    bool enabled;
    enum fg_conf_emf_kind kind;
    char *target;        /* as written: file:/path, tcp://host:port or udp://host:port */
    char *path;          /* FILE: an absolute path */
    struct fg_addr addr; /* TCP, UDP */
    uint64_t interval_ms;
    char *ns;        /* `namespace`; NULL: "flashgate" */
    char *log_group; /* `log_group`, the agent listener's _aws.LogGroupName; NULL: "flashgate" */
    /* `dimension NAME VALUE;` lines: fixed dimensions (the Auto Scaling group's name) that
     * make a dimension set of their own, for fleet-wide metrics */
    struct fg_conf_emf_dimension {
        char *name, *value;
    } dims[FG_CONF_EMF_DIMENSIONS];
    size_t n_dims;
    bool instance_dimension; /* the Instance dimension set; default on (off: the fixed
                                dimensions' set only, fewer custom metrics to pay for) */
    bool route_dimension;    /* records per route (dimension Route) too; default on */
    size_t line;             /* of the emf block */
};

/* `fleet { redis NAME; channel NAME; }`: what the instances of an Auto Scaling group do
 * together through the Redis they share (proxy/fleet): purges and tags that reach every
 * instance. */
enum fg_conf_fleet_sharded { FG_CONF_SHARDED_AUTO = 0, FG_CONF_SHARDED_ON, FG_CONF_SHARDED_OFF };

struct fg_conf_fleet {
    bool enabled;
    char *redis_name;                   /* a redis block */
    size_t redis_line;                  /* of the redis line */
    struct fg_redis_endpoint *ep;       /* that block's endpoint, linked at load */
    char *channel;                      /* default "flashgate": keys fg:fleet:{channel}:... */
    enum fg_conf_fleet_sharded sharded; /* SPUBLISH/SSUBSCRIBE: auto = on a cluster */
    uint64_t purge_log;                 /* purges kept in Redis for instances that were cut
                                           off; default 10000; 0: a reconnect drops all */
    uint64_t hot_keys;                  /* the fleet's record of its hottest pages (a sorted set,
                                           halved every minute): its size; default 1000; 0: none */
    uint64_t warm_start;                /* pages a starting instance fetches from that record
                                           before /healthz says ready; default 0: none */
    uint64_t warm_timeout_ms;           /* ready after this at the latest; default 30s */
    uint64_t warm_concurrency;          /* warm-up requests at once; default 8 */
    size_t line;                        /* of the fleet block */
};

struct fg_config {
    atomic_uint refs;
    char *path;          /* the file it came from */
    uint64_t generation; /* set by the loader's caller: 1, 2, ... */

    unsigned workers; /* 0 = `auto` (number of CPUs) */
    char *user;       /* drop privileges to this user after binding (root only) */
    char *pid_file;
    char *error_log;                   /* NULL = stderr */
    enum fg_log_level error_log_level; /* default notice */
    /* Where these were written (0: not written), for messages about them at start, in
     * `flashgate -t` and on reload. */
    size_t workers_line, user_line, pid_file_line, error_log_line, limit_table_entries_line;

    uint64_t shutdown_delay_ms; /* SIGTERM: keep serving this long with /healthz 503 so the
                                   ALB marks us unhealthy; default 0 in code, the shipped
                                   config sets the ALB's own figure */
    uint64_t drain_timeout_ms;  /* then at most this long for in-flight work; default 30s */
    uint64_t ssl_ticket_key_rotation_ms; /* session ticket keys are replaced this often;
                                            default 1h (main.c rotates) */
    uint64_t max_tunnels; /* open upgrade tunnels per worker; more get 503; default 10000 */

    struct fg_conf_admin admin;
    struct fg_conf_emf emf;
    struct fg_conf_fleet fleet;
    char *instance_id; /* `instance_id NAME;` NULL: auto (IMDS's instance id, else the host name) */

    struct fg_conf_upstream *upstreams;
    size_t n_upstreams;
    struct fg_conf_cache *caches;
    size_t n_caches;
    struct fg_conf_limit *limits;
    size_t n_limits;
    uint64_t limit_table_entries; /* keys the local rate-limit table holds; default 262144 */
    struct fg_conf_redis *redis;  /* `redis NAME { ... }` blocks */
    size_t n_redis;
    struct fg_conf_waitroom *waitrooms; /* `waiting_room NAME { ... }` blocks */
    size_t n_waitrooms;
    char *resolvers[4]; /* `resolver ADDRESS ...`: DNS servers for run-time lookups (Redis
                           endpoint names); none: /etc/resolv.conf */
    size_t n_resolvers;
    struct fg_conf_server *servers;
    size_t n_servers;
    size_t n_all_routes; /* every server's routes: route ids are 0..n_all_routes-1 */
};

/* Collected error messages, each "file:line: message" (no trailing newline). */
struct fg_config_errors {
    char **msgs;
    size_t n;
};

/* Load and validate a file. Returns NULL (and fills errs) if it has any error. The
 * result has refcount 1. Addresses are resolved here (blocking DNS at load only).
 * errs (may be NULL) is reset on entry and must be freed with fg_config_errors_free()
 * whatever the result. Messages are sorted by line; a file that cannot be read gives
 * one message without a line: "path: cannot open: No such file or directory". */
struct fg_config *fg_config_load(const char *path, struct fg_config_errors *errs);
/* The same from a string (tests); name is used in messages. */
struct fg_config *fg_config_load_string(const char *name, const char *text,
                                        struct fg_config_errors *errs);

void fg_config_errors_free(struct fg_config_errors *errs);
/* Append a message (printf format) to errs, for checks made outside the loader (what
 * start and `flashgate -t` check: users, log files, ports). NULL errs is ignored. */
void fg_config_error_add(struct fg_config_errors *errs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The session ticket key ring that TLS listeners of configs loaded from now on encrypt
 * tickets with (NULL, the default: no tickets, session ids only, as for `flashgate -t`).
 * The caller keeps it and rotates it; every config's contexts hold their own reference,
 * so one ring serves every generation and a reload keeps clients' tickets valid. */
void fg_config_set_ticket_keys(struct fg_tls_ticket_keys *keys);

struct fg_config *fg_config_ref(struct fg_config *c);
void fg_config_unref(struct fg_config *c);

/* Find the route for a request: server index, normalised path, method, Host. NULL if
 * no route matches (404). Prefixes match whole segments ("/api" takes "/api", "/api/x",
 * "/api?q", not "/apix"); Host is compared without case, port or trailing dot (NULL
 * host: only routes without `host`); a method outside 0..31 matches only routes
 * without `methods`. */
const struct fg_conf_route *fg_config_match_route(const struct fg_conf_server *srv,
                                                  const char *path, size_t path_len, int method,
                                                  const char *host, size_t host_len);

/* Reload: the directives that only take effect at a restart (workers, user, pid_file,
 * limit_table_entries, the admin listener's on/off and address) are set in next to their
 * running values from cur, so that the reloaded configuration (and /config) says what
 * runs. Each one the new file changes adds a warning to warns, "file:line: message" (the
 * caller logs them; free with fg_config_errors_free). Returns how many. */
size_t fg_config_keep_restart_only(struct fg_config *next, const struct fg_config *cur,
                                   struct fg_config_errors *warns);

/* Write the effective config (defaults filled in, secrets masked) in config syntax. */
void fg_config_dump(const struct fg_config *c, FILE *out);

/* ---- flashgate-agent.conf ------------------------------------------------------------- */

/* flashgate-agent's configuration (flashgate-agent(8)): the same syntax and the same
 * error messages as flashgate.conf, its own directive table (config/agent.c). A
 * directive given twice takes the last value (agent configs are often a base file with
 * overrides appended). Loaded once at start; the agent has no reload. */

enum fg_conf_agent_mode { FG_CONF_AGENT_FORWARD = 0, FG_CONF_AGENT_DRAIN };
enum fg_conf_agent_sink { FG_CONF_AGENT_SINK_LOCAL = 0, FG_CONF_AGENT_SINK_SQS };

struct fg_conf_agent {
    char *path; /* the file it was loaded from */
    enum fg_conf_agent_mode mode;
    enum fg_conf_agent_sink sink;
    char *listen_path; /* the unix socket the proxy connects to */
    char *spool_dir;
    uint64_t spool_max_bytes;    /* framed bytes of unacknowledged records; 0: no bound */
    uint64_t spool_max_age_ms;   /* 0: no bound */
    uint64_t spool_segment_size; /* bytes */
    uint64_t max_record;         /* largest RECORD frame taken */
    uint64_t commit_batch;       /* commit once this many records wait */
    uint64_t commit_delay_us;    /* or once the first of them waited this long */
    uint64_t dedup_window;       /* idempotency keys remembered */
    uint64_t dedup_window_bytes; /* and at most this much of their text */
    struct fg_addr app;          /* sink local and drain: where records are replayed */
    uint64_t replay_rate;        /* records per second; 0: no bound */
    uint64_t replay_concurrency; /* requests in flight to the app */
    uint64_t replay_timeout_ms;
    uint64_t replay_backoff_ms;     /* first retry delay */
    uint64_t replay_backoff_max_ms; /* retry delay cap */
    uint64_t checkpoint_ms;
    /* sink sqs and drain mode */
    char *sqs_queue_url;
    char *sqs_endpoint;       /* NULL: https://sqs.<region>.amazonaws.com */
    char *sqs_region;         /* NULL: from the queue URL's host, else from IMDS */
    char *sqs_message_group;  /* FIFO: a fixed MessageGroupId */
    char *sqs_group_header;   /* FIFO: take MessageGroupId from this forwarded header */
    char *sqs_ca_file;        /* CA bundle for https; NULL: the system store */
    bool sqs_fifo;            /* the queue name ends in .fifo */
    uint64_t sqs_concurrency; /* batches (forward) or receives (drain) in flight */
    uint64_t sqs_batch_max;   /* entries per SendMessageBatch, 1..10 */
    uint64_t sqs_batch_bytes; /* encoded entry bytes per SendMessageBatch */
    uint64_t sqs_timeout_ms;  /* one SQS request, connect to last byte */
    uint64_t sqs_backoff_ms;  /* first retry delay */
    uint64_t sqs_backoff_max_ms;
    char *imds_endpoint;
    uint64_t imds_timeout_ms;
    uint64_t visibility_timeout_s; /* drain: asked in ReceiveMessage, extended at half */
    uint64_t receive_wait_s;       /* drain: ReceiveMessage's WaitTimeSeconds */
    bool status_enabled;
    struct fg_addr status_addr;
    char *error_log; /* NULL: stderr */
    enum fg_log_level log_level;
    /* Lines of the directives naming paths, for the agent's own checks of them (0: the
     * default) */
    size_t listen_line, spool_dir_line, error_log_line;
};

/* Load and validate flashgate-agent.conf, as fg_config_load does flashgate.conf: NULL
 * (and errs filled, "file:line: message" sorted by line) if it has any error. */
struct fg_conf_agent *fg_config_load_agent(const char *path, struct fg_config_errors *errs);
/* The same from a string (tests); name is used in messages. */
struct fg_conf_agent *fg_config_load_agent_string(const char *name, const char *text,
                                                  struct fg_config_errors *errs);
/* NULL is a no-op. */
void fg_config_agent_free(struct fg_conf_agent *c);

#endif /* FG_CONFIG_H */
