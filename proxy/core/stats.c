/* stats.c — latency histograms. Buckets are fixed so that per-worker histograms can be
 * summed by the admin thread and exported as Prometheus buckets without resampling. */
#include "core/core.h"

const uint64_t fg_hist_bounds_us[FG_HIST_BUCKETS] = {
    100,   250,    500,    1000,   2500,    5000,    10000,    25000,
    50000, 100000, 250000, 500000, 1000000, 2500000, 10000000, UINT64_MAX,
};

void fg_hist_observe(struct fg_hist *h, uint64_t us)
{
    size_t i = 0;
    while (us > fg_hist_bounds_us[i])
        i++;
    fg_counter_add(&h->bucket[i], 1);
    fg_counter_add(&h->count, 1);
    fg_counter_add(&h->sum_us, us);
}

uint64_t fg_hist_quantile(const uint64_t bucket[FG_HIST_BUCKETS], double q)
{
    uint64_t total = 0;
    for (size_t i = 0; i < FG_HIST_BUCKETS; i++)
        total += bucket[i];
    if (total == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)total);
    if (rank >= total)
        rank = total - 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < FG_HIST_BUCKETS; i++) {
        seen += bucket[i];
        if (seen > rank)
            return i + 1 < FG_HIST_BUCKETS ? fg_hist_bounds_us[i] : fg_hist_bounds_us[i - 1];
    }
    return fg_hist_bounds_us[FG_HIST_BUCKETS - 2];
}
