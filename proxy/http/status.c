/* status.c — reason phrases, and what each parse error means to a client. */
#include "http/http.h"

static const struct {
    int status;
    const char *name;
} errors[FG_HTTP_E__COUNT] = {
    [FG_HTTP_E_NONE] = {0, "none"},
    [FG_HTTP_E_METHOD] = {400, "bad_method"},
    [FG_HTTP_E_TARGET] = {400, "bad_target"},
    [FG_HTTP_E_VERSION] = {400, "bad_version"},
    [FG_HTTP_E_VERSION_UNSUPPORTED] = {505, "version_unsupported"},
    [FG_HTTP_E_REQUEST_LINE] = {400, "bad_request_line"},
    [FG_HTTP_E_URI_TOO_LONG] = {414, "uri_too_long"},
    [FG_HTTP_E_HEADERS_TOO_LARGE] = {431, "headers_too_large"},
    [FG_HTTP_E_HEADER_NAME] = {400, "bad_header_name"},
    [FG_HTTP_E_SPACE_BEFORE_COLON] = {400, "space_before_colon"},
    [FG_HTTP_E_HEADER_VALUE] = {400, "bad_header_value"},
    [FG_HTTP_E_OBS_FOLD] = {400, "obs_fold"},
    [FG_HTTP_E_BARE_CR] = {400, "bare_cr"},
    [FG_HTTP_E_BARE_LF] = {400, "bare_lf"},
    [FG_HTTP_E_HOST_MISSING] = {400, "host_missing"},
    [FG_HTTP_E_HOST_DUPLICATE] = {400, "host_duplicate"},
    [FG_HTTP_E_HOST_INVALID] = {400, "host_invalid"},
    [FG_HTTP_E_CL_INVALID] = {400, "cl_invalid"},
    [FG_HTTP_E_CL_DUPLICATE] = {400, "cl_duplicate"},
    [FG_HTTP_E_CL_TE] = {400, "cl_te"},
    [FG_HTTP_E_TE_UNSUPPORTED] = {400, "te_unsupported"},
    [FG_HTTP_E_CHUNK_SIZE] = {400, "bad_chunk_size"},
    [FG_HTTP_E_CHUNK_EXT] = {400, "bad_chunk_ext"},
    [FG_HTTP_E_CHUNK_CRLF] = {400, "bad_chunk_crlf"},
    [FG_HTTP_E_TRAILER] = {400, "bad_trailer"},
    [FG_HTTP_E_STATUS_LINE] = {502, "bad_status_line"},
};

int fg_http_error_status(enum fg_http_error e)
{
    return (unsigned)e < FG_HTTP_E__COUNT ? errors[e].status : 400;
}

const char *fg_http_error_name(enum fg_http_error e)
{
    return (unsigned)e < FG_HTTP_E__COUNT ? errors[e].name : "unknown";
}

const char *fg_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 203:
        return "Non-Authoritative Information";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 421:
        return "Misdirected Request";
    case 422:
        return "Unprocessable Content";
    case 425:
        return "Too Early";
    case 426:
        return "Upgrade Required";
    case 428:
        return "Precondition Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}
