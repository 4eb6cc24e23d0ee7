/*
 * notify.c — waking cache waiters on their own worker thread.
 *
 * A fetch runs on one worker; its readers may sit on any worker. The store never calls a
 * reader on a foreign thread: it queues the reader's waiter on the reader's notifier and
 * pokes an eventfd; the notifier's event then runs the callbacks on the reader's
 * event_base. A waiter is queued at most once however many changes happen before it
 * runs, so a fast fill costs each reader one wake-up per loop turn, not one per append.
 */
#include "cache/internal.h"
#include "core/core.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct fg_cache_notifier {
    pthread_mutex_t lock;
    struct fg_cache_waiter *head, *tail;
    int efd;
    bool poked; /* the eventfd was written since the event last ran */
    struct event *ev;
};

static void notifier_run(evutil_socket_t fd, short what, void *arg)
{
    struct fg_cache_notifier *n = arg;
    uint64_t v;
    pthread_mutex_lock(&n->lock);
    n->poked = false;
    pthread_mutex_unlock(&n->lock);
    while (read(n->efd, &v, sizeof(v)) < 0 && errno == EINTR) {
    }
    /* One at a time: a callback may cancel another queued waiter (a connection closed). */
    for (;;) {
        pthread_mutex_lock(&n->lock);
        struct fg_cache_waiter *w = n->head;
        if (w != NULL) {
            n->head = w->q_next;
            if (n->head == NULL)
                n->tail = NULL;
            w->q_next = NULL;
            w->queued = false;
        }
        pthread_mutex_unlock(&n->lock);
        if (w == NULL)
            break;
        w->cb(w);
    }
}

struct fg_cache_notifier *fg_cache_notifier_new(struct event_base *base)
{
    struct fg_cache_notifier *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return NULL;
    n->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (n->efd < 0) {
        free(n);
        return NULL;
    }
    n->ev = event_new(base, n->efd, EV_READ | EV_PERSIST, notifier_run, n);
    if (n->ev == NULL || event_add(n->ev, NULL) != 0) {
        if (n->ev)
            event_free(n->ev);
        close(n->efd);
        free(n);
        return NULL;
    }
    pthread_mutex_init(&n->lock, NULL);
    return n;
}

void fg_cache_notifier_free(struct fg_cache_notifier *n)
{
    if (n == NULL)
        return;
    event_free(n->ev);
    close(n->efd);
    pthread_mutex_destroy(&n->lock);
    free(n);
}

void fg_cache_notifier_push(struct fg_cache_waiter *w)
{
    struct fg_cache_notifier *n = w->notifier;
    bool poke = false;
    pthread_mutex_lock(&n->lock);
    if (!w->queued) {
        w->queued = true;
        w->q_next = NULL;
        if (n->tail != NULL)
            n->tail->q_next = w;
        else
            n->head = w;
        n->tail = w;
        if (!n->poked)
            poke = n->poked = true;
    }
    pthread_mutex_unlock(&n->lock);
    if (poke) {
        uint64_t one = 1;
        while (write(n->efd, &one, sizeof(one)) < 0 && errno == EINTR) {
        }
    }
}

void fg_cache_notifier_unqueue(struct fg_cache_waiter *w)
{
    struct fg_cache_notifier *n = w->notifier;
    pthread_mutex_lock(&n->lock);
    if (w->queued) {
        struct fg_cache_waiter **pp = &n->head, *prev = NULL;
        while (*pp != NULL && *pp != w) {
            prev = *pp;
            pp = &(*pp)->q_next;
        }
        if (*pp == w) {
            *pp = w->q_next;
            if (n->tail == w)
                n->tail = prev;
        }
        w->queued = false;
        w->q_next = NULL;
    }
    pthread_mutex_unlock(&n->lock);
}
