/*
 * alloc.h - the allocator our code calls (tse_malloc and friends) and the
 * one place to inject another, so tests can fail the Nth allocation
 * (tests/unit/test_alloc_failure.c sweeps every operation that way, as
 * curl's torture tests and hiredis's hiredisSetAllocators do).
 *
 * By default these are the C library's functions. An injected allocator must
 * hand out memory of the C heap: free() may release it, because protobuf-c
 * (protobuf_c_message_free_unpacked(msg, NULL)) and jansson free some of what
 * our code allocates with their default allocators.
 *
 * Every caller checks for NULL: an allocation that fails is reported as
 * TSE_NOMEM (or the function's documented failure value) after releasing
 * whatever was built, never a crash and never a leak.
 *
 * Thread-safety: tse_alloc_set is a write-once setting: call it before any
 * thread allocates (a test's setup); the functions are as thread-safe as the
 * injected allocator.
 */
#ifndef TSE_COMMON_ALLOC_H
#define TSE_COMMON_ALLOC_H

#include <stdbool.h>
#include <stddef.h>

typedef struct tse_alloc_funcs {
    void *(*malloc_fn)(size_t size);
    void *(*calloc_fn)(size_t count, size_t size);
    void *(*realloc_fn)(void *ptr, size_t size);
    void (*free_fn)(void *ptr);
} tse_alloc_funcs;

/*
 * Installs funcs (copied; every member must be set) and returns the previous
 * set; NULL restores the C library's functions.
 */
tse_alloc_funcs tse_alloc_set(const tse_alloc_funcs *funcs);

void *tse_malloc(size_t size);
void *tse_calloc(size_t count, size_t size);
void *tse_realloc(void *ptr, size_t size);
/* A copy of s (not NULL), or NULL when the allocation failed. */
char *tse_strdup(const char *s);
/* tse_free(NULL) is a no-op. */
void tse_free(void *ptr);

/*
 * Room for need items of size bytes in a growing array: items_ptr points
 * to the array's pointer (NULL at first) and *cap counts its items. When
 * *cap is less than need, the array is reallocated with realloc_fn (ours,
 * tse_realloc, or the C library's realloc where memory must not fail with
 * ours, as the storage layer's: group_ops.h says why) to *cap items (min,
 * or 1 when min is 0, when *cap is 0) doubled until they hold need.
 * Returns false when out of memory or when the size would overflow, with
 * the array and *cap as they were. TSE_GROW names the array once and tests
 * for room inline (hot paths reserve often; need is evaluated twice):
 * `if (!TSE_GROW(tse_realloc, list->v, list->cap, list->n + 1, 16)) return TSE_NOMEM;`.
 */
bool tse_grow(void *(*realloc_fn)(void *, size_t), void *items_ptr, size_t *cap, size_t need,
              size_t size, size_t min);
#define TSE_GROW(realloc_fn, items, cap, need, min)                                                \
    ((need) <= (cap) || tse_grow((realloc_fn), &(items), &(cap), (need), sizeof(*(items)), (min)))

#endif
