/*
 * test_room.c — a room as the stage uses it, without Redis (local mode) and with a Redis
 * that is not there (the fallback): tickets in arrival order, admission in ticket order
 * at the rate, the admitted session kept and renewed, positions that only go down, the
 * early arrivals' shuffle at the opening (a permutation, then FIFO), admin pause and
 * rate, `active off`, fail open at the configured share and fail closed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "core/core.h"
#include "redis/redis.h"
#include "waitroom/waitroom.h"

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static struct fg_waitroom *room(const char *name, uint64_t rate_milli)
{
    struct fg_waitroom_config c = {.name = name,
                                   .inlet = {.rate_milli = rate_milli},
                                   .session_ttl_ms = 60000,
                                   .active = true,
                                   .fallback_permille = 250,
                                   .poll_ms = 5000};
    struct fg_waitroom *r = fg_waitroom_configure(&c);
    assert_non_null(r);
    return r;
}

/* A visitor: a cookie jar of two tokens. */
struct visitor {
    struct fg_waitroom_token ticket, session;
    bool has_ticket, has_session;
    uint64_t last_position;
};

static enum fg_waitroom_answer visit(struct fg_waitroom *r, struct visitor *v,
                                     struct fg_waitroom_visit *out)
{
    struct fg_waitroom_visit x = {.ticket = v->ticket,
                                  .has_ticket = v->has_ticket,
                                  .session = v->session,
                                  .has_session = v->has_session,
                                  .now_ms = (uint64_t)fg_wall_ms()};
    enum fg_waitroom_answer a = fg_waitroom_check(r, NULL, &x);
    if (x.set_ticket)
        v->ticket = x.out_ticket, v->has_ticket = true;
    if (x.set_session)
        v->session = x.out_session, v->has_session = true;
    if (out != NULL)
        *out = x;
    return a;
}

static void test_fifo_at_rate(void **state)
{
    (void)state;
    struct fg_waitroom *r = room("fifo", 20000); /* 20/s */
    enum { N = 30 };
    struct visitor v[N];
    memset(v, 0, sizeof(v));
    for (int i = 0; i < N; i++) {
        struct fg_waitroom_visit x;
        assert_int_equal(visit(r, &v[i], &x), FG_WR_WAIT);
        assert_int_equal(v[i].ticket.ticket, i + 1); /* arrival order */
        v[i].last_position = x.position;
    }
    /* poll until everyone is in, recording when each got in */
    int order[N], admitted = 0;
    for (int round = 0; round < 400 && admitted < N; round++) {
        sleep_ms(10);
        for (int i = 0; i < N; i++) {
            if (v[i].has_session)
                continue;
            struct fg_waitroom_visit x;
            enum fg_waitroom_answer a = visit(r, &v[i], &x);
            if (a == FG_WR_PASS) {
                assert_true(x.admitted);
                order[admitted++] = i;
            } else {
                assert_true(x.position <= v[i].last_position); /* only goes down */
                v[i].last_position = x.position;
            }
        }
    }
    assert_int_equal(admitted, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(order[i], i); /* in ticket order */
    /* admitted: passes again without a new ticket or session */
    struct fg_waitroom_visit x;
    assert_int_equal(visit(r, &v[0], &x), FG_WR_PASS);
    assert_false(x.set_ticket);
    assert_false(x.set_session); /* not renewed before half the ttl */
}

static void test_session_expiry_and_renewal(void **state)
{
    (void)state;
    struct fg_waitroom *r = room("ttl", 1000000);
    struct visitor v = {0};
    int64_t now_s = fg_wall_s();
    v.session =
        (struct fg_waitroom_token){.kind = FG_WR_ADMITTED, .ticket = 1, .issued = now_s - 40};
    v.has_session = true;
    struct fg_waitroom_visit x;
    assert_int_equal(visit(r, &v, &x), FG_WR_PASS); /* 40 s of 60: renewed */
    assert_true(x.set_session);
    assert_true(x.out_session.issued >= now_s);
    v.session.issued = now_s - 61; /* expired: back to the queue */
    v.has_ticket = false;
    assert_int_equal(visit(r, &v, &x), FG_WR_WAIT);
    assert_true(x.set_ticket);
}

static void test_opening_shuffles_early_arrivals(void **state)
{
    (void)state;
    struct fg_waitroom_config c = {.name = "opening",
                                   .inlet = {.rate_milli = 1000000},
                                   .session_ttl_ms = 60000,
                                   .opens_at_ms = fg_wall_ms() + 600000,
                                   .active = true,
                                   .poll_ms = 5000};
    struct fg_waitroom *r = fg_waitroom_configure(&c);
    enum { E = 64 };
    struct visitor v[E + 4];
    memset(v, 0, sizeof(v));
    sleep_ms(250); /* a step ran: the room knows it is not open */
    for (int i = 0; i < E; i++) {
        struct fg_waitroom_visit x;
        assert_int_equal(visit(r, &v[i], &x), FG_WR_WAIT);
        assert_true(v[i].ticket.early);
        assert_true(x.opens_in_s > 500);
    }
    assert_int_equal(fg_waitroom_admin("opening", "open", 0), 1);
    sleep_ms(250);
    /* after the opening, later arrivals queue behind every early one */
    for (int i = E; i < E + 4; i++) {
        visit(r, &v[i], NULL);
        assert_false(v[i].ticket.early);
        assert_int_equal(v[i].ticket.ticket, i + 1);
    }
    bool seen[E + 1] = {false};
    int moved = 0;
    for (int i = 0; i < E; i++) {
        struct fg_waitroom_visit x;
        visit(r, &v[i], &x);
        assert_false(v[i].ticket.early);
        uint64_t rank = v[i].ticket.ticket;
        assert_true(rank >= 1 && rank <= E);
        assert_false(seen[rank]);
        seen[rank] = true;
        moved += rank != (uint64_t)i + 1;
    }
    assert_true(moved > E / 2); /* shuffled (all 64 in place: 1/64! odds) */
}

static void test_admin_pause_rate_and_off(void **state)
{
    (void)state;
    struct fg_waitroom *r = room("admin", 1000000);
    assert_int_equal(fg_waitroom_admin("admin", "pause", 0), 1);
    sleep_ms(150);
    struct visitor v = {0};
    visit(r, &v, NULL);
    sleep_ms(300);
    assert_int_equal(visit(r, &v, NULL), FG_WR_WAIT); /* paused: nobody moves */
    struct fg_waitroom_summary s;
    bool found = false;
    for (size_t i = 0; fg_waitroom_summary(i, &s); i++)
        if (strcmp(s.name, "admin") == 0) {
            found = true;
            break;
        }
    assert_true(found);
    assert_true(s.paused);
    assert_int_equal(s.decision, FG_WR_DEC_PAUSED_ADMIN);
    assert_int_equal(fg_waitroom_admin("admin", "resume", 0), 1);
    for (int i = 0; i < 100 && visit(r, &v, NULL) != FG_WR_PASS; i++)
        sleep_ms(20);
    assert_true(v.has_session);
    assert_int_equal(fg_waitroom_admin("admin", "rate", 5000), 1);
    assert_int_equal(fg_waitroom_admin("admin", "bogus", 0), 0);
    assert_int_equal(fg_waitroom_admin("nosuch", "pause", 0), 0);
    /* off: everyone passes, no cookie */
    assert_int_equal(fg_waitroom_admin("admin", "deactivate", 0), 1);
    struct visitor w = {0};
    struct fg_waitroom_visit x;
    assert_int_equal(visit(r, &w, &x), FG_WR_PASS);
    assert_false(x.set_ticket);
    assert_false(x.set_session);
}

/* max_active: a place is taken when the serving number reaches a ticket, not when its
 * visitor next asks (else every step until then would admit more). */
static void test_max_active_holds_places(void **state)
{
    (void)state;
    struct fg_waitroom_config c = {.name = "capped",
                                   .inlet = {.max_active = 3},
                                   .session_ttl_ms = 60000,
                                   .active = true,
                                   .poll_ms = 5000};
    struct fg_waitroom *r = fg_waitroom_configure(&c);
    struct visitor v[10];
    memset(v, 0, sizeof(v));
    for (int i = 0; i < 10; i++)
        assert_int_equal(visit(r, &v[i], NULL), FG_WR_WAIT);
    sleep_ms(500); /* several steps, nobody asks */
    struct fg_waitroom_summary s;
    for (size_t i = 0; fg_waitroom_summary(i, &s) && strcmp(s.name, "capped") != 0; i++)
        ;
    assert_string_equal(s.name, "capped");
    assert_int_equal(s.serving, 3);
    assert_int_equal(s.active, 3);
    assert_int_equal(s.decision, FG_WR_DEC_CAPPED);
    int in = 0;
    for (int i = 0; i < 10; i++)
        in += visit(r, &v[i], NULL) == FG_WR_PASS;
    assert_int_equal(in, 3);
    sleep_ms(300);
    assert_int_equal(visit(r, &v[3], NULL), FG_WR_WAIT); /* still capped */
}

/* A room whose Redis is not there: after a second the fallback decides. */
static struct fg_waitroom *redis_room(const char *name, bool closed)
{
    struct fg_redis_endpoint_config ec = {.name = name, .url = "redis://127.0.0.1:1"};
    char err[200];
    struct fg_redis_endpoint *ep = fg_redis_endpoint_new(&ec, err, sizeof(err));
    assert_non_null(ep);
    struct fg_waitroom_config c = {.name = name,
                                   .inlet = {.rate_milli = 40000}, /* 40/s, 25%: 10/s */
                                   .session_ttl_ms = 60000,
                                   .active = true,
                                   .redis = ep,
                                   .redis_timeout_ms = 50,
                                   .fallback_permille = 250,
                                   .fail_closed = closed,
                                   .poll_ms = 5000};
    struct fg_waitroom *r = fg_waitroom_configure(&c);
    fg_redis_endpoint_unref(ep);
    return r;
}

static void test_fallback_open_and_closed(void **state)
{
    (void)state;
    struct fg_waitroom *open = redis_room("fb-open", false);
    struct fg_waitroom *closed = redis_room("fb-closed", true);
    struct visitor v = {0};
    struct fg_waitroom_visit x = {.now_ms = (uint64_t)fg_wall_ms()};
    /* Redis is needed for a ticket; without a worker's client it cannot be asked */
    assert_int_equal(fg_waitroom_check(open, NULL, &x), FG_WR_NEED_TICKET);
    sleep_ms(1300);
    /* an admitted shopper keeps shopping */
    v.session =
        (struct fg_waitroom_token){.kind = FG_WR_ADMITTED, .ticket = 3, .issued = fg_wall_s()};
    v.has_session = true;
    assert_int_equal(visit(open, &v, NULL), FG_WR_PASS);
    assert_int_equal(visit(closed, &v, NULL), FG_WR_PASS);
    /* new arrivals: ~10/s admitted by the open room over 2 s, none by the closed one */
    int in_open = 0, in_closed = 0;
    for (int i = 0; i < 200; i++) {
        struct visitor a = {0}, b = {0};
        struct fg_waitroom_visit xa, xb;
        if (visit(open, &a, &xa) == FG_WR_PASS)
            in_open++;
        assert_true(xa.fallback);
        if (visit(closed, &b, &xb) == FG_WR_PASS)
            in_closed++;
        sleep_ms(10);
    }
    assert_int_equal(in_closed, 0);
    assert_true(in_open >= 10 && in_open <= 40);
}

int main(void)
{
    assert_true(fg_waitroom_start());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_at_rate),
        cmocka_unit_test(test_session_expiry_and_renewal),
        cmocka_unit_test(test_opening_shuffles_early_arrivals),
        cmocka_unit_test(test_admin_pause_rate_and_off),
        cmocka_unit_test(test_max_active_holds_places),
        cmocka_unit_test(test_fallback_open_and_closed),
    };
    int rc = cmocka_run_group_tests_name("waitroom rooms", tests, NULL, NULL);
    fg_waitroom_stop();
    return rc;
}
