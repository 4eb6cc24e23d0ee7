/*
 * schema.c — what each directive means. One table entry per directive and context:
 * name, where it is allowed, how many arguments, how the value is parsed and stored,
 * its default and a one-line description. The loader walks the syntax tree against the
 * table; plain values (durations, sizes, numbers, on/off, strings) are handled
 * generically, including their defaults, which are parsed from the same `def` text the
 * man page shows (tests/unit/config/test_docs.c checks the man page against the table).
 */
#include "config/internal.h"

#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/util.h>

#include "http/http.h"           /* enum fg_http_method, for the route method bits */
#include "ratelimit/ratelimit.h" /* to check limits where they are written */
#include "redis/redis.h"         /* Redis URLs checked, endpoints built at load */
#include "tls/tls.h"             /* certificates and CA files are loaded and checked here */
#include "waitroom/waitroom.h"   /* waiting room keys read and checked at load */

/* ---- the loader's state ------------------------------------------------------------------ */

struct listen_rec {
    const struct fg_addr *addr;
    size_t line;        /* of the listen directive */
    size_t server_line; /* of its server block */
};

/* What loading flashgate.conf keeps besides the config (the loader's state). */
struct load_state {
    struct fg_config *c;
    size_t *upstream_lines; /* line of each upstream block, parallel to c->upstreams */
    size_t *cache_lines;    /* likewise for c->caches */
    size_t *limit_lines;    /* likewise for c->limits */
    size_t *redis_lines;    /* likewise for c->redis */
    size_t *waitroom_lines; /* likewise for c->waitrooms */
    struct listen_rec *listens;
    size_t n_listens, cap_listens;
    size_t server_line;        /* the server block being loaded */
    size_t admin_line;         /* line of the admin listen directive, 0 = default */
    bool route_named_upstream; /* the current route had an `upstream` line */
};

#define ERR(L, line, ...) fg_conf_error((L)->d, (line), __VA_ARGS__)

static struct load_state *state(struct fg_conf_loader *L)
{
    return L->state;
}

static char *xstrdup(struct fg_conf_loader *L, const char *s, size_t line)
{
    char *r = strdup(s);
    if (r == NULL)
        ERR(L, line, "out of memory");
    return r;
}

/* ---- generic values ---------------------------------------------------------------------- */

/* The table's handler for plain values (directive.c does the work). */
static void h_generic(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                      const struct fg_conf_stmt *st, void *obj)
{
    fg_conf_h_generic(L, dir, st, obj);
}

/* key=value parameter: the value if s starts with key=, else NULL. */
static const char *param(const char *s, const char *key)
{
    size_t n = strlen(key);
    if (strncmp(s, key, n) == 0 && s[n] == '=')
        return s + n + 1;
    return NULL;
}

static bool parse_range(struct fg_conf_loader *L, size_t line, const char *what, const char *s,
                        uint64_t min, uint64_t max, uint64_t *out)
{
    if (!fg_parse_uint(s, UINT64_MAX, out)) {
        ERR(L, line, "invalid number '%s' for '%s'", s, what);
        return false;
    }
    if (*out < min || *out > max) {
        ERR(L, line, "value %s out of range %llu..%llu for '%s'", s, (unsigned long long)min,
            (unsigned long long)max, what);
        return false;
    }
    return true;
}

static bool parse_duration_arg(struct fg_conf_loader *L, size_t line, const char *what,
                               const char *s, uint64_t max, uint64_t *out)
{
    if (!fg_parse_duration_ms(s, out)) {
        ERR(L, line, "invalid duration '%s' for '%s' (use ms, s, m, h or d)", s, what);
        return false;
    }
    if (*out > max) {
        char hi[32];
        fg_conf_format_duration(max, hi, sizeof(hi));
        ERR(L, line, "value %s out of range 0s..%s for '%s'", s, hi, what);
        return false;
    }
    return true;
}

/* A file path argument: absolute, or "stderr" where allowed. */
static bool check_path(struct fg_conf_loader *L, size_t line, const char *what, const char *s)
{
    if (s[0] != '/') {
        ERR(L, line, "path '%s' for '%s' must be absolute", s, what);
        return false;
    }
    return true;
}

/* ---- main context --------------------------------------------------------------------- */

#define DAY_MS  (86400ull * 1000)
#define HOUR_MS (3600ull * 1000)

static void h_workers(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                      const struct fg_conf_stmt *st, void *obj)
{
    struct fg_config *c = obj;
    const char *v = st->args[1];
    uint64_t n;
    c->workers_line = st->line;
    if (strcmp(v, "auto") == 0) {
        c->workers = 0;
        return;
    }
    if (!fg_parse_uint(v, UINT64_MAX, &n)) {
        ERR(L, st->line, "invalid value '%s' for '%s' (use auto or a number)", v, dir->name);
        return;
    }
    if (n < 1 || n > 256) {
        ERR(L, st->line, "value %s out of range 1..256 for '%s'", v, dir->name);
        return;
    }
    c->workers = (unsigned)n;
}

static const char *const level_names[] = {"error", "warn", "notice", "info", "debug"};

static void h_error_log(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                        const struct fg_conf_stmt *st, void *obj)
{
    struct fg_config *c = obj;
    const char *path = st->args[1];
    c->error_log_line = st->line;
    if (strcmp(path, "stderr") != 0) {
        if (!check_path(L, st->line, dir->name, path))
            return;
        free(c->error_log);
        c->error_log = xstrdup(L, path, st->line);
    }
    if (st->n_args > 2) {
        const char *lv = st->args[2];
        for (size_t i = 0; i < FG_ARRAY_LEN(level_names); i++) {
            if (strcmp(lv, level_names[i]) == 0) {
                c->error_log_level = (enum fg_log_level)i;
                return;
            }
        }
        ERR(L, st->line, "invalid log level '%s' for '%s' (use error, warn, notice, info or debug)",
            lv, dir->name);
    }
}

static void h_pid_file(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                       const struct fg_conf_stmt *st, void *obj)
{
    struct fg_config *c = obj;
    if (!check_path(L, st->line, dir->name, st->args[1]))
        return;
    free(c->pid_file);
    c->pid_file = xstrdup(L, st->args[1], st->line);
    c->pid_file_line = st->line;
}

/* `limit_table_entries N;` — read at start only: its line is kept for the reload warning. */
static void h_limit_table_entries(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                                  const struct fg_conf_stmt *st, void *obj)
{
    struct fg_config *c = obj;
    if (fg_conf_set_generic(L, dir, st->args[1], st->line, obj))
        c->limit_table_entries_line = st->line;
}

/* `user name;` — whether the user exists is checked at start and by `flashgate -t`
 * (proxy/server/privs.c), not here: a config names the user of the machine it runs on. */
static void h_user(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                   const struct fg_conf_stmt *st, void *obj)
{
    struct fg_config *c = obj;
    if (!fg_conf_set_generic(L, dir, st->args[1], st->line, obj))
        return;
    c->user_line = st->line;
}

static void h_admin(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                    const struct fg_conf_stmt *st, void *obj)
{
    struct fg_config *c = obj;
    c->admin.line = st->line;
    if (st->has_block) {
        if (st->n_args > 1) {
            ERR(L, st->line, "directive '%s' takes no arguments with a block", dir->name);
            return;
        }
        c->admin.enabled = true;
        fg_conf_walk(L, FG_CTX_ADMIN, st->children, st->n_children, &c->admin, 0);
        return;
    }
    if (st->n_args != 2) {
        ERR(L, st->line, "directive '%s' needs 'on', 'off' or a block", dir->name);
        return;
    }
    if (strcmp(st->args[1], "off") == 0)
        c->admin.enabled = false;
    else if (strcmp(st->args[1], "on") == 0)
        c->admin.enabled = true;
    else
        ERR(L, st->line, "invalid value '%s' for '%s' (use on, off or a block)", st->args[1],
            dir->name);
}

/* A TCP listen address for `listen` in a server or admin block. */
static bool parse_listen_addr(struct fg_conf_loader *L, size_t line, const char *what,
                              const char *s, struct fg_addr *out)
{
    char err[256];
    if (!fg_addr_parse(s, 80, out, err, sizeof(err))) {
        ERR(L, line, "invalid address '%s' for '%s': %s", s, what, err);
        return false;
    }
    if (out->ss.ss_family == AF_UNIX) {
        ERR(L, line, "'%s' on a unix socket is not supported", what);
        return false;
    }
    return true;
}

static void h_admin_listen(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                           const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_admin *a = obj;
    if (parse_listen_addr(L, st->line, dir->name, st->args[1], &a->addr))
        state(L)->admin_line = a->line = st->line;
}

static void h_admin_agent_status(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                                 const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_admin *a = obj;
    if (strcmp(st->args[1], "off") == 0) {
        a->agent_status = false;
        return;
    }
    char err[160];
    if (!fg_addr_parse(st->args[1], 0, &a->agent_status_addr, err, sizeof(err)) ||
        a->agent_status_addr.ss.ss_family == AF_UNIX) {
        ERR(L, st->line, "invalid %s '%s' (host:port of flashgate-agent's status_listen, or off)",
            dir->name, st->args[1]);
        return;
    }
    a->agent_status = true;
}

/* ---- instance and emf ------------------------------------------------------------------ */

/* `instance_id auto | NAME;` — how this instance is named in the dashboard's summaries and
 * EMF dimensions: a CloudWatch dimension value, so visible ASCII, at most 128. */
static void h_instance_id(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                          const struct fg_conf_stmt *st, void *obj)
{
    struct fg_config *c = obj;
    const char *v = st->args[1];
    free(c->instance_id);
    c->instance_id = NULL;
    if (strcmp(v, "auto") == 0)
        return;
    size_t n = strlen(v);
    bool ok = n > 0 && n <= 128;
    for (size_t i = 0; i < n && ok; i++)
        ok = v[i] > 0x20 && v[i] < 0x7f && v[i] != '"' && v[i] != '\\';
    if (!ok) {
        ERR(L, st->line,
            "invalid %s '%s' (auto, or 1 to 128 visible ASCII characters without quotes)",
            dir->name, v);
        return;
    }
    c->instance_id = xstrdup(L, v, st->line);
}

/* `emf off;` or `emf { target ...; ... }`. */
static void h_emf(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                  const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_emf *e = &((struct fg_config *)obj)->emf;
    e->line = st->line;
    if (!st->has_block) {
        if (st->n_args != 2 || strcmp(st->args[1], "off") != 0)
            ERR(L, st->line, "directive '%s' needs 'off' or a block", dir->name);
        else
            e->enabled = false;
        return;
    }
    if (st->n_args > 1) {
        ERR(L, st->line, "directive '%s' takes no arguments with a block", dir->name);
        return;
    }
    fg_conf_apply_defaults(L, FG_CTX_EMF, e);
    fg_conf_walk(L, FG_CTX_EMF, st->children, st->n_children, e, 0);
    bool written = false; /* a bad target line said what is wrong already */
    for (size_t i = 0; i < st->n_children; i++)
        written = written || strcmp(st->children[i].args[0], "target") == 0;
    if (!written && st->closed)
        ERR(L, st->line,
            "emf block without a target (file:/path, tcp://host:port or "
            "udp://host:port)");
    e->enabled = e->target != NULL;
}

static bool valid_name(const char *name);

/* `fleet { redis NAME; ... }` (the redis block is looked up once every block is read). */
static void h_fleet(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                    const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_fleet *f = &((struct fg_config *)obj)->fleet;
    (void)dir;
    f->enabled = true; /* a second block is refused by the walk (not repeatable) */
    f->line = st->line;
    fg_conf_apply_defaults(L, FG_CTX_FLEET, f);
    f->channel = xstrdup(L, "flashgate", st->line);
    fg_conf_walk(L, FG_CTX_FLEET, st->children, st->n_children, f, 0);
    if (st->closed && f->redis_name == NULL)
        ERR(L, st->line, "fleet needs 'redis NAME;' (a redis block: the Redis the fleet shares)");
    if (st->closed && f->warm_start > f->hot_keys)
        ERR(L, st->line, "fleet: warm_start %llu is more than hot_keys %llu keeps",
            (unsigned long long)f->warm_start, (unsigned long long)f->hot_keys);
}

static void h_fleet_redis(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                          const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_fleet *f = obj;
    (void)dir;
    free(f->redis_name);
    f->redis_name = xstrdup(L, st->args[1], st->line);
    f->redis_line = st->line;
}

static void h_fleet_channel(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                            const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_fleet *f = obj;
    const char *v = st->args[1];
    if (!valid_name(v)) {
        ERR(L, st->line, "invalid %s '%s' (letters, digits, '_', '-', '.'; at most %d characters)",
            dir->name, v, FG_CONF_NAME_MAX - 1);
        return;
    }
    free(f->channel);
    f->channel = xstrdup(L, v, st->line);
}

/* `auto | on | off` for dir: 0, 1 or 2 (the order of every such enum: AUTO = 0, ON,
 * OFF), or -1 after the error. */
static int auto_on_off(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                       const struct fg_conf_stmt *st)
{
    static const char *const words[] = {"auto", "on", "off"};
    const char *v = st->args[1];
    for (int i = 0; i < 3; i++)
        if (strcmp(v, words[i]) == 0)
            return i;
    ERR(L, st->line, "invalid value '%s' for '%s' (auto, on or off)", v, dir->name);
    return -1;
}

static void h_fleet_sharded(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                            const struct fg_conf_stmt *st, void *obj)
{
    _Static_assert(FG_CONF_SHARDED_AUTO == 0 && FG_CONF_SHARDED_ON == 1 && FG_CONF_SHARDED_OFF == 2,
                   "auto_on_off's order");
    struct fg_conf_fleet *f = obj;
    int i = auto_on_off(L, dir, st);
    if (i >= 0)
        f->sharded = (enum fg_conf_fleet_sharded)i;
}

/* `target file:/path | tcp://host:port | udp://host:port;` — the port defaults to the
 * CloudWatch agent's EMF listener, 25888. */
static void h_emf_target(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                         const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_emf *e = obj;
    const char *v = st->args[1];
    char err[160];
    free(e->target);
    free(e->path);
    e->target = e->path = NULL;
    if (strncmp(v, "file:", 5) == 0) {
        if (!check_path(L, st->line, dir->name, v + 5))
            return;
        e->kind = FG_CONF_EMF_FILE;
        e->path = xstrdup(L, v + 5, st->line);
    } else if (strncmp(v, "tcp://", 6) == 0 || strncmp(v, "udp://", 6) == 0) {
        if (!fg_addr_parse(v + 6, 25888, &e->addr, err, sizeof(err)) ||
            e->addr.ss.ss_family == AF_UNIX) {
            ERR(L, st->line, "invalid %s '%s': %s", dir->name, v,
                e->addr.ss.ss_family == AF_UNIX ? "a host and port are needed" : err);
            return;
        }
        e->kind = v[0] == 't' ? FG_CONF_EMF_TCP : FG_CONF_EMF_UDP;
    } else {
        ERR(L, st->line,
            "invalid %s '%s' (file:/path, tcp://host:port or udp://host:port, e.g. the "
            "CloudWatch agent's tcp://127.0.0.1:25888)",
            dir->name, v);
        return;
    }
    e->target = xstrdup(L, v, st->line);
}

/* `dimension NAME VALUE;` — a fixed dimension; names are CloudWatch's (1 to 255
 * characters, not one of ours), values too. */
static void h_emf_dimension(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                            const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_emf *e = obj;
    const char *name = st->args[1], *value = st->args[2];
    for (size_t k = 1; k <= 2; k++) {
        const char *v = st->args[k];
        size_t n = strlen(v);
        bool ok = n > 0 && n <= 255 && v[0] != ':';
        for (size_t i = 0; i < n && ok; i++)
            ok = (unsigned char)v[i] >= 0x20 && v[i] != 0x7f;
        if (!ok) {
            ERR(L, st->line, "invalid %s %s '%s' (1 to 255 characters, not starting with ':')",
                dir->name, k == 1 ? "name" : "value", v);
            return;
        }
    }
    if (strcmp(name, "Instance") == 0 || strcmp(name, "Route") == 0 || strcmp(name, "_aws") == 0) {
        ERR(L, st->line, "%s '%s' is one flashgate sets itself", dir->name, name);
        return;
    }
    for (size_t i = 0; i < e->n_dims; i++)
        if (strcmp(e->dims[i].name, name) == 0) {
            ERR(L, st->line, "%s '%s' is given twice", dir->name, name);
            return;
        }
    if (e->n_dims == FG_CONF_EMF_DIMENSIONS) {
        ERR(L, st->line, "at most %d %s lines", FG_CONF_EMF_DIMENSIONS, dir->name);
        return;
    }
    e->dims[e->n_dims].name = xstrdup(L, name, st->line);
    e->dims[e->n_dims].value = xstrdup(L, value, st->line);
    e->n_dims++;
}

/* `namespace` and `log_group`: CloudWatch names (1 to 255 characters, no control ones). */
static void h_emf_name(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                       const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_emf *e = obj;
    const char *v = st->args[1];
    size_t n = strlen(v);
    bool ok = n > 0 && n <= 255;
    for (size_t i = 0; i < n && ok; i++)
        ok = (unsigned char)v[i] >= 0x20 && v[i] != 0x7f;
    if (ok && dir->name[0] == 'n' && strchr(v, ':') != NULL)
        ok = false; /* CloudWatch refuses a namespace with ':' */
    if (!ok) {
        ERR(L, st->line, "invalid %s '%s' (1 to 255 characters%s)", dir->name, v,
            dir->name[0] == 'n' ? ", no ':'" : "");
        return;
    }
    char **field = dir->name[0] == 'n' ? &e->ns : &e->log_group;
    free(*field);
    *field = xstrdup(L, v, st->line);
}

/* ---- upstream ------------------------------------------------------------------------- */

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= FG_CONF_NAME_MAX)
        return false;
    for (; *s != '\0'; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
            return false;
    return true;
}

static void tls_host_name(const char *addr, char *out, size_t outlen);
static void check_upstream_tls(struct fg_conf_loader *L, const struct fg_conf_stmt *st,
                               const struct fg_conf_upstream *u);

static void h_upstream(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                       const struct fg_conf_stmt *st, void *obj)
{
    struct fg_config *c = obj;
    (void)dir;
    const char *name = st->args[1];
    if (!valid_name(name)) {
        ERR(L, st->line,
            "invalid upstream name '%s' (letters, digits, '_', '-', '.'; at most "
            "%d characters)",
            name, FG_CONF_NAME_MAX - 1);
        return;
    }
    for (size_t i = 0; i < c->n_upstreams; i++) {
        if (strcmp(c->upstreams[i].name, name) == 0) {
            ERR(L, st->line, "duplicate upstream '%s' (first at line %zu)", name,
                state(L)->upstream_lines[i]);
            return;
        }
    }
    size_t idx = c->n_upstreams++;
    struct fg_conf_upstream *u = &c->upstreams[idx];
    state(L)->upstream_lines[idx] = st->line;
    snprintf(u->name, sizeof(u->name), "%s", name);
    u->index = idx;
    u->balance = FG_BALANCE_ROUND_ROBIN;
    fg_conf_apply_defaults(L, FG_CTX_UPSTREAM, u);

    size_t n_servers = 0;
    for (size_t i = 0; i < st->n_children; i++)
        if (strcmp(st->children[i].args[0], "server") == 0)
            n_servers++;
    if (n_servers > 0) {
        u->servers = calloc(n_servers, sizeof(*u->servers));
        if (u->servers == NULL) {
            ERR(L, st->line, "out of memory");
            return;
        }
    }
    fg_conf_walk(L, FG_CTX_UPSTREAM, st->children, st->n_children, u, 0);
    if (st->closed && u->n_servers == 0 && n_servers == 0)
        ERR(L, st->line, "upstream '%s' has no server", name);
    check_upstream_tls(L, st, u);
    if (u->ssl_server_name != NULL) {
        for (size_t i = 0; i < u->n_servers; i++)
            snprintf(u->servers[i].tls_name, sizeof(u->servers[i].tls_name), "%s",
                     u->ssl_server_name);
    }
}

static void h_upstream_server(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                              const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_upstream *u = obj;
    struct fg_conf_upstream_server s = {.weight = 1, .max_fails = 3, .fail_timeout_ms = 10000};
    char err[256];
    bool ok = true;
    if (!fg_addr_parse(st->args[1], 80, &s.addr, err, sizeof(err))) {
        ERR(L, st->line, "invalid address '%s' for '%s': %s", st->args[1], dir->name, err);
        ok = false;
    }
    snprintf(s.host, sizeof(s.host), "%s", st->args[1]);
    for (size_t i = 2; i < st->n_args; i++) {
        const char *a = st->args[i], *v;
        uint64_t n;
        if ((v = param(a, "weight")) != NULL) {
            ok = parse_range(L, st->line, "weight", v, 1, 1000, &n) && ok;
            s.weight = (unsigned)n;
        } else if ((v = param(a, "max_fails")) != NULL) {
            ok = parse_range(L, st->line, "max_fails", v, 0, 1000, &n) && ok;
            s.max_fails = (unsigned)n;
        } else if ((v = param(a, "fail_timeout")) != NULL) {
            ok = parse_duration_arg(L, st->line, "fail_timeout", v, DAY_MS, &n) && ok;
            s.fail_timeout_ms = n;
        } else if (strcmp(a, "ssl") == 0) {
            s.ssl = true;
        } else {
            ERR(L, st->line,
                "unknown parameter '%s' for '%s' (use weight=, max_fails=, "
                "fail_timeout=, ssl)",
                a, dir->name);
            ok = false;
        }
    }
    if (s.ssl && s.addr.ss.ss_family == AF_UNIX) {
        ERR(L, st->line, "'ssl' on a unix socket server is not supported");
        ok = false;
    }
    tls_host_name(st->args[1], s.tls_name, sizeof(s.tls_name));
    if (ok && u->servers != NULL)
        u->servers[u->n_servers++] = s;
}

/* "app.internal:443" -> "app.internal", "[::1]:443" -> "::1": the name a server's
 * certificate is checked against (and sent as SNI when it is not an address). */
static void tls_host_name(const char *addr, char *out, size_t outlen)
{
    const char *start = addr, *end;
    if (addr[0] == '[') {
        start = addr + 1;
        end = strchr(start, ']');
    } else {
        end = strrchr(addr, ':');
        if (end != NULL && strchr(addr, ':') != end)
            end = NULL; /* a bare IPv6 address */
    }
    size_t n = end != NULL ? (size_t)(end - start) : strlen(start);
    snprintf(out, outlen, "%.*s", (int)n, start);
}

/* `ssl_ca_file path;` */
static void h_ssl_ca_file(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                          const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_upstream *u = obj;
    if (!check_path(L, st->line, dir->name, st->args[1]))
        return;
    free(u->ssl_ca_file);
    u->ssl_ca_file = xstrdup(L, st->args[1], st->line);
}

/* TLS directives in an upstream without a `server ... ssl` would silently do nothing. */
static void check_upstream_tls(struct fg_conf_loader *L, const struct fg_conf_stmt *st,
                               const struct fg_conf_upstream *u)
{
    bool any = false;
    for (size_t i = 0; i < u->n_servers; i++)
        any |= u->servers[i].ssl;
    if (!any && (u->ssl_ca_file != NULL || u->ssl_server_name != NULL || !u->ssl_verify))
        ERR(L, st->line,
            "upstream '%s' has ssl_* directives but no 'server ... ssl' (add 'ssl' to the "
            "servers that speak TLS)",
            u->name);
}

static void h_balance(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                      const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_upstream *u = obj;
    if (strcmp(st->args[1], "round_robin") == 0)
        u->balance = FG_BALANCE_ROUND_ROBIN;
    else if (strcmp(st->args[1], "least_conn") == 0)
        u->balance = FG_BALANCE_LEAST_CONN;
    else
        ERR(L, st->line, "invalid value '%s' for '%s' (use round_robin or least_conn)", st->args[1],
            dir->name);
}

/* ---- server --------------------------------------------------------------------------- */

static bool addr_is_any(const struct fg_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    if (a->ss.ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr, &in6addr_any,
                      sizeof(in6addr_any)) == 0;
    return false;
}

static bool addr_same(const struct fg_addr *a, const struct fg_addr *b)
{
    return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

/* Same family and port, and one of them is the wildcard: both cannot be bound sensibly. */
static bool addr_overlaps(const struct fg_addr *a, const struct fg_addr *b)
{
    return a->ss.ss_family == b->ss.ss_family &&
           fg_addr_port((const struct sockaddr *)&a->ss) ==
               fg_addr_port((const struct sockaddr *)&b->ss) &&
           (addr_is_any(a) || addr_is_any(b));
}

static void h_listen(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                     const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_server *srv = obj;
    struct fg_conf_listen l = {.backlog = 4096, .line = st->line};
    bool ok = parse_listen_addr(L, st->line, dir->name, st->args[1], &l.addr);
    for (size_t i = 2; i < st->n_args; i++) {
        const char *a = st->args[i], *v;
        uint64_t n;
        if ((v = param(a, "backlog")) != NULL) {
            ok = parse_range(L, st->line, "backlog", v, 1, 65535, &n) && ok;
            l.backlog = (int)n;
        } else if (strcmp(a, "ssl") == 0) {
            l.ssl = true;
        } else {
            ERR(L, st->line, "unknown parameter '%s' for '%s' (use backlog=, ssl)", a, dir->name);
            ok = false;
        }
    }
    if (!ok || srv->listens == NULL)
        return;
    srv->listens[srv->n_listens] = l;
    const struct fg_addr *mine = &srv->listens[srv->n_listens].addr;
    srv->n_listens++;
    for (size_t i = 0; i < state(L)->n_listens; i++) {
        const struct listen_rec *r = &state(L)->listens[i];
        if (addr_same(r->addr, mine)) {
            ERR(L, st->line, "listen address %s is already used by the server at line %zu",
                mine->text, r->server_line);
            return;
        }
        if (addr_overlaps(r->addr, mine)) {
            ERR(L, st->line, "listen address %s overlaps %s of the server at line %zu", mine->text,
                r->addr->text, r->server_line);
            return;
        }
    }
    if (state(L)->n_listens == state(L)->cap_listens) {
        size_t cap = state(L)->cap_listens ? state(L)->cap_listens * 2 : 8;
        struct listen_rec *v = realloc(state(L)->listens, cap * sizeof(*v));
        if (v == NULL) {
            ERR(L, st->line, "out of memory");
            return;
        }
        state(L)->listens = v;
        state(L)->cap_listens = cap;
    }
    state(L)->listens[state(L)->n_listens++] =
        (struct listen_rec){.addr = mine, .line = st->line, .server_line = state(L)->server_line};
}

/* `certificate path;` — each one is paired with the certificate_key that follows it. */
static void h_certificate(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                          const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_server *srv = obj;
    if (!check_path(L, st->line, dir->name, st->args[1]))
        return;
    if (srv->n_cert_keys < srv->n_certs) {
        ERR(L, st->line, "certificate at line %zu has no certificate_key before this one",
            srv->certs[srv->n_certs - 1].line);
        return;
    }
    struct fg_conf_cert *v = realloc(srv->certs, (srv->n_certs + 1) * sizeof(*v));
    if (v == NULL) {
        ERR(L, st->line, "out of memory");
        return;
    }
    srv->certs = v;
    v[srv->n_certs] =
        (struct fg_conf_cert){.cert = xstrdup(L, st->args[1], st->line), .line = st->line};
    srv->n_certs++;
}

static void h_certificate_key(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                              const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_server *srv = obj;
    if (!check_path(L, st->line, dir->name, st->args[1]))
        return;
    if (srv->n_cert_keys >= srv->n_certs) {
        ERR(L, st->line, "certificate_key without a certificate before it");
        return;
    }
    srv->certs[srv->n_cert_keys].key_line = st->line;
    srv->certs[srv->n_cert_keys++].key = xstrdup(L, st->args[1], st->line);
}

/* `ssl_protocols TLSv1.2 TLSv1.3;`: the lowest version written is the minimum; TLS 1.3
 * is always on (a TLS 1.2-only listener has no use a modern client would notice). */
static void h_ssl_protocols(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                            const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_server *srv = obj;
    bool v12 = false, v13 = false;
    for (size_t i = 1; i < st->n_args; i++) {
        const char *a = st->args[i];
        if (strcmp(a, "TLSv1.2") == 0) {
            v12 = true;
        } else if (strcmp(a, "TLSv1.3") == 0) {
            v13 = true;
        } else if (strcmp(a, "TLSv1") == 0 || strcmp(a, "TLSv1.1") == 0 ||
                   strcmp(a, "SSLv3") == 0) {
            ERR(L, st->line,
                "'%s' is not supported: it is obsolete (RFC 8996); use TLSv1.2 and TLSv1.3", a);
            return;
        } else {
            ERR(L, st->line, "invalid value '%s' for '%s' (use TLSv1.2 and/or TLSv1.3)", a,
                dir->name);
            return;
        }
    }
    if (!v13) {
        ERR(L, st->line, "'%s' without TLSv1.3 is not supported (use TLSv1.2 TLSv1.3)", dir->name);
        return;
    }
    srv->ssl_min_version = v12 ? TLS1_2_VERSION : TLS1_3_VERSION;
}

/* After a server block: its certificates and its ssl listens must go together. */
static void check_server_tls(struct fg_conf_loader *L, const struct fg_conf_stmt *st,
                             const struct fg_conf_server *srv)
{
    bool any_ssl = false;
    for (size_t i = 0; i < srv->n_listens; i++)
        any_ssl |= srv->listens[i].ssl;
    if (srv->n_cert_keys < srv->n_certs)
        ERR(L, srv->certs[srv->n_certs - 1].line, "certificate has no certificate_key after it");
    if (any_ssl && srv->n_certs == 0)
        ERR(L, st->line,
            "server has 'listen ... ssl' but no certificate (add 'certificate' and "
            "'certificate_key')");
    if (!any_ssl && srv->n_certs > 0)
        ERR(L, srv->certs[0].line, "certificate without any 'listen ... ssl' in this server");
}

static void h_trusted_proxies(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                              const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_server *srv = obj;
    struct fg_cidr *v =
        realloc(srv->trusted_proxies, (srv->n_trusted_proxies + st->n_args) * sizeof(*v));
    if (v == NULL) {
        ERR(L, st->line, "out of memory");
        return;
    }
    srv->trusted_proxies = v;
    for (size_t i = 1; i < st->n_args; i++) {
        struct fg_cidr cidr;
        if (!fg_cidr_parse(st->args[i], &cidr)) {
            ERR(L, st->line, "invalid address or CIDR '%s' for '%s'", st->args[i], dir->name);
            continue;
        }
        srv->trusted_proxies[srv->n_trusted_proxies++] = cidr;
    }
}

static void h_access_log(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                         const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_server *srv = obj;
    const char *path = st->args[1];
    srv->access_log_line = st->line;
    if (strcmp(path, "off") == 0) {
        if (st->n_args > 2)
            ERR(L, st->line, "'%s off' takes no parameters", dir->name);
        free(srv->access_log);
        srv->access_log = NULL;
        return;
    }
    if (strcmp(path, "stderr") != 0 && !check_path(L, st->line, dir->name, path))
        return;
    for (size_t i = 2; i < st->n_args; i++) {
        const char *a = st->args[i], *v;
        if ((v = param(a, "sample")) != NULL) {
            char *end = NULL;
            double d = strtod(v, &end);
            if (v[0] == '\0' || *end != '\0' || !(d >= 0.0 && d <= 1.0) ||
                !(isdigit((unsigned char)v[0]) || v[0] == '.')) {
                ERR(L, st->line, "invalid sample '%s' for '%s' (use a fraction from 0 to 1)", v,
                    dir->name);
                continue;
            }
            srv->access_log_sample = d;
        } else if ((v = param(a, "slow")) != NULL) {
            uint64_t ms;
            if (parse_duration_arg(L, st->line, "slow", v, DAY_MS, &ms))
                srv->slow_request_ms = ms;
        } else {
            ERR(L, st->line, "unknown parameter '%s' for '%s' (use sample= or slow=)", a,
                dir->name);
        }
    }
    free(srv->access_log);
    srv->access_log = xstrdup(L, path, st->line);
}

/* ---- route ---------------------------------------------------------------------------- */

static bool prefix_normalised(const char *p)
{
    for (const char *s = p; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch <= 0x20 || ch >= 0x7f || ch == '?' || ch == '#')
            return false;
        if (ch == '/') {
            /* "//", "/./", "/../" or a trailing "/." or "/..": the normalised request
             * path never contains these, so the route could never match. */
            const char *n = s + 1;
            if (*n == '/')
                return false;
            if (n[0] == '.' && (n[1] == '/' || n[1] == '\0'))
                return false;
            if (n[0] == '.' && n[1] == '.' && (n[2] == '/' || n[2] == '\0'))
                return false;
        }
    }
    return true;
}

static const char *const method_names[] = {
    [FG_HTTP_GET] = "GET",     [FG_HTTP_HEAD] = "HEAD",     [FG_HTTP_POST] = "POST",
    [FG_HTTP_PUT] = "PUT",     [FG_HTTP_DELETE] = "DELETE", [FG_HTTP_OPTIONS] = "OPTIONS",
    [FG_HTTP_TRACE] = "TRACE", [FG_HTTP_PATCH] = "PATCH",   [FG_HTTP_CONNECT] = "CONNECT",
};

const char *fg_conf_method_name(int m)
{
    if (m < 0 || (size_t)m >= FG_ARRAY_LEN(method_names))
        return NULL;
    return method_names[m];
}

/* What an offload block queues by default: every method but the reads (GET HEAD OPTIONS
 * TRACE) and CONNECT. */
#define FG_OFFLOAD_METHODS_DEFAULT                                                                 \
    ((uint32_t)((1u << FG_HTTP_POST) | (1u << FG_HTTP_PUT) | (1u << FG_HTTP_DELETE) |              \
                (1u << FG_HTTP_PATCH) | (1u << FG_HTTP_OTHER)))

/* The methods named in st as bits (1 << enum fg_http_method); false after an error. */
static bool parse_methods(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                          const struct fg_conf_stmt *st, uint32_t *out)
{
    uint32_t bits = 0;
    bool ok = true;
    for (size_t i = 1; i < st->n_args; i++) {
        size_t m;
        for (m = 0; m < FG_ARRAY_LEN(method_names); m++)
            if (method_names[m] != NULL && strcmp(st->args[i], method_names[m]) == 0)
                break;
        if (m == FG_ARRAY_LEN(method_names)) {
            ERR(L, st->line,
                "unknown method '%s' for '%s' (use upper-case names such as GET, "
                "POST)",
                st->args[i], dir->name);
            ok = false;
            continue;
        }
        bits |= 1u << m;
    }
    *out = bits;
    return ok;
}

static void h_methods(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                      const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_route *r = obj;
    uint32_t bits;
    if (!parse_methods(L, dir, st, &bits))
        return;
    /* A route that answers GET answers HEAD too (RFC 9110 §9.3.2). */
    if (bits & (1u << FG_HTTP_GET))
        bits |= 1u << FG_HTTP_HEAD;
    r->methods = bits;
}

static void h_host(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                   const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_route *r = obj;
    const char *h = st->args[1];
    const char *p = strncmp(h, "*.", 2) == 0 ? h + 2 : h;
    bool ok = *p != '\0' && strlen(h) < 256 && *p != '.';
    for (const char *s = p; ok && *s != '\0'; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.' && *s != '_')
            ok = false;
    if (!ok) {
        ERR(L, st->line, "invalid host '%s' for '%s' (a name or *.domain, without port)", h,
            dir->name);
        return;
    }
    free(r->host);
    r->host = xstrdup(L, h, st->line);
    for (char *s = r->host; s != NULL && *s != '\0'; s++)
        *s = (char)tolower((unsigned char)*s);
    /* A trailing dot is the same name; requests are compared without it. */
    size_t n = r->host ? strlen(r->host) : 0;
    if (n > 1 && r->host[n - 1] == '.')
        r->host[n - 1] = '\0';
}

static void h_route_upstream(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                             const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_route *r = obj;
    const struct fg_config *c = state(L)->c;
    (void)dir;
    state(L)->route_named_upstream = true;
    const char *name = st->args[1];
    const char *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; i < c->n_upstreams; i++) {
        if (strcmp(c->upstreams[i].name, name) == 0) {
            r->upstream = &c->upstreams[i];
            return;
        }
        size_t d = fg_conf_edit_distance(name, c->upstreams[i].name, 2);
        if (d < best_d) {
            best_d = d;
            best = c->upstreams[i].name;
        }
    }
    if (best != NULL)
        ERR(L, st->line, "upstream '%s' is not defined (did you mean '%s'?)", name, best);
    else
        ERR(L, st->line, "upstream '%s' is not defined", name);
}

static void h_return(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                     const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_route *r = obj;
    uint64_t status;
    if (!parse_range(L, st->line, dir->name, st->args[1], 200, 599, &status))
        return;
    r->return_status = (int)status;
    free(r->return_body);
    r->return_body = NULL;
    if (st->n_args > 2)
        r->return_body = xstrdup(L, st->args[2], st->line);
}

static bool same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void route_feature_defaults(struct fg_conf_route *r);

static void h_route(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                    const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_server *srv = obj;
    (void)dir;
    const char *prefix = st->args[1];
    if (prefix[0] != '/') {
        ERR(L, st->line, "route prefix '%s' must start with '/'", prefix);
        return;
    }
    if (!prefix_normalised(prefix)) {
        ERR(L, st->line,
            "route prefix '%s' is not a normalised path (no '//', '.', '..', "
            "'?', '#' or spaces)",
            prefix);
        return;
    }
    if (srv->routes == NULL)
        return;
    struct fg_conf_route *r = &srv->routes[srv->n_routes++];
    r->prefix = xstrdup(L, prefix, st->line);
    r->methods = FG_METHOD_ALL;
    r->max_body = srv->client_max_body_size; /* the route's own line overrides it */
    r->line = st->line;
    route_feature_defaults(r);
    state(L)->route_named_upstream = false;
    fg_conf_walk(L, FG_CTX_ROUTE, st->children, st->n_children, r, 0);
    if (!st->closed)
        return;
    if (r->return_status != 0 && state(L)->route_named_upstream)
        ERR(L, st->line, "route has both 'upstream' and 'return'");
    else if (r->health && (r->return_status != 0 || state(L)->route_named_upstream))
        ERR(L, st->line, "a 'health on' route answers by itself: no 'upstream' or 'return'");
    else if (r->return_status == 0 && !state(L)->route_named_upstream && !r->health)
        ERR(L, st->line, "route needs 'upstream', 'return' or 'health on'");
    else if (r->cache.cache != NULL && !state(L)->route_named_upstream)
        ERR(L, st->line, "route has 'cache' but no 'upstream' to fill it from");
    else if (r->offload.enabled && !state(L)->route_named_upstream)
        ERR(L, st->line, "route has 'offload' but no 'upstream' to fall back to");
    else if (r->offload.enabled && r->offload.when_limited && r->n_limits == 0)
        ERR(L, st->line, "offload has 'when limited' but the route has no 'limit'");
    for (size_t i = 0; i + 1 < srv->n_routes; i++) {
        const struct fg_conf_route *o = &srv->routes[i];
        if (same_str(o->prefix, r->prefix) && same_str(o->host, r->host) &&
            (o->methods & r->methods) == r->methods) {
            ERR(L, st->line,
                "route '%s' can never match: the route at line %zu takes all "
                "its requests",
                prefix, o->line);
            break;
        }
    }
}

/* ---- offload ------------------------------------------------------------------------------ */

static void h_offload(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                      const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_route_offload *of = &((struct fg_conf_route *)obj)->offload;
    (void)dir;
    of->enabled = true;
    fg_conf_apply_defaults(L, FG_CTX_OFFLOAD, of);
    free(of->key_header);
    of->key_header = xstrdup(L, "idempotency-key", st->line);
    of->methods = FG_OFFLOAD_METHODS_DEFAULT;
    fg_conf_walk(L, FG_CTX_OFFLOAD, st->children, st->n_children, of, 0);
    if (st->closed && of->agent == NULL)
        ERR(L, st->line, "offload needs 'agent unix:/path/to/agent.sock;'");
}

static void h_offload_agent(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                            const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_route_offload *of = obj;
    const char *a = st->args[1];
    const char *path = strncmp(a, "unix:", 5) == 0 ? a + 5 : NULL;
    if (path == NULL || path[0] != '/' || strlen(path) >= 108) {
        ERR(L, st->line, "invalid %s '%s' (unix:/absolute/path, at most 107 characters)", dir->name,
            a);
        return;
    }
    free(of->agent);
    of->agent = xstrdup(L, path, st->line);
}

static void h_offload_when(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                           const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_route_offload *of = obj;
    const char *what = st->args[1];
    size_t n = st->n_args;
    if (strcmp(what, "always") == 0 && n == 2) {
        if (of->triggered)
            ERR(L, st->line, "'when always' cannot be combined with other 'when' lines");
        of->when_always = true;
        return;
    }
    if (of->when_always) {
        ERR(L, st->line, "'when always' cannot be combined with other 'when' lines");
        return;
    }
    if (strcmp(what, "inflight") == 0 && n == 3) {
        uint64_t v;
        if (!parse_range(L, st->line, dir->name, st->args[2], 0, 1000000, &v))
            return;
        of->when_inflight = true;
        of->inflight = v;
    } else if (strcmp(what, "latency") == 0 && n == 3) {
        uint64_t ms;
        if (!fg_parse_duration_ms(st->args[2], &ms) || ms < 1 || ms > HOUR_MS) {
            ERR(L, st->line, "invalid duration '%s' for 'when latency' (1ms to 1h)", st->args[2]);
            return;
        }
        of->latency_us = ms * 1000;
    } else if (strcmp(what, "failing") == 0 && n == 2) {
        of->when_failing = true;
    } else if (strcmp(what, "limited") == 0 && n == 2) {
        of->when_limited = true;
    } else {
        ERR(L, st->line,
            "invalid value for '%s' (use 'always', 'inflight N', 'latency T', 'failing' or "
            "'limited')",
            dir->name);
        return;
    }
    of->triggered = true;
}

static void h_offload_methods(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                              const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_route_offload *of = obj;
    uint32_t bits;
    if (!parse_methods(L, dir, st, &bits))
        return;
    if (bits & ~FG_OFFLOAD_METHODS_DEFAULT) {
        ERR(L, st->line,
            "'%s' in an offload block: reads (GET, HEAD, OPTIONS, TRACE) and "
            "CONNECT are never offloaded",
            dir->name);
        return;
    }
    of->methods = bits;
}

static void h_offload_fallback(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                               const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_route_offload *of = obj;
    if (strcmp(st->args[1], "pass") == 0)
        of->reject = false;
    else if (strcmp(st->args[1], "reject") == 0)
        of->reject = true;
    else
        ERR(L, st->line, "invalid value '%s' for '%s' (use pass or reject)", st->args[1],
            dir->name);
}

/* A field name (token characters), lowercased and malloc'd; NULL after an error. */
static char *field_name(struct fg_conf_loader *L, const struct fg_conf_stmt *st, const char *what,
                        const char *v)
{
    bool ok = *v != '\0' && strlen(v) < 256;
    for (const char *p = v; ok && *p != '\0'; p++)
        if (!isalnum((unsigned char)*p) && strchr("!#$%&'*+-.^_`|~", *p) == NULL)
            ok = false;
    if (!ok) {
        ERR(L, st->line, "invalid field name '%s' for '%s'", v, what);
        return NULL;
    }
    char *s = xstrdup(L, v, st->line);
    for (char *p = s; p != NULL && *p != '\0'; p++)
        *p = (char)tolower((unsigned char)*p);
    return s;
}

static void h_offload_headers(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                              const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_route_offload *of = obj;
    size_t n = st->n_args - 1;
    if (n > 32) {
        ERR(L, st->line, "'%s' names at most 32 fields", dir->name);
        return;
    }
    char **v = calloc(n, sizeof(*v));
    if (v == NULL) {
        ERR(L, st->line, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        v[i] = field_name(L, st, dir->name, st->args[i + 1]);
        if (v[i] == NULL) {
            for (size_t k = 0; k < i; k++)
                free(v[k]);
            free(v);
            return;
        }
    }
    for (size_t k = 0; k < of->n_headers; k++)
        free(of->headers[k]);
    free(of->headers);
    of->headers = v;
    of->n_headers = n;
}

static void h_offload_key_header(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                                 const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_route_offload *of = obj;
    char *s = field_name(L, st, dir->name, st->args[1]);
    if (s == NULL)
        return;
    free(of->key_header);
    of->key_header = s;
}

static void h_offload_location(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                               const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_route_offload *of = obj;
    const char *v = st->args[1];
    bool ok = v[0] == '/' && strlen(v) < 1024;
    for (const char *p = v; ok && *p != '\0'; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            ok = false;
    if (!ok) {
        ERR(L, st->line, "invalid %s '%s' (a path starting with '/', visible ASCII)", dir->name, v);
        return;
    }
    free(of->location_prefix);
    of->location_prefix = xstrdup(L, v, st->line);
}

/* ---- named blocks (cache, limit) ----------------------------------------------------------- */

/* Check a named block's name against its kind: valid, and not taken by an earlier block of
 * the same kind (names[i] at stride bytes apart, first lines in lines[]). Returns the new
 * block's index, or SIZE_MAX after reporting the error. */
static size_t named_block(struct fg_conf_loader *L, const struct fg_conf_stmt *st, const char *kind,
                          const char *names, size_t stride, size_t *n, size_t *lines)
{
    const char *name = st->args[1];
    if (!valid_name(name)) {
        ERR(L, st->line,
            "invalid %s name '%s' (letters, digits, '_', '-', '.'; at most %d characters)", kind,
            name, FG_CONF_NAME_MAX - 1);
        return SIZE_MAX;
    }
    for (size_t i = 0; i < *n; i++) {
        if (strcmp(names + i * stride, name) == 0) {
            ERR(L, st->line, "duplicate %s '%s' (first at line %zu)", kind, name, lines[i]);
            return SIZE_MAX;
        }
    }
    lines[*n] = st->line;
    return (*n)++;
}

/* ---- caches ------------------------------------------------------------------------ */

static void h_cache(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                    const struct fg_conf_stmt *st, void *obj)
{
    struct fg_config *c = obj;
    (void)dir;
    const char *name = st->args[1];
    size_t idx = named_block(L, st, "cache", c->caches[0].name, sizeof(c->caches[0]), &c->n_caches,
                             state(L)->cache_lines);
    if (idx == SIZE_MAX)
        return;
    struct fg_conf_cache *k = &c->caches[idx];
    snprintf(k->name, sizeof(k->name), "%s", name);
    k->index = idx;
    k->line = st->line;
    fg_conf_apply_defaults(L, FG_CTX_CACHE, k);
    snprintf(k->tag_fields[0], sizeof(k->tag_fields[0]), "cache-tag");
    snprintf(k->tag_fields[1], sizeof(k->tag_fields[1]), "surrogate-key");
    k->n_tag_fields = 2;
    fg_conf_walk(L, FG_CTX_CACHE, st->children, st->n_children, k, 0);
    if (st->closed && k->max_object > k->memory)
        ERR(L, st->line, "cache '%s': max_object is larger than memory", name);
}

static void h_cache_tag_field(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                              const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_cache *k = obj;
    (void)dir;
    k->n_tag_fields = 0;
    if (st->n_args == 2 && strcmp(st->args[1], "off") == 0)
        return;
    for (size_t i = 1; i < st->n_args; i++) {
        const char *v = st->args[i];
        size_t len = strlen(v);
        bool ok = len > 0 && len < sizeof(k->tag_fields[0]);
        for (const char *p = v; ok && *p != '\0'; p++)
            ok = isalnum((unsigned char)*p) || *p == '-' || *p == '_';
        if (!ok) {
            ERR(L, st->line, "invalid field name '%s' for 'tag_field' (letters, digits, '-', '_')",
                v);
            k->n_tag_fields = 0;
            return;
        }
        char *d = k->tag_fields[k->n_tag_fields++];
        for (size_t j = 0; j <= len; j++)
            d[j] = (char)tolower((unsigned char)v[j]);
    }
}

static void h_compress(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                       const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_route_compress *rc = &((struct fg_conf_route *)obj)->compress;
    (void)dir;
    rc->n = 0;
    if (st->n_args == 2 && strcmp(st->args[1], "off") == 0)
        return;
    for (size_t i = 1; i < st->n_args; i++) {
        int e = strcmp(st->args[i], "br") == 0     ? FG_CONF_ENC_BR
                : strcmp(st->args[i], "gzip") == 0 ? FG_CONF_ENC_GZIP
                                                   : 0;
        if (e == 0 || (rc->n == 1 && rc->order[0] == e) || rc->n == 2) {
            ERR(L, st->line, "invalid coding '%s' for 'compress' (br, gzip, once each; or off)",
                st->args[i]);
            rc->n = 0;
            return;
        }
        rc->order[rc->n++] = e;
    }
}

static void h_compress_types(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                             const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_route_compress *rc = &((struct fg_conf_route *)obj)->compress;
    (void)dir;
    size_t n = st->n_args - 1;
    char **v = calloc(n + 1, sizeof(*v));
    if (v == NULL) {
        ERR(L, st->line, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const char *t = st->args[i + 1];
        const char *slash = strchr(t, '/');
        if (slash == NULL || slash == t || slash[1] == '\0' || strchr(slash + 1, '/')) {
            ERR(L, st->line,
                "invalid media type '%s' for 'compress_types' (type/subtype, '*' "
                "allowed: text/*, application/*+json)",
                t);
            for (size_t k = 0; k < i; k++)
                free(v[k]);
            free(v);
            return;
        }
        v[i] = xstrdup(L, t, st->line);
    }
    for (size_t k = 0; k < rc->n_types; k++)
        free(rc->types[k]);
    free(rc->types);
    rc->types = v;
    rc->n_types = n;
}

/* `upgrade on | off | protocol ...`: which Upgrade requests become tunnels. */
static void h_upgrade(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                      const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_route *r = obj;
    (void)dir;
    for (size_t k = 0; k < r->n_upgrade_protocols; k++)
        free(r->upgrade_protocols[k]);
    free(r->upgrade_protocols);
    r->upgrade_protocols = NULL;
    r->n_upgrade_protocols = 0;
    size_t n = st->n_args - 1;
    if (n == 1 && (strcmp(st->args[1], "on") == 0 || strcmp(st->args[1], "off") == 0)) {
        r->upgrade = strcmp(st->args[1], "on") == 0;
        return;
    }
    char **v = calloc(n, sizeof(*v));
    if (v == NULL) {
        ERR(L, st->line, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const char *p = st->args[i + 1];
        bool ok = *p != '\0' && strlen(p) < 64;
        for (const char *q = p; ok && *q != '\0'; q++)
            ok = isalnum((unsigned char)*q) || strchr("!#$%&'*+-.^_`|~", *q) != NULL;
        if (!ok || strcasecmp(p, "on") == 0 || strcasecmp(p, "off") == 0) {
            ERR(L, st->line, "invalid protocol '%s' for 'upgrade' (on, off, or protocol names)", p);
        } else if (strcasecmp(p, "h2c") == 0) {
            ERR(L, st->line, "'upgrade h2c' is not supported: h2c is never tunneled");
        } else {
            v[i] = xstrdup(L, p, st->line);
            for (char *q = v[i]; q != NULL && *q != '\0'; q++)
                *q = (char)tolower((unsigned char)*q);
            continue;
        }
        for (size_t k = 0; k < i; k++)
            free(v[k]);
        free(v);
        return;
    }
    r->upgrade = true;
    r->upgrade_protocols = v;
    r->n_upgrade_protocols = n;
}

/* Route defaults of the cache and compression directives: the table's `def` texts say the same. */
static void route_feature_defaults(struct fg_conf_route *r)
{
    r->upgrade = true;
    r->tunnel_timeout_ms = 3600 * 1000;
    r->compress.min_length = 256;
    r->compress.gzip_level = 5;
    r->compress.br_level = 4;
    r->cache.lock_timeout_ms = 5000;
    r->cache.hit_for_miss_ms = 30000;
    r->cache.status_header = true;
    r->cache.status_field = true;
    r->cache.targeted = strdup("cdn-cache-control"); /* matched without case */
}

static void h_route_cache(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                          const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_route *r = obj;
    const struct fg_config *c = state(L)->c;
    (void)dir;
    const char *name = st->args[1];
    if (strcmp(name, "off") == 0) {
        r->cache.cache = NULL;
        return;
    }
    for (size_t i = 0; i < c->n_caches; i++) {
        if (strcmp(c->caches[i].name, name) == 0) {
            r->cache.cache = &c->caches[i];
            return;
        }
    }
    ERR(L, st->line, "cache '%s' is not defined (add 'cache %s { memory 256m; }')", name, name);
}

static void h_cache_ignore_params(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                                  const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_route_cache *rc = &((struct fg_conf_route *)obj)->cache;
    (void)dir;
    size_t n = st->n_args - 1;
    char **v = calloc(n, sizeof(*v));
    if (v == NULL) {
        ERR(L, st->line, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const char *p = st->args[i + 1];
        size_t len = strlen(p);
        const char *star = strchr(p, '*');
        if (len == 0 || (star != NULL && star != p + len - 1) || strchr(p, '&') || strchr(p, '=')) {
            ERR(L, st->line,
                "invalid query parameter '%s' for 'cache_key_ignore_params' (a name, or a "
                "prefix ending in '*')",
                p);
            for (size_t k = 0; k < i; k++)
                free(v[k]);
            free(v);
            return;
        }
        v[i] = xstrdup(L, p, st->line);
    }
    for (size_t k = 0; k < rc->n_ignore_params; k++)
        free(rc->ignore_params[k]);
    free(rc->ignore_params);
    rc->ignore_params = v;
    rc->n_ignore_params = n;
}

static void h_cache_targeted(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                             const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_route_cache *rc = &((struct fg_conf_route *)obj)->cache;
    (void)dir;
    const char *v = st->args[1];
    free(rc->targeted);
    rc->targeted = NULL;
    if (strcmp(v, "off") == 0)
        return;
    for (const char *p = v; *p != '\0'; p++) {
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_') {
            ERR(L, st->line, "invalid field name '%s' for 'cache_targeted_field'", v);
            return;
        }
    }
    char *s = xstrdup(L, v, st->line);
    if (s != NULL)
        for (char *p = s; *p != '\0'; p++)
            *p = (char)tolower((unsigned char)*p);
    rc->targeted = s;
}

/* ---- waiting rooms -------------------------------------------------------------------- */

static void h_waitroom(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                       const struct fg_conf_stmt *st, void *obj)
{
    struct fg_config *c = obj;
    (void)dir;
    const char *name = st->args[1];
    size_t idx = named_block(L, st, "waiting_room", c->waitrooms[0].name, sizeof(c->waitrooms[0]),
                             &c->n_waitrooms, state(L)->waitroom_lines);
    if (idx == SIZE_MAX)
        return;
    struct fg_conf_waitroom *w = &c->waitrooms[idx];
    snprintf(w->name, sizeof(w->name), "%s", name);
    w->index = idx;
    w->line = st->line;
    w->redis_timeout_ms = 100;
    fg_conf_apply_defaults(L, FG_CTX_WAITROOM, w);
    fg_conf_walk(L, FG_CTX_WAITROOM, st->children, st->n_children, w, 0);
    if (!st->closed)
        return;
    if (w->key_file == NULL)
        ERR(L, st->line,
            "waiting_room '%s' needs a key_file (a root-only file of keys, one per line: "
            "openssl rand -hex 32)",
            name);
    if (w->rate_per_ks == 0 && w->max_active == 0)
        ERR(L, st->line,
            "waiting_room '%s' needs 'admit RATE;' (for example 'admit 50/s;'), "
            "'max_active N;' or both",
            name);
}

/* `admit 50/s;` (or 3000/m; 50r/s as limits write it) */
static void h_waitroom_admit(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                             const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_waitroom *w = obj;
    (void)dir;
    char buf[64];
    const char *a = st->args[1];
    const char *slash = strchr(a, '/');
    if (slash != NULL && slash > a && slash[-1] != 'r' && (size_t)(slash - a) < 40) {
        snprintf(buf, sizeof(buf), "%.*sr%s", (int)(slash - a), a, slash);
        a = buf;
    }
    if (!fg_parse_rate(a, &w->rate_per_ks) || w->rate_per_ks == 0 ||
        w->rate_per_ks > 1000000000ull) {
        ERR(L, st->line,
            "invalid rate '%s' for 'admit' (for example 50/s or 3000/m; at most "
            "1000000/s)",
            st->args[1]);
        w->rate_per_ks = 0;
    }
}

/* `adaptive p99=800ms errors=5%;` (either or both) or `adaptive off;` */
static void h_waitroom_adaptive(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                                const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_waitroom *w = obj;
    (void)dir;
    w->p99_limit_ms = 0;
    w->err_limit_permille = 0;
    if (st->n_args == 2 && strcmp(st->args[1], "off") == 0)
        return;
    for (size_t i = 1; i < st->n_args; i++) {
        const char *v;
        if ((v = param(st->args[i], "p99")) != NULL) {
            if (parse_duration_arg(L, st->line, "p99", v, 60000, &w->p99_limit_ms) &&
                w->p99_limit_ms == 0)
                ERR(L, st->line, "'p99' of 'adaptive' must be above 0");
        } else if ((v = param(st->args[i], "errors")) != NULL) {
            double pct;
            char *end;
            pct = strtod(v, &end);
            if (end == v || strcmp(end, "%") != 0 || !(pct > 0.0 && pct <= 100.0))
                ERR(L, st->line,
                    "invalid 'errors=%s' for 'adaptive' (a share of 5xx answers "
                    "such as 5%%, above 0)",
                    v);
            else
                w->err_limit_permille = (uint64_t)(pct * 10.0 + 0.5);
        } else {
            ERR(L, st->line,
                "invalid argument '%s' for 'adaptive' (p99=DURATION, "
                "errors=PERCENT%%, or off)",
                st->args[i]);
        }
    }
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* `opens_at 2026-12-08T09:00:00Z;` (UTC) or Unix seconds, or `opens_at none;` */
static void h_waitroom_opens_at(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                                const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_waitroom *w = obj;
    (void)dir;
    const char *a = st->args[1];
    uint64_t secs;
    int y, mo, d, h, mi, se, n = 0;
    if (strcmp(a, "none") == 0) {
        w->opens_at_ms = 0;
    } else if (fg_parse_uint(a, 1ull << 40, &secs)) {
        w->opens_at_ms = (int64_t)secs * 1000;
    } else if (sscanf(a, "%4d-%2d-%2dT%2d:%2d:%2dZ%n", &y, &mo, &d, &h, &mi, &se, &n) == 6 &&
               (size_t)n == strlen(a) && y >= 1970 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31 &&
               h <= 23 && mi <= 59 && se <= 60) {
        w->opens_at_ms =
            (days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se) *
            1000;
    } else {
        ERR(L, st->line,
            "invalid time '%s' for 'opens_at' (UTC as 2026-12-08T09:00:00Z, Unix "
            "seconds, or none)",
            a);
    }
}

/* `redis NAME [timeout=100ms];`: the fleet's queue in that redis block's server */
static void h_waitroom_redis(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                             const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_waitroom *w = obj;
    (void)dir;
    if (!valid_name(st->args[1])) {
        ERR(L, st->line, "invalid redis name '%s' (a redis block's name)", st->args[1]);
        return;
    }
    for (size_t i = 2; i < st->n_args; i++) {
        const char *v = param(st->args[i], "timeout");
        if (v == NULL) {
            ERR(L, st->line, "invalid argument '%s' for 'redis' (timeout=DURATION)", st->args[i]);
            return;
        }
        if (!parse_duration_arg(L, st->line, "timeout", v, 10000, &w->redis_timeout_ms))
            return;
        if (w->redis_timeout_ms == 0) {
            ERR(L, st->line, "'timeout' of 'redis' must be above 0");
            return;
        }
    }
    free(w->redis_name);
    w->redis_name = xstrdup(L, st->args[1], st->line);
    w->redis_line = st->line;
}

/* `fallback 25% open|closed;` */
static void h_waitroom_fallback(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                                const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_waitroom *w = obj;
    (void)dir;
    char *end;
    double pct = strtod(st->args[1], &end);
    if (end == st->args[1] || strcmp(end, "%") != 0 || !(pct >= 0.0 && pct <= 100.0)) {
        ERR(L, st->line,
            "invalid share '%s' for 'fallback' (a percentage of the rate, 0%% to "
            "100%%)",
            st->args[1]);
        return;
    }
    w->fallback_permille = (uint64_t)(pct * 10.0 + 0.5);
    w->fail_closed = false;
    if (st->n_args == 3) {
        if (strcmp(st->args[2], "closed") == 0)
            w->fail_closed = true;
        else if (strcmp(st->args[2], "open") != 0)
            ERR(L, st->line, "invalid mode '%s' for 'fallback' (open or closed)", st->args[2]);
    }
}

static void h_waitroom_page(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                            const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_waitroom *w = obj;
    (void)dir;
    if (!check_path(L, st->line, "page", st->args[1]))
        return;
    FILE *f = fopen(st->args[1], "rb");
    if (f == NULL) {
        ERR(L, st->line, "page %s: cannot open: %s", st->args[1], strerror(errno));
        return;
    }
    char *text = malloc(256 * 1024 + 1);
    size_t n = text ? fread(text, 1, 256 * 1024 + 1, f) : 0;
    bool err = ferror(f);
    fclose(f);
    if (text == NULL || err || n > 256 * 1024) {
        ERR(L, st->line, "page %s: %s", st->args[1],
            text == NULL ? "out of memory"
            : err        ? "cannot read"
                         : "larger than 256k");
        free(text);
        return;
    }
    free(w->page);
    free(w->page_file);
    w->page = text;
    w->page_len = n;
    w->page_file = xstrdup(L, st->args[1], st->line);
}

static void h_waitroom_bypass_prefix(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                                     const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_waitroom *w = obj;
    (void)dir;
    for (size_t i = 1; i < st->n_args; i++) {
        if (st->args[i][0] != '/') {
            ERR(L, st->line, "bypass_prefix '%s' must start with '/'", st->args[i]);
            return;
        }
        if (w->n_bypass_prefix == FG_CONF_WAITROOM_BYPASS_MAX) {
            ERR(L, st->line, "a waiting_room has at most %d bypass prefixes",
                FG_CONF_WAITROOM_BYPASS_MAX);
            return;
        }
        w->bypass_prefix[w->n_bypass_prefix++] = xstrdup(L, st->args[i], st->line);
    }
}

static void h_waitroom_bypass_header(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                                     const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_waitroom *w = obj;
    (void)dir;
    size_t n = strlen(st->args[1]);
    if (n == 0 || n >= sizeof(w->bypass_header) || strlen(st->args[2]) < 8) {
        ERR(L, st->line,
            "bypass_header needs a header name (under %zu characters) and a value "
            "of at least 8 characters",
            sizeof(w->bypass_header));
        return;
    }
    for (size_t i = 0; i <= n; i++)
        w->bypass_header[i] = (char)tolower((unsigned char)st->args[1][i]);
    free(w->bypass_value);
    w->bypass_value = xstrdup(L, st->args[2], st->line);
}

static void h_route_waitroom(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                             const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_route *r = obj;
    struct fg_config *c = state(L)->c;
    (void)dir;
    for (size_t i = 0; i < c->n_waitrooms; i++) {
        if (strcmp(c->waitrooms[i].name, st->args[1]) == 0) {
            r->waitroom = &c->waitrooms[i];
            return;
        }
    }
    ERR(L, st->line,
        "waiting_room '%s' is not defined (add 'waiting_room %s { key_file ...; "
        "admit 50/s; }')",
        st->args[1], st->args[1]);
}

/* Keys are read once the rest is right, like Redis password files. */
static void build_waitrooms(struct fg_conf_loader *L)
{
    struct fg_config *c = state(L)->c;
    for (size_t i = 0; i < c->n_waitrooms; i++) {
        struct fg_conf_waitroom *w = &c->waitrooms[i];
        char err[512];
        w->keys = calloc(1, sizeof(*w->keys));
        if (w->keys == NULL) {
            ERR(L, w->line, "out of memory");
            continue;
        }
        if (!fg_waitroom_keys_load(w->key_file, w->keys, err, sizeof(err)))
            ERR(L, w->line, "waiting_room '%s': %s", w->name, err);
        for (size_t k = 0; w->redis_name != NULL && k < c->n_redis; k++)
            if (strcmp(c->redis[k].name, w->redis_name) == 0)
                w->redis_ep = c->redis[k].ep;
    }
}

/* `redis NAME` in a waiting room: the block it names, wherever it is. */
static void link_waitroom_redis(struct fg_conf_loader *L)
{
    struct fg_config *c = state(L)->c;
    for (size_t i = 0; i < c->n_waitrooms; i++) {
        struct fg_conf_waitroom *w = &c->waitrooms[i];
        bool found = w->redis_name == NULL;
        for (size_t k = 0; k < c->n_redis && !found; k++)
            found = strcmp(c->redis[k].name, w->redis_name) == 0;
        if (!found)
            ERR(L, w->redis_line,
                "redis '%s' is not defined (add 'redis %s { url "
                "redis://host:6379; }')",
                w->redis_name, w->redis_name);
    }
}

/* ---- rate limits ---------------------------------------------------------------------- */

static void h_limit(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                    const struct fg_conf_stmt *st, void *obj)
{
    struct fg_config *c = obj;
    (void)dir;
    const char *name = st->args[1];
    size_t idx = named_block(L, st, "limit", c->limits[0].name, sizeof(c->limits[0]), &c->n_limits,
                             state(L)->limit_lines);
    if (idx == SIZE_MAX)
        return;
    struct fg_conf_limit *l = &c->limits[idx];
    snprintf(l->name, sizeof(l->name), "%s", name);
    l->index = idx;
    l->line = st->line;
    l->redis_timeout_ms = FG_RATELIMIT_REDIS_TIMEOUT_MS;
    fg_conf_apply_defaults(L, FG_CTX_LIMIT, l);
    fg_conf_walk(L, FG_CTX_LIMIT, st->children, st->n_children, l, 0);
    if (!st->closed)
        return;
    if (l->requests == 0) {
        ERR(L, st->line, "limit '%s' needs a rate (for example 'rate 50r/s;')", name);
        return;
    }
    if (l->n_key == 0) {
        l->key[0] = FG_LIMIT_KEY_CLIENT_IP;
        l->n_key = 1;
    }
    struct fg_ratelimit_limit check;
    char err[160];
    if (!fg_ratelimit_limit_init(&check, name, l->requests, l->period_ms * 1000, l->burst,
                                 FG_RATELIMIT_LOCAL, err, sizeof(err)))
        ERR(L, st->line, "limit '%s': %s", name, err);
}

static void h_limit_key(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                        const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_limit *l = obj;
    (void)dir;
    l->n_key = 0;
    for (size_t i = 1; i < st->n_args; i++) {
        const char *a = st->args[i];
        if (l->n_key == FG_CONF_LIMIT_KEY_PARTS) {
            ERR(L, st->line, "a limit key has at most %d parts", FG_CONF_LIMIT_KEY_PARTS);
            return;
        }
        size_t k = l->n_key;
        if (strcmp(a, "client_ip") == 0) {
            l->key[k] = FG_LIMIT_KEY_CLIENT_IP;
        } else if (strcmp(a, "route") == 0) {
            l->key[k] = FG_LIMIT_KEY_ROUTE;
        } else if (strcmp(a, "header") == 0 || strcmp(a, "cookie") == 0) {
            if (i + 1 >= st->n_args || strlen(st->args[i + 1]) >= sizeof(l->key_name[0])) {
                ERR(L, st->line, "'%s' in a limit key needs a name after it", a);
                return;
            }
            l->key[k] = a[0] == 'h' ? FG_LIMIT_KEY_HEADER : FG_LIMIT_KEY_COOKIE;
            const char *n = st->args[++i];
            size_t j = 0;
            for (; n[j] != '\0'; j++)
                l->key_name[k][j] = (char)(a[0] == 'h' ? tolower((unsigned char)n[j]) : n[j]);
            l->key_name[k][j] = '\0';
        } else {
            ERR(L, st->line,
                "invalid limit key part '%s' (client_ip, header NAME, cookie NAME or route)", a);
            return;
        }
        l->n_key++;
    }
}

static void h_limit_rate(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                         const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_limit *l = obj;
    (void)dir;
    const char *s = st->args[1];
    char *end = NULL;
    unsigned long long n = strtoull(s, &end, 10);
    uint64_t period = 0;
    if (end != s && end != NULL && s[0] >= '0' && s[0] <= '9') {
        if (strcmp(end, "r/s") == 0)
            period = 1000;
        else if (strcmp(end, "r/m") == 0 || strcmp(end, "r/min") == 0)
            period = 60000;
        else if (strcmp(end, "r/h") == 0)
            period = 3600000;
    }
    if (period == 0 || n == 0 || n > UINT32_MAX) {
        ERR(L, st->line,
            "invalid rate '%s' (use requests per second, minute or hour: 50r/s, "
            "600r/m, 1000r/h)",
            s);
        return;
    }
    l->requests = n;
    l->period_ms = period;
}

/* ---- Redis endpoints ------------------------------------------------------------------ */

static size_t count_named(const struct fg_conf_stmt *stmts, size_t n, const char *name);

static bool redis_url_ok(struct fg_conf_loader *L, size_t line, const char *url)
{
    struct fg_redis_url u;
    char err[256];
    if (!fg_redis_url_parse(url, &u, err, sizeof(err))) {
        ERR(L, line, "%s", err);
        return false;
    }
    return true;
}

static void redis_defaults(struct fg_conf_redis *rd)
{
    rd->connect_timeout_ms = 1000;
    rd->resolve_interval_ms = 5000;
}

static void h_redis(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                    const struct fg_conf_stmt *st, void *obj)
{
    struct fg_config *c = obj;
    (void)dir;
    const char *name = st->args[1];
    size_t idx = named_block(L, st, "redis", c->redis[0].name, sizeof(c->redis[0]), &c->n_redis,
                             state(L)->redis_lines);
    if (idx == SIZE_MAX)
        return;
    struct fg_conf_redis *rd = &c->redis[idx];
    snprintf(rd->name, sizeof(rd->name), "%s", name);
    rd->line = st->line;
    redis_defaults(rd);
    fg_conf_apply_defaults(L, FG_CTX_REDIS, rd);
    fg_conf_walk(L, FG_CTX_REDIS, st->children, st->n_children, rd, 0);
    /* "needs a url" only when none was written (a wrong one has its own message) */
    if (st->closed && count_named(st->children, st->n_children, "url") == 0)
        ERR(L, st->line, "redis '%s' needs a url (for example 'url rediss://host:6379;')", name);
}

static void h_redis_url(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                        const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_redis *rd = obj;
    (void)dir;
    if (!redis_url_ok(L, st->line, st->args[1]))
        return;
    free(rd->url);
    rd->url = xstrdup(L, st->args[1], st->line);
}

static void h_redis_auth(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                         const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_redis *rd = obj;
    (void)dir;
    if (strcmp(st->args[1], "iam") != 0) {
        ERR(L, st->line,
            "use 'auth iam user=ID cache=NAME [serverless] [region=REGION];' (a password "
            "goes in password_file)");
        return;
    }
    const char *user = NULL, *cache = NULL, *region = NULL;
    bool serverless = false;
    for (size_t i = 2; i < st->n_args; i++) {
        const char *a = st->args[i], *v;
        if ((v = param(a, "user")) != NULL && v[0] != '\0' && strlen(v) < 128)
            user = v;
        else if ((v = param(a, "cache")) != NULL && v[0] != '\0' && strlen(v) < 128)
            cache = v;
        else if ((v = param(a, "region")) != NULL && fg_aws_region_valid(v, strlen(v)))
            region = v;
        else if (strcmp(a, "serverless") == 0)
            serverless = true;
        else {
            ERR(L, st->line,
                "invalid auth iam parameter '%s' (user=ID, cache=NAME, serverless, "
                "region=REGION)",
                a);
            return;
        }
    }
    if (user == NULL || cache == NULL) {
        ERR(L, st->line, "auth iam needs user=ID and cache=NAME");
        return;
    }
    free(rd->iam_user);
    free(rd->iam_cache);
    free(rd->iam_region);
    rd->iam_user = xstrdup(L, user, st->line);
    rd->iam_cache = xstrdup(L, cache, st->line);
    rd->iam_region = region != NULL ? xstrdup(L, region, st->line) : NULL;
    rd->iam_serverless = serverless;
    rd->iam = true;
}

static void h_redis_cluster(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                            const struct fg_conf_stmt *st, void *obj)
{
    _Static_assert(FG_CONF_CLUSTER_AUTO == 0 && FG_CONF_CLUSTER_ON == 1 && FG_CONF_CLUSTER_OFF == 2,
                   "auto_on_off's order");
    struct fg_conf_redis *rd = obj;
    int i = auto_on_off(L, dir, st);
    if (i >= 0)
        rd->cluster = (enum fg_conf_redis_cluster)i;
}

static void h_redis_max_age(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                            const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_redis *rd = obj;
    const char *v = st->args[1];
    uint64_t ms = 0;
    if (strcmp(v, "off") != 0) {
        if (!parse_duration_arg(L, st->line, dir->name, v, 7 * DAY_MS, &ms))
            return;
        if (ms < 1000) {
            ERR(L, st->line, "max_connection_age %s is below 1s (or write off)", v);
            return;
        }
    }
    rd->max_connection_age_ms = ms;
    rd->max_connection_age_set = true;
}

static void h_redis_imds(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                         const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_redis *rd = obj;
    const char *v = st->args[1];
    if (strncmp(v, "http://", 7) != 0 || v[7] == '\0' || strlen(v) >= 256) {
        ERR(L, st->line, "invalid %s '%s' (an http:// URL, like http://169.254.169.254)", dir->name,
            v);
        return;
    }
    free(rd->imds_endpoint);
    rd->imds_endpoint = xstrdup(L, v, st->line);
}

static void h_resolver(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                       const struct fg_conf_stmt *st, void *obj)
{
    struct fg_config *c = obj;
    (void)dir;
    for (size_t i = 0; i < c->n_resolvers; i++)
        free(c->resolvers[i]);
    c->n_resolvers = 0;
    for (size_t i = 1; i < st->n_args; i++) {
        struct sockaddr_storage ss;
        int len = (int)sizeof(ss);
        const char *a = st->args[i];
        if (strlen(a) >= 64 || evutil_parse_sockaddr_port(a, (struct sockaddr *)&ss, &len) != 0) {
            ERR(L, st->line,
                "invalid resolver '%s' (an IP address with an optional port: "
                "10.0.0.2, 127.0.0.1:5353, [fd00::2]:53)",
                a);
            return;
        }
        c->resolvers[c->n_resolvers++] = xstrdup(L, a, st->line);
    }
}

static void h_limit_backend(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                            const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_limit *l = obj;
    (void)dir;
    if (strcmp(st->args[1], "local") == 0) {
        if (st->n_args > 2)
            ERR(L, st->line, "'backend local' takes no more arguments");
        l->redis = false;
        return;
    }
    if (strcmp(st->args[1], "redis") != 0 || st->n_args < 3) {
        ERR(L, st->line,
            "use 'backend local;', 'backend redis NAME [timeout=20ms] [fail=open|closed];' "
            "(NAME a redis block) or 'backend redis redis://host:6379 ...;'");
        return;
    }
    const char *target = st->args[2];
    bool is_url = strstr(target, "://") != NULL;
    if (is_url && !redis_url_ok(L, st->line, target))
        return;
    if (!is_url && !valid_name(target)) {
        ERR(L, st->line, "invalid redis name '%s' (a redis block's name, or a redis:// URL)",
            target);
        return;
    }
    for (size_t i = 3; i < st->n_args; i++) {
        const char *v;
        if ((v = param(st->args[i], "timeout")) != NULL) {
            if (!parse_duration_arg(L, st->line, "timeout", v, 10000, &l->redis_timeout_ms))
                return;
            if (l->redis_timeout_ms == 0) {
                ERR(L, st->line, "the Redis timeout must be above 0");
                return;
            }
        } else if ((v = param(st->args[i], "fail")) != NULL && strcmp(v, "open") == 0) {
            l->fail_closed = false;
        } else if (v != NULL && strcmp(v, "closed") == 0) {
            l->fail_closed = true;
        } else {
            ERR(L, st->line, "unknown parameter '%s' (timeout=duration, fail=open|closed)",
                st->args[i]);
            return;
        }
    }
    free(l->redis_name);
    l->redis_name = NULL;
    if (l->redis_inline != NULL) {
        free(l->redis_inline->url);
        free(l->redis_inline);
        l->redis_inline = NULL;
    }
    if (is_url) {
        struct fg_conf_redis *rd = calloc(1, sizeof(*rd));
        if (rd == NULL) {
            ERR(L, st->line, "out of memory");
            return;
        }
        snprintf(rd->name, sizeof(rd->name), "limit.%.50s", l->name);
        rd->line = st->line;
        redis_defaults(rd);
        rd->url = xstrdup(L, target, st->line);
        l->redis_inline = rd;
    } else {
        l->redis_name = xstrdup(L, target, st->line);
    }
    l->redis_line = st->line;
    l->redis = true;
}

static void h_route_limit(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                          const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_route *r = obj;
    const struct fg_config *c = state(L)->c;
    (void)dir;
    for (size_t i = 0; i < c->n_limits; i++) {
        if (strcmp(c->limits[i].name, st->args[1]) == 0) {
            if (r->n_limits == FG_ARRAY_LEN(r->limits)) {
                ERR(L, st->line, "a route has at most %zu limits", FG_ARRAY_LEN(r->limits));
                return;
            }
            r->limits[r->n_limits++] = &c->limits[i];
            return;
        }
    }
    ERR(L, st->line, "limit '%s' is not defined (add 'limit %s { rate 50r/s; }')", st->args[1],
        st->args[1]);
}

static void h_server(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                     const struct fg_conf_stmt *st, void *obj)
{
    struct fg_config *c = obj;
    (void)dir;
    struct fg_conf_server *srv = &c->servers[c->n_servers++];
    state(L)->server_line = st->line;
    fg_conf_apply_defaults(L, FG_CTX_SERVER, srv);
    srv->access_log_sample = 1.0;
    srv->slow_request_ms = 1000;

    size_t n_listen = 0, n_route = 0;
    for (size_t i = 0; i < st->n_children; i++) {
        if (strcmp(st->children[i].args[0], "listen") == 0)
            n_listen++;
        else if (strcmp(st->children[i].args[0], "route") == 0)
            n_route++;
    }
    if ((n_listen > 0 && (srv->listens = calloc(n_listen, sizeof(*srv->listens))) == NULL) ||
        (n_route > 0 && (srv->routes = calloc(n_route, sizeof(*srv->routes))) == NULL)) {
        ERR(L, st->line, "out of memory");
        return;
    }
    /* Routes last, so that they inherit the server's values wherever those are written. */
    fg_conf_walk(L, FG_CTX_SERVER, st->children, st->n_children, srv, 1);
    fg_conf_walk(L, FG_CTX_SERVER, st->children, st->n_children, srv, 2);
    if (!st->closed)
        return;
    check_server_tls(L, st, srv);
    if (n_listen == 0)
        ERR(L, st->line, "server has no listen");
    if (n_route == 0)
        ERR(L, st->line, "server has no route");
    if (srv->max_header_bytes < srv->max_request_line) {
        char a[32], b[32];
        fg_conf_format_size(srv->max_header_bytes, a, sizeof(a));
        fg_conf_format_size(srv->max_request_line, b, sizeof(b));
        ERR(L, st->line, "max_header_size %s is smaller than max_request_line %s", a, b);
    }
}

/* ---- the table ------------------------------------------------------------------------ */

#define FIELD(type, member) offsetof(type, member), sizeof(((type *)0)->member)
#define CUSTOM(fn)          FG_T_CUSTOM, 0, 0, 0, 0, fn

#define M FG_CTX_MAIN
#define U FG_CTX_UPSTREAM
#define S FG_CTX_SERVER
#define R FG_CTX_ROUTE
#define A FG_CTX_ADMIN

#define K   FG_CTX_CACHE
#define LI  FG_CTX_LIMIT
#define LIM struct fg_conf_limit
#define O   FG_CTX_OFFLOAD
#define E   FG_CTX_EMF
#define RD  FG_CTX_REDIS
#define FL  FG_CTX_FLEET
#define WR  FG_CTX_WAITROOM
#define WRC struct fg_conf_waitroom
#define OF  struct fg_conf_route_offload
#define UPS struct fg_conf_upstream
#define SRV struct fg_conf_server
#define RC  struct fg_conf_route

/* clang-format off */
const struct fg_conf_directive fg_conf_directives[] = {
    /* main */
    {"workers", M, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_workers),
     "auto | number", "auto",
     "worker threads, each with its own event loop and listeners; auto = one per CPU"},
    {"user", M, 1, 1, FG_BLOCK_NO, false, FG_T_STRING, FIELD(struct fg_config, user), 0, 0,
     h_user, "name", "none",
     "user to switch to after binding the listeners, when started as root"},
    {"pid_file", M, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_pid_file),
     "path", "none", "file to write the process id to"},
    {"error_log", M, 1, 2, FG_BLOCK_NO, false, CUSTOM(h_error_log),
     "path | stderr [level]", "stderr notice",
     "where the error log goes and the lowest level written"},
    {"shutdown_delay", M, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION,
     FIELD(struct fg_config, shutdown_delay_ms), 0, HOUR_MS, h_generic,
     "duration", "0s",
     "on SIGTERM keep serving this long while /healthz answers 503"},
    {"drain_timeout", M, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION,
     FIELD(struct fg_config, drain_timeout_ms), 0, HOUR_MS, h_generic,
     "duration", "30s",
     "after the listeners close, the longest wait for requests in flight"},
    {"max_tunnels", M, 1, 1, FG_BLOCK_NO, false, FG_T_UINT,
     FIELD(struct fg_config, max_tunnels), 0, 10000000, h_generic, "number", "10000",
     "open upgrade tunnels per worker; an upgrade over it is answered 503"},
    {"ssl_ticket_key_rotation", M, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION,
     FIELD(struct fg_config, ssl_ticket_key_rotation_ms), 1000, 7 * DAY_MS, h_generic,
     "duration", "1h",
     "how often the session ticket key is replaced (the previous one still decrypts)"},
    {"admin", M, 0, 1, FG_BLOCK_OPTIONAL, false, CUSTOM(h_admin),
     "{ ... } | on | off", "on",
     "the admin listener (/healthz, /stats, /metrics, /config)"},
    {"upstream", M, 1, 1, FG_BLOCK_YES, true, CUSTOM(h_upstream),
     "name { ... }", "none", "a named group of app servers"},
    {"server", M, 0, 0, FG_BLOCK_YES, true, CUSTOM(h_server),
     "{ ... }", "none", "a virtual server: listen addresses and routes"},
    {"cache", M, 1, 1, FG_BLOCK_YES, true, CUSTOM(h_cache),
     "name { ... }", "none", "a response cache in memory, shared by every worker"},
    {"limit", M, 1, 1, FG_BLOCK_YES, true, CUSTOM(h_limit),
     "name { ... }", "none", "a request rate limit that routes apply"},
    {"instance_id", M, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_instance_id),
     "auto | name", "auto",
     "this instance's name in the dashboard and EMF; auto: the EC2 instance id, else the "
     "host name"},
    {"emf", M, 0, 1, FG_BLOCK_OPTIONAL, false, CUSTOM(h_emf),
     "{ ... } | off", "off",
     "CloudWatch Embedded Metric Format records every interval (to a file or the agent)"},
    {"limit_table_entries", M, 1, 1, FG_BLOCK_NO, false, FG_T_UINT,
     FIELD(struct fg_config, limit_table_entries), 1024, 1ull << 28, h_limit_table_entries, "number",
     "262144", "keys the local rate-limit table holds (32 bytes each); read at start"},
    {"redis", M, 1, 1, FG_BLOCK_YES, true, CUSTOM(h_redis),
     "name { ... }", "none", "a Redis or ElastiCache endpoint that features name"},
    {"fleet", M, 0, 0, FG_BLOCK_YES, false, CUSTOM(h_fleet),
     "{ ... }", "none",
     "what the instances do together through their shared Redis: purges and tags for all"},
    {"waiting_room", M, 1, 1, FG_BLOCK_YES, true, CUSTOM(h_waitroom),
     "name { ... }", "none",
     "a fair queue for the routes that name it: tickets, a serving number, admission"},
    {"resolver", M, 1, 4, FG_BLOCK_NO, false, CUSTOM(h_resolver),
     "address[:port] ...", "none",
     "DNS servers for names looked up while running (Redis endpoints); none: /etc/resolv.conf"},

    /* waiting_room */
    {"key_file", WR, 1, 1, FG_BLOCK_NO, false, FG_T_STRING, FIELD(WRC, key_file), 0, 0,
     h_generic, "path", "none",
     "HMAC keys of the cookies, one per line (the first signs, all verify); root-only file"},
    {"admit", WR, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_waitroom_admit),
     "rate", "none", "the inlet: visitors admitted per second (50/s) or minute (3000/m)"},
    {"max_active", WR, 1, 1, FG_BLOCK_NO, false, FG_T_UINT, FIELD(WRC, max_active), 0,
     100000000, h_generic, "number", "0",
     "the inlet: admitted sessions at most at once (0: no cap); freed as sessions expire"},
    {"adaptive", WR, 1, 2, FG_BLOCK_NO, false, CUSTOM(h_waitroom_adaptive),
     "[p99=duration] [errors=percent] | off", "off",
     "pause admission while the app's p99 or 5xx share (fleet-wide) is above these"},
    {"session_ttl", WR, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION, FIELD(WRC, session_ttl_ms),
     1000, DAY_MS, h_generic, "duration", "10m",
     "how long an admitted visitor stays admitted without a request (renewed while active)"},
    {"opens_at", WR, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_waitroom_opens_at),
     "time | none", "none",
     "UTC opening (2026-12-08T09:00:00Z or Unix seconds): earlier arrivals are shuffled"},
    {"active", WR, 1, 1, FG_BLOCK_NO, false, FG_T_FLAG, FIELD(WRC, active), 0, 0, h_generic,
     "on | off", "on", "whether the room queues at all (the admin API switches it too)"},
    {"redis", WR, 1, 2, FG_BLOCK_NO, false, CUSTOM(h_waitroom_redis),
     "name [timeout=duration]", "none",
     "the fleet's queue in this redis block's server; none: this instance alone"},
    {"fallback", WR, 1, 2, FG_BLOCK_NO, false, CUSTOM(h_waitroom_fallback),
     "percent [open | closed]", "25% open",
     "Redis gone: admit locally at this share of the rate (closed: admit nobody new)"},
    {"poll", WR, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION, FIELD(WRC, poll_ms), 1000, HOUR_MS,
     h_generic, "duration", "5s", "how often the waiting page asks for its position (at most)"},
    {"page", WR, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_waitroom_page),
     "path", "none", "the waiting page's HTML template; none: the built-in page"},
    {"bypass_prefix", WR, 1, 8, FG_BLOCK_NO, true, CUSTOM(h_waitroom_bypass_prefix),
     "prefix ...", "none", "paths that never wait (static assets)"},
    {"bypass_header", WR, 2, 2, FG_BLOCK_NO, false, CUSTOM(h_waitroom_bypass_header),
     "name value", "none", "requests carrying this header with this value never wait"},

    /* redis */
    {"url", RD, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_redis_url),
     "redis://[user[:password]@]host[:port][/db] | rediss://...", "none",
     "where the server is; rediss:// speaks TLS (ElastiCache in-transit encryption)"},
    {"password_file", RD, 1, 1, FG_BLOCK_NO, false, FG_T_STRING,
     FIELD(struct fg_conf_redis, password_file), 0, 0, h_generic, "path", "none",
     "a file holding the password, readable by its owner only (root or this user)"},
    {"auth", RD, 1, 6, FG_BLOCK_NO, false, CUSTOM(h_redis_auth),
     "iam user=id cache=name [serverless] [region=region]", "none",
     "ElastiCache IAM authentication with tokens signed by the instance role"},
    {"ssl_ca_file", RD, 1, 1, FG_BLOCK_NO, false, FG_T_STRING,
     FIELD(struct fg_conf_redis, ssl_ca_file), 0, 0, h_generic, "path", "none",
     "CA bundle the server's certificate is checked against; none: the system store"},
    {"cluster", RD, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_redis_cluster),
     "auto | on | off", "auto", "speak the cluster protocol: as the server says, always, never"},
    {"connect_timeout", RD, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION,
     FIELD(struct fg_conf_redis, connect_timeout_ms), 10, 60000, h_generic, "duration", "1s",
     "longest wait for DNS, TCP, TLS, AUTH and discovery of one connection"},
    {"resolve_interval", RD, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION,
     FIELD(struct fg_conf_redis, resolve_interval_ms), 0, HOUR_MS, h_generic, "duration", "5s",
     "look the endpoint name up again this often and move when it changed; 0s: on reconnect only"},
    {"max_connection_age", RD, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_redis_max_age),
     "duration | off", "11h with auth iam, else off",
     "replace a connection this old, before ElastiCache cuts IAM connections at 12h"},
    {"imds_endpoint", RD, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_redis_imds),
     "url", "http://169.254.169.254",
     "the instance metadata service that auth iam's credentials come from"},

    /* fleet */
    {"redis", FL, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_fleet_redis),
     "name", "none", "the redis block of the Redis the instances share; required"},
    {"channel", FL, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_fleet_channel),
     "name", "flashgate",
     "names the fleet's channel and keys (fg:fleet:{name}:...): one per fleet sharing a Redis"},
    {"sharded", FL, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_fleet_sharded),
     "auto | on | off", "auto",
     "sharded pub/sub (SPUBLISH, SSUBSCRIBE; Redis 7): auto = when the Redis is a cluster"},
    {"purge_log", FL, 1, 1, FG_BLOCK_NO, false, FG_T_UINT,
     FIELD(struct fg_conf_fleet, purge_log), 0, 1000000, h_generic, "number", "10000",
     "purges kept in Redis for instances that were cut off; 0: they drop their caches"},
    {"hot_keys", FL, 1, 1, FG_BLOCK_NO, false, FG_T_UINT, FIELD(struct fg_conf_fleet, hot_keys),
     0, 100000, h_generic, "number", "1000",
     "size of the fleet's record of its hottest pages (decayed); 0: not kept"},
    {"warm_start", FL, 1, 1, FG_BLOCK_NO, false, FG_T_UINT,
     FIELD(struct fg_conf_fleet, warm_start), 0, 100000, h_generic, "number", "0",
     "a starting instance fetches this many of the hottest pages before /healthz says ready"},
    {"warm_timeout", FL, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION,
     FIELD(struct fg_conf_fleet, warm_timeout_ms), 100, HOUR_MS, h_generic, "duration", "30s",
     "the longest a warm start keeps /healthz at 503"},
    {"warm_concurrency", FL, 1, 1, FG_BLOCK_NO, false, FG_T_UINT,
     FIELD(struct fg_conf_fleet, warm_concurrency), 1, 256, h_generic, "number", "8",
     "warm-start requests at once"},

    /* limit */
    {"key", LI, 1, 8, FG_BLOCK_NO, false, CUSTOM(h_limit_key),
     "client_ip | header name | cookie name | route ...", "client_ip",
     "what requests are counted by; several parts make one key"},
    {"rate", LI, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_limit_rate),
     "number r/s | r/m | r/h", "none", "the sustained rate allowed per key"},
    {"burst", LI, 1, 1, FG_BLOCK_NO, false, FG_T_UINT, FIELD(LIM, burst), 0, 1000000000,
     h_generic, "number", "0", "requests allowed at once above the rate"},
    {"backend", LI, 1, 4, FG_BLOCK_NO, false, CUSTOM(h_limit_backend),
     "local | redis name|url [timeout=duration] [fail=open|closed]", "local",
     "this instance's table, or one Redis (a redis block, or a URL) for the whole fleet"},

    /* offload */
    {"agent", O, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_offload_agent),
     "unix:path", "none", "the flashgate-agent socket records are handed to; required"},
    {"when", O, 1, 2, FG_BLOCK_NO, true, CUSTOM(h_offload_when),
     "always | inflight number | latency duration | failing | limited", "always",
     "offload every write, or only while a trigger fires (several lines: any of them)"},
    {"methods", O, 1, -1, FG_BLOCK_NO, false, CUSTOM(h_offload_methods),
     "method ...", "every method but GET, HEAD, OPTIONS, TRACE and CONNECT",
     "the writes that are offloaded; others go to the app as usual"},
    {"fallback", O, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_offload_fallback),
     "pass | reject", "pass",
     "when the agent cannot take a write: send it to the app, or answer 503"},
    {"max_body", O, 1, 1, FG_BLOCK_NO, false, FG_T_SIZE, FIELD(OF, max_body), 1, 16 << 20,
     h_generic, "size", "240k", "larger bodies get 413 before anything is queued"},
    {"headers", O, 1, -1, FG_BLOCK_NO, false, CUSTOM(h_offload_headers),
     "name ...", "none", "request fields that travel with the record"},
    {"key_header", O, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_offload_key_header),
     "name", "Idempotency-Key",
     "the request field the idempotency key comes from; one is generated when absent"},
    {"location_prefix", O, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_offload_location),
     "path", "none", "answer 202 with Location: the prefix followed by the key"},
    {"timeout", O, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION, FIELD(OF, timeout_ms), 1, HOUR_MS,
     h_generic, "duration", "1s", "no answer from the agent within it: the fallback applies"},

    /* cache */
    {"memory", K, 1, 1, FG_BLOCK_NO, false, FG_T_SIZE, FIELD(struct fg_conf_cache, memory),
     1 << 20, 1ull << 40, h_generic, "size", "256m",
     "memory of stored responses as allocated; the least useful ones are evicted (S3-FIFO)"},
    {"max_object", K, 1, 1, FG_BLOCK_NO, false, FG_T_SIZE,
     FIELD(struct fg_conf_cache, max_object), 1, 1ull << 40, h_generic, "size", "8m",
     "larger responses are passed through, not stored"},
    {"tag_field", K, 1, FG_CONF_TAG_FIELDS_MAX, FG_BLOCK_NO, false, CUSTOM(h_cache_tag_field),
     "field ... | off", "Cache-Tag Surrogate-Key",
     "response fields whose space or comma separated tags are kept for POST /cache/purge?tag="},
    {"shared", K, 1, 1, FG_BLOCK_NO, false, FG_T_FLAG, FIELD(struct fg_conf_cache, shared),
     0, 0, h_generic, "on | off", "off",
     "a second level in the fleet's Redis: local misses ask it before the app (needs fleet)"},
    {"shared_timeout", K, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION,
     FIELD(struct fg_conf_cache, shared_timeout_ms), 1, 1000, h_generic, "duration", "5ms",
     "how long a local miss waits for the shared tier before it asks the app"},
    {"shared_max_object", K, 1, 1, FG_BLOCK_NO, false, FG_T_SIZE,
     FIELD(struct fg_conf_cache, shared_max_object), 1, 512ull << 20, h_generic, "size", "1m",
     "larger responses are kept locally only"},
    {"tag_strip", K, 1, 1, FG_BLOCK_NO, false, FG_T_FLAG, FIELD(struct fg_conf_cache, tag_strip),
     0, 0, h_generic, "on | off", "on",
     "remove the tag fields from answers to clients (they label pages for purges only)"},

    /* admin */
    {"listen", A, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_admin_listen),
     "address", "127.0.0.1:9901", "address of the admin listener"},
    {"token", A, 1, 1, FG_BLOCK_NO, false, FG_T_STRING, FIELD(struct fg_conf_admin, token),
     0, 0, h_generic, "string", "none",
     "bearer token required on admin requests other than /healthz"},
    {"agent_status", A, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_admin_agent_status),
     "address | off", "off",
     "flashgate-agent's status listener, polled every second into /stats and /metrics"},
    {"dashboard", A, 1, 1, FG_BLOCK_NO, false, FG_T_FLAG, FIELD(struct fg_conf_admin, dashboard),
     0, 0, h_generic, "on | off", "on",
     "the live dashboard at / and its event stream /stats/stream"},
    {"stream_viewers", A, 1, 1, FG_BLOCK_NO, false, FG_T_UINT,
     FIELD(struct fg_conf_admin, stream_viewers), 0, 10000, h_generic, "number", "100",
     "concurrent /stats/stream viewers; more are answered 503"},
    {"stream_buffer", A, 1, 1, FG_BLOCK_NO, false, FG_T_SIZE,
     FIELD(struct fg_conf_admin, stream_buffer), 4096, 64 << 20, h_generic, "size", "256k",
     "what a viewer may leave unread (beyond the history) before it is dropped"},

    /* emf */
    {"target", E, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_emf_target),
     "file:path | tcp://host:port | udp://host:port", "none",
     "where records go: a file the CloudWatch agent ships, or its EMF listener"},
    {"interval", E, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION,
     FIELD(struct fg_conf_emf, interval_ms), 1000, HOUR_MS, h_generic, "duration", "60s",
     "one set of records per interval, aligned to the clock"},
    {"namespace", E, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_emf_name),
     "name", "flashgate", "the CloudWatch namespace of the metrics"},
    {"log_group", E, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_emf_name),
     "name", "flashgate",
     "the log group the agent's EMF listener writes records to (tcp and udp targets)"},
    {"instance_dimension", E, 1, 1, FG_BLOCK_NO, false, FG_T_FLAG,
     FIELD(struct fg_conf_emf, instance_dimension), 0, 0, h_generic, "on | off", "on",
     "metrics per instance (dimension Instance); off: only for the fixed dimensions"},
    {"route_dimension", E, 1, 1, FG_BLOCK_NO, false, FG_T_FLAG,
     FIELD(struct fg_conf_emf, route_dimension), 0, 0, h_generic, "on | off", "on",
     "a few metrics per route as well (dimension Route, with Instance and the fixed ones)"},
    {"dimension", E, 2, 2, FG_BLOCK_NO, true, CUSTOM(h_emf_dimension),
     "name value", "none",
     "a fixed dimension (AutoScalingGroupName); the fixed ones make a dimension set of their own"},

    /* upstream */
    {"server", U, 1, 5, FG_BLOCK_NO, true, CUSTOM(h_upstream_server),
     "address [weight=N] [max_fails=N] [fail_timeout=duration] [ssl]", "none",
     "an app server (weight=1 max_fails=3 fail_timeout=10s unless given; ssl: TLS)"},
    {"balance", U, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_balance),
     "round_robin | least_conn", "round_robin", "how requests are spread over the servers"},
    {"keepalive", U, 1, 1, FG_BLOCK_NO, false, FG_T_UINT, FIELD(UPS, keepalive), 0, 65535,
     h_generic, "number", "64", "idle connections kept open per worker"},
    {"keepalive_timeout", U, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION,
     FIELD(UPS, keepalive_timeout_ms), 1, DAY_MS, h_generic, "duration", "1s",
     "how long an idle pooled connection is kept; below the app's own keep-alive timeout"},
    {"keepalive_requests", U, 1, 1, FG_BLOCK_NO, false, FG_T_UINT,
     FIELD(UPS, keepalive_requests), 1, 1000000000, h_generic, "number", "1000",
     "requests sent on one upstream connection before it is closed"},
    {"connect_timeout", U, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION,
     FIELD(UPS, connect_timeout_ms), 1, DAY_MS, h_generic, "duration", "1s",
     "deadline to connect to a server"},
    {"send_timeout", U, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION, FIELD(UPS, send_timeout_ms),
     1, DAY_MS, h_generic, "duration", "30s", "deadline to write the request to the server"},
    {"read_timeout", U, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION, FIELD(UPS, read_timeout_ms),
     1, DAY_MS, h_generic, "duration", "30s",
     "deadline for the whole response head, then longest wait between body reads"},
    {"retry", U, 1, 1, FG_BLOCK_NO, false, FG_T_FLAG, FIELD(UPS, retry_idempotent), 0, 0,
     h_generic, "on | off", "on",
     "retry an idempotent request once on a fresh connection if a reused one failed"},
    {"ssl_verify", U, 1, 1, FG_BLOCK_NO, false, FG_T_FLAG, FIELD(UPS, ssl_verify), 0, 0,
     h_generic, "on | off", "on",
     "check the certificate of ssl servers (chain and name); off is logged as a warning"},
    {"ssl_ca_file", U, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_ssl_ca_file),
     "path", "none", "PEM CA bundle for ssl servers; none: the system store"},
    {"ssl_server_name", U, 1, 1, FG_BLOCK_NO, false, FG_T_STRING, FIELD(UPS, ssl_server_name),
     0, 0, h_generic, "name", "none",
     "SNI and certificate name for every ssl server; none: each server's host"},

    /* server */
    {"listen", S, 1, 3, FG_BLOCK_NO, true, CUSTOM(h_listen),
     "address [backlog=N] [ssl]", "none",
     "address to accept clients on (backlog=4096 unless given; ssl: TLS)"},
    {"certificate", S, 1, 1, FG_BLOCK_NO, true, CUSTOM(h_certificate),
     "path", "none",
     "PEM certificate and chain for ssl listens; several are chosen by SNI, the first is "
     "the default"},
    {"certificate_key", S, 1, 1, FG_BLOCK_NO, true, CUSTOM(h_certificate_key),
     "path", "none", "PEM private key of the certificate before it (unencrypted)"},
    {"ssl_protocols", S, 1, 2, FG_BLOCK_NO, false, CUSTOM(h_ssl_protocols),
     "TLSv1.2 | TLSv1.3 ...", "TLSv1.2 TLSv1.3", "TLS versions accepted (1.0 and 1.1 never)"},
    {"ssl_ciphers", S, 1, 1, FG_BLOCK_NO, false, FG_T_STRING, FIELD(SRV, ssl_ciphers), 0, 0,
     h_generic, "list", "none",
     "OpenSSL cipher list for TLS 1.2; none: ECDHE key exchange with AEAD ciphers only"},
    {"ssl_session_cache", S, 1, 1, FG_BLOCK_NO, false, FG_T_UINT, FIELD(SRV, ssl_session_cache),
     1, 10000000, h_generic, "number", "20480",
     "TLS sessions kept in memory for resumption by session id"},
    {"ssl_session_timeout", S, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION,
     FIELD(SRV, ssl_session_timeout_ms), 1000, DAY_MS, h_generic, "duration", "1h",
     "how long a TLS session (id or ticket) may be resumed"},
    {"ssl_session_tickets", S, 1, 1, FG_BLOCK_NO, false, FG_T_FLAG,
     FIELD(SRV, ssl_session_tickets), 0, 0, h_generic, "on | off", "on",
     "resume TLS sessions with tickets (keys in memory, rotated by ssl_ticket_key_rotation)"},
    {"keepalive_timeout", S, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION,
     FIELD(SRV, keepalive_timeout_ms), 1, DAY_MS, h_generic, "duration", "75s",
     "idle keep-alive connection timeout; above the load balancer's idle timeout"},
    {"keepalive_requests", S, 1, 1, FG_BLOCK_NO, false, FG_T_UINT,
     FIELD(SRV, keepalive_requests), 1, 1000000000, h_generic, "number", "10000",
     "requests served on one client connection before it is closed"},
    {"header_timeout", S, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION,
     FIELD(SRV, header_timeout_ms), 1, DAY_MS, h_generic, "duration", "10s",
     "deadline for a whole request head, from its first byte"},
    {"body_timeout", S, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION, FIELD(SRV, body_timeout_ms),
     1, DAY_MS, h_generic, "duration", "60s", "deadline for a whole request body"},
    {"body_min_rate", S, 1, 1, FG_BLOCK_NO, false, FG_T_SIZE, FIELD(SRV, body_min_rate), 0,
     1ull << 30, h_generic, "size", "1k",
     "bytes per second a request body must keep up after its first 5 s; 0 = off"},
    {"send_timeout", S, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION, FIELD(SRV, send_timeout_ms),
     1, DAY_MS, h_generic, "duration", "60s",
     "deadline for the client to accept response bytes"},
    {"max_request_line", S, 1, 1, FG_BLOCK_NO, false, FG_T_SIZE,
     FIELD(SRV, max_request_line), 64, 1 << 20, h_generic, "size", "8k",
     "longest request line; 414 above"},
    {"max_header_size", S, 1, 1, FG_BLOCK_NO, false, FG_T_SIZE, FIELD(SRV, max_header_bytes),
     1024, 1 << 20, h_generic, "size", "32k", "largest request head; 431 above"},
    {"max_headers", S, 1, 1, FG_BLOCK_NO, false, FG_T_UINT, FIELD(SRV, max_headers), 1,
     FG_HTTP_MAX_HEADERS, h_generic, "number", "100", "most header fields; 431 above"},
    {"client_max_body_size", S, 1, 1, FG_BLOCK_NO, false, FG_T_SIZE,
     FIELD(SRV, client_max_body_size), 1, 1ull << 40, h_generic, "size", "1m",
     "largest request body; 413 above"},
    {"trusted_proxies", S, 1, -1, FG_BLOCK_NO, true, CUSTOM(h_trusted_proxies),
     "address/prefix ...", "none",
     "peers whose X-Forwarded-For hops are trusted (the load balancer's subnets)"},
    {"request_id", S, 1, 1, FG_BLOCK_NO, false, FG_T_FLAG, FIELD(SRV, add_request_id), 0, 0,
     h_generic, "on | off", "on", "add X-Request-Id to requests that have none"},
    {"server_timing", S, 1, 1, FG_BLOCK_NO, false, FG_T_FLAG, FIELD(SRV, server_timing), 0, 0,
     h_generic, "on | off", "off",
     "Server-Timing on answers: time in the cache, waiting for the app, limits, the agent"},
    {"access_log", S, 1, 3, FG_BLOCK_NO, false, CUSTOM(h_access_log),
     "path | stderr | off [sample=fraction] [slow=duration]", "off",
     "JSON access log; errors and slow requests always, others sampled (sample=1 slow=1s)"},
    {"route", S, 1, 1, FG_BLOCK_YES, true, CUSTOM(h_route),
     "prefix { ... }", "none", "where requests under a path prefix go"},

    /* route */
    {"host", R, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_host),
     "name | *.domain", "any", "only requests for this Host"},
    {"methods", R, 1, -1, FG_BLOCK_NO, false, CUSTOM(h_methods),
     "method ...", "all", "only requests with these methods"},
    {"upstream", R, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_route_upstream),
     "name", "none", "the upstream that serves the route"},
    {"return", R, 1, 2, FG_BLOCK_NO, false, CUSTOM(h_return),
     "status [text]", "none", "answer directly with this status and text"},
    {"health", R, 1, 1, FG_BLOCK_NO, false, FG_T_FLAG, FIELD(struct fg_conf_route, health), 0, 0,
     h_generic, "on | off", "off",
     "answer 200 ok, or 503 draining once SIGTERM came: the ALB health check path"},
    {"client_max_body_size", R, 1, 1, FG_BLOCK_NO, false, FG_T_SIZE,
     FIELD(struct fg_conf_route, max_body), 1, 1ull << 40, h_generic, "size",
     "inherited from the server", "largest request body on this route; 413 above"},
    {"compress", R, 1, 2, FG_BLOCK_NO, false, CUSTOM(h_compress),
     "br | gzip ... | off", "off",
     "compress answers for clients that accept it, in this order of preference"},
    {"compress_types", R, 1, -1, FG_BLOCK_NO, false, CUSTOM(h_compress_types),
     "type/subtype ...", "text/* and the usual text-like types",
     "media types worth compressing ('*' and '*+json' patterns allowed)"},
    {"compress_min_length", R, 1, 1, FG_BLOCK_NO, false, FG_T_SIZE,
     FIELD(RC, compress.min_length), 0, 1ull << 30, h_generic, "size", "256",
     "answers of known length below this are sent as they are"},
    {"gzip_level", R, 1, 1, FG_BLOCK_NO, false, FG_T_UINT, FIELD(RC, compress.gzip_level), 1, 9,
     h_generic, "number", "5", "gzip level, 1 to 9"},
    {"brotli_level", R, 1, 1, FG_BLOCK_NO, false, FG_T_UINT, FIELD(RC, compress.br_level), 0, 11,
     h_generic, "number", "4", "brotli quality, 0 to 11"},
    {"waiting_room", R, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_route_waitroom),
     "name", "none", "visitors of the route queue in this waiting room first"},
    {"limit", R, 1, 1, FG_BLOCK_NO, true, CUSTOM(h_route_limit),
     "name", "none", "count the route's requests against this limit; 429 above it"},
    {"offload", R, 0, 0, FG_BLOCK_YES, false, CUSTOM(h_offload),
     "{ ... }", "none",
     "hand the route's writes to flashgate-agent and answer 202 once they are durable"},
    {"limit_headers", R, 1, 1, FG_BLOCK_NO, false, FG_T_FLAG,
     FIELD(struct fg_conf_route, limit_headers), 0, 0, h_generic, "on | off", "off",
     "RateLimit-Policy and RateLimit fields on allowed responses too, not only on 429"},
    {"cache", R, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_route_cache),
     "name | off", "off", "serve GET and HEAD from this cache, filling it from the upstream"},
    {"cache_lock_timeout", R, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION,
     FIELD(RC, cache.lock_timeout_ms), 1, HOUR_MS, h_generic, "duration", "5s",
     "a request waiting for another one's fetch of the same key goes to the app after this"},
    {"cache_hit_for_miss", R, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION,
     FIELD(RC, cache.hit_for_miss_ms), 0, DAY_MS, h_generic, "duration", "30s",
     "after an uncacheable answer, requests for that key go to the app in parallel this long"},
    {"stale_while_revalidate", R, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION,
     FIELD(RC, cache.swr_ms), 0, 30 * DAY_MS, h_generic, "duration", "0s",
     "serve a stale response this long after it expired while one request refreshes it, "
     "unless the response says otherwise"},
    {"stale_if_error", R, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION,
     FIELD(RC, cache.sie_ms), 0, 30 * DAY_MS, h_generic, "duration", "0s",
     "serve a stale response this long after it expired when the app fails, times out or "
     "answers 5xx, unless the response says otherwise"},
    {"cache_default_ttl", R, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION,
     FIELD(RC, cache.default_ttl_ms), 0, 30 * DAY_MS, h_generic, "duration", "0s",
     "freshness for cacheable responses that state none; 0s = only what the app says"},
    {"cache_key_ignore_params", R, 1, -1, FG_BLOCK_NO, false, CUSTOM(h_cache_ignore_params),
     "name | prefix* ...", "none", "query parameters left out of the cache key (utm_* gclid)"},
    {"cache_key_sort_params", R, 1, 1, FG_BLOCK_NO, false, FG_T_FLAG, FIELD(RC, cache.sort_params),
     0, 0, h_generic, "on | off", "off", "parameter order does not make a new cache key"},
    {"cache_targeted_field", R, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_cache_targeted),
     "field | off", "CDN-Cache-Control",
     "response field that replaces Cache-Control for this cache (RFC 9213)"},
    {"cache_status_header", R, 1, 1, FG_BLOCK_NO, false, FG_T_FLAG,
     FIELD(RC, cache.status_header), 0, 0, h_generic, "on | off", "on",
     "add X-Cache: HIT, MISS, STALE, PASS or REVALIDATED to responses"},
    {"cache_status_field", R, 1, 1, FG_BLOCK_NO, false, FG_T_FLAG,
     FIELD(RC, cache.status_field), 0, 0, h_generic, "on | off", "on",
     "add the standard Cache-Status field (RFC 9211) to responses"},
    {"upgrade", R, 1, -1, FG_BLOCK_NO, false, CUSTOM(h_upgrade),
     "on | off | protocol ...", "on",
     "tunnel Upgrade requests (WebSocket) the app answers 101; a list allows only those "
     "protocols; h2c never"},
    {"tunnel_timeout", R, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION,
     FIELD(RC, tunnel_timeout_ms), 1000, 7 * DAY_MS, h_generic, "duration", "1h",
     "an open tunnel with no byte either way for this long is closed"},
};
/* clang-format on */

#undef M
#undef U
#undef S
#undef R
#undef A
#undef K
#undef LI
#undef LIM
#undef O
#undef E
#undef RD
#undef FL
#undef WR
#undef WRC
#undef OF
#undef UPS
#undef SRV
#undef RC

const size_t fg_conf_n_directives = FG_ARRAY_LEN(fg_conf_directives);

/* The context inside a block called name, opened in context ctx (0 if unknown). */
static unsigned block_ctx(const char *name, unsigned ctx)
{
    if (ctx == FG_CTX_MAIN && strcmp(name, "upstream") == 0)
        return FG_CTX_UPSTREAM;
    if (ctx == FG_CTX_MAIN && strcmp(name, "server") == 0)
        return FG_CTX_SERVER;
    if (ctx == FG_CTX_MAIN && strcmp(name, "admin") == 0)
        return FG_CTX_ADMIN;
    if (ctx == FG_CTX_MAIN && strcmp(name, "cache") == 0)
        return FG_CTX_CACHE;
    if (ctx == FG_CTX_MAIN && strcmp(name, "limit") == 0)
        return FG_CTX_LIMIT;
    if (ctx == FG_CTX_MAIN && strcmp(name, "emf") == 0)
        return FG_CTX_EMF;
    if (ctx == FG_CTX_MAIN && strcmp(name, "redis") == 0)
        return FG_CTX_REDIS;
    if (ctx == FG_CTX_MAIN && strcmp(name, "fleet") == 0)
        return FG_CTX_FLEET;
    if (ctx == FG_CTX_MAIN && strcmp(name, "waiting_room") == 0)
        return FG_CTX_WAITROOM;
    if (ctx == FG_CTX_SERVER && strcmp(name, "route") == 0)
        return FG_CTX_ROUTE;
    if (ctx == FG_CTX_ROUTE && strcmp(name, "offload") == 0)
        return FG_CTX_OFFLOAD;
    return 0;
}

/* Blocks loaded in a second pass: servers after the upstreams they name, routes after
 * the rest of their server. */
static bool deferred(unsigned ctx, const char *name)
{
    return (ctx == FG_CTX_MAIN && strcmp(name, "server") == 0) ||
           (ctx == FG_CTX_SERVER && strcmp(name, "route") == 0);
}

const struct fg_conf_schema fg_conf_flashgate = {
    .file = "flashgate.conf",
    .dirs = fg_conf_directives,
    .n_dirs = FG_ARRAY_LEN(fg_conf_directives),
    .top_ctx = FG_CTX_MAIN,
    .block_ctx = block_ctx,
    .deferred = deferred,
};

/* ---- whole config ---------------------------------------------------------------------- */

static size_t count_named(const struct fg_conf_stmt *stmts, size_t n, const char *name)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(stmts[i].args[0], name) == 0)
            k++;
    return k;
}

static void check_admin_listen(struct fg_conf_loader *L)
{
    const struct fg_conf_admin *a = &state(L)->c->admin;
    if (!a->enabled)
        return;
    for (size_t i = 0; i < state(L)->n_listens; i++) {
        const struct listen_rec *r = &state(L)->listens[i];
        bool same = addr_same(r->addr, &a->addr);
        if (!same && !addr_overlaps(r->addr, &a->addr))
            continue;
        if (state(L)->admin_line != 0 && same)
            ERR(L, state(L)->admin_line,
                "admin listen address %s is already used by the server at line %zu", a->addr.text,
                r->server_line);
        else if (state(L)->admin_line != 0)
            ERR(L, state(L)->admin_line,
                "admin listen address %s overlaps %s of the server at line %zu", a->addr.text,
                r->addr->text, r->server_line);
        else
            ERR(L, r->line,
                "listen address %s overlaps the admin listener %s (move one of "
                "them with 'admin { listen ...; }')",
                r->addr->text, a->addr.text);
        return;
    }
}

/* ---- TLS contexts ----------------------------------------------------------------------- */

static struct fg_tls_ticket_keys *ticket_keys; /* fg_config_set_ticket_keys(); main thread */

void fg_config_set_ticket_keys(struct fg_tls_ticket_keys *keys)
{
    ticket_keys = keys;
}

/* The line to blame for a context error: the certificate or certificate_key line of the
 * pair the TLS module names (not a search of the message for a file name: one key file
 * may be written for several certificates), else the first certificate. */
static size_t cert_error_line(const struct fg_conf_server *srv, const struct fg_tls_cert_blame *b)
{
    if (b->pair < srv->n_certs) {
        const struct fg_conf_cert *c = &srv->certs[b->pair];
        return b->key && c->key_line != 0 ? c->key_line : c->line;
    }
    return srv->n_certs > 0 ? srv->certs[0].line : 0;
}

static void build_server_tls(struct fg_conf_loader *L, struct fg_conf_server *srv)
{
    bool any_ssl = false;
    for (size_t i = 0; i < srv->n_listens; i++)
        any_ssl |= srv->listens[i].ssl;
    if (!any_ssl || srv->n_certs == 0)
        return;
    struct fg_tls_cert_files *files = calloc(srv->n_certs, sizeof(*files));
    if (files == NULL) {
        ERR(L, srv->certs[0].line, "out of memory");
        return;
    }
    for (size_t i = 0; i < srv->n_certs; i++)
        files[i] = (struct fg_tls_cert_files){.cert = srv->certs[i].cert, .key = srv->certs[i].key};
    struct fg_tls_cert_blame blame = {.pair = SIZE_MAX};
    struct fg_tls_server_opts o = {
        .certs = files,
        .n_certs = srv->n_certs,
        .min_version = srv->ssl_min_version,
        .ciphers = srv->ssl_ciphers,
        .ticket_keys = srv->ssl_session_tickets ? ticket_keys : NULL,
        .session_timeout_s = srv->ssl_session_timeout_ms / 1000,
        .session_cache_size = (long)srv->ssl_session_cache,
        .blame = &blame,
    };
    char err[512];
    srv->tls = fg_tls_server_new(&o, err, sizeof(err));
    if (srv->tls == NULL)
        ERR(L, cert_error_line(srv, &blame), "%s", err);
    free(files);
}

static void build_upstream_tls(struct fg_conf_loader *L, struct fg_conf_upstream *u, size_t line)
{
    bool any_ssl = false;
    for (size_t i = 0; i < u->n_servers; i++)
        any_ssl |= u->servers[i].ssl;
    if (!any_ssl)
        return;
    char name[FG_CONF_NAME_MAX + 16], err[512];
    snprintf(name, sizeof(name), "upstream %s", u->name);
    struct fg_tls_client_opts o = {
        .name = name,
        .ca_file = u->ssl_ca_file,
        .verify_off = !u->ssl_verify,
        .alpn = "http/1.1",
    };
    u->tls = fg_tls_client_new(&o, err, sizeof(err));
    if (u->tls == NULL)
        ERR(L, line, "%s", err);
}

/* `backend redis NAME`: the block it names, wherever it is in the file. */
static void link_limit_backends(struct fg_conf_loader *L)
{
    struct fg_config *c = state(L)->c;
    for (size_t i = 0; i < c->n_limits; i++) {
        struct fg_conf_limit *l = &c->limits[i];
        if (!l->redis || l->redis_name == NULL)
            continue;
        bool found = false;
        for (size_t k = 0; k < c->n_redis && !found; k++)
            found = strcmp(c->redis[k].name, l->redis_name) == 0;
        if (!found)
            ERR(L, l->redis_line,
                "redis '%s' is not defined (add 'redis %s { url "
                "redis://host:6379; }')",
                l->redis_name, l->redis_name);
    }
}

static void build_endpoint(struct fg_conf_loader *L, struct fg_conf_redis *rd)
{
    const struct fg_config *c = state(L)->c;
    struct fg_redis_endpoint_config ec = {
        .name = rd->name,
        .url = rd->url,
        .password_file = rd->password_file,
        .iam = rd->iam,
        .iam_user = rd->iam_user,
        .iam_cache = rd->iam_cache,
        .iam_serverless = rd->iam_serverless,
        .iam_region = rd->iam_region,
        .imds = rd->imds_endpoint,
        .ca_file = rd->ssl_ca_file,
        .cluster = (enum fg_redis_cluster_mode)rd->cluster,
        .connect_timeout_ms = rd->connect_timeout_ms,
        .resolve_interval_ms = rd->resolve_interval_ms,
        .max_age_ms = rd->max_connection_age_set ? rd->max_connection_age_ms
                      : rd->iam                  ? FG_CONF_REDIS_IAM_AGE_MS
                                                 : 0,
        .n_resolvers = c->n_resolvers,
    };
    for (size_t i = 0; i < c->n_resolvers; i++)
        ec.resolvers[i] = c->resolvers[i];
    char err[512];
    rd->ep = fg_redis_endpoint_new(&ec, err, sizeof(err));
    if (rd->ep == NULL)
        ERR(L, rd->line, "redis '%s': %s", rd->name, err);
}

/* The fleet's redis block exists. */
static void link_fleet(struct fg_conf_loader *L)
{
    struct fg_config *c = state(L)->c;
    struct fg_conf_fleet *f = &c->fleet;
    if (!f->enabled || f->redis_name == NULL)
        return;
    for (size_t k = 0; k < c->n_redis; k++)
        if (strcmp(c->redis[k].name, f->redis_name) == 0)
            return;
    ERR(L, f->redis_line, "redis '%s' is not defined (add 'redis %s { url redis://host:6379; }')",
        f->redis_name, f->redis_name);
}

/* `shared on` keeps objects in the fleet's Redis: there must be one. */
static void check_shared_caches(struct fg_conf_loader *L)
{
    struct fg_config *c = state(L)->c;
    for (size_t i = 0; i < c->n_caches; i++)
        if (c->caches[i].shared && !c->fleet.enabled)
            ERR(L, c->caches[i].line,
                "cache '%s': shared on needs a fleet block (fleet { redis NAME; })",
                c->caches[i].name);
}

/* Endpoints are built once the rest is right: password files are read, TLS contexts
 * made, so a bad one refuses the config (and a reload) with its line. */
static void build_redis(struct fg_conf_loader *L)
{
    struct fg_config *c = state(L)->c;
    for (size_t i = 0; i < c->n_redis; i++)
        build_endpoint(L, &c->redis[i]);
    for (size_t k = 0; c->fleet.enabled && k < c->n_redis; k++)
        if (strcmp(c->redis[k].name, c->fleet.redis_name) == 0)
            c->fleet.ep = c->redis[k].ep;
    for (size_t i = 0; i < c->n_limits; i++) {
        struct fg_conf_limit *l = &c->limits[i];
        if (!l->redis)
            continue;
        if (l->redis_inline != NULL) {
            build_endpoint(L, l->redis_inline);
            l->redis_ep = l->redis_inline->ep;
        }
        for (size_t k = 0; l->redis_name != NULL && k < c->n_redis; k++)
            if (strcmp(c->redis[k].name, l->redis_name) == 0)
                l->redis_ep = c->redis[k].ep;
    }
}

/* Certificates and CA files are read here, so a bad one refuses the config (and a
 * reload) with its file:line, like any other error. */
static void build_tls(struct fg_conf_loader *L)
{
    struct fg_config *c = state(L)->c;
    for (size_t i = 0; i < c->n_servers; i++)
        build_server_tls(L, &c->servers[i]);
    for (size_t i = 0; i < c->n_upstreams; i++)
        build_upstream_tls(L, &c->upstreams[i], state(L)->upstream_lines[i]);
}

struct fg_config *fg_conf_build(struct fg_conf_diag *d, const char *name,
                                const struct fg_conf_stmt *stmts, size_t n, size_t last_line,
                                bool syntax_ok)
{
    struct fg_config *c = calloc(1, sizeof(*c));
    struct load_state S = {.c = c};
    struct fg_conf_loader L = {.d = d, .schema = &fg_conf_flashgate, .state = &S};
    if (c == NULL) {
        fg_conf_error(d, 0, "out of memory");
        return NULL;
    }
    atomic_init(&c->refs, 1);
    c->path = strdup(name);
    c->error_log_level = FG_LOG_NOTICE;
    c->admin.enabled = true;
    char err[128];
    bool ok = fg_addr_parse("127.0.0.1:9901", 0, &c->admin.addr, err, sizeof(err));
    FG_ASSERT(ok);
    fg_conf_apply_defaults(&L, FG_CTX_MAIN, c);
    fg_conf_apply_defaults(&L, FG_CTX_ADMIN, &c->admin);

    size_t n_up = count_named(stmts, n, "upstream");
    size_t n_cache = count_named(stmts, n, "cache");
    size_t n_limit = count_named(stmts, n, "limit");
    size_t n_redis = count_named(stmts, n, "redis");
    size_t n_wr = count_named(stmts, n, "waiting_room");
    size_t n_srv = count_named(stmts, n, "server");
    if (c->path == NULL || (n_up && !(c->upstreams = calloc(n_up, sizeof(*c->upstreams)))) ||
        (n_up && !(S.upstream_lines = calloc(n_up, sizeof(*S.upstream_lines)))) ||
        (n_srv && !(c->servers = calloc(n_srv, sizeof(*c->servers)))) ||
        (n_cache && !(c->caches = calloc(n_cache, sizeof(*c->caches)))) ||
        (n_cache && !(S.cache_lines = calloc(n_cache, sizeof(*S.cache_lines)))) ||
        (n_limit && !(c->limits = calloc(n_limit, sizeof(*c->limits)))) ||
        (n_limit && !(S.limit_lines = calloc(n_limit, sizeof(*S.limit_lines)))) ||
        (n_redis && !(c->redis = calloc(n_redis, sizeof(*c->redis)))) ||
        (n_redis && !(S.redis_lines = calloc(n_redis, sizeof(*S.redis_lines)))) ||
        (n_wr && !(c->waitrooms = calloc(n_wr, sizeof(*c->waitrooms)))) ||
        (n_wr && !(S.waitroom_lines = calloc(n_wr, sizeof(*S.waitroom_lines))))) {
        fg_conf_error(d, 0, "out of memory");
        free(S.upstream_lines);
        free(S.cache_lines);
        free(S.limit_lines);
        free(S.redis_lines);
        free(S.waitroom_lines);
        fg_conf_free(c);
        return NULL;
    }
    /* Upstreams (and everything else) before servers, so routes can name an upstream
     * defined further down the file. */
    fg_conf_walk(&L, FG_CTX_MAIN, stmts, n, c, 1);
    fg_conf_walk(&L, FG_CTX_MAIN, stmts, n, c, 2);
    check_admin_listen(&L);
    for (size_t i = 0; i < c->n_servers; i++)
        for (size_t k = 0; k < c->servers[i].n_routes; k++)
            c->servers[i].routes[k].id = c->n_all_routes++;
    link_limit_backends(&L);
    link_fleet(&L);
    check_shared_caches(&L);
    link_waitroom_redis(&L);
    if (syntax_ok && n_srv == 0)
        ERR(&L, last_line, "no server block");
    if (d->n_errors == 0)
        build_tls(&L); /* only for a config that is otherwise right: files are read */
    if (d->n_errors == 0)
        build_redis(&L);
    if (d->n_errors == 0)
        build_waitrooms(&L);

    free(S.upstream_lines);
    free(S.cache_lines);
    free(S.limit_lines);
    free(S.redis_lines);
    free(S.waitroom_lines);
    free(S.listens);
    return c;
}
