/*
 * client.c — flashgate as a TLS client: upstreams marked ssl and the agent's HTTPS.
 *
 * Verification is the default and turning it off is a deliberate, logged act: without it
 * anyone on the path can pose as the upstream. The hostname check and SNI are per
 * connection (SSL_set1_host, SSL_set_tlsext_host_name). Sessions are cached per upstream
 * host so a pool reconnecting to the same host pays the full handshake rarely; OpenSSL's
 * internal client cache is off (it is not keyed by host), new sessions arrive through
 * the new-session callback, which also catches TLS 1.3 tickets sent after the handshake.
 */
#include "tls/internal.h"
#include "core/core.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#define CLIENT_MAGIC 0x746c7363u /* "tlsc" */

struct session_slot {
    char *key; /* NULL: free slot */
    SSL_SESSION *sess;
    uint64_t stamp; /* when stored: the smallest is replaced first */
};

struct fg_tls_client {
    unsigned magic;
    _Atomic unsigned refs;
    SSL_CTX *ctx;
    pthread_mutex_t lock; /* guards slots and clock */
    struct session_slot *slots;
    size_t n_slots;
    uint64_t clock;
};

/* What an SSL made here carries: its client and the key its sessions are cached under. */
struct conn_link {
    struct fg_tls_client *c;
    char key[];
};

static int client_index = -1;
static pthread_once_t client_index_once = PTHREAD_ONCE_INIT;

static void client_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                           void *argp)
{
    struct conn_link *l = ptr;
    if (l == NULL)
        return;
    fg_tls_client_unref(l->c);
    free(l);
}

static void client_index_init(void)
{
    client_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, client_ex_free);
}

static int client_ex_index(void)
{
    pthread_once(&client_index_once, client_index_init);
    return client_index;
}

static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct conn_link *l = SSL_get_ex_data(ssl, client_ex_index());
    if (l != NULL)
        fg_tls_client_session_put(l->c, l->key, sess);
    return 0; /* we took our own reference; OpenSSL keeps its own */
}

struct fg_tls_client *fg_tls_client_new(const struct fg_tls_client_opts *o, char *err,
                                        size_t errlen)
{
    const char *name = o->name != NULL ? o->name : "TLS client";
    if (client_ex_index() < 0) {
        fg_tls_error(err, errlen, "cannot allocate an OpenSSL ex_data index");
        return NULL;
    }
    unsigned char alpn[256];
    size_t alpn_len = 0;
    if (o->alpn != NULL) {
        alpn_len = strlen(o->alpn);
        if (alpn_len == 0 || alpn_len > 255) {
            snprintf(err, errlen, "%s: ALPN protocol must be 1 to 255 bytes", name);
            return NULL;
        }
        alpn[0] = (unsigned char)alpn_len;
        memcpy(alpn + 1, o->alpn, alpn_len++);
    }
    struct fg_tls_client *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->n_slots = o->session_slots > 0 ? o->session_slots : 64;
    c->slots = calloc(c->n_slots, sizeof(c->slots[0]));
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (c->slots == NULL || c->ctx == NULL) {
        fg_tls_error(err, errlen, "%s: cannot create a TLS context", name);
        goto fail;
    }
    if (!fg_tls_ctx_common(c->ctx, o->min_version, o->ciphers, err, errlen))
        goto fail;
    if (o->verify_off) {
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
    } else {
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
        if (o->ca_file != NULL) {
            FILE *f = fopen(o->ca_file, "r");
            if (f == NULL) {
                snprintf(err, errlen, "%s: CA file %s: cannot open: %s", name, o->ca_file,
                         strerror(errno));
                goto fail;
            }
            fclose(f);
            if (SSL_CTX_load_verify_file(c->ctx, o->ca_file) != 1) {
                fg_tls_error(err, errlen, "%s: CA file %s: no usable PEM certificate", name,
                             o->ca_file);
                goto fail;
            }
        } else if (SSL_CTX_set_default_verify_paths(c->ctx) != 1) {
            fg_tls_error(err, errlen, "%s: cannot load the system CA store", name);
            goto fail;
        }
    }
    if (alpn_len > 0 && SSL_CTX_set_alpn_protos(c->ctx, alpn, (unsigned int)alpn_len) != 0) {
        fg_tls_error(err, errlen, "%s: cannot set ALPN", name);
        goto fail;
    }
    SSL_CTX_set_session_cache_mode(c->ctx,
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(c->ctx, new_session_cb);
    c->magic = CLIENT_MAGIC;
    atomic_init(&c->refs, 1);
    pthread_mutex_init(&c->lock, NULL);
    if (o->verify_off)
        fg_warn("tls: %s: certificate verification is OFF (verify off): the peer is not "
                "authenticated and anyone on the path can impersonate it",
                name);
    return c;
fail:
    SSL_CTX_free(c->ctx);
    free(c->slots);
    free(c);
    return NULL;
}

struct fg_tls_client *fg_tls_client_ref(struct fg_tls_client *c)
{
    FG_ASSERT(c->magic == CLIENT_MAGIC);
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void fg_tls_client_unref(struct fg_tls_client *c)
{
    if (c == NULL)
        return;
    FG_ASSERT(c->magic == CLIENT_MAGIC);
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < c->n_slots; i++) {
        free(c->slots[i].key);
        SSL_SESSION_free(c->slots[i].sess);
    }
    free(c->slots);
    SSL_CTX_free(c->ctx);
    pthread_mutex_destroy(&c->lock);
    c->magic = 0;
    free(c);
}

SSL_CTX *fg_tls_client_ctx(const struct fg_tls_client *c)
{
    FG_ASSERT(c->magic == CLIENT_MAGIC);
    return c->ctx;
}

static bool is_ip_literal(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

SSL *fg_tls_client_ssl_new(struct fg_tls_client *c, const char *host, const char *session_key)
{
    FG_ASSERT(c->magic == CLIENT_MAGIC);
    if (host == NULL || host[0] == '\0')
        return NULL;
    const char *key = session_key != NULL ? session_key : host;
    SSL *ssl = SSL_new(c->ctx);
    size_t klen = strlen(key);
    struct conn_link *l = malloc(sizeof(*l) + klen + 1);
    if (ssl == NULL || l == NULL)
        goto fail;
    memcpy(l->key, key, klen + 1);
    l->c = fg_tls_client_ref(c);
    if (SSL_set_ex_data(ssl, client_ex_index(), l) != 1) {
        fg_tls_client_unref(c);
        goto fail;
    }
    l = NULL; /* the SSL owns it now */
    bool ok;
    if (is_ip_literal(host)) {
        /* RFC 6066 §3: no SNI for an address; the certificate must name the address. */
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1;
    } else {
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = SSL_set_tlsext_host_name(ssl, host) == 1 && SSL_set1_host(ssl, host) == 1;
    }
    if (!ok)
        goto fail;
    SSL_SESSION *sess = fg_tls_client_session_get(c, key);
    if (sess != NULL) {
        SSL_set_session(ssl, sess); /* a failure only costs the resumption */
        SSL_SESSION_free(sess);
    }
    ERR_clear_error();
    return ssl;
fail:
    ERR_clear_error();
    free(l);
    SSL_free(ssl);
    return NULL;
}

/* The slot holding key, or NULL. Called with the lock held. A linear scan: the table is
 * as big as the number of TLS upstream hosts, a few dozen. */
static struct session_slot *slot_find(struct fg_tls_client *c, const char *key)
{
    for (size_t i = 0; i < c->n_slots; i++) {
        if (c->slots[i].key != NULL && strcmp(c->slots[i].key, key) == 0)
            return &c->slots[i];
    }
    return NULL;
}

SSL_SESSION *fg_tls_client_session_get(struct fg_tls_client *c, const char *key)
{
    FG_ASSERT(c->magic == CLIENT_MAGIC);
    SSL_SESSION *sess = NULL;
    pthread_mutex_lock(&c->lock);
    struct session_slot *s = slot_find(c, key);
    if (s != NULL && SSL_SESSION_up_ref(s->sess) == 1)
        sess = s->sess;
    pthread_mutex_unlock(&c->lock);
    return sess;
}

void fg_tls_client_session_put(struct fg_tls_client *c, const char *key, SSL_SESSION *sess)
{
    FG_ASSERT(c->magic == CLIENT_MAGIC);
    if (sess != NULL && (SSL_SESSION_is_resumable(sess) != 1 || SSL_SESSION_up_ref(sess) != 1))
        return;
    SSL_SESSION *old = NULL;
    char *old_key = NULL;
    pthread_mutex_lock(&c->lock);
    struct session_slot *s = slot_find(c, key);
    if (s == NULL && sess != NULL) {
        s = &c->slots[0];
        for (size_t i = 0; i < c->n_slots && s->key != NULL; i++) {
            if (c->slots[i].key == NULL || c->slots[i].stamp < s->stamp)
                s = &c->slots[i];
        }
        old_key = s->key;
        s->key = strdup(key);
        if (s->key == NULL) { /* out of memory: the slot stays free */
            old = s->sess;
            s->sess = NULL;
            pthread_mutex_unlock(&c->lock);
            free(old_key);
            SSL_SESSION_free(old);
            SSL_SESSION_free(sess);
            return;
        }
    }
    if (s != NULL) {
        old = s->sess;
        s->sess = sess;
        s->stamp = ++c->clock;
        if (sess == NULL) {
            old_key = s->key;
            s->key = NULL;
        }
    }
    pthread_mutex_unlock(&c->lock);
    free(old_key);
    SSL_SESSION_free(old);
}
