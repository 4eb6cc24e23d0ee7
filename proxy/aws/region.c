/*
 * region.c — AWS's naming rules that signing depends on: what a region name looks like,
 * the region a regional endpoint names, a service's default endpoint, and the ISO 8601
 * times AWS writes expirations in.
 *
 * Regional endpoints are <service>.<region>.<domain>: sqs.eu-west-1.amazonaws.com, and
 * sqs.cn-north-1.amazonaws.com.cn in the China partition. A signature made for the wrong
 * region is refused by AWS, so the region is taken from the endpoint when the owner does
 * not name one, and asked from the instance otherwise.
 */
#include "aws/aws.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "httpc/httpc.h"

bool fg_aws_region_valid(const char *s, size_t len)
{
    if (len == 0 || len > FG_SIGV4_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

bool fg_aws_region_from_url(const char *url, const char *service, char *out, size_t outlen)
{
    struct fg_url u;
    char err[160];
    size_t sl = strlen(service);
    if (!fg_url_parse(url, &u, err, sizeof(err)) || strncmp(u.host, service, sl) != 0 ||
        u.host[sl] != '.')
        return false;
    const char *r = u.host + sl + 1;
    const char *dot = strchr(r, '.');
    size_t n = dot != NULL ? (size_t)(dot - r) : 0;
    if (n >= outlen || !fg_aws_region_valid(r, n))
        return false;
    memcpy(out, r, n);
    out[n] = '\0';
    return true;
}

bool fg_aws_endpoint(const char *service, const char *region, char *out, size_t outlen)
{
    if (!fg_aws_region_valid(region, strlen(region)))
        return false;
    const char *domain = strncmp(region, "cn-", 3) == 0 ? "amazonaws.com.cn" : "amazonaws.com";
    int n = snprintf(out, outlen, "https://%s.%s.%s", service, region, domain);
    return n > 0 && (size_t)n < outlen;
}

bool fg_aws_parse_iso8601(const char *s, size_t len, int64_t *out)
{
    char buf[40];
    if (len < 20 || len >= sizeof(buf))
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    struct tm tm = {0};
    int n = 0;
    if (sscanf(buf, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &n) != 6 ||
        n != 19)
        return false;
    const char *p = buf + 19;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (strcmp(p, "Z") != 0 && strcmp(p, "+00:00") != 0)
        return false;
    if (tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60)
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return false;
    *out = (int64_t)t;
    return true;
}
