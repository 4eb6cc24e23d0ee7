/*
 * internal.h — the config module's private pieces: the syntax tree the parser builds,
 * the error sink, and the directive tables (flashgate.conf's in schema.c,
 * flashgate-agent.conf's in agent.c) that drive both loading and the man page check
 * (tests/unit/config/test_docs.c), with the machinery they share (directive.c).
 */
#ifndef FG_CONFIG_INTERNAL_H
#define FG_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* ---- errors --------------------------------------------------------------------------- */

struct fg_conf_diag {
    const char *name;              /* file name used in messages */
    struct fg_config_errors *errs; /* may be NULL: errors are then only counted */
    size_t *lines;                 /* line of each message, to sort them at the end */
    size_t cap;
    size_t n_errors;
};

void fg_conf_error(struct fg_conf_diag *d, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- syntax tree ---------------------------------------------------------------------- */

/* One `name arg...;` or `name arg... { ... }`. args[0] is the name. */
struct fg_conf_stmt {
    char **args;
    size_t n_args;
    size_t line;
    bool has_block;
    bool closed; /* the block was closed by its '}' (false after a fatal syntax error) */
    struct fg_conf_stmt *children;
    size_t n_children;
};

/* Contexts a directive may appear in (bit set). */
enum fg_conf_ctx {
    FG_CTX_MAIN = 1u << 0,
    FG_CTX_UPSTREAM = 1u << 1,
    FG_CTX_SERVER = 1u << 2,
    FG_CTX_ROUTE = 1u << 3,
    FG_CTX_ADMIN = 1u << 4,
    FG_CTX_CACHE = 1u << 5,
    FG_CTX_LIMIT = 1u << 6,
    FG_CTX_OFFLOAD = 1u << 7, /* a route's offload block */
    FG_CTX_AGENT = 1u << 8,   /* flashgate-agent.conf (one context, no blocks) */
    FG_CTX_REDIS = 1u << 9,
    FG_CTX_EMF = 1u << 10,      /* the emf block (CloudWatch Embedded Metric Format) */
    FG_CTX_FLEET = 1u << 11,    /* the fleet block (what instances do together) */
    FG_CTX_WAITROOM = 1u << 12, /* a waiting_room block */
};

struct fg_conf_schema;

/* Parse text into a list of top-level statements. Syntax errors go to d. Returns false
 * when the syntax broke so badly (unterminated string or block) that checks on the
 * whole config would only add noise; the statements parsed so far are still returned.
 * The schema says which directives exist (to spot a forgotten ';') and how blocks nest. */
bool fg_conf_parse(struct fg_conf_diag *d, const struct fg_conf_schema *sc, const char *text,
                   size_t len, struct fg_conf_stmt **out, size_t *n_out, size_t *last_line);
void fg_conf_stmts_free(struct fg_conf_stmt *s, size_t n);

/* ---- the directive table -------------------------------------------------------------- */

struct fg_conf_directive;

/* What a load walks with: the error sink, the table, and the table owner's own state. */
struct fg_conf_loader {
    struct fg_conf_diag *d;
    const struct fg_conf_schema *schema;
    void *state; /* schema.c's struct load_state, agent.c's struct agent_state */
};

typedef void (*fg_conf_handler)(struct fg_conf_loader *L, const struct fg_conf_directive *d,
                                const struct fg_conf_stmt *st, void *obj);

enum fg_conf_type {
    FG_T_CUSTOM = 0, /* the handler does it all */
    FG_T_DURATION,   /* uint64_t milliseconds */
    FG_T_SIZE,       /* bytes, into a uint64_t or size_t */
    FG_T_UINT,       /* unsigned or size_t */
    FG_T_FLAG,       /* bool, on|off */
    FG_T_STRING,     /* char *, malloc'd */
};

enum fg_conf_block { FG_BLOCK_NO = 0, FG_BLOCK_YES, FG_BLOCK_OPTIONAL };

struct fg_conf_directive {
    const char *name;
    unsigned ctx; /* FG_CTX_* where it is allowed */
    int min_args; /* arguments after the name */
    int max_args; /* -1 = any number */
    enum fg_conf_block block;
    bool repeatable; /* may appear more than once in one block */
    enum fg_conf_type type;
    size_t offset;           /* field in the context's struct, for the generic types */
    size_t width;            /* sizeof that field */
    uint64_t min, max;       /* range for FG_T_DURATION, FG_T_SIZE and FG_T_UINT */
    fg_conf_handler handler; /* FG_T_CUSTOM */
    const char *syntax;      /* arguments as the man page writes them */
    const char *def;         /* default as written in a config ("none": no default) */
    const char *doc;         /* one line */
};

/* A config file's directive table and how its blocks nest. */
struct fg_conf_schema {
    const char *file; /* "flashgate.conf" */
    const struct fg_conf_directive *dirs;
    size_t n_dirs;
    unsigned top_ctx; /* the context of the file's top level */
    /* The context inside a block called name opened in ctx; 0 if none. NULL: no blocks. */
    unsigned (*block_ctx)(const char *name, unsigned ctx);
    /* Blocks loaded in a second pass (fg_conf_walk's phase 2). NULL: none. */
    bool (*deferred)(unsigned ctx, const char *name);
};

extern const struct fg_conf_directive fg_conf_directives[]; /* flashgate.conf */
extern const size_t fg_conf_n_directives;
extern const struct fg_conf_schema fg_conf_flashgate;
extern const struct fg_conf_schema fg_conf_agent; /* flashgate-agent.conf (agent.c) */

/* The entry for name in any of the contexts ctx, or NULL. */
const struct fg_conf_directive *fg_conf_directive_find(const struct fg_conf_schema *sc,
                                                       const char *name, unsigned ctx);
/* "main", "upstream", "server", "route", "admin", "cache", "limit", "offload",
 * "redis", "emf", "flashgate-agent.conf": the context's name. */
const char *fg_conf_ctx_name(unsigned ctx);

/* Load the statements of one block (context ctx) into obj: each is looked up in the
 * schema (unknown ones reported with the closest name), its shape checked (arguments,
 * block, duplicates) and its handler called. phase 0: every statement; 1: all but the
 * schema's deferred blocks; 2: only those. */
void fg_conf_walk(struct fg_conf_loader *L, unsigned ctx, const struct fg_conf_stmt *stmts,
                  size_t n, void *obj, int phase);
/* Set the defaults of ctx's plain directives in obj, parsed from their `def` text
 * ("none": left as it is, NULL or zero). */
void fg_conf_apply_defaults(struct fg_conf_loader *L, unsigned ctx, void *obj);
/* Parse value for a plain directive (FG_T_DURATION ... FG_T_STRING), check its range and
 * store it at the entry's offset in obj; false (and an error at line) if it is wrong.
 * line 0: a default from the table, which must parse. */
bool fg_conf_set_generic(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                         const char *value, size_t line, void *obj);
/* The handler of plain directives: fg_conf_set_generic on args[1]. */
void fg_conf_h_generic(struct fg_conf_loader *L, const struct fg_conf_directive *dir,
                       const struct fg_conf_stmt *st, void *obj);

/* Build a config from a parsed tree (schema.c). Always returns the config (for the
 * caller to free if d->n_errors > 0), or NULL when out of memory. */
struct fg_config *fg_conf_build(struct fg_conf_diag *d, const char *name,
                                const struct fg_conf_stmt *stmts, size_t n, size_t last_line,
                                bool syntax_ok);
/* Build flashgate-agent's config from a parsed tree (agent.c); like fg_conf_build. */
struct fg_conf_agent *fg_conf_build_agent(struct fg_conf_diag *d, const char *name,
                                          const struct fg_conf_stmt *stmts, size_t n,
                                          bool syntax_ok);
/* Free a config whatever its state (refcount ignored). */
void fg_conf_free(struct fg_config *c);
/* "GET" for FG_HTTP_GET..FG_HTTP_CONNECT, NULL otherwise. */
const char *fg_conf_method_name(int m);

/* Small helpers shared by the loader and the dumper. */
void fg_conf_format_duration(uint64_t ms, char *out, size_t outlen);
void fg_conf_format_size(uint64_t bytes, char *out, size_t outlen);
/* Levenshtein distance, capped: returns cap+1 as soon as it is above cap. */
size_t fg_conf_edit_distance(const char *a, const char *b, size_t cap);

#endif /* FG_CONFIG_INTERNAL_H */
