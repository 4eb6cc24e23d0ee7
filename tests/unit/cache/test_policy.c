/* test_policy.c — RFC 9111 rules, one test per rule, each citing its section. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "cache/cache.h"

static struct fg_http_response resp;

/* Parse a response head into resp and a policy view. */
static void head(const char *s, struct fg_cache_response *out, const char *targeted)
{
    struct fg_http_limits lim = {
        .max_request_line = 8192, .max_header_bytes = 8192, .max_headers = 64};
    enum fg_http_error e;
    assert_int_equal(fg_http_parse_response(s, strlen(s), &lim, FG_HTTP_GET, &resp, &e),
                     (int)strlen(s));
    fg_cache_response_from_head(&resp, targeted, out);
}

static struct fg_cache_control cc_of(const char *value)
{
    struct fg_http_header h = {"Cache-Control", 13, value, strlen(value)};
    struct fg_cache_control cc;
    fg_cache_control_parse(&h, 1, "cache-control", &cc);
    return cc;
}

/* §5.2: directives, values, quoted strings, case, unknown ones ignored */
static void test_cc_parsing(void **state)
{
    (void)state;
    struct fg_cache_control cc =
        cc_of("Public, MAX-AGE=60, s-maxage=\"120\", x-ext=\"a,b\", no-transform");
    assert_true(cc.public_ && cc.no_transform);
    assert_int_equal(cc.max_age, 60);
    assert_int_equal(cc.s_maxage, 120);
    assert_false(cc.no_store || cc.private_ || cc.no_cache);
    cc = cc_of("no-cache=\"Set-Cookie\", private=\"X\", no-store");
    assert_true(cc.no_cache && cc.no_cache_fields && cc.private_ && cc.no_store);
    cc = cc_of("stale-while-revalidate=30, stale-if-error=300, must-revalidate, immutable");
    assert_int_equal(cc.stale_while_revalidate, 30);
    assert_int_equal(cc.stale_if_error, 300);
    assert_true(cc.must_revalidate && cc.immutable);
    cc = cc_of("max-stale, min-fresh=5, only-if-cached");
    assert_true(cc.max_stale > 1000000 && cc.only_if_cached);
    assert_int_equal(cc.min_fresh, 5);
}

/* §1.2.2: delta-seconds beyond what we represent are 2^31; junk is ignored, not zero */
static void test_cc_bad_values(void **state)
{
    (void)state;
    struct fg_cache_control cc = cc_of("max-age=99999999999999999999999");
    assert_true(cc.max_age == 2147483648ull);
    cc = cc_of("max-age=-1, s-maxage=abc");
    assert_true(cc.malformed);
    assert_true(cc.max_age == FG_CACHE_NO_VALUE && cc.s_maxage == FG_CACHE_NO_VALUE);
    cc = cc_of("max-age=60, max-age=10"); /* §4.2.1: duplicates: the stricter one */
    assert_int_equal(cc.max_age, 10);
}

/* §3: only what the response allows gets stored */
static void test_storable_basics(void **state)
{
    (void)state;
    struct fg_cache_response r;
    head("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n\r\n", &r, NULL);
    assert_true(fg_cache_storable(FG_HTTP_GET, NULL, false, &r));
    assert_false(fg_cache_storable(FG_HTTP_POST, NULL, false, &r));
    head("HTTP/1.1 200 OK\r\nCache-Control: no-store, max-age=60\r\n\r\n", &r, NULL);
    assert_false(fg_cache_storable(FG_HTTP_GET, NULL, false, &r)); /* §5.2.2.5 */
    head("HTTP/1.1 200 OK\r\nCache-Control: private, max-age=60\r\n\r\n", &r, NULL);
    assert_false(fg_cache_storable(FG_HTTP_GET, NULL, false, &r)); /* §5.2.2.7 shared cache */
    head("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nVary: *\r\n\r\n", &r, NULL);
    assert_false(fg_cache_storable(FG_HTTP_GET, NULL, false, &r)); /* §4.1 Vary: * */
    head("HTTP/1.1 206 Partial\r\nCache-Control: max-age=60\r\n\r\n", &r, NULL);
    assert_false(fg_cache_storable(FG_HTTP_GET, NULL, false, &r));
    head("HTTP/1.1 302 Found\r\n\r\n", &r, NULL);
    assert_false(fg_cache_storable(FG_HTTP_GET, NULL, false, &r)); /* nothing makes it cacheable */
    head("HTTP/1.1 404 Not Found\r\n\r\n", &r, NULL);
    assert_true(fg_cache_storable(FG_HTTP_GET, NULL, false, &r)); /* heuristically cacheable */
}

/* §5.2.1.5: the request's no-store too */
static void test_request_no_store(void **state)
{
    (void)state;
    struct fg_cache_response r;
    head("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n\r\n", &r, NULL);
    struct fg_cache_control req = cc_of("no-store");
    assert_false(fg_cache_storable(FG_HTTP_GET, &req, false, &r));
}

/* §3.5: responses to requests with Authorization only with explicit permission */
static void test_authorization(void **state)
{
    (void)state;
    struct fg_cache_response r;
    head("HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n\r\n", &r, NULL);
    assert_false(fg_cache_storable(FG_HTTP_GET, NULL, true, &r));
    head("HTTP/1.1 200 OK\r\nCache-Control: public, max-age=60\r\n\r\n", &r, NULL);
    assert_true(fg_cache_storable(FG_HTTP_GET, NULL, true, &r));
    head("HTTP/1.1 200 OK\r\nCache-Control: s-maxage=60\r\n\r\n", &r, NULL);
    assert_true(fg_cache_storable(FG_HTTP_GET, NULL, true, &r));
    head("HTTP/1.1 200 OK\r\nCache-Control: must-revalidate, max-age=60\r\n\r\n", &r, NULL);
    assert_true(fg_cache_storable(FG_HTTP_GET, NULL, true, &r));
}

/* §4.2.1: s-maxage over max-age over Expires */
static void test_freshness_order(void **state)
{
    (void)state;
    struct fg_cache_response r;
    head("HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
         "Expires: Sun, 06 Nov 1994 09:49:37 GMT\r\nCache-Control: max-age=60, s-maxage=30\r\n\r\n",
         &r, NULL);
    assert_int_equal(fg_cache_freshness_lifetime(&r, 0), 30);
    head("HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
         "Expires: Sun, 06 Nov 1994 09:49:37 GMT\r\nCache-Control: max-age=60\r\n\r\n",
         &r, NULL);
    assert_int_equal(fg_cache_freshness_lifetime(&r, 0), 60);
    head("HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
         "Expires: Sun, 06 Nov 1994 09:49:37 GMT\r\n\r\n",
         &r, NULL);
    assert_int_equal(fg_cache_freshness_lifetime(&r, 0), 3600);
}

/* §5.3: an invalid Expires, "0" included, is in the past */
static void test_invalid_expires(void **state)
{
    (void)state;
    struct fg_cache_response r;
    head("HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nExpires: 0\r\n\r\n", &r, NULL);
    assert_int_equal(fg_cache_freshness_lifetime(&r, 0), 0);
    assert_true(fg_cache_storable(FG_HTTP_GET, NULL, false, &r)); /* stored, stale at once */
}

/* §4.2.2: heuristic freshness, 10% of the time since Last-Modified, capped */
static void test_heuristic(void **state)
{
    (void)state;
    struct fg_cache_response r;
    head("HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
         "Last-Modified: Sun, 06 Nov 1994 08:33:17 GMT\r\n\r\n",
         &r, NULL);
    assert_int_equal(fg_cache_freshness_lifetime(&r, 0), 98); /* 980 s / 10 */
    head("HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
         "Last-Modified: Sun, 06 Nov 1984 08:49:37 GMT\r\n\r\n",
         &r, NULL);
    assert_int_equal(fg_cache_freshness_lifetime(&r, 0), 86400);
    head("HTTP/1.1 302 Found\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
         "Last-Modified: Sun, 06 Nov 1994 08:33:17 GMT\r\n\r\n",
         &r, NULL);
    assert_int_equal(fg_cache_freshness_lifetime(&r, 0), 0); /* not heuristically cacheable */
    assert_true(fg_cache_status_heuristic(404) && !fg_cache_status_heuristic(500));
}

/* §4.2.3: age = max(apparent, Age + delay) + resident time */
static void test_age(void **state)
{
    (void)state;
    struct fg_cache_response r;
    head("HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nAge: 30\r\n\r\n", &r, NULL);
    int64_t date = 784111777;
    /* sent at date+1, received at date+3 (delay 2), now date+13 */
    assert_int_equal(fg_cache_current_age(&r, date + 1, date + 3, date + 13), 30 + 2 + 10);
    head("HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n", &r, NULL);
    /* a clock behind: apparent age 100 wins over a missing Age */
    assert_int_equal(fg_cache_current_age(&r, date + 100, date + 100, date + 100), 100);
    head("HTTP/1.1 200 OK\r\nAge: x\r\n\r\n", &r, NULL);
    assert_true(r.age == FG_CACHE_NO_VALUE);
}

/* §5.1: a list-based Age counts by its first member; anything but a non-negative integer
 * is ignored (not read as its leading digits). */
static void test_age_field_forms(void **state)
{
    (void)state;
    struct fg_cache_response r;
    head("HTTP/1.1 200 OK\r\nAge: 15, 300\r\n\r\n", &r, NULL);
    assert_int_equal(r.age, 15);
    head("HTTP/1.1 200 OK\r\nAge: 15 ,300\r\n\r\n", &r, NULL);
    assert_int_equal(r.age, 15);
    head("HTTP/1.1 200 OK\r\nAge: 7\r\nAge: 900\r\n\r\n", &r, NULL);
    assert_int_equal(r.age, 7);
    head("HTTP/1.1 200 OK\r\nAge: 99999999999\r\n\r\n", &r, NULL);
    assert_int_equal(r.age, 2147483648ull); /* §1.2.2: too large is 2^31 */
    const char *junk[] = {"15abc", "15 s", "-1", "1.5", "+3", ", 5", "0x10"};
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        char text[128];
        snprintf(text, sizeof(text), "HTTP/1.1 200 OK\r\nAge: %s\r\n\r\n", junk[i]);
        head(text, &r, NULL);
        if (r.age != FG_CACHE_NO_VALUE)
            fail_msg("Age: %s read as %llu", junk[i], (unsigned long long)r.age);
    }
}

/* §5.6.7 of RFC 9110: Expires in the obsolete forms counts like IMF-fixdate. */
static void test_obsolete_date_forms(void **state)
{
    (void)state;
    struct fg_cache_response r;
    const char *forms[] = {"Sun, 06 Nov 1994 09:49:37 GMT", "Sunday, 06-Nov-94 09:49:37 GMT",
                           "Sun Nov  6 09:49:37 1994"};
    for (size_t i = 0; i < 3; i++) {
        char text[160];
        snprintf(text, sizeof(text),
                 "HTTP/1.1 200 OK\r\nDate: Sunday, 06-Nov-94 08:49:37 GMT\r\n"
                 "Expires: %s\r\n\r\n",
                 forms[i]);
        head(text, &r, NULL);
        assert_int_equal(fg_cache_freshness_lifetime(&r, 0), 3600);
    }
}

/* RFC 9213: a targeted field replaces Cache-Control for the cache it targets */
static void test_targeted_field(void **state)
{
    (void)state;
    struct fg_cache_response r;
    const char *h = "HTTP/1.1 200 OK\r\nCache-Control: no-store\r\n"
                    "CDN-Cache-Control: max-age=600\r\n\r\n";
    head(h, &r, "cdn-cache-control");
    assert_true(fg_cache_storable(FG_HTTP_GET, NULL, false, &r));
    assert_int_equal(fg_cache_freshness_lifetime(&r, 0), 600);
    head(h, &r, NULL);
    assert_false(fg_cache_storable(FG_HTTP_GET, NULL, false, &r));
    head("HTTP/1.1 200 OK\r\nCache-Control: max-age=5\r\n\r\n", &r, "cdn-cache-control");
    assert_int_equal(fg_cache_freshness_lifetime(&r, 0), 5); /* absent: Cache-Control */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cc_parsing),
        cmocka_unit_test(test_cc_bad_values),
        cmocka_unit_test(test_storable_basics),
        cmocka_unit_test(test_request_no_store),
        cmocka_unit_test(test_authorization),
        cmocka_unit_test(test_freshness_order),
        cmocka_unit_test(test_invalid_expires),
        cmocka_unit_test(test_heuristic),
        cmocka_unit_test(test_age),
        cmocka_unit_test(test_age_field_forms),
        cmocka_unit_test(test_obsolete_date_forms),
        cmocka_unit_test(test_targeted_field),
    };
    return cmocka_run_group_tests_name("cache policy (RFC 9111)", tests, NULL, NULL);
}
