/*
 * test_inlet.c — the inlet's arithmetic: a fixed rate admits exactly rate × time (no
 * drift, fractional rates carried), nobody beyond those waiting, no burst after a pause
 * or an idle queue, max_active caps, adaptive pause and half rate, the admin pause and
 * the opening; ETA rounding.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "waitroom/waitroom.h"

/* Run steps of `ms` for `total` ms with `issued` waiting; return how many were admitted. */
static uint64_t run(const struct fg_waitroom_inlet *in, uint64_t issued, uint64_t ms,
                    uint64_t total, struct fg_waitroom_step *s)
{
    s->issued = issued;
    s->open = true;
    uint64_t start = s->serving;
    for (uint64_t t = 0; t < total; t += ms) {
        s->elapsed_ms = ms;
        fg_waitroom_inlet_step(in, s);
        assert_true(s->new_serving >= s->serving);
        assert_true(s->new_serving <= s->issued);
        s->serving = s->new_serving;
        s->carry = s->new_carry;
    }
    return s->serving - start;
}

static void test_fixed_rate_exact(void **state)
{
    (void)state;
    struct fg_waitroom_inlet in = {.rate_milli = 100000}; /* 100/s */
    struct fg_waitroom_step s = {0};
    assert_int_equal(run(&in, 1000000, 100, 10000, &s), 1000);
    /* uneven steps, same total */
    struct fg_waitroom_step s2 = {0};
    s2.issued = 1000000;
    s2.open = true;
    uint64_t steps[] = {7, 93, 100, 250, 50, 500};
    uint64_t total = 0;
    for (int rep = 0; rep < 10; rep++)
        for (size_t i = 0; i < 6; i++) {
            s2.elapsed_ms = steps[i];
            total += steps[i];
            fg_waitroom_inlet_step(&in, &s2);
            s2.serving = s2.new_serving;
            s2.carry = s2.new_carry;
        }
    assert_int_equal(total, 10000);
    assert_int_equal(s2.serving, 1000);
    assert_int_equal(s.decision, FG_WR_DEC_MOVED);
}

static void test_fractional_rate_no_drift(void **state)
{
    (void)state;
    struct fg_waitroom_inlet in = {.rate_milli = 333}; /* 1 every ~3 s */
    struct fg_waitroom_step s = {0};
    assert_int_equal(run(&in, 1000000, 100, 3600 * 1000, &s), 1198); /* 0.333 × 3600 */
}

static void test_never_beyond_waiting(void **state)
{
    (void)state;
    struct fg_waitroom_inlet in = {.rate_milli = 100000};
    struct fg_waitroom_step s = {0};
    assert_int_equal(run(&in, 30, 100, 10000, &s), 30);
    assert_int_equal(s.serving, 30);
    assert_int_equal(s.decision, FG_WR_DEC_IDLE);
    /* the idle time built no credit: 5 new arrivals go at the rate, not at once */
    s.issued = 35;
    s.elapsed_ms = 10;
    fg_waitroom_inlet_step(&(struct fg_waitroom_inlet){.rate_milli = 100000}, &s);
    assert_int_equal(s.new_serving, 31); /* 10 ms × 100/s = 1 */
}

static void test_no_burst_after_pause(void **state)
{
    (void)state;
    struct fg_waitroom_inlet in = {.rate_milli = 10000}; /* 10/s */
    struct fg_waitroom_step s = {.issued = 1000, .open = true, .paused = true};
    s.elapsed_ms = 60000;
    fg_waitroom_inlet_step(&in, &s);
    assert_int_equal(s.decision, FG_WR_DEC_PAUSED_ADMIN);
    assert_int_equal(s.new_serving, 0);
    s.paused = false;
    s.carry = s.new_carry;
    s.elapsed_ms = 60000; /* a long gap: capped at one second */
    fg_waitroom_inlet_step(&in, &s);
    assert_int_equal(s.new_serving, 10);
}

static void test_max_active(void **state)
{
    (void)state;
    struct fg_waitroom_inlet in = {.max_active = 50};
    struct fg_waitroom_step s = {.issued = 1000, .open = true, .active = 20, .elapsed_ms = 100};
    fg_waitroom_inlet_step(&in, &s);
    assert_int_equal(s.new_serving, 30);
    assert_int_equal(s.decision, FG_WR_DEC_CAPPED);
    s.serving = s.new_serving;
    s.active = 50;
    fg_waitroom_inlet_step(&in, &s);
    assert_int_equal(s.new_serving, 30);
    assert_int_equal(s.decision, FG_WR_DEC_CAPPED);
    s.active = 49; /* one session ended */
    fg_waitroom_inlet_step(&in, &s);
    assert_int_equal(s.new_serving, 31);
    /* with a rate too: the smaller of the two */
    struct fg_waitroom_inlet both = {.rate_milli = 100000, .max_active = 1000};
    struct fg_waitroom_step s2 = {.issued = 1000, .open = true, .active = 0, .elapsed_ms = 100};
    fg_waitroom_inlet_step(&both, &s2);
    assert_int_equal(s2.new_serving, 10);
    assert_int_equal(s2.decision, FG_WR_DEC_MOVED);
}

static void test_adaptive(void **state)
{
    (void)state;
    struct fg_waitroom_inlet in = {
        .rate_milli = 100000, .p99_limit_us = 800000, .err_limit_permille = 50};
    struct fg_waitroom_step s = {.issued = 1000, .open = true, .elapsed_ms = 1000};
    s.p99_us = 900000; /* above 800 ms */
    fg_waitroom_inlet_step(&in, &s);
    assert_int_equal(s.decision, FG_WR_DEC_PAUSED_APP);
    assert_int_equal(s.new_serving, 0);
    s.p99_us = 700000; /* above 80% of it: half rate */
    fg_waitroom_inlet_step(&in, &s);
    assert_int_equal(s.decision, FG_WR_DEC_SLOWED);
    assert_int_equal(s.new_serving, 50);
    s.p99_us = 100000;
    s.err_permille = 51; /* 5.1% 5xx */
    fg_waitroom_inlet_step(&in, &s);
    assert_int_equal(s.decision, FG_WR_DEC_PAUSED_APP);
    s.err_permille = 10;
    fg_waitroom_inlet_step(&in, &s);
    assert_int_equal(s.decision, FG_WR_DEC_MOVED);
    assert_int_equal(s.new_serving, 100);
    /* not adaptive: the same numbers change nothing */
    struct fg_waitroom_inlet plain = {.rate_milli = 100000};
    s.p99_us = 5000000;
    s.err_permille = 900;
    fg_waitroom_inlet_step(&plain, &s);
    assert_int_equal(s.decision, FG_WR_DEC_MOVED);
}

static void test_not_open(void **state)
{
    (void)state;
    struct fg_waitroom_inlet in = {.rate_milli = 100000};
    struct fg_waitroom_step s = {.issued = 500, .open = false, .elapsed_ms = 1000};
    fg_waitroom_inlet_step(&in, &s);
    assert_int_equal(s.decision, FG_WR_DEC_NOT_OPEN);
    assert_int_equal(s.new_serving, 0);
}

static void test_eta(void **state)
{
    (void)state;
    assert_int_equal(fg_waitroom_eta_s(0, 100000), 0);
    assert_int_equal(fg_waitroom_eta_s(1, 100000), 1);
    assert_int_equal(fg_waitroom_eta_s(4211, 50000), 85); /* 84.22 rounded up */
    assert_int_equal(fg_waitroom_eta_s(10, 0), UINT32_MAX);
    assert_string_equal(fg_waitroom_decision_name(FG_WR_DEC_PAUSED_APP), "paused_app");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_rate_exact),
        cmocka_unit_test(test_fractional_rate_no_drift),
        cmocka_unit_test(test_never_beyond_waiting),
        cmocka_unit_test(test_no_burst_after_pause),
        cmocka_unit_test(test_max_active),
        cmocka_unit_test(test_adaptive),
        cmocka_unit_test(test_not_open),
        cmocka_unit_test(test_eta),
    };
    return cmocka_run_group_tests_name("waitroom inlet", tests, NULL, NULL);
}
