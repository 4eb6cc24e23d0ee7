/*
 * txn.c — transactions: recycled per worker (they are large: the header array), the holds
 * the stages take on them, the fields the stages add to every answer, the request's id.
 */
#include "server/internal.h"

#include <stdlib.h>
#include <string.h>

#define FG_FREE_TXNS_MAX 256

struct fg_txn *fg_txn_get(struct fg_worker *w)
{
    struct fg_txn *t = TAILQ_FIRST(&w->free_txns);
    if (t != NULL) {
        TAILQ_REMOVE(&w->free_txns, t, free_link);
        w->n_free_txns--;
    } else {
        t = calloc(1, sizeof(*t));
        if (t == NULL)
            return NULL;
    }
    /* Clear all but the header array, which the parser overwrites; the proxy's head
     * buffer is kept with its capacity. */
    char *head = t->proxy.head;
    size_t cap = t->proxy.head_cap;
    memset(t, 0, offsetof(struct fg_txn, request_id));
    t->request_id[0] = t->client_ip[0] = '\0';
    t->log_method[0] = t->log_path[0] = t->log_ua[0] = t->log_trace[0] = '\0';
    t->log_upstream[0] = '\0';
    memset(&t->req, 0, offsetof(struct fg_http_request, headers));
    t->proxy.head = head;
    t->proxy.head_cap = cap;
    t->magic = FG_TXN_MAGIC;
    return t;
}

void fg_txn_hold(struct fg_txn *t, struct fg_txn_hold *h, void (*release)(struct fg_txn *t))
{
    if (h->held)
        return;
    h->held = true;
    h->release = release;
    h->next = t->holds;
    t->holds = h;
}

void fg_txn_put(struct fg_worker *w, struct fg_txn *t)
{
    /* Every stage lets go of its own (newest hold first); a release never adds one. */
    struct fg_txn_hold *h;
    while ((h = t->holds) != NULL) {
        t->holds = h->next;
        h->held = false;
        h->release(t);
    }
    t->magic = 0;
    if (t->snap != NULL) {
        fg_snap_release(w, t->snap);
        t->snap = NULL;
    }
    if (w->n_free_txns < FG_FREE_TXNS_MAX) {
        TAILQ_INSERT_HEAD(&w->free_txns, t, free_link);
        w->n_free_txns++;
    } else {
        free(t->proxy.head);
        free(t);
    }
}

void fg_txn_add_fields(struct fg_txn *t, const char *fields, size_t len)
{
    if (len > sizeof(t->fields) - t->fields_len)
        return; /* cannot happen with the fields we add; never a cut line */
    memcpy(t->fields + t->fields_len, fields, len);
    t->fields_len += len;
}

bool fg_txn_request_id(struct fg_txn *t)
{
    static const char hex[] = "0123456789abcdef";
    if (t->request_id[0] != '\0')
        return true;
    if (t->srv == NULL || !t->srv->add_request_id)
        return false;
    uint64_t a = fg_worker_random(t->c->w), b = fg_worker_random(t->c->w);
    for (int i = 0; i < 16; i++) {
        t->request_id[i] = hex[(a >> (i * 4)) & 15];
        t->request_id[16 + i] = hex[(b >> (i * 4)) & 15];
    }
    t->request_id[32] = '\0';
    t->request_id_ours = true;
    return true;
}
