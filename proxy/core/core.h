/*
 * core.h — the small shared pieces every module stands on: logging, time, units,
 * socket addresses, CIDR sets and statistics primitives. Nothing here knows about
 * HTTP or any proxy feature.
 */
#ifndef FG_CORE_H
#define FG_CORE_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <netinet/in.h>

/* Runtime invariant check: for our own bugs only, never for network input. */
#define FG_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fg_panic(__FILE__, __LINE__, #cond);                                                   \
    } while (0)
_Noreturn void fg_panic(const char *file, int line, const char *what);

#define FG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Copy a string into dst[cap] (cap > 0), cut to fit, always terminated; the length copied.
 * What snprintf(dst, cap, "%s", src) does, for a tenth of its cost (the request path). */
static inline size_t fg_strcopy(char *dst, size_t cap, const char *src)
{
    size_t n = 0;
    while (n + 1 < cap && src[n] != '\0') {
        dst[n] = src[n];
        n++;
    }
    dst[n] = '\0';
    return n;
}

/* ---- logging ---------------------------------------------------------------------- */

enum fg_log_level { FG_LOG_ERROR = 0, FG_LOG_WARN, FG_LOG_NOTICE, FG_LOG_INFO, FG_LOG_DEBUG };

/* Open the error log (NULL or "stderr" for standard error). Safe to call again to
 * switch files; the previous file is closed. Returns false with errno set on failure. */
bool fg_log_open(const char *path, enum fg_log_level level);
/* Reopen the current log file (after logrotate moved it). On failure (errno set) the
 * previous file stays in use, and the caller says so: lines must not vanish silently. */
bool fg_log_reopen(void);
/* Switch the error log to fd, already open on path (fg_log_file_open; -1: standard
 * error), taking it over: for a caller that had to know the file opens before
 * committing to it (a reload). */
void fg_log_use_fd(int fd, const char *path, enum fg_log_level level);
/* The path of the current error log file ("" for standard error). */
void fg_log_path(char *out, size_t outlen);
/* Open a log file for appending (O_APPEND|O_CLOEXEC, created 0640), for the error log
 * and the access logs alike. A file created while the process is root is given to the
 * owner set below: flashgate opens its logs before it drops privileges, and must still
 * be able to reopen them (SIGUSR1, logrotate) as the user it runs as afterwards.
 * Returns the descriptor, or -1 with errno set. */
int fg_log_file_open(const char *path);
/* The user and group that log files created as root are given to; (uid_t)-1: none. */
void fg_log_set_file_owner(uid_t uid, gid_t gid);
void fg_log_set_level(enum fg_log_level level);
enum fg_log_level fg_log_get_level(void);
bool fg_log_level_parse(const char *s, enum fg_log_level *out);
void fg_log(enum fg_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define fg_err(...)    fg_log(FG_LOG_ERROR, __VA_ARGS__)
#define fg_warn(...)   fg_log(FG_LOG_WARN, __VA_ARGS__)
#define fg_notice(...) fg_log(FG_LOG_NOTICE, __VA_ARGS__)
#define fg_info(...)   fg_log(FG_LOG_INFO, __VA_ARGS__)
#define fg_debug(...)                                                                              \
    do {                                                                                           \
        if (fg_log_get_level() >= FG_LOG_DEBUG)                                                    \
            fg_log(FG_LOG_DEBUG, __VA_ARGS__);                                                     \
    } while (0)

/* ---- time ------------------------------------------------------------------------- */

/* Monotonic milliseconds / microseconds, for timeouts and latency. */
uint64_t fg_mono_ms(void);
uint64_t fg_mono_us(void);
/* Wall clock seconds and milliseconds since the epoch, for logs and HTTP dates. */
int64_t fg_wall_s(void);
int64_t fg_wall_ms(void);
/* A retry delay: base doubled per attempt after the first, capped at max, times a random
 * 0.5..1 (jitter, so that many clients that failed together do not retry together). */
uint64_t fg_backoff_ms(uint64_t base, uint64_t max, unsigned attempts);

/* ---- units ------------------------------------------------------------------------ */

/* "75s", "500ms", "2m", "1h", "1d"; a bare number is seconds. */
bool fg_parse_duration_ms(const char *s, uint64_t *ms);
/* "512", "64k", "512m", "2g" (powers of 1024; k/m/g case-insensitive). */
bool fg_parse_size(const char *s, uint64_t *bytes);
/* "50r/s", "600r/m" ("r/min" too): stored as requests per 1000 seconds to keep
 * sub-1/s rates exact. */
bool fg_parse_rate(const char *s, uint64_t *per_ks);
/* The value of a hexadecimal digit (either case), or -1: percent-decoding everywhere. */
int fg_hex_value(char c);
/* A non-negative decimal integer that fits in max. */
bool fg_parse_uint(const char *s, uint64_t max, uint64_t *out);

/* ---- addresses -------------------------------------------------------------------- */

struct fg_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[112]; /* as written in the config: "127.0.0.1:3000", "[::1]:80", "unix:/p" */
};

/* Parse "host:port", "[v6]:port", "*:port", "port" or "unix:/path". host must be a
 * numeric address or a name resolvable now (resolved once, at config load). */
bool fg_addr_parse(const char *s, int default_port, struct fg_addr *out, char *err, size_t errlen);
/* Numeric text of a peer address without port ("10.0.0.1", "::1") into out. */
void fg_addr_ip_text(const struct sockaddr *sa, char *out, size_t outlen);
int fg_addr_port(const struct sockaddr *sa);

struct fg_cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    uint8_t prefix;
};

/* "10.0.0.0/8", "::1", "fd00::/8". */
bool fg_cidr_parse(const char *s, struct fg_cidr *out);
bool fg_cidr_match(const struct fg_cidr *set, size_t n, const struct sockaddr *sa);
/* Same for a textual address (an X-Forwarded-For hop); false if not an IP. */
bool fg_cidr_match_text(const struct fg_cidr *set, size_t n, const char *ip, size_t len);

/* ---- statistics primitives --------------------------------------------------------- */

/* A counter written by one thread and read by others: relaxed atomics compile to plain
 * loads and stores on x86, so the hot path pays nothing, and readers see whole values. */
typedef _Atomic uint64_t fg_counter_t;
static inline void fg_counter_add(fg_counter_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}
static inline uint64_t fg_counter_get(const fg_counter_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}
/* A gauge can move both ways and is written by one thread as well. */
static inline void fg_gauge_add(fg_counter_t *g, int64_t d)
{
    atomic_store_explicit(g, atomic_load_explicit(g, memory_order_relaxed) + (uint64_t)d,
                          memory_order_relaxed);
}

/* Latency histogram in microseconds with fixed, Prometheus-friendly upper bounds. */
#define FG_HIST_BUCKETS 16
extern const uint64_t fg_hist_bounds_us[FG_HIST_BUCKETS]; /* last is UINT64_MAX (+Inf) */
struct fg_hist {
    fg_counter_t bucket[FG_HIST_BUCKETS]; /* non-cumulative counts */
    fg_counter_t count;
    fg_counter_t sum_us;
};
void fg_hist_observe(struct fg_hist *h, uint64_t us);
/* Quantile estimate (upper bound of the bucket holding it) from summed buckets. */
uint64_t fg_hist_quantile(const uint64_t bucket[FG_HIST_BUCKETS], double q);

/* ---- keyed hashing ----------------------------------------------------------------- */

/* Streaming SipHash-2-4 (Aumasson and Bernstein), 64-bit output: a keyed hash for tables
 * whose keys clients choose (addresses, URLs, header values). With a secret key per
 * process nobody can pick keys that all land in one bucket. Feed the pieces of one
 * message with update, in order. */
struct fg_siphash {
    uint64_t v0, v1, v2, v3;
    uint64_t tail;   /* bytes not yet compressed, little-endian */
    size_t tail_len; /* 0..7 */
    uint64_t total;  /* bytes fed so far */
};

/* Start a hash under the 16-byte key. */
void fg_siphash_init(struct fg_siphash *s, const uint8_t key[16]);
/* Feed len bytes. */
void fg_siphash_update(struct fg_siphash *s, const void *data, size_t len);
/* The 64-bit hash of everything fed. s must not be updated afterwards. */
uint64_t fg_siphash_final(struct fg_siphash *s);

/* ---- secret files ----------------------------------------------------------------- */

/* One read() of at most cap bytes of path into buf, after checking that the file is a
 * secret's: a regular file, no access for group or others, owned by root or this user.
 * Returns the bytes read, or -1 with err set ("WHAT PATH: why", what the directive is
 * named). The caller wipes buf. */
ssize_t fg_secret_file_read(const char *what, const char *path, char *buf, size_t cap, char *err,
                            size_t errlen);

/* ---- service manager ------------------------------------------------------------ */

/* Send a state string ("READY=1", "RELOADING=1", "STOPPING=1", "STATUS=...") to
 * systemd over $NOTIFY_SOCKET (sd_notify protocol, no libsystemd). No-op returning
 * true when NOTIFY_SOCKET is unset. */
bool fg_sd_notify(const char *state);

/* ---- command line ---------------------------------------------------------------- */

/* The options both daemons take: -c FILE, -t (check the configuration), -T (check and
 * print the effective configuration; only where the program can), -v, -h. */
struct fg_cli {
    /* set by the caller */
    const char *prog;      /* "flashgate": the usage and -v lines */
    const char *conf_path; /* the default configuration file; -c replaces it */
    const char *dump_help; /* what -T prints; NULL: no -T */
    const char *signals;   /* the usage's last line: what each signal does */
    /* set by fg_cli_parse */
    bool test; /* -t or -T: check and exit */
    bool dump; /* -T */
};

/* Read argv. Returns -1 when the program is to go on (cli filled); otherwise the status
 * main() returns at once: 0 after -v or -h (printed on stdout), 2 after a usage error
 * (the usage on stderr). */
int fg_cli_parse(struct fg_cli *cli, int argc, char **argv);

#endif /* FG_CORE_H */
