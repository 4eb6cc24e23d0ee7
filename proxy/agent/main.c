/*
 * main.c — flashgate-agent's main(): the command line (core's shared prologue), the
 * configuration, the log, then the loop.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agentd.h"
#include "core/core.h"

int main(int argc, char **argv)
{
    struct fg_cli cli = {.prog = "flashgate-agent",
                         .conf_path = FG_AGENTD_DEFAULT_CONF,
                         .signals = "TERM or INT commit, checkpoint and exit; HUP reopen the log "
                                    "file"};
    int cli_rc = fg_cli_parse(&cli, argc, argv);
    if (cli_rc >= 0)
        return cli_rc;
    const char *path = cli.conf_path;
    bool test_only = cli.test;
    struct fg_config_errors errs = {0};
    struct fg_conf_agent *cfg = fg_config_load_agent(path, &errs);
    if (cfg == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        fprintf(stderr, "flashgate-agent: configuration %s has %zu error(s)\n", path, errs.n);
        fg_config_errors_free(&errs);
        return 1;
    }
    /* -t checks the paths too, without making anything: what would fail at start fails
     * here, with the directive's line. */
    bool paths_ok = fg_agentd_paths(cfg, !test_only, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    fg_config_errors_free(&errs);
    if (!paths_ok) {
        fprintf(stderr, "flashgate-agent: configuration %s: %s\n", path,
                test_only ? "its paths cannot work" : "cannot prepare its paths");
        fg_config_agent_free(cfg);
        return 1;
    }
    if (test_only) {
        fprintf(stderr, "flashgate-agent: configuration %s is ok\n", path);
        fg_config_agent_free(cfg);
        return 0;
    }
    if (!fg_log_open(cfg->error_log, cfg->log_level)) {
        fprintf(stderr, "flashgate-agent: cannot open error log %s: %s\n", cfg->error_log,
                strerror(errno));
        fg_config_agent_free(cfg);
        return 1;
    }
    int rc = fg_agentd_run(cfg, path);
    fg_config_agent_free(cfg);
    return rc;
}
