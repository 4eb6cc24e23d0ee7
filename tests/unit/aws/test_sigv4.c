/*
 * test_sigv4.c — SigV4 signing against AWS's published test suite, the SQS vectors and
 * the canonicalization edge cases.
 *
 * The vectors are read at run time from the repository: $srcdir/tests/data/sigv4
 * (automake's harness sets srcdir to the source tree; tests/data/sigv4/README.md says
 * where they come from). A missing folder fails the test: a signer that was never
 * checked must not pass.
 *
 * Every case folder of aws-signing-test-suite/v4 is signed twice (Authorization header and
 * presigned query) and each stage is compared byte for byte: canonical request, string to
 * sign, signature, then the signed request. The first stage that differs is printed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <dirent.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "aws/aws.h"

/* ---- files ------------------------------------------------------------------------- */

static char sigv4_dir[4096]; /* $srcdir/tests/data/sigv4 */

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Find the vectors or fail with a message that says where we looked. */
static void find_testdata(void)
{
    const char *src = getenv("srcdir");
    snprintf(sigv4_dir, sizeof sigv4_dir, "%s/tests/data/sigv4", src ? src : ".");
    char v4[4200];
    snprintf(v4, sizeof v4, "%s/aws-signing-test-suite/v4", sigv4_dir);
    if (!is_dir(v4)) {
        print_error("SigV4 test vectors not found: %s is not a directory.\n"
                    "Run the test from the build tree with srcdir set to the source tree "
                    "(make check does).\n",
                    v4);
        fail_msg("missing SigV4 test vectors");
    }
}

/* The whole file, NUL-terminated; NULL if it cannot be read. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf != NULL && (got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf == NULL)
        return NULL;
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

static char *slurp_case(const char *dir, const char *name, size_t *len)
{
    char path[8400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return slurp(path, len);
}

/* ---- a small JSON reader (objects, arrays, strings with escapes, numbers, literals) -- */

enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jval {
    enum jtype t;
    bool b;
    double num;
    char *s; /* J_STR, NUL-terminated; may hold NULs from \u0000 (slen counts them) */
    size_t slen;
    struct jval *items; /* J_ARR and J_OBJ */
    char **keys;        /* J_OBJ */
    size_t n;
};

struct jp {
    const char *p, *end;
    bool bad;
};

static void jskip(struct jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static void jput_utf8(char *o, size_t *n, unsigned long cp)
{
    if (cp < 0x80) {
        o[(*n)++] = (char)cp;
    } else if (cp < 0x800) {
        o[(*n)++] = (char)(0xc0 | (cp >> 6));
        o[(*n)++] = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        o[(*n)++] = (char)(0xe0 | (cp >> 12));
        o[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[(*n)++] = (char)(0x80 | (cp & 0x3f));
    } else {
        o[(*n)++] = (char)(0xf0 | (cp >> 18));
        o[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
        o[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[(*n)++] = (char)(0x80 | (cp & 0x3f));
    }
}

static bool jhex4(struct jp *j, unsigned long *cp)
{
    if (j->end - j->p < 4)
        return false;
    char tmp[5] = {j->p[0], j->p[1], j->p[2], j->p[3], 0};
    char *e;
    *cp = strtoul(tmp, &e, 16);
    j->p += 4;
    return *e == '\0';
}

static char *jstring(struct jp *j, size_t *len)
{
    if (j->p >= j->end || *j->p != '"') {
        j->bad = true;
        return NULL;
    }
    j->p++;
    /* The decoded string is never longer than its source. */
    char *o = malloc((size_t)(j->end - j->p) + 1);
    size_t n = 0;
    while (o != NULL && j->p < j->end && *j->p != '"') {
        char c = *j->p++;
        if (c != '\\') {
            o[n++] = c;
            continue;
        }
        if (j->p >= j->end)
            break;
        c = *j->p++;
        unsigned long cp, lo;
        switch (c) {
        case 'b':
            o[n++] = '\b';
            break;
        case 'f':
            o[n++] = '\f';
            break;
        case 'n':
            o[n++] = '\n';
            break;
        case 'r':
            o[n++] = '\r';
            break;
        case 't':
            o[n++] = '\t';
            break;
        case 'u':
            if (!jhex4(j, &cp)) {
                j->bad = true;
                break;
            }
            /* A surrogate pair is one code point. */
            if (cp >= 0xd800 && cp < 0xdc00 && j->end - j->p >= 6 && j->p[0] == '\\' &&
                j->p[1] == 'u') {
                j->p += 2;
                if (!jhex4(j, &lo) || lo < 0xdc00 || lo > 0xdfff) {
                    j->bad = true;
                    break;
                }
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            jput_utf8(o, &n, cp);
            break;
        default:
            o[n++] = c;
            break; /* \" \\ \/ */
        }
    }
    if (o == NULL || j->p >= j->end) {
        free(o);
        j->bad = true;
        return NULL;
    }
    j->p++; /* closing quote */
    o[n] = '\0';
    *len = n;
    return o;
}

static void jfree(struct jval *v);

static void jvalue(struct jp *j, struct jval *v)
{
    memset(v, 0, sizeof *v);
    jskip(j);
    if (j->p >= j->end) {
        j->bad = true;
        return;
    }
    char c = *j->p;
    if (c == '"') {
        v->t = J_STR;
        v->s = jstring(j, &v->slen);
    } else if (c == '{' || c == '[') {
        v->t = c == '{' ? J_OBJ : J_ARR;
        char close = c == '{' ? '}' : ']';
        j->p++;
        jskip(j);
        if (j->p < j->end && *j->p == close) {
            j->p++;
            return;
        }
        size_t cap = 0;
        while (!j->bad) {
            if (v->n == cap) {
                cap = cap ? cap * 2 : 8;
                v->items = realloc(v->items, cap * sizeof *v->items);
                v->keys = realloc(v->keys, cap * sizeof *v->keys);
                assert_non_null(v->items);
                assert_non_null(v->keys);
            }
            v->keys[v->n] = NULL;
            if (v->t == J_OBJ) {
                jskip(j);
                size_t klen;
                v->keys[v->n] = jstring(j, &klen);
                jskip(j);
                if (j->bad || j->p >= j->end || *j->p != ':') {
                    j->bad = true;
                    free(v->keys[v->n]);
                    break;
                }
                j->p++;
            }
            jvalue(j, &v->items[v->n]);
            v->n++;
            jskip(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            if (j->p < j->end && *j->p == close) {
                j->p++;
                break;
            }
            j->bad = true;
        }
    } else if (c == 't' && j->end - j->p >= 4 && memcmp(j->p, "true", 4) == 0) {
        v->t = J_BOOL;
        v->b = true;
        j->p += 4;
    } else if (c == 'f' && j->end - j->p >= 5 && memcmp(j->p, "false", 5) == 0) {
        v->t = J_BOOL;
        j->p += 5;
    } else if (c == 'n' && j->end - j->p >= 4 && memcmp(j->p, "null", 4) == 0) {
        j->p += 4;
    } else {
        char *e;
        v->t = J_NUM;
        v->num = strtod(j->p, &e);
        if (e == j->p)
            j->bad = true;
        j->p = e;
    }
}

static void jfree(struct jval *v)
{
    free(v->s);
    for (size_t i = 0; i < v->n; i++) {
        jfree(&v->items[i]);
        if (v->keys != NULL)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    memset(v, 0, sizeof *v);
}

static void jparse(const char *text, size_t len, struct jval *out)
{
    struct jp j = {text, text + len, false};
    jvalue(&j, out);
    jskip(&j);
    assert_false(j.bad);
    assert_true(j.p == j.end);
}

static const struct jval *jget(const struct jval *o, const char *key)
{
    if (o == NULL || o->t != J_OBJ)
        return NULL;
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->keys[i], key) == 0)
            return &o->items[i];
    return NULL;
}

static const char *jstr(const struct jval *o, const char *key)
{
    const struct jval *v = jget(o, key);
    return v != NULL && v->t == J_STR ? v->s : NULL;
}

static bool jbool(const struct jval *o, const char *key)
{
    const struct jval *v = jget(o, key);
    return v != NULL && v->t == J_BOOL && v->b;
}

/* ---- times ------------------------------------------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's formula). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* "2015-08-30T12:36:00Z" or "20150830T123600Z" to Unix seconds. */
static int64_t parse_time(const char *s)
{
    int y, mo, d, h, mi, se;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2dZ", &y, &mo, &d, &h, &mi, &se) != 6 &&
        sscanf(s, "%4d%2d%2dT%2d%2d%2dZ", &y, &mo, &d, &h, &mi, &se) != 6)
        fail_msg("bad time %s", s);
    return days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se;
}

/* ---- request.txt ------------------------------------------------------------------- */

struct vreq {
    char *buf;
    char method[16];
    char *path;  /* malloc'd */
    char *query; /* malloc'd, NULL without '?' */
    struct fg_sigv4_header *h;
    size_t n;
    const char *head; /* the header lines, verbatim, each ending in '\n' */
    size_t head_len;
    const char *body;
    size_t body_len;
};

/* Request line, "Name:value" lines (a line starting with whitespace continues the value
 * before it, which then spans the line end), a blank line, the body. */
static void parse_request(char *buf, size_t len, struct vreq *r)
{
    memset(r, 0, sizeof *r);
    r->buf = buf;
    char *end = buf + len;
    char *eol = memchr(buf, '\n', len);
    assert_non_null(eol);
    /* The target may hold spaces ("/example space/"): method to the first space,
     * version from the last. */
    char *sp1 = memchr(buf, ' ', (size_t)(eol - buf));
    char *sp2 = eol;
    while (sp2 > buf && sp2[-1] != ' ')
        sp2--;
    assert_non_null(sp1);
    assert_true(sp2 - 1 > sp1);
    snprintf(r->method, sizeof r->method, "%.*s", (int)(sp1 - buf), buf);
    char *target = sp1 + 1;
    size_t tlen = (size_t)(sp2 - 1 - target);
    char *q = memchr(target, '?', tlen);
    size_t plen = q ? (size_t)(q - target) : tlen;
    r->path = strndup(target, plen);
    if (q != NULL)
        r->query = strndup(q + 1, tlen - plen - 1);
    size_t cap = 0;
    char *p = eol + 1;
    r->head = p;
    while (p < end && *p != '\n') {
        char *le = memchr(p, '\n', (size_t)(end - p));
        if (le == NULL)
            le = end;
        if ((*p == ' ' || *p == '\t') && r->n > 0) {
            struct fg_sigv4_header *last = &r->h[r->n - 1];
            last->value_len = (size_t)(le - last->value);
        } else {
            char *colon = memchr(p, ':', (size_t)(le - p));
            assert_non_null(colon);
            if (r->n == cap) {
                cap = cap ? cap * 2 : 8;
                r->h = realloc(r->h, cap * sizeof *r->h);
                assert_non_null(r->h);
            }
            r->h[r->n++] = (struct fg_sigv4_header){p, (size_t)(colon - p), colon + 1,
                                                    (size_t)(le - colon - 1)};
        }
        p = le < end ? le + 1 : end;
    }
    r->head_len = (size_t)(p - r->head);
    if (p < end)
        p++; /* the blank line */
    r->body = p;
    r->body_len = (size_t)(end - p);
}

static void free_request(struct vreq *r)
{
    free(r->buf);
    free(r->path);
    free(r->query);
    free(r->h);
}

/* ---- comparing stages -------------------------------------------------------------- */

static void print_escaped(const char *label, const char *s, size_t n)
{
    print_error("    %s: \"", label);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            print_error("\\n");
        else if (c < 0x20 || c >= 0x7f)
            print_error("\\x%02x", c);
        else
            print_error("%c", c);
    }
    print_error("\"\n");
}

/* Compare one stage; on a difference say which case, which stage and where. */
static bool same(const char *cname, const char *stage, const char *want, size_t wlen,
                 const char *got)
{
    if (want == NULL) {
        print_error("  %s: %s: expected file missing\n", cname, stage);
        return false;
    }
    size_t glen = got ? strlen(got) : 0;
    if (got != NULL && glen == wlen && memcmp(want, got, wlen) == 0)
        return true;
    size_t at = 0;
    while (got != NULL && at < wlen && at < glen && want[at] == got[at])
        at++;
    print_error("  %s: %s differs at byte %zu\n", cname, stage, at);
    print_escaped("expected", want, wlen);
    print_escaped("got     ", got ? got : "(null)", got ? glen : 6);
    return false;
}

struct suite_case {
    char dir[4400];
    const char *name;
    struct jval ctx;
    struct vreq req;
    struct fg_sigv4_credentials creds;
    struct fg_sigv4_params params;
    struct fg_sigv4_request sreq;
};

static void load_case(struct suite_case *c)
{
    size_t len;
    char *text = slurp_case(c->dir, "context.json", &len);
    if (text == NULL)
        fail_msg("%s: cannot read context.json", c->name);
    jparse(text, len, &c->ctx);
    free(text);
    const struct jval *cr = jget(&c->ctx, "credentials");
    c->creds = (struct fg_sigv4_credentials){jstr(cr, "access_key_id"),
                                             jstr(cr, "secret_access_key"), jstr(cr, "token")};
    const char *ts = jstr(&c->ctx, "timestamp");
    assert_non_null(ts);
    c->params = (struct fg_sigv4_params){
        .creds = &c->creds,
        .region = jstr(&c->ctx, "region"),
        .service = jstr(&c->ctx, "service"),
        .time = parse_time(ts),
        .keep_dot_segments = !jbool(&c->ctx, "normalize"),
        .sign_body = jbool(&c->ctx, "sign_body"),
        .omit_session_token = jbool(&c->ctx, "omit_session_token"),
    };
    char *rt = slurp_case(c->dir, "request.txt", &len);
    if (rt == NULL)
        fail_msg("%s: cannot read request.txt", c->name);
    parse_request(rt, len, &c->req);
    c->sreq = (struct fg_sigv4_request){
        .method = c->req.method,
        .path = c->req.path,
        .query = c->req.query,
        .headers = c->req.h,
        .n_headers = c->req.n,
        .payload = c->req.body,
        .payload_len = c->req.body_len,
    };
}

static void free_case(struct suite_case *c)
{
    jfree(&c->ctx);
    free_request(&c->req);
}

/* Compare file name (in the case folder) with got. */
static bool same_file(const struct suite_case *c, const char *file, const char *got)
{
    size_t len = 0;
    char *want = slurp_case(c->dir, file, &len);
    bool ok = same(c->name, file, want, len, got);
    free(want);
    return ok;
}

/* The signed request as the suite writes it: request line, headers, blank line, body. */
static char *signed_request(const struct suite_case *c, const struct fg_sigv4_result *r,
                            bool presign)
{
    const struct vreq *q = &c->req;
    size_t cap = 256 + strlen(q->path) + (q->query ? strlen(q->query) : 0) + q->head_len +
                 q->body_len + (r->presigned_query ? strlen(r->presigned_query) : 0);
    for (size_t i = 0; i < r->n_add; i++)
        cap += r->add[i].name_len + r->add[i].value_len + 2;
    char *s = malloc(cap);
    assert_non_null(s);
    size_t n = (size_t)snprintf(s, cap, "%s %s", q->method, q->path);
    if (presign)
        n += (size_t)snprintf(s + n, cap - n, "?%s%s%s", q->query ? q->query : "",
                              q->query && q->query[0] ? "&" : "", r->presigned_query);
    else if (q->query != NULL)
        n += (size_t)snprintf(s + n, cap - n, "?%s", q->query);
    n += (size_t)snprintf(s + n, cap - n, " HTTP/1.1\n%.*s", (int)q->head_len, q->head);
    for (size_t i = 0; i < r->n_add; i++)
        n += (size_t)snprintf(s + n, cap - n, "%.*s:%.*s\n", (int)r->add[i].name_len,
                              r->add[i].name, (int)r->add[i].value_len, r->add[i].value);
    n += (size_t)snprintf(s + n, cap - n, "\n%.*s", (int)q->body_len, q->body);
    assert_true(n < cap);
    return s;
}

/* The Authorization line of a signed request file, without its line end. */
static char *authorization_line(const struct suite_case *c, size_t *len)
{
    char *want = slurp_case(c->dir, "header-signed-request.txt", NULL);
    if (want == NULL)
        return NULL;
    char *a = strstr(want, "\nAuthorization:");
    if (a == NULL) {
        free(want);
        return NULL;
    }
    a++;
    char *e = strchr(a, '\n');
    *len = e ? (size_t)(e - a) : strlen(a);
    memmove(want, a, *len);
    want[*len] = '\0';
    return want;
}

static bool check_case(struct suite_case *c, bool presign)
{
    struct fg_sigv4_result r;
    c->params.presign_expires = 0;
    if (presign) {
        const struct jval *e = jget(&c->ctx, "expiration_in_seconds");
        assert_non_null(e);
        c->params.presign_expires = (uint32_t)e->num;
    }
    bool ok = fg_sigv4_sign(&c->sreq, &c->params, &r);
    if (!ok) {
        print_error("  %s: signing failed: %s\n", c->name, r.error);
        fg_sigv4_result_free(&r);
        return false;
    }
    const char *pre = presign ? "query-" : "header-";
    char f[64];
    snprintf(f, sizeof f, "%scanonical-request.txt", pre);
    ok = same_file(c, f, r.canonical_request);
    snprintf(f, sizeof f, "%sstring-to-sign.txt", pre);
    ok = ok && same_file(c, f, r.string_to_sign);
    snprintf(f, sizeof f, "%ssignature.txt", pre);
    ok = ok && same_file(c, f, r.signature);
    if (ok && !presign) {
        size_t alen = 0;
        char *want = authorization_line(c, &alen);
        char got[1024];
        snprintf(got, sizeof got, "Authorization:%s", r.authorization);
        ok = same(c->name, "Authorization line", want, alen, got);
        free(want);
    }
    if (ok) {
        char *sr = signed_request(c, &r, presign);
        snprintf(f, sizeof f, "%ssigned-request.txt", pre);
        ok = same_file(c, f, sr);
        free(sr);
    }
    fg_sigv4_result_free(&r);
    return ok;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every case folder of the v4 suite, sorted, so the log reads the same each run. */
static size_t list_cases(char ***out)
{
    find_testdata();
    char v4[4200];
    snprintf(v4, sizeof v4, "%s/aws-signing-test-suite/v4", sigv4_dir);
    DIR *d = opendir(v4);
    assert_non_null(d);
    size_t n = 0, cap = 64;
    char **names = malloc(cap * sizeof *names);
    assert_non_null(names);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char p[8400];
        snprintf(p, sizeof p, "%s/%s", v4, de->d_name);
        if (!is_dir(p))
            continue;
        if (n == cap) {
            cap *= 2;
            names = realloc(names, cap * sizeof *names);
            assert_non_null(names);
        }
        names[n++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, name_cmp);
    *out = names;
    return n;
}

static void run_suite(bool presign)
{
    char **names;
    size_t n = list_cases(&names);
    size_t passed = 0;
    for (size_t i = 0; i < n; i++) {
        struct suite_case *c = calloc(1, sizeof *c);
        assert_non_null(c);
        snprintf(c->dir, sizeof c->dir, "%s/aws-signing-test-suite/v4/%s", sigv4_dir, names[i]);
        c->name = names[i];
        load_case(c);
        if (check_case(c, presign))
            passed++;
        free_case(c);
        free(c);
    }
    print_message("[ info     ] %s signing: %zu of %zu AWS v4 cases match at every stage\n",
                  presign ? "query" : "header", passed, n);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    assert_true(n >= 30); /* the suite has 38: fewer means a broken copy */
    assert_int_equal(passed, n);
}

/* aws-signing-test-suite/v4, Authorization header */
static void test_aws_suite_header(void **state)
{
    (void)state;
    run_suite(false);
}

/* aws-signing-test-suite/v4, presigned query (X-Amz-Signature in the URL) */
static void test_aws_suite_query(void **state)
{
    (void)state;
    run_suite(true);
}

/* ---- vectors.json: the SQS requests the agent sends -------------------------------- */

static void test_sqs_vectors(void **state)
{
    (void)state;
    find_testdata();
    char path[4200];
    snprintf(path, sizeof path, "%s/vectors.json", sigv4_dir);
    size_t len;
    char *text = slurp(path, &len);
    if (text == NULL)
        fail_msg("cannot read %s", path);
    struct jval all;
    jparse(text, len, &all);
    free(text);
    assert_int_equal(all.t, J_ARR);
    size_t passed = 0;
    for (size_t i = 0; i < all.n; i++) {
        const struct jval *v = &all.items[i];
        const char *name = jstr(v, "name");
        const struct jval *cr = jget(v, "credentials"), *rq = jget(v, "request"),
                          *ex = jget(v, "expected");
        assert_non_null(name);
        assert_non_null(rq);
        assert_non_null(ex);
        struct fg_sigv4_credentials creds = {
            jstr(cr, "access_key_id"), jstr(cr, "secret_access_key"), jstr(cr, "session_token")};
        struct fg_sigv4_params pr = {.creds = &creds,
                                     .region = jstr(v, "region"),
                                     .service = jstr(v, "service"),
                                     .time = parse_time(jstr(v, "signing_time"))};
        /* Query pairs arrive decoded: encode them as the SQS sink would. */
        char query[2048] = "";
        size_t qn = 0;
        const struct jval *qs = jget(rq, "query");
        for (size_t k = 0; qs != NULL && k < qs->n; k++) {
            const struct jval *pair = &qs->items[k];
            assert_int_equal(pair->n, 2);
            if (k > 0)
                query[qn++] = '&';
            qn += fg_sigv4_uri_encode(query + qn, sizeof query - qn, pair->items[0].s,
                                      pair->items[0].slen, false);
            query[qn++] = '=';
            qn += fg_sigv4_uri_encode(query + qn, sizeof query - qn, pair->items[1].s,
                                      pair->items[1].slen, false);
            assert_true(qn < sizeof query);
        }
        const struct jval *hs = jget(rq, "headers");
        struct fg_sigv4_header h[32];
        assert_true(hs->n <= 32);
        for (size_t k = 0; k < hs->n; k++)
            h[k] = (struct fg_sigv4_header){hs->keys[k], strlen(hs->keys[k]), hs->items[k].s,
                                            hs->items[k].slen};
        const struct jval *body = jget(rq, "body");
        struct fg_sigv4_request req = {.method = jstr(rq, "method"),
                                       .path = jstr(rq, "path"),
                                       .query = query,
                                       .headers = h,
                                       .n_headers = hs->n,
                                       .payload = body->s,
                                       .payload_len = body->slen};
        struct fg_sigv4_result r;
        bool ok = fg_sigv4_sign(&req, &pr, &r);
        if (!ok)
            print_error("  %s: signing failed: %s\n", name, r.error);
        const char *want;
#define STAGE(field, got)                                                                          \
    (want = jstr(ex, field), same(name, field, want, want ? strlen(want) : 0, got))
        ok = ok && STAGE("canonical_request", r.canonical_request) &&
             STAGE("string_to_sign", r.string_to_sign) &&
             STAGE("signed_headers", r.signed_headers) && STAGE("signature", r.signature) &&
             STAGE("authorization", r.authorization);
#undef STAGE
        /* The headers signing adds: the same set, the same values. */
        const struct jval *add = jget(ex, "added_headers");
        if (ok && add->n != r.n_add) {
            print_error("  %s: %zu headers added, expected %zu\n", name, r.n_add, add->n);
            ok = false;
        }
        for (size_t k = 0; ok && k < r.n_add; k++) {
            char lname[64];
            snprintf(lname, sizeof lname, "%.*s", (int)r.add[k].name_len, r.add[k].name);
            for (char *p = lname; *p; p++)
                *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
            const char *w = jstr(add, lname);
            char got[4096];
            snprintf(got, sizeof got, "%.*s", (int)r.add[k].value_len, r.add[k].value);
            ok = same(name, lname, w, w ? strlen(w) : 0, got);
        }
        if (ok)
            passed++;
        fg_sigv4_result_free(&r);
    }
    print_message("[ info     ] vectors.json: %zu of %zu SQS cases match\n", passed, all.n);
    assert_true(all.n >= 10);
    assert_int_equal(passed, all.n);
    jfree(&all);
}

/* ---- edge cases -------------------------------------------------------------------- */

static void expect_uri(const char *path, bool keep_dots, bool single, const char *want)
{
    char *got = fg_sigv4_canonical_uri(path, strlen(path), keep_dots, single);
    assert_non_null(got);
    if (strcmp(got, want) != 0)
        print_error("canonical URI of \"%s\" (keep_dots %d, single %d): \"%s\", expected "
                    "\"%s\"\n",
                    path, keep_dots, single, got, want);
    assert_string_equal(got, want);
    free(got);
}

/* '.', '..' and empty segments go (but "..." is a name); a trailing '/' stays */
static void test_path_normalization(void **state)
{
    (void)state;
    expect_uri("", false, false, "/");
    expect_uri("/", false, false, "/");
    expect_uri("//", false, false, "/");
    expect_uri("/a/./b/../c", false, false, "/a/c");
    expect_uri("/a/b/..", false, false, "/a");
    expect_uri("/a/b/../", false, false, "/a/");
    expect_uri("/../../x", false, false, "/x"); /* above the root stays at the root */
    expect_uri("/..", false, false, "/");
    expect_uri("//a//b//", false, false, "/a/b/");
    expect_uri("/a/.../b/..c/.d", false, false, "/a/.../b/..c/.d");
    expect_uri("/123456789012/orders", false, false, "/123456789012/orders");
    expect_uri("/./a/../", true, false, "/./a/../"); /* S3 and "normalize": false */
    expect_uri("//a//", true, false, "//a//");
}

/* Segments are encoded again (non-S3) or once (S3); utf-8, spaces and reserved bytes */
static void test_path_encoding(void **state)
{
    (void)state;
    expect_uri("/example space/", false, false, "/example%20space/");
    expect_uri("/a%20b", false, false, "/a%2520b"); /* the wire form is encoded again */
    expect_uri("/\xe1\x88\xb4", false, false, "/%E1%88%B4");
    expect_uri("/-._~AZaz09", false, false, "/-._~AZaz09");
    expect_uri("/a:b@c=d+e!$&'()*,;", false, false,
               "/a%3Ab%40c%3Dd%2Be%21%24%26%27%28%29%2A%2C%3B");
    /* S3: a valid %XX is kept (uppercased), everything else encoded once */
    expect_uri("/a%20b", false, true, "/a%20b");
    expect_uri("/a%2fb", false, true, "/a%2Fb");
    expect_uri("/a b%zz", false, true, "/a%20b%25zz");
    expect_uri("/\xe1\x88\xb4", false, true, "/%E1%88%B4");
}

static void expect_query(const char *q, const char *want)
{
    char *got = fg_sigv4_canonical_query(q, strlen(q));
    assert_non_null(got);
    if (strcmp(got, want) != 0)
        print_error("canonical query of \"%s\": \"%s\", expected \"%s\"\n", q, got, want);
    assert_string_equal(got, want);
    free(got);
}

/* Sorted by encoded name then value; empty values, empty pairs, re-encoding */
static void test_query_canonical(void **state)
{
    (void)state;
    expect_query("", "");
    expect_query("b=2&a=1", "a=1&b=2");
    expect_query("a=2&a=1&a=10", "a=1&a=10&a=2");
    expect_query("Param-3=x&Param=y", "Param=y&Param-3=x"); /* name first, then '=' */
    expect_query("b=1&B=1&_=1", "B=1&_=1&b=1");             /* byte order, case kept */
    expect_query("flag", "flag=");
    expect_query("empty=&x=1", "empty=&x=1");
    expect_query("a=1&&b=2&", "a=1&b=2");
    expect_query("=v", "=v");
    expect_query("k=a b", "k=a%20b");
    expect_query("k=a%20b", "k=a%20b"); /* decoded then encoded: the same */
    expect_query("k=a+b", "k=a%2Bb");   /* '+' is a plus, not a space */
    expect_query("k=%zz%4", "k=%25zz%254");
    expect_query("k=%e1%88%b4&\xe1\x88\xb4=1", "%E1%88%B4=1&k=%E1%88%B4");
    expect_query("a=b=c&d=/?#[]@", "a=b%3Dc&d=%2F%3F%23%5B%5D%40");
}

/* fg_sigv4_uri_encode: unreserved kept, uppercase hex, snprintf-like truncation */
static void test_uri_encode(void **state)
{
    (void)state;
    char out[64];
    const char *s = "a b/c~\xc3\xa9";
    assert_int_equal(fg_sigv4_uri_encode(out, sizeof out, s, strlen(s), false), 16);
    assert_string_equal(out, "a%20b%2Fc~%C3%A9");
    fg_sigv4_uri_encode(out, sizeof out, s, strlen(s), true);
    assert_string_equal(out, "a%20b/c~%C3%A9");
    assert_int_equal(fg_sigv4_uri_encode(out, 4, "a b", 3, false), 5);
    assert_string_equal(out, "a%2");
    assert_int_equal(fg_sigv4_uri_encode(NULL, 0, "a b", 3, false), 5);
    assert_int_equal(fg_sigv4_uri_encode(out, sizeof out, "\0\xff", 2, false), 6);
    assert_string_equal(out, "%00%FF");
}

static struct fg_sigv4_credentials example_creds = {
    "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", NULL};

static void hex32(const uint8_t *k, char *out)
{
    for (int i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", k[i]);
}

/* The key is derived once per (secret, day, region, service) and follows each change */
static void test_signing_key_cache(void **state)
{
    (void)state;
    struct fg_sigv4_key key = {0};
    char hex[65];
    /* AWS's documented derivation example: 20120215, us-east-1, iam. */
    int64_t t = parse_time("20120215T000000Z");
    assert_true(fg_sigv4_key_update(&key, example_creds.secret_access_key, t, "us-east-1", "iam"));
    hex32(key.k, hex);
    assert_string_equal(hex, "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
    assert_string_equal(key.date, "20120215");
    uint8_t k0[32];
    memcpy(k0, key.k, 32);
    /* Later the same day: kept. */
    assert_true(
        fg_sigv4_key_update(&key, example_creds.secret_access_key, t + 86399, "us-east-1", "iam"));
    assert_memory_equal(key.k, k0, 32);
    /* Next day, another region, another service, a rotated secret: each re-derives. */
    assert_true(
        fg_sigv4_key_update(&key, example_creds.secret_access_key, t + 86400, "us-east-1", "iam"));
    assert_string_equal(key.date, "20120216");
    assert_memory_not_equal(key.k, k0, 32);
    uint8_t prev[32];
    memcpy(prev, key.k, 32);
    assert_true(
        fg_sigv4_key_update(&key, example_creds.secret_access_key, t + 86400, "eu-west-1", "iam"));
    assert_memory_not_equal(key.k, prev, 32);
    memcpy(prev, key.k, 32);
    assert_true(
        fg_sigv4_key_update(&key, example_creds.secret_access_key, t + 86400, "eu-west-1", "sqs"));
    assert_memory_not_equal(key.k, prev, 32);
    memcpy(prev, key.k, 32);
    assert_true(fg_sigv4_key_update(&key, "another-secret", t + 86400, "eu-west-1", "sqs"));
    assert_memory_not_equal(key.k, prev, 32);
    /* Bad input invalidates. */
    assert_false(fg_sigv4_key_update(&key, "s", t, "us/east", "sqs"));
    assert_false(key.valid);
    fg_sigv4_key_clear(&key);
}

/* A cached key gives the same signature as a fresh one, and a cache survives many calls */
static void test_sign_with_cached_key(void **state)
{
    (void)state;
    struct fg_sigv4_header h[] = {{"Host", 4, "example.amazonaws.com", 21}};
    struct fg_sigv4_request req = {.method = "GET", .path = "/", .headers = h, .n_headers = 1};
    struct fg_sigv4_key key = {0};
    struct fg_sigv4_params pr = {.creds = &example_creds,
                                 .region = "us-east-1",
                                 .service = "service",
                                 .time = parse_time("20150830T123600Z")};
    struct fg_sigv4_result a, b;
    assert_true(fg_sigv4_sign(&req, &pr, &a));
    pr.key = &key;
    for (int i = 0; i < 3; i++) {
        assert_true(fg_sigv4_sign(&req, &pr, &b));
        assert_string_equal(a.signature, b.signature);
        fg_sigv4_result_free(&b);
    }
    /* get-vanilla's published signature */
    assert_string_equal(a.signature,
                        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    fg_sigv4_result_free(&a);
    fg_sigv4_key_clear(&key);
}

/* The AWS documentation's IAM ListUsers example (GET with a query, 2015-08-30) */
static void test_iam_documented_example(void **state)
{
    (void)state;
    struct fg_sigv4_header h[] = {
        {"Host", 4, "iam.amazonaws.com", 17},
        {"Content-Type", 12, "application/x-www-form-urlencoded; charset=utf-8", 48},
    };
    struct fg_sigv4_request req = {.method = "GET",
                                   .path = "/",
                                   .query = "Action=ListUsers&Version=2010-05-08",
                                   .headers = h,
                                   .n_headers = 2};
    struct fg_sigv4_params pr = {.creds = &example_creds,
                                 .region = "us-east-1",
                                 .service = "iam",
                                 .time = parse_time("20150830T123600Z")};
    struct fg_sigv4_result r;
    assert_true(fg_sigv4_sign(&req, &pr, &r));
    assert_string_equal(r.canonical_request,
                        "GET\n/\nAction=ListUsers&Version=2010-05-08\n"
                        "content-type:application/x-www-form-urlencoded; charset=utf-8\n"
                        "host:iam.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
                        "content-type;host;x-amz-date\n"
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_string_equal(r.string_to_sign,
                        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\n"
                        "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59");
    assert_string_equal(r.signature,
                        "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
    fg_sigv4_result_free(&r);
}

/* Header values: trimmed, inner whitespace runs (folds too) one space; names merged */
static void test_header_values(void **state)
{
    (void)state;
    struct fg_sigv4_header h[] = {
        {"Host", 4, "h", 1},
        {"X-A", 3, "  a \t\r\n  b  ", 12},
        {"x-a", 3, "2", 1},
        {"X-Empty", 7, "   ", 3},
        {"X-Null", 6, NULL, 0},
        {"Authorization", 13, "old", 3},            /* replaced, never signed */
        {"X-Amz-Date", 10, "20000101T000000Z", 16}, /* signing sets its own */
    };
    struct fg_sigv4_request req = {.method = "PUT", .path = "/", .headers = h, .n_headers = 7};
    struct fg_sigv4_params pr = {
        .creds = &example_creds, .region = "us-east-1", .service = "sqs", .time = 0};
    struct fg_sigv4_result r;
    assert_true(fg_sigv4_sign(&req, &pr, &r));
    assert_string_equal(r.signed_headers, "host;x-a;x-amz-date;x-empty;x-null");
    assert_non_null(strstr(r.canonical_request, "\nx-a:a b,2\nx-amz-date:19700101T000000Z\n"
                                                "x-empty:\nx-null:\n\n"));
    fg_sigv4_result_free(&r);
}

/* The headers to add: token, date, body hash, Authorization; omit_session_token */
static void test_added_headers(void **state)
{
    (void)state;
    struct fg_sigv4_credentials creds = example_creds;
    creds.session_token = "TOKEN/with+chars=";
    struct fg_sigv4_header h[] = {{"Host", 4, "sqs.us-east-1.amazonaws.com", 27}};
    struct fg_sigv4_request req = {.method = "POST",
                                   .path = "/",
                                   .headers = h,
                                   .n_headers = 1,
                                   .payload = "{}",
                                   .payload_len = 2};
    struct fg_sigv4_params pr = {.creds = &creds,
                                 .region = "us-east-1",
                                 .service = "sqs",
                                 .time = parse_time("20261124T153000Z"),
                                 .sign_body = true};
    struct fg_sigv4_result r;
    assert_true(fg_sigv4_sign(&req, &pr, &r));
    assert_int_equal(r.n_add, 4);
    assert_string_equal(r.add[0].name, "X-Amz-Security-Token");
    assert_string_equal(r.add[0].value, "TOKEN/with+chars=");
    assert_string_equal(r.add[1].name, "X-Amz-Date");
    assert_string_equal(r.add[1].value, "20261124T153000Z");
    assert_string_equal(r.add[2].name, "x-amz-content-sha256");
    assert_string_equal(r.add[2].value,
                        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
    assert_string_equal(r.add[3].name, "Authorization");
    assert_string_equal(r.add[3].value, r.authorization);
    assert_string_equal(r.signed_headers,
                        "host;x-amz-content-sha256;x-amz-date;x-amz-security-token");
    assert_null(r.presigned_query);
    fg_sigv4_result_free(&r);

    pr.omit_session_token = true; /* added after signing: sent, not signed */
    assert_true(fg_sigv4_sign(&req, &pr, &r));
    assert_int_equal(r.n_add, 4);
    assert_string_equal(r.add[0].name, "X-Amz-Security-Token");
    assert_string_equal(r.signed_headers, "host;x-amz-content-sha256;x-amz-date");
    fg_sigv4_result_free(&r);

    /* A precomputed hash signs the same as the body it is the hash of. */
    pr.omit_session_token = false;
    struct fg_sigv4_result a, b;
    assert_true(fg_sigv4_sign(&req, &pr, &a));
    req.payload = NULL;
    req.payload_len = 0;
    req.payload_hash = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
    assert_true(fg_sigv4_sign(&req, &pr, &b));
    assert_string_equal(a.signature, b.signature);
    fg_sigv4_result_free(&a);
    fg_sigv4_result_free(&b);
}

/* Bad input is refused with a reason, and the result stays safe to free */
static void test_refusals(void **state)
{
    (void)state;
    struct fg_sigv4_header host = {"Host", 4, "h", 1};
    struct fg_sigv4_header bad_name = {"Bad Name", 8, "v", 1};
    struct fg_sigv4_header two[] = {host, bad_name};
    struct fg_sigv4_header none[] = {{"X-A", 3, "v", 1}};
    struct fg_sigv4_request req = {.method = "GET", .path = "/", .headers = &host, .n_headers = 1};
    struct fg_sigv4_params pr = {
        .creds = &example_creds, .region = "us-east-1", .service = "sqs", .time = 1700000000};
    struct fg_sigv4_result r;
    assert_true(fg_sigv4_sign(&req, &pr, &r));
    fg_sigv4_result_free(&r);
    fg_sigv4_result_free(&r); /* twice is harmless */

#define REFUSED()                                                                                  \
    do {                                                                                           \
        assert_false(fg_sigv4_sign(&req, &pr, &r));                                                \
        assert_non_null(r.error);                                                                  \
        assert_null(r.canonical_request);                                                          \
        fg_sigv4_result_free(&r);                                                                  \
    } while (0)
    req.headers = none;
    REFUSED(); /* no Host */
    req.headers = two;
    req.n_headers = 2;
    REFUSED(); /* a space in a header name */
    req.headers = &host;
    req.n_headers = 1;
    req.method = "G T";
    REFUSED();
    req.method = "GET";
    pr.region = "us-east-1/x";
    REFUSED();
    pr.region = "";
    REFUSED();
    pr.region = "us-east-1";
    pr.time = -1;
    REFUSED();
    pr.time = INT64_C(253402300800); /* year 10000 */
    REFUSED();
    pr.time = 1700000000;
    pr.presign_expires = FG_SIGV4_MAX_EXPIRES + 1;
    REFUSED();
    pr.presign_expires = 0;
    struct fg_sigv4_credentials c = {"AKID", "", NULL};
    pr.creds = &c;
    REFUSED(); /* empty secret */
    c = (struct fg_sigv4_credentials){"AK ID", "s", NULL};
    REFUSED();
    c = (struct fg_sigv4_credentials){"AKID", "s", "tok\r\nX-Evil: 1"};
    REFUSED(); /* a token that would split the header */
    pr.creds = NULL;
    REFUSED();
#undef REFUSED
}

/* The largest SQS request (1 MiB body) and a few dozen long headers: no fixed limits */
static void test_large_request(void **state)
{
    (void)state;
    size_t blen = 1024 * 1024;
    char *body = malloc(blen);
    assert_non_null(body);
    for (size_t i = 0; i < blen; i++)
        body[i] = (char)('a' + i % 26);
    enum { NH = 60 };
    struct fg_sigv4_header h[NH];
    char names[NH][32];
    char *vals = malloc(NH * 2048);
    assert_non_null(vals);
    h[0] = (struct fg_sigv4_header){"Host", 4, "sqs.us-east-1.amazonaws.com", 27};
    for (int i = 1; i < NH; i++) {
        snprintf(names[i], sizeof names[i], "X-Custom-%03d", NH - i); /* reverse order */
        memset(vals + i * 2048, 'v', 2047);
        h[i] = (struct fg_sigv4_header){names[i], strlen(names[i]), vals + i * 2048, 2047};
    }
    struct fg_sigv4_request req = {.method = "POST",
                                   .path = "/123456789012/orders",
                                   .headers = h,
                                   .n_headers = NH,
                                   .payload = body,
                                   .payload_len = blen};
    struct fg_sigv4_params pr = {.creds = &example_creds,
                                 .region = "us-east-1",
                                 .service = "sqs",
                                 .time = 1700000000,
                                 .presign_expires = 0};
    struct fg_sigv4_result r;
    assert_true(fg_sigv4_sign(&req, &pr, &r));
    assert_true(strlen(r.canonical_request) > (NH - 1) * 2047);
    /* Sorted, whatever order they came in. */
    assert_non_null(strstr(r.signed_headers, "host;x-amz-date;x-custom-001;x-custom-002;"));
    char want[65];
    assert_true(fg_sigv4_sha256_hex(body, blen, want));
    assert_string_equal(r.payload_hash, want);
    fg_sigv4_result_free(&r);
    free(vals);
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aws_suite_header),
        cmocka_unit_test(test_aws_suite_query),
        cmocka_unit_test(test_sqs_vectors),
        cmocka_unit_test(test_path_normalization),
        cmocka_unit_test(test_path_encoding),
        cmocka_unit_test(test_query_canonical),
        cmocka_unit_test(test_uri_encode),
        cmocka_unit_test(test_signing_key_cache),
        cmocka_unit_test(test_sign_with_cached_key),
        cmocka_unit_test(test_iam_documented_example),
        cmocka_unit_test(test_header_values),
        cmocka_unit_test(test_added_headers),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_large_request),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
