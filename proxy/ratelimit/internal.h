/*
 * internal.h — pieces of the ratelimit module shared by its files and its unit tests,
 * not by other modules.
 */
#ifndef FG_RATELIMIT_INTERNAL_H
#define FG_RATELIMIT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "ratelimit/ratelimit.h"

/* Streaming SipHash-2-4 (Aumasson and Bernstein), 64-bit output: the keyed hash that
 * identifies table keys. Feed the pieces of one message with update, in order. */
struct fg_ratelimit_siphash {
    uint64_t v0, v1, v2, v3;
    uint64_t tail;   /* bytes not yet compressed, little-endian */
    size_t tail_len; /* 0..7 */
    uint64_t total;  /* bytes fed so far */
};

/* Start a hash under the 16-byte key. */
void fg_ratelimit_siphash_init(struct fg_ratelimit_siphash *s, const uint8_t key[16]);
/* Feed len bytes. */
void fg_ratelimit_siphash_update(struct fg_ratelimit_siphash *s, const void *data, size_t len);
/* The 64-bit hash of everything fed. s must not be updated afterwards. */
uint64_t fg_ratelimit_siphash_final(struct fg_ratelimit_siphash *s);

/* The Redis path of fg_ratelimit_decide (redis.c): same contract, for a redis limit with
 * a client. */
enum fg_ratelimit_status fg_ratelimit_redis_decide(struct fg_ratelimit_redis *r,
                                                   const struct fg_ratelimit_limit *limit,
                                                   const void *key, size_t key_len, uint64_t cost,
                                                   uint64_t now_us, struct fg_ratelimit_result *res,
                                                   fg_ratelimit_cb cb, void *arg,
                                                   struct fg_ratelimit_pending **pending);

/* The Redis-side GCRA, as loaded with SCRIPT LOAD (redis.c). Exposed for the tests. */
extern const char fg_ratelimit_redis_script[];

#endif /* FG_RATELIMIT_INTERNAL_H */
