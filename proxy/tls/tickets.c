/*
 * tickets.c — the session ticket key ring.
 *
 * A ticket is the server's session state encrypted under a key only the server knows, so
 * resumption needs no server-side storage. Whoever learns that key can decrypt every
 * session it protected, hence: keys come from RAND_bytes, never touch the disk, and are
 * replaced on a schedule. A ticket made with the previous key stays valid for one more
 * period (or keep_previous more), so a rotation does not force full handshakes on
 * clients that came back a moment after it; they get a ticket under the new key.
 *
 * Tickets are AES-256-CBC with HMAC-SHA256 (what OpenSSL's own ticket format expects
 * from the callback), each key a 16-byte name, a 32-byte cipher key and a 32-byte MAC key.
 */
#include "tls/internal.h"
#include "core/core.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

struct ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
};

#define TICKET_KEYS_MAGIC 0x746b6579u /* "tkey" */

struct fg_tls_ticket_keys {
    unsigned magic;
    _Atomic unsigned refs;
    pthread_mutex_t lock;                           /* guards keys, n, last_rotate */
    struct ticket_key keys[FG_TLS_TICKET_KEYS_MAX]; /* [0] is current, then older */
    unsigned n;                                     /* keys in use */
    unsigned keep;                                  /* at most keep + 1 keys */
    uint64_t every_s;
    int64_t last_rotate;
};

static bool key_fresh(struct ticket_key *k)
{
    return RAND_bytes(k->name, sizeof(k->name)) == 1 && RAND_bytes(k->aes, sizeof(k->aes)) == 1 &&
           RAND_bytes(k->hmac, sizeof(k->hmac)) == 1;
}

struct fg_tls_ticket_keys *fg_tls_ticket_keys_new(uint64_t rotate_every_s, unsigned keep_previous,
                                                  int64_t now, char *err, size_t errlen)
{
    if (rotate_every_s == 0 || keep_previous >= FG_TLS_TICKET_KEYS_MAX) {
        snprintf(err, errlen, "ticket keys: rotation period must be > 0 and at most %d old keys",
                 FG_TLS_TICKET_KEYS_MAX - 1);
        return NULL;
    }
    struct fg_tls_ticket_keys *k = calloc(1, sizeof(*k));
    if (k == NULL) {
        snprintf(err, errlen, "ticket keys: out of memory");
        return NULL;
    }
    if (!key_fresh(&k->keys[0])) {
        OPENSSL_cleanse(k, sizeof(*k));
        free(k);
        fg_tls_error(err, errlen, "ticket keys: RAND_bytes failed");
        return NULL;
    }
    k->magic = TICKET_KEYS_MAGIC;
    atomic_init(&k->refs, 1);
    pthread_mutex_init(&k->lock, NULL);
    k->n = 1;
    k->keep = keep_previous;
    k->every_s = rotate_every_s;
    k->last_rotate = now;
    return k;
}

static int rotate(struct fg_tls_ticket_keys *k, int64_t now, bool force)
{
    FG_ASSERT(k->magic == TICKET_KEYS_MAGIC);
    struct ticket_key fresh;
    pthread_mutex_lock(&k->lock);
    int rc = 0;
    if (force || now < k->last_rotate || (uint64_t)(now - k->last_rotate) >= k->every_s) {
        if (!key_fresh(&fresh)) {
            rc = -1;
        } else {
            unsigned n = k->n < k->keep + 1 ? k->n + 1 : k->keep + 1;
            memmove(&k->keys[1], &k->keys[0], (n - 1) * sizeof(k->keys[0]));
            /* the oldest key, when the ring is full, is overwritten in place: gone */
            k->keys[0] = fresh;
            k->n = n;
            k->last_rotate = now;
            rc = 1;
        }
    }
    pthread_mutex_unlock(&k->lock);
    OPENSSL_cleanse(&fresh, sizeof(fresh));
    if (rc < 0) {
        ERR_clear_error();
        fg_err("tls: ticket key rotation failed (RAND_bytes); keeping the current keys");
    }
    return rc;
}

int fg_tls_ticket_keys_rotate(struct fg_tls_ticket_keys *k, int64_t now)
{
    return rotate(k, now, false);
}

int fg_tls_ticket_keys_rotate_force(struct fg_tls_ticket_keys *k, int64_t now)
{
    return rotate(k, now, true);
}

struct fg_tls_ticket_keys *fg_tls_ticket_keys_ref(struct fg_tls_ticket_keys *k)
{
    FG_ASSERT(k->magic == TICKET_KEYS_MAGIC);
    atomic_fetch_add_explicit(&k->refs, 1, memory_order_relaxed);
    return k;
}

void fg_tls_ticket_keys_unref(struct fg_tls_ticket_keys *k)
{
    if (k == NULL)
        return;
    FG_ASSERT(k->magic == TICKET_KEYS_MAGIC);
    if (atomic_fetch_sub_explicit(&k->refs, 1, memory_order_acq_rel) != 1)
        return;
    pthread_mutex_destroy(&k->lock);
    OPENSSL_cleanse(k, sizeof(*k));
    free(k);
}

/* Point ctx and hctx at key (encrypting or decrypting with iv). */
static int key_setup(const struct ticket_key *key, unsigned char *iv, EVP_CIPHER_CTX *ctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)key->hmac, sizeof(key->hmac)),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_MAC_CTX_set_params(hctx, params) != 1)
        return -1;
    int ok = enc ? EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, key->aes, iv)
                 : EVP_DecryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, key->aes, iv);
    return ok == 1 ? 1 : -1;
}

int fg_tls_ticket_keys_crypt(struct fg_tls_ticket_keys *k, unsigned char name[16],
                             unsigned char *iv, EVP_CIPHER_CTX *ctx, EVP_MAC_CTX *hctx, int enc)
{
    FG_ASSERT(k->magic == TICKET_KEYS_MAGIC);
    struct ticket_key key;
    int rc = 0;
    pthread_mutex_lock(&k->lock);
    if (enc) {
        key = k->keys[0];
        rc = 1;
    } else {
        for (unsigned i = 0; i < k->n; i++) {
            if (CRYPTO_memcmp(k->keys[i].name, name, sizeof(key.name)) == 0) {
                key = k->keys[i];
                rc = i == 0 ? 1 : 2; /* 2: renew the ticket under the current key */
                break;
            }
        }
    }
    pthread_mutex_unlock(&k->lock);
    if (rc == 0)
        return 0; /* rotated out or never ours: a full handshake, not an error */
    if (enc) {
        memcpy(name, key.name, sizeof(key.name));
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1)
            rc = -1;
    }
    if (rc > 0 && key_setup(&key, iv, ctx, hctx, enc) < 0)
        rc = -1;
    OPENSSL_cleanse(&key, sizeof(key));
    return rc;
}
