/*
 * test_cluster.c — the pure parts of cluster mode: key slots (the values the cluster
 * specification gives, hash tags), slot maps in both forms a server gives them
 * (CLUSTER SHARDS answers shaped like Redis 7.0's, TLS ports, hostnames, replicas and
 * failed masters left out; CLUSTER SLOTS with and without metadata) and MOVED / ASK.
 * Answers are written as RESP and decoded with hiredis's reader, as the client does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "redis/internal.h"

/* ---- RESP builders ---------------------------------------------------------------------- */

static char buf[16384];
static size_t pos;

static void out(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pos += (size_t)vsnprintf(buf + pos, sizeof(buf) - pos, fmt, ap);
    va_end(ap);
    assert_true(pos < sizeof(buf));
}

static void arr(int n)
{
    out("*%d\r\n", n);
}

static void str(const char *s)
{
    out("$%zu\r\n%s\r\n", strlen(s), s);
}

static void num(long long v)
{
    out(":%lld\r\n", v);
}

/* One CLUSTER SHARDS node: id, port or tls-port, ip, endpoint, [hostname], role, health. */
static void shard_node(const char *id, const char *port_key, int port, const char *ip,
                       const char *endpoint, const char *hostname, const char *role,
                       const char *health)
{
    arr(hostname != NULL ? 16 : 14);
    str("id");
    str(id);
    str(port_key);
    num(port);
    str("ip");
    str(ip);
    str("endpoint");
    str(endpoint);
    if (hostname != NULL) {
        str("hostname");
        str(hostname);
    }
    str("role");
    str(role);
    str("replication-offset");
    num(0);
    str("health");
    str(health);
}

static redisReply *decode(void)
{
    redisReader *r = redisReaderCreate();
    assert_int_equal(redisReaderFeed(r, buf, pos), REDIS_OK);
    void *reply = NULL;
    assert_int_equal(redisReaderGetReply(r, &reply), REDIS_OK);
    assert_non_null(reply);
    redisReaderFree(r);
    pos = 0;
    return reply;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_key_slots(void **state)
{
    (void)state;
    /* the cluster specification's example: CRC16("123456789") = 0x31C3 */
    assert_int_equal(fg_redis_key_slot("123456789", 9), 0x31C3 & 16383);
    assert_int_equal(fg_redis_key_slot("123456789", 9), 12739);
    assert_int_equal(fg_redis_key_slot("foo", 3), 12182);
    assert_int_equal(fg_redis_key_slot("bar", 3), 5061);
    assert_int_equal(fg_redis_key_slot("", 0), 0);
    /* hash tags: the part between the first '{' and the next '}' decides */
    unsigned user = fg_redis_key_slot("user1000", 8);
    assert_int_equal(fg_redis_key_slot("{user1000}.following", 20), user);
    assert_int_equal(fg_redis_key_slot("{user1000}.followers", 20), user);
    assert_int_equal(fg_redis_key_slot("fg:wr:{shop}:queue", 18),
                     fg_redis_key_slot("fg:wr:{shop}:serving", 20));
    /* values from redis-server's CLUSTER KEYSLOT: "foo{}{bar}" has no tag (an empty first
     * one counts as none), "foo{{bar}}zap" has the tag "{bar" */
    assert_int_equal(fg_redis_key_slot("foo{}{bar}", 10), 8363);
    assert_int_equal(fg_redis_key_slot("foo{{bar}}zap", 13), 4015);
    assert_int_equal(fg_redis_key_slot("{bar", 4), 4015);
    /* "foo{bar}{zap}": the first tag only */
    assert_int_equal(fg_redis_key_slot("foo{bar}{zap}", 13), fg_redis_key_slot("bar", 3));
    /* no closing brace: the whole key */
    assert_int_equal(fg_redis_key_slot("a{b", 3), 13340);
    /* bytes, not strings: a NUL inside counts */
    assert_int_not_equal(fg_redis_key_slot("a\0b", 3), fg_redis_key_slot("a", 1));
}

static void test_shards(void **state)
{
    (void)state;
    arr(3);
    /* shard 1: two ranges, a TLS-only master with a hostname, a replica */
    arr(4);
    str("slots");
    arr(4);
    num(0);
    num(100);
    num(200);
    num(5460);
    str("nodes");
    arr(2);
    shard_node("r1", "tls-port", 7100, "10.0.0.9", "10.0.0.9", NULL, "replica", "online");
    shard_node("m1", "tls-port", 7000, "10.0.0.1", "node1.cache.test", "node1.cache.test", "master",
               "online");
    /* shard 2: both ports announced; the master's endpoint unknown ("?") */
    arr(4);
    str("slots");
    arr(2);
    num(5461);
    num(10922);
    str("nodes");
    arr(1);
    arr(16);
    str("id");
    str("m2");
    str("port");
    num(6379);
    str("tls-port");
    num(6380);
    str("ip");
    str("10.0.0.2");
    str("endpoint");
    str("?");
    str("role");
    str("master");
    str("replication-offset");
    num(1);
    str("health");
    str("online");
    /* shard 3: its master failed, a replica is loading: nobody serves it */
    arr(4);
    str("slots");
    arr(2);
    num(10923);
    num(16383);
    str("nodes");
    arr(2);
    shard_node("m3", "port", 6379, "10.0.0.3", "10.0.0.3", NULL, "master", "failed");
    shard_node("r3", "port", 6379, "10.0.0.4", "10.0.0.4", NULL, "replica", "loading");
    redisReply *reply = decode();

    char err[160] = "";
    size_t n = 0;
    struct slot_range *m = fg_redis_parse_shards(reply, true, &n, err, sizeof(err));
    assert_non_null(m);
    assert_int_equal(n, 3);
    assert_int_equal(m[0].start, 0);
    assert_int_equal(m[0].end, 100);
    assert_int_equal(m[1].start, 200);
    assert_int_equal(m[1].end, 5460);
    assert_string_equal(m[1].host, "node1.cache.test");
    assert_string_equal(m[1].hostname, "node1.cache.test");
    assert_int_equal(m[1].port, 7000);
    assert_int_equal(m[2].start, 5461);
    assert_string_equal(m[2].host, ""); /* "?": the node that answered */
    assert_int_equal(m[2].port, 6380);  /* TLS: the TLS port */
    free(m);

    m = fg_redis_parse_shards(reply, false, &n, err, sizeof(err));
    assert_int_equal(n, 3);
    assert_int_equal(m[2].port, 6379); /* plain: the plain port */
    free(m);
    freeReplyObject(reply);
}

static void test_shards_malformed(void **state)
{
    (void)state;
    char err[160];
    size_t n = 7;
    /* not an array */
    str("OK");
    redisReply *r = decode();
    err[0] = '\0';
    assert_null(fg_redis_parse_shards(r, false, &n, err, sizeof(err)));
    assert_int_equal(n, 0);
    assert_true(err[0] != '\0');
    freeReplyObject(r);
    /* a slot beyond 16383 */
    arr(1);
    arr(4);
    str("slots");
    arr(2);
    num(0);
    num(16384);
    str("nodes");
    arr(1);
    shard_node("m", "port", 1, "10.0.0.1", "10.0.0.1", NULL, "master", "online");
    r = decode();
    err[0] = '\0';
    assert_null(fg_redis_parse_shards(r, false, &n, err, sizeof(err)));
    assert_true(err[0] != '\0');
    freeReplyObject(r);
    /* an odd number of slot bounds */
    arr(1);
    arr(4);
    str("slots");
    arr(1);
    num(0);
    str("nodes");
    arr(0);
    r = decode();
    assert_null(fg_redis_parse_shards(r, false, &n, err, sizeof(err)));
    freeReplyObject(r);
    /* an empty cluster: no error, no ranges */
    arr(0);
    r = decode();
    err[0] = '\0';
    assert_null(fg_redis_parse_shards(r, false, &n, err, sizeof(err)));
    assert_int_equal(n, 0);
    assert_string_equal(err, "");
    freeReplyObject(r);
}

static void test_slots(void **state)
{
    (void)state;
    arr(2);
    /* Redis 7 with metadata: a hostname */
    arr(4);
    num(0);
    num(8191);
    arr(4);
    str("10.0.0.1");
    num(6379);
    str("id1");
    arr(2);
    str("hostname");
    str("n1.cache.test");
    arr(4); /* a replica: ignored */
    str("10.0.0.9");
    num(6379);
    str("id9");
    arr(0);
    /* older servers: ip, port, id only; "" for an unknown endpoint */
    arr(3);
    num(8192);
    num(16383);
    arr(3);
    str("");
    num(6380);
    str("id2");
    redisReply *r = decode();
    char err[160] = "";
    size_t n = 0;
    struct slot_range *m = fg_redis_parse_slots(r, &n, err, sizeof(err));
    assert_non_null(m);
    assert_int_equal(n, 2);
    assert_string_equal(m[0].host, "10.0.0.1");
    assert_string_equal(m[0].hostname, "n1.cache.test");
    assert_int_equal(m[0].port, 6379);
    assert_int_equal(m[1].start, 8192);
    assert_int_equal(m[1].end, 16383);
    assert_string_equal(m[1].host, "");
    assert_string_equal(m[1].hostname, "");
    assert_int_equal(m[1].port, 6380);
    free(m);
    freeReplyObject(r);

    /* a port out of range */
    arr(1);
    arr(3);
    num(0);
    num(1);
    arr(2);
    str("10.0.0.1");
    num(70000);
    r = decode();
    assert_null(fg_redis_parse_slots(r, &n, err, sizeof(err)));
    freeReplyObject(r);
}

static void test_redirects(void **state)
{
    (void)state;
    bool ask;
    unsigned slot;
    char host[64];
    int port;
#define PARSE(s) fg_redis_parse_redirect(s, strlen(s), &ask, &slot, host, sizeof(host), &port)
    assert_true(PARSE("MOVED 3999 127.0.0.1:6381"));
    assert_false(ask);
    assert_int_equal(slot, 3999);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 6381);
    assert_true(PARSE("ASK 16383 node2.cache.test:6379"));
    assert_true(ask);
    assert_int_equal(slot, 16383);
    assert_string_equal(host, "node2.cache.test");
    /* the endpoint left out: the same host */
    assert_true(PARSE("MOVED 1 :6380"));
    assert_string_equal(host, "");
    assert_int_equal(port, 6380);
    /* IPv6: the last ':' separates the port */
    assert_true(PARSE("MOVED 2 fd00::1:7000"));
    assert_string_equal(host, "fd00::1");
    assert_int_equal(port, 7000);
    /* not redirections, or broken ones */
    assert_false(PARSE("NOSCRIPT No matching script"));
    assert_false(PARSE("MOVED"));
    assert_false(PARSE("MOVED 16384 127.0.0.1:1"));
    assert_false(PARSE("MOVED x 127.0.0.1:1"));
    assert_false(PARSE("MOVED 1 127.0.0.1"));
    assert_false(PARSE("MOVED 1 127.0.0.1:0"));
    assert_false(PARSE("MOVED 1 127.0.0.1:65536"));
    assert_false(PARSE("MOVED 1 127.0.0.1:12a"));
    assert_false(PARSE("ASKING"));
#undef PARSE
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_slots),        cmocka_unit_test(test_shards),
        cmocka_unit_test(test_shards_malformed), cmocka_unit_test(test_slots),
        cmocka_unit_test(test_redirects),
    };
    return cmocka_run_group_tests_name("redis cluster", tests, NULL, NULL);
}
