/*
 * siphash.c — SipHash-2-4, streaming. Written from the paper ("SipHash: a fast short-input
 * PRF", 2012): two compression rounds per 8-byte word, four finalization rounds, the
 * length in the top byte of the last word. Checked against the paper's test vectors in
 * tests/unit/ratelimit/test_table.c.
 *
 * Why a keyed hash and not FNV or similar: table keys are client-controlled (addresses,
 * header values). With a public hash a client could pick keys that all land in one bucket
 * and evict everyone else's budget there; with a secret key per process it cannot.
 */
#include "core/core.h"

static inline uint64_t rotl(uint64_t x, unsigned b)
{
    return (x << b) | (x >> (64 - b));
}

static inline void sipround(struct fg_siphash *s)
{
    s->v0 += s->v1;
    s->v1 = rotl(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = rotl(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = rotl(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = rotl(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = rotl(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = rotl(s->v2, 32);
}

static inline uint64_t load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static inline void compress(struct fg_siphash *s, uint64_t m)
{
    s->v3 ^= m;
    sipround(s);
    sipround(s);
    s->v0 ^= m;
}

void fg_siphash_init(struct fg_siphash *s, const uint8_t key[16])
{
    uint64_t k0 = load_le64(key), k1 = load_le64(key + 8);
    s->v0 = k0 ^ UINT64_C(0x736f6d6570736575);
    s->v1 = k1 ^ UINT64_C(0x646f72616e646f6d);
    s->v2 = k0 ^ UINT64_C(0x6c7967656e657261);
    s->v3 = k1 ^ UINT64_C(0x7465646279746573);
    s->tail = 0;
    s->tail_len = 0;
    s->total = 0;
}

void fg_siphash_update(struct fg_siphash *s, const void *data, size_t len)
{
    const uint8_t *p = data;
    s->total += len;
    while (len > 0 && s->tail_len > 0) {
        s->tail |= (uint64_t)*p++ << (8 * s->tail_len);
        len--;
        if (++s->tail_len == 8) {
            compress(s, s->tail);
            s->tail = 0;
            s->tail_len = 0;
        }
    }
    for (; len >= 8; p += 8, len -= 8)
        compress(s, load_le64(p));
    for (; len > 0; len--)
        s->tail |= (uint64_t)*p++ << (8 * s->tail_len++);
}

uint64_t fg_siphash_final(struct fg_siphash *s)
{
    compress(s, s->tail | (s->total << 56));
    s->v2 ^= 0xff;
    for (int i = 0; i < 4; i++)
        sipround(s);
    return s->v0 ^ s->v1 ^ s->v2 ^ s->v3;
}
