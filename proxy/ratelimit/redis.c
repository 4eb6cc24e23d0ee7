/*
 * redis.c — fleet-wide limits: the GCRA as one Lua script on Redis, run through the
 * worker's proxy/redis client (TLS, ACL or IAM auth, cluster mode, failover: all there).
 *
 * A decision is one EVALSHA with the limit's timeout. Whatever Redis does — an error, no
 * answer in time, a lost connection, no connection at all, too many decisions in flight
 * — the local table answers instead (source FALLBACK), so a decision never waits longer
 * than its timeout and fails open (or closed, the request path's choice).
 *
 * Keys are prefix + limit name + ':' + key; one key per script call, so cluster mode
 * needs no hash tag: each key lives in its own slot.
 */
#include "ratelimit/internal.h"
#include "ratelimit/ratelimit.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#define CLIENT_MAGIC  0x726c7263u /* "rlrc" */
#define PENDING_MAGIC 0x726c7064u /* "rlpd" */

/* The GCRA of gcra.c on the Redis server, on the server's clock (TIME), so that every
 * flashgate of the fleet decides on one timeline whatever their clocks say. Lua numbers
 * are doubles: exact for integers below 2^53, which FG_RATELIMIT_CAPACITY_MAX guarantees;
 * divmod() corrects the one-off a rounded division can give. Values are written with
 * string.format('%.0f'), because Redis would turn a bare Lua number into "%.17g" text.
 * The stored value is "us:frac"; PX makes the key vanish when its TAT is reached, which
 * is exactly when it would mean "fresh" anyway.
 *
 * One difference from gcra.c: time is read inside the script, so a TAT beyond the
 * capacity cannot come from a racing reader here, only from a limit lowered by a reload
 * or from Redis's wall clock stepping back. The clamped TAT is then stored, so that such
 * a key recovers within (burst + 1) * T instead of waiting out the step.
 *
 * KEYS[1] = key; ARGV = requests, period in µs, burst, cost.
 * Returns {allowed, remaining, retry_after_ms, reset_ms}. */
const char fg_ratelimit_redis_script[] =
    "local n = tonumber(ARGV[1])\n"
    "local period = tonumber(ARGV[2])\n"
    "local burst = tonumber(ARGV[3])\n"
    "local cost = tonumber(ARGV[4])\n"
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local capacity = (burst + 1) * period\n"
    "local function divmod(a, b)\n"
    "  local q = math.floor(a / b)\n"
    "  local r = a - q * b\n"
    "  if r < 0 then q = q - 1; r = r + b elseif r >= b then q = q + 1; r = r - b end\n"
    "  return q, r\n"
    "end\n"
    "local function ceildiv(a, b)\n"
    "  local q, r = divmod(a, b)\n"
    "  if r > 0 then q = q + 1 end\n"
    "  return q\n"
    "end\n"
    "local function store(ticks)\n"
    "  local whole, rest = divmod(ticks, n)\n"
    "  redis.call('SET', KEYS[1], string.format('%.0f:%.0f', now + whole, rest), 'PX',\n"
    "             string.format('%.0f', ceildiv(ticks, n * 1000)))\n"
    "end\n"
    "local ahead, clamped = 0, false\n"
    "local v = redis.call('GET', KEYS[1])\n"
    "if v then\n"
    "  local us, frac = string.match(v, '^(%d+):(%d+)$')\n"
    "  us = tonumber(us)\n"
    "  frac = tonumber(frac)\n"
    "  if us and frac and us >= now then\n"
    "    if us - now > divmod(capacity, n) then\n"
    "      ahead = capacity\n"
    "      clamped = true\n"
    "    else\n"
    "      if frac >= n then frac = n - 1 end\n"
    "      ahead = (us - now) * n + frac\n"
    "      if ahead > capacity then ahead = capacity; clamped = true end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local allowed, after, retry = 0, ahead, 0\n"
    "if cost > burst + 1 then\n"
    "  retry = math.max(1, ceildiv(ahead, n * 1000))\n"
    "else\n"
    "  local need = ahead + cost * period\n"
    "  if need > capacity then\n"
    "    retry = ceildiv(need - capacity, n * 1000)\n"
    "  else\n"
    "    allowed = 1\n"
    "    after = need\n"
    "  end\n"
    "end\n"
    "if allowed == 1 and cost > 0 then\n"
    "  store(after)\n"
    "elseif clamped then\n"
    "  store(capacity)\n"
    "end\n"
    "return {allowed, (divmod(capacity - after, period)), retry, ceildiv(after, n * 1000)}\n";

static struct fg_redis_script script;
static pthread_once_t script_once = PTHREAD_ONCE_INIT;
static bool script_ok;

static void script_init(void)
{
    script_ok = fg_redis_script_init(&script, fg_ratelimit_redis_script);
}

struct fg_ratelimit_pending {
    unsigned magic;
    struct fg_ratelimit_redis *client;
    struct fg_redis_req *req;
    const struct fg_ratelimit_limit *limit;
    uint64_t cost, now_us;
    fg_ratelimit_cb cb;
    void *arg;
    size_t key_off, rkey_len;
    char rkey[]; /* prefix, limit name, ':', key (the caller's key starts at key_off) */
};

struct fg_ratelimit_redis {
    unsigned magic;
    struct fg_redis *redis;
    struct fg_ratelimit_redis_opts opts;
    char prefix[64];
    size_t prefix_len;
    struct fg_ratelimit_table *table;
    struct fg_ratelimit_redis_stats *stats;
    struct fg_ratelimit_redis_stats own_stats;
    struct fg_redis_endpoint *ep; /* for log lines (the Redis client holds a reference) */
};

static struct fg_ratelimit_result local_answer(struct fg_ratelimit_redis *r,
                                               const struct fg_ratelimit_limit *limit,
                                               const void *key, size_t key_len, uint64_t cost,
                                               uint64_t now_us)
{
    struct fg_ratelimit_result res =
        fg_ratelimit_table_decide(r->table, limit, key, key_len, cost, now_us);
    res.source = FG_RATELIMIT_SRC_FALLBACK;
    fg_counter_add(&r->stats->fallbacks, 1);
    return res;
}

static bool parse_answer(const redisReply *reply, struct fg_ratelimit_result *res)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 4)
        return false;
    long long v[4];
    for (size_t i = 0; i < 4; i++) {
        if (reply->element[i]->type != REDIS_REPLY_INTEGER || reply->element[i]->integer < 0)
            return false;
        v[i] = reply->element[i]->integer;
    }
    memset(res, 0, sizeof(*res));
    res->source = FG_RATELIMIT_SRC_REDIS;
    res->allowed = v[0] == 1;
    res->remaining = (uint64_t)v[1];
    res->retry_after_ms = (uint64_t)v[2];
    res->reset_ms = (uint64_t)v[3];
    return true;
}

static void on_answer(enum fg_redis_status st, const struct redisReply *reply, void *arg)
{
    struct fg_ratelimit_pending *p = arg;
    FG_ASSERT(p->magic == PENDING_MAGIC);
    struct fg_ratelimit_redis *r = p->client;
    struct fg_ratelimit_result res;
    if (st == FG_REDIS_REPLY && parse_answer(reply, &res)) {
        fg_counter_add(&r->stats->redis_ok, 1);
    } else {
        if (st == FG_REDIS_TIMEOUT) {
            fg_counter_add(&r->stats->redis_timeouts, 1);
        } else {
            if (st == FG_REDIS_REPLY)
                fg_debug("ratelimit: %s: unexpected answer (%.100s); deciding locally",
                         fg_redis_endpoint_display(r->ep),
                         reply->type == REDIS_REPLY_ERROR ? reply->str : "not 4 integers");
            fg_counter_add(&r->stats->redis_errors, 1);
        }
        res = local_answer(r, p->limit, p->rkey + p->key_off, p->rkey_len - p->key_off, p->cost,
                           p->now_us);
    }
    /* p is answered: it is freed before the callback, which may start new decisions */
    fg_ratelimit_cb cb = p->cb;
    void *cb_arg = p->arg;
    p->magic = 0;
    free(p);
    cb(&res, cb_arg);
}

enum fg_ratelimit_status fg_ratelimit_redis_decide(struct fg_ratelimit_redis *r,
                                                   const struct fg_ratelimit_limit *limit,
                                                   const void *key, size_t key_len, uint64_t cost,
                                                   uint64_t now_us, struct fg_ratelimit_result *res,
                                                   fg_ratelimit_cb cb, void *arg,
                                                   struct fg_ratelimit_pending **pending)
{
    FG_ASSERT(r->magic == CLIENT_MAGIC);
    if (pending != NULL)
        *pending = NULL;
    size_t rkey_len = r->prefix_len + limit->name_len + 1 + key_len;
    struct fg_ratelimit_pending *p = script_ok ? malloc(sizeof(*p) + rkey_len) : NULL;
    if (p == NULL) {
        fg_counter_add(&r->stats->redis_skipped, 1);
        *res = local_answer(r, limit, key, key_len, cost, now_us);
        return FG_RATELIMIT_DONE;
    }
    memset(p, 0, sizeof(*p));
    p->magic = PENDING_MAGIC;
    p->client = r;
    p->limit = limit;
    p->cost = cost;
    p->now_us = now_us;
    p->cb = cb;
    p->arg = arg;
    memcpy(p->rkey, r->prefix, r->prefix_len);
    memcpy(p->rkey + r->prefix_len, limit->name, limit->name_len);
    p->rkey[r->prefix_len + limit->name_len] = ':';
    p->key_off = r->prefix_len + limit->name_len + 1;
    if (key_len > 0)
        memcpy(p->rkey + p->key_off, key, key_len);
    p->rkey_len = rkey_len;

    char n_s[24], period_s[24], burst_s[24], cost_s[24];
    snprintf(n_s, sizeof(n_s), "%" PRIu64, limit->requests);
    snprintf(period_s, sizeof(period_s), "%" PRIu64, limit->period_us);
    snprintf(burst_s, sizeof(burst_s), "%" PRIu64, limit->burst);
    snprintf(cost_s, sizeof(cost_s), "%" PRIu64, cost);
    const char *keys[] = {p->rkey};
    const char *args[] = {n_s, period_s, burst_s, cost_s};
    p->req = fg_redis_eval(r->redis, &script, 1, keys, &p->rkey_len, 4, args, NULL,
                           r->opts.timeout_ms, on_answer, p);
    if (p->req == NULL) { /* not connected, too many in flight: no time lost on Redis */
        p->magic = 0;
        free(p);
        fg_counter_add(&r->stats->redis_skipped, 1);
        *res = local_answer(r, limit, key, key_len, cost, now_us);
        return FG_RATELIMIT_DONE;
    }
    if (pending != NULL)
        *pending = p;
    return FG_RATELIMIT_PENDING;
}

void fg_ratelimit_cancel(struct fg_ratelimit_pending *p)
{
    if (p == NULL)
        return;
    FG_ASSERT(p->magic == PENDING_MAGIC);
    fg_redis_cancel(p->req);
    p->magic = 0;
    free(p);
}

/* ---- client --------------------------------------------------------------------------- */

static void on_event(enum fg_redis_event ev, void *arg)
{
    struct fg_ratelimit_redis *r = arg;
    switch (ev) {
    case FG_REDIS_EV_CONNECTED:
        fg_counter_add(&r->stats->connects, 1);
        break;
    case FG_REDIS_EV_CONNECT_FAILED:
        fg_counter_add(&r->stats->connect_failures, 1);
        break;
    case FG_REDIS_EV_DISCONNECTED:
        fg_counter_add(&r->stats->disconnects, 1);
        break;
    case FG_REDIS_EV_NOSCRIPT:
        fg_counter_add(&r->stats->noscript, 1);
        break;
    }
}

struct fg_ratelimit_redis *fg_ratelimit_redis_new(struct event_base *base,
                                                  struct fg_redis_endpoint *ep,
                                                  const struct fg_ratelimit_redis_opts *opts,
                                                  struct fg_ratelimit_table *table,
                                                  struct fg_ratelimit_redis_stats *stats)
{
    FG_ASSERT(base != NULL && ep != NULL && table != NULL);
    pthread_once(&script_once, script_init);
    struct fg_ratelimit_redis *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->magic = CLIENT_MAGIC;
    if (opts != NULL)
        r->opts = *opts;
    if (r->opts.timeout_ms == 0)
        r->opts.timeout_ms = FG_RATELIMIT_REDIS_TIMEOUT_MS;
    snprintf(r->prefix, sizeof(r->prefix), "%s",
             r->opts.key_prefix != NULL ? r->opts.key_prefix : "fg:rl:");
    r->prefix_len = strlen(r->prefix);
    r->opts.key_prefix = NULL; /* the copy in r->prefix is what counts */
    r->table = table;
    r->stats = stats != NULL ? stats : &r->own_stats;
    r->ep = ep;
    struct fg_redis_opts o = {.max_inflight = r->opts.max_inflight,
                              .backoff_min_ms = r->opts.backoff_min_ms,
                              .backoff_max_ms = r->opts.backoff_max_ms,
                              .on_event = on_event,
                              .event_arg = r};
    r->redis = fg_redis_new(base, ep, &o);
    if (r->redis == NULL) {
        free(r);
        return NULL;
    }
    return r;
}

void fg_ratelimit_redis_free(struct fg_ratelimit_redis *r)
{
    if (r == NULL)
        return;
    FG_ASSERT(r->magic == CLIENT_MAGIC);
    fg_redis_free(r->redis); /* every waiting decision is answered inside, as a fallback */
    r->magic = 0;
    free(r);
}

bool fg_ratelimit_redis_ready(const struct fg_ratelimit_redis *r)
{
    return r != NULL && fg_redis_ready(r->redis);
}

struct fg_ratelimit_redis_stats *fg_ratelimit_redis_get_stats(struct fg_ratelimit_redis *r)
{
    return r->stats;
}
