/*
 * offload.c — the offload stage of the request path (request.c calls fg_offload_stage
 * after the rate limits, before the cache).
 *
 * A write on a route with an `offload` block (and whose trigger fires) waits for its
 * whole body in the connection's input buffer, under the server's body deadline. Then it
 * becomes a RECORD frame (docs/agent-protocol.md) on this worker's connection to the
 * agent: one non-blocking unix stream connection per worker and socket path, pipelined,
 * answers matched by id. DURABLE or DUPLICATE: 202 with the idempotency key, the head
 * and body are consumed and the connection lives on. Anything else (FULL, TOO_BIG,
 * ERROR, no answer within `timeout`, the agent unreachable or gone with the record):
 * the route's fallback — `pass` sends the request to the app as if there were no
 * offload (the head and body are still in the input buffer), `reject` answers 503 with
 * Retry-After. No write is ever dropped: each one ends in a 202, the app, or an error
 * answer the client sees.
 *
 * While a request waits, its head and body stay in the input buffer and the request
 * owns the connection: pipelined requests wait behind it, nothing is parsed twice. A
 * client that goes away cancels its record (a later answer for it is ignored; if the
 * agent had made it durable it is still replayed, with its key).
 */
#include "server/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent/agent.h"

#define FG_OFFLOAD_BACKOFF_MIN_MS 50
#define FG_OFFLOAD_BACKOFF_MAX_MS 1000
#define FG_OFFLOAD_OUT_MAX        (32u << 20) /* records written, not yet read by the agent */

struct fg_offload_pending {
    uint64_t id;
    struct fg_txn *t;
    struct fg_offload_agent *a;
    struct event *timer;
    TAILQ_ENTRY(fg_offload_pending) link;
};

TAILQ_HEAD(fg_offload_pending_list, fg_offload_pending);

struct fg_offload_agent {
    struct fg_offload_agent *next;
    struct fg_worker *w;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    struct bufferevent *bev; /* NULL: not connected */
    uint64_t retry_at_ms;    /* not connected: no new attempt before */
    uint64_t backoff_ms;
    struct fg_offload_pending_list pending;
};

enum of_reason { R_NONE = 0, R_FULL, R_TOO_BIG, R_ERROR, R_TIMEOUT, R_UNREACHABLE };

static void fallback(struct fg_txn *t, enum of_reason why);

/* ---- the connection to the agent ---------------------------------------------------------- */

static void pending_free(struct fg_offload_pending *p)
{
    fg_gauge_add(&p->a->w->stats.of_in_flight, -1);
    TAILQ_REMOVE(&p->a->pending, p, link);
    event_free(p->timer);
    free(p);
}

static void agent_drop(struct fg_offload_agent *a, const char *why)
{
    if (a->bev != NULL) {
        fg_warn("offload agent %s: %s; %s", a->path, why,
                TAILQ_EMPTY(&a->pending) ? "reconnecting" : "its unanswered records fall back");
        bufferevent_free(a->bev);
        a->bev = NULL;
    }
    a->retry_at_ms = fg_mono_ms(); /* a restarted agent is tried again at once */
    a->backoff_ms = FG_OFFLOAD_BACKOFF_MIN_MS;
    /* Take the list first: a fallback may run anything, never this list. */
    struct fg_offload_pending_list l = TAILQ_HEAD_INITIALIZER(l);
    TAILQ_CONCAT(&l, &a->pending, link);
    struct fg_offload_pending *p;
    while ((p = TAILQ_FIRST(&l)) != NULL) {
        TAILQ_REMOVE(&l, p, link);
        TAILQ_INSERT_TAIL(&a->pending, p, link);
        struct fg_txn *t = p->t;
        pending_free(p);
        t->of_pending = NULL;
        fallback(t, R_UNREACHABLE);
    }
}

static void answered(struct fg_txn *t, int status);

static void agent_read_cb(struct bufferevent *bev, void *arg)
{
    struct fg_offload_agent *a = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    while (evbuffer_get_length(in) >= FG_AGENT_PROTO_ANSWER_SIZE) {
        uint8_t buf[FG_AGENT_PROTO_ANSWER_SIZE];
        evbuffer_copyout(in, buf, sizeof(buf));
        uint64_t id;
        int status;
        if (fg_agent_proto_decode_answer(buf, sizeof(buf), &id, &status) != FG_AGENT_PROTO_OK) {
            agent_drop(a, "sent an answer that does not decode");
            return;
        }
        evbuffer_drain(in, sizeof(buf));
        a->backoff_ms = FG_OFFLOAD_BACKOFF_MIN_MS;
        /* Answers come mostly in the order of the records: the match is near the head. */
        struct fg_offload_pending *p;
        TAILQ_FOREACH(p, &a->pending, link)
        if (p->id == id)
            break;
        if (p == NULL)
            continue; /* timed out or cancelled: ignored */
        struct fg_txn *t = p->t;
        pending_free(p);
        t->of_pending = NULL;
        answered(t, status);
    }
}

static void agent_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    agent_drop(arg, (what & BEV_EVENT_EOF) ? "closed the connection" : "connection error");
}

/* Connected, or connecting now; false while the agent is unreachable (backing off). */
static bool agent_ready(struct fg_offload_agent *a)
{
    if (a->bev != NULL)
        return true;
    uint64_t now = fg_mono_ms();
    if (now < a->retry_at_ms)
        return false;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, a->path, strlen(a->path) + 1);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        /* A unix socket connects at once or not at all (EAGAIN: its backlog is full). */
        int e = errno;
        if (fd >= 0)
            close(fd);
        if (a->backoff_ms == FG_OFFLOAD_BACKOFF_MIN_MS || a->backoff_ms == 0)
            fg_warn("offload agent %s: cannot connect: %s", a->path, strerror(e));
        a->retry_at_ms = now + (a->backoff_ms ? a->backoff_ms : FG_OFFLOAD_BACKOFF_MIN_MS);
        a->backoff_ms = a->backoff_ms ? a->backoff_ms * 2 : FG_OFFLOAD_BACKOFF_MIN_MS * 2;
        if (a->backoff_ms > FG_OFFLOAD_BACKOFF_MAX_MS)
            a->backoff_ms = FG_OFFLOAD_BACKOFF_MAX_MS;
        return false;
    }
    a->bev = bufferevent_socket_new(a->w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (a->bev == NULL) {
        close(fd);
        a->retry_at_ms = now + FG_OFFLOAD_BACKOFF_MIN_MS;
        return false;
    }
    bufferevent_setcb(a->bev, agent_read_cb, NULL, agent_event_cb, a);
    bufferevent_enable(a->bev, EV_READ | EV_WRITE);
    fg_info("offload agent %s: connected", a->path);
    return true;
}

static struct fg_offload_agent *agent_get(struct fg_worker *w, const char *path)
{
    for (struct fg_offload_agent *a = w->agents; a != NULL; a = a->next)
        if (strcmp(a->path, path) == 0)
            return a;
    struct fg_offload_agent *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->w = w;
    snprintf(a->path, sizeof(a->path), "%s", path);
    TAILQ_INIT(&a->pending);
    a->next = w->agents;
    w->agents = a;
    return a;
}

/* ---- answers -------------------------------------------------------------------------------- */

static void restore_reading(struct fg_conn *c)
{
    c->reader.high_water = FG_HIGH_WATER;
    fg_reader_enable(&c->reader);
}

static void consume_request(struct fg_txn *t)
{
    struct fg_conn *c = t->c;
    uint64_t body = t->req.body == FG_HTTP_BODY_LENGTH ? t->req.content_length : 0;
    evbuffer_drain(bufferevent_get_input(c->bev), t->req.head_len + (size_t)body);
    t->req.n_headers = 0;
    t->bytes_in += body;
    t->req_state = FG_REQ_DONE;
}

static size_t json_key(char *out, size_t cap, const char *key)
{
    size_t o = 0;
    for (const char *p = key; *p != '\0' && o + 3 < cap; p++) {
        if (*p == '"' || *p == '\\')
            out[o++] = '\\';
        out[o++] = *p;
    }
    out[o] = '\0';
    return o;
}

static void answer_202(struct fg_txn *t, bool duplicate)
{
    struct fg_conn *c = t->c;
    struct fg_worker *w = c->w;
    const struct fg_conf_route_offload *of = &t->route->offload;
    fg_counter_add(duplicate ? &w->stats.of_duplicates : &w->stats.of_queued, 1);
    t->log_offload = duplicate ? "duplicate" : "queued";
    t->of_active = false;
    consume_request(t);
    restore_reading(c);
    char fields[1600];
    int n = snprintf(fields, sizeof(fields), "Idempotency-Key: %s\r\n", t->of_key);
    if (of->location_prefix != NULL)
        n += snprintf(fields + n, sizeof(fields) - (size_t)n, "Location: %s%s\r\n",
                      of->location_prefix, t->of_key);
    char k[520], body[600];
    json_key(k, sizeof(k), t->of_key);
    int bl = snprintf(body, sizeof(body), "{\"status\":\"%s\",\"id\":\"%s\"}",
                      duplicate ? "duplicate" : "queued", k);
    fg_conn_send_response_fields(c, 202, "application/json", body, (size_t)bl, fields, (size_t)n,
                                 false);
}

/* Re-parse the head from the input buffer: its slices must point where the bytes are now
 * (a pullup, or a read growing the buffer, may have moved them). */
static bool reparse(struct fg_txn *t, size_t pull)
{
    struct fg_conn *c = t->c;
    const struct fg_conf_server *srv = t->srv;
    struct fg_http_limits lim = {.max_request_line = srv->max_request_line,
                                 .max_header_bytes = srv->max_header_bytes,
                                 .max_headers = srv->max_headers};
    size_t head_len = t->req.head_len;
    const char *buf =
        (const char *)evbuffer_pullup(bufferevent_get_input(c->bev), (ev_ssize_t)pull);
    if (buf == NULL)
        return false;
    enum fg_http_error err = FG_HTTP_E_NONE;
    int rc = fg_http_parse_request(buf, head_len, &lim, &t->req, &err);
    if (rc <= 0 || (size_t)rc != head_len)
        return false;
    if (t->of_sent_continue)
        t->req.flags &= ~(unsigned)FG_HTTP_F_EXPECT_CONTINUE; /* the client has had it */
    return true;
}

static void count_reason(struct fg_worker *w, enum of_reason why)
{
    switch (why) {
    case R_FULL:
        fg_counter_add(&w->stats.of_err_full, 1);
        break;
    case R_TOO_BIG:
        fg_counter_add(&w->stats.of_err_too_big, 1);
        break;
    case R_ERROR:
        fg_counter_add(&w->stats.of_err_error, 1);
        break;
    case R_TIMEOUT:
        fg_counter_add(&w->stats.of_err_timeout, 1);
        break;
    case R_UNREACHABLE:
        fg_counter_add(&w->stats.of_err_unreachable, 1);
        break;
    case R_NONE:
        break;
    }
}

/* The agent could not take the request (or it cannot be offloaded): the route's fallback. */
/* The fallback answers the request itself: take it out of the input. With the whole body
 * in, the connection can live on (true); otherwise only the head goes and it must close. */
static bool take_request(struct fg_txn *t, bool body_in)
{
    if (body_in) {
        consume_request(t);
        return true;
    }
    evbuffer_drain(bufferevent_get_input(t->c->bev), t->req.head_len);
    t->req.n_headers = 0;
    return false;
}

static void fallback(struct fg_txn *t, enum of_reason why)
{
    struct fg_conn *c = t->c;
    struct fg_worker *w = c->w;
    count_reason(w, why);
    bool body_in = t->of_active && !t->of_body_wait;
    if (body_in && t->req.body == FG_HTTP_BODY_LENGTH && t->req.content_length > 0)
        t->req_state = FG_REQ_BODY; /* for the app, the body is still to be read */
    t->of_active = false;
    t->of_body_wait = false;
    restore_reading(c);
    if (t->of_limit != NULL) {
        /* Over its limit: what the limit would have answered, never the app. */
        t->log_offload = "limited";
        fg_limit_refuse_saved(t, !take_request(t, body_in));
        return;
    }
    if (t->route->offload.reject) {
        fg_counter_add(&w->stats.of_fallback_reject, 1);
        t->log_offload = "reject";
        bool close = !take_request(t, body_in);
        static const char fields[] = "Retry-After: 1\r\n";
        static const char body[] = "{\"error\":\"offload unavailable\",\"retry_after\":1}";
        fg_conn_send_response_fields(c, 503, "application/json", body, sizeof(body) - 1, fields,
                                     sizeof(fields) - 1, close);
        return;
    }
    fg_counter_add(&w->stats.of_fallback_pass, 1);
    t->log_offload = "pass";
    if (!reparse(t, t->req.head_len)) {
        fg_conn_respond(c, 500, "request head lost", true);
        return;
    }
    fg_request_after_offload(t);
}

static void answered(struct fg_txn *t, int status)
{
    switch (status) {
    case FG_AGENT_DURABLE:
        answer_202(t, false);
        return;
    case FG_AGENT_DUPLICATE:
        answer_202(t, true);
        return;
    case FG_AGENT_FULL:
        fallback(t, R_FULL);
        return;
    case FG_AGENT_TOO_BIG:
        fallback(t, R_TOO_BIG);
        return;
    default:
        fallback(t, R_ERROR);
        return;
    }
}

static void pending_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct fg_offload_pending *p = arg;
    struct fg_txn *t = p->t;
    pending_free(p);
    t->of_pending = NULL;
    fallback(t, R_TIMEOUT);
}

/* ---- the record ----------------------------------------------------------------------------- */

static bool key_ok(const char *s, size_t len)
{
    if (len == 0 || len > FG_AGENT_PROTO_KEY_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

static bool header_selected(const struct fg_conf_route_offload *of, const struct fg_http_header *h)
{
    for (size_t i = 0; i < of->n_headers; i++)
        if (fg_http_name_eq(h->name, h->name_len, of->headers[i]))
            return true;
    return false;
}

static void send_record(struct fg_txn *t)
{
    struct fg_conn *c = t->c;
    struct fg_worker *w = c->w;
    const struct fg_conf_route_offload *of = &t->route->offload;
    size_t body_len = t->req.body == FG_HTTP_BODY_LENGTH ? (size_t)t->req.content_length : 0;
    size_t total = t->req.head_len + body_len;
    if (!reparse(t, total)) {
        fallback(t, R_ERROR);
        return;
    }
    const struct fg_http_request *r = &t->req;
    /* Already contiguous (reparse pulled it up): this only gives the pointer. */
    const char *buf =
        (const char *)evbuffer_pullup(bufferevent_get_input(c->bev), (ev_ssize_t)total);

    const struct fg_http_header *kh = fg_http_find_header(r->headers, r->n_headers, of->key_header);
    if (kh != NULL) {
        if (!key_ok(kh->value, kh->value_len)) {
            t->of_active = false;
            restore_reading(c);
            fg_counter_add(&w->stats.rejected_other, 1);
            fg_conn_respond(c, 400, "invalid idempotency key (1 to 255 visible characters)", true);
            return;
        }
        memcpy(t->of_key, kh->value, kh->value_len);
        t->of_key[kh->value_len] = '\0';
    } else {
        snprintf(t->of_key, sizeof(t->of_key), "%016llx%016llx",
                 (unsigned long long)fg_worker_random(w), (unsigned long long)fg_worker_random(w));
    }

    struct fg_agent_record rec;
    rec.id = ++w->of_next_id;
    rec.key = t->of_key;
    rec.key_len = strlen(t->of_key);
    rec.method = r->method_name;
    rec.method_len = r->method_len;
    rec.target = r->target;
    rec.target_len = r->target_len;
    rec.n_headers = 0;
    for (size_t i = 0; i < r->n_headers && rec.n_headers < FG_AGENT_PROTO_MAX_HEADERS; i++) {
        const struct fg_http_header *h = &r->headers[i];
        if (!header_selected(of, h) || h->value_len > FG_AGENT_PROTO_VALUE_MAX)
            continue;
        rec.headers[rec.n_headers++] = (struct fg_agent_header){
            .name = h->name, .name_len = h->name_len, .value = h->value, .value_len = h->value_len};
    }
    rec.body = buf + r->head_len;
    rec.body_len = body_len;
    size_t size = fg_agent_proto_record_size(&rec);
    if (size == 0) {
        fallback(t, R_ERROR);
        return;
    }
    struct fg_offload_agent *a = agent_get(w, of->agent);
    if (a == NULL || !agent_ready(a)) {
        fallback(t, R_UNREACHABLE);
        return;
    }
    if (evbuffer_get_length(bufferevent_get_output(a->bev)) > FG_OFFLOAD_OUT_MAX) {
        fallback(t, R_FULL); /* the agent does not read: do not pile up memory */
        return;
    }
    struct fg_offload_pending *p = calloc(1, sizeof(*p));
    if (p != NULL)
        p->timer = evtimer_new(w->base, pending_timeout_cb, p);
    struct evbuffer *out = bufferevent_get_output(a->bev);
    struct evbuffer_iovec vec;
    if (p == NULL || p->timer == NULL ||
        evbuffer_reserve_space(out, (ev_ssize_t)size, &vec, 1) < 1 || vec.iov_len < size) {
        if (p != NULL && p->timer != NULL)
            event_free(p->timer);
        free(p);
        fallback(t, R_ERROR);
        return;
    }
    size_t n = fg_agent_proto_encode_record(&rec, vec.iov_base, size);
    if (n != size) {
        event_free(p->timer);
        free(p);
        fallback(t, R_ERROR); /* a forbidden character somewhere: not queued */
        return;
    }
    vec.iov_len = n;
    evbuffer_commit_space(out, &vec, 1);
    p->id = rec.id;
    p->t = t;
    p->a = a;
    TAILQ_INSERT_TAIL(&a->pending, p, link);
    fg_gauge_add(&w->stats.of_in_flight, 1);
    t->of_pending = p;
    struct timeval tv = {.tv_sec = (time_t)(of->timeout_ms / 1000),
                         .tv_usec = (suseconds_t)(of->timeout_ms % 1000) * 1000};
    evtimer_add(p->timer, &tv);
}

/* The whole body in the input buffer yet? Then the record goes out. */
static void body_check(struct fg_txn *t)
{
    struct fg_conn *c = t->c;
    size_t have = evbuffer_get_length(bufferevent_get_input(c->bev));
    size_t head = t->req.head_len;
    uint64_t want = t->req.content_length;
    uint64_t got = have > head ? have - head : 0;
    t->req_body_bytes = got < want ? got : want; /* for body_min_rate */
    if (got < want)
        return;
    t->of_body_wait = false;
    /* All of it is here: a client that half-closes now still gets its answer. */
    t->req_state = FG_REQ_DONE;
    fg_conn_body_finished(c);
    c->reader.high_water = FG_HIGH_WATER; /* pipelined requests wait behind this one */
    send_record(t);
}

/* ---- the stage ------------------------------------------------------------------------------ */

bool fg_offload_stage(struct fg_txn *t)
{
    const struct fg_conf_route_offload *of = &t->route->offload;
    if (!of->enabled || t->log_offload != NULL)
        return false;
    const struct fg_http_request *r = &t->req;
    if (!(of->methods & (1u << r->method)))
        return false; /* reads are never queued; writes as the block says */
    if (of->triggered && fg_trigger_fires(t) == NULL)
        return false;
    struct fg_conn *c = t->c;
    struct fg_worker *w = c->w;
    if (r->body == FG_HTTP_BODY_CHUNKED) {
        fallback(t, R_NONE); /* a record needs its length; the app takes it as it streams */
        return true;
    }
    if (r->body == FG_HTTP_BODY_LENGTH && r->content_length > of->max_body) {
        fg_counter_add(&w->stats.of_too_big, 1);
        t->log_offload = "too_big";
        fg_conn_respond(c, 413, "request body larger than the offload max_body", true);
        return true;
    }
    t->of_active = true;
    if (t->req_state != FG_REQ_BODY) {
        send_record(t);
        return true;
    }
    if ((r->flags & FG_HTTP_F_EXPECT_CONTINUE) && r->minor_version == 1) {
        evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
        fg_flush(c->bev);
        t->of_sent_continue = true;
    }
    t->of_body_wait = true;
    size_t need = r->head_len + (size_t)r->content_length + 1;
    if (c->reader.high_water < need)
        c->reader.high_water = need; /* the whole body must fit in the input buffer */
    fg_reader_enable(&c->reader);
    fg_conn_body_started(c);
    body_check(t);
    return true;
}

void fg_offload_client_readable(struct fg_txn *t)
{
    if (t->of_body_wait)
        body_check(t);
    /* else: waiting for the agent; later bytes are the next request, they wait */
}

void fg_offload_stage_release(struct fg_txn *t)
{
    if (t->of_pending != NULL) {
        pending_free(t->of_pending); /* its answer, if it comes, is ignored */
        t->of_pending = NULL;
    }
    if (t->of_active && t->c != NULL && t->c->magic == FG_CONN_MAGIC)
        t->c->reader.high_water = FG_HIGH_WATER;
    t->of_active = false;
    t->of_body_wait = false;
}
