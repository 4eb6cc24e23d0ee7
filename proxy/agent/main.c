/*
 * main.c — flashgate-agent's command line: read the configuration, open the log, run.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agentd.h"
#include "core/core.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: flashgate-agent [-c FILE] [-t] [-v] [-h]\n"
            "  -c FILE  configuration file (default %s)\n"
            "  -t       check the configuration and exit\n"
            "  -v       print the version and exit\n"
            "  -h       this help\n"
            "signals: TERM or INT commit, checkpoint and exit; HUP reopen the log file\n",
            FG_AGENTD_DEFAULT_CONF);
}

int main(int argc, char **argv)
{
    const char *path = FG_AGENTD_DEFAULT_CONF;
    bool test_only = false;
    int opt;
    while ((opt = getopt(argc, argv, "c:tvh")) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            test_only = true;
            break;
        case 'v':
            printf("flashgate-agent %s\n", PACKAGE_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    struct fg_config_errors errs = {0};
    struct fg_conf_agent *cfg = fg_config_load_agent(path, &errs);
    if (cfg == NULL) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        fprintf(stderr, "flashgate-agent: configuration %s has %zu error(s)\n", path, errs.n);
        fg_config_errors_free(&errs);
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
