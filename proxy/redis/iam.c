/*
 * iam.c — ElastiCache IAM authentication tokens, and the credentials they are signed with.
 *
 * A token is a SigV4 presigned URL (AWS, "Authenticating with IAM" in the ElastiCache
 * guide): GET http://<cache-name>/?Action=connect&User=<user-id> (plus
 * &ResourceType=ServerlessCache for a serverless cache), signed for service "elasticache"
 * in the cache's region with the instance role's credentials, valid 15 minutes at most.
 * AWS's examples send the presigned URL without its "http://" as the password:
 * AUTH <user-id> <token>. The token only has to be valid when a connection authenticates;
 * the connection then lives on (up to ElastiCache's 12-hour cut, see client.c).
 *
 * Credentials come from proxy/aws (the environment, or IMDSv2 refreshed before expiry).
 * fg_creds runs on an event_base and is not thread-safe, so one background thread per
 * (IMDS endpoint, region) runs it and publishes a copy under a lock whenever it changes.
 * Workers mint tokens from that copy: signing is a few HMACs, nothing to wait for.
 */
#include "redis/internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/crypto.h>

/* ---- tokens ---------------------------------------------------------------------------- */

char *fg_redis_iam_presign(const char *host, const char *query,
                           const struct fg_sigv4_credentials *creds, const char *region,
                           const char *service, int64_t time, uint32_t expires, char *err,
                           size_t errlen)
{
    if (host == NULL || host[0] == '\0') {
        snprintf(err, errlen, "no host to sign for");
        return NULL;
    }
    struct fg_sigv4_header h = {"Host", 4, host, strlen(host)};
    struct fg_sigv4_request req = {
        .method = "GET", .path = "/", .query = query, .headers = &h, .n_headers = 1};
    struct fg_sigv4_params pr = {.creds = creds,
                                 .region = region,
                                 .service = service,
                                 .time = time,
                                 .presign_expires = expires};
    struct fg_sigv4_result res;
    char *out = NULL;
    if (!fg_sigv4_sign(&req, &pr, &res)) {
        snprintf(err, errlen, "cannot sign: %s", res.error != NULL ? res.error : "unknown error");
    } else {
        bool has_query = query != NULL && query[0] != '\0';
        size_t len = strlen(host) + 2 + (has_query ? strlen(query) + 1 : 0) +
                     strlen(res.presigned_query) + 1;
        out = malloc(len);
        if (out == NULL)
            snprintf(err, errlen, "out of memory");
        else
            snprintf(out, len, "%s/?%s%s%s", host, has_query ? query : "", has_query ? "&" : "",
                     res.presigned_query);
    }
    fg_sigv4_result_free(&res);
    return out;
}

char *fg_redis_iam_token(const char *user, const char *cache, bool serverless,
                         const struct fg_sigv4_credentials *creds, const char *region, int64_t time,
                         char *err, size_t errlen)
{
    char host[256], user_enc[400], query[600];
    size_t n = strlen(cache);
    if (n == 0 || n >= sizeof(host) || user == NULL || user[0] == '\0') {
        snprintf(err, errlen, "IAM token: empty or too long cache name or user");
        return NULL;
    }
    for (size_t i = 0; i <= n; i++) /* AWS names caches in lower case */
        host[i] = (char)tolower((unsigned char)cache[i]);
    if (fg_sigv4_uri_encode(user_enc, sizeof(user_enc), user, strlen(user), false) >=
        sizeof(user_enc)) {
        snprintf(err, errlen, "IAM token: user too long");
        return NULL;
    }
    snprintf(query, sizeof(query), "Action=connect&User=%s%s", user_enc,
             serverless ? "&ResourceType=ServerlessCache" : "");
    return fg_redis_iam_presign(host, query, creds, region, "elasticache", time, FG_REDIS_IAM_TTL_S,
                                err, errlen);
}

/* ---- the credentials thread ------------------------------------------------------------ */

struct iam_source {
    struct iam_source *next;
    unsigned refs; /* under sources_lock */
    char imds[256];
    char region[64]; /* as configured; "" : IMDS's */
    struct event_base *base;
    struct fg_creds *creds;
    int stop_fd;           /* an eventfd: written to stop the thread */
    struct event *stop_ev; /* reads it on the thread and breaks the loop */
    pthread_t thread;
    bool started;

    pthread_mutex_t lock; /* guards the copy below */
    char *akid, *secret, *session;
    char cur_region[64];
};

static pthread_mutex_t sources_lock = PTHREAD_MUTEX_INITIALIZER;
static struct iam_source *sources;

static void wipe_free(char *s)
{
    if (s != NULL) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

/* Copy fg_creds's current state (on the source's thread, or before it starts). */
static void publish(void *arg)
{
    struct iam_source *s = arg;
    struct fg_sigv4_credentials c;
    bool have = fg_creds_get(s->creds, &c);
    const char *region = fg_creds_region(s->creds);
    char *akid = have ? strdup(c.access_key_id) : NULL;
    char *secret = have ? strdup(c.secret_access_key) : NULL;
    char *session = have && c.session_token != NULL ? strdup(c.session_token) : NULL;
    pthread_mutex_lock(&s->lock);
    wipe_free(s->akid);
    wipe_free(s->secret);
    wipe_free(s->session);
    s->akid = akid;
    s->secret = secret;
    s->session = session;
    snprintf(s->cur_region, sizeof(s->cur_region), "%s", region != NULL ? region : "");
    pthread_mutex_unlock(&s->lock);
}

static void *source_main(void *arg)
{
    struct iam_source *s = arg;
    event_base_loop(s->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct iam_source *s = arg;
    event_base_loopbreak(s->base);
}

static void source_free(struct iam_source *s)
{
    if (s->started) {
        /* An eventfd rather than a cross-thread loopbreak: it needs nothing from
         * libevent's threading setup. */
        uint64_t one = 1;
        if (write(s->stop_fd, &one, sizeof(one)) != (ssize_t)sizeof(one))
            fg_err("redis iam: cannot stop the credentials thread");
        pthread_join(s->thread, NULL);
    }
    fg_creds_free(s->creds);
    if (s->stop_ev != NULL)
        event_free(s->stop_ev);
    if (s->stop_fd >= 0)
        close(s->stop_fd);
    if (s->base != NULL)
        event_base_free(s->base);
    wipe_free(s->akid);
    wipe_free(s->secret);
    wipe_free(s->session);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

struct iam_source *iam_source_acquire(const char *imds, const char *region, char *err,
                                      size_t errlen)
{
    if (imds == NULL || imds[0] == '\0')
        imds = FG_AWS_IMDS_DEFAULT;
    if (region == NULL)
        region = "";
    pthread_mutex_lock(&sources_lock);
    for (struct iam_source *s = sources; s != NULL; s = s->next) {
        if (strcmp(s->imds, imds) == 0 && strcmp(s->region, region) == 0) {
            s->refs++;
            pthread_mutex_unlock(&sources_lock);
            return s;
        }
    }
    struct iam_source *s = calloc(1, sizeof(*s));
    if (s != NULL)
        s->stop_fd = -1;
    if (s == NULL) {
        pthread_mutex_unlock(&sources_lock);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    snprintf(s->imds, sizeof(s->imds), "%s", imds);
    snprintf(s->region, sizeof(s->region), "%s", region);
    s->refs = 1;
    s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    s->base = event_base_new();
    if (s->base != NULL && s->stop_fd >= 0) {
        s->stop_ev = event_new(s->base, s->stop_fd, EV_READ, on_stop, s);
        if (s->stop_ev != NULL)
            event_add(s->stop_ev, NULL);
    }
    struct fg_creds_config cc = {.imds_endpoint = s->imds,
                                 .region = region[0] != '\0' ? region : NULL};
    if (s->base == NULL || s->stop_ev == NULL ||
        (s->creds = fg_creds_new(s->base, NULL, &cc, publish, s, err, errlen)) == NULL) {
        if (s->base == NULL || s->stop_ev == NULL)
            snprintf(err, errlen, "cannot create an event loop");
        source_free(s);
        pthread_mutex_unlock(&sources_lock);
        return NULL;
    }
    publish(s); /* what is known at once: environment credentials, a configured region */
    if (pthread_create(&s->thread, NULL, source_main, s) != 0) {
        snprintf(err, errlen, "cannot start the credentials thread");
        source_free(s);
        pthread_mutex_unlock(&sources_lock);
        return NULL;
    }
    s->started = true;
    s->next = sources;
    sources = s;
    pthread_mutex_unlock(&sources_lock);
    return s;
}

void iam_source_release(struct iam_source *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&sources_lock);
    bool last = --s->refs == 0;
    if (last)
        for (struct iam_source **pp = &sources; *pp != NULL; pp = &(*pp)->next)
            if (*pp == s) {
                *pp = s->next;
                break;
            }
    pthread_mutex_unlock(&sources_lock);
    if (last)
        source_free(s);
}

char *iam_source_token(struct iam_source *s, const char *user, const char *cache, bool serverless,
                       int64_t now_s, bool *no_creds, char *err, size_t errlen)
{
    char *tok = NULL;
    *no_creds = false;
    pthread_mutex_lock(&s->lock);
    if (s->akid == NULL || s->secret == NULL) {
        *no_creds = true;
        snprintf(err, errlen, "no AWS credentials yet (instance role from %s)", s->imds);
    } else if (s->cur_region[0] == '\0') {
        *no_creds = true;
        snprintf(err, errlen, "the AWS region is not known yet (set region= or reach IMDS)");
    } else {
        struct fg_sigv4_credentials c = {
            .access_key_id = s->akid, .secret_access_key = s->secret, .session_token = s->session};
        tok = fg_redis_iam_token(user, cache, serverless, &c, s->cur_region, now_s, err, errlen);
    }
    pthread_mutex_unlock(&s->lock);
    return tok;
}
