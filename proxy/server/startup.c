/*
 * startup.c — what is checked before flashgate serves, and by `flashgate -t` (which runs
 * before every start and reload under systemd), so that a config that would fail at
 * start, or run half-broken, is refused with its file:line instead:
 *
 *   - the `user` exists;
 *   - the log files can be written by the identity that will write them (the `user` when
 *     started as root: logs are reopened on SIGUSR1 after the drop);
 *   - one process per pid file: it is locked (flock) for the life of the process, so a
 *     second flashgate started with the same config is refused before it touches the
 *     file or a port.
 *
 * And the privilege drop itself, once the ports are bound.
 */
#include "server/server.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/core.h"

static const char *name_of(const struct fg_config *cfg)
{
    return cfg->path != NULL ? cfg->path : "flashgate.conf";
}

/* ---- log files ----------------------------------------------------------------------- */

struct log_target {
    const char *directive; /* "error_log" or "access_log" */
    const char *path;
    size_t line;
};

/* The log files of cfg (stderr is not a file). */
static size_t log_targets(const struct fg_config *cfg, struct log_target *out, size_t cap)
{
    size_t n = 0;
    if (cfg->error_log != NULL && strcmp(cfg->error_log, "stderr") != 0 && n < cap)
        out[n++] = (struct log_target){"error_log", cfg->error_log, cfg->error_log_line};
    for (size_t s = 0; s < cfg->n_servers && n < cap; s++) {
        const char *p = cfg->servers[s].access_log;
        if (p != NULL && strcmp(p, "stderr") != 0)
            out[n++] = (struct log_target){"access_log", p, cfg->servers[s].access_log_line};
    }
    return n;
}

/* 0 when the calling identity can write path, or create it in its directory (both are
 * needed: logrotate moves the file away and flashgate creates the next one on SIGUSR1
 * unless logrotate's `create` did); else an errno, *created telling which check failed. */
static int writable(const char *path, bool *create)
{
    *create = false;
    if (faccessat(AT_FDCWD, path, W_OK, AT_EACCESS) == 0)
        return 0;
    if (errno != ENOENT)
        return errno;
    *create = true;
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        return EINVAL;
    if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    return faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) == 0 ? 0 : errno;
}

/* As root with `user`: the checks run in a child that has become the user, so that the
 * kernel answers for that user (groups and ACLs included). Results come back as two ints
 * per file through a pipe. Only at start and in `flashgate -t`, before any thread. */
static bool check_as(const struct passwd *pw, const struct log_target *t, size_t n, int *res)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return false;
    /* the group list is read here, before fork: initgroups in the child could lock */
    gid_t groups[256];
    int ng = (int)FG_ARRAY_LEN(groups);
    if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &ng) < 0)
        ng = 0;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return false;
    }
    if (pid == 0) {
        close(fds[0]);
        if (setgroups((size_t)ng, groups) != 0 || setgid(pw->pw_gid) != 0 ||
            setuid(pw->pw_uid) != 0)
            _exit(1);
        for (size_t i = 0; i < n; i++) {
            bool create;
            int r[2] = {writable(t[i].path, &create), create};
            if (write(fds[1], r, sizeof(r)) != (ssize_t)sizeof(r))
                _exit(1);
        }
        _exit(0);
    }
    close(fds[1]);
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++)
        ok = read(fds[0], &res[2 * i], 2 * sizeof(int)) == (ssize_t)(2 * sizeof(int));
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

#define MAX_LOG_TARGETS 64

static size_t check_logs(const struct fg_config *cfg, const struct passwd *pw,
                         struct fg_config_errors *errs)
{
    struct log_target t[MAX_LOG_TARGETS];
    size_t n = log_targets(cfg, t, MAX_LOG_TARGETS);
    int res[2 * MAX_LOG_TARGETS];
    char who[300];
    if (pw != NULL) {
        snprintf(who, sizeof(who), "user %s", pw->pw_name);
        if (n > 0 && !check_as(pw, t, n, res)) {
            fg_config_error_add(errs, "%s: cannot check the log files as user %s: %s", name_of(cfg),
                                pw->pw_name, strerror(errno ? errno : EIO));
            return 1;
        }
    } else {
        struct passwd *me = getpwuid(geteuid());
        if (me != NULL)
            snprintf(who, sizeof(who), "user %s", me->pw_name);
        else
            snprintf(who, sizeof(who), "uid %d", (int)geteuid());
        for (size_t i = 0; i < n; i++) {
            bool create;
            res[2 * i] = writable(t[i].path, &create);
            res[2 * i + 1] = create;
        }
    }
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        int e = res[2 * i];
        if (e == 0)
            continue;
        bad++;
        if (res[2 * i + 1])
            fg_config_error_add(errs,
                                "%s:%zu: %s %s: %s cannot create it: %s (flashgate reopens "
                                "its logs as that user on SIGUSR1, for logrotate)",
                                name_of(cfg), t[i].line, t[i].directive, t[i].path, who,
                                e == ENOENT ? "its directory does not exist" : strerror(e));
        else
            fg_config_error_add(errs,
                                "%s:%zu: %s %s: %s cannot write it: %s (flashgate reopens "
                                "its logs as that user on SIGUSR1, for logrotate)",
                                name_of(cfg), t[i].line, t[i].directive, t[i].path, who,
                                strerror(e));
    }
    return bad;
}

/* The user flashgate will run as after the drop: cfg->user when started as root, else
 * nobody to switch to (NULL). *missing when the user does not exist. */
static struct passwd *drop_user(const struct fg_config *cfg, bool *missing)
{
    *missing = false;
    if (cfg->user == NULL)
        return NULL;
    struct passwd *pw = getpwnam(cfg->user);
    if (pw == NULL) {
        *missing = true;
        return NULL;
    }
    return geteuid() == 0 ? pw : NULL;
}

size_t fg_server_check(const struct fg_config *cfg, struct fg_config_errors *errs)
{
    bool missing;
    struct passwd *pw = drop_user(cfg, &missing);
    size_t bad = 0;
    if (missing) {
        fg_config_error_add(errs, "%s:%zu: user '%s' does not exist", name_of(cfg), cfg->user_line,
                            cfg->user);
        bad++;
    }
    /* copy: check_logs calls getpwuid, which may reuse getpwnam's static buffer */
    struct passwd copy;
    char name[256];
    if (pw != NULL) {
        copy = *pw;
        snprintf(name, sizeof(name), "%s", pw->pw_name);
        copy.pw_name = name;
        pw = &copy;
    }
    if (!missing)
        bad += check_logs(cfg, pw, errs);
    return bad;
}

bool fg_server_set_log_owner(const struct fg_config *cfg)
{
    bool missing;
    struct passwd *pw = drop_user(cfg, &missing);
    if (missing) {
        fg_err("%s:%zu: user '%s' does not exist; refusing to run as root", name_of(cfg),
               cfg->user_line, cfg->user);
        return false;
    }
    if (pw != NULL)
        fg_log_set_file_owner(pw->pw_uid, pw->pw_gid);
    return true;
}

/* ---- the pid file ---------------------------------------------------------------------- */

static struct {
    int fd;
    char path[4096];
} P = {.fd = -1};

bool fg_server_lock_pid_file(const struct fg_config *cfg)
{
    if (cfg->pid_file == NULL)
        return true;
    /* No O_TRUNC: the file of a running flashgate must not be emptied by the one that is
     * about to be refused. */
    int fd = open(cfg->pid_file, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fg_err("%s:%zu: pid_file %s: cannot open: %s", name_of(cfg), cfg->pid_file_line,
               cfg->pid_file, strerror(errno));
        return false;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char held[32] = "";
        ssize_t n = pread(fd, held, sizeof(held) - 1, 0);
        held[n > 0 ? n : 0] = '\0';
        held[strcspn(held, "\n")] = '\0';
        close(fd);
        if (e == EWOULDBLOCK)
            fg_err("%s:%zu: pid_file %s is locked by process %s: another flashgate is running "
                   "with it; refusing to start",
                   name_of(cfg), cfg->pid_file_line, cfg->pid_file, held[0] ? held : "(unknown)");
        else
            fg_err("%s:%zu: pid_file %s: cannot lock: %s", name_of(cfg), cfg->pid_file_line,
                   cfg->pid_file, strerror(e));
        return false;
    }
    P.fd = fd;
    snprintf(P.path, sizeof(P.path), "%s", cfg->pid_file);
    atexit(fg_server_remove_pid_file); /* a start that fails later leaves no file behind */
    return true;
}

bool fg_server_write_pid_file(void)
{
    if (P.fd < 0)
        return true;
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    if (ftruncate(P.fd, 0) != 0 || pwrite(P.fd, buf, (size_t)n, 0) != n) {
        fg_err("cannot write pid file %s: %s", P.path, strerror(errno));
        return false;
    }
    return true;
}

void fg_server_remove_pid_file(void)
{
    if (P.fd < 0)
        return;
    /* Still holding the lock: a new flashgate waiting on it finds the file gone or its own. */
    unlink(P.path);
    close(P.fd);
    P.fd = -1;
}

/* ---- privileges ------------------------------------------------------------------------- */

bool fg_server_drop_privileges(const struct fg_config *cfg)
{
    if (cfg->user == NULL || geteuid() != 0)
        return true;
    struct passwd *pw = getpwnam(cfg->user);
    if (pw == NULL) {
        fg_err("%s:%zu: user '%s' does not exist; refusing to run as root", name_of(cfg),
               cfg->user_line, cfg->user);
        return false;
    }
    if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
        setuid(pw->pw_uid) != 0) {
        fg_err("cannot switch to user '%s': %s", cfg->user, strerror(errno));
        return false;
    }
    if (setuid(0) == 0) {
        fg_err("privileges could be regained after switching to '%s'; refusing to run", cfg->user);
        return false;
    }
    fg_notice("running as user %s (uid %d)", cfg->user, (int)pw->pw_uid);
    return true;
}
