/*
 * key.c — what makes two requests "the same" for the cache: the primary key (host, path,
 * query with tracking parameters left out) and the secondary key from Vary (RFC 9111 §4.1).
 */
#include "cache/cache.h"
#include "core/core.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

struct param {
    const char *s;
    size_t len;
};

static char lower(char ch)
{
    return (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
}

/* Does parameter p ("name=value" or "name") match rule ("name" or "prefix*")? */
static bool param_ignored(const struct param *p, const struct fg_cache_key_rules *rules)
{
    const char *eq = memchr(p->s, '=', p->len);
    size_t nlen = eq ? (size_t)(eq - p->s) : p->len;
    for (size_t i = 0; rules != NULL && i < rules->n_ignore_params; i++) {
        const char *r = rules->ignore_params[i];
        size_t rlen = strlen(r);
        if (rlen > 0 && r[rlen - 1] == '*') {
            if (nlen >= rlen - 1 && memcmp(p->s, r, rlen - 1) == 0)
                return true;
        } else if (nlen == rlen && memcmp(p->s, r, rlen) == 0) {
            return true;
        }
    }
    return false;
}

static int param_cmp(const void *a, const void *b)
{
    const struct param *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);
    if (c != 0)
        return c;
    return (x->len > y->len) - (x->len < y->len);
}

/* Append the filtered (and maybe sorted) query to out at *pos; false if it does not fit. */
static bool put_query(const char *q, size_t qlen, const struct fg_cache_key_rules *rules, char *out,
                      size_t cap, size_t *pos)
{
    struct param ps[256];
    size_t n = 0;
    size_t i = 0;
    while (i <= qlen) {
        size_t j = i;
        while (j < qlen && q[j] != '&')
            j++;
        if (j > i) {
            if (n == FG_ARRAY_LEN(ps))
                return false; /* absurd query: not cached */
            ps[n++] = (struct param){q + i, j - i};
        }
        i = j + 1;
    }
    size_t kept = 0;
    for (size_t k = 0; k < n; k++)
        if (!param_ignored(&ps[k], rules))
            ps[kept++] = ps[k];
    if (kept == 0)
        return true;
    if (rules != NULL && rules->sort_params)
        qsort(ps, kept, sizeof(ps[0]), param_cmp);
    for (size_t k = 0; k < kept; k++) {
        if (*pos + 1 + ps[k].len > cap)
            return false;
        out[(*pos)++] = k == 0 ? '?' : '&';
        memcpy(out + *pos, ps[k].s, ps[k].len);
        *pos += ps[k].len;
    }
    return true;
}

size_t fg_cache_key_build(const char *host, size_t host_len, const char *path, size_t path_len,
                          const char *query, size_t query_len,
                          const struct fg_cache_key_rules *rules, char *out, size_t cap)
{
    if (host_len > 0 && host[host_len - 1] == '.')
        host_len--;
    if (host_len + path_len > cap)
        return 0;
    size_t pos = 0;
    for (size_t i = 0; i < host_len; i++)
        out[pos++] = lower(host[i]);
    memcpy(out + pos, path, path_len);
    pos += path_len;
    if (query != NULL && !put_query(query, query_len, rules, out, cap, &pos))
        return 0;
    return pos;
}

/* URLs are the client's choice: a public hash would let one send keys that all chain
 * in one bucket of one shard. SipHash under a key drawn at start prevents that. */
static uint8_t hash_key[16];
static pthread_once_t hash_key_once = PTHREAD_ONCE_INIT;

static void hash_key_init(void)
{
    size_t got = 0;
    while (got < sizeof(hash_key)) {
        ssize_t n = getrandom(hash_key + got, sizeof(hash_key) - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got < sizeof(hash_key)) { /* no entropy source: still a fine hash, just not keyed */
        uint64_t t = (uint64_t)fg_wall_ms() ^ ((uint64_t)getpid() << 32);
        memcpy(hash_key, &t, sizeof(t));
    }
}

uint64_t fg_cache_key_hash(const char *key, size_t len)
{
    pthread_once(&hash_key_once, hash_key_init);
    struct fg_siphash s;
    fg_siphash_init(&s, hash_key);
    fg_siphash_update(&s, key, len);
    return fg_siphash_final(&s);
}

/* ---- Vary ------------------------------------------------------------------------------ */

struct name {
    char s[64];
    size_t len;
};

static int name_cmp(const void *a, const void *b)
{
    const struct name *x = a, *y = b;
    return strcmp(x->s, y->s);
}

static bool ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

int fg_cache_vary_names(const struct fg_http_header *h, size_t n, char *out, size_t cap)
{
    struct name names[32];
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if (!fg_http_name_eq(h[i].name, h[i].name_len, "vary"))
            continue;
        const char *v = h[i].value;
        size_t len = h[i].value_len, p = 0;
        while (p < len) {
            while (p < len && (ows(v[p]) || v[p] == ','))
                p++;
            size_t start = p;
            while (p < len && v[p] != ',' && !ows(v[p]))
                p++;
            size_t tl = p - start;
            if (tl == 0)
                continue;
            if (tl == 1 && v[start] == '*')
                return -1;
            if (tl >= sizeof(names[0].s) || count == FG_ARRAY_LEN(names))
                return -1;
            struct name nm;
            for (size_t k = 0; k < tl; k++)
                nm.s[k] = lower(v[start + k]);
            nm.s[tl] = '\0';
            nm.len = tl;
            bool dup = false;
            for (size_t k = 0; k < count && !dup; k++)
                dup = strcmp(names[k].s, nm.s) == 0;
            if (!dup)
                names[count++] = nm;
        }
    }
    qsort(names, count, sizeof(names[0]), name_cmp);
    size_t pos = 0;
    for (size_t k = 0; k < count; k++) {
        if (pos + (k > 0) + names[k].len > cap)
            return -1;
        if (k > 0)
            out[pos++] = ',';
        memcpy(out + pos, names[k].s, names[k].len);
        pos += names[k].len;
    }
    return (int)pos;
}

/* How much of a field's value may be normalised without changing what it means. The
 * negotiation fields are lists of tokens with parameters: their codings, language
 * ranges and charsets are case-insensitive (RFC 9110 §8.4.1, §12.5.3-4, RFC 4647), and
 * the whitespace around ';' is OWS like that around ','. Accept keeps its case (a
 * parameter value may be case-sensitive) but not that whitespace. Other fields only
 * lose the whitespace around their commas. */
enum vary_norm { NORM_LIST = 0, NORM_PARAMS, NORM_PARAMS_CASE };

static enum vary_norm vary_norm(const char *lower_name)
{
    if (strcmp(lower_name, "accept-encoding") == 0 || strcmp(lower_name, "accept-language") == 0 ||
        strcmp(lower_name, "accept-charset") == 0)
        return NORM_PARAMS_CASE;
    if (strcmp(lower_name, "accept") == 0)
        return NORM_PARAMS;
    return NORM_LIST;
}

static bool is_delim(char ch, enum vary_norm norm)
{
    return ch == ',' || (norm != NORM_LIST && ch == ';');
}

/* Append one field value normalised as norm allows. */
static bool put_value(const char *v, size_t len, char *out, size_t cap, size_t *pos,
                      enum vary_norm norm)
{
    for (size_t i = 0; i < len; i++) {
        char ch = v[i];
        if (ows(ch)) {
            size_t j = i;
            while (j < len && ows(v[j]))
                j++;
            bool at_delim =
                j == len || is_delim(v[j], norm) || (*pos > 0 && is_delim(out[*pos - 1], norm));
            if (at_delim) {
                i = j - 1;
                continue;
            }
        }
        if (*pos + 1 > cap)
            return false;
        out[(*pos)++] = norm == NORM_PARAMS_CASE ? lower(ch) : ch;
    }
    return true;
}

int fg_cache_vary_values(const char *names, size_t names_len, const struct fg_http_header *h,
                         size_t n, char *out, size_t cap)
{
    size_t pos = 0, p = 0;
    while (p < names_len) {
        size_t start = p;
        while (p < names_len && names[p] != ',')
            p++;
        char nm[64];
        size_t nl = p - start;
        if (nl >= sizeof(nm))
            return -1;
        memcpy(nm, names + start, nl);
        nm[nl] = '\0';
        p++;
        bool first = true;
        for (size_t i = 0; i < n; i++) {
            if (!fg_http_name_eq(h[i].name, h[i].name_len, nm))
                continue;
            /* '=' marks the field present, even if empty: an absent field matches only an
             * absent one (RFC 9111 §4.1); no Accept-Encoding and an empty one differ. */
            if (pos + 1 > cap)
                return -1;
            out[pos++] = first ? '=' : ',';
            first = false;
            if (!put_value(h[i].value, h[i].value_len, out, cap, &pos, vary_norm(nm)))
                return -1;
        }
        if (pos + 1 > cap)
            return -1;
        out[pos++] = '\n';
    }
    return (int)pos;
}
