/*
 * operator.c — what the admin listener asks of the server (server.h): purging the caches
 * and the address cache warm-ups are sent to. Runs on the admin thread.
 */
#include "server/internal.h"

#include <arpa/inet.h>
#include <stdlib.h>

#include "fleet/fleet.h"

static const char *const purge_kind_names[] = {"", "prefix ", "tag "};
_Static_assert(FG_ADMIN_PURGE_KEY == (int)FG_FLEET_PURGE_KEY &&
                   FG_ADMIN_PURGE_PREFIX == (int)FG_FLEET_PURGE_PREFIX &&
                   FG_ADMIN_PURGE_TAG == (int)FG_FLEET_PURGE_TAG,
               "the admin's purge kinds are the fleet's");

/* A purge is applied here at once, then published to the fleet (fleet.h); the admin's
 * answer waits for the publish's receiver count. */
struct purge_call {
    size_t purged;
    fg_admin_purge_done done;
    void *arg;
};

static void purge_published(const struct fg_fleet_publish_result *pub, void *arg)
{
    struct purge_call *pc = arg;
    struct fg_admin_purge_result res = {.purged = pc->purged,
                                        .fleet = true,
                                        .published = pub->published,
                                        .receivers = pub->receivers,
                                        .error = pub->error};
    pc->done(&res, pc->arg);
    free(pc);
}

void fg_server_cache_purge(enum fg_admin_purge_kind kind, const char *value, size_t len,
                           struct event_base *base, fg_admin_purge_done done, void *arg)
{
    /* the admin's kinds and the fleet's are the same list */
    size_t total = fg_fleet_apply_purge((enum fg_fleet_purge_kind)kind, value, len);
    fg_notice("cache purge of %s%.*s: %zu object(s) removed", purge_kind_names[kind], (int)len,
              value, total);
    struct purge_call *pc = fg_fleet_on() ? malloc(sizeof(*pc)) : NULL;
    if (pc == NULL) {
        struct fg_admin_purge_result res = {
            .purged = total, .fleet = fg_fleet_on(), .error = "out of memory"};
        done(&res, arg);
        return;
    }
    *pc = (struct purge_call){.purged = total, .done = done, .arg = arg};
    fg_fleet_publish_purge((enum fg_fleet_purge_kind)kind, value, len, base, purge_published, pc);
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
