/*
 * drain.c — drain mode: the SQS queue is the spool. The agent long-polls ReceiveMessage
 * (up to 10 messages, WaitTimeSeconds receive_wait, VisibilityTimeout visibility_timeout,
 * every message attribute) and replays each message to the app as the request the proxy
 * offloaded (the fg-* attributes the sqs sink wrote: method, path, headers, key, body
 * encoding), with its Idempotency-Key, at most replay_rate per second and
 * replay_concurrency at a time: the same request and the same verdicts as the local sink
 * (replay.c).
 *
 *  - 2xx, or a permanent 4xx (not 408/429): the message is deleted (DeleteMessageBatch,
 *    up to 10 receipt handles per request).
 *  - 5xx, 408, 429, a timeout, a connection error, or a message we cannot decode: the
 *    message is left alone. Its visibility timeout runs out and SQS delivers it again,
 *    so the queue's redrive policy (maxReceiveCount, dead-letter queue) applies; we
 *    never hide a failure by deleting.
 *  - A replay still running at half the visibility timeout gets the timeout extended
 *    (ChangeMessageVisibility), so a slow app does not make SQS deliver it twice.
 *
 * Messages are held in a small set (at most replay_concurrency * 2 + 10); a new receive
 * is sent only when ten more fit, so the agent never holds what it cannot work on soon.
 */
#include "agent/agentd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define MSG_MAGIC   0x4452534du /* "DRSM" */
#define TICK_MS     500
#define RECEIVE_MAX 10
#define DELETE_MAX  10

enum msg_state { M_FREE = 0, M_WAIT, M_SENDING, M_DELETE, M_DELETING };

struct msg {
    unsigned magic;
    struct fg_drain *d;
    enum msg_state state;
    char *receipt;
    char *method, *target, *key;
    uint8_t *body;
    size_t body_len;
    struct fg_json *headers;   /* the decoded fg-headers array; values are latin1 bytes */
    struct fg_httpc_req *req;  /* the replay in flight */
    struct fg_httpc_req *vreq; /* a visibility extension in flight */
    uint64_t received_ms, visible_until_ms;
};

struct fg_drain {
    struct event_base *base;
    struct evdns_base *dns;
    const struct fg_conf_agent *cfg;
    struct fg_agentd_stats *st;
    struct fg_creds *creds;
    struct fg_httpc *sqs, *app;
    struct fg_sigv4_key key;
    struct msg *msgs;
    size_t cap, held, busy;
    struct fg_httpc_req *receive, *del;
    struct msg *del_batch[DELETE_MAX];
    size_t del_n;
    unsigned failures;
    uint64_t pause_until_ms;
    struct fg_rate rate;
    struct event *timer;
    bool in_pump, again, sqs_failed;
};

static void pump(struct fg_drain *d);

/* ---- messages ----------------------------------------------------------------------------------
 */

static void msg_clear(struct msg *m)
{
    fg_httpc_cancel(m->req);
    fg_httpc_cancel(m->vreq);
    free(m->receipt);
    free(m->method);
    free(m->target);
    free(m->key);
    free(m->body);
    fg_json_free(m->headers);
    struct fg_drain *d = m->d;
    memset(m, 0, sizeof(*m));
    m->magic = MSG_MAGIC;
    m->d = d;
}

static void msg_release(struct msg *m)
{
    m->d->held--;
    msg_clear(m);
}

static char *dup_n(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static const char *attr(const struct fg_json *attrs, const char *name, size_t *len)
{
    return fg_json_get_string(fg_json_get(attrs, name), "StringValue", len);
}

/* Decode base64 (standard alphabet, padded) into a new buffer. */
static uint8_t *b64_decode(const char *s, size_t len, size_t *out_len)
{
    if (len % 4 != 0)
        return NULL;
    uint8_t *out = malloc(len / 4 * 3 + 1);
    if (out == NULL)
        return NULL;
    int n = EVP_DecodeBlock(out, (const unsigned char *)s, (int)len);
    if (n < 0) {
        free(out);
        return NULL;
    }
    size_t pad = (len >= 1 && s[len - 1] == '=') + (len >= 2 && s[len - 2] == '=');
    *out_len = (size_t)n - pad;
    return out;
}

/* Fill m from one received message; false (with why) when it is not ours. */
static bool msg_decode(struct msg *m, const struct fg_json *j, const char **why)
{
    const struct fg_json *attrs = fg_json_get(j, "MessageAttributes");
    size_t rl = 0, ml = 0, tl = 0, kl = 0, bl = 0, el = 0, hl = 0;
    const char *receipt = fg_json_get_string(j, "ReceiptHandle", &rl);
    const char *method = attr(attrs, "fg-method", &ml);
    const char *target = attr(attrs, "fg-path", &tl);
    const char *key = attr(attrs, "fg-idempotency-key", &kl);
    const char *enc = attr(attrs, "fg-body-encoding", &el);
    const char *hdrs = attr(attrs, "fg-headers", &hl);
    const char *body = fg_json_get_string(j, "Body", &bl);
    if (receipt == NULL || rl == 0 || (m->receipt = dup_n(receipt, rl)) == NULL) {
        *why = "no ReceiptHandle";
        return false;
    }
    if (method == NULL || target == NULL || key == NULL || body == NULL || ml == 0 || tl == 0 ||
        kl == 0 || target[0] != '/') {
        *why = "no fg-method, fg-path or fg-idempotency-key attribute (not from flashgate)";
        return false;
    }
    m->method = dup_n(method, ml);
    m->target = dup_n(target, tl);
    m->key = dup_n(key, kl);
    if (enc == NULL) {
        m->body = (uint8_t *)dup_n(body, bl);
        m->body_len = bl;
    } else if (el == 5 && memcmp(enc, "empty", 5) == 0) {
        m->body = (uint8_t *)dup_n("", 0);
        m->body_len = 0;
    } else if (el == 6 && memcmp(enc, "base64", 6) == 0) {
        m->body = b64_decode(body, bl, &m->body_len);
        if (m->body == NULL) {
            *why = "a body that is not base64";
            return false;
        }
    } else {
        *why = "an unknown fg-body-encoding";
        return false;
    }
    if (m->method == NULL || m->target == NULL || m->key == NULL || m->body == NULL) {
        *why = "out of memory";
        return false;
    }
    if (hdrs != NULL) {
        char err[80];
        m->headers = fg_json_parse(hdrs, hl, err, sizeof(err));
        if (m->headers == NULL || m->headers->type != FG_JSON_ARRAY ||
            m->headers->n > FG_AGENT_PROTO_MAX_HEADERS) {
            *why = "an fg-headers attribute that is not a JSON array of [name, value] pairs";
            return false;
        }
        for (struct fg_json *h = m->headers->child; h != NULL; h = h->next) {
            if (h->type != FG_JSON_ARRAY || h->n != 2 || h->child->type != FG_JSON_STRING ||
                h->child->next->type != FG_JSON_STRING) {
                *why = "an fg-headers attribute that is not a JSON array of [name, value] pairs";
                return false;
            }
            for (struct fg_json *s = h->child; s != NULL; s = s->next)
                s->len = fg_json_latin1(s->str, s->len);
        }
    }
    return true;
}

/* m as a record for fg_replay_write_request: false when a field breaks HTTP's rules. */
static bool msg_record(const struct msg *m, struct fg_agent_record *r)
{
    memset(r, 0, sizeof(*r));
    r->method = m->method;
    r->method_len = strlen(m->method);
    r->target = m->target;
    r->target_len = strlen(m->target);
    r->key = m->key;
    r->key_len = strlen(m->key);
    r->body = m->body;
    r->body_len = m->body_len;
    for (const struct fg_json *h = m->headers != NULL ? m->headers->child : NULL; h != NULL;
         h = h->next) {
        struct fg_agent_header *o = &r->headers[r->n_headers++];
        o->name = h->child->str;
        o->name_len = h->child->len;
        o->value = h->child->next->str;
        o->value_len = h->child->next->len;
    }
    /* The proxy's encoder checks exactly what a request line and fields may hold: a
     * message that would not have come from the proxy is not written onto the wire. */
    size_t size = fg_agent_proto_record_size(r);
    void *scratch = size > 0 ? malloc(size) : NULL;
    bool ok = scratch != NULL && fg_agent_proto_encode_record(r, scratch, size) == size;
    free(scratch);
    return ok;
}

/* ---- SQS requests
 * -------------------------------------------------------------------------------- */

static struct fg_httpc_req *sqs_send(struct fg_drain *d, const char *target, struct evbuffer *body,
                                     uint64_t timeout_ms, fg_httpc_cb cb, void *arg)
{
    struct fg_sigv4_credentials cr;
    if (!fg_creds_get(d->creds, &cr))
        return NULL;
    struct evbuffer *req = evbuffer_new();
    if (req == NULL)
        return NULL;
    char err[200];
    size_t len = evbuffer_get_length(body);
    struct fg_httpc_req *r = NULL;
    if (fg_sqs_write_request(req, fg_httpc_url(d->sqs), target, evbuffer_pullup(body, -1), len, &cr,
                             fg_creds_region(d->creds), &d->key, fg_wall_s(), err, sizeof(err)))
        r = fg_httpc_send(d->sqs, FG_HTTP_POST, req, timeout_ms, cb, arg);
    else
        fg_err("drain: %s", err);
    evbuffer_free(req);
    return r;
}

static struct evbuffer *body_start(struct fg_drain *d)
{
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        return NULL;
    evbuffer_add(b, "{\"QueueUrl\":", 12);
    fg_json_put_string(b, d->cfg->sqs_queue_url, strlen(d->cfg->sqs_queue_url), false);
    return b;
}

static void sqs_error(struct fg_drain *d, const char *what, const struct fg_httpc_result *res)
{
    d->st->drain_sqs_errors++;
    d->failures++;
    uint64_t delay = fg_backoff_ms(d->cfg->sqs_backoff_ms, d->cfg->sqs_backoff_max_ms, d->failures);
    d->pause_until_ms = fg_mono_ms() + delay;
    char code[64] = "";
    if (res->status != 0)
        fg_sqs_classify(res, code, sizeof(code));
    if (d->failures <= 3 || d->failures % 20 == 0)
        fg_warn("drain: %s failed (%s%s%s); retrying in %llums", what,
                res->status == 0 ? res->error : "status", res->status == 0 ? "" : " ",
                res->status == 0 ? ""
                : code[0]        ? code
                                 : "?",
                (unsigned long long)delay);
}

static struct msg *free_slot(struct fg_drain *d)
{
    for (size_t i = 0; i < d->cap; i++)
        if (d->msgs[i].state == M_FREE)
            return &d->msgs[i];
    return NULL;
}

static void receive_cb(const struct fg_httpc_result *res, void *arg)
{
    struct fg_drain *d = arg;
    d->receive = NULL;
    if (res->status != 200) {
        sqs_error(d, "ReceiveMessage", res);
        pump(d);
        return;
    }
    char err[128];
    struct fg_json *j = fg_json_parse(res->body, res->body_len, err, sizeof(err));
    const struct fg_json *list = fg_json_get(j, "Messages");
    if (j == NULL || (list != NULL && list->type != FG_JSON_ARRAY)) {
        d->st->drain_sqs_errors++;
        fg_warn("drain: an unreadable ReceiveMessage answer (%s); the messages come back after "
                "their visibility timeout",
                j == NULL ? err : "Messages is not an array");
        fg_json_free(j);
        pump(d);
        return;
    }
    d->failures = 0;
    uint64_t now = fg_mono_ms();
    for (const struct fg_json *e = list != NULL ? list->child : NULL; e != NULL; e = e->next) {
        struct msg *m = free_slot(d);
        if (m == NULL)
            break; /* cannot happen: we asked for what fits; the rest comes back */
        d->st->drain_received++;
        d->held++;
        m->state = M_WAIT;
        m->received_ms = now;
        m->visible_until_ms = now + d->cfg->visibility_timeout_s * 1000;
        const char *why = NULL;
        if (!msg_decode(m, e, &why)) {
            size_t il = 0;
            const char *id = fg_json_get_string(e, "MessageId", &il);
            d->st->drain_failed++;
            fg_err("drain: message %.*s has %s; left in the queue (its redrive policy decides)",
                   (int)(il < 80 ? il : 80), id != NULL ? id : "?", why);
            msg_release(m);
        }
    }
    fg_json_free(j);
    pump(d);
}

static void receive_send(struct fg_drain *d)
{
    struct evbuffer *b = body_start(d);
    if (b == NULL)
        return;
    evbuffer_add_printf(b,
                        ",\"MaxNumberOfMessages\":%d,\"WaitTimeSeconds\":%llu,"
                        "\"VisibilityTimeout\":%llu,\"MessageAttributeNames\":[\"All\"],"
                        "\"MessageSystemAttributeNames\":[\"ApproximateReceiveCount\"]}",
                        RECEIVE_MAX, (unsigned long long)d->cfg->receive_wait_s,
                        (unsigned long long)d->cfg->visibility_timeout_s);
    d->receive = sqs_send(d, "ReceiveMessage", b, d->cfg->sqs_timeout_ms, receive_cb, d);
    evbuffer_free(b);
}

static void delete_cb(const struct fg_httpc_result *res, void *arg)
{
    struct fg_drain *d = arg;
    d->del = NULL;
    struct fg_sqs_batch_result br = {0};
    char err[128];
    bool ok = res->status == 200 && fg_sqs_parse_batch_response(res->body, res->body_len, d->del_n,
                                                                &br, err, sizeof(err));
    if (!ok)
        sqs_error(d, "DeleteMessageBatch", res);
    for (size_t i = 0; i < d->del_n; i++) {
        struct msg *m = d->del_batch[i];
        if (ok && br.outcome[i] == FG_SQS_SENT) {
            d->st->drain_deleted++;
            msg_release(m);
        } else if (ok && br.outcome[i] == FG_SQS_SENDER_FAULT) {
            /* The receipt handle expired: SQS delivers the message again, and the app
             * gets it a second time with the same key. */
            d->st->drain_sqs_errors++;
            fg_warn("drain: message of key %s could not be deleted (%s); it will be replayed "
                    "again",
                    m->key, br.code[i]);
            msg_release(m);
        } else {
            m->state = M_DELETE; /* try again */
        }
    }
    d->del_n = 0;
    pump(d);
}

static void delete_send(struct fg_drain *d)
{
    struct evbuffer *b = body_start(d);
    if (b == NULL)
        return;
    evbuffer_add(b, ",\"Entries\":[", 12);
    d->del_n = 0;
    for (size_t i = 0; i < d->cap && d->del_n < DELETE_MAX; i++) {
        struct msg *m = &d->msgs[i];
        if (m->state != M_DELETE)
            continue;
        evbuffer_add_printf(b, "%s{\"Id\":\"%zu\",\"ReceiptHandle\":", d->del_n > 0 ? "," : "",
                            d->del_n);
        fg_json_put_string(b, m->receipt, strlen(m->receipt), false);
        evbuffer_add(b, "}", 1);
        d->del_batch[d->del_n++] = m;
    }
    evbuffer_add(b, "]}", 2);
    if (d->del_n > 0) {
        d->del = sqs_send(d, "DeleteMessageBatch", b, d->cfg->sqs_timeout_ms, delete_cb, d);
        if (d->del != NULL)
            for (size_t i = 0; i < d->del_n; i++)
                d->del_batch[i]->state = M_DELETING;
        else
            d->del_n = 0;
    }
    evbuffer_free(b);
}

static void visibility_cb(const struct fg_httpc_result *res, void *arg)
{
    struct msg *m = arg;
    FG_ASSERT(m->magic == MSG_MAGIC);
    m->vreq = NULL;
    if (res->status == 200)
        m->d->st->drain_extended++;
    else
        sqs_error(m->d, "ChangeMessageVisibility", res);
}

static void visibility_extend(struct fg_drain *d, struct msg *m, uint64_t now)
{
    struct evbuffer *b = body_start(d);
    if (b == NULL)
        return;
    evbuffer_add(b, ",\"ReceiptHandle\":", 17);
    fg_json_put_string(b, m->receipt, strlen(m->receipt), false);
    evbuffer_add_printf(b, ",\"VisibilityTimeout\":%llu}",
                        (unsigned long long)d->cfg->visibility_timeout_s);
    m->vreq = sqs_send(d, "ChangeMessageVisibility", b, d->cfg->sqs_timeout_ms, visibility_cb, m);
    if (m->vreq != NULL)
        m->visible_until_ms = now + d->cfg->visibility_timeout_s * 1000;
    evbuffer_free(b);
}

/* ---- replays to the app
 * ---------------------------------------------------------------------------- */

static void replay_cb(const struct fg_httpc_result *res, void *arg)
{
    struct msg *m = arg;
    FG_ASSERT(m->magic == MSG_MAGIC);
    struct fg_drain *d = m->d;
    m->req = NULL;
    d->busy--;
    enum fg_replay_verdict v = res->status == 0 ? FG_REPLAY_RETRY : fg_replay_verdict(res->status);
    if (v == FG_REPLAY_OK) {
        d->st->drain_ok++;
        m->state = M_DELETE;
    } else if (v == FG_REPLAY_REJECTED) {
        d->st->drain_rejected++;
        fg_warn("drain: the app answered %d to key %s, a permanent refusal; the message is "
                "deleted",
                res->status, m->key);
        m->state = M_DELETE;
    } else {
        d->st->drain_failed++;
        char why[40];
        snprintf(why, sizeof(why), "status %d", res->status);
        fg_info("drain: replay of key %s failed (%s); left in the queue for redelivery", m->key,
                res->status == 0 ? res->error : why);
        msg_release(m);
    }
    pump(d);
}

static void replay_send(struct fg_drain *d, struct msg *m)
{
    static struct fg_agent_record r; /* large; one thread */
    if (!msg_record(m, &r)) {
        d->st->drain_failed++;
        fg_err("drain: message of key %s has a method, path or header HTTP does not allow; "
               "left in the queue (its redrive policy decides)",
               m->key);
        msg_release(m);
        return;
    }
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        return;
    fg_replay_write_request(b, &r, d->cfg->app.text);
    m->req = fg_httpc_send(d->app, fg_http_method_parse(r.method, r.method_len), b,
                           d->cfg->replay_timeout_ms, replay_cb, m);
    evbuffer_free(b);
    if (m->req != NULL) {
        m->state = M_SENDING;
        d->busy++;
    }
}

/* ---- the loop
 * ------------------------------------------------------------------------------------ */

static bool ensure_clients(struct fg_drain *d)
{
    if (d->sqs != NULL)
        return true;
    const char *region = fg_creds_region(d->creds);
    if (region == NULL || d->sqs_failed)
        return false;
    char url[512], err[256];
    if (d->cfg->sqs_endpoint != NULL)
        snprintf(url, sizeof(url), "%s", d->cfg->sqs_endpoint);
    else if (!fg_aws_endpoint("sqs", region, url, sizeof(url))) {
        d->sqs_failed = true;
        fg_err("drain: no SQS endpoint for the region '%s'", region);
        return false;
    }
    struct fg_httpc_opts o = {.name = "sqs", .ca_file = d->cfg->sqs_ca_file, .max_idle = 4};
    d->sqs = fg_httpc_new(d->base, d->dns, url, &o, err, sizeof(err));
    if (d->sqs == NULL) {
        d->sqs_failed = true;
        fg_err("drain: cannot use the endpoint %s: %s", url, err);
        return false;
    }
    return true;
}

static void pump_once(struct fg_drain *d)
{
    uint64_t now = fg_mono_ms(), wake = now + TICK_MS;
    if (!ensure_clients(d))
        goto out;
    struct fg_sigv4_credentials cr;
    bool creds = fg_creds_get(d->creds, &cr);
    bool paused = d->pause_until_ms > now;
    for (size_t i = 0; i < d->cap; i++) {
        struct msg *m = &d->msgs[i];
        if (m->state == M_WAIT && now >= m->visible_until_ms) {
            msg_release(m); /* SQS has made it visible again: it is someone else's now */
            continue;
        }
        if (m->state == M_SENDING && m->vreq == NULL && creds &&
            now >= m->visible_until_ms - d->cfg->visibility_timeout_s * 500)
            visibility_extend(d, m, now);
    }
    if (!creds)
        goto out;
    for (size_t i = 0; i < d->cap && d->busy < d->cfg->replay_concurrency; i++) {
        struct msg *m = &d->msgs[i];
        if (m->state != M_WAIT)
            continue;
        uint64_t need = fg_rate_take(&d->rate, fg_mono_us());
        if (need > 0) {
            if (now + need < wake)
                wake = now + need;
            break;
        }
        replay_send(d, m);
    }
    if (paused) {
        if (d->pause_until_ms < wake)
            wake = d->pause_until_ms;
        goto out;
    }
    if (d->del == NULL)
        delete_send(d);
    if (d->receive == NULL && d->held + RECEIVE_MAX <= d->cap)
        receive_send(d);
out : {
    struct timeval tv = {.tv_sec = (time_t)((wake - now) / 1000),
                         .tv_usec = (suseconds_t)((wake - now) % 1000) * 1000};
    event_add(d->timer, &tv);
}
}

static void pump(struct fg_drain *d)
{
    if (d->in_pump) {
        d->again = true;
        return;
    }
    d->in_pump = true;
    do {
        d->again = false;
        pump_once(d);
    } while (d->again);
    d->in_pump = false;
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    pump(arg);
}

static void drain_destroy(void *sink);

static void *drain_create(const struct fg_agentd_sink_env *env, char *err, size_t errlen)
{
    const struct fg_conf_agent *cfg = env->cfg;
    struct event_base *base = env->base;
    struct fg_drain *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->base = base;
    d->dns = env->dns;
    d->cfg = cfg;
    d->st = env->st;
    d->creds = env->creds;
    d->cap = (size_t)cfg->replay_concurrency * 2 + RECEIVE_MAX;
    d->msgs = calloc(d->cap, sizeof(*d->msgs));
    d->timer = evtimer_new(base, timer_cb, d);
    char url[160];
    snprintf(url, sizeof(url), "http://%s", cfg->app.text);
    struct fg_httpc_opts o = {
        .name = "app",
        .allow_plain_http = true,
        .max_idle = (size_t)cfg->replay_concurrency,
        .discard_body = true}; /* the verdict is the status: a large answer must not fail it */
    if (d->msgs == NULL || d->timer == NULL ||
        (d->app = fg_httpc_new(base, env->dns, url, &o, err, errlen)) == NULL) {
        if (d->msgs == NULL || d->timer == NULL)
            snprintf(err, errlen, "out of memory");
        drain_destroy(d);
        return NULL;
    }
    for (size_t i = 0; i < d->cap; i++) {
        d->msgs[i].magic = MSG_MAGIC;
        d->msgs[i].d = d;
    }
    fg_rate_init(&d->rate, cfg->replay_rate, fg_mono_us());
    return d;
}

static void drain_kick(void *sink)
{
    pump(sink);
}

static void drain_gauges(const void *sink, struct fg_agentd_sink_gauges *g)
{
    const struct fg_drain *d = sink;
    g->drain_held = d->held;
    g->drain_in_flight = d->busy;
}

static void drain_destroy(void *sink)
{
    struct fg_drain *d = sink;
    if (d == NULL)
        return;
    fg_httpc_cancel(d->receive);
    fg_httpc_cancel(d->del);
    for (size_t i = 0; d->msgs != NULL && i < d->cap; i++)
        msg_clear(&d->msgs[i]);
    fg_httpc_free(d->sqs);
    fg_httpc_free(d->app);
    free(d->msgs);
    if (d->timer != NULL)
        event_free(d->timer);
    fg_sigv4_key_clear(&d->key);
    free(d);
}

const struct fg_agentd_sink_ops fg_sink_drain_ops = {
    .name = "drain",
    .needs_aws = true,
    .create = drain_create,
    .kick = drain_kick,
    .gauges = drain_gauges,
    .destroy = drain_destroy,
};
