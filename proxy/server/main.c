/*
 * main.c — flashgate's command line and the main thread: load the config, start the
 * workers and the admin listener, then wait for signals (reload, drain, log reopen).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin/admin.h"
#include "config/config.h"
#include "core/core.h"
#include "fleet/fleet.h"
#include "waitroom/waitroom.h"
#include "server/server.h"
#include "tls/tls.h"

#define DEFAULT_CONF FG_SYSCONFDIR "/flashgate/flashgate.conf"

static void print_errors(FILE *out, const struct fg_config_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        fprintf(out, "%s\n", errs->msgs[i]);
}

static void log_errors(const struct fg_config_errors *errs)
{
    for (size_t i = 0; i < errs->n; i++)
        fg_err("%s", errs->msgs[i]);
}

/* The error log of next, opened before the reload is applied so that a file that cannot
 * be opened refuses it: -2 when it stays the same (no reopen on reload: SIGUSR1 does
 * that), -1 for standard error, else the new file's descriptor; false on failure. */
static bool reload_error_log(const struct fg_config *next, const struct fg_config *cur, int *fd)
{
    const char *np = next->error_log ? next->error_log : "stderr";
    const char *cp = cur->error_log ? cur->error_log : "stderr";
    *fd = -2;
    if (strcmp(np, cp) == 0)
        return true;
    if (strcmp(np, "stderr") == 0) {
        *fd = -1;
        return true;
    }
    *fd = fg_log_file_open(np);
    if (*fd >= 0)
        return true;
    fg_err("%s:%zu: reload refused: error_log %s: cannot open: %s; the running configuration "
           "stays",
           next->path, next->error_log_line, np, strerror(errno));
    return false;
}

static const struct fg_admin_ops admin_ops = {
    .draining = fg_server_draining,
    .warming = fg_fleet_warming,
    .stats_json = fg_server_stats_json,
    .metrics = fg_server_metrics,
    .config = fg_server_config,
    .cache_purge = fg_server_cache_purge,
    .warm_target = fg_server_warm_target,
    .sample = fg_server_sample,
    .waitroom = fg_waitroom_admin,
};

static struct fg_config *reload(struct fg_config *cur, const char *path)
{
    fg_notice("reloading configuration from %s", path);
    fg_sd_notify("RELOADING=1");
    struct fg_config_errors errs = {0};
    struct fg_config *next = fg_config_load(path, &errs);
    if (next != NULL && !fg_server_open_logs(next, &errs)) {
        fg_config_unref(next);
        next = NULL;
    }
    if (next == NULL) {
        log_errors(&errs);
        fg_err("reload refused: %zu error(s) in %s; the running configuration (generation %llu) "
               "stays",
               errs.n, path, (unsigned long long)cur->generation);
        fg_config_errors_free(&errs);
        fg_sd_notify("READY=1");
        return cur;
    }
    next->generation = cur->generation + 1;
    /* What only a restart changes keeps its running value, in the snapshot too (/config
     * shows what runs); each such change is a warning once the reload is applied. */
    struct fg_config_errors warns;
    fg_config_keep_restart_only(next, cur, &warns);
    int log_fd;
    if (!reload_error_log(next, cur, &log_fd) || !fg_server_reload(next)) {
        if (log_fd >= 0)
            close(log_fd);
        fg_config_errors_free(&warns);
        fg_config_unref(next);
        fg_sd_notify("READY=1");
        return cur;
    }
    if (log_fd != -2)
        fg_log_use_fd(log_fd, next->error_log, next->error_log_level);
    else
        fg_log_set_level(next->error_log_level);
    for (size_t i = 0; i < warns.n; i++)
        fg_warn("%s", warns.msgs[i]);
    fg_config_errors_free(&warns);
    fg_fleet_reload(next);
    fg_notice("configuration generation %llu is running", (unsigned long long)next->generation);
    fg_config_unref(cur);
    fg_sd_notify("READY=1");
    return next;
}

/* SIGUSR1 (logrotate's postrotate): every log file is opened again by path. One that
 * cannot be is said so, and keeps being written where it was, rather than a claim that
 * all went well while lines go to the rotated file. */
static void reopen_logs(void)
{
    char path[4096];
    fg_log_path(path, sizeof(path));
    bool ok = fg_log_reopen();
    if (!ok)
        fg_err("error log %s: cannot reopen: %s; still writing to the file it had open", path,
               strerror(errno));
    if (fg_server_reopen_logs() > 0)
        ok = false;
    if (ok)
        fg_notice("log files reopened");
    else
        fg_err("log files reopened, except the ones above");
}

/* Session ticket keys: one ring for the life of the process, so tickets stay valid
 * across reloads; replaced every ssl_ticket_key_rotation, the previous key still decrypts
 * for one more period. */
#define TICKET_KEYS_KEEP 1

static struct fg_tls_ticket_keys *ticket_keys_start(void)
{
    char err[256];
    struct fg_tls_ticket_keys *k =
        fg_tls_ticket_keys_new(3600, TICKET_KEYS_KEEP, fg_wall_ms() / 1000, err, sizeof(err));
    if (k == NULL)
        fg_err("%s; TLS session tickets are off (session ids still resume)", err);
    fg_config_set_ticket_keys(k);
    return k;
}

static void ticket_keys_tick(struct fg_tls_ticket_keys *k, const struct fg_config *cfg,
                             uint64_t now_ms, uint64_t *last_ms)
{
    if (k == NULL || now_ms - *last_ms < cfg->ssl_ticket_key_rotation_ms)
        return;
    *last_ms = now_ms;
    if (fg_tls_ticket_keys_rotate_force(k, (int64_t)(fg_wall_ms() / 1000)) == 1)
        fg_info("tls: session ticket key rotated");
}

int main(int argc, char **argv)
{
    struct fg_cli cli = {
        .prog = "flashgate",
        .conf_path = DEFAULT_CONF,
        .dump_help = "check the configuration and print the effective configuration",
        .signals = "HUP reload, TERM drain and exit, INT quick drain, USR1 reopen logs"};
    int cli_rc = fg_cli_parse(&cli, argc, argv);
    if (cli_rc >= 0)
        return cli_rc;
    const char *path = cli.conf_path;
    bool test_only = cli.test, dump = cli.dump;

    /* -t checks certificates the same way, without tickets. */
    struct fg_tls_ticket_keys *ticket_keys = test_only ? NULL : ticket_keys_start();
    struct fg_config_errors errs = {0};
    struct fg_config *cfg = fg_config_load(path, &errs);
    /* What would fail at start fails -t too: the user, the log files (startup.c). */
    if (cfg != NULL && fg_server_check(cfg, &errs) > 0) {
        fg_config_unref(cfg);
        cfg = NULL;
    }
    if (cfg == NULL) {
        fg_tls_ticket_keys_unref(ticket_keys);
        print_errors(stderr, &errs);
        fprintf(stderr, "flashgate: configuration %s has %zu error(s)\n", path, errs.n);
        fg_config_errors_free(&errs);
        return 1;
    }
    if (test_only) {
        if (dump)
            fg_config_dump(cfg, stdout);
        fprintf(stderr, "flashgate: configuration %s is ok\n", path);
        fg_config_unref(cfg);
        return 0;
    }
    cfg->generation = 1;
    /* A second flashgate on the same pid file or the same ports is refused here, before
     * it changes the file or joins a port (SO_REUSEPORT would let it share the traffic). */
    if (!fg_server_lock_pid_file(cfg))
        return 1;
    if (!fg_server_probe_ports(cfg, &errs)) {
        print_errors(stderr, &errs);
        fprintf(stderr, "flashgate: not started: it cannot have the addresses above\n");
        return 1;
    }
    /* Log files are opened now, while root, and given to `user` when created, so that
     * they can be reopened after the drop (SIGUSR1, logrotate). */
    if (!fg_server_set_log_owner(cfg))
        return 1;
    if (!fg_log_open(cfg->error_log, cfg->error_log_level)) {
        fprintf(stderr, "flashgate: %s:%zu: cannot open error log %s: %s\n", path,
                cfg->error_log_line, cfg->error_log, strerror(errno));
        return 1;
    }
    if (!fg_server_open_logs(cfg, &errs)) {
        log_errors(&errs);
        return 1;
    }

    /* Signals are taken synchronously by this thread only; workers inherit the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGQUIT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (!fg_server_start(cfg))
        return 1;
    /* The admin thread runs with `admin off` too: it makes the summaries and the EMF
     * records (the emf block may come with a reload). */
    if (!fg_admin_start(cfg->admin.enabled ? &cfg->admin.addr : NULL, &admin_ops))
        return 1;
    if (!fg_server_write_pid_file())
        return 1;
    if (!fg_server_drop_privileges(cfg))
        return 1;
    /* Workers start only now: no request is ever served with root privileges. */
    if (!fg_server_run())
        return 1;
    struct fg_addr warm_target;
    if (!fg_fleet_start(cfg, fg_server_warm_target(&warm_target) ? &warm_target : NULL))
        return 1;
    fg_notice("flashgate %s started: config %s, generation 1", PACKAGE_VERSION, path);
    fg_sd_notify("READY=1");

    bool draining = false, accepting = true;
    uint64_t stop_accept_at = 0, deadline = 0, ticket_rotated_ms = fg_mono_ms();
    for (;;) {
        struct timespec tick = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
        int sig = sigtimedwait(&set, NULL, &tick);
        uint64_t now = fg_mono_ms();
        ticket_keys_tick(ticket_keys, cfg, now, &ticket_rotated_ms);
        if (sig == SIGHUP && !draining) {
            cfg = reload(cfg, path);
        } else if (sig == SIGUSR1) {
            reopen_logs();
        } else if ((sig == SIGTERM || sig == SIGINT || sig == SIGQUIT) && !draining) {
            draining = true;
            uint64_t delay = sig == SIGTERM ? cfg->shutdown_delay_ms : 0;
            stop_accept_at = now + delay;
            deadline = stop_accept_at + cfg->drain_timeout_ms;
            fg_server_begin_drain();
            fg_sd_notify("STOPPING=1");
            fg_notice("%s: draining; /healthz answers 503; still accepting for %llums, then "
                      "closing within %llums",
                      sig == SIGTERM ? "SIGTERM" : "SIGINT", (unsigned long long)delay,
                      (unsigned long long)cfg->drain_timeout_ms);
        } else if ((sig == SIGTERM || sig == SIGINT) && draining) {
            fg_notice("second stop signal: exiting now");
            deadline = now;
            stop_accept_at = now;
        }
        if (draining && accepting && now >= stop_accept_at) {
            accepting = false;
            fg_server_stop_accepting();
            fg_notice("listeners closed; waiting for %lu connection(s)", fg_server_inflight());
        }
        if (draining && !accepting) {
            unsigned long left = fg_server_inflight();
            if (left == 0 || now >= deadline) {
                if (left > 0)
                    fg_warn("drain deadline reached with %lu connection(s) open; closing them",
                            left);
                break;
            }
        }
    }
    fg_fleet_stop(); /* first: its last answers go to the admin thread */
    fg_admin_stop();
    fg_server_stop();
    fg_server_remove_pid_file();
    fg_notice("flashgate stopped");
    fg_config_unref(cfg);
    fg_config_set_ticket_keys(NULL);
    fg_tls_ticket_keys_unref(ticket_keys);
    return 0;
}
