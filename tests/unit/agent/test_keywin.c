/*
 * test_keywin.c — the recent-key window: keys and their sequences found again, forgotten
 * on a failed commit, and both bounds held (keys, bytes of keys) with the oldest keys
 * going first, whatever the mix of key lengths.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/agentd.h"

/* Key number i, len >= 4 bytes: i in base 26 first (unique below 26^4), then filler. */
static void key_of(uint64_t i, size_t len, char *out)
{
    for (size_t k = 0; k < len; k++)
        out[k] = (char)('a' + (i * 31 + k * 7) % 26);
    for (size_t k = 0; k < 4; k++, i /= 26)
        out[k] = (char)('A' + i % 26);
}

static void test_find_add_forget(void **state)
{
    (void)state;
    struct fg_keywin *w = fg_keywin_new(16, 4096);
    assert_non_null(w);
    uint64_t seq = 0;
    assert_int_equal(fg_keywin_find(w, "order-1", 7, &seq), 0);
    uint32_t id = fg_keywin_add(w, "order-1", 7, 41);
    assert_true(id != 0);
    assert_int_equal(fg_keywin_find(w, "order-1", 7, &seq), id);
    assert_int_equal(seq, 41);
    assert_int_equal(fg_keywin_find(w, "order-1x", 8, NULL), 0);
    assert_int_equal(fg_keywin_find(w, "order-", 6, NULL), 0);
    assert_int_equal(fg_keywin_count(w), 1);
    fg_keywin_forget(w, id, 40); /* another record's: kept */
    assert_int_equal(fg_keywin_find(w, "order-1", 7, NULL), id);
    fg_keywin_forget(w, id, 41);
    assert_int_equal(fg_keywin_find(w, "order-1", 7, NULL), 0);
    assert_int_equal(fg_keywin_count(w), 0);
    assert_int_equal(fg_keywin_add(w, "", 0, 1), 0); /* not a key the protocol allows */
    fg_keywin_free(w);
    assert_null(fg_keywin_new(0, 4096));
    assert_null(fg_keywin_new(16, 100)); /* not even one key of 255 bytes */
}

/* Insert keys of random lengths; the window must hold a suffix of what was added (the
 * newest always), within both bounds, each key with its own sequence. */
static void check_bounds(uint32_t max_keys, size_t max_bytes, size_t min_len, size_t max_len)
{
    struct fg_keywin *w = fg_keywin_new(max_keys, max_bytes);
    assert_non_null(w);
    enum { N = 20000 };
    static uint8_t lens[N];
    srandom(7);
    char key[256];
    for (uint64_t i = 0; i < N; i++) {
        lens[i] = (uint8_t)(min_len + (size_t)random() % (max_len - min_len + 1));
        key_of(i, lens[i], key);
        assert_true(fg_keywin_add(w, key, lens[i], i + 1) != 0);
        if (i % 997 != 0 && i != N - 1)
            continue;
        /* Walk back from the newest: present, then absent for good. */
        size_t present = 0, bytes = 0;
        bool gone = false;
        for (uint64_t j = i + 1; j-- > 0;) {
            key_of(j, lens[j], key);
            uint64_t seq = 0;
            bool found = fg_keywin_find(w, key, lens[j], &seq) != 0;
            if (found) {
                assert_false(gone);
                assert_int_equal(seq, j + 1);
                present++;
                bytes += lens[j];
            } else {
                gone = true;
            }
        }
        assert_true(present >= 1);
        assert_true(present <= max_keys);
        assert_true(bytes <= max_bytes);
        assert_int_equal(fg_keywin_count(w), present);
        /* Not wasteful: the ring keeps at least half of what its bytes could hold. */
        if (i > 10 * max_keys)
            assert_true(present == max_keys || bytes + max_len >= max_bytes / 2);
    }
    fg_keywin_free(w);
}

static void test_bounded_by_keys(void **state)
{
    (void)state;
    check_bounds(100, 1 << 20, 4, 255);
}

static void test_bounded_by_bytes(void **state)
{
    (void)state;
    check_bounds(100000, 4096, 4, 255);
    check_bounds(100000, 8192, 30, 40);
    check_bounds(50, 2000, 36, 36);
}

static void test_memory_is_what_the_docs_say(void **state)
{
    (void)state;
    /* flashgate-agent(8): dedup_window x 32 bytes + dedup_window_bytes (100000 keys:
     * 262144 buckets of 4 bytes, entries of 24). */
    assert_int_equal(fg_keywin_memory(100000, 4u << 20), 100000u * 24 + 262144u * 4 + (4u << 20));
    assert_true(fg_keywin_memory(100000, 4u << 20) <= 100000u * 35 + (4u << 20));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_add_forget),
        cmocka_unit_test(test_bounded_by_keys),
        cmocka_unit_test(test_bounded_by_bytes),
        cmocka_unit_test(test_memory_is_what_the_docs_say),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
