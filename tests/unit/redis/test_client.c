/*
 * test_client.c — the client against real redis-server processes started by the test
 * (127.0.0.1, free ports, no persistence), with certificates made by the openssl CLI:
 *
 *  - TLS: a verified connection (SNI and name checks through proxy/tls), a certificate from
 *    an unknown CA and one for another name refused with a clear reason and counted, a
 *    server that accepts TCP but never answers (a stalled handshake) bounded by
 *    connect_timeout while commands are refused at once;
 *  - ACL users: the right password, a wrong one (WRONGPASS), none where one is needed
 *    (NOAUTH), a user without the CLUSTER command (NOPERM);
 *  - commands: pipelined in order, a deadline that fires on time on a hung server and
 *    drops the connection (the rest answered LOST at once), max_inflight, cancel, and the
 *    client freed with commands in flight;
 *  - scripts: SCRIPT LOAD once per connection, EVAL after NOSCRIPT;
 *  - pub/sub: messages, and the subscription restored after the server restarts;
 *  - a 3-master cluster made with redis-cli: keys routed to their slot's master (no
 *    redirection once the map is known), a slot migrated by hand (MIGRATING / IMPORTING /
 *    MIGRATE / SETSLOT NODE) with ASK then MOVED followed and nothing lost, keyless
 *    commands, sharded pub/sub (SSUBSCRIBE).
 *
 * redis-server missing: the test fails, unless FG_SKIP_REDIS=1 (exit 77, skipped). Every
 * wait is bounded; children die with the test (PR_SET_PDEATHSIG) and are killed at exit.
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
#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "redis/internal.h"

#define MS UINT64_C(1000)
#define S  UINT64_C(1000000)

static char dir[64];
static const char *redis_bin = "/usr/bin/redis-server";
static const char *cli_bin = "/usr/bin/redis-cli";

/* ---- processes ------------------------------------------------------------------------- */

#define MAX_PROCS 8
static pid_t procs[MAX_PROCS];

static void kill_all(void)
{
    for (int i = 0; i < MAX_PROCS; i++)
        if (procs[i] > 0) {
            kill(procs[i], SIGCONT);
            kill(procs[i], SIGKILL);
            waitpid(procs[i], NULL, 0);
            procs[i] = 0;
        }
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[4096];
    int n = snprintf(cmd, sizeof(cmd), "cd '%s' && (", dir);
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(cmd + n, sizeof(cmd) - (size_t)n, fmt, ap);
    va_end(ap);
    snprintf(cmd + n, sizeof(cmd) - (size_t)n, ") >>commands.log 2>&1");
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "test_client: command failed (see %s/commands.log): %s\n", dir, cmd);
    return rc;
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

static redisReply *admin_at(int port, const char *fmt, ...)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (c == NULL || c->err) {
        if (c != NULL)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return r;
}

static void admin_ok(int port, const char *fmt, ...)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    redisSetTimeout(c, tv);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        fail_msg("admin command on %d failed: %s", port, r ? r->str : c->errstr);
    freeReplyObject(r);
    redisFree(c);
}

/* Start redis-server with the plain port `port` (the test's side) and extra arguments,
 * NULL-terminated. Returns its slot in procs. */
static int spawn(int port, ...)
{
    const char *argv[64];
    int n = 0;
    char port_s[16], logf[128];
    snprintf(port_s, sizeof(port_s), "%d", port);
    snprintf(logf, sizeof(logf), "%s/redis-%d.log", dir, port);
    const char *base[] = {redis_bin, "--port",    port_s,         "--bind",      "127.0.0.1",
                          "--save",  "",          "--appendonly", "no",          "--dir",
                          dir,       "--logfile", logf,           "--daemonize", "no"};
    for (size_t i = 0; i < sizeof(base) / sizeof(base[0]); i++)
        argv[n++] = base[i];
    va_list ap;
    va_start(ap, port);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < 62)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    int slot = 0;
    while (slot < MAX_PROCS && procs[slot] > 0)
        slot++;
    assert_true(slot < MAX_PROCS);
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
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
        execv(redis_bin, (char *const *)argv);
        _exit(127);
    }
    procs[slot] = pid;
    uint64_t deadline = fg_mono_us() + 10 * S;
    while (fg_mono_us() < deadline) {
        redisReply *r = admin_at(port, "PING");
        if (r != NULL) {
            freeReplyObject(r);
            return slot;
        }
        usleep(10000);
    }
    fail_msg("redis-server on %d did not start (see %s)", port, logf);
    return -1;
}

static void stop_proc(int slot)
{
    if (procs[slot] > 0) {
        kill(procs[slot], SIGCONT);
        kill(procs[slot], SIGKILL);
        waitpid(procs[slot], NULL, 0);
        procs[slot] = 0;
    }
}

/* ---- the client's side -------------------------------------------------------------------- */

static struct event_base *base;

static void turn(void)
{
    event_base_loop(base, EVLOOP_NONBLOCK);
    usleep(200);
}

static bool wait_ready(struct fg_redis *r, uint64_t max_us)
{
    uint64_t end = fg_mono_us() + max_us;
    while (!fg_redis_ready(r) && fg_mono_us() < end)
        turn();
    return fg_redis_ready(r);
}

static void spin(uint64_t us)
{
    uint64_t end = fg_mono_us() + us;
    while (fg_mono_us() < end)
        turn();
}

static struct fg_redis_endpoint *endpoint(const char *name, const char *url, const char *ca,
                                          enum fg_redis_cluster_mode mode)
{
    struct fg_redis_endpoint_config c = {
        .name = name, .url = url, .ca_file = ca, .cluster = mode, .connect_timeout_ms = 300};
    char err[400];
    struct fg_redis_endpoint *ep = fg_redis_endpoint_new(&c, err, sizeof(err));
    if (ep == NULL)
        fail_msg("%s: %s", url, err);
    return ep;
}

static struct fg_redis *client(struct fg_redis_endpoint *ep)
{
    struct fg_redis_opts o = {.backoff_min_ms = 20, .backoff_max_ms = 200};
    struct fg_redis *r = fg_redis_new(base, ep, &o);
    assert_non_null(r);
    fg_redis_endpoint_unref(ep); /* the client holds its own reference */
    return r;
}

static struct fg_redis_stats stats_of(const char *name)
{
    struct fg_redis_stats s;
    char n[64];
    for (size_t i = 0; fg_redis_stats_get(i, n, sizeof(n), &s); i++)
        if (strcmp(n, name) == 0)
            return s;
    memset(&s, 0, sizeof(s));
    return s;
}

/* One answer, kept for the test to look at. */
struct answer {
    int calls;
    enum fg_redis_status st;
    int type;
    long long integer;
    char str[256];
    uint64_t at_us;
};

static void on_answer(enum fg_redis_status st, const struct redisReply *reply, void *arg)
{
    struct answer *a = arg;
    a->calls++;
    a->st = st;
    a->at_us = fg_mono_us();
    a->type = reply != NULL ? reply->type : -1;
    a->integer = reply != NULL ? reply->integer : 0;
    a->str[0] = '\0';
    if (reply != NULL && reply->str != NULL)
        snprintf(a->str, sizeof(a->str), "%.*s", (int)reply->len, reply->str);
}

static bool wait_answer(struct answer *a, uint64_t max_us)
{
    uint64_t end = fg_mono_us() + max_us;
    while (a->calls == 0 && fg_mono_us() < end)
        turn();
    return a->calls > 0;
}

/* Send argv (keyed by key, or keyless) and wait for the answer. */
static struct answer run_cmd(struct fg_redis *r, const char *key, int argc, const char **argv)
{
    struct answer a = {0};
    struct fg_redis_cmd c = {.argc = argc,
                             .argv = argv,
                             .key = key,
                             .key_len = key ? strlen(key) : 0,
                             .timeout_ms = 1000};
    struct fg_redis_req *q = fg_redis_command(r, &c, on_answer, &a);
    if (q == NULL)
        fail_msg("command %s refused", argv[0]);
    assert_int_equal(a.calls, 0); /* never from inside the call */
    if (!wait_answer(&a, 3 * S)) {
        fg_redis_cancel(q);
        fail_msg("no answer to %s", argv[0]);
    }
    assert_int_equal(a.calls, 1);
    return a;
}

#define CMD(r, key, ...)                                                                           \
    run_cmd(r, key, (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)),           \
            (const char *[]){__VA_ARGS__})

/* ---- TLS ----------------------------------------------------------------------------------- */

static int tls_plain_port, tls_port, tls_slot;
static int wrong_plain_port, wrong_tls_port;

static void start_tls_servers(void)
{
    char ca[128], crt[128], key[128], wcrt[128], wkey[128], tp[16], wtp[16];
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    snprintf(crt, sizeof(crt), "%s/server.pem", dir);
    snprintf(key, sizeof(key), "%s/server.key", dir);
    snprintf(wcrt, sizeof(wcrt), "%s/wrong.pem", dir);
    snprintf(wkey, sizeof(wkey), "%s/wrong.key", dir);
    tls_plain_port = free_port();
    tls_port = free_port();
    snprintf(tp, sizeof(tp), "%d", tls_port);
    tls_slot = spawn(tls_plain_port, "--tls-port", tp, "--tls-cert-file", crt, "--tls-key-file",
                     key, "--tls-ca-cert-file", ca, "--tls-auth-clients", "no", "--user", "app",
                     "on", ">apppw", "~*", "&*", "+@all", "--user", "nocluster", "on", ">ncpw",
                     "~*", "&*", "+@all", "-cluster", (char *)NULL);
    wrong_plain_port = free_port();
    wrong_tls_port = free_port();
    snprintf(wtp, sizeof(wtp), "%d", wrong_tls_port);
    spawn(wrong_plain_port, "--tls-port", wtp, "--tls-cert-file", wcrt, "--tls-key-file", wkey,
          "--tls-ca-cert-file", ca, "--tls-auth-clients", "no", (char *)NULL);
}

static void test_tls_verified(void **state)
{
    (void)state;
    char url[128], ca[128];
    snprintf(url, sizeof(url), "rediss://app:apppw@127.0.0.1:%d", tls_port);
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    struct fg_redis_stats before = stats_of("tls-ok");
    struct fg_redis *r = client(endpoint("tls-ok", url, ca, FG_REDIS_CLUSTER_AUTO));
    assert_true(wait_ready(r, 3 * S));
    assert_false(fg_redis_is_cluster(r));
    struct answer a = CMD(r, "k", "SET", "k", "v");
    assert_int_equal(a.st, FG_REDIS_REPLY);
    assert_string_equal(a.str, "OK");
    a = CMD(r, "k", "GET", "k");
    assert_string_equal(a.str, "v");
    a = CMD(r, NULL, "ACL", "WHOAMI");
    assert_string_equal(a.str, "app");
    struct fg_redis_stats s = stats_of("tls-ok");
    assert_int_equal(s.tls_handshakes - before.tls_handshakes, 1);
    assert_int_equal(s.tls_failures - before.tls_failures, 0);
    assert_int_equal(s.connects - before.connects, 1);
    fg_redis_free(r);
}

static void expect_tls_refused(const char *name, const char *url, const char *ca)
{
    struct fg_redis *r = client(endpoint(name, url, ca, FG_REDIS_CLUSTER_AUTO));
    spin(400 * MS);
    assert_false(fg_redis_ready(r));
    const char *argv[] = {"PING"};
    struct fg_redis_cmd c = {.argc = 1, .argv = argv, .timeout_ms = 100};
    assert_null(fg_redis_command(r, &c, on_answer, NULL)); /* refused at once, not queued */
    struct fg_redis_stats s = stats_of(name);
    assert_true(s.tls_failures >= 1);
    assert_int_equal(s.tls_handshakes, 0);
    assert_true(s.connect_failures >= 1);
    assert_int_equal(s.connects, 0);
    fg_redis_free(r);
}

static void test_tls_unknown_ca_refused(void **state)
{
    (void)state;
    char url[128], ca[128];
    snprintf(url, sizeof(url), "rediss://app:apppw@127.0.0.1:%d", tls_port);
    snprintf(ca, sizeof(ca), "%s/other.pem", dir);
    expect_tls_refused("tls-other-ca", url, ca);
    /* the system store does not know the test CA either */
    expect_tls_refused("tls-system-store", url, NULL);
}

static void test_tls_wrong_name_refused(void **state)
{
    (void)state;
    char url[128], ca[128];
    /* its certificate names elsewhere.test, not 127.0.0.1 */
    snprintf(url, sizeof(url), "rediss://127.0.0.1:%d", wrong_tls_port);
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    expect_tls_refused("tls-wrong-name", url, ca);
}

static void test_tls_port_spoken_plain(void **state)
{
    (void)state;
    /* redis:// to a TLS port: the server waits for a handshake that never comes */
    char url[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", tls_port);
    struct fg_redis *r = client(endpoint("plain-to-tls", url, NULL, FG_REDIS_CLUSTER_AUTO));
    spin(500 * MS);
    assert_false(fg_redis_ready(r));
    assert_true(stats_of("plain-to-tls").connect_failures >= 1);
    fg_redis_free(r);
}

/* A TLS endpoint that accepts TCP and never says a word: each attempt ends at
 * connect_timeout, commands are refused at once meanwhile, and the client is freed fine. */
static void test_tls_handshake_stalled(void **state)
{
    (void)state;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sin);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    assert_int_equal(listen(lfd, 16), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
    char url[128], ca[128];
    snprintf(url, sizeof(url), "rediss://127.0.0.1:%d", ntohs(sin.sin_port));
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    struct fg_redis *r = client(endpoint("stalled", url, ca, FG_REDIS_CLUSTER_AUTO));
    uint64_t start = fg_mono_us();
    const char *argv[] = {"PING"};
    struct fg_redis_cmd c = {.argc = 1, .argv = argv, .timeout_ms = 50};
    uint64_t worst = 0;
    while (fg_mono_us() - start < 800 * MS) {
        uint64_t t = fg_mono_us();
        assert_null(fg_redis_command(r, &c, on_answer, NULL));
        worst = fg_mono_us() - t > worst ? fg_mono_us() - t : worst;
        turn();
    }
    assert_true(worst < 5 * MS); /* refusing never waits */
    struct fg_redis_stats s = stats_of("stalled");
    assert_true(s.connect_failures >= 1 && s.connect_failures <= 3); /* 300 ms each, backoff */
    assert_int_equal(s.connects, 0);
    fg_redis_free(r);
    close(lfd);
}

/* ---- ACL users ---------------------------------------------------------------------------- */

static void test_acl_users(void **state)
{
    (void)state;
    char url[160], ca[128];
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    snprintf(url, sizeof(url), "rediss://app:wrong@127.0.0.1:%d", tls_port);
    struct fg_redis *bad = client(endpoint("acl-wrong", url, ca, FG_REDIS_CLUSTER_AUTO));
    snprintf(url, sizeof(url), "rediss://nocluster:ncpw@127.0.0.1:%d", tls_port);
    struct fg_redis *noperm = client(endpoint("acl-noperm", url, ca, FG_REDIS_CLUSTER_AUTO));
    snprintf(url, sizeof(url), "rediss://nocluster:ncpw@127.0.0.1:%d", tls_port);
    struct fg_redis *off = client(endpoint("acl-off", url, ca, FG_REDIS_CLUSTER_OFF));
    spin(300 * MS);
    assert_false(fg_redis_ready(bad));
    assert_true(stats_of("acl-wrong").auth_failures[FG_REDIS_AUTH_WRONGPASS] >= 1);
    /* a user that may not ask for the slot map cannot run in auto mode... */
    assert_false(fg_redis_ready(noperm));
    assert_true(stats_of("acl-noperm").auth_failures[FG_REDIS_AUTH_NOPERM] >= 1);
    /* ...but can with cluster off */
    assert_true(wait_ready(off, 2 * S));
    assert_string_equal(CMD(off, NULL, "ACL", "WHOAMI").str, "nocluster");
    fg_redis_free(bad);
    fg_redis_free(noperm);
    fg_redis_free(off);

    /* the default user protected by a password, and no password configured: NOAUTH */
    admin_ok(tls_plain_port, "CONFIG SET requirepass %s", "defpw");
    snprintf(url, sizeof(url), "rediss://127.0.0.1:%d", tls_port);
    struct fg_redis *none = client(endpoint("acl-none", url, ca, FG_REDIS_CLUSTER_AUTO));
    spin(300 * MS);
    assert_false(fg_redis_ready(none));
    assert_true(stats_of("acl-none").auth_failures[FG_REDIS_AUTH_NOAUTH] >= 1);
    fg_redis_free(none);
    snprintf(url, sizeof(url), "rediss://:defpw@127.0.0.1:%d", tls_port);
    struct fg_redis *def = client(endpoint("acl-default", url, ca, FG_REDIS_CLUSTER_AUTO));
    assert_true(wait_ready(def, 2 * S));
    assert_string_equal(CMD(def, NULL, "ACL", "WHOAMI").str, "default");
    fg_redis_free(def);
    /* put it back: the other tests use the default user without a password */
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", tls_plain_port, tv);
    assert_non_null(c);
    freeReplyObject(redisCommand(c, "AUTH defpw"));
    freeReplyObject(redisCommand(c, "CONFIG SET requirepass %s", ""));
    redisFree(c);
}

/* ---- commands, deadlines ------------------------------------------------------------------ */

struct seq {
    int n;
    long long got[200];
    int lost, timeouts;
};

static void on_seq(enum fg_redis_status st, const struct redisReply *reply, void *arg)
{
    struct seq *s = arg;
    if (st == FG_REDIS_REPLY)
        s->got[s->n++] = reply->integer;
    else if (st == FG_REDIS_LOST)
        s->lost++;
    else
        s->timeouts++;
}

static void test_pipelined_in_order(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", tls_plain_port);
    struct fg_redis *r = client(endpoint("pipe", url, NULL, FG_REDIS_CLUSTER_AUTO));
    assert_true(wait_ready(r, 2 * S));
    CMD(r, "ctr", "DEL", "ctr");
    struct seq s = {0};
    const char *argv[] = {"INCR", "ctr"};
    struct fg_redis_cmd c = {
        .argc = 2, .argv = argv, .key = "ctr", .key_len = 3, .timeout_ms = 2000};
    for (int i = 0; i < 150; i++)
        assert_non_null(fg_redis_command(r, &c, on_seq, &s));
    uint64_t end = fg_mono_us() + 3 * S;
    while (s.n < 150 && fg_mono_us() < end)
        turn();
    assert_int_equal(s.n, 150);
    for (int i = 0; i < 150; i++)
        assert_int_equal(s.got[i], i + 1);
    fg_redis_free(r);
}

/* A server that stops answering (SIGSTOP): the command's deadline fires on time, the
 * connection is dropped, the commands behind are answered LOST at once, new ones are
 * refused until the server is back. */
static void test_deadline_on_a_hung_server(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", tls_plain_port);
    struct fg_redis *r = client(endpoint("hung", url, NULL, FG_REDIS_CLUSTER_AUTO));
    assert_true(wait_ready(r, 2 * S));
    kill(procs[tls_slot], SIGSTOP);
    const char *argv[] = {"PING"};
    struct fg_redis_cmd c = {.argc = 1, .argv = argv, .timeout_ms = 40};
    struct answer first = {0}, later = {0};
    uint64_t t0 = fg_mono_us();
    assert_non_null(fg_redis_command(r, &c, on_answer, &first));
    c.timeout_ms = 5000;
    assert_non_null(fg_redis_command(r, &c, on_answer, &later));
    assert_true(wait_answer(&first, 2 * S));
    assert_int_equal(first.st, FG_REDIS_TIMEOUT);
    assert_true(first.at_us - t0 >= 40 * MS);
    assert_true(first.at_us - t0 <= 40 * MS + 100 * MS);
    /* the other one did not wait for its own 5 s */
    assert_true(wait_answer(&later, 50 * MS));
    assert_int_equal(later.st, FG_REDIS_LOST);
    assert_false(fg_redis_ready(r));
    assert_null(fg_redis_command(r, &c, on_answer, NULL));
    assert_true(stats_of("hung").timeouts >= 1);
    kill(procs[tls_slot], SIGCONT);
    assert_true(wait_ready(r, 3 * S));
    assert_string_equal(CMD(r, NULL, "PING").str, "PONG");
    fg_redis_free(r);
}

static void test_max_inflight_cancel_and_free(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", tls_plain_port);
    struct fg_redis_endpoint *ep = endpoint("inflight", url, NULL, FG_REDIS_CLUSTER_AUTO);
    struct fg_redis_opts o = {.max_inflight = 2};
    struct fg_redis *r = fg_redis_new(base, ep, &o);
    fg_redis_endpoint_unref(ep);
    assert_true(wait_ready(r, 2 * S));
    const char *argv[] = {"PING"};
    struct fg_redis_cmd c = {.argc = 1, .argv = argv, .timeout_ms = 1000};
    struct answer a = {0}, b = {0}, x = {0};
    struct fg_redis_req *qa = fg_redis_command(r, &c, on_answer, &a);
    assert_non_null(qa);
    assert_non_null(fg_redis_command(r, &c, on_answer, &b));
    assert_null(fg_redis_command(r, &c, on_answer, &x)); /* the third waits for nobody */
    fg_redis_cancel(qa);
    assert_true(wait_answer(&b, 2 * S));
    spin(50 * MS);
    assert_int_equal(a.calls, 0); /* cancelled: its answer was dropped */
    assert_int_equal(b.st, FG_REDIS_REPLY);
    /* freed with a command in flight: answered LOST before fg_redis_free returns */
    struct answer d = {0};
    assert_non_null(fg_redis_command(r, &c, on_answer, &d));
    fg_redis_free(r);
    assert_int_equal(d.calls, 1);
    assert_int_equal(d.st, FG_REDIS_LOST);
}

/* The owner frees the client from inside one of its callbacks (a reload releasing the last
 * snapshot does): the others are answered LOST at once, nothing is touched after. */
struct freer {
    struct fg_redis *r;
    int calls, lost;
};

static void on_free_me(enum fg_redis_status st, const struct redisReply *reply, void *arg)
{
    (void)reply;
    struct freer *f = arg;
    f->calls++;
    if (st == FG_REDIS_LOST)
        f->lost++;
    if (f->r != NULL) {
        struct fg_redis *r = f->r;
        f->r = NULL;
        fg_redis_free(r);
    }
}

static void test_free_from_inside_a_callback(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", tls_plain_port);
    struct fg_redis *r = client(endpoint("freer", url, NULL, FG_REDIS_CLUSTER_AUTO));
    assert_true(wait_ready(r, 2 * S));
    /* a reply: freed from the read loop, the rest of the pipeline answered LOST */
    struct freer f = {.r = r};
    const char *argv[] = {"PING"};
    struct fg_redis_cmd c = {.argc = 1, .argv = argv, .timeout_ms = 1000};
    for (int i = 0; i < 5; i++)
        assert_non_null(fg_redis_command(r, &c, on_free_me, &f));
    uint64_t end = fg_mono_us() + 2 * S;
    while (f.calls < 5 && fg_mono_us() < end)
        turn();
    assert_int_equal(f.calls, 5);
    assert_int_equal(f.lost, 4);
    assert_null(f.r);

    /* a deadline: freed from the timer callback */
    r = client(endpoint("freer2", url, NULL, FG_REDIS_CLUSTER_AUTO));
    assert_true(wait_ready(r, 2 * S));
    kill(procs[tls_slot], SIGSTOP);
    struct freer g = {.r = r};
    c.timeout_ms = 30;
    assert_non_null(fg_redis_command(r, &c, on_free_me, &g));
    c.timeout_ms = 5000;
    assert_non_null(fg_redis_command(r, &c, on_free_me, &g));
    end = fg_mono_us() + 2 * S;
    while (g.calls < 2 && fg_mono_us() < end)
        turn();
    kill(procs[tls_slot], SIGCONT);
    assert_int_equal(g.calls, 2);
    assert_null(g.r);
    spin(50 * MS); /* nothing left to fire */
}

/* ---- scripts ------------------------------------------------------------------------------- */

static void test_scripts(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", tls_plain_port);
    struct fg_redis *r = client(endpoint("scripts", url, NULL, FG_REDIS_CLUSTER_AUTO));
    assert_true(wait_ready(r, 2 * S));
    static struct fg_redis_script s;
    assert_true(fg_redis_script_init(&s, "return KEYS[1] .. '=' .. ARGV[1]"));
    /* the SHA Redis would compute */
    redisReply *sha = admin_at(tls_plain_port, "SCRIPT LOAD %s", s.source);
    assert_non_null(sha);
    assert_string_equal(sha->str, s.sha);
    freeReplyObject(sha);
    admin_ok(tls_plain_port, "SCRIPT FLUSH");
    admin_ok(tls_plain_port, "CONFIG RESETSTAT");
    const char *keys[] = {"k1"};
    const char *args[] = {"v1"};
    for (int i = 0; i < 3; i++) {
        struct answer a = {0};
        assert_non_null(fg_redis_eval(r, &s, 1, keys, NULL, 1, args, NULL, 1000, on_answer, &a));
        assert_true(wait_answer(&a, 2 * S));
        assert_string_equal(a.str, "k1=v1");
    }
    redisReply *info = admin_at(tls_plain_port, "INFO commandstats");
    assert_non_null(strstr(info->str, "cmdstat_evalsha:calls=3,"));
    assert_non_null(strstr(info->str, "cmdstat_script|load:calls=1,"));
    assert_null(strstr(info->str, "cmdstat_eval:"));
    freeReplyObject(info);
    /* flushed behind our back: EVAL once, then EVALSHA again */
    admin_ok(tls_plain_port, "SCRIPT FLUSH");
    for (int i = 0; i < 2; i++) {
        struct answer a = {0};
        assert_non_null(fg_redis_eval(r, &s, 1, keys, NULL, 1, args, NULL, 1000, on_answer, &a));
        assert_true(wait_answer(&a, 2 * S));
        assert_string_equal(a.str, "k1=v1");
    }
    info = admin_at(tls_plain_port, "INFO commandstats");
    assert_non_null(strstr(info->str, "cmdstat_eval:calls=1,"));
    assert_non_null(strstr(info->str, "cmdstat_evalsha:calls=5,"));
    freeReplyObject(info);
    assert_int_equal(stats_of("scripts").noscript, 1);
    fg_redis_free(r);
}

/* ---- pub/sub ------------------------------------------------------------------------------- */

struct inbox {
    int messages;
    char last[64];
    int up, down;
};

static void on_msg(const char *ch, size_t chl, const char *p, size_t pl, void *arg)
{
    (void)ch, (void)chl;
    struct inbox *in = arg;
    in->messages++;
    snprintf(in->last, sizeof(in->last), "%.*s", (int)pl, p);
}

static void on_sub_state(bool up, void *arg)
{
    struct inbox *in = arg;
    if (up)
        in->up++;
    else
        in->down++;
}

static bool wait_int(int *v, int at_least, uint64_t max_us)
{
    uint64_t end = fg_mono_us() + max_us;
    while (*v < at_least && fg_mono_us() < end)
        turn();
    return *v >= at_least;
}

static void publish(int port, const char *cmd, const char *ch, const char *msg)
{
    redisReply *r = admin_at(port, "%s %s %s", cmd, ch, msg);
    assert_non_null(r);
    freeReplyObject(r);
}

static void test_pubsub_survives_a_restart(void **state)
{
    (void)state;
    int port = free_port();
    int slot = spawn(port, (char *)NULL);
    char url[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
    struct fg_redis *r = client(endpoint("pubsub", url, NULL, FG_REDIS_CLUSTER_AUTO));
    struct inbox in = {0};
    struct fg_redis_sub *s = fg_redis_subscribe(r, "fg:bus", 6, false, on_msg, on_sub_state, &in);
    assert_non_null(s);
    assert_true(wait_int(&in.up, 1, 3 * S));
    publish(port, "PUBLISH", "fg:bus", "hello");
    assert_true(wait_int(&in.messages, 1, 2 * S));
    assert_string_equal(in.last, "hello");
    /* commands still work beside it (another connection) */
    assert_true(wait_ready(r, 2 * S));
    assert_string_equal(CMD(r, NULL, "PING").str, "PONG");

    stop_proc(slot);
    assert_true(wait_int(&in.down, 1, 2 * S));
    slot = spawn(port, (char *)NULL);
    assert_true(wait_int(&in.up, 2, 3 * S));
    publish(port, "PUBLISH", "fg:bus", "again");
    assert_true(wait_int(&in.messages, 2, 2 * S));
    assert_string_equal(in.last, "again");
    fg_redis_unsubscribe(s);
    publish(port, "PUBLISH", "fg:bus", "gone");
    spin(100 * MS);
    assert_int_equal(in.messages, 2);
    assert_int_equal(stats_of("pubsub").messages, 2);
    fg_redis_free(r);
    stop_proc(slot);
}

/* ---- a cluster ------------------------------------------------------------------------------ */

static int cl_port[3];

static void start_cluster(void)
{
    char cmd[512] = "";
    for (int i = 0; i < 3; i++) {
        cl_port[i] = free_port();
        char conf[128], bus[16];
        snprintf(conf, sizeof(conf), "%s/nodes-%d.conf", dir, cl_port[i]);
        snprintf(bus, sizeof(bus), "%d", free_port());
        spawn(cl_port[i], "--cluster-enabled", "yes", "--cluster-config-file", conf,
              "--cluster-node-timeout", "5000", "--cluster-port", bus, (char *)NULL);
    }
    snprintf(cmd, sizeof(cmd),
             "%s --cluster create 127.0.0.1:%d 127.0.0.1:%d 127.0.0.1:%d --cluster-yes", cli_bin,
             cl_port[0], cl_port[1], cl_port[2]);
    assert_int_equal(sh("%s", cmd), 0);
    uint64_t end = fg_mono_us() + 20 * S;
    for (int i = 0; i < 3; i++) {
        for (;;) {
            redisReply *r = admin_at(cl_port[i], "CLUSTER INFO");
            bool ok = r != NULL && strstr(r->str, "cluster_state:ok") != NULL;
            if (r != NULL)
                freeReplyObject(r);
            if (ok)
                break;
            assert_true(fg_mono_us() < end);
            usleep(50000);
        }
    }
}

/* The port of the master serving slot. */
static int owner_of(unsigned slot)
{
    redisReply *r = admin_at(cl_port[0], "CLUSTER SLOTS");
    assert_non_null(r);
    int port = -1;
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *e = r->element[i];
        if ((long long)slot >= e->element[0]->integer && (long long)slot <= e->element[1]->integer)
            port = (int)e->element[2]->element[1]->integer;
    }
    freeReplyObject(r);
    return port;
}

static void node_id(int port, char *out, size_t cap)
{
    redisReply *r = admin_at(port, "CLUSTER MYID");
    assert_non_null(r);
    snprintf(out, cap, "%s", r->str);
    freeReplyObject(r);
}

static void test_cluster_routing_and_migration(void **state)
{
    (void)state;
    char url[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d", cl_port[1]);
    struct fg_redis *r = client(endpoint("cluster", url, NULL, FG_REDIS_CLUSTER_AUTO));
    assert_true(wait_ready(r, 3 * S));
    assert_true(fg_redis_is_cluster(r));
    /* keys all over the slot space go straight to their masters */
    for (int i = 0; i < 40; i++) {
        char k[32], v[32];
        snprintf(k, sizeof(k), "key:%d", i);
        snprintf(v, sizeof(v), "%d", i);
        assert_string_equal(CMD(r, k, "SET", k, v).str, "OK");
    }
    for (int i = 0; i < 40; i++) {
        char k[32], v[32];
        snprintf(k, sizeof(k), "key:%d", i);
        snprintf(v, sizeof(v), "%d", i);
        assert_string_equal(CMD(r, k, "GET", k).str, v);
    }
    struct fg_redis_stats s0 = stats_of("cluster");
    assert_int_equal(s0.moved, 0);
    assert_int_equal(s0.ask, 0);
    /* keys of one hash tag meet in one slot: a multi-key command works */
    assert_string_equal(CMD(r, "{user9}:a", "MSET", "{user9}:a", "1", "{user9}:b", "2").str, "OK");
    assert_int_equal(CMD(r, NULL, "DBSIZE").type, REDIS_REPLY_INTEGER); /* keyless */

    /* migrate the slot of "mig" from its master to another, by hand */
    const char *key = "mig";
    unsigned slot = fg_redis_key_slot(key, 3);
    int src = owner_of(slot), dst = src == cl_port[0] ? cl_port[1] : cl_port[0];
    char src_id[64], dst_id[64];
    node_id(src, src_id, sizeof(src_id));
    node_id(dst, dst_id, sizeof(dst_id));
    assert_int_equal(CMD(r, key, "INCR", key).integer, 1);
    admin_ok(dst, "CLUSTER SETSLOT %u IMPORTING %s", slot, src_id);
    admin_ok(src, "CLUSTER SETSLOT %u MIGRATING %s", slot, dst_id);
    /* not moved yet: the source still answers */
    assert_int_equal(CMD(r, key, "INCR", key).integer, 2);
    admin_ok(src, "MIGRATE 127.0.0.1 %d %s 0 5000", dst, key);
    /* moved: the source says ASK, the target answers behind ASKING */
    struct answer a = CMD(r, key, "INCR", key);
    assert_int_equal(a.st, FG_REDIS_REPLY);
    assert_int_equal(a.type, REDIS_REPLY_INTEGER);
    assert_int_equal(a.integer, 3);
    assert_true(stats_of("cluster").ask >= 1);
    /* a script on a migrating key too (SCRIPT LOAD, then ASKING right before EVALSHA) */
    static struct fg_redis_script incr;
    assert_true(fg_redis_script_init(&incr, "return redis.call('INCR', KEYS[1])"));
    const char *keys[] = {key};
    struct answer e = {0};
    assert_non_null(fg_redis_eval(r, &incr, 1, keys, NULL, 0, NULL, NULL, 1000, on_answer, &e));
    assert_true(wait_answer(&e, 2 * S));
    assert_int_equal(e.integer, 4);
    /* done: the slot belongs to the target; the old owner answers MOVED, followed */
    for (int i = 0; i < 3; i++)
        admin_ok(cl_port[i], "CLUSTER SETSLOT %u NODE %s", slot, dst_id);
    uint64_t moved0 = stats_of("cluster").moved;
    a = CMD(r, key, "INCR", key);
    assert_int_equal(a.integer, 5);
    assert_true(stats_of("cluster").moved >= moved0 + 1);
    /* and the map is asked again: later commands go straight there */
    spin(400 * MS);
    uint64_t moved1 = stats_of("cluster").moved, ask1 = stats_of("cluster").ask;
    for (int i = 0; i < 5; i++)
        assert_int_equal(CMD(r, key, "INCR", key).integer, 6 + i);
    assert_int_equal(stats_of("cluster").moved, moved1);
    assert_int_equal(stats_of("cluster").ask, ask1);
    assert_true(stats_of("cluster").slot_map_refreshes >= 2);
    /* the value lives on the target only */
    redisReply *v = admin_at(dst, "GET %s", key);
    assert_string_equal(v->str, "10");
    freeReplyObject(v);

    /* sharded pub/sub: SSUBSCRIBE on the channel's master */
    struct inbox in = {0};
    struct fg_redis_sub *sub =
        fg_redis_subscribe(r, "fg:{shop}:bus", 13, true, on_msg, on_sub_state, &in);
    assert_true(wait_int(&in.up, 1, 3 * S));
    int ch_owner = owner_of(fg_redis_key_slot("fg:{shop}:bus", 13));
    publish(ch_owner, "SPUBLISH", "fg:{shop}:bus", "purge");
    assert_true(wait_int(&in.messages, 1, 2 * S));
    assert_string_equal(in.last, "purge");
    fg_redis_unsubscribe(sub);
    fg_redis_free(r);
}

/* ---- main ---------------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    base = event_base_new();
    snprintf(dir, sizeof(dir), "/tmp/fg-redis-client-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    if (sh("/usr/bin/openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
           "-keyout ca.key -out ca.pem -days 30 -subj '/CN=fleet test CA' -addext "
           "basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign") != 0 ||
        sh("/usr/bin/openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
           "-keyout other.key -out other.pem -days 30 -subj '/CN=other CA' -addext "
           "basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign") != 0 ||
        sh("printf 'subjectAltName=DNS:cache.fleet.test,DNS:localhost,IP:127.0.0.1\\n' > "
           "server.ext && /usr/bin/openssl req -new -newkey ec -pkeyopt "
           "ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr -subj "
           "/CN=cache.fleet.test && /usr/bin/openssl x509 -req -in server.csr -CA ca.pem -CAkey "
           "ca.key -set_serial 2 -days 30 -extfile server.ext -out server.pem") != 0 ||
        sh("printf 'subjectAltName=DNS:elsewhere.test\\n' > wrong.ext && /usr/bin/openssl req "
           "-new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout wrong.key -out "
           "wrong.csr -subj /CN=elsewhere.test && /usr/bin/openssl x509 -req -in wrong.csr -CA "
           "ca.pem -CAkey ca.key -set_serial 3 -days 30 -extfile wrong.ext -out wrong.pem") != 0)
        return -1;
    start_tls_servers();
    start_cluster();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    kill_all();
    event_base_free(base);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return -1;
    return 0;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const char *env = getenv("FG_REDIS_SERVER");
    if (env != NULL && env[0] != '\0')
        redis_bin = env;
    if (access(redis_bin, X_OK) != 0 || access(cli_bin, X_OK) != 0 ||
        access("/usr/bin/openssl", X_OK) != 0) {
        const char *skip = getenv("FG_SKIP_REDIS");
        if (skip != NULL && strcmp(skip, "1") == 0)
            return 77;
        fprintf(stderr, "test_client: needs redis-server, redis-cli and openssl (scripts/deps.sh "
                        "installs them), or FG_SKIP_REDIS=1 to skip\n");
        return 1;
    }
    atexit(kill_all);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls_verified),
        cmocka_unit_test(test_tls_unknown_ca_refused),
        cmocka_unit_test(test_tls_wrong_name_refused),
        cmocka_unit_test(test_tls_port_spoken_plain),
        cmocka_unit_test(test_tls_handshake_stalled),
        cmocka_unit_test(test_acl_users),
        cmocka_unit_test(test_pipelined_in_order),
        cmocka_unit_test(test_deadline_on_a_hung_server),
        cmocka_unit_test(test_max_inflight_cancel_and_free),
        cmocka_unit_test(test_free_from_inside_a_callback),
        cmocka_unit_test(test_scripts),
        cmocka_unit_test(test_pubsub_survives_a_restart),
        cmocka_unit_test(test_cluster_routing_and_migration),
    };
    return cmocka_run_group_tests_name("redis client", tests, group_setup, group_teardown);
}
