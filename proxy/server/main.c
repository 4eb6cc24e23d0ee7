/*
 * main.c — flashgate's command line and the main thread: load the config, start the
 * workers and the admin listener, then wait for signals (reload, drain, log reopen).
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin/admin.h"
#include "config/config.h"
#include "core/core.h"
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

static bool drop_privileges(const char *user)
{
    if (user == NULL || geteuid() != 0)
        return true;
    struct passwd *pw = getpwnam(user);
    if (pw == NULL) {
        fg_err("user '%s' does not exist; refusing to run as root", user);
        return false;
    }
    if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
        setuid(pw->pw_uid) != 0) {
        fg_err("cannot switch to user '%s': %s", user, strerror(errno));
        return false;
    }
    if (setuid(0) == 0) {
        fg_err("privileges could be regained after switching to '%s'; refusing to run", user);
        return false;
    }
    fg_notice("running as user %s (uid %d)", user, (int)pw->pw_uid);
    return true;
}

static bool write_pid_file(const char *path)
{
    if (path == NULL)
        return true;
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fg_err("cannot write pid file %s: %s", path, strerror(errno));
        return false;
    }
    fprintf(f, "%ld\n", (long)getpid());
    fclose(f);
    return true;
}

static const struct fg_admin_ops admin_ops = {
    .draining = fg_server_draining,
    .stats_json = fg_server_stats_json,
    .metrics = fg_server_metrics,
    .config = fg_server_config,
    .cache_purge = fg_server_cache_purge,
    .warm_target = fg_server_warm_target,
};

static struct fg_config *reload(struct fg_config *cur, const char *path)
{
    fg_notice("reloading configuration from %s", path);
    fg_sd_notify("RELOADING=1");
    struct fg_config_errors errs = {0};
    struct fg_config *next = fg_config_load(path, &errs);
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
    if (!fg_server_reload(next)) {
        fg_config_unref(next);
        fg_sd_notify("READY=1");
        return cur;
    }
    if (!fg_log_open(next->error_log, next->error_log_level))
        fg_err("cannot open error log %s: %s; keeping the previous one",
               next->error_log ? next->error_log : "stderr", strerror(errno));
    fg_notice("configuration generation %llu is running", (unsigned long long)next->generation);
    fg_config_unref(cur);
    fg_sd_notify("READY=1");
    return next;
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
    if (!fg_log_open(cfg->error_log, cfg->error_log_level)) {
        fprintf(stderr, "flashgate: cannot open error log %s: %s\n", cfg->error_log,
                strerror(errno));
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
    if (cfg->admin.enabled && !fg_admin_start(&cfg->admin.addr, &admin_ops))
        return 1;
    if (!write_pid_file(cfg->pid_file))
        return 1;
    if (!drop_privileges(cfg->user))
        return 1;
    /* Workers start only now: no request is ever served with root privileges. */
    if (!fg_server_run())
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
            fg_log_reopen();
            fg_server_reopen_logs();
            fg_notice("log files reopened");
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
    fg_admin_stop();
    fg_server_stop();
    if (cfg->pid_file != NULL)
        unlink(cfg->pid_file);
    fg_notice("flashgate stopped");
    fg_config_unref(cfg);
    fg_config_set_ticket_keys(NULL);
    fg_tls_ticket_keys_unref(ticket_keys);
    return 0;
}
