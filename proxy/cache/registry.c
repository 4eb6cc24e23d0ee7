/*
 * registry.c — the stores by name. A store outlives the config snapshots that name it:
 * a reload keeps a cache's contents (and applies its new limits), every worker of every
 * snapshot finds the same store, and the admin thread reaches all of them for /stats
 * and purges.
 */
#include "cache/cache.h"
#include "core/core.h"

#include <pthread.h>
#include <string.h>

#define FG_CACHE_REGISTRY_MAX 64

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct fg_cache *registry[FG_CACHE_REGISTRY_MAX];
static size_t registry_n;

struct fg_cache *fg_cache_registry_get(const char *name, const struct fg_cache_limits *lim)
{
    struct fg_cache *found = NULL;
    pthread_mutex_lock(&registry_lock);
    for (size_t i = 0; i < registry_n && found == NULL; i++)
        if (strcmp(fg_cache_name(registry[i]), name) == 0)
            found = registry[i];
    bool made = false;
    if (found == NULL && registry_n < FG_CACHE_REGISTRY_MAX) {
        found = fg_cache_new(name, lim);
        if (found != NULL)
            registry[registry_n++] = found;
        made = true;
    }
    pthread_mutex_unlock(&registry_lock);
    if (found != NULL && !made)
        fg_cache_set_limits(found, lim);
    return found;
}

struct fg_cache *const *fg_cache_registry_all(size_t *n)
{
    pthread_mutex_lock(&registry_lock);
    *n = registry_n;
    pthread_mutex_unlock(&registry_lock);
    return registry;
}

size_t fg_cache_registry_purge(const char *key, size_t len, bool prefix)
{
    size_t n = 0, total = 0;
    struct fg_cache *const *all = fg_cache_registry_all(&n);
    for (size_t i = 0; i < n; i++)
        total += fg_cache_purge(all[i], key, len, prefix);
    return total;
}

size_t fg_cache_registry_purge_tag(const char *tag, size_t len)
{
    size_t n = 0, total = 0;
    struct fg_cache *const *all = fg_cache_registry_all(&n);
    for (size_t i = 0; i < n; i++)
        total += fg_cache_purge_tag(all[i], tag, len);
    return total;
}
