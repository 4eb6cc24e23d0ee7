/*
 * addr.c — socket addresses as written in the config ("127.0.0.1:3000", "[::1]:80",
 * "*:8080", "8080", "app.internal:3000", "unix:/run/x.sock") and CIDR sets for
 * trusted proxies.
 *
 * IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are treated as the IPv4 address they carry
 * everywhere here: a dual-stack peer and an IPv4 CIDR then agree, and logs show the
 * address an operator expects.
 */
#include "core/core.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static bool parse_port(const char *s, size_t len, int *port)
{
    if (len == 0 || len > 5)
        return false;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *port = v;
    return true;
}

static bool all_digits(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

static void set_err(char *err, size_t errlen, const char *fmt, const char *a)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, fmt, a);
}

static bool addr_unix(const char *s, struct fg_addr *out, char *err, size_t errlen)
{
    const char *path = s + 5;
    struct sockaddr_un *sun = (struct sockaddr_un *)&out->ss;
    if (path[0] != '/') {
        set_err(err, errlen, "unix socket path '%s' must be absolute", path);
        return false;
    }
    size_t len = strlen(path);
    if (len >= sizeof(sun->sun_path) || strlen(s) >= sizeof(out->text)) {
        set_err(err, errlen, "unix socket path '%s' is too long", path);
        return false;
    }
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, len + 1);
    out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    snprintf(out->text, sizeof(out->text), "%s", s);
    return true;
}

/* host (NUL-terminated, brackets removed) and port into out. Numeric first, so that a
 * literal address never waits on DNS; then one blocking lookup (config load only). */
static bool addr_host(const char *host, int port, bool v6_literal, struct fg_addr *out, char *err,
                      size_t errlen)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;
    if (!v6_literal && inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        out->len = sizeof(*sin);
        return true;
    }
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        if (!v6_literal) {
            set_err(err, errlen, "IPv6 address '%s' must be written in brackets", host);
            return false;
        }
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        out->len = sizeof(*sin6);
        return true;
    }
    if (v6_literal) {
        set_err(err, errlen, "invalid IPv6 address '%s'", host);
        return false;
    }
    /* A name: letters, digits, '-', '.', '_' only, so garbage never reaches DNS. */
    for (const char *p = host; *p != '\0'; p++) {
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '.' || ch == '_')) {
            set_err(err, errlen, "invalid host '%s'", host);
            return false;
        }
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || res == NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "cannot resolve host '%s': %s", host,
                     rc != 0 ? gai_strerror(rc) : "no address");
        return false;
    }
    /* Prefer IPv4: "localhost" gives ::1 first on many hosts, while apps listening on
     * 127.0.0.1 only are far more common than apps on ::1 only. */
    const struct addrinfo *pick = res;
    for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            pick = ai;
            break;
        }
    }
    memcpy(&out->ss, pick->ai_addr, pick->ai_addrlen);
    out->len = (socklen_t)pick->ai_addrlen;
    if (pick->ai_family == AF_INET)
        sin->sin_port = htons((uint16_t)port);
    else
        sin6->sin6_port = htons((uint16_t)port);
    freeaddrinfo(res);
    return true;
}

bool fg_addr_parse(const char *s, int default_port, struct fg_addr *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (s == NULL || *s == '\0') {
        set_err(err, errlen, "empty address%s", "");
        return false;
    }
    if (strncmp(s, "unix:", 5) == 0)
        return addr_unix(s, out, err, errlen);
    if (strlen(s) > 100) {
        set_err(err, errlen, "address '%.100s...' is too long", s);
        return false;
    }

    char host[256];
    const char *port_s = NULL;
    bool v6 = false;
    if (all_digits(s)) {
        /* "8080": every IPv4 interface. */
        snprintf(host, sizeof(host), "*");
        port_s = s;
    } else if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || (size_t)(end - s - 1) >= sizeof(host)) {
            set_err(err, errlen, "invalid address '%s'", s);
            return false;
        }
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = '\0';
        v6 = true;
        if (end[1] == ':')
            port_s = end + 2;
        else if (end[1] != '\0') {
            set_err(err, errlen, "invalid address '%s'", s);
            return false;
        }
    } else {
        const char *colon = strchr(s, ':');
        if (colon != NULL && strchr(colon + 1, ':') != NULL) {
            set_err(err, errlen, "IPv6 address '%s' must be written in brackets", s);
            return false;
        }
        size_t hlen = colon ? (size_t)(colon - s) : strlen(s);
        if (hlen == 0 || hlen >= sizeof(host)) {
            set_err(err, errlen, "invalid address '%s'", s);
            return false;
        }
        memcpy(host, s, hlen);
        host[hlen] = '\0';
        if (colon != NULL)
            port_s = colon + 1;
    }

    int port = default_port;
    if (port_s != NULL) {
        if (!parse_port(port_s, strlen(port_s), &port)) {
            set_err(err, errlen, "invalid port in address '%s'", s);
            return false;
        }
    } else if (default_port <= 0) {
        set_err(err, errlen, "address '%s' needs a port", s);
        return false;
    }
    if (port < 1 || port > 65535) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "port %d out of range 1..65535", port);
        return false;
    }

    if (strcmp(host, "*") == 0 && !v6) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
        sin->sin_port = htons((uint16_t)port);
        out->len = sizeof(*sin);
        snprintf(out->text, sizeof(out->text), "0.0.0.0:%d", port);
        return true;
    }
    if (!addr_host(host, port, v6, out, err, errlen))
        return false;
    /* As written, with the port spelled out when it came from the default. */
    if (port_s != NULL)
        snprintf(out->text, sizeof(out->text), "%s", s);
    else
        snprintf(out->text, sizeof(out->text), "%s:%d", s, port);
    return true;
}

/* Family and address bytes of sa, with v4-mapped IPv6 folded to IPv4. 0 if not IP. */
static int sa_bytes(const struct sockaddr *sa, uint8_t bytes[16])
{
    if (sa == NULL)
        return 0;
    if (sa->sa_family == AF_INET) {
        memcpy(bytes, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return AF_INET;
    }
    if (sa->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        if (memcmp(a, v4mapped_prefix, 12) == 0) {
            memcpy(bytes, a + 12, 4);
            return AF_INET;
        }
        memcpy(bytes, a, 16);
        return AF_INET6;
    }
    return 0;
}

void fg_addr_ip_text(const struct sockaddr *sa, char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    out[0] = '\0';
    uint8_t b[16];
    int fam = sa_bytes(sa, b);
    if (fam == 0) {
        if (sa != NULL && sa->sa_family == AF_UNIX)
            snprintf(out, outlen, "unix");
        return;
    }
    if (fam == AF_INET && outlen >= INET_ADDRSTRLEN) {
        /* Every accepted connection comes here: dotted quads by hand (inet_ntop formats
         * them with sprintf, ten times the cost). */
        char *p = out;
        for (int i = 0; i < 4; i++) {
            unsigned v = b[i];
            if (v >= 100)
                *p++ = (char)('0' + v / 100);
            if (v >= 10)
                *p++ = (char)('0' + v / 10 % 10);
            *p++ = (char)('0' + v % 10);
            *p++ = i < 3 ? '.' : '\0';
        }
        return;
    }
    char buf[INET6_ADDRSTRLEN];
    if (inet_ntop(fam, b, buf, sizeof(buf)) != NULL)
        fg_strcopy(out, outlen, buf);
}

int fg_addr_port(const struct sockaddr *sa)
{
    if (sa == NULL)
        return 0;
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

/* Zero the bits after prefix so that matching is a plain masked compare. */
static void mask_bits(uint8_t *a, size_t nbytes, unsigned prefix)
{
    for (size_t i = 0; i < nbytes; i++) {
        unsigned bit = (unsigned)i * 8;
        if (prefix <= bit)
            a[i] = 0;
        else if (prefix < bit + 8)
            a[i] &= (uint8_t)(0xff << (bit + 8 - prefix));
    }
}

bool fg_cidr_parse(const char *s, struct fg_cidr *out)
{
    if (s == NULL)
        return false;
    char buf[INET6_ADDRSTRLEN + 8];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen == 0 || alen >= sizeof(buf))
        return false;
    memcpy(buf, s, alen);
    buf[alen] = '\0';

    struct fg_cidr c;
    memset(&c, 0, sizeof(c));
    unsigned maxp;
    if (inet_pton(AF_INET, buf, c.addr) == 1) {
        c.family = AF_INET;
        maxp = 32;
    } else if (inet_pton(AF_INET6, buf, c.addr) == 1) {
        c.family = AF_INET6;
        maxp = 128;
    } else {
        return false;
    }
    unsigned prefix = maxp;
    if (slash != NULL) {
        uint64_t p;
        if (!fg_parse_uint(slash + 1, maxp, &p) || strlen(slash + 1) > 3)
            return false;
        prefix = (unsigned)p;
    }
    /* ::ffff:10.0.0.0/104 is the IPv4 network 10.0.0.0/8 (see the top of the file). */
    if (c.family == AF_INET6 && prefix >= 96 && memcmp(c.addr, v4mapped_prefix, 12) == 0) {
        memmove(c.addr, c.addr + 12, 4);
        memset(c.addr + 4, 0, 12);
        c.family = AF_INET;
        prefix -= 96;
    }
    /* Host bits written after the network ("10.1.2.3/8") are ignored, as in routing. */
    mask_bits(c.addr, c.family == AF_INET ? 4 : 16, prefix);
    c.prefix = (uint8_t)prefix;
    *out = c;
    return true;
}

static bool cidr_match_bytes(const struct fg_cidr *set, size_t n, int fam, const uint8_t *b)
{
    for (size_t i = 0; i < n; i++) {
        const struct fg_cidr *c = &set[i];
        if (c->family != fam)
            continue;
        uint8_t m[16];
        size_t nbytes = fam == AF_INET ? 4 : 16;
        memcpy(m, b, nbytes);
        mask_bits(m, nbytes, c->prefix);
        if (memcmp(m, c->addr, nbytes) == 0)
            return true;
    }
    return false;
}

bool fg_cidr_match(const struct fg_cidr *set, size_t n, const struct sockaddr *sa)
{
    uint8_t b[16];
    int fam = sa_bytes(sa, b);
    if (fam == 0 || set == NULL)
        return false;
    return cidr_match_bytes(set, n, fam, b);
}

bool fg_cidr_match_text(const struct fg_cidr *set, size_t n, const char *ip, size_t len)
{
    if (ip == NULL || set == NULL || n == 0)
        return false;
    /* Accepts "1.2.3.4", "1.2.3.4:port", "2001:db8::1", "[2001:db8::1]" and
     * "[2001:db8::1]:port": the forms X-Forwarded-For hops come in. */
    char buf[INET6_ADDRSTRLEN + 1];
    const char *p = ip;
    size_t l = len;
    if (l > 0 && p[0] == '[') {
        const char *end = memchr(p, ']', l);
        if (end == NULL)
            return false;
        size_t rest = l - (size_t)(end - p) - 1;
        if (rest != 0 && (end[1] != ':' || rest == 1))
            return false;
        l = (size_t)(end - p) - 1;
        p++;
    } else {
        const char *c1 = memchr(p, ':', l);
        if (c1 != NULL && memchr(c1 + 1, ':', l - (size_t)(c1 - p) - 1) == NULL)
            l = (size_t)(c1 - p); /* exactly one colon: IPv4 with a port */
    }
    if (l == 0 || l >= sizeof(buf))
        return false;
    memcpy(buf, p, l);
    buf[l] = '\0';

    /* Straight to bytes: building a sockaddr here and reading it back through
     * struct sockaddr would be type punning the optimiser may see through. */
    uint8_t b[16];
    if (inet_pton(AF_INET, buf, b) == 1)
        return cidr_match_bytes(set, n, AF_INET, b);
    if (inet_pton(AF_INET6, buf, b) == 1) {
        if (memcmp(b, v4mapped_prefix, 12) == 0) {
            memmove(b, b + 12, 4);
            return cidr_match_bytes(set, n, AF_INET, b);
        }
        return cidr_match_bytes(set, n, AF_INET6, b);
    }
    return false;
}
