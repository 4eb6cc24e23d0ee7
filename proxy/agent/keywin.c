/*
 * keywin.c — the recent-key window: the idempotency keys of the last records the agent
 * took, with their sequence numbers, so that a retry of a write it already holds is
 * acknowledged again instead of queued twice.
 *
 * Its memory is fixed when it is made and never grows: a ring of max_keys entries (24
 * bytes each) with a hash table of at least twice as many buckets (4 bytes each), and a
 * ring of max_bytes for the keys themselves, stored back to back in the order they came.
 * A new key forgets the oldest ones until both rings have room. (Keys used to be one
 * malloc each: about 48 bytes for a 32-character key and 288 for a 255-character one,
 * outside any bound.) The pages are touched as the window fills, so the resident size
 * grows to max_keys * 32 + max_bytes at most and then stays.
 *
 * The table is keyed with SipHash and a random key per process: clients choose the
 * idempotency keys, so they must not be able to choose keys that share a bucket.
 */
#include "agent/agentd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct kw_ent {
    uint64_t seq;
    uint32_t off;  /* of the key in the key ring */
    uint32_t next; /* next entry in the bucket's chain, 1-based; 0 ends it */
    uint8_t len;
    bool live; /* in the table (a forgotten one still holds its bytes until evicted) */
};

struct fg_keywin {
    struct kw_ent *e;
    uint32_t cap;   /* entries */
    uint32_t head;  /* the slot the next key takes */
    uint32_t count; /* slots in use: the oldest is count slots behind head */
    uint32_t live;  /* of them, keys in the table */
    uint32_t *bucket;
    uint32_t mask;
    char *keys;
    size_t key_cap;
    size_t key_head; /* where the next key's bytes go */
    uint8_t sipkey[16];
};

static uint32_t hash(const struct fg_keywin *w, const char *k, size_t len)
{
    struct fg_siphash h;
    fg_siphash_init(&h, w->sipkey);
    fg_siphash_update(&h, k, len);
    return (uint32_t)fg_siphash_final(&h) & w->mask;
}

struct fg_keywin *fg_keywin_new(uint32_t max_keys, size_t max_bytes)
{
    if (max_keys == 0 || max_bytes < FG_AGENT_PROTO_KEY_MAX || max_bytes > UINT32_MAX)
        return NULL;
    struct fg_keywin *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    uint32_t nb = 1;
    while (nb < max_keys * 2u && nb < (1u << 31))
        nb <<= 1;
    w->cap = max_keys;
    w->mask = nb - 1;
    w->key_cap = max_bytes;
    w->e = calloc(max_keys, sizeof(*w->e));
    w->bucket = calloc(nb, sizeof(*w->bucket));
    w->keys = malloc(max_bytes);
    if (w->e == NULL || w->bucket == NULL || w->keys == NULL) {
        fg_keywin_free(w);
        return NULL;
    }
    FILE *r = fopen("/dev/urandom", "rb");
    if (r == NULL || fread(w->sipkey, 1, sizeof(w->sipkey), r) != sizeof(w->sipkey)) {
        uint64_t t = fg_mono_us() ^ (uint64_t)getpid() << 32;
        memcpy(w->sipkey, &t, sizeof(t));
    }
    if (r != NULL)
        fclose(r);
    return w;
}

void fg_keywin_free(struct fg_keywin *w)
{
    if (w == NULL)
        return;
    free(w->e);
    free(w->bucket);
    free(w->keys);
    free(w);
}

static void unlink_entry(struct fg_keywin *w, uint32_t idx)
{
    struct kw_ent *e = &w->e[idx - 1];
    if (!e->live)
        return;
    uint32_t *pp = &w->bucket[hash(w, w->keys + e->off, e->len)];
    while (*pp != 0 && *pp != idx)
        pp = &w->e[*pp - 1].next;
    if (*pp == idx)
        *pp = e->next;
    e->live = false;
    e->next = 0;
    w->live--;
}

uint32_t fg_keywin_find(const struct fg_keywin *w, const char *k, size_t len, uint64_t *seq)
{
    for (uint32_t i = w->bucket[hash(w, k, len)]; i != 0; i = w->e[i - 1].next) {
        const struct kw_ent *e = &w->e[i - 1];
        if (e->len == len && memcmp(w->keys + e->off, k, len) == 0) {
            if (seq != NULL)
                *seq = e->seq;
            return i;
        }
    }
    return 0;
}

/* Forget the oldest entry (its slot and its bytes). */
static void evict_oldest(struct fg_keywin *w)
{
    uint32_t oldest = (w->head + w->cap - w->count) % w->cap;
    unlink_entry(w, oldest + 1);
    w->count--;
    if (w->count == 0)
        w->key_head = 0; /* nothing left: the key ring starts over */
}

/* Where a key of len bytes can go in the key ring now (the oldest key's bytes end the
 * free space), or SIZE_MAX if nowhere without forgetting more. */
static size_t key_room(const struct fg_keywin *w, size_t len)
{
    if (w->count == 0)
        return len <= w->key_cap ? 0 : SIZE_MAX;
    size_t tail = w->e[(w->head + w->cap - w->count) % w->cap].off;
    if (w->key_head > tail) { /* the keys lie in [tail, key_head) */
        if (len <= w->key_cap - w->key_head)
            return w->key_head;
        return len <= tail ? 0 : SIZE_MAX; /* wrap: the end of the ring is left unused */
    }
    /* They wrapped: [tail, end) and [0, key_head); head == tail means no room at all. */
    return len <= tail - w->key_head ? w->key_head : SIZE_MAX;
}

uint32_t fg_keywin_add(struct fg_keywin *w, const char *k, size_t len, uint64_t seq)
{
    if (len == 0 || len > FG_AGENT_PROTO_KEY_MAX)
        return 0;
    size_t off;
    while (w->count == w->cap || (off = key_room(w, len)) == SIZE_MAX)
        evict_oldest(w);
    memcpy(w->keys + off, k, len);
    w->key_head = off + len;
    uint32_t idx = w->head + 1;
    struct kw_ent *e = &w->e[w->head];
    *e = (struct kw_ent){.seq = seq, .off = (uint32_t)off, .len = (uint8_t)len, .live = true};
    uint32_t b = hash(w, k, len);
    e->next = w->bucket[b];
    w->bucket[b] = idx;
    w->head = (w->head + 1) % w->cap;
    w->count++;
    w->live++;
    return idx;
}

void fg_keywin_forget(struct fg_keywin *w, uint32_t id, uint64_t seq)
{
    if (id == 0 || id > w->cap)
        return;
    struct kw_ent *e = &w->e[id - 1];
    if (e->live && e->seq == seq)
        unlink_entry(w, id);
}

size_t fg_keywin_count(const struct fg_keywin *w)
{
    return w->live;
}

size_t fg_keywin_memory(uint32_t max_keys, size_t max_bytes)
{
    size_t nb = 1;
    while (nb < (size_t)max_keys * 2 && nb < (1u << 31))
        nb <<= 1;
    return (size_t)max_keys * sizeof(struct kw_ent) + nb * sizeof(uint32_t) + max_bytes;
}
