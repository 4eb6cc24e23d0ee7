/*
 * agentd.h — the flashgate-agent daemon's own pieces (not used by the proxy): the event
 * loop that takes records from the proxy and makes them durable, the `local` sink that
 * replays them to the app, the `sqs` sink that sends them to an SQS queue and drain mode
 * (the queue replayed to the app). They stand on proxy/config (flashgate-agent.conf),
 * proxy/aws (SigV4, credentials), proxy/httpc (the HTTP/1.1 client) and proxy/json.
 */
#ifndef FG_AGENTD_H
#define FG_AGENTD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>

#include "agent/agent.h"
#include "aws/aws.h"
#include "config/config.h"
#include "core/core.h"
#include "http/http.h"
#include "httpc/httpc.h"
#include "json/json.h"

#define FG_AGENTD_DEFAULT_CONF FG_SYSCONFDIR "/flashgate/flashgate-agent.conf"

/* SendMessageBatch's limits */
#define FG_SQS_BATCH_MAX       10           /* entries */
#define FG_SQS_BATCH_BYTES     (256u << 10) /* payload (default queues) */
#define FG_SQS_BATCH_BYTES_MAX (1u << 20)   /* queues raised to 1 MiB messages */

/* ---- counters shared by the loop and the sink ----------------------------------------- */

struct fg_agentd_stats {
    uint64_t connections, protocol_errors;
    uint64_t received, durable, duplicates, refused_full, refused_too_big, errors;
    uint64_t replayed_ok, replayed_rejected, replayed_failed, replay_retries;
    uint64_t checkpoints, checkpoint_failed;
    /* sink sqs: entries sent (acknowledged by SQS), dropped as permanent failures,
     * sent again; throttled answers; SendMessageBatch requests, and those that failed as
     * a whole (connection, timeout, 5xx, throttling, refusal) */
    uint64_t sqs_sent, sqs_failed, sqs_retries, sqs_throttled, sqs_batches, sqs_batch_errors;
    /* drain: messages received, replayed (2xx), rejected by the app (permanent 4xx,
     * deleted), failed (left for redelivery), deleted, visibility extensions, and failed
     * ReceiveMessage/DeleteMessageBatch/ChangeMessageVisibility requests */
    uint64_t drain_received, drain_ok, drain_rejected, drain_failed, drain_deleted;
    uint64_t drain_extended, drain_sqs_errors;
};

/* ---- replaying a record to the app (replay.c, shared by sink.c and drain.c) ---------------- */

enum fg_replay_verdict {
    FG_REPLAY_OK = 0,   /* 2xx: done */
    FG_REPLAY_REJECTED, /* a permanent 4xx (not 408, 429): done, logged and counted */
    FG_REPLAY_RETRY     /* 5xx, 408, 429: send again later */
};

/* What an app's status code means for the record. */
enum fg_replay_verdict fg_replay_verdict(int status);
/* Append r as an HTTP/1.1 request: its method, target and headers (without Host,
 * Content-Length, Idempotency-Key and hop-by-hop fields), Host (the record's, else
 * default_host), Idempotency-Key (the record's key) and Content-Length, then the body. */
void fg_replay_write_request(struct evbuffer *out, const struct fg_agent_record *r,
                             const char *default_host);

/* A token bucket of per_s requests per second (0: no bound), bursts of per_s / 10. */
struct fg_rate {
    uint64_t per_s;
    double tokens, burst;
    uint64_t last_us;
};
void fg_rate_init(struct fg_rate *r, uint64_t per_s, uint64_t now_us);
/* Take one token: 0 when taken, else the milliseconds until one is there. */
uint64_t fg_rate_take(struct fg_rate *r, uint64_t now_us);

/* ---- the window of spooled records (replay.c, shared by sink.c and sqs.c) ------------------ */

enum fg_window_state { FG_WINDOW_WAIT = 0, FG_WINDOW_SENDING, FG_WINDOW_DONE };

/* The head of a window entry: the owner's entry type starts with one. */
struct fg_window_entry {
    uint64_t seq;
    size_t bytes; /* what the owner holds for it, counted against max_bytes */
    enum fg_window_state state;
    unsigned attempts;
    uint64_t not_before_ms;
};

/* How the owner fills and empties its entries. */
struct fg_window_ops {
    /* Fill e (seq set, state WAIT, the rest zero) from rec, whose data lives until the next
     * read. It may set state DONE (a record it cannot use: logged and counted by it).
     * False when out of memory, with nothing kept in e. */
    bool (*load)(void *arg, struct fg_window_entry *e, const struct fg_spool_record *rec);
    /* Free what load kept in e. */
    void (*clear)(void *arg, struct fg_window_entry *e);
};

struct fg_window;

/* A ring of at most cap entries of entry_size bytes (a struct starting with struct
 * fg_window_entry) read from sp's committed records in order, holding at most max_bytes
 * (0: no bound; always at least one entry). name is for log lines. NULL when out of
 * memory. */
struct fg_window *fg_window_new(struct fg_spool *sp, size_t cap, size_t entry_size,
                                size_t max_bytes, const struct fg_window_ops *ops, void *arg,
                                const char *name);
/* Acknowledge the spool up to the last entry of the finished (DONE) prefix and drop that
 * prefix, then read committed records until the window is full. Returns when to try
 * again (monotonic ms) after a read error or running out of memory, else UINT64_MAX.
 * Running out of memory mid-read closes the iterator; a new one is opened only once the
 * window is empty (everything before is acknowledged then), so no record is skipped and
 * none is read twice. */
uint64_t fg_window_fill(struct fg_window *w, uint64_t now_ms);
/* Entries held, and entry i (0: the oldest). */
size_t fg_window_count(const struct fg_window *w);
void *fg_window_at(const struct fg_window *w, size_t i);
/* Clear every entry and free the window. NULL is a no-op. */
void fg_window_free(struct fg_window *w);

/* ---- the SQS protocol pieces (sqs.c, tested on their own) ---------------------------------- */

/* True if s[0..len) is valid UTF-8 made only of the characters an SQS message body or
 * attribute may hold (#x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF). */
bool fg_sqs_text_ok(const void *s, size_t len);

/* How records become SendMessageBatch entries. */
struct fg_sqs_entry_opts {
    bool fifo;
    const char *group;        /* FIFO: MessageGroupId (NULL: "flashgate") */
    const char *group_header; /* FIFO: take it from this header when the record has it */
};

/* Append the JSON of one entry for r without its opening brace and Id: from
 * "MessageBody" to the closing brace. The body goes as it is when fg_sqs_text_ok (and not
 * empty), else base64 with the attribute fg-body-encoding "base64" ("empty" for an empty
 * body, with MessageBody "-": SQS refuses empty bodies). Attributes: fg-method, fg-path
 * (the target), fg-idempotency-key, fg-content-type (when the record has one that is
 * valid SQS text), fg-headers (every forwarded header as a JSON array of [name, value]
 * pairs, when there are any). FIFO adds MessageGroupId and MessageDeduplicationId (the
 * key, or its SHA-256 in hex when longer than SQS's 128 characters). False when out of
 * memory. */
bool fg_sqs_encode_entry(struct evbuffer *out, const struct fg_agent_record *r,
                         const struct fg_sqs_entry_opts *o);
/* The bytes an entry of tail_len encoded bytes takes in a batch as entry number i
 * ("{\"Id\":\"<i>\"," plus the tail, plus the separating comma). */
size_t fg_sqs_entry_size(size_t tail_len, size_t i);
/* How many of the entries sizes[0..n) (tail lengths, in order) go in the next batch: at
 * most max_entries, and at most max_bytes of entries counted with fg_sqs_entry_size, but
 * always at least one (an entry too big for any batch is sent alone: SQS decides). */
size_t fg_sqs_batch_plan(const size_t *sizes, size_t n, size_t max_entries, size_t max_bytes);

enum fg_sqs_outcome {
    FG_SQS_MISSING = 0,  /* in neither list: retried */
    FG_SQS_SENT,         /* in Successful */
    FG_SQS_SENDER_FAULT, /* in Failed with SenderFault true: permanent */
    FG_SQS_RETRYABLE     /* in Failed, not the sender's fault: retried */
};

struct fg_sqs_batch_result {
    enum fg_sqs_outcome outcome[FG_SQS_BATCH_MAX]; /* by entry Id ("0".."9") */
    char code[FG_SQS_BATCH_MAX][64];               /* Failed[].Code */
    size_t n_sent, n_failed;
};

/* Parse a 200 SendMessageBatch answer for a batch of n entries with Ids "0".."n-1". False
 * with a message in err when it is not the expected JSON (the whole batch is retried). */
bool fg_sqs_parse_batch_response(const char *body, size_t len, size_t n,
                                 struct fg_sqs_batch_result *out, char *err, size_t errlen);

enum fg_sqs_verdict {
    FG_SQS_OK = 0,      /* 2xx: look at the entries */
    FG_SQS_THROTTLED,   /* 429; 400 or 403 with a throttling code (ThrottlingException,
                           KmsThrottled, RequestThrottled): back off */
    FG_SQS_BAD_CONTENT, /* 400 caused by the entries (too long, invalid contents): split
                           the batch; a batch of one is a permanent failure */
    FG_SQS_FAILED       /* anything else (5xx, auth, missing queue): back off and retry */
};

/* Classify an SQS answer; *code (if not NULL) points at the error code (the JSON
 * __type's part after '#', or x-amzn-query-error's before ';'), "" when none. */
enum fg_sqs_verdict fg_sqs_classify(const struct fg_httpc_result *res, char *code, size_t codelen);

/* Sign and write an SQS JSON-protocol request (POST / with X-Amz-Target: AmazonSQS.<target>)
 * for the JSON body[0..len) into out. False with a message in err (signing failed). */
bool fg_sqs_write_request(struct evbuffer *out, const struct fg_url *endpoint, const char *target,
                          const void *body, size_t len, const struct fg_sigv4_credentials *creds,
                          const char *region, struct fg_sigv4_key *key, int64_t now_s, char *err,
                          size_t errlen);

/* ---- the sinks (sink.c, sqs.c, drain.c) ---------------------------------------------- */

/* What the loop hands committed records to: the local replay (sink.c), the SQS sender
 * (sqs.c), or, in drain mode, the SQS queue replayed to the app (drain.c). The loop
 * knows them only through this table. */

/* What a sink is made with. */
struct fg_agentd_sink_env {
    struct event_base *base;
    struct evdns_base *dns; /* NULL unless the sink needs_aws */
    struct fg_spool *sp;    /* the committed records; NULL in drain mode */
    const struct fg_conf_agent *cfg;
    struct fg_agentd_stats *st; /* the counters the sink writes */
    struct fg_creds *creds;     /* NULL unless the sink needs_aws */
};

/* A sink's gauges for /status and /metrics: each fills its own and leaves the rest 0. */
struct fg_agentd_sink_gauges {
    size_t replay_window, replay_in_flight;                  /* local: records read, requests */
    size_t sqs_window, sqs_in_flight, sqs_entries_in_flight; /* sqs: records, batches, entries */
    size_t drain_held, drain_in_flight;                      /* drain: messages received, replays */
};

struct fg_agentd_sink_ops {
    const char *name; /* "local", "sqs", "drain": in /status and the log */
    bool needs_aws;   /* credentials, a region and a DNS resolver are set up first */
    /* A sink for env; NULL with a message in err when the configuration cannot work. */
    void *(*create)(const struct fg_agentd_sink_env *env, char *err, size_t errlen);
    /* Records were committed, credentials arrived, or a timer of the loop fired: send what
     * can be sent. */
    void (*kick)(void *sink);
    void (*gauges)(const void *sink, struct fg_agentd_sink_gauges *g);
    /* Abandon what is in flight (sent again after the next start) and free. */
    void (*destroy)(void *sink);
};

extern const struct fg_agentd_sink_ops fg_sink_local_ops; /* sink.c */
extern const struct fg_agentd_sink_ops fg_sink_sqs_ops;   /* sqs.c */
extern const struct fg_agentd_sink_ops fg_sink_drain_ops; /* drain.c */

/* ---- the recent-key window (keywin.c) -------------------------------------------------- */

/* The idempotency keys of the last records taken and their sequence numbers, in memory
 * fixed at creation (fg_keywin_memory): at most max_keys keys and max_bytes of key text;
 * a new key forgets the oldest ones until it fits. Entry ids are 1-based, 0 is none. */
struct fg_keywin;

/* NULL when out of memory or max_keys is 0 or max_bytes below FG_AGENT_PROTO_KEY_MAX. */
struct fg_keywin *fg_keywin_new(uint32_t max_keys, size_t max_bytes);
void fg_keywin_free(struct fg_keywin *w);
/* The entry of key k[0..len) (its sequence in *seq if not NULL), 0 if not remembered. */
uint32_t fg_keywin_find(const struct fg_keywin *w, const char *k, size_t len, uint64_t *seq);
/* Remember k for seq, forgetting the oldest keys as needed; its entry id, or 0 for a key
 * the protocol does not allow (empty, over 255 bytes). */
uint32_t fg_keywin_add(struct fg_keywin *w, const char *k, size_t len, uint64_t seq);
/* Forget entry id if it still holds seq (its record's commit failed). */
void fg_keywin_forget(struct fg_keywin *w, uint32_t id, uint64_t seq);
/* Keys remembered. */
size_t fg_keywin_count(const struct fg_keywin *w);
/* The bytes a window of this size allocates. */
size_t fg_keywin_memory(uint32_t max_keys, size_t max_bytes);

/* ---- paths (paths.c) -------------------------------------------------------------------- */

/* The spool directory and the socket's directory (forward mode) and the error log's
 * directory: make the missing ones, parents included, mode 0750 (create), or only check
 * that they exist or could be made and are writable, and that the socket path is free
 * for a socket (-t). Every problem goes to errs as "file:line: message" (free with
 * fg_config_errors_free); true when there is none. */
bool fg_agentd_paths(const struct fg_conf_agent *cfg, bool create, struct fg_config_errors *errs);

/* ---- the daemon (agentd.c) ------------------------------------------------------------- */

/* Open the spool, bind the socket and the status listener, and run until SIGTERM or
 * SIGINT. Returns the exit status. */
int fg_agentd_run(const struct fg_conf_agent *cfg, const char *conf_path);

#endif /* FG_AGENTD_H */
