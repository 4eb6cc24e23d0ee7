/*
 * fuzz_http.c — one libFuzzer target for the codec. The first byte picks what the rest
 * is fed to: a request head, a response head, or a chunked body decoded whole and in two
 * pieces (the payload and the outcome must not depend on the split). Also linked into
 * tests/fuzz/replay.c, which runs the corpus and every kept crasher under `make check`.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t decode(const char *in, size_t len, size_t split, char *out, int *status)
{
    struct fg_http_chunked c;
    fg_http_chunked_init(&c);
    size_t o = 0, pos = 0, end = split;
    enum fg_http_error err = FG_HTTP_E_NONE;
    enum fg_http_chunk_status st = FG_CHUNK_MORE;
    for (int round = 0; round < 2; round++) {
        for (;;) {
            if (c.data_left > 0) {
                size_t n = end - pos;
                if (n > c.data_left)
                    n = (size_t)c.data_left;
                memcpy(out + o, in + pos, n);
                o += n;
                pos += n;
                fg_http_chunked_data(&c, n);
                if (c.data_left > 0)
                    break;
                continue;
            }
            size_t used = 0;
            st = fg_http_chunked_parse(&c, in + pos, end - pos, &used, &err);
            if (used > end - pos)
                abort();
            pos += used;
            if (st == FG_CHUNK_DATA)
                continue;
            if (st != FG_CHUNK_MORE) {
                *status = (int)st * 100 + (st == FG_CHUNK_ERROR ? (int)err : 0);
                return o;
            }
            break;
        }
        end = len;
    }
    *status = (int)st;
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0] % 3;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    /* copy to an exact-size heap block so ASan sees any over-read */
    char *buf = malloc(len ? len : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, in, len);
    struct fg_http_limits lim = {
        .max_request_line = 512, .max_header_bytes = 2048, .max_headers = 32};
    enum fg_http_error err = FG_HTTP_E_NONE;
    if (mode == 0) {
        static struct fg_http_request r;
        int rc = fg_http_parse_request(buf, len, &lim, &r, &err);
        if (rc > 0) {
            if ((size_t)rc > len || r.n_headers > lim.max_headers)
                abort();
            for (size_t i = 0; i < r.n_headers; i++)
                if (r.headers[i].name < buf ||
                    r.headers[i].value + r.headers[i].value_len > buf + len)
                    abort();
            if (r.path_len > 0) {
                char norm[4096];
                size_t nl = sizeof(norm);
                if (fg_http_normalize_path(r.path, r.path_len, norm, &nl) &&
                    (nl == 0 || norm[0] != '/'))
                    abort();
            }
        } else if (rc == FG_HTTP_ERROR && err == FG_HTTP_E_NONE) {
            abort();
        }
    } else if (mode == 1) {
        static struct fg_http_response r;
        int rc = fg_http_parse_response(buf, len, &lim, FG_HTTP_GET, &r, &err);
        if (rc > 0 && ((size_t)rc > len || r.status < 100 || r.status > 999))
            abort();
    } else {
        char *a = malloc(len + 1), *b = malloc(len + 1);
        if (a != NULL && b != NULL) {
            int sa = 0, sb = 0;
            size_t split = len ? (size_t)data[0] % (len + 1) : 0;
            size_t na = decode(buf, len, len, a, &sa);
            size_t nb = decode(buf, len, split, b, &sb);
            if (na != nb || sa != sb || memcmp(a, b, na) != 0)
                abort();
        }
        free(a);
        free(b);
    }
    free(buf);
    return 0;
}
