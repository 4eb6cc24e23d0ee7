/*
 * operator.c — what the admin listener asks of the server (server.h): purging the caches
 * and the address cache warm-ups are sent to. Runs on the admin thread.
 */
#include "server/internal.h"

#include <arpa/inet.h>

static const char *const purge_kind_names[] = {"", "prefix ", "tag "};

void fg_server_cache_purge(enum fg_admin_purge_kind kind, const char *value, size_t len,
                           struct event_base *base, fg_admin_purge_done done, void *arg)
{
    (void)base;
    size_t total = kind == FG_ADMIN_PURGE_TAG
                       ? fg_cache_registry_purge_tag(value, len)
                       : fg_cache_registry_purge(value, len, kind == FG_ADMIN_PURGE_PREFIX);
    fg_notice("cache purge of %s%.*s: %zu object(s) removed", purge_kind_names[kind], (int)len,
              value, total);
    struct fg_admin_purge_result res = {.purged = total};
    done(&res, arg);
}

bool fg_server_warm_target(struct fg_addr *out)
{
    struct fg_config *cfg = fg_server_config();
    bool ok = cfg != NULL && cfg->n_servers > 0 && cfg->servers[0].n_listens > 0;
    if (ok) {
        *out = cfg->servers[0].listens[0].addr;
        struct sockaddr_in *v4 = (struct sockaddr_in *)&out->ss;
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out->ss;
        if (out->ss.ss_family == AF_INET && v4->sin_addr.s_addr == htonl(INADDR_ANY))
            v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        else if (out->ss.ss_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&v6->sin6_addr))
            v6->sin6_addr = in6addr_loopback;
        else if (out->ss.ss_family != AF_INET && out->ss.ss_family != AF_INET6)
            ok = out->ss.ss_family == AF_UNIX;
    }
    fg_config_unref(cfg);
    return ok;
}
