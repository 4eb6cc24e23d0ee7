/*
 * agentd.h — the flashgate-agent daemon's own pieces (not used by the proxy): its
 * configuration file, the event loop that takes records from the proxy and makes them
 * durable, and the `local` sink that replays them to the app.
 */
#ifndef FG_AGENTD_H
#define FG_AGENTD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "agent/agent.h"
#include "core/core.h"

#define FG_AGENTD_DEFAULT_CONF   FG_SYSCONFDIR "/flashgate/flashgate-agent.conf"
#define FG_AGENTD_DEFAULT_LISTEN "/run/flashgate/agent.sock"
#define FG_AGENTD_DEFAULT_SPOOL  "/var/lib/flashgate/spool"

/* ---- configuration (conf.c) ------------------------------------------------------------ */

struct fg_agentd_config {
    char *listen_path; /* the unix socket the proxy connects to */
    char *spool_dir;
    uint64_t spool_max_bytes;    /* framed bytes of unacknowledged records; 0: no bound */
    uint64_t spool_max_age_ms;   /* 0: no bound */
    uint64_t spool_segment_size; /* 0: the spool's default */
    uint64_t max_record;         /* largest RECORD frame taken */
    uint64_t commit_batch;       /* commit once this many records wait */
    uint64_t commit_delay_us;    /* or once the first of them waited this long */
    uint64_t dedup_window;       /* idempotency keys remembered */
    struct fg_addr app;          /* sink local: where records are replayed */
    uint64_t replay_rate;        /* records per second; 0: no bound */
    uint64_t replay_concurrency; /* requests in flight to the app */
    uint64_t replay_timeout_ms;
    uint64_t replay_backoff_ms;     /* first retry delay */
    uint64_t replay_backoff_max_ms; /* retry delay cap */
    uint64_t checkpoint_ms;
    bool status_enabled;
    struct fg_addr status_addr;
    char *error_log; /* NULL: stderr */
    enum fg_log_level log_level;
};

/* Load path into a new config (defaults for what it does not set). NULL on failure, with
 * every "file:line: message" printed to errout. */
struct fg_agentd_config *fg_agentd_config_load(const char *path, FILE *errout);
void fg_agentd_config_free(struct fg_agentd_config *cfg);

/* ---- counters shared by the loop and the sink ----------------------------------------- */

struct fg_agentd_stats {
    uint64_t connections, protocol_errors;
    uint64_t received, durable, duplicates, refused_full, refused_too_big, errors;
    uint64_t replayed_ok, replayed_rejected, replayed_failed, replay_retries;
    uint64_t checkpoints, checkpoint_failed;
};

/* ---- the local sink (sink.c) ------------------------------------------------------------ */

struct fg_sink;

/* A sink replaying sp's committed records to cfg->app; counters go to st. */
struct fg_sink *fg_sink_new(struct event_base *base, struct fg_spool *sp,
                            const struct fg_agentd_config *cfg, struct fg_agentd_stats *st);
/* New records were committed: send what the rate and concurrency allow. */
void fg_sink_kick(struct fg_sink *s);
/* Records read but not yet acknowledged, and requests in flight (for /status). */
size_t fg_sink_window(const struct fg_sink *s);
size_t fg_sink_in_flight(const struct fg_sink *s);
/* Close the app connections (requests in flight are abandoned and replayed after the
 * next start) and free the sink. NULL is a no-op. */
void fg_sink_free(struct fg_sink *s);

/* ---- the daemon (agentd.c) ------------------------------------------------------------- */

/* Open the spool, bind the socket and the status listener, and run until SIGTERM or
 * SIGINT. Returns the exit status. */
int fg_agentd_run(const struct fg_agentd_config *cfg, const char *conf_path);

#endif /* FG_AGENTD_H */
