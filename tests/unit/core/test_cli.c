/* test_cli.c — the command-line prologue both daemons share: what each option sets, what
 * makes main() return at once, and -T only where the program offers it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"

static int parse(struct fg_cli *cli, bool dump, const char *a1, const char *a2, const char *a3)
{
    *cli = (struct fg_cli){.prog = "prog",
                           .conf_path = "/etc/default.conf",
                           .dump_help = dump ? "print it" : NULL,
                           .signals = "HUP reload"};
    char *argv[5] = {"prog", (char *)a1, (char *)a2, (char *)a3, NULL};
    int argc = 1 + (a1 != NULL) + (a1 != NULL && a2 != NULL) + (a1 && a2 && a3 != NULL);
    return fg_cli_parse(cli, argc, argv);
}

static void test_options(void **state)
{
    (void)state;
    struct fg_cli cli;
    assert_int_equal(parse(&cli, true, NULL, NULL, NULL), -1);
    assert_string_equal(cli.conf_path, "/etc/default.conf");
    assert_false(cli.test);
    assert_false(cli.dump);
    assert_int_equal(parse(&cli, false, "-c", "/tmp/x.conf", "-t"), -1);
    assert_string_equal(cli.conf_path, "/tmp/x.conf");
    assert_true(cli.test);
    assert_false(cli.dump);
    assert_int_equal(parse(&cli, true, "-T", NULL, NULL), -1);
    assert_true(cli.test);
    assert_true(cli.dump);
}

static void test_early_returns(void **state)
{
    (void)state;
    struct fg_cli cli;
    assert_int_equal(parse(&cli, true, "-v", NULL, NULL), 0);
    assert_int_equal(parse(&cli, true, "-h", NULL, NULL), 0);
    assert_int_equal(parse(&cli, false, "-T", NULL, NULL), 2); /* no -T here */
    assert_int_equal(parse(&cli, true, "-x", NULL, NULL), 2);
    assert_int_equal(parse(&cli, true, "-c", NULL, NULL), 2); /* -c needs a file */
    assert_int_equal(parse(&cli, true, "-t", "stray", NULL), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_early_returns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
