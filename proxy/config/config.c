/*
 * config.c — the public face of the config module: load a file or a string into a
 * snapshot, share it by reference count, match a request to a route, and write the
 * effective configuration back out in config syntax. flashgate-agent.conf is loaded here
 * too (its table is agent.c's).
 */
#include "config/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "config/internal.h"
#include "redis/redis.h"
#include "waitroom/waitroom.h"
#include "tls/tls.h"

#define MAX_FILE_SIZE (16u * 1024 * 1024)

/* ---- loading --------------------------------------------------------------------------- */

/* Stable sort of the messages by line: the loader finds some errors late (cross-block
 * checks) but the operator reads them top to bottom. */
static void sort_errors(struct fg_conf_diag *d)
{
    if (d->errs == NULL)
        return;
    for (size_t i = 1; i < d->errs->n; i++) {
        size_t line = d->lines[i];
        char *msg = d->errs->msgs[i];
        size_t j = i;
        while (j > 0 && d->lines[j - 1] > line) {
            d->lines[j] = d->lines[j - 1];
            d->errs->msgs[j] = d->errs->msgs[j - 1];
            j--;
        }
        d->lines[j] = line;
        d->errs->msgs[j] = msg;
    }
}

/* A file parsed against a schema, before its table builds anything. */
struct parsed {
    struct fg_conf_diag d;
    struct fg_conf_stmt *stmts;
    size_t n, last_line;
    bool syntax_ok;
};

static void parse_text(struct parsed *p, const struct fg_conf_schema *sc, const char *name,
                       const char *text, size_t len, struct fg_config_errors *errs)
{
    *p = (struct parsed){.d = {.name = name, .errs = errs}, .last_line = 1};
    p->syntax_ok = fg_conf_parse(&p->d, sc, text, len, &p->stmts, &p->n, &p->last_line);
}

/* Free the tree and sort the messages; true when there were none. built: what the
 * table built (NULL: out of memory, said once). */
static bool parsed_finish(struct parsed *p, bool built)
{
    fg_conf_stmts_free(p->stmts, p->n);
    if (!built && p->d.n_errors == 0)
        fg_conf_error(&p->d, 0, "out of memory");
    sort_errors(&p->d);
    free(p->d.lines);
    return built && p->d.n_errors == 0;
}

static struct fg_config *load_text(const char *name, const char *text, size_t len,
                                   struct fg_config_errors *errs)
{
    struct parsed p;
    parse_text(&p, &fg_conf_flashgate, name, text, len, errs);
    struct fg_config *c = fg_conf_build(&p.d, name, p.stmts, p.n, p.last_line, p.syntax_ok);
    if (!parsed_finish(&p, c != NULL)) {
        fg_conf_free(c);
        return NULL;
    }
    return c;
}

static struct fg_conf_agent *load_agent_text(const char *name, const char *text, size_t len,
                                             struct fg_config_errors *errs)
{
    struct parsed p;
    parse_text(&p, &fg_conf_agent, name, text, len, errs);
    struct fg_conf_agent *c = fg_conf_build_agent(&p.d, name, p.stmts, p.n, p.syntax_ok);
    if (!parsed_finish(&p, c != NULL)) {
        fg_config_agent_free(c);
        return NULL;
    }
    return c;
}

/* "path: what", or path alone when what is NULL. */
static void add_plain_error(struct fg_config_errors *errs, const char *path, const char *what)
{
    if (errs == NULL)
        return;
    size_t need = strlen(path) + (what ? strlen(what) : 0) + 4;
    char *m = malloc(need);
    char **v = realloc(errs->msgs, (errs->n + 1) * sizeof(*v));
    if (m == NULL || v == NULL) {
        free(m);
        if (v != NULL)
            errs->msgs = v;
        return;
    }
    if (what != NULL)
        snprintf(m, need, "%s: %s", path, what);
    else
        snprintf(m, need, "%s", path);
    errs->msgs = v;
    errs->msgs[errs->n++] = m;
}

/* The whole file, NUL-terminated (free() it), or NULL with one message in errs. */
static char *read_file(const char *path, size_t *size_out, struct fg_config_errors *errs)
{
    if (errs != NULL)
        *errs = (struct fg_config_errors){0};
    char what[512];
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(what, sizeof(what), "cannot open: %s", strerror(errno));
        add_plain_error(errs, path, what);
        return NULL;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        add_plain_error(errs, path, "cannot read: not a regular file");
        fclose(f);
        return NULL;
    }
    if ((uint64_t)sb.st_size > MAX_FILE_SIZE) {
        add_plain_error(errs, path, "file is larger than 16 MiB");
        fclose(f);
        return NULL;
    }
    size_t size = (size_t)sb.st_size;
    char *text = malloc(size + 1);
    if (text == NULL) {
        add_plain_error(errs, path, "out of memory");
        fclose(f);
        return NULL;
    }
    size_t got = fread(text, 1, size, f);
    bool err = ferror(f);
    fclose(f);
    if (err || got != size) {
        add_plain_error(errs, path, "read error (file changed while reading?)");
        free(text);
        return NULL;
    }
    text[size] = '\0';
    *size_out = size;
    return text;
}

struct fg_config *fg_config_load(const char *path, struct fg_config_errors *errs)
{
    size_t size = 0;
    char *text = read_file(path, &size, errs);
    if (text == NULL)
        return NULL;
    struct fg_config *c = load_text(path, text, size, errs);
    free(text);
    return c;
}

struct fg_conf_agent *fg_config_load_agent(const char *path, struct fg_config_errors *errs)
{
    size_t size = 0;
    char *text = read_file(path, &size, errs);
    if (text == NULL)
        return NULL;
    struct fg_conf_agent *c = load_agent_text(path, text, size, errs);
    free(text);
    return c;
}

struct fg_conf_agent *fg_config_load_agent_string(const char *name, const char *text,
                                                  struct fg_config_errors *errs)
{
    if (errs != NULL)
        *errs = (struct fg_config_errors){0};
    return load_agent_text(name, text, strlen(text), errs);
}

struct fg_config *fg_config_load_string(const char *name, const char *text,
                                        struct fg_config_errors *errs)
{
    if (errs != NULL)
        *errs = (struct fg_config_errors){0};
    return load_text(name, text, strlen(text), errs);
}

void fg_config_error_add(struct fg_config_errors *errs, const char *fmt, ...)
{
    if (errs == NULL)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    add_plain_error(errs, msg, NULL);
}

void fg_config_errors_free(struct fg_config_errors *errs)
{
    if (errs == NULL)
        return;
    for (size_t i = 0; i < errs->n; i++)
        free(errs->msgs[i]);
    free(errs->msgs);
    errs->msgs = NULL;
    errs->n = 0;
}

/* ---- lifetime -------------------------------------------------------------------------- */

static void conf_redis_free(struct fg_conf_redis *rd)
{
    free(rd->url);
    free(rd->password_file);
    free(rd->iam_user);
    free(rd->iam_cache);
    free(rd->iam_region);
    free(rd->imds_endpoint);
    free(rd->ssl_ca_file);
    fg_redis_endpoint_unref(rd->ep);
}

void fg_conf_free(struct fg_config *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n_servers; i++) {
        struct fg_conf_server *s = &c->servers[i];
        for (size_t j = 0; j < s->n_routes; j++) {
            free(s->routes[j].prefix);
            free(s->routes[j].host);
            free(s->routes[j].return_body);
            struct fg_conf_route_cache *rc = &s->routes[j].cache;
            for (size_t k = 0; k < rc->n_ignore_params; k++)
                free(rc->ignore_params[k]);
            free(rc->ignore_params);
            free(rc->targeted);
            struct fg_conf_route_compress *cc = &s->routes[j].compress;
            for (size_t k = 0; k < cc->n_types; k++)
                free(cc->types[k]);
            free(cc->types);
            struct fg_conf_route_offload *of = &s->routes[j].offload;
            free(of->agent);
            for (size_t k = 0; k < of->n_headers; k++)
                free(of->headers[k]);
            free(of->headers);
            free(of->key_header);
            free(of->location_prefix);
            for (size_t k = 0; k < s->routes[j].n_upgrade_protocols; k++)
                free(s->routes[j].upgrade_protocols[k]);
            free(s->routes[j].upgrade_protocols);
        }
        free(s->routes);
        free(s->listens);
        for (size_t j = 0; j < s->n_certs; j++) {
            free(s->certs[j].cert);
            free(s->certs[j].key);
        }
        free(s->certs);
        free(s->ssl_ciphers);
        fg_tls_server_unref(s->tls);
        free(s->trusted_proxies);
        free(s->access_log);
    }
    free(c->servers);
    for (size_t i = 0; i < c->n_upstreams; i++) {
        free(c->upstreams[i].servers);
        free(c->upstreams[i].ssl_ca_file);
        free(c->upstreams[i].ssl_server_name);
        fg_tls_client_unref(c->upstreams[i].tls);
    }
    free(c->upstreams);
    free(c->caches);
    for (size_t i = 0; i < c->n_limits; i++) {
        free(c->limits[i].redis_name);
        if (c->limits[i].redis_inline != NULL) {
            conf_redis_free(c->limits[i].redis_inline);
            free(c->limits[i].redis_inline);
        }
    }
    free(c->limits);
    for (size_t i = 0; i < c->n_redis; i++)
        conf_redis_free(&c->redis[i]);
    free(c->redis);
    for (size_t i = 0; i < c->n_waitrooms; i++) {
        struct fg_conf_waitroom *w = &c->waitrooms[i];
        free(w->key_file);
        if (w->keys != NULL)
            fg_waitroom_keys_wipe(w->keys);
        free(w->keys);
        free(w->redis_name);
        free(w->page_file);
        free(w->page);
        for (size_t k = 0; k < w->n_bypass_prefix; k++)
            free(w->bypass_prefix[k]);
        free(w->bypass_value);
    }
    free(c->waitrooms);
    for (size_t i = 0; i < c->n_resolvers; i++)
        free(c->resolvers[i]);
    free(c->admin.token);
    free(c->emf.target);
    free(c->emf.path);
    free(c->emf.ns);
    free(c->emf.log_group);
    for (size_t i = 0; i < c->emf.n_dims; i++) {
        free(c->emf.dims[i].name);
        free(c->emf.dims[i].value);
    }
    free(c->instance_id);
    free(c->fleet.redis_name);
    free(c->fleet.channel);
    free(c->user);
    free(c->pid_file);
    free(c->error_log);
    free(c->path);
    free(c);
}

struct fg_config *fg_config_ref(struct fg_config *c)
{
    if (c != NULL)
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void fg_config_unref(struct fg_config *c)
{
    if (c == NULL)
        return;
    /* acq_rel: the thread that frees must see every other thread's last use finished. */
    unsigned prev = atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel);
    FG_ASSERT(prev > 0);
    if (prev == 1)
        fg_conf_free(c);
}

/* ---- route matching -------------------------------------------------------------------- */

/* Segment-aware prefix: "/api" matches "/api", "/api/x" and "/api?q" but not "/apix";
 * a prefix ending in '/' matches everything under it. */
static bool prefix_match(const char *prefix, const char *path, size_t len)
{
    size_t pl = strlen(prefix);
    if (pl > len || memcmp(prefix, path, pl) != 0)
        return false;
    if (pl == len || prefix[pl - 1] == '/')
        return true;
    return path[pl] == '/' || path[pl] == '?';
}

static bool host_match(const char *pattern, const char *host, size_t len)
{
    if (host == NULL)
        return false;
    /* Drop the port: "[::1]:8080" -> "[::1]", "shop.example.com:8080" -> the name. */
    if (len > 0 && host[0] == '[') {
        const char *end = memchr(host, ']', len);
        if (end != NULL)
            len = (size_t)(end - host) + 1;
    } else {
        const char *colon = memchr(host, ':', len);
        if (colon != NULL)
            len = (size_t)(colon - host);
    }
    if (len > 1 && host[len - 1] == '.')
        len--;
    if (pattern[0] == '*' && pattern[1] == '.') {
        const char *suffix = pattern + 1; /* ".example.com": at least one label before */
        size_t sl = strlen(suffix);
        return len > sl && strncasecmp(host + len - sl, suffix, sl) == 0;
    }
    return strlen(pattern) == len && strncasecmp(pattern, host, len) == 0;
}

const struct fg_conf_route *fg_config_match_route(const struct fg_conf_server *srv,
                                                  const char *path, size_t path_len, int method,
                                                  const char *host, size_t host_len)
{
    if (srv == NULL || path == NULL)
        return NULL;
    for (size_t i = 0; i < srv->n_routes; i++) {
        const struct fg_conf_route *r = &srv->routes[i];
        if (r->methods != FG_METHOD_ALL &&
            (method < 0 || method >= 32 || !(r->methods & (1u << method))))
            continue;
        if (!prefix_match(r->prefix, path, path_len))
            continue;
        if (r->host != NULL && !host_match(r->host, host, host_len))
            continue;
        return r;
    }
    return NULL;
}

/* ---- dump ------------------------------------------------------------------------------ */

/* A value as a bare word when the lexer would read it back unchanged, else quoted. */
static void put_word(FILE *out, const char *s)
{
    bool bare = s[0] != '\0' && s[0] != '#';
    for (const char *p = s; bare && *p != '\0'; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch <= 0x20 || ch == 0x7f || ch == '{' || ch == '}' || ch == ';' || ch == '"' ||
            ch == '\\')
            bare = false;
    }
    if (bare) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') {
            fputc('\\', out);
            fputc(*p, out);
        } else if (*p == '\n') {
            fputs("\\n", out);
        } else if (*p == '\t') {
            fputs("\\t", out);
        } else {
            fputc(*p, out);
        }
    }
    fputc('"', out);
}

static const char *fmt_dur(uint64_t ms, char *buf, size_t len)
{
    fg_conf_format_duration(ms, buf, len);
    return buf;
}

static const char *fmt_size(uint64_t b, char *buf, size_t len)
{
    fg_conf_format_size(b, buf, len);
    return buf;
}

static void cidr_text(const struct fg_cidr *c, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    inet_ntop(c->family, c->addr, ip, sizeof(ip));
    unsigned full = c->family == AF_INET ? 32 : 128;
    if (c->prefix == full)
        snprintf(out, outlen, "%s", ip);
    else
        snprintf(out, outlen, "%s/%u", ip, c->prefix);
}

static const char *const level_names[] = {"error", "warn", "notice", "info", "debug"};

static void dump_upstream(const struct fg_conf_upstream *u, FILE *out)
{
    char b[32];
    fprintf(out, "\nupstream %s {\n", u->name);
    for (size_t i = 0; i < u->n_servers; i++) {
        const struct fg_conf_upstream_server *s = &u->servers[i];
        fputs("    server ", out);
        put_word(out, s->host);
        fprintf(out, " weight=%u max_fails=%u fail_timeout=%s%s;\n", s->weight, s->max_fails,
                fmt_dur(s->fail_timeout_ms, b, sizeof(b)), s->ssl ? " ssl" : "");
    }
    fprintf(out, "    balance %s;\n",
            u->balance == FG_BALANCE_LEAST_CONN ? "least_conn" : "round_robin");
    fprintf(out, "    keepalive %u;\n", u->keepalive);
    fprintf(out, "    keepalive_timeout %s;\n", fmt_dur(u->keepalive_timeout_ms, b, sizeof(b)));
    fprintf(out, "    keepalive_requests %u;\n", u->keepalive_requests);
    fprintf(out, "    connect_timeout %s;\n", fmt_dur(u->connect_timeout_ms, b, sizeof(b)));
    fprintf(out, "    send_timeout %s;\n", fmt_dur(u->send_timeout_ms, b, sizeof(b)));
    fprintf(out, "    read_timeout %s;\n", fmt_dur(u->read_timeout_ms, b, sizeof(b)));
    fprintf(out, "    retry %s;\n", u->retry_idempotent ? "on" : "off");
    if (u->tls != NULL) {
        fprintf(out, "    ssl_verify %s;\n", u->ssl_verify ? "on" : "off");
        if (u->ssl_ca_file != NULL) {
            fputs("    ssl_ca_file ", out);
            put_word(out, u->ssl_ca_file);
            fputs(";\n", out);
        }
        if (u->ssl_server_name != NULL) {
            fputs("    ssl_server_name ", out);
            put_word(out, u->ssl_server_name);
            fputs(";\n", out);
        }
    }
    fputs("}\n", out);
}

static void dump_route(const struct fg_conf_route *r, FILE *out)
{
    char b[32];
    fputs("    route ", out);
    put_word(out, r->prefix);
    fputs(" {\n", out);
    if (r->host != NULL)
        fprintf(out, "        host %s;\n", r->host);
    if (r->methods != FG_METHOD_ALL) {
        fputs("        methods", out);
        for (int m = 0; m < 32; m++) {
            const char *name = fg_conf_method_name(m);
            if ((r->methods & (1u << m)) && name != NULL)
                fprintf(out, " %s", name);
        }
        fputs(";\n", out);
    }
    if (r->upstream != NULL)
        fprintf(out, "        upstream %s;\n", r->upstream->name);
    if (r->health)
        fputs("        health on;\n", out);
    if (r->return_status != 0) {
        fprintf(out, "        return %d", r->return_status);
        if (r->return_body != NULL) {
            fputc(' ', out);
            put_word(out, r->return_body);
        }
        fputs(";\n", out);
    }
    fprintf(out, "        client_max_body_size %s;\n", fmt_size(r->max_body, b, sizeof(b)));
    const struct fg_conf_route_compress *cc = &r->compress;
    if (cc->n > 0) {
        fputs("        compress", out);
        for (size_t i = 0; i < cc->n; i++)
            fputs(cc->order[i] == FG_CONF_ENC_BR ? " br" : " gzip", out);
        fputs(";\n", out);
        if (cc->n_types > 0) {
            fputs("        compress_types", out);
            for (size_t i = 0; i < cc->n_types; i++)
                fprintf(out, " %s", cc->types[i]);
            fputs(";\n", out);
        }
        fprintf(out, "        compress_min_length %s;\n", fmt_size(cc->min_length, b, sizeof(b)));
        fprintf(out, "        gzip_level %u;\n        brotli_level %u;\n", cc->gzip_level,
                cc->br_level);
    }
    if (r->upstream != NULL) {
        if (!r->upgrade) {
            fputs("        upgrade off;\n", out);
        } else if (r->n_upgrade_protocols > 0) {
            fputs("        upgrade", out);
            for (size_t i = 0; i < r->n_upgrade_protocols; i++)
                fprintf(out, " %s", r->upgrade_protocols[i]);
            fputs(";\n", out);
        }
        fprintf(out, "        tunnel_timeout %s;\n", fmt_dur(r->tunnel_timeout_ms, b, sizeof(b)));
    }
    for (size_t i = 0; i < r->n_limits; i++)
        fprintf(out, "        limit %s;\n", r->limits[i]->name);
    if (r->waitroom != NULL)
        fprintf(out, "        waiting_room %s;\n", r->waitroom->name);
    if (r->n_limits > 0)
        fprintf(out, "        limit_headers %s;\n", r->limit_headers ? "on" : "off");
    const struct fg_conf_route_offload *of = &r->offload;
    if (of->enabled) {
        fprintf(out, "        offload {\n            agent unix:%s;\n", of->agent ? of->agent : "");
        if (!of->triggered)
            fputs("            when always;\n", out);
        if (of->when_inflight)
            fprintf(out, "            when inflight %llu;\n", (unsigned long long)of->inflight);
        if (of->latency_us > 0)
            fprintf(out, "            when latency %s;\n",
                    fmt_dur(of->latency_us / 1000, b, sizeof(b)));
        if (of->when_failing)
            fputs("            when failing;\n", out);
        if (of->when_limited)
            fputs("            when limited;\n", out);
        fputs("            methods", out);
        for (int m = 0; m < 32; m++) {
            const char *name = fg_conf_method_name(m); /* NULL for methods without a name */
            if ((of->methods & (1u << m)) && name != NULL)
                fprintf(out, " %s", name);
        }
        fputs(";\n", out);
        fprintf(out, "            fallback %s;\n", of->reject ? "reject" : "pass");
        fprintf(out, "            max_body %s;\n", fmt_size(of->max_body, b, sizeof(b)));
        if (of->n_headers > 0) {
            fputs("            headers", out);
            for (size_t i = 0; i < of->n_headers; i++)
                fprintf(out, " %s", of->headers[i]);
            fputs(";\n", out);
        }
        fprintf(out, "            key_header %s;\n", of->key_header ? of->key_header : "");
        if (of->location_prefix != NULL)
            fprintf(out, "            location_prefix %s;\n", of->location_prefix);
        fprintf(out, "            timeout %s;\n        }\n", fmt_dur(of->timeout_ms, b, sizeof(b)));
    }
    const struct fg_conf_route_cache *rc = &r->cache;
    if (rc->cache != NULL) {
        fprintf(out, "        cache %s;\n", rc->cache->name);
        fprintf(out, "        cache_lock_timeout %s;\n",
                fmt_dur(rc->lock_timeout_ms, b, sizeof(b)));
        fprintf(out, "        cache_hit_for_miss %s;\n",
                fmt_dur(rc->hit_for_miss_ms, b, sizeof(b)));
        fprintf(out, "        stale_while_revalidate %s;\n", fmt_dur(rc->swr_ms, b, sizeof(b)));
        fprintf(out, "        stale_if_error %s;\n", fmt_dur(rc->sie_ms, b, sizeof(b)));
        fprintf(out, "        cache_default_ttl %s;\n", fmt_dur(rc->default_ttl_ms, b, sizeof(b)));
        if (rc->n_ignore_params > 0) {
            fputs("        cache_key_ignore_params", out);
            for (size_t i = 0; i < rc->n_ignore_params; i++) {
                fputc(' ', out);
                put_word(out, rc->ignore_params[i]);
            }
            fputs(";\n", out);
        }
        fprintf(out, "        cache_key_sort_params %s;\n", rc->sort_params ? "on" : "off");
        fputs("        cache_targeted_field ", out);
        put_word(out, rc->targeted != NULL ? rc->targeted : "off");
        fputs(";\n", out);
        fprintf(out, "        cache_status_header %s;\n", rc->status_header ? "on" : "off");
        fprintf(out, "        cache_status_field %s;\n", rc->status_field ? "on" : "off");
    }
    fputs("    }\n", out);
}

/* redis://user:secret@host → redis://user:********@host */
static void put_masked_url(FILE *out, const char *url)
{
    const char *scheme = strstr(url, "://");
    const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
    const char *colon = at ? memchr(scheme + 3, ':', (size_t)(at - scheme - 3)) : NULL;
    if (colon == NULL) {
        put_word(out, url);
        return;
    }
    char buf[1024];
    snprintf(buf, sizeof(buf), "%.*s:********%s", (int)(colon - url), url, at);
    put_word(out, buf);
}

static void dump_waitroom(const struct fg_conf_waitroom *w, FILE *out)
{
    char b[32];
    fprintf(out, "\nwaiting_room %s {\n    key_file ", w->name);
    put_word(out, w->key_file);
    fputs(";\n", out);
    if (w->rate_per_ks % 1000 == 0 && w->rate_per_ks > 0) /* as written: N/s or N/m */
        fprintf(out, "    admit %llu/s;\n", (unsigned long long)(w->rate_per_ks / 1000));
    else if (w->rate_per_ks > 0)
        fprintf(out, "    admit %llu/m;\n",
                (unsigned long long)((w->rate_per_ks * 60 + 500) / 1000));
    if (w->max_active > 0)
        fprintf(out, "    max_active %llu;\n", (unsigned long long)w->max_active);
    if (w->p99_limit_ms > 0 || w->err_limit_permille > 0)
        fprintf(out, "    adaptive p99=%s errors=%.1f%%;\n", fmt_dur(w->p99_limit_ms, b, sizeof(b)),
                (double)w->err_limit_permille / 10.0);
    fprintf(out, "    session_ttl %s;\n", fmt_dur(w->session_ttl_ms, b, sizeof(b)));
    if (w->opens_at_ms > 0)
        fprintf(out, "    opens_at %lld;\n", (long long)(w->opens_at_ms / 1000));
    fprintf(out, "    active %s;\n", w->active ? "on" : "off");
    if (w->redis_name != NULL) {
        fputs("    redis ", out);
        put_word(out, w->redis_name);
        fprintf(out, " timeout=%s;\n", fmt_dur(w->redis_timeout_ms, b, sizeof(b)));
    }
    fprintf(out, "    fallback %.1f%% %s;\n", (double)w->fallback_permille / 10.0,
            w->fail_closed ? "closed" : "open");
    fprintf(out, "    poll %s;\n", fmt_dur(w->poll_ms, b, sizeof(b)));
    if (w->page_file != NULL) {
        fputs("    page ", out);
        put_word(out, w->page_file);
        fputs(";\n", out);
    }
    for (size_t i = 0; i < w->n_bypass_prefix; i++) {
        fputs("    bypass_prefix ", out);
        put_word(out, w->bypass_prefix[i]);
        fputs(";\n", out);
    }
    if (w->bypass_header[0] != '\0')
        fprintf(out, "    bypass_header %s ********;\n", w->bypass_header);
    fputs("}\n", out);
}

static void dump_limit(const struct fg_conf_limit *l, FILE *out)
{
    static const char *const parts[] = {"client_ip", "header", "cookie", "route"};
    fprintf(out, "\nlimit %s {\n    key", l->name);
    for (size_t i = 0; i < l->n_key; i++) {
        fprintf(out, " %s", parts[l->key[i]]);
        if (l->key[i] == FG_LIMIT_KEY_HEADER || l->key[i] == FG_LIMIT_KEY_COOKIE)
            fprintf(out, " %s", l->key_name[i]);
    }
    const char *unit = l->period_ms == 1000 ? "s" : l->period_ms == 60000 ? "m" : "h";
    fprintf(out, ";\n    rate %llur/%s;\n    burst %llu;\n", (unsigned long long)l->requests, unit,
            (unsigned long long)l->burst);
    if (l->redis) {
        char b[32];
        fputs("    backend redis ", out);
        if (l->redis_inline != NULL)
            put_masked_url(out, l->redis_inline->url);
        else
            put_word(out, l->redis_name);
        fprintf(out, " timeout=%s fail=%s;\n", fmt_dur(l->redis_timeout_ms, b, sizeof(b)),
                l->fail_closed ? "closed" : "open");
    } else {
        fputs("    backend local;\n", out);
    }
    fputs("}\n", out);
}

static void dump_redis(const struct fg_conf_redis *rd, FILE *out)
{
    static const char *const modes[] = {"auto", "on", "off"};
    char b[32];
    fprintf(out, "\nredis %s {\n    url ", rd->name);
    put_masked_url(out, rd->url);
    fputs(";\n", out);
    if (rd->password_file != NULL) {
        fputs("    password_file ", out);
        put_word(out, rd->password_file);
        fputs(";\n", out);
    }
    if (rd->iam) {
        fputs("    auth iam user=", out);
        put_word(out, rd->iam_user);
        fputs(" cache=", out);
        put_word(out, rd->iam_cache);
        if (rd->iam_serverless)
            fputs(" serverless", out);
        if (rd->iam_region != NULL)
            fprintf(out, " region=%s", rd->iam_region);
        fputs(";\n", out);
        fputs("    imds_endpoint ", out);
        put_word(out, rd->imds_endpoint != NULL ? rd->imds_endpoint : "http://169.254.169.254");
        fputs(";\n", out);
    }
    if (rd->ssl_ca_file != NULL) {
        fputs("    ssl_ca_file ", out);
        put_word(out, rd->ssl_ca_file);
        fputs(";\n", out);
    }
    fprintf(out, "    cluster %s;\n", modes[rd->cluster]);
    fprintf(out, "    connect_timeout %s;\n", fmt_dur(rd->connect_timeout_ms, b, sizeof(b)));
    fprintf(out, "    resolve_interval %s;\n", fmt_dur(rd->resolve_interval_ms, b, sizeof(b)));
    uint64_t age = rd->max_connection_age_set ? rd->max_connection_age_ms
                   : rd->iam                  ? FG_CONF_REDIS_IAM_AGE_MS
                                              : 0;
    fprintf(out, "    max_connection_age %s;\n", age ? fmt_dur(age, b, sizeof(b)) : "off");
    fputs("}\n", out);
}

static void dump_server(const struct fg_conf_server *s, FILE *out)
{
    char b[32];
    fputs("\nserver {\n", out);
    for (size_t i = 0; i < s->n_listens; i++)
        fprintf(out, "    listen %s backlog=%d%s;\n", s->listens[i].addr.text,
                s->listens[i].backlog, s->listens[i].ssl ? " ssl" : "");
    for (size_t i = 0; i < s->n_certs; i++) {
        fputs("    certificate ", out);
        put_word(out, s->certs[i].cert);
        fputs(";\n    certificate_key ", out);
        put_word(out, s->certs[i].key != NULL ? s->certs[i].key : "");
        fputs(";\n", out);
    }
    if (s->tls != NULL) {
        fprintf(out, "    ssl_protocols %s;\n",
                s->ssl_min_version == TLS1_3_VERSION ? "TLSv1.3" : "TLSv1.2 TLSv1.3");
        if (s->ssl_ciphers != NULL) {
            fputs("    ssl_ciphers ", out);
            put_word(out, s->ssl_ciphers);
            fputs(";\n", out);
        }
        fprintf(out, "    ssl_session_cache %llu;\n", (unsigned long long)s->ssl_session_cache);
        fprintf(out, "    ssl_session_timeout %s;\n",
                fmt_dur(s->ssl_session_timeout_ms, b, sizeof(b)));
        fprintf(out, "    ssl_session_tickets %s;\n", s->ssl_session_tickets ? "on" : "off");
    }
    fprintf(out, "    keepalive_timeout %s;\n", fmt_dur(s->keepalive_timeout_ms, b, sizeof(b)));
    fprintf(out, "    keepalive_requests %u;\n", s->keepalive_requests);
    fprintf(out, "    header_timeout %s;\n", fmt_dur(s->header_timeout_ms, b, sizeof(b)));
    fprintf(out, "    body_timeout %s;\n", fmt_dur(s->body_timeout_ms, b, sizeof(b)));
    fprintf(out, "    body_min_rate %s;\n", fmt_size(s->body_min_rate, b, sizeof(b)));
    fprintf(out, "    send_timeout %s;\n", fmt_dur(s->send_timeout_ms, b, sizeof(b)));
    fprintf(out, "    max_request_line %s;\n", fmt_size(s->max_request_line, b, sizeof(b)));
    fprintf(out, "    max_header_size %s;\n", fmt_size(s->max_header_bytes, b, sizeof(b)));
    fprintf(out, "    max_headers %zu;\n", s->max_headers);
    fprintf(out, "    client_max_body_size %s;\n", fmt_size(s->client_max_body_size, b, sizeof(b)));
    if (s->n_trusted_proxies > 0) {
        fputs("    trusted_proxies", out);
        for (size_t i = 0; i < s->n_trusted_proxies; i++) {
            char t[64];
            cidr_text(&s->trusted_proxies[i], t, sizeof(t));
            fprintf(out, " %s", t);
        }
        fputs(";\n", out);
    }
    fprintf(out, "    request_id %s;\n", s->add_request_id ? "on" : "off");
    fprintf(out, "    server_timing %s;\n", s->server_timing ? "on" : "off");
    if (s->access_log == NULL) {
        fputs("    access_log off;\n", out);
    } else {
        fputs("    access_log ", out);
        put_word(out, s->access_log);
        fprintf(out, " sample=%g slow=%s;\n", s->access_log_sample,
                fmt_dur(s->slow_request_ms, b, sizeof(b)));
    }
    for (size_t i = 0; i < s->n_routes; i++)
        dump_route(&s->routes[i], out);
    fputs("}\n", out);
}

void fg_config_dump(const struct fg_config *c, FILE *out)
{
    char b[32];
    fputs("# effective configuration", out);
    if (c->path != NULL)
        fprintf(out, " of %s", c->path);
    fprintf(out, " (generation %llu)\n", (unsigned long long)c->generation);
    if (c->workers == 0)
        fputs("workers auto;\n", out);
    else
        fprintf(out, "workers %u;\n", c->workers);
    if (c->user != NULL) {
        fputs("user ", out);
        put_word(out, c->user);
        fputs(";\n", out);
    }
    if (c->pid_file != NULL) {
        fputs("pid_file ", out);
        put_word(out, c->pid_file);
        fputs(";\n", out);
    }
    fputs("error_log ", out);
    put_word(out, c->error_log != NULL ? c->error_log : "stderr");
    unsigned lv = (unsigned)c->error_log_level;
    fprintf(out, " %s;\n", lv < FG_ARRAY_LEN(level_names) ? level_names[lv] : "notice");
    fprintf(out, "shutdown_delay %s;\n", fmt_dur(c->shutdown_delay_ms, b, sizeof(b)));
    fprintf(out, "drain_timeout %s;\n", fmt_dur(c->drain_timeout_ms, b, sizeof(b)));
    fprintf(out, "max_tunnels %llu;\n", (unsigned long long)c->max_tunnels);
    fprintf(out, "ssl_ticket_key_rotation %s;\n",
            fmt_dur(c->ssl_ticket_key_rotation_ms, b, sizeof(b)));
    if (!c->admin.enabled) {
        fputs("admin off;\n", out);
    } else {
        fprintf(out, "admin {\n    listen %s;\n", c->admin.addr.text);
        if (c->admin.token != NULL)
            fputs("    token \"********\";\n", out);
        if (c->admin.agent_status)
            fprintf(out, "    agent_status %s;\n", c->admin.agent_status_addr.text);
        fprintf(out, "    dashboard %s;\n    stream_viewers %u;\n    stream_buffer %s;\n",
                c->admin.dashboard ? "on" : "off", c->admin.stream_viewers,
                fmt_size(c->admin.stream_buffer, b, sizeof(b)));
        fputs("}\n", out);
    }
    fputs("instance_id ", out);
    put_word(out, c->instance_id != NULL ? c->instance_id : "auto");
    fputs(";\n", out);
    if (!c->emf.enabled) {
        fputs("emf off;\n", out);
    } else {
        fputs("emf {\n    target ", out);
        put_word(out, c->emf.target);
        fprintf(out, ";\n    interval %s;\n    namespace ",
                fmt_dur(c->emf.interval_ms, b, sizeof(b)));
        put_word(out, c->emf.ns != NULL ? c->emf.ns : "flashgate");
        fputs(";\n    log_group ", out);
        put_word(out, c->emf.log_group != NULL ? c->emf.log_group : "flashgate");
        fprintf(out, ";\n    instance_dimension %s;\n    route_dimension %s;\n",
                c->emf.instance_dimension ? "on" : "off", c->emf.route_dimension ? "on" : "off");
        for (size_t i = 0; i < c->emf.n_dims; i++) {
            fputs("    dimension ", out);
            put_word(out, c->emf.dims[i].name);
            fputc(' ', out);
            put_word(out, c->emf.dims[i].value);
            fputs(";\n", out);
        }
        fputs("}\n", out);
    }
    for (size_t i = 0; i < c->n_upstreams; i++)
        dump_upstream(&c->upstreams[i], out);
    for (size_t i = 0; i < c->n_caches; i++) {
        const struct fg_conf_cache *k = &c->caches[i];
        char m[32];
        fprintf(out, "\ncache %s {\n    memory %s;\n    max_object %s;\n    tag_field", k->name,
                fmt_size(k->memory, b, sizeof(b)), fmt_size(k->max_object, m, sizeof(m)));
        if (k->n_tag_fields == 0)
            fputs(" off", out);
        for (size_t j = 0; j < k->n_tag_fields; j++)
            fprintf(out, " %s", k->tag_fields[j]);
        fprintf(out, ";\n    tag_strip %s;\n    shared %s;\n    shared_timeout %s;\n",
                k->tag_strip ? "on" : "off", k->shared ? "on" : "off",
                fmt_dur(k->shared_timeout_ms, b, sizeof(b)));
        fprintf(out, "    shared_max_object %s;\n}\n",
                fmt_size(k->shared_max_object, m, sizeof(m)));
    }
    fprintf(out, "limit_table_entries %llu;\n", (unsigned long long)c->limit_table_entries);
    if (c->n_resolvers > 0) {
        fputs("resolver", out);
        for (size_t i = 0; i < c->n_resolvers; i++)
            fprintf(out, " %s", c->resolvers[i]);
        fputs(";\n", out);
    }
    for (size_t i = 0; i < c->n_redis; i++)
        dump_redis(&c->redis[i], out);
    if (c->fleet.enabled) {
        static const char *const sharded[] = {"auto", "on", "off"};
        fputs("fleet {\n    redis ", out);
        put_word(out, c->fleet.redis_name);
        fputs(";\n    channel ", out);
        put_word(out, c->fleet.channel);
        fprintf(out, ";\n    sharded %s;\n    purge_log %llu;\n", sharded[c->fleet.sharded],
                (unsigned long long)c->fleet.purge_log);
        fprintf(out,
                "    hot_keys %llu;\n    warm_start %llu;\n    warm_timeout %s;\n    "
                "warm_concurrency %llu;\n}\n",
                (unsigned long long)c->fleet.hot_keys, (unsigned long long)c->fleet.warm_start,
                fmt_dur(c->fleet.warm_timeout_ms, b, sizeof(b)),
                (unsigned long long)c->fleet.warm_concurrency);
    }
    for (size_t i = 0; i < c->n_limits; i++)
        dump_limit(&c->limits[i], out);
    for (size_t i = 0; i < c->n_waitrooms; i++)
        dump_waitroom(&c->waitrooms[i], out);
    for (size_t i = 0; i < c->n_servers; i++)
        dump_server(&c->servers[i], out);
}
