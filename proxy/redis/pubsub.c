/*
 * pubsub.c — subscriptions. A connection in subscribed mode (RESP2) takes nothing but
 * (S)SUBSCRIBE and friends, so each node that carries subscriptions gets a pub/sub
 * connection of its own beside its command connection.
 *
 * Where a subscription lives: SUBSCRIBE on the seed (in a cluster every node relays
 * every PUBLISH); SSUBSCRIBE, in cluster mode, on the master owning the channel's slot.
 * It is placed again whenever the slot map changes or its connection is lost; a server
 * that moves a slot away ends the shard channel's subscription itself (an unsolicited
 * "sunsubscribe"), which asks for a new map. Pub/sub delivers at most once: the owner's
 * state callback says when messages may have been missed (subscribed == false, then true
 * again), so that it can resynchronise.
 */
#include "redis/internal.h"

#include <stdlib.h>
#include <string.h>

#define SUB_MAGIC 0x72737562u /* "rsub" */

static struct rnode *sub_home(struct fg_redis *r, const struct fg_redis_sub *s)
{
    if (!r->mode_known)
        return NULL;
    if (!r->cluster || !s->sharded)
        return r->nodes[0];
    unsigned idx = r->slots != NULL ? r->slots[fg_redis_key_slot(s->channel, s->len)] : 0;
    return idx != 0 ? r->nodes[idx - 1] : NULL;
}

static bool ps_ready(const struct rnode *n)
{
    return n != NULL && n->pubsub != NULL && n->pubsub->state == CS_READY;
}

static void send_sub(struct rconn *c, const struct fg_redis_sub *s, bool on)
{
    const char *cmd =
        s->sharded ? (on ? "SSUBSCRIBE" : "SUNSUBSCRIBE") : (on ? "SUBSCRIBE" : "UNSUBSCRIBE");
    const char *argv[] = {cmd, s->channel};
    size_t lens[] = {strlen(cmd), s->len};
    if (!fg_redis_conn_send(c, 2, argv, lens, NULL))
        fg_redis_conn_fail(c, "out of memory");
}

/* Put s where it belongs now. Returns true when the owner was called back (the caller's
 * walk over the list must then start again). */
static bool sub_place(struct fg_redis *r, struct fg_redis_sub *s)
{
    struct rnode *home = sub_home(r, s);
    if (home == s->node)
        return false;
    bool told = false;
    if (s->node != NULL && s->subscribed) {
        if (ps_ready(s->node))
            send_sub(s->node->pubsub, s, false);
        s->subscribed = false;
        if (s->state != NULL) {
            s->node = home;
            s->state(false, s->arg);
            told = true;
        }
    }
    s->node = home;
    if (home == NULL)
        return told;
    if (ps_ready(home))
        send_sub(home->pubsub, s, true);
    else
        fg_redis_pubsub_start(home);
    return told;
}

void fg_redis_pubsub_replace_all(struct fg_redis *r)
{
    unsigned pass = ++r->pass;
    struct fg_redis_sub *s;
again:
    TAILQ_FOREACH(s, &r->subs, link)
    {
        if (s->pass == pass)
            continue;
        s->pass = pass;
        if (sub_place(r, s))
            goto again; /* the callback may have changed the list */
    }
}

void fg_redis_pubsub_start(struct rnode *n)
{
    struct fg_redis *r = n->r;
    if (r->freeing || n->pubsub != NULL)
        return;
    bool wanted = false;
    struct fg_redis_sub *s;
    TAILQ_FOREACH(s, &r->subs, link)
    wanted |= s->node == n;
    if (!wanted)
        return;
    n->pubsub = fg_redis_conn_new(n, CK_PUBSUB, false);
}

void fg_redis_pubsub_ready(struct rconn *c)
{
    struct fg_redis_sub *s;
    TAILQ_FOREACH(s, &c->r->subs, link)
    if (s->node == c->node && !s->subscribed)
        send_sub(c, s, true);
}

static struct fg_redis_sub *find(struct fg_redis *r, const struct rnode *n, bool sharded,
                                 const redisReply *ch)
{
    struct fg_redis_sub *s;
    TAILQ_FOREACH(s, &r->subs, link)
    if (s->node == n && s->sharded == sharded && s->len == ch->len &&
        memcmp(s->channel, ch->str, ch->len) == 0)
        return s;
    return NULL;
}

static bool kind_is(const redisReply *k, const char *s)
{
    return k->len == strlen(s) && memcmp(k->str, s, k->len) == 0;
}

void fg_redis_pubsub_reply(struct rconn *c, redisReply *reply)
{
    struct fg_redis *r = c->r;
    if (reply->type == REDIS_REPLY_ERROR) {
        /* -MOVED for an SSUBSCRIBE: the map changed under us */
        fg_debug("redis %s: %s:%d: pub/sub: %.150s", r->ep->name, c->node->host, c->node->port,
                 reply->str);
        fg_redis_want_refresh(r);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING)
        return; /* a PONG or the like */
    const redisReply *kind = reply->element[0], *ch = reply->element[1];
    bool sharded =
        kind_is(kind, "smessage") || kind_is(kind, "ssubscribe") || kind_is(kind, "sunsubscribe");
    struct fg_redis_sub *s = find(r, c->node, sharded, ch);
    if (kind_is(kind, "message") || kind_is(kind, "smessage")) {
        const redisReply *p = reply->element[2];
        if (s == NULL || p->type != REDIS_REPLY_STRING)
            return;
        rstat_add(r->stats, RS_MESSAGES, 1);
        s->msg(ch->str, ch->len, p->str, p->len, s->arg);
    } else if (kind_is(kind, "subscribe") || kind_is(kind, "ssubscribe")) {
        if (s == NULL || s->subscribed)
            return;
        s->subscribed = true;
        if (s->state != NULL)
            s->state(true, s->arg);
    } else if (kind_is(kind, "unsubscribe") || kind_is(kind, "sunsubscribe")) {
        /* Ours are sent for subscriptions already gone; one for a live subscription is
         * the server's: its slot moved. */
        if (s == NULL || !s->subscribed)
            return;
        s->subscribed = false;
        s->node = NULL;
        fg_redis_want_refresh(r);
        if (s->state != NULL)
            s->state(false, s->arg);
    }
}

void fg_redis_pubsub_lost(struct rnode *n)
{
    struct fg_redis *r = n->r;
    unsigned pass = ++r->pass;
    bool wanted = false;
    struct fg_redis_sub *s;
again:
    TAILQ_FOREACH(s, &r->subs, link)
    {
        if (s->node != n || s->pass == pass)
            continue;
        s->pass = pass;
        wanted = true;
        if (s->subscribed) {
            s->subscribed = false;
            if (s->state != NULL) {
                s->state(false, s->arg);
                goto again;
            }
        }
    }
    if (wanted && !r->freeing && !evtimer_pending(n->ps_reconnect_ev, NULL)) {
        uint64_t half = n->ps_backoff_ms / 2;
        uint64_t delay = half + fg_redis_jitter(r, half);
        unsigned next = n->ps_backoff_ms * 2;
        n->ps_backoff_ms = next > r->opts.backoff_max_ms ? r->opts.backoff_max_ms : next;
        struct timeval tv = {.tv_sec = (time_t)(delay / 1000),
                             .tv_usec = (suseconds_t)(delay % 1000) * 1000};
        evtimer_add(n->ps_reconnect_ev, &tv);
    }
}

struct fg_redis_sub *fg_redis_subscribe(struct fg_redis *r, const char *channel, size_t channel_len,
                                        bool sharded, fg_redis_msg_cb msg,
                                        fg_redis_sub_state_cb state, void *arg)
{
    if (r->freeing)
        return NULL;
    struct fg_redis_sub *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->channel = malloc(channel_len + 1)) == NULL) {
        free(s);
        return NULL;
    }
    memcpy(s->channel, channel, channel_len);
    s->channel[channel_len] = '\0';
    s->magic = SUB_MAGIC;
    s->r = r;
    s->len = channel_len;
    s->sharded = sharded;
    s->msg = msg;
    s->state = state;
    s->arg = arg;
    TAILQ_INSERT_TAIL(&r->subs, s, link);
    s->state = NULL; /* no callback from inside this call */
    sub_place(r, s);
    s->state = state;
    return s;
}

void fg_redis_unsubscribe(struct fg_redis_sub *s)
{
    if (s == NULL)
        return;
    FG_ASSERT(s->magic == SUB_MAGIC);
    struct fg_redis *r = s->r;
    fg_redis_enter(r); /* a failed send calls owners back; none may free r meanwhile */
    TAILQ_REMOVE(&r->subs, s, link);
    if (s->subscribed && ps_ready(s->node) && !r->freeing)
        send_sub(s->node->pubsub, s, false);
    s->magic = 0;
    free(s->channel);
    free(s);
    fg_redis_leave(r);
}
