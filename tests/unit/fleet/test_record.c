/* test_record.c — the shared tier's records (proxy/fleet/l2.c): what is encoded comes
 * back the same (meta, head, Vary names and values, tags, a binary body), and anything
 * else is refused: another magic or version, a record cut anywhere, a length that points
 * past the end, bytes after the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <event2/buffer.h>

#include "fleet/internal.h" /* white-box: the record codec */

static const char BODY[] = "v1:\0\x01\x02\xff binary";

static struct evbuffer *sample(void)
{
    struct fg_fleet_l2_record r = {0};
    fg_cache_meta_init(&r.meta);
    r.meta.status = 200;
    r.meta.content_length = sizeof(BODY);
    strcpy(r.meta.etag, "\"abc\"");
    r.meta.last_modified = 1700000000;
    r.meta.response_time_ms = 1700000000123;
    r.meta.initial_age = 3;
    r.meta.lifetime = 300;
    r.meta.swr = 30;
    r.meta.sie = 60;
    r.meta.must_revalidate = true;
    r.head = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: br";
    r.head_len = strlen(r.head);
    r.vary_names = "accept-encoding";
    r.vary_names_len = strlen(r.vary_names);
    r.vary_values = "=br\n";
    r.vary_values_len = strlen(r.vary_values);
    r.tags = " p-1 home ";
    r.tags_len = strlen(r.tags);
    r.body = BODY;
    r.body_len = sizeof(BODY);
    struct evbuffer *b = evbuffer_new();
    fg_fleet_l2_encode(b, &r);
    return b;
}

static void test_round_trip(void **state)
{
    (void)state;
    struct evbuffer *b = sample();
    size_t len = evbuffer_get_length(b);
    const char *p = (const char *)evbuffer_pullup(b, -1);
    struct fg_fleet_l2_record r;
    assert_true(fg_fleet_l2_decode(p, len, &r));
    assert_int_equal(r.meta.status, 200);
    assert_int_equal(r.meta.content_length, sizeof(BODY));
    assert_string_equal(r.meta.etag, "\"abc\"");
    assert_int_equal(r.meta.last_modified, 1700000000);
    assert_int_equal(r.meta.response_time_ms, 1700000000123);
    assert_int_equal(r.meta.initial_age, 3);
    assert_int_equal(r.meta.lifetime, 300);
    assert_int_equal(r.meta.swr, 30);
    assert_int_equal(r.meta.sie, 60);
    assert_true(r.meta.must_revalidate);
    assert_false(r.meta.no_cache);
    assert_int_equal(r.head_len, strlen("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                                        "Content-Encoding: br"));
    assert_memory_equal(r.vary_names, "accept-encoding", 15);
    assert_memory_equal(r.vary_values, "=br\n", 4);
    assert_memory_equal(r.tags, " p-1 home ", 10);
    assert_int_equal(r.body_len, sizeof(BODY));
    assert_memory_equal(r.body, BODY, sizeof(BODY));
    evbuffer_free(b);
}

static void test_every_cut_refused(void **state)
{
    (void)state;
    struct evbuffer *b = sample();
    size_t len = evbuffer_get_length(b);
    char *p = malloc(len + 1);
    evbuffer_copyout(b, p, len);
    struct fg_fleet_l2_record r;
    for (size_t n = 0; n < len; n++)
        assert_false(fg_fleet_l2_decode(p, n, &r));
    p[len] = 'x'; /* a byte after the end */
    assert_false(fg_fleet_l2_decode(p, len + 1, &r));
    assert_true(fg_fleet_l2_decode(p, len, &r));
    free(p);
    evbuffer_free(b);
}

static void test_other_magic_version_or_lengths_refused(void **state)
{
    (void)state;
    struct evbuffer *b = sample();
    size_t len = evbuffer_get_length(b);
    char *p = malloc(len);
    evbuffer_copyout(b, p, len);
    struct fg_fleet_l2_record r;
    p[4] = 2; /* a later version */
    assert_false(fg_fleet_l2_decode(p, len, &r));
    p[4] = 1;
    p[0] = 'X';
    assert_false(fg_fleet_l2_decode(p, len, &r));
    p[0] = 'F';
    /* the ETag's length (after magic, version, status, Content-Length) made huge */
    p[5 + 16 + 7] = 0x7f;
    assert_false(fg_fleet_l2_decode(p, len, &r));
    free(p);
    evbuffer_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_every_cut_refused),
        cmocka_unit_test(test_other_magic_version_or_lengths_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
