/*
 * policy.c — RFC 9111 rules for a shared cache: Cache-Control parsing, storability,
 * freshness lifetime and age. No state, no I/O; the unit tests cite the sections.
 */
#include "cache/cache.h"

#include <string.h>

/* RFC 9111 §1.2.2: a delta-seconds too large to represent is 2^31. */
#define DELTA_MAX     2147483648ull
#define HEURISTIC_CAP 86400ull /* a day: no heuristic freshness beyond */
#define MAX_STALE_ANY (FG_CACHE_NO_VALUE - 1)

static bool parse_delta(const char *s, size_t len, uint64_t *out)
{
    if (len == 0)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        if (v < DELTA_MAX)
            v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v > DELTA_MAX ? DELTA_MAX : v;
    return true;
}

/* A duplicate directive keeps the smaller (more restrictive) value. */
static void set_min(uint64_t *field, uint64_t v)
{
    if (*field == FG_CACHE_NO_VALUE || v < *field)
        *field = v;
}

static void directive(struct fg_cache_control *cc, const char *name, size_t nlen, const char *val,
                      size_t vlen, bool has_val)
{
    uint64_t v = 0;
    bool num = has_val && parse_delta(val, vlen, &v);
#define IS(lit) fg_http_name_eq(name, nlen, lit)
    if (IS("no-store")) {
        cc->no_store = true;
    } else if (IS("no-cache")) {
        cc->no_cache = true;
        cc->no_cache_fields |= has_val;
    } else if (IS("private")) {
        cc->private_ = true; /* with field names too: a shared cache stores none of it */
    } else if (IS("public")) {
        cc->public_ = true;
    } else if (IS("must-revalidate")) {
        cc->must_revalidate = true;
    } else if (IS("proxy-revalidate")) {
        cc->proxy_revalidate = true;
    } else if (IS("no-transform")) {
        cc->no_transform = true;
    } else if (IS("only-if-cached")) {
        cc->only_if_cached = true;
    } else if (IS("immutable")) {
        cc->immutable = true;
    } else if (IS("max-age")) {
        if (num)
            set_min(&cc->max_age, v);
        else
            cc->malformed = true;
    } else if (IS("s-maxage")) {
        if (num)
            set_min(&cc->s_maxage, v);
        else
            cc->malformed = true;
    } else if (IS("stale-while-revalidate")) {
        if (num)
            set_min(&cc->stale_while_revalidate, v);
        else
            cc->malformed = true;
    } else if (IS("stale-if-error")) {
        if (num)
            set_min(&cc->stale_if_error, v);
        else
            cc->malformed = true;
    } else if (IS("max-stale")) {
        if (!has_val)
            cc->max_stale = MAX_STALE_ANY;
        else if (num)
            set_min(&cc->max_stale, v);
        else
            cc->malformed = true;
    } else if (IS("min-fresh")) {
        if (num)
            set_min(&cc->min_fresh, v);
        else
            cc->malformed = true;
    }
#undef IS
}

static void parse_value(struct fg_cache_control *cc, const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == ','))
            i++;
        size_t ns = i;
        while (i < len && s[i] != '=' && s[i] != ',' && s[i] != ' ' && s[i] != '\t')
            i++;
        size_t ne = i;
        while (i < len && (s[i] == ' ' || s[i] == '\t'))
            i++;
        const char *val = NULL;
        size_t vlen = 0;
        bool has_val = false;
        if (i < len && s[i] == '=') {
            i++;
            while (i < len && (s[i] == ' ' || s[i] == '\t'))
                i++;
            has_val = true;
            if (i < len && s[i] == '"') {
                size_t vs = ++i;
                while (i < len && s[i] != '"') {
                    if (s[i] == '\\' && i + 1 < len)
                        i++;
                    i++;
                }
                val = s + vs;
                vlen = i - vs;
                if (i < len)
                    i++; /* closing quote */
            } else {
                size_t vs = i;
                while (i < len && s[i] != ',' && s[i] != ' ' && s[i] != '\t')
                    i++;
                val = s + vs;
                vlen = i - vs;
            }
        }
        while (i < len && s[i] != ',')
            i++; /* junk after a directive: ignored */
        if (ne > ns)
            directive(cc, s + ns, ne - ns, val, vlen, has_val);
    }
}

bool fg_cache_control_parse(const struct fg_http_header *h, size_t n, const char *lower_name,
                            struct fg_cache_control *cc)
{
    memset(cc, 0, sizeof(*cc));
    cc->max_age = cc->s_maxage = cc->stale_while_revalidate = cc->stale_if_error = cc->max_stale =
        cc->min_fresh = FG_CACHE_NO_VALUE;
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        if (!fg_http_name_eq(h[i].name, h[i].name_len, lower_name))
            continue;
        any = true;
        parse_value(cc, h[i].value, h[i].value_len);
    }
    return any;
}

bool fg_cache_status_heuristic(int status)
{
    switch (status) {
    case 200:
    case 203:
    case 204:
    case 206:
    case 300:
    case 301:
    case 308:
    case 404:
    case 405:
    case 410:
    case 414:
    case 501:
        return true;
    default:
        return false;
    }
}

static uint64_t date_field(const struct fg_http_response *resp, const char *name, bool *present)
{
    const struct fg_http_header *h = fg_http_find_header(resp->headers, resp->n_headers, name);
    *present = h != NULL;
    int64_t t;
    if (h == NULL || !fg_http_parse_date(h->value, h->value_len, &t) || t < 0)
        return FG_CACHE_NO_VALUE;
    return (uint64_t)t;
}

void fg_cache_response_from_head(const struct fg_http_response *resp, const char *targeted,
                                 struct fg_cache_response *out)
{
    memset(out, 0, sizeof(*out));
    out->status = resp->status;
    /* RFC 9213: a targeted field meant for us replaces Cache-Control entirely. */
    out->has_cc = targeted != NULL &&
                  fg_cache_control_parse(resp->headers, resp->n_headers, targeted, &out->cc);
    if (!out->has_cc)
        out->has_cc =
            fg_cache_control_parse(resp->headers, resp->n_headers, "cache-control", &out->cc);
    bool present;
    out->date = date_field(resp, "date", &present);
    out->last_modified = date_field(resp, "last-modified", &present);
    out->expires = date_field(resp, "expires", &present);
    if (present && out->expires == FG_CACHE_NO_VALUE)
        out->expires = 0; /* §5.3: an invalid Expires ("0") is a time in the past */
    out->age = FG_CACHE_NO_VALUE;
    const struct fg_http_header *age = fg_http_find_header(resp->headers, resp->n_headers, "age");
    if (age != NULL) {
        /* §5.1: of a list ("5, 10", or several lines) the first member counts; a value
         * that is not a non-negative integer ("5abc", "-1", "1.5") is ignored. */
        size_t n = 0;
        while (n < age->value_len && age->value[n] != ',')
            n++;
        while (n > 0 && (age->value[n - 1] == ' ' || age->value[n - 1] == '\t'))
            n--;
        uint64_t a;
        if (parse_delta(age->value, n, &a))
            out->age = a;
    }
    for (size_t i = 0; i < resp->n_headers; i++)
        if (fg_http_name_eq(resp->headers[i].name, resp->headers[i].name_len, "vary") &&
            fg_http_list_has_token(resp->headers[i].value, resp->headers[i].value_len, "*"))
            out->vary_star = true;
}

bool fg_cache_storable(enum fg_http_method method, const struct fg_cache_control *req_cc,
                       bool request_has_authorization, const struct fg_cache_response *r)
{
    if (method != FG_HTTP_GET)
        return false; /* §3: we store GET only (HEAD is answered from it) */
    if (r->status < 200 || r->status == 206)
        return false; /* final statuses only; partial content is not stored */
    if ((req_cc != NULL && req_cc->no_store) || r->cc.no_store)
        return false; /* §5.2.1.5, §5.2.2.5 */
    if (r->cc.private_)
        return false; /* §5.2.2.7: a shared cache */
    if (r->vary_star)
        return false; /* §4.1: it can never match a later request */
    if (request_has_authorization &&
        !(r->cc.must_revalidate || r->cc.public_ || r->cc.s_maxage != FG_CACHE_NO_VALUE))
        return false; /* §3.5 */
    /* §3: something must make it cacheable */
    return r->cc.public_ || r->cc.s_maxage != FG_CACHE_NO_VALUE ||
           r->cc.max_age != FG_CACHE_NO_VALUE || r->expires != FG_CACHE_NO_VALUE ||
           r->cc.no_cache || fg_cache_status_heuristic(r->status);
}

uint64_t fg_cache_freshness_lifetime(const struct fg_cache_response *r, int64_t now)
{
    if (r->cc.s_maxage != FG_CACHE_NO_VALUE)
        return r->cc.s_maxage;
    if (r->cc.max_age != FG_CACHE_NO_VALUE)
        return r->cc.max_age;
    uint64_t date = r->date != FG_CACHE_NO_VALUE ? r->date : (uint64_t)(now > 0 ? now : 0);
    if (r->expires != FG_CACHE_NO_VALUE)
        return r->expires > date ? r->expires - date : 0;
    if ((fg_cache_status_heuristic(r->status) || r->cc.public_) &&
        r->last_modified != FG_CACHE_NO_VALUE && r->last_modified < date) {
        uint64_t h = (date - r->last_modified) / 10; /* §4.2.2 */
        return h < HEURISTIC_CAP ? h : HEURISTIC_CAP;
    }
    return 0;
}

uint64_t fg_cache_current_age(const struct fg_cache_response *r, int64_t request_time,
                              int64_t response_time, int64_t now)
{
    int64_t date = r->date != FG_CACHE_NO_VALUE ? (int64_t)r->date : response_time;
    int64_t apparent = response_time - date > 0 ? response_time - date : 0;
    int64_t delay = response_time - request_time > 0 ? response_time - request_time : 0;
    int64_t corrected_age = (r->age != FG_CACHE_NO_VALUE ? (int64_t)r->age : 0) + delay;
    int64_t initial = apparent > corrected_age ? apparent : corrected_age;
    int64_t resident = now - response_time > 0 ? now - response_time : 0;
    return (uint64_t)(initial + resident);
}
