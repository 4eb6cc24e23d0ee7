/*
 * stats.c — handshake counters, one set per side, shared by every worker (atomic adds:
 * handshakes are rare next to requests, so the locked add costs nothing that shows).
 * They live in the module, not in a context, so they survive certificate reloads.
 */
#include "tls/internal.h"
#include "core/core.h"

#include <stdatomic.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

struct counters {
    _Atomic uint64_t handshakes, resumptions;
    _Atomic uint64_t failures[FG_TLS_FAIL_COUNT];
    _Atomic uint64_t protocols[FG_TLS_PROTO_COUNT];
    _Atomic uint64_t ciphers[FG_TLS_CIPHER_COUNT];
};

static struct counters sides[FG_TLS_SIDES];

static const char *const cipher_names[FG_TLS_CIPHER_COUNT] = {
    "TLS_AES_128_GCM_SHA256",       "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",  "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",  "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",  "other",
};

static void bump(_Atomic uint64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

enum fg_tls_fail fg_tls_classify_failure(const SSL *ssl, unsigned long err)
{
    if (ERR_GET_LIB(err) == ERR_LIB_SSL) {
        switch (ERR_GET_REASON(err)) {
        case SSL_R_NO_SHARED_CIPHER:
            return FG_TLS_FAIL_NO_SHARED_CIPHER;
        case SSL_R_CERTIFICATE_VERIFY_FAILED:
        case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
        case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
        case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
        case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
        case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
        case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
            return FG_TLS_FAIL_VERIFY;
        case SSL_R_UNSUPPORTED_PROTOCOL:
        case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
        case SSL_R_WRONG_VERSION_NUMBER:
        case SSL_R_VERSION_TOO_LOW:
        case SSL_R_VERSION_TOO_HIGH:
        case SSL_R_NO_PROTOCOLS_AVAILABLE:
        case SSL_R_UNSUPPORTED_SSL_VERSION:
            return FG_TLS_FAIL_PROTOCOL_VERSION;
        default:
            break;
        }
    }
    /* A client that refused the peer's certificate, whatever error got queued. */
    if (ssl != NULL && !SSL_is_server(ssl) && SSL_get_verify_mode(ssl) != SSL_VERIFY_NONE &&
        SSL_get_verify_result(ssl) != X509_V_OK)
        return FG_TLS_FAIL_VERIFY;
    return FG_TLS_FAIL_OTHER;
}

static size_t cipher_slot(const SSL *ssl)
{
    const char *name = SSL_CIPHER_get_name(SSL_get_current_cipher(ssl));
    for (size_t i = 0; name != NULL && i + 1 < FG_TLS_CIPHER_COUNT; i++) {
        if (strcmp(name, cipher_names[i]) == 0)
            return i;
    }
    return FG_TLS_CIPHER_COUNT - 1;
}

void fg_tls_handshake_done(const SSL *ssl, unsigned long err)
{
    struct counters *c = &sides[SSL_is_server(ssl) ? FG_TLS_SERVER : FG_TLS_CLIENT];
    if (!SSL_is_init_finished(ssl)) {
        bump(&c->failures[fg_tls_classify_failure(ssl, err)]);
        return;
    }
    bump(&c->handshakes);
    if (SSL_session_reused(ssl))
        bump(&c->resumptions);
    int v = SSL_version(ssl);
    bump(&c->protocols[v == TLS1_2_VERSION   ? FG_TLS_PROTO_TLS12
                       : v == TLS1_3_VERSION ? FG_TLS_PROTO_TLS13
                                             : FG_TLS_PROTO_OTHER]);
    bump(&c->ciphers[cipher_slot(ssl)]);
}

void fg_tls_stats_read(enum fg_tls_side side, struct fg_tls_stats *out)
{
    FG_ASSERT(side < FG_TLS_SIDES);
    const struct counters *c = &sides[side];
    out->handshakes = atomic_load_explicit(&c->handshakes, memory_order_relaxed);
    out->resumptions = atomic_load_explicit(&c->resumptions, memory_order_relaxed);
    for (size_t i = 0; i < FG_TLS_FAIL_COUNT; i++)
        out->failures[i] = atomic_load_explicit(&c->failures[i], memory_order_relaxed);
    for (size_t i = 0; i < FG_TLS_PROTO_COUNT; i++)
        out->protocols[i] = atomic_load_explicit(&c->protocols[i], memory_order_relaxed);
    for (size_t i = 0; i < FG_TLS_CIPHER_COUNT; i++)
        out->ciphers[i] = atomic_load_explicit(&c->ciphers[i], memory_order_relaxed);
}

const char *fg_tls_fail_name(enum fg_tls_fail f)
{
    static const char *const names[FG_TLS_FAIL_COUNT] = {"no_shared_cipher", "verify",
                                                         "protocol_version", "other"};
    return (unsigned)f < FG_TLS_FAIL_COUNT ? names[f] : "other";
}

const char *fg_tls_proto_name(enum fg_tls_proto p)
{
    static const char *const names[FG_TLS_PROTO_COUNT] = {"TLSv1.2", "TLSv1.3", "other"};
    return (unsigned)p < FG_TLS_PROTO_COUNT ? names[p] : "other";
}

const char *fg_tls_cipher_name(size_t i)
{
    return i < FG_TLS_CIPHER_COUNT ? cipher_names[i] : "other";
}
