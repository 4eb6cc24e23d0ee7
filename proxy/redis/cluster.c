/*
 * cluster.c — the pure parts of cluster mode: which slot a key lives in, the slot map in
 * the two forms servers give it (CLUSTER SHARDS since Redis 7 and Valkey; CLUSTER SLOTS
 * before), and MOVED / ASK redirections. No I/O: client.c applies what these return.
 *
 * Endpoints. A node announces where to reach it: an IP, a hostname (what ElastiCache
 * announces when in-transit encryption is on, so certificates can be checked), "" or "?"
 * when it does not know (the client then reuses the address it asked). The name a TLS
 * certificate is checked against is the announced hostname when there is one.
 */
#include "redis/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, as the cluster spec says. */
static uint16_t crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned char)buf[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned fg_redis_key_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open != NULL) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close != NULL && close > open + 1) /* "{}" is no tag: the whole key counts */
            return crc16(open + 1, (size_t)(close - open - 1)) & (FG_REDIS_SLOTS - 1);
    }
    return crc16(key, len) & (FG_REDIS_SLOTS - 1);
}

static bool fail(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", msg);
    return false;
}

static bool is_str(const redisReply *r)
{
    return r != NULL && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

static bool str_is(const redisReply *r, const char *s)
{
    return is_str(r) && r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

static void copy_str(char *out, size_t cap, const redisReply *r)
{
    size_t n = is_str(r) ? r->len : 0;
    if (n >= cap)
        n = 0; /* too long to be a host: treat as unknown */
    if (n > 0)
        memcpy(out, r->str, n);
    out[n] = '\0';
    if (strcmp(out, "?") == 0)
        out[0] = '\0';
}

/* Append a range, growing the array. */
static bool push(struct slot_range **v, size_t *n, size_t *cap, const struct slot_range *x)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        struct slot_range *nv = realloc(*v, nc * sizeof(*nv));
        if (nv == NULL)
            return false;
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = *x;
    return true;
}

static bool slot_pair_ok(long long a, long long b)
{
    return a >= 0 && b >= a && b < FG_REDIS_SLOTS;
}

/* The online master of a CLUSTER SHARDS "nodes" list into x (host, port, hostname). */
static bool shard_master(const redisReply *nodes, bool tls, struct slot_range *x)
{
    for (size_t i = 0; i < nodes->elements; i++) {
        const redisReply *nd = nodes->element[i];
        if (nd->type != REDIS_REPLY_ARRAY || nd->elements % 2 != 0)
            continue;
        const redisReply *endpoint = NULL, *ip = NULL, *hostname = NULL;
        long long port = 0, tls_port = 0;
        bool master = false, online = true;
        for (size_t k = 0; k + 1 < nd->elements; k += 2) {
            const redisReply *key = nd->element[k], *val = nd->element[k + 1];
            if (str_is(key, "endpoint"))
                endpoint = val;
            else if (str_is(key, "ip"))
                ip = val;
            else if (str_is(key, "hostname"))
                hostname = val;
            else if (str_is(key, "port") && val->type == REDIS_REPLY_INTEGER)
                port = val->integer;
            else if (str_is(key, "tls-port") && val->type == REDIS_REPLY_INTEGER)
                tls_port = val->integer;
            else if (str_is(key, "role"))
                master = str_is(val, "master");
            else if (str_is(key, "health"))
                online = str_is(val, "online");
        }
        if (!master || !online)
            continue;
        long long p = (tls && tls_port > 0) || port <= 0 ? tls_port : port;
        if (p <= 0 || p > 65535)
            continue;
        copy_str(x->host, sizeof(x->host), endpoint != NULL ? endpoint : ip);
        copy_str(x->hostname, sizeof(x->hostname), hostname);
        x->port = (int)p;
        return true;
    }
    return false;
}

struct slot_range *fg_redis_parse_shards(const redisReply *r, bool tls, size_t *n, char *err,
                                         size_t errlen)
{
    struct slot_range *v = NULL;
    size_t cap = 0;
    *n = 0;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        fail(err, errlen, "CLUSTER SHARDS: not an array");
        return NULL;
    }
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *sh = r->element[i];
        if (sh->type != REDIS_REPLY_ARRAY || sh->elements % 2 != 0)
            goto bad;
        const redisReply *slots = NULL, *nodes = NULL;
        for (size_t k = 0; k + 1 < sh->elements; k += 2) {
            if (str_is(sh->element[k], "slots"))
                slots = sh->element[k + 1];
            else if (str_is(sh->element[k], "nodes"))
                nodes = sh->element[k + 1];
        }
        if (slots == NULL || nodes == NULL || slots->type != REDIS_REPLY_ARRAY ||
            nodes->type != REDIS_REPLY_ARRAY || slots->elements % 2 != 0)
            goto bad;
        struct slot_range x;
        memset(&x, 0, sizeof(x));
        if (slots->elements == 0 || !shard_master(nodes, tls, &x))
            continue; /* no slots, or no master online: its slots stay unserved */
        for (size_t k = 0; k + 1 < slots->elements; k += 2) {
            const redisReply *a = slots->element[k], *b = slots->element[k + 1];
            if (a->type != REDIS_REPLY_INTEGER || b->type != REDIS_REPLY_INTEGER ||
                !slot_pair_ok(a->integer, b->integer))
                goto bad;
            x.start = (unsigned)a->integer;
            x.end = (unsigned)b->integer;
            if (!push(&v, n, &cap, &x))
                goto oom;
        }
    }
    return v;
bad:
    fail(err, errlen, "CLUSTER SHARDS: unexpected answer");
    goto out;
oom:
    fail(err, errlen, "out of memory");
out:
    free(v);
    *n = 0;
    return NULL;
}

struct slot_range *fg_redis_parse_slots(const redisReply *r, size_t *n, char *err, size_t errlen)
{
    struct slot_range *v = NULL;
    size_t cap = 0;
    *n = 0;
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        fail(err, errlen, "CLUSTER SLOTS: not an array");
        return NULL;
    }
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            !slot_pair_ok(e->element[0]->integer, e->element[1]->integer))
            goto bad;
        const redisReply *m = e->element[2]; /* the master: ip, port, id, [metadata] */
        if (m->type != REDIS_REPLY_ARRAY || m->elements < 2 || !is_str(m->element[0]) ||
            m->element[1]->type != REDIS_REPLY_INTEGER || m->element[1]->integer <= 0 ||
            m->element[1]->integer > 65535)
            goto bad;
        struct slot_range x;
        memset(&x, 0, sizeof(x));
        x.start = (unsigned)e->element[0]->integer;
        x.end = (unsigned)e->element[1]->integer;
        copy_str(x.host, sizeof(x.host), m->element[0]);
        x.port = (int)m->element[1]->integer;
        if (m->elements >= 4 && m->element[3]->type == REDIS_REPLY_ARRAY) {
            const redisReply *md = m->element[3];
            for (size_t k = 0; k + 1 < md->elements; k += 2)
                if (str_is(md->element[k], "hostname"))
                    copy_str(x.hostname, sizeof(x.hostname), md->element[k + 1]);
        }
        if (!push(&v, n, &cap, &x))
            goto oom;
    }
    return v;
bad:
    fail(err, errlen, "CLUSTER SLOTS: unexpected answer");
    goto out;
oom:
    fail(err, errlen, "out of memory");
out:
    free(v);
    *n = 0;
    return NULL;
}

bool fg_redis_parse_redirect(const char *err, size_t len, bool *ask, unsigned *slot, char *host,
                             size_t host_cap, int *port)
{
    size_t skip;
    if (len > 6 && memcmp(err, "MOVED ", 6) == 0) {
        *ask = false;
        skip = 6;
    } else if (len > 4 && memcmp(err, "ASK ", 4) == 0) {
        *ask = true;
        skip = 4;
    } else {
        return false;
    }
    const char *p = err + skip, *end = err + len;
    unsigned s = 0;
    size_t digits = 0;
    while (p < end && *p >= '0' && *p <= '9' && digits < 6) {
        s = s * 10 + (unsigned)(*p++ - '0');
        digits++;
    }
    if (digits == 0 || s >= FG_REDIS_SLOTS || p >= end || *p++ != ' ')
        return false;
    /* host:port, the host possibly an IPv6 literal (the last ':' separates the port) */
    const char *colon = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == ':')
            colon = q;
    if (colon == NULL || colon + 1 >= end)
        return false;
    size_t hl = (size_t)(colon - p);
    if (hl >= host_cap)
        return false;
    memcpy(host, p, hl);
    host[hl] = '\0';
    long v = 0;
    for (const char *q = colon + 1; q < end; q++) {
        if (*q < '0' || *q > '9' || v > 65535)
            return false;
        v = v * 10 + (*q - '0');
    }
    if (v < 1 || v > 65535)
        return false;
    *slot = s;
    *port = (int)v;
    return true;
}
