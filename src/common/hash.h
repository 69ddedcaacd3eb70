/*
 * hash.h - FNV-1a of a C string, for the small tables keyed by event types
 * and stream keys (storage/keyset.c, obs/stats.c): short keys, no adversary.
 * Header-only and stateless, so every layer and program may use it.
 */
#ifndef TSE_COMMON_HASH_H
#define TSE_COMMON_HASH_H

#include <stdint.h>

static inline uint64_t tse_hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}

#endif
