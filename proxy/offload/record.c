/*
 * record.c — what travels to the agent with a write (offload.h, "the record"): the
 * request line and the fields the route names; the key and the body are the stage's.
 */
#include "offload/offload.h"

bool fg_offload_key_ok(const char *s, size_t len)
{
    if (len == 0 || len > FG_AGENT_PROTO_KEY_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return false;
    return true;
}

static bool header_selected(const struct fg_conf_route_offload *of, const struct fg_http_header *h)
{
    for (size_t i = 0; i < of->n_headers; i++)
        if (fg_http_name_eq(h->name, h->name_len, of->headers[i]))
            return true;
    return false;
}

void fg_offload_record_from(const struct fg_conf_route_offload *of, const struct fg_http_request *r,
                            struct fg_agent_record *rec)
{
    rec->method = r->method_name;
    rec->method_len = r->method_len;
    rec->target = r->target;
    rec->target_len = r->target_len;
    rec->n_headers = 0;
    for (size_t i = 0; i < r->n_headers && rec->n_headers < FG_AGENT_PROTO_MAX_HEADERS; i++) {
        const struct fg_http_header *h = &r->headers[i];
        if (!header_selected(of, h) || h->value_len > FG_AGENT_PROTO_VALUE_MAX)
            continue;
        rec->headers[rec->n_headers++] = (struct fg_agent_header){
            .name = h->name, .name_len = h->name_len, .value = h->value, .value_len = h->value_len};
    }
}
