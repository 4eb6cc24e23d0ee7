/* date.c — HTTP-date (RFC 9110 §5.6.7): IMF-fixdate out; IMF-fixdate, RFC 850 and asctime in. */
#include "http/http.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static const char wdays[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

void fg_http_format_date(int64_t t, char out[30])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    char tmp[64]; /* the compiler cannot see that every field has its fixed width */
    snprintf(tmp, sizeof(tmp), "%s, %02d %s %04d %02d:%02d:%02d GMT", wdays[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    memcpy(out, tmp, 29);
    out[29] = '\0';
}

static int month_of(const char *s)
{
    for (int i = 0; i < 12; i++)
        if (memcmp(s, months[i], 3) == 0)
            return i;
    return -1;
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

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian), no time zone involved. */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool finish(int y, int mon, int d, int hh, int mm, int ss, int64_t *out)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mon < 0 || d < 1 || d > mdays[mon] || hh > 23 || mm > 59 || ss > 60)
        return false;
    *out = days_from_civil(y, mon + 1, d) * 86400 + hh * 3600 + mm * 60 + ss;
    return true;
}

static bool hms(const char *s, int *h, int *m, int *sec)
{
    return s[2] == ':' && s[5] == ':' && digits(s, 2, h) && digits(s + 3, 2, m) &&
           digits(s + 6, 2, sec);
}

bool fg_http_parse_date(const char *s, size_t len, int64_t *out)
{
    int d, y, hh, mm, ss;
    /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
    if (len == 29 && s[3] == ',' && s[4] == ' ' && s[7] == ' ' && s[11] == ' ' && s[16] == ' ' &&
        memcmp(s + 25, " GMT", 4) == 0) {
        if (!digits(s + 5, 2, &d) || !digits(s + 12, 4, &y) || !hms(s + 17, &hh, &mm, &ss))
            return false;
        return finish(y, month_of(s + 8), d, hh, mm, ss, out);
    }
    /* asctime: "Sun Nov  6 08:49:37 1994" */
    if (len == 24 && s[3] == ' ' && s[7] == ' ' && s[10] == ' ' && s[19] == ' ') {
        char dd[2] = {s[8] == ' ' ? '0' : s[8], s[9]};
        if (!digits(dd, 2, &d) || !digits(s + 20, 4, &y) || !hms(s + 11, &hh, &mm, &ss))
            return false;
        return finish(y, month_of(s + 4), d, hh, mm, ss, out);
    }
    /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
    const char *comma = memchr(s, ',', len);
    if (comma != NULL && (size_t)(s + len - comma) == 24) {
        const char *p = comma + 2;
        if (comma[1] != ' ' || p[2] != '-' || p[6] != '-' || p[9] != ' ' ||
            memcmp(p + 18, " GMT", 4) != 0)
            return false;
        if (!digits(p, 2, &d) || !digits(p + 7, 2, &y) || !hms(p + 10, &hh, &mm, &ss))
            return false;
        /* two-digit years: more than 50 years ahead means the previous century */
        y += 2000;
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        if (y > tm.tm_year + 1900 + 50)
            y -= 100;
        return finish(y, month_of(p + 3), d, hh, mm, ss, out);
    }
    return false;
}
