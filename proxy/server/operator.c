/*
 * operator.c — what the admin listener asks of the server (server.h): purging the caches
 * and the address cache warm-ups are sent to. Runs on the admin thread.
 */
#include "server/internal.h"

#include <arpa/inet.h>

size_t fg_server_cache_purge(const char *key, size_t len, bool prefix)
{
    size_t total = fg_cache_registry_purge(key, len, prefix);
    fg_notice("cache purge of %s%.*s: %zu object(s) removed", prefix ? "prefix " : "", (int)len,
              key, total);
    return total;
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
