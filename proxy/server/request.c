/*
 * request.c — the request path, read top to bottom (DESIGN.md "Request path"):
 *
 *   parse (conn.c) → checks → route match → [rate limit] → [offload] → [cache]
 *   → upstream (proxy.c) → response → access log + stats (conn.c)
 *
 * Stages in brackets come with their own issues; each one is a call here, so a newcomer
 * can follow a request without a debugger.
 */
#include "server/internal.h"

#include <stdio.h>
#include <string.h>

static void copy_slice(char *dst, size_t cap, const char *s, size_t len)
{
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, s, len);
    dst[len] = '\0';
}

/* Keep what the access log needs: the head's bytes go away once forwarded. */
static void remember_for_log(struct fg_txn *t)
{
    const struct fg_http_request *r = &t->req;
    copy_slice(t->log_method, sizeof(t->log_method), r->method_name, r->method_len);
    copy_slice(t->log_path, sizeof(t->log_path), r->target, r->target_len);
    const struct fg_http_header *h = fg_http_find_header(r->headers, r->n_headers, "user-agent");
    if (h != NULL)
        copy_slice(t->log_ua, sizeof(t->log_ua), h->value, h->value_len);
    h = fg_http_find_header(r->headers, r->n_headers, "x-amzn-trace-id");
    if (h != NULL)
        copy_slice(t->log_trace, sizeof(t->log_trace), h->value, h->value_len);
}

static void consume_head(struct fg_conn *c, struct fg_txn *t)
{
    evbuffer_drain(bufferevent_get_input(c->bev), t->req.head_len);
    t->req.n_headers = 0; /* the slices pointed into what was just drained */
}

static bool request_has_body(const struct fg_http_request *r)
{
    return r->body == FG_HTTP_BODY_CHUNKED ||
           (r->body == FG_HTTP_BODY_LENGTH && r->content_length > 0);
}

void fg_request_start(struct fg_conn *c, struct fg_txn *t)
{
    struct fg_http_request *r = &t->req;
    const struct fg_conf_server *srv = t->srv;
    t->req_state = request_has_body(r) ? FG_REQ_BODY : FG_REQ_DONE;
    if (srv->access_log != NULL)
        remember_for_log(t);

    /* Requests we refuse before looking at routes. */
    if (r->method == FG_HTTP_CONNECT) {
        fg_counter_add(&c->w->stats.rejected_other, 1);
        fg_conn_respond(c, 501, "CONNECT is not supported by this reverse proxy", true);
        return;
    }
    if (r->flags & FG_HTTP_F_EXPECT_OTHER) {
        fg_counter_add(&c->w->stats.rejected_other, 1);
        fg_conn_respond(c, 417, "only Expect: 100-continue is supported", true);
        return;
    }

    /* Route match on the normalised path: "/a/../api" is "/api" here, so a prefix rule
     * cannot be dodged with dot segments or escapes. The original target is forwarded. */
    char norm[8192];
    size_t norm_len = sizeof(norm);
    const char *path = r->path;
    size_t path_len = r->path_len;
    if (r->flags & FG_HTTP_F_ASTERISK_FORM) {
        path = "/";
        path_len = 1;
    }
    if (!fg_http_normalize_path(path, path_len, norm, &norm_len)) {
        fg_counter_add(&c->w->stats.rejected_other, 1);
        fg_conn_respond(c, 400, "malformed request path", true);
        return;
    }
    const struct fg_conf_route *route =
        fg_config_match_route(srv, norm, norm_len, (int)r->method, r->host, r->host_len);
    if (route == NULL) {
        fg_counter_add(&c->w->stats.rejected_other, 1);
        consume_head(c, t);
        fg_conn_respond(c, 404, "no route for this request", false);
        return;
    }
    t->route = route;
    if (r->body == FG_HTTP_BODY_LENGTH && r->content_length > route->max_body) {
        fg_counter_add(&c->w->stats.rejected_other, 1);
        fg_conn_respond(c, 413, "request body larger than client_max_body_size", true);
        return;
    }

    /* A fixed answer configured on the route (maintenance pages, health stubs). */
    if (route->return_status != 0) {
        consume_head(c, t);
        const char *body = route->return_body ? route->return_body : "";
        fg_conn_send_response(c, route->return_status, "text/plain; charset=utf-8", body,
                              strlen(body), false);
        return;
    }

    /* Rate limiting, offload and cache lookup slot in here, in that order. */

    fg_proxy_start(t);
}
