/*
 * accesslog.c — JSON-lines access log.
 *
 * Workers never write files: each formats its lines into its own buffer and hands full
 * buffers (or, every 250 ms, whatever it has) to one writer thread. A slow disk then
 * delays log lines, never requests (DESIGN.md: no blocking call on a worker thread).
 * Errors (5xx) and slow requests are always logged; the rest is sampled.
 *
 * Files are opened by the main thread: at start before privileges are dropped, on reload
 * (a file that cannot be opened refuses the reload, with its line) and again on SIGUSR1
 * for logrotate (a file that cannot be reopened keeps the one it had, and says so).
 */
#include "server/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FG_ALOG_HANDOFF   (64 * 1024)
#define FG_ALOG_QUEUE_MAX (64u * 1024 * 1024) /* drop (and count) beyond this backlog */

struct alog_item {
    char *path;
    struct evbuffer *data;
    struct alog_item *next;
};

/* An access log file. Files are opened by the main thread (fg_server_open_logs), at start
 * before privileges are dropped and on reload, and reopened by it on SIGUSR1; the writer
 * thread only writes. A descriptor replaced by a reopen is closed by the writer, between
 * two writes, so it never closes one it is writing to. */
struct alog_file {
    char *path;
    int fd;
};

static struct {
    pthread_t thread;
    bool running;
    pthread_mutex_t lock; /* the queue, the file table, the retired descriptors */
    pthread_cond_t cond;
    struct alog_item *head, *tail;
    size_t queued_bytes;
    bool stop;
    fg_counter_t dropped_lines;
    struct alog_file *files;
    size_t n_files;
    int *retired; /* descriptors replaced by a reopen, for the writer to close */
    size_t n_retired;
} A = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

/* The file entry for path (A.lock held), or NULL. */
static struct alog_file *file_find(const char *path)
{
    for (size_t i = 0; i < A.n_files; i++)
        if (strcmp(A.files[i].path, path) == 0)
            return &A.files[i];
    return NULL;
}

/* Add path with fd to the table (A.lock held). false when out of memory. */
static bool file_add(const char *path, int fd)
{
    struct alog_file *v = realloc(A.files, (A.n_files + 1) * sizeof(*v));
    if (v == NULL)
        return false;
    A.files = v;
    char *p = strdup(path);
    if (p == NULL)
        return false;
    A.files[A.n_files++] = (struct alog_file){.path = p, .fd = fd};
    return true;
}

/* The descriptor to write path's lines to (A.lock held), -1 to drop them. A path no
 * config opened (which fg_server_open_logs prevents) is opened here, once. */
static int alog_fd(const char *path)
{
    if (strcmp(path, "stderr") == 0)
        return 2;
    struct alog_file *f = file_find(path);
    if (f != NULL)
        return f->fd;
    int fd = fg_log_file_open(path);
    if (fd < 0)
        fg_err("access log %s: cannot open: %s; lines for it are dropped", path, strerror(errno));
    if (!file_add(path, fd) && fd >= 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void close_retired(void)
{
    for (size_t i = 0; i < A.n_retired; i++)
        close(A.retired[i]);
    A.n_retired = 0;
}

static void alog_close_all(void)
{
    close_retired();
    free(A.retired);
    A.retired = NULL;
    for (size_t i = 0; i < A.n_files; i++) {
        if (A.files[i].fd >= 0)
            close(A.files[i].fd);
        free(A.files[i].path);
    }
    free(A.files);
    A.files = NULL;
    A.n_files = 0;
}

static void *alog_main(void *arg)
{
    pthread_mutex_lock(&A.lock);
    for (;;) {
        while (A.head == NULL && !A.stop && A.n_retired == 0)
            pthread_cond_wait(&A.cond, &A.lock);
        close_retired();
        struct alog_item *it = A.head;
        if (it == NULL) {
            if (A.stop)
                break;
            continue;
        }
        A.head = it->next;
        if (A.head == NULL)
            A.tail = NULL;
        A.queued_bytes -= evbuffer_get_length(it->data);
        int fd = alog_fd(it->path);
        pthread_mutex_unlock(&A.lock);

        while (fd >= 0 && evbuffer_get_length(it->data) > 0) {
            if (evbuffer_write(it->data, fd) < 0 && errno != EINTR) {
                fg_err("access log %s: write failed: %s", it->path, strerror(errno));
                break;
            }
        }
        evbuffer_free(it->data);
        free(it->path);
        free(it);
        pthread_mutex_lock(&A.lock);
    }
    alog_close_all();
    pthread_mutex_unlock(&A.lock);
    return NULL;
}

static const char *config_name(const struct fg_config *cfg)
{
    return cfg->path != NULL ? cfg->path : "flashgate.conf";
}

bool fg_server_open_logs(const struct fg_config *cfg, struct fg_config_errors *errs)
{
    bool ok = true;
    for (size_t s = 0; s < cfg->n_servers; s++) {
        const struct fg_conf_server *srv = &cfg->servers[s];
        if (srv->access_log == NULL || strcmp(srv->access_log, "stderr") == 0)
            continue;
        pthread_mutex_lock(&A.lock);
        struct alog_file *f = file_find(srv->access_log);
        bool have = f != NULL && f->fd >= 0;
        pthread_mutex_unlock(&A.lock);
        if (have)
            continue;
        int fd = fg_log_file_open(srv->access_log);
        if (fd < 0) {
            fg_config_error_add(errs, "%s:%zu: access_log %s: cannot open: %s", config_name(cfg),
                                srv->access_log_line, srv->access_log, strerror(errno));
            ok = false;
            continue;
        }
        pthread_mutex_lock(&A.lock);
        f = file_find(srv->access_log);
        if (f != NULL && f->fd < 0) {
            f->fd = fd;
        } else if (f != NULL || !file_add(srv->access_log, fd)) {
            close(fd); /* opened meanwhile by the writer, or out of memory */
        }
        pthread_mutex_unlock(&A.lock);
    }
    return ok;
}

size_t fg_server_reopen_logs(void)
{
    size_t failed = 0;
    pthread_mutex_lock(&A.lock);
    for (size_t i = 0; i < A.n_files; i++) {
        struct alog_file *f = &A.files[i];
        int fd = fg_log_file_open(f->path);
        if (fd < 0) {
            fg_err("access log %s: cannot reopen: %s; still writing to the file it had open",
                   f->path, strerror(errno));
            failed++;
            continue;
        }
        int *r = realloc(A.retired, (A.n_retired + 1) * sizeof(*r));
        if (r == NULL) {
            close(fd);
            failed++;
            continue;
        }
        A.retired = r;
        if (f->fd >= 0)
            A.retired[A.n_retired++] = f->fd;
        f->fd = fd;
    }
    pthread_cond_signal(&A.cond);
    pthread_mutex_unlock(&A.lock);
    return failed;
}

bool fg_accesslog_start(void)
{
    if (pthread_create(&A.thread, NULL, alog_main, NULL) != 0) {
        fg_err("cannot start the access log thread: %s", strerror(errno));
        return false;
    }
    A.running = true;
    return true;
}

void fg_accesslog_stop(void)
{
    if (!A.running)
        return;
    pthread_mutex_lock(&A.lock);
    A.stop = true;
    pthread_cond_signal(&A.cond);
    pthread_mutex_unlock(&A.lock);
    pthread_join(A.thread, NULL);
    A.running = false;
}

void fg_accesslog_flush(struct fg_worker *w)
{
    size_t len = evbuffer_get_length(w->alog);
    if (len == 0 || w->alog_path[0] == '\0')
        return;
    struct alog_item *it = calloc(1, sizeof(*it));
    struct evbuffer *data = evbuffer_new();
    if (it == NULL || data == NULL || (it->path = strdup(w->alog_path)) == NULL) {
        free(it);
        if (data)
            evbuffer_free(data);
        evbuffer_drain(w->alog, len);
        return;
    }
    evbuffer_add_buffer(data, w->alog);
    it->data = data;
    pthread_mutex_lock(&A.lock);
    if (A.queued_bytes + len > FG_ALOG_QUEUE_MAX) {
        pthread_mutex_unlock(&A.lock);
        fg_counter_add(&A.dropped_lines, 1);
        evbuffer_free(data);
        free(it->path);
        free(it);
        return;
    }
    if (A.tail)
        A.tail->next = it;
    else
        A.head = it;
    A.tail = it;
    A.queued_bytes += len;
    pthread_cond_signal(&A.cond);
    pthread_mutex_unlock(&A.lock);
}

static void json_str(struct evbuffer *out, const char *s)
{
    char buf[1024];
    size_t n = 0;
    buf[n++] = '"';
    for (; *s && n < sizeof(buf) - 8; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\\u%04x", ch);
        } else {
            buf[n++] = (char)ch;
        }
    }
    buf[n++] = '"';
    evbuffer_add(out, buf, n);
}

void fg_accesslog_txn(struct fg_worker *w, const struct fg_txn *t)
{
    const struct fg_conf_server *srv = t->srv;
    if (srv == NULL || srv->access_log == NULL)
        return;
    uint64_t dur_us = t->start_us ? fg_mono_us() - t->start_us : 0;
    bool always = t->status >= 500 || dur_us / 1000 >= srv->slow_request_ms;
    if (!always) {
        double sample = srv->access_log_sample;
        if (sample <= 0.0)
            return;
        if (sample < 1.0 && (double)(fg_worker_random(w) >> 11) * 0x1.0p-53 >= sample)
            return;
    }
    if (strcmp(w->alog_path, srv->access_log) != 0) {
        fg_accesslog_flush(w);
        snprintf(w->alog_path, sizeof(w->alog_path), "%s", srv->access_log);
    }
    struct evbuffer *out = w->alog;
    int64_t ms = fg_wall_ms();
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    evbuffer_add_printf(
        out, "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\",\"client\":", tm.tm_year + 1900,
        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    json_str(out, t->client_ip[0] ? t->client_ip : t->c->peer_ip);
    evbuffer_add(out, ",\"method\":", 10);
    json_str(out, t->log_method[0] ? t->log_method : "-");
    evbuffer_add(out, ",\"path\":", 8);
    json_str(out, t->log_path[0] ? t->log_path : "-");
    evbuffer_add_printf(out,
                        ",\"status\":%d,\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64
                        ",\"duration_ms\":%.3f,\"upstream\":",
                        t->status, t->bytes_in, t->bytes_out, (double)dur_us / 1000.0);
    json_str(out, t->log_upstream);
    evbuffer_add_printf(out,
                        ",\"upstream_ms\":%.3f,\"request_id\":", (double)t->upstream_us / 1000.0);
    json_str(out, t->request_id);
    evbuffer_add(out, ",\"trace_id\":", 12);
    json_str(out, t->log_trace);
    evbuffer_add(out, ",\"route\":", 9);
    json_str(out, t->route ? t->route->prefix : "");
    evbuffer_add(out, ",\"cache\":", 9);
    json_str(out, t->log_cache ? t->log_cache : "");
    evbuffer_add(out, ",\"fleet\":", 9);
    json_str(out, t->log_fleet ? t->log_fleet : "");
    evbuffer_add(out, ",\"limited_by\":", 14);
    json_str(out, t->log_limit ? t->log_limit : "");
    evbuffer_add(out, ",\"offload\":", 11);
    json_str(out, t->log_offload ? t->log_offload : "");
    /* Why it was slow: where the time went, and what the app's connection cost. */
    evbuffer_add_printf(out,
                        ",\"upstream_connect\":\"%s\",\"upstream_attempts\":%u"
                        ",\"upstream_connect_ms\":%.3f,\"upstream_ttfb_ms\":%.3f"
                        ",\"cache_ms\":%.3f,\"limit_ms\":%.3f,\"offload_ms\":%.3f",
                        t->app.attempts == 0 ? ""
                        : t->app.reused      ? "reused"
                                             : "new",
                        t->app.attempts, (double)t->app.connect_us / 1000.0,
                        (double)t->app_head_us / 1000.0, (double)t->cache_us / 1000.0,
                        (double)t->limit_us / 1000.0, (double)t->offload_us / 1000.0);
    evbuffer_add(out, ",\"ua\":", 6);
    json_str(out, t->log_ua);
    evbuffer_add(out, "}\n", 2);
    if (evbuffer_get_length(out) >= FG_ALOG_HANDOFF)
        fg_accesslog_flush(w);
}
