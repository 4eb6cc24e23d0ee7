/*
 * parse.c — request and response heads, strictly per RFC 9112.
 *
 * One pass over a contiguous buffer. Syntax errors are returned as soon as they are seen,
 * even on an incomplete head (a strict prefix of a bad head is already bad); limits are
 * checked against what has arrived so far, so a client cannot make us wait for an
 * endless request line. Semantic checks (Host, framing) run once the head is complete.
 */
#include "http/http.h"

#include <string.h>

#include "http/chars.h"

#define MAX_LEADING_CRLF 8

struct cursor {
    const char *buf;
    size_t len;
    size_t pos;
};

/* Outcome of scanning one element. */
enum scan { SCAN_OK = 0, SCAN_MORE, SCAN_ERR };

static bool lower_eq(const char *s, size_t len, const char *lit)
{
    return fg_http_name_eq(s, len, lit);
}

/* Read CRLF at the cursor. Bare LF and bare CR are errors. */
static enum scan expect_crlf(struct cursor *c, enum fg_http_error *err)
{
    if (c->pos >= c->len)
        return SCAN_MORE;
    if (c->buf[c->pos] == '\n') {
        *err = FG_HTTP_E_BARE_LF;
        return SCAN_ERR;
    }
    if (c->buf[c->pos] != '\r') {
        *err = FG_HTTP_E_REQUEST_LINE;
        return SCAN_ERR;
    }
    if (c->pos + 1 >= c->len)
        return SCAN_MORE;
    if (c->buf[c->pos + 1] != '\n') {
        *err = FG_HTTP_E_BARE_CR;
        return SCAN_ERR;
    }
    c->pos += 2;
    return SCAN_OK;
}

/*
 * Header fields up to and including the empty line. Fills h[] and *n; checks syntax and
 * the count limit. On SCAN_OK c->pos is past the final CRLF.
 */
static enum scan parse_fields(struct cursor *c, struct fg_http_header *h, size_t max, size_t *n,
                              enum fg_http_error *err)
{
    *n = 0;
    for (;;) {
        if (c->pos >= c->len)
            return SCAN_MORE;
        unsigned char ch = (unsigned char)c->buf[c->pos];
        if (ch == '\r' || ch == '\n') {
            enum scan s = expect_crlf(c, err);
            if (s == SCAN_ERR && *err == FG_HTTP_E_REQUEST_LINE)
                *err = FG_HTTP_E_HEADER_NAME;
            return s;
        }
        if (ch == ' ' || ch == '\t') {
            /* A line starting with whitespace continues the previous one (obs-fold), or,
             * as the first line, is whitespace between the start line and the fields;
             * both are refused (RFC 9112 §2.2, §5.2). */
            *err = FG_HTTP_E_OBS_FOLD;
            return SCAN_ERR;
        }
        size_t name_start = c->pos;
        while (c->pos < c->len && fg_http_is((unsigned char)c->buf[c->pos], FG_C_TCHAR))
            c->pos++;
        if (c->pos >= c->len)
            return SCAN_MORE;
        ch = (unsigned char)c->buf[c->pos];
        if (ch != ':') {
            *err = (ch == ' ' || ch == '\t') && c->pos > name_start ? FG_HTTP_E_SPACE_BEFORE_COLON
                                                                    : FG_HTTP_E_HEADER_NAME;
            if (ch == '\r' || ch == '\n')
                *err = FG_HTTP_E_HEADER_NAME;
            return SCAN_ERR;
        }
        if (c->pos == name_start) {
            *err = FG_HTTP_E_HEADER_NAME;
            return SCAN_ERR;
        }
        size_t name_end = c->pos++;
        while (c->pos < c->len && (c->buf[c->pos] == ' ' || c->buf[c->pos] == '\t'))
            c->pos++;
        size_t value_start = c->pos;
        while (c->pos < c->len) {
            ch = (unsigned char)c->buf[c->pos];
            if (!fg_http_is(ch, FG_C_VALUE))
                break;
            c->pos++;
        }
        if (c->pos >= c->len)
            return SCAN_MORE;
        ch = (unsigned char)c->buf[c->pos];
        if (ch == '\n') {
            *err = FG_HTTP_E_BARE_LF;
            return SCAN_ERR;
        }
        if (ch != '\r') {
            *err = FG_HTTP_E_HEADER_VALUE; /* NUL, CTL or DEL */
            return SCAN_ERR;
        }
        size_t value_end = c->pos;
        while (value_end > value_start &&
               (c->buf[value_end - 1] == ' ' || c->buf[value_end - 1] == '\t'))
            value_end--;
        enum scan s = expect_crlf(c, err);
        if (s != SCAN_OK)
            return s;
        if (*n >= max) {
            *err = FG_HTTP_E_HEADERS_TOO_LARGE;
            return SCAN_ERR;
        }
        h[*n].name = c->buf + name_start;
        h[*n].name_len = name_end - name_start;
        h[*n].value = c->buf + value_start;
        h[*n].value_len = value_end - value_start;
        (*n)++;
    }
}

/* "HTTP/" DIGIT "." DIGIT at the cursor. Returns the minor version (0/1), -1 with *err.
 * more: the buffer ended inside the version. */
static int parse_version(struct cursor *c, bool *more, enum fg_http_error *err)
{
    static const char prefix[] = "HTTP/";
    *more = false;
    size_t avail = c->len - c->pos;
    const char *p = c->buf + c->pos;
    for (size_t i = 0; i < 8; i++) {
        if (i >= avail) {
            /* a prefix of a well-formed version so far? */
            *more = true;
            return -1;
        }
        char ch = p[i];
        bool ok = i < 5 ? ch == prefix[i] : (i == 6 ? ch == '.' : (ch >= '0' && ch <= '9'));
        if (!ok) {
            *err = FG_HTTP_E_VERSION;
            return -1;
        }
    }
    c->pos += 8;
    if (p[5] != '1' || (p[7] != '0' && p[7] != '1')) {
        *err = FG_HTTP_E_VERSION_UNSUPPORTED;
        return -1;
    }
    return p[7] - '0';
}

static enum fg_http_method method_of(const char *m, size_t len)
{
    static const struct {
        const char *name;
        size_t len;
        enum fg_http_method method;
    } known[] = {
        {"GET", 3, FG_HTTP_GET},     {"HEAD", 4, FG_HTTP_HEAD},     {"POST", 4, FG_HTTP_POST},
        {"PUT", 3, FG_HTTP_PUT},     {"DELETE", 6, FG_HTTP_DELETE}, {"OPTIONS", 7, FG_HTTP_OPTIONS},
        {"TRACE", 5, FG_HTTP_TRACE}, {"PATCH", 5, FG_HTTP_PATCH},   {"CONNECT", 7, FG_HTTP_CONNECT},
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (known[i].len == len && memcmp(m, known[i].name, len) == 0)
            return known[i].method; /* methods are case-sensitive (RFC 9110 §9.1) */
    return FG_HTTP_OTHER;
}

/* Every '%' must start a pct-encoded triplet. */
static bool pct_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '%') {
            if (i + 2 >= len)
                return false;
            if (fg_http_hexval((unsigned char)s[i + 1]) < 0 ||
                fg_http_hexval((unsigned char)s[i + 2]) < 0)
                return false;
            i += 2;
        }
    }
    return true;
}

/* uri-host [ ":" port ]: reg-name / IPv4 / "[" IP-literal "]". Empty is valid (RFC 9112
 * §3.2: a client with no authority sends an empty Host). */
static bool host_valid(const char *s, size_t len)
{
    size_t i = 0;
    if (len > 0 && s[0] == '[') {
        while (i < len && s[i] != ']') {
            unsigned char ch = (unsigned char)s[i];
            if (i > 0 && !(fg_http_is(ch, FG_C_HEX) || ch == ':' || ch == '.' || ch == '%' ||
                           fg_http_is(ch, FG_C_UNRESERVED)))
                return false;
            i++;
        }
        if (i >= len)
            return false;
        i++;
    } else {
        while (i < len && s[i] != ':') {
            unsigned char ch = (unsigned char)s[i];
            if (!fg_http_is(ch, FG_C_HOST) || ch == '[' || ch == ']')
                return false;
            i++;
        }
    }
    if (i == len)
        return pct_ok(s, len);
    if (s[i] != ':')
        return false;
    for (i++; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return pct_ok(s, len);
}

static enum fg_http_error parse_target(struct fg_http_request *r)
{
    const char *t = r->target;
    size_t len = r->target_len;
    for (size_t i = 0; i < len; i++)
        if (!fg_http_is((unsigned char)t[i], FG_C_TARGET) && t[i] != '[' && t[i] != ']')
            return FG_HTTP_E_TARGET;
    if (!pct_ok(t, len))
        return FG_HTTP_E_TARGET;
    const char *path = t;
    size_t path_len = len;
    if (len == 1 && t[0] == '*') {
        if (r->method != FG_HTTP_OPTIONS)
            return FG_HTTP_E_TARGET;
        r->flags |= FG_HTTP_F_ASTERISK_FORM;
        r->path = t;
        r->path_len = 1;
        return FG_HTTP_E_NONE;
    }
    if (r->method == FG_HTTP_CONNECT) {
        /* authority-form: host:port, nothing else */
        if (t[0] == '/' || !host_valid(t, len) || memchr(t, ':', len) == NULL)
            return FG_HTTP_E_TARGET;
        r->flags |= FG_HTTP_F_AUTHORITY_FORM;
        r->host = t;
        r->host_len = len;
        r->path = "/";
        r->path_len = 1;
        return FG_HTTP_E_NONE;
    }
    if (t[0] != '/') {
        size_t skip = 0;
        if (len > 7 && lower_eq(t, 7, "http://"))
            skip = 7;
        else if (len > 8 && lower_eq(t, 8, "https://"))
            skip = 8;
        else
            return FG_HTTP_E_TARGET;
        size_t a = skip;
        while (a < len && t[a] != '/' && t[a] != '?')
            a++;
        if (a == skip || memchr(t + skip, '@', a - skip) != NULL) /* no userinfo */
            return FG_HTTP_E_TARGET;
        if (!host_valid(t + skip, a - skip))
            return FG_HTTP_E_TARGET;
        r->flags |= FG_HTTP_F_ABSOLUTE_FORM;
        r->host = t + skip;
        r->host_len = a - skip;
        path = t + a;
        path_len = len - a;
        if (path_len == 0 || path[0] == '?') {
            /* "http://h" or "http://h?q": the path is "/" (RFC 9112 §3.2.2) */
            const char *q = path_len ? path : NULL;
            r->path = "/";
            r->path_len = 1;
            if (q != NULL) {
                r->query = q + 1;
                r->query_len = path_len - 1;
            }
            return FG_HTTP_E_NONE;
        }
    }
    const char *q = memchr(path, '?', path_len);
    r->path = path;
    if (q != NULL) {
        r->path_len = (size_t)(q - path);
        r->query = q + 1;
        r->query_len = path_len - r->path_len - 1;
    } else {
        r->path_len = path_len;
    }
    return FG_HTTP_E_NONE;
}

/* Content-Length = 1*DIGIT, no sign, no list, no overflow. */
static bool parse_content_length(const char *v, size_t len, uint64_t *out)
{
    if (len == 0 || len > 19)
        return false;
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    *out = n;
    return true;
}

/* Connection options: close, keep-alive, upgrade, anything else (to strip). */
static unsigned connection_flags(const char *v, size_t len)
{
    unsigned f = 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < len && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
            i++;
        if (i == s)
            break;
        if (lower_eq(v + s, i - s, "close"))
            f |= FG_HTTP_F_CONN_CLOSE;
        else if (lower_eq(v + s, i - s, "keep-alive"))
            f |= FG_HTTP_F_CONN_KEEPALIVE;
        else if (lower_eq(v + s, i - s, "upgrade"))
            f |= FG_HTTP_F_CONN_UPGRADE;
        else
            f |= FG_HTTP_F_CONN_OTHER;
    }
    return f;
}

/* The framing and connection fields shared by requests and responses. */
struct framing {
    int n_cl, n_te, n_host;
    uint64_t cl;
    bool cl_bad, te_chunked;
    const struct fg_http_header *host;
    unsigned flags;
};

static void scan_framing(const struct fg_http_header *h, size_t n, struct framing *f)
{
    memset(f, 0, sizeof(*f));
    for (size_t i = 0; i < n; i++) {
        const char *name = h[i].name;
        size_t nl = h[i].name_len;
        /* dispatch on length first: most fields are none of these */
        switch (nl) {
        case 4:
            if (lower_eq(name, nl, "host")) {
                f->n_host++;
                f->host = &h[i];
            }
            break;
        case 6:
            if (lower_eq(name, nl, "expect")) {
                if (lower_eq(h[i].value, h[i].value_len, "100-continue"))
                    f->flags |= FG_HTTP_F_EXPECT_CONTINUE;
                else
                    f->flags |= FG_HTTP_F_EXPECT_OTHER;
            }
            break;
        case 7:
            if (lower_eq(name, nl, "upgrade"))
                f->flags |= FG_HTTP_F_HAS_UPGRADE;
            break;
        case 10:
            if (lower_eq(name, nl, "connection"))
                f->flags |= connection_flags(h[i].value, h[i].value_len);
            break;
        case 14:
            if (lower_eq(name, nl, "content-length")) {
                f->n_cl++;
                if (!parse_content_length(h[i].value, h[i].value_len, &f->cl))
                    f->cl_bad = true;
            }
            break;
        case 17:
            if (lower_eq(name, nl, "transfer-encoding")) {
                f->n_te++;
                f->te_chunked = lower_eq(h[i].value, h[i].value_len, "chunked");
            }
            break;
        }
    }
}

int fg_http_parse_request(const char *buf, size_t len, const struct fg_http_limits *lim,
                          struct fg_http_request *req, enum fg_http_error *err)
{
    struct cursor c = {.buf = buf, .len = len, .pos = 0};
    *err = FG_HTTP_E_NONE;
    memset(req, 0, offsetof(struct fg_http_request, headers));
    size_t max_headers =
        lim->max_headers < FG_HTTP_MAX_HEADERS ? lim->max_headers : FG_HTTP_MAX_HEADERS;

    /* Empty lines before a request line may be skipped (RFC 9112 §2.2). */
    for (int i = 0; i < MAX_LEADING_CRLF && c.pos < len; i++) {
        if (buf[c.pos] != '\r' && buf[c.pos] != '\n')
            break;
        enum scan s = expect_crlf(&c, err);
        if (s == SCAN_MORE)
            return FG_HTTP_INCOMPLETE;
        if (s == SCAN_ERR)
            return FG_HTTP_ERROR;
    }
    size_t line_start = c.pos;

#define NEED_MORE()                                                                                \
    do {                                                                                           \
        if (c.len - line_start > lim->max_request_line) {                                          \
            *err = FG_HTTP_E_URI_TOO_LONG;                                                         \
            return FG_HTTP_ERROR;                                                                  \
        }                                                                                          \
        return FG_HTTP_INCOMPLETE;                                                                 \
    } while (0)

    /* method SP */
    while (c.pos < len && fg_http_is((unsigned char)buf[c.pos], FG_C_TCHAR))
        c.pos++;
    if (c.pos >= len)
        NEED_MORE();
    if (buf[c.pos] != ' ' || c.pos == line_start) {
        *err = c.pos == line_start || buf[c.pos] == '\r' || buf[c.pos] == '\n' || buf[c.pos] == '\t'
                   ? FG_HTTP_E_REQUEST_LINE
                   : FG_HTTP_E_METHOD;
        if (c.pos == line_start && buf[c.pos] != ' ' && buf[c.pos] != '\t')
            *err = FG_HTTP_E_METHOD;
        return FG_HTTP_ERROR;
    }
    req->method_name = buf + line_start;
    req->method_len = c.pos - line_start;
    req->method = method_of(req->method_name, req->method_len);
    c.pos++;

    /* request-target SP */
    size_t target_start = c.pos;
    while (c.pos < len) {
        unsigned char ch = (unsigned char)buf[c.pos];
        if (ch == ' ' || ch == '\r' || ch == '\n')
            break;
        if (!fg_http_is(ch, FG_C_TARGET) && ch != '[' && ch != ']') {
            *err = ch == '\t' ? FG_HTTP_E_REQUEST_LINE : FG_HTTP_E_TARGET;
            return FG_HTTP_ERROR;
        }
        c.pos++;
    }
    if (c.pos >= len)
        NEED_MORE();
    if (buf[c.pos] != ' ' || c.pos == target_start) {
        *err = FG_HTTP_E_REQUEST_LINE;
        return FG_HTTP_ERROR;
    }
    req->target = buf + target_start;
    req->target_len = c.pos - target_start;
    c.pos++;

    /* HTTP-version CRLF */
    bool more = false;
    int minor = parse_version(&c, &more, err);
    if (more)
        NEED_MORE();
    if (minor < 0)
        return FG_HTTP_ERROR;
    req->minor_version = minor;
    enum scan s = expect_crlf(&c, err);
    if (s == SCAN_MORE)
        NEED_MORE();
    if (s == SCAN_ERR) {
        if (*err == FG_HTTP_E_REQUEST_LINE)
            *err = FG_HTTP_E_VERSION;
        return FG_HTTP_ERROR;
    }
    if (c.pos - 2 - line_start > lim->max_request_line) {
        *err = FG_HTTP_E_URI_TOO_LONG;
        return FG_HTTP_ERROR;
    }
#undef NEED_MORE

    s = parse_fields(&c, req->headers, max_headers, &req->n_headers, err);
    if (s == SCAN_MORE) {
        if (len > lim->max_header_bytes) {
            *err = FG_HTTP_E_HEADERS_TOO_LARGE;
            return FG_HTTP_ERROR;
        }
        return FG_HTTP_INCOMPLETE;
    }
    if (s == SCAN_ERR)
        return FG_HTTP_ERROR;
    if (c.pos > lim->max_header_bytes) {
        *err = FG_HTTP_E_HEADERS_TOO_LARGE;
        return FG_HTTP_ERROR;
    }

    /* The head is complete: semantics. */
    enum fg_http_error te = parse_target(req);
    if (te != FG_HTTP_E_NONE) {
        *err = te;
        return FG_HTTP_ERROR;
    }
    struct framing f;
    scan_framing(req->headers, req->n_headers, &f);
    if (f.n_host > 1) {
        *err = FG_HTTP_E_HOST_DUPLICATE;
        return FG_HTTP_ERROR;
    }
    if (f.n_host == 0 && minor == 1) {
        *err = FG_HTTP_E_HOST_MISSING;
        return FG_HTTP_ERROR;
    }
    if (f.host != NULL && !host_valid(f.host->value, f.host->value_len)) {
        *err = FG_HTTP_E_HOST_INVALID;
        return FG_HTTP_ERROR;
    }
    if (!(req->flags & (FG_HTTP_F_ABSOLUTE_FORM | FG_HTTP_F_AUTHORITY_FORM)) && f.host != NULL) {
        req->host = f.host->value;
        req->host_len = f.host->value_len;
    }
    if (f.n_te > 0 && f.n_cl > 0) {
        *err = FG_HTTP_E_CL_TE;
        return FG_HTTP_ERROR;
    }
    if (f.n_te > 0) {
        if (f.n_te > 1 || !f.te_chunked || minor == 0) {
            *err = FG_HTTP_E_TE_UNSUPPORTED;
            return FG_HTTP_ERROR;
        }
        req->body = FG_HTTP_BODY_CHUNKED;
    } else if (f.n_cl > 0) {
        if (f.cl_bad) {
            *err = FG_HTTP_E_CL_INVALID;
            return FG_HTTP_ERROR;
        }
        if (f.n_cl > 1) {
            *err = FG_HTTP_E_CL_DUPLICATE;
            return FG_HTTP_ERROR;
        }
        req->body = FG_HTTP_BODY_LENGTH;
        req->content_length = f.cl;
    } else {
        req->body = FG_HTTP_BODY_NONE;
    }
    /* An HTTP/1.0 client's Expect is ignored (RFC 9110 §10.1.1). */
    if (minor == 0)
        f.flags &= ~(unsigned)(FG_HTTP_F_EXPECT_CONTINUE | FG_HTTP_F_EXPECT_OTHER);
    req->flags |= f.flags;
    req->head_len = c.pos;
    return (int)c.pos;
}

int fg_http_parse_response(const char *buf, size_t len, const struct fg_http_limits *lim,
                           enum fg_http_method request_method, struct fg_http_response *resp,
                           enum fg_http_error *err)
{
    struct cursor c = {.buf = buf, .len = len, .pos = 0};
    *err = FG_HTTP_E_NONE;
    memset(resp, 0, offsetof(struct fg_http_response, headers));
    size_t max_headers =
        lim->max_headers < FG_HTTP_MAX_HEADERS ? lim->max_headers : FG_HTTP_MAX_HEADERS;

    bool more = false;
    int minor = parse_version(&c, &more, err);
    if (more)
        return len > lim->max_header_bytes ? (*err = FG_HTTP_E_HEADERS_TOO_LARGE, FG_HTTP_ERROR)
                                           : FG_HTTP_INCOMPLETE;
    if (minor < 0) {
        if (*err == FG_HTTP_E_VERSION)
            *err = FG_HTTP_E_STATUS_LINE;
        return FG_HTTP_ERROR;
    }
    resp->minor_version = minor;
    /* SP 3DIGIT [SP reason] CRLF */
    if (len - c.pos < 4)
        return FG_HTTP_INCOMPLETE;
    const char *p = buf + c.pos;
    if (p[0] != ' ' || p[1] < '1' || p[1] > '9' || p[2] < '0' || p[2] > '9' || p[3] < '0' ||
        p[3] > '9') {
        *err = FG_HTTP_E_STATUS_LINE;
        return FG_HTTP_ERROR;
    }
    resp->status = (p[1] - '0') * 100 + (p[2] - '0') * 10 + (p[3] - '0');
    c.pos += 4;
    if (c.pos >= len)
        return FG_HTTP_INCOMPLETE;
    if (buf[c.pos] == ' ') {
        c.pos++;
        size_t rs = c.pos;
        while (c.pos < len && fg_http_is((unsigned char)buf[c.pos], FG_C_VALUE))
            c.pos++;
        if (c.pos >= len)
            return len > lim->max_header_bytes ? (*err = FG_HTTP_E_HEADERS_TOO_LARGE, FG_HTTP_ERROR)
                                               : FG_HTTP_INCOMPLETE;
        resp->reason = buf + rs;
        resp->reason_len = c.pos - rs;
    }
    enum scan s = expect_crlf(&c, err);
    if (s == SCAN_MORE)
        return FG_HTTP_INCOMPLETE;
    if (s == SCAN_ERR) {
        if (*err == FG_HTTP_E_REQUEST_LINE)
            *err = FG_HTTP_E_STATUS_LINE;
        return FG_HTTP_ERROR;
    }
    s = parse_fields(&c, resp->headers, max_headers, &resp->n_headers, err);
    if (s == SCAN_MORE) {
        if (len > lim->max_header_bytes) {
            *err = FG_HTTP_E_HEADERS_TOO_LARGE;
            return FG_HTTP_ERROR;
        }
        return FG_HTTP_INCOMPLETE;
    }
    if (s == SCAN_ERR)
        return FG_HTTP_ERROR;
    if (c.pos > lim->max_header_bytes) {
        *err = FG_HTTP_E_HEADERS_TOO_LARGE;
        return FG_HTTP_ERROR;
    }
    struct framing f;
    scan_framing(resp->headers, resp->n_headers, &f);
    resp->flags = f.flags & (FG_HTTP_F_CONN_CLOSE | FG_HTTP_F_CONN_KEEPALIVE |
                             FG_HTTP_F_CONN_UPGRADE | FG_HTTP_F_CONN_OTHER);
    if (f.n_te > 0 && f.n_cl > 0) {
        *err = FG_HTTP_E_CL_TE;
        return FG_HTTP_ERROR;
    }
    if (f.n_cl > 0 && f.cl_bad) {
        *err = FG_HTTP_E_CL_INVALID;
        return FG_HTTP_ERROR;
    }
    if (f.n_cl > 1) {
        *err = FG_HTTP_E_CL_DUPLICATE;
        return FG_HTTP_ERROR;
    }
    if (f.n_te > 0 && (f.n_te > 1 || !f.te_chunked || minor == 0)) {
        *err = FG_HTTP_E_TE_UNSUPPORTED;
        return FG_HTTP_ERROR;
    }
    if (request_method == FG_HTTP_HEAD || resp->status < 200 || resp->status == 204 ||
        resp->status == 304) {
        resp->body = FG_HTTP_BODY_NONE;
        resp->content_length = f.n_cl ? f.cl : 0;
    } else if (f.n_te > 0) {
        resp->body = FG_HTTP_BODY_CHUNKED;
    } else if (f.n_cl > 0) {
        resp->body = FG_HTTP_BODY_LENGTH;
        resp->content_length = f.cl;
    } else {
        resp->body = FG_HTTP_BODY_CLOSE;
    }
    resp->head_len = c.pos;
    return (int)c.pos;
}
