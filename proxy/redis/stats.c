/*
 * stats.c — the counters of each Redis endpoint, by name, process-wide: every worker's
 * clients of an endpoint add to the same set (atomic adds: these events are rare next to
 * requests), and /stats and /metrics read them. A name keeps its set across reloads.
 */
#include "redis/internal.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#define REGISTRY_MAX 64

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fg_redis_counters registry[REGISTRY_MAX];
static _Atomic size_t registry_n;

struct fg_redis_counters *fg_redis_counters_get(const char *name)
{
    struct fg_redis_counters *found = NULL;
    pthread_mutex_lock(&registry_lock);
    size_t n = atomic_load_explicit(&registry_n, memory_order_relaxed);
    for (size_t i = 0; i < n && found == NULL; i++)
        if (strcmp(registry[i].name, name) == 0)
            found = &registry[i];
    if (found == NULL && n < REGISTRY_MAX) {
        found = &registry[n];
        snprintf(found->name, sizeof(found->name), "%s", name);
        atomic_store_explicit(&registry_n, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&registry_lock);
    return found;
}

static const char *const auth_fail_names[FG_REDIS_AUTH_FAIL_COUNT] = {
    "wrongpass", "noauth", "noperm", "no_credentials", "other"};

const char *fg_redis_auth_fail_name(enum fg_redis_auth_fail f)
{
    return (unsigned)f < FG_REDIS_AUTH_FAIL_COUNT ? auth_fail_names[f] : "other";
}

size_t fg_redis_stats_count(void)
{
    return atomic_load_explicit(&registry_n, memory_order_acquire);
}

static uint64_t get(const struct fg_redis_counters *c, enum rstat k)
{
    return atomic_load_explicit(&c->v[k], memory_order_relaxed);
}

bool fg_redis_stats_get(size_t i, char *name, size_t name_cap, struct fg_redis_stats *out)
{
    if (i >= fg_redis_stats_count())
        return false;
    const struct fg_redis_counters *c = &registry[i];
    if (name != NULL)
        snprintf(name, name_cap, "%s", c->name);
    memset(out, 0, sizeof(*out));
    out->connects = get(c, RS_CONNECTS);
    out->connect_failures = get(c, RS_CONNECT_FAILURES);
    out->disconnects = get(c, RS_DISCONNECTS);
    out->tls_handshakes = get(c, RS_TLS_HANDSHAKES);
    out->tls_failures = get(c, RS_TLS_FAILURES);
    out->auth_failures[FG_REDIS_AUTH_WRONGPASS] = get(c, RS_AUTH_WRONGPASS);
    out->auth_failures[FG_REDIS_AUTH_NOAUTH] = get(c, RS_AUTH_NOAUTH);
    out->auth_failures[FG_REDIS_AUTH_NOPERM] = get(c, RS_AUTH_NOPERM);
    out->auth_failures[FG_REDIS_AUTH_NO_CREDENTIALS] = get(c, RS_AUTH_NO_CREDENTIALS);
    out->auth_failures[FG_REDIS_AUTH_OTHER] = get(c, RS_AUTH_OTHER);
    out->moved = get(c, RS_MOVED);
    out->ask = get(c, RS_ASK);
    out->slot_map_refreshes = get(c, RS_SLOT_MAP_REFRESHES);
    out->resolutions = get(c, RS_RESOLUTIONS);
    out->resolve_failures = get(c, RS_RESOLVE_FAILURES);
    out->address_changes = get(c, RS_ADDRESS_CHANGES);
    out->readonly = get(c, RS_READONLY);
    out->aged_out = get(c, RS_AGED_OUT);
    out->token_renewals = get(c, RS_TOKEN_RENEWALS);
    out->timeouts = get(c, RS_TIMEOUTS);
    out->noscript = get(c, RS_NOSCRIPT);
    out->messages = get(c, RS_MESSAGES);
    return true;
}

/* The plain counters, in the order /stats lists them; the auth failures are a family of
 * their own. */
struct stat_field {
    const char *json;   /* /stats member */
    const char *metric; /* flashgate_redis_<metric>_total */
    const char *help;
    size_t offset;
};

#define F(j, m, h)                                                                                 \
    {                                                                                              \
#j, m, h, offsetof(struct fg_redis_stats, j)                                               \
    }
static const struct stat_field fields[] = {
    F(connects, "connects", "Redis connections that completed their handshake."),
    F(connect_failures, "connect_failures",
      "Redis connections that failed (DNS, TCP, TLS, AUTH, discovery or timeout)."),
    F(disconnects, "disconnects", "Ready Redis connections lost or dropped."),
    F(tls_handshakes, "tls_handshakes", "TLS handshakes completed with Redis."),
    F(tls_failures, "tls_failures", "TLS handshakes with Redis that failed."),
    F(moved, "moved", "MOVED redirections followed (the slot map changed)."),
    F(ask, "ask", "ASK redirections followed (a slot is migrating)."),
    F(slot_map_refreshes, "slot_map_refreshes", "Cluster slot maps taken."),
    F(resolutions, "resolutions", "DNS lookups of Redis endpoint names."),
    F(resolve_failures, "resolve_failures", "DNS lookups of Redis endpoint names that failed."),
    F(address_changes, "address_changes",
      "Connections moved because the endpoint name points elsewhere."),
    F(readonly, "readonly", "READONLY answers (a failover demoted the node)."),
    F(aged_out, "aged_out", "Connections replaced at max_connection_age."),
    F(token_renewals, "token_renewals", "IAM authentication tokens minted."),
    F(timeouts, "timeouts", "Redis commands not answered within their timeout."),
    F(noscript, "noscript", "NOSCRIPT answers (a script sent again)."),
    F(messages, "messages", "Pub/sub messages received."),
};
#undef F

static uint64_t field_of(const struct fg_redis_stats *s, const struct stat_field *f)
{
    uint64_t v;
    memcpy(&v, (const char *)s + f->offset, sizeof(v));
    return v;
}

void fg_redis_stats_json(struct evbuffer *out)
{
    evbuffer_add_printf(out, "\"redis\":{");
    size_t n = fg_redis_stats_count();
    for (size_t i = 0; i < n; i++) {
        char name[64];
        struct fg_redis_stats s;
        if (!fg_redis_stats_get(i, name, sizeof(name), &s))
            break;
        evbuffer_add_printf(out, "%s\"%s\":{", i ? "," : "", name);
        for (size_t k = 0; k < FG_ARRAY_LEN(fields); k++)
            evbuffer_add_printf(out, "\"%s\":%" PRIu64 ",", fields[k].json,
                                field_of(&s, &fields[k]));
        evbuffer_add_printf(out, "\"auth_failures\":{");
        for (size_t k = 0; k < FG_REDIS_AUTH_FAIL_COUNT; k++)
            evbuffer_add_printf(out, "%s\"%s\":%" PRIu64, k ? "," : "",
                                fg_redis_auth_fail_name((enum fg_redis_auth_fail)k),
                                s.auth_failures[k]);
        evbuffer_add_printf(out, "}}");
    }
    evbuffer_add_printf(out, "}");
}

void fg_redis_stats_metrics(struct evbuffer *out)
{
    size_t n = fg_redis_stats_count();
    if (n == 0)
        return;
    struct fg_redis_stats s[REGISTRY_MAX];
    char names[REGISTRY_MAX][64];
    size_t got = 0;
    while (got < n && fg_redis_stats_get(got, names[got], sizeof(names[got]), &s[got]))
        got++;
    for (size_t k = 0; k < FG_ARRAY_LEN(fields); k++) {
        evbuffer_add_printf(out,
                            "# HELP flashgate_redis_%s_total %s\n"
                            "# TYPE flashgate_redis_%s_total counter\n",
                            fields[k].metric, fields[k].help, fields[k].metric);
        for (size_t i = 0; i < got; i++)
            evbuffer_add_printf(out, "flashgate_redis_%s_total{endpoint=\"%s\"} %" PRIu64 "\n",
                                fields[k].metric, names[i], field_of(&s[i], &fields[k]));
    }
    evbuffer_add_printf(out, "# HELP flashgate_redis_auth_failures_total Redis AUTH refusals "
                             "and tokens that could not be made, by kind.\n"
                             "# TYPE flashgate_redis_auth_failures_total counter\n");
    for (size_t i = 0; i < got; i++)
        for (size_t k = 0; k < FG_REDIS_AUTH_FAIL_COUNT; k++)
            evbuffer_add_printf(out,
                                "flashgate_redis_auth_failures_total{endpoint=\"%s\",kind=\"%s\"} "
                                "%" PRIu64 "\n",
                                names[i], fg_redis_auth_fail_name((enum fg_redis_auth_fail)k),
                                s[i].auth_failures[k]);
}
