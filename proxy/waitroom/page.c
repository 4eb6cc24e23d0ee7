/*
 * page.c — what a waiting visitor sees: the page (the shop's template or the built-in
 * one, no external assets) and the JSON status the page polls.
 *
 * The page polls the URL it was asked for, with the header `X-Waitroom: status`: the
 * poll reaches the same route, hence the same room, whatever the routes look like, and
 * it is answered by the room (never the app). When the answer says admitted, the page
 * replaces itself with the requested URL: no click.
 */
#include "waitroom/waitroom.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

/* The polling script: {{poll_ms}} is the first pace; each answer sets the next one. It
 * keeps the lowest position shown, so a poll answered by an instance a step behind
 * another never shows a place further back. */
static const char script[] =
    "<script>\n"
    "(function () {\n"
    "  var pace = {{poll_ms}}, shown = {{position}};\n"
    "  function set(id, text) { var e = document.getElementById(id); if (e) e.textContent = "
    "text; }\n"
    "  function eta(s) {\n"
    "    if (s >= 4294967295) return 'unknown';\n"
    "    if (s < 60) return 'less than a minute';\n"
    "    var m = Math.round(s / 60);\n"
    "    return m < 60 ? 'about ' + m + ' minute' + (m > 1 ? 's' : '') :\n"
    "      'about ' + Math.floor(m / 60) + ' h ' + (m % 60) + ' min';\n"
    "  }\n"
    "  function poll() {\n"
    "    fetch(location.href, {headers: {'X-Waitroom': 'status'}, credentials: 'same-origin',\n"
    "                          cache: 'no-store'})\n"
    "      .then(function (r) { return r.json(); })\n"
    "      .then(function (s) {\n"
    "        if (s.admitted) { set('wr-status', 'It is your turn. Loading\\u2026');\n"
    "          location.replace(location.href); return; }\n"
    "        if (s.position > 0 && (shown <= 0 || s.position < shown)) shown = s.position;\n"
    "        set('wr-position', shown > 0 ? shown.toLocaleString('en') : '-');\n"
    "        set('wr-ahead', shown > 0 ? (shown - 1).toLocaleString('en') : '-');\n"
    "        set('wr-eta', s.opens_in_s > 0 ? 'the sale opens in ' + eta(s.opens_in_s) :\n"
    "            eta(s.eta_s));\n"
    "        set('wr-updated', new Date(s.updated * 1000).toLocaleTimeString('en-GB'));\n"
    "        pace = s.poll_ms || pace;\n"
    "        setTimeout(poll, pace);\n"
    "      })\n"
    "      .catch(function () { setTimeout(poll, pace * 2); });\n"
    "  }\n"
    "  setTimeout(poll, pace);\n"
    "})();\n"
    "</script>\n";

static const char builtin[] =
    "<!doctype html>\n"
    "<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>You are in line</title>\n"
    "<style>\n"
    "body{font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;"
    "background:#f4f5f7;color:#1d2330}\n"
    "main{max-width:34rem;margin:12vh auto;background:#fff;border-radius:12px;padding:2rem 2.5rem;"
    "box-shadow:0 2px 12px rgba(0,0,0,.08)}\n"
    "h1{font-size:1.5rem;margin:0 0 .5rem}\n"
    ".big{font-size:3rem;font-weight:700;margin:.25rem 0;color:#0b5fff}\n"
    "dl{display:grid;grid-template-columns:auto 1fr;gap:.25rem 1rem;margin:1.5rem 0 0}\n"
    "dt{color:#5b6475}dd{margin:0;font-weight:600}\n"
    "p.note{color:#5b6475;font-size:.9rem;margin-top:1.5rem}\n"
    "</style></head>\n"
    "<body><main>\n"
    "<h1>You are in line</h1>\n"
    "<p id=\"wr-status\">Lots of people are here right now. Keep this page open: it moves on "
    "by itself when it is your turn.</p>\n"
    "<div>Your place in line</div>\n"
    "<div class=\"big\" id=\"wr-position\">{{position}}</div>\n"
    "<dl><dt>People ahead of you</dt><dd id=\"wr-ahead\">{{ahead}}</dd>\n"
    "<dt>Estimated wait</dt><dd id=\"wr-eta\">{{eta}}</dd>\n"
    "<dt>Last update</dt><dd id=\"wr-updated\">{{updated}}</dd></dl>\n"
    "<p class=\"note\">Reloading does not lose your place, and does not move you "
    "forward.</p>\n"
    "</main>\n"
    "{{script}}"
    "</body></html>\n";

static void add_escaped(struct evbuffer *out, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        switch (s[i]) {
        case '<':
            evbuffer_add(out, "&lt;", 4);
            break;
        case '>':
            evbuffer_add(out, "&gt;", 4);
            break;
        case '&':
            evbuffer_add(out, "&amp;", 5);
            break;
        case '"':
            evbuffer_add(out, "&quot;", 6);
            break;
        case '\'':
            evbuffer_add(out, "&#39;", 5);
            break;
        default:
            evbuffer_add(out, s + i, 1);
        }
    }
}

static void format_eta(char *out, size_t cap, const struct fg_waitroom_visit *v)
{
    uint64_t s = v->opens_in_s > 0 ? v->opens_in_s : v->eta_s;
    const char *pre = v->opens_in_s > 0 ? "the sale opens in " : "";
    if (s >= UINT32_MAX)
        snprintf(out, cap, "unknown");
    else if (s < 60)
        snprintf(out, cap, "%sless than a minute", pre);
    else if (s < 3600)
        snprintf(out, cap, "%sabout %" PRIu64 " minute%s", pre, (s + 30) / 60,
                 (s + 30) / 60 > 1 ? "s" : "");
    else
        snprintf(out, cap, "%sabout %" PRIu64 " h %" PRIu64 " min", pre, s / 3600, s % 3600 / 60);
}

static void format_number(char *out, size_t cap, uint64_t n)
{
    char d[24];
    int len = snprintf(d, sizeof(d), "%" PRIu64, n);
    size_t o = 0;
    for (int i = 0; i < len && o + 2 < cap; i++) {
        if (i > 0 && (len - i) % 3 == 0)
            out[o++] = ',';
        out[o++] = d[i];
    }
    out[o] = '\0';
}

void fg_waitroom_page(struct evbuffer *out, const char *tmpl, size_t tmpl_len, const char *room,
                      const struct fg_waitroom_visit *v, uint64_t poll_ms, const char *status_url,
                      const char *target, size_t target_len)
{
    if (tmpl == NULL) {
        tmpl = builtin;
        tmpl_len = sizeof(builtin) - 1;
    }
    char position[32], ahead[32], eta[64], updated[16], poll[24];
    if (v->position > 0) {
        format_number(position, sizeof(position), v->position);
        format_number(ahead, sizeof(ahead), v->position - 1);
    } else {
        snprintf(position, sizeof(position), "-");
        snprintf(ahead, sizeof(ahead), "-");
    }
    format_eta(eta, sizeof(eta), v);
    time_t now = (time_t)(v->now_ms / 1000);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(updated, sizeof(updated), "%H:%M:%S UTC", &tm);
    snprintf(poll, sizeof(poll), "%" PRIu64, poll_ms);
    const char *p = tmpl, *end = tmpl + tmpl_len;
    while (p < end) {
        const char *open = memmem(p, (size_t)(end - p), "{{", 2);
        if (open == NULL) {
            evbuffer_add(out, p, (size_t)(end - p));
            break;
        }
        evbuffer_add(out, p, (size_t)(open - p));
        const char *close = memmem(open + 2, (size_t)(end - open - 2), "}}", 2);
        if (close == NULL) {
            evbuffer_add(out, open, (size_t)(end - open));
            break;
        }
        size_t nl = (size_t)(close - open - 2);
        const char *name = open + 2;
#define IS(lit) (nl == sizeof(lit) - 1 && memcmp(name, lit, nl) == 0)
        if (IS("position"))
            evbuffer_add(out, position, strlen(position));
        else if (IS("ahead"))
            evbuffer_add(out, ahead, strlen(ahead));
        else if (IS("eta"))
            add_escaped(out, eta, strlen(eta));
        else if (IS("updated"))
            evbuffer_add(out, updated, strlen(updated));
        else if (IS("room"))
            add_escaped(out, room, strlen(room));
        else if (IS("poll_ms"))
            evbuffer_add(out, poll, strlen(poll));
        else if (IS("status_url"))
            add_escaped(out, status_url, strlen(status_url));
        else if (IS("target"))
            add_escaped(out, target, target_len);
        else if (IS("script")) {
            /* the script with its own two placeholders */
            const char *s = script;
            const char *m1 = strstr(s, "{{poll_ms}}");
            evbuffer_add(out, s, (size_t)(m1 - s));
            evbuffer_add(out, poll, strlen(poll));
            s = m1 + 11;
            const char *m2 = strstr(s, "{{position}}");
            evbuffer_add(out, s, (size_t)(m2 - s));
            evbuffer_add_printf(out, "%" PRIu64, v->position);
            s = m2 + 12;
            evbuffer_add(out, s, strlen(s));
        } else
            evbuffer_add(out, open, (size_t)(close + 2 - open)); /* not ours: as written */
#undef IS
        p = close + 2;
    }
}

void fg_waitroom_status_json(struct evbuffer *out, const char *room,
                             const struct fg_waitroom_visit *v, uint64_t poll_ms)
{
    evbuffer_add_printf(
        out,
        "{\"room\":\"%s\",\"admitted\":%s,\"position\":%" PRIu64 ",\"ahead\":%" PRIu64
        ",\"eta_s\":%" PRIu64 ",\"opens_in_s\":%" PRIu64 ",\"poll_ms\":%" PRIu64
        ",\"updated\":%" PRIu64 ",\"ticket\":%" PRIu64 ",\"fallback\":%s}\n",
        room, v->admitted ? "true" : "false", v->position, v->position > 0 ? v->position - 1 : 0,
        v->eta_s, v->opens_in_s, poll_ms, v->now_ms / 1000, v->has_ticket ? v->ticket.ticket : 0,
        v->fallback ? "true" : "false");
}
