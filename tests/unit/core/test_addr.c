/*
 * test_addr.c — config addresses and CIDR sets: every accepted form, the errors, IPv4
 * and IPv6 prefixes at their edges (/0, /32, /128, odd bit counts) and v4-mapped peers.
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/un.h>

#include <cmocka.h>

#include "core/core.h"

static struct sockaddr_storage sa_of(const char *ip, int port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
    } else {
        assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
    }
    return ss;
}

static void expect_addr(const char *s, int def, int family, const char *ip, int port,
                        const char *text)
{
    struct fg_addr a;
    char err[256] = "";
    assert_true(fg_addr_parse(s, def, &a, err, sizeof(err)));
    assert_string_equal(err, "");
    assert_int_equal(a.ss.ss_family, family);
    char buf[64];
    fg_addr_ip_text((const struct sockaddr *)&a.ss, buf, sizeof(buf));
    assert_string_equal(buf, ip);
    assert_int_equal(fg_addr_port((const struct sockaddr *)&a.ss), port);
    assert_string_equal(a.text, text);
    assert_int_equal(a.len,
                     family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6));
}

static void expect_addr_error(const char *s, int def, const char *msg)
{
    struct fg_addr a;
    char err[256] = "";
    assert_false(fg_addr_parse(s, def, &a, err, sizeof(err)));
    assert_string_equal(err, msg);
}

static void test_addr_forms(void **state)
{
    (void)state;
    expect_addr("127.0.0.1:3000", 0, AF_INET, "127.0.0.1", 3000, "127.0.0.1:3000");
    expect_addr("0.0.0.0:8080", 0, AF_INET, "0.0.0.0", 8080, "0.0.0.0:8080");
    expect_addr("*:8080", 0, AF_INET, "0.0.0.0", 8080, "0.0.0.0:8080");
    expect_addr("8080", 0, AF_INET, "0.0.0.0", 8080, "0.0.0.0:8080");
    expect_addr("[::1]:80", 0, AF_INET6, "::1", 80, "[::1]:80");
    expect_addr("[::]:8080", 0, AF_INET6, "::", 8080, "[::]:8080");
    expect_addr("[2001:db8::7]:65535", 0, AF_INET6, "2001:db8::7", 65535, "[2001:db8::7]:65535");
    expect_addr("10.1.2.3", 80, AF_INET, "10.1.2.3", 80, "10.1.2.3:80");
    expect_addr("[fe80::1]", 443, AF_INET6, "fe80::1", 443, "[fe80::1]:443");
    /* names are resolved now; localhost prefers IPv4 */
    expect_addr("localhost:3000", 0, AF_INET, "127.0.0.1", 3000, "localhost:3000");
}

static void test_addr_unix(void **state)
{
    (void)state;
    struct fg_addr a;
    char err[256] = "";
    assert_true(fg_addr_parse("unix:/run/flashgate/agent.sock", 0, &a, err, sizeof(err)));
    assert_int_equal(a.ss.ss_family, AF_UNIX);
    assert_string_equal(((struct sockaddr_un *)&a.ss)->sun_path, "/run/flashgate/agent.sock");
    assert_string_equal(a.text, "unix:/run/flashgate/agent.sock");
    assert_int_equal(fg_addr_port((const struct sockaddr *)&a.ss), 0);
    char ip[32];
    fg_addr_ip_text((const struct sockaddr *)&a.ss, ip, sizeof(ip));
    assert_string_equal(ip, "unix");

    expect_addr_error("unix:relative.sock", 0, "unix socket path 'relative.sock' must be absolute");
    char longp[160] = "unix:/";
    memset(longp + 6, 'x', 120);
    longp[126] = '\0';
    assert_false(fg_addr_parse(longp, 0, &a, err, sizeof(err)));
    assert_non_null(strstr(err, "is too long"));
}

static void test_addr_errors(void **state)
{
    (void)state;
    expect_addr_error("127.0.0.1:0", 0, "port 0 out of range 1..65535");
    expect_addr_error("127.0.0.1:65536", 0, "port 65536 out of range 1..65535");
    expect_addr_error("127.0.0.1:99999", 0, "port 99999 out of range 1..65535");
    expect_addr_error("127.0.0.1:123456", 0, "invalid port in address '127.0.0.1:123456'");
    expect_addr_error("127.0.0.1:", 0, "invalid port in address '127.0.0.1:'");
    expect_addr_error("127.0.0.1:http", 0, "invalid port in address '127.0.0.1:http'");
    expect_addr_error("127.0.0.1", 0, "address '127.0.0.1' needs a port");
    expect_addr_error("::1", 80, "IPv6 address '::1' must be written in brackets");
    expect_addr_error("[::1", 80, "invalid address '[::1'");
    expect_addr_error("[::1]x", 80, "invalid address '[::1]x'");
    expect_addr_error("[10.0.0.1]:80", 0, "invalid IPv6 address '10.0.0.1'");
    expect_addr_error("0", 0, "port 0 out of range 1..65535");
    expect_addr_error("", 0, "empty address");
    expect_addr_error(":80", 0, "invalid address ':80'");
    expect_addr_error("bad host!:80", 0, "invalid host 'bad host!'");
    struct fg_addr a;
    char err[256];
    assert_false(fg_addr_parse("no-such-host.invalid:80", 0, &a, err, sizeof(err)));
    assert_non_null(strstr(err, "cannot resolve host 'no-such-host.invalid'"));
}

static void test_ip_text_and_port(void **state)
{
    (void)state;
    char buf[64];
    struct sockaddr_storage ss = sa_of("::ffff:10.0.0.1", 5555);
    fg_addr_ip_text((const struct sockaddr *)&ss, buf, sizeof(buf));
    assert_string_equal(buf, "10.0.0.1"); /* mapped peers read as IPv4 */
    assert_int_equal(fg_addr_port((const struct sockaddr *)&ss), 5555);
    ss = sa_of("2001:db8::1", 1);
    fg_addr_ip_text((const struct sockaddr *)&ss, buf, sizeof(buf));
    assert_string_equal(buf, "2001:db8::1");
    /* dotted quads of every width */
    const char *quads[] = {"0.0.0.0", "255.255.255.255", "10.20.3.100", "127.0.0.1",
                           "9.99.100.199"};
    for (size_t i = 0; i < sizeof(quads) / sizeof(quads[0]); i++) {
        ss = sa_of(quads[i], 80);
        fg_addr_ip_text((const struct sockaddr *)&ss, buf, sizeof(buf));
        assert_string_equal(buf, quads[i]);
    }
    /* truncation stays NUL-terminated */
    ss = sa_of("192.168.100.200", 1);
    fg_addr_ip_text((const struct sockaddr *)&ss, buf, 4);
    assert_string_equal(buf, "192");
    fg_addr_ip_text(NULL, buf, sizeof(buf));
    assert_string_equal(buf, "");
    assert_int_equal(fg_addr_port(NULL), 0);
}

static struct fg_cidr cidr(const char *s)
{
    struct fg_cidr c;
    assert_true(fg_cidr_parse(s, &c));
    return c;
}

static bool match_ip(const struct fg_cidr *set, size_t n, const char *ip)
{
    struct sockaddr_storage ss = sa_of(ip, 1234);
    bool by_sa = fg_cidr_match(set, n, (const struct sockaddr *)&ss);
    bool by_text = fg_cidr_match_text(set, n, ip, strlen(ip));
    assert_int_equal(by_sa, by_text); /* the two entry points always agree */
    return by_sa;
}

static void test_cidr_parse(void **state)
{
    (void)state;
    struct fg_cidr c = cidr("10.0.0.0/8");
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 8);
    assert_int_equal(c.addr[0], 10);
    c = cidr("127.0.0.1");
    assert_int_equal(c.prefix, 32);
    c = cidr("::1");
    assert_int_equal(c.family, AF_INET6);
    assert_int_equal(c.prefix, 128);
    c = cidr("fd00::/8");
    assert_int_equal(c.prefix, 8);
    assert_int_equal(c.addr[0], 0xfd);
    /* host bits beyond the prefix are cleared */
    c = cidr("10.1.2.3/8");
    assert_int_equal(c.addr[1], 0);
    assert_int_equal(c.addr[3], 0);
    c = cidr("192.168.255.255/20");
    assert_int_equal(c.addr[2], 0xf0);
    assert_int_equal(c.addr[3], 0);
    /* a v4-mapped network is the IPv4 network */
    c = cidr("::ffff:10.0.0.0/104");
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 8);
    assert_int_equal(c.addr[0], 10);
    c = cidr("::ffff:1.2.3.4");
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 32);

    const char *bad[] = {
        "",         "10.0.0.0/33", "::/129", "10.0.0.0/",     "10.0.0.0/-1", "10.0.0.0/8x",
        "10.0.0/8", "host/8",      "/8",     "10.0.0.0/0008", "1.2.3.4:80",  "[::1]",
        NULL};
    for (size_t i = 0; bad[i] != NULL; i++)
        assert_false(fg_cidr_parse(bad[i], &c));
}

static void test_cidr_v4(void **state)
{
    (void)state;
    struct fg_cidr set[] = {cidr("10.0.0.0/8"), cidr("192.168.1.7"), cidr("172.16.0.0/12")};
    assert_true(match_ip(set, 3, "10.0.0.0"));
    assert_true(match_ip(set, 3, "10.255.255.255"));
    assert_false(match_ip(set, 3, "11.0.0.0"));
    assert_false(match_ip(set, 3, "9.255.255.255"));
    assert_true(match_ip(set, 3, "192.168.1.7"));
    assert_false(match_ip(set, 3, "192.168.1.6"));
    assert_false(match_ip(set, 3, "192.168.1.8"));
    assert_true(match_ip(set, 3, "172.31.255.255"));
    assert_false(match_ip(set, 3, "172.32.0.0"));
    assert_false(match_ip(set, 3, "172.15.255.255"));
    /* IPv6 peers never match IPv4 networks (except mapped ones, below) */
    assert_false(match_ip(set, 3, "::a00:1"));
    /* empty set */
    assert_false(match_ip(set, 0, "10.0.0.1"));

    struct fg_cidr all = cidr("0.0.0.0/0");
    assert_true(match_ip(&all, 1, "0.0.0.0"));
    assert_true(match_ip(&all, 1, "255.255.255.255"));
    assert_false(match_ip(&all, 1, "2001:db8::1"));

    struct fg_cidr odd = cidr("10.0.0.128/25");
    assert_true(match_ip(&odd, 1, "10.0.0.128"));
    assert_true(match_ip(&odd, 1, "10.0.0.255"));
    assert_false(match_ip(&odd, 1, "10.0.0.127"));
    struct fg_cidr o31 = cidr("10.0.0.2/31");
    assert_true(match_ip(&o31, 1, "10.0.0.3"));
    assert_false(match_ip(&o31, 1, "10.0.0.4"));
    assert_false(match_ip(&o31, 1, "10.0.0.1"));
}

static void test_cidr_v6(void **state)
{
    (void)state;
    struct fg_cidr set[] = {cidr("fd00::/8"), cidr("2001:db8::/32"), cidr("::1")};
    assert_true(match_ip(set, 3, "fd12:3456::1"));
    assert_false(match_ip(set, 3, "fe00::1"));
    assert_true(match_ip(set, 3, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
    assert_false(match_ip(set, 3, "2001:db9::"));
    assert_true(match_ip(set, 3, "::1"));
    assert_false(match_ip(set, 3, "::2"));
    assert_false(match_ip(set, 3, "10.0.0.1"));

    struct fg_cidr all = cidr("::/0");
    assert_true(match_ip(&all, 1, "::"));
    assert_true(match_ip(&all, 1, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    assert_false(match_ip(&all, 1, "1.2.3.4"));

    struct fg_cidr p127 = cidr("2001:db8::/127");
    assert_true(match_ip(&p127, 1, "2001:db8::1"));
    assert_false(match_ip(&p127, 1, "2001:db8::2"));
    struct fg_cidr p65 = cidr("2001:db8:0:0:8000::/65");
    assert_true(match_ip(&p65, 1, "2001:db8::ffff:0:0:1"));
    assert_false(match_ip(&p65, 1, "2001:db8::7fff:0:0:1"));
}

static void test_cidr_mapped(void **state)
{
    (void)state;
    /* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d: they match IPv4 sets. */
    struct fg_cidr v4 = cidr("10.0.0.0/8");
    assert_true(match_ip(&v4, 1, "::ffff:10.1.2.3"));
    assert_false(match_ip(&v4, 1, "::ffff:11.1.2.3"));
    /* and a mapped network written in IPv6 form matches plain IPv4 peers */
    struct fg_cidr m = cidr("::ffff:192.168.0.0/112");
    assert_true(match_ip(&m, 1, "192.168.3.4"));
    assert_true(match_ip(&m, 1, "::ffff:192.168.3.4"));
    assert_false(match_ip(&m, 1, "192.169.0.1"));
    /* a v6 network that merely contains the mapped range is still IPv6 */
    struct fg_cidr v6all = cidr("::/0");
    assert_false(match_ip(&v6all, 1, "::ffff:10.0.0.1"));
}

static void test_cidr_text_forms(void **state)
{
    (void)state;
    struct fg_cidr set[] = {cidr("10.0.0.0/8"), cidr("2001:db8::/32")};
#define T(s) fg_cidr_match_text(set, 2, s, strlen(s))
    assert_true(T("10.0.0.1:53412")); /* ALB writes ip:port */
    assert_true(T("[2001:db8::5]"));
    assert_true(T("[2001:db8::5]:443"));
    assert_false(T("[2001:db8::5]:"));
    assert_false(T("[2001:db8::5"));
    assert_false(T("unknown"));
    assert_false(T(""));
    assert_false(T("10.0.0.1 "));
    assert_false(T("10.0.0.1.5"));
    assert_false(T("_hidden"));
#undef T
    /* not NUL-terminated: only len bytes are read */
    const char buf[] = {'1', '0', '.', '0', '.', '0', '.', '1', '1', '1'};
    assert_true(fg_cidr_match_text(set, 2, buf, 8));
    assert_false(fg_cidr_match_text(set, 2, NULL, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_forms),      cmocka_unit_test(test_addr_unix),
        cmocka_unit_test(test_addr_errors),     cmocka_unit_test(test_ip_text_and_port),
        cmocka_unit_test(test_cidr_parse),      cmocka_unit_test(test_cidr_v4),
        cmocka_unit_test(test_cidr_v6),         cmocka_unit_test(test_cidr_mapped),
        cmocka_unit_test(test_cidr_text_forms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
