/*
 * creds.c — AWS credentials and region, for whatever signs requests (the agent's SQS sink
 * and drain mode, flashgate's ElastiCache IAM tokens).
 *
 * Credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
 * AWS_SESSION_TOKEN, read once at start) or, without them, from the instance's role over
 * IMDSv2: PUT /latest/api/token for a session token, GET
 * /latest/meta-data/iam/security-credentials/ for the role name, then GET that path plus
 * the role for {AccessKeyId, SecretAccessKey, Token, Expiration}. They are fetched again
 * when the larger of 5 minutes and a fifth of their lifetime is left; a fetch that fails
 * is retried with a backoff (1 s doubling to 60 s) while the old ones stay in use until
 * they expire, so an IMDS hiccup costs nothing. The region is the one the owner names
 * (configured, or read from an endpoint URL), else IMDS's /latest/meta-data/placement/region.
 */
#include "aws/aws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/crypto.h>

#include "core/core.h"
#include "httpc/httpc.h"
#include "json/json.h"

#define IMDS_TOKEN_TTL_S   21600
#define IMDS_RETRY_MIN_MS  1000
#define IMDS_RETRY_MAX_MS  60000
#define IMDS_TOKEN_PATH    "/latest/api/token"
#define IMDS_ROLES_PATH    "/latest/meta-data/iam/security-credentials/"
#define IMDS_REGION_PATH   "/latest/meta-data/placement/region"
#define REFRESH_MARGIN_MIN 300
#define IMDS_TIMEOUT_MS    2000

enum imds_step { S_NONE = 0, S_TOKEN, S_REGION, S_ROLE, S_CREDS };

struct fg_creds {
    struct event_base *base;
    char *imds_endpoint;
    uint64_t imds_timeout_ms;
    char *user_agent;
    struct fg_creds_stats st;
    void (*ready)(void *);
    void *arg;
    bool from_env;
    struct fg_creds_value cur;
    char region[FG_SIGV4_NAME_MAX + 1];
    struct fg_httpc *imds;
    struct fg_httpc_req *req;
    enum imds_step step;
    char *token;
    int64_t token_expires_s;
    char role[256];
    bool want_creds; /* a credentials fetch is due */
    unsigned failures;
    struct event *timer;
};

/* ---- pure parts ------------------------------------------------------------------------------ */

void fg_creds_value_clear(struct fg_creds_value *v)
{
    if (v->secret_access_key != NULL)
        OPENSSL_cleanse(v->secret_access_key, strlen(v->secret_access_key));
    free(v->access_key_id);
    free(v->secret_access_key);
    free(v->session_token);
    memset(v, 0, sizeof(*v));
}

int64_t fg_creds_refresh_at(int64_t obtained_s, int64_t expires_s)
{
    int64_t life = expires_s - obtained_s;
    if (life <= 1)
        return obtained_s + 1;
    int64_t margin = life / 5 > REFRESH_MARGIN_MIN ? life / 5 : REFRESH_MARGIN_MIN;
    int64_t at = expires_s - margin;
    if (at <= obtained_s)
        at = obtained_s + life / 2; /* short-lived: halfway, not every second */
    return at;
}

static char *dup_str(const char *s, size_t len)
{
    char *d = malloc(len + 1);
    if (d != NULL) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

bool fg_creds_parse_imds(const char *body, size_t len, int64_t now_s, struct fg_creds_value *out,
                         char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    struct fg_json *j = fg_json_parse(body, len, err, errlen);
    if (j == NULL)
        return false;
    bool ok = false;
    size_t kl = 0, sl = 0, tl = 0, el = 0, cl = 0;
    const char *code = fg_json_get_string(j, "Code", &cl);
    const char *key = fg_json_get_string(j, "AccessKeyId", &kl);
    const char *secret = fg_json_get_string(j, "SecretAccessKey", &sl);
    const char *token = fg_json_get_string(j, "Token", &tl);
    const char *exp = fg_json_get_string(j, "Expiration", &el);
    int64_t expires = 0;
    if (code != NULL && strcmp(code, "Success") != 0) {
        snprintf(err, errlen, "IMDS says Code \"%.40s\"", code);
    } else if (key == NULL || kl == 0 || secret == NULL || sl == 0) {
        snprintf(err, errlen, "no AccessKeyId or SecretAccessKey");
    } else if (exp == NULL || !fg_aws_parse_iso8601(exp, el, &expires)) {
        snprintf(err, errlen, "no Expiration, or not an ISO 8601 UTC time");
    } else if (expires <= now_s) {
        snprintf(err, errlen, "the credentials have already expired (%.40s)", exp);
    } else {
        out->access_key_id = dup_str(key, kl);
        out->secret_access_key = dup_str(secret, sl);
        out->session_token = token != NULL && tl > 0 ? dup_str(token, tl) : NULL;
        out->obtained_s = now_s;
        out->expires_s = expires;
        if (out->access_key_id == NULL || out->secret_access_key == NULL ||
            (token != NULL && tl > 0 && out->session_token == NULL)) {
            snprintf(err, errlen, "out of memory");
            fg_creds_value_clear(out);
        } else {
            ok = true;
        }
    }
    fg_json_free(j);
    return ok;
}

/* ---- the IMDS conversation ------------------------------------------------------------------- */

static void imds_next(struct fg_creds *c);

static void arm(struct fg_creds *c, uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    event_add(c->timer, &tv);
}

static void imds_failed(struct fg_creds *c, const char *what)
{
    c->st.failed++;
    c->failures++;
    uint64_t d = fg_backoff_ms(IMDS_RETRY_MIN_MS * 2, IMDS_RETRY_MAX_MS, c->failures);
    int64_t now = fg_wall_s();
    const char *state = c->cur.access_key_id == NULL ? "no credentials yet"
                        : c->cur.expires_s > now     ? "the current ones stay in use"
                                                     : "the current ones have expired";
    if (c->failures <= 3 || c->failures % 20 == 0)
        fg_warn("imds %s: %s (%s); retrying in %llums", c->imds_endpoint, what, state,
                (unsigned long long)d);
    c->step = S_NONE;
    arm(c, d);
}

static void imds_cb(const struct fg_httpc_result *res, void *arg)
{
    struct fg_creds *c = arg;
    c->req = NULL;
    enum imds_step step = c->step;
    c->step = S_NONE;
    char why[200];
    if (res->status == 0) {
        snprintf(why, sizeof(why), "%s", res->error);
        imds_failed(c, why);
        return;
    }
    if (res->status == 401 && step != S_TOKEN) {
        free(c->token); /* the session token expired or was revoked: the retry gets one */
        c->token = NULL;
        imds_failed(c, "the session token was refused (401)");
        return;
    }
    if (res->status != 200) {
        snprintf(why, sizeof(why), "%s answered %d",
                 step == S_TOKEN    ? "PUT " IMDS_TOKEN_PATH
                 : step == S_REGION ? "GET " IMDS_REGION_PATH
                 : step == S_ROLE   ? "GET " IMDS_ROLES_PATH
                                    : "GET the role's credentials",
                 res->status);
        if (res->status == 404 && step == S_CREDS)
            c->role[0] = '\0'; /* the role changed */
        imds_failed(c, why);
        return;
    }
    int64_t now = fg_wall_s();
    switch (step) {
    case S_TOKEN: {
        char *t = dup_str(res->body, res->body_len);
        if (t == NULL || res->body_len == 0 || strpbrk(t, "\r\n") != NULL) {
            free(t);
            imds_failed(c, "an unusable session token");
            return;
        }
        free(c->token);
        c->token = t;
        c->token_expires_s = now + IMDS_TOKEN_TTL_S;
        break;
    }
    case S_REGION: {
        size_t n = res->body_len;
        while (n > 0 && (res->body[n - 1] == '\n' || res->body[n - 1] == ' '))
            n--;
        if (n == 0 || n > FG_SIGV4_NAME_MAX || memchr(res->body, '/', n) != NULL) {
            imds_failed(c, "an unusable region");
            return;
        }
        memcpy(c->region, res->body, n);
        c->region[n] = '\0';
        fg_notice("region %s (from the instance metadata)", c->region);
        if (c->from_env || c->cur.access_key_id != NULL)
            c->ready(c->arg);
        break;
    }
    case S_ROLE: {
        size_t n = 0; /* the first line: one role per instance profile */
        while (n < res->body_len && res->body[n] != '\r' && res->body[n] != '\n')
            n++;
        if (n == 0 || n >= sizeof(c->role) || memchr(res->body, '/', n) != NULL) {
            imds_failed(c, "no instance role attached (empty role list)");
            return;
        }
        memcpy(c->role, res->body, n);
        c->role[n] = '\0';
        break;
    }
    case S_CREDS: {
        struct fg_creds_value v;
        char err[160];
        if (!fg_creds_parse_imds(res->body, res->body_len, now, &v, err, sizeof(err))) {
            snprintf(why, sizeof(why), "role %.64s: %.120s", c->role, err);
            imds_failed(c, why);
            return;
        }
        fg_creds_value_clear(&c->cur);
        c->cur = v;
        c->want_creds = false;
        c->failures = 0;
        c->st.refreshed++;
        int64_t at = fg_creds_refresh_at(v.obtained_s, v.expires_s);
        fg_info("credentials of role %s (%s), valid for %llds; next fetch in %llds", c->role,
                v.access_key_id, (long long)(v.expires_s - now), (long long)(at - now));
        arm(c, (uint64_t)(at > now ? at - now : 1) * 1000);
        if (c->region[0] != '\0')
            c->ready(c->arg);
        return;
    }
    case S_NONE:
        return;
    }
    imds_next(c);
}

static void imds_send(struct fg_creds *c, enum imds_step step, const char *method, const char *path)
{
    struct evbuffer *b = evbuffer_new();
    if (b == NULL) {
        imds_failed(c, "out of memory");
        return;
    }
    evbuffer_add_printf(b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path,
                        fg_httpc_url(c->imds)->hostport);
    if (step == S_TOKEN)
        evbuffer_add_printf(b, "X-aws-ec2-metadata-token-ttl-seconds: %d\r\n", IMDS_TOKEN_TTL_S);
    else
        evbuffer_add_printf(b, "X-aws-ec2-metadata-token: %s\r\n", c->token);
    evbuffer_add_printf(b, "Content-Length: 0\r\nUser-Agent: %s/%s\r\n\r\n", c->user_agent,
                        PACKAGE_VERSION);
    c->step = step;
    c->req = fg_httpc_send(c->imds, step == S_TOKEN ? FG_HTTP_PUT : FG_HTTP_GET, b,
                           c->imds_timeout_ms, imds_cb, c);
    evbuffer_free(b);
    if (c->req == NULL)
        imds_failed(c, "out of memory");
}

/* Ask IMDS for the next thing still missing. */
static void imds_next(struct fg_creds *c)
{
    if (c->req != NULL)
        return;
    bool need_region = c->region[0] == '\0';
    bool need_creds = !c->from_env && c->want_creds;
    if (!need_region && !need_creds)
        return;
    if (c->token == NULL || fg_wall_s() + 60 >= c->token_expires_s) {
        imds_send(c, S_TOKEN, "PUT", IMDS_TOKEN_PATH);
    } else if (need_region) {
        imds_send(c, S_REGION, "GET", IMDS_REGION_PATH);
    } else if (c->role[0] == '\0') {
        imds_send(c, S_ROLE, "GET", IMDS_ROLES_PATH);
    } else {
        char path[sizeof(IMDS_ROLES_PATH) + sizeof(c->role)];
        snprintf(path, sizeof(path), "%s%s", IMDS_ROLES_PATH, c->role);
        imds_send(c, S_CREDS, "GET", path);
    }
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct fg_creds *c = arg;
    if (!c->from_env)
        c->want_creds = true;
    imds_next(c);
}

/* ---- the API ----------------------------------------------------------------------------------
 */

struct fg_creds *fg_creds_new(struct event_base *base, struct evdns_base *dns,
                              const struct fg_creds_config *cfg, void (*ready)(void *), void *arg,
                              char *err, size_t errlen)
{
    struct fg_creds *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->base = base;
    c->imds_endpoint =
        strdup(cfg->imds_endpoint != NULL ? cfg->imds_endpoint : FG_AWS_IMDS_DEFAULT);
    c->imds_timeout_ms = cfg->imds_timeout_ms != 0 ? cfg->imds_timeout_ms : IMDS_TIMEOUT_MS;
    c->user_agent = strdup(cfg->user_agent != NULL ? cfg->user_agent : "flashgate");
    c->ready = ready;
    c->arg = arg;
    if (c->imds_endpoint == NULL || c->user_agent == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (cfg->region != NULL && !fg_aws_region_valid(cfg->region, strlen(cfg->region))) {
        snprintf(err, errlen, "'%s' is not a region name", cfg->region);
        goto fail;
    }
    const char *key = getenv("AWS_ACCESS_KEY_ID"), *secret = getenv("AWS_SECRET_ACCESS_KEY");
    const char *token = getenv("AWS_SESSION_TOKEN");
    if (key != NULL && key[0] != '\0' && secret != NULL && secret[0] != '\0') {
        c->from_env = true;
        c->cur.access_key_id = strdup(key);
        c->cur.secret_access_key = strdup(secret);
        c->cur.session_token = token != NULL && token[0] != '\0' ? strdup(token) : NULL;
        if (c->cur.access_key_id == NULL || c->cur.secret_access_key == NULL) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    } else if ((key != NULL && key[0] != '\0') || (secret != NULL && secret[0] != '\0')) {
        fg_warn("only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set: ignoring "
                "both, using the instance role");
    }
    if (cfg->region != NULL)
        snprintf(c->region, sizeof(c->region), "%s", cfg->region);
    c->timer = evtimer_new(base, timer_cb, c);
    if (c->timer == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (!c->from_env || c->region[0] == '\0') {
        struct fg_httpc_opts o = {.name = "imds", .allow_plain_http = true, .max_idle = 1};
        c->imds = fg_httpc_new(base, dns, c->imds_endpoint, &o, err, errlen);
        if (c->imds == NULL)
            goto fail;
        c->want_creds = !c->from_env;
        arm(c, 0);
    }
    fg_notice("AWS credentials from %s, region %s", c->from_env ? "the environment" : "IMDS",
              c->region[0] != '\0' ? c->region : "from IMDS");
    return c;
fail:
    fg_creds_free(c);
    return NULL;
}

bool fg_creds_get(struct fg_creds *c, struct fg_sigv4_credentials *out)
{
    if (c == NULL || c->cur.access_key_id == NULL)
        return false;
    if (c->cur.expires_s != 0 && fg_wall_s() >= c->cur.expires_s)
        return false;
    out->access_key_id = c->cur.access_key_id;
    out->secret_access_key = c->cur.secret_access_key;
    out->session_token = c->cur.session_token;
    return true;
}

const char *fg_creds_region(const struct fg_creds *c)
{
    return c != NULL && c->region[0] != '\0' ? c->region : NULL;
}

const char *fg_creds_source(const struct fg_creds *c)
{
    return c != NULL && c->from_env ? "env" : "imds";
}

void fg_creds_get_stats(const struct fg_creds *c, struct fg_creds_stats *st)
{
    if (c != NULL)
        *st = c->st;
    else
        memset(st, 0, sizeof(*st));
}

void fg_creds_free(struct fg_creds *c)
{
    if (c == NULL)
        return;
    fg_httpc_cancel(c->req);
    fg_httpc_free(c->imds);
    if (c->timer != NULL)
        event_free(c->timer);
    fg_creds_value_clear(&c->cur);
    free(c->token);
    free(c->imds_endpoint);
    free(c->user_agent);
    free(c);
}
