/*
 * test_token.c — the room's cookies: a signed token verifies and reads back; any changed
 * byte, another room's name or a key that is not configured fails; keys rotate with an
 * overlap (the first signs, every one verifies); the key file is refused when others
 * could read it, with a message that never holds a key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "waitroom/waitroom.h"

static const char K1[] = "0123456789abcdef0123456789abcdef";
static const char K2[] = "fedcba9876543210fedcba9876543210";

static struct fg_waitroom_keys keys(const char *text)
{
    struct fg_waitroom_keys k;
    char err[200];
    assert_true(fg_waitroom_keys_parse(text, strlen(text), &k, err, sizeof(err)));
    return k;
}

static size_t sign(const struct fg_waitroom_keys *k, const char *room, uint64_t ticket, char *out)
{
    struct fg_waitroom_token t = {.kind = FG_WR_TICKET, .ticket = ticket, .issued = 1796600000};
    size_t n = fg_waitroom_token_sign(k, room, &t, out, FG_WAITROOM_TOKEN_MAX);
    assert_true(n > 0);
    assert_int_equal(n, strlen(out));
    return n;
}

static void test_round_trip(void **state)
{
    (void)state;
    struct fg_waitroom_keys k = keys(K1);
    char tok[FG_WAITROOM_TOKEN_MAX];
    struct fg_waitroom_token in = {
        .kind = FG_WR_ADMITTED, .ticket = 4211, .issued = 1796600123, .early = true};
    size_t n = fg_waitroom_token_sign(&k, "sale", &in, tok, sizeof(tok));
    assert_true(n > 0);
    /* cookie-safe: no ';', ',', space or '=' */
    assert_null(strpbrk(tok, "; ,=\"\\"));
    struct fg_waitroom_token out;
    assert_int_equal(fg_waitroom_token_verify(&k, "sale", tok, n, &out), FG_WR_TOKEN_OK);
    assert_int_equal(out.kind, FG_WR_ADMITTED);
    assert_int_equal(out.ticket, 4211);
    assert_int_equal(out.issued, 1796600123);
    assert_true(out.early);
    fg_waitroom_keys_wipe(&k);
}

/* Every single-byte change of a valid token fails. */
static void test_every_tamper_fails(void **state)
{
    (void)state;
    struct fg_waitroom_keys k = keys(K1);
    char tok[FG_WAITROOM_TOKEN_MAX];
    size_t n = sign(&k, "sale", 77, tok);
    static const char alphabet[] = "0123456789.TAefxyzXYZ-_";
    for (size_t i = 0; i < n; i++) {
        for (const char *c = alphabet; *c; c++) {
            if (tok[i] == *c)
                continue;
            char bad[FG_WAITROOM_TOKEN_MAX];
            memcpy(bad, tok, n + 1);
            bad[i] = *c;
            struct fg_waitroom_token out;
            assert_int_not_equal(fg_waitroom_token_verify(&k, "sale", bad, n, &out),
                                 FG_WR_TOKEN_OK);
        }
    }
    /* a lower ticket written over the signed one: the classic jump to the front */
    char forged[FG_WAITROOM_TOKEN_MAX];
    snprintf(forged, sizeof(forged), "1.T.1.%s", strchr(tok + 4, '.') + 1);
    struct fg_waitroom_token out;
    assert_int_equal(fg_waitroom_token_verify(&k, "sale", forged, strlen(forged), &out),
                     FG_WR_TOKEN_BAD_MAC);
    /* truncated, extended, empty */
    assert_int_not_equal(fg_waitroom_token_verify(&k, "sale", tok, n - 1, &out), FG_WR_TOKEN_OK);
    assert_int_not_equal(fg_waitroom_token_verify(&k, "sale", "", 0, &out), FG_WR_TOKEN_OK);
    char longer[FG_WAITROOM_TOKEN_MAX + 2];
    snprintf(longer, sizeof(longer), "%sA", tok);
    assert_int_not_equal(fg_waitroom_token_verify(&k, "sale", longer, n + 1, &out), FG_WR_TOKEN_OK);
}

static void test_foreign_room_and_key(void **state)
{
    (void)state;
    struct fg_waitroom_keys k1 = keys(K1), k2 = keys(K2);
    char tok[FG_WAITROOM_TOKEN_MAX];
    size_t n = sign(&k1, "sale", 5, tok);
    struct fg_waitroom_token out;
    assert_int_equal(fg_waitroom_token_verify(&k1, "sales", tok, n, &out), FG_WR_TOKEN_BAD_MAC);
    assert_int_equal(fg_waitroom_token_verify(&k1, "sal", tok, n, &out), FG_WR_TOKEN_BAD_MAC);
    assert_int_equal(fg_waitroom_token_verify(&k2, "sale", tok, n, &out), FG_WR_TOKEN_BAD_MAC);
    fg_waitroom_keys_wipe(&k1);
    fg_waitroom_keys_wipe(&k2);
}

/* Rotation: new key first, old second — old cookies still verify, new ones are signed
 * with the new key; once the old key is removed, its cookies fail. */
static void test_rotation_with_overlap(void **state)
{
    (void)state;
    struct fg_waitroom_keys old = keys(K1);
    char text[200];
    snprintf(text, sizeof(text), "# rotated on the 7th\n%s\n\n%s\n", K2, K1);
    struct fg_waitroom_keys both = keys(text);
    assert_int_equal(both.n, 2);
    struct fg_waitroom_keys new_only = keys(K2);
    char t_old[FG_WAITROOM_TOKEN_MAX], t_new[FG_WAITROOM_TOKEN_MAX];
    size_t n_old = sign(&old, "sale", 9, t_old);
    size_t n_new = sign(&both, "sale", 9, t_new);
    struct fg_waitroom_token out;
    assert_int_equal(fg_waitroom_token_verify(&both, "sale", t_old, n_old, &out), FG_WR_TOKEN_OK);
    assert_int_equal(fg_waitroom_token_verify(&both, "sale", t_new, n_new, &out), FG_WR_TOKEN_OK);
    assert_int_equal(fg_waitroom_token_verify(&new_only, "sale", t_new, n_new, &out),
                     FG_WR_TOKEN_OK);
    assert_int_equal(fg_waitroom_token_verify(&old, "sale", t_new, n_new, &out),
                     FG_WR_TOKEN_BAD_MAC); /* signed with the first line's key */
    assert_int_equal(fg_waitroom_token_verify(&new_only, "sale", t_old, n_old, &out),
                     FG_WR_TOKEN_BAD_MAC);
    fg_waitroom_keys_wipe(&old);
    fg_waitroom_keys_wipe(&both);
    fg_waitroom_keys_wipe(&new_only);
}

/* The MAC is standard HMAC-SHA256 (RFC 2104) truncated to 128 bits, answers computed
 * with Python's hmac module: a key shorter than SHA-256's block, and a longer one (hashed
 * first, as in RFC 4231's case 6). */
static void test_hmac_known_answers(void **state)
{
    (void)state;
    struct fg_waitroom_keys k = keys("0123456789abcdefghij");
    struct fg_waitroom_token t = {.kind = FG_WR_TICKET, .ticket = 1, .issued = 2};
    char tok[FG_WAITROOM_TOKEN_MAX];
    size_t n = fg_waitroom_token_sign(&k, "sale", &t, tok, sizeof(tok));
    /* python3 -c 'import hmac,hashlib,base64; print(base64.urlsafe_b64encode(hmac.new(
     *   b"0123456789abcdefghij", b"sale\0" + b"1.T.1.2.f.", hashlib.sha256).digest()[:16]))' */
    assert_string_equal(tok, "1.T.1.2.f.gZB3S-z1rpM-qp0bvCKSsQ");
    assert_true(n > 0);
    fg_waitroom_keys_wipe(&k);
    char longkey[132];
    memset(longkey, 'k', 131);
    longkey[131] = '\0';
    k = keys(longkey);
    n = fg_waitroom_token_sign(&k, "sale", &t, tok, sizeof(tok));
    assert_string_equal(tok, "1.T.1.2.f.G_aEFvZ9jbHmiBTF-VBCVQ");
    fg_waitroom_keys_wipe(&k);
}

static void test_key_text_errors(void **state)
{
    (void)state;
    struct fg_waitroom_keys k;
    char err[200];
    assert_false(fg_waitroom_keys_parse("", 0, &k, err, sizeof(err)));
    assert_non_null(strstr(err, "no key"));
    assert_false(fg_waitroom_keys_parse("short\n", 6, &k, err, sizeof(err)));
    assert_non_null(strstr(err, "line 1"));
    assert_null(strstr(err, "short")); /* never the key itself */
    char many[2000] = "";
    for (int i = 0; i < FG_WAITROOM_KEYS_MAX + 1; i++)
        strcat(many, "0123456789abcdef0123\n");
    assert_false(fg_waitroom_keys_parse(many, strlen(many), &k, err, sizeof(err)));
}

static void test_key_file_checks(void **state)
{
    (void)state;
    char path[] = "/tmp/fg-wr-keysXXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, K1, strlen(K1)), (ssize_t)strlen(K1));
    assert_int_equal(write(fd, "\n", 1), 1);
    close(fd);
    struct fg_waitroom_keys k;
    char err[300];
    assert_int_equal(chmod(path, 0600), 0);
    assert_true(fg_waitroom_keys_load(path, &k, err, sizeof(err)));
    assert_int_equal(k.n, 1);
    assert_int_equal(k.key[0].len, strlen(K1));
    fg_waitroom_keys_wipe(&k);
    assert_int_equal(chmod(path, 0640), 0);
    assert_false(fg_waitroom_keys_load(path, &k, err, sizeof(err)));
    assert_non_null(strstr(err, "group or others"));
    assert_null(strstr(err, K1));
    assert_int_equal(chmod(path, 0604), 0);
    assert_false(fg_waitroom_keys_load(path, &k, err, sizeof(err)));
    unlink(path);
    assert_false(fg_waitroom_keys_load(path, &k, err, sizeof(err)));
    assert_non_null(strstr(err, "cannot open"));
    assert_false(fg_waitroom_keys_load("/tmp", &k, err, sizeof(err)));
    assert_non_null(strstr(err, "not a regular file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),           cmocka_unit_test(test_every_tamper_fails),
        cmocka_unit_test(test_foreign_room_and_key), cmocka_unit_test(test_rotation_with_overlap),
        cmocka_unit_test(test_hmac_known_answers),   cmocka_unit_test(test_key_text_errors),
        cmocka_unit_test(test_key_file_checks),
    };
    return cmocka_run_group_tests_name("waitroom tokens", tests, NULL, NULL);
}
