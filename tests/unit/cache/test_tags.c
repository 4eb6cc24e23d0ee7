/* test_tags.c — cache tags: the app's Cache-Tag / Surrogate-Key fields collected and
 * normalised, kept with the object, purged by tag (every variant, nothing else, busy
 * fills too), kept across a 304 refresh, and charged to the memory bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "cache/internal.h" /* white-box: the object's tags */

static const char HEAD[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain";
static const char *const FIELDS[] = {"cache-tag", "surrogate-key"};

#define H(n, v)                                                                                    \
    {                                                                                              \
        n, sizeof(n) - 1, v, sizeof(v) - 1                                                         \
    }

static int collect(const struct fg_http_header *h, size_t n, char *out, size_t cap)
{
    int len = fg_cache_tags_collect(h, n, FIELDS, 2, out, cap);
    if (len >= 0)
        out[len] = '\0';
    return len;
}

static void test_collect_splits_on_spaces_and_commas(void **state)
{
    (void)state;
    struct fg_http_header h[] = {H("Cache-Tag", "product-123, category-7  home,,x"),
                                 H("Content-Type", "text/html")};
    char out[256];
    assert_int_equal(collect(h, 2, out, sizeof(out)),
                     (int)strlen(" product-123 category-7 home x "));
    assert_string_equal(out, " product-123 category-7 home x ");
}

static void test_collect_both_fields_every_line_duplicates_once(void **state)
{
    (void)state;
    struct fg_http_header h[] = {H("cache-tag", "a b"), H("Surrogate-Key", "b c"),
                                 H("CACHE-TAG", "a d"), H("X-Other", "e")};
    char out[256];
    assert_true(collect(h, 4, out, sizeof(out)) > 0);
    assert_string_equal(out, " a b c d ");
}

static void test_collect_none(void **state)
{
    (void)state;
    struct fg_http_header h[] = {H("Cache-Tag", " , "), H("X", "a")};
    char out[16];
    assert_int_equal(collect(h, 2, out, sizeof(out)), 0);
    assert_int_equal(collect(NULL, 0, out, sizeof(out)), 0);
}

static void test_collect_case_sensitive(void **state)
{
    (void)state;
    struct fg_http_header h[] = {H("Cache-Tag", "Sale sale")};
    char out[64];
    assert_true(collect(h, 1, out, sizeof(out)) > 0);
    assert_string_equal(out, " Sale sale ");
}

static void test_collect_too_long_refused(void **state)
{
    (void)state;
    char tag[FG_CACHE_TAG_MAX + 2];
    memset(tag, 'a', sizeof(tag) - 1);
    tag[sizeof(tag) - 1] = '\0';
    struct fg_http_header h[] = {{"Cache-Tag", 9, tag, strlen(tag)}};
    char out[FG_CACHE_TAGS_MAX];
    assert_int_equal(collect(h, 1, out, sizeof(out)), -1);
    h[0].value_len = FG_CACHE_TAG_MAX; /* exactly the limit */
    assert_int_equal(collect(h, 1, out, sizeof(out)), FG_CACHE_TAG_MAX + 2);
    /* more tags than fit: refused whole, never cut */
    struct fg_http_header m[] = {H("Cache-Tag", "aaaa bbbb cccc")};
    assert_int_equal(collect(m, 1, out, 10), -1);
    assert_int_equal(collect(m, 1, out, 16), 16);
}

static void test_tag_valid(void **state)
{
    (void)state;
    assert_true(fg_cache_tag_valid("p-1", 3));
    assert_false(fg_cache_tag_valid("", 0));
    assert_false(fg_cache_tag_valid("a b", 3));
    assert_false(fg_cache_tag_valid("a,b", 3));
    assert_false(fg_cache_tag_valid("a\tb", 3));
    assert_false(fg_cache_tag_valid("a\x7f", 2));
}

/* ---- the store ------------------------------------------------------------------------- */

static struct fg_cache *cache;
static int64_t now_ms;

static int setup(void **state)
{
    (void)state;
    struct fg_cache_limits lim = {.memory = 64u << 20, .max_object = 1u << 20};
    cache = fg_cache_new("tags", &lim);
    now_ms = (int64_t)time(NULL) * 1000;
    return cache == NULL;
}

static int teardown(void **state)
{
    (void)state;
    fg_cache_free(cache);
    return 0;
}

static struct fg_cache_request req(const char *key, const struct fg_http_header *h, size_t n)
{
    size_t len = strlen(key);
    return (struct fg_cache_request){.key = key,
                                     .key_len = len,
                                     .hash = fg_cache_key_hash(key, len),
                                     .headers = h,
                                     .n_headers = n,
                                     .now_ms = now_ms};
}

static void meta(struct fg_cache_meta *m, uint64_t len)
{
    fg_cache_meta_init(m);
    m->status = 200;
    m->content_length = len;
    m->lifetime = 60;
    m->response_time_ms = now_ms;
}

/* Store key (a variant for Accept-Encoding: ae when not NULL) with tags (" a b ") and a
 * 1-byte body. */
static void store(const char *key, const char *ae, const char *tags)
{
    struct fg_http_header h[] = {{"Accept-Encoding", 15, ae, ae ? strlen(ae) : 0}};
    struct fg_cache_request rq = req(key, h, ae ? 1 : 0);
    struct fg_cache_obj *obj, *fill;
    assert_int_equal(fg_cache_lookup(cache, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    assert_true(fg_cache_fill_tags(fill, tags, strlen(tags)));
    struct fg_cache_meta m;
    meta(&m, 1);
    char values[64] = "";
    if (ae != NULL)
        snprintf(values, sizeof(values), "=%s\n", ae);
    assert_true(fg_cache_fill_head(fill, &m, HEAD, strlen(HEAD), ae ? "accept-encoding" : "",
                                   ae ? 15 : 0, values, strlen(values)));
    assert_true(fg_cache_fill_append(fill, "x", 1));
    fg_cache_fill_done(fill, true);
    fg_cache_obj_unref(obj);
    fg_cache_obj_unref(fill);
}

/* Is key (variant ae) stored? */
static bool stored(const char *key, const char *ae)
{
    struct fg_http_header h[] = {{"Accept-Encoding", 15, ae, ae ? strlen(ae) : 0}};
    struct fg_cache_request rq = req(key, h, ae ? 1 : 0);
    struct fg_cache_obj *obj, *fill;
    enum fg_cache_verdict v = fg_cache_lookup(cache, &rq, NULL, &obj, &fill);
    if (fill != NULL) {
        fg_cache_fill_abort(fill, 502);
        fg_cache_obj_unref(fill);
    }
    fg_cache_obj_unref(obj);
    return v == FG_CACHE_V_HIT;
}

static void test_purge_tag_removes_tagged_objects_only(void **state)
{
    (void)state;
    store("h/p/123", NULL, " product-123 home ");
    store("h/", "gzip", " home product-123 ");
    store("h/", "br", " home product-123 ");
    store("h/p/1234", NULL, " product-1234 "); /* product-123 is a prefix of its tag */
    store("h/c/7", NULL, " xproduct-123 ");    /* and a suffix of this one */
    store("h/plain", NULL, "");
    assert_int_equal(fg_cache_purge_tag(cache, "product-123", 11), 3);
    assert_false(stored("h/p/123", NULL));
    assert_false(stored("h/", "gzip"));
    assert_false(stored("h/", "br"));
    assert_true(stored("h/p/1234", NULL));
    assert_true(stored("h/c/7", NULL));
    assert_true(stored("h/plain", NULL));
    assert_int_equal(fg_cache_purge_tag(cache, "product-123", 11), 0);
    assert_int_equal(fg_cache_purge_tag(cache, "product-1234", 12), 1);
    struct fg_cache_stats st;
    fg_cache_get_stats(cache, &st);
    assert_int_equal(st.purged, 4);
}

static void test_purge_tag_invalid_tag_removes_nothing(void **state)
{
    (void)state;
    store("h/a", NULL, " a b ");
    assert_int_equal(fg_cache_purge_tag(cache, "a b", 3), 0);
    assert_int_equal(fg_cache_purge_tag(cache, "", 0), 0);
    assert_true(stored("h/a", NULL));
}

static void test_purge_tag_takes_busy_fill_out(void **state)
{
    (void)state;
    struct fg_cache_request rq = req("h/busy", NULL, 0);
    struct fg_cache_obj *obj, *fill;
    assert_int_equal(fg_cache_lookup(cache, &rq, NULL, &obj, &fill), FG_CACHE_V_FILL);
    store("h/other", NULL, " other ");
    /* its answer is not known yet: it may carry the tag */
    assert_int_equal(fg_cache_purge_tag(cache, "t", 1), 1);
    assert_true(fg_cache_fill_tags(fill, " u ", 3));
    struct fg_cache_meta m;
    meta(&m, 1);
    assert_true(fg_cache_fill_head(fill, &m, HEAD, strlen(HEAD), "", 0, "", 0));
    assert_true(fg_cache_fill_append(fill, "x", 1));
    fg_cache_fill_done(fill, true);
    fg_cache_obj_unref(fill);
    assert_false(stored("h/busy", NULL)); /* delivered to its readers, never stored */
    assert_true(stored("h/other", NULL));
}

static void test_tags_kept_by_refresh(void **state)
{
    (void)state;
    store("h/r", NULL, " r ");
    struct fg_cache_request rq = req("h/r", NULL, 0);
    struct fg_cache_obj *stale = NULL, *fill = NULL;
    now_ms += 120 * 1000; /* past its 60 s */
    rq.now_ms = now_ms;
    assert_int_equal(fg_cache_lookup(cache, &rq, NULL, &stale, &fill), FG_CACHE_V_FILL);
    assert_non_null(stale);
    struct fg_cache_meta m;
    meta(&m, 1);
    fg_cache_fill_refresh(fill, stale, &m, HEAD, strlen(HEAD));
    size_t len;
    assert_string_equal(fg_cache_obj_tags(fill, &len), " r ");
    fg_cache_obj_unref(fill);
    fg_cache_obj_unref(stale);
    assert_true(stored("h/r", NULL));
    assert_int_equal(fg_cache_purge_tag(cache, "r", 1), 1);
    assert_false(stored("h/r", NULL));
}

static void test_tags_charged(void **state)
{
    (void)state;
    struct fg_cache_stats a, b;
    store("h/n", NULL, "");
    fg_cache_get_stats(cache, &a);
    char tags[1002];
    memset(tags, 'x', sizeof(tags));
    tags[0] = tags[1000] = ' ';
    tags[1001] = '\0';
    store("h/t", NULL, tags);
    fg_cache_get_stats(cache, &b);
    /* the second object costs at least its 1001 bytes of tags more than the first */
    assert_true(b.bytes - a.bytes >= a.bytes + 1001);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_collect_splits_on_spaces_and_commas),
        cmocka_unit_test(test_collect_both_fields_every_line_duplicates_once),
        cmocka_unit_test(test_collect_none),
        cmocka_unit_test(test_collect_case_sensitive),
        cmocka_unit_test(test_collect_too_long_refused),
        cmocka_unit_test(test_tag_valid),
        cmocka_unit_test_setup_teardown(test_purge_tag_removes_tagged_objects_only, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_purge_tag_invalid_tag_removes_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_purge_tag_takes_busy_fill_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tags_kept_by_refresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tags_charged, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
