/*
 * fuzz_response.c — the response head parser, for each kind of request it may answer
 * (the first byte picks GET, HEAD or POST). Checks slices, prefix consistency, and the
 * RFC 9112 §6.3 framing rules on every head it accepts.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "http/http.h"

int fg_fuzz_response(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const enum fg_http_method methods[] = {FG_HTTP_GET, FG_HTTP_HEAD, FG_HTTP_POST};
    enum fg_http_method m = methods[data[0] % 3];
    data++;
    size--;
    const struct fg_http_limits lim = {
        .max_request_line = 512, .max_header_bytes = 2048, .max_headers = 32};
    char *exact = malloc(size ? size : 1);
    char *buf = malloc(size + 16);
    if (exact == NULL || buf == NULL) {
        free(exact);
        free(buf);
        return 0;
    }
    memcpy(exact, data, size);
    memcpy(buf, data, size);
    static struct fg_http_response r, r2;
    enum fg_http_error err = FG_HTTP_E_NONE, err2 = FG_HTTP_E_NONE;
    int rc = fg_http_parse_response(exact, size, &lim, m, &r, &err);
    if (rc == FG_HTTP_ERROR) {
        if (err == FG_HTTP_E_NONE || err >= FG_HTTP_E__COUNT)
            abort();
    } else if (rc == FG_HTTP_INCOMPLETE) {
        if (err != FG_HTTP_E_NONE || size >= lim.max_header_bytes)
            abort();
    } else {
        if (rc <= 0 || (size_t)rc > size || (size_t)rc != r.head_len || r.status < 100 ||
            r.status > 999 || r.n_headers > lim.max_headers)
            abort();
        bool no_body = m == FG_HTTP_HEAD || r.status < 200 || r.status == 204 || r.status == 304;
        if (no_body != (r.body == FG_HTTP_BODY_NONE))
            abort();
        if (r.reason != NULL && (r.reason < exact || r.reason + r.reason_len > exact + size))
            abort();
        for (size_t i = 0; i < r.n_headers; i++)
            if (r.headers[i].name < exact ||
                r.headers[i].value + r.headers[i].value_len > exact + size)
                abort();
        if (r.body == FG_HTTP_BODY_CHUNKED &&
            (r.minor_version != 1 ||
             fg_http_find_header(r.headers, r.n_headers, "content-length") != NULL))
            abort();
    }
    if (size > 0) {
        /* (for a complete head, a strict prefix of the head: after it may lie a body) */
        size_t k = fg_fuzz_hash(data, size) % (rc > 0 ? (size_t)rc : size);
        int rk = fg_http_parse_response(exact, k, &lim, m, &r2, &err2);
        if (rk != FG_HTTP_INCOMPLETE && !(rc == FG_HTTP_ERROR && rk == rc && err2 == err))
            abort();
    }
    if (rc != FG_HTTP_INCOMPLETE) {
        memcpy(buf + size, "5\r\nhello\r\n0\r\n\r\n", 15);
        int rm = fg_http_parse_response(buf, size + 15, &lim, m, &r2, &err2);
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
    return fg_fuzz_response(data, size);
}
#endif
