/*
 * sqs.c — the `sqs` sink: committed records go from the spool to an SQS queue with
 * SendMessageBatch (JSON protocol, SigV4-signed), in order, several batches at a time.
 *
 * The model is sink.c's, and so is the window (replay.c): records are read in sequence
 * order into a window; each entry waits, is in a batch in flight, or is done (sent, or
 * dropped as a permanent failure); the spool is acknowledged up to the last record of the
 * finished prefix of the window,
 * so a record is acknowledged only once it and everything before it are in the queue (or
 * given up, loudly). After a crash everything above the checkpoint is sent again: at
 * least once, and the consumer deduplicates by the idempotency key (FIFO queues do it
 * themselves: MessageDeduplicationId is the key).
 *
 * Batches: up to sqs_batch_max entries (SQS allows 10) and sqs_batch_bytes of encoded
 * entries (SQS allows 256 KiB of messages; counting the JSON entries, escapes and all,
 * is always at least that). An entry too big for any batch goes alone and SQS decides.
 *
 * Answers:
 *  - 200: each entry in Successful is done; in Failed with SenderFault (bad contents,
 *    too big...) it is a permanent failure: the entry is appended to the dead-letter
 *    file (spool_dir/rejected.jsonl, fdatasync'ed) with its key and SQS's code, logged and
 *    counted, and only then done: a record answered 202 is never simply gone. If that
 *    file cannot be written the entry is retried instead. Other Failed entries, and
 *    entries in neither list, are retried.
 *  - 429, 400 ThrottlingException or KmsThrottled, 403 RequestThrottled: throttled; 5xx, timeouts,
 *    connection errors, and 4xx that are about us rather than the entries (credentials,
 *    signature, a missing queue): failed. In both cases the batch is retried after a
 *    jittered exponential backoff (sqs_backoff doubling to sqs_backoff_max, times a
 *    random 0.5..1), and nothing new is sent until then: a queue that is down is not
 *    hammered by sqs_concurrency parallel retries.
 *  - 400 about the entries (BatchRequestTooLong, InvalidMessageContents, ...): the batch
 *    is split, each entry sent alone; an entry that fails alone is a permanent failure.
 */
#include "agent/agentd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/evp.h>

#define BATCH_MAGIC   0x53514242u /* "SQBB" */
#define WINDOW_MIN    64
#define WINDOW_BYTES  (8u << 20)
#define IO_RETRY_MS   1000
#define GROUP_DEFAULT "flashgate"
#define DEDUP_MAX     128

/* ---- entries ------------------------------------------------------------------------------ */

bool fg_sqs_text_ok(const void *s, size_t len)
{
    const unsigned char *p = s;
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        size_t n = fg_json_utf8_next(p + i, len - i, &cp);
        if (n == 0)
            return false;
        /* SQS takes #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF. */
        if (!(cp == 0x9 || cp == 0xa || cp == 0xd || (cp >= 0x20 && cp <= 0xd7ff) ||
              (cp >= 0xe000 && cp <= 0xfffd) || cp >= 0x10000))
            return false;
        i += n;
    }
    return true;
}

struct entry {
    struct fg_window_entry w; /* first: the window's part */
    char *json;               /* the entry's tail (fg_sqs_encode_entry) */
    size_t len;
    char *key;  /* for log lines */
    bool alone; /* the batch it was in was refused for its contents: send it alone */
};

struct batch {
    unsigned magic;
    struct fg_sqs_sink *s;
    struct fg_httpc_req *req; /* NULL: free slot */
    size_t n;
    struct entry *e[FG_SQS_BATCH_MAX];
};

struct fg_sqs_sink {
    struct event_base *base;
    struct evdns_base *dns;
    const struct fg_conf_agent *cfg;
    struct fg_agentd_stats *st;
    struct fg_creds *creds;
    struct fg_httpc *http; /* made once the region is known */
    struct fg_sigv4_key key;
    struct fg_sqs_entry_opts eo;
    struct fg_window *win;
    struct evbuffer *enc; /* scratch for encoding an entry */
    struct batch *batches;
    size_t nbatches, busy, busy_entries;
    uint64_t pause_until_ms;
    unsigned failures; /* batches failed in a row */
    struct event *timer;
    bool in_pump, again, http_failed;
    int dead_fd; /* spool_dir/rejected.jsonl, opened at the first permanent failure; -1 */
};

/* ---- encoding ----------------------------------------------------------------------------------
 */

static void put_attr(struct evbuffer *out, bool *first, const char *name, const void *v, size_t len)
{
    evbuffer_add_printf(
        out, "%s\"%s\":{\"DataType\":\"String\",\"StringValue\":", *first ? "" : ",", name);
    fg_json_put_string(out, v, len, false);
    evbuffer_add(out, "}", 1);
    *first = false;
}

static bool group_id_ok(const char *v, size_t len)
{
    if (len == 0 || len > 128)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)v[i] < 0x21 || (unsigned char)v[i] > 0x7e)
            return false;
    return true;
}

bool fg_sqs_encode_entry(struct evbuffer *out, const struct fg_agent_record *r,
                         const struct fg_sqs_entry_opts *o)
{
    evbuffer_add(out, "\"MessageBody\":", 14);
    const char *encoding = NULL;
    if (r->body_len == 0) {
        encoding = "empty";
        evbuffer_add(out, "\"-\"", 3);
    } else if (fg_sqs_text_ok(r->body, r->body_len)) {
        fg_json_put_string(out, r->body, r->body_len, false);
    } else {
        encoding = "base64";
        size_t n = 4 * ((r->body_len + 2) / 3) + 1;
        unsigned char *b64 = malloc(n);
        if (b64 == NULL)
            return false;
        int w = EVP_EncodeBlock(b64, r->body, (int)r->body_len);
        evbuffer_add(out, "\"", 1);
        evbuffer_add(out, b64, (size_t)w);
        evbuffer_add(out, "\"", 1);
        free(b64);
    }
    evbuffer_add(out, ",\"MessageAttributes\":{", 22);
    bool first = true;
    put_attr(out, &first, "fg-method", r->method, r->method_len);
    put_attr(out, &first, "fg-path", r->target, r->target_len);
    put_attr(out, &first, "fg-idempotency-key", r->key, r->key_len);
    if (encoding != NULL)
        put_attr(out, &first, "fg-body-encoding", encoding, strlen(encoding));
    const struct fg_agent_header *group = NULL;
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct fg_agent_header *h = &r->headers[i];
        if (fg_http_name_eq(h->name, h->name_len, "content-type") && h->value_len > 0 &&
            fg_sqs_text_ok(h->value, h->value_len)) {
            put_attr(out, &first, "fg-content-type", h->value, h->value_len);
            break;
        }
    }
    if (r->n_headers > 0) {
        /* The headers as one JSON text, itself the attribute's string value. */
        struct evbuffer *hj = evbuffer_new();
        if (hj == NULL)
            return false;
        evbuffer_add(hj, "[", 1);
        for (size_t i = 0; i < r->n_headers; i++) {
            const struct fg_agent_header *h = &r->headers[i];
            evbuffer_add(hj, i > 0 ? ",[" : "[", i > 0 ? 2 : 1);
            fg_json_put_string(hj, h->name, h->name_len, true);
            evbuffer_add(hj, ",", 1);
            fg_json_put_string(hj, h->value, h->value_len, true);
            evbuffer_add(hj, "]", 1);
        }
        evbuffer_add(hj, "]", 1);
        size_t n = evbuffer_get_length(hj);
        put_attr(out, &first, "fg-headers", evbuffer_pullup(hj, -1), n);
        evbuffer_free(hj);
    }
    evbuffer_add(out, "}", 1);
    if (o->fifo) {
        const char *g = o->group != NULL ? o->group : GROUP_DEFAULT;
        size_t gl = strlen(g);
        if (o->group_header != NULL) {
            size_t hl = strlen(o->group_header);
            for (size_t i = 0; i < r->n_headers && group == NULL; i++)
                if (r->headers[i].name_len == hl &&
                    strncasecmp(r->headers[i].name, o->group_header, hl) == 0)
                    group = &r->headers[i];
            if (group != NULL && group_id_ok(group->value, group->value_len)) {
                g = group->value;
                gl = group->value_len;
            }
        }
        evbuffer_add(out, ",\"MessageGroupId\":", 18);
        fg_json_put_string(out, g, gl, false);
        evbuffer_add(out, ",\"MessageDeduplicationId\":", 26);
        if (r->key_len <= DEDUP_MAX) {
            fg_json_put_string(out, r->key, r->key_len, false);
        } else {
            char hex[FG_SIGV4_HEX_LEN + 1];
            if (!fg_sigv4_sha256_hex(r->key, r->key_len, hex))
                return false;
            fg_json_put_string(out, hex, FG_SIGV4_HEX_LEN, false);
        }
    }
    evbuffer_add(out, "}", 1);
    return true;
}

static size_t digits(size_t i)
{
    size_t d = 1;
    while (i >= 10) {
        i /= 10;
        d++;
    }
    return d;
}

size_t fg_sqs_entry_size(size_t tail_len, size_t i)
{
    return (i > 0 ? 1 : 0) + 7 + digits(i) + 2 + tail_len; /* ,{"Id":"<i>",<tail> */
}

size_t fg_sqs_batch_plan(const size_t *sizes, size_t n, size_t max_entries, size_t max_bytes)
{
    size_t total = 0, k = 0;
    while (k < n && k < max_entries) {
        size_t sz = fg_sqs_entry_size(sizes[k], k);
        if (k > 0 && total + sz > max_bytes)
            break;
        total += sz;
        k++;
    }
    return k;
}

/* ---- answers -----------------------------------------------------------------------------------
 */

static bool entry_index(const char *id, size_t len, size_t n, size_t *out)
{
    if (len == 0 || len > 2 || (len == 2 && id[0] == '0'))
        return false;
    size_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (id[i] < '0' || id[i] > '9')
            return false;
        v = v * 10 + (size_t)(id[i] - '0');
    }
    if (v >= n)
        return false;
    *out = v;
    return true;
}

bool fg_sqs_parse_batch_response(const char *body, size_t len, size_t n,
                                 struct fg_sqs_batch_result *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    struct fg_json *j = fg_json_parse(body, len, err, errlen);
    if (j == NULL)
        return false;
    bool ok = false;
    const struct fg_json *succ = fg_json_get(j, "Successful");
    const struct fg_json *fail = fg_json_get(j, "Failed");
    if (j->type != FG_JSON_OBJECT || (succ != NULL && succ->type != FG_JSON_ARRAY) ||
        (fail != NULL && fail->type != FG_JSON_ARRAY)) {
        snprintf(err, errlen, "not a SendMessageBatch result");
        goto out;
    }
    for (const struct fg_json *e = succ != NULL ? succ->child : NULL; e != NULL; e = e->next) {
        size_t idl = 0, i;
        const char *id = fg_json_get_string(e, "Id", &idl);
        if (id == NULL || !entry_index(id, idl, n, &i)) {
            snprintf(err, errlen, "Successful: an entry without a known Id");
            goto out;
        }
        if (out->outcome[i] == FG_SQS_MISSING)
            out->n_sent++;
        out->outcome[i] = FG_SQS_SENT;
    }
    for (const struct fg_json *e = fail != NULL ? fail->child : NULL; e != NULL; e = e->next) {
        size_t idl = 0, cl = 0, i;
        const char *id = fg_json_get_string(e, "Id", &idl);
        if (id == NULL || !entry_index(id, idl, n, &i)) {
            snprintf(err, errlen, "Failed: an entry without a known Id");
            goto out;
        }
        if (out->outcome[i] == FG_SQS_SENT)
            continue; /* listed as sent: it is in the queue */
        const struct fg_json *sf = fg_json_get(e, "SenderFault");
        const char *code = fg_json_get_string(e, "Code", &cl);
        out->outcome[i] =
            sf != NULL && sf->type == FG_JSON_TRUE ? FG_SQS_SENDER_FAULT : FG_SQS_RETRYABLE;
        snprintf(out->code[i], sizeof(out->code[i]), "%.*s", (int)(cl < 63 ? cl : 63),
                 code != NULL ? code : "");
        out->n_failed++;
    }
    ok = true;
out:
    fg_json_free(j);
    return ok;
}

enum fg_sqs_verdict fg_sqs_classify(const struct fg_httpc_result *res, char *code, size_t codelen)
{
    char c[64] = "";
    if (res->status >= 300 && res->body_len > 0) {
        char err[64];
        struct fg_json *j = fg_json_parse(res->body, res->body_len, err, sizeof(err));
        size_t tl = 0;
        const char *t = fg_json_get_string(j, "__type", &tl);
        if (t != NULL) {
            const char *hash = memchr(t, '#', tl);
            if (hash != NULL) {
                tl -= (size_t)(hash + 1 - t);
                t = hash + 1;
            }
            snprintf(c, sizeof(c), "%.*s", (int)(tl < 63 ? tl : 63), t);
        }
        fg_json_free(j);
    }
    const char *qe;
    size_t ql;
    if (c[0] == '\0' && res->status >= 300 &&
        fg_httpc_header(res, "x-amzn-query-error", &qe, &ql)) {
        size_t n = strcspn(qe, ";\r\n");
        if (n > ql)
            n = ql;
        snprintf(c, sizeof(c), "%.*s", (int)(n < 63 ? n : 63), qe);
    }
    if (code != NULL)
        snprintf(code, codelen, "%s", c);
    if (res->status >= 200 && res->status <= 299)
        return FG_SQS_OK;
    /* ThrottlingException and KmsThrottled come with 400, RequestThrottled with 403 in
     * SQS's JSON protocol: a 403 is not always about credentials. */
    if (res->status == 429 ||
        ((res->status == 400 || res->status == 403) && strstr(c, "Throttl") != NULL))
        return FG_SQS_THROTTLED;
    static const char *const content[] = {
        "BatchRequestTooLong",          "InvalidMessageContents",   "InvalidParameterValue",
        "InvalidAttributeName",         "InvalidAttributeValue",    "MessageTooLong",
        "TooManyEntriesInBatchRequest", "BatchEntryIdsNotDistinct", "InvalidBatchEntryId",
        "UnsupportedOperation"};
    if (res->status == 413)
        return FG_SQS_BAD_CONTENT;
    if (res->status == 400)
        for (size_t i = 0; i < FG_ARRAY_LEN(content); i++)
            if (strstr(c, content[i]) != NULL)
                return FG_SQS_BAD_CONTENT;
    return FG_SQS_FAILED;
}

bool fg_sqs_write_request(struct evbuffer *out, const struct fg_url *endpoint, const char *target,
                          const void *body, size_t len, const struct fg_sigv4_credentials *creds,
                          const char *region, struct fg_sigv4_key *key, int64_t now_s, char *err,
                          size_t errlen)
{
    char amz_target[96];
    snprintf(amz_target, sizeof(amz_target), "AmazonSQS.%s", target);
    const char *ctype = "application/x-amz-json-1.0";
    struct fg_sigv4_header h[3] = {
        {"Host", 4, endpoint->hostport, strlen(endpoint->hostport)},
        {"Content-Type", 12, ctype, strlen(ctype)},
        {"X-Amz-Target", 12, amz_target, strlen(amz_target)},
    };
    struct fg_sigv4_request rq = {.method = "POST",
                                  .path = endpoint->path,
                                  .headers = h,
                                  .n_headers = 3,
                                  .payload = body,
                                  .payload_len = len};
    struct fg_sigv4_params pr = {
        .creds = creds, .region = region, .service = "sqs", .time = now_s, .key = key};
    struct fg_sigv4_result sr;
    bool ok = fg_sigv4_sign(&rq, &pr, &sr);
    if (!ok) {
        snprintf(err, errlen, "signing failed: %s", sr.error != NULL ? sr.error : "?");
    } else {
        evbuffer_add_printf(out, "POST %s HTTP/1.1\r\n", endpoint->path);
        for (size_t i = 0; i < 3; i++)
            evbuffer_add_printf(out, "%s: %s\r\n", h[i].name, h[i].value);
        for (size_t i = 0; i < sr.n_add; i++)
            evbuffer_add_printf(out, "%.*s: %.*s\r\n", (int)sr.add[i].name_len, sr.add[i].name,
                                (int)sr.add[i].value_len, sr.add[i].value);
        evbuffer_add_printf(out, "User-Agent: flashgate-agent/%s\r\nContent-Length: %zu\r\n\r\n",
                            PACKAGE_VERSION, len);
        evbuffer_add(out, body, len);
    }
    fg_sigv4_result_free(&sr);
    return ok;
}

/* ---- the sink
 * ------------------------------------------------------------------------------------ */

static void pump(struct fg_sqs_sink *s);

static void arm(struct fg_sqs_sink *s, uint64_t in_ms)
{
    struct timeval tv = {.tv_sec = (time_t)(in_ms / 1000),
                         .tv_usec = (suseconds_t)(in_ms % 1000) * 1000};
    event_add(s->timer, &tv);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    pump(arg);
}

static void entry_done(struct fg_sqs_sink *s, struct entry *e)
{
    (void)s;
    e->w.state = FG_WINDOW_DONE;
}

static void entry_retry(struct fg_sqs_sink *s, struct entry *e, uint64_t delay_ms)
{
    e->w.state = FG_WINDOW_WAIT;
    e->w.attempts++;
    e->w.not_before_ms = delay_ms > 0 ? fg_mono_ms() + delay_ms : 0;
    s->st->sqs_retries++;
}

/* Append e to the dead-letter file and make it durable: one JSON object per line,
 * {"seq":N,"key":"...","code":"...","entry":{the SendMessage entry}}, so an operator can
 * fix and resend it. */
static bool dead_letter(struct fg_sqs_sink *s, const struct entry *e, const char *code)
{
    if (s->dead_fd < 0) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/rejected.jsonl", s->cfg->spool_dir);
        s->dead_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (s->dead_fd < 0) {
            fg_err("sqs: cannot open %s: %s", path, strerror(errno));
            return false;
        }
    }
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        return false;
    evbuffer_add_printf(b, "{\"seq\":%llu,\"key\":", (unsigned long long)e->w.seq);
    fg_json_put_string(b, e->key ? e->key : "", e->key ? strlen(e->key) : 0, false);
    evbuffer_add(b, ",\"code\":", 8);
    fg_json_put_string(b, code, strlen(code), false);
    evbuffer_add(b, ",\"entry\":{", 10);
    evbuffer_add(b, e->json, e->len);
    evbuffer_add(b, "}\n", 2);
    size_t len = evbuffer_get_length(b);
    const char *p = (const char *)evbuffer_pullup(b, -1);
    bool ok = p != NULL;
    for (size_t off = 0; ok && off < len;) {
        ssize_t n = write(s->dead_fd, p + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            ok = false;
        else
            off += (size_t)n;
    }
    evbuffer_free(b);
    if (ok && fdatasync(s->dead_fd) != 0)
        ok = false;
    if (!ok)
        fg_err("sqs: cannot write the dead-letter file in %s: %s", s->cfg->spool_dir,
               strerror(errno));
    return ok;
}

static void entry_drop(struct fg_sqs_sink *s, struct entry *e, const char *code)
{
    const char *c = code[0] != '\0' ? code : "no code";
    if (!dead_letter(s, e, c)) {
        /* Never lose it: try again later, the disk may come back. */
        entry_retry(s, e, s->cfg->sqs_backoff_max_ms);
        return;
    }
    s->st->sqs_failed++;
    fg_err("sqs: record %llu (key %s) refused by SQS (%s), a permanent failure: kept in "
           "%s/rejected.jsonl",
           (unsigned long long)e->w.seq, e->key, c, s->cfg->spool_dir);
    e->w.state = FG_WINDOW_DONE;
}

/* The whole batch failed: back off, and hold every new batch until then. */
static void batch_backoff(struct fg_sqs_sink *s, struct batch *b, const char *why, bool throttled)
{
    s->failures++;
    s->st->sqs_batch_errors++;
    if (throttled)
        s->st->sqs_throttled++;
    uint64_t d = fg_backoff_ms(s->cfg->sqs_backoff_ms, s->cfg->sqs_backoff_max_ms, s->failures);
    uint64_t until = fg_mono_ms() + d;
    if (until > s->pause_until_ms)
        s->pause_until_ms = until;
    for (size_t i = 0; i < b->n; i++)
        entry_retry(s, b->e[i], d);
    if (s->failures <= 3 || s->failures % 20 == 0)
        fg_warn("sqs: SendMessageBatch of %zu record(s) %s (%s, %u in a row); retrying in %llums",
                b->n, throttled ? "throttled" : "failed", why, s->failures, (unsigned long long)d);
}

static void batch_cb(const struct fg_httpc_result *res, void *arg)
{
    struct batch *b = arg;
    FG_ASSERT(b->magic == BATCH_MAGIC);
    struct fg_sqs_sink *s = b->s;
    b->req = NULL;
    s->busy--;
    s->busy_entries -= b->n;
    char code[64] = "", why[128];
    if (res->status == 0) {
        batch_backoff(s, b, res->error, false);
    } else {
        enum fg_sqs_verdict v = fg_sqs_classify(res, code, sizeof(code));
        snprintf(why, sizeof(why), "status %d%s%s", res->status, code[0] ? " " : "", code);
        if (v == FG_SQS_OK) {
            struct fg_sqs_batch_result br;
            char err[128];
            if (!fg_sqs_parse_batch_response(res->body, res->body_len, b->n, &br, err,
                                             sizeof(err))) {
                snprintf(why, sizeof(why), "unreadable answer: %.90s", err);
                batch_backoff(s, b, why, false);
            } else {
                bool any_retry = false;
                for (size_t i = 0; i < b->n; i++) {
                    switch (br.outcome[i]) {
                    case FG_SQS_SENT:
                        s->st->sqs_sent++;
                        entry_done(s, b->e[i]);
                        break;
                    case FG_SQS_SENDER_FAULT:
                        entry_drop(s, b->e[i], br.code[i]);
                        break;
                    default:
                        any_retry = true;
                        entry_retry(s, b->e[i],
                                    fg_backoff_ms(s->cfg->sqs_backoff_ms,
                                                  s->cfg->sqs_backoff_max_ms,
                                                  b->e[i]->w.attempts + 1));
                        break;
                    }
                }
                if (!any_retry)
                    s->failures = 0;
            }
        } else if (v == FG_SQS_BAD_CONTENT) {
            s->st->sqs_batch_errors++;
            if (b->n == 1) {
                entry_drop(s, b->e[0], code);
            } else {
                fg_warn("sqs: a batch of %zu record(s) refused for its contents (%s); sending "
                        "each alone",
                        b->n, why);
                for (size_t i = 0; i < b->n; i++) {
                    b->e[i]->alone = true;
                    entry_retry(s, b->e[i], 0);
                }
            }
        } else {
            batch_backoff(s, b, why, v == FG_SQS_THROTTLED);
        }
    }
    b->n = 0;
    pump(s);
}

/* The HTTP client, once the region (for the default endpoint) is known. */
static bool ensure_http(struct fg_sqs_sink *s)
{
    if (s->http != NULL)
        return true;
    const char *region = fg_creds_region(s->creds);
    if (region == NULL || s->http_failed)
        return false;
    char url[512], err[256];
    if (s->cfg->sqs_endpoint != NULL)
        snprintf(url, sizeof(url), "%s", s->cfg->sqs_endpoint);
    else if (!fg_aws_endpoint("sqs", region, url, sizeof(url))) {
        s->http_failed = true;
        fg_err("sqs: no SQS endpoint for the region '%s'; nothing will be sent", region);
        return false;
    }
    struct fg_httpc_opts o = {
        .name = "sqs", .ca_file = s->cfg->sqs_ca_file, .max_idle = (size_t)s->cfg->sqs_concurrency};
    s->http = fg_httpc_new(s->base, s->dns, url, &o, err, sizeof(err));
    if (s->http == NULL) {
        s->http_failed = true;
        fg_err("sqs: cannot use the endpoint %s: %s; nothing will be sent", url, err);
        return false;
    }
    fg_notice("sqs: sending to %s via %s", s->cfg->sqs_queue_url, url);
    return true;
}

static void batch_send(struct fg_sqs_sink *s, struct batch *b)
{
    struct fg_sigv4_credentials cr;
    if (!fg_creds_get(s->creds, &cr)) {
        b->n = 0;
        return;
    }
    struct evbuffer *body = evbuffer_new(), *req = evbuffer_new();
    char err[200];
    if (body == NULL || req == NULL)
        goto oom;
    evbuffer_add(body, "{\"QueueUrl\":", 12);
    fg_json_put_string(body, s->cfg->sqs_queue_url, strlen(s->cfg->sqs_queue_url), false);
    evbuffer_add(body, ",\"Entries\":[", 12);
    for (size_t i = 0; i < b->n; i++) {
        evbuffer_add_printf(body, "%s{\"Id\":\"%zu\",", i > 0 ? "," : "", i);
        evbuffer_add(body, b->e[i]->json, b->e[i]->len);
    }
    evbuffer_add(body, "]}", 2);
    size_t len = evbuffer_get_length(body);
    if (!fg_sqs_write_request(req, fg_httpc_url(s->http), "SendMessageBatch",
                              evbuffer_pullup(body, -1), len, &cr, fg_creds_region(s->creds),
                              &s->key, fg_wall_s(), err, sizeof(err))) {
        fg_err("sqs: %s", err);
        goto fail;
    }
    b->req = fg_httpc_send(s->http, FG_HTTP_POST, req, s->cfg->sqs_timeout_ms, batch_cb, b);
    if (b->req == NULL)
        goto oom;
    for (size_t i = 0; i < b->n; i++)
        b->e[i]->w.state = FG_WINDOW_SENDING;
    s->busy++;
    s->busy_entries += b->n;
    s->st->sqs_batches++;
    evbuffer_free(body);
    evbuffer_free(req);
    return;
oom:
    fg_err("sqs: out of memory building a batch; retrying in %ums", IO_RETRY_MS);
fail:
    s->pause_until_ms = fg_mono_ms() + IO_RETRY_MS;
    b->n = 0;
    if (body != NULL)
        evbuffer_free(body);
    if (req != NULL)
        evbuffer_free(req);
}

/* A committed record into the window, encoded as an entry. */
static bool entry_load(void *arg, struct fg_window_entry *we, const struct fg_spool_record *rec)
{
    static struct fg_agent_record r; /* large; one thread */
    struct fg_sqs_sink *s = arg;
    struct entry *e = (struct entry *)we;
    if (fg_agent_proto_decode_record(rec->data, rec->len, rec->len, &r, NULL, NULL) !=
        FG_AGENT_PROTO_OK) {
        s->st->sqs_failed++;
        fg_err("spool record %llu does not decode as a RECORD frame; skipped",
               (unsigned long long)rec->seq);
        e->w.state = FG_WINDOW_DONE;
        return true;
    }
    bool ok = fg_sqs_encode_entry(s->enc, &r, &s->eo);
    size_t n = evbuffer_get_length(s->enc);
    if (ok) {
        e->json = malloc(n);
        e->key = malloc(r.key_len + 1);
        ok = e->json != NULL && e->key != NULL;
    }
    if (!ok) {
        free(e->json);
        free(e->key);
        e->json = e->key = NULL;
        evbuffer_drain(s->enc, n);
        return false;
    }
    evbuffer_remove(s->enc, e->json, n);
    e->len = n;
    e->w.bytes = n;
    memcpy(e->key, r.key, r.key_len);
    e->key[r.key_len] = '\0';
    return true;
}

static void entry_clear(void *arg, struct fg_window_entry *we)
{
    (void)arg;
    struct entry *e = (struct entry *)we;
    free(e->json);
    free(e->key);
    e->json = e->key = NULL;
}

static const struct fg_window_ops entry_ops = {.load = entry_load, .clear = entry_clear};

static void pump_once(struct fg_sqs_sink *s)
{
    /* 1. Acknowledge the finished prefix, read committed records into the window. */
    uint64_t now = fg_mono_ms();
    uint64_t wake = fg_window_fill(s->win, now);
    /* 2. Send what the credentials, the backoff and the concurrency allow, oldest first. */
    struct fg_sigv4_credentials cr;
    if (!ensure_http(s) || !fg_creds_get(s->creds, &cr))
        goto out; /* the credentials' ready callback kicks us */
    if (s->pause_until_ms > now) {
        if (s->pause_until_ms < wake)
            wake = s->pause_until_ms;
        goto out;
    }
    size_t i = 0, wcount = fg_window_count(s->win);
    while (s->busy < s->nbatches) {
        struct batch *b = NULL;
        for (size_t k = 0; k < s->nbatches && b == NULL; k++)
            if (s->batches[k].req == NULL)
                b = &s->batches[k];
        FG_ASSERT(b != NULL);
        size_t sizes[FG_SQS_BATCH_MAX];
        struct entry *cand[FG_SQS_BATCH_MAX];
        size_t nc = 0;
        for (; i < wcount && nc < s->cfg->sqs_batch_max; i++) {
            struct entry *e = fg_window_at(s->win, i);
            if (e->w.state != FG_WINDOW_WAIT)
                continue;
            if (e->w.not_before_ms > now) {
                if (e->w.not_before_ms < wake)
                    wake = e->w.not_before_ms;
                continue;
            }
            if (e->alone && nc > 0)
                break; /* it starts the next batch */
            cand[nc] = e;
            sizes[nc++] = e->len;
            if (e->alone) {
                i++;
                break;
            }
        }
        if (nc == 0)
            break;
        size_t take = fg_sqs_batch_plan(sizes, nc, (size_t)s->cfg->sqs_batch_max,
                                        (size_t)s->cfg->sqs_batch_bytes);
        /* Entries left out go in the next batch: rescan from the first of them. */
        if (take < nc) {
            for (size_t k = 0; k < wcount; k++)
                if (fg_window_at(s->win, k) == cand[take]) {
                    i = k;
                    break;
                }
        }
        b->n = take;
        memcpy(b->e, cand, take * sizeof(cand[0]));
        batch_send(s, b);
        if (b->req == NULL) {
            if (s->pause_until_ms > now && s->pause_until_ms < wake)
                wake = s->pause_until_ms;
            break;
        }
    }
out:
    if (wake != UINT64_MAX)
        arm(s, wake > now ? wake - now : 0);
}

static void pump(struct fg_sqs_sink *s)
{
    if (s->in_pump) {
        s->again = true;
        return;
    }
    s->in_pump = true;
    do {
        s->again = false;
        pump_once(s);
    } while (s->again);
    s->in_pump = false;
}

static void sqs_destroy(void *sink);

static void *sqs_create(const struct fg_agentd_sink_env *env, char *err, size_t errlen)
{
    const struct fg_conf_agent *cfg = env->cfg;
    struct event_base *base = env->base;
    struct fg_sqs_sink *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->dead_fd = -1;
    s->base = base;
    s->dns = env->dns;
    s->cfg = cfg;
    s->st = env->st;
    s->creds = env->creds;
    s->eo = (struct fg_sqs_entry_opts){.fifo = cfg->sqs_fifo,
                                       .group = cfg->sqs_message_group,
                                       .group_header = cfg->sqs_group_header};
    s->nbatches = (size_t)cfg->sqs_concurrency;
    size_t want = s->nbatches * (size_t)cfg->sqs_batch_max * 4;
    s->win = fg_window_new(env->sp, want > WINDOW_MIN ? want : WINDOW_MIN, sizeof(struct entry),
                           WINDOW_BYTES, &entry_ops, s, "sqs");
    s->enc = evbuffer_new();
    s->batches = calloc(s->nbatches, sizeof(*s->batches));
    s->timer = evtimer_new(base, timer_cb, s);
    if (s->win == NULL || s->enc == NULL || s->batches == NULL || s->timer == NULL) {
        snprintf(err, errlen, "out of memory");
        sqs_destroy(s);
        return NULL;
    }
    for (size_t i = 0; i < s->nbatches; i++) {
        s->batches[i].magic = BATCH_MAGIC;
        s->batches[i].s = s;
    }
    if (cfg->sqs_endpoint != NULL) {
        /* Check it now: a bad endpoint is a configuration error, not a runtime one. */
        struct fg_url u;
        if (!fg_url_parse(cfg->sqs_endpoint, &u, err, errlen)) {
            sqs_destroy(s);
            return NULL;
        }
        if (!u.tls && !fg_url_is_loopback(&u)) {
            snprintf(err, errlen, "sqs_endpoint %s: plain http is only for a loopback endpoint",
                     cfg->sqs_endpoint);
            sqs_destroy(s);
            return NULL;
        }
    }
    return s;
}

static void sqs_kick(void *sink)
{
    pump(sink);
}

static void sqs_gauges(const void *sink, struct fg_agentd_sink_gauges *g)
{
    const struct fg_sqs_sink *s = sink;
    g->sqs_window = fg_window_count(s->win);
    g->sqs_in_flight = s->busy;
    g->sqs_entries_in_flight = s->busy_entries;
}

/* Requests in flight are abandoned (their records are sent again after the next start). */
static void sqs_destroy(void *sink)
{
    struct fg_sqs_sink *s = sink;
    if (s == NULL)
        return;
    for (size_t i = 0; s->batches != NULL && i < s->nbatches; i++) {
        fg_httpc_cancel(s->batches[i].req);
        s->batches[i].magic = 0;
    }
    fg_httpc_free(s->http);
    fg_window_free(s->win);
    if (s->enc != NULL)
        evbuffer_free(s->enc);
    free(s->batches);
    if (s->timer != NULL)
        event_free(s->timer);
    fg_sigv4_key_clear(&s->key);
    if (s->dead_fd >= 0)
        close(s->dead_fd);
    free(s);
}

const struct fg_agentd_sink_ops fg_sink_sqs_ops = {
    .name = "sqs",
    .needs_aws = true,
    .create = sqs_create,
    .kick = sqs_kick,
    .gauges = sqs_gauges,
    .destroy = sqs_destroy,
};
