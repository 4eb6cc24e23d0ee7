/*
 * agentstat.c — flashgate-agent's numbers inside flashgate's /stats and /metrics
 * (`admin { agent_status 127.0.0.1:9902; }`).
 *
 * Once a second the admin thread asks the agent's status listener for GET /status (one
 * JSON object) and GET /metrics (Prometheus text) and keeps the last good answers. A
 * scrape of flashgate then carries them as they were, with how old they are, so the
 * spool depth of the instance is one scrape away and a scrape never waits on the agent.
 * What is kept is checked first: the JSON must be one object, and only well-formed
 * `flashgate_agent_` lines and their `# HELP`/`# TYPE` are passed on, so whatever answers
 * on that port cannot break our exposition.
 *
 * `up` is the outcome of the last poll, not the age of the last answer: an agent that
 * died refuses the next connection, so `up` turns false within a poll (a second) and
 * its last numbers are no longer shown as if they were current.
 */
#include "admin/admin.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <event2/bufferevent.h>

#include "core/core.h"

#define POLL_MS   1000
#define FETCH_MS  2000
#define BODY_MAX  (1u << 20)
#define STALE_MS  10000 /* older answers are not shown (an agent that hangs: no answer) */
#define PREFIX    "flashgate_agent_"
#define PREFIX_LN (sizeof(PREFIX) - 1)

enum which { W_STATUS = 0, W_METRICS, W__COUNT };

static const char *const paths[W__COUNT] = {"/status", "/metrics"};

static struct {
    struct event_base *base;
    const struct fg_admin_ops *ops;
    struct event *timer;
    struct bufferevent *bev[W__COUNT];
    struct evbuffer *body[W__COUNT]; /* the last good answer */
    uint64_t got_ms[W__COUNT];       /* when it came; 0: never */
    bool up[W__COUNT];               /* the last poll got a usable answer */
    uint64_t polls, failures;
    char last_error[128];
    char addr_text[112];
    bool configured;
} A;

static void set_error(const char *what)
{
    snprintf(A.last_error, sizeof(A.last_error), "%s", what);
}

/* The body of a "HTTP/1.x 200" answer in raw, or NULL. */
static const char *answer_body(const char *raw, size_t len, size_t *body_len)
{
    if (len < 12 || memcmp(raw, "HTTP/1.", 7) != 0 || memcmp(raw + 8, " 200", 4) != 0)
        return NULL;
    for (size_t i = 12; i + 4 <= len; i++)
        if (memcmp(raw + i, "\r\n\r\n", 4) == 0) {
            *body_len = len - i - 4;
            return raw + i + 4;
        }
    return NULL;
}

/* One JSON object: starts with '{' and ends with '}' once surrounding space is gone. */
static bool keep_status(const char *b, size_t n, struct evbuffer *out)
{
    while (n > 0 && (b[n - 1] == '\n' || b[n - 1] == '\r' || b[n - 1] == ' '))
        n--;
    while (n > 0 && (*b == ' ' || *b == '\n')) {
        b++;
        n--;
    }
    if (n < 2 || b[0] != '{' || b[n - 1] != '}' || memchr(b, '\0', n) != NULL)
        return false;
    evbuffer_add(out, b, n);
    return true;
}

static bool metric_name_ok(const char *s, size_t n)
{
    if (n <= PREFIX_LN || memcmp(s, PREFIX, PREFIX_LN) != 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == ':'))
            return false;
    return true;
}

/* The agent's exposition lines we pass on: samples and HELP/TYPE of flashgate_agent_
 * metrics (other comments and blank lines are dropped). false when nothing usable. */
static bool keep_metrics(const char *b, size_t n, struct evbuffer *out)
{
    size_t kept = 0;
    while (n > 0) {
        const char *nl = memchr(b, '\n', n);
        size_t ll = nl ? (size_t)(nl - b) : n;
        const char *name = b;
        size_t rest = ll;
        bool comment = ll > 7 && (memcmp(b, "# HELP ", 7) == 0 || memcmp(b, "# TYPE ", 7) == 0);
        if (comment) {
            name = b + 7;
            rest = ll - 7;
        }
        size_t nn = 0;
        while (nn < rest && name[nn] != ' ' && name[nn] != '{')
            nn++;
        bool printable = true;
        for (size_t i = 0; i < ll; i++)
            if ((unsigned char)b[i] < 0x20 && b[i] != '\t')
                printable = false;
        if (printable && nn < rest && metric_name_ok(name, nn)) {
            evbuffer_add(out, b, ll);
            evbuffer_add(out, "\n", 1);
            kept++;
        }
        if (nl == NULL)
            break;
        b = nl + 1;
        n -= ll + 1;
    }
    return kept > 0;
}

static void fetch_done(enum which w, bool ok)
{
    struct bufferevent *bev = A.bev[w];
    A.bev[w] = NULL;
    if (ok) {
        struct evbuffer *in = bufferevent_get_input(bev);
        size_t len = evbuffer_get_length(in);
        const char *raw = (const char *)evbuffer_pullup(in, (ev_ssize_t)len);
        size_t bl = 0;
        const char *body = raw ? answer_body(raw, len, &bl) : NULL;
        struct evbuffer *kept = evbuffer_new();
        ok = body != NULL && kept != NULL &&
             (w == W_STATUS ? keep_status(body, bl, kept) : keep_metrics(body, bl, kept));
        if (ok) {
            if (A.body[w] != NULL)
                evbuffer_free(A.body[w]);
            A.body[w] = kept;
            A.got_ms[w] = fg_mono_ms();
        } else {
            if (kept != NULL)
                evbuffer_free(kept);
            set_error(body == NULL ? "not a 200 answer" : "an answer we cannot use");
        }
    }
    if (!ok)
        A.failures++;
    A.up[w] = ok;
    bufferevent_free(bev);
}

static void fetch_read_cb(struct bufferevent *bev, void *arg)
{
    enum which w = (enum which)(intptr_t)arg;
    if (evbuffer_get_length(bufferevent_get_input(bev)) > BODY_MAX) {
        set_error("answer too large");
        fetch_done(w, false);
    }
}

static void fetch_event_cb(struct bufferevent *bev, short what, void *arg)
{
    enum which w = (enum which)(intptr_t)arg;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED)
        return;
    if (what & BEV_EVENT_EOF) {
        fetch_done(w, true); /* we asked for Connection: close: the answer ends here */
        return;
    }
    set_error(what & BEV_EVENT_TIMEOUT ? "timed out" : "connection refused or failed");
    fetch_done(w, false);
}

static void fetch(enum which w, const struct fg_addr *addr)
{
    if (A.bev[w] != NULL)
        return; /* the last one is still going (it has its own timeout) */
    struct bufferevent *bev = bufferevent_socket_new(A.base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL)
        return;
    struct timeval tv = {FETCH_MS / 1000, (FETCH_MS % 1000) * 1000};
    bufferevent_set_timeouts(bev, &tv, &tv);
    bufferevent_setcb(bev, fetch_read_cb, NULL, fetch_event_cb, (void *)(intptr_t)w);
    evbuffer_add_printf(bufferevent_get_output(bev),
                        "GET %s HTTP/1.1\r\nHost: flashgate-agent\r\nConnection: close\r\n\r\n",
                        paths[w]);
    A.bev[w] = bev;
    if (bufferevent_socket_connect(bev, (const struct sockaddr *)&addr->ss, (int)addr->len) != 0) {
        set_error("cannot connect");
        fetch_done(w, false);
        return;
    }
    bufferevent_enable(bev, EV_READ);
}

static void poll_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    struct fg_config *cfg = A.ops->config(); /* a reload may set, move or drop it */
    A.configured = cfg->admin.agent_status;
    if (A.configured) {
        snprintf(A.addr_text, sizeof(A.addr_text), "%s", cfg->admin.agent_status_addr.text);
        A.polls++;
        fetch(W_STATUS, &cfg->admin.agent_status_addr);
        fetch(W_METRICS, &cfg->admin.agent_status_addr);
    }
    fg_config_unref(cfg);
}

bool fg_admin_agentstat_start(struct event_base *base, const struct fg_admin_ops *ops)
{
    A.base = base;
    A.ops = ops;
    A.timer = event_new(base, -1, EV_PERSIST, poll_cb, NULL);
    if (A.timer == NULL)
        return false;
    struct timeval tv = {POLL_MS / 1000, (POLL_MS % 1000) * 1000};
    event_add(A.timer, &tv);
    poll_cb(-1, 0, NULL); /* the first numbers before the first second */
    return true;
}

void fg_admin_agentstat_stop(void)
{
    for (int w = 0; w < W__COUNT; w++) {
        if (A.bev[w] != NULL)
            bufferevent_free(A.bev[w]);
        A.bev[w] = NULL;
        if (A.body[w] != NULL)
            evbuffer_free(A.body[w]);
        A.body[w] = NULL;
    }
    if (A.timer != NULL)
        event_free(A.timer);
    A.timer = NULL;
}

static bool fresh(enum which w, uint64_t now, uint64_t *age)
{
    *age = A.got_ms[w] ? now - A.got_ms[w] : 0;
    return A.up[w] && A.body[w] != NULL && A.got_ms[w] != 0 && *age <= STALE_MS;
}

void fg_admin_agentstat_json(struct evbuffer *out)
{
    if (!A.configured) {
        evbuffer_add_printf(out, "\"agent\":null");
        return;
    }
    uint64_t age;
    bool up = fresh(W_STATUS, fg_mono_ms(), &age);
    evbuffer_add_printf(out,
                        "\"agent\":{\"address\":\"%s\",\"up\":%s,\"polls\":%" PRIu64
                        ",\"failures\":%" PRIu64 ",\"last_error\":\"%s\"",
                        A.addr_text, up ? "true" : "false", A.polls, A.failures, A.last_error);
    if (up) {
        evbuffer_add_printf(out, ",\"age_ms\":%" PRIu64 ",\"status\":", age);
        evbuffer_add(out, evbuffer_pullup(A.body[W_STATUS], -1),
                     evbuffer_get_length(A.body[W_STATUS]));
    }
    evbuffer_add(out, "}", 1);
}

void fg_admin_agentstat_metrics(struct evbuffer *out)
{
    if (!A.configured)
        return;
    uint64_t age;
    bool up = fresh(W_METRICS, fg_mono_ms(), &age);
    evbuffer_add_printf(out,
                        "# HELP flashgate_agent_status_up Whether flashgate-agent's status "
                        "listener answered in the last %d s.\n"
                        "# TYPE flashgate_agent_status_up gauge\n"
                        "flashgate_agent_status_up %d\n",
                        STALE_MS / 1000, up ? 1 : 0);
    if (!up)
        return;
    evbuffer_add_printf(out,
                        "# HELP flashgate_agent_status_age_seconds How old the agent's numbers "
                        "below are.\n"
                        "# TYPE flashgate_agent_status_age_seconds gauge\n"
                        "flashgate_agent_status_age_seconds %.3f\n",
                        (double)age / 1000);
    evbuffer_add(out, evbuffer_pullup(A.body[W_METRICS], -1),
                 evbuffer_get_length(A.body[W_METRICS]));
}
