/*
 * spool.c — flashgate-agent's durable spool: append-only segment files with a CRC per
 * record, group commit, a checkpoint of what the sink acknowledged, and a recovery that
 * keeps every intact record. The format and the guarantees are described in agent.h.
 *
 * In memory every live segment keeps an index of its records (sequence, append time,
 * offset, length), built by recovery and extended by append. Limits, stats and the
 * iterator all work from that index; payloads are read back from disk only to be sent,
 * and checked against their CRC again when they are.
 *
 * Invariants: segments are sorted by id and their records by sequence, across segments
 * too; only the last segment can be the active one (active_fd >= 0); the commit buffer
 * holds the frames of the last buf_n index entries of that segment, which sit past its
 * durable size.
 */
#include "agent/agent.h"
#include "core/core.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <zlib.h>

#define FRAME_MAGIC   0x50534746u /* "FGSP" on disk */
#define CKPT_MAGIC    0x4b434746u /* "FGCK" on disk */
#define CKPT_V1       1u          /* an older agent's: one record, replaced by rename */
#define CKPT_V1_SIZE  24          /* magic u32, version u32, acked u64, crc u32, zero u32 */
#define CKPT_V2       2u          /* two slots, overwritten in place */
#define CKPT_SLOT     512         /* one sector: a torn write spoils one slot at most */
#define CKPT_SIZE     (2 * CKPT_SLOT)
#define CKPT_NAME     "checkpoint"
#define CKPT_TMP_NAME "checkpoint.tmp"
#define NOSPACE_SLACK (64u << 10) /* free bytes a full disk must show before a new try */
#define SEG_DIGITS    20
#define SEG_NAME_SIZE 32
#define READ_WINDOW   (1u << 20) /* recovery reads segments in windows this big */
#define BUF_KEEP      (4u << 20) /* a commit buffer grown past this is freed after use */
#define HDR           FG_SPOOL_HEADER_SIZE

#define SPOOL_MAGIC 0x5b001d15u
#define ITER_MAGIC  0x17e4a7e5u

struct entry {
    uint64_t seq;
    int64_t time_ms;
    uint64_t off; /* of the frame in its segment */
    uint32_t len; /* payload bytes */
};

struct seg {
    uint64_t id;        /* the sequence number it was started for: its file name */
    uint64_t size;      /* bytes in the file that are durable (for the active one) */
    struct entry *ents; /* its records not yet acknowledged (compact_index drops the rest) */
    size_t n, cap;
    uint64_t dropped_last; /* the last sequence compact_index dropped; 0: none */
    bool dir_synced;       /* its directory entry is durable */
};

struct fg_spool {
    uint32_t magic;
    char *dir;
    int dirfd; /* holds the lock too */
    struct fg_spool_config cfg;
    struct seg *segs; /* oldest first */
    size_t nseg, capseg;
    int active_fd; /* the last segment's, for appends; -1: the next append starts one */
    uint8_t *buf;  /* frames appended since the last commit */
    size_t buf_len, buf_cap, buf_n;
    uint64_t next_seq, committed_seq, acked_seq, ckpt_seq;
    int ckpt_fd;                 /* the checkpoint file, written in place; -1: to be (re)made */
    uint64_t ckpt_gen;           /* generation of its newest slot */
    bool disk_full;              /* appends are refused: the filesystem has no room for them */
    bool space_watch;            /* a write ran out of space: appends check the free space first */
    struct fg_spool_iter *iters; /* open iterators: their segment fds close on deletion */
    uint64_t pending_records, pending_bytes;
    int broken; /* errno of a failure that could not be undone; 0 when healthy */
    int err_no;
    char err[320];
    struct fg_spool_stats c; /* only the counters are kept up to date here */
};

struct fg_spool_iter {
    uint32_t magic;
    struct fg_spool *sp;
    struct fg_spool_iter *prev, *next; /* in sp->iters */
    uint64_t last;                     /* highest sequence returned or skipped */
    int fd;                            /* segment open for reading, -1 if none */
    uint64_t fd_seg;
    uint8_t *buf;
    size_t cap;
};

/* ---- little pieces ----------------------------------------------------------------- */

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
    return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/* The frame's CRC: length, sequence, time and payload — every byte but magic and crc. */
static uint32_t frame_crc(const uint8_t *frame, uint32_t len)
{
    uLong c = crc32(0L, Z_NULL, 0);
    c = crc32(c, frame + 4, 4);
    c = crc32(c, frame + 12, HDR - 12 + len);
    return (uint32_t)c;
}

static void seg_name(char out[SEG_NAME_SIZE], uint64_t id)
{
    snprintf(out, SEG_NAME_SIZE, "%0*" PRIu64 ".seg", SEG_DIGITS, id);
}

/* Exactly 20 digits and ".seg"; anything else in the directory is not ours to touch. */
static bool seg_parse(const char *name, uint64_t *id)
{
    if (strlen(name) != SEG_DIGITS + 4 || strcmp(name + SEG_DIGITS, ".seg") != 0)
        return false;
    uint64_t v = 0;
    for (int i = 0; i < SEG_DIGITS; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
        unsigned d = (unsigned)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *id = v;
    return true;
}

static uint64_t seg_last_seq(const struct seg *s)
{
    if (s->n > 0)
        return s->ents[s->n - 1].seq;
    if (s->dropped_last > 0)
        return s->dropped_last;
    return s->id > 0 ? s->id - 1 : 0;
}

/* now - then in ms, 0 if the clock went back; without signed overflow for any input. */
static uint64_t age_ms(int64_t now, int64_t then)
{
    return now > then ? (uint64_t)now - (uint64_t)then : 0;
}

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * elem);
    if (q == NULL)
        return false;
    *p = q;
    *cap = n;
    return true;
}

/* Remember the failure for fg_spool_errno/fg_spool_error and leave errno set to it. */
__attribute__((format(printf, 3, 4))) static enum fg_spool_status fail(struct fg_spool *sp, int e,
                                                                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(sp->err, sizeof(sp->err), fmt, ap);
    va_end(ap);
    if (e != 0 && n >= 0 && (size_t)n < sizeof(sp->err))
        snprintf(sp->err + n, sizeof(sp->err) - (size_t)n, ": %s", strerror(e));
    sp->err_no = e;
    errno = e;
    return FG_SPOOL_E_IO;
}

static int sync_fd(struct fg_spool *sp, int fd, bool data_only)
{
    sp->c.fsyncs++;
    return data_only ? fdatasync(fd) : fsync(fd);
}

static int pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* Bytes read, fewer than n only at the end of the file; -1 with errno on error. */
static ssize_t pread_all(int fd, uint8_t *p, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, p + got, n - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* The first index entry with a sequence above after, across segments. */
static bool locate(const struct fg_spool *sp, uint64_t after, size_t *si, size_t *ei)
{
    for (size_t i = 0; i < sp->nseg; i++) {
        const struct seg *s = &sp->segs[i];
        if (s->n == 0 || s->ents[s->n - 1].seq <= after)
            continue;
        size_t lo = 0, hi = s->n - 1;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (s->ents[mid].seq > after)
                hi = mid;
            else
                lo = mid + 1;
        }
        *si = i;
        *ei = lo;
        return true;
    }
    return false;
}

/* ---- recovery ---------------------------------------------------------------------- */

/* A window over a segment file, so that recovery needs neither the whole file in memory
 * nor mmap (whose read errors arrive as SIGBUS instead of a return value). */
struct reader {
    int fd;
    uint64_t size;
    uint8_t *buf;
    size_t cap;
    uint64_t base; /* file offset of buf[0] */
    size_t len;
};

/* Bytes [off, off + n) of the file, which the caller knows to lie within its size. NULL
 * with errno on a read error. */
static const uint8_t *reader_at(struct reader *r, uint64_t off, size_t n)
{
    if (off >= r->base && off + n <= r->base + r->len)
        return r->buf + (off - r->base);
    size_t want = n > READ_WINDOW ? n : READ_WINDOW;
    if (want > r->size - off)
        want = (size_t)(r->size - off);
    if (!grow((void **)&r->buf, &r->cap, want, 1)) {
        errno = ENOMEM;
        return NULL;
    }
    r->len = 0;
    ssize_t got = pread_all(r->fd, r->buf, want, off);
    if (got < 0)
        return NULL;
    if ((size_t)got < n) {
        errno = EIO; /* the file shrank under us: someone else is writing it */
        return NULL;
    }
    r->base = off;
    r->len = (size_t)got;
    return r->buf;
}

/* Is a valid frame at off? 1 with *e filled, 0 with *why saying what is wrong, -1 with
 * errno on a read error. */
static int frame_at(struct reader *r, uint64_t off, struct entry *e, const char **why)
{
    uint64_t avail = r->size - off;
    if (avail < HDR) {
        *why = "short header";
        return 0;
    }
    const uint8_t *p = reader_at(r, off, HDR);
    if (p == NULL)
        return -1;
    if (get_le32(p) != FRAME_MAGIC) {
        *why = "bad magic";
        return 0;
    }
    uint32_t len = get_le32(p + 4);
    if (len > FG_SPOOL_RECORD_MAX) {
        *why = "impossible length";
        return 0;
    }
    if (HDR + (uint64_t)len > avail) {
        *why = "length beyond the end of the file";
        return 0;
    }
    p = reader_at(r, off, HDR + len);
    if (p == NULL)
        return -1;
    if (get_le32(p + 8) != frame_crc(p, len)) {
        *why = "CRC mismatch";
        return 0;
    }
    e->seq = get_le64(p + 12);
    e->time_ms = (int64_t)get_le64(p + 20);
    e->off = off;
    e->len = len;
    return 1;
}

/* The next offset from `from` on where a valid frame starts (*next = size if none).
 * 0, or -1 with errno on a read error. */
static int resync(struct reader *r, uint64_t from, uint64_t *next)
{
    uint64_t p = from;
    while (p + HDR <= r->size) {
        size_t n = r->size - p > READ_WINDOW ? READ_WINDOW : (size_t)(r->size - p);
        const uint8_t *w = reader_at(r, p, n);
        if (w == NULL)
            return -1;
        size_t i = 0;
        while (i + 4 <= n && get_le32(w + i) != FRAME_MAGIC)
            i++;
        if (i + 4 > n) {
            p += n - 3; /* a magic may straddle the window's end */
            continue;
        }
        struct entry e;
        const char *why;
        int v = frame_at(r, p + i, &e, &why);
        if (v < 0)
            return -1;
        if (v > 0) {
            *next = p + i;
            return 0;
        }
        p += i + 1;
    }
    *next = r->size;
    return 0;
}

static enum fg_spool_status seg_push(struct fg_spool *sp, struct seg *s, const struct entry *e)
{
    if (!grow((void **)&s->ents, &s->cap, s->n + 1, sizeof(*s->ents)))
        return fail(sp, ENOMEM, "spool %s: index", sp->dir);
    s->ents[s->n++] = *e;
    return FG_SPOOL_OK;
}

/*
 * Index one segment and repair its tail. *min_seq is the lowest sequence its next record
 * may carry and moves past every record kept. Bad regions followed by a valid frame are
 * skipped and stay in the file; a bad region that runs to the end is cut off.
 */
static enum fg_spool_status scan_segment(struct fg_spool *sp, struct seg *s, int fd,
                                         uint64_t *min_seq)
{
    char name[SEG_NAME_SIZE];
    seg_name(name, s->id);
    struct stat st;
    if (fstat(fd, &st) != 0)
        return fail(sp, errno, "spool %s: stat %s", sp->dir, name);
    struct reader r = {.fd = fd, .size = (uint64_t)st.st_size};
    enum fg_spool_status rc = FG_SPOOL_OK;
    uint64_t off = 0;
    while (off < r.size) {
        struct entry e;
        const char *why = "";
        int v = frame_at(&r, off, &e, &why);
        if (v < 0) {
            rc = fail(sp, errno, "spool %s: read %s at offset %" PRIu64, sp->dir, name, off);
            break;
        }
        if (v > 0 && e.seq < *min_seq) {
            /* Intact but out of order: never ours to send, never ours to destroy. */
            fg_warn("spool %s: segment %s offset %" PRIu64 ": record %" PRIu64
                    " is not above %" PRIu64 ", skipped (%" PRIu64 " bytes)",
                    sp->dir, name, off, e.seq, *min_seq - 1, (uint64_t)HDR + e.len);
            sp->c.corrupt_skipped++;
            sp->c.corrupt_bytes += HDR + e.len;
            off += HDR + e.len;
            continue;
        }
        if (v > 0) {
            if ((rc = seg_push(sp, s, &e)) != FG_SPOOL_OK)
                break;
            *min_seq = e.seq + 1;
            off += HDR + e.len;
            continue;
        }
        uint64_t next;
        if (resync(&r, off + 1, &next) != 0) {
            rc = fail(sp, errno, "spool %s: read %s at offset %" PRIu64, sp->dir, name, off);
            break;
        }
        sp->c.corrupt_skipped++;
        sp->c.corrupt_bytes += next - off;
        if (next < r.size) {
            fg_warn("spool %s: segment %s offset %" PRIu64 ": %s; %" PRIu64
                    " bytes skipped up to the next valid record",
                    sp->dir, name, off, why, next - off);
            off = next;
            continue;
        }
        fg_warn("spool %s: segment %s offset %" PRIu64 ": %s; torn tail of %" PRIu64
                " bytes, segment truncated after its last good record",
                sp->dir, name, off, why, r.size - off);
        sp->c.tails_truncated++;
        if (ftruncate(fd, (off_t)off) != 0 || sync_fd(sp, fd, false) != 0)
            rc = fail(sp, errno, "spool %s: truncate %s at offset %" PRIu64, sp->dir, name, off);
        r.size = off;
        break;
    }
    free(r.buf);
    s->size = r.size;
    return rc;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The segment ids in the directory, sorted. */
static enum fg_spool_status list_segments(struct fg_spool *sp, uint64_t **ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    int fd = openat(sp->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return fail(sp, e, "spool %s: list", sp->dir);
    }
    size_t cap = 0;
    enum fg_spool_status rc = FG_SPOOL_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        uint64_t id;
        if (!seg_parse(de->d_name, &id))
            continue;
        if (!grow((void **)ids, &cap, *n + 1, sizeof(**ids))) {
            rc = fail(sp, ENOMEM, "spool %s: list", sp->dir);
            break;
        }
        (*ids)[(*n)++] = id;
    }
    closedir(d);
    if (*n > 1)
        qsort(*ids, *n, sizeof(**ids), cmp_u64);
    return rc;
}

/*
 * The checkpoint file holds two slots of one sector each; every checkpoint overwrites the
 * older slot in place (pwrite, fdatasync) with the next generation. Overwriting blocks
 * the file already has needs no free space, so a spool on a full disk can still record
 * what was delivered and then delete it: that is how a full spool frees itself. A torn
 * write spoils the slot being written; the other one still holds the previous
 * checkpoint. The file is made once (written whole, then renamed into place) when the
 * spool is opened.
 *
 * Slot: magic u32 | version u32 (2) | acked u64 | generation u64 | crc u32 (of the 24
 * bytes before it) | zeros to 512. An older agent's file (version 1, 24 bytes: magic,
 * version, acked, crc of the 16 bytes before it, zero) is read too, and replaced.
 */
static void ckpt_v1_encode(uint8_t out[CKPT_V1_SIZE], uint64_t acked)
{
    memset(out, 0, CKPT_V1_SIZE);
    put_le32(out, CKPT_MAGIC);
    put_le32(out + 4, CKPT_V1);
    put_le64(out + 8, acked);
    put_le32(out + 16, (uint32_t)crc32(crc32(0L, Z_NULL, 0), out, 16));
}

static void ckpt_slot_encode(uint8_t out[CKPT_SLOT], uint64_t acked, uint64_t gen)
{
    memset(out, 0, CKPT_SLOT);
    put_le32(out, CKPT_MAGIC);
    put_le32(out + 4, CKPT_V2);
    put_le64(out + 8, acked);
    put_le64(out + 16, gen);
    put_le32(out + 24, (uint32_t)crc32(crc32(0L, Z_NULL, 0), out, 24));
}

/* A slot that reads back intact: true with *acked and *gen. */
static bool ckpt_slot_decode(const uint8_t *in, uint64_t *acked, uint64_t *gen)
{
    uint8_t want[CKPT_SLOT];
    ckpt_slot_encode(want, get_le64(in + 8), get_le64(in + 16));
    if (memcmp(in, want, CKPT_SLOT) != 0)
        return false;
    *acked = get_le64(in + 8);
    *gen = get_le64(in + 16);
    return true;
}

/* Make the two-slot file for acked (write checkpoint.tmp whole, fdatasync, rename, fsync
 * the directory) and keep it open for the checkpoints to come. */
static enum fg_spool_status ckpt_create(struct fg_spool *sp, uint64_t acked)
{
    uint8_t b[CKPT_SIZE];
    uint64_t gen = sp->ckpt_gen + 1;
    ckpt_slot_encode(b, acked, gen);
    ckpt_slot_encode(b + CKPT_SLOT, acked, gen);
    int fd = openat(sp->dirfd, CKPT_TMP_NAME, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return fail(sp, errno, "spool %s: checkpoint: create %s", sp->dir, CKPT_TMP_NAME);
    const char *what = NULL;
    if (pwrite_all(fd, b, sizeof(b), 0) != 0)
        what = "write";
    else if (sync_fd(sp, fd, true) != 0)
        what = "fdatasync";
    else if (renameat(sp->dirfd, CKPT_TMP_NAME, sp->dirfd, CKPT_NAME) != 0)
        what = "rename";
    else if (sync_fd(sp, sp->dirfd, false) != 0)
        what = "fsync directory";
    if (what != NULL) {
        int e = errno;
        close(fd);
        unlinkat(sp->dirfd, CKPT_TMP_NAME, 0);
        return fail(sp, e, "spool %s: checkpoint: %s", sp->dir, what);
    }
    if (sp->ckpt_fd >= 0)
        close(sp->ckpt_fd);
    sp->ckpt_fd = fd;
    sp->ckpt_gen = gen;
    return FG_SPOOL_OK;
}

/* Write acked into the older slot, in place. */
static enum fg_spool_status ckpt_write(struct fg_spool *sp, uint64_t acked)
{
    if (sp->ckpt_fd < 0)
        return ckpt_create(sp, acked);
    uint8_t b[CKPT_SLOT];
    uint64_t gen = sp->ckpt_gen + 1;
    ckpt_slot_encode(b, acked, gen);
    if (pwrite_all(sp->ckpt_fd, b, sizeof(b), (gen & 1) * CKPT_SLOT) != 0)
        return fail(sp, errno, "spool %s: checkpoint: write", sp->dir);
    if (sync_fd(sp, sp->ckpt_fd, true) != 0)
        return fail(sp, errno, "spool %s: checkpoint: fdatasync", sp->dir);
    sp->ckpt_gen = gen;
    return FG_SPOOL_OK;
}

/* The checkpoint, or 0 when there is none. One that does not read back intact cannot
 * come from our writes; starting from 0 then only sends records again. A file that is not
 * the current two-slot one (none, an older agent's, unreadable) is remade at once, while
 * the disk most likely has room. */
static enum fg_spool_status read_checkpoint(struct fg_spool *sp)
{
    if (unlinkat(sp->dirfd, CKPT_TMP_NAME, 0) == 0)
        fg_notice("spool %s: removed %s left by an interrupted checkpoint", sp->dir, CKPT_TMP_NAME);
    int fd = openat(sp->dirfd, CKPT_NAME, O_RDWR | O_CLOEXEC);
    if (fd < 0 && errno != ENOENT)
        return fail(sp, errno, "spool %s: open %s", sp->dir, CKPT_NAME);
    uint8_t b[CKPT_SIZE + 1];
    ssize_t n = 0;
    if (fd >= 0) {
        n = pread_all(fd, b, sizeof(b), 0);
        if (n < 0) {
            int e = errno;
            close(fd);
            return fail(sp, e, "spool %s: read %s", sp->dir, CKPT_NAME);
        }
    }
    uint64_t acked = 0, a0 = 0, a1 = 0, g0 = 0, g1 = 0;
    bool v2 = false;
    if (n == CKPT_SIZE) {
        bool ok0 = ckpt_slot_decode(b, &a0, &g0), ok1 = ckpt_slot_decode(b + CKPT_SLOT, &a1, &g1);
        v2 = ok0 || ok1;
        if (v2) {
            bool use1 = ok1 && (!ok0 || g1 > g0);
            acked = use1 ? a1 : a0;
            sp->ckpt_gen = use1 ? g1 : g0;
            if (!ok0 || !ok1)
                fg_warn("spool %s: one slot of %s is damaged (an interrupted write); the other "
                        "holds %" PRIu64,
                        sp->dir, CKPT_NAME, acked);
            sp->ckpt_fd = fd;
            fd = -1;
        }
    }
    bool v1 = false;
    if (!v2 && n == CKPT_V1_SIZE) {
        uint8_t want[CKPT_V1_SIZE];
        ckpt_v1_encode(want, get_le64(b + 8));
        v1 = memcmp(b, want, CKPT_V1_SIZE) == 0;
        if (v1)
            acked = get_le64(b + 8);
    }
    if (fd >= 0)
        close(fd);
    if (n > 0 && !v2 && !v1) {
        fg_warn("spool %s: %s is not a valid checkpoint (%zd bytes), ignored: every record "
                "in the spool will be sent again",
                sp->dir, CKPT_NAME, n);
        sp->c.checkpoint_invalid++;
    }
    sp->acked_seq = sp->ckpt_seq = acked;
    if (!v2 && ckpt_create(sp, acked) != FG_SPOOL_OK) {
        /* Not fatal: the next checkpoint tries again. */
        fg_warn("%s; the checkpoint file will be made at the next checkpoint", sp->err);
        sp->err[0] = '\0';
        sp->err_no = 0;
    }
    return FG_SPOOL_OK;
}

static enum fg_spool_status recover(struct fg_spool *sp)
{
    enum fg_spool_status rc = read_checkpoint(sp);
    if (rc != FG_SPOOL_OK)
        return rc;
    uint64_t *ids;
    size_t n;
    if ((rc = list_segments(sp, &ids, &n)) != FG_SPOOL_OK)
        return rc;
    if (n > 0 && !grow((void **)&sp->segs, &sp->capseg, n, sizeof(*sp->segs))) {
        free(ids);
        return fail(sp, ENOMEM, "spool %s: segments", sp->dir);
    }
    uint64_t min_seq = 1;
    for (size_t i = 0; i < n && rc == FG_SPOOL_OK; i++) {
        char name[SEG_NAME_SIZE];
        seg_name(name, ids[i]);
        int fd = openat(sp->dirfd, name, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            rc = fail(sp, errno, "spool %s: open %s", sp->dir, name);
            break;
        }
        struct seg *s = &sp->segs[sp->nseg++];
        *s = (struct seg){.id = ids[i], .dir_synced = true};
        if (min_seq < s->id)
            min_seq = s->id; /* a segment holds nothing below its name */
        rc = scan_segment(sp, s, fd, &min_seq);
        close(fd);
    }
    free(ids);
    if (rc != FG_SPOOL_OK)
        return rc;

    uint64_t highest = 0, newest_id = 0;
    for (size_t i = 0; i < sp->nseg; i++) {
        const struct seg *s = &sp->segs[i];
        if (s->n > 0)
            highest = s->ents[s->n - 1].seq;
        newest_id = s->id;
        for (size_t j = 0; j < s->n; j++) {
            if (s->ents[j].seq > sp->acked_seq) {
                sp->pending_records++;
                sp->pending_bytes += HDR + s->ents[j].len;
            }
        }
    }
    /* Everything found intact on disk counts as committed, whether or not its commit
     * returned before the crash. */
    sp->committed_seq = highest > sp->acked_seq ? highest : sp->acked_seq;
    sp->next_seq = sp->committed_seq + 1;
    if (newest_id > sp->next_seq)
        sp->next_seq = newest_id;
    return FG_SPOOL_OK;
}

/* Make the last segment the active one if it has room left. */
static enum fg_spool_status reopen_active(struct fg_spool *sp)
{
    if (sp->nseg == 0)
        return FG_SPOOL_OK;
    struct seg *s = &sp->segs[sp->nseg - 1];
    if (s->size >= sp->cfg.segment_size)
        return FG_SPOOL_OK;
    char name[SEG_NAME_SIZE];
    seg_name(name, s->id);
    sp->active_fd = openat(sp->dirfd, name, O_WRONLY | O_CLOEXEC);
    if (sp->active_fd < 0)
        return fail(sp, errno, "spool %s: open %s", sp->dir, name);
    return FG_SPOOL_OK;
}

/* ---- open and close ---------------------------------------------------------------- */

/* Make a directory we just created durable in its parent. */
static int sync_parent(struct fg_spool *sp)
{
    char *copy = strdup(sp->dir);
    if (copy == NULL)
        return -1;
    char *slash = strrchr(copy, '/');
    const char *parent = ".";
    if (slash == copy)
        parent = "/";
    else if (slash != NULL) {
        *slash = '\0';
        parent = copy;
    }
    int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = fd >= 0 ? sync_fd(sp, fd, false) : -1;
    int e = errno;
    if (fd >= 0)
        close(fd);
    free(copy);
    errno = e;
    return rc;
}

static enum fg_spool_status open_dir(struct fg_spool *sp)
{
    if (mkdir(sp->dir, 0750) == 0) {
        if (sync_parent(sp) != 0)
            return fail(sp, errno, "spool %s: sync parent directory", sp->dir);
    } else if (errno != EEXIST) {
        return fail(sp, errno, "spool %s: create directory", sp->dir);
    }
    sp->dirfd = open(sp->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sp->dirfd < 0)
        return fail(sp, errno, "spool %s: open directory", sp->dir);
    if (flock(sp->dirfd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        fail(sp, e, "spool %s: lock (is another flashgate-agent using it?)", sp->dir);
        return e == EWOULDBLOCK ? FG_SPOOL_E_LOCKED : FG_SPOOL_E_IO;
    }
    return FG_SPOOL_OK;
}

static void spool_free(struct fg_spool *sp)
{
    if (sp->active_fd >= 0)
        close(sp->active_fd);
    if (sp->ckpt_fd >= 0)
        close(sp->ckpt_fd);
    if (sp->dirfd >= 0)
        close(sp->dirfd); /* releases the lock */
    for (size_t i = 0; i < sp->nseg; i++)
        free(sp->segs[i].ents);
    free(sp->segs);
    free(sp->buf);
    free(sp->dir);
    sp->magic = 0;
    free(sp);
}

static enum fg_spool_status delete_acked(struct fg_spool *sp);
static void compact_index(struct fg_spool *sp);

enum fg_spool_status fg_spool_open(const char *dir, const struct fg_spool_config *cfg,
                                   struct fg_spool **out, char *err, size_t errlen)
{
    *out = NULL;
    if (errlen > 0)
        err[0] = '\0';
    struct fg_spool_config c = cfg ? *cfg : (struct fg_spool_config){0};
    if (c.segment_size == 0)
        c.segment_size = FG_SPOOL_SEGMENT_SIZE_DEFAULT;
    if (c.max_record == 0)
        c.max_record = FG_SPOOL_MAX_RECORD_DEFAULT;
    if (c.segment_size > FG_SPOOL_SEGMENT_SIZE_MAX || c.max_record > FG_SPOOL_RECORD_MAX) {
        snprintf(err, errlen, "spool %s: segment size over %u or record size over %u", dir,
                 FG_SPOOL_SEGMENT_SIZE_MAX, FG_SPOOL_RECORD_MAX);
        errno = EINVAL;
        return FG_SPOOL_E_INVAL;
    }
    struct fg_spool *sp = calloc(1, sizeof(*sp));
    char *d = strdup(dir);
    if (sp == NULL || d == NULL) {
        free(sp);
        free(d);
        snprintf(err, errlen, "spool %s: out of memory", dir);
        errno = ENOMEM;
        return FG_SPOOL_E_IO;
    }
    sp->magic = SPOOL_MAGIC;
    sp->dir = d;
    sp->cfg = c;
    sp->dirfd = -1;
    sp->active_fd = -1;
    sp->ckpt_fd = -1;
    enum fg_spool_status rc = open_dir(sp);
    if (rc == FG_SPOOL_OK)
        rc = recover(sp);
    if (rc == FG_SPOOL_OK)
        rc = reopen_active(sp);
    /* A crash between a checkpoint and its deletions leaves segments to delete. */
    if (rc == FG_SPOOL_OK)
        rc = delete_acked(sp);
    if (rc == FG_SPOOL_OK)
        compact_index(sp);
    if (rc != FG_SPOOL_OK) {
        int e = sp->err_no;
        snprintf(err, errlen, "%s", sp->err);
        spool_free(sp);
        errno = e;
        return rc;
    }
    sp->err[0] = '\0';
    sp->err_no = 0;
    *out = sp;
    return FG_SPOOL_OK;
}

void fg_spool_close(struct fg_spool *sp)
{
    if (sp == NULL)
        return;
    FG_ASSERT(sp->magic == SPOOL_MAGIC);
    if (sp->acked_seq > sp->ckpt_seq && fg_spool_checkpoint(sp) != FG_SPOOL_OK)
        fg_warn("%s; acknowledged records will be sent again", sp->err);
    spool_free(sp);
}

/* ---- append and commit ------------------------------------------------------------- */

/* Free bytes for unprivileged users on the spool's filesystem; UINT64_MAX if unknown. */
static uint64_t fs_free(const struct fg_spool *sp)
{
    struct statvfs v;
    if (fstatvfs(sp->dirfd, &v) != 0)
        return UINT64_MAX;
    return (uint64_t)v.f_bavail * (uint64_t)v.f_frsize;
}

static void set_disk_full(struct fg_spool *sp, bool full, uint64_t free_bytes)
{
    if (full == sp->disk_full)
        return;
    sp->disk_full = full;
    if (full)
        fg_err("spool %s: the filesystem is full (%" PRIu64 " bytes free): records are refused "
               "(the proxy falls back) until delivered records are deleted or space is freed",
               sp->dir, free_bytes);
    else
        fg_notice("spool %s: the filesystem has room again (%" PRIu64 " bytes free): taking "
                  "records",
                  sp->dir, free_bytes);
}

/*
 * Once a write has run out of space, every append first checks that the filesystem has
 * room for it and for what waits to be committed, with some slack: records are refused
 * up front (nothing written, FULL for the proxy) instead of failing a whole batch at its
 * commit. The watch ends when a quarter of the filesystem is free again.
 */
static bool room_for(struct fg_spool *sp, uint64_t frame)
{
    if (!sp->space_watch)
        return true;
    struct statvfs v;
    if (fstatvfs(sp->dirfd, &v) != 0)
        return true;
    uint64_t free_bytes = (uint64_t)v.f_bavail * (uint64_t)v.f_frsize;
    uint64_t total = (uint64_t)v.f_blocks * (uint64_t)v.f_frsize;
    bool room = free_bytes >= sp->buf_len + frame + NOSPACE_SLACK;
    set_disk_full(sp, !room, free_bytes);
    if (room && free_bytes >= total / 4)
        sp->space_watch = false;
    return room;
}

/* A write ran out of space (or quota): watch the free space from now on (room_for). The
 * active segment is closed if it holds records, so that once they are delivered the
 * checkpoint can delete it: a spool whose only segment is active would otherwise stay
 * full with nothing in it. */
static void note_no_space(struct fg_spool *sp, int e)
{
    if (e != ENOSPC && e != EDQUOT)
        return;
    sp->c.no_space_events++;
    sp->space_watch = true;
    set_disk_full(sp, true, fs_free(sp));
    if (sp->active_fd >= 0 && sp->nseg > 0 && sp->segs[sp->nseg - 1].size > 0) {
        close(sp->active_fd);
        sp->active_fd = -1;
    }
}

static enum fg_spool_status start_segment(struct fg_spool *sp)
{
    char name[SEG_NAME_SIZE];
    seg_name(name, sp->next_seq);
    if (!grow((void **)&sp->segs, &sp->capseg, sp->nseg + 1, sizeof(*sp->segs)))
        return fail(sp, ENOMEM, "spool %s: segments", sp->dir);
    int fd = openat(sp->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0) {
        int e = errno;
        note_no_space(sp, e);
        return fail(sp, e, "spool %s: create %s", sp->dir, name);
    }
    sp->segs[sp->nseg++] = (struct seg){.id = sp->next_seq};
    sp->active_fd = fd;
    return FG_SPOOL_OK;
}

size_t fg_spool_uncommitted(const struct fg_spool *sp)
{
    FG_ASSERT(sp->magic == SPOOL_MAGIC);
    return sp->buf_n;
}

enum fg_spool_status fg_spool_appendv(struct fg_spool *sp, const struct iovec *iov, int iovcnt,
                                      int64_t now_ms, uint64_t *seq)
{
    FG_ASSERT(sp->magic == SPOOL_MAGIC);
    if (sp->broken)
        return FG_SPOOL_E_BROKEN;
    size_t len = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > sp->cfg.max_record - len) {
            sp->c.refused_too_big++;
            return FG_SPOOL_E_TOO_BIG;
        }
        len += iov[i].iov_len;
    }
    uint64_t frame = HDR + (uint64_t)len;
    if (sp->cfg.max_bytes > 0 && sp->pending_bytes + frame > sp->cfg.max_bytes) {
        sp->c.refused_full++;
        return FG_SPOOL_E_FULL;
    }
    size_t si, ei;
    if (sp->cfg.max_age_ms > 0 && locate(sp, sp->acked_seq, &si, &ei) &&
        age_ms(now_ms, sp->segs[si].ents[ei].time_ms) > sp->cfg.max_age_ms) {
        sp->c.refused_stale++;
        return FG_SPOOL_E_STALE;
    }
    if (!room_for(sp, frame)) {
        sp->c.refused_no_space++;
        return FG_SPOOL_E_NOSPACE;
    }
    enum fg_spool_status rc;
    if (sp->active_fd < 0 && (rc = start_segment(sp)) != FG_SPOOL_OK)
        return rc;
    struct seg *s = &sp->segs[sp->nseg - 1];
    if (!grow((void **)&sp->buf, &sp->buf_cap, sp->buf_len + frame, 1) ||
        !grow((void **)&s->ents, &s->cap, s->n + 1, sizeof(*s->ents)))
        return fail(sp, ENOMEM, "spool %s: commit buffer", sp->dir);

    uint8_t *p = sp->buf + sp->buf_len;
    put_le32(p, FRAME_MAGIC);
    put_le32(p + 4, (uint32_t)len);
    put_le64(p + 12, sp->next_seq);
    put_le64(p + 20, (uint64_t)now_ms);
    size_t at = HDR;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > 0)
            memcpy(p + at, iov[i].iov_base, iov[i].iov_len);
        at += iov[i].iov_len;
    }
    put_le32(p + 8, frame_crc(p, (uint32_t)len));

    s->ents[s->n++] = (struct entry){
        .seq = sp->next_seq, .time_ms = now_ms, .off = s->size + sp->buf_len, .len = (uint32_t)len};
    sp->buf_len += frame;
    sp->buf_n++;
    sp->pending_records++;
    sp->pending_bytes += frame;
    sp->c.appended++;
    *seq = sp->next_seq++;
    return FG_SPOOL_OK;
}

enum fg_spool_status fg_spool_append(struct fg_spool *sp, const void *data, size_t len,
                                     int64_t now_ms, uint64_t *seq)
{
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    return fg_spool_appendv(sp, &iov, 1, now_ms, seq);
}

/* The batch could not be made durable: forget it, and cut the segment back to its
 * durable end so that the half-written frames can neither be read nor followed. */
static enum fg_spool_status rollback(struct fg_spool *sp, int e, const char *what)
{
    struct seg *s = &sp->segs[sp->nseg - 1];
    char name[SEG_NAME_SIZE];
    seg_name(name, s->id);
    size_t dropped = sp->buf_n;
    sp->c.commit_failed += dropped;
    sp->pending_records -= dropped;
    sp->pending_bytes -= sp->buf_len;
    s->n -= dropped;
    sp->buf_len = sp->buf_n = 0;
    fail(sp, e, "spool %s: commit: %s %s", sp->dir, what, name);
    if (ftruncate(sp->active_fd, (off_t)s->size) != 0 || sync_fd(sp, sp->active_fd, false) != 0) {
        sp->broken = errno ? errno : EIO;
        fg_err("%s; %zu records refused, and cutting the segment back to %" PRIu64
               " bytes failed too (%s): the spool refuses everything until it is reopened",
               sp->err, dropped, s->size, strerror(sp->broken));
        errno = e;
        return FG_SPOOL_E_BROKEN;
    }
    fg_warn("%s; %zu records refused, segment cut back to %" PRIu64 " bytes", sp->err, dropped,
            s->size);
    note_no_space(sp, e);
    errno = e;
    return FG_SPOOL_E_IO;
}

enum fg_spool_status fg_spool_commit(struct fg_spool *sp, uint64_t *durable)
{
    FG_ASSERT(sp->magic == SPOOL_MAGIC);
    if (sp->broken)
        return FG_SPOOL_E_BROKEN;
    if (sp->buf_n > 0) {
        FG_ASSERT(sp->active_fd >= 0);
        struct seg *s = &sp->segs[sp->nseg - 1];
        if (pwrite_all(sp->active_fd, sp->buf, sp->buf_len, s->size) != 0)
            return rollback(sp, errno, "write");
        if (sync_fd(sp, sp->active_fd, true) != 0)
            return rollback(sp, errno, "fdatasync");
        if (!s->dir_synced) {
            if (sync_fd(sp, sp->dirfd, false) != 0)
                return rollback(sp, errno, "fsync directory for");
            s->dir_synced = true;
        }
        s->size += sp->buf_len;
        sp->committed_seq = s->ents[s->n - 1].seq;
        sp->c.committed += sp->buf_n;
        sp->c.commits++;
        sp->buf_len = sp->buf_n = 0;
        if (sp->buf_cap > BUF_KEEP) {
            free(sp->buf);
            sp->buf = NULL;
            sp->buf_cap = 0;
        }
        if (s->size >= sp->cfg.segment_size) {
            close(sp->active_fd);
            sp->active_fd = -1;
        }
    }
    if (durable != NULL)
        *durable = sp->committed_seq;
    return FG_SPOOL_OK;
}

/* ---- acknowledgment and checkpoint ------------------------------------------------- */

enum fg_spool_status fg_spool_ack(struct fg_spool *sp, uint64_t upto)
{
    FG_ASSERT(sp->magic == SPOOL_MAGIC);
    if (upto <= sp->acked_seq)
        return FG_SPOOL_OK;
    if (upto > sp->committed_seq) {
        fail(sp, EINVAL, "spool %s: ack of %" PRIu64 " beyond the last committed record %" PRIu64,
             sp->dir, upto, sp->committed_seq);
        return FG_SPOOL_E_INVAL;
    }
    size_t si, ei;
    if (locate(sp, sp->acked_seq, &si, &ei)) {
        for (; si < sp->nseg; si++, ei = 0) {
            const struct seg *s = &sp->segs[si];
            for (; ei < s->n && s->ents[ei].seq <= upto; ei++) {
                sp->pending_records--;
                sp->pending_bytes -= HDR + s->ents[ei].len;
            }
            if (ei < s->n)
                break;
        }
    }
    sp->acked_seq = upto;
    return FG_SPOOL_OK;
}

/* Delete leading segments with nothing above the durable checkpoint. Only the durable
 * one counts: a record deleted before its acknowledgment is on disk would, after a
 * crash, let its sequence number be handed out again. */
static enum fg_spool_status delete_acked(struct fg_spool *sp)
{
    size_t k = 0;
    enum fg_spool_status rc = FG_SPOOL_OK;
    while (k < sp->nseg) {
        struct seg *s = &sp->segs[k];
        if ((k == sp->nseg - 1 && sp->active_fd >= 0) || seg_last_seq(s) > sp->ckpt_seq)
            break;
        char name[SEG_NAME_SIZE];
        seg_name(name, s->id);
        if (unlinkat(sp->dirfd, name, 0) != 0 && errno != ENOENT) {
            rc = fail(sp, errno, "spool %s: delete %s", sp->dir, name);
            break;
        }
        /* An iterator still holding the file open would keep its blocks allocated: on a
         * full disk the deletion would free nothing. */
        for (struct fg_spool_iter *it = sp->iters; it != NULL; it = it->next) {
            if (it->fd >= 0 && it->fd_seg == s->id) {
                close(it->fd);
                it->fd = -1;
            }
        }
        free(s->ents);
        sp->c.segments_deleted++;
        k++;
    }
    if (k > 0) {
        memmove(sp->segs, sp->segs + k, (sp->nseg - k) * sizeof(*sp->segs));
        sp->nseg -= k;
    }
    return rc;
}

/*
 * Drop the index entries of acknowledged records: nothing reads them again, and a busy
 * segment would otherwise hold 32 bytes per record until it is deleted (the memory grew
 * with every record taken). Entries go in batches (at least 4096, or half the index) so
 * that the moves cost O(1) per record, and an index left mostly empty is shrunk.
 */
#define COMPACT_MIN 4096u
static void compact_index(struct fg_spool *sp)
{
    for (size_t i = 0; i < sp->nseg; i++) {
        struct seg *s = &sp->segs[i];
        if (s->n == 0)
            continue;
        size_t k = 0, hi = s->n; /* k: entries at or below the acknowledgment */
        while (k < hi) {
            size_t mid = k + (hi - k) / 2;
            if (s->ents[mid].seq <= sp->acked_seq)
                k = mid + 1;
            else
                hi = mid;
        }
        if (k == 0 || (k < s->n && k < COMPACT_MIN && k * 2 < s->n))
            break; /* nothing here yet, and later segments hold nothing acknowledged */
        s->dropped_last = s->ents[k - 1].seq;
        memmove(s->ents, s->ents + k, (s->n - k) * sizeof(*s->ents));
        s->n -= k;
        if (s->cap > 64 && s->n < s->cap / 4) {
            size_t cap = s->n * 2 > 16 ? s->n * 2 : 16;
            struct entry *e = realloc(s->ents, cap * sizeof(*e));
            if (e != NULL) {
                s->ents = e;
                s->cap = cap;
            }
        }
        if (s->n > 0)
            break; /* later segments hold nothing acknowledged */
    }
}

enum fg_spool_status fg_spool_checkpoint(struct fg_spool *sp)
{
    FG_ASSERT(sp->magic == SPOOL_MAGIC);
    if (sp->acked_seq > sp->ckpt_seq) {
        enum fg_spool_status rc = ckpt_write(sp, sp->acked_seq);
        if (rc != FG_SPOOL_OK)
            return rc;
        sp->ckpt_seq = sp->acked_seq;
    }
    enum fg_spool_status rc = delete_acked(sp);
    compact_index(sp);
    return rc;
}

/* ---- reading for the sink ---------------------------------------------------------- */

struct fg_spool_iter *fg_spool_iter_new(struct fg_spool *sp)
{
    FG_ASSERT(sp->magic == SPOOL_MAGIC);
    struct fg_spool_iter *it = calloc(1, sizeof(*it));
    if (it == NULL)
        return NULL;
    it->magic = ITER_MAGIC;
    it->sp = sp;
    it->last = sp->acked_seq;
    it->fd = -1;
    it->next = sp->iters;
    if (sp->iters != NULL)
        sp->iters->prev = it;
    sp->iters = it;
    return it;
}

void fg_spool_iter_free(struct fg_spool_iter *it)
{
    if (it == NULL)
        return;
    FG_ASSERT(it->magic == ITER_MAGIC);
    if (it->prev != NULL)
        it->prev->next = it->next;
    else
        it->sp->iters = it->next;
    if (it->next != NULL)
        it->next->prev = it->prev;
    if (it->fd >= 0)
        close(it->fd);
    free(it->buf);
    it->magic = 0;
    free(it);
}

enum fg_spool_status fg_spool_iter_next(struct fg_spool_iter *it, struct fg_spool_record *rec)
{
    FG_ASSERT(it->magic == ITER_MAGIC);
    struct fg_spool *sp = it->sp;
    FG_ASSERT(sp->magic == SPOOL_MAGIC);
    for (;;) {
        uint64_t after = it->last > sp->acked_seq ? it->last : sp->acked_seq;
        size_t si, ei;
        if (!locate(sp, after, &si, &ei) || sp->segs[si].ents[ei].seq > sp->committed_seq)
            return FG_SPOOL_END;
        const struct seg *s = &sp->segs[si];
        const struct entry e = s->ents[ei];
        char name[SEG_NAME_SIZE];
        seg_name(name, s->id);
        if (it->fd < 0 || it->fd_seg != s->id) {
            if (it->fd >= 0)
                close(it->fd);
            it->fd = openat(sp->dirfd, name, O_RDONLY | O_CLOEXEC);
            if (it->fd < 0)
                return fail(sp, errno, "spool %s: open %s for reading", sp->dir, name);
            it->fd_seg = s->id;
        }
        size_t frame = HDR + (size_t)e.len;
        if (!grow((void **)&it->buf, &it->cap, frame, 1))
            return fail(sp, ENOMEM, "spool %s: read buffer", sp->dir);
        ssize_t got = pread_all(it->fd, it->buf, frame, e.off);
        if (got < 0)
            return fail(sp, errno, "spool %s: read %s at offset %" PRIu64, sp->dir, name, e.off);
        const uint8_t *p = it->buf;
        if ((size_t)got < frame || get_le32(p) != FRAME_MAGIC || get_le32(p + 4) != e.len ||
            get_le64(p + 12) != e.seq || get_le32(p + 8) != frame_crc(p, e.len)) {
            fg_warn("spool %s: segment %s offset %" PRIu64 ": record %" PRIu64
                    " no longer reads back intact, skipped",
                    sp->dir, name, e.off, e.seq);
            sp->c.read_corrupt++;
            it->last = e.seq;
            continue;
        }
        rec->seq = e.seq;
        rec->time_ms = e.time_ms;
        rec->data = p + HDR;
        rec->len = e.len;
        it->last = e.seq;
        return FG_SPOOL_OK;
    }
}

/* ---- stats and errors -------------------------------------------------------------- */

void fg_spool_get_stats(const struct fg_spool *sp, int64_t now_ms, struct fg_spool_stats *st)
{
    FG_ASSERT(sp->magic == SPOOL_MAGIC);
    *st = sp->c;
    st->pending_records = sp->pending_records;
    st->pending_bytes = sp->pending_bytes;
    st->uncommitted = sp->buf_n;
    st->oldest_age_ms = 0;
    size_t si, ei;
    if (locate(sp, sp->acked_seq, &si, &ei))
        st->oldest_age_ms = age_ms(now_ms, sp->segs[si].ents[ei].time_ms);
    st->segments = sp->nseg;
    st->disk_bytes = 0;
    st->index_entries = 0;
    for (size_t i = 0; i < sp->nseg; i++) {
        st->disk_bytes += sp->segs[i].size;
        st->index_entries += sp->segs[i].n;
    }
    st->disk_full = sp->disk_full;
    st->fs_free_bytes = fs_free(sp);
    st->next_seq = sp->next_seq;
    st->committed_seq = sp->committed_seq;
    st->acked_seq = sp->acked_seq;
    st->checkpoint_seq = sp->ckpt_seq;
}

int fg_spool_errno(const struct fg_spool *sp)
{
    FG_ASSERT(sp->magic == SPOOL_MAGIC);
    return sp->err_no;
}

const char *fg_spool_error(const struct fg_spool *sp)
{
    FG_ASSERT(sp->magic == SPOOL_MAGIC);
    return sp->err;
}

const char *fg_spool_status_name(enum fg_spool_status s)
{
    static const char *const names[FG_SPOOL_STATUS__COUNT] = {
        [FG_SPOOL_OK] = "ok",
        [FG_SPOOL_END] = "end",
        [FG_SPOOL_E_FULL] = "full",
        [FG_SPOOL_E_STALE] = "stale",
        [FG_SPOOL_E_TOO_BIG] = "too_big",
        [FG_SPOOL_E_INVAL] = "inval",
        [FG_SPOOL_E_LOCKED] = "locked",
        [FG_SPOOL_E_IO] = "io",
        [FG_SPOOL_E_BROKEN] = "broken",
        [FG_SPOOL_E_NOSPACE] = "no_space",
    };
    if ((unsigned)s < FG_SPOOL_STATUS__COUNT && names[s] != NULL)
        return names[s];
    return "unknown";
}
