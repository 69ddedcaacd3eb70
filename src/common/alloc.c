/*
 * alloc.c - the injectable allocator; see alloc.h.
 */
#include "common/alloc.h"

#include <stdlib.h>
#include <string.h>

static tse_alloc_funcs funcs = {malloc, calloc, realloc, free};

tse_alloc_funcs tse_alloc_set(const tse_alloc_funcs *f)
{
    static const tse_alloc_funcs libc = {malloc, calloc, realloc, free};
    tse_alloc_funcs old = funcs;

    funcs = f != NULL ? *f : libc;
    return old;
}

void *tse_malloc(size_t size)
{
    return funcs.malloc_fn(size);
}

void *tse_calloc(size_t count, size_t size)
{
    return funcs.calloc_fn(count, size);
}

void *tse_realloc(void *ptr, size_t size)
{
    return funcs.realloc_fn(ptr, size);
}

char *tse_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *copy = funcs.malloc_fn(n);

    if (copy != NULL)
        memcpy(copy, s, n);
    return copy;
}

void tse_free(void *ptr)
{
    funcs.free_fn(ptr);
}
