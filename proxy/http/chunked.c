/*
 * chunked.c — the chunked transfer coding (RFC 9112 §7.1) as a byte-at-a-time state
 * machine: any split of the input gives the same result. Sizes are bounded (16 hex
 * digits, no overflow), extensions and trailers are validated and dropped.
 */
#include "http/http.h"

#include <stdio.h>
#include <string.h>

#include "http/chars.h"

#define MAX_SIZE_LINE       4096
#define DEFAULT_MAX_TRAILER 8192

enum {
    CS_SIZE_START = 0, /* first hex digit of a chunk-size */
    CS_SIZE,           /* more hex digits */
    CS_SIZE_BWS,       /* whitespace after the size, before ';' or CR */
    CS_EXT,            /* inside chunk extensions */
    CS_EXT_QUOTED,     /* inside a quoted-string of an extension */
    CS_EXT_ESCAPE,     /* after a backslash in a quoted-string */
    CS_SIZE_LF,        /* CR seen, LF expected */
    CS_DATA,           /* chunk data: the caller takes it */
    CS_DATA_CR,        /* CRLF after data */
    CS_DATA_LF,
    CS_TRAILER_START, /* start of a trailer line (or the final CRLF) */
    CS_TRAILER_NAME,
    CS_TRAILER_VALUE,
    CS_TRAILER_LF,
    CS_FINAL_LF,
    CS_DONE,
};

void fg_http_chunked_init(struct fg_http_chunked *c)
{
    memset(c, 0, sizeof(*c));
    c->state = CS_SIZE_START;
    c->max_trailer = DEFAULT_MAX_TRAILER;
}

void fg_http_chunked_data(struct fg_http_chunked *c, uint64_t n)
{
    c->data_left -= n;
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

static enum fg_http_chunk_status fail(struct fg_http_chunked *c, enum fg_http_error *err,
                                      enum fg_http_error e, size_t i, size_t *consumed)
{
    *err = e;
    *consumed = i;
    (void)c;
    return FG_CHUNK_ERROR;
}

enum fg_http_chunk_status fg_http_chunked_parse(struct fg_http_chunked *c, const char *buf,
                                                size_t len, size_t *consumed,
                                                enum fg_http_error *err)
{
    size_t i = 0;
    if (c->state == CS_DATA && c->data_left > 0) {
        *consumed = 0;
        return FG_CHUNK_DATA;
    }
    while (i < len) {
        unsigned char ch = (unsigned char)buf[i];
        switch (c->state) {
        case CS_SIZE_START:
        case CS_SIZE: {
            int v = fg_http_hexval(ch);
            if (v >= 0) {
                if (c->line_len >= 16)
                    return fail(c, err, FG_HTTP_E_CHUNK_SIZE, i, consumed);
                c->size = (c->size << 4) | (uint64_t)v;
                c->line_len++;
                c->state = CS_SIZE;
                i++;
                continue;
            }
            if (c->state == CS_SIZE_START)
                return fail(c, err, FG_HTTP_E_CHUNK_SIZE, i, consumed);
            c->state = CS_SIZE_BWS;
            continue; /* re-read this byte */
        }
        case CS_SIZE_BWS:
            if (ch == ' ' || ch == '\t') {
                i++;
                c->line_len++;
            } else if (ch == ';') {
                c->state = CS_EXT;
                i++;
                c->line_len++;
            } else if (ch == '\r') {
                c->state = CS_SIZE_LF;
                i++;
            } else {
                return fail(c, err, FG_HTTP_E_CHUNK_SIZE, i, consumed);
            }
            break;
        case CS_EXT:
            if (ch == '\r') {
                c->state = CS_SIZE_LF;
            } else if (ch == '"') {
                c->state = CS_EXT_QUOTED;
            } else if (!(fg_http_is(ch, FG_C_TCHAR) || ch == ';' || ch == '=' || ch == ' ' ||
                         ch == '\t')) {
                return fail(c, err, FG_HTTP_E_CHUNK_EXT, i, consumed);
            }
            i++;
            if (++c->line_len > MAX_SIZE_LINE)
                return fail(c, err, FG_HTTP_E_CHUNK_EXT, i, consumed);
            break;
        case CS_EXT_QUOTED:
            if (ch == '"')
                c->state = CS_EXT;
            else if (ch == '\\')
                c->state = CS_EXT_ESCAPE;
            else if (!fg_http_is(ch, FG_C_VALUE))
                return fail(c, err, FG_HTTP_E_CHUNK_EXT, i, consumed);
            i++;
            if (++c->line_len > MAX_SIZE_LINE)
                return fail(c, err, FG_HTTP_E_CHUNK_EXT, i, consumed);
            break;
        case CS_EXT_ESCAPE:
            if (!fg_http_is(ch, FG_C_VALUE))
                return fail(c, err, FG_HTTP_E_CHUNK_EXT, i, consumed);
            c->state = CS_EXT_QUOTED;
            i++;
            if (++c->line_len > MAX_SIZE_LINE)
                return fail(c, err, FG_HTTP_E_CHUNK_EXT, i, consumed);
            break;
        case CS_SIZE_LF:
            if (ch != '\n')
                return fail(c, err, FG_HTTP_E_CHUNK_SIZE, i, consumed);
            i++;
            c->line_len = 0;
            if (c->size == 0) {
                c->state = CS_TRAILER_START;
                break;
            }
            c->data_left = c->size;
            c->size = 0;
            c->state = CS_DATA;
            *consumed = i;
            return FG_CHUNK_DATA;
        case CS_DATA:
            /* the caller did not take the data: report it again */
            *consumed = i;
            return FG_CHUNK_DATA;
        case CS_DATA_CR:
            if (ch != '\r')
                return fail(c, err, FG_HTTP_E_CHUNK_CRLF, i, consumed);
            c->state = CS_DATA_LF;
            i++;
            break;
        case CS_DATA_LF:
            if (ch != '\n')
                return fail(c, err, FG_HTTP_E_CHUNK_CRLF, i, consumed);
            c->state = CS_SIZE_START;
            c->line_len = 0;
            i++;
            break;
        case CS_TRAILER_START:
            if (ch == '\r') {
                c->state = CS_FINAL_LF;
                i++;
                break;
            }
            if (!fg_http_is(ch, FG_C_TCHAR)) /* includes obs-fold and bare LF */
                return fail(c, err, FG_HTTP_E_TRAILER, i, consumed);
            c->state = CS_TRAILER_NAME;
            break;
        case CS_TRAILER_NAME:
            if (ch == ':')
                c->state = CS_TRAILER_VALUE;
            else if (!fg_http_is(ch, FG_C_TCHAR))
                return fail(c, err, FG_HTTP_E_TRAILER, i, consumed);
            i++;
            if (++c->trailer_len > c->max_trailer)
                return fail(c, err, FG_HTTP_E_TRAILER, i, consumed);
            break;
        case CS_TRAILER_VALUE:
            if (ch == '\r')
                c->state = CS_TRAILER_LF;
            else if (!fg_http_is(ch, FG_C_VALUE))
                return fail(c, err, FG_HTTP_E_TRAILER, i, consumed);
            i++;
            if (++c->trailer_len > c->max_trailer)
                return fail(c, err, FG_HTTP_E_TRAILER, i, consumed);
            break;
        case CS_TRAILER_LF:
            if (ch != '\n')
                return fail(c, err, FG_HTTP_E_TRAILER, i, consumed);
            c->state = CS_TRAILER_START;
            i++;
            break;
        case CS_FINAL_LF:
            if (ch != '\n')
                return fail(c, err, FG_HTTP_E_TRAILER, i, consumed);
            c->state = CS_DONE;
            *consumed = i + 1;
            return FG_CHUNK_DONE;
        case CS_DONE:
            *consumed = i;
            return FG_CHUNK_DONE;
        default:
            return fail(c, err, FG_HTTP_E_CHUNK_SIZE, i, consumed);
        }
    }
    *consumed = i;
    if (c->state == CS_DONE)
        return FG_CHUNK_DONE;
    if (c->state == CS_DATA)
        return FG_CHUNK_DATA;
    return FG_CHUNK_MORE;
}
