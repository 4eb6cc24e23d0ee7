/*
 * script.c — Lua scripts by SHA1. The SHA is computed here, as Redis computes it, so a
 * client can send EVALSHA without asking SCRIPT LOAD for it first; conn.c loads a script
 * once per connection (pipelined before its first use) and client.c falls back to EVAL
 * when a server answers NOSCRIPT anyway.
 */
#include "redis/redis.h"

#include <string.h>

#include <openssl/evp.h>

bool fg_redis_script_init(struct fg_redis_script *s, const char *source)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    s->source = source;
    s->sha[0] = '\0';
    if (EVP_Digest(source, strlen(source), md, &len, EVP_sha1(), NULL) != 1 || len != 20)
        return false;
    for (unsigned i = 0; i < 20; i++) {
        s->sha[2 * i] = hex[md[i] >> 4];
        s->sha[2 * i + 1] = hex[md[i] & 15];
    }
    s->sha[40] = '\0';
    return true;
}
