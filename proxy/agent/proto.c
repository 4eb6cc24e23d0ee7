/*
 * proto.c — the frames the proxy and flashgate-agent exchange over the agent's unix
 * socket (RECORD and ANSWER, see agent.h). Pure functions: no allocation, no I/O, and
 * every read is checked against the caller's length first.
 */
#include "agent/agent.h"

#include <string.h>

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool all_tchar(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

static bool all_visible(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

static bool value_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
            return false;
    return true;
}

const char *fg_agent_status_name(int status)
{
    switch (status) {
    case FG_AGENT_DURABLE:
        return "durable";
    case FG_AGENT_DUPLICATE:
        return "duplicate";
    case FG_AGENT_FULL:
        return "full";
    case FG_AGENT_TOO_BIG:
        return "too_big";
    case FG_AGENT_ERROR:
        return "error";
    default:
        return "unknown";
    }
}

size_t fg_agent_proto_record_size(const struct fg_agent_record *r)
{
    if (r->key_len < 1 || r->key_len > FG_AGENT_PROTO_KEY_MAX || r->method_len < 1 ||
        r->method_len > FG_AGENT_PROTO_METHOD_MAX || r->target_len < 1 ||
        r->target_len > FG_AGENT_PROTO_TARGET_MAX || r->n_headers > FG_AGENT_PROTO_MAX_HEADERS ||
        r->body_len > UINT32_MAX)
        return 0;
    uint64_t n = FG_AGENT_PROTO_RECORD_FIXED + r->key_len + r->method_len + r->target_len;
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct fg_agent_header *h = &r->headers[i];
        if (h->name_len < 1 || h->name_len > FG_AGENT_PROTO_NAME_MAX ||
            h->value_len > FG_AGENT_PROTO_VALUE_MAX)
            return 0;
        n += 4 + h->name_len + h->value_len;
    }
    n += r->body_len;
    if (n - 4 > UINT32_MAX || n > SIZE_MAX)
        return 0;
    return (size_t)n;
}

static bool record_chars_ok(const struct fg_agent_record *r)
{
    if (!all_visible(r->key, r->key_len) || !all_tchar(r->method, r->method_len) ||
        r->target[0] != '/' || !all_visible(r->target, r->target_len))
        return false;
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct fg_agent_header *h = &r->headers[i];
        if (!all_tchar(h->name, h->name_len) || !value_ok(h->value, h->value_len))
            return false;
    }
    return true;
}

size_t fg_agent_proto_encode_record(const struct fg_agent_record *r, void *out, size_t cap)
{
    size_t n = fg_agent_proto_record_size(r);
    if (n == 0 || n > cap || !record_chars_ok(r))
        return 0;
    uint8_t *p = out;
    put32(p, (uint32_t)(n - 4));
    p[4] = FG_AGENT_PROTO_VERSION;
    p[5] = FG_AGENT_PROTO_RECORD;
    put64(p + 6, r->id);
    p[14] = (uint8_t)r->key_len;
    p[15] = (uint8_t)r->method_len;
    put16(p + 16, (uint16_t)r->target_len);
    put16(p + 18, (uint16_t)r->n_headers);
    put32(p + 20, (uint32_t)r->body_len);
    p += FG_AGENT_PROTO_RECORD_FIXED;
    memcpy(p, r->key, r->key_len);
    p += r->key_len;
    memcpy(p, r->method, r->method_len);
    p += r->method_len;
    memcpy(p, r->target, r->target_len);
    p += r->target_len;
    for (size_t i = 0; i < r->n_headers; i++) {
        const struct fg_agent_header *h = &r->headers[i];
        put16(p, (uint16_t)h->name_len);
        put16(p + 2, (uint16_t)h->value_len);
        memcpy(p + 4, h->name, h->name_len);
        if (h->value_len > 0)
            memcpy(p + 4 + h->name_len, h->value, h->value_len);
        p += 4 + h->name_len + h->value_len;
    }
    if (r->body_len > 0)
        memcpy(p, r->body, r->body_len);
    return n;
}

/* The fields of a complete frame b[0..n): every length is checked against what is left
 * before the bytes it covers are touched. */
static bool parse_fields(const uint8_t *b, size_t n, struct fg_agent_record *r)
{
    size_t key_len = b[14], method_len = b[15];
    size_t target_len = get16(b + 16), n_headers = get16(b + 18);
    size_t body_len = get32(b + 20);
    if (key_len < 1 || method_len < 1 || method_len > FG_AGENT_PROTO_METHOD_MAX || target_len < 1 ||
        n_headers > FG_AGENT_PROTO_MAX_HEADERS)
        return false;
    size_t off = FG_AGENT_PROTO_RECORD_FIXED, left = n - off;
    if (key_len + method_len + target_len > left)
        return false;
    r->key = (const char *)b + off;
    r->key_len = key_len;
    r->method = r->key + key_len;
    r->method_len = method_len;
    r->target = r->method + method_len;
    r->target_len = target_len;
    off += key_len + method_len + target_len;
    left = n - off;
    r->n_headers = n_headers;
    for (size_t i = 0; i < n_headers; i++) {
        if (left < 4)
            return false;
        size_t nl = get16(b + off), vl = get16(b + off + 2);
        if (nl < 1 || nl > FG_AGENT_PROTO_NAME_MAX || vl > FG_AGENT_PROTO_VALUE_MAX ||
            nl + vl > left - 4)
            return false;
        r->headers[i].name = (const char *)b + off + 4;
        r->headers[i].name_len = nl;
        r->headers[i].value = r->headers[i].name + nl;
        r->headers[i].value_len = vl;
        off += 4 + nl + vl;
        left -= 4 + nl + vl;
    }
    if (body_len != left)
        return false;
    r->body = b + off;
    r->body_len = body_len;
    return record_chars_ok(r);
}

enum fg_agent_proto_result fg_agent_proto_decode_record(const void *buf, size_t len,
                                                        size_t max_frame, struct fg_agent_record *r,
                                                        uint64_t *id, size_t *frame_len)
{
    const uint8_t *b = buf;
    if (len < 6)
        return FG_AGENT_PROTO_INCOMPLETE;
    uint64_t n = (uint64_t)get32(b) + 4;
    if (b[4] != FG_AGENT_PROTO_VERSION || b[5] != FG_AGENT_PROTO_RECORD ||
        n < FG_AGENT_PROTO_RECORD_FIXED)
        return FG_AGENT_PROTO_CORRUPT;
    if (len < 14)
        return FG_AGENT_PROTO_INCOMPLETE;
    if (id != NULL)
        *id = get64(b + 6);
    if (frame_len != NULL)
        *frame_len = (size_t)n;
    if (n > max_frame)
        return FG_AGENT_PROTO_TOO_BIG;
    if (len < n)
        return FG_AGENT_PROTO_INCOMPLETE;
    memset(r, 0, sizeof(*r));
    r->id = get64(b + 6);
    if (!parse_fields(b, (size_t)n, r))
        return FG_AGENT_PROTO_INVALID;
    return FG_AGENT_PROTO_OK;
}

void fg_agent_proto_encode_answer(uint64_t id, enum fg_agent_status status,
                                  uint8_t out[FG_AGENT_PROTO_ANSWER_SIZE])
{
    put32(out, FG_AGENT_PROTO_ANSWER_SIZE - 4);
    out[4] = FG_AGENT_PROTO_VERSION;
    out[5] = FG_AGENT_PROTO_ANSWER;
    put64(out + 6, id);
    out[14] = (uint8_t)status;
}

enum fg_agent_proto_result fg_agent_proto_decode_answer(const void *buf, size_t len, uint64_t *id,
                                                        int *status)
{
    const uint8_t *b = buf;
    if (len < 6)
        return FG_AGENT_PROTO_INCOMPLETE;
    if (get32(b) != FG_AGENT_PROTO_ANSWER_SIZE - 4 || b[4] != FG_AGENT_PROTO_VERSION ||
        b[5] != FG_AGENT_PROTO_ANSWER)
        return FG_AGENT_PROTO_CORRUPT;
    if (len < FG_AGENT_PROTO_ANSWER_SIZE)
        return FG_AGENT_PROTO_INCOMPLETE;
    if (b[14] < FG_AGENT_DURABLE || b[14] > FG_AGENT_ERROR)
        return FG_AGENT_PROTO_CORRUPT;
    *id = get64(b + 6);
    *status = b[14];
    return FG_AGENT_PROTO_OK;
}
