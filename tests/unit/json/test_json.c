/* test_json.c — the strict JSON reader, the string writer and the UTF-8 decoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <event2/buffer.h>

#include "json/json.h"

static void test_json_reader_strict(void **state)
{
    (void)state;
    char err[64];
    const char *ok = " {\"a\":[1,-2.5e3,true,false,null,\"\\u00e9\\ud83d\\ude00\\/\"],\"b\":{}} ";
    struct fg_json *j = fg_json_parse(ok, strlen(ok), err, sizeof(err));
    assert_non_null(j);
    const struct fg_json *a = fg_json_get(j, "a");
    assert_int_equal(a->n, 6);
    const struct fg_json *s = a->child->next->next->next->next->next;
    assert_string_equal(s->str, "\xc3\xa9\xf0\x9f\x98\x80/");
    fg_json_free(j);
    const char *bad[] = {"",   "{",  "[1,]", "{\"a\":1,}", "'x'",   "\"\\ud800\"", "\"a\nb\"",
                         "01", "1.", "tru",  "{\"a\" 1}",  "[1] 2", "\"\\x\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        j = fg_json_parse(bad[i], strlen(bad[i]), err, sizeof(err));
        if (j != NULL)
            fail_msg("accepted %s", bad[i]);
    }
    char deep[200];
    memset(deep, '[', sizeof(deep));
    assert_null(fg_json_parse(deep, sizeof(deep), err, sizeof(err)));
}

static void test_json_put_string_escapes(void **state)
{
    (void)state;
    struct evbuffer *b = evbuffer_new();
    fg_json_put_string(b, "a\"\\\n\x01\x7f\xc3\xa9", 8, false);
    fg_json_put_string(b, "\xe9", 1, true);
    size_t n = evbuffer_get_length(b);
    char out[64];
    assert_true(n < sizeof(out));
    evbuffer_remove(b, out, n);
    out[n] = '\0';
    assert_string_equal(out, "\"a\\\"\\\\\\n\\u0001\\u007f\xc3\xa9\"\"\\u00e9\"");
    evbuffer_free(b);
    char l[] = "x\xc3\xa9\xe2\x82\xac";
    assert_int_equal(fg_json_latin1(l, strlen(l)), 5);
    assert_memory_equal(l, "x\xe9\xe2\x82\xac", 5);
}

static void test_json_utf8_next(void **state)
{
    (void)state;
    uint32_t cp = 0;
    assert_int_equal(fg_json_utf8_next("A", 1, &cp), 1);
    assert_int_equal(cp, 'A');
    assert_int_equal(fg_json_utf8_next("\xf0\x9f\x98\x80", 4, &cp), 4);
    assert_int_equal(cp, 0x1f600);
    assert_int_equal(fg_json_utf8_next("", 0, &cp), 0);
    assert_int_equal(fg_json_utf8_next("\xc0\x80", 2, &cp), 0);         /* overlong */
    assert_int_equal(fg_json_utf8_next("\xed\xa0\x80", 3, &cp), 0);     /* surrogate */
    assert_int_equal(fg_json_utf8_next("\xf0\x9f\x98", 3, &cp), 0);     /* cut short */
    assert_int_equal(fg_json_utf8_next("\xf4\x90\x80\x80", 4, &cp), 0); /* > U+10FFFF */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_reader_strict),
        cmocka_unit_test(test_json_put_string_escapes),
        cmocka_unit_test(test_json_utf8_next),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
