/*
 * test_redis.c — the Redis backend against a real redis-server, started by this test as a
 * child on a free 127.0.0.1 port (no persistence): decisions through an event_base, one
 * budget for two clients (the fleet), the Lua script agreeing with the C GCRA, NOSCRIPT
 * after SCRIPT FLUSH, AUTH and SELECT, a hung server (SIGSTOP: the answer must come back
 * as a fallback within the timeout), a dead server (fall back at once, reconnect within
 * the backoff bound once it is back), cancel, free with decisions in flight, max_inflight.
 *
 * redis-server missing: the test fails, unless FG_SKIP_REDIS=1, which makes it exit 77
 * (automake's "skipped"). FG_REDIS_SERVER names another binary. Every wait is bounded;
 * the child is killed on every exit path (atexit, and PR_SET_PDEATHSIG if we crash).
 *
 * The transport is proxy/redis's client (its own tests cover TLS, clusters and DNS);
 * these check what the limits promise on top of it.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "ratelimit/ratelimit.h"

#define MS UINT64_C(1000)
#define S  UINT64_C(1000000)

#define TIMEOUT_MS     30
#define BACKOFF_MAX_MS 200

/* ---- the redis-server child ---------------------------------------------------------- */

static const char *redis_bin;
static pid_t redis_pid = -1;
static int redis_port;
static bool redis_stopped;

static void redis_kill(void)
{
    if (redis_pid > 0) {
        kill(redis_pid, SIGKILL); /* also ends a stopped process */
        waitpid(redis_pid, NULL, 0);
        redis_pid = -1;
    }
    redis_stopped = false;
}

static void redis_stop(void)
{
    assert_true(redis_pid > 0);
    assert_int_equal(kill(redis_pid, SIGSTOP), 0);
    redis_stopped = true;
}

static void redis_cont(void)
{
    if (redis_pid > 0 && redis_stopped)
        kill(redis_pid, SIGCONT);
    redis_stopped = false;
}

static const char *find_redis(void)
{
    static char found[4096];
    const char *env = getenv("FG_REDIS_SERVER");
    if (env != NULL && env[0] != '\0')
        return access(env, X_OK) == 0 ? env : NULL;
    if (access("/usr/bin/redis-server", X_OK) == 0)
        return "/usr/bin/redis-server";
    const char *path = getenv("PATH");
    while (path != NULL && *path != '\0') {
        size_t n = strcspn(path, ":");
        snprintf(found, sizeof(found), "%.*s/redis-server", (int)n, path);
        if (n > 0 && access(found, X_OK) == 0)
            return found;
        path += n + (path[n] == ':');
    }
    return NULL;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sin);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(sin.sin_port);
}

/* A blocking connection for checks from the test's side (never while stopped). */
static redisContext *admin_connect(const char *password)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
    if (c == NULL || c->err) {
        if (c != NULL)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    if (password != NULL) {
        redisReply *r = redisCommand(c, "AUTH %s", password);
        if (r != NULL)
            freeReplyObject(r);
    }
    return c;
}

static redisReply *admin(const char *password, const char *fmt, ...)
{
    redisContext *c = admin_connect(password);
    if (c == NULL)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return r;
}

/* The server on our port is our child (not some other process that took the port). */
static bool redis_is_ours(void)
{
    redisReply *r = admin(NULL, "INFO server");
    char want[64];
    snprintf(want, sizeof(want), "process_id:%d\r", (int)redis_pid);
    bool ok = r != NULL && r->type == REDIS_REPLY_STRING && strstr(r->str, want) != NULL;
    if (r != NULL)
        freeReplyObject(r);
    return ok;
}

static bool redis_start_on(int port)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        char port_s[16];
        snprintf(port_s, sizeof(port_s), "%d", port);
        execl(redis_bin, "redis-server", "--port", port_s, "--bind", "127.0.0.1", "--save", "",
              "--appendonly", "no", "--daemonize", "no", "--dir", "/tmp", "--loglevel", "warning",
              (char *)NULL);
        _exit(127);
    }
    redis_pid = pid;
    redis_port = port;
    uint64_t deadline = fg_mono_us() + 5 * S;
    while (fg_mono_us() < deadline) {
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            redis_pid = -1; /* exited: port taken, or a bad binary */
            return false;
        }
        if (redis_is_ours())
            return true;
        usleep(5000);
    }
    redis_kill();
    return false;
}

static bool redis_start(void)
{
    for (int attempt = 0; attempt < 5; attempt++) {
        int port = free_port();
        if (port > 0 && redis_start_on(port))
            return true;
    }
    return false;
}

/* ---- fixture ------------------------------------------------------------------------- */

#define CLIENTS 3

struct fx {
    struct event_base *base;
    struct fg_ratelimit_table *table;
    struct fg_redis_endpoint *ep;
    struct fg_redis_endpoint *extra[CLIENTS];
    struct fg_ratelimit_redis_opts opts;
    struct fg_ratelimit_redis *c[CLIENTS];
    struct fg_ratelimit_redis_stats stats[CLIENTS];
};

/* An endpoint for the URL fmt (with the port), as the config would build it. */
static struct fg_redis_endpoint *endpoint(const char *fmt, int port)
{
    char url[128], err[256];
    snprintf(url, sizeof(url), fmt, port);
    struct fg_redis_endpoint_config c = {.name = "rltest", .url = url, .connect_timeout_ms = 200};
    struct fg_redis_endpoint *ep = fg_redis_endpoint_new(&c, err, sizeof(err));
    if (ep == NULL)
        fail_msg("%s: %s", url, err);
    return ep;
}

static int setup(void **state)
{
    redis_cont();
    if (redis_pid < 0 && !redis_start_on(redis_port) && !redis_start())
        fail_msg("cannot (re)start redis-server");
    redisReply *r = admin(NULL, "FLUSHALL");
    assert_non_null(r);
    freeReplyObject(r);
    r = admin(NULL, "CONFIG RESETSTAT");
    assert_non_null(r);
    freeReplyObject(r);

    struct fx *f = calloc(1, sizeof(*f));
    f->base = event_base_new();
    f->table = fg_ratelimit_table_new(4096);
    f->ep = endpoint("redis://127.0.0.1:%d", redis_port);
    f->opts = (struct fg_ratelimit_redis_opts){
        .timeout_ms = TIMEOUT_MS, .backoff_min_ms = 20, .backoff_max_ms = BACKOFF_MAX_MS};
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    redis_cont();
    for (int i = 0; i < CLIENTS; i++) {
        fg_ratelimit_redis_free(f->c[i]);
        /* every fallback has exactly one reason */
        struct fg_ratelimit_redis_stats *s = &f->stats[i];
        assert_int_equal(fg_counter_get(&s->fallbacks), fg_counter_get(&s->redis_errors) +
                                                            fg_counter_get(&s->redis_timeouts) +
                                                            fg_counter_get(&s->redis_skipped));
    }
    fg_redis_endpoint_unref(f->ep);
    for (int i = 0; i < CLIENTS; i++)
        fg_redis_endpoint_unref(f->extra[i]);
    fg_ratelimit_table_free(f->table);
    event_base_free(f->base);
    free(f);
    return 0;
}

/* Client i, for ep (owned by the fixture from now on) or the fixture's endpoint. */
static struct fg_ratelimit_redis *client(struct fx *f, int i, struct fg_redis_endpoint *ep)
{
    if (ep != NULL)
        f->extra[i] = ep;
    f->c[i] =
        fg_ratelimit_redis_new(f->base, ep != NULL ? ep : f->ep, &f->opts, f->table, &f->stats[i]);
    assert_non_null(f->c[i]);
    return f->c[i];
}

static void turn(struct fx *f)
{
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    usleep(200);
}

static void spin(struct fx *f, uint64_t us)
{
    uint64_t end = fg_mono_us() + us;
    while (fg_mono_us() < end)
        turn(f);
}

static bool wait_ready(struct fx *f, struct fg_ratelimit_redis *c, bool want, uint64_t max_us)
{
    uint64_t end = fg_mono_us() + max_us;
    while (fg_ratelimit_redis_ready(c) != want && fg_mono_us() < end)
        turn(f);
    return fg_ratelimit_redis_ready(c) == want;
}

static bool wait_counter(struct fx *f, fg_counter_t *ctr, uint64_t at_least, uint64_t max_us)
{
    uint64_t end = fg_mono_us() + max_us;
    while (fg_counter_get(ctr) < at_least && fg_mono_us() < end)
        turn(f);
    return fg_counter_get(ctr) >= at_least;
}

struct answer {
    int calls;
    struct fg_ratelimit_result res;
    uint64_t at_us;
};

static void on_answer(const struct fg_ratelimit_result *res, void *arg)
{
    struct answer *a = arg;
    a->calls++;
    a->res = *res;
    a->at_us = fg_mono_us();
}

static bool wait_answer(struct fx *f, struct answer *a, uint64_t max_us)
{
    uint64_t end = fg_mono_us() + max_us;
    while (a->calls == 0 && fg_mono_us() < end)
        turn(f);
    return a->calls > 0;
}

/* One decision, waited for (bounded). */
static struct fg_ratelimit_result decide_cost(struct fx *f, struct fg_ratelimit_redis *c,
                                              const struct fg_ratelimit_limit *l, const char *key,
                                              uint64_t cost)
{
    struct answer a = {0};
    struct fg_ratelimit_result res;
    struct fg_ratelimit_pending *p = NULL;
    enum fg_ratelimit_status st = fg_ratelimit_decide(f->table, c, l, key, strlen(key), cost,
                                                      fg_mono_us(), &res, on_answer, &a, &p);
    assert_int_equal(a.calls, 0); /* never called from inside decide */
    if (st == FG_RATELIMIT_DONE) {
        assert_null(p);
        return res;
    }
    assert_non_null(p);
    if (!wait_answer(f, &a, 2 * S)) {
        fg_ratelimit_cancel(p); /* a is on this stack */
        fail_msg("no answer within 2 s");
    }
    assert_int_equal(a.calls, 1);
    return a.res;
}

static struct fg_ratelimit_result decide(struct fx *f, struct fg_ratelimit_redis *c,
                                         const struct fg_ratelimit_limit *l, const char *key)
{
    return decide_cost(f, c, l, key, 1);
}

static struct fg_ratelimit_limit mk(const char *name, uint64_t requests, uint64_t period_us,
                                    uint64_t burst)
{
    struct fg_ratelimit_limit l;
    char err[200];
    assert_true(fg_ratelimit_limit_init(&l, name, requests, period_us, burst, FG_RATELIMIT_REDIS,
                                        err, sizeof(err)));
    return l;
}

/* calls=N of one command in INFO commandstats, 0 when absent. */
static long command_calls(const char *cmd)
{
    redisReply *r = admin(NULL, "INFO commandstats");
    assert_non_null(r);
    char want[64];
    snprintf(want, sizeof(want), "cmdstat_%s:calls=", cmd);
    const char *p = strstr(r->str, want);
    long n = p != NULL ? strtol(p + strlen(want), NULL, 10) : 0;
    freeReplyObject(r);
    return n;
}

/* ---- tests --------------------------------------------------------------------------- */

static void test_decisions_go_to_redis(void **state)
{
    struct fx *f = *state;
    struct fg_ratelimit_redis *c = client(f, 0, NULL);
    assert_false(fg_ratelimit_redis_ready(c));
    assert_true(wait_ready(f, c, true, 2 * S));
    struct fg_ratelimit_limit l = mk("t1", 1, 60 * S, 2);
    for (uint64_t i = 0; i < 3; i++) {
        struct fg_ratelimit_result r = decide(f, c, &l, "k");
        assert_int_equal(r.source, FG_RATELIMIT_SRC_REDIS);
        assert_true(r.allowed);
        assert_int_equal(r.remaining, 2 - i);
    }
    struct fg_ratelimit_result r = decide(f, c, &l, "k");
    assert_int_equal(r.source, FG_RATELIMIT_SRC_REDIS);
    assert_false(r.allowed);
    assert_int_equal(r.remaining, 0);
    assert_true(r.retry_after_ms > 59000 && r.retry_after_ms <= 60000);
    assert_true(r.reset_ms > 179000 && r.reset_ms <= 180000);
    assert_int_equal(fg_counter_get(&f->stats[0].redis_ok), 4);
    assert_int_equal(fg_counter_get(&f->stats[0].fallbacks), 0);
    assert_int_equal(fg_counter_get(&f->stats[0].connects), 1);

    /* What Redis holds: "us:frac", expiring when the TAT is reached. */
    redisReply *v = admin(NULL, "GET fg:rl:t1:k");
    assert_non_null(v);
    assert_int_equal(v->type, REDIS_REPLY_STRING);
    assert_true(strspn(v->str, "0123456789") > 10 && strchr(v->str, ':') != NULL);
    freeReplyObject(v);
    v = admin(NULL, "PTTL fg:rl:t1:k");
    assert_true(v->integer > 179000 && v->integer <= 180000);
    freeReplyObject(v);
    /* SCRIPT LOAD once, then EVALSHA only */
    assert_int_equal(command_calls("evalsha"), 4);
    assert_int_equal(command_calls("eval"), 0);
    /* the local table was not touched: the same key is fresh there */
    struct fg_ratelimit_result loc = fg_ratelimit_table_decide(f->table, &l, "k", 1, 1, 1 * S);
    assert_true(loc.allowed);
    assert_int_equal(loc.remaining, 2);
}

static void test_fleet_shares_one_budget(void **state)
{
    struct fx *f = *state;
    struct fg_ratelimit_redis *a = client(f, 0, NULL), *b = client(f, 1, NULL);
    assert_true(wait_ready(f, a, true, 2 * S));
    assert_true(wait_ready(f, b, true, 2 * S));
    struct fg_ratelimit_limit l = mk("fleet", 1, 60 * S, 4);
    for (int i = 0; i < 10; i++) {
        struct fg_ratelimit_result r = decide(f, i % 2 ? b : a, &l, "198.51.100.7");
        assert_int_equal(r.source, FG_RATELIMIT_SRC_REDIS);
        assert_int_equal(r.allowed, i < 5);
    }
    assert_int_equal(fg_counter_get(&f->stats[0].redis_ok), 5);
    assert_int_equal(fg_counter_get(&f->stats[1].redis_ok), 5);
}

/* The Lua script and the C function agree (allowed, remaining; retry within the few ms the
 * Redis clock moved meanwhile). */
static void test_script_matches_c(void **state)
{
    struct fx *f = *state;
    struct fg_ratelimit_redis *c = client(f, 0, NULL);
    assert_true(wait_ready(f, c, true, 2 * S));
    struct fg_ratelimit_limit l = mk("same", 1, 3600 * S, 4);
    const uint64_t costs[] = {1, 2, 1, 3, 1, 1, 5, 6, 0, 1};
    struct fg_ratelimit_tat tat = {0, 0};
    uint64_t now = 1000 * S;
    for (size_t i = 0; i < sizeof(costs) / sizeof(costs[0]); i++) {
        struct fg_ratelimit_result want = fg_ratelimit_gcra(&l, tat, costs[i], now);
        if (want.allowed)
            tat = want.tat;
        struct fg_ratelimit_result got = decide_cost(f, c, &l, "x", costs[i]);
        assert_int_equal(got.source, FG_RATELIMIT_SRC_REDIS);
        assert_int_equal(got.allowed, want.allowed);
        assert_int_equal(got.remaining, want.remaining);
        assert_true(got.retry_after_ms <= want.retry_after_ms);
        assert_true(got.retry_after_ms + 1000 >= want.retry_after_ms);
        assert_true(got.reset_ms <= want.reset_ms && got.reset_ms + 1000 >= want.reset_ms);
    }
}

static void test_noscript_falls_back_to_eval(void **state)
{
    struct fx *f = *state;
    struct fg_ratelimit_redis *c = client(f, 0, NULL);
    assert_true(wait_ready(f, c, true, 2 * S));
    struct fg_ratelimit_limit l = mk("ns", 1, 60 * S, 9);
    assert_int_equal(decide(f, c, &l, "k").remaining, 9);
    redisReply *r = admin(NULL, "SCRIPT FLUSH");
    assert_non_null(r);
    freeReplyObject(r);
    struct fg_ratelimit_result res = decide(f, c, &l, "k");
    assert_int_equal(res.source, FG_RATELIMIT_SRC_REDIS);
    assert_true(res.allowed);
    assert_int_equal(res.remaining, 8); /* same budget: nothing lost, nothing doubled */
    assert_int_equal(fg_counter_get(&f->stats[0].noscript), 1);
    assert_int_equal(command_calls("eval"), 1);
    /* reloaded: back to EVALSHA */
    assert_int_equal(decide(f, c, &l, "k").remaining, 7);
    assert_int_equal(fg_counter_get(&f->stats[0].noscript), 1);
    assert_int_equal(command_calls("eval"), 1);
    assert_int_equal(fg_counter_get(&f->stats[0].fallbacks), 0);
}

static void test_auth(void **state)
{
    struct fx *f = *state;
    redisReply *r = admin(NULL, "CONFIG SET requirepass s3cret");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    struct fg_ratelimit_redis *g = client(f, 0,
                                          endpoint("redis://:s3cret@127.0.0.1:%d", redis_port)),
                              *b =
                                  client(f, 1, endpoint("redis://:wrong@127.0.0.1:%d", redis_port)),
                              *n = client(f, 2, endpoint("redis://127.0.0.1:%d", redis_port));
    assert_true(wait_ready(f, g, true, 2 * S));
    assert_true(wait_counter(f, &f->stats[1].connect_failures, 1, 2 * S));
    /* without AUTH, the handshake's CLUSTER SHARDS is refused (NOAUTH) */
    assert_true(wait_counter(f, &f->stats[2].connect_failures, 1, 2 * S));
    assert_false(fg_ratelimit_redis_ready(b));
    assert_false(fg_ratelimit_redis_ready(n));
    struct fg_ratelimit_limit l = mk("auth", 1, 60 * S, 1);
    assert_int_equal(decide(f, g, &l, "k").source, FG_RATELIMIT_SRC_REDIS);
    struct fg_ratelimit_result res = decide(f, b, &l, "k");
    assert_int_equal(res.source, FG_RATELIMIT_SRC_FALLBACK);
    assert_true(res.allowed);
}

static int teardown_auth(void **state)
{
    redis_cont();
    redisReply *r = admin("s3cret", "CONFIG SET requirepass %s", "");
    if (r != NULL)
        freeReplyObject(r);
    return teardown(state);
}

static void test_select_db(void **state)
{
    struct fx *f = *state;
    struct fg_ratelimit_redis *c = client(f, 0, endpoint("redis://127.0.0.1:%d/3", redis_port));
    assert_true(wait_ready(f, c, true, 2 * S));
    struct fg_ratelimit_limit l = mk("db", 1, 60 * S, 1);
    assert_int_equal(decide(f, c, &l, "k").source, FG_RATELIMIT_SRC_REDIS);
    redisContext *a = admin_connect(NULL);
    assert_non_null(a);
    redisReply *r = redisCommand(a, "EXISTS fg:rl:db:k");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    freeReplyObject(redisCommand(a, "SELECT 3"));
    r = redisCommand(a, "EXISTS fg:rl:db:k");
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    redisFree(a);
}

/* A hung Redis (stopped, its socket still open): the answer comes back within the timeout,
 * from the local table; later decisions fall back at once; after SIGCONT it recovers. */
static void test_hung_redis_times_out(void **state)
{
    struct fx *f = *state;
    struct fg_ratelimit_redis *c = client(f, 0, NULL);
    assert_true(wait_ready(f, c, true, 2 * S));
    struct fg_ratelimit_limit l = mk("slow", 1, 60 * S, 9);
    assert_int_equal(decide(f, c, &l, "warm").source, FG_RATELIMIT_SRC_REDIS);

    redis_stop();
    struct answer a = {0};
    struct fg_ratelimit_result res;
    struct fg_ratelimit_pending *p = NULL;
    uint64_t start = fg_mono_us();
    assert_int_equal(
        fg_ratelimit_decide(f->table, c, &l, "k", 1, 1, start, &res, on_answer, &a, &p),
        FG_RATELIMIT_PENDING);
    if (!wait_answer(f, &a, 2 * S)) {
        fg_ratelimit_cancel(p);
        fail_msg("no answer from a hung Redis within 2 s");
    }
    uint64_t took = a.at_us - start;
    assert_true(took + 1000 >= TIMEOUT_MS * MS); /* it did wait for Redis */
    assert_true(took <= TIMEOUT_MS * MS + 250 * MS);
    assert_int_equal(a.res.source, FG_RATELIMIT_SRC_FALLBACK);
    assert_true(a.res.allowed);
    assert_int_equal(a.res.remaining, 9); /* the local table's own budget */
    assert_int_equal(fg_counter_get(&f->stats[0].redis_timeouts), 1);
    assert_int_equal(fg_counter_get(&f->stats[0].fallbacks), 1);
    assert_false(fg_ratelimit_redis_ready(c));

    /* meanwhile: at once, no waiting */
    assert_int_equal(
        fg_ratelimit_decide(f->table, c, &l, "k", 1, 1, fg_mono_us(), &res, on_answer, &a, &p),
        FG_RATELIMIT_DONE);
    assert_int_equal(res.source, FG_RATELIMIT_SRC_FALLBACK);
    assert_int_equal(res.remaining, 8);
    assert_int_equal(fg_counter_get(&f->stats[0].redis_skipped), 1);
    spin(f, 300 * MS); /* reconnects reach the kernel's backlog, handshakes time out */
    assert_false(fg_ratelimit_redis_ready(c));
    assert_int_equal(a.calls, 1); /* exactly once */

    redis_cont();
    assert_true(wait_ready(f, c, true, 3 * S));
    assert_int_equal(decide(f, c, &l, "after").source, FG_RATELIMIT_SRC_REDIS);
    assert_true(fg_counter_get(&f->stats[0].connects) >= 2);
}

/* A dead Redis: noticed, decisions fall back at once; back on the same port, the client
 * reconnects within the backoff bound. */
static void test_dead_redis_and_back(void **state)
{
    struct fx *f = *state;
    struct fg_ratelimit_redis *c = client(f, 0, NULL);
    assert_true(wait_ready(f, c, true, 2 * S));
    struct fg_ratelimit_limit l = mk("down", 1, 60 * S, 9);
    assert_int_equal(decide(f, c, &l, "k").source, FG_RATELIMIT_SRC_REDIS);

    redis_kill();
    assert_true(wait_ready(f, c, false, 2 * S));
    assert_int_equal(fg_counter_get(&f->stats[0].disconnects), 1);
    struct fg_ratelimit_result res;
    struct answer a = {0};
    struct fg_ratelimit_pending *p = NULL;
    assert_int_equal(
        fg_ratelimit_decide(f->table, c, &l, "k", 1, 1, fg_mono_us(), &res, on_answer, &a, &p),
        FG_RATELIMIT_DONE);
    assert_null(p);
    assert_int_equal(res.source, FG_RATELIMIT_SRC_FALLBACK);
    assert_true(res.allowed);
    /* refused reconnects, spaced by the backoff (not a busy loop) */
    spin(f, 400 * MS);
    uint64_t failures = fg_counter_get(&f->stats[0].connect_failures);
    assert_true(failures >= 2);
    assert_true(failures <= 15);

    assert_true(redis_start_on(redis_port));
    uint64_t up = fg_mono_us();
    assert_true(wait_ready(f, c, true, 2 * S));
    uint64_t took = fg_mono_us() - up;
    assert_true(took <= BACKOFF_MAX_MS * MS + 300 * MS);
    res = decide(f, c, &l, "k");
    assert_int_equal(res.source, FG_RATELIMIT_SRC_REDIS);
    assert_int_equal(res.remaining, 9); /* the new server starts empty */
    assert_int_equal(fg_counter_get(&f->stats[0].connects), 2);
    assert_int_equal(a.calls, 0);
}

static void test_nothing_listening(void **state)
{
    struct fx *f = *state;
    struct fg_ratelimit_redis *c = client(f, 0, endpoint("redis://127.0.0.1:%d", free_port()));
    struct fg_ratelimit_limit l = mk("nl", 1, 60 * S, 0);
    for (int i = 0; i < 3; i++) {
        struct fg_ratelimit_result res = decide(f, c, &l, "k");
        assert_int_equal(res.source, FG_RATELIMIT_SRC_FALLBACK);
        assert_int_equal(res.allowed, i == 0); /* the local budget applies */
    }
    assert_int_equal(fg_counter_get(&f->stats[0].redis_skipped), 3);
    spin(f, 300 * MS);
    assert_false(fg_ratelimit_redis_ready(c));
    assert_true(fg_counter_get(&f->stats[0].connect_failures) >= 2);
}

static void test_cancel_and_free_in_flight(void **state)
{
    struct fx *f = *state;
    struct fg_ratelimit_redis *c = client(f, 0, NULL);
    assert_true(wait_ready(f, c, true, 2 * S));
    struct fg_ratelimit_limit l = mk("cx", 1, 60 * S, 9);
    struct answer a = {0}, b = {0};
    struct fg_ratelimit_result res;
    struct fg_ratelimit_pending *p = NULL;
    assert_int_equal(
        fg_ratelimit_decide(f->table, c, &l, "k", 1, 1, fg_mono_us(), &res, on_answer, &a, &p),
        FG_RATELIMIT_PENDING);
    fg_ratelimit_cancel(p);
    spin(f, 100 * MS); /* the reply arrives and is discarded */
    assert_int_equal(a.calls, 0);
    assert_int_equal(fg_counter_get(&f->stats[0].redis_ok), 0);
    /* Redis did run it: the budget moved (10 at once, one used by the cancelled one) */
    assert_int_equal(decide(f, c, &l, "k").remaining, 8);

    /* freeing the client answers what is in flight, as a fallback, before returning */
    assert_int_equal(
        fg_ratelimit_decide(f->table, c, &l, "k", 1, 1, fg_mono_us(), &res, on_answer, &b, &p),
        FG_RATELIMIT_PENDING);
    fg_ratelimit_redis_free(c);
    f->c[0] = NULL;
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.res.source, FG_RATELIMIT_SRC_FALLBACK);
    assert_int_equal(fg_counter_get(&f->stats[0].redis_errors), 1);
}

static void test_max_inflight(void **state)
{
    struct fx *f = *state;
    f->opts.max_inflight = 2;
    struct fg_ratelimit_redis *c = client(f, 0, NULL);
    assert_true(wait_ready(f, c, true, 2 * S));
    struct fg_ratelimit_limit l = mk("mi", 1, 60 * S, 9);
    struct answer a[3] = {{0}};
    struct fg_ratelimit_result res;
    struct fg_ratelimit_pending *p[3];
    for (int i = 0; i < 2; i++)
        assert_int_equal(fg_ratelimit_decide(f->table, c, &l, "k", 1, 1, fg_mono_us(), &res,
                                             on_answer, &a[i], &p[i]),
                         FG_RATELIMIT_PENDING);
    assert_int_equal(fg_ratelimit_decide(f->table, c, &l, "k", 1, 1, fg_mono_us(), &res, on_answer,
                                         &a[2], &p[2]),
                     FG_RATELIMIT_DONE);
    assert_int_equal(res.source, FG_RATELIMIT_SRC_FALLBACK);
    assert_int_equal(fg_counter_get(&f->stats[0].redis_skipped), 1);
    for (int i = 0; i < 2; i++) {
        if (!wait_answer(f, &a[i], 2 * S)) {
            fg_ratelimit_cancel(p[0]);
            fg_ratelimit_cancel(p[1]);
            fail_msg("no answer");
        }
    }
    assert_int_equal(a[0].res.source, FG_RATELIMIT_SRC_REDIS);
    assert_int_equal(a[1].res.source, FG_RATELIMIT_SRC_REDIS);
    assert_int_equal(a[0].res.remaining, 9);
    assert_int_equal(a[1].res.remaining, 8); /* answered in order */
    assert_int_equal(a[2].calls, 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* sockets are written with write(2), as flashgate's main() knows */
    redis_bin = find_redis();
    if (redis_bin == NULL) {
        const char *skip = getenv("FG_SKIP_REDIS");
        if (skip != NULL && strcmp(skip, "1") == 0) {
            fprintf(stderr, "test_redis: redis-server not found; skipped (FG_SKIP_REDIS=1)\n");
            return 77;
        }
        fprintf(stderr, "test_redis: redis-server not found (looked at $FG_REDIS_SERVER, "
                        "/usr/bin/redis-server and $PATH). Install it (apt-get install "
                        "redis-server; scripts/deps.sh lists it), or set FG_SKIP_REDIS=1 to "
                        "skip this test.\n");
        return 1;
    }
    atexit(redis_kill);
    if (!redis_start()) {
        fprintf(stderr, "test_redis: could not start %s on a free 127.0.0.1 port\n", redis_bin);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_decisions_go_to_redis, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fleet_shares_one_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_script_matches_c, setup, teardown),
        cmocka_unit_test_setup_teardown(test_noscript_falls_back_to_eval, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth, setup, teardown_auth),
        cmocka_unit_test_setup_teardown(test_select_db, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hung_redis_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_redis_and_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nothing_listening, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_and_free_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_inflight, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("ratelimit redis", tests, NULL, NULL);
    redis_kill();
    return failed;
}
