/*
 * replay.c — runs every fuzz target over every file under <dir>/corpus and
 * <dir>/regressions (the seed corpora and the crashers kept from fuzzing), so an input
 * that once crashed stays a regression test. Built with the normal compiler for
 * `make check` (with ASan and UBSan under --enable-sanitizers); a broken invariant aborts.
 *
 * usage: replay DIR   (DIR is tests/fuzz in the source tree)
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path, long *count)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        return 1;
    }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    size_t got;
    while (buf != NULL && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap *= 2);
            if (nb == NULL)
                free(buf);
            buf = nb;
        }
    }
    fclose(f);
    if (buf == NULL) {
        fprintf(stderr, "replay: out of memory on %s\n", path);
        return 1;
    }
    /* every target sees every input: a request crasher is also a fine response input */
    fg_fuzz_request(buf, n);
    fg_fuzz_response(buf, n);
    fg_fuzz_chunked(buf, n);
    free(buf);
    (*count)++;
    return 0;
}

static int run_dir(const char *dir, long *count)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "replay: cannot open %s\n", dir);
        return 1;
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') /* ".", "..", ".gitkeep" */
            continue;
        char path[4096];
        if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= sizeof(path))
            continue;
        struct stat st;
        if (stat(path, &st) != 0)
            continue;
        rc |= S_ISDIR(st.st_mode) ? run_dir(path, count) : run_file(path, count);
    }
    closedir(d);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR (containing corpus/ and regressions/)\n", argv[0]);
        return 2;
    }
    long corpus = 0, regressions = 0;
    char path[4096];
    snprintf(path, sizeof(path), "%s/corpus", argv[1]);
    int rc = run_dir(path, &corpus);
    snprintf(path, sizeof(path), "%s/regressions", argv[1]);
    rc |= run_dir(path, &regressions);
    printf("replay: %ld corpus inputs and %ld kept crashers ran clean through 3 targets\n", corpus,
           regressions);
    if (corpus == 0) {
        fprintf(stderr, "replay: no corpus found under %s\n", argv[1]);
        return 1;
    }
    return rc;
}
