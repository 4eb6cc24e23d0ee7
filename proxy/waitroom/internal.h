/*
 * internal.h — the waitroom module's private pieces: a room's state (room.c) and what
 * the Redis side (redis.c) needs of it.
 */
#ifndef FG_WAITROOM_INTERNAL_H
#define FG_WAITROOM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "core/core.h"
#include "waitroom/waitroom.h"

#define FG_WR_TICK_MS       100  /* the serving number moves this often */
#define FG_WR_LEASE_MS      1000 /* the mover's lease; renewed every tick */
#define FG_WR_FALLBACK_MS   1000 /* no good answer from Redis this long: fallback */
#define FG_WR_WINDOW_TICKS  50   /* the adaptive window: 5 s of ticks */
#define FG_WR_HEALTH_TTL_MS 5000 /* an instance's health entry counts this long */

/* A snapshot of the app's answers for the adaptive window. */
struct fg_wr_health_snap {
    uint64_t bucket[FG_HIST_BUCKETS];
    uint64_t total, errors;
};

struct fg_waitroom {
    char name[FG_WAITROOM_NAME_MAX];
    pthread_mutex_t lock;          /* everything below up to the counters */
    struct fg_waitroom_config cfg; /* cfg.redis referenced */

    /* operator's overrides (admin API), fleet-wide through Redis when there is one */
    bool paused, opened_now;
    int active_override;    /* -1: as configured, 0 off, 1 on */
    uint64_t rate_override; /* admissions per 1000 s; 0: as configured */
    char cmd[16];           /* an admin command for the next Redis step */
    uint64_t cmd_value;

    /* the state: the room's own (local), or the fleet's as the last step read it */
    uint64_t issued, serving, carry, active_sessions;
    int64_t last_step_ms;
    bool open;
    enum fg_waitroom_decision decision;
    uint64_t fleet_p99_us, fleet_err_permille;
    bool mover;
    /* local mode: the early tickets' random draws, then their ranks */
    uint64_t early_base;   /* early tickets are early_base + 1 ... early_base + n_early */
    uint64_t *early_score; /* [n_early] */
    uint64_t *early_rank;  /* made at the opening */
    size_t n_early, cap_early;
    /* local mode: admitted sessions, ticket -> expiry (open addressing, 0: empty) */
    uint64_t *sess_ticket;
    int64_t *sess_expiry;
    size_t sess_cap, sess_n;
    /* Redis: when a step last succeeded; the fallback's own inlet */
    int64_t redis_ok_ms;
    bool fallback;
    uint64_t fb_carry;
    int64_t fb_last_ms;
    uint64_t rng[2];
    /* the admissions measured (ETA without a rate: max_active only) */
    uint64_t admit_rate_milli;
    uint64_t prev_serving;
    int64_t prev_rate_ms;

    /* the room thread's (no lock needed: only it touches them) */
    struct fg_redis *tick_client;
    struct fg_redis_endpoint *tick_ep;
    bool tick_inflight;
    int64_t tick_sent_ms;
    struct fg_wr_health_snap window[FG_WR_WINDOW_TICKS];
    size_t window_pos;
    uint64_t my_p99_us, my_err_permille;

    /* the app behind the room, written by every worker */
    _Atomic uint64_t app_bucket[FG_HIST_BUCKETS];
    _Atomic uint64_t app_total, app_errors;

    /* counters (atomic: every worker writes them) */
    _Atomic uint64_t c_tickets, c_admitted, c_renewed, c_pages, c_json, c_bypass, c_tampered,
        c_fallback_admits, c_fallback_waits, c_redis_errors, c_redis_ops, c_steps,
        c_decisions[FG_WR_DEC__COUNT];

    struct fg_waitroom *next;
};

static inline void fg_wr_count(_Atomic uint64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* room.c, for redis.c: apply a Redis step's answer / a ticket's, under the lock */
void fg_wr_apply_step(struct fg_waitroom *r, const long long *v, size_t n, int64_t now_ms);
void fg_wr_step_failed(struct fg_waitroom *r);
uint64_t fg_wr_rate_milli(const struct fg_waitroom *r); /* under the lock */

/* redis.c */
bool fg_wr_redis_init(void);
/* Send this room's step (on the room thread); false when it could not be sent. */
bool fg_wr_redis_step(struct fg_waitroom *r, struct event_base *base, const char *instance);
void fg_wr_redis_tick_free(struct fg_waitroom *r);
/* Record an admitted session (fire and forget) on the worker's client. */
void fg_wr_redis_session(struct fg_waitroom *r, struct fg_waitroom_worker *w, uint64_t ticket,
                         int64_t expiry_ms);

#endif /* FG_WAITROOM_INTERNAL_H */
