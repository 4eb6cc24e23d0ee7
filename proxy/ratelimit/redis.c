/*
 * redis.c — fleet-wide limits: the GCRA as one Lua script on Redis, reached through
 * hiredis' async API on the worker's event_base.
 *
 * One client per worker, one connection per client. Redis answers in order on a
 * connection, so the decisions waiting for it form a FIFO whose deadlines (send time +
 * timeout) increase: one timer, armed for the oldest, covers them all.
 *
 * Lifetimes (hiredis 0.14 semantics, which later versions keep):
 *  - every command we queue gets exactly one reply callback: with the reply, or with NULL
 *    when the context is freed (by us with redisAsyncFree, or by hiredis itself after a
 *    connection error). A pending decision is freed only in that callback. Before it runs,
 *    the decision may already have been answered (timeout) or cancelled: it is then
 *    DETACHED, nobody else points at it, and the late reply only frees it.
 *  - hiredis frees the context right after calling our connect callback with an error
 *    and after our disconnect callback; we never touch it again after either.
 *  - before freeing a context ourselves we set r->ac = NULL first, so that every callback
 *    the free triggers (NULL replies, the disconnect callback) sees a context that is not
 *    ours any more and only cleans up. The same test (ac != r->ac) makes callbacks from a
 *    context hiredis is tearing down harmless once we have noticed.
 *  - redisAsyncFree from inside a reply callback is deferred by hiredis until the callback
 *    returns; from our own timer callbacks it is immediate.
 *
 * Timeouts as a circuit breaker. A decision that gets no answer within timeout_ms is
 * answered from the local table, and the connection is dropped: every decision queued
 * behind the late one would be late too, their replies are useless by then, and keeping a
 * hung connection would let the queue grow without bound. The client then reconnects
 * with backoff; meanwhile decisions fall back at once, costing no latency at all.
 */
#include "ratelimit/internal.h"
#include "ratelimit/ratelimit.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/random.h>

#include <hiredis/async.h>
#include <hiredis/adapters/libevent.h>

#define REDIS_MAGIC   0x726c7263u /* "rlrc" */
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

enum conn_state {
    CONN_DOWN = 0,  /* no connection; the reconnect timer is armed (unless freeing) */
    CONN_HANDSHAKE, /* connecting, or AUTH / SELECT / SCRIPT LOAD sent */
    CONN_READY,     /* decisions go to Redis */
};

enum pending_state {
    PENDING_WAITING = 1, /* in r->waiting; its callback has not run */
    PENDING_DETACHED,    /* answered or cancelled; only hiredis still holds it */
};

struct fg_ratelimit_pending {
    unsigned magic;
    enum pending_state state;
    struct fg_ratelimit_redis *client;
    TAILQ_ENTRY(fg_ratelimit_pending) link;
    uint64_t deadline_us;
    const struct fg_ratelimit_limit *limit; /* used only while WAITING */
    uint64_t cost, now_us;
    fg_ratelimit_cb cb;
    void *arg;
    bool retried; /* sent again with EVAL after NOSCRIPT */
    size_t key_off, rkey_len;
    char rkey[]; /* prefix, limit name, ':', key (the caller's key starts at key_off) */
};

TAILQ_HEAD(pending_list, fg_ratelimit_pending);

struct fg_ratelimit_redis {
    unsigned magic;
    struct event_base *base;
    struct fg_ratelimit_redis_url url;
    struct fg_ratelimit_redis_opts opts;
    char prefix[64];
    size_t prefix_len;
    struct fg_ratelimit_table *table;
    struct fg_ratelimit_redis_stats *stats;
    struct fg_ratelimit_redis_stats own_stats;

    redisAsyncContext *ac; /* ours, or NULL */
    enum conn_state state;
    char sha[41];
    unsigned backoff_ms; /* the next reconnect delay (before jitter) */
    bool reconnect_armed;
    bool freeing;
    bool complained; /* a failure was logged as a warning since the last success */
    uint64_t rng;

    struct event *reconnect_ev, *handshake_ev, *timeout_ev;
    struct pending_list waiting;
    size_t n_waiting;
};

static void conn_start(struct fg_ratelimit_redis *r);

/* ---- URL ------------------------------------------------------------------------------ */

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", msg);
}

/* Percent-decode s[0..n) into out (NUL-terminated). False on a bad escape, a decoded
 * NUL, or no room. */
static bool pct_decode(const char *s, size_t n, char *out, size_t outsz)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return false;
            int hi = fg_hex_value(s[i + 1]), lo = fg_hex_value(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return false;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (o + 1 >= outsz)
            return false;
        out[o++] = c;
    }
    out[o] = '\0';
    return true;
}

static bool parse_port(const char *s, size_t n, int *port)
{
    if (n == 0 || n > 5)
        return false;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return false;
    *port = v;
    return true;
}

bool fg_ratelimit_redis_url_parse(const char *url, struct fg_ratelimit_redis_url *out, char *err,
                                  size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->port = 6379;
    /* Messages never quote the URL: it may carry a password. */
    if (url != NULL && strncasecmp(url, "rediss://", 9) == 0) {
        set_err(err, errlen,
                "rediss:// (Redis over TLS) is not supported by this build; use redis:// "
                "(ElastiCache without in-transit encryption, or a local TLS tunnel)");
        return false;
    }
    if (url == NULL || strncasecmp(url, "redis://", 8) != 0) {
        set_err(err, errlen, "expected redis://[[user]:password@]host[:port][/db]");
        return false;
    }
    const char *p = url + 8;
    size_t auth_len = strcspn(p, "/?#");
    const char *rest = p + auth_len;

    /* userinfo: up to the last '@' of the authority */
    const char *hostport = p;
    const char *at = NULL;
    for (const char *q = p; q < rest; q++)
        if (*q == '@')
            at = q;
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon == NULL) {
            set_err(err, errlen,
                    "redis URL: credentials need a password (redis://:password@host or "
                    "redis://user:password@host)");
            return false;
        }
        if (!pct_decode(p, (size_t)(colon - p), out->user, sizeof(out->user)) ||
            !pct_decode(colon + 1, (size_t)(at - colon - 1), out->password,
                        sizeof(out->password))) {
            set_err(err, errlen, "redis URL: invalid or too long user or password");
            return false;
        }
        if (out->password[0] == '\0') {
            set_err(err, errlen, "redis URL: empty password");
            return false;
        }
        hostport = at + 1;
    }

    /* host[:port] or [v6][:port] */
    size_t hp_len = (size_t)(rest - hostport);
    const char *host = hostport, *port_s = NULL;
    size_t host_len, port_len = 0;
    bool v6 = false;
    if (hp_len > 0 && hostport[0] == '[') {
        const char *close = memchr(hostport, ']', hp_len);
        if (close == NULL) {
            set_err(err, errlen, "redis URL: missing ']' after an IPv6 address");
            return false;
        }
        v6 = true;
        host = hostport + 1;
        host_len = (size_t)(close - host);
        if (close + 1 < rest) {
            if (close[1] != ':') {
                set_err(err, errlen, "redis URL: unexpected text after ']'");
                return false;
            }
            port_s = close + 2;
            port_len = (size_t)(rest - port_s);
        }
    } else {
        const char *colon = memchr(hostport, ':', hp_len);
        if (colon != NULL && memchr(colon + 1, ':', (size_t)(rest - colon - 1)) != NULL) {
            set_err(err, errlen, "redis URL: IPv6 addresses go in brackets");
            return false;
        }
        host_len = colon != NULL ? (size_t)(colon - hostport) : hp_len;
        if (colon != NULL) {
            port_s = colon + 1;
            port_len = (size_t)(rest - port_s);
        }
    }
    if (host_len == 0 || host_len >= sizeof(out->host)) {
        set_err(err, errlen, "redis URL: missing or too long host");
        return false;
    }
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    if (port_s != NULL && !parse_port(port_s, port_len, &out->port)) {
        set_err(err, errlen, "redis URL: the port must be a number from 1 to 65535");
        return false;
    }

    /* [/db] and nothing else */
    if (*rest == '/') {
        const char *db = rest + 1;
        size_t db_len = strlen(db);
        unsigned v = 0;
        if (db_len > 4 || strspn(db, "0123456789") != db_len) {
            set_err(err, errlen, "redis URL: the database must be a number from 0 to 9999");
            return false;
        }
        for (size_t i = 0; i < db_len; i++)
            v = v * 10 + (unsigned)(db[i] - '0');
        out->db = v;
    } else if (*rest != '\0') {
        set_err(err, errlen, "redis URL: query parameters and fragments are not supported");
        return false;
    }

    /* Resolve now, with the core's rules (numeric first, IPv4 preferred). */
    char hp[300], aerr[200];
    snprintf(hp, sizeof(hp), v6 ? "[%s]:%d" : "%s:%d", out->host, out->port);
    struct fg_addr addr;
    if (!fg_addr_parse(hp, out->port, &addr, aerr, sizeof(aerr))) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "redis URL: %s", aerr);
        return false;
    }
    fg_addr_ip_text((const struct sockaddr *)&addr.ss, out->ip, sizeof(out->ip));
    snprintf(out->display, sizeof(out->display), "redis://%s%s%s%s%s:%d/%u",
             out->user[0] ? out->user : "", out->password[0] ? ":***@" : "", v6 ? "[" : "",
             out->host, v6 ? "]" : "", out->port, out->db);
    return true;
}

/* ---- small helpers -------------------------------------------------------------------- */

static struct timeval tv_ms(uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

static struct timeval tv_us(uint64_t us)
{
    struct timeval tv = {.tv_sec = (time_t)(us / 1000000), .tv_usec = (suseconds_t)(us % 1000000)};
    return tv;
}

static uint64_t rng_next(struct fg_ratelimit_redis *r)
{
    /* xorshift64*: jitter only, no secrets */
    uint64_t x = r->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->rng = x;
    return x * UINT64_C(0x2545F4914F6CDD1D);
}

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

static void waiting_remove(struct fg_ratelimit_redis *r, struct fg_ratelimit_pending *p)
{
    FG_ASSERT(p->state == PENDING_WAITING);
    TAILQ_REMOVE(&r->waiting, p, link);
    r->n_waiting--;
    p->state = PENDING_DETACHED;
}

/* Answer a waiting decision; it stays allocated until hiredis's callback frees it. */
static void pending_answer(struct fg_ratelimit_pending *p, const struct fg_ratelimit_result *res)
{
    fg_ratelimit_cb cb = p->cb;
    void *arg = p->arg;
    waiting_remove(p->client, p);
    p->limit = NULL;
    cb(res, arg);
}

static void pending_fallback(struct fg_ratelimit_pending *p)
{
    struct fg_ratelimit_result res = local_answer(p->client, p->limit, p->rkey + p->key_off,
                                                  p->rkey_len - p->key_off, p->cost, p->now_us);
    pending_answer(p, &res);
}

/* ---- connection state ----------------------------------------------------------------- */

static void schedule_reconnect(struct fg_ratelimit_redis *r)
{
    if (r->freeing || r->reconnect_armed)
        return;
    /* Equal jitter: between half and all of the backoff, so that the workers (and the
     * fleet) do not all come back to a restarted Redis in the same millisecond. */
    uint64_t half = r->backoff_ms / 2;
    uint64_t delay = half + (half > 0 ? rng_next(r) % (half + 1) : 0);
    unsigned next = r->backoff_ms * 2;
    r->backoff_ms =
        next > r->opts.backoff_max_ms || next < r->backoff_ms ? r->opts.backoff_max_ms : next;
    struct timeval tv = tv_ms(delay);
    evtimer_add(r->reconnect_ev, &tv);
    r->reconnect_armed = true;
}

/* Forget the connection (state DOWN, r->ac NULL) and plan the next attempt. Does not free
 * the context: the caller does, or hiredis is already doing it. */
static void conn_detach(struct fg_ratelimit_redis *r, const char *why)
{
    enum conn_state was = r->state;
    r->ac = NULL;
    r->state = CONN_DOWN;
    evtimer_del(r->handshake_ev);
    if (was == CONN_READY)
        fg_counter_add(&r->stats->disconnects, 1);
    else if (was == CONN_HANDSHAKE)
        fg_counter_add(&r->stats->connect_failures, 1);
    schedule_reconnect(r);
    if (r->freeing || why == NULL)
        return;
    /* One warning per outage; the retries that follow go to the debug log. */
    if (!r->complained) {
        fg_warn("ratelimit: %s: %s; limits fall back to the local table until it is back",
                r->url.display, why);
        r->complained = true;
    } else {
        fg_debug("ratelimit: %s: %s", r->url.display, why);
    }
}

/* Drop our connection now. Decisions still waiting get their NULL reply inside
 * redisAsyncFree (or right after the current callback, if called from one) and fall
 * back. */
static void conn_drop(struct fg_ratelimit_redis *r, const char *why)
{
    redisAsyncContext *ac = r->ac;
    conn_detach(r, why);
    if (ac != NULL)
        redisAsyncFree(ac);
}

static bool is_ours(const struct fg_ratelimit_redis *r, const redisAsyncContext *ac)
{
    return ac != NULL && ac == r->ac;
}

/* "what (hiredis's error text)". The text is read from the context itself: when the
 * connect callback runs, hiredis has not yet copied it to ac->errstr. */
static const char *why_text(char *buf, size_t size, const char *what, const redisAsyncContext *ac)
{
    snprintf(buf, size, "%s (%s)", what, ac->c.errstr[0] != '\0' ? ac->c.errstr : "closed");
    return buf;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct fg_ratelimit_redis *r = ac->data;
    char why[200];
    if (status != REDIS_OK && is_ours(r, ac))
        conn_detach(r, why_text(why, sizeof(why), "cannot connect", ac)); /* hiredis frees */
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct fg_ratelimit_redis *r = ac->data;
    char why[200];
    if (is_ours(r, ac))
        conn_detach(r, why_text(why, sizeof(why), "connection lost", ac));
}

static void on_handshake_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    struct fg_ratelimit_redis *r = privdata;
    redisReply *reply = reply_;
    if (!is_ours(r, ac))
        return;
    char why[200];
    if (reply == NULL) {
        conn_detach(r, why_text(why, sizeof(why), "connection lost during the handshake", ac));
    } else if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(why, sizeof(why), "handshake refused (%.150s)", reply->str);
        conn_drop(r, why);
    }
}

static void on_script_loaded(redisAsyncContext *ac, void *reply_, void *privdata)
{
    struct fg_ratelimit_redis *r = privdata;
    redisReply *reply = reply_;
    if (!is_ours(r, ac))
        return;
    char why[200];
    if (reply == NULL) {
        conn_detach(r, why_text(why, sizeof(why), "connection lost", ac));
        return;
    }
    if (reply->type != REDIS_REPLY_STRING || reply->len != 40) {
        snprintf(why, sizeof(why), "SCRIPT LOAD failed (%.150s)",
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
        if (r->state == CONN_HANDSHAKE)
            conn_drop(r, why);
        else
            fg_debug("ratelimit: %s: %s", r->url.display, why);
        return;
    }
    memcpy(r->sha, reply->str, 40);
    r->sha[40] = '\0';
    if (r->state == CONN_HANDSHAKE) {
        r->state = CONN_READY;
        evtimer_del(r->handshake_ev);
        r->backoff_ms = r->opts.backoff_min_ms;
        fg_counter_add(&r->stats->connects, 1);
        if (r->complained)
            fg_notice("ratelimit: %s: connected again; limits are fleet-wide again",
                      r->url.display);
        r->complained = false;
    }
}

static void on_handshake_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct fg_ratelimit_redis *r = arg;
    if (r->state == CONN_HANDSHAKE)
        conn_drop(r, "no answer within connect_timeout");
}

static void on_reconnect_timer(evutil_socket_t fd, short what, void *arg)
{
    struct fg_ratelimit_redis *r = arg;
    r->reconnect_armed = false;
    if (r->state == CONN_DOWN)
        conn_start(r);
}

static void conn_start(struct fg_ratelimit_redis *r)
{
    FG_ASSERT(r->state == CONN_DOWN && r->ac == NULL);
    /* r->url.ip is numeric: hiredis' getaddrinfo returns at once, no DNS on a worker. */
    redisAsyncContext *ac = redisAsyncConnect(r->url.ip, r->url.port);
    if (ac == NULL || ac->err) {
        char why[160];
        snprintf(why, sizeof(why), "cannot connect (%s)",
                 ac != NULL && ac->errstr ? ac->errstr : "out of memory");
        if (ac != NULL)
            redisAsyncFree(ac);
        r->state = CONN_HANDSHAKE; /* so that it counts as a connect failure */
        conn_detach(r, why);
        return;
    }
    ac->data = r;
    r->ac = ac;
    r->state = CONN_HANDSHAKE;
    if (redisLibeventAttach(ac, r->base) != REDIS_OK) {
        conn_drop(r, "cannot attach to the event loop");
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);

    /* Pipelined: hiredis sends them once the TCP connect completes. */
    int rc = REDIS_OK;
    if (r->url.password[0] != '\0') {
        if (r->url.user[0] != '\0')
            rc = redisAsyncCommand(ac, on_handshake_reply, r, "AUTH %s %s", r->url.user,
                                   r->url.password);
        else
            rc = redisAsyncCommand(ac, on_handshake_reply, r, "AUTH %s", r->url.password);
    }
    if (rc == REDIS_OK && r->url.db != 0)
        rc = redisAsyncCommand(ac, on_handshake_reply, r, "SELECT %u", r->url.db);
    if (rc == REDIS_OK)
        rc =
            redisAsyncCommand(ac, on_script_loaded, r, "SCRIPT LOAD %s", fg_ratelimit_redis_script);
    if (rc != REDIS_OK) {
        conn_drop(r, "cannot queue the handshake");
        return;
    }
    struct timeval tv = tv_ms(r->opts.connect_timeout_ms);
    evtimer_add(r->handshake_ev, &tv);
}

/* ---- decisions ------------------------------------------------------------------------ */

static void on_decision_reply(redisAsyncContext *ac, void *reply_, void *privdata);

static bool send_decision(struct fg_ratelimit_redis *r, struct fg_ratelimit_pending *p, bool eval)
{
    const struct fg_ratelimit_limit *l = p->limit;
    char n_s[24], period_s[24], burst_s[24], cost_s[24];
    const char *argv[8];
    size_t lens[8];
    argv[0] = eval ? "EVAL" : "EVALSHA";
    argv[1] = eval ? fg_ratelimit_redis_script : r->sha;
    argv[2] = "1";
    argv[3] = p->rkey;
    lens[3] = p->rkey_len;
    snprintf(n_s, sizeof(n_s), "%" PRIu64, l->requests);
    snprintf(period_s, sizeof(period_s), "%" PRIu64, l->period_us);
    snprintf(burst_s, sizeof(burst_s), "%" PRIu64, l->burst);
    snprintf(cost_s, sizeof(cost_s), "%" PRIu64, p->cost);
    argv[4] = n_s;
    argv[5] = period_s;
    argv[6] = burst_s;
    argv[7] = cost_s;
    for (int i = 0; i < 8; i++)
        if (i != 3)
            lens[i] = strlen(argv[i]);
    return redisAsyncCommandArgv(r->ac, on_decision_reply, p, 8, argv, lens) == REDIS_OK;
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

static void on_decision_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
    struct fg_ratelimit_pending *p = privdata;
    redisReply *reply = reply_;
    FG_ASSERT(p->magic == PENDING_MAGIC);
    struct fg_ratelimit_redis *r = p->client;
    char why[200];
    if (reply == NULL && is_ours(r, ac)) /* hiredis is tearing the context down */
        conn_detach(r, why_text(why, sizeof(why), "connection lost", ac));
    if (p->state == PENDING_WAITING) {
        struct fg_ratelimit_result res;
        if (reply != NULL && parse_answer(reply, &res)) {
            fg_counter_add(&r->stats->redis_ok, 1);
            pending_answer(p, &res);
        } else if (reply != NULL && reply->type == REDIS_REPLY_ERROR &&
                   strncmp(reply->str, "NOSCRIPT", 8) == 0 && !p->retried && is_ours(r, ac)) {
            /* The script cache was flushed (restart, failover, SCRIPT FLUSH): run this
             * decision with EVAL, and load the script again for the next ones. */
            fg_counter_add(&r->stats->noscript, 1);
            p->retried = true;
            redisAsyncCommand(ac, on_script_loaded, r, "SCRIPT LOAD %s", fg_ratelimit_redis_script);
            if (send_decision(r, p, true))
                return; /* this callback's reply is freed; the EVAL's callback owns p now */
            fg_counter_add(&r->stats->redis_errors, 1);
            pending_fallback(p);
        } else {
            if (reply != NULL)
                fg_debug("ratelimit: %s: unexpected answer (%.100s); deciding locally",
                         r->url.display,
                         reply->type == REDIS_REPLY_ERROR ? reply->str : "not 4 integers");
            fg_counter_add(&r->stats->redis_errors, 1);
            pending_fallback(p);
        }
    }
    p->magic = 0;
    free(p);
}

static void arm_timeout(struct fg_ratelimit_redis *r, uint64_t now_us)
{
    struct fg_ratelimit_pending *head = TAILQ_FIRST(&r->waiting);
    if (head == NULL)
        return;
    struct timeval tv = tv_us(head->deadline_us > now_us ? head->deadline_us - now_us : 0);
    evtimer_add(r->timeout_ev, &tv);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct fg_ratelimit_redis *r = arg;
    uint64_t now = fg_mono_us();
    struct fg_ratelimit_pending *p = TAILQ_FIRST(&r->waiting);
    if (p == NULL)
        return;
    if (p->deadline_us > now) {
        arm_timeout(r, now); /* the head it was armed for is gone */
        return;
    }
    /* Down first, so that decisions made from the callbacks below fall back at once
     * instead of queueing on a connection about to go. */
    redisAsyncContext *ac = r->ac;
    char why[120];
    snprintf(why, sizeof(why), "no answer within %u ms; dropping the connection",
             r->opts.timeout_ms);
    conn_detach(r, why);
    while ((p = TAILQ_FIRST(&r->waiting)) != NULL && p->deadline_us <= now) {
        fg_counter_add(&r->stats->redis_timeouts, 1);
        pending_fallback(p);
    }
    if (ac != NULL)
        redisAsyncFree(ac); /* the rest fall back as errors; detached ones are freed */
}

enum fg_ratelimit_status fg_ratelimit_redis_decide(struct fg_ratelimit_redis *r,
                                                   const struct fg_ratelimit_limit *limit,
                                                   const void *key, size_t key_len, uint64_t cost,
                                                   uint64_t now_us, struct fg_ratelimit_result *res,
                                                   fg_ratelimit_cb cb, void *arg,
                                                   struct fg_ratelimit_pending **pending)
{
    FG_ASSERT(r->magic == REDIS_MAGIC);
    if (pending != NULL)
        *pending = NULL;
    if (r->state != CONN_READY || r->n_waiting >= r->opts.max_inflight) {
        fg_counter_add(&r->stats->redis_skipped, 1);
        *res = local_answer(r, limit, key, key_len, cost, now_us);
        return FG_RATELIMIT_DONE;
    }
    size_t rkey_len = r->prefix_len + limit->name_len + 1 + key_len;
    struct fg_ratelimit_pending *p = malloc(sizeof(*p) + rkey_len);
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
    if (!send_decision(r, p, false)) {
        free(p);
        fg_counter_add(&r->stats->redis_errors, 1);
        *res = local_answer(r, limit, key, key_len, cost, now_us);
        return FG_RATELIMIT_DONE;
    }
    uint64_t now = fg_mono_us();
    p->deadline_us = now + (uint64_t)r->opts.timeout_ms * 1000;
    p->state = PENDING_WAITING;
    TAILQ_INSERT_TAIL(&r->waiting, p, link);
    if (++r->n_waiting == 1)
        arm_timeout(r, now);
    if (pending != NULL)
        *pending = p;
    return FG_RATELIMIT_PENDING;
}

void fg_ratelimit_cancel(struct fg_ratelimit_pending *p)
{
    if (p == NULL)
        return;
    FG_ASSERT(p->magic == PENDING_MAGIC);
    if (p->state == PENDING_WAITING) {
        waiting_remove(p->client, p);
        p->limit = NULL;
    }
}

/* ---- client --------------------------------------------------------------------------- */

struct fg_ratelimit_redis *fg_ratelimit_redis_new(struct event_base *base,
                                                  const struct fg_ratelimit_redis_url *url,
                                                  const struct fg_ratelimit_redis_opts *opts,
                                                  struct fg_ratelimit_table *table,
                                                  struct fg_ratelimit_redis_stats *stats)
{
    FG_ASSERT(base != NULL && url != NULL && table != NULL);
    struct fg_ratelimit_redis *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->magic = REDIS_MAGIC;
    r->base = base;
    r->url = *url;
    if (opts != NULL)
        r->opts = *opts;
    if (r->opts.timeout_ms == 0)
        r->opts.timeout_ms = FG_RATELIMIT_REDIS_TIMEOUT_MS;
    if (r->opts.connect_timeout_ms == 0)
        r->opts.connect_timeout_ms = 500;
    if (r->opts.backoff_min_ms == 0)
        r->opts.backoff_min_ms = 100;
    if (r->opts.backoff_max_ms == 0)
        r->opts.backoff_max_ms = 5000;
    if (r->opts.backoff_max_ms < r->opts.backoff_min_ms)
        r->opts.backoff_max_ms = r->opts.backoff_min_ms;
    if (r->opts.max_inflight == 0)
        r->opts.max_inflight = 1000;
    snprintf(r->prefix, sizeof(r->prefix), "%s",
             r->opts.key_prefix != NULL ? r->opts.key_prefix : "fg:rl:");
    r->prefix_len = strlen(r->prefix);
    r->opts.key_prefix = NULL; /* the copy in r->prefix is what counts */
    r->table = table;
    r->stats = stats != NULL ? stats : &r->own_stats;
    r->backoff_ms = r->opts.backoff_min_ms;
    if (getrandom(&r->rng, sizeof(r->rng), 0) != sizeof(r->rng))
        r->rng = fg_mono_us() ^ (uintptr_t)r;
    r->rng |= 1;
    TAILQ_INIT(&r->waiting);
    r->reconnect_ev = evtimer_new(base, on_reconnect_timer, r);
    r->handshake_ev = evtimer_new(base, on_handshake_timeout, r);
    r->timeout_ev = evtimer_new(base, on_timeout, r);
    if (r->reconnect_ev == NULL || r->handshake_ev == NULL || r->timeout_ev == NULL) {
        r->freeing = true;
        fg_ratelimit_redis_free(r);
        return NULL;
    }
    conn_start(r);
    return r;
}

void fg_ratelimit_redis_free(struct fg_ratelimit_redis *r)
{
    if (r == NULL)
        return;
    FG_ASSERT(r->magic == REDIS_MAGIC);
    /* From inside a hiredis callback the free would be deferred past our own free. */
    FG_ASSERT(r->ac == NULL || !(r->ac->c.flags & REDIS_IN_CALLBACK));
    r->freeing = true;
    conn_drop(r, NULL); /* every waiting decision is answered inside */
    FG_ASSERT(TAILQ_EMPTY(&r->waiting));
    if (r->reconnect_ev != NULL)
        event_free(r->reconnect_ev);
    if (r->handshake_ev != NULL)
        event_free(r->handshake_ev);
    if (r->timeout_ev != NULL)
        event_free(r->timeout_ev);
    r->magic = 0;
    free(r);
}

bool fg_ratelimit_redis_ready(const struct fg_ratelimit_redis *r)
{
    return r != NULL && r->state == CONN_READY;
}

struct fg_ratelimit_redis_stats *fg_ratelimit_redis_get_stats(struct fg_ratelimit_redis *r)
{
    return r->stats;
}
