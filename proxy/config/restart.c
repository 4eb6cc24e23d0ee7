/*
 * restart.c — the directives a reload cannot apply. Worker threads, the admin listener,
 * the pid file, the user and the rate-limit table are set up once at start; a SIGHUP
 * that changes them would otherwise be accepted silently and /config would show values
 * that do not run. Here the new snapshot takes the running values back, and each change
 * becomes a warning naming the directive and its line, so the operator knows a restart
 * is needed.
 */
#include "config/config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "file:line: message", or "file: message" for a directive gone from the file (its
 * default differs from what runs). */
static void warn(struct fg_config_errors *w, const char *path, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void warn(struct fg_config_errors *w, const char *path, size_t line, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (line > 0)
        fg_config_error_add(w, "%s:%zu: %s", path, line, msg);
    else
        fg_config_error_add(w, "%s: %s", path, msg);
}

static bool str_differs(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a != b;
    return strcmp(a, b) != 0;
}

/* Swap a string field back to the running value (next owns its copy, freed with it). */
static void keep_str(char **next, const char *cur)
{
    free(*next);
    *next = cur != NULL ? strdup(cur) : NULL;
}

static const char *workers_text(unsigned n, char *buf, size_t len)
{
    if (n == 0)
        return "auto";
    snprintf(buf, len, "%u", n);
    return buf;
}

#define NEEDS_RESTART "takes effect only at a restart"

size_t fg_config_keep_restart_only(struct fg_config *next, const struct fg_config *cur,
                                   struct fg_config_errors *warns)
{
    *warns = (struct fg_config_errors){0};
    const char *path = next->path != NULL ? next->path : "flashgate.conf";
    char a[32], b[32];
    if (next->workers != cur->workers) {
        warn(warns, path, next->workers_line, "workers %s: " NEEDS_RESTART "; %s keep running",
             workers_text(next->workers, a, sizeof(a)), workers_text(cur->workers, b, sizeof(b)));
        next->workers = cur->workers;
    }
    if (str_differs(next->user, cur->user)) {
        warn(warns, path, next->user_line, "user %s: " NEEDS_RESTART "; still running as %s",
             next->user ? next->user : "(none)", cur->user ? cur->user : "the starting user");
        keep_str(&next->user, cur->user);
    }
    if (str_differs(next->pid_file, cur->pid_file)) {
        warn(warns, path, next->pid_file_line, "pid_file %s: " NEEDS_RESTART "; %s stays in use",
             next->pid_file ? next->pid_file : "(none)",
             cur->pid_file ? cur->pid_file : "no pid file");
        keep_str(&next->pid_file, cur->pid_file);
    }
    if (next->limit_table_entries != cur->limit_table_entries) {
        warn(warns, path, next->limit_table_entries_line,
             "limit_table_entries %llu: " NEEDS_RESTART "; the table keeps %llu entries",
             (unsigned long long)next->limit_table_entries,
             (unsigned long long)cur->limit_table_entries);
        next->limit_table_entries = cur->limit_table_entries;
    }
    const struct fg_conf_admin *ca = &cur->admin;
    struct fg_conf_admin *na = &next->admin;
    if (na->enabled != ca->enabled) {
        warn(warns, path, na->line, "admin %s: " NEEDS_RESTART "; the admin listener stays %s",
             na->enabled ? "on" : "off", ca->enabled ? "on" : "off");
        na->enabled = ca->enabled;
        na->addr = ca->addr;
    } else if (na->enabled && (na->addr.len != ca->addr.len ||
                               memcmp(&na->addr.ss, &ca->addr.ss, ca->addr.len) != 0)) {
        warn(warns, path, na->line,
             "admin listen %s: " NEEDS_RESTART "; the admin listener stays on %s", na->addr.text,
             ca->addr.text);
        na->addr = ca->addr;
    }
    return warns->n;
}
