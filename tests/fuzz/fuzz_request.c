/*
 * fuzz_request.c — the request head parser. Besides memory safety (ASan sees the input in
 * an exact-size heap block) it checks what callers rely on: slices inside the buffer, a
 * reason on every error and none on success, a prefix that is INCOMPLETE or the same
 * error, the same answer with more bytes after the head, and consistent framing.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "http/http.h"

static void check_slice(const char *p, size_t n, const char *buf, size_t len)
{
    if (n > 0 && (p < buf || p + n > buf + len))
        abort();
}

static void check_static_or_slice(const char *p, size_t n, const char *buf, size_t len)
{
    if (p != NULL && !(n == 1 && p[0] == '/'))
        check_slice(p, n, buf, len);
}

int fg_fuzz_request(const uint8_t *data, size_t size)
{
    /* small limits so that the limit paths are reached too */
    const struct fg_http_limits lim = {
        .max_request_line = 512, .max_header_bytes = 2048, .max_headers = 32};
    char *buf = malloc(size + 64);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    static struct fg_http_request r, r2;
    enum fg_http_error err = FG_HTTP_E_NONE, err2 = FG_HTTP_E_NONE;

    /* exact-size copy: any over-read is a heap-buffer-overflow */
    char *exact = malloc(size ? size : 1);
    if (exact == NULL) {
        free(buf);
        return 0;
    }
    memcpy(exact, data, size);
    int rc = fg_http_parse_request(exact, size, &lim, &r, &err);
    if (rc == FG_HTTP_ERROR) {
        if (err == FG_HTTP_E_NONE || err >= FG_HTTP_E__COUNT)
            abort();
    } else if (rc == FG_HTTP_INCOMPLETE) {
        if (err != FG_HTTP_E_NONE || size >= lim.max_header_bytes)
            abort();
    } else {
        if (rc <= 0 || (size_t)rc > size || (size_t)rc != r.head_len ||
            r.head_len > lim.max_header_bytes || err != FG_HTTP_E_NONE)
            abort();
        if (r.n_headers > lim.max_headers || r.minor_version < 0 || r.minor_version > 1)
            abort();
        if (r.body == FG_HTTP_BODY_CLOSE || (r.body != FG_HTTP_BODY_LENGTH && r.content_length))
            abort();
        if (r.minor_version == 1 && r.host == NULL)
            abort();
        check_slice(r.method_name, r.method_len, exact, size);
        check_slice(r.target, r.target_len, exact, size);
        check_static_or_slice(r.path, r.path_len, exact, size);
        check_slice(r.query, r.query_len, exact, size);
        check_slice(r.host, r.host_len, exact, size);
        if (r.target_len == 0 || r.path == NULL || r.path_len == 0)
            abort();
        for (size_t i = 0; i < r.n_headers; i++) {
            const struct fg_http_header *h = &r.headers[i];
            check_slice(h->name, h->name_len, exact, size);
            check_slice(h->value, h->value_len, exact, size);
            if (h->name_len == 0 || memchr(h->value, '\r', h->value_len) ||
                memchr(h->value, '\n', h->value_len) || memchr(h->value, '\0', h->value_len))
                abort();
        }
        /* the normaliser must hold on every path the parser accepts */
        if (r.path[0] == '/') {
            char *norm = malloc(r.path_len);
            size_t nl = r.path_len;
            if (norm != NULL && fg_http_normalize_path(r.path, r.path_len, norm, &nl) &&
                (nl == 0 || nl > r.path_len || norm[0] != '/' || memchr(norm, '\0', nl)))
                abort();
            free(norm);
        }
    }

    /* a strict prefix: INCOMPLETE, or the same error */
    if (size > 0) {
        /* (for a complete head, a strict prefix of the head: after it may lie a body) */
        size_t k = fg_fuzz_hash(data, size) % (rc > 0 ? (size_t)rc : size);
        int rk = fg_http_parse_request(exact, k, &lim, &r2, &err2);
        if (rk != FG_HTTP_INCOMPLETE && !(rc == FG_HTTP_ERROR && rk == rc && err2 == err))
            abort();
    }
    /* bytes after a complete head, or after an error, change nothing */
    if (rc != FG_HTTP_INCOMPLETE) {
        memcpy(buf + size, "GET / HTTP/1.1\r\nHost: a\r\n\r\n\x01\r\n\n\r", 33);
        int rm = fg_http_parse_request(buf, size + 33, &lim, &r2, &err2);
        if (rm != rc || err2 != err)
            abort();
    }
    free(exact);
    free(buf);
    return 0;
}

#ifndef FG_FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fg_fuzz_request(data, size);
}
#endif
