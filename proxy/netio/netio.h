/*
 * netio.h — socket I/O on top of libevent bufferevents, the way a proxy needs it.
 *
 * Writes go through at once (fg_flush): a response that fits the socket buffer costs one
 * writev and no epoll_ctl. Reads bypass the bufferevent (struct fg_reader): libevent
 * 2.1's evbuffer_read asks ioctl(FIONREAD) before every read and reads at most 4 KiB; we
 * readv up to 64 KiB straight into the bufferevent's input buffer, one syscall per read.
 * The bufferevent keeps doing the rest: output buffering, connect, write timeouts.
 *
 * TLS: on a bufferevent_openssl the socket carries records, not the bytes the owner
 * reads and writes, so both shortcuts step aside and OpenSSL's bufferevent does the I/O.
 * The API stays the same for the owner: fg_reader reads through the bufferevent's read
 * callback (its high watermark, our own timer for the read timeout), and fg_flush hands
 * the output to SSL_write at once (coalescing small pieces into one record). The reader
 * then routes all of the bufferevent's callbacks: set them with fg_reader_bev_setcb, never
 * bufferevent_setcb. Write and event callbacks reach the owner from the event loop, never
 * from inside its own evbuffer_add or fg_flush (as with a plain socket), and every TLS
 * connection's handshake is counted once (fg_tls_handshake_done).
 */
#ifndef FG_NETIO_H
#define FG_NETIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

/* Back-pressure, the same on every connection: stop reading the producer once this much
 * waits for the consumer, resume when it has drained to FG_LOW_WATER. Bounds the memory
 * of a transaction whatever the sizes of its bodies. */
#define FG_HIGH_WATER (256 * 1024)
#define FG_LOW_WATER  (64 * 1024)

/* Send queued output now. EV_WRITE stays enabled on the bufferevent only while bytes
 * remain. Returns the bytes still queued. Not for a socket whose connect is in progress. */
size_t fg_flush(struct bufferevent *bev);

/* Queue len bytes and send them now (fg_flush); when nothing is queued on a plain socket
 * they go straight to it without passing through the output buffer. Returns the bytes
 * still queued. Not for a socket whose connect is in progress. */
size_t fg_send(struct bufferevent *bev, const void *data, size_t len);

struct ssl_st;

struct fg_reader {
    struct event *ev; /* plain: the socket's read event; TLS: timer and deferred calls */
    struct bufferevent *bev;
    /* New bytes are in bufferevent_get_input(bev), or fg_reader_trigger() asked. */
    void (*on_read)(void *arg);
    /* BEV_EVENT_EOF, BEV_EVENT_ERROR or BEV_EVENT_TIMEOUT, or'ed with BEV_EVENT_READING.
     * Reading is disabled before it is called. */
    void (*on_event)(short what, void *arg);
    void *arg;
    uint64_t timeout_ms; /* 0: none */
    size_t high_water;   /* pause while the input holds this much (0: no limit) */
    bool enabled;        /* wanted by the owner */
    bool armed;          /* the event is added */
    bool triggered;
    struct evbuffer_cb_entry *drain_cb;
    /* TLS mode only */
    struct ssl_st *ssl; /* NULL: a plain socket */
    bufferevent_data_cb owner_write;
    bufferevent_event_cb owner_event;
    void *owner_arg;
    const char *peer; /* who is at the other end, for log lines (may be NULL) */
    short pend_event; /* BEV_EVENT_* waiting to reach the owner from the loop */
    bool pend_write;  /* the write callback waits to reach the owner */
    bool hs_done;     /* the handshake was counted */
    bool kick;        /* read what OpenSSL holds, from the loop */
    bool *alive;      /* cleared by fg_reader_free while callbacks run */
};

/* Take over reading the bufferevent's socket (its own reading is disabled for good). A
 * bufferevent_openssl puts the reader in TLS mode. */
bool fg_reader_init(struct fg_reader *r, struct bufferevent *bev, size_t high_water);
/* What bufferevent_setcb(bev, NULL, write_cb, event_cb, arg) does on a plain socket; on
 * TLS the reader keeps the bufferevent's callbacks and passes these on (BEV_EVENT_CONNECTED
 * included, once the handshake is done). Use it for every bufferevent with a reader. */
void fg_reader_bev_setcb(struct fg_reader *r, bufferevent_data_cb write_cb,
                         bufferevent_event_cb event_cb, void *arg);
/* Who the peer is, for the log line of a failed TLS handshake (a string that outlives
 * the reader). */
void fg_reader_set_peer(struct fg_reader *r, const char *peer);
/* The SSL of a TLS reader, NULL for a plain socket. */
static inline struct ssl_st *fg_reader_ssl(const struct fg_reader *r)
{
    return r->ssl;
}
/* Half-close the connection after the last byte of output (TLS: a close_notify first). */
void fg_shutdown_write(struct fg_reader *r);
void fg_reader_free(struct fg_reader *r);
void fg_reader_setcb(struct fg_reader *r, void (*on_read)(void *), void (*on_event)(short, void *),
                     void *arg);
void fg_reader_enable(struct fg_reader *r);
void fg_reader_disable(struct fg_reader *r);
/* Inactivity timeout while reading is enabled (re-armed by every read); 0 for none. */
void fg_reader_set_timeout(struct fg_reader *r, uint64_t ms);
/* Run on_read from the event loop soon, whether or not bytes arrive (pipelined input). */
void fg_reader_trigger(struct fg_reader *r);

#endif /* FG_NETIO_H */
