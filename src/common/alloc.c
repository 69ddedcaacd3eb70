/*
 * alloc.c - the injectable allocator; see alloc.h.
 */
#include "common/alloc.h"

#include <stdint.h>
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

bool tse_grow(void *(*realloc_fn)(void *, size_t), void *items_ptr, size_t *cap, size_t need,
              size_t size, size_t min)
{
    size_t n = *cap ? *cap : min ? min : 1; /* 0 would never double */
    void *items, *grown;

    if (need <= *cap)
        return true;
    while (n < need) {
        if (n > SIZE_MAX / 2)
            return false;
        n *= 2;
    }
    if (n > SIZE_MAX / size)
        return false;
    /* The array's pointer is read and written as bytes: it may point to
     * items of any type. */
    memcpy(&items, items_ptr, sizeof(items));
    grown = realloc_fn(items, n * size);
    if (grown == NULL)
        return false;
    memcpy(items_ptr, &grown, sizeof(grown));
    *cap = n;
    return true;
}
