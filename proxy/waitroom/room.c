/*
 * room.c — rooms by name (kept across reloads), what a visitor is told, and the thread
 * that moves the serving numbers.
 *
 * A room's state sits under its own mutex: workers read it for every guarded request
 * (a few comparisons), the room thread writes it every FG_WR_TICK_MS. Without Redis the
 * room is the state (local mode: one instance, tests); with Redis the state is the
 * fleet's as the last step read it, and the worker asks Redis only for a ticket (and an
 * early ticket's rank): polls and admitted requests cost no Redis operation, admissions
 * and renewals one each, sent without waiting.
 */
#include "waitroom/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/rand.h>

#include "redis/redis.h"

static pthread_mutex_t rooms_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fg_waitroom *rooms;
static size_t n_rooms;

static struct {
    pthread_t thread;
    bool running;
    struct event_base *base;
    struct event *timer;
    char instance[40]; /* this process in the lease and the health hash */
} T;

/* ---- small helpers --------------------------------------------------------------------- */

static uint64_t rng_next(uint64_t s[2])
{
    /* xorshift128+: the early arrivals' draws need to be unpredictable to nobody but fair */
    uint64_t a = s[0], b = s[1];
    s[0] = b;
    a ^= a << 23;
    s[1] = a ^ b ^ (a >> 17) ^ (b >> 26);
    return s[1] + b;
}

static bool room_active(const struct fg_waitroom *r)
{
    return r->active_override >= 0 ? r->active_override == 1 : r->cfg.active;
}

uint64_t fg_wr_rate_milli(const struct fg_waitroom *r)
{
    return r->rate_override > 0 ? r->rate_override : r->cfg.inlet.rate_milli;
}

static uint64_t eta_rate(const struct fg_waitroom *r)
{
    uint64_t conf = fg_wr_rate_milli(r);
    uint64_t seen = r->admit_rate_milli;
    if (conf > 0 && (seen == 0 || seen * 2 >= conf))
        return conf;
    return seen > 0 ? seen : conf;
}

/* ---- local sessions (ticket -> expiry) -------------------------------------------------- */

static void sess_insert(struct fg_waitroom *r, uint64_t ticket, int64_t expiry)
{
    size_t mask = r->sess_cap - 1;
    for (size_t i = (size_t)(ticket * 0x9e3779b97f4a7c15ull) & mask;; i = (i + 1) & mask) {
        if (r->sess_ticket[i] == ticket || r->sess_ticket[i] == 0) {
            if (r->sess_ticket[i] == 0)
                r->sess_n++;
            r->sess_ticket[i] = ticket;
            r->sess_expiry[i] = expiry;
            return;
        }
    }
}

/* Rebuild the table at cap slots with the sessions alive at now_ms. */
static bool sess_rebuild(struct fg_waitroom *r, size_t cap, int64_t now_ms)
{
    uint64_t *nt = calloc(cap, sizeof(*nt));
    int64_t *ne = calloc(cap, sizeof(*ne));
    if (nt == NULL || ne == NULL) {
        free(nt);
        free(ne);
        return false;
    }
    uint64_t *old_t = r->sess_ticket;
    int64_t *old_e = r->sess_expiry;
    size_t old_cap = r->sess_cap;
    r->sess_ticket = nt;
    r->sess_expiry = ne;
    r->sess_cap = cap;
    r->sess_n = 0;
    for (size_t i = 0; i < old_cap; i++)
        if (old_t[i] != 0 && old_e[i] > now_ms)
            sess_insert(r, old_t[i], old_e[i]);
    free(old_t);
    free(old_e);
    return true;
}

static void sess_put(struct fg_waitroom *r, uint64_t ticket, int64_t expiry, int64_t now_ms)
{
    if (ticket == 0)
        return;
    if ((r->sess_n + 1) * 2 > r->sess_cap &&
        !sess_rebuild(r, r->sess_cap ? r->sess_cap * 2 : 1024, now_ms))
        return;
    sess_insert(r, ticket, expiry);
}

/* Count the sessions alive; rebuild when most slots hold expired ones. */
static void sess_prune(struct fg_waitroom *r, int64_t now_ms)
{
    uint64_t live = 0;
    for (size_t i = 0; i < r->sess_cap; i++)
        if (r->sess_ticket[i] != 0 && r->sess_expiry[i] > now_ms)
            live++;
    if (r->sess_n > 64 && live * 4 < r->sess_n)
        sess_rebuild(r, r->sess_cap, now_ms);
    r->active_sessions = live;
}

/* ---- early arrivals (local mode) ----------------------------------------------------------- */

static void early_add(struct fg_waitroom *r, uint64_t ticket)
{
    if (r->n_early == 0)
        r->early_base = ticket - 1;
    if (ticket != r->early_base + r->n_early + 1)
        return; /* early tickets are consecutive */
    if (r->n_early == r->cap_early) {
        size_t cap = r->cap_early ? r->cap_early * 2 : 256;
        uint64_t *s = realloc(r->early_score, cap * sizeof(*s));
        if (s == NULL)
            return;
        r->early_score = s;
        r->cap_early = cap;
    }
    r->early_score[r->n_early++] = rng_next(r->rng);
}

static const uint64_t *sort_scores;
static int by_score(const void *a, const void *b)
{
    uint64_t x = sort_scores[*(const uint64_t *)a], y = sort_scores[*(const uint64_t *)b];
    return x < y ? -1 : x > y;
}

/* At the opening: each early ticket's rank in the order of its random draw. */
static void early_rank(struct fg_waitroom *r)
{
    if (r->n_early == 0 || r->early_rank != NULL)
        return;
    uint64_t *idx = malloc(r->n_early * sizeof(*idx));
    uint64_t *rank = malloc(r->n_early * sizeof(*rank));
    if (idx == NULL || rank == NULL) {
        free(idx);
        free(rank);
        return;
    }
    for (size_t i = 0; i < r->n_early; i++)
        idx[i] = i;
    sort_scores = r->early_score; /* under the room's lock, on one thread at a time */
    qsort(idx, r->n_early, sizeof(*idx), by_score);
    for (size_t i = 0; i < r->n_early; i++)
        rank[idx[i]] = r->early_base + i + 1;
    free(idx);
    r->early_rank = rank;
}

static uint64_t early_to_rank(const struct fg_waitroom *r, uint64_t ticket)
{
    if (r->early_rank != NULL && ticket > r->early_base && ticket <= r->early_base + r->n_early)
        return r->early_rank[ticket - r->early_base - 1];
    return ticket;
}

/* ---- a visitor --------------------------------------------------------------------------- */

/* Open by the clock or the admin (local mode; with Redis the step says). */
static bool is_open(const struct fg_waitroom *r, int64_t now_ms)
{
    return r->cfg.opens_at_ms == 0 || now_ms >= r->cfg.opens_at_ms || r->opened_now;
}

static bool fallback_token(struct fg_waitroom *r, int64_t now_ms)
{
    if (r->cfg.fail_closed)
        return false;
    uint64_t rate = fg_wr_rate_milli(r) * r->cfg.fallback_permille / 1000;
    if (rate == 0 && fg_wr_rate_milli(r) == 0)
        return r->cfg.fallback_permille > 0; /* no rate: nothing to share */
    uint64_t ms = now_ms > r->fb_last_ms ? (uint64_t)(now_ms - r->fb_last_ms) : 0;
    if (ms > 1000)
        ms = 1000;
    r->fb_last_ms = now_ms;
    r->fb_carry += ms * rate;
    if (r->fb_carry > 1000000 * 2)
        r->fb_carry = 1000000 * 2;
    if (r->fb_carry < 1000000)
        return false;
    r->fb_carry -= 1000000;
    return true;
}

static void record_session(struct fg_waitroom *r, struct fg_waitroom_worker *w, uint64_t ticket,
                           int64_t expiry)
{
    if (r->cfg.redis == NULL)
        sess_put(r, ticket, expiry, expiry - (int64_t)r->cfg.session_ttl_ms);
    else if (ticket != 0 && !r->fallback && w != NULL)
        fg_wr_redis_session(r, w, ticket, expiry);
}

static enum fg_waitroom_answer admit(struct fg_waitroom *r, struct fg_waitroom_worker *w,
                                     struct fg_waitroom_visit *v, uint64_t ticket)
{
    int64_t now = (int64_t)v->now_ms;
    v->out_session =
        (struct fg_waitroom_token){.kind = FG_WR_ADMITTED, .ticket = ticket, .issued = now / 1000};
    v->set_session = true;
    v->admitted = true;
    v->position = 0;
    v->eta_s = 0;
    record_session(r, w, ticket, now + (int64_t)r->cfg.session_ttl_ms);
    fg_wr_count(&r->c_admitted);
    return FG_WR_PASS;
}

static enum fg_waitroom_answer wait_at(struct fg_waitroom *r, struct fg_waitroom_visit *v,
                                       uint64_t ticket)
{
    v->position = ticket > r->serving ? ticket - r->serving : 1;
    v->eta_s = fg_waitroom_eta_s(v->position, eta_rate(r));
    if (!r->open && r->cfg.opens_at_ms > (int64_t)v->now_ms)
        v->opens_in_s = (uint64_t)(r->cfg.opens_at_ms - (int64_t)v->now_ms + 999) / 1000;
    if (v->fallback)
        fg_wr_count(&r->c_fallback_waits);
    return FG_WR_WAIT;
}

static enum fg_waitroom_answer check_locked(struct fg_waitroom *r, struct fg_waitroom_worker *w,
                                            struct fg_waitroom_visit *v)
{
    int64_t now = (int64_t)v->now_ms;
    if (!room_active(r)) {
        v->admitted = true;
        return FG_WR_PASS;
    }
    int64_t ttl = (int64_t)r->cfg.session_ttl_ms;
    if (v->has_session) {
        int64_t at = v->session.issued * 1000;
        if (at + ttl > now && at <= now + 60000) {
            if (now - at > ttl / 2) { /* renewed while active: sliding expiry */
                v->out_session = v->session;
                v->out_session.issued = now / 1000;
                v->set_session = true;
                record_session(r, w, v->session.ticket, now + ttl);
                fg_wr_count(&r->c_renewed);
            }
            v->admitted = true;
            return FG_WR_PASS;
        }
    }
    bool redis = r->cfg.redis != NULL;
    v->fallback = redis && (r->fallback || v->redis_failed);
    if (v->has_ticket) {
        uint64_t t = v->ticket.ticket;
        if (v->ticket.early && r->open) {
            if (!redis) {
                v->ticket.ticket = t = early_to_rank(r, t);
                v->ticket.early = false;
                v->out_ticket = v->ticket;
                v->set_ticket = true;
            } else if (!v->fallback) {
                return FG_WR_NEED_TICKET; /* its rank is in Redis */
            }
        }
        if (r->open && t <= r->serving && !v->ticket.early)
            return admit(r, w, v, t);
        if (v->fallback && fallback_token(r, now)) {
            fg_wr_count(&r->c_fallback_admits);
            return admit(r, w, v, t);
        }
        return wait_at(r, v, t);
    }
    if (redis && !v->fallback)
        return FG_WR_NEED_TICKET;
    if (v->fallback) {
        if (fallback_token(r, now)) {
            fg_wr_count(&r->c_fallback_admits);
            return admit(r, w, v, 0);
        }
        return wait_at(r, v, r->issued + 1);
    }
    /* local mode: the next ticket */
    uint64_t t = ++r->issued;
    bool early = !is_open(r, now);
    if (early)
        early_add(r, t);
    v->out_ticket = (struct fg_waitroom_token){
        .kind = FG_WR_TICKET, .ticket = t, .issued = now / 1000, .early = early};
    v->set_ticket = true;
    v->ticket = v->out_ticket;
    v->has_ticket = true;
    fg_wr_count(&r->c_tickets);
    return wait_at(r, v, t);
}

enum fg_waitroom_answer fg_waitroom_check(struct fg_waitroom *r, struct fg_waitroom_worker *w,
                                          struct fg_waitroom_visit *v)
{
    pthread_mutex_lock(&r->lock);
    enum fg_waitroom_answer a = check_locked(r, w, v);
    pthread_mutex_unlock(&r->lock);
    return a;
}

/* ---- the app behind the room ----------------------------------------------------------- */

void fg_waitroom_observe(struct fg_waitroom *r, int status, uint64_t us)
{
    size_t b = 0;
    while (b + 1 < FG_HIST_BUCKETS && us > fg_hist_bounds_us[b])
        b++;
    atomic_fetch_add_explicit(&r->app_bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->app_total, 1, memory_order_relaxed);
    if (status >= 500)
        atomic_fetch_add_explicit(&r->app_errors, 1, memory_order_relaxed);
}

void fg_waitroom_count_page(struct fg_waitroom *r, bool json)
{
    fg_wr_count(json ? &r->c_json : &r->c_pages);
}

void fg_waitroom_count_bypass(struct fg_waitroom *r)
{
    fg_wr_count(&r->c_bypass);
}

void fg_waitroom_count_tampered(struct fg_waitroom *r)
{
    fg_wr_count(&r->c_tampered);
}

uint64_t fg_waitroom_poll_ms(const struct fg_waitroom *r)
{
    return r->cfg.poll_ms;
}

uint64_t fg_waitroom_pace_ms(const struct fg_waitroom *r, const struct fg_waitroom_visit *v)
{
    uint64_t pace = r->cfg.poll_ms;
    /* near the front, or near the opening: sooner, so the wait ends when it ends */
    uint64_t soon = v->opens_in_s > 0 ? v->opens_in_s : v->eta_s;
    if (soon < UINT32_MAX && soon * 500 < pace)
        pace = soon * 500;
    return pace < 500 ? 500 : pace;
}

uint64_t fg_waitroom_session_ttl_ms(const struct fg_waitroom *r)
{
    return r->cfg.session_ttl_ms;
}

const char *fg_waitroom_name(const struct fg_waitroom *r)
{
    return r->name;
}

/* ---- the room thread: one step per room every FG_WR_TICK_MS ------------------------------ */

/* This instance's p99 and 5xx share over the last FG_WR_WINDOW_TICKS ticks. */
static void measure(struct fg_waitroom *r)
{
    struct fg_wr_health_snap now;
    for (size_t b = 0; b < FG_HIST_BUCKETS; b++)
        now.bucket[b] = atomic_load_explicit(&r->app_bucket[b], memory_order_relaxed);
    now.total = atomic_load_explicit(&r->app_total, memory_order_relaxed);
    now.errors = atomic_load_explicit(&r->app_errors, memory_order_relaxed);
    const struct fg_wr_health_snap *old = &r->window[r->window_pos];
    uint64_t d[FG_HIST_BUCKETS];
    for (size_t b = 0; b < FG_HIST_BUCKETS; b++)
        d[b] = now.bucket[b] - old->bucket[b];
    uint64_t total = now.total - old->total;
    r->my_p99_us = total > 0 ? fg_hist_quantile(d, 0.99) : 0;
    if (r->my_p99_us == UINT64_MAX)
        r->my_p99_us = 60000000;
    r->my_err_permille = total > 0 ? (now.errors - old->errors) * 1000 / total : 0;
    r->window[r->window_pos] = now;
    r->window_pos = (r->window_pos + 1) % FG_WR_WINDOW_TICKS;
}

static void measure_admissions(struct fg_waitroom *r, int64_t now_ms)
{
    if (r->prev_rate_ms == 0) {
        r->prev_rate_ms = now_ms;
        r->prev_serving = r->serving;
        return;
    }
    int64_t ms = now_ms - r->prev_rate_ms;
    if (ms < 2000)
        return;
    r->admit_rate_milli = (r->serving - r->prev_serving) * 1000000 / (uint64_t)ms;
    r->prev_rate_ms = now_ms;
    r->prev_serving = r->serving;
}

static void step_local(struct fg_waitroom *r, int64_t now_ms)
{
    bool was_open = r->open;
    r->open = is_open(r, now_ms);
    if (r->open && !was_open)
        early_rank(r);
    sess_prune(r, now_ms);
    r->fleet_p99_us = r->my_p99_us;
    r->fleet_err_permille = r->my_err_permille;
    struct fg_waitroom_inlet in = r->cfg.inlet;
    in.rate_milli = fg_wr_rate_milli(r);
    struct fg_waitroom_step s = {
        .issued = r->issued,
        .serving = r->serving,
        .active = r->active_sessions,
        .carry = r->carry,
        .elapsed_ms = r->last_step_ms ? (uint64_t)(now_ms - r->last_step_ms) : 0,
        .p99_us = r->fleet_p99_us,
        .err_permille = r->fleet_err_permille,
        .paused = r->paused,
        .open = r->open,
    };
    fg_waitroom_inlet_step(&in, &s);
    /* The places are taken now, not when their visitors next ask: each admitted ticket
     * holds one until its visitor's session replaces it (the same key) or it expires. */
    for (uint64_t t = r->serving + 1; in.max_active > 0 && t <= s.new_serving; t++)
        sess_put(r, t, now_ms + (int64_t)r->cfg.session_ttl_ms, now_ms);
    if (in.max_active > 0)
        r->active_sessions += s.new_serving - r->serving;
    r->serving = s.new_serving;
    r->carry = s.new_carry;
    r->decision = room_active(r) ? s.decision : FG_WR_DEC_INACTIVE;
    r->last_step_ms = now_ms;
    r->mover = true;
    fg_wr_count(&r->c_decisions[r->decision]);
}

/* A Redis step's answer (redis.c): {issued, serving, active, paused, decision, mover,
 * fleet p99 µs, fleet 5xx permille, open, active override (-1, 0, 1), rate override}. */
void fg_wr_apply_step(struct fg_waitroom *r, const long long *v, size_t n, int64_t now_ms)
{
    if (n < 11)
        return;
    pthread_mutex_lock(&r->lock);
    r->issued = (uint64_t)v[0];
    if ((uint64_t)v[1] > r->serving || (uint64_t)v[1] + 1000000 < r->serving)
        r->serving = (uint64_t)v[1]; /* never backwards, unless the fleet's state was reset */
    r->active_sessions = (uint64_t)v[2];
    r->paused = v[3] != 0;
    r->decision =
        v[4] >= 0 && v[4] < FG_WR_DEC__COUNT ? (enum fg_waitroom_decision)v[4] : FG_WR_DEC_IDLE;
    r->mover = v[5] != 0;
    r->fleet_p99_us = (uint64_t)v[6];
    r->fleet_err_permille = (uint64_t)v[7];
    r->open = v[8] != 0;
    r->active_override = (int)v[9];
    r->rate_override = (uint64_t)v[10];
    r->redis_ok_ms = now_ms;
    r->fallback = false;
    if (!room_active(r))
        r->decision = FG_WR_DEC_INACTIVE;
    if (r->mover)
        fg_wr_count(&r->c_decisions[r->decision]);
    pthread_mutex_unlock(&r->lock);
}

void fg_wr_step_failed(struct fg_waitroom *r)
{
    fg_wr_count(&r->c_redis_errors);
}

static void tick_room(struct fg_waitroom *r, int64_t now_ms)
{
    measure(r);
    pthread_mutex_lock(&r->lock);
    measure_admissions(r, now_ms);
    bool redis = r->cfg.redis != NULL;
    if (!redis) {
        step_local(r, now_ms);
        pthread_mutex_unlock(&r->lock);
        fg_wr_count(&r->c_steps);
        return;
    }
    if (now_ms - r->redis_ok_ms > FG_WR_FALLBACK_MS && !r->fallback) {
        r->fallback = true;
        fg_log(FG_LOG_WARN,
               "waiting_room %s: no answer from Redis for %d ms: deciding locally "
               "(%s, %" PRIu64 "/1000 of the rate)",
               r->name, FG_WR_FALLBACK_MS, r->cfg.fail_closed ? "closed" : "open",
               r->cfg.fallback_permille);
    }
    pthread_mutex_unlock(&r->lock);
    if (!r->tick_inflight) {
        if (fg_wr_redis_step(r, T.base, T.instance))
            fg_wr_count(&r->c_steps);
        else
            fg_wr_step_failed(r);
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    int64_t now = fg_wall_ms();
    pthread_mutex_lock(&rooms_lock);
    for (struct fg_waitroom *r = rooms; r != NULL; r = r->next)
        tick_room(r, now);
    pthread_mutex_unlock(&rooms_lock);
}

static void *room_thread(void *arg)
{
    (void)arg;
    event_base_dispatch(T.base);
    return NULL;
}

bool fg_waitroom_start(void)
{
    if (T.running)
        return true;
    if (!fg_wr_redis_init())
        return false;
    unsigned char id[8];
    if (RAND_bytes(id, sizeof(id)) != 1)
        return false;
    snprintf(T.instance, sizeof(T.instance), "%02x%02x%02x%02x%02x%02x%02x%02x", id[0], id[1],
             id[2], id[3], id[4], id[5], id[6], id[7]);
    T.base = event_base_new();
    if (T.base == NULL)
        return false;
    T.timer = event_new(T.base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, FG_WR_TICK_MS * 1000};
    if (T.timer == NULL || event_add(T.timer, &tv) != 0 ||
        pthread_create(&T.thread, NULL, room_thread, NULL) != 0) {
        if (T.timer)
            event_free(T.timer);
        event_base_free(T.base);
        T.base = NULL;
        return false;
    }
    T.running = true;
    return true;
}

void fg_waitroom_stop(void)
{
    if (T.running) {
        event_base_loopbreak(T.base);
        pthread_join(T.thread, NULL);
        T.running = false;
    }
    pthread_mutex_lock(&rooms_lock);
    while (rooms != NULL) {
        struct fg_waitroom *r = rooms;
        rooms = r->next;
        fg_wr_redis_tick_free(r);
        fg_redis_endpoint_unref(r->cfg.redis);
        free(r->early_score);
        free(r->early_rank);
        free(r->sess_ticket);
        free(r->sess_expiry);
        pthread_mutex_destroy(&r->lock);
        free(r);
    }
    n_rooms = 0;
    pthread_mutex_unlock(&rooms_lock);
    if (T.timer != NULL)
        event_free(T.timer);
    T.timer = NULL;
    if (T.base != NULL)
        event_base_free(T.base);
    T.base = NULL;
}

struct fg_waitroom *fg_waitroom_configure(const struct fg_waitroom_config *c)
{
    pthread_mutex_lock(&rooms_lock);
    struct fg_waitroom *r = rooms;
    while (r != NULL && strcmp(r->name, c->name) != 0)
        r = r->next;
    if (r == NULL) {
        r = calloc(1, sizeof(*r));
        if (r == NULL) {
            pthread_mutex_unlock(&rooms_lock);
            return NULL;
        }
        snprintf(r->name, sizeof(r->name), "%s", c->name);
        pthread_mutex_init(&r->lock, NULL);
        r->active_override = -1;
        r->redis_ok_ms = fg_wall_ms(); /* a second's grace before the fallback */
        if (RAND_bytes((unsigned char *)r->rng, sizeof(r->rng)) != 1)
            r->rng[0] = (uint64_t)fg_mono_us(), r->rng[1] = (uint64_t)(uintptr_t)r | 1;
        r->next = rooms;
        rooms = r;
        n_rooms++;
    }
    pthread_mutex_lock(&r->lock);
    struct fg_redis_endpoint *old = r->cfg.redis;
    r->cfg = *c;
    r->cfg.name = r->name;
    r->cfg.redis = c->redis != NULL ? fg_redis_endpoint_ref(c->redis) : NULL;
    if (r->cfg.redis == NULL && r->last_step_ms == 0)
        r->open = is_open(r, fg_wall_ms()); /* before its first step */
    pthread_mutex_unlock(&r->lock);
    pthread_mutex_unlock(&rooms_lock);
    fg_redis_endpoint_unref(old);
    return r;
}

/* ---- admin ------------------------------------------------------------------------------- */

static bool admin_one(struct fg_waitroom *r, const char *op, uint64_t value)
{
    bool ok = true;
    pthread_mutex_lock(&r->lock);
    if (strcmp(op, "open") == 0)
        r->opened_now = true, r->paused = false;
    else if (strcmp(op, "pause") == 0)
        r->paused = true;
    else if (strcmp(op, "resume") == 0)
        r->paused = false;
    else if (strcmp(op, "activate") == 0)
        r->active_override = 1;
    else if (strcmp(op, "deactivate") == 0)
        r->active_override = 0;
    else if (strcmp(op, "rate") == 0)
        r->rate_override = value;
    else
        ok = false;
    if (ok && r->cfg.redis != NULL) { /* the next step tells the fleet */
        snprintf(r->cmd, sizeof(r->cmd), "%s", op);
        r->cmd_value = value;
    }
    pthread_mutex_unlock(&r->lock);
    return ok;
}

size_t fg_waitroom_admin(const char *room, const char *op, uint64_t value)
{
    size_t n = 0;
    pthread_mutex_lock(&rooms_lock);
    for (struct fg_waitroom *r = rooms; r != NULL; r = r->next)
        if ((room == NULL || strcmp(room, r->name) == 0) && admin_one(r, op, value))
            n++;
    pthread_mutex_unlock(&rooms_lock);
    return n;
}

/* ---- numbers ------------------------------------------------------------------------------- */

static void summary_locked(struct fg_waitroom *r, struct fg_waitroom_summary *o)
{
    memset(o, 0, sizeof(*o));
    snprintf(o->name, sizeof(o->name), "%s", r->name);
    o->issued = r->issued;
    o->serving = r->serving;
    o->waiting = r->issued > r->serving ? r->issued - r->serving : 0;
    o->active = r->active_sessions;
    o->admitted = atomic_load(&r->c_admitted);
    o->rate_milli = fg_wr_rate_milli(r);
    o->eta_s = fg_waitroom_eta_s(o->waiting, eta_rate(r));
    o->redis_ok = r->cfg.redis != NULL && !r->fallback;
    o->fallback = r->cfg.redis != NULL && r->fallback;
    o->paused = r->paused;
    o->active_on = room_active(r);
    o->decision = r->decision;
}

size_t fg_waitroom_count(void)
{
    pthread_mutex_lock(&rooms_lock);
    size_t n = n_rooms;
    pthread_mutex_unlock(&rooms_lock);
    return n;
}

bool fg_waitroom_summary(size_t i, struct fg_waitroom_summary *out)
{
    pthread_mutex_lock(&rooms_lock);
    struct fg_waitroom *r = rooms;
    for (size_t k = 0; r != NULL && k < i; k++)
        r = r->next;
    if (r != NULL) {
        pthread_mutex_lock(&r->lock);
        summary_locked(r, out);
        pthread_mutex_unlock(&r->lock);
    }
    pthread_mutex_unlock(&rooms_lock);
    return r != NULL;
}

#define LD(x) atomic_load_explicit(&r->x, memory_order_relaxed)

void fg_waitroom_stats_json(struct evbuffer *out)
{
    evbuffer_add_printf(out, "\"waiting_rooms\":{");
    pthread_mutex_lock(&rooms_lock);
    for (struct fg_waitroom *r = rooms; r != NULL; r = r->next) {
        struct fg_waitroom_summary s;
        pthread_mutex_lock(&r->lock);
        summary_locked(r, &s);
        uint64_t p99 = r->fleet_p99_us, err = r->fleet_err_permille;
        bool mover = r->mover, open = r->open;
        pthread_mutex_unlock(&r->lock);
        evbuffer_add_printf(
            out,
            "\"%s\":{\"mode\":\"%s\",\"active\":%s,\"open\":%s,\"paused\":%s,\"fallback\":%s,"
            "\"mover\":%s,\"tickets_issued\":%" PRIu64 ",\"serving\":%" PRIu64
            ",\"waiting\":%" PRIu64 ",\"active_sessions\":%" PRIu64 ",\"eta_s\":%" PRIu64
            ",\"rate_per_s\":%.3f,\"decision\":\"%s\",\"app_p99_us\":%" PRIu64
            ",\"app_5xx_permille\":%" PRIu64 ",\"tickets\":%" PRIu64 ",\"admitted\":%" PRIu64
            ",\"renewed\":%" PRIu64 ",\"pages\":%" PRIu64 ",\"status_polls\":%" PRIu64
            ",\"bypassed\":%" PRIu64 ",\"tampered\":%" PRIu64 ",\"fallback_admitted\":%" PRIu64
            ",\"fallback_waiting\":%" PRIu64 ",\"redis_errors\":%" PRIu64 ",\"redis_ops\":%" PRIu64
            ",\"steps\":%" PRIu64 ",\"decisions\":{",
            s.name, r->cfg.redis ? "redis" : "local", s.active_on ? "true" : "false",
            open ? "true" : "false", s.paused ? "true" : "false", s.fallback ? "true" : "false",
            mover ? "true" : "false", s.issued, s.serving, s.waiting, s.active, s.eta_s,
            (double)s.rate_milli / 1000.0, fg_waitroom_decision_name(s.decision), p99, err,
            LD(c_tickets), LD(c_admitted), LD(c_renewed), LD(c_pages), LD(c_json), LD(c_bypass),
            LD(c_tampered), LD(c_fallback_admits), LD(c_fallback_waits), LD(c_redis_errors),
            LD(c_redis_ops), LD(c_steps));
        for (int d = 0; d < FG_WR_DEC__COUNT; d++)
            evbuffer_add_printf(out, "%s\"%s\":%" PRIu64, d ? "," : "",
                                fg_waitroom_decision_name((enum fg_waitroom_decision)d),
                                LD(c_decisions[d]));
        evbuffer_add_printf(out, "}}%s", r->next ? "," : "");
    }
    pthread_mutex_unlock(&rooms_lock);
    evbuffer_add_printf(out, "},");
}

void fg_waitroom_stats_metrics(struct evbuffer *out)
{
    pthread_mutex_lock(&rooms_lock);
    if (rooms != NULL)
        evbuffer_add_printf(
            out, "# HELP flashgate_waitroom_serving The serving number of a waiting room.\n"
                 "# TYPE flashgate_waitroom_serving gauge\n"
                 "# HELP flashgate_waitroom_waiting Visitors waiting in a room.\n"
                 "# TYPE flashgate_waitroom_waiting gauge\n"
                 "# HELP flashgate_waitroom_active_sessions Admitted sessions not expired.\n"
                 "# TYPE flashgate_waitroom_active_sessions gauge\n"
                 "# HELP flashgate_waitroom_eta_seconds Estimated wait at the back of a room.\n"
                 "# TYPE flashgate_waitroom_eta_seconds gauge\n"
                 "# HELP flashgate_waitroom_fallback 1 while a room decides without Redis.\n"
                 "# TYPE flashgate_waitroom_fallback gauge\n"
                 "# HELP flashgate_waitroom_tickets_total Tickets issued by this instance.\n"
                 "# TYPE flashgate_waitroom_tickets_total counter\n"
                 "# HELP flashgate_waitroom_admitted_total Visitors admitted by this instance.\n"
                 "# TYPE flashgate_waitroom_admitted_total counter\n"
                 "# HELP flashgate_waitroom_pages_total Waiting pages and status polls served.\n"
                 "# TYPE flashgate_waitroom_pages_total counter\n"
                 "# HELP flashgate_waitroom_tampered_total Cookies that failed verification.\n"
                 "# TYPE flashgate_waitroom_tampered_total counter\n"
                 "# HELP flashgate_waitroom_fallback_admitted_total Admitted by the fallback.\n"
                 "# TYPE flashgate_waitroom_fallback_admitted_total counter\n"
                 "# HELP flashgate_waitroom_decisions_total Inlet steps by what they decided.\n"
                 "# TYPE flashgate_waitroom_decisions_total counter\n");
    for (struct fg_waitroom *r = rooms; r != NULL; r = r->next) {
        struct fg_waitroom_summary s;
        pthread_mutex_lock(&r->lock);
        summary_locked(r, &s);
        pthread_mutex_unlock(&r->lock);
        const char *n = s.name;
        evbuffer_add_printf(
            out,
            "flashgate_waitroom_serving{room=\"%s\"} %" PRIu64 "\n"
            "flashgate_waitroom_waiting{room=\"%s\"} %" PRIu64 "\n"
            "flashgate_waitroom_active_sessions{room=\"%s\"} %" PRIu64 "\n"
            "flashgate_waitroom_eta_seconds{room=\"%s\"} %" PRIu64 "\n"
            "flashgate_waitroom_fallback{room=\"%s\"} %d\n"
            "flashgate_waitroom_tickets_total{room=\"%s\"} %" PRIu64 "\n"
            "flashgate_waitroom_admitted_total{room=\"%s\"} %" PRIu64 "\n"
            "flashgate_waitroom_pages_total{room=\"%s\",kind=\"page\"} %" PRIu64 "\n"
            "flashgate_waitroom_pages_total{room=\"%s\",kind=\"status\"} %" PRIu64 "\n"
            "flashgate_waitroom_tampered_total{room=\"%s\"} %" PRIu64 "\n"
            "flashgate_waitroom_fallback_admitted_total{room=\"%s\"} %" PRIu64 "\n",
            n, s.serving, n, s.waiting, n, s.active, n, s.eta_s, n, s.fallback ? 1 : 0, n,
            LD(c_tickets), n, LD(c_admitted), n, LD(c_pages), n, LD(c_json), n, LD(c_tampered), n,
            LD(c_fallback_admits));
        for (int d = 0; d < FG_WR_DEC__COUNT; d++)
            evbuffer_add_printf(out,
                                "flashgate_waitroom_decisions_total{room=\"%s\",decision=\"%s\"} "
                                "%" PRIu64 "\n",
                                n, fg_waitroom_decision_name((enum fg_waitroom_decision)d),
                                LD(c_decisions[d]));
    }
    pthread_mutex_unlock(&rooms_lock);
}
