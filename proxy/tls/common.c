/*
 * common.c — the settings server and client contexts share, and OpenSSL's errors turned
 * into one readable message.
 */
#include "tls/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

void fg_tls_error(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0) {
        ERR_clear_error();
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    /* The first error queued is the cause; later ones are the callers giving up. */
    unsigned long e = ERR_get_error();
    if (e != 0 && n >= 0 && (size_t)n < errlen) {
        const char *reason = ERR_reason_error_string(e);
        char buf[256];
        if (reason == NULL) {
            ERR_error_string_n(e, buf, sizeof(buf));
            reason = buf;
        }
        snprintf(err + n, errlen - (size_t)n, ": %s", reason);
    }
    ERR_clear_error();
}

bool fg_tls_ctx_common(SSL_CTX *ctx, int min_version, const char *ciphers, char *err, size_t errlen)
{
    if (min_version == 0)
        min_version = TLS1_2_VERSION;
    if (min_version != TLS1_2_VERSION && min_version != TLS1_3_VERSION) {
        snprintf(err, errlen, "minimum TLS version must be TLS 1.2 or TLS 1.3");
        return false;
    }
    if (SSL_CTX_set_min_proto_version(ctx, min_version) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) {
        fg_tls_error(err, errlen, "cannot set the TLS version range");
        return false;
    }
    /* TLS 1.3 suites stay OpenSSL's defaults: all three are AEAD with ephemeral keys. */
    const char *list = ciphers != NULL ? ciphers : FG_TLS_DEFAULT_CIPHERS;
    if (SSL_CTX_set_cipher_list(ctx, list) != 1) {
        fg_tls_error(err, errlen, "bad TLS 1.2 cipher list \"%s\"", list);
        return false;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* libevent may retry a write from a buffer that has moved meanwhile. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return true;
}
