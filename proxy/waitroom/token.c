/*
 * token.c — the room's cookies: keys from a root-only file, HMAC-SHA256 tokens bound to
 * the room's name. A token that does not verify (tampered, another room's, signed with a
 * key that was rotated out) is worth nothing: the stage gives its holder a new ticket.
 */
#include "waitroom/waitroom.h"

#include "core/core.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define KEY_FILE_MAX 8192
#define MAC_BYTES    16 /* 128 bits of the HMAC, 22 base64url characters */
#define MAC_CHARS    22

void fg_waitroom_keys_wipe(struct fg_waitroom_keys *k)
{
    for (size_t i = 0; i < FG_WAITROOM_KEYS_MAX; i++) {
        EVP_MD_CTX_free(k->key[i].inner);
        EVP_MD_CTX_free(k->key[i].outer);
    }
    OPENSSL_cleanse(k, sizeof(*k));
}

/* HMAC (RFC 2104) with SHA-256: the states after (key ^ ipad) and (key ^ opad). */
static bool prepare(unsigned char *key, size_t len, void **inner, void **outer)
{
    unsigned char block[64] = {0}, pad[64];
    unsigned int n = 0;
    if (len > sizeof(block)) {
        if (EVP_Digest(key, len, block, &n, EVP_sha256(), NULL) != 1)
            return false;
    } else {
        memcpy(block, key, len);
    }
    EVP_MD_CTX *in = EVP_MD_CTX_new(), *out = EVP_MD_CTX_new();
    bool ok = in != NULL && out != NULL;
    for (size_t i = 0; i < sizeof(pad); i++)
        pad[i] = block[i] ^ 0x36;
    ok = ok && EVP_DigestInit_ex(in, EVP_sha256(), NULL) == 1 &&
         EVP_DigestUpdate(in, pad, sizeof(pad)) == 1;
    for (size_t i = 0; i < sizeof(pad); i++)
        pad[i] = block[i] ^ 0x5c;
    ok = ok && EVP_DigestInit_ex(out, EVP_sha256(), NULL) == 1 &&
         EVP_DigestUpdate(out, pad, sizeof(pad)) == 1;
    OPENSSL_cleanse(block, sizeof(block));
    OPENSSL_cleanse(pad, sizeof(pad));
    if (!ok) {
        EVP_MD_CTX_free(in);
        EVP_MD_CTX_free(out);
        return false;
    }
    *inner = in;
    *outer = out;
    return true;
}

bool fg_waitroom_keys_parse(const char *text, size_t len, struct fg_waitroom_keys *out, char *err,
                            size_t errlen)
{
    memset(out, 0, sizeof(*out));
    size_t line = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        line++;
        size_t n = (size_t)(le - p);
        if (n > 0 && p[n - 1] == '\r')
            n--;
        if (n > 0 && p[0] != '#') {
            if (out->n == FG_WAITROOM_KEYS_MAX) {
                snprintf(err, errlen, "more than %d keys", FG_WAITROOM_KEYS_MAX);
                goto fail;
            }
            if (n < FG_WAITROOM_KEY_MIN || n > FG_WAITROOM_KEY_MAX) {
                snprintf(err, errlen,
                         "key on line %zu: %d to %d bytes (for example 32 random "
                         "bytes in hex: openssl rand -hex 32)",
                         line, FG_WAITROOM_KEY_MIN, FG_WAITROOM_KEY_MAX);
                goto fail;
            }
            memcpy(out->key[out->n].k, p, n);
            out->key[out->n].len = n;
            if (!prepare(out->key[out->n].k, n, &out->key[out->n].inner, &out->key[out->n].outer)) {
                snprintf(err, errlen, "OpenSSL cannot make HMAC-SHA256 contexts");
                goto fail;
            }
            out->n++;
        }
        p = nl ? nl + 1 : end;
    }
    if (out->n == 0) {
        snprintf(err, errlen, "no key (one per line; the first signs, all verify)");
        goto fail;
    }
    return true;
fail:
    fg_waitroom_keys_wipe(out);
    return false;
}

bool fg_waitroom_keys_load(const char *path, struct fg_waitroom_keys *out, char *err, size_t errlen)
{
    char buf[KEY_FILE_MAX];
    bool ok = false;
    ssize_t n = fg_secret_file_read("key_file", path, buf, sizeof(buf), err, errlen);
    if (n >= 0 && (size_t)n == sizeof(buf)) {
        snprintf(err, errlen, "key_file %s: larger than %d bytes", path, KEY_FILE_MAX);
    } else if (n >= 0) {
        char why[160];
        ok = fg_waitroom_keys_parse(buf, (size_t)n, out, why, sizeof(why));
        if (!ok)
            snprintf(err, errlen, "key_file %s: %s", path, why);
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    return ok;
}

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* base64url without padding of MAC_BYTES bytes: MAC_CHARS characters. */
static void encode_mac(const unsigned char *mac, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < MAC_BYTES; i += 3) {
        uint32_t v = (uint32_t)mac[i] << 16;
        if (i + 1 < MAC_BYTES)
            v |= (uint32_t)mac[i + 1] << 8;
        if (i + 2 < MAC_BYTES)
            v |= mac[i + 2];
        size_t chars = i + 2 < MAC_BYTES ? 4 : i + 1 < MAC_BYTES ? 3 : 2;
        for (size_t k = 0; k < chars; k++)
            out[o++] = b64url[(v >> (18 - 6 * k)) & 63];
    }
}

static bool compute_mac(const struct fg_waitroom_keys *k, size_t i, const char *room,
                        const char *text, size_t len, char out[MAC_CHARS])
{
    unsigned char ih[EVP_MAX_MD_SIZE], md[EVP_MAX_MD_SIZE];
    unsigned int ih_len = 0, md_len = 0;
    size_t rl = strlen(room);
    if (rl >= FG_WAITROOM_NAME_MAX || len > FG_WAITROOM_TOKEN_MAX)
        return false;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    /* room NUL text: a token of room "a" never verifies for room "ab" */
    bool ok = c != NULL && EVP_MD_CTX_copy_ex(c, k->key[i].inner) == 1 &&
              EVP_DigestUpdate(c, room, rl + 1) == 1 && EVP_DigestUpdate(c, text, len) == 1 &&
              EVP_DigestFinal_ex(c, ih, &ih_len) == 1 &&
              EVP_MD_CTX_copy_ex(c, k->key[i].outer) == 1 && EVP_DigestUpdate(c, ih, ih_len) == 1 &&
              EVP_DigestFinal_ex(c, md, &md_len) == 1 && md_len >= MAC_BYTES;
    EVP_MD_CTX_free(c);
    if (ok)
        encode_mac(md, out);
    OPENSSL_cleanse(md, sizeof(md));
    return ok;
}

size_t fg_waitroom_token_sign(const struct fg_waitroom_keys *k, const char *room,
                              const struct fg_waitroom_token *t, char *out, size_t cap)
{
    if (k == NULL || k->n == 0)
        return 0;
    char text[FG_WAITROOM_TOKEN_MAX];
    int n = snprintf(text, sizeof(text), "1.%c.%" PRIu64 ".%" PRId64 ".%c.", (char)t->kind,
                     t->ticket, t->issued, t->early ? 'e' : 'f');
    if (n <= 0 || (size_t)n + MAC_CHARS + 1 > cap)
        return 0;
    char mac[MAC_CHARS];
    if (!compute_mac(k, 0, room, text, (size_t)n, mac))
        return 0;
    memcpy(out, text, (size_t)n);
    memcpy(out + n, mac, MAC_CHARS);
    out[(size_t)n + MAC_CHARS] = '\0';
    return (size_t)n + MAC_CHARS;
}

/* A decimal number of at most 19 digits, no sign, no leading zero (one spelling each: a
 * token cannot be re-spelt into another valid one). */
static bool parse_num(const char **p, const char *end, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    size_t d = 0;
    while (s < end && *s >= '0' && *s <= '9' && d < 19) {
        v = v * 10 + (uint64_t)(*s - '0');
        s++, d++;
    }
    if (d == 0 || (d > 1 && (*p)[0] == '0') || s == end || *s != '.')
        return false;
    *out = v;
    *p = s + 1;
    return true;
}

enum fg_waitroom_verdict fg_waitroom_token_verify(const struct fg_waitroom_keys *k,
                                                  const char *room, const char *s, size_t len,
                                                  struct fg_waitroom_token *out)
{
    const char *p = s, *end = s + len;
    if (len < 4 + MAC_CHARS || len > FG_WAITROOM_TOKEN_MAX || memcmp(p, "1.", 2) != 0)
        return FG_WR_TOKEN_MALFORMED;
    p += 2;
    struct fg_waitroom_token t = {0};
    if (p + 2 > end || (p[0] != FG_WR_TICKET && p[0] != FG_WR_ADMITTED) || p[1] != '.')
        return FG_WR_TOKEN_MALFORMED;
    t.kind = (enum fg_waitroom_token_kind)p[0];
    p += 2;
    uint64_t issued;
    if (!parse_num(&p, end, &t.ticket) || !parse_num(&p, end, &issued) || issued > INT64_MAX)
        return FG_WR_TOKEN_MALFORMED;
    t.issued = (int64_t)issued;
    if (p + 2 > end || (p[0] != 'e' && p[0] != 'f') || p[1] != '.')
        return FG_WR_TOKEN_MALFORMED;
    t.early = p[0] == 'e';
    p += 2;
    if ((size_t)(end - p) != MAC_CHARS)
        return FG_WR_TOKEN_MALFORMED;
    size_t text_len = (size_t)(p - s);
    bool good = false;
    for (size_t i = 0; k != NULL && i < k->n; i++) {
        char mac[MAC_CHARS];
        if (compute_mac(k, i, room, s, text_len, mac) && CRYPTO_memcmp(mac, p, MAC_CHARS) == 0)
            good = true; /* every key is tried: the time does not tell which matched */
    }
    if (!good)
        return FG_WR_TOKEN_BAD_MAC;
    *out = t;
    return FG_WR_TOKEN_OK;
}
