/* test_spool.c — the agent's durable spool on real files: the frame format, append,
 * group commit and reopen, crashes (a copied directory, a SIGKILLed writer), recovery
 * from a segment truncated at every offset and from one byte flipped at every offset,
 * checkpoints and segment deletion, the limits, rollover and sequence numbers across
 * restarts, a failing write (RLIMIT_FSIZE stands in for a full disk) and the iterator.
 * Each test runs in its own mkdtemp directory, removed afterwards. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <zlib.h>
#include <zlib.h>

#include "agent/agent.h"
#include "core/core.h"

#define HDR     FG_SPOOL_HEADER_SIZE
#define SEG1    "00000000000000000001.seg"
#define T0      1700000000000LL /* the wall clock, in ms, the tests append at */
#define MAXPATH 512

/* ---- environment --------------------------------------------------------------------- */

struct env {
    char root[MAXPATH]; /* the test's own temporary directory */
    char dir[MAXPATH];  /* the spool in it */
};

/* out = a/b; paths here are short, but say so rather than truncate silently. */
static void join(char *out, size_t cap, const char *a, const char *b)
{
    int n = snprintf(out, cap, "%s/%s", a, b);
    assert_true(n > 0 && (size_t)n < cap);
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    snprintf(e->root, sizeof(e->root), "/tmp/fg-spool-XXXXXX");
    assert_non_null(mkdtemp(e->root));
    join(e->dir, sizeof(e->dir), e->root, "spool");
    /* Recovery warns on purpose in most tests here; the log test turns warnings on. */
    fg_log_set_level(FG_LOG_ERROR);
    *state = e;
    return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int teardown(void **state)
{
    struct env *e = *state;
    rm_rf(e->root);
    free(e);
    return 0;
}

/* ---- files --------------------------------------------------------------------------- */

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    uint8_t *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void spit(const char *path, const void *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (len > 0)
        assert_int_equal(fwrite(b, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static bool exists(const char *dir, const char *name)
{
    char p[MAXPATH];
    join(p, sizeof(p), dir, name);
    return access(p, F_OK) == 0;
}

static off_t file_size(const char *dir, const char *name)
{
    char p[MAXPATH];
    join(p, sizeof(p), dir, name);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    return st.st_size;
}

/* What a crash leaves: the files as they are now, read by a fresh process. */
static void copy_dir(const char *src, const char *dst)
{
    assert_int_equal(mkdir(dst, 0750), 0);
    DIR *d = opendir(src);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char a[MAXPATH], b[MAXPATH];
        join(a, sizeof(a), src, de->d_name);
        join(b, sizeof(b), dst, de->d_name);
        size_t len;
        uint8_t *buf = slurp(a, &len);
        spit(b, buf, len);
        free(buf);
    }
    closedir(d);
}

/* The segment ids in dir, sorted; returns how many. */
static size_t list_segs(const char *dir, uint64_t *ids, size_t cap)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l != 24 || strcmp(de->d_name + 20, ".seg") != 0)
            continue;
        assert_true(n < cap);
        ids[n++] = strtoull(de->d_name, NULL, 10);
    }
    closedir(d);
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && ids[j - 1] > ids[j]; j--) {
            uint64_t t = ids[j];
            ids[j] = ids[j - 1];
            ids[j - 1] = t;
        }
    return n;
}

static void seg_path(char *out, size_t cap, const char *dir, uint64_t id)
{
    int n = snprintf(out, cap, "%s/%020llu.seg", dir, (unsigned long long)id);
    assert_true(n > 0 && (size_t)n < cap);
}

/* ---- records ------------------------------------------------------------------------- */

/* Payload sizes cycle through these: empty, tiny, odd, and one over 64 bytes. */
static const size_t LENS[] = {0, 1, 17, 40, 3, 100, 9, 60};

/* The payload of record seq: its length from LENS, lower-case letters that depend on seq
 * (never the frame magic "FGSP", so a resync scan finds only real frames). */
static size_t gen(uint64_t seq, char *buf)
{
    size_t len = LENS[(seq - 1) % FG_ARRAY_LEN(LENS)];
    for (size_t k = 0; k < len; k++)
        buf[k] = (char)('a' + (seq * 7 + k) % 26);
    return len;
}

static struct fg_spool *open_spool(const char *dir, const struct fg_spool_config *cfg)
{
    struct fg_spool *sp = NULL;
    char err[256];
    enum fg_spool_status rc = fg_spool_open(dir, cfg, &sp, err, sizeof(err));
    if (rc != FG_SPOOL_OK)
        fail_msg("open %s: %s (%s)", dir, fg_spool_status_name(rc), err);
    return sp;
}

static struct fg_spool_stats stats_at(const struct fg_spool *sp, int64_t now_ms)
{
    struct fg_spool_stats st;
    fg_spool_get_stats(sp, now_ms, &st);
    return st;
}

static struct fg_spool_stats stats(const struct fg_spool *sp)
{
    return stats_at(sp, T0);
}

/* Append record `want` (its generated payload) and check it got that sequence. */
static void append_seq(struct fg_spool *sp, uint64_t want, int64_t now_ms)
{
    char buf[128];
    size_t len = gen(want, buf);
    uint64_t seq = 0;
    assert_int_equal(fg_spool_append(sp, buf, len, now_ms, &seq), FG_SPOOL_OK);
    assert_int_equal(seq, want);
}

static void commit_ok(struct fg_spool *sp, uint64_t want_durable)
{
    uint64_t durable = 0;
    assert_int_equal(fg_spool_commit(sp, &durable), FG_SPOOL_OK);
    assert_int_equal(durable, want_durable);
}

/* Append and commit records first..last, one commit for all. */
static void add_range(struct fg_spool *sp, uint64_t first, uint64_t last)
{
    for (uint64_t s = first; s <= last; s++)
        append_seq(sp, s, T0);
    commit_ok(sp, last);
}

/* A new iterator returns exactly seqs[0..n), each with its generated payload. */
static void expect_seqs(struct fg_spool *sp, const uint64_t *seqs, size_t n)
{
    struct fg_spool_iter *it = fg_spool_iter_new(sp);
    assert_non_null(it);
    struct fg_spool_record r;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(fg_spool_iter_next(it, &r), FG_SPOOL_OK);
        assert_int_equal(r.seq, seqs[i]);
        char buf[128];
        size_t len = gen(seqs[i], buf);
        assert_int_equal(r.len, len);
        if (len > 0)
            assert_memory_equal(r.data, buf, len);
    }
    assert_int_equal(fg_spool_iter_next(it, &r), FG_SPOOL_END);
    fg_spool_iter_free(it);
}

static void expect_range(struct fg_spool *sp, uint64_t first, uint64_t last)
{
    uint64_t seqs[256];
    size_t n = 0;
    for (uint64_t s = first; s <= last; s++) {
        assert_true(n < FG_ARRAY_LEN(seqs));
        seqs[n++] = s;
    }
    expect_seqs(sp, seqs, n);
}

static uint64_t ms_since(const struct timespec *a)
{
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (uint64_t)((b.tv_sec - a->tv_sec) * 1000 + (b.tv_nsec - a->tv_nsec) / 1000000);
}

/* ---- format, append, commit, reopen -------------------------------------------------- */

static void test_frame_format_on_disk(void **state)
{
    struct env *e = *state;
    struct fg_spool *sp = open_spool(e->dir, NULL);
    uint64_t seq;
    assert_int_equal(fg_spool_append(sp, "hello", 5, T0 + 42, &seq), FG_SPOOL_OK);
    assert_int_equal(seq, 1);
    commit_ok(sp, 1);
    fg_spool_close(sp);

    char p[MAXPATH];
    seg_path(p, sizeof(p), e->dir, 1);
    size_t len;
    uint8_t *b = slurp(p, &len);
    assert_int_equal(len, HDR + 5);
    assert_memory_equal(b, "FGSP", 4);                    /* magic 0x50534746 LE */
    assert_memory_equal(b + 4, "\x05\0\0\0", 4);          /* length */
    assert_memory_equal(b + 12, "\x01\0\0\0\0\0\0\0", 8); /* sequence */
    int64_t t = 0;
    for (int i = 7; i >= 0; i--)
        t = t << 8 | b[20 + i];
    assert_int_equal(t, T0 + 42); /* append time */
    assert_memory_equal(b + HDR, "hello", 5);
    uLong c = crc32(0L, Z_NULL, 0);
    c = crc32(c, b + 4, 4);
    c = crc32(c, b + 12, HDR - 12 + 5);
    uint32_t stored =
        (uint32_t)b[8] | (uint32_t)b[9] << 8 | (uint32_t)b[10] << 16 | (uint32_t)b[11] << 24;
    assert_int_equal(stored, (uint32_t)c);
    free(b);
}

static void test_append_commit_reopen_same_records(void **state)
{
    struct env *e = *state;
    struct fg_spool *sp = open_spool(e->dir, NULL);
    add_range(sp, 1, 20);
    expect_range(sp, 1, 20);
    fg_spool_close(sp);

    sp = open_spool(e->dir, NULL);
    expect_range(sp, 1, 20);
    struct fg_spool_stats st = stats(sp);
    assert_int_equal(st.pending_records, 20);
    assert_int_equal(st.committed_seq, 20);
    assert_int_equal(st.next_seq, 21);
    assert_int_equal(st.corrupt_skipped, 0);
    append_seq(sp, 21, T0);
    commit_ok(sp, 21);
    fg_spool_close(sp);

    sp = open_spool(e->dir, NULL);
    expect_range(sp, 1, 21);
    fg_spool_close(sp);
}

static void test_uncommitted_records_are_not_read(void **state)
{
    struct env *e = *state;
    struct fg_spool *sp = open_spool(e->dir, NULL);
    struct fg_spool_iter *it = fg_spool_iter_new(sp);
    struct fg_spool_record r;
    append_seq(sp, 1, T0);
    append_seq(sp, 2, T0);
    assert_int_equal(fg_spool_uncommitted(sp), 2);
    assert_int_equal(fg_spool_iter_next(it, &r), FG_SPOOL_END);
    assert_int_equal(fg_spool_ack(sp, 1), FG_SPOOL_E_INVAL); /* nothing committed yet */
    commit_ok(sp, 2);
    assert_int_equal(fg_spool_uncommitted(sp), 0);
    /* The same iterator picks them up once they are durable. */
    for (uint64_t s = 1; s <= 2; s++) {
        assert_int_equal(fg_spool_iter_next(it, &r), FG_SPOOL_OK);
        assert_int_equal(r.seq, s);
    }
    assert_int_equal(fg_spool_iter_next(it, &r), FG_SPOOL_END);
    assert_int_equal(stats(sp).read_corrupt, 0);
    fg_spool_iter_free(it);
    fg_spool_close(sp);
}

static void test_appendv_joins_pieces(void **state)
{
    struct env *e = *state;
    struct fg_spool *sp = open_spool(e->dir, NULL);
    struct iovec iov[3] = {{(void *)"POST ", 5}, {(void *)"", 0}, {(void *)"/api/orders", 11}};
    uint64_t seq;
    assert_int_equal(fg_spool_appendv(sp, iov, 3, T0, &seq), FG_SPOOL_OK);
    commit_ok(sp, seq);
    fg_spool_close(sp);
    sp = open_spool(e->dir, NULL);
    struct fg_spool_iter *it = fg_spool_iter_new(sp);
    struct fg_spool_record r;
    assert_int_equal(fg_spool_iter_next(it, &r), FG_SPOOL_OK);
    assert_int_equal(r.len, 16);
    assert_memory_equal(r.data, "POST /api/orders", 16);
    assert_int_equal(r.time_ms, T0);
    fg_spool_iter_free(it);
    fg_spool_close(sp);
}

static void test_group_commit_one_fsync_for_many_records(void **state)
{
    struct env *e = *state;
    struct fg_spool *sp = open_spool(e->dir, NULL);
    add_range(sp, 1, 1); /* creates the segment: its data and its directory entry */
    struct fg_spool_stats a = stats(sp);
    assert_int_equal(a.commits, 1);

    for (uint64_t s = 2; s <= 51; s++)
        append_seq(sp, s, T0);
    assert_int_equal(fg_spool_uncommitted(sp), 50);
    assert_int_equal(stats(sp).fsyncs, a.fsyncs); /* appends never sync */
    commit_ok(sp, 51);
    struct fg_spool_stats b = stats(sp);
    assert_int_equal(b.fsyncs - a.fsyncs, 1);
    assert_int_equal(b.commits - a.commits, 1);
    assert_int_equal(b.committed - a.committed, 50);
    assert_int_equal(b.appended, 51);

    commit_ok(sp, 51); /* nothing to commit: no sync */
    assert_int_equal(stats(sp).fsyncs, b.fsyncs);
    fg_spool_close(sp);
}

/* ---- crashes ------------------------------------------------------------------------- */

static void test_crash_keeps_every_committed_record(void **state)
{
    struct env *e = *state;
    struct fg_spool *sp = open_spool(e->dir, NULL);
    add_range(sp, 1, 10);
    for (uint64_t s = 11; s <= 15; s++)
        append_seq(sp, s, T0); /* never committed */

    char snap[MAXPATH];
    join(snap, sizeof(snap), e->root, "snap");
    copy_dir(e->dir, snap);
    fg_spool_close(sp);

    /* Make it worse: a commit cut short left half a frame at the end. */
    char p[MAXPATH];
    seg_path(p, sizeof(p), snap, 1);
    size_t len;
    uint8_t *b = slurp(p, &len);
    char buf[128];
    size_t rec3 = 2 * HDR + gen(1, buf) + gen(2, buf); /* record 3: 17 payload bytes */
    uint8_t *torn = malloc(len + HDR + 10);
    assert_non_null(torn);
    memcpy(torn, b, len);
    memcpy(torn + len, b + rec3, HDR + 10); /* a header claiming more bytes than follow */
    spit(p, torn, len + HDR + 10);

    sp = open_spool(snap, NULL);
    expect_range(sp, 1, 10);
    struct fg_spool_stats st = stats(sp);
    assert_int_equal(st.tails_truncated, 1);
    assert_int_equal(st.next_seq, 11);
    assert_int_equal(file_size(snap, SEG1), (off_t)len);
    fg_spool_close(sp);
    free(b);
    free(torn);
}

/* A writer killed with SIGKILL at a random point of a burst: every record whose commit
 * it reported is there, intact, with nothing missing before it. */
static void test_sigkill_mid_burst_loses_no_committed_record(void **state)
{
    struct env *e = *state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        struct fg_spool *sp;
        char err[256];
        if (fg_spool_open(e->dir, NULL, &sp, err, sizeof(err)) != FG_SPOOL_OK)
            _exit(2);
        for (uint64_t next = 1;; next += 4) {
            for (uint64_t s = next; s < next + 4; s++) {
                char buf[128];
                size_t len = gen(s, buf);
                uint64_t seq;
                if (fg_spool_append(sp, buf, len, T0, &seq) != FG_SPOOL_OK || seq != s)
                    _exit(3);
            }
            uint64_t durable;
            if (fg_spool_commit(sp, &durable) != FG_SPOOL_OK ||
                write(fds[1], &durable, sizeof(durable)) != sizeof(durable))
                _exit(4);
        }
    }
    close(fds[1]);
    uint64_t durable = 0, v;
    for (int got = 0; got < 40 && read(fds[0], &v, sizeof(v)) == sizeof(v); got++)
        durable = v;
    assert_int_equal(kill(pid, SIGKILL), 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    while (read(fds[0], &v, sizeof(v)) == sizeof(v))
        durable = v;
    close(fds[0]);
    assert_true(durable >= 160);

    struct fg_spool *sp = open_spool(e->dir, NULL);
    uint64_t highest = stats(sp).committed_seq;
    assert_true(highest >= durable);
    expect_range(sp, 1, highest);
    fg_spool_close(sp);
}

static void test_second_open_is_locked_out(void **state)
{
    struct env *e = *state;
    struct fg_spool *sp = open_spool(e->dir, NULL);
    struct fg_spool *other = NULL;
    char err[256];
    assert_int_equal(fg_spool_open(e->dir, NULL, &other, err, sizeof(err)), FG_SPOOL_E_LOCKED);
    assert_null(other);
    assert_non_null(strstr(err, "lock"));
    fg_spool_close(sp);
    sp = open_spool(e->dir, NULL);
    fg_spool_close(sp);
}

/* ---- recovery at every offset -------------------------------------------------------- */

#define NREC 6

/* A segment of records 1..NREC written by the spool; its bytes and record ends. */
static uint8_t *make_segment(struct env *e, size_t *len, size_t ends[NREC])
{
    struct fg_spool *sp = open_spool(e->dir, NULL);
    add_range(sp, 1, 3);
    add_range(sp, 4, NREC);
    fg_spool_close(sp);
    char p[MAXPATH];
    seg_path(p, sizeof(p), e->dir, 1);
    uint8_t *b = slurp(p, len);
    size_t off = 0;
    for (uint64_t s = 1; s <= NREC; s++) {
        char buf[128];
        off += HDR + gen(s, buf);
        ends[s - 1] = off;
    }
    assert_int_equal(off, *len);
    return b;
}

/* A fresh spool directory holding one segment with these bytes. */
static void plant(const char *dir, const uint8_t *b, size_t len)
{
    rm_rf(dir);
    assert_int_equal(mkdir(dir, 0750), 0);
    char p[MAXPATH];
    seg_path(p, sizeof(p), dir, 1);
    spit(p, b, len);
}

static void test_truncate_at_every_offset(void **state)
{
    struct env *e = *state;
    size_t len, ends[NREC];
    uint8_t *b = make_segment(e, &len, ends);
    char dir[MAXPATH];
    join(dir, sizeof(dir), e->root, "cut");
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);

    for (size_t cut = 0; cut <= len; cut++) {
        plant(dir, b, cut);
        size_t whole = 0; /* records entirely within the first cut bytes */
        while (whole < NREC && ends[whole] <= cut)
            whole++;
        size_t good_end = whole ? ends[whole - 1] : 0;
        bool torn = cut != good_end;

        struct fg_spool *sp = open_spool(dir, NULL);
        expect_range(sp, 1, whole);
        struct fg_spool_stats st = stats(sp);
        assert_int_equal(st.corrupt_skipped, torn);
        assert_int_equal(st.tails_truncated, torn);
        assert_int_equal(st.corrupt_bytes, cut - good_end);
        assert_int_equal(file_size(dir, SEG1), (off_t)good_end);
        assert_int_equal(st.next_seq, whole + 1);
        /* Appends continue cleanly after the last good record... */
        append_seq(sp, whole + 1, T0);
        commit_ok(sp, whole + 1);
        fg_spool_close(sp);
        /* ...and survive another reopen, with nothing left to repair. */
        sp = open_spool(dir, NULL);
        expect_range(sp, 1, whole + 1);
        assert_int_equal(stats(sp).corrupt_skipped, 0);
        fg_spool_close(sp);
    }
    print_message("truncate at every offset: %zu cuts in %" PRIu64 " ms\n", len + 1, ms_since(&t));
    free(b);
}

static void test_corrupt_at_every_offset(void **state)
{
    struct env *e = *state;
    size_t len, ends[NREC];
    uint8_t *b = make_segment(e, &len, ends);
    uint8_t *c = malloc(len);
    assert_non_null(c);
    char dir[MAXPATH];
    join(dir, sizeof(dir), e->root, "flip");
    static const uint8_t flips[] = {0xff, 0x01, 0x80};
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    size_t cases = 0;

    for (size_t off = 0; off < len; off++) {
        size_t hit = 0; /* index of the record holding the flipped byte */
        while (ends[hit] <= off)
            hit++;
        bool last = hit == NREC - 1;
        uint64_t seqs[NREC + 1];
        size_t n = 0;
        for (size_t k = 0; k < NREC; k++)
            if (k != hit)
                seqs[n++] = k + 1;

        for (size_t f = 0; f < FG_ARRAY_LEN(flips); f++, cases++) {
            memcpy(c, b, len);
            c[off] ^= flips[f];
            plant(dir, c, len);

            struct fg_spool *sp = open_spool(dir, NULL);
            expect_seqs(sp, seqs, n); /* every untouched record, in order */
            struct fg_spool_stats st = stats(sp);
            assert_int_equal(st.corrupt_skipped, 1);
            assert_int_equal(st.tails_truncated, last);
            assert_int_equal(st.corrupt_bytes, ends[hit] - (hit ? ends[hit - 1] : 0));
            /* A damaged last record is a torn tail: cut off, and its number is free
             * again. Anything earlier is skipped and stays in the file. */
            assert_int_equal(file_size(dir, SEG1), (off_t)(last ? ends[hit - 1] : len));
            uint64_t next = last ? NREC : NREC + 1;
            assert_int_equal(st.next_seq, next);
            if (f > 0) { /* appending after the repair: once per offset is enough */
                fg_spool_close(sp);
                continue;
            }
            append_seq(sp, next, T0);
            commit_ok(sp, next);
            fg_spool_close(sp);

            seqs[n] = next;
            sp = open_spool(dir, NULL);
            expect_seqs(sp, seqs, n + 1);
            assert_int_equal(stats(sp).corrupt_skipped, last ? 0 : 1);
            fg_spool_close(sp);
        }
    }
    print_message("corrupt at every offset: %zu flips in %" PRIu64 " ms\n", cases, ms_since(&t));
    free(c);
    free(b);
}

/* The log line says which segment, which offset, what was wrong and what was done. */
static void test_recovery_logs_segment_and_offset(void **state)
{
    struct env *e = *state;
    size_t len, ends[NREC];
    uint8_t *b = make_segment(e, &len, ends);
    char dir[MAXPATH], log[MAXPATH];
    join(dir, sizeof(dir), e->root, "logged");
    join(log, sizeof(log), e->root, "log");

    b[ends[1] + 9] ^= 0x10; /* record 3's CRC */
    plant(dir, b, len - 5); /* and record 6 torn */
    assert_true(fg_log_open(log, FG_LOG_WARN));
    struct fg_spool *sp = open_spool(dir, NULL);
    assert_true(fg_log_open("stderr", FG_LOG_ERROR));
    uint64_t seqs[] = {1, 2, 4, 5};
    expect_seqs(sp, seqs, 4);
    assert_int_equal(stats(sp).corrupt_skipped, 2);
    fg_spool_close(sp);

    size_t n;
    char *text = (char *)slurp(log, &n);
    text[n] = '\0';
    char want[160];
    snprintf(want, sizeof(want), SEG1 " offset %zu: CRC mismatch; %zu bytes skipped", ends[1],
             ends[2] - ends[1]);
    assert_non_null(strstr(text, want));
    snprintf(want, sizeof(want), SEG1 " offset %zu: length beyond the end of the file; torn tail",
             ends[4]);
    assert_non_null(strstr(text, want));
    assert_non_null(strstr(text, "truncated after its last good record"));
    free(text);
    free(b);
}

/* A frame that is intact but numbered below what came before (here: a second copy of
 * records 1..3 glued after the first) is skipped, counted, and never truncated. */
static void test_out_of_order_frames_skipped_not_destroyed(void **state)
{
    struct env *e = *state;
    struct fg_spool *sp = open_spool(e->dir, NULL);
    add_range(sp, 1, 3);
    fg_spool_close(sp);
    char p[MAXPATH];
    seg_path(p, sizeof(p), e->dir, 1);
    size_t len;
    uint8_t *b = slurp(p, &len);
    uint8_t *twice = malloc(2 * len);
    assert_non_null(twice);
    memcpy(twice, b, len);
    memcpy(twice + len, b, len);
    spit(p, twice, 2 * len);

    sp = open_spool(e->dir, NULL);
    expect_range(sp, 1, 3);
    struct fg_spool_stats st = stats(sp);
    assert_int_equal(st.corrupt_skipped, 3);
    assert_int_equal(st.tails_truncated, 0);
    assert_int_equal(file_size(e->dir, SEG1), (off_t)(2 * len));
    append_seq(sp, 4, T0);
    commit_ok(sp, 4);
    fg_spool_close(sp);
    sp = open_spool(e->dir, NULL);
    expect_range(sp, 1, 4);
    fg_spool_close(sp);
    free(twice);
    free(b);
}

/* ---- checkpoint ---------------------------------------------------------------------- */

static const struct fg_spool_config small_segments = {.segment_size = 200};

/* Records 1..30, one commit each, in segments of about 200 bytes. */
static struct fg_spool *thirty_in_small_segments(const char *dir)
{
    struct fg_spool *sp = open_spool(dir, &small_segments);
    for (uint64_t s = 1; s <= 30; s++)
        add_range(sp, s, s);
    return sp;
}

static void test_checkpoint_deletes_acked_segments_and_restarts_after_it(void **state)
{
    struct env *e = *state;
    struct fg_spool *sp = thirty_in_small_segments(e->dir);
    uint64_t before[64];
    size_t nb = list_segs(e->dir, before, 64);
    assert_true(nb >= 4);

    assert_int_equal(fg_spool_ack(sp, 12), FG_SPOOL_OK);
    assert_int_equal(stats(sp).pending_records, 18);
    assert_int_equal(fg_spool_ack(sp, 5), FG_SPOOL_OK); /* backwards: no-op */
    assert_int_equal(stats(sp).acked_seq, 12);
    assert_int_equal(fg_spool_ack(sp, 31), FG_SPOOL_E_INVAL);
    assert_int_equal(fg_spool_errno(sp), EINVAL);
    assert_int_equal(fg_spool_checkpoint(sp), FG_SPOOL_OK);
    assert_true(exists(e->dir, "checkpoint"));
    assert_false(exists(e->dir, "checkpoint.tmp"));

    /* Exactly the segments whose every record is at or below 12 are gone. */
    uint64_t after[64];
    size_t na = list_segs(e->dir, after, 64);
    size_t k = 0;
    for (size_t i = 0; i < nb; i++) {
        uint64_t last = i + 1 < nb ? before[i + 1] - 1 : 30;
        if (last > 12) {
            assert_true(k < na);
            assert_int_equal(after[k++], before[i]);
        }
    }
    assert_int_equal(k, na);
    assert_true(na < nb);
    assert_int_equal(stats(sp).segments_deleted, nb - na);
    assert_int_equal(stats(sp).segments, na);
    expect_range(sp, 13, 30);
    fg_spool_close(sp);

    sp = open_spool(e->dir, &small_segments);
    struct fg_spool_stats st = stats(sp);
    assert_int_equal(st.acked_seq, 12);
    assert_int_equal(st.checkpoint_seq, 12);
    assert_int_equal(st.pending_records, 18);
    expect_range(sp, 13, 30);
    fg_spool_close(sp);
}

static void test_ack_without_checkpoint_is_resent_after_crash(void **state)
{
    struct env *e = *state;
    struct fg_spool *sp = thirty_in_small_segments(e->dir);
    assert_int_equal(fg_spool_ack(sp, 12), FG_SPOOL_OK);
    assert_int_equal(fg_spool_checkpoint(sp), FG_SPOOL_OK);
    assert_int_equal(fg_spool_ack(sp, 20), FG_SPOOL_OK);
    expect_range(sp, 21, 30);

    char snap[MAXPATH];
    join(snap, sizeof(snap), e->root, "snap");
    copy_dir(e->dir, snap); /* the crash: 13..20 were never checkpointed */
    fg_spool_close(sp);     /* a clean stop checkpoints */

    sp = open_spool(snap, &small_segments);
    expect_range(sp, 13, 30); /* at least once */
    fg_spool_close(sp);
    sp = open_spool(e->dir, &small_segments);
    expect_range(sp, 21, 30);
    fg_spool_close(sp);
}

static void test_stale_checkpoint_tmp_is_ignored(void **state)
{
    struct env *e = *state;
    struct fg_spool *sp = thirty_in_small_segments(e->dir);
    assert_int_equal(fg_spool_ack(sp, 12), FG_SPOOL_OK);
    fg_spool_close(sp);

    /* A genuine checkpoint of 25, made in a copy, left as the temporary file: what a
     * crash between writing and renaming it leaves. */
    char other[MAXPATH], a[MAXPATH], b[MAXPATH];
    join(other, sizeof(other), e->root, "other");
    copy_dir(e->dir, other);
    sp = open_spool(other, &small_segments);
    assert_int_equal(fg_spool_ack(sp, 25), FG_SPOOL_OK);
    fg_spool_close(sp);
    join(a, sizeof(a), other, "checkpoint");
    join(b, sizeof(b), e->dir, "checkpoint.tmp");
    size_t len;
    uint8_t *ck = slurp(a, &len);
    spit(b, ck, len);
    free(ck);

    sp = open_spool(e->dir, &small_segments);
    assert_false(exists(e->dir, "checkpoint.tmp"));
    assert_int_equal(stats(sp).acked_seq, 12);
    expect_range(sp, 13, 30);
    fg_spool_close(sp);
}

static void test_invalid_checkpoint_sends_everything_again(void **state)
{
    struct env *e = *state;
    struct fg_spool *sp = open_spool(e->dir, NULL);
    add_range(sp, 1, 5);
    assert_int_equal(fg_spool_ack(sp, 3), FG_SPOOL_OK);
    fg_spool_close(sp);
    char p[MAXPATH];
    join(p, sizeof(p), e->dir, "checkpoint");
    size_t len;
    uint8_t *ck = slurp(p, &len);
    assert_int_equal(len, 1024);
    ck[8] ^= 0x04; /* both slots: acked changed, the CRCs no longer match */
    ck[512 + 8] ^= 0x04;
    spit(p, ck, len);
    free(ck);

    sp = open_spool(e->dir, NULL);
    assert_int_equal(stats(sp).checkpoint_invalid, 1);
    expect_range(sp, 1, 5);
    fg_spool_close(sp);
}

/* The acknowledged position of the newest intact slot of dir's checkpoint file. */
static uint64_t slot_acked(const uint8_t *ck, size_t slot, uint64_t *gen)
{
    const uint8_t *p = ck + slot * 512;
    uint64_t a = 0, g = 0;
    for (int i = 7; i >= 0; i--) {
        a = a << 8 | p[8 + i];
        g = g << 8 | p[16 + i];
    }
    *gen = g;
    return a;
}

/* Checkpoints overwrite the older of two slots in place: the file keeps its inode and
 * its size (no new blocks, no rename: it works on a full disk), and a write torn in the
 * newest slot leaves the one before it. */
static void test_checkpoint_in_place_and_a_torn_slot_falls_back(void **state)
{
    struct env *e = *state;
    struct fg_spool *sp = open_spool(e->dir, NULL);
    add_range(sp, 1, 8);
    char p[MAXPATH];
    join(p, sizeof(p), e->dir, "checkpoint");
    struct stat before, after;
    assert_int_equal(stat(p, &before), 0);
    assert_int_equal(before.st_size, 1024); /* made at open, before it is needed */
    assert_int_equal(fg_spool_ack(sp, 3), FG_SPOOL_OK);
    assert_int_equal(fg_spool_checkpoint(sp), FG_SPOOL_OK);
    assert_int_equal(fg_spool_ack(sp, 6), FG_SPOOL_OK);
    assert_int_equal(fg_spool_checkpoint(sp), FG_SPOOL_OK);
    assert_int_equal(stat(p, &after), 0);
    assert_int_equal(after.st_ino, before.st_ino);
    assert_int_equal(after.st_size, 1024);
    assert_false(exists(e->dir, "checkpoint.tmp"));
    fg_spool_close(sp); /* nothing new acknowledged: no write */

    size_t len;
    uint8_t *ck = slurp(p, &len);
    uint64_t g0, g1;
    uint64_t a0 = slot_acked(ck, 0, &g0), a1 = slot_acked(ck, 1, &g1);
    size_t newest = g1 > g0 ? 1 : 0;
    assert_int_equal(newest == 1 ? a1 : a0, 6);
    assert_int_equal(newest == 1 ? a0 : a1, 3);
    assert_int_equal(g1 > g0 ? g1 - g0 : g0 - g1, 1);
    memset(ck + newest * 512 + 100, 0xee, 200); /* a torn write of the newest slot */
    spit(p, ck, len);
    free(ck);

    sp = open_spool(e->dir, NULL);
    assert_int_equal(stats(sp).checkpoint_invalid, 0);
    assert_int_equal(stats(sp).acked_seq, 3);
    expect_range(sp, 4, 8); /* 4..6 again: at least once */
    /* The next checkpoint goes to the torn slot and the file reads back whole again. */
    assert_int_equal(fg_spool_ack(sp, 7), FG_SPOOL_OK);
    fg_spool_close(sp);
    sp = open_spool(e->dir, NULL);
    assert_int_equal(stats(sp).acked_seq, 7);
    fg_spool_close(sp);
}

/* An older agent's checkpoint (version 1, 24 bytes, replaced by rename) is read, and
 * replaced by the two-slot file at open. */
static void test_checkpoint_of_an_older_agent_is_read_and_replaced(void **state)
{
    struct env *e = *state;
    struct fg_spool *sp = open_spool(e->dir, NULL);
    add_range(sp, 1, 5);
    fg_spool_close(sp);
    uint8_t v1[24] = {'F', 'G', 'C', 'K', 1, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0};
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), v1, 16);
    for (int i = 0; i < 4; i++)
        v1[16 + i] = (uint8_t)(crc >> (8 * i));
    char p[MAXPATH];
    join(p, sizeof(p), e->dir, "checkpoint");
    spit(p, v1, sizeof(v1));

    sp = open_spool(e->dir, NULL);
    assert_int_equal(stats(sp).checkpoint_invalid, 0);
    assert_int_equal(stats(sp).acked_seq, 3);
    expect_range(sp, 4, 5);
    assert_int_equal(file_size(e->dir, "checkpoint"), 1024);
    fg_spool_close(sp);
    sp = open_spool(e->dir, NULL);
    assert_int_equal(stats(sp).acked_seq, 3);
    fg_spool_close(sp);
}

/* The index keeps only what is not acknowledged: a busy segment does not hold 32 bytes
 * per record it ever took until it is deleted. */
static void test_index_drops_acknowledged_records(void **state)
{
    struct env *e = *state;
    struct fg_spool *sp = open_spool(e->dir, NULL); /* one 64 MiB segment for all */
    for (uint64_t s = 1; s <= 10000; s += 100)
        add_range(sp, s, s + 99);
    assert_int_equal(stats(sp).index_entries, 10000);
    assert_int_equal(fg_spool_ack(sp, 9000), FG_SPOOL_OK);
    assert_int_equal(fg_spool_checkpoint(sp), FG_SPOOL_OK);
    assert_int_equal(stats(sp).index_entries, 1000);
    assert_int_equal(stats(sp).segments, 1);
    struct fg_spool_iter *it = fg_spool_iter_new(sp);
    struct fg_spool_record r;
    for (uint64_t want = 9001; want <= 10000; want++) {
        assert_int_equal(fg_spool_iter_next(it, &r), FG_SPOOL_OK);
        assert_int_equal(r.seq, want);
    }
    assert_int_equal(fg_spool_iter_next(it, &r), FG_SPOOL_END);
    fg_spool_iter_free(it);
    /* A few acknowledged are left until a batch is worth moving. */
    assert_int_equal(fg_spool_ack(sp, 9010), FG_SPOOL_OK);
    assert_int_equal(fg_spool_checkpoint(sp), FG_SPOOL_OK);
    assert_int_equal(stats(sp).index_entries, 1000);
    assert_int_equal(fg_spool_ack(sp, 10000), FG_SPOOL_OK);
    assert_int_equal(fg_spool_checkpoint(sp), FG_SPOOL_OK);
    assert_int_equal(stats(sp).index_entries, 0);
    add_range(sp, 10001, 10002); /* the same segment takes more */
    expect_range(sp, 10001, 10002);
    assert_int_equal(stats(sp).segments, 1);
    fg_spool_close(sp);
    /* Recovery indexes only what the checkpoint does not cover. */
    sp = open_spool(e->dir, NULL);
    assert_int_equal(stats(sp).index_entries, 2);
    assert_int_equal(stats(sp).acked_seq, 10000);
    expect_range(sp, 10001, 10002);
    fg_spool_close(sp);
}

/* Open file descriptors of this process on deleted files. */
static size_t deleted_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char p[MAXPATH], target[MAXPATH];
        snprintf(p, sizeof(p), "/proc/self/fd/%s", de->d_name);
        ssize_t l = readlink(p, target, sizeof(target) - 1);
        if (l > 0) {
            target[l] = '\0';
            n += strstr(target, ".seg (deleted)") != NULL;
        }
    }
    closedir(d);
    return n;
}

/* A segment deleted while an iterator has it open is closed by the deletion: an open
 * descriptor would keep its blocks allocated, and a full disk would stay full. */
static void test_deleting_a_segment_closes_iterators_on_it(void **state)
{
    struct env *e = *state;
    struct fg_spool *sp = thirty_in_small_segments(e->dir);
    struct fg_spool_iter *it = fg_spool_iter_new(sp);
    assert_non_null(it);
    struct fg_spool_record r;
    for (uint64_t want = 1; want <= 5; want++) { /* open on the first segment */
        assert_int_equal(fg_spool_iter_next(it, &r), FG_SPOOL_OK);
        assert_int_equal(r.seq, want);
    }
    assert_int_equal(fg_spool_ack(sp, 30), FG_SPOOL_OK);
    assert_int_equal(fg_spool_checkpoint(sp), FG_SPOOL_OK);
    assert_true(stats(sp).segments_deleted > 0);
    assert_int_equal(deleted_fds(), 0);
    add_range(sp, 31, 31); /* and the iterator reads on */
    assert_int_equal(fg_spool_iter_next(it, &r), FG_SPOOL_OK);
    assert_int_equal(r.seq, 31);
    fg_spool_iter_free(it);
    fg_spool_close(sp);
}

/* Every segment acknowledged and deleted: the numbering still goes on from the
 * checkpoint after a restart. */
static void test_sequence_survives_deleting_every_segment(void **state)
{
    struct env *e = *state;
    struct fg_spool_config cfg = {.segment_size = 100};
    struct fg_spool *sp = open_spool(e->dir, &cfg);
    add_range(sp, 1, 6); /* one commit of 6 records: one segment, over 100 bytes: closed */
    uint64_t ids[8];
    assert_int_equal(list_segs(e->dir, ids, 8), 1);
    assert_int_equal(fg_spool_ack(sp, 6), FG_SPOOL_OK);
    assert_int_equal(fg_spool_checkpoint(sp), FG_SPOOL_OK);
    assert_int_equal(list_segs(e->dir, ids, 8), 0);
    fg_spool_close(sp);

    sp = open_spool(e->dir, &cfg);
    assert_int_equal(stats(sp).next_seq, 7);
    add_range(sp, 7, 7);
    expect_range(sp, 7, 7);
    fg_spool_close(sp);
    assert_int_equal(list_segs(e->dir, ids, 8), 1);
    assert_int_equal(ids[0], 7);
}

/* ---- limits -------------------------------------------------------------------------- */

static void test_bytes_limit_refuses_and_counts(void **state)
{
    struct env *e = *state;
    char big[100];
    memset(big, 'x', sizeof(big));
    struct fg_spool_config cfg = {.max_bytes = 5 * (HDR + 100), .max_record = 150};
    struct fg_spool *sp = open_spool(e->dir, &cfg);
    uint64_t seq;
    for (int i = 0; i < 5; i++)
        assert_int_equal(fg_spool_append(sp, big, 100, T0, &seq), FG_SPOOL_OK);
    /* Full counts uncommitted records too: the limit is what we promised to keep. */
    assert_int_equal(fg_spool_append(sp, big, 1, T0, &seq), FG_SPOOL_E_FULL);
    assert_int_equal(seq, 5);
    commit_ok(sp, 5);
    assert_int_equal(fg_spool_append(sp, big, 100, T0, &seq), FG_SPOOL_E_FULL);
    struct fg_spool_stats st = stats(sp);
    assert_int_equal(st.refused_full, 2);
    assert_int_equal(st.appended, 5);
    assert_int_equal(st.pending_bytes, 5 * (HDR + 100));
    assert_int_equal(st.next_seq, 6);

    char huge[151] = {0};
    assert_int_equal(fg_spool_append(sp, huge, 151, T0, &seq), FG_SPOOL_E_TOO_BIG);
    assert_int_equal(stats(sp).refused_too_big, 1);
    fg_spool_close(sp);

    /* Still full after a restart: the limit is recomputed from disk. */
    sp = open_spool(e->dir, &cfg);
    assert_int_equal(fg_spool_append(sp, big, 100, T0, &seq), FG_SPOOL_E_FULL);
    assert_int_equal(fg_spool_ack(sp, 2), FG_SPOOL_OK); /* room for exactly two */
    assert_int_equal(fg_spool_append(sp, big, 100, T0, &seq), FG_SPOOL_OK);
    assert_int_equal(seq, 6);
    assert_int_equal(fg_spool_append(sp, big, 100, T0, &seq), FG_SPOOL_OK);
    assert_int_equal(fg_spool_append(sp, big, 0, T0, &seq), FG_SPOOL_E_FULL);
    commit_ok(sp, 7);
    fg_spool_close(sp);
}

static void test_age_limit_reported_and_refuses(void **state)
{
    struct env *e = *state;
    struct fg_spool_config cfg = {.max_age_ms = 5000};
    struct fg_spool *sp = open_spool(e->dir, &cfg);
    assert_int_equal(stats_at(sp, T0).oldest_age_ms, 0);
    append_seq(sp, 1, T0);
    commit_ok(sp, 1);
    assert_int_equal(stats_at(sp, T0 + 3000).oldest_age_ms, 3000);
    append_seq(sp, 2, T0 + 4000);
    commit_ok(sp, 2);
    char buf[128];
    size_t len = gen(3, buf);
    uint64_t seq;
    assert_int_equal(fg_spool_append(sp, buf, len, T0 + 6000, &seq), FG_SPOOL_E_STALE);
    struct fg_spool_stats st = stats_at(sp, T0 + 6000);
    assert_int_equal(st.refused_stale, 1);
    assert_int_equal(st.oldest_age_ms, 6000);
    fg_spool_close(sp);

    /* Ages come from disk after a restart. */
    sp = open_spool(e->dir, &cfg);
    assert_int_equal(stats_at(sp, T0 + 6000).oldest_age_ms, 6000);
    assert_int_equal(fg_spool_append(sp, buf, len, T0 + 6000, &seq), FG_SPOOL_E_STALE);
    assert_int_equal(fg_spool_ack(sp, 1), FG_SPOOL_OK); /* the oldest is now from T0+4s */
    assert_int_equal(stats_at(sp, T0 + 6000).oldest_age_ms, 2000);
    append_seq(sp, 3, T0 + 6000);
    commit_ok(sp, 3);
    assert_int_equal(fg_spool_ack(sp, 3), FG_SPOOL_OK);
    assert_int_equal(stats_at(sp, T0 + 60000).oldest_age_ms, 0);
    fg_spool_close(sp);
}

/* ---- rollover and numbering ---------------------------------------------------------- */

static void test_rollover_at_segment_size_and_numbering_across_reopen(void **state)
{
    struct env *e = *state;
    struct fg_spool *sp = thirty_in_small_segments(e->dir);
    fg_spool_close(sp);
    uint64_t ids[64];
    size_t n = list_segs(e->dir, ids, 64);
    assert_true(n >= 4);
    assert_int_equal(ids[0], 1);
    /* Each segment is named after its first record and closed once it reached 200 bytes,
     * by the commit that took it there. */
    char buf[128];
    for (size_t i = 0; i < n; i++) {
        char name[40];
        snprintf(name, sizeof(name), "%020llu.seg", (unsigned long long)ids[i]);
        off_t size = file_size(e->dir, name);
        uint64_t last = i + 1 < n ? ids[i + 1] - 1 : 30;
        off_t want = 0;
        for (uint64_t s = ids[i]; s <= last; s++)
            want += (off_t)(HDR + gen(s, buf));
        assert_int_equal(size, want);
        if (i + 1 < n) {
            assert_true(size >= 200);
            assert_true(size - (off_t)(HDR + gen(last, buf)) < 200);
        }
    }

    sp = open_spool(e->dir, &small_segments);
    expect_range(sp, 1, 30);
    add_range(sp, 31, 40); /* one commit may overshoot the size... */
    fg_spool_close(sp);
    sp = open_spool(e->dir, &small_segments);
    add_range(sp, 41, 41); /* ...and the next record starts a segment of its own */
    fg_spool_close(sp);
    uint64_t ids2[64];
    size_t n2 = list_segs(e->dir, ids2, 64);
    assert_int_equal(ids2[n2 - 1], 41);
    assert_true(file_size(e->dir, "00000000000000000041.seg") == (off_t)(HDR + gen(41, buf)));
    sp = open_spool(e->dir, &small_segments);
    expect_range(sp, 1, 41);
    assert_int_equal(stats(sp).next_seq, 42);
    fg_spool_close(sp);
}

/* ---- failing writes ------------------------------------------------------------------ */

/* A write refused by the kernel (EFBIG under RLIMIT_FSIZE, standing in for ENOSPC): the
 * batch is refused, the segment cut back, and the spool goes on. */
static void test_failed_commit_refuses_batch_and_recovers(void **state)
{
    struct env *e = *state;
    struct fg_spool *sp = open_spool(e->dir, NULL);
    add_range(sp, 1, 5);
    off_t good = file_size(e->dir, SEG1);

    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    lim = old;
    lim.rlim_cur = (rlim_t)good + 100;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    for (uint64_t s = 6; s <= 15; s++)
        append_seq(sp, s, T0);
    uint64_t durable = 0;
    enum fg_spool_status rc = fg_spool_commit(sp, &durable);
    int err = fg_spool_errno(sp);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);

    assert_int_equal(rc, FG_SPOOL_E_IO);
    assert_int_equal(err, EFBIG);
    assert_non_null(strstr(fg_spool_error(sp), "write"));
    assert_int_equal(file_size(e->dir, SEG1), good);
    struct fg_spool_stats st = stats(sp);
    assert_int_equal(st.commit_failed, 10);
    assert_int_equal(st.pending_records, 5);
    assert_int_equal(st.uncommitted, 0);
    assert_int_equal(st.committed_seq, 5);
    expect_range(sp, 1, 5);

    /* The spool goes on; the refused numbers are not handed out again. */
    append_seq(sp, 16, T0);
    append_seq(sp, 17, T0);
    commit_ok(sp, 17);
    uint64_t seqs[] = {1, 2, 3, 4, 5, 16, 17};
    expect_seqs(sp, seqs, 7);
    fg_spool_close(sp);
    sp = open_spool(e->dir, NULL);
    expect_seqs(sp, seqs, 7);
    assert_int_equal(stats(sp).corrupt_skipped, 0);
    fg_spool_close(sp);
}

/* ---- the iterator -------------------------------------------------------------------- */

static void test_iterator_follows_commits_acks_and_deletions(void **state)
{
    struct env *e = *state;
    struct fg_spool *sp = open_spool(e->dir, &small_segments);
    struct fg_spool_iter *it = fg_spool_iter_new(sp);
    struct fg_spool_iter *slow = fg_spool_iter_new(sp);
    struct fg_spool_record r;
    assert_int_equal(fg_spool_iter_next(it, &r), FG_SPOOL_END);
    add_range(sp, 1, 3);
    for (uint64_t s = 1; s <= 3; s++) {
        assert_int_equal(fg_spool_iter_next(it, &r), FG_SPOOL_OK);
        assert_int_equal(r.seq, s);
    }
    assert_int_equal(fg_spool_iter_next(it, &r), FG_SPOOL_END);
    for (uint64_t s = 4; s <= 30; s++)
        add_range(sp, s, s);
    assert_int_equal(fg_spool_iter_next(it, &r), FG_SPOOL_OK);
    assert_int_equal(r.seq, 4);

    /* The slow reader is still at 1; acknowledgment and deletion move it on. */
    assert_int_equal(fg_spool_iter_next(slow, &r), FG_SPOOL_OK);
    assert_int_equal(r.seq, 1);
    assert_int_equal(fg_spool_ack(sp, 20), FG_SPOOL_OK);
    assert_int_equal(fg_spool_checkpoint(sp), FG_SPOOL_OK);
    assert_true(stats(sp).segments_deleted > 0);
    assert_int_equal(fg_spool_iter_next(slow, &r), FG_SPOOL_OK);
    assert_int_equal(r.seq, 21);
    assert_int_equal(fg_spool_iter_next(it, &r), FG_SPOOL_OK);
    assert_int_equal(r.seq, 21);
    fg_spool_iter_free(slow);
    fg_spool_iter_free(it);
    fg_spool_close(sp);
}

/* A record damaged on disk after open is skipped with a count, not sent, not fatal. */
static void test_iterator_skips_record_damaged_after_open(void **state)
{
    struct env *e = *state;
    struct fg_spool *sp = open_spool(e->dir, NULL);
    add_range(sp, 1, 4);
    char p[MAXPATH], buf[128];
    seg_path(p, sizeof(p), e->dir, 1);
    int fd = open(p, O_WRONLY);
    assert_true(fd >= 0);
    off_t off = (off_t)(2 * HDR + gen(1, buf) + gen(2, buf) + HDR); /* record 3's payload */
    assert_int_equal(pwrite(fd, "Z", 1, off), 1);
    close(fd);
    uint64_t seqs[] = {1, 2, 4};
    expect_seqs(sp, seqs, 3);
    assert_int_equal(stats(sp).read_corrupt, 1);
    fg_spool_close(sp);
}

static void test_status_names(void **state)
{
    (void)state;
    assert_string_equal(fg_spool_status_name(FG_SPOOL_OK), "ok");
    assert_string_equal(fg_spool_status_name(FG_SPOOL_E_FULL), "full");
    assert_string_equal(fg_spool_status_name(FG_SPOOL_E_STALE), "stale");
    assert_string_equal(fg_spool_status_name(FG_SPOOL_E_BROKEN), "broken");
    assert_string_equal(fg_spool_status_name(FG_SPOOL_STATUS__COUNT), "unknown");
}

static void test_bad_config_refused(void **state)
{
    struct env *e = *state;
    struct fg_spool_config cfg = {.segment_size = (uint64_t)FG_SPOOL_SEGMENT_SIZE_MAX + 1};
    struct fg_spool *sp = NULL;
    char err[256];
    assert_int_equal(fg_spool_open(e->dir, &cfg, &sp, err, sizeof(err)), FG_SPOOL_E_INVAL);
    assert_null(sp);
    cfg = (struct fg_spool_config){.max_record = FG_SPOOL_RECORD_MAX + 1};
    assert_int_equal(fg_spool_open(e->dir, &cfg, &sp, err, sizeof(err)), FG_SPOOL_E_INVAL);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_frame_format_on_disk),
        T(test_append_commit_reopen_same_records),
        T(test_uncommitted_records_are_not_read),
        T(test_appendv_joins_pieces),
        T(test_group_commit_one_fsync_for_many_records),
        T(test_crash_keeps_every_committed_record),
        T(test_sigkill_mid_burst_loses_no_committed_record),
        T(test_second_open_is_locked_out),
        T(test_truncate_at_every_offset),
        T(test_corrupt_at_every_offset),
        T(test_recovery_logs_segment_and_offset),
        T(test_out_of_order_frames_skipped_not_destroyed),
        T(test_checkpoint_deletes_acked_segments_and_restarts_after_it),
        T(test_ack_without_checkpoint_is_resent_after_crash),
        T(test_stale_checkpoint_tmp_is_ignored),
        T(test_invalid_checkpoint_sends_everything_again),
        T(test_checkpoint_in_place_and_a_torn_slot_falls_back),
        T(test_checkpoint_of_an_older_agent_is_read_and_replaced),
        T(test_deleting_a_segment_closes_iterators_on_it),
        T(test_index_drops_acknowledged_records),
        T(test_sequence_survives_deleting_every_segment),
        T(test_bytes_limit_refuses_and_counts),
        T(test_age_limit_reported_and_refuses),
        T(test_rollover_at_segment_size_and_numbering_across_reopen),
        T(test_failed_commit_refuses_batch_and_recovers),
        T(test_iterator_follows_commits_acks_and_deletions),
        T(test_iterator_skips_record_damaged_after_open),
        T(test_status_names),
        T(test_bad_config_refused),
    };
#undef T
    return cmocka_run_group_tests_name("agent spool", tests, NULL, NULL);
}
