/*
 * parse.c — request and response heads, strictly per RFC 9112.
 *
 * One left-to-right pass over a contiguous buffer; every check is made at the first byte
 * that decides it, so a strict prefix of a bad head already gives the same error or
 * FG_HTTP_INCOMPLETE, never a different answer.
 *
 * Limits are windows, not afterthoughts: the request line is scanned over at most
 * max_request_line + 2 bytes (the line and its CRLF) and the whole head over at most
 * max_header_bytes. Running out of a window without finishing is the limit error (414 or
 * 431) at once, even if more bytes are still on their way; running out of data first is
 * FG_HTTP_INCOMPLETE. Because nothing past a window is ever looked at, a buffer of any
 * length past it gives the same answer, which is what makes the result split-invariant.
 *
 * Framing facts (Host, Content-Length, Transfer-Encoding, Connection, Expect, Upgrade)
 * are noted as each field line ends; those that can only be judged on the whole head
 * (a missing Host, which Transfer-Encoding) are judged once the empty line is seen.
 */
#include "http/http.h"

#include <string.h>

#include "http/http_internal.h"

/* Stray CRLFs a keep-alive client may leave after a body (RFC 9112 §2.2): a few, no more. */
#define MAX_LEADING_CRLF 4

/* Content-Length above this is refused as an overflow: nothing downstream has to fear a
 * value that does not fit a signed 64-bit offset. */
#define MAX_CONTENT_LENGTH UINT64_C(0x7fffffffffffffff)

enum scan { SCAN_OK = 0, SCAN_MORE, SCAN_ERR };

/* buf[pos..end) is what this step may look at: end is the smaller of the data and the
 * current limit window. */
struct cursor {
    const char *buf;
    size_t end;
    size_t pos;
};

/* Framing and connection facts gathered field by field. */
struct framing {
    bool request;
    unsigned flags;
    unsigned n_host, n_cl, n_te;
    bool te_chunked;
    uint64_t cl;
    const struct fg_http_header *host;
};

static enum scan fail(enum fg_http_error *err, enum fg_http_error e)
{
    *err = e;
    return SCAN_ERR;
}

/* CRLF at the cursor. A byte that is neither CR nor LF is `other`; bare LF and bare CR
 * have their own errors. */
static enum scan expect_crlf(struct cursor *c, enum fg_http_error other, enum fg_http_error *err)
{
    if (c->pos >= c->end)
        return SCAN_MORE;
    char ch = c->buf[c->pos];
    if (ch == '\n')
        return fail(err, FG_HTTP_E_BARE_LF);
    if (ch != '\r')
        return fail(err, other);
    if (c->pos + 1 >= c->end)
        return SCAN_MORE;
    if (c->buf[c->pos + 1] != '\n')
        return fail(err, FG_HTTP_E_BARE_CR);
    c->pos += 2;
    return SCAN_OK;
}

/* "HTTP/" DIGIT "." DIGIT, followed by `next` (SP for a status line) or a CR/LF (request
 * line). Returns the minor version. `malformed` is the error for a bad version. A version
 * is judged unsupported only once the byte after it shows it really ended ("HTTP/1.10" is
 * malformed, not 1.1). */
static enum scan parse_version(struct cursor *c, char next, enum fg_http_error malformed,
                               int *minor, enum fg_http_error *err)
{
    static const char prefix[] = "HTTP/";
    const char *p = c->buf + c->pos;
    size_t avail = c->end - c->pos;
    for (size_t i = 0; i < 8; i++) {
        if (i >= avail)
            return SCAN_MORE;
        char ch = p[i];
        bool ok = i < 5 ? ch == prefix[i] : (i == 6 ? ch == '.' : (ch >= '0' && ch <= '9'));
        if (!ok)
            return fail(err, malformed);
    }
    if (avail < 9)
        return SCAN_MORE;
    if (p[8] != next && !(next == '\r' && p[8] == '\n'))
        return fail(err, malformed);
    if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
        return fail(err, FG_HTTP_E_VERSION_UNSUPPORTED);
    *minor = p[7] - '0';
    c->pos += 8;
    return SCAN_OK;
}

/* Every '%' starts a pct-encoded triplet. */
static bool pct_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '%')
            continue;
        if (i + 2 >= len || fg_http_hexval((unsigned char)s[i + 1]) < 0 ||
            fg_http_hexval((unsigned char)s[i + 2]) < 0)
            return false;
        i += 2;
    }
    return true;
}

/* Where the port of an authority starts (after the ':'), len when there is none, or
 * (size_t)-1 if the host part is malformed. uri-host = IP-literal / IPv4 / reg-name. */
static size_t host_part(const char *s, size_t len)
{
    size_t i = 0;
    if (len > 0 && s[0] == '[') {
        /* IP-literal: IPv6address or IPvFuture, possibly with a zone ("%25eth0") */
        for (i = 1; i < len && s[i] != ']'; i++) {
            unsigned char ch = (unsigned char)s[i];
            if (!fg_http_is(ch, FG_C_UNRESERVED) && ch != ':' && ch != '%')
                return (size_t)-1;
        }
        if (i >= len || i < 3) /* no ']', or fewer than 2 characters inside ("::") */
            return (size_t)-1;
        i++;
    } else {
        for (; i < len && s[i] != ':'; i++) {
            unsigned char ch = (unsigned char)s[i];
            if (!fg_http_is(ch, FG_C_HOST) || ch == '[' || ch == ']')
                return (size_t)-1;
        }
    }
    if (!pct_ok(s, i))
        return (size_t)-1;
    if (i == len)
        return len;
    if (s[i] != ':')
        return (size_t)-1;
    return i + 1;
}

static bool digits_only(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* uri-host [ ":" port ] (RFC 9110 §7.2). Empty is valid: a client that has no authority
 * sends an empty Host (RFC 9112 §3.2). */
static bool host_valid(const char *s, size_t len)
{
    size_t port = host_part(s, len);
    return port != (size_t)-1 && digits_only(s + port, len - port);
}

/* authority-form for CONNECT: uri-host ":" port, with a port of 1..65535 (RFC 9110 §9.3.6
 * says to reject an empty or invalid port). */
static bool connect_authority_valid(const char *s, size_t len)
{
    size_t port = host_part(s, len);
    if (port == (size_t)-1 || port == len || port == 0 || len - port > 5 ||
        !digits_only(s + port, len - port))
        return false;
    unsigned v = 0;
    for (size_t i = port; i < len; i++)
        v = v * 10 + (unsigned)(s[i] - '0');
    return port > 1 && v >= 1 && v <= 65535;
}

static void split_query(struct fg_http_request *r, const char *path, size_t len, const char *q)
{
    r->path = path;
    if (q != NULL) {
        r->path_len = (size_t)(q - path);
        r->query = q + 1;
        r->query_len = len - r->path_len - 1;
    } else {
        r->path_len = len;
    }
}

/*
 * The form of a request-target whose characters the scan already checked (pchar, '/',
 * '?', valid %HH triplets, and '[' ']' anywhere: `brackets`). q is the first '?' or NULL.
 */
static bool classify_target(struct fg_http_request *r, const char *q, bool brackets)
{
    const char *t = r->target;
    size_t len = r->target_len;
    if (t[0] == '/') {
        /* origin-form = absolute-path [ "?" query ]: no brackets, not for CONNECT */
        if (brackets || r->method == FG_HTTP_CONNECT)
            return false;
        split_query(r, t, len, q);
        return true;
    }
    if (len == 1 && t[0] == '*') {
        if (r->method != FG_HTTP_OPTIONS)
            return false;
        r->flags |= FG_HTTP_F_ASTERISK_FORM;
        r->path = t;
        r->path_len = 1;
        return true;
    }
    if (r->method == FG_HTTP_CONNECT) {
        if (q != NULL || !connect_authority_valid(t, len))
            return false;
        r->flags |= FG_HTTP_F_AUTHORITY_FORM;
        r->host = t;
        r->host_len = len;
        r->path = "/";
        r->path_len = 1;
        return true;
    }
    /* absolute-form, http and https only; no userinfo (RFC 9110 §4.2.4 forbids it) */
    size_t skip;
    if (len > 7 && fg_http_name_eq(t, 7, "http://"))
        skip = 7;
    else if (len > 8 && fg_http_name_eq(t, 8, "https://"))
        skip = 8;
    else
        return false;
    size_t a = skip;
    while (a < len && t[a] != '/' && t[a] != '?')
        a++;
    if (a == skip || memchr(t + skip, '@', a - skip) != NULL || !host_valid(t + skip, a - skip))
        return false;
    if (brackets && (memchr(t + a, '[', len - a) != NULL || memchr(t + a, ']', len - a) != NULL))
        return false;
    r->flags |= FG_HTTP_F_ABSOLUTE_FORM;
    r->host = t + skip;
    r->host_len = a - skip;
    if (a == len || t[a] == '?') {
        /* "http://h" or "http://h?q": the path is "/" (RFC 9112 §3.2.2) */
        r->path = "/";
        r->path_len = 1;
        if (a < len) {
            r->query = t + a + 1;
            r->query_len = len - a - 1;
        }
        return true;
    }
    split_query(r, t + a, len - a, q);
    return true;
}

/* method SP request-target SP HTTP-version CRLF */
static enum scan parse_request_line(struct cursor *c, struct fg_http_request *r,
                                    enum fg_http_error *err)
{
    const char *b = c->buf;
    size_t e = c->end;
    size_t p = c->pos;
    size_t start = p;

    while (p < e && fg_http_is((unsigned char)b[p], FG_C_TCHAR))
        p++;
    if (p >= e)
        return SCAN_MORE;
    char ch = b[p];
    if (ch != ' ' || p == start)
        return fail(err, ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'
                             ? FG_HTTP_E_REQUEST_LINE
                             : FG_HTTP_E_METHOD);
    r->method_name = b + start;
    r->method_len = p - start;
    r->method = fg_http_method_parse(r->method_name, r->method_len);

    size_t ts = ++p;
    const char *q = NULL;
    bool brackets = false;
    for (;;) {
        while (p < e && fg_http_is((unsigned char)b[p], FG_C_TARGET))
            p++;
        if (p >= e)
            return SCAN_MORE;
        ch = b[p];
        if (ch == '?') {
            if (q == NULL)
                q = b + p;
            p++;
        } else if (ch == '%') {
            for (size_t k = 1; k <= 2; k++) {
                if (p + k >= e)
                    return SCAN_MORE;
                if (fg_http_hexval((unsigned char)b[p + k]) < 0)
                    return fail(err, FG_HTTP_E_TARGET);
            }
            p += 3;
        } else if (ch == '[' || ch == ']') {
            brackets = true;
            p++;
        } else {
            break;
        }
    }
    if (ch != ' ')
        return fail(err, ch == '\t' || ch == '\r' || ch == '\n' ? FG_HTTP_E_REQUEST_LINE
                                                                : FG_HTTP_E_TARGET);
    if (p == ts)
        return fail(err, FG_HTTP_E_REQUEST_LINE);
    r->target = b + ts;
    r->target_len = p - ts;

    c->pos = p + 1;
    enum scan s = parse_version(c, '\r', FG_HTTP_E_VERSION, &r->minor_version, err);
    if (s != SCAN_OK)
        return s;
    s = expect_crlf(c, FG_HTTP_E_VERSION, err);
    if (s != SCAN_OK)
        return s;
    if (!classify_target(r, q, brackets))
        return fail(err, FG_HTTP_E_TARGET);
    return SCAN_OK;
}

/* Content-Length = 1*DIGIT: no sign, no OWS inside, no list, no overflow. */
static bool parse_content_length(const char *v, size_t len, uint64_t *out)
{
    if (len == 0)
        return false;
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        uint64_t d = (uint64_t)(v[i] - '0');
        if (n > (MAX_CONTENT_LENGTH - d) / 10)
            return false;
        n = n * 10 + d;
    }
    *out = n;
    return true;
}

/* Connection options: close, keep-alive, upgrade, anything else (a field to strip). */
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
        if (fg_http_name_eq(v + s, i - s, "close"))
            f |= FG_HTTP_F_CONN_CLOSE;
        else if (fg_http_name_eq(v + s, i - s, "keep-alive"))
            f |= FG_HTTP_F_CONN_KEEPALIVE;
        else if (fg_http_name_eq(v + s, i - s, "upgrade"))
            f |= FG_HTTP_F_CONN_UPGRADE;
        else
            f |= FG_HTTP_F_CONN_OTHER;
    }
    return f;
}

/* One complete field line: note what framing needs. Errors that a single field decides
 * (a second Host, a bad Content-Length, CL next to TE) are raised here, at that field. */
static enum scan note_field(struct framing *f, const struct fg_http_header *h,
                            enum fg_http_error *err)
{
    const char *name = h->name;
    size_t nl = h->name_len;
    /* dispatch on the length first: most fields are none of these */
    switch (nl) {
    case 4:
        if (f->request && fg_http_name_eq(name, nl, "host")) {
            if (++f->n_host > 1)
                return fail(err, FG_HTTP_E_HOST_DUPLICATE);
            if (!host_valid(h->value, h->value_len))
                return fail(err, FG_HTTP_E_HOST_INVALID);
            f->host = h;
        }
        break;
    case 6:
        if (f->request && fg_http_name_eq(name, nl, "expect")) {
            if (fg_http_name_eq(h->value, h->value_len, "100-continue"))
                f->flags |= FG_HTTP_F_EXPECT_CONTINUE;
            else
                f->flags |= FG_HTTP_F_EXPECT_OTHER;
        }
        break;
    case 7:
        if (fg_http_name_eq(name, nl, "upgrade"))
            f->flags |= FG_HTTP_F_HAS_UPGRADE;
        break;
    case 10:
        if (fg_http_name_eq(name, nl, "connection"))
            f->flags |= connection_flags(h->value, h->value_len);
        break;
    case 14:
        if (fg_http_name_eq(name, nl, "content-length")) {
            if (f->n_te > 0)
                return fail(err, FG_HTTP_E_CL_TE);
            if (!parse_content_length(h->value, h->value_len, &f->cl))
                return fail(err, FG_HTTP_E_CL_INVALID);
            /* even an equal second value: RFC 9112 §6.3 lets us refuse, and a proxy
             * that forwards only one of them is how desync starts */
            if (++f->n_cl > 1)
                return fail(err, FG_HTTP_E_CL_DUPLICATE);
        }
        break;
    case 17:
        if (fg_http_name_eq(name, nl, "transfer-encoding")) {
            if (f->n_cl > 0)
                return fail(err, FG_HTTP_E_CL_TE);
            f->n_te++;
            /* exactly "chunked" (OWS already trimmed): no list, no parameters */
            f->te_chunked = fg_http_name_eq(h->value, h->value_len, "chunked");
        }
        break;
    default:
        break;
    }
    return SCAN_OK;
}

/* field-line CRLF ... CRLF: fills h[0..*n) and notes framing facts. On SCAN_OK c->pos is
 * past the empty line. */
static enum scan parse_fields(struct cursor *c, struct fg_http_header *h, size_t max, size_t *n,
                              struct framing *f, enum fg_http_error *err)
{
    const char *b = c->buf;
    size_t e = c->end;
    size_t p = c->pos;
    enum scan s = SCAN_MORE;
    for (;;) {
        if (p >= e)
            break;
        unsigned char ch = (unsigned char)b[p];
        if (ch == '\r' || ch == '\n') {
            c->pos = p;
            return expect_crlf(c, FG_HTTP_E_HEADER_NAME, err);
        }
        if (ch == ' ' || ch == '\t') {
            /* A line starting with whitespace continues the previous one (obs-fold) or,
             * as the first line, is whitespace between the start line and the fields;
             * both are refused (RFC 9112 §2.2, §5.2). */
            s = fail(err, FG_HTTP_E_OBS_FOLD);
            break;
        }
        size_t ns = p;
        while (p < e && fg_http_is((unsigned char)b[p], FG_C_TCHAR))
            p++;
        if (p >= e)
            break;
        ch = (unsigned char)b[p];
        if (ch != ':' || p == ns) {
            s = fail(err, p > ns && (ch == ' ' || ch == '\t') ? FG_HTTP_E_SPACE_BEFORE_COLON
                                                              : FG_HTTP_E_HEADER_NAME);
            break;
        }
        size_t ne = p++;
        while (p < e && (b[p] == ' ' || b[p] == '\t'))
            p++;
        size_t vs = p;
        while (p < e && fg_http_is((unsigned char)b[p], FG_C_VALUE))
            p++;
        if (p >= e)
            break;
        ch = (unsigned char)b[p];
        if (ch != '\r') {
            s = fail(err, ch == '\n' ? FG_HTTP_E_BARE_LF : FG_HTTP_E_HEADER_VALUE);
            break;
        }
        if (p + 1 >= e)
            break;
        if (b[p + 1] != '\n') {
            s = fail(err, FG_HTTP_E_BARE_CR);
            break;
        }
        size_t ve = p;
        while (ve > vs && (b[ve - 1] == ' ' || b[ve - 1] == '\t'))
            ve--;
        p += 2;
        if (*n >= max) {
            s = fail(err, FG_HTTP_E_HEADERS_TOO_LARGE);
            break;
        }
        struct fg_http_header *hd = &h[*n];
        hd->name = b + ns;
        hd->name_len = ne - ns;
        hd->value = b + vs;
        hd->value_len = ve - vs;
        (*n)++;
        if (note_field(f, hd, err) != SCAN_OK) {
            s = SCAN_ERR;
            break;
        }
    }
    c->pos = p;
    return s;
}

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* What running out of a window means: the limit error once the data reach the window's
 * end (the head cannot fit any more), else "send more". */
static int out_of_window(size_t len, size_t window, enum fg_http_error limit_err,
                         enum fg_http_error *err)
{
    if (len >= window) {
        *err = limit_err;
        return FG_HTTP_ERROR;
    }
    return FG_HTTP_INCOMPLETE;
}

int fg_http_parse_request(const char *buf, size_t len, const struct fg_http_limits *lim,
                          struct fg_http_request *req, enum fg_http_error *err)
{
    *err = FG_HTTP_E_NONE;
    memset(req, 0, offsetof(struct fg_http_request, headers));
    size_t head_max = lim->max_header_bytes;
    struct cursor c = {.buf = buf, .end = min_size(len, head_max), .pos = 0};
    enum scan s;

    /* Empty lines before a request line may be skipped (RFC 9112 §2.2). */
    for (int i = 0; c.pos < c.end && (buf[c.pos] == '\r' || buf[c.pos] == '\n'); i++) {
        if (i == MAX_LEADING_CRLF) {
            *err = FG_HTTP_E_REQUEST_LINE;
            return FG_HTTP_ERROR;
        }
        s = expect_crlf(&c, FG_HTTP_E_REQUEST_LINE, err);
        if (s == SCAN_ERR)
            return FG_HTTP_ERROR;
        if (s == SCAN_MORE)
            return out_of_window(len, head_max, FG_HTTP_E_HEADERS_TOO_LARGE, err);
    }
    if (c.pos >= c.end)
        return out_of_window(len, head_max, FG_HTTP_E_HEADERS_TOO_LARGE, err);

    /* The request line and its CRLF within max_request_line + 2 bytes (and the head). */
    size_t line_window = c.pos + lim->max_request_line + 2;
    bool line_binds = line_window <= head_max;
    c.end = min_size(len, line_binds ? line_window : head_max);
    s = parse_request_line(&c, req, err);
    if (s == SCAN_ERR)
        return FG_HTTP_ERROR;
    if (s == SCAN_MORE)
        return line_binds ? out_of_window(len, line_window, FG_HTTP_E_URI_TOO_LONG, err)
                          : out_of_window(len, head_max, FG_HTTP_E_HEADERS_TOO_LARGE, err);

    size_t max_headers = min_size(lim->max_headers, FG_HTTP_MAX_HEADERS);
    struct framing f = {.request = true};
    c.end = min_size(len, head_max);
    s = parse_fields(&c, req->headers, max_headers, &req->n_headers, &f, err);
    if (s == SCAN_ERR)
        return FG_HTTP_ERROR;
    if (s == SCAN_MORE)
        return out_of_window(len, head_max, FG_HTTP_E_HEADERS_TOO_LARGE, err);

    /* The head is complete: what only the whole head can tell. */
    int minor = req->minor_version;
    if (f.n_host == 0 && minor == 1) {
        *err = FG_HTTP_E_HOST_MISSING;
        return FG_HTTP_ERROR;
    }
    if (f.n_te > 0) {
        if (f.n_te > 1 || !f.te_chunked || minor == 0) {
            *err = FG_HTTP_E_TE_UNSUPPORTED;
            return FG_HTTP_ERROR;
        }
        req->body = FG_HTTP_BODY_CHUNKED;
    } else if (f.n_cl > 0) {
        req->body = FG_HTTP_BODY_LENGTH;
        req->content_length = f.cl;
    } else {
        req->body = FG_HTTP_BODY_NONE;
    }
    /* absolute-form and authority-form carry the authority; Host is ignored then */
    if (!(req->flags & (FG_HTTP_F_ABSOLUTE_FORM | FG_HTTP_F_AUTHORITY_FORM)) && f.host != NULL) {
        req->host = f.host->value;
        req->host_len = f.host->value_len;
    }
    /* An HTTP/1.0 client's Expect is ignored (RFC 9110 §10.1.1). */
    if (minor == 0)
        f.flags &= ~(unsigned)(FG_HTTP_F_EXPECT_CONTINUE | FG_HTTP_F_EXPECT_OTHER);
    req->flags |= f.flags;
    req->head_len = c.pos;
    return (int)c.pos;
}

/* HTTP-version SP 3DIGIT [ SP reason-phrase ] CRLF. The SP before an empty reason is
 * optional here: many servers omit it and nothing depends on it. */
static enum scan parse_status_line(struct cursor *c, struct fg_http_response *r,
                                   enum fg_http_error *err)
{
    enum scan s = parse_version(c, ' ', FG_HTTP_E_STATUS_LINE, &r->minor_version, err);
    if (s != SCAN_OK)
        return s;
    const char *b = c->buf;
    size_t p = c->pos + 1;
    for (size_t i = 0; i < 3; i++) {
        if (p + i >= c->end)
            return SCAN_MORE;
        char ch = b[p + i];
        if (ch < (i == 0 ? '1' : '0') || ch > '9')
            return fail(err, FG_HTTP_E_STATUS_LINE);
    }
    r->status = (b[p] - '0') * 100 + (b[p + 1] - '0') * 10 + (b[p + 2] - '0');
    p += 3;
    if (p >= c->end)
        return SCAN_MORE;
    if (b[p] == ' ') {
        size_t rs = ++p;
        while (p < c->end && fg_http_is((unsigned char)b[p], FG_C_VALUE))
            p++;
        if (p >= c->end)
            return SCAN_MORE;
        r->reason = b + rs;
        r->reason_len = p - rs;
    }
    c->pos = p;
    return expect_crlf(c, FG_HTTP_E_STATUS_LINE, err);
}

int fg_http_parse_response(const char *buf, size_t len, const struct fg_http_limits *lim,
                           enum fg_http_method request_method, struct fg_http_response *resp,
                           enum fg_http_error *err)
{
    *err = FG_HTTP_E_NONE;
    memset(resp, 0, offsetof(struct fg_http_response, headers));
    size_t head_max = lim->max_header_bytes;
    struct cursor c = {.buf = buf, .end = min_size(len, head_max), .pos = 0};

    enum scan s = parse_status_line(&c, resp, err);
    if (s == SCAN_ERR)
        return FG_HTTP_ERROR;
    if (s == SCAN_MORE)
        return out_of_window(len, head_max, FG_HTTP_E_HEADERS_TOO_LARGE, err);

    size_t max_headers = min_size(lim->max_headers, FG_HTTP_MAX_HEADERS);
    struct framing f = {.request = false};
    s = parse_fields(&c, resp->headers, max_headers, &resp->n_headers, &f, err);
    if (s == SCAN_ERR)
        return FG_HTTP_ERROR;
    if (s == SCAN_MORE)
        return out_of_window(len, head_max, FG_HTTP_E_HEADERS_TOO_LARGE, err);

    if (f.n_te > 0 && (f.n_te > 1 || !f.te_chunked || resp->minor_version == 0)) {
        *err = FG_HTTP_E_TE_UNSUPPORTED;
        return FG_HTTP_ERROR;
    }
    resp->flags = f.flags & (FG_HTTP_F_CONN_CLOSE | FG_HTTP_F_CONN_KEEPALIVE |
                             FG_HTTP_F_CONN_UPGRADE | FG_HTTP_F_CONN_OTHER | FG_HTTP_F_HAS_UPGRADE);
    /* RFC 9112 §6.3, in its order */
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
