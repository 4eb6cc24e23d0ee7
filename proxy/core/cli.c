/*
 * cli.c — the command-line prologue flashgate and flashgate-agent share: -c FILE, -t,
 * -T, -v and -h mean the same to both, and their usage reads the same.
 */
#include "core/core.h"

#include <getopt.h>
#include <stdio.h>

static void usage(const struct fg_cli *cli, const char *def_conf, FILE *out)
{
    fprintf(out, "usage: %s [-c FILE] [-t]%s [-v] [-h]\n", cli->prog,
            cli->dump_help != NULL ? " [-T]" : "");
    fprintf(out, "  -c FILE  configuration file (default %s)\n", def_conf);
    fprintf(out, "  -t       check the configuration and exit\n");
    if (cli->dump_help != NULL)
        fprintf(out, "  -T       %s\n", cli->dump_help);
    fprintf(out, "  -v       print the version and exit\n"
                 "  -h       this help\n");
    if (cli->signals != NULL)
        fprintf(out, "signals: %s\n", cli->signals);
}

int fg_cli_parse(struct fg_cli *cli, int argc, char **argv)
{
    const char *opts = cli->dump_help != NULL ? "c:tTvh" : "c:tvh";
    const char *def_conf = cli->conf_path;
    cli->test = cli->dump = false;
    optind = 1;
    int opt;
    while ((opt = getopt(argc, argv, opts)) != -1) {
        switch (opt) {
        case 'c':
            cli->conf_path = optarg;
            break;
        case 't':
            cli->test = true;
            break;
        case 'T':
            cli->test = cli->dump = true;
            break;
        case 'v':
            printf("%s %s\n", cli->prog, PACKAGE_VERSION);
            return 0;
        case 'h':
            usage(cli, def_conf, stdout);
            return 0;
        default:
            usage(cli, def_conf, stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(cli, def_conf, stderr);
        return 2;
    }
    return -1;
}
