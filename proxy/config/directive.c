/*
 * directive.c — the directive-table machinery every config file shares (flashgate.conf's
 * table is in schema.c, flashgate-agent.conf's in agent.c): walking a parsed block
 * against a table (unknown directives with a "did you mean", argument counts, blocks,
 * duplicates), plain values (durations, sizes, numbers, on/off, strings) with their
 * ranges, and the defaults, parsed from the same text the man pages show.
 */
#include "config/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERR(L, line, ...) fg_conf_error((L)->d, (line), __VA_ARGS__)

static char *xstrdup(struct fg_conf_loader *L, const char *s, size_t line)
{
    char *r = strdup(s);
    if (r == NULL)
        ERR(L, line, "out of memory");
    return r;
}

/* ---- plain values ----------------------------------------------------------------------- */

static void store_uint(void *field, size_t width, uint64_t v)
{
    if (width == sizeof(uint64_t)) {
        uint64_t x = v;
        memcpy(field, &x, sizeof(x));
    } else {
        FG_ASSERT(width == sizeof(unsigned));
        unsigned x = (unsigned)v;
        memcpy(field, &x, sizeof(x));
    }
}

static void format_value(enum fg_conf_type t, uint64_t v, char *out, size_t outlen)
{
    if (t == FG_T_DURATION)
        fg_conf_format_duration(v, out, outlen);
    else if (t == FG_T_SIZE)
        fg_conf_format_size(v, out, outlen);
    else
        snprintf(out, outlen, "%llu", (unsigned long long)v);
}

/* Parse value for a generic directive and store it into obj. line = 0: a default from
 * the table, which must parse (a bug in the table otherwise). */
bool fg_conf_set_generic(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                         const char *value, size_t line, void *obj)
{
    char *field = (char *)obj + dir->offset;
    uint64_t v = 0;
    bool ok = true;
    switch (dir->type) {
    case FG_T_DURATION:
        ok = fg_parse_duration_ms(value, &v);
        if (!ok)
            ERR(L, line, "invalid duration '%s' for '%s' (use ms, s, m, h or d)", value, dir->name);
        break;
    case FG_T_SIZE:
        ok = fg_parse_size(value, &v);
        if (!ok)
            ERR(L, line, "invalid size '%s' for '%s' (use a number with k, m or g)", value,
                dir->name);
        break;
    case FG_T_UINT:
        ok = fg_parse_uint(value, UINT64_MAX, &v);
        if (!ok)
            ERR(L, line, "invalid number '%s' for '%s'", value, dir->name);
        break;
    case FG_T_FLAG:
        if (strcmp(value, "on") == 0) {
            *(bool *)field = true;
        } else if (strcmp(value, "off") == 0) {
            *(bool *)field = false;
        } else {
            ERR(L, line, "invalid value '%s' for '%s' (use on or off)", value, dir->name);
            return false;
        }
        return true;
    case FG_T_STRING: {
        if (value[0] == '\0') {
            ERR(L, line, "empty value for '%s'", dir->name);
            return false;
        }
        char *s = xstrdup(L, value, line);
        if (s == NULL)
            return false;
        char **slot = (char **)(void *)field;
        free(*slot);
        *slot = s;
        return true;
    }
    case FG_T_CUSTOM:
        FG_ASSERT(!"custom directive handled generically");
    }
    if (!ok)
        return false;
    if (v < dir->min || v > dir->max) {
        char lo[32], hi[32];
        format_value(dir->type, dir->min, lo, sizeof(lo));
        format_value(dir->type, dir->max, hi, sizeof(hi));
        ERR(L, line, "value %s out of range %s..%s for '%s'", value, lo, hi, dir->name);
        return false;
    }
    store_uint(field, dir->width, v);
    return true;
}

void fg_conf_h_generic(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                       const struct fg_conf_stmt *st, void *obj)
{
    fg_conf_set_generic(L, dir, st->args[1], st->line, obj);
}

void fg_conf_apply_defaults(struct fg_conf_loader *L, unsigned ctx, void *obj)
{
    const struct fg_conf_schema *sc = L->schema;
    for (size_t i = 0; i < sc->n_dirs; i++) {
        const struct fg_conf_directive *dir = &sc->dirs[i];
        if (!(dir->ctx & ctx) || dir->type == FG_T_CUSTOM || strcmp(dir->def, "none") == 0)
            continue; /* "none": NULL for strings, zero otherwise */
        bool ok = fg_conf_set_generic(L, dir, dir->def, 0, obj);
        FG_ASSERT(ok);
    }
}

/* ---- lookups --------------------------------------------------------------------------- */

const struct fg_conf_directive *fg_conf_directive_find(const struct fg_conf_schema *sc,
                                                       const char *name, unsigned ctx)
{
    for (size_t i = 0; i < sc->n_dirs; i++)
        if ((sc->dirs[i].ctx & ctx) && strcmp(sc->dirs[i].name, name) == 0)
            return &sc->dirs[i];
    return NULL;
}

const char *fg_conf_ctx_name(unsigned ctx)
{
    switch (ctx) {
    case FG_CTX_MAIN:
        return "main";
    case FG_CTX_UPSTREAM:
        return "upstream";
    case FG_CTX_SERVER:
        return "server";
    case FG_CTX_ROUTE:
        return "route";
    case FG_CTX_ADMIN:
        return "admin";
    case FG_CTX_CACHE:
        return "cache";
    case FG_CTX_LIMIT:
        return "limit";
    case FG_CTX_OFFLOAD:
        return "offload";
    case FG_CTX_REDIS:
        return "redis";
    case FG_CTX_AGENT:
        return "flashgate-agent.conf";
    case FG_CTX_EMF:
        return "emf";
    case FG_CTX_FLEET:
        return "fleet";
    case FG_CTX_WAITROOM:
        return "waiting_room";
    }
    return "?";
}

/* The closest directive name, preferring those allowed in ctx; NULL if none is close. */
static const struct fg_conf_directive *suggest(const struct fg_conf_schema *sc, const char *name,
                                               unsigned ctx)
{
    const struct fg_conf_directive *best = NULL;
    size_t best_d = SIZE_MAX;
    size_t cap = strlen(name) <= 4 ? 1 : 2;
    for (int pass = 0; pass < 2 && best == NULL; pass++) {
        for (size_t i = 0; i < sc->n_dirs; i++) {
            const struct fg_conf_directive *d = &sc->dirs[i];
            if (pass == 0 && !(d->ctx & ctx))
                continue;
            size_t dist = fg_conf_edit_distance(name, d->name, cap);
            if (dist <= cap && dist < best_d) {
                best = d;
                best_d = dist;
            }
        }
    }
    return best;
}

/* ---- the walk ------------------------------------------------------------------------ */

static bool check_shape(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                        const struct fg_conf_stmt *st)
{
    int n = (int)st->n_args - 1;
    if (n < dir->min_args || (dir->max_args >= 0 && n > dir->max_args)) {
        const char *s = dir->max_args == 1 ? "" : "s";
        if (dir->min_args == dir->max_args && dir->max_args == 0)
            ERR(L, st->line, "directive '%s' takes no arguments, got %d", dir->name, n);
        else if (dir->min_args == dir->max_args)
            ERR(L, st->line, "directive '%s' takes %d argument%s, got %d", dir->name, dir->max_args,
                s, n);
        else if (dir->max_args < 0)
            ERR(L, st->line, "directive '%s' needs at least %d argument%s", dir->name,
                dir->min_args, dir->min_args == 1 ? "" : "s");
        else
            ERR(L, st->line, "directive '%s' takes %d to %d arguments, got %d", dir->name,
                dir->min_args, dir->max_args, n);
        return false;
    }
    if (st->has_block && dir->block == FG_BLOCK_NO) {
        ERR(L, st->line, "directive '%s' takes no block", dir->name);
        return false;
    }
    if (!st->has_block && dir->block == FG_BLOCK_YES) {
        ERR(L, st->line, "directive '%s' needs a block", dir->name);
        return false;
    }
    return true;
}

static void unknown_directive(struct fg_conf_loader *L, const struct fg_conf_stmt *st, unsigned ctx)
{
    const struct fg_conf_schema *sc = L->schema;
    const char *name = st->args[0];
    if (fg_conf_directive_find(sc, name, ~0u) != NULL) {
        char where[128] = "";
        for (unsigned bit = 1; bit != 0; bit <<= 1) {
            if (fg_conf_directive_find(sc, name, bit) == NULL)
                continue;
            size_t len = strlen(where);
            snprintf(where + len, sizeof(where) - len, "%s%s", len ? ", " : "",
                     fg_conf_ctx_name(bit));
        }
        ERR(L, st->line, "directive '%s' is not allowed in %s (allowed in: %s)", name,
            fg_conf_ctx_name(ctx), where);
        return;
    }
    const struct fg_conf_directive *s = suggest(sc, name, ctx);
    if (s != NULL)
        ERR(L, st->line, "unknown directive '%s' (did you mean '%s'?)", name, s->name);
    else
        ERR(L, st->line, "unknown directive '%s'", name);
}

void fg_conf_walk(struct fg_conf_loader *L, unsigned ctx, const struct fg_conf_stmt *stmts,
                  size_t n, void *obj, int phase)
{
    const struct fg_conf_schema *sc = L->schema;
    size_t *seen = calloc(sc->n_dirs, sizeof(*seen));
    if (seen == NULL) {
        ERR(L, n ? stmts[0].line : 0, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const struct fg_conf_stmt *st = &stmts[i];
        bool late = sc->deferred != NULL && sc->deferred(ctx, st->args[0]);
        if ((phase == 1 && late) || (phase == 2 && !late))
            continue;
        const struct fg_conf_directive *dir = fg_conf_directive_find(sc, st->args[0], ctx);
        if (dir == NULL) {
            unknown_directive(L, st, ctx);
            continue;
        }
        if (!check_shape(L, dir, st))
            continue;
        size_t idx = (size_t)(dir - sc->dirs);
        if (!dir->repeatable && seen[idx] != 0) {
            ERR(L, st->line, "duplicate directive '%s' (first at line %zu)", dir->name, seen[idx]);
            continue;
        }
        seen[idx] = st->line;
        dir->handler(L, dir, st, obj);
    }
    free(seen);
}
