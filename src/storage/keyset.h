/*
 * keyset.h - a set of keys (keyset.c): the stream keys a writer lane has
 * registered since it connected.
 *
 * Not thread-safe: one owner thread. A zeroed tse_keyset is empty.
 */
#ifndef TSE_STORAGE_KEYSET_H
#define TSE_STORAGE_KEYSET_H

#include <stdbool.h>
#include <stddef.h>

typedef struct tse_keyset {
    char **slots; /* open addressing, linear probing; NULL = empty */
    size_t cap;   /* power of two, or 0 before the first add */
    size_t count;
} tse_keyset;

bool tse_keyset_contains(const tse_keyset *s, const char *key);
/* False when out of memory (the key is then simply not remembered). */
bool tse_keyset_add(tse_keyset *s, const char *key);
/* Forgets every key; keeps nothing allocated. */
void tse_keyset_clear(tse_keyset *s);

#endif
