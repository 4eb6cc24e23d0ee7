/*
 * client.c — a worker's connections to flashgate-agent (offload.h, "the agent client").
 *
 * One non-blocking unix stream connection per agent socket path, RECORD frames
 * pipelined on it, ANSWER frames matched by id (docs/agent-protocol.md). A record that
 * gets no answer within its timeout, or whose connection goes away, is answered
 * TIMEOUT / UNREACHABLE by us. An agent that cannot be reached is tried again after a
 * backoff (50 ms doubling to 1 s), and at once after a connection that worked broke: a
 * restarted agent is back without delay.
 */
#include "offload/offload.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000
#define OUT_MAX        (32u << 20) /* records written, not yet read by the agent */

struct fg_offload_pending {
    uint64_t id;
    struct agent *a;
    struct event *timer;
    void (*cb)(void *arg, enum fg_offload_outcome o);
    void *arg;
    TAILQ_ENTRY(fg_offload_pending) link;
};

TAILQ_HEAD(pending_list, fg_offload_pending);

struct agent {
    struct agent *next;
    struct fg_offload_client *client;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    struct bufferevent *bev; /* NULL: not connected */
    uint64_t retry_at_ms;    /* not connected: no new attempt before */
    uint64_t backoff_ms;
    struct pending_list pending;
};

struct fg_offload_client {
    struct event_base *base;
    struct fg_offload_stats *stats;
    struct agent *agents;
    uint64_t next_id;
};

void fg_offload_count_failure(struct fg_offload_stats *st, enum fg_offload_outcome o)
{
    switch (o) {
    case FG_OFFLOAD_FULL:
        fg_counter_add(&st->err_full, 1);
        break;
    case FG_OFFLOAD_TOO_BIG:
        fg_counter_add(&st->err_too_big, 1);
        break;
    case FG_OFFLOAD_ERROR:
        fg_counter_add(&st->err_error, 1);
        break;
    case FG_OFFLOAD_TIMEOUT:
        fg_counter_add(&st->err_timeout, 1);
        break;
    case FG_OFFLOAD_UNREACHABLE:
        fg_counter_add(&st->err_unreachable, 1);
        break;
    case FG_OFFLOAD_DURABLE:
    case FG_OFFLOAD_DUPLICATE:
        break;
    }
}

static void pending_free(struct fg_offload_pending *p)
{
    fg_gauge_add(&p->a->client->stats->in_flight, -1);
    TAILQ_REMOVE(&p->a->pending, p, link);
    event_free(p->timer);
    free(p);
}

/* Take p off its list and tell its owner. */
static void answer(struct fg_offload_pending *p, enum fg_offload_outcome o)
{
    void (*cb)(void *, enum fg_offload_outcome) = p->cb;
    void *arg = p->arg;
    pending_free(p);
    cb(arg, o);
}

static void agent_drop(struct agent *a, const char *why)
{
    if (a->bev != NULL) {
        fg_warn("offload agent %s: %s; %s", a->path, why,
                TAILQ_EMPTY(&a->pending) ? "reconnecting" : "its unanswered records fall back");
        bufferevent_free(a->bev);
        a->bev = NULL;
    }
    a->retry_at_ms = fg_mono_ms(); /* a restarted agent is tried again at once */
    a->backoff_ms = BACKOFF_MIN_MS;
    /* Take the list first: an owner's fallback may run anything, never this list. */
    struct pending_list l = TAILQ_HEAD_INITIALIZER(l);
    TAILQ_CONCAT(&l, &a->pending, link);
    struct fg_offload_pending *p;
    while ((p = TAILQ_FIRST(&l)) != NULL) {
        TAILQ_REMOVE(&l, p, link);
        TAILQ_INSERT_TAIL(&a->pending, p, link);
        answer(p, FG_OFFLOAD_UNREACHABLE);
    }
}

static enum fg_offload_outcome outcome_of(int status)
{
    switch (status) {
    case FG_AGENT_DURABLE:
        return FG_OFFLOAD_DURABLE;
    case FG_AGENT_DUPLICATE:
        return FG_OFFLOAD_DUPLICATE;
    case FG_AGENT_FULL:
        return FG_OFFLOAD_FULL;
    case FG_AGENT_TOO_BIG:
        return FG_OFFLOAD_TOO_BIG;
    default:
        return FG_OFFLOAD_ERROR;
    }
}

static void agent_read_cb(struct bufferevent *bev, void *arg)
{
    struct agent *a = arg;
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
        a->backoff_ms = BACKOFF_MIN_MS;
        /* Answers come mostly in the order of the records: the match is near the head. */
        struct fg_offload_pending *p;
        TAILQ_FOREACH(p, &a->pending, link)
        if (p->id == id)
            break;
        if (p == NULL)
            continue; /* timed out or cancelled: ignored */
        answer(p, outcome_of(status));
    }
}

static void agent_event_cb(struct bufferevent *bev, short what, void *arg)
{
    agent_drop(arg, (what & BEV_EVENT_EOF) ? "closed the connection" : "connection error");
}

/* Connected, or connecting now; false while the agent is unreachable (backing off). */
static bool agent_ready(struct agent *a)
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
        if (a->backoff_ms == BACKOFF_MIN_MS || a->backoff_ms == 0)
            fg_warn("offload agent %s: cannot connect: %s", a->path, strerror(e));
        a->retry_at_ms = now + (a->backoff_ms ? a->backoff_ms : BACKOFF_MIN_MS);
        a->backoff_ms = a->backoff_ms ? a->backoff_ms * 2 : BACKOFF_MIN_MS * 2;
        if (a->backoff_ms > BACKOFF_MAX_MS)
            a->backoff_ms = BACKOFF_MAX_MS;
        return false;
    }
    a->bev = bufferevent_socket_new(a->client->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (a->bev == NULL) {
        close(fd);
        a->retry_at_ms = now + BACKOFF_MIN_MS;
        return false;
    }
    bufferevent_setcb(a->bev, agent_read_cb, NULL, agent_event_cb, a);
    bufferevent_enable(a->bev, EV_READ | EV_WRITE);
    fg_info("offload agent %s: connected", a->path);
    return true;
}

static struct agent *agent_get(struct fg_offload_client *c, const char *path)
{
    for (struct agent *a = c->agents; a != NULL; a = a->next)
        if (strcmp(a->path, path) == 0)
            return a;
    struct agent *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->client = c;
    snprintf(a->path, sizeof(a->path), "%s", path);
    TAILQ_INIT(&a->pending);
    a->next = c->agents;
    c->agents = a;
    return a;
}

static void pending_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    answer(arg, FG_OFFLOAD_TIMEOUT);
}

struct fg_offload_client *fg_offload_client_new(struct event_base *base,
                                                struct fg_offload_stats *stats)
{
    struct fg_offload_client *c = calloc(1, sizeof(*c));
    if (c != NULL) {
        c->base = base;
        c->stats = stats;
    }
    return c;
}

void fg_offload_client_free(struct fg_offload_client *c)
{
    if (c == NULL)
        return;
    struct agent *a;
    while ((a = c->agents) != NULL) {
        c->agents = a->next;
        struct fg_offload_pending *p;
        while ((p = TAILQ_FIRST(&a->pending)) != NULL)
            pending_free(p);
        if (a->bev != NULL)
            bufferevent_free(a->bev);
        free(a);
    }
    free(c);
}

struct fg_offload_pending *fg_offload_send(struct fg_offload_client *c, const char *path,
                                           struct fg_agent_record *rec, uint64_t timeout_ms,
                                           void (*cb)(void *arg, enum fg_offload_outcome o),
                                           void *arg, enum fg_offload_outcome *why)
{
    rec->id = ++c->next_id;
    size_t size = fg_agent_proto_record_size(rec);
    if (size == 0) {
        *why = FG_OFFLOAD_ERROR;
        return NULL;
    }
    struct agent *a = agent_get(c, path);
    if (a == NULL || !agent_ready(a)) {
        *why = FG_OFFLOAD_UNREACHABLE;
        return NULL;
    }
    struct evbuffer *out = bufferevent_get_output(a->bev);
    if (evbuffer_get_length(out) > OUT_MAX) {
        *why = FG_OFFLOAD_FULL; /* the agent does not read: do not pile up memory */
        return NULL;
    }
    *why = FG_OFFLOAD_ERROR;
    struct fg_offload_pending *p = calloc(1, sizeof(*p));
    if (p != NULL)
        p->timer = evtimer_new(c->base, pending_timeout_cb, p);
    struct evbuffer_iovec vec;
    if (p == NULL || p->timer == NULL ||
        evbuffer_reserve_space(out, (ev_ssize_t)size, &vec, 1) < 1 || vec.iov_len < size) {
        if (p != NULL && p->timer != NULL)
            event_free(p->timer);
        free(p);
        return NULL;
    }
    size_t n = fg_agent_proto_encode_record(rec, vec.iov_base, size);
    if (n != size) {
        event_free(p->timer);
        free(p);
        return NULL; /* a forbidden character somewhere: not queued */
    }
    vec.iov_len = n;
    evbuffer_commit_space(out, &vec, 1);
    p->id = rec->id;
    p->a = a;
    p->cb = cb;
    p->arg = arg;
    TAILQ_INSERT_TAIL(&a->pending, p, link);
    fg_gauge_add(&c->stats->in_flight, 1);
    struct timeval tv = {.tv_sec = (time_t)(timeout_ms / 1000),
                         .tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000};
    evtimer_add(p->timer, &tv);
    return p;
}

void fg_offload_cancel(struct fg_offload_pending *p)
{
    if (p != NULL)
        pending_free(p);
}
