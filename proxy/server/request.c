/*
 * request.c — the request path, read top to bottom (DESIGN.md "Request path"):
 *
 *   parse (conn.c) → checks → route match → [rate limit] → [waiting room] → [offload]
 *   → [cache]
 *   → upstream (proxy.c) → response (respond.c) → access log + stats (conn.c)
 *
 * Each stage in brackets is one call here (stage_limit.c, stage_waitroom.c,
 * stage_offload.c, stage_cache.c), so a newcomer can follow a request without a debugger.
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

/* Keep what the logs need: the head's bytes go away once forwarded. The method and the
 * target go into the error log's lines about this request too (an upstream failure), so
 * they are kept whether or not there is an access log. */
static void remember_request(struct fg_txn *t)
{
    const struct fg_http_request *r = &t->req;
    copy_slice(t->log_method, sizeof(t->log_method), r->method_name, r->method_len);
    copy_slice(t->log_path, sizeof(t->log_path), r->target, r->target_len);
}

/* What only the access log wants. */
static void remember_for_access_log(struct fg_txn *t)
{
    const struct fg_http_request *r = &t->req;
    const struct fg_http_header *h = fg_http_find_header(r->headers, r->n_headers, "user-agent");
    if (h != NULL)
        copy_slice(t->log_ua, sizeof(t->log_ua), h->value, h->value_len);
    h = fg_http_find_header(r->headers, r->n_headers, "x-amzn-trace-id");
    if (h != NULL)
        copy_slice(t->log_trace, sizeof(t->log_trace), h->value, h->value_len);
}

/* One X-Forwarded-For hop without its port: "1.2.3.4:5678" → "1.2.3.4",
 * "[2001:db8::1]:443" → "2001:db8::1". The ALB may append "ip:port". */
static void hop_address(const char *s, size_t len, const char **ip, size_t *ip_len)
{
    if (len > 0 && s[0] == '[') {
        const char *end = memchr(s, ']', len);
        *ip = s + 1;
        *ip_len = end ? (size_t)(end - s - 1) : len - 1;
        return;
    }
    const char *colon = memchr(s, ':', len);
    if (colon != NULL && memchr(colon + 1, ':', len - (size_t)(colon + 1 - s)) == NULL)
        len = (size_t)(colon - s); /* exactly one colon: IPv4 with a port */
    *ip = s;
    *ip_len = len;
}

/*
 * The client's address. A direct peer is the client, unless it is a trusted proxy (the
 * ALB): then walk X-Forwarded-For from the right, skipping trusted hops; the first hop
 * we do not trust is the client. Hops further left were written by the client itself and
 * are never believed.
 */
static void find_client_ip(struct fg_conn *c, struct fg_txn *t)
{
    const struct fg_conf_server *srv = t->srv;
    const struct fg_http_request *r = &t->req;
    fg_strcopy(t->client_ip, sizeof(t->client_ip), c->peer_ip);
    if (srv->n_trusted_proxies == 0 || !fg_cidr_match(srv->trusted_proxies, srv->n_trusted_proxies,
                                                      (const struct sockaddr *)&c->peer))
        return;
    for (size_t i = r->n_headers; i-- > 0;) {
        const struct fg_http_header *h = &r->headers[i];
        if (!fg_http_name_eq(h->name, h->name_len, "x-forwarded-for"))
            continue;
        size_t end = h->value_len;
        while (end > 0) {
            size_t start = end;
            while (start > 0 && h->value[start - 1] != ',')
                start--;
            size_t a = start, b = end;
            while (a < b && (h->value[a] == ' ' || h->value[a] == '\t'))
                a++;
            while (b > a && (h->value[b - 1] == ' ' || h->value[b - 1] == '\t'))
                b--;
            const char *ip;
            size_t ip_len;
            hop_address(h->value + a, b - a, &ip, &ip_len);
            if (ip_len == 0 || ip_len >= sizeof(t->client_ip))
                return; /* malformed: keep the peer */
            memcpy(t->client_ip, ip, ip_len);
            t->client_ip[ip_len] = '\0';
            if (!fg_cidr_match_text(srv->trusted_proxies, srv->n_trusted_proxies, ip, ip_len))
                return;
            end = start > 0 ? start - 1 : 0;
        }
    }
}

/* The client's X-Request-Id (the last one), echoed on every answer and forwarded. */
static void take_request_id(struct fg_txn *t)
{
    const struct fg_http_request *r = &t->req;
    for (size_t i = r->n_headers; i-- > 0;) {
        const struct fg_http_header *h = &r->headers[i];
        if (h->name_len != 12 || !fg_http_name_eq(h->name, h->name_len, "x-request-id"))
            continue;
        if (h->value_len > 0 && h->value_len < sizeof(t->request_id)) {
            memcpy(t->request_id, h->value, h->value_len);
            t->request_id[h->value_len] = '\0';
        }
        return;
    }
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
    remember_request(t);
    if (srv->access_log != NULL)
        remember_for_access_log(t);
    find_client_ip(c, t);
    take_request_id(t);

    /* Requests we refuse before looking at routes. */
    if (r->method == FG_HTTP_CONNECT) {
        fg_counter_add(&c->w->stats.rejected_other, 1);
        fg_respond_text(t, 501, "CONNECT is not supported by this reverse proxy", true);
        return;
    }
    if (r->flags & FG_HTTP_F_EXPECT_OTHER) {
        fg_counter_add(&c->w->stats.rejected_other, 1);
        fg_respond_text(t, 417, "only Expect: 100-continue is supported", true);
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
        fg_respond_text(t, 400, "malformed request path", true);
        return;
    }
    const struct fg_conf_route *route =
        fg_config_match_route(srv, norm, norm_len, (int)r->method, r->host, r->host_len);
    if (route == NULL) {
        fg_counter_add(&c->w->stats.rejected_other, 1);
        consume_head(c, t);
        fg_respond_text(t, 404, "no route for this request", false);
        return;
    }
    t->route = route;
    if (r->body == FG_HTTP_BODY_LENGTH && r->content_length > route->max_body) {
        fg_counter_add(&c->w->stats.rejected_other, 1);
        fg_respond_text(t, 413, "request body larger than client_max_body_size", true);
        return;
    }

    /* The ALB's health check on the traffic port: it must see 503 as soon as we drain,
     * and until a warm start is over (fleet.h). */
    if (route->health) {
        consume_head(c, t);
        bool draining = fg_server_draining();
        bool warming = !draining && fg_fleet_warming(); /* not ready before the warm start */
        const char *body = draining ? "draining\n" : warming ? "warming\n" : "ok\n";
        fg_respond(t, draining || warming ? 503 : 200, "text/plain; charset=utf-8", body,
                   strlen(body), NULL, 0, false);
        return;
    }

    /* A fixed answer configured on the route (maintenance pages, health stubs). */
    if (route->return_status != 0) {
        consume_head(c, t);
        const char *body = route->return_body ? route->return_body : "";
        fg_respond(t, route->return_status, "text/plain; charset=utf-8", body, strlen(body), NULL,
                   0, false);
        return;
    }

    /* An Upgrade the route allows goes to the app as one (tunnel.c); otherwise its
     * Upgrade is dropped and the request is an ordinary one. */
    t->proxy.upgrade = fg_tunnel_wanted(t);

    /* Rate limits first: a refused request costs no cache lookup and no app time. */
    if (fg_stage_limit(t))
        return; /* 429 now, or fg_request_after_limits now or once Redis answered */
    fg_request_after_limits(t);
}

void fg_request_after_limits(struct fg_txn *t)
{
    /* The waiting room: admitted visitors go on, the others get their place in line. */
    if (fg_stage_waitroom(t))
        return; /* answered, or fg_request_after_waitroom once Redis gave a ticket */
    fg_request_after_waitroom(t);
}

void fg_request_after_waitroom(struct fg_txn *t)
{
    /* Writes the route offloads wait for the agent; 202 once durable, or the fallback. */
    if (fg_stage_offload(t))
        return;
    fg_request_after_offload(t);
}

void fg_request_after_offload(struct fg_txn *t)
{
    /* A tunnel (never offloaded: stage_offload.c) is never compressed or cached either:
     * straight to the app. */
    if (t->proxy.upgrade) {
        if (fg_tunnel_admit(t))
            fg_proxy_start(t);
        return;
    }
    fg_stage_compress_negotiate(t); /* the cache keys variants on it, the proxy encodes with it */

    if (fg_stage_cache(t))
        return;
    fg_proxy_start(t);
}
