/*
 * test_tls.c — the tls module against real handshakes.
 *
 * Certificates are made at test time with the openssl CLI in a mkdtemp directory: a CA,
 * shop.test + *.shop.test and other.test signed by it, legacy.test (CN only, no SAN),
 * an expired one, a self-signed shop.test nobody trusts. Each handshake runs over a
 * socketpair, the server side in a thread, both blocking with 5 s socket timeouts so a
 * bug fails the test instead of hanging it. The client sends "ping", the server answers
 * "pong": reading it makes the client process TLS 1.3 tickets, sent after the handshake.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "core/core.h"
#include "tls/tls.h"

#define OPENSSL_BIN "/usr/bin/openssl"

static char dir[64];

enum fixture {
    CA_PEM,
    SHOP_CHAIN,
    SHOP_KEY,
    OTHER_PEM,
    OTHER_KEY,
    LEGACY_PEM,
    LEGACY_KEY,
    EXPIRED_PEM,
    EXPIRED_KEY,
    SELF_PEM,
    SELF_KEY,
    GARBAGE_PEM,
    MISSING_PEM,
    N_FIXTURES
};
static const char *const fixture_names[N_FIXTURES] = {
    "ca.pem",     "shop-chain.pem", "shop.key",    "other.pem",   "other.key",
    "legacy.pem", "legacy.key",     "expired.pem", "expired.key", "self.pem",
    "self.key",   "garbage.pem",    "missing.pem"};
static char paths[N_FIXTURES][128];

static const char *fx(enum fixture f)
{
    return paths[f];
}

/* ---- certificates ------------------------------------------------------------------ */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[2048];
    int n = snprintf(cmd, sizeof(cmd), "cd '%s' && (", dir);
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(cmd + n, sizeof(cmd) - (size_t)n, fmt, ap);
    va_end(ap);
    snprintf(cmd + n, sizeof(cmd) - (size_t)n, ") >>openssl.log 2>&1");
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "test_tls: command failed (see %s/openssl.log): %s\n", dir, cmd);
    return rc;
}

#define EC_KEY_OPTS "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

/* A certificate for cn signed by the CA, with SAN san (NULL: none), valid for days. */
static int ca_signed(const char *name, const char *cn, const char *san, int days, int serial)
{
    if (sh("printf 'basicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n%s%s%s' > %s.ext",
           san ? "subjectAltName=" : "", san ? san : "", san ? "\\n" : "", name) != 0)
        return -1;
    return sh(OPENSSL_BIN " req -new " EC_KEY_OPTS
                          " -keyout %s.key -out %s.csr -subj /CN=%s && " OPENSSL_BIN
                          " x509 -req -in %s.csr -CA ca.pem -CAkey ca.key -set_serial %d -days %d "
                          "-extfile %s.ext -out %s.pem",
              name, name, cn, name, serial, days, name, name);
}

static int make_certs(void)
{
    if (sh(OPENSSL_BIN " req -x509 " EC_KEY_OPTS " -keyout ca.key -out ca.pem -days 30 "
                       "-subj '/CN=flashgate test CA' -addext basicConstraints=critical,CA:TRUE "
                       "-addext keyUsage=critical,keyCertSign,cRLSign") != 0)
        return -1;
    if (ca_signed("shop", "shop.test", "DNS:shop.test,DNS:*.shop.test", 30, 2) != 0 ||
        ca_signed("other", "other.test", "DNS:other.test", 30, 3) != 0 ||
        ca_signed("legacy", "legacy.test", NULL, 30, 4) != 0 ||
        ca_signed("expired", "expired.test", "DNS:expired.test", -1, 5) != 0)
        return -1;
    /* the chain file: leaf first, then the issuer */
    if (sh("cat shop.pem ca.pem > shop-chain.pem") != 0)
        return -1;
    if (sh(OPENSSL_BIN " req -x509 " EC_KEY_OPTS " -keyout self.key -out self.pem -days 30 "
                       "-subj /CN=shop.test -addext subjectAltName=DNS:shop.test") != 0)
        return -1;
    return sh("echo 'this is not a certificate' > garbage.pem");
}

static int group_setup(void **state)
{
    (void)state;
    if (access(OPENSSL_BIN, X_OK) != 0) {
        fprintf(stderr,
                "test_tls: FAIL: %s is missing: the tests make their certificates "
                "with the openssl command-line tool (Debian package 'openssl')\n",
                OPENSSL_BIN);
        return -1;
    }
    snprintf(dir, sizeof(dir), "/tmp/fg-tls-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        perror("test_tls: mkdtemp");
        return -1;
    }
    for (size_t i = 0; i < N_FIXTURES; i++)
        snprintf(paths[i], sizeof(paths[i]), "%s/%s", dir, fixture_names[i]);
    if (make_certs() != 0) {
        fprintf(stderr, "test_tls: FAIL: could not make the test certificates\n");
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- handshakes -------------------------------------------------------------------- */

struct peer {
    SSL *ssl;
    int fd;
    bool ok;           /* handshake and ping/pong completed */
    unsigned long err; /* first OpenSSL error on failure */
    int version;       /* SSL_version */
    bool reused;       /* SSL_session_reused */
    char alpn[32];     /* selected protocol, "" if none */
    char subject[256]; /* the peer's certificate subject (client side) */
    char cipher[64];
    long verify; /* SSL_get_verify_result (client side) */
};

static void set_timeouts(int fd)
{
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static void finish(struct peer *p, bool done)
{
    if (!done)
        p->err = ERR_peek_error();
    fg_tls_handshake_done(p->ssl, p->err);
    ERR_clear_error();
    p->version = SSL_version(p->ssl);
    p->reused = SSL_session_reused(p->ssl);
    const unsigned char *a;
    unsigned int alen;
    SSL_get0_alpn_selected(p->ssl, &a, &alen);
    snprintf(p->alpn, sizeof(p->alpn), "%.*s", (int)alen, a ? (const char *)a : "");
    X509 *x = SSL_get0_peer_certificate(p->ssl);
    if (x != NULL)
        X509_NAME_oneline(X509_get_subject_name(x), p->subject, sizeof(p->subject));
    snprintf(p->cipher, sizeof(p->cipher), "%s", SSL_get_cipher_name(p->ssl));
    p->verify = SSL_get_verify_result(p->ssl);
}

static void *server_main(void *arg)
{
    struct peer *p = arg;
    char buf[4];
    bool done = SSL_accept(p->ssl) == 1;
    if (done)
        p->ok = SSL_read(p->ssl, buf, 4) == 4 && memcmp(buf, "ping", 4) == 0 &&
                SSL_write(p->ssl, "pong", 4) == 4;
    finish(p, done);
    if (p->ok)
        SSL_shutdown(p->ssl);
    shutdown(p->fd, SHUT_RDWR); /* a failed side hangs up: the other never waits */
    return NULL;
}

/* Run one handshake between srv and cli (both freed). */
static void handshake(SSL *srv, SSL *cli, struct peer *sp, struct peer *cp)
{
    int fds[2];
    assert_non_null(srv);
    assert_non_null(cli);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    set_timeouts(fds[0]);
    set_timeouts(fds[1]);
    memset(sp, 0, sizeof(*sp));
    memset(cp, 0, sizeof(*cp));
    sp->ssl = srv;
    sp->fd = fds[0];
    cp->ssl = cli;
    cp->fd = fds[1];
    SSL_set_fd(srv, fds[0]);
    SSL_set_fd(cli, fds[1]);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, server_main, sp), 0);
    char buf[4];
    bool done = SSL_connect(cli) == 1;
    if (done)
        cp->ok = SSL_write(cli, "ping", 4) == 4 && SSL_read(cli, buf, 4) == 4 &&
                 memcmp(buf, "pong", 4) == 0;
    finish(cp, done);
    if (cp->ok)
        SSL_shutdown(cli);
    shutdown(fds[1], SHUT_RDWR);
    pthread_join(t, NULL);
    SSL_free(srv);
    SSL_free(cli);
    close(fds[0]);
    close(fds[1]);
    sp->ssl = cp->ssl = NULL;
}

/* ---- contexts ---------------------------------------------------------------------- */

static struct fg_tls_server *server_of(const enum fixture *pairs, size_t n,
                                       struct fg_tls_ticket_keys *keys)
{
    struct fg_tls_cert_files files[4];
    for (size_t i = 0; i < n; i++) {
        files[i].cert = fx(pairs[2 * i]);
        files[i].key = fx(pairs[2 * i + 1]);
    }
    struct fg_tls_server_opts o = {.certs = files, .n_certs = n, .ticket_keys = keys};
    char err[512] = "";
    struct fg_tls_server *s = fg_tls_server_new(&o, err, sizeof(err));
    if (s == NULL)
        fail_msg("fg_tls_server_new: %s", err);
    return s;
}

static struct fg_tls_server *shop_server(struct fg_tls_ticket_keys *keys)
{
    static const enum fixture pairs[] = {SHOP_CHAIN, SHOP_KEY, OTHER_PEM, OTHER_KEY};
    return server_of(pairs, 2, keys);
}

static struct fg_tls_client *ca_client(void)
{
    struct fg_tls_client_opts o = {
        .name = "test upstream", .ca_file = fx(CA_PEM), .alpn = "http/1.1"};
    char err[512] = "";
    struct fg_tls_client *c = fg_tls_client_new(&o, err, sizeof(err));
    if (c == NULL)
        fail_msg("fg_tls_client_new: %s", err);
    return c;
}

/* A bare OpenSSL client, for what our own client refuses to do. */
static SSL *raw_client(int min, int max, const char *ciphers, const char *sni,
                       const unsigned char *alpn, unsigned alpn_len)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    if (min < TLS1_2_VERSION) {
        /* OpenSSL 3 refuses TLS 1.0/1.1 at security level 1 and above (Debian's default
         * is 2): level 0 makes the client offer them, so the refusal we see is ours. */
        SSL_CTX_set_security_level(ctx, 0);
    }
    assert_int_equal(SSL_CTX_set_min_proto_version(ctx, min), 1);
    assert_int_equal(SSL_CTX_set_max_proto_version(ctx, max), 1);
    if (ciphers != NULL)
        assert_int_equal(SSL_CTX_set_cipher_list(ctx, ciphers), 1);
    if (alpn != NULL)
        assert_int_equal(SSL_CTX_set_alpn_protos(ctx, alpn, alpn_len), 0);
    SSL *ssl = SSL_new(ctx);
    SSL_CTX_free(ctx); /* the SSL holds its own reference */
    assert_non_null(ssl);
    if (sni != NULL)
        assert_int_equal(SSL_set_tlsext_host_name(ssl, sni), 1);
    return ssl;
}

static struct fg_tls_stats stats(enum fg_tls_side side)
{
    struct fg_tls_stats s;
    fg_tls_stats_read(side, &s);
    return s;
}

static size_t cipher_index(const char *name)
{
    for (size_t i = 0; i < FG_TLS_CIPHER_COUNT; i++) {
        if (strcmp(fg_tls_cipher_name(i), name) == 0)
            return i;
    }
    return FG_TLS_CIPHER_COUNT - 1;
}

/* ---- tests ------------------------------------------------------------------------- */

/* TLS 1.3 with a verified chain, SNI and ALPN, and every counter it should move. */
static void test_tls13_handshake(void **state)
{
    (void)state;
    struct fg_tls_server *s = shop_server(NULL);
    struct fg_tls_client *c = ca_client();
    struct fg_tls_stats s0 = stats(FG_TLS_SERVER), c0 = stats(FG_TLS_CLIENT);
    struct peer sp, cp;
    handshake(fg_tls_server_ssl_new(s), fg_tls_client_ssl_new(c, "shop.test", NULL), &sp, &cp);
    assert_true(sp.ok && cp.ok);
    assert_int_equal(cp.version, TLS1_3_VERSION);
    assert_int_equal(cp.verify, X509_V_OK);
    assert_string_equal(cp.subject, "/CN=shop.test");
    assert_string_equal(sp.alpn, "http/1.1");
    assert_string_equal(cp.alpn, "http/1.1");
    assert_false(cp.reused);
    struct fg_tls_stats s1 = stats(FG_TLS_SERVER), c1 = stats(FG_TLS_CLIENT);
    assert_int_equal(s1.handshakes, s0.handshakes + 1);
    assert_int_equal(s1.resumptions, s0.resumptions);
    assert_int_equal(s1.protocols[FG_TLS_PROTO_TLS13], s0.protocols[FG_TLS_PROTO_TLS13] + 1);
    size_t ci = cipher_index(sp.cipher);
    assert_true(ci < FG_TLS_CIPHER_COUNT - 1); /* a TLS 1.3 suite has a slot of its own */
    assert_int_equal(s1.ciphers[ci], s0.ciphers[ci] + 1);
    assert_int_equal(c1.handshakes, c0.handshakes + 1);
    assert_int_equal(c1.protocols[FG_TLS_PROTO_TLS13], c0.protocols[FG_TLS_PROTO_TLS13] + 1);
    fg_tls_client_unref(c);
    fg_tls_server_unref(s);
}

/* TLS 1.2 negotiates an ECDHE + AEAD suite from our list. */
static void test_tls12_handshake(void **state)
{
    (void)state;
    struct fg_tls_server *s = shop_server(NULL);
    struct fg_tls_client *c = ca_client();
    struct fg_tls_stats s0 = stats(FG_TLS_SERVER);
    SSL *cli = fg_tls_client_ssl_new(c, "shop.test", "tls12");
    assert_int_equal(SSL_set_max_proto_version(cli, TLS1_2_VERSION), 1);
    struct peer sp, cp;
    handshake(fg_tls_server_ssl_new(s), cli, &sp, &cp);
    assert_true(sp.ok && cp.ok);
    assert_int_equal(sp.version, TLS1_2_VERSION);
    assert_string_equal(sp.cipher, "ECDHE-ECDSA-AES128-GCM-SHA256");
    assert_string_equal(cp.alpn, "http/1.1");
    struct fg_tls_stats s1 = stats(FG_TLS_SERVER);
    assert_int_equal(s1.protocols[FG_TLS_PROTO_TLS12], s0.protocols[FG_TLS_PROTO_TLS12] + 1);
    size_t ci = cipher_index("ECDHE-ECDSA-AES128-GCM-SHA256");
    assert_int_equal(s1.ciphers[ci], s0.ciphers[ci] + 1);
    fg_tls_client_unref(c);
    fg_tls_server_unref(s);
}

/* A client that speaks at most TLS 1.1 (or 1.0) is refused, counted as a version failure. */
static void test_old_versions_refused(void **state)
{
    (void)state;
    struct fg_tls_server *s = shop_server(NULL);
    const int versions[] = {TLS1_1_VERSION, TLS1_VERSION};
    for (size_t i = 0; i < FG_ARRAY_LEN(versions); i++) {
        struct fg_tls_stats s0 = stats(FG_TLS_SERVER);
        struct peer sp, cp;
        handshake(
            fg_tls_server_ssl_new(s),
            raw_client(TLS1_VERSION, versions[i], "DEFAULT:@SECLEVEL=0", "shop.test", NULL, 0), &sp,
            &cp);
        assert_false(sp.ok);
        assert_false(cp.ok);
        assert_int_equal(fg_tls_classify_failure(NULL, sp.err), FG_TLS_FAIL_PROTOCOL_VERSION);
        struct fg_tls_stats s1 = stats(FG_TLS_SERVER);
        assert_int_equal(s1.failures[FG_TLS_FAIL_PROTOCOL_VERSION],
                         s0.failures[FG_TLS_FAIL_PROTOCOL_VERSION] + 1);
        assert_int_equal(s1.handshakes, s0.handshakes);
    }
    /* a TLS 1.3-only listener refuses TLS 1.2 the same way */
    struct fg_tls_cert_files f = {fx(SHOP_CHAIN), fx(SHOP_KEY)};
    struct fg_tls_server_opts o = {.certs = &f, .n_certs = 1, .min_version = TLS1_3_VERSION};
    char err[256];
    struct fg_tls_server *s13 = fg_tls_server_new(&o, err, sizeof(err));
    assert_non_null(s13);
    struct peer sp, cp;
    handshake(fg_tls_server_ssl_new(s13),
              raw_client(TLS1_2_VERSION, TLS1_2_VERSION, NULL, NULL, NULL, 0), &sp, &cp);
    assert_false(sp.ok);
    assert_int_equal(fg_tls_classify_failure(NULL, sp.err), FG_TLS_FAIL_PROTOCOL_VERSION);
    fg_tls_server_unref(s13);
    fg_tls_server_unref(s);
}

/* No TLS 1.2 suite in common (the client offers only RSA key exchange). */
static void test_no_shared_cipher(void **state)
{
    (void)state;
    struct fg_tls_server *s = shop_server(NULL);
    struct fg_tls_stats s0 = stats(FG_TLS_SERVER);
    struct peer sp, cp;
    handshake(
        fg_tls_server_ssl_new(s),
        raw_client(TLS1_2_VERSION, TLS1_2_VERSION, "AES128-SHA:AES256-GCM-SHA384", NULL, NULL, 0),
        &sp, &cp);
    assert_false(sp.ok || cp.ok);
    struct fg_tls_stats s1 = stats(FG_TLS_SERVER);
    assert_int_equal(s1.failures[FG_TLS_FAIL_NO_SHARED_CIPHER],
                     s0.failures[FG_TLS_FAIL_NO_SHARED_CIPHER] + 1);
    fg_tls_server_unref(s);
}

/* SNI: exact names, one-label wildcards, CN only without SAN, else the first certificate. */
static void test_sni_selection(void **state)
{
    (void)state;
    static const enum fixture pairs[] = {OTHER_PEM, OTHER_KEY,  SHOP_CHAIN,
                                         SHOP_KEY,  LEGACY_PEM, LEGACY_KEY};
    struct fg_tls_server *s = server_of(pairs, 3, NULL);
    assert_int_equal(fg_tls_server_n_certs(s), 3);
    assert_int_equal(fg_tls_server_select(s, NULL), 0);
    assert_int_equal(fg_tls_server_select(s, ""), 0);
    assert_int_equal(fg_tls_server_select(s, "other.test"), 0);
    assert_int_equal(fg_tls_server_select(s, "shop.test"), 1);
    assert_int_equal(fg_tls_server_select(s, "API.Shop.Test"), 1); /* names are caseless */
    assert_int_equal(fg_tls_server_select(s, "a.b.shop.test"), 0); /* one label only */
    assert_int_equal(fg_tls_server_select(s, "xshop.test"), 0);
    assert_int_equal(fg_tls_server_select(s, "legacy.test"), 2); /* CN, no SAN */
    assert_int_equal(fg_tls_server_select(s, "unknown.test"), 0);

    const struct {
        const char *sni, *subject;
    } cases[] = {
        {"api.shop.test", "/CN=shop.test"}, {"legacy.test", "/CN=legacy.test"},
        {"other.test", "/CN=other.test"},   {NULL, "/CN=other.test"},
        {"nobody.test", "/CN=other.test"},
    };
    for (size_t i = 0; i < FG_ARRAY_LEN(cases); i++) {
        struct peer sp, cp;
        handshake(fg_tls_server_ssl_new(s),
                  raw_client(TLS1_2_VERSION, TLS1_3_VERSION, NULL, cases[i].sni, NULL, 0), &sp,
                  &cp);
        assert_true(sp.ok && cp.ok);
        assert_string_equal(cp.subject, cases[i].subject);
    }
    fg_tls_server_unref(s);
}

/* ALPN: http/1.1 is chosen when offered; h2 alone or no ALPN still connects, without ALPN. */
static void test_alpn(void **state)
{
    (void)state;
    struct fg_tls_server *s = shop_server(NULL);
    struct peer sp, cp;
    static const unsigned char both[] = "\x02h2\x08http/1.1";
    static const unsigned char h2[] = "\x02h2";
    handshake(fg_tls_server_ssl_new(s),
              raw_client(TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL, both, sizeof(both) - 1), &sp,
              &cp);
    assert_true(cp.ok);
    assert_string_equal(cp.alpn, "http/1.1");
    handshake(fg_tls_server_ssl_new(s),
              raw_client(TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL, h2, sizeof(h2) - 1), &sp, &cp);
    assert_true(sp.ok && cp.ok);
    assert_string_equal(cp.alpn, "");
    handshake(fg_tls_server_ssl_new(s),
              raw_client(TLS1_2_VERSION, TLS1_3_VERSION, NULL, NULL, NULL, 0), &sp, &cp);
    assert_true(sp.ok && cp.ok);
    assert_string_equal(sp.alpn, "");
    fg_tls_server_unref(s);
}

/* Resumption by ticket (TLS 1.3), across one key rotation, and not after two. */
static void test_ticket_resumption_and_rotation(void **state)
{
    (void)state;
    const int64_t t0 = 1700000000;
    char err[256];
    struct fg_tls_ticket_keys *k = fg_tls_ticket_keys_new(3600, 1, t0, err, sizeof(err));
    assert_non_null(k);
    struct fg_tls_server *s = shop_server(k);
    struct fg_tls_client *c = ca_client();
    struct peer sp, cp;

    handshake(fg_tls_server_ssl_new(s), fg_tls_client_ssl_new(c, "shop.test", NULL), &sp, &cp);
    assert_true(cp.ok);
    assert_false(cp.reused);
    SSL_SESSION *stored = fg_tls_client_session_get(c, "shop.test"); /* from the ticket */
    assert_non_null(stored);
    SSL_SESSION_free(stored);

    struct fg_tls_stats s0 = stats(FG_TLS_SERVER), c0 = stats(FG_TLS_CLIENT);
    handshake(fg_tls_server_ssl_new(s), fg_tls_client_ssl_new(c, "shop.test", NULL), &sp, &cp);
    assert_true(sp.ok && cp.ok);
    assert_true(cp.reused && sp.reused);
    struct fg_tls_stats s1 = stats(FG_TLS_SERVER), c1 = stats(FG_TLS_CLIENT);
    assert_int_equal(s1.resumptions, s0.resumptions + 1);
    assert_int_equal(s1.handshakes, s0.handshakes + 1);
    assert_int_equal(c1.resumptions, c0.resumptions + 1);

    /* a session whose ticket was made under the first key (renewed by the resumption:
     * OpenSSL's TLS 1.3 client uses a ticket once, so copies are kept for later) */
    SSL_SESSION *cached = fg_tls_client_session_get(c, "shop.test");
    assert_non_null(cached);
    assert_true(SSL_SESSION_is_resumable(cached));
    SSL_SESSION *first = SSL_SESSION_dup(cached), *first_again = SSL_SESSION_dup(cached);
    SSL_SESSION_free(cached);
    assert_non_null(first);
    assert_non_null(first_again);

    assert_int_equal(fg_tls_ticket_keys_rotate(k, t0 + 3599), 0); /* not due yet */
    assert_int_equal(fg_tls_ticket_keys_rotate(k, t0 + 3600), 1);
    fg_tls_client_session_put(c, "shop.test", first);
    SSL_SESSION *got = fg_tls_client_session_get(c, "shop.test");
    assert_ptr_equal(got, first);
    SSL_SESSION_free(got);
    handshake(fg_tls_server_ssl_new(s), fg_tls_client_ssl_new(c, "shop.test", NULL), &sp, &cp);
    assert_true(cp.ok);
    assert_true(cp.reused); /* the previous key still decrypts */

    assert_int_equal(fg_tls_ticket_keys_rotate(k, t0 + 3700), 0); /* period counts from 3600 */
    assert_int_equal(fg_tls_ticket_keys_rotate(k, t0 + 7200), 1);
    /* the ticket renewed by the last handshake (under the second key) still works ... */
    handshake(fg_tls_server_ssl_new(s), fg_tls_client_ssl_new(c, "shop.test", NULL), &sp, &cp);
    assert_true(cp.ok);
    assert_true(cp.reused);
    /* ... the one under the first key, now rotated out, gets a full handshake */
    assert_true(SSL_SESSION_is_resumable(first_again) && SSL_SESSION_has_ticket(first_again));
    fg_tls_client_session_put(c, "shop.test", first_again);
    got = fg_tls_client_session_get(c, "shop.test");
    assert_ptr_equal(got, first_again); /* so it is what the next connection offers */
    SSL_SESSION_free(got);
    handshake(fg_tls_server_ssl_new(s), fg_tls_client_ssl_new(c, "shop.test", NULL), &sp, &cp);
    assert_true(sp.ok && cp.ok);
    assert_false(cp.reused);
    assert_false(sp.reused);
    SSL_SESSION_free(first);
    SSL_SESSION_free(first_again);

    /* a forced rotation, twice, forgets every ticket issued so far */
    assert_int_equal(fg_tls_ticket_keys_rotate_force(k, t0 + 7201), 1);
    assert_int_equal(fg_tls_ticket_keys_rotate_force(k, t0 + 7202), 1);
    handshake(fg_tls_server_ssl_new(s), fg_tls_client_ssl_new(c, "shop.test", NULL), &sp, &cp);
    assert_true(cp.ok);
    assert_false(cp.reused);

    fg_tls_client_unref(c);
    fg_tls_server_unref(s);
    fg_tls_ticket_keys_unref(k);
}

/* TLS 1.2 resumes too, and a server without ticket keys resumes from its session cache. */
static void test_tls12_and_cache_resumption(void **state)
{
    (void)state;
    char err[256];
    struct fg_tls_ticket_keys *k = fg_tls_ticket_keys_new(3600, 1, 0, err, sizeof(err));
    assert_non_null(k);
    struct fg_tls_server *with_keys = shop_server(k);
    struct fg_tls_server *no_keys = shop_server(NULL);
    fg_tls_ticket_keys_unref(k); /* the server holds its own reference */
    struct fg_tls_client *c = ca_client();
    struct fg_tls_server *servers[] = {with_keys, no_keys};
    const int versions[] = {TLS1_2_VERSION, TLS1_3_VERSION};
    for (size_t i = 0; i < 2; i++) {
        for (size_t v = 0; v < 2; v++) {
            char key[32];
            snprintf(key, sizeof(key), "shop-%zu-%zu", i, v);
            for (int round = 0; round < 3; round++) {
                SSL *cli = fg_tls_client_ssl_new(c, "shop.test", key);
                assert_int_equal(SSL_set_max_proto_version(cli, versions[v]), 1);
                struct peer sp, cp;
                handshake(fg_tls_server_ssl_new(servers[i]), cli, &sp, &cp);
                assert_true(sp.ok && cp.ok);
                assert_int_equal(cp.version, versions[v]);
                assert_int_equal(cp.reused, round > 0); /* every reconnect resumes */
            }
        }
    }
    fg_tls_client_unref(c);
    fg_tls_server_unref(with_keys);
    fg_tls_server_unref(no_keys);
}

/* Verification: the CA file is what makes the server trusted, the name must match. */
static void test_client_verification(void **state)
{
    (void)state;
    struct fg_tls_server *shop = shop_server(NULL);
    static const enum fixture self_pair[] = {SELF_PEM, SELF_KEY};
    struct fg_tls_server *self = server_of(self_pair, 1, NULL);
    struct fg_tls_client *c = ca_client();
    struct peer sp, cp;

    struct fg_tls_stats c0 = stats(FG_TLS_CLIENT), s0 = stats(FG_TLS_SERVER);
    handshake(fg_tls_server_ssl_new(self), fg_tls_client_ssl_new(c, "shop.test", NULL), &sp, &cp);
    assert_false(cp.ok || sp.ok);
    assert_int_equal(cp.verify, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT);
    struct fg_tls_stats c1 = stats(FG_TLS_CLIENT), s1 = stats(FG_TLS_SERVER);
    assert_int_equal(c1.failures[FG_TLS_FAIL_VERIFY], c0.failures[FG_TLS_FAIL_VERIFY] + 1);
    assert_int_equal(c1.handshakes, c0.handshakes);
    /* the server hears the client's alert and counts it the same way */
    assert_int_equal(s1.failures[FG_TLS_FAIL_VERIFY], s0.failures[FG_TLS_FAIL_VERIFY] + 1);

    /* the CA-signed certificate for another name */
    handshake(fg_tls_server_ssl_new(shop), fg_tls_client_ssl_new(c, "wrong.test", NULL), &sp, &cp);
    assert_false(cp.ok);
    assert_int_equal(cp.verify, X509_V_ERR_HOSTNAME_MISMATCH);
    struct fg_tls_stats c2 = stats(FG_TLS_CLIENT);
    assert_int_equal(c2.failures[FG_TLS_FAIL_VERIFY], c1.failures[FG_TLS_FAIL_VERIFY] + 1);
    /* nor two labels under the wildcard, nor an address the certificate does not name */
    handshake(fg_tls_server_ssl_new(shop), fg_tls_client_ssl_new(c, "a.b.shop.test", NULL), &sp,
              &cp);
    assert_false(cp.ok);
    handshake(fg_tls_server_ssl_new(shop), fg_tls_client_ssl_new(c, "127.0.0.1", NULL), &sp, &cp);
    assert_false(cp.ok);
    assert_int_equal(cp.verify, X509_V_ERR_IP_ADDRESS_MISMATCH);
    /* the wildcard covers one label */
    handshake(fg_tls_server_ssl_new(shop), fg_tls_client_ssl_new(c, "www.shop.test", NULL), &sp,
              &cp);
    assert_true(cp.ok);

    /* the system store alone does not know our test CA */
    struct fg_tls_client_opts o = {.name = "system store"};
    char err[256];
    struct fg_tls_client *sys = fg_tls_client_new(&o, err, sizeof(err));
    assert_non_null(sys);
    handshake(fg_tls_server_ssl_new(shop), fg_tls_client_ssl_new(sys, "shop.test", NULL), &sp, &cp);
    assert_false(cp.ok);
    assert_int_equal(fg_tls_classify_failure(NULL, cp.err), FG_TLS_FAIL_VERIFY);

    assert_null(fg_tls_client_ssl_new(c, "", NULL));
    fg_tls_client_unref(sys);
    fg_tls_client_unref(c);
    fg_tls_server_unref(self);
    fg_tls_server_unref(shop);
}

/* verify off connects to anything, and says so in the log. */
static void test_verify_off(void **state)
{
    (void)state;
    char log[128];
    snprintf(log, sizeof(log), "%s/warn.log", dir);
    assert_true(fg_log_open(log, FG_LOG_WARN));
    struct fg_tls_client_opts o = {.name = "upstream insecure", .verify_off = true};
    char err[256];
    struct fg_tls_client *c = fg_tls_client_new(&o, err, sizeof(err));
    assert_true(fg_log_open("stderr", FG_LOG_NOTICE));
    assert_non_null(c);
    FILE *f = fopen(log, "r");
    assert_non_null(f);
    char line[1024] = "";
    size_t n = fread(line, 1, sizeof(line) - 1, f);
    line[n] = '\0';
    fclose(f);
    assert_non_null(strstr(line, "[warn]"));
    assert_non_null(strstr(line, "upstream insecure"));
    assert_non_null(strstr(line, "verification is OFF"));

    static const enum fixture self_pair[] = {SELF_PEM, SELF_KEY};
    struct fg_tls_server *self = server_of(self_pair, 1, NULL);
    struct peer sp, cp;
    handshake(fg_tls_server_ssl_new(self), fg_tls_client_ssl_new(c, "whatever.test", NULL), &sp,
              &cp);
    assert_true(sp.ok && cp.ok);
    fg_tls_server_unref(self);
    fg_tls_client_unref(c);
}

static void expect_load_error(struct fg_tls_server **cur, enum fixture cert, enum fixture key,
                              const char *want1, const char *want2)
{
    struct fg_tls_cert_files f = {fx(cert), fx(key)};
    struct fg_tls_server_opts o = {.certs = &f, .n_certs = 1};
    char err[512] = "";
    struct fg_tls_server *before = *cur;
    assert_false(fg_tls_server_reload(cur, &o, err, sizeof(err)));
    assert_ptr_equal(*cur, before);
    if (strstr(err, want1) == NULL || strstr(err, want2) == NULL)
        fail_msg("error \"%s\" lacks \"%s\" or \"%s\"", err, want1, want2);
    assert_null(fg_tls_server_new(&o, err, sizeof(err)));
}

/* A bad certificate on reload leaves the old contexts serving; a good one replaces them
 * while connections made before keep the old certificate. */
static void test_load_errors_keep_previous(void **state)
{
    (void)state;
    struct fg_tls_server *cur = shop_server(NULL);
    expect_load_error(&cur, EXPIRED_PEM, EXPIRED_KEY, "expired.pem: expired", "notAfter");
    expect_load_error(&cur, SHOP_CHAIN, OTHER_KEY, "other.key", "does not match");
    expect_load_error(&cur, MISSING_PEM, SHOP_KEY, "missing.pem: cannot open", "No such file");
    expect_load_error(&cur, SHOP_CHAIN, MISSING_PEM, "certificate_key", "missing.pem");
    expect_load_error(&cur, GARBAGE_PEM, SHOP_KEY, "garbage.pem", "not a valid PEM");
    expect_load_error(&cur, SHOP_CHAIN, GARBAGE_PEM, "garbage.pem", "private key");

    struct fg_tls_client *c = ca_client();
    struct peer sp, cp;
    handshake(fg_tls_server_ssl_new(cur), fg_tls_client_ssl_new(c, "shop.test", NULL), &sp, &cp);
    assert_true(cp.ok);
    assert_string_equal(cp.subject, "/CN=shop.test");

    /* a connection accepted before the reload finishes on the old certificate */
    SSL *early = fg_tls_server_ssl_new(cur);
    struct fg_tls_cert_files f = {fx(OTHER_PEM), fx(OTHER_KEY)};
    struct fg_tls_server_opts o = {.certs = &f, .n_certs = 1};
    char err[512];
    struct fg_tls_server *before = cur;
    assert_true(fg_tls_server_reload(&cur, &o, err, sizeof(err)));
    assert_ptr_not_equal(cur, before);
    handshake(early, fg_tls_client_ssl_new(c, "shop.test", NULL), &sp, &cp);
    assert_true(cp.ok);
    assert_string_equal(cp.subject, "/CN=shop.test");
    handshake(fg_tls_server_ssl_new(cur), fg_tls_client_ssl_new(c, "other.test", NULL), &sp, &cp);
    assert_true(cp.ok);
    assert_string_equal(cp.subject, "/CN=other.test");

    /* no certificate at all, and bad options */
    struct fg_tls_server_opts none = {.n_certs = 0};
    assert_null(fg_tls_server_new(&none, err, sizeof(err)));
    assert_non_null(strstr(err, "without a certificate"));
    struct fg_tls_cert_files good = {fx(SHOP_CHAIN), fx(SHOP_KEY)};
    struct fg_tls_server_opts old = {.certs = &good, .n_certs = 1, .min_version = TLS1_1_VERSION};
    assert_null(fg_tls_server_new(&old, err, sizeof(err)));
    assert_non_null(strstr(err, "TLS 1.2 or TLS 1.3"));
    struct fg_tls_server_opts bad_ciphers = {.certs = &good, .n_certs = 1, .ciphers = "NOPE"};
    assert_null(fg_tls_server_new(&bad_ciphers, err, sizeof(err)));
    assert_non_null(strstr(err, "cipher list"));
    fg_tls_client_unref(c);
    fg_tls_server_unref(cur);
}

/* Client and key-ring construction errors are messages too. */
static void test_client_and_keys_errors(void **state)
{
    (void)state;
    char err[512];
    struct fg_tls_client_opts o = {.name = "agent sqs", .ca_file = fx(MISSING_PEM)};
    assert_null(fg_tls_client_new(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "agent sqs: CA file"));
    assert_non_null(strstr(err, "missing.pem: cannot open"));
    o.ca_file = fx(GARBAGE_PEM);
    assert_null(fg_tls_client_new(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "no usable PEM certificate"));
    o.ca_file = NULL;
    o.alpn = "";
    assert_null(fg_tls_client_new(&o, err, sizeof(err)));
    assert_non_null(strstr(err, "ALPN"));
    assert_null(fg_tls_ticket_keys_new(0, 1, 0, err, sizeof(err)));
    assert_null(fg_tls_ticket_keys_new(60, FG_TLS_TICKET_KEYS_MAX, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "rotation period"));
}

/* The per-host session cache: get/put, replacement of the oldest host, forgetting. */
static void test_client_session_cache(void **state)
{
    (void)state;
    struct fg_tls_client_opts o = {.ca_file = fx(CA_PEM), .session_slots = 2};
    char err[256];
    struct fg_tls_client *c = fg_tls_client_new(&o, err, sizeof(err));
    assert_non_null(c);
    SSL_SESSION *s[3];
    for (int i = 0; i < 3; i++) {
        s[i] = SSL_SESSION_new();
        unsigned char id[8] = {(unsigned char)i, 1, 2, 3, 4, 5, 6, 7};
        assert_int_equal(SSL_SESSION_set1_id(s[i], id, sizeof(id)), 1);
    }
    SSL_SESSION *blank = SSL_SESSION_new(); /* no id, no ticket: not resumable */
    fg_tls_client_session_put(c, "x", blank);
    assert_null(fg_tls_client_session_get(c, "x"));
    SSL_SESSION_free(blank);

    fg_tls_client_session_put(c, "a", s[0]);
    fg_tls_client_session_put(c, "b", s[1]);
    SSL_SESSION *got = fg_tls_client_session_get(c, "a");
    assert_ptr_equal(got, s[0]);
    SSL_SESSION_free(got);
    fg_tls_client_session_put(c, "c", s[2]); /* replaces "a", stored first */
    assert_null(fg_tls_client_session_get(c, "a"));
    got = fg_tls_client_session_get(c, "b");
    assert_ptr_equal(got, s[1]);
    SSL_SESSION_free(got);
    fg_tls_client_session_put(c, "b", s[0]); /* a new session for a known host */
    got = fg_tls_client_session_get(c, "b");
    assert_ptr_equal(got, s[0]);
    SSL_SESSION_free(got);
    fg_tls_client_session_put(c, "c", NULL);
    assert_null(fg_tls_client_session_get(c, "c"));
    for (int i = 0; i < 3; i++)
        SSL_SESSION_free(s[i]); /* the cache keeps its own references */
    got = fg_tls_client_session_get(c, "b");
    assert_non_null(got);
    SSL_SESSION_free(got);
    fg_tls_client_unref(c);
}

/* Stat names, as /stats will print them. */
static void test_stat_names(void **state)
{
    (void)state;
    assert_string_equal(fg_tls_fail_name(FG_TLS_FAIL_NO_SHARED_CIPHER), "no_shared_cipher");
    assert_string_equal(fg_tls_fail_name(FG_TLS_FAIL_VERIFY), "verify");
    assert_string_equal(fg_tls_fail_name(FG_TLS_FAIL_PROTOCOL_VERSION), "protocol_version");
    assert_string_equal(fg_tls_proto_name(FG_TLS_PROTO_TLS13), "TLSv1.3");
    assert_string_equal(fg_tls_cipher_name(0), "TLS_AES_128_GCM_SHA256");
    assert_string_equal(fg_tls_cipher_name(FG_TLS_CIPHER_COUNT - 1), "other");
    assert_int_equal(fg_tls_classify_failure(NULL, 0), FG_TLS_FAIL_OTHER);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* a refused peer hangs up; its write must fail, not kill us */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tls13_handshake),
        cmocka_unit_test(test_tls12_handshake),
        cmocka_unit_test(test_old_versions_refused),
        cmocka_unit_test(test_no_shared_cipher),
        cmocka_unit_test(test_sni_selection),
        cmocka_unit_test(test_alpn),
        cmocka_unit_test(test_ticket_resumption_and_rotation),
        cmocka_unit_test(test_tls12_and_cache_resumption),
        cmocka_unit_test(test_client_verification),
        cmocka_unit_test(test_verify_off),
        cmocka_unit_test(test_load_errors_keep_previous),
        cmocka_unit_test(test_client_and_keys_errors),
        cmocka_unit_test(test_client_session_cache),
        cmocka_unit_test(test_stat_names),
    };
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    OPENSSL_cleanup();
    return rc;
}
