/* time.c — clocks. Monotonic time for every timeout and latency; wall time for logs; retry
 * delays. */
#include "core/core.h"

#include <stdlib.h>
#include <time.h>

uint64_t fg_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t fg_mono_ms(void)
{
    return fg_mono_us() / 1000u;
}

int64_t fg_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t fg_wall_s(void)
{
    return (int64_t)time(NULL);
}

uint64_t fg_backoff_ms(uint64_t base, uint64_t max, unsigned attempts)
{
    unsigned shift = attempts > 1 ? attempts - 1 : 0;
    if (shift > 20)
        shift = 20;
    uint64_t b = base << shift;
    if (b > max)
        b = max;
    return b / 2 + (uint64_t)random() % (b / 2 + 1);
}
