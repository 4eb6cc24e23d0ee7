/*
 * parse.c — flashgate.conf syntax: a tokenizer and a recursive parser that turn the text
 * into a tree of statements (`name arg...;` and `name arg... { ... }`). It knows nothing
 * of what the directives mean; schema.c does that. Syntax errors are collected and the
 * parser resynchronises where it can, so that one load reports as much as possible.
 */
#include "config/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 16 /* main > server > route is 3; anything deeper is a mistake */

/* ---- error sink ------------------------------------------------------------------------ */

void fg_conf_error(struct fg_conf_diag *d, size_t line, const char *fmt, ...)
{
    d->n_errors++;
    if (d->errs == NULL)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    size_t need = strlen(d->name) + strlen(msg) + 32;
    char *full = malloc(need);
    if (full == NULL)
        return;
    snprintf(full, need, "%s:%zu: %s", d->name, line, msg);
    if (d->errs->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        char **m = realloc(d->errs->msgs, cap * sizeof(*m));
        if (m == NULL) {
            free(full);
            return;
        }
        d->errs->msgs = m;
        size_t *l = realloc(d->lines, cap * sizeof(*l));
        if (l == NULL) {
            free(full);
            return;
        }
        d->lines = l;
        d->cap = cap;
    }
    d->lines[d->errs->n] = line;
    d->errs->msgs[d->errs->n++] = full;
}

/* ---- small shared helpers ------------------------------------------------------------ */

void fg_conf_format_duration(uint64_t ms, char *out, size_t outlen)
{
    static const struct {
        uint64_t ms;
        const char *unit;
    } units[] = {{86400000, "d"}, {3600000, "h"}, {1000, "s"}}; /* "60s" reads better than "1m" */
    if (ms == 0) {
        snprintf(out, outlen, "0s");
        return;
    }
    for (size_t i = 0; i < FG_ARRAY_LEN(units); i++) {
        if (ms % units[i].ms == 0) {
            snprintf(out, outlen, "%llu%s", (unsigned long long)(ms / units[i].ms), units[i].unit);
            return;
        }
    }
    snprintf(out, outlen, "%llums", (unsigned long long)ms);
}

void fg_conf_format_size(uint64_t bytes, char *out, size_t outlen)
{
    static const struct {
        uint64_t mul;
        const char *unit;
    } units[] = {{1024ull * 1024 * 1024, "g"}, {1024 * 1024, "m"}, {1024, "k"}};
    for (size_t i = 0; i < FG_ARRAY_LEN(units); i++) {
        if (bytes != 0 && bytes % units[i].mul == 0) {
            snprintf(out, outlen, "%llu%s", (unsigned long long)(bytes / units[i].mul),
                     units[i].unit);
            return;
        }
    }
    snprintf(out, outlen, "%llu", (unsigned long long)bytes);
}

size_t fg_conf_edit_distance(const char *a, const char *b, size_t cap)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return cap + 1;
    if ((la > lb ? la - lb : lb - la) > cap)
        return cap + 1;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        size_t best = row[0];
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t v = diag + cost;
            if (up + 1 < v)
                v = up + 1;
            if (row[j - 1] + 1 < v)
                v = row[j - 1] + 1;
            row[j] = v;
            diag = up;
            if (v < best)
                best = v;
        }
        if (best > cap)
            return cap + 1;
    }
    return row[lb] > cap ? cap + 1 : row[lb];
}

/* ---- tokenizer --------------------------------------------------------------------------- */

enum tok_type { TOK_WORD, TOK_LBRACE, TOK_RBRACE, TOK_SEMI, TOK_EOF, TOK_FATAL };

struct tok {
    enum tok_type type;
    char *text; /* TOK_WORD: malloc'd */
    bool quoted;
    size_t line;
};

struct parser {
    struct fg_conf_diag *d;
    const char *p, *end;
    size_t line;
    bool fatal;
    struct tok peeked;
    bool has_peeked;
};

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

static bool is_special(char c)
{
    return c == '{' || c == '}' || c == ';' || c == '"';
}

struct sbuf {
    char *s;
    size_t len, cap;
};

static bool sbuf_put(struct sbuf *b, char c)
{
    if (b->len + 1 >= b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 32;
        char *s = realloc(b->s, cap);
        if (s == NULL)
            return false;
        b->s = s;
        b->cap = cap;
    }
    b->s[b->len++] = c;
    b->s[b->len] = '\0';
    return true;
}

static struct tok lex_string(struct parser *P)
{
    struct tok t = {.type = TOK_WORD, .quoted = true, .line = P->line};
    struct sbuf b = {0};
    P->p++; /* opening quote */
    if (!sbuf_put(&b, '\0'))
        goto oom;
    b.len = 0;
    while (P->p < P->end && *P->p != '"') {
        char c = *P->p++;
        if (c == '\n')
            P->line++;
        if (c == '\\') {
            if (P->p >= P->end)
                break;
            char e = *P->p++;
            switch (e) {
            case '"':
            case '\\':
                c = e;
                break;
            case 'n':
                c = '\n';
                break;
            case 't':
                c = '\t';
                break;
            default:
                if (e == '\n')
                    P->line++;
                fg_conf_error(P->d, P->line,
                              "invalid escape '\\%c' in string (use \\\", \\\\, "
                              "\\n or \\t)",
                              e >= 0x20 && e < 0x7f ? e : '?');
                c = e;
            }
        } else if (c == '\0') {
            fg_conf_error(P->d, P->line, "NUL byte in string");
            continue;
        }
        if (!sbuf_put(&b, c))
            goto oom;
    }
    if (P->p >= P->end) {
        fg_conf_error(P->d, t.line, "unterminated string");
        free(b.s);
        t.type = TOK_FATAL;
        return t;
    }
    P->p++; /* closing quote */
    t.text = b.s;
    return t;
oom:
    free(b.s);
    fg_conf_error(P->d, t.line, "out of memory");
    t.type = TOK_FATAL;
    return t;
}

static struct tok lex(struct parser *P)
{
    if (P->has_peeked) {
        P->has_peeked = false;
        return P->peeked;
    }
    for (;;) {
        while (P->p < P->end && is_space(*P->p)) {
            if (*P->p == '\n')
                P->line++;
            P->p++;
        }
        if (P->p >= P->end)
            return (struct tok){.type = TOK_EOF, .line = P->line};
        if (*P->p == '#') {
            while (P->p < P->end && *P->p != '\n')
                P->p++;
            continue;
        }
        unsigned char c = (unsigned char)*P->p;
        if (c < 0x20 || c == 0x7f) {
            fg_conf_error(P->d, P->line, "invalid character 0x%02x", c);
            P->p++;
            continue;
        }
        break;
    }
    struct tok t = {.line = P->line};
    switch (*P->p) {
    case '{':
        P->p++;
        t.type = TOK_LBRACE;
        return t;
    case '}':
        P->p++;
        t.type = TOK_RBRACE;
        return t;
    case ';':
        P->p++;
        t.type = TOK_SEMI;
        return t;
    case '"':
        return lex_string(P);
    }
    const char *start = P->p;
    while (P->p < P->end && !is_space(*P->p) && !is_special(*P->p) &&
           (unsigned char)*P->p >= 0x20 && *P->p != 0x7f)
        P->p++;
    size_t len = (size_t)(P->p - start);
    t.type = TOK_WORD;
    t.text = malloc(len + 1);
    if (t.text == NULL) {
        fg_conf_error(P->d, t.line, "out of memory");
        t.type = TOK_FATAL;
        return t;
    }
    memcpy(t.text, start, len);
    t.text[len] = '\0';
    if (P->p < P->end && *P->p == '"') {
        /* Report it, then read the quoted part into the same word so that the argument
         * count stays right and no second, confusing error follows. */
        fg_conf_error(P->d, P->line, "unexpected '\"' in the middle of a word");
        struct tok q = lex_string(P);
        if (q.type == TOK_FATAL) {
            free(t.text);
            return q;
        }
        char *joined = malloc(len + strlen(q.text) + 1);
        if (joined != NULL) {
            memcpy(joined, t.text, len);
            strcpy(joined + len, q.text);
        }
        free(q.text);
        free(t.text);
        t.text = joined;
        if (joined == NULL) {
            fg_conf_error(P->d, t.line, "out of memory");
            t.type = TOK_FATAL;
        }
    }
    return t;
}

/* ---- parser ---------------------------------------------------------------------------- */

struct stmt_vec {
    struct fg_conf_stmt *v;
    size_t n, cap;
};

static bool vec_push(struct stmt_vec *sv, const struct fg_conf_stmt *s)
{
    if (sv->n == sv->cap) {
        size_t cap = sv->cap ? sv->cap * 2 : 8;
        struct fg_conf_stmt *v = realloc(sv->v, cap * sizeof(*v));
        if (v == NULL)
            return false;
        sv->v = v;
        sv->cap = cap;
    }
    sv->v[sv->n++] = *s;
    return true;
}

struct words {
    char **v;
    size_t n, cap;
    size_t last_line;
};

static bool words_push(struct words *w, char *s, size_t line)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 4;
        char **v = realloc(w->v, cap * sizeof(*v));
        if (v == NULL)
            return false;
        w->v = v;
        w->cap = cap;
    }
    w->v[w->n++] = s;
    w->last_line = line;
    return true;
}

static void words_free(struct words *w)
{
    for (size_t i = 0; i < w->n; i++)
        free(w->v[i]);
    free(w->v);
    *w = (struct words){0};
}

static void stmt_clear(struct fg_conf_stmt *s)
{
    for (size_t j = 0; j < s->n_args; j++)
        free(s->args[j]);
    free(s->args);
    fg_conf_stmts_free(s->children, s->n_children);
}

void fg_conf_stmts_free(struct fg_conf_stmt *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        stmt_clear(&s[i]);
    free(s);
}

/* The context inside a block called name, opened in context ctx (0 if unknown). */
static unsigned block_ctx(const char *name, unsigned ctx)
{
    if (ctx == FG_CTX_MAIN && strcmp(name, "upstream") == 0)
        return FG_CTX_UPSTREAM;
    if (ctx == FG_CTX_MAIN && strcmp(name, "server") == 0)
        return FG_CTX_SERVER;
    if (ctx == FG_CTX_MAIN && strcmp(name, "admin") == 0)
        return FG_CTX_ADMIN;
    if (ctx == FG_CTX_MAIN && strcmp(name, "cache") == 0)
        return FG_CTX_CACHE;
    if (ctx == FG_CTX_MAIN && strcmp(name, "limit") == 0)
        return FG_CTX_LIMIT;
    if (ctx == FG_CTX_MAIN && strcmp(name, "redis") == 0)
        return FG_CTX_REDIS;
    if (ctx == FG_CTX_SERVER && strcmp(name, "route") == 0)
        return FG_CTX_ROUTE;
    if (ctx == FG_CTX_ROUTE && strcmp(name, "offload") == 0)
        return FG_CTX_OFFLOAD;
    return 0;
}

static void emit(struct parser *P, struct stmt_vec *out, struct words *w, size_t line,
                 struct stmt_vec *children, bool closed)
{
    struct fg_conf_stmt s = {.args = w->v, .n_args = w->n, .line = line};
    if (children != NULL) {
        s.has_block = true;
        s.closed = closed;
        s.children = children->v;
        s.n_children = children->n;
    }
    if (!vec_push(out, &s)) {
        fg_conf_error(P->d, line, "out of memory");
        P->fatal = true;
        stmt_clear(&s);
    }
    *w = (struct words){0};
}

/* Statements until the '}' closing this block (depth > 0) or the end of the text.
 * Returns true when the block was closed properly. */
static bool parse_block(struct parser *P, unsigned ctx, int depth, struct stmt_vec *out,
                        const char *open_name, size_t open_line)
{
    struct words w = {0};
    size_t first_line = 0;
    for (;;) {
        struct tok t = lex(P);
        if (t.type == TOK_FATAL) {
            P->fatal = true;
            words_free(&w);
            return false;
        }
        if (t.type == TOK_WORD) {
            /* A directive name at the start of a new line while the previous statement
             * is still open almost always means a forgotten ';'. Say so, rather than
             * "wrong number of arguments" on a line the operator did not touch. */
            if (w.n > 0 && !t.quoted && t.line > w.last_line && ctx != 0 &&
                fg_conf_directive_find(t.text, ctx) != NULL) {
                fg_conf_error(P->d, w.last_line, "missing ';' after directive '%s'", w.v[0]);
                emit(P, out, &w, first_line, NULL, false);
            }
            if (w.n == 0)
                first_line = t.line;
            if (!words_push(&w, t.text, t.line)) {
                free(t.text);
                fg_conf_error(P->d, t.line, "out of memory");
                P->fatal = true;
                words_free(&w);
                return false;
            }
            continue;
        }
        switch (t.type) {
        case TOK_SEMI:
            if (w.n == 0)
                fg_conf_error(P->d, t.line, "unexpected ';'");
            else
                emit(P, out, &w, first_line, NULL, false);
            break;
        case TOK_LBRACE: {
            if (w.n == 0)
                fg_conf_error(P->d, t.line, "unexpected '{'");
            if (depth + 1 >= MAX_DEPTH) {
                fg_conf_error(P->d, t.line, "blocks nested too deeply");
                P->fatal = true;
                words_free(&w);
                return false;
            }
            struct stmt_vec kids = {0};
            const char *name = w.n > 0 ? w.v[0] : "{";
            unsigned kctx = w.n > 0 ? block_ctx(name, ctx) : 0;
            size_t bline = w.n > 0 ? first_line : t.line;
            bool closed = parse_block(P, kctx, depth + 1, &kids, name, bline);
            if (w.n > 0) {
                emit(P, out, &w, first_line, &kids, closed);
            } else {
                fg_conf_stmts_free(kids.v, kids.n);
            }
            if (P->fatal)
                return false;
            break;
        }
        case TOK_RBRACE:
            if (w.n > 0) {
                fg_conf_error(P->d, w.last_line, "missing ';' after directive '%s'", w.v[0]);
                emit(P, out, &w, first_line, NULL, false);
            }
            if (depth > 0)
                return true;
            fg_conf_error(P->d, t.line, "unexpected '}'");
            break;
        case TOK_EOF:
            if (w.n > 0) {
                fg_conf_error(P->d, w.last_line, "missing ';' after directive '%s'", w.v[0]);
                emit(P, out, &w, first_line, NULL, false);
            }
            if (depth > 0) {
                fg_conf_error(P->d, t.line,
                              "unexpected end of file: missing '}' for '%s' opened at line %zu",
                              open_name, open_line);
                P->fatal = true;
                return false;
            }
            return true;
        default:
            break;
        }
    }
}

bool fg_conf_parse(struct fg_conf_diag *d, const char *text, size_t len, struct fg_conf_stmt **out,
                   size_t *n_out, size_t *last_line)
{
    struct parser P = {.d = d, .p = text, .end = text + len, .line = 1};
    struct stmt_vec top = {0};
    parse_block(&P, FG_CTX_MAIN, 0, &top, "", 0);
    *out = top.v;
    *n_out = top.n;
    *last_line = P.line;
    return !P.fatal;
}
