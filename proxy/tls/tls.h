/*
 * tls.h — flashgate's TLS contexts on OpenSSL 3: what a listener needs to terminate TLS,
 * what an upstream or the agent needs to speak it, and the counters both feed.
 *
 * Four parts, one header:
 *  - ticket keys (tickets.c): the keys that encrypt session tickets. A current key
 *    encrypts, the previous ones still decrypt; the owner rotates them on a schedule by
 *    calling fg_tls_ticket_keys_rotate() with the time. They come from RAND_bytes and live
 *    only in memory. One key ring outlives configuration reloads, so a reload does not
 *    cost every client a full handshake.
 *  - server contexts (server.c): one SSL_CTX per certificate, the certificate picked by
 *    SNI, TLS 1.2 and 1.3 only, ECDHE+AEAD ciphers for 1.2, ALPN http/1.1, a server
 *    session cache and tickets. Everything is checked at load; a failed load returns an
 *    error message and never touches the context in use.
 *  - client contexts (client.c): verification on unless explicitly turned off, SNI, a
 *    hostname check and a per-host session cache so pooled reconnects resume.
 *  - statistics (stats.c): handshakes, resumptions, failures by reason, protocol and
 *    cipher counts, one set for the server side and one for the client side.
 *
 * Lifetimes: fg_tls_server and fg_tls_client are reference counted. Every SSL made by
 * fg_tls_server_ssl_new()/fg_tls_client_ssl_new() holds a reference that SSL_free()
 * drops, so a context released after a reload stays alive exactly as long as the last
 * connection that uses it. Both are immutable after creation (apart from the client's
 * session cache, which has its own lock) and may be shared by every worker thread.
 *
 * This module makes SSL objects only; the connection code hands them to
 * bufferevent_openssl_socket_new() and calls fg_tls_handshake_done() once per connection.
 */
#ifndef FG_TLS_H
#define FG_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

/* ---- ticket keys -------------------------------------------------------------------- */

/* The most keys a ring keeps: the current one and up to FG_TLS_TICKET_KEYS_MAX - 1
 * previous ones. */
#define FG_TLS_TICKET_KEYS_MAX 4

struct fg_tls_ticket_keys;

/* A new key ring with one fresh key, rotated every rotate_every_s seconds (> 0), keeping
 * keep_previous (0 .. FG_TLS_TICKET_KEYS_MAX - 1) older keys for decryption. now: Unix
 * seconds. Returns NULL with a message in err when the arguments are out of range or the
 * random generator fails. */
struct fg_tls_ticket_keys *fg_tls_ticket_keys_new(uint64_t rotate_every_s, unsigned keep_previous,
                                                  int64_t now, char *err, size_t errlen);

/* Rotate when at least rotate_every_s seconds have passed since the last rotation: a new
 * current key, the old current one becomes the newest previous one, the oldest falls out.
 * Returns 1 when rotated, 0 when not due, -1 when the random generator failed (the keys
 * stay as they were and an error is logged). Safe while handshakes run on other threads. */
int fg_tls_ticket_keys_rotate(struct fg_tls_ticket_keys *k, int64_t now);

/* Rotate now, whatever the schedule (an operator's "forget all tickets" needs
 * keep_previous + 1 of these). Same return values as fg_tls_ticket_keys_rotate. */
int fg_tls_ticket_keys_rotate_force(struct fg_tls_ticket_keys *k, int64_t now);

/* Take a reference. */
struct fg_tls_ticket_keys *fg_tls_ticket_keys_ref(struct fg_tls_ticket_keys *k);

/* Drop a reference; the last one wipes the key material. NULL is ignored. */
void fg_tls_ticket_keys_unref(struct fg_tls_ticket_keys *k);

/* ---- server contexts ------------------------------------------------------------------ */

/* One certificate: a PEM file holding the leaf certificate followed by its chain, and a
 * PEM private key (unencrypted: an encrypted key is refused, never prompted for). */
struct fg_tls_cert_files {
    const char *cert;
    const char *key;
};

/* Which file a failed fg_tls_server_new() is about, so that the config loader can name
 * the line that wrote it (the same key file may be written for several certificates). */
struct fg_tls_cert_blame {
    size_t pair; /* index into certs; SIZE_MAX when no file is at fault (options, memory) */
    bool key;    /* the pair's key (missing, unreadable, not matching) rather than its
                    certificate */
};

struct fg_tls_server_opts {
    const struct fg_tls_cert_files *certs;  /* the first is the default (no or unknown SNI) */
    size_t n_certs;                         /* at least 1 */
    int min_version;                        /* TLS1_2_VERSION (0: default) or TLS1_3_VERSION */
    const char *ciphers;                    /* TLS 1.2 cipher list; NULL: FG_TLS_DEFAULT_CIPHERS */
    struct fg_tls_ticket_keys *ticket_keys; /* NULL: no tickets, the session cache only */
    uint64_t session_timeout_s;             /* 0: 3600 */
    long session_cache_size;                /* 0: 20480 sessions */
    struct fg_tls_cert_blame *blame;        /* NULL, or filled when the build fails */
};

/* ECDHE key exchange and AEAD ciphers only (Mozilla "intermediate" without DHE). */
#define FG_TLS_DEFAULT_CIPHERS                                                                     \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

struct fg_tls_server;

/* Build the server contexts for o: every certificate and key is read, the key checked
 * against its certificate and the certificate's validity period against the clock.
 * Returns NULL with a message naming the file and what is wrong with it in err. */
struct fg_tls_server *fg_tls_server_new(const struct fg_tls_server_opts *o, char *err,
                                        size_t errlen);

/* Replace *cur with contexts built from o. On success the old one is released (live
 * connections keep it until they close) and true is returned; on failure *cur is left
 * exactly as it was and err says why. *cur may be NULL (first load). */
bool fg_tls_server_reload(struct fg_tls_server **cur, const struct fg_tls_server_opts *o, char *err,
                          size_t errlen);

/* Take a reference. */
struct fg_tls_server *fg_tls_server_ref(struct fg_tls_server *s);

/* Drop a reference. NULL is ignored. */
void fg_tls_server_unref(struct fg_tls_server *s);

/* The number of certificates, and the SSL_CTX of certificate i (borrowed). */
size_t fg_tls_server_n_certs(const struct fg_tls_server *s);
SSL_CTX *fg_tls_server_ctx(const struct fg_tls_server *s, size_t i);

/* The index of the certificate served for SNI name (NULL or no match: 0). An exact name
 * wins over a wildcard; a wildcard covers one label; the subject CN counts only for a
 * certificate without DNS names. */
size_t fg_tls_server_select(const struct fg_tls_server *s, const char *name);

/* A server-side SSL for one accepted connection, ready for
 * bufferevent_openssl_socket_new(..., BUFFEREVENT_SSL_ACCEPTING, ...). NULL when OpenSSL
 * is out of memory. */
SSL *fg_tls_server_ssl_new(struct fg_tls_server *s);

/* ---- client contexts ------------------------------------------------------------------ */

struct fg_tls_client_opts {
    const char *name;     /* for log lines: "upstream app", "agent sqs" */
    const char *ca_file;  /* PEM CA bundle; NULL: the system store */
    bool verify_off;      /* explicit "verify off": no certificate check at all (loud) */
    int min_version;      /* as for the server */
    const char *ciphers;  /* TLS 1.2 cipher list; NULL: FG_TLS_DEFAULT_CIPHERS */
    const char *alpn;     /* one protocol to offer ("http/1.1"), or NULL */
    size_t session_slots; /* hosts whose last session is kept; 0: 64 */
};

struct fg_tls_client;

/* Build a client context. With verify_off a warning naming o->name is logged. Returns
 * NULL with a message in err (an unreadable CA file, a bad option). */
struct fg_tls_client *fg_tls_client_new(const struct fg_tls_client_opts *o, char *err,
                                        size_t errlen);

/* Take a reference. */
struct fg_tls_client *fg_tls_client_ref(struct fg_tls_client *c);

/* Drop a reference. NULL is ignored. */
void fg_tls_client_unref(struct fg_tls_client *c);

/* The SSL_CTX (borrowed). */
SSL_CTX *fg_tls_client_ctx(const struct fg_tls_client *c);

/* A client-side SSL for a connection to host (a DNS name or an IP literal), ready for
 * bufferevent_openssl_socket_new(..., BUFFEREVENT_SSL_CONNECTING, ...): SNI set (names
 * only, never IPs), the peer's certificate checked against host, the cached session of
 * session_key (NULL: host) offered for resumption, and any new session the server sends
 * stored under session_key. NULL when OpenSSL is out of memory or host is empty. */
SSL *fg_tls_client_ssl_new(struct fg_tls_client *c, const char *host, const char *session_key);

/* The cached session of key as a new reference (SSL_SESSION_free it), or NULL. */
SSL_SESSION *fg_tls_client_session_get(struct fg_tls_client *c, const char *key);

/* Store sess under key (a reference of its own is taken; a non-resumable session is
 * ignored), or forget key's session when sess is NULL. When every slot is taken the
 * least recently stored host is replaced. */
void fg_tls_client_session_put(struct fg_tls_client *c, const char *key, SSL_SESSION *sess);

/* ---- statistics ----------------------------------------------------------------------- */

enum fg_tls_side { FG_TLS_SERVER = 0, FG_TLS_CLIENT, FG_TLS_SIDES };

enum fg_tls_fail {
    FG_TLS_FAIL_NO_SHARED_CIPHER = 0,
    FG_TLS_FAIL_VERIFY, /* unknown CA, bad certificate, hostname mismatch, expired */
    FG_TLS_FAIL_PROTOCOL_VERSION,
    FG_TLS_FAIL_OTHER,
    FG_TLS_FAIL_COUNT
};

enum fg_tls_proto {
    FG_TLS_PROTO_TLS12 = 0,
    FG_TLS_PROTO_TLS13,
    FG_TLS_PROTO_OTHER,
    FG_TLS_PROTO_COUNT
};

/* Cipher slots: the three TLS 1.3 suites, the six default TLS 1.2 ones, then "other". */
#define FG_TLS_CIPHER_COUNT 10

/* A snapshot of one side's counters. */
struct fg_tls_stats {
    uint64_t handshakes;  /* completed, resumed or not */
    uint64_t resumptions; /* completed with a resumed session */
    uint64_t failures[FG_TLS_FAIL_COUNT];
    uint64_t protocols[FG_TLS_PROTO_COUNT];
    uint64_t ciphers[FG_TLS_CIPHER_COUNT];
};

/* Record how the handshake of ssl ended: completed when SSL_is_init_finished(ssl), failed
 * otherwise, err then being the OpenSSL error of the failure (ERR_get_error(), or
 * bufferevent_get_openssl_error() under libevent; 0 when none is known). Call it once per
 * connection. The side comes from SSL_is_server(). */
void fg_tls_handshake_done(const SSL *ssl, unsigned long err);

/* Why a handshake of ssl failed, from its OpenSSL error and verification result. */
enum fg_tls_fail fg_tls_classify_failure(const SSL *ssl, unsigned long err);

/* Read one side's counters (each is exact; they are not a consistent cut). */
void fg_tls_stats_read(enum fg_tls_side side, struct fg_tls_stats *out);

/* Stat names: "no_shared_cipher", "verify", "protocol_version", "other"; "TLSv1.2",
 * "TLSv1.3", "other"; OpenSSL cipher names and "other". */
const char *fg_tls_fail_name(enum fg_tls_fail f);
const char *fg_tls_proto_name(enum fg_tls_proto p);
const char *fg_tls_cipher_name(size_t i);

#endif /* FG_TLS_H */
