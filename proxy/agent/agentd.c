/*
 * agentd.c — flashgate-agent's event loop: it takes RECORD frames from the proxy on a
 * unix socket, appends them to the spool, group-commits, and answers each record once
 * the commit covering it returned; it also runs the local sink, the periodic checkpoint,
 * the /status listener and the signals.
 *
 * One thread, one event_base. The commit's fdatasync runs on this thread: while it
 * runs (about 0.25 ms on our disks), the loop neither reads nor replays; records that
 * arrive meanwhile wait in the socket buffers and form the next batch. A commit runs
 *   - at once when commit_batch records wait,
 *   - as records arrive, once the first of the batch waited commit_delay_us,
 *   - from a highest-priority timer commit_delay_us after the first record (a loop busy
 *     with other work still commits on time),
 *   - from a lowest-priority event, i.e. as soon as the loop has nothing else ready:
 *     the loop never goes back to waiting with records uncommitted.
 *
 * The recent-key window (keywin.c) remembers the idempotency keys of the last
 * dedup_window records (at most dedup_window_bytes of them) with their sequence numbers.
 * A record whose key is in it is not appended again: it is answered DUPLICATE once its
 * first copy is durable (at once if it already is). At start the window is refilled from
 * the records of the spool not yet acknowledged.
 */
#include "agent/agentd.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "http/http.h"
#include "netio/netio.h"

#define CONN_MAGIC   0x41474e43u /* "AGNC" */
#define STATUS_MAGIC 0x41475354u
#define PRIO_URGENT  0 /* the commit deadline */
#define PRIO_NORMAL  1 /* everything else (libevent's default with 3 queues) */
#define PRIO_IDLE    2 /* the end-of-iteration commit */
#define READ_SLACK   (64u * 1024)

/* ---- the daemon's state --------------------------------------------------------------------- */

struct conn {
    unsigned magic;
    struct bufferevent *bev;
    struct fg_reader reader;
    uint64_t skip; /* bytes of an oversized frame still to drop */
    bool closing;  /* protocol error or EOF: close once the answers are out */
    struct conn *prev, *next;
};

/* An answer waiting for the commit in progress. */
struct pending {
    struct conn *c; /* NULL once the connection is gone */
    uint64_t id;
    uint64_t seq;
    uint32_t win;   /* its key's window entry (DURABLE), 0 if none */
    uint8_t status; /* what to answer if the commit succeeds */
};

static struct {
    const struct fg_conf_agent *cfg;
    struct event_base *base;
    struct fg_spool *sp; /* NULL in drain mode */
    const struct fg_agentd_sink_ops *sink_ops;
    void *sink;
    struct fg_creds *creds;
    struct evdns_base *dns;
    struct evconnlistener *listener;
    struct evconnlistener *status_listener;
    struct event *commit_idle, *commit_timer, *checkpoint_timer, *exit_timer;
    struct event *sig_term, *sig_int, *sig_hup;
    struct conn *conns;
    struct pending *pend;
    size_t npend, cappend;
    uint64_t batch_start_us; /* first append of the batch waiting; 0: none */
    uint64_t committed_seq;
    struct fg_keywin *win;
    struct fg_agentd_stats st;
    bool stopping;
    uint64_t started_ms;
} D;

/* ---- the sink in use ------------------------------------------------------------------------- */

/* The sink the configuration asks for: drain mode's, else sink local or sqs. */
static const struct fg_agentd_sink_ops *sink_for(const struct fg_conf_agent *cfg)
{
    if (cfg->mode == FG_CONF_AGENT_DRAIN)
        return &fg_sink_drain_ops;
    return cfg->sink == FG_CONF_AGENT_SINK_SQS ? &fg_sink_sqs_ops : &fg_sink_local_ops;
}

static void sink_kick(void)
{
    if (D.sink != NULL)
        D.sink_ops->kick(D.sink);
}

static void creds_ready(void *arg)
{
    (void)arg;
    sink_kick();
}

static struct fg_agentd_sink_gauges sink_gauges(void)
{
    struct fg_agentd_sink_gauges g = {0};
    if (D.sink != NULL)
        D.sink_ops->gauges(D.sink, &g);
    return g;
}

/* ---- connections from the proxy --------------------------------------------------------- */

static void conn_free(struct conn *c)
{
    FG_ASSERT(c->magic == CONN_MAGIC);
    for (size_t i = 0; i < D.npend; i++)
        if (D.pend[i].c == c)
            D.pend[i].c = NULL;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        D.conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    fg_reader_free(&c->reader);
    bufferevent_free(c->bev);
    c->magic = 0;
    free(c);
}

static bool conn_has_pending(const struct conn *c)
{
    for (size_t i = 0; i < D.npend; i++)
        if (D.pend[i].c == c)
            return true;
    return false;
}

/* Flush the answers queued on c; close it if it is closing and nothing is left. */
static void conn_flush(struct conn *c)
{
    size_t left = fg_flush(c->bev);
    if (c->closing && left == 0 && !conn_has_pending(c))
        conn_free(c);
}

static void answer(struct conn *c, uint64_t id, enum fg_agent_status status)
{
    uint8_t a[FG_AGENT_PROTO_ANSWER_SIZE];
    fg_agent_proto_encode_answer(id, status, a);
    evbuffer_add(bufferevent_get_output(c->bev), a, sizeof(a));
}

static bool pend_push(struct conn *c, uint64_t id, uint64_t seq, uint32_t win, uint8_t status)
{
    if (D.npend == D.cappend) {
        size_t cap = D.cappend ? D.cappend * 2 : 256;
        struct pending *p = realloc(D.pend, cap * sizeof(*p));
        if (p == NULL)
            return false;
        D.pend = p;
        D.cappend = cap;
    }
    D.pend[D.npend++] = (struct pending){c, id, seq, win, status};
    return true;
}

/* Commit what was appended and answer every record waiting for it. */
static void commit_now(void)
{
    event_del(D.commit_timer);
    D.batch_start_us = 0;
    if (D.sp == NULL || (fg_spool_uncommitted(D.sp) == 0 && D.npend == 0))
        return;
    uint64_t durable = D.committed_seq;
    enum fg_spool_status st = fg_spool_commit(D.sp, &durable);
    if (st != FG_SPOOL_OK) {
        fg_err("spool commit failed (%s: %s): %zu record(s) answered ERROR, not queued",
               fg_spool_status_name(st), fg_spool_error(D.sp), D.npend);
    } else {
        D.committed_seq = durable;
    }
    for (size_t i = 0; i < D.npend; i++) {
        struct pending *p = &D.pend[i];
        uint8_t status = p->status;
        if (st != FG_SPOOL_OK) {
            fg_keywin_forget(D.win, p->win, p->seq);
            status = FG_AGENT_ERROR;
            D.st.errors++;
        } else if (status == FG_AGENT_DURABLE) {
            D.st.durable++;
        }
        if (p->c != NULL)
            answer(p->c, p->id, status);
    }
    D.npend = 0;
    for (struct conn *c = D.conns, *n; c != NULL; c = n) {
        n = c->next;
        conn_flush(c);
    }
    if (st == FG_SPOOL_OK)
        sink_kick();
}

static void commit_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    commit_now();
}

/* A record was appended (or a duplicate waits): make sure a commit follows soon. */
static void batch_note(void)
{
    uint64_t now = fg_mono_us();
    if (D.batch_start_us == 0) {
        D.batch_start_us = now;
        struct timeval tv = {.tv_sec = (time_t)(D.cfg->commit_delay_us / 1000000),
                             .tv_usec = (suseconds_t)(D.cfg->commit_delay_us % 1000000)};
        event_add(D.commit_timer, &tv);
        event_active(D.commit_idle, EV_TIMEOUT, 0);
    }
    if (fg_spool_uncommitted(D.sp) >= D.cfg->commit_batch ||
        now - D.batch_start_us >= D.cfg->commit_delay_us)
        commit_now();
}

static void take_record(struct conn *c, const struct fg_agent_record *r, const void *frame,
                        size_t len)
{
    D.st.received++;
    uint64_t seq = 0;
    if (fg_keywin_find(D.win, r->key, r->key_len, &seq) != 0) {
        D.st.duplicates++;
        if (seq <= D.committed_seq) {
            answer(c, r->id, FG_AGENT_DUPLICATE);
        } else if (pend_push(c, r->id, seq, 0, FG_AGENT_DUPLICATE)) {
            batch_note();
        } else {
            answer(c, r->id, FG_AGENT_ERROR);
            D.st.errors++;
        }
        return;
    }
    enum fg_spool_status st = fg_spool_append(D.sp, frame, len, fg_wall_ms(), &seq);
    switch (st) {
    case FG_SPOOL_OK:
        break;
    case FG_SPOOL_E_FULL:
    case FG_SPOOL_E_STALE:
    case FG_SPOOL_E_NOSPACE:
        D.st.refused_full++;
        answer(c, r->id, FG_AGENT_FULL);
        return;
    case FG_SPOOL_E_TOO_BIG:
        D.st.refused_too_big++;
        answer(c, r->id, FG_AGENT_TOO_BIG);
        return;
    default:
        D.st.errors++;
        fg_err("spool append failed (%s: %s): record answered ERROR", fg_spool_status_name(st),
               fg_spool_error(D.sp));
        answer(c, r->id, FG_AGENT_ERROR);
        return;
    }
    uint32_t idx = fg_keywin_add(D.win, r->key, r->key_len, seq);
    if (!pend_push(c, r->id, seq, idx, FG_AGENT_DURABLE)) {
        /* Cannot remember the answer: commit now and answer this one directly. */
        commit_now();
        answer(c, r->id, D.committed_seq >= seq ? FG_AGENT_DURABLE : FG_AGENT_ERROR);
        return;
    }
    batch_note();
}

static void conn_read(void *arg)
{
    struct conn *c = arg;
    FG_ASSERT(c->magic == CONN_MAGIC);
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t max_frame = (size_t)D.cfg->max_record;
    while (!c->closing) {
        size_t avail = evbuffer_get_length(in);
        if (c->skip > 0) {
            size_t n = c->skip < avail ? (size_t)c->skip : avail;
            evbuffer_drain(in, n);
            c->skip -= n;
            if (c->skip > 0)
                break;
            continue;
        }
        if (avail == 0)
            break;
        size_t head = avail < 14 ? avail : 14;
        const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)head);
        struct fg_agent_record r;
        uint64_t id = 0;
        size_t flen = 0;
        enum fg_agent_proto_result res =
            fg_agent_proto_decode_record(p, head, max_frame, &r, &id, &flen);
        if (res == FG_AGENT_PROTO_INCOMPLETE && head == 14) {
            if (flen > avail)
                break;
            p = evbuffer_pullup(in, (ev_ssize_t)flen);
            res = fg_agent_proto_decode_record(p, flen, max_frame, &r, &id, &flen);
        }
        if (res == FG_AGENT_PROTO_INCOMPLETE)
            break;
        if (res == FG_AGENT_PROTO_OK) {
            take_record(c, &r, p, flen);
            evbuffer_drain(in, flen);
        } else if (res == FG_AGENT_PROTO_TOO_BIG) {
            D.st.received++;
            D.st.refused_too_big++;
            answer(c, id, FG_AGENT_TOO_BIG);
            c->skip = flen;
        } else if (res == FG_AGENT_PROTO_INVALID) {
            D.st.received++;
            D.st.protocol_errors++;
            answer(c, id, FG_AGENT_ERROR);
            evbuffer_drain(in, flen);
        } else {
            D.st.protocol_errors++;
            fg_warn("agent socket: a frame with a bad version, type or length; closing the "
                    "connection (its unanswered records are not queued)");
            c->closing = true;
            fg_reader_disable(&c->reader);
        }
    }
    conn_flush(c);
}

static void conn_event(short what, void *arg)
{
    struct conn *c = arg;
    FG_ASSERT(c->magic == CONN_MAGIC);
    if (what & BEV_EVENT_ERROR)
        fg_info("agent socket: connection error: %s", strerror(errno));
    /* EOF: the proxy is done sending; answers still pending go out after the commit. */
    c->closing = true;
    bufferevent_disable(c->bev, EV_READ);
    if (!conn_has_pending(c))
        conn_free(c);
}

static void bev_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct conn *c = arg;
    if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF))
        conn_free(c); /* a write failed: the proxy is gone */
}

static void bev_write(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct conn *c = arg;
    if (c->closing)
        conn_flush(c);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
    (void)l, (void)sa, (void)len, (void)arg;
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return;
    }
    c->magic = CONN_MAGIC;
    c->bev = bufferevent_socket_new(D.base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL ||
        !fg_reader_init(&c->reader, c->bev, (size_t)D.cfg->max_record + READ_SLACK)) {
        if (c->bev != NULL)
            bufferevent_free(c->bev);
        else
            close(fd);
        free(c);
        return;
    }
    bufferevent_setcb(c->bev, NULL, bev_write, bev_event, c);
    fg_reader_setcb(&c->reader, conn_read, conn_event, c);
    fg_reader_enable(&c->reader);
    c->next = D.conns;
    if (D.conns != NULL)
        D.conns->prev = c;
    D.conns = c;
    D.st.connections++;
}

static struct evconnlistener *listen_unix(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sun.sun_path)) {
        fg_err("listen %s: path too long", path);
        return NULL;
    }
    strcpy(sun.sun_path, path);
    struct stat sb;
    if (lstat(path, &sb) == 0) {
        if (!S_ISSOCK(sb.st_mode)) {
            fg_err("listen %s: exists and is not a socket; refusing to remove it", path);
            return NULL;
        }
        unlink(path); /* a previous agent's socket */
    }
    mode_t old = umask(0117); /* srw-rw----: the proxy's group may connect */
    struct evconnlistener *l = evconnlistener_new_bind(
        D.base, accept_cb, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 128,
        (struct sockaddr *)&sun, (int)sizeof(sun));
    umask(old);
    if (l == NULL)
        fg_err("listen %s: %s", path, strerror(errno));
    return l;
}

/* ---- /status --------------------------------------------------------------------------------- */

struct status_conn {
    unsigned magic;
    struct bufferevent *bev;
};

static void status_json(struct evbuffer *b)
{
    struct fg_spool_stats ss = {0};
    if (D.sp != NULL)
        fg_spool_get_stats(D.sp, fg_wall_ms(), &ss);
    const struct fg_agentd_stats *s = &D.st;
    struct fg_creds_stats cs;
    fg_creds_get_stats(D.creds, &cs);
    struct fg_agentd_sink_gauges g = sink_gauges();
    evbuffer_add_printf(
        b,
        "{\"version\":\"%s\",\"uptime_s\":%llu,\"stopping\":%s,\"mode\":\"%s\",\"sink\":\"%s\","
        "\"spool\":{\"depth\":%llu,\"bytes\":%llu,\"oldest_age_ms\":%llu,\"segments\":%llu,"
        "\"disk_bytes\":%llu,\"appended\":%llu,\"committed\":%llu,\"commits\":%llu,"
        "\"fsyncs\":%llu,\"commit_failed\":%llu,\"refused_full\":%llu,\"refused_stale\":%llu,"
        "\"refused_too_big\":%llu,\"corrupt_skipped\":%llu,\"committed_seq\":%llu,"
        "\"acked_seq\":%llu,\"checkpoint_seq\":%llu,",
        PACKAGE_VERSION, (unsigned long long)((fg_mono_ms() - D.started_ms) / 1000),
        D.stopping ? "true" : "false", D.cfg->mode == FG_CONF_AGENT_DRAIN ? "drain" : "forward",
        D.sink_ops->name, (unsigned long long)ss.pending_records,
        (unsigned long long)ss.pending_bytes, (unsigned long long)ss.oldest_age_ms,
        (unsigned long long)ss.segments, (unsigned long long)ss.disk_bytes,
        (unsigned long long)ss.appended, (unsigned long long)ss.committed,
        (unsigned long long)ss.commits, (unsigned long long)ss.fsyncs,
        (unsigned long long)ss.commit_failed, (unsigned long long)ss.refused_full,
        (unsigned long long)ss.refused_stale, (unsigned long long)ss.refused_too_big,
        (unsigned long long)ss.corrupt_skipped, (unsigned long long)ss.committed_seq,
        (unsigned long long)ss.acked_seq, (unsigned long long)ss.checkpoint_seq);
    /* Whether the disk is why records are refused (the proxy falls back meanwhile). */
    char free_text[24] = "null";
    if (D.sp != NULL && ss.fs_free_bytes != UINT64_MAX)
        snprintf(free_text, sizeof(free_text), "%llu", (unsigned long long)ss.fs_free_bytes);
    evbuffer_add_printf(b,
                        "\"disk_full\":%s,\"disk_full_events\":%llu,\"refused_disk_full\":%llu,"
                        "\"fs_free_bytes\":%s,\"index_entries\":%llu},",
                        ss.disk_full ? "true" : "false", (unsigned long long)ss.no_space_events,
                        (unsigned long long)ss.refused_no_space, free_text,
                        (unsigned long long)ss.index_entries);
    evbuffer_add_printf(
        b, "\"dedup\":{\"keys\":%zu,\"memory_bytes\":%zu},",
        D.win != NULL ? fg_keywin_count(D.win) : 0,
        fg_keywin_memory((uint32_t)D.cfg->dedup_window, (size_t)D.cfg->dedup_window_bytes));
    evbuffer_add_printf(
        b,
        "\"records\":{\"connections\":%llu,\"received\":%llu,\"durable\":%llu,"
        "\"duplicates\":%llu,\"refused_full\":%llu,\"refused_too_big\":%llu,\"errors\":%llu,"
        "\"protocol_errors\":%llu},"
        "\"replay\":{\"ok\":%llu,\"rejected\":%llu,\"failed\":%llu,\"retries\":%llu,"
        "\"window\":%zu,\"in_flight\":%zu},",
        (unsigned long long)s->connections, (unsigned long long)s->received,
        (unsigned long long)s->durable, (unsigned long long)s->duplicates,
        (unsigned long long)s->refused_full, (unsigned long long)s->refused_too_big,
        (unsigned long long)s->errors, (unsigned long long)s->protocol_errors,
        (unsigned long long)s->replayed_ok, (unsigned long long)s->replayed_rejected,
        (unsigned long long)s->replayed_failed, (unsigned long long)s->replay_retries,
        g.replay_window, g.replay_in_flight);
    evbuffer_add_printf(
        b,
        "\"sqs\":{\"sent\":%llu,\"failed\":%llu,\"retries\":%llu,\"throttled\":%llu,"
        "\"batches\":%llu,\"batch_errors\":%llu,\"window\":%zu,\"in_flight\":%zu,"
        "\"entries_in_flight\":%zu},"
        "\"credentials\":{\"source\":\"%s\",\"region\":\"%s\",\"refreshed\":%llu,\"failed\":%llu},"
        "\"drain\":{\"received\":%llu,\"ok\":%llu,\"rejected\":%llu,\"failed\":%llu,"
        "\"deleted\":%llu,\"extended\":%llu,\"sqs_errors\":%llu,\"held\":%zu,\"in_flight\":%zu},"
        "\"checkpoints\":%llu,\"checkpoint_failed\":%llu}\n",
        (unsigned long long)s->sqs_sent, (unsigned long long)s->sqs_failed,
        (unsigned long long)s->sqs_retries, (unsigned long long)s->sqs_throttled,
        (unsigned long long)s->sqs_batches, (unsigned long long)s->sqs_batch_errors, g.sqs_window,
        g.sqs_in_flight, g.sqs_entries_in_flight,
        D.creds != NULL ? fg_creds_source(D.creds) : "none",
        fg_creds_region(D.creds) != NULL ? fg_creds_region(D.creds) : "",
        (unsigned long long)cs.refreshed, (unsigned long long)cs.failed,
        (unsigned long long)s->drain_received, (unsigned long long)s->drain_ok,
        (unsigned long long)s->drain_rejected, (unsigned long long)s->drain_failed,
        (unsigned long long)s->drain_deleted, (unsigned long long)s->drain_extended,
        (unsigned long long)s->drain_sqs_errors, g.drain_held, g.drain_in_flight,
        (unsigned long long)s->checkpoints, (unsigned long long)s->checkpoint_failed);
}

/* One metric family: HELP, TYPE and its one unlabelled sample. */
static void metric(struct evbuffer *b, const char *name, const char *type, const char *help,
                   uint64_t v)
{
    evbuffer_add_printf(b,
                        "# HELP flashgate_agent_%s %s\n# TYPE flashgate_agent_%s %s\n"
                        "flashgate_agent_%s %llu\n",
                        name, help, name, type, name, (unsigned long long)v);
}

/* GET /metrics: the same numbers as /status in Prometheus text format 0.0.4, every name
 * prefixed flashgate_agent_, counters ending in _total. */
static void metrics_text(struct evbuffer *b)
{
    struct fg_spool_stats ss = {0};
    if (D.sp != NULL)
        fg_spool_get_stats(D.sp, fg_wall_ms(), &ss);
    const struct fg_agentd_stats *s = &D.st;
    struct fg_creds_stats cs;
    fg_creds_get_stats(D.creds, &cs);
    struct fg_agentd_sink_gauges g = sink_gauges();
    const char *C = "counter", *G = "gauge";
    metric(b, "uptime_seconds", G, "Seconds since the agent started.",
           (fg_mono_ms() - D.started_ms) / 1000);
    metric(b, "spool_depth", G, "Records in the spool not yet acknowledged by the sink.",
           ss.pending_records);
    metric(b, "spool_bytes", G, "Framed bytes of the records not yet acknowledged.",
           ss.pending_bytes);
    metric(b, "spool_oldest_age_seconds", G, "Age of the oldest unacknowledged record.",
           ss.oldest_age_ms / 1000);
    metric(b, "spool_segments", G, "Segment files in the spool directory.", ss.segments);
    metric(b, "spool_disk_bytes", G, "Bytes of the segment files.", ss.disk_bytes);
    metric(b, "spool_commits_total", C, "Group commits that wrote records.", ss.commits);
    metric(b, "spool_fsyncs_total", C, "fsync and fdatasync calls made by the spool.", ss.fsyncs);
    metric(b, "spool_commit_failed_total", C, "Records dropped because their commit failed.",
           ss.commit_failed);
    metric(b, "spool_index_entries", G,
           "Records in the spool's in-memory index (32 bytes each): those not yet delivered.",
           ss.index_entries);
    metric(b, "dedup_keys", G, "Idempotency keys in the recent-key window.",
           D.win != NULL ? fg_keywin_count(D.win) : 0);
    metric(b, "spool_disk_full", G,
           "1 while records are refused because the spool's filesystem is full.", ss.disk_full);
    metric(b, "spool_disk_full_events_total", C, "Spool writes that ran out of disk space.",
           ss.no_space_events);
    metric(b, "spool_refused_disk_full_total", C,
           "Records refused because the spool's filesystem was full.", ss.refused_no_space);
    if (D.sp != NULL && ss.fs_free_bytes != UINT64_MAX)
        metric(b, "spool_fs_free_bytes", G, "Free bytes on the spool's filesystem.",
               ss.fs_free_bytes);
    metric(b, "connections_total", C, "Connections accepted from the proxy.", s->connections);
    metric(b, "records_received_total", C, "RECORD frames received.", s->received);
    metric(b, "records_durable_total", C, "Records answered DURABLE.", s->durable);
    metric(b, "records_duplicates_total", C, "Records answered DUPLICATE.", s->duplicates);
    metric(b, "records_refused_full_total", C, "Records refused: spool full or too old.",
           s->refused_full);
    metric(b, "records_refused_too_big_total", C, "Records refused: over max_record.",
           s->refused_too_big);
    metric(b, "records_errors_total", C, "Records answered ERROR.", s->errors);
    metric(b, "protocol_errors_total", C, "Frames that broke the protocol.", s->protocol_errors);
    metric(b, "replay_ok_total", C, "Local sink: records the app answered 2xx.", s->replayed_ok);
    metric(b, "replay_rejected_total", C, "Local sink: records the app refused for good.",
           s->replayed_rejected);
    metric(b, "replay_failed_total", C, "Local sink: replays that failed and were retried.",
           s->replayed_failed);
    metric(b, "replay_retries_total", C, "Local sink: replays sent again.", s->replay_retries);
    metric(b, "replay_in_flight", G, "Local sink: requests in flight to the app.",
           g.replay_in_flight);
    metric(b, "sqs_sent_total", C, "SQS sink: records SQS acknowledged.", s->sqs_sent);
    metric(b, "sqs_failed_total", C,
           "SQS sink: records SQS refused for good, kept in rejected.jsonl.", s->sqs_failed);
    metric(b, "sqs_retries_total", C, "SQS sink: records sent again.", s->sqs_retries);
    metric(b, "sqs_throttled_total", C, "SQS sink: batches SQS throttled.", s->sqs_throttled);
    metric(b, "sqs_batches_total", C, "SQS sink: SendMessageBatch requests sent.", s->sqs_batches);
    metric(b, "sqs_batch_errors_total", C, "SQS sink: SendMessageBatch requests that failed.",
           s->sqs_batch_errors);
    metric(b, "sqs_batches_in_flight", G, "SQS sink: SendMessageBatch requests in flight.",
           g.sqs_in_flight);
    metric(b, "sqs_entries_in_flight", G,
           "SQS sink: records in SendMessageBatch requests in flight.", g.sqs_entries_in_flight);
    metric(b, "credentials_refreshed_total", C, "Credentials fetched from the instance metadata.",
           cs.refreshed);
    metric(b, "credentials_failed_total", C, "Instance metadata requests that failed.", cs.failed);
    metric(b, "drain_received_total", C, "Drain: messages received from SQS.", s->drain_received);
    metric(b, "drain_ok_total", C, "Drain: messages the app answered 2xx.", s->drain_ok);
    metric(b, "drain_rejected_total", C, "Drain: messages the app refused for good (deleted).",
           s->drain_rejected);
    metric(b, "drain_failed_total", C, "Drain: replays that failed (left for redelivery).",
           s->drain_failed);
    metric(b, "drain_deleted_total", C, "Drain: messages deleted from the queue.",
           s->drain_deleted);
    metric(b, "drain_extended_total", C, "Drain: visibility timeouts extended.", s->drain_extended);
    metric(b, "drain_sqs_errors_total", C, "Drain: SQS requests that failed.", s->drain_sqs_errors);
    metric(b, "drain_held", G, "Drain: messages received and not yet finished.", g.drain_held);
    metric(b, "checkpoints_total", C, "Spool checkpoints written.", s->checkpoints);
    metric(b, "checkpoint_failed_total", C, "Spool checkpoints that failed.", s->checkpoint_failed);
}

static void status_free(struct status_conn *sc)
{
    FG_ASSERT(sc->magic == STATUS_MAGIC);
    bufferevent_free(sc->bev);
    sc->magic = 0;
    free(sc);
}

static void status_reply(struct status_conn *sc, int code, const char *ctype, struct evbuffer *body)
{
    struct evbuffer *out = bufferevent_get_output(sc->bev);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                        code, fg_http_reason(code), ctype, evbuffer_get_length(body));
    evbuffer_add_buffer(out, body);
    bufferevent_disable(sc->bev, EV_READ);
}

static void status_read(struct bufferevent *bev, void *arg)
{
    struct status_conn *sc = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    const char *p = (const char *)evbuffer_pullup(in, -1);
    struct fg_http_limits lim = {
        .max_request_line = 2048, .max_header_bytes = 8192, .max_headers = 32};
    static struct fg_http_request req; /* large; one thread */
    enum fg_http_error err;
    int n = fg_http_parse_request(p, len, &lim, &req, &err);
    if (n == FG_HTTP_INCOMPLETE)
        return;
    struct evbuffer *body = evbuffer_new();
    if (body == NULL) {
        status_free(sc);
        return;
    }
    if (n < 0) {
        evbuffer_add_printf(body, "bad request\n");
        status_reply(sc, 400, "text/plain", body);
    } else if (req.path_len == 7 && memcmp(req.path, "/status", 7) == 0 &&
               (req.method == FG_HTTP_GET || req.method == FG_HTTP_HEAD)) {
        status_json(body);
        status_reply(sc, 200, "application/json", body);
    } else if (req.path_len == 8 && memcmp(req.path, "/metrics", 8) == 0 &&
               (req.method == FG_HTTP_GET || req.method == FG_HTTP_HEAD)) {
        metrics_text(body);
        status_reply(sc, 200, "text/plain; version=0.0.4; charset=utf-8", body);
    } else {
        evbuffer_add_printf(body, "not found: GET /status or /metrics\n");
        status_reply(sc, 404, "text/plain", body);
    }
    evbuffer_free(body);
}

static void status_write(struct bufferevent *bev, void *arg)
{
    struct status_conn *sc = arg;
    if (!(bufferevent_get_enabled(bev) & EV_READ) &&
        evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        status_free(sc);
}

static void status_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev, (void)what;
    status_free(arg);
}

static void status_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                          int len, void *arg)
{
    (void)l, (void)sa, (void)len, (void)arg;
    struct status_conn *sc = calloc(1, sizeof(*sc));
    if (sc == NULL) {
        close(fd);
        return;
    }
    sc->magic = STATUS_MAGIC;
    sc->bev = bufferevent_socket_new(D.base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (sc->bev == NULL) {
        close(fd);
        free(sc);
        return;
    }
    struct timeval tv = {.tv_sec = 10};
    bufferevent_set_timeouts(sc->bev, &tv, &tv);
    bufferevent_setwatermark(sc->bev, EV_READ, 0, 16384);
    bufferevent_setcb(sc->bev, status_read, status_write, status_event, sc);
    bufferevent_enable(sc->bev, EV_READ | EV_WRITE);
}

/* ---- timers and signals ---------------------------------------------------------------------- */

static void checkpoint_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    if (D.sp == NULL)
        return;
    enum fg_spool_status st = fg_spool_checkpoint(D.sp);
    if (st == FG_SPOOL_OK) {
        D.st.checkpoints++;
    } else {
        D.st.checkpoint_failed++;
        fg_err("spool checkpoint failed (%s: %s); the previous one holds, retrying",
               fg_spool_status_name(st), fg_spool_error(D.sp));
    }
}

static void exit_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    static unsigned ticks;
    bool out_left = false;
    for (struct conn *c = D.conns; c != NULL; c = c->next)
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
            out_left = true;
    if (!out_left || ++ticks >= 200) /* 2 s at most for the proxy to read its answers */
        event_base_loopexit(D.base, NULL);
}

static void stop(const char *why)
{
    if (D.stopping)
        return;
    D.stopping = true;
    fg_sd_notify("STOPPING=1");
    fg_notice("%s: no new records; committing, checkpointing and exiting", why);
    if (D.listener != NULL) {
        evconnlistener_free(D.listener);
        D.listener = NULL;
        unlink(D.cfg->listen_path);
    }
    for (struct conn *c = D.conns; c != NULL; c = c->next)
        fg_reader_disable(&c->reader);
    commit_now();
    struct timeval tv = {.tv_usec = 10000};
    event_add(D.exit_timer, &tv);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what, (void)arg;
    if (sig == SIGHUP) {
        if (fg_log_reopen())
            fg_notice("SIGHUP: log file reopened (the configuration is read at start only)");
        return;
    }
    stop(sig == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* Remember the keys of the records still waiting in the spool, so a retry from the proxy
 * across an agent restart is still recognised. */
static void window_refill(void)
{
    struct fg_spool_iter *it = fg_spool_iter_new(D.sp);
    if (it == NULL)
        return;
    struct fg_spool_record rec;
    size_t n = 0, bad = 0;
    while (fg_spool_iter_next(it, &rec) == FG_SPOOL_OK) {
        struct fg_agent_record r;
        if (fg_agent_proto_decode_record(rec.data, rec.len, rec.len, &r, NULL, NULL) ==
            FG_AGENT_PROTO_OK) {
            if (fg_keywin_find(D.win, r.key, r.key_len, NULL) == 0)
                fg_keywin_add(D.win, r.key, r.key_len, rec.seq);
            n++;
        } else {
            bad++;
        }
    }
    fg_spool_iter_free(it);
    if (n > 0 || bad > 0)
        fg_notice("spool: %zu record(s) waiting to be replayed%s", n,
                  bad > 0 ? " (some undecodable; they will be skipped by the sink)" : "");
}

/* A spool allowed more than its filesystem holds fills the disk before spool_max_bytes:
 * it then refuses records until delivered ones are deleted. Say so at start. */
static void warn_disk_smaller_than_spool(const struct fg_conf_agent *cfg)
{
    struct statvfs v;
    if (statvfs(cfg->spool_dir, &v) != 0)
        return;
    uint64_t total = (uint64_t)v.f_blocks * (uint64_t)v.f_frsize;
    if (cfg->spool_max_bytes == 0 || cfg->spool_max_bytes > total)
        fg_warn("spool_max_bytes (%llu bytes%s) is more than the spool's filesystem holds "
                "(%llu bytes): a backlog fills the disk first, and records are refused until "
                "delivered ones are deleted; set spool_max_bytes below the free space",
                (unsigned long long)cfg->spool_max_bytes,
                cfg->spool_max_bytes == 0 ? ": no limit" : "", (unsigned long long)total);
}

int fg_agentd_run(const struct fg_conf_agent *cfg, const char *conf_path)
{
    memset(&D, 0, sizeof(D));
    D.cfg = cfg;
    D.sink_ops = sink_for(cfg);
    D.started_ms = fg_mono_ms();
    signal(SIGPIPE, SIG_IGN);

    bool drain = cfg->mode == FG_CONF_AGENT_DRAIN;
    struct fg_spool_stats ss = {0};
    char err[256];
    int rc = 1;
    if (!drain) {
        /* Drain mode has no spool: the queue is the store, and another agent on this host
         * may own the spool directory. */
        struct fg_spool_config sc = {.segment_size = cfg->spool_segment_size,
                                     .max_bytes = cfg->spool_max_bytes,
                                     .max_age_ms = cfg->spool_max_age_ms,
                                     .max_record = (uint32_t)cfg->max_record};
        enum fg_spool_status st = fg_spool_open(cfg->spool_dir, &sc, &D.sp, err, sizeof(err));
        if (st != FG_SPOOL_OK) {
            fg_err("cannot open the spool: %s", err);
            return 1;
        }
        fg_spool_get_stats(D.sp, fg_wall_ms(), &ss);
        D.committed_seq = ss.committed_seq;
        warn_disk_smaller_than_spool(cfg);
    }
    D.win = fg_keywin_new((uint32_t)cfg->dedup_window, (size_t)cfg->dedup_window_bytes);
    if (D.win == NULL) {
        fg_err("out of memory for the recent-key window (%llu keys, %llu bytes of keys)",
               (unsigned long long)cfg->dedup_window, (unsigned long long)cfg->dedup_window_bytes);
        goto out;
    }
    if (!drain)
        window_refill();

    struct event_config *ec = event_config_new();
    D.base = ec != NULL ? event_base_new_with_config(ec) : NULL;
    if (ec != NULL)
        event_config_free(ec);
    if (D.base == NULL || event_base_priority_init(D.base, 3) != 0) {
        fg_err("cannot create the event loop");
        goto out;
    }
    D.commit_idle = event_new(D.base, -1, 0, commit_cb, NULL);
    D.commit_timer = evtimer_new(D.base, commit_cb, NULL);
    D.checkpoint_timer = event_new(D.base, -1, EV_PERSIST, checkpoint_cb, NULL);
    D.exit_timer = event_new(D.base, -1, EV_PERSIST, exit_check, NULL);
    D.sig_term = evsignal_new(D.base, SIGTERM, signal_cb, NULL);
    D.sig_int = evsignal_new(D.base, SIGINT, signal_cb, NULL);
    D.sig_hup = evsignal_new(D.base, SIGHUP, signal_cb, NULL);
    if (!D.commit_idle || !D.commit_timer || !D.checkpoint_timer || !D.exit_timer || !D.sig_term ||
        !D.sig_int || !D.sig_hup) {
        fg_err("cannot create the loop's events");
        goto out;
    }
    event_priority_set(D.commit_idle, PRIO_IDLE);
    event_priority_set(D.commit_timer, PRIO_URGENT);
    struct timeval cp = {.tv_sec = (time_t)(cfg->checkpoint_ms / 1000),
                         .tv_usec = (suseconds_t)(cfg->checkpoint_ms % 1000) * 1000};
    event_add(D.checkpoint_timer, &cp);
    event_add(D.sig_term, NULL);
    event_add(D.sig_int, NULL);
    event_add(D.sig_hup, NULL);

    if (D.sink_ops->needs_aws) {
        D.dns = evdns_base_new(D.base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                           EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (D.dns == NULL) {
            fg_warn("no DNS resolver (cannot read /etc/resolv.conf): only IP literals and "
                    "localhost work as endpoints");
            D.dns = evdns_base_new(D.base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        }
        /* The region: configured, else the queue URL's, else the instance's. */
        char region[FG_SIGV4_NAME_MAX + 1] = "";
        if (cfg->sqs_region != NULL)
            snprintf(region, sizeof(region), "%s", cfg->sqs_region);
        else if (cfg->sqs_queue_url != NULL)
            fg_aws_region_from_url(cfg->sqs_queue_url, "sqs", region, sizeof(region));
        struct fg_creds_config cc = {.imds_endpoint = cfg->imds_endpoint,
                                     .imds_timeout_ms = cfg->imds_timeout_ms,
                                     .region = region[0] != '\0' ? region : NULL,
                                     .user_agent = "flashgate-agent"};
        D.creds = fg_creds_new(D.base, D.dns, &cc, creds_ready, NULL, err, sizeof(err));
        if (D.creds == NULL) {
            fg_err("credentials: %s", err);
            goto out;
        }
    }
    struct fg_agentd_sink_env env = {
        .base = D.base, .dns = D.dns, .sp = D.sp, .cfg = cfg, .st = &D.st, .creds = D.creds};
    D.sink = D.sink_ops->create(&env, err, sizeof(err));
    if (D.sink == NULL) {
        fg_err("cannot start the %s sink: %s", D.sink_ops->name, err);
        goto out;
    }
    if (!drain) {
        D.listener = listen_unix(cfg->listen_path);
        if (D.listener == NULL)
            goto out;
    }
    if (cfg->status_enabled) {
        D.status_listener = evconnlistener_new_bind(
            D.base, status_accept, NULL,
            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 64,
            (const struct sockaddr *)&cfg->status_addr.ss, (int)cfg->status_addr.len);
        if (D.status_listener == NULL) {
            fg_err("status_listen %s: %s", cfg->status_addr.text, strerror(errno));
            goto out;
        }
    }
    if (drain)
        fg_notice("flashgate-agent %s started: config %s, mode drain, queue %s -> %s at %llu/s, "
                  "status %s",
                  PACKAGE_VERSION, conf_path, cfg->sqs_queue_url, cfg->app.text,
                  (unsigned long long)cfg->replay_rate,
                  cfg->status_enabled ? cfg->status_addr.text : "off");
    else
        fg_notice("flashgate-agent %s started: config %s, socket %s, spool %s (%llu record(s) "
                  "pending), sink %s -> %s, status %s",
                  PACKAGE_VERSION, conf_path, cfg->listen_path, cfg->spool_dir,
                  (unsigned long long)ss.pending_records, D.sink_ops->name,
                  D.sink_ops->needs_aws ? cfg->sqs_queue_url : cfg->app.text,
                  cfg->status_enabled ? cfg->status_addr.text : "off");
    fg_sd_notify("READY=1");
    sink_kick();
    event_base_dispatch(D.base);
    commit_now();
    rc = 0;

out:
    while (D.conns != NULL)
        conn_free(D.conns);
    if (D.sink != NULL)
        D.sink_ops->destroy(D.sink);
    fg_creds_free(D.creds);
    if (D.dns != NULL)
        evdns_base_free(D.dns, 0);
    if (D.listener != NULL) {
        evconnlistener_free(D.listener);
        unlink(cfg->listen_path);
    }
    if (D.status_listener != NULL)
        evconnlistener_free(D.status_listener);
    if (D.sp != NULL && fg_spool_checkpoint(D.sp) != FG_SPOOL_OK)
        fg_err("final checkpoint failed: %s; records after the previous one will be replayed "
               "again",
               fg_spool_error(D.sp));
    fg_spool_close(D.sp);
    struct event *evs[] = {D.commit_idle, D.commit_timer, D.checkpoint_timer, D.exit_timer,
                           D.sig_term,    D.sig_int,      D.sig_hup};
    for (size_t i = 0; i < FG_ARRAY_LEN(evs); i++)
        if (evs[i] != NULL)
            event_free(evs[i]);
    if (D.base != NULL)
        event_base_free(D.base);
    fg_keywin_free(D.win);
    free(D.pend);
    if (rc == 0)
        fg_notice("flashgate-agent stopped");
    return rc;
}
