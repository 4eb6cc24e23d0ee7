/* test_proto.c — the proxy <-> agent frames: round trips of RECORD and ANSWER, every
 * prefix of a frame is INCOMPLETE, oversized frames are TOO_BIG with their id, fields that
 * do not add up or carry forbidden bytes are INVALID, a lost framing is CORRUPT, and no
 * decode ever reads past its input: each input is placed right before a PROT_NONE page. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/agent.h"

/* ---- a guard page: buffers end exactly where an unreadable page begins ---------------- */

static uint8_t *guard_base;
static size_t guard_span;

static int guard_setup(void **state)
{
    (void)state;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    guard_span = 1024 * page; /* room for the largest test frame (540 KiB) */
    guard_base =
        mmap(NULL, guard_span + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(guard_base != MAP_FAILED);
    assert_int_equal(mprotect(guard_base + guard_span, page, PROT_NONE), 0);
    return 0;
}

static int guard_teardown(void **state)
{
    (void)state;
    munmap(guard_base, guard_span + (size_t)sysconf(_SC_PAGESIZE));
    return 0;
}

/* A copy of data[0..len) ending at the guard page. */
static const uint8_t *guarded(const void *data, size_t len)
{
    assert_true(len <= guard_span);
    uint8_t *p = guard_base + guard_span - len;
    if (len > 0)
        memcpy(p, data, len);
    return p;
}

/* ---- helpers ---------------------------------------------------------------------------- */

static void sample(struct fg_agent_record *r)
{
    memset(r, 0, sizeof(*r));
    r->id = 0x1122334455667788ull;
    r->key = "order-42";
    r->key_len = 8;
    r->method = "POST";
    r->method_len = 4;
    r->target = "/api/orders?x=1";
    r->target_len = strlen(r->target);
    r->n_headers = 2;
    r->headers[0] = (struct fg_agent_header){"Content-Type", 12, "application/json", 16};
    r->headers[1] = (struct fg_agent_header){"X-Empty", 7, "", 0};
    r->body = "{\"sku\":7}";
    r->body_len = 9;
}

static size_t encode(const struct fg_agent_record *r, uint8_t *out, size_t cap)
{
    size_t n = fg_agent_proto_encode_record(r, out, cap);
    assert_true(n > 0);
    assert_int_equal(n, fg_agent_proto_record_size(r));
    return n;
}

static enum fg_agent_proto_result decode(const uint8_t *frame, size_t len, size_t max,
                                         struct fg_agent_record *r, uint64_t *id, size_t *flen)
{
    return fg_agent_proto_decode_record(guarded(frame, len), len, max, r, id, flen);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_record_round_trip(void **state)
{
    (void)state;
    struct fg_agent_record r, d;
    uint8_t buf[512];
    sample(&r);
    size_t n = encode(&r, buf, sizeof(buf));
    assert_int_equal(n, 24 + 8 + 4 + 15 + (4 + 12 + 16) + (4 + 7) + 9);
    uint64_t id = 0;
    size_t flen = 0;
    assert_int_equal(decode(buf, n, 1u << 20, &d, &id, &flen), FG_AGENT_PROTO_OK);
    assert_int_equal(flen, n);
    assert_true(id == r.id && d.id == r.id);
    assert_int_equal(d.key_len, 8);
    assert_memory_equal(d.key, "order-42", 8);
    assert_memory_equal(d.method, "POST", 4);
    assert_int_equal(d.target_len, r.target_len);
    assert_memory_equal(d.target, r.target, r.target_len);
    assert_int_equal(d.n_headers, 2);
    assert_memory_equal(d.headers[0].name, "Content-Type", 12);
    assert_memory_equal(d.headers[0].value, "application/json", 16);
    assert_int_equal(d.headers[1].value_len, 0);
    assert_int_equal(d.body_len, 9);
    assert_memory_equal(d.body, "{\"sku\":7}", 9);

    /* Decoding the decoded record encodes the same bytes. */
    uint8_t again[512];
    assert_int_equal(fg_agent_proto_encode_record(&d, again, sizeof(again)), n);
    assert_memory_equal(again, buf, n);
}

static void test_record_limits_round_trip(void **state)
{
    (void)state;
    static char key[255], target[65535], names[64][255], values[64][8192];
    memset(key, 'k', sizeof(key));
    memset(target, 'a', sizeof(target));
    target[0] = '/';
    struct fg_agent_record r, d;
    sample(&r);
    r.key = key;
    r.key_len = sizeof(key);
    r.target = target;
    r.target_len = sizeof(target);
    r.method = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    r.method_len = 32;
    r.n_headers = FG_AGENT_PROTO_MAX_HEADERS;
    for (int i = 0; i < FG_AGENT_PROTO_MAX_HEADERS; i++) {
        memset(names[i], 'n', sizeof(names[i]));
        memset(values[i], 'v', sizeof(values[i]));
        r.headers[i] = (struct fg_agent_header){names[i], 255, values[i], 8192};
    }
    r.body = NULL;
    r.body_len = 0;
    size_t n = fg_agent_proto_record_size(&r);
    uint8_t *buf = malloc(n);
    assert_non_null(buf);
    assert_int_equal(fg_agent_proto_encode_record(&r, buf, n), n);
    assert_int_equal(fg_agent_proto_encode_record(&r, buf, n - 1), 0); /* cap too small */
    assert_int_equal(decode(buf, n, n, &d, NULL, NULL), FG_AGENT_PROTO_OK);
    assert_int_equal(d.n_headers, 64);
    assert_int_equal(d.headers[63].value_len, 8192);
    assert_int_equal(d.target_len, 65535);
    free(buf);
}

static void test_encode_refuses_bad_fields(void **state)
{
    (void)state;
    struct fg_agent_record r;
    uint8_t buf[512];
    sample(&r);
    r.key_len = 0;
    assert_int_equal(fg_agent_proto_encode_record(&r, buf, sizeof(buf)), 0);
    sample(&r);
    r.key = "a b";
    r.key_len = 3;
    assert_int_equal(fg_agent_proto_encode_record(&r, buf, sizeof(buf)), 0);
    sample(&r);
    r.method = "PO ST";
    r.method_len = 5;
    assert_int_equal(fg_agent_proto_encode_record(&r, buf, sizeof(buf)), 0);
    sample(&r);
    r.target = "api";
    r.target_len = 3;
    assert_int_equal(fg_agent_proto_encode_record(&r, buf, sizeof(buf)), 0);
    sample(&r);
    r.headers[0].value = "a\r\nb";
    r.headers[0].value_len = 4;
    assert_int_equal(fg_agent_proto_encode_record(&r, buf, sizeof(buf)), 0);
    sample(&r);
    r.headers[0].name = "Bad:Name";
    r.headers[0].name_len = 8;
    assert_int_equal(fg_agent_proto_encode_record(&r, buf, sizeof(buf)), 0);
    sample(&r);
    r.n_headers = FG_AGENT_PROTO_MAX_HEADERS + 1;
    assert_int_equal(fg_agent_proto_record_size(&r), 0);
}

static void test_every_prefix_incomplete(void **state)
{
    (void)state;
    struct fg_agent_record r, d;
    uint8_t buf[512];
    sample(&r);
    size_t n = encode(&r, buf, sizeof(buf));
    for (size_t i = 0; i < n; i++)
        assert_int_equal(decode(buf, i, 1u << 20, &d, NULL, NULL), FG_AGENT_PROTO_INCOMPLETE);
    /* Two frames back to back: the first decodes alone. */
    uint8_t two[1024];
    memcpy(two, buf, n);
    memcpy(two + n, buf, n);
    size_t flen = 0;
    assert_int_equal(decode(two, 2 * n, 1u << 20, &d, NULL, &flen), FG_AGENT_PROTO_OK);
    assert_int_equal(flen, n);
}

static void test_too_big(void **state)
{
    (void)state;
    struct fg_agent_record r, d;
    uint8_t buf[512];
    sample(&r);
    size_t n = encode(&r, buf, sizeof(buf));
    uint64_t id = 0;
    size_t flen = 0;
    /* Known as too big as soon as the id is in, whatever follows. */
    assert_int_equal(decode(buf, 13, n - 1, &d, &id, &flen), FG_AGENT_PROTO_INCOMPLETE);
    assert_int_equal(decode(buf, 14, n - 1, &d, &id, &flen), FG_AGENT_PROTO_TOO_BIG);
    assert_true(id == r.id);
    assert_int_equal(flen, n);
    assert_int_equal(decode(buf, n, n, &d, &id, &flen), FG_AGENT_PROTO_OK);
    /* A length field near 4 GiB. */
    put32(buf, UINT32_MAX);
    assert_int_equal(decode(buf, 20, 1u << 20, &d, &id, &flen), FG_AGENT_PROTO_TOO_BIG);
    assert_int_equal(flen, (size_t)UINT32_MAX + 4);
}

static void test_corrupt_framing(void **state)
{
    (void)state;
    struct fg_agent_record r, d;
    uint8_t buf[512];
    sample(&r);
    size_t n = encode(&r, buf, sizeof(buf));
    uint8_t bad[512];
    memcpy(bad, buf, n);
    bad[4] = 2; /* version */
    assert_int_equal(decode(bad, n, 1u << 20, &d, NULL, NULL), FG_AGENT_PROTO_CORRUPT);
    memcpy(bad, buf, n);
    bad[5] = FG_AGENT_PROTO_ANSWER; /* an answer sent the wrong way */
    assert_int_equal(decode(bad, n, 1u << 20, &d, NULL, NULL), FG_AGENT_PROTO_CORRUPT);
    memcpy(bad, buf, n);
    put32(bad, 19); /* shorter than the fixed part */
    assert_int_equal(decode(bad, n, 1u << 20, &d, NULL, NULL), FG_AGENT_PROTO_CORRUPT);
    /* HTTP sent to the socket by mistake. */
    const char *http = "POST /api/orders HTTP/1.1\r\n";
    assert_int_equal(decode((const uint8_t *)http, strlen(http), 1u << 20, &d, NULL, NULL),
                     FG_AGENT_PROTO_CORRUPT);
}

/* Each field length changed by one either way: the fields no longer add up (or a
 * character lands where it may not), and the frame is INVALID, never read past. */
static void test_inconsistent_lengths(void **state)
{
    (void)state;
    struct fg_agent_record r, d;
    uint8_t buf[512];
    sample(&r);
    size_t n = encode(&r, buf, sizeof(buf));
    const size_t offs[] = {14, 15, 16, 18, 20};
    for (size_t f = 0; f < 5; f++) {
        for (int delta = -1; delta <= 1; delta += 2) {
            uint8_t bad[512];
            memcpy(bad, buf, n);
            bad[offs[f]] = (uint8_t)(bad[offs[f]] + delta);
            uint64_t id = 0;
            size_t flen = 0;
            enum fg_agent_proto_result res = decode(bad, n, 1u << 20, &d, &id, &flen);
            assert_int_equal(res, FG_AGENT_PROTO_INVALID);
            assert_true(id == r.id);
            assert_int_equal(flen, n);
        }
    }
    /* A frame one byte longer than its fields (the length field says so). */
    uint8_t longer[512];
    memcpy(longer, buf, n);
    longer[n] = 'x';
    put32(longer, (uint32_t)(n + 1 - 4));
    assert_int_equal(decode(longer, n + 1, 1u << 20, &d, NULL, NULL), FG_AGENT_PROTO_INVALID);
}

/* Every byte of a valid frame replaced by every value: the decoder answers something
 * and, under the guard page, never over-reads; an OK result is self-consistent. */
static void test_every_byte_every_value(void **state)
{
    (void)state;
    struct fg_agent_record r, d;
    uint8_t buf[512];
    sample(&r);
    size_t n = encode(&r, buf, sizeof(buf));
    for (size_t i = 0; i < n; i++) {
        for (int v = 0; v < 256; v++) {
            uint8_t bad[512];
            memcpy(bad, buf, n);
            bad[i] = (uint8_t)v;
            size_t flen = 0;
            enum fg_agent_proto_result res = decode(bad, n, 1u << 20, &d, NULL, &flen);
            if (res == FG_AGENT_PROTO_OK) {
                assert_true(flen <= n);
                uint8_t again[512];
                assert_int_equal(fg_agent_proto_encode_record(&d, again, sizeof(again)), flen);
            }
        }
    }
}

static void test_random_garbage(void **state)
{
    (void)state;
    uint8_t buf[4096];
    struct fg_agent_record d;
    srand(7);
    for (int round = 0; round < 20000; round++) {
        size_t len = (size_t)rand() % sizeof(buf);
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)rand();
        if (len >= 6 && (round & 1)) { /* plausible framing, garbage fields */
            put32(buf, (uint32_t)(len - 4));
            buf[4] = 1;
            buf[5] = 1;
        }
        size_t flen = 0;
        enum fg_agent_proto_result res = decode(buf, len, sizeof(buf), &d, NULL, &flen);
        if (res == FG_AGENT_PROTO_OK)
            assert_true(flen <= len);
    }
}

static void test_answer_round_trip(void **state)
{
    (void)state;
    uint8_t a[FG_AGENT_PROTO_ANSWER_SIZE];
    for (int s = FG_AGENT_DURABLE; s <= FG_AGENT_ERROR; s++) {
        fg_agent_proto_encode_answer(0xfeedfacecafebeefull + (uint64_t)s, (enum fg_agent_status)s,
                                     a);
        uint64_t id = 0;
        int st = 0;
        for (size_t i = 0; i < sizeof(a); i++)
            assert_int_equal(fg_agent_proto_decode_answer(guarded(a, i), i, &id, &st),
                             FG_AGENT_PROTO_INCOMPLETE);
        assert_int_equal(fg_agent_proto_decode_answer(guarded(a, sizeof(a)), sizeof(a), &id, &st),
                         FG_AGENT_PROTO_OK);
        assert_true(id == 0xfeedfacecafebeefull + (uint64_t)s);
        assert_int_equal(st, s);
        assert_string_not_equal(fg_agent_status_name(s), "unknown");
    }
    uint64_t id;
    int st;
    a[14] = 0;
    assert_int_equal(fg_agent_proto_decode_answer(guarded(a, sizeof(a)), sizeof(a), &id, &st),
                     FG_AGENT_PROTO_CORRUPT);
    a[14] = 6;
    assert_int_equal(fg_agent_proto_decode_answer(guarded(a, sizeof(a)), sizeof(a), &id, &st),
                     FG_AGENT_PROTO_CORRUPT);
    fg_agent_proto_encode_answer(1, FG_AGENT_DURABLE, a);
    a[0] = 12;
    assert_int_equal(fg_agent_proto_decode_answer(guarded(a, sizeof(a)), sizeof(a), &id, &st),
                     FG_AGENT_PROTO_CORRUPT);
    assert_string_equal(fg_agent_status_name(0), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_round_trip),
        cmocka_unit_test(test_record_limits_round_trip),
        cmocka_unit_test(test_encode_refuses_bad_fields),
        cmocka_unit_test(test_every_prefix_incomplete),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_corrupt_framing),
        cmocka_unit_test(test_inconsistent_lengths),
        cmocka_unit_test(test_every_byte_every_value),
        cmocka_unit_test(test_random_garbage),
        cmocka_unit_test(test_answer_round_trip),
    };
    return cmocka_run_group_tests(tests, guard_setup, guard_teardown);
}
