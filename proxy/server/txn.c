/*
 * txn.c — transactions: recycled per worker (they are large: the header array), the holds
 * the stages take on them, the fields the stages add to every answer, the request's id.
 */
#include "server/internal.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define FG_FREE_TXNS_MAX   256 /* spares kept while requests come */
#define FG_FREE_TXNS_QUIET 16  /* spares kept by a quiet worker */

/* A transaction is large (11 KB, the header array) and lives only while its request does.
 * Beyond the spares it has pages of its own (mmap), given back to the system when it ends:
 * from the heap, a burst of thousands of requests would leave holes between the small
 * objects that outlive it (idle keep-alive connections), and RSS would keep the peak. */
static size_t txn_bytes(void)
{
    static size_t bytes;
    if (bytes == 0) {
        size_t pg = (size_t)sysconf(_SC_PAGESIZE);
        bytes = (sizeof(struct fg_txn) + pg - 1) / pg * pg;
    }
    return bytes;
}

static struct fg_txn *txn_alloc(void)
{
    void *m = mmap(NULL, txn_bytes(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return m == MAP_FAILED ? NULL : m; /* zeroed */
}

static void txn_free(struct fg_txn *t)
{
    munmap(t, txn_bytes());
}

void fg_txn_trim(struct fg_worker *w, uint64_t now_ms)
{
    /* A quiet worker (no request since the last tick) keeps a few spares only: the rest
     * were for a burst that is over. */
    bool quiet = w->txn_gets == w->txn_gets_seen;
    w->txn_gets_seen = w->txn_gets;
    while (quiet && w->n_free_txns > FG_FREE_TXNS_QUIET) {
        struct fg_txn *t = TAILQ_FIRST(&w->free_txns);
        TAILQ_REMOVE(&w->free_txns, t, free_link);
        w->n_free_txns--;
        free(t->proxy.head);
        txn_free(t);
        w->txns_shed = true;
    }
    /* What else a burst allocated (upstream connections beyond keepalive, read buffers,
     * exchanges) went back to the heap: its free pages go back to the system, at most
     * once a second, and only after a burst. */
    if (!w->txns_shed || now_ms - w->last_trim_ms < 1000)
        return;
    w->txns_shed = false;
    w->last_trim_ms = now_ms;
    malloc_trim(0);
}

struct fg_txn *fg_txn_get(struct fg_worker *w)
{
    w->txn_gets++;
    struct fg_txn *t = TAILQ_FIRST(&w->free_txns);
    if (t != NULL) {
        TAILQ_REMOVE(&w->free_txns, t, free_link);
        w->n_free_txns--;
    } else {
        t = txn_alloc();
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
        txn_free(t);
        w->txns_shed = true;
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
