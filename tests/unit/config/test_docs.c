/*
 * test_docs.c — the man pages and the directive tables in step: every directive of
 * proxy/config/schema.c has an entry in the flashgate.conf(5) section of its context, and
 * every directive of proxy/config/agent.c one in the DIRECTIVES section of
 * flashgate-agent(8), with the table's syntax and default; and neither page documents a
 * directive the code lacks. flashgate.conf(5)'s EXAMPLES section is the shipped
 * conf/flashgate.conf without comments and blank lines, line for line.
 *
 * The pages are $srcdir/docs/flashgate.conf.5 and $srcdir/docs/flashgate-agent.8
 * (automake's test harness sets srcdir), or the paths given as the arguments.
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

/* A man page and the table it documents. */
struct section {
    const char *title; /* in the .SH line */
    unsigned ctx;
};
struct page {
    char path[4096];
    const struct fg_conf_schema *schema;
    const struct section *sections;
    size_t n_sections;
};

static const struct section conf5_sections[] = {
    {"MAIN CONTEXT", FG_CTX_MAIN},       {"ADMIN BLOCK", FG_CTX_ADMIN},
    {"UPSTREAM BLOCK", FG_CTX_UPSTREAM}, {"SERVER BLOCK", FG_CTX_SERVER},
    {"ROUTE BLOCK", FG_CTX_ROUTE},       {"CACHE BLOCK", FG_CTX_CACHE},
    {"LIMIT BLOCK", FG_CTX_LIMIT},       {"OFFLOAD BLOCK", FG_CTX_OFFLOAD},
    {"REDIS BLOCK", FG_CTX_REDIS},       {"EMF BLOCK", FG_CTX_EMF},
    {"FLEET BLOCK", FG_CTX_FLEET},       {"WAITING ROOM BLOCK", FG_CTX_WAITROOM}};
static const struct section agent8_sections[] = {{"DIRECTIVES", FG_CTX_AGENT}};

static struct page conf5 = {.schema = &fg_conf_flashgate,
                            .sections = conf5_sections,
                            .n_sections = sizeof(conf5_sections) / sizeof(conf5_sections[0])};
static struct page agent8 = {.schema = &fg_conf_agent,
                             .sections = agent8_sections,
                             .n_sections = sizeof(agent8_sections) / sizeof(agent8_sections[0])};

/* The page the tests of the group being run look at, and its entries. */
static const struct page *page;
static const char *page_path;
static struct entry entries[MAX_ENTRIES];
static size_t n_entries;
static char conf_path[4096];

#define MAX_EXAMPLE_LINES 512
static char *example[MAX_EXAMPLE_LINES]; /* the EXAMPLES block of the page, unescaped */
static size_t n_example;

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
    for (size_t i = 0; i < page->n_sections; i++)
        if (strstr(line, page->sections[i].title) != NULL)
            return page->sections[i].ctx;
    return 0;
}

/* The lines between .nf and .fi of the EXAMPLES section. */
static void keep_example_line(const char *line, bool *in_section, bool *in_block)
{
    if (strncmp(line, ".SH", 3) == 0) {
        *in_section = strstr(line, "EXAMPLES") != NULL;
        *in_block = false;
        return;
    }
    if (!*in_section)
        return;
    if (strcmp(line, ".nf") == 0) {
        *in_block = true;
    } else if (strcmp(line, ".fi") == 0) {
        *in_block = false;
    } else if (*in_block && n_example < MAX_EXAMPLE_LINES) {
        char text[1024];
        unescape(line, text, sizeof(text));
        example[n_example++] = strdup(text);
    }
}

/* Group setup: read the entries (and the EXAMPLES block) of the page given as the
 * group's state. */
static int read_page(void **state)
{
    page = *state;
    page_path = page->path;
    n_entries = 0;
    memset(entries, 0, sizeof(entries));
    for (size_t i = 0; i < n_example; i++)
        free(example[i]);
    n_example = 0;
    FILE *f = fopen(page_path, "r");
    if (f == NULL) {
        print_error("cannot open %s\n", page_path);
        return -1;
    }
    char line[1024], prev[1024] = "";
    unsigned ctx = 0;
    struct entry *cur = NULL;
    int after_heading = 0;
    bool in_examples = false, in_block = false;
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        keep_example_line(line, &in_examples, &in_block);
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

static int read_page_conf5(void **state)
{
    *state = &conf5;
    return read_page(state);
}

static int read_page_agent8(void **state)
{
    *state = &agent8;
    return read_page(state);
}

static void test_every_directive_documented(void **state)
{
    (void)state;
    const struct fg_conf_schema *sc = page->schema;
    assert_true(n_entries >= sc->n_dirs);
    size_t missing = 0;
    for (size_t i = 0; i < sc->n_dirs; i++) {
        const struct fg_conf_directive *d = &sc->dirs[i];
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
    const struct fg_conf_schema *sc = page->schema;
    for (size_t i = 0; i < sc->n_dirs; i++) {
        const struct fg_conf_directive *d = &sc->dirs[i];
        assert_true(d->ctx != 0 && (d->ctx & (d->ctx - 1)) == 0);
        assert_ptr_equal(fg_conf_directive_find(sc, d->name, d->ctx), d);
        assert_non_null(d->handler);
        assert_non_null(d->syntax);
        assert_non_null(d->def);
        assert_true(d->doc != NULL && d->doc[0] != '\0');
    }
}

/* flashgate.conf(5) EXAMPLES says it is the shipped file without comments and blank
 * lines: it is, line for line (indentation included). */
static void test_example_is_the_shipped_file(void **state)
{
    (void)state;
    FILE *f = fopen(conf_path, "r");
    if (f == NULL)
        fail_msg("cannot open %s", conf_path);
    char line[1024];
    size_t i = 0, bad = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "#\n")] = '\0'; /* no '#' inside a value of the shipped file */
        size_t n = strlen(line);
        while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t'))
            line[--n] = '\0';
        if (n == 0)
            continue;
        if (i >= n_example) {
            print_error("%s: EXAMPLES ends before '%s' of %s\n", page_path, line, conf_path);
            bad++;
        } else if (strcmp(example[i], line) != 0) {
            print_error("%s: EXAMPLES line %zu is '%s', %s has '%s'\n", page_path, i + 1,
                        example[i], conf_path, line);
            bad++;
        }
        i++;
    }
    fclose(f);
    if (i < n_example) {
        print_error("%s: EXAMPLES has %zu lines more than %s\n", page_path, n_example - i,
                    conf_path);
        bad++;
    }
    assert_true(n_example > 0);
    assert_int_equal(bad, 0);
}

static void page_path_set(struct page *p, int argc, char **argv, int arg, const char *file)
{
    const char *srcdir = getenv("srcdir");
    if (argc > arg)
        snprintf(p->path, sizeof(p->path), "%s", argv[arg]);
    else
        snprintf(p->path, sizeof(p->path), "%s/docs/%s", srcdir ? srcdir : ".", file);
}

int main(int argc, char **argv)
{
    page_path_set(&conf5, argc, argv, 1, "flashgate.conf.5");
    page_path_set(&agent8, argc, argv, 2, "flashgate-agent.8");
    const char *srcdir = getenv("srcdir");
    snprintf(conf_path, sizeof(conf_path), "%s/conf/flashgate.conf", srcdir ? srcdir : ".");
    const struct CMUnitTest conf5_tests[] = {
        cmocka_unit_test(test_table_sane),
        cmocka_unit_test(test_every_directive_documented),
        cmocka_unit_test(test_no_stale_entries),
        cmocka_unit_test(test_example_is_the_shipped_file),
    };
    const struct CMUnitTest agent8_tests[] = {
        cmocka_unit_test(test_table_sane),
        cmocka_unit_test(test_every_directive_documented),
        cmocka_unit_test(test_no_stale_entries),
    };
    int failed =
        cmocka_run_group_tests_name("flashgate.conf(5)", conf5_tests, read_page_conf5, NULL);
    failed +=
        cmocka_run_group_tests_name("flashgate-agent(8)", agent8_tests, read_page_agent8, NULL);
    return failed;
}
