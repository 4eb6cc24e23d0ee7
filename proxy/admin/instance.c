/*
 * instance.c — this instance's name, for the summaries' `instance` member and the EMF
 * records' Instance dimension: the configured instance_id, else the EC2 instance id,
 * else the host name.
 *
 * With `instance_id auto` the admin thread asks the instance metadata service (IMDSv2: a
 * session token, then /latest/meta-data/instance-id) once at start, each step within a
 * second; until it answers, and for good if it does not, the host name is used. The AWS
 * SDKs' environment is honoured: AWS_EC2_METADATA_DISABLED=true skips IMDS,
 * AWS_EC2_METADATA_SERVICE_ENDPOINT moves it (tests run a local one).
 */
#include "admin/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "aws/aws.h"
#include "core/core.h"
#include "httpc/httpc.h"

#define IMDS_TIMEOUT_MS 1000
#define IMDS_TOKEN_TTL  60
#define NAME_MAX_LEN    128

static struct {
    struct event_base *base;
    struct fg_httpc *imds;
    struct fg_httpc_req *req;
    char token[128];
    char name[NAME_MAX_LEN + 1];
    const char *source;
} IN = {.source = "hostname"};

/* A name fit for a CloudWatch dimension and a JSON string without escapes. */
static bool name_ok(const char *s, size_t n)
{
    if (n == 0 || n > NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= 0x20 || s[i] >= 0x7f || s[i] == '"' || s[i] == '\\')
            return false;
    return true;
}

static void free_imds_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    fg_httpc_free(IN.imds);
    IN.imds = NULL;
}

/* Done with IMDS, either way; the client is freed outside its own callback. */
static void imds_done(const char *why)
{
    IN.req = NULL;
    if (why != NULL) {
        IN.source = "hostname";
        fg_info("instance_id auto: no EC2 instance id (%s): using the host name %s", why, IN.name);
    }
    if (event_base_once(IN.base, -1, EV_TIMEOUT, free_imds_cb, NULL, NULL) != 0)
        fg_warn("instance_id: cannot schedule the IMDS client's release");
}

static void imds_send(bool token_step);

static void imds_cb(const struct fg_httpc_result *res, void *arg)
{
    bool token_step = arg != NULL;
    size_t n = res->body_len;
    while (n > 0 && (res->body[n - 1] == '\n' || res->body[n - 1] == '\r'))
        n--;
    if (res->status != 200) {
        imds_done(res->status == 0 ? res->error : "IMDS refused");
        return;
    }
    if (token_step) {
        if (n == 0 || n >= sizeof(IN.token) || !name_ok(res->body, n)) {
            imds_done("an IMDS token we cannot use");
            return;
        }
        memcpy(IN.token, res->body, n);
        IN.token[n] = '\0';
        imds_send(false);
        return;
    }
    if (!name_ok(res->body, n)) {
        imds_done("an instance id we cannot use");
        return;
    }
    memcpy(IN.name, res->body, n);
    IN.name[n] = '\0';
    IN.source = "imds";
    fg_notice("instance_id auto: EC2 instance %s", IN.name);
    imds_done(NULL);
}

static void imds_send(bool token_step)
{
    struct evbuffer *b = evbuffer_new();
    if (b == NULL) {
        imds_done("out of memory");
        return;
    }
    const char *host = fg_httpc_url(IN.imds)->hostport;
    if (token_step)
        evbuffer_add_printf(b,
                            "PUT /latest/api/token HTTP/1.1\r\nHost: %s\r\n"
                            "X-aws-ec2-metadata-token-ttl-seconds: %d\r\n",
                            host, IMDS_TOKEN_TTL);
    else
        evbuffer_add_printf(b,
                            "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: %s\r\n"
                            "X-aws-ec2-metadata-token: %s\r\n",
                            host, IN.token);
    evbuffer_add_printf(b, "Content-Length: 0\r\nUser-Agent: flashgate/%s\r\n\r\n",
                        PACKAGE_VERSION);
    IN.req = fg_httpc_send(IN.imds, token_step ? FG_HTTP_PUT : FG_HTTP_GET, b, IMDS_TIMEOUT_MS,
                           imds_cb, token_step ? (void *)&IN : NULL);
    evbuffer_free(b);
    if (IN.req == NULL)
        imds_done("out of memory");
}

void fg_admin_instance_start(struct event_base *base, const char *configured)
{
    IN.base = base;
    if (configured != NULL) {
        snprintf(IN.name, sizeof(IN.name), "%s", configured);
        IN.source = "config";
        return;
    }
    char host[256] = "";
    size_t hl = 0;
    if (gethostname(host, sizeof(host) - 1) == 0)
        hl = strnlen(host, NAME_MAX_LEN);
    if (!name_ok(host, hl)) {
        memcpy(host, "localhost", 10);
        hl = 9;
    }
    memcpy(IN.name, host, hl);
    IN.name[hl] = '\0';
    IN.source = "hostname";
    const char *off = getenv("AWS_EC2_METADATA_DISABLED");
    if (off != NULL && strcasecmp(off, "true") == 0)
        return;
    const char *url = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
    if (url == NULL || url[0] == '\0')
        url = FG_AWS_IMDS_DEFAULT;
    struct fg_httpc_opts o = {.name = "imds", .allow_plain_http = true, .max_idle = 1};
    char err[160];
    IN.imds = fg_httpc_new(base, NULL, url, &o, err, sizeof(err));
    if (IN.imds == NULL) {
        fg_warn("instance_id auto: IMDS endpoint %s: %s; using the host name", url, err);
        return;
    }
    IN.source = "pending";
    imds_send(true);
}

const char *fg_admin_instance(void)
{
    return IN.name;
}

const char *fg_admin_instance_source(void)
{
    return IN.source;
}

void fg_admin_instance_stop(void)
{
    fg_httpc_free(IN.imds); /* a request in flight is abandoned with it */
    IN.imds = NULL;
    IN.req = NULL;
}
