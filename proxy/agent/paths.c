/*
 * paths.c — the files and directories the agent needs before it can take a record: the
 * spool directory, the socket's directory (and that the socket path is free for a
 * socket), and the error log's directory.
 *
 * At start the missing directories are made, parents included, mode 0750 (what the
 * packaging's tmpfiles.d and RuntimeDirectory= make; from a source install nothing made
 * them and the agent used to exit "create directory: No such file or directory"). With
 * -t nothing is made; the same walk says whether making them would work, so a check that
 * passes means a start that does not fail on a path. Problems are reported as
 * "file:line: message", the line of the directive (the file alone for a default).
 */
#include "agent/agentd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIR_MODE 0750

struct paths {
    const struct fg_conf_agent *cfg;
    bool create;
    struct fg_config_errors *errs;
    bool ok;
};

static void report(struct paths *P, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void report(struct paths *P, size_t line, const char *fmt, ...)
{
    P->ok = false;
    char msg[1024], where[64] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (line > 0)
        snprintf(where, sizeof(where), ":%zu", line);
    size_t need = strlen(P->cfg->path) + strlen(where) + strlen(msg) + 4;
    char *full = malloc(need);
    char **v = realloc(P->errs->msgs, (P->errs->n + 1) * sizeof(*v));
    if (full == NULL || v == NULL) {
        free(full);
        if (v != NULL)
            P->errs->msgs = v;
        return;
    }
    snprintf(full, need, "%s%s: %s", P->cfg->path, where, msg);
    P->errs->msgs = v;
    P->errs->msgs[P->errs->n++] = full;
}

/* fsync the directory holding path, so a directory just made survives a crash. */
static void sync_parent(const char *path)
{
    char *copy = strdup(path);
    if (copy == NULL)
        return;
    char *slash = strrchr(copy, '/');
    if (slash == copy)
        slash[1] = '\0';
    else if (slash != NULL)
        *slash = '\0';
    int fd = open(copy, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

/* The directory part of file (absolute) into out. */
static void dirname_of(const char *file, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s", file);
    char *slash = strrchr(out, '/');
    if (slash == out)
        slash[1] = '\0';
    else if (slash != NULL)
        *slash = '\0';
}

/*
 * dir (absolute) must be a directory this process can create files in. Its components
 * are walked top down; at the first missing one, either every missing one is made
 * (create) or it is checked that its parent would let it be made. what and line name
 * the directive in messages.
 */
static void need_dir(struct paths *P, const char *what, size_t line, const char *dir)
{
    char path[4096];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof(path) || dir[0] != '/') {
        report(P, line, "%s %s: not an absolute path", what, dir);
        return;
    }
    memcpy(path, dir, len + 1);
    while (len > 1 && path[len - 1] == '/')
        path[--len] = '\0';
    struct stat sb;
    if (stat(path, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode))
            report(P, line, "%s %s: exists and is not a directory", what, path);
        else if (access(path, W_OK | X_OK) != 0)
            report(P, line, "%s %s: not writable by uid %u: %s", what, path, (unsigned)geteuid(),
                   strerror(errno));
        return;
    }
    if (errno != ENOENT && errno != ENOTDIR) { /* ENOTDIR: the walk says which part */
        report(P, line, "%s %s: %s", what, path, strerror(errno));
        return;
    }
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char keep = path[i];
        path[i] = '\0';
        int r = stat(path, &sb);
        int e = errno;
        if (r == 0 && S_ISDIR(sb.st_mode)) {
            path[i] = keep;
            continue;
        }
        if (r == 0) {
            report(P, line, "%s %s: cannot be created: %s is not a directory", what, dir, path);
            return;
        }
        if (e != ENOENT) {
            report(P, line, "%s %s: %s: %s", what, dir, path, strerror(e));
            return;
        }
        if (!P->create) {
            /* path is the first missing component: its parent must take it. */
            char parent[4096];
            dirname_of(path, parent, sizeof(parent));
            if (access(parent, W_OK | X_OK) != 0)
                report(P, line, "%s %s: cannot be created: %s is not writable by uid %u: %s", what,
                       dir, parent, (unsigned)geteuid(), strerror(errno));
            return;
        }
        if (mkdir(path, DIR_MODE) != 0 && errno != EEXIST) {
            report(P, line, "%s %s: create directory %s: %s", what, dir, path, strerror(errno));
            return;
        }
        sync_parent(path);
        fg_notice("created directory %s (mode 0750) for %s", path, what);
        path[i] = keep;
    }
}

bool fg_agentd_paths(const struct fg_conf_agent *cfg, bool create, struct fg_config_errors *errs)
{
    struct paths P = {.cfg = cfg, .create = create, .errs = errs, .ok = true};
    char dir[4096];
    struct stat sb;
    if (cfg->mode == FG_CONF_AGENT_FORWARD) {
        need_dir(&P, "spool_dir", cfg->spool_dir_line, cfg->spool_dir);
        dirname_of(cfg->listen_path, dir, sizeof(dir));
        need_dir(&P, "listen: the socket's directory", cfg->listen_line, dir);
        if (lstat(cfg->listen_path, &sb) == 0 && !S_ISSOCK(sb.st_mode))
            report(&P, cfg->listen_line, "listen %s: exists and is not a socket", cfg->listen_path);
    }
    if (cfg->error_log != NULL) {
        if (stat(cfg->error_log, &sb) == 0) {
            if (!S_ISREG(sb.st_mode))
                report(&P, cfg->error_log_line, "error_log %s: exists and is not a file",
                       cfg->error_log);
            else if (access(cfg->error_log, W_OK) != 0)
                report(&P, cfg->error_log_line, "error_log %s: not writable by uid %u: %s",
                       cfg->error_log, (unsigned)geteuid(), strerror(errno));
        } else {
            dirname_of(cfg->error_log, dir, sizeof(dir));
            need_dir(&P, "error_log: the log's directory", cfg->error_log_line, dir);
        }
    }
    return P.ok;
}
