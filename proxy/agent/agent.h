/*
 * agent.h — flashgate-agent, the local queue agent (issue 6): the durable spool and the
 * proxy <-> agent protocol (the sinks and drain mode are the daemon's, in agentd.h; AWS
 * signing and credentials are proxy/aws's).
 */
#ifndef FG_AGENT_H
#define FG_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- spool (spool.c) ------------------------------------------------------------------ */
/* SPOOL-API-BEGIN */
/*
 * The spool: flashgate-agent's durable queue of offloaded requests. The proxy hands the
 * agent one opaque payload per request ({method, path, headers, body, idempotency key},
 * encoded by the agent; the spool never parses it) and answers 202 only once the record
 * is durable here. A sink (SQS, or the local replay) reads the records back in order.
 *
 * On disk: a directory of append-only segment files, each named after the sequence
 * number it was started for (00000000000000000001.seg, 20 digits), and a file
 * `checkpoint` with the highest sequence number the sink has acknowledged: two slots of
 * 512 bytes (magic, version 2, acked u64, generation u64, crc32 of those 24 bytes), the
 * newer generation counts. Every record is one frame, little-endian:
 *
 *   magic u32 | length u32 | crc u32 | sequence u64 | time_ms i64 | payload[length]
 *
 * crc is zlib's crc32 over length, sequence, time_ms and payload (everything but magic
 * and crc itself): a CRC of the payload alone would let a flipped sequence number or a
 * flipped length through. time_ms is the append time (wall clock), kept on disk so that
 * the age limit still holds after a restart. Sequence numbers start at 1 and grow by one
 * per append; a commit that fails leaves a gap. They are never handed out twice, except
 * those of a torn tail that recovery cuts off (a commit that never finished, or a last
 * record the disk damaged): the next append reuses them. Sinks must not deduplicate on
 * sequence numbers; the idempotency key is the identity of a request.
 *
 * Life of a record:
 *  1. fg_spool_append copies it into the commit buffer and gives it a sequence number.
 *     Nothing is written yet and nothing blocks.
 *  2. fg_spool_commit writes the whole buffer with one pwrite and makes it durable with
 *     one fdatasync (plus one directory fsync the first time a segment is used), then
 *     says up to which sequence number records are durable. Only then may the agent tell
 *     the proxy "queued".
 *  3. A sink reads committed records in order with fg_spool_iter_next and, as records are
 *     delivered, calls fg_spool_ack(N): every record up to N is done.
 *  4. fg_spool_checkpoint (from a timer, say every second, and from fg_spool_close)
 *     overwrites the older slot of the checkpoint in place (pwrite, fdatasync) and then
 *     deletes the segments that hold nothing above it. Overwriting blocks the file
 *     already has needs no free space, so a spool whose disk is full still records what
 *     was delivered and deletes it; a torn write spoils one slot and the other still
 *     holds the previous checkpoint. (The file is made whole, then renamed into place,
 *     when the spool is opened; an older agent's 24-byte checkpoint is read and replaced.)
 * After a crash every committed record above the checkpoint is read again: delivery is
 * at least once; the idempotency key inside the payload lets the far end drop
 * duplicates. A record whose commit was cut short by the crash but reached the disk
 * intact is kept as well (the proxy fell back for it, so it may arrive twice: once
 * through the app, once through the queue, with the same key).
 *
 * Group commit is driven by the caller's event loop, no thread: append every record that
 * arrived during one loop iteration, then commit once before waiting for events again;
 * records that arrive while an fdatasync runs form the next batch by themselves. To bound
 * the latency or the batch, commit early when fg_spool_uncommitted() reaches N records,
 * or from a T-microsecond timer armed at the first append of a batch.
 *
 * Acknowledgments are cumulative ("everything up to N"). A sink whose batch entries
 * succeed out of order keeps its in-flight records in the order it read them and acks
 * the highest sequence of the fully delivered prefix; gaps in the numbering need no care
 * because the sink only ever names sequences it has read. Entries delivered beyond that
 * prefix are sent again after a crash. To resend after a failure, open a new iterator:
 * it starts after the acknowledged prefix.
 *
 * Recovery (fg_spool_open) reads every segment and checks every frame. A bad frame (bad
 * magic, impossible length, length beyond the end of the file, CRC mismatch) is logged
 * with its segment and offset, and the scan resynchronises at the next offset where a
 * valid frame starts: the bad bytes are skipped (corrupt_skipped, corrupt_bytes) and every
 * intact record after them is kept. When no valid frame follows, the bad bytes are a torn
 * tail: the segment is truncated after its last good record (tails_truncated), so appends
 * continue cleanly. Skipped bytes stay in the file until the segment is deleted and are
 * reported again by every open. A valid frame whose sequence is not above the one before
 * it is skipped the same way but never truncated. Sequence numbers continue after the
 * highest recovered record, the checkpoint and the newest segment's name.
 *
 * Limits: max_bytes bounds the framed size of the unacknowledged records (committed or
 * not), max_age_ms the age of the oldest of them; beyond either, append refuses
 * (FG_SPOOL_E_FULL, FG_SPOOL_E_STALE), counts it, and writes nothing: the proxy falls
 * back. Disk use stays below max_bytes plus about one segment of acknowledged records
 * not yet deleted, plus skipped corrupt bytes. Memory: 32 bytes of index per record in
 * the live segments, plus the commit buffer.
 *
 * Errors are returned, never fatal. A failed write or fdatasync in a commit (ENOSPC,
 * EIO) drops the batch, truncates the segment back to its last durable byte and returns
 * FG_SPOOL_E_IO; the spool stays usable. When a write ran out of space (ENOSPC, EDQUOT)
 * the spool closes the active segment (so that, once delivered, it can be deleted: a
 * spool whose only segment is active would stay full with nothing in it) and refuses
 * appends with FG_SPOOL_E_NOSPACE, writing nothing, until the filesystem shows room for
 * them again (fstatvfs); stats say so (disk_full, refused_no_space). Only when that repair fails
 * too does the spool answer FG_SPOOL_E_BROKEN to every append and commit until it is closed and
 * opened again (recovery then repairs the file). fg_spool_errno and fg_spool_error say what failed.
 *
 * A spool is used by one thread at a time. The directory is locked (flock) while open, so
 * a second agent on the same directory gets FG_SPOOL_E_LOCKED.
 */
#include <sys/uio.h>

#define FG_SPOOL_HEADER_SIZE          28u         /* bytes framing each record */
#define FG_SPOOL_RECORD_MAX           (16u << 20) /* largest payload the format accepts */
#define FG_SPOOL_SEGMENT_SIZE_DEFAULT (64u << 20)
#define FG_SPOOL_SEGMENT_SIZE_MAX     (1u << 30)
#define FG_SPOOL_MAX_RECORD_DEFAULT   (2u << 20)

struct fg_spool;
struct fg_spool_iter;

/* What every spool call returns. */
enum fg_spool_status {
    FG_SPOOL_OK = 0,
    FG_SPOOL_END,       /* iterator: no further committed record, for now */
    FG_SPOOL_E_FULL,    /* append: max_bytes of unacknowledged records reached */
    FG_SPOOL_E_STALE,   /* append: the oldest unacknowledged record is over max_age_ms */
    FG_SPOOL_E_TOO_BIG, /* append: payload over max_record */
    FG_SPOOL_E_INVAL,   /* bad configuration, or an ack beyond the last committed record */
    FG_SPOOL_E_LOCKED,  /* open: another spool (process) has the directory open */
    FG_SPOOL_E_IO,      /* a system call or an allocation failed: see fg_spool_errno */
    FG_SPOOL_E_BROKEN,  /* a failed commit could not be undone: close and open again */
    FG_SPOOL_E_NOSPACE, /* append: the filesystem was full and has no room yet */
    FG_SPOOL_STATUS__COUNT
};

/* "ok", "end", "full", "stale", "too_big", "inval", "locked", "io", "broken", "no_space";
 * "unknown" otherwise. */
const char *fg_spool_status_name(enum fg_spool_status s);

/* Zero fields take the defaults. */
struct fg_spool_config {
    uint64_t segment_size; /* start a new segment after a commit leaves one this big
                              (default 64 MiB, at most FG_SPOOL_SEGMENT_SIZE_MAX); a segment
                              may exceed it by one commit's records */
    uint64_t max_bytes;    /* framed bytes of unacknowledged records; 0: no bound */
    uint64_t max_age_ms;   /* age of the oldest unacknowledged record; 0: no bound */
    uint32_t max_record;   /* largest payload append takes (default 2 MiB, at most
                              FG_SPOOL_RECORD_MAX) */
};

/* Counters since open, and the current state. */
struct fg_spool_stats {
    uint64_t pending_records; /* appended, not yet acknowledged (committed or not) */
    uint64_t pending_bytes;   /* their framed size, what max_bytes bounds */
    uint64_t uncommitted;     /* records appended since the last commit */
    uint64_t oldest_age_ms;   /* age of the oldest pending record; 0 when none */
    uint64_t segments;        /* segment files */
    uint64_t disk_bytes;      /* their total size */
    uint64_t next_seq;        /* sequence the next append gets */
    uint64_t committed_seq;   /* every record up to it that exists is durable */
    uint64_t acked_seq;       /* acknowledged so far (fg_spool_ack) */
    uint64_t checkpoint_seq;  /* acknowledged and on disk (fg_spool_checkpoint) */
    uint64_t appended;        /* records accepted by append */
    uint64_t committed;       /* records made durable by commit */
    uint64_t commits;         /* commits that wrote something */
    uint64_t fsyncs;          /* every fsync and fdatasync the spool made */
    uint64_t commit_failed;   /* records dropped because their commit failed */
    uint64_t refused_full;    /* appends refused by max_bytes */
    uint64_t refused_stale;   /* appends refused by max_age_ms */
    uint64_t refused_too_big; /* appends refused by max_record */
    uint64_t corrupt_skipped; /* bad regions found by recovery (each about one record) */
    uint64_t corrupt_bytes;   /* their bytes */
    uint64_t tails_truncated; /* of those, torn tails cut off */
    uint64_t read_corrupt;    /* records that no longer read back intact, skipped */
    uint64_t segments_deleted;
    uint64_t checkpoint_invalid; /* unreadable checkpoint found at open (treated as 0) */
    uint64_t disk_full;          /* 1 while appends wait for the filesystem to have room */
    uint64_t no_space_events;    /* writes that ran out of space (ENOSPC, EDQUOT) */
    uint64_t refused_no_space;   /* appends refused because the filesystem was full */
    uint64_t fs_free_bytes;      /* free on the spool's filesystem (UINT64_MAX: unknown) */
    uint64_t index_entries;      /* records in the in-memory index (32 bytes each) */
};

/*
 * Open the spool in dir, creating the directory (mode 0750) if needed, take its lock and
 * recover it: the checkpoint is read (a stale checkpoint.tmp is removed; a missing or
 * older checkpoint file is made anew), every segment is scanned and repaired as
 * described above, and segments already covered by the checkpoint are deleted. On success *out is
 * the spool. On failure *out is NULL, err holds a line saying what failed, errno is set, and the
 * status says why (E_INVAL, E_LOCKED, E_IO).
 */
enum fg_spool_status fg_spool_open(const char *dir, const struct fg_spool_config *cfg,
                                   struct fg_spool **out, char *err, size_t errlen);

/* Write the checkpoint if acknowledgments moved (best effort, logged on failure), drop
 * uncommitted records (they were never confirmed to anyone), release the lock and free
 * the spool. Iterators must be freed first. NULL is a no-op. */
void fg_spool_close(struct fg_spool *sp);

/*
 * Add one record, payload data[0..len), stamped with now_ms (wall clock, fg_wall_ms())
 * and buffered until the next commit; *seq gets its sequence number. Refusals write
 * nothing and leave the spool as it was: E_TOO_BIG, E_FULL, E_STALE, E_NOSPACE (the
 * filesystem is full), E_BROKEN, or E_IO when a new segment file cannot be created or
 * memory runs out. Never blocks on I/O but
 * to create a segment file.
 */
enum fg_spool_status fg_spool_append(struct fg_spool *sp, const void *data, size_t len,
                                     int64_t now_ms, uint64_t *seq);

/* The same with the payload gathered from iov[0..iovcnt), so the agent can spool a
 * request's pieces without joining them first. */
enum fg_spool_status fg_spool_appendv(struct fg_spool *sp, const struct iovec *iov, int iovcnt,
                                      int64_t now_ms, uint64_t *seq);

/* Records appended since the last commit. */
size_t fg_spool_uncommitted(const struct fg_spool *sp);

/*
 * Make every appended record durable: one pwrite, one fdatasync (and one fsync of the
 * directory when the segment is new). On FG_SPOOL_OK *durable (if not NULL) is the
 * highest sequence number now durable: every record appended before this call. With
 * nothing to commit it returns at once. On E_IO every record appended since the previous
 * commit is gone (answer "not queued" for each), the segment is cut back to its durable
 * end, and the spool stays usable; E_BROKEN when even that failed. Blocks for the sync.
 */
enum fg_spool_status fg_spool_commit(struct fg_spool *sp, uint64_t *durable);

/*
 * The sink has delivered every record up to upto: they stop counting as pending (the
 * limits free up at once) and a new iterator starts after them. Durable only at the next
 * fg_spool_checkpoint. An upto at or below the current acknowledgment is a no-op; one
 * above the last committed record is refused with E_INVAL.
 */
enum fg_spool_status fg_spool_ack(struct fg_spool *sp, uint64_t upto);

/*
 * Persist the acknowledgment in place (nothing is written if it did not move; no free
 * space needed), then delete the segments holding nothing above it (never the one
 * appends go to), closing any iterator's descriptor on them so their blocks are freed.
 * E_IO if the checkpoint or a deletion failed; the previous checkpoint then still
 * holds, and the next call tries again.
 */
enum fg_spool_status fg_spool_checkpoint(struct fg_spool *sp);

/* A record read back for the sink. data stays valid until the next call on the iterator
 * that returned it. */
struct fg_spool_record {
    uint64_t seq;
    int64_t time_ms; /* when it was appended */
    const void *data;
    size_t len;
};

/* An iterator over the committed records above the acknowledgment, in sequence order,
 * across segments. NULL when out of memory. Several may be open at once. */
struct fg_spool_iter *fg_spool_iter_new(struct fg_spool *sp);

/*
 * The next committed record after the last one returned and after the acknowledgment:
 * FG_SPOOL_OK with *rec filled, FG_SPOOL_END when there is none yet (call again after
 * the next commit), E_IO when the read failed (the same record is tried again on the
 * next call). A record that no longer reads back intact (the disk changed under us) is
 * logged, counted in read_corrupt and skipped.
 */
enum fg_spool_status fg_spool_iter_next(struct fg_spool_iter *it, struct fg_spool_record *rec);

/* Free an iterator. NULL is a no-op. */
void fg_spool_iter_free(struct fg_spool_iter *it);

/* Fill *st; now_ms (wall clock) gives oldest_age_ms. */
void fg_spool_get_stats(const struct fg_spool *sp, int64_t now_ms, struct fg_spool_stats *st);

/* errno of the last failure (0 if none), and a line saying what failed and where
 * ("" if none). */
int fg_spool_errno(const struct fg_spool *sp);
const char *fg_spool_error(const struct fg_spool *sp);
/* SPOOL-API-END */

/* ---- proxy <-> agent protocol (proto.c) ------------------------------------------------ */
/* PROTO-API-BEGIN */
/*
 * The proxy hands offloaded requests to flashgate-agent over a unix stream socket
 * (default /run/flashgate/agent.sock). Both directions carry length-prefixed binary
 * frames, every integer little-endian:
 *
 *   length u32 | version u8 (= 1) | type u8 | body[length - 2]
 *
 * length counts the bytes after itself. Two frame types exist.
 *
 * RECORD (type 1), proxy to agent: one request to make durable.
 *
 *   off  size  field
 *     6     8  id          chosen by the proxy, echoed in the answer (never interpreted)
 *    14     1  key_len     1..255: the idempotency key, visible ASCII (0x21..0x7e)
 *    15     1  method_len  1..32: an RFC 9110 token ("POST")
 *    16     2  target_len  1..65535: path and query as sent ("/api/orders?x=1"), starts
 *                          with '/', visible ASCII only
 *    18     2  n_headers   0..FG_AGENT_PROTO_MAX_HEADERS
 *    20     4  body_len
 *    24        key, method, target (no separators, no NULs)
 *              then n_headers times: name_len u16 (1..255), value_len u16 (0..8192), the
 *              name (a token), the value (no CR, LF or NUL)
 *              then the body
 *
 * length must be exactly 20 + the sum of the variable parts: a frame whose fields do
 * not add up is refused. The agent stores the whole frame as the spool payload, so the
 * sink decodes records read back from the spool with the same function.
 *
 * ANSWER (type 2), agent to proxy: exactly one per RECORD, 15 bytes.
 *
 *   length u32 (= 11) | version u8 (= 1) | type u8 (= 2) | id u64 | status u8
 *
 * status: DURABLE (the record is on disk, after its group commit's fdatasync),
 * DUPLICATE (a record with the same idempotency key was accepted within the recent-key
 * window, and is durable: acknowledged again, not queued twice), FULL (the spool refused
 * it: size or age limit), TOO_BIG (the frame or the payload is over the agent's limit),
 * ERROR (the frame's fields were invalid, or the commit failed: not queued).
 *
 * Requests are pipelined: the proxy may send any number of RECORDs without waiting; the
 * agent answers after the commit that covers them, many answers at once, and answers
 * are matched by id, not by order (a refusal is answered at once, before the DURABLE
 * answers of records sent earlier). A frame with a bad version or type, or a length
 * below the fixed part, loses the framing: the agent closes the connection, and every
 * record not yet answered on it must be treated as not queued. A frame over the limit
 * is answered TOO_BIG (once its first 14 bytes are in) and its bytes are skipped.
 *
 * The functions below are pure: no allocation, no I/O, and they never read outside
 * buf[0..len). Decoded slices point into buf.
 */
#define FG_AGENT_PROTO_VERSION      1
#define FG_AGENT_PROTO_RECORD       1
#define FG_AGENT_PROTO_ANSWER       2
#define FG_AGENT_PROTO_RECORD_FIXED 24u /* bytes of a RECORD before its variable parts */
#define FG_AGENT_PROTO_ANSWER_SIZE  15u
#define FG_AGENT_PROTO_MAX_HEADERS  64
#define FG_AGENT_PROTO_KEY_MAX      255u
#define FG_AGENT_PROTO_METHOD_MAX   32u
#define FG_AGENT_PROTO_TARGET_MAX   65535u
#define FG_AGENT_PROTO_NAME_MAX     255u
#define FG_AGENT_PROTO_VALUE_MAX    8192u

/* The answer statuses, as on the wire. */
enum fg_agent_status {
    FG_AGENT_DURABLE = 1,
    FG_AGENT_DUPLICATE = 2,
    FG_AGENT_FULL = 3,
    FG_AGENT_TOO_BIG = 4,
    FG_AGENT_ERROR = 5,
};

/* "durable", "duplicate", "full", "too_big", "error"; "unknown" otherwise. */
const char *fg_agent_status_name(int status);

/* One header of a record, as (pointer, length) slices. */
struct fg_agent_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* A record, to encode or as decoded (slices into the frame). */
struct fg_agent_record {
    uint64_t id;
    const char *key;
    size_t key_len;
    const char *method;
    size_t method_len;
    const char *target;
    size_t target_len;
    size_t n_headers;
    struct fg_agent_header headers[FG_AGENT_PROTO_MAX_HEADERS];
    const void *body;
    size_t body_len;
};

/* What the decoders return. */
enum fg_agent_proto_result {
    FG_AGENT_PROTO_OK = 0,
    FG_AGENT_PROTO_INCOMPLETE, /* a prefix of a frame: read more and call again */
    FG_AGENT_PROTO_TOO_BIG,    /* length over max_frame: *id and *frame_len are set; answer
                                  TOO_BIG and skip frame_len bytes */
    FG_AGENT_PROTO_INVALID,    /* framing intact, fields wrong: *id and *frame_len set;
                                  answer ERROR and skip frame_len bytes */
    FG_AGENT_PROTO_CORRUPT,    /* framing lost (version, type, short length): close */
};

/* The size of r encoded, 0 when a field is out of the limits above (lengths only, the
 * characters are checked by the encoder). */
size_t fg_agent_proto_record_size(const struct fg_agent_record *r);

/* Encode r into out[0..cap). Returns the frame size, or 0 if r is invalid (a field out
 * of its limits or with a forbidden character) or cap is too small. */
size_t fg_agent_proto_encode_record(const struct fg_agent_record *r, void *out, size_t cap);

/*
 * Decode one RECORD frame from the start of buf[0..len) into *r. max_frame bounds the
 * whole frame (length field included). On OK *frame_len is the frame's size (the bytes
 * to consume). INCOMPLETE is returned only while no limit is passed, so a caller that
 * buffers at most max_frame bytes always makes progress. id and frame_len (either may
 * be NULL) are set as described in enum fg_agent_proto_result.
 */
enum fg_agent_proto_result fg_agent_proto_decode_record(const void *buf, size_t len,
                                                        size_t max_frame, struct fg_agent_record *r,
                                                        uint64_t *id, size_t *frame_len);

/* Write the 15-byte ANSWER frame for id and status into out. */
void fg_agent_proto_encode_answer(uint64_t id, enum fg_agent_status status,
                                  uint8_t out[FG_AGENT_PROTO_ANSWER_SIZE]);

/* Decode one ANSWER from the start of buf[0..len): OK (15 bytes consumed, *id and *status
 * set), INCOMPLETE, or CORRUPT (wrong length, version, type, or an unknown status). */
enum fg_agent_proto_result fg_agent_proto_decode_answer(const void *buf, size_t len, uint64_t *id,
                                                        int *status);
/* PROTO-API-END */

#endif /* FG_AGENT_H */
