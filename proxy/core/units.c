/*
 * units.c — the number formats of the config file: plain integers, durations, sizes and
 * rates. Every parser is strict: the whole string must be consumed, no sign, no spaces,
 * no trailing junk, and arithmetic overflow is an error rather than a wrapped value.
 */
#include "core/core.h"

#include <string.h>

/* Leading decimal digits of s into *out; returns the number of digits (0 = none or
 * overflow past max, which the callers turn into "invalid"). */
static size_t parse_digits(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    while (s[i] >= '0' && s[i] <= '9') {
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10)
            return 0;
        v = v * 10 + d;
        i++;
    }
    *out = v;
    return i;
}

/* v * mul, false on overflow. */
static bool mul_checked(uint64_t v, uint64_t mul, uint64_t *out)
{
    if (mul != 0 && v > UINT64_MAX / mul)
        return false;
    *out = v * mul;
    return true;
}

bool fg_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    if (s == NULL)
        return false;
    uint64_t v;
    size_t n = parse_digits(s, max, &v);
    if (n == 0 || s[n] != '\0')
        return false;
    *out = v;
    return true;
}

bool fg_parse_duration_ms(const char *s, uint64_t *ms)
{
    if (s == NULL)
        return false;
    uint64_t v;
    size_t n = parse_digits(s, UINT64_MAX, &v);
    if (n == 0)
        return false;
    const char *unit = s + n;
    uint64_t mul;
    /* Units are lower case only: "1M" could be read as a month or a minute. */
    if (strcmp(unit, "") == 0 || strcmp(unit, "s") == 0)
        mul = 1000;
    else if (strcmp(unit, "ms") == 0)
        mul = 1;
    else if (strcmp(unit, "m") == 0 || strcmp(unit, "min") == 0)
        mul = 60 * 1000;
    else if (strcmp(unit, "h") == 0)
        mul = 3600 * 1000;
    else if (strcmp(unit, "d") == 0)
        mul = 86400 * 1000;
    else
        return false;
    return mul_checked(v, mul, ms);
}

bool fg_parse_size(const char *s, uint64_t *bytes)
{
    if (s == NULL)
        return false;
    uint64_t v;
    size_t n = parse_digits(s, UINT64_MAX, &v);
    if (n == 0)
        return false;
    const char *unit = s + n;
    uint64_t mul;
    if (unit[0] == '\0')
        mul = 1;
    else if (unit[1] != '\0')
        return false;
    else if (unit[0] == 'k' || unit[0] == 'K')
        mul = 1024;
    else if (unit[0] == 'm' || unit[0] == 'M')
        mul = 1024 * 1024;
    else if (unit[0] == 'g' || unit[0] == 'G')
        mul = 1024 * 1024 * 1024;
    else
        return false;
    return mul_checked(v, mul, bytes);
}

bool fg_parse_rate(const char *s, uint64_t *per_ks)
{
    if (s == NULL)
        return false;
    uint64_t v;
    size_t n = parse_digits(s, UINT64_MAX, &v);
    if (n == 0)
        return false;
    const char *unit = s + n;
    uint64_t r;
    if (strcmp(unit, "r/s") == 0) {
        if (!mul_checked(v, 1000, &r))
            return false;
    } else if (strcmp(unit, "r/m") == 0 || strcmp(unit, "r/min") == 0) {
        /* Per minute to per 1000 s, rounded to nearest: 600r/m = 10000, 1r/m = 17. */
        if (!mul_checked(v, 1000, &r) || r > UINT64_MAX - 30)
            return false;
        r = (r + 30) / 60;
    } else {
        return false;
    }
    *per_ks = r;
    return true;
}

int fg_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}
