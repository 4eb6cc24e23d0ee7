/*
 * url.c — redis:// and rediss:// URLs. The host is checked for shape only: it is
 * resolved on every connection (a failover moves the name), never here.
 */
#include "redis/redis.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/core.h"

static bool fail(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", msg);
    return false;
}

/* Percent-decode s[0..n) into out (NUL-terminated). False on a bad escape, a decoded
 * NUL, or no room. */
static bool pct_decode(const char *s, size_t n, char *out, size_t outsz)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return false;
            int hi = fg_hex_value(s[i + 1]), lo = fg_hex_value(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return false;
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (o + 1 >= outsz)
            return false;
        out[o++] = c;
    }
    out[o] = '\0';
    return true;
}

static bool parse_port(const char *s, size_t n, int *port)
{
    if (n == 0 || n > 5)
        return false;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1 || v > 65535)
        return false;
    *port = v;
    return true;
}

/* A DNS name (RFC 1123 labels; '_' tolerated, as some private zones use it) or an IPv4
 * literal. */
static bool host_name_ok(const char *h, size_t n)
{
    if (n == 0 || n > 253 || h[0] == '.' || h[0] == '-')
        return false;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_';
        if (!ok || ++label > 63)
            return false;
    }
    return true;
}

bool fg_redis_url_parse(const char *url, struct fg_redis_url *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->port = FG_REDIS_DEFAULT_PORT;
    /* Messages never quote the URL: it may carry a password. */
    size_t skip;
    if (url != NULL && strncasecmp(url, "redis://", 8) == 0) {
        skip = 8;
    } else if (url != NULL && strncasecmp(url, "rediss://", 9) == 0) {
        skip = 9;
        out->tls = true;
    } else {
        return fail(err, errlen,
                    "expected redis:// or rediss://[user[:password]@]host[:port][/db]");
    }
    const char *p = url + skip;
    size_t auth_len = strcspn(p, "/?#");
    const char *rest = p + auth_len;

    /* userinfo: up to the last '@' of the authority */
    const char *hostport = p;
    const char *at = NULL;
    for (const char *q = p; q < rest; q++)
        if (*q == '@')
            at = q;
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *user_end = colon != NULL ? colon : at;
        if (!pct_decode(p, (size_t)(user_end - p), out->user, sizeof(out->user)) ||
            (colon != NULL && !pct_decode(colon + 1, (size_t)(at - colon - 1), out->password,
                                          sizeof(out->password))))
            return fail(err, errlen, "redis URL: invalid or too long user or password");
        if (colon != NULL && out->password[0] == '\0')
            return fail(err, errlen, "redis URL: empty password");
        if (colon == NULL && out->user[0] == '\0')
            return fail(err, errlen, "redis URL: empty user before '@'");
        hostport = at + 1;
    }

    /* host[:port] or [v6][:port] */
    size_t hp_len = (size_t)(rest - hostport);
    const char *host = hostport, *port_s = NULL;
    size_t host_len, port_len = 0;
    bool v6 = false;
    if (hp_len > 0 && hostport[0] == '[') {
        const char *close = memchr(hostport, ']', hp_len);
        if (close == NULL)
            return fail(err, errlen, "redis URL: missing ']' after an IPv6 address");
        v6 = true;
        host = hostport + 1;
        host_len = (size_t)(close - host);
        if (close + 1 < rest) {
            if (close[1] != ':')
                return fail(err, errlen, "redis URL: unexpected text after ']'");
            port_s = close + 2;
            port_len = (size_t)(rest - port_s);
        }
    } else {
        const char *colon = memchr(hostport, ':', hp_len);
        if (colon != NULL && memchr(colon + 1, ':', (size_t)(rest - colon - 1)) != NULL)
            return fail(err, errlen, "redis URL: IPv6 addresses go in brackets");
        host_len = colon != NULL ? (size_t)(colon - hostport) : hp_len;
        if (colon != NULL) {
            port_s = colon + 1;
            port_len = (size_t)(rest - port_s);
        }
    }
    if (host_len == 0 || host_len >= sizeof(out->host))
        return fail(err, errlen, "redis URL: missing or too long host");
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    if (v6) {
        struct in6_addr a6;
        if (inet_pton(AF_INET6, out->host, &a6) != 1)
            return fail(err, errlen, "redis URL: invalid IPv6 address in brackets");
    } else if (!host_name_ok(out->host, host_len)) {
        return fail(err, errlen, "redis URL: invalid host (a DNS name or an IP address)");
    }
    if (port_s != NULL && !parse_port(port_s, port_len, &out->port))
        return fail(err, errlen, "redis URL: the port must be a number from 1 to 65535");

    /* [/db] and nothing else */
    if (*rest == '/') {
        const char *db = rest + 1;
        size_t db_len = strlen(db);
        unsigned v = 0;
        if (db_len > 4 || strspn(db, "0123456789") != db_len)
            return fail(err, errlen, "redis URL: the database must be a number from 0 to 9999");
        for (size_t i = 0; i < db_len; i++)
            v = v * 10 + (unsigned)(db[i] - '0');
        out->db = v;
    } else if (*rest != '\0') {
        return fail(err, errlen, "redis URL: query parameters and fragments are not supported");
    }
    return true;
}

void fg_redis_url_display(const struct fg_redis_url *u, char *out, size_t size)
{
    bool v6 = strchr(u->host, ':') != NULL;
    const char *pw = u->password[0] != '\0' ? ":***" : "";
    bool userinfo = u->user[0] != '\0' || u->password[0] != '\0';
    snprintf(out, size, "%s://%s%s%s%s%s%s:%d/%u", u->tls ? "rediss" : "redis", u->user, pw,
             userinfo ? "@" : "", v6 ? "[" : "", u->host, v6 ? "]" : "", u->port, u->db);
}
