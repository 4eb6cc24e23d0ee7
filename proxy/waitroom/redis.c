/*
 * redis.c — the fleet's room in Redis, through proxy/redis (TLS, ACL or IAM, cluster
 * mode: all there). Two scripts, each one atomic step run with EVALSHA:
 *
 *  - the ticket: HINCRBY of the room's counter; before the opening the ticket also gets
 *    a random draw in a sorted set, and after it an early ticket's rank in that set is
 *    its place (the first second's arrivals do not win by network latency).
 *  - the step, run by every instance every FG_WR_TICK_MS from the room thread: it records
 *    this instance's app health, applies an admin command, takes or renews the mover's
 *    lease (SET NX PX), drops expired sessions, and — for the lease holder only — moves
 *    the serving number as inlet.c does, on Redis's clock. Every instance reads the
 *    state back from it.
 *
 * Admitted sessions are a sorted set (score: expiry), written with ZADD without waiting.
 * Every key of a room carries the hash tag {fg:wr:NAME}: one slot in cluster mode.
 */
#include "waitroom/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "redis/redis.h"

/* KEYS: state hash, early draws. ARGV: 'new' | 'rank', opens_at ms (0: open), the draw,
 * the ticket (rank). Returns {ticket, early}. */
static const char ticket_src[] =
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local opens = tonumber(ARGV[2])\n"
    "local open = opens == 0 or now >= opens or redis.call('HGET', KEYS[1], 'opened') == '1'\n"
    "if ARGV[1] == 'rank' then\n"
    "  if not open then return {tonumber(ARGV[4]), 1} end\n"
    "  local r = redis.call('ZRANK', KEYS[2], ARGV[4])\n"
    "  if not r then return {tonumber(ARGV[4]), 0} end\n"
    "  local base = tonumber(redis.call('HGET', KEYS[1], 'early_base')) or 0\n"
    "  return {base + r + 1, 0}\n"
    "end\n"
    "local n = redis.call('HINCRBY', KEYS[1], 'issued', 1)\n"
    "if not open then\n"
    "  if redis.call('ZCARD', KEYS[2]) == 0 then\n"
    "    redis.call('HSET', KEYS[1], 'early_base', n - 1)\n"
    "  end\n"
    "  redis.call('ZADD', KEYS[2], ARGV[3], n)\n"
    "  return {n, 1}\n"
    "end\n"
    "return {n, 0}\n";

/* KEYS: state hash, sessions, health hash, lease. ARGV: instance, lease ms, rate (per
 * 1000 s), max_active, p99 limit µs, 5xx limit permille, this instance's p99 µs and 5xx
 * permille, health ttl ms, opens_at ms, admin command, its value, session ttl ms. The
 * decision codes are enum fg_waitroom_decision's. */
static const char step_src[] =
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local inst = ARGV[1]\n"
    "local function f(x) return string.format('%.0f', x) end\n"
    "redis.call('HSET', KEYS[3], inst, ARGV[7] .. ':' .. ARGV[8] .. ':' .. f(now))\n"
    "local cmd = ARGV[11]\n"
    "if cmd == 'open' then redis.call('HSET', KEYS[1], 'opened', '1') "
    "redis.call('HSET', KEYS[1], 'paused', '0')\n"
    "elseif cmd == 'pause' then redis.call('HSET', KEYS[1], 'paused', '1')\n"
    "elseif cmd == 'resume' then redis.call('HSET', KEYS[1], 'paused', '0')\n"
    "elseif cmd == 'activate' then redis.call('HSET', KEYS[1], 'active', '1')\n"
    "elseif cmd == 'deactivate' then redis.call('HSET', KEYS[1], 'active', '0')\n"
    "elseif cmd == 'rate' then redis.call('HSET', KEYS[1], 'rate', ARGV[12]) end\n"
    "local mover = 0\n"
    "local holder = redis.call('GET', KEYS[4])\n"
    "if not holder then redis.call('SET', KEYS[4], inst, 'PX', ARGV[2]) mover = 1\n"
    "elseif holder == inst then redis.call('PEXPIRE', KEYS[4], ARGV[2]) mover = 1 end\n"
    "local s = redis.call('HMGET', KEYS[1], 'issued', 'serving', 'carry', 'last', 'paused',\n"
    "  'opened', 'active', 'rate', 'decision', 'p99', 'err')\n"
    "local issued = tonumber(s[1]) or 0\n"
    "local serving = tonumber(s[2]) or 0\n"
    "local carry = tonumber(s[3]) or 0\n"
    "local last = tonumber(s[4]) or now\n"
    "local paused = s[5] == '1'\n"
    "local active = -1\n"
    "if s[7] == '1' then active = 1 elseif s[7] == '0' then active = 0 end\n"
    "local rate_o = tonumber(s[8]) or 0\n"
    "local decision = tonumber(s[9]) or 1\n"
    "local p99 = tonumber(s[10]) or 0\n"
    "local err = tonumber(s[11]) or 0\n"
    "local opens = tonumber(ARGV[10])\n"
    "local open = opens == 0 or now >= opens or s[6] == '1'\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', f(now))\n"
    "local nact = redis.call('ZCARD', KEYS[2])\n"
    "if mover == 1 then\n"
    "  p99, err = 0, 0\n"
    "  local h = redis.call('HGETALL', KEYS[3])\n"
    "  for i = 1, #h, 2 do\n"
    "    local a, b, ts = string.match(h[i + 1], '^(%d+):(%d+):(%d+)$')\n"
    "    if ts and now - tonumber(ts) <= tonumber(ARGV[9]) then\n"
    "      if tonumber(a) > p99 then p99 = tonumber(a) end\n"
    "      if tonumber(b) > err then err = tonumber(b) end\n"
    "    else redis.call('HDEL', KEYS[3], h[i]) end\n"
    "  end\n"
    "  local rate = rate_o > 0 and rate_o or tonumber(ARGV[3])\n"
    "  local max_active = tonumber(ARGV[4])\n"
    "  local p99_lim, err_lim = tonumber(ARGV[5]), tonumber(ARGV[6])\n"
    "  local function over(v, lim, pct) return lim > 0 and v * 100 > lim * pct end\n"
    "  if carry > 1000000 then carry = 1000000 end\n"
    "  local waiting = issued - serving\n"
    "  if not open then decision = 6 carry = 0\n"
    "  elseif paused then decision = 5 carry = 0\n"
    "  elseif over(p99, p99_lim, 100) or over(err, err_lim, 100) then decision = 4 carry = 0\n"
    "  elseif waiting <= 0 then decision = 1 carry = 0\n"
    "  else\n"
    "    local slow = over(p99, p99_lim, 80) or over(err, err_lim, 80)\n"
    "    local n = waiting\n"
    "    if rate > 0 then\n"
    "      local ms = math.min(math.max(now - last, 0), 1000)\n"
    "      local r = rate\n"
    "      if slow then r = math.floor(rate / 2) end\n"
    "      local budget = carry + ms * r\n"
    "      n = math.floor(budget / 1000000)\n"
    "      carry = budget - n * 1000000\n"
    "      if n > waiting then n = waiting carry = 0 end\n"
    "    end\n"
    "    decision = 0\n"
    "    if slow then decision = 3 end\n"
    "    if max_active > 0 then\n"
    "      local room = math.max(max_active - nact, 0)\n"
    "      if n >= room then\n"
    "        if n > room or room == 0 then decision = 2 end\n"
    "        n = room carry = 0\n"
    "      end\n"
    "    end\n"
    "    -- the places are taken now, not when their visitors next ask: each admitted\n"
    "    -- ticket holds one until its visitor's session (same member) replaces it\n"
    "    local ttl = tonumber(ARGV[13])\n"
    "    local i = serving + 1\n"
    "    while max_active > 0 and i <= serving + n do\n"
    "      local batch = {}\n"
    "      local last = math.min(i + 499, serving + n)\n"
    "      for t = i, last do\n"
    "        batch[#batch + 1] = f(now + ttl)\n"
    "        batch[#batch + 1] = f(t)\n"
    "      end\n"
    "      redis.call('ZADD', KEYS[2], unpack(batch))\n"
    "      i = last + 1\n"
    "    end\n"
    "    nact = nact + (max_active > 0 and n or 0)\n"
    "    serving = serving + n\n"
    "  end\n"
    "  redis.call('HSET', KEYS[1], 'serving', f(serving))\n"
    "  redis.call('HSET', KEYS[1], 'carry', f(carry))\n"
    "  redis.call('HSET', KEYS[1], 'last', f(now))\n"
    "  redis.call('HSET', KEYS[1], 'decision', decision)\n"
    "  redis.call('HSET', KEYS[1], 'p99', f(p99))\n"
    "  redis.call('HSET', KEYS[1], 'err', f(err))\n"
    "end\n"
    "if not open and decision ~= 6 and mover == 0 then decision = 6 end\n"
    "return {issued, serving, nact, paused and 1 or 0, decision, mover, p99, err,\n"
    "  open and 1 or 0, active, rate_o}\n";

static struct fg_redis_script ticket_script, step_script;

bool fg_wr_redis_init(void)
{
    return fg_redis_script_init(&ticket_script, ticket_src) &&
           fg_redis_script_init(&step_script, step_src);
}

/* "fg:wr:{NAME}:what" */
static size_t room_key(const struct fg_waitroom *r, const char *what, char *out, size_t cap)
{
    int n = snprintf(out, cap, "fg:wr:{%s}:%s", r->name, what);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static bool reply_ints(const redisReply *reply, long long *v, size_t n)
{
    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements < n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (reply->element[i]->type != REDIS_REPLY_INTEGER)
            return false;
        v[i] = reply->element[i]->integer;
    }
    return true;
}

/* ---- the step, on the room thread ------------------------------------------------------ */

static void on_step(enum fg_redis_status st, const struct redisReply *reply, void *arg)
{
    struct fg_waitroom *r = arg;
    r->tick_inflight = false;
    long long v[11];
    if (st == FG_REDIS_REPLY && reply_ints(reply, v, 11)) {
        fg_wr_apply_step(r, v, 11, fg_wall_ms());
        return;
    }
    if (st == FG_REDIS_REPLY && reply->type == REDIS_REPLY_ERROR)
        fg_log(FG_LOG_WARN, "waiting_room %s: Redis step failed: %.200s", r->name, reply->str);
    fg_wr_step_failed(r);
}

void fg_wr_redis_tick_free(struct fg_waitroom *r)
{
    fg_redis_free(r->tick_client); /* a step in flight is answered LOST inside */
    r->tick_client = NULL;
    fg_redis_endpoint_unref(r->tick_ep);
    r->tick_ep = NULL;
}

bool fg_wr_redis_step(struct fg_waitroom *r, struct event_base *base, const char *instance)
{
    pthread_mutex_lock(&r->lock);
    struct fg_redis_endpoint *ep = r->cfg.redis ? fg_redis_endpoint_ref(r->cfg.redis) : NULL;
    struct fg_waitroom_inlet in = r->cfg.inlet;
    int64_t opens = r->cfg.opens_at_ms;
    uint64_t timeout = r->cfg.redis_timeout_ms ? r->cfg.redis_timeout_ms : 100;
    char cmd[16];
    snprintf(cmd, sizeof(cmd), "%s", r->cmd);
    uint64_t cmd_value = r->cmd_value;
    uint64_t ttl = r->cfg.session_ttl_ms;
    r->cmd[0] = '\0';
    pthread_mutex_unlock(&r->lock);
    if (ep != r->tick_ep) { /* first step, or a reload named another Redis */
        fg_wr_redis_tick_free(r);
        r->tick_ep = ep;
        r->tick_client = ep ? fg_redis_new(base, ep, NULL) : NULL;
    } else {
        fg_redis_endpoint_unref(ep);
    }
    if (r->tick_client == NULL)
        return false;
    char k_state[128], k_sess[128], k_health[128], k_lease[128];
    size_t kl[4] = {room_key(r, "state", k_state, sizeof(k_state)),
                    room_key(r, "sessions", k_sess, sizeof(k_sess)),
                    room_key(r, "health", k_health, sizeof(k_health)),
                    room_key(r, "lease", k_lease, sizeof(k_lease))};
    const char *keys[4] = {k_state, k_sess, k_health, k_lease};
    char a[13][32];
    snprintf(a[0], sizeof(a[0]), "%d", FG_WR_LEASE_MS);
    snprintf(a[1], sizeof(a[1]), "%" PRIu64, in.rate_milli);
    snprintf(a[2], sizeof(a[2]), "%" PRIu64, in.max_active);
    snprintf(a[3], sizeof(a[3]), "%" PRIu64, in.p99_limit_us);
    snprintf(a[4], sizeof(a[4]), "%" PRIu64, in.err_limit_permille);
    snprintf(a[5], sizeof(a[5]), "%" PRIu64, r->my_p99_us);
    snprintf(a[6], sizeof(a[6]), "%" PRIu64, r->my_err_permille);
    snprintf(a[7], sizeof(a[7]), "%d", FG_WR_HEALTH_TTL_MS);
    snprintf(a[8], sizeof(a[8]), "%" PRId64, opens);
    snprintf(a[9], sizeof(a[9]), "%" PRIu64, cmd_value);
    snprintf(a[10], sizeof(a[10]), "%" PRIu64, ttl);
    const char *args[13] = {instance, a[0], a[1], a[2], a[3], a[4], a[5],
                            a[6],     a[7], a[8], cmd,  a[9], a[10]};
    struct fg_redis_req *q = fg_redis_eval(r->tick_client, &step_script, 4, keys, kl, 13, args,
                                           NULL, timeout, on_step, r);
    if (q == NULL) {
        if (cmd[0] != '\0') { /* not sent: keep the admin's command for the next step */
            pthread_mutex_lock(&r->lock);
            if (r->cmd[0] == '\0')
                snprintf(r->cmd, sizeof(r->cmd), "%s", cmd);
            pthread_mutex_unlock(&r->lock);
        }
        return false;
    }
    r->tick_inflight = true;
    atomic_fetch_add_explicit(&r->c_redis_ops, 1, memory_order_relaxed);
    return true;
}

/* ---- the workers' side ------------------------------------------------------------------- */

#define WORKER_ROOMS 16
#define RETIRED_MAX  64

struct wr_client {
    struct fg_waitroom *room;
    struct fg_redis_endpoint *ep;
    struct fg_redis *redis;
};

struct fg_waitroom_worker {
    struct event_base *base;
    struct wr_client c[WORKER_ROOMS];
    size_t n;
    struct fg_redis *retired[RETIRED_MAX]; /* clients of endpoints a reload replaced */
    size_t n_retired;
};

struct fg_waitroom_worker *fg_waitroom_worker_new(struct event_base *base)
{
    struct fg_waitroom_worker *w = calloc(1, sizeof(*w));
    if (w != NULL)
        w->base = base;
    return w;
}

void fg_waitroom_worker_free(struct fg_waitroom_worker *w)
{
    if (w == NULL)
        return;
    for (size_t i = 0; i < w->n; i++) {
        fg_redis_free(w->c[i].redis);
        fg_redis_endpoint_unref(w->c[i].ep);
    }
    for (size_t i = 0; i < w->n_retired; i++)
        fg_redis_free(w->retired[i]);
    free(w);
}

/* This worker's client for r's Redis (made on first use, remade when a reload changed
 * the endpoint). */
static struct fg_redis *client_of(struct fg_waitroom_worker *w, struct fg_waitroom *r)
{
    pthread_mutex_lock(&r->lock);
    struct fg_redis_endpoint *ep = r->cfg.redis;
    pthread_mutex_unlock(&r->lock);
    if (ep == NULL || w == NULL)
        return NULL;
    struct wr_client *c = NULL;
    for (size_t i = 0; i < w->n && c == NULL; i++)
        if (w->c[i].room == r)
            c = &w->c[i];
    if (c == NULL) {
        if (w->n == WORKER_ROOMS)
            return NULL;
        c = &w->c[w->n++];
        c->room = r;
    }
    if (c->ep != ep) {
        if (c->redis != NULL) {
            if (w->n_retired < RETIRED_MAX)
                w->retired[w->n_retired++] = c->redis; /* freed with the worker: a
                                                          callback may be running */
            else
                fg_redis_free(c->redis);
        }
        fg_redis_endpoint_unref(c->ep);
        c->ep = fg_redis_endpoint_ref(ep);
        c->redis = fg_redis_new(w->base, ep, NULL);
    }
    return c->redis;
}

void fg_waitroom_worker_prepare(struct fg_waitroom_worker *w, struct fg_waitroom *r)
{
    (void)client_of(w, r);
}

struct fg_waitroom_pending {
    struct fg_waitroom *r;
    struct fg_redis_req *req;
    struct fg_waitroom_visit *v;
    fg_waitroom_cb cb;
    void *arg;
    bool rank;
};

static void on_ticket(enum fg_redis_status st, const struct redisReply *reply, void *arg)
{
    struct fg_waitroom_pending *p = arg;
    struct fg_waitroom_visit *v = p->v;
    long long x[2];
    if (st == FG_REDIS_REPLY && reply_ints(reply, x, 2) && x[0] > 0) {
        v->ticket = (struct fg_waitroom_token){.kind = FG_WR_TICKET,
                                               .ticket = (uint64_t)x[0],
                                               .issued = (int64_t)(v->now_ms / 1000),
                                               .early = x[1] != 0};
        v->has_ticket = true;
        v->out_ticket = v->ticket;
        v->set_ticket = true;
        if (!p->rank)
            fg_wr_count(&p->r->c_tickets);
    } else {
        if (st == FG_REDIS_REPLY && reply->type == REDIS_REPLY_ERROR)
            fg_log(FG_LOG_WARN, "waiting_room %s: ticket: %.200s", p->r->name, reply->str);
        fg_wr_count(&p->r->c_redis_errors);
        v->redis_failed = true;
    }
    fg_waitroom_cb cb = p->cb;
    void *cb_arg = p->arg;
    free(p);
    cb(cb_arg);
}

bool fg_waitroom_take_ticket(struct fg_waitroom *r, struct fg_waitroom_worker *w,
                             struct fg_waitroom_visit *v, fg_waitroom_cb cb, void *arg,
                             struct fg_waitroom_pending **pending)
{
    *pending = NULL;
    struct fg_redis *redis = client_of(w, r);
    struct fg_waitroom_pending *p = redis ? calloc(1, sizeof(*p)) : NULL;
    if (p == NULL) {
        v->redis_failed = true;
        return false;
    }
    p->r = r;
    p->v = v;
    p->cb = cb;
    p->arg = arg;
    p->rank = v->has_ticket && v->ticket.early;
    pthread_mutex_lock(&r->lock);
    int64_t opens = r->cfg.opens_at_ms;
    uint64_t timeout = r->cfg.redis_timeout_ms ? r->cfg.redis_timeout_ms : 100;
    uint64_t draw = (r->rng[0] = r->rng[0] * 6364136223846793005ull + r->rng[1]) >> 12;
    pthread_mutex_unlock(&r->lock);
    char k_state[128], k_early[128];
    size_t kl[2] = {room_key(r, "state", k_state, sizeof(k_state)),
                    room_key(r, "early", k_early, sizeof(k_early))};
    const char *keys[2] = {k_state, k_early};
    char a_opens[24], a_draw[24], a_ticket[24];
    snprintf(a_opens, sizeof(a_opens), "%" PRId64, opens);
    snprintf(a_draw, sizeof(a_draw), "%" PRIu64, draw); /* < 2^52: exact as a score */
    snprintf(a_ticket, sizeof(a_ticket), "%" PRIu64, v->has_ticket ? v->ticket.ticket : 0);
    const char *args[4] = {p->rank ? "rank" : "new", a_opens, a_draw, a_ticket};
    p->req =
        fg_redis_eval(redis, &ticket_script, 2, keys, kl, 4, args, NULL, timeout, on_ticket, p);
    if (p->req == NULL) {
        free(p);
        v->redis_failed = true;
        fg_wr_count(&r->c_redis_errors);
        return false;
    }
    atomic_fetch_add_explicit(&r->c_redis_ops, 1, memory_order_relaxed);
    *pending = p;
    return true;
}

void fg_waitroom_cancel(struct fg_waitroom_pending *p)
{
    if (p == NULL)
        return;
    fg_redis_cancel(p->req);
    free(p);
}

static void on_session(enum fg_redis_status st, const struct redisReply *reply, void *arg)
{
    struct fg_waitroom *r = arg;
    if (st != FG_REDIS_REPLY || reply->type == REDIS_REPLY_ERROR)
        fg_wr_count(&r->c_redis_errors);
}

void fg_wr_redis_session(struct fg_waitroom *r, struct fg_waitroom_worker *w, uint64_t ticket,
                         int64_t expiry_ms)
{
    /* called under r->lock: client_of takes it too, so read what it needs here */
    struct fg_redis *redis = NULL;
    for (size_t i = 0; w != NULL && i < w->n; i++)
        if (w->c[i].room == r && w->c[i].ep == r->cfg.redis)
            redis = w->c[i].redis;
    if (redis == NULL)
        return; /* no client yet on this worker: counted at the next admission instead */
    char k_sess[128], score[24], member[24];
    size_t kl = room_key(r, "sessions", k_sess, sizeof(k_sess));
    snprintf(score, sizeof(score), "%" PRId64, expiry_ms);
    snprintf(member, sizeof(member), "%" PRIu64, ticket);
    const char *argv[4] = {"ZADD", k_sess, score, member};
    struct fg_redis_cmd c = {.argc = 4,
                             .argv = argv,
                             .key = k_sess,
                             .key_len = kl,
                             .timeout_ms = r->cfg.redis_timeout_ms ? r->cfg.redis_timeout_ms : 100};
    if (fg_redis_command(redis, &c, on_session, r) != NULL)
        atomic_fetch_add_explicit(&r->c_redis_ops, 1, memory_order_relaxed);
    else
        fg_wr_count(&r->c_redis_errors);
}
