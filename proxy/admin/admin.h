/*
 * admin.h — the admin listener (loopback by default): /healthz for the ALB's view of this
 * instance, /stats (JSON), /metrics (Prometheus), /config (effective, secrets masked),
 * POST /cache/purge?url=URL[&prefix=1], POST /cache/warm (a list of URLs). It runs on
 * its own thread with its own event_base, so a slow scraper never touches a worker.
 */
#ifndef FG_ADMIN_H
#define FG_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include <event2/buffer.h>

#include "config/config.h"

/* What the admin endpoint asks of the daemon; every callback runs on the admin thread. */
struct fg_admin_ops {
    bool (*draining)(void);
    void (*stats_json)(struct evbuffer *out);
    void (*metrics)(struct evbuffer *out); /* Prometheus text format */
    /* The current config (a reference the admin thread releases), for tokens. */
    struct fg_config *(*config)(void);
    /* Remove cached objects whose key ("host/path?query") is key, or starts with it;
     * returns how many. */
    size_t (*cache_purge)(const char *key, size_t len, bool prefix);
    /* The address of the traffic listener cache warm-ups are sent to (loopback when it
     * listens on any address); false when there is none. */
    bool (*warm_target)(struct fg_addr *out);
};

/* Progress of the cache warm-ups (POST /cache/warm), for /stats. */
struct fg_admin_warm_progress {
    uint64_t jobs, queued, in_flight, done, failed;
};
void fg_admin_warm_progress(struct fg_admin_warm_progress *out);

/* warm.c, on the admin thread: queue the URLs of body (one http:// URL per line, '#'
 * comments) and fetch them through target, concurrency at a time. false when a line is
 * not a URL (*bad_line says which, the whole list is refused) or the queue is full. */
bool fg_admin_warm_add(struct event_base *base, const struct fg_addr *target, const char *body,
                       size_t len, unsigned concurrency, size_t *accepted, size_t *bad_line);

/* agentstat.c, on the admin thread: poll flashgate-agent's status listener (admin
 * agent_status) every second; write its last numbers as the "agent" member of /stats
 * ("agent":null when not configured) and as lines of /metrics. The writers are for the
 * stats_json and metrics callbacks (they run on the admin thread too). */
bool fg_admin_agentstat_start(struct event_base *base, const struct fg_admin_ops *ops);
void fg_admin_agentstat_stop(void);
void fg_admin_agentstat_json(struct evbuffer *out);
void fg_admin_agentstat_metrics(struct evbuffer *out);

/* Bind the admin address and start its thread. false (logged) if it cannot bind. */
bool fg_admin_start(const struct fg_addr *addr, const struct fg_admin_ops *ops);
void fg_admin_stop(void);

#endif /* FG_ADMIN_H */
