/*
 * inlet.c — how far the serving number moves in one step: the fixed rate, the cap on
 * active sessions and the adaptive pause, in integers only. The same arithmetic runs in
 * the Redis script (redis.c) for the fleet; the unit tests pin it here.
 *
 * The rate is carried in micro-admissions: each step adds elapsed_ms * rate_milli (rate
 * in admissions per 1000 s), a whole admission is 10^6. Elapsed time is capped at a
 * second and the carry at one admission, so a pause, an idle queue or a slow step never
 * turns into a burst afterwards.
 */
#include "waitroom/waitroom.h"

#define MICRO          1000000ull
#define ELAPSED_MAX_MS 1000ull
#define SLOW_PERCENT   80 /* adaptive: above 80% of a threshold, half the rate */

static const char *const decision_names[FG_WR_DEC__COUNT] = {
    [FG_WR_DEC_MOVED] = "moved",           [FG_WR_DEC_IDLE] = "idle",
    [FG_WR_DEC_CAPPED] = "capped",         [FG_WR_DEC_SLOWED] = "slowed",
    [FG_WR_DEC_PAUSED_APP] = "paused_app", [FG_WR_DEC_PAUSED_ADMIN] = "paused_admin",
    [FG_WR_DEC_NOT_OPEN] = "not_open",     [FG_WR_DEC_INACTIVE] = "inactive",
};

const char *fg_waitroom_decision_name(enum fg_waitroom_decision d)
{
    return (unsigned)d < FG_WR_DEC__COUNT ? decision_names[d] : "unknown";
}

static bool over(uint64_t value, uint64_t limit, uint64_t percent)
{
    return limit > 0 && value * 100 > limit * percent;
}

void fg_waitroom_inlet_step(const struct fg_waitroom_inlet *in, struct fg_waitroom_step *s)
{
    s->new_serving = s->serving;
    s->new_carry = s->carry > MICRO ? MICRO : s->carry;
    if (!s->open) {
        s->decision = FG_WR_DEC_NOT_OPEN;
        s->new_carry = 0;
        return;
    }
    if (s->paused) {
        s->decision = FG_WR_DEC_PAUSED_ADMIN;
        s->new_carry = 0;
        return;
    }
    if (over(s->p99_us, in->p99_limit_us, 100) ||
        over(s->err_permille, in->err_limit_permille, 100)) {
        s->decision = FG_WR_DEC_PAUSED_APP;
        s->new_carry = 0;
        return;
    }
    bool slow = over(s->p99_us, in->p99_limit_us, SLOW_PERCENT) ||
                over(s->err_permille, in->err_limit_permille, SLOW_PERCENT);
    uint64_t waiting = s->issued > s->serving ? s->issued - s->serving : 0;
    if (waiting == 0) {
        s->decision = FG_WR_DEC_IDLE;
        s->new_carry = 0;
        return;
    }
    uint64_t n = waiting;
    if (in->rate_milli > 0) {
        uint64_t ms = s->elapsed_ms > ELAPSED_MAX_MS ? ELAPSED_MAX_MS : s->elapsed_ms;
        uint64_t budget = s->new_carry + ms * (slow ? in->rate_milli / 2 : in->rate_milli);
        n = budget / MICRO;
        s->new_carry = budget % MICRO;
        if (n > waiting) {
            n = waiting;
            s->new_carry = 0;
        }
    }
    s->decision = slow ? FG_WR_DEC_SLOWED : FG_WR_DEC_MOVED;
    if (in->max_active > 0) {
        uint64_t room = s->active < in->max_active ? in->max_active - s->active : 0;
        if (n >= room) {
            if (n > room || room == 0)
                s->decision = FG_WR_DEC_CAPPED;
            n = room;
            s->new_carry = 0;
        }
    }
    s->new_serving = s->serving + n;
}

uint64_t fg_waitroom_eta_s(uint64_t position, uint64_t rate_milli)
{
    if (position == 0)
        return 0;
    if (rate_milli == 0)
        return UINT32_MAX;
    /* position admissions at rate_milli per 1000 s */
    return (position * 1000 + rate_milli - 1) / rate_milli;
}
