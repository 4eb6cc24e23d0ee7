/*
 * waitroom.h — the waiting room: a fair, fleet-wide queue in front of routes (issue 18).
 *
 * As in AWS's Virtual Waiting Room: a visitor takes the next ticket (one atomic step),
 * kept in a signed cookie; a serving number moves forward under an inlet strategy (a
 * fixed rate, a cap on active sessions, adaptive on the app's p99 and 5xx rate); a
 * visitor whose ticket is at or below the serving number is admitted for session_ttl
 * (a second signed cookie, renewed while they are active).
 *
 * Parts, one header:
 *  - keys and tokens (token.c): HMAC-SHA256 keys from a root-only file (several lines:
 *    the first signs, all verify, so keys rotate with an overlap); tokens bound to the
 *    room's name, signed and checked in constant time.
 *  - the inlet (inlet.c): pure arithmetic, how far the serving number moves in one step.
 *  - rooms (room.c): process-wide, by name, kept across reloads; their state (local, or
 *    the fleet's as last read from Redis), counters, the admin operations, and one thread
 *    that moves the serving number (locally, or through Redis under a lease).
 *  - Redis (redis.c): the scripts (ticket, step) run with EVALSHA through proxy/redis;
 *    every key of a room shares one hash tag (cluster mode).
 *  - the page (page.c): the waiting page from a template, the JSON status.
 */
#ifndef FG_WAITROOM_H
#define FG_WAITROOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct event_base;
struct fg_redis_endpoint;

/* ---- keys and tokens (token.c) ------------------------------------------------------- */

#define FG_WAITROOM_KEYS_MAX  8
#define FG_WAITROOM_KEY_MIN   16 /* bytes of a key line, at least */
#define FG_WAITROOM_KEY_MAX   256
#define FG_WAITROOM_TOKEN_MAX 160
#define FG_WAITROOM_NAME_MAX  64

struct fg_waitroom_keys {
    size_t n; /* the first signs; every one verifies */
    struct {
        unsigned char k[FG_WAITROOM_KEY_MAX];
        size_t len;
        /* HMAC's inner and outer SHA-256 states after the padded key (EVP_MD_CTX *),
         * made once: a verification then costs two copies and two short digests. */
        void *inner, *outer;
    } key[FG_WAITROOM_KEYS_MAX];
};

/* Read keys from path: one key per line (at least 16 bytes each; blank lines and lines
 * starting with '#' skipped), refused like a Redis password_file when the file is not
 * regular, is readable by group or others, or belongs to someone else than root or this
 * process's user. False with a message in err (never a key). */
bool fg_waitroom_keys_load(const char *path, struct fg_waitroom_keys *out, char *err,
                           size_t errlen);
/* From text (tests, and the file's contents). Keys made by either are released with
 * fg_waitroom_keys_wipe. */
bool fg_waitroom_keys_parse(const char *text, size_t len, struct fg_waitroom_keys *out, char *err,
                            size_t errlen);
void fg_waitroom_keys_wipe(struct fg_waitroom_keys *k);

enum fg_waitroom_token_kind {
    FG_WR_TICKET = 'T',   /* a place in the queue */
    FG_WR_ADMITTED = 'A', /* an admitted session */
};

struct fg_waitroom_token {
    enum fg_waitroom_token_kind kind;
    uint64_t ticket; /* the queue number (admitted: the ticket it was admitted with) */
    int64_t issued;  /* Unix seconds: the ticket's issue, or the session's last renewal */
    bool early;      /* taken before opens_at: its rank is drawn at the opening */
};

/* "1.T.<ticket>.<issued>.<e|f>.<mac>" with mac = base64url(HMAC-SHA256(first key, room
 * NUL text-before-the-mac)), 22 characters (128 bits). Returns its length (< cap), 0 if
 * cap is too small or there is no key. */
size_t fg_waitroom_token_sign(const struct fg_waitroom_keys *k, const char *room,
                              const struct fg_waitroom_token *t, char *out, size_t cap);

enum fg_waitroom_verdict {
    FG_WR_TOKEN_OK = 0,
    FG_WR_TOKEN_MALFORMED, /* not our format */
    FG_WR_TOKEN_BAD_MAC,   /* tampered, another room's, or a key no longer configured */
};
enum fg_waitroom_verdict fg_waitroom_token_verify(const struct fg_waitroom_keys *k,
                                                  const char *room, const char *s, size_t len,
                                                  struct fg_waitroom_token *out);

/* ---- the inlet (inlet.c) -------------------------------------------------------------- */

enum fg_waitroom_decision {
    FG_WR_DEC_MOVED = 0,    /* the serving number moved */
    FG_WR_DEC_IDLE,         /* nobody waits */
    FG_WR_DEC_CAPPED,       /* max_active sessions reached */
    FG_WR_DEC_SLOWED,       /* adaptive: above the slow-down mark, half rate */
    FG_WR_DEC_PAUSED_APP,   /* adaptive: the app is over its p99 or 5xx threshold */
    FG_WR_DEC_PAUSED_ADMIN, /* paused through the admin API */
    FG_WR_DEC_NOT_OPEN,     /* before opens_at */
    FG_WR_DEC_INACTIVE,     /* `active off`: everyone goes through */
    FG_WR_DEC__COUNT,
};
const char *fg_waitroom_decision_name(enum fg_waitroom_decision d);

struct fg_waitroom_inlet {
    uint64_t rate_milli;         /* admissions per 1000 s (admit 50/s: 50000); 0: no rate cap */
    uint64_t max_active;         /* 0: no cap */
    uint64_t p99_limit_us;       /* adaptive: pause above it; 0: not adaptive on latency */
    uint64_t err_limit_permille; /* adaptive: pause above this 5xx share; 0: not on errors */
};

struct fg_waitroom_step {
    /* in */
    uint64_t issued;     /* tickets taken so far (the last ticket's number) */
    uint64_t serving;    /* the serving number now */
    uint64_t active;     /* admitted sessions not expired */
    uint64_t carry;      /* milli-admissions left over from the previous step */
    uint64_t elapsed_ms; /* since the previous step (capped at 1 s: no burst after a pause) */
    uint64_t p99_us;     /* the app's p99 over the fleet (adaptive); 0: unknown */
    uint64_t err_permille;
    bool paused; /* by the admin API */
    bool open;   /* opens_at passed */
    /* out */
    uint64_t new_serving, new_carry;
    enum fg_waitroom_decision decision;
};

/* One step of the inlet: how far the serving number moves. Pure. */
void fg_waitroom_inlet_step(const struct fg_waitroom_inlet *in, struct fg_waitroom_step *s);

/* Seconds until a visitor `position` places from the front is admitted at rate_milli
 * (rounded up; 0 for position 0; UINT32_MAX when nothing moves). */
uint64_t fg_waitroom_eta_s(uint64_t position, uint64_t rate_milli);

/* ---- rooms (room.c) ------------------------------------------------------------------- */

/* What the config says about one room (strings copied). */
struct fg_waitroom_config {
    const char *name;
    struct fg_waitroom_inlet inlet;
    uint64_t session_ttl_ms;
    int64_t opens_at_ms;             /* Unix ms; 0: open */
    bool active;                     /* `active on|off` (the admin API switches it too) */
    struct fg_redis_endpoint *redis; /* NULL: local */
    uint64_t redis_timeout_ms;
    uint64_t fallback_permille; /* of the rate, while Redis cannot answer */
    bool fail_closed;           /* Redis gone: admit nobody new */
    uint64_t poll_ms;           /* the page's polling pace */
};

struct fg_waitroom;

/* Start the rooms' thread (it moves the serving numbers). Once, before rooms are used. */
bool fg_waitroom_start(void);
/* Stop it and free every room (at exit). */
void fg_waitroom_stop(void);

/* The room of this name, made or updated from c (a reload changes its settings, keeps
 * its state and counters). NULL when out of memory. Rooms live until fg_waitroom_stop. */
struct fg_waitroom *fg_waitroom_configure(const struct fg_waitroom_config *c);
const char *fg_waitroom_name(const struct fg_waitroom *r);

/* What the stage does with one visitor. */
enum fg_waitroom_answer {
    FG_WR_PASS = 0,    /* admitted (or the room is off): on to the app */
    FG_WR_WAIT,        /* waiting: the page (or 503) with their position */
    FG_WR_NEED_TICKET, /* needs a ticket (or its early rank) from Redis first */
};

/* A visitor's state, filled by fg_waitroom_check and used for the answer. */
struct fg_waitroom_visit {
    /* in */
    struct fg_waitroom_token ticket; /* valid when has_ticket */
    bool has_ticket;
    bool bad_ticket; /* a cookie was there and failed verification */
    struct fg_waitroom_token session;
    bool has_session;
    uint64_t now_ms;   /* wall */
    bool redis_failed; /* Redis could not give this visit its ticket: the fallback decides */
    /* out */
    bool admitted;     /* let through (admitted now or before, or the room is off) */
    uint64_t position; /* people ahead + 1 (0: admitted, or no place: the fallback) */
    uint64_t eta_s;
    uint64_t opens_in_s; /* > 0 before opening */
    bool set_ticket;     /* out_ticket goes into the cookie */
    bool set_session;    /* out_session likewise (admitted now, or renewed) */
    bool fallback;       /* decided without Redis */
    struct fg_waitroom_token out_ticket, out_session;
};

/* Decide for a visitor with the room's state now (no I/O). FG_WR_NEED_TICKET: call
 * fg_waitroom_take_ticket (Redis) then fg_waitroom_check again. */
struct fg_waitroom_worker;
struct fg_waitroom_pending;
enum fg_waitroom_answer fg_waitroom_check(struct fg_waitroom *r, struct fg_waitroom_worker *w,
                                          struct fg_waitroom_visit *v);

/* A ticket (or an early ticket's rank) for v from Redis, on the calling worker's client:
 * true when sent, and cb(arg) runs later with v->ticket set (out_ticket and set_ticket
 * too), or with v->fallback set when Redis did not answer; false when nothing could be
 * sent (v->fallback is set: check again, the fallback decides). */
typedef void (*fg_waitroom_cb)(void *arg);
bool fg_waitroom_take_ticket(struct fg_waitroom *r, struct fg_waitroom_worker *w,
                             struct fg_waitroom_visit *v, fg_waitroom_cb cb, void *arg,
                             struct fg_waitroom_pending **pending);
void fg_waitroom_cancel(struct fg_waitroom_pending *p);

/* A worker's Redis clients for the rooms (one per room with Redis), made on the worker's
 * thread; NULL when no room uses Redis. */
struct fg_waitroom_worker *fg_waitroom_worker_new(struct event_base *base);
/* Make this worker's client for r's Redis now (so that admissions can be recorded). */
void fg_waitroom_worker_prepare(struct fg_waitroom_worker *w, struct fg_waitroom *r);
void fg_waitroom_worker_free(struct fg_waitroom_worker *w);

/* An answer of the app behind the room (adaptive inlet): status and time to its head. */
void fg_waitroom_observe(struct fg_waitroom *r, int status, uint64_t us);
/* Count a served waiting page / JSON / API refusal, a bypass. */
void fg_waitroom_count_page(struct fg_waitroom *r, bool json);
void fg_waitroom_count_bypass(struct fg_waitroom *r);
void fg_waitroom_count_tampered(struct fg_waitroom *r);

/* Settings the page and the answers need. */
uint64_t fg_waitroom_poll_ms(const struct fg_waitroom *r);
/* The pace the page polls at for v: poll (the room's) when the wait is long, faster
 * (down to a second) near the front. */
uint64_t fg_waitroom_pace_ms(const struct fg_waitroom *r, const struct fg_waitroom_visit *v);
uint64_t fg_waitroom_session_ttl_ms(const struct fg_waitroom *r);

/* Admin: "open" (now, whatever opens_at says), "pause", "resume", "activate",
 * "deactivate", "rate" (value: admissions per 1000 s). room NULL: every room. Returns
 * how many rooms it applied to. */
size_t fg_waitroom_admin(const char *room, const char *op, uint64_t value);

/* The "waiting_rooms":{...} member of /stats (followed by a comma) and the
 * flashgate_waitroom_* families of /metrics. */
void fg_waitroom_stats_json(struct evbuffer *out);
void fg_waitroom_stats_metrics(struct evbuffer *out);

/* For the dashboard sample: the i-th room's numbers. */
struct fg_waitroom_summary {
    char name[FG_WAITROOM_NAME_MAX];
    uint64_t issued, serving, waiting, active, admitted, rate_milli, eta_s;
    bool redis_ok, fallback, paused, active_on;
    enum fg_waitroom_decision decision;
};
size_t fg_waitroom_count(void);
bool fg_waitroom_summary(size_t i, struct fg_waitroom_summary *out);

/* ---- the page (page.c) ---------------------------------------------------------------- */

/* The waiting page: the template (NULL: the built-in one) with {{position}}, {{ahead}},
 * {{eta}}, {{updated}}, {{room}}, {{poll_ms}}, {{status_url}} and {{target}} replaced
 * (HTML-escaped). The built-in page polls status_url every poll_ms and goes to target
 * when admitted. */
void fg_waitroom_page(struct evbuffer *out, const char *tmpl, size_t tmpl_len, const char *room,
                      const struct fg_waitroom_visit *v, uint64_t poll_ms, const char *status_url,
                      const char *target, size_t target_len);
/* The status document: {"room":..,"admitted":..,"position":..,"ahead":..,"eta_s":..,
 * "opens_in_s":..,"poll_ms":..,"updated":..}. */
void fg_waitroom_status_json(struct evbuffer *out, const char *room,
                             const struct fg_waitroom_visit *v, uint64_t poll_ms);

#endif /* FG_WAITROOM_H */
