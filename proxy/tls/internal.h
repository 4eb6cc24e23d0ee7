/*
 * internal.h — what the tls module's files share and nobody else sees.
 */
#ifndef FG_TLS_INTERNAL_H
#define FG_TLS_INTERNAL_H

#include "tls/tls.h"

#include <openssl/evp.h>

/* The body of the ticket key callback (SSL_CTX_set_tlsext_ticket_key_evp_cb): enc 1
 * picks the current key, names it and sets up ctx/hctx for encryption; enc 0 looks the
 * name up and sets them up for decryption. Returns what OpenSSL expects: 1 (ok), 2 (ok,
 * but issue a fresh ticket: an old key was used), 0 (unknown key: full handshake), -1
 * (error). */
int fg_tls_ticket_keys_crypt(struct fg_tls_ticket_keys *k, unsigned char name[16],
                             unsigned char *iv, EVP_CIPHER_CTX *ctx, EVP_MAC_CTX *hctx, int enc);

/* Write "what: <OpenSSL's reason>" into err, and empty the error queue. */
void fg_tls_error(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Apply the settings both sides share: protocol range, TLS 1.2 ciphers, modes. */
bool fg_tls_ctx_common(SSL_CTX *ctx, int min_version, const char *ciphers, char *err,
                       size_t errlen);

#endif /* FG_TLS_INTERNAL_H */
