/*
 * chunked.c — the chunked transfer coding (RFC 9112 §7.1) as a byte-at-a-time state
 * machine: the state carries everything, so any split of the input gives the same
 * payload and the same outcome.
 *
 *   chunked-body = *chunk last-chunk trailer-section CRLF
 *   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
 *   chunk-ext    = *( BWS ";" BWS ext-name [ BWS "=" BWS ( token / quoted-string ) ] )
 *
 * Sizes are bounded (16 hex digits, so no overflow), a size line (with its extensions)
 * is capped, extensions are checked against the grammar and dropped, and so are trailer
 * fields, whose section is capped by c->max_trailer. Whitespace is accepted only where
 * the grammar has BWS: "5 \r\n" is refused, since a lenient peer could read it otherwise.
 * An error is sticky: later calls repeat it.
 */
#include "http/http.h"

#include <string.h>

#include "http/http_internal.h"

#define MAX_SIZE_LINE       4096
#define MAX_SIZE_DIGITS     16
#define DEFAULT_MAX_TRAILER 8192

enum {
    CS_SIZE_START = 0, /* first hex digit of a chunk-size */
    CS_SIZE,           /* more hex digits, or what follows them */
    CS_SIZE_BWS,       /* whitespace after the size: only ';' may follow */
    CS_EXT_NAME_START, /* after ';': BWS, then a token */
    CS_EXT_NAME,       /* in the ext-name token */
    CS_EXT_NAME_BWS,   /* whitespace after the name: '=' or ';' may follow */
    CS_EXT_VAL_START,  /* after '=': BWS, then a token or a quoted-string */
    CS_EXT_VAL_TOKEN,
    CS_EXT_QUOTED,
    CS_EXT_ESCAPE, /* after a backslash in a quoted-string */
    CS_EXT_NEXT,   /* after a value: ';', BWS or CR */
    CS_EXT_BWS,    /* whitespace after a value: only ';' may follow */
    CS_SIZE_LF,    /* CR of the size line seen, LF expected */
    CS_DATA,       /* chunk data: the caller takes it */
    CS_DATA_CR,    /* CRLF after the data */
    CS_DATA_LF,
    CS_TRAILER_START, /* start of a trailer line, or the final CRLF */
    CS_TRAILER_NAME,
    CS_TRAILER_VALUE,
    CS_TRAILER_LF,
    CS_FINAL_LF,
    CS_DONE,
    CS_ERROR, /* CS_ERROR + the error: sticky */
};

void fg_http_chunked_init(struct fg_http_chunked *c)
{
    memset(c, 0, sizeof(*c));
    c->state = CS_SIZE_START;
    c->max_trailer = DEFAULT_MAX_TRAILER;
}

void fg_http_chunked_data(struct fg_http_chunked *c, uint64_t n)
{
    if (c->state != CS_DATA)
        return;
    c->data_left -= n < c->data_left ? n : c->data_left;
    if (c->data_left == 0)
        c->state = CS_DATA_CR;
}

size_t fg_http_chunk_header(char *out, uint64_t n)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[16];
    size_t k = 0;
    do {
        tmp[k++] = hex[n & 15];
        n >>= 4;
    } while (n != 0);
    size_t len = 0;
    while (k > 0)
        out[len++] = tmp[--k];
    out[len++] = '\r';
    out[len++] = '\n';
    return len;
}

static enum fg_http_chunk_status fail(struct fg_http_chunked *c, enum fg_http_error e, size_t i,
                                      size_t *consumed, enum fg_http_error *err)
{
    c->state = CS_ERROR + (int)e;
    *err = e;
    *consumed = i;
    return FG_CHUNK_ERROR;
}

static bool is_ws(unsigned char ch)
{
    return ch == ' ' || ch == '\t';
}

/* What may follow an extension value (a token or a quoted-string): ';', BWS or CR. */
static bool after_value(struct fg_http_chunked *c, unsigned char ch)
{
    if (ch == ';')
        c->state = CS_EXT_NAME_START;
    else if (is_ws(ch))
        c->state = CS_EXT_BWS;
    else if (ch == '\r')
        c->state = CS_SIZE_LF;
    else
        return false;
    return true;
}

enum fg_http_chunk_status fg_http_chunked_parse(struct fg_http_chunked *c, const char *buf,
                                                size_t len, size_t *consumed,
                                                enum fg_http_error *err)
{
    if (c->state >= CS_ERROR) {
        *err = (enum fg_http_error)(c->state - CS_ERROR);
        *consumed = 0;
        return FG_CHUNK_ERROR;
    }
    size_t i = 0;
    while (i < len) {
        if (c->state == CS_DATA) {
            /* data the caller has not taken yet */
            *consumed = i;
            return FG_CHUNK_DATA;
        }
        if (c->state == CS_DONE) {
            *consumed = i;
            return FG_CHUNK_DONE;
        }
        unsigned char ch = (unsigned char)buf[i];
        /* every byte of a size line counts toward its cap */
        if (c->state < CS_DATA && ++c->line_len > MAX_SIZE_LINE)
            return fail(c, FG_HTTP_E_CHUNK_EXT, i, consumed, err);
        if (c->state >= CS_TRAILER_START && ++c->trailer_len > c->max_trailer)
            return fail(c, FG_HTTP_E_TRAILER, i, consumed, err);
        enum fg_http_error bad = FG_HTTP_E_CHUNK_EXT;
        switch (c->state) {
        case CS_SIZE_START:
        case CS_SIZE: {
            int v = fg_http_hexval(ch);
            if (v >= 0) {
                if (c->line_len > MAX_SIZE_DIGITS)
                    return fail(c, FG_HTTP_E_CHUNK_SIZE, i, consumed, err);
                c->size = (c->size << 4) | (uint64_t)v;
                c->state = CS_SIZE;
                break;
            }
            if (c->state == CS_SIZE && ch == ';')
                c->state = CS_EXT_NAME_START;
            else if (c->state == CS_SIZE && is_ws(ch))
                c->state = CS_SIZE_BWS;
            else if (c->state == CS_SIZE && ch == '\r')
                c->state = CS_SIZE_LF;
            else
                return fail(c, FG_HTTP_E_CHUNK_SIZE, i, consumed, err);
            break;
        }
        case CS_SIZE_BWS:
            if (ch == ';')
                c->state = CS_EXT_NAME_START;
            else if (!is_ws(ch))
                return fail(c, FG_HTTP_E_CHUNK_SIZE, i, consumed, err);
            break;
        case CS_EXT_NAME_START:
            if (fg_http_is(ch, FG_C_TCHAR))
                c->state = CS_EXT_NAME;
            else if (!is_ws(ch))
                return fail(c, bad, i, consumed, err);
            break;
        case CS_EXT_NAME:
            if (fg_http_is(ch, FG_C_TCHAR))
                break;
            if (ch == ';')
                c->state = CS_EXT_NAME_START;
            else if (ch == '=')
                c->state = CS_EXT_VAL_START;
            else if (is_ws(ch))
                c->state = CS_EXT_NAME_BWS;
            else if (ch == '\r')
                c->state = CS_SIZE_LF;
            else
                return fail(c, bad, i, consumed, err);
            break;
        case CS_EXT_NAME_BWS:
            if (ch == ';')
                c->state = CS_EXT_NAME_START;
            else if (ch == '=')
                c->state = CS_EXT_VAL_START;
            else if (!is_ws(ch))
                return fail(c, bad, i, consumed, err);
            break;
        case CS_EXT_VAL_START:
            if (ch == '"')
                c->state = CS_EXT_QUOTED;
            else if (fg_http_is(ch, FG_C_TCHAR))
                c->state = CS_EXT_VAL_TOKEN;
            else if (!is_ws(ch))
                return fail(c, bad, i, consumed, err);
            break;
        case CS_EXT_VAL_TOKEN:
            if (!fg_http_is(ch, FG_C_TCHAR) && !after_value(c, ch))
                return fail(c, bad, i, consumed, err);
            break;
        case CS_EXT_NEXT:
            if (!after_value(c, ch))
                return fail(c, bad, i, consumed, err);
            break;
        case CS_EXT_BWS:
            if (ch == ';')
                c->state = CS_EXT_NAME_START;
            else if (!is_ws(ch))
                return fail(c, bad, i, consumed, err);
            break;
        case CS_EXT_QUOTED:
            /* qdtext = HTAB / SP / VCHAR except '"' and '\' / obs-text */
            if (ch == '"')
                c->state = CS_EXT_NEXT;
            else if (ch == '\\')
                c->state = CS_EXT_ESCAPE;
            else if (!fg_http_is(ch, FG_C_VALUE))
                return fail(c, bad, i, consumed, err);
            break;
        case CS_EXT_ESCAPE:
            if (!fg_http_is(ch, FG_C_VALUE))
                return fail(c, bad, i, consumed, err);
            c->state = CS_EXT_QUOTED;
            break;
        case CS_SIZE_LF:
            if (ch != '\n')
                return fail(c, FG_HTTP_E_CHUNK_SIZE, i, consumed, err);
            c->line_len = 0;
            if (c->size == 0) {
                c->state = CS_TRAILER_START;
                break;
            }
            c->data_left = c->size;
            c->size = 0;
            c->state = CS_DATA;
            *consumed = i + 1;
            return FG_CHUNK_DATA;
        case CS_DATA_CR:
            if (ch != '\r')
                return fail(c, FG_HTTP_E_CHUNK_CRLF, i, consumed, err);
            c->state = CS_DATA_LF;
            break;
        case CS_DATA_LF:
            if (ch != '\n')
                return fail(c, FG_HTTP_E_CHUNK_CRLF, i, consumed, err);
            c->state = CS_SIZE_START;
            c->line_len = 0;
            break;
        case CS_TRAILER_START:
            if (ch == '\r')
                c->state = CS_FINAL_LF;
            else if (fg_http_is(ch, FG_C_TCHAR))
                c->state = CS_TRAILER_NAME;
            else /* obs-fold, bare LF, an empty or bad name */
                return fail(c, FG_HTTP_E_TRAILER, i, consumed, err);
            break;
        case CS_TRAILER_NAME:
            if (ch == ':')
                c->state = CS_TRAILER_VALUE;
            else if (!fg_http_is(ch, FG_C_TCHAR)) /* includes space before the colon */
                return fail(c, FG_HTTP_E_TRAILER, i, consumed, err);
            break;
        case CS_TRAILER_VALUE:
            if (ch == '\r')
                c->state = CS_TRAILER_LF;
            else if (!fg_http_is(ch, FG_C_VALUE))
                return fail(c, FG_HTTP_E_TRAILER, i, consumed, err);
            break;
        case CS_TRAILER_LF:
            if (ch != '\n')
                return fail(c, FG_HTTP_E_TRAILER, i, consumed, err);
            c->state = CS_TRAILER_START;
            break;
        case CS_FINAL_LF:
            if (ch != '\n')
                return fail(c, FG_HTTP_E_TRAILER, i, consumed, err);
            c->state = CS_DONE;
            *consumed = i + 1;
            return FG_CHUNK_DONE;
        default:
            return fail(c, FG_HTTP_E_CHUNK_SIZE, i, consumed, err);
        }
        i++;
    }
    *consumed = i;
    if (c->state == CS_DONE)
        return FG_CHUNK_DONE;
    if (c->state == CS_DATA)
        return FG_CHUNK_DATA;
    return FG_CHUNK_MORE;
}
