/*
 * endpoint.c — one configured Redis: checked and built at config load (so a wrong
 * password file or CA bundle refuses the config with its line, and the running config
 * stays), then shared read-only by every client of every worker.
 *
 * Secrets. A password comes from the URL or, better, from a file nobody else can read:
 * the file must be a regular file with no permission for group or others, owned by root
 * or by the user flashgate runs as (systemd's LoadCredential= hands the service such a
 * copy of a root-only file). It is read at every load, so a rotated password is taken by
 * a reload. Passwords and IAM tokens are wiped from memory when dropped and never appear
 * in logs, /config or /stats.
 */
#include "redis/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/util.h>
#include <openssl/crypto.h>

#include "tls/tls.h"

#define ENDPOINT_MAGIC   0x72656470u /* "redp" */
#define PASSWORD_MAX     1024
#define CONNECT_DEFAULT  1000
#define SECRET_FILE_READ 4096

void fg_redis_secret_free(char *s)
{
    if (s != NULL) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

/* Read the one-line password of path, refusing a file others could read. */
static char *read_password_file(const char *path, char *err, size_t errlen)
{
    char buf[SECRET_FILE_READ + 1];
    char *out = NULL;
    ssize_t n = fg_secret_file_read("password_file", path, buf, SECRET_FILE_READ, err, errlen);
    if (n >= 0) {
        size_t len = (size_t)n;
        if (len > 0 && buf[len - 1] == '\n')
            len--;
        if (len > 0 && buf[len - 1] == '\r')
            len--;
        bool ok = len > 0 && len <= PASSWORD_MAX;
        for (size_t i = 0; ok && i < len; i++)
            if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
                ok = false;
        if (!ok) {
            snprintf(err, errlen, "password_file %s: expected one line of 1 to %d printable bytes",
                     path, PASSWORD_MAX);
        } else {
            buf[len] = '\0';
            out = strdup(buf);
            if (out == NULL)
                snprintf(err, errlen, "out of memory");
        }
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    return out;
}

static bool copy_field(char *dst, size_t cap, const char *src, const char *what, char *err,
                       size_t errlen)
{
    if (src == NULL || src[0] == '\0' || strlen(src) >= cap) {
        snprintf(err, errlen, "%s: missing or longer than %zu bytes", what, cap - 1);
        return false;
    }
    snprintf(dst, cap, "%s", src);
    return true;
}

static bool check_resolver(const char *s, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    int len = (int)sizeof(ss);
    if (strlen(s) >= 64 || evutil_parse_sockaddr_port(s, (struct sockaddr *)&ss, &len) != 0) {
        snprintf(err, errlen, "resolver '%s': expected an IP address with an optional port", s);
        return false;
    }
    return true;
}

static bool setup_auth(struct fg_redis_endpoint *ep, const struct fg_redis_endpoint_config *c,
                       char *err, size_t errlen)
{
    struct fg_redis_url *u = &ep->url;
    if (c->iam) {
        if (!u->tls) {
            snprintf(err, errlen,
                     "auth iam needs rediss:// (ElastiCache takes IAM tokens over "
                     "TLS only)");
            return false;
        }
        if (u->password[0] != '\0' || c->password_file != NULL) {
            snprintf(err, errlen, "auth iam and a password exclude each other");
            return false;
        }
        if (!copy_field(ep->iam_user, sizeof(ep->iam_user), c->iam_user, "auth iam user", err,
                        errlen) ||
            !copy_field(ep->iam_cache, sizeof(ep->iam_cache), c->iam_cache, "auth iam cache", err,
                        errlen))
            return false;
        if (u->user[0] != '\0' && strcmp(u->user, ep->iam_user) != 0) {
            snprintf(err, errlen,
                     "the URL's user differs from auth iam's user (the IAM user "
                     "id is the user name)");
            return false;
        }
        if (c->iam_region != NULL) {
            if (!fg_aws_region_valid(c->iam_region, strlen(c->iam_region))) {
                snprintf(err, errlen, "auth iam: '%s' is not a region name", c->iam_region);
                return false;
            }
            snprintf(ep->iam_region, sizeof(ep->iam_region), "%s", c->iam_region);
        }
        snprintf(ep->imds, sizeof(ep->imds), "%s", c->imds != NULL ? c->imds : FG_AWS_IMDS_DEFAULT);
        ep->iam = true;
        ep->iam_serverless = c->iam_serverless;
        return true;
    }
    if (c->password_file != NULL) {
        if (u->password[0] != '\0') {
            snprintf(err, errlen, "a password in the URL and password_file exclude each other");
            return false;
        }
        ep->password = read_password_file(c->password_file, err, errlen);
        return ep->password != NULL;
    }
    if (u->password[0] != '\0') {
        ep->password = strdup(u->password);
        if (ep->password == NULL) {
            snprintf(err, errlen, "out of memory");
            return false;
        }
        return true;
    }
    if (u->user[0] != '\0') {
        snprintf(err, errlen, "user '%s' needs a password (password_file, or in the URL)", u->user);
        return false;
    }
    return true;
}

struct fg_redis_endpoint *fg_redis_endpoint_new(const struct fg_redis_endpoint_config *c, char *err,
                                                size_t errlen)
{
    struct fg_redis_endpoint *ep = calloc(1, sizeof(*ep));
    if (ep == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ep->magic = ENDPOINT_MAGIC;
    atomic_init(&ep->refs, 1);
    pthread_mutex_init(&ep->lock, NULL);
    snprintf(ep->name, sizeof(ep->name), "%s", c->name != NULL ? c->name : "redis");
    if (!fg_redis_url_parse(c->url, &ep->url, err, errlen) || !setup_auth(ep, c, err, errlen))
        goto fail;
    OPENSSL_cleanse(ep->url.password, sizeof(ep->url.password)); /* kept in ep->password */
    {
        /* the display shows that a password is in use, never which */
        struct fg_redis_url shown = ep->url;
        if (ep->password != NULL)
            snprintf(shown.password, sizeof(shown.password), "x");
        if (ep->iam)
            snprintf(shown.user, sizeof(shown.user), "%s", ep->iam_user);
        fg_redis_url_display(&shown, ep->display, sizeof(ep->display));
        OPENSSL_cleanse(shown.password, sizeof(shown.password));
    }
    ep->cluster = c->cluster;
    if (ep->cluster == FG_REDIS_CLUSTER_ON && ep->url.db != 0) {
        snprintf(err, errlen, "cluster mode has database 0 only (drop /%u from the URL)",
                 ep->url.db);
        goto fail;
    }
    ep->connect_timeout_ms = c->connect_timeout_ms ? c->connect_timeout_ms : CONNECT_DEFAULT;
    ep->resolve_interval_ms = c->resolve_interval_ms;
    ep->max_age_ms = c->max_age_ms;
    if (c->n_resolvers > FG_REDIS_RESOLVERS_MAX) {
        snprintf(err, errlen, "at most %d resolvers", FG_REDIS_RESOLVERS_MAX);
        goto fail;
    }
    for (size_t i = 0; i < c->n_resolvers; i++) {
        if (!check_resolver(c->resolvers[i], err, errlen))
            goto fail;
        snprintf(ep->resolvers[i], sizeof(ep->resolvers[i]), "%s", c->resolvers[i]);
    }
    ep->n_resolvers = c->n_resolvers;
    if (ep->url.tls) {
        char name[128];
        snprintf(name, sizeof(name), "redis %s", ep->name);
        struct fg_tls_client_opts o = {.name = name, .ca_file = c->ca_file};
        ep->tls = fg_tls_client_new(&o, err, errlen);
        if (ep->tls == NULL)
            goto fail;
    } else if (c->ca_file != NULL) {
        snprintf(err, errlen, "ssl_ca_file needs a rediss:// URL");
        goto fail;
    }
    ep->stats = fg_redis_counters_get(ep->name);
    return ep;
fail:
    fg_redis_endpoint_unref(ep);
    return NULL;
}

struct fg_redis_endpoint *fg_redis_endpoint_ref(struct fg_redis_endpoint *ep)
{
    FG_ASSERT(ep->magic == ENDPOINT_MAGIC);
    atomic_fetch_add_explicit(&ep->refs, 1, memory_order_relaxed);
    return ep;
}

void fg_redis_endpoint_unref(struct fg_redis_endpoint *ep)
{
    if (ep == NULL)
        return;
    FG_ASSERT(ep->magic == ENDPOINT_MAGIC);
    if (atomic_fetch_sub_explicit(&ep->refs, 1, memory_order_acq_rel) != 1)
        return;
    fg_redis_secret_free(ep->password);
    fg_redis_secret_free(ep->token);
    iam_source_release(ep->src);
    fg_tls_client_unref(ep->tls);
    OPENSSL_cleanse(&ep->url, sizeof(ep->url));
    pthread_mutex_destroy(&ep->lock);
    ep->magic = 0;
    free(ep);
}

const char *fg_redis_endpoint_name(const struct fg_redis_endpoint *ep)
{
    return ep->name;
}

const char *fg_redis_endpoint_display(const struct fg_redis_endpoint *ep)
{
    return ep->display;
}

void fg_redis_endpoint_prepare(struct fg_redis_endpoint *ep)
{
    if (!ep->iam)
        return;
    char err[200];
    pthread_mutex_lock(&ep->lock);
    if (ep->src == NULL)
        ep->src = iam_source_acquire(ep->imds, ep->iam_region[0] ? ep->iam_region : NULL, err,
                                     sizeof(err));
    pthread_mutex_unlock(&ep->lock);
}

char *fg_redis_endpoint_secret(struct fg_redis_endpoint *ep, int64_t now_s, const char **user,
                               enum fg_redis_auth_fail *why, bool *failed, char *err, size_t errlen)
{
    *failed = false;
    *user = ep->url.user;
    if (!ep->iam) {
        if (ep->password == NULL)
            return NULL;
        char *s = strdup(ep->password);
        if (s == NULL) {
            *failed = true;
            *why = FG_REDIS_AUTH_OTHER;
            snprintf(err, errlen, "out of memory");
        }
        return s;
    }
    *user = ep->iam_user;
    char *out = NULL;
    pthread_mutex_lock(&ep->lock);
    /* A token is reused while young; a clock that went back more than a minute makes it
     * suspect, so a new one is minted. */
    bool fresh = ep->token != NULL && now_s >= ep->token_minted_s - 60 &&
                 now_s - ep->token_minted_s < FG_REDIS_IAM_RENEW_S;
    if (!fresh) {
        if (ep->src == NULL)
            ep->src = iam_source_acquire(ep->imds, ep->iam_region[0] ? ep->iam_region : NULL, err,
                                         errlen);
        bool no_creds = false;
        char *tok = ep->src != NULL
                        ? iam_source_token(ep->src, ep->iam_user, ep->iam_cache, ep->iam_serverless,
                                           now_s, &no_creds, err, errlen)
                        : NULL;
        if (tok != NULL) {
            fg_redis_secret_free(ep->token);
            ep->token = tok;
            ep->token_minted_s = now_s;
            rstat_add(ep->stats, RS_TOKEN_RENEWALS, 1);
        } else {
            *failed = true;
            *why = no_creds || ep->src == NULL ? FG_REDIS_AUTH_NO_CREDENTIALS : FG_REDIS_AUTH_OTHER;
        }
    }
    if (!*failed) {
        out = strdup(ep->token);
        if (out == NULL) {
            *failed = true;
            *why = FG_REDIS_AUTH_OTHER;
            snprintf(err, errlen, "out of memory");
        }
    }
    pthread_mutex_unlock(&ep->lock);
    return out;
}
