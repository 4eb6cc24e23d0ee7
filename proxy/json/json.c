/*
 * json.c — the little JSON flashgate and its agent need: a strict RFC 8259 reader for the
 * answers of AWS services and the instance metadata service (small documents, read once, so a tree
 * of malloc'd nodes is fine), and a string writer for the requests it builds.
 *
 * The reader refuses what a strict parser refuses (trailing commas, single quotes, bare
 * control characters, lone surrogates, leading zeros) and stops at JSON_DEPTH_MAX levels,
 * so an endpoint that answers garbage gets an error, never an overflow.
 */
#include "json/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "core/core.h"

#define JSON_DEPTH_MAX 32

struct jp {
    const unsigned char *p, *end;
    char *err;
    size_t errlen;
    bool failed;
};

static void jp_fail(struct jp *j, const char *what)
{
    if (!j->failed && j->errlen > 0)
        snprintf(j->err, j->errlen, "JSON: %s", what);
    j->failed = true;
}

static void skip_ws(struct jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static size_t utf8_put(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    } else if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

static bool hex4(struct jp *j, uint32_t *out)
{
    if (j->end - j->p < 4)
        return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = fg_hex_value((char)j->p[i]);
        if (h < 0)
            return false;
        v = v << 4 | (uint32_t)h;
    }
    j->p += 4;
    *out = v;
    return true;
}

/* A string at j->p (on the opening quote), decoded into a malloc'd NUL-terminated copy.
 * Escapes only shrink the text (\uXXXX: 6 bytes for at most 3, a pair 12 for 4), so the
 * raw length bounds the decoded one. */
static char *parse_string(struct jp *j, size_t *len)
{
    j->p++;
    const unsigned char *start = j->p;
    while (j->p < j->end && *j->p != '"') {
        if (*j->p == '\\' && j->p + 1 < j->end)
            j->p++;
        j->p++;
    }
    if (j->p >= j->end) {
        jp_fail(j, "unterminated string");
        return NULL;
    }
    const unsigned char *stop = j->p;
    char *out = malloc((size_t)(stop - start) + 1);
    if (out == NULL) {
        jp_fail(j, "out of memory");
        return NULL;
    }
    size_t n = 0;
    j->p = start;
    while (j->p < stop) {
        unsigned char c = *j->p;
        if (c < 0x20) {
            jp_fail(j, "control character in a string");
            goto bad;
        }
        if (c != '\\') {
            out[n++] = (char)c;
            j->p++;
            continue;
        }
        j->p++;
        c = *j->p++;
        switch (c) {
        case '"':
        case '\\':
        case '/':
            out[n++] = (char)c;
            break;
        case 'b':
            out[n++] = '\b';
            break;
        case 'f':
            out[n++] = '\f';
            break;
        case 'n':
            out[n++] = '\n';
            break;
        case 'r':
            out[n++] = '\r';
            break;
        case 't':
            out[n++] = '\t';
            break;
        case 'u': {
            uint32_t cp, lo;
            if (!hex4(j, &cp)) {
                jp_fail(j, "bad \\u escape");
                goto bad;
            }
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (stop - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u') {
                    jp_fail(j, "lone surrogate");
                    goto bad;
                }
                j->p += 2;
                if (!hex4(j, &lo) || lo < 0xdc00 || lo > 0xdfff) {
                    jp_fail(j, "bad surrogate pair");
                    goto bad;
                }
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                jp_fail(j, "lone surrogate");
                goto bad;
            }
            n += utf8_put(out + n, cp);
            break;
        }
        default:
            jp_fail(j, "bad escape");
            goto bad;
        }
    }
    j->p = stop + 1;
    out[n] = '\0';
    *len = n;
    return out;
bad:
    free(out);
    return NULL;
}

static bool parse_number(struct jp *j)
{
    const unsigned char *s = j->p;
    if (j->p < j->end && *j->p == '-')
        j->p++;
    if (j->p < j->end && *j->p == '0') {
        j->p++;
    } else if (j->p < j->end && *j->p >= '1' && *j->p <= '9') {
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    } else {
        return false;
    }
    if (j->p < j->end && *j->p == '.') {
        j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9')
            return false;
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (j->p >= j->end || *j->p < '0' || *j->p > '9')
            return false;
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
            j->p++;
    }
    return j->p > s;
}

static bool literal(struct jp *j, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
        return false;
    j->p += n;
    return true;
}

static struct fg_json *parse_value(struct jp *j, int depth)
{
    skip_ws(j);
    if (j->p >= j->end) {
        jp_fail(j, "unexpected end");
        return NULL;
    }
    if (depth > JSON_DEPTH_MAX) {
        jp_fail(j, "nested too deeply");
        return NULL;
    }
    struct fg_json *v = calloc(1, sizeof(*v));
    if (v == NULL) {
        jp_fail(j, "out of memory");
        return NULL;
    }
    unsigned char c = *j->p;
    if (c == '{' || c == '[') {
        v->type = c == '{' ? FG_JSON_OBJECT : FG_JSON_ARRAY;
        unsigned char close = c == '{' ? '}' : ']';
        j->p++;
        skip_ws(j);
        if (j->p < j->end && *j->p == close) {
            j->p++;
            return v;
        }
        struct fg_json **tail = &v->child;
        for (;;) {
            char *key = NULL;
            size_t key_len = 0;
            if (v->type == FG_JSON_OBJECT) {
                skip_ws(j);
                if (j->p >= j->end || *j->p != '"') {
                    jp_fail(j, "expected a member name");
                    goto bad;
                }
                key = parse_string(j, &key_len);
                if (key == NULL)
                    goto bad;
                skip_ws(j);
                if (j->p >= j->end || *j->p != ':') {
                    free(key);
                    jp_fail(j, "expected ':'");
                    goto bad;
                }
                j->p++;
            }
            struct fg_json *m = parse_value(j, depth + 1);
            if (m == NULL) {
                free(key);
                goto bad;
            }
            m->key = key;
            m->key_len = key_len;
            *tail = m;
            tail = &m->next;
            v->n++;
            skip_ws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            if (j->p < j->end && *j->p == close) {
                j->p++;
                return v;
            }
            jp_fail(j, "expected ',' or the end of the container");
            goto bad;
        }
    } else if (c == '"') {
        v->type = FG_JSON_STRING;
        v->str = parse_string(j, &v->len);
        if (v->str == NULL)
            goto bad;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        const unsigned char *s = j->p;
        if (!parse_number(j)) {
            jp_fail(j, "bad number");
            goto bad;
        }
        v->type = FG_JSON_NUMBER;
        v->len = (size_t)(j->p - s);
        v->str = malloc(v->len + 1);
        if (v->str == NULL) {
            jp_fail(j, "out of memory");
            goto bad;
        }
        memcpy(v->str, s, v->len);
        v->str[v->len] = '\0';
    } else if (literal(j, "true")) {
        v->type = FG_JSON_TRUE;
    } else if (literal(j, "false")) {
        v->type = FG_JSON_FALSE;
    } else if (literal(j, "null")) {
        v->type = FG_JSON_NULL;
    } else {
        jp_fail(j, "unexpected character");
        goto bad;
    }
    return v;
bad:
    fg_json_free(v);
    return NULL;
}

struct fg_json *fg_json_parse(const void *buf, size_t len, char *err, size_t errlen)
{
    struct jp j = {.p = buf, .end = (const unsigned char *)buf + len, .err = err, .errlen = errlen};
    if (errlen > 0)
        err[0] = '\0';
    struct fg_json *v = parse_value(&j, 0);
    if (v == NULL)
        return NULL;
    skip_ws(&j);
    if (j.p != j.end) {
        jp_fail(&j, "data after the value");
        fg_json_free(v);
        return NULL;
    }
    return v;
}

void fg_json_free(struct fg_json *v)
{
    while (v != NULL) {
        struct fg_json *next = v->next;
        fg_json_free(v->child);
        free(v->str);
        free(v->key);
        free(v);
        v = next;
    }
}

const struct fg_json *fg_json_get(const struct fg_json *obj, const char *key)
{
    if (obj == NULL || obj->type != FG_JSON_OBJECT)
        return NULL;
    size_t n = strlen(key);
    for (const struct fg_json *m = obj->child; m != NULL; m = m->next)
        if (m->key_len == n && memcmp(m->key, key, n) == 0)
            return m;
    return NULL;
}

const char *fg_json_get_string(const struct fg_json *obj, const char *key, size_t *len)
{
    const struct fg_json *m = fg_json_get(obj, key);
    if (m == NULL || m->type != FG_JSON_STRING)
        return NULL;
    if (len != NULL)
        *len = m->len;
    return m->str;
}

/* ---- UTF-8 and writing ------------------------------------------------------------------- */

size_t fg_json_utf8_next(const void *s, size_t len, uint32_t *cp)
{
    const unsigned char *p = s;
    if (len == 0)
        return 0;
    unsigned char c = p[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n;
    uint32_t v, min;
    if ((c & 0xe0) == 0xc0) {
        n = 2, v = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3, v = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (p[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return n;
}

void fg_json_put_string(struct evbuffer *out, const void *s, size_t len, bool latin1)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = s;
    char buf[256];
    size_t n = 0;
    buf[n++] = '"';
    for (size_t i = 0; i < len; i++) {
        if (n + 8 > sizeof(buf)) {
            evbuffer_add(out, buf, n);
            n = 0;
        }
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)c;
        } else if (c == '\n') {
            buf[n++] = '\\', buf[n++] = 'n';
        } else if (c == '\r') {
            buf[n++] = '\\', buf[n++] = 'r';
        } else if (c == '\t') {
            buf[n++] = '\\', buf[n++] = 't';
        } else if (c < 0x20 || c == 0x7f || (latin1 && c >= 0x80)) {
            buf[n++] = '\\', buf[n++] = 'u', buf[n++] = '0', buf[n++] = '0';
            buf[n++] = hex[c >> 4];
            buf[n++] = hex[c & 15];
        } else {
            buf[n++] = (char)c;
        }
    }
    buf[n++] = '"';
    evbuffer_add(out, buf, n);
}

size_t fg_json_latin1(char *s, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = fg_json_utf8_next(s + i, len - i, &cp);
        if (n == 2 && cp <= 0xff) {
            s[o++] = (char)cp;
        } else {
            if (n == 0)
                n = 1; /* not UTF-8: keep the byte */
            memmove(s + o, s + i, n);
            o += n;
        }
        i += n;
    }
    s[o] = '\0';
    return o;
}
