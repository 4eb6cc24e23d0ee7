/*
 * respond.h — the one writer of response heads (respond.c). Every answer the server gives
 * goes through fg_respond_head: proxied, served from the cache (304 included), refused
 * (4xx, 429), accepted for later (202), failed (5xx), health and `return` routes. The
 * caller says what the answer is made of; the writer adds what every answer carries (the
 * request id, the stages' fields, Server-Timing when asked, the framing field, Connection)
 * and decides keep-alive.
 */
#ifndef FG_SERVER_RESPOND_H
#define FG_SERVER_RESPOND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/cache.h"
#include "compress/compress.h"
#include "config/config.h"
#include "http/http.h"

struct fg_txn;

/* How the body that follows the head is framed. */
enum fg_respond_body {
    FG_RESPOND_LENGTH = 0, /* Content-Length: length */
    FG_RESPOND_CHUNKED,    /* Transfer-Encoding: chunked (the caller frames the body) */
    FG_RESPOND_TO_CLOSE,   /* no framing: the body ends when the connection closes */
    FG_RESPOND_AS_APP,     /* the app's Content-Length stays as it sent it (or none) */
    FG_RESPOND_NO_BODY,    /* no framing field (a 304 from the cache) */
};

struct fg_respond {
    int status;
    const char *reason; /* NULL: the standard reason phrase */
    size_t reason_len;
    /* What the answer's fields come from (any that apply): */
    const struct fg_http_response *app;  /* the app's (hop-by-hop and framing dropped) */
    const struct fg_compress_plan *plan; /* edits of the app's fields for an encoded body */
    const struct fg_conf_cache *tags;    /* its tag fields are dropped from the app's
                                            (a cache with `tag_strip on`); NULL: none */
    struct fg_cache_obj *stored;         /* the stored head, added by reference */
    const char *ctype;                   /* Content-Type of a body of ours */
    const char *fields;                  /* this kind of answer's own ("Name: v\r\n"...) */
    size_t fields_len;
    enum fg_respond_body body;
    uint64_t length; /* FG_RESPOND_LENGTH */
    bool close;      /* close the connection after it, whatever keep-alive allows */
};

/* Write the head to the client (queued, not flushed). false when it could not be built
 * (out of memory): nothing was written. */
bool fg_respond_head(struct fg_txn *t, const struct fg_respond *r);

/* A whole answer of ours, then the transaction ends. The body is not sent to HEAD. */
void fg_respond(struct fg_txn *t, int status, const char *ctype, const char *body, size_t len,
                const char *fields, size_t fields_len, bool close);
/* An error of ours: the body is "<code> <reason>: detail\n". */
void fg_respond_text(struct fg_txn *t, int status, const char *detail, bool close);

#endif /* FG_SERVER_RESPOND_H */
