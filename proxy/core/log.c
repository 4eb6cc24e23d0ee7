/*
 * log.c — the error log. One line per event, prefixed with an ISO-8601 UTC time and the
 * level. Lines are written with a single write(2) so that lines from different threads
 * never interleave; the file is opened O_APPEND so logrotate's copy or move both work
 * with a reopen on SIGUSR1. A reopen that fails keeps the file it had (and says so,
 * through the caller), rather than losing lines.
 */
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_fd = 2;
static _Atomic int log_level = FG_LOG_NOTICE;
static pthread_mutex_t log_path_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_path[4096];

static const char *const level_names[] = {"error", "warn", "notice", "info", "debug"};

static _Atomic uid_t file_uid = (uid_t)-1;
static _Atomic gid_t file_gid = (gid_t)-1;

void fg_log_set_file_owner(uid_t uid, gid_t gid)
{
    atomic_store(&file_uid, uid);
    atomic_store(&file_gid, gid);
}

int fg_log_file_open(const char *path)
{
    /* O_EXCL first, to know whether this call created the file: only a file we created
     * is given away (an existing one keeps its owner, whatever it is). */
    for (int tries = 0; tries < 2; tries++) {
        int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
        if (fd >= 0) {
            uid_t uid = atomic_load(&file_uid);
            if (uid != (uid_t)-1 && geteuid() == 0 &&
                fchown(fd, uid, atomic_load(&file_gid)) != 0) {
                int e = errno;
                close(fd);
                errno = e;
                return -1;
            }
            return fd;
        }
        if (errno != EEXIST)
            return -1;
        fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
        if (fd >= 0 || errno != ENOENT)
            return fd;
        /* removed between the two opens (logrotate): create it again */
    }
    errno = ENOENT;
    return -1;
}

static bool log_use_path(const char *path)
{
    int fd = 2;
    if (path != NULL && path[0] != '\0' && strcmp(path, "stderr") != 0) {
        fd = fg_log_file_open(path);
        if (fd < 0)
            return false;
    }
    int old = atomic_exchange(&log_fd, fd);
    if (old > 2)
        close(old);
    return true;
}

bool fg_log_open(const char *path, enum fg_log_level level)
{
    pthread_mutex_lock(&log_path_lock);
    bool ok = log_use_path(path);
    if (ok) {
        snprintf(log_path, sizeof(log_path), "%s", path ? path : "");
        atomic_store(&log_level, (int)level);
    }
    pthread_mutex_unlock(&log_path_lock);
    return ok;
}

void fg_log_use_fd(int fd, const char *path, enum fg_log_level level)
{
    pthread_mutex_lock(&log_path_lock);
    int old = atomic_exchange(&log_fd, fd >= 0 ? fd : 2);
    if (old > 2)
        close(old);
    snprintf(log_path, sizeof(log_path), "%s", fd >= 0 && path ? path : "");
    atomic_store(&log_level, (int)level);
    pthread_mutex_unlock(&log_path_lock);
}

bool fg_log_reopen(void)
{
    pthread_mutex_lock(&log_path_lock);
    bool ok = log_use_path(log_path);
    int e = errno;
    pthread_mutex_unlock(&log_path_lock);
    errno = e;
    return ok;
}

void fg_log_path(char *out, size_t outlen)
{
    pthread_mutex_lock(&log_path_lock);
    snprintf(out, outlen, "%s", log_path);
    pthread_mutex_unlock(&log_path_lock);
}

void fg_log_set_level(enum fg_log_level level)
{
    atomic_store(&log_level, (int)level);
}

enum fg_log_level fg_log_get_level(void)
{
    return (enum fg_log_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

bool fg_log_level_parse(const char *s, enum fg_log_level *out)
{
    for (size_t i = 0; i < FG_ARRAY_LEN(level_names); i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum fg_log_level)i;
            return true;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = FG_LOG_WARN;
        return true;
    }
    return false;
}

void fg_log(enum fg_log_level level, const char *fmt, ...)
{
    if ((int)level > atomic_load_explicit(&log_level, memory_order_relaxed))
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ [%s] ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    ssize_t w = write(atomic_load_explicit(&log_fd, memory_order_relaxed), line, len);
    (void)w; /* nowhere left to report a failed log write */
}

void fg_panic(const char *file, int line, const char *what)
{
    fg_log(FG_LOG_ERROR, "assertion failed at %s:%d: %s", file, line, what);
    abort();
}
