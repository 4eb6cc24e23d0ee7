/*
 * agent.c — flashgate-agent.conf's directive table: every directive of flashgate-agent(8)
 * with its arguments, range, default and a line of description, walked by the same
 * machinery as flashgate.conf (directive.c), so both files share one syntax, one error
 * format ("file:line: message", "did you mean") and the man page check.
 *
 * The file is flat: one context, no blocks. Unlike flashgate.conf, a directive may be
 * given twice and the last value counts: agent configs are often a base file with
 * overrides appended (the packaging's and the tests' are), and the agent's first parser
 * took them that way. Defaults are set by running each directive's own handler on its
 * `def` text, so the man page cannot promise a default the code does not apply.
 */
#include "config/internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h" /* spool and frame limits */
#include "httpc/httpc.h" /* URLs */
#include "aws/aws.h"     /* region names */

#define ERR(L, line, ...) fg_conf_error((L)->d, (line), __VA_ARGS__)

#define DAY_MS  (86400ull * 1000)
#define HOUR_MS (3600ull * 1000)

/* Lines of the directives the checks after the walk point at (0: default). */
struct agent_state {
    size_t sink_line, mode_line, backoff_line, sqs_backoff_line;
};

static struct agent_state *state(struct fg_conf_loader *L)
{
    return L->state;
}

static bool set_str(struct fg_conf_loader *L, size_t line, char **slot, const char *v)
{
    char *s = strdup(v);
    if (s == NULL) {
        ERR(L, line, "out of memory");
        return false;
    }
    free(*slot);
    *slot = s;
    return true;
}

/* ---- handlers ---------------------------------------------------------------------------- */

static void h_listen(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                     const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_agent *c = obj;
    const char *v = st->args[1];
    if (v[0] != '/' || strlen(v) >= 108)
        ERR(L, st->line, "'%s' for '%s' is not an absolute unix socket path under 108 bytes", v,
            dir->name);
    else if (set_str(L, st->line, &c->listen_path, v))
        c->listen_line = st->line;
}

static void h_spool_dir(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                        const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_agent *c = obj;
    const char *v = st->args[1];
    if (v[0] != '/')
        ERR(L, st->line, "path '%s' for '%s' must be absolute", v, dir->name);
    else if (set_str(L, st->line, &c->spool_dir, v))
        c->spool_dir_line = st->line;
}

static void h_mode(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                   const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_agent *c = obj;
    const char *v = st->args[1];
    state(L)->mode_line = st->line;
    if (strcmp(v, "forward") == 0)
        c->mode = FG_CONF_AGENT_FORWARD;
    else if (strcmp(v, "drain") == 0)
        c->mode = FG_CONF_AGENT_DRAIN;
    else
        ERR(L, st->line, "invalid value '%s' for '%s' (use forward or drain)", v, dir->name);
}

static void h_sink(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                   const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_agent *c = obj;
    const char *v = st->args[1];
    state(L)->sink_line = st->line;
    if (strcmp(v, "local") == 0)
        c->sink = FG_CONF_AGENT_SINK_LOCAL;
    else if (strcmp(v, "sqs") == 0)
        c->sink = FG_CONF_AGENT_SINK_SQS;
    else
        ERR(L, st->line, "invalid value '%s' for '%s' (use local or sqs)", v, dir->name);
}

static void h_sqs_queue_url(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                            const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_agent *c = obj;
    const char *v = st->args[1];
    struct fg_url u;
    char err[300];
    if (!fg_url_parse(v, &u, err, sizeof(err))) {
        ERR(L, st->line, "invalid URL for '%s': %s", dir->name, err);
    } else if (strcmp(u.path, "/") == 0 || strchr(u.path, '?') != NULL) {
        ERR(L, st->line,
            "'%s' for '%s' has no queue path (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)", v,
            dir->name);
    } else if (set_str(L, st->line, &c->sqs_queue_url, v)) {
        size_t n = strlen(u.path);
        c->sqs_fifo = n > 5 && strcmp(u.path + n - 5, ".fifo") == 0;
    }
}

/* sqs_endpoint and imds_endpoint: http only where it cannot leave the machine, or to
 * IMDS (link-local by design). */
static void h_endpoint(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                       const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_agent *c = obj;
    const char *v = st->args[1];
    bool imds = strcmp(dir->name, "imds_endpoint") == 0;
    struct fg_url u;
    char err[300];
    if (!fg_url_parse(v, &u, err, sizeof(err)))
        ERR(L, st->line, "invalid URL for '%s': %s", dir->name, err);
    else if (!imds && !u.tls && !fg_url_is_loopback(&u))
        ERR(L, st->line, "'%s' for '%s': plain http only to a loopback address (tests); use https",
            v, dir->name);
    else
        set_str(L, st->line, imds ? &c->imds_endpoint : &c->sqs_endpoint, v);
}

static void h_sqs_region(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                         const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_agent *c = obj;
    const char *v = st->args[1];
    if (!fg_aws_region_valid(v, strlen(v)))
        ERR(L, st->line, "'%s' for '%s' is not a region name (us-east-1)", v, dir->name);
    else
        set_str(L, st->line, &c->sqs_region, v);
}

static void h_sqs_message_group(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                                const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_agent *c = obj;
    const char *v = st->args[1];
    bool hdr = strncmp(v, "header:", 7) == 0;
    const char *g = hdr ? v + 7 : v;
    size_t n = strlen(g);
    bool ok = n > 0 && n <= 128;
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)g[i] > 0x20 && (unsigned char)g[i] < 0x7f &&
             (!hdr || isalnum((unsigned char)g[i]) || strchr("!#$%&'*+-.^_`|~", g[i]));
    if (!ok)
        ERR(L, st->line,
            "'%s' for '%s' is neither a group id (1 to 128 visible ASCII characters) nor "
            "header:NAME",
            v, dir->name);
    else
        set_str(L, st->line, hdr ? &c->sqs_group_header : &c->sqs_message_group, g);
}

static void h_sqs_ca_file(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                          const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_agent *c = obj;
    const char *v = st->args[1];
    if (v[0] != '/')
        ERR(L, st->line, "path '%s' for '%s' must be absolute", v, dir->name);
    else
        set_str(L, st->line, &c->sqs_ca_file, v);
}

/* A duration in whole seconds within [lo_s, hi_s]. */
static void whole_seconds(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                          const struct fg_conf_stmt *st, uint64_t lo_s, uint64_t hi_s,
                          uint64_t *out)
{
    uint64_t ms;
    const char *v = st->args[1];
    if (!fg_parse_duration_ms(v, &ms))
        ERR(L, st->line, "invalid duration '%s' for '%s' (use ms, s, m, h or d)", v, dir->name);
    else if (ms % 1000 != 0 || ms / 1000 < lo_s || ms / 1000 > hi_s)
        ERR(L, st->line, "value %s for '%s' is not whole seconds from %llus to %llus", v, dir->name,
            (unsigned long long)lo_s, (unsigned long long)hi_s);
    else
        *out = ms / 1000;
}

static void h_visibility_timeout(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                                 const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_agent *c = obj;
    whole_seconds(L, dir, st, 1, 12 * 3600, &c->visibility_timeout_s);
}

static void h_receive_wait(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                           const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_agent *c = obj;
    whole_seconds(L, dir, st, 0, 20, &c->receive_wait_s);
}

static void h_app(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                  const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_agent *c = obj;
    const char *v = st->args[1];
    char err[160] = "";
    if (strncmp(v, "unix:", 5) == 0 || !fg_addr_parse(v, 80, &c->app, err, sizeof(err)))
        ERR(L, st->line, "'%s' for '%s' is not a host:port address%s%s", v, dir->name,
            err[0] ? ": " : "", err);
}

static void h_status_listen(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                            const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_agent *c = obj;
    const char *v = st->args[1];
    char err[160] = "";
    if (strcmp(v, "off") == 0)
        c->status_enabled = false;
    else if (strncmp(v, "unix:", 5) == 0 ||
             !fg_addr_parse(v, 9902, &c->status_addr, err, sizeof(err)))
        ERR(L, st->line, "'%s' for '%s' is neither a host:port address nor off%s%s", v, dir->name,
            err[0] ? ": " : "", err);
    else
        c->status_enabled = true;
}

static void h_error_log(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                        const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_agent *c = obj;
    const char *v = st->args[1];
    c->error_log_line = st->line;
    if (strcmp(v, "stderr") == 0) {
        free(c->error_log);
        c->error_log = NULL;
    } else if (v[0] != '/') {
        ERR(L, st->line, "'%s' for '%s' is neither stderr nor an absolute path", v, dir->name);
    } else {
        set_str(L, st->line, &c->error_log, v);
    }
    if (st->n_args == 3 && !fg_log_level_parse(st->args[2], &c->log_level))
        ERR(L, st->line, "invalid level '%s' for '%s' (use error, warn, notice, info or debug)",
            st->args[2], dir->name);
}

/* The generic handler, with the backoff lines noted for the checks after the walk. */
static void h_backoff(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                      const struct fg_conf_stmt *st, void *obj)
{
    if (strncmp(dir->name, "sqs_", 4) == 0)
        state(L)->sqs_backoff_line = st->line;
    else
        state(L)->backoff_line = st->line;
    fg_conf_h_generic(L, dir, st, obj);
}

/* ---- the table --------------------------------------------------------------------------- */

#define FIELD(member)                                                                              \
    offsetof(struct fg_conf_agent, member), sizeof(((struct fg_conf_agent *)0)->member)
#define CUSTOM(fn) FG_T_CUSTOM, 0, 0, 0, 0, fn
#define A          FG_CTX_AGENT

/* clang-format off */
static const struct fg_conf_directive agent_directives[] = {
    {"listen", A, 1, 1, FG_BLOCK_NO, true, CUSTOM(h_listen),
     "path", "/run/flashgate/agent.sock",
     "the unix socket the proxy connects to"},
    {"spool_dir", A, 1, 1, FG_BLOCK_NO, true, CUSTOM(h_spool_dir),
     "dir", "/var/lib/flashgate/spool",
     "the spool directory"},
    {"spool_max_bytes", A, 1, 1, FG_BLOCK_NO, true, FG_T_SIZE, FIELD(spool_max_bytes),
     0, UINT64_MAX, fg_conf_h_generic, "size", "1g",
     "framed bytes of records not yet handed on; 0: no limit"},
    {"spool_max_age", A, 1, 1, FG_BLOCK_NO, true, FG_T_DURATION, FIELD(spool_max_age_ms),
     0, 365 * DAY_MS, fg_conf_h_generic, "duration", "0s",
     "age of the oldest record not yet handed on; 0: no limit"},
    {"spool_segment_size", A, 1, 1, FG_BLOCK_NO, true, FG_T_SIZE, FIELD(spool_segment_size),
     4096, FG_SPOOL_SEGMENT_SIZE_MAX, fg_conf_h_generic, "size", "64m",
     "start a new segment file after this much"},
    {"max_record", A, 1, 1, FG_BLOCK_NO, true, FG_T_SIZE, FIELD(max_record),
     FG_AGENT_PROTO_RECORD_FIXED + 3, FG_SPOOL_RECORD_MAX, fg_conf_h_generic, "size", "1m",
     "largest RECORD frame taken"},
    {"commit_batch", A, 1, 1, FG_BLOCK_NO, true, FG_T_UINT, FIELD(commit_batch),
     1, 1u << 20, fg_conf_h_generic, "n", "64",
     "commit as soon as this many records wait"},
    {"commit_delay_us", A, 1, 1, FG_BLOCK_NO, true, FG_T_UINT, FIELD(commit_delay_us),
     0, 10000000, fg_conf_h_generic, "us", "500",
     "commit once the first waiting record waited this many microseconds"},
    {"dedup_window", A, 1, 1, FG_BLOCK_NO, true, FG_T_UINT, FIELD(dedup_window),
     1, 1u << 24, fg_conf_h_generic, "n", "100000",
     "idempotency keys remembered"},
    {"dedup_window_bytes", A, 1, 1, FG_BLOCK_NO, true, FG_T_SIZE, FIELD(dedup_window_bytes),
     FG_AGENT_PROTO_KEY_MAX, 1u << 30, fg_conf_h_generic, "size", "4m",
     "bytes of idempotency keys remembered"},
    {"mode", A, 1, 1, FG_BLOCK_NO, true, CUSTOM(h_mode),
     "forward | drain", "forward",
     "forward: spool the proxy's records; drain: replay an SQS queue to the app"},
    {"sink", A, 1, 1, FG_BLOCK_NO, true, CUSTOM(h_sink),
     "local | sqs", "local",
     "where spooled records go"},
    {"sqs_queue_url", A, 1, 1, FG_BLOCK_NO, true, CUSTOM(h_sqs_queue_url),
     "url", "none",
     "the SQS queue"},
    {"sqs_endpoint", A, 1, 1, FG_BLOCK_NO, true, CUSTOM(h_endpoint),
     "url", "none",
     "where SQS requests go; none: the region's endpoint"},
    {"sqs_region", A, 1, 1, FG_BLOCK_NO, true, CUSTOM(h_sqs_region),
     "name", "none",
     "the signing region; none: the queue URL's, else the instance's"},
    {"sqs_ca_file", A, 1, 1, FG_BLOCK_NO, true, CUSTOM(h_sqs_ca_file),
     "path", "none",
     "CA bundle for the SQS endpoint; none: the system store"},
    {"sqs_message_group", A, 1, 1, FG_BLOCK_NO, true, CUSTOM(h_sqs_message_group),
     "id | header:Name", "flashgate",
     "FIFO queues: the MessageGroupId, fixed or from a forwarded header"},
    {"sqs_concurrency", A, 1, 1, FG_BLOCK_NO, true, FG_T_UINT, FIELD(sqs_concurrency),
     1, 64, fg_conf_h_generic, "n", "4",
     "SendMessageBatch (or ReceiveMessage) requests in flight"},
    {"sqs_batch_max", A, 1, 1, FG_BLOCK_NO, true, FG_T_UINT, FIELD(sqs_batch_max),
     1, 10, fg_conf_h_generic, "n", "10",
     "entries per SendMessageBatch (SQS takes at most 10)"},
    {"sqs_batch_bytes", A, 1, 1, FG_BLOCK_NO, true, FG_T_SIZE, FIELD(sqs_batch_bytes),
     1024, 1u << 20, fg_conf_h_generic, "size", "256k",
     "encoded entry bytes per SendMessageBatch"},
    {"sqs_timeout", A, 1, 1, FG_BLOCK_NO, true, FG_T_DURATION, FIELD(sqs_timeout_ms),
     100, DAY_MS, fg_conf_h_generic, "duration", "10s",
     "one SQS request, connect to last byte"},
    {"sqs_backoff", A, 1, 1, FG_BLOCK_NO, true, FG_T_DURATION, FIELD(sqs_backoff_ms),
     1, DAY_MS, h_backoff, "duration", "100ms",
     "first delay after a failed or throttled batch"},
    {"sqs_backoff_max", A, 1, 1, FG_BLOCK_NO, true, FG_T_DURATION, FIELD(sqs_backoff_max_ms),
     1, DAY_MS, h_backoff, "duration", "20s",
     "longest delay after failed or throttled batches"},
    {"imds_endpoint", A, 1, 1, FG_BLOCK_NO, true, CUSTOM(h_endpoint),
     "url", FG_AWS_IMDS_DEFAULT,
     "the instance metadata service (credentials, region)"},
    {"imds_timeout", A, 1, 1, FG_BLOCK_NO, true, FG_T_DURATION, FIELD(imds_timeout_ms),
     10, HOUR_MS, fg_conf_h_generic, "duration", "2s",
     "one instance metadata request"},
    {"visibility_timeout", A, 1, 1, FG_BLOCK_NO, true, CUSTOM(h_visibility_timeout),
     "duration", "60s",
     "drain: the VisibilityTimeout asked in ReceiveMessage"},
    {"receive_wait", A, 1, 1, FG_BLOCK_NO, true, CUSTOM(h_receive_wait),
     "duration", "20s",
     "drain: ReceiveMessage's WaitTimeSeconds"},
    {"app", A, 1, 1, FG_BLOCK_NO, true, CUSTOM(h_app),
     "host:port", "127.0.0.1:3000",
     "where records are replayed (sink local, drain)"},
    {"replay_rate", A, 1, 1, FG_BLOCK_NO, true, FG_T_UINT, FIELD(replay_rate),
     0, 1000000, fg_conf_h_generic, "n", "100",
     "records replayed per second at most; 0: no limit"},
    {"replay_concurrency", A, 1, 1, FG_BLOCK_NO, true, FG_T_UINT, FIELD(replay_concurrency),
     1, 1024, fg_conf_h_generic, "n", "4",
     "replays in flight to the app"},
    {"replay_timeout", A, 1, 1, FG_BLOCK_NO, true, FG_T_DURATION, FIELD(replay_timeout_ms),
     1, DAY_MS, fg_conf_h_generic, "duration", "10s",
     "one replay, connect to last byte"},
    {"replay_backoff", A, 1, 1, FG_BLOCK_NO, true, FG_T_DURATION, FIELD(replay_backoff_ms),
     1, DAY_MS, h_backoff, "duration", "100ms",
     "first retry delay of a failed replay"},
    {"replay_backoff_max", A, 1, 1, FG_BLOCK_NO, true, FG_T_DURATION, FIELD(replay_backoff_max_ms),
     1, DAY_MS, h_backoff, "duration", "10s",
     "longest retry delay of a failed replay"},
    {"checkpoint_interval", A, 1, 1, FG_BLOCK_NO, true, FG_T_DURATION, FIELD(checkpoint_ms),
     10, HOUR_MS, fg_conf_h_generic, "duration", "1s",
     "how often the replayed position is written to disk"},
    {"status_listen", A, 1, 1, FG_BLOCK_NO, true, CUSTOM(h_status_listen),
     "host:port | off", "127.0.0.1:9902",
     "the /status and /metrics listener"},
    {"error_log", A, 1, 2, FG_BLOCK_NO, true, CUSTOM(h_error_log),
     "path | stderr [level]", "stderr notice",
     "where the log goes and the lowest level written"},
};
/* clang-format on */

#undef FIELD
#undef CUSTOM
#undef A

const struct fg_conf_schema fg_conf_agent = {
    .file = "flashgate-agent.conf",
    .dirs = agent_directives,
    .n_dirs = FG_ARRAY_LEN(agent_directives),
    .top_ctx = FG_CTX_AGENT,
};

/* ---- building ---------------------------------------------------------------------------- */

/* Run every directive's handler on its default text (split at spaces). A default that
 * does not load is a bug in the table. */
static void apply_agent_defaults(struct fg_conf_loader *L, struct fg_conf_agent *c)
{
    for (size_t i = 0; i < FG_ARRAY_LEN(agent_directives); i++) {
        const struct fg_conf_directive *dir = &agent_directives[i];
        if (strcmp(dir->def, "none") == 0)
            continue;
        char buf[256];
        snprintf(buf, sizeof(buf), "%s", dir->def);
        char *args[4] = {(char *)dir->name};
        size_t n = 1;
        for (char *save = NULL, *t = strtok_r(buf, " ", &save); t != NULL && n < 4;
             t = strtok_r(NULL, " ", &save))
            args[n++] = t;
        struct fg_conf_stmt st = {.args = args, .n_args = n, .line = 0};
        size_t before = L->d->n_errors;
        dir->handler(L, dir, &st, c);
        FG_ASSERT(L->d->n_errors == before);
    }
}

/* What no single directive can check. */
static void check_agent(struct fg_conf_loader *L, struct fg_conf_agent *c)
{
    const struct agent_state *S = state(L);
    if (c->replay_backoff_max_ms < c->replay_backoff_ms)
        ERR(L, S->backoff_line, "replay_backoff_max (%llums) is below replay_backoff (%llums)",
            (unsigned long long)c->replay_backoff_max_ms, (unsigned long long)c->replay_backoff_ms);
    if (c->sqs_backoff_max_ms < c->sqs_backoff_ms)
        ERR(L, S->sqs_backoff_line, "sqs_backoff_max (%llums) is below sqs_backoff (%llums)",
            (unsigned long long)c->sqs_backoff_max_ms, (unsigned long long)c->sqs_backoff_ms);
    bool drain = c->mode == FG_CONF_AGENT_DRAIN;
    if (c->sqs_queue_url == NULL && (c->sink == FG_CONF_AGENT_SINK_SQS || drain))
        ERR(L, drain ? S->mode_line : S->sink_line, "%s needs sqs_queue_url",
            drain ? "mode drain" : "sink sqs");
    /* A long poll must end before the request times out. */
    if (drain && c->receive_wait_s * 1000 + 5000 > c->sqs_timeout_ms)
        c->sqs_timeout_ms = c->receive_wait_s * 1000 + 5000;
}

struct fg_conf_agent *fg_conf_build_agent(struct fg_conf_diag *d, const char *name,
                                          const struct fg_conf_stmt *stmts, size_t n,
                                          bool syntax_ok)
{
    (void)syntax_ok; /* no cross-block checks that a broken syntax would make noisy */
    struct fg_conf_agent *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->path = strdup(name);
    if (c->path == NULL) {
        free(c);
        return NULL;
    }
    struct agent_state S = {0};
    struct fg_conf_loader L = {.d = d, .schema = &fg_conf_agent, .state = &S};
    apply_agent_defaults(&L, c);
    fg_conf_walk(&L, FG_CTX_AGENT, stmts, n, c, 0);
    check_agent(&L, c);
    return c;
}

void fg_config_agent_free(struct fg_conf_agent *c)
{
    if (c == NULL)
        return;
    free(c->path);
    free(c->listen_path);
    free(c->spool_dir);
    free(c->error_log);
    free(c->sqs_queue_url);
    free(c->sqs_endpoint);
    free(c->sqs_region);
    free(c->sqs_message_group);
    free(c->sqs_group_header);
    free(c->sqs_ca_file);
    free(c->imds_endpoint);
    free(c);
}
