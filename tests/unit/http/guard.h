/* guard.h — put test input right before an unreadable page, so any over-read crashes
 * (the picohttpparser test habit). */
#ifndef FG_TEST_GUARD_H
#define FG_TEST_GUARD_H

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct guard {
    char *base;
    size_t size;
};

static inline char *guard_place(struct guard *g, const char *data, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = (len + page - 1) / page + 1;
    g->size = (pages + 1) * page;
    g->base = mmap(NULL, g->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g->base == MAP_FAILED)
        return NULL;
    char *fence = g->base + pages * page;
    mprotect(fence, page, PROT_NONE);
    char *p = fence - len;
    memcpy(p, data, len);
    return p;
}

static inline void guard_free(struct guard *g)
{
    munmap(g->base, g->size);
}

#endif
