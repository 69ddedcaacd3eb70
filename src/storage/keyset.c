/*
 * keyset.c - the set of stream keys a lane has already registered in
 * the stream set (TSE_STREAMS_KEY) since it connected, so SADD is sent once per key and
 * connection rather than once per event.
 *
 * Open addressing with linear probing over a power-of-two table kept at most
 * half full; keys are private copies. There is no removal: on a failed SADD
 * or a reconnect the whole set is cleared, which is rare and cheap. Used by
 * one lane thread only.
 */
#include "storage/keyset.h"

#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/hash.h"

/* The slot holding key, or the empty slot where it would go. */
static size_t find_slot(char **slots, size_t cap, const char *key)
{
    size_t i = (size_t)tse_hash_str(key) & (cap - 1);

    while (slots[i] != NULL && strcmp(slots[i], key) != 0)
        i = (i + 1) & (cap - 1);
    return i;
}

static bool grow(tse_keyset *s)
{
    size_t cap = s->cap ? s->cap * 2 : 16;
    char **slots = tse_calloc(cap, sizeof(*slots));

    if (slots == NULL)
        return false;
    for (size_t i = 0; i < s->cap; i++) {
        if (s->slots[i] != NULL)
            slots[find_slot(slots, cap, s->slots[i])] = s->slots[i];
    }
    tse_free(s->slots);
    s->slots = slots;
    s->cap = cap;
    return true;
}

bool tse_keyset_contains(const tse_keyset *s, const char *key)
{
    if (s->cap == 0)
        return false;
    return s->slots[find_slot(s->slots, s->cap, key)] != NULL;
}

bool tse_keyset_add(tse_keyset *s, const char *key)
{
    size_t i;

    if ((s->count + 1) * 2 > s->cap && !grow(s))
        return false;
    i = find_slot(s->slots, s->cap, key);
    if (s->slots[i] != NULL)
        return true;
    s->slots[i] = tse_strdup(key);
    if (s->slots[i] == NULL)
        return false;
    s->count++;
    return true;
}

void tse_keyset_clear(tse_keyset *s)
{
    for (size_t i = 0; i < s->cap; i++)
        tse_free(s->slots[i]);
    tse_free(s->slots);
    s->slots = NULL;
    s->cap = 0;
    s->count = 0;
}
