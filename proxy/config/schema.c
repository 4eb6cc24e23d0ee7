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
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "http/http.h"           /* enum fg_http_method, for the route method bits */
#include "ratelimit/ratelimit.h" /* to check limits and Redis URLs where they are written */
#include "tls/tls.h"             /* certificates and CA files are loaded and checked here */

/* ---- the loader's state ------------------------------------------------------------------ */

struct listen_rec {
    const struct fg_addr *addr;
    size_t line;        /* of the listen directive */
    size_t server_line; /* of its server block */
};

struct fg_conf_loader {
    struct fg_conf_diag *d;
    struct fg_config *c;
    size_t *upstream_lines; /* line of each upstream block, parallel to c->upstreams */
    size_t *cache_lines;    /* likewise for c->caches */
    size_t *limit_lines;    /* likewise for c->limits */
    struct listen_rec *listens;
    size_t n_listens, cap_listens;
    size_t server_line;        /* the server block being loaded */
    size_t admin_line;         /* line of the admin listen directive, 0 = default */
    bool route_named_upstream; /* the current route had an `upstream` line */
};

#define ERR(L, line, ...) fg_conf_error((L)->d, (line), __VA_ARGS__)

static char *xstrdup(struct fg_conf_loader *L, const char *s, size_t line)
{
    char *r = strdup(s);
    if (r == NULL)
        ERR(L, line, "out of memory");
    return r;
}

/* ---- generic values ---------------------------------------------------------------------- */

static void store_uint(void *field, size_t width, uint64_t v)
{
    if (width == sizeof(uint64_t)) {
        uint64_t x = v;
        memcpy(field, &x, sizeof(x));
    } else {
        FG_ASSERT(width == sizeof(unsigned));
        unsigned x = (unsigned)v;
        memcpy(field, &x, sizeof(x));
    }
}

static void format_value(enum fg_conf_type t, uint64_t v, char *out, size_t outlen)
{
    if (t == FG_T_DURATION)
        fg_conf_format_duration(v, out, outlen);
    else if (t == FG_T_SIZE)
        fg_conf_format_size(v, out, outlen);
    else
        snprintf(out, outlen, "%llu", (unsigned long long)v);
}

/* Parse value for a generic directive and store it into obj. line = 0: a default from
 * the table, which must parse (a bug in the table otherwise). */
static bool set_generic(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                        const char *value, size_t line, void *obj)
{
    char *field = (char *)obj + dir->offset;
    uint64_t v = 0;
    bool ok = true;
    switch (dir->type) {
    case FG_T_DURATION:
        ok = fg_parse_duration_ms(value, &v);
        if (!ok)
            ERR(L, line, "invalid duration '%s' for '%s' (use ms, s, m, h or d)", value, dir->name);
        break;
    case FG_T_SIZE:
        ok = fg_parse_size(value, &v);
        if (!ok)
            ERR(L, line, "invalid size '%s' for '%s' (use a number with k, m or g)", value,
                dir->name);
        break;
    case FG_T_UINT:
        ok = fg_parse_uint(value, UINT64_MAX, &v);
        if (!ok)
            ERR(L, line, "invalid number '%s' for '%s'", value, dir->name);
        break;
    case FG_T_FLAG:
        if (strcmp(value, "on") == 0) {
            *(bool *)field = true;
        } else if (strcmp(value, "off") == 0) {
            *(bool *)field = false;
        } else {
            ERR(L, line, "invalid value '%s' for '%s' (use on or off)", value, dir->name);
            return false;
        }
        return true;
    case FG_T_STRING: {
        if (value[0] == '\0') {
            ERR(L, line, "empty value for '%s'", dir->name);
            return false;
        }
        char *s = xstrdup(L, value, line);
        if (s == NULL)
            return false;
        char **slot = (char **)(void *)field;
        free(*slot);
        *slot = s;
        return true;
    }
    case FG_T_CUSTOM:
        FG_ASSERT(!"custom directive handled generically");
    }
    if (!ok)
        return false;
    if (v < dir->min || v > dir->max) {
        char lo[32], hi[32];
        format_value(dir->type, dir->min, lo, sizeof(lo));
        format_value(dir->type, dir->max, hi, sizeof(hi));
        ERR(L, line, "value %s out of range %s..%s for '%s'", value, lo, hi, dir->name);
        return false;
    }
    store_uint(field, dir->width, v);
    return true;
}

static void h_generic(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                      const struct fg_conf_stmt *st, void *obj)
{
    set_generic(L, dir, st->args[1], st->line, obj);
}

/* Defaults of the generic directives of a context, from the table's own text. */
static void apply_defaults(struct fg_conf_loader *L, unsigned ctx, void *obj)
{
    for (size_t i = 0; i < fg_conf_n_directives; i++) {
        const struct fg_conf_directive *dir = &fg_conf_directives[i];
        if (!(dir->ctx & ctx) || dir->type == FG_T_CUSTOM || strcmp(dir->def, "none") == 0)
            continue;
        if (dir->type == FG_T_STRING)
            continue; /* strings default to NULL */
        bool ok = set_generic(L, dir, dir->def, 0, obj);
        FG_ASSERT(ok);
    }
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
}

static void walk(struct fg_conf_loader *L, unsigned ctx, const struct fg_conf_stmt *stmts, size_t n,
                 void *obj, int phase);

static void h_admin(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                    const struct fg_conf_stmt *st, void *obj)
{
    struct fg_config *c = obj;
    if (st->has_block) {
        if (st->n_args > 1) {
            ERR(L, st->line, "directive '%s' takes no arguments with a block", dir->name);
            return;
        }
        c->admin.enabled = true;
        walk(L, FG_CTX_ADMIN, st->children, st->n_children, &c->admin, 0);
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
        L->admin_line = st->line;
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
                L->upstream_lines[i]);
            return;
        }
    }
    size_t idx = c->n_upstreams++;
    struct fg_conf_upstream *u = &c->upstreams[idx];
    L->upstream_lines[idx] = st->line;
    snprintf(u->name, sizeof(u->name), "%s", name);
    u->index = idx;
    u->balance = FG_BALANCE_ROUND_ROBIN;
    apply_defaults(L, FG_CTX_UPSTREAM, u);

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
    walk(L, FG_CTX_UPSTREAM, st->children, st->n_children, u, 0);
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
    struct fg_conf_listen l = {.backlog = 4096};
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
    for (size_t i = 0; i < L->n_listens; i++) {
        const struct listen_rec *r = &L->listens[i];
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
    if (L->n_listens == L->cap_listens) {
        size_t cap = L->cap_listens ? L->cap_listens * 2 : 8;
        struct listen_rec *v = realloc(L->listens, cap * sizeof(*v));
        if (v == NULL) {
            ERR(L, st->line, "out of memory");
            return;
        }
        L->listens = v;
        L->cap_listens = cap;
    }
    L->listens[L->n_listens++] =
        (struct listen_rec){.addr = mine, .line = st->line, .server_line = L->server_line};
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

static const struct fg_conf_directive *suggest(const char *name, unsigned ctx);

static void h_route_upstream(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                             const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_route *r = obj;
    const struct fg_config *c = L->c;
    (void)dir;
    L->route_named_upstream = true;
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
    L->route_named_upstream = false;
    walk(L, FG_CTX_ROUTE, st->children, st->n_children, r, 0);
    if (!st->closed)
        return;
    if (r->return_status != 0 && L->route_named_upstream)
        ERR(L, st->line, "route has both 'upstream' and 'return'");
    else if (r->health && (r->return_status != 0 || L->route_named_upstream))
        ERR(L, st->line, "a 'health on' route answers by itself: no 'upstream' or 'return'");
    else if (r->return_status == 0 && !L->route_named_upstream && !r->health)
        ERR(L, st->line, "route needs 'upstream', 'return' or 'health on'");
    else if (r->cache.cache != NULL && !L->route_named_upstream)
        ERR(L, st->line, "route has 'cache' but no 'upstream' to fill it from");
    else if (r->offload.enabled && !L->route_named_upstream)
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
    apply_defaults(L, FG_CTX_OFFLOAD, of);
    free(of->key_header);
    of->key_header = xstrdup(L, "idempotency-key", st->line);
    of->methods = FG_OFFLOAD_METHODS_DEFAULT;
    walk(L, FG_CTX_OFFLOAD, st->children, st->n_children, of, 0);
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
                             L->cache_lines);
    if (idx == SIZE_MAX)
        return;
    struct fg_conf_cache *k = &c->caches[idx];
    snprintf(k->name, sizeof(k->name), "%s", name);
    k->index = idx;
    apply_defaults(L, FG_CTX_CACHE, k);
    walk(L, FG_CTX_CACHE, st->children, st->n_children, k, 0);
    if (st->closed && k->max_object > k->memory)
        ERR(L, st->line, "cache '%s': max_object is larger than memory", name);
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

/* Route defaults of the cache and compression directives: the table's `def` texts say the same. */
static void route_feature_defaults(struct fg_conf_route *r)
{
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
    const struct fg_config *c = L->c;
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

/* ---- rate limits ---------------------------------------------------------------------- */

static void h_limit(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                    const struct fg_conf_stmt *st, void *obj)
{
    struct fg_config *c = obj;
    (void)dir;
    const char *name = st->args[1];
    size_t idx = named_block(L, st, "limit", c->limits[0].name, sizeof(c->limits[0]), &c->n_limits,
                             L->limit_lines);
    if (idx == SIZE_MAX)
        return;
    struct fg_conf_limit *l = &c->limits[idx];
    snprintf(l->name, sizeof(l->name), "%s", name);
    l->index = idx;
    l->line = st->line;
    l->redis_timeout_ms = 20;
    apply_defaults(L, FG_CTX_LIMIT, l);
    walk(L, FG_CTX_LIMIT, st->children, st->n_children, l, 0);
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
            "use 'backend local;' or 'backend redis redis://host:6379 "
            "[timeout=20ms] [fail=open|closed];'");
        return;
    }
    struct fg_ratelimit_redis_url url;
    char err[256];
    if (!fg_ratelimit_redis_url_parse(st->args[2], &url, err, sizeof(err))) {
        ERR(L, st->line, "%s", err);
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
    free(l->redis_url);
    l->redis_url = xstrdup(L, st->args[2], st->line);
    l->redis = true;
}

static void h_route_limit(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                          const struct fg_conf_stmt *st, void *obj)
{
    struct fg_conf_route *r = obj;
    const struct fg_config *c = L->c;
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
    L->server_line = st->line;
    apply_defaults(L, FG_CTX_SERVER, srv);
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
    walk(L, FG_CTX_SERVER, st->children, st->n_children, srv, 1);
    walk(L, FG_CTX_SERVER, st->children, st->n_children, srv, 2);
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
     h_generic, "name", "none",
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
    {"limit_table_entries", M, 1, 1, FG_BLOCK_NO, false, FG_T_UINT,
     FIELD(struct fg_config, limit_table_entries), 1024, 1ull << 28, h_generic, "number",
     "262144", "keys the local rate-limit table holds (32 bytes each); read at start"},

    /* limit */
    {"key", LI, 1, 8, FG_BLOCK_NO, false, CUSTOM(h_limit_key),
     "client_ip | header name | cookie name | route ...", "client_ip",
     "what requests are counted by; several parts make one key"},
    {"rate", LI, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_limit_rate),
     "number r/s | r/m | r/h", "none", "the sustained rate allowed per key"},
    {"burst", LI, 1, 1, FG_BLOCK_NO, false, FG_T_UINT, FIELD(LIM, burst), 0, 1000000000,
     h_generic, "number", "0", "requests allowed at once above the rate"},
    {"backend", LI, 1, 4, FG_BLOCK_NO, false, CUSTOM(h_limit_backend),
     "local | redis url [timeout=duration] [fail=open|closed]", "local",
     "this instance's table, or one Redis for the whole fleet"},

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
     "bytes of stored responses; the least useful ones are evicted (S3-FIFO)"},
    {"max_object", K, 1, 1, FG_BLOCK_NO, false, FG_T_SIZE,
     FIELD(struct fg_conf_cache, max_object), 1, 1ull << 40, h_generic, "size", "8m",
     "larger responses are passed through, not stored"},

    /* admin */
    {"listen", A, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_admin_listen),
     "address", "127.0.0.1:9901", "address of the admin listener"},
    {"token", A, 1, 1, FG_BLOCK_NO, false, FG_T_STRING, FIELD(struct fg_conf_admin, token),
     0, 0, h_generic, "string", "none",
     "bearer token required on admin requests other than /healthz"},
    {"agent_status", A, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_admin_agent_status),
     "address | off", "off",
     "flashgate-agent's status listener, polled every second into /stats and /metrics"},

    /* upstream */
    {"server", U, 1, 5, FG_BLOCK_NO, true, CUSTOM(h_upstream_server),
     "address [weight=N] [max_fails=N] [fail_timeout=duration] [ssl]", "none",
     "an app server (weight=1 max_fails=3 fail_timeout=10s unless given; ssl: TLS)"},
    {"balance", U, 1, 1, FG_BLOCK_NO, false, CUSTOM(h_balance),
     "round_robin | least_conn", "round_robin", "how requests are spread over the servers"},
    {"keepalive", U, 1, 1, FG_BLOCK_NO, false, FG_T_UINT, FIELD(UPS, keepalive), 0, 65535,
     h_generic, "number", "64", "idle connections kept open per worker"},
    {"keepalive_timeout", U, 1, 1, FG_BLOCK_NO, false, FG_T_DURATION,
     FIELD(UPS, keepalive_timeout_ms), 1, DAY_MS, h_generic, "duration", "30s",
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
     "longest wait for the response head and between body reads"},
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
#undef OF
#undef UPS
#undef SRV
#undef RC

const size_t fg_conf_n_directives = FG_ARRAY_LEN(fg_conf_directives);

/* ---- lookups --------------------------------------------------------------------------- */

const struct fg_conf_directive *fg_conf_directive_find(const char *name, unsigned ctx)
{
    for (size_t i = 0; i < fg_conf_n_directives; i++)
        if ((fg_conf_directives[i].ctx & ctx) && strcmp(fg_conf_directives[i].name, name) == 0)
            return &fg_conf_directives[i];
    return NULL;
}

const struct fg_conf_directive *fg_conf_directive_any(const char *name)
{
    return fg_conf_directive_find(name, ~0u);
}

const char *fg_conf_ctx_name(unsigned ctx)
{
    switch (ctx) {
    case FG_CTX_MAIN:
        return "main";
    case FG_CTX_UPSTREAM:
        return "upstream";
    case FG_CTX_SERVER:
        return "server";
    case FG_CTX_ROUTE:
        return "route";
    case FG_CTX_ADMIN:
        return "admin";
    case FG_CTX_CACHE:
        return "cache";
    case FG_CTX_LIMIT:
        return "limit";
    case FG_CTX_OFFLOAD:
        return "offload";
    }
    return "?";
}

/* The closest directive name, preferring those allowed in ctx; NULL if none is close. */
static const struct fg_conf_directive *suggest(const char *name, unsigned ctx)
{
    const struct fg_conf_directive *best = NULL;
    size_t best_d = SIZE_MAX;
    size_t cap = strlen(name) <= 4 ? 1 : 2;
    for (int pass = 0; pass < 2 && best == NULL; pass++) {
        for (size_t i = 0; i < fg_conf_n_directives; i++) {
            const struct fg_conf_directive *d = &fg_conf_directives[i];
            if (pass == 0 && !(d->ctx & ctx))
                continue;
            size_t dist = fg_conf_edit_distance(name, d->name, cap);
            if (dist <= cap && dist < best_d) {
                best = d;
                best_d = dist;
            }
        }
    }
    return best;
}

/* ---- the walk ------------------------------------------------------------------------ */

static bool deferred(unsigned ctx, const char *name)
{
    return (ctx == FG_CTX_MAIN && strcmp(name, "server") == 0) ||
           (ctx == FG_CTX_SERVER && strcmp(name, "route") == 0);
}

static bool check_shape(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                        const struct fg_conf_stmt *st)
{
    int n = (int)st->n_args - 1;
    if (n < dir->min_args || (dir->max_args >= 0 && n > dir->max_args)) {
        const char *s = dir->max_args == 1 ? "" : "s";
        if (dir->min_args == dir->max_args && dir->max_args == 0)
            ERR(L, st->line, "directive '%s' takes no arguments, got %d", dir->name, n);
        else if (dir->min_args == dir->max_args)
            ERR(L, st->line, "directive '%s' takes %d argument%s, got %d", dir->name, dir->max_args,
                s, n);
        else if (dir->max_args < 0)
            ERR(L, st->line, "directive '%s' needs at least %d argument%s", dir->name,
                dir->min_args, dir->min_args == 1 ? "" : "s");
        else
            ERR(L, st->line, "directive '%s' takes %d to %d arguments, got %d", dir->name,
                dir->min_args, dir->max_args, n);
        return false;
    }
    if (st->has_block && dir->block == FG_BLOCK_NO) {
        ERR(L, st->line, "directive '%s' takes no block", dir->name);
        return false;
    }
    if (!st->has_block && dir->block == FG_BLOCK_YES) {
        ERR(L, st->line, "directive '%s' needs a block", dir->name);
        return false;
    }
    return true;
}

static void unknown_directive(struct fg_conf_loader *L, const struct fg_conf_stmt *st, unsigned ctx)
{
    const char *name = st->args[0];
    if (fg_conf_directive_any(name) != NULL) {
        char where[128] = "";
        for (unsigned bit = 1; bit <= FG_CTX_OFFLOAD; bit <<= 1) {
            if (fg_conf_directive_find(name, bit) == NULL)
                continue;
            size_t len = strlen(where);
            snprintf(where + len, sizeof(where) - len, "%s%s", len ? ", " : "",
                     fg_conf_ctx_name(bit));
        }
        ERR(L, st->line, "directive '%s' is not allowed in %s (allowed in: %s)", name,
            fg_conf_ctx_name(ctx), where);
        return;
    }
    const struct fg_conf_directive *s = suggest(name, ctx);
    if (s != NULL)
        ERR(L, st->line, "unknown directive '%s' (did you mean '%s'?)", name, s->name);
    else
        ERR(L, st->line, "unknown directive '%s'", name);
}

/* phase 0: every statement; 1: all but the deferred blocks; 2: only those. */
static void walk(struct fg_conf_loader *L, unsigned ctx, const struct fg_conf_stmt *stmts, size_t n,
                 void *obj, int phase)
{
    size_t *seen = calloc(fg_conf_n_directives, sizeof(*seen));
    if (seen == NULL) {
        ERR(L, n ? stmts[0].line : 0, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const struct fg_conf_stmt *st = &stmts[i];
        bool late = deferred(ctx, st->args[0]);
        if ((phase == 1 && late) || (phase == 2 && !late))
            continue;
        const struct fg_conf_directive *dir = fg_conf_directive_find(st->args[0], ctx);
        if (dir == NULL) {
            unknown_directive(L, st, ctx);
            continue;
        }
        if (!check_shape(L, dir, st))
            continue;
        size_t idx = (size_t)(dir - fg_conf_directives);
        if (!dir->repeatable && seen[idx] != 0) {
            ERR(L, st->line, "duplicate directive '%s' (first at line %zu)", dir->name, seen[idx]);
            continue;
        }
        seen[idx] = st->line;
        dir->handler(L, dir, st, obj);
    }
    free(seen);
}

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
    const struct fg_conf_admin *a = &L->c->admin;
    if (!a->enabled)
        return;
    for (size_t i = 0; i < L->n_listens; i++) {
        const struct listen_rec *r = &L->listens[i];
        bool same = addr_same(r->addr, &a->addr);
        if (!same && !addr_overlaps(r->addr, &a->addr))
            continue;
        if (L->admin_line != 0 && same)
            ERR(L, L->admin_line,
                "admin listen address %s is already used by the server at line %zu", a->addr.text,
                r->server_line);
        else if (L->admin_line != 0)
            ERR(L, L->admin_line, "admin listen address %s overlaps %s of the server at line %zu",
                a->addr.text, r->addr->text, r->server_line);
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

/* The line to blame for a context error: the certificate or key the message names. */
static size_t cert_error_line(const struct fg_conf_server *srv, const char *err)
{
    for (size_t i = 0; i < srv->n_certs; i++) {
        const struct fg_conf_cert *c = &srv->certs[i];
        if ((c->cert != NULL && strstr(err, c->cert) != NULL) ||
            (c->key != NULL && strstr(err, c->key) != NULL))
            return c->line;
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
    struct fg_tls_server_opts o = {
        .certs = files,
        .n_certs = srv->n_certs,
        .min_version = srv->ssl_min_version,
        .ciphers = srv->ssl_ciphers,
        .ticket_keys = srv->ssl_session_tickets ? ticket_keys : NULL,
        .session_timeout_s = srv->ssl_session_timeout_ms / 1000,
        .session_cache_size = (long)srv->ssl_session_cache,
    };
    char err[512];
    srv->tls = fg_tls_server_new(&o, err, sizeof(err));
    if (srv->tls == NULL)
        ERR(L, cert_error_line(srv, err), "%s", err);
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

/* Certificates and CA files are read here, so a bad one refuses the config (and a
 * reload) with its file:line, like any other error. */
static void build_tls(struct fg_conf_loader *L)
{
    struct fg_config *c = L->c;
    for (size_t i = 0; i < c->n_servers; i++)
        build_server_tls(L, &c->servers[i]);
    for (size_t i = 0; i < c->n_upstreams; i++)
        build_upstream_tls(L, &c->upstreams[i], L->upstream_lines[i]);
}

struct fg_config *fg_conf_build(struct fg_conf_diag *d, const char *name,
                                const struct fg_conf_stmt *stmts, size_t n, size_t last_line,
                                bool syntax_ok)
{
    struct fg_config *c = calloc(1, sizeof(*c));
    struct fg_conf_loader L = {.d = d, .c = c};
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
    apply_defaults(&L, FG_CTX_MAIN, c);

    size_t n_up = count_named(stmts, n, "upstream");
    size_t n_cache = count_named(stmts, n, "cache");
    size_t n_limit = count_named(stmts, n, "limit");
    size_t n_srv = count_named(stmts, n, "server");
    if (c->path == NULL || (n_up && !(c->upstreams = calloc(n_up, sizeof(*c->upstreams)))) ||
        (n_up && !(L.upstream_lines = calloc(n_up, sizeof(*L.upstream_lines)))) ||
        (n_srv && !(c->servers = calloc(n_srv, sizeof(*c->servers)))) ||
        (n_cache && !(c->caches = calloc(n_cache, sizeof(*c->caches)))) ||
        (n_cache && !(L.cache_lines = calloc(n_cache, sizeof(*L.cache_lines)))) ||
        (n_limit && !(c->limits = calloc(n_limit, sizeof(*c->limits)))) ||
        (n_limit && !(L.limit_lines = calloc(n_limit, sizeof(*L.limit_lines))))) {
        fg_conf_error(d, 0, "out of memory");
        free(L.upstream_lines);
        free(L.cache_lines);
        free(L.limit_lines);
        fg_conf_free(c);
        return NULL;
    }
    /* Upstreams (and everything else) before servers, so routes can name an upstream
     * defined further down the file. */
    walk(&L, FG_CTX_MAIN, stmts, n, c, 1);
    walk(&L, FG_CTX_MAIN, stmts, n, c, 2);
    check_admin_listen(&L);
    if (syntax_ok && n_srv == 0)
        ERR(&L, last_line, "no server block");
    if (d->n_errors == 0)
        build_tls(&L); /* only for a config that is otherwise right: files are read */

    free(L.upstream_lines);
    free(L.cache_lines);
    free(L.limit_lines);
    free(L.listens);
    return c;
}
