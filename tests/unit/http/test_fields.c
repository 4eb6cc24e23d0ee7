/* test_fields.c — field helpers: name comparison, lookup, hop-by-hop fields, Connection
 * lists and token lists; and reason phrases. Slices sit before an unreadable page. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "helpers.h"
#include "http/http.h"

/* fg_http_name_eq over a guarded copy of name */
static bool name_eq(const char *name, const char *lit)
{
    struct guard g;
    size_t len = strlen(name);
    char *p = guard_place(&g, name, len);
    bool r = fg_http_name_eq(p, len, lit);
    guard_free(&g);
    return r;
}

static void test_name_eq(void **state)
{
    (void)state;
    assert_true(name_eq("Content-Length", "content-length"));
    assert_true(name_eq("CONTENT-LENGTH", "content-length"));
    assert_true(name_eq("content-length", "content-length"));
    assert_true(name_eq("", ""));
    assert_false(name_eq("Content-Lengt", "content-length"));
    assert_false(name_eq("Content-Lengths", "content-length"));
    assert_false(name_eq("", "a"));
    assert_false(name_eq("a", ""));
    assert_false(name_eq("Content_Length", "content-length"));
    /* only ASCII letters fold: '@' is not '`', '[' is not '{' */
    assert_false(name_eq("@", "`"));
    assert_false(name_eq("[", "{"));
    assert_false(name_eq("\xc0", "\xe0"));
    /* a NUL in the slice does not end it early */
    assert_false(fg_http_name_eq("ab\0", 3, "ab"));
}

static void test_find_header(void **state)
{
    (void)state;
    struct fg_http_header h[] = {
        {"A", 1, "1", 1}, {"x-Y", 3, "2", 1}, {"X-y", 3, "3", 1}, {"X-Yz", 4, "4", 1}};
    assert_ptr_equal(fg_http_find_header(h, 4, "x-y"), &h[1]);
    assert_ptr_equal(fg_http_find_header(h, 4, "a"), &h[0]);
    assert_ptr_equal(fg_http_find_header(h, 4, "x-yz"), &h[3]);
    assert_null(fg_http_find_header(h, 4, "x"));
    assert_null(fg_http_find_header(h, 0, "a"));
    assert_null(fg_http_find_header(h, 1, "x-y"));
}

static void test_cookie(void **state)
{
    (void)state;
    struct fg_http_header h[] = {{"Cookie", 6, "a=1; sid=x1;b=2", 15},
                                 {"X-Cookie", 8, "sid=no", 6},
                                 {"COOKIE", 6, " sidx=3;  sid=y22 ;sid", 22},
                                 {"Cookie", 6, "sid=", 4}};
    size_t len = 99;
    const char *v = fg_http_cookie(h, 4, "sid", FG_HTTP_COOKIE_FIRST, &len);
    assert_non_null(v);
    assert_int_equal(len, 2);
    assert_memory_equal(v, "x1", 2);
    /* the last: the empty "sid=" of the fourth field (a bare "sid" does not count) */
    v = fg_http_cookie(h, 4, "sid", FG_HTTP_COOKIE_LAST, &len);
    assert_ptr_equal(v, h[3].value + 4);
    assert_int_equal(len, 0);
    /* without it: "sid=y22 " in the third field (the space before ';' is the value's) */
    v = fg_http_cookie(h, 3, "sid", FG_HTTP_COOKIE_LAST, &len);
    assert_non_null(v);
    assert_int_equal(len, 4);
    assert_memory_equal(v, "y22 ", 4);
    v = fg_http_cookie(h, 4, "b", FG_HTTP_COOKIE_LAST, &len);
    assert_non_null(v);
    assert_int_equal(len, 1);
    assert_memory_equal(v, "2", 1);
    v = fg_http_cookie(h, 4, "sidx", FG_HTTP_COOKIE_FIRST, &len);
    assert_non_null(v);
    assert_memory_equal(v, "3", len);
    /* a name that is a prefix of another, or only in another field, is not found */
    assert_null(fg_http_cookie(h, 4, "si", FG_HTTP_COOKIE_FIRST, &len));
    assert_null(fg_http_cookie(h, 2, "sidx", FG_HTTP_COOKIE_LAST, &len));
    assert_null(fg_http_cookie(h, 0, "sid", FG_HTTP_COOKIE_LAST, &len));
}

static void test_hop_by_hop(void **state)
{
    (void)state;
    const char *yes[] = {
        "Connection", "connection", "Keep-Alive", "keep-alive",        "Proxy-Connection",
        "TE",         "te",         "Trailer",    "Transfer-Encoding", "TRANSFER-ENCODING",
        "Upgrade",    "UPGRADE"};
    for (size_t i = 0; i < ARRAY_LEN(yes); i++)
        if (!fg_http_is_hop_by_hop(yes[i], strlen(yes[i])))
            fail_msg("%s should be hop-by-hop", yes[i]);
    const char *no[] = {"Content-Length",
                        "Host",
                        "Te-x",
                        "Authorization",
                        "Proxy-Authorization",
                        "Trailers",
                        "Connections",
                        "Upgrade-Insecure-Requests",
                        "Transfer-Encodings",
                        "T",
                        "",
                        "Keep_Alive",
                        "X-Connection"};
    for (size_t i = 0; i < ARRAY_LEN(no); i++)
        if (fg_http_is_hop_by_hop(no[i], strlen(no[i])))
            fail_msg("%s should not be hop-by-hop", no[i]);
}

static bool has(const char *v, const char *tok)
{
    struct guard g;
    size_t len = strlen(v);
    char *p = guard_place(&g, v, len);
    bool r = fg_http_list_has_token(p, len, tok);
    guard_free(&g);
    return r;
}

static void test_list_has_token(void **state)
{
    (void)state;
    assert_true(has(" gzip, Chunked ,br", "chunked"));
    assert_true(has(" gzip, Chunked ,br", "br"));
    assert_true(has(" gzip, Chunked ,br", "gzip"));
    assert_true(has("close", "close"));
    assert_true(has(",,close,,", "close"));
    assert_true(has("a,\tclose\t", "close"));
    assert_true(has("CLOSE", "close"));
    assert_false(has(" gzip, Chunked ,br", "chunk"));
    assert_false(has("closed", "close"));
    assert_false(has("xclose", "close"));
    assert_false(has("close x", "close"));
    assert_false(has("", "x"));
    assert_false(has(" , ,", "x"));
    assert_false(has("c lose", "close"));
}

static void test_connection_lists(void **state)
{
    (void)state;
    struct fg_http_header h[] = {{"Host", 4, "a", 1},
                                 {"Connection", 10, "keep-alive, X-Foo", 17},
                                 {"connection", 10, "x-bar ,close", 12},
                                 {"X-Baz", 5, "connection", 10}};
    assert_true(fg_http_connection_lists(h, 4, "x-foo", 5));
    assert_true(fg_http_connection_lists(h, 4, "X-FOO", 5));
    assert_true(fg_http_connection_lists(h, 4, "X-Bar", 5));
    assert_true(fg_http_connection_lists(h, 4, "Keep-Alive", 10));
    assert_true(fg_http_connection_lists(h, 4, "close", 5));
    assert_false(fg_http_connection_lists(h, 4, "x-fo", 4));
    assert_false(fg_http_connection_lists(h, 4, "x-baz", 5));
    assert_false(fg_http_connection_lists(h, 4, "", 0));
    assert_false(fg_http_connection_lists(h, 1, "x-foo", 5));
    /* a name longer than any token cannot be listed */
    char longname[300];
    memset(longname, 'a', sizeof(longname));
    assert_false(fg_http_connection_lists(h, 4, longname, sizeof(longname)));
}

static void test_reasons(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *reason;
    } t[] = {{100, "Continue"},
             {101, "Switching Protocols"},
             {200, "OK"},
             {202, "Accepted"},
             {204, "No Content"},
             {206, "Partial Content"},
             {301, "Moved Permanently"},
             {304, "Not Modified"},
             {400, "Bad Request"},
             {404, "Not Found"},
             {413, "Content Too Large"},
             {414, "URI Too Long"},
             {417, "Expectation Failed"},
             {429, "Too Many Requests"},
             {431, "Request Header Fields Too Large"},
             {502, "Bad Gateway"},
             {503, "Service Unavailable"},
             {504, "Gateway Timeout"},
             {505, "HTTP Version Not Supported"},
             {799, "Unknown"},
             {0, "Unknown"},
             {-1, "Unknown"}};
    for (size_t i = 0; i < ARRAY_LEN(t); i++)
        assert_string_equal(fg_http_reason(t[i].status), t[i].reason);
    /* every error's status has a real reason phrase */
    for (int e = 1; e < FG_HTTP_E__COUNT; e++)
        assert_string_not_equal(fg_http_reason(fg_http_error_status((enum fg_http_error)e)),
                                "Unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_eq),        cmocka_unit_test(test_find_header),
        cmocka_unit_test(test_cookie),         cmocka_unit_test(test_hop_by_hop),
        cmocka_unit_test(test_list_has_token), cmocka_unit_test(test_connection_lists),
        cmocka_unit_test(test_reasons),
    };
    return cmocka_run_group_tests_name("http field helpers", tests, NULL, NULL);
}
