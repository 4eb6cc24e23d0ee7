/*
 * reader.c — reading an object's body while it fills or once it is complete, without a
 * lock and without copying (cache.h, "reading a body").
 *
 * The filler (store.c, fg_cache_fill_append) writes bytes into a chunk, then publishes
 * them with a release store of the chunk's len, links a new chunk with a release store of
 * next, and publishes the total with a release store of body_len; the state (FILLING →
 * COMPLETE or FAILED) is stored with release after the last byte. A reader loads with
 * acquire in the opposite order: state, then each chunk's len and next, then body_len.
 * Bytes never move once written, so each piece is handed to libevent as a reference that
 * holds the object.
 */
#include "cache/internal.h"
#include "core/core.h"

#include <string.h>

void fg_cache_reader_start(struct fg_cache_reader *r, struct fg_cache_obj *obj,
                           struct fg_cache_notifier *notifier, void (*cb)(struct fg_cache_waiter *),
                           void *arg)
{
    memset(r, 0, sizeof(*r));
    fg_cache_obj_ref(obj);
    r->obj = obj;
    r->waiter.cb = cb;
    r->waiter.arg = arg;
    r->waiter.notifier = notifier;
}

void fg_cache_reader_stop(struct fg_cache_reader *r)
{
    if (r->waiter.notifier != NULL)
        fg_cache_waiter_cancel(&r->waiter);
    fg_cache_obj_unref(r->obj);
    r->obj = NULL;
}

/* Add a reference to every byte published since the last call. */
static uint64_t add_available(struct fg_cache_reader *r, struct evbuffer *out, bool chunked)
{
    struct fg_cache_obj *obj = r->obj;
    uint64_t added = 0;
    if (r->chunk == NULL) {
        r->chunk = atomic_load_explicit(&obj->first, memory_order_acquire);
        r->chunk_off = 0;
        if (r->chunk == NULL)
            return 0;
    }
    for (;;) {
        struct fg_cache_chunk *ch = r->chunk;
        size_t len = atomic_load_explicit(&ch->len, memory_order_acquire);
        if (len > r->chunk_off) {
            size_t k = len - r->chunk_off;
            if (chunked) {
                char line[24];
                evbuffer_add(out, line, fg_http_chunk_header(line, k));
            }
            fg_cache_obj_ref(obj);
            if (evbuffer_add_reference(out, ch->data + r->chunk_off, k, fg_cache_obj_unref_cb,
                                       obj) != 0)
                fg_cache_obj_unref(obj);
            if (chunked)
                evbuffer_add(out, "\r\n", 2);
            r->chunk_off = len;
            added += k;
        }
        struct fg_cache_chunk *next = atomic_load_explicit(&ch->next, memory_order_acquire);
        if (next == NULL || r->chunk_off < ch->cap)
            break;
        r->chunk = next;
        r->chunk_off = 0;
    }
    r->done += added;
    return added;
}

enum fg_cache_read_status fg_cache_reader_read(struct fg_cache_reader *r, struct evbuffer *out,
                                               bool chunked, uint64_t *added)
{
    struct fg_cache_obj *obj = r->obj;
    FG_ASSERT(obj != NULL && obj->magic == FG_CACHE_OBJ_MAGIC);
    *added = 0;
    for (;;) {
        /* The state first: every byte appended before it was COMPLETE is visible then. */
        int state = atomic_load_explicit(&obj->state, memory_order_acquire);
        *added += add_available(r, out, chunked);
        uint64_t total = atomic_load_explicit(&obj->body_len, memory_order_acquire);
        if (state == FG_CACHE_COMPLETE && r->done >= total)
            return FG_CACHE_READ_END;
        if (state == FG_CACHE_FAILED)
            return FG_CACHE_READ_FAILED;
        if (r->waiter.obj == obj)
            return FG_CACHE_READ_MORE; /* registered: woken on the next append */
        if (fg_cache_wait(obj, &r->waiter))
            return FG_CACHE_READ_MORE;
        /* It became final meanwhile: once more. */
    }
}
