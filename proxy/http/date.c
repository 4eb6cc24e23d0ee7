/*
 * date.c — HTTP-date (RFC 9110 §5.6.7): IMF-fixdate out; IMF-fixdate, and the obsolete
 * RFC 850 and asctime forms in. Pure arithmetic on the proleptic Gregorian calendar in
 * UTC: no time zone, no locale, no libc time conversion on the formatting path.
 */
#include "http/http.h"

#include <string.h>
#include <time.h>

static const char wdays[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const wdays_long[7] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                          "Thursday", "Friday", "Saturday"};
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Days from 1970-01-01 to y-m-d, m in 1..12 (the era arithmetic of H. Hinnant's
 * well-known civil calendar algorithms). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static char *put2(char *p, int v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
    return p + 2;
}

void fg_http_format_date(int64_t t, char out[30])
{
    /* IMF-fixdate has a 4-digit year: clamp to years 0000..9999 */
    const int64_t lo = days_from_civil(0, 1, 1) * 86400;
    const int64_t hi = days_from_civil(9999, 12, 31) * 86400 + 86399;
    if (t < lo)
        t = lo;
    if (t > hi)
        t = hi;
    int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
    int64_t secs = t - days * 86400;
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    int wday = (int)(((days % 7) + 11) % 7); /* 1970-01-01 was a Thursday */
    char *p = out;
    memcpy(p, wdays[wday], 3);
    p[3] = ',';
    p[4] = ' ';
    p = put2(p + 5, d);
    *p++ = ' ';
    memcpy(p, months[m - 1], 3);
    p[3] = ' ';
    p = put2(p + 4, (int)(y / 100));
    p = put2(p, (int)(y % 100));
    *p++ = ' ';
    p = put2(p, (int)(secs / 3600));
    *p++ = ':';
    p = put2(p, (int)(secs / 60 % 60));
    *p++ = ':';
    p = put2(p, (int)(secs % 60));
    memcpy(p, " GMT", 5);
}

static int month_of(const char *s)
{
    for (int i = 0; i < 12; i++)
        if (memcmp(s, months[i], 3) == 0)
            return i;
    return -1;
}

static bool is_wday(const char *s, size_t len)
{
    for (int i = 0; i < 7; i++) {
        if (len == 3 && memcmp(s, wdays[i], 3) == 0)
            return true;
        if (len > 3 && strlen(wdays_long[i]) == len && memcmp(s, wdays_long[i], len) == 0)
            return true;
    }
    return false;
}

static bool digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

static bool leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static bool finish(int y, int mon, int d, int hh, int mm, int ss, int64_t *out)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mon < 0 || d < 1 || hh > 23 || mm > 59 || ss > 60)
        return false;
    if (d > mdays[mon] + (mon == 1 && leap(y)))
        return false;
    /* a leap second (":60") is read as the first second of the next minute */
    *out = days_from_civil(y, mon + 1, d) * 86400 + hh * 3600 + mm * 60 + ss;
    return true;
}

/* "HH:MM:SS" */
static bool hms(const char *s, int *h, int *m, int *sec)
{
    return s[2] == ':' && s[5] == ':' && digits(s, 2, h) && digits(s + 3, 2, m) &&
           digits(s + 6, 2, sec);
}

bool fg_http_parse_date(const char *s, size_t len, int64_t *out)
{
    int d, y, hh, mm, ss;
    /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
    if (len == 29 && s[3] == ',') {
        if (!is_wday(s, 3) || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
            memcmp(s + 25, " GMT", 4) != 0)
            return false;
        if (!digits(s + 5, 2, &d) || !digits(s + 12, 4, &y) || !hms(s + 17, &hh, &mm, &ss))
            return false;
        return finish(y, month_of(s + 8), d, hh, mm, ss, out);
    }
    /* asctime: "Sun Nov  6 08:49:37 1994" (day: SP DIGIT or 2DIGIT) */
    if (len == 24 && s[3] == ' ') {
        if (!is_wday(s, 3) || s[7] != ' ' || s[10] != ' ' || s[19] != ' ')
            return false;
        if (s[8] == ' ' ? !digits(s + 9, 1, &d) : !digits(s + 8, 2, &d))
            return false;
        if (!digits(s + 20, 4, &y) || !hms(s + 11, &hh, &mm, &ss))
            return false;
        return finish(y, month_of(s + 4), d, hh, mm, ss, out);
    }
    /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
    const char *comma = memchr(s, ',', len);
    if (comma == NULL || comma - s <= 3 || (size_t)(s + len - comma) != 24 ||
        !is_wday(s, (size_t)(comma - s)))
        return false;
    const char *p = comma + 2;
    if (comma[1] != ' ' || p[2] != '-' || p[6] != '-' || p[9] != ' ' ||
        memcmp(p + 18, " GMT", 4) != 0)
        return false;
    if (!digits(p, 2, &d) || !digits(p + 7, 2, &y) || !hms(p + 10, &hh, &mm, &ss))
        return false;
    /* two-digit years: one more than 50 years ahead is in the past century (RFC 9110) */
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    y += (tm.tm_year + 1900) / 100 * 100;
    if (y > tm.tm_year + 1900 + 50)
        y -= 100;
    return finish(y, month_of(p + 3), d, hh, mm, ss, out);
}
