/* test_purges.c — the purges an instance remembers (proxy/fleet/purges.c): a shared-tier
 * copy is purged when a matching purge (key, prefix, tag, everything) came after it was
 * stored, with the clock margin, and counts as purged once the ring forgot purges newer
 * than it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "fleet/fleet.h"

#define T0 1700000000000LL /* ms */
#define S  FG_FLEET_SKEW_MS

static bool purged(const char *key, const char *tags, int64_t stored)
{
    return fg_fleet_purged_since(key, strlen(key), tags, strlen(tags), stored);
}

static void test_matching_purges_after_the_copy(void **state)
{
    (void)state;
    fg_fleet_remember_purge(FG_FLEET_PURGE_KEY, "h/a", 3, T0);
    fg_fleet_remember_purge(FG_FLEET_PURGE_PREFIX, "h/img/", 6, T0 + 10);
    fg_fleet_remember_purge(FG_FLEET_PURGE_TAG, "sku-1", 5, T0 + 20);
    /* stored before: purged */
    assert_true(purged("h/a", "", T0 - 1000));
    assert_true(purged("h/img/x.png", "", T0 - 1000));
    assert_true(purged("h/p", " home sku-1 ", T0 - 1000));
    /* not matching */
    assert_false(purged("h/ab", "", T0 - 1000));
    assert_false(purged("h/im", "", T0 - 1000));
    assert_false(purged("h/p", " sku-10 xsku-1 ", T0 - 1000));
    /* stored after, beyond the clock margin: not purged; within it: purged */
    assert_false(purged("h/a", "", T0 + S + 1));
    assert_true(purged("h/a", "", T0 + S - 1));
}

static void test_flush_purges_everything_before(void **state)
{
    (void)state;
    fg_fleet_remember_flush(T0 + 100000);
    assert_true(purged("x/y", "", T0 + 100000 - 5000));
    assert_false(purged("x/y", "", T0 + 100000 + S + 1));
}

static void test_forgotten_purges_count_as_purged(void **state)
{
    (void)state;
    int64_t base = T0 + 1000000;
    for (int i = 0; i < FG_FLEET_PURGES_KEPT + 10; i++)
        fg_fleet_remember_purge(FG_FLEET_PURGE_KEY, "z/z", 3, base + i);
    /* purges up to base+9 were forgotten: a copy stored before them cannot be told */
    assert_true(purged("other/key", "", base + 9 + S - 1));
    assert_false(purged("other/key", "", base + FG_FLEET_PURGES_KEPT + 10 + S + 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matching_purges_after_the_copy),
        cmocka_unit_test(test_flush_purges_everything_before),
        cmocka_unit_test(test_forgotten_purges_count_as_purged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
