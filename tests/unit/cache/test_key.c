/* test_key.c — the primary key (host, path, filtered query) and the secondary key from Vary
 * (RFC 9111 §4.1), one behaviour per test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cache/cache.h"

/* ---- helpers ------------------------------------------------------------------------ */

/* A few NUL-terminated copies of built keys, so that two can be compared at once. */
static char keybuf[4][FG_CACHE_KEY_MAX + 1];
static unsigned keynext;

/* The key for host/path?query under rules, NUL-terminated; "" when it did not fit. */
static const char *key(const char *host, const char *path, const char *query,
                       const struct fg_cache_key_rules *rules)
{
    char *out = keybuf[keynext++ % 4];
    size_t n = fg_cache_key_build(host, strlen(host), path, strlen(path), query,
                                  query ? strlen(query) : 0, rules, out, FG_CACHE_KEY_MAX);
    out[n] = '\0';
    return out;
}

static struct fg_http_header hdr(const char *name, const char *value)
{
    return (struct fg_http_header){name, strlen(name), value, strlen(value)};
}

static char vbuf[4096];

/* fg_cache_vary_names into vbuf (NUL-terminated when it succeeded). */
static int names_of(const struct fg_http_header *h, size_t n, size_t cap)
{
    assert_true(cap < sizeof(vbuf));
    memset(vbuf, 0, sizeof(vbuf));
    int r = fg_cache_vary_names(h, n, vbuf, cap);
    if (r >= 0)
        vbuf[r] = '\0';
    return r;
}

/* fg_cache_vary_values for names into vbuf (NUL-terminated when it succeeded). */
static int values_of(const char *names, const struct fg_http_header *h, size_t n, size_t cap)
{
    assert_true(cap < sizeof(vbuf));
    memset(vbuf, 0, sizeof(vbuf));
    int r = fg_cache_vary_values(names, strlen(names), h, n, vbuf, cap);
    if (r >= 0)
        vbuf[r] = '\0';
    return r;
}

/* ---- primary key -------------------------------------------------------------------- */

static void test_key_host_lowercased(void **state)
{
    (void)state;
    assert_string_equal(key("WWW.Example.COM", "/", NULL, NULL), "www.example.com/");
}

static void test_key_trailing_dot_removed(void **state)
{
    (void)state;
    assert_string_equal(key("example.com.", "/a", NULL, NULL), "example.com/a");
    assert_string_equal(key("Example.Com.", "/a", NULL, NULL),
                        key("example.com", "/a", NULL, NULL));
}

/* The path is the origin's business: no case folding, no decoding, no dot removal. */
static void test_key_path_kept_byte_for_byte(void **state)
{
    (void)state;
    assert_string_equal(key("h", "/A/b%2F/../C%7e;x=1", NULL, NULL), "h/A/b%2F/../C%7e;x=1");
    assert_string_not_equal(key("h", "/A", NULL, NULL), key("h", "/a", NULL, NULL));
}

static void test_key_query_kept_in_order_by_default(void **state)
{
    (void)state;
    assert_string_equal(key("h", "/p", "b=2&a=1&c", NULL), "h/p?b=2&a=1&c");
    struct fg_cache_key_rules none = {0};
    assert_string_equal(key("h", "/p", "b=2&a=1&c", &none), "h/p?b=2&a=1&c");
    assert_string_not_equal(key("h", "/p", "b=2&a=1", NULL), key("h", "/p", "a=1&b=2", NULL));
}

static void test_key_no_query_and_empty_query(void **state)
{
    (void)state;
    assert_string_equal(key("h", "/p", NULL, NULL), "h/p");
    assert_string_equal(key("h", "/p", "", NULL), "h/p"); /* "/p?" is "/p" */
}

static void test_key_ignore_exact_names(void **state)
{
    (void)state;
    const char *ign[] = {"fbclid", "gclid"};
    struct fg_cache_key_rules r = {.ignore_params = ign, .n_ignore_params = 2};
    assert_string_equal(key("h", "/p", "a=1&fbclid=xyz&b=2&gclid=", &r), "h/p?a=1&b=2");
    /* exact means exact: longer, shorter and other-case names stay */
    assert_string_equal(key("h", "/p", "fbclidx=1&fbcli=2&FBCLID=3", &r),
                        "h/p?fbclidx=1&fbcli=2&FBCLID=3");
    /* the rule is about names, not values */
    assert_string_equal(key("h", "/p", "ref=fbclid", &r), "h/p?ref=fbclid");
}

static void test_key_ignore_prefix(void **state)
{
    (void)state;
    const char *ign[] = {"utm_*"};
    struct fg_cache_key_rules r = {.ignore_params = ign, .n_ignore_params = 1};
    assert_string_equal(key("h", "/p", "utm_source=x&id=7&utm_medium=y&utm_=z", &r), "h/p?id=7");
    /* "utm" is shorter than the prefix, "utmx" does not start with it */
    assert_string_equal(key("h", "/p", "utm=1&utmx=2", &r), "h/p?utm=1&utmx=2");
}

static void test_key_ignore_param_without_value(void **state)
{
    (void)state;
    const char *ign[] = {"flag", "utm_*"};
    struct fg_cache_key_rules r = {.ignore_params = ign, .n_ignore_params = 2};
    assert_string_equal(key("h", "/p", "flag&a=1&utm_x&flagged", &r), "h/p?a=1&flagged");
}

/* Empty parameters are not part of the key, with or without rules. */
static void test_key_empty_params_dropped(void **state)
{
    (void)state;
    assert_string_equal(key("h", "/p", "a=1&&b=2", NULL), "h/p?a=1&b=2");
    assert_string_equal(key("h", "/p", "&a=1&", NULL), "h/p?a=1");
    assert_string_equal(key("h", "/p", "&&", NULL), "h/p");
}

static void test_key_all_params_ignored_gives_no_question_mark(void **state)
{
    (void)state;
    const char *ign[] = {"utm_*", "x"};
    struct fg_cache_key_rules r = {.ignore_params = ign, .n_ignore_params = 2, .sort_params = true};
    assert_string_equal(key("h", "/p", "utm_a=1&x=2&x&utm_b", &r), "h/p");
}

static void test_key_sort_params_permutations_equal(void **state)
{
    (void)state;
    struct fg_cache_key_rules r = {.sort_params = true};
    const char *k1 = key("h", "/p", "b=2&a=1&c=3", &r);
    assert_string_equal(k1, "h/p?a=1&b=2&c=3");
    assert_string_equal(key("h", "/p", "c=3&a=1&b=2", &r), k1);
    assert_string_equal(key("h", "/p", "a=1&c=3&b=2", &r), k1);
}

static void test_key_sort_params_keeps_duplicates(void **state)
{
    (void)state;
    struct fg_cache_key_rules r = {.sort_params = true};
    assert_string_equal(key("h", "/p", "b=1&a=2&b=1&a=1", &r), "h/p?a=1&a=2&b=1&b=1");
    assert_string_not_equal(key("h", "/p", "a=1&a=1", &r), key("h", "/p", "a=1", &r));
}

/* Sorting and ignoring together: the ignored ones go, the rest is sorted. */
static void test_key_sort_and_ignore(void **state)
{
    (void)state;
    const char *ign[] = {"utm_*"};
    struct fg_cache_key_rules r = {.ignore_params = ign, .n_ignore_params = 1, .sort_params = true};
    assert_string_equal(key("h", "/p", "z=1&utm_a=1&m=2", &r), key("h", "/p", "m=2&z=1", &r));
    assert_string_equal(key("h", "/p", "z=1&utm_a=1&m=2", &r), "h/p?m=2&z=1");
}

/* More parameters than the key builder keeps track of: not cached. */
static void test_key_absurd_query_not_cached(void **state)
{
    (void)state;
    static char q[300 * 4];
    size_t n = 0;
    for (int i = 0; i < 300; i++) {
        memcpy(q + n, "a=1&", 4);
        n += 4;
    }
    q[n - 1] = '\0';
    char out[FG_CACHE_KEY_MAX];
    assert_int_equal(fg_cache_key_build("h", 1, "/", 1, q, strlen(q), NULL, out, sizeof(out)), 0);
}

/* The key is not NUL-terminated (the API returns a length), so a key of exactly cap bytes
 * fits and one more byte does not. With a query the code keeps that promise. */
static void test_key_cap_boundary_with_query(void **state)
{
    (void)state;
    char out[16];
    /* "h/p?a=1" is 7 bytes */
    assert_int_equal(fg_cache_key_build("h", 1, "/p", 2, "a=1", 3, NULL, out, 7), 7);
    assert_memory_equal(out, "h/p?a=1", 7);
    assert_int_equal(fg_cache_key_build("h", 1, "/p", 2, "a=1", 3, NULL, out, 6), 0);
    /* a second parameter that does not fit */
    assert_int_equal(fg_cache_key_build("h", 1, "/p", 2, "a=1&b", 5, NULL, out, 8), 0);
    assert_int_equal(fg_cache_key_build("h", 1, "/p", 2, "a=1&b", 5, NULL, out, 9), 9);
}

static void test_key_cap_boundary_without_query_one_less_fits(void **state)
{
    (void)state;
    char out[16];
    assert_int_equal(fg_cache_key_build("host", 4, "/pa", 3, NULL, 0, NULL, out, 8), 7);
    assert_memory_equal(out, "host/pa", 7);
    assert_int_equal(fg_cache_key_build("host", 4, "/path", 5, NULL, 0, NULL, out, 8), 0);
}

/* Regression: a key without a query of exactly cap bytes fits (nothing else is written). */
static void test_key_cap_boundary_without_query_exact_fits(void **state)
{
    (void)state;
    char out[16];
    assert_int_equal(fg_cache_key_build("host", 4, "/pat", 4, NULL, 0, NULL, out, 8), 8);
    assert_memory_equal(out, "host/pat", 8);
}

static void test_key_hash_stable_and_distinct(void **state)
{
    (void)state;
    char a[] = "example.com/a?x=1", b[] = "example.com/a?x=1";
    uint64_t h = fg_cache_key_hash(a, strlen(a));
    assert_true(h == fg_cache_key_hash(a, strlen(a)));
    assert_true(h == fg_cache_key_hash(b, strlen(b))); /* content, not address */
    assert_true(h != fg_cache_key_hash("example.com/a?x=2", 17));
    assert_true(h != fg_cache_key_hash("example.com/b?x=1", 17));
    assert_true(h != fg_cache_key_hash(a, strlen(a) - 1));
    /* the low bits pick the shard: neighbouring keys do not all land in one */
    unsigned seen = 0;
    char k[16];
    for (int i = 0; i < 64; i++) {
        int n = snprintf(k, sizeof(k), "h/%d", i);
        seen |= 1u << (fg_cache_key_hash(k, (size_t)n) & 31);
    }
    assert_true(__builtin_popcount(seen) > 16);
}

/* ---- Vary names --------------------------------------------------------------------- */

static void test_vary_names_merged_folded_sorted(void **state)
{
    (void)state;
    struct fg_http_header h[] = {hdr("Content-Type", "text/html"), hdr("Vary", "User-Agent"),
                                 hdr("VARY", "Accept-Language, accept-Encoding")};
    assert_int_equal(names_of(h, 3, 256),
                     (int)strlen("accept-encoding,accept-language,user-agent"));
    assert_string_equal(vbuf, "accept-encoding,accept-language,user-agent");
}

static void test_vary_names_duplicates_removed(void **state)
{
    (void)state;
    struct fg_http_header h[] = {hdr("Vary", "Accept-Encoding, accept-encoding"),
                                 hdr("vary", "ACCEPT-ENCODING, Origin")};
    assert_true(names_of(h, 2, 256) > 0);
    assert_string_equal(vbuf, "accept-encoding,origin");
}

static void test_vary_names_whitespace_and_empty_elements(void **state)
{
    (void)state;
    struct fg_http_header h[] = {hdr("Vary", " , Accept-Encoding ,,\t,Origin , "), hdr("Vary", ","),
                                 hdr("Vary", "")};
    assert_true(names_of(h, 3, 256) > 0);
    assert_string_equal(vbuf, "accept-encoding,origin");
}

static void test_vary_names_star_anywhere(void **state)
{
    (void)state;
    struct fg_http_header first[] = {hdr("Vary", "*, Accept")};
    struct fg_http_header middle[] = {hdr("Vary", "Accept, * ,Origin")};
    struct fg_http_header later[] = {hdr("Vary", "Accept"), hdr("Vary", " *")};
    assert_int_equal(names_of(first, 1, 256), -1);
    assert_int_equal(names_of(middle, 1, 256), -1);
    assert_int_equal(names_of(later, 2, 256), -1);
    /* a name that merely contains '*' is a name */
    struct fg_http_header token[] = {hdr("Vary", "x-*")};
    assert_int_equal(names_of(token, 1, 256), 3);
}

static void test_vary_names_too_long(void **state)
{
    (void)state;
    struct fg_http_header h[] = {hdr("Vary", "accept-encoding, accept-language")};
    assert_int_equal(names_of(h, 1, 10), -1);
    /* one name longer than the store keeps */
    char longname[80];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    struct fg_http_header l[] = {hdr("Vary", longname)};
    assert_int_equal(names_of(l, 1, 256), -1);
}

static void test_vary_names_too_many(void **state)
{
    (void)state;
    char v[40 * 4];
    size_t n = 0;
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(v + n, sizeof(v) - n, "h%02d,", i);
    struct fg_http_header h[] = {hdr("Vary", v)};
    assert_int_equal(names_of(h, 1, sizeof(vbuf) - 1), -1);
}

/* Two names of exactly cap bytes together fit (the output is not NUL-terminated). */
static void test_vary_names_exact_cap_fits(void **state)
{
    (void)state;
    struct fg_http_header h[] = {hdr("Vary", "b, a")};
    assert_int_equal(names_of(h, 1, 3), 3);
    assert_string_equal(vbuf, "a,b");
    assert_int_equal(names_of(h, 1, 2), -1);
}

/* Regression: the first name gets no ',' before it, so a single name of exactly cap fits. */
static void test_vary_names_single_name_exact_cap_fits(void **state)
{
    (void)state;
    struct fg_http_header h[] = {hdr("Vary", "Origin")};
    assert_int_equal(names_of(h, 1, 6), 6);
    assert_string_equal(vbuf, "origin");
}

static void test_vary_names_none(void **state)
{
    (void)state;
    struct fg_http_header h[] = {hdr("Content-Type", "text/html"), hdr("Varyx", "Accept")};
    assert_int_equal(names_of(h, 2, 256), 0);
    assert_int_equal(names_of(NULL, 0, 256), 0);
}

/* ---- Vary values -------------------------------------------------------------------- */

static void test_vary_values_one_line_per_name(void **state)
{
    (void)state;
    struct fg_http_header h[] = {hdr("Accept-Language", "de"), hdr("Accept-Encoding", "gzip")};
    assert_int_equal(values_of("accept-encoding,accept-language", h, 2, 256), 10);
    assert_string_equal(vbuf, "=gzip\n=de\n");
}

static void test_vary_values_same_name_joined_in_order(void **state)
{
    (void)state;
    struct fg_http_header h[] = {hdr("Accept-Encoding", "gzip"), hdr("Host", "x"),
                                 hdr("accept-encoding", "br"), hdr("ACCEPT-ENCODING", "zstd")};
    assert_true(values_of("accept-encoding", h, 4, 256) > 0);
    assert_string_equal(vbuf, "=gzip,br,zstd\n");
}

/* RFC 9111 §4.1: whitespace around commas is not significant; inside a value it is. */
static void test_vary_values_ows_around_commas_dropped(void **state)
{
    (void)state;
    struct fg_http_header h[] = {hdr("Accept-Encoding", "gzip ,\t br ,deflate"),
                                 hdr("Accept-Encoding", "zstd")};
    assert_true(values_of("accept-encoding", h, 2, 256) > 0);
    assert_string_equal(vbuf, "=gzip,br,deflate,zstd\n");
    struct fg_http_header one[] = {hdr("Accept-Encoding", "gzip,br,deflate,zstd")};
    char joined[64];
    strcpy(joined, vbuf);
    assert_true(values_of("accept-encoding", one, 1, 256) > 0);
    assert_string_equal(vbuf, joined);
}

static void test_vary_values_ows_inside_values_kept(void **state)
{
    (void)state;
    struct fg_http_header h[] = {hdr("User-Agent", "Mozilla/5.0 (X11;  Linux) x")};
    assert_true(values_of("user-agent", h, 1, 256) > 0);
    assert_string_equal(vbuf, "=Mozilla/5.0 (X11;  Linux) x\n");
    struct fg_http_header other[] = {hdr("User-Agent", "Mozilla/5.0 (X11; Linux) x")};
    char a[64];
    strcpy(a, vbuf);
    assert_true(values_of("user-agent", other, 1, 256) > 0);
    assert_string_not_equal(vbuf, a);
}

/* The negotiation fields: codings, language ranges and charsets are case-insensitive and
 * the whitespace around ';' is OWS: equal sets give one key. Accept keeps its case (a
 * parameter value may be case-sensitive); other fields keep both. */
static void test_vary_values_negotiation_fields_normalised(void **state)
{
    (void)state;
    char a[128];
    struct fg_http_header x[] = {hdr("Accept-Encoding", "GZip ; q=1.0,BR;Q=0.5")};
    assert_true(values_of("accept-encoding", x, 1, 256) > 0);
    assert_string_equal(vbuf, "=gzip;q=1.0,br;q=0.5\n");
    strcpy(a, vbuf);
    struct fg_http_header y[] = {hdr("Accept-Encoding", "gzip;q=1.0"),
                                 hdr("accept-encoding", "br ;  q=0.5")};
    assert_true(values_of("accept-encoding", y, 2, 256) > 0);
    assert_string_equal(vbuf, a);
    struct fg_http_header l1[] = {hdr("Accept-Language", "en-US, de;q=0.5")};
    struct fg_http_header l2[] = {hdr("Accept-Language", "EN-us,DE ; q=0.5")};
    assert_true(values_of("accept-language", l1, 1, 256) > 0);
    strcpy(a, vbuf);
    assert_true(values_of("accept-language", l2, 1, 256) > 0);
    assert_string_equal(vbuf, a);
    struct fg_http_header m1[] = {hdr("Accept", "text/html ; level=1, */*;q=0.1")};
    assert_true(values_of("accept", m1, 1, 256) > 0);
    assert_string_equal(vbuf, "=text/html;level=1,*/*;q=0.1\n");
    struct fg_http_header m2[] = {hdr("Accept", "Text/HTML;level=1")};
    assert_true(values_of("accept", m2, 1, 256) > 0);
    assert_string_equal(vbuf, "=Text/HTML;level=1\n"); /* case kept for Accept */
    struct fg_http_header o[] = {hdr("X-Tenant", "Acme ; b")};
    assert_true(values_of("x-tenant", o, 1, 256) > 0);
    assert_string_equal(vbuf, "=Acme ; b\n"); /* unknown syntax: only comma OWS goes */
}

/* A name the request does not carry gives an empty line (no '='), so the key keeps its
 * shape and differs from an empty value. */
static void test_vary_values_missing_header_is_empty_line(void **state)
{
    (void)state;
    struct fg_http_header h[] = {hdr("Accept-Encoding", "gzip")};
    assert_int_equal(values_of("accept-encoding,accept-language", h, 1, 256), 7);
    assert_string_equal(vbuf, "=gzip\n\n");
    assert_int_equal(values_of("origin,x-a", h, 1, 256), 2);
    assert_string_equal(vbuf, "\n\n");
    assert_int_equal(values_of("origin", NULL, 0, 256), 1);
}

/* RFC 9111 §4.1: an absent field only matches an absent field. "No Accept-Encoding" and
 * "Accept-Encoding:" mean opposite things (RFC 9110 §12.5.3: any coding / identity only),
 * so they must not share a variant. */
static void test_vary_values_absent_differs_from_empty(void **state)
{
    (void)state;
    struct fg_http_header empty[] = {hdr("Accept-Encoding", "")};
    struct fg_http_header absent[] = {hdr("Host", "h")};
    char a[64];
    assert_true(values_of("accept-encoding", empty, 1, 256) >= 0);
    strcpy(a, vbuf);
    assert_true(values_of("accept-encoding", absent, 1, 256) >= 0);
    assert_string_not_equal(vbuf, a);
}

static void test_vary_values_overflow(void **state)
{
    (void)state;
    struct fg_http_header h[] = {hdr("Accept-Encoding", "gzip"), hdr("Accept-Encoding", "br")};
    /* "=gzip,br\n" is 9 bytes: 9 fits, 8 does not, whichever byte is the one too many */
    assert_int_equal(values_of("accept-encoding", h, 2, 9), 9);
    assert_int_equal(values_of("accept-encoding", h, 2, 8), -1);        /* the '\n' */
    assert_int_equal(values_of("accept-encoding", h, 2, 5), -1);        /* the ',' */
    assert_int_equal(values_of("accept-encoding", h, 2, 0), -1);        /* the '=' */
    assert_int_equal(values_of("accept-encoding", h, 2, 3), -1);        /* inside a value */
    assert_int_equal(values_of("accept-encoding,origin", h, 2, 9), -1); /* the empty line */
}

static void test_vary_values_name_too_long(void **state)
{
    (void)state;
    char name[80];
    memset(name, 'x', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    struct fg_http_header h[] = {hdr(name, "v")};
    assert_int_equal(values_of(name, h, 1, 256), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_host_lowercased),
        cmocka_unit_test(test_key_trailing_dot_removed),
        cmocka_unit_test(test_key_path_kept_byte_for_byte),
        cmocka_unit_test(test_key_query_kept_in_order_by_default),
        cmocka_unit_test(test_key_no_query_and_empty_query),
        cmocka_unit_test(test_key_ignore_exact_names),
        cmocka_unit_test(test_key_ignore_prefix),
        cmocka_unit_test(test_key_ignore_param_without_value),
        cmocka_unit_test(test_key_empty_params_dropped),
        cmocka_unit_test(test_key_all_params_ignored_gives_no_question_mark),
        cmocka_unit_test(test_key_sort_params_permutations_equal),
        cmocka_unit_test(test_key_sort_params_keeps_duplicates),
        cmocka_unit_test(test_key_sort_and_ignore),
        cmocka_unit_test(test_key_absurd_query_not_cached),
        cmocka_unit_test(test_key_cap_boundary_with_query),
        cmocka_unit_test(test_key_cap_boundary_without_query_one_less_fits),
        cmocka_unit_test(test_key_cap_boundary_without_query_exact_fits),
        cmocka_unit_test(test_key_hash_stable_and_distinct),
        cmocka_unit_test(test_vary_names_merged_folded_sorted),
        cmocka_unit_test(test_vary_names_duplicates_removed),
        cmocka_unit_test(test_vary_names_whitespace_and_empty_elements),
        cmocka_unit_test(test_vary_names_star_anywhere),
        cmocka_unit_test(test_vary_names_too_long),
        cmocka_unit_test(test_vary_names_too_many),
        cmocka_unit_test(test_vary_names_exact_cap_fits),
        cmocka_unit_test(test_vary_names_single_name_exact_cap_fits),
        cmocka_unit_test(test_vary_names_none),
        cmocka_unit_test(test_vary_values_one_line_per_name),
        cmocka_unit_test(test_vary_values_same_name_joined_in_order),
        cmocka_unit_test(test_vary_values_ows_around_commas_dropped),
        cmocka_unit_test(test_vary_values_ows_inside_values_kept),
        cmocka_unit_test(test_vary_values_negotiation_fields_normalised),
        cmocka_unit_test(test_vary_values_missing_header_is_empty_line),
        cmocka_unit_test(test_vary_values_absent_differs_from_empty),
        cmocka_unit_test(test_vary_values_overflow),
        cmocka_unit_test(test_vary_values_name_too_long),
    };
    return cmocka_run_group_tests_name("cache keys", tests, NULL, NULL);
}
