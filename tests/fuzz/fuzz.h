/* fuzz.h — the codec's fuzz targets. Each fuzz_<target>.c defines fg_fuzz_<target>() and,
 * unless built into the replay driver (FG_FUZZ_REPLAY), libFuzzer's entry point calling
 * it. A target aborts on any broken invariant, so a fuzzer or the replay sees a crash. */
#ifndef FG_FUZZ_H
#define FG_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int fg_fuzz_request(const uint8_t *data, size_t size);
int fg_fuzz_response(const uint8_t *data, size_t size);
int fg_fuzz_chunked(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A cheap hash of the input, to pick split points and variants deterministically. */
static inline uint32_t fg_fuzz_hash(const uint8_t *d, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ d[i]) * 16777619u;
    return h;
}

#endif
