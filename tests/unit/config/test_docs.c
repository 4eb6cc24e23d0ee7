/*
 * test_docs.c — flashgate.conf(5) and the directive table in step: every directive of
 * proxy/config/schema.c has an entry in the man page section of its context, with the
 * table's syntax and default, and the page documents no directive the code lacks.
 *
 * The page is $srcdir/docs/flashgate.conf.5 (automake's test harness sets srcdir), or the
 * path given as the first argument.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config/internal.h"

#define MAX_ENTRIES 192

struct entry {
    unsigned ctx;
    char heading[256]; /* "keepalive_timeout duration;" with the font escapes removed */
    char def[256];     /* "Default: 75s." likewise, or "" */
    bool used;
};

static struct entry entries[MAX_ENTRIES];
static size_t n_entries;
static const char *page_path;

/* Drop \fB \fI \fR \fP, turn \- into -, \e into \ and \(mu into x. */
static void unescape(const char *in, char *out, size_t outlen)
{
    size_t o = 0;
    for (const char *p = in; *p != '\0' && o + 1 < outlen; p++) {
        if (p[0] == '\\' && p[1] == 'f' && p[2] != '\0') {
            p += 2;
            continue;
        }
        if (p[0] == '\\' && p[1] == '-') {
            out[o++] = '-';
            p++;
            continue;
        }
        if (p[0] == '\\' && p[1] == 'e') {
            out[o++] = '\\';
            p++;
            continue;
        }
        if (p[0] == '\\' && p[1] == '&') {
            p++;
            continue;
        }
        out[o++] = *p;
    }
    out[o] = '\0';
}

static unsigned section_ctx(const char *line)
{
    static const struct {
        const char *title;
        unsigned ctx;
    } map[] = {{"MAIN CONTEXT", FG_CTX_MAIN},       {"ADMIN BLOCK", FG_CTX_ADMIN},
               {"UPSTREAM BLOCK", FG_CTX_UPSTREAM}, {"SERVER BLOCK", FG_CTX_SERVER},
               {"ROUTE BLOCK", FG_CTX_ROUTE},       {"CACHE BLOCK", FG_CTX_CACHE},
               {"LIMIT BLOCK", FG_CTX_LIMIT},       {"OFFLOAD BLOCK", FG_CTX_OFFLOAD},
               {"REDIS BLOCK", FG_CTX_REDIS}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strstr(line, map[i].title) != NULL)
            return map[i].ctx;
    return 0;
}

static int read_page(void **state)
{
    (void)state;
    FILE *f = fopen(page_path, "r");
    if (f == NULL) {
        print_error("cannot open %s\n", page_path);
        return -1;
    }
    char line[1024], prev[1024] = "";
    unsigned ctx = 0;
    struct entry *cur = NULL;
    int after_heading = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, ".SH", 3) == 0) {
            ctx = section_ctx(line);
            cur = NULL;
        } else if (ctx != 0 && strcmp(prev, ".TP") == 0 && strncmp(line, "\\fB", 3) == 0) {
            if (n_entries == MAX_ENTRIES)
                break;
            cur = &entries[n_entries++];
            cur->ctx = ctx;
            unescape(line, cur->heading, sizeof(cur->heading));
            after_heading = 1;
        } else if (cur != NULL && after_heading == 1) {
            unescape(line, cur->def, sizeof(cur->def));
            after_heading = 0;
        }
        snprintf(prev, sizeof(prev), "%s", line);
    }
    fclose(f);
    return 0;
}

static void test_every_directive_documented(void **state)
{
    (void)state;
    assert_true(n_entries >= fg_conf_n_directives);
    size_t missing = 0;
    for (size_t i = 0; i < fg_conf_n_directives; i++) {
        const struct fg_conf_directive *d = &fg_conf_directives[i];
        char want[512], want_def[512];
        bool block = strchr(d->syntax, '{') != NULL;
        snprintf(want, sizeof(want), "%s %s%s", d->name, d->syntax, block ? "" : ";");
        snprintf(want_def, sizeof(want_def), "Default: %s.", d->def);
        const struct entry *found = NULL;
        for (size_t j = 0; j < n_entries; j++) {
            size_t nl = strlen(d->name);
            if ((entries[j].ctx & d->ctx) && strncmp(entries[j].heading, d->name, nl) == 0 &&
                entries[j].heading[nl] == ' ') {
                found = &entries[j];
                entries[j].used = true;
                break;
            }
        }
        if (found == NULL) {
            print_error("%s: '%s' (%s) has no entry in section %s\n", page_path, d->name,
                        fg_conf_ctx_name(d->ctx), fg_conf_ctx_name(d->ctx));
            missing++;
            continue;
        }
        if (strcmp(found->heading, want) != 0) {
            print_error("%s: '%s' (%s): heading '%s', the table says '%s'\n", page_path, d->name,
                        fg_conf_ctx_name(d->ctx), found->heading, want);
            missing++;
        }
        if (strcmp(found->def, want_def) != 0) {
            print_error("%s: '%s' (%s): '%s', the table says '%s'\n", page_path, d->name,
                        fg_conf_ctx_name(d->ctx), found->def, want_def);
            missing++;
        }
    }
    assert_int_equal(missing, 0);
}

static void test_no_stale_entries(void **state)
{
    (void)state;
    size_t stale = 0;
    for (size_t j = 0; j < n_entries; j++) {
        if (!entries[j].used) {
            print_error("%s: '%s' in section %s is not a directive of that context\n", page_path,
                        entries[j].heading, fg_conf_ctx_name(entries[j].ctx));
            stale++;
        }
    }
    assert_int_equal(stale, 0);
}

/* The table itself: one context per entry, names unique per context, defaults present. */
static void test_table_sane(void **state)
{
    (void)state;
    for (size_t i = 0; i < fg_conf_n_directives; i++) {
        const struct fg_conf_directive *d = &fg_conf_directives[i];
        assert_true(d->ctx != 0 && (d->ctx & (d->ctx - 1)) == 0);
        assert_ptr_equal(fg_conf_directive_find(d->name, d->ctx), d);
        assert_non_null(d->handler);
        assert_non_null(d->syntax);
        assert_non_null(d->def);
        assert_true(d->doc != NULL && d->doc[0] != '\0');
    }
}

int main(int argc, char **argv)
{
    static char path[4096];
    if (argc > 1) {
        page_path = argv[1];
    } else {
        const char *srcdir = getenv("srcdir");
        snprintf(path, sizeof(path), "%s/docs/flashgate.conf.5", srcdir ? srcdir : ".");
        page_path = path;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_sane),
        cmocka_unit_test(test_every_directive_documented),
        cmocka_unit_test(test_no_stale_entries),
    };
    return cmocka_run_group_tests(tests, read_page, NULL);
}
