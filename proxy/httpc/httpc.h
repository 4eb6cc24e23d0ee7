/*
 * httpc.h — an asynchronous HTTP/1.1 client on a libevent event_base (httpc.c): requests
 * to one endpoint (an AWS service, the instance metadata service, the app) over keep-alive
 * connections, https through proxy/tls's verified client context. The caller writes the
 * request bytes (so it can sign them); the client carries them and de-frames the answer.
 */
#ifndef FG_HTTPC_H
#define FG_HTTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>

#include "http/http.h"

/* ---- URLs --------------------------------------------------------------------------------- */

struct fg_url {
    bool tls;
    int port;
    char host[256];     /* without brackets */
    char hostport[272]; /* for the Host header: the port only when not the default */
    char path[1024];    /* "/" when none */
};

/* Parse "https://host[:port][/path]" (or http://). False with a message in err. */
bool fg_url_parse(const char *s, struct fg_url *u, char *err, size_t errlen);
/* 127.0.0.0/8, ::1 or localhost. */
bool fg_url_is_loopback(const struct fg_url *u);

/* ---- the client -------------------------------------------------------------------------- */

struct fg_httpc;
struct fg_httpc_req;

struct fg_httpc_opts {
    const char *name;         /* for log lines: "sqs", "imds", "app" */
    bool allow_plain_http;    /* http:// to a non-loopback host (IMDS, the app) */
    const char *ca_file;      /* https: CA bundle; NULL: the system store */
    size_t max_idle;          /* idle keep-alive connections kept; 0: 16 */
    uint64_t idle_timeout_ms; /* 0: 30 s */
    size_t max_body;          /* largest response body taken; 0: 8 MiB */
    bool discard_body;        /* bodies are read and dropped (any size; result body "") */
};

/* What a request ended with. Pointers are valid during the callback only. */
struct fg_httpc_result {
    int status;        /* 0: no response; error says why */
    const char *error; /* "timeout", "connect failed", "connection closed", ... */
    bool timed_out;
    bool retried;     /* sent a second time: its reused connection was found closed */
    const char *head; /* the response head as received */
    size_t head_len;
    const char *body; /* decoded (de-chunked) body, then a NUL not counted */
    size_t body_len;
};

struct fg_httpc_stats {
    uint64_t requests, responses, errors, timeouts, connects, reused, stale_retries;
    size_t idle;
};

typedef void (*fg_httpc_cb)(const struct fg_httpc_result *res, void *arg);

/* A client for the endpoint url on base. Names are resolved with dns (NULL: IP literals
 * and localhost only). https verifies the server's certificate and name, always. NULL
 * with a message in err (bad URL, plain http to a non-loopback host without
 * allow_plain_http, a TLS context that cannot be made). */
struct fg_httpc *fg_httpc_new(struct event_base *base, struct evdns_base *dns, const char *url,
                              const struct fg_httpc_opts *o, char *err, size_t errlen);
/* The endpoint (hostport is the Host header's value). */
const struct fg_url *fg_httpc_url(const struct fg_httpc *c);
/* Send the complete request in request (head and body; its bytes are moved out) and call
 * cb once with the response or the failure, within timeout_ms. method says whether a
 * body follows in the response (HEAD). cb never runs inside this call. NULL when out of
 * memory (cb will not run). */
struct fg_httpc_req *fg_httpc_send(struct fg_httpc *c, enum fg_http_method method,
                                   struct evbuffer *request, uint64_t timeout_ms, fg_httpc_cb cb,
                                   void *arg);
/* Abandon a request: its connection is closed, cb is not called. */
void fg_httpc_cancel(struct fg_httpc_req *r);
/* The first response header called name (case-insensitive), trimmed. */
bool fg_httpc_header(const struct fg_httpc_result *res, const char *name, const char **value,
                     size_t *len);
void fg_httpc_get_stats(const struct fg_httpc *c, struct fg_httpc_stats *st);
/* Close every connection and free the client; requests in flight are abandoned (their
 * callbacks do not run). Not from inside one of its callbacks. NULL is a no-op. */
void fg_httpc_free(struct fg_httpc *c);

#endif /* FG_HTTPC_H */
