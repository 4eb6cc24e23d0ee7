/*
 * json.h — the little JSON flashgate and its agent need (json.c): a strict RFC 8259 reader
 * for the answers of AWS services and the instance metadata service (small documents,
 * read once: a tree of malloc'd nodes), and a string writer for the requests they build.
 */
#ifndef FG_JSON_H
#define FG_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

enum fg_json_type {
    FG_JSON_NULL = 0,
    FG_JSON_FALSE,
    FG_JSON_TRUE,
    FG_JSON_NUMBER,
    FG_JSON_STRING,
    FG_JSON_ARRAY,
    FG_JSON_OBJECT
};

/* A parsed value. Strings are decoded (UTF-8, NUL-terminated); a number keeps its text. */
struct fg_json {
    enum fg_json_type type;
    char *str; /* STRING, NUMBER */
    size_t len;
    char *key; /* the member name when inside an object */
    size_t key_len;
    size_t n;              /* ARRAY, OBJECT: members */
    struct fg_json *child; /* the first member */
    struct fg_json *next;  /* the next sibling */
};

/* Parse buf[0..len) strictly (RFC 8259). NULL with a message in err on any error. */
struct fg_json *fg_json_parse(const void *buf, size_t len, char *err, size_t errlen);
/* Free a parsed value and its members. NULL is a no-op. */
void fg_json_free(struct fg_json *v);
/* The first member key of object obj (NULL if obj is not an object or has none). */
const struct fg_json *fg_json_get(const struct fg_json *obj, const char *key);
/* The string member key of obj (its length in *len), NULL if absent or not a string. */
const char *fg_json_get_string(const struct fg_json *obj, const char *key, size_t *len);
/* Append s[0..len) as a JSON string, quotes included. Control characters and DEL are
 * escaped; with latin1 every byte >= 0x80 is escaped as \u00XX (the byte as a code
 * point: header values are octets, not UTF-8), otherwise bytes pass as they are (the
 * caller checked they are UTF-8). */
void fg_json_put_string(struct evbuffer *out, const void *s, size_t len, bool latin1);
/* The inverse of latin1 writing, in place: every 2-byte UTF-8 sequence for U+0080..U+00FF
 * becomes that byte; other bytes stay. Returns the new length (s is NUL-terminated). */
size_t fg_json_latin1(char *s, size_t len);
/* Decode the UTF-8 character at the start of s[0..len) into *cp: its length in bytes, 0
 * when it is not well-formed UTF-8 (overlong, a surrogate, above U+10FFFF, cut short). */
size_t fg_json_utf8_next(const void *s, size_t len, uint32_t *cp);

#endif /* FG_JSON_H */
