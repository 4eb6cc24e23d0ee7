/*
 * server.c — the listener's side: one SSL_CTX per certificate, chosen by SNI.
 *
 * Every context carries the same settings (versions, ciphers, ALPN, session cache,
 * ticket keys); only the certificate differs. A connection starts on the first context
 * and the servername callback moves it to the certificate that matches the name the
 * client asked for. Each SSL holds a reference on its fg_tls_server (ex_data freed with
 * the SSL), so the callbacks can always reach the table even after a reload released it.
 */
#include "tls/internal.h"
#include "core/core.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#define SERVER_MAGIC 0x746c7373u /* "tlss" */

struct fg_tls_server {
    unsigned magic;
    _Atomic unsigned refs;
    size_t n;
    SSL_CTX **ctx; /* [0] is the default */
    X509 **leaf;   /* borrowed from ctx[i] */
    struct fg_tls_ticket_keys *keys;
};

/* ---- the SSL -> server link -------------------------------------------------------- */

static int server_index = -1;
static pthread_once_t server_index_once = PTHREAD_ONCE_INIT;

static void server_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                           void *argp)
{
    fg_tls_server_unref(ptr);
}

static void server_index_init(void)
{
    server_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, server_ex_free);
}

static int server_ex_index(void)
{
    pthread_once(&server_index_once, server_index_init);
    return server_index;
}

static struct fg_tls_server *server_of(SSL *ssl)
{
    int idx = server_ex_index();
    return idx < 0 ? NULL : SSL_get_ex_data(ssl, idx);
}

/* ---- callbacks --------------------------------------------------------------------- */

static int sni_cb(SSL *ssl, int *alert, void *arg)
{
    struct fg_tls_server *s = server_of(ssl);
    if (s == NULL)
        return SSL_TLSEXT_ERR_OK; /* not one of ours: stay on the default certificate */
    size_t i = fg_tls_server_select(s, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
    if (i != 0 && SSL_set_SSL_CTX(ssl, s->ctx[i]) == NULL) {
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

/* Select http/1.1 when the client offers it; otherwise carry on without ALPN (a client
 * that offers nothing, or only h2, gets no ALPN answer and decides for itself). */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    static const char ours[] = "http/1.1";
    for (unsigned int i = 0; i < inlen;) {
        unsigned int len = in[i];
        if (len == 0 || len > inlen - i - 1)
            break; /* malformed list */
        if (len == sizeof(ours) - 1 && memcmp(in + i + 1, ours, len) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)len;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + len;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static int ticket_cb(SSL *ssl, unsigned char *name, unsigned char *iv, EVP_CIPHER_CTX *ctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    struct fg_tls_server *s = server_of(ssl);
    if (s == NULL || s->keys == NULL)
        return 0; /* no ticket issued, none accepted */
    int rc = fg_tls_ticket_keys_crypt(s->keys, name, iv, ctx, hctx, enc);
    /* TLS 1.3 clients should use a ticket once (RFC 8446 §C.4), and OpenSSL's do: a
     * resumption without a fresh ticket would leave the next reconnect without one. */
    if (!enc && rc == 1 && SSL_version(ssl) == TLS1_3_VERSION)
        rc = 2;
    return rc;
}

/* Never prompt for a pass phrase: an encrypted key is an error at load. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return 0;
}

/* ---- loading ----------------------------------------------------------------------- */

static bool readable(const char *what, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s %s: cannot open: %s", what, path, strerror(errno));
        return false;
    }
    fclose(f);
    return true;
}

static void time_text(const ASN1_TIME *t, char *out, size_t outlen)
{
    BIO *b = BIO_new(BIO_s_mem());
    snprintf(out, outlen, "?");
    if (b == NULL)
        return;
    if (ASN1_TIME_print(b, t) == 1) {
        int n = BIO_read(b, out, (int)outlen - 1);
        out[n > 0 ? n : 0] = '\0';
    }
    BIO_free(b);
}

/* The certificate (with chain) and key of f into ctx, checked. On failure *key_fault
 * says whether the key is the file at fault (a key that does not match its certificate
 * is: the certificate may be right for another key, written on another line). */
static bool load_pair(SSL_CTX *ctx, const struct fg_tls_cert_files *f, bool *key_fault, char *err,
                      size_t errlen)
{
    *key_fault = f->cert != NULL;
    if (f->cert == NULL || f->key == NULL) {
        snprintf(err, errlen, "a certificate needs both a certificate and a certificate_key");
        return false;
    }
    *key_fault = false;
    if (!readable("certificate", f->cert, err, errlen))
        return false;
    *key_fault = true;
    if (!readable("certificate_key", f->key, err, errlen))
        return false;
    *key_fault = false;
    if (SSL_CTX_use_certificate_chain_file(ctx, f->cert) != 1) {
        fg_tls_error(err, errlen, "certificate %s: not a valid PEM certificate chain", f->cert);
        return false;
    }
    X509 *x = SSL_CTX_get0_certificate(ctx);
    char when[64];
    int after = X509_cmp_current_time(X509_get0_notAfter(x));
    int before = X509_cmp_current_time(X509_get0_notBefore(x));
    if (after == 0 || before == 0) {
        snprintf(err, errlen, "certificate %s: unreadable validity period", f->cert);
        return false;
    }
    if (after < 0) {
        time_text(X509_get0_notAfter(x), when, sizeof(when));
        snprintf(err, errlen, "certificate %s: expired (notAfter %s)", f->cert, when);
        return false;
    }
    if (before > 0) {
        time_text(X509_get0_notBefore(x), when, sizeof(when));
        snprintf(err, errlen, "certificate %s: not valid yet (notBefore %s)", f->cert, when);
        return false;
    }
    *key_fault = true;
    FILE *kf = fopen(f->key, "r");
    if (kf == NULL) {
        snprintf(err, errlen, "certificate_key %s: cannot open: %s", f->key, strerror(errno));
        return false;
    }
    EVP_PKEY *pkey = PEM_read_PrivateKey(kf, NULL, no_passphrase, NULL);
    fclose(kf);
    if (pkey == NULL) {
        fg_tls_error(err, errlen, "certificate_key %s: not an unencrypted PEM private key", f->key);
        return false;
    }
    bool ok = false;
    if (X509_check_private_key(x, pkey) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "certificate_key %s: does not match certificate %s", f->key, f->cert);
    } else if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1) {
        fg_tls_error(err, errlen, "certificate_key %s: rejected", f->key);
    } else {
        ok = true;
    }
    EVP_PKEY_free(pkey);
    return ok;
}

static SSL_CTX *ctx_new(const struct fg_tls_server_opts *o, size_t i, char *err, size_t errlen)
{
    const struct fg_tls_cert_files *f = &o->certs[i];
    bool key_fault = false;
    static const unsigned char sid_ctx[] = "flashgate";
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        fg_tls_error(err, errlen, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    if (!fg_tls_ctx_common(ctx, o->min_version, o->ciphers, err, errlen))
        goto fail;
    if (!load_pair(ctx, f, &key_fault, err, errlen)) {
        if (o->blame != NULL)
            *o->blame = (struct fg_tls_cert_blame){.pair = i, .key = key_fault};
        goto fail;
    }
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* The chain is what the file holds: no chain building from the store on every
     * handshake (it costs about as much as a certificate check). */
    SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN);
    if (SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1) != 1) {
        fg_tls_error(err, errlen, "cannot set the session id context");
        goto fail;
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, o->session_cache_size > 0 ? o->session_cache_size : 20480);
    SSL_CTX_set_timeout(ctx, o->session_timeout_s > 0 ? (long)o->session_timeout_s : 3600);
    if (o->ticket_keys != NULL) {
        if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb) != 1) {
            fg_tls_error(err, errlen, "cannot install the ticket key callback");
            goto fail;
        }
    } else {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
    SSL_CTX_set_tlsext_servername_callback(ctx, sni_cb);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

struct fg_tls_server *fg_tls_server_new(const struct fg_tls_server_opts *o, char *err,
                                        size_t errlen)
{
    if (o->blame != NULL)
        *o->blame = (struct fg_tls_cert_blame){.pair = SIZE_MAX};
    if (o->n_certs == 0 || o->certs == NULL) {
        snprintf(err, errlen, "TLS listener without a certificate");
        return NULL;
    }
    if (server_ex_index() < 0) {
        fg_tls_error(err, errlen, "cannot allocate an OpenSSL ex_data index");
        return NULL;
    }
    struct fg_tls_server *s = calloc(1, sizeof(*s));
    if (s != NULL) {
        s->ctx = calloc(o->n_certs, sizeof(s->ctx[0]));
        s->leaf = calloc(o->n_certs, sizeof(s->leaf[0]));
    }
    if (s == NULL || s->ctx == NULL || s->leaf == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    s->magic = SERVER_MAGIC;
    atomic_init(&s->refs, 1);
    for (; s->n < o->n_certs; s->n++) {
        s->ctx[s->n] = ctx_new(o, s->n, err, errlen);
        if (s->ctx[s->n] == NULL)
            goto fail;
        s->leaf[s->n] = SSL_CTX_get0_certificate(s->ctx[s->n]);
    }
    if (o->ticket_keys != NULL)
        s->keys = fg_tls_ticket_keys_ref(o->ticket_keys);
    return s;
fail:
    if (s != NULL) {
        for (size_t i = 0; i < s->n; i++)
            SSL_CTX_free(s->ctx[i]);
        free(s->ctx);
        free(s->leaf);
        free(s);
    }
    return NULL;
}

bool fg_tls_server_reload(struct fg_tls_server **cur, const struct fg_tls_server_opts *o, char *err,
                          size_t errlen)
{
    struct fg_tls_server *fresh = fg_tls_server_new(o, err, errlen);
    if (fresh == NULL)
        return false;
    fg_tls_server_unref(*cur);
    *cur = fresh;
    return true;
}

struct fg_tls_server *fg_tls_server_ref(struct fg_tls_server *s)
{
    FG_ASSERT(s->magic == SERVER_MAGIC);
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void fg_tls_server_unref(struct fg_tls_server *s)
{
    if (s == NULL)
        return;
    FG_ASSERT(s->magic == SERVER_MAGIC);
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < s->n; i++)
        SSL_CTX_free(s->ctx[i]);
    fg_tls_ticket_keys_unref(s->keys);
    free(s->ctx);
    free(s->leaf);
    s->magic = 0;
    free(s);
}

size_t fg_tls_server_n_certs(const struct fg_tls_server *s)
{
    FG_ASSERT(s->magic == SERVER_MAGIC);
    return s->n;
}

SSL_CTX *fg_tls_server_ctx(const struct fg_tls_server *s, size_t i)
{
    FG_ASSERT(s->magic == SERVER_MAGIC && i < s->n);
    return s->ctx[i];
}

size_t fg_tls_server_select(const struct fg_tls_server *s, const char *name)
{
    FG_ASSERT(s->magic == SERVER_MAGIC);
    if (name == NULL || name[0] == '\0' || s->n == 1)
        return 0;
    size_t len = strlen(name);
    /* X509_check_host: DNS SANs, the CN only without any; a wildcard covers one label. */
    const unsigned int passes[] = {X509_CHECK_FLAG_NO_WILDCARDS,
                                   X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS};
    for (size_t p = 0; p < FG_ARRAY_LEN(passes); p++) {
        for (size_t i = 0; i < s->n; i++) {
            if (X509_check_host(s->leaf[i], name, len, passes[p], NULL) == 1)
                return i;
        }
    }
    ERR_clear_error();
    return 0;
}

SSL *fg_tls_server_ssl_new(struct fg_tls_server *s)
{
    FG_ASSERT(s->magic == SERVER_MAGIC);
    SSL *ssl = SSL_new(s->ctx[0]);
    if (ssl == NULL)
        return NULL;
    if (SSL_set_ex_data(ssl, server_ex_index(), fg_tls_server_ref(s)) != 1) {
        fg_tls_server_unref(s);
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}
