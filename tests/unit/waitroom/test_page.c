/*
 * test_page.c — the waiting page and its status: the shop's template with every
 * placeholder replaced (and escaped), unknown ones left as written, the polling script
 * where {{script}} stands; the built-in page without external assets; the JSON status.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "waitroom/waitroom.h"

static char *render(const char *tmpl, const struct fg_waitroom_visit *v, const char *target)
{
    struct evbuffer *b = evbuffer_new();
    fg_waitroom_page(b, tmpl, tmpl ? strlen(tmpl) : 0, "sale", v, 2500, "", target, strlen(target));
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    evbuffer_free(b);
    return s;
}

static void test_template_placeholders(void **state)
{
    (void)state;
    struct fg_waitroom_visit v = {.position = 4211, .eta_s = 185, .now_ms = 1796600000000ull};
    char *s = render("<p>#{{position}} ({{ahead}} ahead), {{eta}}, {{updated}} in {{room}}; "
                     "back to {{target}} {{nosuch}} {{script}}</p>",
                     &v, "/shop?a=1&b=<x>");
    assert_non_null(strstr(s, "<p>#4,211 (4,210 ahead), about 3 minutes, "));
    assert_non_null(strstr(s, " UTC in sale; back to /shop?a=1&amp;b=&lt;x&gt; {{nosuch}} "));
    assert_non_null(strstr(s, "<script>"));
    assert_non_null(strstr(s, "var pace = 2500, shown = 4211;"));
    assert_non_null(strstr(s, "'X-Waitroom': 'status'"));
    assert_null(strstr(s, "{{script}}"));
    free(s);
}

static void test_builtin_page(void **state)
{
    (void)state;
    struct fg_waitroom_visit v = {.position = 12, .eta_s = 30, .now_ms = 1796600000000ull};
    char *s = render(NULL, &v, "/shop");
    assert_non_null(strstr(s, "id=\"wr-position\">12<"));
    assert_non_null(strstr(s, "id=\"wr-ahead\">11<"));
    assert_non_null(strstr(s, "id=\"wr-eta\">less than a minute<"));
    assert_null(strstr(s, "http://"));
    assert_null(strstr(s, "https://"));
    assert_null(strstr(s, " src="));
    assert_null(strstr(s, "{{"));
    free(s);
    /* before the opening */
    struct fg_waitroom_visit early = {.position = 3, .opens_in_s = 600, .now_ms = 1};
    s = render(NULL, &early, "/shop");
    assert_non_null(strstr(s, "the sale opens in about 10 minutes"));
    free(s);
}

static void test_status_json(void **state)
{
    (void)state;
    struct fg_waitroom_visit v = {
        .position = 7, .eta_s = 2, .now_ms = 1796600000123ull, .has_ticket = true};
    v.ticket.ticket = 99;
    struct evbuffer *b = evbuffer_new();
    fg_waitroom_status_json(b, "sale", &v, 1000);
    size_t n = evbuffer_get_length(b);
    char s[512];
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    assert_string_equal(s, "{\"room\":\"sale\",\"admitted\":false,\"position\":7,\"ahead\":6,"
                           "\"eta_s\":2,\"opens_in_s\":0,\"poll_ms\":1000,\"updated\":1796600000,"
                           "\"ticket\":99,\"fallback\":false}\n");
    evbuffer_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_template_placeholders),
        cmocka_unit_test(test_builtin_page),
        cmocka_unit_test(test_status_json),
    };
    return cmocka_run_group_tests_name("waitroom page", tests, NULL, NULL);
}
