/*
 * purges.c — the purges applied on this instance, remembered with their time (fleet.h),
 * so that a copy of an object in the shared tier stored before a purge is not taken back.
 * A ring under one mutex: written by the bus thread and the admin thread (purges are
 * rare), read by the workers on a shared-tier answer (one per local miss at most), from
 * the newest entry back to the first one older than the copy.
 */
#include "fleet/fleet.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

struct purge {
    int kind; /* enum fg_fleet_purge_kind, or -1: everything */
    char *value;
    size_t len;
    int64_t at_ms;
};

static struct {
    pthread_mutex_t lock;
    struct purge ring[FG_FLEET_PURGES_KEPT];
    size_t next, n;
    int64_t forgotten_ms; /* the newest purge the ring no longer holds; 0: none */
} P = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void remember(int kind, const char *value, size_t len, int64_t now_ms)
{
    char *v = len > 0 ? malloc(len) : NULL;
    if (len > 0 && v == NULL)
        kind = -1; /* out of memory: remembered as a purge of everything, which is safe */
    else if (len > 0)
        memcpy(v, value, len);
    pthread_mutex_lock(&P.lock);
    struct purge *p = &P.ring[P.next];
    if (P.n == FG_FLEET_PURGES_KEPT) {
        if (p->at_ms > P.forgotten_ms)
            P.forgotten_ms = p->at_ms;
        free(p->value);
    } else {
        P.n++;
    }
    *p = (struct purge){.kind = kind, .value = kind < 0 ? NULL : v, .len = len, .at_ms = now_ms};
    P.next = (P.next + 1) % FG_FLEET_PURGES_KEPT;
    pthread_mutex_unlock(&P.lock);
    if (kind < 0)
        free(v);
}

void fg_fleet_remember_purge(enum fg_fleet_purge_kind kind, const char *value, size_t len,
                             int64_t now_ms)
{
    remember((int)kind, value, len, now_ms);
}

void fg_fleet_remember_flush(int64_t now_ms)
{
    remember(-1, NULL, 0, now_ms);
}

static bool matches(const struct purge *p, const char *key, size_t key_len, const char *tags,
                    size_t tags_len)
{
    switch (p->kind) {
    case FG_FLEET_PURGE_KEY:
        return p->len == key_len && memcmp(p->value, key, key_len) == 0;
    case FG_FLEET_PURGE_PREFIX:
        return p->len <= key_len && memcmp(p->value, key, p->len) == 0;
    case FG_FLEET_PURGE_TAG:
        /* tags are " a b ": the tag with a space either side */
        for (const char *t = tags; tags_len > 0 && t + p->len + 2 <= tags + tags_len; t++) {
            t = memchr(t, ' ', (size_t)(tags + tags_len - t));
            if (t == NULL || t + p->len + 2 > tags + tags_len)
                return false;
            if (memcmp(t + 1, p->value, p->len) == 0 && t[p->len + 1] == ' ')
                return true;
        }
        return false;
    default:
        return true; /* everything */
    }
}

bool fg_fleet_purged_since(const char *key, size_t key_len, const char *tags, size_t tags_len,
                           int64_t stored_ms)
{
    /* A purge at most FG_FLEET_SKEW_MS before the copy, by another instance's clock, may
     * still be after it. */
    int64_t since = stored_ms - FG_FLEET_SKEW_MS;
    bool purged = false;
    pthread_mutex_lock(&P.lock);
    if (P.forgotten_ms != 0 && P.forgotten_ms >= since)
        purged = true;
    for (size_t k = 0; k < P.n && !purged; k++) {
        const struct purge *p =
            &P.ring[(P.next + FG_FLEET_PURGES_KEPT - 1 - k) % FG_FLEET_PURGES_KEPT];
        if (p->at_ms < since)
            break; /* the ring is in time order: older ones cannot matter */
        purged = matches(p, key, key_len, tags, tags_len);
    }
    pthread_mutex_unlock(&P.lock);
    return purged;
}
