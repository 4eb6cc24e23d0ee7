/*
 * netio.h — socket I/O on top of libevent bufferevents, the way a proxy needs it.
 *
 * Writes go through at once (fg_flush): a response that fits the socket buffer costs one
 * writev and no epoll_ctl. Reads bypass the bufferevent (struct fg_reader): libevent
 * 2.1's evbuffer_read asks ioctl(FIONREAD) before every read and reads at most 4 KiB; we
 * readv up to 64 KiB straight into the bufferevent's input buffer, one syscall per read.
 * The bufferevent keeps doing the rest: output buffering, connect, write timeouts.
 */
#ifndef FG_NETIO_H
#define FG_NETIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

/* Send queued output now. EV_WRITE stays enabled on the bufferevent only while bytes
 * remain. Returns the bytes still queued. Not for a socket whose connect is in progress. */
size_t fg_flush(struct bufferevent *bev);

struct fg_reader {
    struct event *ev;
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
};

/* Take over reading the bufferevent's socket (its own reading is disabled for good). */
bool fg_reader_init(struct fg_reader *r, struct bufferevent *bev, size_t high_water);
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
