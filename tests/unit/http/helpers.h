/* helpers.h — shared by the codec's unit tests: inputs placed right before an unreadable
 * page, so that any read past the end crashes at once (picohttpparser's test habit). */
#ifndef FG_TEST_HTTP_HELPERS_H
#define FG_TEST_HTTP_HELPERS_H

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct guard {
    char *base;
    size_t size;
};

/* Copy data[0..len) so that its last byte is the last readable byte of a mapping. */
static inline char *guard_place(struct guard *g, const void *data, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t pages = (len + page - 1) / page + 1;
    g->size = (pages + 1) * page;
    g->base = mmap(NULL, g->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g->base == MAP_FAILED)
        abort();
    char *fence = g->base + pages * page;
    if (mprotect(fence, page, PROT_NONE) != 0)
        abort();
    char *p = fence - len;
    if (len > 0)
        memcpy(p, data, len);
    return p;
}

static inline void guard_free(struct guard *g)
{
    munmap(g->base, g->size);
}

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
