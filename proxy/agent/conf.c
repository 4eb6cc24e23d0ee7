/*
 * conf.c — flashgate-agent's configuration file: one `directive value;` per line, `#`
 * starts a comment, unknown directives and bad values are refused as "file:line: message".
 * Every directive and its default is in flashgate-agent(8).
 */
#include "agent/agentd.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINE_MAX_LEN 4096
#define MAX_ARGS     4

static void defaults(struct fg_agentd_config *c)
{
    c->listen_path = strdup(FG_AGENTD_DEFAULT_LISTEN);
    c->spool_dir = strdup(FG_AGENTD_DEFAULT_SPOOL);
    c->spool_max_bytes = 1ull << 30;
    c->spool_max_age_ms = 0;
    c->spool_segment_size = 0;
    c->max_record = 1u << 20;
    c->commit_batch = 64;
    c->commit_delay_us = 500;
    c->dedup_window = 100000;
    c->replay_rate = 100;
    c->replay_concurrency = 4;
    c->replay_timeout_ms = 10000;
    c->replay_backoff_ms = 100;
    c->replay_backoff_max_ms = 10000;
    c->checkpoint_ms = 1000;
    c->sqs_concurrency = 4;
    c->sqs_batch_max = FG_SQS_BATCH_MAX;
    c->sqs_batch_bytes = FG_SQS_BATCH_BYTES;
    c->sqs_timeout_ms = 10000;
    c->sqs_backoff_ms = 100;
    c->sqs_backoff_max_ms = 20000;
    c->imds_endpoint = strdup(FG_AWS_IMDS_DEFAULT);
    c->imds_timeout_ms = 2000;
    c->visibility_timeout_s = 60;
    c->receive_wait_s = 20;
    c->status_enabled = true;
    c->log_level = FG_LOG_NOTICE;
}

void fg_agentd_config_free(struct fg_agentd_config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->listen_path);
    free(cfg->spool_dir);
    free(cfg->error_log);
    free(cfg->sqs_queue_url);
    free(cfg->sqs_endpoint);
    free(cfg->sqs_region);
    free(cfg->sqs_message_group);
    free(cfg->sqs_group_header);
    free(cfg->sqs_ca_file);
    free(cfg->imds_endpoint);
    free(cfg);
}

struct parse {
    const char *file;
    int line;
    FILE *errout;
    int errors;
    bool app_set, status_set;
    int sink_line, mode_line, backoff_line, sqs_backoff_line;
};

static void perr(struct parse *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void perr(struct parse *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(p->errout, "%s:%d: ", p->file, p->line);
    vfprintf(p->errout, fmt, ap);
    fputc('\n', p->errout);
    va_end(ap);
    p->errors++;
}

static bool set_str(char **dst, const char *v)
{
    char *s = strdup(v);
    if (s == NULL)
        return false;
    free(*dst);
    *dst = s;
    return true;
}

static bool uint_arg(struct parse *p, const char *d, const char *v, uint64_t min, uint64_t max,
                     uint64_t *out)
{
    if (!fg_parse_uint(v, max, out) || *out < min) {
        perr(p, "%s: '%s' is not a whole number from %llu to %llu", d, v, (unsigned long long)min,
             (unsigned long long)max);
        return false;
    }
    return true;
}

static bool size_arg(struct parse *p, const char *d, const char *v, uint64_t max, uint64_t *out)
{
    if (!fg_parse_size(v, out) || *out > max) {
        perr(p, "%s: '%s' is not a size (512, 64k, 8m, 1g) up to %llu bytes", d, v,
             (unsigned long long)max);
        return false;
    }
    return true;
}

static bool duration_arg(struct parse *p, const char *d, const char *v, uint64_t min, uint64_t *out)
{
    if (!fg_parse_duration_ms(v, out) || *out < min) {
        perr(p, "%s: '%s' is not a duration (500ms, 10s, 2m) of at least %llums", d, v,
             (unsigned long long)min);
        return false;
    }
    return true;
}

static void directive(struct parse *p, struct fg_agentd_config *c, char **av, int ac)
{
    const char *d = av[0], *v = ac > 1 ? av[1] : "";
    int want = strcmp(d, "error_log") == 0 ? -2 : 2; /* -2: one or two values */
    if ((want == 2 && ac != 2) || (want == -2 && (ac < 2 || ac > 3))) {
        perr(p, "%s: takes %s value", d, want == 2 ? "exactly one" : "one or two");
        return;
    }
    char err[160];
    if (strcmp(d, "listen") == 0) {
        if (v[0] != '/' || strlen(v) >= 108)
            perr(p, "listen: '%s' is not an absolute unix socket path under 108 bytes", v);
        else
            set_str(&c->listen_path, v);
    } else if (strcmp(d, "spool_dir") == 0) {
        if (v[0] != '/')
            perr(p, "spool_dir: '%s' is not an absolute path", v);
        else
            set_str(&c->spool_dir, v);
    } else if (strcmp(d, "spool_max_bytes") == 0) {
        size_arg(p, d, v, UINT64_MAX, &c->spool_max_bytes);
    } else if (strcmp(d, "spool_max_age") == 0) {
        duration_arg(p, d, v, 0, &c->spool_max_age_ms);
    } else if (strcmp(d, "spool_segment_size") == 0) {
        if (size_arg(p, d, v, FG_SPOOL_SEGMENT_SIZE_MAX, &c->spool_segment_size) &&
            c->spool_segment_size < 4096)
            perr(p, "spool_segment_size: at least 4k");
    } else if (strcmp(d, "max_record") == 0) {
        if (size_arg(p, d, v, FG_SPOOL_RECORD_MAX, &c->max_record) &&
            c->max_record < FG_AGENT_PROTO_RECORD_FIXED + 3)
            perr(p, "max_record: too small for any record");
    } else if (strcmp(d, "commit_batch") == 0) {
        uint_arg(p, d, v, 1, 1u << 20, &c->commit_batch);
    } else if (strcmp(d, "commit_delay_us") == 0) {
        uint_arg(p, d, v, 0, 10u * 1000 * 1000, &c->commit_delay_us);
    } else if (strcmp(d, "dedup_window") == 0) {
        uint_arg(p, d, v, 1, 1u << 24, &c->dedup_window);
    } else if (strcmp(d, "sink") == 0) {
        p->sink_line = p->line;
        if (strcmp(v, "local") == 0)
            c->sink = FG_AGENTD_SINK_LOCAL;
        else if (strcmp(v, "sqs") == 0)
            c->sink = FG_AGENTD_SINK_SQS;
        else
            perr(p, "sink: '%s' is neither `local` nor `sqs`", v);
    } else if (strcmp(d, "mode") == 0) {
        p->mode_line = p->line;
        if (strcmp(v, "forward") == 0)
            c->mode = FG_AGENTD_FORWARD;
        else if (strcmp(v, "drain") == 0)
            c->mode = FG_AGENTD_DRAIN;
        else
            perr(p, "mode: '%s' is neither `forward` nor `drain`", v);
    } else if (strcmp(d, "sqs_queue_url") == 0) {
        struct fg_url u;
        if (!fg_url_parse(v, &u, err, sizeof(err))) {
            perr(p, "sqs_queue_url: %s", err);
        } else if (strcmp(u.path, "/") == 0 || strchr(u.path, '?') != NULL) {
            perr(p,
                 "sqs_queue_url: '%s' has no queue path (https://sqs.REGION.amazonaws.com/"
                 "ACCOUNT/NAME)",
                 v);
        } else {
            size_t n = strlen(u.path);
            c->sqs_fifo = n > 5 && strcmp(u.path + n - 5, ".fifo") == 0;
            set_str(&c->sqs_queue_url, v);
        }
    } else if (strcmp(d, "sqs_endpoint") == 0 || strcmp(d, "imds_endpoint") == 0) {
        struct fg_url u;
        bool imds = d[0] == 'i';
        if (!fg_url_parse(v, &u, err, sizeof(err)))
            perr(p, "%s: %s", d, err);
        else if (!imds && !u.tls && !fg_url_is_loopback(&u))
            perr(p,
                 "sqs_endpoint: '%s': plain http only to a loopback address (tests); use "
                 "https",
                 v);
        else
            set_str(imds ? &c->imds_endpoint : &c->sqs_endpoint, v);
    } else if (strcmp(d, "sqs_region") == 0) {
        if (!fg_aws_region_valid(v, strlen(v)))
            perr(p, "sqs_region: '%s' is not a region name (us-east-1)", v);
        else
            set_str(&c->sqs_region, v);
    } else if (strcmp(d, "sqs_message_group") == 0) {
        bool hdr = strncmp(v, "header:", 7) == 0;
        const char *g = hdr ? v + 7 : v;
        size_t n = strlen(g);
        bool ok = n > 0 && n <= 128;
        for (size_t i = 0; ok && i < n; i++)
            ok = (unsigned char)g[i] > 0x20 && (unsigned char)g[i] < 0x7f &&
                 (!hdr || isalnum((unsigned char)g[i]) || strchr("!#$%&'*+-.^_`|~", g[i]));
        if (!ok)
            perr(p,
                 "sqs_message_group: '%s' is neither a group id (1 to 128 visible ASCII "
                 "characters) nor header:NAME",
                 v);
        else
            set_str(hdr ? &c->sqs_group_header : &c->sqs_message_group, g);
    } else if (strcmp(d, "sqs_ca_file") == 0) {
        if (v[0] != '/')
            perr(p, "sqs_ca_file: '%s' is not an absolute path", v);
        else
            set_str(&c->sqs_ca_file, v);
    } else if (strcmp(d, "sqs_concurrency") == 0) {
        uint_arg(p, d, v, 1, 64, &c->sqs_concurrency);
    } else if (strcmp(d, "sqs_batch_max") == 0) {
        uint_arg(p, d, v, 1, FG_SQS_BATCH_MAX, &c->sqs_batch_max);
    } else if (strcmp(d, "sqs_batch_bytes") == 0) {
        if (size_arg(p, d, v, FG_SQS_BATCH_BYTES_MAX, &c->sqs_batch_bytes) &&
            c->sqs_batch_bytes < 1024)
            perr(p, "sqs_batch_bytes: at least 1k");
    } else if (strcmp(d, "sqs_timeout") == 0) {
        duration_arg(p, d, v, 100, &c->sqs_timeout_ms);
    } else if (strcmp(d, "sqs_backoff") == 0) {
        p->sqs_backoff_line = p->line;
        duration_arg(p, d, v, 1, &c->sqs_backoff_ms);
    } else if (strcmp(d, "sqs_backoff_max") == 0) {
        p->sqs_backoff_line = p->line;
        duration_arg(p, d, v, 1, &c->sqs_backoff_max_ms);
    } else if (strcmp(d, "imds_timeout") == 0) {
        duration_arg(p, d, v, 10, &c->imds_timeout_ms);
    } else if (strcmp(d, "visibility_timeout") == 0) {
        uint64_t ms;
        if (duration_arg(p, d, v, 1000, &ms)) {
            if (ms > 12ull * 3600 * 1000 || ms % 1000 != 0)
                perr(p, "visibility_timeout: whole seconds from 1s to 12h");
            else
                c->visibility_timeout_s = ms / 1000;
        }
    } else if (strcmp(d, "receive_wait") == 0) {
        uint64_t ms;
        if (duration_arg(p, d, v, 0, &ms)) {
            if (ms > 20000 || ms % 1000 != 0)
                perr(p, "receive_wait: whole seconds from 0s to 20s");
            else
                c->receive_wait_s = ms / 1000;
        }
    } else if (strcmp(d, "app") == 0) {
        if (strncmp(v, "unix:", 5) == 0 || !fg_addr_parse(v, 80, &c->app, err, sizeof(err)))
            perr(p, "app: '%s' is not a host:port address%s%s", v, err[0] ? ": " : "", err);
        else
            p->app_set = true;
    } else if (strcmp(d, "replay_rate") == 0) {
        uint_arg(p, d, v, 0, 1000000, &c->replay_rate);
    } else if (strcmp(d, "replay_concurrency") == 0) {
        uint_arg(p, d, v, 1, 1024, &c->replay_concurrency);
    } else if (strcmp(d, "replay_timeout") == 0) {
        duration_arg(p, d, v, 1, &c->replay_timeout_ms);
    } else if (strcmp(d, "replay_backoff") == 0) {
        p->backoff_line = p->line;
        duration_arg(p, d, v, 1, &c->replay_backoff_ms);
    } else if (strcmp(d, "replay_backoff_max") == 0) {
        p->backoff_line = p->line;
        duration_arg(p, d, v, 1, &c->replay_backoff_max_ms);
    } else if (strcmp(d, "checkpoint_interval") == 0) {
        duration_arg(p, d, v, 10, &c->checkpoint_ms);
    } else if (strcmp(d, "status_listen") == 0) {
        if (strcmp(v, "off") == 0) {
            c->status_enabled = false;
        } else if (strncmp(v, "unix:", 5) == 0 ||
                   !fg_addr_parse(v, 9902, &c->status_addr, err, sizeof(err))) {
            perr(p, "status_listen: '%s' is not a host:port address or `off`", v);
        } else {
            c->status_enabled = true;
            p->status_set = true;
        }
    } else if (strcmp(d, "error_log") == 0) {
        if (strcmp(v, "stderr") == 0) {
            free(c->error_log);
            c->error_log = NULL;
        } else if (v[0] != '/') {
            perr(p, "error_log: '%s' is neither `stderr` nor an absolute path", v);
        } else {
            set_str(&c->error_log, v);
        }
        if (ac == 3 && !fg_log_level_parse(av[2], &c->log_level))
            perr(p, "error_log: '%s' is not a level (error, warn, notice, info, debug)", av[2]);
    } else {
        perr(p, "unknown directive '%s'", d);
    }
}

/* Split one line into words; false (with a message) when it is not `directive args;`. */
static int split(struct parse *p, char *line, char **av)
{
    char *hash = strchr(line, '#');
    if (hash != NULL)
        *hash = '\0';
    size_t n = strlen(line);
    while (n > 0 && isspace((unsigned char)line[n - 1]))
        line[--n] = '\0';
    char *s = line;
    while (isspace((unsigned char)*s))
        s++;
    if (*s == '\0')
        return 0;
    if (n == 0 || line[n - 1] != ';') {
        perr(p, "missing ';' at the end of the line");
        return -1;
    }
    line[n - 1] = '\0';
    int ac = 0;
    for (char *tok = strtok(s, " \t"); tok != NULL; tok = strtok(NULL, " \t")) {
        if (ac == MAX_ARGS) {
            perr(p, "too many values");
            return -1;
        }
        if (strchr(tok, ';') != NULL) {
            perr(p, "one directive per line");
            return -1;
        }
        av[ac++] = tok;
    }
    if (ac == 0) {
        perr(p, "a ';' without a directive");
        return -1;
    }
    return ac;
}

struct fg_agentd_config *fg_agentd_config_load(const char *path, FILE *errout)
{
    struct parse p = {.file = path, .errout = errout};
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(errout, "%s: cannot open: %s\n", path, strerror(errno));
        return NULL;
    }
    struct fg_agentd_config *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        fclose(f);
        return NULL;
    }
    defaults(c);
    char line[LINE_MAX_LEN + 2];
    while (fgets(line, sizeof(line), f) != NULL) {
        p.line++;
        size_t n = strlen(line);
        if (n > 0 && line[n - 1] != '\n' && !feof(f)) {
            perr(&p, "line longer than %d bytes", LINE_MAX_LEN);
            int ch;
            while ((ch = fgetc(f)) != EOF && ch != '\n')
                ;
            continue;
        }
        char *av[MAX_ARGS];
        int ac = split(&p, line, av);
        if (ac > 0)
            directive(&p, c, av, ac);
    }
    fclose(f);
    char err[160];
    if (!p.app_set && !fg_addr_parse("127.0.0.1:3000", 80, &c->app, err, sizeof(err)))
        p.errors++;
    if (!p.status_set && !fg_addr_parse("127.0.0.1:9902", 9902, &c->status_addr, err, sizeof(err)))
        p.errors++;
    if (c->replay_backoff_max_ms < c->replay_backoff_ms) {
        p.line = p.backoff_line;
        perr(&p, "replay_backoff_max (%llums) is below replay_backoff (%llums)",
             (unsigned long long)c->replay_backoff_max_ms,
             (unsigned long long)c->replay_backoff_ms);
    }
    if (c->sqs_backoff_max_ms < c->sqs_backoff_ms) {
        p.line = p.sqs_backoff_line;
        perr(&p, "sqs_backoff_max (%llums) is below sqs_backoff (%llums)",
             (unsigned long long)c->sqs_backoff_max_ms, (unsigned long long)c->sqs_backoff_ms);
    }
    if (c->sqs_queue_url == NULL && (c->sink == FG_AGENTD_SINK_SQS || c->mode == FG_AGENTD_DRAIN)) {
        p.line = c->mode == FG_AGENTD_DRAIN ? p.mode_line : p.sink_line;
        perr(&p, "%s needs sqs_queue_url", c->mode == FG_AGENTD_DRAIN ? "mode drain" : "sink sqs");
    }
    if (c->mode == FG_AGENTD_DRAIN && c->receive_wait_s * 1000 + 5000 > c->sqs_timeout_ms) {
        /* A long poll must end before the request times out. */
        c->sqs_timeout_ms = c->receive_wait_s * 1000 + 5000;
    }
    if (p.errors > 0 || c->listen_path == NULL || c->spool_dir == NULL) {
        fg_agentd_config_free(c);
        return NULL;
    }
    return c;
}
